/* plan_nocodb.c: NocoDB's Postgres role and NocoDB itself, planned from the manifest's nocodb
 * block and what was observed. Pure: no I/O.
 *
 * The role: created with LOGIN and the manifest's password (never SUPERUSER), its password reset
 * when a login with it fails, CONNECT on the database, USAGE on each exposed schema, SELECT (or
 * SELECT, INSERT, UPDATE, DELETE when read_only is false) on every table of those schemas and
 * the same as default privileges for tables created later. pipectl refuses to let NocoDB connect
 * as the DSN's user or as a superuser.
 *
 * NocoDB: the base titled nocodb.base (created when missing), one source per exposed schema
 * with the alias "<pipeline>_<schema>" (found by alias), updated when its connection drifted or
 * the role's password changes, synced (meta sync) when a declared table or column is missing
 * from what NocoDB sees or this plan changes tables of the schema, and deleted (only with
 * --allow-delete) when pipectl made it and the schema is no longer exposed. NocoDB refuses API
 * tokens for meta sync, so with token-only credentials a needed sync is a refused action that
 * says to add nocodb.email and nocodb.password. */
#include "plan.h"
#include "plan_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIVS_RO "SELECT"
#define PRIVS_RW "SELECT,INSERT,UPDATE,DELETE"
/* at most this many per-table lines in a grant action; the rest are counted */
#define MAX_TABLE_CHANGES 10
#define OOM PC_ENOMEM

typedef struct nc_ctx {
    const pc_manifest *m;
    const pc_observed *o;
    const pc_plan_opts *opts;
    plan_alist *main;
    const plan_alist *destroy;
    bool role_ok;          /* sources may be created/updated with the role */
    char *role_reason;     /* why not, when !role_ok */
    bool password_changes; /* this plan creates the role or resets its password */
} nc_ctx;

char *pc_plan_nc_alias(const char *pipeline, const char *schema)
{
    return pc_asprintf("%s_%s", pipeline ? pipeline : "", schema ? schema : "");
}

static const pc_obs_role_schema *find_role_schema(const pc_obs_role *r, const char *name)
{
    return plan_find_named(r->schemas, r->nschemas, sizeof *r->schemas,
                           offsetof(pc_obs_role_schema, name), name);
}

static const pc_obs_nc_source *find_source(const pc_obs_nocodb *n, const char *alias)
{
    for (size_t i = 0; i < n->nsources; i++)
        if (!n->sources[i].is_meta && pc_streq(n->sources[i].alias, alias))
            return &n->sources[i];
    return NULL;
}

static const pc_obs_nc_table *find_nc_table(const pc_obs_nc_source *s, const char *name)
{
    return plan_find_named(s->tables, s->ntables, sizeof *s->tables,
                           offsetof(pc_obs_nc_table, name), name);
}

static bool has_column(const pc_obs_nc_table *t, const char *name)
{
    return plan_find_named(t->columns, t->ncolumns, sizeof *t->columns, 0, name) != NULL;
}

/* Does an action of kind k create or alter a table, so that NocoDB must sync its metadata to
 * see the change? Exhaustive on purpose: a new kind that changes a table's columns must answer
 * here, or NocoDB silently keeps showing the old columns, so the compiler asks. */
static bool alters_tables(pc_action_kind k)
{
    switch (k) {
    case PC_ACT_TABLE_CREATE:
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
        return true;
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
    case PC_ACT_SCHEMA_CREATE:
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
        return false;
    }
    return false;
}

/* Does this plan create or alter a table of schema (an action that will be performed)? */
static bool touches_list(const plan_alist *l, const char *schema)
{
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        const pc_action *a = &l->items[i];
        if (a->op != PC_OP_REFUSED && alters_tables(a->kind) && pc_streq(a->schema, schema))
            return true;
    }
    return false;
}

static bool plan_touches(const nc_ctx *c, const char *schema)
{
    return touches_list(c->main, schema) || touches_list(c->destroy, schema);
}

/* ---------- the role ---------- */

