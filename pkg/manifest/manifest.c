/* manifest.c: the node tree -> pc_manifest, with every validation a manifest can get without a
 * server: known keys (with "did you mean"), types, ranges, names, defaults, and cross references
 * (sources/sinks -> topics and tables). Every problem becomes one "FILE:LINE:COL: message"
 * diagnostic; we keep going after an error so the user sees all of them at once. */
#include "manifest_int.h"

#include <ctype.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- small helpers ---------- */

static char *dup_or_oom(mf_ctx *c, const char *s)
{
    char *p = pc_strdup(s);
    if (s != NULL && p == NULL)
        c->oom = true;
    return p;
}

/* The nearest candidate for a misspelt word, or NULL when nothing is close. */
static const char *nearest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (cands[i] == NULL)
            continue;
        size_t d = pc_levenshtein(word, cands[i]);
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    size_t len = strlen(word);
    if (best == NULL || bestd == 0 || (bestd > 2 && bestd * 2 > len))
        return NULL;
    return best;
}

/* "; did you mean 'x'?" or "". */
static char *hint(const char *s)
{
    return s ? pc_asprintf("; did you mean '%s'?", s) : pc_strdup("");
}

/* ---------- objects: a mapping with a fixed set of keys ---------- */

typedef struct obj {
    mf_ctx *c;
    const mf_node *map;
    const char *const *keys;
    uint64_t suggested; /* bit i: an unknown key was reported with keys[i] as the suggestion */
} obj;

/* "{name: x, type: numeric(10,2)}" reads as type "numeric(10" plus a key "2)": the column
 * code reports the cut type, so the stray key is not reported again. */
static bool cut_type_tail(const mf_node *map, const char *key)
{
    size_t n = strspn(key, " 0123456789");
    if (n == 0 || strcmp(key + n, ")") != 0)
        return false;
    for (size_t i = 0; i + 1 < map->nkids; i += 2)
        if (map->kids[i]->kind == MF_SCALAR && strcmp(map->kids[i]->value, "type") == 0 &&
            map->kids[i + 1]->kind == MF_SCALAR && strchr(map->kids[i + 1]->value, '(') != NULL)
            return true;
    return false;
}

static void obj_open(obj *o, mf_ctx *c, const mf_node *map, const char *where,
                     const char *const *keys)
{
    o->c = c;
    o->map = map;
    o->keys = keys;
    o->suggested = 0;
    size_t nk = 0;
    while (keys[nk] != NULL)
        nk++;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const mf_node *k = map->kids[i];
        if (k->kind != MF_SCALAR || k->bad)
            continue;
        bool known = false;
        for (size_t j = 0; j < nk; j++)
            if (strcmp(k->value, keys[j]) == 0)
                known = true;
        /* "<<" is YAML's merge key; its alias is already reported */
        if (known || cut_type_tail(map, k->value) || strcmp(k->value, "<<") == 0)
            continue;
        const char *s = nearest(k->value, keys, nk);
        char *h = hint(s);
        if (h == NULL) {
            c->oom = true;
            return;
        }
        mf_diag(c, k->pos, "unknown key '%s' in %s%s", k->value, where, h);
        free(h);
        for (size_t j = 0; s != NULL && j < nk && j < 64; j++)
            if (keys[j] == s)
                o->suggested |= (uint64_t)1 << j;
    }
}

/* The value for key (first occurrence; duplicates are reported elsewhere), or NULL. */
static const mf_node *obj_get(const obj *o, const char *key)
{
    for (size_t i = 0; i + 1 < o->map->nkids; i += 2) {
        const mf_node *k = o->map->kids[i];
        if (k->kind == MF_SCALAR && strcmp(k->value, key) == 0)
            return o->map->kids[i + 1];
    }
    return NULL;
}

static void obj_missing(obj *o, const char *key, const char *label)
{
    for (size_t j = 0; o->keys[j] != NULL && j < 64; j++)
        if (strcmp(o->keys[j], key) == 0 && (o->suggested & ((uint64_t)1 << j)))
            return; /* the unknown-key message already pointed here */
    mf_diag(o->c, o->map->pos, "%s is missing '%s'", label, key);
}

/* ---------- typed values ---------- */

static void type_error(mf_ctx *c, const mf_node *v, const char *what, const char *expected)
{
    char *d = mf_describe(v);
    if (d == NULL) {
        c->oom = true;
        return;
    }
    mf_diag(c, v->pos, "%s must be %s, got %s", what, expected, d);
    free(d);
}

static bool want_kind(mf_ctx *c, const mf_node *v, mf_kind kind, const char *what)
{
    if (v->bad)
        return false;
    if (v->kind == kind)
        return true;
    type_error(c, v, what, kind == MF_MAP ? "a mapping" : kind == MF_SEQ ? "a list" : "a value");
    return false;
}

/* A non-null scalar as a string. */
static bool get_str(mf_ctx *c, const mf_node *v, const char *what, char **out)
{
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v) || v->value[0] == '\0') {
        if (v->kind == MF_SCALAR && !mf_is_null(v))
            mf_diag(c, v->pos, "%s must not be empty", what);
        else
            type_error(c, v, what, "a string");
        return false;
    }
    free(*out);
    *out = dup_or_oom(c, v->value);
    return *out != NULL;
}

static void range_error(mf_ctx *c, const mf_node *v, const char *what, int64_t lo, int64_t hi,
                        int64_t got)
{
    mf_diag(c, v->pos, "%s must be between %lld and %lld, got %lld", what, (long long)lo,
            (long long)hi, (long long)got);
}

static bool get_int(mf_ctx *c, const mf_node *v, const char *what, int lo, int hi, int *out)
{
    int64_t n = 0;
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v)) {
        type_error(c, v, what, "an integer");
        return false;
    }
    int rc = mf_parse_int64(v->value, &n);
    if (rc == -1) {
        type_error(c, v, what, "an integer");
        return false;
    }
    if (rc == -2 || n < lo || n > hi) {
        if (rc == -2)
            mf_diag(c, v->pos, "%s is far too large", what);
        else
            range_error(c, v, what, lo, hi, n);
        return false;
    }
    *out = (int)n;
    return true;
}

static bool get_bool(mf_ctx *c, const mf_node *v, const char *what, bool *out)
{
    if (v->bad)
        return false;
    if (v->kind == MF_SCALAR) {
        const char *s = v->value;
        if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
            *out = false;
            return true;
        }
    }
    type_error(c, v, what, "true or false");
    return false;
}

/* A duration ("200ms", "1s", "5m", "1h", "7d") or a bare integer in `bare_unit_ms`. */
static bool get_duration(mf_ctx *c, const mf_node *v, const char *what, int64_t bare_unit_ms,
                         int64_t lo_ms, int64_t hi_ms, int64_t *out_ms)
{
    int64_t ms = 0, n = 0;
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v)) {
        type_error(c, v, what, "a duration like 200ms, 1s, 5m, 1h or 7d");
        return false;
    }
    int rc = mf_parse_int64(v->value, &n);
    if (rc == 0) {
        if (n < 0 || (n > 0 && n > INT64_MAX / bare_unit_ms))
            rc = -2;
        else
            ms = n * bare_unit_ms;
    } else if (rc == -1) {
        rc = mf_parse_duration_ms(v->value, &ms);
        if (rc == -1) {
            type_error(c, v, what, "a duration like 200ms, 1s, 5m, 1h or 7d");
            return false;
        }
    }
    if (rc == -2 || ms < lo_ms || ms > hi_ms) {
        mf_diag(c, v->pos, "%s '%s' is out of range (%lldms to %lldms)", what, v->value,
                (long long)lo_ms, (long long)hi_ms);
        return false;
    }
    *out_ms = ms;
    return true;
}

static bool get_enum(mf_ctx *c, const mf_node *v, const char *what, const char *const *allowed,
                     char **out)
{
    char *s = NULL;
    if (!get_str(c, v, what, &s))
        return false;
    size_t n = 0;
    for (; allowed[n] != NULL; n++) {
        if (strcmp(s, allowed[n]) == 0) {
            free(*out);
            *out = s;
            return true;
        }
    }
    pc_buf list = {0};
    for (size_t i = 0; i < n; i++)
        pc_buf_printf(&list, "%s%s", i ? (i + 1 == n ? " or " : ", ") : "", allowed[i]);
    char *h = hint(nearest(s, allowed, n));
    mf_diag(c, v->pos, "%s must be %s, got '%s'%s", what, list.data ? list.data : "?", s,
            h ? h : "");
    free(h);
    pc_buf_free(&list);
    free(s);
    return false;
}

/* Rejects a scalar that is not a safe SQL identifier. */
static bool check_sql_name(mf_ctx *c, const mf_node *v, const char *what, const char *name)
{
    if (mf_sql_ident_ok(name))
        return true;
    mf_diag(c, v->pos,
            "%s '%s' is not a safe SQL name: use lower-case letters, digits and '_', starting "
            "with a letter or '_', at most 63 characters",
            what, name);
    return false;
}

static bool check_pipeline_name(mf_ctx *c, const mf_node *v, const char *name)
{
    const char *why = mf_pipeline_name_problem(name);
    if (why == NULL)
        return true;
    mf_diag(c, v->pos,
            "metadata.name '%s' is not a valid pipeline name: it %s; use a DNS-1123 label "
            "(lower-case letters, digits and '-', starting and ending with a letter or digit, as "
            "Kubernetes names) or lower-case letters, digits and '_' starting with a letter or "
            "'_', at most 63 characters",
            name, why);
    return false;
}

static bool check_kafka_name(mf_ctx *c, const mf_node *v, const char *what, const char *name)
{
    const char *why = mf_kafka_name_problem(name);
    if (why == NULL)
        return true;
    mf_diag(c, v->pos, "%s '%s' is not a valid Kafka name: it %s", what, name, why);
    return false;
}

/* ---------- duplicate names ---------- */

typedef struct named {
    const char *name;
    pc_pos pos;
    size_t ix;
} named;

static int named_cmp(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r != 0)
        return r;
    return x->ix < y->ix ? -1 : (x->ix > y->ix);
}

/* Reports every name that repeats an earlier one; entries with a NULL name are skipped. */
static void check_dups(mf_ctx *c, named *v, size_t n, const char *what)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].name != NULL)
            v[m++] = v[i];
    qsort(v, m, sizeof *v, named_cmp);
    for (size_t i = 1; i < m; i++) {
        size_t first = i - 1;
        while (i < m && strcmp(v[i].name, v[first].name) == 0) {
            mf_diag(c, v[i].pos, "duplicate %s '%s' (first declared at line %d, column %d)", what,
                    v[i].name, v[first].pos.line, v[first].pos.col);
            i++;
        }
    }
}

/* Position of the 'name' value inside an item mapping (for duplicate reports). */
static pc_pos name_pos(const mf_node *item, pc_pos fallback)
{
    if (item == NULL || item->kind != MF_MAP)
        return fallback;
    for (size_t i = 0; i + 1 < item->nkids; i += 2)
        if (item->kids[i]->kind == MF_SCALAR && strcmp(item->kids[i]->value, "name") == 0)
            return item->kids[i + 1]->pos;
    return fallback;
}

/* ---------- paths ---------- */

