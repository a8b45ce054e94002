/* wal_ahead.c: push-ahead for wal-push --parallel N (archiving.parallel; backup.h): a detached
 * background pusher pushes the files waiting in pg_wal/archive_status ahead of PostgreSQL's calls
 * and leaves a marker for each (pg_wal/pipectl_spool/NAME.ok); the later call for that file
 * answers from its marker when the file is still the one pushed. The single push, the stored
 * format and the source checks are wal.c's (through backup_int.h). */
#include "backup_int.h"
#include "repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- the identity of the file a push read ----------------------------------------------------- */

static void src_ident_from(pc__src_ident *id, const struct stat *st)
{
    id->dev = (unsigned long long)st->st_dev;
    id->ino = (unsigned long long)st->st_ino;
    id->size = (unsigned long long)st->st_size;
    id->mtime_s = (long long)st->st_mtim.tv_sec;
    id->mtime_ns = st->st_mtim.tv_nsec;
    id->ctime_s = (long long)st->st_ctim.tv_sec;
    id->ctime_ns = st->st_ctim.tv_nsec;
}

static bool src_ident_same(const pc__src_ident *a, const pc__src_ident *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s &&
           a->ctime_ns == b->ctime_ns;
}

/* The largest file timestamp granularity the identity rule allows for (1 s: ext4 with 128-byte
 * inodes, ext3; ext4, xfs, btrfs and tmpfs have 1 ns, from the kernel's coarse clock). */
#define IDENT_GRAN_NS 1000000000LL

/* Why a recorded identity cannot vouch for content other than what was stored:
 * - t0 is the coarse real-time clock (the clock the kernel stamps files with) read before the
 *   "before" fstat, which comes before the first byte is read; "after" is an fstat of the same
 *   descriptor once the last byte was read (and the object committed). The identity is kept
 *   only when before == after (no change stamped while we read) and the file's ctime is at
 *   least one granularity (IDENT_GRAN_NS) older than t0.
 * - Every change to a file's bytes or name sets its ctime to the current coarse time truncated
 *   to the file system's granularity g <= IDENT_GRAN_NS: a write or truncate (mtime and ctime),
 *   a rename (ctime: PostgreSQL recycles a segment by renaming an old file to a future name, a
 *   different inode besides), utimensat (ctime; ctime itself cannot be set from user space). A
 *   change at any time after t0 thus stamps ctime >= t0 - g > the recorded ctime, so the later
 *   stat sees another ctime; a change before t0 happened before the read, so the stored bytes
 *   include it. Changes while we read show as before != after: nothing recorded.
 * - A file replaced under the name (rename over it, unlink and create) is another inode, or
 *   the same inode number reused with a new ctime.
 * What this does not cover: writes that bypass the kernel's file layer (the block device
 *   itself), a real-time clock stepped back by more than the file's age, a file system with a
 *   coarser granularity than 1 s (FAT's 2 s) or that does not stamp ctime (some network file
 *   systems' cached attributes): pg_wal on such storage is not supported by PostgreSQL either.
 * The cost: a file changed less than a second before the pusher read it gets no identity and is
 * hashed by its later call, which only matters when archiving keeps up anyway. */
void pc__src_ident_check(pc__src_ident *id, const struct timespec *t0, const struct stat *before,
                         const struct stat *after)
{
    pc__src_ident a;
    src_ident_from(id, before);
    src_ident_from(&a, after);
    long long c_ns = id->ctime_s * 1000000000LL + id->ctime_ns;
    long long t_ns = (long long)t0->tv_sec * 1000000000LL + t0->tv_nsec;
    id->ok = S_ISREG(after->st_mode) && src_ident_same(id, &a) && c_ns <= t_ns - IDENT_GRAN_NS;
}

/* --- push-ahead (backup.h) ---------------------------------------------------------------------
 * Why each crash is safe: a marker is written (pc_durable: temporary file, fsync, rename,
 * directory fsync) only after the object's commit returned 0, and commit returns only once the
 * object is durable (repo.h). So an existing marker always means a durable object. A crash
 * before the commit leaves no object (or a leftover the repository's sweep removes) and no
 * marker; between the commit and the marker, an object and no marker: the later call pushes
 * normally, finds the object (NOREPLACE conflict) with the same content and answers "already".
 * A marker lost (spool directory gone, say) only costs that normal push. A marker is believed
 * only for the same repository id and a file that is the one the pusher read: the same identity
 * (device, inode, size, mtime and ctime to the nanosecond, recorded from the descriptor the
 * pusher read; pc__src_ident_check says why that is enough) without reading it, else the same
 * SHA-256 and size; so a recycled file or a changed archive_command never rides on an old
 * marker. */

