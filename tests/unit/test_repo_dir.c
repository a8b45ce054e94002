/* test_repo_dir.c: the repo.h contract on a directory repository (repo_dir.c) and the checks
 * repo.c makes before dispatching: a put is invisible until commit, NOREPLACE never replaces,
 * REPLACE does, listings are bytewise sorted, prefix-filtered and never show temporaries,
 * delete is idempotent, two handles exclude each other through the lock, sweep removes only
 * stale temporaries, bad keys are refused, and a failing system call (pc_core_sys) leaves no
 * temporary file and no descriptor. Everything is asserted on the files under the root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "repo.h"

/* ---------- helpers ---------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Names in dir (dot-names too, not . and ..), sorted, joined by ' '. */
static char *listing(const char *dir)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, NULL, alphasort);
    pc_buf b = {0};
    pc_buf_puts(&b, "");
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") != 0 && strcmp(list[i]->d_name, "..") != 0)
            pc_buf_printf(&b, "%s%s", b.len > 0 ? " " : "", list[i]->d_name);
        free(list[i]);
    }
    free(list);
    if (n < 0)
        pc_buf_puts(&b, "(missing)");
    return pc_buf_detach(&b);
}

static void assert_listing(const char *dir, const char *want)
{
    char *got = listing(dir);
    if (strcmp(got, want) != 0)
        fail_msg("%s holds \"%s\", expected \"%s\"", dir, got, want);
    free(got);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void assert_msg_has(const pc_error *err, const char *a)
{
    if (strstr(err->msg, a) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, a);
}

typedef struct fixture {
    char root[64];
    char path[128]; /* scratch */
    pc_repo *r;
    int fds;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->root, sizeof fx->root, "/tmp/pc-repo-dir-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return -1;
    pc_error err = {0};
    pc_repo_config cfg = {.uri = fx->root};
    if (pc_repo_open_config(&cfg, &fx->r, &err) != 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    fx->fds = count_fds();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    pc_core_sys_set(NULL);
    pc_repo_close(fx->r);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s'; rm -rf '%s'", fx->root, fx->root);
    int r = system(cmd);
    free(fx);
    return r == 0 ? 0 : -1;
}

static char *get(pc_repo *r, const char *key)
{
    pc_buf b = {0};
    pc_error err = {0};
    pc_buf_puts(&b, "");
    if (pc_repo_get_all(r, key, &b, 1 << 20, &err) != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

typedef struct keys {
    pc_buf b;
    int stop_after; /* > 0: return 1 after that many */
    int n;
} keys;

static int collect(void *ctx, const pc_repo_entry *e)
{
    keys *k = ctx;
    pc_buf_printf(&k->b, "%s%s:%llu", k->b.len > 0 ? " " : "", e->key, (unsigned long long)e->size);
    k->n++;
    return k->stop_after > 0 && k->n >= k->stop_after ? 1 : 0;
}

static void assert_list(pc_repo *r, const char *prefix, const char *want)
{
    keys k = {0};
    pc_buf_puts(&k.b, "");
    pc_error err = {0};
    if (pc_repo_list(r, prefix, collect, &k, &err) != 0)
        fail_msg("list '%s': %s", prefix, err.msg);
    if (strcmp(k.b.data, want) != 0)
        fail_msg("list '%s' gave \"%s\", expected \"%s\"", prefix, k.b.data, want);
    pc_buf_free(&k.b);
}

static void put(pc_repo *r, const char *key, const char *text)
{
    pc_error err = {0};
    if (pc_repo_put_all(r, key, text, strlen(text), PC_REPO_REPLACE, &err) != 0)
        fail_msg("put %s: %s", key, err.msg);
}

/* ---------- the contract ---------- */

static void test_put_visible_only_after_commit(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    pc_repo_put *p = NULL;
    assert_string_equal(pc_repo_kind(fx->r), "dir");
    assert_string_equal(pc_repo_uri(fx->r), fx->root);
    assert_int_equal(pc_repo_put_begin(fx->r, "wal/A.zst", &p, &err), 0);
    assert_int_equal(pc_repo_put_write(p, "hello ", 6, &err), 0);
    assert_int_equal(pc_repo_put_write(p, "world", 5, &err), 0);
    /* not visible: stat, open and list do not see it; on disk only a dot temporary */
    pc_repo_entry e;
    assert_int_equal(pc_repo_stat(fx->r, "wal/A.zst", &e, &err), PC_ENOTFOUND);
    assert_msg_has(&err, "wal/A.zst is not in backup repository");
    pc_repo_obj *o = NULL;
    assert_int_equal(pc_repo_open(fx->r, "wal/A.zst", &o, NULL), PC_ENOTFOUND);
    assert_null(o);
    assert_list(fx->r, "", "");
    snprintf(fx->path, sizeof fx->path, "%s/wal", fx->root);
    char *l = listing(fx->path);
    assert_true(strncmp(l, ".A.zst.tmp-", 11) == 0 && strlen(l) == 17);
    free(l);
    assert_int_equal(count_fds(), fx->fds + 1); /* the temporary */
    pc_error_clear(&err);
    assert_int_equal(pc_repo_put_commit(p, PC_REPO_NOREPLACE, &err), 0);
    assert_listing(fx->path, "A.zst");
    assert_int_equal(count_fds(), fx->fds);
    assert_int_equal(pc_repo_stat(fx->r, "wal/A.zst", &e, &err), 0);
    assert_int_equal(e.size, 11);
    assert_true(e.mtime > time(NULL) - 60);
    char *got = get(fx->r, "wal/A.zst");
    assert_string_equal(got, "hello world");
    free(got);

    /* pread by position, and at/past the end */
    assert_int_equal(pc_repo_open(fx->r, "wal/A.zst", &o, &err), 0);
    assert_int_equal(pc_repo_obj_size(o), 11);
    char buf[16];
    size_t n = 99;
    assert_int_equal(pc_repo_pread(o, 6, buf, 3, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "wor", 3);
    assert_int_equal(pc_repo_pread(o, 8, buf, sizeof buf, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(pc_repo_pread(o, 11, buf, sizeof buf, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(pc_repo_pread(o, 500, buf, sizeof buf, &n, &err), 0);
    assert_int_equal(n, 0);
    pc_repo_obj_close(o);
    pc_repo_obj_close(NULL);
    assert_int_equal(count_fds(), fx->fds);

    /* an aborted put leaves nothing */
    assert_int_equal(pc_repo_put_begin(fx->r, "wal/B.zst", &p, &err), 0);
    assert_int_equal(pc_repo_put_write(p, "x", 1, &err), 0);
    pc_repo_put_abort(p);
    pc_repo_put_abort(NULL);
    assert_listing(fx->path, "A.zst");
    assert_int_equal(count_fds(), fx->fds);

    /* get_all refuses an object over its bound */
    pc_buf b = {0};
    assert_int_equal(pc_repo_get_all(fx->r, "wal/A.zst", &b, 10, &err), PC_EIO);
    pc_buf_free(&b);
}

static void test_noreplace_and_replace(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    assert_int_equal(pc_repo_put_all(fx->r, "wal/A.zst", "first", 5, PC_REPO_NOREPLACE, &err), 0);
    assert_int_equal(pc_repo_put_all(fx->r, "wal/A.zst", "second", 6, PC_REPO_NOREPLACE, &err),
                     PC_ECONFLICT);
    assert_msg_has(&err, "already exists");
    char *got = get(fx->r, "wal/A.zst");
    assert_string_equal(got, "first");
    free(got);
    snprintf(fx->path, sizeof fx->path, "%s/wal", fx->root);
    assert_listing(fx->path, "A.zst"); /* no temporary left */
    pc_error_clear(&err);
    assert_int_equal(pc_repo_put_all(fx->r, "wal/A.zst", "third", 5, PC_REPO_REPLACE, &err), 0);
    got = get(fx->r, "wal/A.zst");
    assert_string_equal(got, "third");
    free(got);
    assert_listing(fx->path, "A.zst");
    /* sync: an object found in place is made durable; an absent one is PC_ENOTFOUND */
    assert_int_equal(pc_repo_sync(fx->r, "wal/A.zst", &err), 0);
    assert_int_equal(pc_repo_sync(fx->r, "wal/none", &err), PC_ENOTFOUND);
    assert_int_equal(count_fds(), fx->fds);
}

static void test_list_order_prefix_and_dots(void **state)
{
    fixture *fx = *state;
    put(fx->r, "wal/10", "aa");
    put(fx->r, "wal/2", "b");
    put(fx->r, "backups/X/pipectl.json", "{}");
    put(fx->r, "backups/X/base.tar", "tar");
    put(fx->r, "backups/X.y", "z");
    put(fx->r, "top", "t");
    /* dot-names at any level are never objects */
    snprintf(fx->path, sizeof fx->path, "%s/wal/.2.tmp-ABCdef", fx->root);
    spit(fx->path, "partial");
    snprintf(fx->path, sizeof fx->path, "%s/.hidden", fx->root);
    mkdir(fx->path, 0700);
    snprintf(fx->path, sizeof fx->path, "%s/.hidden/k", fx->root);
    spit(fx->path, "k");
    snprintf(fx->path, sizeof fx->path, "%s/backups/.lock", fx->root);
    spit(fx->path, "");
    pc_repo_put *p = NULL;
    pc_error err = {0};
    assert_int_equal(pc_repo_put_begin(fx->r, "wal/3", &p, &err), 0); /* in progress */
    assert_list(fx->r, "",
                "backups/X.y:1 backups/X/base.tar:3 backups/X/pipectl.json:2 top:1 wal/10:2 "
                "wal/2:1");
    assert_list(fx->r, "backups/", "backups/X.y:1 backups/X/base.tar:3 backups/X/pipectl.json:2");
    assert_list(fx->r, "backups/X/", "backups/X/base.tar:3 backups/X/pipectl.json:2");
    assert_list(fx->r, "wal/1", "wal/10:2");
    assert_list(fx->r, "nothing/", "");
    assert_list(fx->r, "t", "top:1");
    pc_repo_put_abort(p);
    /* the callback stops the listing and its value is returned */
    keys k = {.stop_after = 2};
    assert_int_equal(pc_repo_list(fx->r, "", collect, &k, &err), 1);
    assert_int_equal(k.n, 2);
    pc_buf_free(&k.b);
    /* a bad prefix is refused */
    assert_int_equal(pc_repo_list(fx->r, "../", collect, &k, &err), PC_EINVAL);
}

static void test_delete(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    put(fx->r, "backups/X/pipectl.json", "{}");
    put(fx->r, "backups/X/base.tar", "tar");
    put(fx->r, "wal/A", "a");
    assert_int_equal(pc_repo_delete(fx->r, "backups/X/pipectl.json", &err), 0);
    assert_int_equal(pc_repo_delete(fx->r, "backups/X/pipectl.json", &err), 0); /* again */
    assert_int_equal(pc_repo_stat(fx->r, "backups/X/pipectl.json", NULL, &err), PC_ENOTFOUND);
    snprintf(fx->path, sizeof fx->path, "%s/backups", fx->root);
    assert_listing(fx->path, "X");
    /* the last object of a backup goes with its directory; first-level directories stay */
    assert_int_equal(pc_repo_delete(fx->r, "backups/X/base.tar", &err), 0);
    assert_listing(fx->path, "");
    assert_int_equal(pc_repo_delete(fx->r, "wal/A", &err), 0);
    assert_listing(fx->root, "backups wal");
    assert_int_equal(pc_repo_delete(fx->r, "never/was", &err), 0);
    assert_int_equal(pc_repo_delete(fx->r, "../x", &err), PC_EINVAL);
}

static void test_lock_between_handles(void **state)
{
    fixture *fx = *state;
    pc_repo *other = NULL;
    pc_error err = {0};
    assert_int_equal(pc_repo_dir_new(fx->root, &other, &err), 0);
    pc_repo_lock *a = NULL, *b = NULL;
    assert_int_equal(pc_repo_lock_take(fx->r, "backup create", &a, &err), 0);
    assert_non_null(a);
    snprintf(fx->path, sizeof fx->path, "%s/backups/.lock", fx->root);
    assert_int_equal(access(fx->path, F_OK), 0);
    assert_int_equal(pc_repo_lock_take(other, "backup expire", &b, &err), PC_ECONFLICT);
    assert_null(b);
    assert_msg_has(&err, "another backup or expire is running on");
    assert_msg_has(&err, "backup expire was not started");
    /* a flock cannot be lost while held: the check says so, and a refused taker did not
     * disturb it */
    pc_error_clear(&err);
    assert_int_equal(pc_repo_lock_check(a, &err), 0);
    assert_string_equal(err.msg, "");
    assert_int_equal(pc_repo_lock_check(NULL, &err), PC_EINVAL);
    pc_repo_unlock(a);
    pc_error_clear(&err);
    assert_int_equal(pc_repo_lock_take(other, "backup expire", &b, &err), 0);
    pc_repo_unlock(b);
    pc_repo_unlock(NULL);
    pc_repo_close(other);
    assert_int_equal(count_fds(), fx->fds);
}

/* The encrypted layer hands out its inner repository's lock, and checks it there. */
static void test_lock_check_encrypted(void **state)
{
    fixture *fx = *state;
    pc_repo_config cfg = {.uri = fx->root, .passphrase = "lock check passphrase"};
    pc_repo *r = NULL, *other = NULL;
    pc_repo_lock *l = NULL, *b = NULL;
    pc_error err = {0};
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), 0);
    assert_string_equal(pc_repo_kind(r), "encrypted");
    assert_int_equal(pc_repo_lock_take(r, "backup expire", &l, &err), 0);
    assert_int_equal(pc_repo_lock_check(l, &err), 0);
    assert_int_equal(pc_repo_dir_new(fx->root, &other, &err), 0);
    assert_int_equal(pc_repo_lock_take(other, "backup create", &b, &err), PC_ECONFLICT);
    pc_error_clear(&err);
    assert_int_equal(pc_repo_lock_check(l, &err), 0);
    pc_repo_unlock(l);
    pc_repo_close(other);
    pc_repo_close(r);
    assert_int_equal(count_fds(), fx->fds);
}

static void age(const char *path, int64_t secs)
{
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = time(NULL) - secs;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void test_sweep(void **state)
{
    fixture *fx = *state;
    char p[256];
    put(fx->r, "wal/A.zst", "a");
    put(fx->r, "backups/X/base.tar", "t");
    snprintf(p, sizeof p, "%s/wal/.000000010000000000000001.zst.tmp-Ab12Cd", fx->root); /* stale */
    spit(p, "x");
    age(p, 7200);
    snprintf(p, sizeof p, "%s/wal/.B.zst.tmp-Ab12Cd", fx->root); /* stale, but not a layout name */
    spit(p, "x");
    age(p, 7200);
    snprintf(p, sizeof p, "%s/wal/.00000002.history.zst.tmp-Ab12Cd", fx->root); /* fresh */
    spit(p, "x");
    snprintf(p, sizeof p, "%s/wal/.notours", fx->root); /* not the shape: stays */
    spit(p, "x");
    age(p, 7200);
    snprintf(p, sizeof p, "%s/backups/X/.base.tar.tmp-zzzzzz", fx->root); /* stale, deeper */
    spit(p, "x");
    age(p, 7200);
    snprintf(p, sizeof p, "%s/backups/Y", fx->root); /* an empty backup directory, old */
    mkdir(p, 0750);
    age(p, 7200);
    snprintf(p, sizeof p, "%s/backups/X", fx->root);
    age(p, 7200);
    size_t removed = 99;
    pc_error err = {0};
    assert_int_equal(pc_repo_sweep(fx->r, (int64_t)time(NULL), 3600, &removed, &err), 0);
    assert_int_equal(removed, 2);
    snprintf(p, sizeof p, "%s/wal", fx->root);
    assert_listing(p, ".00000002.history.zst.tmp-Ab12Cd .B.zst.tmp-Ab12Cd .notours A.zst");
    snprintf(p, sizeof p, "%s/backups", fx->root);
    assert_listing(p, "X");
    snprintf(p, sizeof p, "%s/backups/X", fx->root);
    assert_listing(p, "base.tar");
    /* with a shorter bound, the fresh one goes too */
    assert_int_equal(pc_repo_sweep(fx->r, (int64_t)time(NULL) + 10, 5, &removed, &err), 0);
    assert_int_equal(removed, 1);
    snprintf(p, sizeof p, "%s/wal", fx->root);
    assert_listing(p, ".B.zst.tmp-Ab12Cd .notours A.zst");
}

static void test_key_check(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      "/a",     "a/",      "a//b",   "..",   "../x",
                                      "a/./b", "a/../b", ".hidden", "a/.tmp", "a\nb", NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        pc_error err = {0};
        if (pc_repo_key_check(bad[i], &err) != PC_EINVAL)
            fail_msg("key '%s' was accepted", bad[i]);
        assert_msg_has(&err, "is not a repository object name");
    }
    pc_error err = {0};
    assert_int_equal(pc_repo_key_check(NULL, &err), PC_EINVAL);
    char longkey[PC_REPO_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(pc_repo_key_check(longkey, &err), PC_EINVAL);
    longkey[PC_REPO_KEY_MAX] = '\0';
    assert_int_equal(pc_repo_key_check(longkey, NULL), 0);
    assert_int_equal(pc_repo_key_check("wal/000000010000000000000001.zst", NULL), 0);
    assert_int_equal(pc_repo_key_check("backups/20261125T030000Z/base.tar.zst", NULL), 0);
}

static void test_missing_root(void **state)
{
    fixture *fx = *state;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-repo", fx->root);
    pc_repo_config cfg = {.uri = missing};
    pc_repo *r = NULL;
    pc_error err = {0};
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), 0); /* opening does not look */
    assert_int_equal(pc_repo_stat(r, "wal/A", NULL, &err), PC_EUNAVAIL);
    assert_msg_has(&err, "does not exist: create it, writable by");
    assert_msg_has(&err, missing);
    pc_repo_obj *o = NULL;
    pc_error_clear(&err);
    assert_int_equal(pc_repo_open(r, "wal/A", &o, &err), PC_EUNAVAIL);
    pc_repo_put *p = NULL;
    assert_int_equal(pc_repo_put_begin(r, "wal/A", &p, &err), PC_EUNAVAIL);
    assert_null(p);
    keys k = {0};
    assert_int_equal(pc_repo_list(r, "", collect, &k, &err), PC_EUNAVAIL);
    pc_repo_lock *l = NULL;
    assert_int_equal(pc_repo_lock_take(r, "backup create", &l, &err), PC_EUNAVAIL);
    assert_int_equal(pc_repo_delete(r, "wal/A", &err), PC_EUNAVAIL);
    assert_listing(fx->root, ""); /* nothing was created */
    pc_repo_close(r);

    /* what open_config refuses */
    cfg.uri = "relative/dir";
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), PC_EINVAL);
    cfg.uri = "";
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), PC_EINVAL);
    cfg.uri = "s3:///prefix";
    pc_error_clear(&err);
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), PC_EINVAL);
    assert_msg_has(&err, "names no bucket");
    assert_null(r);
}

