/* test_verify.c: `backup verify` (pc_backup_verify) on a backup built in a temporary directory,
 * no server: a base.tar with one member, its backup_manifest, pipectl.json recording both
 * files' SHA-256 and the WAL range, and three WAL segments pushed with pc_wal_push.
 *
 * One table row per way a backup can be broken: verify must report it as a problem line naming
 * the file, and call the backup intact only when it found no problem. Rows that verify once
 * called intact: pipectl.json damaged, empty, of another backup, missing; a timeline history
 * file that cannot be read; an empty WAL archive (qsort of a NULL list: UBSan aborts this test
 * in the sanitized build when that comes back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"

#define ID "20270101T000000Z"
#define SEG1 "000000010000000000000001"
#define SEG2 "000000010000000000000002"
#define SEG3 "000000010000000000000003"

typedef struct fx {
    char dir[64];
    char repo[128];
    char bdir[200];
    pc_repo *r; /* the directory repository at repo */
} fx;

/* The file holding name's archived copy in the directory repository. */
static char *wal_file(const fx *f, const char *name)
{
    char *key = pc_wal_key(name);
    char *p = key != NULL ? pc_asprintf("%s/%s", f->repo, key) : NULL;
    free(key);
    return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void file_sha(const char *path, char out[65])
{
    size_t n = 0;
    char *b = slurp(path, &n);
    pc_sha256_hex(b, n, out);
    free(b);
}

static void path_in(const fx *f, const char *sub, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", f->bdir, sub);
}

/* Pushes a 1 MiB WAL-like file (its content varies with seed) as name. */
static void push(const fx *f, const char *name, unsigned seed)
{
    size_t n = 1 << 20;
    unsigned char *buf = calloc(1, n);
    assert_non_null(buf);
    uint32_t x = seed;
    for (size_t i = 0; i < 4096; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    char src[200];
    snprintf(src, sizeof src, "%s/src", f->dir);
    write_file(src, buf, n);
    free(buf);
    pc_error err = {0};
    if (pc_wal_push(f->r, src, name, NULL, NULL, &err) != 0)
        fail_msg("push %s: %s", name, err.msg);
}

static void push_text(const fx *f, const char *name, const char *text)
{
    char src[200];
    snprintf(src, sizeof src, "%s/src", f->dir);
    write_file(src, text, strlen(text));
    pc_error err = {0};
    if (pc_wal_push(f->r, src, name, NULL, NULL, &err) != 0)
        fail_msg("push %s: %s", name, err.msg);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pc-test-verify.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->repo, sizeof f->repo, "%s/repo", f->dir);
    pc_repo_config cfg = {.uri = f->repo};
    pc_error oerr = {0};
    assert_int_equal(pc_repo_open_config(&cfg, &f->r, &oerr), 0);
    snprintf(f->bdir, sizeof f->bdir, "%s/backups/" ID, f->repo);
    char p[300];
    assert_int_equal(mkdir(f->repo, 0755), 0);
    snprintf(p, sizeof p, "%s/backups", f->repo);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(mkdir(f->bdir, 0755), 0);

    /* base.tar: one member, PG_VERSION */
    static const char member[] = "15\n";
    path_in(f, "base.tar", p, sizeof p);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, p), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "PG_VERSION");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_size(e, (la_int64_t)(sizeof member - 1));
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, member, sizeof member - 1),
                     (la_ssize_t)sizeof member - 1);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);

    char msha[65], tsha[65], bsha[65];
    pc_sha256_hex(member, sizeof member - 1, msha);
    char mf[600];
    snprintf(mf, sizeof mf,
             "{\"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"PG_VERSION\", "
             "\"Size\": 3, \"Last-Modified\": \"2027-01-01 00:00:00 GMT\", "
             "\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"%s\"}], \"WAL-Ranges\": "
             "[{\"Timeline\": 1, \"Start-LSN\": \"0/1000028\", \"End-LSN\": \"0/2000100\"}]}\n",
             msha);
    path_in(f, "backup_manifest", p, sizeof p);
    write_file(p, mf, strlen(mf));
    file_sha(p, bsha);
    path_in(f, "base.tar", p, sizeof p);
    file_sha(p, tsha);
    char meta[1200];
    snprintf(meta, sizeof meta,
             "{\"format\": 1, \"id\": \"" ID "\", \"label\": \"t\", \"start_lsn\": \"0/1000028\", "
             "\"stop_lsn\": \"0/2000100\", \"start_time\": \"2027-01-01T00:00:00Z\", "
             "\"stop_time\": \"2027-01-01T00:00:05Z\", \"timeline\": 1, \"start_wal\": \"" SEG1
             "\", \"stop_wal\": \"" SEG2 "\", \"db_bytes\": 3, \"stored_bytes\": 10240, "
             "\"compression\": \"none\", \"files\": {\"base.tar\": \"%s\", \"backup_manifest\": "
             "\"%s\"}, \"pg_version\": 150000, \"system_identifier\": \"1\"}\n",
             tsha, bsha);
    path_in(f, "pipectl.json", p, sizeof p);
    write_file(p, meta, strlen(meta));
    push(f, SEG1, 1);
    push(f, SEG2, 2);
    push(f, SEG3, 3);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    pc_repo_close(f->r);
    free(f);
    return 0;
}

