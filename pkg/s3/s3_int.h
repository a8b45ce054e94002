/* s3_int.h: private to pkg/s3: the client struct and one request as the files of the module
 * share them (s3.c: configuration, pure pieces, objects and listing; request.c: one signed request
 * with retries and error translation; multipart.c: multipart uploads; xml.c: the answers). */
#ifndef PC_S3_INT_H
#define PC_S3_INT_H
#if !defined(PC_INSIDE_S3) && !defined(PC_WHITEBOX_TEST)
#error "s3_int.h is private to pkg/s3: include s3.h"
#endif

#include "s3.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S3_MAX_KEY 1024
#define S3_ERROR_BODY_MAX (64 * 1024)      /* an error answer kept for its <Code>/<Message> */
#define S3_XML_BODY_MAX (64 * 1024 * 1024) /* a listing page of 1,000 long keys fits easily */

struct pc_s3 {
    CURL *curl;
    char *endpoint; /* as configured, without a trailing '/' */
    char *shown;    /* endpoint through pc_redact: what messages name */
    char *scheme;   /* "http" or "https" */
    char *hostport; /* host[:port] */
    char *region;
    char *bucket;
    pc_s3_uri_style style; /* PATH or VIRTUAL, AUTO resolved */
    char *key_id;
    char *secret;
    char *token;
    bool creds_from_env;
    char *ca_file;
    bool skip_tls_verify;
    long connect_timeout_ms, idle_timeout_ms, request_timeout_ms;
    int max_attempts;
    long retry_base_ms, retry_max_ms;
    uint64_t rng;
    pc_secrets secrets; /* secret and token in every form: scrubbed from every message */
    long last_status;
    char last_code[64];
    char curl_err[CURL_ERROR_SIZE];
};

/* Wipes a secret's bytes before freeing it; NULL is harmless. */
static inline void pc_s3_free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* One request (request.c): what to send, where the answer goes, and its results. */
typedef struct pc_s3_req {
    const char *method;
    const char *key;   /* NULL: the bucket */
    const char *query; /* canonical, or NULL */
    const char *what;  /* the operation in messages: "PUT", "upload part 3 of", ... */
    const void *body;  /* in-memory payload, or */
    size_t body_len;
    const pc_s3_reader *reader; /* a streamed one */
    const char *content_type;
    pc_s3_write_fn sink; /* GET: 2xx bodies go here (else into resp) */
    void *sink_ctx;
    size_t resp_max; /* limit of resp for 2xx answers */
    bool has_range;  /* GET of [range_off, range_off + range_len) only */
    uint64_t range_off, range_len;
    const char *if_match; /* the ETag the object must have (GET, PUT, complete) */
    bool if_none_match;   /* PUT, complete: only when the key is free */
    /* results */
    long status;
    pc_buf resp; /* the answer's body (2xx without sink; error bodies always) */
    char etag[PC_S3_ETAG_MAX];
    char etag_first[PC_S3_ETAG_MAX]; /* GET: the ETag of the first bytes delivered */
    uint64_t content_length;
    bool have_length;
    uint64_t range_total; /* Content-Range's "/total"; UINT64_MAX when none */
    int64_t last_modified;
    /* state of an attempt */
    uint64_t sent;      /* payload bytes handed to curl in this attempt */
    uint64_t delivered; /* body bytes given to sink, over all attempts */
    uint64_t skip;      /* bytes of this attempt's body already delivered before */
    int sink_rc;
    int reader_errno;
    uint64_t range_start; /* Content-Range of a 206: where its bytes start */
    bool bad_range;
    bool range_checked; /* this attempt's Content-Range was compared with what we asked */
    bool resp_overflow;
    pc_error *err;
    pc_s3 *s3;
} pc_s3_req;

/* Performs r with retries. 0 on a 2xx answer (r->status, r->resp, r->etag set). */
int pc_s3_perform(pc_s3 *s3, pc_s3_req *r, pc_error *err);

#endif
