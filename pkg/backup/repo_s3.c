/* repo_s3.c: a backup repository in an S3 bucket, under a key prefix (pc_repo over pkg/s3).
 *
 * Key k lives at "<prefix>/<k>" ("<k>" with no prefix). What the interface promises, and how:
 *  - invisible until commit: an object that fits in one part (8 MiB) is one PUT at commit; a
 *    larger one is a multipart upload whose parts go up while the writer writes (three threads,
 *    each with its own connection, pc_s3_dup), and appears only at CompleteMultipartUpload. An
 *    interrupted writer leaves an unfinished upload, never an object; pc_repo_sweep aborts those.
 *  - bounded memory: the part being filled plus at most PUT_THREADS parts in flight, whatever
 *    the object's size; a reader holds one read-ahead window (8 MiB) of ranged GETs.
 *  - durable at commit: the server answered 200 to the PUT or the complete, each part and each
 *    PUT carrying its payload's SHA-256 (x-amz-content-sha256), which the server checks.
 *  - NOREPLACE: the write carries If-None-Match: * (AWS S3 honours it on PUT and on
 *    CompleteMultipartUpload since 2024) AND a HEAD before it refuses a key that exists, because
 *    s3proxy 2.6.0 ignores the condition (checked: it answers 200 and overwrites). Between that
 *    HEAD and the write, on such a server, a second writer of the same key can slip in: WAL
 *    pushes of one segment are serialised by PostgreSQL's archiver, and backup ids are unique,
 *    so the window is not reached in normal use.
 *  - a reader never mixes versions: every ranged GET is conditional on the ETag seen at open
 *    (If-Match), so an object replaced under a reader is an error, not a splice of two objects. */
#include "repo.h"

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

#define WINDOW_BYTES (8u << 20) /* read-ahead window of a reader: one ranged GET each */
#define PART_BYTES (8u << 20)   /* one part; AWS's minimum is 5 MiB */
#define PUT_THREADS 3           /* part uploads in flight at once */
#define MAX_PARTS 10000         /* S3's limit */
#define LOCK_KEY "locks/backup.lock"
#define LOCK_TTL_S 900     /* a lock not refreshed for this long is taken over */
#define LOCK_REFRESH_S 300 /* how often the holder pushes its expiry forward */
#define LOCK_MAX_BYTES 65536

/* The lock's timings as the code reads them (repo.h: white-box tests shorten them). */
int64_t pc__repo_s3_lock_ttl_s = LOCK_TTL_S;
int64_t pc__repo_s3_lock_refresh_ms = LOCK_REFRESH_S * 1000;

typedef struct s3_repo {
    pc_repo head;
    pc_s3 *s3;
    char *bucket;
    char *prefix;     /* "" or "a/b" */
    bool bucket_seen; /* the bucket answered once: a 404 HEAD is then a missing key */
} s3_repo;

/* --- names and errors ------------------------------------------------------------------------ */

static char *full_key(const s3_repo *r, const char *key)
{
    return r->prefix[0] ? pc_asprintf("%s/%s", r->prefix, key) : pc_strdup(key);
}

/* Turns pkg/s3's error (already naming endpoint, bucket, key, HTTP status and S3's code) into
 * the repository's: the uri and the key first, the code mapped to repo.h's, and what to do. */
