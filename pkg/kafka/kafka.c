/* kafka.c: the Kafka adapter over librdkafka's admin API (librdkafka 2.0.2, so no
 * IncrementalAlterConfigs and no DescribeTopics: partitions and replicas come from a metadata
 * request, configs from DescribeConfigs, and a config change replaces the topic's whole override
 * set through AlterConfigs).
 *
 * Every call is bounded: admin requests carry a request timeout and their result is awaited on a
 * private queue with a deadline slightly past it. librdkafka's own logging goes to a callback
 * that keeps the last warning or error, so the library never prints and a failure message can
 * say what the client saw (connection refused, name resolution, ...). Here: clients, observing
 * (topics, configs, brokers) and watermarks; topics.c performs topic actions, acl.c ACLs. */
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
int pc__kafka_op_error(pc_kafka *k, pc_error *err, rd_kafka_resp_err_t e, const char *detail,
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

const rd_kafka_metadata_topic_t *pc__kafka_md_topic(const struct rd_kafka_metadata *md,
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

void pc__kafka_topic_clear(pc_obs_topic *t)
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
int pc__kafka_describe_configs(pc_kafka *k, pc_obs_topic **topics, size_t n, pc_error *err)
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
        rc = pc__kafka_op_error(k, err, RD_KAFKA_RESP_ERR__TIMED_OUT, NULL,
                                "describe the configs of", topics[0]->name,
                                tmo + PC_KAFKA_QUEUE_SLACK_MS);
        goto done;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = pc__kafka_op_error(k, err, rd_kafka_event_error(ev), rd_kafka_event_error_string(ev),
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
            rc = pc__kafka_op_error(k, err, e, rd_kafka_ConfigResource_error_string(rr[i]),
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
    if ((rc = pc__kafka_describe_configs(k, want, nwant, err)) != 0)
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
        pc__kafka_topic_clear(&topics[i]);
    free(topics);
    free(want);
    pc_index_free(&wanted);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
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
        rc = pc__kafka_op_error(k, err, e, NULL, "read the partitions of", topic, k->timeout_ms);
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
        rc = pc__kafka_op_error(k, err, e, NULL, "read the high watermarks of", topic,
                                k->timeout_ms);
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