/* Lexically normalised absolute path: dir + "/" + p unless p is absolute. */
static char *resolve_path(const char *dir, const char *p)
{
    char *joined = p[0] == '/' ? pc_strdup(p) : pc_asprintf("%s/%s", dir, p);
    if (joined == NULL)
        return NULL;
    size_t n = strlen(joined);
    char **parts = calloc(n + 1, sizeof *parts);
    if (parts == NULL) {
        free(joined);
        return NULL;
    }
    size_t np = 0;
    char *save = NULL;
    for (char *t = strtok_r(joined, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0)
            continue;
        if (strcmp(t, "..") == 0) {
            if (np > 0)
                np--;
            continue;
        }
        parts[np++] = t;
    }
    pc_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < np && rc == 0; i++)
        rc = pc_buf_printf(&b, "/%s", parts[i]);
    if (rc == 0 && np == 0)
        rc = pc_buf_puts(&b, "/");
    free(parts);
    free(joined);
    if (rc != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

/* ---------- sections ---------- */

static const char *const k_top_keys[] = {"apiVersion", "kind",    "metadata", "kafka",
                                         "postgres",   "sources", "sinks",    "backups",
                                         "nocodb",     "git",     NULL};
static const char *const k_meta_keys[] = {"name", "description", NULL};
static const char *const k_kafka_keys[] = {"bootstrap", "topics", "security", "client_config",
                                           "acls",      "derive_acls", NULL};
static const char *const k_topic_keys[] = {"name",   "partitions",       "replication_factor",
                                           "config", "config_unchecked", NULL};
static const char *const k_pg_keys[] = {"dsn", "schemas", "archiving", NULL};
static const char *const k_schema_keys[] = {"name", "tables", NULL};
static const char *const k_table_keys[] = {"name", "columns", NULL};
static const char *const k_column_keys[] = {"name", "type", "primary_key", "nullable", NULL};
static const char *const k_archiving_keys[] = {
    "enabled", "repository", "archive_timeout", "command", "wal_level", "s3", "encryption",
    "credentials_file", NULL};
static const char *const k_archiving_s3_keys[] = {
    "endpoint",      "region",    "uri_style", "access_key_id", "secret_access_key",
    "session_token", "ca_file",   "verify_tls", NULL};
static const char *const k_archiving_enc_keys[] = {"cipher", "key", NULL};
static const char *const k_source_keys[] = {"name",     "type", "url",    "topic",    "batch",
                                            "interval", "key",  "params", "security", NULL};
static const char *const k_sink_keys[] = {"name",  "topic",       "table",
                                          "mode",  "mapping",     "batch",
                                          "dead_letter", "convert_threads", "security", NULL};
static const char *const k_sink_batch_keys[] = {"max_records", "max_wait", NULL};
static const char *const k_backups_keys[] = {"schedule", "retention", "compression", NULL};
static const char *const k_retention_keys[] = {"full", "days", NULL};
static const char *const k_nocodb_keys[] = {"url",       "token",   "email", "password",
                                            "base",      "schemas", "role",  "role_password",
                                            "read_only", "pg_host", "pg_port", NULL};
static const char *const k_git_keys[] = {"repo", "branch", "push", "remote_url", "path", NULL};

typedef struct sec_block {
    pc_mf_kafka_auth a;
    int verify;     /* -1 unset, 0, 1 */
    bool has_sasl;  /* a sasl block is present */
    bool has_cert;  /* tls.cert_file or tls.key_file given */
    bool has_ca;
    bool mech_written; /* sasl.mechanism was given (maybe invalid: already reported) */
} sec_block;

typedef struct parse {
    mf_ctx *c;
    pc_manifest *m;
    const char *dir;     /* the manifest's directory, for relative paths */
    sec_block top;       /* kafka.security as written (what workers inherit) */
    bool topics_unknown; /* kafka.topics unreadable (misspelt block, not a list): skip refs */
    bool tables_unknown; /* same for postgres.schemas */
} parse;

static char *label(const char *what, const char *name, size_t index)
{
    return name ? pc_asprintf("%s '%s'", what, name) : pc_asprintf("%s #%zu", what, index + 1);
}

/* checked: the key must be a topic config Kafka documents, with a valid value (config); not
 * for config_unchecked (a broker plugin's keys). */
static void topic_config(parse *P, pc_mf_topic *t, const mf_node *cfg, bool checked)
{
    mf_ctx *c = P->c;
    if (!want_kind(c, cfg, MF_MAP, checked ? "topic config" : "topic config_unchecked"))
        return;
    for (size_t i = 0; i + 1 < cfg->nkids; i += 2) {
        const mf_node *k = cfg->kids[i], *v = cfg->kids[i + 1];
        if (k->kind != MF_SCALAR || k->bad || v->bad)
            continue;
        const char *key = k->value;
        bool key_ok = key[0] != '\0';
        for (const char *p = key; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
                  *p == '-'))
                key_ok = false;
        if (!key_ok) {
            mf_diag(c, k->pos,
                    "topic config key '%s' is not a Kafka config name (like "
                    "retention.ms or cleanup.policy)",
                    key);
            continue;
        }
        if (v->kind != MF_SCALAR || mf_is_null(v)) {
            char *w = pc_asprintf("config value for '%s'", key);
            if (w == NULL) {
                c->oom = true;
                return;
            }
            type_error(c, v, w, "a string, number or boolean");
            free(w);
            continue;
        }
        size_t klen = strlen(key);
        char *val = NULL;
        int64_t n = 0;
        bool secret = pc_is_secret_key(key);
        if (klen > 3 && strcmp(key + klen - 3, ".ms") == 0) {
            int rc = mf_parse_int64(v->value, &n);
            if (rc == -1)
                rc = mf_parse_duration_ms(v->value, &n);
            if (rc != 0) {
                mf_diag(c, v->pos,
                        "%s must be a duration like 7d, 12h or 500ms, or a number of "
                        "milliseconds, got '%s'",
                        key, secret ? PC_REDACTED : v->value);
                continue;
            }
            val = pc_asprintf("%lld", (long long)n);
        } else if (klen > 6 && strcmp(key + klen - 6, ".bytes") == 0) {
            int rc = mf_parse_int64(v->value, &n);
            if (rc == -1)
                rc = mf_parse_size_bytes(v->value, &n);
            if (rc != 0) {
                mf_diag(c, v->pos,
                        "%s must be a size like 1GiB, 512MiB or 1GB, or a number of bytes, got "
                        "'%s'",
                        key, secret ? PC_REDACTED : v->value);
                continue;
            }
            val = pc_asprintf("%lld", (long long)n);
        } else if (!v->quoted && (strcmp(v->value, "True") == 0 || strcmp(v->value, "TRUE") == 0 ||
                                  strcmp(v->value, "true") == 0)) {
            val = pc_strdup("true");
        } else if (!v->quoted &&
                   (strcmp(v->value, "False") == 0 || strcmp(v->value, "FALSE") == 0 ||
                    strcmp(v->value, "false") == 0)) {
            val = pc_strdup("false");
        } else {
            val = pc_strdup(v->value);
        }
        if (val == NULL) {
            c->oom = true;
            return;
        }
        char *why = checked ? mf_topic_config_problem(key, secret ? PC_REDACTED : val) : NULL;
        if (why != NULL)
            mf_diag(c, strncmp(why, "unknown topic config", 20) == 0 ? k->pos : v->pos, "%s",
                    why);
        else if (pc_kvlist_get(&t->config, key) != NULL && !checked)
            mf_diag(c, k->pos, "topic config '%s' is in both config and config_unchecked", key);
        else if (pc_kvlist_set(&t->config, key, val) != 0)
            c->oom = true;
        free(why);
        free(val);
    }
}

