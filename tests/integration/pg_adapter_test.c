/* pg_adapter_test.c: pkg/postgres against a real PostgreSQL 15.
 *
 * Reads PC_PG_DSN (scripts/stack.sh exports it) and fails when it is unset: a skipped
 * integration test is a failure. Works in its own scratch database pc_adapter_<pid>, dropped at
 * the end. The settings test changes cluster-wide settings with ALTER SYSTEM and puts back what
 * postgresql.auto.conf held before. Assertions look at the catalogs through the adapter's
 * observation and, where the adapter has no reader, through libpq directly. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "postgres.h"

static char *g_admin_dsn; /* PC_PG_DSN */
static char *g_dsn;       /* PC_PG_DSN with dbname = the scratch database */
static char g_dbname[64];
static pc_pg *g_pg;   /* the adapter's connection to the scratch database */
static PGconn *g_raw; /* plain libpq to the scratch database, for setup and checks */

/* ---------- helpers ---------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* conninfo with dbname replaced; works for key=value and URI forms. */
static char *dsn_with_db(const char *dsn, const char *db)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (opts == NULL) {
        PQfreemem(perr);
        return NULL;
    }
    size_t cap = strlen(dsn) + strlen(db) + 64;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL)
            cap += strlen(o->keyword) + 2 * strlen(o->val) + 8;
    char *out = calloc(1, cap);
    size_t len = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL && out != NULL; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? db : o->val;
        if (v == NULL)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s%s='", len ? " " : "", o->keyword);
        for (const char *p = v; *p; p++) {
            if (*p == '\'' || *p == '\\')
                out[len++] = '\\';
            out[len++] = *p;
        }
        out[len++] = '\'';
    }
    if (out != NULL && strstr(out, "dbname=") == NULL)
        snprintf(out + len, cap - len, " dbname='%s'", db);
    PQconninfoFree(opts);
    return out;
}

static void raw_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

/* First column of the first row, or NULL (caller frees). */
static char *raw_scalar(PGconn *c, const char *sql, const char *param)
{
    const char *params[1] = {param};
    PGresult *res = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    char *v = NULL;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static pc_mf_column col(const char *name, const char *type, bool pk, bool nullable)
{
    pc_mf_column c = {0};
    c.name = (char *)name;
    c.type = (char *)type;
    c.primary_key = pk;
    c.nullable = nullable;
    return c;
}

static pc_action table_action(pc_action_kind kind, const char *schema, const char *table,
                              pc_mf_column *cols, size_t n)
{
    pc_action a = {0};
    a.op = kind == PC_ACT_COLUMN_DROP ? PC_OP_DELETE : PC_OP_CREATE;
    a.kind = kind;
    a.system = "postgres";
    a.object = (char *)table;
    a.schema = (char *)schema;
    a.table = (char *)table;
    a.columns = cols;
    a.ncolumns = n;
    return a;
}

static pc_action setting_action(const char *name, const char *value, bool restart)
{
    pc_action a = {0};
    a.op = PC_OP_CHANGE;
    a.kind = PC_ACT_SETTING;
    a.system = "postgres";
    a.object = (char *)name;
    a.setting = (char *)name;
    a.value = (char *)value;
    a.restart_required = restart;
    return a;
}

/* A manifest naming pipeline "users" and the given schemas (without tables: the adapter only
 * needs the schema names). */
typedef struct test_mf {
    pc_manifest m;
    pc_mf_schema schemas[2];
} test_mf;

static void make_manifest(test_mf *t, const char *s1, const char *s2)
{
    memset(t, 0, sizeof *t);
    t->m.name = "users";
    t->m.schemas = t->schemas;
    if (s1 != NULL)
        t->schemas[t->m.nschemas++].name = (char *)s1;
    if (s2 != NULL)
        t->schemas[t->m.nschemas++].name = (char *)s2;
}

static void observe(const char *s1, const char *s2, pc_observed *o)
{
    test_mf t;
    pc_error err = {0};
    make_manifest(&t, s1, s2);
    memset(o, 0, sizeof *o);
    int rc = pc_pg_observe(g_pg, &t.m, o, &err);
    if (rc != 0)
        fail_msg("observe: %d %s", rc, err.msg);
    assert_true(o->pg_observed);
}

static const pc_obs_table *find_table(const pc_observed *o, const char *schema, const char *name)
{
    for (size_t i = 0; i < o->ntables; i++)
        if (strcmp(o->tables[i].schema, schema) == 0 && strcmp(o->tables[i].name, name) == 0)
            return &o->tables[i];
    return NULL;
}

static const pc_obs_column *find_col(const pc_obs_table *t, const char *name)
{
    for (size_t i = 0; t != NULL && i < t->ncolumns; i++)
        if (strcmp(t->columns[i].name, name) == 0)
            return &t->columns[i];
    return NULL;
}

static const pc_obs_setting *find_setting(const pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->nsettings; i++)
        if (strcmp(o->settings[i].name, name) == 0)
            return &o->settings[i];
    return NULL;
}

