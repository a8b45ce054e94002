/* test_plan.c: the planning core. Each case is a desired manifest + an observed state (built in
 * memory) + the actions expected, in order. Also normalisation and the observed fingerprint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cases/plan/fixtures.h"
#include "plan.h"

/* ---------- helpers ---------- */

typedef struct fixture {
    pc_manifest *m;
    pc_observed o;
    pc_plan *p;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->m = fx_standard_manifest();
    fx_standard_observed(&f->o);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pc_plan_free(f->p);
    pc_observed_free(&f->o);
    fx_manifest_free(f->m);
    free(f);
    return 0;
}

static pc_plan *build(fixture *f, bool allow_delete)
{
    pc_plan_opts opts = fx_opts(allow_delete);
    pc_error err = {0};
    pc_plan_free(f->p);
    f->p = NULL;
    int rc = pc_plan_build(&f->p, f->m, &f->o, &opts, &err);
    if (rc != 0)
        fail_msg("pc_plan_build: %s", err.msg);
    assert_non_null(f->p);
    return f->p;
}

/* Asserts the plan's actions are exactly these (kind, op) pairs, in order. */
static void expect_kinds(const pc_plan *p, size_t n, const pc_action_kind *kinds, const pc_op *ops)
{
    if (p->nactions != n) {
        for (size_t i = 0; i < p->nactions; i++)
            print_message("  action %zu: kind %d op %d %s (%s)\n", i, p->actions[i].kind,
                          p->actions[i].op, p->actions[i].object,
                          p->actions[i].reason ? p->actions[i].reason : "");
    }
    assert_int_equal(p->nactions, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p->actions[i].kind, kinds[i]);
        if (ops != NULL)
            assert_int_equal(p->actions[i].op, ops[i]);
    }
}

static void expect_change(const pc_action *a, size_t i, const char *key, const char *from,
                          const char *to)
{
    assert_true(i < a->nchanges);
    assert_string_equal(a->changes[i].key, key);
    if (from == NULL)
        assert_null(a->changes[i].from);
    else
        assert_string_equal(a->changes[i].from, from);
    if (to == NULL)
        assert_null(a->changes[i].to);
    else
        assert_string_equal(a->changes[i].to, to);
}

