/* s3_repo_test.c: the S3 backup repository (pkg/backup/repo_s3.c) against a real S3-compatible
 * server (s3proxy, started by scripts/s3_stack.sh: the `s3` ctest fixture). Reads PC_S3_ENDPOINT,
 * PC_S3_REGION, PC_S3_BUCKET, PC_S3_ACCESS_KEY_ID, PC_S3_SECRET_ACCESS_KEY from the environment
 * (DIR/s3.env) and fails when they are missing. Every repository lives under a prefix unique to
 * the run.
 *
 * What landed is checked on the server's side through pkg/s3 directly (objects, their ETags,
 * unfinished multipart uploads), not only through the repository's own answers.
 *
 *   s3_repo_test             the cmocka suite
 *   s3_repo_test --rss MB    writes and reads back an MB-megabyte object through the repository
 *                            and prints the process's peak RSS (bounded memory, measured) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backup_int.h" /* pc__backup_expire_held */
#include "repo.h"

static char run[64]; /* "it-<time>-<pid>": this run's part of the bucket */

static const char *need(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr,
                "s3_repo_test: %s is not set: start scripts/s3_stack.sh and source its s3.env "
                "(ctest does that through the `s3` fixture)\n",
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

static void expect_ok(int rc, const pc_error *err, const char *what)
{
    if (rc != 0)
        fail_msg("%s: rc %d: %s", what, rc, err->msg);
}

/* A repository under "<run>/<name>". */
static pc_repo *open_repo(const char *name)
{
    pc_s3_config c = base_config();
    char pfx[128];
    pc_repo *r = NULL;
    pc_error err = {0};
    snprintf(pfx, sizeof pfx, "%s/%s", run, name);
    expect_ok(pc_repo_s3_new(&c, pfx, &r, &err), &err, "pc_repo_s3_new");
    return r;
}

static pc_s3 *open_s3(void)
{
    pc_s3_config c = base_config();
    pc_s3 *s3 = NULL;
    pc_error err = {0};
    expect_ok(pc_s3_new(&s3, &c, &err), &err, "pc_s3_new");
    return s3;
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

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int len = 0;
    EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

/* The whole object through pread in chunks of `chunk` bytes. */
static unsigned char *read_all(pc_repo *r, const char *key, size_t chunk, size_t *len)
{
    pc_repo_obj *o = NULL;
    pc_error err = {0};
    expect_ok(pc_repo_open(r, key, &o, &err), &err, "open");
    size_t size = (size_t)pc_repo_obj_size(o), off = 0;
    unsigned char *buf = malloc(size + chunk);
    assert_non_null(buf);
    for (;;) {
        size_t got = 0;
        expect_ok(pc_repo_pread(o, off, buf + off, chunk, &got, &err), &err, "pread");
        if (got == 0)
            break;
        off += got;
        assert_true(off <= size);
    }
    assert_int_equal(off, size);
    pc_repo_obj_close(o);
    *len = off;
    return buf;
}

/* Unfinished multipart uploads under prefix. s3proxy 2.6's filesystem back end answers 500 to
 * ListMultipartUploads while a part is being written (a part file without its xattr yet), and
 * parts may still be going up on the writer's threads: such a 500 is waited out (up to 20 s: on
 * a loaded machine the writer's three threads can keep a part in flight for seconds). */
static int count_uploads(pc_s3 *s3, const char *prefix)
{
    pc_s3_uploads u = {0};
    pc_error err = {0};
    int rc;
    for (int i = 0; (rc = pc_s3_multipart_list(s3, prefix, &u, &err)) == PC_EUNAVAIL && i < 80;
         i++) {
        pc_s3_uploads_dispose(&u);
        pc_error_clear(&err);
        usleep(250 * 1000);
    }
    expect_ok(rc, &err, "multipart list");
    int n = (int)u.n;
    pc_s3_uploads_dispose(&u);
    return n;
}

/* ---------- objects ---------- */

static void test_round_trip(void **state)
{
    (void)state;
    pc_repo *r = open_repo("rt");
    pc_s3 *s3 = open_s3();
    size_t n = 300 * 1000 + 17, len;
    unsigned char *data = malloc(n);
    char want[65], got[65], full[160];
    pc_error err = {0};
    pc_repo_entry e = {0};
    pc_s3_info info = {0};

    fill_random(data, n, 11);
    sha256_hex(data, n, want);
    assert_string_equal(pc_repo_kind(r), "s3");
    snprintf(full, sizeof full, "s3://%s/%s/rt", getenv("PC_S3_BUCKET"), run);
    assert_string_equal(pc_repo_uri(r), full);

    expect_ok(
        pc_repo_put_all(r, "wal/000000010000000000000001.zst", data, n, PC_REPO_NOREPLACE, &err),
        &err, "put");
    /* where it landed: <prefix>/<key>, with these bytes */
    snprintf(full, sizeof full, "%s/rt/wal/000000010000000000000001.zst", run);
    expect_ok(pc_s3_head(s3, full, &info, &err), &err, "head on the server");
    assert_int_equal(info.size, n);
    assert_true(info.last_modified > 0);

    expect_ok(pc_repo_stat(r, "wal/000000010000000000000001.zst", &e, &err), &err, "stat");
    assert_int_equal(e.size, n);
    int64_t now = (int64_t)time(NULL);
    assert_true(e.mtime > now - 300 && e.mtime < now + 300);
    assert_int_equal(e.mtime, info.last_modified);

    unsigned char *back = read_all(r, "wal/000000010000000000000001.zst", 4093, &len);
    sha256_hex(back, len, got);
    assert_string_equal(got, want);
    free(back);

    /* reads at an offset, across the end, past the end */
    pc_repo_obj *o = NULL;
    unsigned char buf[100];
    size_t g = 0;
    expect_ok(pc_repo_open(r, "wal/000000010000000000000001.zst", &o, &err), &err, "open");
    expect_ok(pc_repo_pread(o, 1000, buf, 100, &g, &err), &err, "pread mid");
    assert_int_equal(g, 100);
    assert_memory_equal(buf, data + 1000, 100);
    expect_ok(pc_repo_pread(o, n - 10, buf, 100, &g, &err), &err, "pread end");
    assert_int_equal(g, 10);
    assert_memory_equal(buf, data + n - 10, 10);
    expect_ok(pc_repo_pread(o, n + 5, buf, 100, &g, &err), &err, "pread past");
    assert_int_equal(g, 0);
    pc_repo_obj_close(o);

    /* an empty object */
    expect_ok(pc_repo_put_all(r, "empty", "", 0, PC_REPO_NOREPLACE, &err), &err, "put empty");
    expect_ok(pc_repo_stat(r, "empty", &e, &err), &err, "stat empty");
    assert_int_equal(e.size, 0);
    pc_buf b = {0};
    expect_ok(pc_repo_get_all(r, "empty", &b, 10, &err), &err, "get empty");
    assert_int_equal(b.len, 0);
    pc_buf_free(&b);

    /* missing: an ordinary answer */
    assert_int_equal(pc_repo_stat(r, "wal/nope", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    assert_int_equal(pc_repo_open(r, "wal/nope", &o, &err), PC_ENOTFOUND);
    assert_null(o);
    pc_error_clear(&err);

    free(data);
    pc_s3_free(s3);
    pc_repo_close(r);
}

typedef struct seen_keys {
    char **keys;
    uint64_t *sizes;
    int64_t *mtimes;
    size_t n, cap;
} seen_keys;

static int collect(void *ctx, const pc_repo_entry *e)
{
    seen_keys *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->keys = realloc(s->keys, s->cap * sizeof *s->keys);
        s->sizes = realloc(s->sizes, s->cap * sizeof *s->sizes);
        s->mtimes = realloc(s->mtimes, s->cap * sizeof *s->mtimes);
    }
    s->keys[s->n] = strdup(e->key);
    s->sizes[s->n] = e->size;
    s->mtimes[s->n] = e->mtime;
    s->n++;
    return 0;
}

static void seen_free(seen_keys *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->sizes);
    free(s->mtimes);
    memset(s, 0, sizeof *s);
}

static void list_into(pc_repo *r, const char *prefix, seen_keys *s)
{
    pc_error err = {0};
    expect_ok(pc_repo_list(r, prefix, collect, s, &err), &err, "list");
}

static void test_invisible_until_commit(void **state)
{
    (void)state;
    pc_repo *r = open_repo("vis");
    pc_s3 *s3 = open_s3();
    pc_repo_put *p = NULL;
    pc_repo_entry e;
    pc_error err = {0};
    seen_keys s = {0};
    char up[128];
    size_t n = 20u << 20; /* past one part: a multipart upload under way */
    unsigned char *data = malloc(n);
    fill_random(data, n, 5);
    snprintf(up, sizeof up, "%s/vis/", run);

    /* small: nothing until commit */
    expect_ok(pc_repo_put_begin(r, "a", &p, &err), &err, "begin");
    expect_ok(pc_repo_put_write(p, "hello", 5, &err), &err, "write");
    assert_int_equal(pc_repo_stat(r, "a", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    expect_ok(pc_repo_put_commit(p, PC_REPO_NOREPLACE, &err), &err, "commit");
    expect_ok(pc_repo_stat(r, "a", &e, &err), &err, "stat after commit");
    assert_int_equal(e.size, 5);

    /* large: parts are on the server, the object is not */
    expect_ok(pc_repo_put_begin(r, "big", &p, &err), &err, "begin big");
    expect_ok(pc_repo_put_write(p, data, n, &err), &err, "write big");
    assert_int_equal(count_uploads(s3, up), 1);
    assert_int_equal(pc_repo_stat(r, "big", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    list_into(r, "", &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], "a");
    seen_free(&s);
    expect_ok(pc_repo_put_commit(p, PC_REPO_NOREPLACE, &err), &err, "commit big");
    assert_int_equal(count_uploads(s3, up), 0);
    expect_ok(pc_repo_stat(r, "big", &e, &err), &err, "stat big");
    assert_int_equal(e.size, n);

    /* aborted: neither object nor upload stays */
    expect_ok(pc_repo_put_begin(r, "gone", &p, &err), &err, "begin gone");
    expect_ok(pc_repo_put_write(p, data, n, &err), &err, "write gone");
    assert_int_equal(count_uploads(s3, up), 1);
    pc_repo_put_abort(p);
    assert_int_equal(count_uploads(s3, up), 0);
    assert_int_equal(pc_repo_stat(r, "gone", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);

    free(data);
    pc_s3_free(s3);
    pc_repo_close(r);
}

static void test_noreplace_and_replace(void **state)
{
    (void)state;
    pc_repo *r = open_repo("nr");
    pc_s3 *s3 = open_s3();
    pc_error err = {0};
    pc_buf b = {0};
    char up[128];
    snprintf(up, sizeof up, "%s/nr/", run);

    expect_ok(pc_repo_put_all(r, "wal/X", "first", 5, PC_REPO_NOREPLACE, &err), &err, "put");
    assert_int_equal(pc_repo_put_all(r, "wal/X", "second", 6, PC_REPO_NOREPLACE, &err),
                     PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "wal/X"));
    assert_non_null(strstr(err.msg, pc_repo_uri(r)));
    pc_error_clear(&err);
    expect_ok(pc_repo_get_all(r, "wal/X", &b, 100, &err), &err, "get");
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "first", 5); /* untouched */
    pc_buf_free(&b);

    /* a multipart NOREPLACE over an existing key: refused, and its upload is gone too */
    size_t n = 17u << 20;
    unsigned char *data = malloc(n);
    fill_random(data, n, 9);
    assert_int_equal(pc_repo_put_all(r, "wal/X", data, n, PC_REPO_NOREPLACE, &err), PC_ECONFLICT);
    pc_error_clear(&err);
    assert_int_equal(count_uploads(s3, up), 0);
    expect_ok(pc_repo_get_all(r, "wal/X", &b, 100, &err), &err, "get");
    assert_memory_equal(b.data, "first", 5);
    pc_buf_free(&b);

    /* REPLACE does replace, small and large */
    expect_ok(pc_repo_put_all(r, "wal/X", "second", 6, PC_REPO_REPLACE, &err), &err, "replace");
    expect_ok(pc_repo_get_all(r, "wal/X", &b, 100, &err), &err, "get");
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "second", 6);
    pc_buf_free(&b);
    expect_ok(pc_repo_put_all(r, "wal/X", data, n, PC_REPO_REPLACE, &err), &err, "replace big");
    expect_ok(pc_repo_get_all(r, "wal/X", &b, n, &err), &err, "get big");
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, data, n);
    pc_buf_free(&b);

    free(data);
    pc_s3_free(s3);
    pc_repo_close(r);
}

static void test_multipart_40mb(void **state)
{
    (void)state;
    pc_repo *r = open_repo("mp");
    pc_s3 *s3 = open_s3();
    size_t n = 40 * 1000 * 1000 + 123, len;
    unsigned char *data = malloc(n);
    char want[65], got[65], full[128];
    pc_repo_put *p = NULL;
    pc_error err = {0};
    pc_s3_info info = {0};

    fill_random(data, n, 40);
    sha256_hex(data, n, want);
    expect_ok(pc_repo_put_begin(r, "backups/B1/base.tar.zst", &p, &err), &err, "begin");
    for (size_t off = 0; off < n;) { /* odd-sized writes, across part boundaries */
        size_t k = n - off < 1000003 ? n - off : 1000003;
        expect_ok(pc_repo_put_write(p, data + off, k, &err), &err, "write");
        off += k;
    }
    snprintf(full, sizeof full, "%s/mp/", run);
    assert_int_equal(count_uploads(s3, full), 1); /* it goes up as a multipart upload */
    expect_ok(pc_repo_put_commit(p, PC_REPO_NOREPLACE, &err), &err, "commit");

    snprintf(full, sizeof full, "%s/mp/backups/B1/base.tar.zst", run);
    expect_ok(pc_s3_head(s3, full, &info, &err), &err, "head");
    assert_int_equal(info.size, n);
    snprintf(full, sizeof full, "%s/mp/", run);
    assert_int_equal(count_uploads(s3, full), 0); /* completed: no upload left behind */

    unsigned char *back = read_all(r, "backups/B1/base.tar.zst", 777777, &len);
    sha256_hex(back, len, got);
    assert_string_equal(got, want);
    free(back);
    back = read_all(r, "backups/B1/base.tar.zst", 9u << 20, &len); /* reads over a window */
    sha256_hex(back, len, got);
    assert_string_equal(got, want);
    free(back);

    /* an object replaced under a reader is an error, not a mix of two objects */
    pc_repo_obj *o = NULL;
    unsigned char buf[4096];
    size_t g;
    expect_ok(pc_repo_open(r, "backups/B1/base.tar.zst", &o, &err), &err, "open");
    expect_ok(pc_repo_pread(o, 0, buf, sizeof buf, &g, &err), &err, "pread");
    data[20u << 20] ^= 0xff; /* the same size, another byte: only the ETag tells */
    expect_ok(pc_repo_put_all(r, "backups/B1/base.tar.zst", data, n, PC_REPO_REPLACE, &err), &err,
              "replace");
    assert_int_equal(pc_repo_pread(o, 20u << 20, buf, sizeof buf, &g, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "replaced"));
    pc_error_clear(&err);
    pc_repo_obj_close(o);

    free(data);
    pc_s3_free(s3);
    pc_repo_close(r);
}

static void test_list_many_in_order(void **state)
{
    (void)state;
    pc_repo *r = open_repo("ls");
    pc_error err = {0};
    seen_keys s = {0};
    enum { N = 1100 };
    char key[64];

    /* written out of order, the last ones through a second, sibling prefix */
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % N;
        snprintf(key, sizeof key, "wal/%08d", k);
        expect_ok(pc_repo_put_all(r, key, key, (size_t)(k % 13), PC_REPO_REPLACE, &err), &err,
                  "put");
    }
    expect_ok(pc_repo_put_all(r, "walrus", "x", 1, PC_REPO_REPLACE, &err), &err, "put walrus");
    expect_ok(pc_repo_put_all(r, "backups/B/pipectl.json", "{}", 2, PC_REPO_REPLACE, &err), &err,
              "put json");

    list_into(r, "wal/", &s);
    assert_int_equal(s.n, N); /* more than one page of 1,000 */
    for (size_t i = 0; i < s.n; i++) {
        snprintf(key, sizeof key, "wal/%08zu", i);
        assert_string_equal(s.keys[i], key);
        assert_int_equal(s.sizes[i], i % 13);
        assert_true(s.mtimes[i] > 0);
    }
    seen_free(&s);

    list_into(r, "", &s);
    assert_int_equal(s.n, N + 2);
    for (size_t i = 1; i < s.n; i++)
        assert_true(strcmp(s.keys[i - 1], s.keys[i]) < 0);
    assert_string_equal(s.keys[0], "backups/B/pipectl.json");
    assert_string_equal(s.keys[N + 1], "walrus");
    seen_free(&s);
    pc_repo_close(r);
}

static void test_prefix_isolation(void **state)
{
    (void)state;
    pc_repo *a = open_repo("iso/a"), *ab = open_repo("iso/ab");
    pc_error err = {0};
    pc_repo_entry e;
    seen_keys s = {0};

    expect_ok(pc_repo_put_all(a, "k", "A", 1, PC_REPO_NOREPLACE, &err), &err, "put a");
    expect_ok(pc_repo_put_all(ab, "k2", "B", 1, PC_REPO_NOREPLACE, &err), &err, "put ab");
    /* the same key in both, each its own */
    expect_ok(pc_repo_put_all(ab, "k", "BB", 2, PC_REPO_NOREPLACE, &err), &err, "put ab k");
    expect_ok(pc_repo_stat(a, "k", &e, &err), &err, "stat");
    assert_int_equal(e.size, 1);
    assert_int_equal(pc_repo_stat(a, "k2", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);

    list_into(a, "", &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], "k");
    seen_free(&s);
    list_into(ab, "", &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.keys[0], "k");
    assert_string_equal(s.keys[1], "k2");
    seen_free(&s);

    /* delete: gone, and only there; a missing key is success */
    expect_ok(pc_repo_delete(a, "k", &err), &err, "delete");
    assert_int_equal(pc_repo_stat(a, "k", &e, &err), PC_ENOTFOUND);
    pc_error_clear(&err);
    expect_ok(pc_repo_stat(ab, "k", &e, &err), &err, "stat ab");
    assert_int_equal(e.size, 2);
    expect_ok(pc_repo_delete(a, "k", &err), &err, "delete again");
    expect_ok(pc_repo_delete(a, "never/was", &err), &err, "delete missing");
    pc_repo_close(a);
    pc_repo_close(ab);
}

/* ---------- lock, sweep ---------- */

static void read_lock_json(pc_s3 *s3, const char *key, char *owner, size_t on, long long *exp)
{
    pc_buf b = {0};
    pc_error err = {0};
    json_error_t je;
    expect_ok(pc_s3_get_buf(s3, key, &b, 0, NULL, &err), &err, "get lock");
    json_t *o = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(o);
    snprintf(owner, on, "%s", json_string_value(json_object_get(o, "owner")));
    *exp = (long long)json_integer_value(json_object_get(o, "expires"));
    assert_non_null(json_string_value(json_object_get(o, "host")));
    assert_true(json_integer_value(json_object_get(o, "pid")) == getpid());
    json_decref(o);
    pc_buf_free(&b);
}

static void test_lock(void **state)
{
    (void)state;
    pc_repo *a = open_repo("lk"), *b = open_repo("lk");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *la = NULL, *lb = NULL;
    pc_error err = {0};
    pc_s3_info info;
    char key[128], owner[64], host[256] = "";
    long long exp = 0;
    long long now = (long long)time(NULL);
    snprintf(key, sizeof key, "%s/lk/locks/backup.lock", run);
    gethostname(host, sizeof host - 1);

    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a");
    read_lock_json(s3, key, owner, sizeof owner, &exp);
    assert_string_equal(owner, "backup create");
    assert_true(exp > now && exp < now + 3600);

    assert_int_equal(pc_repo_lock_take(b, "backup expire", &lb, &err), PC_ECONFLICT);
    assert_null(lb);
    assert_non_null(strstr(err.msg, "\"backup create\""));
    assert_non_null(strstr(err.msg, host));
    assert_non_null(strstr(err.msg, pc_repo_uri(b)));
    pc_error_clear(&err);

    pc_repo_unlock(la);
    assert_int_equal(pc_s3_head(s3, key, &info, &err), PC_ENOTFOUND); /* unlock deletes it */
    pc_error_clear(&err);

    /* a holder that died: its lock expired a minute ago, and is taken over */
    char stale[256];
    snprintf(stale, sizeof stale,
             "{\"owner\":\"backup create\",\"host\":\"gone\",\"pid\":1,\"expires\":%lld,"
             "\"token\":\"dead\"}",
             now - 60);
    expect_ok(pc_s3_put(s3, key, stale, strlen(stale), NULL, &err), &err, "stale lock");
    expect_ok(pc_repo_lock_take(b, "backup expire", &lb, &err), &err, "take over");
    read_lock_json(s3, key, owner, sizeof owner, &exp);
    assert_string_equal(owner, "backup expire");
    assert_true(exp > now);
    /* and now a holds nothing */
    assert_int_equal(pc_repo_lock_take(a, "backup create", &la, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "\"backup expire\""));
    pc_error_clear(&err);

    /* a lock taken over is not deleted by its former holder's unlock: tested by taking b's over
     * through a stale rewrite, then unlocking b */
    snprintf(stale, sizeof stale,
             "{\"owner\":\"other\",\"host\":\"h\",\"pid\":2,\"expires\":%lld,\"token\":\"t\"}",
             now + 600);
    expect_ok(pc_s3_put(s3, key, stale, strlen(stale), NULL, &err), &err, "other's lock");
    pc_repo_unlock(lb);
    expect_ok(pc_s3_head(s3, key, &info, &err), &err, "other's lock stays");
    expect_ok(pc_s3_delete(s3, key, &err), &err, "cleanup");

    pc_s3_free(s3);
    pc_repo_close(a);
    pc_repo_close(b);
}

/* ---------- the lock's refresher ----------
 *
 * Run with the timings shortened through repo.h's white-box hook (TTL 2 s, a refresh every
 * 200 ms; setup and teardown set and restore them). "expires" is in whole unix seconds, so a lock
 * refreshed every 200 ms always expires at least a second ahead of time(NULL), and one left alone
 * lapses within TTL seconds. The second taker is another handle of this process: the lock then
 * names this process's pid, which holder_gone counts as alive, so only the expiry decides, as
 * for a taker on another host. */

#define T_TTL_S 2
#define T_REFRESH_MS 200

static int lock_timings_short(void **state)
{
    (void)state;
    pc__repo_s3_lock_ttl_s = T_TTL_S;
    pc__repo_s3_lock_refresh_ms = T_REFRESH_MS;
    return 0;
}

static int lock_timings_default(void **state)
{
    (void)state;
    pc__repo_s3_lock_ttl_s = 900;
    pc__repo_s3_lock_refresh_ms = 300 * 1000;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

typedef struct lock_obj {
    char owner[64], token[64];
    long long pid, expires;
    char etag[PC_S3_ETAG_MAX];
    char body[512];
} lock_obj;

/* The lock object as it is on the server: false when there is none. */
static bool get_lock(pc_s3 *s3, const char *key, lock_obj *o)
{
    pc_buf b = {0};
    pc_error err = {0};
    pc_s3_info info = {0};
    json_error_t je;
    memset(o, 0, sizeof *o);
    int rc = pc_s3_get_buf(s3, key, &b, 0, &info, &err);
    if (rc == PC_ENOTFOUND) {
        pc_buf_free(&b);
        return false;
    }
    expect_ok(rc, &err, "get lock");
    assert_true(b.len < sizeof o->body);
    memcpy(o->body, b.data, b.len);
    snprintf(o->etag, sizeof o->etag, "%s", info.etag);
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(j);
    snprintf(o->owner, sizeof o->owner, "%s", json_string_value(json_object_get(j, "owner")));
    snprintf(o->token, sizeof o->token, "%s", json_string_value(json_object_get(j, "token")));
    o->pid = (long long)json_integer_value(json_object_get(j, "pid"));
    o->expires = (long long)json_integer_value(json_object_get(j, "expires"));
    json_decref(j);
    pc_buf_free(&b);
    return true;
}

/* Threads of this process (Linux): a held lock adds its refresher's. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void lock_key(char *key, size_t n, const char *name)
{
    snprintf(key, n, "%s/%s/locks/backup.lock", run, name);
}

/* (a) The holder's refresher pushes "expires" forward, so a second taker is refused long after
 * the first expiry has passed. */
static void test_lock_refreshed(void **state)
{
    (void)state;
    pc_repo *a = open_repo("lr"), *b = open_repo("lr");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *la = NULL, *lb = NULL;
    pc_error err = {0};
    lock_obj o0, o;
    char key[160];
    lock_key(key, sizeof key, "lr");

    long long t0 = (long long)time(NULL);
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a");
    assert_true(get_lock(s3, key, &o0));
    assert_string_equal(o0.owner, "backup create");
    assert_int_equal(strlen(o0.token), 32);
    assert_true(o0.expires >= t0 + T_TTL_S && o0.expires <= (long long)time(NULL) + T_TTL_S);

    /* 3.5 s: past the first expiry, 17 refresh periods; sampled every 250 ms, the lock is ours
     * and never lapses */
    int64_t start = pc_mono_ms();
    long long last = o0.expires;
    int samples = 0, moves = 0;
    while (pc_mono_ms() - start < 3500) {
        sleep_ms(250);
        assert_true(get_lock(s3, key, &o));
        long long now = (long long)time(NULL);
        assert_string_equal(o.token, o0.token);
        assert_string_equal(o.owner, "backup create");
        assert_int_equal(o.pid, (long long)getpid());
        if (o.expires <= now)
            fail_msg("the lock lapsed while held: expires %lld, now %lld (refresher not "
                     "refreshing)",
                     o.expires, now);
        assert_true(o.expires >= last);
        moves += o.expires > last;
        last = o.expires;
        samples++;
    }
    assert_true(samples >= 10);
    assert_true(moves >= 3);                         /* one move per second, at least */
    assert_true(last >= o0.expires + 3);             /* refreshed within the last ~200 ms */
    assert_true((long long)time(NULL) > o0.expires); /* the first TTL is over ... */

    /* ... and yet a second taker is refused, and leaves the holder's object alone */
    assert_int_equal(pc_repo_lock_take(b, "backup expire", &lb, &err), PC_ECONFLICT);
    assert_null(lb);
    assert_non_null(strstr(err.msg, "\"backup create\""));
    pc_error_clear(&err);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.token, o0.token);

    pc_repo_unlock(la);
    assert_false(get_lock(s3, key, &o));
    pc_s3_free(s3);
    pc_repo_close(a);
    pc_repo_close(b);
}

/* (b) After unlock the refresher is gone: nothing brings the object back, and the next holder's
 * lock is left alone. */
static void test_lock_refresher_stops_at_unlock(void **state)
{
    (void)state;
    pc_repo *a = open_repo("lu"), *b = open_repo("lu");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *la = NULL, *lb = NULL;
    pc_error err = {0};
    lock_obj o, ob;
    char key[160];
    lock_key(key, sizeof key, "lu");

    int threads = count_threads();
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a");
    assert_int_equal(count_threads(), threads + 1); /* the refresher */
    sleep_ms(3 * T_REFRESH_MS);                     /* it has gone round */
    assert_true(get_lock(s3, key, &o));
    threads = count_threads();
    pc_repo_unlock(la);
    assert_int_equal(count_threads(), threads - 1); /* ended by unlock, not later */
    assert_false(get_lock(s3, key, &o));
    sleep_ms(4 * T_REFRESH_MS);
    assert_false(get_lock(s3, key, &o)); /* stays gone */

    expect_ok(pc_repo_lock_take(b, "backup expire", &lb, &err), &err, "lock b");
    assert_true(get_lock(s3, key, &ob));
    sleep_ms(4 * T_REFRESH_MS);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.token, ob.token);
    assert_string_equal(o.owner, "backup expire");
    pc_repo_unlock(lb);
    assert_false(get_lock(s3, key, &o));
    pc_s3_free(s3);
    pc_repo_close(a);
    pc_repo_close(b);
}

