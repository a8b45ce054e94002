/* plan.c: desired state (manifest) + observed state -> the ordered list of actions that converges
 * Kafka, PostgreSQL and NocoDB to the manifest. Pure: no I/O, no clock, no environment.
 *
 * Order: Kafka topics (manifest order; per topic: create, partitions, config), Kafka ACL creates
 * (plan_acl.c; after the topics they name), Postgres schemas, tables, columns, archiving
 * settings, NocoDB's role and grants, NocoDB's base and sources (plan_nocodb.c), then everything
 * destructive (ACL deletes, topic deletes, column drops, and their refusals), so a failed apply
 * never destroys before it has built; NocoDB meta syncs and source deletes come last. ACL deletes
 * go first among the destructive actions: taking access away is the smallest loss. */
#include "plan.h"
#include "plan_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- action lists ---------- */

void pc_plan_action_clear(pc_action *a)
{
    if (a == NULL)
        return;
    free(a->system);
    free(a->object);
    free(a->topic);
    pc_kvlist_free(&a->configs);
    free(a->schema);
    free(a->table);
    for (size_t i = 0; i < a->ncolumns; i++) {
        free(a->columns[i].name);
        free(a->columns[i].type);
    }
    free(a->columns);
    free(a->setting);
    free(a->value);
    for (size_t i = 0; i < a->nchanges; i++) {
        free(a->changes[i].key);
        free(a->changes[i].from);
        free(a->changes[i].to);
    }
    free(a->changes);
    free(a->reason);
    free(a->role);
    free(a->privileges);
    free(a->base);
    free(a->base_id);
    free(a->source_id);
    free(a->alias);
    free(a->host);
    free(a->database);
    pc_acl_dispose(&a->acl);
    memset(a, 0, sizeof *a);
}

void plan_alist_free(plan_alist *l)
{
    for (size_t i = 0; i < l->n; i++)
        pc_plan_action_clear(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Appends a zeroed action; NULL on OOM. The pointer is valid until the next push. */
pc_action *plan_alist_push(plan_alist *l, pc_op op, pc_action_kind kind, const char *system,
                           const char *object)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        pc_action *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL)
            return NULL;
        l->items = items;
        l->cap = cap;
    }
    pc_action *a = &l->items[l->n++];
    memset(a, 0, sizeof *a);
    a->op = op;
    a->kind = kind;
    a->system = pc_strdup(system);
    a->object = pc_strdup(object);
    if (a->system == NULL || a->object == NULL)
        return NULL;
    return a;
}

int plan_set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = pc_strdup(s);
    return (s != NULL && *dst == NULL) ? PC_ENOMEM : 0;
}

int plan_add_change(pc_action *a, const char *key, const char *from, const char *to)
{
    pc_change *c = realloc(a->changes, (a->nchanges + 1) * sizeof *c);
    if (c == NULL)
        return PC_ENOMEM;
    a->changes = c;
    pc_change *ch = &a->changes[a->nchanges++];
    ch->key = pc_strdup(key);
    ch->from = pc_strdup(from);
    ch->to = pc_strdup(to);
    if (ch->key == NULL || (from != NULL && ch->from == NULL) || (to != NULL && ch->to == NULL))
        return PC_ENOMEM;
    return 0;
}

int plan_add_change_int(pc_action *a, const char *key, int from, int to)
{
    char f[16], t[16];
    snprintf(f, sizeof f, "%d", from);
    snprintf(t, sizeof t, "%d", to);
    return plan_add_change(a, key, f, t);
}

void plan_take_changes(pc_action *a, pc_action *tmp)
{
    a->changes = tmp->changes;
    a->nchanges = tmp->nchanges;
    tmp->changes = NULL;
    tmp->nchanges = 0;
}

int plan_set_reason(pc_action *a, char *reason)
{
    free(a->reason);
    a->reason = reason;
    return reason == NULL ? PC_ENOMEM : 0;
}

int plan_alist_move(plan_alist *dst, plan_alist *src)
{
    for (size_t i = 0; i < src->n; i++) {
        pc_action *a = plan_alist_push(dst, PC_OP_CREATE, PC_ACT_NOTE, "", "");
        if (a == NULL)
            return PC_ENOMEM;
        pc_plan_action_clear(a);
        *a = src->items[i];
        memset(&src->items[i], 0, sizeof src->items[i]);
    }
    plan_alist_free(src);
    return 0;
}

static int add_column(pc_action *a, const char *name, const char *type, bool nullable, bool pk)
{
    pc_mf_column *cols = realloc(a->columns, (a->ncolumns + 1) * sizeof *cols);
    if (cols == NULL)
        return PC_ENOMEM;
    a->columns = cols;
    pc_mf_column *c = &a->columns[a->ncolumns++];
    memset(c, 0, sizeof *c);
    c->name = pc_strdup(name);
    c->type = pc_strdup(type);
    c->nullable = nullable;
    c->primary_key = pk;
    if ((name != NULL && c->name == NULL) || (type != NULL && c->type == NULL))
        return PC_ENOMEM;
    return 0;
}

