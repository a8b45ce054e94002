/* fixtures.h: in-memory manifests and observed states for the plan tests (test_plan.c,
 * test_planfile.c). Manifests are built by hand rather than parsed, so these tests exercise
 * pkg/plan alone. Everything aborts on OOM: these are tests. */
#ifndef PC_TEST_PLAN_FIXTURES_H
#define PC_TEST_PLAN_FIXTURES_H

#include <stdlib.h>
#include <string.h>

#include "plan.h"

static inline void *fx_grow(void *p, size_t n, size_t sz)
{
    void *q = realloc(p, n * sz);
    if (q == NULL)
        abort();
    memset((char *)q + (n - 1) * sz, 0, sz);
    return q;
}

static inline char *fx_dup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

/* ---------- manifest ---------- */

static inline pc_manifest *fx_manifest(void)
{
    pc_manifest *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    m->name = fx_dup("users");
    m->file = fx_dup("pipeline.yaml");
    m->kafka_bootstrap = fx_dup("localhost:9092");
    return m;
}

static inline pc_mf_topic *fx_mf_topic(pc_manifest *m, const char *name, int partitions, int rf)
{
    m->topics = fx_grow(m->topics, ++m->ntopics, sizeof *m->topics);
    pc_mf_topic *t = &m->topics[m->ntopics - 1];
    t->name = fx_dup(name);
    t->partitions = partitions;
    t->replication_factor = rf;
    return t;
}

static inline void fx_mf_cfg(pc_mf_topic *t, const char *key, const char *value)
{
    if (pc_kvlist_set(&t->config, key, value) != 0)
        abort();
}

static inline pc_mf_schema *fx_mf_schema(pc_manifest *m, const char *name)
{
    m->schemas = fx_grow(m->schemas, ++m->nschemas, sizeof *m->schemas);
    m->schemas[m->nschemas - 1].name = fx_dup(name);
    return &m->schemas[m->nschemas - 1];
}

static inline pc_mf_table *fx_mf_table(pc_mf_schema *s, const char *name)
{
    s->tables = fx_grow(s->tables, ++s->ntables, sizeof *s->tables);
    s->tables[s->ntables - 1].name = fx_dup(name);
    return &s->tables[s->ntables - 1];
}

static inline void fx_mf_col(pc_mf_table *t, const char *name, const char *type, bool pk,
                             bool nullable)
{
    t->columns = fx_grow(t->columns, ++t->ncolumns, sizeof *t->columns);
    pc_mf_column *c = &t->columns[t->ncolumns - 1];
    c->name = fx_dup(name);
    c->type = fx_dup(type);
    c->primary_key = pk;
    c->nullable = nullable && !pk;
}

static inline void fx_manifest_free(pc_manifest *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->ntopics; i++) {
        free(m->topics[i].name);
        pc_kvlist_free(&m->topics[i].config);
    }
    free(m->topics);
    for (size_t i = 0; i < m->nschemas; i++) {
        pc_mf_schema *s = &m->schemas[i];
        for (size_t j = 0; j < s->ntables; j++) {
            for (size_t k = 0; k < s->tables[j].ncolumns; k++) {
                free(s->tables[j].columns[k].name);
                free(s->tables[j].columns[k].type);
            }
            free(s->tables[j].columns);
            free(s->tables[j].name);
        }
        free(s->tables);
        free(s->name);
    }
    free(m->schemas);
    free(m->archiving.command);
    free(m->archiving.wal_level);
    free(m->archiving.repository);
    free(m->kafka_bootstrap);
    free(m->file);
    free(m->name);
    free(m);
}

/* ---------- observed ---------- */

static inline pc_obs_topic *fx_obs_topic(pc_observed *o, const char *name, int partitions, int rf)
{
    o->topics = fx_grow(o->topics, ++o->ntopics, sizeof *o->topics);
    pc_obs_topic *t = &o->topics[o->ntopics - 1];
    t->name = fx_dup(name);
    t->partitions = partitions;
    t->replication_factor = rf;
    t->configs_known = true;
    t->internal = strncmp(name, "__", 2) == 0;
    return t;
}

static inline void fx_obs_cfg(pc_obs_topic *t, const char *key, const char *value,
                              pc_cfg_source src)
{
    t->configs = fx_grow(t->configs, ++t->nconfigs, sizeof *t->configs);
    pc_obs_config *c = &t->configs[t->nconfigs - 1];
    c->key = fx_dup(key);
    c->value = fx_dup(value);
    c->source = src;
}

static inline void fx_obs_schema(pc_observed *o, const char *name)
{
    o->schemas = fx_grow(o->schemas, ++o->nschemas, sizeof *o->schemas);
    o->schemas[o->nschemas - 1] = fx_dup(name);
}

static inline pc_obs_table *fx_obs_table(pc_observed *o, const char *schema, const char *name)
{
    o->tables = fx_grow(o->tables, ++o->ntables, sizeof *o->tables);
    pc_obs_table *t = &o->tables[o->ntables - 1];
    t->schema = fx_dup(schema);
    t->name = fx_dup(name);
    return t;
}

static inline void fx_obs_col(pc_obs_table *t, const char *name, const char *type, bool nullable,
                              bool pk)
{
    t->columns = fx_grow(t->columns, ++t->ncolumns, sizeof *t->columns);
    pc_obs_column *c = &t->columns[t->ncolumns - 1];
    c->name = fx_dup(name);
    c->type = fx_dup(type);
    c->nullable = nullable;
    c->primary_key = pk;
}

