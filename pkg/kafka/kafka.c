/* kafka.c: the Kafka adapter over librdkafka's admin API (librdkafka 2.0.2, so no
 * IncrementalAlterConfigs and no DescribeTopics: partitions and replicas come from a metadata
 * request, configs from DescribeConfigs, and a config change replaces the topic's whole override
 * set through AlterConfigs).
 *
 * Every call is bounded: admin requests carry a request timeout and their result is awaited on a
 * private queue with a deadline slightly past it. librdkafka's own logging goes to a callback
 * that keeps the last warning or error, so the library never prints and a failure message can
 * say what the client saw (connection refused, name resolution, ...). */
#include "kafka.h"
#include "kafka_int.h"

#include <librdkafka/rdkafka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---------- small helpers (the shared ones are in kafka_int.h) ---------- */

/* librdkafka calls this from its own threads. Keep warnings and errors (syslog levels 0-4) and
 * connection failures (facility FAIL, which librdkafka logs at level 6 for some of the most
 * telling ones: "connecting to a SSL listener?"); the rest is debug chatter. The summary
 * "N/N brokers are down" never replaces the reason already kept. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    pc_kafka *k = rd_kafka_opaque(rk);
    if (k == NULL || !k->log_lock_init || (level > 4 && strcmp(fac, "FAIL") != 0))
        return;
    pthread_mutex_lock(&k->log_lock);
    /* the follow-up of a verification failure says less than the failure itself */
    bool generic = strstr(buf, "brokers are down") != NULL ||
                   (strstr(buf, "certificate verify failed") != NULL &&
                    strstr(k->last_log, "verification callback failed") != NULL);
    if (k->last_log[0] == '\0' || !generic)
        snprintf(k->last_log, sizeof k->last_log, "%s", buf);
    pthread_mutex_unlock(&k->log_lock);
}

/* "Kafka at X refused to create topic 'users': <broker text> (<err2str>)", or, when no answer
 * came, "Kafka at X did not answer ...". detail is the broker's error string (may be NULL). */
static int op_error(pc_kafka *k, pc_error *err, rd_kafka_resp_err_t e, const char *detail,
                    const char *verb, const char *topic, int wait_ms)
{
    const char *es = rd_kafka_err2str(e);
    int code = code_for(e);
    if (code == PC_EUNAVAIL) {
        char secs[32], lastlog[512];
        fmt_secs(secs, sizeof secs, wait_ms);
        last_log(k, lastlog, sizeof lastlog);
        return pc_error_set(err, PC_EUNAVAIL,
                            "Kafka at %s did not answer a request to %s topic '%s' within %s "
                            "(%s%s%s%s%s): check that the broker is running and reachable, "
                            "then retry",
                            k->bootstrap, verb, topic, secs, es,
                            detail && *detail && strcmp(detail, es) != 0 ? "; " : "",
                            detail && *detail && strcmp(detail, es) != 0 ? detail : "",
                            lastlog[0] ? "; last client error: " : "", lastlog);
    }
    if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
        return pc_error_set(err, PC_EREFUSED,
                            "Kafka at %s denied %s the right to %s topic '%s' (%s): the "
                            "controller's principal (kafka.security) needs ACLs on the topics it "
                            "manages (create, alter, alter_configs, describe, describe_configs, "
                            "delete) and on the cluster (describe, and alter for kafka.acls), or "
                            "to be a super user",
                            k->bootstrap, k->principal ? k->principal : "this client", verb, topic,
                            es);
    if (detail != NULL && *detail != '\0' && strcmp(detail, es) != 0)
        return pc_error_set(err, code, "Kafka at %s refused to %s topic '%s': %s (%s)",
                            k->bootstrap, verb, topic, detail, es);
    return pc_error_set(err, code, "Kafka at %s refused to %s topic '%s': %s", k->bootstrap, verb,
                        topic, es);
}