#define SPOOL_MAGIC "pipectl-wal-spool 1\n"
#define SPOOL_MARKER_MAX 4096

static char *spool_path(const char *waldir, const char *name)
{
    return name != NULL ? pc_asprintf("%s/" PC_WAL_SPOOL_DIR "/%s.ok", waldir, name)
                        : pc_asprintf("%s/" PC_WAL_SPOOL_DIR, waldir);
}

/* The marker: SPOOL_MAGIC, then "repository ID", "sha256 HEX", "size N", "stored_size N" and,
 * when the push recorded one, "source DEV INO SIZE MTIME_S MTIME_NS CTIME_S CTIME_NS" (the
 * identity of the file read, pc__src_ident_check). A marker without the source line (an older
 * pusher's) is still believed, by hashing the file. */
static int marker_write(const char *waldir, const char *name, const char *repo_id,
                        const pc_wal_info *info, const pc__src_ident *id, pc_error *err)
{
    char *p = spool_path(waldir, name);
    pc_buf b = {0};
    int rc = p == NULL ? PC_ENOMEM : 0;
    if (rc == 0)
        rc = pc_buf_printf(
            &b, SPOOL_MAGIC "repository %s\nsha256 %s\nsize %llu\nstored_size %llu\n", repo_id,
            info->sha256, (unsigned long long)info->size, (unsigned long long)info->stored_size);
    if (rc == 0 && id != NULL && id->ok)
        rc = pc_buf_printf(&b, "source %llu %llu %llu %lld %ld %lld %ld\n", id->dev, id->ino,
                           id->size, id->mtime_s, id->mtime_ns, id->ctime_s, id->ctime_ns);
    if (rc != 0)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    else
        rc = pc_durable_write(p, b.data, b.len, 0600, err);
    pc_buf_free(&b);
    free(p);
    return rc;
}

/* Reads name's marker: 0 and *info when it exists, is well formed and names repo_id; else
 * non-zero (absent or unusable: either way, push normally). */
static int marker_read(const char *waldir, const char *name, const char *repo_id, pc_wal_info *info,
                       pc__src_ident *id)
{
    char *p = spool_path(waldir, name);
    if (p == NULL)
        return -1;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(p);
    if (fd < 0)
        return -1;
    char text[SPOOL_MARKER_MAX + 1];
    ssize_t n = pc__read_full(fd, text, SPOOL_MARKER_MAX);
    close(fd);
    if (n <= 0 || n >= SPOOL_MARKER_MAX)
        return -1;
    text[n] = '\0';
    size_t ml = strlen(SPOOL_MAGIC);
    if (strncmp(text, SPOOL_MAGIC, ml) != 0 || strncmp(text + ml, "repository ", 11) != 0)
        return -1;
    const char *r = text + ml + 11;
    const char *nl = strchr(r, '\n');
    if (nl == NULL || (size_t)(nl - r) != strlen(repo_id) || strncmp(r, repo_id, (size_t)(nl - r)))
        return -1;
    char sha[65];
    unsigned long long size = 0, stored_n = 0;
    int used = 0;
    if (sscanf(nl + 1, "sha256 %64[0-9a-f]\nsize %llu\nstored_size %llu\n%n", sha, &size, &stored_n,
               &used) != 3 ||
        strlen(sha) != 64)
        return -1;
    const char *rest = nl + 1 + used;
    pc__src_ident si = {0};
    if (*rest != '\0') {
        int u2 = 0;
        if (sscanf(rest, "source %llu %llu %llu %lld %ld %lld %ld\n%n", &si.dev, &si.ino, &si.size,
                   &si.mtime_s, &si.mtime_ns, &si.ctime_s, &si.ctime_ns, &u2) != 7 ||
            rest[u2] != '\0' || si.size != size)
            return -1;
        si.ok = true;
    }
    if (id != NULL)
        *id = si;
    memcpy(info->sha256, sha, 65);
    info->size = size;
    info->stored_size = stored_n;
    return 0;
}

static void marker_remove(const char *waldir, const char *name)
{
    char *p = spool_path(waldir, name);
    if (p != NULL)
        (void)unlink(p);
    free(p);
}

