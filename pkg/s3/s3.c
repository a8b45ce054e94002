/* s3.c: the S3 client: configuration and credentials, URLs, one signed request with retries,
 * and the object, listing and multipart operations on top of it.
 *
 * libcurl signs (CURLOPT_AWS_SIGV4). What it leaves to us on Debian's 7.88: the
 * x-amz-content-sha256 header, which S3 requires and which must hold the payload's real hash for
 * the server to check the bytes; and a canonical query string (curl 7.88 signs the query as
 * given), so every query this file builds is already sorted by name and SigV4-encoded. */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* --- configuration --------------------------------------------------------------------------- */

static const char *env(const pc_s3_config *cfg, const char *name)
{
    const char *v = cfg->getenv_fn ? cfg->getenv_fn(name, cfg->env_ctx) : NULL;
    return v && *v ? v : NULL;
}

static bool is_ip_host(const char *host, size_t n)
{
    if (n && host[0] == '[')
        return true; /* IPv6 literal */
    for (size_t i = 0; i < n; i++)
        if ((host[i] < '0' || host[i] > '9') && host[i] != '.')
            return false;
    return n > 0;
}

/* A bucket name that can stand as one DNS label in front of the endpoint's host (and match a
 * wildcard certificate): lower-case letters, digits and '-', no dots. */
static bool dns_label(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || b[0] == '-' || b[n - 1] == '-')
        return false;
    for (; *b; b++)
        if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '-'))
            return false;
    return true;
}

static int parse_endpoint(pc_s3 *s3, pc_error *err)
{
    const char *e = s3->endpoint, *hp, *slash;
    if (strncmp(e, "https://", 8) == 0) {
        s3->scheme = pc_strdup("https");
        hp = e + 8;
    } else if (strncmp(e, "http://", 7) == 0) {
        s3->scheme = pc_strdup("http");
        hp = e + 7;
    } else {
        return pc_error_set(err, PC_EINVAL,
                            "S3 endpoint \"%s\" must start with https:// (or http:// for a local "
                            "test server)",
                            s3->shown);
    }
    if (strchr(hp, '@'))
        return pc_error_set(err, PC_EINVAL,
                            "S3 endpoint \"%s\" holds user information: give the credentials as "
                            "access_key_id and secret_access_key instead",
                            s3->shown);
    slash = strchr(hp, '/');
    if (slash && slash[1] != '\0')
        return pc_error_set(err, PC_EINVAL,
                            "S3 endpoint \"%s\" has a path: give scheme://host[:port] only (the "
                            "bucket is configured on its own)",
                            s3->shown);
    if (strchr(hp, '?') || strchr(hp, '#'))
        return pc_error_set(err, PC_EINVAL, "S3 endpoint \"%s\" has a query or fragment",
                            s3->shown);
    s3->hostport = slash ? pc_strndup(hp, (size_t)(slash - hp)) : pc_strdup(hp);
    if (!s3->scheme || !s3->hostport)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    if (!*s3->hostport)
        return pc_error_set(err, PC_EINVAL, "S3 endpoint \"%s\" has no host", s3->shown);
    return 0;
}

static bool valid_bucket(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (; *b; b++)
        if (!((*b >= 'a' && *b <= 'z') || (*b >= 'A' && *b <= 'Z') || (*b >= '0' && *b <= '9') ||
              *b == '-' || *b == '.' || *b == '_'))
            return false;
    return true;
}

int pc_s3_new(pc_s3 **out, const pc_s3_config *cfg, pc_error *err)
{
    pc_s3 *s3 = NULL;
    const char *region, *id, *secret, *token;
    int rc = 0;

    *out = NULL;
    if (!cfg || !cfg->bucket || !*cfg->bucket)
        return pc_error_set(err, PC_EINVAL, "S3: no bucket configured");
    if (!valid_bucket(cfg->bucket))
        return pc_error_set(err, PC_EINVAL,
                            "S3 bucket name \"%s\" is not valid: 3 to 63 letters, digits, '-', "
                            "'.' or '_'",
                            cfg->bucket);
    if (!(s3 = calloc(1, sizeof *s3)))
        return pc_error_set(err, PC_ENOMEM, "out of memory");

    region = cfg->region && *cfg->region ? cfg->region : env(cfg, "AWS_REGION");
    if (!region)
        region = env(cfg, "AWS_DEFAULT_REGION");
    if (!region)
        region = "us-east-1";
    if (cfg->access_key_id && *cfg->access_key_id) {
        id = cfg->access_key_id;
        secret = cfg->secret_access_key;
        token = cfg->session_token;
    } else {
        id = env(cfg, "AWS_ACCESS_KEY_ID");
        secret = env(cfg, "AWS_SECRET_ACCESS_KEY");
        token = env(cfg, "AWS_SESSION_TOKEN");
        s3->creds_from_env = true;
    }
    s3->region = pc_strdup(region);
    s3->bucket = pc_strdup(cfg->bucket);
    s3->endpoint = cfg->endpoint && *cfg->endpoint
                       ? pc_strdup(cfg->endpoint)
                       : pc_asprintf("https://s3.%s.amazonaws.com", region);
    if (!s3->region || !s3->bucket || !s3->endpoint) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    size_t el = strlen(s3->endpoint);
    if (el > 0 && s3->endpoint[el - 1] == '/')
        s3->endpoint[el - 1] = '\0';
    if (!(s3->shown = pc_redact(s3->endpoint))) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = parse_endpoint(s3, err)) < 0)
        goto done;
    for (const char *r = region; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-')) {
            rc = pc_error_set(err, PC_EINVAL,
                              "S3 region \"%s\" is not valid (lower-case letters, digits, '-')",
                              region);
            goto done;
        }
    if (!id || !secret || !*secret) {
        rc = pc_error_set(
            err, PC_EINVAL, "S3 bucket %s at %s: no credentials: %s", s3->bucket, s3->shown,
            s3->creds_from_env
                ? "set access_key_id and secret_access_key (archiving.s3), or AWS_ACCESS_KEY_ID "
                  "and AWS_SECRET_ACCESS_KEY in the environment"
                : "access_key_id is set but secret_access_key is not: set both");
        goto done;
    }
    if (strchr(id, ':') || strchr(id, '\n') || strchr(id, '\r')) {
        rc = pc_error_set(err, PC_EINVAL, "S3 access key id \"%s\" holds ':' or a line break", id);
        goto done;
    }
    if (token && (strchr(token, '\n') || strchr(token, '\r'))) {
        rc = pc_error_set(err, PC_EINVAL, "S3 session token holds a line break");
        goto done;
    }
    s3->key_id = pc_strdup(id);
    s3->secret = pc_strdup(secret);
    s3->token = token && *token ? pc_strdup(token) : NULL;
    s3->ca_file = cfg->ca_file && *cfg->ca_file ? pc_strdup(cfg->ca_file) : NULL;
    if (!s3->key_id || !s3->secret || (token && *token && !s3->token) ||
        (cfg->ca_file && *cfg->ca_file && !s3->ca_file) ||
        pc_secrets_add(&s3->secrets, secret) < 0 || pc_secrets_add(&s3->secrets, token) < 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    s3->skip_tls_verify = cfg->skip_tls_verify;
    s3->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    s3->idle_timeout_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 60000;
    s3->request_timeout_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 0;
    s3->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 5;
    s3->retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 200;
    s3->retry_max_ms = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : 20000;
    s3->style = cfg->uri_style;
    if (s3->style == PC_S3_URI_AUTO) {
        const char *colon = strrchr(s3->hostport, ':');
        size_t hl =
            colon && s3->hostport[0] != '[' ? (size_t)(colon - s3->hostport) : strlen(s3->hostport);
        s3->style = is_ip_host(s3->hostport, hl) || !dns_label(s3->bucket) ? PC_S3_URI_PATH
                                                                           : PC_S3_URI_VIRTUAL;
    } else if (s3->style == PC_S3_URI_VIRTUAL && !dns_label(s3->bucket)) {
        rc = pc_error_set(err, PC_EINVAL,
                          "S3 bucket \"%s\" cannot be addressed virtual-host style (it is no "
                          "lower-case DNS label without dots): set uri_style: path",
                          s3->bucket);
        goto done;
    }
    s3->rng = (uint64_t)pc_mono_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() ^
              (uint64_t)(uintptr_t)s3;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(s3->curl = curl_easy_init())) {
        rc = pc_error_set(err, PC_ENOMEM, "S3: libcurl could not be initialised");
        goto done;
    }
