/* restore.c: point-in-time restore: picks the base backup that ended before the target, checks
 * its stored checksums, extracts it into an empty directory, configures recovery (our wal-fetch
 * as restore_command, the target, promote at the end) and optionally starts the server and
 * waits until the log proves that recovery reached the target.
 *
 * Time targets: "YYYY-MM-DD HH:MM:SS[.fff][ZONE]" with ZONE "Z", "+HH", "+HHMM", "+HH:MM" (or
 * "-"); the separator may be 'T'. A time without a zone means UTC, both for choosing the backup
 * and for PostgreSQL (we append "+00" so the server does not read it in its own TimeZone). */
#define _GNU_SOURCE
#include "backup_int.h"
#include "verify_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PG_BIN "/usr/lib/postgresql/15/bin"
#define IO_CHUNK (256 * 1024)

void pc_restore_result_free(pc_restore_result *res)
{
    if (res == NULL)
        return;
    free(res->backup_id);
    free(res->proof);
    res->backup_id = NULL;
    res->proof = NULL;
}

/* --- targets ---------------------------------------------------------------------------------- */

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Parses a target time into unix seconds (fraction dropped: floor). *zoned: a zone was given. */
static int parse_time(const char *s, int64_t *secs, bool *zoned)
{
    const char *p = s;
    int Y, M, D, h, m, sec = 0;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
        return -1;
    if (*p != ' ' && *p != 'T')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m))
        return -1;
    if (*p == ':') {
        p++;
        if (digits(&p, 2, &sec))
            return -1;
        if (*p == '.') {
            p++;
            if (!isdigit((unsigned char)*p))
                return -1;
            while (isdigit((unsigned char)*p))
                p++;
        }
    }
    while (*p == ' ')
        p++;
    int off = 0;
    *zoned = false;
    if (*p == 'Z' || *p == 'z') {
        *zoned = true;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (digits(&p, 2, &oh))
            return -1;
        if (*p == ':')
            p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &om))
            return -1;
        if (oh > 15 || om > 59)
            return -1;
        off = sign * (oh * 3600 + om * 60);
        *zoned = true;
    }
    if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    *secs = (int64_t)timegm(&tm) - off;
    return 0;
}

static int parse_lsn(const char *s, uint64_t *out)
{
    unsigned int hi, lo;
    int n = 0;
    if (s == NULL || sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
        return -1;
    *out = ((uint64_t)hi << 32) | lo;
    return 0;
}

static void fmt_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S+00", &tm);
}

/* Picks the backup: the given ID, or the newest one whose end is before the target. */
static int choose_backup(const pc_restore_opts *o, pc_backup_info *list, size_t n, int64_t tsecs,
                         uint64_t tlsn, size_t *idx, pc_error *err)
{
    if (n == 0)
        return pc_error_set(err, PC_ENOTFOUND,
                            "repository %s has no complete backup: take one with 'pipectl backup "
                            "create'",
                            pc_repo_uri(o->repo));
    for (size_t k = n; k-- > 0;) {
        pc_backup_info *b = &list[k];
        if (o->backup_id != NULL && strcmp(b->id, o->backup_id) != 0)
            continue;
        bool ok = true;
        char why[160] = "";
        /* both are whole seconds, rounded down: the backup surely ended before the target only
         * when its second is earlier than the target's (a backup that ended in the target's own
         * second may have ended after it: the one before is taken instead) */
        if (o->target_time != NULL && b->stop_time >= tsecs) {
            char t[32];
            fmt_time(b->stop_time, t);
            snprintf(why, sizeof why, "it ended at %s, not before the target time %s", t,
                     o->target_time);
            ok = false;
        } else if (o->target_lsn != NULL) {
            uint64_t stop = 0;
            if (parse_lsn(b->stop_lsn, &stop) != 0 || stop > tlsn) {
                snprintf(why, sizeof why, "it ended at LSN %s, after the target LSN %s",
                         b->stop_lsn != NULL ? b->stop_lsn : "?", o->target_lsn);
                ok = false;
            }
        }
        if (ok) {
            *idx = k;
            return 0;
        }
        if (o->backup_id != NULL)
            return pc_error_set(err, PC_EINVAL, "backup %s cannot reach the target: %s", b->id,
                                why);
    }
    if (o->backup_id != NULL)
        return pc_error_set(err, PC_ENOTFOUND,
                            "backup %s not found in repository %s: see 'pipectl backup list'",
                            o->backup_id, pc_repo_uri(o->repo));
    if (o->target_time != NULL) {
        char t[32];
        fmt_time(list[0].stop_time, t);
        return pc_error_set(err, PC_ENOTFOUND,
                            "no backup ended before %s; the oldest (%s) ended at %s: choose a "
                            "later target time",
                            o->target_time, list[0].id, t);
    }
    return pc_error_set(err, PC_ENOTFOUND,
                        "no backup ended before LSN %s; the oldest (%s) ended at %s: choose a "
                        "later target LSN",
                        o->target_lsn, list[0].id, list[0].stop_lsn ? list[0].stop_lsn : "?");
}

