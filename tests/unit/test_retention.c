/* test_retention.c: which backups retention keeps (pure), and `backup expire` on a repository
 * built in a temporary directory (no server): backups removed, exactly the WAL older than the
 * oldest kept backup's start_wal removed, by segment number across timelines, .history kept,
 * incomplete and dot directories ignored by list, the lock honoured; a damaged pipectl.json
 * skipped and reported by name (never counted, never removed, never a reason to stop), stale
 * wal-push temporary files removed and nothing else; an empty backups/ (qsort of a NULL list:
 * UBSan aborts this test in the sanitized build when that comes back). */
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
#include <sys/time.h>
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
    pc_repo *rp; /* the directory repository at dir */
} repo;

static pc_repo *open_repo(const char *dir)
{
    pc_repo_config cfg = {.uri = dir};
    pc_repo *r = NULL;
    pc_error err = {0};
    if (pc_repo_open_config(&cfg, &r, &err) != 0)
        fail_msg("open %s: %s", dir, err.msg);
    return r;
}

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

/* A backup directory id whose pipectl.json says json_id (the same but in one test). */
static void add_backup_as(const repo *r, const char *id, const char *json_id, int64_t start,
                          const char *start_wal, const char *stop_wal, bool complete)
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
            json_id, st, et, start_wal, stop_wal);
    fclose(f);
}

static void add_backup(const repo *r, const char *id, int64_t start, const char *start_wal,
                       const char *stop_wal, bool complete)
{
    add_backup_as(r, id, id, start, start_wal, stop_wal, complete);
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
    r->rp = open_repo(r->dir);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    repo *r = *state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    int rc = system(cmd);
    pc_repo_close(r->rp);
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
    assert_int_equal(pc_backup_list(r->rp, &list, &n, &err), 0);
    assert_int_equal(n, 3); /* the partial and the dot directory are not backups */
    assert_string_equal(list[0].id, "20270101T000000Z");
    assert_string_equal(list[2].id, "20270103T000000Z");
    assert_string_equal(list[1].start_wal, "000000020000000000000010");
    assert_int_equal(list[0].start_time, now - 3 * DAY);
    assert_int_equal(list[0].stop_time, now - 3 * DAY + 5);
    pc_backup_list_free(list, n);

    pc_expire_result res = {0};
    assert_int_equal(pc_backup_expire(r->rp, 2, 0, now, &res, &err), 0);
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
    assert_int_equal(pc_backup_expire(r->rp, 2, 0, now, &res, &err), 0);
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
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, 3000, &res, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, "another backup or expire is running on"));
    assert_true(exists(r, "backups/20270101T000000Z/pipectl.json"));
    close(fd);
    pc_error_clear(&err);
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, 3000, &res, &err), 0);
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
    assert_int_equal(pc_backup_list(r->rp, &list, &n, &err), 0); /* no backups/ yet */
    assert_int_equal(n, 0);
    pc_backup_list_free(list, n);
    char p[1024];
    snprintf(p, sizeof p, "%s/nope", r->dir);
    pc_repo *missing = open_repo(p);
    assert_int_equal(pc_backup_list(missing, &list, &n, &err), PC_EUNAVAIL);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "does not exist"));
    pc_repo_close(missing);

    /* backups/ exists but is empty: nothing to sort (qsort(NULL, 0, ...) is undefined) */
    pc_error_clear(&err);
    mkpath(r, "backups");
    pc_backup_damaged *bad = NULL;
    size_t nbad = 9;
    assert_int_equal(pc_backup_scan(r->rp, &list, &n, &bad, &nbad, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(nbad, 0);
    pc_backup_list_free(list, n);
    pc_backup_damaged_free(bad, nbad);
    pc_expire_result res = {0};
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, 3000, &res, &err), 0);
    assert_int_equal(res.backups_removed, 0);
    assert_null(res.oldest_wal_kept);
    pc_expire_result_free(&res);
}

static void write_text(const repo *r, const char *sub, const char *text)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", r->dir, sub);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* One damaged pipectl.json used to make list and expire fail for the whole repository:
 * retention stopped and WAL piled up. Now each damaged backup is skipped and named, and the
 * readable ones are listed and expired as if it were not there. */
