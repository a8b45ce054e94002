/* metrics.c: the metrics endpoint of `pipectl run --metrics` and `pipectl dashboard`.
 * libmicrohttpd serves, from its own polling thread:
 *   GET /metrics             Prometheus text
 *   GET /api/metrics.json    the same figures as JSON, plus a few minutes of history
 *   GET / and /dashboard     the dashboard page (dashboard_html.c), which polls the JSON
 * Both renderers read one snapshot (snapshot_take): the workers' atomic counters as of now, and
 * what the observer last published, so /metrics and the JSON cannot disagree.
 * Figures that need a server (consumer lag, pg_stat_archiver, the backup repository, drift) are
 * never fetched in a request: an observer thread calls cmd/'s observe function every few seconds
 * and publishes the result under the lock; a sampler thread appends a history point every
 * PC_METRICS_SAMPLE_MS so a page opened at 3 a.m. shows the last minutes at once.
 * Nothing here prints: libmicrohttpd's own error log is left off. */
#include "worker.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------- worker clock ---------- */

int64_t pc_worker_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void pc_worker_batch_timed(pc_worker_stats *s, int64_t start_us)
{
    int64_t d = pc_worker_clock_us() - start_us;
    atomic_fetch_add(&s->batch_us, (uint_fast64_t)(d > 0 ? d : 0));
    atomic_fetch_add(&s->batches_timed, 1);
}

/* ---------- state ---------- */

typedef struct metrics_worker {
    char *name;
    char *kind;
    pc_worker_stats *stats; /* borrowed */
    atomic_int running;
} metrics_worker;

typedef struct metrics_lag {
    char *worker;
    char *topic;
    int partition;
    int64_t lag;
} metrics_lag;

/* Per worker, per history point: the counters the page turns into rates. */
enum { H_IN, H_OUT, H_ERRORS, H_DEAD, H_BATCH_US, H_BATCHES_TIMED, H_N };
static const char *const hist_names[H_N] = {"records_in", "records_out", "errors",
                                            "dead_letters", "batch_us", "batches_timed"};
#define HIST_LAG_MAX 16 /* lag series (sinks) the history follows */

struct pc_metrics {
    metrics_worker *workers;
    size_t nworkers;
    char *pipeline, *mode;
    pthread_mutex_t lock; /* guards lags, obs and the history */
    metrics_lag *lags;
    size_t nlags;
    pc_metrics_observed obs;
    /* history: a ring of PC_METRICS_HISTORY points, hist_len of them filled, the oldest at
     * hist_head when full */
    int64_t *hist_t;
    uint64_t *hist_w;  /* [point][worker][H_N] */
    int64_t *hist_lag; /* [point][HIST_LAG_MAX], -1 = unknown */
    char *lag_series[HIST_LAG_MAX];
    size_t hist_len, hist_head;
    struct MHD_Daemon *daemon;
    int port;
    atomic_int stop;
    pthread_t sampler, observer;
    bool sampler_on, observer_on;
    pc_metrics_observe_fn observe;
    void *observe_ctx;
    int64_t observe_interval_ms;
};

void pc_metrics_observed_dispose(pc_metrics_observed *o)
{
    if (o == NULL)
        return;
    free(o->archive_mode);
    free(o->last_archived_wal);
    free(o->last_failed_wal);
    free(o->backup_repository);
    free(o->backup_newest_id);
    free(o->error);
    memset(o, 0, sizeof *o);
    o->backup_late = -1;
    o->drift = -1;
}

int pc_metrics_new(pc_metrics **out, pc_error *err)
{
    *out = NULL;
    pc_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory creating the metrics endpoint");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return pc_error_set(err, PC_ENOMEM, "cannot create a mutex for the metrics endpoint");
    }
    pc_metrics_observed_dispose(&m->obs); /* unknowns are -1 */
    atomic_init(&m->stop, 0);
    *out = m;
    return 0;
}

int pc_metrics_set_identity(pc_metrics *m, const char *pipeline, const char *mode, pc_error *err)
{
    if (m->daemon != NULL)
        return pc_error_set(err, PC_EINVAL, "metrics endpoint: identity set after it started");
    free(m->pipeline);
    free(m->mode);
    m->pipeline = pc_strdup(pipeline ? pipeline : "");
    m->mode = pc_strdup(mode ? mode : "");
    if (m->pipeline == NULL || m->mode == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory naming the metrics endpoint");
    return 0;
}

int pc_metrics_add_worker(pc_metrics *m, const char *name, const char *kind, pc_worker_stats *stats,
                          pc_error *err)
{
    if (m->daemon != NULL || m->hist_t != NULL)
        return pc_error_set(err, PC_EINVAL,
                            "metrics endpoint: worker '%s' added after the server started", name);
    metrics_worker *w = realloc(m->workers, (m->nworkers + 1) * sizeof *w);
    if (w == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory adding worker '%s' to the metrics",
                            name);
    m->workers = w;
    w = &m->workers[m->nworkers];
    memset(w, 0, sizeof *w);
    w->name = pc_strdup(name);
    w->kind = pc_strdup(kind);
    w->stats = stats;
    atomic_init(&w->running, 0);
    if (w->name == NULL || w->kind == NULL) {
        free(w->name);
        free(w->kind);
        return pc_error_set(err, PC_ENOMEM, "out of memory adding worker '%s' to the metrics",
                            name);
    }
    m->nworkers++;
    return 0;
}

void pc_metrics_set_running(pc_metrics *m, const char *worker, bool running)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nworkers; i++)
        if (strcmp(m->workers[i].name, worker) == 0)
            atomic_store(&m->workers[i].running, running ? 1 : 0);
}

