/* sink.c: the Kafka -> PostgreSQL sink worker.
 *
 * Exactly once rests on one rule: a record's row and the partition's next offset are written in
 * the same PostgreSQL transaction, and consumption always restarts from the offsets stored in
 * PostgreSQL (pipectl.sink_offsets), never from Kafka's committed offsets (we still commit those,
 * after PostgreSQL, so lag tools see progress).
 *
 * Assignment strategy: "range" (eager). On revoke we first try to commit the batch in progress
 * (we still own every partition at that moment); if that commit fails the batch is discarded,
 * which is equally correct because its offsets never reached PostgreSQL, so whoever owns the
 * partitions next re-reads those records. On assign we read the stored offsets and assign at
 * them (earliest when there is no row yet).
 *
 * Fencing: every offsets update is conditional on the value we last read (UPDATE ... WHERE
 * next_offset = <what we started from>, or INSERT ... ON CONFLICT DO NOTHING for a new row). A
 * member that lost its partitions without noticing (stalled past the session timeout) therefore
 * cannot commit a stale batch: its transaction rolls back and it re-reads the offsets. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sink.h"
#include "sink_int.h"
#include "kafka.h"
#include "postgres.h"

#define SINK_MAX_BACKOFF_MS 5000
#define SINK_DLQ_FLUSH_MS 30000
#define SINK_STREAM_BYTES (64 * 1024)
#define SINK_DRAIN_CONNECT_MS 2000

typedef struct part_state {
    bool assigned;
    int64_t stored;        /* next_offset stored in PostgreSQL, -1 = no row yet */
    int64_t next_expected; /* next offset we accept (drops re-deliveries) */
    int64_t batch_next;    /* last offset in the batch + 1, -1 = partition not in the batch */
} part_state;

typedef struct row_ref {
    size_t msg; /* index into msgs */
    size_t off; /* line in copy buffer */
    size_t len;
} row_ref;

typedef struct sink_state {
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
    PGconn *pg;
    rd_kafka_t *rk;
    rd_kafka_t *dlq;
    rd_kafka_topic_partition_list_t *assignment;
    part_state *parts;
    size_t nparts;
    rd_kafka_message_t **msgs;
    size_t nmsgs, capmsgs;
    row_ref *rows;
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
    /* Streaming: once a batch holds SINK_STREAM_BYTES of rows, its transaction and COPY are
     * opened and rows are sent while the batch still fills, so PostgreSQL loads them while this
     * process converts the next records. copy[0..sent) is in the open COPY. */
    bool streaming;
    bool stream_off; /* streaming failed for this batch: commit_batch sends it all at the end */
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
} sink_state;

static void slog(sink_state *s, pc_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void slog(sink_state *s, pc_log_level lvl, const char *fmt, ...)
{
    if (!s->env->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->env->log(s->env->log_ctx, lvl, s->env->name ? s->env->name : s->sink->name, msg, NULL);
}

static bool stopping(const sink_state *s)
{
    return s->env->stop && *s->env->stop;
}

/* Sleeps ms in short slices; returns early when asked to stop. */
static void nap(sink_state *s, int ms)
{
    int64_t end = pc_mono_ms() + ms;
    while (!stopping(s)) {
        int64_t left = end - pc_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts = {0, (long)(left < 50 ? left : 50) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static char *quote_ident(const char *name)
{
    pc_buf b = {0};
    pc_buf_puts(&b, "\"");
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            pc_buf_puts(&b, "\"\"");
        else
            pc_buf_append(&b, p, 1);
    }
    pc_buf_puts(&b, "\"");
    return pc_buf_detach(&b);
}

/* --- PostgreSQL ------------------------------------------------------------------------------ */

static bool pg_conn_lost(PGconn *c, const PGresult *r)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return true;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st)
        return r == NULL;
    return !strncmp(st, "08", 2) || !strcmp(st, "57P01") || !strcmp(st, "57P02") ||
           !strcmp(st, "57P03");
}

static void pg_msg(PGconn *c, const PGresult *r, char *out, size_t n)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "no connection";
    snprintf(out, n, "%s", m);
    for (char *p = out; *p; p++) /* one line: for logs and the dead-letter header */
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    size_t l = strlen(out);
    while (l && (out[l - 1] == '\n' || out[l - 1] == ' '))
        out[--l] = '\0';
}

/* Runs one command. Returns 0, PC_EUNAVAIL when the connection is gone (or shutting down), PC_EIO
 * for any other error (message in err). */
static int pg_exec_params(sink_state *s, const char *sql, int n, const char *const *params,
                          PGresult **out, pc_error *err)
{
    if (out)
        *out = NULL;
    if (!s->pg)
        return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: not connected");
    PGresult *r = n ? PQexecParams(s->pg, sql, n, NULL, params, NULL, NULL, 0)
                    : PQexec(s->pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = r;
        else
            PQclear(r);
        return 0;
    }
    char msg[512];
    pg_msg(s->pg, r, msg, sizeof msg);
    int code = pg_conn_lost(s->pg, r) ? PC_EUNAVAIL : PC_EIO;
    PQclear(r);
    return pc_error_set(err, code, "PostgreSQL: %s", msg);
}

static int pg_exec(sink_state *s, const char *sql, pc_error *err)
{
    return pg_exec_params(s, sql, 0, NULL, NULL, err);
}

static void pg_drop(sink_state *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    s->streaming = false;
    s->sent = 0;
}

static void pg_notice(void *arg, const char *message)
{
    (void)arg; /* NOTICEs ("schema already exists, skipping") are not for the user */
    (void)message;
}

/* Connects through pc_pg_connect (postgres.h: the DSN's own settings win, connect_timeout 10 s
 * unless it sets one, keepalives). While the worker runs, a stop abandons the attempt at once
 * (PC_EINTR): SIGTERM never waits on a server that does not answer. Once it is stopping (the
 * drain commits the batch in progress), an attempt gets at most SINK_DRAIN_CONNECT_MS. */
static int pg_connect(sink_state *s, pc_error *err)
{
    int rc = 0;
    PGresult *r = NULL;
    char app[128];
    pg_drop(s);
    snprintf(app, sizeof app, "pipectl run/sink %s", s->sink->name);
    pc_pg_connect_opts o = {.application_name = app, .stop = s->env->stop};
    if (stopping(s)) {
        o.stop = NULL;
        o.deadline_ms = pc_mono_ms() + SINK_DRAIN_CONNECT_MS;
    }
    if ((rc = pc_pg_connect(&s->pg, s->m->pg_dsn, &o, err))) {
        /* A refused login is retried like an unreachable server, as it always was here: the
         * worker keeps trying (logging why) until someone fixes pg_hba.conf or the role. */
        if (rc == PC_EREFUSED && err)
            err->code = rc = PC_EUNAVAIL;
        goto done;
    }
    PQsetNoticeProcessor(s->pg, pg_notice, NULL);
    /* two sinks may start together: serialise the CREATE ... IF NOT EXISTS */
    if ((rc = pg_exec(s, "BEGIN", err)) ||
        (rc = pg_exec(s, "SELECT pg_advisory_xact_lock(hashtext('pipectl.sink_offsets'))", err)) ||
        (rc = pg_exec(s, "CREATE SCHEMA IF NOT EXISTS pipectl", err)) ||
        (rc = pg_exec(s,
                      "CREATE TABLE IF NOT EXISTS pipectl.sink_offsets (sink text NOT NULL, "
                      "topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL, "
                      "updated_at timestamptz NOT NULL DEFAULT now(), "
                      "PRIMARY KEY (sink, topic, partition))",
                      err)) ||
        (rc = pg_exec(s, "COMMIT", err))) {
        pc_error_prefix(err, "creating pipectl.sink_offsets");
        goto done;
    }
    const char *p[1] = {s->qtable};
    if ((rc = pg_exec_params(s, "SELECT to_regclass($1) IS NOT NULL", 1, p, &r, err)))
        goto done;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "sink %s: table %s does not exist in PostgreSQL: run `pipectl apply` "
                          "to create it",
                          s->sink->name, s->tname);
        goto done;
    }
    if (s->upsert && (rc = pg_exec(s, s->staging_sql, err)))
        pc_error_prefix(err, "creating the upsert staging table for %s", s->tname);