static void apply_ok(const pc_action *a)
{
    pc_error err = {0};
    int rc = pc_pg_apply(g_pg, a, &err);
    if (rc != 0)
        fail_msg("apply %s: %d %s", a->object, rc, err.msg);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", needle, hay ? hay : "(null)");
}

/* ---------- setup ---------- */

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int group_setup(void **state)
{
    (void)state;
    const char *dsn = getenv("PC_PG_DSN");
    if (dsn == NULL || *dsn == '\0') {
        fprintf(stderr, "PC_PG_DSN is not set: start the stack with scripts/stack.sh (it exports "
                        "PC_PG_DSN) and run again\n");
        return -1;
    }
    g_admin_dsn = strdup(dsn);
    snprintf(g_dbname, sizeof g_dbname, "pc_adapter_%ld", (long)getpid());
    PGconn *admin = PQconnectdb(g_admin_dsn);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect with PC_PG_DSN: %s", PQerrorMessage(admin));
        PQfinish(admin);
        return -1;
    }
    PQsetNoticeProcessor(admin, quiet, NULL);
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", g_dbname);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", g_dbname);
    PGresult *res = PQexec(admin, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(admin));
    PQclear(res);
    PQfinish(admin);
    if (!ok)
        return -1;
    g_dsn = dsn_with_db(g_admin_dsn, g_dbname);
    g_raw = PQconnectdb(g_dsn);
    if (PQstatus(g_raw) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to %s: %s", g_dbname, PQerrorMessage(g_raw));
        return -1;
    }
    PQclear(PQexec(g_raw, "SET client_min_messages = warning"));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pc_pg_free(g_pg);
    g_pg = NULL;
    PQfinish(g_raw);
    g_raw = NULL;
    int rc = 0;
    if (g_admin_dsn != NULL) {
        PGconn *admin = PQconnectdb(g_admin_dsn);
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_dbname);
        PGresult *res = PQexec(admin, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "%s: %s", sql, PQerrorMessage(admin));
            rc = -1;
        }
        PQclear(res);
        PQfinish(admin);
    }
    free(g_dsn);
    free(g_admin_dsn);
    return rc;
}

/* ---------- tests ---------- */

static void test_open_and_observe_empty(void **state)
{
    (void)state;
    pc_error err = {0};
    int rc = pc_pg_open(&g_pg, g_dsn, 5, &err);
    if (rc != 0)
        fail_msg("open: %d %s", rc, err.msg);

    pc_observed o;
    observe("raw", NULL, &o);
    assert_int_equal(o.nschemas, 0);
    assert_int_equal(o.ntables, 0);
    assert_int_equal(o.nowned, 0); /* pipectl.inventory does not exist yet: no rows, no error */
    assert_int_equal(o.nsettings, 4);
    const pc_obs_setting *wl = find_setting(&o, "wal_level");
    assert_non_null(wl);
    assert_string_equal(wl->context, "postmaster");
    assert_non_null(find_setting(&o, "archive_mode"));
    assert_non_null(find_setting(&o, "archive_command"));
    const pc_obs_setting *at = find_setting(&o, "archive_timeout");
    assert_non_null(at);
    assert_string_equal(at->unit, "s");
    assert_string_equal(at->context, "sighup");
    assert_null(at->pending);
    pc_observed_free(&o);

    /* the adapter's session is visible under application_name pipectl */
    char *n = raw_scalar(g_raw,
                         "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = "
                         "'pipectl' AND datname = current_database()",
                         NULL);
    assert_non_null(n);
    assert_string_equal(n, "1");
    free(n);
}

static void test_create_schema_and_table(void **state)
{
    (void)state;
    pc_action s = {0};
    s.op = PC_OP_CREATE;
    s.kind = PC_ACT_SCHEMA_CREATE;
    s.object = "raw";
    s.schema = "raw";
    apply_ok(&s);
    apply_ok(&s); /* IF NOT EXISTS: a second run is harmless and prints nothing */

    pc_mf_column cols[] = {
        col("id", "uuid", true, false),
        col("email", "text", false, false),
        col("registered_at", "timestamptz", false, true),
        col("nick", "varchar(10)", false, true),
        col("Odd \"name\"", "numeric(10,2)", false, true), /* quoting of identifiers */
    };
    pc_action t = table_action(PC_ACT_TABLE_CREATE, "raw", "users", cols, 5);
    apply_ok(&t);

    pc_observed o;
    observe("raw", "missing_schema", &o);
    assert_int_equal(o.nschemas, 1);
    assert_string_equal(o.schemas[0], "raw");
    assert_int_equal(o.ntables, 1);
    const pc_obs_table *u = find_table(&o, "raw", "users");
    assert_non_null(u);
    assert_int_equal(u->ncolumns, 5);
    /* attnum order */
    assert_string_equal(u->columns[0].name, "id");
    assert_string_equal(u->columns[0].type, "uuid");
    assert_false(u->columns[0].nullable);
    assert_true(u->columns[0].primary_key);
    assert_string_equal(u->columns[1].name, "email");
    assert_string_equal(u->columns[1].type, "text");
    assert_false(u->columns[1].nullable);
    assert_false(u->columns[1].primary_key);
    assert_string_equal(u->columns[2].name, "registered_at");
    assert_string_equal(u->columns[2].type, "timestamp with time zone");
    assert_true(u->columns[2].nullable);
    assert_false(u->columns[2].primary_key);
    assert_string_equal(u->columns[3].type, "character varying(10)");
    assert_string_equal(u->columns[4].name, "Odd \"name\"");
    assert_string_equal(u->columns[4].type, "numeric(10,2)");
    pc_observed_free(&o);

    /* a creation that fails keeps the server's message and names the table */
    pc_error err = {0};
    int rc = pc_pg_apply(g_pg, &t, &err);
    assert_int_equal(rc, PC_EREFUSED);
    assert_contains(err.msg, "CREATE TABLE raw.users");
    assert_contains(err.msg, "relation \"users\" already exists");
    assert_contains(err.msg, "PostgreSQL at ");
}