/* ---------- lookups ---------- */

const void *plan_find_named(const void *base, size_t n, size_t size, size_t name_off,
                            const char *name)
{
    for (size_t i = 0; i < n; i++) {
        const char *elem = (const char *)base + i * size;
        const char *elem_name;
        memcpy(&elem_name, elem + name_off, sizeof elem_name);
        if (pc_streq(elem_name, name))
            return elem;
    }
    return NULL;
}

int plan_name_cmp(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static const pc_obs_owned *find_owned(const pc_observed *o, const char *kind, const char *name)
{
    for (size_t i = 0; i < o->nowned; i++)
        if (pc_streq(o->owned[i].kind, kind) && pc_streq(o->owned[i].name, name))
            return &o->owned[i];
    return NULL;
}

static const pc_obs_config *find_cfg(const pc_obs_topic *t, const char *key)
{
    return plan_find_named(t->configs, t->nconfigs, sizeof *t->configs,
                           offsetof(pc_obs_config, key), key);
}

static bool schema_exists(const pc_observed *o, const char *name)
{
    return plan_find_named(o->schemas, o->nschemas, sizeof *o->schemas, 0, name) != NULL;
}

static const pc_obs_table *find_obs_table(const pc_observed *o, const char *schema,
                                          const char *name)
{
    for (size_t i = 0; i < o->ntables; i++)
        if (pc_streq(o->tables[i].schema, schema) && pc_streq(o->tables[i].name, name))
            return &o->tables[i];
    return NULL;
}

static const pc_obs_setting *find_setting(const pc_observed *o, const char *name)
{
    return plan_find_named(o->settings, o->nsettings, sizeof *o->settings,
                           offsetof(pc_obs_setting, name), name);
}

static bool topic_internal(const pc_obs_topic *t)
{
    return t->internal || (t->name != NULL && strncmp(t->name, "__", 2) == 0);
}

/* true when both normalise to the same string (NULL equals only NULL). */
static bool kafka_equal(const char *key, const char *a, const char *b, int *rc)
{
    char *na = pc_norm_kafka_config(key, a);
    char *nb = pc_norm_kafka_config(key, b);
    if ((a != NULL && na == NULL) || (b != NULL && nb == NULL))
        *rc = PC_ENOMEM;
    bool eq = pc_streq(na, nb);
    free(na);
    free(nb);
    return eq;
}

static bool setting_equal(const pc_obs_setting *s, const char *a, const char *b, int *rc)
{
    char *na = pc_norm_pg_setting(s, a);
    char *nb = pc_norm_pg_setting(s, b);
    if ((a != NULL && na == NULL) || (b != NULL && nb == NULL))
        *rc = PC_ENOMEM;
    bool eq = pc_streq(na, nb);
    free(na);
    free(nb);
    return eq;
}

typedef struct builder {
    const pc_manifest *m;
    const pc_observed *o;
    const pc_plan_opts *opts;
    plan_alist main;    /* in execution order */
    plan_alist destroy; /* deletes and drops, appended last */
    /* topics by name: a plan matches every declared topic against every listed one, and a
     * cluster lists thousands */
    pc_index obs_topics, mf_topics, owned_topics;
} builder;

#define OOM PC_ENOMEM

static int index_topics(builder *b)
{
    pc_index_add_array(&b->obs_topics, b->o->topics, b->o->ntopics, sizeof *b->o->topics,
                       offsetof(pc_obs_topic, name));
    pc_index_add_array(&b->mf_topics, b->m->topics, b->m->ntopics, sizeof *b->m->topics,
                       offsetof(pc_mf_topic, name));
    for (size_t i = 0; i < b->o->nowned; i++)
        if (pc_streq(b->o->owned[i].kind, "topic"))
            pc_index_add(&b->owned_topics, b->o->owned[i].name, &b->o->owned[i]);
    if (pc_index_sort(&b->obs_topics) != 0 || pc_index_sort(&b->mf_topics) != 0 ||
        pc_index_sort(&b->owned_topics) != 0)
        return OOM;
    return 0;
}

static const pc_obs_topic *find_obs_topic(const builder *b, const char *name)
{
    return pc_index_find(&b->obs_topics, name);
}

static const pc_mf_topic *find_mf_topic(const builder *b, const char *name)
{
    return pc_index_find(&b->mf_topics, name);
}

/* ---------- Kafka ---------- */

static int topic_create(builder *b, const pc_mf_topic *t)
{
    /* Kafka would refuse it too (INVALID_REPLICATION_FACTOR), but only at apply, after other
     * actions ran: say it in the plan, with both numbers. */
    bool too_few = b->o->kafka_brokers > 0 && t->replication_factor > b->o->kafka_brokers;
    pc_action *a = plan_alist_push(&b->main, too_few ? PC_OP_REFUSED : PC_OP_CREATE,
                                   PC_ACT_TOPIC_CREATE, "kafka", t->name);
    if (a == NULL || plan_set_str(&a->topic, t->name) != 0 ||
        pc_kvlist_copy(&a->configs, &t->config) != 0)
        return OOM;
    if (too_few &&
        plan_set_reason(a, pc_asprintf("topic '%s' declares replication_factor %d but the cluster "
                                       "has %d live broker%s: start the missing brokers or "
                                       "declare replication_factor: %d",
                                       t->name, t->replication_factor, b->o->kafka_brokers,
                                       b->o->kafka_brokers == 1 ? "" : "s",
                                       b->o->kafka_brokers)) != 0)
        return OOM;
    a->partitions = t->partitions;
    a->replication_factor = t->replication_factor;
    return 0;
}

static int topic_shape(builder *b, const pc_mf_topic *t, const pc_obs_topic *ot)
{
    pc_action *a = NULL;
    if (ot->partitions < t->partitions) {
        a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_TOPIC_PARTITIONS, "kafka", t->name);
        if (a == NULL || plan_set_str(&a->topic, t->name) != 0 ||
            plan_add_change_int(a, "partitions", ot->partitions, t->partitions) != 0)
            return OOM;
        a->partitions = t->partitions;
    } else if (ot->partitions > t->partitions) {
        a = plan_alist_push(&b->main, PC_OP_REFUSED, PC_ACT_TOPIC_PARTITIONS, "kafka", t->name);
        if (a == NULL || plan_set_str(&a->topic, t->name) != 0 ||
            plan_add_change_int(a, "partitions", ot->partitions, t->partitions) != 0 ||
            plan_set_reason(
                a,
                pc_asprintf("Kafka cannot reduce the number of partitions of a topic: '%s' has %d "
                            "and the manifest declares %d. Recreate the topic by hand (which "
                            "deletes its data) or declare partitions: %d",
                            t->name, ot->partitions, t->partitions, ot->partitions)) != 0)
            return OOM;
        a->partitions = t->partitions;
    }
    if (ot->replication_factor > 0 && ot->replication_factor != t->replication_factor) {
        a = plan_alist_push(&b->main, PC_OP_REFUSED, PC_ACT_TOPIC_PARTITIONS, "kafka", t->name);
        if (a == NULL || plan_set_str(&a->topic, t->name) != 0 ||
            plan_add_change_int(a, "replication_factor", ot->replication_factor,
                                t->replication_factor) != 0 ||
            plan_set_reason(
                a,
                pc_asprintf("the replication factor of topic '%s' is %d and the manifest declares "
                            "%d; pipectl does not reassign replicas. Use kafka-reassign-partitions "
                            "to change it, or declare replication_factor: %d",
                            t->name, ot->replication_factor, t->replication_factor,
                            ot->replication_factor)) != 0)
            return OOM;
        a->partitions = ot->partitions;
        a->replication_factor = t->replication_factor;
    }
    return 0;
}