int pc_metrics_set_lag(pc_metrics *m, const char *worker, const char *topic, int partition,
                       int64_t lag, pc_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nlags; i++) {
        metrics_lag *l = &m->lags[i];
        if (l->partition == partition && strcmp(l->worker, worker) == 0 &&
            strcmp(l->topic, topic) == 0) {
            if (lag >= 0) {
                l->lag = lag;
            } else { /* forget: move the last entry into the hole */
                free(l->worker);
                free(l->topic);
                m->lags[i] = m->lags[--m->nlags];
            }
            goto done;
        }
    }
    if (lag < 0)
        goto done;
    metrics_lag *nl = realloc(m->lags, (m->nlags + 1) * sizeof *nl);
    if (nl == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory recording the lag of worker '%s'", worker);
        goto done;
    }
    m->lags = nl;
    nl = &m->lags[m->nlags];
    nl->worker = pc_strdup(worker);
    nl->topic = pc_strdup(topic);
    nl->partition = partition;
    nl->lag = lag;
    if (nl->worker == NULL || nl->topic == NULL) {
        free(nl->worker);
        free(nl->topic);
        rc = pc_error_set(err, PC_ENOMEM, "out of memory recording the lag of worker '%s'", worker);
        goto done;
    }
    m->nlags++;
done:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void pc_metrics_publish(pc_metrics *m, pc_metrics_observed *o)
{
    pthread_mutex_lock(&m->lock);
    pc_metrics_observed old = m->obs;
    m->obs = *o;
    pthread_mutex_unlock(&m->lock);
    pc_metrics_observed_dispose(&old);
    memset(o, 0, sizeof *o);
    o->backup_late = -1;
    o->drift = -1;
}

/* ---------- history ---------- */

/* Index of the lag series for worker (adding it while there is room), or -1. Under the lock. */
static int lag_series(pc_metrics *m, const char *worker)
{
    for (int i = 0; i < HIST_LAG_MAX && m->lag_series[i] != NULL; i++)
        if (strcmp(m->lag_series[i], worker) == 0)
            return i;
    for (int i = 0; i < HIST_LAG_MAX; i++)
        if (m->lag_series[i] == NULL) {
            m->lag_series[i] = pc_strdup(worker);
            return m->lag_series[i] != NULL ? i : -1;
        }
    return -1;
}

void pc_metrics_sample(pc_metrics *m, int64_t now_ms)
{
    pthread_mutex_lock(&m->lock);
    if (m->hist_t == NULL) {
        m->hist_t = calloc(PC_METRICS_HISTORY, sizeof *m->hist_t);
        m->hist_w = calloc(PC_METRICS_HISTORY * (m->nworkers ? m->nworkers : 1) * H_N,
                           sizeof *m->hist_w);
        m->hist_lag = malloc(PC_METRICS_HISTORY * HIST_LAG_MAX * sizeof *m->hist_lag);
        if (m->hist_t == NULL || m->hist_w == NULL || m->hist_lag == NULL) {
            free(m->hist_t);
            free(m->hist_w);
            free(m->hist_lag);
            m->hist_t = NULL;
            m->hist_w = NULL;
            m->hist_lag = NULL;
            goto done; /* no history this time; the figures themselves are unaffected */
        }
    }
    size_t at;
    if (m->hist_len < PC_METRICS_HISTORY) {
        at = m->hist_len++;
    } else {
        at = m->hist_head;
        m->hist_head = (m->hist_head + 1) % PC_METRICS_HISTORY;
    }
    m->hist_t[at] = now_ms;
    for (size_t i = 0; i < m->nworkers; i++) {
        const pc_worker_stats *s = m->workers[i].stats;
        uint64_t *v = &m->hist_w[(at * m->nworkers + i) * H_N];
        v[H_IN] = atomic_load(&s->records_in);
        v[H_OUT] = atomic_load(&s->records_out);
        v[H_ERRORS] = atomic_load(&s->errors);
        v[H_DEAD] = atomic_load(&s->dead_letters);
        v[H_BATCH_US] = atomic_load(&s->batch_us);
        v[H_BATCHES_TIMED] = atomic_load(&s->batches_timed);
    }
    int64_t *lag = &m->hist_lag[at * HIST_LAG_MAX];
    for (int j = 0; j < HIST_LAG_MAX; j++)
        lag[j] = -1;
    for (size_t i = 0; i < m->nlags; i++) {
        int j = lag_series(m, m->lags[i].worker);
        if (j >= 0)
            lag[j] = (lag[j] < 0 ? 0 : lag[j]) + m->lags[i].lag;
    }
done:
    pthread_mutex_unlock(&m->lock);
}