/* A repository holding the encrypted layer's marker, opened without a passphrase. */
static void test_encrypted_without_passphrase(void **state)
{
    fixture *fx = *state;
    put(fx->r, "pipectl-crypt.json", "{}");
    pc_repo_config cfg = {.uri = fx->root};
    pc_repo *r = NULL;
    pc_error err = {0};
    assert_int_equal(pc_repo_open_config(&cfg, &r, &err), PC_EINVAL);
    assert_null(r);
    assert_msg_has(&err, "is encrypted: set archiving.encryption.key");
    assert_msg_has(&err, fx->root);
    assert_int_equal(count_fds(), fx->fds);
}

/* ---------- failing system calls ---------- */

static struct {
    const char *which;
    int nth, calls, err_no;
} inj;

static bool trip(const char *which)
{
    if (inj.which == NULL || strcmp(inj.which, which) != 0)
        return false;
    return ++inj.calls == inj.nth;
}

static int bad_fsync(int fd)
{
    if (trip("fsync")) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.fsync(fd);
}

static int bad_link(const char *from, const char *to)
{
    if (trip("link")) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.link(from, to);
}

static int bad_rename(const char *from, const char *to)
{
    if (trip("rename")) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.rename(from, to);
}

static ssize_t bad_write(int fd, const void *buf, size_t len)
{
    if (trip("write")) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.write(fd, buf, len);
}

