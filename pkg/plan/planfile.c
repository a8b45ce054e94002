/* planfile.c: reads a plan back from its JSON rendering (format in render.c), checking every field
 * so that a hand-edited or truncated plan file is rejected with a message naming the field,
 * never half-applied. */
#include "plan.h"
#include "plan_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
    pc_error *err;
    char path[96]; /* "actions[3].columns[0]" for messages */
} loader;

static int bad(loader *l, const char *field, const char *what)
{
    return pc_error_set(l->err, PC_EINVAL, "plan file: %s%s%s: %s", l->path, *l->path ? "." : "",
                        field, what);
}

/* Checks that obj has only the listed keys. */
static int only_keys(loader *l, json_t *obj, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; keys[i] != NULL && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known)
            return bad(l, k, "unknown field");
    }
    return 0;
}

/* Optional string (null allowed when nullable): *out stays NULL when absent or null. */
static int get_str(loader *l, json_t *obj, const char *key, bool required, bool nullable,
                   char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL)
        return required ? bad(l, key, "missing") : 0;
    if (json_is_null(v))
        return nullable ? 0 : bad(l, key, "must be a string, not null");
    if (!json_is_string(v))
        return bad(l, key, "must be a string");
    *out = pc_strdup(json_string_value(v));
    return *out == NULL ? pc_error_set(l->err, PC_ENOMEM, "out of memory") : 0;
}

static int get_bool(loader *l, json_t *obj, const char *key, bool required, bool *out)
{
    json_t *v = json_object_get(obj, key);
    *out = false;
    if (v == NULL)
        return required ? bad(l, key, "missing") : 0;
    if (!json_is_boolean(v))
        return bad(l, key, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_int(loader *l, json_t *obj, const char *key, int min, int *out)
{
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > 1000000)
        return bad(l, key, "must be a positive integer");
    *out = (int)json_integer_value(v);
    return 0;
}

static int parse_op(loader *l, const char *s, pc_action *a, bool *note)
{
    static const struct {
        const char *name;
        pc_op op;
    } ops[] = {{"create", PC_OP_CREATE},
               {"change", PC_OP_CHANGE},
               {"delete", PC_OP_DELETE},
               {"refused", PC_OP_REFUSED},
               {"note", PC_OP_CHANGE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(s, ops[i].name) == 0) {
            a->op = ops[i].op;
            *note = strcmp(s, "note") == 0;
            return 0;
        }
    }
    return bad(l, "op", "must be one of create, change, delete, refused, note");
}

static int parse_kind(loader *l, const char *s, pc_action *a)
{
    for (int k = PC_ACT_TOPIC_CREATE; k <= PC_ACT_ACL_DELETE; k++) {
        if (strcmp(s, pc_plan_kind_name((pc_action_kind)k)) == 0) {
            a->kind = (pc_action_kind)k;
            return 0;
        }
    }
    return bad(l, "kind",
               "must be one of topic_create, topic_partitions, topic_config, topic_delete, "
               "schema_create, table_create, column_add, column_type, column_nullable, "
               "column_drop, setting, note, role_create, role_alter, role_grant, "
               "nocodb_base_create, nocodb_source_create, nocodb_source_update, "
               "nocodb_source_delete, nocodb_meta_sync, acl_create, acl_delete");
}

static int load_changes(loader *l, json_t *arr, pc_action *a)
{
    static const char *const keys[] = {"key", "from", "to", NULL};
    if (arr == NULL)
        return bad(l, "changes", "missing");
    if (!json_is_array(arr))
        return bad(l, "changes", "must be an array");
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    a->changes = calloc(n, sizeof *a->changes);
    if (a->changes == NULL)
        return pc_error_set(l->err, PC_ENOMEM, "out of memory");
    size_t base = strlen(l->path);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *c = json_array_get(arr, i);
        snprintf(l->path + base, sizeof l->path - base, "%schanges[%zu]", base ? "." : "", i);
        pc_change *ch = &a->changes[a->nchanges++];
        if (!json_is_object(c))
            rc = pc_error_set(l->err, PC_EINVAL, "plan file: %s: must be an object", l->path);
        else if ((rc = only_keys(l, c, keys)) == 0 &&
                 (rc = get_str(l, c, "key", true, false, &ch->key)) == 0 &&
                 (rc = get_str(l, c, "from", true, true, &ch->from)) == 0)
            rc = get_str(l, c, "to", true, true, &ch->to);
    }
    l->path[base] = '\0';
    return rc;
}