/* PostgreSQL's order (pgarch.c): timeline history files first, then the oldest. */
static int ready_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    bool hx = strstr(x, ".history") != NULL, hy = strstr(y, ".history") != NULL;
    if (hx != hy)
        return hx ? -1 : 1;
    return strcmp(x, y);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* The names waiting in waldir/archive_status (NAME.ready), other than skip, in PostgreSQL's
 * order; markers of files no longer waiting are removed. *out owned, each string too. */
static int ready_list(const char *waldir, const char *skip, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char *sdir = pc_asprintf("%s/archive_status", waldir);
    char *spool = spool_path(waldir, NULL);
    DIR *d = sdir != NULL ? opendir(sdir) : NULL;
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (!has_suffix(de->d_name, ".ready"))
            continue;
        size_t len = strlen(de->d_name) - 6;
        char name[64];
        if (len >= sizeof name)
            continue;
        memcpy(name, de->d_name, len);
        name[len] = '\0';
        if (pc_wal_name_check(name, NULL, NULL) != 0 || strcmp(name, skip) == 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof *nv);
            if (nv == NULL) {
                rc = PC_ENOMEM;
                break;
            }
            v = nv, cap = nc;
        }
        if ((v[n] = pc_strdup(name)) == NULL) {
            rc = PC_ENOMEM;
            break;
        }
        n++;
    }
    if (d != NULL)
        closedir(d);
    if (rc == 0 && n > 0)
        qsort(v, n, sizeof *v, ready_cmp);
    /* stale markers: their file is archived (PostgreSQL renamed .ready to .done) or gone */
    DIR *sd = rc == 0 && spool != NULL ? opendir(spool) : NULL;
    while (sd != NULL && (de = readdir(sd)) != NULL) {
        size_t cut = has_suffix(de->d_name, ".ok") ? 3 : has_suffix(de->d_name, ".fail") ? 5 : 0;
        if (cut == 0)
            continue;
        char name[64];
        size_t len = strlen(de->d_name) - cut;
        if (len >= sizeof name)
            continue;
        memcpy(name, de->d_name, len);
        name[len] = '\0';
        bool waiting = false;
        for (size_t i = 0; i < n && !waiting; i++)
            waiting = strcmp(v[i], name) == 0;
        if (!waiting && strcmp(name, skip) != 0)
            (void)unlinkat(dirfd(sd), de->d_name, 0);
    }
    if (sd != NULL)
        closedir(sd);
    free(sdir);
    free(spool);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

typedef struct ahead_job {
    pthread_t tid;
    bool started;
    pc_repo *repo;
    char *name, *path;
    const char *waldir, *repo_id;
    int rc;
    pc_wal_push_result res;
    pc_wal_info info;
    pc__src_ident ident;
    pc_error err;
} ahead_job;

static void *ahead_main(void *arg)
{
    ahead_job *j = arg;
    j->rc = pc__wal_push_ident(j->repo, j->path, j->name, &j->res, &j->info, &j->ident, &j->err);
    /* only a push that returned 0 is durable: then, and only then, the marker */
    if (j->rc == 0 && j->repo_id != NULL)
        j->rc = marker_write(j->waldir, j->name, j->repo_id, &j->info, &j->ident, &j->err);
    return NULL;
}

static void hint_fail(const char *waldir, const char *name)
{
    char *p = pc_asprintf("%s/" PC_WAL_SPOOL_DIR "/%s.fail", waldir, name);
    int fd = p != NULL ? open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd >= 0)
        close(fd);
    free(p);
}

static bool take_hint_fail(const char *waldir, const char *name)
{
    char *p = pc_asprintf("%s/" PC_WAL_SPOOL_DIR "/%s.fail", waldir, name);
    bool had = p != NULL && unlink(p) == 0;
    free(p);
    return had;
}

/* The background pusher (a child process holding the spool lock): o->parallel workers, each
 * with one repository handle for the pusher's life, take the oldest waiting file nobody took yet
 * (archive_status is read again at each pick, so files that become ready meanwhile are pushed
 * too), push it and write its marker, until no waiting file lacks a marker; a file that fails
 * once is given up (its .fail hint tells the call waiting for it to push it itself).
 * skip: the file the parent pushes. */
typedef struct pusher {
    pthread_mutex_t mu;
    const char *waldir, *skip;
    const pc_wal_push_opts *o;
    char **taken; /* every name a worker took (pushed, being pushed or failed) */
    size_t ntaken;
} pusher;

