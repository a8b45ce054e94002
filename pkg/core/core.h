/* core.h: errors, growable buffers, string helpers and redaction shared by every pipectl module.
 *
 * Error convention (after libgit2): functions return 0 or a negative PC_E* code and fill the
 * caller's pc_error with a message fit for a user. The first message set is kept; callers add
 * context with pc_error_prefix, never overwrite it. */
#ifndef PC_CORE_H
#define PC_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* mode_t, ssize_t */

enum {
    PC_OK = 0,
    PC_EINVAL = -1,      /* invalid input: manifest, arguments, plan file */
    PC_ENOTFOUND = -2,   /* object does not exist */
    PC_ECONFLICT = -3,   /* lock held, stale plan, name clash */
    PC_EUNAVAIL = -4,    /* server unreachable or timed out; retryable */
    PC_EREFUSED = -5,    /* server refused the request (permissions, policy) */
    PC_ENOMEM = -6,      /* out of memory */
    PC_EINTR = -7,       /* interrupted by a signal */
    PC_EIO = -8,         /* local file or repository I/O */
};

#define PC_ERROR_MSG_MAX 2048

typedef struct pc_error {
    int code;                     /* 0 when no error was set */
    char msg[PC_ERROR_MSG_MAX];   /* user-facing message, already redacted */
} pc_error;

