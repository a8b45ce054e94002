/* backup.h: the backup repository: WAL archiving (wal-push / wal-fetch) and, later, base backups,
 * retention, verify and restore.
 *
 * Repository layout (a directory on any mounted file system):
 *
 *     REPO/wal/NAME.zst    one archived WAL file (segment, .partial, .history or .backup label)
 *     REPO/wal/.NAME.zst.tmp-XXXXXX
 *                          a push in progress (or one killed mid-way): never an archived file;
 *                          listings skip dot files
 *
 * Each NAME.zst is a plain zstd stream (`zstd -d` reads it) followed by one zstd *skippable frame*
 * of fixed size (PC_WAL_TRAILER_LEN bytes) that records the SHA-256 and the size of the
 * uncompressed content. zstd decoders ignore skippable frames, so the file stays a valid .zst,
 * and the checksum travels in the same file as the data: one atomic rename makes both durable,
 * and `backup verify` can check every file without the original.
 *
 * Trailer: le32 magic 0x184D2A5D, le32 payload length 128, payload
 *     "pipectl-wal 1 sha256 <64 lowercase hex> size <20 decimal digits>" padded with spaces,
 *     last byte '\n'.
 *
 * Nothing here prints; every failure fills pc_error with a message naming the file and
 * directory involved and what the user can do. */
#ifndef PC_BACKUP_H
#define PC_BACKUP_H

#include <stdint.h>

#include "core.h"

#define PC_WAL_DIR "wal"
#define PC_WAL_SUFFIX ".zst"
#define PC_WAL_TRAILER_LEN 136
#define PC_WAL_NAME_MAX 64

typedef enum pc_wal_kind {
    PC_WAL_SEGMENT, /* 000000010000000000000001 */
    PC_WAL_PARTIAL, /* 000000010000000000000001.partial */
    PC_WAL_HISTORY, /* 00000002.history */
    PC_WAL_BACKUP,  /* 000000010000000000000002.00000028.backup */
} pc_wal_kind;

/* What is known about one archived file. */
typedef struct pc_wal_info {
    char sha256[65];      /* of the uncompressed content, lowercase hex */
    uint64_t size;        /* uncompressed bytes */
    uint64_t stored_size; /* bytes of NAME.zst in the repository, trailer included */
} pc_wal_info;

typedef enum pc_wal_push_result {
    PC_WAL_PUSHED,  /* newly stored */
    PC_WAL_ALREADY, /* an identical copy (same SHA-256, verified) was already archived */
    PC_WAL_REPAIRED /* the archived copy claimed the same SHA-256 but was corrupt: replaced */
} pc_wal_push_result;

/* Checks that name is a file name PostgreSQL archives (%f) and nothing else: 24 upper-case hex
 * digits, optionally ".partial"; 8 hex + ".history"; 24 hex + "." + 8 hex + ".backup".
 * No path separators, no dots elsewhere. Returns 0 and sets *kind (may be NULL), or PC_EINVAL. */
int pc_wal_name_check(const char *name, pc_wal_kind *kind, pc_error *err);

/* Path of NAME's archived copy: "<repository>/wal/<name>.zst" (no check that it exists).
 * NULL on OOM or an invalid name. */
char *pc_wal_archive_path(const char *repository, const char *name);

/* Archives the file at path as name: compresses it (zstd), writes it under a temporary name in
 * REPO/wal (created when missing), fsyncs it, reads it back and checks the SHA-256, renames it
 * without overwriting, fsyncs the directory. Returns 0 only when the copy is durable.
 * An existing copy with the same SHA-256 is verified and accepted (*result PC_WAL_ALREADY);
 * a different one is never overwritten: PC_ECONFLICT. Repository missing or not writable:
 * PC_EIO / PC_ENOTFOUND with the directory named. result and info may be NULL. */
int pc_wal_push(const char *repository, const char *path, const char *name,
                pc_wal_push_result *result, pc_wal_info *info, pc_error *err);

/* Restores name from the repository to path (temporary file in path's directory, fsync,
 * rename). Returns PC_ENOTFOUND when the repository has no such file (an ordinary answer during
 * recovery); PC_EUNAVAIL when the repository itself cannot be read; PC_EIO when the archived
 * copy is corrupt or its SHA-256 does not match (path is then left untouched). */
int pc_wal_fetch(const char *repository, const char *name, const char *path, pc_wal_info *info,
                 pc_error *err);

/* Decompresses name's archived copy and checks it against its recorded SHA-256 and size,
 * writing nothing. Same return codes as pc_wal_fetch. */
int pc_wal_verify(const char *repository, const char *name, pc_wal_info *info, pc_error *err);

/* Reads only the recorded checksum and size (no decompression). */
int pc_wal_stat(const char *repository, const char *name, pc_wal_info *info, pc_error *err);

#endif