/* Config drift of an existing topic. AlterConfigs (non-incremental, all librdkafka 2.0.2 offers)
 * replaces the topic's whole override set, so the action carries the complete set to send:
 * unmanaged overrides kept, declared keys at their desired value, reset keys left out. */
static int topic_configs(builder *b, const pc_mf_topic *t, const pc_obs_topic *ot)
{
    int rc = 0;
    pc_action *a = NULL;
    pc_action tmp = {0};
    const pc_obs_owned *own = pc_index_find(&b->owned_topics, t->name);

    for (size_t i = 0; i < t->config.n; i++) {
        const char *key = t->config.items[i].key;
        const char *want = t->config.items[i].value;
        const pc_obs_config *c = find_cfg(ot, key);
        const char *have = c != NULL ? c->value : NULL;
        if (kafka_equal(key, want, have, &rc))
            continue;
        if (rc != 0 || (rc = plan_add_change(&tmp, key, have, want)) != 0)
            goto done;
    }
    for (size_t i = 0; own != NULL && i < own->managed_keys.n; i++) {
        const char *key = own->managed_keys.items[i].key;
        bool declared = false;
        for (size_t j = 0; j < t->config.n && !declared; j++)
            declared = pc_streq(t->config.items[j].key, key);
        const pc_obs_config *c = find_cfg(ot, key);
        if (declared || c == NULL || c->source != PC_CFG_TOPIC_OVERRIDE)
            continue;
        if ((rc = plan_add_change(&tmp, key, c->value, NULL)) != 0)
            goto done;
    }
    if (tmp.nchanges == 0)
        goto done;

    a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_TOPIC_CONFIG, "kafka", t->name);
    if (a == NULL || plan_set_str(&a->topic, t->name) != 0) {
        rc = OOM;
        goto done;
    }
    plan_take_changes(a, &tmp);
    for (size_t i = 0; i < ot->nconfigs; i++) {
        const pc_obs_config *c = &ot->configs[i];
        if (c->source != PC_CFG_TOPIC_OVERRIDE || c->key == NULL)
            continue;
        bool managed = false;
        for (size_t j = 0; j < t->config.n && !managed; j++)
            managed = pc_streq(t->config.items[j].key, c->key);
        for (size_t j = 0; j < a->nchanges && !managed; j++)
            managed = a->changes[j].to == NULL && pc_streq(a->changes[j].key, c->key);
        if (!managed && pc_kvlist_set(&a->configs, c->key, c->value) != 0) {
            rc = OOM;
            goto done;
        }
    }
    for (size_t i = 0; i < t->config.n; i++) {
        if (pc_kvlist_set(&a->configs, t->config.items[i].key, t->config.items[i].value) != 0) {
            rc = OOM;
            goto done;
        }
    }
    pc_kvlist_sort(&a->configs);