static void parse_topics(parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, seq, MF_SEQ, "kafka.topics"))
        return;
    m->topics = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->topics);
    named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
    if (m->topics == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_topic *t = &m->topics[m->ntopics++];
        t->pos = it->pos;
        t->replication_factor = 1;
        if (!want_kind(c, it, MF_MAP, "a topic"))
            continue;
        obj o;
        obj_open(&o, c, it, "topic", k_topic_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "topic name", &t->name)) {
            if (check_kafka_name(c, v, "topic name", t->name)) {
                names[i].name = t->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = label("topic", t->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (obj_get(&o, "name") == NULL)
            obj_missing(&o, "name", lab);
        if ((v = obj_get(&o, "partitions")) != NULL)
            get_int(c, v, "partitions", 1, 1000000, &t->partitions);
        else
            obj_missing(&o, "partitions", lab);
        if ((v = obj_get(&o, "replication_factor")) != NULL)
            get_int(c, v, "replication_factor", 1, 32767, &t->replication_factor);
        if ((v = obj_get(&o, "config")) != NULL)
            topic_config(P, t, v, true);
        if ((v = obj_get(&o, "config_unchecked")) != NULL)
            topic_config(P, t, v, false);
        free(lab);
    }
    check_dups(c, names, seq->nkids, "topic");
    free(names);
}

/* ---------- kafka.security, client_config, acls ---------- */

static void auth_dispose(pc_mf_kafka_auth *a);


static const char *const k_security_keys[] = {"protocol", "sasl", "tls", "principal", NULL};
static const char *const k_sasl_keys[] = {"mechanism", "username", "password", "password_file",
                                          NULL};
static const char *const k_tls_keys[] = {"ca_file",      "cert_file",         "key_file",
                                         "key_password", "key_password_file", "verify_hostname",
                                         NULL};
static const char *const k_acl_keys[] = {"principal", "resource",   "name", "pattern",
                                         "operations", "permission", "host", NULL};

/* Reads a secret from a file (relative to the manifest): the first line, without its newline.
 * The content never reaches a message. */
static char *read_secret_file(mf_ctx *c, const mf_node *v, const char *what, const char *dir)
{
    char *path = NULL, *res = NULL;
    if (!get_str(c, v, what, &path))
        return NULL;
    char *abs = resolve_path(dir, path);
    free(path);
    if (abs == NULL) {
        c->oom = true;
        return NULL;
    }
    FILE *f = fopen(abs, "r");
    if (f == NULL) {
        mf_diag(c, v->pos, "%s: cannot read '%s': %s: create the file or fix the path", what, abs,
                strerror(errno));
        free(abs);
        return NULL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        mf_diag(c, v->pos, "%s: '%s' is empty: write the secret on its first line", what, abs);
    else if ((res = pc_strdup(buf)) == NULL)
        c->oom = true;
    memset(buf, 0, sizeof buf);
    free(abs);
    return res;
}

/* A certificate or key file: resolved against the manifest, readable, PEM. */
static void get_pem_file(mf_ctx *c, const mf_node *v, const char *what, const char *dir,
                         char **out)
{
    char *path = NULL;
    if (!get_str(c, v, what, &path))
        return;
    char *abs = resolve_path(dir, path);
    free(path);
    if (abs == NULL) {
        c->oom = true;
        return;
    }
    FILE *f = fopen(abs, "r");
    if (f == NULL) {
        mf_diag(c, v->pos, "%s: cannot read '%s': %s", what, abs, strerror(errno));
        free(abs);
        return;
    }
    char head[8192];
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    if (strstr(head, "-----BEGIN ") == NULL) {
        mf_diag(c, v->pos, "%s: '%s' is not a PEM file (no '-----BEGIN' line): convert it with "
                           "openssl (DER and PKCS#12 are not read)",
                what, abs);
        free(abs);
        return;
    }
    free(*out);
    *out = abs;
}

static void parse_security(parse *P, const mf_node *n, const char *where, sec_block *b)
{
    mf_ctx *c = P->c;
    memset(b, 0, sizeof *b);
    b->verify = -1;
    b->a.pos = n->pos;
    if (!want_kind(c, n, MF_MAP, where))
        return;
    char lab[96];
    obj o;
    obj_open(&o, c, n, where, k_security_keys);
    const mf_node *v;
    static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl",
                                            NULL};
    snprintf(lab, sizeof lab, "%s.protocol", where);
    if ((v = obj_get(&o, "protocol")) != NULL)
        get_enum(c, v, lab, protocols, &b->a.protocol);
    snprintf(lab, sizeof lab, "%s.principal", where);
    if ((v = obj_get(&o, "principal")) != NULL && get_str(c, v, lab, &b->a.principal)) {
        const char *colon = strchr(b->a.principal, ':');
        if (colon == NULL || colon == b->a.principal || colon[1] == '\0')
            mf_diag(c, v->pos, "%s must be 'Type:name' as Kafka writes principals (User:ingest), "
                               "got '%s'",
                    lab, b->a.principal);
    }
    if ((v = obj_get(&o, "sasl")) != NULL) {
        snprintf(lab, sizeof lab, "%s.sasl", where);
        if (want_kind(c, v, MF_MAP, lab)) {
            b->has_sasl = true;
            obj s;
            obj_open(&s, c, v, lab, k_sasl_keys);
            const mf_node *sv;
            static const char *const mechs[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};
            char l2[128];
            snprintf(l2, sizeof l2, "%s.mechanism", lab);
            if ((sv = obj_get(&s, "mechanism")) != NULL) {
                b->mech_written = true;
                get_enum(c, sv, l2, mechs, &b->a.sasl_mechanism);
            }
            snprintf(l2, sizeof l2, "%s.username", lab);
            if ((sv = obj_get(&s, "username")) != NULL)
                get_str(c, sv, l2, &b->a.sasl_username);
            else
                obj_missing(&s, "username", lab);
            const mf_node *pw = obj_get(&s, "password"), *pf = obj_get(&s, "password_file");
            snprintf(l2, sizeof l2, "%s.password", lab);
            if (pw != NULL && pf != NULL)
                mf_diag(c, pf->pos, "%s: give password or password_file, not both", lab);
            else if (pw != NULL)
                get_str(c, pw, l2, &b->a.sasl_password);
            else if (pf != NULL)
                b->a.sasl_password = read_secret_file(c, pf, l2, P->dir);
            else
                mf_diag(c, v->pos,
                        "%s is missing 'password': give password: ${VAR} or password_file: PATH",
                        lab);
        }
    }
    if ((v = obj_get(&o, "tls")) != NULL) {
        snprintf(lab, sizeof lab, "%s.tls", where);
        if (want_kind(c, v, MF_MAP, lab)) {
            obj t;
            obj_open(&t, c, v, lab, k_tls_keys);
            const mf_node *tv, *cf, *kf;
            char l2[128];
            snprintf(l2, sizeof l2, "%s.ca_file", lab);
            if ((tv = obj_get(&t, "ca_file")) != NULL) {
                b->has_ca = true;
                get_pem_file(c, tv, l2, P->dir, &b->a.ca_file);
            }
            snprintf(l2, sizeof l2, "%s.cert_file", lab);
            if ((cf = obj_get(&t, "cert_file")) != NULL)
                get_pem_file(c, cf, l2, P->dir, &b->a.cert_file);
            snprintf(l2, sizeof l2, "%s.key_file", lab);
            if ((kf = obj_get(&t, "key_file")) != NULL)
                get_pem_file(c, kf, l2, P->dir, &b->a.key_file);
            b->has_cert = cf != NULL || kf != NULL;
            if ((cf == NULL) != (kf == NULL))
                mf_diag(c, v->pos, "%s: mutual TLS needs both cert_file and key_file", lab);
            const mf_node *kp = obj_get(&t, "key_password"), *kpf = obj_get(&t, "key_password_file");
            snprintf(l2, sizeof l2, "%s.key_password", lab);
            if (kp != NULL && kpf != NULL)
                mf_diag(c, kpf->pos, "%s: give key_password or key_password_file, not both", lab);
            else if (kp != NULL)
                get_str(c, kp, l2, &b->a.key_password);
            else if (kpf != NULL)
                b->a.key_password = read_secret_file(c, kpf, l2, P->dir);
            if ((kp != NULL || kpf != NULL) && kf == NULL)
                mf_diag(c, (kp ? kp : kpf)->pos, "%s: key_password without key_file", lab);
            snprintf(l2, sizeof l2, "%s.verify_hostname", lab);
            bool vh = true;
            if ((tv = obj_get(&t, "verify_hostname")) != NULL && get_bool(c, tv, l2, &vh))
                b->verify = vh ? 1 : 0;
        }
    }
}

/* Checks a resolved block: protocol against sasl/tls, the SASL parts present. */
static void check_auth(parse *P, const pc_mf_kafka_auth *a, const mf_node *n, const char *where,
                       bool has_sasl, bool has_tls, bool mech_written)
{
    mf_ctx *c = P->c;
    if (a->protocol == NULL)
        return;
    bool sasl = strncmp(a->protocol, "sasl_", 5) == 0;
    bool tls = strcmp(a->protocol, "ssl") == 0 || strcmp(a->protocol, "sasl_ssl") == 0;
    pc_pos pos = n != NULL ? n->pos : a->pos;
    if (sasl && (a->sasl_username == NULL || a->sasl_password == NULL) && !has_sasl)
        mf_diag(c, pos,
                "%s: protocol %s needs a sasl block (mechanism, username, password)", where,
                a->protocol);
    else if (sasl && a->sasl_mechanism == NULL && !mech_written)
        mf_diag(c, pos,
                "%s.sasl is missing 'mechanism': PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (ask the "
                "cluster's operator which one its listener enables)",
                where);
    if (!sasl && has_sasl)
        mf_diag(c, pos,
                "%s: a sasl block with protocol %s is never used: set protocol to sasl_ssl (or "
                "sasl_plaintext)",
                where, a->protocol);
    if (!tls && has_tls)
        mf_diag(c, pos,
                "%s: a tls block with protocol %s is never used: set protocol to ssl or sasl_ssl",
                where, a->protocol);
}

static int dup_field(char **dst, const char *src)
{
    if (*dst != NULL || src == NULL)
        return 0;
    return (*dst = pc_strdup(src)) == NULL ? -1 : 0;
}

/* The protocol a block means when it does not say: from what it carries. */
static const char *implied_protocol(const sec_block *b)
{
    if (b->has_sasl)
        return "sasl_ssl";
    if (b->has_ca || b->has_cert || b->verify >= 0)
        return "ssl";
    return "plaintext";
}

static void resolve_principal(mf_ctx *c, pc_mf_kafka_auth *a)
{
    if (a->principal == NULL && a->sasl_username != NULL && a->protocol != NULL &&
        strncmp(a->protocol, "sasl_", 5) == 0 &&
        (a->principal = pc_asprintf("User:%s", a->sasl_username)) == NULL)
        c->oom = true;
}

/* kafka.security -> m->kafka_auth (n may be NULL: plaintext). */
static void parse_top_security(parse *P, const mf_node *n, sec_block *top)
{
    mf_ctx *c = P->c;
    pc_mf_kafka_auth *a = &P->m->kafka_auth;
    if (n != NULL) {
        parse_security(P, n, "kafka.security", top);
    } else {
        memset(top, 0, sizeof *top);
        top->verify = -1;
    }
    *a = top->a;
    memset(&top->a, 0, sizeof top->a);
    a->verify_hostname = top->verify != 0;
    if (a->protocol == NULL && (a->protocol = pc_strdup(implied_protocol(top))) == NULL)
        c->oom = true;
    check_auth(P, a, n, "kafka.security", top->has_sasl,
               top->has_ca || top->has_cert || top->verify >= 0, top->mech_written);
    resolve_principal(c, a);
}

/* A worker's security block over the top-level one. A worker's identity is its own sasl block,
 * its own certificate (mutual TLS), or else the controller's: a sasl block of its own replaces
 * the controller's credentials entirely (never someone else's password with its username). TLS
 * trust (ca_file, verify_hostname) it leaves out is the controller's. */
static void resolve_worker_auth(parse *P, const mf_node *n, const char *where,
                                const sec_block *top, pc_mf_kafka_auth *out, bool *own)
{
    mf_ctx *c = P->c;
    const pc_mf_kafka_auth *t = &P->m->kafka_auth;
    const char *tproto = t->protocol != NULL ? t->protocol : "plaintext";
    sec_block b;
    memset(&b, 0, sizeof b);
    b.verify = -1;
    *own = n != NULL;
    if (n != NULL)
        parse_security(P, n, where, &b);
    *out = b.a;
    int rc = 0;
    const char *proto = tproto;
    if (b.has_sasl)
        proto = strcmp(tproto, "sasl_plaintext") == 0 ? "sasl_plaintext" : "sasl_ssl";
    else if (b.has_cert)
        proto = "ssl";
    rc |= dup_field(&out->protocol, proto);
    if (b.has_sasl) {
        rc |= dup_field(&out->sasl_mechanism, t->sasl_mechanism);
    } else if (!b.has_cert) {
        rc |= dup_field(&out->sasl_mechanism, t->sasl_mechanism);
        rc |= dup_field(&out->sasl_username, t->sasl_username);
        rc |= dup_field(&out->sasl_password, t->sasl_password);
        rc |= dup_field(&out->cert_file, t->cert_file);
        rc |= dup_field(&out->key_file, t->key_file);
        rc |= dup_field(&out->key_password, t->key_password);
        rc |= dup_field(&out->principal, t->principal);
    }
    rc |= dup_field(&out->ca_file, t->ca_file);
    if (rc != 0)
        c->oom = true;
    out->verify_hostname = b.verify >= 0 ? b.verify != 0 : t->verify_hostname;
    if (n == NULL)
        out->pos = t->pos;
    else
        check_auth(P, out, n, where, b.has_sasl || (!b.has_cert && top->has_sasl),
                   b.has_ca || b.has_cert || b.verify >= 0 || top->has_ca || top->has_cert ||
                       top->verify >= 0,
                   b.mech_written || top->mech_written);
    resolve_principal(c, out);
}

/* Properties pipectl sets itself: in client_config they would silently break a guarantee or
 * fight kafka.security. */
static const char *owned_property(const char *key)
{
    static const char *const owned[][2] = {
        {"bootstrap.servers", "kafka.bootstrap"},
        {"metadata.broker.list", "kafka.bootstrap"},
        {"security.protocol", "kafka.security.protocol"},
        {"sasl.mechanism", "kafka.security.sasl.mechanism"},
        {"sasl.mechanisms", "kafka.security.sasl.mechanism"},
        {"sasl.username", "kafka.security.sasl.username"},
        {"sasl.password", "kafka.security.sasl.password"},
        {"ssl.ca.location", "kafka.security.tls.ca_file"},
        {"ssl.certificate.location", "kafka.security.tls.cert_file"},
        {"ssl.key.location", "kafka.security.tls.key_file"},
        {"ssl.key.password", "kafka.security.tls.key_password"},
        {"ssl.endpoint.identification.algorithm", "kafka.security.tls.verify_hostname"},
        {"enable.ssl.certificate.verification", "kafka.security.tls (verification stays on)"},
        {"enable.idempotence", "pipectl (the producer is idempotent: exactly-once needs it)"},
        {"acks", "pipectl (acks=all: exactly-once needs it)"},
        {"enable.auto.commit", "pipectl (offsets commit with the rows in PostgreSQL)"},
        {"enable.auto.offset.store", "pipectl (offsets commit with the rows in PostgreSQL)"},
        {"group.id", "pipectl (pipectl-<pipeline>-<sink>)"},
        {"isolation.level", "pipectl"},
        {"client.id", "pipectl"},
    };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        if (strcmp(key, owned[i][0]) == 0)
            return owned[i][1];
    return NULL;
}

static void parse_client_config(parse *P, const mf_node *map)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, map, MF_MAP, "kafka.client_config"))
        return;
    m->client_config = calloc(map->nkids / 2 + 1, sizeof *m->client_config);
    if (m->client_config == NULL) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const mf_node *k = map->kids[i], *v = map->kids[i + 1];
        if (k->kind != MF_SCALAR || k->bad || v->bad)
            continue;
        const char *owner = owned_property(k->value);
        if (owner != NULL) {
            mf_diag(c, k->pos, "kafka.client_config: '%s' is set by %s; remove it here", k->value,
                    owner);
            continue;
        }
        if (v->kind != MF_SCALAR || mf_is_null(v)) {
            char *w = pc_asprintf("kafka.client_config '%s'", k->value);
            if (w != NULL)
                type_error(c, v, w, "a string, number or boolean");
            free(w);
            continue;
        }
        pc_mf_kafka_prop *p = &m->client_config[m->nclient_config++];
        p->key = dup_or_oom(c, k->value);
        p->value = dup_or_oom(c, v->value);
        p->key_pos = k->pos;
        p->value_pos = v->pos;
    }
}

