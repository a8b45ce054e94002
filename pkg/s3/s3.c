/* s3.c: the S3 client: configuration and credentials, URLs and the other pure pieces, and the
 * object and listing operations. One signed request with retries is request.c's, multipart
 * uploads are multipart.c's.
 *
 * libcurl signs (CURLOPT_AWS_SIGV4). What it leaves to us on Debian's 7.88: the
 * x-amz-content-sha256 header, which S3 requires and which must hold the payload's real hash for
 * the server to check the bytes; and a canonical query string (curl 7.88 signs the query as
 * given), so every query this module builds is already sorted by name and SigV4-encoded. */
#include "s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    pc_s3_free_secret(s3->secret);
    pc_s3_free_secret(s3->token);
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
    *out = pc_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
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
/* --- objects --------------------------------------------------------------------------------- */

static void fill_info(pc_s3_info *info, const pc_s3_req *r, uint64_t size)
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
    pc_s3_req r = {.method = "PUT",
                   .key = key,
                   .what = "PUT",
                   .body = data ? data : "",
                   .body_len = data ? len : 0,
                   .resp_max = S3_ERROR_BODY_MAX,
                   .if_match = cond ? cond->if_match : NULL,
                   .if_none_match = cond && cond->if_none_match};
    int rc = pc_s3_perform(s3, &r, err);
    if (rc == 0)
        fill_info(info, &r, r.body_len);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_put_reader(pc_s3 *s3, const char *key, const pc_s3_reader *rd, pc_s3_info *info,
                     pc_error *err)
{
    pc_s3_req r = {
        .method = "PUT", .key = key, .what = "PUT", .reader = rd, .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!rd || !rd->read)
        return pc_error_set(err, PC_EINVAL, "S3 PUT of %s: no reader", key ? key : "?");
    if ((rc = pc_s3_perform(s3, &r, err)) == 0)
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
    pc_s3_req r = {.method = "GET",
                   .key = key,
                   .what = "GET",
                   .sink = fn,
                   .sink_ctx = ctx,
                   .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!fn)
        return pc_error_set(err, PC_EINVAL, "S3 GET of %s: no writer", key ? key : "?");
    if ((rc = pc_s3_perform(s3, &r, err)) == 0 && info) {
        fill_info(info, &r, r.delivered);
        snprintf(info->etag, sizeof info->etag, "%s", r.etag_first[0] ? r.etag_first : r.etag);
    }
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_get_range(pc_s3 *s3, const char *key, uint64_t offset, uint64_t len, const char *if_match,
                    pc_s3_write_fn fn, void *ctx, pc_s3_info *info, pc_error *err)
{
    pc_s3_req r = {.method = "GET",
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
    if ((rc = pc_s3_perform(s3, &r, err)) == 0 && info) {
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
    pc_s3_req r = {.method = "HEAD", .key = key, .what = "HEAD", .resp_max = S3_ERROR_BODY_MAX};
    int rc = pc_s3_perform(s3, &r, err);
    if (rc == 0)
        fill_info(info, &r, r.have_length ? r.content_length : 0);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_delete(pc_s3 *s3, const char *key, pc_error *err)
{
    pc_s3_req r = {.method = "DELETE", .key = key, .what = "DELETE", .resp_max = S3_ERROR_BODY_MAX};
    int rc = pc_s3_perform(s3, &r, err);
    pc_buf_free(&r.resp);
    return rc;
}

/* --- listing --------------------------------------------------------------------------------- */

int pc_s3_list_page(pc_s3 *s3, const char *prefix, const char *token, int max_keys,
                    pc_s3_listing *out, pc_error *err)
{
    pc_buf q = {0};
    pc_s3_req r = {.method = "GET", .what = "list", .resp_max = S3_XML_BODY_MAX};
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
    if ((rc = pc_s3_perform(s3, &r, err)) == 0) {
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
