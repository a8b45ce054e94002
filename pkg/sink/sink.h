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

/* Offsets table: pipectl.sink_offsets(sink text, topic text, partition int, next_offset bigint,
 * updated_at timestamptz, primary key (sink, topic, partition)). */

#endif