static inline void fx_obs_setting(pc_observed *o, const char *name, const char *value,
                                  const char *unit, const char *context, const char *pending)
{
    o->settings = fx_grow(o->settings, ++o->nsettings, sizeof *o->settings);
    pc_obs_setting *s = &o->settings[o->nsettings - 1];
    s->name = fx_dup(name);
    s->value = fx_dup(value);
    s->unit = fx_dup(unit);
    s->context = fx_dup(context);
    s->pending = fx_dup(pending);
}

static inline pc_obs_setting *fx_obs_find_setting(pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->nsettings; i++)
        if (strcmp(o->settings[i].name, name) == 0)
            return &o->settings[i];
    abort();
}

static inline pc_obs_topic *fx_obs_find_topic(pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->ntopics; i++)
        if (strcmp(o->topics[i].name, name) == 0)
            return &o->topics[i];
    abort();
}

static inline pc_obs_table *fx_obs_find_table(pc_observed *o, const char *schema, const char *name)
{
    for (size_t i = 0; i < o->ntables; i++)
        if (strcmp(o->tables[i].schema, schema) == 0 && strcmp(o->tables[i].name, name) == 0)
            return &o->tables[i];
    abort();
}

/* keys: NULL-terminated managed config keys (topics) */
static inline void fx_obs_owned(pc_observed *o, const char *kind, const char *name,
                                const char *const *keys)
{
    o->owned = fx_grow(o->owned, ++o->nowned, sizeof *o->owned);
    pc_obs_owned *w = &o->owned[o->nowned - 1];
    w->kind = fx_dup(kind);
    w->name = fx_dup(name);
    for (size_t i = 0; keys != NULL && keys[i] != NULL; i++)
        if (pc_kvlist_add(&w->managed_keys, keys[i], "") != 0)
            abort();
}

static inline void fx_obs_set_value(char **slot, const char *value)
{
    free(*slot);
    *slot = fx_dup(value);
}

/* ---------- the standard pipeline: desired, and a live state that matches it ---------- */

#define FX_EXE "/usr/bin/pipectl"
#define FX_MANIFEST "/etc/pipectl/pipeline.yaml"
#define FX_COMMAND "'/usr/bin/pipectl' wal-push --repository '/var/lib/pipectl/repo' %p %f"

static inline pc_plan_opts fx_opts(bool allow_delete)
{
    pc_plan_opts o = {
        .allow_delete = allow_delete, .pipectl_exe = FX_EXE, .manifest_path = FX_MANIFEST};
    return o;
}

/* users_created (3 partitions, rf 1, retention.ms 7d, cleanup.policy "compact,delete"),
 * users_dlq (1, 1, retention.ms 7d), schema raw with table users, archiving on, timeout 60s. */
static inline pc_manifest *fx_standard_manifest(void)
{
    pc_manifest *m = fx_manifest();
    pc_mf_topic *t = fx_mf_topic(m, "users_created", 3, 1);
    fx_mf_cfg(t, "retention.ms", "604800000");
    fx_mf_cfg(t, "cleanup.policy", "compact,delete");
    t = fx_mf_topic(m, "users_dlq", 1, 1);
    fx_mf_cfg(t, "retention.ms", "604800000");
    pc_mf_schema *s = fx_mf_schema(m, "raw");
    pc_mf_table *tb = fx_mf_table(s, "users");
    fx_mf_col(tb, "id", "uuid", true, false);
    fx_mf_col(tb, "email", "text", false, false);
    fx_mf_col(tb, "registered_at", "timestamptz", false, true);
    m->archiving.declared = true;
    m->archiving.enabled = true;
    m->archiving.archive_timeout_s = 60;
    m->archiving.repository = fx_dup("/var/lib/pipectl/repo");
    return m;
}

/* The live state after a successful apply of fx_standard_manifest. */
static inline void fx_standard_observed(pc_observed *o)
{
    memset(o, 0, sizeof *o);
    o->kafka_observed = true;
    o->pg_observed = true;
    pc_obs_topic *t = fx_obs_topic(o, "users_created", 3, 1);
    fx_obs_cfg(t, "cleanup.policy", "delete,compact", PC_CFG_TOPIC_OVERRIDE);
    fx_obs_cfg(t, "retention.ms", "604800000", PC_CFG_TOPIC_OVERRIDE);
    fx_obs_cfg(t, "segment.ms", "604800000", PC_CFG_DEFAULT);
    t = fx_obs_topic(o, "users_dlq", 1, 1);
    /* equal to the desired value, at the broker default: not an override */
    fx_obs_cfg(t, "retention.ms", "604800000", PC_CFG_DEFAULT);
    fx_obs_cfg(t, "cleanup.policy", "delete", PC_CFG_DEFAULT);
    t = fx_obs_topic(o, "__consumer_offsets", 50, 1);
    t->configs_known = false;
    fx_obs_schema(o, "raw");
    pc_obs_table *tb = fx_obs_table(o, "raw", "users");
    fx_obs_col(tb, "id", "uuid", false, true);
    fx_obs_col(tb, "email", "text", false, false);
    fx_obs_col(tb, "registered_at", "timestamp with time zone", true, false);
    fx_obs_setting(o, "wal_level", "replica", NULL, "postmaster", NULL);
    fx_obs_setting(o, "archive_mode", "on", NULL, "postmaster", NULL);
    fx_obs_setting(o, "archive_command", FX_COMMAND, NULL, "sighup", NULL);
    fx_obs_setting(o, "archive_timeout", "60", "s", "sighup", NULL);
    static const char *const keys[] = {"cleanup.policy", "retention.ms", NULL};
    fx_obs_owned(o, "topic", "users_created", keys);
    fx_obs_owned(o, "topic", "users_dlq", keys + 1);
    fx_obs_owned(o, "table", "raw.users", NULL);
}

#endif
