/* backup.h: the backup repository: WAL archiving (wal-push / wal-fetch), base backups,
 * retention, verify and restore.
 *
 * Repository layout (objects by key, the same on every kind of repository, see repo.h; in a
 * directory repository each key is a file under the directory):
 *
 *     wal/NAME.zst         one archived WAL file (segment, .partial, .history or .backup label)
 *                          (a directory repository writes it as wal/.NAME.zst.tmp-XXXXXX first:
 *                          a push in progress or killed mid-way, never an archived file)
 *
 * Each NAME.zst is a plain zstd stream (`zstd -d` reads it) followed by one zstd *skippable frame*
 * of fixed size (PC_WAL_TRAILER_LEN bytes) that records the SHA-256 and the size of the
 * uncompressed content. zstd decoders ignore skippable frames, so the file stays a valid .zst,
 * and the checksum travels in the same object as the data: one commit makes both durable,
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

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "manifest.h"
#include "s3.h"
#include "worker.h"

/* --- the repository handle --------------------------------------------------------------------
 * Every operation below works on an open repository: a directory or an S3 bucket (prefix), either
 * of them optionally encrypted (AES-256-GCM, key derived from a passphrase; see repo.h). */
typedef struct pc_repo pc_repo;

typedef struct pc_repo_config {
    const char *uri;          /* absolute directory path, or s3://bucket[/prefix] */
    const pc_s3_config *s3;   /* endpoint, region, credentials, TLS for s3:// (bucket taken from
                                 uri; NULL: AWS defaults and AWS_* variables via getenv_fn) */
    const char *passphrase;   /* archiving.encryption.key; NULL: the repository is not encrypted */
} pc_repo_config;

/* Opens (does not create) the repository cfg names. An encrypted repository opened without a
 * passphrase, a wrong passphrase, or a passphrase for a repository holding unencrypted objects
 * is one clear PC_EINVAL error naming the repository; nothing is read or written after it. */
int pc_repo_open_config(const pc_repo_config *cfg, pc_repo **out, pc_error *err);
void pc_repo_close(pc_repo *r); /* NULL is fine */
/* What to call it in messages: "/srv/backups", "s3://bucket/prefix" (never a credential). */
const char *pc_repo_uri(const pc_repo *r);
/* "dir", "s3" or "encrypted". */
const char *pc_repo_kind(const pc_repo *r);

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
    PC_WAL_REPAIRED, /* the archived copy claimed the same SHA-256 but was corrupt: replaced */
    PC_WAL_AHEAD     /* pushed earlier by a --parallel push (its spool marker matched the file) */
} pc_wal_push_result;

/* Checks that name is a file name PostgreSQL archives (%f) and nothing else: 24 upper-case hex
 * digits, optionally ".partial"; 8 hex + ".history"; 24 hex + "." + 8 hex + ".backup".
 * No path separators, no dots elsewhere. Returns 0 and sets *kind (may be NULL), or PC_EINVAL. */
int pc_wal_name_check(const char *name, pc_wal_kind *kind, pc_error *err);

/* Key of NAME's archived copy: "wal/<name>.zst" (no check that it exists). NULL on OOM or an
 * invalid name. */
char *pc_wal_key(const char *name);

/* Archives the file at path as name: compresses it (zstd) into the repository's object
 * wal/NAME.zst, decodes the encoding again and checks the SHA-256, and commits it without
 * overwriting (repo.h: durable when it returns). Returns 0 only when the copy is durable.
 * An existing copy with the same SHA-256 is verified, made durable (pc_repo_sync) and accepted
 * (*result PC_WAL_ALREADY); a different one is never overwritten: PC_ECONFLICT. Repository missing:
 * PC_EUNAVAIL; not writable: PC_EIO; the message names it. result and info may be NULL. The source
 * is bounded (PC_EINVAL, nothing written): it must be a regular file (a FIFO or /dev/zero is
 * refused without reading it) of at most 1 GiB, PostgreSQL's largest wal_segment_size, or, for a
 * segment whose first page states its segment size, at most that; reading stops with an error past
 * the bound. On any failure the temporary file is removed. */
