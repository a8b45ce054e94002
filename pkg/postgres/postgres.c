/* postgres.c: the Postgres adapter over libpq.
 *
 * Observation is a handful of catalog queries per call (all tables and columns of the declared
 * schemas come back in one query, so 200 tables cost one round trip, not 200). Each action is one
 * DDL statement, run on its own so it commits or fails alone; ALTER SYSTEM cannot run inside a
 * transaction block anyway. Every identifier goes through PQescapeIdentifier and every value is a
 * query parameter or a PQescapeLiteral literal. The session carries lock_timeout and
 * statement_timeout so an apply stuck behind someone else's lock fails instead of hanging.
 * Nothing here decides what to change: pkg/plan does.
 *
 * This file holds the session (open, free, the DSN checks) and the translation of a failed
 * statement into a message for the user; the rest of the adapter is split by job: connect.c (the
 * libpq connection), observe.c (observation), ddl.c (DDL and ALTER SYSTEM actions), role.c
 * (NocoDB's role), inventory.c (inventory, sink offsets, the apply lock). */
#include "postgres_int.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pc_pg__or_default(const char *s, const char *def)
{
    return (s != NULL && *s != '\0') ? s : def;
}

bool pc_pg__empty(const char *s)
{
    return s == NULL || *s == '\0';
}

/* Same as PQescapeIdentifier/PQescapeLiteral, but the copy belongs to malloc so callers free()
 * it like every other string here. */
char *pc_pg__quote_ident(pc_pg *pg, const char *s)
{
    char *q = PQescapeIdentifier(pg->conn, s, strlen(s));
    char *r = pc_strdup(q);
    PQfreemem(q);
    return r;
}

char *pc_pg__quote_literal(pc_pg *pg, const char *s)
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
int pc_pg__fail(pc_pg *pg, const PGresult *res, const char *what, pc_error *err)
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
    p = pc_pg_clean_text(pc_pg__or_default(primary, "unknown error"));
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
int pc_pg__exec(pc_pg *pg, const char *sql, int nparams, const char *const *params,
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
    int rc = pc_pg__fail(pg, res, what, err);
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
    pg->where = pc_asprintf("PostgreSQL at %s:%s", pc_pg__or_default(PQhost(pg->conn), "localhost"),
                            pc_pg__or_default(PQport(pg->conn), "5432"));
    pg->dsn = pc_strdup(dsn);
    pg->timeout_s = co.timeout_s;
    if (pg->where == NULL || pg->dsn == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pc_pg__exec(pg, "SET lock_timeout = '" PC_PG_LOCK_TIMEOUT "'", 0, NULL, "SET lock_timeout",
                     NULL, err);
    if (rc == 0)
        rc = pc_pg__exec(pg, "SET statement_timeout = '" PC_PG_STATEMENT_TIMEOUT "'", 0, NULL,
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