done:
    PQclear(r);
    if (rc && rc != PC_ENOTFOUND)
        pg_drop(s);
    return rc;
}

/* Reconnects with exponential backoff and jitter until it works or the worker is stopped. */
static int pg_recover(sink_state *s, pc_error *err)
{
    int backoff = 200;
    for (;;) {
        pc_error e = {0};
        int rc = pg_connect(s, &e);
        if (rc == 0)
            return 0;
        if (rc == PC_ENOTFOUND || rc == PC_EINTR) { /* EINTR: stopped while connecting */
            pc_error_set(err, rc, "%s", e.msg);
            return rc;
        }
        atomic_fetch_add(&s->env->stats->errors, 1);
        slog(s, PC_LOG_WARN, "%s; retrying in %d ms", e.msg, backoff);
        nap(s, backoff + (int)(rand_r(&s->rnd) % (unsigned)(backoff / 4 + 1)));
        if (stopping(s))
            return pc_error_set(err, PC_EUNAVAIL, "%s (stopped while retrying)", e.msg);
        backoff = backoff * 2 > SINK_MAX_BACKOFF_MS ? SINK_MAX_BACKOFF_MS : backoff * 2;
    }
}

static part_state *part(sink_state *s, int32_t p)
{
    if (p < 0)
        return NULL;
    if ((size_t)p >= s->nparts) {
        size_t n = (size_t)p + 8;
        part_state *np = realloc(s->parts, n * sizeof *np);
        if (!np)
            return NULL;
        for (size_t i = s->nparts; i < n; i++)
            np[i] = (part_state){false, -1, 0, -1};
        s->parts = np;
        s->nparts = n;
    }
    return &s->parts[p];
}

/* Reads the stored offsets for the partitions in list and sets list's offsets (BEGINNING when
 * none); updates our partition state. */
static int read_offsets(sink_state *s, rd_kafka_topic_partition_list_t *list, pc_error *err)
{
    PGresult *r = NULL;
    const char *p[2] = {s->sink->name, s->sink->topic};
    int rc = pg_exec_params(s,
                            "SELECT partition, next_offset FROM pipectl.sink_offsets "
                            "WHERE sink = $1 AND topic = $2",
                            2, p, &r, err);
    if (rc)
        return rc;
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t stored = -1;
        for (int k = 0; k < PQntuples(r); k++)
            if (atoi(PQgetvalue(r, k, 0)) == tp->partition)
                stored = strtoll(PQgetvalue(r, k, 1), NULL, 10);
        tp->offset = stored >= 0 ? stored : RD_KAFKA_OFFSET_BEGINNING;
        part_state *ps = part(s, tp->partition);
        if (!ps) {
            PQclear(r);
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        ps->assigned = true;
        ps->stored = stored;
        ps->next_expected = stored >= 0 ? stored : 0;
        ps->batch_next = -1;
    }
    PQclear(r);
    return 0;
}

static void describe_list(const rd_kafka_topic_partition_list_t *l, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; l && i < l->cnt && used + 32 < n; i++) {
        int64_t o = l->elems[i].offset;
        if (o >= 0)
            used += (size_t)snprintf(out + used, n - used, "%s%d@%" PRId64, i ? "," : "",
                                     l->elems[i].partition, o);
        else
            used += (size_t)snprintf(out + used, n - used, "%s%d@earliest", i ? "," : "",
                                     l->elems[i].partition);
    }
}

/* --- batch ------------------------------------------------------------------------------------ */

static void stream_abort(sink_state *s);
static void stream_rows(sink_state *s);
static void batch_promote(sink_state *s);
static void chunks_cancel(sink_state *s);
static int chunks_collect(sink_state *s, bool wait, pc_error *err);

static void batch_discard(sink_state *s)
{
    if (s->streaming)
        stream_abort(s);
    s->stream_off = false;
    chunks_cancel(s); /* the converting threads read the messages: wait for them first */
    s->collected = 0;
    s->ahead = false;
    for (size_t i = 0; i < s->nmsgs; i++)
        rd_kafka_message_destroy(s->msgs[i]);
    s->nmsgs = 0;
    s->nrows = 0;
    s->copy.len = 0;
    s->batch_dlq = 0;
    for (size_t i = 0; i < s->nparts; i++)
        s->parts[i].batch_next = -1;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    sink_state *s = opaque;
    if (msg->err) {
        s->dlq_failed++;
        s->dlq_denied |= msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                         msg->err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
        snprintf(s->dlq_errmsg, sizeof s->dlq_errmsg, "%s", rd_kafka_err2str(msg->err));
    }
}

/* Queues msg to the dead-letter topic with the reason and source coordinates in headers. */
static int dead_letter(sink_state *s, const rd_kafka_message_t *msg, const char *reason,
                       pc_error *err)
{
    char part_s[16], off_s[24];
    snprintf(part_s, sizeof part_s, "%" PRId32, msg->partition);
    snprintf(off_s, sizeof off_s, "%" PRId64, msg->offset);
    for (int tries = 0;; tries++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s->dlq, RD_KAFKA_V_TOPIC(s->sink->dead_letter),
            RD_KAFKA_V_KEY(msg->key, msg->key_len), RD_KAFKA_V_VALUE(msg->payload, msg->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("pipectl.reason", reason, -1),
            RD_KAFKA_V_HEADER("pipectl.source.topic", s->sink->topic, -1),
            RD_KAFKA_V_HEADER("pipectl.source.partition", part_s, -1),
            RD_KAFKA_V_HEADER("pipectl.source.offset", off_s, -1), RD_KAFKA_V_END);
        if (!e)
            break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && tries < 600) {
            rd_kafka_poll(s->dlq, 100);
            continue;
        }
        return pc_error_set(err, PC_EUNAVAIL, "Kafka: cannot queue a dead letter to topic %s: %s",
                            s->sink->dead_letter, rd_kafka_err2str(e));
    }
    s->batch_dlq++;
    rd_kafka_poll(s->dlq, 0);
    return 0;
}

/* --- writing a batch -------------------------------------------------------------------------- */

/* COPY in three steps, so that a batch can be streamed while it fills (see sink_state). With
 * begin, the transaction is opened in the same round trip ("BEGIN; COPY ...": libpq returns
 * once the server is in COPY mode). */
static int copy_begin(sink_state *s, bool begin, pc_error *err)
{
    const char *b = begin ? "BEGIN; " : "";
    char *sql = s->upsert
                    ? pc_asprintf("%sCOPY pc_sink_staging (%s, pc_seq) FROM STDIN", b, s->collist)
                    : pc_asprintf("%sCOPY %s (%s) FROM STDIN", b, s->qtable, s->collist);
    if (!sql)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    PGresult *r = PQexec(s->pg, sql);
    free(sql);
    if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
        char msg[512];
        pg_msg(s->pg, r, msg, sizeof msg);
        int code = pg_conn_lost(s->pg, r) ? PC_EUNAVAIL : PC_EIO;
        PQclear(r);
        return pc_error_set(err, code, "PostgreSQL: %s", msg);
    }
    PQclear(r);
    return 0;
}

