/* topics.c: the Kafka adapter's writes (pc_kafka_apply, pc_kafka_apply_topics): each run of
 * topic actions of one kind (CreateTopics, CreatePartitions, AlterConfigs, DeleteTopics) goes
 * out as ONE admin request, each topic's answer is filed on its own, and the batch then waits
 * (bounded) until the cluster shows the change: metadata for creates, partitions and deletes,
 * DescribeConfigs for config changes. */
#include "kafka.h"
#include "kafka_int.h"

#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- apply ---------- */

int pc_kafka_apply(pc_kafka *k, const pc_action *a, pc_error *err)
{
    bool done = false;
    pc_error one = {0};
    if (a == NULL)
        return pc_error_set(err, PC_EINVAL, "no action given to the Kafka adapter");
    return pc_kafka_apply_topics(k, a, 1, &done, &one, err);
}

/* ---------- topic writes, batched ---------- */

/* A batch of topic actions of one kind on their way through one admin request: objs[i] is the
 * request object of a[i] (NULL when it could not be built), pending[i] says a[i] is still
 * going (built, sent, accepted, not yet failed), errs[i] its failure. */
typedef struct topic_batch {
    pc_kafka *k;
    const pc_action *a;
    size_t n;
    void **objs;
    bool *pending;
    pc_error *errs;
    const char *verb;
} topic_batch;

/* One topic's answer inside an admin result: its name, error code and the broker's text. */
typedef struct topic_answer {
    const char *name;
    rd_kafka_resp_err_t err;
    const char *errstr;
} topic_answer;

/* What differs between the four topic requests: how to send the request objects, and how to
 * read the i-th per-topic answer out of the result event (*count set on the first call). */
typedef struct topic_request {
    rd_kafka_admin_op_t op;
    rd_kafka_event_type_t result;
    bool op_timeout;
    void (*send)(rd_kafka_t *rk, void **objs, size_t n, const rd_kafka_AdminOptions_t *o,
                 rd_kafka_queue_t *q);
    size_t (*answers)(rd_kafka_event_t *ev, topic_answer **out);
} topic_request;

/* Fails every pending action of the batch with the same e (each message naming its own topic
 * through the caller's prefix-free text). */
static void batch_fail_all(topic_batch *b, const pc_error *e)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->pending[i]) {
            pc_error_set(&b->errs[i], e->code, "%s", e->msg);
            b->pending[i] = false;
        }
}

/* The index among the batch's pending actions of the one for topic name, or n. */
static size_t batch_find(const topic_batch *b, const char *name)
{
    for (size_t i = 0; name != NULL && i < b->n; i++)
        if (b->pending[i] && strcmp(b->a[i].topic, name) == 0)
            return i;
    return b->n;
}

/* The submit-and-await helper every topic request shares: sends the pending objects of b in
 * ONE request, waits (bounded) for the result, and files each topic's answer in its own
 * errs[i]; pending[i] stays true only for the topics the broker accepted. A failure without
 * per-topic answers (timeout, transport) is filed for every pending topic under its own name. */
