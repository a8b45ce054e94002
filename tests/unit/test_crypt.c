/* test_crypt.c: client-side encryption of the backup repository (pkg/backup/crypt.c and
 * repo_crypt.c).
 *
 * First the format alone, through memory callbacks: round trips at the chunk boundaries, every
 * kind of tampering (a flipped byte in the header, a body or a tag; cut; extended; chunks
 * swapped; an object moved to another name) refused with a message naming the object; reads
 * that touch only the chunks they need; the key derivation and the marker. Then the encrypted
 * layer over a directory repository in a temporary directory: what lands on disk (sizes, no
 * plaintext, the marker), what a reader gets back, a wrong passphrase, a repository holding
 * unencrypted backups. A last case prints the encrypt and decrypt throughput (not timed). */
#define _GNU_SOURCE /* memmem, nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "crypt.h"
#include "repo.h"

#define C PC_CRYPT_CHUNK
#define SC (PC_CRYPT_CHUNK + PC_CRYPT_TAG)
#define PASS "correct horse battery staple"

/* ---------- helpers ---------- */

/* A small, fixed xorshift: reproducible "random" data and offsets. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static unsigned char *random_bytes(size_t n)
{
    unsigned char *p = malloc(n > 0 ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(rnd() >> 24);
    return p;
}

/* Fast keys for the format tests (the KDF has its own test). */
static void test_keys(pc_crypt_keys *k, unsigned char seed)
{
    memset(k->data, seed, sizeof k->data);
    memset(k->check, seed ^ 0x5a, sizeof k->check);
}

static int out_buf(void *ctx, const void *data, size_t n, pc_error *err)
{
    (void)err;
    return pc_buf_append(ctx, data, n);
}

static void seal(const pc_crypt_keys *k, const char *key, const unsigned char *p, size_t n,
                 pc_buf *out)
{
    pc_error err = {0};
    pc_crypt_writer *w = NULL;
    assert_int_equal(pc_crypt_writer_new(k, key, out_buf, out, &w, &err), 0);
    /* feed in uneven pieces so that chunk boundaries fall inside writes */
    size_t off = 0;
    while (off < n) {
        size_t take = 1 + (size_t)(rnd() % (3 * C / 2));
        if (take > n - off)
            take = n - off;
        assert_int_equal(pc_crypt_writer_write(w, p + off, take, &err), 0);
        off += take;
    }
    assert_int_equal(pc_crypt_writer_finish(w, &err), 0);
    pc_crypt_writer_free(w);
}

typedef struct mem_in {
    const unsigned char *p;
    size_t n;
    size_t reads; /* calls */
    size_t bytes; /* stored bytes read */
} mem_in;

static int in_mem(void *ctx, uint64_t off, void *buf, size_t n, pc_error *err)
{
    mem_in *m = ctx;
    if (off > m->n || n > m->n - off)
        return pc_error_set(err, PC_EIO, "read past the end");
    memcpy(buf, m->p + off, n);
    m->reads++;
    m->bytes += n;
    return 0;
}

/* Opens and reads the whole object; returns the first error (0 when all of it authenticated)
 * and leaves its message in err. */
static int open_all(const pc_crypt_keys *k, const char *key, const unsigned char *stored, size_t sn,
                    pc_buf *plain, pc_error *err)
{
    mem_in m = {.p = stored, .n = sn};
    pc_crypt_reader *r = NULL;
    int rc = pc_crypt_reader_new(k, key, "/repo", sn, in_mem, &m, &r, err);
    if (rc != 0) {
        assert_null(r);
        return rc;
    }
    uint64_t off = 0;
    char buf[10007];
    for (;;) {
        size_t got = 0;
        rc = pc_crypt_reader_pread(r, off, buf, sizeof buf, &got, err);
        if (rc != 0 || got == 0)
            break;
        if (plain != NULL)
            assert_int_equal(pc_buf_append(plain, buf, got), 0);
        off += got;
    }
    if (rc == 0)
        assert_int_equal(off, pc_crypt_reader_size(r));
    pc_crypt_reader_free(r);
    return rc;
}

/* ---------- the format ---------- */

