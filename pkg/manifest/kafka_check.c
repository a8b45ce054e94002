/* kafka_check.c: what validate can know about Kafka without a broker (PURE): the topic-level
 * configs Kafka 3.x documents, with the type and range of each value, and the syntax of
 * kafka.bootstrap. A broker with plugins may know more keys: topics[].config_unchecked passes
 * those through without this check. */
#include "manifest_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum cfg_type { CFG_LONG, CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_ENUM, CFG_LIST, CFG_STRING } cfg_type;

typedef struct topic_cfg {
    const char *key;
    cfg_type type;
    double lo, hi;          /* numbers: inclusive range */
    const char *const *allowed; /* enums and lists: the values Kafka accepts */
} topic_cfg;

#define LMAX 9.2e18
#define IMAX 2147483647.0

static const char *const k_cleanup[] = {"delete", "compact", NULL};
static const char *const k_compression[] = {"uncompressed", "zstd", "lz4", "snappy", "gzip",
                                            "producer", NULL};
static const char *const k_ts_type[] = {"CreateTime", "LogAppendTime", NULL};

/* Kafka 3.9's topic-level configs (TopicConfig / LogConfig), sorted by key. */
static const topic_cfg k_topic_cfgs[] = {
    {"cleanup.policy", CFG_LIST, 0, 0, k_cleanup},
    {"compression.gzip.level", CFG_INT, -1, 9, NULL},
    {"compression.lz4.level", CFG_INT, 1, 17, NULL},
    {"compression.type", CFG_ENUM, 0, 0, k_compression},
    {"compression.zstd.level", CFG_INT, -131072, 22, NULL},
    {"delete.retention.ms", CFG_LONG, 0, LMAX, NULL},
    {"file.delete.delay.ms", CFG_LONG, 0, LMAX, NULL},
    {"flush.messages", CFG_LONG, 1, LMAX, NULL},
    {"flush.ms", CFG_LONG, 0, LMAX, NULL},
    {"follower.replication.throttled.replicas", CFG_STRING, 0, 0, NULL},
    {"index.interval.bytes", CFG_INT, 0, IMAX, NULL},
    {"leader.replication.throttled.replicas", CFG_STRING, 0, 0, NULL},
    {"local.retention.bytes", CFG_LONG, -2, LMAX, NULL},
    {"local.retention.ms", CFG_LONG, -2, LMAX, NULL},
    {"max.compaction.lag.ms", CFG_LONG, 1, LMAX, NULL},
    {"max.message.bytes", CFG_INT, 0, IMAX, NULL},
    {"message.downconversion.enable", CFG_BOOL, 0, 0, NULL},
    {"message.format.version", CFG_STRING, 0, 0, NULL},
    {"message.timestamp.after.max.ms", CFG_LONG, 0, LMAX, NULL},
    {"message.timestamp.before.max.ms", CFG_LONG, 0, LMAX, NULL},
    {"message.timestamp.difference.max.ms", CFG_LONG, 0, LMAX, NULL},
    {"message.timestamp.type", CFG_ENUM, 0, 0, k_ts_type},
    {"min.cleanable.dirty.ratio", CFG_DOUBLE, 0, 1, NULL},
    {"min.compaction.lag.ms", CFG_LONG, 0, LMAX, NULL},
    {"min.insync.replicas", CFG_INT, 1, IMAX, NULL},
    {"preallocate", CFG_BOOL, 0, 0, NULL},
    {"remote.log.copy.disable", CFG_BOOL, 0, 0, NULL},
    {"remote.log.delete.on.disable", CFG_BOOL, 0, 0, NULL},
    {"remote.storage.enable", CFG_BOOL, 0, 0, NULL},
    {"retention.bytes", CFG_LONG, -1, LMAX, NULL},
    {"retention.ms", CFG_LONG, -1, LMAX, NULL},
    {"segment.bytes", CFG_INT, 14, IMAX, NULL},
    {"segment.index.bytes", CFG_INT, 4, IMAX, NULL},
    {"segment.jitter.ms", CFG_LONG, 0, LMAX, NULL},
    {"segment.ms", CFG_LONG, 1, LMAX, NULL},
    {"unclean.leader.election.enable", CFG_BOOL, 0, 0, NULL},
};
#define N_TOPIC_CFGS (sizeof k_topic_cfgs / sizeof k_topic_cfgs[0])

static const topic_cfg *find_cfg(const char *key)
{
    for (size_t i = 0; i < N_TOPIC_CFGS; i++)
        if (strcmp(k_topic_cfgs[i].key, key) == 0)
            return &k_topic_cfgs[i];
    return NULL;
}

static const char *nearest_key(const char *key)
{
    const char *best = NULL;
    size_t bd = (size_t)-1, n = strlen(key);
    for (size_t i = 0; i < N_TOPIC_CFGS; i++) {
        size_t d = pc_levenshtein(key, k_topic_cfgs[i].key);
        if (d < bd) {
            bd = d;
            best = k_topic_cfgs[i].key;
        }
    }
    return bd <= (n < 12 ? 2 : n / 4) ? best : NULL;
}

static void list_of(char *buf, size_t n, const char *const *allowed)
{
    size_t k = 0, len = 0;
    while (allowed[k] != NULL)
        k++;
    buf[0] = '\0';
    for (size_t i = 0; i < k && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? (i + 1 == k ? " or " : ", ") : "",
                                allowed[i]);
}

