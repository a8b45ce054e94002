/* repo_util.c: what the backup files share about the repository's layout (backup_int.h): object
 * names, the one reader of pipectl.json, WAL position order, and the local-tree helpers restore
 * uses. No backup .c file includes another's internals; they meet here. */
#define _XOPEN_SOURCE 700 /* strptime, nftw */
#include "backup_int.h"

#include <archive.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *pc__repo_name(const pc_repo *r, const char *key)
{
    const char *u = pc_repo_uri(r);
    size_t ul = strlen(u);
    while (ul > 1 && u[ul - 1] == '/')
        ul--;
    return pc_asprintf("%.*s/%s", (int)ul, u, key);
}

char *pc__backup_key(const char *id, const char *file)
{
    if (file == NULL)
        return pc_asprintf(PC_BACKUPS_DIR "/%s", id);
    return pc_asprintf(PC_BACKUPS_DIR "/%s/%s", id, file);
}

bool pc__backup_id_is(const char *s)
{
    static const char pat[] = "DDDDDDDDTDDDDDDZ";
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'D' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    }
    return s[sizeof pat - 1] == '\0';
}

const char *pc__compression_suffix(const char *c)
{
    if (c == NULL)
        return NULL;
    if (strcmp(c, "zstd") == 0)
        return ".tar.zst";
    if (strcmp(c, "lz4") == 0)
        return ".tar.lz4";
    if (strcmp(c, "gzip") == 0)
        return ".tar.gz";
    if (strcmp(c, "none") == 0)
        return ".tar";
    return NULL;
}

int pc__wal_segcmp(const char *a, const char *b)
{
    /* Names are checked WAL names: 24 upper-case hex digits first, fixed width, so a string
     * comparison of digits 9..24 (log id, segment) is a numeric comparison. */
    return strncmp(a + 8, b + 8, 16);
}

/* ---------- pipectl.json ---------- */

