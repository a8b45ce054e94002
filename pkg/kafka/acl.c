/* acl.c: Kafka ACLs through librdkafka's admin API (DescribeAcls, CreateAcls, DeleteAcls; there
 * since librdkafka 1.9). The plan core speaks the manifest's lower-case words ("topic",
 * "prefixed", "write", "allow"); this file maps them to librdkafka's enums and back.
 *
 * librdkafka 2.0.2 knows the resource types topic, group and "broker" (wire value 4, which Kafka
 * calls CLUSTER); it refuses to build a binding or filter for a transactional id (wire value 5),
 * so those can be observed but not created or deleted here.
 *
 * Writes are batched: all creates of a plan go in one CreateAcls request, all deletes in one
 * DeleteAcls request (one exact filter per binding), and apply then waits (bounded) until
 * DescribeAcls shows the result, so that the next plan sees it. */
#include "kafka.h"
#include "kafka_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------- vocabulary ---------- */

typedef struct word {
    const char *name;
    int value;
} word;

static const word resource_words[] = {{"topic", RD_KAFKA_RESOURCE_TOPIC},
                                      {"group", RD_KAFKA_RESOURCE_GROUP},
                                      {"cluster", RD_KAFKA_RESOURCE_BROKER},
                                      {"transactional_id", 5}, /* not in librdkafka 2.0.2's enum */
                                      {NULL, 0}};
static const word pattern_words[] = {{"literal", RD_KAFKA_RESOURCE_PATTERN_LITERAL},
                                     {"prefixed", RD_KAFKA_RESOURCE_PATTERN_PREFIXED},
                                     {NULL, 0}};
static const word operation_words[] = {
    {"all", RD_KAFKA_ACL_OPERATION_ALL},
    {"read", RD_KAFKA_ACL_OPERATION_READ},
    {"write", RD_KAFKA_ACL_OPERATION_WRITE},
    {"create", RD_KAFKA_ACL_OPERATION_CREATE},
    {"delete", RD_KAFKA_ACL_OPERATION_DELETE},
    {"alter", RD_KAFKA_ACL_OPERATION_ALTER},
    {"describe", RD_KAFKA_ACL_OPERATION_DESCRIBE},
    {"cluster_action", RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION},
    {"describe_configs", RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS},
    {"alter_configs", RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS},
    {"idempotent_write", RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE},
    {NULL, 0}};
static const word permission_words[] = {{"allow", RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW},
                                        {"deny", RD_KAFKA_ACL_PERMISSION_TYPE_DENY},
                                        {NULL, 0}};

static const char *word_name(const word *w, int value)
{
    for (; w->name != NULL; w++)
        if (w->value == value)
            return w->name;
    return "unknown";
}

/* -1 when name is not in the list. */
static int word_value(const word *w, const char *name)
{
    for (; name != NULL && w->name != NULL; w++)
        if (strcmp(w->name, name) == 0)
            return w->value;
    return -1;
}

/* ---------- errors ---------- */

/* "Kafka at X refused to create ACL 'B': <broker text> (<err2str>)", or, when no answer came,
 * "Kafka at X did not answer ...". what is the binding's canonical string or a description. */
