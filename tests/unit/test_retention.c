/* test_retention.c: which backups retention keeps (pure), and `backup expire` on a repository
 * built in a temporary directory (no server): backups removed, exactly the WAL older than the
 * oldest kept backup's start_wal removed, by segment number across timelines, .history kept,
 * incomplete and dot directories ignored by list, the lock honoured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"

#define DAY 86400

/* ---------- pc_backup_retention ---------- */

typedef struct rcase {
    const char *what;
    int n;
    int64_t age_days[8]; /* of each backup at now, oldest first */
    int keep_full;
    int keep_days;
    const char *want; /* "1" kept / "0" removed per backup */
} rcase;

static const rcase rcases[] = {
    {"no limits keep all", 3, {30, 20, 10}, 0, 0, "111"},
    {"keep 2 of 4", 4, {40, 30, 20, 10}, 2, 0, "0011"},
    {"keep 5 of 3", 3, {40, 30, 20}, 5, 0, "111"},
    {"keep 1", 3, {3, 2, 1}, 1, 0, "001"},
    {"window 15 days", 4, {40, 30, 14, 1}, 0, 15, "0011"},
    {"window excludes all: newest still kept", 3, {40, 30, 20}, 0, 7, "001"},
    {"window is exclusive at its edge", 3, {8, 7, 1}, 0, 7, "001"},
    {"count or window, whichever keeps more (window)", 4, {40, 10, 5, 1}, 1, 15, "0111"},
    {"count or window, whichever keeps more (count)", 4, {40, 30, 20, 10}, 3, 15, "0111"},
    {"single backup", 1, {400}, 1, 1, "1"},
};

static void test_retention_table(void **state)
{
    (void)state;
    const int64_t now = 1800000000;
    for (size_t c = 0; c < sizeof rcases / sizeof rcases[0]; c++) {
        const rcase *r = &rcases[c];
        pc_backup_info list[8];
        bool keep[8];
        memset(list, 0, sizeof list);
        for (int i = 0; i < r->n; i++) {
            list[i].start_time = now - r->age_days[i] * DAY;
            keep[i] = !(i & 1); /* garbage: must be overwritten */
        }
        pc_backup_retention(list, (size_t)r->n, r->keep_full, r->keep_days, now, keep);
        char got[9] = {0};
        for (int i = 0; i < r->n; i++)
            got[i] = keep[i] ? '1' : '0';
        if (strcmp(got, r->want) != 0)
            fail_msg("%s: kept %s, want %s", r->what, got, r->want);
    }
    pc_backup_retention(NULL, 0, 2, 0, now, NULL); /* nothing to do, nothing touched */
}

/* ---------- a repository on disk ---------- */

typedef struct repo {
    char dir[200];
} repo;

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    close(fd);
}

static void mkpath(const repo *r, const char *sub)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", r->dir, sub);
    assert_int_equal(mkdir(p, 0750), 0);
}

static bool exists(const repo *r, const char *sub)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", r->dir, sub);
    return access(p, F_OK) == 0;
}

static void add_backup(const repo *r, const char *id, int64_t start, const char *start_wal,
                       const char *stop_wal, bool complete)
{
    char p[1024];
    snprintf(p, sizeof p, "backups/%s", id);
    mkpath(r, p);
    snprintf(p, sizeof p, "%s/backups/%s/base.tar.zst", r->dir, id);
    touch(p);
    if (!complete)
        return;
    snprintf(p, sizeof p, "%s/backups/%s/pipectl.json", r->dir, id);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    char st[32], et[32];
    time_t t0 = (time_t)start, t1 = (time_t)(start + 5);
    strftime(st, sizeof st, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t0));
    strftime(et, sizeof et, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t1));
    fprintf(f,
            "{\"format\": 1, \"id\": \"%s\", \"label\": \"t\", \"start_lsn\": \"0/1000028\", "
            "\"stop_lsn\": \"0/1000100\", \"start_time\": \"%s\", \"stop_time\": \"%s\", "
            "\"timeline\": 1, \"start_wal\": \"%s\", \"stop_wal\": \"%s\", \"db_bytes\": 100, "
            "\"stored_bytes\": 10, \"compression\": \"zstd\", \"files\": {}, \"pg_version\": "
            "150000, \"system_identifier\": \"1\"}\n",
            id, st, et, start_wal, stop_wal);
    fclose(f);
}

