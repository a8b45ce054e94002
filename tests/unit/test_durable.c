/* test_durable.c: the one durable-write helper and the one hex/SHA-256 helper (pkg/core).
 *
 * Every step of a durable write is made to fail through the pc_core_sys table (open, write,
 * short writes, fsync, close, rename, link, the directory fsync); each failure must leave no
 * temporary file, no descriptor open (counted in /proc/self/fd) and a message naming the step
 * with the system's reason. The same injection is run through wal-push and wal-fetch, whose
 * guarantee (a segment acknowledged only when durably in the repository) rests on it. */
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
#include <unistd.h>

#include "backup.h"
#include "core.h"

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

/* Names in dir (not . and ..), sorted, joined by ' '. */
static char *listing(const char *dir)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n >= 0);
    pc_buf b = {0};
    pc_buf_puts(&b, "");
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") != 0 && strcmp(list[i]->d_name, "..") != 0)
            pc_buf_printf(&b, "%s%s", b.len > 0 ? " " : "", list[i]->d_name);
        free(list[i]);
    }
    free(list);
    return pc_buf_detach(&b);
}

static void assert_listing(const char *dir, const char *want)
{
    char *got = listing(dir);
    assert_string_equal(got, want);
    free(got);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    pc_buf b = {0};
    pc_buf_puts(&b, "");
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        pc_buf_append(&b, chunk, n);
    fclose(f);
    return pc_buf_detach(&b);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

typedef struct fixture {
    char dir[64];
    char path[128]; /* dir/file.txt */
    int fds;        /* open descriptors before the test */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/pc-durable-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/file.txt", fx->dir);
    fx->fds = count_fds();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    pc_core_sys_set(NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int r = system(cmd);
    free(fx);
    return r == 0 ? 0 : -1;
}

/* ---------- injected system calls ---------- */

/* What to break, and when: the nth call (1-based) of the chosen kind fails with err_no. */
static struct {
    int fail_nth;
    int err_no;
    int calls;
    bool short_writes; /* write at most one byte per call */
    bool eintr_once;   /* the first write fails with EINTR */
    bool dirs_only;    /* fsync: fail only on directories */
} inj;

static void inject(int nth, int e)
{
    memset(&inj, 0, sizeof inj);
    inj.fail_nth = nth;
    inj.err_no = e;
}

static bool trip(void)
{
    inj.calls++;
    return inj.fail_nth > 0 && inj.calls == inj.fail_nth;
}

static int bad_open(const char *path, int flags, mode_t mode)
{
    if (trip()) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.open(path, flags, mode);
}

static ssize_t bad_write(int fd, const void *buf, size_t len)
{
    if (inj.eintr_once) {
        inj.eintr_once = false;
        errno = EINTR;
        return -1;
    }
    if (trip()) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.write(fd, buf, inj.short_writes && len > 1 ? 1 : len);
}

static int bad_fsync(int fd)
{
    struct stat st;
    if (inj.dirs_only && (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)))
        return pc_core_sys_default.fsync(fd);
    if (trip()) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.fsync(fd);
}

/* Linux releases the descriptor even when close reports an error (EIO on NFS, say). */
static int bad_close(int fd)
{
    if (trip()) {
        pc_core_sys_default.close(fd);
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.close(fd);
}

static int bad_rename(const char *from, const char *to)
{
    if (trip()) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.rename(from, to);
}

static int bad_link(const char *from, const char *to)
{
    if (trip()) {
        errno = inj.err_no;
        return -1;
    }
    return pc_core_sys_default.link(from, to);
}

static pc_core_sys sys_with(const char *which)
{
    pc_core_sys s = pc_core_sys_default;
    if (strcmp(which, "open") == 0)
        s.open = bad_open;
    else if (strcmp(which, "write") == 0)
        s.write = bad_write;
    else if (strcmp(which, "fsync") == 0)
        s.fsync = bad_fsync;
    else if (strcmp(which, "close") == 0)
        s.close = bad_close;
    else if (strcmp(which, "rename") == 0)
        s.rename = bad_rename;
    else if (strcmp(which, "link") == 0)
        s.link = bad_link;
    else
        fail_msg("unknown system call %s", which);
    return s;
}

static void assert_msg_has(const pc_error *err, const char *a, const char *b)
{
    if (strstr(err->msg, a) == NULL || (b != NULL && strstr(err->msg, b) == NULL))
        fail_msg("message \"%s\" lacks \"%s\"%s%s", err->msg, a, b ? " or " : "", b ? b : "");
}

/* ---------- hex and SHA-256 ---------- */

static void test_hex_sha256(void **state)
{
    (void)state;
    char hex[9];
    pc_hex_encode("\x00\x01\xab\xff", 4, hex);
    assert_string_equal(hex, "0001abff");
    pc_hex_encode("", 0, hex);
    assert_string_equal(hex, "");

    static const char abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char out[PC_SHA256_HEX_LEN + 1];
    pc_sha256_hex("abc", 3, out);
    assert_string_equal(out, abc);

    pc_sha256 *h = NULL;
    assert_int_equal(pc_sha256_new(&h), 0);
    pc_sha256_update(h, "a", 1);
    pc_sha256_update(h, "bc", 2);
    pc_sha256_final(h, out);
    assert_string_equal(out, abc);
    /* final resets: the next message starts from nothing */
    pc_sha256_final(h, out);
    assert_string_equal(out, empty);
    pc_sha256_update(h, "abc", 3);
    pc_sha256_final(h, out);
    assert_string_equal(out, abc);
    pc_sha256_free(h);
    pc_sha256_free(NULL);
}

/* ---------- the durable write ---------- */

static void test_write_ok(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    assert_int_equal(pc_durable_write(fx->path, "hello\n", 6, 0600, &err), 0);
    char *got = slurp(fx->path);
    assert_string_equal(got, "hello\n");
    free(got);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* replaces, and leaves nothing else behind */
    assert_int_equal(pc_durable_write(fx->path, "bye", 3, 0600, &err), 0);
    got = slurp(fx->path);
    assert_string_equal(got, "bye");
    free(got);
    assert_listing(fx->dir, "file.txt");
    assert_int_equal(count_fds(), fx->fds);
}

/* A path without a directory part: the temporary file goes to the working directory. */
static void test_write_relative(void **state)
{
    fixture *fx = *state;
    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(cwd >= 0);
    assert_int_equal(chdir(fx->dir), 0);
    pc_error err = {0};
    int rc = pc_durable_write("plain.json", "{}", 2, 0644, &err);
    assert_int_equal(fchdir(cwd), 0);
    close(cwd);
    assert_int_equal(rc, 0);
    assert_listing(fx->dir, "plain.json");
    assert_int_equal(pc_durable_write("/tmp/", "x", 1, 0600, &err), PC_EINVAL);
    assert_msg_has(&err, "not a file name", NULL);
    assert_int_equal(count_fds(), fx->fds);
}

/* Short writes and EINTR are retried: the file is whole. */
static void test_short_writes(void **state)
{
    fixture *fx = *state;
    pc_core_sys s = sys_with("write");
    pc_core_sys_set(&s);
    inject(0, 0);
    inj.short_writes = true;
    inj.eintr_once = true;
    pc_error err = {0};
    static const char text[] = "a line that takes one write call per byte\n";
    assert_int_equal(pc_durable_write(fx->path, text, strlen(text), 0600, &err), 0);
    assert_int_equal(inj.calls, (int)strlen(text));
    char *got = slurp(fx->path);
    assert_string_equal(got, text);
    free(got);
    assert_listing(fx->dir, "file.txt");
    assert_int_equal(count_fds(), fx->fds);
}

typedef struct failcase {
    const char *call; /* which system call fails */
    int nth;          /* on its nth use */
    int err_no;
    const char *step; /* what the message must name */
    bool dirs_only;
    bool lands; /* the file takes its name anyway (the failure is after the rename) */
} failcase;

static const failcase cases[] = {
    {"open", 1, EACCES, "creating temporary file", false, false},
    {"write", 1, ENOSPC, "write to", false, false},
    {"write", 3, EDQUOT, "write to", false, false}, /* after some bytes landed */
    {"fsync", 1, EIO, "fsync of", false, false},
    {"close", 1, EIO, "close of", false, false},
    {"rename", 1, EXDEV, "rename of", false, false},
    {"open", 2, EMFILE, "cannot open directory", false, true},
    {"fsync", 1, EIO, "fsync of directory", true, true},
};

static void test_each_step_fails(void **state)
{
    fixture *fx = *state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const failcase *c = &cases[i];
        spit(fx->path, "old"); /* a replace that fails keeps the old content */
        int fds = count_fds();
        pc_core_sys s = sys_with(c->call);
        pc_core_sys_set(&s);
        inject(c->nth, c->err_no);
        inj.dirs_only = c->dirs_only;
        inj.short_writes = strcmp(c->call, "write") == 0; /* so "3rd write" is mid-file */
        pc_error err = {0};
        int rc = pc_durable_write(fx->path, "new content", 11, 0600, &err);
        pc_core_sys_set(NULL);
        if (rc != PC_EIO)
            fail_msg("case %zu (%s #%d): rc %d, message %s", i, c->call, c->nth, rc, err.msg);
        assert_msg_has(&err, c->step, strerror(c->err_no));
        assert_msg_has(&err, fx->path, NULL);
        assert_listing(fx->dir, "file.txt"); /* no temporary file */
        if (count_fds() != fds)
            fail_msg("case %zu (%s #%d): %d descriptors open before, %d after", i, c->call, c->nth,
                     fds, count_fds());
        char *got = slurp(fx->path);
        assert_string_equal(got, c->lands ? "new content" : "old");
        free(got);
    }
}

/* The streaming form: the temporary name's shape, abort, and NOREPLACE. */
static void test_stream(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    pc_durable f = PC_DURABLE_INIT;
    pc_durable_abort(&f); /* harmless before open */
    assert_int_equal(pc_durable_open(&f, fx->path, 0640, &err), 0);
    size_t dl = strlen(fx->dir);
    assert_memory_equal(f.tmp, fx->dir, dl);
    assert_memory_equal(f.tmp + dl, "/.file.txt.tmp-", 15);
    assert_int_equal(strlen(f.tmp + dl + 15), 6);
    for (const char *p = f.tmp + dl + 15; *p; p++)
        assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9'));
    assert_int_equal(count_fds(), fx->fds + 1);
    assert_int_equal(pc_durable_append(&f, "abc", 3, &err), 0);
    pc_durable_abort(&f);
    pc_durable_abort(&f); /* twice: harmless */
    assert_listing(fx->dir, "");
    assert_int_equal(count_fds(), fx->fds);

    /* NOREPLACE: never over an existing name */
    spit(fx->path, "first");
    assert_int_equal(pc_durable_open(&f, fx->path, 0640, &err), 0);
    assert_int_equal(pc_durable_append(&f, "second", 6, &err), 0);
    assert_int_equal(pc_durable_commit(&f, PC_DURABLE_NOREPLACE, &err), PC_ECONFLICT);
    assert_msg_has(&err, "already exists", NULL);
    pc_durable_abort(&f);
    char *got = slurp(fx->path);
    assert_string_equal(got, "first");
    free(got);
    assert_listing(fx->dir, "file.txt");
    assert_int_equal(count_fds(), fx->fds);

    /* ... and takes a free one, linking (the temporary name goes) */
    unlink(fx->path);
    pc_error_clear(&err);
    assert_int_equal(pc_durable_open(&f, fx->path, 0640, &err), 0);
    assert_int_equal(pc_durable_append(&f, "second", 6, &err), 0);
    assert_int_equal(pc_durable_commit(&f, PC_DURABLE_NOREPLACE, &err), 0);
    assert_int_equal(f.fd, -1);
    assert_null(f.tmp);
    pc_durable_abort(&f);
    got = slurp(fx->path);
    assert_string_equal(got, "second");
    free(got);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_nlink, 1);
    assert_listing(fx->dir, "file.txt");
    assert_int_equal(count_fds(), fx->fds);
}