static void expect_reason(const pc_action *a, const char *needle)
{
    assert_non_null(a->reason);
    if (strstr(a->reason, needle) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", a->reason, needle);
}

static void expect_no_changes(const pc_plan *p)
{
    for (size_t i = 0; i < p->nactions; i++)
        print_message("  unexpected action %zu: kind %d op %d %s (%s)\n", i, p->actions[i].kind,
                      p->actions[i].op, p->actions[i].object,
                      p->actions[i].reason ? p->actions[i].reason : "");
    assert_int_equal(p->nactions, 0);
    assert_false(pc_plan_has_changes(p));
}

/* ---------- normalisation ---------- */

static void norm_k(const char *key, const char *in, const char *want)
{
    char *got = pc_norm_kafka_config(key, in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_norm_kafka(void **state)
{
    (void)state;
    norm_k("cleanup.policy", "compact,delete", "compact,delete");
    norm_k("cleanup.policy", " Delete , compact ", "compact,delete");
    norm_k("cleanup.policy", "delete", "delete");
    norm_k("unclean.leader.election.enable", "True", "true");
    norm_k("preallocate", " FALSE ", "false");
    norm_k("retention.ms", "+0604800000", "604800000");
    norm_k("retention.ms", "-1", "-1");
    norm_k("retention.ms", "-0", "0");
    norm_k("compression.type", "ZSTD", "zstd");
    norm_k("message.format.version", "3.0-IV1", "3.0-IV1");
    assert_null(pc_norm_kafka_config("retention.ms", NULL));
}

static void norm_t(const char *in, const char *want)
{
    char *got = pc_norm_pg_type(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_norm_pg_type(void **state)
{
    (void)state;
    norm_t("int4", "integer");
    norm_t("INT", "integer");
    norm_t("integer", "integer");
    norm_t("int8", "bigint");
    norm_t("bool", "boolean");
    norm_t("varchar(10)", "character varying(10)");
    norm_t("character varying(10)", "character varying(10)");
    norm_t("timestamptz", "timestamp with time zone");
    norm_t("timestamp with time zone", "timestamp with time zone");
    norm_t("timestamp", "timestamp without time zone");
    norm_t("timestamptz(3)", "timestamp(3) with time zone");
    norm_t("timestamp(3) with time zone", "timestamp(3) with time zone");
    norm_t("numeric(10, 2)", "numeric(10,2)");
    norm_t("decimal(10,2)", "numeric(10,2)");
    norm_t("double  precision", "double precision");
    norm_t("float8", "double precision");
    norm_t("char", "character(1)");
    norm_t("char(3)", "character(3)");
    norm_t("int4[]", "integer[]");
    norm_t("text[]", "text[]");
    norm_t("uuid", "uuid");
    norm_t("jsonb", "jsonb");
}

static void norm_s(const char *name, const char *unit, const char *in, const char *want)
{
    pc_obs_setting s = {.name = (char *)name, .unit = (char *)unit};
    char *got = pc_norm_pg_setting(&s, in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_norm_pg_setting(void **state)
{
    (void)state;
    norm_s("archive_timeout", "s", "60s", "60");
    norm_s("archive_timeout", "s", "60", "60");
    norm_s("archive_timeout", "s", "1min", "60");
    norm_s("archive_timeout", "s", "1 min", "60");
    norm_s("archive_timeout", "s", "60000ms", "60");
    norm_s("archive_timeout", "s", "0", "0");
    norm_s("shared_buffers", "8kB", "128MB", "16384");
    norm_s("archive_mode", NULL, "true", "on");
    norm_s("archive_mode", NULL, "YES", "on");
    norm_s("archive_mode", NULL, "1", "on");
    norm_s("archive_mode", NULL, "off", "off");
    norm_s("archive_mode", NULL, "no", "off");
    norm_s("archive_mode", NULL, "always", "always");
    norm_s("wal_level", NULL, "archive", "replica");
    norm_s("wal_level", NULL, "hot_standby", "replica");
    norm_s("wal_level", NULL, "Logical", "logical");
    norm_s("archive_command", NULL, " 'x' %p ", "'x' %p");
}

/* ---------- Kafka ---------- */

static void test_create_from_empty(void **state)
{
    fixture *f = *state;
    pc_observed_free(&f->o);
    f->o.kafka_observed = true;
    f->o.pg_observed = true;
    /* a fresh PostgreSQL 15 */
    fx_obs_setting(&f->o, "wal_level", "replica", NULL, "postmaster", NULL);
    fx_obs_setting(&f->o, "archive_mode", "off", NULL, "postmaster", NULL);
    fx_obs_setting(&f->o, "archive_command", "", NULL, "sighup", NULL);
    fx_obs_setting(&f->o, "archive_timeout", "0", "s", "sighup", NULL);
    fx_obs_topic(&f->o, "__consumer_offsets", 50, 1);

    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_CREATE, PC_ACT_TOPIC_CREATE, PC_ACT_SCHEMA_CREATE,
                                    PC_ACT_TABLE_CREATE, PC_ACT_SETTING,      PC_ACT_SETTING,
                                    PC_ACT_SETTING};
    const pc_op ops[] = {PC_OP_CREATE, PC_OP_CREATE, PC_OP_CREATE, PC_OP_CREATE,
                         PC_OP_CHANGE, PC_OP_CHANGE, PC_OP_CHANGE};
    expect_kinds(p, 7, kinds, ops);

    const pc_action *a = &p->actions[0];
    assert_string_equal(a->system, "kafka");
    assert_string_equal(a->topic, "users_created");
    assert_int_equal(a->partitions, 3);
    assert_int_equal(a->replication_factor, 1);
    assert_int_equal(a->configs.n, 2);
    assert_string_equal(pc_kvlist_get(&a->configs, "retention.ms"), "604800000");
    assert_string_equal(pc_kvlist_get(&a->configs, "cleanup.policy"), "compact,delete");
    assert_string_equal(p->actions[1].topic, "users_dlq");

    assert_string_equal(p->actions[2].schema, "raw");
    a = &p->actions[3];
    assert_string_equal(a->object, "raw.users");
    assert_int_equal(a->ncolumns, 3);
    assert_string_equal(a->columns[0].name, "id");
    assert_true(a->columns[0].primary_key);
    assert_false(a->columns[0].nullable);
    assert_false(a->columns[1].nullable);
    assert_true(a->columns[2].nullable);
    assert_string_equal(a->columns[2].type, "timestamptz");

    /* wal_level is already replica: not planned */
    a = &p->actions[4];
    assert_string_equal(a->setting, "archive_mode");
    assert_string_equal(a->value, "on");
    assert_true(a->restart_required);
    expect_change(a, 0, "archive_mode", "off", "on");
    a = &p->actions[5];
    assert_string_equal(a->setting, "archive_command");
    assert_string_equal(a->value, FX_COMMAND);
    assert_false(a->restart_required);
    a = &p->actions[6];
    assert_string_equal(a->setting, "archive_timeout");
    assert_string_equal(a->value, "60s");
    expect_change(a, 0, "archive_timeout", "0s", "60s");
    assert_false(a->restart_required);

    size_t c, ch, d, r;
    pc_plan_summary(p, &c, &ch, &d, &r);
    assert_int_equal(c, 4);
    assert_int_equal(ch, 3);
    assert_int_equal(d, 0);
    assert_int_equal(r, 0);
    assert_true(pc_plan_has_changes(p));
    assert_string_equal(p->pipeline, "users");
    assert_int_equal(strlen(p->fingerprint), 64);
}

static void test_noop_when_equal(void **state)
{
    fixture *f = *state;
    /* users_created's cleanup.policy is "delete,compact" live and "compact,delete" declared;
     * users_dlq's retention.ms is only the broker default, equal to the declared value;
     * archive_timeout is 60 with unit s, declared 60s. */
    expect_no_changes(build(f, true));

    /* the same values written differently */
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_set_value(&t->configs[1].value, "0604800000");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "true");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "wal_level")->value, "hot_standby");
    pc_obs_table *tb = fx_obs_find_table(&f->o, "raw", "users");
    fx_obs_set_value(&tb->columns[1].type, "text");
    expect_no_changes(build(f, true));
}

static void test_grow_partitions(void **state)
{
    fixture *f = *state;
    f->m->topics[0].partitions = 6;
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_PARTITIONS};
    const pc_op ops[] = {PC_OP_CHANGE};
    expect_kinds(p, 1, kinds, ops);
    assert_string_equal(p->actions[0].topic, "users_created");
    assert_int_equal(p->actions[0].partitions, 6);
    assert_int_equal(p->actions[0].nchanges, 1);
    expect_change(&p->actions[0], 0, "partitions", "3", "6");
}

static void test_refuse_shrink(void **state)
{
    fixture *f = *state;
    fx_obs_find_topic(&f->o, "users_created")->partitions = 6;
    pc_plan *p = build(f, true);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_PARTITIONS};
    const pc_op ops[] = {PC_OP_REFUSED};
    expect_kinds(p, 1, kinds, ops);
    expect_reason(&p->actions[0], "cannot reduce the number of partitions");
    expect_reason(&p->actions[0], "declare partitions: 6");
    expect_reason(&p->actions[0], "deletes its data");
    expect_change(&p->actions[0], 0, "partitions", "6", "3");
    assert_true(pc_plan_has_changes(p));
    size_t c, ch, d, r;
    pc_plan_summary(p, &c, &ch, &d, &r);
    assert_int_equal(r, 1);
    assert_int_equal(c + ch + d, 0);
}

static void test_refuse_replication_factor(void **state)
{
    fixture *f = *state;
    f->m->topics[1].replication_factor = 3;
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_PARTITIONS};
    const pc_op ops[] = {PC_OP_REFUSED};
    expect_kinds(p, 1, kinds, ops);
    assert_string_equal(p->actions[0].topic, "users_dlq");
    expect_reason(&p->actions[0], "kafka-reassign-partitions");
    expect_change(&p->actions[0], 0, "replication_factor", "1", "3");
}

