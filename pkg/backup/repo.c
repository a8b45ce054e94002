/* repo.c: the one door into a backup repository: pc_repo_open_config picks the kind from the
 * URI (a directory, s3://bucket/prefix, either of them encrypted), and every call the rest of
 * pkg/backup makes is checked here (key shape, arguments) before it is handed to the kind's
 * table, so each implementation can trust what it receives. */
#include "repo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRYPT_MARKER "pipectl-crypt.json"
#define GET_CHUNK (256 * 1024)

/* --- keys ----------------------------------------------------------------------------------- */

/* What a key may hold, shown escaped and cut (a key can come from a damaged listing). */
static int bad_key(pc_error *err, const char *key, const char *why)
{
    char shown[80];
    size_t n = key != NULL ? strlen(key) : 0;
    snprintf(shown, sizeof shown, "%.*s%s", 64, key != NULL ? key : "", n > 64 ? "..." : "");
    for (char *p = shown; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?';
    return pc_error_set(err, PC_EINVAL, "'%s' is not a repository object name: %s", shown, why);
}

/* Checks the components of s[0..n): none empty, none "." or "..", none starting with '.' (the
 * directory kind keeps its temporaries and lock under dot-names and never lists them, so a
 * dot-named key could be written but never listed), no control character. */
static const char *components_problem(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f))
            return "it holds a control character";
        if (i < n && s[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0)
            return "it has an empty component (a leading, trailing or doubled '/')";
        if (s[start] == '.')
            return "a component starts with '.' (\".\", \"..\" and dot-names are reserved)";
        start = i + 1;
    }
    return NULL;
}

int pc_repo_key_check(const char *key, pc_error *err)
{
    if (key == NULL || key[0] == '\0')
        return bad_key(err, key, "it is empty");
    size_t n = strlen(key);
    if (n > PC_REPO_KEY_MAX)
        return bad_key(err, key, "it is longer than 512 bytes");
    const char *why = components_problem(key, n);
    return why != NULL ? bad_key(err, key, why) : 0;
}

/* A listing prefix: "" or a key's beginning; a trailing '/' is allowed. */
static int prefix_check(const char *prefix, pc_error *err)
{
    if (prefix == NULL)
        return pc_error_set(err, PC_EINVAL, "no listing prefix given");
    size_t n = strlen(prefix);
    if (n == 0)
        return 0;
    if (n > PC_REPO_KEY_MAX)
        return bad_key(err, prefix, "it is longer than 512 bytes");
    if (prefix[n - 1] == '/')
        n--;
    const char *why = n > 0 ? components_problem(prefix, n) : "it is only '/'";
    return why != NULL ? bad_key(err, prefix, why) : 0;
}

static int no_repo(pc_error *err)
{
    return pc_error_set(err, PC_EINVAL, "no backup repository open");
}

/* --- dispatch ------------------------------------------------------------------------------- */

int pc_repo_stat(pc_repo *r, const char *key, pc_repo_entry *out, pc_error *err)
{
    if (r == NULL)
        return no_repo(err);
    int rc = pc_repo_key_check(key, err);
    if (rc != 0)
        return rc;
    pc_repo_entry tmp;
    return r->ops->stat(r, key, out != NULL ? out : &tmp, err);
}

int pc_repo_open(pc_repo *r, const char *key, pc_repo_obj **out, pc_error *err)
{
    *out = NULL;
    if (r == NULL)
        return no_repo(err);
    int rc = pc_repo_key_check(key, err);
    if (rc != 0)
        return rc;
    return r->ops->open(r, key, out, err);
}

uint64_t pc_repo_obj_size(pc_repo_obj *o)
{
    return o != NULL ? o->repo->ops->obj_size(o) : 0;
}

int pc_repo_pread(pc_repo_obj *o, uint64_t off, void *buf, size_t n, size_t *got, pc_error *err)
{
    size_t tmp = 0;
    if (got == NULL)
        got = &tmp;
    *got = 0;
    if (o == NULL)
        return pc_error_set(err, PC_EINVAL, "no repository object open");
    if (n == 0)
        return 0;
    return o->repo->ops->pread(o, off, buf, n, got, err);
}

void pc_repo_obj_close(pc_repo_obj *o)
{
    if (o != NULL)
        o->repo->ops->obj_close(o);
}

