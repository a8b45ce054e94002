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

static int apply_schema(pc_pg *pg, const pc_action *a, pc_error *err)
{
    char *qs = NULL;
    char *sql = NULL;
    char *what = NULL;
    int rc = 0;
    if (pc_pg__empty(a->schema)) {
        rc = pc_error_set(err, PC_EINVAL, "create schema action without a schema name");
        goto done;
    }
    qs = pc_pg__quote_ident(pg, a->schema);
    sql = qs != NULL ? pc_asprintf("CREATE SCHEMA IF NOT EXISTS %s", qs) : NULL;
    what = pc_asprintf("CREATE SCHEMA %s", a->schema);
    if (sql == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pc_pg__exec(pg, sql, 0, NULL, what, NULL, err);
done:
    free(qs);
    free(sql);
    free(what);
    return rc;
}

static int apply_table(pc_pg *pg, const pc_action *a, pc_error *err)
{
    pc_buf b = {0};
    char *qt = NULL;
    char *what = NULL;
    int rc = 0;
    if (pc_pg__empty(a->schema) || pc_pg__empty(a->table)) {
        rc = pc_error_set(err, PC_EINVAL, "create table action without a schema or table name");
        goto done;
    }
    for (size_t i = 0; i < a->ncolumns; i++) {
        if (pc_pg__empty(a->columns[i].name)) {
            rc = pc_error_set(err, PC_EINVAL, "create table %s.%s: column %zu has no name",
                              a->schema, a->table, i + 1);
            goto done;
        }
        if (!safe_type(a->columns[i].type)) {
            rc = bad_type(a, &a->columns[i], err);
            goto done;
        }
    }
    qt = qualified(pg, a->schema, a->table);
    what = pc_asprintf("CREATE TABLE %s.%s", a->schema, a->table);
    if (qt == NULL || what == NULL || pc_buf_printf(&b, "CREATE TABLE %s (", qt) != 0)
        goto oom;
    for (size_t i = 0; i < a->ncolumns; i++) {
        if ((i > 0 && pc_buf_puts(&b, ", ") != 0) || column_def(pg, &b, &a->columns[i]) != 0)
            goto oom;
    }
    bool first = true;
    for (size_t i = 0; i < a->ncolumns; i++) {
        if (!a->columns[i].primary_key)
            continue;
        char *qc = pc_pg__quote_ident(pg, a->columns[i].name);
        int brc = qc == NULL ? -1 : pc_buf_printf(&b, "%s%s", first ? ", PRIMARY KEY (" : ", ", qc);
        free(qc);
        if (brc != 0)
            goto oom;
        first = false;
    }
    if ((!first && pc_buf_puts(&b, ")") != 0) || pc_buf_puts(&b, ")") != 0)
        goto oom;
    rc = pc_pg__exec(pg, b.data, 0, NULL, what, NULL, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    pc_buf_free(&b);
    free(qt);
    free(what);
    return rc;
}

static int apply_column(pc_pg *pg, const pc_action *a, pc_error *err)
{
    pc_buf b = {0};
    char *qt = NULL;
    char *qc = NULL;
    char *what = NULL;
    int rc = 0;
    if (pc_pg__empty(a->schema) || pc_pg__empty(a->table) || a->ncolumns < 1 ||
        pc_pg__empty(a->columns[0].name)) {
        rc = pc_error_set(err, PC_EINVAL, "column action on %s without a schema, table or column",
                          a->object != NULL ? a->object : "?");
        goto done;
    }
    const pc_mf_column *c = &a->columns[0];
    if ((a->kind == PC_ACT_COLUMN_ADD || a->kind == PC_ACT_COLUMN_TYPE) && !safe_type(c->type)) {
        rc = bad_type(a, c, err);
        goto done;
    }
    qt = qualified(pg, a->schema, a->table);
    qc = pc_pg__quote_ident(pg, c->name);
    if (qt == NULL || qc == NULL || pc_buf_printf(&b, "ALTER TABLE %s ", qt) != 0)
        goto oom;
    int brc = 0;
    if (a->kind == PC_ACT_COLUMN_ADD) {
        brc = pc_buf_puts(&b, "ADD COLUMN ");
        if (brc == 0)
            brc = column_def(pg, &b, c);
        what = pc_asprintf("ALTER TABLE %s.%s ADD COLUMN %s %s%s", a->schema, a->table, c->name,
                           c->type, (!c->nullable || c->primary_key) ? " NOT NULL" : "");
    } else if (a->kind == PC_ACT_COLUMN_TYPE) {
        brc = pc_buf_printf(&b, "ALTER COLUMN %s TYPE %s USING %s::%s", qc, c->type, qc, c->type);
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s TYPE %s", a->schema, a->table,
                           c->name, c->type);
    } else if (a->kind == PC_ACT_COLUMN_NULLABLE) {
        brc = pc_buf_printf(&b, "ALTER COLUMN %s %s NOT NULL", qc, c->nullable ? "DROP" : "SET");
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s %s NOT NULL", a->schema, a->table,
                           c->name, c->nullable ? "DROP" : "SET");
    } else if (a->kind == PC_ACT_COLUMN_DROP) {
        brc = pc_buf_printf(&b, "DROP COLUMN %s", qc);
        what = pc_asprintf("ALTER TABLE %s.%s DROP COLUMN %s", a->schema, a->table, c->name);
    } else {
        rc = misrouted(a, err);
        goto done;
    }
    if (brc != 0 || what == NULL)
        goto oom;
    rc = pc_pg__exec(pg, b.data, 0, NULL, what, NULL, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    pc_buf_free(&b);
    free(qt);
    free(qc);
    free(what);
    return rc;
}

/* ALTER SYSTEM writes postgresql.auto.conf; it cannot run inside a transaction block and takes no
 * parameters, so the value is a literal quoted by libpq. A NULL value resets the setting. */
static int apply_setting(pc_pg *pg, const pc_action *a, pc_error *err)
{
    char *qn = NULL;
    char *qv = NULL;
    char *sql = NULL;
    char *what = NULL;
    int rc = 0;
    if (pc_pg__empty(a->setting)) {
        rc = pc_error_set(err, PC_EINVAL, "setting action without a setting name");
        goto done;
    }
    qn = pc_pg__quote_ident(pg, a->setting);
    if (qn == NULL)
        goto oom;
    if (a->value != NULL) {
        qv = pc_pg__quote_literal(pg, a->value);
        if (qv == NULL)
            goto oom;
        sql = pc_asprintf("ALTER SYSTEM SET %s = %s", qn, qv);
        what = pc_asprintf("ALTER SYSTEM SET %s = %s", a->setting, qv);
    } else {
        sql = pc_asprintf("ALTER SYSTEM RESET %s", qn);
        what = pc_asprintf("ALTER SYSTEM RESET %s", a->setting);
    }
    if (sql == NULL || what == NULL)
        goto oom;
    rc = pc_pg__exec(pg, sql, 0, NULL, what, NULL, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
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
