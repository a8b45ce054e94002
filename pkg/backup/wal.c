/* wal.c: WAL archiving into the backup repository: wal-push (archive_command) and wal-fetch
 * (restore_command), plus the checks `backup verify` builds on.
 *
 * The guarantee PostgreSQL relies on: we return 0 from push only when the file is durably in the
 * repository. PostgreSQL removes (or recycles) the segment as soon as archive_command succeeds,
 * so every step that could lose it is checked: the encoding is decoded again before it is
 * committed and compared with the bytes it was made from (held in memory: a memcmp, not a second
 * SHA-256 pass; the trailer must record the SHA-256 computed while they were read), and the
 * repository's commit (repo.h) returns only once the object is durable (S3: the server checked
 * the payload's x-amz-content-sha256); NOREPLACE means history is never overwritten, and it is
 * also the existence check: a push writes first and compares only when the key exists (one
 * HEAD on S3 instead of two). With --parallel, a background pusher pushes ahead (see the
 * push-ahead section at the end).
 * Everything goes through repo.h: this file does not know whether the repository is a
 * directory or a bucket. Format of the stored object: see backup.h. */
#include "backup_int.h"
#include "repo.h"

#include <archive.h>
#include <archive_entry.h>
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

char *pc_wal_key(const char *name)
{
    if (pc_wal_name_check(name, NULL, NULL) != 0)
        return NULL;
    return pc_asprintf(PC_WAL_DIR "/%s" PC_WAL_SUFFIX, name);
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

/* --- reading an archived copy ------------------------------------------------------------------
 * From the repository (an open object, read by position) or, for the check before a push
 * commits, from the encoded bytes still in memory. */

typedef struct stored {
    pc_repo_obj *o;           /* or: */
    const unsigned char *mem; /* the encoded bytes */
    uint64_t size;            /* stored bytes, trailer included */
    const char *what;         /* names it in messages */
} stored;

static int stored_read(const stored *s, uint64_t off, void *buf, size_t n, size_t *got,
                       pc_error *err)
{
    if (s->o != NULL)
        return pc_repo_pread(s->o, off, buf, n, got, err);
    size_t k = off >= s->size ? 0 : (s->size - off < n ? (size_t)(s->size - off) : n);
    if (k > 0)
        memcpy(buf, s->mem + off, k);
    *got = k;
    return 0;
}

/* Reads and parses the trailer at the end. PC_EIO when it is damaged. */
static int trailer_read(const stored *s, pc_wal_info *info, pc_error *err)
{
    if (s->size < PC_WAL_TRAILER_LEN + 4)
        return pc_error_set(err, PC_EIO,
                            "%s is corrupt: %llu bytes is too short to hold a zstd stream and its "
                            "checksum trailer (truncated?)",
                            s->what, (unsigned long long)s->size);
    unsigned char t[PC_WAL_TRAILER_LEN];
    size_t got = 0;
    int rc = stored_read(s, s->size - PC_WAL_TRAILER_LEN, t, sizeof t, &got, err);
    if (rc != 0)
        return rc;
    if (got != PC_WAL_TRAILER_LEN || !trailer_parse(t, info->sha256, &info->size))
        return pc_error_set(err, PC_EIO,
                            "%s is corrupt: its checksum trailer (SHA-256 and size) is missing or "
                            "damaged",
                            s->what);
    info->stored_size = s->size;
    return 0;
}

typedef struct read_ctx {
    const stored *s;
    uint64_t off, end; /* the compressed bytes before the trailer */
    pc_error err;
    unsigned char buf[IO_CHUNK];
} read_ctx;

static la_ssize_t read_cb(struct archive *a, void *opaque, const void **out)
{
    read_ctx *c = opaque;
    uint64_t left = c->end - c->off;
    size_t want = left < sizeof c->buf ? (size_t)left : sizeof c->buf;
    if (want == 0)
        return 0;
    if (c->s->mem != NULL) { /* no copy */
        *out = c->s->mem + c->off;
        c->off += want;
        return (la_ssize_t)want;
    }
    size_t got = 0;
    if (stored_read(c->s, c->off, c->buf, want, &got, &c->err) != 0) {
        archive_set_error(a, EIO, "%s", c->err.msg);
        return -1;
    }
    if (got == 0) {
        pc_error_set(&c->err, PC_EIO, "%s is corrupt: it ends early (truncated?)", c->s->what);
        archive_set_error(a, EIO, "%s", c->err.msg);
        return -1;
    }
    c->off += got;
    *out = c->buf;
    return (la_ssize_t)got;
}

/* Decompresses the archived copy s (whose trailer is already parsed into want), hashing the
 * content and writing it to out unless out is NULL. PC_EIO on corruption or mismatch. */
/* The bytes a decode must give, when the caller holds them (the source of a push, in memory):
 * compared instead of hashed again, as the trailer's SHA-256 was computed from exactly them. */
typedef struct decode_expect {
    const unsigned char *data;
    size_t len;
} decode_expect;

static int wal_decode_ex(const stored *s, const pc_wal_info *want, pc_durable *out,
                         const decode_expect *expect, pc_error *err);

static int wal_decode(const stored *s, const pc_wal_info *want, pc_durable *out, pc_error *err)
{
    return wal_decode_ex(s, want, out, NULL, err);
}

static int wal_decode_ex(const stored *s, const pc_wal_info *want, pc_durable *out,
                         const decode_expect *expect, pc_error *err)
{
    int rc = 0;
    struct archive *a = NULL;
    pc_sha256 *md = NULL;
    read_ctx *rc_ctx = NULL;
    char *buf = NULL;
    uint64_t total = 0;
    const char *what = s->what;

    rc_ctx = calloc(1, sizeof *rc_ctx);
    buf = malloc(IO_CHUNK);
    a = archive_read_new();
    if (rc_ctx == NULL || buf == NULL || a == NULL || pc_sha256_new(&md) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory decompressing %s", what);
        goto done;
    }
    rc_ctx->s = s;
    rc_ctx->end = want->stored_size - PC_WAL_TRAILER_LEN;
    if (archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        archive_read_support_format_raw(a) != ARCHIVE_OK ||
        archive_read_open(a, rc_ctx, NULL, read_cb, NULL) != ARCHIVE_OK) {
        rc = rc_ctx->err.code != 0
                 ? pc_error_set(err, rc_ctx->err.code, "%s", rc_ctx->err.msg)
                 : pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: libarchive: %s", what,
                                aerr(a));
        goto done;
    }
    struct archive_entry *entry = NULL;
    int ar = archive_read_next_header(a, &entry);
    if (ar != ARCHIVE_OK) {
        rc = rc_ctx->err.code != 0
                 ? pc_error_set(err, rc_ctx->err.code, "%s", rc_ctx->err.msg)
                 : pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: libarchive: %s", what,
                                aerr(a));
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
            rc = rc_ctx->err.code != 0
                     ? pc_error_set(err, rc_ctx->err.code, "%s", rc_ctx->err.msg)
                     : pc_error_set(err, PC_EIO, "%s is corrupt or unreadable: zstd: %s", what,
                                    aerr(a));
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
        if (expect != NULL) {
            uint64_t at = total - (uint64_t)n;
            if (at + (uint64_t)n > expect->len || memcmp(buf, expect->data + at, (size_t)n) != 0) {
                rc = pc_error_set(err, PC_EIO,
                                  "%s does not decompress to the bytes it was made from (they "
                                  "differ at or after byte %llu): not stored",
                                  what, (unsigned long long)at);
                goto done;
            }
        } else {
            pc_sha256_update(md, buf, (size_t)n);
        }
        if (out != NULL && (rc = pc_durable_append(out, buf, (size_t)n, err)) != 0)
            goto done;
    }
    char got[PC_SHA256_HEX_LEN + 1];
    if (expect != NULL) /* equal to the bytes the trailer's SHA-256 was computed from */
        memcpy(got, want->sha256, sizeof got);
    else
        pc_sha256_final(md, got);
    if (total != want->size || strcmp(got, want->sha256) != 0 ||
        (expect != NULL && total != expect->len)) {
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

/* An archived copy opened for reading. */
typedef struct archived {
    pc_repo_obj *o;
    char *what; /* "<repository>/wal/NAME.zst" */
    stored s;
} archived;

static void archived_close(archived *a)
{
    pc_repo_obj_close(a->o);
    free(a->what);
    memset(a, 0, sizeof *a);
}

/* Opens name's archived copy. PC_ENOTFOUND when absent (an ordinary answer); PC_EUNAVAIL when
 * the repository cannot be read. */
static int open_archived(pc_repo *repo, const char *name, archived *out, pc_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = pc_wal_name_check(name, NULL, err);
    if (rc != 0)
        return rc;
    if (repo == NULL)
        return pc_error_set(err, PC_EINVAL, "no backup repository given");
    char *key = pc_wal_key(name);
    if (key == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    pc_error oe = {0};
    rc = pc_repo_open(repo, key, &out->o, &oe);
    if (rc == PC_ENOTFOUND)
        pc_error_set(err, PC_ENOTFOUND, "%s is not in backup repository %s", name,
                     pc_repo_uri(repo));
    else if (rc != 0)
        pc_error_set(err, rc, "%s", oe.msg);
    if (rc == 0) {
        out->what = pc__repo_name(repo, key);
        if (out->what == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            archived_close(out);
        } else {
            out->s = (stored){.o = out->o, .size = pc_repo_obj_size(out->o), .what = out->what};
        }
    }
    free(key);
    return rc;
}

int pc_wal_stat(pc_repo *repo, const char *name, pc_wal_info *info, pc_error *err)
{
    archived a;
    pc_wal_info tmp;
    int rc = open_archived(repo, name, &a, err);
    if (rc != 0)
        return rc;
    rc = trailer_read(&a.s, info != NULL ? info : &tmp, err);
    archived_close(&a);
    return rc;
}

int pc_wal_verify(pc_repo *repo, const char *name, pc_wal_info *info, pc_error *err)
{
    archived a;
    pc_wal_info w;
    int rc = open_archived(repo, name, &a, err);
    if (rc != 0)
        return rc;
    rc = trailer_read(&a.s, &w, err);
    if (rc == 0)
        rc = wal_decode(&a.s, &w, NULL, err);
    if (rc == 0 && info != NULL)
        *info = w;
    archived_close(&a);
    return rc;
}

int pc_wal_fetch(pc_repo *repo, const char *name, const char *path, pc_wal_info *info,
                 pc_error *err)
{
    int rc = 0;
    archived a = {0};
    pc_durable out = PC_DURABLE_INIT;
    pc_wal_info w;

    if (path == NULL || path[0] == '\0')
        return pc_error_set(err, PC_EINVAL, "no destination path given for %s",
                            name != NULL ? name : "WAL file");
    rc = open_archived(repo, name, &a, err);
    if (rc != 0)
        goto done;
    rc = trailer_read(&a.s, &w, err);
    if (rc != 0)
        goto done;
    if ((rc = pc_durable_open(&out, path, 0600, err)) != 0 ||
        (rc = wal_decode(&a.s, &w, &out, err)) != 0 ||
        (rc = pc_durable_commit(&out, PC_DURABLE_REPLACE, err)) != 0)
        goto done;
    if (info != NULL)
        *info = w;
done:
    pc_durable_abort(&out);
    archived_close(&a);
    return rc;
}

/* --- push ------------------------------------------------------------------------------------- */

/* The encoded copy is kept in memory up to this size, so that it can be decoded and checked
 * before it is committed (a 16 MB segment compresses to less); a larger one is checked by
 * reading it back after the commit. */
#define READBACK_MEM_MAX (64u * 1024 * 1024)

typedef struct write_ctx {
    pc_repo_put *put;
    pc_buf mem;     /* what was written, while it fits */
    bool mem_over;  /* it did not: check after commit */
    uint64_t bytes; /* written in all */
    pc_error err;   /* the put's failure */
    /* the source as read, when it fits (for the check before commit): read straight into it */
    unsigned char *src;
    size_t src_len, src_cap;
    bool src_over;
} write_ctx;

static int encoded_write(write_ctx *c, const void *buf, size_t len)
{
    if (pc_repo_put_write(c->put, buf, len, &c->err) != 0)
        return -1;
    c->bytes += len;
    if (!c->mem_over) {
        if (c->mem.len + len > READBACK_MEM_MAX || pc_buf_append(&c->mem, buf, len) != 0) {
            c->mem_over = true;
            pc_buf_free(&c->mem);
        }
    }
    return 0;
}

static la_ssize_t write_cb(struct archive *a, void *opaque, const void *buf, size_t len)
{
    write_ctx *c = opaque;
    if (encoded_write(c, buf, len) != 0) {
        archive_set_error(a, EIO, "%s", c->err.msg);
        return -1;
    }
    return (la_ssize_t)len;
}

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
/* Compresses src_fd (from its start, at most limit bytes) into the put: zstd stream + trailer.
 * Fills *info. out_what names the destination in messages. */
static int wal_encode(int src_fd, const char *src_what, uint64_t limit, write_ctx *wc,
                      const char *out_what, const char *name, pc_wal_info *info, pc_error *err)
{
    int rc = 0;
    struct archive *a = NULL;
    struct archive_entry *entry = NULL;
    pc_sha256 *md = NULL;
    char *buf = NULL;
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
        archive_write_open(a, wc, NULL, write_cb, NULL) != ARCHIVE_OK) {
        rc = wc->err.code != 0 ? pc_error_set(err, wc->err.code, "%s", wc->err.msg)
                               : pc_error_set(err, PC_EIO,
                                              "cannot start zstd compression into %s: "
                                              "libarchive: %s",
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
    struct stat sst;
    wc->src_over = true;
    if (fstat(src_fd, &sst) == 0 && (uint64_t)sst.st_size <= READBACK_MEM_MAX) {
        wc->src_cap = (size_t)sst.st_size + IO_CHUNK; /* room to notice a file that grows */
        wc->src = malloc(wc->src_cap);
        wc->src_over = wc->src == NULL;
    }
    for (;;) {
        char *into = buf;
        size_t want = IO_CHUNK;
        if (!wc->src_over && wc->src_cap - wc->src_len < IO_CHUNK) {
            wc->src_over = true; /* it grew past what it was: checked by hashing instead */
            free(wc->src);
            wc->src = NULL;
        }
        if (!wc->src_over)
            into = (char *)wc->src + wc->src_len;
        ssize_t n = read_full(src_fd, into, want);
        if (n < 0) {
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", src_what, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        pc_sha256_update(md, into, (size_t)n);
        total += (uint64_t)n;
        if (total > limit) {
            rc = too_big(err, src_what, limit);
            goto done;
        }
        if (!wc->src_over)
            wc->src_len += (size_t)n;
        size_t off = 0;
        while (off < (size_t)n) {
            la_ssize_t w = archive_write_data(a, into + off, (size_t)n - off);
            if (w <= 0) {
                rc = wc->err.code != 0
                         ? pc_error_set(err, wc->err.code, "%s", wc->err.msg)
                         : pc_error_set(err, PC_EIO, "cannot write %s: %s", out_what, aerr(a));
                goto done;
            }
            off += (size_t)w;
        }
    }
    opened = false;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = wc->err.code != 0
                 ? pc_error_set(err, wc->err.code, "%s", wc->err.msg)
                 : pc_error_set(err, PC_EIO, "cannot write %s: %s", out_what, aerr(a));
        goto done;
    }
    pc_sha256_final(md, info->sha256);
    info->size = total;
    unsigned char trailer[PC_WAL_TRAILER_LEN];
    trailer_build(trailer, info->sha256, total);
    if (encoded_write(wc, trailer, sizeof trailer) != 0) {
        rc = pc_error_set(err, wc->err.code, "%s", wc->err.msg);
        goto done;
    }
    info->stored_size = wc->bytes;
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

static int conflict_error(pc_error *err, pc_repo *repo, const char *name, const char *old_sha,
                          const char *new_sha)
{
    return pc_error_set(err, PC_ECONFLICT,
                        "%s is already archived in %s with different content (sha256 %s, new %s); "
                        "refusing to overwrite archived history — is this a restored clone "
                        "archiving into the primary's repository?",
                        name, pc_repo_uri(repo), old_sha, new_sha);
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

/* One write of the encoded source to key, committed with mode. The encoding is decoded and
 * checked against the SHA-256 before the commit (from memory), or, when it was too large to
 * keep, read back after it (and removed again when it does not check out). With expect_sha, an
 * encoding of other content is not committed (PC_ECONFLICT): a REPLACE never changes history. */
static int push_once(pc_repo *repo, int src, const char *path, uint64_t limit, const char *key,
                     const char *what, const char *name, pc_repo_commit_mode mode,
                     const char *expect_sha, pc_wal_info *mine, pc_error *err)
{
    write_ctx wc = {0};
    int rc = pc_repo_put_begin(repo, key, &wc.put, err);
    if (rc != 0)
        return rc;
    if ((rc = wal_encode(src, path, limit, &wc, what, name, mine, err)) != 0)
        goto done;
    if (expect_sha != NULL && strcmp(expect_sha, mine->sha256) != 0) {
        rc = conflict_error(err, repo, name, expect_sha, mine->sha256);
        goto done;
    }
    if (!wc.mem_over) {
        stored s = {.mem = (const unsigned char *)wc.mem.data, .size = wc.mem.len, .what = what};
        pc_wal_info check;
        rc = trailer_read(&s, &check, err);
        decode_expect ex = {.data = wc.src, .len = wc.src_len};
        /* the trailer must record what was hashed while the source was read */
        if (rc == 0 && (strcmp(check.sha256, mine->sha256) != 0 || check.size != mine->size))
            rc = pc_error_set(err, PC_EIO, "%s: its trailer does not record the source's SHA-256",
                              what);
        if (rc == 0)
            rc = wal_decode_ex(&s, &check, NULL, wc.src_over ? NULL : &ex, err);
        if (rc != 0) {
            pc_error_prefix(err, "read-back of the compressed copy failed");
            goto done;
        }
    }
    pc_repo_put *p = wc.put;
    wc.put = NULL; /* commit frees it whatever the result */
    if ((rc = pc_repo_put_commit(p, mode, err)) != 0 || !wc.mem_over)
        goto done;
    archived a = {0};
    pc_wal_info check;
    pc_error ve = {0};
    int vr = open_archived(repo, name, &a, &ve);
    if (vr == 0 && (vr = trailer_read(&a.s, &check, &ve)) == 0 &&
        (vr = wal_decode(&a.s, &check, NULL, &ve)) == 0 && strcmp(check.sha256, mine->sha256) != 0)
        vr = pc_error_set(&ve, PC_EIO, "%s holds sha256 %s, not %s", what, check.sha256,
                          mine->sha256);
    archived_close(&a);
    if (vr != 0) {
        /* what we just committed is not what PostgreSQL gave us: never leave it as history */
        (void)pc_repo_delete(repo, key, NULL);
        rc = pc_error_set(err, PC_EIO, "read-back of the compressed copy failed: %s", ve.msg);
    }
done:
    pc_repo_put_abort(wc.put);
    pc_buf_free(&wc.mem);
    free(wc.src);
    return rc;
}

/* Compares an archived copy with what we hold (mine: the SHA-256 and size of our file). 0 and
 * *intact when it is the same history (intact: its bytes decode to that content too), else
 * PC_ECONFLICT (different content) or the error that stopped the check. */
static int compare_archived(pc_repo *repo, const char *name, const pc_wal_info *mine,
                            pc_wal_info *theirs, bool *intact, pc_error *err)
{
    archived old = {0};
    int rc = open_archived(repo, name, &old, err);
    if (rc != 0)
        return rc;
    rc = trailer_read(&old.s, theirs, err);
    if (rc != 0) {
        pc_error_prefix(err,
                        "%s is already archived in %s but the archived copy cannot be "
                        "checked, so it is not overwritten (inspect it and move it aside)",
                        name, pc_repo_uri(repo));
        goto done;
    }
    if (strcmp(mine->sha256, theirs->sha256) != 0 || mine->size != theirs->size) {
        rc = conflict_error(err, repo, name, theirs->sha256, mine->sha256);
        goto done;
    }
    pc_error tmp_err = {0};
    *intact = wal_decode(&old.s, theirs, NULL, &tmp_err) == 0;
done:
    archived_close(&old);
    return rc;
}

/* The identity of the file a push read (push-ahead's markers; see src_ident_check). */
typedef struct src_ident {
    bool ok; /* false: none recorded, the later call hashes the file */
    unsigned long long dev, ino, size;
    long long mtime_s, ctime_s;
    long mtime_ns, ctime_ns;
} src_ident;

static void src_ident_from(src_ident *id, const struct stat *st)
{
    id->dev = (unsigned long long)st->st_dev;
    id->ino = (unsigned long long)st->st_ino;
    id->size = (unsigned long long)st->st_size;
    id->mtime_s = (long long)st->st_mtim.tv_sec;
    id->mtime_ns = st->st_mtim.tv_nsec;
    id->ctime_s = (long long)st->st_ctim.tv_sec;
    id->ctime_ns = st->st_ctim.tv_nsec;
}

static bool src_ident_same(const src_ident *a, const src_ident *b)
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
static void src_ident_check(src_ident *id, const struct timespec *t0, const struct stat *before,
                            const struct stat *after)
{
    src_ident a;
    src_ident_from(id, before);
    src_ident_from(&a, after);
    long long c_ns = id->ctime_s * 1000000000LL + id->ctime_ns;
    long long t_ns = (long long)t0->tv_sec * 1000000000LL + t0->tv_nsec;
    id->ok = S_ISREG(after->st_mode) && src_ident_same(id, &a) && c_ns <= t_ns - IDENT_GRAN_NS;
}

static int wal_push_ident(pc_repo *repo, const char *path, const char *name,
                          pc_wal_push_result *result, pc_wal_info *info, src_ident *ident,
                          pc_error *err);

int pc_wal_push(pc_repo *repo, const char *path, const char *name, pc_wal_push_result *result,
                pc_wal_info *info, pc_error *err)
{
    return wal_push_ident(repo, path, name, result, info, NULL, err);
}

/* pc_wal_push; with ident, also the identity of the file read (ident->ok false: none). */
static int wal_push_ident(pc_repo *repo, const char *path, const char *name,
                          pc_wal_push_result *result, pc_wal_info *info, src_ident *ident,
                          pc_error *err)
{
    int rc = 0;
    int src = -1;
    char *key = NULL, *what = NULL;
    pc_wal_info mine = {{0}, 0, 0}, theirs = {{0}, 0, 0};
    uint64_t limit = WAL_SOURCE_MAX;
    pc_wal_push_result res = PC_WAL_PUSHED;
    struct timespec t0 = {0, 0};
    struct stat before;
    bool have_before = false;

    rc = pc_wal_name_check(name, NULL, err);
    if (rc != 0)
        goto done;
    if (repo == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "no backup repository given");
        goto done;
    }
    key = pc_wal_key(name);
    what = key != NULL ? pc__repo_name(repo, key) : NULL;
    if (key == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = open_source(path, name, &src, &limit, err);
    if (rc != 0)
        goto done;
    have_before = ident != NULL && clock_gettime(CLOCK_REALTIME_COARSE, &t0) == 0 &&
                  fstat(src, &before) == 0;

    /* Written first, asked after: the NOREPLACE commit is the existence check (S3: its HEAD and
     * If-None-Match), so the usual push costs no look-up of its own. An existing object
     * (archive_command retried after a crash between our commit and PostgreSQL noting success,
     * or a push that raced us) answers PC_ECONFLICT and is compared: the same content is
     * success, different content never overwrites. */
    pc_error pe = {0};
    rc = push_once(repo, src, path, limit, key, what, name, PC_REPO_NOREPLACE, NULL, &mine, &pe);
    if (rc == PC_ECONFLICT && mine.sha256[0] != '\0') {
        pc_error_clear(&pe);
        bool intact = false;
        if ((rc = compare_archived(repo, name, &mine, &theirs, &intact, err)) != 0)
            goto done;
        if (intact) {
            /* durable once the other writer's commit is, which we make sure of */
            res = PC_WAL_ALREADY;
            mine = theirs;
            rc = pc_repo_sync(repo, key, err);
            goto done;
        }
        /* Same recorded checksum but the stored bytes are damaged: the new copy is the same
         * history, so replacing it is a repair, not an overwrite. */
        res = PC_WAL_REPAIRED;
        rc = push_once(repo, src, path, limit, key, what, name, PC_REPO_REPLACE, theirs.sha256,
                       &mine, &pe);
    }
    if (rc != 0)
        pc_error_set(err, pe.code, "%s", pe.msg);

done:
    if (ident != NULL) {
        struct stat after;
        ident->ok = false;
        if (rc == 0 && have_before && fstat(src, &after) == 0)
            src_ident_check(ident, &t0, &before, &after);
        if (ident->ok && ident->size != mine.size)
            ident->ok = false;
    }
    if (src >= 0)
        close(src);
    if (rc == 0) {
        if (result != NULL)
            *result = res;
        if (info != NULL)
            *info = mine;
    }
    free(key);
    free(what);
    return rc;
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
 * pusher read; src_ident_check says why that is enough) without reading it, else the same
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
 * identity of the file read, src_ident_check). A marker without the source line (an older
 * pusher's) is still believed, by hashing the file. */
static int marker_write(const char *waldir, const char *name, const char *repo_id,
                        const pc_wal_info *info, const src_ident *id, pc_error *err)
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
                       src_ident *id)
{
    char *p = spool_path(waldir, name);
    if (p == NULL)
        return -1;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(p);
    if (fd < 0)
        return -1;
    char text[SPOOL_MARKER_MAX + 1];
    ssize_t n = read_full(fd, text, SPOOL_MARKER_MAX);
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
    src_ident si = {0};
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
    src_ident ident;
    pc_error err;
} ahead_job;

static void *ahead_main(void *arg)
{
    ahead_job *j = arg;
    j->rc = wal_push_ident(j->repo, j->path, j->name, &j->res, &j->info, &j->ident, &j->err);
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
                                pc_wal_info *mk, src_ident *mk_id, size_t *handed)
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
 * src_ident_check for why that is enough), else the same SHA-256 and size. */
static bool marker_matches(const char *path, const char *name, const pc_wal_info *mk,
                           const src_ident *id)
{
    struct stat st;
    if (id->ok && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        src_ident now;
        src_ident_from(&now, &st);
        if (src_ident_same(id, &now) && now.size == mk->size)
            return true;
    }
    pc__wal_ahead_hashed++;
    int src = -1;
    uint64_t limit = 0, size = 0;
    char sha[65];
    pc_error he = {0};
    bool same = open_source(path, name, &src, &limit, &he) == 0 &&
                hash_fd(src, path, limit, sha, &size, &he) == 0 && strcmp(sha, mk->sha256) == 0 &&
                size == mk->size;
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
    src_ident mk_id = {0};
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