int pc_repo_put_begin(pc_repo *r, const char *key, pc_repo_put **out, pc_error *err)
{
    *out = NULL;
    if (r == NULL)
        return no_repo(err);
    int rc = pc_repo_key_check(key, err);
    if (rc != 0)
        return rc;
    return r->ops->put_begin(r, key, out, err);
}

int pc_repo_put_write(pc_repo_put *p, const void *data, size_t n, pc_error *err)
{
    if (p == NULL)
        return pc_error_set(err, PC_EINVAL, "no repository object being written");
    if (n == 0)
        return 0;
    return p->repo->ops->put_write(p, data, n, err);
}

int pc_repo_put_commit(pc_repo_put *p, pc_repo_commit_mode mode, pc_error *err)
{
    if (p == NULL)
        return pc_error_set(err, PC_EINVAL, "no repository object being written");
    return p->repo->ops->put_commit(p, mode, err);
}

void pc_repo_put_abort(pc_repo_put *p)
{
    if (p != NULL)
        p->repo->ops->put_abort(p);
}

int pc_repo_put_all(pc_repo *r, const char *key, const void *data, size_t len,
                    pc_repo_commit_mode mode, pc_error *err)
{
    pc_repo_put *p = NULL;
    int rc = pc_repo_put_begin(r, key, &p, err);
    if (rc != 0)
        return rc;
    if ((rc = pc_repo_put_write(p, data, len, err)) != 0) {
        pc_repo_put_abort(p);
        return rc;
    }
    return pc_repo_put_commit(p, mode, err);
}

int pc_repo_get_all(pc_repo *r, const char *key, pc_buf *out, size_t max, pc_error *err)
{
    pc_repo_obj *o = NULL;
    int rc = pc_repo_open(r, key, &o, err);
    if (rc != 0)
        return rc;
    uint64_t size = pc_repo_obj_size(o);
    if (size > max) {
        rc = pc_error_set(err, PC_EIO,
                          "%s in backup repository %s is %llu bytes, more than the %zu expected: "
                          "it is not what pipectl wrote (inspect it)",
                          key, pc_repo_uri(r), (unsigned long long)size, max);
        goto done;
    }
    /* read to the end, not to size: the object's size is what a reader gets, but a short
     * read is the one sure end */
    uint64_t off = 0;
    char *buf = malloc(GET_CHUNK);
    if (buf == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        size_t got = 0;
        if ((rc = pc_repo_pread(o, off, buf, GET_CHUNK, &got, err)) != 0)
            break;
        if (got == 0)
            break;
        off += got;
        if (off > max) {
            rc = pc_error_set(err, PC_EIO,
                              "%s in backup repository %s is more than the %zu bytes expected: "
                              "it is not what pipectl wrote (inspect it)",
                              key, pc_repo_uri(r), max);
            break;
        }
        if (pc_buf_append(out, buf, got) != 0) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            break;
        }
    }
    free(buf);
done:
    pc_repo_obj_close(o);
    return rc;
}

int pc_repo_sync(pc_repo *r, const char *key, pc_error *err)
{
    if (r == NULL)
        return no_repo(err);
    int rc = pc_repo_key_check(key, err);
    if (rc != 0)
        return rc;
    return r->ops->sync != NULL ? r->ops->sync(r, key, err) : 0;
}

int pc_repo_delete(pc_repo *r, const char *key, pc_error *err)
{
    if (r == NULL)
        return no_repo(err);
    int rc = pc_repo_key_check(key, err);
    if (rc != 0)
        return rc;
    return r->ops->del(r, key, err);
}

int pc_repo_list(pc_repo *r, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err)
{
    if (r == NULL)
        return no_repo(err);
    int rc = prefix_check(prefix, err);
    if (rc != 0)
        return rc;
    return r->ops->list(r, prefix, fn, ctx, err);
}

int pc_repo_lock_take(pc_repo *r, const char *what, pc_repo_lock **out, pc_error *err)
{
    *out = NULL;
    if (r == NULL)
        return no_repo(err);
    return r->ops->lock(r, what != NULL ? what : "this operation", out, err);
}

void pc_repo_unlock(pc_repo_lock *l)
{
    if (l != NULL)
        l->repo->ops->unlock(l);
}

