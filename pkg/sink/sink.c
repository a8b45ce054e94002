/* sink.c: the Kafka -> PostgreSQL sink worker: setup, the Kafka clients and their callbacks,
 * and the worker loop. The PostgreSQL session (connect, COPY, offsets, commit) is session.c's,
 * the batch being filled (read-ahead, converting threads) is batch.c's; sink_int.h holds the
 * state all three share.
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
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sink.h"
#include "sink_int.h"
#include "kafka.h"

void pc_sink_log(pc_sink_state *s, pc_log_level lvl, const char *fmt, ...)
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

/* Sleeps ms in short slices; returns early when asked to stop. */
void pc_sink_nap(pc_sink_state *s, int ms)
{
    int64_t end = pc_mono_ms() + ms;
    while (!pc_sink_stopping(s)) {
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

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    pc_sink_state *s = opaque;
    if (msg->err) {
        s->dlq_failed++;
        s->dlq_denied |= msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                         msg->err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
        snprintf(s->dlq_errmsg, sizeof s->dlq_errmsg, "%s", rd_kafka_err2str(msg->err));
    }
}

/* --- Kafka callbacks -------------------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    pc_sink_state *s = opaque;
    char desc[256];
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (;;) {
            pc_error err = {0};
            int rc = s->pg ? pc_sink_read_offsets(s, parts, &err) : PC_EUNAVAIL;
            if (rc == 0)
                break;
            if (rc == PC_EUNAVAIL)
                pc_sink_pg_drop(s);
            if (err.code)
                pc_sink_log(s, PC_LOG_WARN, "reading stored offsets: %s", err.msg);
            if (pc_sink_stopping(s) ||
                (!s->pg && pc_sink_pg_recover(s, &err) && pc_sink_stopping(s))) {
                rd_kafka_assign(rk, NULL);
                return;
            }
        }
        if (s->assignment)
            rd_kafka_topic_partition_list_destroy(s->assignment);
        s->assignment = rd_kafka_topic_partition_list_copy(parts);
        pc_sink_describe_offsets(parts, desc, sizeof desc);
        pc_sink_log(s, PC_LOG_INFO, "assigned partitions of %s at stored offsets %s",
                    s->sink->topic, desc);
        rd_kafka_assign(rk, parts);
    } else {
        /* commit what we hold while we still own it; if that fails, discard (still correct:
         * the offsets stay where they were in PostgreSQL) */
        if (s->nmsgs) {
            pc_error err = {0};
            if (pc_sink_commit_batch(s, &err)) {
                pc_sink_log(s, PC_LOG_WARN, "revoke: batch discarded (%s)", err.msg);
                atomic_fetch_add(&s->env->stats->errors, 1);
            }
            pc_sink_batch_discard(s);
        }
        size_t used = 0;
        desc[0] = '\0';
        for (int i = 0; i < parts->cnt && used + 16 < sizeof desc; i++)
            used += (size_t)snprintf(desc + used, sizeof desc - used, "%s%" PRId32, i ? "," : "",
                                     parts->elems[i].partition);
        pc_sink_log(s, PC_LOG_INFO, "partitions %s of %s revoked", desc, s->sink->topic);
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
    pc_sink_state *s = rd_kafka_opaque(rk);
    if (s)
        pc_sink_log(s, level <= 3 ? PC_LOG_ERROR : level == 4 ? PC_LOG_WARN : PC_LOG_INFO,
                    "librdkafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    (void)rk;
    pc_sink_state *s = opaque;
    atomic_fetch_add(&s->env->stats->errors, 1);
    pc_sink_log(s, PC_LOG_WARN, "Kafka: %s: %s (librdkafka reconnects by itself)",
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
int pc_sink_consumer_denied(pc_sink_state *s, const rd_kafka_message_t *msg, pc_error *err)
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
static int client_conf(pc_sink_state *s, rd_kafka_conf_t *c, pc_error *err)
{
    int rc = pc_kafka_conf_client(c, s->m, &s->sink->auth, err);
    if (rc != 0)
        pc_error_prefix(err, "sink %s", s->sink->name);
    return rc;
}

static int make_clients(pc_sink_state *s, pc_error *err)
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

static int setup_columns(pc_sink_state *s, pc_error *err)
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
         * (made in pc_sink_pg_connect), emptied by every COMMIT */
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

static void state_free(pc_sink_state *s)
{
    pc_sink_batch_discard(s);
    if (s->rk)
        rd_kafka_destroy(s->rk);
    if (s->dlq) {
        rd_kafka_flush(s->dlq, 5000);
        rd_kafka_destroy(s->dlq);
    }
    if (s->assignment)
        rd_kafka_topic_partition_list_destroy(s->assignment);
    pc_sink_pg_drop(s);
    free(s->qtable);
    free(s->tname);
    free(s->cols);
    free(s->collist);
    free(s->upsert_sql);
    free(s->staging_sql);
    free(s->parts);
    free(s->targets);
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

/* Converting threads: one per online CPU, at most 8; the manifest's convert_threads wins. */
static size_t convert_threads(const pc_mf_sink *sink)
{
    if (sink->convert_threads > 0)
        return (size_t)sink->convert_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (size_t)n;
}

int pc_sink_run(const pc_manifest *m, const pc_mf_sink *sink, const pc_worker_env *env,
                pc_error *err)
{
    return pc_sink_run_opts(m, sink, env, NULL, NULL, err);
}

#define SINK_CAUGHT_UP_CHECK_MS 500 /* comparisons while nothing commits (--until-caught-up) */

/* --until-caught-up: compares the group's stored offsets with the targets after every commit of
 * this worker and every SINK_CAUGHT_UP_CHECK_MS otherwise (another member may be committing).
 * Never while a COPY is open on the connection (a streamed batch). A failed comparison is only
 * logged: a lost connection is found and recovered by the next commit. */
static bool caught_up_now(pc_sink_state *s)
{
    if (!s->until || !s->pg || s->streaming)
        return false;
    int64_t now = pc_mono_ms();
    if (s->done == s->checked_done && now < s->next_check)
        return false;
    s->checked_done = s->done;
    s->next_check = now + SINK_CAUGHT_UP_CHECK_MS;
    pc_error e = {0};
    bool caught = false;
    if (pc_sink_caught_up(s, &caught, &e)) {
        pc_sink_log(s, PC_LOG_WARN, "--until-caught-up: comparing the stored offsets: %s", e.msg);
        return false;
    }
    return caught;
}

int pc_sink_run_opts(const pc_manifest *m, const pc_mf_sink *sink, const pc_worker_env *env,
                     const pc_sink_opts *opts, pc_sink_report *report, pc_error *err)
{
    pc_sink_state st = {0};
    pc_sink_state *s = &st;
    int rc = 0;
    s->m = m;
    s->sink = sink;
    s->env = env;
    s->upsert = pc_streq(sink->mode, "upsert");
    s->until = opts && opts->until_caught_up;
    s->rnd = (unsigned)(pc_wall_ms() ^ (int64_t)getpid());
    int64_t t0 = pc_mono_ms();
    bool out_of_time = false; /* the loop ended at --duration */
    size_t batch_max = sink->batch_max_records > 0 ? (size_t)sink->batch_max_records : 5000;

    if ((rc = setup_columns(s, err)))
        goto done;
    if ((rc = pc_sink_pool_new(&s->pool, convert_threads(sink), s->cols, s->ncols, err))) {
        pc_error_prefix(err, "sink %s (convert_threads %zu; lower it in the manifest)",
                        sink->name, convert_threads(sink));
        goto done;
    }
    if ((rc = pc_sink_pg_connect(s, err))) {
        if (rc != PC_EUNAVAIL)
            goto done;
        pc_sink_log(s, PC_LOG_WARN, "%s", err->msg);
        pc_error_clear(err);
        if ((rc = pc_sink_pg_recover(s, err)))
            goto done;
    }
    if ((rc = make_clients(s, err)))
        goto done;
    if (s->until) {
        char desc[1024];
        bool caught = false;
        if ((rc = pc_sink_targets_read(s, err)) || (rc = pc_sink_caught_up(s, &caught, err)))
            goto done;
        pc_sink_describe_progress(s, desc, sizeof desc);
        if (caught) {
            s->caught_up = true;
            pc_sink_log(s, PC_LOG_INFO, "sink %s: already caught up with topic %s, nothing to "
                        "drain: %s", sink->name, sink->topic, desc);
            goto done;
        }
        uint64_t backlog = 0, drained = 0;
        pc_sink_backlog(s, &backlog, &drained);
        pc_sink_log(s, PC_LOG_INFO, "sink %s: draining a backlog of %" PRIu64 " records of topic "
                    "%s, then stopping: %s", sink->name, backlog, sink->topic, desc);
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, sink->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t ke = rd_kafka_subscribe(s->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (ke) {
        rc = pc_error_set(err, PC_EUNAVAIL, "Kafka: subscribing to topic %s: %s", sink->topic,
                          rd_kafka_err2str(ke));
        goto done;
    }
    pc_sink_log(s, PC_LOG_INFO, "sink %s: %s -> %s (%s), group pipectl-%s-%s", sink->name,
                sink->topic, s->tname, s->upsert ? "upsert" : "insert", m->name, sink->name);

    for (;;) {
        if (caught_up_now(s)) {
            s->caught_up = true;
            break; /* the batch in progress (records past the targets) commits below */
        }
        /* --duration first: run's backstop stop (2 s after it) must not pass for a signal */
        if (env->duration_ms > 0 && pc_mono_ms() - t0 >= env->duration_ms) {
            out_of_time = true;
            break;
        }
        if (pc_sink_stopping(s))
            break;
        if (env->max_records && s->done >= env->max_records)
            break;
        if (!s->pg) { /* lost in a callback: reconnect and restart from stored offsets */
            if ((rc = pc_sink_commit_or_recover(s, err)))
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
        /* a promoted read-ahead can be a full batch already: take nothing more into it
         * (batch.max_records is a bound users rely on), commit it first */
        bool held_full = s->nmsgs >= batch_max ||
                         (env->max_records && s->done + s->nmsgs >= env->max_records);
        rd_kafka_message_t *msg = held_full ? NULL : rd_kafka_consumer_poll(s->rk, 0);
        if (!msg && !held_full) { /* caught up: convert what we hold now, not at a full chunk */
            pc_sink_chunk_submit(s);
            msg = rd_kafka_consumer_poll(s->rk, timeout);
        }
        if (msg && msg->err) {
            int drc = pc_sink_consumer_denied(s, msg, err);
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                atomic_fetch_add(&env->stats->errors, 1);
                pc_sink_log(s, PC_LOG_WARN, "Kafka: consuming %s: %s", sink->topic,
                            rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            if ((rc = drc))
                goto done;
        } else if (msg && (rc = pc_sink_take_message(s, msg, err))) {
            goto done;
        }
        if ((rc = pc_sink_chunks_collect(s, false, err)))
            goto done;
        if (s->stop_err.code)
            break; /* a record no dead_letter can take: commit what came before it, stop */
        bool full = s->nmsgs >= batch_max ||
                    (env->max_records && s->done + s->nmsgs >= env->max_records);
        if (s->nmsgs && (full || pc_mono_ms() >= s->deadline)) {
            s->window_start = pc_mono_ms();
            if (full && (rc = pc_sink_read_ahead(s, batch_max, err)))
                goto done;
            if ((rc = pc_sink_commit_or_recover(s, err)))
                goto done;
        }
    }
    /* stop: commit the batch in progress (a few tries if PostgreSQL is away) */
    for (int tries = 0; s->nmsgs && tries < 5; tries++) {
        pc_error e = {0};
        if (!s->pg && pc_sink_pg_connect(s, &e) != 0) {
            pc_sink_log(s, PC_LOG_WARN, "stopping: %s", e.msg);
            struct timespec ts = {0, 500000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        int crc = pc_sink_commit_batch(s, &e);
        if (crc == 0)
            break;
        pc_sink_log(s, PC_LOG_WARN, "stopping: batch not committed: %s", e.msg);
        if (crc == PC_ECONFLICT || crc == PC_EINVAL)
            break;
    }
    if (s->nmsgs)
        pc_sink_log(s, PC_LOG_WARN,
                    "stopping with %zu records uncommitted: they will be re-read from "
                    "the stored offsets on the next start",
                    s->nmsgs);
    pc_sink_batch_discard(s);
    rc = s->stop_err.code ? pc_error_set(err, s->stop_err.code, "%s", s->stop_err.msg) : 0;
    if (rc == 0 && s->until && !s->caught_up) {
        /* the last batch may have been the one: compare once more */
        pc_error e = {0};
        bool caught = false;
        if (s->pg && pc_sink_caught_up(s, &caught, &e) == 0)
            s->caught_up = caught;
        char desc[1024];
        pc_sink_describe_progress(s, desc, sizeof desc);
        if (!s->caught_up && out_of_time)
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "sink %s: not caught up with topic %s within --duration %.1fs: %s; "
                              "run it again (it resumes from the stored offsets) or give it "
                              "longer",
                              sink->name, sink->topic, env->duration_ms / 1000.0, desc);
        else if (!s->caught_up)
            pc_sink_log(s, PC_LOG_INFO, "sink %s: stopped before catching up (%s): %s",
                        sink->name, pc_sink_stopping(s) ? "asked to stop" : "--max-records",
                        desc);
    }
    if (rc == 0 && s->until && s->caught_up) {
        char desc[1024];
        pc_sink_describe_progress(s, desc, sizeof desc);
        pc_sink_log(s, PC_LOG_INFO, "sink %s: caught up with topic %s: %s", sink->name,
                    sink->topic, desc);
    }
done:
    if (s->rk) {
        rd_kafka_consumer_close(s->rk); /* leaves the group; revoke commits nothing now */
    }
    if (rc == 0)
        pc_sink_log(s, PC_LOG_INFO, "sink %s stopped: %" PRIu64 " records committed in this run",
                    sink->name, s->done);
    if (report) {
        *report = (pc_sink_report){.caught_up = s->until && s->caught_up};
        pc_sink_backlog(s, &report->backlog, &report->drained);
    }
    state_free(s);
    return rc;
}
