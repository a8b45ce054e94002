/* test_plan_acl.c: Kafka ACLs in the planning core: the desired bindings (kafka.acls expanded,
 * kafka.derive_acls), the diff against observed bindings and the inventory, drift, ordering,
 * the fingerprint, rendering, and plan files holding ACL actions. Manifests are built in memory
 * on top of the standard fixture. */
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

/* ---------- fixture: the standard pipeline plus ACLs, workers and principals ---------- */

typedef struct fixture {
    pc_manifest *m;
    pc_observed o;
    pc_plan *p;
} fixture;

static void mf_acl(pc_manifest *m, const char *principal, const char *resource, const char *name,
                   const char *pattern, const char *const *ops, const char *permission,
                   const char *host, int line)
{
    m->acls = fx_grow(m->acls, ++m->nacls, sizeof *m->acls);
    pc_mf_acl *a = &m->acls[m->nacls - 1];
    a->principal = fx_dup(principal);
    a->resource = fx_dup(resource);
    a->name = fx_dup(name);
    a->pattern = fx_dup(pattern);
    for (size_t i = 0; ops[i] != NULL; i++) {
        a->operations = fx_grow(a->operations, ++a->noperations, sizeof *a->operations);
        a->operations[a->noperations - 1] = fx_dup(ops[i]);
    }
    a->permission = fx_dup(permission);
    a->host = fx_dup(host);
    a->pos = (pc_pos){line, 7};
}

static pc_mf_source *mf_source(pc_manifest *m, const char *name, const char *topic,
                               const char *principal, int line)
{
    m->sources = fx_grow(m->sources, ++m->nsources, sizeof *m->sources);
    pc_mf_source *s = &m->sources[m->nsources - 1];
    s->name = fx_dup(name);
    s->topic = fx_dup(topic);
    s->auth.principal = fx_dup(principal);
    s->pos = (pc_pos){line, 5};
    return s;
}

static pc_mf_sink *mf_sink(pc_manifest *m, const char *name, const char *topic,
                           const char *dead_letter, const char *principal, int line)
{
    m->sinks = fx_grow(m->sinks, ++m->nsinks, sizeof *m->sinks);
    pc_mf_sink *s = &m->sinks[m->nsinks - 1];
    s->name = fx_dup(name);
    s->topic = fx_dup(topic);
    s->dead_letter = fx_dup(dead_letter);
    s->auth.principal = fx_dup(principal);
    s->pos = (pc_pos){line, 5};
    return s;
}

static void mf_free_acl_parts(pc_manifest *m)
{
    for (size_t i = 0; i < m->nacls; i++) {
        pc_mf_acl *a = &m->acls[i];
        free(a->principal);
        free(a->resource);
        free(a->name);
        free(a->pattern);
        for (size_t k = 0; k < a->noperations; k++)
            free(a->operations[k]);
        free(a->operations);
        free(a->permission);
        free(a->host);
    }
    free(m->acls);
    for (size_t i = 0; i < m->nsources; i++) {
        free(m->sources[i].name);
        free(m->sources[i].topic);
        free(m->sources[i].auth.principal);
    }
    free(m->sources);
    for (size_t i = 0; i < m->nsinks; i++) {
        free(m->sinks[i].name);
        free(m->sinks[i].topic);
        free(m->sinks[i].dead_letter);
        free(m->sinks[i].auth.principal);
    }
    free(m->sinks);
    free(m->kafka_auth.principal);
}

static void obs_acl(pc_observed *o, const char *principal, const char *resource, const char *name,
                    const char *pattern, const char *op, const char *permission)
{
    o->acls = fx_grow(o->acls, ++o->nacls, sizeof *o->acls);
    pc_acl *a = &o->acls[o->nacls - 1];
    a->principal = fx_dup(principal);
    a->resource = fx_dup(resource);
    a->name = fx_dup(name);
    a->pattern = fx_dup(pattern);
    a->operation = fx_dup(op);
    a->permission = fx_dup(permission);
    a->host = fx_dup("*");
}