/* --- the target directory ----------------------------------------------------------------------
 */

/* 0 when dir does not exist (*created after mkdir) or is empty; PC_ECONFLICT when not empty. */
static int prepare_dir(const char *dir, bool *created, pc_error *err)
{
    *created = false;
    DIR *d = opendir(dir);
    if (d == NULL && errno == ENOENT) {
        if (mkdir(dir, 0700) != 0)
            return pc_error_set(err, PC_EIO, "cannot create restore directory %s: %s", dir,
                                strerror(errno));
        *created = true;
        return 0;
    }
    if (d == NULL)
        return pc_error_set(err, PC_EIO, "cannot open restore directory %s: %s", dir,
                            strerror(errno));
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = pc_error_set(err, PC_ECONFLICT,
                          "restore directory %s is not empty (it holds %s): restore into a new "
                          "or empty directory; pipectl never overwrites a data directory",
                          dir, de->d_name);
        break;
    }
    closedir(d);
    return rc;
}

/* Removes what the restore wrote into dir (and dir itself when we created it). */
static void undo_dir(const char *dir, bool created)
{
    if (created) {
        pc__rmtree(dir, NULL);
        return;
    }
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *p = pc_asprintf("%s/%s", dir, de->d_name);
        if (p != NULL)
            pc__rmtree(p, NULL);
        free(p);
    }
    closedir(d);
}

static const char *aerr(struct archive *a)
{
    const char *s = archive_error_string(a);
    return s != NULL ? s : "unknown libarchive error";
}

/* "base.tar.zst" of "backups/<id>/base.tar.zst": how verify names a stored file. */
static const char *base_name_of(const char *key)
{
    const char *s = strrchr(key, '/');
    return s != NULL ? s + 1 : key;
}

/* Extracts the base tar (the object key, read through the repository: no temporary copy) into
 * to: no absolute paths, no "..", nothing through symlinks; WAL in the tar (pg_wal/...) is
 * skipped: recovery fetches every segment from the repository.
 * The object is read once: a thread reads ahead while libarchive decompresses, and every byte
 * is hashed on the way; the SHA-256 of the whole object must be want_sha (pipectl.json's record)
 * or the restore fails (PC_EIO) and the caller removes what was extracted. */