/* ---------- ways to break the backup ---------- */

static void put(const fx *f, const char *sub, const char *text)
{
    char p[300];
    path_in(f, sub, p, sizeof p);
    write_file(p, text, strlen(text));
}

static void rm_in(const fx *f, const char *sub)
{
    char p[300];
    path_in(f, sub, p, sizeof p);
    assert_int_equal(unlink(p), 0);
}

static void rm_wal(const fx *f, const char *name)
{
    char *p = wal_file(f, name);
    assert_int_equal(unlink(p), 0);
    free(p);
}

static void flip_wal(const fx *f, const char *name, long off)
{
    char *p = wal_file(f, name);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c = 0;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
    free(p);
}

static void no_damage(const fx *f)
{
    (void)f;
}
static void meta_empty(const fx *f)
{
    put(f, "pipectl.json", "");
}
static void meta_cut(const fx *f)
{
    put(f, "pipectl.json", "{\"format\": 1, \"id\": \"" ID);
}
static void meta_object(const fx *f)
{
    put(f, "pipectl.json", "{}");
}
static void meta_missing(const fx *f)
{
    rm_in(f, "pipectl.json");
}
static void meta_other_id(const fx *f)
{
    char p[300];
    path_in(f, "pipectl.json", p, sizeof p);
    size_t n = 0;
    char *s = slurp(p, &n);
    char *at = strstr(s, ID);
    assert_non_null(at);
    memcpy(at, "20270202T000000Z", 16); /* a copy of another backup's metadata */
    write_file(p, s, n);
    free(s);
}
static void base_missing(const fx *f)
{
    rm_in(f, "base.tar");
}
static void manifest_damaged(const fx *f)
{
    put(f, "backup_manifest", "not json");
}
static void wal_gap(const fx *f)
{
    rm_wal(f, SEG2);
}
static void wal_empty(const fx *f)
{
    rm_wal(f, SEG1);
    rm_wal(f, SEG2);
    rm_wal(f, SEG3);
}
static void wal_corrupt(const fx *f)
{
    flip_wal(f, SEG2, 200);
}
/* timeline 2 branches off at 0/300000 (segment 3 with 1 MiB segments) */
static void history_ok(const fx *f)
{
    push_text(f, "00000002.history", "1\t0/300000\tno recovery target specified\n");
    push(f, "000000020000000000000003", 4);
}
static void history_corrupt(const fx *f)
{
    history_ok(f);
    flip_wal(f, "00000002.history", 12);
}
static void history_gap(const fx *f)
{
    history_ok(f);
    push(f, "000000020000000000000005", 5); /* 4 is missing on timeline 2 */
}

typedef struct vcase {
    const char *what;
    void (*damage)(const fx *f);
    int rc;              /* 0 intact, PC_EIO problems, other: verify could not run */
    const char *want[3]; /* each must appear in some problem line */
    size_t files_min;    /* at least this many files checked */
    size_t wal;          /* segments checked */
} vcase;

