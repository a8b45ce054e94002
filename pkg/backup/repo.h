/* repo.h: where a backup repository's bytes live (private to pkg/backup).
 *
 * Everything else in pkg/backup (wal.c, basebackup.c, verify.c, restore.c, retention.c) reads
 * and writes the repository through this interface only and does not know whether it is a
 * directory (repo_dir.c), an S3 bucket (repo_s3.c), or either of them encrypted (repo_crypt.c,
 * a layer over another pc_repo).
 *
 * Objects are named by keys: relative, '/'-separated, no "." or ".." component, no leading or
 * trailing '/', no empty component, at most PC_REPO_KEY_MAX bytes; no component starts with '.'
 * and none holds a control character (the directory kind keeps its temporaries and lock under
 * dot-names and lists none: pc_repo_key_check refuses them on every kind alike). The layout (backup.h) is the
 * same on every kind: "wal/<NAME>.zst", "backups/<ID>/base.tar.zst", "backups/<ID>/pipectl.json".
 *
 * Guarantees every implementation keeps:
 *  - an object is visible (stat, open, list) only after pc_repo_put_commit returned 0, and then
 *    whole: a reader never sees a half-written object; a put that is aborted or whose process
 *    dies leaves no visible object (directory: a dot-named temporary file; S3: an unfinished
 *    multipart upload or nothing), and pc_repo_sweep removes such leftovers;
 *  - commit returns 0 only when the bytes are durable (directory: fsync of file and directory;
 *    S3: the server answered 200 to the PUT/CompleteMultipartUpload, the payload's SHA-256 having
 *    been checked by the server through x-amz-content-sha256);
 *  - PC_REPO_NOREPLACE never replaces an object that exists (PC_ECONFLICT instead);
 *  - list returns keys in bytewise ascending order, never temporary objects;
 *  - errors name the repository (pc_repo_uri, never a credential) and the key, and say what to do.
 *
 * Return codes: 0; PC_ENOTFOUND (no such object: an ordinary answer); PC_ECONFLICT (NOREPLACE and
 * the key exists; the lock is held); PC_EUNAVAIL (the repository cannot be reached or read: a
 * missing directory, an unreachable endpoint, a missing bucket, wrong credentials); PC_EIO (a
 * read or write failed, an object is damaged or fails authentication); PC_EINVAL (a bad key or
 * configuration); PC_ENOMEM.
 *
 * Threads: one pc_repo and what it opened are used by one thread at a time (the S3 writer's part
 * uploads run on threads of its own, with connections of their own). */
#ifndef PC_BACKUP_REPO_H
#define PC_BACKUP_REPO_H
#if !defined(PC_INSIDE_BACKUP) && !defined(PC_WHITEBOX_TEST)
#error "repo.h is private to pkg/backup: include backup.h"
#endif

#include "backup.h"
#include "core.h"
#include "s3.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PC_REPO_KEY_MAX 512

typedef struct pc_repo_obj pc_repo_obj;   /* an object open for reading */
typedef struct pc_repo_put pc_repo_put;   /* an object being written */
typedef struct pc_repo_lock pc_repo_lock; /* a held repository lock */

typedef enum pc_repo_commit_mode {
    PC_REPO_NOREPLACE = 0, /* PC_ECONFLICT when the key exists (WAL: history is never rewritten) */
    PC_REPO_REPLACE = 1,   /* an existing object is replaced, atomically for readers */
} pc_repo_commit_mode;

typedef struct pc_repo_entry {
    const char *key; /* valid during the callback only */
    uint64_t size;   /* bytes a reader gets (plaintext size for an encrypted repository) */
    int64_t mtime;   /* unix seconds of the last write; 0 when unknown */
} pc_repo_entry;

/* Returns 0 to go on; anything else stops the listing and is returned by pc_repo_list. */
typedef int (*pc_repo_list_fn)(void *ctx, const pc_repo_entry *e);