static void test_composite_primary_key(void **state)
{
    (void)state;
    pc_mf_column cols[] = {
        col("tenant", "integer", true, false),
        col("id", "bigint", true, false),
        col("v", "jsonb", false, true),
    };
    pc_action t = table_action(PC_ACT_TABLE_CREATE, "raw", "events", cols, 3);
    apply_ok(&t);
    pc_observed o;
    observe("raw", NULL, &o);
    const pc_obs_table *e = find_table(&o, "raw", "events");
    assert_non_null(e);
    assert_true(find_col(e, "tenant")->primary_key);
    assert_true(find_col(e, "id")->primary_key);
    assert_false(find_col(e, "v")->primary_key);
    assert_string_equal(find_col(e, "id")->type, "bigint");
    pc_observed_free(&o);
}

static void test_column_changes(void **state)
{
    (void)state;
    pc_observed o;
    pc_error err = {0};

    pc_mf_column age = col("age", "integer", false, true);
    pc_action add = table_action(PC_ACT_COLUMN_ADD, "raw", "users", &age, 1);
    apply_ok(&add);

    raw_exec(g_raw, "INSERT INTO raw.users (id, email, nick) VALUES "
                    "('00000000-0000-0000-0000-000000000001', 'a@example.com', 'abc'), "
                    "('00000000-0000-0000-0000-000000000002', 'b@example.com', NULL)");

    pc_mf_column nick_text = col("nick", "text", false, true);
    pc_action ty = table_action(PC_ACT_COLUMN_TYPE, "raw", "users", &nick_text, 1);
    apply_ok(&ty);

    observe("raw", NULL, &o);
    const pc_obs_table *u = find_table(&o, "raw", "users");
    assert_non_null(find_col(u, "age"));
    assert_string_equal(find_col(u, "age")->type, "integer");
    assert_true(find_col(u, "age")->nullable);
    assert_string_equal(find_col(u, "nick")->type, "text");
    assert_string_equal(u->columns[u->ncolumns - 1].name, "age"); /* added last */
    pc_observed_free(&o);
    char *kept =
        raw_scalar(g_raw, "SELECT nick FROM raw.users WHERE email = 'a@example.com'", NULL);
    assert_string_equal(kept, "abc"); /* USING nick::text kept the data */
    free(kept);

    /* SET NOT NULL with a NULL row: refused, the message names the column and keeps the server's
     * words */
    pc_mf_column nick_nn = col("nick", "text", false, false);
    pc_action nn = table_action(PC_ACT_COLUMN_NULLABLE, "raw", "users", &nick_nn, 1);
    int rc = pc_pg_apply(g_pg, &nn, &err);
    assert_int_equal(rc, PC_EREFUSED);
    assert_contains(err.msg, "ALTER TABLE raw.users ALTER COLUMN nick SET NOT NULL");
    assert_contains(err.msg, "column \"nick\" of relation \"users\" contains null values");
    assert_contains(err.msg, "PostgreSQL at ");
    assert_contains(err.msg, "re-run");
    observe("raw", NULL, &o);
    assert_true(find_col(find_table(&o, "raw", "users"), "nick")->nullable); /* unchanged */
    pc_observed_free(&o);

    raw_exec(g_raw, "UPDATE raw.users SET nick = 'x' WHERE nick IS NULL");
    apply_ok(&nn);
    observe("raw", NULL, &o);
    assert_false(find_col(find_table(&o, "raw", "users"), "nick")->nullable);
    pc_observed_free(&o);

    pc_mf_column nick_null = col("nick", "text", false, true);
    pc_action dn = table_action(PC_ACT_COLUMN_NULLABLE, "raw", "users", &nick_null, 1);
    apply_ok(&dn);
    observe("raw", NULL, &o);
    assert_true(find_col(find_table(&o, "raw", "users"), "nick")->nullable);
    pc_observed_free(&o);

    /* a type change the data cannot take keeps the server's message */
    pc_mf_column nick_int = col("nick", "integer", false, true);
    pc_action bad = table_action(PC_ACT_COLUMN_TYPE, "raw", "users", &nick_int, 1);
    memset(&err, 0, sizeof err);
    rc = pc_pg_apply(g_pg, &bad, &err);
    assert_int_equal(rc, PC_EREFUSED);
    assert_contains(err.msg, "ALTER TABLE raw.users ALTER COLUMN nick TYPE integer");
    assert_contains(err.msg, "invalid input syntax for type integer");

    pc_mf_column drop_age = col("age", NULL, false, true);
    pc_action drop = table_action(PC_ACT_COLUMN_DROP, "raw", "users", &drop_age, 1);
    apply_ok(&drop);
    observe("raw", NULL, &o);
    assert_null(find_col(find_table(&o, "raw", "users"), "age"));
    pc_observed_free(&o);
}