/* (c) A holder that lost its lock (its refreshes came too late, or another process overwrote
 * it) notices on its refresher's next round: it does not overwrite the new holder's lock, it
 * stops refreshing for good, and its unlock leaves the new holder's lock in place. */
static void test_lock_lost(void **state)
{
    (void)state;
    pc_repo *a = open_repo("ll"), *b = open_repo("ll");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *la = NULL, *lb = NULL;
    pc_error err = {0};
    lock_obj o0, ob, o;
    char key[160];
    lock_key(key, sizeof key, "ll");

    /* 1. a's refreshes come later than its TTL (as when the network is cut): a 1 s TTL and a
     * refresh only after 2.5 s */
    pc__repo_s3_lock_ttl_s = 1;
    pc__repo_s3_lock_refresh_ms = 2500;
    int64_t start = pc_mono_ms();
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a");
    assert_true(get_lock(s3, key, &o0));
    /* b holds for a minute and does not refresh meanwhile: nobody may write the object */
    pc__repo_s3_lock_ttl_s = 60;
    pc__repo_s3_lock_refresh_ms = 60 * 1000;
    while ((long long)time(NULL) < o0.expires) /* a's lock expires; b takes it over */
        sleep_ms(50);
    assert_true(pc_mono_ms() - start < 2500); /* before a's first refresh */
    expect_ok(pc_repo_lock_take(b, "backup expire", &lb, &err), &err, "take over");
    assert_true(get_lock(s3, key, &ob));
    assert_string_not_equal(ob.token, o0.token);
    /* a's refresher wakes at 2.5 s, finds b's token and must not write */
    while (pc_mono_ms() - start < 2500 + 4 * T_REFRESH_MS)
        sleep_ms(50);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.token, ob.token);
    assert_string_equal(o.body, ob.body);
    assert_string_equal(o.etag, ob.etag);
    pc_repo_unlock(la); /* not a's any more: stays */
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.token, ob.token);
    pc_repo_unlock(lb);
    assert_false(get_lock(s3, key, &o));

    /* 2. another host overwrites a's lock under it: a's refresher leaves it alone, and stops for
     * good: a's own body put back afterwards is not refreshed any more */
    lock_timings_short(NULL);
    int threads = count_threads();
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a again");
    threads = count_threads() - threads;
    assert_int_equal(threads, 1); /* the refresher */
    threads = count_threads();
    assert_true(get_lock(s3, key, &o0));
    char other[256];
    pc_s3_info info = {0};
    snprintf(other, sizeof other,
             "{\"owner\":\"backup expire\",\"host\":\"elsewhere\",\"pid\":2,\"expires\":%lld,"
             "\"token\":\"another-host\"}",
             (long long)time(NULL) + 600);
    expect_ok(pc_s3_put(s3, key, other, strlen(other), &info, &err), &err, "other's lock");
    sleep_ms(4 * T_REFRESH_MS);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.body, other);
    assert_string_equal(o.etag, info.etag);
    assert_int_equal(count_threads(), threads - 1); /* the refresher has ended */
    expect_ok(pc_s3_put(s3, key, o0.body, strlen(o0.body), &info, &err), &err, "a's body back");
    sleep_ms(4 * T_REFRESH_MS);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.body, o0.body); /* expires not pushed: the refresher stopped */
    assert_string_equal(o.etag, info.etag);
    pc_repo_unlock(la); /* a's token is there again: unlock deletes it */
    assert_false(get_lock(s3, key, &o));
    pc_s3_free(s3);
    pc_repo_close(a);
    pc_repo_close(b);
}