/* ---------- the snapshot both renderers read ---------- */

typedef struct snap_worker {
    const char *name, *kind; /* borrowed: workers are fixed once the endpoint runs */
    uint64_t in, out, batches, errors, dead, batch_us, batches_timed;
    int64_t last_commit_ms;
    int running;
} snap_worker;

typedef struct snapshot {
    int64_t now_ms;
    snap_worker *w;
    size_t nw;
    metrics_lag *lags;
    size_t nlags;
    pc_metrics_observed obs;
} snapshot;

static void snapshot_dispose(snapshot *s)
{
    free(s->w);
    for (size_t i = 0; i < s->nlags; i++) {
        free(s->lags[i].worker);
        free(s->lags[i].topic);
    }
    free(s->lags);
    pc_metrics_observed_dispose(&s->obs);
}

static int dup_or_null(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = pc_strdup(src);
    return *dst == NULL;
}

static int lag_cmp(const void *a, const void *b)
{
    const metrics_lag *x = a, *y = b;
    int c = strcmp(x->worker, y->worker);
    if (c == 0)
        c = strcmp(x->topic, y->topic);
    return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* The figures as of now_ms: the one computation behind /metrics and the JSON. */
static int snapshot_take(pc_metrics *m, int64_t now_ms, snapshot *s, pc_error *err)
{
    int bad = 0;
    memset(s, 0, sizeof *s);
    pc_metrics_observed_dispose(&s->obs);
    s->now_ms = now_ms;
    s->w = calloc(m->nworkers ? m->nworkers : 1, sizeof *s->w);
    if (s->w == NULL)
        goto oom;
    s->nw = m->nworkers;
    for (size_t i = 0; i < m->nworkers; i++) {
        const pc_worker_stats *st = m->workers[i].stats;
        snap_worker *w = &s->w[i];
        w->name = m->workers[i].name;
        w->kind = m->workers[i].kind;
        w->in = atomic_load(&st->records_in);
        w->out = atomic_load(&st->records_out);
        w->batches = atomic_load(&st->batches);
        w->errors = atomic_load(&st->errors);
        w->dead = atomic_load(&st->dead_letters);
        w->batch_us = atomic_load(&st->batch_us);
        w->batches_timed = atomic_load(&st->batches_timed);
        w->last_commit_ms = atomic_load(&st->last_commit_ms);
        w->running = atomic_load(&m->workers[i].running);
    }
    pthread_mutex_lock(&m->lock);
    s->lags = calloc(m->nlags ? m->nlags : 1, sizeof *s->lags);
    if (s->lags != NULL) {
        for (size_t i = 0; i < m->nlags; i++) {
            metrics_lag *l = &s->lags[s->nlags++];
            *l = m->lags[i];
            l->worker = pc_strdup(m->lags[i].worker);
            l->topic = pc_strdup(m->lags[i].topic);
            bad |= l->worker == NULL || l->topic == NULL;
        }
    }
    const pc_metrics_observed *o = &m->obs;
    s->obs = *o;
    bad |= dup_or_null(&s->obs.archive_mode, o->archive_mode);
    bad |= dup_or_null(&s->obs.last_archived_wal, o->last_archived_wal);
    bad |= dup_or_null(&s->obs.last_failed_wal, o->last_failed_wal);
    bad |= dup_or_null(&s->obs.backup_repository, o->backup_repository);
    bad |= dup_or_null(&s->obs.backup_newest_id, o->backup_newest_id);
    bad |= dup_or_null(&s->obs.error, o->error);
    pthread_mutex_unlock(&m->lock);
    if (s->lags == NULL || bad)
        goto oom;
    qsort(s->lags, s->nlags, sizeof *s->lags, lag_cmp);
    return 0;
oom:
    snapshot_dispose(s);
    return pc_error_set(err, PC_ENOMEM, "out of memory reading the metrics");
}

/* Shared number formats: the two renderers print a figure the same way. */
static double age_s(int64_t now_ms, int64_t then_ms)
{
    return now_ms > then_ms ? (double)(now_ms - then_ms) / 1000.0 : 0.0;
}
#define FMT_SECONDS "%.3f"
#define FMT_SUM "%.6f"

/* ---------- Prometheus text ---------- */

/* A label value with \, " and newline escaped as the exposition format requires. */
static int put_label(pc_buf *b, const char *v)
{
    for (const char *p = v; *p != '\0'; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        int rc = esc != NULL ? pc_buf_puts(b, esc) : pc_buf_append(b, p, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int family(pc_buf *b, const char *name, const char *type, const char *help)
{
    return pc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int sample_w(pc_buf *b, const char *name, const char *worker, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sample_w(pc_buf *b, const char *name, const char *worker, const char *fmt, ...)
{
    int rc = pc_buf_printf(b, "%s{worker=\"", name);
    rc |= put_label(b, worker);
    rc |= pc_buf_puts(b, "\"} ");
    va_list ap;
    va_start(ap, fmt);
    rc |= pc_buf_vprintf(b, fmt, ap);
    va_end(ap);
    rc |= pc_buf_puts(b, "\n");
    return rc;
}

static int render_text(const snapshot *s, pc_buf *b)
{
    static const struct {
        size_t off;
        const char *name;
        const char *help;
    } counters[] = {
        {offsetof(snap_worker, in), "pipectl_records_in_total",
         "Records received (ingest: users fetched; sink: records consumed)."},
        {offsetof(snap_worker, out), "pipectl_records_out_total",
         "Records delivered (ingest: acknowledged by Kafka; sink: rows committed)."},
        {offsetof(snap_worker, batches), "pipectl_batches_total",
         "Successful batches (ingest: HTTP requests; sink: transactions)."},
        {offsetof(snap_worker, errors), "pipectl_errors_total",
         "Failures that were retried (HTTP, broker, database)."},
        {offsetof(snap_worker, dead), "pipectl_dead_letters_total",
         "Records sent to the dead-letter topic (sink) or skipped as malformed (ingest)."},
    };
    int rc = 0;
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        rc |= family(b, counters[c].name, "counter", counters[c].help);
        for (size_t i = 0; i < s->nw; i++) {
            const uint64_t *v = (const uint64_t *)((const char *)&s->w[i] + counters[c].off);
            rc |= sample_w(b, counters[c].name, s->w[i].name, "%llu", (unsigned long long)*v);
        }
    }
    rc |= family(b, "pipectl_batch_duration_seconds", "summary",
                 "Time spent per batch (ingest: the request and producing its records; sink: "
                 "BEGIN to COMMIT).");
    for (size_t i = 0; i < s->nw; i++) {
        rc |= sample_w(b, "pipectl_batch_duration_seconds_sum", s->w[i].name, FMT_SUM,
                       (double)s->w[i].batch_us / 1e6);
        rc |= sample_w(b, "pipectl_batch_duration_seconds_count", s->w[i].name, "%llu",
                       (unsigned long long)s->w[i].batches_timed);
    }
    rc |= family(b, "pipectl_last_commit_age_seconds", "gauge",
                 "Seconds since the worker last committed (sink) or had a delivery acknowledged "
                 "(ingest).");
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].last_commit_ms > 0) /* never committed: no sample rather than a made-up age */
            rc |= sample_w(b, "pipectl_last_commit_age_seconds", s->w[i].name, FMT_SECONDS,
                           age_s(s->now_ms, s->w[i].last_commit_ms));
    rc |= family(b, "pipectl_worker_running", "gauge", "1 while the worker runs, 0 once it stopped.");
    for (size_t i = 0; i < s->nw; i++) {
        rc |= pc_buf_puts(b, "pipectl_worker_running{worker=\"");
        rc |= put_label(b, s->w[i].name);
        rc |= pc_buf_puts(b, "\",kind=\"");
        rc |= put_label(b, s->w[i].kind);
        rc |= pc_buf_printf(b, "\"} %d\n", s->w[i].running);
    }
    rc |= family(b, "pipectl_consumer_lag", "gauge",
                 "Records in the topic partition not yet committed by the sink (high watermark "
                 "minus stored next offset).");
    for (size_t i = 0; i < s->nlags; i++) {
        rc |= pc_buf_puts(b, "pipectl_consumer_lag{worker=\"");
        rc |= put_label(b, s->lags[i].worker);
        rc |= pc_buf_puts(b, "\",topic=\"");
        rc |= put_label(b, s->lags[i].topic);
        rc |= pc_buf_printf(b, "\",partition=\"%d\"} %lld\n", s->lags[i].partition,
                            (long long)s->lags[i].lag);
    }
    const pc_metrics_observed *o = &s->obs;
    if (o->has_archiver) {
        rc |= family(b, "pipectl_archiver_archived_total", "counter",
                     "WAL files archived (pg_stat_archiver.archived_count).");
        rc |= pc_buf_printf(b, "pipectl_archiver_archived_total %lld\n",
                            (long long)o->archived_count);
        rc |= family(b, "pipectl_archiver_failed_total", "counter",
                     "Failed attempts to archive a WAL file (pg_stat_archiver.failed_count).");
        rc |= pc_buf_printf(b, "pipectl_archiver_failed_total %lld\n", (long long)o->failed_count);
        rc |= family(b, "pipectl_archiver_failing", "gauge",
                     "1 while archiving fails: the last attempt failed and nothing was archived "
                     "since.");
        rc |= pc_buf_printf(b, "pipectl_archiver_failing %d\n", o->archiver_failing ? 1 : 0);
        if (o->last_archived_time > 0) {
            rc |= family(b, "pipectl_archiver_last_archived_timestamp_seconds", "gauge",
                         "When the last WAL file was archived (unix seconds).");
            rc |= pc_buf_printf(b, "pipectl_archiver_last_archived_timestamp_seconds %lld\n",
                                (long long)o->last_archived_time);
        }
        if (o->last_failed_time > 0) {
            rc |= family(b, "pipectl_archiver_last_failed_timestamp_seconds", "gauge",
                         "When archiving last failed (unix seconds).");
            rc |= pc_buf_printf(b, "pipectl_archiver_last_failed_timestamp_seconds %lld\n",
                                (long long)o->last_failed_time);
        }
        if (o->last_archived_wal != NULL) {
            rc |= family(b, "pipectl_archiver_last_archived_wal_info", "gauge",
                         "The last WAL file archived, as the label wal.");
            rc |= pc_buf_puts(b, "pipectl_archiver_last_archived_wal_info{wal=\"");
            rc |= put_label(b, o->last_archived_wal);
            rc |= pc_buf_puts(b, "\"} 1\n");
        }
    }
    if (o->has_backups) {
        rc |= family(b, "pipectl_backup_count", "gauge",
                     "Complete, readable base backups in the repository.");
        rc |= pc_buf_printf(b, "pipectl_backup_count %llu\n", (unsigned long long)o->backup_count);
        if (o->backup_newest_stop > 0) {
            rc |= family(b, "pipectl_backup_newest_end_timestamp_seconds", "gauge",
                         "When the newest backup finished (unix seconds).");
            rc |= pc_buf_printf(b, "pipectl_backup_newest_end_timestamp_seconds %lld\n",
                                (long long)o->backup_newest_stop);
            rc |= family(b, "pipectl_backup_newest_age_seconds", "gauge",
                         "Seconds since the newest backup finished.");
            rc |= pc_buf_printf(b, "pipectl_backup_newest_age_seconds " FMT_SECONDS "\n",
                                age_s(s->now_ms, o->backup_newest_stop * 1000));
        }
        if (o->backup_late >= 0) {
            rc |= family(b, "pipectl_backup_late", "gauge",
                         "1 when the scheduled backup is missing (none, or the newest started "
                         "before the due fire time), 0 on time.");
            rc |= pc_buf_printf(b, "pipectl_backup_late %d\n", o->backup_late);
        }
    }
    if (o->drift >= 0) {
        rc |= family(b, "pipectl_drift", "gauge",
                     "1 when the live state differs from the manifest (pending plan actions).");
        rc |= pc_buf_printf(b, "pipectl_drift %d\n", o->drift);
        rc |= family(b, "pipectl_drift_pending_actions", "gauge",
                     "Actions 'pipectl plan' would take (create, change, delete, refused).");
        rc |= pc_buf_printf(b, "pipectl_drift_pending_actions %llu\n",
                            (unsigned long long)o->drift_actions);
    }
    if (o->observed_ms > 0) {
        rc |= family(b, "pipectl_observe_timestamp_seconds", "gauge",
                     "When the observer last looked at Kafka, PostgreSQL and the repository.");
        rc |= pc_buf_printf(b, "pipectl_observe_timestamp_seconds " FMT_SECONDS "\n",
                            (double)o->observed_ms / 1000.0);
        rc |= family(b, "pipectl_observe_ok", "gauge",
                     "1 when the observer's last round saw everything, 0 when a system failed.");
        rc |= pc_buf_printf(b, "pipectl_observe_ok %d\n", o->error == NULL ? 1 : 0);
    }
    return rc;
}

int pc_metrics_render(pc_metrics *m, int64_t now_ms, char **out, pc_error *err)
{
    snapshot s;
    pc_buf b = {0};
    *out = NULL;
    int rc = snapshot_take(m, now_ms, &s, err);
    if (rc != 0)
        return rc;
    rc = render_text(&s, &b);
    snapshot_dispose(&s);
    if (rc != 0) {
        pc_buf_free(&b);
        return pc_error_set(err, PC_ENOMEM, "out of memory rendering the metrics");
    }
    *out = pc_buf_detach(&b);
    return 0;
}

/* ---------- JSON ---------- */

static int jstr(pc_buf *b, const char *v)
{
    if (v == NULL)
        return pc_buf_puts(b, "null");
    int rc = pc_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            rc |= pc_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc |= pc_buf_printf(b, "\\u%04x", *p);
        else
            rc |= pc_buf_append(b, (const char *)p, 1);
    }
    return rc | pc_buf_puts(b, "\"");
}

static int render_history(pc_metrics *m, pc_buf *b)
{
    int rc = pc_buf_printf(b, "\"history\":{\"interval_ms\":%d,\"t\":[", PC_METRICS_SAMPLE_MS);
    pthread_mutex_lock(&m->lock);
    size_t n = m->hist_t != NULL ? m->hist_len : 0;
#define AT(k) ((m->hist_head + (k)) % PC_METRICS_HISTORY)
    for (size_t k = 0; k < n; k++)
        rc |= pc_buf_printf(b, "%s%lld", k ? "," : "", (long long)m->hist_t[AT(k)]);
    rc |= pc_buf_puts(b, "],\"workers\":[");
    for (size_t i = 0; i < m->nworkers; i++) {
        rc |= pc_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        rc |= jstr(b, m->workers[i].name);
        for (int h = 0; h < H_N; h++) {
            rc |= pc_buf_printf(b, ",\"%s\":[", hist_names[h]);
            for (size_t k = 0; k < n; k++)
                rc |= pc_buf_printf(
                    b, "%s%llu", k ? "," : "",
                    (unsigned long long)m->hist_w[(AT(k) * m->nworkers + i) * H_N + (size_t)h]);
            rc |= pc_buf_puts(b, "]");
        }
        rc |= pc_buf_puts(b, "}");
    }
    rc |= pc_buf_puts(b, "],\"lag\":[");
    for (int j = 0; j < HIST_LAG_MAX && m->lag_series[j] != NULL; j++) {
        rc |= pc_buf_puts(b, j ? ",{\"worker\":" : "{\"worker\":");
        rc |= jstr(b, m->lag_series[j]);
        rc |= pc_buf_puts(b, ",\"total\":[");
        for (size_t k = 0; k < n; k++) {
            int64_t v = m->hist_lag[AT(k) * HIST_LAG_MAX + (size_t)j];
            rc |= v < 0 ? pc_buf_printf(b, "%snull", k ? "," : "")
                        : pc_buf_printf(b, "%s%lld", k ? "," : "", (long long)v);
        }
        rc |= pc_buf_puts(b, "]}");
    }
#undef AT
    pthread_mutex_unlock(&m->lock);
    return rc | pc_buf_puts(b, "]}");
}

static int render_json(pc_metrics *m, const snapshot *s, pc_buf *b)
{
    int rc = pc_buf_puts(b, "{\"pipeline\":");
    rc |= jstr(b, m->pipeline);
    rc |= pc_buf_puts(b, ",\"mode\":");
    rc |= jstr(b, m->mode);
    rc |= pc_buf_printf(b, ",\"now_ms\":%lld,\"workers\":[", (long long)s->now_ms);
    for (size_t i = 0; i < s->nw; i++) {
        const snap_worker *w = &s->w[i];
        rc |= pc_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        rc |= jstr(b, w->name);
        rc |= pc_buf_puts(b, ",\"kind\":");
        rc |= jstr(b, w->kind);
        rc |= pc_buf_printf(b,
                            ",\"running\":%d,\"records_in_total\":%llu,\"records_out_total\":%llu,"
                            "\"batches_total\":%llu,\"errors_total\":%llu,"
                            "\"dead_letters_total\":%llu,\"batch_duration_seconds_sum\":" FMT_SUM
                            ",\"batch_duration_seconds_count\":%llu,\"last_commit_age_seconds\":",
                            w->running, (unsigned long long)w->in, (unsigned long long)w->out,
                            (unsigned long long)w->batches, (unsigned long long)w->errors,
                            (unsigned long long)w->dead, (double)w->batch_us / 1e6,
                            (unsigned long long)w->batches_timed);
        rc |= w->last_commit_ms > 0
                  ? pc_buf_printf(b, FMT_SECONDS "}", age_s(s->now_ms, w->last_commit_ms))
                  : pc_buf_puts(b, "null}");
    }
    rc |= pc_buf_puts(b, "],\"lag\":[");
    for (size_t i = 0; i < s->nlags; i++) {
        rc |= pc_buf_puts(b, i ? ",{\"worker\":" : "{\"worker\":");
        rc |= jstr(b, s->lags[i].worker);
        rc |= pc_buf_puts(b, ",\"topic\":");
        rc |= jstr(b, s->lags[i].topic);
        rc |= pc_buf_printf(b, ",\"partition\":%d,\"lag\":%lld}", s->lags[i].partition,
                            (long long)s->lags[i].lag);
    }
    const pc_metrics_observed *o = &s->obs;
    rc |= pc_buf_puts(b, "],\"archiver\":");
    if (o->has_archiver) {
        rc |= pc_buf_puts(b, "{\"archive_mode\":");
        rc |= jstr(b, o->archive_mode);
        rc |= pc_buf_printf(b, ",\"archived_total\":%lld,\"failed_total\":%lld,\"failing\":%d",
                            (long long)o->archived_count, (long long)o->failed_count,
                            o->archiver_failing ? 1 : 0);
        rc |= pc_buf_puts(b, ",\"last_archived_wal\":");
        rc |= jstr(b, o->last_archived_wal);
        rc |= o->last_archived_time > 0
                  ? pc_buf_printf(b, ",\"last_archived_timestamp_seconds\":%lld",
                                  (long long)o->last_archived_time)
                  : pc_buf_puts(b, ",\"last_archived_timestamp_seconds\":null");
        rc |= pc_buf_puts(b, ",\"last_failed_wal\":");
        rc |= jstr(b, o->last_failed_wal);
        rc |= o->last_failed_time > 0
                  ? pc_buf_printf(b, ",\"last_failed_timestamp_seconds\":%lld}",
                                  (long long)o->last_failed_time)
                  : pc_buf_puts(b, ",\"last_failed_timestamp_seconds\":null}");
    } else {
        rc |= pc_buf_puts(b, "null");
    }
    rc |= pc_buf_puts(b, ",\"backups\":");
    if (o->has_backups) {
        rc |= pc_buf_puts(b, "{\"repository\":");
        rc |= jstr(b, o->backup_repository);
        rc |= pc_buf_printf(b, ",\"count\":%llu,\"newest_id\":",
                            (unsigned long long)o->backup_count);
        rc |= jstr(b, o->backup_newest_id);
        if (o->backup_newest_stop > 0)
            rc |= pc_buf_printf(b,
                                ",\"newest_end_timestamp_seconds\":%lld,"
                                "\"newest_age_seconds\":" FMT_SECONDS,
                                (long long)o->backup_newest_stop,
                                age_s(s->now_ms, o->backup_newest_stop * 1000));
        else
            rc |= pc_buf_puts(b, ",\"newest_end_timestamp_seconds\":null,"
                                 "\"newest_age_seconds\":null");
        rc |= o->backup_late >= 0 ? pc_buf_printf(b, ",\"late\":%d}", o->backup_late)
                                  : pc_buf_puts(b, ",\"late\":null}");
    } else {
        rc |= pc_buf_puts(b, "null");
    }
    rc |= pc_buf_puts(b, ",\"drift\":");
    rc |= o->drift >= 0 ? pc_buf_printf(b, "{\"drift\":%d,\"pending_actions\":%llu}", o->drift,
                                        (unsigned long long)o->drift_actions)
                        : pc_buf_puts(b, "null");
    rc |= pc_buf_puts(b, ",\"observer\":");
    if (o->observed_ms > 0) {
        rc |= pc_buf_printf(b, "{\"timestamp_seconds\":" FMT_SECONDS ",\"ok\":%d,\"error\":",
                            (double)o->observed_ms / 1000.0, o->error == NULL ? 1 : 0);
        rc |= jstr(b, o->error);
        rc |= pc_buf_puts(b, "}");
    } else {
        rc |= pc_buf_puts(b, "null");
    }
    rc |= pc_buf_puts(b, ",");
    rc |= render_history(m, b);
    return rc | pc_buf_puts(b, "}\n");
}

int pc_metrics_render_json(pc_metrics *m, int64_t now_ms, char **out, pc_error *err)
{
    snapshot s;
    pc_buf b = {0};
    *out = NULL;
    int rc = snapshot_take(m, now_ms, &s, err);
    if (rc != 0)
        return rc;
    rc = render_json(m, &s, &b);
    snapshot_dispose(&s);
    if (rc != 0) {
        pc_buf_free(&b);
        return pc_error_set(err, PC_ENOMEM, "out of memory rendering the metrics as JSON");
    }
    *out = pc_buf_detach(&b);
    return 0;
}

/* ---------- HTTP ---------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned int status, const char *type,
                               const char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned int status,
                                    const char *body)
{
    return respond(c, status, "text/plain; charset=utf-8", body, strlen(body),
                   MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    pc_metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "only GET: /metrics, /api/metrics.json, / (the dashboard)\n");
    if (strcmp(url, "/") == 0 || strcmp(url, "/dashboard") == 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            pc_dashboard_html_len, (void *)pc_dashboard_html, MHD_RESPMEM_PERSISTENT);
        if (r == NULL)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        /* everything the page needs is in it: no other origin, ever */
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                "'unsafe-inline'; connect-src 'self'; img-src data:");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    bool json = strcmp(url, "/api/metrics.json") == 0;
    if (!json && strcmp(url, "/metrics") != 0)
        return respond_text(c, MHD_HTTP_NOT_FOUND,
                            "pipectl: not here; metrics are at /metrics, their JSON at "
                            "/api/metrics.json and the dashboard at /\n");
    char *body = NULL;
    pc_error err = {0};
    int rc = json ? pc_metrics_render_json(m, pc_wall_ms(), &body, &err)
                  : pc_metrics_render(m, pc_wall_ms(), &body, &err);
    if (rc != 0)
        return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err.msg);
    /* MHD frees body with free() once sent */
    return respond(c, MHD_HTTP_OK,
                   json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8", body,
                   strlen(body), MHD_RESPMEM_MUST_FREE);
}

