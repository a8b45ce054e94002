/* basebackup.c: `backup create` and `backup list`.
 *
 * A base backup is the server's tar stream of the data directory, taken with libpq over the
 * replication protocol (BASE_BACKUP with MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256' and fast
 * checkpoint: the stream `pg_basebackup -D - -Ft -X none` writes), compressed with libarchive's
 * raw format + the chosen filter, and hashed as it is written. Like pg_basebackup writing to
 * stdout, the server's archive is stored with backup_manifest injected as its last member (a
 * tiny tar parser follows member boundaries and holds back the end-of-archive blocks), so
 * base.tar.* is an ordinary tar of the data directory; the manifest also goes to
 * REPO/backups/ID/backup_manifest. The WAL range (timeline, start and end LSN) comes from the
 * manifest's "WAL-Ranges". No WAL in the tar: it comes from archiving into the same repository,
 * so create succeeds only once the stop segment is in REPO/wal. The server is told not to wait
 * for the archiver (WAIT false: it polls once a second); pipectl waits for the stop segment in
 * its own repository instead, which is the stronger check and ends as soon as it lands.
 *
 * One process, no pipe: the stream goes from the socket straight into the compressor. The DSN
 * (and its password) stays inside libpq. */
#define _XOPEN_SOURCE 700 /* strptime, nftw */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup_int.h"

/* The server silent this long (no tar bytes): it is stuck. */
#define STALL_TIMEOUT_S 120
/* After the stream ends, the stop segment must appear in REPO/wal. pipectl waits as long as the
 * archiver makes progress (pg_stat_archiver.archived_count grows): a backlog after a load spike
 * is not a reason to throw a finished backup away. It gives up when nothing was archived for
 * archive_wait_s (default ARCHIVE_WAIT_S), when archive_command has been failing that long, or
 * after ARCHIVE_MAX_S in all. REPO/wal is looked at every ARCHIVE_POLL_MS, the server asked once
 * a second. */
#define ARCHIVE_WAIT_S 60
#define ARCHIVE_MAX_S (6 * 3600)
#define ARCHIVE_POLL_MS 50

/* ---------- shared helpers (backup_int.h) ---------- */

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

int pc__backup_lock(const char *repository, const char *what, int *fd_out, pc_error *err)
{
    int rc = 0;
    *fd_out = -1;
    char *dir = pc_asprintf("%s/%s", repository, PC_BACKUPS_DIR);
    char *lock = pc_asprintf("%s/%s/.lock", repository, PC_BACKUPS_DIR);
    struct stat st;
    if (dir == NULL || lock == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (stat(repository, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "backup repository %s is not a directory (%s): create it or fix "
                          "archiving.repository",
                          repository, errno != 0 ? strerror(errno) : "not a directory");
        goto done;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        rc = pc_error_set(err, PC_EIO, "cannot create %s: %s", dir, strerror(errno));
        goto done;
    }
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = pc_error_set(err, PC_EIO, "cannot open lock file %s: %s", lock, strerror(errno));
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            rc = pc_error_set(err, PC_ECONFLICT,
                              "another backup or expire is running on %s (%s is locked); %s "
                              "was not started: retry when it has finished",
                              repository, lock, what);
        else
            rc = pc_error_set(err, PC_EIO, "cannot lock %s: %s", lock, strerror(e));
        goto done;
    }
    *fd_out = fd;
done:
    free(dir);
    free(lock);
    return rc;
}

int pc__wal_segcmp(const char *a, const char *b)
{
    /* Names are checked WAL names: 24 upper-case hex digits first, fixed width, so a string
     * comparison of digits 9..24 (log id, segment) is a numeric comparison. */
    return strncmp(a + 8, b + 8, 16);
}

/* ---------- info ---------- */

void pc_backup_info_free(pc_backup_info *b)
{
    if (b == NULL)
        return;
    free(b->id);
    free(b->label);
    free(b->start_lsn);
    free(b->stop_lsn);
    free(b->start_wal);
    free(b->stop_wal);
    free(b->compression);
    free(b->dir);
    memset(b, 0, sizeof *b);
}

void pc_backup_list_free(pc_backup_info *list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        pc_backup_info_free(&list[i]);
    free(list);
}

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

static const char *compression_suffix(const char *c)
{
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

int pc__backup_read_meta(const char *dir, const char *id, pc_backup_info *b, pc_error *err)
{
    int rc = 0;
    char *path = pc_asprintf("%s/%s", dir, PC_BACKUP_META);
    json_t *root = NULL;
    memset(b, 0, sizeof *b);
    if (path == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    if (access(path, F_OK) != 0) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "%s is missing: the backup is incomplete (pipectl.json is written "
                          "last; a killed or failed 'backup create' leaves this, and 'backup "
                          "expire' removes it)",
                          path);
        goto done;
    }
    json_error_t je;
    root = json_load_file(path, 0, &je);
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
        !parse_iso_utc(et, &b->stop_time) || tli <= 0 || compression_suffix(comp) == NULL) {
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
    b->dir = pc_strdup(dir);
    if (b->id == NULL || b->label == NULL || b->start_lsn == NULL || b->stop_lsn == NULL ||
        b->start_wal == NULL || b->stop_wal == NULL || b->compression == NULL || b->dir == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    if (rc != 0)
        pc_backup_info_free(b);
    json_decref(root);
    free(path);
    return rc;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(((const pc_backup_info *)a)->id, ((const pc_backup_info *)b)->id);
}

static int cmp_damaged(const void *a, const void *b)
{
    return strcmp(((const pc_backup_damaged *)a)->id, ((const pc_backup_damaged *)b)->id);
}

void pc_backup_damaged_free(pc_backup_damaged *list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(list[i].id);
        free(list[i].problem);
    }
    free(list);
}

