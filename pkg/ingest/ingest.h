/* ingest.h: the randomuser source worker: GET the API with libcurl (retry with exponential
 * backoff + jitter on timeouts, connection errors and 5xx; honour 429 Retry-After), turn each
 * user into one Kafka record keyed by the configured JSON path, produce with
 * enable.idempotence=true and acks=all, and count a record as sent only when its delivery
 * report says so. */
#ifndef PC_INGEST_H
#define PC_INGEST_H

#include "core.h"
#include "manifest.h"
#include "worker.h"

/* Runs until env->stop, max_records delivered or duration elapsed; flushes the producer before
 * returning (nothing produced is left undelivered on a clean stop). 0 on a clean stop. */
/* The producer connects to m's kafka.bootstrap as src->auth (its own principal or the
 * controller's) with kafka.client_config. */
int pc_ingest_run(const pc_manifest *m, const pc_mf_source *src, const pc_worker_env *env,
                  pc_error *err);

#endif
