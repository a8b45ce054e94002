/* apply.c: run a plan against the live systems, in order, one action at a time. */
#include "apply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int pc_session_open(pc_session *s, const pc_manifest *m, int timeout_s, pc_error *err)
{
    int rc = 0;
    s->failed = NULL;
    if (m->kafka_bootstrap != NULL) {
        s->failed = "kafka";
        rc = pc_kafka_open_manifest(&s->kafka, m, timeout_s * 1000, err);
        if (rc != 0)
            goto done;
    }
    if (m->pg_dsn != NULL) {
        s->failed = "postgres";
        rc = pc_pg_open(&s->pg, m->pg_dsn, timeout_s, err);
        if (rc != 0)
            goto done;
    }
    if (m->nocodb.declared) {
        pc_nocodb_auth auth = {.url = m->nocodb.url,
                               .token = m->nocodb.token,
                               .email = m->nocodb.email,
                               .password = m->nocodb.password,
                               .timeout_s = timeout_s};
        s->failed = "nocodb";
        rc = pc_nocodb_open(&s->nocodb, &auth, err);
        if (rc != 0)
            goto done;
    }
done:
    if (rc != 0)
        pc_session_close(s);
    else
        s->failed = NULL;
    return rc;
}

void pc_session_close(pc_session *s)
{
    if (s == NULL)
        return;
    pc_kafka_free(s->kafka);
    s->kafka = NULL;
    pc_pg_free(s->pg);
    s->pg = NULL;
    pc_nocodb_free(s->nocodb);
    s->nocodb = NULL;
}

static const pc_obs_owned *find_owned(const pc_observed *o, const char *kind, const char *name)
{
    for (size_t i = 0; i < o->nowned; i++)
        if (pc_streq(o->owned[i].kind, kind) && pc_streq(o->owned[i].name, name))
            return &o->owned[i];
    return NULL;
}

/* ---------- NocoDB ---------- */

static bool pipectl_alias(const pc_manifest *m, const char *alias)
{
    size_t n = m->name != NULL ? strlen(m->name) : 0;
    return alias != NULL && n > 0 && strncmp(alias, m->name, n) == 0 && alias[n] == '_';
}

static int copy_tables(pc_obs_nc_source *dst, const pc_nocodb_table *t, size_t n)
{
    if (n == 0)
        return 0;
    dst->tables = calloc(n, sizeof *dst->tables);
    if (dst->tables == NULL)
        return PC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        pc_obs_nc_table *ot = &dst->tables[dst->ntables++];
        ot->name = pc_strdup(t[i].name);
        if (t[i].name != NULL && ot->name == NULL)
            return PC_ENOMEM;
        if (t[i].ncolumns == 0)
            continue;
        ot->columns = calloc(t[i].ncolumns, sizeof *ot->columns);
        if (ot->columns == NULL)
            return PC_ENOMEM;
        for (size_t k = 0; k < t[i].ncolumns; k++) {
            if (t[i].columns[k] == NULL)
                continue;
            if ((ot->columns[ot->ncolumns++] = pc_strdup(t[i].columns[k])) == NULL)
                return PC_ENOMEM;
        }
    }
    return 0;
}

/* The base titled nocodb.base, its sources, and for pipectl's sources the tables and columns
 * NocoDB sees. */