static void test_config_drift(void **state)
{
    fixture *f = *state;
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_set_value(&t->configs[1].value, "86400000");                   /* retention.ms */
    fx_obs_cfg(t, "max.message.bytes", "2000000", PC_CFG_TOPIC_OVERRIDE); /* someone else's */
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_CONFIG};
    const pc_op ops[] = {PC_OP_CHANGE};
    expect_kinds(p, 1, kinds, ops);
    const pc_action *a = &p->actions[0];
    assert_string_equal(a->topic, "users_created");
    assert_int_equal(a->nchanges, 1);
    expect_change(a, 0, "retention.ms", "86400000", "604800000");
    /* the complete override set to send: unmanaged kept, declared at desired values */
    assert_int_equal(a->configs.n, 3);
    assert_string_equal(pc_kvlist_get(&a->configs, "max.message.bytes"), "2000000");
    assert_string_equal(pc_kvlist_get(&a->configs, "retention.ms"), "604800000");
    assert_string_equal(pc_kvlist_get(&a->configs, "cleanup.policy"), "compact,delete");
    assert_null(pc_kvlist_get(&a->configs, "segment.ms")); /* a default, not an override */
    /* sorted by key */
    assert_string_equal(a->configs.items[0].key, "cleanup.policy");

    /* a declared key not set at all on a topic whose configs are known */
    f->m->topics[1].config.items[0].value[0] = '1'; /* "104800000" */
    p = build(f, false);
    assert_int_equal(p->nactions, 2);
    assert_string_equal(p->actions[1].topic, "users_dlq");
    expect_change(&p->actions[1], 0, "retention.ms", "604800000", "104800000");
    assert_int_equal(p->actions[1].configs.n, 1);

    /* configs unknown: nothing planned for them */
    fx_obs_find_topic(&f->o, "users_dlq")->configs_known = false;
    p = build(f, false);
    assert_int_equal(p->nactions, 1);
}

static void test_config_reset(void **state)
{
    fixture *f = *state;
    /* the manifest no longer declares retention.ms for users_created (managed at last apply) */
    pc_kvlist *cfg = &f->m->topics[0].config;
    pc_kvlist keep = {0};
    assert_int_equal(pc_kvlist_add(&keep, "cleanup.policy", "compact,delete"), 0);
    pc_kvlist_free(cfg);
    *cfg = keep;
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_cfg(t, "max.message.bytes", "2000000", PC_CFG_TOPIC_OVERRIDE);
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_CONFIG};
    expect_kinds(p, 1, kinds, NULL);
    const pc_action *a = &p->actions[0];
    assert_int_equal(a->nchanges, 1);
    expect_change(a, 0, "retention.ms", "604800000", NULL);
    assert_null(pc_kvlist_get(&a->configs, "retention.ms"));
    assert_int_equal(a->configs.n, 2);
    assert_string_equal(pc_kvlist_get(&a->configs, "max.message.bytes"), "2000000");

    /* once reset (back at the default), nothing more to do */
    t = fx_obs_find_topic(&f->o, "users_created");
    t->configs[1].source = PC_CFG_DEFAULT;
    p = build(f, false);
    expect_no_changes(p);

    /* an override that pipectl never managed is never reset */
    t = fx_obs_find_topic(&f->o, "users_dlq");
    fx_obs_cfg(t, "segment.bytes", "1000", PC_CFG_TOPIC_OVERRIDE);
    expect_no_changes(build(f, false));
}

static void test_delete_guarded(void **state)
{
    fixture *f = *state;
    fx_obs_topic(&f->o, "old_topic", 1, 1);
    /* not in the inventory: never touched */
    expect_no_changes(build(f, true));

    fx_obs_owned(&f->o, "topic", "old_topic", NULL);
    /* internal topics are never deleted, even if (wrongly) in the inventory */
    fx_obs_owned(&f->o, "topic", "__consumer_offsets", NULL);
    /* in the inventory but already gone: nothing */
    fx_obs_owned(&f->o, "topic", "gone_topic", NULL);
    f->m->topics[0].partitions = 4; /* so the delete must come after other actions */

    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_PARTITIONS, PC_ACT_TOPIC_DELETE};
    const pc_op ops1[] = {PC_OP_CHANGE, PC_OP_REFUSED};
    expect_kinds(p, 2, kinds, ops1);
    expect_reason(&p->actions[1], "--allow-delete");
    assert_string_equal(p->actions[1].topic, "old_topic");

    p = build(f, true);
    const pc_op ops2[] = {PC_OP_CHANGE, PC_OP_DELETE};
    expect_kinds(p, 2, kinds, ops2);
    assert_null(p->actions[1].reason);
    size_t c, ch, d, r;
    pc_plan_summary(p, &c, &ch, &d, &r);
    assert_int_equal(d, 1);
}