/* A DDL stuck behind another session's lock gives up after lock_timeout instead of hanging. */
static void test_lock_timeout(void **state)
{
    (void)state;
    pc_error err = {0};
    raw_exec(g_raw, "BEGIN");
    raw_exec(g_raw, "LOCK TABLE raw.events IN ACCESS EXCLUSIVE MODE");
    pc_mf_column c = col("late", "text", false, true);
    pc_action add = table_action(PC_ACT_COLUMN_ADD, "raw", "events", &c, 1);
    double t0 = now_s();
    int rc = pc_pg_apply(g_pg, &add, &err);
    double dt = now_s() - t0;
    raw_exec(g_raw, "ROLLBACK");
    assert_int_equal(rc, PC_ECONFLICT);
    assert_true(dt < 30.0);
    assert_contains(err.msg, "ALTER TABLE raw.events ADD COLUMN late text");
    assert_contains(err.msg, "lock timeout");
}

static void test_unsafe_type_rejected(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_mf_column evil = col("x", "text; DROP TABLE raw.users", false, true);
    pc_action add = table_action(PC_ACT_COLUMN_ADD, "raw", "users", &evil, 1);
    assert_int_equal(pc_pg_apply(g_pg, &add, &err), PC_EINVAL);
    assert_contains(err.msg, "raw.users.x");
    pc_mf_column quoted = col("y", "text'", false, true);
    pc_action t = table_action(PC_ACT_TABLE_CREATE, "raw", "t2", &quoted, 1);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_apply(g_pg, &t, &err), PC_EINVAL);
    char *n = raw_scalar(g_raw, "SELECT count(*)::text FROM raw.users", NULL);
    assert_string_equal(n, "2");
    free(n);
    n = raw_scalar(g_raw, "SELECT to_regclass('raw.t2')::text", NULL);
    assert_null(n);

    /* not a Postgres action */
    pc_action k = {0};
    k.kind = PC_ACT_TOPIC_CREATE;
    k.object = "users_created";
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_apply(g_pg, &k, &err), PC_EINVAL);
    assert_contains(err.msg, "users_created (system kafka)");
    /* nor a role action, nor is a role action a DDL one */
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_apply_role(g_pg, &k, NULL, &err), PC_EINVAL);
    assert_contains(err.msg, "users_created (system kafka)");
    pc_action r = {.kind = PC_ACT_ROLE_GRANT, .object = "nocodb_reader", .role = "nocodb_reader"};
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_apply(g_pg, &r, &err), PC_EINVAL);
    assert_contains(err.msg, "nocodb_reader (system postgres)");
}

