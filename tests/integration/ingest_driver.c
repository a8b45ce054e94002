/* ingest_driver.c: runs pc_ingest_run once from the command line for tests/integration/
 * test_ingest.sh (and by hand), logs to stderr and prints the worker's counters as one JSON
 * object on stdout.
 *   ingest_driver --url U --topic T --bootstrap B [--batch N] [--interval-ms MS]
 *                 [--max-records N] [--duration-ms MS] [--key PATH] [--param k=v]...
 *                 [--rusage]
 * --rusage (bench/ingest) adds "pc-ingest-driver: elapsed_ms=E peak_rss_kb=K" on stderr at exit:
 * E the time spent in pc_ingest_run, K getrusage's ru_maxrss. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ingest.h"

static atomic_int g_stop; /* set by the signal handler, read by the worker threads */
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void log_stderr(void *ctx, pc_log_level level, const char *worker, const char *msg,
                       const char *const *fields)
{
    (void)ctx, (void)fields;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "%s [%s] %s\n", names[level], worker, msg);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"batch", required_argument, NULL, 'n'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"max-records", required_argument, NULL, 'm'},
                                         {"duration-ms", required_argument, NULL, 'd'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"param", required_argument, NULL, 'p'},
                                         {"rusage", no_argument, NULL, 'R'},
                                         {NULL, 0, NULL, 0}};
    pc_mf_source src = {.name = "users", .type = "randomuser", .batch = 100, .interval_ms = 0};
    const char *bootstrap = NULL;
    pc_worker_stats stats = {0};
    pc_worker_env env = {.name = "ingest", .stop = &g_stop, .stats = &stats, .log = log_stderr};
    int o;
    int rusage = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'u':
            src.url = optarg;
            break;
        case 't':
            src.topic = optarg;
            break;
        case 'b':
            bootstrap = optarg;
            break;
        case 'n':
            src.batch = atoi(optarg);
            break;
        case 'i':
            src.interval_ms = atoi(optarg);
            break;
        case 'm':
            env.max_records = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            env.duration_ms = strtoll(optarg, NULL, 10);
            break;
        case 'k':
            src.key = optarg;
            break;
        case 'p': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "ingest_driver: --param wants key=value\n");
                return 2;
            }
            *eq = '\0';
            pc_kvlist_add(&src.params, optarg, eq + 1);
            break;
        }
        case 'R':
            rusage = 1;
            break;
        default:
            return 2;
        }
    }
    if (!src.url || !src.topic || !bootstrap) {
        fprintf(stderr, "ingest_driver: --url, --topic and --bootstrap are required\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    pc_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pc_manifest m = {.kafka_bootstrap = (char *)bootstrap, .name = "ingest_driver"};
    int rc = pc_ingest_run(&m, &src, &env, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rusage) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "pc-ingest-driver: elapsed_ms=%lld peak_rss_kb=%ld\n",
                (long long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
                ru.ru_maxrss);
    }
    printf("{\"rc\":%d,\"records_in\":%llu,\"records_out\":%llu,\"batches\":%llu,\"errors\":%llu,"
           "\"dead_letters\":%llu}\n",
           rc, (unsigned long long)atomic_load(&stats.records_in),
           (unsigned long long)atomic_load(&stats.records_out),
           (unsigned long long)atomic_load(&stats.batches),
           (unsigned long long)atomic_load(&stats.errors),
           (unsigned long long)atomic_load(&stats.dead_letters));
    if (rc < 0)
        fprintf(stderr, "ingest_driver: %s\n", err.msg);
    pc_kvlist_free(&src.params);
    return rc < 0 ? 1 : 0;
}