static int role_problem(nc_ctx *c)
{
    const pc_mf_nocodb *nc = &c->m->nocodb;
    const pc_obs_role *r = &c->o->role;
    c->role_ok = false;
    if (nc->role == NULL)
        c->role_reason = pc_strdup("nocodb.role is not set: declare the PostgreSQL role NocoDB "
                                   "connects as (nocodb.role, with nocodb.role_password from the "
                                   "environment); pipectl never gives NocoDB the user of "
                                   "postgres.dsn");
    else if (nc->role_password == NULL || nc->role_password[0] == '\0')
        c->role_reason = pc_asprintf("nocodb.role_password is %s: NocoDB needs the password "
                                     "of role '%s'; set it from the environment, e.g. "
                                     "role_password: ${NOCODB_DB_PASSWORD}",
                                     nc->role_password == NULL ? "not set" : "empty", nc->role);
    else if (c->o->pgconn.user != NULL && strcmp(nc->role, c->o->pgconn.user) == 0)
        c->role_reason = pc_asprintf("nocodb.role '%s' is the user of postgres.dsn; give NocoDB a "
                                     "role of its own (pipectl creates it with only the grants "
                                     "NocoDB needs)",
                                     nc->role);
    else if (r->observed && r->exists && r->superuser)
        c->role_reason = pc_asprintf("role '%s' is a superuser; pipectl never lets NocoDB connect "
                                     "as a superuser: run ALTER ROLE %s NOSUPERUSER yourself or "
                                     "declare another nocodb.role",
                                     nc->role, nc->role);
    else {
        c->role_ok = true;
        return 0;
    }
    return c->role_reason == NULL ? OOM : 0;
}

static int grant_changes_tables(pc_action *a, const char *schema, const pc_obs_role_schema *rs,
                                const char *want)
{
    size_t shown = 0, more = 0;
    for (size_t i = 0; rs != NULL && i < rs->ntables; i++) {
        const pc_obs_role_table *t = &rs->tables[i];
        if (pc_streq(t->privileges, want))
            continue;
        if (shown == MAX_TABLE_CHANGES) {
            more++;
            continue;
        }
        char *key = pc_asprintf("table %s.%s", schema, t->name ? t->name : "?");
        const char *from =
            t->privileges != NULL && t->privileges[0] != '\0' ? t->privileges : "(none)";
        int rc = key == NULL ? OOM : plan_add_change(a, key, from, want);
        free(key);
        if (rc != 0)
            return rc;
        shown++;
    }
    if (more > 0) {
        char *from = pc_asprintf("%zu more tables differ", more);
        int rc = from == NULL ? OOM : plan_add_change(a, "tables", from, want);
        free(from);
        return rc;
    }
    return 0;
}

static int plan_grants(nc_ctx *c)
{
    const pc_mf_nocodb *nc = &c->m->nocodb;
    const pc_obs_role *r = &c->o->role;
    const char *want = nc->read_only ? PRIVS_RO : PRIVS_RW;
    pc_op op = r->exists ? PC_OP_CHANGE : PC_OP_CREATE;
    const char *db = c->o->pgconn.database ? c->o->pgconn.database : "?";
    char *obj = NULL;
    int rc = 0;
    pc_action tmp = {0};

    if (!r->exists || !r->connect) {
        obj = pc_asprintf("%s on database %s", nc->role, db);
        pc_action *a =
            obj ? plan_alist_push(c->main, op, PC_ACT_ROLE_GRANT, "postgres", obj) : NULL;
        if (a == NULL || plan_set_str(&a->role, nc->role) != 0 ||
            plan_set_str(&a->privileges, "CONNECT") != 0 ||
            plan_set_str(&a->database, c->o->pgconn.database) != 0 ||
            plan_add_change(a, "connect", r->exists ? "no" : NULL, "yes") != 0) {
            rc = OOM;
            goto done;
        }
        free(obj);
        obj = NULL;
    }
    for (size_t i = 0; i < nc->nschemas; i++) {
        const char *s = nc->schemas[i];
        const pc_obs_role_schema *rs = r->exists ? find_role_schema(r, s) : NULL;
        pc_plan_action_clear(&tmp);
        if ((rs == NULL || !rs->usage) &&
            plan_add_change(&tmp, "usage", r->exists && rs != NULL ? "no" : NULL, "yes") != 0) {
            rc = OOM;
            goto done;
        }
        if ((rc = grant_changes_tables(&tmp, s, rs, want)) != 0)
            goto done;
        const char *dp = rs != NULL ? rs->default_privileges : NULL;
        if (!pc_streq(dp, want) &&
            plan_add_change(&tmp, "default privileges on new tables",
                            dp != NULL && dp[0] != '\0' ? dp : (r->exists ? "(none)" : NULL),
                            want) != 0) {
            rc = OOM;
            goto done;
        }
        if (tmp.nchanges == 0)
            continue;
        obj = pc_asprintf("%s on schema %s", nc->role, s);
        pc_action *a =
            obj ? plan_alist_push(c->main, op, PC_ACT_ROLE_GRANT, "postgres", obj) : NULL;
        if (a == NULL || plan_set_str(&a->role, nc->role) != 0 ||
            plan_set_str(&a->privileges, want) != 0 || plan_set_str(&a->schema, s) != 0) {
            rc = OOM;
            goto done;
        }
        plan_take_changes(a, &tmp);
        free(obj);
        obj = NULL;
    }
done:
    pc_plan_action_clear(&tmp);
    free(obj);
    return rc;
}