static int observe_nocodb(pc_nocodb *nc, const pc_manifest *m, pc_observed *o, pc_error *err)
{
    pc_nocodb_base *base = NULL;
    pc_nocodb_table *tables = NULL;
    size_t ntables = 0;
    pc_obs_nocodb *on = &o->nocodb;
    int rc = pc_nocodb_find_base(nc, m->nocodb.base, &base, err);
    if (rc != 0)
        goto done;
    on->observed = true;
    if (base == NULL)
        goto done;
    on->base_id = pc_strdup(base->id);
    on->base_title = pc_strdup(base->title);
    if (on->base_id == NULL || (base->title != NULL && on->base_title == NULL))
        goto oom;
    if (base->nsources > 0 && (on->sources = calloc(base->nsources, sizeof *on->sources)) == NULL)
        goto oom;
    for (size_t i = 0; i < base->nsources; i++) {
        const pc_nocodb_source *bs = &base->sources[i];
        pc_obs_nc_source *os = &on->sources[on->nsources++];
        os->id = pc_strdup(bs->id);
        os->alias = pc_strdup(bs->alias);
        os->host = pc_strdup(bs->host);
        os->port = bs->port;
        os->database = pc_strdup(bs->database);
        os->user = pc_strdup(bs->user);
        os->schema = pc_strdup(bs->schema);
        os->enabled = bs->enabled;
        os->is_meta = bs->is_meta;
        if ((bs->id != NULL && os->id == NULL) || (bs->alias != NULL && os->alias == NULL) ||
            (bs->host != NULL && os->host == NULL) ||
            (bs->database != NULL && os->database == NULL) ||
            (bs->user != NULL && os->user == NULL) || (bs->schema != NULL && os->schema == NULL))
            goto oom;
        if (bs->is_meta || !pipectl_alias(m, bs->alias) || bs->id == NULL)
            continue;
        rc = pc_nocodb_list_tables(nc, base->id, bs->id, true, &tables, &ntables, err);
        if (rc != 0)
            goto done;
        if (copy_tables(os, tables, ntables) != 0)
            goto oom;
        os->tables_known = true;
        pc_nocodb_tables_free(tables, ntables);
        tables = NULL;
        ntables = 0;
    }
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    pc_nocodb_tables_free(tables, ntables);
    pc_nocodb_base_free(base);
    return rc;
}

int pc_session_observe(pc_session *s, const pc_manifest *m, pc_observed *o, pc_error *err)
{
    int rc = 0;
    const char **names = NULL;
    /* Postgres first: the inventory says which undeclared topics are ours to describe. */
    if (s->pg != NULL) {
        rc = pc_pg_observe(s->pg, m, o, err);
        if (rc != 0)
            goto done;
    }
    if (s->kafka != NULL) {
        names = calloc(m->ntopics + o->nowned + 1, sizeof *names);
        if (names == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        size_t n = 0;
        for (size_t i = 0; i < m->ntopics; i++)
            names[n++] = m->topics[i].name;
        for (size_t i = 0; i < o->nowned; i++)
            if (pc_streq(o->owned[i].kind, "topic") &&
                pc_manifest_find_topic(m, o->owned[i].name) == NULL)
                names[n++] = o->owned[i].name;
        rc = pc_kafka_observe(s->kafka, names, n, o, err);
        if (rc != 0)
            goto done;
        /* ACLs only when there is something to manage: declared, derived, or recorded */
        bool owned_acls = false;
        for (size_t i = 0; i < o->nowned && !owned_acls; i++)
            owned_acls = pc_streq(o->owned[i].kind, "acl");
        bool declared = m->nacls > 0 || m->derive_acls;
        if ((declared || owned_acls) &&
            (rc = pc_kafka_observe_acls(s->kafka, declared, o, err)) != 0)
            goto done;
    }
    if (s->nocodb != NULL)
        rc = observe_nocodb(s->nocodb, m, o, err);
done:
    free(names);
    return rc;
}

/* What a run learns as it goes: the id of a base it created. */
typedef struct run_state {
    char *base_id;
} run_state;

/* The base id for a NocoDB action: the observed one the plan carries, the one this run created,
 * or (a plan file made before the base existed) found by title now. */
static int nc_base_id(pc_session *s, const pc_action *a, run_state *rs, const char **id,
                      pc_error *err)
{
    pc_nocodb_base *b = NULL;
    *id = a->base_id != NULL ? a->base_id : rs->base_id;
    if (*id != NULL)
        return 0;
    int rc = pc_nocodb_find_base(s->nocodb, a->base, &b, err);
    if (rc == 0 && b == NULL)
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "NocoDB base '%s' does not exist; run pipectl plan again (it creates "
                          "the base first)",
                          a->base ? a->base : "?");
    if (rc == 0 && (rs->base_id = pc_strdup(b->id)) == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    pc_nocodb_base_free(b);
    *id = rs->base_id;
    return rc;
}

/* A source NocoDB could not connect: say which address NocoDB was given and how to change it. */
static void where_hint(const pc_action *a, pc_error *err)
{
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len,
             " (NocoDB was told to reach PostgreSQL at %s:%d as role %s; when NocoDB reaches it at "
             "another address, set nocodb.pg_host and nocodb.pg_port)",
             a->host ? a->host : "?", a->port, a->role ? a->role : "?");
}