static void parse_acls(parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, seq, MF_SEQ, "kafka.acls"))
        return;
    m->acls = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->acls);
    if (m->acls == NULL) {
        c->oom = true;
        return;
    }
    static const char *const resources[] = {"topic", "group", "cluster", "transactional_id",
                                            NULL};
    static const char *const patterns[] = {"literal", "prefixed", NULL};
    static const char *const perms[] = {"allow", "deny", NULL};
    static const char *const ops[] = {"read",         "write",           "create",
                                      "delete",       "alter",           "describe",
                                      "cluster_action", "describe_configs", "alter_configs",
                                      "idempotent_write", "all",          NULL};
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_acl *a = &m->acls[m->nacls++];
        a->pos = it->pos;
        if (!want_kind(c, it, MF_MAP, "a kafka.acls entry"))
            continue;
        obj o;
        obj_open(&o, c, it, "kafka.acls entry", k_acl_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "principal")) != NULL) {
            if (get_str(c, v, "acl principal", &a->principal)) {
                const char *colon = strchr(a->principal, ':');
                if (colon == NULL || colon == a->principal || colon[1] == '\0')
                    mf_diag(c, v->pos,
                            "acl principal must be 'Type:name' (User:ingest), got '%s'",
                            a->principal);
            }
        } else {
            obj_missing(&o, "principal", "kafka.acls entry");
        }
        if ((v = obj_get(&o, "resource")) != NULL)
            get_enum(c, v, "acl resource", resources, &a->resource);
        else
            obj_missing(&o, "resource", "kafka.acls entry");
        bool cluster = pc_streq(a->resource, "cluster");
        if ((v = obj_get(&o, "name")) != NULL) {
            if (get_str(c, v, "acl name", &a->name) && cluster &&
                strcmp(a->name, "kafka-cluster") != 0)
                mf_diag(c, v->pos, "acl name of a cluster resource must be 'kafka-cluster', got "
                                   "'%s'",
                        a->name);
        } else if (cluster) {
            a->name = dup_or_oom(c, "kafka-cluster");
        } else if (a->resource != NULL) {
            obj_missing(&o, "name", "kafka.acls entry");
        }
        if ((v = obj_get(&o, "pattern")) != NULL)
            get_enum(c, v, "acl pattern", patterns, &a->pattern);
        else
            a->pattern = dup_or_oom(c, "literal");
        if ((v = obj_get(&o, "permission")) != NULL)
            get_enum(c, v, "acl permission", perms, &a->permission);
        else
            a->permission = dup_or_oom(c, "allow");
        if ((v = obj_get(&o, "host")) != NULL)
            get_str(c, v, "acl host", &a->host);
        else
            a->host = dup_or_oom(c, "*");
        if ((v = obj_get(&o, "operations")) == NULL) {
            obj_missing(&o, "operations", "kafka.acls entry");
            continue;
        }
        size_t n = v->kind == MF_SEQ ? v->nkids : 1;
        a->operations = calloc(n ? n : 1, sizeof *a->operations);
        if (a->operations == NULL) {
            c->oom = true;
            return;
        }
        if (v->kind == MF_SEQ && v->nkids == 0)
            mf_diag(c, v->pos, "acl operations must not be empty: name at least one of read, "
                               "write, describe, ...");
        for (size_t j = 0; j < n; j++) {
            const mf_node *ov = v->kind == MF_SEQ ? v->kids[j] : v;
            char *op = NULL;
            if (get_enum(c, ov, "acl operation", ops, &op)) {
                bool dup = false;
                for (size_t k = 0; k < a->noperations; k++)
                    dup = dup || strcmp(a->operations[k], op) == 0;
                if (dup)
                    free(op);
                else
                    a->operations[a->noperations++] = op;
            }
        }
    }
}

/* derive_acls: every worker needs a principal the broker will see. */
static void check_derive(parse *P)
{
    pc_manifest *m = P->m;
    if (!m->derive_acls)
        return;
    for (size_t i = 0; i < m->nsources; i++)
        if (m->sources[i].name != NULL && m->sources[i].auth.principal == NULL)
            mf_diag(P->c, m->sources[i].pos,
                    "kafka.derive_acls needs the principal of source '%s': give it "
                    "security.sasl (username) or security.principal",
                    m->sources[i].name);
    for (size_t i = 0; i < m->nsinks; i++)
        if (m->sinks[i].name != NULL && m->sinks[i].auth.principal == NULL)
            mf_diag(P->c, m->sinks[i].pos,
                    "kafka.derive_acls needs the principal of sink '%s': give it security.sasl "
                    "(username) or security.principal",
                    m->sinks[i].name);
}

static void parse_kafka(parse *P, const mf_node *k)
{
    mf_ctx *c = P->c;
    if (!want_kind(c, k, MF_MAP, "kafka"))
        return;
    obj o;
    obj_open(&o, c, k, "kafka", k_kafka_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "bootstrap")) != NULL) {
        if (get_str(c, v, "kafka.bootstrap", &P->m->kafka_bootstrap)) {
            char *why = mf_bootstrap_problem(P->m->kafka_bootstrap);
            if (why != NULL)
                mf_diag(c, v->pos, "%s", why);
            free(why);
        }
    }
    else
        obj_missing(&o, "bootstrap", "kafka");
    if ((v = obj_get(&o, "topics")) != NULL)
        parse_topics(P, v);
    parse_top_security(P, obj_get(&o, "security"), &P->top);
    if ((v = obj_get(&o, "client_config")) != NULL)
        parse_client_config(P, v);
    if ((v = obj_get(&o, "acls")) != NULL) {
        P->m->acls_pos = v->pos;
        parse_acls(P, v);
    }
    if ((v = obj_get(&o, "derive_acls")) != NULL) {
        P->m->acls_pos = v->pos;
        get_bool(c, v, "kafka.derive_acls", &P->m->derive_acls);
    }
}

