/* plan_equal.c: is a saved plan exactly the plan computed now? apply of a plan file re-plans
 * from the manifest and the live state and runs the file only when this says yes, so whoever
 * can edit the file between review and apply cannot add, drop, reorder or change an action
 * (an ALTER SYSTEM SET archive_command, say). Every field a plan file carries is compared,
 * including what is only shown (changes, reason): what was reviewed is what runs. */
#include "plan.h"
#include "plan_int.h"

#include <stdlib.h>
#include <string.h>

/* Longest value quoted in a reason; longer ones are cut and their length stated. */
#define SHOW_MAX 120

/* A value for a one-line message: quoted, control characters and quotes escaped, long values
 * cut; NULL is "null" (unset). */
static void show(pc_buf *b, const char *s)
{
    if (s == NULL) {
        pc_buf_puts(b, "null");
        return;
    }
    size_t len = strlen(s);
    pc_buf_puts(b, "\"");
    for (size_t i = 0; i < len && i < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            pc_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            pc_buf_printf(b, "\\x%02x", c);
        else
            pc_buf_append(b, (const char *)&c, 1);
    }
    pc_buf_puts(b, "\"");
    if (len > SHOW_MAX)
        pc_buf_printf(b, "... (%zu bytes)", len);
}

/* "actions[3] (setting \"archive_command\")": which action, for people. */
static void where(pc_buf *b, size_t i, const pc_action *a)
{
    pc_buf_printf(b, "actions[%zu] (%s ", i, pc_plan_kind_name(a->kind));
    show(b, a->object);
    pc_buf_puts(b, ")");
}

/* "<where>: FIELD is X in the saved plan, Y now". */
static void differs(pc_buf *b, size_t i, const pc_action *a, const char *field, const char *x,
                    const char *y)
{
    where(b, i, a);
    pc_buf_printf(b, ": %s is ", field);
    show(b, x);
    pc_buf_puts(b, " in the saved plan, ");
    show(b, y);
    pc_buf_puts(b, " now");
}

static void differs_int(pc_buf *b, size_t i, const pc_action *a, const char *field, long x, long y)
{
    where(b, i, a);
    pc_buf_printf(b, ": %s is %ld in the saved plan, %ld now", field, x, y);
}

static const pc_kv *kv_find(const pc_kvlist *l, const char *key)
{
    for (size_t j = 0; j < l->n; j++)
        if (pc_streq(l->items[j].key, key))
            return &l->items[j];
    return NULL;
}

/* Topic configs are a set (CreateTopics and AlterConfigs have no order): the same keys with the
 * same values. Keys are unique on both sides (the plan builds them from maps; the plan file
 * loader rejects duplicate keys). */
static bool configs_equal(pc_buf *b, size_t i, const pc_action *x, const pc_action *y)
{
    for (size_t k = 0; k < x->configs.n; k++) {
        const pc_kv *kv = &x->configs.items[k];
        const pc_kv *other = kv_find(&y->configs, kv->key);
        if (other != NULL && pc_streq(kv->value, other->value))
            continue;
        where(b, i, x);
        pc_buf_puts(b, ": configs[");
        show(b, kv->key);
        pc_buf_puts(b, "] is ");
        show(b, kv->value);
        pc_buf_puts(b, " in the saved plan, ");
        if (other != NULL)
            show(b, other->value);
        else
            pc_buf_puts(b, "not set");
        pc_buf_puts(b, " now");
        return false;
    }
    for (size_t j = 0; j < y->configs.n; j++) {
        const pc_kv *kv = &y->configs.items[j];
        if (kv_find(&x->configs, kv->key) != NULL)
            continue;
        where(b, i, x);
        pc_buf_puts(b, ": configs[");
        show(b, kv->key);
        pc_buf_puts(b, "] is not set in the saved plan, ");
        show(b, kv->value);
        pc_buf_puts(b, " now");
        return false;
    }
    return true;
}

static const char *tf(bool v)
{
    return v ? "true" : "false";
}

/* The first differing member of a list element ("columns[2].type"), described in b. */
typedef struct member {
    const char *name;
    const char *x, *y;
} member;

static bool members_equal(pc_buf *b, size_t i, const pc_action *a, const char *list, size_t k,
                          const member *m, size_t n)
{
    for (size_t f = 0; f < n; f++) {
        if (pc_streq(m[f].x, m[f].y))
            continue;
        char *name = list != NULL ? pc_asprintf("%s[%zu].%s", list, k, m[f].name) : NULL;
        differs(b, i, a, name != NULL ? name : m[f].name, m[f].x, m[f].y);
        free(name);
        return false;
    }
    return true;
}

/* One action against another, field by field in the order of the plan file; on the first
 * difference, describes it in b and returns false. */