/* The standard pipeline with derive_acls: source randomuser (User:ingest) -> users_created,
 * sink users_to_pg (User:sink) reading users_created with dead letter users_dlq, controller
 * User:admin. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->m = fx_standard_manifest();
    f->m->derive_acls = true;
    f->m->kafka_auth.principal = fx_dup("User:admin");
    mf_source(f->m, "randomuser", "users_created", "User:ingest", 25);
    mf_sink(f->m, "users_to_pg", "users_created", "users_dlq", "User:sink", 30);
    fx_standard_observed(&f->o);
    f->o.acls_observed = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pc_plan_free(f->p);
    pc_observed_free(&f->o);
    mf_free_acl_parts(f->m);
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

/* The derived bindings of the fixture, as canonical strings, in plan order. */
static const char *const derived[] = {
    "User:ingest allow write topic:users_created (literal) host *",
    "User:ingest allow describe topic:users_created (literal) host *",
    "User:sink allow read topic:users_created (literal) host *",
    "User:sink allow describe topic:users_created (literal) host *",
    "User:sink allow read group:pipectl-users-users_to_pg (literal) host *",
    "User:sink allow write topic:users_dlq (literal) host *",
    "User:sink allow describe topic:users_dlq (literal) host *",
    NULL};

/* Makes the observed state hold every derived binding and the inventory own them. */
static void observe_all_derived(fixture *f)
{
    pc_acl_desired *d = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_plan_acls_desired(f->m, &d, &n, &err), 0);
    for (size_t i = 0; i < n; i++) {
        obs_acl(&f->o, d[i].acl.principal, d[i].acl.resource, d[i].acl.name, d[i].acl.pattern,
                d[i].acl.operation, d[i].acl.permission);
        char *key = pc_plan_acl_string(&d[i].acl);
        fx_obs_owned(&f->o, "acl", key, NULL);
        free(key);
    }
    pc_plan_acls_desired_free(d, n);
}

static size_t count_kind(const pc_plan *p, pc_action_kind k, pc_op op)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nactions; i++)
        if (p->actions[i].kind == k && p->actions[i].op == op)
            n++;
    return n;
}

static const pc_action *find_obj(const pc_plan *p, const char *object)
{
    for (size_t i = 0; i < p->nactions; i++)
        if (strcmp(p->actions[i].object, object) == 0)
            return &p->actions[i];
    return NULL;
}

/* ---------- desired bindings ---------- */

static void test_acl_string(void **state)
{
    (void)state;
    pc_acl a = {.principal = "User:ingest",
                .resource = "topic",
                .name = "users_created",
                .pattern = "literal",
                .operation = "write",
                .permission = "allow",
                .host = "*"};
    char *s = pc_plan_acl_string(&a);
    assert_string_equal(s, "User:ingest allow write topic:users_created (literal) host *");
    free(s);
    assert_null(pc_plan_acl_invalid(&a));
    /* table: one bad field each */
    static const struct {
        size_t field; /* index into the struct's char* members */
        const char *value;
        const char *bad;
    } cases[] = {
        {0, "alice", "principal"}, {1, "broker", "resource"},     {2, "", "name"},
        {3, "match", "pattern"},   {4, "READ", "operation"},      {5, "permit", "permission"},
        {6, "", "host"},           {4, "idempotent_write", NULL}, {1, "transactional_id", NULL},
        {3, "prefixed", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_acl b = a;
        char **fields[] = {&b.principal, &b.resource,   &b.name, &b.pattern,
                           &b.operation, &b.permission, &b.host};
        *fields[cases[i].field] = (char *)cases[i].value;
        const char *bad = pc_plan_acl_invalid(&b);
        if (cases[i].bad == NULL)
            assert_null(bad);
        else
            assert_string_equal(bad, cases[i].bad);
    }
}

static void test_desired_expansion(void **state)
{
    fixture *f = *state;
    f->m->derive_acls = false;
    static const char *const ops[] = {"read", "describe", NULL};
    mf_acl(f->m, "User:alice", "topic", "users_", "prefixed", ops, "allow", NULL, 12);
    static const char *const ops2[] = {"describe", "alter", NULL};
    mf_acl(f->m, "User:ops", "cluster", "kafka-cluster", "literal", ops2, "deny", "10.0.0.1", 16);
    pc_acl_desired *d = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_plan_acls_desired(f->m, &d, &n, &err), 0);
    static const char *const want[] = {
        "User:alice allow read topic:users_ (prefixed) host *",
        "User:alice allow describe topic:users_ (prefixed) host *",
        "User:ops deny describe cluster:kafka-cluster (literal) host 10.0.0.1",
        "User:ops deny alter cluster:kafka-cluster (literal) host 10.0.0.1"};
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        char *s = pc_plan_acl_string(&d[i].acl);
        assert_string_equal(s, want[i]);
        free(s);
        assert_false(d[i].derived);
        assert_int_equal(d[i].pos.line, i < 2 ? 12 : 16);
    }
    pc_plan_acls_desired_free(d, n);
}

