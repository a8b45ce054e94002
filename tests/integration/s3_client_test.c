/* s3_client_test.c: pkg/s3 against a real S3-compatible server (s3proxy, started by
 * scripts/s3_stack.sh: the `s3` ctest fixture). Reads PC_S3_ENDPOINT, PC_S3_ENDPOINT_TLS,
 * PC_S3_CA_FILE, PC_S3_REGION, PC_S3_BUCKET, PC_S3_ACCESS_KEY_ID, PC_S3_SECRET_ACCESS_KEY from
 * the environment (DIR/s3.env) and fails when they are missing: a skipped test in CI is a failure.
 * Every object lives under a prefix unique to the run.
 *
 * What landed is checked on the server's side: bytes read back and hashed, sizes and ETags from
 * HEAD, keys from listings, uploads from the in-progress list.
 *
 * Retries need a server that fails on cue, which s3proxy is not: test_retries runs a scripted
 * HTTP server on a loopback socket in a thread (503 SlowDown, 500, a body cut short, a Range it
 * ignores) and checks what arrived at it on every attempt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "s3.h"

static char prefix[64];

static const char *need(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr,
                "s3_client_test: %s is not set: start scripts/s3_stack.sh and source its "
                "s3.env (ctest does that through the `s3` fixture)\n",
                name);
        exit(1);
    }
    return v;
}

static pc_s3_config base_config(void)
{
    pc_s3_config c = {
        .endpoint = need("PC_S3_ENDPOINT"),
        .region = need("PC_S3_REGION"),
        .bucket = need("PC_S3_BUCKET"),
        .uri_style = PC_S3_URI_PATH,
        .access_key_id = need("PC_S3_ACCESS_KEY_ID"),
        .secret_access_key = need("PC_S3_SECRET_ACCESS_KEY"),
        .max_attempts = 3,
        .retry_base_ms = 20,
    };
    return c;
}

static pc_s3 *open_client(const pc_s3_config *c)
{
    pc_s3 *s3 = NULL;
    pc_error err = {0};
    if (pc_s3_new(&s3, c, &err) < 0)
        fail_msg("pc_s3_new: %s", err.msg);
    return s3;
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static char *key_of(const char *name)
{
    char *k = malloc(strlen(prefix) + strlen(name) + 1);
    assert_non_null(k);
    strcpy(k, prefix);
    strcat(k, name);
    return k;
}

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
}

static void digest_hex(const char *md, const void *p, size_t n, char *out)
{
    unsigned char d[64];
    unsigned int len = 0;
    EVP_Digest(p, n, d, &len, EVP_get_digestbyname(md), NULL);
    for (unsigned int i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void expect_ok(int rc, const pc_error *err, const char *what)
{
    if (rc != 0)
        fail_msg("%s: rc %d: %s", what, rc, err->msg);
}

/* ---------- objects ---------- */

