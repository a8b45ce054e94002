/* test_plan_nocodb.c: planning NocoDB's Postgres role and NocoDB itself (pkg/plan, no servers).
 * Each case: the standard pipeline plus a nocodb block, an observed state built in memory, and
 * the actions expected in order; then rendering (no password anywhere) and plan files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cases/plan/fixtures.h"
#include "plan.h"

#define SECRET "Pw-of-the-role-9!"

typedef struct fixture {
    pc_manifest *m;
    pc_observed o;
    pc_plan *p;
} fixture;

/* ---------- fixtures: desired ---------- */

static void nc_manifest(pc_manifest *m, bool read_only)
{
    pc_mf_nocodb *nc = &m->nocodb;
    nc->declared = true;
    nc->url = fx_dup("http://127.0.0.1:8080");
    nc->token = fx_dup("tok-secret");
    nc->email = fx_dup("ops@example.com");
    nc->password = fx_dup("nc-secret");
    nc->base = fx_dup("Users");
    nc->schemas = calloc(4, sizeof *nc->schemas);
    assert_non_null(nc->schemas);
    nc->schemas[nc->nschemas++] = fx_dup("raw");
    nc->role = fx_dup("nocodb_reader");
    nc->role_password = fx_dup(SECRET);
    nc->read_only = read_only;
}

static void nc_manifest_free(pc_manifest *m)
{
    pc_mf_nocodb *nc = &m->nocodb;
    free(nc->url);
    free(nc->token);
    free(nc->email);
    free(nc->password);
    free(nc->base);
    for (size_t i = 0; i < nc->nschemas; i++)
        free(nc->schemas[i]);
    free(nc->schemas);
    free(nc->role);
    free(nc->role_password);
    free(nc->pg_host);
    memset(nc, 0, sizeof *nc);
}

/* ---------- fixtures: observed ---------- */

static pc_obs_role_schema *role_schema(pc_obs_role *r, const char *name, bool usage,
                                       const char *defaults)
{
    r->schemas = fx_grow(r->schemas, ++r->nschemas, sizeof *r->schemas);
    pc_obs_role_schema *s = &r->schemas[r->nschemas - 1];
    s->name = fx_dup(name);
    s->usage = usage;
    s->default_privileges = fx_dup(defaults);
    return s;
}

static void role_table(pc_obs_role_schema *s, const char *name, const char *privs)
{
    s->tables = fx_grow(s->tables, ++s->ntables, sizeof *s->tables);
    s->tables[s->ntables - 1].name = fx_dup(name);
    s->tables[s->ntables - 1].privileges = fx_dup(privs);
}

static pc_obs_nc_source *nc_source(pc_observed *o, const char *id, const char *alias,
                                   const char *schema, int port)
{
    pc_obs_nocodb *n = &o->nocodb;
    n->sources = fx_grow(n->sources, ++n->nsources, sizeof *n->sources);
    pc_obs_nc_source *s = &n->sources[n->nsources - 1];
    s->id = fx_dup(id);
    s->alias = fx_dup(alias);
    s->host = fx_dup("127.0.0.1");
    s->port = port;
    s->database = fx_dup("pipeline");
    s->user = fx_dup("nocodb_reader");
    s->schema = fx_dup(schema);
    s->enabled = true;
    s->tables_known = true;
    return s;
}

static pc_obs_nc_table *nc_table(pc_obs_nc_source *s, const char *name, const char *const *cols)
{
    s->tables = fx_grow(s->tables, ++s->ntables, sizeof *s->tables);
    pc_obs_nc_table *t = &s->tables[s->ntables - 1];
    t->name = fx_dup(name);
    for (size_t i = 0; cols != NULL && cols[i] != NULL; i++) {
        t->columns = fx_grow(t->columns, ++t->ncolumns, sizeof *t->columns);
        t->columns[t->ncolumns - 1] = fx_dup(cols[i]);
    }
    return t;
}

static const char *const k_users_cols[] = {"id", "email", "registered_at", NULL};

/* Postgres as pipectl's DSN reaches it, and no role, no base: a first apply. */
static void observed_empty(pc_observed *o)
{
    o->pgconn.host = fx_dup("127.0.0.1");
    o->pgconn.port = 5432;
    o->pgconn.database = fx_dup("pipeline");
    o->pgconn.user = fx_dup("postgres");
    o->role.observed = true;
    o->role.name = fx_dup("nocodb_reader");
    o->nocodb.observed = true;
}