/* A file system without hard links: check, then rename; link failing otherwise is an error. */
static void test_noreplace_without_links(void **state)
{
    fixture *fx = *state;
    pc_core_sys s = sys_with("link");
    pc_core_sys_set(&s);
    pc_error err = {0};
    pc_durable f = PC_DURABLE_INIT;

    inject(1, EPERM);
    assert_int_equal(pc_durable_open(&f, fx->path, 0640, &err), 0);
    assert_int_equal(pc_durable_append(&f, "one", 3, &err), 0);
    assert_int_equal(pc_durable_commit(&f, PC_DURABLE_NOREPLACE, &err), 0);
    pc_durable_abort(&f);

    inject(1, EPERM);
    assert_int_equal(pc_durable_open(&f, fx->path, 0640, &err), 0);
    assert_int_equal(pc_durable_append(&f, "two", 3, &err), 0);
    assert_int_equal(pc_durable_commit(&f, PC_DURABLE_NOREPLACE, &err), PC_ECONFLICT);
    pc_durable_abort(&f);

    inject(1, EIO);
    pc_error_clear(&err);
    char other[160];
    snprintf(other, sizeof other, "%s/other", fx->dir);
    pc_error_clear(&err);
    assert_int_equal(pc_durable_open(&f, other, 0640, &err), 0);
    assert_int_equal(pc_durable_commit(&f, PC_DURABLE_NOREPLACE, &err), PC_EIO);
    assert_msg_has(&err, "link of", strerror(EIO));
    pc_durable_abort(&f);
    pc_core_sys_set(NULL);

    char *got = slurp(fx->path);
    assert_string_equal(got, "one");
    free(got);
    assert_listing(fx->dir, "file.txt");
    assert_int_equal(count_fds(), fx->fds);
}