static void parse_columns(parse *P, pc_mf_table *tb, const mf_node *seq)
{
    mf_ctx *c = P->c;
    if (!want_kind(c, seq, MF_SEQ, "table columns"))
        return;
    if (seq->nkids == 0) {
        mf_diag(c, seq->pos, "table '%s' has no columns; declare at least one",
                tb->name ? tb->name : "?");
        return;
    }
    tb->columns = calloc(seq->nkids, sizeof *tb->columns);
    named *names = calloc(seq->nkids, sizeof *names);
    if (tb->columns == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_column *col = &tb->columns[tb->ncolumns++];
        col->pos = it->pos;
        col->nullable = true;
        if (!want_kind(c, it, MF_MAP, "a column"))
            continue;
        obj o;
        obj_open(&o, c, it, "column", k_column_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "column name", &col->name)) {
            if (check_sql_name(c, v, "column name", col->name)) {
                names[i].name = col->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = label("column", col->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (obj_get(&o, "name") == NULL)
            obj_missing(&o, "name", lab);
        char *type = NULL;
        if ((v = obj_get(&o, "type")) != NULL && get_str(c, v, "column type", &type)) {
            const char *why = NULL, *sug = NULL;
            col->type = mf_column_type(type, &why, &sug);
            if (col->type == NULL && why == NULL) {
                c->oom = true;
            } else if (col->type == NULL && strchr(type, '(') != NULL &&
                       strchr(type, ')') == NULL && it->kind == MF_MAP) {
                mf_diag(c, v->pos,
                        "column type '%s' for %s was cut at a comma: in a {...} flow mapping, "
                        "quote it, e.g. type: \"numeric(10,2)\"",
                        type, lab);
            } else if (col->type == NULL && strcmp(why, "unknown column type") == 0) {
                char *h = hint(sug);
                mf_diag(c, v->pos, "unknown column type '%s' for %s%s", type, lab,
                        sug != NULL ? (h ? h : "")
                                    : " (known: text, varchar(n), integer, bigint, smallint, "
                                      "numeric(p,s), real, double precision, boolean, uuid, "
                                      "timestamptz, timestamp, date, time, jsonb, json, bytea, "
                                      "inet)");
                free(h);
            } else if (col->type == NULL) {
                mf_diag(c, v->pos, "invalid column type '%s' for %s: %s", type, lab, why);
            }
        } else if (v == NULL) {
            obj_missing(&o, "type", lab);
        }
        free(type);
        if ((v = obj_get(&o, "primary_key")) != NULL)
            get_bool(c, v, "primary_key", &col->primary_key);
        if ((v = obj_get(&o, "nullable")) != NULL)
            get_bool(c, v, "nullable", &col->nullable);
        if (col->primary_key)
            col->nullable = false; /* Postgres makes primary key columns NOT NULL anyway */
        free(lab);
    }
    check_dups(c, names, seq->nkids, "column");
    free(names);
}

static void parse_tables(parse *P, pc_mf_schema *s, const mf_node *seq)
{
    mf_ctx *c = P->c;
    if (!want_kind(c, seq, MF_SEQ, "schema tables"))
        return;
    s->tables = calloc(seq->nkids ? seq->nkids : 1, sizeof *s->tables);
    named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
    if (s->tables == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_table *tb = &s->tables[s->ntables++];
        tb->pos = it->pos;
        if (!want_kind(c, it, MF_MAP, "a table"))
            continue;
        obj o;
        obj_open(&o, c, it, "table", k_table_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "table name", &tb->name)) {
            if (check_sql_name(c, v, "table name", tb->name)) {
                names[i].name = tb->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = label("table", tb->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (obj_get(&o, "name") == NULL)
            obj_missing(&o, "name", lab);
        if ((v = obj_get(&o, "columns")) != NULL)
            parse_columns(P, tb, v);
        else
            obj_missing(&o, "columns", lab);
        free(lab);
    }
    check_dups(c, names, seq->nkids, "table");
    free(names);
}

static void parse_schemas(parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, seq, MF_SEQ, "postgres.schemas"))
        return;
    m->schemas = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->schemas);
    named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
    if (m->schemas == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_schema *s = &m->schemas[m->nschemas++];
        s->pos = it->pos;
        if (!want_kind(c, it, MF_MAP, "a schema"))
            continue;
        obj o;
        obj_open(&o, c, it, "schema", k_schema_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "schema name", &s->name)) {
            if (check_sql_name(c, v, "schema name", s->name)) {
                if (strncmp(s->name, "pg_", 3) == 0 || strcmp(s->name, "information_schema") == 0)
                    mf_diag(c, v->pos, "schema name '%s' is reserved by PostgreSQL", s->name);
                names[i].name = s->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        if (obj_get(&o, "name") == NULL) {
            char *lab = label("schema", NULL, i);
            if (lab != NULL)
                obj_missing(&o, "name", lab);
            free(lab);
        }
        if ((v = obj_get(&o, "tables")) != NULL)
            parse_tables(P, s, v);
    }
    check_dups(c, names, seq->nkids, "schema");
    free(names);
}

/* s3://bucket[/prefix]: a bucket name S3 accepts (3-63 of a-z 0-9 . -), a prefix without empty
 * components. */
static void check_s3_uri(mf_ctx *c, const mf_node *v, const char *uri)
{
    const char *b = uri + 5, *slash = strchr(b, '/');
    size_t bl = slash != NULL ? (size_t)(slash - b) : strlen(b);
    bool ok = bl >= 3 && bl <= 63;
    for (size_t i = 0; ok && i < bl; i++)
        ok = (b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
             b[i] == '-';
    if (!ok) {
        mf_diag(c, v->pos,
                "archiving.repository '%s': the bucket name must be 3-63 lower-case letters, "
                "digits, '.' or '-' (s3://bucket/prefix)",
                uri);
        return;
    }
    if (slash != NULL && (slash[1] == '\0' || strstr(slash, "//") != NULL ||
                          slash[strlen(slash) - 1] == '/'))
        mf_diag(c, v->pos,
                "archiving.repository '%s': the prefix after the bucket must not be empty, "
                "end in '/' or hold '//' (s3://bucket/a/b)",
                uri);
}

static void parse_archiving_s3(mf_ctx *c, const mf_node *v3, const char *dir,
                               pc_mf_archiving_s3 *s3)
{
    s3->pos = v3->pos;
    s3->verify_tls = true;
    if (!want_kind(c, v3, MF_MAP, "archiving.s3"))
        return;
    s3->declared = true;
    obj o;
    obj_open(&o, c, v3, "archiving.s3", k_archiving_s3_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "endpoint")) != NULL && get_str(c, v, "archiving.s3.endpoint",
                                                          &s3->endpoint) &&
        strncmp(s3->endpoint, "http://", 7) != 0 && strncmp(s3->endpoint, "https://", 8) != 0)
        mf_diag(c, v->pos,
                "archiving.s3.endpoint must start with http:// or https://, got '%s'",
                s3->endpoint);
    if ((v = obj_get(&o, "region")) != NULL)
        get_str(c, v, "archiving.s3.region", &s3->region);
    static const char *const styles[] = {"path", "virtual", NULL};
    if ((v = obj_get(&o, "uri_style")) != NULL)
        get_enum(c, v, "archiving.s3.uri_style", styles, &s3->uri_style);
    if ((v = obj_get(&o, "access_key_id")) != NULL)
        get_str(c, v, "archiving.s3.access_key_id", &s3->access_key_id);
    if ((v = obj_get(&o, "secret_access_key")) != NULL)
        get_str(c, v, "archiving.s3.secret_access_key", &s3->secret_access_key);
    if ((v = obj_get(&o, "session_token")) != NULL)
        get_str(c, v, "archiving.s3.session_token", &s3->session_token);
    if ((s3->access_key_id != NULL) != (s3->secret_access_key != NULL))
        mf_diag(c, v3->pos,
                "archiving.s3 needs access_key_id and secret_access_key together (or neither: "
                "then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)");
    char *ca = NULL;
    if ((v = obj_get(&o, "ca_file")) != NULL && get_str(c, v, "archiving.s3.ca_file", &ca)) {
        s3->ca_file = resolve_path(dir, ca);
        if (s3->ca_file == NULL)
            c->oom = true;
    }
    free(ca);
    if ((v = obj_get(&o, "verify_tls")) != NULL)
        get_bool(c, v, "archiving.s3.verify_tls", &s3->verify_tls);
}

static void parse_archiving_encryption(mf_ctx *c, const mf_node *ve,
                                       pc_mf_archiving_encryption *e)
{
    e->pos = ve->pos;
    if (!want_kind(c, ve, MF_MAP, "archiving.encryption"))
        return;
    e->declared = true;
    obj o;
    obj_open(&o, c, ve, "archiving.encryption", k_archiving_enc_keys);
    const mf_node *v;
    static const char *const ciphers[] = {"aes-256-gcm", NULL};
    if ((v = obj_get(&o, "cipher")) != NULL)
        get_enum(c, v, "archiving.encryption.cipher", ciphers, &e->cipher);
    else if ((e->cipher = pc_strdup("aes-256-gcm")) == NULL)
        c->oom = true;
    if ((v = obj_get(&o, "key")) != NULL) {
        if (get_str(c, v, "archiving.encryption.key", &e->key) && strlen(e->key) < 16)
            mf_diag(c, v->pos,
                    "archiving.encryption.key is %zu characters: use a passphrase of at least 16 "
                    "(e.g. key: ${PIPECTL_REPO_KEY} with `openssl rand -base64 32`)",
                    strlen(e->key));
    } else {
        obj_missing(&o, "key", "archiving.encryption");
    }
}

static void parse_archiving(parse *P, const mf_node *a, const char *dir)
{
    mf_ctx *c = P->c;
    pc_mf_archiving *ar = &P->m->archiving;
    ar->pos = a->pos;
    if (!want_kind(c, a, MF_MAP, "postgres.archiving"))
        return;
    ar->declared = true;
    ar->enabled = true;
    obj o;
    obj_open(&o, c, a, "archiving", k_archiving_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "enabled")) != NULL)
        get_bool(c, v, "archiving.enabled", &ar->enabled);
    char *repo = NULL;
    bool on_s3 = false;
    if ((v = obj_get(&o, "repository")) != NULL) {
        if (get_str(c, v, "archiving.repository", &repo)) {
            on_s3 = strncmp(repo, "s3://", 5) == 0;
            if (on_s3) {
                check_s3_uri(c, v, repo);
                if ((ar->repository = pc_strdup(repo)) == NULL)
                    c->oom = true;
            } else if (strstr(repo, "://") != NULL) {
                mf_diag(c, v->pos,
                        "archiving.repository '%s': only a directory path or s3://bucket/prefix "
                        "is supported",
                        repo);
            } else if ((ar->repository = resolve_path(dir, repo)) == NULL) {
                c->oom = true;
            }
        }
    } else if (ar->enabled) {
        obj_missing(&o, "repository", "archiving");
    }
    free(repo);
    if ((v = obj_get(&o, "s3")) != NULL)
        parse_archiving_s3(c, v, dir, &ar->s3);
    if (!ar->s3.declared)
        ar->s3.verify_tls = true;
    if (ar->s3.declared && !on_s3 && ar->repository != NULL)
        mf_diag(c, ar->s3.pos,
                "archiving.s3 is set but archiving.repository is a directory: use "
                "repository: s3://bucket/prefix, or remove the s3 block");
    if ((v = obj_get(&o, "encryption")) != NULL)
        parse_archiving_encryption(c, v, &ar->encryption);
    if ((v = obj_get(&o, "credentials_file")) != NULL) {
        char *cf = NULL;
        if (get_str(c, v, "archiving.credentials_file", &cf)) {
            ar->credentials_file = resolve_path(dir, cf);
            if (ar->credentials_file == NULL)
                c->oom = true;
        }
        free(cf);
    }
    int64_t ms = 0;
    if ((v = obj_get(&o, "archive_timeout")) != NULL &&
        get_duration(c, v, "archive_timeout", 1000, 0, 1073741823LL * 1000, &ms)) {
        if (ms % 1000 != 0)
            mf_diag(c, v->pos, "archive_timeout must be whole seconds, got '%s'", v->value);
        else
            ar->archive_timeout_s = (int)(ms / 1000);
    }
    if ((v = obj_get(&o, "command")) != NULL)
        get_str(c, v, "archiving.command", &ar->command);
    /* PostgreSQL runs archive_command in its own environment: the secrets an S3 or encrypted
     * repository needs reach it through a file, never the command line (pg_settings shows it). */
    if (ar->enabled && ar->command == NULL && ar->credentials_file == NULL &&
        (on_s3 || ar->encryption.declared))
        mf_diag(c, a->pos,
                "archiving on %s needs credentials_file: the file (readable only by "
                "PostgreSQL's OS user) from which archive_command reads %s; write it with "
                "`pipectl backup credentials-file --output PATH`, or give archiving.command",
                on_s3 && ar->encryption.declared ? "an encrypted S3 repository"
                : on_s3                          ? "an S3 repository"
                                                 : "an encrypted repository",
                on_s3 && ar->encryption.declared
                    ? "the S3 credentials and the encryption key"
                : on_s3 ? "the S3 credentials"
                        : "the encryption key");
    static const char *const levels[] = {"replica", "logical", NULL};
    if ((v = obj_get(&o, "wal_level")) != NULL)
        get_enum(c, v, "archiving.wal_level", levels, &ar->wal_level);
    else if (ar->enabled && (ar->wal_level = pc_strdup("replica")) == NULL)
        c->oom = true;
}

static void parse_postgres(parse *P, const mf_node *pg, const char *dir)
{
    mf_ctx *c = P->c;
    if (!want_kind(c, pg, MF_MAP, "postgres"))
        return;
    obj o;
    obj_open(&o, c, pg, "postgres", k_pg_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "dsn")) != NULL) {
        get_str(c, v, "postgres.dsn", &P->m->pg_dsn);
        P->m->pg_dsn_pos = v->pos;
    }
    else
        obj_missing(&o, "dsn", "postgres");
    if ((v = obj_get(&o, "schemas")) != NULL)
        parse_schemas(P, v);
    if ((v = obj_get(&o, "archiving")) != NULL)
        parse_archiving(P, v, dir);
}

static void parse_params(mf_ctx *c, pc_kvlist *l, const mf_node *map, const char *what)
{
    if (!want_kind(c, map, MF_MAP, what))
        return;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const mf_node *k = map->kids[i], *v = map->kids[i + 1];
        if (k->kind != MF_SCALAR || k->bad || v->bad)
            continue;
        if (v->kind != MF_SCALAR || mf_is_null(v)) {
            char *w = pc_asprintf("%s '%s'", what, k->value);
            if (w != NULL)
                type_error(c, v, w, "a string");
            free(w);
            continue;
        }
        if (pc_kvlist_set(l, k->value, v->value) != 0)
            c->oom = true;
    }
}

static void parse_sources(parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, seq, MF_SEQ, "sources"))
        return;
    m->sources = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->sources);
    if (m->sources == NULL) {
        c->oom = true;
        return;
    }
    static const char *const types[] = {"randomuser", NULL};
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_source *s = &m->sources[m->nsources++];
        s->pos = it->pos;
        s->batch = 100;
        s->interval_ms = 1000;
        if (!want_kind(c, it, MF_MAP, "a source"))
            continue;
        obj o;
        obj_open(&o, c, it, "source", k_source_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "source name", &s->name))
            check_kafka_name(c, v, "source name", s->name);
        char *lab = label("source", s->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (obj_get(&o, "name") == NULL)
            obj_missing(&o, "name", lab);
        if ((v = obj_get(&o, "type")) != NULL)
            get_enum(c, v, "source type", types, &s->type);
        else
            obj_missing(&o, "type", lab);
        if ((v = obj_get(&o, "url")) != NULL) {
            if (get_str(c, v, "source url", &s->url) && strncmp(s->url, "http://", 7) != 0 &&
                strncmp(s->url, "https://", 8) != 0)
                mf_diag(c, v->pos, "source url must start with http:// or https://, got '%s'",
                        s->url);
        } else if ((s->url = pc_strdup("https://randomuser.me/api/")) == NULL) {
            c->oom = true;
        }
        if ((v = obj_get(&o, "topic")) != NULL)
            get_str(c, v, "source topic", &s->topic);
        else
            obj_missing(&o, "topic", lab);
        if ((v = obj_get(&o, "batch")) != NULL)
            get_int(c, v, "batch", 1, 5000, &s->batch);
        int64_t ms = 0;
        if ((v = obj_get(&o, "interval")) != NULL &&
            get_duration(c, v, "interval", 1, 0, 7LL * 86400000, &ms))
            s->interval_ms = (int)ms;
        if ((v = obj_get(&o, "key")) != NULL)
            get_str(c, v, "source key", &s->key);
        else if ((s->key = pc_strdup("login.uuid")) == NULL)
            c->oom = true;
        if ((v = obj_get(&o, "params")) != NULL)
            parse_params(c, &s->params, v, "source params");
        char where[160];
        snprintf(where, sizeof where, "source '%s' security", s->name ? s->name : "?");
        resolve_worker_auth(P, obj_get(&o, "security"), where, &P->top, &s->auth, &s->own_auth);
        free(lab);
    }
}

