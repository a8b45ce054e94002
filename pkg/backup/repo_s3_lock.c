/* repo_s3_lock.c: the lock of a backup repository in an S3 bucket (pc_repo's lock, unlock and
 * lock_check for repo_s3.c): an object, refreshed by a thread while held. */
#include "repo_s3_int.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOCK_KEY "locks/backup.lock"
#define LOCK_TTL_S 900     /* a lock not refreshed for this long is taken over */
#define LOCK_REFRESH_S 300 /* how often the holder pushes its expiry forward */
#define LOCK_MAX_BYTES 65536

/* The lock's timings as the code reads them (repo.h: white-box tests shorten them). */
int64_t pc__repo_s3_lock_ttl_s = LOCK_TTL_S;
int64_t pc__repo_s3_lock_refresh_ms = LOCK_REFRESH_S * 1000;

/* --- the lock ---------------------------------------------------------------------------------
 *
 * An object <prefix>/locks/backup.lock holding {"owner": what, "host", "pid", "expires" (unix
 * seconds), "token"} and who the holder is beyond hostname and pid (proc_id: "boot_id",
 * "pid_ns", "pid_start", "time_ns"). Taken when absent (If-None-Match: *) or expired (If-Match:
 * the expired version's ETag) or left by a process that is provably gone (holder_gone); the
 * holder's thread pushes "expires" forward every LOCK_REFRESH_S; unlock deletes it if it is
 * still ours.
 *
 * When is a holder gone before its lock expires? A hostname does not name one pid space: two
 * containers with host networking, two pods, a container and its host share one, and so does a
 * machine before and after a reboot. A pid is only comparable to ours inside one pid namespace
 * of one running kernel, and is only the same process while its start time is the same. So
 * "gone" takes ALL of: the same hostname, the same boot id (/proc/sys/kernel/random/boot_id),
 * the same pid namespace (inode of /proc/self/ns/pid), the same time namespace (the start time
 * /proc shows depends on the reader's), and then either no process with that pid (kill: ESRCH)
 * or one whose start time (field 22 of /proc/<pid>/stat) is another (the pid was reused). A
 * namespace inode can be reused within a boot, but only once every process of the old
 * namespace is dead, so a match on a reused one still finds the holder dead. Any doubt counts
 * as alive and the lock then ends only by expiry: a field missing (a lock written by an older
 * pipectl), /proc unreadable, another boot id (this machine after a reboot and another machine
 * with the same hostname cannot be told apart), another namespace.
 *
 * Limits, said plainly:
 *  - on a server that ignores conditional writes (s3proxy 2.6), two processes taking a free or
 *    expired lock in the same instant can both write; each reads the object back and only the
 *    one whose token is there goes on, which narrows the window to a read racing a write but
 *    does not close it. AWS S3 (conditional writes since 2024) closes it.
 *  - a holder whose refreshes fail for LOCK_TTL_S (network cut, process stopped with SIGSTOP)
 *    loses the lock to the next taker; its refresher notices on its next round, records it
 *    (lost, lost_to) and stops. The operation under way is not interrupted: it asks
 *    pc_repo_lock_check before each step that must not run twice at once (publishing a backup,
 *    deleting), which answers from that record, or else reads the object itself (a lapse the
 *    refresher has not reached yet). Between that check and the step a window of one request
 *    remains.
 *  - a holder that died anywhere else (another host, namespace or boot) holds the lock until its
 *    expiry, up to LOCK_TTL_S.
 *  - it relies on the hosts' clocks agreeing to well under LOCK_TTL_S. */

/* Who a process is beyond hostname and pid; "" or 0 when it could not be read. */
typedef struct proc_id {
    char boot_id[64];
    char pid_ns[64];  /* "pid:[4026531836]" */
    char time_ns[64]; /* "time:[4026531834]"; "" also on kernels before 5.6, which have none */
    long long start;  /* field 22 of /proc/<pid>/stat: clock ticks since boot */
} proc_id;

typedef struct lock_seen {
    bool parsed;
    char owner[128], host[128], token[64];
    long long pid;
    int64_t expires;
    proc_id id;
} lock_seen;

