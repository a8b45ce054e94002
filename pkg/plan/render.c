/* render.c: a plan as text for people (terraform-like) and as JSON for machines and plan files.
 *
 * Plan JSON, format_version "1" (also the plan file format; pc_plan_load_json reads it back and
 * rendering a loaded plan gives the same bytes):
 *
 *   {
 *     "format_version": "1",
 *     "pipeline": "users",                       metadata.name of the manifest
 *     "fingerprint": "<64 hex>",                 SHA-256 of the observed state the plan was made
 *                                                from; apply refuses a plan whose fingerprint no
 *                                                longer matches the live systems (stale plan)
 *     "changes_present": true,                   false when only notes (or nothing) remain
 *     "summary": {"create": 1, "change": 2, "delete": 0, "refused": 1},   notes not counted
 *     "actions": [                               in execution order
 *       {
 *         "op": "create" | "change" | "delete" | "refused" | "note",
 *         "kind": "topic_create" | "topic_partitions" | "topic_config" | "topic_delete" |
 *                 "schema_create" | "table_create" | "column_add" | "column_type" |
 *                 "column_nullable" | "column_drop" | "setting" | "note",
 *         "system": "kafka" | "postgres" | "nocodb",
 *         "object": "users_created" | "raw" | "raw.users" | "raw.users.email" | "archive_mode",
 *         "changes": [{"key": "retention.ms", "from": "604800000", "to": "86400000"}],
 *                                                what differs; from null = unset, to null = reset
 *                                                to the default
 *         "reason": "..." | null,                why refused, what a note or warning means
 *         "restart_required": false,             setting takes effect only after a restart
 *         payload, present when set:
 *         "topic": "users_created",              topic_* kinds
 *         "partitions": 6,                       topic_create, topic_partitions (new total)
 *         "replication_factor": 1,               topic_create
 *         "configs": {"retention.ms": "86400000"},  topic_create: configs to create with;
 *                                                topic_config: the COMPLETE set of topic overrides
 *                                                to send (unmanaged overrides kept); always present
 *                                                for these two kinds; a null value is kept unknown
 *         "schema": "raw", "table": "users",     schema_create, table_create, column_*
 *         "columns": [{"name": "id", "type": "uuid", "nullable": false, "primary_key": true}],
 *                                                table_create: all columns; column_*: the one
 *                                                column with its new type / nullability
 *         "setting": "archive_mode",             setting (and notes about a setting)
 *         "value": "on" | null                   setting: the value to set (null = reset)
 *         "role": "nocodb_reader",               role_*: NocoDB's Postgres role; nocodb source
 *                                                create/update: the user NocoDB connects as
 *         "privileges": "SELECT",                role_grant: "CONNECT" (database) or a subset of
 *                                                "SELECT,INSERT,UPDATE,DELETE" (schema)
 *         "database": "app",                     role_grant on the database; nocodb sources
 *         "base": "Users", "base_id": "p...",    nocodb_*: the base title and (when it exists
 *                                                already) its id
 *         "alias": "users_raw",                  nocodb sources and meta syncs
 *         "source_id": "b...",                   nocodb source update/delete, meta sync
 *         "host": "127.0.0.1", "port": 5432      nocodb source create/update: Postgres as NocoDB
 *                                                reaches it
 *       }
 *
 *   Kinds added for NocoDB: "role_create", "role_alter", "role_grant" (system "postgres"),
 *   "nocodb_base_create", "nocodb_source_create", "nocodb_source_update",
 *   "nocodb_source_delete", "nocodb_meta_sync" (system "nocodb"). No action holds a password:
 *   apply reads nocodb.role_password from the manifest; changes show "(from manifest, redacted)".
 *
 *   Kinds added for Kafka ACLs (system "kafka"): "acl_create", "acl_delete"; their object is the
 *   binding's canonical string ("User:ingest allow write topic:users_created (literal) host *",
 *   also its inventory name) and they carry
 *         "acl": {"principal": "User:ingest", "resource": "topic", "name": "users_created",
 *                 "pattern": "literal", "operation": "write", "permission": "allow",
 *                 "host": "*"}                   every field required, in the kafka.acls
 *                                                vocabulary; load checks that object matches it
 *   A create's changes hold {"key": "declared by", "from": null, "to": "kafka.acls (FILE:L:C)"}
 *   or "kafka.derive_acls: sink NAME (FILE:L:C)". A note about an ACL pipectl leaves alone
 *   carries "acl" too.
 *     ]
 *   }
 *
 * "op": "note" goes with "kind": "note" and nothing else: a note changes nothing (a restart
 * still pending, a column pipectl does not own). Unknown fields are rejected on load. */