static void test_sizes(void **state)
{
    (void)state;
    uint64_t sizes[] = {0, 1, C - 1, C, C + 1, 2 * C, 2 * C + 1, 1000003, (uint64_t)1 << 40};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint64_t s = pc_crypt_stored_size(sizes[i]), back = 99;
        assert_true(pc_crypt_plain_size(s, &back));
        assert_int_equal(back, sizes[i]);
    }
    assert_int_equal(pc_crypt_stored_size(0), PC_CRYPT_HDR + PC_CRYPT_TAG);
    assert_int_equal(pc_crypt_stored_size(C), PC_CRYPT_HDR + SC);
    assert_int_equal(pc_crypt_stored_size(C + 1), PC_CRYPT_HDR + SC + 1 + PC_CRYPT_TAG);
    /* sizes no object has: too short for a header and a tag; a last chunk shorter than a tag;
     * an empty chunk after a full one */
    uint64_t bad[] = {0, PC_CRYPT_HDR, PC_CRYPT_HDR + PC_CRYPT_TAG - 1, PC_CRYPT_HDR + SC + 5,
                      PC_CRYPT_HDR + SC + PC_CRYPT_TAG};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t p;
        assert_false(pc_crypt_plain_size(bad[i], &p));
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    pc_crypt_keys k;
    test_keys(&k, 1);
    size_t sizes[] = {0, 1, C - 1, C, C + 1, 3 * C + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = random_bytes(sizes[i]);
        pc_buf s = {0}, back = {0};
        seal(&k, "wal/000000010000000000000001.zst", p, sizes[i], &s);
        assert_int_equal(s.len, pc_crypt_stored_size(sizes[i]));
        pc_error err = {0};
        assert_int_equal(open_all(&k, "wal/000000010000000000000001.zst", (unsigned char *)s.data,
                                  s.len, &back, &err),
                         0);
        assert_int_equal(back.len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(back.data, p, sizes[i]);
        /* the same plaintext sealed twice differs (fresh salt and nonces) */
        pc_buf s2 = {0};
        seal(&k, "wal/000000010000000000000001.zst", p, sizes[i], &s2);
        assert_int_equal(s2.len, s.len);
        assert_true(memcmp(s.data, s2.data, s.len) != 0);
        pc_buf_free(&s);
        pc_buf_free(&s2);
        pc_buf_free(&back);
        free(p);
    }
}

/* Expects the stored bytes to be refused, with PC_EIO and a message naming the object. */
static void expect_refused(const pc_crypt_keys *k, const char *key, const unsigned char *s,
                           size_t n, const char *what)
{
    pc_error err = {0};
    pc_buf back = {0};
    int rc = open_all(k, key, s, n, &back, &err);
    if (rc != PC_EIO)
        fail_msg("%s: not refused (rc %d)", what, rc);
    assert_non_null(strstr(err.msg, key));
    assert_non_null(strstr(err.msg, "/repo"));
    pc_buf_free(&back);
}

