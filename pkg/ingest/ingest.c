/* ingest.c: the randomuser source worker. One loop: GET a page (libcurl, one reused easy handle
 * so the connection stays alive), scan it (scan.c: yajl events, no tree; each user stays a byte
 * range of the body), hand every user's text as it was served to an idempotent librdkafka
 * producer keyed by the configured JSON path, advance the page, wait the interval.
 * The whole body is held until it has parsed: a page cut short (a truncated 200) is retried
 * before any of its users is produced, so a retry never duplicates records.
 * A request that fails in a way that may pass (timeout, connection error, 5xx, 403/408, 429,
 * a body that is not the documented JSON) is retried for the same page after a full-jitter
 * exponential backoff, or after Retry-After on 429; a record without a usable key is skipped,
 * counted in dead_letters and logged with a sample. records_out counts delivery reports that
 * say "delivered", never produce calls. */
#include "ingest.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>

#include "ingest_int.h"
#include "kafka.h"

#define MAX_BODY_BYTES (64u * 1024u * 1024u)
#define FLUSH_TIMEOUT_MS 30000
#define MALFORMED_LOG_FIRST 10
/* The producer's queue is bounded by bytes: 8 MB is a page and a half of 5,000 users (1.1 KB
 * each), enough for the broker to drain one page while the next is fetched. Measured at 5,000
 * users per GET, 1M records (bench/ingest): 4, 8, 12 and 16 MB and the old 200,000-message bound
 * (up to 220 MB here) all ran at the same rate within the machine's noise; peak RSS was 29, 34,
 * 39, 44 and 143 MB. produce() waits on a full queue, serving delivery reports. */
#define QUEUE_MAX_MESSAGES "20000"
#define QUEUE_MAX_KBYTES "8192"

typedef struct ingest {
    const pc_manifest *m;
    const pc_mf_source *src;
    const char *bootstrap;
    const pc_worker_env *env;
    const char *keypath;
    CURL *curl;
    pc_buf body;
    pc_ingest_page page;
    char curl_err[CURL_ERROR_SIZE];
    rd_kafka_t *rk;
    uint64_t produced; /* records handed to the producer */
    uint64_t failed;   /* delivery reports with an error */
    char first_dr_err[256];
    bool denied;         /* the broker refused for want of an ACL: stop, say which */
    uint64_t malformed;  /* records skipped */
    int64_t deadline_ms; /* 0 = none */
    long timeout_ms;
    uint64_t rng;
} ingest;

/* ------------------------------------------------------------------ pure helpers */

int pc_ingest_url_escape(pc_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        if ((keep ? pc_buf_append(b, (const char *)&c, 1) : pc_buf_append(b, enc, 3)) < 0)
            return PC_ENOMEM;
    }
    return 0;
}