/* Another host's lock body, written over ours as a takeover would. */
static void overwrite_as_other(pc_s3 *s3, const char *key)
{
    char other[256];
    pc_error err = {0};
    snprintf(other, sizeof other,
             "{\"owner\":\"backup expire\",\"host\":\"elsewhere\",\"pid\":2,\"expires\":%lld,"
             "\"token\":\"another-host\"}",
             (long long)time(NULL) + 600);
    expect_ok(pc_s3_put(s3, key, other, strlen(other), NULL, &err), &err, "other's lock");
}

static void assert_lost_to_other(const pc_error *err, const pc_repo *r)
{
    if (!strstr(err->msg, "lost its lock") || !strstr(err->msg, pc_repo_uri(r)) ||
        !strstr(err->msg, "locks/backup.lock") || !strstr(err->msg, "\"backup expire\"") ||
        !strstr(err->msg, "elsewhere") || !strstr(err->msg, "\"backup create\"") ||
        !strstr(err->msg, "stopped before changing anything more"))
        fail_msg("not the lost-lock message naming repository, object and new holder: %s",
                 err->msg);
}

/* (e) pc_repo_lock_check: 0 while the lock is held and refreshed (long past its first expiry);
 * PC_ECONFLICT naming the new holder once another host wrote the object, found by its own GET
 * before the refresher has looked, and then from the refresher's record even when our body is
 * put back; PC_ECONFLICT when the object is deleted, or ours but expired. */