/* Appends (id, why) to *v; PC_ENOMEM or 0. */
static int damaged_add(pc_backup_damaged **v, size_t *n, const char *id, const char *why)
{
    pc_backup_damaged *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return PC_ENOMEM;
    *v = nv;
    nv[*n].id = pc_strdup(id);
    nv[*n].problem = pc_strdup(why);
    if (nv[*n].id == NULL || nv[*n].problem == NULL) {
        free(nv[*n].id);
        free(nv[*n].problem);
        return PC_ENOMEM;
    }
    (*n)++;
    return 0;
}

int pc_backup_scan(const char *repository, pc_backup_info **out, size_t *n,
                   pc_backup_damaged **damaged, size_t *ndamaged, pc_error *err)
{
    int rc = 0;
    *out = NULL;
    *n = 0;
    if (damaged != NULL)
        *damaged = NULL;
    if (ndamaged != NULL)
        *ndamaged = 0;
    pc_backup_info *list = NULL;
    size_t cnt = 0, cap = 0;
    pc_backup_damaged *bad = NULL;
    size_t nbad = 0;
    char *root = NULL;
    DIR *d = NULL;
    char abs[4096];
    if (realpath(repository, abs) == NULL) {
        rc = pc_error_set(err, errno == ENOENT ? PC_ENOTFOUND : PC_EIO,
                          "cannot open backup repository %s: %s", repository, strerror(errno));
        goto done;
    }
    root = pc_asprintf("%s/%s", abs, PC_BACKUPS_DIR);
    if (root == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    d = opendir(root);
    if (d == NULL) {
        if (errno != ENOENT)
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", root, strerror(errno));
        goto done; /* no backups yet */
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *dir = pc_asprintf("%s/%s", root, de->d_name);
        if (dir == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            free(dir);
            continue;
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            pc_backup_info *nl = realloc(list, nc * sizeof *nl);
            if (nl == NULL) {
                free(dir);
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
            list = nl;
            cap = nc;
        }
        pc_error e = {0};
        int r = pc__backup_read_meta(dir, de->d_name, &list[cnt], &e);
        free(dir);
        if (r == PC_ENOTFOUND)
            continue; /* incomplete: pipectl.json is written last */
        if (r == PC_ENOMEM) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (r != 0) {
            /* One unreadable backup must not stop list, expire and status for the whole
             * repository (retention would stop and WAL pile up): it is reported and skipped. */
            if (damaged_add(&bad, &nbad, de->d_name, e.msg) != 0) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
            continue;
        }
        cnt++;
    }
    /* qsort's list must not be NULL, even for zero elements (C11 7.1.4; UBSan checks it) */
    if (cnt > 1)
        qsort(list, cnt, sizeof *list, cmp_id);
    if (nbad > 1)
        qsort(bad, nbad, sizeof *bad, cmp_damaged);
    *out = list;
    *n = cnt;
    list = NULL;
    cnt = 0;
    if (damaged != NULL && ndamaged != NULL) {
        *damaged = bad;
        *ndamaged = nbad;
        bad = NULL;
        nbad = 0;
    }
done:
    pc_backup_list_free(list, cnt);
    pc_backup_damaged_free(bad, nbad);
    if (d != NULL)
        closedir(d);
    free(root);
    return rc;
}

int pc_backup_list(const char *repository, pc_backup_info **out, size_t *n, pc_error *err)
{
    return pc_backup_scan(repository, out, n, NULL, NULL, err);
}

/* ---------- create ---------- */

/* Output side: compressed file, hashed as written. */
typedef struct out_ctx {
    pc_durable *out;
    pc_sha256 *md;
    uint64_t bytes;
    int saved_errno;
} out_ctx;

static la_ssize_t out_write_cb(struct archive *a, void *opaque, const void *buf, size_t len)
{
    out_ctx *c = opaque;
    if (pc_durable_append(c->out, buf, len, NULL) != 0) {
        c->saved_errno = c->out->sys_errno;
        archive_set_error(a, c->saved_errno, "write: %s", strerror(c->saved_errno));
        return -1;
    }
    pc_sha256_update(c->md, buf, len);
    c->bytes += len;
    return (la_ssize_t)len;
}

/* Input side: a minimal ustar parser that follows member boundaries in the server's stream and
 * passes every member on, holding back the end-of-archive blocks (the manifest goes before
 * them). */
typedef struct tar_scan {
    unsigned char hdr[512];
    size_t hdr_fill;
    uint64_t data_left; /* bytes of the current member's data still to come */
    uint64_t pad_left;  /* padding after it */
    bool ended;         /* saw the zero block */
    bool bad;           /* unparsable header, or data after the end */
    size_t members;
} tar_scan;

static uint64_t tar_size(const unsigned char *f)
{
    uint64_t v = 0;
    if (f[0] & 0x80) { /* base-256 */
        for (int i = 1; i < 12; i++)
            v = (v << 8) | f[i];
        return v;
    }
    for (int i = 0; i < 12 && f[i] != '\0' && f[i] != ' '; i++) {
        if (f[i] < '0' || f[i] > '7')
            return UINT64_MAX;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    return v;
}

typedef int (*tar_emit_fn)(void *ctx, const unsigned char *p, size_t n, pc_error *err);

/* Feeds n bytes of the server's archive: member headers, data and padding go to emit (headers
 * once complete), the end-of-archive zero blocks and anything after them do not. */
static int tar_pass(tar_scan *t, const unsigned char *p, size_t n, tar_emit_fn emit, void *ctx,
                    pc_error *err)
{
    int rc = 0;
    while (n > 0 && rc == 0 && !t->bad) {
        if (t->ended) { /* the second zero block; nothing else may follow */
            for (size_t i = 0; i < n && !t->bad; i++)
                t->bad = p[i] != 0;
            break;
        }
        if (t->data_left > 0 || t->pad_left > 0) {
            uint64_t left = t->data_left + t->pad_left;
            size_t k = n < left ? n : (size_t)left;
            rc = emit(ctx, p, k, err);
            if (k <= t->data_left) {
                t->data_left -= k;
            } else {
                t->pad_left -= k - t->data_left;
                t->data_left = 0;
            }
            p += k;
            n -= k;
            continue;
        }
        size_t k = 512 - t->hdr_fill;
        if (k > n)
            k = n;
        memcpy(t->hdr + t->hdr_fill, p, k);
        t->hdr_fill += k;
        p += k;
        n -= k;
        if (t->hdr_fill < 512)
            continue;
        t->hdr_fill = 0;
        bool zero = true;
        for (int i = 0; i < 512 && zero; i++)
            zero = t->hdr[i] == 0;
        if (zero) {
            t->ended = true;
            continue;
        }
        uint64_t size = tar_size(t->hdr + 124);
        if (size == UINT64_MAX) {
            t->bad = true;
            break;
        }
        t->members++;
        t->data_left = size;
        t->pad_left = (512 - size % 512) % 512;
        rc = emit(ctx, t->hdr, 512, err);
    }
    return rc;
}

/* A ustar header for a regular file (mode 0600) of size bytes. */
static void tar_header(unsigned char h[512], const char *name, uint64_t size, int64_t mtime)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000600", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    char num[24];
    snprintf(num, sizeof num, "%011llo", (unsigned long long)size);
    memcpy(h + 124, num, 12);
    snprintf(num, sizeof num, "%011llo", (unsigned long long)(mtime > 0 ? mtime : 0));
    memcpy(h + 136, num, 12);
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf(num, sizeof num, "%06o", sum);
    memcpy(h + 148, num, 7); /* six digits, NUL, and the space already there */
}

static bool parse_lsn(const char *s, uint64_t *out)
{
    unsigned int hi = 0, lo = 0;
    int used = 0;
    if (s == NULL || sscanf(s, "%X/%X%n", &hi, &lo, &used) != 2 || s[used] != '\0')
        return false;
    *out = ((uint64_t)hi << 32) | lo;
    return true;
}

static void seg_name(uint32_t tli, uint64_t segno, uint64_t segsize, char out[25])
{
    uint64_t per = UINT64_C(0x100000000) / segsize;
    snprintf(out, 25, "%08X%08X%08X", tli, (unsigned)(segno / per), (unsigned)(segno % per));
}

/* What the server says before the backup starts. */
typedef struct server_facts {
    int version_num;
    char sysid[32];
    uint64_t segsize;
    uint64_t db_bytes; /* estimate, for the progress total */
} server_facts;

/* libpq's message without its trailing newline. */
static const char *pq_msg(const PGconn *conn, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", conn != NULL ? PQerrorMessage(conn) : "out of memory");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static int probe_server(const char *dsn, const char *repository, server_facts *f, pc_error *err)
{
    int rc = 0;
    char *red = pc_redact(dsn);
    char *perr = NULL;
    PQconninfoOption *opts = NULL;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char msg[1024];
    opts = PQconninfoParse(dsn, &perr);
    if (opts == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "postgres.dsn %s is not a valid connection string: %s",
                          red ? red : "", perr ? perr : "out of memory");
        goto done;
    }
    /* A bounded connect unless the DSN says otherwise (its own value comes later and wins). */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const vals[] = {"10", dsn, NULL};
    conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        rc = pc_error_set(err, PC_EUNAVAIL, "cannot connect to PostgreSQL at %s: %s", red,
                          pq_msg(conn, msg, sizeof msg));
        goto done;
    }
    res =
        PQexec(conn, "SELECT current_setting('archive_mode'), current_setting('archive_command'), "
                     "current_setting('server_version_num'), "
                     "(SELECT system_identifier::text FROM pg_control_system()), "
                     "pg_size_bytes(current_setting('wal_segment_size')), "
                     "(SELECT coalesce(sum(pg_database_size(oid)), 0) FROM pg_database "
                     " WHERE datallowconn), "
                     "(SELECT string_agg(spcname, ', ') FROM pg_tablespace "
                     " WHERE spcname NOT IN ('pg_default', 'pg_global'))");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pc_error_set(err, PC_EREFUSED, "cannot read the archiving settings of %s: %s", red,
                          pq_msg(conn, msg, sizeof msg));
        goto done;
    }
    const char *mode = PQgetvalue(res, 0, 0);
    const char *cmd = PQgetvalue(res, 0, 1);
    if (strcmp(mode, "off") == 0 || cmd[0] == '\0') {
        rc = pc_error_set(err, PC_EINVAL,
                          "WAL archiving is not enabled on %s (archive_mode = %s, archive_command "
                          "%s): a base backup taken with -X none cannot be restored without the "
                          "archived WAL. Enable archiving into %s (manifest postgres.archiving, "
                          "then 'pipectl apply' and a server restart) and retry",
                          red, mode, cmd[0] ? "set" : "empty", repository);
        goto done;
    }
    if (!PQgetisnull(res, 0, 6)) {
        rc = pc_error_set(err, PC_EINVAL,
                          "%s has tablespaces outside the data directory (%s): pipectl backs up "
                          "a single data directory only; use pg_basebackup -Ft to a directory "
                          "for this cluster",
                          red, PQgetvalue(res, 0, 6));
        goto done;
    }
    f->version_num = atoi(PQgetvalue(res, 0, 2));
    snprintf(f->sysid, sizeof f->sysid, "%s", PQgetvalue(res, 0, 3));
    f->segsize = strtoull(PQgetvalue(res, 0, 4), NULL, 10);
    f->db_bytes = strtoull(PQgetvalue(res, 0, 5), NULL, 10);
    if (f->version_num < 150000)
        rc = pc_error_set(err, PC_EINVAL,
                          "%s runs PostgreSQL %s: pipectl's base backups need 15 or newer (the "
                          "BASE_BACKUP protocol with a manifest); upgrade, or use pg_basebackup",
                          red, PQgetvalue(res, 0, 2));
    else if (f->segsize == 0 || (f->segsize & (f->segsize - 1)) != 0)
        rc = pc_error_set(err, PC_EIO, "%s reports an unusable wal_segment_size (%s)", red,
                          PQgetvalue(res, 0, 4));
done:
    PQclear(res);
    PQfinish(conn);
    if (opts != NULL)
        PQconninfoFree(opts);
    PQfreemem(perr);
    free(red);
    return rc;
}