static void expect_desired(const pc_manifest *m, const char *const *want)
{
    pc_acl_desired *d = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_plan_acls_desired(m, &d, &n, &err), 0);
    size_t nwant = 0;
    while (want[nwant] != NULL)
        nwant++;
    for (size_t i = 0; i < n && n != nwant; i++) {
        char *s = pc_plan_acl_string(&d[i].acl);
        print_message("  desired %zu: %s\n", i, s);
        free(s);
    }
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++) {
        char *s = pc_plan_acl_string(&d[i].acl);
        assert_string_equal(s, want[i]);
        free(s);
    }
    pc_plan_acls_desired_free(d, n);
}

static void test_derive(void **state)
{
    fixture *f = *state;
    expect_desired(f->m, derived);
    pc_acl_desired *d = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_plan_acls_desired(f->m, &d, &n, &err), 0);
    assert_true(d[0].derived);
    assert_string_equal(d[0].worker_kind, "source");
    assert_string_equal(d[0].worker, "randomuser");
    assert_int_equal(d[0].pos.line, 25);
    assert_string_equal(d[4].worker_kind, "sink");
    assert_string_equal(d[4].worker, "users_to_pg");
    assert_int_equal(d[4].pos.line, 30);
    pc_plan_acls_desired_free(d, n);
}

/* Table: how derivation reacts to principals. */
static void test_derive_principals(void **state)
{
    fixture *f = *state;
    /* no derive_acls: nothing */
    f->m->derive_acls = false;
    static const char *const none[] = {NULL};
    expect_desired(f->m, none);
    f->m->derive_acls = true;

    /* the sink runs as the controller: skipped; the source keeps its bindings */
    free(f->m->sinks[0].auth.principal);
    f->m->sinks[0].auth.principal = fx_dup("User:admin");
    static const char *const source_only[] = {derived[0], derived[1], NULL};
    expect_desired(f->m, source_only);

    /* the source has no principal (mTLS without one): skipped */
    free(f->m->sources[0].auth.principal);
    f->m->sources[0].auth.principal = NULL;
    expect_desired(f->m, none);

    /* a sink without dead letter: topic + group only */
    free(f->m->sinks[0].auth.principal);
    f->m->sinks[0].auth.principal = fx_dup("User:sink");
    free(f->m->sinks[0].dead_letter);
    f->m->sinks[0].dead_letter = NULL;
    static const char *const sink_only[] = {derived[2], derived[3], derived[4], NULL};
    expect_desired(f->m, sink_only);
}

static void test_derive_dedup(void **state)
{
    fixture *f = *state;
    /* a second source on the same topic as the same principal adds nothing */
    mf_source(f->m, "randomuser2", "users_created", "User:ingest", 40);
    /* a manifest entry equal to a derived binding: kept once, as the manifest's (first) */
    static const char *const ops[] = {"write", NULL};
    mf_acl(f->m, "User:ingest", "topic", "users_created", "literal", ops, "allow", "*", 12);
    static const char *const want[] = {derived[0], derived[1], derived[2], derived[3],
                                       derived[4], derived[5], derived[6], NULL};
    expect_desired(f->m, want);
    pc_acl_desired *d = NULL;
    size_t n = 0;
    pc_error err = {0};
    assert_int_equal(pc_plan_acls_desired(f->m, &d, &n, &err), 0);
    assert_false(d[0].derived);
    assert_int_equal(d[0].pos.line, 12);
    pc_plan_acls_desired_free(d, n);
}

/* ---------- diff ---------- */

static void test_create_all(void **state)
{
    fixture *f = *state;
    const pc_plan *p = build(f, false);
    assert_int_equal(p->nactions, 7);
    for (size_t i = 0; i < 7; i++) {
        const pc_action *a = &p->actions[i];
        assert_int_equal(a->kind, PC_ACT_ACL_CREATE);
        assert_int_equal(a->op, PC_OP_CREATE);
        assert_string_equal(a->system, "kafka");
        assert_string_equal(a->object, derived[i]);
        char *s = pc_plan_acl_string(&a->acl);
        assert_string_equal(s, derived[i]);
        free(s);
        assert_int_equal(a->nchanges, 1);
        assert_string_equal(a->changes[0].key, "declared by");
    }
    assert_string_equal(p->actions[0].changes[0].to,
                        "kafka.derive_acls: source randomuser (pipeline.yaml:25:5)");
}