int pc_wal_push(pc_repo *repo, const char *path, const char *name, pc_wal_push_result *result,
                pc_wal_info *info, pc_error *err);

/* Push-ahead (wal-push --parallel N): PostgreSQL archives one file per archive_command call and
 * waits for it. A call for X (path's directory is pg_wal) that finds other files waiting in
 * pg_wal/archive_status (NAME.ready) and no pusher running forks a background pusher (one at a
 * time: it holds pg_wal/pipectl_spool/pusher.lock) and pushes X itself. The pusher pushes the
 * waiting files, oldest first, N at once on threads with repository handles of their own, until
 * every waiting file has a marker, and records each one durably committed in a spool marker,
 * pg_wal/pipectl_spool/NAME.ok (written durably after the commit returned: repository id,
 * SHA-256, size). A later call for NAME waits for its marker while the pusher runs; it answers
 * PC_WAL_AHEAD only when the marker names the same repository id and the file hashes to the
 * recorded SHA-256 and size, and removes the marker. A missing, stale or mismatched marker, a
 * file the pusher gave up (NAME.fail) or a pusher that ended without a marker only means a
 * normal push. Markers whose file is no longer waiting (no .ready) are removed. */
#define PC_WAL_PARALLEL_MAX 32
#define PC_WAL_SPOOL_DIR "pipectl_spool"
typedef struct pc_wal_push_opts {
    unsigned parallel;   /* 1 (this file only) to PC_WAL_PARALLEL_MAX */
    const char *repo_id; /* names the repository in markers (the configured URI) */
    /* Opens a repository handle: in the calling process for the file asked for, in the
     * pusher (a forked child) once per file it pushes. Closed by pc_wal_push_ahead. */
    int (*open_repo)(void *ctx, pc_repo **out, pc_error *err);
    void *open_ctx;
} pc_wal_push_opts;

/* pc_wal_push of path as name with push-ahead (above). *ahead (may be NULL) gets how many other
 * files were handed to a background pusher started by this call. Failures pushing ahead are not
 * errors (PostgreSQL asks for those files later and they are pushed normally then). */
int pc_wal_push_ahead(const char *path, const char *name, const pc_wal_push_opts *o,
                      pc_wal_push_result *result, pc_wal_info *info, size_t *ahead,
                      pc_error *err);

/* Restores name from the repository to path (temporary file in path's directory, fsync,
 * rename). Returns PC_ENOTFOUND when the repository has no such file (an ordinary answer during
 * recovery); PC_EUNAVAIL when the repository itself cannot be read; PC_EIO when the archived
 * copy is corrupt or its SHA-256 does not match (path is then left untouched). */
int pc_wal_fetch(pc_repo *repo, const char *name, const char *path, pc_wal_info *info,
                 pc_error *err);

/* Decompresses name's archived copy and checks it against its recorded SHA-256 and size,
 * writing nothing. Same return codes as pc_wal_fetch. */
int pc_wal_verify(pc_repo *repo, const char *name, pc_wal_info *info, pc_error *err);

/* Reads only the recorded checksum and size (no decompression). */
int pc_wal_stat(pc_repo *repo, const char *name, pc_wal_info *info, pc_error *err);