/* Everything in place after an apply (read_only: SELECT). */
static void observed_converged(pc_observed *o, const char *privs)
{
    observed_empty(o);
    pc_obs_role *r = &o->role;
    r->exists = true;
    r->can_login = true;
    r->connect = true;
    r->password = PC_PW_OK;
    pc_obs_role_schema *rs = role_schema(r, "raw", true, privs);
    role_table(rs, "users", privs);
    o->nocodb.base_id = fx_dup("p_users");
    o->nocodb.base_title = fx_dup("Users");
    pc_obs_nc_source *meta = nc_source(o, "b_meta", NULL, NULL, 0);
    meta->is_meta = true;
    meta->tables_known = false;
    pc_obs_nc_source *s = nc_source(o, "b_raw", "users_raw", "raw", 5432);
    nc_table(s, "users", k_users_cols);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->m = fx_standard_manifest();
    nc_manifest(f->m, true);
    fx_standard_observed(&f->o);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pc_plan_free(f->p);
    pc_observed_free(&f->o);
    nc_manifest_free(f->m);
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

static void dump(const pc_plan *p)
{
    for (size_t i = 0; i < p->nactions; i++)
        print_message("  action %zu: %s %d/%d %s (%s)\n", i, p->actions[i].system,
                      p->actions[i].kind, p->actions[i].op, p->actions[i].object,
                      p->actions[i].reason ? p->actions[i].reason : "");
}

static void expect_kinds(const pc_plan *p, size_t n, const pc_action_kind *kinds, const pc_op *ops)
{
    if (p->nactions != n)
        dump(p);
    assert_int_equal(p->nactions, n);
    for (size_t i = 0; i < n; i++) {
        if (p->actions[i].kind != kinds[i] || (ops != NULL && p->actions[i].op != ops[i]))
            dump(p);
        assert_int_equal(p->actions[i].kind, kinds[i]);
        if (ops != NULL)
            assert_int_equal(p->actions[i].op, ops[i]);
    }
}

static const pc_change *find_change(const pc_action *a, const char *key)
{
    for (size_t i = 0; i < a->nchanges; i++)
        if (strcmp(a->changes[i].key, key) == 0)
            return &a->changes[i];
    fail_msg("action %s has no change '%s'", a->object, key);
    return NULL;
}

static void expect_reason(const pc_action *a, const char *needle)
{
    assert_non_null(a->reason);
    if (strstr(a->reason, needle) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", a->reason, needle);
}

/* Neither the text nor the JSON rendering holds a secret. */
static void expect_no_secret(const pc_plan *p)
{
    char *text = NULL, *json = NULL;
    pc_error err = {0};
    assert_int_equal(pc_plan_render_text(p, false, &text, &err), 0);
    assert_int_equal(pc_plan_render_json(p, &json, &err), 0);
    assert_null(strstr(text, SECRET));
    assert_null(strstr(json, SECRET));
    assert_null(strstr(text, "tok-secret"));
    assert_null(strstr(json, "tok-secret"));
    assert_null(strstr(text, "nc-secret"));
    assert_null(strstr(json, "nc-secret"));
    free(text);
    free(json);
}

/* ---------- cases ---------- */

static void test_from_empty(void **state)
{
    fixture *f = *state;
    observed_empty(&f->o);
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_CREATE, PC_ACT_ROLE_GRANT, PC_ACT_ROLE_GRANT,
                                           PC_ACT_NC_BASE_CREATE, PC_ACT_NC_SOURCE_CREATE};
    static const pc_op ops[] = {PC_OP_CREATE, PC_OP_CREATE, PC_OP_CREATE, PC_OP_CREATE,
                                PC_OP_CREATE};
    expect_kinds(p, 5, kinds, ops);
    const pc_action *role = &p->actions[0];
    assert_string_equal(role->system, "postgres");
    assert_string_equal(role->role, "nocodb_reader");
    assert_string_equal(find_change(role, "superuser")->to, "false");
    assert_string_equal(find_change(role, "password")->to, PC_PLAN_PASSWORD_SHOWN);
    assert_string_equal(p->actions[1].privileges, "CONNECT");
    assert_null(p->actions[1].schema);
    assert_string_equal(p->actions[1].database, "pipeline");
    assert_string_equal(p->actions[2].privileges, "SELECT");
    assert_string_equal(p->actions[2].schema, "raw");
    assert_string_equal(find_change(&p->actions[2], "usage")->to, "yes");
    assert_string_equal(p->actions[3].base, "Users");
    const pc_action *src = &p->actions[4];
    assert_string_equal(src->system, "nocodb");
    assert_string_equal(src->alias, "users_raw");
    assert_string_equal(src->object, "users_raw");
    assert_string_equal(src->schema, "raw");
    assert_string_equal(src->host, "127.0.0.1");
    assert_int_equal(src->port, 5432);
    assert_string_equal(src->database, "pipeline");
    assert_string_equal(src->role, "nocodb_reader");
    assert_null(src->base_id);
    expect_no_secret(p);

    char *text = NULL;
    pc_error err = {0};
    assert_int_equal(pc_plan_render_text(p, false, &text, &err), 0);
    assert_non_null(strstr(text, "+ postgres role nocodb_reader\n"));
    assert_non_null(strstr(text, "    password: (from manifest, redacted)\n"));
    assert_non_null(strstr(text, "+ nocodb base Users\n"));
    assert_non_null(strstr(text, "+ nocodb source users_raw\n"));
    assert_non_null(strstr(text, "    connection: 127.0.0.1:5432/pipeline as nocodb_reader\n"));
    free(text);
}

static void test_converged(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    const pc_plan *p = build(f, false);
    if (p->nactions != 0)
        dump(p);
    assert_int_equal(p->nactions, 0);
    assert_false(pc_plan_has_changes(p));
}

static void test_meta_sync_when_column_missing(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    /* NocoDB knows users without email (an earlier apply failed before its sync) */
    pc_obs_nc_table *t = &f->o.nocodb.sources[1].tables[0];
    free(t->columns[1]);
    t->columns[1] = t->columns[2];
    t->ncolumns = 2;
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_NC_META_SYNC};
    expect_kinds(p, 1, kinds, NULL);
    assert_string_equal(p->actions[0].source_id, "b_raw");
    assert_string_equal(p->actions[0].base_id, "p_users");
    expect_reason(&p->actions[0], "raw.users.email");
}