static int load_columns(loader *l, json_t *arr, pc_action *a)
{
    static const char *const keys[] = {"name", "type", "nullable", "primary_key", NULL};
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return bad(l, "columns", "must be a non-empty array");
    size_t n = json_array_size(arr);
    a->columns = calloc(n, sizeof *a->columns);
    if (a->columns == NULL)
        return pc_error_set(l->err, PC_ENOMEM, "out of memory");
    size_t base = strlen(l->path);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *c = json_array_get(arr, i);
        snprintf(l->path + base, sizeof l->path - base, "%scolumns[%zu]", base ? "." : "", i);
        pc_mf_column *col = &a->columns[a->ncolumns++];
        if (!json_is_object(c))
            rc = pc_error_set(l->err, PC_EINVAL, "plan file: %s: must be an object", l->path);
        else if ((rc = only_keys(l, c, keys)) == 0 &&
                 (rc = get_str(l, c, "name", true, false, &col->name)) == 0 &&
                 (rc = get_str(l, c, "type", true, false, &col->type)) == 0 &&
                 (rc = get_bool(l, c, "nullable", true, &col->nullable)) == 0)
            rc = get_bool(l, c, "primary_key", true, &col->primary_key);
    }
    l->path[base] = '\0';
    return rc;
}

static int load_configs(loader *l, json_t *obj, pc_action *a)
{
    const char *k;
    json_t *v;
    if (obj == NULL) {
        if (a->kind == PC_ACT_TOPIC_CREATE || a->kind == PC_ACT_TOPIC_CONFIG)
            return bad(l, "configs", "missing");
        return 0;
    }
    if (!json_is_object(obj))
        return bad(l, "configs", "must be an object of strings");
    json_object_foreach(obj, k, v)
    {
        if (!json_is_string(v) && !json_is_null(v))
            return pc_error_set(l->err, PC_EINVAL, "plan file: %s.configs.%s: must be a string",
                                l->path, k);
        if (pc_kvlist_add(&a->configs, k, json_is_string(v) ? json_string_value(v) : NULL) != 0)
            return pc_error_set(l->err, PC_ENOMEM, "out of memory");
    }
    return 0;
}

/* "acl": an object of seven strings forming a binding in the kafka.acls vocabulary. */
static int load_acl(loader *l, json_t *obj, pc_action *a)
{
    static const char *const keys[] = {"principal", "resource",   "name", "pattern",
                                       "operation", "permission", "host", NULL};
    if (obj == NULL)
        return 0;
    if (!json_is_object(obj))
        return bad(l, "acl", "must be an object");
    size_t base = strlen(l->path);
    snprintf(l->path + base, sizeof l->path - base, "%sacl", base ? "." : "");
    int rc = 0;
    if ((rc = only_keys(l, obj, keys)) != 0 ||
        (rc = get_str(l, obj, "principal", true, false, &a->acl.principal)) != 0 ||
        (rc = get_str(l, obj, "resource", true, false, &a->acl.resource)) != 0 ||
        (rc = get_str(l, obj, "name", true, false, &a->acl.name)) != 0 ||
        (rc = get_str(l, obj, "pattern", true, false, &a->acl.pattern)) != 0 ||
        (rc = get_str(l, obj, "operation", true, false, &a->acl.operation)) != 0 ||
        (rc = get_str(l, obj, "permission", true, false, &a->acl.permission)) != 0 ||
        (rc = get_str(l, obj, "host", true, false, &a->acl.host)) != 0)
        goto done;
    const char *field = pc_plan_acl_invalid(&a->acl);
    if (field != NULL)
        rc = bad(l, field, "not a valid Kafka ACL value");
done:
    l->path[base] = '\0';
    return rc;
}

