/* session.c: the sink's PostgreSQL session: connecting (and creating pipectl.sink_offsets),
 * recovering with backoff, the stored offsets, COPY (streamed while the batch fills, or at
 * commit; in binary format when the table's types allow, see decide_format), the upsert step,
 * the fenced offsets update and the COMMIT that makes a batch durable (see sink.c for the
 * exactly-once rule), and dead letters, which are flushed inside that commit. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sink_int.h"
#include "kafka.h"
#include "postgres.h"

#define SINK_MAX_BACKOFF_MS 5000
#define SINK_DLQ_FLUSH_MS 30000
#define SINK_DRAIN_CONNECT_MS 2000

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
static int pg_exec_params(pc_sink_state *s, const char *sql, int n, const char *const *params,
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

static int pg_exec(pc_sink_state *s, const char *sql, pc_error *err)
{
    return pg_exec_params(s, sql, 0, NULL, NULL, err);
}

void pc_sink_pg_drop(pc_sink_state *s)
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

/* The column types as PostgreSQL has them (format_type) that take the binary field
 * pc_sink_bin_field writes for col. */
static bool binary_type_ok(const pc_sink_col *col, const char *t)
{
    size_t n = strlen(t);
    bool tz = n > 15 && !strcmp(t + n - 15, " with time zone");
    switch (col->type) {
    case PC_SINK_T_TEXT:
        return !strcmp(t, "text") || !strncmp(t, "character", 9) || !strcmp(t, "bpchar") ||
               !strcmp(t, "name");
    case PC_SINK_T_INT2: return !strcmp(t, "smallint");
    case PC_SINK_T_INT4: return !strcmp(t, "integer");
    case PC_SINK_T_INT8: return !strcmp(t, "bigint");
    case PC_SINK_T_NUMERIC: return !strncmp(t, "numeric", 7);
    case PC_SINK_T_FLOAT4: return !strcmp(t, "real");
    case PC_SINK_T_FLOAT8: return !strcmp(t, "double precision");
    case PC_SINK_T_BOOL: return !strcmp(t, "boolean");
    case PC_SINK_T_UUID: return !strcmp(t, "uuid");
    case PC_SINK_T_TIMESTAMPTZ: return !strncmp(t, "timestamp", 9) && tz;
    case PC_SINK_T_TIMESTAMP:
        return !strncmp(t, "timestamp", 9) && n > 18 && !strcmp(t + n - 18, " without time zone");
    case PC_SINK_T_DATE: return !strcmp(t, "date");
    case PC_SINK_T_JSON:
        return !strcmp(t, col->type_name && !strncmp(col->type_name, "jsonb", 5) ? "jsonb"
                                                                                 : "json");
    case PC_SINK_T_OTHER: return false;
    }
    return false;
}

static bool utc_zone(const char *z)
{
    static const char *const utc[] = {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT",
                                      "Universal", "Etc/Universal", "Zulu", "Etc/Zulu", "GMT0",
                                      "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "Greenwich",
                                      "Etc/Greenwich"};
    for (size_t i = 0; i < sizeof utc / sizeof *utc; i++)
        if (!strcasecmp(z, utc[i]))
            return true;
    return false;
}

/* Binary COPY when every mapped column has a binary form here and the table's columns have the
 * types the manifest declares (a table altered since apply takes text, which PostgreSQL
 * converts) and, with a timestamptz column, the session's TimeZone is UTC (a timestamp written
 * without an offset means UTC there; elsewhere PostgreSQL's zone rules apply, so text). */
