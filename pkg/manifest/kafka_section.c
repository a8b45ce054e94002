/* kafka_section.c: the kafka block of a manifest: bootstrap, topics (partitions, replication,
 * configs checked against Kafka's own list), security (SASL, TLS, principals, what each worker
 * inherits), client_config, ACLs and derive_acls. */
#include "manifest_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const k_kafka_keys[] = {"bootstrap", "topics", "security", "client_config",
                                           "acls",      "derive_acls", NULL};
static const char *const k_topic_keys[] = {"name",   "partitions",       "replication_factor",
                                           "config", "config_unchecked", NULL};

static void topic_config(mf_parse *P, pc_mf_topic *t, const mf_node *cfg, bool checked)
{
    mf_ctx *c = P->c;
    if (!mf_want_kind(c, cfg, MF_MAP, checked ? "topic config" : "topic config_unchecked"))
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
            mf_type_error(c, v, w, "a string, number or boolean");
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

static void parse_topics(mf_parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, seq, MF_SEQ, "kafka.topics"))
        return;
    m->topics = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->topics);
    mf_named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
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
        if (!mf_want_kind(c, it, MF_MAP, "a topic"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "topic", k_topic_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "topic name", &t->name)) {
            if (mf_check_kafka_name(c, v, "topic name", t->name)) {
                names[i].name = t->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = mf_label("topic", t->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (mf_obj_get(&o, "name") == NULL)
            mf_obj_missing(&o, "name", lab);
        if ((v = mf_obj_get(&o, "partitions")) != NULL)
            mf_get_int(c, v, "partitions", 1, 1000000, &t->partitions);
        else
            mf_obj_missing(&o, "partitions", lab);
        if ((v = mf_obj_get(&o, "replication_factor")) != NULL)
            mf_get_int(c, v, "replication_factor", 1, 32767, &t->replication_factor);
        if ((v = mf_obj_get(&o, "config")) != NULL)
            topic_config(P, t, v, true);
        if ((v = mf_obj_get(&o, "config_unchecked")) != NULL)
            topic_config(P, t, v, false);
        free(lab);
    }
    mf_check_dups(c, names, seq->nkids, "topic");
    free(names);
}

/* ---------- kafka.security, client_config, acls ---------- */



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
    if (!mf_get_str(c, v, what, &path))
        return NULL;
    char *abs = mf_resolve_path(dir, path);
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
    if (!mf_get_str(c, v, what, &path))
        return;
    char *abs = mf_resolve_path(dir, path);
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

static void parse_security(mf_parse *P, const mf_node *n, const char *where, mf_sec_block *b)
{
    mf_ctx *c = P->c;
    memset(b, 0, sizeof *b);
    b->verify = -1;
    b->a.pos = n->pos;
    if (!mf_want_kind(c, n, MF_MAP, where))
        return;
    char lab[96];
    mf_obj o;
    mf_obj_open(&o, c, n, where, k_security_keys);
    const mf_node *v;
    static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl",
                                            NULL};
    snprintf(lab, sizeof lab, "%s.protocol", where);
    if ((v = mf_obj_get(&o, "protocol")) != NULL)
        mf_get_enum(c, v, lab, protocols, &b->a.protocol);
    snprintf(lab, sizeof lab, "%s.principal", where);
    if ((v = mf_obj_get(&o, "principal")) != NULL && mf_get_str(c, v, lab, &b->a.principal)) {
        const char *colon = strchr(b->a.principal, ':');
        if (colon == NULL || colon == b->a.principal || colon[1] == '\0')
            mf_diag(c, v->pos, "%s must be 'Type:name' as Kafka writes principals (User:ingest), "
                               "got '%s'",
                    lab, b->a.principal);
    }
    if ((v = mf_obj_get(&o, "sasl")) != NULL) {
        snprintf(lab, sizeof lab, "%s.sasl", where);
        if (mf_want_kind(c, v, MF_MAP, lab)) {
            b->has_sasl = true;
            mf_obj s;
            mf_obj_open(&s, c, v, lab, k_sasl_keys);
            const mf_node *sv;
            static const char *const mechs[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};
            char l2[128];
            snprintf(l2, sizeof l2, "%s.mechanism", lab);
            if ((sv = mf_obj_get(&s, "mechanism")) != NULL) {
                b->mech_written = true;
                mf_get_enum(c, sv, l2, mechs, &b->a.sasl_mechanism);
            }
            snprintf(l2, sizeof l2, "%s.username", lab);
            if ((sv = mf_obj_get(&s, "username")) != NULL)
                mf_get_str(c, sv, l2, &b->a.sasl_username);
            else
                mf_obj_missing(&s, "username", lab);
            const mf_node *pw = mf_obj_get(&s, "password"), *pf = mf_obj_get(&s, "password_file");
            snprintf(l2, sizeof l2, "%s.password", lab);
            if (pw != NULL && pf != NULL)
                mf_diag(c, pf->pos, "%s: give password or password_file, not both", lab);
            else if (pw != NULL)
                mf_get_str(c, pw, l2, &b->a.sasl_password);
            else if (pf != NULL)
                b->a.sasl_password = read_secret_file(c, pf, l2, P->dir);
            else
                mf_diag(c, v->pos,
                        "%s is missing 'password': give password: ${VAR} or password_file: PATH",
                        lab);
        }
    }
    if ((v = mf_obj_get(&o, "tls")) != NULL) {
        snprintf(lab, sizeof lab, "%s.tls", where);
        if (mf_want_kind(c, v, MF_MAP, lab)) {
            mf_obj t;
            mf_obj_open(&t, c, v, lab, k_tls_keys);
            const mf_node *tv, *cf, *kf;
            char l2[128];
            snprintf(l2, sizeof l2, "%s.ca_file", lab);
            if ((tv = mf_obj_get(&t, "ca_file")) != NULL) {
                b->has_ca = true;
                get_pem_file(c, tv, l2, P->dir, &b->a.ca_file);
            }
            snprintf(l2, sizeof l2, "%s.cert_file", lab);
            if ((cf = mf_obj_get(&t, "cert_file")) != NULL)
                get_pem_file(c, cf, l2, P->dir, &b->a.cert_file);
            snprintf(l2, sizeof l2, "%s.key_file", lab);
            if ((kf = mf_obj_get(&t, "key_file")) != NULL)
                get_pem_file(c, kf, l2, P->dir, &b->a.key_file);
            b->has_cert = cf != NULL || kf != NULL;
            if ((cf == NULL) != (kf == NULL))
                mf_diag(c, v->pos, "%s: mutual TLS needs both cert_file and key_file", lab);
            const mf_node *kp = mf_obj_get(&t, "key_password"), *kpf = mf_obj_get(&t, "key_password_file");
            snprintf(l2, sizeof l2, "%s.key_password", lab);
            if (kp != NULL && kpf != NULL)
                mf_diag(c, kpf->pos, "%s: give key_password or key_password_file, not both", lab);
            else if (kp != NULL)
                mf_get_str(c, kp, l2, &b->a.key_password);
            else if (kpf != NULL)
                b->a.key_password = read_secret_file(c, kpf, l2, P->dir);
            if ((kp != NULL || kpf != NULL) && kf == NULL)
                mf_diag(c, (kp ? kp : kpf)->pos, "%s: key_password without key_file", lab);
            snprintf(l2, sizeof l2, "%s.verify_hostname", lab);
            bool vh = true;
            if ((tv = mf_obj_get(&t, "verify_hostname")) != NULL && mf_get_bool(c, tv, l2, &vh))
                b->verify = vh ? 1 : 0;
        }
    }
}

