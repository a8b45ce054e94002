/* sink_int.h: private to pkg/sink. First the sink's pure parts (JSON path lookup, typed
 * conversion of one JSON value to the PostgreSQL text form of a column type, COPY text-format
 * escaping, one record -> one COPY line), exposed for unit tests: nothing there talks to a
 * server. Then the worker's state and what its three files share: sink.c (setup, Kafka clients
 * and callbacks, the worker loop), session.c (the PostgreSQL session: connect, recover, COPY,
 * offsets, commit; dead letters), batch.c (the batch being filled: read-ahead, chunks handed to
 * the converting threads and collected in order). */
#ifndef PC_SINK_INT_H
#define PC_SINK_INT_H
#if !defined(PC_INSIDE_SINK) && !defined(PC_WHITEBOX_TEST)
#error "sink_int.h is private to pkg/sink: include sink.h"
#endif

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "sink.h"

typedef enum pc_sink_type {
    PC_SINK_T_TEXT = 0, /* text, varchar(n), char(n), character varying(n): typmod1 = n or 0 */
    PC_SINK_T_INT2,
    PC_SINK_T_INT4,
    PC_SINK_T_INT8,
    PC_SINK_T_NUMERIC, /* typmod1 = precision (0 = unconstrained), typmod2 = scale */
    PC_SINK_T_FLOAT4,
    PC_SINK_T_FLOAT8,
    PC_SINK_T_BOOL,
    PC_SINK_T_UUID,
    PC_SINK_T_TIMESTAMPTZ,
    PC_SINK_T_TIMESTAMP,
    PC_SINK_T_DATE,
    PC_SINK_T_JSON, /* json and jsonb */
    PC_SINK_T_OTHER /* any other PostgreSQL type: scalars passed as text, PostgreSQL checks them */
} pc_sink_type;

typedef struct pc_sink_col {
    const char *name; /* borrowed from the manifest */
    const char *path; /* dotted JSON path; numeric segments index arrays */
    const char *type_name;
    pc_sink_type type;
    int typmod1;
    int typmod2;
    bool nullable;
    bool primary_key;
} pc_sink_col;

/* Parses a manifest column type ("numeric(10,2)", "varchar(40)", "timestamp with time zone"). */
pc_sink_type pc_sink_type_parse(const char *type, int *typmod1, int *typmod2);

/* One JSON value as the converters see it, whichever parser found it. */
typedef enum pc_sink_kind {
    PC_SINK_V_NULL = 0,
    PC_SINK_V_BOOL,
    PC_SINK_V_INT,
    PC_SINK_V_REAL,
    PC_SINK_V_STRING,
    PC_SINK_V_JSON /* an object or an array */
} pc_sink_kind;

typedef struct pc_sink_val {
    pc_sink_kind kind;
    bool b;      /* BOOL */
    long long i; /* INT */
    double d;    /* REAL */
    /* STRING: the decoded bytes (may hold NULs); INT, REAL, JSON: the value as compact JSON */
    const char *s;
    size_t n;
} pc_sink_val;

/* Converts v (NULL: the path is missing) into out (cleared first) as PostgreSQL's text input
 * form of col's type. *is_null is set for JSON null / missing. Returns 0, or PC_EINVAL with
 * *reason (owned by the caller) naming the column, path, a value sample and the type. A NULL
 * for a NOT NULL column is an error too. */
int pc_sink_convert_val(const pc_sink_val *v, const pc_sink_col *col, pc_buf *out, bool *is_null,
                        char **reason);

/* The same, appending to out (left as it was, but for what a failed conversion appended). */
int pc_sink_convert_append(const pc_sink_val *v, const pc_sink_col *col, pc_buf *out,
                           bool *is_null, char **reason);
/* true when every text the converters give for type t is free of what COPY's text format
 * escapes (digits, signs, hex, ISO 8601 dates...): it goes into the line as it is. */
bool pc_sink_type_copy_safe(pc_sink_type t);

/* COPY's binary format. pc_sink_type_binary: col's values have a binary form here (every type
 * but PC_SINK_T_OTHER). pc_sink_bin_field appends the field (length, then the bytes of the
 * type's binary input) for text s[0..n), the output of the text converter above for col: both
 * formats load the same rows. Returns 0, PC_EINVAL with *reason (a float out of range), or
 * PC_ENOMEM. */