/* With only an API token, a needed sync is refused with what to do (NocoDB refuses tokens for
 * meta sync). */
static void test_meta_sync_needs_signin(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    free(f->m->nocodb.email);
    free(f->m->nocodb.password);
    f->m->nocodb.email = f->m->nocodb.password = NULL;
    pc_mf_table *t = fx_mf_table(&f->m->schemas[0], "events");
    fx_mf_col(t, "id", "bigint", true, false);
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_TABLE_CREATE, PC_ACT_NC_META_SYNC};
    static const pc_op ops[] = {PC_OP_CREATE, PC_OP_REFUSED};
    expect_kinds(p, 2, kinds, ops);
    expect_reason(&p->actions[1], "raw.events");
    expect_reason(&p->actions[1], "nocodb.email and nocodb.password");
}

static void test_meta_sync_when_table_missing(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    pc_mf_table *t = fx_mf_table(&f->m->schemas[0], "events");
    fx_mf_col(t, "id", "bigint", true, false);
    pc_obs_table *ot = fx_obs_table(&f->o, "raw", "events");
    fx_obs_col(ot, "id", "bigint", false, true);
    role_table(&f->o.role.schemas[0], "events", "SELECT");
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_NC_META_SYNC};
    expect_kinds(p, 1, kinds, NULL);
    expect_reason(&p->actions[0], "raw.events");
}

/* A new table in an exposed schema: created, then the source synced (after the Postgres DDL).
 * Default privileges already cover new tables, so no grant is needed. */
static void test_new_table_syncs_after_ddl(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    pc_mf_table *t = fx_mf_table(&f->m->schemas[0], "events");
    fx_mf_col(t, "id", "bigint", true, false);
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_TABLE_CREATE, PC_ACT_NC_META_SYNC};
    expect_kinds(p, 2, kinds, NULL);
    expect_reason(&p->actions[1], "raw.events");
    /* NocoDB already shows it (sync done, inventory not yet): the DDL alone triggers the sync */
    nc_table(&f->o.nocodb.sources[1], "events", (const char *const[]){"id", NULL});
    p = build(f, false);
    expect_kinds(p, 2, kinds, NULL);
    expect_reason(&p->actions[1], "this plan changes tables of schema raw");
}