static int s3_fail(s3_repo *r, pc_s3 *s3, int rc, const char *op, const char *key, pc_error *err)
{
    char msg[PC_ERROR_MSG_MAX];
    const char *code = pc_s3_last_code(s3), *hint = NULL;
    long status = pc_s3_last_status(s3);
    char hintbuf[256];

    if (strcmp(code, "NoSuchBucket") == 0) {
        rc = PC_EUNAVAIL;
        snprintf(hintbuf, sizeof hintbuf,
                 "create bucket %s, or fix the bucket in archiving.repository (s3://BUCKET/prefix; "
                 "and the endpoint, region)",
                 r->bucket);
        hint = hintbuf;
    } else if (status == 403 || strcmp(code, "InvalidAccessKeyId") == 0 ||
               strcmp(code, "SignatureDoesNotMatch") == 0) {
        rc = PC_EUNAVAIL;
        hint = "check archiving.s3.access_key_id / secret_access_key (and that they may read, "
               "write and list this bucket)";
    } else if (rc == PC_EREFUSED) {
        rc = PC_EUNAVAIL; /* the repository cannot be used as configured */
    }
    if (err == NULL)
        return rc;
    snprintf(msg, sizeof msg, "%s", err->msg);
    pc_error_clear(err);
    return pc_error_set(err, rc, "backup repository %s: %s%s%s: %s%s%s", r->head.uri, op,
                        key ? " " : "", key ? key : "", msg, hint ? "; " : "", hint ? hint : "");
}

/* A HEAD answered 404 (it has no body to tell a missing key from a missing bucket): asks the
 * bucket once. 0 when the bucket exists (the key is what is missing). */
static int check_bucket(s3_repo *r, const char *op, const char *key, pc_error *err)
{
    pc_error e = {0};
    int rc;
    if (r->bucket_seen)
        return 0;
    rc = pc_s3_head(r->s3, NULL, NULL, &e);
    if (rc == 0) {
        r->bucket_seen = true;
        return 0;
    }
    if (rc == PC_ENOTFOUND)
        return pc_error_set(err, PC_EUNAVAIL,
                            "backup repository %s: %s %s: bucket %s does not exist: create bucket "
                            "%s, or fix the bucket in archiving.repository (s3://BUCKET/prefix; "
                            "and the endpoint, region)",
                            r->head.uri, op, key, r->bucket, r->bucket);
    if (err)
        *err = e;
    return s3_fail(r, r->s3, rc, op, key, err);
}

/* --- stat ------------------------------------------------------------------------------------ */

/* HEAD of key: 0, PC_ENOTFOUND (set in err), or the error. */
static int head_key(s3_repo *r, const char *op, const char *key, const char *fkey, pc_s3_info *info,
                    pc_error *err)
{
    pc_error e = {0};
    int rc = pc_s3_head(r->s3, fkey, info, &e);
    if (rc == 0) {
        r->bucket_seen = true;
        return 0;
    }
    if (rc == PC_ENOTFOUND && strcmp(pc_s3_last_code(r->s3), "NoSuchBucket") != 0) {
        if ((rc = check_bucket(r, op, key, err)) < 0)
            return rc;
        return pc_error_set(err, PC_ENOTFOUND, "backup repository %s: %s: no such object",
                            r->head.uri, key);
    }
    if (err)
        *err = e;
    return s3_fail(r, r->s3, rc, op, key, err);
}

static int s3r_stat(pc_repo *repo, const char *key, pc_repo_entry *out, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    pc_s3_info info = {0};
    char *fkey = full_key(r, key);
    int rc;
    if (!fkey)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    rc = head_key(r, "stat", key, fkey, &info, err);
    if (rc == 0) {
        out->key = key;
        out->size = info.size;
        out->mtime = info.last_modified;
    }
    free(fkey);
    return rc;
}

/* --- reading: a window of ranged GETs -------------------------------------------------------- */

typedef struct s3_obj {
    pc_repo_obj head;
    s3_repo *r;
    char *key, *fkey;
    uint64_t size;
    char etag[PC_S3_ETAG_MAX]; /* the version opened: every GET must find it */
    char *win;                 /* [win_off, win_off + win_len) of the object */
    size_t win_cap, win_len;
    uint64_t win_off;
} s3_obj;