int pc_ingest_build_url(char **out, const char *base, int batch, const pc_kvlist *params, long page)
{
    pc_buf b = {0};
    int rc = pc_buf_puts(&b, base ? base : "");
    if (rc == 0)
        rc = pc_buf_printf(&b, "%cresults=%d", base && strchr(base, '?') ? '&' : '?', batch);
    for (size_t i = 0; rc == 0 && params && i < params->n; i++) {
        const pc_kv *kv = &params->items[i];
        if (pc_streq(kv->key, "results") || pc_streq(kv->key, "page"))
            continue;
        rc = pc_buf_append(&b, "&", 1);
        if (rc == 0)
            rc = pc_ingest_url_escape(&b, kv->key ? kv->key : "");
        if (rc == 0 && kv->value)
            rc = pc_buf_append(&b, "=", 1);
        if (rc == 0 && kv->value)
            rc = pc_ingest_url_escape(&b, kv->value);
    }
    if (rc == 0)
        rc = pc_buf_printf(&b, "&page=%ld", page);
    if (rc != 0) {
        pc_buf_free(&b);
        return PC_ENOMEM;
    }
    *out = pc_buf_detach(&b);
    return *out ? 0 : PC_ENOMEM;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x2545F4914F6CDD1Dull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

uint32_t pc_ingest_backoff_ms(unsigned attempt, uint64_t *rng)
{
    uint64_t cap = PC_INGEST_BACKOFF_BASE_MS;
    for (unsigned i = 0; i < attempt && cap < PC_INGEST_BACKOFF_CAP_MS; i++)
        cap *= 2;
    if (cap > PC_INGEST_BACKOFF_CAP_MS)
        cap = PC_INGEST_BACKOFF_CAP_MS;
    return (uint32_t)(xorshift(rng) % (cap + 1));
}

/* ------------------------------------------------------------------ plumbing */

__attribute__((format(printf, 3, 4))) static void ilog(const ingest *g, pc_log_level lvl,
                                                       const char *fmt, ...)
{
    if (!g->env->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *fields[] = {"source", g->src->name ? g->src->name : "", "topic",
                            g->src->topic ? g->src->topic : "", NULL};
    g->env->log(g->env->log_ctx, lvl, g->env->name ? g->env->name : g->src->name, msg, fields);
}

static bool time_up(const ingest *g)
{
    return g->deadline_ms && pc_mono_ms() >= g->deadline_ms;
}

static bool stopping(const ingest *g)
{
    return (g->env->stop && *g->env->stop) || time_up(g) || g->denied ||
           (g->env->max_records && g->produced >= g->env->max_records);
}

/* sleeps up to ms while serving delivery reports; returns early when stopping */
static void nap(ingest *g, int64_t ms)
{
    int64_t end = pc_mono_ms() + ms;
    for (;;) {
        int64_t left = end - pc_mono_ms();
        if (left <= 0 || stopping(g))
            return;
        rd_kafka_poll(g->rk, (int)(left < 100 ? left : 100));
    }
}

/* a short printable sample of a body or record for logs */
static void sample_of(const char *s, size_t len, char *out, size_t outsz)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < outsz; i++)
        out[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '.';
    if (len > n && n + 4 <= outsz) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* ------------------------------------------------------------------ Kafka */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    ingest *g = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&g->env->stats->records_out, 1);
        atomic_store(&g->env->stats->last_commit_ms, pc_wall_ms());
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        g->denied = true;
    if (g->failed++ == 0)
        snprintf(g->first_dr_err, sizeof g->first_dr_err, "%s", rd_kafka_err2str(m->err));
    atomic_fetch_add(&g->env->stats->errors, 1);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    ingest *g = opaque;
    atomic_fetch_add(&g->env->stats->errors, 1);
    /* the idempotent producer's InitProducerId needs WRITE on a topic (Kafka >= 3.0) */
    if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
        (err == RD_KAFKA_RESP_ERR__FATAL && reason != NULL &&
         strstr(reason, "uthorization") != NULL))
        g->denied = true;
    ilog(g, err == RD_KAFKA_RESP_ERR__FATAL ? PC_LOG_ERROR : PC_LOG_WARN,
         "Kafka producer for topic %s at %s: %s", g->src->topic, g->bootstrap, reason);
}

/* librdkafka's own log lines go to the worker's logger (served on our thread by rd_kafka_poll,
 * through log.queue), never to stderr */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    ingest *g = rd_kafka_opaque(rk);
    if (!g)
        return;
    ilog(g,
         level <= 3   ? PC_LOG_ERROR
         : level <= 4 ? PC_LOG_WARN
         : level <= 6 ? PC_LOG_INFO
                      : PC_LOG_DEBUG,
         "librdkafka %s: %s", fac, buf);
}

