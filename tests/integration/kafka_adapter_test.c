/* kafka_adapter_test.c: pkg/kafka against a real Kafka broker (KRaft, single node).
 *
 * Reads the bootstrap servers from PC_KAFKA_BOOTSTRAP (scripts/stack.sh writes it to
 * stack.env) and fails when it is unset: an integration test that silently skips proves
 * nothing. Topic names carry the process id and time so that runs never collide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka.h"

static const char *bootstrap(void)
{
    const char *b = getenv("PC_KAFKA_BOOTSTRAP");
    if (b == NULL || *b == '\0')
        fail_msg("PC_KAFKA_BOOTSTRAP is not set: start a broker (scripts/stack.sh start DIR; "
                 "source DIR/stack.env) or run through ctest");
    return b;
}

static char *unique_topic(const char *what)
{
    static unsigned seq;
    return pc_asprintf("pc_it_%s_%ld_%ld_%u", what, (long)getpid(), (long)time(NULL), seq++);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pc_kafka *open_or_fail(void)
{
    pc_kafka *k = NULL;
    pc_error err = {0};
    int rc = pc_kafka_open(&k, bootstrap(), 10000, &err);
    if (rc != 0)
        fail_msg("pc_kafka_open(%s): %s: %s", bootstrap(), pc_code_name(rc), err.msg);
    assert_non_null(k);
    return k;
}

/* Observes with configs described for topic (may be NULL) and returns the entry for topic, or
 * NULL when it is not in the cluster. o must be freed by the caller. */
static const pc_obs_topic *observe_topic(pc_kafka *k, const char *topic, pc_observed *o)
{
    pc_error err = {0};
    const char *describe[2] = {topic, "pc_it_topic_that_does_not_exist"};
    int rc = pc_kafka_observe(k, describe, 2, o, &err);
    if (rc != 0)
        fail_msg("pc_kafka_observe: %s: %s", pc_code_name(rc), err.msg);
    assert_true(o->kafka_observed);
    const pc_obs_topic *found = NULL;
    for (size_t i = 0; i < o->ntopics; i++) {
        assert_non_null(o->topics[i].name);
        assert_false(pc_streq(o->topics[i].name, "pc_it_topic_that_does_not_exist"));
        if (strcmp(o->topics[i].name, topic) == 0) {
            assert_null(found); /* listed once */
            found = &o->topics[i];
        } else {
            assert_false(o->topics[i].configs_known); /* only described topics */
        }
    }
    return found;
}

/* The entry of name in an observation made already; fails the test when it is not listed once
 * exactly. */
static const pc_obs_topic *listed(const pc_observed *o, const char *name)
{
    const pc_obs_topic *found = NULL;
    for (size_t i = 0; i < o->ntopics; i++)
        if (pc_streq(o->topics[i].name, name)) {
            if (found != NULL)
                fail_msg("topic %s listed twice", name);
            found = &o->topics[i];
        }
    if (found == NULL)
        fail_msg("topic %s is not listed", name);
    return found;
}

static const pc_obs_config *config_of(const pc_obs_topic *t, const char *key)
{
    for (size_t i = 0; i < t->nconfigs; i++)
        if (pc_streq(t->configs[i].key, key))
            return &t->configs[i];
    return NULL;
}

static void apply_ok(pc_kafka *k, const pc_action *a)
{
    pc_error err = {0};
    int rc = pc_kafka_apply(k, a, &err);
    if (rc != 0)
        fail_msg("pc_kafka_apply(%s %s): %s: %s", a->topic, a->object ? a->object : "",
                 pc_code_name(rc), err.msg);
}

static void set_configs(pc_action *a, const char *const *kv, size_t n)
{
    pc_kvlist_free(&a->configs);
    for (size_t i = 0; i + 1 < n; i += 2)
        assert_int_equal(pc_kvlist_add(&a->configs, kv[i], kv[i + 1]), 0);
}

