/* basebackup.c: `backup create` and `backup list`.
 *
 * A base backup is pg_basebackup's tar stream (-D - -Ft -X none, manifest with SHA256 checksums)
 * read through a pipe, compressed with libarchive's raw format + the chosen filter, and hashed
 * as it is written. The stream is stored verbatim, so base.tar.* is an ordinary tar of the data
 * directory that also holds backup_manifest as its last member (pg_basebackup injects it when
 * writing to stdout); a tiny tar header parser copies that member out to REPO/backups/ID/
 * backup_manifest as the stream passes. The WAL range (timeline, start and end LSN) comes from
 * the manifest's "WAL-Ranges". -X none: the WAL comes from archiving into the same repository,
 * so create succeeds only once the stop segment is in REPO/wal.
 *
 * The password never appears on pg_basebackup's command line (visible in ps): the DSN is parsed
 * with PQconninfoParse and rebuilt without it, and the password goes to the child alone through
 * PGPASSWORD. */
#define _XOPEN_SOURCE 700 /* strptime, nftw */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backup_int.h"

#define IO_CHUNK (256 * 1024)
/* pg_basebackup silent this long (no tar bytes): it is stuck, usually waiting for archiving. */
#define STALL_TIMEOUT_S 120
/* After pg_basebackup ends, how long the stop segment may take to appear in REPO/wal. */
#define ARCHIVE_WAIT_S 60

/* ---------- shared helpers (backup_int.h) ---------- */

