/* test_planfile.c: rendering plans as text and JSON, and plan files (JSON) read back: exact
 * round trip, strict validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "cases/plan/fixtures.h"
#include "plan.h"

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
    if (pc_plan_build(&f->p, f->m, &f->o, &opts, &err) != 0)
        fail_msg("pc_plan_build: %s", err.msg);
    return f->p;
}

static char *text_of(const pc_plan *p, bool color)
{
    char *s = NULL;
    pc_error err = {0};
    if (pc_plan_render_text(p, color, &s, &err) != 0)
        fail_msg("render_text: %s", err.msg);
    return s;
}

static char *json_of(const pc_plan *p)
{
    char *s = NULL;
    pc_error err = {0};
    if (pc_plan_render_json(p, &s, &err) != 0)
        fail_msg("render_json: %s", err.msg);
    return s;
}

/* A plan with one of each display form: config drift, create with configs, column add, setting
 * needing a restart, a pending-restart note and a refused delete. */
static void drift(fixture *f)
{
    pc_obs_topic *t = fx_obs_find_topic(&f->o, "users_created");
    fx_obs_set_value(&t->configs[1].value, "86400000");
    /* users_dlq vanished */
    for (size_t i = 0; i < f->o.ntopics; i++) {
        if (strcmp(f->o.topics[i].name, "users_dlq") == 0) {
            fx_obs_set_value(&f->o.topics[i].name, "old_topic");
            fx_obs_owned(&f->o, "topic", "old_topic", NULL);
        }
    }
    fx_mf_col(&f->m->schemas[0].tables[0], "age", "integer", false, true);
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "archive_mode")->value, "off");
    f->m->archiving.wal_level = fx_dup("logical");
    fx_obs_set_value(&fx_obs_find_setting(&f->o, "wal_level")->pending, "logical");
}

static void test_render_text_snapshot(void **state)
{
    fixture *f = *state;
    drift(f);
    char *s = text_of(build(f, false), false);
    assert_string_equal(
        s, "~ kafka topic users_created\n"
           "    retention.ms: \"86400000\" -> \"604800000\"\n"
           "+ kafka topic users_dlq (partitions=1, replication_factor=1)\n"
           "    retention.ms: 604800000\n"
           "+ postgres column raw.users.age integer\n"
           "  note: restart required: wal_level is set to logical in postgresql.auto.conf "
           "(running value replica); restart PostgreSQL to apply it\n"
           "~ postgres setting archive_mode: off -> on (restart required)\n"
           "! kafka topic old_topic: topic 'old_topic' is no longer declared; deleting it "
           "destroys its data and needs --allow-delete\n"
           "\n"
           "Plan: 2 to create, 2 to change, 0 to delete, 1 refused.\n");
    free(s);

    s = text_of(f->p, true);
    assert_non_null(strstr(s, "\033[33m~ kafka topic users_created\033[0m\n"));
    assert_non_null(strstr(s, "\033[32m+ kafka topic users_dlq"));
    assert_non_null(strstr(s, "\033[1;31m! kafka topic old_topic"));
    free(s);

    /* allowed: a red "-" */
    s = text_of(build(f, true), true);
    assert_non_null(strstr(s, "\033[31m- kafka topic old_topic\033[0m\n"));
    assert_non_null(strstr(s, "1 to delete, 0 refused."));
    free(s);
}

static void test_render_text_postgres(void **state)
{
    fixture *f = *state;
    pc_observed_free(&f->o);
    f->o.pg_observed = true;
    f->m->archiving.declared = false;
    char *s = text_of(build(f, false), false);
    assert_string_equal(s, "+ postgres schema raw\n"
                           "+ postgres table raw.users\n"
                           "    id uuid primary key\n"
                           "    email text not null\n"
                           "    registered_at timestamptz\n"
                           "\n"
                           "Plan: 2 to create, 0 to change, 0 to delete, 0 refused.\n");
    free(s);

    fx_obs_schema(&f->o, "raw");
    pc_obs_table *tb = fx_obs_table(&f->o, "raw", "users");
    fx_obs_col(tb, "id", "uuid", false, true);
    fx_obs_col(tb, "email", "text", true, false);
    fx_obs_col(tb, "registered_at", "integer", true, false);
    fx_obs_col(tb, "legacy", "text", true, false);
    fx_obs_owned(&f->o, "table", "raw.users", NULL);
    s = text_of(build(f, true), false);
    assert_string_equal(
        s, "~ postgres column raw.users.email\n"
           "    nullable: true -> false\n"
           "    warning: SET NOT NULL fails if raw.users.email holds NULL values; update those "
           "rows first\n"
           "! postgres column raw.users.registered_at: changing the type of "
           "raw.users.registered_at from integer to timestamptz could lose data; migrate it by "
           "hand\n"
           "    type: integer -> timestamptz\n"
           "- postgres column raw.users.legacy\n"
           "\n"
           "Plan: 0 to create, 1 to change, 1 to delete, 1 refused.\n");
    free(s);
}