static int producer_new(ingest *g, pc_error *err)
{
    char errstr[512];
    char client_id[256];
    snprintf(client_id, sizeof client_id, "pipectl-ingest-%s", g->src->name ? g->src->name : "");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"client.id", client_id},
                           {"enable.idempotence", "true"},
                           {"acks", "all"},
                           {"linger.ms", "5"},
                           {"compression.type", "lz4"},
                           {"message.timeout.ms", "60000"},
                           {"queue.buffering.max.messages", QUEUE_MAX_MESSAGES},
                           {"queue.buffering.max.kbytes", QUEUE_MAX_KBYTES},
                           {"log.queue", "true"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return pc_error_set(err, PC_EINVAL, "Kafka producer for topic %s at %s: %s=%s: %s",
                                g->src->topic, g->bootstrap, kv[i][0], kv[i][1], errstr);
        }
    }
    if (pc_kafka_conf_client(conf, g->m, &g->src->auth, err) != 0) {
        rd_kafka_conf_destroy(conf);
        pc_error_prefix(err, "source %s", g->src->name ? g->src->name : "");
        return err->code;
    }
    rd_kafka_conf_set_opaque(conf, g);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    g->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!g->rk) {
        rd_kafka_conf_destroy(conf);
        return pc_error_set(err, PC_EUNAVAIL, "Kafka producer for topic %s at %s: %s",
                            g->src->topic, g->bootstrap, errstr);
    }
    rd_kafka_set_log_queue(g->rk, NULL); /* NULL: the main queue, served by rd_kafka_poll */
    return 0;
}

/* 0 enqueued (librdkafka copies key and value); 1 not enqueued because the worker is stopping
 * while the queue is full; <0 fatal producer error */
static int produce(ingest *g, const char *key, size_t keylen, const char *value, size_t len,
                   pc_error *err)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(g->rk, RD_KAFKA_V_TOPIC(g->src->topic), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* a broker away fills the bounded queue in seconds: a stop request is honoured
             * here too (this record is not produced, and not counted) */
            if (g->env->stop && *g->env->stop)
                return 1;
            rd_kafka_poll(g->rk, 100);
            continue;
        }
        char fatal[512] = "";
        if (e == RD_KAFKA_RESP_ERR__FATAL)
            rd_kafka_fatal_error(g->rk, fatal, sizeof fatal);
        if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
            strstr(fatal, "uthorization") != NULL) {
            g->denied = true;
            char *msg = pc_kafka_acl_missing(g->m, &g->src->auth, "topic", g->src->topic, "write");
            int rc = pc_error_set(err, PC_EREFUSED, "source %s: %s (%s)", g->src->name,
                                  msg ? msg : "Kafka denied writing the topic (missing ACL)",
                                  *fatal ? fatal : rd_kafka_err2str(e));
            free(msg);
            return rc;
        }
        return pc_error_set(err, PC_EUNAVAIL, "Kafka producer for topic %s at %s: produce: %s%s%s",
                            g->src->topic, g->bootstrap, rd_kafka_err2str(e), *fatal ? ": " : "",
                            fatal);
    }
}

/* ------------------------------------------------------------------ HTTP */

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    ingest *g = ud;
    size_t len = size * n;
    if (g->body.len + len > MAX_BODY_BYTES || pc_buf_append(&g->body, ptr, len) < 0)
        return 0; /* curl reports CURLE_WRITE_ERROR */
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    const ingest *g = ud;
    return ((g->env->stop && *g->env->stop) || time_up(g)) ? 1 : 0;
}

static int curl_new(ingest *g, pc_error *err)
{
    g->curl = curl_easy_init();
    if (!g->curl)
        return pc_error_set(err, PC_ENOMEM, "source %s: cannot create an HTTP handle",
                            g->src->name);
    CURL *c = g->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, g->timeout_ms < 5000 ? g->timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, g->curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, g);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pipectl-ingest/0.1");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    return 0;
}

/* GETs one page until it parses. 0: g->body holds it and g->page its users; 1: stopping;
 * <0: fatal. */
