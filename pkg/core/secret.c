/* secret.c: keeping secrets out of every message, plan and snapshot. */
#include "core.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool pc_is_secret_key(const char *key)
{
    static const char *const words[] = {"password", "passwd", "pwd", "secret", "token",
                                        "api_key", "apikey", "private_key", "credentials",
                                        /* librdkafka: ssl.key.pem, ssl.keystore.*,
                                         * sasl.oauthbearer.config, sasl.jaas... */
                                        "key.pem", "keystore", "oauthbearer", "jaas"};
    if (key == NULL)
        return false;
    char low[128];
    size_t n = strlen(key);
    if (n >= sizeof low)
        n = sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(low, words[i]) != NULL)
            return true;
    return false;
}

static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

/* key=value form: replace the value of password=... (quoted or not). URI form: the part between
 * "user:" and "@" in the authority, and password= in the query string. */
char *pc_redact_dsn(const char *dsn)
{
    if (dsn == NULL)
        return NULL;
    pc_buf out = {0};
    const char *p = dsn;
    const char *scheme = strstr(dsn, "://");
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q;
        if (at != NULL) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon != NULL) {
                if (pc_buf_append(&out, dsn, (size_t)(colon + 1 - dsn)) != 0 ||
                    pc_buf_puts(&out, PC_REDACTED) != 0)
                    goto oom;
                p = at;
            }
        }
    }
    while (*p) {
        const char *hit = find_ci(p, "password");
        if (hit == NULL) {
            if (pc_buf_puts(&out, p) != 0)
                goto oom;
            break;
        }
        const char *q = hit + 8;
        while (*q == ' ')
            q++;
        bool boundary = hit == dsn || !isalnum((unsigned char)hit[-1]);
        if (*q != '=' || !boundary) {
            if (pc_buf_append(&out, p, (size_t)(q - p)) != 0)
                goto oom;
            p = q;
            continue;
        }
        q++;
        while (*q == ' ')
            q++;
        if (pc_buf_append(&out, p, (size_t)(q - p)) != 0 || pc_buf_puts(&out, PC_REDACTED) != 0)
            goto oom;
        if (*q == '\'') {
            q++;
            while (*q && *q != '\'') {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            if (*q == '\'')
                q++;
        } else {
            while (*q && *q != ' ' && *q != '&')
                q++;
        }
        p = q;
    }
    return pc_buf_detach(&out);
oom:
    pc_buf_free(&out);
    return NULL;
}

void pc_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}
