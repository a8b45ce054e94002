/* test_wal.c: WAL file name validation and the wal-push / wal-fetch round trip on a temporary
 * directory (files only, no server): identical re-push, conflicting re-push, missing names,
 * corrupt copies, damaged trailers, repair; sources that are not WAL files (/dev/zero, a FIFO,
 * a file larger than 1 GiB or than the segment size its first page states) refused at once,
 * leaving nothing in the repository.
 *
 * Needs pc_backup on the unit tests' link line (tests/CMakeLists.txt); until then this file
 * compiles to a single skipped test rather than breaking the unit build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#if __has_include("backup.h")

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "backup_int.h"
#include "manifest.h"
#include <stdbool.h>

static const char *const good_names[] = {
    "000000010000000000000001",
    "00000001000000A2000000FF",
    "000000010000000000000001.partial",
    "00000002.history",
    "000000010000000000000002.00000028.backup",
};

static const char *const bad_names[] = {
    "",
    "00000001000000000000001",   /* 23 */
    "0000000100000000000000011", /* 25 */
    "00000001000000000000000a",  /* lower case: PostgreSQL never names files so */
    "../00000001000000000000001",
    "000000010000000000000001/",
    "/etc/passwd",
    "..",
    "00000002.History",
    "0000002.history",
    "000000010000000000000001.partial.zst",
    "000000010000000000000001.backup",
    "000000010000000000000002.0000002G.backup",
    "000000010000000000000001.zst",
    "RECOVERYXLOG",
    "000000010000000000000001\n",
    "000000010000000000000001 ",
};

static void test_name_check(void **state)
{
    (void)state;
    pc_wal_kind kinds[] = {PC_WAL_SEGMENT, PC_WAL_SEGMENT, PC_WAL_PARTIAL, PC_WAL_HISTORY,
                           PC_WAL_BACKUP};
    for (size_t i = 0; i < sizeof good_names / sizeof good_names[0]; i++) {
        pc_error err = {0};
        pc_wal_kind k = PC_WAL_SEGMENT;
        assert_int_equal(pc_wal_name_check(good_names[i], &k, &err), 0);
        assert_int_equal(k, kinds[i]);
    }
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        pc_error err = {0};
        assert_int_equal(pc_wal_name_check(bad_names[i], NULL, &err), PC_EINVAL);
        assert_non_null(strstr(err.msg, "is not a WAL file name"));
        assert_null(strchr(err.msg, '\n'));
        assert_null(pc_wal_key(bad_names[i]));
    }
    pc_error err = {0};
    assert_int_equal(pc_wal_name_check(NULL, NULL, &err), PC_EINVAL);
    char *p = pc_wal_key("00000002.history");
    assert_string_equal(p, "wal/00000002.history.zst");
    free(p);
}

typedef struct fixture {
    char dir[64];
    char repo[128];
    char seg[128];
    char other[128];
    char out[128];
    pc_repo *r; /* the directory repository at repo */
} fixture;

/* The file that holds name's archived copy in the directory repository. */
static char *stored_path(const fixture *fx, const char *name)
{
    char *key = pc_wal_key(name);
    char *p = key != NULL ? pc_asprintf("%s/%s", fx->repo, key) : NULL;
    free(key);
    return p;
}

/* A repository handle for a directory (opening does not look at it). */
static pc_repo *open_repo(const char *dir)
{
    pc_repo_config cfg = {.uri = dir};
    pc_repo *r = NULL;
    pc_error err = {0};
    if (pc_repo_open_config(&cfg, &r, &err) != 0)
        fail_msg("open %s: %s", dir, err.msg);
    return r;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/pc-test-wal.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->repo, sizeof fx->repo, "%s/repo", fx->dir);
    snprintf(fx->seg, sizeof fx->seg, "%s/seg", fx->dir);
    snprintf(fx->other, sizeof fx->other, "%s/other", fx->dir);
    snprintf(fx->out, sizeof fx->out, "%s/out", fx->dir);
    assert_int_equal(mkdir(fx->repo, 0755), 0);
    /* A WAL-like file: mostly zeros with some varied records, 1 MiB. */
    size_t n = 1 << 20;
    unsigned char *buf = calloc(1, n);
    assert_non_null(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < 200000; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    write_file(fx->seg, buf, n);
    buf[777] ^= 1;
    write_file(fx->other, buf, n);
    free(buf);
    fx->r = open_repo(fx->repo);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    pc_repo_close(fx->r);
    free(fx);
    return 0;
}

