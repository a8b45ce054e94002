/* kafka.h: the Kafka adapter (librdkafka admin API). Observes topics and their configs and
 * performs plan actions on topics. Decides nothing: what to change comes from pkg/plan. */
#ifndef PC_KAFKA_H
#define PC_KAFKA_H

#include "core.h"
#include "plan.h"

typedef struct pc_kafka pc_kafka;
struct rd_kafka_conf_s; /* librdkafka's rd_kafka_conf_t */

/* ---------- how clients connect (client.c) ---------- */

/* Sets bootstrap.servers, auth's connection security (protocol, SASL, TLS; hostname
 * verification on unless auth says otherwise) and every kafka.client_config entry on conf.
 * Callers set their own properties (idempotence, group...) before this. A refused property is
 * PC_EINVAL naming the manifest key; a secret's value never appears in the message. */
int pc_kafka_conf_client(struct rd_kafka_conf_s *conf, const pc_manifest *m,
                         const pc_mf_kafka_auth *auth, pc_error *err);
/* Checks kafka.client_config against the properties this librdkafka knows and the values it
 * accepts, offline: one diagnostic per problem appended to diags ("did you mean" for a
 * misspelt key; secret values never quoted). 0, or PC_ENOMEM. */
int pc_kafka_check_client_config(const pc_manifest *m, pc_diags *diags);
/* What to do about a client error librdkafka logged (wrong password, unknown CA, hostname
 * mismatch, TLS spoken to a plaintext listener and the reverse, ...), written into buf and
 * returned; "" when the text says nothing pipectl can explain. */
const char *pc_kafka_hint(const char *client_error, const pc_mf_kafka_auth *auth, char *buf,
                          size_t n);

/* The message for a worker the broker refused for want of an ACL: names the broker, the
 * principal, the operation on the resource, and the manifest lines that would grant it
 * (kafka.derive_acls or kafka.acls). operation is lower case (write, read, describe). New
 * string, NULL when out of memory. */
char *pc_kafka_acl_missing(const pc_manifest *m, const pc_mf_kafka_auth *auth,
                           const char *resource, const char *name, const char *operation);

/* The admin client of the controller: pc_kafka_open with m's bootstrap, kafka.security and
 * client_config. Failures name the bootstrap servers and the principal and say what to do. */
int pc_kafka_open_manifest(pc_kafka **out, const pc_manifest *m, int timeout_ms, pc_error *err);

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
/* n consecutive topic actions of one kind (create, partitions, config or delete) as ONE
 * CreateTopics / CreatePartitions / AlterConfigs / DeleteTopics request, then one bounded wait
 * for the whole batch (metadata polled once per round, not per topic). Each action gets its own
 * outcome: done[i], and errs[i] naming its topic when it failed; the others still go through.
 * Returns 0 when all succeeded, else the first failure's code with its message in err. */
int pc_kafka_apply_topics(pc_kafka *k, const pc_action *a, size_t n, bool *done, pc_error *errs,
                          pc_error *err);

/* High watermarks (the offset the next produced record will get) of every partition of topic,
 * one ListOffsets request per partition leader, bounded by the client's timeout. *high (owned
 * by the caller, free()) holds *npartitions entries indexed by partition id. PC_ENOTFOUND when
 * the topic does not exist. Used by `status` to compute consumer lag. */
int pc_kafka_watermarks(pc_kafka *k, const char *topic, int64_t **high, int *npartitions,
                        pc_error *err);

/* ---------- ACLs (acl.c) ---------- */

/* Fills o->acls with every ACL binding in the cluster (one DescribeAcls request matching
 * everything) and sets o->acls_observed. A cluster without an authorizer answers
 * SECURITY_DISABLED: when required is false (the manifest declares neither kafka.acls nor
 * kafka.derive_acls: nothing to manage) that leaves acls_observed false and returns 0; when
 * required, it is PC_EREFUSED naming the broker ("has no authorizer"). */
int pc_kafka_observe_acls(pc_kafka *k, bool required, pc_observed *o, pc_error *err);

/* Performs n actions a[0..n) that are all PC_ACT_ACL_CREATE (one CreateAcls request) or all
 * PC_ACT_ACL_DELETE (one DeleteAcls request, an exact filter per binding), then waits (bounded)
 * until DescribeAcls shows the change. done[i] (n entries) tells which bindings the broker
 * accepted. 0 when all were; else the first failure, naming the binding and the broker with
 * librdkafka's text. */
int pc_kafka_apply_acls(pc_kafka *k, const pc_action *a, size_t n, bool *done, pc_error *err);

#endif
