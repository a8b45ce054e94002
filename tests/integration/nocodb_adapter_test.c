/* nocodb_adapter_test.c: pkg/nocodb against a real NocoDB (scripts/nocodb.sh) and the stack's
 * real PostgreSQL. Reads PC_NOCODB_URL, PC_NOCODB_TOKEN, PC_NOCODB_EMAIL, PC_NOCODB_PASSWORD and
 * PC_PG_PORT; fails when they are unset. Makes its own database (a table with rows in schema
 * app), a NocoDB reader role (CONNECT, USAGE, SELECT; not superuser) and a base with a unique
 * title, and removes them at the end. The tests run in order and share that state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "nocodb.h"
#include "nocodb_int.h"

static struct {
    const char *url, *token, *email, *password;
    int pg_port;
    char db[64], role[64], role_pw[64], title[64];
    pc_nocodb *tok;  /* signed in with the API token */
    pc_nocodb *user; /* signed in with email/password */
    char *base_id, *source_id;
} S;

static const char *need_env(const char *k)
{
    const char *v = getenv(k);
    if (!v || !*v) {
        fprintf(stderr, "%s is not set: run through ctest (nocodb fixture)\n", k);
        exit(1);
    }
    return v;
}

static void sql(const char *db, const char *q)
{
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=%s user=postgres", S.pg_port,
             db);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", db, PQerrorMessage(c));
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void conn_of(pc_nocodb_conn *c, int port)
{
    c->host = "127.0.0.1";
    c->port = port;
    c->database = S.db;
    c->user = S.role;
    c->password = S.role_pw;
    c->schema = "app";
}

static void assert_no_secret(const char *msg)
{
    assert_null(strstr(msg, S.password));
    assert_null(strstr(msg, S.token));
    assert_null(strstr(msg, S.role_pw));
}

static const pc_nocodb_source *source_by_id(const pc_nocodb_base *b, const char *id)
{
    for (size_t i = 0; i < b->nsources; i++)
        if (pc_streq(b->sources[i].id, id))
            return &b->sources[i];
    return NULL;
}

static size_t own_sources(const pc_nocodb_base *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nsources; i++)
        n += !b->sources[i].is_meta;
    return n;
}

static const pc_nocodb_table *table_named(const pc_nocodb_table *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (pc_streq(t[i].name, name))
            return &t[i];
    return NULL;
}

/* --- tests ------------------------------------------------------------------------------------ */

static void t_open(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_auth a = {.url = S.url, .token = S.token, .timeout_s = 20};
    assert_int_equal(pc_nocodb_open(&S.tok, &a, &err), 0);
    char url_slash[256];
    snprintf(url_slash, sizeof url_slash, "%s/", S.url); /* a trailing '/' is ignored */
    pc_nocodb_auth u = {.url = url_slash, .email = S.email, .password = S.password};
    assert_int_equal(pc_nocodb_open(&S.user, &u, &err), 0);
    assert_non_null(S.user->jwt);
}