static void test_topic_lifecycle(void **state)
{
    (void)state;
    pc_kafka *k = open_or_fail();
    char *topic = unique_topic("life");
    pc_observed o = {0};
    pc_action a = {.system = "kafka", .topic = topic, .object = topic};
    const pc_obs_topic *t;
    const pc_obs_config *c;

    /* before: not there */
    t = observe_topic(k, topic, &o);
    assert_null(t);
    pc_observed_free(&o);

    /* create: 2 partitions, rf 1, retention.ms=3600000 */
    a.op = PC_OP_CREATE;
    a.kind = PC_ACT_TOPIC_CREATE;
    a.partitions = 2;
    a.replication_factor = 1;
    set_configs(&a, (const char *const[]){"retention.ms", "3600000"}, 2);
    apply_ok(k, &a);

    t = observe_topic(k, topic, &o);
    assert_non_null(t);
    assert_int_equal(t->partitions, 2);
    assert_int_equal(t->replication_factor, 1);
    assert_false(t->internal);
    assert_true(t->configs_known);
    assert_true(t->nconfigs > 10); /* every entry, defaults included */
    c = config_of(t, "retention.ms");
    assert_non_null(c);
    assert_string_equal(c->value, "3600000");
    assert_int_equal(c->source, PC_CFG_TOPIC_OVERRIDE);
    c = config_of(t, "cleanup.policy");
    assert_non_null(c);
    assert_string_equal(c->value, "delete");
    assert_int_equal(c->source, PC_CFG_DEFAULT);
    pc_observed_free(&o);

    /* observe appends to what the caller already holds */
    o.topics = calloc(1, sizeof *o.topics);
    assert_non_null(o.topics);
    o.topics[0].name = strdup("preexisting");
    o.ntopics = 1;
    t = observe_topic(k, topic, &o);
    assert_non_null(t);
    assert_true(o.ntopics >= 2);
    assert_string_equal(o.topics[0].name, "preexisting");
    pc_observed_free(&o);

    /* grow to 4 partitions */
    a.op = PC_OP_CHANGE;
    a.kind = PC_ACT_TOPIC_PARTITIONS;
    a.partitions = 4;
    apply_ok(k, &a);
    t = observe_topic(k, topic, &o);
    assert_non_null(t);
    assert_int_equal(t->partitions, 4);
    assert_int_equal(t->replication_factor, 1);
    pc_observed_free(&o);

    /* complete override set {retention.ms: 7200000, cleanup.policy: compact} */
    a.kind = PC_ACT_TOPIC_CONFIG;
    set_configs(&a, (const char *const[]){"retention.ms", "7200000", "cleanup.policy", "compact"},
                4);
    apply_ok(k, &a);
    t = observe_topic(k, topic, &o);
    assert_non_null(t);
    c = config_of(t, "retention.ms");
    assert_non_null(c);
    assert_string_equal(c->value, "7200000");
    assert_int_equal(c->source, PC_CFG_TOPIC_OVERRIDE);
    c = config_of(t, "cleanup.policy");
    assert_non_null(c);
    assert_string_equal(c->value, "compact");
    assert_int_equal(c->source, PC_CFG_TOPIC_OVERRIDE);
    pc_observed_free(&o);

    /* AlterConfigs is not incremental: leaving retention.ms out resets it to the default */
    set_configs(&a, (const char *const[]){"cleanup.policy", "compact"}, 2);
    apply_ok(k, &a);
    t = observe_topic(k, topic, &o);
    assert_non_null(t);
    c = config_of(t, "cleanup.policy");
    assert_non_null(c);
    assert_string_equal(c->value, "compact");
    assert_int_equal(c->source, PC_CFG_TOPIC_OVERRIDE);
    c = config_of(t, "retention.ms");
    assert_non_null(c);
    assert_int_equal(c->source, PC_CFG_DEFAULT);
    assert_string_not_equal(c->value, "7200000");
    print_message("after AlterConfigs {cleanup.policy}: retention.ms=%s (default)\n", c->value);
    size_t overrides = 0;
    for (size_t i = 0; i < t->nconfigs; i++)
        overrides += t->configs[i].source == PC_CFG_TOPIC_OVERRIDE;
    assert_int_equal(overrides, 1);
    pc_observed_free(&o);

    /* creating it again is a conflict that names the topic */
    a.kind = PC_ACT_TOPIC_CREATE;
    a.partitions = 1;
    pc_error err = {0};
    assert_int_equal(pc_kafka_apply(k, &a, &err), PC_ECONFLICT);
    assert_non_null(strstr(err.msg, topic));

    /* delete */
    a.op = PC_OP_DELETE;
    a.kind = PC_ACT_TOPIC_DELETE;
    pc_kvlist_free(&a.configs);
    apply_ok(k, &a);
    t = observe_topic(k, topic, &o);
    assert_null(t);
    pc_observed_free(&o);

    /* deleting a missing topic: not found, named */
    pc_error_clear(&err);
    assert_int_equal(pc_kafka_apply(k, &a, &err), PC_ENOTFOUND);
    assert_non_null(strstr(err.msg, topic));
    assert_non_null(strstr(err.msg, bootstrap()));

    pc_kvlist_free(&a.configs);
    free(topic);
    pc_kafka_free(k);
}