static void test_converged(void **state)
{
    fixture *f = *state;
    observe_all_derived(f);
    const pc_plan *p = build(f, false);
    assert_int_equal(p->nactions, 0);
    assert_false(pc_plan_has_changes(p));
}

static void test_not_observed(void **state)
{
    fixture *f = *state;
    f->o.acls_observed = false;
    assert_int_equal(build(f, false)->nactions, 0);
}

static void test_drift_recreated(void **state)
{
    fixture *f = *state;
    observe_all_derived(f);
    /* someone deleted the sink's group ACL behind pipectl's back */
    pc_acl_dispose(&f->o.acls[4]);
    f->o.acls[4] = f->o.acls[--f->o.nacls];
    const pc_plan *p = build(f, false);
    assert_int_equal(p->nactions, 1);
    assert_int_equal(p->actions[0].kind, PC_ACT_ACL_CREATE);
    assert_string_equal(p->actions[0].object, derived[4]);
}

/* Table: a binding present but not desired, owned or not, with and without --allow-delete. */
static void test_undeclared(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *principal;
        bool owned;
        bool allow_delete;
        pc_action_kind kind;
        int op; /* a pc_op, or -1: no action at all */
        const char *reason;
    } cases[] = {
        {"User:ingest", true, false, PC_ACT_ACL_DELETE, PC_OP_REFUSED, "needs --allow-delete"},
        {"User:ingest", true, true, PC_ACT_ACL_DELETE, PC_OP_DELETE, NULL},
        {"User:ingest", false, true, PC_ACT_NOTE, PC_OP_CHANGE, "not in pipectl's inventory"},
        {"User:stranger", false, true, PC_ACT_NOTE, -1, NULL},
        /* owned by this pipeline under a principal the manifest no longer names */
        {"User:retired", true, false, PC_ACT_ACL_DELETE, PC_OP_REFUSED, "needs --allow-delete"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_observed_free(&f->o);
        fx_standard_observed(&f->o);
        f->o.acls_observed = true;
        observe_all_derived(f);
        obs_acl(&f->o, cases[i].principal, "topic", "users_created", "literal", "read", "allow");
        char *key =
            pc_asprintf("%s allow read topic:users_created (literal) host *", cases[i].principal);
        if (cases[i].owned)
            fx_obs_owned(&f->o, "acl", key, NULL);
        const pc_plan *p = build(f, cases[i].allow_delete);
        if (cases[i].op < 0) {
            assert_int_equal(p->nactions, 0);
        } else {
            assert_int_equal(p->nactions, 1);
            const pc_action *a = &p->actions[0];
            assert_int_equal(a->kind, cases[i].kind);
            assert_int_equal((int)a->op, cases[i].op);
            assert_string_equal(a->object, key);
            assert_string_equal(a->acl.principal, cases[i].principal);
            if (cases[i].reason != NULL) {
                assert_non_null(a->reason);
                assert_non_null(strstr(a->reason, cases[i].reason));
            }
        }
        free(key);
    }
}

static void test_order(void **state)
{
    fixture *f = *state;
    observe_all_derived(f);
    /* a new topic and its ACL; an owned topic no longer declared and an owned ACL no longer
     * wanted, both deleted */
    fx_mf_topic(f->m, "audit", 1, 1);
    static const char *const ops[] = {"read", NULL};
    mf_acl(f->m, "User:auditor", "topic", "audit", "literal", ops, "allow", "*", 14);
    fx_obs_topic(&f->o, "old", 1, 1);
    fx_obs_owned(&f->o, "topic", "old", NULL);
    obs_acl(&f->o, "User:ingest", "topic", "old", "literal", "write", "allow");
    fx_obs_owned(&f->o, "acl", "User:ingest allow write topic:old (literal) host *", NULL);
    const pc_plan *p = build(f, true);
    static const pc_action_kind kinds[] = {PC_ACT_TOPIC_CREATE, PC_ACT_ACL_CREATE,
                                           PC_ACT_ACL_DELETE, PC_ACT_TOPIC_DELETE};
    assert_int_equal(p->nactions, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(p->actions[i].kind, kinds[i]);
    assert_string_equal(p->actions[1].changes[0].to, "kafka.acls (pipeline.yaml:14:7)");
    assert_int_equal(count_kind(p, PC_ACT_ACL_DELETE, PC_OP_DELETE), 1);
}

/* Many bindings: linear enough, and exact. */
static void test_many(void **state)
{
    fixture *f = *state;
    f->m->derive_acls = false;
    const size_t n = 2000;
    static const char *const ops[] = {"read", NULL};
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%04zu", i);
        mf_acl(f->m, "User:reader", "topic", name, "literal", ops, "allow", "*", (int)i + 1);
        if (i % 2 == 0)
            obs_acl(&f->o, "User:reader", "topic", name, "literal", "read", "allow");
    }
    const pc_plan *p = build(f, false);
    assert_int_equal(count_kind(p, PC_ACT_ACL_CREATE, PC_OP_CREATE), n / 2);
    assert_non_null(find_obj(p, "User:reader allow read topic:t0001 (literal) host *"));
    assert_null(find_obj(p, "User:reader allow read topic:t0000 (literal) host *"));
}