#include "plan.h"
#include "plan_int.h"

#include <stdlib.h>
#include <string.h>

/* JSON building helpers shared with observed.c: a failure is remembered in *ok. */
void plan_json_put(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (obj == NULL) {
        json_decref(v);
        *ok = false;
    } else if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        *ok = false;
    }
}

void plan_json_push(json_t *arr, json_t *v, bool *ok)
{
    if (arr == NULL) {
        json_decref(v);
        *ok = false;
    } else if (v == NULL || json_array_append_new(arr, v) != 0) {
        *ok = false;
    }
}

const char *pc_plan_op_name(const pc_action *a)
{
    if (a->kind == PC_ACT_NOTE)
        return "note";
    switch (a->op) {
    case PC_OP_CREATE:
        return "create";
    case PC_OP_CHANGE:
        return "change";
    case PC_OP_DELETE:
        return "delete";
    case PC_OP_REFUSED:
        return "refused";
    }
    return "?";
}

const char *pc_plan_kind_name(pc_action_kind k)
{
    switch (k) {
    case PC_ACT_TOPIC_CREATE:
        return "topic_create";
    case PC_ACT_TOPIC_PARTITIONS:
        return "topic_partitions";
    case PC_ACT_TOPIC_CONFIG:
        return "topic_config";
    case PC_ACT_TOPIC_DELETE:
        return "topic_delete";
    case PC_ACT_SCHEMA_CREATE:
        return "schema_create";
    case PC_ACT_TABLE_CREATE:
        return "table_create";
    case PC_ACT_COLUMN_ADD:
        return "column_add";
    case PC_ACT_COLUMN_TYPE:
        return "column_type";
    case PC_ACT_COLUMN_NULLABLE:
        return "column_nullable";
    case PC_ACT_COLUMN_DROP:
        return "column_drop";
    case PC_ACT_SETTING:
        return "setting";
    case PC_ACT_NOTE:
        return "note";
    case PC_ACT_ROLE_CREATE:
        return "role_create";
    case PC_ACT_ROLE_ALTER:
        return "role_alter";
    case PC_ACT_ROLE_GRANT:
        return "role_grant";
    case PC_ACT_NC_BASE_CREATE:
        return "nocodb_base_create";
    case PC_ACT_NC_SOURCE_CREATE:
        return "nocodb_source_create";
    case PC_ACT_NC_SOURCE_UPDATE:
        return "nocodb_source_update";
    case PC_ACT_NC_SOURCE_DELETE:
        return "nocodb_source_delete";
    case PC_ACT_NC_META_SYNC:
        return "nocodb_meta_sync";
    case PC_ACT_ACL_CREATE:
        return "acl_create";
    case PC_ACT_ACL_DELETE:
        return "acl_delete";
    }
    return "?";
}

/* ---------- text ---------- */

const char *pc_action_noun(pc_action_kind k)
{
    switch (k) {
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
        return "topic";
    case PC_ACT_SCHEMA_CREATE:
        return "schema";
    case PC_ACT_TABLE_CREATE:
        return "table";
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
        return "column";
    case PC_ACT_SETTING:
        return "setting";
    case PC_ACT_NOTE:
        return "note";
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
        return "role";
    case PC_ACT_ROLE_GRANT:
        return "grant";
    case PC_ACT_NC_BASE_CREATE:
        return "base";
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
        return "source";
    case PC_ACT_NC_META_SYNC:
        return "meta sync of source";
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        return "acl";
    }
    return "object";
}

