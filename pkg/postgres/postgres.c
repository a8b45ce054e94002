/* postgres.c: the Postgres adapter over libpq.
 *
 * Observation is a handful of catalog queries per call (all tables and columns of the declared
 * schemas come back in one query, so 200 tables cost one round trip, not 200). Each action is one
 * DDL statement, run on its own so it commits or fails alone; ALTER SYSTEM cannot run inside a
 * transaction block anyway. Every identifier goes through PQescapeIdentifier and every value is a
 * query parameter or a PQescapeLiteral literal. The session carries lock_timeout and
 * statement_timeout so an apply stuck behind someone else's lock fails instead of hanging.
 * Nothing here decides what to change: pkg/plan does. */
#include "postgres_int.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounded waits for the session. A DDL statement waits at most this long for a lock held by
 * another session; no statement runs longer than statement_timeout (a type change rewrites the
 * table, so this is generous). */
#define PC_PG_LOCK_TIMEOUT "10s"
#define PC_PG_STATEMENT_TIMEOUT "15min"

struct pc_pg {
    PGconn *conn;
    char *where;          /* "PostgreSQL at host:port", for messages */
    bool inventory_ready; /* pipectl.inventory known to exist on this connection */
    char *dsn;            /* secret-bearing: for the login check as NocoDB's role; never shown */
    int timeout_s;
};

/* The settings pkg/plan manages for archiving, as a Postgres array literal. */
static const char k_settings_array[] = "{archive_mode,archive_command,wal_level,archive_timeout}";

static const char *or_default(const char *s, const char *def)
{
    return (s != NULL && *s != '\0') ? s : def;
}

/* Same as PQescapeIdentifier/PQescapeLiteral, but the copy belongs to malloc so callers free()
 * it like every other string here. */
static char *quote_ident(pc_pg *pg, const char *s)
{
    char *q = PQescapeIdentifier(pg->conn, s, strlen(s));
    char *r = pc_strdup(q);
    PQfreemem(q);
    return r;
}

static char *quote_literal(pc_pg *pg, const char *s)
{
    char *q = PQescapeLiteral(pg->conn, s, strlen(s));
    char *r = pc_strdup(q);
    PQfreemem(q);
    return r;
}

static int code_for_sqlstate(const char *st)
{
    if (st == NULL)
        return PC_EREFUSED;
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
        strcmp(st, "57P03") == 0 || strcmp(st, "53300") == 0 || strcmp(st, "57014") == 0)
        return PC_EUNAVAIL;
    if (strcmp(st, "55P03") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
        return PC_ECONFLICT;
    return PC_EREFUSED;
}

/* What the user can do, by SQLSTATE. */
static const char *advice_for_sqlstate(const char *st)
{
    if (st == NULL)
        return "fix the cause and re-run pipectl apply";
    if (strcmp(st, "23502") == 0)
        return "update or delete the rows holding NULL (or keep the column nullable in the "
               "manifest), then re-run pipectl apply";
    if (strcmp(st, "23505") == 0)
        return "remove the duplicate rows, then re-run pipectl apply";
    if (strcmp(st, "22P02") == 0 || strcmp(st, "42804") == 0 || strcmp(st, "22001") == 0 ||
        strcmp(st, "22003") == 0 || strcmp(st, "42846") == 0)
        return "convert the existing data so it fits the new type (or keep the old type in the "
               "manifest), then re-run pipectl apply";
    if (strcmp(st, "42501") == 0)
        return "grant the connecting role the privilege (or connect as the objects' owner), "
               "then re-run pipectl apply";
    if (strcmp(st, "55P03") == 0)
        return "another session holds a lock on the object; wait for it to finish and re-run "
               "pipectl apply";
    if (strcmp(st, "57014") == 0)
        return "the statement was cancelled (statement_timeout or an operator); retry when the "
               "database is less busy";
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 || strcmp(st, "53300") == 0)
        return "check that the server is running and accepting connections, then retry";
    if (strcmp(st, "42P07") == 0 || strcmp(st, "42701") == 0 || strcmp(st, "42P06") == 0 ||
        strcmp(st, "42P01") == 0 || strcmp(st, "42703") == 0 || strcmp(st, "3F000") == 0)
        return "the database changed since the plan was made; run pipectl plan again";
    if (strcmp(st, "42704") == 0 || strcmp(st, "42601") == 0 || strcmp(st, "22023") == 0)
        return "fix the value in the manifest, then re-run pipectl apply";
    return "fix the cause and re-run pipectl apply";
}

/* Translates a failed statement into err, keeping the server's primary message, detail and hint
 * and naming the statement (`what`, with plain unquoted names) and the server. */
static int pg_fail(pc_pg *pg, const PGresult *res, const char *what, pc_error *err)
{
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    int code = code_for_sqlstate(st);
    char *p = NULL, *d = NULL, *h = NULL;

    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        code = PC_EUNAVAIL;
        if (primary == NULL)
            primary = PQerrorMessage(pg->conn);
    } else if (res == NULL) {
        code = PC_ENOMEM;
        primary = PQerrorMessage(pg->conn);
    } else if (primary == NULL) {
        primary = PQresultErrorMessage(res);
    }
    p = pc_pg_clean_text(or_default(primary, "unknown error"));
    d = detail != NULL ? pc_pg_clean_text(detail) : NULL;
    h = hint != NULL ? pc_pg_clean_text(hint) : NULL;
    if (p == NULL || (detail != NULL && d == NULL) || (hint != NULL && h == NULL)) {
        code = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *verb = code == PC_EUNAVAIL ? "could not run" : "refused";
    if (code == PC_EUNAVAIL && st == NULL)
        st = "08000"; /* connection lost: advise as such */
    pc_error_set(err, code, "%s %s %s: %s%s%s%s%s; %s", pg->where, verb, what, p,
                 d != NULL ? ". Detail: " : "", d != NULL ? d : "", h != NULL ? ". Hint: " : "",
                 h != NULL ? h : "", advice_for_sqlstate(st));
done:
    free(p);
    free(d);
    free(h);
    return code;
}