static int acl_error(pc_kafka *k, pc_error *err, rd_kafka_resp_err_t e, const char *detail,
                     const char *verb, const char *what, int wait_ms)
{
    const char *es = rd_kafka_err2str(e);
    bool extra = detail != NULL && *detail != '\0' && strcmp(detail, es) != 0;
    int code = code_for(e);
    if (code == PC_EUNAVAIL) {
        char secs[32], lastlog[512];
        fmt_secs(secs, sizeof secs, wait_ms);
        last_log(k, lastlog, sizeof lastlog);
        return pc_error_set(err, PC_EUNAVAIL,
                            "Kafka at %s did not answer a request to %s %s within %s (%s%s%s%s%s): "
                            "check that the broker is running and reachable, then retry",
                            k->bootstrap, verb, what, secs, es, extra ? "; " : "",
                            extra ? detail : "", lastlog[0] ? "; last client error: " : "",
                            lastlog);
    }
    const char *hint = "";
    if (e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
        hint = ": the controller's principal (kafka.security) needs ALTER on the cluster to "
               "change ACLs and DESCRIBE to read them";
    return pc_error_set(err, code, "Kafka at %s refused to %s %s: %s%s%s%s%s", k->bootstrap, verb,
                        what, extra ? detail : es, extra ? " (" : "", extra ? es : "",
                        extra ? ")" : "", hint);
}

static int oom(pc_kafka *k, pc_error *err)
{
    return pc_error_set(err, PC_ENOMEM, "out of memory preparing a Kafka ACL request to %s",
                        k->bootstrap);
}

/* ---------- DescribeAcls ---------- */

static int copy_binding(pc_acl *dst, const rd_kafka_AclBinding_t *b)
{
    const char *principal = rd_kafka_AclBinding_principal(b);
    const char *name = rd_kafka_AclBinding_name(b);
    const char *host = rd_kafka_AclBinding_host(b);
    dst->principal = pc_strdup(principal ? principal : "");
    dst->resource = pc_strdup(word_name(resource_words, (int)rd_kafka_AclBinding_restype(b)));
    dst->name = pc_strdup(name ? name : "");
    dst->pattern =
        pc_strdup(word_name(pattern_words, (int)rd_kafka_AclBinding_resource_pattern_type(b)));
    dst->operation = pc_strdup(word_name(operation_words, (int)rd_kafka_AclBinding_operation(b)));
    dst->permission =
        pc_strdup(word_name(permission_words, (int)rd_kafka_AclBinding_permission_type(b)));
    dst->host = pc_strdup(host ? host : "");
    if (dst->principal == NULL || dst->resource == NULL || dst->name == NULL ||
        dst->pattern == NULL || dst->operation == NULL || dst->permission == NULL ||
        dst->host == NULL) {
        pc_acl_dispose(dst);
        return PC_ENOMEM;
    }
    return 0;
}

/* Every binding in the cluster, as broker `broker` (-1: the one librdkafka picks) sees it.
 * *disabled (when not NULL) is set, and 0 returned, when the cluster has no authorizer;
 * otherwise that is an error. */
static int describe_all(pc_kafka *k, int32_t broker, pc_acl **out, size_t *nout, bool *disabled,
                        pc_error *err)
{
    int rc = 0;
    char errstr[512];
    rd_kafka_AclBindingFilter_t *filter = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    pc_acl *acls = NULL;
    size_t n = 0;
    int tmo = k->timeout_ms;
    *out = NULL;
    *nout = 0;
    if (disabled != NULL)
        *disabled = false;

    filter = rd_kafka_AclBindingFilter_new(
        RD_KAFKA_RESOURCE_ANY, NULL, RD_KAFKA_RESOURCE_PATTERN_ANY, NULL, NULL,
        RD_KAFKA_ACL_OPERATION_ANY, RD_KAFKA_ACL_PERMISSION_TYPE_ANY, errstr, sizeof errstr);
    if (filter == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "cannot list the ACLs of Kafka at %s: %s", k->bootstrap,
                          errstr);
        goto done;
    }
    if ((rc = admin_options(k, RD_KAFKA_ADMIN_OP_DESCRIBEACLS, tmo, false, &opts, err)) != 0)
        goto done;
    if (broker >= 0 && rd_kafka_AdminOptions_set_broker(opts, broker, errstr, sizeof errstr)) {
        rc = pc_error_set(err, PC_EINVAL, "cannot ask broker %d of Kafka at %s: %s", (int)broker,
                          k->bootstrap, errstr);
        goto done;
    }
    if ((q = rd_kafka_queue_new(k->rk)) == NULL) {
        rc = oom(k, err);
        goto done;
    }
    clear_last_log(k);
    rd_kafka_DescribeAcls(k->rk, filter, opts, q);
    ev = await_result(q, RD_KAFKA_EVENT_DESCRIBEACLS_RESULT, tmo);
    if (ev == NULL) {
        rc = acl_error(k, err, RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, "list", "its ACLs",
                       tmo + PC_KAFKA_QUEUE_SLACK_MS);
        goto done;
    }
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (e == RD_KAFKA_RESP_ERR_SECURITY_DISABLED && disabled != NULL) {
        *disabled = true;
        goto done;
    }
    if (e == RD_KAFKA_RESP_ERR_SECURITY_DISABLED) {
        rc = pc_error_set(err, PC_EREFUSED,
                          "Kafka at %s has no authorizer (authorizer.class.name unset): "
                          "kafka.acls cannot be applied (%s); configure an authorizer on the "
                          "brokers or remove kafka.acls and kafka.derive_acls from the manifest",
                          k->bootstrap, rd_kafka_event_error_string(ev));
        goto done;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = acl_error(k, err, e, rd_kafka_event_error_string(ev), "list", "its ACLs", tmo);
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_AclBinding_t **bs =
        rd_kafka_DescribeAcls_result_acls(rd_kafka_event_DescribeAcls_result(ev), &cnt);
    if (cnt > 0 && (acls = calloc(cnt, sizeof *acls)) == NULL) {
        rc = oom(k, err);
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        if (copy_binding(&acls[n], bs[i]) != 0) {
            rc = oom(k, err);
            goto done;
        }
        n++;
    }
    *out = acls;
    *nout = n;
    acls = NULL;
    n = 0;
done:
    for (size_t i = 0; i < n; i++)
        pc_acl_dispose(&acls[i]);
    free(acls);
    admin_release(ev, q, opts);
    if (filter != NULL)
        rd_kafka_AclBinding_destroy(filter);
    return rc;
}

static void acls_free(pc_acl *acls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pc_acl_dispose(&acls[i]);
    free(acls);
}

int pc_kafka_observe_acls(pc_kafka *k, bool required, pc_observed *o, pc_error *err)
{
    bool disabled = false;
    pc_acl *acls = NULL;
    size_t n = 0;
    int rc = describe_all(k, -1, &acls, &n, required ? NULL : &disabled, err);
    if (rc != 0 || disabled)
        return rc;
    acls_free(o->acls, o->nacls);
    o->acls = acls;
    o->nacls = n;
    o->acls_observed = true;
    return 0;
}

/* ---------- CreateAcls / DeleteAcls ---------- */

/* The enums of a binding; PC_EINVAL naming the field when librdkafka cannot express it. */
static int binding_enums(pc_kafka *k, const pc_action *a, int v[4], pc_error *err)
{
    const pc_acl *acl = &a->acl;
    const char *bad = pc_plan_acl_invalid(acl);
    if (bad != NULL)
        return pc_error_set(err, PC_EINVAL, "ACL action on %s for Kafka at %s has an invalid %s",
                            a->object ? a->object : "?", k->bootstrap, bad);
    v[0] = word_value(resource_words, acl->resource);
    v[1] = word_value(pattern_words, acl->pattern);
    v[2] = word_value(operation_words, acl->operation);
    v[3] = word_value(permission_words, acl->permission);
    if (v[0] == 5)
        return pc_error_set(err, PC_EINVAL,
                            "cannot change ACL '%s' on Kafka at %s: librdkafka %s has no "
                            "transactional_id resource type; use kafka-acls.sh for it",
                            a->object ? a->object : "?", k->bootstrap, rd_kafka_version_str());
    return 0;
}

/* A short description of a batch for messages about the whole request. */
static void batch_what(const pc_action *a, size_t n, char *buf, size_t len)
{
    if (n == 1)
        snprintf(buf, len, "ACL '%s'", a[0].object ? a[0].object : "?");
    else
        snprintf(buf, len, "%zu ACLs (the first: '%s')", n, a[0].object ? a[0].object : "?");
}

static int keyed_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The ids of the live brokers (at most max). */
static size_t live_brokers(pc_kafka *k, int32_t *ids, size_t max)
{
    const struct rd_kafka_metadata *md = NULL;
    size_t n = 0;
    if (rd_kafka_metadata(k->rk, 0, NULL, &md, k->timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < md->broker_cnt && n < max; i++)
        ids[n++] = md->brokers[i].id;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* How many of a[i] with done[i] the listing of one broker disagrees with (listed != present);
 * *example is one of them. -1 when out of memory. */
static long count_missing(const pc_acl *acls, size_t nacls, const pc_action *a, size_t n,
                          const bool *done, bool present, const char **example)
{
    char **keys = calloc(nacls + 1, sizeof *keys);
    long missing = 0;
    for (size_t i = 0; keys != NULL && i < nacls; i++)
        if ((keys[i] = pc_plan_acl_string(&acls[i])) == NULL)
            missing = -1;
    if (keys == NULL)
        return -1;
    if (missing == 0) {
        qsort(keys, nacls, sizeof *keys, keyed_cmp);
        for (size_t i = 0; i < n; i++) {
            if (!done[i])
                continue;
            const char *key = a[i].object;
            bool listed = bsearch(&key, keys, nacls, sizeof *keys, keyed_cmp) != NULL;
            if (listed != present) {
                missing++;
                *example = a[i].object;
            }
        }
    }
    for (size_t i = 0; i < nacls; i++)
        free(keys[i]);
    free(keys);
    return missing;
}

/* Waits (bounded) until every live broker lists every binding of a[i] with done[i] (present)
 * or none of them (absent). KRaft brokers apply ACL changes from the metadata log each on its
 * own: a worker started right after apply talks to any of them, so apply ends only when all of
 * them enforce the change. */
static int wait_acls(pc_kafka *k, const pc_action *a, size_t n, const bool *done, bool present,
                     const char *verb, pc_error *err)
{
    int64_t deadline = pc_mono_ms() + PC_KAFKA_OP_TIMEOUT_MS;
    int pause_ms = 0;
    long missing = 0;
    int32_t brokers[64], lagging = -1;
    const char *example = NULL;
    for (;;) {
        size_t nb = live_brokers(k, brokers, sizeof brokers / sizeof brokers[0]);
        int rc = nb == 0 ? PC_EUNAVAIL : 0;
        missing = 0;
        for (size_t b = 0; b < nb && rc == 0 && missing == 0; b++) {
            pc_acl *acls = NULL;
            size_t nacls = 0;
            pc_error e2 = {0};
            rc = describe_all(k, brokers[b], &acls, &nacls, NULL, &e2);
            if (rc == PC_ENOMEM)
                return oom(k, err);
            if (rc == 0)
                missing = count_missing(acls, nacls, a, n, done, present, &example);
            acls_free(acls, nacls);
            if (missing < 0)
                return oom(k, err);
            if (missing > 0)
                lagging = brokers[b];
        }
        if (rc == 0 && missing == 0)
            return 0;
        if (!poll_pause(&pause_ms, deadline))
            break;
    }
    char secs[32];
    fmt_secs(secs, sizeof secs, PC_KAFKA_OP_TIMEOUT_MS);
    return pc_error_set(err, PC_EUNAVAIL,
                        "Kafka at %s accepted the request to %s %zu ACL(s) but broker %d did not "
                        "show the change within %s (%ld not yet, e.g. '%s'): check the broker "
                        "logs, then run plan again",
                        k->bootstrap, verb, n, (int)lagging, secs, missing,
                        example ? example : "?");
}

int pc_kafka_apply_acls(pc_kafka *k, const pc_action *a, size_t n, bool *done, pc_error *err)
{
    int rc = 0;
    char errstr[512], what[768];
    rd_kafka_AclBinding_t **bs = NULL; /* bindings (create) or filters (delete) */
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int tmo = PC_KAFKA_OP_TIMEOUT_MS;
    bool create = n > 0 && a[0].kind == PC_ACT_ACL_CREATE;
    const char *verb = create ? "create" : "delete";

    for (size_t i = 0; i < n; i++)
        done[i] = false;
    if (n == 0)
        return 0;
    if ((bs = calloc(n, sizeof *bs)) == NULL)
        return oom(k, err);
    for (size_t i = 0; i < n; i++) {
        int v[4] = {0, 0, 0, 0};
        if (a[i].kind != a[0].kind ||
            (a[i].kind != PC_ACT_ACL_CREATE && a[i].kind != PC_ACT_ACL_DELETE)) {
            rc = pc_error_set(err, PC_EINVAL,
                              "the Kafka ACL batch for %s mixes kinds or holds a non-ACL action "
                              "(%s)",
                              k->bootstrap, a[i].object ? a[i].object : "?");
            goto done;
        }
        if ((rc = binding_enums(k, &a[i], v, err)) != 0)
            goto done;
        const pc_acl *acl = &a[i].acl;
        if (create)
            bs[i] = rd_kafka_AclBinding_new(
                (rd_kafka_ResourceType_t)v[0], acl->name, (rd_kafka_ResourcePatternType_t)v[1],
                acl->principal, acl->host, (rd_kafka_AclOperation_t)v[2],
                (rd_kafka_AclPermissionType_t)v[3], errstr, sizeof errstr);
        else
            bs[i] = rd_kafka_AclBindingFilter_new(
                (rd_kafka_ResourceType_t)v[0], acl->name, (rd_kafka_ResourcePatternType_t)v[1],
                acl->principal, acl->host, (rd_kafka_AclOperation_t)v[2],
                (rd_kafka_AclPermissionType_t)v[3], errstr, sizeof errstr);
        if (bs[i] == NULL) {
            rc = pc_error_set(err, PC_EINVAL, "cannot %s ACL '%s' on Kafka at %s: %s", verb,
                              a[i].object ? a[i].object : "?", k->bootstrap, errstr);
            goto done;
        }
    }
    if ((rc = admin_options(k, create ? RD_KAFKA_ADMIN_OP_CREATEACLS : RD_KAFKA_ADMIN_OP_DELETEACLS,
                            tmo, false, &opts, err)) != 0)
        goto done;
    if ((q = rd_kafka_queue_new(k->rk)) == NULL) {
        rc = oom(k, err);
        goto done;
    }
    batch_what(a, n, what, sizeof what);
    clear_last_log(k);
    if (create)
        rd_kafka_CreateAcls(k->rk, bs, n, opts, q);
    else
        rd_kafka_DeleteAcls(k->rk, bs, n, opts, q);
    ev = await_result(
        q, create ? RD_KAFKA_EVENT_CREATEACLS_RESULT : RD_KAFKA_EVENT_DELETEACLS_RESULT, tmo);
    if (ev == NULL) {
        rc = acl_error(k, err, RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, verb, what,
                       tmo + PC_KAFKA_QUEUE_SLACK_MS);
        goto done;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = acl_error(k, err, rd_kafka_event_error(ev), rd_kafka_event_error_string(ev), verb,
                       what, tmo);
        goto done;
    }
    size_t cnt = 0;
    /* one result per binding or filter, in request order */
    if (create) {
        const rd_kafka_acl_result_t **rr =
            rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &cnt);
        for (size_t i = 0; i < cnt && i < n; i++) {
            const rd_kafka_error_t *e = rd_kafka_acl_result_error(rr[i]);
            done[i] = e == NULL || rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_NO_ERROR;
            if (!done[i] && rc == 0) {
                snprintf(what, sizeof what, "ACL '%s'", a[i].object ? a[i].object : "?");
                rc = acl_error(k, err, rd_kafka_error_code(e), rd_kafka_error_string(e), verb, what,
                               tmo);
            }
        }
    } else {
        const rd_kafka_DeleteAcls_result_response_t **rr =
            rd_kafka_DeleteAcls_result_responses(rd_kafka_event_DeleteAcls_result(ev), &cnt);
        for (size_t i = 0; i < cnt && i < n; i++) {
            /* no matching binding is fine: it is gone either way */
            const rd_kafka_error_t *e = rd_kafka_DeleteAcls_result_response_error(rr[i]);
            done[i] = e == NULL || rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_NO_ERROR;
            if (!done[i] && rc == 0) {
                snprintf(what, sizeof what, "ACL '%s'", a[i].object ? a[i].object : "?");
                rc = acl_error(k, err, rd_kafka_error_code(e), rd_kafka_error_string(e), verb, what,
                               tmo);
            }
        }
    }
    if (rc == 0 && cnt < n) {
        for (size_t i = 0; i < n; i++)
            done[i] = false;
        rc = pc_error_set(err, PC_EREFUSED,
                          "Kafka at %s answered %zu of %zu ACL(s) in its answer to the request to "
                          "%s them: run plan again to see the ACLs' state",
                          k->bootstrap, cnt, n, verb);
    }
    if (rc == 0)
        rc = wait_acls(k, a, n, done, create, verb, err);
done:
    admin_release(ev, q, opts);
    if (bs != NULL) {
        for (size_t i = 0; i < n; i++)
            if (bs[i] != NULL)
                rd_kafka_AclBinding_destroy(bs[i]);
        free(bs);
    }
    return rc;
}
