/* ingest_int.h: pure helpers of the ingest worker, exposed for unit tests. */
#ifndef PC_INGEST_INT_H
#define PC_INGEST_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core.h"

#define PC_INGEST_BACKOFF_BASE_MS 100u
#define PC_INGEST_BACKOFF_CAP_MS 5000u
#define PC_INGEST_DEFAULT_TIMEOUT_MS 10000L

/* base + "?" or "&" + "results=BATCH" + every param (percent-encoded; "results" and "page" in
 * params are skipped: batch wins, and a "page" param only sets the first page) + "&page=PAGE".
 * *out is owned by the caller. */
int pc_ingest_build_url(char **out, const char *base, int batch, const pc_kvlist *params,
                        long page);

/* Percent-encodes everything but RFC 3986 unreserved characters. */
int pc_ingest_url_escape(pc_buf *b, const char *s);

/* The record key at a dotted path ("login.uuid") of a user object: a non-empty string, or an
 * integer printed in decimal. Returns 0, or -1 when missing / another type / does not fit. */
int pc_ingest_key_at(const json_t *user, const char *path, char *out, size_t outsz);

/* Full-jitter exponential backoff: a uniform draw in [0, min(CAP, BASE * 2^attempt)] ms.
 * attempt counts from 0; *rng is any non-zero state, advanced. */
uint32_t pc_ingest_backoff_ms(unsigned attempt, uint64_t *rng);

#endif