/* Refuses an action of a kind run_nocodb does not perform (a routing bug: users never see it). */
static int not_nocodb(const pc_action *a, pc_error *err)
{
    const char *sys = pc_action_system_name(pc_action_system_of(a->kind));
    return pc_error_set(err, PC_EINVAL, "%s %s (system %s) is not a NocoDB action",
                        pc_action_noun(a->kind), a->object ? a->object : "?", *sys ? sys : "none");
}

/* NocoDB's kinds only; anything else is refused. */
static int run_nocodb(pc_session *s, const pc_manifest *m, const pc_action *a, run_state *rs,
                      pc_error *err)
{
    const char *base_id = NULL;
    char *id = NULL;
    int rc = 0;
    if (pc_action_system_of(a->kind) != PC_SYS_NOCODB)
        return not_nocodb(a, err);
    if (s->nocodb == NULL)
        return pc_error_set(err, PC_EINVAL, "action on NocoDB %s but no NocoDB connection",
                            a->object ? a->object : "?");
    pc_nocodb_conn conn = {.host = a->host,
                           .port = a->port,
                           .database = a->database,
                           .user = a->role,
                           .password = m->nocodb.role_password,
                           .schema = a->schema};
    if (a->kind == PC_ACT_NC_BASE_CREATE) {
        rc = pc_nocodb_create_base(s->nocodb, a->base, &id, err);
        if (rc == 0) {
            free(rs->base_id);
            rs->base_id = id;
            id = NULL;
        }
        goto done;
    }
    if ((rc = nc_base_id(s, a, rs, &base_id, err)) != 0)
        goto done;
    if (a->kind == PC_ACT_NC_SOURCE_CREATE) {
        rc = pc_nocodb_create_source(s->nocodb, base_id, a->alias, &conn,
                                     PC_APPLY_NOCODB_JOB_TIMEOUT_S, &id, err);
        if (rc != 0 && rc != PC_ENOMEM)
            where_hint(a, err);
    } else if (a->kind == PC_ACT_NC_SOURCE_UPDATE) {
        rc = pc_nocodb_update_source(s->nocodb, base_id, a->source_id, a->alias, &conn, err);
        if (rc != 0 && rc != PC_ENOMEM)
            where_hint(a, err);
    } else if (a->kind == PC_ACT_NC_SOURCE_DELETE) {
        rc = pc_nocodb_delete_source(s->nocodb, base_id, a->source_id, err);
    } else if (a->kind == PC_ACT_NC_META_SYNC) {
        rc = pc_nocodb_meta_sync(s->nocodb, base_id, a->source_id, PC_APPLY_NOCODB_JOB_TIMEOUT_S,
                                 err);
    } else {
        rc = not_nocodb(a, err);
    }
done:
    free(id);
    return rc;
}

static bool is_acl_kind(pc_action_kind k)
{
    return k == PC_ACT_ACL_CREATE || k == PC_ACT_ACL_DELETE;
}

static bool is_topic_kind(pc_action_kind k)
{
    return k == PC_ACT_TOPIC_CREATE || k == PC_ACT_TOPIC_PARTITIONS || k == PC_ACT_TOPIC_CONFIG ||
           k == PC_ACT_TOPIC_DELETE;
}

static bool is_role_kind(pc_action_kind k)
{
    return k == PC_ACT_ROLE_CREATE || k == PC_ACT_ROLE_ALTER || k == PC_ACT_ROLE_GRANT;
}