done:
    if (rc < 0)
        pc_s3_free(s3);
    else
        *out = s3;
    return rc;
}

static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

void pc_s3_free(pc_s3 *s3)
{
    if (!s3)
        return;
    if (s3->curl)
        curl_easy_cleanup(s3->curl);
    free(s3->endpoint);
    free(s3->shown);
    free(s3->scheme);
    free(s3->hostport);
    free(s3->region);
    free(s3->bucket);
    free(s3->key_id);
    free_secret(s3->secret);
    free_secret(s3->token);
    free(s3->ca_file);
    pc_secrets_dispose(&s3->secrets);
    free(s3);
}

int pc_s3_dup(pc_s3 **out, const pc_s3 *src, pc_error *err)
{
    pc_s3_config c = {.endpoint = src->endpoint,
                      .region = src->region,
                      .bucket = src->bucket,
                      .uri_style = src->style,
                      .access_key_id = src->key_id,
                      .secret_access_key = src->secret,
                      .session_token = src->token,
                      .ca_file = src->ca_file,
                      .skip_tls_verify = src->skip_tls_verify,
                      .connect_timeout_ms = src->connect_timeout_ms,
                      .idle_timeout_ms = src->idle_timeout_ms,
                      .request_timeout_ms = src->request_timeout_ms,
                      .max_attempts = src->max_attempts,
                      .retry_base_ms = src->retry_base_ms,
                      .retry_max_ms = src->retry_max_ms};
    int rc = pc_s3_new(out, &c, err);
    if (rc == 0)
        (*out)->creds_from_env = src->creds_from_env; /* the hints name the same source */
    return rc;
}

long pc_s3_last_status(const pc_s3 *s3)
{
    return s3 ? s3->last_status : 0;
}

const char *pc_s3_last_code(const pc_s3 *s3)
{
    return s3 ? s3->last_code : "";
}

pc_s3_uri_style pc_s3_uri_style_of(const pc_s3 *s3)
{
    return s3->style;
}

/* --- pure pieces ----------------------------------------------------------------------------- */

int pc_s3_uri_encode(pc_buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            if (pc_buf_append(b, (const char *)p, 1) < 0)
                return PC_ENOMEM;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (pc_buf_append(b, e, 3) < 0)
                return PC_ENOMEM;
        }
    }
    return 0;
}

