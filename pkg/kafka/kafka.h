/* kafka.h: the Kafka adapter (librdkafka admin API). Observes topics and their configs and
 * performs plan actions on topics. Decides nothing: what to change comes from pkg/plan. */
#ifndef PC_KAFKA_H
#define PC_KAFKA_H

#include "core.h"
#include "plan.h"

typedef struct pc_kafka pc_kafka;

/* Creates an admin client for bootstrap ("host:port[,host:port]") and checks that a metadata
 * request answers within timeout_ms; otherwise PC_EUNAVAIL with a message naming the bootstrap
 * servers and what to check. */
int pc_kafka_open(pc_kafka **out, const char *bootstrap, int timeout_ms, pc_error *err);
void pc_kafka_free(pc_kafka *k);

/* Fills o->topics with every topic in the cluster (name, partitions, replication factor,
 * internal flag) and, for the topics named in describe (those that exist), every config entry
 * with its source, using one batched DescribeConfigs request. Sets o->kafka_observed. */
int pc_kafka_observe(pc_kafka *k, const char *const *describe, size_t ndescribe, pc_observed *o,
                     pc_error *err);

/* Performs one action of kind PC_ACT_TOPIC_CREATE, _PARTITIONS, _CONFIG or _DELETE and waits
 * for the broker's answer. Errors keep librdkafka's text and name the topic and bootstrap. */
int pc_kafka_apply(pc_kafka *k, const pc_action *a, pc_error *err);

/* High watermarks (the offset the next produced record will get) of every partition of topic,
 * one ListOffsets request per partition leader, bounded by the client's timeout. *high (owned
 * by the caller, free()) holds *npartitions entries indexed by partition id. PC_ENOTFOUND when
 * the topic does not exist. Used by `status` to compute consumer lag. */
int pc_kafka_watermarks(pc_kafka *k, const char *topic, int64_t **high, int *npartitions,
                        pc_error *err);

#endif