static int copy_put(sink_state *s, const char *data, size_t len, pc_error *err)
{
    const size_t chunk = 1 << 16;
    for (size_t i = 0; i < len; i += chunk) {
        if (PQputCopyData(s->pg, data + i, (int)(len - i < chunk ? len - i : chunk)) != 1) {
            char msg[512];
            pg_msg(s->pg, NULL, msg, sizeof msg);
            return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: COPY: %s", msg);
        }
    }
    return 0;
}

/* Ends the COPY (aborted with abort_msg when not NULL) and collects its result; the connection
 * is always out of COPY mode afterwards (or lost). */
static int copy_end(sink_state *s, const char *abort_msg, pc_error *err)
{
    char msg[512];
    int ok = PQputCopyEnd(s->pg, abort_msg);
    int rc = 0;
    PGresult *r;
    while ((r = PQgetResult(s->pg)) != NULL) {
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            /* the end could not be sent (out of memory): the connection is stuck in COPY */
            PQclear(r);
            pg_msg(s->pg, NULL, msg, sizeof msg);
            return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: ending COPY: %s", msg);
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc) {
            pg_msg(s->pg, r, msg, sizeof msg);
            rc = pc_error_set(err, pg_conn_lost(s->pg, r) ? PC_EUNAVAIL : PC_EIO,
                              "PostgreSQL: %s", msg);
        }
        PQclear(r);
        if (PQstatus(s->pg) != CONNECTION_OK)
            break;
    }
    if (!rc && (ok != 1 || PQstatus(s->pg) != CONNECTION_OK)) {
        pg_msg(s->pg, NULL, msg, sizeof msg);
        rc = pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: COPY: %s", msg);
    }
    return rc;
}

/* Upsert mode: staging table -> target table (the staging table empties itself at COMMIT). */
static int after_copy(sink_state *s, pc_error *err)
{
    return s->upsert ? pg_exec(s, s->upsert_sql, err) : 0;
}

static void rollback(sink_state *s)
{
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK) {
        PGresult *r = PQexec(s->pg, "ROLLBACK");
        PQclear(r);
    }
}

/* Sends the rows converted since the last call into the batch's open COPY, opening the
 * transaction and the COPY first. On any failure the stream is given up for this batch (and
 * rolled back): commit_batch then writes the whole batch the ordinary way, which reports or
 * recovers from the error. */
static void stream_rows(sink_state *s)
{
    pc_error e = {0};
    int rc = 0;
    if (!s->pg || s->stream_off || s->copy.len <= s->sent)
        return;
    if (!s->streaming) {
        if ((rc = copy_begin(s, true, &e))) {
            rollback(s);
            goto off;
        }
        s->streaming = true;
        s->sent = 0;
    }
    if ((rc = copy_put(s, s->copy.data + s->sent, s->copy.len - s->sent, &e))) {
        stream_abort(s);
        goto off;
    }
    s->sent = s->copy.len;
    return;
off:
    s->stream_off = true;
    slog(s, PC_LOG_DEBUG, "streaming the batch given up (%s); it is written at commit", e.msg);
}

/* Ends the streamed COPY with the rows not yet sent, then the upsert step. */
static int stream_finish(sink_state *s, pc_error *err)
{
    int rc = copy_put(s, s->copy.data + s->sent, s->copy.len - s->sent, err);
    pc_error e = {0};
    int erc = copy_end(s, rc ? "sink: sending the batch failed" : NULL, rc ? &e : err);
    s->streaming = false;
    s->sent = 0;
    if (!rc)
        rc = erc;
    return rc ? rc : after_copy(s, err);
}

static void stream_abort(sink_state *s)
{
    pc_error e = {0};
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK &&
        copy_end(s, "sink: batch discarded", &e) == PC_EUNAVAIL) {
        pg_drop(s); /* reconnected by the caller's recovery */
        return;
    }
    rollback(s);
    s->streaming = false;
    s->sent = 0;
}

/* Writes rows [a, b) (contiguous in the copy buffer) inside the open transaction. */
static int write_rows(sink_state *s, size_t a, size_t b, pc_error *err)
{
    const char *data = s->copy.data + s->rows[a].off;
    size_t len = s->rows[b - 1].off + s->rows[b - 1].len - s->rows[a].off;
    int rc = copy_begin(s, false, err);
    if (rc)
        return rc;
    rc = copy_put(s, data, len, err);
    pc_error e = {0};
    int erc = copy_end(s, rc ? "sink: sending the batch failed" : NULL, rc ? &e : err);
    if (!rc)
        rc = erc;
    return rc ? rc : after_copy(s, err);
}

static int offsets_conflict(sink_state *s, size_t p, pc_error *err)
{
    return pc_error_set(err, PC_ECONFLICT,
                        "sink %s: partition %zu of topic %s was committed by another member "
                        "(stored offset moved past %" PRId64 "): batch discarded",
                        s->sink->name, p, s->sink->topic, s->parts[p].stored);
}

/* Moves each partition's offset from what we read to the batch's end, fenced (see top). The
 * partitions that have a row already move in one UPDATE (one round trip at every commit,
 * whatever the number of partitions); a partition's first row is an INSERT of its own. */