static void test_render_no_changes(void **state)
{
    fixture *f = *state;
    char *s = text_of(build(f, false), true);
    assert_string_equal(s, "No changes. Kafka and Postgres match the manifest.\n");
    free(s);
    char *j = json_of(f->p);
    json_t *root = json_loads(j, 0, NULL);
    assert_non_null(root);
    assert_false(json_is_true(json_object_get(root, "changes_present")));
    assert_int_equal(json_array_size(json_object_get(root, "actions")), 0);
    json_decref(root);
    free(j);

    /* only a note: still "No changes", with the note shown */
    pc_obs_setting *st = fx_obs_find_setting(&f->o, "archive_mode");
    fx_obs_set_value(&st->value, "off");
    fx_obs_set_value(&st->pending, "on");
    s = text_of(build(f, false), false);
    assert_non_null(strstr(s, "  note: restart required: archive_mode"));
    assert_non_null(strstr(s, "\nNo changes. Kafka and Postgres match the manifest.\n"));
    free(s);
}

static void test_render_json_fields(void **state)
{
    fixture *f = *state;
    drift(f);
    char *j = json_of(build(f, false));
    json_error_t jerr;
    json_t *root = json_loads(j, 0, &jerr);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "format_version")), "1");
    assert_string_equal(json_string_value(json_object_get(root, "pipeline")), "users");
    assert_string_equal(json_string_value(json_object_get(root, "fingerprint")), f->p->fingerprint);
    assert_true(json_is_true(json_object_get(root, "changes_present")));
    json_t *sum = json_object_get(root, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "create")), 2);
    assert_int_equal(json_integer_value(json_object_get(sum, "change")), 2);
    assert_int_equal(json_integer_value(json_object_get(sum, "delete")), 0);
    assert_int_equal(json_integer_value(json_object_get(sum, "refused")), 1);
    json_t *acts = json_object_get(root, "actions");
    assert_int_equal(json_array_size(acts), 6);
    json_t *a0 = json_array_get(acts, 0);
    assert_string_equal(json_string_value(json_object_get(a0, "op")), "change");
    assert_string_equal(json_string_value(json_object_get(a0, "kind")), "topic_config");
    assert_string_equal(json_string_value(json_object_get(a0, "system")), "kafka");
    assert_string_equal(json_string_value(json_object_get(a0, "topic")), "users_created");
    json_t *cfg = json_object_get(a0, "configs");
    assert_string_equal(json_string_value(json_object_get(cfg, "cleanup.policy")),
                        "compact,delete");
    json_t *ch = json_array_get(json_object_get(a0, "changes"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "key")), "retention.ms");
    assert_string_equal(json_string_value(json_object_get(ch, "from")), "86400000");
    assert_string_equal(json_string_value(json_object_get(ch, "to")), "604800000");
    json_t *a3 = json_array_get(acts, 3);
    assert_string_equal(json_string_value(json_object_get(a3, "op")), "note");
    assert_string_equal(json_string_value(json_object_get(a3, "kind")), "note");
    json_t *a4 = json_array_get(acts, 4);
    assert_string_equal(json_string_value(json_object_get(a4, "kind")), "setting");
    assert_true(json_is_true(json_object_get(a4, "restart_required")));
    assert_string_equal(json_string_value(json_object_get(a4, "value")), "on");
    json_t *a5 = json_array_get(acts, 5);
    assert_string_equal(json_string_value(json_object_get(a5, "op")), "refused");
    assert_string_equal(json_string_value(json_object_get(a5, "kind")), "topic_delete");
    assert_true(json_is_string(json_object_get(a5, "reason")));
    json_decref(root);
    free(j);
}