static int extract(pc_repo *repo, const char *key, const char *want_sha, const char *to,
                   pc_backup_progress_fn progress, void *ctx, bool *mismatch, pc_error *err)
{
    int rc = 0, cwd = -1;
    struct archive *a = archive_read_new();
    struct archive *w = archive_write_disk_new();
    pc__obj_reader *rd = calloc(1, sizeof *rd);
    char *dest = NULL;
    char *tar = pc__repo_name(repo, key); /* for messages */
    if (a == NULL || w == NULL || rd == NULL || tar == NULL || pc_sha256_new(&rd->md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rd->readahead = true;
    if ((rc = pc_repo_open(repo, key, &rd->o, err)) != 0) {
        pc_error_prefix(err, "cannot open base backup %s", tar);
        goto done;
    }
    uint64_t total = pc_repo_obj_size(rd->o);
    /* Members are written relative to to (libarchive's secure flags refuse absolute paths), so
     * the process works inside it and goes back to where it was at the end. */
    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0 || chdir(to) != 0) {
        rc =
            pc_error_set(err, PC_EIO, "cannot enter restore directory %s: %s", to, strerror(errno));
        goto done;
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    archive_write_disk_set_options(w, ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                          ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                          ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
                                          ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME);
    if (pc__archive_open_obj(a, rd) != ARCHIVE_OK) {
        rc = rd->err.code != 0
                 ? pc_error_set(err, rd->err.code, "%s", rd->err.msg)
                 : pc_error_set(err, PC_EIO, "cannot open base backup %s: %s", tar, aerr(a));
        goto done;
    }
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            rc = rd->err.code != 0
                     ? pc_error_set(err, rd->err.code, "%s", rd->err.msg)
                     : pc_error_set(err, PC_EIO, "cannot read base backup %s: %s", tar, aerr(a));
            goto done;
        }
        const char *name = archive_entry_pathname(e);
        while (name[0] == '.' && name[1] == '/')
            name += 2;
        if (name[0] == '/' || strstr(name, "..") != NULL) {
            rc = pc_error_set(err, PC_EIO,
                              "base backup %s has an unsafe member path '%s': refusing to "
                              "extract it",
                              tar, archive_entry_pathname(e));
            goto done;
        }
        if (name[0] == '\0' || (strncmp(name, "pg_wal/", 7) == 0 && name[7] != '\0' &&
                                strcmp(name, "pg_wal/archive_status/") != 0 &&
                                strcmp(name, "pg_wal/archive_status") != 0))
            continue;
        if (archive_entry_hardlink(e) != NULL || archive_entry_filetype(e) == AE_IFLNK) {
            rc = pc_error_set(err, PC_EIO,
                              "base backup %s has a link member '%s' (a tablespace?): only a "
                              "single data directory without tablespaces can be restored",
                              tar, name);
            goto done;
        }
        free(dest);
        dest = pc_asprintf("%s/%s", to, name); /* for messages */
        if (dest == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        archive_entry_set_pathname(e, name);
        if (archive_write_header(w, e) < ARCHIVE_WARN) {
            rc = pc_error_set(err, PC_EIO, "cannot extract %s: %s", dest, aerr(w));
            goto done;
        }
        if (archive_entry_size(e) > 0) {
            const void *buf;
            size_t len;
            la_int64_t off;
            for (;;) {
                r = archive_read_data_block(a, &buf, &len, &off);
                if (r == ARCHIVE_EOF)
                    break;
                if (r < ARCHIVE_WARN) {
                    rc = pc_error_set(err, PC_EIO, "cannot read member %s of %s: %s", name, tar,
                                      aerr(a));
                    goto done;
                }
                if (archive_write_data_block(w, buf, len, off) < ARCHIVE_WARN) {
                    rc = pc_error_set(err, PC_EIO, "cannot write %s: %s", dest, aerr(w));
                    goto done;
                }
            }
        }
        if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
            rc = pc_error_set(err, PC_EIO, "cannot finish %s: %s", dest, aerr(w));
            goto done;
        }
        if (progress != NULL)
            progress(ctx, (uint64_t)archive_filter_bytes(a, -1), total);
    }
    if (archive_write_close(w) != ARCHIVE_OK) {
        rc = pc_error_set(err, PC_EIO, "cannot finish extracting into %s: %s", to, aerr(w));
        goto done;
    }
    /* the bytes after the tar's end (padding, the compressed stream's end) count too */
    if ((rc = pc__obj_reader_finish(rd, err)) != 0) {
        pc_error_prefix(err, "cannot read base backup %s", tar);
        goto done;
    }
    char got[PC_SHA256_HEX_LEN + 1];
    pc_sha256_final(rd->md, got);
    if (strcmp(got, want_sha) != 0) {
        *mismatch = true;
        rc = pc_error_set(err, PC_EIO,
                          "%s: checksum mismatch (recorded sha256 %s, stored file has %s)",
                          base_name_of(key), want_sha, got);
        goto done;
    }
    if (progress != NULL)
        progress(ctx, total, total);
done:
    if (rc != 0 && !*mismatch && rd != NULL && rd->o != NULL && rd->md != NULL &&
        rd->err.code == 0) {
        /* Extraction stopped early (a zstd or tar error, say): a damaged object is said so, as
         * the check before extraction said it, so its checksum decides (the rest is read). */
        pc_error de = {0};
        char sum[PC_SHA256_HEX_LEN + 1];
        if (pc__obj_reader_finish(rd, &de) == 0) {
            pc_sha256_final(rd->md, sum);
            if (strcmp(sum, want_sha) != 0) {
                *mismatch = true;
                pc_error_clear(err);
                pc_error_set(err, PC_EIO,
                             "%s: checksum mismatch (recorded sha256 %s, stored file has %s)",
                             base_name_of(key), want_sha, sum);
                rc = PC_EIO;
            }
        }
    }
    if (cwd >= 0) {
        if (fchdir(cwd) != 0 && rc == 0)
            rc = pc_error_set(err, PC_EIO, "cannot return to the working directory: %s",
                              strerror(errno));
        close(cwd);
    }
    free(dest);
    if (a != NULL)
        archive_read_free(a);
    if (w != NULL)
        archive_write_free(w);
    if (rd != NULL) {
        pc__obj_reader_close(rd);
        pc_sha256_free(rd->md);
    }
    free(rd);
    free(tar);
    return rc;
}