static void test_column_drop_syncs_after_drop(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    fx_obs_col(fx_obs_find_table(&f->o, "raw", "users"), "legacy", "text", true, false);
    const pc_plan *p = build(f, true);
    static const pc_action_kind kinds[] = {PC_ACT_COLUMN_DROP, PC_ACT_NC_META_SYNC};
    static const pc_op ops[] = {PC_OP_DELETE, PC_OP_CHANGE};
    expect_kinds(p, 2, kinds, ops);
    /* refused drop: nothing changes in Postgres, so no sync */
    p = build(f, false);
    static const pc_action_kind kinds2[] = {PC_ACT_COLUMN_DROP};
    static const pc_op ops2[] = {PC_OP_REFUSED};
    expect_kinds(p, 1, kinds2, ops2);
}

static void test_source_drift(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    f->m->nocodb.pg_host = fx_dup("pg.internal");
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_NC_SOURCE_UPDATE};
    static const pc_op ops[] = {PC_OP_CHANGE};
    expect_kinds(p, 1, kinds, ops);
    const pc_action *a = &p->actions[0];
    assert_string_equal(find_change(a, "host")->from, "127.0.0.1");
    assert_string_equal(find_change(a, "host")->to, "pg.internal");
    assert_string_equal(a->host, "pg.internal");
    assert_string_equal(a->source_id, "b_raw");
    assert_string_equal(a->base_id, "p_users");
    f->m->nocodb.pg_port = 6543;
    p = build(f, false);
    expect_kinds(p, 1, kinds, ops);
    assert_string_equal(find_change(&p->actions[0], "port")->to, "6543");
    assert_int_equal(p->actions[0].port, 6543);
}

static void test_source_deletes(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    nc_source(&f->o, "b_old", "users_old", "old", 5432);
    nc_source(&f->o, "b_other", "billing_raw", "raw", 5432); /* another pipeline's */
    nc_source(&f->o, "b_hand", "handmade", "raw", 5432);     /* made by a person */
    nc_source(&f->o, "b_eu", "users_eu_raw", "raw", 5432);  /* pipeline users_eu's, same base */
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_NC_SOURCE_DELETE};
    static const pc_op refused[] = {PC_OP_REFUSED};
    expect_kinds(p, 1, kinds, refused);
    assert_string_equal(p->actions[0].object, "users_old");
    expect_reason(&p->actions[0], "--allow-delete");
    assert_true(pc_plan_has_changes(p));
    p = build(f, true);
    static const pc_op del[] = {PC_OP_DELETE};
    expect_kinds(p, 1, kinds, del);
    assert_string_equal(p->actions[0].source_id, "b_old");
}

/* Grants follow read_only: read-write wants all four privileges; going back to read-only
 * revokes (the grant action carries the privileges to keep). */
static void test_read_write_grants(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    f->m->nocodb.read_only = false;
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_GRANT};
    expect_kinds(p, 1, kinds, NULL);
    const pc_action *a = &p->actions[0];
    assert_string_equal(a->privileges, "SELECT,INSERT,UPDATE,DELETE");
    assert_string_equal(find_change(a, "table raw.users")->from, "SELECT");
    assert_string_equal(find_change(a, "default privileges on new tables")->from, "SELECT");

    pc_observed_free(&f->o);
    fx_standard_observed(&f->o);
    observed_converged(&f->o, "SELECT,INSERT,UPDATE,DELETE");
    f->m->nocodb.read_only = true;
    p = build(f, false);
    expect_kinds(p, 1, kinds, NULL);
    assert_string_equal(p->actions[0].privileges, "SELECT");
    assert_string_equal(find_change(&p->actions[0], "table raw.users")->to, "SELECT");
}

static void test_superuser_role_refused(void **state)
{
    fixture *f = *state;
    observed_empty(&f->o);
    f->o.role.exists = true;
    f->o.role.superuser = true;
    f->o.role.can_login = true;
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_ALTER, PC_ACT_NC_BASE_CREATE,
                                           PC_ACT_NC_SOURCE_CREATE};
    static const pc_op ops[] = {PC_OP_REFUSED, PC_OP_CREATE, PC_OP_REFUSED};
    expect_kinds(p, 3, kinds, ops);
    expect_reason(&p->actions[0], "superuser");
    expect_reason(&p->actions[2], "superuser");
}

static void test_dsn_user_refused(void **state)
{
    fixture *f = *state;
    observed_empty(&f->o);
    free(f->m->nocodb.role);
    f->m->nocodb.role = fx_dup("postgres");
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_CREATE, PC_ACT_NC_BASE_CREATE,
                                           PC_ACT_NC_SOURCE_CREATE};
    static const pc_op ops[] = {PC_OP_REFUSED, PC_OP_CREATE, PC_OP_REFUSED};
    expect_kinds(p, 3, kinds, ops);
    expect_reason(&p->actions[0], "user of postgres.dsn");
}