/* ---------- open / free ---------- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, const char *bootstrap,
                    pc_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return pc_error_set(err, PC_EINVAL,
                            "Kafka client for %s: cannot set %s=%s: %s: check kafka.bootstrap in "
                            "the manifest",
                            bootstrap, key, val, errstr);
    return 0;
}

void pc_kafka_free(pc_kafka *k)
{
    if (k == NULL)
        return;
    if (k->rk != NULL)
        rd_kafka_destroy(k->rk);
    if (k->log_lock_init)
        pthread_mutex_destroy(&k->log_lock);
    free(k->bootstrap);
    free(k->principal);
    free(k);
}

/* m and auth may be NULL: a plaintext client with no client_config (tests). */
static int open_client(pc_kafka **out, const char *bootstrap, const pc_manifest *m,
                       const pc_mf_kafka_auth *auth, int timeout_ms, pc_error *err)
{
    int rc = 0;
    pc_kafka *k = NULL;
    rd_kafka_conf_t *conf = NULL;
    const struct rd_kafka_metadata *md = NULL;
    char errstr[512], num[32];

    *out = NULL;
    if (bootstrap == NULL || *bootstrap == '\0')
        return pc_error_set(err, PC_EINVAL,
                            "no Kafka bootstrap servers given: set kafka.bootstrap in the manifest "
                            "(host:port[,host:port])");
    if (timeout_ms <= 0)
        timeout_ms = 10000;

    k = calloc(1, sizeof *k);
    if (k == NULL || (k->bootstrap = strdup(bootstrap)) == NULL ||
        (auth != NULL && auth->principal != NULL &&
         (k->principal = strdup(auth->principal)) == NULL)) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory opening the Kafka client for %s",
                          bootstrap);
        goto done;
    }
    k->timeout_ms = timeout_ms;
    if (pthread_mutex_init(&k->log_lock, NULL) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "cannot create a mutex for the Kafka client for %s",
                          bootstrap);
        goto done;
    }
    k->log_lock_init = true;

    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory opening the Kafka client for %s",
                          bootstrap);
        goto done;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, k);
    if ((rc = conf_set(conf, "bootstrap.servers", bootstrap, bootstrap, err)) != 0 ||
        (rc = conf_set(conf, "client.id", "pipectl", bootstrap, err)) != 0 ||
        (rc = conf_set(conf, "log_level", "6", bootstrap, err)) != 0)
        goto done;
    snprintf(num, sizeof num, "%d", timeout_ms < 1000 ? 1000 : timeout_ms);
    if ((rc = conf_set(conf, "socket.connection.setup.timeout.ms", num, bootstrap, err)) != 0)
        goto done;
    snprintf(num, sizeof num, "%d", timeout_ms < 10 ? 10 : timeout_ms);
    if ((rc = conf_set(conf, "socket.timeout.ms", num, bootstrap, err)) != 0)
        goto done;
    /* Reconnect attempts stay frequent enough to catch a broker that comes up during the wait. */
    if ((rc = conf_set(conf, "reconnect.backoff.max.ms", "1000", bootstrap, err)) != 0)
        goto done;
    if (m != NULL && (rc = pc_kafka_conf_client(conf, m, auth, err)) != 0) {
        pc_error_prefix(err, "Kafka at %s", bootstrap);
        goto done;
    }
    /* This client asks for metadata of topics it is about to create or has just deleted: on a
     * broker with auto.create.topics.enable (Kafka's default) such a request must never create
     * them. Set after client_config, which cannot turn it back on here. */
    if ((rc = conf_set(conf, "allow.auto.create.topics", "false", bootstrap, err)) != 0)
        goto done;

    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (k->rk == NULL) {
        char hint[512];
        if (pc_kafka_hint(errstr, auth, hint, sizeof hint)[0] != '\0')
            rc = pc_error_set(err, PC_EINVAL, "Kafka client for %s, as %s: %s (%s)", bootstrap,
                              auth && auth->principal ? auth->principal : "no principal", hint,
                              errstr);
        else
            rc = pc_error_set(err, PC_EINVAL,
                              "cannot create a Kafka client for %s: %s: check kafka.bootstrap "
                              "and kafka.security in the manifest",
                              bootstrap, errstr);
        goto done;
    }
    conf = NULL; /* owned by rk now */

    /* In slices, so that an error no retry will cure (credentials refused, a certificate not
     * trusted, TLS against a plaintext listener) ends the wait at once instead of at the
     * timeout. all_topics = 0 and no topic known yet: a brokers-only request, which proves the
     * connection and the credentials as well as a listing of every topic would, without
     * costing a large cluster one (observe lists them anyway when it needs them). */
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    bool refused = false;
    for (int64_t deadline = pc_mono_ms() + timeout_ms, t0 = pc_mono_ms();;) {
        int64_t left = deadline - pc_mono_ms();
        e = rd_kafka_metadata(k->rk, 0, NULL, &md, (int)(left < 500 ? (left > 0 ? left : 1) : 500));
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || left <= 500)
            break;
        char seen[512], h[512];
        last_log(k, seen, sizeof seen);
        if (auth != NULL && pc_kafka_hint(seen, auth, h, sizeof h)[0] != '\0')
            break;
        /* nothing listens there: a restarting broker is back within a couple of seconds;
         * waiting out the whole timeout would only hide the answer */
        refused = strstr(seen, "Connection refused") != NULL;
        if (refused && pc_mono_ms() - t0 >= 2500)
            break;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char secs[32], lastlog[512];
        fmt_secs(secs, sizeof secs, timeout_ms);
        last_log(k, lastlog, sizeof lastlog);
        char hint[512];
        pc_kafka_hint(lastlog, auth, hint, sizeof hint);
        if (hint[0] == '\0' && refused && strstr(lastlog, "Connection refused") != NULL)
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "Kafka at %s refused the connection: nothing listens there (%s): "
                              "check kafka.bootstrap in the manifest and that the broker is "
                              "running",
                              bootstrap, lastlog);
        else if (hint[0] != '\0')
            rc = pc_error_set(err, PC_EREFUSED, "Kafka at %s, as %s over %s: %s (%s)", bootstrap,
                              auth && auth->principal ? auth->principal : "no principal",
                              auth && auth->protocol ? auth->protocol : "plaintext", hint,
                              lastlog);
        else
            rc = pc_error_set(err, err_is_unavailable(e) ? PC_EUNAVAIL : PC_EREFUSED,
                              "Kafka at %s did not answer a metadata request within %s (%s%s%s): "
                              "check kafka.bootstrap in the manifest and that the broker is "
                              "running",
                              bootstrap, secs, rd_kafka_err2str(e),
                              lastlog[0] ? "; last client error: " : "", lastlog);
        goto done;
    }
    *out = k;
    k = NULL;

done:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    pc_kafka_free(k);
    return rc;
}

int pc_kafka_open(pc_kafka **out, const char *bootstrap, int timeout_ms, pc_error *err)
{
    return open_client(out, bootstrap, NULL, NULL, timeout_ms, err);
}

int pc_kafka_open_manifest(pc_kafka **out, const pc_manifest *m, int timeout_ms, pc_error *err)
{
    return open_client(out, m->kafka_bootstrap, m, &m->kafka_auth, timeout_ms, err);
}

/* ---------- metadata ---------- */

static const rd_kafka_metadata_topic_t *md_topic(const struct rd_kafka_metadata *md,
                                                 const char *name)
{
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0 &&
            md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            return &md->topics[i];
    return NULL;
}

static int replicas_of_partition0(const rd_kafka_metadata_topic_t *t)
{
    for (int p = 0; p < t->partition_cnt; p++)
        if (t->partitions[p].id == 0)
            return t->partitions[p].replica_cnt;
    return t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;
}

/* Live brokers, and the ids that replica sets name but the metadata does not list: brokers
 * that are down (Kafka keeps a dead broker's replicas assigned to it). */
static int observe_brokers(pc_kafka *k, const struct rd_kafka_metadata *md, pc_observed *o,
                           pc_error *err)
{
    o->kafka_brokers = md->broker_cnt;
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        for (int p = 0; p < mt->partition_cnt; p++) {
            for (int r = 0; r < mt->partitions[p].replica_cnt; r++) {
                int32_t id = mt->partitions[p].replicas[r];
                bool live = false, known = false;
                for (int b = 0; b < md->broker_cnt && !live; b++)
                    live = md->brokers[b].id == id;
                for (size_t d = 0; d < o->ndown_brokers && !known; d++)
                    known = o->down_brokers[d] == id;
                if (live || known)
                    continue;
                int *t = realloc(o->down_brokers, (o->ndown_brokers + 1) * sizeof *t);
                if (t == NULL)
                    return pc_error_set(err, PC_ENOMEM, "out of memory reading brokers of %s",
                                        k->bootstrap);
                size_t at = o->ndown_brokers;
                while (at > 0 && t[at - 1] > id) {
                    t[at] = t[at - 1];
                    at--;
                }
                t[at] = id;
                o->down_brokers = t;
                o->ndown_brokers++;
            }
        }
    }
    return 0;
}

static int fetch_metadata(pc_kafka *k, const struct rd_kafka_metadata **md, int timeout_ms,
                          pc_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 1, NULL, md, timeout_ms);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    *md = NULL;
    char secs[32], lastlog[512];
    fmt_secs(secs, sizeof secs, timeout_ms);
    last_log(k, lastlog, sizeof lastlog);
    return pc_error_set(err, err_is_unavailable(e) ? PC_EUNAVAIL : PC_EREFUSED,
                        "Kafka at %s did not answer a metadata request within %s (%s%s%s): "
                        "check that the broker is running",
                        k->bootstrap, secs, rd_kafka_err2str(e),
                        lastlog[0] ? "; last client error: " : "", lastlog);
}