static void test_lock_check(void **state)
{
    (void)state;
    pc_repo *a = open_repo("lc");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *la = NULL;
    pc_error err = {0};
    lock_obj o0, o;
    char key[160];
    lock_key(key, sizeof key, "lc");

    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a");
    assert_true(get_lock(s3, key, &o0));
    int64_t start = pc_mono_ms();
    int checks = 0;
    while (pc_mono_ms() - start < (T_TTL_S + 1) * 1000) { /* past the first expiry */
        expect_ok(pc_repo_lock_check(la, &err), &err, "check while held");
        checks++;
        sleep_ms(150);
    }
    assert_true(checks >= 10);
    assert_true((long long)time(NULL) > o0.expires);

    /* 1. taken over: at once, before the refresher's next round (its GET) */
    overwrite_as_other(s3, key);
    assert_int_equal(pc_repo_lock_check(la, &err), PC_ECONFLICT);
    assert_lost_to_other(&err, a);
    pc_error_clear(&err);
    /* 2. the refresher has seen it and stopped; our token put back, with a good expiry, does
     * not make the lock ours again: the record answers */
    sleep_ms(4 * T_REFRESH_MS);
    char ours[256];
    snprintf(ours, sizeof ours,
             "{\"owner\":\"backup create\",\"host\":\"here\",\"pid\":%lld,\"expires\":%lld,"
             "\"token\":\"%s\"}",
             (long long)getpid(), (long long)time(NULL) + 600, o0.token);
    expect_ok(pc_s3_put(s3, key, ours, strlen(ours), NULL, &err), &err, "our token back");
    assert_int_equal(pc_repo_lock_check(la, &err), PC_ECONFLICT);
    assert_lost_to_other(&err, a);
    pc_error_clear(&err);
    pc_repo_unlock(la); /* our token is there: deleted */
    assert_false(get_lock(s3, key, &o));

    /* 3. deleted under us */
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a again");
    expect_ok(pc_repo_lock_check(la, &err), &err, "check fresh lock");
    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete lock");
    assert_int_equal(pc_repo_lock_check(la, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "the object was deleted"));
    assert_non_null(strstr(err.msg, "locks/backup.lock"));
    pc_error_clear(&err);
    pc_repo_unlock(la);

    /* 4. still ours but expired (no refresh got through in time): anyone may take it now */
    pc__repo_s3_lock_ttl_s = T_TTL_S; /* whole seconds: the first check is a second ahead */
    pc__repo_s3_lock_refresh_ms = 60 * 1000;
    expect_ok(pc_repo_lock_take(a, "backup create", &la, &err), &err, "lock a, no refresh");
    assert_true(get_lock(s3, key, &o0));
    expect_ok(pc_repo_lock_check(la, &err), &err, "check before expiry");
    while ((long long)time(NULL) < o0.expires)
        sleep_ms(50);
    assert_int_equal(pc_repo_lock_check(la, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "expired"));
    assert_non_null(strstr(err.msg, "locks/backup.lock"));
    pc_error_clear(&err);
    assert_true(get_lock(s3, key, &o)); /* the check only reads */
    assert_string_equal(o.body, o0.body);
    pc_repo_unlock(la);
    assert_false(get_lock(s3, key, &o));
    pc_s3_free(s3);
    pc_repo_close(a);
}