static void test_unreachable(void **state)
{
    (void)state;
    pc_kafka *k = NULL;
    pc_error err = {0};
    int64_t t0 = mono_ms();
    int rc = pc_kafka_open(&k, "127.0.0.1:1", 10000, &err);
    int64_t took = mono_ms() - t0;
    print_message("unreachable after %lld ms: %s\n", (long long)took, err.msg);
    assert_int_equal(rc, PC_EUNAVAIL);
    assert_null(k);
    assert_true(took < 15000);
    assert_non_null(strstr(err.msg, "127.0.0.1:1"));
    assert_non_null(strstr(err.msg, "kafka.bootstrap"));
    /* said as it is, not "did not answer" after the whole timeout */
    assert_non_null(strstr(err.msg, "refused the connection"));
}

static void test_bad_bootstrap(void **state)
{
    (void)state;
    pc_kafka *k = NULL;
    pc_error err = {0};
    assert_int_equal(pc_kafka_open(&k, "", 1000, &err), PC_EINVAL);
    assert_null(k);
    assert_non_null(strstr(err.msg, "kafka.bootstrap"));
}

static void test_refused_replication(void **state)
{
    (void)state;
    pc_kafka *k = open_or_fail();
    char *topic = unique_topic("rf3");
    pc_action a = {.op = PC_OP_CREATE,
                   .kind = PC_ACT_TOPIC_CREATE,
                   .system = "kafka",
                   .object = topic,
                   .topic = topic,
                   .partitions = 1,
                   .replication_factor = 3};
    pc_error err = {0};
    int rc = pc_kafka_apply(k, &a, &err);
    print_message("rf 3 on one broker: %s: %s\n", pc_code_name(rc), err.msg);
    assert_int_equal(rc, PC_EREFUSED);
    assert_non_null(strstr(err.msg, topic));
    assert_non_null(strstr(err.msg, bootstrap()));
    assert_non_null(strstr(err.msg, "refused to create"));
    /* librdkafka's text and the broker's own explanation (KRaft 3.9: "Unable to replicate the
     * partition 3 time(s): The target replication factor of 3 cannot be reached because only 1
     * broker(s) are registered."; ZooKeeper mode: "Replication factor: 3 larger than available
     * brokers: 1.") */
    assert_non_null(strstr(err.msg, "(Broker: Invalid replication factor)"));
    assert_true(strstr(err.msg, "replication factor of 3") != NULL ||
                strstr(err.msg, "Replication factor: 3") != NULL);

    /* nothing was created */
    pc_observed o = {0};
    assert_null(observe_topic(k, topic, &o));
    pc_observed_free(&o);
    free(topic);
    pc_kafka_free(k);
}