/* --- recovery configuration ----------------------------------------------------------------- */

/* name = 'value' for postgresql.auto.conf (quotes doubled). */
static void conf_line(pc_buf *b, const char *name, const char *value)
{
    pc_buf_printf(b, "%s = '", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            pc_buf_puts(b, "''");
        else if (*p != '\n' && *p != '\r')
            pc_buf_append(b, p, 1);
    }
    pc_buf_puts(b, "'\n");
}

/* Writes path durably (pc_durable_write's steps): with append, what it holds (if it exists)
 * followed by text, keeping its mode; else text alone, mode 0600. */
static int write_file(const char *path, const char *text, bool append, pc_error *err)
{
    pc_durable f = PC_DURABLE_INIT;
    pc_buf old = {0};
    FILE *in = NULL;
    struct stat st;
    bool existed = append && stat(path, &st) == 0;
    int rc = 0;
    if (existed) {
        in = fopen(path, "rb");
        char chunk[8192];
        size_t n;
        while (in != NULL && (n = fread(chunk, 1, sizeof chunk, in)) > 0)
            if (pc_buf_append(&old, chunk, n) != 0) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
        if (in == NULL || ferror(in)) {
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
    }
    if ((rc = pc_durable_open(&f, path, 0600, err)) != 0)
        goto done;
    if (existed && fchmod(f.fd, st.st_mode & 07777) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot write %s: fchmod of %s failed: %s", path, f.tmp,
                          strerror(errno));
        goto done;
    }
    if ((rc = pc_durable_append(&f, old.data != NULL ? old.data : "", old.len, err)) == 0 &&
        (rc = pc_durable_append(&f, text, strlen(text), err)) == 0)
        rc = pc_durable_commit(&f, PC_DURABLE_REPLACE, err);
done:
    pc_durable_abort(&f);
    if (in != NULL)
        fclose(in);
    pc_buf_free(&old);
    return rc;
}