done:
    pc_plan_action_clear(&tmp);
    return rc;
}

static int plan_kafka(builder *b)
{
    int rc = 0;
    const pc_manifest *m = b->m;
    for (size_t i = 0; i < m->ntopics && rc == 0; i++) {
        const pc_mf_topic *t = &m->topics[i];
        const pc_obs_topic *ot = find_obs_topic(b, t->name);
        if (ot == NULL) {
            rc = topic_create(b, t);
            continue;
        }
        rc = topic_shape(b, t, ot);
        if (rc == 0 && ot->configs_known)
            rc = topic_configs(b, t, ot);
    }
    return rc;
}

static int owned_cmp(const void *x, const void *y)
{
    const pc_obs_owned *a = *(const pc_obs_owned *const *)x;
    const pc_obs_owned *b = *(const pc_obs_owned *const *)y;
    return plan_name_cmp(a->name, b->name);
}

/* Topics this pipeline created (inventory) that the manifest no longer declares. */
static int plan_topic_deletes(builder *b, plan_alist *out)
{
    int rc = 0;
    const pc_obs_owned **list = NULL;
    size_t n = 0;
    if (b->o->nowned == 0)
        return 0;
    list = calloc(b->o->nowned, sizeof *list);
    if (list == NULL)
        return OOM;
    for (size_t i = 0; i < b->o->nowned; i++)
        if (pc_streq(b->o->owned[i].kind, "topic") && b->o->owned[i].name != NULL)
            list[n++] = &b->o->owned[i];
    qsort(list, n, sizeof *list, owned_cmp);
    for (size_t i = 0; i < n; i++) {
        const char *name = list[i]->name;
        const pc_obs_topic *ot = find_obs_topic(b, name);
        if (find_mf_topic(b, name) != NULL || ot == NULL || topic_internal(ot))
            continue;
        pc_action *a = plan_alist_push(out, b->opts->allow_delete ? PC_OP_DELETE : PC_OP_REFUSED,
                                       PC_ACT_TOPIC_DELETE, "kafka", name);
        if (a == NULL || plan_set_str(&a->topic, name) != 0) {
            rc = OOM;
            goto done;
        }
        if (!b->opts->allow_delete &&
            plan_set_reason(
                a, pc_asprintf("topic '%s' is no longer declared; deleting it destroys its "
                               "data and needs --allow-delete",
                               name)) != 0) {
            rc = OOM;
            goto done;
        }
    }
done:
    free(list);
    return rc;
}

/* ---------- PostgreSQL ---------- */

static int plan_schemas(builder *b)
{
    for (size_t i = 0; i < b->m->nschemas; i++) {
        const char *s = b->m->schemas[i].name;
        if (schema_exists(b->o, s))
            continue;
        pc_action *a = plan_alist_push(&b->main, PC_OP_CREATE, PC_ACT_SCHEMA_CREATE, "postgres", s);
        if (a == NULL || plan_set_str(&a->schema, s) != 0)
            return OOM;
    }
    return 0;
}

static bool col_not_null(const pc_mf_column *c)
{
    return !c->nullable || c->primary_key;
}