/* Kafka: ACLs to acl.c, the rest to the topic adapter, which refuses what is not a topic's. */
static int run_kafka(pc_session *s, const pc_action *a, pc_error *err)
{
    if (is_acl_kind(a->kind)) {
        bool done = false;
        if (s->kafka == NULL)
            return pc_error_set(err, PC_EINVAL, "action on Kafka ACL '%s' but no Kafka connection",
                                a->object ? a->object : "?");
        return pc_kafka_apply_acls(s->kafka, a, 1, &done, err);
    }
    if (s->kafka == NULL)
        return pc_error_set(err, PC_EINVAL, "action on topic '%s' but no Kafka connection",
                            a->topic ? a->topic : "?");
    return pc_kafka_apply(s->kafka, a, err);
}

/* PostgreSQL: NocoDB's role to role.c (it needs the password), the rest to ddl.c, which refuses
 * what is not a schema's, table's, column's or setting's. */
static int run_postgres(pc_session *s, const pc_manifest *m, const pc_action *a, pc_error *err)
{
    if (is_role_kind(a->kind)) {
        if (s->pg == NULL)
            return pc_error_set(err, PC_EINVAL, "action on role %s but no PostgreSQL connection",
                                a->object ? a->object : "?");
        return pc_pg_apply_role(s->pg, a, m->nocodb.role_password, err);
    }
    if (s->pg == NULL)
        return pc_error_set(err, PC_EINVAL, "action on %s but no PostgreSQL connection",
                            a->object ? a->object : "?");
    return pc_pg_apply(s->pg, a, err);
}

/* Which system performs an action comes from pc_action_system_of alone; each system's runner
 * names only its own kinds (ARCHITECTURE.md, "Adding a managed object kind"). */
static int run_action(pc_session *s, const pc_manifest *m, const pc_action *a, run_state *rs,
                      pc_error *err)
{
    switch (pc_action_system_of(a->kind)) {
    case PC_SYS_NONE:
        return 0; /* a note: information only */
    case PC_SYS_KAFKA:
        return run_kafka(s, a, err);
    case PC_SYS_POSTGRES:
        return run_postgres(s, m, a, err);
    case PC_SYS_NOCODB:
        return run_nocodb(s, m, a, rs, err);
    }
    return pc_error_set(err, PC_EINVAL, "unknown action kind %d", (int)a->kind);
}

/* The keys of the manifest's config for a topic, as the inventory stores them. */
static int managed_keys(const pc_mf_topic *t, pc_kvlist *out)
{
    for (size_t i = 0; i < t->config.n; i++)
        if (pc_kvlist_add(out, t->config.items[i].key, "") != 0)
            return PC_ENOMEM;
    pc_kvlist_sort(out);
    return 0;
}

static bool same_keys(const pc_kvlist *a, const pc_kvlist *b)
{
    if (a->n != b->n)
        return false;
    pc_kvlist sa = {0};
    bool same = pc_kvlist_copy(&sa, b) == 0;
    pc_kvlist_sort(&sa);
    for (size_t i = 0; same && i < a->n; i++)
        same = pc_streq(a->items[i].key, sa.items[i].key);
    pc_kvlist_free(&sa);
    return same;
}

typedef struct keyed {
    char *key;
} keyed;

static int key_cmp(const void *x, const void *y)
{
    return strcmp(((const keyed *)x)->key, ((const keyed *)y)->key);
}

/* ACL bindings the manifest wants that exist now (observed, or created by this run) become
 * this pipeline's; deleted ones are forgotten. One statement each way, whatever the count. */
