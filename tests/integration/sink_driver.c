/* sink_driver.c: pc-sink-driver, a test harness for pkg/sink.
 *
 *   pc-sink-driver -f MANIFEST SINK [--max-records N] [--duration-ms D]
 *       runs pc_sink_run for the named sink until SIGTERM/SIGINT, N records or D ms; exit 0 on
 *       a clean stop, 1 with the error on stderr otherwise.
 *   pc-sink-driver -f MANIFEST SINK --produce N --seed S [--start I] [--bad K] [--out FILE]
 *       writes N randomuser-shaped users (deterministic for S and index) keyed by login.uuid into
 *       the sink's topic, then K malformed records (not JSON, bad uuid, impossible date, missing
 *       NOT NULL email) keyed "bad-<i>"; FILE receives the good users as JSON lines.
 *   Additive options for bench/sink:
 *     --rate R    (with --produce) paces the good users at R records/s (linger.ms 5)
 *     --stamp     (with --produce) adds "pc_sent_us": the wall clock in microseconds taken right
 *                 before each record is handed to the producer (end-to-end latency probes)
 *     --rusage    at exit prints "pc-sink-driver: elapsed_ms=E peak_rss_kb=K" on stderr: E the
 *                 time spent in pc_sink_run (or producing), K getrusage's ru_maxrss */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "manifest.h"
#include "sink.h"
#include "worker.h"

static atomic_int g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void log_stderr(void *ctx, pc_log_level level, const char *worker, const char *msg,
                       const char *const *fields)
{
    (void)ctx;
    (void)fields;
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr, "%lld.%03ld %s %s: %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
            names[level], worker, msg);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static const char *const FIRST[] = {"Faith", "Noah", "Émilie", "Lars", "Aarav", "Maja", "Zoë",
                                    "Oğuz"};
static const char *const LAST[] = {"Osullivan", "O'Brien", "Müller", "Nguyen", "Smith",
                                   "Kowalski", "Ødegård", "Tab\tSeparated"};
static const char *const STREET[] = {"Albert Road", "Back\\slash Lane", "Rue de l'Église",
                                     "Line\nBreak Street", "Main St", "Hauptstraße"};
static const char *const NAT[] = {"IE", "GB", "NO", "US", "CA", "TR", "IR", "DE"};

static json_t *make_user(uint64_t seed, uint64_t i)
{
    uint64_t x = seed * 1000003ULL + i;
    uint64_t a = splitmix(&x), b = splitmix(&x), r = splitmix(&x);
    char uuid[37], buf[128], dob[40], reg[40];
    snprintf(uuid, sizeof uuid, "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-%04" PRIx64
             "-%012" PRIx64, a >> 32, (a >> 16) & 0xffff, a & 0xfff,
             (uint64_t)((0x8000 | (b >> 48)) & 0xbfff), (uint64_t)(b & 0xffffffffffffULL));
    const char *first = FIRST[r % 8], *last = LAST[(r >> 8) % 8];
    const char *nat = NAT[(r >> 16) % 8];
    json_t *u = json_object();
    json_object_set_new(u, "gender", json_string((r >> 20) & 1 ? "female" : "male"));
    json_object_set_new(u, "name", json_pack("{s:s,s:s,s:s}", "title", "Ms", "first", first,
                                             "last", last));
    json_t *postcode;
    if (!strcmp(nat, "GB") || !strcmp(nat, "CA"))
        postcode = json_string("K1A 0B1");
    else if (!strcmp(nat, "NO"))
        postcode = json_string("0150"); /* leading zero kept */
    else
        postcode = json_integer((json_int_t)(10000 + r % 89999));
    snprintf(buf, sizeof buf, "%.4f", (double)(int64_t)(r % 180000) / 1000.0 - 90.0);
    json_t *loc = json_pack("{s:{s:I,s:s},s:s,s:s,s:s,s:o,s:{s:s,s:s},s:{s:s,s:s}}", "street",
                            "number", (json_int_t)(r % 9999), "name", STREET[(r >> 24) % 6],
                            "city", "Bandon", "state", "Limerick", "country", "Ireland",
                            "postcode", postcode, "coordinates", "latitude", buf, "longitude",
                            "60.1352", "timezone", "offset", "-9:00", "description", "Alaska");
    json_object_set_new(u, "location", loc);
    snprintf(buf, sizeof buf, "user%" PRIu64 ".%" PRIu64 "@example.com", seed, i);
    json_object_set_new(u, "email", json_string(buf));
    snprintf(buf, sizeof buf, "user%" PRIu64 "_%" PRIu64, seed, i);
    json_object_set_new(u, "login",
                        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "uuid", uuid, "username", buf,
                                  "password", "poppop", "salt", "z4SxxWUz", "md5",
                                  "f1502a72ed3488d31652826a7646838b", "sha1",
                                  "ce9bc4bec0e5a596aa49be041e8b2f46e45c6784", "sha256",
                                  "16fe95d7a383c40c39f0d98ffe00244a65790e2935ca3efb2face8f8e5443074"));
    snprintf(dob, sizeof dob, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", 1940 + (int)(r % 60),
             1 + (int)(r % 12), 1 + (int)(r % 28), (int)(r % 24), (int)(r % 60), (int)(r % 59),
             (int)(r % 1000));
    snprintf(reg, sizeof reg, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", 2002 + (int)(r % 20),
             1 + (int)((r >> 4) % 12), 1 + (int)((r >> 8) % 28), (int)((r >> 3) % 24),
             (int)((r >> 5) % 60), (int)((r >> 7) % 59), (int)((r >> 9) % 1000));
    json_object_set_new(u, "dob", json_pack("{s:s,s:i}", "date", dob, "age", 40));
    json_object_set_new(u, "registered", json_pack("{s:s,s:i}", "date", reg, "age", 10));
    json_object_set_new(u, "phone", json_string("011-516-6175"));
    json_object_set_new(u, "cell", json_string("081-186-9802"));
    if (!strcmp(nat, "TR") || !strcmp(nat, "IR"))
        json_object_set_new(u, "id", json_pack("{s:s,s:n}", "name", "", "value"));
    else
        json_object_set_new(u, "id", json_pack("{s:s,s:s}", "name", "PPS", "value", "2526235T"));
    snprintf(buf, sizeof buf, "https://randomuser.me/api/portraits/med/women/%d.jpg",
             (int)(r % 99));
    json_object_set_new(u, "picture", json_pack("{s:s,s:s,s:s}", "large", buf, "medium", buf,
                                                "thumbnail", buf));
    json_object_set_new(u, "nat", json_string(nat));
    return u;
}