/* Splits "host:port", "[v6]:port" or ":port" into host (NULL = any) and port. */
static int split_addr(const char *s, char *host, size_t hostsz, int *port)
{
    const char *colon = NULL, *hs = s, *he = NULL;
    if (s[0] == '[') {
        he = strchr(s, ']');
        if (he == NULL || he[1] != ':')
            return -1;
        hs = s + 1;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        he = colon;
    }
    size_t n = (size_t)(he - hs);
    if (n >= hostsz)
        return -1;
    memcpy(host, hs, n);
    host[n] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static bool stopping(pc_metrics *m, int64_t ms)
{
    for (int64_t end = pc_mono_ms() + ms; !atomic_load(&m->stop) && pc_mono_ms() < end;)
        pc_sleep_ms(100);
    return atomic_load(&m->stop) != 0;
}

static void *sampler_main(void *arg)
{
    pc_metrics *m = arg;
    do
        pc_metrics_sample(m, pc_wall_ms());
    while (!stopping(m, PC_METRICS_SAMPLE_MS));
    return NULL;
}

static void *observer_main(void *arg)
{
    pc_metrics *m = arg;
    do {
        pc_metrics_observed o;
        memset(&o, 0, sizeof o);
        o.backup_late = -1;
        o.drift = -1;
        m->observe(m->observe_ctx, m, &o, &m->stop);
        if (o.observed_ms == 0)
            o.observed_ms = pc_wall_ms();
        pc_metrics_publish(m, &o);
    } while (!stopping(m, m->observe_interval_ms));
    return NULL;
}

/* Threads started here must not take the process's SIGTERM/SIGINT: cmd/ handles those. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int pc_metrics_listen(pc_metrics *m, const char *addr_port, pc_error *err)
{
    int rc = 0, fd = -1;
    char host[256], portstr[16];
    int port = 0;
    struct addrinfo hints, *ai = NULL;

    if (m->daemon != NULL)
        return pc_error_set(err, PC_EINVAL, "metrics endpoint already listening on port %d",
                            m->port);
    if (addr_port == NULL || split_addr(addr_port, host, sizeof host, &port) != 0)
        return pc_error_set(err, PC_EINVAL,
                            "address '%s' is not ADDR:PORT (e.g. 127.0.0.1:9464, :9464 for every "
                            "interface, [::1]:9464)",
                            addr_port ? addr_port : "");
    snprintf(portstr, sizeof portstr, "%d", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "address '%s': cannot resolve '%s': %s", addr_port,
                          host, gai_strerror(gai));
        goto done;
    }
    /* Our own listening socket, so a failure says why (in use, not local, not allowed). */
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        rc = pc_error_set(err, PC_EUNAVAIL, "cannot listen on %s: %s%s", addr_port, strerror(e),
                          e == EADDRINUSE      ? " (another process serves that port: pick "
                                                 "another ADDR:PORT, or port 0 for any free one)"
                          : e == EADDRNOTAVAIL ? " (the address is not one of this host's)"
                          : e == EACCES        ? " (ports below 1024 need privileges)"
                                               : "");
        goto done;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32, MHD_OPTION_END);
    if (m->daemon == NULL) {
        rc = pc_error_set(err, PC_EUNAVAIL, "cannot serve HTTP on %s: libmicrohttpd failed to "
                          "start (out of threads or file descriptors?)", addr_port);
        goto done;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    m->port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        m->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    fd = -1; /* libmicrohttpd closes it in MHD_stop_daemon */
    if (start_thread(&m->sampler, sampler_main, m) == 0)
        m->sampler_on = true;
done:
    if (fd >= 0)
        close(fd);
    if (ai != NULL)
        freeaddrinfo(ai);
    return rc;
}

