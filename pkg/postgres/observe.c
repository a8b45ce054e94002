/* observe.c: what the PostgreSQL adapter observes: the declared schemas, their tables and
 * columns, the archiving settings and where the DSN connects (pc_pg_observe). Catalog queries
 * only; nothing here changes the database. */
#include "postgres_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The settings pkg/plan manages for archiving, as a Postgres array literal. */
static const char k_settings_array[] = "{archive_mode,archive_command,wal_level,archive_timeout}";

/* {"a","b"} with " and \ escaped: a text[] parameter. */
char *pc_pg__text_array(const char *const *names, size_t n)
{
    pc_buf b = {0};
    int rc = pc_buf_puts(&b, "{");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = pc_buf_puts(&b, i > 0 ? ",\"" : "\"");
        for (const char *p = names[i]; rc == 0 && p != NULL && *p; p++) {
            if (*p == '"' || *p == '\\')
                rc = pc_buf_append(&b, "\\", 1);
            if (rc == 0)
                rc = pc_buf_append(&b, p, 1);
        }
        if (rc == 0)
            rc = pc_buf_puts(&b, "\"");
    }
    if (rc == 0)
        rc = pc_buf_puts(&b, "}");
    if (rc != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

static char *schema_array(const pc_manifest *m)
{
    const char **names = calloc(m->nschemas + 1, sizeof *names);
    if (names == NULL)
        return NULL;
    for (size_t i = 0; i < m->nschemas; i++)
        names[i] = m->schemas[i].name;
    char *r = pc_pg__text_array(names, m->nschemas);
    free(names);
    return r;
}

static char *value_or_null(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    return pc_strdup(PQgetvalue(res, row, col));
}

static int observe_schemas(pc_pg *pg, const char *arr, pc_observed *o, pc_error *err)
{
    PGresult *res = NULL;
    const char *params[1] = {arr};
    int rc =
        pc_pg__exec(pg,
                    "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[]) "
                    "ORDER BY nspname",
                    1, params, "the schema query (pg_namespace)", &res, err);
    if (rc != 0)
        goto done;
    int n = PQntuples(res);
    if (n == 0)
        goto done;
    char **grown = realloc(o->schemas, (o->nschemas + (size_t)n) * sizeof *grown);
    if (grown == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    o->schemas = grown;
    for (int i = 0; i < n; i++) {
        char *s = pc_strdup(PQgetvalue(res, i, 0));
        if (s == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        o->schemas[o->nschemas++] = s;
    }
done:
    PQclear(res);
    return rc;
}

static bool same_table(const PGresult *res, int a, int b)
{
    return strcmp(PQgetvalue(res, a, 0), PQgetvalue(res, b, 0)) == 0 &&
           strcmp(PQgetvalue(res, a, 1), PQgetvalue(res, b, 1)) == 0;
}

/* Every table of the declared schemas with its columns, in one query. Partitions of a
 * partitioned table are left out: the parent is the table the manifest talks about. */
static int observe_tables(pc_pg *pg, const char *arr, pc_observed *o, pc_error *err)
{
    static const char sql[] =
        "SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
        "a.attnotnull, COALESCE(a.attnum = ANY(i.indkey), false) "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_catalog.pg_attribute a "
        "  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1::text[]) "
        "ORDER BY n.nspname, c.relname, a.attnum";
    PGresult *res = NULL;
    const char *params[1] = {arr};
    int rc = pc_pg__exec(pg, sql, 1, params, "the table and column query (pg_class, pg_attribute)",
                         &res, err);
    if (rc != 0)
        goto done;
    int n = PQntuples(res);
    size_t count = 0;
    for (int r = 0; r < n; r++)
        if (r == 0 || !same_table(res, r, r - 1))
            count++;
    if (count == 0)
        goto done;
    pc_obs_table *grown = realloc(o->tables, (o->ntables + count) * sizeof *grown);
    if (grown == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    o->tables = grown;
    memset(o->tables + o->ntables, 0, count * sizeof *grown);
    int start = 0;
    while (start < n) {
        int end = start + 1;
        while (end < n && same_table(res, end, start))
            end++;
        pc_obs_table *t = &o->tables[o->ntables++]; /* zeroed: safe to free half-built */
        t->schema = pc_strdup(PQgetvalue(res, start, 0));
        t->name = pc_strdup(PQgetvalue(res, start, 1));
        if (t->schema == NULL || t->name == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        size_t ncols = PQgetisnull(res, start, 2) ? 0 : (size_t)(end - start);
        if (ncols > 0) {
            t->columns = calloc(ncols, sizeof *t->columns);
            if (t->columns == NULL) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
            t->ncolumns = ncols;
            for (size_t j = 0; j < ncols; j++) {
                int r = start + (int)j;
                pc_obs_column *c = &t->columns[j];
                c->name = pc_strdup(PQgetvalue(res, r, 2));
                c->type = pc_strdup(PQgetvalue(res, r, 3));
                c->nullable = strcmp(PQgetvalue(res, r, 4), "t") != 0;
                c->primary_key = strcmp(PQgetvalue(res, r, 5), "t") == 0;
                if (c->name == NULL || c->type == NULL) {
                    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                    goto done;
                }
            }
        }
        start = end;
    }
done:
    PQclear(res);
    return rc;
}

/* The value waiting in the configuration files for a restart, from pg_file_settings (latest
 * entry per name). Reading it needs superuser or pg_read_all_settings: without that, leave
 * *files NULL and the pending values unknown rather than fail the whole observation. */
static int read_file_settings(pc_pg *pg, PGresult **files, pc_error *err)
{
    const char *params[1] = {k_settings_array};
    *files = NULL;
    PGresult *res = PQexecParams(pg->conn,
                                 "SELECT DISTINCT ON (name) name, setting, applied "
                                 "FROM pg_catalog.pg_file_settings WHERE name = ANY($1::text[]) "
                                 "ORDER BY name, seqno DESC",
                                 1, NULL, params, NULL, NULL, 0);
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        *files = res;
        return 0;
    }
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int rc = 0;
    if (st == NULL || strcmp(st, "42501") != 0)
        rc = pc_pg__fail(pg, res, "the pending settings query (pg_file_settings)", err);
    PQclear(res);
    return rc;
}

static int find_row(const PGresult *res, const char *name)
{
    for (int r = 0; res != NULL && r < PQntuples(res); r++)
        if (strcmp(PQgetvalue(res, r, 0), name) == 0)
            return r;
    return -1;
}

static int observe_settings(pc_pg *pg, pc_observed *o, pc_error *err)
{
    /* archive_command shows "(disabled)" while archive_mode is off; reset_val holds what the
     * configuration actually says (it cannot be SET per session, so reset_val is current). */
    static const char sql[] =
        "SELECT name, CASE WHEN name = 'archive_command' AND setting = '(disabled)' "
        "THEN reset_val ELSE setting END, unit, context, source, boot_val "
        "FROM pg_catalog.pg_settings WHERE name = ANY($1::text[]) "
        "ORDER BY array_position($1::text[], name)";
    PGresult *res = NULL;
    PGresult *files = NULL;
    const char *params[1] = {k_settings_array};
    int rc = pc_pg__exec(pg, sql, 1, params, "the settings query (pg_settings)", &res, err);
    if (rc == 0)
        rc = read_file_settings(pg, &files, err);
    if (rc != 0)
        goto done;
    int n = PQntuples(res);
    if (n == 0)
        goto done;
    pc_obs_setting *grown = realloc(o->settings, (o->nsettings + (size_t)n) * sizeof *grown);
    if (grown == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    o->settings = grown;
    memset(o->settings + o->nsettings, 0, (size_t)n * sizeof *grown);
    for (int r = 0; r < n; r++) {
        pc_obs_setting *s = &o->settings[o->nsettings++];
        s->name = value_or_null(res, r, 0);
        s->value = value_or_null(res, r, 1);
        s->unit = value_or_null(res, r, 2);
        s->context = value_or_null(res, r, 3);
        if (s->name == NULL || s->context == NULL ||
            (s->value == NULL && !PQgetisnull(res, r, 1)) ||
            (s->unit == NULL && !PQgetisnull(res, r, 2))) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (strcmp(s->context, "postmaster") != 0)
            continue;
        int f = find_row(files, s->name);
        const char *pending = NULL;
        if (f >= 0) {
            /* the latest line in the files wins; not applied = waiting for a restart */
            if (strcmp(PQgetvalue(files, f, 2), "f") == 0 && !PQgetisnull(files, f, 1) &&
                !pc_streq(PQgetvalue(files, f, 1), s->value))
                pending = PQgetvalue(files, f, 1);
        } else if (files != NULL && strcmp(PQgetvalue(res, r, 4), "configuration file") == 0 &&
                   !PQgetisnull(res, r, 5) && !pc_streq(PQgetvalue(res, r, 5), s->value)) {
            /* the running value came from a file that no longer sets it (ALTER SYSTEM RESET):
             * the default returns at the next restart. (pg_settings.pending_restart is not
             * used: it is per backend and reading pg_file_settings itself can set it.) */
            pending = PQgetvalue(res, r, 5);
        }
        if (pending != NULL) {
            s->pending = pc_strdup(pending);
            if (s->pending == NULL) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
done:
    PQclear(files);
    PQclear(res);
    return rc;
}

static int observe_pgconn(pc_pg *pg, pc_observed *o, pc_error *err)
{
    const char *host = PQhost(pg->conn);
    const char *port = PQport(pg->conn);
    o->pgconn.host = host != NULL && host[0] != '\0' && host[0] != '/' ? pc_strdup(host) : NULL;
    o->pgconn.port = port != NULL && port[0] != '\0' ? atoi(port) : 5432;
    o->pgconn.database = pc_strdup(PQdb(pg->conn));
    o->pgconn.user = pc_strdup(PQuser(pg->conn));
    if ((o->pgconn.host == NULL && host != NULL && host[0] != '\0' && host[0] != '/') ||
        o->pgconn.database == NULL || o->pgconn.user == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    return 0;
}

int pc_pg_observe(pc_pg *pg, const pc_manifest *m, pc_observed *o, pc_error *err)
{
    int rc = 0;
    char *arr = NULL;
    if (m->nschemas > 0) {
        arr = schema_array(m);
        if (arr == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        rc = observe_schemas(pg, arr, o, err);
        if (rc == 0)
            rc = observe_tables(pg, arr, o, err);
        if (rc != 0)
            goto done;
    }
    rc = observe_settings(pg, o, err);
    if (rc == 0 && m->name != NULL)
        rc = pc_pg__observe_inventory(pg, m->name, o, err);
    if (rc == 0)
        rc = observe_pgconn(pg, o, err);
    if (rc == 0 && m->nocodb.declared && m->nocodb.role != NULL)
        rc = pc_pg__observe_role(pg, &m->nocodb, o, err);
    if (rc != 0)
        goto done;
    o->pg_observed = true;
done:
    free(arr);
    return rc;
}