int pc_s3_url(const pc_s3 *s3, const char *key, const char *query, char **out, pc_error *err)
{
    pc_buf b = {0};
    int rc;
    *out = NULL;
    if (s3->style == PC_S3_URI_VIRTUAL)
        rc = pc_buf_printf(&b, "%s://%s.%s/", s3->scheme, s3->bucket, s3->hostport);
    else
        rc =
            pc_buf_printf(&b, "%s://%s/%s%s", s3->scheme, s3->hostport, s3->bucket, key ? "/" : "");
    if (rc == 0 && key)
        rc = pc_s3_uri_encode(&b, key, true);
    if (rc == 0 && query && *query)
        rc = pc_buf_printf(&b, "?%s", query);
    if (rc < 0) {
        pc_buf_free(&b);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    *out = pc_buf_detach(&b);
    return *out ? 0 : pc_error_set(err, PC_ENOMEM, "out of memory");
}

int pc_s3_payload_header(char out[96], const void *data, size_t len)
{
    char hex[65];
    pc_sha256_hex(data ? data : "", data ? len : 0, hex);
    snprintf(out, 96, "x-amz-content-sha256: %s", hex);
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

int pc_s3_parse_time(const char *s, int64_t *out)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int y, mo = 0, d, h, mi, sec;
    if (!s)
        return PC_EINVAL;
    if (strlen(s) >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
        s[16] == ':') { /* 2026-12-06T19:35:34[.539]Z */
        const char *z = s + 19;
        if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
            !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
            return PC_EINVAL;
        if (*z == '.')
            for (z++; *z >= '0' && *z <= '9'; z++)
                ;
        if (strcmp(z, "Z") != 0 && strcmp(z, "+00:00") != 0)
            return PC_EINVAL;
    } else if (strlen(s) == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' &&
               s[16] == ' ' && s[19] == ':' && s[22] == ':' && strcmp(s + 25, " GMT") == 0) {
        /* Sun, 06 Dec 2026 19:35:30 GMT */
        for (int i = 0; i < 12; i++)
            if (strncmp(s + 8, months + 3 * i, 3) == 0)
                mo = i + 1;
        if (!mo || !digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) || !digits(s + 17, 2, &h) ||
            !digits(s + 20, 2, &mi) || !digits(s + 23, 2, &sec))
            return PC_EINVAL;
    } else {
        return PC_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return PC_EINVAL;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

bool pc_s3_retryable(int curl_code, long status, const char *s3_code)
{
    if (curl_code != 0) {
        switch ((CURLcode)curl_code) {
        case CURLE_COULDNT_RESOLVE_HOST: /* a DNS hiccup as often as a typo; retries are cheap */
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR: /* reset during the handshake; a bad certificate is 60 */
            return true;
        default:
            /* bad URL or option, certificate not trusted, our reader or writer failed, out of
             * memory: the same again would fail the same way */
            return false;
        }
    }
    if (status >= 500)
        return status != 501; /* 501 NotImplemented is an answer, not a hiccup */
    if (status >= 200 && status < 300 && s3_code && *s3_code)
        /* CompleteMultipartUpload answers 200 and then an <Error> */
        return strcmp(s3_code, "InternalError") == 0 || strcmp(s3_code, "SlowDown") == 0 ||
               strcmp(s3_code, "ServiceUnavailable") == 0;
    return false; /* 4xx: the request itself is wrong; repeating it changes nothing */
}

long pc_s3_backoff_ms(int retry, long base_ms, long max_ms, uint64_t rnd)
{
    long cap = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < retry && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    long half = cap / 2;
    return half + (long)(rnd % (uint64_t)(cap - half + 1));
}

static uint64_t next_rand(pc_s3 *s3)
{
    uint64_t x = s3->rng ? s3->rng : 0x2545F4914F6CDD1DULL; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s3->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* --- one request ----------------------------------------------------------------------------- */

typedef struct s3_req {
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
} s3_req;

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    s3_req *r = ud;
    size_t want = size * n;
    uint64_t total = r->reader ? r->reader->size : r->body_len;
    if (r->sent >= total)
        return 0;
    if (want > total - r->sent)
        want = (size_t)(total - r->sent);
    if (r->reader) {
        ssize_t got = r->reader->read(r->reader->ctx, r->sent, buf, want);
        if (got <= 0) {
            r->reader_errno = got < 0 ? errno : EIO;
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)got;
    } else {
        memcpy(buf, (const char *)r->body + r->sent, want);
    }
    r->sent += want;
    return want;
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    s3_req *r = ud;
    size_t len = size * n;
    if (len > 5 && strncasecmp(line, "ETag:", 5) == 0) {
        const char *v = line + 5, *e = line + len;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        if (e - v >= 2 && *v == '"' && e[-1] == '"') {
            v++;
            e--;
        }
        size_t m = (size_t)(e - v) < sizeof r->etag - 1 ? (size_t)(e - v) : sizeof r->etag - 1;
        memcpy(r->etag, v, m);
        r->etag[m] = '\0';
    } else if (len > 14 && strncasecmp(line, "Content-Range:", 14) == 0) {
        const char *v = line + 14;
        while (*v == ' ')
            v++;
        if (strncmp(v, "bytes ", 6) == 0) {
            const char *slash = memchr(v, '/', (size_t)(line + len - v));
            r->range_start = strtoull(v + 6, NULL, 10);
            if (slash && slash[1] >= '0' && slash[1] <= '9')
                r->range_total = strtoull(slash + 1, NULL, 10);
        }
    } else if (len > 14 && strncasecmp(line, "Last-Modified:", 14) == 0) {
        char t[64];
        const char *v = line + 14, *e = line + len;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        if ((size_t)(e - v) < sizeof t) {
            memcpy(t, v, (size_t)(e - v));
            t[e - v] = '\0';
            if (pc_s3_parse_time(t, &r->last_modified) < 0)
                r->last_modified = 0;
        }
    } else if (len > 5 && strncasecmp(line, "HTTP/", 5) == 0) {
        r->etag[0] = '\0'; /* a new answer (after 100 Continue) */
        r->range_start = UINT64_MAX;
        r->range_total = UINT64_MAX;
        r->last_modified = 0;
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    s3_req *r = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(r->s3->curl, CURLINFO_RESPONSE_CODE, &status);
    if (r->sink && status >= 200 && status < 300) {
        size_t off = 0;
        size_t end = len;
        if (status == 206 && !r->range_checked &&
            r->range_start != (r->has_range ? r->range_off : 0) + r->delivered) {
            r->bad_range = true; /* not the bytes we asked for */
            return 0;
        }
        r->range_checked = true;        /* once per answer: delivered grows from here on */
        if (status == 200 && r->skip) { /* the server ignored our Range: drop what we have */
            off = r->skip < len ? (size_t)r->skip : len;
            r->skip -= off;
        }
        if (r->has_range && end - off > r->range_len - r->delivered) /* the rest is not ours */
            end = off + (size_t)(r->range_len - r->delivered);
        if (!r->etag_first[0]) /* headers are in: the version being delivered */
            snprintf(r->etag_first, sizeof r->etag_first, "%s", r->etag);
        if (off < end) {
            int rc = r->sink(r->sink_ctx, p + off, end - off, r->err);
            if (rc < 0) {
                r->sink_rc = rc;
                return 0;
            }
            r->delivered += end - off;
        }
        return len;
    }
    size_t max = status >= 200 && status < 300 ? r->resp_max : S3_ERROR_BODY_MAX;
    if (r->resp.len + len > max) {
        if (status >= 200 && status < 300) {
            r->resp_overflow = true;
            return 0;
        }
        return len; /* an error body: the start is enough */
    }
    if (pc_buf_append(&r->resp, p, len) < 0)
        return 0;
    return len;
}

/* "s3://bucket/key" for messages (the key escaped by pc_error_set's %s handling). */
static char *object_name(const pc_s3 *s3, const char *key)
{
    return key ? pc_asprintf("s3://%s/%s", s3->bucket, key) : pc_asprintf("s3://%s", s3->bucket);
}

/* Sets err to msg with the client's secrets scrubbed (whatever a server echoes). */
static int set_scrubbed(pc_s3 *s3, pc_error *err, int code, const char *msg)
{
    char *clean = pc_scrub(msg, pc_secrets_list(&s3->secrets));
    int rc = pc_error_set(err, code, "%s",
                          clean ? clean : "(S3 error withheld: out of memory scrubbing secrets)");
    free(clean);
    return rc;
}

static const char *hint_for(const pc_s3 *s3, long status, const char *code)
{
    if (!code)
        code = "";
    if (strcmp(code, "SignatureDoesNotMatch") == 0)
        return s3->creds_from_env ? "check the secret access key (AWS_SECRET_ACCESS_KEY) that "
                                    "belongs to this access key id, and the region"
                                  : "check secret_access_key (archiving.s3.secret_access_key): "
                                    "it does not belong to this access key id; check the region "
                                    "too";
    if (strcmp(code, "InvalidAccessKeyId") == 0)
        return s3->creds_from_env
                   ? "the server knows no such access key id: check AWS_ACCESS_KEY_ID"
                   : "the server knows no such access key id: check access_key_id "
                     "(archiving.s3.access_key_id)";
    if (strcmp(code, "NoSuchBucket") == 0)
        return "create the bucket (pipectl does not create buckets), or fix the bucket name, the "
               "endpoint and the region";
    if (strcmp(code, "AccessDenied") == 0)
        return "the credentials are valid but not allowed this: grant s3:GetObject, s3:PutObject, "
               "s3:DeleteObject, s3:ListBucket, s3:ListBucketMultipartUploads and "
               "s3:AbortMultipartUpload on the bucket and its objects";
    if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
        strcmp(code, "TokenRefreshRequired") == 0)
        return "the session token is expired or invalid: refresh the temporary credentials "
               "(session_token / AWS_SESSION_TOKEN)";
    if (strcmp(code, "RequestTimeTooSkewed") == 0)
        return "this host's clock is too far from the server's: synchronise it (NTP)";
    if (strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
        strcmp(code, "PermanentRedirect") == 0 || status == 301)
        return "the bucket lives in another region or behind another endpoint: set "
               "archiving.s3.region (and endpoint) to the bucket's";
    if (strcmp(code, "NoSuchUpload") == 0)
        return "the multipart upload is gone (completed or aborted already)";
    if (strcmp(code, "EntityTooLarge") == 0)
        return "the object is larger than the server takes in one PUT: upload it in parts";
    if (strcmp(code, "EntityTooSmall") == 0)
        return "every part but the last must be at least 5 MiB";
    if (strcmp(code, "InvalidPart") == 0 || strcmp(code, "InvalidPartOrder") == 0)
        return "the parts listed do not match the parts uploaded";
    if (strcmp(code, "XAmzContentSHA256Mismatch") == 0 || strcmp(code, "BadDigest") == 0)
        return "the bytes the server received are not the bytes sent (changed while read, or "
               "damaged in transit): retry, and check the source";
    if (strcmp(code, "PreconditionFailed") == 0)
        return "the object changed while it was read: retry";
    if (status >= 500)
        return "the server failed on its side: see its log, retry later";
    return NULL;
}

static int code_for_status(long status, const char *code)
{
    if (status == 404 ||
        (code && (strcmp(code, "NoSuchKey") == 0 || strcmp(code, "NoSuchBucket") == 0 ||
                  strcmp(code, "NoSuchUpload") == 0)))
        return PC_ENOTFOUND;
    if (status >= 500 ||
        (code && (strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0)))
        return PC_EUNAVAIL;
    if (status == 409 || status == 412)
        return PC_ECONFLICT;
    if (status == 400 &&
        !(code && (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
                   strcmp(code, "AuthorizationHeaderMalformed") == 0)))
        return PC_EINVAL;
    return PC_EREFUSED;
}

/* The error of an HTTP answer >= 300 (or a 200 carrying <Error>). */
static int http_error(pc_s3 *s3, s3_req *r, int attempts)
{
    char *code = NULL, *message = NULL, *obj = object_name(s3, r->key);
    pc_buf m = {0};
    int rc;
    const char *hint;

    pc_s3_parse_error(r->resp.data, r->resp.len, &code, &message);
    if (!code && r->status == 404 && strcmp(r->method, "HEAD") == 0)
        code = pc_strdup(r->key ? "NoSuchKey" : "NoSuchBucket"); /* HEAD has no body */
    hint = hint_for(s3, r->status, code);
    if ((r->if_none_match || (r->if_match && strcmp(r->method, "GET") != 0)) &&
        (r->status == 412 || r->status == 409))
        hint = r->if_none_match ? "an object with this key exists already (conditional write)"
                                : "the object is not the version expected (conditional write)";
    rc = code_for_status(r->status, code);
    pc_buf_printf(&m, "S3 %s %s at %s: HTTP %ld", r->what, obj ? obj : "?", s3->shown, r->status);
    if (code)
        pc_buf_printf(&m, " %s", code);
    if (message && *message)
        pc_buf_printf(&m, ": %s", message);
    else if (!code && r->resp.len)
        pc_buf_printf(&m, ": %.200s", r->resp.data);
    if (attempts > 1)
        pc_buf_printf(&m, " (after %d attempts)", attempts);
    if (s3->key_id && (rc == PC_EREFUSED || (code && strstr(code, "Signature"))))
        pc_buf_printf(&m, " [access key id %s, region %s]", s3->key_id, s3->region);
    if (hint)
        pc_buf_printf(&m, "; %s", hint);
    rc = set_scrubbed(s3, r->err, rc, m.data ? m.data : "S3 error (out of memory)");
    snprintf(s3->last_code, sizeof s3->last_code, "%s", code ? code : "");
    free(code);
    free(message);
    free(obj);
    pc_buf_free(&m);
    return rc;
}

static int curl_error(pc_s3 *s3, s3_req *r, CURLcode cc, int attempts)
{
    char *obj = object_name(s3, r->key);
    pc_buf m = {0};
    int rc = PC_EUNAVAIL;
    const char *hint = "check the endpoint (archiving.s3.endpoint) and that the server runs and "
                       "is reachable from this host";
    const char *detail = s3->curl_err[0] ? s3->curl_err : curl_easy_strerror(cc);

    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
        cc == CURLE_SSL_CERTPROBLEM) {
        rc = PC_EREFUSED;
        hint = s3->ca_file ? "the server's certificate is not signed by the CA in ca_file, or "
                             "does not name this host: check archiving.s3.ca_file and the "
                             "endpoint's host name"
                           : "the server's certificate is not trusted here: set "
                             "archiving.s3.ca_file to the CA that signed it (verify_tls: false "
                             "only for throwaway tests)";
    } else if (cc == CURLE_ABORTED_BY_CALLBACK || cc == CURLE_WRITE_ERROR ||
               cc == CURLE_READ_ERROR || cc == CURLE_OUT_OF_MEMORY) {
        rc = cc == CURLE_OUT_OF_MEMORY ? PC_ENOMEM : PC_EIO;
        hint = NULL;
    } else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
        rc = PC_EINVAL;
        hint = "check the endpoint (archiving.s3.endpoint)";
    }
    pc_buf_printf(&m, "S3 %s %s at %s failed: %s", r->what, obj ? obj : "?", s3->shown, detail);
    if (attempts > 1)
        pc_buf_printf(&m, " (after %d attempts)", attempts);
    if (hint)
        pc_buf_printf(&m, "; %s", hint);
    rc = set_scrubbed(s3, r->err, rc, m.data ? m.data : "S3 error (out of memory)");
    free(obj);
    pc_buf_free(&m);
    return rc;
}