int pc_metrics_observe(pc_metrics *m, pc_metrics_observe_fn fn, void *ctx, int64_t interval_ms,
                       pc_error *err)
{
    if (m->observer_on)
        return pc_error_set(err, PC_EINVAL, "metrics endpoint: an observer already runs");
    m->observe = fn;
    m->observe_ctx = ctx;
    m->observe_interval_ms = interval_ms > 0 ? interval_ms : 5000;
    int prc = start_thread(&m->observer, observer_main, m);
    if (prc != 0)
        return pc_error_set(err, PC_ENOMEM, "cannot start the metrics observer thread: %s",
                            strerror(prc));
    m->observer_on = true;
    return 0;
}

int pc_metrics_port(const pc_metrics *m)
{
    return m != NULL && m->daemon != NULL ? m->port : 0;
}

void pc_metrics_free(pc_metrics *m)
{
    if (m == NULL)
        return;
    atomic_store(&m->stop, 1);
    if (m->observer_on)
        pthread_join(m->observer, NULL);
    if (m->sampler_on)
        pthread_join(m->sampler, NULL);
    if (m->daemon != NULL)
        MHD_stop_daemon(m->daemon);
    for (size_t i = 0; i < m->nworkers; i++) {
        free(m->workers[i].name);
        free(m->workers[i].kind);
    }
    free(m->workers);
    for (size_t i = 0; i < m->nlags; i++) {
        free(m->lags[i].worker);
        free(m->lags[i].topic);
    }
    free(m->lags);
    pc_metrics_observed_dispose(&m->obs);
    free(m->hist_t);
    free(m->hist_w);
    free(m->hist_lag);
    for (int i = 0; i < HIST_LAG_MAX; i++)
        free(m->lag_series[i]);
    free(m->pipeline);
    free(m->mode);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