typedef struct s3_lock {
    pc_repo_lock head;
    s3_repo *r;
    pc_s3 *conn; /* the refresher's own */
    char *fkey;
    char *what;
    char token[33];
    proc_id self;              /* read once, when taken */
    int64_t ttl_s, refresh_ms; /* the timings when taken (the thread reads these, not globals) */
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool lost;         /* (under mu) the refresher found the object gone or another's */
    bool lost_gone;    /* (under mu) gone, rather than another's */
    lock_seen lost_to; /* (under mu) what it found then, when another's */
} s3_lock;

static void random_token(char out[33])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) {
        uint64_t x = (uint64_t)pc_wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)pc_mono_ms();
        for (size_t i = 0; i < sizeof b; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            b[i] = (unsigned char)(x >> 56);
        }
    }
    pc_hex_encode(b, sizeof b, out);
    out[32] = '\0';
}

/* Reads a small file whole into out (NUL-terminated): its length, or -1. */
static ssize_t read_small(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "re");
    size_t got;
    if (!f)
        return -1;
    got = fread(out, 1, n - 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad)
        return -1;
    out[got] = '\0';
    return (ssize_t)got;
}

/* The start time of process pid ("self" when pid is 0): field 22 of /proc/<pid>/stat, or 0.
 * Field 2 is the command name in parentheses, which may itself hold spaces and ')': the fields
 * counted are those after the LAST ')'. */
static long long proc_start(long long pid)
{
    char path[64], buf[4096], *p, *end;
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    ssize_t n = read_small(path, buf, sizeof buf);
    if (n <= 0 || (size_t)n >= sizeof buf - 1 || !(p = strrchr(buf, ')')))
        return 0; /* unreadable, or longer than any stat line: not trusted */
    p++;
    for (int field = 3; field < 22; field++) { /* p is before field 3, the state */
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0') || v == 0 ||
        v > (unsigned long long)INT64_MAX)
        return 0;
    return (long long)v;
}

static void read_ns(const char *path, char *out, size_t n)
{
    ssize_t k = readlink(path, out, n - 1);
    out[k > 0 ? (size_t)k : 0] = '\0';
}

static void proc_id_self(proc_id *id)
{
    memset(id, 0, sizeof *id);
    if (read_small("/proc/sys/kernel/random/boot_id", id->boot_id, sizeof id->boot_id) > 0)
        id->boot_id[strcspn(id->boot_id, "\n")] = '\0';
    read_ns("/proc/self/ns/pid", id->pid_ns, sizeof id->pid_ns);
    read_ns("/proc/self/ns/time", id->time_ns, sizeof id->time_ns);
    id->start = proc_start(0);
}

static char *lock_body(const s3_lock *l, int64_t expires)
{
    char host[256] = "";
    char *s = NULL;
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown");
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s}", "owner", l->what, "host", host, "pid",
                          (json_int_t)getpid(), "expires", (json_int_t)expires, "token", l->token);
    if (!o)
        return NULL;
    /* only what was read: a missing field makes takers count this holder alive */
    if ((l->self.boot_id[0] &&
         json_object_set_new(o, "boot_id", json_string(l->self.boot_id)) != 0) ||
        (l->self.pid_ns[0] && json_object_set_new(o, "pid_ns", json_string(l->self.pid_ns)) != 0) ||
        (l->self.time_ns[0] &&
         json_object_set_new(o, "time_ns", json_string(l->self.time_ns)) != 0) ||
        (l->self.start > 0 &&
         json_object_set_new(o, "pid_start", json_integer((json_int_t)l->self.start)) != 0))
        goto done;
    s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
done:
    json_decref(o);
    return s;
}

static void get_str(json_t *o, const char *name, char *out, size_t n)
{
    json_t *v = json_object_get(o, name);
    if (v && json_is_string(v))
        snprintf(out, n, "%s", json_string_value(v));
}

