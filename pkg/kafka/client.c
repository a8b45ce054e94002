/* client.c: how every Kafka client of pipectl connects (admin, producers, consumers): the
 * manifest's kafka.security and kafka.client_config turned into librdkafka properties in one
 * place, the offline check of client_config against librdkafka's own property list, and the
 * translation of the connection errors users meet (wrong password, unknown CA, TLS spoken to a
 * plaintext port...) into what to do about them. */
#include "kafka.h"

#include <librdkafka/rdkafka.h>
#include <openssl/x509_vfy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Sets one property; a secret's value never reaches the message (librdkafka quotes values). */
static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *val, const char *origin,
                    pc_error *err)
{
    char es[512];
    if (rd_kafka_conf_set(conf, key, val, es, sizeof es) == RD_KAFKA_CONF_OK)
        return 0;
    if (pc_is_secret_key(key))
        return pc_error_set(err, PC_EINVAL, "Kafka client: %s: librdkafka refused %s (value "
                            "redacted)", origin, key);
    return pc_error_set(err, PC_EINVAL, "Kafka client: %s: %s", origin, es);
}

/* OpenSSL's own verdict on each certificate of the broker's chain, kept as it is; only its
 * reason is put into words, because librdkafka 2.0.2 reports every failure as "certificate
 * verify failed" and a hostname mismatch would read as an unknown CA. */
static int verify_cb(rd_kafka_t *rk, const char *broker_name, int32_t broker_id, int *x509_error,
                     int depth, const char *buf, size_t size, char *errstr, size_t errstr_size,
                     void *opaque)
{
    (void)rk;
    (void)broker_id;
    (void)depth;
    (void)buf;
    (void)size;
    (void)opaque;
    if (*x509_error == X509_V_OK)
        return 1;
    const char *why = *x509_error == X509_V_ERR_HOSTNAME_MISMATCH ||
                              *x509_error == X509_V_ERR_IP_ADDRESS_MISMATCH
                          ? "hostname mismatch: the certificate does not name the host connected to"
                          : X509_verify_cert_error_string(*x509_error);
    snprintf(errstr, errstr_size, "%s (OpenSSL error %d, broker %s)", why, *x509_error,
             broker_name);
    return 0;
}

int pc_kafka_conf_client(struct rd_kafka_conf_s *conf, const pc_manifest *m,
                         const pc_mf_kafka_auth *auth, pc_error *err)
{
    int rc;
    if ((rc = set_prop(conf, "bootstrap.servers", m->kafka_bootstrap, "kafka.bootstrap", err)))
        return rc;
    if (auth != NULL && auth->protocol != NULL) {
        bool sasl = strncmp(auth->protocol, "sasl_", 5) == 0;
        bool tls = strcmp(auth->protocol, "ssl") == 0 || strcmp(auth->protocol, "sasl_ssl") == 0;
        if ((rc = set_prop(conf, "security.protocol", auth->protocol, "kafka.security.protocol",
                           err)))
            return rc;
        if (sasl && ((auth->sasl_mechanism != NULL &&
                      (rc = set_prop(conf, "sasl.mechanisms", auth->sasl_mechanism,
                                     "kafka.security.sasl.mechanism", err))) ||
                     (auth->sasl_username != NULL &&
                      (rc = set_prop(conf, "sasl.username", auth->sasl_username,
                                     "kafka.security.sasl.username", err))) ||
                     (auth->sasl_password != NULL &&
                      (rc = set_prop(conf, "sasl.password", auth->sasl_password,
                                     "kafka.security.sasl.password", err)))))
            return rc;
        if (tls && ((auth->ca_file != NULL &&
                     (rc = set_prop(conf, "ssl.ca.location", auth->ca_file,
                                    "kafka.security.tls.ca_file", err))) ||
                    (auth->cert_file != NULL &&
                     (rc = set_prop(conf, "ssl.certificate.location", auth->cert_file,
                                    "kafka.security.tls.cert_file", err))) ||
                    (auth->key_file != NULL &&
                     (rc = set_prop(conf, "ssl.key.location", auth->key_file,
                                    "kafka.security.tls.key_file", err))) ||
                    (auth->key_password != NULL &&
                     (rc = set_prop(conf, "ssl.key.password", auth->key_password,
                                    "kafka.security.tls.key_password", err))) ||
                    (rc = set_prop(conf, "ssl.endpoint.identification.algorithm",
                                   auth->verify_hostname ? "https" : "none",
                                   "kafka.security.tls.verify_hostname", err))))
            return rc;
        if (tls && rd_kafka_conf_set_ssl_cert_verify_cb(conf, verify_cb) != RD_KAFKA_CONF_OK)
            return pc_error_set(err, PC_EINVAL,
                                "Kafka client: this librdkafka was built without TLS: "
                                "kafka.security.protocol %s cannot be used",
                                auth->protocol);
    }
    for (size_t i = 0; i < m->nclient_config; i++)
        if ((rc = set_prop(conf, m->client_config[i].key, m->client_config[i].value,
                           "kafka.client_config", err)))
            return rc;
    return 0;
}

