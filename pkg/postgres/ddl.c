/* ddl.c: the PostgreSQL actions: one DDL statement per action (schemas, tables, columns)
 * and ALTER SYSTEM for the archiving settings, then pg_reload_conf. Every identifier goes
 * through PQescapeIdentifier; a type string passes safe_type before it is pasted into DDL. */
#include "postgres_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- apply ---------- */

/* The manifest parser allow-lists types; this is the last line of defence before a type string
 * is pasted into DDL (types cannot be parameters or quoted identifiers). */
static bool safe_type(const char *t)
{
    if (t == NULL || *t == '\0')
        return false;
    for (const char *p = t; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == ' ' || c == '_' || c == '(' || c == ')' || c == ',' || c == '[' ||
              c == ']' || c == '.'))
            return false;
    }
    return true;
}

static int bad_type(const pc_action *a, const pc_mf_column *c, pc_error *err)
{
    return pc_error_set(err, PC_EINVAL,
                        "column %s.%s.%s: type '%s' is not a plain PostgreSQL type name (letters, "
                        "digits, spaces and _ ( ) , [ ] . only); fix the type in the manifest",
                        a->schema, a->table, c->name != NULL ? c->name : "?",
                        c->type != NULL ? c->type : "");
}

/* Refuses an action of a kind this file does not perform (a routing bug: users never see it). */
static int misrouted(const pc_action *a, pc_error *err)
{
    const char *sys = pc_action_system_name(pc_action_system_of(a->kind));
    return pc_error_set(err, PC_EINVAL,
                        "%s %s (system %s) is not a PostgreSQL schema, table, column or setting "
                        "action",
                        pc_action_noun(a->kind), a->object != NULL ? a->object : "?",
                        *sys ? sys : "none");
}

/* "schema"."table" */
static char *qualified(pc_pg *pg, const char *schema, const char *table)
{
    char *qs = pc_pg__quote_ident(pg, schema);
    char *qt = pc_pg__quote_ident(pg, table);
    char *r = (qs != NULL && qt != NULL) ? pc_asprintf("%s.%s", qs, qt) : NULL;
    free(qs);
    free(qt);
    return r;
}

/* "name" type [NOT NULL] */
static int column_def(pc_pg *pg, pc_buf *b, const pc_mf_column *c)
{
    char *qc = pc_pg__quote_ident(pg, c->name);
    if (qc == NULL)
        return PC_ENOMEM;
    int rc = pc_buf_printf(b, "%s %s%s", qc, c->type,
                           (!c->nullable || c->primary_key) ? " NOT NULL" : "");
    free(qc);
    return rc != 0 ? PC_ENOMEM : 0;
}

/* Every statement below is built, then run here: a NULL sql or what is an allocation that
 * failed while building them. role.c's statements are run the same way. */