/* ---------- fingerprint ---------- */

static void fp(fixture *f, char out[65])
{
    pc_error err = {0};
    assert_int_equal(pc_observed_fingerprint(f->m, &f->o, out, &err), 0);
}

static void test_fingerprint(void **state)
{
    fixture *f = *state;
    char a[65], b[65];
    observe_all_derived(f);
    fp(f, a);
    /* a stranger's ACL: not the manifest's business */
    obs_acl(&f->o, "User:stranger", "topic", "x", "literal", "read", "allow");
    fp(f, b);
    assert_string_equal(a, b);
    /* a managed principal gains one: the plan changes (a note), so the fingerprint does */
    obs_acl(&f->o, "User:sink", "topic", "x", "literal", "read", "allow");
    fp(f, b);
    assert_string_not_equal(a, b);
    /* an owned binding of a principal no longer named: covered through the inventory */
    pc_observed_free(&f->o);
    fx_standard_observed(&f->o);
    f->o.acls_observed = true;
    observe_all_derived(f);
    fx_obs_owned(&f->o, "acl", "User:gone allow read topic:x (literal) host *", NULL);
    fp(f, a);
    obs_acl(&f->o, "User:gone", "topic", "x", "literal", "read", "allow");
    fp(f, b);
    assert_string_not_equal(a, b);
    /* ACLs not observed: no "acls" in the JSON, as before ACLs existed */
    f->o.acls_observed = false;
    char *json = NULL;
    pc_error err = {0};
    assert_int_equal(pc_observed_to_json(&f->o, &json, &err), 0);
    assert_null(strstr(json, "\"acls\""));
    free(json);
}

/* ---------- render and plan files ---------- */

static char *render_json(const pc_plan *p)
{
    char *s = NULL;
    pc_error err = {0};
    if (pc_plan_render_json(p, &s, &err) != 0)
        fail_msg("render_json: %s", err.msg);
    return s;
}

static void test_render(void **state)
{
    fixture *f = *state;
    observe_all_derived(f);
    /* the group ACL is missing; an owned, unwanted one is present */
    pc_acl_dispose(&f->o.acls[4]);
    f->o.acls[4] = f->o.acls[--f->o.nacls];
    obs_acl(&f->o, "User:ingest", "topic", "old", "literal", "write", "allow");
    fx_obs_owned(&f->o, "acl", "User:ingest allow write topic:old (literal) host *", NULL);
    const pc_plan *p = build(f, false);
    char *text = NULL;
    pc_error err = {0};
    assert_int_equal(pc_plan_render_text(p, false, &text, &err), 0);
    const char *want =
        "+ kafka acl User:sink allow read group:pipectl-users-users_to_pg (literal) host *\n"
        "    declared by: kafka.derive_acls: sink users_to_pg (pipeline.yaml:30:5)\n"
        "! kafka acl User:ingest allow write topic:old (literal) host *: Kafka ACL 'User:ingest "
        "allow write topic:old (literal) host *' is no longer declared; deleting it takes access "
        "away from User:ingest and needs --allow-delete\n"
        "\n"
        "Plan: 1 to create, 0 to change, 0 to delete, 1 refused.\n";
    assert_string_equal(text, want);
    free(text);

    char *json = render_json(p);
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    assert_non_null(root);
    json_t *a0 = json_array_get(json_object_get(root, "actions"), 0);
    assert_string_equal(json_string_value(json_object_get(a0, "kind")), "acl_create");
    assert_string_equal(json_string_value(json_object_get(a0, "op")), "create");
    json_t *acl = json_object_get(a0, "acl");
    assert_non_null(acl);
    assert_string_equal(json_string_value(json_object_get(acl, "principal")), "User:sink");
    assert_string_equal(json_string_value(json_object_get(acl, "resource")), "group");
    assert_string_equal(json_string_value(json_object_get(acl, "name")),
                        "pipectl-users-users_to_pg");
    assert_string_equal(json_string_value(json_object_get(acl, "pattern")), "literal");
    assert_string_equal(json_string_value(json_object_get(acl, "operation")), "read");
    assert_string_equal(json_string_value(json_object_get(acl, "permission")), "allow");
    assert_string_equal(json_string_value(json_object_get(acl, "host")), "*");
    json_t *a1 = json_array_get(json_object_get(root, "actions"), 1);
    assert_string_equal(json_string_value(json_object_get(a1, "kind")), "acl_delete");
    assert_string_equal(json_string_value(json_object_get(a1, "op")), "refused");
    json_decref(root);
    free(json);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    observe_all_derived(f);
    pc_acl_dispose(&f->o.acls[4]);
    f->o.acls[4] = f->o.acls[--f->o.nacls];
    obs_acl(&f->o, "User:ingest", "topic", "old", "literal", "write", "allow");
    fx_obs_owned(&f->o, "acl", "User:ingest allow write topic:old (literal) host *", NULL);
    obs_acl(&f->o, "User:sink", "topic", "manual", "prefixed", "describe", "deny");
    const pc_plan *p = build(f, true);
    assert_int_equal(p->nactions, 3); /* create, note, delete */
    char *json = render_json(p);
    pc_plan *back = NULL;
    pc_error err = {0};
    if (pc_plan_load_json(&back, json, strlen(json), &err) != 0)
        fail_msg("load: %s", err.msg);
    char *again = render_json(back);
    assert_string_equal(json, again);
    for (size_t i = 0; i < p->nactions; i++)
        assert_true(pc_plan_acl_equal(&p->actions[i].acl, &back->actions[i].acl));
    free(again);
    free(json);
    pc_plan_free(back);
}