static void test_kafka_not_declared(void **state)
{
    fixture *f = *state;
    f->o.kafka_observed = false;
    fx_obs_find_topic(&f->o, "users_created")->partitions = 1;
    expect_no_changes(build(f, true));
}

/* ---------- Postgres ---------- */

static void test_column_add(void **state)
{
    fixture *f = *state;
    pc_mf_table *t = &f->m->schemas[0].tables[0];
    fx_mf_col(t, "age", "integer", false, true);
    fx_mf_col(t, "country", "text", false, false);
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_COLUMN_ADD, PC_ACT_COLUMN_ADD};
    const pc_op ops[] = {PC_OP_CREATE, PC_OP_CREATE};
    expect_kinds(p, 2, kinds, ops);
    const pc_action *a = &p->actions[0];
    assert_string_equal(a->object, "raw.users.age");
    assert_string_equal(a->schema, "raw");
    assert_string_equal(a->table, "users");
    assert_int_equal(a->ncolumns, 1);
    assert_string_equal(a->columns[0].name, "age");
    assert_string_equal(a->columns[0].type, "integer");
    assert_true(a->columns[0].nullable);
    assert_null(a->reason);
    expect_reason(&p->actions[1], "fails if raw.users has rows");
    assert_false(p->actions[1].columns[0].nullable);
}

static void test_column_type_safe(void **state)
{
    fixture *f = *state;
    pc_mf_table *t = &f->m->schemas[0].tables[0];
    fx_mf_col(t, "age", "bigint", false, true);
    fx_mf_col(t, "nick", "varchar(20)", false, true);
    fx_mf_col(t, "score", "double precision", false, true);
    fx_mf_col(t, "note", "text", false, true);
    pc_obs_table *tb = fx_obs_find_table(&f->o, "raw", "users");
    fx_obs_col(tb, "age", "integer", true, false);
    fx_obs_col(tb, "nick", "character varying(10)", true, false);
    fx_obs_col(tb, "score", "real", true, false);
    fx_obs_col(tb, "note", "character varying(50)", true, false);
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_COLUMN_TYPE, PC_ACT_COLUMN_TYPE, PC_ACT_COLUMN_TYPE,
                                    PC_ACT_COLUMN_TYPE};
    const pc_op ops[] = {PC_OP_CHANGE, PC_OP_CHANGE, PC_OP_CHANGE, PC_OP_CHANGE};
    expect_kinds(p, 4, kinds, ops);
    expect_change(&p->actions[0], 0, "type", "integer", "bigint");
    assert_string_equal(p->actions[0].columns[0].type, "bigint");
    assert_string_equal(p->actions[1].object, "raw.users.nick");
    expect_change(&p->actions[1], 0, "type", "character varying(10)", "varchar(20)");
}

static void test_column_type_unsafe(void **state)
{
    fixture *f = *state;
    pc_mf_table *t = &f->m->schemas[0].tables[0];
    fx_mf_col(t, "age", "integer", false, true);
    fx_mf_col(t, "nick", "varchar(5)", false, true);
    fx_mf_col(t, "seen", "timestamptz", false, true);
    fx_mf_col(t, "doc", "jsonb", false, true);
    pc_obs_table *tb = fx_obs_find_table(&f->o, "raw", "users");
    fx_obs_col(tb, "age", "bigint", true, false);
    fx_obs_col(tb, "nick", "character varying(10)", true, false);
    fx_obs_col(tb, "seen", "timestamp without time zone", true, false);
    fx_obs_col(tb, "doc", "json", true, false);
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_COLUMN_TYPE, PC_ACT_COLUMN_TYPE, PC_ACT_COLUMN_TYPE,
                                    PC_ACT_COLUMN_TYPE};
    const pc_op ops[] = {PC_OP_REFUSED, PC_OP_REFUSED, PC_OP_REFUSED, PC_OP_REFUSED};
    expect_kinds(p, 4, kinds, ops);
    expect_reason(&p->actions[0], "from bigint to integer could lose data; migrate it by hand");
    expect_reason(&p->actions[0], "raw.users.age");
}

static void test_nullability_and_pk(void **state)
{
    fixture *f = *state;
    pc_obs_table *tb = fx_obs_find_table(&f->o, "raw", "users");
    tb->columns[1].nullable = true;  /* email: manifest says NOT NULL */
    tb->columns[2].nullable = false; /* registered_at: manifest says nullable */
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_COLUMN_NULLABLE, PC_ACT_COLUMN_NULLABLE};
    const pc_op ops[] = {PC_OP_CHANGE, PC_OP_CHANGE};
    expect_kinds(p, 2, kinds, ops);
    assert_false(p->actions[0].columns[0].nullable);
    expect_change(&p->actions[0], 0, "nullable", "true", "false");
    expect_reason(&p->actions[0], "NULL values");
    assert_true(p->actions[1].columns[0].nullable);
    assert_null(p->actions[1].reason);

    /* primary key drift is refused */
    tb = fx_obs_find_table(&f->o, "raw", "users");
    tb->columns[1].nullable = false;
    tb->columns[2].nullable = true;
    tb->columns[0].primary_key = false;
    p = build(f, false);
    const pc_action_kind kinds2[] = {PC_ACT_COLUMN_TYPE};
    const pc_op ops2[] = {PC_OP_REFUSED};
    expect_kinds(p, 1, kinds2, ops2);
    expect_reason(&p->actions[0], "primary key");
    expect_change(&p->actions[0], 0, "primary_key", "false", "true");
}