static int s3r_open(pc_repo *repo, const char *key, pc_repo_obj **out, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    pc_s3_info info = {0};
    s3_obj *o = calloc(1, sizeof *o);
    int rc;
    if (!o || !(o->key = pc_strdup(key)) || !(o->fkey = full_key(r, key))) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = head_key(r, "open", key, o->fkey, &info, err)) < 0)
        goto done;
    o->head.repo = repo;
    o->r = r;
    o->size = info.size;
    snprintf(o->etag, sizeof o->etag, "%s", info.etag);
done:
    if (rc < 0 && o) {
        free(o->key);
        free(o->fkey);
        free(o);
        o = NULL;
    }
    *out = (pc_repo_obj *)o;
    return rc;
}

static uint64_t s3r_obj_size(pc_repo_obj *obj)
{
    return ((s3_obj *)obj)->size;
}

static int to_window(void *ctx, const void *data, size_t n, pc_error *err)
{
    s3_obj *o = ctx;
    if (n > o->win_cap - o->win_len)
        return pc_error_set(err, PC_EIO,
                            "backup repository %s: %s: the server sent more bytes "
                            "than asked for",
                            o->r->head.uri, o->key);
    memcpy(o->win + o->win_len, data, n);
    o->win_len += n;
    return 0;
}