static void test_tamper(void **state)
{
    (void)state;
    pc_crypt_keys k;
    test_keys(&k, 2);
    const char *key = "backups/20240101T000000Z/base.tar.zst";
    size_t n = 2 * C + 100; /* chunks: full, full, 100 bytes */
    unsigned char *p = random_bytes(n);
    pc_buf sb = {0};
    seal(&k, key, p, n, &sb);
    unsigned char *s = (unsigned char *)sb.data;
    size_t sn = sb.len;
    unsigned char *t = malloc(sn + 2 * SC);
    assert_non_null(t);

    /* the untouched object opens */
    pc_error err = {0};
    assert_int_equal(open_all(&k, key, s, sn, NULL, &err), 0);

    /* a flipped bit anywhere: every header byte, then bytes across bodies and every tag byte */
    for (size_t i = 0; i < sn; i++) {
        bool in_tag = false;
        for (size_t c = 0; c < 3; c++) {
            size_t tag_at = c < 2 ? PC_CRYPT_HDR + c * SC + C : sn - PC_CRYPT_TAG;
            if (i >= tag_at && i < tag_at + PC_CRYPT_TAG)
                in_tag = true;
        }
        if (!(i < PC_CRYPT_HDR || in_tag || i % 1021 == 0 || i == sn - PC_CRYPT_TAG - 1))
            continue;
        memcpy(t, s, sn);
        t[i] ^= 0x04;
        char what[64];
        snprintf(what, sizeof what, "bit flipped at stored byte %zu", i);
        expect_refused(&k, key, t, sn, what);
    }

    /* cut: by one byte, by the whole final chunk (what is left is a valid size), to the header */
    expect_refused(&k, key, s, sn - 1, "cut by one byte");
    expect_refused(&k, key, s, PC_CRYPT_HDR + 2 * SC, "final chunk dropped");
    expect_refused(&k, key, s, PC_CRYPT_HDR + SC, "last two chunks dropped");
    expect_refused(&k, key, s, PC_CRYPT_HDR, "only the header");

    /* extended: a byte, a copy of the first chunk */
    memcpy(t, s, sn);
    t[sn] = 0;
    expect_refused(&k, key, t, sn + 1, "one byte appended");
    memcpy(t + sn, s + PC_CRYPT_HDR, SC);
    expect_refused(&k, key, t, sn + SC, "a chunk appended");

    /* chunks 0 and 1 swapped; chunk 0 repeated in place of chunk 1 */
    memcpy(t, s, sn);
    memcpy(t + PC_CRYPT_HDR, s + PC_CRYPT_HDR + SC, SC);
    memcpy(t + PC_CRYPT_HDR + SC, s + PC_CRYPT_HDR, SC);
    expect_refused(&k, key, t, sn, "chunks swapped");
    memcpy(t, s, sn);
    memcpy(t + PC_CRYPT_HDR + SC, s + PC_CRYPT_HDR, SC);
    expect_refused(&k, key, t, sn, "chunk repeated");

    /* the header of another object (its salt) in front of these chunks */
    pc_buf other = {0};
    seal(&k, key, p, n, &other);
    memcpy(t, s, sn);
    memcpy(t, other.data, PC_CRYPT_HDR);
    expect_refused(&k, key, t, sn, "header of another object");

    /* the object under another name, and under another key */
    expect_refused(&k, "backups/20240102T000000Z/base.tar.zst", s, sn, "moved to another name");
    pc_crypt_keys k2;
    test_keys(&k2, 3);
    expect_refused(&k2, key, s, sn, "opened with another key");

    /* the message says where and why */
    memcpy(t, s, sn);
    t[PC_CRYPT_HDR + SC + 7] ^= 1; /* chunk 1 */
    memset(&err, 0, sizeof err);
    mem_in m = {.p = t, .n = sn};
    pc_crypt_reader *r = NULL;
    assert_int_equal(pc_crypt_reader_new(&k, key, "/repo", sn, in_mem, &m, &r, &err), 0);
    char buf[100];
    size_t got = 0;
    /* chunk 0 still reads: only the chunks a read touches are decrypted */
    assert_int_equal(pc_crypt_reader_pread(r, 5, buf, sizeof buf, &got, &err), 0);
    assert_int_equal(got, sizeof buf);
    assert_memory_equal(buf, p + 5, sizeof buf);
    assert_int_equal(pc_crypt_reader_pread(r, C + 3, buf, 10, &got, &err), PC_EIO);
    assert_string_equal(err.msg, "backups/20240101T000000Z/base.tar.zst in backup repository "
                                 "/repo fails authentication at byte 65536: damaged, or written "
                                 "with another key");
    pc_crypt_reader_free(r);

    pc_buf_free(&sb);
    pc_buf_free(&other);
    free(t);
    free(p);
}

/* A read touches only the chunks it needs, and the last chunk read is kept. */
static void test_random_access(void **state)
{
    (void)state;
    pc_crypt_keys k;
    test_keys(&k, 4);
    size_t n = 10 * C + 333;
    unsigned char *p = random_bytes(n);
    pc_buf sb = {0};
    seal(&k, "x", p, n, &sb);
    mem_in m = {.p = (unsigned char *)sb.data, .n = sb.len};
    pc_crypt_reader *r = NULL;
    pc_error err = {0};
    assert_int_equal(pc_crypt_reader_new(&k, "x", "/repo", sb.len, in_mem, &m, &r, &err), 0);
    /* the header and the final chunk */
    assert_int_equal(m.reads, 2);
    assert_int_equal(m.bytes, PC_CRYPT_HDR + 333 + PC_CRYPT_TAG);
    assert_int_equal(pc_crypt_reader_size(r), n);
    char buf[64];
    size_t got = 0;
    m.reads = m.bytes = 0;
    assert_int_equal(pc_crypt_reader_pread(r, 5 * C + 10, buf, 20, &got, &err), 0);
    assert_int_equal(pc_crypt_reader_pread(r, 5 * C + 40, buf + 20, 20, &got, &err), 0);
    assert_memory_equal(buf, p + 5 * C + 10, 20);
    assert_int_equal(m.reads, 1); /* chunk 5 once, kept for the second read */
    assert_int_equal(m.bytes, SC);
    /* across a boundary: two chunks */
    m.reads = 0;
    assert_int_equal(pc_crypt_reader_pread(r, 7 * C - 8, buf, 16, &got, &err), 0);
    assert_int_equal(got, 16);
    assert_memory_equal(buf, p + 7 * C - 8, 16);
    assert_int_equal(m.reads, 2);
    /* at and past the end */
    assert_int_equal(pc_crypt_reader_pread(r, n - 3, buf, sizeof buf, &got, &err), 0);
    assert_int_equal(got, 3);
    assert_int_equal(pc_crypt_reader_pread(r, n, buf, sizeof buf, &got, &err), 0);
    assert_int_equal(got, 0);
    assert_int_equal(pc_crypt_reader_pread(r, n + 100000, buf, sizeof buf, &got, &err), 0);
    assert_int_equal(got, 0);
    pc_crypt_reader_free(r);
    pc_buf_free(&sb);
    free(p);
}