static void round_trip(const pc_plan *p)
{
    char *j1 = json_of(p), *t1 = text_of(p, false);
    pc_plan *q = NULL;
    pc_error err = {0};
    if (pc_plan_load_json(&q, j1, strlen(j1), &err) != 0)
        fail_msg("load: %s\n%s", err.msg, j1);
    char *j2 = json_of(q), *t2 = text_of(q, false);
    assert_string_equal(j1, j2);
    assert_string_equal(t1, t2);
    assert_string_equal(q->fingerprint, p->fingerprint);
    assert_string_equal(q->pipeline, p->pipeline);
    assert_int_equal(q->nactions, p->nactions);
    /* every field apply uses survives */
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i], *b = &q->actions[i];
        assert_int_equal(a->op, b->op);
        assert_int_equal(a->kind, b->kind);
        assert_int_equal(a->partitions, b->partitions);
        assert_int_equal(a->replication_factor, b->replication_factor);
        assert_int_equal(a->configs.n, b->configs.n);
        for (size_t k = 0; k < a->configs.n; k++) {
            assert_string_equal(a->configs.items[k].key, b->configs.items[k].key);
            assert_true(pc_streq(a->configs.items[k].value, b->configs.items[k].value));
        }
        assert_true(pc_streq(a->topic, b->topic));
        assert_true(pc_streq(a->schema, b->schema));
        assert_true(pc_streq(a->table, b->table));
        assert_true(pc_streq(a->setting, b->setting));
        assert_true(pc_streq(a->value, b->value));
        assert_true(pc_streq(a->reason, b->reason));
        assert_int_equal(a->restart_required, b->restart_required);
        assert_int_equal(a->ncolumns, b->ncolumns);
        for (size_t k = 0; k < a->ncolumns; k++) {
            assert_string_equal(a->columns[k].name, b->columns[k].name);
            assert_string_equal(a->columns[k].type, b->columns[k].type);
            assert_int_equal(a->columns[k].nullable, b->columns[k].nullable);
            assert_int_equal(a->columns[k].primary_key, b->columns[k].primary_key);
        }
    }
    pc_plan_free(q);
    free(j1);
    free(j2);
    free(t1);
    free(t2);
}

static void test_json_round_trip(void **state)
{
    fixture *f = *state;
    round_trip(build(f, false)); /* empty */
    drift(f);
    round_trip(build(f, false));
    round_trip(build(f, true));

    /* everything from scratch, plus drops, resets and type changes */
    pc_observed_free(&f->o);
    f->o.kafka_observed = f->o.pg_observed = true;
    fx_obs_setting(&f->o, "archive_mode", "off", NULL, "postmaster", NULL);
    fx_obs_setting(&f->o, "archive_command", "", NULL, "sighup", NULL);
    pc_obs_topic *t = fx_obs_topic(&f->o, "users_dlq", 2, 3);
    fx_obs_cfg(t, "segment.ms", "100", PC_CFG_TOPIC_OVERRIDE);
    fx_obs_cfg(t, "weird", NULL, PC_CFG_TOPIC_OVERRIDE);
    static const char *const keys[] = {"segment.ms", NULL};
    fx_obs_owned(&f->o, "topic", "users_dlq", keys);
    fx_obs_topic(&f->o, "old", 1, 1);
    fx_obs_owned(&f->o, "topic", "old", NULL);
    fx_obs_schema(&f->o, "raw");
    pc_obs_table *tb = fx_obs_table(&f->o, "raw", "users");
    fx_obs_col(tb, "id", "text", false, true);
    fx_obs_col(tb, "zzz", "int4", true, false);
    fx_obs_owned(&f->o, "table", "raw.users", NULL);
    round_trip(build(f, true));
    round_trip(build(f, false));
}

/* ---------- rejection ---------- */

