/* role.c: NocoDB's PostgreSQL role (nocodb.role): its observation (existence, login, password,
 * privileges on the exposed schemas) and the actions that create, alter and grant it. */
#include "postgres_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int rc =
        pc_pg__exec(pg, sql, 2, params, "the table privilege query for NocoDB's role", &res, err);
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
int pc_pg__observe_role(pc_pg *pg, const pc_mf_nocodb *nc, pc_observed *o, pc_error *err)
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
    rc = pc_pg__exec(pg, role_sql, 1, params, "the role query for NocoDB's role (pg_roles)", &res,
                     err);
    if (rc != 0 || PQntuples(res) == 0)
        goto done;
    r->exists = true;
    r->superuser = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    r->can_login = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    r->connect = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    PQclear(res);
    res = NULL;
    if (nc->nschemas > 0) {
        arr = pc_pg__text_array((const char *const *)nc->schemas, nc->nschemas);
        if (arr == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        params[1] = arr;
        rc = pc_pg__exec(pg, schema_sql, 2, params, "the schema privilege query for NocoDB's role",
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

/* ---------- NocoDB's role: apply ---------- */

/* Runs several statements as one implicit transaction (a simple-protocol query string). */
static int pg_exec_script(pc_pg *pg, const char *sql, const char *what, pc_error *err)
{
    PGresult *res = PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK))
        rc = pc_pg__fail(pg, res, what, err);
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
    qr = pc_pg__quote_ident(pg, a->role);
    qh = hash != NULL ? pc_pg__quote_literal(pg, hash) : NULL;
    if (qr != NULL && qh != NULL)
        sql = pc_asprintf(create ? "CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                   "NOREPLICATION PASSWORD %s"
                                 : "ALTER ROLE %s LOGIN PASSWORD %s",
                          qr, qh);
    what =
        pc_asprintf("%s ROLE %s LOGIN PASSWORD (redacted)", create ? "CREATE" : "ALTER", a->role);
    rc = pc_pg__exec_built(pg, sql, what, err);
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
    qr = pc_pg__quote_ident(pg, a->role);
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
        qs = pc_pg__quote_ident(pg, db);
        what = pc_asprintf("GRANT CONNECT ON DATABASE %s TO %s", db, a->role);
        if (qs == NULL || what == NULL ||
            pc_buf_printf(&b, "GRANT CONNECT ON DATABASE %s TO %s", qs, qr) != 0)
            goto oom;
    } else {
        qs = pc_pg__quote_ident(pg, a->schema);
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
    bool login = a->kind == PC_ACT_ROLE_CREATE || a->kind == PC_ACT_ROLE_ALTER;
    if (!login && a->kind != PC_ACT_ROLE_GRANT) {
        /* another kind's action (a routing bug: users never see it) */
        const char *sys = pc_action_system_name(pc_action_system_of(a->kind));
        return pc_error_set(err, PC_EINVAL, "%s %s (system %s) is not an action on NocoDB's role",
                            pc_action_noun(a->kind), a->object != NULL ? a->object : "?",
                            *sys ? sys : "none");
    }
    if (pc_pg__empty(a->role))
        return pc_error_set(err, PC_EINVAL, "role action on %s without a role name",
                            a->object != NULL ? a->object : "?");
    return login ? apply_role_login(pg, a, password, err) : apply_role_grant(pg, a, err);
}