static int fetch_page(ingest *g, long page, pc_error *err)
{
    char *url = NULL;
    int rc = pc_ingest_build_url(&url, g->src->url, g->src->batch, &g->src->params, page);
    if (rc < 0)
        return pc_error_set(err, rc, "source %s: out of memory building the URL", g->src->name);
    curl_easy_setopt(g->curl, CURLOPT_URL, url);
    for (unsigned attempt = 0;; attempt++) {
        char why[768], sample[200];
        int64_t wait_ms = -1;
        if ((g->env->stop && *g->env->stop) || time_up(g)) {
            rc = 1;
            goto done;
        }
        g->body.len = 0;
        if (g->body.data)
            g->body.data[0] = '\0';
        g->curl_err[0] = '\0';
        CURLcode cc = curl_easy_perform(g->curl);
        long status = 0;
        curl_easy_getinfo(g->curl, CURLINFO_RESPONSE_CODE, &status);
        sample_of(g->body.data ? g->body.data : "", g->body.len, sample, 120);
        if (cc == CURLE_ABORTED_BY_CALLBACK) {
            rc = 1;
            goto done;
        }
        if (cc != CURLE_OK) {
            snprintf(why, sizeof why, "%s", *g->curl_err ? g->curl_err : curl_easy_strerror(cc));
        } else if (status == 429) {
            curl_off_t ra = -1;
            if (curl_easy_getinfo(g->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
                wait_ms = (ra > 300 ? 300 : (int64_t)ra) * 1000;
            snprintf(why, sizeof why, "HTTP 429 (rate limited, Retry-After %lds): %s",
                     (long)(wait_ms > 0 ? wait_ms / 1000 : 0), sample);
        } else if (status >= 500 || status == 403 || status == 408) {
            snprintf(why, sizeof why, "HTTP %ld: %s", status, sample);
        } else if (status != 200) {
            rc = pc_error_set(err, PC_EREFUSED,
                              "source %s: GET %s (page %ld): HTTP %ld: %s; check the source url "
                              "and params in the manifest",
                              g->src->name, g->src->url, page, status, sample);
            goto done;
        } else {
            rc = pc_ingest_scan(&g->page, g->body.data, g->body.len, g->keypath);
            if (rc == 0)
                goto done;
            if (rc != PC_EINVAL) {
                rc = pc_error_set(err, rc, "source %s: out of memory reading page %ld",
                                  g->src->name, page);
                goto done;
            }
            atomic_fetch_add(&g->env->stats->dead_letters, 1);
            snprintf(why, sizeof why,
                     "malformed response (%s; %zu bytes, not the documented JSON with a results "
                     "array): %s",
                     g->page.why, g->body.len, sample);
        }
        atomic_fetch_add(&g->env->stats->errors, 1);
        if (wait_ms < 0)
            wait_ms = pc_ingest_backoff_ms(attempt, &g->rng);
        ilog(g, PC_LOG_WARN, "GET %s page %ld failed (attempt %u): %s; retrying in %lld ms",
             g->src->url, page, attempt + 1, why, (long long)wait_ms);
        nap(g, wait_ms);
    }
done:
    free(url);
    return rc;
}

/* Produces the users of the page just fetched, in order; stops at max_records. */
static int produce_results(ingest *g, long page, pc_error *err)
{
    const pc_ingest_page *p = &g->page;
    atomic_fetch_add(&g->env->stats->records_in, p->n);
    for (size_t i = 0; i < p->n; i++) {
        if (g->env->max_records && g->produced >= g->env->max_records)
            break;
        const pc_ingest_rec *r = &p->recs[i];
        const char *value = g->body.data + r->off;
        if (!r->ok) {
            atomic_fetch_add(&g->env->stats->dead_letters, 1);
            if (g->malformed++ < MALFORMED_LOG_FIRST || g->malformed % 100 == 0) {
                char sample[200];
                sample_of(value, r->len, sample, 160);
                ilog(g, PC_LOG_WARN,
                     "malformed record skipped (page %ld, #%zu): no string at key path %s "
                     "(%llu skipped so far): %s",
                     page, i, g->keypath, (unsigned long long)g->malformed, sample);
            }
            continue;
        }
        int rc = produce(g, p->keys.data + r->key_off, r->key_len, value, r->len, err);
        if (rc < 0)
            return rc;
        if (rc > 0)
            break; /* stopping while the queue is full */
        g->produced++;
    }
    rd_kafka_poll(g->rk, 0);
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pc_ingest_run(const pc_manifest *m, const pc_mf_source *src, const pc_worker_env *env,
                  pc_error *err)
{
    const char *bootstrap = m != NULL ? m->kafka_bootstrap : NULL;
    if (!src || !src->url || !src->topic || !bootstrap || !env || !env->stats)
        return pc_error_set(err, PC_EINVAL,
                            "ingest: a source with url and topic, a Kafka bootstrap and worker "
                            "stats are required");
    ingest g = {.m = m,
                .src = src,
                .bootstrap = bootstrap,
                .env = env,
                .keypath = src->key && *src->key ? src->key : "login.uuid",
                .timeout_ms = PC_INGEST_DEFAULT_TIMEOUT_MS};
    g.rng = (uint64_t)pc_wall_ms() ^ ((uint64_t)(uintptr_t)&g << 16);
    const char *t = getenv("PC_INGEST_TIMEOUT_MS"); /* tests shorten the per-request timeout */
    if (t && atol(t) > 0)
        g.timeout_ms = atol(t);
    if (env->duration_ms > 0)
        g.deadline_ms = pc_mono_ms() + env->duration_ms;
    long page = 1;
    const char *p0 = pc_kvlist_get(&src->params, "page");
    if (p0 && atol(p0) > 0)
        page = atol(p0);
    int rc;
    pthread_once(&curl_once, curl_init_once);
    if ((rc = producer_new(&g, err)) < 0 || (rc = curl_new(&g, err)) < 0)
        goto done;
    ilog(&g, PC_LOG_INFO, "ingest from %s (batch %d, every %d ms) into topic %s at %s", src->url,
         src->batch, src->interval_ms, src->topic, bootstrap);

    while (!stopping(&g)) {
        int64_t t0 = pc_worker_clock_us(); /* the dashboard's batch latency */
        rc = fetch_page(&g, page, err);
        if (rc == 1)
            break;
        if (rc < 0)
            goto flush;
        rc = produce_results(&g, page, err);
        if (rc < 0)
            goto flush;
        atomic_fetch_add(&env->stats->batches, 1);
        pc_worker_batch_timed(env->stats, t0);
        page = page >= 10000 ? 1 : page + 1; /* the API's pages stop at 10000 */
        if (src->interval_ms > 0)
            nap(&g, src->interval_ms);
        else
            rd_kafka_poll(g.rk, 0);
    }
    rc = 0;

flush:
    /* drain what was produced, even when stopping: nothing is left undelivered on a clean stop */
    {
        int64_t end = pc_mono_ms() + FLUSH_TIMEOUT_MS;
        while (rd_kafka_outq_len(g.rk) > 0 && pc_mono_ms() < end)
            rd_kafka_flush(g.rk, 100);
        int left = rd_kafka_outq_len(g.rk);
        if (left > 0 && rc == 0)
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "Kafka producer for topic %s at %s: %d records still undelivered "
                              "after %d s; check that the broker is reachable",
                              src->topic, bootstrap, left, FLUSH_TIMEOUT_MS / 1000);
        if (g.denied && rc == 0) {
            char *msg = pc_kafka_acl_missing(m, &src->auth, "topic", src->topic, "write");
            rc = pc_error_set(err, PC_EREFUSED, "source %s: %s", src->name,
                              msg ? msg : "Kafka denied writing the topic (missing ACL)");
            free(msg);
        }
        if (g.failed > 0 && rc == 0)
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "Kafka producer for topic %s at %s: %llu records failed delivery "
                              "(first: %s)",
                              src->topic, bootstrap, (unsigned long long)g.failed, g.first_dr_err);
    }
    ilog(&g, rc == 0 ? PC_LOG_INFO : PC_LOG_ERROR,
         "ingest stopped: %llu records produced, %llu delivered, %llu malformed skipped",
         (unsigned long long)g.produced, (unsigned long long)atomic_load(&env->stats->records_out),
         (unsigned long long)g.malformed);

done:
    pc_ingest_page_dispose(&g.page);
    if (g.curl)
        curl_easy_cleanup(g.curl);
    if (g.rk)
        rd_kafka_destroy(g.rk);
    pc_buf_free(&g.body);
    return rc;
}