static const char *SEG = "000000010000000000000007";

static void test_roundtrip(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    pc_wal_push_result res = PC_WAL_ALREADY;
    pc_wal_info info;
    assert_int_equal(pc_wal_push(fx->r, fx->seg, SEG, &res, &info, &err), 0);
    assert_int_equal(res, PC_WAL_PUSHED);
    assert_int_equal(info.size, 1 << 20);
    assert_true(info.stored_size < info.size);

    char *stored = stored_path(fx, SEG);
    struct stat st;
    assert_int_equal(stat(stored, &st), 0);
    assert_int_equal((uint64_t)st.st_size, info.stored_size);

    pc_wal_info v;
    assert_int_equal(pc_wal_verify(fx->r, SEG, &v, &err), 0);
    assert_string_equal(v.sha256, info.sha256);
    assert_int_equal(pc_wal_stat(fx->r, SEG, &v, &err), 0);
    assert_string_equal(v.sha256, info.sha256);

    assert_int_equal(pc_wal_fetch(fx->r, SEG, fx->out, NULL, &err), 0);
    size_t a_len = 0, b_len = 0;
    char *a = read_file(fx->seg, &a_len);
    char *b = read_file(fx->out, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    free(a);
    free(b);

    /* identical re-push: success, nothing rewritten */
    assert_int_equal(pc_wal_push(fx->r, fx->seg, SEG, &res, NULL, &err), 0);
    assert_int_equal(res, PC_WAL_ALREADY);

    /* different content under the same name: refused, archived copy unchanged */
    size_t before_len = 0, after_len = 0;
    char *before = read_file(stored, &before_len);
    assert_int_equal(pc_wal_push(fx->r, fx->other, SEG, &res, NULL, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "is already archived in"));
    assert_non_null(strstr(err.msg, info.sha256));
    assert_non_null(strstr(err.msg, "restored clone"));
    char *after = read_file(stored, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);

    /* a .history file is small and round-trips too */
    const char hist[] = "1\t0/3000000\tno recovery target specified\n";
    char hpath[160];
    snprintf(hpath, sizeof hpath, "%s/h", fx->dir);
    write_file(hpath, hist, sizeof hist - 1);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, hpath, "00000002.history", &res, NULL, &err), 0);
    assert_int_equal(pc_wal_fetch(fx->r, "00000002.history", fx->out, &info, &err), 0);
    a = read_file(fx->out, &a_len);
    assert_int_equal(a_len, sizeof hist - 1);
    assert_memory_equal(a, hist, a_len);
    free(a);
    free(stored);
}

static void test_fetch_missing_and_bad(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    assert_int_equal(pc_wal_fetch(fx->r, "00000001000000000000000A", fx->out, NULL, &err),
                     PC_ENOTFOUND);
    pc_error_clear(&err);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nope", fx->dir);
    pc_repo *mr = open_repo(missing);
    assert_int_equal(pc_wal_fetch(mr, SEG, fx->out, NULL, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, missing));
    pc_error_clear(&err);
    /* not PC_ENOTFOUND: that would tell recovery "no such segment" */
    assert_int_equal(pc_wal_push(mr, fx->seg, SEG, NULL, NULL, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, missing));
    assert_non_null(strstr(err.msg, "does not exist: create it"));
    assert_int_equal(access(missing, F_OK), -1); /* not created */
    pc_repo_close(mr);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, fx->seg, "../escape", NULL, NULL, &err), PC_EINVAL);
    pc_error_clear(&err);
    char nofile[160];
    snprintf(nofile, sizeof nofile, "%s/no-such-wal", fx->dir);
    assert_int_equal(pc_wal_push(fx->r, nofile, SEG, NULL, NULL, &err), PC_ENOTFOUND);
    assert_int_equal(access(fx->out, F_OK), -1); /* nothing written on failure */
}

