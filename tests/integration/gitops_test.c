/* gitops_test.c: pc_gitops_snapshot against real repositories in a temporary folder.
 * pc_gitops (libgit2) writes; the assertions read back with libgit2 and with the real git CLI,
 * including a bare repository created by `git init --bare` as the push remote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <git2.h>

#include "core.h"
#include "gitops.h"

static char g_tmp[512];

/* Runs a shell command; returns its exit status and its stdout (trailing newlines trimmed) in
 * out when out != NULL. stderr goes to the test log. */
static int run(char *out, size_t outsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t outsz, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    int st = pclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (out != NULL && outsz > 0) {
        size_t m = n < outsz - 1 ? n : outsz - 1;
        memcpy(out, buf, m);
        out[m] = '\0';
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *path_in_tmp(const char *name)
{
    char *p = pc_asprintf("%s/%s", g_tmp, name);
    assert_non_null(p);
    return p;
}

/* Content of <rev>:<path> in the repository at repo, read with libgit2; NULL when missing. */
static char *read_blob(const char *repo, const char *rev, const char *path)
{
    git_libgit2_init();
    git_repository *r = NULL;
    git_object *obj = NULL;
    char *out = NULL;
    char spec[1024];
    snprintf(spec, sizeof spec, "%s:%s", rev, path);
    assert_int_equal(git_repository_open(&r, repo), 0);
    if (git_revparse_single(&obj, r, spec) == 0 && git_object_type(obj) == GIT_OBJECT_BLOB) {
        const git_blob *b = (const git_blob *)obj;
        out = pc_strndup(git_blob_rawcontent(b), (size_t)git_blob_rawsize(b));
    }
    git_object_free(obj);
    git_repository_free(r);
    git_libgit2_shutdown();
    return out;
}

static void assert_blob(const char *repo, const char *rev, const char *path, const char *want)
{
    char *got = read_blob(repo, rev, path);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static int rev_count(const char *repo, const char *rev)
{
    char out[64];
    if (run(out, sizeof out, "git -C '%s' rev-list --count %s 2>/dev/null", repo, rev) != 0)
        return 0;
    return atoi(out);
}

static void assert_status_clean(const char *repo)
{
    char out[4096];
    assert_int_equal(run(out, sizeof out, "git -C '%s' status --porcelain", repo), 0);
    if (out[0] != '\0')
        fail_msg("git status in %s is not clean:\n%s", repo, out);
}

static const char *MANIFEST = "apiVersion: pipectl/v1\n"
                              "metadata: {name: users}\n"
                              "postgres: {dsn: \"host=db user=app password=<redacted>\"}\n"
                              "other: {dsn: \"host=db password=${PGPASSWORD}\"}\n";

/* Missing repo -> created; same content -> no commit; changed -> second commit; push to a bare
 * remote; non-fast-forward rejection after someone else pushed. */
static void test_snapshot_commit_and_push(void **state)
{
    (void)state;
    char *repo = path_in_tmp("state/repo"); /* parent folder does not exist either */
    char *bare = path_in_tmp("remote.git");
    char *clone = path_in_tmp("clone2");
    pc_mf_git cfg = {.declared = true, .repo = repo, .branch = "main"};
    pc_error err = {0};
    pc_snapshot_result res = {0};
    char out[4096];

    /* 1: first snapshot creates the repository and one commit; observed.json gains a newline */
    int rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[]}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    assert_true(res.committed);
    assert_false(res.pushed);
    assert_int_equal(strlen(res.commit), 40);
    assert_string_equal(res.dir, "users");
    char first[41];
    memcpy(first, res.commit, sizeof first);
    pc_snapshot_result_free(&res);

    assert_int_equal(rev_count(repo, "main"), 1);
    assert_int_equal(run(out, sizeof out, "git -C '%s' rev-parse main", repo), 0);
    assert_string_equal(out, first);
    assert_int_equal(run(out, sizeof out, "git -C '%s' symbolic-ref HEAD", repo), 0);
    assert_string_equal(out, "refs/heads/main");
    assert_blob(repo, first, "users/manifest.yaml", MANIFEST);
    assert_blob(repo, first, "users/observed.json", "{\"topics\":[]}\n");
    assert_int_equal(
        run(out, sizeof out, "git -C '%s' log -1 --format='%%an <%%ae>|%%s' main", repo), 0);
    assert_string_equal(out, "pipectl <pipectl@localhost>|pipectl: snapshot of users");
    assert_int_equal(run(out, sizeof out, "git -C '%s' ls-tree -r --name-only main", repo), 0);
    assert_string_equal(out, "users/manifest.yaml\nusers/observed.json");
    assert_status_clean(repo);

    /* 2: same content -> nothing committed, the tip is reported */
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[]}\n", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    assert_false(res.committed);
    assert_string_equal(res.commit, first);
    pc_snapshot_result_free(&res);
    assert_int_equal(rev_count(repo, "main"), 1);
    assert_status_clean(repo);

    /* 3: changed observed state -> second commit whose parent is the first; the author comes
     * from the repository's config; a custom message is used as given */
    assert_int_equal(run(NULL, 0,
                         "git -C '%s' config user.name 'Snap Shot' && "
                         "git -C '%s' config user.email snap@example.org",
                         repo, repo),
                     0);
    memset(&err, 0, sizeof err);
    rc =
        pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[\"a\"]}", "apply #2", &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    assert_true(res.committed);
    char second[41];
    memcpy(second, res.commit, sizeof second);
    pc_snapshot_result_free(&res);
    assert_string_not_equal(second, first);
    assert_int_equal(rev_count(repo, "main"), 2);
    assert_int_equal(run(out, sizeof out, "git -C '%s' rev-parse main^", repo), 0);
    assert_string_equal(out, first);
    assert_int_equal(
        run(out, sizeof out, "git -C '%s' log -1 --format='%%an <%%ae>|%%B' main", repo), 0);
    assert_string_equal(out, "Snap Shot <snap@example.org>|apply #2");
    assert_blob(repo, "main", "users/observed.json", "{\"topics\":[\"a\"]}\n");
    assert_blob(repo, "main", "users/manifest.yaml", MANIFEST);
    assert_status_clean(repo);
    /* the work tree holds the committed files */
    assert_int_equal(run(out, sizeof out, "cat '%s/users/observed.json'", repo), 0);
    assert_string_equal(out, "{\"topics\":[\"a\"]}");

    /* 4: a second pipeline in a nested folder keeps the first pipeline's files */
    pc_mf_git nested = cfg;
    nested.path = "envs/prod/orders";
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&nested, "orders", "name: orders", "{}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    assert_true(res.committed);
    assert_string_equal(res.dir, "envs/prod/orders");
    pc_snapshot_result_free(&res);
    assert_int_equal(run(out, sizeof out, "git -C '%s' ls-tree -r --name-only main", repo), 0);
    assert_string_equal(out, "envs/prod/orders/manifest.yaml\nenvs/prod/orders/observed.json\n"
                             "users/manifest.yaml\nusers/observed.json");
    assert_blob(repo, "main", "envs/prod/orders/manifest.yaml", "name: orders\n");
    assert_status_clean(repo);
    assert_int_equal(rev_count(repo, "main"), 3);

    /* 5: push to a bare repository: the remote is added from remote_url */
    assert_int_equal(run(NULL, 0, "git init -q --bare --initial-branch=main '%s'", bare), 0);
    cfg.push = "origin";
    cfg.remote_url = bare;
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[\"a\"]}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot with push: %s", err.msg);
    assert_false(res.committed); /* nothing new, but the branch is pushed */
    assert_true(res.pushed);
    char tip[41];
    memcpy(tip, res.commit, sizeof tip);
    pc_snapshot_result_free(&res);
    assert_int_equal(run(out, sizeof out, "git --git-dir='%s' rev-parse main", bare), 0);
    assert_string_equal(out, tip);
    assert_int_equal(run(out, sizeof out, "git -C '%s' remote get-url origin", repo), 0);
    assert_string_equal(out, bare);

    /* a new commit is pushed too; the remote now exists and is reused */
    memset(&err, 0, sizeof err);
    rc =
        pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[\"a\",\"b\"]}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot with push: %s", err.msg);
    assert_true(res.committed);
    assert_true(res.pushed);
    memcpy(tip, res.commit, sizeof tip);
    pc_snapshot_result_free(&res);
    assert_int_equal(run(out, sizeof out, "git --git-dir='%s' rev-parse main", bare), 0);
    assert_string_equal(out, tip);
    assert_status_clean(repo);

    /* 6: someone else pushes to the remote; our next push is not a fast-forward */
    assert_int_equal(run(NULL, 0,
                         "git clone -q -b main '%s' '%s' && cd '%s' && echo x > other.txt && "
                         "git add other.txt && git -c user.name=o -c user.email=o@o commit -q "
                         "-m other && git push -q origin main",
                         bare, clone, clone),
                     0);
    char theirs[41];
    assert_int_equal(run(out, sizeof out, "git --git-dir='%s' rev-parse main", bare), 0);
    assert_int_equal(strlen(out), 40);
    memcpy(theirs, out, sizeof theirs);
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{\"topics\":[\"c\"]}", NULL, &res, &err);
    assert_int_equal(rc, PC_EREFUSED);
    assert_int_equal(err.code, PC_EREFUSED);
    print_message("non-fast-forward error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "git push to origin"));
    assert_non_null(strstr(err.msg, bare));
    assert_non_null(strstr(err.msg, "rejected for refs/heads/main"));
    assert_non_null(strstr(err.msg, "pull/merge the remote first"));
    assert_true(res.committed); /* the commit is kept locally */
    assert_false(res.pushed);
    assert_null(res.dir);
    assert_int_equal(run(out, sizeof out, "git --git-dir='%s' rev-parse main", bare), 0);
    assert_string_equal(out, theirs);
    assert_int_equal(run(out, sizeof out, "git -C '%s' rev-parse main", repo), 0);
    assert_string_equal(out, res.commit);
    pc_snapshot_result_free(&res);

    free(repo);
    free(bare);
    free(clone);
}

/* A literal password in the manifest text is refused before anything is written. */
static void test_refuses_literal_password(void **state)
{
    (void)state;
    char *repo = path_in_tmp("secret-repo");
    pc_mf_git cfg = {.declared = true, .repo = repo, .branch = "main"};
    pc_error err = {0};
    pc_snapshot_result res = {0};

    int rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    pc_snapshot_result_free(&res);
    assert_int_equal(rev_count(repo, "main"), 1);

    const char *leaks[] = {
        "postgres: {dsn: \"host=db user=app password=hunter2 dbname=x\"}\n",
        "postgres: {dsn: \"host=db password = 'hunter2'\"}\n",
        "postgres: {dsn: \"postgresql://app:hunter2@db:5432/x\"}\n",
    };
    for (size_t i = 0; i < sizeof leaks / sizeof leaks[0]; i++) {
        memset(&err, 0, sizeof err);
        rc = pc_gitops_snapshot(&cfg, "users", leaks[i], "{\"changed\":1}", NULL, &res, &err);
        assert_int_equal(rc, PC_EINVAL);
        print_message("refused: %s\n", err.msg);
        assert_non_null(strstr(err.msg, "a secret would have been committed"));
        assert_null(strstr(err.msg, "hunter2"));
        assert_false(res.committed);
        pc_snapshot_result_free(&res);
        assert_int_equal(rev_count(repo, "main"), 1);
    }
    assert_status_clean(repo);
    free(repo);
}

/* An existing non-empty folder that is not a repository is left alone; an empty one is used. */
static void test_repo_path_checks(void **state)
{
    (void)state;
    char *plain = path_in_tmp("plain");
    char *empty = path_in_tmp("empty");
    char out[256];
    assert_int_equal(
        run(NULL, 0, "mkdir -p '%s' '%s' && echo hi > '%s/README'", plain, empty, plain), 0);
    pc_mf_git cfg = {.declared = true, .repo = plain};
    pc_error err = {0};
    pc_snapshot_result res = {0};
    int rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    assert_int_equal(rc, PC_EINVAL);
    print_message("plain folder: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "exists and is not a git repository"));
    assert_non_null(strstr(err.msg, plain));
    struct stat st;
    char *dotgit = path_in_tmp("plain/.git");
    assert_int_not_equal(stat(dotgit, &st), 0);
    free(dotgit);
    pc_snapshot_result_free(&res);

    /* empty folder, no branch given: initialised with HEAD on main */
    cfg.repo = empty;
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    pc_snapshot_result_free(&res);
    assert_int_equal(run(out, sizeof out, "git -C '%s' symbolic-ref HEAD", empty), 0);
    assert_string_equal(out, "refs/heads/main");
    assert_int_equal(rev_count(empty, "main"), 1);
    assert_status_clean(empty);

    /* push configured but the remote is missing and no URL is given */
    cfg.push = "origin";
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    assert_int_equal(rc, PC_EINVAL);
    print_message("missing remote: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "git.push names remote 'origin'"));
    assert_non_null(strstr(err.msg, "git remote add origin URL"));
    pc_snapshot_result_free(&res);

    /* a path that escapes the repository is refused */
    cfg.push = NULL;
    cfg.path = "../outside";
    memset(&err, 0, sizeof err);
    rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    assert_int_equal(rc, PC_EINVAL);
    pc_snapshot_result_free(&res);
    free(plain);
    free(empty);
}

/* A branch other than HEAD's is committed to without touching the work tree. */
static void test_other_branch(void **state)
{
    (void)state;
    char *repo = path_in_tmp("branchy");
    char out[256];
    assert_int_equal(run(NULL, 0, "git init -q --initial-branch=dev '%s'", repo), 0);
    pc_mf_git cfg = {.declared = true, .repo = repo, .branch = "snapshots"};
    pc_error err = {0};
    pc_snapshot_result res = {0};
    int rc = pc_gitops_snapshot(&cfg, "users", MANIFEST, "{}", NULL, &res, &err);
    if (rc != 0)
        fail_msg("snapshot: %s", err.msg);
    assert_true(res.committed);
    pc_snapshot_result_free(&res);
    assert_int_equal(rev_count(repo, "snapshots"), 1);
    assert_int_equal(run(out, sizeof out, "git -C '%s' symbolic-ref HEAD", repo), 0);
    assert_string_equal(out, "refs/heads/dev");
    assert_int_equal(run(out, sizeof out, "ls -A '%s'", repo), 0);
    assert_string_equal(out, ".git");
    free(repo);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "%s/pc-gitops-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    /* Isolate from the developer's git configuration: no user.name, default branch, hooks. */
    setenv("HOME", g_tmp, 1);
    setenv("XDG_CONFIG_HOME", g_tmp, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    unsetenv("GIT_DIR");
    unsetenv("GIT_WORK_TREE");
    unsetenv("GIT_INDEX_FILE");
    unsetenv("GIT_AUTHOR_NAME");
    unsetenv("GIT_AUTHOR_EMAIL");
    unsetenv("GIT_COMMITTER_NAME");
    unsetenv("GIT_COMMITTER_EMAIL");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_commit_and_push),
        cmocka_unit_test(test_refuses_literal_password),
        cmocka_unit_test(test_repo_path_checks),
        cmocka_unit_test(test_other_branch),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (failed == 0 && getenv("PC_KEEP_TMP") == NULL) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_tmp);
    } else {
        fprintf(stderr, "test files kept in %s\n", g_tmp);
    }
    return failed == 0 ? 0 : 1;
}
