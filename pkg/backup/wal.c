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
 * HEAD on S3 instead of two). With --parallel, a background pusher pushes ahead (wal_ahead.c).
 * Everything goes through repo.h: this file does not know whether the repository is a
 * directory or a bucket. Format of the stored object: see backup.h. */
#include "backup_int.h"
#include "repo.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

ssize_t pc__read_full(int fd, void *buf, size_t len)
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
int pc__wal_hash_fd(int fd, const char *what, uint64_t limit, char sha[65], uint64_t *size,
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
        ssize_t n = pc__read_full(fd, buf, IO_CHUNK);
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
        ssize_t n = pc__read_full(src_fd, into, want);
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
int pc__wal_open_source(const char *path, const char *name, int *fd_out, uint64_t *limit,
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

int pc_wal_push(pc_repo *repo, const char *path, const char *name, pc_wal_push_result *result,
                pc_wal_info *info, pc_error *err)
{
    return pc__wal_push_ident(repo, path, name, result, info, NULL, err);
}

int pc__wal_push_ident(pc_repo *repo, const char *path, const char *name,
                       pc_wal_push_result *result, pc_wal_info *info, pc__src_ident *ident,
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
    rc = pc__wal_open_source(path, name, &src, &limit, err);
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
            pc__src_ident_check(ident, &t0, &before, &after);
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