static int decide_format(pc_sink_state *s, pc_error *err)
{
    const char *why = NULL;
    bool bin = true, tstz = false;
    PGresult *r = NULL;
    int rc = 0;
    for (size_t i = 0; i < s->ncols && bin; i++) {
        bin = pc_sink_type_binary(&s->cols[i]);
        tstz |= s->cols[i].type == PC_SINK_T_TIMESTAMPTZ;
        if (!bin)
            why = "a column of a type without a binary form here";
    }
    if (bin) {
        const char *p[1] = {s->qtable};
        if ((rc = pg_exec_params(s,
                                 "SELECT attname, format_type(atttypid, atttypmod) FROM "
                                 "pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND "
                                 "NOT attisdropped",
                                 1, p, &r, err))) {
            if (rc != PC_EIO)
                return rc;
            pc_error_clear(err); /* not allowed to read the catalog? text works anyway */
            bin = false;
            why = "the column types could not be read";
        }
        for (size_t i = 0; i < s->ncols && bin; i++) {
            bool ok = false;
            for (int k = 0; k < PQntuples(r) && !ok; k++)
                ok = !strcmp(PQgetvalue(r, k, 0), s->cols[i].name) &&
                     binary_type_ok(&s->cols[i], PQgetvalue(r, k, 1));
            bin = ok;
            if (!bin)
                why = "a column's type in PostgreSQL differs from the manifest";
        }
        PQclear(r);
        r = NULL;
    }
    if (bin && tstz) {
        if ((rc = pg_exec_params(s, "SHOW TimeZone", 0, NULL, &r, err)))
            return rc;
        bin = PQntuples(r) == 1 && utc_zone(PQgetvalue(r, 0, 0));
        if (!bin)
            why = "the session's TimeZone is not UTC";
        PQclear(r);
    }
    if (s->nmsgs && bin != s->binary)
        s->fmt_changed = true;
    s->binary = bin;
    pc_sink_log(s, PC_LOG_DEBUG, "COPY format for %s: %s%s%s%s", s->tname,
                bin ? "binary" : "text", why ? " (" : "", why ? why : "", why ? ")" : "");
    return 0;
}

/* Connects through pc_pg_connect (postgres.h: the DSN's own settings win, connect_timeout 10 s
 * unless it sets one, keepalives). While the worker runs, a stop abandons the attempt at once
 * (PC_EINTR): SIGTERM never waits on a server that does not answer. Once it is stopping (the
 * drain commits the batch in progress), an attempt gets at most SINK_DRAIN_CONNECT_MS. */
