/* ingest_int.h: pure helpers of the ingest worker, exposed for unit tests. */
#ifndef PC_INGEST_INT_H
#define PC_INGEST_INT_H
#if !defined(PC_INSIDE_INGEST) && !defined(PC_WHITEBOX_TEST)
#error "ingest_int.h is private to pkg/ingest: include ingest.h"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define PC_INGEST_BACKOFF_BASE_MS 100u
#define PC_INGEST_BACKOFF_CAP_MS 5000u
#define PC_INGEST_DEFAULT_TIMEOUT_MS 10000L
/* the longest record key, in bytes */
#define PC_INGEST_KEY_MAX 511u

/* base + "?" or "&" + "results=BATCH" + every param (percent-encoded; "results" and "page" in
 * params are skipped: batch wins, and a "page" param only sets the first page) + "&page=PAGE".
 * *out is owned by the caller. */
int pc_ingest_build_url(char **out, const char *base, int batch, const pc_kvlist *params,
                        long page);

/* Percent-encodes everything but RFC 3986 unreserved characters. */
int pc_ingest_url_escape(pc_buf *b, const char *s);

/* One element of a response's "results" array, found by pc_ingest_scan without building a tree:
 * its JSON text is body[off, off + len), byte for byte as the server sent it, and it becomes the
 * record's value. ok: the element is an object with a usable key at the key path, which is then
 * keys.data[key_off, key_off + key_len) of the page (NUL-terminated there). A usable key is a
 * non-empty string without NUL of at most PC_INGEST_KEY_MAX bytes, or an integer printed in
 * decimal. Duplicate object keys: the last one wins, at every level of the path. */
typedef struct pc_ingest_rec {
    size_t off;
    size_t len;
    size_t key_off;
    size_t key_len;
    bool ok;
} pc_ingest_rec;

typedef struct pc_ingest_page {
    pc_ingest_rec *recs;
    size_t n;
    size_t cap;
    pc_buf keys;
    char why[256]; /* why a body was refused */
} pc_ingest_page;

/* Scans a response body: a JSON object whose "results" member (the last one, if repeated) is an
 * array; other members (info) are ignored. Fills page (emptied first, its memory reused).
 * Returns 0; PC_EINVAL when the body is not such JSON (page->why says why: the parser's error,
 * "no results array"); PC_ENOMEM. keypath is dotted ("login.uuid"). */
int pc_ingest_scan(pc_ingest_page *page, const char *body, size_t len, const char *keypath);

/* Releases what page holds (page itself is the caller's); a zeroed page is harmless. */
void pc_ingest_page_dispose(pc_ingest_page *page);

/* The record key at a dotted path ("login.uuid") of one user given as JSON text, with the rules
 * of pc_ingest_rec. Returns 0, or -1 when missing / another type / does not fit outsz / the
 * text is not a JSON object. */
int pc_ingest_key_at(const char *user, size_t len, const char *path, char *out, size_t outsz);

/* Full-jitter exponential backoff: a uniform draw in [0, min(CAP, BASE * 2^attempt)] ms.
 * attempt counts from 0; *rng is any non-zero state, advanced. */
uint32_t pc_ingest_backoff_ms(unsigned attempt, uint64_t *rng);

#endif