/* ---------- the offline check of kafka.client_config ---------- */

/* Every property name librdkafka documents, from its own table (rd_kafka_conf_properties_show):
 * lines "name | C/P | range | default | importance | description". */
static size_t known_properties(char ***out)
{
    char *text = NULL;
    size_t len = 0, n = 0, cap = 0;
    char **names = NULL;
    *out = NULL;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return 0;
    rd_kafka_conf_properties_show(f);
    fclose(f);
    for (char *line = text; line != NULL && *line;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *bar = strchr(line, '|');
        if (bar != NULL) {
            char *e = bar;
            while (e > line && e[-1] == ' ')
                e--;
            size_t k = (size_t)(e - line);
            bool name = k > 0 && k < 128;
            for (size_t i = 0; i < k && name; i++)
                name = (line[i] >= 'a' && line[i] <= 'z') || (line[i] >= '0' && line[i] <= '9') ||
                       line[i] == '.' || line[i] == '_';
            if (name) {
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 256;
                    char **t = realloc(names, nc * sizeof *t);
                    if (t == NULL)
                        break;
                    names = t;
                    cap = nc;
                }
                if ((names[n] = pc_strndup(line, k)) != NULL)
                    n++;
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);
    *out = names;
    return n;
}

static int add_diag(pc_diags *d, pc_pos pos, char *msg)
{
    if (msg == NULL)
        return PC_ENOMEM;
    pc_diag *t = realloc(d->items, (d->n + 1) * sizeof *t);
    if (t == NULL) {
        free(msg);
        return PC_ENOMEM;
    }
    d->items = t;
    d->items[d->n].pos = pos;
    d->items[d->n].message = msg;
    d->n++;
    return 0;
}

int pc_kafka_check_client_config(const pc_manifest *m, pc_diags *diags)
{
    if (m == NULL || m->nclient_config == 0)
        return 0;
    char **known = NULL;
    size_t nknown = known_properties(&known);
    int rc = 0;
    for (size_t i = 0; i < m->nclient_config && rc == 0; i++) {
        const pc_mf_kafka_prop *p = &m->client_config[i];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char es[512];
        if (conf == NULL)
            return PC_ENOMEM;
        rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, p->key, p->value, es, sizeof es);
        rd_kafka_conf_destroy(conf);
        if (r == RD_KAFKA_CONF_OK)
            continue;
        if (r == RD_KAFKA_CONF_UNKNOWN) {
            const char *best = NULL;
            size_t bd = (size_t)-1, klen = strlen(p->key);
            for (size_t k = 0; k < nknown; k++) {
                size_t dd = pc_levenshtein(p->key, known[k]);
                if (dd < bd) {
                    bd = dd;
                    best = known[k];
                }
            }
            if (best != NULL && bd <= (klen < 12 ? 2 : klen / 4))
                rc = add_diag(diags, p->key_pos,
                              pc_asprintf("kafka.client_config: unknown librdkafka property '%s'; "
                                          "did you mean '%s'?",
                                          p->key, best));
            else
                rc = add_diag(diags, p->key_pos,
                              pc_asprintf("kafka.client_config: unknown librdkafka property '%s' "
                                          "(librdkafka %s: see its CONFIGURATION.md)",
                                          p->key, rd_kafka_version_str()));
        } else if (pc_is_secret_key(p->key)) {
            rc = add_diag(diags, p->value_pos,
                          pc_asprintf("kafka.client_config: librdkafka refuses the value of '%s' "
                                      "(value redacted)",
                                      p->key));
        } else {
            rc = add_diag(diags, p->value_pos, pc_asprintf("kafka.client_config: %s", es));
        }
    }
    for (size_t k = 0; k < nknown; k++)
        free(known[k]);
    free(known);
    return rc;
}

/* ---------- what a connection error means ---------- */

static bool has(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; s != NULL && *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return true;
    return false;
}

