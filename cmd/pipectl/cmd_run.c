/* cmd_run.c: `pipectl run [NAME...]`: the manifest's ingest (sources) and sink workers in one
 * foreground process, one thread each, until SIGTERM/SIGINT (drain, commit, exit 0), a bound
 * (--max-records per worker, --duration) or a worker's failure (the others are stopped too, so a
 * supervisor such as systemd restarts the whole process). A second signal exits at once with
 * 130. Logs go to stderr through log.c; -o json adds a summary object on stdout at the end.
 * With --metrics the Prometheus endpoint (pkg/worker/metrics.c) runs while the workers run, and
 * this thread refreshes the sinks' consumer lag gauges every few seconds. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "postgres.h"
#include "sink.h"
#include "worker.h"

#define LAG_REFRESH_MS 5000
#define LAG_TIMEOUT_MS 3000

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    if (g_signals > 0) {
        static const char msg[] = "pipectl run: second signal: exiting now without draining\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    g_signals = 1;
    g_stop = 1;
}

static void help(void)
{
    printf(
        "Usage: pipectl [-f FILE] run [NAME...] [--max-records N] [--duration D]\n"
        "                           [--metrics ADDR:PORT] [-o json]\n\n"
        "Runs the manifest's workers in the foreground, one thread each: every source (ingest:\n"
        "randomuser API -> Kafka) and every sink (Kafka -> PostgreSQL, exactly once), or only\n"
        "the NAMEs given. SIGTERM or SIGINT stops them cleanly: ingest flushes what it produced,\n"
        "sinks commit the batch in progress with its offsets; then exit 0. A second signal exits\n"
        "at once (status 130; sinks stay exactly-once, the open transaction is rolled back).\n"
        "When one worker fails, the others are stopped and run exits 1 naming it.\n\n"
        "Options:\n"
        "  NAME...               source or sink names from the manifest (default: all)\n"
        "  --max-records N       each worker stops after N records (ingest: delivered to Kafka;\n"
        "                        sink: committed to PostgreSQL)\n"
        "  --duration D          stop after D: 500ms, 10s, 5m, 1h\n"
        "  --metrics ADDR:PORT   serve Prometheus metrics at http://ADDR:PORT/metrics while the\n"
        "                        workers run (':9464' = every interface, port 0 = any free port)\n"
        "  -o json               print a JSON summary of every worker on stdout at the end\n"
        "  -v                    debug logs\n\n"
        "Logs: stderr, text at a terminal, JSON lines otherwise (PIPECTL_LOG_FORMAT=text|json\n"
        "forces one).\n"
        "Exit: 0 every worker stopped cleanly, 1 a worker failed or bad input, 130 second "
        "signal.\n");
}

/* "500ms", "10s", "5m", "1h" -> milliseconds; -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v <= 0)
        return -1;
    int64_t mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else
        return -1;
    if (v > INT64_MAX / mult)
        return -1;
    return (int64_t)v * mult;
}

typedef enum worker_kind { W_SOURCE, W_SINK } worker_kind;

typedef struct run_worker {
    worker_kind kind;
    const pc_mf_source *src;
    const pc_mf_sink *sink;
    const pc_manifest *m;
    pc_worker_stats stats;
    pc_worker_env env;
    pthread_t thread;
    bool started;
    atomic_bool finished;
    int rc;
    pc_error err;
} run_worker;

static const char *kind_name(worker_kind k)
{
    switch (k) {
    case W_SOURCE:
        return "ingest";
    case W_SINK:
        return "sink";
    }
    return "worker";
}

static void *worker_main(void *arg)
{
    run_worker *w = arg;
    switch (w->kind) {
    case W_SOURCE:
        w->rc = pc_ingest_run(w->src, w->m->kafka_bootstrap, &w->env, &w->err);
        break;
    case W_SINK:
        w->rc = pc_sink_run(w->m, w->sink, &w->env, &w->err);
        break;
    }
    if (w->rc != 0 && w->err.msg[0] == '\0')
        pc_error_set(&w->err, w->rc, "worker '%s' stopped with %s and no message", w->env.name,
                     pc_code_name(w->rc));
    atomic_store(&w->finished, true);
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* EINTR on a signal is fine: the loop re-checks */
}

/* Lag gauges for every sink worker: high watermark minus the next offset stored in
 * pipectl.sink_offsets (the high watermark itself when the sink has stored nothing yet).
 * Connections are opened on first use and dropped after a failure, to be retried next time. */