static void test_lock(void **state)
{
    (void)state;
    pc_pg *other = NULL;
    pc_error err = {0};
    int rc = pc_pg_open(&other, g_dsn, 5, &err);
    if (rc != 0)
        fail_msg("open second: %s", err.msg);

    assert_int_equal(pc_pg_lock(g_pg, "users", &err), 0);
    rc = pc_pg_lock(other, "users", &err);
    assert_int_equal(rc, PC_ECONFLICT);
    assert_contains(err.msg, "another pipectl apply for pipeline 'users' holds the lock on "
                             "PostgreSQL at ");
    assert_contains(err.msg, "wait for it to finish");

    /* another pipeline is not blocked */
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_lock(other, "orders", &err), 0);
    assert_int_equal(pc_pg_unlock(other, "orders", &err), 0);

    assert_int_equal(pc_pg_unlock(g_pg, "users", &err), 0);
    assert_int_equal(pc_pg_lock(other, "users", &err), 0);
    /* closing the session releases the lock */
    pc_pg_free(other);
    memset(&err, 0, sizeof err);
    double t0 = now_s();
    for (;;) {
        rc = pc_pg_lock(g_pg, "users", &err);
        if (rc == 0 || now_s() - t0 > 5)
            break;
        memset(&err, 0, sizeof err);
        usleep(50 * 1000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(pc_pg_unlock(g_pg, "users", &err), 0);
    /* unlocking what is not held is reported */
    assert_int_equal(pc_pg_unlock(g_pg, "users", &err), PC_EINVAL);
}

static void test_inventory(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_observed o;

    /* forgetting before the table exists is a no-op */
    assert_int_equal(pc_pg_inventory_forget(g_pg, "users", "topic", "nope", &err), 0);
    char *reg = raw_scalar(g_raw, "SELECT to_regclass('pipectl.inventory')::text", NULL);
    assert_null(reg);

    pc_kvlist keys = {0};
    assert_int_equal(pc_kvlist_add(&keys, "cleanup.policy", ""), 0);
    assert_int_equal(pc_kvlist_add(&keys, "retention.ms", ""), 0);
    assert_int_equal(pc_pg_inventory_record(g_pg, "users", "topic", "users_created", &keys, &err),
                     0);
    assert_int_equal(pc_pg_inventory_record(g_pg, "users", "table", "raw.users", NULL, &err), 0);
    assert_int_equal(pc_pg_inventory_record(g_pg, "other", "topic", "theirs", NULL, &err), 0);
    pc_kvlist_free(&keys);

    char *stored = raw_scalar(g_raw,
                              "SELECT managed_keys::text FROM pipectl.inventory WHERE pipeline = "
                              "'users' AND kind = 'topic'",
                              NULL);
    assert_string_equal(stored, "[\"cleanup.policy\", \"retention.ms\"]");
    free(stored);

    observe("raw", NULL, &o);
    assert_int_equal(o.nowned, 2); /* only this pipeline's rows */
    assert_string_equal(o.owned[0].kind, "table");
    assert_string_equal(o.owned[0].name, "raw.users");
    assert_int_equal(o.owned[0].managed_keys.n, 0);
    assert_string_equal(o.owned[1].kind, "topic");
    assert_string_equal(o.owned[1].name, "users_created");
    assert_int_equal(o.owned[1].managed_keys.n, 2);
    assert_string_equal(o.owned[1].managed_keys.items[0].key, "cleanup.policy");
    assert_string_equal(o.owned[1].managed_keys.items[1].key, "retention.ms");
    pc_observed_free(&o);

    /* record again = update (upsert) */
    pc_kvlist one = {0};
    assert_int_equal(pc_kvlist_add(&one, "retention.ms", ""), 0);
    assert_int_equal(pc_pg_inventory_record(g_pg, "users", "topic", "users_created", &one, &err),
                     0);
    pc_kvlist_free(&one);
    observe("raw", NULL, &o);
    assert_int_equal(o.nowned, 2);
    assert_int_equal(o.owned[1].managed_keys.n, 1);
    assert_string_equal(o.owned[1].managed_keys.items[0].key, "retention.ms");
    pc_observed_free(&o);

    assert_int_equal(pc_pg_inventory_forget(g_pg, "users", "topic", "users_created", &err), 0);
    observe("raw", NULL, &o);
    assert_int_equal(o.nowned, 1);
    assert_string_equal(o.owned[0].name, "raw.users");
    pc_observed_free(&o);
    char *n = raw_scalar(g_raw, "SELECT count(*)::text FROM pipectl.inventory", NULL);
    assert_string_equal(n, "2");
    free(n);
}

/* What postgresql.auto.conf says for name, to put it back afterwards (NULL: nothing). */
static char *auto_conf_value(const char *name)
{
    return raw_scalar(g_raw,
                      "SELECT setting FROM pg_file_settings WHERE name = $1 AND sourcefile LIKE "
                      "'%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
                      name);
}

static void restore_setting(const char *name, const char *value)
{
    pc_action a = setting_action(name, value, false);
    apply_ok(&a);
}

static void test_settings(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_observed o;
    char *prev_timeout = auto_conf_value("archive_timeout");
    char *prev_mode = auto_conf_value("archive_mode");

    observe(NULL, NULL, &o);
    const char *want_timeout =
        strcmp(find_setting(&o, "archive_timeout")->value, "120") == 0 ? "121" : "120";
    const char *running_mode_on =
        strcmp(find_setting(&o, "archive_mode")->value, "off") != 0 ? "yes" : NULL;
    pc_observed_free(&o);

    /* sighup setting: ALTER SYSTEM + reload, then the running value changes */
    pc_action at = setting_action("archive_timeout", want_timeout, false);
    apply_ok(&at);
    assert_int_equal(pc_pg_reload(g_pg, &err), 0);
    double t0 = now_s();
    bool seen = false;
    while (!seen && now_s() - t0 < 10) {
        observe(NULL, NULL, &o);
        const pc_obs_setting *s = find_setting(&o, "archive_timeout");
        if (strcmp(s->value, want_timeout) == 0) {
            seen = true;
            assert_string_equal(s->unit, "s");
            assert_null(s->pending);
        }
        pc_observed_free(&o);
        if (!seen)
            usleep(100 * 1000);
    }
    assert_true(seen);

    /* postmaster setting: written to postgresql.auto.conf, pending until a restart */
    const char *pending_want = running_mode_on ? "off" : "on";
    pc_action am = setting_action("archive_mode", pending_want, true);
    apply_ok(&am);
    observe(NULL, NULL, &o);
    const pc_obs_setting *mode = find_setting(&o, "archive_mode");
    assert_string_equal(mode->context, "postmaster");
    assert_string_equal(mode->value, running_mode_on ? "on" : "off");
    assert_non_null(mode->pending);
    assert_string_equal(mode->pending, pending_want);
    pc_observed_free(&o);

    /* a bad value keeps the server's message */
    pc_action bogus = setting_action("archive_mode", "bogus'; --", true);
    memset(&err, 0, sizeof err);
    assert_int_equal(pc_pg_apply(g_pg, &bogus, &err), PC_EREFUSED);
    assert_contains(err.msg, "ALTER SYSTEM SET archive_mode");
    assert_contains(err.msg, "invalid value for parameter \"archive_mode\"");

    /* put the cluster back as it was */
    restore_setting("archive_mode", prev_mode);
    restore_setting("archive_timeout", prev_timeout);
    assert_int_equal(pc_pg_reload(g_pg, &err), 0);
    observe(NULL, NULL, &o);
    assert_null(find_setting(&o, "archive_mode")->pending);
    pc_observed_free(&o);
    char *now_mode = auto_conf_value("archive_mode");
    char *now_timeout = auto_conf_value("archive_timeout");
    assert_true((now_mode == NULL) == (prev_mode == NULL));
    assert_true((now_timeout == NULL) == (prev_timeout == NULL));
    free(now_mode);
    free(now_timeout);
    free(prev_mode);
    free(prev_timeout);
}

static void test_observe_scales(void **state)
{
    (void)state;
    raw_exec(g_raw, "CREATE SCHEMA bulk");
    raw_exec(g_raw, "DO $$ BEGIN FOR i IN 1..200 LOOP EXECUTE format("
                    "'CREATE TABLE bulk.t%s (id bigint PRIMARY KEY, name text NOT NULL, "
                    "at timestamptz, extra varchar(20))', i); END LOOP; END $$");
    /* a dropped column must not show up */
    raw_exec(g_raw, "ALTER TABLE bulk.t7 DROP COLUMN extra");
    pc_observed o;
    double t0 = now_s();
    observe("bulk", "raw", &o);
    double dt = now_s() - t0;
    assert_int_equal(o.nschemas, 2);
    assert_int_equal(o.ntables, 202); /* 200 + raw.users + raw.events */
    size_t bulk = 0;
    for (size_t i = 0; i < o.ntables; i++) {
        if (strcmp(o.tables[i].schema, "bulk") != 0)
            continue;
        bulk++;
        const pc_obs_table *t = &o.tables[i];
        bool t7 = strcmp(t->name, "t7") == 0;
        assert_int_equal(t->ncolumns, t7 ? 3 : 4);
        assert_true(t->columns[0].primary_key);
        assert_string_equal(t->columns[0].type, "bigint");
        assert_false(t->columns[1].nullable);
        if (!t7)
            assert_string_equal(t->columns[3].type, "character varying(20)");
    }
    assert_int_equal(bulk, 200);
    pc_observed_free(&o);
    if (dt > 2.0)
        fail_msg("observing 200 tables took %.2fs", dt);
}

/* ---------- NocoDB's role: is the declared password the one PostgreSQL accepts? ---------- */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

static bool write_all(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return false;
    bool ok = fputs(a, f) >= 0 && (b == NULL || fputs(b, f) >= 0);
    return fclose(f) == 0 && ok;
}

static int role_password_state(const char *role, const char *password)
{
    test_mf t;
    pc_error err = {0};
    pc_observed o;
    make_manifest(&t, "raw", NULL);
    t.m.nocodb.declared = true;
    t.m.nocodb.role = (char *)role;
    t.m.nocodb.role_password = (char *)password;
    memset(&o, 0, sizeof o);
    int rc = pc_pg_observe(g_pg, &t.m, &o, &err);
    int state = rc != 0 ? -1 : (int)o.role.password;
    pc_observed_free(&o);
    return state;
}

/* The stack trusts every local connection, where any password works; this test puts a
 * scram-sha-256 line for a role of its own at the top of pg_hba.conf (taken out again before
 * asserting), so that PostgreSQL really checks that role's password. */
static void test_role_password_check(void **state)
{
    (void)state;
    char role[32], sql[256];
    snprintf(role, sizeof role, "pc_pw_%d", (int)getpid());
    raw_exec(g_raw, "SET password_encryption = 'scram-sha-256'");
    snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN PASSWORD 'Right-%d'", role, (int)getpid());
    raw_exec(g_raw, sql);
    char right[32];
    snprintf(right, sizeof right, "Right-%d", (int)getpid());
    char *hba = raw_scalar(g_raw, "SHOW hba_file", NULL);
    assert_non_null(hba);
    char *old = read_all(hba);
    assert_non_null(old);
    char lines[512];
    snprintf(lines, sizeof lines,
             "host all %s 127.0.0.1/32 scram-sha-256\nhost all %s ::1/128 scram-sha-256\n"
             "local all %s scram-sha-256\n",
             role, role, role);
    assert_true(write_all(hba, lines, old));
    raw_exec(g_raw, "SELECT pg_reload_conf()");
    struct timespec ts = {0, 500000000L}; /* the postmaster rereads pg_hba.conf on SIGHUP */
    nanosleep(&ts, NULL);

    int wrong_state = role_password_state(role, "Wrong-password");
    int right_state = role_password_state(role, right);

    bool restored = write_all(hba, old, NULL);
    raw_exec(g_raw, "SELECT pg_reload_conf()");
    snprintf(sql, sizeof sql, "DROP ROLE %s", role);
    raw_exec(g_raw, sql);
    free(old);
    free(hba);
    assert_true(restored);
    assert_int_equal(wrong_state, PC_PW_FAILED);
    assert_int_equal(right_state, PC_PW_OK);
}

static void test_unreachable(void **state)
{
    (void)state;
    pc_pg *pg = NULL;
    pc_error err = {0};
    double t0 = now_s();
    int rc =
        pc_pg_open(&pg, "host=127.0.0.1 port=1 dbname=x user=someone password=secret", 3, &err);
    double dt = now_s() - t0;
    assert_int_equal(rc, PC_EUNAVAIL);
    assert_null(pg);
    assert_true(dt < 5.0);
    assert_contains(err.msg, "PostgreSQL at 127.0.0.1:1 dbname=x user=someone");
    assert_null(strstr(err.msg, "secret"));
    assert_contains(err.msg, "retry");

    memset(&err, 0, sizeof err);
    rc = pc_pg_open(&pg, "postgresql://someone:secret@127.0.0.1:1/x", 3, &err);
    assert_int_equal(rc, PC_EUNAVAIL);
    assert_null(strstr(err.msg, "secret"));

    /* the server answers but refuses: a database that does not exist */
    char *nodb = dsn_with_db(g_admin_dsn, "pc_no_such_db");
    memset(&err, 0, sizeof err);
    rc = pc_pg_open(&pg, nodb, 3, &err);
    free(nodb);
    assert_int_equal(rc, PC_EREFUSED);
    assert_contains(err.msg, "database \"pc_no_such_db\" does not exist");
    assert_contains(err.msg, "dbname=pc_no_such_db");

    memset(&err, 0, sizeof err);
    rc = pc_pg_open(&pg, "host=127.0.0.1 password=secret bogus_option=1", 3, &err);
    assert_int_equal(rc, PC_EINVAL);
    assert_null(strstr(err.msg, "secret"));
}

/* ---------- pc_pg_connect: precedence, timeout, stop ---------- */

/* application_name of connection c as the server shows it in pg_stat_activity. */
static char *seen_app_name(PGconn *c)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(c));
    return raw_scalar(g_raw, "SELECT application_name FROM pg_stat_activity WHERE pid = $1::int",
                      pid);
}