/* ---------- base backups ----------
 *
 *     backups/<ID>/              ID: UTC start time "20261125T030000Z" (sorts by time)
 *         base.tar.zst           the data directory as one tar stream, zstd (or per the
 *                                compression setting: .lz4, .gz, or plain .tar)
 *         backup_manifest        PostgreSQL's backup manifest (SHA256 checksum per file, WAL range)
 *         pipectl.json           metadata, committed LAST (and deleted first): a backup without
 *                                it is incomplete and ignored by list/restore
 *     the repository's lock      held while a backup or expire runs (directory: flock of
 *                                backups/.lock)
 *
 * pipectl.json: {"format": 1, "id", "label", "start_lsn", "stop_lsn", "start_time",
 * "stop_time" (ISO 8601 UTC), "timeline", "start_wal", "stop_wal" (segment names), "db_bytes",
 * "stored_bytes", "compression", "files": {"base.tar.zst": "<sha256>", "backup_manifest":
 * "<sha256>"}, "pg_version", "system_identifier"}. */

typedef struct pc_backup_info {
    char *id;
    char *label;
    char *start_lsn;   /* "0/2000028" */
    char *stop_lsn;
    int64_t start_time; /* unix seconds, UTC */
    int64_t stop_time;
    uint32_t timeline;
    char *start_wal;   /* first WAL segment the backup needs */
    char *stop_wal;    /* last WAL segment the backup needs */
    uint64_t db_bytes;
    uint64_t stored_bytes;
    char *compression;
    char *dir;         /* key prefix of its objects: "backups/<ID>" (pc_repo_uri + "/" + dir
                          names it for a person) */
} pc_backup_info;

void pc_backup_info_free(pc_backup_info *b); /* members only */
void pc_backup_list_free(pc_backup_info *list, size_t n);

/* Progress of a long operation: done/total bytes (total 0 when unknown). */
typedef void (*pc_backup_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Takes a base backup of the cluster at dsn into repo (needs archiving into the same
 * repository for the WAL). base.tar.* is streamed into the repository (never whole in memory),
 * then backup_manifest, then, last, pipectl.json. Holds the repository's lock (PC_ECONFLICT
 * when another backup or expire runs). After the stream it waits for the last WAL segment in
 * the repository while the archiver makes progress; it gives up when nothing was archived, or
 * archive_command kept failing, for archive_wait_s seconds (0 = 60). On failure deletes the
 * objects it wrote. out->dir is the backup's key prefix "backups/<ID>". connect_timeout_s bounds
 * each connection attempt (the command's --timeout; 0: 10 s; the DSN's own connect_timeout
 * wins). */
int pc_backup_create(pc_repo *repo, const char *dsn, const char *compression, const char *label,
                     int archive_wait_s, int connect_timeout_s, pc_backup_progress_fn progress,
                     void *ctx, pc_backup_info *out, pc_error *err);

/* A backup (backups/<ID>/) whose pipectl.json exists but cannot be used (not JSON, empty,
 * a missing or invalid field, an ID that is not its prefix's name): not a backup pipectl can
 * restore. list, expire and status skip it with a warning instead of failing for the whole
 * repository; expire neither counts it towards retention nor removes it (a person decides). */
typedef struct pc_backup_damaged {
    char *id;      /* the name in its prefix backups/<ID>/ */
    char *problem; /* why, naming the file */
} pc_backup_damaged;

void pc_backup_damaged_free(pc_backup_damaged *list, size_t n);

/* Complete, readable backups, oldest first, in *out; damaged ones (see above), by name, in
 * *damaged when damaged and ndamaged are not NULL. Backups without pipectl.json (a create
 * in progress or killed) are neither. Fails only when the repository itself cannot be read
 * (PC_EUNAVAIL when it does not exist or cannot be reached). */
int pc_backup_scan(pc_repo *repo, pc_backup_info **out, size_t *n, pc_backup_damaged **damaged,
                   size_t *ndamaged, pc_error *err);

/* pc_backup_scan without the damaged list: damaged backups are skipped. */
int pc_backup_list(pc_repo *repo, pc_backup_info **out, size_t *n, pc_error *err);

/* PURE: which backups retention keeps. keep[i] set for list[i] (oldest first) when it is among
 * the newest keep_full (0 = no count limit) or younger than keep_days at now (0 = no window);
 * with both 0 everything is kept; the newest backup is always kept. */
