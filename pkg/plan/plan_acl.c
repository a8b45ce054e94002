/* plan_acl.c: Kafka ACLs as code. The desired bindings (kafka.acls, one binding per operation,
 * plus each worker's least privileges under kafka.derive_acls) against the bindings the cluster
 * holds: missing ones are created; bindings pipectl recorded as its own (inventory kind "acl",
 * named by the canonical string) that are no longer wanted are deleted with --allow-delete;
 * anything else is left alone, with a note when it concerns a principal the manifest manages.
 * Pure: no I/O.
 *
 * Bindings are compared as their canonical strings through a small hash set, so a plan over a
 * few thousand ACLs stays linear. */
#include "plan.h"
#include "plan_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- vocabulary ---------- */

static const char *const resources[] = {"topic", "group", "cluster", "transactional_id", NULL};
static const char *const patterns[] = {"literal", "prefixed", NULL};
static const char *const operations[] = {"all",
                                         "read",
                                         "write",
                                         "create",
                                         "delete",
                                         "alter",
                                         "describe",
                                         "cluster_action",
                                         "describe_configs",
                                         "alter_configs",
                                         "idempotent_write",
                                         NULL};
static const char *const permissions[] = {"allow", "deny", NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; s != NULL && list[i] != NULL; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

const char *pc_plan_acl_invalid(const pc_acl *a)
{
    if (a->principal == NULL || strchr(a->principal, ':') == NULL || a->principal[0] == ':')
        return "principal";
    if (!in_list(a->resource, resources))
        return "resource";
    if (a->name == NULL || a->name[0] == '\0')
        return "name";
    if (!in_list(a->pattern, patterns))
        return "pattern";
    if (!in_list(a->operation, operations))
        return "operation";
    if (!in_list(a->permission, permissions))
        return "permission";
    if (a->host == NULL || a->host[0] == '\0')
        return "host";
    return NULL;
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "?";
}

char *pc_plan_acl_string(const pc_acl *a)
{
    return pc_asprintf("%s %s %s %s:%s (%s) host %s", nz(a->principal), nz(a->permission),
                       nz(a->operation), nz(a->resource), nz(a->name), nz(a->pattern), nz(a->host));
}

bool pc_plan_acl_equal(const pc_acl *a, const pc_acl *b)
{
    return pc_streq(a->principal, b->principal) && pc_streq(a->resource, b->resource) &&
           pc_streq(a->name, b->name) && pc_streq(a->pattern, b->pattern) &&
           pc_streq(a->operation, b->operation) && pc_streq(a->permission, b->permission) &&
           pc_streq(a->host, b->host);
}

void pc_acl_dispose(pc_acl *a)
{
    if (a == NULL)
        return;
    free(a->principal);
    free(a->resource);
    free(a->name);
    free(a->pattern);
    free(a->operation);
    free(a->permission);
    free(a->host);
    memset(a, 0, sizeof *a);
}

int pc_plan_acl_copy(pc_acl *dst, const pc_acl *src)
{
    pc_acl_dispose(dst);
    if ((dst->principal = pc_strdup(src->principal)) == NULL && src->principal != NULL)
        goto oom;
    if ((dst->resource = pc_strdup(src->resource)) == NULL && src->resource != NULL)
        goto oom;
    if ((dst->name = pc_strdup(src->name)) == NULL && src->name != NULL)
        goto oom;
    if ((dst->pattern = pc_strdup(src->pattern)) == NULL && src->pattern != NULL)
        goto oom;
    if ((dst->operation = pc_strdup(src->operation)) == NULL && src->operation != NULL)
        goto oom;
    if ((dst->permission = pc_strdup(src->permission)) == NULL && src->permission != NULL)
        goto oom;
    if ((dst->host = pc_strdup(src->host)) == NULL && src->host != NULL)
        goto oom;
    return 0;
oom:
    pc_acl_dispose(dst);
    return PC_ENOMEM;
}

/* ---------- a set of borrowed strings (open addressing, FNV-1a) ---------- */

typedef struct strset {
    const char **slots;
    size_t cap; /* power of two, at least twice the number of entries */
    size_t n;
} strset;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int strset_init(strset *s, size_t expected)
{
    s->cap = 16;
    while (s->cap < expected * 2 + 2)
        s->cap *= 2;
    s->n = 0;
    s->slots = calloc(s->cap, sizeof *s->slots);
    return s->slots == NULL ? PC_ENOMEM : 0;
}

static void strset_free(strset *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* Adds str (borrowed) unless present; true when added. The caller sizes the set (strset_init)
 * for every string it will add: it does not grow. */
static bool strset_add(strset *s, const char *str)
{
    size_t i = (size_t)fnv1a(str) & (s->cap - 1);
    while (s->slots[i] != NULL) {
        if (strcmp(s->slots[i], str) == 0)
            return false;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = str;
    s->n++;
    return true;
}

static bool strset_has(const strset *s, const char *str)
{
    if (str == NULL || s->slots == NULL)
        return false;
    size_t i = (size_t)fnv1a(str) & (s->cap - 1);
    while (s->slots[i] != NULL) {
        if (strcmp(s->slots[i], str) == 0)
            return true;
        i = (i + 1) & (s->cap - 1);
    }
    return false;
}

/* ---------- desired bindings ---------- */

typedef struct dlist {
    pc_acl_desired *items;
    size_t n;
    size_t cap;
    char **keys; /* canonical strings, parallel to items (for dedup) */
    strset seen;
} dlist;

static void dlist_free(dlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    pc_plan_acls_desired_free(l->items, l->n); /* items NULL once handed over */
    strset_free(&l->seen);
    memset(l, 0, sizeof *l);
}

/* Appends a binding unless an identical one is already there. Strings are copied. */
static int dlist_add(dlist *l, const char *principal, const char *resource, const char *name,
                     const char *pattern, const char *operation, const char *permission,
                     const char *host, bool derived, const char *worker_kind, const char *worker,
                     pc_pos pos)
{
    pc_acl want = {.principal = (char *)principal,
                   .resource = (char *)resource,
                   .name = (char *)name,
                   .pattern = (char *)pattern,
                   .operation = (char *)operation,
                   .permission = (char *)permission,
                   .host = (char *)host};
    char *key = pc_plan_acl_string(&want);
    if (key == NULL)
        return PC_ENOMEM;
    if (strset_has(&l->seen, key)) {
        free(key);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        pc_acl_desired *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            free(key);
            return PC_ENOMEM;
        }
        l->items = items;
        char **keys = realloc(l->keys, cap * sizeof *keys);
        if (keys == NULL) {
            free(key);
            return PC_ENOMEM;
        }
        l->keys = keys;
        l->cap = cap;
        /* rehash into a set sized for the new capacity (the keys stay where they are) */
        strset grown;
        if (strset_init(&grown, cap) != 0) {
            free(key);
            return PC_ENOMEM;
        }
        for (size_t i = 0; i < l->n; i++)
            strset_add(&grown, l->keys[i]);
        strset_free(&l->seen);
        l->seen = grown;
    }
    pc_acl_desired *d = &l->items[l->n];
    memset(d, 0, sizeof *d);
    if (pc_plan_acl_copy(&d->acl, &want) != 0) {
        free(key);
        return PC_ENOMEM;
    }
    d->derived = derived;
    d->worker_kind = worker_kind;
    d->worker = worker;
    d->pos = pos;
    l->keys[l->n++] = key;
    strset_add(&l->seen, key);
    return 0;
}

static int derive_topic(dlist *l, const char *principal, const char *topic, const char *op1,
                        const char *op2, const char *kind, const char *worker, pc_pos pos)
{
    int rc = dlist_add(l, principal, "topic", topic, "literal", op1, "allow", "*", true, kind,
                       worker, pos);
    if (rc == 0 && op2 != NULL)
        rc = dlist_add(l, principal, "topic", topic, "literal", op2, "allow", "*", true, kind,
                       worker, pos);
    return rc;
}

/* A derived binding is skipped for a worker without a principal, or one that runs as the
 * controller (which administers the cluster and needs no grant from itself). */
static bool derive_for(const pc_manifest *m, const char *principal)
{
    return principal != NULL && principal[0] != '\0' &&
           !pc_streq(principal, m->kafka_auth.principal);
}

static int desired_build(const pc_manifest *m, dlist *l, pc_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < m->nacls; i++) {
        const pc_mf_acl *e = &m->acls[i];
        const char *host = e->host != NULL ? e->host : "*";
        for (size_t k = 0; k < e->noperations; k++) {
            pc_acl check = {.principal = e->principal,
                            .resource = e->resource,
                            .name = e->name,
                            .pattern = e->pattern,
                            .operation = e->operations[k],
                            .permission = e->permission,
                            .host = (char *)host};
            const char *bad = pc_plan_acl_invalid(&check);
            if (bad != NULL)
                return pc_error_set(err, PC_EINVAL,
                                    "%s:%d:%d: kafka.acls entry: invalid or missing %s",
                                    m->file ? m->file : "manifest", e->pos.line, e->pos.col, bad);
            if ((rc = dlist_add(l, e->principal, e->resource, e->name, e->pattern, e->operations[k],
                                e->permission, host, false, NULL, NULL, e->pos)) != 0)
                return rc;
        }
    }
    if (!m->derive_acls)
        return 0;
    for (size_t i = 0; i < m->nsources; i++) {
        const pc_mf_source *s = &m->sources[i];
        if (!derive_for(m, s->auth.principal) || s->topic == NULL)
            continue;
        if ((rc = derive_topic(l, s->auth.principal, s->topic, "write", "describe", "source",
                               s->name, s->pos)) != 0)
            return rc;
    }
    for (size_t i = 0; i < m->nsinks; i++) {
        const pc_mf_sink *s = &m->sinks[i];
        if (!derive_for(m, s->auth.principal))
            continue;
        if (s->topic != NULL && (rc = derive_topic(l, s->auth.principal, s->topic, "read",
                                                   "describe", "sink", s->name, s->pos)) != 0)
            return rc;
        char *group = pc_manifest_sink_group(m, s);
        if (group == NULL)
            return PC_ENOMEM;
        rc = dlist_add(l, s->auth.principal, "group", group, "literal", "read", "allow", "*", true,
                       "sink", s->name, s->pos);
        free(group);
        if (rc != 0)
            return rc;
        if (s->dead_letter != NULL &&
            (rc = derive_topic(l, s->auth.principal, s->dead_letter, "write", "describe", "sink",
                               s->name, s->pos)) != 0)
            return rc;
    }
    return 0;
}

int pc_plan_acls_desired(const pc_manifest *m, pc_acl_desired **out, size_t *n, pc_error *err)
{
    dlist l = {0};
    *out = NULL;
    *n = 0;
    int rc = strset_init(&l.seen, 16);
    if (rc == 0)
        rc = desired_build(m, &l, err);
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory while planning the Kafka ACLs of '%s'",
                     m->name ? m->name : "?");
    if (rc == 0) {
        *out = l.items;
        *n = l.n;
        l.items = NULL; /* handed over; dlist_free frees the keys and the set */
    }
    dlist_free(&l);
    return rc;
}