bool pc_sink_type_binary(const pc_sink_col *col);
/* Appends the low bytes (1-8) of v to out, most significant first (network order). */
int pc_sink_put_be(pc_buf *out, uint64_t v, int bytes);
int pc_sink_bin_field(const pc_sink_col *col, const char *s, size_t n, pc_buf *out,
                      char **reason);

/* The same for the value at col->path in a jansson tree (the sink itself parses with yajl, see
 * pc_sink_map; this form serves tests and tools). */
const json_t *pc_sink_json_get(const json_t *root, const char *path);
int pc_sink_convert(const json_t *root, const pc_sink_col *col, pc_buf *out, bool *is_null,
                    char **reason);

/* Appends s[0..n) to line escaped for COPY ... FROM STDIN text format. */
int pc_sink_copy_escape(pc_buf *line, const char *s, size_t n);

/* One record -> one COPY line, in one pass of yajl's event parser (record.c): the columns'
 * paths are compiled once into a tree of path segments; each value the parser reports is
 * matched against it as it goes and only the mapped ones are kept (objects and arrays as their
 * compacted byte range of the record). No tree of the record is built. Paths behave as
 * pc_sink_json_get's: numeric segments index arrays, a repeated key's last value wins. A map
 * is used by one thread at a time. */
typedef struct pc_sink_map pc_sink_map;

/* cols is borrowed and must outlive the map. Returns 0 or PC_ENOMEM. */
int pc_sink_map_new(pc_sink_map **out, const pc_sink_col *cols, size_t ncols);
void pc_sink_map_free(pc_sink_map *m);

/* Selects the format pc_sink_map_line writes: COPY text lines (the default) or binary tuples. */
void pc_sink_map_set_binary(pc_sink_map *m, bool binary);

/* One record (a Kafka value, payload may be NULL for a tombstone) -> one COPY text line with
 * the mapped columns in order, plus "\t<seq>" when seq >= 0 (the upsert staging table's
 * arrival order), appended to line; with pc_sink_map_set_binary, one binary tuple instead (the
 * same fields, seq as a bigint). Returns 0 with the line appended, or 0 with *reason set
 * (owned by the caller) and line unchanged when the record cannot be loaded, or PC_ENOMEM. */
int pc_sink_map_line(pc_sink_map *m, const void *payload, size_t len, long long seq,
                     pc_buf *line, char **reason);

/* The same without a map made beforehand (one is made for the call); val is unused. */
int pc_sink_record_line(const void *payload, size_t len, const pc_sink_col *cols, size_t ncols,
                        long long seq, pc_buf *line, pc_buf *val, char **reason);

/* --- converting on threads ---------------------------------------------------------------------
 * The sink's own thread reads Kafka and talks to PostgreSQL; converting records (the JSON
 * parsing) is the CPU-heavy part and runs on a small pool of threads, a chunk of consecutive
 * records at a time. Chunks are submitted and collected in order, so rows keep Kafka's order. */
#define PC_SINK_CHUNK 256

typedef struct pc_sink_chunk {
    /* input, set by the submitter */
    size_t n;                           /* records in the chunk */
    long long seq0;                     /* seq of record 0 (seq0 + i for record i), or -1 */
    bool binary;                        /* COPY binary tuples instead of text lines */
    const void *payload[PC_SINK_CHUNK]; /* borrowed: the Kafka messages outlive the chunk */
    size_t plen[PC_SINK_CHUNK];
    /* output, valid once pc_sink_pool_wait says done */
    pc_buf out;                 /* the loadable records' COPY lines, in order */
    size_t len[PC_SINK_CHUNK];  /* record i's line length in out; 0 when it cannot be loaded */
    char *reason[PC_SINK_CHUNK]; /* why record i cannot be loaded (owned), or NULL */
    int rc;                     /* 0 or PC_ENOMEM */
    /* the pool's */
    bool done;
    struct pc_sink_chunk *next;
    /* the submitter's own (the pool never touches them): its list, and where record 0 is */
    struct pc_sink_chunk *line_next;
    size_t line_first;
} pc_sink_chunk;

typedef struct pc_sink_pool pc_sink_pool;

