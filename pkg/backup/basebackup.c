/* basebackup.c: `backup create` and `backup list`.
 *
 * A base backup is the server's tar stream of the data directory, taken with libpq over the
 * replication protocol (BASE_BACKUP with MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256' and fast
 * checkpoint: the stream `pg_basebackup -D - -Ft -X none` writes), compressed with libarchive's
 * raw format + the chosen filter, and hashed as it is written. Like pg_basebackup writing to
 * stdout, the server's archive is stored with backup_manifest injected as its last member (a
 * tiny tar parser follows member boundaries and holds back the end-of-archive blocks), so
 * base.tar.* is an ordinary tar of the data directory; the manifest also goes to
 * backups/ID/backup_manifest in the repository. The WAL range (timeline, start and end LSN) comes
 * from the manifest's "WAL-Ranges". No WAL in the tar: it comes from archiving into the same
 * repository, so create succeeds only once the stop segment is in the repository's wal/. The server
 * is told not to wait for the archiver (WAIT false: it polls once a second); pipectl waits for the
 * stop segment in its own repository instead, which is the stronger check and ends as soon as it
 * lands.
 *
 * One process, no pipe: the stream goes from the socket straight into the compressor and from
 * there into the repository's put (repo.h: a directory or a bucket; the tar is never whole in
 * memory). The DSN (and its password) stays inside libpq. */
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
#include "postgres.h"

/* The server silent this long (no tar bytes): it is stuck. */
#define STALL_TIMEOUT_S 120
/* After the stream ends, the stop segment must appear in the repository. pipectl waits as long as
 * the archiver makes progress (pg_stat_archiver.archived_count grows): a backlog after a load spike
 * is not a reason to throw a finished backup away. It gives up when nothing was archived for
 * archive_wait_s (default ARCHIVE_WAIT_S), when archive_command has been failing that long, or
 * after ARCHIVE_MAX_S in all. The repository is looked at every ARCHIVE_POLL_MS, the server asked
 * once a second. */
#define ARCHIVE_WAIT_S 60
#define ARCHIVE_MAX_S (6 * 3600)
#define ARCHIVE_POLL_MS 50

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

/* One backup in a listing of backups/: its ID and whether pipectl.json is among its objects. */
typedef struct scan_ctx {
    char **ids; /* with pipectl.json */
    size_t n, cap;
} scan_ctx;

static int scan_cb(void *opaque, const pc_repo_entry *e)
{
    scan_ctx *c = opaque;
    const char *id = e->key + strlen(PC_BACKUPS_DIR "/");
    const char *slash = strchr(id, '/');
    if (slash == NULL || strcmp(slash + 1, PC_BACKUP_META) != 0)
        return 0; /* another file of a backup (or not in a backup's directory) */
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        char **nv = realloc(c->ids, nc * sizeof *nv);
        if (nv == NULL)
            return PC_ENOMEM;
        c->ids = nv;
        c->cap = nc;
    }
    c->ids[c->n] = pc_strndup(id, (size_t)(slash - id));
    if (c->ids[c->n] == NULL)
        return PC_ENOMEM;
    c->n++;
    return 0;
}