static int plan_tables(builder *b)
{
    int rc = 0;
    char *obj = NULL;
    for (size_t i = 0; i < b->m->nschemas; i++) {
        const pc_mf_schema *s = &b->m->schemas[i];
        for (size_t j = 0; j < s->ntables; j++) {
            const pc_mf_table *t = &s->tables[j];
            if (find_obs_table(b->o, s->name, t->name) != NULL)
                continue;
            obj = pc_asprintf("%s.%s", s->name, t->name);
            pc_action *a =
                obj ? plan_alist_push(&b->main, PC_OP_CREATE, PC_ACT_TABLE_CREATE, "postgres", obj)
                    : NULL;
            if (a == NULL || plan_set_str(&a->schema, s->name) != 0 ||
                plan_set_str(&a->table, t->name) != 0) {
                rc = OOM;
                goto done;
            }
            for (size_t k = 0; k < t->ncolumns; k++) {
                const pc_mf_column *c = &t->columns[k];
                if (add_column(a, c->name, c->type, !col_not_null(c), c->primary_key) != 0) {
                    rc = OOM;
                    goto done;
                }
            }
            free(obj);
            obj = NULL;
        }
    }
done:
    free(obj);
    return rc;
}

static pc_action *column_action(plan_alist *l, pc_op op, pc_action_kind kind, const char *schema,
                                const char *table, const char *column)
{
    char *obj = pc_asprintf("%s.%s.%s", schema, table, column);
    pc_action *a = obj ? plan_alist_push(l, op, kind, "postgres", obj) : NULL;
    free(obj);
    if (a == NULL || plan_set_str(&a->schema, schema) != 0 || plan_set_str(&a->table, table) != 0)
        return NULL;
    return a;
}

/* Type, nullability and primary-key drift of one existing column. */
static int plan_column_drift(builder *b, const char *schema, const char *table,
                             const pc_mf_column *c, const pc_obs_column *oc)
{
    int rc = 0;
    char *want = pc_norm_pg_type(c->type);
    char *have = pc_norm_pg_type(oc->type);
    pc_action *a = NULL;
    if ((c->type != NULL && want == NULL) || (oc->type != NULL && have == NULL)) {
        rc = OOM;
        goto done;
    }
    if (!pc_streq(want, have)) {
        bool safe = want != NULL && have != NULL && pc_plan_type_change_safe(have, want);
        a = column_action(&b->main, safe ? PC_OP_CHANGE : PC_OP_REFUSED, PC_ACT_COLUMN_TYPE, schema,
                          table, c->name);
        if (a == NULL || add_column(a, c->name, c->type, !col_not_null(c), c->primary_key) != 0 ||
            plan_add_change(a, "type", oc->type, c->type) != 0) {
            rc = OOM;
            goto done;
        }
        if (!safe &&
            plan_set_reason(a, pc_asprintf("changing the type of %s.%s.%s from %s to %s could "
                                           "lose data; migrate it by hand",
                                           schema, table, c->name, oc->type ? oc->type : "?",
                                           c->type ? c->type : "?")) != 0) {
            rc = OOM;
            goto done;
        }
    }
    bool want_nullable = !col_not_null(c);
    if (oc->nullable != want_nullable && !(c->primary_key && !oc->primary_key)) {
        a = column_action(&b->main, PC_OP_CHANGE, PC_ACT_COLUMN_NULLABLE, schema, table, c->name);
        if (a == NULL || add_column(a, c->name, c->type, want_nullable, c->primary_key) != 0 ||
            plan_add_change(a, "nullable", oc->nullable ? "true" : "false",
                            want_nullable ? "true" : "false") != 0) {
            rc = OOM;
            goto done;
        }
        if (!want_nullable &&
            plan_set_reason(a,
                            pc_asprintf("SET NOT NULL fails if %s.%s.%s holds NULL values; update "
                                        "those rows first",
                                        schema, table, c->name)) != 0) {
            rc = OOM;
            goto done;
        }
    }
    if (oc->primary_key != c->primary_key) {
        a = column_action(&b->main, PC_OP_REFUSED, PC_ACT_COLUMN_TYPE, schema, table, c->name);
        if (a == NULL || add_column(a, c->name, c->type, want_nullable, c->primary_key) != 0 ||
            plan_add_change(a, "primary_key", oc->primary_key ? "true" : "false",
                            c->primary_key ? "true" : "false") != 0 ||
            plan_set_reason(
                a, pc_asprintf("the primary key of %s.%s differs from the manifest "
                               "(column %s is %sa key column in PostgreSQL); pipectl does "
                               "not change primary keys: alter it by hand",
                               schema, table, c->name, oc->primary_key ? "" : "not ")) != 0) {
            rc = OOM;
            goto done;
        }
    }
done:
    free(want);
    free(have);
    return rc;
}