static void round_trip(pc_s3 *s3, const char *name, size_t n, uint64_t seed)
{
    unsigned char *data = malloc(n ? n : 1);
    char *key = key_of(name), want[129], got[129];
    pc_error err = {0};
    pc_s3_info info = {0};
    pc_buf back = {0};
    assert_non_null(data);
    fill_random(data, n, seed);
    digest_hex("SHA256", data, n, want);

    expect_ok(pc_s3_put(s3, key, data, n, &info, &err), &err, "put");
    assert_int_equal(info.size, n);
    char md5[33];
    digest_hex("MD5", data, n, md5);
    assert_string_equal(info.etag, md5); /* a single PUT's ETag is the MD5 of its bytes */

    memset(&info, 0, sizeof info);
    expect_ok(pc_s3_head(s3, key, &info, &err), &err, "head");
    assert_int_equal(info.size, n);
    assert_string_equal(info.etag, md5);

    expect_ok(pc_s3_get_buf(s3, key, &back, 0, &info, &err), &err, "get");
    assert_int_equal(back.len, n);
    digest_hex("SHA256", back.data, back.len, got);
    assert_string_equal(got, want);
    assert_int_equal(info.size, n);
    assert_string_equal(info.etag, md5);
    pc_buf_free(&back);

    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete");
    assert_int_equal(pc_s3_head(s3, key, &info, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    free(key);
    free(data);
}

static void test_round_trip(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    round_trip(s3, "bin/one-mib-and-a-bit", (1 << 20) + 13, 1);
    round_trip(s3, "bin/empty", 0, 2);
    /* a key that needs every kind of encoding: in the URL, in the signature, in the listing */
    round_trip(s3, "odd/sp ace+plus=eq&amp;caf\xc3\xa9~*!'()$,;:@[]", 4097, 3);
    pc_s3_free(s3);
}

static void test_put_fd_and_get_stream(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    char path[] = "/tmp/pc-s3-test-XXXXXX", *key = key_of("fd/object");
    size_t n = 3 * 1000 * 1000 + 7, skip = 4096;
    unsigned char *data = malloc(n);
    int fd = mkstemp(path);
    pc_error err = {0};
    pc_s3_info info = {0};
    pc_buf back = {0};
    char want[65], got[65];

    assert_true(fd >= 0);
    unlink(path);
    fill_random(data, n, 7);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    /* from an offset, and the fd's own position is left alone */
    expect_ok(pc_s3_put_fd(s3, key, fd, skip, n - skip, &info, &err), &err, "put_fd");
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)n);
    assert_int_equal(info.size, n - skip);
    expect_ok(pc_s3_get_buf(s3, key, &back, 0, NULL, &err), &err, "get");
    digest_hex("SHA256", data + skip, n - skip, want);
    digest_hex("SHA256", back.data, back.len, got);
    assert_string_equal(got, want);
    pc_buf_free(&back);

    /* a limit below the size: refused, not truncated silently */
    assert_int_equal(pc_s3_get_buf(s3, key, &back, 1000, NULL, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "larger than 1000 bytes"));
    pc_error_clear(&err);
    pc_buf_free(&back);

    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete");
    close(fd);
    free(data);
    free(key);
    pc_s3_free(s3);
}