static void test_extra_columns(void **state)
{
    fixture *f = *state;
    pc_obs_table *tb = fx_obs_find_table(&f->o, "raw", "users");
    fx_obs_col(tb, "legacy", "text", true, false);
    f->m->topics[0].partitions = 4;
    /* owned table: refused without --allow-delete, after everything else */
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_TOPIC_PARTITIONS, PC_ACT_COLUMN_DROP};
    const pc_op ops[] = {PC_OP_CHANGE, PC_OP_REFUSED};
    expect_kinds(p, 2, kinds, ops);
    expect_reason(&p->actions[1], "--allow-delete");
    assert_string_equal(p->actions[1].object, "raw.users.legacy");
    assert_string_equal(p->actions[1].columns[0].name, "legacy");
    p = build(f, true);
    const pc_op ops2[] = {PC_OP_CHANGE, PC_OP_DELETE};
    expect_kinds(p, 2, kinds, ops2);

    /* table not in the inventory: only a note */
    pc_obs_owned *w = &f->o.owned[2];
    assert_string_equal(w->name, "raw.users");
    fx_obs_set_value(&w->name, "raw.other");
    f->m->topics[0].partitions = 3;
    p = build(f, true);
    const pc_action_kind kinds3[] = {PC_ACT_NOTE};
    expect_kinds(p, 1, kinds3, NULL);
    assert_false(pc_plan_has_changes(p));
    expect_reason(&p->actions[0], "raw.users.legacy");
}

static void test_settings(void **state)
{
    fixture *f = *state;
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "off");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_timeout")->value, "300");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "wal_level")->value, "minimal");
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_SETTING, PC_ACT_SETTING, PC_ACT_SETTING};
    expect_kinds(p, 3, kinds, NULL);
    assert_string_equal(p->actions[0].setting, "wal_level");
    assert_string_equal(p->actions[0].value, "replica");
    assert_true(p->actions[0].restart_required);
    assert_string_equal(p->actions[1].setting, "archive_mode");
    assert_true(p->actions[1].restart_required);
    assert_string_equal(p->actions[2].setting, "archive_timeout");
    assert_false(p->actions[2].restart_required);
    expect_change(&p->actions[2], 0, "archive_timeout", "300s", "60s");

    /* explicit command and wal_level logical */
    f->m->archiving.command = fx_dup("cp %p /mnt/wal/%f");
    f->m->archiving.wal_level = fx_dup("logical");
    p = build(f, false);
    assert_int_equal(p->nactions, 4);
    assert_string_equal(p->actions[0].value, "logical");
    assert_string_equal(p->actions[2].setting, "archive_command");
    assert_string_equal(p->actions[2].value, "cp %p /mnt/wal/%f");

    /* archiving disabled: only archive_mode is managed */
    f->m->archiving.enabled = false;
    p = build(f, false);
    expect_no_changes(p);
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "on");
    p = build(f, false);
    const pc_action_kind kinds2[] = {PC_ACT_SETTING};
    expect_kinds(p, 1, kinds2, NULL);
    assert_string_equal(p->actions[0].value, "off");

    /* archiving not declared: settings left alone */
    f->m->archiving.declared = false;
    expect_no_changes(build(f, false));
}

static void test_default_archive_command_quoting(void **state)
{
    fixture *f = *state;
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_command")->value, "");
    pc_plan_opts opts = {.pipectl_exe = "/opt/pipe ctl/pipectl", .manifest_path = "/srv/it's.yaml"};
    pc_error err = {0};
    free(f->m->archiving.repository); /* no repository: the command names the manifest */
    f->m->archiving.repository = NULL;
    assert_int_equal(pc_plan_build(&f->p, f->m, &f->o, &opts, &err), 0);
    assert_int_equal(f->p->nactions, 1);
    assert_string_equal(f->p->actions[0].value,
                        "'/opt/pipe ctl/pipectl' -f '/srv/it'\\''s.yaml' wal-push %p %f");
    pc_plan_free(f->p);
    f->p = NULL;
    free(f->m->archiving.repository);
    f->m->archiving.repository = pc_strdup("/srv/repo 100%");
    assert_int_equal(pc_plan_build(&f->p, f->m, &f->o, &opts, &err), 0);
    assert_string_equal(f->p->actions[0].value,
                        "'/opt/pipe ctl/pipectl' wal-push --repository '/srv/repo 100%%' %p %f");
}

/* The archive_command README and templates/postgresql/archiving.conf show is the one apply
 * sets (for /usr/local/bin/pipectl and repository /var/lib/pipectl/repo). */
static void test_documented_archive_command(void **state)
{
    fixture *f = *state;
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_command")->value, "");
    pc_plan_opts opts = {.pipectl_exe = "/usr/local/bin/pipectl",
                         .manifest_path = "/etc/pipectl/pipeline.yaml"};
    pc_error err = {0};
    free(f->m->archiving.repository);
    f->m->archiving.repository = pc_strdup("/var/lib/pipectl/repo");
    assert_int_equal(pc_plan_build(&f->p, f->m, &f->o, &opts, &err), 0);
    const char *set = f->p->actions[0].value;
    const char *src = getenv("PC_SRC");
    if (src == NULL)
        fail_msg("PC_SRC is not set (CTest sets it)");
    /* postgresql.conf doubles the single quotes inside the value */
    pc_buf conf = {0};
    pc_buf_puts(&conf, "archive_command = '");
    for (const char *c = set; *c; c++)
        pc_buf_append(&conf, *c == '\'' ? "''" : c, *c == '\'' ? 2 : 1);
    pc_buf_puts(&conf, "'\n");
    static const char *const files[] = {"templates/postgresql/archiving.conf", "README.md"};
    for (size_t i = 0; i < 2; i++) {
        char *path = pc_asprintf("%s/%s", src, files[i]);
        FILE *fp = fopen(path, "r");
        if (fp == NULL)
            fail_msg("cannot read %s", path);
        static char text[1 << 17];
        size_t n = fread(text, 1, sizeof text - 1, fp);
        fclose(fp);
        text[n] = '\0';
        const char *want = i == 0 ? conf.data : set;
        if (strstr(text, want) == NULL)
            fail_msg("%s does not show the archive_command apply sets: %s", path, want);
        free(path);
    }
    pc_buf_free(&conf);
}