static int sha256_reader(const pc_s3_reader *rd, char hex[65], pc_error *err)
{
    pc_sha256 *h = NULL;
    char *buf = malloc(1 << 16);
    uint64_t off = 0;
    int rc = 0;
    if (!buf) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_sha256_new(&h)) < 0) {
        rc = pc_error_set(err, rc, "S3 upload: SHA-256 of the payload unavailable (OpenSSL)");
        goto done;
    }
    while (off < rd->size) {
        size_t want = rd->size - off < (1 << 16) ? (size_t)(rd->size - off) : (1 << 16);
        ssize_t got = rd->read(rd->ctx, off, buf, want);
        if (got <= 0) {
            rc = pc_error_set(err, PC_EIO, "reading the data to upload at offset %llu: %s",
                              (unsigned long long)off, got < 0 ? strerror(errno) : "ends early");
            goto done;
        }
        pc_sha256_update(h, buf, (size_t)got);
        off += (uint64_t)got;
    }
    pc_sha256_final(h, hex);
done:
    pc_sha256_free(h);
    free(buf);
    return rc;
}

/* Performs r with retries. 0 on a 2xx answer (r->status, r->resp, r->etag set). */
static int s3_perform(pc_s3 *s3, s3_req *r, pc_error *err)
{
    struct curl_slist *hdrs = NULL;
    char *url = NULL, payload[96], hex[65], range[48];
    int rc = 0, attempt;
    bool upload =
        r->body || r->reader || strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0;
    CURL *c = s3->curl;

    r->err = err;
    r->s3 = s3;
    s3->last_status = 0;
    s3->last_code[0] = '\0';
    if (r->key && (!*r->key || strlen(r->key) > S3_MAX_KEY))
        return pc_error_set(err, PC_EINVAL, "S3 key \"%s\" is empty or longer than %d bytes",
                            r->key, S3_MAX_KEY);
    if ((rc = pc_s3_url(s3, r->key, r->query, &url, err)) < 0)
        return rc;
    if (r->reader) {
        if (r->reader->sha256_hex && strlen(r->reader->sha256_hex) == 64)
            snprintf(hex, sizeof hex, "%s", r->reader->sha256_hex);
        else if ((rc = sha256_reader(r->reader, hex, err)) < 0)
            goto done;
        snprintf(payload, sizeof payload, "x-amz-content-sha256: %s", hex);
    } else {
        pc_s3_payload_header(payload, r->body, r->body_len);
    }

    for (attempt = 1;; attempt++) {
        struct curl_slist *t;
        char *ct = NULL, *tok = NULL, *ifm = NULL;
        CURLcode cc;
        bool retry;

        curl_slist_free_all(hdrs);
        hdrs = NULL;
        pc_buf_free(&r->resp);
        r->etag[0] = '\0';
        r->sent = 0;
        r->skip = 0;
        r->sink_rc = 0;
        r->reader_errno = 0;
        r->resp_overflow = false;
        r->bad_range = false;
        r->range_checked = false;
        r->range_start = UINT64_MAX;
        r->range_total = UINT64_MAX;
        r->status = 0;
        s3->curl_err[0] = '\0';
        range[0] = '\0';
        if (r->has_range) { /* from where an earlier attempt stopped, if one did */
            snprintf(range, sizeof range, "%llu-%llu",
                     (unsigned long long)(r->range_off + r->delivered),
                     (unsigned long long)(r->range_off + r->range_len - 1));
            r->skip = r->range_off + r->delivered; /* in case the server ignores the Range */
        } else if (r->sink && r->delivered > 0) {  /* resume a broken download of the object */
            snprintf(range, sizeof range, "%llu-", (unsigned long long)r->delivered);
            r->skip = r->delivered; /* in case the server ignores the Range */
        }
        /* the version asked for, or the one a resumed download started with */
        const char *want = r->if_match;
        if (!want && r->sink && r->delivered > 0 && r->etag_first[0])
            want = r->etag_first;
        if (want)
            ifm = pc_asprintf("If-Match: \"%s\"", want);
        if (r->content_type)
            ct = pc_asprintf("Content-Type: %s", r->content_type);
        if (s3->token)
            tok = pc_asprintf("x-amz-security-token: %s", s3->token);
        t = curl_slist_append(NULL, payload);
        hdrs = t;
        if (t && ct)
            t = curl_slist_append(hdrs, ct);
        if (t && tok)
            t = curl_slist_append(hdrs, tok);
        if (t && ifm)
            t = curl_slist_append(hdrs, ifm);
        if (t && r->if_none_match)
            t = curl_slist_append(hdrs, "If-None-Match: *");
        if (t && upload)
            t = curl_slist_append(hdrs, "Expect:"); /* no 1 s wait for 100-continue */
        free(ct);
        free_secret(tok);
        free(ifm);
        if (!t || (r->content_type && !ct) || (s3->token && !tok) || (want && !ifm)) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }

        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* a key's "./" is part of the name */
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        {
            char sig[96];
            snprintf(sig, sizeof sig, "aws:amz:%s:s3", s3->region);
            curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sig); /* curl copies the string */
        }
        curl_easy_setopt(c, CURLOPT_USERNAME, s3->key_id);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s3->secret);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s3->curl_err);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "pipectl-s3/0.1");
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s3->connect_timeout_ms);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (s3->idle_timeout_ms + 999) / 1000);
        if (s3->request_timeout_ms)
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s3->request_timeout_ms);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, s3->skip_tls_verify ? 0L : 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s3->skip_tls_verify ? 0L : 2L);
        if (s3->ca_file)
            curl_easy_setopt(c, CURLOPT_CAINFO, s3->ca_file);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        if (upload) {
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, r);
            curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                             (curl_off_t)(r->reader ? r->reader->size : r->body_len));
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
        } else if (strcmp(r->method, "HEAD") == 0) {
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else if (strcmp(r->method, "GET") != 0) {
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
        }
        if (range[0])
            curl_easy_setopt(c, CURLOPT_RANGE, range);

        cc = curl_easy_perform(c);
        if (cc == CURLE_OK || cc == CURLE_WRITE_ERROR)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        s3->last_status = r->status;
        if (cc == CURLE_WRITE_ERROR && r->sink_rc < 0) { /* the caller's writer stopped */
            char *obj = object_name(s3, r->key);
            rc = pc_error_set(err, r->sink_rc, "S3 %s %s: writing the downloaded bytes failed",
                              r->what, obj ? obj : "?");
            free(obj);
            goto done;
        }
        if (cc == CURLE_WRITE_ERROR && r->bad_range) {
            char *obj = object_name(s3, r->key);
            rc =
                pc_error_set(err, PC_EUNAVAIL,
                             "S3 %s %s at %s: resuming the download at byte %llu, the server "
                             "answered another range",
                             r->what, obj ? obj : "?", s3->shown, (unsigned long long)r->delivered);
            free(obj);
            goto done;
        }
        if (cc == CURLE_WRITE_ERROR && r->resp_overflow) {
            char *obj = object_name(s3, r->key);
            rc = pc_error_set(err, PC_EINVAL, "S3 %s %s at %s: the answer is larger than %zu bytes",
                              r->what, obj ? obj : "?", s3->shown, r->resp_max);
            free(obj);
            goto done;
        }
        if ((cc == CURLE_ABORTED_BY_CALLBACK || cc == CURLE_READ_ERROR) && r->reader_errno) {
            char *obj = object_name(s3, r->key);
            rc = pc_error_set(err, PC_EIO, "S3 %s %s: reading the data to upload failed: %s",
                              r->what, obj ? obj : "?", strerror(r->reader_errno));
            free(obj);
            goto done;
        }
        if (cc == CURLE_OK) {
            char *code = NULL, *msg = NULL;
            curl_off_t cl = -1;
            if (curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
                cl >= 0) {
                r->content_length = (uint64_t)cl;
                r->have_length = true;
            }
            if (r->status >= 200 && r->status < 300 && !r->sink && r->resp.len &&
                pc_s3_parse_error(r->resp.data, r->resp.len, &code, &msg) == 0) {
                /* 200 with <Error>: CompleteMultipartUpload's way of failing */
                retry = pc_s3_retryable(0, r->status, code);
                snprintf(s3->last_code, sizeof s3->last_code, "%s", code ? code : "");
                free(code);
                free(msg);
                if (!retry || attempt >= s3->max_attempts) {
                    rc = http_error(s3, r, attempt);
                    goto done;
                }
            } else if (r->status >= 200 && r->status < 300) {
                rc = 0;
                goto done;
            } else {
                char *c2 = NULL, *m2 = NULL;
                pc_s3_parse_error(r->resp.data, r->resp.len, &c2, &m2);
                retry = pc_s3_retryable(0, r->status, c2);
                free(c2);
                free(m2);
                if (!retry || attempt >= s3->max_attempts) {
                    rc = http_error(s3, r, attempt);
                    goto done;
                }
            }
        } else {
            retry = pc_s3_retryable((int)cc, 0, NULL);
            if (!retry || attempt >= s3->max_attempts) {
                rc = curl_error(s3, r, cc, attempt);
                goto done;
            }
        }
        pc_sleep_ms(pc_s3_backoff_ms(attempt, s3->retry_base_ms, s3->retry_max_ms, next_rand(s3)));
    }