static void test_missing_key(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    char *key = key_of("no/such/key");
    pc_error err = {0};
    pc_buf b = {0};
    pc_s3_info info;
    assert_int_equal(pc_s3_get_buf(s3, key, &b, 0, NULL, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "HTTP 404 NoSuchKey"));
    assert_non_null(strstr(err.msg, key));
    assert_int_equal(pc_s3_last_status(s3), 404);
    assert_string_equal(pc_s3_last_code(s3), "NoSuchKey");
    pc_error_clear(&err);
    assert_int_equal(pc_s3_head(s3, key, &info, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    /* DELETE of a missing key succeeds, as on S3 */
    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete missing");
    pc_buf_free(&b);
    free(key);
    pc_s3_free(s3);
}

/* ---------- listing ---------- */

typedef struct seen {
    size_t n;
    bool sorted;
    char last[256];
    uint64_t bytes;
} seen;

static int count_key(void *ctx, const pc_s3_object *o)
{
    seen *s = ctx;
    if (s->n && strcmp(s->last, o->key) >= 0)
        s->sorted = false;
    snprintf(s->last, sizeof s->last, "%s", o->key);
    s->bytes += o->size;
    s->n++;
    return 0;
}

static int stop_at_3(void *ctx, const pc_s3_object *o)
{
    (void)o;
    return ++*(int *)ctx == 3 ? 42 : 0;
}

#define N_LIST 2500

static void test_listing_pages(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    char key[128], lp[96];
    pc_error err = {0};
    double t0 = now_s();

    snprintf(lp, sizeof lp, "%slist/", prefix);
    for (int i = 0; i < N_LIST; i++) {
        char body[16];
        int n = snprintf(body, sizeof body, "%d", i);
        snprintf(key, sizeof key, "%s%05d", lp, i);
        expect_ok(pc_s3_put(s3, key, body, (size_t)n, NULL, &err), &err, "put for listing");
    }
    double t1 = now_s();

    /* 1,000 a page (the server's and S3's maximum): 3 pages, every key once, in order */
    seen s = {.sorted = true};
    expect_ok(pc_s3_list(s3, lp, 1000, count_key, &s, &err), &err, "list");
    assert_int_equal(s.n, N_LIST);
    assert_true(s.sorted);
    uint64_t want_bytes = 0;
    for (int i = 0; i < N_LIST; i++)
        want_bytes += (uint64_t)snprintf(key, sizeof key, "%d", i);
    assert_int_equal(s.bytes, want_bytes);
    double t2 = now_s();

    /* page by page: truncated with a token until the last */
    pc_s3_listing page = {0};
    char *token = NULL;
    int pages = 0;
    do {
        pc_s3_listing_dispose(&page);
        expect_ok(pc_s3_list_page(s3, lp, token, 1000, &page, &err), &err, "list page");
        pages++;
        free(token);
        token = page.next_token ? strdup(page.next_token) : NULL;
        if (page.truncated)
            assert_int_equal(page.n, 1000);
    } while (page.truncated);
    assert_int_equal(pages, 3);
    assert_int_equal(page.n, N_LIST - 2000);
    snprintf(key, sizeof key, "%s%05d", lp, N_LIST - 1);
    assert_string_equal(page.items[page.n - 1].key, key);
    pc_s3_listing_dispose(&page);

    /* small pages cross many tokens the same way; a prefix narrows */
    s = (seen){.sorted = true};
    snprintf(key, sizeof key, "%s012", lp); /* 01200..01299 */
    expect_ok(pc_s3_list(s3, key, 7, count_key, &s, &err), &err, "list small pages");
    assert_int_equal(s.n, 100);
    assert_true(s.sorted);

    /* the callback stops the listing and its value comes back */
    int calls = 0;
    assert_int_equal(pc_s3_list(s3, lp, 1000, stop_at_3, &calls, &err), 42);
    assert_int_equal(calls, 3);
    double t3 = now_s();
    fprintf(stderr,
            "s3_client_test: %d PUTs in %.2f s (%.1f ms each), list of %d in 3 pages "
            "in %.3f s, 15 pages of 7 + stop in %.3f s\n",
            N_LIST, t1 - t0, (t1 - t0) * 1000 / N_LIST, N_LIST, t2 - t1, t3 - t2);

    /* clean up, and the prefix is empty afterwards */
    for (int i = 0; i < N_LIST; i++) {
        snprintf(key, sizeof key, "%s%05d", lp, i);
        expect_ok(pc_s3_delete(s3, key, &err), &err, "delete");
    }
    s = (seen){.sorted = true};
    expect_ok(pc_s3_list(s3, lp, 0, count_key, &s, &err), &err, "list after delete");
    assert_int_equal(s.n, 0);
    fprintf(stderr, "s3_client_test: %d DELETEs in %.2f s\n", N_LIST, now_s() - t3);
    pc_s3_free(s3);
}

/* ---------- multipart ---------- */

typedef struct mem_src {
    const unsigned char *p;
    size_t n;
} mem_src;

static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t n)
{
    mem_src *m = ctx;
    if (off >= m->n)
        return 0;
    if (n > m->n - off)
        n = m->n - off;
    memcpy(buf, m->p + off, n);
    return (ssize_t)n;
}

static bool upload_listed(pc_s3 *s3, const char *key, const char *id)
{
    pc_s3_uploads u = {0};
    pc_error err = {0};
    bool found = false;
    expect_ok(pc_s3_multipart_list(s3, prefix, &u, &err), &err, "list uploads");
    for (size_t i = 0; i < u.n; i++)
        if (strcmp(u.items[i].key, key) == 0 && strcmp(u.items[i].upload_id, id) == 0)
            found = true;
    pc_s3_uploads_dispose(&u);
    return found;
}

#define MIB (1024 * 1024)

static void test_multipart_complete(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    size_t sizes[3] = {5 * MIB, 5 * MIB, 5 * MIB}, total = 15 * MIB, off = 0;
    unsigned char *data = malloc(total);
    char *key = key_of("mp/fifteen-mib"), *id = NULL, etags[3][PC_S3_ETAG_MAX], want[65], got[65];
    const char *list[3] = {etags[0], etags[1], etags[2]};
    pc_error err = {0};
    pc_s3_info info = {0};
    pc_buf back = {0};
    double t0 = now_s();

    fill_random(data, total, 99);
    expect_ok(pc_s3_multipart_create(s3, key, &id, &err), &err, "create");
    assert_true(upload_listed(s3, key, id));
    for (int i = 0; i < 3; i++) {
        if (i == 1) { /* the reader path, hashed by a first pass */
            mem_src m = {data + off, sizes[i]};
            pc_s3_reader r = {.read = mem_read, .ctx = &m, .size = sizes[i]};
            expect_ok(pc_s3_multipart_put_reader(s3, key, id, i + 1, &r, etags[i], &err), &err,
                      "upload part (reader)");
        } else {
            expect_ok(pc_s3_multipart_put(s3, key, id, i + 1, data + off, sizes[i], etags[i], &err),
                      &err, "upload part");
        }
        char md5[33];
        digest_hex("MD5", data + off, sizes[i], md5);
        assert_string_equal(etags[i], md5);
        off += sizes[i];
    }
    expect_ok(pc_s3_multipart_complete(s3, key, id, list, 3, &info, &err), &err, "complete");
    assert_non_null(strstr(info.etag, "-3")); /* a multipart ETag: md5-of-md5s "-" parts */
    assert_false(upload_listed(s3, key, id));

    expect_ok(pc_s3_head(s3, key, &info, &err), &err, "head");
    assert_int_equal(info.size, total);
    expect_ok(pc_s3_get_buf(s3, key, &back, 0, NULL, &err), &err, "get");
    assert_int_equal(back.len, total);
    digest_hex("SHA256", data, total, want);
    digest_hex("SHA256", back.data, back.len, got);
    assert_string_equal(got, want);
    fprintf(stderr, "s3_client_test: multipart 3 x 5 MiB + read back in %.2f s\n", now_s() - t0);

    /* completing it again: the upload is gone (S3 says NoSuchUpload, s3proxy NoSuchKey) */
    assert_int_equal(pc_s3_multipart_complete(s3, key, id, list, 3, NULL, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "HTTP 404"));
    pc_error_clear(&err);
    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete");
    pc_buf_free(&back);
    free(id);
    free(key);
    free(data);
    pc_s3_free(s3);
}

static void test_multipart_abort(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_s3 *s3 = open_client(&c);
    char *key = key_of("mp/aborted"), *id = NULL, *id2 = NULL, etag[PC_S3_ETAG_MAX];
    unsigned char part[64 * 1024];
    pc_error err = {0};
    pc_s3_info info;

    fill_random(part, sizeof part, 5);
    expect_ok(pc_s3_multipart_create(s3, key, &id, &err), &err, "create");
    expect_ok(pc_s3_multipart_create(s3, key, &id2, &err), &err, "create a second");
    assert_string_not_equal(id, id2);
    expect_ok(pc_s3_multipart_put(s3, key, id, 1, part, sizeof part, etag, &err), &err, "part");
    assert_true(upload_listed(s3, key, id));
    assert_true(upload_listed(s3, key, id2));

    expect_ok(pc_s3_multipart_abort(s3, key, id, &err), &err, "abort");
    assert_false(upload_listed(s3, key, id));
    assert_true(upload_listed(s3, key, id2)); /* the other upload of the same key stays */
    assert_int_equal(pc_s3_head(s3, key, &info, &err), PC_ENOTFOUND); /* nothing was stored */
    pc_error_clear(&err);
    assert_int_equal(pc_s3_multipart_abort(s3, key, id, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "NoSuchUpload"));
    pc_error_clear(&err);

    expect_ok(pc_s3_multipart_abort(s3, key, id2, &err), &err, "abort the second");
    assert_false(upload_listed(s3, key, id2));
    free(id);
    free(id2);
    free(key);
    pc_s3_free(s3);
}

/* ---------- errors people meet ---------- */

static void test_wrong_secret(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    static const char wrong[] = "WrongSecretKeyWhichMustNeverBePrinted0000";
    c.secret_access_key = wrong;
    pc_s3 *s3 = open_client(&c);
    char *key = key_of("denied");
    pc_error err = {0};
    pc_buf b = {0};

    assert_int_equal(pc_s3_put(s3, key, "x", 1, NULL, &err), PC_EREFUSED);
    fprintf(stderr, "s3_client_test: wrong secret: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "HTTP 403 SignatureDoesNotMatch"));
    assert_non_null(strstr(err.msg, "check secret_access_key"));
    assert_non_null(strstr(err.msg, c.endpoint));
    assert_non_null(strstr(err.msg, c.bucket));
    assert_non_null(strstr(err.msg, key));
    assert_null(strstr(err.msg, wrong));
    assert_null(strstr(err.msg, need("PC_S3_SECRET_ACCESS_KEY")));
    assert_null(strstr(err.msg, "after")); /* a 4xx is not retried */
    pc_error_clear(&err);
    assert_int_equal(pc_s3_get_buf(s3, key, &b, 0, NULL, &err), PC_EREFUSED);
    assert_null(strstr(err.msg, wrong));
    pc_error_clear(&err);
    pc_s3_free(s3);

    /* an access key id the server does not know */
    c = base_config();
    c.access_key_id = "PCNOSUCHKEYID";
    s3 = open_client(&c);
    assert_int_equal(pc_s3_put(s3, key, "x", 1, NULL, &err), PC_EREFUSED);
    fprintf(stderr, "s3_client_test: unknown key id: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "HTTP 403"));
    assert_non_null(strstr(err.msg, "access_key_id"));
    assert_null(strstr(err.msg, need("PC_S3_SECRET_ACCESS_KEY")));
    pc_buf_free(&b);
    free(key);
    pc_s3_free(s3);
}

static void test_missing_bucket(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    c.bucket = "pipectl-no-such-bucket";
    pc_s3 *s3 = open_client(&c);
    pc_error err = {0};
    seen s = {0};
    assert_int_equal(pc_s3_put(s3, "k", "x", 1, NULL, &err), PC_ENOTFOUND);
    fprintf(stderr, "s3_client_test: missing bucket: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "s3://pipectl-no-such-bucket/k"));
    assert_non_null(strstr(err.msg, "HTTP 404 NoSuchBucket"));
    assert_non_null(strstr(err.msg, "create the bucket"));
    pc_error_clear(&err);
    assert_int_equal(pc_s3_list(s3, NULL, 0, count_key, &s, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "NoSuchBucket"));
    pc_s3_free(s3);
}

static void test_unreachable(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    c.endpoint = "http://127.0.0.1:1"; /* nothing listens on port 1 */
    c.max_attempts = 3;
    c.retry_base_ms = 10;
    pc_s3 *s3 = open_client(&c);
    pc_error err = {0};
    double t0 = now_s();
    assert_int_equal(pc_s3_put(s3, "k", "x", 1, NULL, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "http://127.0.0.1:1"));
    assert_non_null(strstr(err.msg, "after 3 attempts")); /* connection errors are retried */
    assert_non_null(strstr(err.msg, "check the endpoint"));
    assert_true(now_s() - t0 < 5);
    pc_s3_free(s3);
}

/* ---------- retries, against a scripted server ---------- */

typedef struct fault_step {
    const char *head; /* status line and headers, without the blank line */
    const char *body; /* sent after the blank line */
    size_t body_len;
} fault_step;

typedef struct fault_req {
    char line[256];
    char range[64];
    char if_match[128];
    char sha_header[80];
    char body_sha[65];
    size_t body_len;
} fault_req;

typedef struct fault_srv {
    int fd;
    int port;
    const fault_step *steps;
    int n_steps;
    fault_req reqs[8];
    int n_reqs;
    pthread_t th;
} fault_srv;

static void header_value(const char *hdrs, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = hdrs; (p = strchr(p, '\n')) != NULL;) {
        p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e;
            while (*v == ' ')
                v++;
            e = strpbrk(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return;
        }
    }
}

static void *fault_main(void *ud)
{
    fault_srv *f = ud;
    for (int i = 0; i < f->n_steps; i++) {
        int c = accept(f->fd, NULL, NULL);
        char buf[1 << 16];
        size_t got = 0;
        char *end = NULL;
        if (c < 0)
            return NULL;
        while (got < sizeof buf - 1 && !end) {
            ssize_t n = recv(c, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }
        fault_req *r = &f->reqs[f->n_reqs < 8 ? f->n_reqs++ : 7];
        memset(r, 0, sizeof *r);
        if (end) {
            char cl[32];
            *end = '\0';
            snprintf(r->line, sizeof r->line, "%.*s", (int)strcspn(buf, "\r\n"), buf);
            header_value(buf, "Range", r->range, sizeof r->range);
            header_value(buf, "If-Match", r->if_match, sizeof r->if_match);
            header_value(buf, "x-amz-content-sha256", r->sha_header, sizeof r->sha_header);
            header_value(buf, "Content-Length", cl, sizeof cl);
            size_t want = (size_t)strtoul(cl, NULL, 10), have = got - (size_t)(end + 4 - buf);
            unsigned char *body = malloc(want + 1);
            memcpy(body, end + 4, have < want ? have : want);
            while (have < want) {
                ssize_t n = recv(c, body + have, want - have, 0);
                if (n <= 0)
                    break;
                have += (size_t)n;
            }
            r->body_len = have;
            digest_hex("SHA256", body, have, r->body_sha);
            free(body);
        }
        char head[1024];
        int hn = snprintf(head, sizeof head, "%s\r\nConnection: close\r\n\r\n", f->steps[i].head);
        /* a dummy connection from fault_stop has gone already: a failed send is fine */
        if (send(c, head, (size_t)hn, MSG_NOSIGNAL) == hn && f->steps[i].body_len)
            send(c, f->steps[i].body, f->steps[i].body_len, MSG_NOSIGNAL);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

static void fault_start(fault_srv *f, const fault_step *steps, int n)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    memset(f, 0, sizeof *f);
    f->steps = steps;
    f->n_steps = n;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->fd >= 0);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 8), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fault_main, f), 0);
}

/* Waits for the server thread: it ends after its last scripted answer; a client that asks
 * fewer times than scripted is told by one dummy connection per missing request. */
static int fault_stop(fault_srv *f)
{
    int served;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)f->port)};
    served = f->n_reqs;
    for (int i = served; i < f->n_steps; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) == 0)
            send(c, "\r\n\r\n", 4, MSG_NOSIGNAL);
        close(c);
    }
    pthread_join(f->th, NULL);
    close(f->fd);
    return served;
}