static void test_pending_restart_note(void **state)
{
    fixture *f = *state;
    pc_obs_setting *s = fx_obs_find_setting(&f->o, "archive_mode");
    fx_obs_set_value(&s->value, "off");
    fx_obs_set_value(&s->pending, "on");
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_NOTE};
    expect_kinds(p, 1, kinds, NULL);
    assert_false(pc_plan_has_changes(p));
    expect_reason(&p->actions[0], "restart required: archive_mode is set to on");
    expect_reason(&p->actions[0], "restart PostgreSQL");
    size_t c, ch, d, r;
    pc_plan_summary(p, &c, &ch, &d, &r);
    assert_int_equal(c + ch + d + r, 0);

    /* running value right, but something else waits for the restart: write ours back */
    s = fx_obs_find_setting(&f->o, "archive_mode");
    fx_obs_set_value(&s->value, "on");
    fx_obs_set_value(&s->pending, "off");
    p = build(f, false);
    const pc_action_kind kinds2[] = {PC_ACT_SETTING};
    const pc_op ops2[] = {PC_OP_CHANGE};
    expect_kinds(p, 1, kinds2, ops2);
    expect_change(&p->actions[0], 0, "archive_mode", "off", "on");
    assert_false(p->actions[0].restart_required);
}

static void test_postgres_missing_objects(void **state)
{
    fixture *f = *state;
    pc_mf_schema *s = fx_mf_schema(f->m, "staging");
    pc_mf_table *t = fx_mf_table(s, "events");
    fx_mf_col(t, "id", "bigint", true, false);
    pc_mf_table *t2 = fx_mf_table(&f->m->schemas[0], "orders");
    fx_mf_col(t2, "id", "bigint", true, false);
    fx_mf_col(&f->m->schemas[0].tables[0], "age", "int", false, true);
    pc_plan *p = build(f, false);
    const pc_action_kind kinds[] = {PC_ACT_SCHEMA_CREATE, PC_ACT_TABLE_CREATE, PC_ACT_TABLE_CREATE,
                                    PC_ACT_COLUMN_ADD};
    expect_kinds(p, 4, kinds, NULL);
    assert_string_equal(p->actions[0].object, "staging");
    assert_string_equal(p->actions[1].object, "raw.orders");
    assert_string_equal(p->actions[2].object, "staging.events");
    assert_string_equal(p->actions[3].object, "raw.users.age");

    f->o.pg_observed = false;
    p = build(f, false);
    assert_int_equal(p->nactions, 0);
}

/* ---------- observed JSON and fingerprint ---------- */

static void fingerprint(fixture *f, char out[65])
{
    pc_error err = {0};
    assert_int_equal(pc_observed_fingerprint(f->m, &f->o, out, &err), 0);
    assert_int_equal(strlen(out), 64);
}

static void swap_bytes(void *a, void *b, size_t n)
{
    unsigned char tmp[256];
    assert_true(n <= sizeof tmp);
    memcpy(tmp, a, n);
    memcpy(a, b, n);
    memcpy(b, tmp, n);
}

static void test_fingerprint(void **state)
{
    fixture *f = *state;
    char fp1[65], fp2[65];
    fingerprint(f, fp1);
    fingerprint(f, fp2);
    assert_string_equal(fp1, fp2);

    /* reordering every observed array changes nothing */
    swap_bytes(&f->o.topics[0], &f->o.topics[2], sizeof f->o.topics[0]);
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    swap_bytes(&t->configs[0], &t->configs[2], sizeof t->configs[0]);
    swap_bytes(&f->o.settings[0], &f->o.settings[3], sizeof f->o.settings[0]);
    swap_bytes(&f->o.owned[0], &f->o.owned[2], sizeof f->o.owned[0]);
    fingerprint(f, fp2);
    assert_string_equal(fp1, fp2);

    /* an unrelated topic appearing, or changing, does not make plans stale */
    pc_obs_topic *other = fx_obs_topic(&f->o, "someone_elses", 12, 3);
    fx_obs_cfg(other, "retention.ms", "1", PC_CFG_TOPIC_OVERRIDE);
    fingerprint(f, fp2);
    assert_string_equal(fp1, fp2);

    /* a managed topic's config changing does */
    t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_set_value(&t->configs[1].value, "1");
    fingerprint(f, fp2);
    assert_string_not_equal(fp1, fp2);
    fx_obs_set_value(&t->configs[1].value, "604800000");
    fingerprint(f, fp2);
    assert_string_equal(fp1, fp2);

    /* so does a declared key's default (the plan depends on it) and a setting */
    t = fx_obs_find_topic(&f->o, "users_dlq");
    fx_obs_set_value(&t->configs[0].value, "1");
    fingerprint(f, fp2);
    assert_string_not_equal(fp1, fp2);
    fx_obs_set_value(&t->configs[0].value, "604800000");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "off");
    fingerprint(f, fp2);
    assert_string_not_equal(fp1, fp2);

    /* the plan carries it */
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "on");
    pc_plan *p = build(f, false);
    assert_string_equal(p->fingerprint, fp1);
}