/* The implementation table (one per kind). Every function is required unless marked optional. */
typedef struct pc_repo_ops {
    const char *kind; /* "dir", "s3", "encrypted" */
    int (*stat)(pc_repo *r, const char *key, pc_repo_entry *out, pc_error *err);
    int (*open)(pc_repo *r, const char *key, pc_repo_obj **out, pc_error *err);
    uint64_t (*obj_size)(pc_repo_obj *o);
    int (*pread)(pc_repo_obj *o, uint64_t off, void *buf, size_t n, size_t *got, pc_error *err);
    void (*obj_close)(pc_repo_obj *o);
    int (*put_begin)(pc_repo *r, const char *key, pc_repo_put **out, pc_error *err);
    int (*put_write)(pc_repo_put *p, const void *data, size_t n, pc_error *err);
    int (*put_commit)(pc_repo_put *p, pc_repo_commit_mode mode, pc_error *err);
    void (*put_abort)(pc_repo_put *p);
    int (*del)(pc_repo *r, const char *key, pc_error *err);
    int (*list)(pc_repo *r, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err);
    int (*lock)(pc_repo *r, const char *what, pc_repo_lock **out, pc_error *err);
    void (*unlock)(pc_repo_lock *l);
    int (*lock_check)(pc_repo_lock *l, pc_error *err);
    int (*sweep)(pc_repo *r, int64_t now, int64_t older_than_s, size_t *removed, pc_error *err);
    void (*close)(pc_repo *r);
    /* optional (NULL: a committed object is durable once commit returned, e.g. S3) */
    int (*sync)(pc_repo *r, const char *key, pc_error *err);
} pc_repo_ops;

/* The common head of every implementation's handle (each embeds it first). The kind's close
 * frees the handle and everything it holds, uri included. */
struct pc_repo {
    const pc_repo_ops *ops;
    char *uri; /* "/srv/backups" or "s3://bucket/prefix": for messages, never holds a secret */
};

/* The common heads of what a handle hands out (each implementation embeds the head first and
 * sets repo): the dispatchers in repo.c find the ops table through it. */
struct pc_repo_obj {
    pc_repo *repo;
};
struct pc_repo_put {
    pc_repo *repo;
};
struct pc_repo_lock {
    pc_repo *repo;
};

/* --- the calls the rest of pkg/backup makes (repo.c: checks, then dispatch) ------------------ */

/* Checks a key's shape (see above); PC_EINVAL naming it otherwise. */
int pc_repo_key_check(const char *key, pc_error *err);

/* Size and mtime of key; PC_ENOTFOUND when absent. */
int pc_repo_stat(pc_repo *r, const char *key, pc_repo_entry *out, pc_error *err);

/* Opens key for reading by position; PC_ENOTFOUND when absent. */
int pc_repo_open(pc_repo *r, const char *key, pc_repo_obj **out, pc_error *err);
uint64_t pc_repo_obj_size(pc_repo_obj *o);
/* Reads up to n bytes at off; *got < n only at the end of the object (0 at or past the end). The
 * S3 kind serves reads from a read-ahead window of ranged GETs, so sequential reads of any size
 * cost one request per window, and memory stays bounded whatever the object's size. */
int pc_repo_pread(pc_repo_obj *o, uint64_t off, void *buf, size_t n, size_t *got, pc_error *err);
void pc_repo_obj_close(pc_repo_obj *o); /* NULL is fine */

/* Starts writing key. Nothing is visible until commit. Memory is bounded whatever is written
 * (S3: parts of a multipart upload once the data outgrows one part, several in flight). */
int pc_repo_put_begin(pc_repo *r, const char *key, pc_repo_put **out, pc_error *err);
int pc_repo_put_write(pc_repo_put *p, const void *data, size_t n, pc_error *err);
/* Makes the object durable and visible; frees p whatever the result. */
int pc_repo_put_commit(pc_repo_put *p, pc_repo_commit_mode mode, pc_error *err);
/* Drops what was written; frees p. NULL is fine. */
void pc_repo_put_abort(pc_repo_put *p);
/* Writes len bytes from memory as key in one go (begin, write, commit). */
int pc_repo_put_all(pc_repo *r, const char *key, const void *data, size_t len,
                    pc_repo_commit_mode mode, pc_error *err);