static void parse_lock(const char *text, size_t len, lock_seen *s)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je), *v;
    memset(s, 0, sizeof *s);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return;
    }
    get_str(o, "owner", s->owner, sizeof s->owner);
    get_str(o, "host", s->host, sizeof s->host);
    get_str(o, "token", s->token, sizeof s->token);
    get_str(o, "boot_id", s->id.boot_id, sizeof s->id.boot_id);
    get_str(o, "pid_ns", s->id.pid_ns, sizeof s->id.pid_ns);
    get_str(o, "time_ns", s->id.time_ns, sizeof s->id.time_ns);
    if ((v = json_object_get(o, "pid")) && json_is_integer(v))
        s->pid = (long long)json_integer_value(v);
    if ((v = json_object_get(o, "pid_start")) && json_is_integer(v) && json_integer_value(v) > 0)
        s->id.start = (long long)json_integer_value(v);
    if ((v = json_object_get(o, "expires")) && json_is_integer(v)) {
        s->expires = (int64_t)json_integer_value(v);
        s->parsed = true;
    }
    json_decref(o);
}

/* Whether the lock's holder is provably dead (the rule: the section's comment above), so its
 * lock is as good as expired: it died, or could not delete the lock because the server was
 * unreachable then. false for any doubt. */
static bool holder_gone(const lock_seen *s)
{
    char host[256] = "";
    proc_id me;
    if (s->pid <= 0 || s->pid > INT32_MAX || s->pid == (long long)getpid() ||
        gethostname(host, sizeof host - 1) != 0 || strcmp(host, s->host) != 0)
        return false;
    if (!s->id.boot_id[0] || !s->id.pid_ns[0] || s->id.start <= 0)
        return false; /* an older pipectl's lock, or its /proc was unreadable */
    proc_id_self(&me);
    if (!me.boot_id[0] || strcmp(me.boot_id, s->id.boot_id) != 0 || !me.pid_ns[0] ||
        strcmp(me.pid_ns, s->id.pid_ns) != 0 || strcmp(me.time_ns, s->id.time_ns) != 0)
        return false;
    if (kill((pid_t)s->pid, 0) != 0)
        return errno == ESRCH;
    long long start = proc_start(s->pid); /* alive (or EPERM): the same process? */
    return start > 0 && start != s->id.start;
}

/* Reads the lock object: 0 (seen, etag set), PC_ENOTFOUND, or an error. The refresher calls it
 * on its own connection, so it touches nothing of the repository's (bucket_seen is the
 * callers'). */
static int read_lock(pc_s3 *s3, const char *fkey, lock_seen *seen, char etag[PC_S3_ETAG_MAX],
                     pc_error *err)
{
    pc_buf b = {0};
    pc_s3_info info = {0};
    int rc = pc_s3_get_buf(s3, fkey, &b, LOCK_MAX_BYTES, &info, err);
    if (rc == 0) {
        parse_lock(b.data ? b.data : "", b.len, seen);
        snprintf(etag, PC_S3_ETAG_MAX, "%s", info.etag);
    }
    pc_buf_free(&b);
    return rc;
}

