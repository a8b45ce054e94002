/* gitops.c: configuration snapshots as commits in a Git repository (libgit2).
 *
 * The commit is built from blobs and trees written straight into the object database, on top of
 * the branch tip, so a dirty or missing work tree never changes what is committed. The work
 * tree and index are brought in line afterwards (only for the two snapshot files) when HEAD is
 * the snapshot branch, so `git status` stays clean for people who also use the repository. */
#include "gitops.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_DEPTH 32

/* Everything one snapshot needs; freed in one place. */
typedef struct snap {
    const char *repo_path;
    const char *branch;
    char *refname; /* refs/heads/<branch> */
    git_repository *repo;
    git_commit *tip; /* NULL on an unborn branch */
    git_tree *tip_tree;
} snap;

/* The last libgit2 message without its trailing period or newline, so it reads well mid-sentence.
 */
static const char *last_git_message(char *buf, size_t n)
{
    const git_error *e = git_error_last();
    snprintf(buf, n, "%s", e != NULL && e->message != NULL ? e->message : "unknown libgit2 error");
    size_t len = strlen(buf);
    while (len > 0 && strchr(". \n\r", buf[len - 1]) != NULL)
        buf[--len] = '\0';
    return buf;
}

/* Translates the last libgit2 error at the boundary, naming the repository and the step. */
static int git_fail(pc_error *err, int code, const char *repo_path, const char *what)
{
    char m[1024];
    return pc_error_set(err, code, "git repository %s: %s failed: %s", repo_path, what,
                        last_git_message(m, sizeof m));
}

/* Snapshot folder: relative, '/'-separated, no empty, "." or ".." component, never inside .git. */
static int check_dir(const char *dir, pc_error *err)
{
    if (dir[0] == '\0' || dir[0] == '/')
        return pc_error_set(err, PC_EINVAL,
                            "git.path '%s' must be a relative folder inside the repository", dir);
    const char *p = dir;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && strncmp(p, "..", 2) == 0) ||
            (n == 4 && strncasecmp(p, ".git", 4) == 0))
            return pc_error_set(err, PC_EINVAL,
                                "git.path '%s' has an empty, '.', '..' or '.git' component; use "
                                "a plain relative folder such as 'pipelines/NAME'",
                                dir);
        if (memchr(p, '\\', n) != NULL || memchr(p, ':', n) != NULL)
            return pc_error_set(err, PC_EINVAL,
                                "git.path '%s' contains '\\' or ':'; use '/'-separated plain names",
                                dir);
        p += n;
        if (*p == '/')
            p++;
    }
    return 0;
}

typedef struct literal_scan {
    const char *text;
    bool found;
} literal_scan;

/* A credential range holding something other than PC_REDACTED or ${VAR} references. */
static void literal_range(void *ctx, size_t start, size_t end)
{
    literal_scan *l = ctx;
    const char *v = l->text + start;
    size_t n = end - start, rl = strlen(PC_REDACTED);
    for (size_t i = 0; i < n;) {
        if (n - i >= rl && memcmp(v + i, PC_REDACTED, rl) == 0) {
            i += rl;
        } else if (v[i] == '$' && i + 1 < n && v[i + 1] == '{') {
            /* ${VAR} or ${VAR:-<redacted>}: a literal default is a literal */
            const char *close = memchr(v + i, '}', n - i);
            const char *dflt = close != NULL ? memchr(v + i, ':', (size_t)(close - (v + i))) : NULL;
            if (close == NULL ||
                (dflt != NULL && dflt + 2 < close &&
                 ((size_t)(close - dflt - 2) != rl || memcmp(dflt + 2, PC_REDACTED, rl) != 0))) {
                l->found = true;
                return;
            }
            i = (size_t)(close - v) + 1;
        } else if (v[i] == ' ' || v[i] == '\t') {
            i++;
        } else if (i > 0 && strspn(v + i, ".,;:!?)") >= n - i) {
            /* prose after a placeholder ("write password=${PG_PASSWORD}. Snapshots ...") */
            return;
        } else {
            l->found = true;
            return;
        }
    }
}