/* ---------- DescribeConfigs ---------- */

static void topic_clear(pc_obs_topic *t)
{
    free(t->name);
    free(t->under_replicated_ids);
    for (size_t j = 0; j < t->nconfigs; j++) {
        free(t->configs[j].key);
        free(t->configs[j].value);
    }
    free(t->configs);
    memset(t, 0, sizeof *t);
}

/* Copies a DescribeConfigs resource's entries into t->configs. */
static int copy_configs(pc_kafka *k, const rd_kafka_ConfigResource_t *res, pc_obs_topic *t,
                        pc_error *err)
{
    size_t n = 0;
    const rd_kafka_ConfigEntry_t **ents = rd_kafka_ConfigResource_configs(res, &n);
    pc_obs_config *cfg = n > 0 ? calloc(n, sizeof *cfg) : NULL;
    if (n > 0 && cfg == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const char *name = rd_kafka_ConfigEntry_name(ents[i]);
        const char *val = rd_kafka_ConfigEntry_value(ents[i]);
        cfg[i].key = strdup(name ? name : "");
        if (cfg[i].key == NULL)
            goto oom_partial;
        if (val != NULL && !rd_kafka_ConfigEntry_is_sensitive(ents[i])) {
            cfg[i].value = strdup(val);
            if (cfg[i].value == NULL)
                goto oom_partial;
        }
        cfg[i].source =
            rd_kafka_ConfigEntry_source(ents[i]) == RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG
                ? PC_CFG_TOPIC_OVERRIDE
                : PC_CFG_DEFAULT;
    }
    t->configs = cfg;
    t->nconfigs = n;
    t->configs_known = true;
    return 0;

oom_partial:
    for (size_t i = 0; i < n; i++) {
        free(cfg[i].key);
        free(cfg[i].value);
    }
    free(cfg);
oom:
    return pc_error_set(err, PC_ENOMEM, "out of memory reading configs of topic '%s' from %s",
                        t->name, k->bootstrap);
}

/* One DescribeConfigs request for topics[0..n) (pointers into the caller's array, which gets
 * configs filled in). */
static int describe_configs(pc_kafka *k, pc_obs_topic **topics, size_t n, pc_error *err)
{
    int rc = 0;
    rd_kafka_ConfigResource_t **res = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int tmo = k->timeout_ms;
    pc_index asked = {0}; /* topics by name */

    if (n == 0)
        return 0;
    res = calloc(n, sizeof *res);
    if (res == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory describing topic configs on %s",
                          k->bootstrap);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i]->name);
        if (res[i] == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory describing topic configs on %s",
                              k->bootstrap);
            goto done;
        }
    }
    if ((rc = admin_options(k, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, tmo, false, &opts, err)) != 0)
        goto done;
    q = rd_kafka_queue_new(k->rk);
    if (q == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory describing topic configs on %s",
                          k->bootstrap);
        goto done;
    }
    clear_last_log(k);
    rd_kafka_DescribeConfigs(k->rk, res, n, opts, q);
    ev = await_result(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, tmo);
    if (ev == NULL) {
        rc = op_error(k, err, RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, "describe the configs of",
                      topics[0]->name, tmo + PC_KAFKA_QUEUE_SLACK_MS);
        goto done;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = op_error(k, err, rd_kafka_event_error(ev), rd_kafka_event_error_string(ev),
                      "describe the configs of", topics[0]->name, tmo);
        goto done;
    }
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **rr =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    for (size_t j = 0; j < n; j++)
        pc_index_add(&asked, topics[j]->name, topics[j]);
    if (pc_index_sort(&asked) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topic configs from Kafka at %s",
                          k->bootstrap);
        goto done;
    }
    for (size_t i = 0; i < nres; i++) {
        const char *name = rd_kafka_ConfigResource_name(rr[i]);
        pc_obs_topic *t = (pc_obs_topic *)pc_index_find(&asked, name);
        if (t == NULL)
            continue;
        rd_kafka_resp_err_t e = rd_kafka_ConfigResource_error(rr[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = op_error(k, err, e, rd_kafka_ConfigResource_error_string(rr[i]),
                          "describe the configs of", name, tmo);
            goto done;
        }
        if ((rc = copy_configs(k, rr[i], t, err)) != 0)
            goto done;
    }
    for (size_t j = 0; j < n; j++)
        if (!topics[j]->configs_known) {
            rc = pc_error_set(err, PC_EREFUSED,
                              "Kafka at %s returned no configs for topic '%s' in its "
                              "DescribeConfigs answer: check the broker version and ACLs",
                              k->bootstrap, topics[j]->name);
            goto done;
        }

done:
    admin_release(ev, q, opts);
    pc_index_free(&asked);
    if (res != NULL) {
        for (size_t i = 0; i < n; i++)
            if (res[i] != NULL)
                rd_kafka_ConfigResource_destroy(res[i]);
        free(res);
    }
    return rc;
}

