/* s3.h: a client for Amazon S3 and S3-compatible object stores (libcurl, AWS Signature V4).
 *
 * The backup repository moves off the host through this module. It knows buckets, keys and
 * bytes, nothing of backups. One pc_s3 holds one libcurl handle (connections are reused): use it
 * from one thread at a time; concurrent part uploads take one pc_s3 each.
 *
 * Every request is signed by libcurl (CURLOPT_AWS_SIGV4) and carries x-amz-content-sha256 with
 * the SHA-256 of its payload, so the server checks the bytes it stores. Failed attempts are
 * retried, with exponential backoff and jitter, on connection errors, 5xx and 503 SlowDown, never
 * on a 4xx. Errors name the endpoint, bucket, key, HTTP status and S3's <Code>/<Message>, say what
 * to do, and never hold the secret access key or the session token.
 *
 * Returns: 0, or PC_EINVAL (bad configuration or argument, HTTP 400), PC_ENOTFOUND (no such key,
 * no such bucket, no such upload), PC_EREFUSED (403 and the other 4xx), PC_ECONFLICT (409, 412),
 * PC_EUNAVAIL (unreachable, timed out, 5xx after the last retry), PC_ENOMEM, PC_EIO (the caller's
 * reader or writer failed). */
#ifndef PC_S3_H
#define PC_S3_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct pc_s3 pc_s3;

/* Environment lookup (the same shape as pkg/manifest's): the library never calls getenv. */
typedef const char *(*pc_s3_getenv_fn)(const char *name, void *ctx);

typedef enum pc_s3_uri_style {
    /* virtual-host (AWS's default), except path-style when the endpoint's host is an IP address
     * or the bucket name cannot be a host-name label (dots, upper case, '_') */
    PC_S3_URI_AUTO = 0,
    PC_S3_URI_PATH,    /* scheme://host[:port]/bucket/key */
    PC_S3_URI_VIRTUAL, /* scheme://bucket.host[:port]/key */
} pc_s3_uri_style;

typedef struct pc_s3_config {
    const char *endpoint; /* scheme://host[:port] (http or https); NULL:
                             https://s3.<region>.amazonaws.com */
    const char *region;   /* NULL: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1 */
    const char *bucket;   /* required */
    pc_s3_uri_style uri_style;
    /* Credentials. access_key_id NULL: all three come from AWS_ACCESS_KEY_ID,
     * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (never one from here and one from there). */
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* temporary credentials; NULL: none */
    const char *ca_file;       /* PEM bundle to trust; NULL: the system's */
    bool skip_tls_verify;      /* false (the default): certificate and host name are checked */
    long connect_timeout_ms;   /* 0: 10 s */
    long idle_timeout_ms;      /* a transfer moving no byte for this long fails; 0: 60 s */
    long request_timeout_ms;   /* one attempt, whole; 0: no limit (large objects) */
    int max_attempts;          /* 0: 5 (the first try and 4 retries) */
    long retry_base_ms;        /* backoff before retry n: up to base * 2^(n-1); 0: 200 ms */
    long retry_max_ms;         /* cap of one backoff; 0: 20 s */
    pc_s3_getenv_fn getenv_fn; /* NULL: no environment, everything must be given */
    void *env_ctx;
} pc_s3_config;

/* Checks the configuration and resolves credentials; opens no connection. */
int pc_s3_new(pc_s3 **out, const pc_s3_config *cfg, pc_error *err);
void pc_s3_free(pc_s3 *s3);
/* A new handle with src's resolved configuration (credentials included) and a connection of its
 * own: what a thread uploading parts next to src's uses. */
int pc_s3_dup(pc_s3 **out, const pc_s3 *src, pc_error *err);

/* The HTTP status and S3 error code of the last request's last attempt (0 and "" before any). */
long pc_s3_last_status(const pc_s3 *s3);
const char *pc_s3_last_code(const pc_s3 *s3);

/* --- objects ------------------------------------------------------------------------------ */

#define PC_S3_ETAG_MAX 128
typedef struct pc_s3_info {
    uint64_t size;             /* the whole object's, also after a ranged GET */
    char etag[PC_S3_ETAG_MAX]; /* without the quotes; "" when the server sent none */
    int64_t last_modified;     /* unix seconds (Last-Modified); 0 when the server sent none */
} pc_s3_info;

/* A payload of `size` bytes read by position, so that a retry reads it again from the start.
 * read fills buf with up to n bytes at offset and returns how many (> 0), or -1 (errno set). */
typedef struct pc_s3_reader {
    ssize_t (*read)(void *ctx, uint64_t offset, void *buf, size_t n);
    void *ctx;
    uint64_t size;
    const char *sha256_hex; /* SHA-256 of the payload if the caller knows it; NULL: a first pass of
                               reads computes it */
} pc_s3_reader;

/* Receives a downloaded object's bytes in order; returns 0, or a negative PC_E code to stop
 * (err, the one given to pc_s3_get, may be set: its message is kept). */