/* Runs one statement with text parameters. On success *out (when not NULL) owns the result. */
static int pg_exec(pc_pg *pg, const char *sql, int nparams, const char *const *params,
                   const char *what, PGresult **out, pc_error *err)
{
    PGresult *res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        if (out != NULL)
            *out = res;
        else
            PQclear(res);
        return 0;
    }
    int rc = pg_fail(pg, res, what, err);
    PQclear(res);
    return rc;
}

/* ---------- the DSN, read by libpq's own parser ---------- */

static bool is_uri(const char *dsn)
{
    return strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
}

/* The secrets of dsn as written, generously: pc_secret_ranges' values, and for an unquoted
 * key=value password the text up to the next " key=" and its blank-separated pieces (a password
 * with a blank and no quotes is cut by libpq, which then quotes the pieces in its errors). */
static int local_secrets(const char *dsn, pc_secrets *out)
{
    int rc = pc_secrets_add_text(out, dsn);
    if (rc != 0 || is_uri(dsn))
        return rc;
    for (const char *p = dsn; rc == 0 && (p = strstr(p, "=")) != NULL; p++) {
        const char *k = p;
        while (k > dsn && isspace((unsigned char)k[-1]))
            k--;
        const char *ke = k;
        while (k > dsn && !isspace((unsigned char)k[-1]))
            k--;
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(ke - k), k);
        if (!pc_is_secret_key(key))
            continue;
        const char *v = p + 1, *ve = v;
        while (*v != '\0' && isspace((unsigned char)*v))
            v++;
        if (*v == '\'')
            continue; /* quoted: pc_secret_ranges has it exactly */
        /* up to the next "blank key=" (or the end) */
        for (ve = v; *ve != '\0'; ve++) {
            if (!isspace((unsigned char)*ve))
                continue;
            const char *q = ve;
            while (isspace((unsigned char)*q))
                q++;
            while (*q != '\0' && (isalnum((unsigned char)*q) || *q == '_'))
                q++;
            while (isspace((unsigned char)*q))
                q++;
            if (*q == '=')
                break;
        }
        char *val = pc_strndup(v, (size_t)(ve - v));
        if (val == NULL)
            return PC_ENOMEM;
        rc = pc_secrets_add(out, val);
        for (char *save = NULL, *t = strtok_r(val, " \t\n\r\f\v", &save); rc == 0 && t != NULL;
             t = strtok_r(NULL, " \t\n\r\f\v", &save))
            rc = pc_secrets_add(out, t);
        free(val);
    }
    return rc;
}

/* The password of a postgresql:// URI as a reader sees it: between the first ':' of the
 * userinfo and the last '@' before a blank, percent-decoded. NULL when there is none (or it does
 * not decode: *bad is then set). */
static char *uri_password(const char *dsn, bool *bad)
{
    const char *a = strstr(dsn, "://") + 3, *at = NULL;
    for (const char *p = a; *p != '\0' && !isspace((unsigned char)*p); p++)
        if (*p == '@')
            at = p;
    const char *colon = at != NULL ? memchr(a, ':', (size_t)(at - a)) : NULL;
    if (colon == NULL)
        return NULL;
    char *raw = pc_strndup(colon + 1, (size_t)(at - colon - 1));
    char *dec = raw != NULL ? pc_percent_decode(raw) : NULL;
    if (raw != NULL && dec == NULL)
        *bad = true;
    free(raw);
    return dec;
}

int pc_pg_dsn_check(const char *dsn, char **problem)
{
    int rc = 0;
    pc_secrets local = {0};
    PQconninfoOption *opts = NULL;
    char *perr = NULL, *text = NULL, *upw = NULL;
    *problem = NULL;
    if (dsn == NULL)
        return 0;
    if (local_secrets(dsn, &local) != 0)
        return PC_ENOMEM;
    opts = PQconninfoParse(dsn, &perr);
    if (opts == NULL) {
        if (perr == NULL) {
            rc = PC_ENOMEM;
            goto done;
        }
        char *scrubbed = pc_scrub(perr, pc_secrets_list(&local));
        text = scrubbed != NULL ? pc_pg_clean_text(scrubbed) : NULL;
        free(scrubbed);
        *problem = text != NULL ? pc_asprintf("libpq cannot parse it: %s", text) : NULL;
        rc = *problem != NULL ? PC_EINVAL : PC_ENOMEM;
        goto done;
    }
    const char *pw = NULL;
    bool leaked = false;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "password") == 0)
            pw = o->val;
        else if (o->dispchar[0] != '*' && !pc_is_secret_key(o->keyword) &&
                 pc_has_secret(o->val, pc_secrets_list(&local)))
            leaked = true; /* part of a password read as the host, port, dbname... */
    }
    bool bad = false;
    if (is_uri(dsn)) {
        upw = uri_password(dsn, &bad);
        if (bad || (upw != NULL && !pc_streq(upw, pw)))
            leaked = true;
    }
    if (leaked) {
        *problem = pc_strdup(
            bad ? "the password in the postgresql:// URI holds a '%' that is not a valid "
                  "percent-escape; write '%' as %25, or use key=value pairs with "
                  "password='...'"
                : "libpq does not read the password in the postgresql:// URI as written: part "
                  "of it would be taken as the host, port or database. In a URI a '/', '@' or '%' "
                  "in the password must be percent-encoded (%2F, %40, %25); or use key=value "
                  "pairs with password='...'");
        rc = *problem != NULL ? PC_EINVAL : PC_ENOMEM;
    }
done:
    if (upw != NULL)
        memset(upw, 0, strlen(upw));
    free(upw);
    free(text);
    PQconninfoFree(opts);
    PQfreemem(perr);
    pc_secrets_dispose(&local);
    return rc;
}