int pc_sink_pg_connect(pc_sink_state *s, pc_error *err)
{
    int rc = 0;
    PGresult *r = NULL;
    char app[128];
    pc_sink_pg_drop(s);
    snprintf(app, sizeof app, "pipectl run/sink %s", s->sink->name);
    pc_pg_connect_opts o = {.application_name = app, .stop = s->env->stop};
    if (pc_sink_stopping(s)) {
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
    if (s->upsert && (rc = pg_exec(s, s->staging_sql, err))) {
        pc_error_prefix(err, "creating the upsert staging table for %s", s->tname);
        goto done;
    }
    rc = decide_format(s, err);
done:
    PQclear(r);
    if (rc && rc != PC_ENOTFOUND)
        pc_sink_pg_drop(s);
    return rc;
}

/* Reconnects with exponential backoff and jitter until it works or the worker is stopped. */
int pc_sink_pg_recover(pc_sink_state *s, pc_error *err)
{
    int backoff = 200;
    for (;;) {
        pc_error e = {0};
        int rc = pc_sink_pg_connect(s, &e);
        if (rc == 0)
            return 0;
        if (rc == PC_ENOTFOUND || rc == PC_EINTR) { /* EINTR: stopped while connecting */
            pc_error_set(err, rc, "%s", e.msg);
            return rc;
        }
        atomic_fetch_add(&s->env->stats->errors, 1);
        pc_sink_log(s, PC_LOG_WARN, "%s; retrying in %d ms", e.msg, backoff);
        pc_sink_nap(s, backoff + (int)(rand_r(&s->rnd) % (unsigned)(backoff / 4 + 1)));
        if (pc_sink_stopping(s))
            return pc_error_set(err, PC_EUNAVAIL, "%s (stopped while retrying)", e.msg);
        backoff = backoff * 2 > SINK_MAX_BACKOFF_MS ? SINK_MAX_BACKOFF_MS : backoff * 2;
    }
}

/* Reads the stored offsets for the partitions in list and sets list's offsets (BEGINNING when
 * none); updates our partition state. */
/* The stored next offsets of this sink's topic: every partition's row, whoever committed it. */
static int stored_offsets(pc_sink_state *s, PGresult **r, pc_error *err)
{
    const char *p[2] = {s->sink->name, s->sink->topic};
    return pg_exec_params(s,
                          "SELECT partition, next_offset FROM pipectl.sink_offsets "
                          "WHERE sink = $1 AND topic = $2",
                          2, p, r, err);
}

int pc_sink_read_offsets(pc_sink_state *s, rd_kafka_topic_partition_list_t *list, pc_error *err)
{
    PGresult *r = NULL;
    int rc = stored_offsets(s, &r, err);
    if (rc)
        return rc;
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t stored = -1;
        for (int k = 0; k < PQntuples(r); k++)
            if (atoi(PQgetvalue(r, k, 0)) == tp->partition)
                stored = strtoll(PQgetvalue(r, k, 1), NULL, 10);
        tp->offset = stored >= 0 ? stored : RD_KAFKA_OFFSET_BEGINNING;
        pc_sink_part *ps = pc_sink_partition(s, tp->partition);
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

int pc_sink_group_offsets(pc_sink_state *s, int64_t *next, size_t n, pc_error *err)
{
    PGresult *r = NULL;
    int rc = stored_offsets(s, &r, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        next[i] = -1;
    for (int k = 0; k < PQntuples(r); k++) {
        long part = strtol(PQgetvalue(r, k, 0), NULL, 10);
        if (part >= 0 && (size_t)part < n)
            next[part] = strtoll(PQgetvalue(r, k, 1), NULL, 10);
    }
    PQclear(r);
    return 0;
}

void pc_sink_describe_offsets(const rd_kafka_topic_partition_list_t *l, char *out, size_t n)
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

/* Queues msg to the dead-letter topic with the reason and source coordinates in headers. */
int pc_sink_dead_letter(pc_sink_state *s, const rd_kafka_message_t *msg, const char *reason,
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

/* COPY in three steps, so that a batch can be streamed while it fills (see pc_sink_state). With
 * begin, the transaction is opened in the same round trip ("BEGIN; COPY ...": libpq returns
 * once the server is in COPY mode). */
static int copy_begin(pc_sink_state *s, bool begin, pc_error *err)
{
    const char *b = begin ? "BEGIN; " : "";
    const char *f = s->binary ? " WITH (FORMAT binary)" : "";
    char *sql = s->upsert ? pc_asprintf("%sCOPY pc_sink_staging (%s, pc_seq) FROM STDIN%s", b,
                                        s->collist, f)
                          : pc_asprintf("%sCOPY %s (%s) FROM STDIN%s", b, s->qtable, s->collist, f);
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
    /* binary: the signature, flags and header extension length */
    static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    if (s->binary && PQputCopyData(s->pg, header, sizeof header) != 1) {
        char msg[512];
        pg_msg(s->pg, NULL, msg, sizeof msg);
        return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: COPY: %s", msg);
    }
    return 0;
}

static int copy_put(pc_sink_state *s, const char *data, size_t len, pc_error *err)
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
static int copy_end(pc_sink_state *s, const char *abort_msg, pc_error *err)
{
    char msg[512];
    if (!abort_msg && s->binary && PQputCopyData(s->pg, "\377\377", 2) != 1)
        abort_msg = "sink: sending the batch failed"; /* the trailer (-1 fields) */
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
static int after_copy(pc_sink_state *s, pc_error *err)
{
    return s->upsert ? pg_exec(s, s->upsert_sql, err) : 0;
}

static void rollback(pc_sink_state *s)
{
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK) {
        PGresult *r = PQexec(s->pg, "ROLLBACK");
        PQclear(r);
    }
}

/* Sends the rows converted since the last call into the batch's open COPY, opening the
 * transaction and the COPY first. On any failure the stream is given up for this batch (and
 * rolled back): pc_sink_commit_batch then writes the whole batch the ordinary way, which reports or
 * recovers from the error. */
void pc_sink_stream_rows(pc_sink_state *s)
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
        pc_sink_stream_abort(s);
        goto off;
    }
    s->sent = s->copy.len;
    return;
off:
    s->stream_off = true;
    pc_sink_log(s, PC_LOG_DEBUG, "streaming the batch given up (%s); it is written at commit",
                e.msg);
}

/* Ends the streamed COPY with the rows not yet sent, then the upsert step. */
static int stream_finish(pc_sink_state *s, pc_error *err)
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

void pc_sink_stream_abort(pc_sink_state *s)
{
    pc_error e = {0};
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK &&
        copy_end(s, "sink: batch discarded", &e) == PC_EUNAVAIL) {
        pc_sink_pg_drop(s); /* reconnected by the caller's recovery */
        return;
    }
    rollback(s);
    s->streaming = false;
    s->sent = 0;
}

/* Writes rows [a, b) (contiguous in the copy buffer) inside the open transaction. */
static int write_rows(pc_sink_state *s, size_t a, size_t b, pc_error *err)
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

static int offsets_conflict(pc_sink_state *s, size_t p, pc_error *err)
{
    return pc_error_set(err, PC_ECONFLICT,
                        "sink %s: partition %zu of topic %s was committed by another member "
                        "(stored offset moved past %" PRId64 "): batch discarded",
                        s->sink->name, p, s->sink->topic, s->parts[p].stored);
}

/* Moves each partition's offset from what we read to the batch's end, fenced (see top). The
 * partitions that have a row already move in one UPDATE (one round trip at every commit,
 * whatever the number of partitions); a partition's first row is an INSERT of its own. */
static int store_offsets(pc_sink_state *s, pc_error *err)
{
    pc_buf pl = {0}, nl = {0}, ol = {0};
    size_t nupd = 0;
    PGresult *r = NULL;
    int rc = 0;
    for (size_t p = 0; p < s->nparts; p++) {
        pc_sink_part *ps = &s->parts[p];
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

static int flush_dlq(pc_sink_state *s, pc_error *err)
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
int pc_sink_commit_batch(pc_sink_state *s, pc_error *err)
{
    size_t rejected = 0;
    int64_t t0 = pc_worker_clock_us(); /* the dashboard's batch latency */
    /* every record converted, in rows or dead letters */
    int rc = pc_sink_chunks_collect(s, true, err);
    if (rc)
        return rc;
    if (s->nmsgs == 0)
        return 0;
    if (!s->pg)
        return pc_error_set(err, PC_EUNAVAIL, "PostgreSQL: not connected");
    if (s->fmt_changed)
        return pc_error_set(err, PC_EUNAVAIL,
                            "sink %s: the COPY format for %s changed on reconnecting (its column "
                            "types or the TimeZone changed): batch re-read from the stored "
                            "offsets", s->sink->name, s->tname);
    pc_error first = {0};
    /* where a batch's time goes, for the debug log: the rest of the COPY (PostgreSQL loading
     * what was streamed) and the upsert, the offsets, the COMMIT */
    int64_t t_coll = pc_worker_clock_us(), t_copy = 0, t_offs = 0;
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
            pc_sink_log(s, PC_LOG_WARN, "batch refused (%s); retrying row by row", first.msg);
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
                    rc = pc_sink_dead_letter(s, msg, why ? why : "refused by PostgreSQL", err);
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
    t_copy = pc_worker_clock_us();
    if ((rc = flush_dlq(s, err)) || (rc = store_offsets(s, err)))
        goto fail;
    t_offs = pc_worker_clock_us();
    if ((rc = pg_exec(s, "COMMIT", err)))
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
        pc_sink_part *ps = &s->parts[p];
        if (ps->batch_next < 0)
            continue;
        ps->stored = ps->batch_next;
        rd_kafka_topic_partition_list_add(kc, s->sink->topic, (int32_t)p)->offset = ps->batch_next;
    }
    if (s->env->log) {
        char desc[256];
        pc_sink_describe_offsets(kc, desc, sizeof desc);
        int64_t t_end = pc_worker_clock_us();
        pc_sink_log(s, PC_LOG_DEBUG,
                    "committed %" PRIu64 " rows, %zu dead letters in %.1f ms (converting %.1f, "
                    "%s COPY %.1f, offsets %.1f, COMMIT %.1f); next offsets %s",
                    rows, s->batch_dlq, (t_end - t0) / 1000.0, (t_coll - t0) / 1000.0,
                    s->binary ? "binary" : "text", (t_copy - t_coll) / 1000.0,
                    (t_offs - t_copy) / 1000.0, (t_end - t_offs) / 1000.0, desc);
    }
    if (kc->cnt) /* for lag tools only; correctness never depends on it */
        rd_kafka_commit(s->rk, kc, 1);
    rd_kafka_topic_partition_list_destroy(kc);
    if (s->ahead)
        pc_sink_batch_promote(s);
    else
        pc_sink_batch_discard(s);
    return 0;
fail:
    rollback(s);
    if (rc == PC_EUNAVAIL && pg_conn_lost(s->pg, NULL))
        pc_sink_pg_drop(s);
    return rc;
}

/* After a failed commit or a reconnect: drop the batch and restart every assigned partition
 * from the offsets stored in PostgreSQL. */
static int reseek(pc_sink_state *s, pc_error *err)
{
    pc_sink_batch_discard(s);
    if (!s->assignment || s->assignment->cnt == 0)
        return 0;
    int rc = pc_sink_read_offsets(s, s->assignment, err);
    if (rc)
        return rc;
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, s->assignment);
    if (e)
        return pc_error_set(err, PC_EUNAVAIL, "Kafka: re-assigning partitions: %s",
                            rd_kafka_err2str(e));
    char desc[256];
    pc_sink_describe_offsets(s->assignment, desc, sizeof desc);
    pc_sink_log(s, PC_LOG_INFO, "restarting partitions from stored offsets %s", desc);
    return 0;
}

/* Commits the batch; on failure recovers (reconnect, re-read offsets, re-seek). Returns 0 when
 * the worker can go on, an error when it must stop. */
int pc_sink_commit_or_recover(pc_sink_state *s, pc_error *err)
{
    pc_error e = {0};
    int rc = pc_sink_commit_batch(s, &e);
    if (rc == 0) {
        s->consecutive = 0;
        return 0;
    }
    if (rc == PC_EINVAL || rc == PC_ENOMEM || rc == PC_EREFUSED) { /* no retry cures these */
        pc_sink_batch_discard(s);
        return pc_error_set(err, rc, "%s", e.msg);
    }
    atomic_fetch_add(&s->env->stats->errors, 1);
    pc_sink_log(s, PC_LOG_WARN, "batch of %zu records not committed: %s", s->nmsgs, e.msg);
    pc_sink_batch_discard(s);
    if (rc != PC_ECONFLICT && ++s->consecutive > 1)
        pc_sink_nap(s, s->consecutive > 6 ? SINK_MAX_BACKOFF_MS : 100 << s->consecutive);
    for (;;) {
        pc_error e2 = {0};
        if (!s->pg && (rc = pc_sink_pg_recover(s, &e2))) {
            if (pc_sink_stopping(s))
                return 0;
            return pc_error_set(err, rc, "%s", e2.msg);
        }
        rc = reseek(s, &e2);
        if (rc == 0)
            return 0;
        if (rc != PC_EUNAVAIL)
            return pc_error_set(err, rc, "%s", e2.msg);
        pc_sink_pg_drop(s);
        if (pc_sink_stopping(s))
            return 0;
    }
}