/* Starts nthreads converting threads (at least 1) for the given columns (borrowed). */
int pc_sink_pool_new(pc_sink_pool **out, size_t nthreads, const pc_sink_col *cols, size_t ncols,
                     pc_error *err);
/* Queues c (its input filled in, its output reset here). */
void pc_sink_pool_submit(pc_sink_pool *p, pc_sink_chunk *c);
/* true once c is converted; with wait, blocks until it is. */
bool pc_sink_pool_done(pc_sink_pool *p, pc_sink_chunk *c, bool wait);
/* Frees a chunk's reasons and empties it for reuse (keeps its buffer). */
void pc_sink_chunk_reset(pc_sink_chunk *c);
/* Stops and joins the threads; every submitted chunk must have been waited for. */
void pc_sink_pool_free(pc_sink_pool *p);

/* --- the worker ---------------------------------------------------------------------------------
 * One pc_sink_state per pc_sink_run, used by the worker's own thread only (the converting threads
 * see chunks, never the state). */

typedef struct pc_sink_part {
    bool assigned;
    int64_t stored;        /* next_offset stored in PostgreSQL, -1 = no row yet */
    int64_t next_expected; /* next offset we accept (drops re-deliveries) */
    int64_t batch_next;    /* last offset in the batch + 1, -1 = partition not in the batch */
} pc_sink_part;

/* One partition of the topic for --until-caught-up: its watermarks at start, and the next
 * offset the group had committed (pipectl.sink_offsets) then and at the last comparison; -1 =
 * no row yet, i.e. nothing committed (0). */
typedef struct pc_sink_target {
    int64_t lo, hi;
    int64_t start;
    int64_t committed;
} pc_sink_target;

typedef struct pc_sink_row {
    size_t msg; /* index into msgs */
    size_t off; /* line in copy buffer */
    size_t len;
} pc_sink_row;

typedef struct pc_sink_state {
    const pc_manifest *m;
    const pc_mf_sink *sink;
    const pc_worker_env *env;
    char *qtable;  /* "schema"."table" */
    char *tname;   /* schema.table as written */
    pc_sink_col *cols;
    size_t ncols;
    char *collist; /* "c1","c2" */
    char *upsert_sql;
    char *staging_sql;
    bool upsert;
    /* COPY in binary format (decided at every connect, see pc_sink_pg_connect): PostgreSQL
     * then skips parsing text for every field (a fifth of its COPY time for randomuser rows).
     * fmt_changed: a reconnect changed the format while records converted in the other one
     * were held; that batch is re-read instead of committed. */
    bool binary;
    bool fmt_changed;
    PGconn *pg;
    rd_kafka_t *rk;
    rd_kafka_t *dlq;
    rd_kafka_topic_partition_list_t *assignment;
    pc_sink_part *parts;
    size_t nparts;
    rd_kafka_message_t **msgs;
    size_t nmsgs, capmsgs;
    pc_sink_row *rows;
    size_t nrows, caprows;
    pc_buf copy;
    /* Converting: records join the batch in msgs at once and are converted on the pool's
     * threads a chunk at a time; chunks are collected in order into rows and copy (or dead
     * letters). fill is the chunk being filled, flight the submitted ones (oldest first). */
    pc_sink_pool *pool;
    pc_sink_chunk *fill;
    pc_sink_chunk *flight, *flight_tail;
    pc_sink_chunk *spare;
    size_t collected;  /* msgs[0..collected) are rows or dead letters already */
    pc_error stop_err; /* a record that cannot be loaded and no dead_letter topic: stop */
    /* Read-ahead: right before a full batch commits, the records already waiting in Kafka are
     * taken (msgs[nbatch..nmsgs)) and handed to the converting threads, which then work while
     * PostgreSQL finishes the COPY, the upsert and the COMMIT. They are not part of the batch:
     * no offsets, no rows; once the batch commits they become the next one, and any failure
     * drops them with the batch (they are re-read from the stored offsets). */
    bool ahead;
    size_t nbatch;
    long long seq_next; /* upsert arrival order: grows for the sink's whole run */
    /* Streaming: once a batch holds SINK_STREAM_BYTES (batch.c) of rows, its transaction and COPY are
     * opened and rows are sent while the batch still fills, so PostgreSQL loads them while this
     * process converts the next records. copy[0..sent) is in the open COPY. */
    bool streaming;
    bool stream_off; /* streaming failed for this batch: pc_sink_commit_batch sends it all at
                      * the end */
    size_t sent;
    size_t batch_dlq; /* dead letters produced for this batch */
    int64_t deadline;
    /* When the commit that ended the previous batch began (0: none pending). Records that
     * arrive while a batch commits have been waiting since then, so the next batch's max_wait
     * counts from there: at a steady rate the sink commits again as soon as it can instead of
     * adding a full window after every commit (latency about two commits, not a window plus
     * two commits). */
    int64_t window_start;
    int dlq_failed;
    char dlq_errmsg[256];
    bool dlq_denied; /* a dead letter was refused for want of an ACL */
    uint64_t done; /* rows + dead letters committed by this run */
    unsigned rnd;
    int consecutive; /* failed commits in a row */
    /* --until-caught-up (caughtup.c): every partition of the topic at start, and when the
     * group's stored offsets were last compared with it */
    bool until;
    bool caught_up;
    pc_sink_target *targets;
    size_t ntargets;
    uint64_t checked_done; /* s->done at the last comparison */
    int64_t next_check;    /* pc_mono_ms of the next comparison while nothing commits */
} pc_sink_state;

