/* batch.c: the batch the sink fills: records join it as they are polled, go to the converting
 * threads a chunk at a time (pool.c) and are collected in order into the COPY buffer or the
 * dead-letter topic; the read-ahead taken before a full batch commits becomes the next batch. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink_int.h"

#define SINK_STREAM_BYTES (64 * 1024)

pc_sink_part *pc_sink_partition(pc_sink_state *s, int32_t p)
{
    if (p < 0)
        return NULL;
    if ((size_t)p >= s->nparts) {
        size_t n = (size_t)p + 8;
        pc_sink_part *np = realloc(s->parts, n * sizeof *np);
        if (!np)
            return NULL;
        for (size_t i = s->nparts; i < n; i++)
            np[i] = (pc_sink_part){false, -1, 0, -1};
        s->parts = np;
        s->nparts = n;
    }
    return &s->parts[p];
}

static void chunks_cancel(pc_sink_state *s);

void pc_sink_batch_discard(pc_sink_state *s)
{
    if (s->streaming)
        pc_sink_stream_abort(s);
    s->stream_off = false;
    s->fmt_changed = false;
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

/* --- converting ------------------------------------------------------------------------------ */

static pc_sink_chunk *chunk_get(pc_sink_state *s)
{
    pc_sink_chunk *c = s->spare;
    if (c) {
        s->spare = c->next;
        c->next = NULL;
        return c;
    }
    return calloc(1, sizeof *c);
}

static void chunk_put(pc_sink_state *s, pc_sink_chunk *c)
{
    pc_sink_chunk_reset(c);
    c->next = s->spare;
    s->spare = c;
}

/* Hands the fill chunk to the converting threads; it joins the end of the flight line. */
void pc_sink_chunk_submit(pc_sink_state *s)
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
static void chunks_cancel(pc_sink_state *s)
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
static void batch_ends(pc_sink_state *s)
{
    for (size_t p = 0; p < s->nparts; p++)
        s->parts[p].batch_next = -1;
    for (size_t i = 0; i < s->nmsgs; i++) {
        pc_sink_part *ps = pc_sink_partition(s, s->msgs[i]->partition);
        if (ps && s->msgs[i]->offset + 1 > ps->batch_next)
            ps->batch_next = s->msgs[i]->offset + 1;
    }
}

/* When a batch that starts now commits at the latest: batch.max_wait after now, or after the
 * previous commit began when that was less than max_wait ago (see window_start). */
static int64_t batch_deadline(pc_sink_state *s)
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
static void batch_truncate(pc_sink_state *s, size_t k)
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
static int chunk_collect(pc_sink_state *s, pc_sink_chunk *c, pc_error *err)
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
                pc_sink_row *nr = realloc(s->rows, n * sizeof *nr);
                if (!nr)
                    return pc_error_set(err, PC_ENOMEM, "out of memory");
                s->rows = nr;
                s->caprows = n;
            }
            s->rows[s->nrows++] = (pc_sink_row){k, s->copy.len, c->len[i]};
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
            int rc = pc_sink_dead_letter(s, msg, why, err);
            pc_sink_log(s, PC_LOG_WARN, "record %s/%" PRId32 "@%" PRId64 " to dead letters: %s",
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
int pc_sink_chunks_collect(pc_sink_state *s, bool wait, pc_error *err)
{
    if (wait)
        pc_sink_chunk_submit(s);
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
            pc_sink_stream_rows(s);
    }
    return 0;
}

/* Takes ownership of msg: adds it to the batch (converted later, on the pool) or drops a
 * re-delivery. */
int pc_sink_take_message(pc_sink_state *s, rd_kafka_message_t *msg, pc_error *err)
{
    pc_sink_part *ps = pc_sink_partition(s, msg->partition);
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
        c->binary = s->binary;
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
        pc_sink_chunk_submit(s);
    return 0;
}

/* The batch committed: its messages go, the read-ahead becomes the batch (see pc_sink_state). */
void pc_sink_batch_promote(pc_sink_state *s)
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
int pc_sink_read_ahead(pc_sink_state *s, size_t batch_max, pc_error *err)
{
    if (s->ahead || s->nmsgs == 0 || s->stop_err.code ||
        (s->env->max_records && s->done + s->nmsgs >= s->env->max_records))
        return 0;
    size_t room = batch_max; /* and never past --max-records */
    if (s->env->max_records && s->env->max_records - s->done - s->nmsgs < room)
        room = (size_t)(s->env->max_records - s->done - s->nmsgs);
    pc_sink_chunk_submit(s); /* the batch's last chunk ends at the batch's end */
    s->ahead = true;
    s->nbatch = s->nmsgs;
    /* the batch's rows converted by now go to PostgreSQL first, and more as they come while
     * polling: it is not left idle while the read-ahead is taken (a promoted read-ahead is
     * often a full batch already converted) */
    int rc = pc_sink_chunks_collect(s, false, err);
    if (rc)
        return rc;
    while (s->ahead && s->nmsgs - s->nbatch < room && !pc_sink_stopping(s)) {
        if ((s->nmsgs - s->nbatch) % PC_SINK_CHUNK == PC_SINK_CHUNK - 1 &&
            (rc = pc_sink_chunks_collect(s, false, err)))
            return rc;
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(s->rk, 0);
        if (!msg)
            break;
        if (msg->err) {
            int drc = pc_sink_consumer_denied(s, msg, err);
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                atomic_fetch_add(&s->env->stats->errors, 1);
                pc_sink_log(s, PC_LOG_WARN, "Kafka: consuming %s: %s", s->sink->topic,
                            rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            if (drc)
                return drc;
            break;
        }
        if ((rc = pc_sink_take_message(s, msg, err)))
            return rc;
    }
    if (s->ahead) {
        pc_sink_chunk_submit(s); /* every read-ahead record to the threads now */
        if (s->nmsgs == s->nbatch)
            s->ahead = false;
    }
    return 0;
}