static void *refresher_main(void *arg)
{
    s3_lock *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(l->refresh_ms / 1000);
        until.tv_nsec += (long)(l->refresh_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!l->stop && pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
            ;
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        /* still ours? then push the expiry forward, on the version we saw. Lost only when the
         * object is gone or holds another token; a read or write that fails (server down, 5xx,
         * timeout) is tried again next round, the expiry leaving TTL/refresh rounds to spare */
        lock_seen seen;
        char etag[PC_S3_ETAG_MAX] = "";
        int rc = read_lock(l->conn, l->fkey, &seen, etag, NULL);
        bool lost = rc == PC_ENOTFOUND || (rc == 0 && strcmp(seen.token, l->token) != 0);
        if (rc == 0 && !lost) {
            char *body = lock_body(l, pc_wall_ms() / 1000 + l->ttl_s);
            pc_s3_cond c = {.if_match = etag};
            pc_s3_info info = {0};
            if (body)
                pc_s3_put_cond(l->conn, l->fkey, body, strlen(body), &c, &info, NULL);
            free(body);
        }
        pthread_mutex_lock(&l->mu);
        if (lost) { /* taken over or deleted: nothing of ours to refresh */
            l->lost = true;
            l->lost_gone = rc != 0;
            if (rc == 0)
                l->lost_to = seen;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void lock_free(s3_lock *l)
{
    if (!l)
        return;
    pc_s3_free(l->conn);
    free(l->fkey);
    free(l->what);
    free(l);
}

int pc__s3r_lock(pc_repo *repo, const char *what, pc_repo_lock **out, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    s3_lock *l = calloc(1, sizeof *l);
    lock_seen seen;
    char etag[PC_S3_ETAG_MAX] = "", *body = NULL;
    int64_t now = pc_wall_ms() / 1000;
    pc_error e = {0};
    pc_s3_cond cond = {0};
    pc_s3_info info = {0};
    int rc;

    *out = NULL;
    if (!l || !(l->what = pc_strdup(what)) || !(l->fkey = pc__s3r_key(r, LOCK_KEY))) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    l->head.repo = repo;
    l->r = r;
    l->ttl_s = pc__repo_s3_lock_ttl_s;
    l->refresh_ms = pc__repo_s3_lock_refresh_ms;
    random_token(l->token);
    proc_id_self(&l->self);
    rc = read_lock(r->s3, l->fkey, &seen, etag, &e);
    if (rc == 0)
        r->bucket_seen = true;
    if (rc == PC_ENOTFOUND && strcmp(pc_s3_last_code(r->s3), "NoSuchBucket") != 0) {
        cond.if_none_match = true;
    } else if (rc < 0) {
        if (err)
            *err = e;
        rc = pc__s3r_fail(r, r->s3, rc, "lock", LOCK_KEY, err);
        goto done;
    } else if (!seen.parsed || (seen.expires > now && !holder_gone(&seen))) {
        char until[32];
        pc_iso_utc(seen.expires, until);
        if (!seen.parsed)
            rc = pc_error_set(err, PC_ECONFLICT,
                              "backup repository %s is locked (%s holds no lock pipectl can "
                              "read): if no pipectl works on this repository, delete %s",
                              r->head.uri, LOCK_KEY, LOCK_KEY);
        else
            rc = pc_error_set(err, PC_ECONFLICT,
                              "backup repository %s is locked by \"%s\" (host %s, pid %lld) until "
                              "%s: wait for it to finish; if that process is gone, the lock "
                              "expires then (or delete %s)",
                              r->head.uri, seen.owner, seen.host, seen.pid, until, LOCK_KEY);
        goto done;
    } else {
        cond.if_match = etag; /* take over the expired lock, that version only */
    }
    if (!(body = lock_body(l, now + l->ttl_s))) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    pc_error_clear(&e);
    rc = pc_s3_put_cond(r->s3, l->fkey, body, strlen(body), &cond, &info, &e);
    if (rc == PC_ECONFLICT) {
        rc = pc_error_set(err, PC_ECONFLICT,
                          "backup repository %s: another process took the lock at the same "
                          "moment: try again",
                          r->head.uri);
        goto done;
    } else if (rc < 0) {
        if (err)
            *err = e;
        rc = pc__s3r_fail(r, r->s3, rc, "lock", LOCK_KEY, err);
        goto done;
    }
    /* read back: on a server that ignores the conditions, the last writer is the holder */
    pc_error_clear(&e);
    if ((rc = read_lock(r->s3, l->fkey, &seen, etag, &e)) < 0 ||
        strcmp(seen.token, l->token) != 0) {
        rc = pc_error_set(err, PC_ECONFLICT,
                          "backup repository %s: another process took the lock at the same "
                          "moment (\"%s\" on %s): try again",
                          r->head.uri, rc == 0 ? seen.owner : "?", rc == 0 ? seen.host : "?");
        goto done;
    }
    if ((rc = pc_s3_dup(&l->conn, r->s3, err)) < 0)
        goto unlock;
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if ((rc = pthread_create(&l->th, NULL, refresher_main, l)) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        rc = pc_error_set(err, PC_ENOMEM,
                          "backup repository %s: cannot start the lock's refresher: %s",
                          r->head.uri, strerror(rc));
        goto unlock;
    }
    l->th_started = true;
    *out = (pc_repo_lock *)l;
    l = NULL;
    goto done;
unlock:
    pc_s3_delete(r->s3, l->fkey, NULL);
done:
    free(body);
    lock_free(l);
    return rc;
}

void pc__s3r_unlock(pc_repo_lock *lk)
{
    s3_lock *l = (s3_lock *)lk;
    lock_seen seen;
    char etag[PC_S3_ETAG_MAX];
    if (!l)
        return;
    if (l->th_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    /* only our own: a lock taken over after ours expired is the new holder's */
    if (read_lock(l->r->s3, l->fkey, &seen, etag, NULL) == 0 &&
        strcmp(seen.token, l->token) == 0)
        pc_s3_delete(l->r->s3, l->fkey, NULL);
    lock_free(l);
}

/* Why the lock is not ours any more, as pc_repo_lock_check reports it. seen: the object found
 * (NULL when it was gone). */
static int lock_lost(const s3_lock *l, const lock_seen *seen, pc_error *err)
{
    if (seen == NULL || !seen->parsed)
        return pc_error_set(err, PC_ECONFLICT,
                            "backup repository %s: \"%s\" lost its lock %s (%s, so another "
                            "process may hold the repository now): this %s stopped before "
                            "changing anything more; run it again",
                            l->r->head.uri, l->what, LOCK_KEY,
                            seen == NULL ? "the object was deleted"
                                         : "the object holds no lock pipectl can read",
                            l->what);
    return pc_error_set(err, PC_ECONFLICT,
                        "backup repository %s: \"%s\" lost its lock %s to \"%s\" on %s (pid "
                        "%lld; taken over after no refresh reached the server for %lld s, or "
                        "overwritten): this %s stopped before changing anything more; run it "
                        "again",
                        l->r->head.uri, l->what, LOCK_KEY, seen->owner, seen->host, seen->pid,
                        (long long)l->ttl_s, l->what);
}

/* Runs on the caller's thread, which owns the repository's connection (the refresher has its
 * own). */
int pc__s3r_lock_check(pc_repo_lock *lk, pc_error *err)
{
    s3_lock *l = (s3_lock *)lk;
    s3_repo *r = l->r;
    lock_seen seen;
    char etag[PC_S3_ETAG_MAX] = "";
    pc_error e = {0};
    bool lost, gone;
    int rc;

    pthread_mutex_lock(&l->mu);
    lost = l->lost;
    gone = l->lost_gone;
    seen = l->lost_to;
    pthread_mutex_unlock(&l->mu);
    if (lost)
        return lock_lost(l, gone ? NULL : &seen, err);
    rc = read_lock(r->s3, l->fkey, &seen, etag, &e);
    if (rc == PC_ENOTFOUND && strcmp(pc_s3_last_code(r->s3), "NoSuchBucket") != 0)
        return lock_lost(l, NULL, err);
    if (rc < 0) {
        char msg[PC_ERROR_MSG_MAX];
        if (err == NULL)
            return rc == PC_ENOTFOUND ? PC_EUNAVAIL : rc;
        *err = e;
        rc = pc__s3r_fail(r, r->s3, rc, "check lock", LOCK_KEY, err);
        if (rc == PC_ENOTFOUND)
            rc = PC_EUNAVAIL; /* the bucket is gone: nothing to be found, not a lost lock */
        snprintf(msg, sizeof msg, "%s", err->msg);
        pc_error_clear(err);
        return pc_error_set(err, rc,
                            "%s; whether \"%s\" still holds the lock cannot be told, so it "
                            "stopped before changing anything more: run it again once the "
                            "repository answers",
                            msg, l->what);
    }
    if (strcmp(seen.token, l->token) != 0)
        return lock_lost(l, &seen, err);
    if (seen.expires <= pc_wall_ms() / 1000) {
        char until[32];
        pc_iso_utc(seen.expires, until);
        return pc_error_set(err, PC_ECONFLICT,
                            "backup repository %s: the lock %s of \"%s\" expired at %s (no "
                            "refresh reached the server for %lld s), so another process may take "
                            "it over at any moment: this %s stopped before changing anything "
                            "more; run it again",
                            r->head.uri, LOCK_KEY, l->what, until, (long long)l->ttl_s, l->what);
    }
    return 0;
}
