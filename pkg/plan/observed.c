/* observed.c: the observed state's lifetime, its canonical JSON (snapshots) and the fingerprint a
 * plan file carries so that apply can tell the live systems changed since the plan was made.
 *
 * Canonical means: object keys sorted, arrays sorted by name (columns keep their table order,
 * which is meaningful), topic configs limited to overrides set on the topic (broker defaults are
 * noise), and no secret values. */
#include "plan.h"
#include "plan_int.h"

#include <stdlib.h>
#include <string.h>

void pc_observed_free(pc_observed *o)
{
    if (o == NULL)
        return;
    free(o->down_brokers);
    for (size_t i = 0; i < o->ntopics; i++) {
        pc_obs_topic *t = &o->topics[i];
        free(t->name);
        free(t->under_replicated_ids);
        for (size_t j = 0; j < t->nconfigs; j++) {
            free(t->configs[j].key);
            free(t->configs[j].value);
        }
        free(t->configs);
    }
    free(o->topics);
    for (size_t i = 0; i < o->nschemas; i++)
        free(o->schemas[i]);
    free(o->schemas);
    for (size_t i = 0; i < o->ntables; i++) {
        pc_obs_table *t = &o->tables[i];
        free(t->schema);
        free(t->name);
        for (size_t j = 0; j < t->ncolumns; j++) {
            free(t->columns[j].name);
            free(t->columns[j].type);
        }
        free(t->columns);
    }
    free(o->tables);
    for (size_t i = 0; i < o->nsettings; i++) {
        pc_obs_setting *s = &o->settings[i];
        free(s->name);
        free(s->value);
        free(s->unit);
        free(s->context);
        free(s->pending);
    }
    free(o->settings);
    for (size_t i = 0; i < o->nowned; i++) {
        free(o->owned[i].kind);
        free(o->owned[i].name);
        pc_kvlist_free(&o->owned[i].managed_keys);
    }
    free(o->owned);
    free(o->pgconn.host);
    free(o->pgconn.database);
    free(o->pgconn.user);
    pc_obs_role *r = &o->role;
    free(r->name);
    free(r->login_error);
    for (size_t i = 0; i < r->nschemas; i++) {
        pc_obs_role_schema *rs = &r->schemas[i];
        free(rs->name);
        free(rs->default_privileges);
        for (size_t j = 0; j < rs->ntables; j++) {
            free(rs->tables[j].name);
            free(rs->tables[j].privileges);
        }
        free(rs->tables);
    }
    free(r->schemas);
    pc_obs_nocodb *n = &o->nocodb;
    free(n->base_id);
    free(n->base_title);
    for (size_t i = 0; i < n->nsources; i++) {
        pc_obs_nc_source *s = &n->sources[i];
        free(s->id);
        free(s->alias);
        free(s->host);
        free(s->database);
        free(s->user);
        free(s->schema);
        for (size_t j = 0; j < s->ntables; j++) {
            free(s->tables[j].name);
            for (size_t k = 0; k < s->tables[j].ncolumns; k++)
                free(s->tables[j].columns[k]);
            free(s->tables[j].columns);
        }
        free(s->tables);
    }
    free(n->sources);
    for (size_t i = 0; i < o->nacls; i++)
        pc_acl_dispose(&o->acls[i]);
    free(o->acls);
    memset(o, 0, sizeof *o);
}

