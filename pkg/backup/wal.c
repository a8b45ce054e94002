/* wal.c: WAL archiving into the backup repository: wal-push (archive_command) and wal-fetch
 * (restore_command), plus the checks `backup verify` builds on.
 *
 * The guarantee PostgreSQL relies on: we return 0 from push only when the file is durably in the
 * repository. PostgreSQL removes (or recycles) the segment as soon as archive_command succeeds,
 * so every step that could lose it is checked: the write, a read-back of the temporary copy
 * against the SHA-256, then pc_durable_commit's fsync of the file, a link that never overwrites
 * and fsync of the directory.
 * Format of the stored file: see backup.h. */
#include "backup_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAL_MAGIC_SKIPPABLE 0x184D2A5Du
#define WAL_PAYLOAD_LEN 128
#define WAL_PAYLOAD_PREFIX "pipectl-wal 1 sha256 "
#define IO_CHUNK (256 * 1024)
/* The largest file PostgreSQL archives: a WAL segment of the largest wal_segment_size initdb
 * allows (--wal-segsize 1024, in MB; .partial segments have the same size, .history and .backup
 * files are a few hundred bytes). wal-push never reads more than this (or than the segment size
 * the segment's own first page states), so an endless source ends in an error, not in a push
 * that runs until killed. */
#define WAL_SOURCE_MAX (1024ull * 1024 * 1024)

/* --- names ------------------------------------------------------------------------------------ */

static bool all_hex_upper(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

int pc_wal_name_check(const char *name, pc_wal_kind *kind, pc_error *err)
{
    size_t n = name != NULL ? strlen(name) : 0;
    pc_wal_kind k = PC_WAL_SEGMENT;
    bool ok = false;
    if (n == 24 && all_hex_upper(name, 24)) {
        ok = true;
        k = PC_WAL_SEGMENT;
    } else if (n == 24 + 8 && all_hex_upper(name, 24) && strcmp(name + 24, ".partial") == 0) {
        ok = true;
        k = PC_WAL_PARTIAL;
    } else if (n == 8 + 8 && all_hex_upper(name, 8) && strcmp(name + 8, ".history") == 0) {
        ok = true;
        k = PC_WAL_HISTORY;
    } else if (n == 24 + 1 + 8 + 7 && all_hex_upper(name, 24) && name[24] == '.' &&
               all_hex_upper(name + 25, 8) && strcmp(name + 33, ".backup") == 0) {
        ok = true;
        k = PC_WAL_BACKUP;
    }
    if (!ok) {
        /* The name becomes a path inside the repository: never let anything else through. */
        char shown[80];
        snprintf(shown, sizeof shown, "%.*s%s", 64, name != NULL ? name : "", n > 64 ? "..." : "");
        for (char *p = shown; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
                *p = '?';
        return pc_error_set(err, PC_EINVAL,
                            "'%s' is not a WAL file name: expected 24 upper-case hex digits "
                            "(optionally + \".partial\"), 8 hex digits + \".history\", or a "
                            ".backup label name (pass %%f from archive_command/restore_command)",
                            shown);
    }
    if (kind != NULL)
        *kind = k;
    return 0;
}

char *pc_wal_archive_path(const char *repository, const char *name)
{
    if (repository == NULL || pc_wal_name_check(name, NULL, NULL) != 0)
        return NULL;
    size_t rl = strlen(repository);
    while (rl > 1 && repository[rl - 1] == '/')
        rl--;
    return pc_asprintf("%.*s/" PC_WAL_DIR "/%s" PC_WAL_SUFFIX, (int)rl, repository, name);
}

static char *wal_dir_path(const char *repository)
{
    size_t rl = strlen(repository);
    while (rl > 1 && repository[rl - 1] == '/')
        rl--;
    return pc_asprintf("%.*s/" PC_WAL_DIR, (int)rl, repository);
}

/* --- small I/O helpers ------------------------------------------------------------------------ */

static ssize_t read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static const char *euser(void)
{
    static char buf[64];
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL && pw->pw_name != NULL)
        snprintf(buf, sizeof buf, "%s", pw->pw_name);
    else
        snprintf(buf, sizeof buf, "uid %u", (unsigned)geteuid());
    return buf;
}

static const char *aerr(struct archive *a)
{
    const char *s = a != NULL ? archive_error_string(a) : NULL;
    return s != NULL ? s : "unknown libarchive error";
}

/* --- trailer ---------------------------------------------------------------------------------- */

static void le32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)((v >> 24) & 0xff);
}