static int record_acls(pc_session *s, const pc_manifest *m, const pc_observed *o, const pc_plan *p,
                       const bool *done, pc_error *err)
{
    int rc = 0;
    pc_acl_desired *want = NULL;
    size_t nwant = 0, nrec = 0, nforget = 0;
    keyed *seen = NULL;
    const char **rec = NULL, **forget = NULL;
    char **wkeys = NULL;
    if (!o->acls_observed)
        return 0;
    if ((rc = pc_plan_acls_desired(m, &want, &nwant, err)) != 0)
        return rc;
    seen = calloc(o->nacls + p->nactions + 1, sizeof *seen);
    rec = calloc(nwant + 1, sizeof *rec);
    forget = calloc(p->nactions + 1, sizeof *forget);
    wkeys = calloc(nwant + 1, sizeof *wkeys);
    if (seen == NULL || rec == NULL || forget == NULL || wkeys == NULL)
        goto oom;
    /* what exists now: observed, plus this run's creates (their object is the canonical form) */
    size_t nseen = 0;
    for (size_t i = 0; i < o->nacls; i++)
        if ((seen[nseen++].key = pc_plan_acl_string(&o->acls[i])) == NULL)
            goto oom;
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (!done[i] || a->object == NULL)
            continue;
        if (a->kind == PC_ACT_ACL_CREATE && (seen[nseen++].key = pc_strdup(a->object)) == NULL)
            goto oom;
        if (a->kind == PC_ACT_ACL_DELETE && a->op == PC_OP_DELETE)
            forget[nforget++] = a->object;
    }
    qsort(seen, nseen, sizeof *seen, key_cmp);
    for (size_t i = 0; i < nwant; i++) {
        if ((wkeys[i] = pc_plan_acl_string(&want[i].acl)) == NULL)
            goto oom;
        keyed k = {.key = wkeys[i]};
        if (bsearch(&k, seen, nseen, sizeof *seen, key_cmp) != NULL &&
            find_owned(o, "acl", wkeys[i]) == NULL)
            rec[nrec++] = wkeys[i];
    }
    if ((rc = pc_pg_inventory_record_many(s->pg, m->name, "acl", rec, nrec, err)) == 0)
        rc = pc_pg_inventory_forget_many(s->pg, m->name, "acl", forget, nforget, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    for (size_t i = 0; seen != NULL && i < o->nacls + p->nactions; i++)
        free(seen[i].key);
    free(seen);
    for (size_t i = 0; wkeys != NULL && i < nwant; i++)
        free(wkeys[i]);
    free(wkeys);
    free(rec);
    free(forget);
    pc_plan_acls_desired_free(want, nwant);
    return rc;
}

/* Records the manifest's topics, tables and ACLs as owned by this pipeline, writing only rows
 * that differ from what was observed, so an unchanged apply writes nothing. done[i] tells
 * whether action i was performed. */
static int record_inventory(pc_session *s, const pc_manifest *m, const pc_observed *o,
                            const pc_plan *p, const bool *done, pc_error *err)
{
    int rc = 0;
    if (s->pg == NULL)
        return 0;
    for (size_t i = 0; i < m->ntopics && s->kafka != NULL; i++) {
        const pc_mf_topic *t = &m->topics[i];
        /* a topic whose create failed or was not reached is not ours yet */
        bool exists = false;
        for (size_t j = 0; j < o->ntopics && !exists; j++)
            exists = pc_streq(o->topics[j].name, t->name);
        for (size_t j = 0; j < p->nactions && !exists; j++)
            exists = done[j] && p->actions[j].kind == PC_ACT_TOPIC_CREATE &&
                     pc_streq(p->actions[j].topic, t->name);
        if (!exists)
            continue;
        pc_kvlist keys = {0};
        rc = managed_keys(t, &keys);
        const pc_obs_owned *own = find_owned(o, "topic", t->name);
        if (rc == 0 && (own == NULL || !same_keys(&keys, &own->managed_keys)))
            rc = pc_pg_inventory_record(s->pg, m->name, "topic", t->name, &keys, err);
        pc_kvlist_free(&keys);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (done[i] && a->kind == PC_ACT_TOPIC_DELETE && a->op == PC_OP_DELETE) {
            rc = pc_pg_inventory_forget(s->pg, m->name, "topic", a->topic, err);
            if (rc != 0)
                return rc;
        }
    }
    for (size_t i = 0; i < m->nschemas; i++) {
        for (size_t j = 0; j < m->schemas[i].ntables; j++) {
            char *name = pc_asprintf("%s.%s", m->schemas[i].name, m->schemas[i].tables[j].name);
            if (name == NULL)
                return pc_error_set(err, PC_ENOMEM, "out of memory");
            bool exists = false;
            for (size_t k = 0; k < o->ntables && !exists; k++)
                exists = pc_streq(o->tables[k].schema, m->schemas[i].name) &&
                         pc_streq(o->tables[k].name, m->schemas[i].tables[j].name);
            for (size_t k = 0; k < p->nactions && !exists; k++)
                exists = done[k] && p->actions[k].kind == PC_ACT_TABLE_CREATE &&
                         pc_streq(p->actions[k].schema, m->schemas[i].name) &&
                         pc_streq(p->actions[k].table, m->schemas[i].tables[j].name);
            if (exists && find_owned(o, "table", name) == NULL)
                rc = pc_pg_inventory_record(s->pg, m->name, "table", name, NULL, err);
            free(name);
            if (rc != 0)
                return rc;
        }
    }
    return s->kafka != NULL ? record_acls(s, m, o, p, done, err) : 0;
}