static pc_s3 *fault_client(const fault_srv *f, int max_attempts)
{
    char ep[64];
    pc_s3_config c = {.endpoint = ep,
                      .bucket = "bkt",
                      .region = "us-east-1",
                      .access_key_id = "AKIDFAULT",
                      .secret_access_key = "faultsecret",
                      .max_attempts = max_attempts,
                      .retry_base_ms = 5,
                      .retry_max_ms = 20};
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->port);
    return open_client(&c);
}

#define SLOWDOWN                                                                                   \
    "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your request "             \
    "rate.</Message></Error>"
#define INTERNAL                                                                                   \
    "<Error><Code>InternalError</Code><Message>We encountered an internal "                        \
    "error.</Message></Error>"
#define DENIED "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

static void test_retries(void **state)
{
    (void)state;
    fault_srv f;
    pc_error err = {0};
    pc_s3 *s3;
    char want[65];
    char hs[128], hi[128], hd[128];
    snprintf(hs, sizeof hs, "HTTP/1.1 503 Slow Down\r\nContent-Length: %zu", strlen(SLOWDOWN));
    snprintf(hi, sizeof hi, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: %zu",
             strlen(INTERNAL));
    snprintf(hd, sizeof hd, "HTTP/1.1 403 Forbidden\r\nContent-Length: %zu", strlen(DENIED));

    /* a PUT through 503 SlowDown and 500: the third attempt lands, every attempt carried the
     * whole payload and its hash (the reader was read again from the start) */
    {
        const fault_step steps[] = {
            {hs, SLOWDOWN, strlen(SLOWDOWN)},
            {hi, INTERNAL, strlen(INTERNAL)},
            {"HTTP/1.1 200 OK\r\nETag: \"e0\"\r\nContent-Length: 0", "", 0}};
        unsigned char data[300000];
        fill_random(data, sizeof data, 11);
        digest_hex("SHA256", data, sizeof data, want);
        fault_start(&f, steps, 3);
        s3 = fault_client(&f, 5);
        mem_src m = {data, sizeof data};
        pc_s3_reader r = {.read = mem_read, .ctx = &m, .size = sizeof data};
        pc_s3_info info = {0};
        expect_ok(pc_s3_put_reader(s3, "k", &r, &info, &err), &err, "put through 5xx");
        assert_string_equal(info.etag, "e0");
        assert_int_equal(fault_stop(&f), 3);
        for (int i = 0; i < 3; i++) {
            assert_string_equal(f.reqs[i].line, "PUT /bkt/k HTTP/1.1");
            assert_int_equal(f.reqs[i].body_len, sizeof data);
            assert_string_equal(f.reqs[i].body_sha, want);
            assert_string_equal(f.reqs[i].sha_header, want);
        }
        pc_s3_free(s3);
    }
    /* a 403 is not retried */
    {
        const fault_step steps[] = {{hd, DENIED, strlen(DENIED)}, {hd, DENIED, strlen(DENIED)}};
        fault_start(&f, steps, 2);
        s3 = fault_client(&f, 5);
        assert_int_equal(pc_s3_put(s3, "k", "x", 1, NULL, &err), PC_EREFUSED);
        assert_non_null(strstr(err.msg, "HTTP 403 AccessDenied"));
        assert_non_null(strstr(err.msg, "grant s3:"));
        assert_null(strstr(err.msg, "faultsecret"));
        pc_error_clear(&err);
        assert_int_equal(fault_stop(&f), 1);
        pc_s3_free(s3);
    }
    /* 503 to the end: PC_EUNAVAIL after the configured attempts */
    {
        const fault_step steps[] = {{hs, SLOWDOWN, strlen(SLOWDOWN)},
                                    {hs, SLOWDOWN, strlen(SLOWDOWN)},
                                    {hs, SLOWDOWN, strlen(SLOWDOWN)}};
        fault_start(&f, steps, 3);
        s3 = fault_client(&f, 3);
        assert_int_equal(pc_s3_delete(s3, "k", &err), PC_EUNAVAIL);
        assert_non_null(strstr(err.msg, "HTTP 503 SlowDown"));
        assert_non_null(strstr(err.msg, "after 3 attempts"));
        pc_error_clear(&err);
        assert_int_equal(fault_stop(&f), 3);
        pc_s3_free(s3);
    }
    /* a download cut short resumes with a Range on the same version (If-Match); a server that
     * ignores the Range and sends it all again: the writer still sees each byte once */
    for (int ignore_range = 0; ignore_range < 2; ignore_range++) {
        static unsigned char obj[1000];
        char h1[128], h2[160];
        fill_random(obj, sizeof obj, 21);
        snprintf(h1, sizeof h1, "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: %zu",
                 sizeof obj);
        if (ignore_range)
            snprintf(h2, sizeof h2, "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: %zu",
                     sizeof obj);
        else
            snprintf(h2, sizeof h2,
                     "HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Range: bytes "
                     "400-999/1000\r\nContent-Length: 600");
        const fault_step steps[] = {{h1, (const char *)obj, 400},
                                    {h2, ignore_range ? (const char *)obj : (const char *)obj + 400,
                                     ignore_range ? sizeof obj : 600}};
        fault_start(&f, steps, 2);
        s3 = fault_client(&f, 3);
        pc_buf b = {0};
        pc_s3_info info = {0};
        expect_ok(pc_s3_get_buf(s3, "k", &b, 0, &info, &err), &err, "resumed get");
        assert_int_equal(b.len, sizeof obj);
        assert_memory_equal(b.data, obj, sizeof obj);
        assert_string_equal(info.etag, "v1");
        assert_int_equal(fault_stop(&f), 2);
        assert_string_equal(f.reqs[0].range, "");
        assert_string_equal(f.reqs[1].range, "bytes=400-");
        assert_string_equal(f.reqs[1].if_match, "\"v1\"");
        pc_buf_free(&b);
        pc_s3_free(s3);
    }
}