static void add_wal(const repo *r, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/wal/%s.zst", r->dir, name);
    touch(p);
}

static int setup(void **state)
{
    repo *r = calloc(1, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/pc-retention.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(r->dir) == NULL)
        return -1;
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    repo *r = *state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    int rc = system(cmd);
    free(r);
    return rc == 0 ? 0 : -1;
}

/* Backups across a timeline switch: the oldest kept one (B2) starts on timeline 2 at segment
 * 0x10. A name comparison would keep 00000003...0A (greater string) and drop nothing right;
 * the segment number comparison removes it and keeps 00000001...10 (same position). */
static void test_expire_removes_exactly_unneeded_wal(void **state)
{
    repo *r = *state;
    mkpath(r, "backups");
    mkpath(r, "wal");
    const int64_t now = 1800000000;
    add_backup(r, "20270101T000000Z", now - 3 * DAY, "000000010000000000000005",
               "000000010000000000000005", true);
    add_backup(r, "20270102T000000Z", now - 2 * DAY, "000000020000000000000010",
               "000000020000000000000011", true);
    add_backup(r, "20270103T000000Z", now - 1 * DAY, "000000020000000100000002",
               "000000020000000100000002", true);
    add_backup(r, "20270104T000000Z", now, "000000020000000100000003", "", false); /* partial */
    mkpath(r, "backups/.expire-20260101T000000Z"); /* a crashed expire's leftover */
    mkpath(r, "backups/not-a-backup");             /* not named like a backup: left alone */
    mkpath(r, "backups/not-a-backup/keep");

    static const char *const gone[] = {
        "000000010000000000000005",
        "00000001000000000000000F",
        "000000010000000000000005.00000028.backup",
        "00000002000000000000000F.partial",
        "00000003000000000000000A",
    };
    static const char *const kept[] = {
        "00000002.history",         "00000003.history",
        "000000010000000000000010", /* same position as the start on another timeline */
        "000000020000000000000010", "000000020000000000000010.00000028.backup",
        "000000020000000000000011", "0000000200000000000000FF",
        "000000020000000100000000", "000000020000000100000002.partial",
    };
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        add_wal(r, gone[i]);
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        add_wal(r, kept[i]);
    char p[1024];
    snprintf(p, sizeof p, "%s/wal/.00000001000000000000000F.zst.tmp-abc", r->dir);
    touch(p); /* a push in progress: not ours to touch */
    snprintf(p, sizeof p, "%s/wal/README", r->dir);
    touch(p);

    pc_backup_info *list = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_backup_list(r->dir, &list, &n, &err), 0);
    assert_int_equal(n, 3); /* the partial and the dot directory are not backups */
    assert_string_equal(list[0].id, "20270101T000000Z");
    assert_string_equal(list[2].id, "20270103T000000Z");
    assert_string_equal(list[1].start_wal, "000000020000000000000010");
    assert_int_equal(list[0].start_time, now - 3 * DAY);
    assert_int_equal(list[0].stop_time, now - 3 * DAY + 5);
    pc_backup_list_free(list, n);

    pc_expire_result res = {0};
    assert_int_equal(pc_backup_expire(r->dir, 2, 0, now, &res, &err), 0);
    assert_int_equal(res.backups_removed, 1);
    assert_int_equal(res.wal_removed, sizeof gone / sizeof gone[0]);
    assert_string_equal(res.oldest_wal_kept, "000000020000000000000010");
    pc_expire_result_free(&res);
    pc_expire_result_free(NULL);

    assert_false(exists(r, "backups/20270101T000000Z"));
    assert_false(exists(r, "backups/.expire-20270101T000000Z"));
    assert_false(exists(r, "backups/.expire-20260101T000000Z"));
    assert_true(exists(r, "backups/20270102T000000Z/pipectl.json"));
    assert_true(exists(r, "backups/20270103T000000Z/pipectl.json"));
    /* an incomplete backup (no pipectl.json) is a killed create's leftover: expire holds the
     * lock, so no create is writing it */
    assert_false(exists(r, "backups/20270104T000000Z"));
    assert_true(exists(r, "backups/not-a-backup/keep"));
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        snprintf(p, sizeof p, "wal/%s.zst", gone[i]);
        if (exists(r, p))
            fail_msg("%s should have been expired", gone[i]);
    }
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        snprintf(p, sizeof p, "wal/%s.zst", kept[i]);
        if (!exists(r, p))
            fail_msg("%s was removed but a kept backup needs it", kept[i]);
    }
    assert_true(exists(r, "wal/.00000001000000000000000F.zst.tmp-abc"));
    assert_true(exists(r, "wal/README"));

    /* Again: nothing more to do. */
    assert_int_equal(pc_backup_expire(r->dir, 2, 0, now, &res, &err), 0);
    assert_int_equal(res.backups_removed, 0);
    assert_int_equal(res.wal_removed, 0);
    pc_expire_result_free(&res);
}