static void topic_submit_await(topic_batch *b, const topic_request *r)
{
    pc_kafka *k = b->k;
    const int tmo = PC_KAFKA_OP_TIMEOUT_MS;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_event_t *ev = NULL;
    topic_answer *ans = NULL;
    void **send = calloc(b->n + 1, sizeof *send);
    bool *answered = calloc(b->n + 1, sizeof *answered);
    size_t nsend = 0;
    pc_error e = {0};
    if (q == NULL || send == NULL || answered == NULL) {
        pc_error_set(&e, PC_ENOMEM, "out of memory preparing a Kafka request to %s", k->bootstrap);
        batch_fail_all(b, &e);
        goto done;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->pending[i])
            send[nsend++] = b->objs[i];
    if (nsend == 0)
        goto done;
    if (admin_options(k, r->op, tmo, r->op_timeout, &opts, &e) != 0) {
        batch_fail_all(b, &e);
        goto done;
    }
    clear_last_log(k);
    r->send(k->rk, send, nsend, opts, q);
    ev = await_result(q, r->result, tmo);
    if (ev == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t i = 0; i < b->n; i++) {
            if (!b->pending[i])
                continue;
            if (ev == NULL)
                pc__kafka_op_error(k, &b->errs[i], RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, b->verb,
                                   b->a[i].topic, tmo + PC_KAFKA_QUEUE_SLACK_MS);
            else
                pc__kafka_op_error(k, &b->errs[i], rd_kafka_event_error(ev),
                                   rd_kafka_event_error_string(ev), b->verb, b->a[i].topic, tmo);
            b->pending[i] = false;
        }
        goto done;
    }
    size_t cnt = r->answers(ev, &ans);
    if (cnt > 0 && ans == NULL) {
        pc_error_set(&e, PC_ENOMEM, "out of memory reading Kafka's answer from %s", k->bootstrap);
        batch_fail_all(b, &e);
        goto done;
    }
    for (size_t j = 0; j < cnt; j++) {
        size_t i = batch_find(b, ans[j].name);
        if (i == b->n)
            continue;
        answered[i] = true;
        if (ans[j].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            pc__kafka_op_error(k, &b->errs[i], ans[j].err, ans[j].errstr, b->verb, b->a[i].topic,
                               tmo);
    }
    for (size_t i = 0; i < b->n; i++) {
        if (!b->pending[i])
            continue;
        if (!answered[i])
            pc_error_set(&b->errs[i], PC_EREFUSED,
                         "Kafka at %s gave no result for topic '%s' in its answer to the request "
                         "to %s it: run plan again to see the topic's state",
                         k->bootstrap, b->a[i].topic, b->verb);
        if (b->errs[i].code != 0)
            b->pending[i] = false;
    }
done:
    free(ans);
    free(answered);
    free(send);
    admin_release(ev, q, opts);
}

/* The per-topic answers of CreateTopics, CreatePartitions and DeleteTopics results. */
static size_t topic_results(const rd_kafka_topic_result_t **tr, size_t cnt, topic_answer **out)
{
    *out = cnt > 0 ? calloc(cnt, sizeof **out) : NULL;
    for (size_t j = 0; *out != NULL && j < cnt; j++)
        (*out)[j] =
            (topic_answer){rd_kafka_topic_result_name(tr[j]), rd_kafka_topic_result_error(tr[j]),
                           rd_kafka_topic_result_error_string(tr[j])};
    return cnt;
}

/* Builds each action's request object with build; an action whose object cannot be built
 * fails on its own (errs[i]) and the others go on. */
static void batch_build(topic_batch *b, void *(*build)(pc_kafka *, const pc_action *, pc_error *))
{
    for (size_t i = 0; i < b->n; i++)
        b->pending[i] = (b->objs[i] = build(b->k, &b->a[i], &b->errs[i])) != NULL;
}

/* Ends a batch wait: each pending topic not ok fails with "Kafka at B accepted the request to
 * VERB topic 'T' but WHAT within 30 s (DETAIL): check the broker logs, then run plan again"
 * (without the parenthesis when detail is NULL or its entry empty). */
static void batch_fail_waiting(topic_batch *b, const bool *ok, const char *what,
                               char (*detail)[160])
{
    char secs[32];
    fmt_secs(secs, sizeof secs, PC_KAFKA_OP_TIMEOUT_MS);
    for (size_t i = 0; i < b->n; i++) {
        if (!b->pending[i] || ok[i])
            continue;
        bool has = detail != NULL && detail[i][0] != '\0';
        pc_error_set(&b->errs[i], PC_EUNAVAIL,
                     "Kafka at %s accepted the request to %s topic '%s' but %s within %s%s%s%s: "
                     "check the broker logs, then run plan again",
                     b->k->bootstrap, b->verb, b->a[i].topic, what, secs, has ? " (" : "",
                     has ? detail[i] : "", has ? ")" : "");
        b->pending[i] = false;
    }
}

/* After a write the controller has committed, brokers learn of it a little later; waits
 * (bounded) until every pending topic shows its partitions with leaders (gone = false) or is no
 * longer listed (gone = true). While a small batch waits for leaders, each poll is one metadata
 * request for the batch's topics only (handles on this client make them its locally known
 * topics), not for the whole cluster: on a cluster with thousands of topics a full listing
 * costs the broker far more (measured: 8 ms against 30-500 ms per poll on a broker with 13,000
 * topics). But librdkafka sends a metadata request of its own for each handle made (a leader
 * query), one after another: for 1,000 topics that alone took 0.5 s, and the first poll waited
 * behind them. So a batch of more than WAIT_BY_NAME_MAX topics polls the full listing, whose
 * polls back off (poll_pause) and are few. */