static void test_no_role_declared(void **state)
{
    fixture *f = *state;
    observed_empty(&f->o);
    f->o.role.observed = false;
    free(f->m->nocodb.role);
    f->m->nocodb.role = NULL;
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_NC_BASE_CREATE, PC_ACT_NC_SOURCE_CREATE};
    static const pc_op ops[] = {PC_OP_CREATE, PC_OP_REFUSED};
    expect_kinds(p, 2, kinds, ops);
    expect_reason(&p->actions[1], "nocodb.role is not set");
}

/* ${VAR:-} gives an empty password: refused in the plan, not found half-way through apply. */
static void test_empty_role_password(void **state)
{
    fixture *f = *state;
    observed_empty(&f->o);
    f->o.role.observed = false;
    f->m->nocodb.role_password[0] = '\0';
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_CREATE, PC_ACT_NC_BASE_CREATE,
                                           PC_ACT_NC_SOURCE_CREATE};
    static const pc_op ops[] = {PC_OP_REFUSED, PC_OP_CREATE, PC_OP_REFUSED};
    expect_kinds(p, 3, kinds, ops);
    expect_reason(&p->actions[0], "nocodb.role_password is empty");
    expect_reason(&p->actions[2], "nocodb.role_password is empty");
}

/* The password does not work (or the role lost LOGIN): reset it, and give NocoDB's source the
 * password again. */
static void test_password_rejected(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    f->o.role.password = PC_PW_FAILED;
    const pc_plan *p = build(f, false);
    static const pc_action_kind kinds[] = {PC_ACT_ROLE_ALTER, PC_ACT_NC_SOURCE_UPDATE};
    static const pc_op ops[] = {PC_OP_CHANGE, PC_OP_CHANGE};
    expect_kinds(p, 2, kinds, ops);
    assert_string_equal(find_change(&p->actions[0], "password")->to, PC_PLAN_PASSWORD_SHOWN);
    assert_string_equal(find_change(&p->actions[1], "password")->to, PC_PLAN_PASSWORD_SHOWN);
    expect_no_secret(p);

    f->o.role.password = PC_PW_UNKNOWN;
    f->o.role.can_login = false;
    p = build(f, false);
    expect_kinds(p, 2, kinds, ops);
    assert_string_equal(find_change(&p->actions[0], "login")->to, "true");
}

/* NocoDB not declared: nothing of this file appears, and the observed JSON has no nocodb part. */
static void test_not_declared(void **state)
{
    fixture *f = *state;
    nc_manifest_free(f->m);
    const pc_plan *p = build(f, false);
    assert_int_equal(p->nactions, 0);
    char *json = NULL;
    pc_error err = {0};
    assert_int_equal(pc_observed_to_json(&f->o, &json, &err), 0);
    assert_null(strstr(json, "nocodb"));
    free(json);
}

/* Plan files: the NocoDB actions survive a round trip byte for byte; a password field, a
 * wrong system or a bad privilege list is rejected. */