static void test_fault_injection(void **state)
{
    fixture *fx = *state;
    static const struct {
        const char *which;
        int err_no;
        pc_repo_commit_mode mode;
        const char *step;
        bool lands; /* failure after the name is in place (directory fsync) */
    } cases[] = {
        {"write", ENOSPC, PC_REPO_NOREPLACE, "write to", false},
        {"fsync", EIO, PC_REPO_NOREPLACE, "fsync of", false},
        {"link", EIO, PC_REPO_NOREPLACE, "link of", false},
        {"rename", EXDEV, PC_REPO_REPLACE, "rename of", false},
    };
    pc_core_sys s = pc_core_sys_default;
    s.fsync = bad_fsync;
    s.link = bad_link;
    s.rename = bad_rename;
    s.write = bad_write;
    char wal[128];
    snprintf(wal, sizeof wal, "%s/wal", fx->root);
    put(fx->r, "wal/keep", "k"); /* so wal/ exists */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds = count_fds();
        inj.which = cases[i].which;
        inj.nth = 1;
        inj.calls = 0;
        inj.err_no = cases[i].err_no;
        pc_core_sys_set(&s);
        pc_error err = {0};
        int rc = pc_repo_put_all(fx->r, "wal/A", "data", 4, cases[i].mode, &err);
        pc_core_sys_set(NULL);
        if (rc != PC_EIO)
            fail_msg("case %zu (%s): rc %d, %s", i, cases[i].which, rc, err.msg);
        assert_msg_has(&err, cases[i].step);
        assert_msg_has(&err, strerror(cases[i].err_no));
        assert_listing(wal, "keep");
        if (count_fds() != fds)
            fail_msg("case %zu (%s): %d descriptors before, %d after", i, cases[i].which, fds,
                     count_fds());
        assert_int_equal(pc_repo_stat(fx->r, "wal/A", NULL, NULL), PC_ENOTFOUND);
    }
    /* the directory fsync after the link: an error, the object is in place (a retry is safe) */
    inj.which = "fsync";
    inj.nth = 2;
    inj.calls = 0;
    inj.err_no = EIO;
    pc_core_sys_set(&s);
    pc_error err = {0};
    int fds = count_fds();
    assert_int_equal(pc_repo_put_all(fx->r, "wal/A", "data", 4, PC_REPO_NOREPLACE, &err), PC_EIO);
    pc_core_sys_set(NULL);
    assert_msg_has(&err, "fsync of directory");
    assert_int_equal(count_fds(), fds);
    assert_listing(wal, "A keep");

    /* an unwritable directory: the message names it and what to do */
    if (geteuid() != 0) {
        chmod(wal, 0555);
        pc_error_clear(&err);
        assert_int_equal(pc_repo_put_all(fx->r, "wal/B", "data", 4, PC_REPO_NOREPLACE, &err),
                         PC_EIO);
        assert_msg_has(&err, "cannot write to backup repository directory");
        assert_msg_has(&err, wal);
        chmod(wal, 0750);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_visible_only_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noreplace_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_order_prefix_and_dots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_between_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_check_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test(test_key_check),
        cmocka_unit_test_setup_teardown(test_missing_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypted_without_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