static void t_bad_credentials(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb *nc = NULL;
    pc_nocodb_auth a = {.url = S.url, .token = "pc-not-a-real-token-123456"};
    assert_int_equal(pc_nocodb_open(&nc, &a, &err), PC_EREFUSED);
    assert_null(nc);
    printf("bad token: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "API token"));
    assert_non_null(strstr(err.msg, "nocodb.token"));
    assert_null(strstr(err.msg, "pc-not-a-real-token-123456"));

    pc_error_clear(&err);
    pc_nocodb_auth u = {.url = S.url, .email = S.email, .password = "Wrong-Passw0rd!"};
    assert_int_equal(pc_nocodb_open(&nc, &u, &err), PC_EREFUSED);
    printf("bad password: %s\n", err.msg);
    assert_non_null(strstr(err.msg, S.email));
    assert_non_null(strstr(err.msg, "nocodb.password"));
    assert_null(strstr(err.msg, "Wrong-Passw0rd!"));
}

static void t_unreachable(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb *nc = NULL;
    pc_nocodb_auth a = {.url = "http://127.0.0.1:1", .token = S.token, .timeout_s = 5};
    assert_int_equal(pc_nocodb_open(&nc, &a, &err), PC_EUNAVAIL);
    printf("unreachable: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "http://127.0.0.1:1"));
    assert_non_null(strstr(err.msg, "cannot be reached"));
    assert_no_secret(err.msg);
}

static void t_base(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_base *b = NULL;
    char *dup = NULL;

    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_null(b);
    assert_int_equal(pc_nocodb_create_base(S.tok, S.title, &S.base_id, &err), 0);
    assert_non_null(S.base_id);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_non_null(b);
    assert_string_equal(b->id, S.base_id);
    assert_string_equal(b->title, S.title);
    assert_int_equal(own_sources(b), 0); /* only NocoDB's own default source */
    pc_nocodb_base_free(b);
    b = NULL;

    /* two bases with the title: a conflict naming both */
    assert_int_equal(pc_nocodb_create_base(S.user, S.title, &dup, &err), 0);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), PC_ECONFLICT);
    printf("conflict: %s\n", err.msg);
    assert_non_null(strstr(err.msg, S.base_id));
    assert_non_null(strstr(err.msg, dup));
    char *path = pc_asprintf("/api/v2/meta/bases/%s", dup);
    pc_error_clear(&err);
    assert_int_equal(nc_call(S.tok, "DELETE", path, NULL, "test cleanup", 0, 0, NULL, NULL, &err),
                     0);
    free(path);
    free(dup);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_non_null(b);
    pc_nocodb_base_free(b);

    /* titles over NocoDB's limit are refused before any request */
    assert_int_equal(pc_nocodb_create_base(
                         S.tok, "a-title-that-is-much-longer-than-fifty-characters-xx", &dup, &err),
                     PC_EINVAL);
}

static void t_create_source(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_conn c;
    pc_nocodb_base *b = NULL;
    conn_of(&c, S.pg_port);
    assert_int_equal(pc_nocodb_create_source(S.tok, S.base_id, "app", &c, 60, &S.source_id, &err),
                     0);
    assert_non_null(S.source_id);

    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_int_equal(own_sources(b), 1);
    const pc_nocodb_source *s = source_by_id(b, S.source_id);
    assert_non_null(s);
    assert_string_equal(s->alias, "app");
    assert_string_equal(s->type, "pg");
    assert_false(s->is_meta);
    assert_true(s->enabled);
    /* what NocoDB 0.301 returns of the connection: all but the password */
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, S.pg_port);
    assert_string_equal(s->database, S.db);
    assert_string_equal(s->user, S.role);
    assert_string_equal(s->schema, "app");
    pc_nocodb_base_free(b);
}