done:
    curl_slist_free_all(hdrs);
    /* the request's options point at r and hdrs: forget them */
    curl_easy_reset(c);
    free(url);
    return rc;
}

/* --- objects --------------------------------------------------------------------------------- */

static void fill_info(pc_s3_info *info, const s3_req *r, uint64_t size)
{
    if (!info)
        return;
    info->size = size;
    snprintf(info->etag, sizeof info->etag, "%s", r->etag);
    info->last_modified = r->last_modified;
}

int pc_s3_put(pc_s3 *s3, const char *key, const void *data, size_t len, pc_s3_info *info,
              pc_error *err)
{
    return pc_s3_put_cond(s3, key, data, len, NULL, info, err);
}

int pc_s3_put_cond(pc_s3 *s3, const char *key, const void *data, size_t len, const pc_s3_cond *cond,
                   pc_s3_info *info, pc_error *err)
{
    s3_req r = {.method = "PUT",
                .key = key,
                .what = "PUT",
                .body = data ? data : "",
                .body_len = data ? len : 0,
                .resp_max = S3_ERROR_BODY_MAX,
                .if_match = cond ? cond->if_match : NULL,
                .if_none_match = cond && cond->if_none_match};
    int rc = s3_perform(s3, &r, err);
    if (rc == 0)
        fill_info(info, &r, r.body_len);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_put_reader(pc_s3 *s3, const char *key, const pc_s3_reader *rd, pc_s3_info *info,
                     pc_error *err)
{
    s3_req r = {
        .method = "PUT", .key = key, .what = "PUT", .reader = rd, .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!rd || !rd->read)
        return pc_error_set(err, PC_EINVAL, "S3 PUT of %s: no reader", key ? key : "?");
    if ((rc = s3_perform(s3, &r, err)) == 0)
        fill_info(info, &r, rd->size);
    pc_buf_free(&r.resp);
    return rc;
}

typedef struct fd_src {
    int fd;
    uint64_t offset;
} fd_src;

static ssize_t fd_read(void *ctx, uint64_t off, void *buf, size_t n)
{
    fd_src *f = ctx;
    ssize_t got;
    do
        got = pread(f->fd, buf, n, (off_t)(f->offset + off));
    while (got < 0 && errno == EINTR);
    return got;
}

int pc_s3_put_fd(pc_s3 *s3, const char *key, int fd, uint64_t offset, uint64_t len,
                 pc_s3_info *info, pc_error *err)
{
    fd_src f = {fd, offset};
    pc_s3_reader rd = {.read = fd_read, .ctx = &f, .size = len};
    return pc_s3_put_reader(s3, key, &rd, info, err);
}

int pc_s3_get(pc_s3 *s3, const char *key, pc_s3_write_fn fn, void *ctx, pc_s3_info *info,
              pc_error *err)
{
    s3_req r = {.method = "GET",
                .key = key,
                .what = "GET",
                .sink = fn,
                .sink_ctx = ctx,
                .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!fn)
        return pc_error_set(err, PC_EINVAL, "S3 GET of %s: no writer", key ? key : "?");
    if ((rc = s3_perform(s3, &r, err)) == 0 && info) {
        fill_info(info, &r, r.delivered);
        snprintf(info->etag, sizeof info->etag, "%s", r.etag_first[0] ? r.etag_first : r.etag);
    }
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_get_range(pc_s3 *s3, const char *key, uint64_t offset, uint64_t len, const char *if_match,
                    pc_s3_write_fn fn, void *ctx, pc_s3_info *info, pc_error *err)
{
    s3_req r = {.method = "GET",
                .key = key,
                .what = "GET",
                .sink = fn,
                .sink_ctx = ctx,
                .resp_max = S3_ERROR_BODY_MAX,
                .has_range = true,
                .range_off = offset,
                .range_len = len,
                .if_match = if_match && *if_match ? if_match : NULL};
    int rc;
    if (!fn || len == 0 || offset > UINT64_MAX - len)
        return pc_error_set(err, PC_EINVAL, "S3 ranged GET of %s: no writer or an empty range",
                            key ? key : "?");
    if ((rc = s3_perform(s3, &r, err)) == 0 && info) {
        fill_info(info, &r, r.range_total != UINT64_MAX ? r.range_total : r.content_length);
        snprintf(info->etag, sizeof info->etag, "%s", r.etag_first[0] ? r.etag_first : r.etag);
    }
    pc_buf_free(&r.resp);
    return rc;
}

typedef struct buf_sink {
    pc_buf *out;
    size_t max, got;
    const char *key;
} buf_sink;

static int to_buf(void *ctx, const void *data, size_t n, pc_error *err)
{
    buf_sink *b = ctx;
    if (b->max && b->got + n > b->max)
        return pc_error_set(err, PC_EINVAL, "S3 object %s is larger than %zu bytes", b->key,
                            b->max);
    if (pc_buf_append(b->out, data, n) < 0)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    b->got += n;
    return 0;
}

int pc_s3_get_buf(pc_s3 *s3, const char *key, pc_buf *out, size_t max, pc_s3_info *info,
                  pc_error *err)
{
    buf_sink b = {out, max, 0, key};
    if (pc_buf_append(out, "", 0) < 0) /* an empty object is "", not NULL */
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    return pc_s3_get(s3, key, to_buf, &b, info, err);
}

int pc_s3_head(pc_s3 *s3, const char *key, pc_s3_info *info, pc_error *err)
{
    s3_req r = {.method = "HEAD", .key = key, .what = "HEAD", .resp_max = S3_ERROR_BODY_MAX};
    int rc = s3_perform(s3, &r, err);
    if (rc == 0)
        fill_info(info, &r, r.have_length ? r.content_length : 0);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_delete(pc_s3 *s3, const char *key, pc_error *err)
{
    s3_req r = {.method = "DELETE", .key = key, .what = "DELETE", .resp_max = S3_ERROR_BODY_MAX};
    int rc = s3_perform(s3, &r, err);
    pc_buf_free(&r.resp);
    return rc;
}

/* --- listing --------------------------------------------------------------------------------- */

int pc_s3_list_page(pc_s3 *s3, const char *prefix, const char *token, int max_keys,
                    pc_s3_listing *out, pc_error *err)
{
    pc_buf q = {0};
    s3_req r = {.method = "GET", .what = "list", .resp_max = S3_XML_BODY_MAX};
    int rc;

    if (max_keys <= 0 || max_keys > 1000)
        max_keys = 1000;
    /* canonical order: continuation-token, list-type, max-keys, prefix */
    if (token && *token) {
        rc = pc_buf_puts(&q, "continuation-token=");
        if (rc == 0)
            rc = pc_s3_uri_encode(&q, token, false);
        if (rc == 0)
            rc = pc_buf_puts(&q, "&");
    } else {
        rc = 0;
    }
    if (rc == 0)
        rc = pc_buf_printf(&q, "list-type=2&max-keys=%d", max_keys);
    if (rc == 0 && prefix && *prefix) {
        rc = pc_buf_puts(&q, "&prefix=");
        if (rc == 0)
            rc = pc_s3_uri_encode(&q, prefix, false);
    }
    if (rc < 0) {
        pc_buf_free(&q);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    r.query = q.data;
    if ((rc = s3_perform(s3, &r, err)) == 0) {
        if ((rc = pc_s3_parse_listing(out, r.resp.data ? r.resp.data : "", r.resp.len, err)) < 0)
            pc_error_prefix(err, "S3 list s3://%s/%s at %s", s3->bucket, prefix ? prefix : "",
                            s3->shown);
    }
    pc_buf_free(&q);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_list(pc_s3 *s3, const char *prefix, int max_keys, pc_s3_list_fn fn, void *ctx,
               pc_error *err)
{
    pc_s3_listing page = {0};
    char *token = NULL;
    int rc;
    for (;;) {
        if ((rc = pc_s3_list_page(s3, prefix, token, max_keys, &page, err)) < 0)
            break;
        for (size_t i = 0; i < page.n && rc == 0; i++)
            rc = fn(ctx, &page.items[i]);
        if (rc != 0 || !page.truncated)
            break;
        if (token && strcmp(token, page.next_token) == 0) { /* a server going round in circles */
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "S3 list s3://%s/%s at %s: the server returned the same "
                              "continuation token twice",
                              s3->bucket, prefix ? prefix : "", s3->shown);
            break;
        }
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        pc_s3_listing_dispose(&page);
    }
    free(token);
    pc_s3_listing_dispose(&page);
    return rc;
}

/* --- multipart upload ------------------------------------------------------------------------ */

static int upload_query(pc_buf *q, const char *upload_id, int part_number)
{
    int rc = 0;
    if (part_number > 0)
        rc = pc_buf_printf(q, "partNumber=%d&", part_number);
    if (rc == 0)
        rc = pc_buf_puts(q, "uploadId=");
    if (rc == 0)
        rc = pc_s3_uri_encode(q, upload_id, false);
    return rc;
}

int pc_s3_multipart_create(pc_s3 *s3, const char *key, char **upload_id, pc_error *err)
{
    s3_req r = {.method = "POST",
                .key = key,
                .query = "uploads=",
                .what = "start multipart "
                        "upload of",
                .body = "",
                .body_len = 0,
                .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    *upload_id = NULL;
    if ((rc = s3_perform(s3, &r, err)) == 0 &&
        (rc = pc_s3_xml_value(r.resp.data ? r.resp.data : "", r.resp.len, "UploadId", upload_id,
                              err)) < 0)
        pc_error_prefix(err, "S3 start multipart upload of s3://%s/%s at %s", s3->bucket, key,
                        s3->shown);
    pc_buf_free(&r.resp);
    return rc;
}

static int part_put(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                    const void *data, size_t len, const pc_s3_reader *rd, char etag[PC_S3_ETAG_MAX],
                    pc_error *err)
{
    pc_buf q = {0};
    char what[64];
    s3_req r = {.method = "PUT",
                .key = key,
                .what = what,
                .body = rd     ? NULL
                        : data ? data
                               : "",
                .body_len = rd ? 0 : len,
                .reader = rd,
                .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!upload_id || !*upload_id || part_number < 1 || part_number > 10000)
        return pc_error_set(err, PC_EINVAL,
                            "S3 upload part of %s: part number %d out of 1..10000 or no upload id",
                            key ? key : "?", part_number);
    snprintf(what, sizeof what, "upload part %d of", part_number);
    if (upload_query(&q, upload_id, part_number) < 0) {
        pc_buf_free(&q);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    r.query = q.data;
    if ((rc = s3_perform(s3, &r, err)) == 0) {
        if (!r.etag[0])
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "S3 upload part %d of s3://%s/%s at %s: the answer has no ETag",
                              part_number, s3->bucket, key, s3->shown);
        else if (etag)
            snprintf(etag, PC_S3_ETAG_MAX, "%s", r.etag);
    }
    pc_buf_free(&q);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_put(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                        const void *data, size_t len, char etag[PC_S3_ETAG_MAX], pc_error *err)
{
    return part_put(s3, key, upload_id, part_number, data, len, NULL, etag, err);
}

int pc_s3_multipart_put_reader(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                               const pc_s3_reader *rd, char etag[PC_S3_ETAG_MAX], pc_error *err)
{
    if (!rd || !rd->read)
        return pc_error_set(err, PC_EINVAL, "S3 upload part of %s: no reader", key ? key : "?");
    return part_put(s3, key, upload_id, part_number, NULL, 0, rd, etag, err);
}

int pc_s3_multipart_complete(pc_s3 *s3, const char *key, const char *upload_id,
                             const char *const *etags, int n_parts, pc_s3_info *info, pc_error *err)
{
    return pc_s3_multipart_complete_cond(s3, key, upload_id, etags, n_parts, NULL, info, err);
}

int pc_s3_multipart_complete_cond(pc_s3 *s3, const char *key, const char *upload_id,
                                  const char *const *etags, int n_parts, const pc_s3_cond *cond,
                                  pc_s3_info *info, pc_error *err)
{
    pc_buf q = {0}, body = {0};
    s3_req r = {.method = "POST",
                .key = key,
                .what = "complete multipart upload of",
                .content_type = "application/xml",
                .resp_max = S3_ERROR_BODY_MAX,
                .if_match = cond ? cond->if_match : NULL,
                .if_none_match = cond && cond->if_none_match};
    char *etag = NULL;
    int rc = 0;

    if (!upload_id || !*upload_id || n_parts < 1 || n_parts > 10000)
        return pc_error_set(err, PC_EINVAL,
                            "S3 complete multipart upload of %s: %d parts (1..10000) or no upload "
                            "id",
                            key ? key : "?", n_parts);
    rc = pc_buf_puts(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < n_parts && rc == 0; i++) {
        const char *e = etags[i];
        if (!e || !*e || strpbrk(e, "<>&\"")) {
            pc_buf_free(&body);
            return pc_error_set(err, PC_EINVAL,
                                "S3 complete multipart upload of %s: part %d has no valid ETag",
                                key ? key : "?", i + 1);
        }
        rc = pc_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                           i + 1, e);
    }
    if (rc == 0)
        rc = pc_buf_puts(&body, "</CompleteMultipartUpload>");
    if (rc == 0)
        rc = upload_query(&q, upload_id, 0);
    if (rc < 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    r.query = q.data;
    r.body = body.data;
    r.body_len = body.len;
    if ((rc = s3_perform(s3, &r, err)) < 0)
        goto done;
    /* success is a CompleteMultipartUploadResult; a 200 with <Error> was caught in perform */
    if (pc_s3_xml_value(r.resp.data ? r.resp.data : "", r.resp.len, "ETag", &etag, NULL) == 0 &&
        info)
        snprintf(info->etag, sizeof info->etag, "%s", etag);
    if (info)
        info->size = 0;
done:
    free(etag);
    pc_buf_free(&q);
    pc_buf_free(&body);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_abort(pc_s3 *s3, const char *key, const char *upload_id, pc_error *err)
{
    pc_buf q = {0};
    s3_req r = {.method = "DELETE",
                .key = key,
                .what = "abort multipart upload of",
                .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!upload_id || !*upload_id)
        return pc_error_set(err, PC_EINVAL, "S3 abort multipart upload of %s: no upload id",
                            key ? key : "?");
    if (upload_query(&q, upload_id, 0) < 0) {
        pc_buf_free(&q);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    r.query = q.data;
    rc = s3_perform(s3, &r, err);
    pc_buf_free(&q);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_list(pc_s3 *s3, const char *prefix, pc_s3_uploads *out, pc_error *err)
{
    char *key_marker = NULL, *id_marker = NULL;
    int rc = 0;
    for (;;) {
        pc_buf q = {0};
        s3_req r = {
            .method = "GET", .what = "list multipart uploads in", .resp_max = S3_XML_BODY_MAX};
        /* canonical order: key-marker, prefix, upload-id-marker, uploads */
        if (key_marker) {
            rc = pc_buf_puts(&q, "key-marker=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, key_marker, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0 && prefix && *prefix) {
            rc = pc_buf_puts(&q, "prefix=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, prefix, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0 && id_marker && *id_marker) {
            rc = pc_buf_puts(&q, "upload-id-marker=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, id_marker, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0)
            rc = pc_buf_puts(&q, "uploads=");
        if (rc < 0) {
            pc_buf_free(&q);
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            break;
        }
        r.query = q.data;
        rc = s3_perform(s3, &r, err);
        if (rc == 0 &&
            (rc = pc_s3_parse_uploads(out, r.resp.data ? r.resp.data : "", r.resp.len, err)) < 0)
            pc_error_prefix(err, "S3 list multipart uploads in s3://%s at %s", s3->bucket,
                            s3->shown);
        pc_buf_free(&q);
        pc_buf_free(&r.resp);
        if (rc < 0 || !out->truncated)
            break;
        if (key_marker && pc_streq(key_marker, out->next_key_marker) &&
            pc_streq(id_marker, out->next_upload_id_marker)) {
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "S3 list multipart uploads in s3://%s at %s: the server returned "
                              "the same markers twice",
                              s3->bucket, s3->shown);
            break;
        }
        free(key_marker);
        free(id_marker);
        key_marker = out->next_key_marker;
        id_marker = out->next_upload_id_marker;
        out->next_key_marker = out->next_upload_id_marker = NULL;
    }
    out->truncated = false;
    free(key_marker);
    free(id_marker);
    return rc;
}