/* Everything create builds up; freed in one place. */
typedef struct create_state {
    char *root; /* REPO/backups (absolute) */
    char *dir;  /* REPO/backups/ID */
    char *tarpath;
    int lock_fd;
    pc_durable out; /* the tar, under a temporary name until complete */
    PGconn *conn;   /* the replication connection */
    struct archive *a;
    pc_sha256 *md;
    tar_scan scan;
    pc_buf mf;          /* backup_manifest as the server sent it */
    uint64_t tar_bytes; /* uncompressed bytes written to the compressor */
    json_t *manifest;
    json_t *meta;
    char *meta_text;
    bool dir_made;
} create_state;

/* tar_emit_fn: into the compressor. */
static int to_compressor(void *ctx, const unsigned char *p, size_t n, pc_error *err)
{
    create_state *s = ctx;
    size_t off = 0;
    while (off < n) {
        la_ssize_t w = archive_write_data(s->a, p + off, n - off);
        if (w <= 0)
            return pc_error_set(err, PC_EIO, "cannot write %s: %s", s->tarpath,
                                archive_error_string(s->a) ? archive_error_string(s->a)
                                                           : "libarchive error");
        off += (size_t)w;
    }
    s->tar_bytes += n;
    return 0;
}

/* The server's message for a failed result, without the trailing newline. */
static const char *res_msg(const PGresult *res, const PGconn *conn, char *buf, size_t cap)
{
    const char *m = res != NULL ? PQresultErrorMessage(res) : NULL;
    if (m == NULL || m[0] == '\0')
        return pq_msg(conn, buf, cap);
    snprintf(buf, cap, "%s", m);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

/* Opens the replication connection and starts BASE_BACKUP: the start position and the
 * tablespace list come back as result sets, then the COPY stream. */
static int start_base_backup(create_state *s, const char *dsn, const char *label, pc_error *err)
{
    int rc = 0;
    char *red = pc_redact(dsn);
    pc_buf cmd = {0};
    PGresult *res = NULL;
    char msg[1024];
    /* The DSN's own connect_timeout / keepalives / application_name win (it comes later);
     * replication comes last so a DSN cannot turn it off. The keepalives and the user timeout
     * make a vanished server an error within minutes instead of a backup (and a `run` waiting
     * for it on SIGTERM) blocked forever in a wait for the checkpoint or the end result. */
    const char *const keys[] = {"connect_timeout",     "keepalives_idle", "keepalives_interval",
                                "keepalives_count",    "tcp_user_timeout",
                                "fallback_application_name", "dbname", "replication", NULL};
    const char *const vals[] = {"10", "30", "10", "3", "120000", "pipectl backup", dsn, "true",
                                NULL};
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        rc = pc_error_set(err, PC_EUNAVAIL,
                          "cannot open a replication connection to PostgreSQL at %s: %s (the "
                          "role needs the REPLICATION attribute and pg_hba.conf a 'replication' "
                          "entry)",
                          red ? red : "", pq_msg(s->conn, msg, sizeof msg));
        goto done;
    }
    /* What pg_basebackup -Ft -X none --checkpoint=fast --manifest-checksums=SHA256 asks for,
     * except WAIT: the archive wait happens here, in the repository (wait_archived). */
    pc_buf_puts(&cmd, "BASE_BACKUP (LABEL '");
    for (const char *p = label; *p; p++) /* a quote doubled, as the replication parser reads */
        pc_buf_append(&cmd, *p == '\'' ? "''" : p, *p == '\'' ? 2 : 1);
    pc_buf_puts(&cmd, "', CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', "
                      "MANIFEST_CHECKSUMS 'SHA256', TABLESPACE_MAP)");
    if (cmd.data == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (!PQsendQuery(s->conn, cmd.data)) {
        rc = pc_error_set(err, PC_EUNAVAIL, "cannot start the base backup on %s: %s", red,
                          pq_msg(s->conn, msg, sizeof msg));
        goto done;
    }
    for (int step = 0; step < 3; step++) {
        res = PQgetResult(s->conn);
        ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        ExecStatusType want = step < 2 ? PGRES_TUPLES_OK : PGRES_COPY_OUT;
        if (st != want) {
            rc = pc_error_set(err, PC_EUNAVAIL, "PostgreSQL at %s refused the base backup: %s", red,
                              res_msg(res, s->conn, msg, sizeof msg));
            goto done;
        }
        if (step == 1 && PQntuples(res) != 1) {
            rc = pc_error_set(err, PC_EINVAL,
                              "%s has tablespaces outside the data directory: pipectl backs up "
                              "a single data directory only",
                              red);
            goto done;
        }
        PQclear(res);
        res = NULL;
    }
done:
    PQclear(res);
    pc_buf_free(&cmd);
    free(red);
    return rc;
}

/* One CopyData message of the BASE_BACKUP stream: 'n' new archive, 'd' data (archive or, after
 * 'm', manifest), 'p' progress, 'm' the manifest follows. */
static int on_message(create_state *s, const unsigned char *m, size_t n, int *archives,
                      bool *in_manifest, pc_error *err)
{
    if (n == 0)
        return pc_error_set(err, PC_EIO, "the server sent an empty message in the backup stream");
    switch (m[0]) {
    case 'n': {
        const char *name = (const char *)m + 1;
        if (memchr(name, '\0', n - 1) == NULL || ++*archives > 1 || strcmp(name, "base.tar") != 0)
            return pc_error_set(err, PC_EINVAL,
                                "the server sent a second archive or an unexpected one (%.40s): "
                                "pipectl backs up a single data directory without tablespaces",
                                memchr(name, '\0', n - 1) != NULL ? name : "?");
        return 0;
    }
    case 'd':
        if (*in_manifest)
            return pc_buf_append(&s->mf, (const char *)m + 1, n - 1) == 0
                       ? 0
                       : pc_error_set(err, PC_ENOMEM, "out of memory");
        if (*archives != 1)
            return pc_error_set(err, PC_EIO, "the server sent archive data before an archive");
        return tar_pass(&s->scan, m + 1, n - 1, to_compressor, s, err);
    case 'm':
        *in_manifest = true;
        return 0;
    case 'p':
        return 0;
    default:
        return pc_error_set(err, PC_EIO,
                            "the server sent an unknown message type 0x%02x in the backup "
                            "stream: is it PostgreSQL 15 or newer?",
                            m[0]);
    }
}

/* Streams the archive into the compressor and keeps the manifest; then reads the end result. */
static int stream_backup(create_state *s, const server_facts *f, pc_backup_progress_fn progress,
                         void *ctx, pc_error *err)
{
    int archives = 0;
    bool in_manifest = false;
    char msg[1024];
    time_t last = time(NULL);
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(s->conn, &buf, 1);
        if (n > 0) {
            int rc =
                on_message(s, (const unsigned char *)buf, (size_t)n, &archives, &in_manifest, err);
            PQfreemem(buf);
            if (rc != 0)
                return rc;
            last = time(NULL);
            if (progress != NULL)
                progress(ctx, s->tar_bytes, f->db_bytes);
            continue;
        }
        if (n == -1)
            break;
        if (n < -1)
            return pc_error_set(err, PC_EUNAVAIL, "the base backup stream broke off: %s",
                                pq_msg(s->conn, msg, sizeof msg));
        struct pollfd pfd = {.fd = PQsocket(s->conn), .events = POLLIN};
        int pr = poll(&pfd, 1, 1000);
        if (pr < 0 && errno != EINTR)
            return pc_error_set(err, PC_EIO, "poll: %s", strerror(errno));
        if (pr == 0 && time(NULL) - last > STALL_TIMEOUT_S)
            return pc_error_set(err, PC_EUNAVAIL,
                                "the server sent nothing of the base backup for %d s: check "
                                "its log and pg_stat_activity (a checkpoint or I/O stall?)",
                                STALL_TIMEOUT_S);
        if (pr > 0 && !PQconsumeInput(s->conn))
            return pc_error_set(err, PC_EUNAVAIL, "the base backup stream broke off: %s",
                                pq_msg(s->conn, msg, sizeof msg));
    }
    /* After the COPY: the end position, then the command's completion. */
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (rc == 0 && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
            rc = pc_error_set(err, PC_EUNAVAIL, "the base backup failed on the server: %s",
                              res_msg(res, s->conn, msg, sizeof msg));
        PQclear(res);
    }
    if (rc != 0)
        return rc;
    if (s->scan.bad || !s->scan.ended || s->scan.data_left > 0 || s->scan.pad_left > 0 ||
        s->scan.hdr_fill > 0 || archives != 1 || s->mf.len == 0)
        return pc_error_set(err, PC_EIO,
                            "the server's backup stream is not a complete tar and a manifest "
                            "(%zu members%s%s%s)",
                            s->scan.members, s->scan.bad ? ", bad header or trailing data" : "",
                            s->scan.ended ? "" : ", no end marker",
                            s->mf.len == 0 ? ", no backup_manifest" : "");
    /* backup_manifest as the last member, then the end-of-archive blocks: what pg_basebackup
     * writes to stdout. */
    unsigned char h[1024];
    tar_header(h, "backup_manifest", s->mf.len, (int64_t)time(NULL));
    if ((rc = to_compressor(s, h, 512, err)) != 0 ||
        (rc = to_compressor(s, (const unsigned char *)s->mf.data, s->mf.len, err)) != 0)
        return rc;
    memset(h, 0, sizeof h);
    size_t pad = (512 - s->mf.len % 512) % 512;
    if ((pad > 0 && (rc = to_compressor(s, h, pad, err)) != 0) ||
        (rc = to_compressor(s, h, 1024, err)) != 0)
        return rc;
    if (progress != NULL)
        progress(ctx, s->tar_bytes, f->db_bytes);
    return 0;
}