/* The next file to push (owned), or NULL when none is left. */
static char *pusher_pick(pusher *p)
{
    char *pick = NULL;
    char **ready = NULL;
    size_t nready = 0;
    pthread_mutex_lock(&p->mu);
    if (ready_list(p->waldir, p->skip, &ready, &nready) == 0) {
        for (size_t i = 0; i < nready && pick == NULL; i++) {
            bool taken = false;
            for (size_t k = 0; k < p->ntaken && !taken; k++)
                taken = strcmp(p->taken[k], ready[i]) == 0;
            pc_wal_info old;
            if (taken || marker_read(p->waldir, ready[i], p->o->repo_id, &old, NULL) == 0)
                continue;
            char **nt = realloc(p->taken, (p->ntaken + 1) * sizeof *nt);
            char *copy = pc_strdup(ready[i]);
            if (nt != NULL)
                p->taken = nt;
            if (nt == NULL || copy == NULL) {
                free(copy);
                break;
            }
            p->taken[p->ntaken++] = copy;
            pick = ready[i];
            ready[i] = NULL;
        }
        for (size_t i = 0; i < nready; i++)
            free(ready[i]);
        free(ready);
    }
    pthread_mutex_unlock(&p->mu);
    return pick;
}

typedef struct pusher_arg {
    pusher *p;
    pc_repo *repo; /* the worker's handle, opened by pusher_main */
} pusher_arg;

static void *pusher_worker(void *arg)
{
    pusher *p = ((pusher_arg *)arg)->p;
    ahead_job j = {
        .waldir = p->waldir, .repo_id = p->o->repo_id, .repo = ((pusher_arg *)arg)->repo};
    while ((j.name = pusher_pick(p)) != NULL) {
        j.path = pc_asprintf("%s/%s", p->waldir, j.name);
        pc_error_clear(&j.err);
        j.rc = PC_ENOMEM;
        if (j.path != NULL)
            ahead_main(&j);
        if (j.rc != 0)
            hint_fail(p->waldir, j.name);
        free(j.path);
        free(j.name);
    }
    return NULL;
}

static void pusher_main(const char *waldir, const char *skip, const pc_wal_push_opts *o)
{
    pusher p = {.waldir = waldir, .skip = skip, .o = o};
    pthread_t tids[PC_WAL_PARALLEL_MAX];
    bool started[PC_WAL_PARALLEL_MAX] = {false};
    pusher_arg args[PC_WAL_PARALLEL_MAX] = {{0}};
    pthread_mutex_init(&p.mu, NULL);
    /* handles are opened here, one after the other: the opener need not be thread-safe */
    for (unsigned i = 0; i < o->parallel; i++) {
        pc_error oe = {0};
        args[i].p = &p;
        if (o->open_repo(o->open_ctx, &args[i].repo, &oe) == 0)
            started[i] = pthread_create(&tids[i], NULL, pusher_worker, &args[i]) == 0;
    }
    for (unsigned i = 0; i < o->parallel; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        pc_repo_close(args[i].repo);
    }
    pthread_mutex_destroy(&p.mu);
    for (size_t k = 0; k < p.ntaken; k++)
        free(p.taken[k]);
    free(p.taken);
}

/* Starts the background pusher when none runs and files wait; else, when one runs, waits for
 * name's marker (0: *mk holds it), for the pusher to end or to give name up (PC_ENOTFOUND: push
 * it here). */
