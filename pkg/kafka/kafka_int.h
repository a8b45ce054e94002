/* kafka_int.h: what the files of pkg/kafka share (kafka.c: clients, topics; acl.c: ACLs): the
 * client struct, its bounds, and the admin-request plumbing (request options with a timeout, a
 * bounded wait for the result on a private queue, librdkafka errors to PC_E codes, the last
 * client error librdkafka logged). Not part of the public contract. */
#ifndef PC_KAFKA_INT_H
#define PC_KAFKA_INT_H
#if !defined(PC_INSIDE_KAFKA) && !defined(PC_WHITEBOX_TEST)
#error "kafka_int.h is private to pkg/kafka: include kafka.h"
#endif

#include "core.h"
#include "kafka.h"

#include <librdkafka/rdkafka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Bound for one admin write (create, partitions, config, delete) and for the wait until the
 * cluster's metadata shows its effect. */
#define PC_KAFKA_OP_TIMEOUT_MS 30000
/* Extra time we wait on the result queue past librdkafka's own request timeout, so that the
 * library's timeout (with its error text) normally fires first. */
#define PC_KAFKA_QUEUE_SLACK_MS 5000
/* Pauses between metadata polls while waiting for a change to become visible: the first comes
 * after PC_KAFKA_POLL_FIRST_MS, each next one twice as long, up to PC_KAFKA_POLL_MS. An idle
 * broker shows a change within tens of milliseconds, so a fixed 200 ms pause cost apply up to
 * 200 ms a batch (measured: 1,000 topics applied in 0.27 s or 0.72 s, by whether the first poll
 * already saw them all). */
#define PC_KAFKA_POLL_FIRST_MS 10
#define PC_KAFKA_POLL_MS 200

struct pc_kafka {
    rd_kafka_t *rk;
    char *bootstrap;
    int timeout_ms;
    pthread_mutex_t log_lock;
    bool log_lock_init;
    char last_log[512]; /* last warning/error librdkafka logged, "" when none */
    char *principal;    /* who the client is ("User:admin"), or NULL when unknown */
};

/* ---------- small helpers ---------- */

/* Frees what an admin request used (each may be NULL). */
static inline void admin_release(rd_kafka_event_t *ev, rd_kafka_queue_t *q,
                                 rd_kafka_AdminOptions_t *opts)
{
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
}

/* The pause before the next poll of a bounded wait: sleeps *pause_ms (PC_KAFKA_POLL_FIRST_MS
 * when 0), then doubles it up to PC_KAFKA_POLL_MS. Returns false, without sleeping, when the
 * next poll would fall past deadline (pc_mono_ms). */
static inline bool poll_pause(int *pause_ms, int64_t deadline)
{
    if (*pause_ms <= 0)
        *pause_ms = PC_KAFKA_POLL_FIRST_MS;
    if (pc_mono_ms() + *pause_ms >= deadline)
        return false;
    pc_sleep_ms(*pause_ms);
    *pause_ms = *pause_ms >= PC_KAFKA_POLL_MS / 2 ? PC_KAFKA_POLL_MS : *pause_ms * 2;
    return true;
}

/* "10 s", "2.5 s" */
static inline void fmt_secs(char *buf, size_t n, int ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, n, "%d s", ms / 1000);
    else
        snprintf(buf, n, "%.1f s", ms / 1000.0);
}

static inline void last_log(pc_kafka *k, char *out, size_t n)
{
    out[0] = '\0';
    if (!k->log_lock_init)
        return;
    pthread_mutex_lock(&k->log_lock);
    snprintf(out, n, "%s", k->last_log);
    pthread_mutex_unlock(&k->log_lock);
}

static inline void clear_last_log(pc_kafka *k)
{
    if (!k->log_lock_init)
        return;
    pthread_mutex_lock(&k->log_lock);
    k->last_log[0] = '\0';
    pthread_mutex_unlock(&k->log_lock);
}

/* Errors that mean "could not get an answer" (retryable) rather than "the broker said no". */
static inline bool err_is_unavailable(rd_kafka_resp_err_t e)
{
    switch ((int)e) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
        return true;
    default:
        return false;
    }
}

static inline int code_for(rd_kafka_resp_err_t e)
{
    if (err_is_unavailable(e))
        return PC_EUNAVAIL;
    switch ((int)e) {
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return PC_ECONFLICT;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return PC_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return PC_EINVAL;
    default:
        return PC_EREFUSED;
    }
}

/* ---------- admin request plumbing ---------- */

/* Admin options with a request timeout (and an operation timeout for the topic operations that
 * take one). */
static inline int admin_options(pc_kafka *k, rd_kafka_admin_op_t op, int timeout_ms,
                                bool op_timeout, rd_kafka_AdminOptions_t **out, pc_error *err)
{
    char errstr[512];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(k->rk, op);
    *out = NULL;
    if (o == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka request to %s",
                            k->bootstrap);
    if (rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr, sizeof errstr) ||
        (op_timeout &&
         rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, errstr, sizeof errstr))) {
        rd_kafka_AdminOptions_destroy(o);
        return pc_error_set(err, PC_EINVAL, "Kafka request to %s: bad timeout %d ms: %s",
                            k->bootstrap, timeout_ms, errstr);
    }
    *out = o;
    return 0;
}

/* Waits for the result event of type want on q. NULL when nothing came in time. */
static inline rd_kafka_event_t *await_result(rd_kafka_queue_t *q, rd_kafka_event_type_t want,
                                             int timeout_ms)
{
    int64_t deadline = pc_mono_ms() + timeout_ms + PC_KAFKA_QUEUE_SLACK_MS;
    for (;;) {
        int64_t left = deadline - pc_mono_ms();
        if (left <= 0)
            return NULL;
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)left);
        if (ev == NULL)
            return NULL;
        if (rd_kafka_event_type(ev) == want)
            return ev;
        rd_kafka_event_destroy(ev); /* not ours (cannot happen on a private queue) */
    }
}

/* ---------- shared by kafka.c and topics.c ---------- */

/* Fills err for a failed admin call e on topic: "Kafka at B refused to VERB topic 'T': <broker
 * text> (<err2str>)", or, when no answer came within wait_ms, "Kafka at B did not answer ..."
 * with what the client saw; detail is the broker's error string (may be NULL). Returns the
 * PC_E code. */
int pc__kafka_op_error(pc_kafka *k, pc_error *err, rd_kafka_resp_err_t e, const char *detail,
                       const char *verb, const char *topic, int wait_ms);
/* The entry of topic name in md, or NULL (also when the broker answered "unknown": being
 * deleted). */
const rd_kafka_metadata_topic_t *pc__kafka_md_topic(const struct rd_kafka_metadata *md,
                                                    const char *name);
/* Frees what an observed topic holds (its name included) and zeroes it. */
void pc__kafka_topic_clear(pc_obs_topic *t);
/* DescribeConfigs for the n topics (by name), filling each one's configs and configs_known. */
int pc__kafka_describe_configs(pc_kafka *k, pc_obs_topic **topics, size_t n, pc_error *err);

#endif