static int configure(const pc_restore_opts *o, bool time_zoned, pc_error *err)
{
    pc_buf cmd = {0}, conf = {0};
    char *path = NULL;
    int rc = 0;
    /* '%' doubled in every word: the server expands %f/%p/%r/%% */
    pc_buf_shell_word(&cmd, o->pipectl_exe, PC_SHELL_PCT);
    pc_buf_puts(&cmd, " wal-fetch");
    if (o->fetch_args != NULL) {
        pc_buf_puts(&cmd, o->fetch_args);
    } else {
        pc_buf_puts(&cmd, " --repository ");
        pc_buf_shell_word(&cmd, pc_repo_uri(o->repo), PC_SHELL_PCT);
    }
    pc_buf_puts(&cmd, " %f %p");
    pc_buf_puts(&conf, "\n# added by pipectl restore\n");
    conf_line(&conf, "restore_command", cmd.data != NULL ? cmd.data : "");
    if (o->target_time != NULL) {
        char *t = time_zoned ? pc_strdup(o->target_time) : pc_asprintf("%s+00", o->target_time);
        conf_line(&conf, "recovery_target_time", t != NULL ? t : o->target_time);
        free(t);
    } else if (o->target_lsn != NULL) {
        conf_line(&conf, "recovery_target_lsn", o->target_lsn);
    } else if (o->target_xid != NULL) {
        conf_line(&conf, "recovery_target_xid", o->target_xid);
    }
    conf_line(&conf, "recovery_target_action", "promote");
    conf_line(&conf, "recovery_target_timeline", "latest");
    pc_buf_puts(&conf, "# the restored copy must not archive into the backup repository\n");
    conf_line(&conf, "archive_mode", "off");
    if (conf.data == NULL || cmd.data == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    path = pc_asprintf("%s/postgresql.auto.conf", o->to);
    if ((rc = write_file(path, conf.data, true, err)) != 0)
        goto done;
    free(path);
    path = pc_asprintf("%s/recovery.signal", o->to);
    rc = write_file(path, "", false, err);
done:
    free(path);
    pc_buf_free(&cmd);
    pc_buf_free(&conf);
    return rc;
}

/* --- starting the server ---------------------------------------------------------------------- */

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = 0;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

static int chown_tree(const char *path, uid_t uid, gid_t gid)
{
    struct stat st;
    if (lstat(path, &st) != 0 || lchown(path, uid, gid) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *p = pc_asprintf("%s/%s", path, de->d_name);
        rc = p != NULL ? chown_tree(p, uid, gid) : -1;
        free(p);
    }
    closedir(d);
    return rc;
}

/* Runs argv, capturing stdout+stderr (up to 4 kB) into out. Exit status or -1. */
static int run_capture(char *const argv[], char *out, size_t outlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t got = 0;
    char tmp[1024];
    for (;;) {
        ssize_t n = read(pfd[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t c = (size_t)n;
        if (got + c >= outlen)
            c = outlen - 1 - got;
        memcpy(out + got, tmp, c);
        got += c;
    }
    out[got] = '\0';
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    pc_buf b = {0};
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        pc_buf_append(&b, tmp, n);
    fclose(f);
    return b.data != NULL ? pc_buf_detach(&b) : pc_strdup("");
}

/* The whole line of log that contains at. */
static char *line_at(const char *log, const char *at)
{
    const char *s = at;
    while (s > log && s[-1] != '\n')
        s--;
    const char *e = strchr(at, '\n');
    return pc_strndup(s, e != NULL ? (size_t)(e - s) : strlen(s));
}

/* Waits until the log shows that recovery ended and the server accepts read-write
 * connections. proof: the "recovery stopping ..." line (a target was reached) or "archive
 * recovery complete" / "redo done" for --latest. */
/* The postmaster named in DIR/postmaster.pid is still running. */
static bool server_alive(const char *pidpath)
{
    FILE *f = fopen(pidpath, "r");
    if (f == NULL)
        return false;
    long pid = 0;
    bool ok = fscanf(f, "%ld", &pid) == 1 && pid > 0;
    fclose(f);
    return ok && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static int wait_recovered(const char *logpath, const char *pidpath, int64_t timeout_s, char **proof,
                          pc_error *err)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        char *log = read_all(logpath);
        if (log != NULL) {
            const char *ready = strstr(log, "database system is ready to accept connections");
            const char *stop = strstr(log, "recovery stopping ");
            const char *done = strstr(log, "archive recovery complete");
            const char *fatal = strstr(log, "FATAL:");
            const char *panic = strstr(log, "PANIC:");
            if (fatal == NULL || (panic != NULL && panic < fatal))
                fatal = panic;
            if (ready != NULL && (stop != NULL || done != NULL)) {
                *proof = line_at(log, stop != NULL ? stop : done);
                free(log);
                return 0;
            }
            /* A FATAL alone may be a client's (connecting too early); the server is gone
             * when the postmaster says so. */
            if (strstr(log, "database system is shut down") != NULL ||
                strstr(log, "aborting startup due to startup process failure") != NULL ||
                !server_alive(pidpath)) {
                char *l = fatal != NULL ? line_at(log, fatal) : pc_strdup("server shut down");
                int rc = pc_error_set(err, PC_EIO,
                                      "the restored server stopped before recovery finished: %s "
                                      "(see %s)",
                                      l != NULL ? l : "?", logpath);
                free(l);
                free(log);
                return rc;
            }
            free(log);
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > timeout_s)
            return pc_error_set(err, PC_EUNAVAIL,
                                "recovery did not finish within %" PRId64 " s: the server is still "
                                "running; follow %s",
                                timeout_s, logpath);
        struct timespec nap = {0, 200 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

static int start_server(const pc_restore_opts *o, char **proof, int *port_out, pc_error *err)
{
    const char *bin = o->pg_bin != NULL ? o->pg_bin : DEFAULT_PG_BIN;
    int64_t timeout = o->timeout_s > 0 ? o->timeout_s : 600;
    int port = o->port > 0 ? o->port : free_port();
    *port_out = port;
    char *pg_ctl = pc_asprintf("%s/pg_ctl", bin);
    char *logpath = pc_asprintf("%s/restore.log", o->to);
    char *sq = NULL, *opts = NULL, *tmo = pc_asprintf("%" PRId64, timeout);
    int rc = 0;
    {
        pc_buf b = {0};
        for (const char *p = o->to; *p; p++) /* single-quoted for pg_ctl's /bin/sh */
            pc_buf_puts(&b, *p == '\'' ? "'\\''" : (char[]){*p, 0});
        sq = pc_buf_detach(&b);
    }
    opts = pc_asprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s' "
                       "-c logging_collector=off",
                       port, sq != NULL ? sq : "");
    if (pg_ctl == NULL || logpath == NULL || sq == NULL || opts == NULL || tmo == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (access(pg_ctl, X_OK) != 0) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "cannot run %s: %s (install PostgreSQL 15's server "
                          "binaries)",
                          pg_ctl, strerror(errno));
        goto done;
    }
    char *argv[16];
    int i = 0;
    if (geteuid() == 0) {
        /* PostgreSQL refuses to run as root: hand the directory to the postgres user. */
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL) {
            rc = pc_error_set(err, PC_EINVAL,
                              "running as root needs a 'postgres' OS user to own and start the "
                              "restored server in %s (or run pipectl restore as that user)",
                              o->to);
            goto done;
        }
        if (chown_tree(o->to, pw->pw_uid, pw->pw_gid) != 0) {
            rc = pc_error_set(err, PC_EIO, "cannot hand %s to the postgres user: %s", o->to,
                              strerror(errno));
            goto done;
        }
        argv[i++] = "runuser";
        argv[i++] = "-u";
        argv[i++] = "postgres";
        argv[i++] = "--";
    }
    argv[i++] = pg_ctl;
    argv[i++] = "-D";
    argv[i++] = (char *)o->to;
    argv[i++] = "-o";
    argv[i++] = opts;
    argv[i++] = "-l";
    argv[i++] = logpath;
    argv[i++] = "-w";
    argv[i++] = "-t";
    argv[i++] = tmo;
    argv[i++] = "start";
    argv[i] = NULL;
    char out[4096];
    int st = run_capture(argv, out, sizeof out);
    if (st != 0) {
        /* pg_ctl -w also fails when recovery itself stops with an error: the log says why */
        char *log = read_all(logpath);
        const char *fatal = log != NULL ? strstr(log, "FATAL:") : NULL;
        char *l = fatal != NULL ? line_at(log, fatal) : NULL;
        size_t ol = strlen(out);
        while (ol > 0 && (out[ol - 1] == '\n' || out[ol - 1] == ' '))
            out[--ol] = '\0';
        rc = pc_error_set(
            err, PC_EIO, "the restored server in %s did not start (port %d): %s%s (see %s)", o->to,
            port, l != NULL ? l : out, st < 0 ? " (could not run pg_ctl)" : "", logpath);
        free(l);
        free(log);
        goto done;
    }
    char *pidpath = pc_asprintf("%s/postmaster.pid", o->to);
    rc = pidpath != NULL ? wait_recovered(logpath, pidpath, timeout, proof, err)
                         : pc_error_set(err, PC_ENOMEM, "out of memory");
    free(pidpath);
done:
    free(pg_ctl);
    free(logpath);
    free(sq);
    free(opts);
    free(tmo);
    return rc;
}

/* --- restore ---------------------------------------------------------------------------------- */

int pc_backup_restore(const pc_restore_opts *o, pc_backup_progress_fn progress, void *ctx,
                      pc_restore_result *res, pc_error *err)
{
    memset(res, 0, sizeof *res);
    pc_backup_info *list = NULL;
    size_t n = 0, nbad = 0;
    pc_backup_damaged *bad = NULL;
    pc_verify_report rep = {0};
    char *base = NULL, *base_sha = NULL, *tar = NULL, *path = NULL;
    bool created = false, wrote = false, started = false;
    int rc = 0;

    int ntargets = (o->target_time != NULL) + (o->target_lsn != NULL) + (o->target_xid != NULL) +
                   (o->latest ? 1 : 0);
    if (ntargets != 1)
        return pc_error_set(err, PC_EINVAL,
                            "restore needs exactly one target (time, LSN, xid or latest), got %d",
                            ntargets);
    if (o->repo == NULL || o->to == NULL || o->to[0] == '\0')
        return pc_error_set(err, PC_EINVAL, "restore needs a repository and a target directory");
    if (o->pipectl_exe == NULL || o->pipectl_exe[0] != '/')
        return pc_error_set(err, PC_EINVAL,
                            "restore needs the absolute path of the pipectl binary for "
                            "restore_command");
    int64_t tsecs = 0;
    uint64_t tlsn = 0;
    bool zoned = true;
    if (o->target_time != NULL && parse_time(o->target_time, &tsecs, &zoned) != 0)
        return pc_error_set(err, PC_EINVAL,
                            "target time '%s' is not 'YYYY-MM-DD HH:MM:SS[.fff][ZONE]' (ZONE: Z, "
                            "+HH, +HH:MM; none means UTC)",
                            o->target_time);
    if (o->target_lsn != NULL && parse_lsn(o->target_lsn, &tlsn) != 0)
        return pc_error_set(err, PC_EINVAL, "target LSN '%s' is not like 0/3000060", o->target_lsn);
    if (o->target_xid != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long x = strtoull(o->target_xid, &end, 10);
        if (end == o->target_xid || *end != '\0' || errno != 0 || x < 3)
            return pc_error_set(err, PC_EINVAL, "target xid '%s' is not a transaction ID",
                                o->target_xid);
    }

    if ((rc = pc_backup_scan(o->repo, &list, &n, &bad, &nbad, err)) != 0)
        goto done;
    /* a damaged backup is never chosen; asked for by name, it is refused with the reason */
    for (size_t i = 0; i < nbad && o->backup_id != NULL; i++)
        if (strcmp(bad[i].id, o->backup_id) == 0) {
            rc = pc_error_set(err, PC_EIO,
                              "backup %s is damaged, refusing to restore it: %s (run 'pipectl "
                              "backup verify %s'; choose another with --backup)",
                              bad[i].id, bad[i].problem, bad[i].id);
            goto done;
        }
    if (n == 0 && nbad > 0) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "repository %s has no readable backup: %zu damaged, e.g. %s: %s",
                          pc_repo_uri(o->repo), nbad, bad[0].id, bad[0].problem);
        goto done;
    }
    size_t idx = 0;
    if ((rc = choose_backup(o, list, n, tsecs, tlsn, &idx, err)) != 0)
        goto done;
    res->backup_id = pc_strdup(list[idx].id);
    if (res->backup_id == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = prepare_dir(o->to, &created, err)) != 0)
        goto done;

    /* every stored file but the base tar is checked here; the base tar while it is extracted */
    rc = pc_backup_check_stored(o->repo, res->backup_id, &rep, &base, &base_sha, err);
    if (rc == PC_EIO && rep.nproblems > 0) {
        rc = pc_error_set(err, PC_EIO,
                          "backup %s is corrupt, refusing to restore it: %s%s (run 'pipectl "
                          "backup verify %s'; choose another with --backup)",
                          res->backup_id, rep.problems[0], rep.nproblems > 1 ? " (and more)" : "",
                          res->backup_id);
        goto done;
    }
    if (rc != 0)
        goto done;
    tar = pc_asprintf("%s/%s", list[idx].dir, base);
    if (tar == NULL || base_sha == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    wrote = true;
    bool mismatch = false;
    if ((rc = extract(o->repo, tar, base_sha, o->to, progress, ctx, &mismatch, err)) != 0) {
        if (mismatch) { /* worded as the check before extraction words it */
            pc_error why = *err;
            pc_error_clear(err);
            rc = pc_error_set(err, PC_EIO,
                              "backup %s is corrupt, refusing to restore it: %s (run 'pipectl "
                              "backup verify %s'; choose another with --backup)",
                              res->backup_id, why.msg, res->backup_id);
        }
        goto done;
    }
    if (chmod(o->to, 0700) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot chmod 0700 %s: %s", o->to, strerror(errno));
        goto done;
    }
    path = pc_asprintf("%s/postmaster.pid", o->to);
    if (path != NULL)
        unlink(path);
    free(path);
    path = pc_asprintf("%s/pg_wal", o->to);
    if (path == NULL || (mkdir(path, 0700) != 0 && errno != EEXIST)) {
        rc = pc_error_set(err, PC_EIO, "cannot create %s/pg_wal: %s", o->to, strerror(errno));
        goto done;
    }
    free(path);
    path = pc_asprintf("%s/pg_wal/archive_status", o->to);
    if (path == NULL || (mkdir(path, 0700) != 0 && errno != EEXIST)) {
        rc = pc_error_set(err, PC_EIO, "cannot create %s/pg_wal/archive_status: %s", o->to,
                          strerror(errno));
        goto done;
    }
    if ((rc = configure(o, zoned, err)) != 0)
        goto done;
    /* durable before we say it is restored (pg_basebackup and pgBackRest sync too): a crash
     * right after restore returns must not leave a data directory with holes */
    if ((rc = pc__fsync_tree(o->to, err)) != 0) {
        pc_error_prefix(err, "making the restored files durable");
        goto done;
    }
    if (created) { /* and the new directory's own entry */
        char *parent = pc_path_dir(o->to);
        rc = parent ? pc_fsync_dir(parent, err) : pc_error_set(err, PC_ENOMEM, "out of memory");
        free(parent);
        if (rc != 0)
            goto done;
    }
    if (o->start) {
        started = true; /* a started (even failed) server's files and log stay for inspection */
        rc = start_server(o, &res->proof, &res->port, err);
    }
done:
    if (rc != 0 && !started && wrote)
        undo_dir(o->to, created);
    else if (rc != 0 && !started && created)
        rmdir(o->to);
    free(path);
    free(tar);
    free(base);
    free(base_sha);
    pc_verify_report_free(&rep);
    pc_backup_list_free(list, n);
    pc_backup_damaged_free(bad, nbad);
    return rc;
}