typedef int (*pc_s3_write_fn)(void *ctx, const void *data, size_t n, pc_error *err);

/* PUT of len bytes from memory. info (may be NULL) gets size and ETag. An object larger than
 * the server's single-PUT limit (5 GiB on AWS, 32 MiB on s3proxy's defaults) needs multipart. */
int pc_s3_put(pc_s3 *s3, const char *key, const void *data, size_t len, pc_s3_info *info,
              pc_error *err);
/* PUT streamed from a reader, with Content-Length = r->size. */
int pc_s3_put_reader(pc_s3 *s3, const char *key, const pc_s3_reader *r, pc_s3_info *info,
                     pc_error *err);
/* PUT of len bytes of fd from offset (pread: fd's own position is untouched). */
int pc_s3_put_fd(pc_s3 *s3, const char *key, int fd, uint64_t offset, uint64_t len,
                 pc_s3_info *info, pc_error *err);

/* Preconditions of a write (PUT, CompleteMultipartUpload): a write whose precondition fails is
 * PC_ECONFLICT (412 PreconditionFailed, 409 ConditionalRequestConflict). AWS S3 honours both
 * since 2024; servers that do not implement conditional writes ignore them (s3proxy 2.6.0
 * answers 200 and overwrites, checked), so a caller that must not overwrite checks first too. */
typedef struct pc_s3_cond {
    bool if_none_match;   /* If-None-Match: *: only if no object has the key */
    const char *if_match; /* If-Match: "<etag>": only if the object is that version; NULL: none */
} pc_s3_cond;

/* pc_s3_put with preconditions (cond NULL: none). */
int pc_s3_put_cond(pc_s3 *s3, const char *key, const void *data, size_t len, const pc_s3_cond *cond,
                   pc_s3_info *info, pc_error *err);

/* GET, delivered to fn in order. A transfer broken in the middle is resumed by a ranged GET
 * conditional on the first ETag (If-Match), so fn never sees a byte twice. Missing key:
 * PC_ENOTFOUND. info (may be NULL) gets size and ETag. */
int pc_s3_get(pc_s3 *s3, const char *key, pc_s3_write_fn fn, void *ctx, pc_s3_info *info,
              pc_error *err);
/* Ranged GET of bytes [offset, offset + len) (len > 0, offset below the object's size), delivered
 * to fn in order; fewer when the object ends first. if_match (NULL: none) is the ETag the object
 * must still have: PC_ECONFLICT (412) when it was replaced. A transfer broken in the middle is
 * resumed like pc_s3_get's. info (may be NULL) gets the whole object's size (Content-Range), its
 * ETag and Last-Modified. */
int pc_s3_get_range(pc_s3 *s3, const char *key, uint64_t offset, uint64_t len, const char *if_match,
                    pc_s3_write_fn fn, void *ctx, pc_s3_info *info, pc_error *err);
/* GET into a buffer (appended to out); an object over max bytes is PC_EINVAL (0: no limit). */
int pc_s3_get_buf(pc_s3 *s3, const char *key, pc_buf *out, size_t max, pc_s3_info *info,
                  pc_error *err);
/* HEAD: size, ETag and Last-Modified. Missing key: PC_ENOTFOUND. key NULL: the bucket itself
 * (a missing bucket: PC_ENOTFOUND, last code "NoSuchBucket"). */
int pc_s3_head(pc_s3 *s3, const char *key, pc_s3_info *info, pc_error *err);
/* DELETE. S3 answers success for a key that does not exist, and so does this. */
int pc_s3_delete(pc_s3 *s3, const char *key, pc_error *err);

/* --- listing (ListObjectsV2) -------------------------------------------------------------- */

typedef struct pc_s3_object {
    char *key;
    uint64_t size;
    char *etag;            /* without quotes; "" when absent */
    int64_t last_modified; /* unix seconds (<LastModified>); 0 when absent */
} pc_s3_object;

typedef struct pc_s3_listing {
    pc_s3_object *items;
    size_t n, cap;
    bool truncated;
    char *next_token; /* NextContinuationToken; NULL when not truncated */
} pc_s3_listing;
void pc_s3_listing_dispose(pc_s3_listing *l);

/* One page: keys starting with prefix (NULL or "": all), after continuation token (NULL: from
 * the start), at most max_keys (0 or > 1000: 1000). Appends to out, sets truncated/next_token. */
int pc_s3_list_page(pc_s3 *s3, const char *prefix, const char *token, int max_keys,
                    pc_s3_listing *out, pc_error *err);
/* Every key under prefix, in key order, page by page (max_keys per page, 0: 1000). fn returns 0
 * to go on; anything else stops the listing and is returned. */
typedef int (*pc_s3_list_fn)(void *ctx, const pc_s3_object *obj);
int pc_s3_list(pc_s3 *s3, const char *prefix, int max_keys, pc_s3_list_fn fn, void *ctx,
               pc_error *err);

/* --- multipart upload --------------------------------------------------------------------- */