/* Defence in depth: the manifest should arrive redacted; refuse a literal password that slipped
 * through where core's scanner sees a credential (password=VALUE, sslpassword='VALUE', a URI's
 * user:VALUE@host). Placeholders (${VAR}) and PC_REDACTED pass. Never quotes the secret. */
static bool has_literal_secret(const char *text)
{
    literal_scan l = {.text = text};
    pc_secret_ranges(text, strlen(text), literal_range, &l);
    return l.found;
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    bool empty = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Opens cfg->repo without searching parent folders; initialises it when missing or empty. */
static int open_or_init(snap *s, pc_error *err)
{
    int rc = git_repository_open_ext(&s->repo, s->repo_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
    if (rc == 0)
        return 0;
    if (rc != GIT_ENOTFOUND)
        return git_fail(err, PC_EIO, s->repo_path, "opening the repository");

    struct stat st;
    if (stat(s->repo_path, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || !dir_is_empty(s->repo_path))
            return pc_error_set(err, PC_EINVAL,
                                "git.repo %s exists and is not a git repository; point git.repo "
                                "at a repository, an empty folder or a path that does not exist",
                                s->repo_path);
    } else if (errno != ENOENT) {
        return pc_error_set(err, PC_EIO, "git.repo %s: cannot inspect the path: %s", s->repo_path,
                            strerror(errno));
    }

    /* the *_options_init functions, not the _INIT macros: those trip -Wmissing-field-initializers
     */
    git_repository_init_options opts;
    git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    opts.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_MKDIR;
    opts.initial_head = s->branch;
    if (git_repository_init_ext(&s->repo, s->repo_path, &opts) != 0)
        return git_fail(err, PC_EIO, s->repo_path, "initialising the repository");
    return 0;
}

/* Loads the branch tip (none on an unborn branch). */
static int load_tip(snap *s, pc_error *err)
{
    git_reference *ref = NULL;
    int rc = git_reference_lookup(&ref, s->repo, s->refname);
    if (rc == GIT_ENOTFOUND)
        return 0;
    if (rc != 0)
        return git_fail(err, PC_EIO, s->repo_path, s->refname);
    int ret = 0;
    git_object *obj = NULL;
    if (git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT) != 0) {
        ret = git_fail(err, PC_EIO, s->repo_path, s->refname);
        goto done;
    }
    s->tip = (git_commit *)obj;
    if (git_commit_tree(&s->tip_tree, s->tip) != 0)
        ret = git_fail(err, PC_EIO, s->repo_path, "reading the branch tip's tree");
done:
    git_reference_free(ref);
    return ret;
}

/* Writes text as a blob, adding a final newline when it lacks one. */
static int write_blob(snap *s, const char *text, git_oid *out, pc_error *err)
{
    size_t n = strlen(text);
    int ret = 0;
    if (n > 0 && text[n - 1] == '\n') {
        if (git_blob_create_from_buffer(out, s->repo, text, n) != 0)
            ret = git_fail(err, PC_EIO, s->repo_path, "writing a blob");
        return ret;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory writing a snapshot blob");
    memcpy(copy, text, n);
    copy[n] = '\n';
    if (git_blob_create_from_buffer(out, s->repo, copy, n + 1) != 0)
        ret = git_fail(err, PC_EIO, s->repo_path, "writing a blob");
    free(copy);
    return ret;
}

/* Builds the tree for base (NULL: empty) with comps[depth..] replaced so that the innermost
 * folder holds manifest.yaml and observed.json. Other entries are kept as they are. */
static int build_tree(snap *s, const git_tree *base, char **comps, size_t ncomps, size_t depth,
                      const git_oid *manifest, const git_oid *observed, git_oid *out, pc_error *err)
{
    int ret = 0;
    git_treebuilder *tb = NULL;
    git_tree *sub = NULL;
    if (git_treebuilder_new(&tb, s->repo, base) != 0) {
        ret = git_fail(err, PC_EIO, s->repo_path, "building a tree");
        goto done;
    }
    if (depth == ncomps) {
        if (git_treebuilder_insert(NULL, tb, "manifest.yaml", manifest, GIT_FILEMODE_BLOB) != 0 ||
            git_treebuilder_insert(NULL, tb, "observed.json", observed, GIT_FILEMODE_BLOB) != 0) {
            ret = git_fail(err, PC_EIO, s->repo_path, "building the snapshot tree");
            goto done;
        }
    } else {
        const git_tree_entry *e = base != NULL ? git_tree_entry_byname(base, comps[depth]) : NULL;
        if (e != NULL && git_tree_entry_type(e) == GIT_OBJECT_TREE &&
            git_tree_lookup(&sub, s->repo, git_tree_entry_id(e)) != 0) {
            ret = git_fail(err, PC_EIO, s->repo_path, "reading a tree");
            goto done;
        }
        git_oid sub_oid;
        ret = build_tree(s, sub, comps, ncomps, depth + 1, manifest, observed, &sub_oid, err);
        if (ret != 0)
            goto done;
        if (git_treebuilder_insert(NULL, tb, comps[depth], &sub_oid, GIT_FILEMODE_TREE) != 0) {
            ret = git_fail(err, PC_EIO, s->repo_path, "building the snapshot tree");
            goto done;
        }
    }
    if (git_treebuilder_write(out, tb) != 0)
        ret = git_fail(err, PC_EIO, s->repo_path, "writing a tree");
done:
    git_tree_free(sub);
    git_treebuilder_free(tb);
    return ret;
}

static int make_signature(snap *s, git_signature **out, pc_error *err)
{
    int rc = git_signature_default(out, s->repo);
    if (rc == 0)
        return 0;
    if (rc != GIT_ENOTFOUND) {
        /* an unusable user.name/user.email (e.g. empty) also lands here: fall back */
        git_error_clear();
    }
    if (git_signature_now(out, "pipectl", "pipectl@localhost") != 0)
        return git_fail(err, PC_EIO, s->repo_path, "creating the commit signature");
    return 0;
}

/* Brings the two snapshot files of the work tree and index in line with the branch, when the
 * repository has a work tree and HEAD is the snapshot branch. */
static int sync_worktree(snap *s, const char *dir, pc_error *err)
{
    if (git_repository_is_bare(s->repo))
        return 0;
    git_reference *head = NULL;
    int rc = git_reference_lookup(&head, s->repo, "HEAD");
    if (rc != 0)
        return git_fail(err, PC_EIO, s->repo_path, "reading HEAD");
    bool on_branch = git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
                     pc_streq(git_reference_symbolic_target(head), s->refname);
    git_reference_free(head);
    if (!on_branch)
        return 0;

    int ret = 0;
    char *paths[2] = {pc_asprintf("%s/manifest.yaml", dir), pc_asprintf("%s/observed.json", dir)};
    if (paths[0] == NULL || paths[1] == NULL) {
        ret = pc_error_set(err, PC_ENOMEM, "out of memory updating the work tree");
        goto done;
    }
    git_checkout_options opts;
    git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
    opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH;
    opts.paths.strings = paths;
    opts.paths.count = 2;
    if (git_checkout_head(s->repo, &opts) != 0)
        ret = git_fail(err, PC_EIO, s->repo_path, "updating the work tree (checkout)");
done:
    free(paths[0]);
    free(paths[1]);
    return ret;
}

/* What the push callbacks saw. */
typedef struct push_state {
    bool auth_requested;
    char rejected_ref[256];
    char rejected_status[512];
} push_state;

static int on_credentials(git_credential **out, const char *url, const char *username_from_url,
                          unsigned int allowed_types, void *payload)
{
    (void)out;
    (void)url;
    (void)username_from_url;
    (void)allowed_types;
    push_state *ps = payload;
    ps->auth_requested = true;
    git_error_set_str(GIT_ERROR_NET, "the remote asked for credentials");
    return GIT_EUSER;
}

static int on_update_reference(const char *refname, const char *status, void *payload)
{
    push_state *ps = payload;
    if (status != NULL && ps->rejected_ref[0] == '\0') {
        snprintf(ps->rejected_ref, sizeof ps->rejected_ref, "%s", refname);
        snprintf(ps->rejected_status, sizeof ps->rejected_status, "%s", status);
    }
    return 0;
}

static int push_branch(snap *s, const pc_mf_git *cfg, const char *commit, pc_error *err)
{
    int ret = 0;
    git_remote *remote = NULL;
    char *url = NULL;
    char *refspec = NULL;
    int rc = git_remote_lookup(&remote, s->repo, cfg->push);
    if (rc == GIT_ENOTFOUND || rc == GIT_EINVALIDSPEC) {
        if (cfg->remote_url == NULL) {
            ret = pc_error_set(err, PC_EINVAL,
                               "git.push names remote '%s' but the repository at %s has no such "
                               "remote; add it (git remote add %s URL) or set git.remote_url",
                               cfg->push, s->repo_path, cfg->push);
            goto done;
        }
        if (git_remote_create(&remote, s->repo, cfg->push, cfg->remote_url) != 0) {
            char *red = pc_redact(cfg->remote_url);
            char m[1024];
            ret =
                pc_error_set(err, PC_EINVAL,
                             "git repository %s: adding remote '%s' (%s) failed: %s", s->repo_path,
                             cfg->push, red != NULL ? red : "<url>", last_git_message(m, sizeof m));
            free(red);
            goto done;
        }
    } else if (rc != 0) {
        ret = git_fail(err, PC_EIO, s->repo_path, "looking up the push remote");
        goto done;
    }

    url = pc_redact(git_remote_url(remote) != NULL ? git_remote_url(remote) : "");
    refspec = pc_asprintf("%s:%s", s->refname, s->refname);
    if (url == NULL || refspec == NULL) {
        ret = pc_error_set(err, PC_ENOMEM, "out of memory preparing the push");
        goto done;
    }

    push_state ps = {0};
    git_push_options opts;
    git_push_options_init(&opts, GIT_PUSH_OPTIONS_VERSION);
    opts.callbacks.credentials = on_credentials;
    opts.callbacks.push_update_reference = on_update_reference;
    opts.callbacks.payload = &ps;
    char *specs[1] = {refspec};
    git_strarray arr = {specs, 1};
    rc = git_remote_push(remote, &arr, &opts);
    if (ps.auth_requested) {
        ret = pc_error_set(err, PC_EREFUSED,
                           "git push to %s (%s) needs credentials, which pipectl does not "
                           "supply (no SSH agent or credential helper support); commit %s is in "
                           "%s, push it yourself or use a remote that needs none (a local path "
                           "or file:// URL)",
                           cfg->push, url, commit, s->repo_path);
        goto done;
    }
    char m[1024];
    if (rc == GIT_ENONFASTFORWARD) {
        ret = pc_error_set(err, PC_EREFUSED,
                           "git push to %s (%s) was rejected for %s: %s (not a fast-forward); "
                           "pull/merge the remote first (commit %s is in %s)",
                           cfg->push, url, s->refname, last_git_message(m, sizeof m), commit,
                           s->repo_path);
        goto done;
    }
    if (rc != 0) {
        ret = pc_error_set(err, PC_EUNAVAIL,
                           "git push to %s (%s) from %s failed: %s; commit %s is kept locally, "
                           "run snapshot again once the remote is reachable",
                           cfg->push, url, s->repo_path, last_git_message(m, sizeof m), commit);
        goto done;
    }
    if (ps.rejected_ref[0] != '\0') {
        ret =
            pc_error_set(err, PC_EREFUSED,
                         "git push to %s (%s) was rejected for %s: %s; pull/merge the remote "
                         "first (commit %s is in %s)",
                         cfg->push, url, ps.rejected_ref, ps.rejected_status, commit, s->repo_path);
        goto done;
    }
done:
    free(refspec);
    free(url);
    git_remote_free(remote);
    return ret;
}

/* Splits dir on '/' into owned components. */
static int split_dir(const char *dir, char ***out, size_t *n, pc_error *err)
{
    size_t cap = 1;
    for (const char *p = dir; *p; p++)
        if (*p == '/')
            cap++;
    if (cap > MAX_DEPTH)
        return pc_error_set(err, PC_EINVAL, "git.path '%s' is nested too deeply (max %d)", dir,
                            MAX_DEPTH);
    char **comps = calloc(cap, sizeof *comps);
    if (comps == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    size_t k = 0;
    const char *p = dir;
    while (*p) {
        size_t len = strcspn(p, "/");
        comps[k] = pc_strndup(p, len);
        if (comps[k] == NULL) {
            for (size_t i = 0; i < k; i++)
                free(comps[i]);
            free(comps);
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        k++;
        p += len;
        if (*p == '/')
            p++;
    }
    *out = comps;
    *n = k;
    return 0;
}

int pc_gitops_snapshot(const pc_mf_git *cfg, const char *pipeline, const char *redacted_manifest,
                       const char *observed_json, const char *message, pc_snapshot_result *res,
                       pc_error *err)
{
    if (res == NULL)
        return pc_error_set(err, PC_EINVAL, "pc_gitops_snapshot: no result object");
    memset(res, 0, sizeof *res);
    if (cfg == NULL || cfg->repo == NULL || cfg->repo[0] == '\0')
        return pc_error_set(err, PC_EINVAL,
                            "git.repo is not set; add git: {repo: PATH} to the manifest");
    if (pipeline == NULL || pipeline[0] == '\0' || redacted_manifest == NULL ||
        observed_json == NULL)
        return pc_error_set(err, PC_EINVAL,
                            "snapshot into %s: the pipeline name, manifest and observed state "
                            "are required",
                            cfg->repo);

    const char *dir = cfg->path != NULL && cfg->path[0] != '\0' ? cfg->path : pipeline;
    int ret = check_dir(dir, err);
    if (ret != 0)
        return ret;
    if (has_literal_secret(redacted_manifest) || has_literal_secret(observed_json))
        return pc_error_set(err, PC_EINVAL,
                            "snapshot of %s into %s refused: a secret would have been committed "
                            "(a literal password in a DSN or URL); use ${VAR} placeholders in "
                            "the manifest so the snapshot stays redacted",
                            pipeline, cfg->repo);
    /* and every secret value the manifest holds, wherever it stands (a comment, a field that
     * is not a secret's): replaced before anything reaches the object database */
    char *safe_manifest = pc_scrub(redacted_manifest, pc_secrets_installed());
    char *safe_observed = pc_scrub(observed_json, pc_secrets_installed());
    char *safe_message = message != NULL ? pc_scrub(message, pc_secrets_installed()) : NULL;
    if (safe_manifest == NULL || safe_observed == NULL ||
        (message != NULL && safe_message == NULL)) {
        free(safe_manifest);
        free(safe_observed);
        free(safe_message);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    redacted_manifest = safe_manifest;
    observed_json = safe_observed;
    message = safe_message;

    snap s = {.repo_path = cfg->repo,
              .branch = cfg->branch != NULL && cfg->branch[0] != '\0' ? cfg->branch : "main"};
    char **comps = NULL;
    size_t ncomps = 0;
    char *msg = NULL;
    git_signature *sig = NULL;
    git_tree *new_tree = NULL;
    bool initialised = false;

    if (git_libgit2_init() < 0) {
        ret = git_fail(err, PC_EIO, cfg->repo, "initialising libgit2");
        goto done;
    }
    initialised = true;

    s.refname = pc_asprintf("refs/heads/%s", s.branch);
    res->dir = pc_strdup(dir);
    if (s.refname == NULL || res->dir == NULL) {
        ret = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    int valid = 0;
    if (git_reference_name_is_valid(&valid, s.refname) != 0 || !valid) {
        ret = pc_error_set(err, PC_EINVAL,
                           "git.branch '%s' is not a valid branch name; use a name such as main",
                           s.branch);
        goto done;
    }
    if ((ret = split_dir(dir, &comps, &ncomps, err)) != 0)
        goto done;
    if ((ret = open_or_init(&s, err)) != 0)
        goto done;
    if ((ret = load_tip(&s, err)) != 0)
        goto done;

    git_oid manifest_oid, observed_oid, tree_oid, commit_oid;
    if ((ret = write_blob(&s, redacted_manifest, &manifest_oid, err)) != 0 ||
        (ret = write_blob(&s, observed_json, &observed_oid, err)) != 0)
        goto done;
    ret =
        build_tree(&s, s.tip_tree, comps, ncomps, 0, &manifest_oid, &observed_oid, &tree_oid, err);
    if (ret != 0)
        goto done;

    if (s.tip_tree != NULL && git_oid_equal(&tree_oid, git_tree_id(s.tip_tree))) {
        res->committed = false;
        git_oid_tostr(res->commit, sizeof res->commit, git_commit_id(s.tip));
    } else {
        if (git_tree_lookup(&new_tree, s.repo, &tree_oid) != 0) {
            ret = git_fail(err, PC_EIO, cfg->repo, "reading the new tree");
            goto done;
        }
        if ((ret = make_signature(&s, &sig, err)) != 0)
            goto done;
        const char *m = message != NULL && message[0] != '\0' ? message : NULL;
        size_t mlen = m != NULL ? strlen(m) : 0;
        msg = m != NULL ? pc_asprintf("%s%s", m, m[mlen - 1] == '\n' ? "" : "\n")
                        : pc_asprintf("pipectl: snapshot of %s\n", pipeline);
        if (msg == NULL) {
            ret = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        const git_commit *parents[1] = {s.tip};
        /* update_ref checks that the branch still points at tip: a concurrent writer fails us
         * rather than being overwritten. */
        if (git_commit_create(&commit_oid, s.repo, s.refname, sig, sig, NULL, msg, new_tree,
                              s.tip != NULL ? 1 : 0, parents) != 0) {
            ret = git_fail(err, PC_ECONFLICT, cfg->repo, "committing the snapshot");
            goto done;
        }
        res->committed = true;
        git_oid_tostr(res->commit, sizeof res->commit, &commit_oid);
    }

    if ((ret = sync_worktree(&s, dir, err)) != 0)
        goto done;
    if (cfg->push != NULL && cfg->push[0] != '\0') {
        if ((ret = push_branch(&s, cfg, res->commit, err)) != 0)
            goto done;
        res->pushed = true;
    }

done:
    if (comps != NULL) {
        for (size_t i = 0; i < ncomps; i++)
            free(comps[i]);
        free(comps);
    }
    free(msg);
    free(safe_manifest);
    free(safe_observed);
    free(safe_message);
    git_signature_free(sig);
    git_tree_free(new_tree);
    git_tree_free(s.tip_tree);
    git_commit_free(s.tip);
    git_repository_free(s.repo);
    free(s.refname);
    if (initialised)
        git_libgit2_shutdown();
    if (ret != 0) {
        /* committed/commit stay set so a caller can report a commit that was not pushed */
        free(res->dir);
        res->dir = NULL;
    }
    return ret;
}

void pc_snapshot_result_free(pc_snapshot_result *res)
{
    if (res == NULL)
        return;
    free(res->dir);
    res->dir = NULL;
}