static bool action_equal(pc_buf *b, size_t i, const pc_action *x, const pc_action *y)
{
    /* op as written (a note's op is "note" whatever the enum says) and kind first: with either
     * different, the rest would only be noise */
    if (strcmp(pc_plan_op_name(x), pc_plan_op_name(y)) != 0) {
        differs(b, i, x, "op", pc_plan_op_name(x), pc_plan_op_name(y));
        return false;
    }
    if (x->kind != y->kind) {
        differs(b, i, x, "kind", pc_plan_kind_name(x->kind), pc_plan_kind_name(y->kind));
        return false;
    }
    const member strs[] = {
        {"system", x->system, y->system},
        {"object", x->object, y->object},
        {"topic", x->topic, y->topic},
        {"schema", x->schema, y->schema},
        {"table", x->table, y->table},
        {"setting", x->setting, y->setting},
        {"value", x->value, y->value},
        {"role", x->role, y->role},
        {"privileges", x->privileges, y->privileges},
        {"base", x->base, y->base},
        {"base_id", x->base_id, y->base_id},
        {"source_id", x->source_id, y->source_id},
        {"alias", x->alias, y->alias},
        {"host", x->host, y->host},
        {"database", x->database, y->database},
        {"acl.principal", x->acl.principal, y->acl.principal},
        {"acl.resource", x->acl.resource, y->acl.resource},
        {"acl.name", x->acl.name, y->acl.name},
        {"acl.pattern", x->acl.pattern, y->acl.pattern},
        {"acl.operation", x->acl.operation, y->acl.operation},
        {"acl.permission", x->acl.permission, y->acl.permission},
        {"acl.host", x->acl.host, y->acl.host},
    };
    if (!members_equal(b, i, x, NULL, 0, strs, sizeof strs / sizeof strs[0]))
        return false;
    const struct {
        const char *name;
        long x, y;
    } ints[] = {
        {"partitions", x->partitions, y->partitions},
        {"replication_factor", x->replication_factor, y->replication_factor},
        {"port", x->port, y->port},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (ints[k].x != ints[k].y) {
            differs_int(b, i, x, ints[k].name, ints[k].x, ints[k].y);
            return false;
        }
    }
    if (x->restart_required != y->restart_required) {
        differs(b, i, x, "restart_required", tf(x->restart_required), tf(y->restart_required));
        return false;
    }
    if (!configs_equal(b, i, x, y))
        return false;
    if (x->ncolumns != y->ncolumns) {
        differs_int(b, i, x, "the number of columns", (long)x->ncolumns, (long)y->ncolumns);
        return false;
    }
    for (size_t k = 0; k < x->ncolumns; k++) {
        const pc_mf_column *cx = &x->columns[k], *cy = &y->columns[k];
        const member m[] = {{"name", cx->name, cy->name},
                            {"type", cx->type, cy->type},
                            {"nullable", tf(cx->nullable), tf(cy->nullable)},
                            {"primary_key", tf(cx->primary_key), tf(cy->primary_key)}};
        if (!members_equal(b, i, x, "columns", k, m, sizeof m / sizeof m[0]))
            return false;
    }
    if (x->nchanges != y->nchanges) {
        differs_int(b, i, x, "the number of changes shown", (long)x->nchanges, (long)y->nchanges);
        return false;
    }
    for (size_t k = 0; k < x->nchanges; k++) {
        const pc_change *cx = &x->changes[k], *cy = &y->changes[k];
        const member m[] = {
            {"key", cx->key, cy->key}, {"from", cx->from, cy->from}, {"to", cx->to, cy->to}};
        if (!members_equal(b, i, x, "changes", k, m, sizeof m / sizeof m[0]))
            return false;
    }
    if (!pc_streq(x->reason, y->reason)) {
        differs(b, i, x, "reason", x->reason, y->reason);
        return false;
    }
    return true;
}

static void describe_count(pc_buf *b, const pc_plan *saved, const pc_plan *now)
{
    if (saved->nactions != now->nactions)
        pc_buf_printf(b, "the saved plan has %zu action(s), the plan computed now %zu; ",
                      saved->nactions, now->nactions);
}

bool pc_plan_equal(const pc_plan *saved, const pc_plan *now, char **why)
{
    pc_buf b = {0};
    pc_buf detail = {0};
    bool equal = true;
    if (why != NULL)
        *why = NULL;
    if (saved == NULL || now == NULL) {
        equal = saved == now;
        if (!equal)
            pc_buf_puts(&b, saved == NULL ? "there is no saved plan" : "there is no plan now");
        goto done;
    }
    if (!pc_streq(saved->pipeline, now->pipeline)) {
        pc_buf_puts(&b, "pipeline is ");
        show(&b, saved->pipeline);
        pc_buf_puts(&b, " in the saved plan, ");
        show(&b, now->pipeline);
        pc_buf_puts(&b, " now");
        equal = false;
        goto done;
    }
    if (strcmp(saved->fingerprint, now->fingerprint) != 0) {
        pc_buf_printf(&b,
                      "the fingerprint of the observed state is %.12s in the saved plan, %.12s "
                      "now (Kafka, PostgreSQL or NocoDB changed)",
                      saved->fingerprint, now->fingerprint);
        equal = false;
        goto done;
    }
    size_t n = saved->nactions < now->nactions ? saved->nactions : now->nactions;
    for (size_t i = 0; i < n && equal; i++)
        equal = action_equal(&detail, i, &saved->actions[i], &now->actions[i]);
    if (!equal) {
        describe_count(&b, saved, now);
        if (detail.data != NULL)
            pc_buf_puts(&b, detail.data);
    } else if (saved->nactions != now->nactions) {
        equal = false;
        describe_count(&b, saved, now);
        if (saved->nactions > n) {
            where(&b, n, &saved->actions[n]);
            pc_buf_printf(&b, ", %s, is in the saved plan but not planned now",
                          pc_plan_op_name(&saved->actions[n]));
        } else {
            where(&b, n, &now->actions[n]);
            pc_buf_printf(&b, ", %s, is planned now but not in the saved plan",
                          pc_plan_op_name(&now->actions[n]));
        }
    }
done:
    if (!equal && why != NULL)
        *why = b.data != NULL ? pc_buf_detach(&b) : NULL;
    pc_buf_free(&detail);
    pc_buf_free(&b);
    return equal;
}