/* Starts an upload; *upload_id (caller frees) names it in the calls below. */
int pc_s3_multipart_create(pc_s3 *s3, const char *key, char **upload_id, pc_error *err);
/* Uploads part part_number (1..10000; all but the last >= 5 MiB on AWS); etag (may be NULL)
 * gets the part's ETag, which complete needs. */
int pc_s3_multipart_put(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                        const void *data, size_t len, char etag[PC_S3_ETAG_MAX], pc_error *err);
int pc_s3_multipart_put_reader(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                               const pc_s3_reader *r, char etag[PC_S3_ETAG_MAX], pc_error *err);
/* Completes with parts 1..n_parts, etags[i] being part i+1's. A 200 answer that carries an
 * <Error> (S3 does that) is an error. info (may be NULL) gets the object's ETag. */
int pc_s3_multipart_complete(pc_s3 *s3, const char *key, const char *upload_id,
                             const char *const *etags, int n_parts, pc_s3_info *info,
                             pc_error *err);
/* The same with preconditions on the completed object (cond NULL: none). */
int pc_s3_multipart_complete_cond(pc_s3 *s3, const char *key, const char *upload_id,
                                  const char *const *etags, int n_parts, const pc_s3_cond *cond,
                                  pc_s3_info *info, pc_error *err);
/* Aborts; the parts' storage is freed. An upload already gone is PC_ENOTFOUND. */
int pc_s3_multipart_abort(pc_s3 *s3, const char *key, const char *upload_id, pc_error *err);

typedef struct pc_s3_upload {
    char *key;
    char *upload_id;
    char *initiated; /* ISO 8601 as the server wrote it; "" when absent */
} pc_s3_upload;

typedef struct pc_s3_uploads {
    pc_s3_upload *items;
    size_t n, cap;
    bool truncated;
    char *next_key_marker;       /* when truncated */
    char *next_upload_id_marker; /* when truncated */
} pc_s3_uploads;
void pc_s3_uploads_dispose(pc_s3_uploads *u);

/* Every upload in progress under prefix (NULL: all), all pages: what an expire aborts. */
int pc_s3_multipart_list(pc_s3 *s3, const char *prefix, pc_s3_uploads *out, pc_error *err);

/* --- pure pieces, exposed for tests and for callers that want them ------------------------ */

/* The request URL for key (NULL: the bucket itself) and query (NULL: none; already in canonical
 * form: sorted, encoded). *out is the caller's. */
int pc_s3_url(const pc_s3 *s3, const char *key, const char *query, char **out, pc_error *err);
/* The style in use after PC_S3_URI_AUTO is resolved. */
pc_s3_uri_style pc_s3_uri_style_of(const pc_s3 *s3);
/* Appends s percent-encoded as SigV4 wants it: unreserved (A-Z a-z 0-9 - _ . ~) kept, '/' kept
 * when keep_slash, every other byte %XX (upper-case hex). */
int pc_s3_uri_encode(pc_buf *b, const char *s, bool keep_slash);
/* The header line that carries the payload's hash: "x-amz-content-sha256: <hex>". */
int pc_s3_payload_header(char out[96], const void *data, size_t len);

/* A time as S3 writes it, ISO 8601 in UTC ("2026-12-06T19:35:34.539Z", <LastModified>,
 * <Initiated>) or an HTTP date ("Sun, 06 Dec 2026 19:35:30 GMT", Last-Modified), as unix seconds
 * (fractions dropped). PC_EINVAL for anything else. */
int pc_s3_parse_time(const char *s, int64_t *out);

/* Retry policy. curl_code is the attempt's CURLcode (0: an HTTP answer came), status its HTTP
 * status, s3_code the <Code> of its error body (NULL or ""). */
bool pc_s3_retryable(int curl_code, long status, const char *s3_code);
/* Backoff before retry number `retry` (1, 2, ...): uniform in [cap/2, cap], cap = min(max_ms,
 * base_ms * 2^(retry-1)), rnd a random 64-bit value. */
long pc_s3_backoff_ms(int retry, long base_ms, long max_ms, uint64_t rnd);

/* Parsers of S3's XML answers (ListObjectsV2, ListMultipartUploads, <Error>). Entities (the
 * five named, decimal and hex character references) are decoded; CDATA is taken as is. A
 * document that is not what it should be is PC_EINVAL with the reason. */
int pc_s3_parse_listing(pc_s3_listing *out, const char *xml, size_t len, pc_error *err);
int pc_s3_parse_uploads(pc_s3_uploads *out, const char *xml, size_t len, pc_error *err);
/* <Error><Code>..</Code><Message>..</Message></Error>: *code and *message (caller frees, NULL
 * when absent). Returns PC_EINVAL when xml is no S3 error document. */
int pc_s3_parse_error(const char *xml, size_t len, char **code, char **message);
/* The text of the first element `name` anywhere in xml (decoded; caller frees): a helper for
 * one-value answers (UploadId). PC_ENOTFOUND when absent. */
int pc_s3_xml_value(const char *xml, size_t len, const char *name, char **out, pc_error *err);

#endif