static const char *nearest_value(const char *v, const char *const *allowed)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; allowed[i] != NULL; i++) {
        size_t d = pc_levenshtein(v, allowed[i]);
        if (d < bd) {
            bd = d;
            best = allowed[i];
        }
    }
    return bd <= 2 ? best : NULL;
}

static bool one_of(const char *v, size_t len, const char *const *allowed)
{
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strlen(allowed[i]) == len && strncmp(allowed[i], v, len) == 0)
            return true;
    return false;
}

char *mf_topic_config_problem(const char *key, const char *value)
{
    const topic_cfg *c = find_cfg(key);
    char list[256];
    if (c == NULL) {
        const char *near = nearest_key(key);
        if (near != NULL)
            return pc_asprintf("unknown topic config '%s'; did you mean '%s'?", key, near);
        return pc_asprintf("unknown topic config '%s' (not one Kafka documents for topics); for "
                           "a broker plugin's key, put it under config_unchecked",
                           key);
    }
    switch (c->type) {
    case CFG_LONG:
    case CFG_INT: {
        int64_t n = 0;
        int rc = mf_parse_int64(value, &n);
        if (rc == -1)
            return pc_asprintf("%s must be a whole number, got '%s'", key, value);
        if (rc == -2 || (double)n < c->lo || (double)n > c->hi)
            return pc_asprintf("%s must be between %.0f and %.0f, got '%s'", key, c->lo, c->hi,
                               value);
        return NULL;
    }
    case CFG_DOUBLE: {
        char *end = NULL;
        double d = strtod(value, &end);
        if (end == value || *end != '\0')
            return pc_asprintf("%s must be a number, got '%s'", key, value);
        if (d < c->lo || d > c->hi)
            return pc_asprintf("%s must be between %g and %g, got '%s'", key, c->lo, c->hi, value);
        return NULL;
    }
    case CFG_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
            return NULL;
        return pc_asprintf("%s must be true or false, got '%s'", key, value);
    case CFG_ENUM:
        if (one_of(value, strlen(value), c->allowed))
            return NULL;
        list_of(list, sizeof list, c->allowed);
        {
            const char *near = nearest_value(value, c->allowed);
            if (near != NULL)
                return pc_asprintf("%s must be %s, got '%s'; did you mean '%s'?", key, list, value,
                                   near);
            return pc_asprintf("%s must be %s, got '%s'", key, list, value);
        }
    case CFG_LIST:
        for (const char *p = value;;) {
            size_t len = strcspn(p, ",");
            while (len > 0 && isspace((unsigned char)*p)) {
                p++;
                len--;
            }
            while (len > 0 && isspace((unsigned char)p[len - 1]))
                len--;
            if (!one_of(p, len, c->allowed)) {
                list_of(list, sizeof list, c->allowed);
                char *item = pc_strndup(p, len);
                const char *near = item ? nearest_value(item, c->allowed) : NULL;
                char *msg = near ? pc_asprintf("%s takes a comma-separated list of %s, got '%s'; "
                                               "did you mean '%s'?",
                                               key, list, item, near)
                                 : pc_asprintf("%s takes a comma-separated list of %s, got '%s'",
                                               key, list, item ? item : value);
                free(item);
                return msg;
            }
            p += strcspn(p, ",");
            if (*p == '\0')
                break;
            p++;
        }
        return NULL;
    case CFG_STRING:
        return NULL;
    }
    return NULL;
}

/* host: a name (letters, digits, '-', '.', '_'), an IPv4 address, or [IPv6]. */
static bool host_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    if (h[0] == '[')
        return n > 2 && h[n - 1] == ']' &&
               strspn(h + 1, "0123456789abcdefABCDEF:.") >= n - 2;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_')
            return false;
    return h[0] != '-' && h[0] != '.';
}

char *mf_bootstrap_problem(const char *list)
{
    if (list == NULL || *list == '\0')
        return pc_strdup("kafka.bootstrap must list host:port[,host:port...]");
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        char *item = pc_strndup(p, len);
        if (item == NULL)
            return NULL;
        char *s = item;
        while (isspace((unsigned char)*s))
            s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
            *--e = '\0';
        const char *hp = strstr(s, "://"); /* librdkafka takes PROTOCOL://host:port */
        hp = hp != NULL ? hp + 3 : s;
        const char *colon = strrchr(hp, ':');
        char *msg = NULL;
        if (*s != '\0' && colon == NULL && !host_ok(hp, strlen(hp))) {
            msg = pc_asprintf("kafka.bootstrap entry '%s' is not host:port", s);
        } else if (*s == '\0') {
            msg = pc_asprintf("kafka.bootstrap has an empty entry in '%s': write "
                              "host:port[,host:port...]",
                              list);
        } else if (colon == NULL || (hp[0] == '[' && colon < strchr(hp, ']'))) {
            msg = pc_asprintf("kafka.bootstrap entry '%s' has no port: write host:port "
                              "(Kafka's default is 9092)",
                              s);
        } else if (!host_ok(hp, (size_t)(colon - hp))) {
            msg = pc_asprintf("kafka.bootstrap entry '%s': '%.*s' is not a host name or address",
                              s, (int)(colon - hp), hp);
        } else {
            int64_t port = 0;
            if (mf_parse_int64(colon + 1, &port) != 0 || port < 1 || port > 65535)
                msg = pc_asprintf("kafka.bootstrap entry '%s': the port must be between 1 and "
                                  "65535, got '%s'",
                                  s, colon + 1);
        }
        free(item);
        if (msg != NULL)
            return msg;
        p += len;
        if (*p == '\0')
            return NULL;
        p++;
    }
}