static int plan_columns(builder *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->m->nschemas; i++) {
        const pc_mf_schema *s = &b->m->schemas[i];
        for (size_t j = 0; j < s->ntables; j++) {
            const pc_mf_table *t = &s->tables[j];
            const pc_obs_table *ot = find_obs_table(b->o, s->name, t->name);
            if (ot == NULL)
                continue;
            for (size_t k = 0; k < t->ncolumns; k++) {
                const pc_mf_column *c = &t->columns[k];
                const pc_obs_column *oc = NULL;
                for (size_t x = 0; x < ot->ncolumns && oc == NULL; x++)
                    if (pc_streq(ot->columns[x].name, c->name))
                        oc = &ot->columns[x];
                if (oc != NULL) {
                    if ((rc = plan_column_drift(b, s->name, t->name, c, oc)) != 0)
                        return rc;
                    continue;
                }
                pc_action *a = column_action(&b->main, PC_OP_CREATE, PC_ACT_COLUMN_ADD, s->name,
                                             t->name, c->name);
                if (a == NULL ||
                    add_column(a, c->name, c->type, !col_not_null(c), c->primary_key) != 0)
                    return OOM;
                if (col_not_null(c) &&
                    plan_set_reason(a,
                                    pc_asprintf("adding NOT NULL column %s without a default fails "
                                                "if %s.%s has rows",
                                                c->name, s->name, t->name)) != 0)
                    return OOM;
            }
            /* live columns the manifest does not declare */
            char *tname = pc_asprintf("%s.%s", s->name, t->name);
            if (tname == NULL)
                return OOM;
            bool owned = find_owned(b->o, "table", tname) != NULL;
            free(tname);
            for (size_t x = 0; x < ot->ncolumns; x++) {
                const pc_obs_column *oc = &ot->columns[x];
                bool declared = false;
                for (size_t k = 0; k < t->ncolumns && !declared; k++)
                    declared = pc_streq(t->columns[k].name, oc->name);
                if (declared)
                    continue;
                pc_action *a = NULL;
                char *reason = NULL;
                if (!owned) {
                    a = column_action(&b->main, PC_OP_CHANGE, PC_ACT_NOTE, s->name, t->name,
                                      oc->name);
                    reason = pc_asprintf("column %s.%s.%s is not in the manifest; the table is not "
                                         "in pipectl's inventory, so it is left alone",
                                         s->name, t->name, oc->name);
                } else {
                    bool allow = b->opts->allow_delete;
                    a = column_action(&b->destroy, allow ? PC_OP_DELETE : PC_OP_REFUSED,
                                      PC_ACT_COLUMN_DROP, s->name, t->name, oc->name);
                    if (!allow)
                        reason = pc_asprintf("column %s.%s.%s is no longer declared; dropping it "
                                             "destroys its data and needs --allow-delete",
                                             s->name, t->name, oc->name);
                }
                if (a == NULL ||
                    add_column(a, oc->name, oc->type, oc->nullable, oc->primary_key) != 0) {
                    free(reason);
                    return OOM;
                }
                if ((a->kind == PC_ACT_NOTE || a->op == PC_OP_REFUSED) &&
                    plan_set_reason(a, reason) != 0)
                    return OOM;
                if (a->kind != PC_ACT_NOTE && a->op != PC_OP_REFUSED)
                    free(reason);
            }
        }
    }
    return rc;
}

/* archive_command names the repository directly rather than the manifest: postgres runs it in
 * its own environment, where the manifest's ${VAR}s (a DSN password) are not set; secrets come
 * from archiving.credentials_file (pc_mf_archiving_args). A '%' in a path is doubled because
 * postgres expands %p/%f/%r in the command. */