static bool has_hex_of(const char *text, const unsigned char *p, size_t n)
{
    char h[2 * 64 + 1];
    pc_hex_encode(p, n, h);
    return strstr(text, h) != NULL;
}

static void test_kdf_and_marker(void **state)
{
    (void)state;
    pc_crypt_kdf kdf;
    pc_crypt_kdf_default(&kdf);
    assert_int_equal(kdf.n, 32768);
    kdf.n = 1024; /* fast */
    memset(kdf.salt, 7, sizeof kdf.salt);
    pc_crypt_keys a, b, c;
    pc_error err = {0};
    assert_int_equal(pc_crypt_derive(PASS, &kdf, &a, &err), 0);
    assert_int_equal(pc_crypt_derive(PASS, &kdf, &b, &err), 0);
    assert_memory_equal(&a, &b, sizeof a); /* deterministic for a salt */
    assert_true(memcmp(a.data, a.check, sizeof a.data) != 0);
    kdf.salt[0] ^= 1;
    assert_int_equal(pc_crypt_derive(PASS, &kdf, &c, &err), 0);
    assert_true(memcmp(a.data, c.data, sizeof a.data) != 0); /* the salt counts */
    kdf.salt[0] ^= 1;
    assert_int_equal(pc_crypt_derive(PASS "!", &kdf, &c, &err), 0);
    assert_true(memcmp(a.data, c.data, sizeof a.data) != 0);
    /* parameters out of bounds are refused before any work */
    pc_crypt_kdf huge = kdf;
    huge.n = (uint64_t)1 << 22;
    assert_int_equal(pc_crypt_derive(PASS, &huge, &c, &err), PC_EINVAL);

    /* a marker: the keys it gives back are the ones made with it; it holds neither the
     * passphrase nor a key */
    char *json = NULL;
    assert_int_equal(pc_crypt_marker_new(PASS, &kdf, &a, &json, &err), 0);
    assert_null(strstr(json, PASS));
    assert_false(has_hex_of(json, a.data, sizeof a.data));
    assert_false(has_hex_of(json, a.check, sizeof a.check));
    assert_non_null(strstr(json, "\"aes-256-gcm\""));
    assert_non_null(strstr(json, "\"scrypt\""));
    assert_int_equal(pc_crypt_marker_open(json, strlen(json), PASS, "/repo", &b, &err), 0);
    assert_memory_equal(&a, &b, sizeof a);
    /* wrong passphrase: one PC_EINVAL, keys wiped */
    memset(&err, 0, sizeof err);
    assert_int_equal(
        pc_crypt_marker_open(json, strlen(json), "Correct horse battery staple", "/repo", &c, &err),
        PC_EINVAL);
    assert_string_equal(err.msg, "wrong encryption key for backup repository /repo "
                                 "(archiving.encryption.key)");
    pc_crypt_keys zero = {0};
    assert_memory_equal(&c, &zero, sizeof c);
    /* a damaged marker, and one asking for 2^30 scrypt rounds */
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_crypt_marker_open(json, strlen(json) / 2, PASS, "/repo", &c, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "pipectl-crypt.json in backup repository /repo is damaged"));
    char *n_at = strstr(json, "\"n\": 1024");
    assert_non_null(n_at);
    pc_buf big = {0};
    assert_int_equal(pc_buf_append(&big, json, (size_t)(n_at - json)), 0);
    assert_int_equal(pc_buf_puts(&big, "\"n\": 1073741824"), 0);
    assert_int_equal(pc_buf_puts(&big, n_at + strlen("\"n\": 1024")), 0);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_crypt_marker_open(big.data, big.len, PASS, "/repo", &c, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "2^20"));
    pc_buf_free(&big);
    free(json);
}

/* ---------- over a directory repository ---------- */