int pc__fsync_dir(const char *dir, pc_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pc_error_set(err, PC_EIO, "cannot open directory %s to fsync it: %s", dir,
                            strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = pc_error_set(err, PC_EIO, "fsync of directory %s failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
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

static void iso_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
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

/* Reads dir/pipectl.json. PC_ENOTFOUND when the file does not exist (incomplete backup). */
static int read_meta(const char *dir, const char *id, pc_backup_info *b, pc_error *err)
{
    int rc = 0;
    char *path = pc_asprintf("%s/%s", dir, PC_BACKUP_META);
    json_t *root = NULL;
    if (path == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    if (access(path, F_OK) != 0) {
        rc = PC_ENOTFOUND;
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

int pc_backup_list(const char *repository, pc_backup_info **out, size_t *n, pc_error *err)
{
    int rc = 0;
    *out = NULL;
    *n = 0;
    pc_backup_info *list = NULL;
    size_t cnt = 0, cap = 0;
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
        memset(&list[cnt], 0, sizeof list[cnt]);
        int r = read_meta(dir, de->d_name, &list[cnt], err);
        free(dir);
        if (r == PC_ENOTFOUND)
            continue; /* incomplete: pipectl.json is written last */
        if (r != 0) {
            rc = r;
            goto done;
        }
        cnt++;
    }
    qsort(list, cnt, sizeof *list, cmp_id);
    *out = list;
    *n = cnt;
    list = NULL;
    cnt = 0;
done:
    pc_backup_list_free(list, cnt);
    if (d != NULL)
        closedir(d);
    free(root);
    return rc;
}

/* ---------- create ---------- */

/* Output side: compressed file, hashed as written. */
typedef struct out_ctx {
    int fd;
    EVP_MD_CTX *md;
    uint64_t bytes;
    int saved_errno;
} out_ctx;

static la_ssize_t out_write_cb(struct archive *a, void *opaque, const void *buf, size_t len)
{
    out_ctx *c = opaque;
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(c->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            c->saved_errno = errno;
            archive_set_error(a, errno, "write: %s", strerror(errno));
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    EVP_DigestUpdate(c->md, buf, len);
    c->bytes += len;
    return (la_ssize_t)len;
}

/* Input side: a minimal ustar reader that follows member boundaries in the passing stream and
 * keeps the content of backup_manifest. */
typedef struct tar_scan {
    unsigned char hdr[512];
    size_t hdr_fill;
    uint64_t data_left; /* bytes of the current member's data still to come */
    uint64_t pad_left;  /* padding after it */
    bool capture;
    bool ended; /* saw the zero block */
    bool bad;
    pc_buf manifest;
    bool have_manifest;
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

static int tar_feed(tar_scan *t, const unsigned char *p, size_t n)
{
    while (n > 0 && !t->ended && !t->bad) {
        if (t->data_left > 0) {
            size_t k = n < t->data_left ? n : (size_t)t->data_left;
            if (t->capture && pc_buf_append(&t->manifest, (const char *)p, k) != 0)
                return PC_ENOMEM;
            t->data_left -= k;
            if (t->data_left == 0 && t->capture) {
                t->capture = false;
                t->have_manifest = true;
            }
            p += k;
            n -= k;
            continue;
        }
        if (t->pad_left > 0) {
            size_t k = n < t->pad_left ? n : (size_t)t->pad_left;
            t->pad_left -= k;
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
            break;
        }
        uint64_t size = tar_size(t->hdr + 124);
        if (size == UINT64_MAX) {
            t->bad = true;
            break;
        }
        char name[101];
        memcpy(name, t->hdr, 100);
        name[100] = '\0';
        char type = (char)t->hdr[156];
        t->members++;
        t->data_left = size;
        t->pad_left = (512 - size % 512) % 512;
        t->capture = strcmp(name, "backup_manifest") == 0 && (type == '0' || type == '\0') &&
                     t->hdr[345] == '\0'; /* no ustar prefix: a top-level file */
        if (t->capture) {
            t->manifest.len = 0;
            if (size == 0)
                t->have_manifest = true, t->capture = false;
        }
    }
    return 0;
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

static void digest_hex(EVP_MD_CTX *md, char out[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[64] = '\0';
}

/* What the server says before the backup starts. */
typedef struct server_facts {
    int version_num;
    char sysid[32];
    uint64_t segsize;
    uint64_t db_bytes; /* estimate, for the progress total */
    char *conn_nopass; /* the DSN rebuilt without its password */
    char *password;
} server_facts;

static void server_facts_free(server_facts *f)
{
    free(f->conn_nopass);
    if (f->password != NULL)
        memset(f->password, 0, strlen(f->password));
    free(f->password);
}

static int append_conn_value(pc_buf *b, const char *key, const char *val)
{
    int rc = pc_buf_printf(b, "%s%s='", b->len ? " " : "", key);
    for (const char *p = val; rc == 0 && *p; p++) {
        if (*p == '\'' || *p == '\\')
            rc = pc_buf_append(b, "\\", 1);
        if (rc == 0)
            rc = pc_buf_append(b, p, 1);
    }
    return rc == 0 ? pc_buf_puts(b, "'") : rc;
}

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
    char *red = pc_redact_dsn(dsn);
    char *perr = NULL;
    PQconninfoOption *opts = NULL;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    pc_buf b = {0};
    char msg[1024];
    opts = PQconninfoParse(dsn, &perr);
    if (opts == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "postgres.dsn %s is not a valid connection string: %s",
                          red ? red : "", perr ? perr : "out of memory");
        goto done;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "password") == 0) {
            f->password = pc_strdup(o->val);
            continue;
        }
        if (strcmp(o->keyword, "replication") == 0)
            continue;
        if (append_conn_value(&b, o->keyword, o->val) != 0) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
    }
    f->conn_nopass = pc_buf_detach(&b);
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
    if (f->segsize == 0 || (f->segsize & (f->segsize - 1)) != 0)
        rc = pc_error_set(err, PC_EIO, "%s reports an unusable wal_segment_size (%s)", red,
                          PQgetvalue(res, 0, 4));
done:
    pc_buf_free(&b);
    PQclear(res);
    PQfinish(conn);
    if (opts != NULL)
        PQconninfoFree(opts);
    PQfreemem(perr);
    free(red);
    return rc;
}

static char *pg_basebackup_path(int version_num)
{
    const char *env = getenv("PC_PG_BIN");
    char *p = NULL;
    if (env != NULL && env[0] != '\0')
        return pc_asprintf("%s/pg_basebackup", env);
    p = pc_asprintf("/usr/lib/postgresql/%d/bin/pg_basebackup", version_num / 10000);
    if (p != NULL && access(p, X_OK) == 0)
        return p;
    free(p);
    return pc_strdup("pg_basebackup"); /* PATH */
}

/* Last lines of the child's stderr, for the error message. */
static void stderr_tail(FILE *f, char *out, size_t cap)
{
    out[0] = '\0';
    if (f == NULL)
        return;
    fflush(f);
    long end = (fseek(f, 0, SEEK_END) == 0) ? ftell(f) : 0;
    long from = end > (long)cap - 1 ? end - ((long)cap - 1) : 0;
    if (fseek(f, from, SEEK_SET) != 0)
        return;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n')
            out[i] = ' ';
}

static int write_file_durably(const char *path, const char *data, size_t len, pc_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return pc_error_set(err, PC_EIO, "cannot create %s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return pc_error_set(err, PC_EIO, "cannot write %s: %s", path, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return pc_error_set(err, PC_EIO, "fsync of %s failed: %s", path, strerror(e));
    }
    if (close(fd) != 0)
        return pc_error_set(err, PC_EIO, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* Everything create builds up; freed in one place. */
typedef struct create_state {
    char *root; /* REPO/backups (absolute) */
    char *dir;  /* REPO/backups/ID */
    char *tarpath;
    char *exe;
    int lock_fd;
    int out_fd;
    int pipe_rd;
    pid_t child;
    FILE *child_err;
    struct archive *a;
    EVP_MD_CTX *md;
    tar_scan scan;
    unsigned char *buf;
    json_t *manifest;
    json_t *meta;
    char *meta_text;
    bool dir_made;
} create_state;

static int run_child(create_state *s, const server_facts *f, const char *label, pc_error *err)
{
    int fds[2];
    if (pipe(fds) != 0)
        return pc_error_set(err, PC_EIO, "pipe: %s", strerror(errno));
    s->child_err = tmpfile();
    if (s->child_err == NULL) {
        close(fds[0]);
        close(fds[1]);
        return pc_error_set(err, PC_EIO, "cannot create a temporary file: %s", strerror(errno));
    }
    s->child = fork();
    if (s->child < 0) {
        close(fds[0]);
        close(fds[1]);
        return pc_error_set(err, PC_EIO, "fork: %s", strerror(errno));
    }
    if (s->child == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fileno(s->child_err), STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        if (f->password != NULL)
            setenv("PGPASSWORD", f->password, 1);
        setenv("PGCONNECT_TIMEOUT", "10", 0); /* the DSN's own connect_timeout wins */
        char *argv[] = {s->exe,
                        "-d",
                        f->conn_nopass,
                        "-D",
                        "-",
                        "-Ft",
                        "-X",
                        "none",
                        "--checkpoint=fast",
                        "--manifest-checksums=SHA256",
                        "--label",
                        (char *)label,
                        "--no-password",
                        NULL};
        execvp(s->exe, argv);
        fprintf(stderr, "cannot run %s: %s\n", s->exe, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    s->pipe_rd = fds[0];
    return 0;
}

/* Streams the child's stdout into the compressor. */
static int pump(create_state *s, const server_facts *f, pc_backup_progress_fn progress, void *ctx,
                uint64_t *tar_bytes, pc_error *err)
{
    time_t last = time(NULL);
    for (;;) {
        struct pollfd pfd = {.fd = s->pipe_rd, .events = POLLIN};
        int pr = poll(&pfd, 1, 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return pc_error_set(err, PC_EIO, "poll: %s", strerror(errno));
        if (pr == 0) {
            if (time(NULL) - last > STALL_TIMEOUT_S)
                return pc_error_set(err, PC_EUNAVAIL,
                                    "pg_basebackup sent nothing for %d s: at the end of a backup "
                                    "it waits for the server to archive the last WAL segment; "
                                    "check pg_stat_archiver (failed_count, last_failed_wal) and "
                                    "the server log",
                                    STALL_TIMEOUT_S);
            continue;
        }
        ssize_t n = read(s->pipe_rd, s->buf, IO_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return pc_error_set(err, PC_EIO, "reading pg_basebackup's output: %s", strerror(errno));
        if (n == 0)
            return 0;
        last = time(NULL);
        if (tar_feed(&s->scan, s->buf, (size_t)n) != 0)
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        size_t off = 0;
        while (off < (size_t)n) {
            la_ssize_t w = archive_write_data(s->a, s->buf + off, (size_t)n - off);
            if (w <= 0)
                return pc_error_set(err, PC_EIO, "cannot write %s: %s", s->tarpath,
                                    archive_error_string(s->a) ? archive_error_string(s->a)
                                                               : "libarchive error");
            off += (size_t)w;
        }
        *tar_bytes += (uint64_t)n;
        if (progress != NULL)
            progress(ctx, *tar_bytes, f->db_bytes);
    }
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
    s->manifest = json_loadb(s->scan.manifest.data, s->scan.manifest.len, 0, &je);
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

static int wait_archived(const char *repository, const char *name, pc_error *err)
{
    for (int i = 0; i < ARCHIVE_WAIT_S * 2; i++) {
        pc_error e = {0};
        int r = pc_wal_stat(repository, name, NULL, &e);
        if (r == 0)
            return 0;
        if (r != PC_ENOTFOUND)
            return pc_error_set(err, r, "%s", e.msg);
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return pc_error_set(err, PC_EUNAVAIL,
                        "the backup's last WAL segment %s did not reach %s/wal within %d s: is "
                        "archive_command pushing into this repository (SHOW archive_command; "
                        "pg_stat_archiver)? Without it the backup cannot be restored, so it was "
                        "removed",
                        name, repository, ARCHIVE_WAIT_S);
}

int pc_backup_create(const char *repository, const char *dsn, const char *compression,
                     const char *label, pc_backup_progress_fn progress, void *ctx,
                     pc_backup_info *out, pc_error *err)
{
    int rc = 0;
    create_state s = {.lock_fd = -1, .out_fd = -1, .pipe_rd = -1, .child = -1};
    server_facts f = {0};
    pc_backup_info b = {0};
    out_ctx oc = {.fd = -1};
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
    if ((rc = pc__fsync_dir(s.root, err)) != 0)
        goto done;
    if (label == NULL || label[0] == '\0') {
        label_dflt = pc_asprintf("pipectl %s", b.id);
        label = label_dflt;
    }
    s.tarpath = pc_asprintf("%s/base%s", s.dir, suffix);
    s.exe = pg_basebackup_path(f.version_num);
    s.buf = malloc(IO_CHUNK);
    s.md = EVP_MD_CTX_new();
    if (label == NULL || s.tarpath == NULL || s.exe == NULL || s.buf == NULL || s.md == NULL ||
        EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    s.out_fd = open(s.tarpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (s.out_fd < 0) {
        rc = pc_error_set(err, PC_EIO, "cannot create %s: %s", s.tarpath, strerror(errno));
        goto done;
    }
    oc.fd = s.out_fd;
    oc.md = s.md;
    if ((rc = open_compressor(&s, compression, &oc, err)) != 0)
        goto done;
    if ((rc = run_child(&s, &f, label, err)) != 0)
        goto done;

    uint64_t tar_bytes = 0;
    rc = pump(&s, &f, progress, ctx, &tar_bytes, err);
    if (rc != 0)
        kill(s.child, SIGTERM);
    int status = 0;
    while (waitpid(s.child, &status, 0) < 0 && errno == EINTR)
        ;
    s.child = -1;
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char tail[1024];
        stderr_tail(s.child_err, tail, sizeof tail);
        rc = pc_error_set(err, PC_EUNAVAIL, "pg_basebackup (%s) failed (%s %d): %s", s.exe,
                          WIFEXITED(status) ? "exit" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                          tail[0] ? tail : "no message");
        goto done;
    }
    if (rc != 0)
        goto done;
    if (archive_write_close(s.a) != ARCHIVE_OK) {
        rc =
            pc_error_set(err, PC_EIO, "cannot finish %s: %s", s.tarpath, archive_error_string(s.a));
        goto done;
    }
    if (fsync(s.out_fd) != 0 || close(s.out_fd) != 0) {
        s.out_fd = -1;
        rc = pc_error_set(err, PC_EIO, "cannot write %s: %s", s.tarpath, strerror(errno));
        goto done;
    }
    s.out_fd = -1;
    char tar_sha[65];
    digest_hex(s.md, tar_sha);
    if (s.scan.bad || !s.scan.ended || !s.scan.have_manifest) {
        rc = pc_error_set(err, PC_EIO,
                          "pg_basebackup's output is not a complete tar with a backup_manifest "
                          "(%zu members%s%s); is pg_basebackup version 15 or newer?",
                          s.scan.members, s.scan.bad ? ", bad header" : "",
                          s.scan.ended ? "" : ", no end marker");
        goto done;
    }
    b.stop_time = (int64_t)time(NULL);
    b.db_bytes = tar_bytes;
    b.stored_bytes = oc.bytes;
    if ((rc = manifest_wal(&s, f.segsize, &b, err)) != 0)
        goto done;

    char *mpath = pc_asprintf("%s/backup_manifest", s.dir);
    if (mpath == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = write_file_durably(mpath, s.scan.manifest.data, s.scan.manifest.len, err);
    free(mpath);
    if (rc != 0)
        goto done;
    char man_sha[65];
    pc_sha256_hex(s.scan.manifest.data, s.scan.manifest.len, man_sha);

    if ((rc = wait_archived(repository, b.stop_wal, err)) != 0)
        goto done;

    char st[32], et[32];
    iso_utc(b.start_time, st);
    iso_utc(b.stop_time, et);
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
    char *tmp = pc_asprintf("%s/.%s.tmp", s.dir, PC_BACKUP_META);
    char *final = pc_asprintf("%s/%s", s.dir, PC_BACKUP_META);
    if (s.meta_text == NULL || tmp == NULL || final == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    } else if ((rc = write_file_durably(tmp, s.meta_text, strlen(s.meta_text), err)) == 0) {
        if (rename(tmp, final) != 0)
            rc = pc_error_set(err, PC_EIO, "cannot rename %s to %s: %s", tmp, final,
                              strerror(errno));
        else
            rc = pc__fsync_dir(s.dir, err);
    }
    free(tmp);
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
    if (s.child > 0) {
        kill(s.child, SIGTERM);
        while (waitpid(s.child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (s.pipe_rd >= 0)
        close(s.pipe_rd);
    if (s.a != NULL) {
        if (rc != 0)
            archive_write_fail(s.a);
        archive_write_free(s.a);
    }
    if (s.out_fd >= 0)
        close(s.out_fd);
    if (s.dir_made) {
        pc_error ignore = {0};
        pc__rmtree(s.dir, &ignore);
        pc__fsync_dir(s.root, &ignore);
    }
    if (s.child_err != NULL)
        fclose(s.child_err);
    EVP_MD_CTX_free(s.md);
    pc_buf_free(&s.scan.manifest);
    json_decref(s.manifest);
    json_decref(s.meta);
    free(s.meta_text);
    free(s.buf);
    free(s.exe);
    free(s.tarpath);
    free(s.dir);
    free(s.root);
    free(label_dflt);
    if (s.lock_fd >= 0)
        close(s.lock_fd);
    server_facts_free(&f);
    pc_backup_info_free(&b);
    return rc;
}