static char *default_archive_command(const pc_manifest *m, const pc_plan_opts *opts)
{
    pc_buf b = {0};
    const char *exe = opts->pipectl_exe ? opts->pipectl_exe : "pipectl";
    int rc = pc_buf_shell_word(&b, exe, PC_SHELL_PCT | PC_SHELL_QUOTE);
    if (rc == 0 && m->archiving.repository != NULL) {
        rc = pc_buf_puts(&b, " wal-push") != 0 ? OOM : pc_mf_archiving_args(&m->archiving, &b);
    } else if (rc == 0) {
        const char *mf =
            opts->manifest_path ? opts->manifest_path : (m->file ? m->file : "pipeline.yaml");
        rc = pc_buf_puts(&b, " -f ") != 0 ||
                     pc_buf_shell_word(&b, mf, PC_SHELL_PCT | PC_SHELL_QUOTE) != 0 ||
                     pc_buf_puts(&b, " wal-push")
                 ? OOM
                 : 0;
    }
    if (rc != 0 || pc_buf_puts(&b, " %p %f") != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

/* "0" with unit "s" -> "0s"; values with multiplier units ("8kB") are shown as is. */
static char *display_setting(const pc_obs_setting *s, const char *value)
{
    if (value == NULL)
        return NULL;
    if (s != NULL && s->unit != NULL && s->unit[0] != '\0' &&
        (s->unit[0] < '0' || s->unit[0] > '9')) {
        const char *p = value;
        if (*p == '-')
            p++;
        bool digits = *p != '\0';
        for (; *p; p++)
            digits = digits && *p >= '0' && *p <= '9';
        if (digits)
            return pc_asprintf("%s%s", value, s->unit);
    }
    return pc_strdup(value);
}

static int plan_one_setting(builder *b, const char *name, const char *want)
{
    int rc = 0;
    const pc_obs_setting *s = find_setting(b->o, name);
    char *from = NULL;
    char *pend = NULL;
    pc_action *a = NULL;
    if (s == NULL) {
        /* not reported by the server: plan it and let PostgreSQL judge */
        a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_SETTING, "postgres", name);
        if (a == NULL || plan_set_str(&a->setting, name) != 0 ||
            plan_set_str(&a->value, want) != 0 || plan_add_change(a, name, NULL, want) != 0)
            return OOM;
        a->restart_required = strcmp(name, "wal_level") == 0 || strcmp(name, "archive_mode") == 0;
        return 0;
    }
    bool running_ok = setting_equal(s, want, s->value, &rc);
    bool pending_ok = s->pending != NULL && setting_equal(s, want, s->pending, &rc);
    if (rc != 0)
        return rc;
    from = display_setting(s, s->value);
    pend = display_setting(s, s->pending);
    if ((s->value != NULL && from == NULL) || (s->pending != NULL && pend == NULL)) {
        rc = OOM;
        goto done;
    }
    if (running_ok && (s->pending == NULL || pending_ok))
        goto done;
    if (running_ok) {
        /* right now, but a different value waits for the next restart: write ours back */
        a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_SETTING, "postgres", name);
        if (a == NULL || plan_set_str(&a->setting, name) != 0 ||
            plan_set_str(&a->value, want) != 0 || plan_add_change(a, name, pend, want) != 0 ||
            plan_set_reason(a, pc_asprintf("%s is %s now but the configuration files set %s, which "
                                           "takes effect at the next restart; this sets it back",
                                           name, from ? from : "unset", pend)) != 0)
            rc = OOM;
        goto done;
    }
    if (pending_ok) {
        a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_NOTE, "postgres", name);
        if (a == NULL || plan_set_str(&a->setting, name) != 0 ||
            plan_set_str(&a->value, want) != 0 ||
            plan_set_reason(a,
                            pc_asprintf("restart required: %s is set to %s in postgresql.auto.conf "
                                        "(running value %s); restart PostgreSQL to apply it",
                                        name, want, from ? from : "unset")) != 0)
            rc = OOM;
        goto done;
    }
    a = plan_alist_push(&b->main, PC_OP_CHANGE, PC_ACT_SETTING, "postgres", name);
    if (a == NULL || plan_set_str(&a->setting, name) != 0 || plan_set_str(&a->value, want) != 0 ||
        plan_add_change(a, name, from, want) != 0) {
        rc = OOM;
        goto done;
    }
    a->restart_required = pc_streq(s->context, "postmaster");
done:
    free(from);
    free(pend);
    return rc;
}

static int plan_settings(builder *b)
{
    const pc_mf_archiving *ar = &b->m->archiving;
    int rc = 0;
    char *cmd = NULL;
    char *timeout = NULL;
    if (!ar->declared)
        return 0;
    if (!ar->enabled)
        return plan_one_setting(b, "archive_mode", "off");
    cmd = ar->command ? pc_strdup(ar->command) : default_archive_command(b->m, b->opts);
    if (cmd == NULL) {
        rc = OOM;
        goto done;
    }
    if ((rc = plan_one_setting(b, "wal_level", ar->wal_level ? ar->wal_level : "replica")) != 0 ||
        (rc = plan_one_setting(b, "archive_mode", "on")) != 0 ||
        (rc = plan_one_setting(b, "archive_command", cmd)) != 0)
        goto done;
    if (ar->archive_timeout_s > 0) {
        timeout = pc_asprintf("%ds", ar->archive_timeout_s);
        if (timeout == NULL) {
            rc = OOM;
            goto done;
        }
        rc = plan_one_setting(b, "archive_timeout", timeout);
    }
done:
    free(cmd);
    free(timeout);
    return rc;
}

/* ---------- public ---------- */