typedef struct fx {
    char dir[64];
    pc_repo *r;
} fx;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pc-crypt-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    pc_repo_close(f->r);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int open_crypt(fx *f, const char *pass, pc_repo **out, pc_error *err)
{
    pc_repo *inner = NULL;
    int rc = pc_repo_dir_new(f->dir, &inner, err);
    if (rc != 0)
        return rc;
    return pc_repo_crypt_new(inner, pass, out, err);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    pc_buf b = {0};
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0)
        assert_int_equal(pc_buf_append(&b, buf, got), 0);
    fclose(fp);
    *n = b.len;
    if (b.data == NULL)
        return calloc(1, 1);
    return (unsigned char *)b.data;
}

static unsigned char *read_stored(fx *f, const char *key, size_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", f->dir, key);
    unsigned char *p = read_file(path, n);
    assert_non_null(p);
    return p;
}

static void write_stored(fx *f, const char *key, const unsigned char *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", f->dir, key);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

typedef struct listed {
    char keys[16][128];
    uint64_t sizes[16];
    size_t n;
} listed;

static int list_cb(void *ctx, const pc_repo_entry *e)
{
    listed *l = ctx;
    assert_true(l->n < 16);
    snprintf(l->keys[l->n], sizeof l->keys[0], "%s", e->key);
    l->sizes[l->n++] = e->size;
    return 0;
}

/* Writes p[0..n) as key in pieces of random size. */
static void put_stream(pc_repo *r, const char *key, const unsigned char *p, size_t n)
{
    pc_error err = {0};
    pc_repo_put *w = NULL;
    assert_int_equal(pc_repo_put_begin(r, key, &w, &err), 0);
    size_t off = 0;
    while (off < n) {
        size_t take = 1 + (size_t)(rnd() % 100000);
        if (take > n - off)
            take = n - off;
        assert_int_equal(pc_repo_put_write(w, p + off, take, &err), 0);
        off += take;
    }
    if (pc_repo_put_commit(w, PC_REPO_NOREPLACE, &err) != 0)
        fail_msg("commit %s: %s", key, err.msg);
}

static void test_repo_roundtrip(void **state)
{
    fx *f = *state;
    pc_error err = {0};
    if (open_crypt(f, PASS, &f->r, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(pc_repo_kind(f->r), "encrypted");
    assert_string_equal(pc_repo_uri(f->r), f->dir);
    /* the empty repository got its marker */
    char mpath[128];
    snprintf(mpath, sizeof mpath, "%s/pipectl-crypt.json", f->dir);
    size_t mn = 0;
    unsigned char *marker = read_file(mpath, &mn);
    assert_non_null(marker);
    assert_non_null(strstr((char *)marker, "\"scrypt\""));
    assert_null(strstr((char *)marker, PASS));

    size_t sizes[] = {0, 1, C - 1, C, C + 1, 1000000 + 17};
    char keys[6][64];
    unsigned char *data[6];
    for (size_t i = 0; i < 6; i++) {
        snprintf(keys[i], sizeof keys[i], "backups/B%zu/base.tar.zst", i);
        data[i] = random_bytes(sizes[i]);
        put_stream(f->r, keys[i], data[i], sizes[i]);
    }
    for (size_t i = 0; i < 6; i++) {
        /* on disk: the stored size of format 1 */
        size_t sn = 0;
        unsigned char *s = read_stored(f, keys[i], &sn);
        assert_int_equal(sn, pc_crypt_stored_size(sizes[i]));
        if (sizes[i] > 64)
            assert_null(memmem(s, sn, data[i], 64));
        free(s);
        /* stat and open: plaintext sizes */
        pc_repo_entry e = {0};
        assert_int_equal(pc_repo_stat(f->r, keys[i], &e, &err), 0);
        assert_int_equal(e.size, sizes[i]);
        pc_repo_obj *o = NULL;
        assert_int_equal(pc_repo_open(f->r, keys[i], &o, &err), 0);
        assert_int_equal(pc_repo_obj_size(o), sizes[i]);
        unsigned char *buf = malloc(3 * C);
        assert_non_null(buf);
        for (int j = 0; j < 50; j++) {
            uint64_t off = sizes[i] > 0 ? rnd() % (sizes[i] + 10) : rnd() % 3;
            size_t want = (size_t)(rnd() % (3 * C)) + 1;
            size_t got = 0;
            assert_int_equal(pc_repo_pread(o, off, buf, want, &got, &err), 0);
            size_t expect = off >= sizes[i] ? 0 : (size_t)(sizes[i] - off);
            if (expect > want)
                expect = want;
            assert_int_equal(got, expect);
            if (got > 0)
                assert_memory_equal(buf, data[i] + off, got);
        }
        free(buf);
        pc_repo_obj_close(o);
        /* the whole of it */
        pc_buf all = {0};
        assert_int_equal(pc_repo_get_all(f->r, keys[i], &all, 2000000, &err), 0);
        assert_int_equal(all.len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(all.data, data[i], sizes[i]);
        pc_buf_free(&all);
    }
    /* list: plaintext sizes, no marker */
    listed l = {0};
    assert_int_equal(pc_repo_list(f->r, "", list_cb, &l, &err), 0);
    assert_int_equal(l.n, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(l.keys[i], keys[i]);
        assert_int_equal(l.sizes[i], sizes[i]);
    }
    /* the marker is not an object of the encrypted layer */
    assert_int_equal(pc_repo_stat(f->r, "pipectl-crypt.json", NULL, &err), PC_ENOTFOUND);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_put_all(f->r, "pipectl-crypt.json", "x", 1, PC_REPO_REPLACE, &err),
                     PC_EINVAL);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_delete(f->r, "pipectl-crypt.json", &err), PC_EINVAL);
    size_t mn2 = 0;
    unsigned char *marker2 = read_file(mpath, &mn2);
    assert_non_null(marker2);
    assert_int_equal(mn2, mn);
    assert_memory_equal(marker2, marker, mn);
    free(marker2);

    /* NOREPLACE, REPLACE, abort and delete go through */
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_put_all(f->r, keys[1], "zz", 2, PC_REPO_NOREPLACE, &err),
                     PC_ECONFLICT);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_put_all(f->r, keys[1], "zz", 2, PC_REPO_REPLACE, &err), 0);
    pc_buf all = {0};
    assert_int_equal(pc_repo_get_all(f->r, keys[1], &all, 10, &err), 0);
    assert_int_equal(all.len, 2);
    assert_memory_equal(all.data, "zz", 2);
    pc_buf_free(&all);
    pc_repo_put *w = NULL;
    assert_int_equal(pc_repo_put_begin(f->r, "wal/aborted.zst", &w, &err), 0);
    assert_int_equal(pc_repo_put_write(w, data[5], 200000, &err), 0);
    pc_repo_put_abort(w);
    assert_int_equal(pc_repo_stat(f->r, "wal/aborted.zst", NULL, &err), PC_ENOTFOUND);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_delete(f->r, keys[0], &err), 0);
    assert_int_equal(pc_repo_stat(f->r, keys[0], NULL, &err), PC_ENOTFOUND);
    memset(&err, 0, sizeof err);

    /* the lock is the inner repository's */
    pc_repo_lock *lk = NULL;
    assert_int_equal(pc_repo_lock_take(f->r, "backup create", &lk, &err), 0);
    assert_non_null(lk);
    pc_repo_unlock(lk);

    /* reopened with the same passphrase: the marker is read, not replaced, and reads work */
    pc_repo_close(f->r);
    f->r = NULL;
    assert_int_equal(open_crypt(f, PASS, &f->r, &err), 0);
    marker2 = read_file(mpath, &mn2);
    assert_int_equal(mn2, mn);
    assert_memory_equal(marker2, marker, mn);
    free(marker2);
    assert_int_equal(pc_repo_get_all(f->r, keys[5], &all, 2000000, &err), 0);
    assert_int_equal(all.len, sizes[5]);
    assert_memory_equal(all.data, data[5], sizes[5]);
    pc_buf_free(&all);

    free(marker);
    for (size_t i = 0; i < 6; i++)
        free(data[i]);
}