typedef struct lag_state {
    pc_kafka *kafka;
    pc_pg *pg;
    bool warned;
} lag_state;

static void refresh_lag(lag_state *ls, pc_metrics *metrics, const pc_manifest *m, run_worker *ws,
                        size_t nw, cli_logger *lg)
{
    pc_error err = {0};
    int64_t *high = NULL, *next = NULL;
    int n = 0;
    if (m->kafka_bootstrap == NULL || m->pg_dsn == NULL)
        return; /* validation requires both for a sink; nothing to measure without them */
    if (ls->kafka == NULL &&
        pc_kafka_open(&ls->kafka, m->kafka_bootstrap, LAG_TIMEOUT_MS, &err) != 0)
        goto fail;
    if (ls->pg == NULL && pc_pg_open(&ls->pg, m->pg_dsn, LAG_TIMEOUT_MS / 1000, &err) != 0)
        goto fail;
    for (size_t i = 0; i < nw; i++) {
        if (ws[i].kind != W_SINK)
            continue;
        const pc_mf_sink *s = ws[i].sink;
        if (pc_kafka_watermarks(ls->kafka, s->topic, &high, &n, &err) != 0 ||
            pc_pg_sink_offsets(ls->pg, s->name, s->topic, &next, n, &err) != 0)
            goto fail;
        for (int p = 0; p < n; p++) {
            int64_t lag = next[p] >= 0 ? high[p] - next[p] : high[p];
            pc_metrics_set_lag(metrics, s->name, s->topic, p, lag < 0 ? 0 : lag, &err);
        }
        free(high);
        free(next);
        high = next = NULL;
    }
    ls->warned = false;
    return;
fail:
    free(high);
    free(next);
    if (!ls->warned)
        cli_logf(lg, PC_LOG_WARN, NULL, "consumer lag metrics not updated: %s", err.msg);
    ls->warned = true;
    pc_kafka_free(ls->kafka);
    pc_pg_free(ls->pg);
    ls->kafka = NULL;
    ls->pg = NULL;
}

/* Adds the worker called name (a source, a sink, or both when they share it). false when the
 * manifest has no such worker. */
static bool select_worker(const pc_manifest *m, const char *name, run_worker *ws, size_t *nw)
{
    bool found = false;
    for (size_t i = 0; i < m->nsources; i++)
        if (pc_streq(m->sources[i].name, name)) {
            ws[(*nw)++] = (run_worker){.kind = W_SOURCE, .src = &m->sources[i], .m = m};
            found = true;
        }
    for (size_t i = 0; i < m->nsinks; i++)
        if (pc_streq(m->sinks[i].name, name)) {
            ws[(*nw)++] = (run_worker){.kind = W_SINK, .sink = &m->sinks[i], .m = m};
            found = true;
        }
    return found;
}

static void print_known(const pc_manifest *m)
{
    fprintf(stderr, "Workers declared in %s:", g_cli.file);
    if (m->nsources + m->nsinks == 0)
        fprintf(stderr, " none (add sources: or sinks: to the manifest)");
    for (size_t i = 0; i < m->nsources; i++)
        fprintf(stderr, " %s (source)", m->sources[i].name);
    for (size_t i = 0; i < m->nsinks; i++)
        fprintf(stderr, " %s (sink)", m->sinks[i].name);
    fprintf(stderr, "\n");
}