static int store_offsets(sink_state *s, pc_error *err)
{
    pc_buf pl = {0}, nl = {0}, ol = {0};
    size_t nupd = 0;
    PGresult *r = NULL;
    int rc = 0;
    for (size_t p = 0; p < s->nparts; p++) {
        part_state *ps = &s->parts[p];
        if (ps->batch_next < 0)
            continue;
        if (ps->stored >= 0) {
            if (pc_buf_printf(&pl, "%s%zu", nupd ? "," : "{", p) ||
                pc_buf_printf(&nl, "%s%" PRId64, nupd ? "," : "{", ps->batch_next) ||
                pc_buf_printf(&ol, "%s%" PRId64, nupd ? "," : "{", ps->stored)) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
            nupd++;
            continue;
        }
        char pbuf[24], nbuf[24];
        snprintf(pbuf, sizeof pbuf, "%zu", p);
        snprintf(nbuf, sizeof nbuf, "%" PRId64, ps->batch_next);
        const char *prm[4] = {s->sink->name, s->sink->topic, pbuf, nbuf};
        if ((rc = pg_exec_params(s,
                                 "INSERT INTO pipectl.sink_offsets (sink, topic, partition, "
                                 "next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                                 4, prm, &r, err)))
            goto done;
        bool one = strcmp(PQcmdTuples(r), "1") == 0;
        PQclear(r);
        r = NULL;
        if (!one) {
            rc = offsets_conflict(s, p, err);
            goto done;
        }
    }
    if (nupd == 0)
        goto done;
    if (pc_buf_puts(&pl, "}") || pc_buf_puts(&nl, "}") || pc_buf_puts(&ol, "}")) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *prm[5] = {s->sink->name, s->sink->topic, pl.data, nl.data, ol.data};
    if ((rc = pg_exec_params(s,
                             "UPDATE pipectl.sink_offsets o SET next_offset = v.n, updated_at = "
                             "now() FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS v(p, n, "
                             "old) WHERE o.sink = $1 AND o.topic = $2 AND o.partition = v.p AND "
                             "o.next_offset = v.old RETURNING o.partition",
                             5, prm, &r, err)))
        goto done;
    if ((size_t)PQntuples(r) != nupd) {
        /* name a partition whose row did not move */
        for (size_t p = 0; p < s->nparts; p++) {
            if (s->parts[p].batch_next < 0 || s->parts[p].stored < 0)
                continue;
            bool moved = false;
            for (int i = 0; i < PQntuples(r) && !moved; i++)
                moved = strtoul(PQgetvalue(r, i, 0), NULL, 10) == p;
            if (!moved) {
                rc = offsets_conflict(s, p, err);
                goto done;
            }
        }
        rc = pc_error_set(err, PC_ECONFLICT, "sink %s: offsets of topic %s moved meanwhile: "
                          "batch discarded", s->sink->name, s->sink->topic);
    }
done:
    PQclear(r);
    pc_buf_free(&pl);
    pc_buf_free(&nl);
    pc_buf_free(&ol);
    return rc;
}

static int flush_dlq(sink_state *s, pc_error *err)
{
    if (!s->dlq || s->batch_dlq == 0)
        return 0;
    rd_kafka_flush(s->dlq, SINK_DLQ_FLUSH_MS);
    if (s->dlq_denied) {
        char *why = pc_kafka_acl_missing(s->m, &s->sink->auth, "topic", s->sink->dead_letter,
                                         "write");
        int rc = pc_error_set(err, PC_EREFUSED, "sink %s: dead letters: %s", s->sink->name,
                              why ? why : "Kafka denied writing the dead-letter topic");
        free(why);
        s->dlq_failed = 0;
        s->dlq_denied = false;
        return rc;
    }
    if (rd_kafka_outq_len(s->dlq) > 0 || s->dlq_failed) {
        int rc = pc_error_set(err, PC_EUNAVAIL,
                              "Kafka: dead letters to topic %s not delivered (%s): batch not "
                              "committed, it will be re-read",
                              s->sink->dead_letter,
                              s->dlq_failed ? s->dlq_errmsg : "flush timed out");
        s->dlq_failed = 0;
        return rc;
    }
    return 0;
}

/* One transaction: rows, dead letters flushed, offsets, COMMIT. On failure the batch is left in
 * place for the caller to discard. */
static int commit_batch(sink_state *s, pc_error *err)
{
    size_t rejected = 0;
    int64_t t0 = pc_worker_clock_us(); /* the dashboard's batch latency */
    int rc = chunks_collect(s, true, err); /* every record converted, in rows or dead letters */
    if (rc)
        return rc;
    if (s->nmsgs == 0)
        return 0;
    if (!s->pg)
        return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: not connected");
    pc_error first = {0};
    if (s->streaming) {
        rc = stream_finish(s, &first);
    } else {
        if ((rc = pg_exec(s, "BEGIN", err)))
            goto fail;
        if (s->nrows)
            rc = write_rows(s, 0, s->nrows, &first);
    }
    if (s->nrows) {
        if (rc == PC_EIO) {
            /* a row PostgreSQL refuses: redo row by row, dead-lettering the refused ones */
            slog(s, PC_LOG_WARN, "batch refused (%s); retrying row by row", first.msg);
            rollback(s);
            if ((rc = pg_exec(s, "BEGIN", err)))
                goto fail;
            for (size_t i = 0; i < s->nrows; i++) {
                pc_error e = {0};
                if ((rc = pg_exec(s, "SAVEPOINT pc_row", err)))
                    goto fail;
                rc = write_rows(s, i, i + 1, &e);
                if (rc == PC_EIO) {
                    if ((rc = pg_exec(s, "ROLLBACK TO SAVEPOINT pc_row", err)))
                        goto fail;
                    const rd_kafka_message_t *msg = s->msgs[s->rows[i].msg];
                    if (!s->dlq) {
                        rc = pc_error_set(err, PC_EINVAL,
                                          "sink %s: record %s/%" PRId32 "@%" PRId64
                                          " refused by table %s (%s) and no dead_letter topic is "
                                          "configured: add dead_letter to the sink",
                                          s->sink->name, s->sink->topic, msg->partition,
                                          msg->offset, s->tname, e.msg);
                        goto fail;
                    }
                    char *why = pc_asprintf("table %s refused the row: %s", s->tname, e.msg);
                    rc = dead_letter(s, msg, why ? why : "refused by PostgreSQL", err);
                    free(why);
                    if (rc)
                        goto fail;
                    rejected++;
                } else if (rc) {
                    pc_error_set(err, rc, "%s", e.msg);
                    goto fail;
                } else if ((s->upsert && (rc = pg_exec(s, "DELETE FROM pc_sink_staging", err))) ||
                           (rc = pg_exec(s, "RELEASE SAVEPOINT pc_row", err))) {
                    goto fail; /* (the next row's upsert must not see this one again) */
                }
            }
        } else if (rc) {
            pc_error_set(err, rc, "%s", first.msg);
            goto fail;
        }
    }
    if ((rc = flush_dlq(s, err)) || (rc = store_offsets(s, err)) ||
        (rc = pg_exec(s, "COMMIT", err)))
        goto fail;

    /* committed */
    uint64_t rows = s->nrows - rejected;
    atomic_fetch_add(&s->env->stats->records_out, rows);
    atomic_fetch_add(&s->env->stats->dead_letters, s->batch_dlq);
    atomic_fetch_add(&s->env->stats->batches, 1);
    atomic_store(&s->env->stats->last_commit_ms, pc_wall_ms());
    pc_worker_batch_timed(s->env->stats, t0);
    s->done += rows + s->batch_dlq;
    rd_kafka_topic_partition_list_t *kc = rd_kafka_topic_partition_list_new(4);
    for (size_t p = 0; p < s->nparts; p++) {
        part_state *ps = &s->parts[p];
        if (ps->batch_next < 0)
            continue;
        ps->stored = ps->batch_next;
        rd_kafka_topic_partition_list_add(kc, s->sink->topic, (int32_t)p)->offset = ps->batch_next;
    }
    if (s->env->log) {
        char desc[256];
        describe_list(kc, desc, sizeof desc);
        slog(s, PC_LOG_DEBUG, "committed %" PRIu64 " rows, %zu dead letters; next offsets %s",
             rows, s->batch_dlq, desc);
    }
    if (kc->cnt) /* for lag tools only; correctness never depends on it */
        rd_kafka_commit(s->rk, kc, 1);
    rd_kafka_topic_partition_list_destroy(kc);
    if (s->ahead)
        batch_promote(s);
    else
        batch_discard(s);
    return 0;
fail:
    rollback(s);
    if (rc == PC_EUNAVAIL && pg_conn_lost(s->pg, NULL))
        pg_drop(s);
    return rc;
}

/* After a failed commit or a reconnect: drop the batch and restart every assigned partition
 * from the offsets stored in PostgreSQL. */
static int reseek(sink_state *s, pc_error *err)
{
    batch_discard(s);
    if (!s->assignment || s->assignment->cnt == 0)
        return 0;
    int rc = read_offsets(s, s->assignment, err);
    if (rc)
        return rc;
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, s->assignment);
    if (e)
        return pc_error_set(err, PC_EUNAVAIL, "Kafka: re-assigning partitions: %s",
                            rd_kafka_err2str(e));
    char desc[256];
    describe_list(s->assignment, desc, sizeof desc);
    slog(s, PC_LOG_INFO, "restarting partitions from stored offsets %s", desc);
    return 0;
}

/* Commits the batch; on failure recovers (reconnect, re-read offsets, re-seek). Returns 0 when
 * the worker can go on, an error when it must stop. */
static int commit_or_recover(sink_state *s, pc_error *err)
{
    pc_error e = {0};
    int rc = commit_batch(s, &e);
    if (rc == 0) {
        s->consecutive = 0;
        return 0;
    }
    if (rc == PC_EINVAL || rc == PC_ENOMEM || rc == PC_EREFUSED) { /* no retry cures these */
        batch_discard(s);
        return pc_error_set(err, rc, "%s", e.msg);
    }
    atomic_fetch_add(&s->env->stats->errors, 1);
    slog(s, PC_LOG_WARN, "batch of %zu records not committed: %s", s->nmsgs, e.msg);
    batch_discard(s);
    if (rc != PC_ECONFLICT && ++s->consecutive > 1)
        nap(s, s->consecutive > 6 ? SINK_MAX_BACKOFF_MS : 100 << s->consecutive);
    for (;;) {
        pc_error e2 = {0};
        if (!s->pg && (rc = pg_recover(s, &e2))) {
            if (stopping(s))
                return 0;
            return pc_error_set(err, rc, "%s", e2.msg);
        }
        rc = reseek(s, &e2);
        if (rc == 0)
            return 0;
        if (rc != PC_EUNAVAIL)
            return pc_error_set(err, rc, "%s", e2.msg);
        pg_drop(s);
        if (stopping(s))
            return 0;
    }
}

/* --- Kafka callbacks -------------------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sink_state *s = opaque;
    char desc[256];
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (;;) {
            pc_error err = {0};
            int rc = s->pg ? read_offsets(s, parts, &err) : PC_EUNAVAIL;
            if (rc == 0)
                break;
            if (rc == PC_EUNAVAIL)
                pg_drop(s);
            if (err.code)
                slog(s, PC_LOG_WARN, "reading stored offsets: %s", err.msg);
            if (stopping(s) || (!s->pg && pg_recover(s, &err) && stopping(s))) {
                rd_kafka_assign(rk, NULL);
                return;
            }
        }
        if (s->assignment)
            rd_kafka_topic_partition_list_destroy(s->assignment);
        s->assignment = rd_kafka_topic_partition_list_copy(parts);
        describe_list(parts, desc, sizeof desc);
        slog(s, PC_LOG_INFO, "assigned partitions of %s at stored offsets %s", s->sink->topic,
             desc);
        rd_kafka_assign(rk, parts);
    } else {
        /* commit what we hold while we still own it; if that fails, discard (still correct:
         * the offsets stay where they were in PostgreSQL) */
        if (s->nmsgs) {
            pc_error err = {0};
            if (commit_batch(s, &err)) {
                slog(s, PC_LOG_WARN, "revoke: batch discarded (%s)", err.msg);
                atomic_fetch_add(&s->env->stats->errors, 1);
            }
            batch_discard(s);
        }
        size_t used = 0;
        desc[0] = '\0';
        for (int i = 0; i < parts->cnt && used + 16 < sizeof desc; i++)
            used += (size_t)snprintf(desc + used, sizeof desc - used, "%s%" PRId32, i ? "," : "",
                                     parts->elems[i].partition);
        slog(s, PC_LOG_INFO, "partitions %s of %s revoked", desc, s->sink->topic);
        for (size_t i = 0; i < s->nparts; i++)
            s->parts[i].assigned = false;
        if (s->assignment)
            rd_kafka_topic_partition_list_destroy(s->assignment);
        s->assignment = NULL;
        rd_kafka_assign(rk, NULL);
    }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sink_state *s = rd_kafka_opaque(rk);
    if (s)
        slog(s, level <= 3 ? PC_LOG_ERROR : level == 4 ? PC_LOG_WARN : PC_LOG_INFO,
             "librdkafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    (void)rk;
    sink_state *s = opaque;
    atomic_fetch_add(&s->env->stats->errors, 1);
    slog(s, PC_LOG_WARN, "Kafka: %s: %s (librdkafka reconnects by itself)",
         rd_kafka_err2name((rd_kafka_resp_err_t)e), reason);
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v, pc_error *err)
{
    char es[256];
    if (rd_kafka_conf_set(c, k, v, es, sizeof es) != RD_KAFKA_CONF_OK)
        return pc_error_set(err, PC_EINVAL, "Kafka: setting %s: %s", k, es);
    return 0;
}

/* A consumer error that no retry cures: the broker refuses the sink's principal for want of an
 * ACL on its topic or its consumer group. 0 when msg is not one. */
static int consumer_denied(sink_state *s, const rd_kafka_message_t *msg, pc_error *err)
{
    const char *res = NULL, *name = NULL;
    char *group = NULL;
    if (msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        res = "topic";
        name = s->sink->topic;
    } else if (msg->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
        res = "group";
        name = group = pc_manifest_sink_group(s->m, s->sink);
    } else {
        return 0;
    }
    char *why = pc_kafka_acl_missing(s->m, &s->sink->auth, res, name ? name : "?", "read");
    int rc = pc_error_set(err, PC_EREFUSED, "sink %s: %s", s->sink->name,
                          why ? why : "Kafka denied reading (missing ACL)");
    free(why);
    free(group);
    return rc;
}

/* bootstrap, the sink's principal (its own or the controller's), client_config */
static int client_conf(sink_state *s, rd_kafka_conf_t *c, pc_error *err)
{
    int rc = pc_kafka_conf_client(c, s->m, &s->sink->auth, err);
    if (rc != 0)
        pc_error_prefix(err, "sink %s", s->sink->name);
    return rc;
}

static int make_clients(sink_state *s, pc_error *err)
{
    char es[512];
    int rc = 0;
    char *group = pc_manifest_sink_group(s->m, s->sink);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (!group || !c) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = conf_set(c, "group.id", group, err)) ||
        (rc = conf_set(c, "client.id", group, err)) ||
        (rc = conf_set(c, "enable.auto.commit", "false", err)) ||
        (rc = conf_set(c, "enable.auto.offset.store", "false", err)) ||
        (rc = conf_set(c, "auto.offset.reset", "earliest", err)) ||
        (rc = conf_set(c, "partition.assignment.strategy", "range", err)) ||
        (rc = conf_set(c, "session.timeout.ms", "6000", err)) ||
        (rc = conf_set(c, "heartbeat.interval.ms", "1500", err)) ||
        /* memory: at most ~8 MB prefetched (+ one fetch of 256 KB compressed per partition) */
        (rc = conf_set(c, "queued.max.messages.kbytes", "8192", err)) ||
        (rc = conf_set(c, "fetch.message.max.bytes", "262144", err)) ||
        /* librdkafka 2.0 stops fetching once that queue is full and looks again only when the
         * broker thread wakes, at the latest after 1 s (2.2 added fetch.queue.backoff.ms for
         * this); the sink drains 8 MB in well under 0.1 s and would then sit idle. A metadata
         * request (a few hundred bytes) every 50 ms wakes the thread, which then sees the
         * drained queue and fetches: 1M records went from 42 s to 10.7 s, peak RSS 44 MB. */
        (rc = conf_set(c, "topic.metadata.refresh.interval.ms", "50", err)) ||
        /* ... without shrinking the metadata cache's lifetime with it (its default is 3x the
         * refresh interval) */
        (rc = conf_set(c, "metadata.max.age.ms", "900000", err)) ||
        (rc = conf_set(c, "log.queue", "true", err)) ||
        (rc = client_conf(s, c, err)))
        goto done;
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
    rd_kafka_conf_set_log_cb(c, log_cb);
    rd_kafka_conf_set_error_cb(c, error_cb);
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, es, sizeof es);
    if (!s->rk) {
        rc = pc_error_set(err, PC_EINVAL, "Kafka: creating the consumer: %s", es);
        goto done;
    }
    c = NULL;
    rd_kafka_set_log_queue(s->rk, NULL);
    rd_kafka_poll_set_consumer(s->rk);

    if (s->sink->dead_letter) {
        c = rd_kafka_conf_new();
        if ((rc = conf_set(c, "enable.idempotence", "true", err)) ||
            (rc = conf_set(c, "acks", "all", err)) ||
            (rc = conf_set(c, "linger.ms", "5", err)) ||
            (rc = conf_set(c, "message.timeout.ms", "25000", err)) ||
            (rc = conf_set(c, "log.queue", "true", err)) || (rc = client_conf(s, c, err)))
            goto done;
        rd_kafka_conf_set_opaque(c, s);
        rd_kafka_conf_set_log_cb(c, log_cb);
        rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
        rd_kafka_conf_set_error_cb(c, error_cb);
        s->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof es);
        if (!s->dlq) {
            rc = pc_error_set(err, PC_EINVAL, "Kafka: creating the dead-letter producer: %s", es);
            goto done;
        }
        c = NULL;
        rd_kafka_set_log_queue(s->dlq, NULL); /* served by rd_kafka_poll in our thread */
    }