static void parse_sinks(parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!want_kind(c, seq, MF_SEQ, "sinks"))
        return;
    m->sinks = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->sinks);
    if (m->sinks == NULL) {
        c->oom = true;
        return;
    }
    static const char *const modes[] = {"insert", "upsert", NULL};
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_sink *s = &m->sinks[m->nsinks++];
        s->pos = it->pos;
        s->batch_max_records = 5000;
        s->batch_max_wait_ms = 200;
        if (!want_kind(c, it, MF_MAP, "a sink"))
            continue;
        obj o;
        obj_open(&o, c, it, "sink", k_sink_keys);
        const mf_node *v;
        if ((v = obj_get(&o, "name")) != NULL && get_str(c, v, "sink name", &s->name))
            check_kafka_name(c, v, "sink name", s->name);
        char *lab = label("sink", s->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (obj_get(&o, "name") == NULL)
            obj_missing(&o, "name", lab);
        if ((v = obj_get(&o, "topic")) != NULL)
            get_str(c, v, "sink topic", &s->topic);
        else
            obj_missing(&o, "topic", lab);
        if ((v = obj_get(&o, "table")) != NULL)
            get_str(c, v, "sink table", &s->table);
        else
            obj_missing(&o, "table", lab);
        if ((v = obj_get(&o, "mode")) != NULL)
            get_enum(c, v, "sink mode", modes, &s->mode);
        else if ((s->mode = pc_strdup("insert")) == NULL)
            c->oom = true;
        if ((v = obj_get(&o, "mapping")) != NULL) {
            parse_params(c, &s->mapping, v, "mapping for column");
            if (v->kind == MF_MAP && v->nkids == 0)
                mf_diag(c, v->pos, "%s has an empty mapping; map each column to a JSON path", lab);
        } else {
            obj_missing(&o, "mapping", lab);
        }
        if ((v = obj_get(&o, "batch")) != NULL && want_kind(c, v, MF_MAP, "sink batch")) {
            obj b;
            obj_open(&b, c, v, "sink batch", k_sink_batch_keys);
            const mf_node *bv;
            if ((bv = obj_get(&b, "max_records")) != NULL)
                get_int(c, bv, "batch.max_records", 1, 1000000, &s->batch_max_records);
            int64_t ms = 0;
            if ((bv = obj_get(&b, "max_wait")) != NULL &&
                get_duration(c, bv, "batch.max_wait", 1, 1, 3600000, &ms))
                s->batch_max_wait_ms = (int)ms;
        }
        if ((v = obj_get(&o, "dead_letter")) != NULL)
            get_str(c, v, "dead_letter", &s->dead_letter);
        if ((v = obj_get(&o, "convert_threads")) != NULL)
            get_int(c, v, "convert_threads", 1, 64, &s->convert_threads);
        char where[160];
        snprintf(where, sizeof where, "sink '%s' security", s->name ? s->name : "?");
        resolve_worker_auth(P, obj_get(&o, "security"), where, &P->top, &s->auth, &s->own_auth);
        free(lab);
    }
}

static void parse_backups(parse *P, const mf_node *b)
{
    mf_ctx *c = P->c;
    pc_mf_backups *bk = &P->m->backups;
    bk->pos = b->pos;
    if (!want_kind(c, b, MF_MAP, "backups"))
        return;
    bk->declared = true;
    obj o;
    obj_open(&o, c, b, "backups", k_backups_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "schedule")) != NULL) {
        if (get_str(c, v, "backups.schedule", &bk->schedule)) {
            /* the parser `run` uses, so what validates is what runs */
            pc_cron cron;
            pc_error err = {0};
            int64_t first = 0;
            if (pc_cron_parse(bk->schedule, &cron, &err) != 0)
                mf_diag(c, v->pos, "backups.schedule: %s", err.msg);
            else if (pc_cron_next(&cron, 0, &first) != 0)
                mf_diag(c, v->pos,
                        "backups.schedule '%s' never fires (no month has that day): pick a "
                        "day of the month every chosen month has, e.g. '0 3 28 2 *'",
                        bk->schedule);
        }
    } else {
        obj_missing(&o, "schedule", "backups");
    }
    if ((v = obj_get(&o, "retention")) != NULL && want_kind(c, v, MF_MAP, "backups.retention")) {
        obj r;
        obj_open(&r, c, v, "backups.retention", k_retention_keys);
        const mf_node *rv;
        if ((rv = obj_get(&r, "full")) != NULL)
            get_int(c, rv, "retention.full", 1, 10000, &bk->retention_full);
        if ((rv = obj_get(&r, "days")) != NULL)
            get_int(c, rv, "retention.days", 1, 36500, &bk->retention_days);
    }
    static const char *const comps[] = {"zstd", "lz4", "gzip", "none", NULL};
    if ((v = obj_get(&o, "compression")) != NULL)
        get_enum(c, v, "backups.compression", comps, &bk->compression);
    else if ((bk->compression = pc_strdup("zstd")) == NULL)
        c->oom = true;
}

static void parse_nocodb(parse *P, const mf_node *n)
{
    mf_ctx *c = P->c;
    pc_mf_nocodb *nc = &P->m->nocodb;
    nc->pos = n->pos;
    if (!want_kind(c, n, MF_MAP, "nocodb"))
        return;
    nc->declared = true;
    obj o;
    obj_open(&o, c, n, "nocodb", k_nocodb_keys);
    const mf_node *v;
    if ((v = obj_get(&o, "url")) != NULL) {
        if (get_str(c, v, "nocodb.url", &nc->url) && strncmp(nc->url, "http://", 7) != 0 &&
            strncmp(nc->url, "https://", 8) != 0)
            mf_diag(c, v->pos, "nocodb.url must start with http:// or https://, got '%s'", nc->url);
    } else {
        obj_missing(&o, "url", "nocodb");
    }
    if ((v = obj_get(&o, "token")) != NULL)
        get_str(c, v, "nocodb.token", &nc->token);
    if ((v = obj_get(&o, "email")) != NULL)
        get_str(c, v, "nocodb.email", &nc->email);
    if ((v = obj_get(&o, "password")) != NULL)
        get_str(c, v, "nocodb.password", &nc->password);
    if (obj_get(&o, "token") == NULL &&
        (obj_get(&o, "email") == NULL || obj_get(&o, "password") == NULL))
        mf_diag(c, n->pos, "nocodb needs 'token', or 'email' and 'password', to sign in");
    if ((v = obj_get(&o, "base")) != NULL)
        get_str(c, v, "nocodb.base", &nc->base);
    if ((v = obj_get(&o, "schemas")) != NULL && want_kind(c, v, MF_SEQ, "nocodb.schemas")) {
        nc->schemas = calloc(v->nkids ? v->nkids : 1, sizeof *nc->schemas);
        if (nc->schemas == NULL) {
            c->oom = true;
            return;
        }
        for (size_t i = 0; i < v->nkids; i++) {
            char *s = NULL;
            if (get_str(c, v->kids[i], "nocodb schema", &s))
                nc->schemas[nc->nschemas++] = s;
        }
    }
    if ((v = obj_get(&o, "role")) != NULL && get_str(c, v, "nocodb.role", &nc->role))
        check_sql_name(c, v, "nocodb.role", nc->role);
    if ((v = obj_get(&o, "role_password")) != NULL)
        get_str(c, v, "nocodb.role_password", &nc->role_password);
    if ((v = obj_get(&o, "read_only")) != NULL)
        get_bool(c, v, "nocodb.read_only", &nc->read_only);
    if ((v = obj_get(&o, "pg_host")) != NULL)
        get_str(c, v, "nocodb.pg_host", &nc->pg_host);
    if ((v = obj_get(&o, "pg_port")) != NULL)
        get_int(c, v, "nocodb.pg_port", 1, 65535, &nc->pg_port);
}

static void parse_git(parse *P, const mf_node *g, const char *dir)
{
    mf_ctx *c = P->c;
    pc_mf_git *gt = &P->m->git;
    gt->pos = g->pos;
    if (!want_kind(c, g, MF_MAP, "git"))
        return;
    gt->declared = true;
    obj o;
    obj_open(&o, c, g, "git", k_git_keys);
    const mf_node *v;
    char *repo = NULL;
    if ((v = obj_get(&o, "repo")) != NULL) {
        if (get_str(c, v, "git.repo", &repo) && (gt->repo = resolve_path(dir, repo)) == NULL)
            c->oom = true;
    } else {
        obj_missing(&o, "repo", "git");
    }
    free(repo);
    if ((v = obj_get(&o, "branch")) != NULL) {
        if (get_str(c, v, "git.branch", &gt->branch) &&
            (strpbrk(gt->branch, " ~^:?*[\\") != NULL || strstr(gt->branch, "..") != NULL ||
             gt->branch[0] == '-' || gt->branch[0] == '/'))
            mf_diag(c, v->pos, "git.branch '%s' is not a valid branch name", gt->branch);
    } else if ((gt->branch = pc_strdup("main")) == NULL) {
        c->oom = true;
    }
    if ((v = obj_get(&o, "push")) != NULL)
        get_str(c, v, "git.push", &gt->push);
    if ((v = obj_get(&o, "remote_url")) != NULL)
        get_str(c, v, "git.remote_url", &gt->remote_url);
    if ((v = obj_get(&o, "path")) != NULL) {
        if (get_str(c, v, "git.path", &gt->path) &&
            (gt->path[0] == '/' || strstr(gt->path, "..") != NULL))
            mf_diag(c, v->pos, "git.path '%s' must be a relative folder inside the repository",
                    gt->path);
    }
}

/* ---------- cross references ---------- */

static void ref_topic(parse *P, const mf_node *v, const char *who, const char *role,
                      const char *name)
{
    if (P->topics_unknown)
        return;
    pc_manifest *m = P->m;
    if (name == NULL || pc_manifest_find_topic(m, name) != NULL)
        return;
    const char **cands = calloc(m->ntopics + 1, sizeof *cands);
    if (cands == NULL) {
        P->c->oom = true;
        return;
    }
    for (size_t i = 0; i < m->ntopics; i++)
        cands[i] = m->topics[i].name;
    char *h = hint(nearest(name, cands, m->ntopics));
    mf_diag(P->c, v->pos, "%s %s topic '%s', which is not declared in kafka.topics%s", who, role,
            name, h ? h : "");
    free(h);
    free(cands);
}

static const mf_node *item_value(const mf_node *seq, size_t i, const char *key)
{
    if (seq == NULL || seq->kind != MF_SEQ || i >= seq->nkids || seq->kids[i]->kind != MF_MAP)
        return NULL;
    const mf_node *it = seq->kids[i];
    for (size_t k = 0; k + 1 < it->nkids; k += 2)
        if (it->kids[k]->kind == MF_SCALAR && strcmp(it->kids[k]->value, key) == 0)
            return it->kids[k + 1];
    return NULL;
}

static const mf_node *root_get(const mf_node *root, const char *key)
{
    for (size_t k = 0; k + 1 < root->nkids; k += 2)
        if (root->kids[k]->kind == MF_SCALAR && strcmp(root->kids[k]->value, key) == 0)
            return root->kids[k + 1];
    return NULL;
}