static int plan_role(nc_ctx *c)
{
    const pc_mf_nocodb *nc = &c->m->nocodb;
    const pc_obs_role *r = &c->o->role;
    int rc = 0;
    if (!c->role_ok) {
        if (nc->role == NULL)
            return 0; /* the source actions carry the reason */
        pc_action *a = plan_alist_push(c->main, PC_OP_REFUSED,
                                       r->exists ? PC_ACT_ROLE_ALTER : PC_ACT_ROLE_CREATE,
                                       "postgres", nc->role);
        if (a == NULL || plan_set_str(&a->role, nc->role) != 0 ||
            plan_set_reason(a, pc_strdup(c->role_reason)) != 0)
            return OOM;
        return 0;
    }
    if (!r->exists) {
        pc_action *a =
            plan_alist_push(c->main, PC_OP_CREATE, PC_ACT_ROLE_CREATE, "postgres", nc->role);
        if (a == NULL || plan_set_str(&a->role, nc->role) != 0 ||
            plan_add_change(a, "login", NULL, "true") != 0 ||
            plan_add_change(a, "superuser", NULL, "false") != 0 ||
            plan_add_change(a, "password", NULL, PC_PLAN_PASSWORD_SHOWN) != 0)
            return OOM;
        c->password_changes = true;
    } else {
        pc_action tmp = {0};
        if (!r->can_login && plan_add_change(&tmp, "login", "false", "true") != 0)
            rc = OOM;
        if (rc == 0 && r->password == PC_PW_FAILED &&
            plan_add_change(&tmp, "password", "(rejected by PostgreSQL)", PC_PLAN_PASSWORD_SHOWN) !=
                0)
            rc = OOM;
        if (rc == 0 && tmp.nchanges > 0) {
            pc_action *a =
                plan_alist_push(c->main, PC_OP_CHANGE, PC_ACT_ROLE_ALTER, "postgres", nc->role);
            if (a == NULL || plan_set_str(&a->role, nc->role) != 0) {
                rc = OOM;
            } else {
                plan_take_changes(a, &tmp);
                /* a role that could not log in is given the password again with LOGIN */
                c->password_changes = true;
            }
        }
        pc_plan_action_clear(&tmp);
        if (rc != 0)
            return rc;
        if (r->login_error != NULL) {
            pc_action *a =
                plan_alist_push(c->main, PC_OP_CHANGE, PC_ACT_NOTE, "postgres", nc->role);
            if (a == NULL ||
                plan_set_reason(a, pc_asprintf("logging in as role '%s' failed: %s; NocoDB will "
                                               "fail the same way until pg_hba.conf lets the role "
                                               "in",
                                               nc->role, r->login_error)) != 0)
                return OOM;
        }
    }
    return plan_grants(c);
}

/* ---------- NocoDB ---------- */