void pc_plan_acls_desired_free(pc_acl_desired *d, size_t n)
{
    for (size_t i = 0; d != NULL && i < n; i++)
        pc_acl_dispose(&d[i].acl);
    free(d);
}

/* ---------- what the manifest manages among the observed bindings ---------- */

typedef struct acl_ctx {
    pc_acl_desired *want;
    size_t nwant;
    char **want_keys;  /* canonical strings of want */
    char **obs_keys;   /* canonical strings of o->acls */
    strset want_set;   /* want_keys */
    strset obs_set;    /* obs_keys */
    strset owned;      /* inventory names of kind "acl" (borrowed from o) */
    strset principals; /* principals of want (borrowed) */
} acl_ctx;

static void ctx_free(acl_ctx *c)
{
    for (size_t i = 0; c->want_keys != NULL && i < c->nwant; i++)
        free(c->want_keys[i]);
    free(c->want_keys);
    pc_plan_acls_desired_free(c->want, c->nwant);
    strset_free(&c->want_set);
    strset_free(&c->obs_set);
    strset_free(&c->owned);
    strset_free(&c->principals);
    c->want = NULL;
    c->want_keys = NULL;
}

static void obs_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++)
        free(keys[i]);
    free(keys);
}

static int ctx_init(acl_ctx *c, const pc_manifest *m, const pc_observed *o, pc_error *err)
{
    int rc = pc_plan_acls_desired(m, &c->want, &c->nwant, err);
    if (rc != 0)
        return rc;
    if (strset_init(&c->want_set, c->nwant) != 0 || strset_init(&c->obs_set, o->nacls) != 0 ||
        strset_init(&c->owned, o->nowned) != 0 || strset_init(&c->principals, c->nwant) != 0)
        goto oom;
    c->want_keys = calloc(c->nwant + 1, sizeof *c->want_keys);
    c->obs_keys = calloc(o->nacls + 1, sizeof *c->obs_keys);
    if (c->want_keys == NULL || c->obs_keys == NULL)
        goto oom;
    for (size_t i = 0; i < c->nwant; i++) {
        if ((c->want_keys[i] = pc_plan_acl_string(&c->want[i].acl)) == NULL)
            goto oom;
        strset_add(&c->want_set, c->want_keys[i]);
        strset_add(&c->principals, c->want[i].acl.principal);
    }
    for (size_t i = 0; i < o->nacls; i++) {
        if ((c->obs_keys[i] = pc_plan_acl_string(&o->acls[i])) == NULL)
            goto oom;
        strset_add(&c->obs_set, c->obs_keys[i]);
    }
    for (size_t i = 0; i < o->nowned; i++)
        if (pc_streq(o->owned[i].kind, "acl") && o->owned[i].name != NULL)
            strset_add(&c->owned, o->owned[i].name);
    return 0;
oom:
    return pc_error_set(err, PC_ENOMEM, "out of memory while planning the Kafka ACLs of '%s'",
                        m->name ? m->name : "?");
}