/* A backup's pipectl.json as basebackup.c writes it (the fields pc__backup_read_meta checks). */
static void put_backup(pc_repo *r, const char *id, int64_t start, const char *wal)
{
    char key[128], meta[1024], st[32], et[32];
    pc_error err = {0};
    time_t t0 = (time_t)start, t1 = (time_t)(start + 5);
    strftime(st, sizeof st, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t0));
    strftime(et, sizeof et, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t1));
    snprintf(meta, sizeof meta,
             "{\"format\": 1, \"id\": \"%s\", \"label\": \"t\", \"start_lsn\": \"0/1000028\", "
             "\"stop_lsn\": \"0/1000100\", \"start_time\": \"%s\", \"stop_time\": \"%s\", "
             "\"timeline\": 1, \"start_wal\": \"%s\", \"stop_wal\": \"%s\", \"db_bytes\": 100, "
             "\"stored_bytes\": 10, \"compression\": \"zstd\", \"files\": {}, \"pg_version\": "
             "150000, \"system_identifier\": \"1\"}\n",
             id, st, et, wal, wal);
    snprintf(key, sizeof key, "backups/%s/base.tar.zst", id);
    expect_ok(pc_repo_put_all(r, key, "tar", 3, PC_REPO_REPLACE, &err), &err, "put tar");
    snprintf(key, sizeof key, "backups/%s/pipectl.json", id);
    expect_ok(pc_repo_put_all(r, key, meta, strlen(meta), PC_REPO_REPLACE, &err), &err, "put meta");
}

/* Every key of the repository but the lock, joined by ' '. */
static char *all_keys(pc_repo *r)
{
    seen_keys s = {0};
    pc_error err = {0};
    pc_buf b = {0};
    expect_ok(pc_repo_list(r, "", collect, &s, &err), &err, "list");
    pc_buf_puts(&b, "");
    for (size_t i = 0; i < s.n; i++)
        if (strncmp(s.keys[i], "locks/", 6) != 0) /* the lock comes and goes */
            pc_buf_printf(&b, "%s%s", b.len ? " " : "", s.keys[i]);
    seen_free(&s);
    return pc_buf_detach(&b);
}

/* (f) End to end: retention (retention.c's own code, with the lock it was given) deletes
 * nothing once its lock was taken over: not the expired backup, not a create's unpublished
 * objects (which would pass for leftovers), not WAL. The same repository with the lock kept
 * loses exactly those, so the first half is not passing for want of anything to delete. */
static void test_expire_stops_on_lost_lock(void **state)
{
    (void)state;
    pc_repo *r = open_repo("ex");
    pc_s3 *s3 = open_s3();
    pc_repo_lock *lk = NULL;
    pc_error err = {0};
    pc_expire_result res = {0};
    lock_obj o;
    char key[160];
    const int64_t now = 1800000000;
    lock_key(key, sizeof key, "ex");

    put_backup(r, "20270101T000000Z", now - 2 * 86400, "000000010000000000000005");
    put_backup(r, "20270102T000000Z", now - 1 * 86400, "000000010000000000000010");
    /* a create under way on the host that took the lock over: no pipectl.json yet */
    expect_ok(pc_repo_put_all(r, "backups/20270103T000000Z/base.tar.zst", "tar", 3, PC_REPO_REPLACE,
                              &err),
              &err, "put unpublished");
    expect_ok(pc_repo_put_all(r, "wal/000000010000000000000005.zst", "w", 1, PC_REPO_REPLACE, &err),
              &err, "put wal 5");
    expect_ok(pc_repo_put_all(r, "wal/000000010000000000000010.zst", "w", 1, PC_REPO_REPLACE, &err),
              &err, "put wal 10");
    char *before = all_keys(r);

    expect_ok(pc_repo_lock_take(r, "backup expire", &lk, &err), &err, "lock");
    overwrite_as_other(s3, key);
    int rc = pc__backup_expire_held(r, lk, 1, 0, now, &res, &err);
    if (rc != PC_ECONFLICT)
        fail_msg("expire with a lost lock: rc %d (want PC_ECONFLICT): %s", rc, err.msg);
    assert_non_null(strstr(err.msg, "lost its lock"));
    assert_non_null(strstr(err.msg, "elsewhere"));
    pc_error_clear(&err);
    assert_int_equal(res.backups_removed, 0);
    assert_int_equal(res.wal_removed, 0);
    pc_expire_result_free(&res);
    char *after = all_keys(r);
    assert_string_equal(after, before); /* nothing deleted */
    free(after);
    pc_repo_unlock(lk);
    assert_true(get_lock(s3, key, &o)); /* the other's lock stays */
    assert_string_equal(o.token, "another-host");

    /* the control: the lock kept, the same call deletes the old backup, the unpublished
     * objects and the WAL before the kept backup */
    expect_ok(pc_s3_delete(s3, key, &err), &err, "delete other's lock");
    expect_ok(pc_repo_lock_take(r, "backup expire", &lk, &err), &err, "lock again");
    expect_ok(pc__backup_expire_held(r, lk, 1, 0, now, &res, &err), &err, "expire held");
    assert_int_equal(res.backups_removed, 1);
    assert_int_equal(res.wal_removed, 1);
    pc_expire_result_free(&res);
    pc_repo_unlock(lk);
    after = all_keys(r);
    assert_string_equal(after, "backups/20270102T000000Z/base.tar.zst "
                               "backups/20270102T000000Z/pipectl.json "
                               "wal/000000010000000000000010.zst");
    free(after);
    free(before);
    pc_s3_free(s3);
    pc_repo_close(r);
}