static bool parse_iso_utc(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s != NULL ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (end == NULL || *end != '\0')
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

int pc__backup_read_meta(pc_repo *r, const char *id, pc_backup_info *b, pc_error *err)
{
    int rc = 0;
    char *key = pc__backup_key(id, PC_BACKUP_META);
    char *path = key != NULL ? pc__repo_name(r, key) : NULL;
    json_t *root = NULL;
    pc_buf text = {0};
    memset(b, 0, sizeof *b);
    if (key == NULL || path == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    pc_error ge = {0};
    rc = pc_repo_get_all(r, key, &text, PC_BACKUP_META_MAX, &ge);
    if (rc == PC_ENOTFOUND) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "%s is missing: the backup is incomplete (pipectl.json is written "
                          "last; a killed or failed 'backup create' leaves this, and 'backup "
                          "expire' removes it)",
                          path);
        goto done;
    }
    if (rc != 0) {
        pc_error_set(err, rc, "%s", ge.msg);
        goto done;
    }
    json_error_t je;
    root = json_loadb(text.data != NULL ? text.data : "", text.len, 0, &je);
    if (root == NULL) {
        rc = pc_error_set(err, PC_EIO,
                          "%s is not valid JSON (line %d: %s): the backup's metadata "
                          "is damaged",
                          path, je.line, je.text);
        goto done;
    }
    const char *jid = NULL, *label = NULL, *slsn = NULL, *elsn = NULL, *st = NULL, *et = NULL,
               *swal = NULL, *ewal = NULL, *comp = NULL;
    json_int_t tli = 0, dbb = 0, sb = 0, fmt = 0;
    if (json_unpack_ex(
            root, &je, 0, "{s:I, s:s, s?s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:s}",
            "format", &fmt, "id", &jid, "label", &label, "start_lsn", &slsn, "stop_lsn", &elsn,
            "start_time", &st, "stop_time", &et, "timeline", &tli, "start_wal", &swal, "stop_wal",
            &ewal, "db_bytes", &dbb, "stored_bytes", &sb, "compression", &comp) != 0) {
        rc = pc_error_set(err, PC_EIO, "%s: %s", path, je.text);
        goto done;
    }
    if (fmt != 1 || !pc_streq(jid, id) || pc_wal_name_check(swal, NULL, NULL) != 0 ||
        pc_wal_name_check(ewal, NULL, NULL) != 0 || !parse_iso_utc(st, &b->start_time) ||
        !parse_iso_utc(et, &b->stop_time) || tli <= 0 || pc__compression_suffix(comp) == NULL) {
        rc = pc_error_set(err, PC_EIO,
                          "%s has unexpected content (format %lld, id %s, WAL %s..%s): the "
                          "backup's metadata is damaged",
                          path, (long long)fmt, jid, swal, ewal);
        goto done;
    }
    b->id = pc_strdup(jid);
    b->label = pc_strdup(label != NULL ? label : "");
    b->start_lsn = pc_strdup(slsn);
    b->stop_lsn = pc_strdup(elsn);
    b->timeline = (uint32_t)tli;
    b->start_wal = pc_strdup(swal);
    b->stop_wal = pc_strdup(ewal);
    b->db_bytes = (uint64_t)dbb;
    b->stored_bytes = (uint64_t)sb;
    b->compression = pc_strdup(comp);
    b->dir = pc__backup_key(id, NULL);
    if (b->id == NULL || b->label == NULL || b->start_lsn == NULL || b->stop_lsn == NULL ||
        b->start_wal == NULL || b->stop_wal == NULL || b->compression == NULL || b->dir == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    if (rc != 0)
        pc_backup_info_free(b);
    json_decref(root);
    pc_buf_free(&text);
    free(key);
    free(path);
    return rc;
}

/* ---------- local trees (restore's target directory) ---------- */

/* fsync of every file and directory under a tree (nftw has no context argument). */
static pc_error *g_sync_err;

static int sync_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F && flag != FTW_DP)
        return 0;
    if (flag == FTW_F && !S_ISREG(st->st_mode))
        return 0;
    int fd = open(path, (flag == FTW_DP ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        pc_error_set(g_sync_err, PC_EIO, "cannot open %s to fsync it: %s", path, strerror(errno));
        return -1;
    }
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0 && !(flag == FTW_DP && e == EINVAL)) {
        pc_error_set(g_sync_err, PC_EIO, "fsync of %s failed: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

int pc__fsync_tree(const char *dir, pc_error *err)
{
    pc_error e = {0};
    g_sync_err = &e; /* restore runs one at a time per process */
    int r = nftw(dir, sync_cb, 32, FTW_PHYS | FTW_DEPTH);
    g_sync_err = NULL;
    if (r != 0)
        return pc_error_set(err, PC_EIO, "%s",
                            e.code ? e.msg : "cannot walk the restored directory to fsync it");
    return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

int pc__rmtree(const char *path, pc_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return 0;
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return pc_error_set(err, PC_EIO, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* ---------- libarchive over a repository object ---------- */

/* The read-ahead thread: fills slots in order; the consumer holds the slot at head (handed to
 * libarchive, valid until its next read) and releases it on its next read. */
struct pc__prefetch {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pc_repo_obj *o;
    uint64_t off; /* next byte the thread reads */
    unsigned char *slot[PC__READAHEAD_CHUNKS];
    size_t len[PC__READAHEAD_CHUNKS];
    int head, count; /* filled slots, the oldest at head */
    bool held;       /* the consumer holds slot[head] */
    bool eof, stop;
    int rc;
    pc_error err;
};

static void *prefetch_main(void *arg)
{
    pc__prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->count == PC__READAHEAD_CHUNKS)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        int i = (p->head + p->count) % PC__READAHEAD_CHUNKS;
        uint64_t off = p->off;
        pthread_mutex_unlock(&p->mu);
        size_t got = 0;
        pc_error e = {0};
        int rc = pc_repo_pread(p->o, off, p->slot[i], PC__READ_CHUNK, &got, &e);
        pthread_mutex_lock(&p->mu);
        if (rc != 0) {
            p->rc = rc;
            p->err = e;
            p->eof = true;
        } else if (got == 0) {
            p->eof = true;
        } else {
            p->len[i] = got;
            p->off += got;
            p->count++;
        }
        pthread_cond_broadcast(&p->cv);
        if (p->eof)
            break;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void prefetch_stop(pc__prefetch *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    for (int i = 0; i < PC__READAHEAD_CHUNKS; i++)
        free(p->slot[i]);
    free(p);
}

static int prefetch_start(pc__obj_reader *r)
{
    pc__prefetch *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PC_ENOMEM;
    for (int i = 0; i < PC__READAHEAD_CHUNKS; i++)
        if ((p->slot[i] = malloc(PC__READ_CHUNK)) == NULL) {
            for (int k = 0; k < i; k++)
                free(p->slot[k]);
            free(p);
            return PC_ENOMEM;
        }
    p->o = r->o;
    p->off = r->off;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->tid, NULL, prefetch_main, p) != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        for (int i = 0; i < PC__READAHEAD_CHUNKS; i++)
            free(p->slot[i]);
        free(p);
        return PC_EUNAVAIL;
    }
    r->pf = p;
    return 0;
}

/* The next chunk of the object at r->off: *out points into r's buffer or a held slot, valid
 * until the next call. 0 with *got == 0 at the end. */
static int reader_next(pc__obj_reader *r, const void **out, size_t *got)
{
    pc__prefetch *p = r->pf;
    if (p == NULL) {
        int rc = pc_repo_pread(r->o, r->off, r->buf, sizeof r->buf, got, &r->err);
        if (rc != 0)
            return rc;
        *out = r->buf;
    } else {
        pthread_mutex_lock(&p->mu);
        if (p->held) { /* libarchive is done with the previous chunk */
            p->held = false;
            p->head = (p->head + 1) % PC__READAHEAD_CHUNKS;
            p->count--;
            pthread_cond_broadcast(&p->cv);
        }
        while (p->count == 0 && !p->eof)
            pthread_cond_wait(&p->cv, &p->mu);
        int rc = 0;
        if (p->count > 0) {
            p->held = true;
            *out = p->slot[p->head];
            *got = p->len[p->head];
        } else if (p->rc != 0) {
            rc = p->rc;
            r->err = p->err;
        } else {
            *got = 0;
        }
        pthread_mutex_unlock(&p->mu);
        if (rc != 0)
            return rc;
    }
    if (r->md != NULL && *got > 0)
        pc_sha256_update(r->md, *out, *got);
    r->off += *got;
    return 0;
}

static la_ssize_t obj_read_cb(struct archive *a, void *opaque, const void **out)
{
    pc__obj_reader *r = opaque;
    size_t got = 0;
    if (reader_next(r, out, &got) != 0) {
        archive_set_error(a, EIO, "%s", r->err.msg);
        return -1;
    }
    return (la_ssize_t)got;
}

static la_int64_t obj_skip_cb(struct archive *a, void *opaque, la_int64_t request)
{
    pc__obj_reader *r = opaque;
    (void)a;
    uint64_t size = pc_repo_obj_size(r->o);
    uint64_t left = r->off < size ? size - r->off : 0;
    uint64_t k = request > 0 ? (uint64_t)request : 0;
    if (k > left)
        k = left;
    r->off += k;
    return (la_int64_t)k;
}

int pc__archive_open_obj(struct archive *a, pc__obj_reader *r)
{
    if (r->readahead && r->pf == NULL && prefetch_start(r) != 0)
        r->readahead = false; /* reading in line works too */
    archive_read_set_callback_data(a, r);
    archive_read_set_read_callback(a, obj_read_cb);
    /* a hashed or read-ahead object is read through, in order: no byte may be skipped */
    if (r->md == NULL && r->pf == NULL)
        archive_read_set_skip_callback(a, obj_skip_cb);
    return archive_read_open1(a);
}

int pc__obj_reader_finish(pc__obj_reader *r, pc_error *err)
{
    for (;;) {
        const void *p = NULL;
        size_t got = 0;
        int rc = reader_next(r, &p, &got);
        if (rc != 0)
            return pc_error_set(err, rc, "%s", r->err.msg);
        if (got == 0)
            return 0;
    }
}

void pc__obj_reader_close(pc__obj_reader *r)
{
    if (r == NULL)
        return;
    prefetch_stop(r->pf);
    r->pf = NULL;
    pc_repo_obj_close(r->o);
    r->o = NULL;
}

int pc__repo_sha256(pc_repo *r, const char *key, char out[PC_SHA256_HEX_LEN + 1], pc_error *err)
{
    pc_repo_obj *o = NULL;
    pc_sha256 *md = NULL;
    unsigned char *buf = malloc(PC__READ_CHUNK);
    int rc = 0;
    if (buf == NULL || pc_sha256_new(&md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory hashing %s", key);
        goto done;
    }
    if ((rc = pc_repo_open(r, key, &o, err)) != 0)
        goto done;
    for (uint64_t off = 0;;) {
        size_t got = 0;
        if ((rc = pc_repo_pread(o, off, buf, PC__READ_CHUNK, &got, err)) != 0)
            goto done;
        if (got == 0)
            break;
        pc_sha256_update(md, buf, got);
        off += got;
    }
    pc_sha256_final(md, out);
done:
    pc_repo_obj_close(o);
    pc_sha256_free(md);
    free(buf);
    return rc;
}