int pc_plan_acls_managed(const pc_manifest *m, const pc_observed *o, bool *keep, pc_error *err)
{
    acl_ctx c = {0};
    int rc = ctx_init(&c, m, o, err);
    for (size_t i = 0; rc == 0 && i < o->nacls; i++)
        keep[i] =
            strset_has(&c.principals, o->acls[i].principal) || strset_has(&c.owned, c.obs_keys[i]);
    obs_keys_free(c.obs_keys, o->nacls);
    ctx_free(&c);
    return rc;
}

/* ---------- actions ---------- */

/* "kafka.acls (pipeline.yaml:12:7)" or "kafka.derive_acls: sink users_to_pg (pipeline.yaml:30:5)"
 */
static char *declared_by(const pc_manifest *m, const pc_acl_desired *d)
{
    char where[64] = "";
    if (d->pos.line > 0)
        snprintf(where, sizeof where, ":%d:%d", d->pos.line, d->pos.col);
    const char *file = m->file ? m->file : "manifest";
    if (d->derived)
        return pc_asprintf("kafka.derive_acls: %s %s (%s%s)", d->worker_kind, nz(d->worker), file,
                           where);
    return pc_asprintf("kafka.acls (%s%s)", file, where);
}

static pc_action *acl_action(plan_alist *l, pc_op op, pc_action_kind kind, const char *key,
                             const pc_acl *acl)
{
    pc_action *a = plan_alist_push(l, op, kind, "kafka", key);
    if (a == NULL || pc_plan_acl_copy(&a->acl, acl) != 0)
        return NULL;
    return a;
}

