/* secret.c: keeping secrets out of every message, log line, plan and snapshot.
 *
 * Two complementary defences, both here so there is one of each:
 * - structural redaction (pc_redact, pc_secret_ranges): whatever sits where a credential sits in
 *   text (the value of password=, sslpassword=, token=... in key=value or query form, the
 *   password of a URI's user:password@) is replaced, whether or not pipectl knows the value;
 * - scrubbing (pc_scrub): every value the manifest holds as a secret, in every form it can take
 *   in a message (as written, percent-encoded and decoded, escaped for JSON, a log line or an
 *   error), is replaced wherever it appears, which catches what a library quoted out of place
 *   (libpq's parse errors, a misparsed URI, librdkafka's and libcurl's texts). cmd/ installs the
 *   manifest's list once (pc_secrets_install); pc_error_set and pc_redact then scrub with it. */
#include "core.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool pc_is_secret_key(const char *key)
{
    static const char *const words[] = {"password", "passwd", "pwd", "secret", "token", "api_key",
                                        "apikey", "private_key", "credentials",
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

/* ---------- structural redaction ---------- */

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

/* Where a URI reference (scheme://...) ends in free text: at a blank or a quote. Not at '/',
 * '?' or '#': a password holding a raw '/' would otherwise hide behind it. */
static bool uri_end(char c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == '<' ||
           c == '>' || c == '`';
}

static bool scheme_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

void pc_secret_ranges(const char *s, size_t n, pc_secret_range_fn fn, void *ctx)
{
    size_t i = 0;
    while (i < n) {
        /* scheme://user:password@host: the password runs to the last '@' of the reference */
        if (s[i] == ':' && i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/') {
            size_t ss = i;
            while (ss > 0 && (isalnum((unsigned char)s[ss - 1]) || s[ss - 1] == '+' ||
                              s[ss - 1] == '-' || s[ss - 1] == '.'))
                ss--;
            size_t a = i + 3, ae = a, at = n;
            while (ae < n && !uri_end(s[ae])) {
                if (s[ae] == '@')
                    at = ae;
                ae++;
            }
            if (at < ae) {
                const char *colon = memchr(s + a, ':', at - a);
                bool http = scheme_is(s + ss, i - ss, "http") || scheme_is(s + ss, i - ss, "https");
                if (colon != NULL && (size_t)(colon - s) + 1 < at)
                    fn(ctx, (size_t)(colon - s) + 1, at);
                else if (colon == NULL && http && at > a && memchr(s + a, '/', at - a) == NULL)
                    fn(ctx, a, at); /* https://TOKEN@host: a token sent as the user name */
            }
            /* the query (?password=...) is scanned as key=value below */
            i = at < ae ? at + 1 : i + 3;
            continue;
        }
        /* key = value, with a key that names a secret (password, sslpassword, token...) */
        if (!key_char(s[i]) || (i > 0 && key_char(s[i - 1]))) {
            i++;
            continue;
        }
        size_t ks = i;
        while (i < n && key_char(s[i]))
            i++;
        size_t ke = i, q = i;
        while (q < n && (s[q] == ' ' || s[q] == '\t'))
            q++;
        if (q >= n || s[q] != '=')
            continue;
        char key[128];
        size_t kl = ke - ks < sizeof key - 1 ? ke - ks : sizeof key - 1;
        memcpy(key, s + ks, kl);
        key[kl] = '\0';
        q++;
        if (!pc_is_secret_key(key)) {
            i = q;
            continue;
        }
        while (q < n && (s[q] == ' ' || s[q] == '\t'))
            q++;
        size_t vs = q, ve;
        if (q < n && s[q] == '\'') { /* libpq quoting: 'a b\'c' */
            vs = q + 1;
            ve = vs;
            while (ve < n && s[ve] != '\'') {
                if (s[ve] == '\\' && ve + 1 < n)
                    ve++;
                ve++;
            }
            i = ve < n ? ve + 1 : n;
        } else {
            ve = q;
            /* a manifest's ${VAR:-default}: its default may hold blanks */
            if (ve + 1 < n && s[ve] == '$' && s[ve + 1] == '{') {
                const char *close = memchr(s + ve, '}', n - ve);
                if (close != NULL)
                    ve = (size_t)(close - s) + 1;
            }
            while (ve < n && !isspace((unsigned char)s[ve]) && s[ve] != '&' && s[ve] != '"' &&
                   s[ve] != '\'')
                ve++;
            i = ve;
        }
        if (ve > vs)
            fn(ctx, vs, ve);
    }
}

typedef struct redact_out {
    const char *src;
    size_t copied;
    pc_buf out;
    int rc;
} redact_out;

static void redact_range(void *ctx, size_t start, size_t end)
{
    redact_out *r = ctx;
    if (r->rc != 0 || start < r->copied)
        return;
    if (pc_buf_append(&r->out, r->src + r->copied, start - r->copied) != 0 ||
        pc_buf_puts(&r->out, PC_REDACTED) != 0)
        r->rc = PC_ENOMEM;
    r->copied = end;
}

char *pc_redact(const char *text)
{
    if (text == NULL)
        return NULL;
    char *scrubbed = pc_scrub(text, pc_secrets_installed());
    if (scrubbed == NULL)
        return NULL;
    redact_out r = {.src = scrubbed};
    size_t n = strlen(scrubbed);
    pc_secret_ranges(scrubbed, n, redact_range, &r);
    if (r.rc == 0 && (pc_buf_append(&r.out, scrubbed + r.copied, n - r.copied) != 0 ||
                      (r.out.data == NULL && pc_buf_puts(&r.out, "") != 0)))
        r.rc = PC_ENOMEM;
    free(scrubbed);
    if (r.rc != 0) {
        pc_buf_free(&r.out);
        return NULL;
    }
    return pc_buf_detach(&r.out);
}

/* ---------- the secret values themselves ---------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The forms a value takes in our messages and in what it came from. */
static int add_forms(pc_buf *f, const char *v, int which)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const char *p = v; *p && rc == 0; p++) {
        unsigned char c = (unsigned char)*p;
        switch (which) {
        case 0: /* percent-encoded, as in a URI (RFC 3986 unreserved kept) */
            if (isalnum(c) || strchr("-._~", c) != NULL) {
                rc = pc_buf_append(f, p, 1);
            } else {
                char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                rc = pc_buf_append(f, e, 3);
            }
            break;
        case 1: /* JSON string (jansson): \" \\ \n \t \uXXXX */
            if (c == '"' || c == '\\')
                rc = pc_buf_printf(f, "\\%c", c);
            else if (c == '\n')
                rc = pc_buf_puts(f, "\\n");
            else if (c == '\t')
                rc = pc_buf_puts(f, "\\t");
            else if (c == '\r')
                rc = pc_buf_puts(f, "\\r");
            else if (c == '\b')
                rc = pc_buf_puts(f, "\\b");
            else if (c == '\f')
                rc = pc_buf_puts(f, "\\f");
            else if (c < 0x20 || c == 0x7f)
                rc = pc_buf_printf(f, "\\u%04x", c);
            else
                rc = pc_buf_append(f, p, 1);
            break;
        case 2: /* a quoted log value: \" \\, then control characters escaped */
            if (c == '"' || c == '\\')
                rc = pc_buf_append(f, "\\", 1);
            if (rc == 0)
                rc = pc_buf_escape(f, p, 1, 0);
            break;
        case 3: /* an error message (control characters escaped) */
            rc = pc_buf_escape(f, p, 1, 0);
            break;
        case 4: /* libpq's key='value' quoting */
            if (c == '\'' || c == '\\')
                rc = pc_buf_append(f, "\\", 1);
            if (rc == 0)
                rc = pc_buf_append(f, p, 1);
            break;
        case 5: /* libpq's text with blanks turned into spaces */
            rc = pc_buf_append(f, isspace(c) ? " " : p, 1);
            break;
        }
    }
    return rc;
}