/* Loads the window starting at off (< size). */
static int fill_window(s3_obj *o, uint64_t off, pc_error *err)
{
    uint64_t want = o->size - off < WINDOW_BYTES ? o->size - off : WINDOW_BYTES;
    pc_s3_info info = {0};
    pc_error e = {0};
    int rc;
    if (!o->win) {
        o->win_cap = o->size < WINDOW_BYTES ? (size_t)o->size : WINDOW_BYTES;
        if (!(o->win = malloc(o->win_cap)))
            return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    o->win_off = off;
    o->win_len = 0;
    rc = pc_s3_get_range(o->r->s3, o->fkey, off, want, o->etag, to_window, o, &info, &e);
    if (rc == PC_ECONFLICT || rc == PC_ENOTFOUND || (rc == 0 && info.size != o->size)) {
        o->win_len = 0;
        return pc_error_set(err, PC_EIO,
                            "backup repository %s: %s was replaced or deleted while it was read "
                            "(it no longer is the version opened): read it again",
                            o->r->head.uri, o->key);
    }
    if (rc < 0) {
        o->win_len = 0;
        if (err)
            *err = e;
        return s3_fail(o->r, o->r->s3, rc, "read", o->key, err);
    }
    if (o->win_len != want) {
        o->win_len = 0;
        return pc_error_set(err, PC_EIO,
                            "backup repository %s: %s: asked for %llu bytes at %llu, got %zu: the "
                            "object is shorter than its size says",
                            o->r->head.uri, o->key, (unsigned long long)want,
                            (unsigned long long)off, o->win_len);
    }
    return 0;
}

static int s3r_pread(pc_repo_obj *obj, uint64_t off, void *buf, size_t n, size_t *got,
                     pc_error *err)
{
    s3_obj *o = (s3_obj *)obj;
    char *dst = buf;
    *got = 0;
    while (n > 0 && off < o->size) {
        if (off < o->win_off || off >= o->win_off + o->win_len) {
            int rc = fill_window(o, off, err);
            if (rc < 0)
                return rc;
        }
        size_t at = (size_t)(off - o->win_off), take = o->win_len - at;
        if (take > n)
            take = n;
        memcpy(dst, o->win + at, take);
        dst += take;
        off += take;
        n -= take;
        *got += take;
    }
    return 0;
}

static void s3r_obj_close(pc_repo_obj *obj)
{
    s3_obj *o = (s3_obj *)obj;
    if (!o)
        return;
    free(o->win);
    free(o->key);
    free(o->fkey);
    free(o);
}

/* --- writing: one PUT, or a multipart upload with parts going up on threads ------------------ */

typedef struct part_job {
    int number;
    char *data;
    size_t len;
} part_job;

typedef struct s3_put {
    pc_repo_put head;
    s3_repo *r;
    char *key, *fkey;
    char *buf; /* the part being filled: part number next_part */
    size_t len, cap;
    int next_part;
    char *upload_id; /* NULL while the object fits in one part */
    /* the uploaders (started with the multipart upload) */
    bool sync_init;
    pthread_mutex_t mu;
    pthread_cond_t work, done; /* a job queued / a job finished */
    pthread_t th[PUT_THREADS];
    pc_s3 *conn[PUT_THREADS];
    int n_threads;
    part_job queue[PUT_THREADS];
    int q_head, q_count;
    int in_flight; /* queued + uploading */
    bool stop;
    int fail_rc; /* the first failed part's */
    pc_error fail_err;
    pc_s3 *fail_conn;
    char **etags; /* etags[i]: part i + 1's */
    int etags_cap;
} s3_put;

typedef struct uploader {
    s3_put *p;
    int idx;
} uploader;

/* Part n's size: 8 MiB for parts 1..1000, 16 MiB for 1001..2000, ..., 80 MiB for the last
 * thousand: 10,000 parts then hold about 430 GiB, and memory stays a few parts. */
static size_t part_size(int n)
{
    return (size_t)PART_BYTES * (size_t)(1 + (n - 1) / 1000);
}

static void *uploader_main(void *arg)
{
    s3_put *p = ((uploader *)arg)->p;
    int idx = ((uploader *)arg)->idx;
    free(arg);
    for (;;) {
        part_job job;
        char etag[PC_S3_ETAG_MAX] = "";
        pc_error e = {0};
        int rc = 0;
        pthread_mutex_lock(&p->mu);
        while (p->q_count == 0 && !p->stop)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->q_count == 0) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        job = p->queue[p->q_head];
        p->q_head = (p->q_head + 1) % PUT_THREADS;
        p->q_count--;
        bool skip = p->fail_rc < 0;
        pthread_mutex_unlock(&p->mu);

        if (!skip)
            rc = pc_s3_multipart_put(p->conn[idx], p->fkey, p->upload_id, job.number, job.data,
                                     job.len, etag, &e);
        free(job.data);

        pthread_mutex_lock(&p->mu);
        if (rc < 0 && p->fail_rc == 0) {
            p->fail_rc = rc;
            p->fail_err = e;
            p->fail_conn = p->conn[idx];
        } else if (rc == 0 && !skip) {
            p->etags[job.number - 1] = pc_strdup(etag);
            if (!p->etags[job.number - 1] && p->fail_rc == 0) {
                p->fail_rc = pc_error_set(&p->fail_err, PC_ENOMEM, "out of memory");
                p->fail_conn = NULL;
            }
        }
        p->in_flight--;
        pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* The error a failed part left, in the repository's words. */
static int part_failure(s3_put *p, pc_error *err)
{
    if (err)
        *err = p->fail_err;
    if (!p->fail_conn)
        return p->fail_rc;
    return s3_fail(p->r, p->fail_conn, p->fail_rc, "write", p->key, err);
}

/* Starts the multipart upload and its uploaders. */
static int start_multipart(s3_put *p, pc_error *err)
{
    s3_repo *r = p->r;
    pc_error e = {0};
    int rc = pc_s3_multipart_create(r->s3, p->fkey, &p->upload_id, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        return s3_fail(r, r->s3, rc, "write", p->key, err);
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return pc_error_set(err, PC_ENOMEM, "backup repository %s: %s: no mutex", r->head.uri,
                            p->key);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->sync_init = true;
    for (int i = 0; i < PUT_THREADS; i++) {
        uploader *u = malloc(sizeof *u);
        if (!u)
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        if ((rc = pc_s3_dup(&p->conn[i], r->s3, err)) < 0) {
            free(u);
            return rc;
        }
        u->p = p;
        u->idx = i;
        if ((rc = pthread_create(&p->th[i], NULL, uploader_main, u)) != 0) {
            free(u);
            return pc_error_set(err, PC_ENOMEM,
                                "backup repository %s: %s: cannot start an upload thread: %s",
                                r->head.uri, p->key, strerror(rc));
        }
        p->n_threads++;
    }
    return 0;
}

/* Hands the filled buffer to the uploaders (waits while PUT_THREADS parts are in flight). */
static int ship_part(s3_put *p, pc_error *err)
{
    int rc = 0;
    if (p->next_part > MAX_PARTS)
        return pc_error_set(err, PC_EINVAL,
                            "backup repository %s: %s: the object outgrows S3's 10,000 parts "
                            "(about 430 GiB): split it",
                            p->r->head.uri, p->key);
    if (!p->upload_id && (rc = start_multipart(p, err)) < 0)
        return rc;
    pthread_mutex_lock(&p->mu);
    while (p->in_flight >= PUT_THREADS && p->fail_rc == 0)
        pthread_cond_wait(&p->done, &p->mu);
    if (p->fail_rc < 0) {
        pthread_mutex_unlock(&p->mu);
        return part_failure(p, err);
    }
    if (p->next_part > p->etags_cap) {
        int cap = p->etags_cap ? p->etags_cap * 2 : 64;
        char **e = realloc(p->etags, (size_t)cap * sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&p->mu);
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        memset(e + p->etags_cap, 0, (size_t)(cap - p->etags_cap) * sizeof *e);
        p->etags = e;
        p->etags_cap = cap;
    }
    p->queue[(p->q_head + p->q_count) % PUT_THREADS] =
        (part_job){.number = p->next_part, .data = p->buf, .len = p->len};
    p->q_count++;
    p->in_flight++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    p->buf = NULL; /* the uploader frees it */
    p->len = p->cap = 0;
    p->next_part++;
    return 0;
}

/* Waits for the parts in flight, then stops and joins the uploaders. */
static void stop_uploaders(s3_put *p, bool drop_queued)
{
    if (!p->sync_init)
        return;
    pthread_mutex_lock(&p->mu);
    if (drop_queued && p->fail_rc == 0)
        p->fail_rc = PC_EINTR; /* uploaders skip what is queued */
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->th[i], NULL);
    p->n_threads = 0;
}

static void put_free(s3_put *p)
{
    if (!p)
        return;
    stop_uploaders(p, true);
    if (p->sync_init) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->done);
    }
    for (int i = 0; i < PUT_THREADS; i++)
        pc_s3_free(p->conn[i]);
    for (int i = 0; i < p->etags_cap; i++)
        free(p->etags[i]);
    free(p->etags);
    free(p->buf);
    free(p->upload_id);
    free(p->key);
    free(p->fkey);
    free(p);
}