/* Flips one byte at offset (negative: from the end) of the archived copy. */
static void flip(const char *path, long offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    off_t at = offset >= 0 ? offset : size + offset;
    unsigned char c = 0;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void test_corruption(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    pc_wal_push_result res = PC_WAL_PUSHED;
    assert_int_equal(pc_wal_push(fx->r, fx->seg, SEG, NULL, NULL, &err), 0);
    char *stored = stored_path(fx, SEG);
    struct stat st;
    assert_int_equal(stat(stored, &st), 0);

    /* a byte in the middle of the compressed stream */
    flip(stored, st.st_size / 2);
    assert_int_equal(pc_wal_fetch(fx->r, SEG, fx->out, NULL, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "corrupt"));
    assert_int_equal(access(fx->out, F_OK), -1);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_verify(fx->r, SEG, NULL, &err), PC_EIO);

    /* re-push of the same content repairs a copy whose trailer still matches */
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, fx->seg, SEG, &res, NULL, &err), 0);
    assert_int_equal(res, PC_WAL_REPAIRED);
    assert_int_equal(pc_wal_verify(fx->r, SEG, NULL, &err), 0);

    /* the recorded checksum itself */
    flip(stored, -40);
    assert_int_equal(pc_wal_fetch(fx->r, SEG, fx->out, NULL, &err), PC_EIO);
    pc_error_clear(&err);
    /* an unreadable trailer is never overwritten, even by a push */
    assert_int_equal(pc_wal_push(fx->r, fx->seg, SEG, NULL, NULL, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "not overwritten"));

    /* the zstd magic */
    flip(stored, -40); /* restore the trailer */
    flip(stored, 0);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_fetch(fx->r, SEG, fx->out, NULL, &err), PC_EIO);

    /* truncated */
    assert_int_equal(truncate(stored, 10), 0);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_fetch(fx->r, SEG, fx->out, NULL, &err), PC_EIO);
    assert_non_null(strstr(err.msg, "too short"));
    free(stored);
}

/* Entries of REPO/wal (dot files included), for "nothing was left behind". */
static size_t wal_entries(const fixture *fx, char *first, size_t cap)
{
    char d[200];
    snprintf(d, sizeof d, "%s/wal", fx->repo);
    DIR *dir = opendir(d);
    if (dir == NULL)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n++ == 0 && first != NULL)
            snprintf(first, cap, "%s", de->d_name);
    }
    closedir(dir);
    return n;
}

static void assert_nothing_stored(const fixture *fx, const char *what)
{
    char first[256] = "";
    size_t n = wal_entries(fx, first, sizeof first);
    if (n != 0)
        fail_msg("%s: %zu file(s) left in %s/wal, e.g. %s", what, n, fx->repo, first);
}

/* A WAL segment (segment number segno, len bytes) as PostgreSQL writes its start: the first
 * page's long header states the segment size (xlp_seg_size) and the segment's page address. */
static void write_segment(const char *path, uint64_t segno, uint32_t segsize, size_t len)
{
    unsigned char *buf = calloc(1, len);
    assert_non_null(buf);
    uint16_t magic = 0xD110, info = 0x0002;
    uint32_t tli = 1, blcksz = 8192;
    uint64_t pageaddr = segno * segsize, sysid = 7;
    memcpy(buf, &magic, 2);
    memcpy(buf + 2, &info, 2);
    memcpy(buf + 4, &tli, 4);
    memcpy(buf + 8, &pageaddr, 8);
    memcpy(buf + 24, &sysid, 8);
    memcpy(buf + 32, &segsize, 4);
    memcpy(buf + 36, &blcksz, 4);
    for (size_t i = 64; i < len && i < 50000; i++)
        buf[i] = (unsigned char)(i * 31);
    write_file(path, buf, len);
    free(buf);
}