int pc_pg_dsn_secrets(const char *dsn, pc_secrets *out)
{
    int rc = 0;
    if (dsn == NULL)
        return 0;
    if ((rc = local_secrets(dsn, out)) != 0)
        return rc;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    PQfreemem(perr);
    for (PQconninfoOption *o = opts; rc == 0 && o != NULL && o->keyword != NULL; o++)
        if (o->val != NULL && (o->dispchar[0] == '*' || pc_is_secret_key(o->keyword)))
            rc = pc_secrets_add(out, o->val);
    PQconninfoFree(opts);
    return rc;
}

char *pc_pg_dsn_redacted(const char *dsn)
{
    char *perr = NULL;
    PQconninfoOption *opts = dsn != NULL ? PQconninfoParse(dsn, &perr) : NULL;
    PQfreemem(perr);
    if (opts == NULL)
        return pc_strdup("(unparseable connection string)");
    pc_buf b = {0};
    int rc = 0;
    for (PQconninfoOption *o = opts; rc == 0 && o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        bool secret = o->dispchar[0] == '*' || pc_is_secret_key(o->keyword);
        rc = pc_buf_printf(&b, "%s%s=", b.len > 0 ? " " : "", o->keyword);
        if (rc == 0 && secret) {
            rc = pc_buf_puts(&b, PC_REDACTED);
        } else if (rc == 0 && o->val[strcspn(o->val, " \t\n\r\f\v'\\")] == '\0') {
            rc = pc_buf_puts(&b, o->val);
        } else if (rc == 0) {
            rc = pc_buf_puts(&b, "'");
            for (const char *p = o->val; rc == 0 && *p; p++)
                rc = (*p == '\'' || *p == '\\' ? pc_buf_append(&b, "\\", 1) : 0) ||
                     pc_buf_append(&b, p, 1);
            if (rc == 0)
                rc = pc_buf_puts(&b, "'");
        }
    }
    PQconninfoFree(opts);
    if (rc != 0 || (b.data == NULL && pc_buf_puts(&b, "") != 0)) {
        pc_buf_free(&b);
        return NULL;
    }
    /* and the installed secrets, should one sit in a non-secret option */
    char *r = pc_scrub(b.data, pc_secrets_installed());
    pc_buf_free(&b);
    return r;
}

int pc_pg_open_with(pc_pg **out, const char *dsn, const pc_pg_connect_opts *o, pc_error *err)
{
    int rc = 0;
    pc_pg *pg = NULL;
    pc_pg_connect_opts co = o != NULL ? *o : (pc_pg_connect_opts){0};

    *out = NULL;
    if (co.application_name == NULL)
        co.application_name = "pipectl";
    pg = calloc(1, sizeof *pg);
    if (pg == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_pg_connect(&pg->conn, dsn, &co, err)) != 0)
        goto done;
    pg->where = pc_asprintf("PostgreSQL at %s:%s", or_default(PQhost(pg->conn), "localhost"),
                            or_default(PQport(pg->conn), "5432"));
    pg->dsn = pc_strdup(dsn);
    pg->timeout_s = co.timeout_s;
    if (pg->where == NULL || pg->dsn == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pg_exec(pg, "SET lock_timeout = '" PC_PG_LOCK_TIMEOUT "'", 0, NULL, "SET lock_timeout",
                 NULL, err);
    if (rc == 0)
        rc = pg_exec(pg, "SET statement_timeout = '" PC_PG_STATEMENT_TIMEOUT "'", 0, NULL,
                     "SET statement_timeout", NULL, err);
    if (rc != 0)
        goto done;
    *out = pg;
    pg = NULL;
done:
    pc_pg_free(pg);
    return rc;
}

int pc_pg_open(pc_pg **out, const char *dsn, int timeout_s, pc_error *err)
{
    const pc_pg_connect_opts o = {.timeout_s = timeout_s};
    return pc_pg_open_with(out, dsn, &o, err);
}

void pc_pg_free(pc_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    free(pg->where);
    if (pg->dsn != NULL)
        memset(pg->dsn, 0, strlen(pg->dsn));
    free(pg->dsn);
    free(pg);
}

/* ---------- observe ---------- */