static void test_damaged_backups_skipped(void **state)
{
    repo *r = *state;
    mkpath(r, "backups");
    mkpath(r, "wal");
    const int64_t now = 1800000000;
    add_backup(r, "20270101T000000Z", now - 4 * DAY, "000000010000000000000005",
               "000000010000000000000005", true);
    add_backup(r, "20270102T000000Z", now - 3 * DAY, "000000010000000000000007",
               "000000010000000000000007", true);
    write_text(r, "backups/20270102T000000Z/pipectl.json", ""); /* empty */
    add_backup(r, "20270103T000000Z", now - 2 * DAY, "000000010000000000000009",
               "000000010000000000000009", true);
    write_text(r, "backups/20270103T000000Z/pipectl.json", "{\"format\": 1"); /* cut short */
    /* valid JSON, but the ID is not its directory's (a copied file) */
    add_backup(r, "20270104T000000Z", now - 1 * DAY, "00000001000000000000000B",
               "00000001000000000000000B", true);
    add_backup_as(r, "20270105T000000Z", "20270104T000000Z", now - 1 * DAY,
                  "00000001000000000000000B", "00000001000000000000000B", true);
    char p[1300];
    static const char *const wal[] = {"000000010000000000000004", "000000010000000000000005",
                                      "000000010000000000000006", "000000010000000000000007",
                                      "000000010000000000000009", "00000001000000000000000B",
                                      "00000001000000000000000C"};
    for (size_t i = 0; i < sizeof wal / sizeof wal[0]; i++)
        add_wal(r, wal[i]);

    pc_backup_info *list = NULL;
    pc_backup_damaged *bad = NULL;
    size_t n = 0, nbad = 0;
    pc_error err = {0};
    assert_int_equal(pc_backup_scan(r->rp, &list, &n, &bad, &nbad, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, "20270101T000000Z");
    assert_string_equal(list[1].id, "20270104T000000Z");
    assert_int_equal(nbad, 3);
    assert_string_equal(bad[0].id, "20270102T000000Z");
    assert_string_equal(bad[1].id, "20270103T000000Z");
    assert_string_equal(bad[2].id, "20270105T000000Z");
    for (size_t i = 0; i < nbad; i++) {
        snprintf(p, sizeof p, "backups/%s/pipectl.json", bad[i].id);
        if (strstr(bad[i].problem, p) == NULL || strstr(bad[i].problem, "damaged") == NULL)
            fail_msg("damaged %s: the problem does not name %s: %s", bad[i].id, p, bad[i].problem);
    }
    pc_backup_list_free(list, n);
    pc_backup_damaged_free(bad, nbad);
    pc_backup_damaged_free(NULL, 0);
    /* pc_backup_list: the same readable backups, no error */
    assert_int_equal(pc_backup_list(r->rp, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    pc_backup_list_free(list, n);

    /* keep 2: both readable backups are kept (damaged ones do not count towards the 2), so
     * nothing goes, and the oldest readable backup's WAL stays */
    pc_expire_result res = {0};
    assert_int_equal(pc_backup_expire(r->rp, 2, 0, now, &res, &err), 0);
    assert_int_equal(res.backups_removed, 0);
    assert_int_equal(res.ndamaged, 3);
    assert_string_equal(res.damaged[0].id, "20270102T000000Z");
    assert_string_equal(res.oldest_wal_kept, "000000010000000000000005");
    assert_int_equal(res.wal_removed, 1); /* ...04 only */
    assert_false(exists(r, "wal/000000010000000000000004.zst"));
    assert_true(exists(r, "wal/000000010000000000000005.zst"));
    pc_expire_result_free(&res);

    /* keep 1: the older readable backup goes, and exactly the WAL before the kept one's start;
     * the damaged backups stay untouched */
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, now, &res, &err), 0);
    assert_int_equal(res.backups_removed, 1);
    assert_int_equal(res.ndamaged, 3);
    assert_string_equal(res.oldest_wal_kept, "00000001000000000000000B");
    assert_int_equal(res.wal_removed, 4); /* 05 06 07 09 */
    pc_expire_result_free(&res);
    assert_false(exists(r, "backups/20270101T000000Z"));
    assert_true(exists(r, "backups/20270104T000000Z/pipectl.json"));
    assert_true(exists(r, "backups/20270102T000000Z/pipectl.json"));
    assert_true(exists(r, "backups/20270102T000000Z/base.tar.zst"));
    assert_true(exists(r, "backups/20270103T000000Z/pipectl.json"));
    assert_true(exists(r, "backups/20270105T000000Z/pipectl.json"));
    assert_true(exists(r, "wal/00000001000000000000000B.zst"));
    assert_true(exists(r, "wal/00000001000000000000000C.zst"));
}

static void set_mtime(const repo *r, const char *sub, time_t t)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", r->dir, sub);
    struct timeval tv[2] = {{.tv_sec = t}, {.tv_sec = t}};
    assert_int_equal(utimes(p, tv), 0);
}