/* wal-push of an endless or oversized source used to read until killed, leaving its .tmp
 * file; now what it reads is bounded and such sources are refused before anything is written.
 * The alarm turns a hang back into a failure instead of a stuck test. */
static void test_push_bounded(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    alarm(60);

    /* /dev/zero: endless */
    assert_int_equal(pc_wal_push(fx->r, "/dev/zero", SEG, NULL, NULL, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "/dev/zero is a character device, not a WAL file"));
    assert_nothing_stored(fx, "/dev/zero");

    /* a FIFO nobody writes to: opening it must not wait for a writer */
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", fx->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, fifo, SEG, NULL, NULL, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "is a FIFO, not a WAL file"));
    assert_nothing_stored(fx, "a FIFO");

    /* larger than any WAL file: 1 GiB + 1 (sparse) */
    char big[160];
    snprintf(big, sizeof big, "%s/big", fx->dir);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)(1024LL * 1024 * 1024 + 1)), 0);
    close(fd);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, big, SEG, NULL, NULL, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "1073741825 bytes, more than 1073741824"));
    assert_non_null(strstr(err.msg, "wal_segment_size"));
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, big, "00000002.history", NULL, NULL, &err), PC_EINVAL);
    assert_nothing_stored(fx, "a file over 1 GiB");

    /* a segment whose first page states 1 MiB segments, one byte longer than that */
    char seg[160];
    snprintf(seg, sizeof seg, "%s/seg1m", fx->dir);
    write_segment(seg, 7, 1u << 20, (1u << 20) + 1);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, seg, SEG, NULL, NULL, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "1048577 bytes, more than 1048576"));
    assert_non_null(strstr(err.msg, "the segment size its first page states"));
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push(fx->r, seg, "000000010000000000000007.partial", NULL, NULL, &err),
                     PC_EINVAL);
    assert_nothing_stored(fx, "an oversized segment");

    /* the same segment at its size is archived; so is one whose header does not match its
     * name (not believed: only the 1 GiB bound applies) */
    write_segment(seg, 7, 1u << 20, 1u << 20);
    pc_error_clear(&err);
    pc_wal_info info;
    assert_int_equal(pc_wal_push(fx->r, seg, SEG, NULL, &info, &err), 0);
    assert_int_equal(info.size, 1u << 20);
    write_segment(seg, 9, 1u << 20, (1u << 20) + 1);
    assert_int_equal(pc_wal_push(fx->r, seg, "000000010000000000000008", NULL, &info, &err), 0);
    assert_int_equal(info.size, (1u << 20) + 1);
    char first[256] = "";
    assert_int_equal(wal_entries(fx, first, sizeof first), 2); /* no temporary file */
    alarm(0);
}

/* --- push-ahead (wal-push --parallel) --------------------------------------------------------- */

typedef struct opener {
    const char *dir;
    int opened;
} opener;

static int open_cb(void *ctx, pc_repo **out, pc_error *err)
{
    opener *o = ctx;
    pc_repo_config cfg = {.uri = o->dir};
    o->opened++;
    return pc_repo_open_config(&cfg, out, err);
}

