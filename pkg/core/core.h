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

/* Secrets. A libpq DSN (key=value form or postgresql:// URI) with its password replaced by
 * PC_REDACTED. Returns a new string (NULL on OOM). */
#define PC_REDACTED "<redacted>"
char *pc_redact_dsn(const char *dsn);
/* true for keys that hold secrets: password, passwd, token, secret, api_key, ... (case-insensitive) */
bool pc_is_secret_key(const char *key);

/* SHA-256 of data as 64 lowercase hex chars + NUL. */
void pc_sha256_hex(const void *data, size_t len, char out[65]);

/* Clocks: monotonic milliseconds (durations, deadlines) and wall-clock unix milliseconds. */
int64_t pc_mono_ms(void);
int64_t pc_wall_ms(void);
/* Sleeps ms milliseconds (less when a signal arrives). */
void pc_sleep_ms(long ms);
/* Unix seconds as "2026-12-06T03:00:00Z". */
void pc_iso_utc(int64_t t, char out[32]);

#endif