/* A JSON string, null for NULL; bytes that are not UTF-8 become '?' rather than failing. */
static json_t *jstr(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *copy = pc_strdup(s);
    if (copy == NULL)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static int nstrcmp(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int topic_cmp(const void *x, const void *y)
{
    return nstrcmp((*(const pc_obs_topic *const *)x)->name,
                   (*(const pc_obs_topic *const *)y)->name);
}

static int table_cmp(const void *x, const void *y)
{
    const pc_obs_table *a = *(const pc_obs_table *const *)x;
    const pc_obs_table *b = *(const pc_obs_table *const *)y;
    int c = nstrcmp(a->schema, b->schema);
    return c != 0 ? c : nstrcmp(a->name, b->name);
}

static int setting_cmp(const void *x, const void *y)
{
    return nstrcmp((*(const pc_obs_setting *const *)x)->name,
                   (*(const pc_obs_setting *const *)y)->name);
}

static int owned_cmp(const void *x, const void *y)
{
    const pc_obs_owned *a = *(const pc_obs_owned *const *)x;
    const pc_obs_owned *b = *(const pc_obs_owned *const *)y;
    int c = nstrcmp(a->kind, b->kind);
    return c != 0 ? c : nstrcmp(a->name, b->name);
}

static int str_cmp(const void *x, const void *y)
{
    return nstrcmp(*(const char *const *)x, *(const char *const *)y);
}

static int kv_cmp(const void *x, const void *y)
{
    return nstrcmp(((const pc_kv *)x)->key, ((const pc_kv *)y)->key);
}

/* The manifest's topics and the pipeline's owned topics by name: a snapshot keeps each listed
 * topic the pipeline declares or owns, and a cluster lists thousands. */
typedef struct topic_names {
    pc_index declared, owned;
} topic_names;

static int topic_names_init(topic_names *tn, const pc_manifest *m, const pc_observed *o)
{
    *tn = (topic_names){0};
    if (m != NULL)
        pc_index_add_array(&tn->declared, m->topics, m->ntopics, sizeof *m->topics,
                           offsetof(pc_mf_topic, name));
    for (size_t i = 0; i < o->nowned; i++)
        if (pc_streq(o->owned[i].kind, "topic"))
            pc_index_add(&tn->owned, o->owned[i].name, &o->owned[i]);
    if (pc_index_sort(&tn->declared) != 0 || pc_index_sort(&tn->owned) != 0)
        return PC_ENOMEM;
    return 0;
}

static void topic_names_free(topic_names *tn)
{
    pc_index_free(&tn->declared);
    pc_index_free(&tn->owned);
}

static bool mf_schema(const pc_manifest *m, const char *name)
{
    for (size_t i = 0; m != NULL && i < m->nschemas; i++)
        if (pc_streq(m->schemas[i].name, name))
            return true;
    return false;
}

static json_t *topic_json(const topic_names *tn, const pc_obs_topic *t, bool managed_only)
{
    bool ok = true;
    json_t *j = json_object();
    json_t *cfg = json_object();
    plan_json_put(j, "name", jstr(t->name), &ok);
    plan_json_put(j, "partitions", json_integer(t->partitions), &ok);
    plan_json_put(j, "replication_factor", json_integer(t->replication_factor), &ok);
    plan_json_put(j, "internal",
                  json_boolean(t->internal || (t->name && strncmp(t->name, "__", 2) == 0)), &ok);
    plan_json_put(j, "configs_known", json_boolean(t->configs_known), &ok);
    for (size_t i = 0; i < t->nconfigs && cfg != NULL; i++) {
        const pc_obs_config *c = &t->configs[i];
        if (c->key == NULL || c->source != PC_CFG_TOPIC_OVERRIDE)
            continue;
        plan_json_put(cfg, c->key, pc_is_secret_key(c->key) ? json_null() : jstr(c->value), &ok);
    }
    plan_json_put(j, "configs", cfg, &ok);
    /* The plan also depends on the effective (possibly default) values of declared keys. */
    const pc_mf_topic *mt = managed_only ? pc_index_find(&tn->declared, t->name) : NULL;
    if (mt != NULL) {
        json_t *eff = json_object();
        for (size_t i = 0; i < mt->config.n && eff != NULL; i++) {
            const char *key = mt->config.items[i].key;
            const char *val = NULL;
            for (size_t k = 0; k < t->nconfigs; k++)
                if (pc_streq(t->configs[k].key, key))
                    val = t->configs[k].value;
            plan_json_put(eff, key, pc_is_secret_key(key) ? json_null() : jstr(val), &ok);
        }
        plan_json_put(j, "declared_effective", eff, &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *table_json(const pc_obs_table *t)
{
    bool ok = true;
    json_t *j = json_object();
    json_t *cols = json_array();
    plan_json_put(j, "schema", jstr(t->schema), &ok);
    plan_json_put(j, "name", jstr(t->name), &ok);
    for (size_t i = 0; i < t->ncolumns && cols != NULL; i++) {
        const pc_obs_column *c = &t->columns[i];
        json_t *cj = json_object();
        plan_json_put(cj, "name", jstr(c->name), &ok);
        plan_json_put(cj, "type", jstr(c->type), &ok);
        plan_json_put(cj, "nullable", json_boolean(c->nullable), &ok);
        plan_json_put(cj, "primary_key", json_boolean(c->primary_key), &ok);
        plan_json_push(cols, cj, &ok);
    }
    plan_json_put(j, "columns", cols, &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *setting_json(const pc_obs_setting *s)
{
    bool ok = true;
    json_t *j = json_object();
    plan_json_put(j, "name", jstr(s->name), &ok);
    plan_json_put(j, "value", jstr(s->value), &ok);
    plan_json_put(j, "unit", jstr(s->unit), &ok);
    plan_json_put(j, "context", jstr(s->context), &ok);
    plan_json_put(j, "pending", jstr(s->pending), &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *owned_json(const pc_obs_owned *w)
{
    bool ok = true;
    json_t *j = json_object();
    json_t *keys = json_array();
    pc_kv *sorted = NULL;
    plan_json_put(j, "kind", jstr(w->kind), &ok);
    plan_json_put(j, "name", jstr(w->name), &ok);
    if (w->managed_keys.n > 0) {
        sorted = malloc(w->managed_keys.n * sizeof *sorted);
        if (sorted == NULL) {
            ok = false;
        } else {
            memcpy(sorted, w->managed_keys.items, w->managed_keys.n * sizeof *sorted);
            qsort(sorted, w->managed_keys.n, sizeof *sorted, kv_cmp);
            for (size_t i = 0; i < w->managed_keys.n; i++)
                plan_json_push(keys, jstr(sorted[i].key), &ok);
        }
    }
    plan_json_put(j, "managed_keys", keys, &ok);
    free(sorted);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Sorted array of pointers to n elements of size sz, keeping those keep() accepts. */
static const void **sorted_ptrs(const void *base, size_t n, size_t sz,
                                int (*cmp)(const void *, const void *), size_t *kept,
                                bool (*keep)(const void *elem, const void *ctx1, const void *ctx2),
                                const void *ctx1, const void *ctx2)
{
    const void **v = calloc(n + 1, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const void *e = (const char *)base + i * sz;
        if (keep == NULL || keep(e, ctx1, ctx2))
            v[k++] = e;
    }
    qsort(v, k, sizeof *v, cmp);
    *kept = k;
    return v;
}

static bool keep_topic(const void *e, const void *names, const void *unused)
{
    const pc_obs_topic *t = e;
    const topic_names *tn = names;
    (void)unused;
    return pc_index_find(&tn->declared, t->name) != NULL ||
           pc_index_find(&tn->owned, t->name) != NULL;
}

static bool keep_table(const void *e, const void *m, const void *o)
{
    (void)o;
    return mf_schema(m, ((const pc_obs_table *)e)->schema);
}

static const char *pw_name(pc_pw_state p)
{
    switch (p) {
    case PC_PW_UNKNOWN:
        return "unknown";
    case PC_PW_OK:
        return "works";
    case PC_PW_FAILED:
        return "rejected";
    }
    return "?";
}

static int role_schema_cmp(const void *x, const void *y)
{
    return nstrcmp((*(const pc_obs_role_schema *const *)x)->name,
                   (*(const pc_obs_role_schema *const *)y)->name);
}

static int role_table_cmp(const void *x, const void *y)
{
    return nstrcmp((*(const pc_obs_role_table *const *)x)->name,
                   (*(const pc_obs_role_table *const *)y)->name);
}

static int nc_source_cmp(const void *x, const void *y)
{
    const pc_obs_nc_source *a = *(const pc_obs_nc_source *const *)x;
    const pc_obs_nc_source *b = *(const pc_obs_nc_source *const *)y;
    int c = nstrcmp(a->alias, b->alias);
    return c != 0 ? c : nstrcmp(a->id, b->id);
}

static int nc_table_cmp(const void *x, const void *y)
{
    return nstrcmp((*(const pc_obs_nc_table *const *)x)->name,
                   (*(const pc_obs_nc_table *const *)y)->name);
}

static json_t *role_json(const pc_obs_role *r)
{
    bool ok = true;
    size_t n = 0, nt = 0;
    json_t *j = json_object();
    json_t *schemas = json_array();
    plan_json_put(j, "name", jstr(r->name), &ok);
    plan_json_put(j, "exists", json_boolean(r->exists), &ok);
    plan_json_put(j, "superuser", json_boolean(r->superuser), &ok);
    plan_json_put(j, "can_login", json_boolean(r->can_login), &ok);
    plan_json_put(j, "connect", json_boolean(r->connect), &ok);
    plan_json_put(j, "password", json_string(pw_name(r->password)), &ok);
    plan_json_put(j, "login_error", jstr(r->login_error), &ok);
    const void **v = sorted_ptrs(r->schemas, r->nschemas, sizeof *r->schemas, role_schema_cmp, &n,
                                 NULL, NULL, NULL);
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const pc_obs_role_schema *rs = v[i];
        json_t *sj = json_object();
        json_t *tables = json_array();
        plan_json_put(sj, "name", jstr(rs->name), &ok);
        plan_json_put(sj, "usage", json_boolean(rs->usage), &ok);
        plan_json_put(sj, "default_privileges", jstr(rs->default_privileges), &ok);
        const void **tv = sorted_ptrs(rs->tables, rs->ntables, sizeof *rs->tables, role_table_cmp,
                                      &nt, NULL, NULL, NULL);
        ok = ok && tv != NULL;
        for (size_t k = 0; ok && k < nt; k++) {
            const pc_obs_role_table *t = tv[k];
            json_t *tj = json_object();
            plan_json_put(tj, "name", jstr(t->name), &ok);
            plan_json_put(tj, "privileges", jstr(t->privileges), &ok);
            plan_json_push(tables, tj, &ok);
        }
        free(tv);
        plan_json_put(sj, "tables", tables, &ok);
        plan_json_push(schemas, sj, &ok);
    }
    free(v);
    plan_json_put(j, "schemas", schemas, &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *nc_source_json(const pc_obs_nc_source *s)
{
    bool ok = true;
    size_t nt = 0;
    json_t *j = json_object();
    json_t *tables = json_array();
    plan_json_put(j, "id", jstr(s->id), &ok);
    plan_json_put(j, "alias", jstr(s->alias), &ok);
    plan_json_put(j, "host", jstr(s->host), &ok);
    plan_json_put(j, "port", json_integer(s->port), &ok);
    plan_json_put(j, "database", jstr(s->database), &ok);
    plan_json_put(j, "user", jstr(s->user), &ok);
    plan_json_put(j, "schema", jstr(s->schema), &ok);
    plan_json_put(j, "enabled", json_boolean(s->enabled), &ok);
    plan_json_put(j, "is_meta", json_boolean(s->is_meta), &ok);
    plan_json_put(j, "tables_known", json_boolean(s->tables_known), &ok);
    const void **tv =
        sorted_ptrs(s->tables, s->ntables, sizeof *s->tables, nc_table_cmp, &nt, NULL, NULL, NULL);
    ok = ok && tv != NULL;
    for (size_t k = 0; ok && k < nt; k++) {
        const pc_obs_nc_table *t = tv[k];
        json_t *tj = json_object();
        json_t *cols = json_array();
        char **sorted = t->ncolumns ? malloc(t->ncolumns * sizeof *sorted) : NULL;
        ok = ok && (t->ncolumns == 0 || sorted != NULL);
        if (sorted != NULL) {
            memcpy(sorted, t->columns, t->ncolumns * sizeof *sorted);
            qsort(sorted, t->ncolumns, sizeof *sorted, str_cmp);
        }
        for (size_t c = 0; ok && c < t->ncolumns; c++)
            plan_json_push(cols, jstr(sorted[c]), &ok);
        free(sorted);
        plan_json_put(tj, "name", jstr(t->name), &ok);
        plan_json_put(tj, "columns", cols, &ok);
        plan_json_push(tables, tj, &ok);
    }
    free(tv);
    plan_json_put(j, "tables", tables, &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool keep_nc_source(const void *e, const void *m, const void *o)
{
    (void)o;
    const pc_obs_nc_source *s = e;
    const pc_manifest *mf = m;
    size_t n = mf != NULL && mf->name != NULL ? strlen(mf->name) : 0;
    return !s->is_meta && s->alias != NULL && n > 0 && strncmp(s->alias, mf->name, n) == 0 &&
           s->alias[n] == '_';
}

/* The nocodb part: where the DSN connects, NocoDB's role, NocoDB's base and sources. Only when
 * the manifest declares nocodb (role or NocoDB observed), so other pipelines' fingerprints and
 * snapshots do not change. */
static json_t *nocodb_json(const pc_manifest *m, const pc_observed *o, bool managed_only)
{
    bool ok = true;
    size_t n = 0;
    json_t *j = json_object();
    json_t *pg = json_object();
    plan_json_put(pg, "host", jstr(o->pgconn.host), &ok);
    plan_json_put(pg, "port", json_integer(o->pgconn.port), &ok);
    plan_json_put(pg, "database", jstr(o->pgconn.database), &ok);
    plan_json_put(pg, "user", jstr(o->pgconn.user), &ok);
    plan_json_put(j, "pgconn", pg, &ok);
    plan_json_put(j, "role", o->role.observed ? role_json(&o->role) : json_null(), &ok);
    json_t *nc = json_object();
    json_t *sources = json_array();
    plan_json_put(nc, "observed", json_boolean(o->nocodb.observed), &ok);
    plan_json_put(nc, "base_id", jstr(o->nocodb.base_id), &ok);
    plan_json_put(nc, "base_title", jstr(o->nocodb.base_title), &ok);
    const void **v = sorted_ptrs(o->nocodb.sources, o->nocodb.nsources, sizeof *o->nocodb.sources,
                                 nc_source_cmp, &n, managed_only ? keep_nc_source : NULL, m, o);
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(sources, nc_source_json(v[i]), &ok);
    free(v);
    plan_json_put(nc, "sources", sources, &ok);
    plan_json_put(j, "nocodb", nc, &ok);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

typedef struct acl_key {
    char *key; /* pc_plan_acl_string */
    const pc_acl *acl;
} acl_key;

static int acl_key_cmp(const void *x, const void *y)
{
    return strcmp(((const acl_key *)x)->key, ((const acl_key *)y)->key);
}

/* The ACL bindings (only those concerning m when managed_only), sorted by canonical string.
 * Present only when ACLs were observed, so that pipelines without ACLs keep their
 * fingerprints and snapshots. */
static json_t *acls_json(const pc_manifest *m, const pc_observed *o, bool managed_only)
{
    bool ok = true;
    size_t n = 0;
    json_t *arr = json_array();
    acl_key *keys = calloc(o->nacls + 1, sizeof *keys);
    bool *keep = calloc(o->nacls + 1, sizeof *keep);
    pc_error ignored = {0};
    if (keys == NULL || keep == NULL) {
        ok = false;
        goto done;
    }
    if (managed_only) {
        if (pc_plan_acls_managed(m, o, keep, &ignored) != 0) {
            ok = false;
            goto done;
        }
    } else {
        for (size_t i = 0; i < o->nacls; i++)
            keep[i] = true;
    }
    for (size_t i = 0; i < o->nacls; i++) {
        if (!keep[i])
            continue;
        keys[n].acl = &o->acls[i];
        if ((keys[n++].key = pc_plan_acl_string(&o->acls[i])) == NULL) {
            ok = false;
            goto done;
        }
    }
    qsort(keys, n, sizeof *keys, acl_key_cmp);
    for (size_t i = 0; ok && i < n; i++) {
        const pc_acl *a = keys[i].acl;
        json_t *j = json_object();
        plan_json_put(j, "principal", jstr(a->principal), &ok);
        plan_json_put(j, "resource", jstr(a->resource), &ok);
        plan_json_put(j, "name", jstr(a->name), &ok);
        plan_json_put(j, "pattern", jstr(a->pattern), &ok);
        plan_json_put(j, "operation", jstr(a->operation), &ok);
        plan_json_put(j, "permission", jstr(a->permission), &ok);
        plan_json_put(j, "host", jstr(a->host), &ok);
        plan_json_push(arr, j, &ok);
    }
done:
    for (size_t i = 0; keys != NULL && i < n; i++)
        free(keys[i].key);
    free(keys);
    free(keep);
    if (!ok) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

json_t *pc_observed_json(const pc_manifest *m, const pc_observed *o, bool managed_only)
{
    bool ok = true;
    json_t *root = json_object();
    json_t *topics = json_array(), *schemas = json_array(), *tables = json_array();
    json_t *settings = json_array(), *owned = json_array();
    const void **v = NULL;
    size_t n = 0;

    plan_json_put(root, "kafka_observed", json_boolean(o->kafka_observed), &ok);
    plan_json_put(root, "pg_observed", json_boolean(o->pg_observed), &ok);

    topic_names tn = {0};
    ok = ok && topic_names_init(&tn, m, o) == 0;
    v = ok ? sorted_ptrs(o->topics, o->ntopics, sizeof *o->topics, topic_cmp, &n,
                         managed_only ? keep_topic : NULL, &tn, NULL)
           : NULL;
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(topics, topic_json(&tn, v[i], managed_only), &ok);
    free(v);
    topic_names_free(&tn);

    v = calloc(o->nschemas + 1, sizeof *v);
    ok = ok && v != NULL;
    n = 0;
    for (size_t i = 0; ok && i < o->nschemas; i++)
        if (!managed_only || mf_schema(m, o->schemas[i]))
            v[n++] = o->schemas[i];
    if (ok)
        qsort(v, n, sizeof *v, str_cmp);
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(schemas, jstr(v[i]), &ok);
    free(v);

    v = sorted_ptrs(o->tables, o->ntables, sizeof *o->tables, table_cmp, &n,
                    managed_only ? keep_table : NULL, m, o);
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(tables, table_json(v[i]), &ok);
    free(v);

    v = sorted_ptrs(o->settings, o->nsettings, sizeof *o->settings, setting_cmp, &n, NULL, m, o);
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(settings, setting_json(v[i]), &ok);
    free(v);

    v = sorted_ptrs(o->owned, o->nowned, sizeof *o->owned, owned_cmp, &n, NULL, m, o);
    ok = ok && v != NULL;
    for (size_t i = 0; ok && i < n; i++)
        plan_json_push(owned, owned_json(v[i]), &ok);
    free(v);

    plan_json_put(root, "topics", topics, &ok);
    plan_json_put(root, "schemas", schemas, &ok);
    plan_json_put(root, "tables", tables, &ok);
    plan_json_put(root, "settings", settings, &ok);
    plan_json_put(root, "owned", owned, &ok);
    if (ok && (o->role.observed || o->nocodb.observed))
        plan_json_put(root, "nocodb", nocodb_json(m, o, managed_only), &ok);
    if (ok && o->acls_observed)
        plan_json_put(root, "acls", acls_json(m, o, managed_only), &ok);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int pc_observed_to_json(const pc_observed *o, char **out, pc_error *err)
{
    *out = NULL;
    json_t *j = pc_observed_json(NULL, o, false);
    char *s = j ? json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (s == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory while rendering the observed state");
    /* hand the caller a malloc'd string with a trailing newline */
    *out = pc_asprintf("%s\n", s);
    free(s);
    if (*out == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory while rendering the observed state");
    return 0;
}

int pc_observed_fingerprint(const pc_manifest *m, const pc_observed *o, char out[65], pc_error *err)
{
    out[0] = '\0';
    json_t *j = pc_observed_json(m, o, true);
    char *s = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL)
        return pc_error_set(err, PC_ENOMEM,
                            "out of memory while fingerprinting the observed state");
    pc_sha256_hex(s, strlen(s), out);
    free(s);
    return 0;
}