/* <dir>/pg_wal/<pre><name><post> */
static char *pg_file(const fixture *fx, const char *pre, const char *name, const char *post)
{
    return pc_asprintf("%s/pg_wal/%s%s%s", fx->dir, pre, name, post);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Waits until no background pusher holds the spool lock. */
static void wait_pusher(const fixture *fx)
{
    char *lp = pg_file(fx, "pipectl_spool/", "pusher", ".lock");
    int fd = open(lp, O_RDWR);
    if (fd >= 0) {
        assert_int_equal(flock(fd, LOCK_EX), 0);
        close(fd);
    }
    free(lp);
}

static void add_segment(const fixture *fx, const char *name, char tag)
{
    size_t len = 0;
    char *base = read_file(fx->seg, &len);
    base[100] = tag; /* each its own content */
    char *p = pg_file(fx, "", name, "");
    write_file(p, base, len);
    free(p);
    p = pg_file(fx, "archive_status/", name, ".ready");
    write_file(p, "", 0);
    free(p);
    free(base);
}

static void test_push_ahead(void **state)
{
    fixture *fx = *state;
    char seg[10][25];
    char dir[200];
    snprintf(dir, sizeof dir, "%s/pg_wal", fx->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof dir, "%s/pg_wal/archive_status", fx->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 10; i++)
        snprintf(seg[i], sizeof seg[i], "0000000100000000000000%02X", i + 1);
    for (int i = 0; i < 8; i++)
        add_segment(fx, seg[i], (char)i);
    opener op = {.dir = fx->repo};
    pc_wal_push_opts o = {
        .parallel = 4, .repo_id = fx->repo, .open_repo = open_cb, .open_ctx = &op};
    pc_error err = {0};
    pc_wal_push_result res = PC_WAL_PUSHED;
    pc_wal_info info;
    size_t ahead = 0;
    char *path = pg_file(fx, "", seg[0], "");

    /* a marker of a file no longer waiting is removed by the next scan */
    char *stale = pg_file(fx, "pipectl_spool/", "000000010000000000000050", ".ok");
    snprintf(dir, sizeof dir, "%s/pg_wal/pipectl_spool", fx->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(stale, "x", 1);

    /* the call for 01 pushes 01 and hands the 7 others waiting to a background pusher, which
     * records each one it stored in a marker */
    assert_int_equal(pc_wal_push_ahead(path, seg[0], &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(res, PC_WAL_PUSHED);
    assert_int_equal(ahead, 7);
    wait_pusher(fx);
    assert_false(exists(stale));
    free(stale);
    for (int i = 0; i < 8; i++) {
        char *obj = stored_path(fx, seg[i]);
        char *mk = pg_file(fx, "pipectl_spool/", seg[i], ".ok");
        assert_true(exists(obj));
        assert_int_equal(exists(mk), i >= 1);
        /* the archived copy decodes to the file's bytes */
        char *p = pg_file(fx, "", seg[i], "");
        assert_int_equal(pc_wal_fetch(fx->r, seg[i], fx->out, NULL, &err), 0);
        size_t a_len = 0, b_len = 0;
        char *a = read_file(p, &a_len), *b = read_file(fx->out, &b_len);
        assert_int_equal(a_len, b_len);
        assert_memory_equal(a, b, a_len);
        free(a), free(b), free(p);
        free(obj), free(mk);
    }
    /* PostgreSQL notes 01 archived; its call for 02 answers from the marker at once and
     * removes it, without opening the repository */
    char *r1 = pg_file(fx, "archive_status/", seg[0], ".ready");
    char *d1 = pg_file(fx, "archive_status/", seg[0], ".done");
    assert_int_equal(rename(r1, d1), 0);
    free(r1), free(d1);
    free(path);
    path = pg_file(fx, "", seg[1], "");
    op.opened = 0;
    assert_int_equal(pc_wal_push_ahead(path, seg[1], &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(res, PC_WAL_AHEAD);
    assert_int_equal(op.opened, 0);
    char *mk = pg_file(fx, "pipectl_spool/", seg[1], ".ok");
    assert_false(exists(mk));
    free(mk);

    /* a marker that does not match the file (a recycled file, a forged marker) is not believed:
     * the file is pushed normally (09 is not in the repository: the push must store it) */
    add_segment(fx, seg[8], 8);
    free(path);
    path = pg_file(fx, "", seg[8], "");
    mk = pg_file(fx, "pipectl_spool/", seg[8], ".ok");
    char text[512];
    snprintf(text, sizeof text,
             "pipectl-wal-spool 1\nrepository %s\nsha256 %064d\nsize %d\nstored_size 10\n",
             fx->repo, 0, 1 << 20);
    write_file(mk, text, strlen(text));
    o.parallel = 1;
    assert_int_equal(pc_wal_push_ahead(path, seg[8], &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(res, PC_WAL_PUSHED);
    assert_false(exists(mk));
    char *obj = stored_path(fx, seg[8]);
    assert_true(exists(obj));
    free(obj), free(mk);

    /* a marker for another repository is not believed either */
    add_segment(fx, seg[9], 9);
    free(path);
    path = pg_file(fx, "", seg[9], "");
    mk = pg_file(fx, "pipectl_spool/", seg[9], ".ok");
    pc_wal_info real;
    char *tmpr = pc_asprintf("%s/other-repo", fx->dir);
    assert_int_equal(mkdir(tmpr, 0700), 0);
    opener op2 = {.dir = tmpr};
    pc_wal_push_opts o2 = {.parallel = 1, .repo_id = tmpr, .open_repo = open_cb, .open_ctx = &op2};
    assert_int_equal(pc_wal_push_ahead(path, seg[9], &o2, &res, &real, NULL, &err), 0);
    snprintf(text, sizeof text,
             "pipectl-wal-spool 1\nrepository %s\nsha256 %s\nsize %llu\nstored_size %llu\n", tmpr,
             real.sha256, (unsigned long long)real.size, (unsigned long long)real.stored_size);
    write_file(mk, text, strlen(text));
    assert_int_equal(pc_wal_push_ahead(path, seg[9], &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(res, PC_WAL_PUSHED);
    obj = stored_path(fx, seg[9]);
    assert_true(exists(obj));
    free(obj), free(mk), free(tmpr);

    /* a file without archive_status next to it: pushed alone */
    o.parallel = 8;
    assert_int_equal(
        pc_wal_push_ahead(fx->other, "00000001000000000000000F", &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(ahead, 0);
    free(path);

    /* bounds */
    o.parallel = 33;
    assert_int_equal(pc_wal_push_ahead(fx->seg, seg[0], &o, &res, &info, &ahead, &err), PC_EINVAL);
}

static bool file_has(const char *path, const char *needle)
{
    size_t len = 0;
    char *t = read_file(path, &len);
    if (t != NULL)
        t[len] = '\0'; /* read_file leaves room for it */
    bool has = t != NULL && strstr(t, needle) != NULL;
    free(t);
    return has;
}

/* The marker's identity fast path: a file that is still the one the pusher read (same device,
 * inode, size, mtime, ctime) is answered without hashing; any other file is hashed, and one
 * whose bytes changed is never answered from the marker, even with its old mtime put back. */
static void test_push_ahead_identity(void **state)
{
    fixture *fx = *state;
    char seg[5][25];
    char dir[200];
    snprintf(dir, sizeof dir, "%s/pg_wal", fx->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof dir, "%s/pg_wal/archive_status", fx->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(seg[i], sizeof seg[i], "0000000100000000000000%02X", 0x21 + i);
        add_segment(fx, seg[i], (char)(0x40 + i));
    }
    /* an identity is recorded only for a file last changed at least a second before it was
     * read (see pc__src_ident_check in wal_ahead.c) */
    struct timespec pause = {1, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    opener op = {.dir = fx->repo};
    pc_wal_push_opts o = {
        .parallel = 2, .repo_id = fx->repo, .open_repo = open_cb, .open_ctx = &op};
    pc_error err = {0};
    pc_wal_push_result res = PC_WAL_PUSHED;
    pc_wal_info info;
    size_t ahead = 0;
    char *path = pg_file(fx, "", seg[0], "");
    assert_int_equal(pc_wal_push_ahead(path, seg[0], &o, &res, &info, &ahead, &err), 0);
    assert_int_equal(ahead, 4);
    wait_pusher(fx);
    free(path);
    char *mk[5], *pth[5], *orig[5];
    size_t olen[5];
    for (int i = 1; i < 5; i++) {
        mk[i] = pg_file(fx, "pipectl_spool/", seg[i], ".ok");
        pth[i] = pg_file(fx, "", seg[i], "");
        orig[i] = read_file(pth[i], &olen[i]);
        assert_true(file_has(mk[i], "\nsource "));
    }

    /* 1. the same file: answered from its identity, not hashed */
    unsigned long hashed = pc__wal_ahead_hashed;
    op.opened = 0;
    assert_int_equal(pc_wal_push_ahead(pth[1], seg[1], &o, &res, &info, NULL, &err), 0);
    assert_int_equal(res, PC_WAL_AHEAD);
    assert_int_equal(pc__wal_ahead_hashed, hashed);
    assert_int_equal(op.opened, 0);
    assert_false(exists(mk[1]));

    /* 2. rewritten with the same bytes (mtime and ctime change): hashed, and since the bytes
     * are the stored ones, answered */
    write_file(pth[2], orig[2], olen[2]);
    assert_int_equal(pc_wal_push_ahead(pth[2], seg[2], &o, &res, &info, NULL, &err), 0);
    assert_int_equal(res, PC_WAL_AHEAD);
    assert_int_equal(pc__wal_ahead_hashed, hashed + 1);
    assert_int_equal(op.opened, 0);

    /* 3. other bytes of the same size written in place, its old mtime put back (only ctime
     * tells): never answered from the marker; the normal push refuses to overwrite history */
    struct stat st;
    assert_int_equal(stat(pth[3], &st), 0);
    char *changed = malloc(olen[3]);
    memcpy(changed, orig[3], olen[3]);
    changed[200] ^= 0x5a;
    int fd = open(pth[3], O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, changed, olen[3], 0), (ssize_t)olen[3]);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(futimens(fd, times), 0);
    close(fd);
    struct stat st2;
    assert_int_equal(stat(pth[3], &st2), 0);
    assert_int_equal(st2.st_mtim.tv_sec, st.st_mtim.tv_sec);
    assert_int_equal(st2.st_mtim.tv_nsec, st.st_mtim.tv_nsec);
    pc_error_clear(&err);
    assert_int_equal(pc_wal_push_ahead(pth[3], seg[3], &o, &res, &info, NULL, &err), PC_ECONFLICT);
    assert_int_equal(pc__wal_ahead_hashed, hashed + 2);
    assert_int_equal(pc_wal_fetch(fx->r, seg[3], fx->out, NULL, &err), 0);
    size_t f_len = 0;
    char *fetched = read_file(fx->out, &f_len);
    assert_int_equal(f_len, olen[3]);
    assert_memory_equal(fetched, orig[3], f_len); /* the archive still holds what was pushed */
    free(fetched);
    free(changed);

    /* 4. another inode renamed over it (PostgreSQL's recycling), same bytes: hashed */
    char *tmp = pg_file(fx, "", "recycled", ".tmp");
    write_file(tmp, orig[4], olen[4]);
    assert_int_equal(rename(tmp, pth[4]), 0);
    assert_int_equal(pc_wal_push_ahead(pth[4], seg[4], &o, &res, &info, NULL, &err), 0);
    assert_int_equal(res, PC_WAL_AHEAD);
    assert_int_equal(pc__wal_ahead_hashed, hashed + 3);
    free(tmp);

    for (int i = 1; i < 5; i++)
        free(mk[i]), free(pth[i]), free(orig[i]);
}

/* archiving.parallel reaches archive_command (pc_mf_archiving_args) only when above 1 */
static void test_parallel_args(void **state)
{
    (void)state;
    pc_mf_archiving ar = {.repository = "/srv/r", .parallel = 4};
    pc_buf b = {0};
    assert_int_equal(pc_mf_archiving_args(&ar, &b), 0);
    assert_string_equal(b.data, " --repository '/srv/r' --parallel 4");
    pc_buf_free(&b);
    ar.parallel = 1;
    assert_int_equal(pc_mf_archiving_args(&ar, &b), 0);
    assert_string_equal(b.data, " --repository '/srv/r'");
    pc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_check),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_missing_and_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_ahead_identity, setup, teardown),
        cmocka_unit_test(test_parallel_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* pc_backup not linked into the unit tests yet */

static void test_wal_needs_pc_backup(void **state)
{
    (void)state;
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_wal_needs_pc_backup)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
