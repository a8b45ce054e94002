/* worker.h: what every long-running worker (ingest, sink) shares: a stop flag set by signal
 * handlers, counters read by `run`'s metrics endpoint and logs, and a structured logger.
 * Counters are C11 atomics so a metrics thread can read them while the worker runs. */
#ifndef PC_WORKER_H
#define PC_WORKER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct pc_worker_stats {
    atomic_uint_fast64_t records_in;    /* ingest: users received; sink: records consumed */
    atomic_uint_fast64_t records_out;   /* ingest: records delivered (acked); sink: rows committed */
    atomic_uint_fast64_t batches;       /* ingest: HTTP requests that succeeded; sink: transactions */
    atomic_uint_fast64_t errors;        /* retried failures (HTTP, broker, database) */
    atomic_uint_fast64_t dead_letters;  /* sink: records sent to the dead-letter topic;
                                           ingest: malformed responses/records skipped */
    atomic_int_fast64_t last_commit_ms; /* unix ms of the last commit/delivery, 0 = never */
    atomic_uint_fast64_t batch_us;      /* time spent in timed batches, microseconds (ingest: the
                                           request and producing its records; sink: BEGIN to
                                           COMMIT), see pc_worker_batch_timed */
    atomic_uint_fast64_t batches_timed; /* batches counted in batch_us */
} pc_worker_stats;

/* A monotonic clock in microseconds, for timing a batch. */
int64_t pc_worker_clock_us(void);
/* Adds one batch that started at start_us (pc_worker_clock_us) and just ended. */
void pc_worker_batch_timed(pc_worker_stats *s, int64_t start_us);

typedef enum pc_log_level { PC_LOG_DEBUG = 0, PC_LOG_INFO, PC_LOG_WARN, PC_LOG_ERROR } pc_log_level;

/* Logger supplied by cmd/ (text at a terminal, JSON lines otherwise). worker = worker name,
 * msg already free of secrets. fields: NULL-terminated key, value pairs (may be NULL). */
typedef void (*pc_log_fn)(void *ctx, pc_log_level level, const char *worker, const char *msg,
                          const char *const *fields);

/* The stop flag is an atomic_int stored from signal handlers: C11 allows that only when it is
 * lock-free. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free for the stop flag");

typedef struct pc_worker_env {
    const char *name;              /* worker name from the manifest */
    atomic_int *stop; /* set to 1 by SIGTERM/SIGINT (lock-free: a handler may store it, and
                       * the workers read it from their threads): drain, commit, return 0 */
    pc_worker_stats *stats;
    pc_log_fn log;                 /* may be NULL */
    void *log_ctx;
    uint64_t max_records;          /* 0 = unbounded: stop after this many records_out */
    int64_t duration_ms;           /* 0 = unbounded: stop after this long */
} pc_worker_env;

/* ---------- metrics endpoint (metrics.c, libmicrohttpd) ----------
 * One snapshot of the figures, two renderers: GET /metrics (Prometheus text, version 0.0.4)
 * and GET /api/metrics.json, so the two cannot disagree; GET / (or /dashboard) is the dashboard
 * page (dashboard_html.c), which polls the JSON. Prometheus names:
 *   pipectl_records_in_total, pipectl_records_out_total, pipectl_batches_total,
 *   pipectl_errors_total, pipectl_dead_letters_total (counters, label worker),
 *   pipectl_batch_duration_seconds (summary: _sum and _count, label worker),
 *   pipectl_last_commit_age_seconds (gauge; absent until the first commit),
 *   pipectl_worker_running (gauge, labels worker and kind),
 *   pipectl_consumer_lag (gauge, labels worker, topic, partition; only when known),
 * and what the observer publishes (pc_metrics_publish), each only once observed:
 *   pipectl_archiver_archived_total, pipectl_archiver_failed_total (counters),
 *   pipectl_archiver_last_archived_timestamp_seconds, pipectl_archiver_last_failed_timestamp_seconds,
 *   pipectl_archiver_failing, pipectl_archiver_last_archived_wal_info{wal} (gauges),
 *   pipectl_backup_count, pipectl_backup_newest_end_timestamp_seconds,
 *   pipectl_backup_newest_age_seconds, pipectl_backup_late (gauges),
 *   pipectl_drift, pipectl_drift_pending_actions (gauges),
 *   pipectl_observe_timestamp_seconds, pipectl_observe_ok (gauges: the observer's last round).
 * Add every worker before pc_metrics_listen; counters are read live from their stats. */
typedef struct pc_metrics pc_metrics;