typedef struct keyed {
    const char *key;
    size_t index;
} keyed;

static int keyed_cmp(const void *x, const void *y)
{
    return strcmp(((const keyed *)x)->key, ((const keyed *)y)->key);
}

int plan_acls(const pc_manifest *m, const pc_observed *o, const pc_plan_opts *opts,
              plan_alist *main, plan_alist *deletes, pc_error *err)
{
    acl_ctx c = {0};
    keyed *order = NULL;
    int rc = ctx_init(&c, m, o, err);
    if (rc != 0)
        goto done;
    for (size_t i = 0; i < c.nwant; i++) {
        if (strset_has(&c.obs_set, c.want_keys[i]))
            continue;
        pc_action *a =
            acl_action(main, PC_OP_CREATE, PC_ACT_ACL_CREATE, c.want_keys[i], &c.want[i].acl);
        char *why = declared_by(m, &c.want[i]);
        if (a == NULL || why == NULL || plan_add_change(a, "declared by", NULL, why) != 0) {
            free(why);
            rc = PC_ENOMEM;
            goto done;
        }
        free(why);
    }
    /* bindings present but not wanted, in canonical order so plans are stable */
    order = calloc(o->nacls + 1, sizeof *order);
    if (order == NULL) {
        rc = PC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < o->nacls; i++)
        order[i] = (keyed){.key = c.obs_keys[i], .index = i};
    qsort(order, o->nacls, sizeof *order, keyed_cmp);
    for (size_t k = 0; k < o->nacls; k++) {
        size_t i = order[k].index;
        const char *key = c.obs_keys[i];
        if (strset_has(&c.want_set, key))
            continue;
        pc_action *a = NULL;
        if (strset_has(&c.owned, key)) {
            bool allow = opts->allow_delete;
            a = acl_action(deletes, allow ? PC_OP_DELETE : PC_OP_REFUSED, PC_ACT_ACL_DELETE, key,
                           &o->acls[i]);
            if (a == NULL ||
                (!allow &&
                 plan_set_reason(a, pc_asprintf("Kafka ACL '%s' is no longer declared; deleting "
                                                "it takes access away from %s and needs "
                                                "--allow-delete",
                                                key, nz(o->acls[i].principal))) != 0)) {
                rc = PC_ENOMEM;
                goto done;
            }
        } else if (strset_has(&c.principals, o->acls[i].principal)) {
            /* a binding pipectl's vocabulary cannot name is shown but not carried */
            static const pc_acl none = {0};
            const pc_acl *carry = pc_plan_acl_invalid(&o->acls[i]) == NULL ? &o->acls[i] : &none;
            a = acl_action(main, PC_OP_CHANGE, PC_ACT_NOTE, key, carry);
            if (a == NULL ||
                plan_set_reason(a, pc_asprintf("Kafka ACL '%s' is not in the manifest; it is not "
                                               "in pipectl's inventory, so it is left alone",
                                               key)) != 0) {
                rc = PC_ENOMEM;
                goto done;
            }
        }
    }
done:
    free(order);
    obs_keys_free(c.obs_keys, o->nacls);
    ctx_free(&c);
    return rc;
}