int pc_repo_lock_check(pc_repo_lock *l, pc_error *err)
{
    if (l == NULL)
        return pc_error_set(err, PC_EINVAL, "no repository lock held");
    return l->repo->ops->lock_check(l, err);
}

int pc_repo_sweep(pc_repo *r, int64_t now, int64_t older_than_s, size_t *removed, pc_error *err)
{
    size_t tmp = 0;
    if (removed == NULL)
        removed = &tmp;
    *removed = 0;
    if (r == NULL)
        return no_repo(err);
    return r->ops->sweep(r, now, older_than_s, removed, err);
}

const char *pc_repo_uri(const pc_repo *r)
{
    return r != NULL && r->uri != NULL ? r->uri : "(no repository)";
}

const char *pc_repo_kind(const pc_repo *r)
{
    return r != NULL ? r->ops->kind : "none";
}

/* --- opening -------------------------------------------------------------------------------- */

static const char *env_get(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

/* s3://bucket[/prefix]: the bucket and the prefix without surrounding '/'. */
static int open_s3(const pc_repo_config *cfg, pc_repo **out, pc_error *err)
{
    const char *rest = cfg->uri + 5;
    const char *slash = strchr(rest, '/');
    size_t bl = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    char *bucket = NULL, *prefix = NULL;
    int rc = 0;
    if (bl == 0) {
        return pc_error_set(err, PC_EINVAL,
                            "backup repository %s names no bucket: write s3://BUCKET or "
                            "s3://BUCKET/PREFIX",
                            cfg->uri);
    }
    bucket = pc_strndup(rest, bl);
    const char *p = slash != NULL ? slash + 1 : "";
    size_t pl = strlen(p);
    while (pl > 0 && p[pl - 1] == '/')
        pl--;
    prefix = pc_strndup(p, pl);
    if (bucket == NULL || prefix == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (pl > 0 && components_problem(prefix, pl) != NULL) {
        rc = pc_error_set(err, PC_EINVAL,
                          "backup repository %s: the prefix after the bucket %s (write "
                          "s3://BUCKET/a/b, without '.', '..' or empty parts)",
                          cfg->uri, components_problem(prefix, pl));
        goto done;
    }
    pc_s3_config s3 = {0};
    if (cfg->s3 != NULL) {
        s3 = *cfg->s3;
    } else {
        s3.getenv_fn = env_get;
    }
    s3.bucket = bucket;
    rc = pc_repo_s3_new(&s3, prefix, out, err);
done:
    free(bucket);
    free(prefix);
    return rc;
}

int pc_repo_open_config(const pc_repo_config *cfg, pc_repo **out, pc_error *err)
{
    *out = NULL;
    pc_repo *r = NULL;
    int rc = 0;
    if (cfg == NULL || cfg->uri == NULL || cfg->uri[0] == '\0')
        return pc_error_set(err, PC_EINVAL,
                            "no backup repository given: set archiving.repository (or pass "
                            "--repository)");
    if (strncmp(cfg->uri, "s3://", 5) == 0)
        rc = open_s3(cfg, &r, err);
    else if (cfg->uri[0] == '/')
        rc = pc_repo_dir_new(cfg->uri, &r, err);
    else
        rc = pc_error_set(err, PC_EINVAL,
                          "backup repository %s is neither an absolute directory path nor an "
                          "s3://BUCKET[/PREFIX] URI",
                          cfg->uri);
    if (rc != 0)
        return rc;
    if (cfg->passphrase != NULL) {
        pc_repo *inner = r;
        r = NULL;
        if ((rc = pc_repo_crypt_new(inner, cfg->passphrase, &r, err)) != 0)
            return rc; /* inner is freed by pc_repo_crypt_new */
    } else {
        /* Without a passphrase the objects of an encrypted repository would be read as if they
         * were plain (and new ones written plain beside them): refuse before anything is read
         * or written. A repository that cannot be reached is left for the first real call to
         * report, with its own message. */
        pc_error se = {0};
        if (pc_repo_stat(r, CRYPT_MARKER, NULL, &se) == 0) {
            rc = pc_error_set(err, PC_EINVAL,
                              "backup repository %s is encrypted: set archiving.encryption.key "
                              "(the passphrase it was created with)",
                              pc_repo_uri(r));
            pc_repo_close(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void pc_repo_close(pc_repo *r)
{
    if (r != NULL)
        r->ops->close(r);
}