/* wal-push writes REPO/wal/.NAME.zst.tmp-XXXXXX (any write to a directory repository writes
 * .NAME.tmp-XXXXXX first); one killed mid-way leaves it behind, and expire removes it once it
 * is PC_WAL_TMP_STALE_S old, also in a repository without backups. Younger ones (a put in
 * progress) and anything not named exactly so stay. */
static void test_expire_removes_stale_push_tmp(void **state)
{
    repo *r = *state;
    mkpath(r, "wal");
    const int64_t now = (int64_t)time(NULL);
    const time_t old = (time_t)(now - PC_WAL_TMP_STALE_S - 60);
    static const char *const stale[] = {".000000010000000000000005.zst.tmp-AbC123",
                                        ".00000002.history.zst.tmp-q9Z0aa",
                                        ".000000010000000000000005.partial.zst.tmp-000000"};
    static const char *const kept[] = {
        ".000000010000000000000005.zst.tmp-abc",    /* not mkstemp's 6 characters */
        ".000000010000000000000005.zst.tmp-abc-12", /* nor this */
        ".foo.zst.tmp-abcdef",                      /* not a WAL name */
        ".000000010000000000000005.tmp-abcdef",     /* no .zst */
        "000000010000000000000005.zst.tmp-abcdef",  /* no leading dot */
        ".tmp-abcdef",                              /* no name at all */
    };
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        char sub[200];
        snprintf(sub, sizeof sub, "wal/%s", stale[i]);
        write_text(r, sub, "x");
        set_mtime(r, sub, old);
    }
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char sub[200];
        snprintf(sub, sizeof sub, "wal/%s", kept[i]);
        write_text(r, sub, "x");
        set_mtime(r, sub, old);
    }
    mkpath(r, "wal/.000000010000000000000006.zst.tmp-dirdir"); /* a directory: not ours */
    set_mtime(r, "wal/.000000010000000000000006.zst.tmp-dirdir", old);
    /* a push in progress: young */
    write_text(r, "wal/.000000010000000000000007.zst.tmp-Young1", "x");
    set_mtime(r, "wal/.000000010000000000000007.zst.tmp-Young1",
              (time_t)(now - PC_WAL_TMP_STALE_S + 120));

    pc_expire_result res = {0};
    pc_error err = {0};
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, now, &res, &err), 0);
    assert_int_equal(res.tmp_removed, sizeof stale / sizeof stale[0]);
    assert_int_equal(res.backups_removed, 0);
    assert_int_equal(res.wal_removed, 0);
    pc_expire_result_free(&res);
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        char sub[200];
        snprintf(sub, sizeof sub, "wal/%s", stale[i]);
        if (exists(r, sub))
            fail_msg("stale %s was not removed", stale[i]);
    }
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char sub[200];
        snprintf(sub, sizeof sub, "wal/%s", kept[i]);
        if (!exists(r, sub))
            fail_msg("%s is not a wal-push temporary file but was removed", kept[i]);
    }
    assert_true(exists(r, "wal/.000000010000000000000006.zst.tmp-dirdir"));
    assert_true(exists(r, "wal/.000000010000000000000007.zst.tmp-Young1"));
    /* again: nothing more */
    assert_int_equal(pc_backup_expire(r->rp, 1, 0, now, &res, &err), 0);
    assert_int_equal(res.tmp_removed, 0);
    pc_expire_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retention_table),
        cmocka_unit_test_setup_teardown(test_expire_removes_exactly_unneeded_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_empty_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_backups_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_removes_stale_push_tmp, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
