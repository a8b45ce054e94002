/* repo_dir.c: a backup repository that is a directory on a mounted file system.
 *
 * Key "wal/X.zst" is the file ROOT/wal/X.zst; directories are made on demand (and their
 * parent fsync'd, so a new directory survives a crash). A put is a dot-named temporary file in
 * the final directory, ROOT/DIR/.NAME.tmp-XXXXXX (pkg/core's pc_durable_*: the shape sweep and
 * older versions' `backup expire` recognise), made visible by commit: fsync of the file, link()
 * for NOREPLACE (it never replaces a name) or rename() for REPLACE, fsync of the directory.
 * Listings skip dot-names at every level, so a temporary is never an object.
 *
 * Deleting the last object of a directory below the first level (ROOT/backups/ID) removes the
 * directory too: a deleted backup leaves nothing behind. First-level directories (wal, backups)
 * stay, so a concurrent push never finds its directory gone.
 *
 * The lock is flock(2) on ROOT/backups/.lock: released by the kernel when its holder dies. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_DIR "backups"
#define LOCK_FILE "backups/.lock"

typedef struct dir_repo {
    pc_repo base;
    char *root; /* no trailing '/' (except "/" itself) */
} dir_repo;

typedef struct dir_obj {
    pc_repo_obj base;
    int fd;
    uint64_t size;
    char *path;
} dir_obj;

typedef struct dir_put {
    pc_repo_put base;
    pc_durable f;
} dir_put;

typedef struct dir_lock {
    pc_repo_lock base;
    int fd;
} dir_lock;

/* The effective user, for "writable by USER" hints. */
static const char *euser(char buf[64])
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL && pw->pw_name != NULL)
        snprintf(buf, 64, "%s", pw->pw_name);
    else
        snprintf(buf, 64, "uid %u", (unsigned)geteuid());
    return buf;
}

static char *path_of(const dir_repo *d, const char *key)
{
    if (strcmp(d->root, "/") == 0)
        return pc_asprintf("/%s", key);
    return pc_asprintf("%s/%s", d->root, key);
}