int pc_pg__exec_built(pc_pg *pg, const char *sql, const char *what, pc_error *err)
{
    if (sql == NULL || what == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    return pc_pg__exec(pg, sql, 0, NULL, what, NULL, err);
}

/* A statement built in b: its text, or NULL when an append failed (brc != 0). */
static char *built(pc_buf *b, int brc)
{
    if (brc == 0)
        return pc_buf_detach(b);
    pc_buf_free(b);
    return NULL;
}

static int apply_schema(pc_pg *pg, const pc_action *a, pc_error *err)
{
    if (pc_pg__empty(a->schema))
        return pc_error_set(err, PC_EINVAL, "create schema action without a schema name");
    char *qs = pc_pg__quote_ident(pg, a->schema);
    char *sql = qs != NULL ? pc_asprintf("CREATE SCHEMA IF NOT EXISTS %s", qs) : NULL;
    char *what = pc_asprintf("CREATE SCHEMA %s", a->schema);
    int rc = pc_pg__exec_built(pg, sql, what, err);
    free(qs);
    free(sql);
    free(what);
    return rc;
}

/* CREATE TABLE "s"."t" ("c" type [NOT NULL], ..., PRIMARY KEY ("c", ...)); NULL on OOM. */
static char *table_sql(pc_pg *pg, const pc_action *a)
{
    pc_buf b = {0};
    char *qt = qualified(pg, a->schema, a->table);
    int brc = qt != NULL ? pc_buf_printf(&b, "CREATE TABLE %s (", qt) : -1;
    free(qt);
    for (size_t i = 0; brc == 0 && i < a->ncolumns; i++) {
        if (i > 0)
            brc = pc_buf_puts(&b, ", ");
        if (brc == 0)
            brc = column_def(pg, &b, &a->columns[i]);
    }
    bool first = true;
    for (size_t i = 0; brc == 0 && i < a->ncolumns; i++) {
        if (!a->columns[i].primary_key)
            continue;
        char *qc = pc_pg__quote_ident(pg, a->columns[i].name);
        brc = qc != NULL ? pc_buf_printf(&b, "%s%s", first ? ", PRIMARY KEY (" : ", ", qc) : -1;
        free(qc);
        first = false;
    }
    if (brc == 0 && !first)
        brc = pc_buf_puts(&b, ")");
    if (brc == 0)
        brc = pc_buf_puts(&b, ")");
    return built(&b, brc);
}

static int apply_table(pc_pg *pg, const pc_action *a, pc_error *err)
{
    if (pc_pg__empty(a->schema) || pc_pg__empty(a->table))
        return pc_error_set(err, PC_EINVAL, "create table action without a schema or table name");
    for (size_t i = 0; i < a->ncolumns; i++) {
        if (pc_pg__empty(a->columns[i].name))
            return pc_error_set(err, PC_EINVAL, "create table %s.%s: column %zu has no name",
                                a->schema, a->table, i + 1);
        if (!safe_type(a->columns[i].type))
            return bad_type(a, &a->columns[i], err);
    }
    char *sql = table_sql(pg, a);
    char *what = pc_asprintf("CREATE TABLE %s.%s", a->schema, a->table);
    int rc = pc_pg__exec_built(pg, sql, what, err);
    free(sql);
    free(what);
    return rc;
}

/* ALTER TABLE "s"."t" ADD/ALTER/DROP COLUMN ... for a column action's kind; NULL on OOM. */
static char *column_sql(pc_pg *pg, const pc_action *a, const pc_mf_column *c)
{
    pc_buf b = {0};
    char *qt = qualified(pg, a->schema, a->table);
    char *qc = pc_pg__quote_ident(pg, c->name);
    int brc = (qt != NULL && qc != NULL) ? pc_buf_printf(&b, "ALTER TABLE %s ", qt) : -1;
    if (brc == 0 && a->kind == PC_ACT_COLUMN_ADD) {
        brc = pc_buf_puts(&b, "ADD COLUMN ");
        if (brc == 0)
            brc = column_def(pg, &b, c);
    } else if (brc == 0 && a->kind == PC_ACT_COLUMN_TYPE) {
        brc = pc_buf_printf(&b, "ALTER COLUMN %s TYPE %s USING %s::%s", qc, c->type, qc, c->type);
    } else if (brc == 0 && a->kind == PC_ACT_COLUMN_NULLABLE) {
        brc = pc_buf_printf(&b, "ALTER COLUMN %s %s NOT NULL", qc, c->nullable ? "DROP" : "SET");
    } else if (brc == 0) {
        brc = pc_buf_printf(&b, "DROP COLUMN %s", qc);
    }
    free(qt);
    free(qc);
    return built(&b, brc);
}

static int apply_column(pc_pg *pg, const pc_action *a, pc_error *err)
{
    if (pc_pg__empty(a->schema) || pc_pg__empty(a->table) || a->ncolumns < 1 ||
        pc_pg__empty(a->columns[0].name))
        return pc_error_set(err, PC_EINVAL, "column action on %s without a schema, table or column",
                            a->object != NULL ? a->object : "?");
    const pc_mf_column *c = &a->columns[0];
    if ((a->kind == PC_ACT_COLUMN_ADD || a->kind == PC_ACT_COLUMN_TYPE) && !safe_type(c->type))
        return bad_type(a, c, err);
    char *what = NULL;
    if (a->kind == PC_ACT_COLUMN_ADD)
        what = pc_asprintf("ALTER TABLE %s.%s ADD COLUMN %s %s%s", a->schema, a->table, c->name,
                           c->type, (!c->nullable || c->primary_key) ? " NOT NULL" : "");
    else if (a->kind == PC_ACT_COLUMN_TYPE)
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s TYPE %s", a->schema, a->table,
                           c->name, c->type);
    else if (a->kind == PC_ACT_COLUMN_NULLABLE)
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s %s NOT NULL", a->schema, a->table,
                           c->name, c->nullable ? "DROP" : "SET");
    else if (a->kind == PC_ACT_COLUMN_DROP)
        what = pc_asprintf("ALTER TABLE %s.%s DROP COLUMN %s", a->schema, a->table, c->name);
    else
        return misrouted(a, err);
    char *sql = column_sql(pg, a, c);
    int rc = pc_pg__exec_built(pg, sql, what, err);
    free(sql);
    free(what);
    return rc;
}