const char *pc_kafka_hint(const char *client_error, const pc_mf_kafka_auth *auth, char *buf,
                          size_t n)
{
    const char *proto = auth != NULL && auth->protocol != NULL ? auth->protocol : "plaintext";
    const char *who = auth != NULL && auth->principal != NULL ? auth->principal : "(no principal)";
    bool tls = strcmp(proto, "ssl") == 0 || strcmp(proto, "sasl_ssl") == 0;
    buf[0] = '\0';
    if (client_error == NULL || *client_error == '\0')
        return buf;
    if (has(client_error, "Authentication failed") || has(client_error, "invalid credentials") ||
        has(client_error, "SASL authentication error"))
        snprintf(buf, n,
                 "the broker rejected the credentials of %s (mechanism %s): check "
                 "kafka.security.sasl.username and password (and that the user exists on the "
                 "cluster)",
                 who, auth && auth->sasl_mechanism ? auth->sasl_mechanism : "?");
    else if (has(client_error, "Unsupported SASL mechanism") ||
             (has(client_error, "mechanism") && has(client_error, "not supported")))
        snprintf(buf, n,
                 "the listener does not enable SASL mechanism %s: set "
                 "kafka.security.sasl.mechanism to one the broker lists",
                 auth && auth->sasl_mechanism ? auth->sasl_mechanism : "?");
    else if (has(client_error, "hostname") || has(client_error, "Hostname mismatch") ||
             has(client_error, "does not match"))
        snprintf(buf, n,
                 "the broker's certificate does not name the host pipectl connects to: use the "
                 "host name in its certificate in kafka.bootstrap (or, only for a test cluster, "
                 "tls.verify_hostname: false)");
    else if (has(client_error, "certificate verify failed") ||
             has(client_error, "unable to get local issuer") ||
             has(client_error, "self-signed certificate") ||
             has(client_error, "self signed certificate"))
        snprintf(buf, n,
                 "the broker's certificate is not signed by a CA pipectl trusts (%s): set "
                 "kafka.security.tls.ca_file to the CA that signed the broker's certificate",
                 auth && auth->ca_file ? auth->ca_file : "the system's CA store");
    else if (has(client_error, "connecting to a SSL listener") ||
             (!tls && has(client_error, "Disconnected while requesting ApiVersion")))
        snprintf(buf, n,
                 "the broker's listener speaks TLS but kafka.security.protocol is %s: set it to "
                 "ssl or sasl_ssl (or use the broker's plaintext port)",
                 proto);
    else if (tls && (has(client_error, "wrong version number") ||
                     has(client_error, "packet length too long") ||
                     has(client_error, "connecting to a PLAINTEXT") ||
                     has(client_error, "SSL handshake failed")))
        snprintf(buf, n,
                 "the broker's listener does not speak TLS but kafka.security.protocol is %s: "
                 "set it to plaintext or sasl_plaintext, or use the broker's TLS port",
                 proto);
    else if (has(client_error, "might require SASL"))
        snprintf(buf, n,
                 "the listener requires SASL but kafka.security.protocol is %s: use sasl_ssl (or "
                 "sasl_plaintext) with a sasl block",
                 proto);
    else if (has(client_error, "alert bad certificate") ||
             has(client_error, "alert number 42") ||
             has(client_error, "certificate required") || has(client_error, "alert number 116"))
        snprintf(buf, n,
                 "the listener requires a client certificate (mutual TLS) and refused %s: set "
                 "kafka.security.tls.cert_file and key_file to a certificate signed by a CA the "
                 "broker trusts",
                 auth && auth->cert_file ? auth->cert_file : "the connection without one");
    else if (has(client_error, "Illegal SASL state") || has(client_error, "SASL state") ||
             has(client_error, "SaslHandshake") || has(client_error, "SASL handshake"))
        snprintf(buf, n,
                 "the listener does not do SASL but kafka.security.protocol is %s: use plaintext "
                 "or ssl on this port, or the broker's SASL port",
                 proto);
    else if (has(client_error, "ssl.key") || has(client_error, "private key") ||
             has(client_error, "certificate.location"))
        snprintf(buf, n,
                 "librdkafka cannot load the client certificate or key (%s): check "
                 "kafka.security.tls.cert_file, key_file and key_password (a wrong or missing "
                 "key_password for an encrypted key reads as 'PEM lib')",
                 auth && auth->key_file ? auth->key_file : "?");
    return buf;
}

/* ---------- a worker without the ACL it needs ---------- */

char *pc_kafka_acl_missing(const pc_manifest *m, const pc_mf_kafka_auth *auth,
                           const char *resource, const char *name, const char *operation)
{
    const char *who = auth != NULL && auth->principal != NULL ? auth->principal : NULL;
    const char *file = m != NULL && m->file != NULL ? m->file : "the manifest";
    char grant[512];
    if (m != NULL && m->derive_acls)
        snprintf(grant, sizeof grant,
                 "kafka.derive_acls at %s:%d:%d grants it: run 'pipectl apply' (the ACL was "
                 "removed, or not applied yet)",
                 file, m->acls_pos.line, m->acls_pos.col);
    else if (m != NULL && m->nacls > 0)
        snprintf(grant, sizeof grant,
                 "add to kafka.acls (%s:%d:%d) {principal: \"%s\", resource: %s, name: \"%s\", "
                 "operations: [%s]}, or set kafka.derive_acls: true, then run 'pipectl apply'",
                 file, m->acls_pos.line, m->acls_pos.col, who ? who : "User:<name>", resource,
                 name, operation);
    else
        snprintf(grant, sizeof grant,
                 "set kafka.derive_acls: true in %s (or add a kafka.acls entry {principal: \"%s\", "
                 "resource: %s, name: \"%s\", operations: [%s]}), then run 'pipectl apply'",
                 file, who ? who : "User:<name>", resource, name, operation);
    return pc_asprintf("Kafka at %s denied %s %s on %s '%s' (no ACL allows it): %s",
                       m != NULL && m->kafka_bootstrap ? m->kafka_bootstrap : "?",
                       who ? who : "this client's principal", operation, resource, name, grant);
}
