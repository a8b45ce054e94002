/* archiving.c: the postgres.archiving block (repository: a directory or s3://, the s3 and
 * encryption blocks, credentials_file) and what it means for the commands PostgreSQL runs.
 *
 * archive_command and restore_command run in the server's environment, which holds none of the
 * operator's variables, so they cannot read the manifest (its ${VAR}s would not resolve). They
 * get the repository on their command line instead, everything except secrets: the URI, the S3
 * endpoint, region, addressing, CA file and TLS choice, whether the repository is encrypted,
 * and the file the secrets are read from (archiving.credentials_file). pg_settings shows the
 * command to every user who may read it: no secret is ever part of it. */
#include "manifest_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const k_archiving_keys[] = {
    "enabled", "repository", "archive_timeout", "command", "wal_level", "s3", "encryption",
    "credentials_file", "parallel", NULL};
static const char *const k_archiving_s3_keys[] = {
    "endpoint",      "region",    "uri_style", "access_key_id", "secret_access_key",
    "session_token", "ca_file",   "verify_tls", NULL};
static const char *const k_archiving_enc_keys[] = {"cipher", "key", NULL};

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
    if (!mf_want_kind(c, v3, MF_MAP, "archiving.s3"))
        return;
    s3->declared = true;
    mf_obj o;
    mf_obj_open(&o, c, v3, "archiving.s3", k_archiving_s3_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "endpoint")) != NULL && mf_get_str(c, v, "archiving.s3.endpoint",
                                                          &s3->endpoint) &&
        strncmp(s3->endpoint, "http://", 7) != 0 && strncmp(s3->endpoint, "https://", 8) != 0)
        mf_diag(c, v->pos,
                "archiving.s3.endpoint must start with http:// or https://, got '%s'",
                s3->endpoint);
    if ((v = mf_obj_get(&o, "region")) != NULL)
        mf_get_str(c, v, "archiving.s3.region", &s3->region);
    static const char *const styles[] = {"path", "virtual", NULL};
    if ((v = mf_obj_get(&o, "uri_style")) != NULL)
        mf_get_enum(c, v, "archiving.s3.uri_style", styles, &s3->uri_style);
    if ((v = mf_obj_get(&o, "access_key_id")) != NULL)
        mf_get_str(c, v, "archiving.s3.access_key_id", &s3->access_key_id);
    if ((v = mf_obj_get(&o, "secret_access_key")) != NULL)
        mf_get_str(c, v, "archiving.s3.secret_access_key", &s3->secret_access_key);
    if ((v = mf_obj_get(&o, "session_token")) != NULL)
        mf_get_str(c, v, "archiving.s3.session_token", &s3->session_token);
    if ((s3->access_key_id != NULL) != (s3->secret_access_key != NULL))
        mf_diag(c, v3->pos,
                "archiving.s3 needs access_key_id and secret_access_key together (or neither: "
                "then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)");
    char *ca = NULL;
    if ((v = mf_obj_get(&o, "ca_file")) != NULL && mf_get_str(c, v, "archiving.s3.ca_file", &ca)) {
        s3->ca_file = mf_resolve_path(dir, ca);
        if (s3->ca_file == NULL)
            c->oom = true;
    }
    free(ca);
    if ((v = mf_obj_get(&o, "verify_tls")) != NULL)
        mf_get_bool(c, v, "archiving.s3.verify_tls", &s3->verify_tls);
}

static void parse_archiving_encryption(mf_ctx *c, const mf_node *ve,
                                       pc_mf_archiving_encryption *e)
{
    e->pos = ve->pos;
    if (!mf_want_kind(c, ve, MF_MAP, "archiving.encryption"))
        return;
    e->declared = true;
    mf_obj o;
    mf_obj_open(&o, c, ve, "archiving.encryption", k_archiving_enc_keys);
    const mf_node *v;
    static const char *const ciphers[] = {"aes-256-gcm", NULL};
    if ((v = mf_obj_get(&o, "cipher")) != NULL)
        mf_get_enum(c, v, "archiving.encryption.cipher", ciphers, &e->cipher);
    else if ((e->cipher = pc_strdup("aes-256-gcm")) == NULL)
        c->oom = true;
    if ((v = mf_obj_get(&o, "key")) != NULL) {
        if (mf_get_str(c, v, "archiving.encryption.key", &e->key) && strlen(e->key) < 16)
            mf_diag(c, v->pos,
                    "archiving.encryption.key is %zu characters: use a passphrase of at least 16 "
                    "(e.g. key: ${PIPECTL_REPO_KEY} with `openssl rand -base64 32`)",
                    strlen(e->key));
    } else {
        mf_obj_missing(&o, "key", "archiving.encryption");
    }
}