/* Edits the first action of a rendered plan; the load must fail naming the field. */
typedef void (*mutator)(json_t *action);

static void mut_object(json_t *a)
{
    json_object_set_new(a, "object", json_string("User:sink allow read topic:x (literal) host *"));
}
static void mut_operation(json_t *a)
{
    json_object_set_new(json_object_get(a, "acl"), "operation", json_string("READ"));
}
static void mut_no_acl(json_t *a)
{
    json_object_del(a, "acl");
}
static void mut_acl_extra(json_t *a)
{
    json_object_set_new(json_object_get(a, "acl"), "force", json_true());
}
static void mut_acl_missing(json_t *a)
{
    json_object_del(json_object_get(a, "acl"), "host");
}
static void mut_system(json_t *a)
{
    json_object_set_new(a, "system", json_string("postgres"));
}
static void mut_op(json_t *a)
{
    json_object_set_new(a, "op", json_string("change"));
}
static void mut_acl_type(json_t *a)
{
    json_object_set_new(a, "acl", json_string("User:sink"));
}

static void test_load_rejects(void **state)
{
    fixture *f = *state;
    const pc_plan *p = build(f, false);
    assert_int_equal(p->actions[0].kind, PC_ACT_ACL_CREATE);
    static const struct {
        mutator fn;
        const char *msg;
    } cases[] = {
        {mut_object, "actions[0].object: does not match the binding"},
        {mut_operation, "actions[0].acl.operation: not a valid Kafka ACL value"},
        {mut_no_acl, "actions[0].acl: missing"},
        {mut_acl_extra, "actions[0].acl.force: unknown field"},
        {mut_acl_missing, "actions[0].acl.host: missing"},
        {mut_system, "actions[0].system: ACL actions belong to \"kafka\""},
        {mut_op, "actions[0].op: acl_create goes with op \"create\""},
        {mut_acl_type, "actions[0].acl: must be an object"},
    };
    char *json = render_json(p);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t jerr;
        json_t *root = json_loads(json, 0, &jerr);
        assert_non_null(root);
        json_t *a0 = json_array_get(json_object_get(root, "actions"), 0);
        cases[i].fn(a0);
        char *bad = json_dumps(root, 0);
        json_decref(root);
        pc_plan *out = NULL;
        pc_error err = {0};
        int rc = pc_plan_load_json(&out, bad, strlen(bad), &err);
        free(bad);
        assert_int_equal(rc, PC_EINVAL);
        assert_null(out);
        if (strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].msg);
    }
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl_string),
        cmocka_unit_test_setup_teardown(test_desired_expansion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derive_principals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derive_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_converged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_observed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drift_recreated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undeclared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_rejects, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