/* sink.c */
void pc_sink_log(pc_sink_state *s, pc_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sleeps ms in short slices; returns early when asked to stop. */
void pc_sink_nap(pc_sink_state *s, int ms);
/* A consumer error that no retry cures (a missing ACL): PC_EREFUSED with err set; 0 otherwise. */
int pc_sink_consumer_denied(pc_sink_state *s, const rd_kafka_message_t *msg, pc_error *err);

static inline bool pc_sink_stopping(const pc_sink_state *s)
{
    return s->env->stop && *s->env->stop;
}

/* session.c: the PostgreSQL session */
int pc_sink_pg_connect(pc_sink_state *s, pc_error *err);
int pc_sink_pg_recover(pc_sink_state *s, pc_error *err);
void pc_sink_pg_drop(pc_sink_state *s);
int pc_sink_read_offsets(pc_sink_state *s, rd_kafka_topic_partition_list_t *list, pc_error *err);
void pc_sink_describe_offsets(const rd_kafka_topic_partition_list_t *l, char *out, size_t n);
int pc_sink_dead_letter(pc_sink_state *s, const rd_kafka_message_t *msg, const char *reason,
                        pc_error *err);
void pc_sink_stream_rows(pc_sink_state *s);
void pc_sink_stream_abort(pc_sink_state *s);
int pc_sink_commit_batch(pc_sink_state *s, pc_error *err);
int pc_sink_commit_or_recover(pc_sink_state *s, pc_error *err);

/* The next offsets stored for this sink and topic (the whole group's), next[p] for partition p
 * < n (-1: no row). */
int pc_sink_group_offsets(pc_sink_state *s, int64_t *next, size_t n, pc_error *err);

/* caughtup.c: --until-caught-up */
/* Reads every partition's watermarks (librdkafka, bounded) and the group's offsets into
 * s->targets. */
int pc_sink_targets_read(pc_sink_state *s, pc_error *err);
/* Compares the group's stored offsets with the targets: *caught when each partition is done. */
int pc_sink_caught_up(pc_sink_state *s, bool *caught, pc_error *err);
/* The backlog at start and what of it is committed now, from the last comparison. */
void pc_sink_backlog(const pc_sink_state *s, uint64_t *backlog, uint64_t *drained);
/* "300 of 1000 records committed (partition committed/high watermark: 0:100/400, ...)". */
void pc_sink_describe_progress(const pc_sink_state *s, char *out, size_t n);

/* batch.c: the batch being filled */
/* Partition p's state, grown on demand; NULL when p < 0 or out of memory. */
pc_sink_part *pc_sink_partition(pc_sink_state *s, int32_t p);
void pc_sink_batch_discard(pc_sink_state *s);
void pc_sink_batch_promote(pc_sink_state *s);
void pc_sink_chunk_submit(pc_sink_state *s);
int pc_sink_chunks_collect(pc_sink_state *s, bool wait, pc_error *err);
int pc_sink_take_message(pc_sink_state *s, rd_kafka_message_t *msg, pc_error *err);
int pc_sink_read_ahead(pc_sink_state *s, size_t batch_max, pc_error *err);

#endif
