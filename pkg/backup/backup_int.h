/* backup_int.h: helpers the pkg/backup files share (repo_util.c, wal.c; private to pkg/backup). */
#ifndef PC_BACKUP_INT_H
#define PC_BACKUP_INT_H
#if !defined(PC_INSIDE_BACKUP) && !defined(PC_WHITEBOX_TEST)
#error "backup_int.h is private to pkg/backup: include backup.h"
#endif

#include "backup.h"
#include "repo.h"

#include <sys/types.h>

#define PC_BACKUPS_DIR "backups"
#define PC_BACKUP_META "pipectl.json"
/* pipectl.json and backup_manifest are read whole into memory: bounds against a stray giant. */
#define PC_BACKUP_META_MAX (1u << 20)
#define PC_BACKUP_MANIFEST_MAX (1u << 30)

/* "<uri>/<key>": how messages name an object (the file's path in a directory repository). */
char *pc__repo_name(const pc_repo *r, const char *key);
/* "backups/<id>/<file>", or "backups/<id>" when file is NULL. */
char *pc__backup_key(const char *id, const char *file);
/* A backup ID as pipectl makes them: "20261125T030000Z". */
bool pc__backup_id_is(const char *s);
/* ".tar.zst" for "zstd" and so on (".tar" for "none"); NULL for an unknown compression. */
const char *pc__compression_suffix(const char *compression);

/* pc_backup_expire's work, with the lock already held (pc_backup_expire takes it, calls this,
 * releases it; white-box tests pass a lock they then take away). Checks the lock before each
 * deletion: PC_ECONFLICT, with nothing more deleted, once it is lost. */
int pc__backup_expire_held(pc_repo *repo, pc_repo_lock *lock, int keep_full, int keep_days,
                           int64_t now, pc_expire_result *res, pc_error *err);

/* Reads and checks backups/<id>/pipectl.json into *b (zeroed first; freed on failure; b->dir
 * is the key prefix "backups/<id>"). PC_ENOTFOUND when the object does not exist (an
 * incomplete backup), PC_EIO when it is damaged (not JSON, empty, a field missing or invalid,
 * an ID other than id), PC_EUNAVAIL when the repository cannot be read, PC_ENOMEM; the
 * message names the object. list, verify and restore judge a backup by this one function. */
int pc__backup_read_meta(pc_repo *r, const char *id, pc_backup_info *b, pc_error *err);

/* Reading a stored object with libarchive, by position through the repository (no temporary
 * copy). The reader belongs to the caller and must outlive the archive (free it after
 * archive_read_free); err holds the repository's message when a read failed. */
#define PC__READ_CHUNK (1024 * 1024)
struct archive;
typedef struct pc__prefetch pc__prefetch;
typedef struct pc__obj_reader {
    pc_repo_obj *o;
    uint64_t off;
    pc_error err;
    /* Optional, set before opening: md hashes every byte of the object in order (nothing is
     * skipped; pc__obj_reader_finish hashes what the archive did not read); readahead reads
     * the object on a thread of its own, up to PC__READAHEAD_CHUNKS chunks ahead of the archive,
     * so the download overlaps decompression (the thread is then the only user of o). */
    pc_sha256 *md;
    bool readahead;
    pc__prefetch *pf; /* private */
    unsigned char buf[PC__READ_CHUNK];
} pc__obj_reader;
#define PC__READAHEAD_CHUNKS 8
/* Sets the callbacks and opens: archive_read_open1's result. */
int pc__archive_open_obj(struct archive *a, pc__obj_reader *r);
/* Reads (and hashes, with md) the rest of the object the archive left unread: the caller then
 * holds the hash of the whole object. PC_EIO/... as the repository's pread. */
int pc__obj_reader_finish(pc__obj_reader *r, pc_error *err);
/* Stops the read-ahead thread (if any) and closes o. Call after archive_read_free. NULL is
 * fine; r itself stays the caller's. */
void pc__obj_reader_close(pc__obj_reader *r);

/* SHA-256 of a whole object. PC_ENOTFOUND when it does not exist. */
int pc__repo_sha256(pc_repo *r, const char *key, char out[PC_SHA256_HEX_LEN + 1], pc_error *err);

/* rm -rf of a local path (no error when it does not exist): restore's target directory. */
int pc__rmtree(const char *path, pc_error *err);
/* fsync of every regular file and directory under a local dir, directories after their
 * contents. */
int pc__fsync_tree(const char *dir, pc_error *err);
/* Compares the positions of two WAL file names (segment, .partial or .backup) by segment number
 * only (hex digits 9..24), ignoring the timeline: WAL positions grow across timelines, so a lower
 * number is older whatever its timeline. <0, 0, >0 like strcmp. */
int pc__wal_segcmp(const char *a, const char *b);

/* --- WAL: what the single push (wal.c) and push-ahead (wal_ahead.c) share --------------------- */
struct stat;
struct timespec;

/* read(2) until len bytes or end of file: the count read, -1 on an error other than EINTR. */
ssize_t pc__read_full(int fd, void *buf, size_t len);
/* Opens the WAL file to archive (a regular file of at most its segment size; *limit gets the
 * most that may be read). PC_ENOTFOUND when path does not exist; the message names the file. */
int pc__wal_open_source(const char *path, const char *name, int *fd_out, uint64_t *limit,
                        pc_error *err);
/* SHA-256 (hex) and size of the file open on fd, from its start, reading at most limit bytes. */
int pc__wal_hash_fd(int fd, const char *what, uint64_t limit, char sha[65], uint64_t *size,
                    pc_error *err);

/* The identity of the file a push read (push-ahead's markers; see pc__src_ident_check). */
typedef struct pc__src_ident {
    bool ok; /* false: none recorded, the later call hashes the file */
    unsigned long long dev, ino, size;
    long long mtime_s, ctime_s;
    long mtime_ns, ctime_ns;
} pc__src_ident;
/* Records in *id the identity of the file read between the fstats before and after, taken after
 * the coarse real-time clock read t0; id->ok false when it cannot vouch for the bytes read
 * (wal_ahead.c says why). */
void pc__src_ident_check(pc__src_ident *id, const struct timespec *t0, const struct stat *before,
                         const struct stat *after);
/* pc_wal_push; with ident, also the identity of the file read (ident->ok false: none). */
int pc__wal_push_ident(pc_repo *repo, const char *path, const char *name,
                       pc_wal_push_result *result, pc_wal_info *info, pc__src_ident *ident,
                       pc_error *err);

/* How many push-ahead answers (wal_ahead.c) checked the file against its marker by hashing it,
 * rather than by the identity the pusher recorded: for tests. */
extern unsigned long pc__wal_ahead_hashed;

#endif