/* The run of ACL actions starting at i that go to Kafka in one request: same kind, performed
 * (not refused). 0 when action i is not an ACL action. */
static size_t acl_batch(const pc_plan *p, size_t i)
{
    pc_action_kind k = p->actions[i].kind;
    if (!is_acl_kind(k) || p->actions[i].op == PC_OP_REFUSED)
        return 0;
    size_t j = i;
    while (j < p->nactions && p->actions[j].kind == k && p->actions[j].op != PC_OP_REFUSED)
        j++;
    return j - i;
}

/* The length of the run of topic actions of one kind starting at i (0 when a[i] is not one):
 * sent to Kafka as one request. */
static size_t topic_batch(const pc_plan *p, size_t i)
{
    pc_action_kind k = p->actions[i].kind;
    if (!is_topic_kind(k) || p->actions[i].op == PC_OP_REFUSED)
        return 0;
    size_t j = i;
    while (j < p->nactions && p->actions[j].kind == k && p->actions[j].op != PC_OP_REFUSED)
        j++;
    return j - i;
}

int pc_apply_execute(pc_session *s, const pc_manifest *m, const pc_observed *o, const pc_plan *p,
                     pc_apply_report_fn report, void *ctx, pc_apply_result *res, pc_error *err)
{
    int rc = 0;
    bool locked = false;
    bool reload = false;
    bool *done = NULL; /* per action: performed */
    run_state rs = {0};
    memset(res, 0, sizeof *res);
    res->failed_index = SIZE_MAX;

    if (s->pg != NULL) {
        rc = pc_pg_lock(s->pg, m->name, err);
        if (rc != 0)
            goto done;
        locked = true;
    }
    done = calloc(p->nactions + 1, sizeof *done);
    if (done == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (a->op == PC_OP_REFUSED || a->kind == PC_ACT_NOTE) {
            res->skipped++;
            if (report)
                report(ctx, a, i, 1, 0.0, NULL);
            continue;
        }
        int64_t t0 = pc_mono_ms();
        size_t batch = acl_batch(p, i);
        if (batch > 0 && s->kafka != NULL) {
            /* one CreateAcls / DeleteAcls request for the whole run; each action reported */
            rc = pc_kafka_apply_acls(s->kafka, a, batch, done + i, err);
            double secs = (double)(pc_mono_ms() - t0) / 1000.0;
            for (size_t j = i; j < i + batch; j++) {
                if (done[j])
                    res->done++;
                else if (rc != 0 && res->failed_index == SIZE_MAX)
                    res->failed_index = j;
                if (report)
                    report(ctx, &p->actions[j], j, done[j] ? 0 : (rc != 0 ? rc : PC_EREFUSED), secs,
                           done[j] ? NULL : err);
            }
            if (rc != 0) {
                if (res->failed_index == SIZE_MAX)
                    res->failed_index = i; /* accepted, but not visible in time */
                break;
            }
            i += batch - 1;
            continue;
        }
        batch = topic_batch(p, i);
        if (batch > 1 && s->kafka != NULL) {
            /* one admin request for the run; each topic reported with its own outcome, and one
             * topic's failure does not hold back the others of the batch */
            pc_error *errs = calloc(batch, sizeof *errs);
            if (errs == NULL) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                break;
            }
            rc = pc_kafka_apply_topics(s->kafka, a, batch, done + i, errs, err);
            double secs = (double)(pc_mono_ms() - t0) / 1000.0;
            for (size_t j = i; j < i + batch; j++) {
                if (done[j])
                    res->done++;
                else if (res->failed_index == SIZE_MAX)
                    res->failed_index = j;
                if (report)
                    report(ctx, &p->actions[j], j, done[j] ? 0 : (errs[j - i].code ? errs[j - i].code : PC_EREFUSED), secs,
                           done[j] ? NULL : &errs[j - i]);
            }
            free(errs);
            if (rc != 0)
                break;
            i += batch - 1;
            continue;
        }
        rc = run_action(s, m, a, &rs, err);
        if (report)
            report(ctx, a, i, rc, (double)(pc_mono_ms() - t0) / 1000.0, rc != 0 ? err : NULL);
        if (rc != 0) {
            res->failed_index = i;
            break;
        }
        done[i] = true;
        res->done++;
        if (a->kind == PC_ACT_SETTING) {
            if (a->restart_required)
                res->restart_needed = true;
            else
                reload = true;
        }
    }
    /* Record what exists now even after a failure: a created topic is ours either way. */
    pc_error inv_err = {0};
    int irc = record_inventory(s, m, o, p, done, rc != 0 ? &inv_err : err);
    if (rc == 0 && irc != 0)
        rc = irc;
    if (rc == 0 && reload) {
        rc = pc_pg_reload(s->pg, err);
        res->reloaded = rc == 0;
    }
