/* buf.c: growable string buffers and small string helpers. */
#include "core.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int buf_reserve(pc_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return PC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int pc_buf_append(pc_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return PC_ENOMEM;
    if (n > 0)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int pc_buf_puts(pc_buf *b, const char *s)
{
    return pc_buf_append(b, s, strlen(s));
}

int pc_buf_vprintf(pc_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return PC_EINVAL;
    if (buf_reserve(b, (size_t)n) != 0)
        return PC_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int pc_buf_printf(pc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = pc_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *pc_buf_detach(pc_buf *b)
{
    char *s = b->data;
    if (s == NULL)
        s = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void pc_buf_free(pc_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *pc_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *pc_strndup(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *pc_asprintf(const char *fmt, ...)
{
    pc_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    int rc = pc_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

bool pc_streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

size_t pc_levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = malloc((lb + 1) * sizeof *row);
    if (row == NULL)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[lb];
    free(row);
    return d;
}

/* ---------- text that reaches a terminal or a log line ---------- */

int pc_buf_escape(pc_buf *b, const char *s, size_t n, size_t cut)
{
    static const char hex[] = "0123456789abcdef";
    size_t upto = cut > 0 && n > cut ? cut : n;
    int rc = 0;
    for (size_t i = 0; i < upto && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f) {
            rc = pc_buf_append(b, (const char *)&c, 1);
            continue;
        }
        char e[4] = {'\\', 0, 0, 0};
        size_t k = 2;
        switch (c) {
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'x';
            e[2] = hex[c >> 4];
            e[3] = hex[c & 15];
            k = 4;
        }
        rc = pc_buf_append(b, e, k);
    }
    if (rc == 0 && upto < n) {
        /* never cut inside a UTF-8 sequence */
        while (b->len > 0 && ((unsigned char)b->data[b->len - 1] & 0xc0) == 0x80)
            b->len--;
        if (b->len > 0 && ((unsigned char)b->data[b->len - 1] & 0xc0) == 0xc0)
            b->len--;
        b->data[b->len] = '\0';
        rc = pc_buf_printf(b, "... (%zu bytes in all)", n);
    }
    return rc;
}

/* Copies one conversion of fmt (from '%' to its conversion letter) and formats it with the
 * next argument of ap, read with the type its length modifier says. The format is one
 * conversion taken from a literal format checked by the compiler at the caller. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int one_conversion(pc_buf *b, const char *spec, size_t len, char conv, const char *lenmod,
                          va_list *ap)
{
    char f[32];
    if (len >= sizeof f)
        return PC_EINVAL;
    memcpy(f, spec, len);
    f[len] = '\0';
    switch (conv) {
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o':
    case 'c':
        if (strcmp(lenmod, "ll") == 0)
            return pc_buf_printf(b, f, va_arg(*ap, long long));
        if (strcmp(lenmod, "l") == 0)
            return pc_buf_printf(b, f, va_arg(*ap, long));
        if (strcmp(lenmod, "z") == 0)
            return pc_buf_printf(b, f, va_arg(*ap, size_t));
        if (strcmp(lenmod, "j") == 0)
            return pc_buf_printf(b, f, va_arg(*ap, intmax_t));
        if (strcmp(lenmod, "t") == 0)
            return pc_buf_printf(b, f, va_arg(*ap, ptrdiff_t));
        return pc_buf_printf(b, f, va_arg(*ap, int));
    case 'f':
    case 'g':
    case 'e':
    case 'G':
    case 'E':
        return pc_buf_printf(b, f, va_arg(*ap, double));
    case 'p':
        return pc_buf_printf(b, f, va_arg(*ap, void *));
    default:
        return PC_EINVAL;
    }
}
#pragma GCC diagnostic pop

int pc_buf_vprintf_safe(pc_buf *b, size_t cut, const char *fmt, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    int rc = 0;
    for (const char *p = fmt; *p && rc == 0;) {
        const char *pct = strchr(p, '%');
        if (pct == NULL) {
            rc = pc_buf_puts(b, p);
            break;
        }
        if (pct > p && (rc = pc_buf_append(b, p, (size_t)(pct - p))) != 0)
            break;
        if (pct[1] == '%') {
            rc = pc_buf_append(b, "%", 1);
            p = pct + 2;
            continue;
        }
        /* flags, width, precision ('*' takes an int), length, conversion */
        const char *q = pct + 1;
        q += strspn(q, "-+ #0");
        int width = -1, prec = -1;
        if (*q == '*') {
            width = va_arg(aq, int);
            q++;
        } else {
            q += strspn(q, "0123456789");
        }
        if (*q == '.') {
            q++;
            if (*q == '*') {
                prec = va_arg(aq, int);
                q++;
            } else {
                prec = atoi(q);
                q += strspn(q, "0123456789");
            }
        }
        char lenmod[3] = "";
        size_t nl = strspn(q, "hlzjtL");
        if (nl > 2) {
            rc = PC_EINVAL;
            break;
        }
        memcpy(lenmod, q, nl);
        lenmod[nl] = '\0';
        q += nl;
        char conv = *q;
        if (conv == '\0') {
            rc = PC_EINVAL;
            break;
        }
        if (conv == 's') {
            const char *s = va_arg(aq, const char *);
            if (s == NULL)
                s = "(null)";
            size_t n = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
            (void)width; /* a width on %s pads for alignment: not used in messages */
            rc = pc_buf_escape(b, s, n, cut);
        } else if (strchr(pct, '*') != NULL && strchr(pct, '*') < q) {
            rc = PC_EINVAL; /* '*' only on %s in our messages */
        } else {
            rc = one_conversion(b, pct, (size_t)(q + 1 - pct), conv, lenmod, &aq);
        }
        p = q + 1;
    }
    va_end(aq);
    return rc;
}

/* ---------- shell words ---------- */

int pc_buf_shell_word(pc_buf *b, const char *s, unsigned flags)
{
    bool pct = (flags & PC_SHELL_PCT) != 0;
    bool plain = s[0] != '\0' && (flags & PC_SHELL_QUOTE) == 0;
    for (const char *p = s; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("/._+:@,=-", *p) != NULL;
    int rc = plain ? 0 : pc_buf_puts(b, "'");
    for (const char *p = s; rc == 0 && *p; p++) {
        if (*p == '\'')
            rc = pc_buf_puts(b, "'\\''");
        else if (*p == '%' && pct)
            rc = pc_buf_puts(b, "%%");
        else
            rc = pc_buf_append(b, p, 1);
    }
    if (rc == 0 && !plain)
        rc = pc_buf_puts(b, "'");
    return rc != 0 ? PC_ENOMEM : 0;
}