int cmd_run(int argc, char **argv)
{
    static const char *const single[] = {"max-records", "duration", "metrics", NULL};
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"max-records", required_argument, NULL, 'N'},
                                             {"duration", required_argument, NULL, 'D'},
                                             {"metrics", required_argument, NULL, 'M'},
                                             {NULL, 0, NULL, 0}};
    uint64_t max_records = 0;
    int64_t duration_ms = 0;
    const char *metrics_addr = NULL;
    cli_fix_single_dash(argc, argv, single);
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'N') {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (end == optarg || *end != '\0' || errno != 0 || v == 0 || optarg[0] == '-')
                return cli_usage_error("run", "--max-records wants a positive integer, got '%s'",
                                       optarg);
            max_records = (uint64_t)v;
            continue;
        }
        if (c == 'D') {
            duration_ms = parse_duration(optarg);
            if (duration_ms <= 0)
                return cli_usage_error("run",
                                       "--duration wants a number and a unit (500ms, 10s, 5m, "
                                       "1h), got '%s'",
                                       optarg);
            continue;
        }
        if (c == 'M') {
            metrics_addr = optarg;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("run", "invalid value '%s'", optarg);
        return cli_usage_error("run", "unknown option");
    }

    int exit_code = EXIT_ERR;
    run_worker *ws = NULL;
    size_t nw = 0;
    pc_metrics *metrics = NULL;
    lag_state ls = {0};
    pc_error err = {0};
    cli_logger lg;
    bool lg_init = false, sigs_installed = false;
    struct sigaction old_term, old_int;
    sigset_t block, oldmask;
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;

    /* Each name can match a source and a sink; the table is sized for the worst case. */
    size_t cap = (m->nsources + m->nsinks) * (size_t)(argc > optind ? argc - optind : 1) + 1;
    ws = calloc(cap, sizeof *ws);
    if (ws == NULL) {
        fprintf(stderr, "pipectl: run: out of memory\n");
        goto done;
    }
    if (optind < argc) {
        bool bad = false;
        for (int i = optind; i < argc; i++) {
            bool dup = false;
            for (int j = optind; j < i; j++)
                dup = dup || strcmp(argv[i], argv[j]) == 0;
            if (dup)
                continue;
            if (!select_worker(m, argv[i], ws, &nw)) {
                fprintf(stderr, "pipectl: run: no source or sink named '%s' in %s\n", argv[i],
                        g_cli.file);
                bad = true;
            }
        }
        if (bad) {
            print_known(m);
            goto done;
        }
    } else {
        for (size_t i = 0; i < m->nsources; i++)
            ws[nw++] = (run_worker){.kind = W_SOURCE, .src = &m->sources[i], .m = m};
        for (size_t i = 0; i < m->nsinks; i++)
            ws[nw++] = (run_worker){.kind = W_SINK, .sink = &m->sinks[i], .m = m};
    }
    if (nw == 0) {
        fprintf(stderr,
                "pipectl: run: %s declares no sources or sinks: nothing to run. Add a "
                "sources: or sinks: block to the manifest.\n",
                g_cli.file);
        goto done;
    }

    cli_logger_init(&lg, stderr, g_cli.verbose);
    lg_init = true;
    g_stop = 0;
    g_signals = 0;
    for (size_t i = 0; i < nw; i++) {
        run_worker *w = &ws[i];
        w->env = (pc_worker_env){.name = w->kind == W_SOURCE ? w->src->name : w->sink->name,
                                 .stop = &g_stop,
                                 .stats = &w->stats,
                                 .log = cli_log,
                                 .log_ctx = &lg,
                                 .max_records = max_records,
                                 .duration_ms = duration_ms};
        atomic_init(&w->finished, false);
    }

    /* Signals: handled by this thread only (workers and the threads their libraries start
     * inherit a mask blocking them), installed before any worker can get going. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    sigs_installed = true;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &oldmask);

    if (metrics_addr != NULL) {
        int rc = pc_metrics_new(&metrics, &err);
        for (size_t i = 0; rc == 0 && i < nw; i++)
            rc = pc_metrics_add_worker(metrics, ws[i].env.name, kind_name(ws[i].kind), &ws[i].stats,
                                       &err);
        if (rc == 0)
            rc = pc_metrics_listen(metrics, metrics_addr, &err);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
            cli_print_error("run", &err);
            goto done;
        }
        const char *colon = strrchr(metrics_addr, ':');
        int hostlen = (int)(colon - metrics_addr);
        cli_logf(&lg, PC_LOG_INFO, NULL, "serving metrics at http://%.*s:%d/metrics",
                 hostlen > 0 ? hostlen : 7, hostlen > 0 ? metrics_addr : "0.0.0.0",
                 pc_metrics_port(metrics));
    }

    for (size_t i = 0; i < nw; i++) {
        run_worker *w = &ws[i];
        if (w->kind == W_SOURCE)
            cli_logf(&lg, PC_LOG_INFO, w->env.name, "starting ingest worker: %s -> topic %s",
                     w->src->type ? w->src->type : "source", w->src->topic);
        else
            cli_logf(&lg, PC_LOG_INFO, w->env.name,
                     "starting sink worker: topic %s -> table %s (%s)", w->sink->topic,
                     w->sink->table, w->sink->mode ? w->sink->mode : "insert");
        int prc = pthread_create(&w->thread, NULL, worker_main, w);
        if (prc != 0) {
            pc_error_set(&w->err, PC_ENOMEM, "cannot start a thread for worker '%s': %s",
                         w->env.name, strerror(prc));
            w->rc = PC_ENOMEM;
            atomic_store(&w->finished, true);
            g_stop = 1;
            break;
        }
        w->started = true;
        pc_metrics_set_running(metrics, w->env.name, true);
    }
    pthread_sigmask(SIG_SETMASK, &oldmask, NULL);

    int64_t start = mono_ms(), next_lag = start;
    bool draining = false, bounded_stop = false;
    bool has_sink = false;
    for (size_t i = 0; i < nw; i++)
        has_sink = has_sink || ws[i].kind == W_SINK;
    for (;;) {
        size_t running = 0;
        for (size_t i = 0; i < nw; i++) {
            run_worker *w = &ws[i];
            if (!w->started)
                continue;
            if (!atomic_load(&w->finished)) {
                running++;
                continue;
            }
            pthread_join(w->thread, NULL);
            w->started = false;
            pc_metrics_set_running(metrics, w->env.name, false);
            if (w->rc != 0) {
                cli_log(&lg, PC_LOG_ERROR, w->env.name, w->err.msg,
                        (const char *const[]){"code", pc_code_name(w->rc), NULL});
                if (!g_stop)
                    cli_logf(&lg, PC_LOG_WARN, NULL,
                             "worker '%s' failed: stopping the other workers", w->env.name);
                g_stop = 1;
            } else {
                char in[32], out[32];
                snprintf(in, sizeof in, "%llu",
                         (unsigned long long)atomic_load(&w->stats.records_in));
                snprintf(out, sizeof out, "%llu",
                         (unsigned long long)atomic_load(&w->stats.records_out));
                cli_log(&lg, PC_LOG_INFO, w->env.name, "worker stopped cleanly",
                        (const char *const[]){"records_in", in, "records_out", out, NULL});
            }
        }
        if (running == 0)
            break;
        if (g_stop && !draining) {
            draining = true;
            if (g_signals)
                cli_logf(&lg, PC_LOG_INFO, NULL,
                         "signal received: draining and committing (send it again to exit "
                         "immediately)");
        }
        /* Workers bound themselves by env->duration_ms; this is the backstop for the process. */
        if (duration_ms > 0 && !bounded_stop && mono_ms() - start >= duration_ms + 2000) {
            bounded_stop = true;
            g_stop = 1;
        }
        if (metrics != NULL && has_sink && mono_ms() >= next_lag) {
            refresh_lag(&ls, metrics, m, ws, nw, &lg);
            next_lag = mono_ms() + LAG_REFRESH_MS;
        }
        sleep_ms(100);
    }

    exit_code = EXIT_OK;
    size_t failed = 0;
    for (size_t i = 0; i < nw; i++)
        if (ws[i].rc != 0) {
            failed++;
            exit_code = EXIT_ERR;
        }
    if (failed > 0)
        for (size_t i = 0; i < nw; i++)
            if (ws[i].rc != 0)
                fprintf(stderr, "pipectl: run: worker '%s' (%s) failed: %s\n", ws[i].env.name,
                        kind_name(ws[i].kind), ws[i].err.msg);
    if (g_cli.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nw; i++) {
            run_worker *w = &ws[i];
            int64_t last = atomic_load(&w->stats.last_commit_ms);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "name",
                               w->env.name, "kind", kind_name(w->kind), "status",
                               w->rc == 0 ? "stopped" : "failed", "records_in",
                               (json_int_t)atomic_load(&w->stats.records_in), "records_out",
                               (json_int_t)atomic_load(&w->stats.records_out), "batches",
                               (json_int_t)atomic_load(&w->stats.batches), "errors",
                               (json_int_t)atomic_load(&w->stats.errors), "dead_letters",
                               (json_int_t)atomic_load(&w->stats.dead_letters), "last_commit_ms",
                               (json_int_t)last, "error", w->rc != 0 ? w->err.msg : NULL));
        }
        json_t *o = json_pack("{s:o, s:b}", "workers", arr, "ok", exit_code == EXIT_OK);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    }
done:
    pc_metrics_free(metrics);
    pc_kafka_free(ls.kafka);
    pc_pg_free(ls.pg);
    if (sigs_installed) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    if (lg_init)
        cli_logger_destroy(&lg);
    free(ws);
    pc_manifest_free(m);
    return exit_code;
}