void mf_parse_archiving(mf_parse *P, const mf_node *a, const char *dir)
{
    mf_ctx *c = P->c;
    pc_mf_archiving *ar = &P->m->archiving;
    ar->pos = a->pos;
    if (!mf_want_kind(c, a, MF_MAP, "postgres.archiving"))
        return;
    ar->declared = true;
    ar->enabled = true;
    mf_obj o;
    mf_obj_open(&o, c, a, "archiving", k_archiving_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "enabled")) != NULL)
        mf_get_bool(c, v, "archiving.enabled", &ar->enabled);
    char *repo = NULL;
    bool on_s3 = false;
    if ((v = mf_obj_get(&o, "repository")) != NULL) {
        if (mf_get_str(c, v, "archiving.repository", &repo)) {
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
            } else if ((ar->repository = mf_resolve_path(dir, repo)) == NULL) {
                c->oom = true;
            }
        }
    } else if (ar->enabled) {
        mf_obj_missing(&o, "repository", "archiving");
    }
    free(repo);
    if ((v = mf_obj_get(&o, "s3")) != NULL)
        parse_archiving_s3(c, v, dir, &ar->s3);
    if (!ar->s3.declared)
        ar->s3.verify_tls = true;
    if (ar->s3.declared && !on_s3 && ar->repository != NULL)
        mf_diag(c, ar->s3.pos,
                "archiving.s3 is set but archiving.repository is a directory: use "
                "repository: s3://bucket/prefix, or remove the s3 block");
    if ((v = mf_obj_get(&o, "encryption")) != NULL)
        parse_archiving_encryption(c, v, &ar->encryption);
    if ((v = mf_obj_get(&o, "credentials_file")) != NULL) {
        char *cf = NULL;
        if (mf_get_str(c, v, "archiving.credentials_file", &cf)) {
            ar->credentials_file = mf_resolve_path(dir, cf);
            if (ar->credentials_file == NULL)
                c->oom = true;
        }
        free(cf);
    }
    int64_t ms = 0;
    if ((v = mf_obj_get(&o, "archive_timeout")) != NULL &&
        mf_get_duration(c, v, "archive_timeout", 1000, 0, 1073741823LL * 1000, &ms)) {
        if (ms % 1000 != 0)
            mf_diag(c, v->pos, "archive_timeout must be whole seconds, got '%s'", v->value);
        else
            ar->archive_timeout_s = (int)(ms / 1000);
    }
    ar->parallel = 1;
    if ((v = mf_obj_get(&o, "parallel")) != NULL)
        mf_get_int(c, v, "archiving.parallel", 1, 32, &ar->parallel);
    if ((v = mf_obj_get(&o, "command")) != NULL)
        mf_get_str(c, v, "archiving.command", &ar->command);
    /* PostgreSQL runs archive_command in its own environment: the secrets an S3 or encrypted
     * repository needs reach it through a file, never the command line (pg_settings shows it). */
    if (ar->enabled && ar->command == NULL && ar->credentials_file == NULL &&
        (on_s3 || ar->encryption.declared))
        mf_diag(c, a->pos,
                "archiving on %s needs credentials_file: the file (readable only by "
                "PostgreSQL's OS user) from which archive_command reads %s; write it with "
                "`pipectl backup credentials-file --to PATH`, or give archiving.command",
                on_s3 && ar->encryption.declared ? "an encrypted S3 repository"
                : on_s3                          ? "an S3 repository"
                                                 : "an encrypted repository",
                on_s3 && ar->encryption.declared
                    ? "the S3 credentials and the encryption key"
                : on_s3 ? "the S3 credentials"
                        : "the encryption key");
    static const char *const levels[] = {"replica", "logical", NULL};
    if ((v = mf_obj_get(&o, "wal_level")) != NULL)
        mf_get_enum(c, v, "archiving.wal_level", levels, &ar->wal_level);
    else if (ar->enabled && (ar->wal_level = pc_strdup("replica")) == NULL)
        c->oom = true;
}

static int opt(pc_buf *out, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    if (pc_buf_printf(out, " %s ", name) != 0)
        return PC_ENOMEM;
    return pc_buf_shell_word(out, value, PC_SHELL_PCT | PC_SHELL_QUOTE);
}

int pc_mf_archiving_args(const pc_mf_archiving *ar, pc_buf *out)
{
    int rc = opt(out, "--repository", ar->repository);
    if (rc == 0 && strncmp(ar->repository != NULL ? ar->repository : "", "s3://", 5) == 0) {
        rc = opt(out, "--s3-endpoint", ar->s3.endpoint);
        if (rc == 0)
            rc = opt(out, "--s3-region", ar->s3.region);
        if (rc == 0)
            rc = opt(out, "--s3-uri-style", ar->s3.uri_style);
        if (rc == 0)
            rc = opt(out, "--s3-ca-file", ar->s3.ca_file);
        if (rc == 0 && ar->s3.declared && !ar->s3.verify_tls && pc_buf_puts(out, " --s3-no-verify-tls") != 0)
            rc = PC_ENOMEM;
    }
    if (rc == 0 && ar->encryption.declared && pc_buf_puts(out, " --encrypted") != 0)
        rc = PC_ENOMEM;
    if (rc == 0)
        rc = opt(out, "--credentials-file", ar->credentials_file);
    /* push-ahead (wal-push); wal-fetch accepts the option and ignores it, so restore_command
     * may carry the same words */
    if (rc == 0 && ar->parallel > 1 && pc_buf_printf(out, " --parallel %d", ar->parallel) != 0)
        rc = PC_ENOMEM;
    return rc;
}
