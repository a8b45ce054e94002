/* secrets.c: every secret value a manifest holds, for scrubbing what pipectl prints.
 *
 * The list is generous on purpose: a value wrongly taken as secret only costs a <redacted> in
 * a message; a secret missed is a leak. The DSN's password is read as written, in both libpq
 * forms (pc_secret_ranges): in a URI up to the last '@', so a password libpq would misread (a
 * raw '/' or '@' in it) is still listed whole; pkg/postgres adds what libpq itself parses. */
#include "manifest.h"

static int add_auth(pc_secrets *s, const pc_mf_kafka_auth *a)
{
    int rc = pc_secrets_add(s, a->sasl_password);
    if (rc == 0)
        rc = pc_secrets_add(s, a->key_password);
    return rc;
}

int pc_manifest_secrets(const pc_manifest *m, pc_secrets *out)
{
    int rc = 0;
    if (m == NULL)
        return 0;
    rc = pc_secrets_add_text(out, m->pg_dsn);
    if (rc == 0)
        rc = pc_secrets_add(out, m->archiving.s3.secret_access_key);
    if (rc == 0)
        rc = pc_secrets_add(out, m->archiving.s3.session_token);
    if (rc == 0)
        rc = pc_secrets_add(out, m->archiving.encryption.key);
    if (rc == 0)
        rc = add_auth(out, &m->kafka_auth);
    for (size_t i = 0; rc == 0 && i < m->nclient_config; i++)
        if (pc_is_secret_key(m->client_config[i].key))
            rc = pc_secrets_add(out, m->client_config[i].value);
    for (size_t i = 0; rc == 0 && i < m->nsources; i++) {
        rc = add_auth(out, &m->sources[i].auth);
        if (rc == 0)
            rc = pc_secrets_add_text(out, m->sources[i].url);
        for (size_t k = 0; rc == 0 && k < m->sources[i].params.n; k++)
            if (pc_is_secret_key(m->sources[i].params.items[k].key))
                rc = pc_secrets_add(out, m->sources[i].params.items[k].value);
    }
    for (size_t i = 0; rc == 0 && i < m->nsinks; i++)
        rc = add_auth(out, &m->sinks[i].auth);
    if (rc == 0 && m->nocodb.declared) {
        rc = pc_secrets_add(out, m->nocodb.token);
        if (rc == 0)
            rc = pc_secrets_add(out, m->nocodb.password);
        if (rc == 0)
            rc = pc_secrets_add(out, m->nocodb.role_password);
        if (rc == 0)
            rc = pc_secrets_add_text(out, m->nocodb.url);
    }
    if (rc == 0 && m->git.declared)
        rc = pc_secrets_add_text(out, m->git.remote_url);
    return rc;
}