/* An ACL action executes its "acl"; the object shown to the reviewer must say the same. */
static int check_acl(loader *l, const pc_action *a)
{
    if (strcmp(a->system, "kafka") != 0)
        return bad(l, "system", "ACL actions belong to \"kafka\"");
    if (a->acl.principal == NULL)
        return bad(l, "acl", "missing");
    if (a->kind == PC_ACT_ACL_CREATE && a->op != PC_OP_CREATE)
        return bad(l, "op", "acl_create goes with op \"create\"");
    if (a->kind == PC_ACT_ACL_DELETE && a->op != PC_OP_DELETE && a->op != PC_OP_REFUSED)
        return bad(l, "op", "acl_delete goes with op \"delete\" or \"refused\"");
    char *want = pc_plan_acl_string(&a->acl);
    if (want == NULL)
        return pc_error_set(l->err, PC_ENOMEM, "out of memory");
    bool same = strcmp(want, a->object) == 0;
    free(want);
    if (!same)
        return bad(l, "object", "does not match the binding in \"acl\" (was the file edited?)");
    return 0;
}

/* "CONNECT" for a database; else a non-empty subset of SELECT,INSERT,UPDATE,DELETE in order. */
static bool privileges_ok(const char *p, bool database)
{
    static const char *const order[] = {"SELECT", "INSERT", "UPDATE", "DELETE"};
    if (database)
        return strcmp(p, "CONNECT") == 0;
    size_t next = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (; next < 4 && !found; next++)
            found = strlen(order[next]) == len && strncmp(order[next], p, len) == 0;
        if (!found)
            return false;
        p += len;
        if (*p == ',' && *++p == '\0')
            return false;
    }
    return next > 0;
}

static int check_nocodb(loader *l, const pc_action *a)
{
    if (strcmp(a->system, "nocodb") != 0)
        return bad(l, "system", "NocoDB actions belong to \"nocodb\"");
    if (a->base == NULL)
        return bad(l, "base", "missing");
    if (a->kind == PC_ACT_NC_BASE_CREATE || a->op == PC_OP_REFUSED)
        return 0;
    if (a->alias == NULL)
        return bad(l, "alias", "missing");
    if (a->kind != PC_ACT_NC_SOURCE_CREATE) {
        if (a->base_id == NULL)
            return bad(l, "base_id", "missing");
        if (a->source_id == NULL)
            return bad(l, "source_id", "missing");
    }
    if (a->kind == PC_ACT_NC_SOURCE_CREATE || a->kind == PC_ACT_NC_SOURCE_UPDATE) {
        if (a->schema == NULL)
            return bad(l, "schema", "missing");
        if (a->host == NULL)
            return bad(l, "host", "missing");
        if (a->port < 1 || a->port > 65535)
            return bad(l, "port", "must be a TCP port (1-65535)");
        if (a->database == NULL)
            return bad(l, "database", "missing");
        if (a->role == NULL)
            return bad(l, "role", "missing");
    }
    return 0;
}

/* The fields each kind needs to be executed. */
static int check_payload(loader *l, const pc_action *a, bool note)
{
    if (note != (a->kind == PC_ACT_NOTE))
        return bad(l, "op", "\"note\" goes with kind \"note\" and only with it");
    switch (a->kind) {
    case PC_ACT_TOPIC_CREATE:
        if (a->partitions < 1 || a->replication_factor < 1)
            return bad(l, "partitions",
                       "topic_create needs partitions and replication_factor >= 1");
        if (a->topic == NULL)
            return bad(l, "topic", "missing");
        return 0;
    case PC_ACT_TOPIC_PARTITIONS:
        if (a->partitions < 1)
            return bad(l, "partitions", "topic_partitions needs partitions >= 1");
        if (a->topic == NULL)
            return bad(l, "topic", "missing");
        return 0;
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE:
        return a->topic == NULL ? bad(l, "topic", "missing") : 0;
    case PC_ACT_SCHEMA_CREATE:
        return a->schema == NULL ? bad(l, "schema", "missing") : 0;
    case PC_ACT_TABLE_CREATE:
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP:
        if (a->schema == NULL)
            return bad(l, "schema", "missing");
        if (a->table == NULL)
            return bad(l, "table", "missing");
        if (a->ncolumns < 1)
            return bad(l, "columns", "missing");
        return 0;
    case PC_ACT_SETTING:
        return a->setting == NULL ? bad(l, "setting", "missing") : 0;
    case PC_ACT_NOTE:
        return 0;
    case PC_ACT_ROLE_CREATE:
    case PC_ACT_ROLE_ALTER:
    case PC_ACT_ROLE_GRANT:
        if (strcmp(a->system, "postgres") != 0)
            return bad(l, "system", "role actions belong to \"postgres\"");
        if (a->role == NULL)
            return bad(l, "role", "missing");
        if (a->kind == PC_ACT_ROLE_GRANT && a->op != PC_OP_REFUSED) {
            if (a->privileges == NULL)
                return bad(l, "privileges", "missing");
            if (a->schema == NULL && a->database == NULL)
                return bad(l, "schema", "a grant needs a schema (or a database for CONNECT)");
            if (!privileges_ok(a->privileges, a->schema == NULL))
                return bad(l, "privileges",
                           a->schema == NULL ? "must be \"CONNECT\" for a database"
                                             : "must be SELECT, INSERT, UPDATE or DELETE, in "
                                               "that order, separated by commas");
        }
        return 0;
    case PC_ACT_NC_BASE_CREATE:
    case PC_ACT_NC_SOURCE_CREATE:
    case PC_ACT_NC_SOURCE_UPDATE:
    case PC_ACT_NC_SOURCE_DELETE:
    case PC_ACT_NC_META_SYNC:
        return check_nocodb(l, a);
    case PC_ACT_ACL_CREATE:
    case PC_ACT_ACL_DELETE:
        return check_acl(l, a);
    }
    return bad(l, "kind", "unknown");
}