static const char *nc_host(const nc_ctx *c)
{
    const char *h = c->m->nocodb.pg_host ? c->m->nocodb.pg_host : c->o->pgconn.host;
    return h == NULL || h[0] == '/' ? "localhost" : h;
}

static int nc_port(const nc_ctx *c)
{
    if (c->m->nocodb.pg_port > 0)
        return c->m->nocodb.pg_port;
    return c->o->pgconn.port > 0 ? c->o->pgconn.port : 5432;
}

static int source_payload(nc_ctx *c, pc_action *a, const char *alias, const char *schema)
{
    const pc_obs_nocodb *n = &c->o->nocodb;
    if (plan_set_str(&a->base, c->m->nocodb.base) != 0 || plan_set_str(&a->base_id, n->base_id) ||
        plan_set_str(&a->alias, alias) != 0 || plan_set_str(&a->schema, schema) != 0 ||
        plan_set_str(&a->host, nc_host(c)) != 0 ||
        plan_set_str(&a->database, c->o->pgconn.database) != 0 ||
        plan_set_str(&a->role, c->m->nocodb.role) != 0)
        return OOM;
    a->port = nc_port(c);
    return 0;
}

static int source_create(nc_ctx *c, const char *alias, const char *schema)
{
    pc_action *a = plan_alist_push(c->main, c->role_ok ? PC_OP_CREATE : PC_OP_REFUSED,
                                   PC_ACT_NC_SOURCE_CREATE, "nocodb", alias);
    char *conn = pc_asprintf("%s:%d/%s as %s", nc_host(c), nc_port(c),
                             c->o->pgconn.database ? c->o->pgconn.database : "?",
                             c->m->nocodb.role ? c->m->nocodb.role : "(no role)");
    int rc = 0;
    if (a == NULL || conn == NULL || source_payload(c, a, alias, schema) != 0 ||
        plan_add_change(a, "schema", NULL, schema) != 0 ||
        plan_add_change(a, "connection", NULL, conn) != 0 ||
        plan_add_change(a, "password", NULL, PC_PLAN_PASSWORD_SHOWN) != 0)
        rc = OOM;
    else if (!c->role_ok)
        rc = plan_set_reason(a, pc_strdup(c->role_reason));
    free(conn);
    return rc;
}

static int source_update(nc_ctx *c, const pc_obs_nc_source *src, const char *alias,
                         const char *schema)
{
    pc_action tmp = {0};
    int rc = 0;
    const char *host = nc_host(c);
    const char *db = c->o->pgconn.database;
    const char *user = c->m->nocodb.role;
    if (src->host != NULL && !pc_streq(src->host, host))
        rc = plan_add_change(&tmp, "host", src->host, host);
    if (rc == 0 && src->port > 0 && src->port != nc_port(c))
        rc = plan_add_change_int(&tmp, "port", src->port, nc_port(c));
    if (rc == 0 && src->database != NULL && db != NULL && !pc_streq(src->database, db))
        rc = plan_add_change(&tmp, "database", src->database, db);
    if (rc == 0 && src->user != NULL && user != NULL && !pc_streq(src->user, user))
        rc = plan_add_change(&tmp, "user", src->user, user);
    if (rc == 0 && src->schema != NULL && !pc_streq(src->schema, schema))
        rc = plan_add_change(&tmp, "schema", src->schema, schema);
    if (rc == 0 && c->password_changes)
        rc = plan_add_change(&tmp, "password", "(the role's old password)", PC_PLAN_PASSWORD_SHOWN);
    if (rc != 0 || tmp.nchanges == 0)
        goto done;
    pc_action *a = plan_alist_push(c->main, c->role_ok ? PC_OP_CHANGE : PC_OP_REFUSED,
                                   PC_ACT_NC_SOURCE_UPDATE, "nocodb", alias);
    if (a == NULL || source_payload(c, a, alias, schema) != 0 ||
        plan_set_str(&a->source_id, src->id) != 0) {
        rc = OOM;
        goto done;
    }
    plan_take_changes(a, &tmp);
    if (!c->role_ok)
        rc = plan_set_reason(a, pc_strdup(c->role_reason));
done:
    pc_plan_action_clear(&tmp);
    return rc;
}