static const vcase cases[] = {
    {"intact", no_damage, 0, {NULL}, 3, 3},
    {"intact, with a later timeline", history_ok, 0, {NULL}, 3, 4},
    {"pipectl.json empty",
     meta_empty,
     PC_EIO,
     {"pipectl.json: ", "/backups/" ID "/pipectl.json is not valid JSON", "cannot be checked"},
     1,
     0},
    {"pipectl.json cut short",
     meta_cut,
     PC_EIO,
     {"pipectl.json: ", "the backup's metadata is damaged", NULL},
     1,
     0},
    {"pipectl.json without fields",
     meta_object,
     PC_EIO,
     {"pipectl.json: ", "records no \"files\" checksums", "no valid start_wal"},
     1,
     0},
    {"pipectl.json of another backup",
     meta_other_id,
     PC_EIO,
     {"pipectl.json: ", "the backup's metadata is damaged", NULL},
     3,
     3},
    {"pipectl.json missing",
     meta_missing,
     PC_EIO,
     {"pipectl.json: ", "is missing: the backup is incomplete", NULL},
     1,
     0},
    {"base tar missing", base_missing, PC_EIO, {"base.tar: missing from", NULL}, 1, 3},
    {"backup_manifest damaged",
     manifest_damaged,
     PC_EIO,
     {"backup_manifest: checksum mismatch", "backup_manifest: unreadable", NULL},
     2,
     3},
    {"WAL segment missing",
     wal_gap,
     PC_EIO,
     {"wal " SEG2 ": missing (gap between " SEG1 " and " SEG3 ")", NULL},
     3,
     2},
    {"WAL archive empty",
     wal_empty,
     PC_EIO,
     {"wal " SEG1 ": missing", "wal " SEG2 ": missing"},
     3,
     0},
    {"WAL segment corrupt", wal_corrupt, PC_EIO, {"wal " SEG2 ": ", "corrupt", NULL}, 3, 3},
    {"history file corrupt",
     history_corrupt,
     PC_EIO,
     {"wal 00000002.history: ", "timeline 2 is not checked", NULL},
     3,
     3},
    {"gap on a later timeline",
     history_gap,
     PC_EIO,
     {"wal 000000020000000000000004: missing", NULL},
     3,
     5},
};

static void test_verify_table(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const vcase *k = &cases[c];
        void *st = NULL;
        assert_int_equal(setup(&st), 0);
        fx *f = st;
        k->damage(f);
        pc_verify_report rep;
        pc_error err = {0};
        int rc = pc_backup_verify(f->r, ID, &rep, &err);
        pc_buf all = {0};
        for (size_t i = 0; i < rep.nproblems; i++)
            pc_buf_printf(&all, "  %s\n", rep.problems[i]);
        const char *lines = all.data != NULL ? all.data : "";
        if (rc != k->rc)
            fail_msg("%s: verify returned %d, want %d (%s)\n%s", k->what, rc, k->rc, err.msg,
                     lines);
        /* never "not intact" without saying why, never "intact" with a problem */
        if ((rc == 0) != (rep.nproblems == 0))
            fail_msg("%s: rc %d with %zu problem(s)", k->what, rc, rep.nproblems);
        for (size_t w = 0; w < 3 && k->want[w] != NULL; w++)
            if (strstr(lines, k->want[w]) == NULL)
                fail_msg("%s: no problem line contains '%s':\n%s", k->what, k->want[w], lines);
        if (rep.files_checked < k->files_min || rep.wal_checked != k->wal)
            fail_msg("%s: %zu file(s) and %zu WAL segment(s) checked, want >= %zu and %zu\n%s",
                     k->what, rep.files_checked, rep.wal_checked, k->files_min, k->wal, lines);
        pc_buf_free(&all);
        pc_verify_report_free(&rep);
        assert_int_equal(teardown(&st), 0);
    }
}

static void test_verify_not_found(void **state)
{
    fx *f = *state;
    pc_verify_report rep;
    pc_error err = {0};
    assert_int_equal(pc_backup_verify(f->r, "20000101T000000Z", &rep, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "backup 20000101T000000Z not found in repository"));
    assert_int_equal(rep.nproblems, 0);
    pc_verify_report_free(&rep);
    pc_error_clear(&err);
    assert_int_equal(pc_backup_verify(f->r, "../x", &rep, &err), PC_EINVAL);
    pc_verify_report_free(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_table),
        cmocka_unit_test_setup_teardown(test_verify_not_found, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