/* What is stored holds no run of the plaintext. */
static void test_no_plaintext_stored(void **state)
{
    fx *f = *state;
    pc_error err = {0};
    assert_int_equal(open_crypt(f, PASS, &f->r, &err), 0);
    const char *mark = "PIPECTL-PLAINTEXT-MARKER;";
    size_t ml = strlen(mark);
    pc_buf p = {0};
    while (p.len < 300000)
        assert_int_equal(pc_buf_puts(&p, mark), 0);
    put_stream(f->r, "wal/000000010000000000000002.zst", (unsigned char *)p.data, p.len);
    size_t sn = 0;
    unsigned char *s = read_stored(f, "wal/000000010000000000000002.zst", &sn);
    assert_int_equal(sn, pc_crypt_stored_size(p.len));
    assert_null(memmem(s, sn, mark, ml));
    assert_null(memmem(s, sn, "PIPECTL", 7));
    assert_null(memmem(s, sn, "MARKER", 6));
    /* and it comes back */
    pc_buf back = {0};
    assert_int_equal(pc_repo_get_all(f->r, "wal/000000010000000000000002.zst", &back, p.len, &err),
                     0);
    assert_int_equal(back.len, p.len);
    assert_memory_equal(back.data, p.data, p.len);
    pc_buf_free(&back);
    pc_buf_free(&p);
    free(s);
}