/* ALTER SYSTEM writes postgresql.auto.conf; it cannot run inside a transaction block and takes no
 * parameters, so the value is a literal quoted by libpq. A NULL value resets the setting. */
static int apply_setting(pc_pg *pg, const pc_action *a, pc_error *err)
{
    if (pc_pg__empty(a->setting))
        return pc_error_set(err, PC_EINVAL, "setting action without a setting name");
    char *qn = pc_pg__quote_ident(pg, a->setting);
    char *qv = a->value != NULL ? pc_pg__quote_literal(pg, a->value) : NULL;
    char *sql = NULL;
    char *what = NULL;
    if (qn != NULL && a->value != NULL && qv != NULL) {
        sql = pc_asprintf("ALTER SYSTEM SET %s = %s", qn, qv);
        what = pc_asprintf("ALTER SYSTEM SET %s = %s", a->setting, qv);
    } else if (qn != NULL && a->value == NULL) {
        sql = pc_asprintf("ALTER SYSTEM RESET %s", qn);
        what = pc_asprintf("ALTER SYSTEM RESET %s", a->setting);
    }
    int rc = pc_pg__exec_built(pg, sql, what, err);
    free(qn);
    free(qv);
    free(sql);
    free(what);
    return rc;
}

/* The kinds this file performs are named here and nowhere else in pkg/postgres (NocoDB's role
 * is role.c's); anything else is refused. */
int pc_pg_apply(pc_pg *pg, const pc_action *a, pc_error *err)
{
    pc_action_kind k = a->kind;
    if (k == PC_ACT_SCHEMA_CREATE)
        return apply_schema(pg, a, err);
    if (k == PC_ACT_TABLE_CREATE)
        return apply_table(pg, a, err);
    if (k == PC_ACT_COLUMN_ADD || k == PC_ACT_COLUMN_TYPE || k == PC_ACT_COLUMN_NULLABLE ||
        k == PC_ACT_COLUMN_DROP)
        return apply_column(pg, a, err);
    if (k == PC_ACT_SETTING)
        return apply_setting(pg, a, err);
    return misrouted(a, err);
}

/* pg_reload_conf() only signals the postmaster, which re-reads the files and signals every
 * backend, this one included, later. Until this session has re-read them, what it observes
 * (pg_settings) is the old configuration; so wait, bounded, until its pg_conf_load_time()
 * moves: whatever runs next on this connection (the snapshot's observation) sees the new values. */
int pc_pg_reload(pc_pg *pg, pc_error *err)
{
    const char *load_time = "SELECT pg_conf_load_time()::text";
    PGresult *res = NULL;
    char *before = NULL;
    int rc = pc_pg__exec(pg, load_time, 0, NULL, "SELECT pg_conf_load_time()", &res, err);
    if (rc == 0 && (before = pc_strdup(PQgetvalue(res, 0, 0))) == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading %s's configuration load time",
                          pg->where);
    PQclear(res);
    res = NULL;
    if (rc == 0)
        rc = pc_pg__exec(pg, "SELECT pg_reload_conf()", 0, NULL, "SELECT pg_reload_conf()", &res,
                         err);
    if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_EREFUSED,
                          "%s could not signal the postmaster to reload its configuration "
                          "(pg_reload_conf returned false); check the server log",
                          pg->where);
    PQclear(res);
    res = NULL;
    /* Normally a few milliseconds. Past the bound the reload still happens, only this
     * session's view may lag: not an error. */
    for (int64_t deadline = pc_mono_ms() + 5000; rc == 0 && pc_mono_ms() < deadline;) {
        rc = pc_pg__exec(pg, load_time, 0, NULL, "SELECT pg_conf_load_time()", &res, err);
        bool moved = rc == 0 && strcmp(PQgetvalue(res, 0, 0), before) != 0;
        PQclear(res);
        res = NULL;
        if (moved)
            break;
        pc_sleep_ms(10);
    }
    free(before);
    return rc;
}