char *pc_percent_decode(const char *s)
{
    if (s == NULL)
        return NULL;
    pc_buf b = {0};
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                pc_buf_free(&b);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            p += 2;
        }
        if (pc_buf_append(&b, &c, 1) != 0) {
            pc_buf_free(&b);
            return NULL;
        }
    }
    if (b.data == NULL && pc_buf_puts(&b, "") != 0)
        return NULL;
    return pc_buf_detach(&b);
}

static int add_one(pc_secrets *s, const char *v, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->items[i]) == len && memcmp(s->items[i], v, len) == 0)
            return 0;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **items = realloc(s->items, cap * sizeof *items);
        if (items == NULL)
            return PC_ENOMEM;
        s->items = items;
        s->cap = cap;
    }
    if ((s->items[s->n] = pc_strndup(v, len)) == NULL)
        return PC_ENOMEM;
    s->items[++s->n] = NULL;
    return 0;
}

int pc_secrets_add(pc_secrets *s, const char *value)
{
    if (s == NULL || value == NULL || value[0] == '\0')
        return 0;
    int rc = add_one(s, value, strlen(value));
    char *dec = pc_percent_decode(value);
    const char *bases[] = {value, dec};
    for (size_t b = 0; rc == 0 && b < 2; b++) {
        if (bases[b] == NULL || (b == 1 && strcmp(dec, value) == 0))
            continue;
        if (b == 1)
            rc = add_one(s, dec, strlen(dec));
        for (int which = 0; rc == 0 && which <= 5; which++) {
            pc_buf f = {0};
            rc = add_forms(&f, bases[b], which);
            if (rc == 0 && f.data != NULL)
                rc = add_one(s, f.data, f.len);
            pc_buf_free(&f);
        }
    }
    free(dec);
    return rc == 0 ? 0 : PC_ENOMEM;
}

