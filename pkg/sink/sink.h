/* sink.h: the Kafka -> PostgreSQL sink worker, exactly once: a consumer group member maps each
 * record's JSON paths to typed columns, batches by size and time, writes with COPY (insert) or
 * COPY into a temp staging table + INSERT ... ON CONFLICT DO UPDATE (upsert), and stores the
 * consumed offsets in pipectl.sink_offsets IN THE SAME TRANSACTION as the rows. On start and on
 * every partition assignment it seeks to the offsets stored in PostgreSQL; Kafka's committed
 * offsets are never relied on. Records that cannot be converted go to the dead-letter topic
 * with the reason and source topic/partition/offset in headers. */
#ifndef PC_SINK_H
#define PC_SINK_H

#include "core.h"
#include "manifest.h"
#include "worker.h"

/* Runs until env->stop, max_records committed, or duration elapsed; on stop commits the batch
 * in progress, then returns 0. Survives PostgreSQL and broker restarts by reconnecting with
 * backoff. m supplies the table definition (sink->table) and connections. */
int pc_sink_run(const pc_manifest *m, const pc_mf_sink *sink, const pc_worker_env *env,
                pc_error *err);

typedef struct pc_sink_opts {
    /* Drain the backlog and stop: the high watermark of every partition of the topic is read
     * at start (all of them, not only those this member is assigned), and the worker stops,
     * committing its batch in progress, once pipectl.sink_offsets (the whole group's commits)
     * holds a next offset >= that watermark for each of them (a partition empty at start, low
     * watermark == high, needs nothing). Already so at start: returns 0 at once, having
     * committed nothing. duration_ms elapsing first is an error (PC_EUNAVAIL) saying how far it
     * got; max_records or a stop first is a clean stop (report->caught_up false). */
    bool until_caught_up;
} pc_sink_opts;

typedef struct pc_sink_report {
    bool caught_up;   /* until_caught_up: the stop condition above held when it stopped */
    uint64_t backlog; /* records between the committed offsets and the watermarks at start */
    uint64_t drained; /* of them, committed (by any member of the group) when it stopped */
} pc_sink_report;

/* pc_sink_run with options (opts NULL: none); report (may be NULL) is filled on return. */
int pc_sink_run_opts(const pc_manifest *m, const pc_mf_sink *sink, const pc_worker_env *env,
                     const pc_sink_opts *opts, pc_sink_report *report, pc_error *err);

/* Offsets table: pipectl.sink_offsets(sink text, topic text, partition int, next_offset bigint,
 * updated_at timestamptz, primary key (sink, topic, partition)). */

#endif