/* (d) An outage of the server does not lose the lock. While s3proxy is down the refresher's
 * reads fail (connection refused: with this suite's max_attempts 3 and retry_base_ms 20 a round's
 * GET gives up within some 60 ms of backoff, so a round is ~260 ms), and once the server is back
 * the next round finds our token and pushes "expires" forward again. The TTL, 30 s, is longer than
 * the outage (stopping the JVM, 1 s down, starting it again), so the lock never lapses meanwhile.
 * The fixture's server is stopped and started with scripts/s3_stack.sh down|up on PC_S3_DIR (from
 * s3.env); the teardown starts it again whatever happened (later tests and the fixture need it). */

#define T_OUTAGE_TTL_S 30
#define T_OUTAGE_DOWN_MS (5 * T_REFRESH_MS) /* at least 3 refresh rounds with the server gone */

static struct {
    pc_repo *repo;
    pc_s3 *s3;
    pc_repo_lock *lk;
    bool down; /* "down" was run and "up" has not succeeded since */
} outage;

/* scripts/s3_stack.sh CMD on the fixture's directory: true when it succeeded. Its output goes to
 * /dev/null and it inherits none of this process's descriptors (ctest waits for the test's
 * pipes: a server started again must not hold them); `timeout` bounds it. */
static bool s3_stack(const char *cmd)
{
    const char *dir = getenv("PC_S3_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/scripts/s3_stack.sh", PC_SOURCE_DIR);
    const char *limit = strcmp(cmd, "up") == 0 ? "120" : "60";
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) { /* async-signal-safe calls only: the refresher thread may hold a lock */
        int fd = open("/dev/null", O_RDWR);
        if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        for (int i = 3; i < 1024; i++)
            close(i);
        execlp("timeout", "timeout", limit, "bash", script, cmd, dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int outage_setup(void **state)
{
    lock_timings_short(state);
    pc__repo_s3_lock_ttl_s = T_OUTAGE_TTL_S;
    memset(&outage, 0, sizeof outage);
    return 0;
}

static int outage_teardown(void **state)
{
    int rc = 0;
    if (outage.down) {
        if (s3_stack("up")) {
            outage.down = false;
        } else {
            fprintf(stderr,
                    "s3_repo_test: scripts/s3_stack.sh up %s failed: s3proxy is not "
                    "running again (see s3proxy.log there)\n",
                    getenv("PC_S3_DIR"));
            rc = -1;
        }
    }
    if (outage.lk)
        pc_repo_unlock(outage.lk);
    pc_s3_free(outage.s3);
    pc_repo_close(outage.repo);
    memset(&outage, 0, sizeof outage);
    lock_timings_default(state);
    return rc;
}

static void test_lock_survives_outage(void **state)
{
    (void)state;
    const char *dir = getenv("PC_S3_DIR");
    char marker[4096];
    pc_error err = {0};
    pc_buf b = {0};
    lock_obj o0, o1, o;
    char key[160];
    lock_key(key, sizeof key, "lo");
    if (!dir || !*dir)
        fail_msg("PC_S3_DIR is not set: this test stops and starts the scripts/s3_stack.sh server "
                 "in that directory (ctest sets it through the `s3` fixture's s3.env)");
    snprintf(marker, sizeof marker, "%s/.pc-s3", dir);
    if (access(marker, F_OK) != 0)
        fail_msg("%s is not an s3_stack.sh directory (no .pc-s3): cannot stop its server", dir);
    int64_t t0 = pc_mono_ms();
    outage.repo = open_repo("lo");
    outage.s3 = open_s3();

    expect_ok(pc_repo_lock_take(outage.repo, "backup create", &outage.lk, &err), &err, "lock");
    assert_true(get_lock(outage.s3, key, &o0));
    sleep_ms(3 * T_REFRESH_MS);
    assert_true(get_lock(outage.s3, key, &o1)); /* refreshed rounds before the outage: ours */
    assert_string_equal(o1.token, o0.token);

    int64_t t_stop = pc_mono_ms();
    outage.down = true;
    if (!s3_stack("down"))
        fail_msg("scripts/s3_stack.sh down %s failed", dir);
    int64_t t_down = pc_mono_ms();
    /* really gone: a read is refused, not answered "no such key" */
    int rc = pc_s3_get_buf(outage.s3, key, &b, 0, NULL, &err);
    pc_buf_free(&b);
    assert_int_equal(rc, PC_EUNAVAIL);
    pc_error_clear(&err);
    /* the holder's check cannot tell: an error of its own, not "lost" */
    rc = pc_repo_lock_check(outage.lk, &err);
    if (rc != PC_EUNAVAIL || !strstr(err.msg, "cannot be told") || strstr(err.msg, "lost its"))
        fail_msg("lock check with the server down: rc %d: %s", rc, err.msg);
    assert_non_null(strstr(err.msg, "locks/backup.lock"));
    pc_error_clear(&err);
    sleep_ms(T_OUTAGE_DOWN_MS);
    int64_t t_start = pc_mono_ms();
    if (!s3_stack("up"))
        fail_msg("scripts/s3_stack.sh up %s failed (see s3proxy.log there)", dir);
    outage.down = false;
    int64_t t_back = pc_mono_ms();
    long long back = (long long)time(NULL);

    /* the refresher resumed: within a few rounds the object is ours with an expiry set after the
     * server came back (a refresh from before the outage is at most t_down + TTL < back + TTL) */
    int64_t deadline = pc_mono_ms() + 15 * T_REFRESH_MS;
    do {
        sleep_ms(T_REFRESH_MS);
        assert_true(get_lock(outage.s3, key, &o));
    } while (o.expires < back + T_OUTAGE_TTL_S && pc_mono_ms() < deadline);
    assert_string_equal(o.token, o0.token);
    assert_string_equal(o.owner, "backup create");
    assert_int_equal(o.pid, (long long)getpid());
    assert_true(o.expires > o1.expires);
    if (o.expires < back + T_OUTAGE_TTL_S)
        fail_msg("the lock was not refreshed after the server came back: expires %lld, back at "
                 "%lld, TTL %d s (the refresher gave up during the outage)",
                 o.expires, back, T_OUTAGE_TTL_S);
    long long after = o.expires;
    expect_ok(pc_repo_lock_check(outage.lk, &err), &err, "lock check after the outage");

    pc_repo_unlock(outage.lk);
    outage.lk = NULL;
    assert_false(get_lock(outage.s3, key, &o));
    print_message("outage: stop %lld ms, down %lld ms, start %lld ms; expires %lld before, %lld "
                  "after; the test took %lld ms\n",
                  (long long)(t_down - t_stop), (long long)(t_start - t_down),
                  (long long)(t_back - t_start), o1.expires, after, (long long)(pc_mono_ms() - t0));
}

/* ---------- when a holder counts as gone ----------
 *
 * A lock that has not expired is taken over only when its holder is provably dead: the same
 * hostname, boot id, pid namespace and time namespace as ours, and its pid either free or used
 * by a process started at another time. Lock objects are written by hand, each naming a
 * holder; the answer of pc_repo_lock_take is checked on the server: a takeover by our token and
 * pid in the object, a refusal by the object left byte for byte (same body, same ETag). */

typedef struct ident {
    char host[256], boot_id[64], pid_ns[64], time_ns[64];
} ident;

static void read_ident(ident *id)
{
    memset(id, 0, sizeof *id);
    assert_int_equal(gethostname(id->host, sizeof id->host - 1), 0);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    assert_non_null(f);
    assert_non_null(fgets(id->boot_id, sizeof id->boot_id, f));
    fclose(f);
    id->boot_id[strcspn(id->boot_id, "\n")] = '\0';
    assert_true(readlink("/proc/self/ns/pid", id->pid_ns, sizeof id->pid_ns - 1) > 0);
    if (readlink("/proc/self/ns/time", id->time_ns, sizeof id->time_ns - 1) < 0)
        id->time_ns[0] = '\0'; /* a kernel before 5.6: no time namespaces */
}

/* Field 22 of /proc/<pid>/stat, read here independently of repo_s3_lock.c: after the LAST ')'. */
static long long start_of(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    long long v = 0;
    char *tok, *save = NULL;
    int field = 3;
    for (tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++)
        if (field == 22) {
            v = atoll(tok);
            break;
        }
    assert_true(v > 0);
    return v;
}

/* A pid that no process has any more: a child that exited and was reaped. */
static pid_t dead_pid(void)
{
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0)
        _exit(0);
    assert_int_equal(waitpid(c, NULL, 0), c);
    assert_int_equal(kill(c, 0), -1);
    return c;
}

/* A live child whose command name holds spaces and ')' (as any program can set its own), so that
 * only a parser taking the fields after the LAST ')' of /proc/<pid>/stat reads its start time
 * right. Ended with kill + waitpid by the caller. */
static pid_t odd_named_child(void)
{
    int fd[2];
    char c;
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        prctl(PR_SET_NAME, "x) 1 2 (y) 3 4", 0, 0, 0);
        (void)!write(fd[1], "!", 1);
        for (;;)
            pause();
    }
    close(fd[1]);
    assert_int_equal(read(fd[0], &c, 1), 1);
    close(fd[0]);
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(comm, sizeof comm, f));
    fclose(f);
    assert_string_equal(comm, "x) 1 2 (y) 3 4\n");
    return pid;
}