typedef struct collect {
    pc_secrets *s;
    const char *src;
    int rc;
} collect;

static void collect_range(void *ctx, size_t start, size_t end)
{
    collect *c = ctx;
    if (c->rc != 0)
        return;
    char *v = pc_strndup(c->src + start, end - start);
    if (v == NULL) {
        c->rc = PC_ENOMEM;
        return;
    }
    c->rc = pc_secrets_add(c->s, v);
    /* libpq unquotes 'a\'b' to a'b: that form too */
    if (c->rc == 0 && start > 0 && c->src[start - 1] == '\'' && strchr(v, '\\') != NULL) {
        size_t j = 0;
        for (size_t i = 0; v[i]; i++) {
            if (v[i] == '\\' && v[i + 1])
                i++;
            v[j++] = v[i];
        }
        v[j] = '\0';
        c->rc = pc_secrets_add(c->s, v);
    }
    memset(v, 0, end - start);
    free(v);
}

int pc_secrets_add_text(pc_secrets *s, const char *text)
{
    if (s == NULL || text == NULL)
        return 0;
    collect c = {.s = s, .src = text};
    pc_secret_ranges(text, strlen(text), collect_range, &c);
    return c.rc;
}

const char *const *pc_secrets_list(const pc_secrets *s)
{
    static const char *const none[] = {NULL};
    return s != NULL && s->n > 0 ? (const char *const *)s->items : none;
}

void pc_secrets_dispose(pc_secrets *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        memset(s->items[i], 0, strlen(s->items[i]));
        free(s->items[i]);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}

/* ---------- scrubbing ---------- */

static bool word_char(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

char *pc_scrub(const char *text, const char *const *secrets)
{
    if (text == NULL)
        return NULL;
    if (secrets == NULL || secrets[0] == NULL)
        return pc_strdup(text);
    pc_buf out = {0};
    size_t n = strlen(text), done = 0;
    for (size_t i = 0; i < n;) {
        size_t best = 0;
        for (size_t k = 0; secrets[k] != NULL; k++) {
            size_t l = strlen(secrets[k]);
            if (l <= best || l > n - i || memcmp(text + i, secrets[k], l) != 0)
                continue;
            /* a short secret only where it stands alone (see PC_SCRUB_MIN) */
            if (l < PC_SCRUB_MIN && ((i > 0 && word_char((unsigned char)text[i - 1])) ||
                                     (i + l < n && word_char((unsigned char)text[i + l]))))
                continue;
            best = l;
        }
        if (best == 0) {
            i++;
            continue;
        }
        if (pc_buf_append(&out, text + done, i - done) != 0 || pc_buf_puts(&out, PC_REDACTED) != 0)
            goto oom;
        i += best;
        done = i;
    }
    if (pc_buf_append(&out, text + done, n - done) != 0 ||
        (out.data == NULL && pc_buf_puts(&out, "") != 0))
        goto oom;
    return pc_buf_detach(&out);
oom:
    pc_buf_free(&out);
    return NULL;
}

static _Atomic(const char *const *) g_installed;

void pc_secrets_install(const char *const *secrets)
{
    atomic_store(&g_installed, secrets);
}

const char *const *pc_secrets_installed(void)
{
    return atomic_load(&g_installed);
}

bool pc_has_secret(const char *text, const char *const *secrets)
{
    if (text == NULL || secrets == NULL)
        return false;
    char *s = pc_scrub(text, secrets);
    bool found = s == NULL || strcmp(s, text) != 0;
    free(s);
    return found;
}