static void test_non_topic_action(void **state)
{
    (void)state;
    pc_kafka *k = open_or_fail();
    pc_action a = {.op = PC_OP_CREATE,
                   .kind = PC_ACT_SCHEMA_CREATE,
                   .system = "postgres",
                   .object = "raw",
                   .schema = "raw"};
    pc_error err = {0};
    assert_int_equal(pc_kafka_apply(k, &a, &err), PC_EINVAL);
    pc_kafka_free(k);
}

/* One CreateTopics request for three topics, the middle one impossible (replication factor 3
 * on one broker): it alone fails, named; the other two are created; then one DeleteTopics. */
static void test_batch(void **state)
{
    (void)state;
    pc_kafka *k = open_or_fail();
    char *names[3] = {unique_topic("b1"), unique_topic("b2"), unique_topic("b3")};
    pc_action a[3];
    for (int i = 0; i < 3; i++)
        a[i] = (pc_action){.op = PC_OP_CREATE,
                           .kind = PC_ACT_TOPIC_CREATE,
                           .system = "kafka",
                           .object = names[i],
                           .topic = names[i],
                           .partitions = 2,
                           .replication_factor = i == 1 ? 3 : 1};
    bool done[3] = {0};
    pc_error errs[3] = {{0}}, err = {0};
    int rc = pc_kafka_apply_topics(k, a, 3, done, errs, &err);
    print_message("batch: %s: %s\n", pc_code_name(rc), err.msg);
    assert_int_equal(rc, PC_EREFUSED);
    assert_true(done[0]);
    assert_false(done[1]);
    assert_true(done[2]);
    assert_int_equal(errs[0].code, 0);
    assert_int_equal(errs[2].code, 0);
    assert_non_null(strstr(errs[1].msg, names[1]));
    assert_non_null(strstr(errs[1].msg, "Invalid replication factor"));
    assert_non_null(strstr(err.msg, names[1]));
    pc_observed o = {0};
    const pc_obs_topic *t = observe_topic(k, names[0], &o);
    assert_non_null(t);
    assert_int_equal(t->partitions, 2);
    pc_observed_free(&o);
    assert_null(observe_topic(k, names[1], &o));
    pc_observed_free(&o);
    assert_non_null(observe_topic(k, names[2], &o));
    pc_observed_free(&o);

    pc_action d[2] = {{.op = PC_OP_DELETE, .kind = PC_ACT_TOPIC_DELETE, .system = "kafka",
                       .object = names[0], .topic = names[0]},
                      {.op = PC_OP_DELETE, .kind = PC_ACT_TOPIC_DELETE, .system = "kafka",
                       .object = names[2], .topic = names[2]}};
    assert_int_equal(pc_kafka_apply_topics(k, d, 2, done, errs, &err), 0);
    assert_true(done[0] && done[1]);
    assert_null(observe_topic(k, names[0], &o));
    pc_observed_free(&o);
    assert_null(observe_topic(k, names[2], &o));
    pc_observed_free(&o);
    for (int i = 0; i < 3; i++)
        free(names[i]);
    pc_kafka_free(k);
}

/* A batch larger than the adapter's by-name wait (over 64 topics: it polls the full listing
 * instead of making a handle per topic): 100 topics in one CreateTopics, every one reported
 * done and, once the call returns, listed with its 2 partitions and described (its configs
 * matched back by name among 100); then one CreatePartitions to 3, one AlterConfigs with a
 * value per topic, and all 100 gone after one DeleteTopics. */