static void test_wrong_passphrase(void **state)
{
    fx *f = *state;
    pc_error err = {0};
    assert_int_equal(open_crypt(f, PASS, &f->r, &err), 0);
    assert_int_equal(
        pc_repo_put_all(f->r, "wal/A.zst", "secret payload", 14, PC_REPO_NOREPLACE, &err), 0);
    pc_repo_close(f->r);
    f->r = NULL;
    pc_repo *r = (pc_repo *)1;
    assert_int_equal(open_crypt(f, "correct horse battery stapler", &r, &err), PC_EINVAL);
    assert_null(r);
    char want[256];
    snprintf(want, sizeof want,
             "wrong encryption key for backup repository %s (archiving.encryption.key)", f->dir);
    assert_string_equal(err.msg, want);
    /* the message holds neither passphrase */
    assert_null(strstr(err.msg, "horse"));
    /* nothing readable: the stored object does not hold the payload */
    size_t sn = 0;
    unsigned char *s = read_stored(f, "wal/A.zst", &sn);
    assert_null(memmem(s, sn, "secret", 6));
    free(s);
    /* an empty passphrase is refused */
    memset(&err, 0, sizeof err);
    assert_int_equal(open_crypt(f, "", &r, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "archiving.encryption.key is empty"));
}

/* Objects damaged on disk, or moved to another name, are refused by name. */
static void test_damage_on_disk(void **state)
{
    fx *f = *state;
    pc_error err = {0};
    assert_int_equal(open_crypt(f, PASS, &f->r, &err), 0);
    unsigned char *p = random_bytes(3 * C);
    put_stream(f->r, "backups/B1/base.tar.zst", p, 3 * C);
    put_stream(f->r, "backups/B2/base.tar.zst", p, 3 * C);
    size_t sn = 0;
    unsigned char *s = read_stored(f, "backups/B1/base.tar.zst", &sn);
    /* B2 gets B1's bytes: same plaintext, same keys, another name */
    write_stored(f, "backups/B2/base.tar.zst", s, sn);
    pc_repo_obj *o = NULL;
    assert_int_equal(pc_repo_open(f->r, "backups/B2/base.tar.zst", &o, &err), PC_EIO);
    assert_null(o);
    assert_non_null(strstr(err.msg, "backups/B2/base.tar.zst in backup repository"));
    assert_non_null(strstr(err.msg, "fails authentication"));
    /* a flipped byte in B1's second chunk: the first reads, the second is refused */
    s[PC_CRYPT_HDR + SC + 100] ^= 0x80;
    write_stored(f, "backups/B1/base.tar.zst", s, sn);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_repo_open(f->r, "backups/B1/base.tar.zst", &o, &err), 0);
    char buf[32];
    size_t got = 0;
    assert_int_equal(pc_repo_pread(o, 0, buf, sizeof buf, &got, &err), 0);
    assert_memory_equal(buf, p, sizeof buf);
    assert_int_equal(pc_repo_pread(o, C + 50, buf, sizeof buf, &got, &err), PC_EIO);
    char want[256];
    snprintf(want, sizeof want,
             "backups/B1/base.tar.zst in backup repository %s fails authentication at byte "
             "65536: damaged, or written with another key",
             f->dir);
    assert_string_equal(err.msg, want);
    pc_repo_obj_close(o);
    /* cut to a size no object has: stat says so, list reports 0 */
    write_stored(f, "backups/B1/base.tar.zst", s, sn - SC + 5); /* last chunk: 5 bytes */
    memset(&err, 0, sizeof err);
    pc_repo_entry e;
    assert_int_equal(pc_repo_stat(f->r, "backups/B1/base.tar.zst", &e, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "a size no encrypted object has"));
    listed l = {0};
    assert_int_equal(pc_repo_list(f->r, "backups/", list_cb, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.sizes[0], 0);
    assert_int_equal(l.sizes[1], 3 * C);
    free(s);
    free(p);
}