#define WAIT_BY_NAME_MAX 64
static void topic_wait_visible(topic_batch *b, bool gone)
{
    pc_kafka *k = b->k;
    size_t n = b->n, npending = 0;
    int64_t deadline = pc_mono_ms() + PC_KAFKA_OP_TIMEOUT_MS;
    int pause_ms = 0;
    bool *ok = calloc(n + 1, sizeof *ok);
    char(*seen)[160] = calloc(n + 1, sizeof *seen);
    for (size_t i = 0; i < n; i++)
        npending += b->pending[i];
    /* Not for deletes: asking for a deleted topic by name on a broker that auto-creates
     * topics could bring it back; the full listing never creates anything. */
    rd_kafka_topic_t **known =
        gone || npending > WAIT_BY_NAME_MAX ? NULL : calloc(n + 1, sizeof *known);
    bool all_known = known != NULL;
    for (size_t i = 0; known != NULL && i < n; i++)
        if (b->pending[i] && (known[i] = rd_kafka_topic_new(k->rk, b->a[i].topic, NULL)) == NULL)
            all_known = false;
    if (ok == NULL || seen == NULL) {
        pc_error e = {0};
        pc_error_set(&e, PC_ENOMEM, "out of memory waiting for Kafka at %s", k->bootstrap);
        batch_fail_all(b, &e);
        goto done;
    }
    for (size_t i = 0; !gone && i < n; i++)
        snprintf(seen[i], sizeof seen[i], "wanted %d, last seen: no answer", b->a[i].partitions);
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - pc_mono_ms();
        int mt = left < 1000 ? 1000 : (left > k->timeout_ms ? k->timeout_ms : (int)left);
        size_t missing = 0;
        /* all_topics = 0: the locally known topics, i.e. this batch's (the whole listing only
         * if a handle could not be made) */
        if (rd_kafka_metadata(k->rk, all_known ? 0 : 1, NULL, &md, mt) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            pc_index listed = {0};
            pc_index_add_array(&listed, md->topics, (size_t)md->topic_cnt, sizeof *md->topics,
                               offsetof(rd_kafka_metadata_topic_t, topic));
            bool indexed = pc_index_sort(&listed) == 0;
            for (size_t i = 0; i < n; i++) {
                if (!b->pending[i] || ok[i])
                    continue;
                const rd_kafka_metadata_topic_t *t = indexed
                                                         ? pc_index_find(&listed, b->a[i].topic)
                                                         : pc__kafka_md_topic(md, b->a[i].topic);
                if (t != NULL && t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                    t = NULL; /* as md_topic: being deleted */
                if (gone) {
                    ok[i] = t == NULL;
                    snprintf(seen[i], sizeof seen[i], "the topic is still listed");
                } else if (t == NULL) {
                    snprintf(seen[i], sizeof seen[i],
                             "wanted %d, last seen: the topic is not "
                             "listed yet",
                             b->a[i].partitions);
                } else {
                    int leaders = 0;
                    for (int p = 0; p < t->partition_cnt; p++)
                        if (t->partitions[p].leader >= 0)
                            leaders++;
                    /* partitions <= 0: the broker's default count, any will do */
                    ok[i] = t->partition_cnt > 0 && leaders == t->partition_cnt &&
                            (b->a[i].partitions <= 0 || t->partition_cnt == b->a[i].partitions);
                    snprintf(seen[i], sizeof seen[i],
                             "wanted %d, last seen: %d partitions, %d with a leader",
                             b->a[i].partitions, t->partition_cnt, leaders);
                }
                missing += !ok[i];
            }
            pc_index_free(&listed);
            rd_kafka_metadata_destroy(md);
            if (missing == 0)
                break;
        }
        if (!poll_pause(&pause_ms, deadline))
            break;
    }
    batch_fail_waiting(b, ok,
                       gone ? "its metadata did not show the change"
                            : "its metadata did not show its partitions with leaders",
                       seen);
done:
    for (size_t i = 0; known != NULL && i < n; i++)
        if (known[i] != NULL)
            rd_kafka_topic_destroy(known[i]);
    free(known);
    free(ok);
    free(seen);
}

/* --- CreateTopics --- */