/* ---------- addressing, TLS, credentials from the environment ---------- */

static void small_round_trip(pc_s3 *s3, const char *name)
{
    char *key = key_of(name);
    pc_error err = {0};
    pc_buf b = {0};
    seen s = {.sorted = true};
    expect_ok(pc_s3_put(s3, key, "hello", 5, NULL, &err), &err, name);
    expect_ok(pc_s3_get_buf(s3, key, &b, 0, NULL, &err), &err, name);
    assert_string_equal(b.data, "hello");
    expect_ok(pc_s3_list(s3, key, 0, count_key, &s, &err), &err, name);
    assert_int_equal(s.n, 1);
    expect_ok(pc_s3_delete(s3, key, &err), &err, name);
    pc_buf_free(&b);
    free(key);
}

static void test_virtual_host(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    c.uri_style = PC_S3_URI_VIRTUAL; /* BUCKET.localhost:PORT */
    pc_s3 *s3 = open_client(&c);
    char *url = NULL;
    pc_error err = {0};
    assert_int_equal(pc_s3_url(s3, "k", NULL, &url, &err), 0);
    assert_non_null(strstr(url, "://pipectl-test.localhost:"));
    free(url);
    small_round_trip(s3, "vhost/object");
    pc_s3_free(s3);
}

static void test_tls(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    c.endpoint = need("PC_S3_ENDPOINT_TLS");
    c.ca_file = need("PC_S3_CA_FILE");
    pc_s3 *s3 = open_client(&c);
    small_round_trip(s3, "tls/object");
    pc_s3_free(s3);

    c.uri_style = PC_S3_URI_VIRTUAL; /* the certificate names BUCKET.localhost too */
    s3 = open_client(&c);
    small_round_trip(s3, "tls/vhost-object");
    pc_s3_free(s3);

    /* verification is on by default: the test CA is unknown to the system store */
    c = base_config();
    c.endpoint = need("PC_S3_ENDPOINT_TLS");
    s3 = open_client(&c);
    pc_error err = {0};
    assert_int_equal(pc_s3_put(s3, "k", "x", 1, NULL, &err), PC_EREFUSED);
    fprintf(stderr, "s3_client_test: untrusted certificate: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "ca_file"));
    assert_null(strstr(err.msg, "after")); /* not retried */
    pc_s3_free(s3);

    /* verify_tls: false takes the same certificate (throwaway tests only) */
    c.skip_tls_verify = true;
    s3 = open_client(&c);
    small_round_trip(s3, "tls/unverified");
    pc_s3_free(s3);
}

static const char *map_env(const char *name, void *ctx)
{
    (void)ctx;
    if (strcmp(name, "AWS_ACCESS_KEY_ID") == 0)
        return getenv("PC_S3_ACCESS_KEY_ID");
    if (strcmp(name, "AWS_SECRET_ACCESS_KEY") == 0)
        return getenv("PC_S3_SECRET_ACCESS_KEY");
    if (strcmp(name, "AWS_REGION") == 0)
        return getenv("PC_S3_REGION");
    return NULL;
}

static void test_env_credentials(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    c.access_key_id = c.secret_access_key = NULL;
    c.region = NULL;
    c.getenv_fn = map_env;
    pc_s3 *s3 = open_client(&c);
    small_round_trip(s3, "env/object");
    pc_s3_free(s3);
}

int main(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(prefix, sizeof prefix, "it-%ld-%d/", (long)tv.tv_sec, (int)getpid());
    double t0 = now_s();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_put_fd_and_get_stream),
        cmocka_unit_test(test_missing_key),        cmocka_unit_test(test_listing_pages),
        cmocka_unit_test(test_multipart_complete), cmocka_unit_test(test_multipart_abort),
        cmocka_unit_test(test_wrong_secret),       cmocka_unit_test(test_missing_bucket),
        cmocka_unit_test(test_unreachable),        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_virtual_host),       cmocka_unit_test(test_tls),
        cmocka_unit_test(test_env_credentials),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "s3_client_test: all in %.2f s\n", now_s() - t0);
    return rc;
}