void pc_backup_retention(const pc_backup_info *list, size_t n, int keep_full, int keep_days,
                         int64_t now, bool *keep);

typedef struct pc_expire_result {
    size_t backups_removed;
    size_t wal_removed;
    char *oldest_wal_kept;      /* first segment any kept backup needs (owned) */
    size_t tmp_removed;         /* stale temporaries of interrupted writers removed (wal-push's,
                                   pc_repo_sweep) */
    pc_backup_damaged *damaged; /* skipped, neither counted nor removed (owned) */
    size_t ndamaged;
} pc_expire_result;

/* A wal-push temporary (directory repository: wal/.NAME.zst.tmp-XXXXXX) not modified for this
 * long belongs to a push that was killed: a live push writes it continuously and renames it within seconds
 * (a 1 GiB segment compresses in a few). Removing one of a push that is somehow still alive is
 * safe too: its final link/rename then fails and PostgreSQL retries the segment. */
#define PC_WAL_TMP_STALE_S 3600

/* Removes backups retention does not keep and exactly the WAL segments older than the oldest
 * kept backup's start_wal (history files are always kept), counting only readable backups:
 * damaged ones (pc_backup_scan) are reported in res->damaged and left alone, and the WAL every
 * readable kept backup needs is never removed. An expired backup's pipectl.json is deleted
 * first (it leaves every listing), then its other objects. Also removes what interrupted writers
 * left that is older than PC_WAL_TMP_STALE_S at now (pc_repo_sweep: in a directory, only the
 * temporaries' exact name pattern), and the objects of backups without pipectl.json (what a
 * killed create or expire left: with the lock held none is running). Holds the lock. */
int pc_backup_expire(pc_repo *repo, int keep_full, int keep_days, int64_t now,
                     pc_expire_result *res, pc_error *err);
void pc_expire_result_free(pc_expire_result *res);

/* ---------- verify ---------- */

typedef struct pc_verify_report {
    char **problems;     /* one line each: "base.tar.zst: member base/5/1259: checksum mismatch",
                            "wal 000000010000000000000005: missing (gap)" */
    size_t nproblems;
    size_t files_checked;
    size_t wal_checked;
} pc_verify_report;

/* Checks every file of backup id against backup_manifest's checksums and every WAL segment from
 * the backup's start_wal to the newest archived one against its recorded SHA-256, and reports
 * gaps in the sequence by segment name. Returns 0 when intact, PC_EIO when rep has problems,
 * another code when verify itself could not run. */
int pc_backup_verify(pc_repo *repo, const char *id, pc_verify_report *rep, pc_error *err);
void pc_verify_report_free(pc_verify_report *rep);

/* ---------- restore ---------- */

typedef struct pc_restore_opts {
    pc_repo *repo;           /* the open repository */
    const char *to;          /* target data directory: must not exist or be empty */
    const char *backup_id;   /* NULL: the newest backup that ended before the target */
    const char *target_time; /* exactly one of target_time / target_lsn / target_xid / latest */
    const char *target_lsn;
    const char *target_xid;
    bool latest;
    const char *pipectl_exe; /* for restore_command = '<exe> wal-fetch --repository R %f %p', R
                                the repository's URI */
    /* what follows "wal-fetch" in restore_command instead of " --repository R": the options an
     * S3 or encrypted repository needs (pc_mf_archiving_args: words quoted, '%' doubled) */
    const char *fetch_args;
    bool start;              /* start the server and wait until recovery reached the target */
    const char *pg_bin;      /* directory of pg_ctl/postgres for start; NULL = PostgreSQL 15's */
    int port;                /* port for the started server (start only) */
    int64_t timeout_s;       /* bound for start (default 600) */
} pc_restore_opts;

typedef struct pc_restore_result {
    char *backup_id;   /* the backup used (owned) */
    char *proof;       /* start only: the server log line showing recovery stopped/completed */
    int port;          /* start only: the port the restored server listens on */
} pc_restore_result;