int pc_backup_scan(pc_repo *repo, pc_backup_info **out, size_t *n, pc_backup_damaged **damaged,
                   size_t *ndamaged, pc_error *err)
{
    int rc = 0;
    *out = NULL;
    *n = 0;
    if (damaged != NULL)
        *damaged = NULL;
    if (ndamaged != NULL)
        *ndamaged = 0;
    pc_backup_info *list = NULL;
    size_t cnt = 0;
    pc_backup_damaged *bad = NULL;
    size_t nbad = 0;
    scan_ctx sc = {0};
    /* pipectl.json is written last and deleted first: a backup is listed when it has one */
    rc = pc_repo_list(repo, PC_BACKUPS_DIR "/", scan_cb, &sc, err);
    if (rc == PC_ENOMEM)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    if (rc != 0)
        goto done;
    list = calloc(sc.n > 0 ? sc.n : 1, sizeof *list);
    if (list == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < sc.n; i++) {
        pc_error e = {0};
        int r = pc__backup_read_meta(repo, sc.ids[i], &list[cnt], &e);
        if (r == PC_ENOTFOUND)
            continue; /* deleted meanwhile */
        if (r == PC_ENOMEM || r == PC_EUNAVAIL) {
            rc = pc_error_set(err, r, "%s", e.msg);
            goto done;
        }
        if (r != 0) {
            /* One unreadable backup must not stop list, expire and status for the whole
             * repository (retention would stop and WAL pile up): it is reported and skipped. */
            if (damaged_add(&bad, &nbad, sc.ids[i], e.msg) != 0) {
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
    for (size_t i = 0; i < sc.n; i++)
        free(sc.ids[i]);
    free(sc.ids);
    return rc;
}

int pc_backup_list(pc_repo *repo, pc_backup_info **out, size_t *n, pc_error *err)
{
    return pc_backup_scan(repo, out, n, NULL, NULL, err);
}

/* ---------- create ---------- */

/* Output side: compressed file, hashed as written. */
typedef struct out_ctx {
    pc_repo_put *put;
    pc_sha256 *md;
    uint64_t bytes;
    pc_error err; /* the put's failure */
} out_ctx;

static la_ssize_t out_write_cb(struct archive *a, void *opaque, const void *buf, size_t len)
{
    out_ctx *c = opaque;
    if (pc_repo_put_write(c->put, buf, len, &c->err) != 0) {
        archive_set_error(a, EIO, "%s", c->err.msg);
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

static int probe_server(const char *dsn, int timeout_s, const char *repository, server_facts *f,
                        pc_error *err)
{
    int rc = 0;
    char *red = pc_redact(dsn);
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char msg[1024];
    /* one connect helper (pkg/postgres): the DSN checked, a bounded connect, keepalives */
    const pc_pg_connect_opts co = {.timeout_s = timeout_s,
                                   .application_name = "pipectl backup create"};
    if ((rc = pc_pg_connect(&conn, dsn, &co, err)) != 0)
        goto done;
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
    free(red);
    return rc;
}

/* Everything create builds up; freed in one place. */
typedef struct create_state {
    pc_repo *repo;
    char *tar_key;  /* backups/ID/base.tar.* */
    char *mf_key;   /* backups/ID/backup_manifest */
    char *meta_key; /* backups/ID/pipectl.json */
    char *tarpath;  /* the tar's name in messages: <repository>/<tar_key> */
    pc_repo_lock *lock;
    pc_repo_put *out; /* the tar, invisible until committed */
    PGconn *conn;     /* the replication connection */
    struct archive *a;
    pc_sha256 *md;
    tar_scan scan;
    pc_buf mf;          /* backup_manifest as the server sent it */
    uint64_t tar_bytes; /* uncompressed bytes written to the compressor */
    json_t *manifest;
    json_t *meta;
    char *meta_text;
    bool started; /* objects of this backup may exist: removed again on failure */
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
static int start_base_backup(create_state *s, const char *dsn, int timeout_s, const char *label,
                             pc_error *err)
{
    int rc = 0;
    char *red = pc_redact(dsn);
    pc_buf cmd = {0};
    PGresult *res = NULL;
    char msg[1024];
    /* pkg/postgres' connect helper: the DSN's own connect_timeout / keepalives /
     * application_name win, replication is forced on. The keepalives make a vanished server an
     * error instead of a backup (and a `run` waiting for it on SIGTERM) blocked forever in a wait
     * for the checkpoint or the end result. */
    const pc_pg_connect_opts co = {.timeout_s = timeout_s,
                                   .application_name = "pipectl backup create",
                                   .replication = true};
    if ((rc = pc_pg_connect(&s->conn, dsn, &co, err)) != 0) {
        if (rc == PC_EREFUSED)
            pc_error_prefix(err, "base backup: the replication connection needs a role with the "
                                 "REPLICATION attribute and a 'replication' line in pg_hba.conf");
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

static int wait_archived(pc_repo *repo, const char *dsn, const char *name, int wait_s,
                         pc_error *err)
{
    int64_t start = pc_mono_ms(), progress = start, asked = 0, failing_since = 0;
    int64_t count = -1;
    char failed_wal[64] = "";
    const char *repository = pc_repo_uri(repo);
    char key[PC_WAL_NAME_MAX + sizeof PC_WAL_DIR + sizeof PC_WAL_SUFFIX];
    snprintf(key, sizeof key, PC_WAL_DIR "/%s" PC_WAL_SUFFIX, name);
    for (;;) {
        pc_error e = {0};
        /* a cheap existence check while waiting; the trailer is read once it is there */
        int r = pc_repo_stat(repo, key, NULL, &e);
        if (r == 0)
            r = pc_wal_stat(repo, name, NULL, &e);
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

/* Does any object of backup id exist (a backup of the same second, or its leftovers)? */
static int any_object(void *ctx, const pc_repo_entry *e)
{
    (void)e;
    *(bool *)ctx = true;
    return 1; /* one is enough */
}

int pc_backup_create(pc_repo *repo, const char *dsn, const char *compression, const char *label,
                     int archive_wait_s, int connect_timeout_s, pc_backup_progress_fn progress,
                     void *ctx,
                     pc_backup_info *out, pc_error *err)
{
    int rc = 0;
    create_state s = {.repo = repo};
    server_facts f = {0};
    pc_backup_info b = {0};
    out_ctx oc = {0};
    char *label_dflt = NULL;
    memset(out, 0, sizeof *out);
    if (compression == NULL || compression[0] == '\0')
        compression = "zstd";
    const char *suffix = pc__compression_suffix(compression);
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
    if (repo == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "no backup repository given");
        goto done;
    }
    const char *repository = pc_repo_uri(repo);
    if ((rc = pc_repo_lock_take(repo, "backup create", &s.lock, err)) != 0)
        goto done;
    if ((rc = probe_server(dsn, connect_timeout_s, repository, &f, err)) != 0)
        goto done;

    /* ID from the start time; a second backup within the same second waits for the next. */
    for (int tries = 0;; tries++) {
        b.start_time = (int64_t)time(NULL);
        char id[32];
        time_t tt = (time_t)b.start_time;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(id, sizeof id, "%Y%m%dT%H%M%SZ", &tm);
        free(b.id);
        b.id = pc_strdup(id);
        char *prefix = pc_asprintf(PC_BACKUPS_DIR "/%s/", id);
        if (b.id == NULL || prefix == NULL) {
            free(prefix);
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        bool taken = false;
        rc = pc_repo_list(repo, prefix, any_object, &taken, err);
        free(prefix);
        if (rc == 1)
            rc = 0;
        if (rc != 0)
            goto done;
        if (!taken)
            break;
        if (tries >= 3) {
            rc = pc_error_set(err, PC_ECONFLICT,
                              "cannot start backup %s in %s: objects of a backup with that ID "
                              "exist",
                              id, repository);
            goto done;
        }
        sleep(1);
    }
    if (label == NULL || label[0] == '\0') {
        label_dflt = pc_asprintf("pipectl %s", b.id);
        label = label_dflt;
    }
    char tarname[32];
    snprintf(tarname, sizeof tarname, "base%s", suffix);
    s.tar_key = pc__backup_key(b.id, tarname);
    s.mf_key = pc__backup_key(b.id, "backup_manifest");
    s.meta_key = pc__backup_key(b.id, PC_BACKUP_META);
    s.tarpath = s.tar_key != NULL ? pc__repo_name(repo, s.tar_key) : NULL;
    if (label == NULL || s.tar_key == NULL || s.mf_key == NULL || s.meta_key == NULL ||
        s.tarpath == NULL || pc_sha256_new(&s.md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    s.started = true;
    if ((rc = pc_repo_put_begin(repo, s.tar_key, &s.out, err)) != 0)
        goto done;
    oc.put = s.out;
    oc.md = s.md;
    if ((rc = open_compressor(&s, compression, &oc, err)) != 0)
        goto done;
    if ((rc = start_base_backup(&s, dsn, connect_timeout_s, label, err)) != 0 ||
        (rc = stream_backup(&s, &f, progress, ctx, err)) != 0)
        goto done;
    PQfinish(s.conn);
    s.conn = NULL;
    if (archive_write_close(s.a) != ARCHIVE_OK) {
        rc = oc.err.code != 0 ? pc_error_set(err, oc.err.code, "%s", oc.err.msg)
                              : pc_error_set(err, PC_EIO, "cannot finish %s: %s", s.tarpath,
                                             archive_error_string(s.a));
        goto done;
    }
    pc_repo_put *tar = s.out;
    s.out = NULL; /* commit frees it whatever the result */
    if ((rc = pc_repo_put_commit(tar, PC_REPO_REPLACE, err)) != 0)
        goto done;
    char tar_sha[PC_SHA256_HEX_LEN + 1];
    pc_sha256_final(s.md, tar_sha);
    b.stop_time = (int64_t)time(NULL);
    b.db_bytes = s.tar_bytes;
    b.stored_bytes = oc.bytes;
    if ((rc = manifest_wal(&s, f.segsize, &b, err)) != 0)
        goto done;

    if ((rc = pc_repo_put_all(repo, s.mf_key, s.mf.data, s.mf.len, PC_REPO_REPLACE, err)) != 0)
        goto done;
    char man_sha[PC_SHA256_HEX_LEN + 1];
    pc_sha256_hex(s.mf.data, s.mf.len, man_sha);

    if ((rc = wait_archived(repo, dsn, b.stop_wal,
                            archive_wait_s > 0 ? archive_wait_s : ARCHIVE_WAIT_S, err)) != 0)
        goto done;

    char st[32], et[32];
    pc_iso_utc(b.start_time, st);
    pc_iso_utc(b.stop_time, et);
    s.meta = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:s, "
        "s:{s:s, s:s}, s:i, s:s}",
        "format", 1, "id", b.id, "label", label, "start_lsn", b.start_lsn, "stop_lsn", b.stop_lsn,
        "start_time", st, "stop_time", et, "timeline", (json_int_t)b.timeline, "start_wal",
        b.start_wal, "stop_wal", b.stop_wal, "db_bytes", (json_int_t)b.db_bytes, "stored_bytes",
        (json_int_t)b.stored_bytes, "compression", compression, "files", tarname, tar_sha,
        "backup_manifest", man_sha, "pg_version", f.version_num, "system_identifier", f.sysid);
    s.meta_text = s.meta ? json_dumps(s.meta, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    if (s.meta_text == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    /* Still ours? An S3 lock whose refreshes failed for its whole TTL may have been taken over
     * (by an expire, say) while the archive streamed: then the backup is not published. The
     * tar and backup_manifest written so far were never listed (no pipectl.json), and the
     * cleanup below deletes them: they are this backup's own keys (its ID is unique), which no
     * other holder lists or writes, so that is safe under another's lock; a crash here instead
     * leaves them for the next expire's leftover sweep. */
    if ((rc = pc_repo_lock_check(s.lock, err)) != 0)
        goto done;
    /* pipectl.json last: from now on the backup is listed */
    rc = pc_repo_put_all(repo, s.meta_key, s.meta_text, strlen(s.meta_text), PC_REPO_REPLACE, err);
    if (rc != 0)
        goto done;
    b.label = pc_strdup(label);
    b.compression = pc_strdup(compression);
    b.dir = pc__backup_key(b.id, NULL);
    if (b.label == NULL || b.compression == NULL || b.dir == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    *out = b;
    memset(&b, 0, sizeof b);
    s.started = false; /* complete: keep it */

done:
    PQfinish(s.conn); /* mid-stream: the server aborts its side of the backup */
    if (s.a != NULL) {
        if (rc != 0)
            archive_write_fail(s.a);
        archive_write_free(s.a);
    }
    pc_repo_put_abort(s.out);
    if (s.started) {
        /* what was written goes again, pipectl.json (if it got so far) first */
        const char *keys[] = {s.meta_key, s.mf_key, s.tar_key};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (keys[i] != NULL)
                (void)pc_repo_delete(repo, keys[i], NULL);
    }
    pc_repo_unlock(s.lock);
    pc_sha256_free(s.md);
    pc_buf_free(&s.mf);
    json_decref(s.manifest);
    json_decref(s.meta);
    free(s.meta_text);
    free(s.tarpath);
    free(s.tar_key);
    free(s.mf_key);
    free(s.meta_key);
    free(label_dflt);
    pc_backup_info_free(&b);
    return rc;
}