static void test_batch_large(void **state)
{
    (void)state;
    enum { N = 100 };
    pc_kafka *k = open_or_fail();
    char *names[N];
    pc_action a[N];
    bool done[N] = {0};
    pc_error errs[N], err = {0};
    for (int i = 0; i < N; i++) {
        char what[16];
        snprintf(what, sizeof what, "L%03d", i);
        names[i] = unique_topic(what);
        a[i] = (pc_action){.op = PC_OP_CREATE,
                           .kind = PC_ACT_TOPIC_CREATE,
                           .system = "kafka",
                           .object = names[i],
                           .topic = names[i],
                           .partitions = 2,
                           .replication_factor = 1};
        errs[i] = (pc_error){0};
    }
    int rc = pc_kafka_apply_topics(k, a, N, done, errs, &err);
    if (rc != 0)
        fail_msg("apply of %d topics: %s: %s", N, pc_code_name(rc), err.msg);
    for (int i = 0; i < N; i++) {
        assert_true(done[i]);
        assert_int_equal(errs[i].code, 0);
    }
    pc_observed o = {0};
    assert_int_equal(pc_kafka_observe(k, (const char *const *)names, N, &o, &err), 0);
    for (int i = 0; i < N; i++) {
        const pc_obs_topic *t = listed(&o, names[i]);
        assert_int_equal(t->partitions, 2);
        assert_true(t->configs_known);
    }
    pc_observed_free(&o);

    /* one CreatePartitions for the 100, to 3 partitions each; once the call returns, every
     * topic is listed with 3 */
    for (int i = 0; i < N; i++) {
        a[i].kind = PC_ACT_TOPIC_PARTITIONS;
        a[i].op = PC_OP_CHANGE;
        a[i].partitions = 3;
    }
    rc = pc_kafka_apply_topics(k, a, N, done, errs, &err);
    if (rc != 0)
        fail_msg("CreatePartitions of %d topics: %s: %s", N, pc_code_name(rc), err.msg);
    o = (pc_observed){0};
    assert_int_equal(pc_kafka_observe(k, NULL, 0, &o, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(listed(&o, names[i])->partitions, 3);
    pc_observed_free(&o);

    /* one AlterConfigs for the 100, each its own retention.ms; once the call returns, every
     * topic is described with its own value (the wait polls them together) */
    for (int i = 0; i < N; i++) {
        char ms[32];
        snprintf(ms, sizeof ms, "%d", 3600000 + i);
        a[i].kind = PC_ACT_TOPIC_CONFIG;
        a[i].op = PC_OP_CHANGE;
        set_configs(&a[i], (const char *const[]){"retention.ms", ms}, 2);
    }
    rc = pc_kafka_apply_topics(k, a, N, done, errs, &err);
    if (rc != 0)
        fail_msg("AlterConfigs of %d topics: %s: %s", N, pc_code_name(rc), err.msg);
    o = (pc_observed){0};
    assert_int_equal(pc_kafka_observe(k, (const char *const *)names, N, &o, &err), 0);
    for (int i = 0; i < N; i++) {
        char ms[32];
        snprintf(ms, sizeof ms, "%d", 3600000 + i);
        const pc_obs_config *c = config_of(listed(&o, names[i]), "retention.ms");
        assert_non_null(c);
        assert_int_equal(c->source, PC_CFG_TOPIC_OVERRIDE);
        assert_string_equal(c->value, ms);
    }
    pc_observed_free(&o);
    for (int i = 0; i < N; i++)
        pc_kvlist_free(&a[i].configs);

    for (int i = 0; i < N; i++)
        a[i] = (pc_action){.op = PC_OP_DELETE, .kind = PC_ACT_TOPIC_DELETE, .system = "kafka",
                           .object = names[i], .topic = names[i]};
    assert_int_equal(pc_kafka_apply_topics(k, a, N, done, errs, &err), 0);
    o = (pc_observed){0};
    assert_int_equal(pc_kafka_observe(k, NULL, 0, &o, &err), 0);
    for (size_t j = 0; j < o.ntopics; j++)
        for (int i = 0; i < N; i++)
            assert_string_not_equal(o.topics[j].name, names[i]);
    pc_observed_free(&o);
    for (int i = 0; i < N; i++)
        free(names[i]);
    pc_kafka_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_lifecycle),  cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_bad_bootstrap),    cmocka_unit_test(test_refused_replication),
        cmocka_unit_test(test_non_topic_action), cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_large),
    };
    return cmocka_run_group_tests_name("kafka_adapter", tests, NULL, NULL);
}