done:
    if (c)
        rd_kafka_conf_destroy(c);
    free(group);
    return rc;
}

/* --- setup ------------------------------------------------------------------------------------ */

static int setup_columns(sink_state *s, pc_error *err)
{
    const char *dot = strchr(s->sink->table, '.');
    if (!dot)
        return pc_error_set(err, PC_EINVAL, "sink %s: table %s is not schema.table",
                            s->sink->name, s->sink->table);
    char *schema = pc_strndup(s->sink->table, (size_t)(dot - s->sink->table));
    const pc_mf_table *t = pc_manifest_find_table(s->m, schema, dot + 1);
    char *qs = quote_ident(schema), *qt = quote_ident(dot + 1);
    s->qtable = pc_asprintf("%s.%s", qs, qt);
    s->tname = pc_strdup(s->sink->table);
    free(schema);
    free(qs);
    free(qt);
    if (!t)
        return pc_error_set(err, PC_EINVAL, "sink %s: table %s is not declared in the manifest",
                            s->sink->name, s->sink->table);
    for (size_t k = 0; k < s->sink->mapping.n; k++) {
        bool found = false;
        for (size_t i = 0; i < t->ncolumns; i++)
            found |= pc_streq(t->columns[i].name, s->sink->mapping.items[k].key);
        if (!found)
            return pc_error_set(err, PC_EINVAL, "sink %s: mapping names column %s, which table %s "
                                "does not have", s->sink->name, s->sink->mapping.items[k].key,
                                s->tname);
    }
    s->cols = calloc(t->ncolumns ? t->ncolumns : 1, sizeof *s->cols);
    if (!s->cols)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    pc_buf cl = {0}, pk = {0}, set = {0};
    size_t npk = 0, nset = 0;
    int rc = 0;
    for (size_t i = 0; i < t->ncolumns; i++) {
        const pc_mf_column *mc = &t->columns[i];
        const char *path = pc_kvlist_get(&s->sink->mapping, mc->name);
        if (!path) {
            if (mc->primary_key && s->upsert) {
                rc = pc_error_set(err, PC_EINVAL,
                                  "sink %s: upsert needs primary key column %s of %s mapped",
                                  s->sink->name, mc->name, s->tname);
                goto done;
            }
            continue;
        }
        pc_sink_col *c = &s->cols[s->ncols++];
        c->name = mc->name;
        c->path = path;
        c->type_name = mc->type;
        c->type = pc_sink_type_parse(mc->type, &c->typmod1, &c->typmod2);
        c->nullable = mc->nullable && !mc->primary_key;
        c->primary_key = mc->primary_key;
        char *q = quote_ident(mc->name);
        pc_buf_printf(&cl, "%s%s", cl.len ? ", " : "", q);
        if (mc->primary_key)
            pc_buf_printf(&pk, "%s%s", npk++ ? ", " : "", q);
        else
            pc_buf_printf(&set, "%s%s = EXCLUDED.%s", nset++ ? ", " : "", q, q);
        free(q);
    }
    if (s->ncols == 0) {
        rc = pc_error_set(err, PC_EINVAL, "sink %s: the mapping names no column", s->sink->name);
        goto done;
    }
    if (s->upsert && npk == 0) {
        rc = pc_error_set(err, PC_EINVAL, "sink %s: upsert mode needs a primary key on %s",
                          s->sink->name, s->tname);
        goto done;
    }
    s->collist = pc_strdup(cl.data);
    if (s->upsert) {
        /* staging has exactly the mapped columns' types, no constraints, plus the arrival
         * sequence that makes the last record of a key win within one batch; one per session
         * (made in pg_connect), emptied by every COMMIT */
        s->staging_sql = pc_asprintf("CREATE TEMP TABLE pc_sink_staging ON COMMIT DELETE ROWS AS "
                                     "SELECT %s, 0::bigint AS pc_seq FROM %s WITH NO DATA",
                                     cl.data, s->qtable);
        s->upsert_sql = pc_asprintf(
            "INSERT INTO %s (%s) SELECT DISTINCT ON (%s) %s FROM pc_sink_staging "
            "ORDER BY %s, pc_seq DESC ON CONFLICT (%s) DO %s%s",
            s->qtable, cl.data, pk.data, cl.data, pk.data, pk.data,
            nset ? "UPDATE SET " : "NOTHING", nset ? set.data : "");
    }
    if (!s->collist || (s->upsert && (!s->staging_sql || !s->upsert_sql)))
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    pc_buf_free(&cl);
    pc_buf_free(&pk);
    pc_buf_free(&set);
    return rc;
}