static void test_fsync_dir(void **state)
{
    fixture *fx = *state;
    pc_error err = {0};
    assert_int_equal(pc_fsync_dir(fx->dir, &err), 0);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing", fx->dir);
    assert_int_equal(pc_fsync_dir(missing, &err), PC_EIO);
    assert_msg_has(&err, "cannot open directory", strerror(ENOENT));
    assert_int_equal(count_fds(), fx->fds);

    char *d = pc_path_dir("/a/b/c");
    assert_string_equal(d, "/a/b");
    free(d);
    d = pc_path_dir("/top");
    assert_string_equal(d, "/");
    free(d);
    d = pc_path_dir("plain");
    assert_string_equal(d, ".");
    free(d);
}

/* ---------- through wal-push and wal-fetch ---------- */

/* wal-push acknowledges a segment only when it is durably in the repository: any failing step
 * is an error, with nothing in REPO/wal and no descriptor left; then a clean retry succeeds. */
static void test_wal_push_failures(void **state)
{
    fixture *fx = *state;
    char src[160], wal[160], stored[200];
    snprintf(src, sizeof src, "%s/00000002.history", fx->dir);
    snprintf(wal, sizeof wal, "%s/wal", fx->dir);
    snprintf(stored, sizeof stored, "%s/00000002.history.zst", wal);
    spit(src, "1\t0/3000000\tno recovery target specified\n");
    pc_repo *repo = NULL;
    pc_repo_config cfg = {.uri = fx->dir};
    pc_error oerr = {0};
    assert_int_equal(pc_repo_open_config(&cfg, &repo, &oerr), 0);

    static const failcase push_cases[] = {
        {"open", 1, EACCES, "cannot write to backup repository directory", false, false},
        {"write", 1, ENOSPC, "cannot write", false, false},
        {"fsync", 1, EIO, "fsync of", false, false},
        {"close", 1, EIO, "close of", false, false},
        {"link", 1, EIO, "link of", false, false},
        {"fsync", 1, EIO, "fsync of directory", true, true},
    };
    for (size_t i = 0; i < sizeof push_cases / sizeof push_cases[0]; i++) {
        const failcase *c = &push_cases[i];
        unlink(stored);
        mkdir(wal, 0750);
        int fds = count_fds();
        pc_core_sys s = sys_with(c->call);
        pc_core_sys_set(&s);
        inject(c->nth, c->err_no);
        inj.dirs_only = c->dirs_only;
        pc_error err = {0};
        pc_wal_push_result res;
        int rc = pc_wal_push(repo, src, "00000002.history", &res, NULL, &err);
        pc_core_sys_set(NULL);
        if (rc == 0)
            fail_msg("push case %zu (%s #%d) succeeded", i, c->call, c->nth);
        assert_msg_has(&err, c->step, strerror(c->err_no));
        assert_listing(wal, c->lands ? "00000002.history.zst" : "");
        if (count_fds() != fds)
            fail_msg("push case %zu (%s #%d): %d descriptors open before, %d after", i, c->call,
                     c->nth, fds, count_fds());
        /* PostgreSQL retries: the retry succeeds */
        pc_error_clear(&err);
        assert_int_equal(pc_wal_push(repo, src, "00000002.history", &res, NULL, &err), 0);
        assert_int_equal(res, c->lands ? PC_WAL_ALREADY : PC_WAL_PUSHED);
        assert_listing(wal, "00000002.history.zst");
    }

    /* wal-fetch: a failing step leaves nothing at the destination, and no descriptor */
    char dest[160];
    snprintf(dest, sizeof dest, "%s/restored", fx->dir);
    mkdir(dest, 0700);
    char target[200];
    snprintf(target, sizeof target, "%s/RECOVERYHISTORY", dest);
    static const failcase fetch_cases[] = {
        {"open", 1, EACCES, "creating temporary file", false, false},
        {"write", 1, ENOSPC, "write to", false, false},
        {"fsync", 1, EIO, "fsync of", false, false},
        {"rename", 1, EIO, "rename of", false, false},
    };
    for (size_t i = 0; i < sizeof fetch_cases / sizeof fetch_cases[0]; i++) {
        const failcase *c = &fetch_cases[i];
        int fds = count_fds();
        pc_core_sys s = sys_with(c->call);
        pc_core_sys_set(&s);
        inject(c->nth, c->err_no);
        pc_error err = {0};
        int rc = pc_wal_fetch(repo, "00000002.history", target, NULL, &err);
        pc_core_sys_set(NULL);
        if (rc == 0)
            fail_msg("fetch case %zu (%s #%d) succeeded", i, c->call, c->nth);
        assert_msg_has(&err, c->step, strerror(c->err_no));
        assert_listing(dest, "");
        assert_int_equal(count_fds(), fds);
    }
    pc_error err = {0};
    assert_int_equal(pc_wal_fetch(repo, "00000002.history", target, NULL, &err), 0);
    char *a = slurp(src), *b = slurp(target);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_listing(dest, "RECOVERYHISTORY");
    pc_repo_close(repo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_sha256),
        cmocka_unit_test_setup_teardown(test_write_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_relative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_step_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noreplace_without_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_push_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