/* ---------- observe ---------- */

int pc_kafka_observe(pc_kafka *k, const char *const *describe, size_t ndescribe, pc_observed *o,
                     pc_error *err)
{
    int rc = 0;
    const struct rd_kafka_metadata *md = NULL;
    pc_obs_topic *topics = NULL;
    size_t ntopics = 0;
    pc_obs_topic **want = NULL;
    size_t nwant = 0;
    pc_index wanted = {0}; /* the names in describe */

    pc_index_add_array(&wanted, describe, ndescribe, sizeof *describe, 0);
    if (pc_index_sort(&wanted) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topics from Kafka at %s",
                          k->bootstrap);
        goto done;
    }
    if ((rc = fetch_metadata(k, &md, k->timeout_ms, err)) != 0)
        goto done;
    if ((rc = observe_brokers(k, md, o, err)) != 0)
        goto done;
    if (md->topic_cnt > 0) {
        topics = calloc((size_t)md->topic_cnt, sizeof *topics);
        want = calloc((size_t)md->topic_cnt, sizeof *want);
        if (topics == NULL || want == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topics from Kafka at %s",
                              k->bootstrap);
            goto done;
        }
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        if (mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue; /* being deleted */
        pc_obs_topic *t = &topics[ntopics];
        t->name = strdup(mt->topic);
        if (t->name == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topics from Kafka at %s",
                              k->bootstrap);
            goto done;
        }
        ntopics++;
        t->partitions = mt->partition_cnt;
        t->replication_factor = replicas_of_partition0(mt);
        for (int p = 0; p < mt->partition_cnt; p++) {
            if (mt->partitions[p].isr_cnt >= mt->partitions[p].replica_cnt)
                continue;
            int *ids = realloc(t->under_replicated_ids,
                               (size_t)(t->under_replicated + 1) * sizeof *ids);
            if (ids == NULL) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topics from Kafka at %s",
                                  k->bootstrap);
                goto done;
            }
            int at = t->under_replicated++;
            while (at > 0 && ids[at - 1] > mt->partitions[p].id) {
                ids[at] = ids[at - 1];
                at--;
            }
            ids[at] = mt->partitions[p].id;
            t->under_replicated_ids = ids;
        }
        /* librdkafka 2.0.2's metadata has no is_internal flag; Kafka's internal topics are the
         * double-underscore ones (__consumer_offsets, __transaction_state, ...). */
        t->internal = strncmp(mt->topic, "__", 2) == 0;
        if (pc_index_find(&wanted, mt->topic) != NULL)
            want[nwant++] = t;
    }
    if ((rc = describe_configs(k, want, nwant, err)) != 0)
        goto done;

    if (ntopics > 0) {
        pc_obs_topic *grown = realloc(o->topics, (o->ntopics + ntopics) * sizeof *grown);
        if (grown == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory reading topics from Kafka at %s",
                              k->bootstrap);
            goto done;
        }
        memcpy(grown + o->ntopics, topics, ntopics * sizeof *topics);
        o->topics = grown;
        o->ntopics += ntopics;
        free(topics);
        topics = NULL;
        ntopics = 0;
    }
    o->kafka_observed = true;