static void state_free(sink_state *s)
{
    batch_discard(s);
    if (s->rk)
        rd_kafka_destroy(s->rk);
    if (s->dlq) {
        rd_kafka_flush(s->dlq, 5000);
        rd_kafka_destroy(s->dlq);
    }
    if (s->assignment)
        rd_kafka_topic_partition_list_destroy(s->assignment);
    pg_drop(s);
    free(s->qtable);
    free(s->tname);
    free(s->cols);
    free(s->collist);
    free(s->upsert_sql);
    free(s->staging_sql);
    free(s->parts);
    free(s->msgs);
    free(s->rows);
    pc_buf_free(&s->copy);
    pc_sink_pool_free(s->pool);
    for (pc_sink_chunk *c = s->spare, *next; c; c = next) {
        next = c->next;
        pc_sink_chunk_reset(c);
        pc_buf_free(&c->out);
        free(c);
    }
}

/* --- converting ------------------------------------------------------------------------------ */

/* Converting threads: one per online CPU, at most 8; the manifest's convert_threads wins. */
static size_t convert_threads(const pc_mf_sink *sink)
{
    if (sink->convert_threads > 0)
        return (size_t)sink->convert_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (size_t)n;
}

static pc_sink_chunk *chunk_get(sink_state *s)
{
    pc_sink_chunk *c = s->spare;
    if (c) {
        s->spare = c->next;
        c->next = NULL;
        return c;
    }
    return calloc(1, sizeof *c);
}

static void chunk_put(sink_state *s, pc_sink_chunk *c)
{
    pc_sink_chunk_reset(c);
    c->next = s->spare;
    s->spare = c;
}