int pc_backup_restore(const pc_restore_opts *o, pc_backup_progress_fn progress, void *ctx,
                      pc_restore_result *res, pc_error *err);
void pc_restore_result_free(pc_restore_result *res);

/* ---------- schedule freshness (the cron expression is pkg/manifest's pc_cron) ---------- */

typedef enum pc_backup_freshness {
    PC_BACKUP_FRESH = 0, /* the newest backup started at or after the fire time that is due */
    PC_BACKUP_STALE = 1, /* a fire time more than grace_s ago has no backup started after it */
    PC_BACKUP_NONE = 2,  /* no backup at all */
} pc_backup_freshness;

/* PURE: is the newest backup (started at newest_start) as recent as the schedule wants at now?
 * The due fire time is the latest one at or before now - grace_s (*due, 0 when none): a backup
 * must have started at or after it. Returns a pc_backup_freshness. */
int pc_backup_schedule_check(const pc_cron *c, bool have_backup, int64_t newest_start,
                             int64_t now, int64_t grace_s, int64_t *due);

/* ---------- archiver state (archiver.c, libpq) ---------- */

typedef struct pc_archiver_stat {
    int64_t archived_count;
    char *last_archived_wal;    /* NULL: none since the statistics were reset */
    int64_t last_archived_time; /* unix seconds, 0 = never */
    int64_t failed_count;
    char *last_failed_wal;      /* NULL: no failure */
    int64_t last_failed_time;
    bool failing;               /* the last attempt failed: last_failed_time is newer than
                                   last_archived_time (or nothing was ever archived) */
    char *archive_mode;         /* SHOW archive_mode */
} pc_archiver_stat;

/* Reads pg_stat_archiver of the server at dsn (connect timeout timeout_s, 0 = libpq's).
 * PC_EUNAVAIL when it cannot connect; the message never holds the password. */
int pc_archiver_stat_read(const char *dsn, int timeout_s, pc_archiver_stat *out, pc_error *err);
void pc_archiver_stat_free(pc_archiver_stat *s); /* members only */

/* --- the backup schedule as a worker (scheduler.c) -------------------------------------------
 * Every contact with the world is one of these operations, so the policy (catch-up at start,
 * one backup per fire time, fire times that pass during a backup skipped as cron does, expire
 * after a successful backup only) is tested with a simulated clock. */
typedef struct pc_backup_sched_ops {
    int64_t (*now)(void *ctx);              /* unix seconds, UTC */
    int64_t (*mono_ms)(void *ctx);          /* a monotonic clock, ms */
    void (*sleep_ms)(void *ctx, long ms);
    /* the start time of the newest complete backup; *have false when there is none */
    int (*newest)(void *ctx, bool *have, int64_t *start, pc_error *err);
    int (*create)(void *ctx, const char *label, pc_backup_info *info, pc_error *err);
    int (*expire)(void *ctx, int keep_full, int keep_days, int64_t now, pc_expire_result *res,
                  pc_error *err);
    void *ctx;
} pc_backup_sched_ops;

typedef struct pc_backup_sched {
    const pc_cron *cron;          /* parsed backups.schedule */
    const char *schedule;         /* its text, for messages */
    const char *repository_uri;   /* for log lines */
    int keep_full, keep_days;     /* backups.retention (0 and 0: no expire) */
    pc_backup_sched_ops ops;
} pc_backup_sched;

/* Runs the schedule until env->stop (seen within a quarter second between backups; a backup in
 * progress runs to its end) or env->duration_ms. Logs through env->log, counts in env->stats
 * (records_in: backups started, records_out: completed, errors: failed backups and expires).
 * Fails only when the schedule never fires (PC_EINVAL). */
int pc_backup_sched_run(const pc_backup_sched *s, const pc_worker_env *env, pc_error *err);

#endif