static void *new_topic(pc_kafka *k, const pc_action *a, pc_error *err)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
        a->topic, a->partitions > 0 ? a->partitions : -1,
        a->replication_factor > 0 ? a->replication_factor : -1, errstr, sizeof errstr);
    if (nt == NULL) {
        pc_error_set(err, PC_EINVAL, "cannot create topic '%s' on Kafka at %s: %s", a->topic,
                     k->bootstrap, errstr);
        return NULL;
    }
    for (size_t i = 0; i < a->configs.n; i++) {
        const pc_kv *kv = &a->configs.items[i];
        if (rd_kafka_NewTopic_set_config(nt, kv->key, kv->value) != 0) {
            pc_error_set(err, PC_EINVAL,
                         "cannot create topic '%s' on Kafka at %s: invalid config entry '%s'",
                         a->topic, k->bootstrap, kv->key ? kv->key : "(null)");
            rd_kafka_NewTopic_destroy(nt);
            return NULL;
        }
    }
    return nt;
}

static void send_create(rd_kafka_t *rk, void **objs, size_t n, const rd_kafka_AdminOptions_t *o,
                        rd_kafka_queue_t *q)
{
    rd_kafka_CreateTopics(rk, (rd_kafka_NewTopic_t **)objs, n, o, q);
}

static size_t answers_create(rd_kafka_event_t *ev, topic_answer **out)
{
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    return topic_results(tr, cnt, out);
}

static void create_topics(topic_batch *b)
{
    static const topic_request r = {RD_KAFKA_ADMIN_OP_CREATETOPICS,
                                    RD_KAFKA_EVENT_CREATETOPICS_RESULT, true, send_create,
                                    answers_create};
    batch_build(b, new_topic);
    topic_submit_await(b, &r);
    topic_wait_visible(b, false);
    for (size_t i = 0; i < b->n; i++)
        if (b->objs[i] != NULL)
            rd_kafka_NewTopic_destroy(b->objs[i]);
}

/* --- CreatePartitions --- */

static void *new_partitions(pc_kafka *k, const pc_action *a, pc_error *err)
{
    char errstr[512];
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(
        a->topic, (size_t)(a->partitions > 0 ? a->partitions : 0), errstr, sizeof errstr);
    if (np == NULL)
        pc_error_set(err, PC_EINVAL, "cannot grow topic '%s' on Kafka at %s to %d partitions: %s",
                     a->topic, k->bootstrap, a->partitions, errstr);
    return np;
}

static void send_partitions(rd_kafka_t *rk, void **objs, size_t n, const rd_kafka_AdminOptions_t *o,
                            rd_kafka_queue_t *q)
{
    rd_kafka_CreatePartitions(rk, (rd_kafka_NewPartitions_t **)objs, n, o, q);
}

static size_t answers_partitions(rd_kafka_event_t *ev, topic_answer **out)
{
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
    return topic_results(tr, cnt, out);
}

static void create_partitions(topic_batch *b)
{
    static const topic_request r = {RD_KAFKA_ADMIN_OP_CREATEPARTITIONS,
                                    RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT, true, send_partitions,
                                    answers_partitions};
    batch_build(b, new_partitions);
    topic_submit_await(b, &r);
    topic_wait_visible(b, false);
    for (size_t i = 0; i < b->n; i++)
        if (b->objs[i] != NULL)
            rd_kafka_NewPartitions_destroy(b->objs[i]);
}

/* --- AlterConfigs --- */

static void *config_resource(pc_kafka *k, const pc_action *a, pc_error *err)
{
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, a->topic);
    if (cr == NULL) {
        pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s", k->bootstrap);
        return NULL;
    }
    /* AlterConfigs (non-incremental) replaces the topic's whole override set: a->configs is
     * that complete set, computed by the plan. */
    for (size_t i = 0; i < a->configs.n; i++) {
        const pc_kv *kv = &a->configs.items[i];
        if (kv->key != NULL && kv->value == NULL) {
            /* The broker hid this override (sensitive or null): resending the set without it
             * would silently reset it, so refuse instead. */
            pc_error_set(err, PC_EREFUSED,
                         "cannot change the configuration of topic '%s' on Kafka at %s: its "
                         "override '%s' is hidden by the broker (sensitive), and AlterConfigs "
                         "would reset it; declare '%s' in the manifest or change the topic with "
                         "kafka-configs",
                         a->topic, k->bootstrap, kv->key, kv->key);
            rd_kafka_ConfigResource_destroy(cr);
            return NULL;
        }
        if (kv->key == NULL || rd_kafka_ConfigResource_set_config(cr, kv->key, kv->value)) {
            pc_error_set(err, PC_EINVAL,
                         "cannot change the configuration of topic '%s' on Kafka at %s: invalid "
                         "config entry '%s'",
                         a->topic, k->bootstrap, kv->key ? kv->key : "(null)");
            rd_kafka_ConfigResource_destroy(cr);
            return NULL;
        }
    }
    return cr;
}