done:
    for (size_t i = 0; i < ntopics; i++)
        topic_clear(&topics[i]);
    free(topics);
    free(want);
    pc_index_free(&wanted);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return rc;
}

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
        pc_error_set(&e, PC_ENOMEM, "out of memory preparing a Kafka request to %s",
                     k->bootstrap);
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
                op_error(k, &b->errs[i], RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, b->verb,
                         b->a[i].topic, tmo + PC_KAFKA_QUEUE_SLACK_MS);
            else
                op_error(k, &b->errs[i], rd_kafka_event_error(ev),
                         rd_kafka_event_error_string(ev), b->verb, b->a[i].topic, tmo);
            b->pending[i] = false;
        }
        goto done;
    }
    size_t cnt = r->answers(ev, &ans);
    if (cnt > 0 && ans == NULL) {
        pc_error_set(&e, PC_ENOMEM, "out of memory reading Kafka's answer from %s",
                     k->bootstrap);
        batch_fail_all(b, &e);
        goto done;
    }
    for (size_t j = 0; j < cnt; j++) {
        size_t i = batch_find(b, ans[j].name);
        if (i == b->n)
            continue;
        answered[i] = true;
        if (ans[j].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            op_error(k, &b->errs[i], ans[j].err, ans[j].errstr, b->verb, b->a[i].topic, tmo);
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
        (*out)[j] = (topic_answer){rd_kafka_topic_result_name(tr[j]),
                                   rd_kafka_topic_result_error(tr[j]),
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
    char (*seen)[160] = calloc(n + 1, sizeof *seen);
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
                const rd_kafka_metadata_topic_t *t =
                    indexed ? pc_index_find(&listed, b->a[i].topic) : md_topic(md, b->a[i].topic);
                if (t != NULL && t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                    t = NULL; /* as md_topic: being deleted */
                if (gone) {
                    ok[i] = t == NULL;
                    snprintf(seen[i], sizeof seen[i], "the topic is still listed");
                } else if (t == NULL) {
                    snprintf(seen[i], sizeof seen[i], "wanted %d, last seen: the topic is not "
                             "listed yet", b->a[i].partitions);
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

static void send_partitions(rd_kafka_t *rk, void **objs, size_t n,
                            const rd_kafka_AdminOptions_t *o, rd_kafka_queue_t *q)
{
    rd_kafka_CreatePartitions(rk, (rd_kafka_NewPartitions_t **)objs, n, o, q);
}

static size_t answers_partitions(rd_kafka_event_t *ev, topic_answer **out)
{
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreatePartitions_result_topics(
        rd_kafka_event_CreatePartitions_result(ev), &cnt);
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
        pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s",
                     k->bootstrap);
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
            topic_clear(&t[i]);
            t[i] = (pc_obs_topic){.name = b->a[i].topic};
            if (!ok[i])
                ask[nask++] = &t[i];
        }
        if (nask == 0)
            break;
        pc_error e2 = {0};
        if (describe_configs(k, ask, nask, &e2) == 0) {
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
        topic_clear(&t[i]);
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
        pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s",
                     k->bootstrap);
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

/* ---------- watermarks (consumer lag for status) ---------- */

int pc_kafka_watermarks(pc_kafka *k, const char *topic, int64_t **high, int *npartitions,
                        pc_error *err)
{
    int rc = 0;
    const struct rd_kafka_metadata *md = NULL;
    int64_t *hw = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int n = 0;

    *high = NULL;
    *npartitions = 0;
    /* All topics rather than one: a metadata request naming a missing topic can auto-create it. */
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 1, NULL, &md, k->timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = op_error(k, err, e, NULL, "read the partitions of", topic, k->timeout_ms);
        goto done;
    }
    const struct rd_kafka_metadata_topic *t = NULL;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0)
            t = &md->topics[i];
    if (t == NULL || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "Kafka at %s has no topic '%s': run 'pipectl apply' to create it",
                          k->bootstrap, topic);
        goto done;
    }
    for (int i = 0; i < t->partition_cnt; i++)
        if (t->partitions[i].id + 1 > n)
            n = t->partitions[i].id + 1;
    hw = calloc(n > 0 ? (size_t)n : 1, sizeof *hw);
    if (hw == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading watermarks of topic '%s'", topic);
        goto done;
    }
    /* One ListOffsets (latest) for every partition via offsets_for_times, which honours the
     * timeout: librdkafka < 2.3.0's rd_kafka_query_watermark_offsets waits forever when a
     * partition's leader is down (librdkafka #2588, fixed by #4460). */
    parts = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    if (parts == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading watermarks of topic '%s'", topic);
        goto done;
    }
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_END;
    e = rd_kafka_offsets_for_times(k->rk, parts, k->timeout_ms);
    for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < parts->cnt; i++)
        e = parts->elems[i].err;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = op_error(k, err, e, NULL, "read the high watermarks of", topic, k->timeout_ms);
        goto done;
    }
    for (int i = 0; i < parts->cnt; i++)
        hw[parts->elems[i].partition] = parts->elems[i].offset;
    *high = hw;
    *npartitions = n;
    hw = NULL;
done:
    free(hw);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return rc;
}