done:
    if (locked) {
        pc_error unlock_err = {0};
        pc_pg_unlock(s->pg, m->name, &unlock_err);
    }
    free(done);
    free(rs.base_id);
    return rc;
}

/* A shallow view of o holding only the topics this manifest manages (declared or owned), so a
 * snapshot does not change when someone else's topic appears. Free only view->topics. */
static int managed_view(const pc_manifest *m, const pc_observed *o, pc_observed *view,
                        pc_error *err)
{
    *view = *o;
    view->topics = NULL;
    view->ntopics = 0;
    if (o->ntopics == 0)
        return 0;
    view->topics = malloc(o->ntopics * sizeof *view->topics);
    if (view->topics == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->ntopics; i++)
        if (pc_manifest_find_topic(m, o->topics[i].name) != NULL ||
            find_owned(o, "topic", o->topics[i].name) != NULL)
            view->topics[view->ntopics++] = o->topics[i];
    return 0;
}

int pc_apply_snapshot(pc_session *s, const pc_manifest *m, const char *message,
                      pc_snapshot_result *res, pc_error *err)
{
    int rc = 0;
    pc_observed o = {0};
    char *observed_json = NULL;
    char *manifest_text = NULL;
    memset(res, 0, sizeof *res);
    if (!m->git.declared)
        return 0;
    rc = pc_session_observe(s, m, &o, err);
    if (rc != 0)
        goto done;
    pc_observed view;
    rc = managed_view(m, &o, &view, err);
    if (rc != 0)
        goto done;
    rc = pc_observed_to_json(&view, &observed_json, err);
    free(view.topics);
    if (rc != 0)
        goto done;
    rc = pc_manifest_redacted_text(m, &manifest_text, err);
    if (rc != 0)
        goto done;
    rc = pc_gitops_snapshot(&m->git, m->name, manifest_text, observed_json, message, res, err);
done:
    free(observed_json);
    free(manifest_text);
    pc_observed_free(&o);
    return rc;
}