static void send_configs(rd_kafka_t *rk, void **objs, size_t n, const rd_kafka_AdminOptions_t *o,
                         rd_kafka_queue_t *q)
{
    rd_kafka_AlterConfigs(rk, (rd_kafka_ConfigResource_t **)objs, n, o, q);
}

static size_t answers_configs(rd_kafka_event_t *ev, topic_answer **out)
{
    size_t cnt = 0;
    const rd_kafka_ConfigResource_t **rr =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
    *out = cnt > 0 ? calloc(cnt, sizeof **out) : NULL;
    for (size_t j = 0; *out != NULL && j < cnt; j++)
        (*out)[j] = (topic_answer){rd_kafka_ConfigResource_name(rr[j]),
                                   rd_kafka_ConfigResource_error(rr[j]),
                                   rd_kafka_ConfigResource_error_string(rr[j])};
    return cnt;
}

/* After AlterConfigs, waits (bounded) until DescribeConfigs reports exactly the requested keys
 * with the requested values as each pending topic's overrides, so that a following observe sees
 * the new set. A broker may store a value in its own spelling; once the keys match, a value that
 * still differs after a short grace period is accepted as such. Each poll is one DescribeConfigs
 * for every topic still waiting (one request per topic took 2.4 s for 1,000 topics). */
static void wait_configs(topic_batch *b)
{
    pc_kafka *k = b->k;
    size_t n = b->n;
    int64_t deadline = pc_mono_ms() + PC_KAFKA_OP_TIMEOUT_MS;
    int pause_ms = 0;
    const int grace_ms = 3000;
    pc_obs_topic *t = calloc(n + 1, sizeof *t);
    pc_obs_topic **ask = calloc(n + 1, sizeof *ask);
    int64_t *keys_since = calloc(n + 1, sizeof *keys_since);
    bool *ok = calloc(n + 1, sizeof *ok);
    if (t == NULL || ask == NULL || keys_since == NULL || ok == NULL) {
        pc_error e = {0};
        pc_error_set(&e, PC_ENOMEM, "out of memory waiting for Kafka at %s", k->bootstrap);
        batch_fail_all(b, &e);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        keys_since[i] = -1;
        ok[i] = !b->pending[i];
    }
    for (;;) {
        size_t nask = 0;
        for (size_t i = 0; i < n; i++) {
            t[i].name = NULL; /* borrowed */
            pc__kafka_topic_clear(&t[i]);
            t[i] = (pc_obs_topic){.name = b->a[i].topic};
            if (!ok[i])
                ask[nask++] = &t[i];
        }
        if (nask == 0)
            break;
        pc_error e2 = {0};
        if (pc__kafka_describe_configs(k, ask, nask, &e2) == 0) {
            nask = 0;
            for (size_t i = 0; i < n; i++) {
                if (ok[i])
                    continue;
                const pc_action *a = &b->a[i];
                size_t overrides = 0;
                bool keys_ok = true, values_ok = true;
                for (size_t c = 0; c < t[i].nconfigs; c++) {
                    if (t[i].configs[c].source != PC_CFG_TOPIC_OVERRIDE)
                        continue;
                    overrides++;
                    const char *want = pc_kvlist_get(&a->configs, t[i].configs[c].key);
                    if (want == NULL)
                        keys_ok = false;
                    else if (t[i].configs[c].value != NULL &&
                             strcmp(want, t[i].configs[c].value) != 0)
                        values_ok = false;
                }
                if (overrides != a->configs.n)
                    keys_ok = false;
                if (!keys_ok)
                    keys_since[i] = -1;
                else if (keys_since[i] < 0)
                    keys_since[i] = pc_mono_ms();
                ok[i] = keys_ok && (values_ok || pc_mono_ms() - keys_since[i] >= grace_ms);
                nask += !ok[i];
            }
            if (nask == 0)
                break;
        }
        if (!poll_pause(&pause_ms, deadline))
            break;
    }
    batch_fail_waiting(b, ok, "DescribeConfigs did not show the new overrides", NULL);
done:
    for (size_t i = 0; t != NULL && i < n; i++) {
        t[i].name = NULL; /* borrowed */
        pc__kafka_topic_clear(&t[i]);
    }
    free(t);
    free(ask);
    free(keys_since);
    free(ok);
}