#define PUSHER_WAIT_MAX_MS (10 * 60 * 1000)
static int pusher_start_or_wait(const char *waldir, const char *name, const pc_wal_push_opts *o,
                                pc_wal_info *mk, pc__src_ident *mk_id, size_t *handed)
{
    char *sp = spool_path(waldir, NULL);
    char *lp = pc_asprintf("%s/" PC_WAL_SPOOL_DIR "/pusher.lock", waldir);
    int fd = -1, rc = PC_ENOTFOUND;
    if (sp == NULL || lp == NULL || (mkdir(sp, 0700) != 0 && errno != EEXIST) ||
        (fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
        goto done;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        char **ready = NULL;
        size_t nready = 0, waiting = 0;
        if (ready_list(waldir, name, &ready, &nready) == 0) {
            for (size_t i = 0; i < nready; i++) {
                pc_wal_info old;
                if (marker_read(waldir, ready[i], o->repo_id, &old, NULL) != 0)
                    waiting++;
                free(ready[i]);
            }
            free(ready);
        }
        if (waiting > 0) {
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                /* detached: PostgreSQL (or a caller reading our output) waits for the parent
                 * only; the lock's descriptor, shared with the parent, is now ours alone */
                (void)setsid();
                int nul = open("/dev/null", O_RDWR);
                if (nul >= 0) {
                    dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
                    if (nul > 2)
                        close(nul);
                }
                pusher_main(waldir, name, o);
                _exit(0);
            }
            if (pid > 0)
                *handed = waiting;
        }
        goto done; /* closing our descriptor leaves the lock with the child */
    }
    /* a pusher runs: it pushes name too (oldest first), unless it gave it up */
    for (int waited = 0; waited < PUSHER_WAIT_MAX_MS; waited += 2) {
        if (marker_read(waldir, name, o->repo_id, mk, mk_id) == 0) {
            rc = 0;
            break;
        }
        if (take_hint_fail(waldir, name))
            break;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) { /* it ended: one last look */
            if (marker_read(waldir, name, o->repo_id, mk, mk_id) == 0)
                rc = 0;
            break;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
done:
    if (fd >= 0)
        close(fd);
    free(sp);
    free(lp);
    return rc;
}

unsigned long pc__wal_ahead_hashed;

/* Whether mk records path's file: the same identity (id, when the marker has one: see
 * pc__src_ident_check for why that is enough), else the same SHA-256 and size. */
static bool marker_matches(const char *path, const char *name, const pc_wal_info *mk,
                           const pc__src_ident *id)
{
    struct stat st;
    if (id->ok && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        pc__src_ident now;
        src_ident_from(&now, &st);
        if (src_ident_same(id, &now) && now.size == mk->size)
            return true;
    }
    pc__wal_ahead_hashed++;
    int src = -1;
    uint64_t limit = 0, size = 0;
    char sha[65];
    pc_error he = {0};
    bool same = pc__wal_open_source(path, name, &src, &limit, &he) == 0 &&
                pc__wal_hash_fd(src, path, limit, sha, &size, &he) == 0 &&
                strcmp(sha, mk->sha256) == 0 && size == mk->size;
    if (src >= 0)
        close(src);
    return same;
}

int pc_wal_push_ahead(const char *path, const char *name, const pc_wal_push_opts *o,
                      pc_wal_push_result *result, pc_wal_info *info, size_t *ahead, pc_error *err)
{
    int rc = 0;
    char *waldir = NULL;
    pc_repo *repo = NULL;
    size_t handed = 0;

    if (ahead != NULL)
        *ahead = 0;
    if ((rc = pc_wal_name_check(name, NULL, err)) != 0)
        return rc;
    if (o == NULL || o->open_repo == NULL || o->parallel < 1 || o->parallel > PC_WAL_PARALLEL_MAX)
        return pc_error_set(err, PC_EINVAL,
                            "push-ahead needs a repository and a parallelism "
                            "between 1 and %d",
                            PC_WAL_PARALLEL_MAX);
    if (path == NULL || (waldir = pc_path_dir(path)) == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    /* repo_id goes on one line of the marker: one that cannot is not used for markers */
    const char *rid = o->repo_id != NULL && strchr(o->repo_id, '\n') == NULL ? o->repo_id : NULL;
    pc_wal_push_opts po = *o;
    po.repo_id = rid;

    /* Pushed ahead already? Believed only when the file is the one recorded. */
    pc_wal_info mk;
    pc__src_ident mk_id = {0};
    bool have = rid != NULL && marker_read(waldir, name, rid, &mk, &mk_id) == 0;
    char *sdir = pc_asprintf("%s/archive_status", waldir);
    struct stat st;
    bool in_pg_wal = sdir != NULL && stat(sdir, &st) == 0 && S_ISDIR(st.st_mode);
    free(sdir);
    if (!have && rid != NULL && o->parallel > 1 && in_pg_wal)
        have = pusher_start_or_wait(waldir, name, &po, &mk, &mk_id, &handed) == 0;
    if (have && marker_matches(path, name, &mk, &mk_id)) {
        marker_remove(waldir, name);
        if (result != NULL)
            *result = PC_WAL_AHEAD;
        if (info != NULL)
            *info = mk;
        goto done;
    }
    marker_remove(waldir, name); /* mismatched or for another repository: never believed */

    if ((rc = o->open_repo(o->open_ctx, &repo, err)) != 0)
        goto done;
    rc = pc_wal_push(repo, path, name, result, info, err);
    /* the pusher this call started skips name (ours); when PostgreSQL retries it while that
     * pusher still runs, the hint makes the retry push it at once instead of waiting */
    if (rc != 0 && handed > 0)
        hint_fail(waldir, name);
done:
    pc_repo_close(repo);
    free(waldir);
    if (ahead != NULL)
        *ahead = handed;
    return rc;
}