/* Reads the whole of key into out (appended); an object over max bytes is PC_EIO. */
int pc_repo_get_all(pc_repo *r, const char *key, pc_buf *out, size_t max, pc_error *err);

/* Makes an existing object durable again, for a writer that finds the object another writer
 * committed (wal-push retried after a crash between commit's steps: directory, fsync of the file
 * and its directory). 0 without doing anything for a kind whose commit alone is durable;
 * PC_ENOTFOUND when absent. An encrypted layer passes it to its inner repository. */
int pc_repo_sync(pc_repo *r, const char *key, pc_error *err);

/* Removes key; a key that does not exist is success. */
int pc_repo_delete(pc_repo *r, const char *key, pc_error *err);
/* Every committed key that starts with prefix ("" for all), in bytewise order. */
int pc_repo_list(pc_repo *r, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err);

/* Takes the repository's lock for `what` ("backup create", "backup expire"): held until
 * pc_repo_unlock. PC_ECONFLICT when another process holds it (the message says which operation
 * when known). Directory: flock of backups/.lock. S3: an object locks/backup.lock holding owner,
 * host, pid and an expiry, refreshed by the holder; a lock older than its expiry is taken over. */
/* (pc_repo_lock_take: pc_repo_lock names the type, and C has one name space for both.) */
int pc_repo_lock_take(pc_repo *r, const char *what, pc_repo_lock **out, pc_error *err);
void pc_repo_unlock(pc_repo_lock *l); /* NULL is fine */

/* Is the lock still ours? Called right before a step that must not run twice at once (a backup
 * made visible, backups or WAL deleted). 0 while it is; PC_ECONFLICT when it was lost (S3: the
 * holder's refreshes failed for the whole TTL and another process took it over, or the object
 * was deleted), naming the repository, the lock object and the new holder when known; another
 * code (PC_EUNAVAIL, ...) with its own message when the check itself could not be made.
 * Directory: always 0 (flock is held as long as the process lives). S3: what the refresher
 * found, else one GET of the lock object compared with our token; a lock still ours whose
 * expiry has passed (no refresh got through for the whole TTL) counts as lost too, since any
 * process may take it over at that moment. The check and the step after it are not atomic: a
 * lock can still be lost between them, in a window of one request instead of a whole run. */
int pc_repo_lock_check(pc_repo_lock *l, pc_error *err);

/* Removes what interrupted writers left that is older than older_than_s seconds at now:
 * directory: dot-named temporary files; S3: unfinished multipart uploads under the prefix.
 * *removed (may be NULL) gets how many. */
int pc_repo_sweep(pc_repo *r, int64_t now, int64_t older_than_s, size_t *removed, pc_error *err);

/* "/srv/backups", "s3://bucket/prefix" (no credential ever). */
const char *pc_repo_uri(const pc_repo *r);
/* "dir", "s3" or "encrypted". */
const char *pc_repo_kind(const pc_repo *r);

/* --- constructors (called by pc_repo_open_config in repo.c) --------------------------------- */

/* A directory repository at an absolute path. Does not create it. */
int pc_repo_dir_new(const char *path, pc_repo **out, pc_error *err);
/* An S3 repository: cfg->bucket and prefix ("" or "a/b", no leading/trailing '/'). */
int pc_repo_s3_new(const pc_s3_config *cfg, const char *prefix, pc_repo **out, pc_error *err);
/* An encrypted layer over inner (takes ownership of inner, also on failure). */
int pc_repo_crypt_new(pc_repo *inner, const char *passphrase, pc_repo **out, pc_error *err);

/* The S3 lock's timings (repo_s3.c): a lock not refreshed for ttl_s seconds is taken over; its
 * holder refreshes it every refresh_ms milliseconds. Each lock copies them when taken, so a change
 * applies to locks taken afterwards. Production keeps the defaults (900 s, 300000 ms); only
 * white-box tests change them (no environment variable, no option). */
extern int64_t pc__repo_s3_lock_ttl_s;
extern int64_t pc__repo_s3_lock_refresh_ms;

#endif