/* The TCP_KEEPIDLE the client socket of c really carries. */
static int keepidle_of(PGconn *c)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(PQsocket(c), IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) != 0)
        return -1;
    return v;
}

static PGconn *connect_ok(const char *dsn, const pc_pg_connect_opts *o)
{
    PGconn *c = NULL;
    pc_error err = {0};
    int rc = pc_pg_connect(&c, dsn, o, &err);
    if (rc != 0)
        fail_msg("pc_pg_connect(%s): %d %s", dsn, rc, err.msg);
    return c;
}

/* The precedence rule of postgres.h, against libpq 15 and the real server: pipectl's values fill
 * what the DSN leaves unset, the DSN's own values win, in both DSN forms. */
static void test_connect_precedence(void **state)
{
    (void)state;
    const pc_pg_connect_opts o = {.timeout_s = 5, .application_name = "pipectl run/sink users"};
    char dsn[1024];

    /* nothing in the DSN: pipectl's application_name and keepalives land */
    PGconn *c = connect_ok(g_dsn, &o);
    char *app = seen_app_name(c);
    assert_non_null(app);
    assert_string_equal(app, "pipectl run/sink users");
    free(app);
    assert_int_equal(keepidle_of(c), 10);
    PQfinish(c);

    /* the DSN says otherwise: its values win */
    snprintf(dsn, sizeof dsn, "%s application_name='my app' keepalives_idle=42", g_dsn);
    c = connect_ok(dsn, &o);
    app = seen_app_name(c);
    assert_non_null(app);
    assert_string_equal(app, "my app");
    free(app);
    assert_int_equal(keepidle_of(c), 42);
    PQfinish(c);

    /* the same in the URI form */
    snprintf(dsn, sizeof dsn, "postgresql://%s@%s:%s/%s?application_name=uri_app", PQuser(g_raw),
             PQhost(g_raw), PQport(g_raw), g_dbname);
    c = connect_ok(dsn, &o);
    app = seen_app_name(c);
    assert_non_null(app);
    assert_string_equal(app, "uri_app");
    free(app);
    PQfinish(c);

    /* PGAPPNAME is the user's too: it beats pipectl's name (fallback_application_name) */
    setenv("PGAPPNAME", "from_env", 1);
    c = connect_ok(g_dsn, &o);
    unsetenv("PGAPPNAME");
    app = seen_app_name(c);
    assert_non_null(app);
    assert_string_equal(app, "from_env");
    free(app);
    PQfinish(c);

    /* replication is pipectl's: IDENTIFY_SYSTEM only works on a replication connection */
    const pc_pg_connect_opts ro = {
        .timeout_s = 5, .application_name = "pipectl backup create", .replication = true};
    snprintf(dsn, sizeof dsn, "%s replication=false", g_dsn);
    c = connect_ok(dsn, &ro);
    PGresult *res = PQexec(c, "IDENTIFY_SYSTEM");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    PQfinish(c);
}