/* What NocoDB lacks of the declared tables of schema, as "s.t, s.t.c" (NULL when nothing). */
static int missing_in_nocodb(const pc_manifest *m, const pc_obs_nc_source *src, const char *schema,
                             char **out)
{
    pc_buf b = {0};
    *out = NULL;
    for (size_t i = 0; i < m->nschemas; i++) {
        const pc_mf_schema *s = &m->schemas[i];
        if (!pc_streq(s->name, schema))
            continue;
        for (size_t j = 0; j < s->ntables; j++) {
            const pc_mf_table *t = &s->tables[j];
            const pc_obs_nc_table *nt = find_nc_table(src, t->name);
            if (nt == NULL) {
                if (pc_buf_printf(&b, "%s%s.%s", b.len ? ", " : "", schema, t->name) != 0)
                    goto oom;
                continue;
            }
            for (size_t k = 0; k < t->ncolumns; k++)
                if (!has_column(nt, t->columns[k].name) &&
                    pc_buf_printf(&b, "%s%s.%s.%s", b.len ? ", " : "", schema, t->name,
                                  t->columns[k].name) != 0)
                    goto oom;
        }
    }
    if (b.len > 0)
        *out = pc_buf_detach(&b);
    return 0;
oom:
    pc_buf_free(&b);
    return OOM;
}

static int meta_sync(nc_ctx *c, plan_alist *syncs, const pc_obs_nc_source *src, const char *alias,
                     const char *schema)
{
    char *missing = NULL;
    char *reason = NULL;
    int rc = 0;
    if (src->tables_known && (rc = missing_in_nocodb(c->m, src, schema, &missing)) != 0)
        return rc;
    if (missing != NULL)
        reason = pc_asprintf("NocoDB does not show %s yet", missing);
    else if (plan_touches(c, schema))
        reason = pc_asprintf("this plan changes tables of schema %s", schema);
    else
        goto done;
    /* NocoDB refuses API tokens for meta sync: it needs a signed-in user */
    bool signin = c->m->nocodb.email != NULL && c->m->nocodb.password != NULL;
    if (reason != NULL && !signin) {
        char *r = pc_asprintf("%s, and NocoDB's meta sync needs a signed-in user (NocoDB refuses "
                              "API tokens for it): add nocodb.email and nocodb.password (from the "
                              "environment), or sync the source in NocoDB's UI",
                              reason);
        free(reason);
        reason = r;
    }
    pc_action *a = plan_alist_push(syncs, signin ? PC_OP_CHANGE : PC_OP_REFUSED,
                                   PC_ACT_NC_META_SYNC, "nocodb", alias);
    if (reason == NULL || a == NULL || plan_set_str(&a->base, c->m->nocodb.base) != 0 ||
        plan_set_str(&a->base_id, c->o->nocodb.base_id) != 0 ||
        plan_set_str(&a->source_id, src->id) != 0 || plan_set_str(&a->alias, alias) != 0 ||
        plan_set_str(&a->schema, schema) != 0) {
        rc = OOM;
        goto done;
    }
    a->reason = reason;
    reason = NULL;
done:
    free(missing);
    free(reason);
    return rc;
}

static int src_cmp(const void *x, const void *y)
{
    const pc_obs_nc_source *a = *(const pc_obs_nc_source *const *)x;
    const pc_obs_nc_source *b = *(const pc_obs_nc_source *const *)y;
    return plan_name_cmp(a->alias, b->alias);
}

/* Sources pipectl made for this pipeline whose schema is no longer exposed. pipectl names the
 * source of schema S "<pipeline>_S", so a source is this pipeline's only when its alias is
 * exactly that for the schema it reads: the prefix alone would claim pipeline "users_eu"'s
 * source "users_eu_raw" for pipeline "users". A source whose schema NocoDB does not say is never
 * deleted. */