/* {"a","b"} with " and \ escaped: a text[] parameter. */
static char *text_array(const char *const *names, size_t n)
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
    char *r = text_array(names, m->nschemas);
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
    int rc = pg_exec(pg,
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
    int rc = pg_exec(pg, sql, 1, params, "the table and column query (pg_class, pg_attribute)",
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
        rc = pg_fail(pg, res, "the pending settings query (pg_file_settings)", err);
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
    int rc = pg_exec(pg, sql, 1, params, "the settings query (pg_settings)", &res, err);
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

static int inventory_exists(pc_pg *pg, bool *exists, pc_error *err)
{
    PGresult *res = NULL;
    *exists = false;
    int rc = pg_exec(pg, "SELECT to_regclass('pipectl.inventory') IS NOT NULL", 0, NULL,
                     "the inventory lookup (to_regclass('pipectl.inventory'))", &res, err);
    if (rc == 0)
        *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc;
}

static int parse_keys(const char *text, pc_kvlist *out)
{
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    int rc = 0;
    if (arr == NULL || !json_is_array(arr)) {
        rc = PC_EINVAL;
        goto done;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && pc_kvlist_add(out, json_string_value(v), "") != 0) {
            rc = PC_ENOMEM;
            goto done;
        }
    }
done:
    json_decref(arr);
    return rc;
}

static int observe_inventory(pc_pg *pg, const char *pipeline, pc_observed *o, pc_error *err)
{
    PGresult *res = NULL;
    bool exists = false;
    int rc = inventory_exists(pg, &exists, err);
    if (rc != 0 || !exists)
        goto done;
    pg->inventory_ready = true;
    const char *params[1] = {pipeline};
    rc = pg_exec(pg,
                 "SELECT kind, name, managed_keys::text FROM pipectl.inventory "
                 "WHERE pipeline = $1 ORDER BY kind, name",
                 1, params, "SELECT FROM pipectl.inventory", &res, err);
    if (rc != 0)
        goto done;
    int n = PQntuples(res);
    if (n == 0)
        goto done;
    pc_obs_owned *grown = realloc(o->owned, (o->nowned + (size_t)n) * sizeof *grown);
    if (grown == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    o->owned = grown;
    memset(o->owned + o->nowned, 0, (size_t)n * sizeof *grown);
    for (int r = 0; r < n; r++) {
        pc_obs_owned *w = &o->owned[o->nowned++];
        w->kind = pc_strdup(PQgetvalue(res, r, 0));
        w->name = pc_strdup(PQgetvalue(res, r, 1));
        if (w->kind == NULL || w->name == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        int prc = parse_keys(PQgetvalue(res, r, 2), &w->managed_keys);
        if (prc == PC_ENOMEM) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (prc != 0) {
            rc = pc_error_set(err, PC_EINVAL,
                              "%s: pipectl.inventory row (%s, %s, %s) has managed_keys that are "
                              "not a JSON array of strings; fix or delete the row",
                              pg->where, pipeline, w->kind, w->name);
            goto done;
        }
    }
done:
    PQclear(res);
    return rc;
}

/* ---------- NocoDB's role: observe ---------- */

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

/* Connects as the role with its declared password (same server, database and options as the
 * DSN) and closes again: the only way to know a password works without reading pg_authid. */
static int check_login(pc_pg *pg, const pc_mf_nocodb *nc, pc_obs_role *r, pc_error *err)
{
    int rc = 0, why = 0;
    PGconn *c = NULL;
    const pc_pg_connect_opts o = {.timeout_s = pg->timeout_s,
                                  .application_name = "pipectl login check",
                                  .user = nc->role,
                                  .password = nc->role_password};
    if (pc_pg_connect_raw(&c, pg->dsn, &o, &why) != 0)
        return pc_error_set(err, PC_ENOMEM, "out of memory connecting to PostgreSQL");
    if (why == 0 && PQstatus(c) == CONNECTION_OK) {
        r->password = PC_PW_OK;
        goto done;
    }
    /* The server asked for the password and then refused the connection: the declared password
     * does not work (PQconnectionUsedPassword, whatever language the server's messages are in).
     * A refusal after a correct password (NOLOGIN, connection limits) reads the same; the plan
     * then sets the password again with the login, which is harmless. A refusal without asking
     * for a password is pg_hba's: that is reported with the server's text. */
    const char *text = PQerrorMessage(c);
    if (why == 0 &&
        (PQconnectionUsedPassword(c) || strstr(text, "password authentication failed") != NULL)) {
        r->password = PC_PW_FAILED;
        goto done;
    }
    r->login_error = pc_pg_clean_text(why != 0 && text[0] == '\0' ? "timeout expired" : text);
    if (r->login_error == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    PQfinish(c);
    return rc;
}

static int observe_role_tables(pc_pg *pg, const char *role, const char *arr, pc_obs_role *r,
                               pc_error *err)
{
    static const char sql[] =
        "SELECT n.nspname, c.relname, concat_ws(',', "
        "  CASE WHEN has_table_privilege(r.oid, c.oid, 'SELECT') THEN 'SELECT' END, "
        "  CASE WHEN has_table_privilege(r.oid, c.oid, 'INSERT') THEN 'INSERT' END, "
        "  CASE WHEN has_table_privilege(r.oid, c.oid, 'UPDATE') THEN 'UPDATE' END, "
        "  CASE WHEN has_table_privilege(r.oid, c.oid, 'DELETE') THEN 'DELETE' END) "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_roles r ON r.rolname = $1 "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition "
        "  AND n.nspname = ANY($2::text[]) "
        "ORDER BY 1, 2";
    PGresult *res = NULL;
    const char *params[2] = {role, arr};
    int rc = pg_exec(pg, sql, 2, params, "the table privilege query for NocoDB's role", &res, err);
    if (rc != 0)
        goto done;
    for (int i = 0; i < PQntuples(res); i++) {
        pc_obs_role_schema *rs = NULL;
        for (size_t k = 0; k < r->nschemas && rs == NULL; k++)
            if (strcmp(r->schemas[k].name, PQgetvalue(res, i, 0)) == 0)
                rs = &r->schemas[k];
        if (rs == NULL)
            continue;
        pc_obs_role_table *t = realloc(rs->tables, (rs->ntables + 1) * sizeof *t);
        if (t == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        rs->tables = t;
        t = &rs->tables[rs->ntables++];
        t->name = pc_strdup(PQgetvalue(res, i, 1));
        t->privileges = pc_strdup(PQgetvalue(res, i, 2));
        if (t->name == NULL || t->privileges == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
    }
done:
    PQclear(res);
    return rc;
}

/* pg_roles (readable by everyone), CONNECT, USAGE and the table privileges the role has in the
 * exposed schemas, the default privileges the connected user grants it there, and a login. */
static int observe_role(pc_pg *pg, const pc_mf_nocodb *nc, pc_observed *o, pc_error *err)
{
    static const char role_sql[] = "SELECT r.rolsuper, r.rolcanlogin, "
                                   "  has_database_privilege(r.oid, current_database(), 'CONNECT') "
                                   "FROM pg_catalog.pg_roles r WHERE r.rolname = $1";
    static const char schema_sql[] =
        "SELECT n.nspname, has_schema_privilege(r.oid, n.oid, 'USAGE'), "
        "  (SELECT string_agg(a.privilege_type, ',' ORDER BY "
        "     array_position(ARRAY['SELECT','INSERT','UPDATE','DELETE'], a.privilege_type)) "
        "   FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) a "
        "   WHERE d.defaclnamespace = n.oid AND d.defaclobjtype = 'r' "
        "     AND d.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = "
        "current_user) "
        "     AND a.grantee = r.oid "
        "     AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')) "
        "FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.rolname = $1 "
        "WHERE n.nspname = ANY($2::text[]) ORDER BY 1";
    PGresult *res = NULL;
    pc_obs_role *r = &o->role;
    char *arr = NULL;
    int rc = 0;
    const char *params[2] = {nc->role, NULL};
    r->observed = true;
    if ((r->name = pc_strdup(nc->role)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pg_exec(pg, role_sql, 1, params, "the role query for NocoDB's role (pg_roles)", &res, err);
    if (rc != 0 || PQntuples(res) == 0)
        goto done;
    r->exists = true;
    r->superuser = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    r->can_login = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    r->connect = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    PQclear(res);
    res = NULL;
    if (nc->nschemas > 0) {
        arr = text_array((const char *const *)nc->schemas, nc->nschemas);
        if (arr == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        params[1] = arr;
        rc = pg_exec(pg, schema_sql, 2, params, "the schema privilege query for NocoDB's role",
                     &res, err);
        if (rc != 0)
            goto done;
        int n = PQntuples(res);
        r->schemas = n > 0 ? calloc((size_t)n, sizeof *r->schemas) : NULL;
        if (n > 0 && r->schemas == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            pc_obs_role_schema *rs = &r->schemas[r->nschemas++];
            rs->name = pc_strdup(PQgetvalue(res, i, 0));
            rs->usage = strcmp(PQgetvalue(res, i, 1), "t") == 0;
            rs->default_privileges = pc_strdup(PQgetisnull(res, i, 2) ? "" : PQgetvalue(res, i, 2));
            if (rs->name == NULL || rs->default_privileges == NULL) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
        }
        if ((rc = observe_role_tables(pg, nc->role, arr, r, err)) != 0)
            goto done;
    }
    if (r->can_login && nc->role_password != NULL)
        rc = check_login(pg, nc, r, err);
done:
    PQclear(res);
    free(arr);
    return rc;
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
        rc = observe_inventory(pg, m->name, o, err);
    if (rc == 0)
        rc = observe_pgconn(pg, o, err);
    if (rc == 0 && m->nocodb.declared && m->nocodb.role != NULL)
        rc = observe_role(pg, &m->nocodb, o, err);
    if (rc != 0)
        goto done;
    o->pg_observed = true;
done:
    free(arr);
    return rc;
}

/* ---------- lock ---------- */

int pc_pg_lock(pc_pg *pg, const char *pipeline, pc_error *err)
{
    PGresult *res = NULL;
    char *what = pc_asprintf("pg_try_advisory_lock for pipeline '%s'", pipeline);
    const char *params[1] = {pipeline};
    int rc = 0;
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pg_exec(pg, "SELECT pg_try_advisory_lock(hashtext('pipectl:' || $1::text))", 1, params,
                 what, &res, err);
    if (rc != 0)
        goto done;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_ECONFLICT,
                          "another pipectl apply for pipeline '%s' holds the lock on %s; wait for "
                          "it to finish (see pg_stat_activity where application_name LIKE "
                          "'pipectl%%'), then re-run",
                          pipeline, pg->where);
done:
    free(what);
    PQclear(res);
    return rc;
}

int pc_pg_unlock(pc_pg *pg, const char *pipeline, pc_error *err)
{
    PGresult *res = NULL;
    char *what = pc_asprintf("pg_advisory_unlock for pipeline '%s'", pipeline);
    const char *params[1] = {pipeline};
    int rc = 0;
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pg_exec(pg, "SELECT pg_advisory_unlock(hashtext('pipectl:' || $1::text))", 1, params, what,
                 &res, err);
    if (rc != 0)
        goto done;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_EINVAL,
                          "the apply lock for pipeline '%s' was not held by this session on %s; "
                          "nothing to release",
                          pipeline, pg->where);
done:
    free(what);
    PQclear(res);
    return rc;
}

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

static bool empty(const char *s)
{
    return s == NULL || *s == '\0';
}

/* "schema"."table" */
static char *qualified(pc_pg *pg, const char *schema, const char *table)
{
    char *qs = quote_ident(pg, schema);
    char *qt = quote_ident(pg, table);
    char *r = (qs != NULL && qt != NULL) ? pc_asprintf("%s.%s", qs, qt) : NULL;
    free(qs);
    free(qt);
    return r;
}

/* "name" type [NOT NULL] */
static int column_def(pc_pg *pg, pc_buf *b, const pc_mf_column *c)
{
    char *qc = quote_ident(pg, c->name);
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
    if (empty(a->schema)) {
        rc = pc_error_set(err, PC_EINVAL, "create schema action without a schema name");
        goto done;
    }
    qs = quote_ident(pg, a->schema);
    sql = qs != NULL ? pc_asprintf("CREATE SCHEMA IF NOT EXISTS %s", qs) : NULL;
    what = pc_asprintf("CREATE SCHEMA %s", a->schema);
    if (sql == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pg_exec(pg, sql, 0, NULL, what, NULL, err);
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
    if (empty(a->schema) || empty(a->table)) {
        rc = pc_error_set(err, PC_EINVAL, "create table action without a schema or table name");
        goto done;
    }
    for (size_t i = 0; i < a->ncolumns; i++) {
        if (empty(a->columns[i].name)) {
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
        char *qc = quote_ident(pg, a->columns[i].name);
        int brc = qc == NULL ? -1 : pc_buf_printf(&b, "%s%s", first ? ", PRIMARY KEY (" : ", ", qc);
        free(qc);
        if (brc != 0)
            goto oom;
        first = false;
    }
    if ((!first && pc_buf_puts(&b, ")") != 0) || pc_buf_puts(&b, ")") != 0)
        goto oom;
    rc = pg_exec(pg, b.data, 0, NULL, what, NULL, err);
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
    if (empty(a->schema) || empty(a->table) || a->ncolumns < 1 || empty(a->columns[0].name)) {
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
    qc = quote_ident(pg, c->name);
    if (qt == NULL || qc == NULL || pc_buf_printf(&b, "ALTER TABLE %s ", qt) != 0)
        goto oom;
    int brc = 0;
    switch (a->kind) {
    case PC_ACT_COLUMN_ADD:
        brc = pc_buf_puts(&b, "ADD COLUMN ");
        if (brc == 0)
            brc = column_def(pg, &b, c);
        what = pc_asprintf("ALTER TABLE %s.%s ADD COLUMN %s %s%s", a->schema, a->table, c->name,
                           c->type, (!c->nullable || c->primary_key) ? " NOT NULL" : "");
        break;
    case PC_ACT_COLUMN_TYPE:
        brc = pc_buf_printf(&b, "ALTER COLUMN %s TYPE %s USING %s::%s", qc, c->type, qc, c->type);
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s TYPE %s", a->schema, a->table,
                           c->name, c->type);
        break;
    case PC_ACT_COLUMN_NULLABLE:
        brc = pc_buf_printf(&b, "ALTER COLUMN %s %s NOT NULL", qc, c->nullable ? "DROP" : "SET");
        what = pc_asprintf("ALTER TABLE %s.%s ALTER COLUMN %s %s NOT NULL", a->schema, a->table,
                           c->name, c->nullable ? "DROP" : "SET");
        break;
    case PC_ACT_COLUMN_DROP:
        brc = pc_buf_printf(&b, "DROP COLUMN %s", qc);
        what = pc_asprintf("ALTER TABLE %s.%s DROP COLUMN %s", a->schema, a->table, c->name);
        break;
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
    case PC_ACT_SCHEMA_CREATE:
    case PC_ACT_TABLE_CREATE:
    case PC_ACT_SETTING:
    case PC_ACT_NOTE:
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
    case PC_ACT_ROLE_GRANT:
    case PC_ACT_NC_BASE_CREATE:
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
    case PC_ACT_NC_META_SYNC:
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        rc = pc_error_set(err, PC_EINVAL, "not a column action: %s", a->object ? a->object : "?");
        goto done;
    }
    if (brc != 0 || what == NULL)
        goto oom;
    rc = pg_exec(pg, b.data, 0, NULL, what, NULL, err);
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
    if (empty(a->setting)) {
        rc = pc_error_set(err, PC_EINVAL, "setting action without a setting name");
        goto done;
    }
    qn = quote_ident(pg, a->setting);
    if (qn == NULL)
        goto oom;
    if (a->value != NULL) {
        qv = quote_literal(pg, a->value);
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
    rc = pg_exec(pg, sql, 0, NULL, what, NULL, err);
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

int pc_pg_apply(pc_pg *pg, const pc_action *a, pc_error *err)
{
    switch (a->kind) {
    case PC_ACT_SCHEMA_CREATE:
        return apply_schema(pg, a, err);
    case PC_ACT_TABLE_CREATE:
        return apply_table(pg, a, err);
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
        return apply_column(pg, a, err);
    case PC_ACT_SETTING:
        return apply_setting(pg, a, err);
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
    case PC_ACT_NOTE:
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
    case PC_ACT_ROLE_GRANT:
    case PC_ACT_NC_BASE_CREATE:
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
    case PC_ACT_NC_META_SYNC:
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        break;
    }
    return pc_error_set(err, PC_EINVAL,
                        "action on %s (kind %d) is not a PostgreSQL action; the PostgreSQL "
                        "adapter performs schema, table, column and setting actions only",
                        a->object != NULL ? a->object : "?", (int)a->kind);
}

/* ---------- NocoDB's role: apply ---------- */

/* Runs several statements as one implicit transaction (a simple-protocol query string). */
static int pg_exec_script(pc_pg *pg, const char *sql, const char *what, pc_error *err)
{
    PGresult *res = PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK))
        rc = pg_fail(pg, res, what, err);
    PQclear(res);
    return rc;
}

/* "SELECT,INSERT" -> "SELECT, INSERT" after checking every word is a privilege pipectl manages
 * (the words are pasted into SQL). NULL when one is not. */
static char *privilege_list(const char *p, bool *bad)
{
    static const char *const known[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "CONNECT"};
    pc_buf b = {0};
    *bad = false;
    while (p != NULL && *p != '\0') {
        size_t len = strcspn(p, ",");
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = strlen(known[i]) == len && strncmp(known[i], p, len) == 0;
        if (!ok || (b.len > 0 && pc_buf_puts(&b, ", ") != 0) || pc_buf_append(&b, p, len) != 0) {
            *bad = !ok;
            pc_buf_free(&b);
            return NULL;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (b.len == 0) {
        *bad = true;
        return NULL;
    }
    return pc_buf_detach(&b);
}

/* The managed table privileges not in want, e.g. want "SELECT" -> "INSERT, UPDATE, DELETE". */
static char *privilege_complement(const char *want)
{
    static const char *const managed[] = {"SELECT", "INSERT", "UPDATE", "DELETE"};
    pc_buf b = {0};
    for (size_t i = 0; i < 4; i++) {
        bool in = false;
        const char *p = want;
        while (*p != '\0' && !in) {
            size_t len = strcspn(p, ",");
            in = strlen(managed[i]) == len && strncmp(managed[i], p, len) == 0;
            p += len;
            if (*p == ',')
                p++;
        }
        if (!in &&
            ((b.len > 0 && pc_buf_puts(&b, ", ") != 0) || pc_buf_puts(&b, managed[i]) != 0)) {
            pc_buf_free(&b);
            return NULL;
        }
    }
    return pc_buf_detach(&b);
}

/* CREATE ROLE / ALTER ROLE with the password: libpq hashes it first (PQencryptPasswordConn,
 * the server's password_encryption), so the statement never holds the clear text. */
static int apply_role_login(pc_pg *pg, const pc_action *a, const char *password, pc_error *err)
{
    char *qr = NULL, *hash = NULL, *qh = NULL, *sql = NULL, *what = NULL;
    int rc = 0;
    bool create = a->kind == PC_ACT_ROLE_CREATE;
    if (password == NULL || password[0] == '\0') {
        rc = pc_error_set(err, PC_EINVAL,
                          "role %s: nocodb.role_password is empty; set it in the manifest (from "
                          "the environment) and re-run pipectl apply",
                          a->role);
        goto done;
    }
    char *h = PQencryptPasswordConn(pg->conn, password, a->role, NULL);
    if (h == NULL) {
        char *msg = pc_pg_clean_text(PQerrorMessage(pg->conn));
        rc = pc_error_set(err, PC_EUNAVAIL, "%s: cannot hash the password of role %s: %s",
                          pg->where, a->role, msg ? msg : "out of memory");
        free(msg);
        goto done;
    }
    hash = pc_strdup(h);
    PQfreemem(h);
    qr = quote_ident(pg, a->role);
    qh = hash != NULL ? quote_literal(pg, hash) : NULL;
    if (qr == NULL || qh == NULL)
        goto oom;
    sql = pc_asprintf(create ? "CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                               "NOREPLICATION PASSWORD %s"
                             : "ALTER ROLE %s LOGIN PASSWORD %s",
                      qr, qh);
    what =
        pc_asprintf("%s ROLE %s LOGIN PASSWORD (redacted)", create ? "CREATE" : "ALTER", a->role);
    if (sql == NULL || what == NULL)
        goto oom;
    rc = pg_exec(pg, sql, 0, NULL, what, NULL, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    if (hash != NULL)
        memset(hash, 0, strlen(hash));
    if (sql != NULL)
        memset(sql, 0, strlen(sql));
    free(hash);
    free(qr);
    free(qh);
    free(sql);
    free(what);
    return rc;
}

/* CONNECT on the database, or on one schema: USAGE, the privileges on every table, the same as
 * default privileges for tables the connected user creates later, and the other managed
 * privileges revoked (read_only). One transaction. */
static int apply_role_grant(pc_pg *pg, const pc_action *a, pc_error *err)
{
    char *qr = NULL, *qs = NULL, *privs = NULL, *rest = NULL, *what = NULL;
    pc_buf b = {0};
    bool bad = false;
    int rc = 0;
    qr = quote_ident(pg, a->role);
    privs = privilege_list(a->privileges, &bad);
    if (bad) {
        rc = pc_error_set(err, PC_EINVAL,
                          "grant to role %s: privileges '%s' are not ones pipectl "
                          "manages; run pipectl plan again",
                          a->role, a->privileges ? a->privileges : "");
        goto done;
    }
    if (qr == NULL || privs == NULL)
        goto oom;
    if (a->schema == NULL) {
        const char *db = a->database != NULL ? a->database : PQdb(pg->conn);
        qs = quote_ident(pg, db);
        what = pc_asprintf("GRANT CONNECT ON DATABASE %s TO %s", db, a->role);
        if (qs == NULL || what == NULL ||
            pc_buf_printf(&b, "GRANT CONNECT ON DATABASE %s TO %s", qs, qr) != 0)
            goto oom;
    } else {
        qs = quote_ident(pg, a->schema);
        rest = privilege_complement(a->privileges);
        what = pc_asprintf("GRANT USAGE ON SCHEMA %s and %s ON ALL TABLES IN SCHEMA %s TO %s "
                           "(and as default privileges)",
                           a->schema, privs, a->schema, a->role);
        if (qs == NULL || rest == NULL || what == NULL ||
            pc_buf_printf(&b,
                          "GRANT USAGE ON SCHEMA %s TO %s; "
                          "GRANT %s ON ALL TABLES IN SCHEMA %s TO %s; "
                          "ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT %s ON TABLES TO %s",
                          qs, qr, privs, qs, qr, qs, privs, qr) != 0)
            goto oom;
        if (rest[0] != '\0' &&
            pc_buf_printf(&b,
                          "; REVOKE %s ON ALL TABLES IN SCHEMA %s FROM %s; "
                          "ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE %s ON TABLES FROM %s",
                          rest, qs, qr, qs, rest, qr) != 0)
            goto oom;
    }
    rc = pg_exec_script(pg, b.data, what, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    pc_buf_free(&b);
    free(qr);
    free(qs);
    free(privs);
    free(rest);
    free(what);
    return rc;
}

int pc_pg_apply_role(pc_pg *pg, const pc_action *a, const char *password, pc_error *err)
{
    if (empty(a->role))
        return pc_error_set(err, PC_EINVAL, "role action on %s without a role name",
                            a->object != NULL ? a->object : "?");
    switch (a->kind) {
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
        return apply_role_login(pg, a, password, err);
    case PC_ACT_ROLE_GRANT:
        return apply_role_grant(pg, a, err);
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
    case PC_ACT_SCHEMA_CREATE:
    case PC_ACT_TABLE_CREATE:
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
    case PC_ACT_SETTING:
    case PC_ACT_NOTE:
    case PC_ACT_NC_BASE_CREATE:
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
    case PC_ACT_NC_META_SYNC:
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        break;
    }
    return pc_error_set(err, PC_EINVAL, "action on %s is not a role action",
                        a->object != NULL ? a->object : "?");
}

int pc_pg_reload(pc_pg *pg, pc_error *err)
{
    PGresult *res = NULL;
    int rc = pg_exec(pg, "SELECT pg_reload_conf()", 0, NULL, "SELECT pg_reload_conf()", &res, err);
    if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_EREFUSED,
                          "%s could not signal the postmaster to reload its configuration "
                          "(pg_reload_conf returned false); check the server log",
                          pg->where);
    PQclear(res);
    return rc;
}

/* ---------- inventory ---------- */

/* Creates pipectl.inventory when missing. Checks first: CREATE SCHEMA IF NOT EXISTS needs the
 * CREATE privilege on the database even when the schema exists. */
static int inventory_ensure(pc_pg *pg, pc_error *err)
{
    bool exists = false;
    int rc = 0;
    if (pg->inventory_ready)
        return 0;
    rc = inventory_exists(pg, &exists, err);
    if (rc != 0)
        return rc;
    if (!exists) {
        rc = pg_exec(pg, "CREATE SCHEMA IF NOT EXISTS pipectl", 0, NULL, "CREATE SCHEMA pipectl",
                     NULL, err);
        if (rc == 0)
            rc = pg_exec(pg,
                         "CREATE TABLE IF NOT EXISTS pipectl.inventory ("
                         "pipeline text NOT NULL, kind text NOT NULL, name text NOT NULL, "
                         "managed_keys jsonb NOT NULL DEFAULT '[]', "
                         "updated_at timestamptz NOT NULL DEFAULT now(), "
                         "PRIMARY KEY (pipeline, kind, name))",
                         0, NULL, "CREATE TABLE pipectl.inventory", NULL, err);
        if (rc != 0)
            return rc;
    }
    pg->inventory_ready = true;
    return 0;
}

static char *keys_json(const pc_kvlist *keys)
{
    json_t *arr = json_array();
    char *out = NULL;
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; keys != NULL && i < keys->n; i++)
        if (json_array_append_new(arr, json_string(keys->items[i].key)) != 0)
            goto done;
    out = json_dumps(arr, JSON_COMPACT);
done:
    json_decref(arr);
    return out;
}

int pc_pg_inventory_record(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           const pc_kvlist *managed_keys, pc_error *err)
{
    char *json = NULL;
    char *what = NULL;
    int rc = inventory_ensure(pg, err);
    if (rc != 0)
        goto done;
    json = keys_json(managed_keys);
    what = pc_asprintf("INSERT INTO pipectl.inventory (%s, %s, %s)", pipeline, kind, name);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[4] = {pipeline, kind, name, json};
    rc = pg_exec(pg,
                 "INSERT INTO pipectl.inventory (pipeline, kind, name, managed_keys, updated_at) "
                 "VALUES ($1, $2, $3, $4::jsonb, now()) "
                 "ON CONFLICT (pipeline, kind, name) DO UPDATE "
                 "SET managed_keys = EXCLUDED.managed_keys, updated_at = now()",
                 4, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

int pc_pg_inventory_forget(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           pc_error *err)
{
    char *what = NULL;
    bool exists = pg->inventory_ready;
    int rc = 0;
    if (!exists) {
        rc = inventory_exists(pg, &exists, err);
        if (rc != 0 || !exists)
            goto done; /* nothing recorded anywhere: nothing to forget */
        pg->inventory_ready = true;
    }
    what = pc_asprintf("DELETE FROM pipectl.inventory (%s, %s, %s)", pipeline, kind, name);
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, name};
    rc =
        pg_exec(pg, "DELETE FROM pipectl.inventory WHERE pipeline = $1 AND kind = $2 AND name = $3",
                3, params, what, NULL, err);
done:
    free(what);
    return rc;
}

/* names as a JSON array of strings (a parameter for jsonb_array_elements_text). */
static char *names_json(const char *const *names, size_t n)
{
    json_t *arr = json_array();
    char *out = NULL;
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (names[i] == NULL || json_array_append_new(arr, json_string(names[i])) != 0)
            goto done;
    out = json_dumps(arr, JSON_COMPACT);
done:
    json_decref(arr);
    return out;
}

int pc_pg_inventory_record_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err)
{
    char *json = NULL, *what = NULL;
    int rc = n == 0 ? 0 : inventory_ensure(pg, err);
    if (rc != 0 || n == 0)
        goto done;
    json = names_json(names, n);
    what = pc_asprintf("INSERT INTO pipectl.inventory (%s, %s, %zu names)", pipeline, kind, n);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, json};
    rc = pg_exec(pg,
                 "INSERT INTO pipectl.inventory (pipeline, kind, name, managed_keys, updated_at) "
                 "SELECT $1, $2, x, '[]'::jsonb, now() FROM jsonb_array_elements_text($3::jsonb) "
                 "AS x ON CONFLICT (pipeline, kind, name) DO UPDATE SET updated_at = now()",
                 3, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

int pc_pg_inventory_forget_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err)
{
    char *json = NULL, *what = NULL;
    bool exists = pg->inventory_ready;
    int rc = 0;
    if (n == 0)
        return 0;
    if (!exists) {
        rc = inventory_exists(pg, &exists, err);
        if (rc != 0 || !exists)
            goto done; /* nothing recorded anywhere: nothing to forget */
        pg->inventory_ready = true;
    }
    json = names_json(names, n);
    what = pc_asprintf("DELETE FROM pipectl.inventory (%s, %s, %zu names)", pipeline, kind, n);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, json};
    rc = pg_exec(pg,
                 "DELETE FROM pipectl.inventory WHERE pipeline = $1 AND kind = $2 AND name IN "
                 "(SELECT jsonb_array_elements_text($3::jsonb))",
                 3, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

/* ---------- sink offsets (consumer lag for status) ---------- */

int pc_pg_sink_offsets(pc_pg *pg, const char *sink, const char *topic, int64_t **next,
                       int npartitions, pc_error *err)
{
    int rc = 0;
    PGresult *res = NULL;
    int64_t *out = NULL;

    *next = NULL;
    if (npartitions < 0)
        npartitions = 0;
    out = malloc((npartitions > 0 ? (size_t)npartitions : 1) * sizeof *out);
    if (out == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading the offsets of sink '%s'", sink);
        goto done;
    }
    for (int i = 0; i < npartitions; i++)
        out[i] = -1;
    rc = pg_exec(pg, "SELECT to_regclass('pipectl.sink_offsets') IS NOT NULL", 0, NULL,
                 "the offsets table lookup (to_regclass('pipectl.sink_offsets'))", &res, err);
    if (rc != 0)
        goto done;
    bool exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (exists) {
        const char *params[2] = {sink, topic};
        rc = pg_exec(pg,
                     "SELECT partition, next_offset FROM pipectl.sink_offsets "
                     "WHERE sink = $1 AND topic = $2",
                     2, params, "the query of pipectl.sink_offsets", &res, err);
        if (rc != 0)
            goto done;
        for (int r = 0; r < PQntuples(res); r++) {
            long part = strtol(PQgetvalue(res, r, 0), NULL, 10);
            long long off = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            if (part >= 0 && part < npartitions)
                out[part] = (int64_t)off;
        }
    }
    *next = out;
    out = NULL;
done:
    PQclear(res);
    free(out);
    return rc;
}