static void expect_reject(const char *text, const char *needle)
{
    pc_plan *q = NULL;
    pc_error err = {0};
    int rc = pc_plan_load_json(&q, text, strlen(text), &err);
    if (rc != PC_EINVAL)
        fail_msg("expected PC_EINVAL for %s, got %d (%s)", needle, rc, err.msg);
    assert_null(q);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

typedef void (*mutate_fn)(json_t *root);

static void reject_mutated(const pc_plan *p, mutate_fn fn, const char *needle)
{
    char *j = json_of(p);
    json_t *root = json_loads(j, 0, NULL);
    assert_non_null(root);
    fn(root);
    char *bad = json_dumps(root, JSON_INDENT(2));
    assert_non_null(bad);
    expect_reject(bad, needle);
    free(bad);
    json_decref(root);
    free(j);
}

static json_t *action0(json_t *root)
{
    return json_array_get(json_object_get(root, "actions"), 0);
}

static void m_version(json_t *r)
{
    json_object_set_new(r, "format_version", json_string("2"));
}
static void m_version_int(json_t *r)
{
    json_object_set_new(r, "format_version", json_integer(1));
}
static void m_no_version(json_t *r)
{
    json_object_del(r, "format_version");
}
static void m_unknown_top(json_t *r)
{
    json_object_set_new(r, "extra", json_true());
}
static void m_fingerprint(json_t *r)
{
    json_object_set_new(r, "fingerprint", json_string("abc"));
}
static void m_actions_obj(json_t *r)
{
    json_object_set_new(r, "actions", json_object());
}
static void m_partitions_str(json_t *r)
{
    json_object_set_new(action0(r), "partitions", json_string("3"));
}
static void m_partitions_neg(json_t *r)
{
    json_object_set_new(action0(r), "partitions", json_integer(-1));
}
static void m_op(json_t *r)
{
    json_object_set_new(action0(r), "op", json_string("destroy"));
}
static void m_kind(json_t *r)
{
    json_object_set_new(action0(r), "kind", json_string("topic_nuke"));
}
static void m_system(json_t *r)
{
    json_object_set_new(action0(r), "system", json_string("mysql"));
}
static void m_no_topic(json_t *r)
{
    json_object_del(action0(r), "topic");
}
static void m_unknown_field(json_t *r)
{
    json_object_set_new(action0(r), "force", json_true());
}
static void m_changes(json_t *r)
{
    json_object_set_new(action0(r), "changes", json_string("x"));
}
static void m_change_key(json_t *r)
{
    json_t *c = json_array_get(json_object_get(action0(r), "changes"), 0);
    json_object_set_new(c, "key", json_integer(1));
}
static void m_config_val(json_t *r)
{
    json_object_set_new(json_object_get(action0(r), "configs"), "retention.ms", json_integer(5));
}
static void m_restart(json_t *r)
{
    json_object_set_new(action0(r), "restart_required", json_string("no"));
}
static void m_summary(json_t *r)
{
    json_object_set_new(json_object_get(r, "summary"), "create", json_integer(9));
}
static void m_present(json_t *r)
{
    json_object_set_new(r, "changes_present", json_false());
}
static void m_note_op(json_t *r)
{
    json_object_set_new(action0(r), "op", json_string("note"));
}
static void m_action_str(json_t *r)
{
    json_array_set_new(json_object_get(r, "actions"), 0, json_string("x"));
}

static void test_load_rejects(void **state)
{
    fixture *f = *state;
    expect_reject("", "not valid JSON");
    expect_reject("{\"format_version\": \"1\",", "not valid JSON");
    expect_reject("garbage", "not valid JSON");
    expect_reject("[1,2]", "JSON object");
    expect_reject("{\"format_version\":\"1\",\"format_version\":\"1\"}", "not valid JSON");

    drift(f);
    const pc_plan *p = build(f, false);
    assert_int_equal(p->actions[0].kind, PC_ACT_TOPIC_CONFIG);
    reject_mutated(p, m_version, "format_version \"2\" is not supported");
    reject_mutated(p, m_version_int, "format_version: must be a string");
    reject_mutated(p, m_no_version, "format_version: missing");
    reject_mutated(p, m_unknown_top, "extra: unknown field");
    reject_mutated(p, m_fingerprint, "fingerprint: must be 64");
    reject_mutated(p, m_actions_obj, "actions: must be an array");
    reject_mutated(p, m_partitions_str, "actions[0].partitions: must be a positive integer");
    reject_mutated(p, m_partitions_neg, "actions[0].partitions: must be a positive integer");
    reject_mutated(p, m_op, "actions[0].op: must be one of");
    reject_mutated(p, m_kind, "actions[0].kind: must be one of");
    reject_mutated(p, m_system, "actions[0].system");
    reject_mutated(p, m_no_topic, "actions[0].topic: missing");
    reject_mutated(p, m_unknown_field, "actions[0].force: unknown field");
    reject_mutated(p, m_changes, "actions[0].changes: must be an array");
    reject_mutated(p, m_change_key, "actions[0].changes[0].key: must be a string");
    reject_mutated(p, m_config_val, "actions[0].configs.retention.ms: must be a string");
    reject_mutated(p, m_restart, "actions[0].restart_required: must be true or false");
    reject_mutated(p, m_summary, "summary.create: does not match");
    reject_mutated(p, m_present, "changes_present: does not match");
    reject_mutated(p, m_note_op, "actions[0].op: \"note\" goes with kind \"note\"");
    reject_mutated(p, m_action_str, "actions[0]: must be an object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_render_text_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_text_postgres, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_no_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_json_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_rejects, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