static void check_refs(parse *P, const mf_node *root)
{
    pc_manifest *m = P->m;
    mf_ctx *c = P->c;
    const mf_node *srcs = root_get(root, "sources"), *sinks = root_get(root, "sinks");

    /* sources and sinks share one namespace: `pipectl run NAME` picks either */
    named *names = calloc(m->nsources + m->nsinks + 1, sizeof *names);
    if (names == NULL) {
        c->oom = true;
        return;
    }
    size_t nn = 0;
    for (size_t i = 0; i < m->nsources; i++) {
        const pc_mf_source *s = &m->sources[i];
        const mf_node *tv = item_value(srcs, i, "topic");
        if (tv != NULL && s->name != NULL)
            ref_topic(P, tv, "source", "writes to", s->topic);
        names[nn].name = s->name;
        names[nn].pos = name_pos(srcs->kids[i], s->pos);
        names[nn].ix = nn;
        nn++;
    }
    for (size_t i = 0; i < m->nsinks; i++) {
        const pc_mf_sink *s = &m->sinks[i];
        names[nn].name = s->name;
        names[nn].pos = name_pos(sinks->kids[i], s->pos);
        names[nn].ix = nn;
        nn++;
        const mf_node *v;
        if ((v = item_value(sinks, i, "topic")) != NULL)
            ref_topic(P, v, "sink", "reads", s->topic);
        if ((v = item_value(sinks, i, "dead_letter")) != NULL && s->dead_letter != NULL) {
            ref_topic(P, v, "sink", "sends dead letters to", s->dead_letter);
            if (pc_streq(s->dead_letter, s->topic))
                mf_diag(c, v->pos,
                        "dead_letter must be a different topic than the one the sink "
                        "reads ('%s')",
                        s->topic);
        }
        const pc_mf_table *tb = NULL;
        if ((v = item_value(sinks, i, "table")) != NULL && s->table != NULL && !P->tables_unknown) {
            const char *dot = strchr(s->table, '.');
            if (dot == NULL) {
                mf_diag(c, v->pos, "sink table must be written as schema.table, got '%s'",
                        s->table);
                continue;
            }
            char *schema = pc_strndup(s->table, (size_t)(dot - s->table));
            if (schema == NULL) {
                c->oom = true;
                break;
            }
            tb = pc_manifest_find_table(m, schema, dot + 1);
            if (tb == NULL) {
                size_t total = 0;
                for (size_t a = 0; a < m->nschemas; a++)
                    total += m->schemas[a].ntables;
                char **full = calloc(total + 1, sizeof *full);
                size_t nf = 0;
                for (size_t a = 0; full != NULL && a < m->nschemas; a++)
                    for (size_t b = 0; b < m->schemas[a].ntables; b++)
                        if (m->schemas[a].name && m->schemas[a].tables[b].name)
                            full[nf++] = pc_asprintf("%s.%s", m->schemas[a].name,
                                                     m->schemas[a].tables[b].name);
                char *h = full ? hint(nearest(s->table, (const char *const *)full, nf)) : NULL;
                mf_diag(c, v->pos,
                        "sink writes to table '%s', which is not declared in "
                        "postgres.schemas%s",
                        s->table, h ? h : "");
                free(h);
                for (size_t a = 0; a < nf; a++)
                    free(full[a]);
                free(full);
            }
            free(schema);
        }
        if (tb == NULL)
            continue;
        const mf_node *mp = item_value(sinks, i, "mapping");
        const char **cols = calloc(tb->ncolumns + 1, sizeof *cols);
        if (cols == NULL) {
            c->oom = true;
            break;
        }
        for (size_t k = 0; k < tb->ncolumns; k++)
            cols[k] = tb->columns[k].name;
        if (mp != NULL && mp->kind == MF_MAP) {
            for (size_t k = 0; k + 1 < mp->nkids; k += 2) {
                const mf_node *kn = mp->kids[k];
                if (kn->kind != MF_SCALAR)
                    continue;
                bool found = false;
                for (size_t x = 0; x < tb->ncolumns; x++)
                    if (pc_streq(cols[x], kn->value))
                        found = true;
                if (!found) {
                    char *h = hint(nearest(kn->value, cols, tb->ncolumns));
                    mf_diag(c, kn->pos, "mapping names column '%s', which is not a column of %s%s",
                            kn->value, s->table, h ? h : "");
                    free(h);
                }
            }
            bool has_pk = false;
            for (size_t x = 0; x < tb->ncolumns; x++) {
                const pc_mf_column *col = &tb->columns[x];
                has_pk |= col->primary_key;
                if (col->name != NULL && !col->nullable &&
                    pc_kvlist_get(&s->mapping, col->name) == NULL)
                    mf_diag(c, mp->pos,
                            "mapping of sink '%s' does not fill NOT NULL column '%s' "
                            "of %s",
                            s->name ? s->name : "?", col->name, s->table);
            }
            if (pc_streq(s->mode, "upsert") && !has_pk)
                mf_diag(c, s->pos, "sink '%s' uses mode upsert but %s has no primary_key column",
                        s->name ? s->name : "?", s->table);
        }
        free(cols);
    }
    check_dups(c, names, nn, "source/sink name");
    free(names);

    /* nocodb.schemas must be declared schemas */
    const mf_node *nc = root_get(root, "nocodb");
    const mf_node *ncs = NULL;
    if (nc != NULL && nc->kind == MF_MAP)
        ncs = root_get(nc, "schemas");
    if (ncs != NULL && ncs->kind == MF_SEQ) {
        const char **cands = calloc(m->nschemas + 1, sizeof *cands);
        for (size_t i = 0; cands != NULL && i < m->nschemas; i++)
            cands[i] = m->schemas[i].name;
        for (size_t i = 0; cands != NULL && i < ncs->nkids; i++) {
            const mf_node *sv = ncs->kids[i];
            if (sv->kind != MF_SCALAR || sv->bad || mf_is_null(sv))
                continue;
            bool found = false;
            for (size_t k = 0; k < m->nschemas; k++)
                found |= pc_streq(m->schemas[k].name, sv->value);
            if (!found) {
                char *h = hint(nearest(sv->value, cands, m->nschemas));
                mf_diag(c, sv->pos, "nocodb schema '%s' is not declared in postgres.schemas%s",
                        sv->value, h ? h : "");
                free(h);
            }
        }
        if (cands == NULL)
            c->oom = true;
        free(cands);
    }
}

/* ---------- top level ---------- */

static void parse_root(parse *P, const mf_node *root, const char *dir)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    obj o;
    obj_open(&o, c, root, "manifest", k_top_keys);
    const mf_node *v;
    char *s = NULL;
    if ((v = obj_get(&o, "apiVersion")) != NULL) {
        if (get_str(c, v, "apiVersion", &s) && strcmp(s, "pipectl/v1") != 0)
            mf_diag(c, v->pos, "apiVersion must be pipectl/v1, got '%s'", s);
    } else {
        obj_missing(&o, "apiVersion", "manifest");
    }
    free(s);
    s = NULL;
    if ((v = obj_get(&o, "kind")) != NULL) {
        if (get_str(c, v, "kind", &s) && strcmp(s, "Pipeline") != 0)
            mf_diag(c, v->pos, "kind must be Pipeline, got '%s'", s);
    } else {
        obj_missing(&o, "kind", "manifest");
    }
    free(s);
    if ((v = obj_get(&o, "metadata")) != NULL) {
        if (want_kind(c, v, MF_MAP, "metadata")) {
            obj md;
            obj_open(&md, c, v, "metadata", k_meta_keys);
            const mf_node *nv;
            if ((nv = obj_get(&md, "name")) != NULL) {
                if (get_str(c, nv, "metadata.name", &m->name))
                    check_pipeline_name(c, nv, m->name);
            } else {
                obj_missing(&md, "name", "metadata");
            }
            char *desc = NULL;
            if ((nv = obj_get(&md, "description")) != NULL)
                get_str(c, nv, "metadata.description", &desc);
            free(desc);
        }
    } else {
        obj_missing(&o, "metadata", "manifest");
    }
    if ((v = obj_get(&o, "kafka")) != NULL)
        parse_kafka(P, v);
    if (m->kafka_auth.protocol == NULL) /* no (readable) kafka block: plaintext */
        parse_top_security(P, NULL, &P->top);
    if ((v = obj_get(&o, "postgres")) != NULL)
        parse_postgres(P, v, dir);
    if ((v = obj_get(&o, "sources")) != NULL)
        parse_sources(P, v);
    if ((v = obj_get(&o, "sinks")) != NULL)
        parse_sinks(P, v);
    check_derive(P);
    if ((v = obj_get(&o, "backups")) != NULL) {
        parse_backups(P, v);
        /* what `run` and `status` need of a schedule, said here first (FILE:LINE:COL) */
        if (m->backups.declared && obj_get(&o, "postgres") != NULL &&
            (m->archiving.repository == NULL || m->archiving.repository[0] == '\0'))
            mf_diag(c, v->pos,
                    "backups needs postgres.archiving.repository (where base backups and WAL are "
                    "stored): add it, or remove the backups block");
        else if (m->backups.declared && obj_get(&o, "postgres") == NULL)
            mf_diag(c, v->pos,
                    "backups needs a postgres block (the database to back up, and "
                    "archiving.repository)");
    }
    if ((v = obj_get(&o, "nocodb")) != NULL)
        parse_nocodb(P, v);
    if ((v = obj_get(&o, "git")) != NULL)
        parse_git(P, v, dir);
    if (m->git.declared && m->git.path == NULL && m->name != NULL &&
        (m->git.path = pc_strdup(m->name)) == NULL)
        c->oom = true;
    if (m->nocodb.declared && m->nocodb.base == NULL && m->name != NULL &&
        (m->nocodb.base = pc_strdup(m->name)) == NULL)
        c->oom = true;
    /* when the block holding the declarations is misspelt or malformed, its error is the one
     * to fix; "not declared" for every reference would only bury it */
    const mf_node *kv = obj_get(&o, "kafka"), *pv = obj_get(&o, "postgres");
    const mf_node *tv = kv != NULL && kv->kind == MF_MAP ? root_get(kv, "topics") : NULL;
    const mf_node *sv = pv != NULL && pv->kind == MF_MAP ? root_get(pv, "schemas") : NULL;
    P->topics_unknown = (kv == NULL && o.suggested != 0) || (kv != NULL && kv->kind != MF_MAP) ||
                        (tv != NULL && tv->kind != MF_SEQ);
    P->tables_unknown = (pv == NULL && o.suggested != 0) || (pv != NULL && pv->kind != MF_MAP) ||
                        (sv != NULL && sv->kind != MF_SEQ);
    check_refs(P, root);
}

/* ---------- byte-level checks ---------- */

static pc_pos pos_at(const char *text, size_t off)
{
    pc_pos p = {1, 1};
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            p.line++;
            p.col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

/* Offset of the first byte that is not valid UTF-8, or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 1;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            n = 2;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            n = 3;
            cp = b & 0x07;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

static bool only_blank(const char *text, size_t len)
{
    /* whitespace and comments only */
    bool comment = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (comment) {
            if (ch == '\n')
                comment = false;
            continue;
        }
        if (ch == '#')
            comment = true;
        else if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
            return false;
    }
    return true;
}

/* ---------- public API ---------- */

/* Replaces every occurrence of needle in *msg with PC_REDACTED. */
static void scrub(char **msg, const char *needle)
{
    if (*msg == NULL || strstr(*msg, needle) == NULL)
        return;
    pc_buf b = {0};
    size_t nl = strlen(needle);
    const char *p = *msg;
    for (const char *hit; (hit = strstr(p, needle)) != NULL; p = hit + nl)
        if (pc_buf_append(&b, p, (size_t)(hit - p)) != 0 || pc_buf_puts(&b, PC_REDACTED) != 0)
            goto oom;
    if (pc_buf_puts(&b, p) != 0)
        goto oom;
    free(*msg);
    *msg = pc_buf_detach(&b);
    return;
oom:
    pc_buf_free(&b);
}

/* A secret variable used in a non-secret field (partitions: ${PG_PASSWORD}) would otherwise be
 * quoted by a type error: scrub the values of every ${VAR} whose name looks secret from all
 * diagnostics. */
