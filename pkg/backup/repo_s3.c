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
#include "repo_s3_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW_BYTES (8u << 20) /* read-ahead window of a reader: one ranged GET each */
#define PART_BYTES (8u << 20)   /* one part; AWS's minimum is 5 MiB */
#define PUT_THREADS 3           /* part uploads in flight at once */
#define MAX_PARTS 10000         /* S3's limit */


/* --- names and errors ------------------------------------------------------------------------ */

char *pc__s3r_key(const s3_repo *r, const char *key)
{
    return r->prefix[0] ? pc_asprintf("%s/%s", r->prefix, key) : pc_strdup(key);
}

/* Turns pkg/s3's error (already naming endpoint, bucket, key, HTTP status and S3's code) into
 * the repository's: the uri and the key first, the code mapped to repo.h's, and what to do. */
int pc__s3r_fail(s3_repo *r, pc_s3 *s3, int rc, const char *op, const char *key, pc_error *err)
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
    return pc__s3r_fail(r, r->s3, rc, op, key, err);
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
    return pc__s3r_fail(r, r->s3, rc, op, key, err);
}

static int s3r_stat(pc_repo *repo, const char *key, pc_repo_entry *out, pc_error *err)
{
    s3_repo *r = (s3_repo *)repo;
    pc_s3_info info = {0};
    char *fkey = pc__s3r_key(r, key);
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
    if (!o || !(o->key = pc_strdup(key)) || !(o->fkey = pc__s3r_key(r, key))) {
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
        return pc__s3r_fail(o->r, o->r->s3, rc, "read", o->key, err);
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
    return pc__s3r_fail(p->r, p->fail_conn, p->fail_rc, "write", p->key, err);
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
        return pc__s3r_fail(r, r->s3, rc, "write", p->key, err);
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
    if (!p || !(p->key = pc_strdup(key)) || !(p->fkey = pc__s3r_key(r, key))) {
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
                rc = pc__s3r_fail(r, r->s3, rc, "write", p->key, err);
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
            rc = pc__s3r_fail(r, r->s3, rc, "write", p->key, err);
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
    char *fkey = pc__s3r_key(r, key);
    int rc;
    if (!fkey)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    rc = pc_s3_delete(r->s3, fkey, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        rc = pc__s3r_fail(r, r->s3, rc, "delete", key, err);
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
        rc = pc__s3r_fail(r, r->s3, rc, "list", *prefix ? prefix : "(all)", err);
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
        rc = pc__s3r_fail(r, r->s3, rc, "sweep", "(unfinished uploads)", err);
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
            rc = pc__s3r_fail(r, r->s3, rc, "sweep", u->key + strlen(pfx), err);
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
    .lock = pc__s3r_lock,
    .unlock = pc__s3r_unlock,
    .lock_check = pc__s3r_lock_check,
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