/* Sets err (if err->code == 0, i.e. the first error wins) and returns code. err may be NULL. */
int pc_error_set(pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an existing message. */
void pc_error_prefix(pc_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pc_error_clear(pc_error *err);
const char *pc_code_name(int code);

/* Growable NUL-terminated byte buffer. */
typedef struct pc_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} pc_buf;

int pc_buf_append(pc_buf *b, const char *s, size_t n);
int pc_buf_puts(pc_buf *b, const char *s);
int pc_buf_printf(pc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pc_buf_vprintf(pc_buf *b, const char *fmt, va_list ap);
/* Hands the string to the caller (never NULL on success: "" for an empty buffer). */
/* Appends s[0..n) with control characters escaped (\n, \t, \r, \xNN: one problem stays one
 * line, and a value cannot forge a second "FILE:1:1:" line); with cut > 0, at most cut bytes
 * followed by "... (N bytes in all)". */
int pc_buf_escape(pc_buf *b, const char *s, size_t n, size_t cut);
/* Appends s as one word for /bin/sh: as is when it holds only [A-Za-z0-9/._+:@,=-] (and is not
 * empty) unless PC_SHELL_QUOTE, otherwise in single quotes (a ' written '\''). With PC_SHELL_PCT
 * every '%' is doubled, for commands PostgreSQL expands (%p, %f, %r) before the shell sees them.
 * 0 or PC_ENOMEM. */
#define PC_SHELL_PCT 1u
#define PC_SHELL_QUOTE 2u
int pc_buf_shell_word(pc_buf *b, const char *s, unsigned flags);
/* pc_buf_vprintf for messages about user input: every %s argument goes through pc_buf_escape
 * (cut as given, 0 = never). Supports the conversions messages use (d i u x X o c f g e p s,
 * length modifiers hh h l ll z j t, '*' precision on %s). */
int pc_buf_vprintf_safe(pc_buf *b, size_t cut, const char *fmt, va_list ap);
char *pc_buf_detach(pc_buf *b);
void pc_buf_free(pc_buf *b);

/* Ordered key/value list of owned strings (topic configs, query params, ...). */
typedef struct pc_kv {
    char *key;
    char *value;
} pc_kv;

typedef struct pc_kvlist {
    pc_kv *items;
    size_t n;
} pc_kvlist;

int pc_kvlist_add(pc_kvlist *l, const char *key, const char *value);
/* Replaces the value when key exists, else appends. */
int pc_kvlist_set(pc_kvlist *l, const char *key, const char *value);
const char *pc_kvlist_get(const pc_kvlist *l, const char *key);
void pc_kvlist_sort(pc_kvlist *l); /* by key, strcmp order */
int pc_kvlist_copy(pc_kvlist *dst, const pc_kvlist *src);
void pc_kvlist_free(pc_kvlist *l);

char *pc_strdup(const char *s);             /* NULL-safe strdup */
char *pc_strndup(const char *s, size_t n);
char *pc_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool pc_streq(const char *a, const char *b); /* NULL-safe */
size_t pc_levenshtein(const char *a, const char *b);

/* Secrets. There is one redaction function, pc_redact: every string that may hold a credential
 * (a libpq DSN in either form, a URL with user:password@, a library's error text, a log line)
 * passes through it before it is shown. It replaces, by PC_REDACTED,
 * - every secret value installed with pc_secrets_install (pc_scrub), then
 * - whatever stands where a credential stands (pc_secret_ranges): the value of a key naming a
 *   secret (pc_is_secret_key: password=, sslpassword=, token=..., key=value or ?query form,
 *   libpq-quoted or not, blanks or tabs around '='), and the password of scheme://user:pw@host
 *   (up to the reference's last '@', so a raw '/' or '@' in it is covered too; for http(s), a
 *   user name without a password is taken as a token: https://TOKEN@host).
 * Returns a new string (NULL on OOM, or when text is NULL). */
#define PC_REDACTED "<redacted>"
char *pc_redact(const char *text);
/* true for keys that hold secrets: password, passwd, token, secret, api_key, ... (case-insensitive) */
bool pc_is_secret_key(const char *key);

/* Calls fn(ctx, start, end) for each byte range of s[0..n) holding a credential, in order and
 * without overlap (what pc_redact replaces structurally). Quotes are outside the range. */
typedef void (*pc_secret_range_fn)(void *ctx, size_t start, size_t end);
void pc_secret_ranges(const char *s, size_t n, pc_secret_range_fn fn, void *ctx);

/* A set of secret values in every form they can take in what pipectl prints: as given,
 * percent-decoded (when it decodes), percent-encoded, JSON-escaped, escaped as in an error or a
 * quoted log value, libpq-quoted, blanks as spaces. items is NULL-terminated (when n > 0). */
typedef struct pc_secrets {
    char **items;
    size_t n;
    size_t cap;
} pc_secrets;
/* Adds value in all its forms; NULL and "" are ignored. 0 or PC_ENOMEM. */
int pc_secrets_add(pc_secrets *s, const char *value);
/* Adds every credential pc_secret_ranges finds in text (a DSN, a URL), and for a libpq-quoted
 * value its unquoted form. 0 or PC_ENOMEM. */
int pc_secrets_add_text(pc_secrets *s, const char *text);
/* The NULL-terminated list (borrowed; an empty list, never NULL). */
const char *const *pc_secrets_list(const pc_secrets *s);
/* Frees (and zeroes) what s holds; s itself is the caller's. */
void pc_secrets_dispose(pc_secrets *s);

/* text with every occurrence of every secret replaced by PC_REDACTED, the longest match first.
 * A secret shorter than PC_SCRUB_MIN bytes is replaced only where it stands alone (no letter or
 * digit next to it): replacing a 1-3 byte secret inside words would garble every message and,
 * by the holes it leaves in known words, reveal it; a secret that short gives no protection
 * anyway. New string (NULL on OOM); secrets may be NULL. */
#define PC_SCRUB_MIN 4
char *pc_scrub(const char *text, const char *const *secrets);
/* true when pc_scrub would change text (or fails). */
bool pc_has_secret(const char *text, const char *const *secrets);
/* The process's secrets (cmd/ installs the manifest's once, before any thread starts; the list
 * must outlive every use). pc_error_set, pc_error_prefix and pc_redact scrub with it. NULL:
 * none. */
void pc_secrets_install(const char *const *secrets);
const char *const *pc_secrets_installed(void);
/* RFC 3986 percent-decoding; NULL for a bad escape or %00 (as libpq refuses them) or OOM. */
char *pc_percent_decode(const char *s);

/* Hex and SHA-256 (hash.c): the one encoder and the one digest every module uses. */
#define PC_SHA256_HEX_LEN 64
/* data[0..len) as 2*len lowercase hex digits + NUL; out holds 2*len+1 bytes. */
void pc_hex_encode(const void *data, size_t len, char *out);
/* SHA-256 of data as 64 lowercase hex chars + NUL. */
void pc_sha256_hex(const void *data, size_t len, char out[PC_SHA256_HEX_LEN + 1]);
/* Incremental SHA-256 for streams (OpenSSL EVP underneath). new: 0, PC_ENOMEM, or PC_EIO when
 * OpenSSL refuses SHA-256. final writes the hex digest of everything updated since new (or the
 * previous final) and resets h for the next message. free(NULL) is harmless. */
typedef struct pc_sha256 pc_sha256;
int pc_sha256_new(pc_sha256 **out);
void pc_sha256_update(pc_sha256 *h, const void *data, size_t len);
void pc_sha256_final(pc_sha256 *h, char out[PC_SHA256_HEX_LEN + 1]);
void pc_sha256_free(pc_sha256 *h);

/* Durable files (durable.c): the one way pipectl writes a file that must survive a crash.
 * The bytes go to a temporary file in the destination's directory, DIR/.BASE.tmp-XXXXXX (six
 * letters or digits; `backup expire` recognises wal-push's by this shape), which is written in
 * full, fsync'd, closed, renamed (or linked) to its name, and the directory is fsync'd. On any
 * failure before the rename the temporary file is removed and no descriptor stays open; messages
 * read "cannot write PATH: STEP of FILE failed: strerror". A failure of the directory fsync
 * comes after the rename: the file is in place but not known to be durable (retrying is safe). */

/* Writes data[0..len) to path (replacing it) as above; the file is created with mode (umask
 * applies). 0 or PC_EINVAL (path has no file name), PC_ENOMEM, PC_EIO. */
int pc_durable_write(const char *path, const void *data, size_t len, mode_t mode, pc_error *err);

/* The same for a writer that streams: pc_durable_open creates the temporary file, the caller
 * writes through fd (itself or with pc_durable_append; fd is open for reading too, to check
 * what was written), then pc_durable_commit or pc_durable_abort. Abort may always be called
 * after open, also after commit or a failed open (it then does nothing), so a caller's `done:`
 * label needs only abort. */
typedef struct pc_durable {
    int fd;        /* the temporary file (O_RDWR), -1 once closed */
    char *path;    /* the final name */
    char *tmp;     /* the temporary name; NULL once renamed or removed */
    char *dir;     /* the directory of both, fsync'd by commit */
    int sys_errno; /* errno of the step that failed last (0: none) */
} pc_durable;
#define PC_DURABLE_INIT {.fd = -1}

int pc_durable_open(pc_durable *f, const char *path, mode_t mode, pc_error *err);
/* Writes all of data[0..len) at fd's position (retrying short writes and EINTR). On failure the
 * file stays open: abort it. */
int pc_durable_append(pc_durable *f, const void *data, size_t len, pc_error *err);
/* pc_durable_commit flags. */
enum {
    PC_DURABLE_REPLACE = 0,   /* rename(2): replaces whatever has the name */
    PC_DURABLE_NOREPLACE = 1, /* link(2) then unlink of the temporary name: never replaces; on a
                               * file system without hard links, a check then rename (not atomic
                               * against a concurrent writer). PC_ECONFLICT when path exists. */
};
/* fsync, close, rename or link, fsync of the directory. Afterwards fd is -1 and the temporary
 * file is gone whatever the result (abort is still allowed). */
int pc_durable_commit(pc_durable *f, int flags, pc_error *err);
/* Closes and removes the temporary file if there is one, frees what f holds; f is reusable. */
void pc_durable_abort(pc_durable *f);

/* fsync of a directory, so a rename or a new entry in it survives a crash (EINVAL, a file
 * system that cannot sync directories, is not an error). 0 or PC_EIO. */
int pc_fsync_dir(const char *dir, pc_error *err);
/* The directory part of path ("." without a slash, "/" for a top-level name); NULL on OOM. */
char *pc_path_dir(const char *path);

/* The system calls the durable helpers make, in one table so a unit test can make any of them
 * fail (pc_core_sys_set(&mine), then pc_core_sys_set(NULL) to restore pc_core_sys_default).
 * Swapping is not thread-safe: tests only, before any thread starts. A replacement close must
 * release the descriptor as Linux's does, even when it reports an error. */
typedef struct pc_core_sys {
    int (*open)(const char *path, int flags, mode_t mode);
    ssize_t (*write)(int fd, const void *buf, size_t len);
    int (*fsync)(int fd);
    int (*close)(int fd);
    int (*rename)(const char *from, const char *to);
    int (*link)(const char *from, const char *to);
    int (*unlink)(const char *path);
} pc_core_sys;
extern const pc_core_sys pc_core_sys_default;
void pc_core_sys_set(const pc_core_sys *sys);

/* Clocks: monotonic milliseconds (durations, deadlines) and wall-clock unix milliseconds. */
int64_t pc_mono_ms(void);
int64_t pc_wall_ms(void);
/* ---------- name index ----------
 * Lookup by name in O(log n) over elements that are not copied: the planner and the Kafka
 * adapter match thousands of declared topics against a cluster's thousands (a linear search
 * each was 1,000 x 5,000 strcmp per plan, most of apply's own CPU). Add every element, sort
 * once, then find; the index borrows names and elements, which must outlive it unchanged. */
typedef struct pc_index_entry {
    const char *name;
    const void *elem;
} pc_index_entry;

typedef struct pc_index {
    pc_index_entry *e;
    size_t n, cap;
    bool failed; /* an add ran out of memory: the index is unusable (pc_index_sort says so) */
} pc_index;

/* Adds elem under name (NULL names are ignored). Elements added earlier win on equal names. */
void pc_index_add(pc_index *ix, const char *name, const void *elem);
/* Adds the n elements of an array whose name is the `const char *` member at name_off
 * (offsetof(T, name); 0 for an array of strings). */
void pc_index_add_array(pc_index *ix, const void *base, size_t n, size_t size, size_t name_off);
/* Sorts the index for pc_index_find; PC_ENOMEM when an add failed. */
int pc_index_sort(pc_index *ix);
/* The element first added under name, or NULL. */
const void *pc_index_find(const pc_index *ix, const char *name);
void pc_index_free(pc_index *ix);

/* Sleeps ms milliseconds (less when a signal arrives). */
void pc_sleep_ms(long ms);
/* Unix seconds as "2026-12-06T03:00:00Z". */
void pc_iso_utc(int64_t t, char out[32]);
/* The proleptic Gregorian calendar in pure arithmetic (no time zone, no libc, any year; Howard
 * Hinnant's algorithms): days from 1970-01-01 to y-m-d, and back. */
int64_t pc_days_from_civil(int64_t y, int m, int d);
void pc_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* Reads a KEY=VALUE file of secrets (envfile.c) into out (pc_kvlist_set: a later line wins).
 * Refused when it is not a regular file, is a symbolic link, or is accessible by group or
 * others. Messages never hold a value. PC_ENOTFOUND, PC_EINVAL, PC_EIO, PC_ENOMEM. */
int pc_envfile_load(const char *path, pc_kvlist *out, pc_error *err);

#endif