int pc_plan_build(pc_plan **out, const pc_manifest *m, const pc_observed *o,
                  const pc_plan_opts *opts, pc_error *err)
{
    int rc = 0;
    pc_plan *p = NULL;
    pc_plan_opts no_opts = {0};
    builder b = {.m = m, .o = o, .opts = opts ? opts : &no_opts};
    plan_alist topic_deletes = {0};
    plan_alist acl_deletes = {0};
    plan_alist nc_syncs = {0};
    plan_alist nc_deletes = {0};
    *out = NULL;

    p = calloc(1, sizeof *p);
    if (p == NULL || (p->pipeline = pc_strdup(m->name ? m->name : "")) == NULL) {
        rc = OOM;
        goto done;
    }
    rc = pc_observed_fingerprint(m, o, p->fingerprint, err);
    if (rc != 0)
        goto done;
    bool kafka = m->kafka_bootstrap != NULL && o->kafka_observed;
    if (kafka && (rc = index_topics(&b)) != 0)
        goto done;
    if (kafka && (rc = plan_kafka(&b)) != 0)
        goto done;
    if (kafka && o->acls_observed &&
        (rc = plan_acls(m, o, b.opts, &b.main, &acl_deletes, err)) != 0)
        goto done;
    if (o->pg_observed) {
        if ((rc = plan_schemas(&b)) != 0 || (rc = plan_tables(&b)) != 0 ||
            (rc = plan_columns(&b)) != 0 || (rc = plan_settings(&b)) != 0)
            goto done;
    }
    if ((rc = plan_nocodb(m, o, b.opts, &b.main, &b.destroy, &nc_syncs, &nc_deletes)) != 0)
        goto done;
    if (kafka && (rc = plan_topic_deletes(&b, &topic_deletes)) != 0)
        goto done;
    /* destructive actions last: ACL deletes, topic deletes, then column drops; NocoDB's meta
     * syncs after them (so NocoDB sees the final tables), then NocoDB source deletes */
    plan_alist *tails[5] = {&acl_deletes, &topic_deletes, &b.destroy, &nc_syncs, &nc_deletes};
    for (size_t t = 0; t < 5; t++)
        if ((rc = plan_alist_move(&b.main, tails[t])) != 0)
            goto done;
    p->actions = b.main.items;
    p->nactions = b.main.n;
    b.main.items = NULL;
    b.main.n = b.main.cap = 0;
    *out = p;
    p = NULL;
done:
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory while planning pipeline '%s'",
                     m->name ? m->name : "?");
    plan_alist_free(&b.main);
    plan_alist_free(&b.destroy);
    plan_alist_free(&topic_deletes);
    plan_alist_free(&acl_deletes);
    plan_alist_free(&nc_syncs);
    plan_alist_free(&nc_deletes);
    pc_index_free(&b.obs_topics);
    pc_index_free(&b.mf_topics);
    pc_index_free(&b.owned_topics);
    pc_plan_free(p);
    return rc;
}

void pc_plan_free(pc_plan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nactions; i++)
        pc_plan_action_clear(&p->actions[i]);
    free(p->actions);
    free(p->pipeline);
    free(p);
}

pc_action_system pc_action_system_of(pc_action_kind k)
{
    switch (k) {
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        return PC_SYS_KAFKA;
    case PC_ACT_SCHEMA_CREATE:
    case PC_ACT_TABLE_CREATE:
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
    case PC_ACT_SETTING:
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
    case PC_ACT_ROLE_GRANT:
        return PC_SYS_POSTGRES;
    case PC_ACT_NC_BASE_CREATE:
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
    case PC_ACT_NC_META_SYNC:
        return PC_SYS_NOCODB;
    case PC_ACT_NOTE:
        return PC_SYS_NONE;
    }
    return (pc_action_system)-1; /* not a kind (a corrupt value): no system */
}

const char *pc_action_system_name(pc_action_system s)
{
    switch (s) {
    case PC_SYS_NONE:
        return "";
    case PC_SYS_KAFKA:
        return "kafka";
    case PC_SYS_POSTGRES:
        return "postgres";
    case PC_SYS_NOCODB:
        return "nocodb";
    }
    return "";
}

bool pc_plan_has_changes(const pc_plan *p)
{
    for (size_t i = 0; p != NULL && i < p->nactions; i++)
        if (p->actions[i].kind != PC_ACT_NOTE)
            return true;
    return false;
}

void pc_plan_summary(const pc_plan *p, size_t *create, size_t *change, size_t *del, size_t *refused)
{
    size_t c[4] = {0, 0, 0, 0};
    for (size_t i = 0; p != NULL && i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (a->kind == PC_ACT_NOTE)
            continue;
        switch (a->op) {
        case PC_OP_CREATE:
            c[0]++;
            break;
        case PC_OP_CHANGE:
            c[1]++;
            break;
        case PC_OP_DELETE:
            c[2]++;
            break;
        case PC_OP_REFUSED:
            c[3]++;
            break;
        }
    }
    if (create)
        *create = c[0];
    if (change)
        *change = c[1];
    if (del)
        *del = c[2];
    if (refused)
        *refused = c[3];
}