static int s3r_put_begin(pc_repo *repo, const char *key, pc_repo_put **out, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    s3_put *p = calloc(1, sizeof *p);
    if (!p || !(p->key = pc_strdup(key)) || !(p->fkey = full_key(r, key))) {
        put_free(p);
        *out = NULL;
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    p->head.repo = repo;
    p->r = r;
    p->next_part = 1;
    *out = (pc_repo_put *)p;
    return 0;
}

static int s3r_put_write(pc_repo_put *put, const void *data, size_t n, pc_error *err)
{
    s3_put *p = (s3_put *)put;
    const char *src = data;
    while (n > 0) {
        size_t want = part_size(p->next_part);
        if (p->len == want) { /* full, and more is coming: it is not the last part */
            int rc = ship_part(p, err);
            if (rc < 0)
                return rc;
        }
        if (!p->buf) {
            if (!(p->buf = malloc(want)))
                return pc_error_set(err, PC_ENOMEM, "out of memory (a part of %zu bytes)", want);
            p->cap = want;
        }
        size_t take = want - p->len < n ? want - p->len : n;
        memcpy(p->buf + p->len, src, take);
        p->len += take;
        src += take;
        n -= take;
    }
    return 0;
}

/* NOREPLACE's check before the write (see the top of the file for why it is needed). */
static int refuse_existing(s3_put *p, pc_error *err)
{
    pc_error e = {0};
    int rc = head_key(p->r, "write", p->key, p->fkey, NULL, &e);
    if (rc == PC_ENOTFOUND)
        return 0;
    if (rc == 0)
        return pc_error_set(err, PC_ECONFLICT,
                            "backup repository %s: %s exists already and is never replaced: "
                            "check whether another pipectl writes into this repository",
                            p->r->head.uri, p->key);
    if (err)
        *err = e;
    return rc;
}

static int conflict(s3_put *p, pc_error *err)
{
    pc_error_clear(err);
    return pc_error_set(err, PC_ECONFLICT,
                        "backup repository %s: %s exists already and is never replaced (the "
                        "server refused the conditional write): check whether another pipectl "
                        "writes into this repository",
                        p->r->head.uri, p->key);
}

static int s3r_put_commit(pc_repo_put *put, pc_repo_commit_mode mode, pc_error *err)
{
    s3_put *p = (s3_put *)put;
    s3_repo *r = p->r;
    pc_s3_cond cond = {.if_none_match = mode == PC_REPO_NOREPLACE};
    pc_error e = {0};
    int rc = 0;

    if (!p->upload_id) { /* it fits in one PUT */
        if (mode == PC_REPO_NOREPLACE && (rc = refuse_existing(p, err)) < 0)
            goto done;
        rc = pc_s3_put_cond(r->s3, p->fkey, p->buf ? p->buf : "", p->len, &cond, NULL, &e);
        if (rc == PC_ECONFLICT && mode == PC_REPO_NOREPLACE)
            rc = conflict(p, &e);
        if (rc < 0) {
            if (err)
                *err = e;
            if (rc != PC_ECONFLICT)
                rc = s3_fail(r, r->s3, rc, "write", p->key, err);
            goto done;
        }
        r->bucket_seen = true;
        goto done;
    }
    if ((rc = ship_part(p, err)) < 0)
        goto done;
    pthread_mutex_lock(&p->mu);
    while (p->in_flight > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    stop_uploaders(p, false);
    if (p->fail_rc < 0) {
        rc = part_failure(p, err);
        goto done;
    }
    if (mode == PC_REPO_NOREPLACE && (rc = refuse_existing(p, err)) < 0)
        goto done;
    rc = pc_s3_multipart_complete_cond(r->s3, p->fkey, p->upload_id, (const char *const *)p->etags,
                                       p->next_part - 1, &cond, NULL, &e);
    if (rc == PC_ECONFLICT && mode == PC_REPO_NOREPLACE)
        rc = conflict(p, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        if (rc != PC_ECONFLICT)
            rc = s3_fail(r, r->s3, rc, "write", p->key, err);
        goto done;
    }
    free(p->upload_id); /* completed: nothing to abort */
    p->upload_id = NULL;
done:
    if (p->upload_id) { /* failed: the parts go, once no uploader adds one */
        stop_uploaders(p, true);
        pc_s3_multipart_abort(r->s3, p->fkey, p->upload_id, NULL);
    }
    put_free(p);
    return rc;
}

static void s3r_put_abort(pc_repo_put *put)
{
    s3_put *p = (s3_put *)put;
    if (!p)
        return;
    stop_uploaders(p, true);
    if (p->upload_id) /* best effort: what stays is swept later */
        pc_s3_multipart_abort(p->r->s3, p->fkey, p->upload_id, NULL);
    put_free(p);
}

/* --- delete, list ---------------------------------------------------------------------------- */

static int s3r_del(pc_repo *repo, const char *key, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    pc_error e = {0};
    char *fkey = full_key(r, key);
    int rc;
    if (!fkey)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    rc = pc_s3_delete(r->s3, fkey, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        rc = s3_fail(r, r->s3, rc, "delete", key, err);
    }
    free(fkey);
    return rc;
}

typedef struct list_item {
    char *key; /* relative to the prefix */
    uint64_t size;
    int64_t mtime;
} list_item;

typedef struct list_acc {
    list_item *items;
    size_t n, cap;
    size_t skip; /* strlen("<prefix>/") */
} list_acc;

static int list_collect(void *ctx, const pc_s3_object *obj)
{
    list_acc *a = ctx;
    if (strlen(obj->key) <= a->skip)
        return 0; /* not ours (a server ignoring the prefix) */
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        list_item *it = realloc(a->items, cap * sizeof *it);
        if (!it)
            return PC_ENOMEM;
        a->items = it;
        a->cap = cap;
    }
    if (!(a->items[a->n].key = pc_strdup(obj->key + a->skip)))
        return PC_ENOMEM;
    a->items[a->n].size = obj->size;
    a->items[a->n].mtime = obj->last_modified;
    a->n++;
    return 0;
}

static int item_cmp(const void *x, const void *y)
{
    return strcmp(((const list_item *)x)->key, ((const list_item *)y)->key);
}

/* Collects the whole listing, then sorts it: S3 lists in UTF-8 byte order, but an
 * S3-compatible server need not, and repo.h promises byte order. */
static int s3r_list(pc_repo *repo, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    list_acc a = {0};
    pc_error e = {0};
    char *full = r->prefix[0] ? pc_asprintf("%s/%s", r->prefix, prefix) : pc_strdup(prefix);
    int rc;
    if (!full)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    a.skip = r->prefix[0] ? strlen(r->prefix) + 1 : 0;
    rc = pc_s3_list(r->s3, full, 0, list_collect, &a, &e);
    if (rc == PC_ENOMEM && !e.code)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    else if (rc < 0) {
        if (err)
            *err = e;
        rc = s3_fail(r, r->s3, rc, "list", *prefix ? prefix : "(all)", err);
    }
    if (rc == 0) {
        r->bucket_seen = true;
        if (a.n > 1)
            qsort(a.items, a.n, sizeof *a.items, item_cmp);
        for (size_t i = 0; i < a.n && rc == 0; i++) {
            pc_repo_entry ent = {a.items[i].key, a.items[i].size, a.items[i].mtime};
            rc = fn(ctx, &ent);
        }
    }
    for (size_t i = 0; i < a.n; i++)
        free(a.items[i].key);
    free(a.items);
    free(full);
    return rc;
}

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

static int s3r_lock(pc_repo *repo, const char *what, pc_repo_lock **out, pc_error *err)
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
    if (!l || !(l->what = pc_strdup(what)) || !(l->fkey = full_key(r, LOCK_KEY))) {
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
        rc = s3_fail(r, r->s3, rc, "lock", LOCK_KEY, err);
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
        rc = s3_fail(r, r->s3, rc, "lock", LOCK_KEY, err);
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

static void s3r_unlock(pc_repo_lock *lk)
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
static int s3r_lock_check(pc_repo_lock *lk, pc_error *err)
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
        rc = s3_fail(r, r->s3, rc, "check lock", LOCK_KEY, err);
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

/* --- sweep ----------------------------------------------------------------------------------- */

static int s3r_sweep(pc_repo *repo, int64_t now, int64_t older_than_s, size_t *removed,
                     pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    pc_s3_uploads ups = {0};
    pc_error e = {0};
    char *pfx = r->prefix[0] ? pc_asprintf("%s/", r->prefix) : pc_strdup("");
    size_t n = 0;
    int rc;
    if (removed)
        *removed = 0;
    if (!pfx)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    if ((rc = pc_s3_multipart_list(r->s3, *pfx ? pfx : NULL, &ups, &e)) < 0) {
        if (err)
            *err = e;
        rc = s3_fail(r, r->s3, rc, "sweep", "(unfinished uploads)", err);
        goto done;
    }
    for (size_t i = 0; i < ups.n; i++) {
        const pc_s3_upload *u = &ups.items[i];
        int64_t t;
        if (strncmp(u->key, pfx, strlen(pfx)) != 0)
            continue; /* another repository's */
        if (pc_s3_parse_time(u->initiated, &t) < 0 || t > now - older_than_s)
            continue; /* young (a writer may be at it), or of unknown age: left alone */
        pc_error_clear(&e);
        rc = pc_s3_multipart_abort(r->s3, u->key, u->upload_id, &e);
        if (rc == PC_ENOTFOUND) { /* finished or aborted meanwhile */
            rc = 0;
            continue;
        }
        if (rc < 0) {
            if (err)
                *err = e;
            rc = s3_fail(r, r->s3, rc, "sweep", u->key + strlen(pfx), err);
            goto done;
        }
        n++;
    }
done:
    if (removed)
        *removed = n;
    pc_s3_uploads_dispose(&ups);
    free(pfx);
    return rc;
}

/* --- the handle ------------------------------------------------------------------------------ */

static void s3r_close(pc_repo *repo)
{
    s3_repo *r = (s3_repo *)repo;
    if (!r)
        return;
    pc_s3_free(r->s3);
    free(r->bucket);
    free(r->prefix);
    free(r->head.uri);
    free(r);
}

static const pc_repo_ops s3_ops = {
    .kind = "s3",
    .stat = s3r_stat,
    .open = s3r_open,
    .obj_size = s3r_obj_size,
    .pread = s3r_pread,
    .obj_close = s3r_obj_close,
    .put_begin = s3r_put_begin,
    .put_write = s3r_put_write,
    .put_commit = s3r_put_commit,
    .put_abort = s3r_put_abort,
    .del = s3r_del,
    .list = s3r_list,
    .lock = s3r_lock,
    .unlock = s3r_unlock,
    .lock_check = s3r_lock_check,
    .sweep = s3r_sweep,
    .close = s3r_close,
};

int pc_repo_s3_new(const pc_s3_config *cfg, const char *prefix, pc_repo **out, pc_error *err)
{
    s3_repo *r = NULL;
    size_t n;
    int rc;

    *out = NULL;
    if (!prefix)
        prefix = "";
    while (*prefix == '/') /* "s3://bucket/" and "s3://bucket//x" mean what they seem to */
        prefix++;
    n = strlen(prefix);
    while (n > 0 && prefix[n - 1] == '/')
        n--;
    if (strstr(prefix, "//") && (size_t)(strstr(prefix, "//") - prefix) < n)
        return pc_error_set(err, PC_EINVAL,
                            "S3 backup repository prefix \"%s\" has an empty component ('//')",
                            prefix);
    if (n > 256)
        return pc_error_set(err, PC_EINVAL,
                            "S3 backup repository prefix \"%.40s...\" is longer than 256 bytes",
                            prefix);
    if (!(r = calloc(1, sizeof *r)))
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    r->head.ops = &s3_ops;
    if ((rc = pc_s3_new(&r->s3, cfg, err)) < 0) {
        pc_error_prefix(err, "backup repository s3://%s%s%.*s",
                        cfg && cfg->bucket ? cfg->bucket : "?", n ? "/" : "", (int)n, prefix);
        goto done;
    }
    r->bucket = pc_strdup(cfg->bucket);
    r->prefix = pc_strndup(prefix, n);
    r->head.uri = n ? pc_asprintf("s3://%s/%.*s", cfg->bucket, (int)n, prefix)
                    : pc_asprintf("s3://%s", cfg->bucket);
    if (!r->bucket || !r->prefix || !r->head.uri) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    *out = &r->head;
    r = NULL;
done:
    s3r_close(r ? &r->head : NULL);
    return rc;
}