static int plan_source_deletes(nc_ctx *c, plan_alist *deletes)
{
    const pc_obs_nocodb *n = &c->o->nocodb;
    const pc_obs_nc_source **list = NULL;
    size_t k = 0;
    int rc = 0;
    if ((list = calloc(n->nsources + 1, sizeof *list)) == NULL) {
        rc = OOM;
        goto done;
    }
    for (size_t i = 0; i < n->nsources; i++) {
        const pc_obs_nc_source *s = &n->sources[i];
        if (s->is_meta || s->alias == NULL || s->schema == NULL)
            continue;
        char *own = pc_plan_nc_alias(c->m->name, s->schema);
        if (own == NULL) {
            rc = OOM;
            goto done;
        }
        bool ours = strcmp(own, s->alias) == 0;
        free(own);
        if (!ours)
            continue;
        bool declared = false;
        for (size_t j = 0; j < c->m->nocodb.nschemas && !declared; j++) {
            char *alias = pc_plan_nc_alias(c->m->name, c->m->nocodb.schemas[j]);
            if (alias == NULL) {
                rc = OOM;
                goto done;
            }
            declared = strcmp(alias, s->alias) == 0;
            free(alias);
        }
        if (!declared)
            list[k++] = s;
    }
    qsort(list, k, sizeof *list, src_cmp);
    for (size_t i = 0; i < k; i++) {
        bool allow = c->opts->allow_delete;
        pc_action *a = plan_alist_push(deletes, allow ? PC_OP_DELETE : PC_OP_REFUSED,
                                       PC_ACT_NC_SOURCE_DELETE, "nocodb", list[i]->alias);
        if (a == NULL || plan_set_str(&a->base, c->m->nocodb.base) != 0 ||
            plan_set_str(&a->base_id, n->base_id) != 0 ||
            plan_set_str(&a->source_id, list[i]->id) != 0 ||
            plan_set_str(&a->alias, list[i]->alias) != 0 ||
            plan_set_str(&a->schema, list[i]->schema) != 0) {
            rc = OOM;
            goto done;
        }
        if (!allow &&
            plan_set_reason(a, pc_asprintf("NocoDB source '%s' was made by pipectl for a schema "
                                           "the manifest no longer exposes; deleting it removes "
                                           "its views and needs --allow-delete",
                                           list[i]->alias)) != 0) {
            rc = OOM;
            goto done;
        }
    }
done:
    free(list);
    return rc;
}

static int plan_nc(nc_ctx *c, plan_alist *syncs, plan_alist *deletes)
{
    const pc_mf_nocodb *nc = &c->m->nocodb;
    const pc_obs_nocodb *n = &c->o->nocodb;
    int rc = 0;
    char *alias = NULL;
    if (n->base_id == NULL) {
        pc_action *a =
            plan_alist_push(c->main, PC_OP_CREATE, PC_ACT_NC_BASE_CREATE, "nocodb", nc->base);
        if (a == NULL || plan_set_str(&a->base, nc->base) != 0)
            return OOM;
    }
    for (size_t i = 0; i < nc->nschemas; i++) {
        const char *s = nc->schemas[i];
        alias = pc_plan_nc_alias(c->m->name, s);
        if (alias == NULL)
            return OOM;
        const pc_obs_nc_source *src = n->base_id != NULL ? find_source(n, alias) : NULL;
        if (src == NULL)
            rc = source_create(c, alias, s);
        else if ((rc = source_update(c, src, alias, s)) == 0)
            rc = meta_sync(c, syncs, src, alias, s);
        free(alias);
        alias = NULL;
        if (rc != 0)
            return rc;
    }
    return n->base_id != NULL ? plan_source_deletes(c, deletes) : 0;
}

int plan_nocodb(const pc_manifest *m, const pc_observed *o, const pc_plan_opts *opts,
                plan_alist *main, const plan_alist *destroy, plan_alist *syncs, plan_alist *deletes)
{
    nc_ctx c = {.m = m, .o = o, .opts = opts, .main = main, .destroy = destroy};
    int rc = 0;
    if (!m->nocodb.declared)
        return 0;
    if ((rc = role_problem(&c)) != 0)
        goto done;
    if (o->pg_observed && m->nocodb.nschemas > 0 && (rc = plan_role(&c)) != 0)
        goto done;
    if (o->nocodb.observed)
        rc = plan_nc(&c, syncs, deletes);
done:
    free(c.role_reason);
    return rc;
}