static void scrub_secret_vars(const char *text, size_t len, const mf_ctx *c, pc_diags *d)
{
    for (size_t i = 0; i + 2 < len; i++) {
        if (text[i] != '$' || text[i + 1] != '{')
            continue;
        size_t j = i + 2;
        while (j < len && (isalnum((unsigned char)text[j]) || text[j] == '_'))
            j++;
        char name[128];
        size_t n = j - (i + 2);
        if (n == 0 || n >= sizeof name)
            continue;
        memcpy(name, text + i + 2, n);
        name[n] = '\0';
        const char *v = pc_is_secret_key(name) ? c->getenv_fn(name, c->env_ctx) : NULL;
        if (v == NULL || strlen(v) < 3)
            continue;
        for (size_t k = 0; k < d->n; k++)
            scrub(&d->items[k].message, v);
    }
}

static const char *process_getenv(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

static char *cwd_dir(void)
{
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof buf) == NULL)
        return pc_strdup("/");
    return pc_strdup(buf);
}

static int parse_with_dir(pc_manifest **out, const char *name, const char *text, size_t len,
                          const char *dir, pc_getenv_fn getenv_fn, void *env_ctx, pc_diags *diags,
                          pc_error *err)
{
    pc_manifest *m = NULL;
    mf_node *root = NULL;
    pc_diags local = {0};
    int rc = 0;
    *out = NULL;
    if (diags == NULL)
        diags = &local;
    pc_diags_free(diags);
    mf_ctx c = {
        .diags = diags, .getenv_fn = getenv_fn ? getenv_fn : process_getenv, .env_ctx = env_ctx};
    pc_pos top = {1, 1};
    if ((diags->file = pc_strdup(name)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", name);
        goto done;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL || (m->file = pc_strdup(name)) == NULL || (m->dir = pc_strdup(dir)) == NULL ||
        (m->raw = pc_strndup(text, len)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", name);
        goto done;
    }
    m->raw_len = len;

    const void *nul = memchr(text, '\0', len);
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (len > MF_MAX_BYTES) {
        mf_diag(&c, top,
                "manifest is %zu bytes, larger than the 4 MiB limit; is this the right "
                "file?",
                len);
    } else if (len == 0 || only_blank(text, len)) {
        mf_diag(&c, top, "manifest is empty");
    } else if (nul != NULL && (size_t)((const char *)nul - text) < bad) {
        mf_diag(&c, pos_at(text, (size_t)((const char *)nul - text)),
                "manifest contains a NUL byte: this looks like a binary file, not YAML");
    } else if (bad < len) {
        bool utf16 = len >= 2 && ((unsigned char)text[0] == 0xFF || (unsigned char)text[0] == 0xFE);
        mf_diag(&c, pos_at(text, bad),
                "manifest is not valid UTF-8 (byte 0x%02x%s); save it as UTF-8 text",
                (unsigned char)text[bad], utf16 ? ", looks like UTF-16" : "");
    } else if (mf_tree_build(&c, text, len, &root) == 0 && !c.oom) {
        if (root == NULL || mf_is_null(root)) {
            mf_diag(&c, top, "manifest is empty");
        } else if (root->kind != MF_MAP) {
            char *d = mf_describe(root);
            mf_diag(&c, root->pos,
                    "manifest must be a mapping with apiVersion, kind, metadata, ...; got %s",
                    d ? d : "something else");
            free(d);
        } else {
            mf_tree_check_keys(&c, root);
            mf_tree_expand(&c, root);
            parse P = {.c = &c, .m = m, .dir = dir};
            if (!c.oom)
                parse_root(&P, root, dir);
            auth_dispose(&P.top.a);
        }
    }
    if (c.oom) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory parsing manifest %s", name);
        goto done;
    }
    if (diags->n > 0) {
        scrub_secret_vars(text, len, &c, diags);
        mf_diags_sort(diags);
        char *first = pc_diag_format(diags, 0);
        rc = pc_error_set(err, PC_EINVAL, "manifest %s is invalid: %s%s", name,
                          first ? first : "see the diagnostics",
                          diags->n > 1 ? " (and more errors)" : "");
        free(first);
        goto done;
    }
    *out = m;
    m = NULL;
done:
    mf_node_free(root);
    pc_manifest_free(m);
    pc_diags_free(&local);
    return rc;
}

int pc_manifest_parse(pc_manifest **out, const char *name, const char *text, size_t len,
                      pc_getenv_fn getenv_fn, void *env_ctx, pc_diags *diags, pc_error *err)
{
    char *dir = cwd_dir();
    if (dir == NULL) {
        *out = NULL;
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    int rc = parse_with_dir(out, name, text, len, dir, getenv_fn, env_ctx, diags, err);
    free(dir);
    return rc;
}

/* Absolute directory holding path (symlinks in the directory resolved when possible). */
static char *abs_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash == NULL ? pc_strdup(".")
                            : pc_strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (d == NULL)
        return NULL;
    char buf[PATH_MAX];
    if (realpath(d, buf) != NULL) {
        free(d);
        return pc_strdup(buf);
    }
    char *cwd = cwd_dir();
    char *abs = cwd ? resolve_path(cwd, d) : NULL;
    free(cwd);
    free(d);
    return abs;
}

int pc_manifest_load(pc_manifest **out, const char *path, pc_getenv_fn getenv_fn, void *env_ctx,
                     pc_diags *diags, pc_error *err)
{
    FILE *f = NULL;
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    int rc = 0;
    *out = NULL;
    if (diags != NULL)
        pc_diags_free(diags);
    f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        rc =
            pc_error_set(err, PC_EIO, "cannot read manifest %s: %s; check the path or pass -f FILE",
                         path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = pc_error_set(err, PC_EIO, "cannot read manifest %s: it is a directory; pass -f FILE",
                          path);
        goto done;
    }
    /* read a little past the limit (at most twice it): enough to report "too large" without
     * swallowing a huge file */
    size_t cap = 64 * 1024;
    text = malloc(cap + 1);
    if (text == NULL)
        goto oom;
    for (;;) {
        if (len == cap) {
            if (cap > MF_MAX_BYTES)
                break;
            cap *= 2;
            char *t = realloc(text, cap + 1);
            if (t == NULL)
                goto oom;
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                rc =
                    pc_error_set(err, PC_EIO, "cannot read manifest %s: %s", path, strerror(errno));
                goto done;
            }
            break;
        }
    }
    text[len] = '\0';
    if ((dir = abs_dir_of(path)) == NULL)
        goto oom;
    rc = parse_with_dir(out, path, text, len, dir, getenv_fn, env_ctx, diags, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", path);
done:
    if (f != NULL)
        fclose(f);
    free(text);
    free(dir);
    return rc;
}

static void auth_dispose(pc_mf_kafka_auth *a)
{
    free(a->protocol);
    free(a->sasl_mechanism);
    free(a->sasl_username);
    if (a->sasl_password != NULL)
        memset(a->sasl_password, 0, strlen(a->sasl_password));
    free(a->sasl_password);
    free(a->ca_file);
    free(a->cert_file);
    free(a->key_file);
    if (a->key_password != NULL)
        memset(a->key_password, 0, strlen(a->key_password));
    free(a->key_password);
    free(a->principal);
    memset(a, 0, sizeof *a);
}

char *pc_manifest_sink_group(const pc_manifest *m, const pc_mf_sink *s)
{
    return pc_asprintf("pipectl-%s-%s", m->name, s->name);
}

void pc_manifest_free(pc_manifest *m)
{
    if (m == NULL)
        return;
    free(m->file);
    free(m->dir);
    free(m->raw);
    free(m->name);
    free(m->kafka_bootstrap);
    auth_dispose(&m->kafka_auth);
    for (size_t i = 0; m->client_config != NULL && i < m->nclient_config; i++) {
        free(m->client_config[i].key);
        free(m->client_config[i].value);
    }
    free(m->client_config);
    for (size_t i = 0; m->acls != NULL && i < m->nacls; i++) {
        pc_mf_acl *a = &m->acls[i];
        free(a->principal);
        free(a->resource);
        free(a->name);
        free(a->pattern);
        for (size_t j = 0; j < a->noperations; j++)
            free(a->operations[j]);
        free(a->operations);
        free(a->permission);
        free(a->host);
    }
    free(m->acls);
    for (size_t i = 0; m->topics != NULL && i < m->ntopics; i++) {
        free(m->topics[i].name);
        pc_kvlist_free(&m->topics[i].config);
    }
    free(m->topics);
    free(m->pg_dsn);
    for (size_t i = 0; m->schemas != NULL && i < m->nschemas; i++) {
        pc_mf_schema *s = &m->schemas[i];
        for (size_t j = 0; s->tables != NULL && j < s->ntables; j++) {
            pc_mf_table *t = &s->tables[j];
            for (size_t k = 0; t->columns != NULL && k < t->ncolumns; k++) {
                free(t->columns[k].name);
                free(t->columns[k].type);
            }
            free(t->columns);
            free(t->name);
        }
        free(s->tables);
        free(s->name);
    }
    free(m->schemas);
    free(m->archiving.repository);
    free(m->archiving.s3.endpoint);
    free(m->archiving.s3.region);
    free(m->archiving.s3.uri_style);
    free(m->archiving.s3.access_key_id);
    free(m->archiving.s3.secret_access_key);
    free(m->archiving.s3.session_token);
    free(m->archiving.s3.ca_file);
    free(m->archiving.encryption.cipher);
    free(m->archiving.encryption.key);
    free(m->archiving.credentials_file);
    free(m->archiving.command);
    free(m->archiving.wal_level);
    for (size_t i = 0; m->sources != NULL && i < m->nsources; i++) {
        pc_mf_source *s = &m->sources[i];
        free(s->name);
        free(s->type);
        free(s->url);
        free(s->topic);
        free(s->key);
        pc_kvlist_free(&s->params);
        auth_dispose(&s->auth);
    }
    free(m->sources);
    for (size_t i = 0; m->sinks != NULL && i < m->nsinks; i++) {
        pc_mf_sink *s = &m->sinks[i];
        free(s->name);
        free(s->topic);
        free(s->table);
        free(s->mode);
        pc_kvlist_free(&s->mapping);
        free(s->dead_letter);
        auth_dispose(&s->auth);
    }
    free(m->sinks);
    free(m->backups.schedule);
    free(m->backups.compression);
    pc_mf_nocodb *nc = &m->nocodb;
    free(nc->url);
    free(nc->token);
    free(nc->email);
    free(nc->password);
    free(nc->base);
    for (size_t i = 0; nc->schemas != NULL && i < nc->nschemas; i++)
        free(nc->schemas[i]);
    free(nc->schemas);
    free(nc->role);
    free(nc->role_password);
    free(nc->pg_host);
    free(m->git.repo);
    free(m->git.branch);
    free(m->git.push);
    free(m->git.remote_url);
    free(m->git.path);
    free(m);
}

char *pc_diag_format(const pc_diags *d, size_t i)
{
    if (d == NULL || i >= d->n)
        return NULL;
    const pc_diag *g = &d->items[i];
    const char *file = d->file ? d->file : "<manifest>";
    if (g->pos.line <= 0)
        return pc_asprintf("%s: %s", file, g->message);
    return pc_asprintf("%s:%d:%d: %s", file, g->pos.line, g->pos.col, g->message);
}

void pc_diags_free(pc_diags *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->items[i].message);
    free(d->items);
    free(d->file);
    d->items = NULL;
    d->file = NULL;
    d->n = 0;
}

const pc_mf_table *pc_manifest_find_table(const pc_manifest *m, const char *schema,
                                          const char *table)
{
    if (m == NULL || schema == NULL || table == NULL)
        return NULL;
    for (size_t i = 0; i < m->nschemas; i++) {
        if (!pc_streq(m->schemas[i].name, schema))
            continue;
        for (size_t j = 0; j < m->schemas[i].ntables; j++)
            if (pc_streq(m->schemas[i].tables[j].name, table))
                return &m->schemas[i].tables[j];
    }
    return NULL;
}

const pc_mf_topic *pc_manifest_find_topic(const pc_manifest *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < m->ntopics; i++)
        if (pc_streq(m->topics[i].name, name))
            return &m->topics[i];
    return NULL;
}
