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
} pc_worker_stats;

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
 * Serves GET /metrics in the Prometheus text format (version 0.0.4):
 *   pipectl_records_in_total, pipectl_records_out_total, pipectl_batches_total,
 *   pipectl_errors_total, pipectl_dead_letters_total (counters, label worker),
 *   pipectl_last_commit_age_seconds (gauge; absent until the first commit),
 *   pipectl_worker_running (gauge, labels worker and kind),
 *   pipectl_consumer_lag (gauge, labels worker, topic, partition; only when known).
 * Add every worker before pc_metrics_listen; counters are read live from their stats. */
typedef struct pc_metrics pc_metrics;

int pc_metrics_new(pc_metrics **out, pc_error *err);
/* stats is borrowed and must outlive the endpoint; kind is "ingest" or "sink". */
int pc_metrics_add_worker(pc_metrics *m, const char *name, const char *kind,
                          pc_worker_stats *stats, pc_error *err);
void pc_metrics_set_running(pc_metrics *m, const char *worker, bool running);
/* Records the latest lag of one partition (replaces the previous value); lag < 0 forgets it. */
int pc_metrics_set_lag(pc_metrics *m, const char *worker, const char *topic, int partition,
                       int64_t lag, pc_error *err);
/* The exposition text as of now_ms (unix ms); *out owned by the caller. */
int pc_metrics_render(pc_metrics *m, int64_t now_ms, char **out, pc_error *err);
/* Listens on "ADDR:PORT", "[V6ADDR]:PORT" or ":PORT" (all interfaces); port 0 picks a free
 * one, see pc_metrics_port. PC_EINVAL for a malformed address, PC_EUNAVAIL when it cannot bind. */
int pc_metrics_listen(pc_metrics *m, const char *addr_port, pc_error *err);
int pc_metrics_port(const pc_metrics *m); /* bound port, 0 when not listening */
/* Stops the server (if listening) and frees everything; NULL is harmless. */
void pc_metrics_free(pc_metrics *m);

#endif