/* Writes a lock held by pid until 10 minutes from now; boot_id/pid_ns NULL leave the field out
 * (start <= 0 too), as an older pipectl wrote it. Returns the object as it landed. */
static void put_holder(pc_s3 *s3, const char *key, const ident *id, long long pid,
                       const char *boot_id, const char *pid_ns, long long start, lock_obj *o)
{
    pc_error err = {0};
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:I, s:s}", "owner", "backup create", "host", id->host, "pid",
                  (json_int_t)pid, "expires", (json_int_t)(time(NULL) + 600), "token", "theirs");
    assert_non_null(j);
    if (boot_id)
        json_object_set_new(j, "boot_id", json_string(boot_id));
    if (pid_ns)
        json_object_set_new(j, "pid_ns", json_string(pid_ns));
    if (boot_id && id->time_ns[0])
        json_object_set_new(j, "time_ns", json_string(id->time_ns));
    if (start > 0)
        json_object_set_new(j, "pid_start", json_integer((json_int_t)start));
    char *body = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(body);
    expect_ok(pc_s3_put(s3, key, body, strlen(body), NULL, &err), &err, "holder's lock");
    free(body);
    json_decref(j);
    assert_true(get_lock(s3, key, o));
    assert_string_equal(o->token, "theirs");
}

/* The taker must be refused, and the holder's object stay as it was. */
static void expect_held(pc_repo *r, pc_s3 *s3, const char *key, const lock_obj *before,
                        const char *why)
{
    pc_repo_lock *lk = NULL;
    pc_error err = {0};
    lock_obj after;
    int rc = pc_repo_lock_take(r, "backup expire", &lk, &err);
    if (rc != PC_ECONFLICT)
        fail_msg("%s: taken over (rc %d), the holder must count as alive", why, rc);
    assert_null(lk);
    assert_non_null(strstr(err.msg, "\"backup create\""));
    pc_error_clear(&err);
    assert_true(get_lock(s3, key, &after));
    if (strcmp(after.body, before->body) != 0 || strcmp(after.etag, before->etag) != 0)
        fail_msg("%s: the holder's lock was rewritten: %s", why, after.body);
}

/* The taker must take it over: our token, owner, pid and identity in the object, then unlock
 * deletes it. */
static void expect_taken(pc_repo *r, pc_s3 *s3, const char *key, const ident *id, const char *why)
{
    pc_repo_lock *lk = NULL;
    pc_error err = {0};
    lock_obj o;
    json_error_t je;
    int rc = pc_repo_lock_take(r, "backup expire", &lk, &err);
    if (rc != 0)
        fail_msg("%s: not taken over (rc %d: %s)", why, rc, err.msg);
    assert_non_null(lk);
    assert_true(get_lock(s3, key, &o));
    assert_string_equal(o.owner, "backup expire");
    assert_int_equal(strlen(o.token), 32);
    assert_true(o.pid == (long long)getpid());
    json_t *j = json_loadb(o.body, strlen(o.body), 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "boot_id")), id->boot_id);
    assert_string_equal(json_string_value(json_object_get(j, "pid_ns")), id->pid_ns);
    assert_true(json_integer_value(json_object_get(j, "pid_start")) == start_of(getpid()));
    json_decref(j);
    pc_repo_unlock(lk);
    assert_false(get_lock(s3, key, &o));
}

static void test_lock_holder_identity(void **state)
{
    (void)state;
    pc_repo *r = open_repo("li");
    pc_s3 *s3 = open_s3();
    char key[128];
    ident me;
    lock_obj o;
    lock_key(key, sizeof key, "li");
    read_ident(&me);
    pid_t parent = getppid(), dead = dead_pid();
    long long parent_start = start_of(parent);

    /* the holder died here: same host, boot, namespaces; its pid is free */
    put_holder(s3, key, &me, dead, me.boot_id, me.pid_ns, 12345, &o);
    expect_taken(r, s3, key, &me, "dead pid, same boot and namespace");

    /* the same pid free in OUR namespace says nothing of a process in another one (a container
     * with the host's hostname) */
    put_holder(s3, key, &me, dead, me.boot_id, "pid:[4026599999]", 12345, &o);
    expect_held(r, s3, key, &o, "dead pid, another pid namespace");

    /* another boot id: this host before a reboot, or another host with our hostname */
    put_holder(s3, key, &me, dead, "00000000-1111-2222-3333-444444444444", me.pid_ns, 12345, &o);
    expect_held(r, s3, key, &o, "dead pid, another boot id");

    /* another time namespace: the start time /proc shows is the reader's view, not comparable */
    ident other_tns = me;
    snprintf(other_tns.time_ns, sizeof other_tns.time_ns, "time:[4026599998]");
    put_holder(s3, key, &other_tns, dead, me.boot_id, me.pid_ns, 12345, &o);
    expect_held(r, s3, key, &o, "dead pid, another time namespace");

    /* the pid is in use, by a process started at another time: reused, the holder is gone */
    put_holder(s3, key, &me, parent, me.boot_id, me.pid_ns, parent_start + 1, &o);
    expect_taken(r, s3, key, &me, "live pid with another start time");

    /* the pid is in use by the holder itself */
    put_holder(s3, key, &me, parent, me.boot_id, me.pid_ns, parent_start, &o);
    expect_held(r, s3, key, &o, "live pid with its own start time");

    /* the same two with a holder whose command name holds ") 1 2 (y) 3 4": its start time is
     * the one after the last ')' */
    pid_t odd = odd_named_child();
    long long odd_start = start_of(odd);
    put_holder(s3, key, &me, odd, me.boot_id, me.pid_ns, odd_start, &o);
    expect_held(r, s3, key, &o, "live pid named with ')' and spaces, its own start time");
    put_holder(s3, key, &me, odd, me.boot_id, me.pid_ns, odd_start + 1, &o);
    expect_taken(r, s3, key, &me, "live pid named with ')' and spaces, another start time");
    kill(odd, SIGKILL);
    assert_int_equal(waitpid(odd, NULL, 0), odd);

    /* an older pipectl's lock names host and pid only: no identity, so alive until it expires */
    put_holder(s3, key, &me, dead, NULL, NULL, 0, &o);
    expect_held(r, s3, key, &o, "old-format lock, dead pid");

    /* identity but no start time: a free pid is not enough without it */
    put_holder(s3, key, &me, dead, me.boot_id, me.pid_ns, 0, &o);
    expect_held(r, s3, key, &o, "no start time, dead pid");

    /* another hostname: nothing on this host can tell about that process */
    snprintf(me.host, sizeof me.host, "another-%s", run);
    put_holder(s3, key, &me, dead, me.boot_id, me.pid_ns, 12345, &o);
    expect_held(r, s3, key, &o, "another hostname");

    pc_error err = {0};
    expect_ok(pc_s3_delete(s3, key, &err), &err, "cleanup");
    pc_s3_free(s3);
    pc_repo_close(r);
}