static void test_observed_json(void **state)
{
    fixture *f = *state;
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_cfg(t, "sasl.jaas.password", "hunter2", PC_CFG_TOPIC_OVERRIDE);
    char *a = NULL, *b = NULL;
    pc_error err = {0};
    assert_int_equal(pc_observed_to_json(&f->o, &a, &err), 0);
    assert_null(strstr(a, "hunter2"));
    assert_null(strstr(a, "segment.ms")); /* defaults are noise */
    assert_non_null(strstr(a, "\"retention.ms\": \"604800000\""));
    assert_non_null(strstr(a, "\"__consumer_offsets\""));
    /* topics sorted by name (keys sorted too: "topics" is the last member) */
    const char *topics = strstr(a, "\"topics\"");
    assert_non_null(topics);
    assert_true(strstr(topics, "\"__consumer_offsets\"") < strstr(topics, "\"users_created\""));
    assert_true(strstr(topics, "\"users_created\"") < strstr(topics, "\"users_dlq\""));

    swap_bytes(&f->o.topics[0], &f->o.topics[1], sizeof f->o.topics[0]);
    swap_bytes(&f->o.settings[1], &f->o.settings[2], sizeof f->o.settings[0]);
    assert_int_equal(pc_observed_to_json(&f->o, &b, &err), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);

    pc_observed empty = {0};
    assert_int_equal(pc_observed_to_json(&empty, &a, &err), 0);
    assert_non_null(strstr(a, "\"topics\": []"));
    free(a);
    pc_observed_free(&empty);
    pc_observed_free(NULL);
}

/* ---------- the classification of action kinds by system ---------- */

static void test_action_system_of(void **state)
{
    (void)state;
    /* Written out kind by kind: a kind added to pc_action_kind (PC_ACT_LAST moved) without a
     * line here fails below, as does a kind pc_action_system_of puts in another system. */
    static const struct {
        bool listed;
        pc_action_system sys;
    } want[PC_ACT_LAST + 1] = {
        [PC_ACT_TOPIC_CREATE] = {true, PC_SYS_KAFKA},
        [PC_ACT_TOPIC_PARTITIONS] = {true, PC_SYS_KAFKA},
        [PC_ACT_TOPIC_CONFIG] = {true, PC_SYS_KAFKA},
        [PC_ACT_TOPIC_DELETE] = {true, PC_SYS_KAFKA},
        [PC_ACT_SCHEMA_CREATE] = {true, PC_SYS_POSTGRES},
        [PC_ACT_TABLE_CREATE] = {true, PC_SYS_POSTGRES},
        [PC_ACT_COLUMN_ADD] = {true, PC_SYS_POSTGRES},
        [PC_ACT_COLUMN_TYPE] = {true, PC_SYS_POSTGRES},
        [PC_ACT_COLUMN_NULLABLE] = {true, PC_SYS_POSTGRES},
        [PC_ACT_COLUMN_DROP] = {true, PC_SYS_POSTGRES},
        [PC_ACT_SETTING] = {true, PC_SYS_POSTGRES},
        [PC_ACT_NOTE] = {true, PC_SYS_NONE},
        [PC_ACT_ROLE_CREATE] = {true, PC_SYS_POSTGRES},
        [PC_ACT_ROLE_ALTER] = {true, PC_SYS_POSTGRES},
        [PC_ACT_ROLE_GRANT] = {true, PC_SYS_POSTGRES},
        [PC_ACT_NC_BASE_CREATE] = {true, PC_SYS_NOCODB},
        [PC_ACT_NC_SOURCE_CREATE] = {true, PC_SYS_NOCODB},
        [PC_ACT_NC_SOURCE_UPDATE] = {true, PC_SYS_NOCODB},
        [PC_ACT_NC_SOURCE_DELETE] = {true, PC_SYS_NOCODB},
        [PC_ACT_NC_META_SYNC] = {true, PC_SYS_NOCODB},
        [PC_ACT_ACL_CREATE] = {true, PC_SYS_KAFKA},
        [PC_ACT_ACL_DELETE] = {true, PC_SYS_KAFKA},
    };
    size_t per_system[PC_SYS_NOCODB + 1] = {0};
    for (int k = 0; k <= (int)PC_ACT_LAST; k++) {
        if (!want[k].listed)
            fail_msg("action kind %d has no line in test_action_system_of", k);
        pc_action_system s = pc_action_system_of((pc_action_kind)k);
        /* exactly one of the systems */
        int hits = (s == PC_SYS_NONE) + (s == PC_SYS_KAFKA) + (s == PC_SYS_POSTGRES) +
                   (s == PC_SYS_NOCODB);
        if (hits != 1)
            fail_msg("action kind %d maps to no system (%d)", k, (int)s);
        if (s != want[k].sys)
            fail_msg("action kind %d maps to system %d, want %d", k, (int)s, (int)want[k].sys);
        per_system[s]++;
    }
    /* PC_ACT_LAST is the last kind: past it is no kind, hence no system */
    pc_action_system past = pc_action_system_of((pc_action_kind)(PC_ACT_LAST + 1));
    assert_true(past != PC_SYS_NONE && past != PC_SYS_KAFKA && past != PC_SYS_POSTGRES &&
                past != PC_SYS_NOCODB);
    assert_int_equal(per_system[PC_SYS_NONE], 1); /* the note alone */
    assert_int_equal(per_system[PC_SYS_KAFKA], 6);
    assert_int_equal(per_system[PC_SYS_POSTGRES], 10);
    assert_int_equal(per_system[PC_SYS_NOCODB], 5);

    assert_string_equal(pc_action_system_name(PC_SYS_KAFKA), "kafka");
    assert_string_equal(pc_action_system_name(PC_SYS_POSTGRES), "postgres");
    assert_string_equal(pc_action_system_name(PC_SYS_NOCODB), "nocodb");
    assert_string_equal(pc_action_system_name(PC_SYS_NONE), "");
}

