/* caughtup.c: `run SINK --until-caught-up`, draining the backlog and stopping. At start the
 * topic's partitions and each one's watermarks are read from Kafka (every partition, not only
 * those this member is assigned: two members of one group each stop once the group as a whole
 * has caught up); the goal is met when the next offset stored in pipectl.sink_offsets, where
 * every member of the group commits, has reached the high watermark of every partition. Dead
 * letters count: their offsets commit with the batch like the rows'. A partition empty at start
 * (low watermark == high: never written, or every record expired) has nothing to drain. The
 * comparison itself is a single SELECT on the offsets table, made by sink.c's loop after every
 * commit and twice a second while nothing commits (another member may be the one draining). */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "sink_int.h"

#define SINK_WATERMARK_MS 10000 /* each metadata and watermark request */

static bool target_met(const pc_sink_target *t)
{
    return t->lo >= t->hi || t->committed >= t->hi;
}

/* What of partition t's backlog at start is still to commit (never negative). */
static uint64_t target_left(const pc_sink_target *t, int64_t committed)
{
    if (t->lo >= t->hi)
        return 0;
    int64_t from = committed > t->lo ? committed : t->lo;
    return from >= t->hi ? 0 : (uint64_t)(t->hi - from);
}

static int topic_error(pc_sink_state *s, rd_kafka_resp_err_t e, pc_error *err)
{
    if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        return pc_error_set(err, PC_ENOTFOUND,
                            "sink %s: topic %s does not exist in Kafka: run `pipectl apply` to "
                            "create it",
                            s->sink->name, s->sink->topic);
    if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        char *why = pc_kafka_acl_missing(s->m, &s->sink->auth, "topic", s->sink->topic, "describe");
        int rc = pc_error_set(err, PC_EREFUSED, "sink %s: --until-caught-up: %s", s->sink->name,
                              why ? why : "Kafka denied describing the topic (missing ACL)");
        free(why);
        return rc;
    }
    return pc_error_set(err, PC_EUNAVAIL,
                        "sink %s: --until-caught-up: reading the partitions of topic %s: %s "
                        "(is Kafka up? `pipectl status` lists the live brokers)",
                        s->sink->name, s->sink->topic, rd_kafka_err2str(e));
}

int pc_sink_targets_read(pc_sink_state *s, pc_error *err)
{
    const struct rd_kafka_metadata *md = NULL;
    int64_t *stored = NULL;
    int rc = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, s->sink->topic, NULL);
    if (!rkt)
        return pc_error_set(err, PC_ENOMEM, "sink %s: Kafka topic handle for %s: %s", s->sink->name,
                            s->sink->topic, rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 0, rkt, &md, SINK_WATERMARK_MS);
    if (e) {
        rc = topic_error(s, e, err);
        goto done;
    }
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        rc = topic_error(s,
                         md->topic_cnt != 1  ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                         : md->topics[0].err ? md->topics[0].err
                                             : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                         err);
        goto done;
    }
    const rd_kafka_metadata_topic_t *t = &md->topics[0];
    size_t n = 0;
    for (int i = 0; i < t->partition_cnt; i++)
        if (t->partitions[i].id >= 0 && (size_t)t->partitions[i].id + 1 > n)
            n = (size_t)t->partitions[i].id + 1;
    free(s->targets);
    s->targets = calloc(n, sizeof *s->targets);
    stored = calloc(n, sizeof *stored);
    if (!s->targets || !stored) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    s->ntargets = n;
    for (size_t p = 0; p < n; p++) {
        pc_sink_target *tg = &s->targets[p];
        e = rd_kafka_query_watermark_offsets(s->rk, s->sink->topic, (int32_t)p, &tg->lo, &tg->hi,
                                             SINK_WATERMARK_MS);
        if (e) {
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "sink %s: --until-caught-up: reading the high watermark of "
                              "partition %zu of topic %s: %s (is its leader up? `pipectl status` "
                              "shows under-replicated partitions and down brokers)",
                              s->sink->name, p, s->sink->topic, rd_kafka_err2str(e));
            goto done;
        }
    }
    if ((rc = pc_sink_group_offsets(s, stored, n, err))) {
        pc_error_prefix(err, "sink %s: --until-caught-up: reading pipectl.sink_offsets",
                        s->sink->name);
        goto done;
    }
    for (size_t p = 0; p < n; p++)
        s->targets[p].start = s->targets[p].committed = stored[p] < 0 ? 0 : stored[p];
done:
    free(stored);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int pc_sink_caught_up(pc_sink_state *s, bool *caught, pc_error *err)
{
    *caught = false;
    int64_t *stored = calloc(s->ntargets ? s->ntargets : 1, sizeof *stored);
    if (!stored)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    int rc = pc_sink_group_offsets(s, stored, s->ntargets, err);
    if (rc == 0) {
        bool all = true;
        for (size_t p = 0; p < s->ntargets; p++) {
            s->targets[p].committed = stored[p] < 0 ? 0 : stored[p];
            all = all && target_met(&s->targets[p]);
        }
        *caught = all;
    }
    free(stored);
    return rc;
}

void pc_sink_backlog(const pc_sink_state *s, uint64_t *backlog, uint64_t *drained)
{
    uint64_t total = 0, left = 0;
    for (size_t p = 0; p < s->ntargets; p++) {
        total += target_left(&s->targets[p], s->targets[p].start);
        left += target_left(&s->targets[p], s->targets[p].committed);
    }
    *backlog = total;
    *drained = total - (left < total ? left : total);
}

void pc_sink_describe_progress(const pc_sink_state *s, char *out, size_t n)
{
    uint64_t backlog = 0, drained = 0;
    pc_sink_backlog(s, &backlog, &drained);
    int used = snprintf(out, n,
                        "%" PRIu64 " of the %" PRIu64 " records of the backlog at start committed "
                        "(partition: committed next offset/high watermark at start:",
                        drained, backlog);
    for (size_t p = 0; p < s->ntargets && used > 0 && (size_t)used + 48 < n; p++) {
        const pc_sink_target *t = &s->targets[p];
        used += snprintf(out + used, n - (size_t)used, " %zu:%" PRId64 "/%" PRId64 "%s", p,
                         t->committed, t->hi, target_met(t) ? "" : " (behind)");
    }
    if (used > 0 && (size_t)used + 2 < n)
        snprintf(out + used, n - (size_t)used, ")");
}