static const char *symbol(pc_op op)
{
    switch (op) {
    case PC_OP_CREATE:
        return "+";
    case PC_OP_CHANGE:
        return "~";
    case PC_OP_DELETE:
        return "-";
    case PC_OP_REFUSED:
        return "!";
    }
    return "?";
}

static const char *color_of(pc_op op)
{
    switch (op) {
    case PC_OP_CREATE:
        return "\033[32m";
    case PC_OP_CHANGE:
        return "\033[33m";
    case PC_OP_DELETE:
        return "\033[31m";
    case PC_OP_REFUSED:
        return "\033[1;31m";
    }
    return "";
}

static int column_line(pc_buf *b, const pc_mf_column *c)
{
    return pc_buf_printf(b, "    %s %s%s\n", c->name ? c->name : "?", c->type ? c->type : "?",
                         c->primary_key ? " primary key" : (!c->nullable ? " not null" : ""));
}

/* The kinds added for NocoDB (and ACLs): a change without a "from" is shown as "key: value". */
static bool role_or_nocodb(pc_action_kind k)
{
    return k >= PC_ACT_ROLE_CREATE;
}

static int change_lines(pc_buf *b, const pc_action *a)
{
    bool quote = a->kind == PC_ACT_TOPIC_CONFIG;
    for (size_t i = 0; i < a->nchanges; i++) {
        const pc_change *c = &a->changes[i];
        if (c->from == NULL && c->to != NULL && role_or_nocodb(a->kind)) {
            if (pc_buf_printf(b, "    %s: %s\n", c->key ? c->key : "?", c->to) != 0)
                return PC_ENOMEM;
            continue;
        }
        int rc = pc_buf_printf(b, "    %s: ", c->key ? c->key : "?");
        if (rc == 0)
            rc = c->from == NULL ? pc_buf_puts(b, "(unset)")
                                 : pc_buf_printf(b, quote ? "\"%s\"" : "%s", c->from);
        if (rc == 0)
            rc = pc_buf_puts(b, " -> ");
        if (rc == 0)
            rc = c->to == NULL ? pc_buf_puts(b, quote ? "(reset to the broker default)" : "(reset)")
                               : pc_buf_printf(b, quote ? "\"%s\"" : "%s", c->to);
        if (rc == 0)
            rc = pc_buf_puts(b, "\n");
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int render_action(pc_buf *b, const pc_action *a, bool color)
{
    int rc = 0;
    const char *on = color ? color_of(a->op) : "";
    const char *off = color ? "\033[0m" : "";
    const char *obj = a->object ? a->object : "?";
    const char *sys = a->system ? a->system : "?";

    if (a->kind == PC_ACT_NOTE)
        return pc_buf_printf(b, "  note: %s\n", a->reason ? a->reason : obj);

    if (a->kind == PC_ACT_SETTING && a->op != PC_OP_REFUSED && a->nchanges == 1) {
        const pc_change *c = &a->changes[0];
        rc = pc_buf_printf(b, "%s%s %s setting %s: %s -> %s%s%s\n", on, symbol(a->op), sys, obj,
                           c->from ? c->from : "(unset)", c->to ? c->to : "(reset)",
                           a->restart_required ? " (restart required)" : "", off);
        if (rc == 0 && a->reason != NULL)
            rc = pc_buf_printf(b, "    warning: %s\n", a->reason);
        return rc;
    }

    rc = pc_buf_printf(b, "%s%s %s %s %s", on, symbol(a->op), sys, pc_action_noun(a->kind), obj);
    if (rc == 0 && a->kind == PC_ACT_TOPIC_CREATE)
        rc = pc_buf_printf(b, " (partitions=%d, replication_factor=%d)", a->partitions,
                           a->replication_factor);
    if (rc == 0 && a->kind == PC_ACT_COLUMN_ADD && a->ncolumns > 0 && a->op != PC_OP_REFUSED)
        rc = pc_buf_printf(b, " %s%s", a->columns[0].type ? a->columns[0].type : "?",
                           a->columns[0].primary_key ? " primary key"
                           : !a->columns[0].nullable ? " not null"
                                                     : "");
    if (rc == 0 && a->op == PC_OP_REFUSED && a->reason != NULL)
        rc = pc_buf_printf(b, ": %s", a->reason);
    if (rc == 0)
        rc = pc_buf_printf(b, "%s\n", off);
    if (rc != 0)
        return rc;

    if (a->kind == PC_ACT_TOPIC_CREATE)
        for (size_t i = 0; rc == 0 && i < a->configs.n; i++)
            rc = pc_buf_printf(b, "    %s: %s\n", a->configs.items[i].key,
                               a->configs.items[i].value ? a->configs.items[i].value : "(unknown)");
    if (a->kind == PC_ACT_TABLE_CREATE)
        for (size_t i = 0; rc == 0 && i < a->ncolumns; i++)
            rc = column_line(b, &a->columns[i]);
    if (rc == 0)
        rc = change_lines(b, a);
    if (rc == 0 && a->op != PC_OP_REFUSED && a->reason != NULL)
        rc = pc_buf_printf(b, "    %s: %s\n", a->kind == PC_ACT_NC_META_SYNC ? "why" : "warning",
                           a->reason);
    return rc;
}

int pc_plan_render_text(const pc_plan *p, bool color, char **out, pc_error *err)
{
    pc_buf b = {0};
    int rc = 0;
    *out = NULL;
    for (size_t i = 0; rc == 0 && i < p->nactions; i++)
        rc = render_action(&b, &p->actions[i], color);
    if (rc == 0 && p->nactions > 0)
        rc = pc_buf_puts(&b, "\n");
    if (rc == 0) {
        if (pc_plan_has_changes(p)) {
            size_t c, ch, d, r;
            pc_plan_summary(p, &c, &ch, &d, &r);
            rc = pc_buf_printf(&b,
                               "Plan: %zu to create, %zu to change, %zu to delete, %zu refused.\n",
                               c, ch, d, r);
        } else {
            rc = pc_buf_puts(&b, "No changes. Kafka and Postgres match the manifest.\n");
        }
    }
    if (rc != 0) {
        pc_buf_free(&b);
        return pc_error_set(err, PC_ENOMEM, "out of memory while rendering the plan");
    }
    *out = pc_buf_detach(&b);
    return 0;
}

/* ---------- JSON ---------- */

static json_t *jstr(const char *s)
{
    return s == NULL ? json_null() : json_string(s);
}

static json_t *action_json(const pc_action *a)
{
    bool ok = true;
    json_t *j = json_object();
    plan_json_put(j, "op", json_string(pc_plan_op_name(a)), &ok);
    plan_json_put(j, "kind", json_string(pc_plan_kind_name(a->kind)), &ok);
    plan_json_put(j, "system", jstr(a->system), &ok);
    plan_json_put(j, "object", jstr(a->object), &ok);
    json_t *changes = json_array();
    for (size_t i = 0; i < a->nchanges; i++) {
        json_t *c = json_object();
        plan_json_put(c, "key", jstr(a->changes[i].key), &ok);
        plan_json_put(c, "from", jstr(a->changes[i].from), &ok);
        plan_json_put(c, "to", jstr(a->changes[i].to), &ok);
        plan_json_push(changes, c, &ok);
    }
    plan_json_put(j, "changes", changes, &ok);
    plan_json_put(j, "reason", jstr(a->reason), &ok);
    plan_json_put(j, "restart_required", json_boolean(a->restart_required), &ok);
    if (a->topic != NULL)
        plan_json_put(j, "topic", jstr(a->topic), &ok);
    if (a->partitions != 0)
        plan_json_put(j, "partitions", json_integer(a->partitions), &ok);
    if (a->replication_factor != 0)
        plan_json_put(j, "replication_factor", json_integer(a->replication_factor), &ok);
    if (a->kind == PC_ACT_TOPIC_CREATE || a->kind == PC_ACT_TOPIC_CONFIG || a->configs.n > 0) {
        json_t *cfg = json_object();
        for (size_t i = 0; i < a->configs.n; i++)
            plan_json_put(cfg, a->configs.items[i].key, jstr(a->configs.items[i].value), &ok);
        plan_json_put(j, "configs", cfg, &ok);
    }
    if (a->schema != NULL)
        plan_json_put(j, "schema", jstr(a->schema), &ok);
    if (a->table != NULL)
        plan_json_put(j, "table", jstr(a->table), &ok);
    if (a->ncolumns > 0) {
        json_t *cols = json_array();
        for (size_t i = 0; i < a->ncolumns; i++) {
            json_t *c = json_object();
            plan_json_put(c, "name", jstr(a->columns[i].name), &ok);
            plan_json_put(c, "type", jstr(a->columns[i].type), &ok);
            plan_json_put(c, "nullable", json_boolean(a->columns[i].nullable), &ok);
            plan_json_put(c, "primary_key", json_boolean(a->columns[i].primary_key), &ok);
            plan_json_push(cols, c, &ok);
        }
        plan_json_put(j, "columns", cols, &ok);
    }
    if (a->setting != NULL)
        plan_json_put(j, "setting", jstr(a->setting), &ok);
    if (a->kind == PC_ACT_SETTING || a->value != NULL)
        plan_json_put(j, "value", jstr(a->value), &ok);
    const struct {
        const char *key;
        const char *val;
    } strs[] = {{"role", a->role},       {"privileges", a->privileges}, {"base", a->base},
                {"base_id", a->base_id}, {"source_id", a->source_id},   {"alias", a->alias},
                {"host", a->host},       {"database", a->database}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i].val != NULL)
            plan_json_put(j, strs[i].key, jstr(strs[i].val), &ok);
    if (a->port != 0)
        plan_json_put(j, "port", json_integer(a->port), &ok);
    if (a->acl.principal != NULL) {
        json_t *acl = json_object();
        plan_json_put(acl, "principal", jstr(a->acl.principal), &ok);
        plan_json_put(acl, "resource", jstr(a->acl.resource), &ok);
        plan_json_put(acl, "name", jstr(a->acl.name), &ok);
        plan_json_put(acl, "pattern", jstr(a->acl.pattern), &ok);
        plan_json_put(acl, "operation", jstr(a->acl.operation), &ok);
        plan_json_put(acl, "permission", jstr(a->acl.permission), &ok);
        plan_json_put(acl, "host", jstr(a->acl.host), &ok);
        plan_json_put(j, "acl", acl, &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int pc_plan_render_json(const pc_plan *p, char **out, pc_error *err)
{
    bool ok = true;
    char *s = NULL;
    size_t c, ch, d, r;
    *out = NULL;
    pc_plan_summary(p, &c, &ch, &d, &r);
    json_t *root = json_object();
    plan_json_put(root, "format_version", json_string("1"), &ok);
    plan_json_put(root, "pipeline", jstr(p->pipeline), &ok);
    plan_json_put(root, "fingerprint", json_string(p->fingerprint), &ok);
    plan_json_put(root, "changes_present", json_boolean(pc_plan_has_changes(p)), &ok);
    json_t *sum = json_object();
    plan_json_put(sum, "create", json_integer((json_int_t)c), &ok);
    plan_json_put(sum, "change", json_integer((json_int_t)ch), &ok);
    plan_json_put(sum, "delete", json_integer((json_int_t)d), &ok);
    plan_json_put(sum, "refused", json_integer((json_int_t)r), &ok);
    plan_json_put(root, "summary", sum, &ok);
    json_t *actions = json_array();
    for (size_t i = 0; i < p->nactions; i++)
        plan_json_push(actions, action_json(&p->actions[i]), &ok);
    plan_json_put(root, "actions", actions, &ok);
    if (ok)
        s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (s == NULL)
        return pc_error_set(err, PC_ENOMEM,
                            "cannot render the plan of pipeline '%s' as JSON (out of memory or a "
                            "value that is not UTF-8)",
                            p->pipeline ? p->pipeline : "?");
    *out = pc_asprintf("%s\n", s);
    free(s);
    if (*out == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory while rendering the plan");
    return 0;
}