static int g_dr_errors = 0;
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        g_dr_errors++;
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static int produce_one(rd_kafka_t *p, const char *topic, const char *key, const char *val)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (!e)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(p, 50);
    }
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --rate: waits until record number i (from 0) is due, serving delivery reports meanwhile */
static void pace(rd_kafka_t *p, int64_t t0_us, uint64_t i, double rate)
{
    int64_t due = t0_us + (int64_t)((double)i * 1e6 / rate);
    for (;;) {
        int64_t left = due - clock_us(CLOCK_MONOTONIC);
        if (left <= 0)
            return;
        rd_kafka_poll(p, 0);
        struct timespec ts = {0, (long)(left < 1000 ? left : 1000) * 1000L};
        nanosleep(&ts, NULL);
    }
}

static int produce(const pc_manifest *m, const pc_mf_sink *sink, uint64_t n, uint64_t seed,
                   uint64_t start, uint64_t bad, const char *out_path, double rate, bool stamp)
{
    char es[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", m->kafka_bootstrap, es, sizeof es) ||
        rd_kafka_conf_set(c, "enable.idempotence", "true", es, sizeof es) ||
        rd_kafka_conf_set(c, "linger.ms", rate > 0 ? "5" : "20", es, sizeof es) ||
        rd_kafka_conf_set(c, "compression.type", "lz4", es, sizeof es)) {
        fprintf(stderr, "config: %s\n", es);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof es);
    if (!p) {
        fprintf(stderr, "producer: %s\n", es);
        return 1;
    }
    if (rate > 0) {
        /* latency probes time the pipeline, not the producer's start: connect, fetch the
         * topic's metadata and give the idempotent producer time to get its producer id before
         * the first stamped record */
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(p, sink->topic, NULL);
        if (rkt && rd_kafka_metadata(p, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        rd_kafka_poll(p, 1000);
    }
    FILE *out = out_path ? fopen(out_path, "w") : NULL;
    int64_t t0 = clock_us(CLOCK_MONOTONIC);
    for (uint64_t i = start; i < start + n; i++) {
        if (rate > 0)
            pace(p, t0, i - start, rate);
        json_t *u = make_user(seed, i);
        if (stamp)
            json_object_set_new(u, "pc_sent_us", json_integer(clock_us(CLOCK_REALTIME)));
        char *s = json_dumps(u, JSON_COMPACT);
        const char *key = json_string_value(json_object_get(json_object_get(u, "login"), "uuid"));
        if (produce_one(p, sink->topic, key, s))
            return 1;
        if (out)
            fprintf(out, "%s\n", s);
        free(s);
        json_decref(u);
        rd_kafka_poll(p, 0);
    }
    for (uint64_t i = 0; i < bad; i++) {
        char key[32];
        snprintf(key, sizeof key, "bad-%" PRIu64, i);
        json_t *u = make_user(seed + 777, i);
        char *s = NULL;
        switch (i % 4) {
        case 0:
            s = strdup("{\"this is\": not json");
            break;
        case 1:
            json_object_set_new(json_object_get(u, "login"), "uuid", json_string("not-a-uuid"));
            break;
        case 2:
            json_object_set_new(json_object_get(u, "dob"), "date",
                                json_string("1990-02-30T10:00:00Z"));
            break;
        default:
            json_object_del(u, "email");
            break;
        }
        if (!s)
            s = json_dumps(u, JSON_COMPACT);
        if (produce_one(p, sink->topic, key, s))
            return 1;
        free(s);
        json_decref(u);
    }
    rd_kafka_flush(p, 60000);
    int left = rd_kafka_outq_len(p);
    rd_kafka_destroy(p);
    if (out)
        fclose(out);
    if (left || g_dr_errors) {
        fprintf(stderr, "produce: %d undelivered, %d failed\n", left, g_dr_errors);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *out = NULL;
    uint64_t max_records = 0, nproduce = 0, seed = 1, start = 0, bad = 0;
    int64_t duration = 0;
    bool producing = false, stamp = false, rusage = false;
    double rate = 0;
    static const struct option opts[] = {{"max-records", required_argument, NULL, 'n'},
                                         {"duration-ms", required_argument, NULL, 'd'},
                                         {"produce", required_argument, NULL, 'p'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"start", required_argument, NULL, 'S'},
                                         {"bad", required_argument, NULL, 'b'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"stamp", no_argument, NULL, 'T'},
                                         {"rusage", no_argument, NULL, 'R'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': file = optarg; break;
        case 'n': max_records = strtoull(optarg, NULL, 10); break;
        case 'd': duration = strtoll(optarg, NULL, 10); break;
        case 'p': nproduce = strtoull(optarg, NULL, 10); producing = true; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'S': start = strtoull(optarg, NULL, 10); break;
        case 'b': bad = strtoull(optarg, NULL, 10); producing = true; break;
        case 'o': out = optarg; break;
        case 'r': rate = strtod(optarg, NULL); break;
        case 'T': stamp = true; break;
        case 'R': rusage = true; break;
        default:
            fprintf(stderr, "usage: pc-sink-driver -f MANIFEST SINK [--max-records N] "
                            "[--duration-ms D] | --produce N --seed S [--bad K] [--out FILE]\n");
            return 2;
        }
    }
    if (!file || optind + 1 != argc) {
        fprintf(stderr, "usage: pc-sink-driver -f MANIFEST SINK [options]\n");
        return 2;
    }
    pc_manifest *m = NULL;
    pc_diags diags = {0};
    pc_error err = {0};
    if (pc_manifest_load(&m, file, NULL, NULL, &diags, &err)) {
        for (size_t i = 0; i < diags.n; i++) {
            char *d = pc_diag_format(&diags, i);
            fprintf(stderr, "%s\n", d ? d : "?");
            free(d);
        }
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    pc_diags_free(&diags);
    const pc_mf_sink *sink = NULL;
    for (size_t i = 0; i < m->nsinks; i++)
        if (!strcmp(m->sinks[i].name, argv[optind]))
            sink = &m->sinks[i];
    if (!sink) {
        fprintf(stderr, "error: no sink named %s in %s\n", argv[optind], file);
        pc_manifest_free(m);
        return 1;
    }
    int rc;
    int64_t t_start = clock_us(CLOCK_MONOTONIC);
    if (producing) {
        rc = produce(m, sink, nproduce, seed, start, bad, out, rate, stamp);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        pc_worker_stats stats;
        memset(&stats, 0, sizeof stats);
        pc_worker_env env = {.name = sink->name, .stop = &g_stop, .stats = &stats,
                             .log = log_stderr, .log_ctx = NULL, .max_records = max_records,
                             .duration_ms = duration};
        rc = pc_sink_run(m, sink, &env, &err) ? 1 : 0;
        fprintf(stderr, "pc-sink-driver: records_in=%" PRIuFAST64 " records_out=%" PRIuFAST64
                        " batches=%" PRIuFAST64 " dead_letters=%" PRIuFAST64 " errors=%" PRIuFAST64
                        "\n",
                (uint_fast64_t)atomic_load(&stats.records_in),
                (uint_fast64_t)atomic_load(&stats.records_out),
                (uint_fast64_t)atomic_load(&stats.batches),
                (uint_fast64_t)atomic_load(&stats.dead_letters),
                (uint_fast64_t)atomic_load(&stats.errors));
        if (rc)
            fprintf(stderr, "error: %s\n", err.msg);
    }
    if (rusage) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "pc-sink-driver: elapsed_ms=%" PRId64 " peak_rss_kb=%ld\n",
                (clock_us(CLOCK_MONOTONIC) - t_start) / 1000, ru.ru_maxrss);
    }
    pc_manifest_free(m);
    return rc;
}
