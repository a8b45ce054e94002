/* archiving.c: what the archiving block means for the commands PostgreSQL runs.
 *
 * archive_command and restore_command run in the server's environment, which holds none of the
 * operator's variables, so they cannot read the manifest (its ${VAR}s would not resolve). They
 * get the repository on their command line instead, everything except secrets: the URI, the S3
 * endpoint, region, addressing, CA file and TLS choice, whether the repository is encrypted,
 * and the file the secrets are read from (archiving.credentials_file). pg_settings shows the
 * command to every user who may read it: no secret is ever part of it. */
#include "manifest.h"

#include <string.h>

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
    return rc;
}