/* A TCP listener on a free loopback port that never accepts: the kernel completes the
 * handshake, libpq sends its startup packet and nothing ever answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("cannot listen on 127.0.0.1");
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_silent(const char *dsn, const pc_pg_connect_opts *o, pc_error *err, double *dt)
{
    PGconn *c = NULL;
    double t0 = now_s();
    int rc = pc_pg_connect(&c, dsn, o, err);
    *dt = now_s() - t0;
    assert_null(c);
    return rc;
}

static atomic_int g_stop_flag;

static void *stop_later(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&g_stop_flag, 1);
    return NULL;
}

static void test_connect_timeout_and_stop(void **state)
{
    (void)state;
    int port = 0;
    int lfd = silent_listener(&port);
    char dsn[256], where[64];
    pc_error err = {0};
    double dt = 0;
    snprintf(where, sizeof where, "PostgreSQL at 127.0.0.1:%d", port);

    /* pipectl's timeout (--timeout) when the DSN has none */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=x user=u password=s3cr3t_pw", port);
    pc_pg_connect_opts o = {.timeout_s = 2};
    int rc = connect_silent(dsn, &o, &err, &dt);
    assert_int_equal(rc, PC_EUNAVAIL);
    if (dt < 1.9 || dt > 3.5)
        fail_msg("--timeout 2 against a silent server took %.2f s", dt);
    assert_contains(err.msg, where);
    assert_contains(err.msg, "connect_timeout");
    assert_null(strstr(err.msg, "s3cr3t_pw"));

    /* the DSN's own connect_timeout wins over pipectl's */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=x user=u connect_timeout=3", port);
    o.timeout_s = 10;
    memset(&err, 0, sizeof err);
    rc = connect_silent(dsn, &o, &err, &dt);
    assert_int_equal(rc, PC_EUNAVAIL);
    if (dt < 2.9 || dt > 4.5)
        fail_msg("connect_timeout=3 in the DSN (--timeout 10) took %.2f s", dt);

    /* ... in the URI form too, with the password kept out of the message */
    snprintf(dsn, sizeof dsn, "postgresql://u:s3cr3t_pw@127.0.0.1:%d/x?connect_timeout=2", port);
    memset(&err, 0, sizeof err);
    rc = connect_silent(dsn, &o, &err, &dt);
    assert_int_equal(rc, PC_EUNAVAIL);
    if (dt < 1.9 || dt > 3.5)
        fail_msg("connect_timeout=2 in the URI (--timeout 10) took %.2f s", dt);
    assert_null(strstr(err.msg, "s3cr3t_pw"));

    /* not a number: refused as libpq's blocking connect would */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=x connect_timeout=soon", port);
    memset(&err, 0, sizeof err);
    rc = connect_silent(dsn, &o, &err, &dt);
    assert_int_equal(rc, PC_EINVAL);
    assert_contains(err.msg, "connect_timeout 'soon'");

    /* the stop flag ends the wait within a tick, long before any timeout */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=x user=u connect_timeout=5", port);
    atomic_store(&g_stop_flag, 0);
    o = (pc_pg_connect_opts){.timeout_s = 30, .stop = &g_stop_flag};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_later, NULL), 0);
    memset(&err, 0, sizeof err);
    rc = connect_silent(dsn, &o, &err, &dt);
    pthread_join(t, NULL);
    assert_int_equal(rc, PC_EINTR);
    if (dt < 0.25 || dt > 1.0)
        fail_msg("stop after 0.3 s ended the attempt after %.2f s", dt);
    assert_contains(err.msg, where);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_observe_empty),
        cmocka_unit_test(test_create_schema_and_table),
        cmocka_unit_test(test_composite_primary_key),
        cmocka_unit_test(test_column_changes),
        cmocka_unit_test(test_lock_timeout),
        cmocka_unit_test(test_unsafe_type_rejected),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_inventory),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_observe_scales),
        cmocka_unit_test(test_role_password_check),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_connect_precedence),
        cmocka_unit_test(test_connect_timeout_and_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
