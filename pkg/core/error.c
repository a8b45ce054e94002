/* error.c: the pc_error object. The first message set wins; context is prepended. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replaces every installed secret in err->msg (a library's text may quote one out of place);
 * scrubbed whole, then cut to fit, so a cut never leaves part of a secret. */
static void scrub_msg(pc_error *err)
{
    const char *const *secrets = pc_secrets_installed();
    if (secrets == NULL || secrets[0] == NULL)
        return;
    char *s = pc_scrub(err->msg, secrets);
    if (s != NULL)
        snprintf(err->msg, sizeof err->msg, "%s", s);
    else
        snprintf(err->msg, sizeof err->msg, "(message withheld: out of memory scrubbing secrets)");
    free(s);
}

int pc_error_set(pc_error *err, int code, const char *fmt, ...)
{
    if (err == NULL || err->code != 0)
        return code;
    err->code = code;
    /* what servers and users wrote may hold control characters: escaped, so that one error
     * stays one line */
    pc_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    int rc = pc_buf_vprintf_safe(&b, 0, fmt, ap);
    va_end(ap);
    if (rc == 0 && b.data != NULL) {
        /* scrubbed before the cut to size: no part of a secret survives the cut */
        char *clean = pc_scrub(b.data, pc_secrets_installed());
        snprintf(err->msg, sizeof err->msg, "%s",
                 clean != NULL ? clean : "(message withheld: out of memory scrubbing secrets)");
        free(clean);
    } else {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    pc_buf_free(&b);
    scrub_msg(err);
    return code;
}

void pc_error_prefix(pc_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix);
    if (plen + 2 >= sizeof err->msg)
        return;
    /* shift the message right, truncating its tail if needed, then write the prefix */
    size_t mlen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen + 2 + mlen >= sizeof err->msg)
        mlen = sizeof err->msg - plen - 3;
    memmove(err->msg + plen + 2, err->msg, mlen);
    err->msg[plen + 2 + mlen] = '\0';
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    scrub_msg(err);
}

void pc_error_clear(pc_error *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *pc_code_name(int code)
{
    switch (code) {
    case PC_OK: return "ok";
    case PC_EINVAL: return "invalid input";
    case PC_ENOTFOUND: return "not found";
    case PC_ECONFLICT: return "conflict";
    case PC_EUNAVAIL: return "unavailable";
    case PC_EREFUSED: return "refused";
    case PC_ENOMEM: return "out of memory";
    case PC_EINTR: return "interrupted";
    case PC_EIO: return "I/O error";
    }
    return "error";
}