/* What the observer (a function of cmd/'s, run on pc_metrics' own thread) saw in one round:
 * the figures that need a database, Kafka or the backup repository. Strings are owned by the
 * struct; pc_metrics_publish takes them. */
typedef struct pc_metrics_observed {
    bool has_archiver;           /* archiving declared and pg_stat_archiver read */
    char *archive_mode;
    int64_t archived_count, failed_count;
    char *last_archived_wal, *last_failed_wal;     /* NULL: none */
    int64_t last_archived_time, last_failed_time;  /* unix seconds, 0 = never */
    bool archiver_failing;
    bool has_backups;            /* a repository was listed */
    char *backup_repository;
    uint64_t backup_count;
    char *backup_newest_id;      /* NULL: no backup */
    int64_t backup_newest_stop;  /* unix seconds, 0 = no backup */
    int backup_late;             /* -1 no schedule to judge by, 0 on time, 1 late or none */
    int drift;                   /* -1 unknown, 0 live state matches, 1 pending changes */
    uint64_t drift_actions;
    int64_t observed_ms;         /* when the round ended, unix ms; 0 = never observed */
    char *error;                 /* the round's problems for a person, or NULL: all observed */
} pc_metrics_observed;

void pc_metrics_observed_dispose(pc_metrics_observed *o); /* members only */

/* One observer round: fill *out (zeroed by the caller) within a few seconds (every connection
 * with a bounded timeout). stop is set when the endpoint is being freed: return soon. */
typedef void (*pc_metrics_observe_fn)(void *ctx, pc_metrics *m, pc_metrics_observed *out,
                                      const atomic_int *stop);

int pc_metrics_new(pc_metrics **out, pc_error *err);
/* The pipeline's name and who serves ("run", "dashboard"), shown by the page. */
int pc_metrics_set_identity(pc_metrics *m, const char *pipeline, const char *mode, pc_error *err);
/* stats is borrowed and must outlive the endpoint; kind is "ingest", "sink" or "backup". */
int pc_metrics_add_worker(pc_metrics *m, const char *name, const char *kind,
                          pc_worker_stats *stats, pc_error *err);
void pc_metrics_set_running(pc_metrics *m, const char *worker, bool running);
/* Records the latest lag of one partition (replaces the previous value); lag < 0 forgets it. */
int pc_metrics_set_lag(pc_metrics *m, const char *worker, const char *topic, int partition,
                       int64_t lag, pc_error *err);
/* Replaces the observed figures with *o, taking its strings (*o is left zeroed). */
void pc_metrics_publish(pc_metrics *m, pc_metrics_observed *o);
/* Appends one point to the history the page draws (counters and lag as of now_ms). A thread of
 * the endpoint's calls it every PC_METRICS_SAMPLE_MS once listening; tests call it directly. */
#define PC_METRICS_SAMPLE_MS 2000
#define PC_METRICS_HISTORY 180 /* points kept: 6 minutes */
void pc_metrics_sample(pc_metrics *m, int64_t now_ms);
/* The exposition text as of now_ms (unix ms); *out owned by the caller. */
int pc_metrics_render(pc_metrics *m, int64_t now_ms, char **out, pc_error *err);
/* The same figures as one JSON object (README: the dashboard's JSON), plus the history;
 * *out owned by the caller. */
int pc_metrics_render_json(pc_metrics *m, int64_t now_ms, char **out, pc_error *err);
/* Listens on "ADDR:PORT", "[V6ADDR]:PORT" or ":PORT" (all interfaces); port 0 picks a free
 * one, see pc_metrics_port. PC_EINVAL for a malformed address, PC_EUNAVAIL when it cannot bind
 * (the message names the address). Starts the history sampler. */
int pc_metrics_listen(pc_metrics *m, const char *addr_port, pc_error *err);
/* Starts the observer thread: fn every interval_ms (the first round at once), until
 * pc_metrics_free. At most one observer. */
int pc_metrics_observe(pc_metrics *m, pc_metrics_observe_fn fn, void *ctx, int64_t interval_ms,
                       pc_error *err);
int pc_metrics_port(const pc_metrics *m); /* bound port, 0 when not listening */
/* Stops the observer (waits for its round to end), the sampler and the server, and frees
 * everything; NULL is harmless. */
void pc_metrics_free(pc_metrics *m);

/* The dashboard page (dashboard_html.c, generated from templates/dashboard/dashboard.html). */
extern const char pc_dashboard_html[];
extern const size_t pc_dashboard_html_len;

#endif