/* Checks a resolved block: protocol against sasl/tls, the SASL parts present. */
static void check_auth(mf_parse *P, const pc_mf_kafka_auth *a, const mf_node *n, const char *where,
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
static const char *implied_protocol(const mf_sec_block *b)
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
void mf_parse_top_security(mf_parse *P, const mf_node *n, mf_sec_block *top)
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
void mf_resolve_worker_auth(mf_parse *P, const mf_node *n, const char *where,
                                const mf_sec_block *top, pc_mf_kafka_auth *out, bool *own)
{
    mf_ctx *c = P->c;
    const pc_mf_kafka_auth *t = &P->m->kafka_auth;
    const char *tproto = t->protocol != NULL ? t->protocol : "plaintext";
    mf_sec_block b;
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

static void parse_client_config(mf_parse *P, const mf_node *map)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, map, MF_MAP, "kafka.client_config"))
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
                mf_type_error(c, v, w, "a string, number or boolean");
            free(w);
            continue;
        }
        pc_mf_kafka_prop *p = &m->client_config[m->nclient_config++];
        p->key = mf_dup_or_oom(c, k->value);
        p->value = mf_dup_or_oom(c, v->value);
        p->key_pos = k->pos;
        p->value_pos = v->pos;
    }
}

static void parse_acls(mf_parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, seq, MF_SEQ, "kafka.acls"))
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
        if (!mf_want_kind(c, it, MF_MAP, "a kafka.acls entry"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "kafka.acls entry", k_acl_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "principal")) != NULL) {
            if (mf_get_str(c, v, "acl principal", &a->principal)) {
                const char *colon = strchr(a->principal, ':');
                if (colon == NULL || colon == a->principal || colon[1] == '\0')
                    mf_diag(c, v->pos,
                            "acl principal must be 'Type:name' (User:ingest), got '%s'",
                            a->principal);
            }
        } else {
            mf_obj_missing(&o, "principal", "kafka.acls entry");
        }
        if ((v = mf_obj_get(&o, "resource")) != NULL)
            mf_get_enum(c, v, "acl resource", resources, &a->resource);
        else
            mf_obj_missing(&o, "resource", "kafka.acls entry");
        bool cluster = pc_streq(a->resource, "cluster");
        if ((v = mf_obj_get(&o, "name")) != NULL) {
            if (mf_get_str(c, v, "acl name", &a->name) && cluster &&
                strcmp(a->name, "kafka-cluster") != 0)
                mf_diag(c, v->pos, "acl name of a cluster resource must be 'kafka-cluster', got "
                                   "'%s'",
                        a->name);
        } else if (cluster) {
            a->name = mf_dup_or_oom(c, "kafka-cluster");
        } else if (a->resource != NULL) {
            mf_obj_missing(&o, "name", "kafka.acls entry");
        }
        if ((v = mf_obj_get(&o, "pattern")) != NULL)
            mf_get_enum(c, v, "acl pattern", patterns, &a->pattern);
        else
            a->pattern = mf_dup_or_oom(c, "literal");
        if ((v = mf_obj_get(&o, "permission")) != NULL)
            mf_get_enum(c, v, "acl permission", perms, &a->permission);
        else
            a->permission = mf_dup_or_oom(c, "allow");
        if ((v = mf_obj_get(&o, "host")) != NULL)
            mf_get_str(c, v, "acl host", &a->host);
        else
            a->host = mf_dup_or_oom(c, "*");
        if ((v = mf_obj_get(&o, "operations")) == NULL) {
            mf_obj_missing(&o, "operations", "kafka.acls entry");
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
            if (mf_get_enum(c, ov, "acl operation", ops, &op)) {
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
void mf_check_derive(mf_parse *P)
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

void mf_parse_kafka(mf_parse *P, const mf_node *k)
{
    mf_ctx *c = P->c;
    if (!mf_want_kind(c, k, MF_MAP, "kafka"))
        return;
    mf_obj o;
    mf_obj_open(&o, c, k, "kafka", k_kafka_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "bootstrap")) != NULL) {
        if (mf_get_str(c, v, "kafka.bootstrap", &P->m->kafka_bootstrap)) {
            char *why = mf_bootstrap_problem(P->m->kafka_bootstrap);
            if (why != NULL)
                mf_diag(c, v->pos, "%s", why);
            free(why);
        }
    }
    else
        mf_obj_missing(&o, "bootstrap", "kafka");
    if ((v = mf_obj_get(&o, "topics")) != NULL)
        parse_topics(P, v);
    mf_parse_top_security(P, mf_obj_get(&o, "security"), &P->top);
    if ((v = mf_obj_get(&o, "client_config")) != NULL)
        parse_client_config(P, v);
    if ((v = mf_obj_get(&o, "acls")) != NULL) {
        P->m->acls_pos = v->pos;
        parse_acls(P, v);
    }
    if ((v = mf_obj_get(&o, "derive_acls")) != NULL) {
        P->m->acls_pos = v->pos;
        mf_get_bool(c, v, "kafka.derive_acls", &P->m->derive_acls);
    }
}
