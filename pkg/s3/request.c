/* request.c: one signed S3 request with retries: the payload's hash, headers and curl options,
 * the answer's headers and body (streamed to a sink, kept, or checked against a range), and
 * curl's and S3's errors translated into messages that name the object and say what to do.
 * Queries come in canonical already (see s3.c). */
#include "s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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


static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    pc_s3_req *r = ud;
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
    pc_s3_req *r = ud;
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
    pc_s3_req *r = ud;
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
static int http_error(pc_s3 *s3, pc_s3_req *r, int attempts)
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

static int curl_error(pc_s3 *s3, pc_s3_req *r, CURLcode cc, int attempts)
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
int pc_s3_perform(pc_s3 *s3, pc_s3_req *r, pc_error *err)
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
        pc_s3_free_secret(tok);
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