static void test_planfile_roundtrip(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    f->o.role.password = PC_PW_FAILED;
    nc_source(&f->o, "b_old", "users_old", "old", 5432);
    pc_mf_table *t = fx_mf_table(&f->m->schemas[0], "events");
    fx_mf_col(t, "id", "bigint", true, false);
    f->m->nocodb.read_only = false;
    const pc_plan *p = build(f, true);
    char *json = NULL, *again = NULL;
    pc_plan *loaded = NULL;
    pc_error err = {0};
    assert_int_equal(pc_plan_render_json(p, &json, &err), 0);
    if (pc_plan_load_json(&loaded, json, strlen(json), &err) != 0)
        fail_msg("load: %s", err.msg);
    assert_int_equal(pc_plan_render_json(loaded, &again, &err), 0);
    assert_string_equal(json, again);
    assert_int_equal(loaded->nactions, p->nactions);
    bool seen_update = false, seen_sync = false, seen_delete = false, seen_grant = false;
    for (size_t i = 0; i < loaded->nactions; i++) {
        const pc_action *a = &loaded->actions[i];
        seen_update |= a->kind == PC_ACT_NC_SOURCE_UPDATE && a->port == 5432 &&
                       pc_streq(a->source_id, "b_raw");
        seen_sync |= a->kind == PC_ACT_NC_META_SYNC && pc_streq(a->alias, "users_raw");
        seen_delete |= a->kind == PC_ACT_NC_SOURCE_DELETE && a->op == PC_OP_DELETE;
        seen_grant |=
            a->kind == PC_ACT_ROLE_GRANT && pc_streq(a->privileges, "SELECT,INSERT,UPDATE,DELETE");
    }
    assert_true(seen_update && seen_sync && seen_delete && seen_grant);
    assert_null(strstr(json, SECRET));
    pc_plan_free(loaded);
    loaded = NULL;

    static const struct {
        const char *from;
        const char *to;
        const char *msg;
    } bad[] = {
        {"\"alias\": \"users_raw\"", "\"alias\": \"users_raw\", \"password\": \"x\"",
         "unknown field"},
        {"\"privileges\": \"SELECT,INSERT,UPDATE,DELETE\"", "\"privileges\": \"SELECT; DROP\"",
         "privileges"},
        {"\"system\": \"nocodb\"", "\"system\": \"kafka\"", "system"},
        {"\"port\": 5432", "\"port\": 70000", "port"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *at = strstr(json, bad[i].from);
        assert_non_null(at);
        size_t pre = (size_t)(at - json);
        char *edited = malloc(strlen(json) + strlen(bad[i].to) + 1);
        assert_non_null(edited);
        memcpy(edited, json, pre);
        strcpy(edited + pre, bad[i].to);
        strcat(edited, at + strlen(bad[i].from));
        pc_error e = {0};
        assert_int_not_equal(pc_plan_load_json(&loaded, edited, strlen(edited), &e), 0);
        assert_null(loaded);
        if (strstr(e.msg, bad[i].msg) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, bad[i].msg);
        free(edited);
    }
    free(json);
    free(again);
}

/* The fingerprint sees NocoDB: a table NocoDB learns about makes a saved plan stale; a source
 * of someone else's does not. */
static void test_fingerprint(void **state)
{
    fixture *f = *state;
    observed_converged(&f->o, "SELECT");
    char a[65], b[65], c[65];
    pc_error err = {0};
    assert_int_equal(pc_observed_fingerprint(f->m, &f->o, a, &err), 0);
    nc_table(&f->o.nocodb.sources[1], "events", NULL);
    assert_int_equal(pc_observed_fingerprint(f->m, &f->o, b, &err), 0);
    assert_string_not_equal(a, b);
    nc_source(&f->o, "b_hand", "handmade", "raw", 5432);
    assert_int_equal(pc_observed_fingerprint(f->m, &f->o, c, &err), 0);
    assert_string_equal(b, c);
    char *json = NULL;
    assert_int_equal(pc_observed_to_json(&f->o, &json, &err), 0);
    assert_non_null(strstr(json, "\"handmade\""));
    assert_non_null(strstr(json, "\"password\": \"works\""));
    free(json);
}

/* A pipeline named as Kubernetes names things (metadata.name: users-eu): its source alias is
 * users-eu_raw (NocoDB takes any alias up to 128 characters); pipeline users' users_raw in the
 * same base is someone else's, neither claimed nor deleted. */
static void test_hyphenated_pipeline_name(void **state)
{
    fixture *f = *state;
    free(f->m->name);
    f->m->name = fx_dup("users-eu");
    observed_empty(&f->o);
    const pc_plan *p = build(f, true);
    assert_true(p->nactions >= 1);
    const pc_action *src = &p->actions[p->nactions - 1];
    assert_int_equal(src->kind, PC_ACT_NC_SOURCE_CREATE);
    assert_string_equal(src->alias, "users-eu_raw");
    assert_string_equal(src->object, "users-eu_raw");
    assert_string_equal(p->pipeline, "users-eu");

    pc_observed_free(&f->o);
    memset(&f->o, 0, sizeof f->o);
    fx_standard_observed(&f->o);
    observed_converged(&f->o, "SELECT"); /* holds pipeline users' users_raw */
    nc_source(&f->o, "b_eu", "users-eu_raw", "raw", 5432);
    nc_table(&f->o.nocodb.sources[f->o.nocodb.nsources - 1], "users", k_users_cols);
    p = build(f, true);
    if (p->nactions != 0)
        dump(p);
    assert_int_equal(p->nactions, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_from_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_converged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_sync_when_column_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_sync_when_table_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_sync_needs_signin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_table_syncs_after_ddl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_drop_syncs_after_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_drift, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superuser_role_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dsn_user_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_role_declared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_role_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_declared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planfile_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hyphenated_pipeline_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
