/* durable.c: writing a file so that it is either wholly there after a crash or not at all.
 *
 * Every file pipectl must not lose goes through here (plan files, backup metadata and tar,
 * archived and fetched WAL, the restored server's configuration): temporary name in the same
 * directory, write, fsync, close, rename, fsync of the directory. One implementation means one
 * place where the error paths are right: each step's failure removes the temporary file and
 * leaves no descriptor open, which the unit tests check by making each system call fail through
 * the pc_core_sys table. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int sys_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

const pc_core_sys pc_core_sys_default = {
    .open = sys_open,
    .write = write,
    .fsync = fsync,
    .close = close,
    .rename = rename,
    .link = link,
    .unlink = unlink,
};

static const pc_core_sys *g_sys = &pc_core_sys_default;

void pc_core_sys_set(const pc_core_sys *sys)
{
    g_sys = sys != NULL ? sys : &pc_core_sys_default;
}

char *pc_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return pc_strdup(".");
    if (slash == path)
        return pc_strdup("/");
    return pc_strndup(path, (size_t)(slash - path));
}

int pc_fsync_dir(const char *dir, pc_error *err)
{
    const pc_core_sys *sys = g_sys;
    int fd = sys->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        pc_error_set(err, PC_EIO, "cannot open directory %s to fsync it: %s", dir, strerror(e));
        errno = e; /* for pc_durable's sys_errno */
        return PC_EIO;
    }
    int rc = 0, e = 0;
    if (sys->fsync(fd) != 0 && errno != EINVAL) {
        e = errno;
        rc = pc_error_set(err, PC_EIO, "fsync of directory %s failed: %s", dir, strerror(e));
    }
    (void)sys->close(fd); /* read-only: nothing a close error could have lost */
    errno = e;
    return rc;
}

/* Six characters of [A-Za-z0-9], the shape mkstemp(3) makes (and `backup expire` recognises);
 * uniqueness comes from O_EXCL, the mixing only makes collisions rare. */
static void tmp_suffix(char out[7])
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
                 (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15u);
    /* splitmix64 finalizer */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    x ^= x >> 31;
    for (int i = 0; i < 6; i++) {
        out[i] = set[x % 62];
        x /= 62;
    }
    out[6] = '\0';
}

/* Remembers errno and sets the message "cannot write PATH: ...". */
static int fail(pc_durable *f, pc_error *err, int code, const char *step, const char *what)
{
    f->sys_errno = errno;
    return pc_error_set(err, code, "cannot write %s: %s %s failed: %s", f->path, step, what,
                        strerror(f->sys_errno));
}

int pc_durable_open(pc_durable *f, const char *path, mode_t mode, pc_error *err)
{
    *f = (pc_durable)PC_DURABLE_INIT;
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return pc_error_set(err, PC_EINVAL, "cannot write %s: not a file name", path);
    f->path = pc_strdup(path);
    f->dir = pc_path_dir(path);
    if (f->path == NULL || f->dir == NULL) {
        pc_durable_abort(f);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    /* DIR/.BASE.tmp-XXXXXX (no "./" when path has no directory part) */
    int dl = slash != NULL ? (int)(base - path) : 0;
    for (int tries = 0; tries < 100; tries++) {
        char sfx[7];
        tmp_suffix(sfx);
        free(f->tmp);
        f->tmp = pc_asprintf("%.*s.%s.tmp-%s", dl, path, base, sfx);
        if (f->tmp == NULL) {
            pc_durable_abort(f);
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        f->fd = g_sys->open(f->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        int rc = fail(f, err, PC_EIO, "creating temporary file", f->tmp);
        free(f->tmp); /* never created: nothing to remove */
        f->tmp = NULL;
        pc_durable_abort(f); /* keeps sys_errno */
        return rc;
    }
    return 0;
}

int pc_durable_append(pc_durable *f, const void *data, size_t len, pc_error *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = g_sys->write(f->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* write(2) that makes no progress: do not spin */
            return fail(f, err, PC_EIO, "write to", f->tmp);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int pc_durable_commit(pc_durable *f, int flags, pc_error *err)
{
    const pc_core_sys *sys = g_sys;
    int rc = 0;
    if (f->fd < 0 || f->tmp == NULL)
        return pc_error_set(err, PC_EINVAL, "cannot write %s: no temporary file to commit",
                            f->path != NULL ? f->path : "(unopened file)");
    if (sys->fsync(f->fd) != 0) {
        rc = fail(f, err, PC_EIO, "fsync of", f->tmp);
        goto done;
    }
    int cr = sys->close(f->fd);
    f->fd = -1; /* released even when close reports an error: never close it twice */
    if (cr != 0) {
        rc = fail(f, err, PC_EIO, "close of", f->tmp);
        goto done;
    }
    if (flags & PC_DURABLE_NOREPLACE) {
        if (sys->link(f->tmp, f->path) == 0) {
            (void)sys->unlink(f->tmp); /* the name is in place; a leftover link is harmless */
        } else if (errno == EEXIST) {
            f->sys_errno = EEXIST;
            rc = pc_error_set(err, PC_ECONFLICT, "cannot write %s: it already exists", f->path);
            goto done;
        } else if (errno == EPERM || errno == EOPNOTSUPP || errno == EXDEV || errno == EMLINK ||
                   errno == ENOSYS) {
            /* no hard links here: check, then rename */
            struct stat st;
            if (lstat(f->path, &st) == 0) {
                f->sys_errno = EEXIST;
                rc = pc_error_set(err, PC_ECONFLICT, "cannot write %s: it already exists", f->path);
                goto done;
            }
            if (sys->rename(f->tmp, f->path) != 0) {
                rc = fail(f, err, PC_EIO, "rename of", f->tmp);
                goto done;
            }
        } else {
            rc = fail(f, err, PC_EIO, "link of", f->tmp);
            goto done;
        }
    } else if (sys->rename(f->tmp, f->path) != 0) {
        rc = fail(f, err, PC_EIO, "rename of", f->tmp);
        goto done;
    }
    free(f->tmp); /* renamed, or linked and unlinked: nothing left to remove */
    f->tmp = NULL;
    if ((rc = pc_fsync_dir(f->dir, err)) != 0) {
        f->sys_errno = errno;
        pc_error_prefix(err, "cannot write %s", f->path);
    }
done:
    if (f->fd >= 0) {
        (void)sys->close(f->fd);
        f->fd = -1;
    }
    if (f->tmp != NULL) {
        (void)sys->unlink(f->tmp);
        free(f->tmp);
        f->tmp = NULL;
    }
    return rc;
}

void pc_durable_abort(pc_durable *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        (void)g_sys->close(f->fd);
    if (f->tmp != NULL)
        (void)g_sys->unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f->dir);
    int e = f->sys_errno;
    *f = (pc_durable)PC_DURABLE_INIT;
    f->sys_errno = e;
}

int pc_durable_write(const char *path, const void *data, size_t len, mode_t mode, pc_error *err)
{
    pc_durable f = PC_DURABLE_INIT;
    int rc = pc_durable_open(&f, path, mode, err);
    if (rc == 0)
        rc = pc_durable_append(&f, data, len, err);
    if (rc == 0)
        rc = pc_durable_commit(&f, PC_DURABLE_REPLACE, err);
    pc_durable_abort(&f);
    return rc;
}