static int load_action(loader *l, json_t *j, pc_action *a)
{
    static const char *const keys[] = {"op",
                                       "kind",
                                       "system",
                                       "object",
                                       "changes",
                                       "reason",
                                       "restart_required",
                                       "topic",
                                       "partitions",
                                       "replication_factor",
                                       "configs",
                                       "schema",
                                       "table",
                                       "columns",
                                       "setting",
                                       "value",
                                       "role",
                                       "privileges",
                                       "base",
                                       "base_id",
                                       "source_id",
                                       "alias",
                                       "host",
                                       "port",
                                       "database",
                                       "acl",
                                       NULL};
    char *op = NULL, *kind = NULL;
    bool note = false;
    int rc = 0;
    if (!json_is_object(j)) {
        rc = pc_error_set(l->err, PC_EINVAL, "plan file: %s: must be an object", l->path);
        goto done;
    }
    if ((rc = only_keys(l, j, keys)) != 0 || (rc = get_str(l, j, "op", true, false, &op)) != 0 ||
        (rc = parse_op(l, op, a, &note)) != 0 ||
        (rc = get_str(l, j, "kind", true, false, &kind)) != 0 ||
        (rc = parse_kind(l, kind, a)) != 0 ||
        (rc = get_str(l, j, "system", true, false, &a->system)) != 0 ||
        (rc = get_str(l, j, "object", true, false, &a->object)) != 0 ||
        (rc = load_changes(l, json_object_get(j, "changes"), a)) != 0 ||
        (rc = get_str(l, j, "reason", true, true, &a->reason)) != 0 ||
        (rc = get_bool(l, j, "restart_required", true, &a->restart_required)) != 0 ||
        (rc = get_str(l, j, "topic", false, false, &a->topic)) != 0 ||
        (rc = get_int(l, j, "partitions", 1, &a->partitions)) != 0 ||
        (rc = get_int(l, j, "replication_factor", 1, &a->replication_factor)) != 0 ||
        (rc = load_configs(l, json_object_get(j, "configs"), a)) != 0 ||
        (rc = get_str(l, j, "schema", false, false, &a->schema)) != 0 ||
        (rc = get_str(l, j, "table", false, false, &a->table)) != 0 ||
        (rc = load_columns(l, json_object_get(j, "columns"), a)) != 0 ||
        (rc = get_str(l, j, "setting", false, false, &a->setting)) != 0 ||
        (rc = get_str(l, j, "value", a->kind == PC_ACT_SETTING, true, &a->value)) != 0 ||
        (rc = get_str(l, j, "role", false, false, &a->role)) != 0 ||
        (rc = get_str(l, j, "privileges", false, false, &a->privileges)) != 0 ||
        (rc = get_str(l, j, "base", false, false, &a->base)) != 0 ||
        (rc = get_str(l, j, "base_id", false, false, &a->base_id)) != 0 ||
        (rc = get_str(l, j, "source_id", false, false, &a->source_id)) != 0 ||
        (rc = get_str(l, j, "alias", false, false, &a->alias)) != 0 ||
        (rc = get_str(l, j, "host", false, false, &a->host)) != 0 ||
        (rc = get_int(l, j, "port", 1, &a->port)) != 0 ||
        (rc = get_str(l, j, "database", false, false, &a->database)) != 0 ||
        (rc = load_acl(l, json_object_get(j, "acl"), a)) != 0)
        goto done;
    if (strcmp(a->system, "kafka") != 0 && strcmp(a->system, "postgres") != 0 &&
        strcmp(a->system, "nocodb") != 0) {
        rc = bad(l, "system", "must be \"kafka\", \"postgres\" or \"nocodb\"");
        goto done;
    }
    rc = check_payload(l, a, note);
done:
    free(op);
    free(kind);
    return rc;
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static int check_summary(loader *l, json_t *root, const pc_plan *p)
{
    static const char *const keys[] = {"create", "change", "delete", "refused", NULL};
    json_t *sum = json_object_get(root, "summary");
    size_t want[4];
    pc_plan_summary(p, &want[0], &want[1], &want[2], &want[3]);
    if (sum == NULL)
        return bad(l, "summary", "missing");
    if (!json_is_object(sum))
        return bad(l, "summary", "must be an object");
    snprintf(l->path, sizeof l->path, "summary");
    int rc = only_keys(l, sum, keys);
    for (size_t i = 0; rc == 0 && i < 4; i++) {
        json_t *v = json_object_get(sum, keys[i]);
        if (v == NULL || !json_is_integer(v))
            rc = bad(l, keys[i], "must be an integer");
        else if (json_integer_value(v) != (json_int_t)want[i])
            rc = bad(l, keys[i], "does not match the actions (was the file edited?)");
    }
    l->path[0] = '\0';
    if (rc != 0)
        return rc;
    bool present = false;
    if ((rc = get_bool(l, root, "changes_present", true, &present)) != 0)
        return rc;
    if (present != pc_plan_has_changes(p))
        return bad(l, "changes_present", "does not match the actions (was the file edited?)");
    return 0;
}

int pc_plan_load_json(pc_plan **out, const char *text, size_t len, pc_error *err)
{
    static const char *const keys[] = {
        "format_version", "pipeline", "fingerprint", "changes_present", "summary", "actions", NULL};
    int rc = 0;
    json_error_t jerr;
    loader l = {.err = err};
    pc_plan *p = NULL;
    char *version = NULL, *fp = NULL;
    *out = NULL;

    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = pc_error_set(err, PC_EINVAL,
                          "plan file is not valid JSON (line %d, column %d: %s); "
                          "create it again with 'pipectl plan -out FILE'",
                          jerr.line, jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(root)) {
        rc = pc_error_set(err, PC_EINVAL, "plan file: expected a JSON object at the top level");
        goto done;
    }
    if ((rc = get_str(&l, root, "format_version", true, false, &version)) != 0)
        goto done;
    if (strcmp(version, "1") != 0) {
        rc = pc_error_set(err, PC_EINVAL,
                          "plan file: format_version \"%s\" is not supported (this pipectl reads "
                          "\"1\"); create the plan again with this pipectl",
                          version);
        goto done;
    }
    if ((rc = only_keys(&l, root, keys)) != 0)
        goto done;
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = get_str(&l, root, "pipeline", true, false, &p->pipeline)) != 0 ||
        (rc = get_str(&l, root, "fingerprint", true, false, &fp)) != 0)
        goto done;
    if (!is_hex64(fp)) {
        rc = bad(&l, "fingerprint", "must be 64 lowercase hex digits");
        goto done;
    }
    memcpy(p->fingerprint, fp, 65);
    json_t *actions = json_object_get(root, "actions");
    if (actions == NULL || !json_is_array(actions)) {
        rc = bad(&l, "actions", actions == NULL ? "missing" : "must be an array");
        goto done;
    }
    size_t n = json_array_size(actions);
    if (n > 0) {
        p->actions = calloc(n, sizeof *p->actions);
        if (p->actions == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(l.path, sizeof l.path, "actions[%zu]", i);
        p->nactions++;
        if ((rc = load_action(&l, json_array_get(actions, i), &p->actions[i])) != 0)
            goto done;
    }
    l.path[0] = '\0';
    if ((rc = check_summary(&l, root, p)) != 0)
        goto done;
    *out = p;
    p = NULL;
done:
    json_decref(root);
    free(version);
    free(fp);
    pc_plan_free(p);
    return rc;
}