static void test_expire_locked(void **state)
{
    repo *r = *state;
    mkpath(r, "backups");
    add_backup(r, "20270101T000000Z", 1000, "000000010000000000000005", "000000010000000000000005",
               true);
    add_backup(r, "20270102T000000Z", 2000, "000000010000000000000007", "000000010000000000000007",
               true);
    char p[1024];
    snprintf(p, sizeof p, "%s/backups/.lock", r->dir);
    int fd = open(p, O_RDWR | O_CREAT, 0640);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    pc_expire_result res = {0};
    pc_error err = {0};
    assert_int_equal(pc_backup_expire(r->dir, 1, 0, 3000, &res, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "another backup or expire is running on"));
    assert_true(exists(r, "backups/20270101T000000Z/pipectl.json"));
    close(fd);
    pc_error_clear(&err);
    assert_int_equal(pc_backup_expire(r->dir, 1, 0, 3000, &res, &err), 0);
    assert_int_equal(res.backups_removed, 1);
    assert_int_equal(res.wal_removed, 0); /* no wal directory at all */
    pc_expire_result_free(&res);
}

static void test_list_empty_and_missing(void **state)
{
    repo *r = *state;
    pc_backup_info *list = NULL;
    size_t n = 7;
    pc_error err = {0};
    assert_int_equal(pc_backup_list(r->dir, &list, &n, &err), 0); /* no backups/ yet */
    assert_int_equal(n, 0);
    pc_backup_list_free(list, n);
    char p[1024];
    snprintf(p, sizeof p, "%s/nope", r->dir);
    assert_int_equal(pc_backup_list(p, &list, &n, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, p));

    /* A damaged pipectl.json is an error naming the file, not a silently missing backup. */
    pc_error_clear(&err);
    mkpath(r, "backups");
    mkpath(r, "backups/20270101T000000Z");
    snprintf(p, sizeof p, "%s/backups/20270101T000000Z/pipectl.json", r->dir);
    FILE *f = fopen(p, "w");
    fputs("{\"format\": 1", f);
    fclose(f);
    assert_int_equal(pc_backup_list(r->dir, &list, &n, &err), PC_EIO);
    assert_non_null(strstr(err.msg, p));
    /* expire refuses to act on a repository it cannot read completely */
    pc_expire_result res = {0};
    pc_error_clear(&err);
    assert_int_equal(pc_backup_expire(r->dir, 1, 0, 3000, &res, &err), PC_EIO);
    pc_expire_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retention_table),
        cmocka_unit_test_setup_teardown(test_expire_removes_exactly_unneeded_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_empty_and_missing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