static void test_sweep(void **state)
{
    (void)state;
    pc_repo *r = open_repo("sw");
    pc_s3 *s3 = open_s3();
    pc_error err = {0};
    char key[128], other[128], up[128], otherup[128], *id = NULL, *id2 = NULL;
    size_t removed = 99;
    snprintf(key, sizeof key, "%s/sw/backups/B9/base.tar.zst", run);
    snprintf(up, sizeof up, "%s/sw/", run);
    snprintf(other, sizeof other, "%s/swx/backups/B9/base.tar.zst", run);
    snprintf(otherup, sizeof otherup, "%s/swx/", run);

    /* a writer that died after starting a multipart upload; and another repository's */
    expect_ok(pc_s3_multipart_create(s3, key, &id, &err), &err, "create");
    expect_ok(pc_s3_multipart_create(s3, other, &id2, &err), &err, "create other");
    assert_int_equal(count_uploads(s3, up), 1);

    int64_t now = (int64_t)time(NULL);
    expect_ok(pc_repo_sweep(r, now, 3600, &removed, &err), &err, "sweep young");
    assert_int_equal(removed, 0); /* too young: a writer may be at it */
    assert_int_equal(count_uploads(s3, up), 1);

    expect_ok(pc_repo_sweep(r, now + 7200, 3600, &removed, &err), &err, "sweep old");
    assert_int_equal(removed, 1);
    assert_int_equal(count_uploads(s3, up), 0);
    assert_int_equal(count_uploads(s3, otherup), 1); /* not ours: untouched */

    expect_ok(pc_s3_multipart_abort(s3, other, id2, &err), &err, "cleanup");
    free(id);
    free(id2);
    pc_s3_free(s3);
    pc_repo_close(r);
}

/* ---------- errors ---------- */

static void test_errors(void **state)
{
    (void)state;
    pc_s3_config c = base_config();
    pc_repo *r = NULL;
    pc_repo_entry e;
    pc_repo_put *p = NULL;
    pc_error err = {0};
    seen_keys s = {0};
    char bad_secret[128];

    /* wrong secret: named, with what to check, and no secret in the message */
    snprintf(bad_secret, sizeof bad_secret, "%sWRONG", c.secret_access_key);
    c.secret_access_key = bad_secret;
    expect_ok(pc_repo_s3_new(&c, "err", &r, &err), &err, "new");
    assert_int_equal(pc_repo_stat(r, "wal/A", &e, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, pc_repo_uri(r)));
    assert_non_null(strstr(err.msg, "wal/A"));
    assert_non_null(strstr(err.msg, "archiving.s3.access_key_id / secret_access_key"));
    assert_null(strstr(err.msg, bad_secret));
    assert_null(strstr(err.msg, need("PC_S3_SECRET_ACCESS_KEY")));
    pc_error_clear(&err);
    assert_int_equal(pc_repo_put_all(r, "wal/A", "x", 1, PC_REPO_REPLACE, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "secret_access_key"));
    assert_null(strstr(err.msg, bad_secret));
    pc_error_clear(&err);
    pc_repo_close(r);

    /* wrong access key id */
    c = base_config();
    c.access_key_id = "NOSUCHKEYID";
    expect_ok(pc_repo_s3_new(&c, "err", &r, &err), &err, "new");
    assert_int_equal(pc_repo_list(r, "wal/", collect, &s, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "archiving.s3.access_key_id"));
    pc_error_clear(&err);
    pc_repo_close(r);

    /* missing bucket: stat (a HEAD, no body to tell) and a write both say to create it */
    c = base_config();
    c.bucket = "pipectl-no-such-bucket";
    expect_ok(pc_repo_s3_new(&c, "err", &r, &err), &err, "new");
    assert_int_equal(pc_repo_stat(r, "wal/A", &e, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "create bucket pipectl-no-such-bucket"));
    assert_non_null(strstr(err.msg, "s3://pipectl-no-such-bucket/err"));
    pc_error_clear(&err);
    expect_ok(pc_repo_put_begin(r, "wal/A", &p, &err), &err, "begin");
    expect_ok(pc_repo_put_write(p, "x", 1, &err), &err, "write");
    assert_int_equal(pc_repo_put_commit(p, PC_REPO_REPLACE, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "create bucket pipectl-no-such-bucket"));
    pc_error_clear(&err);
    pc_repo_close(r);

    /* unreachable: the endpoint is named */
    c = base_config();
    c.endpoint = "http://127.0.0.1:9";
    c.max_attempts = 1;
    expect_ok(pc_repo_s3_new(&c, "err", &r, &err), &err, "new");
    assert_int_equal(pc_repo_stat(r, "wal/A", &e, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "http://127.0.0.1:9"));
    assert_non_null(strstr(err.msg, "archiving.s3.endpoint"));
    pc_error_clear(&err);
    pc_repo_close(r);
}

/* ---------- peak memory ---------- */

static int rss_mode(long mb)
{
    pc_repo *r = open_repo("rss");
    pc_repo_put *p = NULL;
    pc_repo_obj *o = NULL;
    pc_error err = {0};
    size_t chunk = 1u << 20, n = (size_t)mb * 1000 * 1000;
    unsigned char *buf = malloc(chunk);
    EVP_MD_CTX *w = EVP_MD_CTX_new(), *rd = EVP_MD_CTX_new();
    unsigned char dw[32], dr[32];
    struct rusage ru;
    struct timeval t0, t1, t2;
    uint64_t seed = 77;

    EVP_DigestInit_ex(w, EVP_sha256(), NULL);
    EVP_DigestInit_ex(rd, EVP_sha256(), NULL);
    gettimeofday(&t0, NULL);
    expect_ok(pc_repo_put_begin(r, "big", &p, &err), &err, "begin");
    for (size_t off = 0; off < n;) {
        size_t k = n - off < chunk ? n - off : chunk;
        fill_random(buf, k, seed++);
        EVP_DigestUpdate(w, buf, k);
        expect_ok(pc_repo_put_write(p, buf, k, &err), &err, "write");
        off += k;
    }
    expect_ok(pc_repo_put_commit(p, PC_REPO_REPLACE, &err), &err, "commit");
    gettimeofday(&t1, NULL);
    getrusage(RUSAGE_SELF, &ru);
    long rss_write = ru.ru_maxrss;
    expect_ok(pc_repo_open(r, "big", &o, &err), &err, "open");
    for (uint64_t off = 0;;) {
        size_t got = 0;
        expect_ok(pc_repo_pread(o, off, buf, 65536 + 3, &got, &err), &err, "pread");
        if (got == 0)
            break;
        EVP_DigestUpdate(rd, buf, got);
        off += got;
    }
    pc_repo_obj_close(o);
    gettimeofday(&t2, NULL);
    getrusage(RUSAGE_SELF, &ru);
    EVP_DigestFinal_ex(w, dw, NULL);
    EVP_DigestFinal_ex(rd, dr, NULL);
    expect_ok(pc_repo_delete(r, "big", &err), &err, "delete");
    printf("s3_repo_test --rss: %ld MB object: written in %.1f s, read back in %.1f s, SHA-256 "
           "%s; peak RSS %ld KiB after writing, %ld KiB after reading\n",
           mb, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_usec - t0.tv_usec) / 1e6,
           (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_usec - t1.tv_usec) / 1e6,
           memcmp(dw, dr, 32) == 0 ? "matches" : "DIFFERS", rss_write, ru.ru_maxrss);
    EVP_MD_CTX_free(w);
    EVP_MD_CTX_free(rd);
    free(buf);
    pc_repo_close(r);
    /* 3 parts in flight + 1 filling (8 MiB each) + the read window + libraries: well under 80 MB */
    return memcmp(dw, dr, 32) == 0 && ru.ru_maxrss < 80 * 1024 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(run, sizeof run, "repo-it-%ld-%d", (long)tv.tv_sec, (int)getpid());
    if (argc == 3 && strcmp(argv[1], "--rss") == 0)
        return rss_mode(atol(argv[2]));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_invisible_until_commit),
        cmocka_unit_test(test_noreplace_and_replace),
        cmocka_unit_test(test_multipart_40mb),
        cmocka_unit_test(test_list_many_in_order),
        cmocka_unit_test(test_prefix_isolation),
        cmocka_unit_test(test_lock),
        cmocka_unit_test_setup_teardown(test_lock_refreshed, lock_timings_short,
                                        lock_timings_default),
        cmocka_unit_test_setup_teardown(test_lock_refresher_stops_at_unlock, lock_timings_short,
                                        lock_timings_default),
        cmocka_unit_test_setup_teardown(test_lock_lost, lock_timings_short, lock_timings_default),
        cmocka_unit_test_setup_teardown(test_lock_check, lock_timings_short, lock_timings_default),
        cmocka_unit_test_setup_teardown(test_expire_stops_on_lost_lock, lock_timings_short,
                                        lock_timings_default),
        cmocka_unit_test_setup_teardown(test_lock_survives_outage, outage_setup, outage_teardown),
        cmocka_unit_test(test_lock_holder_identity),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