static int open_compressor(create_state *s, const char *compression, out_ctx *oc, pc_error *err)
{
    s->a = archive_write_new();
    if (s->a == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    int r = ARCHIVE_OK;
    if (strcmp(compression, "zstd") == 0)
        r = archive_write_add_filter_zstd(s->a);
    else if (strcmp(compression, "lz4") == 0)
        r = archive_write_add_filter_lz4(s->a);
    else if (strcmp(compression, "gzip") == 0)
        r = archive_write_add_filter_gzip(s->a);
    else
        r = archive_write_add_filter_none(s->a);
    if (r != ARCHIVE_OK || archive_write_set_format_raw(s->a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(s->a, 1) != ARCHIVE_OK ||
        archive_write_open(s->a, oc, NULL, out_write_cb, NULL) != ARCHIVE_OK)
        return pc_error_set(err, PC_EIO, "cannot set up %s compression for %s: %s", compression,
                            s->tarpath, archive_error_string(s->a));
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    archive_entry_set_pathname(e, "base.tar");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0640);
    r = archive_write_header(s->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return pc_error_set(err, PC_EIO, "cannot start %s: %s", s->tarpath,
                            archive_error_string(s->a));
    return 0;
}

/* Reads the manifest's WAL range. */
static int manifest_wal(create_state *s, uint64_t segsize, pc_backup_info *b, pc_error *err)
{
    json_error_t je;
    s->manifest = json_loadb(s->mf.data, s->mf.len, 0, &je);
    json_t *ranges = s->manifest ? json_object_get(s->manifest, "WAL-Ranges") : NULL;
    size_t nr = json_array_size(ranges);
    if (nr == 0)
        return pc_error_set(err, PC_EIO,
                            "the backup_manifest pg_basebackup sent has no WAL-Ranges (%s)",
                            s->manifest ? "empty" : je.text);
    json_int_t tl0 = 0, tl1 = 0;
    const char *slsn = NULL, *elsn = NULL, *dummy = NULL;
    if (json_unpack(json_array_get(ranges, 0), "{s:I, s:s, s:s}", "Timeline", &tl0, "Start-LSN",
                    &slsn, "End-LSN", &dummy) != 0 ||
        json_unpack(json_array_get(ranges, nr - 1), "{s:I, s:s, s:s}", "Timeline", &tl1,
                    "Start-LSN", &dummy, "End-LSN", &elsn) != 0)
        return pc_error_set(err, PC_EIO, "the backup_manifest's WAL-Ranges are malformed");
    uint64_t start = 0, stop = 0;
    if (!parse_lsn(slsn, &start) || !parse_lsn(elsn, &stop) || stop < start || tl0 <= 0 || tl1 <= 0)
        return pc_error_set(err, PC_EIO, "the backup_manifest's WAL range %s..%s is malformed",
                            slsn, elsn);
    char sw[25], ew[25];
    seg_name((uint32_t)tl0, start / segsize, segsize, sw);
    /* The stop LSN points just past the last record: the segment holding stop - 1, as
     * pg_backup_stop names it (a stop exactly on a boundary does not need the next one). */
    seg_name((uint32_t)tl1, (stop > 0 ? stop - 1 : 0) / segsize, segsize, ew);
    b->start_lsn = pc_strdup(slsn);
    b->stop_lsn = pc_strdup(elsn);
    b->start_wal = pc_strdup(sw);
    b->stop_wal = pc_strdup(ew);
    b->timeline = (uint32_t)tl1;
    if (!b->start_lsn || !b->stop_lsn || !b->start_wal || !b->stop_wal)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    return 0;
}

static int wait_archived(const char *repository, const char *dsn, const char *name,
                         int wait_s, pc_error *err)
{
    int64_t start = pc_mono_ms(), progress = start, asked = 0, failing_since = 0;
    int64_t count = -1;
    char failed_wal[64] = "";
    for (;;) {
        pc_error e = {0};
        int r = pc_wal_stat(repository, name, NULL, &e);
        if (r == 0)
            return 0;
        if (r != PC_ENOTFOUND)
            return pc_error_set(err, r,
                                "looking for the backup's last WAL segment %s in the repository: "
                                "%s; the backup cannot be restored without it and was removed",
                                name, e.msg);
        int64_t now = pc_mono_ms();
        if (now - asked >= 1000) {
            asked = now;
            pc_archiver_stat st = {0};
            pc_error se = {0};
            if (pc_archiver_stat_read(dsn, 5, &st, &se) == 0) {
                if (st.archived_count > count) {
                    if (count >= 0)
                        progress = now;
                    count = st.archived_count;
                }
                if (st.failing) {
                    if (failing_since == 0)
                        failing_since = now;
                    snprintf(failed_wal, sizeof failed_wal, "%s",
                             st.last_failed_wal ? st.last_failed_wal : "?");
                } else {
                    failing_since = 0;
                }
            }
            pc_archiver_stat_free(&st);
        }
        if (failing_since != 0 && now - failing_since >= (int64_t)wait_s * 1000)
            return pc_error_set(err, PC_EUNAVAIL,
                                "archive_command has been failing for %d s (last failed segment "
                                "%s; pg_stat_archiver and the PostgreSQL log say why), so the "
                                "backup's last WAL segment %s cannot reach %s/wal: the backup "
                                "cannot be restored and was removed. Fix archiving and run the "
                                "backup again",
                                wait_s, failed_wal, name, repository);
        if (now - progress >= (int64_t)wait_s * 1000 || now - start >= ARCHIVE_MAX_S * 1000LL)
            return pc_error_set(err, PC_EUNAVAIL,
                                "the backup's last WAL segment %s did not reach %s/wal and nothing "
                                "was archived for %d s: is archive_command pushing into this "
                                "repository (SHOW archive_command; pg_stat_archiver)? Without it "
                                "the backup cannot be restored, so it was removed (--archive-wait "
                                "waits longer)",
                                name, repository, wait_s);
        pc_sleep_ms(ARCHIVE_POLL_MS);
    }
}

int pc_backup_create(const char *repository, const char *dsn, const char *compression,
                     const char *label, int archive_wait_s, pc_backup_progress_fn progress,
                     void *ctx, pc_backup_info *out, pc_error *err)
{
    int rc = 0;
    create_state s = {.lock_fd = -1, .out = PC_DURABLE_INIT};
    server_facts f = {0};
    pc_backup_info b = {0};
    out_ctx oc = {0};
    char *label_dflt = NULL;
    char abs[4096];
    memset(out, 0, sizeof *out);
    if (compression == NULL || compression[0] == '\0')
        compression = "zstd";
    const char *suffix = compression_suffix(compression);
    if (suffix == NULL) {
        rc = pc_error_set(err, PC_EINVAL,
                          "unknown backup compression '%s': use zstd, lz4, gzip or none",
                          compression);
        goto done;
    }
    if (dsn == NULL || dsn[0] == '\0') {
        rc = pc_error_set(err, PC_EINVAL, "no postgres.dsn to take a backup from");
        goto done;
    }
    if (realpath(repository, abs) == NULL) {
        rc = pc_error_set(err, errno == ENOENT ? PC_ENOTFOUND : PC_EIO,
                          "backup repository %s: %s: create it or fix archiving.repository",
                          repository, strerror(errno));
        goto done;
    }
    repository = abs;
    if ((rc = pc__backup_lock(repository, "backup create", &s.lock_fd, err)) != 0)
        goto done;
    if ((rc = probe_server(dsn, repository, &f, err)) != 0)
        goto done;

    /* ID from the start time; a second backup within the same second waits for the next. */
    s.root = pc_asprintf("%s/%s", repository, PC_BACKUPS_DIR);
    if (s.root == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    for (int tries = 0; !s.dir_made; tries++) {
        b.start_time = (int64_t)time(NULL);
        char id[32];
        time_t tt = (time_t)b.start_time;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(id, sizeof id, "%Y%m%dT%H%M%SZ", &tm);
        free(b.id);
        free(s.dir);
        b.id = pc_strdup(id);
        s.dir = pc_asprintf("%s/%s", s.root, id);
        if (b.id == NULL || s.dir == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (mkdir(s.dir, 0750) == 0) {
            s.dir_made = true;
        } else if (errno != EEXIST || tries >= 3) {
            rc = pc_error_set(err, PC_EIO, "cannot create backup directory %s: %s", s.dir,
                              strerror(errno));
            goto done;
        } else {
            sleep(1);
        }
    }
    if ((rc = pc_fsync_dir(s.root, err)) != 0)
        goto done;
    if (label == NULL || label[0] == '\0') {
        label_dflt = pc_asprintf("pipectl %s", b.id);
        label = label_dflt;
    }
    s.tarpath = pc_asprintf("%s/base%s", s.dir, suffix);
    if (label == NULL || s.tarpath == NULL || pc_sha256_new(&s.md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_durable_open(&s.out, s.tarpath, 0640, err)) != 0)
        goto done;
    oc.out = &s.out;
    oc.md = s.md;
    if ((rc = open_compressor(&s, compression, &oc, err)) != 0)
        goto done;
    if ((rc = start_base_backup(&s, dsn, label, err)) != 0 ||
        (rc = stream_backup(&s, &f, progress, ctx, err)) != 0)
        goto done;
    PQfinish(s.conn);
    s.conn = NULL;
    if (archive_write_close(s.a) != ARCHIVE_OK) {
        rc =
            pc_error_set(err, PC_EIO, "cannot finish %s: %s", s.tarpath, archive_error_string(s.a));
        goto done;
    }
    if ((rc = pc_durable_commit(&s.out, PC_DURABLE_REPLACE, err)) != 0)
        goto done;
    char tar_sha[PC_SHA256_HEX_LEN + 1];
    pc_sha256_final(s.md, tar_sha);
    b.stop_time = (int64_t)time(NULL);
    b.db_bytes = s.tar_bytes;
    b.stored_bytes = oc.bytes;
    if ((rc = manifest_wal(&s, f.segsize, &b, err)) != 0)
        goto done;

    char *mpath = pc_asprintf("%s/backup_manifest", s.dir);
    if (mpath == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pc_durable_write(mpath, s.mf.data, s.mf.len, 0640, err);
    free(mpath);
    if (rc != 0)
        goto done;
    char man_sha[PC_SHA256_HEX_LEN + 1];
    pc_sha256_hex(s.mf.data, s.mf.len, man_sha);

    if ((rc = wait_archived(repository, dsn, b.stop_wal,
                            archive_wait_s > 0 ? archive_wait_s : ARCHIVE_WAIT_S, err)) != 0)
        goto done;

    char st[32], et[32];
    pc_iso_utc(b.start_time, st);
    pc_iso_utc(b.stop_time, et);
    s.meta =
        json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:s, "
                  "s:{s:s, s:s}, s:i, s:s}",
                  "format", 1, "id", b.id, "label", label, "start_lsn", b.start_lsn, "stop_lsn",
                  b.stop_lsn, "start_time", st, "stop_time", et, "timeline", (json_int_t)b.timeline,
                  "start_wal", b.start_wal, "stop_wal", b.stop_wal, "db_bytes",
                  (json_int_t)b.db_bytes, "stored_bytes", (json_int_t)b.stored_bytes, "compression",
                  compression, "files", strrchr(s.tarpath, '/') + 1, tar_sha, "backup_manifest",
                  man_sha, "pg_version", f.version_num, "system_identifier", f.sysid);
    s.meta_text = s.meta ? json_dumps(s.meta, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char *final = pc_asprintf("%s/%s", s.dir, PC_BACKUP_META);
    if (s.meta_text == NULL || final == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    else
        rc = pc_durable_write(final, s.meta_text, strlen(s.meta_text), 0640, err);
    free(final);
    if (rc != 0)
        goto done;
    b.label = pc_strdup(label);
    b.compression = pc_strdup(compression);
    b.dir = pc_strdup(s.dir);
    if (b.label == NULL || b.compression == NULL || b.dir == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    *out = b;
    memset(&b, 0, sizeof b);
    s.dir_made = false; /* complete: keep it */

done:
    PQfinish(s.conn); /* mid-stream: the server aborts its side of the backup */
    if (s.a != NULL) {
        if (rc != 0)
            archive_write_fail(s.a);
        archive_write_free(s.a);
    }
    pc_durable_abort(&s.out);
    if (s.dir_made) {
        pc_error ignore = {0};
        pc__rmtree(s.dir, &ignore);
        pc_fsync_dir(s.root, &ignore);
    }
    pc_sha256_free(s.md);
    pc_buf_free(&s.mf);
    json_decref(s.manifest);
    json_decref(s.meta);
    free(s.meta_text);
    free(s.tarpath);
    free(s.dir);
    free(s.root);
    free(label_dflt);
    if (s.lock_fd >= 0)
        close(s.lock_fd);
    pc_backup_info_free(&b);
    return rc;
}