/* A repository with unencrypted backups is refused and left as it was; one with nothing but
 * leftovers of interrupted writes (dot-names, not objects) gets its marker. */
static void test_unencrypted_refused(void **state)
{
    fx *f = *state;
    pc_error err = {0};
    pc_repo *plain = NULL;
    assert_int_equal(pc_repo_dir_new(f->dir, &plain, &err), 0);
    assert_int_equal(pc_repo_put_all(plain, "wal/000000010000000000000001.zst", "plain", 5,
                                     PC_REPO_NOREPLACE, &err),
                     0);
    pc_repo_close(plain);
    pc_repo *r = (pc_repo *)1;
    assert_int_equal(open_crypt(f, PASS, &r, &err), PC_EINVAL);
    assert_null(r);
    char want[256];
    snprintf(want, sizeof want,
             "backup repository %s holds unencrypted backups: use a new repository (or remove "
             "archiving.encryption)",
             f->dir);
    assert_string_equal(err.msg, want);
    char mpath[128];
    snprintf(mpath, sizeof mpath, "%s/pipectl-crypt.json", f->dir);
    assert_int_equal(access(mpath, F_OK), -1);
    /* the plain object is still there, untouched */
    size_t sn = 0;
    unsigned char *s = read_stored(f, "wal/000000010000000000000001.zst", &sn);
    assert_int_equal(sn, 5);
    assert_memory_equal(s, "plain", 5);
    free(s);

    /* only a leftover of an interrupted write (a dot-name): the repository is empty */
    char path[1024];
    snprintf(path, sizeof path, "%s/wal/000000010000000000000001.zst", f->dir);
    assert_int_equal(remove(path), 0);
    write_stored(f, "wal/.tmp-leftover", (const unsigned char *)"x", 1);
    memset(&err, 0, sizeof err);
    if (open_crypt(f, PASS, &f->r, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(access(mpath, F_OK), 0);
}

static int out_count(void *ctx, const void *data, size_t n, pc_error *err)
{
    (void)data;
    (void)err;
    *(size_t *)ctx += n;
    return 0;
}

static void test_bench(void **state)
{
    (void)state;
    pc_crypt_keys k;
    test_keys(&k, 9);
    size_t n = 64u << 20;
    unsigned char *p = random_bytes(n);
    pc_buf s = {0};
    pc_error err = {0};
    /* sealed into memory once, then timed: sealed into a sink that only counts */
    seal(&k, "bench", p, n, &s);
    assert_int_equal(s.len, pc_crypt_stored_size(n));
    size_t counted = 0;
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pc_crypt_writer *w = NULL;
    assert_int_equal(pc_crypt_writer_new(&k, "bench", out_count, &counted, &w, &err), 0);
    for (size_t off = 0; off < n; off += 1 << 20)
        assert_int_equal(pc_crypt_writer_write(w, p + off, 1 << 20, &err), 0);
    assert_int_equal(pc_crypt_writer_finish(w, &err), 0);
    pc_crypt_writer_free(w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(counted, s.len);
    mem_in m = {.p = (unsigned char *)s.data, .n = s.len};
    pc_crypt_reader *r = NULL;
    assert_int_equal(pc_crypt_reader_new(&k, "bench", "/repo", s.len, in_mem, &m, &r, &err), 0);
    unsigned char *back = malloc(n);
    assert_non_null(back);
    for (size_t off = 0; off < n; off += 1 << 20) {
        size_t got = 0;
        if (pc_crypt_reader_pread(r, off, back + off, 1 << 20, &got, &err) != 0 || got != 1 << 20)
            fail_msg("read at %zu: %s", off, err.msg);
    }
    pc_crypt_reader_free(r);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    assert_true(memcmp(back, p, n) == 0);
    double e = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double d = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    printf("crypt throughput over %zu MiB in memory: encrypt %.0f MB/s, decrypt %.0f MB/s\n",
           n >> 20, (double)n / 1e6 / e, (double)n / 1e6 / d);
    pc_crypt_kdf kdf;
    pc_crypt_kdf_default(&kdf);
    pc_crypt_keys kk;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pc_crypt_derive(PASS, &kdf, &kk, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("scrypt N=2^15 r=8 p=1: %.0f ms\n",
           ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9) * 1e3);
    free(back);
    free(p);
    pc_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_random_access),
        cmocka_unit_test(test_kdf_and_marker),
        cmocka_unit_test_setup_teardown(test_repo_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_plaintext_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unencrypted_refused, setup, teardown),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