static uint32_t le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void trailer_build(unsigned char out[PC_WAL_TRAILER_LEN], const char sha[65], uint64_t size)
{
    char payload[WAL_PAYLOAD_LEN + 1];
    int n = snprintf(payload, sizeof payload, WAL_PAYLOAD_PREFIX "%s size %020llu", sha,
                     (unsigned long long)size);
    memset(payload + n, ' ', WAL_PAYLOAD_LEN - (size_t)n);
    payload[WAL_PAYLOAD_LEN - 1] = '\n';
    le32_put(out, WAL_MAGIC_SKIPPABLE);
    le32_put(out + 4, WAL_PAYLOAD_LEN);
    memcpy(out + 8, payload, WAL_PAYLOAD_LEN);
}

/* Parses a trailer; returns false when it is not one of ours or is damaged. */
static bool trailer_parse(const unsigned char in[PC_WAL_TRAILER_LEN], char sha[65], uint64_t *size)
{
    if (le32_get(in) != WAL_MAGIC_SKIPPABLE || le32_get(in + 4) != WAL_PAYLOAD_LEN)
        return false;
    const char *p = (const char *)in + 8;
    size_t pl = strlen(WAL_PAYLOAD_PREFIX);
    if (memcmp(p, WAL_PAYLOAD_PREFIX, pl) != 0)
        return false;
    p += pl;
    for (int i = 0; i < 64; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    memcpy(sha, p, 64);
    sha[64] = '\0';
    p += 64;
    if (memcmp(p, " size ", 6) != 0)
        return false;
    p += 6;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    p += 20;
    const char *end = (const char *)in + 8 + WAL_PAYLOAD_LEN - 1;
    for (; p < end; p++)
        if (*p != ' ')
            return false;
    if (*end != '\n')
        return false;
    *size = v;
    return true;
}

/* Reads the trailer of an open archived file. what names it in messages. PC_EIO when damaged. */
static int trailer_read(int fd, const char *what, pc_wal_info *info, pc_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return pc_error_set(err, PC_EIO, "cannot stat %s: %s", what, strerror(errno));
    if (st.st_size < PC_WAL_TRAILER_LEN + 4)
        return pc_error_set(err, PC_EIO,
                            "%s is corrupt: %lld bytes is too short to hold a zstd stream and its "
                            "checksum trailer (truncated?)",
                            what, (long long)st.st_size);
    unsigned char t[PC_WAL_TRAILER_LEN];
    ssize_t r;
    do {
        r = pread(fd, t, sizeof t, st.st_size - PC_WAL_TRAILER_LEN);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return pc_error_set(err, PC_EIO, "cannot read %s: %s", what, strerror(errno));
    if (r != PC_WAL_TRAILER_LEN || !trailer_parse(t, info->sha256, &info->size))
        return pc_error_set(err, PC_EIO,
                            "%s is corrupt: its checksum trailer (SHA-256 and size) is missing or "
                            "damaged",
                            what);
    info->stored_size = (uint64_t)st.st_size;
    return 0;
}

/* --- decompression ---------------------------------------------------------------------------- */

typedef struct read_ctx {
    int fd;
    uint64_t left; /* compressed bytes before the trailer still to hand to libarchive */
    int saved_errno;
    char buf[IO_CHUNK];
} read_ctx;

static la_ssize_t read_cb(struct archive *a, void *opaque, const void **out)
{
    read_ctx *c = opaque;
    (void)a;
    size_t want = c->left < sizeof c->buf ? (size_t)c->left : sizeof c->buf;
    if (want == 0)
        return 0;
    ssize_t r;
    do {
        r = read(c->fd, c->buf, want);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        c->saved_errno = errno;
        archive_set_error(a, errno, "read: %s", strerror(errno));
        return -1;
    }
    c->left -= (uint64_t)r;
    *out = c->buf;
    return r;
}

/* Decompresses the archived file open on in_fd (whose trailer is already parsed into want),
 * hashing the content and writing it to out unless out is NULL. what names the file in
 * messages. PC_EIO on corruption or mismatch. */
static int wal_decode(int in_fd, const char *what, const pc_wal_info *want, pc_durable *out,
                      pc_error *err)
{
    int rc = 0;
    struct archive *a = NULL;
    pc_sha256 *md = NULL;
    read_ctx *rc_ctx = NULL;
    char *buf = NULL;
    uint64_t total = 0;

    rc_ctx = calloc(1, sizeof *rc_ctx);
    buf = malloc(IO_CHUNK);
    a = archive_read_new();
    if (rc_ctx == NULL || buf == NULL || a == NULL || pc_sha256_new(&md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory decompressing %s", what);
        goto done;
    }
    if (lseek(in_fd, 0, SEEK_SET) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot seek in %s: %s", what, strerror(errno));
        goto done;
    }
    rc_ctx->fd = in_fd;
    rc_ctx->left = want->stored_size - PC_WAL_TRAILER_LEN;
    if (archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        archive_read_support_format_raw(a) != ARCHIVE_OK ||
        archive_read_open(a, rc_ctx, NULL, read_cb, NULL) != ARCHIVE_OK) {
        rc =
            pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: libarchive: %s", what, aerr(a));
        goto done;
    }
    struct archive_entry *entry = NULL;
    int ar = archive_read_next_header(a, &entry);
    if (ar != ARCHIVE_OK) {
        rc =
            pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: libarchive: %s", what, aerr(a));
        goto done;
    }
    if (archive_filter_count(a) < 2 || archive_filter_code(a, 0) != ARCHIVE_FILTER_ZSTD) {
        rc = pc_error_set(err, PC_EIO, "%s is corrupt: it does not start with a zstd frame", what);
        goto done;
    }
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, IO_CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            rc = pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: zstd: %s", what, aerr(a));
            goto done;
        }
        total += (uint64_t)n;
        if (total > want->size) {
            rc = pc_error_set(err, PC_EIO,
                              "%s is corrupt: it decompresses to more than the %llu bytes its "
                              "trailer records",
                              what, (unsigned long long)want->size);
            goto done;
        }
        pc_sha256_update(md, buf, (size_t)n);
        if (out != NULL && (rc = pc_durable_append(out, buf, (size_t)n, err)) != 0)
            goto done;
    }
    char got[PC_SHA256_HEX_LEN + 1];
    pc_sha256_final(md, got);
    if (total != want->size || strcmp(got, want->sha256) != 0) {
        rc = pc_error_set(err, PC_EIO,
                          "%s is corrupt: content has sha256 %s and %llu bytes, but %s and %llu "
                          "bytes were recorded when it was archived",
                          what, got, (unsigned long long)total, want->sha256,
                          (unsigned long long)want->size);
        goto done;
    }
done:
    if (a != NULL)
        archive_read_free(a);
    pc_sha256_free(md);
    free(rc_ctx);
    free(buf);
    return rc;
}

/* Opens name's archived copy. PC_ENOTFOUND when absent; PC_EUNAVAIL when the repository cannot
 * be read. *path_out gets the file's path (owned). */
static int open_archived(const char *repository, const char *name, int *fd_out, char **path_out,
                         pc_error *err)
{
    int rc = pc_wal_name_check(name, NULL, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (repository == NULL || repository[0] == '\0')
        return pc_error_set(err, PC_EINVAL, "no backup repository given");
    if (stat(repository, &st) != 0) {
        int e = errno;
        return pc_error_set(err, PC_EUNAVAIL,
                            "backup repository %s is not accessible: %s (is the file system "
                            "mounted, and readable by %s?)",
                            repository, strerror(e), euser());
    }
    if (!S_ISDIR(st.st_mode))
        return pc_error_set(err, PC_EUNAVAIL, "backup repository %s is not a directory",
                            repository);
    char *path = pc_wal_archive_path(repository, name);
    if (path == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            rc = pc_error_set(err, PC_ENOTFOUND, "%s is not in backup repository %s", name,
                              repository);
        } else {
            rc = pc_error_set(err, PC_EUNAVAIL, "cannot open %s: %s (readable by %s?)", path,
                              strerror(e), euser());
        }
        free(path);
        return rc;
    }
    *fd_out = fd;
    *path_out = path;
    return 0;
}

int pc_wal_stat(const char *repository, const char *name, pc_wal_info *info, pc_error *err)
{
    int fd = -1;
    char *path = NULL;
    pc_wal_info tmp;
    int rc = open_archived(repository, name, &fd, &path, err);
    if (rc != 0)
        return rc;
    rc = trailer_read(fd, path, info != NULL ? info : &tmp, err);
    close(fd);
    free(path);
    return rc;
}

int pc_wal_verify(const char *repository, const char *name, pc_wal_info *info, pc_error *err)
{
    int fd = -1;
    char *path = NULL;
    pc_wal_info w;
    int rc = open_archived(repository, name, &fd, &path, err);
    if (rc != 0)
        return rc;
    rc = trailer_read(fd, path, &w, err);
    if (rc == 0)
        rc = wal_decode(fd, path, &w, NULL, err);
    if (rc == 0 && info != NULL)
        *info = w;
    close(fd);
    free(path);
    return rc;
}

int pc_wal_fetch(const char *repository, const char *name, const char *path, pc_wal_info *info,
                 pc_error *err)
{
    int rc = 0;
    int fd = -1;
    char *src = NULL;
    pc_durable out = PC_DURABLE_INIT;
    pc_wal_info w;

    if (path == NULL || path[0] == '\0')
        return pc_error_set(err, PC_EINVAL, "no destination path given for %s",
                            name != NULL ? name : "WAL file");
    rc = open_archived(repository, name, &fd, &src, err);
    if (rc != 0)
        goto done;
    rc = trailer_read(fd, src, &w, err);
    if (rc != 0)
        goto done;
    if ((rc = pc_durable_open(&out, path, 0600, err)) != 0 ||
        (rc = wal_decode(fd, src, &w, &out, err)) != 0 ||
        (rc = pc_durable_commit(&out, PC_DURABLE_REPLACE, err)) != 0)
        goto done;
    if (info != NULL)
        *info = w;
done:
    pc_durable_abort(&out);
    if (fd >= 0)
        close(fd);
    free(src);
    return rc;
}

/* --- push ------------------------------------------------------------------------------------- */

typedef struct write_ctx {
    pc_durable *out;
    int saved_errno;
} write_ctx;

static la_ssize_t write_cb(struct archive *a, void *opaque, const void *buf, size_t len)
{
    write_ctx *c = opaque;
    if (pc_durable_append(c->out, buf, len, NULL) != 0) {
        c->saved_errno = c->out->sys_errno;
        archive_set_error(a, c->saved_errno, "write: %s", strerror(c->saved_errno));
        return -1;
    }
    return (la_ssize_t)len;
}

/* SHA-256 and size of the file open on fd, from its start. */
static int too_big(pc_error *err, const char *what, uint64_t limit)
{
    return pc_error_set(err, PC_EINVAL,
                        "%s grew past %llu bytes while it was being read: no WAL file is larger "
                        "(its segment size), so it is not archived",
                        what, (unsigned long long)limit);
}

/* SHA-256 and size of the file open on fd, from its start, reading at most limit bytes. */
static int hash_fd(int fd, const char *what, uint64_t limit, char sha[65], uint64_t *size,
                   pc_error *err)
{
    int rc = 0;
    pc_sha256 *md = NULL;
    char *buf = malloc(IO_CHUNK);
    uint64_t total = 0;
    if (buf == NULL || pc_sha256_new(&md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot seek in %s: %s", what, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t n = read_full(fd, buf, IO_CHUNK);
        if (n < 0) {
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", what, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        pc_sha256_update(md, buf, (size_t)n);
        total += (uint64_t)n;
        if (total > limit) {
            rc = too_big(err, what, limit);
            goto done;
        }
    }
    pc_sha256_final(md, sha);
    *size = total;
done:
    pc_sha256_free(md);
    free(buf);
    return rc;
}

/* Compresses src_fd (from its start, at most limit bytes) into out: zstd stream + trailer.
 * Fills *info. */
static int wal_encode(int src_fd, const char *src_what, uint64_t limit, pc_durable *out,
                      const char *name, pc_wal_info *info, pc_error *err)
{
    int rc = 0;
    struct archive *a = NULL;
    struct archive_entry *entry = NULL;
    pc_sha256 *md = NULL;
    char *buf = NULL;
    write_ctx wc = {.out = out, .saved_errno = 0};
    const char *out_what = out->tmp;
    uint64_t total = 0;
    bool opened = false;

    buf = malloc(IO_CHUNK);
    a = archive_write_new();
    entry = archive_entry_new();
    if (buf == NULL || a == NULL || entry == NULL || pc_sha256_new(&md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory compressing %s", src_what);
        goto done;
    }
    if (lseek(src_fd, 0, SEEK_SET) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot seek in %s: %s", src_what, strerror(errno));
        goto done;
    }
    /* Raw format: no archive headers, just the compressed bytes; no padding after the frame, or
     * zstd decoders would read the zeros as a broken frame. */
    if (archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
        archive_write_set_format_raw(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open(a, &wc, NULL, write_cb, NULL) != ARCHIVE_OK) {
        rc = pc_error_set(err, PC_EIO, "cannot start zstd compression into %s: libarchive: %s",
                          out_what, aerr(a));
        goto done;
    }
    opened = true;
    archive_entry_set_pathname(entry, name);
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0600);
    if (archive_write_header(a, entry) != ARCHIVE_OK) {
        rc = pc_error_set(err, PC_EIO, "cannot write %s: libarchive: %s", out_what, aerr(a));
        goto done;
    }
    for (;;) {
        ssize_t n = read_full(src_fd, buf, IO_CHUNK);
        if (n < 0) {
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", src_what, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        pc_sha256_update(md, buf, (size_t)n);
        total += (uint64_t)n;
        if (total > limit) {
            rc = too_big(err, src_what, limit);
            goto done;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            la_ssize_t w = archive_write_data(a, buf + off, (size_t)n - off);
            if (w <= 0) {
                rc = pc_error_set(err, PC_EIO, "cannot write %s: %s", out_what,
                                  wc.saved_errno != 0 ? strerror(wc.saved_errno) : aerr(a));
                goto done;
            }
            off += (size_t)w;
        }
    }
    opened = false;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = pc_error_set(err, PC_EIO, "cannot write %s: %s", out_what,
                          wc.saved_errno != 0 ? strerror(wc.saved_errno) : aerr(a));
        goto done;
    }
    pc_sha256_final(md, info->sha256);
    info->size = total;
    unsigned char trailer[PC_WAL_TRAILER_LEN];
    trailer_build(trailer, info->sha256, total);
    if ((rc = pc_durable_append(out, trailer, sizeof trailer, err)) != 0)
        goto done;
    off_t end = lseek(out->fd, 0, SEEK_CUR);
    info->stored_size = end > 0 ? (uint64_t)end : 0;
done:
    if (a != NULL) {
        if (opened)
            archive_write_fail(a);
        archive_write_free(a);
    }
    archive_entry_free(entry);
    pc_sha256_free(md);
    free(buf);
    return rc;
}

static int conflict_error(pc_error *err, const char *repository, const char *name,
                          const char *old_sha, const char *new_sha)
{
    return pc_error_set(err, PC_ECONFLICT,
                        "%s is already archived in %s with different content (sha256 %s, new %s); "
                        "refusing to overwrite archived history — is this a restored clone "
                        "archiving into the primary's repository?",
                        name, repository, old_sha, new_sha);
}

/* Makes REPO/wal exist (fsyncing REPO when it had to be created). */
static int ensure_wal_dir(const char *repository, const char *waldir, pc_error *err)
{
    struct stat st;
    if (stat(repository, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            return pc_error_set(err, PC_ENOTFOUND,
                                "backup repository %s does not exist: create it, writable by %s "
                                "(or fix archiving.repository); PostgreSQL keeps the WAL file and "
                                "retries",
                                repository, euser());
        return pc_error_set(err, PC_EIO,
                            "backup repository %s is not accessible: %s (is the file system "
                            "mounted, and accessible to %s?)",
                            repository, strerror(e), euser());
    }
    if (!S_ISDIR(st.st_mode))
        return pc_error_set(err, PC_EIO, "backup repository %s is not a directory", repository);
    if (mkdir(waldir, 0750) == 0)
        return pc_fsync_dir(repository, err);
    int e = errno;
    if (e == EEXIST && stat(waldir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (e == EEXIST)
        return pc_error_set(err, PC_EIO, "%s exists but is not a directory", waldir);
    return pc_error_set(err, PC_EIO,
                        "cannot create %s in backup repository %s: %s (make the repository "
                        "writable by %s; PostgreSQL keeps the WAL file and retries)",
                        waldir, repository, strerror(e), euser());
}

/* The segment size a WAL segment's first page states, or 0. The first page of every segment
 * has the long header (XLogLongPageHeaderData, host byte order): xlp_info at 2 with
 * XLP_LONG_HEADER (0x0002), xlp_pageaddr at 8, xlp_seg_size at 32, xlp_xlog_blcksz at 36. It is
 * believed only when it is consistent: a power-of-two size initdb allows, a plausible block size
 * and a page address that is the start of the segment name names. */
static uint64_t header_segsize(int fd, const char *name)
{
    unsigned char h[40];
    ssize_t r;
    do {
        r = pread(fd, h, sizeof h, 0);
    } while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof h)
        return 0;
    uint16_t info;
    uint64_t pageaddr;
    uint32_t segsize, blcksz;
    memcpy(&info, h + 2, sizeof info);
    memcpy(&pageaddr, h + 8, sizeof pageaddr);
    memcpy(&segsize, h + 32, sizeof segsize);
    memcpy(&blcksz, h + 36, sizeof blcksz);
    if (!(info & 0x0002) || segsize < (1u << 20) || segsize > WAL_SOURCE_MAX ||
        (segsize & (segsize - 1)) != 0 || blcksz < 1024 || blcksz > 65536 ||
        (blcksz & (blcksz - 1)) != 0)
        return 0;
    unsigned int log, seg;
    if (sscanf(name + 8, "%8X%8X", &log, &seg) != 2)
        return 0;
    uint64_t segno = (uint64_t)log * (0x100000000ull / segsize) + seg;
    return pageaddr == segno * segsize ? segsize : 0;
}

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m)   ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISDIR(m)  ? "a directory"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

/* Opens the file to archive and bounds it: PostgreSQL's %p is always a regular file in pg_wal,
 * never larger than WAL_SOURCE_MAX, and a segment never larger than the segment size its first
 * page states. Anything else (/dev/zero, a FIFO, a file too large) is refused before a byte is
 * written, so nothing is left in the repository. *limit gets the most that may be read. */
static int open_source(const char *path, const char *name, int *fd_out, uint64_t *limit,
                       pc_error *err)
{
    /* O_NONBLOCK: opening a FIFO without a writer would wait forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pc_error_set(err, errno == ENOENT ? PC_ENOTFOUND : PC_EIO,
                            "cannot open WAL file %s: %s", path, strerror(errno));
    int rc = 0;
    struct stat st;
    pc_wal_kind kind = PC_WAL_SEGMENT;
    (void)pc_wal_name_check(name, &kind, NULL);
    *limit = WAL_SOURCE_MAX;
    if (fstat(fd, &st) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot stat WAL file %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pc_error_set(err, PC_EINVAL,
                          "%s is %s, not a WAL file: PostgreSQL's %%p is always a regular file in "
                          "pg_wal; not archived",
                          path, file_kind(st.st_mode));
        goto done;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot set up reading %s: %s", path, strerror(errno));
        goto done;
    }
    const char *why = "the largest WAL segment PostgreSQL allows (wal_segment_size 1 GB)";
    if (kind == PC_WAL_SEGMENT || kind == PC_WAL_PARTIAL) {
        uint64_t seg = header_segsize(fd, name);
        if (seg != 0) {
            *limit = seg;
            why = "the segment size its first page states (wal_segment_size)";
        }
    }
    if ((uint64_t)st.st_size > *limit)
        rc = pc_error_set(err, PC_EINVAL,
                          "%s is %lld bytes, more than %llu, %s: not a WAL file, so it is not "
                          "archived as %s",
                          path, (long long)st.st_size, (unsigned long long)*limit, why, name);
done:
    if (rc != 0)
        close(fd);
    else
        *fd_out = fd;
    return rc;
}

int pc_wal_push(const char *repository, const char *path, const char *name,
                pc_wal_push_result *result, pc_wal_info *info, pc_error *err)
{
    int rc = 0;
    int src = -1, old = -1;
    char *waldir = NULL, *final = NULL;
    pc_durable out = PC_DURABLE_INIT;
    pc_wal_info mine = {{0}, 0, 0}, theirs = {{0}, 0, 0};
    uint64_t limit = WAL_SOURCE_MAX;
    bool replace = false;
    pc_wal_push_result res = PC_WAL_PUSHED;

    rc = pc_wal_name_check(name, NULL, err);
    if (rc != 0)
        goto done;
    if (repository == NULL || repository[0] == '\0') {
        rc = pc_error_set(err, PC_EINVAL, "no backup repository given");
        goto done;
    }
    waldir = wal_dir_path(repository);
    final = pc_wal_archive_path(repository, name);
    if (waldir == NULL || final == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = open_source(path, name, &src, &limit, err);
    if (rc != 0)
        goto done;
    rc = ensure_wal_dir(repository, waldir, err);
    if (rc != 0)
        goto done;

    /* Already archived? Same content is success (archive_command is retried after a crash
     * between our rename and PostgreSQL noting success); different content never overwrites. */
    old = open(final, O_RDONLY | O_CLOEXEC);
    if (old < 0 && errno != ENOENT) {
        int e = errno;
        rc = pc_error_set(err, PC_EIO, "cannot open %s: %s (readable by %s?)", final, strerror(e),
                          euser());
        goto done;
    }
    if (old >= 0) {
        rc = trailer_read(old, final, &theirs, err);
        if (rc != 0) {
            pc_error_prefix(err,
                            "%s is already archived in %s but the archived copy cannot be "
                            "checked, so it is not overwritten (inspect it and move it aside)",
                            name, repository);
            goto done;
        }
        rc = hash_fd(src, path, limit, mine.sha256, &mine.size, err);
        if (rc != 0)
            goto done;
        if (strcmp(mine.sha256, theirs.sha256) != 0 || mine.size != theirs.size) {
            rc = conflict_error(err, repository, name, theirs.sha256, mine.sha256);
            goto done;
        }
        pc_error tmp_err = {0};
        if (wal_decode(old, final, &theirs, NULL, &tmp_err) == 0) {
            /* An earlier push may have died between its rename and the directory fsync:
             * make sure this copy is durable before saying so. */
            res = PC_WAL_ALREADY;
            mine = theirs;
            if (fsync(old) != 0 && errno != EINVAL && errno != EBADF) {
                rc = pc_error_set(err, PC_EIO, "fsync of %s failed: %s", final, strerror(errno));
                goto done;
            }
            rc = pc_fsync_dir(waldir, err);
            goto done;
        }
        /* Same recorded checksum but the stored bytes are damaged: the new copy is the same
         * history, so replacing it is a repair, not an overwrite. */
        replace = true;
        res = PC_WAL_REPAIRED;
    }

    /* REPO/wal/.NAME.zst.tmp-XXXXXX, the shape `backup expire` removes when a push was killed */
    pc_error oe = {0};
    if (pc_durable_open(&out, final, 0640, &oe) != 0) {
        rc = oe.code != PC_EIO ? pc_error_set(err, oe.code, "%s", oe.msg)
                               : pc_error_set(err, PC_EIO,
                                              "cannot write to backup repository directory %s: "
                                              "%s (make it writable by %s; PostgreSQL keeps the "
                                              "WAL file and retries)",
                                              waldir, strerror(out.sys_errno), euser());
        goto done;
    }
    (void)fchmod(out.fd, 0640);
    rc = wal_encode(src, path, limit, &out, name, &mine, err);
    if (rc != 0)
        goto done;
    /* Read the copy back before it takes the final name: what we store must decode to what
     * PostgreSQL gave us. */
    {
        pc_wal_info check;
        rc = trailer_read(out.fd, out.tmp, &check, err);
        if (rc == 0)
            rc = wal_decode(out.fd, out.tmp, &check, NULL, err);
        if (rc != 0) {
            pc_error_prefix(err, "read-back of the compressed copy failed");
            goto done;
        }
    }
    /* fsync, close, then a rename for a repair; otherwise link(), which never replaces an
     * existing name: two pushes racing cannot clobber history. Then fsync of REPO/wal. */
    pc_error ce = {0};
    rc = pc_durable_commit(&out, replace ? PC_DURABLE_REPLACE : PC_DURABLE_NOREPLACE, &ce);
    if (rc == PC_ECONFLICT && !replace) {
        /* Lost a race with another push of the same name: compare with what won. */
        if (old >= 0)
            close(old);
        old = open(final, O_RDONLY | O_CLOEXEC);
        rc = old < 0 ? pc_error_set(err, PC_EIO, "cannot open %s: %s", final, strerror(errno))
                     : trailer_read(old, final, &theirs, err);
        if (rc != 0)
            goto done;
        if (strcmp(theirs.sha256, mine.sha256) != 0) {
            rc = conflict_error(err, repository, name, theirs.sha256, mine.sha256);
            goto done;
        }
        res = PC_WAL_ALREADY;
        rc = pc_fsync_dir(waldir, err);
    } else if (rc != 0) {
        pc_error_set(err, ce.code, "%s", ce.msg);
    }

done:
    pc_durable_abort(&out);
    if (src >= 0)
        close(src);
    if (old >= 0)
        close(old);
    if (rc == 0) {
        if (result != NULL)
            *result = res;
        if (info != NULL)
            *info = mine;
    }
    free(waldir);
    free(final);
    return rc;
}