/* The noun plan and apply print between the system and the object ("+ kafka topic users"):
 * one function for both, a noun for every kind. */
static void test_action_noun(void **state)
{
    (void)state;
    /* Written out kind by kind: a kind added without a line here fails below. */
    static const char *const want[PC_ACT_LAST + 1] = {
        [PC_ACT_TOPIC_CREATE] = "topic",      [PC_ACT_TOPIC_PARTITIONS] = "topic",
        [PC_ACT_TOPIC_CONFIG] = "topic",      [PC_ACT_TOPIC_DELETE] = "topic",
        [PC_ACT_SCHEMA_CREATE] = "schema",    [PC_ACT_TABLE_CREATE] = "table",
        [PC_ACT_COLUMN_ADD] = "column",       [PC_ACT_COLUMN_TYPE] = "column",
        [PC_ACT_COLUMN_NULLABLE] = "column",  [PC_ACT_COLUMN_DROP] = "column",
        [PC_ACT_SETTING] = "setting",         [PC_ACT_NOTE] = "note",
        [PC_ACT_ROLE_CREATE] = "role",        [PC_ACT_ROLE_ALTER] = "role",
        [PC_ACT_ROLE_GRANT] = "grant",        [PC_ACT_NC_BASE_CREATE] = "base",
        [PC_ACT_NC_SOURCE_CREATE] = "source", [PC_ACT_NC_SOURCE_UPDATE] = "source",
        [PC_ACT_NC_SOURCE_DELETE] = "source", [PC_ACT_NC_META_SYNC] = "meta sync of source",
        [PC_ACT_ACL_CREATE] = "acl",          [PC_ACT_ACL_DELETE] = "acl",
    };
    for (int k = 0; k <= (int)PC_ACT_LAST; k++) {
        if (want[k] == NULL)
            fail_msg("action kind %d has no line in test_action_noun", k);
        const char *got = pc_action_noun((pc_action_kind)k);
        if (got == NULL || strcmp(got, want[k]) != 0)
            fail_msg("action kind %d: noun \"%s\", want \"%s\"", k, got ? got : "(null)", want[k]);
    }
    /* past the last kind: no kind, the generic noun */
    assert_string_equal(pc_action_noun((pc_action_kind)(PC_ACT_LAST + 1)), "object");

    /* the text rendering uses it: "<op> <system> <noun> <object>" */
    pc_action a = {
        .op = PC_OP_CREATE, .kind = PC_ACT_NC_META_SYNC, .system = "nocodb", .object = "users_raw"};
    pc_plan p = {.pipeline = "users", .actions = &a, .nactions = 1};
    char *text = NULL;
    pc_error err = {0};
    assert_int_equal(pc_plan_render_text(&p, false, &text, &err), 0);
    assert_non_null(strstr(text, "+ nocodb meta sync of source users_raw\n"));
    free(text);
}

/* Every action pkg/plan builds names the system its kind belongs to (notes excepted: theirs says
 * what they are about). */
static void test_action_system_matches_plans(void **state)
{
    fixture *f = *state;
    const pc_plan *plans[2];
    /* from nothing: creates on both systems */
    pc_observed_free(&f->o);
    f->o.kafka_observed = true;
    f->o.pg_observed = true;
    fx_obs_setting(&f->o, "wal_level", "replica", NULL, "postmaster", NULL);
    fx_obs_setting(&f->o, "archive_mode", "off", NULL, "postmaster", NULL);
    fx_obs_setting(&f->o, "archive_command", "", NULL, "sighup", NULL);
    fx_obs_setting(&f->o, "archive_timeout", "0", "s", "sighup", NULL);
    pc_plan *created = build(f, false);
    f->p = NULL; /* kept until the end */
    plans[0] = created;
    /* from the standard observed state, with drift and an extra topic (changes, deletes) */
    pc_observed_free(&f->o);
    fx_standard_observed(&f->o);
    fx_obs_topic(&f->o, "stray", 1, 1);
    fx_obs_find_topic(&f->o, "users_created")->partitions = 1;
    plans[1] = build(f, true);
    size_t checked = 0;
    for (size_t n = 0; n < 2; n++) {
        for (size_t i = 0; i < plans[n]->nactions; i++) {
            const pc_action *a = &plans[n]->actions[i];
            if (a->kind == PC_ACT_NOTE)
                continue;
            assert_non_null(a->system);
            assert_string_equal(a->system, pc_action_system_name(pc_action_system_of(a->kind)));
            checked++;
        }
    }
    assert_true(checked >= 8);
    pc_plan_free(created);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_kafka),
        cmocka_unit_test(test_norm_pg_type),
        cmocka_unit_test(test_norm_pg_setting),
        cmocka_unit_test_setup_teardown(test_create_from_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noop_when_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_shrink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_replication_factor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_drift, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_guarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_not_declared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_type_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_type_unsafe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nullability_and_pk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_archive_command_quoting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_documented_archive_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_restart_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_postgres_missing_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observed_json, setup, teardown),
        cmocka_unit_test(test_action_system_of),
        cmocka_unit_test(test_action_noun),
        cmocka_unit_test_setup_teardown(test_action_system_matches_plans, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