/* Hands the fill chunk to the converting threads; it joins the end of the flight line. */
static void chunk_submit(sink_state *s)
{
    pc_sink_chunk *c = s->fill;
    if (!c || c->n == 0)
        return;
    s->fill = NULL;
    c->line_next = NULL;
    if (s->flight_tail)
        s->flight_tail->line_next = c;
    else
        s->flight = c;
    s->flight_tail = c;
    pc_sink_pool_submit(s->pool, c);
}

/* Waits for every submitted chunk and drops them with their results (batch discarded). */
static void chunks_cancel(sink_state *s)
{
    if (s->fill) { /* never submitted: nothing else reads it */
        chunk_put(s, s->fill);
        s->fill = NULL;
    }
    while (s->flight) {
        pc_sink_chunk *c = s->flight;
        pc_sink_pool_done(s->pool, c, true);
        s->flight = c->line_next;
        chunk_put(s, c);
    }
    s->flight_tail = NULL;
}

/* Each partition's batch end (offset after its last message in msgs), -1 when it has none. */
static void batch_ends(sink_state *s)
{
    for (size_t p = 0; p < s->nparts; p++)
        s->parts[p].batch_next = -1;
    for (size_t i = 0; i < s->nmsgs; i++) {
        part_state *ps = part(s, s->msgs[i]->partition);
        if (ps && s->msgs[i]->offset + 1 > ps->batch_next)
            ps->batch_next = s->msgs[i]->offset + 1;
    }
}

/* When a batch that starts now commits at the latest: batch.max_wait after now, or after the
 * previous commit began when that was less than max_wait ago (see window_start). */
static int64_t batch_deadline(sink_state *s)
{
    int64_t wait = s->sink->batch_max_wait_ms > 0 ? s->sink->batch_max_wait_ms : 200;
    int64_t now = pc_mono_ms(), from = now;
    if (s->window_start > 0 && now - s->window_start < wait)
        from = s->window_start;
    s->window_start = 0;
    return from + wait;
}

/* Cuts the batch before message k (a record that must stop the worker): later messages are
 * dropped unread and each partition's batch end is recomputed from what is kept. */
static void batch_truncate(sink_state *s, size_t k)
{
    chunks_cancel(s);
    s->ahead = false;
    for (size_t i = k; i < s->nmsgs; i++)
        rd_kafka_message_destroy(s->msgs[i]);
    s->nmsgs = k;
    batch_ends(s);
}

/* Takes a converted chunk's results in order: rows into the batch's COPY buffer, records that
 * cannot be loaded to the dead-letter topic (or, without one, the batch cut before the first
 * and the worker told to stop). */
static int chunk_collect(sink_state *s, pc_sink_chunk *c, pc_error *err)
{
    if (c->rc)
        return pc_error_set(err, c->rc, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < c->n; i++) {
        size_t k = s->collected;
        const rd_kafka_message_t *msg = s->msgs[k];
        if (c->len[i]) {
            if (s->nrows == s->caprows) {
                size_t n = s->caprows ? s->caprows * 2 : 1024;
                row_ref *nr = realloc(s->rows, n * sizeof *nr);
                if (!nr)
                    return pc_error_set(err, PC_ENOMEM, "out of memory");
                s->rows = nr;
                s->caprows = n;
            }
            s->rows[s->nrows++] = (row_ref){k, s->copy.len, c->len[i]};
            if (pc_buf_append(&s->copy, c->out.data + off, c->len[i]))
                return pc_error_set(err, PC_ENOMEM, "out of memory");
            off += c->len[i];
        } else if (!s->dlq) {
            pc_error_set(&s->stop_err, PC_EINVAL,
                          "sink %s: record %s/%" PRId32 "@%" PRId64 " cannot be loaded: %s; no "
                          "dead_letter topic is configured for this sink, so the worker stops "
                          "rather than drop it: add dead_letter to the sink in the manifest",
                          s->sink->name, s->sink->topic, msg->partition, msg->offset,
                          c->reason[i] ? c->reason[i] : "?");
            return PC_EINVAL;
        } else {
            const char *why = c->reason[i] ? c->reason[i] : "?";
            int rc = dead_letter(s, msg, why, err);
            slog(s, PC_LOG_WARN, "record %s/%" PRId32 "@%" PRId64 " to dead letters: %s",
                 s->sink->topic, msg->partition, msg->offset, why);
            if (rc)
                return rc;
        }
        s->collected++;
    }
    return 0;
}

/* Collects the converted chunks at the head of the line; with wait, all of them (the fill
 * chunk is submitted first). A record that stops the worker cuts the batch before it and
 * returns 0 with s->stop_err set: what came before it is still committed. */
static int chunks_collect(sink_state *s, bool wait, pc_error *err)
{
    if (wait)
        chunk_submit(s);
    size_t end = s->ahead ? s->nbatch : SIZE_MAX; /* read-ahead chunks wait for their batch */
    while (s->flight && s->flight->line_first < end &&
           pc_sink_pool_done(s->pool, s->flight, wait)) {
        pc_sink_chunk *c = s->flight;
        int rc = chunk_collect(s, c, err);
        if (rc == PC_EINVAL) {
            batch_truncate(s, s->collected);
            return 0;
        }
        if (rc)
            return rc;
        s->flight = c->line_next;
        if (!s->flight)
            s->flight_tail = NULL;
        chunk_put(s, c);
        /* PostgreSQL loads these rows while the threads convert the next chunks */
        if (s->copy.len - s->sent >= SINK_STREAM_BYTES)
            stream_rows(s);
    }
    return 0;
}

/* Takes ownership of msg: adds it to the batch (converted later, on the pool) or drops a
 * re-delivery. */