static void alter_configs(topic_batch *b)
{
    /* AlterConfigs takes no operation timeout */
    static const topic_request r = {RD_KAFKA_ADMIN_OP_ALTERCONFIGS,
                                    RD_KAFKA_EVENT_ALTERCONFIGS_RESULT, false, send_configs,
                                    answers_configs};
    batch_build(b, config_resource);
    topic_submit_await(b, &r);
    wait_configs(b);
    for (size_t i = 0; i < b->n; i++)
        if (b->objs[i] != NULL)
            rd_kafka_ConfigResource_destroy(b->objs[i]);
}

/* --- DeleteTopics --- */

static void *delete_topic(pc_kafka *k, const pc_action *a, pc_error *err)
{
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(a->topic);
    if (dt == NULL)
        pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s", k->bootstrap);
    return dt;
}

static void send_delete(rd_kafka_t *rk, void **objs, size_t n, const rd_kafka_AdminOptions_t *o,
                        rd_kafka_queue_t *q)
{
    rd_kafka_DeleteTopics(rk, (rd_kafka_DeleteTopic_t **)objs, n, o, q);
}

static size_t answers_delete(rd_kafka_event_t *ev, topic_answer **out)
{
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
    return topic_results(tr, cnt, out);
}

static void delete_topics(topic_batch *b)
{
    static const topic_request r = {RD_KAFKA_ADMIN_OP_DELETETOPICS,
                                    RD_KAFKA_EVENT_DELETETOPICS_RESULT, true, send_delete,
                                    answers_delete};
    batch_build(b, delete_topic);
    topic_submit_await(b, &r);
    topic_wait_visible(b, true);
    for (size_t i = 0; i < b->n; i++)
        if (b->objs[i] != NULL)
            rd_kafka_DeleteTopic_destroy(b->objs[i]);
}

/* The topic actions this adapter performs, one admin operation each. Any other kind is another
 * system's (pc_action_system_of) or an ACL's (pc_kafka_apply_acls). */
static const struct topic_op {
    pc_action_kind kind;
    const char *verb;
    void (*perform)(topic_batch *b);
} TOPIC_OPS[] = {
    {PC_ACT_TOPIC_CREATE, "create", create_topics},
    {PC_ACT_TOPIC_PARTITIONS, "add partitions to", create_partitions},
    {PC_ACT_TOPIC_CONFIG, "change the configuration of", alter_configs},
    {PC_ACT_TOPIC_DELETE, "delete", delete_topics},
};

static const struct topic_op *topic_op_of(pc_action_kind kind)
{
    for (size_t i = 0; i < sizeof TOPIC_OPS / sizeof TOPIC_OPS[0]; i++)
        if (TOPIC_OPS[i].kind == kind)
            return &TOPIC_OPS[i];
    return NULL;
}

int pc_kafka_apply_topics(pc_kafka *k, const pc_action *a, size_t n, bool *done, pc_error *errs,
                          pc_error *err)
{
    if (n == 0)
        return 0;
    const struct topic_op *op = topic_op_of(a[0].kind);
    for (size_t i = 0; i < n; i++) {
        done[i] = false;
        pc_error_clear(&errs[i]);
        if (op == NULL || a[i].kind != op->kind)
            return pc_error_set(err, PC_EINVAL,
                                "the Kafka adapter cannot perform the action on %s '%s': not a "
                                "topic action of one kind (it is %s's)",
                                a[i].system ? a[i].system : "?", a[i].object ? a[i].object : "?",
                                pc_action_system_name(pc_action_system_of(a[i].kind)));
        if (a[i].topic == NULL || *a[i].topic == '\0')
            return pc_error_set(err, PC_EINVAL, "a Kafka topic action without a topic name");
    }
    topic_batch b = {.k = k, .a = a, .n = n, .verb = op->verb, .errs = errs};
    b.objs = calloc(n + 1, sizeof *b.objs);
    b.pending = calloc(n + 1, sizeof *b.pending);
    if (b.objs == NULL || b.pending == NULL) {
        free(b.objs);
        free(b.pending);
        return pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s",
                            k->bootstrap);
    }
    op->perform(&b);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        done[i] = b.pending[i];
        if (!done[i] && rc == 0)
            rc = pc_error_set(err, errs[i].code ? errs[i].code : PC_EREFUSED, "%s", errs[i].msg);
    }
    free(b.objs);
    free(b.pending);
    return rc;
}