static void t_list_tables(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_table *t = NULL;
    size_t n = 0;
    assert_int_equal(pc_nocodb_list_tables(S.tok, S.base_id, S.source_id, true, &t, &n, &err), 0);
    assert_int_equal(n, 1); /* schema app only: public's table is not in this source */
    assert_string_equal(t[0].name, "users");
    assert_int_equal(t[0].ncolumns, 3);
    assert_string_equal(t[0].columns[0], "id");
    assert_string_equal(t[0].columns[1], "name");
    assert_string_equal(t[0].columns[2], "email");
    pc_nocodb_tables_free(t, n);

    assert_int_equal(pc_nocodb_list_tables(S.user, S.base_id, S.source_id, false, &t, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_null(t[0].columns);
    pc_nocodb_tables_free(t, n);
}

static void t_meta_sync(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_table *t = NULL;
    size_t n = 0;
    sql(S.db, "CREATE TABLE app.orders (id bigint PRIMARY KEY, user_id bigint, total numeric)");

    /* NocoDB refuses API tokens for meta sync: a clear refusal, no secret */
    assert_int_equal(pc_nocodb_meta_sync(S.tok, S.base_id, S.source_id, 60, &err), PC_EREFUSED);
    printf("meta sync with a token: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "nocodb.email"));
    assert_no_secret(err.msg);
    pc_error_clear(&err);

    /* token and user given: the token for everything, a sign-in for meta sync */
    pc_nocodb *both = NULL;
    pc_nocodb_auth a = {.url = S.url, .token = S.token, .email = S.email, .password = S.password};
    assert_int_equal(pc_nocodb_open(&both, &a, &err), 0);
    assert_null(both->jwt);
    assert_int_equal(pc_nocodb_meta_sync(both, S.base_id, S.source_id, 60, &err), 0);
    assert_non_null(both->jwt);
    pc_nocodb_free(both);

    /* as the user, with an expired sign-in: signs in again and syncs */
    free(S.user->jwt);
    S.user->jwt = pc_strdup("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.expired");
    assert_int_equal(pc_nocodb_meta_sync(S.user, S.base_id, S.source_id, 60, &err), 0);
    assert_int_equal(pc_nocodb_list_tables(S.tok, S.base_id, S.source_id, true, &t, &n, &err), 0);
    assert_int_equal(n, 2);
    const pc_nocodb_table *o = table_named(t, n, "orders");
    assert_non_null(o);
    assert_int_equal(o->ncolumns, 3);
    assert_string_equal(o->columns[2], "total");
    pc_nocodb_tables_free(t, n);
}

static void t_count_rows(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_table *t = NULL;
    size_t n = 0;
    long long count = -1;
    char *first = NULL;
    assert_int_equal(pc_nocodb_list_tables(S.tok, S.base_id, S.source_id, false, &t, &n, &err), 0);
    const pc_nocodb_table *u = table_named(t, n, "users");
    assert_non_null(u);
    assert_int_equal(pc_nocodb_count_rows(S.tok, S.base_id, u->id, &count, &first, &err), 0);
    assert_int_equal(count, 3);
    assert_non_null(first);
    assert_non_null(strstr(first, "\"Ada Lovelace\""));
    free(first);

    sql(S.db, "INSERT INTO app.users VALUES (4, 'Dan Dare', 'dan@example.org'), "
              "(5, 'Eve Evans', 'eve@example.org')");
    assert_int_equal(pc_nocodb_count_rows(S.user, S.base_id, u->id, &count, NULL, &err), 0);
    assert_int_equal(count, 5);

    const pc_nocodb_table *o = table_named(t, n, "orders");
    assert_int_equal(pc_nocodb_count_rows(S.tok, S.base_id, o->id, &count, &first, &err), 0);
    assert_int_equal(count, 0);
    assert_null(first);
    pc_nocodb_tables_free(t, n);
}

static void t_update_source(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_conn c;
    pc_nocodb_base *b = NULL;
    conn_of(&c, S.pg_port);
    c.host = "localhost";
    assert_int_equal(pc_nocodb_update_source(S.tok, S.base_id, S.source_id, "app_v2", &c, &err), 0);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    const pc_nocodb_source *s = source_by_id(b, S.source_id);
    assert_non_null(s);
    assert_string_equal(s->alias, "app_v2");
    assert_string_equal(s->host, "localhost");
    assert_string_equal(s->schema, "app");
    pc_nocodb_base_free(b);
    b = NULL;

    /* settings NocoDB cannot use are refused and leave the source as it was */
    c.port = 1;
    assert_int_equal(pc_nocodb_update_source(S.tok, S.base_id, S.source_id, "app_v3", &c, &err),
                     PC_EUNAVAIL);
    printf("update to a dead port: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "app_v3"));
    assert_non_null(strstr(err.msg, "ECONNREFUSED"));
    assert_no_secret(err.msg);
    pc_error_clear(&err);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    s = source_by_id(b, S.source_id);
    assert_string_equal(s->alias, "app_v2");
    assert_int_equal(s->port, S.pg_port);
    pc_nocodb_base_free(b);
}

static void t_dead_source(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_conn c;
    pc_nocodb_base *b = NULL;
    char *id = NULL;
    conn_of(&c, 1);
    assert_int_equal(pc_nocodb_create_source(S.tok, S.base_id, "dead_src", &c, 60, &id, &err),
                     PC_EUNAVAIL);
    assert_null(id);
    printf("dead Postgres: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "\"dead_src\""));
    assert_non_null(strstr(err.msg, "ECONNREFUSED 127.0.0.1:1"));
    assert_no_secret(err.msg);
    pc_error_clear(&err);
    /* NocoDB removed the half-made source; the adapter its connection */
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_int_equal(own_sources(b), 1);
    pc_nocodb_base_free(b);
    json_t *j = NULL;
    assert_int_equal(nc_call(S.tok, "GET", "/api/v2/meta/integrations?limit=1000", NULL, "test", 0,
                             0, &j, NULL, &err),
                     0);
    json_t *list = json_object_get(j, "list");
    for (size_t i = 0; i < json_array_size(list); i++)
        assert_string_not_equal(
            json_string_value(json_object_get(json_array_get(list, i), "title")), "dead_src");
    json_decref(j);
}

static void t_delete_source(void **state)
{
    (void)state;
    pc_error err = {0};
    pc_nocodb_base *b = NULL;
    assert_int_equal(pc_nocodb_delete_source(S.tok, S.base_id, S.source_id, &err), 0);
    assert_int_equal(pc_nocodb_find_base(S.tok, S.title, &b, &err), 0);
    assert_int_equal(own_sources(b), 0);
    assert_null(source_by_id(b, S.source_id));
    pc_nocodb_base_free(b);
    assert_int_equal(pc_nocodb_delete_source(S.tok, S.base_id, S.source_id, &err), PC_ENOTFOUND);
    printf("delete again: %s\n", err.msg);
}

/* --- setup ------------------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    unsigned r;
    S.url = need_env("PC_NOCODB_URL");
    S.token = need_env("PC_NOCODB_TOKEN");
    S.email = need_env("PC_NOCODB_EMAIL");
    S.password = need_env("PC_NOCODB_PASSWORD");
    S.pg_port = atoi(need_env("PC_PG_PORT"));
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    r = (unsigned)rand();
    snprintf(S.db, sizeof S.db, "nc_adapter_%08x", r);
    snprintf(S.role, sizeof S.role, "nc_reader_%08x", r);
    snprintf(S.role_pw, sizeof S.role_pw, "Rd-%08x-%08x", r, (unsigned)rand());
    snprintf(S.title, sizeof S.title, "pipectl adapter test %08x", r);

    char q[1024];
    snprintf(q, sizeof q, "CREATE DATABASE %s", S.db);
    sql("postgres", q);
    snprintf(q, sizeof q, "CREATE ROLE %s LOGIN NOSUPERUSER PASSWORD '%s'", S.role, S.role_pw);
    sql("postgres", q);
    snprintf(q, sizeof q,
             "CREATE SCHEMA app;"
             "CREATE TABLE app.users (id bigint PRIMARY KEY, name text NOT NULL, email text);"
             "INSERT INTO app.users VALUES (1, 'Ada Lovelace', 'ada@example.org'),"
             " (2, 'Bob Byte', 'bob@example.org'), (3, 'Cy Coder', 'cy@example.org');"
             "CREATE TABLE public.not_exposed (id int PRIMARY KEY);"
             "GRANT CONNECT ON DATABASE %s TO %s; GRANT USAGE ON SCHEMA app TO %s;"
             "GRANT SELECT ON ALL TABLES IN SCHEMA app TO %s;"
             "ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO %s;",
             S.db, S.role, S.role, S.role, S.role);
    sql(S.db, q);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char q[256];
    pc_error err = {0};
    if (S.base_id && S.tok) {
        char *path = pc_asprintf("/api/v2/meta/bases/%s", S.base_id);
        nc_call(S.tok, "DELETE", path, NULL, "test cleanup", 0, 0, NULL, NULL, &err);
        free(path);
    }
    pc_nocodb_free(S.tok);
    pc_nocodb_free(S.user);
    free(S.base_id);
    free(S.source_id);
    snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s WITH (FORCE)", S.db);
    sql("postgres", q);
    snprintf(q, sizeof q, "DROP ROLE IF EXISTS %s", S.role);
    sql("postgres", q);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_open),          cmocka_unit_test(t_bad_credentials),
        cmocka_unit_test(t_unreachable),   cmocka_unit_test(t_base),
        cmocka_unit_test(t_create_source), cmocka_unit_test(t_list_tables),
        cmocka_unit_test(t_meta_sync),     cmocka_unit_test(t_count_rows),
        cmocka_unit_test(t_update_source), cmocka_unit_test(t_dead_source),
        cmocka_unit_test(t_delete_source),
    };
    return cmocka_run_group_tests_name("nocodb_adapter", tests, setup, teardown);
}