static int take_message(sink_state *s, rd_kafka_message_t *msg, pc_error *err)
{
    part_state *ps = part(s, msg->partition);
    if (!ps || !ps->assigned || msg->offset < ps->next_expected) {
        rd_kafka_message_destroy(msg);
        return ps ? 0 : pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    if (s->nmsgs == s->capmsgs) {
        size_t n = s->capmsgs ? s->capmsgs * 2 : 1024;
        rd_kafka_message_t **nm = realloc(s->msgs, n * sizeof *nm);
        if (!nm) {
            rd_kafka_message_destroy(msg);
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        s->msgs = nm;
        s->capmsgs = n;
    }
    if (!s->fill && !(s->fill = chunk_get(s))) {
        rd_kafka_message_destroy(msg);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    pc_sink_chunk *c = s->fill;
    if (c->n == 0) {
        c->line_first = s->nmsgs;
        c->seq0 = s->upsert ? s->seq_next : -1;
    }
    s->seq_next++;
    c->payload[c->n] = msg->payload;
    c->plen[c->n] = msg->len;
    c->n++;
    if (s->nmsgs == 0)
        s->deadline = batch_deadline(s);
    s->msgs[s->nmsgs++] = msg;
    ps->next_expected = msg->offset + 1;
    if (!s->ahead)
        ps->batch_next = msg->offset + 1;
    atomic_fetch_add(&s->env->stats->records_in, 1);
    if (c->n == PC_SINK_CHUNK)
        chunk_submit(s);
    return 0;
}

/* The batch committed: its messages go, the read-ahead becomes the batch (see sink_state). */
static void batch_promote(sink_state *s)
{
    size_t k = s->nbatch;
    for (size_t i = 0; i < k; i++)
        rd_kafka_message_destroy(s->msgs[i]);
    memmove(s->msgs, s->msgs + k, (s->nmsgs - k) * sizeof *s->msgs);
    s->nmsgs -= k;
    for (pc_sink_chunk *c = s->flight; c; c = c->line_next)
        c->line_first -= k; /* every chunk left in flight is a read-ahead one */
    if (s->fill && s->fill->n)
        s->fill->line_first -= k;
    s->ahead = false;
    s->nbatch = 0;
    s->collected = 0;
    s->nrows = 0;
    s->copy.len = 0;
    s->sent = 0;
    s->stream_off = false;
    s->batch_dlq = 0;
    batch_ends(s);
    if (s->nmsgs)
        s->deadline = batch_deadline(s);
}

/* Before a full batch commits: takes up to a batch of the records already waiting in Kafka
 * (no waiting) as the read-ahead, converting while the commit runs. */
static int read_ahead(sink_state *s, size_t batch_max, pc_error *err)
{
    if (s->ahead || s->nmsgs == 0 || s->stop_err.code ||
        (s->env->max_records && s->done + s->nmsgs >= s->env->max_records))
        return 0;
    size_t room = batch_max; /* and never past --max-records */
    if (s->env->max_records && s->env->max_records - s->done - s->nmsgs < room)
        room = (size_t)(s->env->max_records - s->done - s->nmsgs);
    chunk_submit(s); /* the batch's last chunk ends at the batch's end */
    s->ahead = true;
    s->nbatch = s->nmsgs;
    /* the batch's rows converted by now go to PostgreSQL first, and more as they come while
     * polling: it is not left idle while the read-ahead is taken (a promoted read-ahead is
     * often a full batch already converted) */
    int rc = chunks_collect(s, false, err);
    if (rc)
        return rc;
    while (s->ahead && s->nmsgs - s->nbatch < room && !stopping(s)) {
        if ((s->nmsgs - s->nbatch) % PC_SINK_CHUNK == PC_SINK_CHUNK - 1 &&
            (rc = chunks_collect(s, false, err)))
            return rc;
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(s->rk, 0);
        if (!msg)
            break;
        if (msg->err) {
            int drc = consumer_denied(s, msg, err);
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                atomic_fetch_add(&s->env->stats->errors, 1);
                slog(s, PC_LOG_WARN, "Kafka: consuming %s: %s", s->sink->topic,
                     rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            if (drc)
                return drc;
            break;
        }
        if ((rc = take_message(s, msg, err)))
            return rc;
    }
    if (s->ahead) {
        chunk_submit(s); /* every read-ahead record to the threads now */
        if (s->nmsgs == s->nbatch)
            s->ahead = false;
    }
    return 0;
}

int pc_sink_run(const pc_manifest *m, const pc_mf_sink *sink, const pc_worker_env *env,
                pc_error *err)
{
    sink_state st = {0};
    sink_state *s = &st;
    int rc = 0;
    s->m = m;
    s->sink = sink;
    s->env = env;
    s->upsert = pc_streq(sink->mode, "upsert");
    s->rnd = (unsigned)(pc_wall_ms() ^ (int64_t)getpid());
    int64_t t0 = pc_mono_ms();
    size_t batch_max = sink->batch_max_records > 0 ? (size_t)sink->batch_max_records : 5000;

    if ((rc = setup_columns(s, err)))
        goto done;
    if ((rc = pc_sink_pool_new(&s->pool, convert_threads(sink), s->cols, s->ncols, err))) {
        pc_error_prefix(err, "sink %s (convert_threads %zu; lower it in the manifest)",
                        sink->name, convert_threads(sink));
        goto done;
    }
    if ((rc = pg_connect(s, err))) {
        if (rc != PC_EUNAVAIL)
            goto done;
        slog(s, PC_LOG_WARN, "%s", err->msg);
        pc_error_clear(err);
        if ((rc = pg_recover(s, err)))
            goto done;
    }
    if ((rc = make_clients(s, err)))
        goto done;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, sink->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t ke = rd_kafka_subscribe(s->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (ke) {
        rc = pc_error_set(err, PC_EUNAVAIL, "Kafka: subscribing to topic %s: %s", sink->topic,
                          rd_kafka_err2str(ke));
        goto done;
    }
    slog(s, PC_LOG_INFO, "sink %s: %s -> %s (%s), group pipectl-%s-%s", sink->name, sink->topic,
         s->tname, s->upsert ? "upsert" : "insert", m->name, sink->name);

    for (;;) {
        if (stopping(s) || (env->duration_ms > 0 && pc_mono_ms() - t0 >= env->duration_ms))
            break;
        if (env->max_records && s->done >= env->max_records)
            break;
        if (!s->pg) { /* lost in a callback: reconnect and restart from stored offsets */
            if ((rc = commit_or_recover(s, err)))
                goto done;
            continue;
        }
        int timeout = 100;
        if (s->nmsgs) {
            int64_t left = s->deadline - pc_mono_ms();
            timeout = left < 0 ? 0 : left < 100 ? (int)left : 100;
        }
        if (s->dlq)
            rd_kafka_poll(s->dlq, 0); /* delivery reports, logs */
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(s->rk, 0);
        if (!msg) { /* caught up: convert what we hold now rather than wait for a full chunk */
            chunk_submit(s);
            msg = rd_kafka_consumer_poll(s->rk, timeout);
        }
        if (msg && msg->err) {
            int drc = consumer_denied(s, msg, err);
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                atomic_fetch_add(&env->stats->errors, 1);
                slog(s, PC_LOG_WARN, "Kafka: consuming %s: %s", sink->topic,
                     rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            if ((rc = drc))
                goto done;
        } else if (msg && (rc = take_message(s, msg, err))) {
            goto done;
        }
        if ((rc = chunks_collect(s, false, err)))
            goto done;
        if (s->stop_err.code)
            break; /* a record no dead_letter can take: commit what came before it, stop */
        bool full = s->nmsgs >= batch_max ||
                    (env->max_records && s->done + s->nmsgs >= env->max_records);
        if (s->nmsgs && (full || pc_mono_ms() >= s->deadline)) {
            s->window_start = pc_mono_ms();
            if (full && (rc = read_ahead(s, batch_max, err)))
                goto done;
            if ((rc = commit_or_recover(s, err)))
                goto done;
        }
    }
    /* stop: commit the batch in progress (a few tries if PostgreSQL is away) */
    for (int tries = 0; s->nmsgs && tries < 5; tries++) {
        pc_error e = {0};
        if (!s->pg && pg_connect(s, &e) != 0) {
            slog(s, PC_LOG_WARN, "stopping: %s", e.msg);
            struct timespec ts = {0, 500000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        int crc = commit_batch(s, &e);
        if (crc == 0)
            break;
        slog(s, PC_LOG_WARN, "stopping: batch not committed: %s", e.msg);
        if (crc == PC_ECONFLICT || crc == PC_EINVAL)
            break;
    }
    if (s->nmsgs)
        slog(s, PC_LOG_WARN, "stopping with %zu records uncommitted: they will be re-read from "
             "the stored offsets on the next start", s->nmsgs);
    batch_discard(s);
    rc = s->stop_err.code ? pc_error_set(err, s->stop_err.code, "%s", s->stop_err.msg) : 0;
done:
    if (s->rk) {
        rd_kafka_consumer_close(s->rk); /* leaves the group; revoke commits nothing now */
    }
    if (rc == 0)
        slog(s, PC_LOG_INFO, "sink %s stopped: %" PRIu64 " records committed in this run",
             sink->name, s->done);
    state_free(s);
    return rc;
}