/* 0 when the root is a directory; else PC_EUNAVAIL saying what to do. */
static int root_check(const dir_repo *d, pc_error *err)
{
    struct stat st;
    char u[64];
    if (stat(d->root, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            return pc_error_set(err, PC_EUNAVAIL,
                                "backup repository %s does not exist: create it, writable by %s "
                                "(or fix archiving.repository)",
                                d->root, euser(u));
        return pc_error_set(err, PC_EUNAVAIL,
                            "backup repository %s is not accessible: %s (is the file system "
                            "mounted, and accessible to %s?)",
                            d->root, strerror(e), euser(u));
    }
    if (!S_ISDIR(st.st_mode))
        return pc_error_set(err, PC_EUNAVAIL,
                            "backup repository %s is not a directory: fix archiving.repository",
                            d->root);
    return 0;
}

/* An object that is not there: PC_EUNAVAIL when the whole repository is missing, else
 * PC_ENOTFOUND. */
static int absent(const dir_repo *d, const char *key, pc_error *err)
{
    int rc = root_check(d, err);
    if (rc != 0)
        return rc;
    return pc_error_set(err, PC_ENOTFOUND, "%s is not in backup repository %s", key, d->root);
}

/* --- reading -------------------------------------------------------------------------------- */

static int dir_stat(pc_repo *r, const char *key, pc_repo_entry *out, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    char *p = path_of(d, key);
    if (p == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    struct stat st;
    int rc = 0;
    if (stat(p, &st) != 0) {
        int e = errno;
        char u[64];
        if (e == ENOENT || e == ENOTDIR)
            rc = absent(d, key, err);
        else
            rc = pc_error_set(err, PC_EUNAVAIL, "cannot stat %s: %s (readable by %s?)", p,
                              strerror(e), euser(u));
    } else if (!S_ISREG(st.st_mode)) {
        rc = absent(d, key, err);
    } else {
        out->key = key;
        out->size = (uint64_t)st.st_size;
        out->mtime = (int64_t)st.st_mtime;
    }
    free(p);
    return rc;
}

static int dir_open(pc_repo *r, const char *key, pc_repo_obj **out, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    dir_obj *o = calloc(1, sizeof *o);
    char *p = path_of(d, key);
    int rc = 0;
    char u[64];
    if (o == NULL || p == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto fail;
    }
    o->base.repo = r;
    o->fd = open(p, O_RDONLY | O_CLOEXEC);
    if (o->fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            rc = absent(d, key, err);
        else
            rc = pc_error_set(err, PC_EUNAVAIL, "cannot open %s: %s (readable by %s?)", p,
                              strerror(e), euser(u));
        goto fail;
    }
    struct stat st;
    if (fstat(o->fd, &st) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot stat %s: %s", p, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = absent(d, key, err);
        goto fail;
    }
    o->size = (uint64_t)st.st_size;
    o->path = p;
    *out = &o->base;
    return 0;
fail:
    if (o != NULL && o->fd >= 0)
        close(o->fd);
    free(o);
    free(p);
    return rc;
}

static uint64_t dir_obj_size(pc_repo_obj *o)
{
    return ((dir_obj *)o)->size;
}

static int dir_pread(pc_repo_obj *ob, uint64_t off, void *buf, size_t n, size_t *got, pc_error *err)
{
    dir_obj *o = (dir_obj *)ob;
    size_t have = 0;
    while (have < n) {
        ssize_t r = pread(o->fd, (char *)buf + have, n - have, (off_t)(off + have));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return pc_error_set(err, PC_EIO, "cannot read %s: %s", o->path, strerror(errno));
        if (r == 0)
            break;
        have += (size_t)r;
    }
    *got = have;
    return 0;
}

static void dir_obj_close(pc_repo_obj *ob)
{
    dir_obj *o = (dir_obj *)ob;
    if (o->fd >= 0)
        close(o->fd);
    free(o->path);
    free(o);
}

/* --- writing -------------------------------------------------------------------------------- */

/* Makes the directories of key's parent (fsyncing the directory each new one is made in). */
static int make_parents(const dir_repo *d, const char *key, pc_error *err)
{
    const char *slash = strrchr(key, '/');
    if (slash == NULL)
        return 0;
    char *p = path_of(d, key);
    if (p == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    size_t rl = strcmp(d->root, "/") == 0 ? 0 : strlen(d->root);
    size_t end = rl + 1 + (size_t)(slash - key); /* p[end] is the key's last '/' */
    int rc = 0;
    char u[64];
    for (size_t i = rl + 1; i <= end && rc == 0; i++) {
        if (p[i] != '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0750) == 0) {
            char *parent = pc_path_dir(p);
            rc = parent != NULL ? pc_fsync_dir(parent, err)
                                : pc_error_set(err, PC_ENOMEM, "out of memory");
            free(parent);
        } else {
            int e = errno;
            struct stat st;
            if (e == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
                ; /* there already */
            else if (e == EEXIST)
                rc = pc_error_set(err, PC_EIO,
                                  "%s exists but is not a directory: move it out of backup "
                                  "repository %s",
                                  p, d->root);
            else
                rc = pc_error_set(err, PC_EIO,
                                  "cannot create %s in backup repository %s: %s (make the "
                                  "repository writable by %s)",
                                  p, d->root, strerror(e), euser(u));
        }
        p[i] = '/';
    }
    free(p);
    return rc;
}

static int dir_put_begin(pc_repo *r, const char *key, pc_repo_put **out, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    dir_put *p = NULL;
    char *path = NULL, *dir = NULL;
    int rc = root_check(d, err);
    if (rc != 0)
        return rc;
    p = calloc(1, sizeof *p);
    path = path_of(d, key);
    if (p == NULL || path == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto fail;
    }
    p->base.repo = r;
    p->f = (pc_durable)PC_DURABLE_INIT;
    /* twice: a concurrent delete may remove an emptied directory between mkdir and open */
    for (int tries = 0; tries < 2; tries++) {
        if ((rc = make_parents(d, key, err)) != 0)
            goto fail;
        pc_error oe = {0};
        rc = pc_durable_open(&p->f, path, 0640, &oe);
        if (rc == 0)
            break;
        if (rc == PC_EIO && p->f.sys_errno == ENOENT && tries == 0)
            continue;
        char u[64];
        dir = pc_path_dir(path);
        rc = rc != PC_EIO
                 ? pc_error_set(err, rc, "%s", oe.msg)
                 : pc_error_set(err, PC_EIO,
                                "cannot write to backup repository directory %s: %s "
                                "(make it writable by %s)",
                                dir != NULL ? dir : path, strerror(p->f.sys_errno), euser(u));
        goto fail;
    }
    /* the mode whatever the umask: the repository's files are the backup user's and its
     * group's (the directory's permissions decide who else) */
    (void)fchmod(p->f.fd, 0640);
    free(path);
    *out = &p->base;
    return 0;
fail:
    if (p != NULL)
        pc_durable_abort(&p->f);
    free(p);
    free(path);
    free(dir);
    return rc;
}

static int dir_put_write(pc_repo_put *pp, const void *data, size_t n, pc_error *err)
{
    dir_put *p = (dir_put *)pp;
    return pc_durable_append(&p->f, data, n, err);
}

static int dir_put_commit(pc_repo_put *pp, pc_repo_commit_mode mode, pc_error *err)
{
    dir_put *p = (dir_put *)pp;
    int rc = pc_durable_commit(
        &p->f, mode == PC_REPO_NOREPLACE ? PC_DURABLE_NOREPLACE : PC_DURABLE_REPLACE, err);
    pc_durable_abort(&p->f);
    free(p);
    return rc;
}

static void dir_put_abort(pc_repo_put *pp)
{
    dir_put *p = (dir_put *)pp;
    pc_durable_abort(&p->f);
    free(p);
}

/* An object found in place may be there from a commit that died between its link and the
 * directory fsync: fsync of the file and of its directory, as commit would have done. */
static int dir_sync(pc_repo *r, const char *key, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    char *p = path_of(d, key);
    char *dir = p != NULL ? pc_path_dir(p) : NULL;
    int rc = 0;
    if (p == NULL || dir == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? absent(d, key, err)
                             : pc_error_set(err, PC_EIO, "cannot open %s: %s", p, strerror(errno));
        goto done;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = pc_error_set(err, PC_EIO, "fsync of %s failed: %s", p, strerror(errno));
        close(fd);
        goto done;
    }
    close(fd);
    rc = pc_fsync_dir(dir, err);
done:
    free(p);
    free(dir);
    return rc;
}

/* --- deleting ------------------------------------------------------------------------------- */

/* Removes path's directory when it is empty and below the first level (ROOT/a/b/...), then
 * its parent the same way. */
static void remove_empty_parents(const dir_repo *d, const char *key)
{
    char *k = pc_strdup(key);
    if (k == NULL)
        return;
    for (;;) {
        char *slash = strrchr(k, '/');
        if (slash == NULL || strchr(k, '/') == slash)
            break; /* first-level directory (or none): it stays */
        *slash = '\0';
        char *p = path_of(d, k);
        if (p == NULL || rmdir(p) != 0) {
            free(p);
            break; /* not empty, or gone: either way done */
        }
        char *parent = pc_path_dir(p);
        if (parent != NULL)
            (void)pc_fsync_dir(parent, NULL);
        free(parent);
        free(p);
    }
    free(k);
}

static int dir_del(pc_repo *r, const char *key, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    char *p = path_of(d, key);
    if (p == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    int rc = 0;
    char u[64];
    if (unlink(p) == 0) {
        char *dir = pc_path_dir(p);
        rc = dir != NULL ? pc_fsync_dir(dir, err) : pc_error_set(err, PC_ENOMEM, "out of memory");
        free(dir);
    } else if (errno == ENOENT || errno == ENOTDIR) {
        rc = root_check(d, err); /* deleting from a repository that is not there is no success */
    } else {
        rc = pc_error_set(err, PC_EIO, "cannot remove %s: %s (writable by %s?)", p, strerror(errno),
                          euser(u));
    }
    if (rc == 0)
        remove_empty_parents(d, key);
    free(p);
    return rc;
}

/* --- listing -------------------------------------------------------------------------------- */

typedef struct list_item {
    char *key;
    uint64_t size;
    int64_t mtime;
} list_item;

typedef struct list_acc {
    list_item *v;
    size_t n, cap;
} list_acc;

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const list_item *)a)->key, ((const list_item *)b)->key);
}

/* Adds every regular file under ROOT/rel (rel "" for the root) whose key starts with prefix,
 * skipping dot-names at every level. */
static int walk(const dir_repo *d, const char *rel, const char *prefix, list_acc *acc,
                pc_error *err)
{
    char *dpath = rel[0] != '\0' ? path_of(d, rel) : pc_strdup(d->root);
    if (dpath == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    DIR *dh = opendir(dpath);
    int rc = 0;
    if (dh == NULL) {
        if (errno != ENOENT && errno != ENOTDIR)
            rc = pc_error_set(err, PC_EUNAVAIL, "cannot read %s: %s", dpath, strerror(errno));
        free(dpath);
        return rc;
    }
    size_t pl = strlen(prefix);
    struct dirent *de;
    while (rc == 0 && (de = readdir(dh)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *key = rel[0] != '\0' ? pc_asprintf("%s/%s", rel, de->d_name) : pc_strdup(de->d_name);
        if (key == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        if (fstatat(dirfd(dh), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            free(key); /* gone meanwhile */
            continue;
        }
        size_t kl = strlen(key);
        size_t cmp = kl < pl ? kl : pl;
        if (strncmp(key, prefix, cmp) != 0 || strlen(key) > PC_REPO_KEY_MAX) {
            free(key);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk(d, key, prefix, acc, err);
            free(key);
            continue;
        }
        if (!S_ISREG(st.st_mode) || kl < pl) {
            free(key);
            continue;
        }
        if (acc->n == acc->cap) {
            size_t nc = acc->cap ? acc->cap * 2 : 64;
            list_item *nv = realloc(acc->v, nc * sizeof *nv);
            if (nv == NULL) {
                free(key);
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                break;
            }
            acc->v = nv;
            acc->cap = nc;
        }
        acc->v[acc->n++] = (list_item){key, (uint64_t)st.st_size, (int64_t)st.st_mtime};
    }
    closedir(dh);
    free(dpath);
    return rc;
}

static int dir_list(pc_repo *r, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    int rc = root_check(d, err);
    if (rc != 0)
        return rc;
    /* start at the deepest directory the prefix names */
    const char *slash = strrchr(prefix, '/');
    char *start = slash != NULL ? pc_strndup(prefix, (size_t)(slash - prefix)) : pc_strdup("");
    list_acc acc = {0};
    if (start == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    rc = walk(d, start, prefix, &acc, err);
    if (rc == 0 && acc.n > 1)
        qsort(acc.v, acc.n, sizeof *acc.v, item_cmp);
    for (size_t i = 0; rc == 0 && i < acc.n; i++) {
        pc_repo_entry e = {acc.v[i].key, acc.v[i].size, acc.v[i].mtime};
        rc = fn(ctx, &e);
    }
    for (size_t i = 0; i < acc.n; i++)
        free(acc.v[i].key);
    free(acc.v);
    free(start);
    return rc;
}

/* --- the lock ------------------------------------------------------------------------------- */

static int dir_lock_take(pc_repo *r, const char *what, pc_repo_lock **out, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    int rc = root_check(d, err);
    if (rc != 0)
        return rc;
    char *dir = path_of(d, LOCK_DIR);
    char *lock = path_of(d, LOCK_FILE);
    dir_lock *l = calloc(1, sizeof *l);
    int fd = -1;
    if (dir == NULL || lock == NULL || l == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (mkdir(dir, 0750) == 0) {
        if ((rc = pc_fsync_dir(d->root, err)) != 0)
            goto done;
    } else if (errno != EEXIST) {
        rc = pc_error_set(err, PC_EIO, "cannot create %s: %s", dir, strerror(errno));
        goto done;
    }
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = pc_error_set(err, PC_EIO, "cannot open lock file %s: %s", lock, strerror(errno));
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            rc = pc_error_set(err, PC_ECONFLICT,
                              "another backup or expire is running on %s (%s is locked); %s "
                              "was not started: retry when it has finished",
                              d->root, lock, what);
        else
            rc = pc_error_set(err, PC_EIO, "cannot lock %s: %s", lock, strerror(e));
        goto done;
    }
    l->base.repo = r;
    l->fd = fd;
    fd = -1;
    *out = &l->base;
    l = NULL;
done:
    if (fd >= 0)
        close(fd);
    free(l);
    free(dir);
    free(lock);
    return rc;
}

static void dir_unlock(pc_repo_lock *lk)
{
    dir_lock *l = (dir_lock *)lk;
    if (l->fd >= 0)
        close(l->fd); /* releases the flock */
    free(l);
}

/* flock is the kernel's and lasts as long as the descriptor: a held lock cannot be lost. */
static int dir_lock_check(pc_repo_lock *lk, pc_error *err)
{
    (void)lk;
    (void)err;
    return 0;
}

/* --- sweep ---------------------------------------------------------------------------------- */

/* Is name a temporary file this repository's put made for an object of backup.h's layout:
 * ".BASE.tmp-XXXXXX" (pc_durable_open's shape, six letters or digits) with BASE a name pkg/backup
 * writes (an archived WAL file, a base backup's files, the encrypted layer's marker)? Other
 * dot-names are not ours and stay, whatever their age. */
static bool is_tmp_name(const char *name)
{
    size_t n = strlen(name);
    static const char mid[] = ".tmp-";
    if (name[0] != '.' || n < 1 + 1 + 5 + 6 || memcmp(name + n - 6 - 5, mid, 5) != 0)
        return false;
    for (const char *x = name + n - 6; *x != '\0'; x++)
        if (!((*x >= '0' && *x <= '9') || (*x >= 'A' && *x <= 'Z') || (*x >= 'a' && *x <= 'z')))
            return false;
    char base[PC_REPO_KEY_MAX + 1];
    size_t bl = n - 1 - 5 - 6;
    if (bl >= sizeof base)
        return false;
    memcpy(base, name + 1, bl);
    base[bl] = '\0';
    size_t sl = strlen(PC_WAL_SUFFIX);
    if (bl > sl && strcmp(base + bl - sl, PC_WAL_SUFFIX) == 0) {
        base[bl - sl] = '\0';
        return pc_wal_name_check(base, NULL, NULL) == 0;
    }
    return strncmp(base, "base.tar", 8) == 0 || strcmp(base, "backup_manifest") == 0 ||
           strcmp(base, "pipectl.json") == 0 || strcmp(base, "pipectl-crypt.json") == 0;
}

typedef struct sweep_ctx {
    int64_t cutoff; /* modified at or before: stale */
    size_t *removed;
    pc_error *err;
    int rc;
} sweep_ctx;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

/* Sweeps ROOT/rel (depth: 0 for the root). */
static int sweep_dir(const dir_repo *d, const char *path, int depth, sweep_ctx *c)
{
    DIR *dh = opendir(path);
    if (dh == NULL)
        return errno == ENOENT
                   ? 0
                   : pc_error_set(c->err, PC_EIO, "cannot read %s: %s", path, strerror(errno));
    int rc = 0;
    bool changed = false;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dh)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dh), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        char *p = pc_asprintf("%s/%s", path, de->d_name);
        if (p == NULL) {
            rc = pc_error_set(c->err, PC_ENOMEM, "out of memory");
            break;
        }
        if (S_ISREG(st.st_mode) && is_tmp_name(de->d_name)) {
            if ((int64_t)st.st_mtime <= c->cutoff) { /* else possibly a put in progress */
                if (unlinkat(dirfd(dh), de->d_name, 0) != 0 && errno != ENOENT)
                    rc = pc_error_set(c->err, PC_EIO, "cannot remove stale temporary file %s: %s",
                                      p, strerror(errno));
                else {
                    (*c->removed)++;
                    changed = true;
                }
            }
        } else if (S_ISDIR(st.st_mode) && depth == 1 && strncmp(de->d_name, ".expire-", 8) == 0 &&
                   strcmp(path + strlen(path) - strlen("/" LOCK_DIR), "/" LOCK_DIR) == 0) {
            /* what an older pipectl's expire left when it was killed mid-way: a backup already
             * taken out of the listing (the caller holds the lock) */
            if (nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
                rc = pc_error_set(c->err, PC_EIO, "cannot remove %s: %s", p, strerror(errno));
            changed = true;
        } else if (S_ISDIR(st.st_mode) && de->d_name[0] != '.') {
            rc = sweep_dir(d, p, depth + 1, c);
            /* an empty directory in a first-level one (backups/ID) is what an aborted put or
             * a crashed delete left; deeper ones are not the repository's */
            if (rc == 0 && depth == 1 && (int64_t)st.st_mtime <= c->cutoff && rmdir(p) == 0)
                changed = true;
        }
        free(p);
    }
    closedir(dh);
    if (rc == 0 && changed)
        rc = pc_fsync_dir(path, c->err);
    return rc;
}

static int dir_sweep(pc_repo *r, int64_t now, int64_t older_than_s, size_t *removed, pc_error *err)
{
    dir_repo *d = (dir_repo *)r;
    int rc = root_check(d, err);
    if (rc != 0)
        return rc;
    sweep_ctx c = {.cutoff = now - older_than_s, .removed = removed, .err = err};
    return sweep_dir(d, d->root, 0, &c);
}

/* --- the handle ----------------------------------------------------------------------------- */

static void dir_close(pc_repo *r)
{
    dir_repo *d = (dir_repo *)r;
    free(d->root);
    free(d->base.uri);
    free(d);
}

static const pc_repo_ops dir_ops = {
    .kind = "dir",
    .stat = dir_stat,
    .open = dir_open,
    .obj_size = dir_obj_size,
    .pread = dir_pread,
    .obj_close = dir_obj_close,
    .put_begin = dir_put_begin,
    .put_write = dir_put_write,
    .put_commit = dir_put_commit,
    .put_abort = dir_put_abort,
    .del = dir_del,
    .list = dir_list,
    .lock = dir_lock_take,
    .unlock = dir_unlock,
    .lock_check = dir_lock_check,
    .sweep = dir_sweep,
    .close = dir_close,
    .sync = dir_sync,
};

int pc_repo_dir_new(const char *path, pc_repo **out, pc_error *err)
{
    *out = NULL;
    if (path == NULL || path[0] != '/')
        return pc_error_set(err, PC_EINVAL,
                            "backup repository %s is not an absolute directory path",
                            path != NULL ? path : "(none)");
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    dir_repo *d = calloc(1, sizeof *d);
    if (d == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    d->base.ops = &dir_ops;
    d->root = pc_strndup(path, n);
    d->base.uri = pc_strndup(path, n);
    if (d->root == NULL || d->base.uri == NULL) {
        dir_close(&d->base);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    *out = &d->base;
    return 0;
}
