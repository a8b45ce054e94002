/* convert.c: JSON value -> PostgreSQL text input of a column type, strict enough that a record
 * PostgreSQL would reject is caught here (and dead-lettered) instead of failing a whole batch. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h> /* isinf: a macro, no libm */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sink_int.h"

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

pc_sink_type pc_sink_type_parse(const char *type, int *typmod1, int *typmod2)
{
    *typmod1 = 0;
    *typmod2 = 0;
    if (!type)
        return PC_SINK_T_OTHER;
    const char *paren = strchr(type, '(');
    if (paren) {
        int a = 0, b = 0;
        int n = sscanf(paren, "(%d,%d)", &a, &b);
        if (n == 1)
            n = sscanf(paren, "(%d , %d)", &a, &b);
        if (n >= 1)
            *typmod1 = a;
        if (n == 2)
            *typmod2 = b;
    }
    size_t base = paren ? (size_t)(paren - type) : strlen(type);
    while (base > 0 && type[base - 1] == ' ')
        base--;
    char name[64];
    if (base >= sizeof name)
        return PC_SINK_T_OTHER;
    memcpy(name, type, base);
    name[base] = '\0';
    if (strchr(name, '[')) /* arrays: PostgreSQL checks them */
        return PC_SINK_T_OTHER;
    if (!strcmp(name, "text") || !strcmp(name, "varchar") || !strcmp(name, "character varying") ||
        !strcmp(name, "char") || !strcmp(name, "character") || !strcmp(name, "bpchar") ||
        !strcmp(name, "citext") || !strcmp(name, "name"))
        return PC_SINK_T_TEXT;
    if (!strcmp(name, "smallint") || !strcmp(name, "int2"))
        return PC_SINK_T_INT2;
    if (!strcmp(name, "integer") || !strcmp(name, "int") || !strcmp(name, "int4"))
        return PC_SINK_T_INT4;
    if (!strcmp(name, "bigint") || !strcmp(name, "int8"))
        return PC_SINK_T_INT8;
    if (!strcmp(name, "numeric") || !strcmp(name, "decimal"))
        return PC_SINK_T_NUMERIC;
    if (!strcmp(name, "real") || !strcmp(name, "float4"))
        return PC_SINK_T_FLOAT4;
    if (!strcmp(name, "double precision") || !strcmp(name, "float8") || !strcmp(name, "float"))
        return PC_SINK_T_FLOAT8;
    if (!strcmp(name, "boolean") || !strcmp(name, "bool"))
        return PC_SINK_T_BOOL;
    if (!strcmp(name, "uuid"))
        return PC_SINK_T_UUID;
    if (!strcmp(name, "timestamptz") || !strcmp(name, "timestamp with time zone"))
        return PC_SINK_T_TIMESTAMPTZ;
    if (!strcmp(name, "timestamp") || !strcmp(name, "timestamp without time zone"))
        return PC_SINK_T_TIMESTAMP;
    if (!strcmp(name, "date"))
        return PC_SINK_T_DATE;
    if (!strcmp(name, "json") || !strcmp(name, "jsonb"))
        return PC_SINK_T_JSON;
    if (has_prefix(name, "timestamp") && strstr(name, "with time zone") &&
        !strstr(name, "without"))
        return PC_SINK_T_TIMESTAMPTZ;
    if (has_prefix(name, "timestamp"))
        return PC_SINK_T_TIMESTAMP;
    return PC_SINK_T_OTHER;
}

const json_t *pc_sink_json_get(const json_t *root, const char *path)
{
    const json_t *cur = root;
    const char *p = path;
    if (!root || !path)
        return NULL;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char seg[256];
        if (n == 0 || n >= sizeof seg)
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            errno = 0;
            long idx = strtol(seg, &end, 10);
            if (errno || *end || idx < 0)
                return NULL;
            cur = json_array_get(cur, (size_t)idx);
        } else {
            return NULL;
        }
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

static const char *type_label(const pc_sink_col *c)
{
    return c->type_name ? c->type_name : "text";
}

/* Appends s[0..n) as a JSON string (quotes, escapes as jansson writes them compactly: \" \\ \b
 * \f \n \r \t, \u00XX for the other control characters and NUL, everything else as is). */
static int json_quote(pc_buf *out, const char *s, size_t n)
{
    if (pc_buf_append(out, "\"", 1))
        return PC_ENOMEM;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        char esc[8];
        const char *rep = esc;
        switch (ch) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        default: snprintf(esc, sizeof esc, "\\u%04X", ch); break;
        }
        if (pc_buf_append(out, s + start, i - start) || pc_buf_puts(out, rep))
            return PC_ENOMEM;
        start = i + 1;
    }
    if (pc_buf_append(out, s + start, n - start) || pc_buf_append(out, "\"", 1))
        return PC_ENOMEM;
    return 0;
}

/* The value as compact JSON, appended to out. */
static int json_text(const pc_sink_val *v, pc_buf *out)
{
    switch (v->kind) {
    case PC_SINK_V_NULL:
        return pc_buf_puts(out, "null");
    case PC_SINK_V_BOOL:
        return pc_buf_puts(out, v->b ? "true" : "false");
    case PC_SINK_V_INT:
    case PC_SINK_V_REAL:
    case PC_SINK_V_JSON:
        return pc_buf_append(out, v->s, v->n);
    case PC_SINK_V_STRING:
        return json_quote(out, v->s, v->n);
    }
    return 0;
}

/* A short sample of the value for messages: compact JSON, at most 80 bytes ("..." when cut). */
static char *sample_of(const pc_sink_val *v)
{
    pc_buf b = {0};
    if (v->kind == PC_SINK_V_STRING)
        json_quote(&b, v->s, v->n < 100 ? v->n : 100); /* enough to fill the sample */
    else
        json_text(v, &b);
    if (!b.data)
        return pc_strdup("?");
    if (b.len > 80) {
        memcpy(b.data + 77, "...", 3);
        b.data[80] = '\0';
    }
    return b.data;
}

static int fail(char **reason, const pc_sink_col *c, const pc_sink_val *v, const char *why)
{
    char *sample = v ? sample_of(v) : pc_strdup("null");
    *reason = pc_asprintf("column %s (path %s): value %s is not a valid %s%s%s", c->name,
                          c->path, sample ? sample : "?", type_label(c), why ? ": " : "",
                          why ? why : "");
    free(sample);
    return PC_EINVAL;
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            k++;
    return k;
}

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

static int conv_int(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    long long x;
    if ((v->kind == PC_SINK_V_INT)) {
        x = (long long)v->i;
    } else if ((v->kind == PC_SINK_V_REAL)) {
        double d = v->d;
        if (!(d >= -9.2e18 && d <= 9.2e18) || (double)(long long)d != d)
            return fail(reason, c, v, "not a whole number");
        x = (long long)d;
    } else if ((v->kind == PC_SINK_V_STRING)) {
        const char *s = v->s;
        size_t n = v->n;
        trim(&s, &n);
        char tmp[64];
        if (n == 0 || n >= sizeof tmp)
            return fail(reason, c, v, "not a whole number");
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        char *end = NULL;
        errno = 0;
        x = strtoll(tmp, &end, 10);
        if (errno || *end)
            return fail(reason, c, v, "not a whole number");
    } else {
        return fail(reason, c, v, NULL);
    }
    long long lo = LLONG_MIN, hi = LLONG_MAX;
    if (c->type == PC_SINK_T_INT2) {
        lo = -32768;
        hi = 32767;
    } else if (c->type == PC_SINK_T_INT4) {
        lo = INT_MIN;
        hi = INT_MAX;
    }
    if (x < lo || x > hi)
        return fail(reason, c, v, "out of range");
    return pc_buf_printf(out, "%lld", x);
}

/* [+-]digits[.digits][(e|E)[+-]digits] or NaN; checks numeric(p,s)'s integer digits. */
static int conv_numeric_text(const char *s, size_t n, const pc_sink_val *v, const pc_sink_col *c,
                             pc_buf *out, char **reason)
{
    trim(&s, &n);
    if (n == 3 && !strncasecmp(s, "nan", 3))
        return pc_buf_puts(out, "NaN");
    size_t i = 0, intdigits = 0, fracdigits = 0;
    bool nonzero = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && isdigit((unsigned char)s[i]); i++) {
        if (s[i] != '0')
            nonzero = true;
        if (nonzero)
            intdigits++;
    }
    size_t fraczeros = 0; /* zeros after the point before its first other digit */
    bool fracnonzero = false;
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && isdigit((unsigned char)s[i]); i++) {
            fracdigits++;
            if (s[i] != '0')
                fracnonzero = true;
            else if (!fracnonzero)
                fraczeros++;
        }
    }
    size_t mant_end = i;
    long exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        char tmp[32];
        size_t en = n - i - 1;
        if (en == 0 || en >= sizeof tmp)
            return fail(reason, c, v, "not a number");
        memcpy(tmp, s + i + 1, en);
        tmp[en] = '\0';
        /* digits after an optional sign, nothing else (strtol alone would skip blanks) */
        const char *dg = tmp + (tmp[0] == '+' || tmp[0] == '-');
        if (!isdigit((unsigned char)dg[0]))
            return fail(reason, c, v, "not a number");
        char *end = NULL;
        errno = 0;
        exp = strtol(tmp, &end, 10);
        if (errno || *end || exp > 1000 || exp < -1000)
            return fail(reason, c, v, "not a number");
        i = n;
    }
    if (i != n || (intdigits == 0 && fracdigits == 0 && !memchr(s, '0', mant_end)))
        return fail(reason, c, v, "not a number");
    if (c->type == PC_SINK_T_NUMERIC && c->typmod1 > 0) {
        /* digits before the point once the exponent is applied: 12.5e3 -> 5, 0.05e4 -> 3 */
        long idig = nonzero ? (long)intdigits + exp : fracnonzero ? exp - (long)fraczeros : 0;
        if (idig > (long)(c->typmod1 - c->typmod2))
            return fail(reason, c, v, "too many digits before the decimal point");
    }
    return pc_buf_append(out, s, n);
}

static int conv_number(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    char tmp[64];
    if ((v->kind == PC_SINK_V_INT)) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->i);
        return conv_numeric_text(tmp, strlen(tmp), v, c, out, reason);
    }
    if ((v->kind == PC_SINK_V_REAL)) {
        snprintf(tmp, sizeof tmp, "%.17g", v->d);
        return conv_numeric_text(tmp, strlen(tmp), v, c, out, reason);
    }
    if ((v->kind == PC_SINK_V_STRING)) {
        const char *s = v->s;
        size_t n = v->n;
        const char *t = s;
        size_t tn = n;
        trim(&t, &tn);
        if (c->type != PC_SINK_T_NUMERIC &&
            ((tn == 8 && !strncasecmp(t, "infinity", 8)) ||
             (tn == 9 && !strncasecmp(t, "-infinity", 9))))
            return pc_buf_append(out, t, tn);
        return conv_numeric_text(s, n, v, c, out, reason);
    }
    return fail(reason, c, v, NULL);
}

static int conv_bool(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    if ((v->kind == PC_SINK_V_BOOL))
        return pc_buf_puts(out, v->b ? "true" : "false");
    if ((v->kind == PC_SINK_V_INT) && (v->i == 0 || v->i == 1))
        return pc_buf_puts(out, v->i ? "true" : "false");
    if ((v->kind == PC_SINK_V_STRING)) {
        static const char *const yes[] = {"true", "t", "yes", "y", "on", "1"};
        static const char *const no[] = {"false", "f", "no", "n", "off", "0"};
        const char *s = v->s;
        size_t n = v->n;
        trim(&s, &n);
        for (size_t i = 0; i < 6; i++) {
            if (n == strlen(yes[i]) && !strncasecmp(s, yes[i], n))
                return pc_buf_puts(out, "true");
            if (n == strlen(no[i]) && !strncasecmp(s, no[i], n))
                return pc_buf_puts(out, "false");
        }
    }
    return fail(reason, c, v, NULL);
}

static int conv_uuid(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    if (!(v->kind == PC_SINK_V_STRING))
        return fail(reason, c, v, NULL);
    const char *s = v->s;
    size_t n = v->n;
    trim(&s, &n);
    char hex[33];
    size_t h = 0;
    bool braces = n >= 2 && s[0] == '{' && s[n - 1] == '}';
    if (braces) {
        s++;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (isxdigit((unsigned char)s[i])) {
            if (h == 32)
                return fail(reason, c, v, NULL);
            hex[h++] = (char)tolower((unsigned char)s[i]);
        } else if (s[i] == '-' && (h == 8 || h == 12 || h == 16 || h == 20) && i + 1 < n &&
                   s[i + 1] != '-') {
            continue;
        } else {
            return fail(reason, c, v, NULL);
        }
    }
    if (h != 32)
        return fail(reason, c, v, NULL);
    char txt[36]; /* 8-4-4-4-12 */
    for (size_t i = 0, o = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            txt[o++] = '-';
        txt[o++] = hex[i];
    }
    return pc_buf_append(out, txt, sizeof txt);
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

static bool digits(const char *s, size_t n, int *out)
{
    int x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return true;
}

static double round_even(double x);

/* A fraction of a second (".f+", n bytes) in microseconds as PostgreSQL takes it: strtod, then
 * rint(frac * 1000000). */
static double fraction_usec(const char *dot, size_t n)
{
    char tmp[64] = "0";
    size_t fl = n < sizeof tmp - 2 ? n : sizeof tmp - 2;
    memcpy(tmp + 1, dot, fl);
    tmp[fl + 1] = '\0';
    return round_even(strtod(tmp, NULL) * 1000000.0);
}

/* ISO 8601: YYYY-MM-DD[(T| )HH:MM[:SS[.f+]]][Z|(+|-)HH[:MM]|(+|-)HHMM]. Checks every range. */
static int conv_time(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    if ((v->kind == PC_SINK_V_INT) || (v->kind == PC_SINK_V_REAL)) { /* unix epoch seconds */
        if (c->type == PC_SINK_T_DATE || c->type == PC_SINK_T_TIMESTAMP ||
            c->type == PC_SINK_T_TIMESTAMPTZ) {
            double sec = (v->kind == PC_SINK_V_INT ? (double)v->i : v->d);
            if (!(sec > -1e11 && sec < 1e11))
                return fail(reason, c, v, "epoch seconds out of range");
            time_t t = (time_t)sec;
            if ((double)t > sec)
                t--; /* floor for negative values */
            long usec = (long)((sec - (double)t) * 1e6 + 0.5);
            if (usec >= 1000000) {
                t++;
                usec -= 1000000;
            }
            struct tm tm;
            if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1) /* year 0 and BC: not ISO here */
                return fail(reason, c, v, "epoch seconds out of range");
            if (c->type == PC_SINK_T_DATE)
                return pc_buf_printf(out, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                                     tm.tm_mday);
            return pc_buf_printf(out, "%04d-%02d-%02d %02d:%02d:%02d.%06ld%s", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                                 usec, c->type == PC_SINK_T_TIMESTAMPTZ ? "+00" : "");
        }
    }
    if (!(v->kind == PC_SINK_V_STRING))
        return fail(reason, c, v, NULL);
    const char *s = v->s;
    size_t n = v->n;
    trim(&s, &n);
    int y, mo, d, hh = 0, mi = 0, ss = 0, tzh = 0, tzm = 0;
    double fsec = 0;
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return fail(reason, c, v, "expected ISO 8601 YYYY-MM-DD[THH:MM:SS[.fff]][Z|+HH:MM]");
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return fail(reason, c, v, "no such date");
    if (c->type == PC_SINK_T_DATE && n == 10)
        return pc_buf_append(out, s, 10);
    size_t i = 10;
    bool has_time = false;
    if (i < n) {
        if ((s[i] != 'T' && s[i] != 't' && s[i] != ' ') || i + 6 > n || !digits(s + i + 1, 2, &hh) ||
            s[i + 3] != ':' || !digits(s + i + 4, 2, &mi))
            return fail(reason, c, v, "bad time of day");
        has_time = true;
        i += 6;
        if (i < n && s[i] == ':') {
            if (i + 3 > n || !digits(s + i + 1, 2, &ss))
                return fail(reason, c, v, "bad seconds");
            i += 3;
            if (i < n && s[i] == '.') {
                size_t f = ++i;
                while (i < n && isdigit((unsigned char)s[i]))
                    i++;
                if (i == f)
                    return fail(reason, c, v, "bad fraction of a second");
                fsec = fraction_usec(s + f - 1, i - f + 1);
            }
        }
        /* 24:00:00 and 23:59:60 are the latest PostgreSQL takes: not a microsecond more */
        if (hh > 24 || mi > 59 || ss > 60 || (hh == 24 && (mi || ss)) ||
            (double)((hh * 60 + mi) * 60 + ss) * 1000000.0 + fsec > 86400000000.0)
            return fail(reason, c, v, "time of day out of range");
        if (i < n) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                size_t rest = n - i - 1;
                const char *z = s + i + 1;
                bool ok = (rest == 2 && digits(z, 2, &tzh)) ||
                          (rest == 4 && digits(z, 2, &tzh) && digits(z + 2, 2, &tzm)) ||
                          (rest == 5 && digits(z, 2, &tzh) && z[2] == ':' &&
                           digits(z + 3, 2, &tzm));
                if (!ok || tzh > 15 || tzm > 59)
                    return fail(reason, c, v, "bad time zone offset");
                i = n;
            } else {
                return fail(reason, c, v, "unexpected text after the time");
            }
        }
    }
    if (i != n)
        return fail(reason, c, v, NULL);
    (void)has_time;
    if (c->type == PC_SINK_T_DATE)
        return pc_buf_append(out, s, 10); /* the calendar date as written */
    return pc_buf_append(out, s, n);
}

/* An encoded NUL ("\\u0000") in JSON text; PostgreSQL's json and jsonb refuse it. */
static bool has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (n - i >= 6 && !memcmp(s + i, "\\u0000", 6))
            return true;
        i++; /* the escaped character: "\\\\u0000" is a backslash, then text */
    }
    return false;
}

/* Compact JSON appended to out: objects and arrays as the parser handed them (already compact),
 * scalars encoded. */
static int conv_json(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    if ((v->kind == PC_SINK_V_STRING && memchr(v->s, '\0', v->n)) ||
        (v->kind == PC_SINK_V_JSON && has_nul_escape(v->s, v->n)))
        return fail(reason, c, v, "contains a NUL character");
    return json_text(v, out);
}

static int conv_text(const pc_sink_val *v, const pc_sink_col *c, pc_buf *out, char **reason)
{
    if ((v->kind == PC_SINK_V_STRING)) {
        const char *s = v->s;
        size_t n = v->n;
        if (memchr(s, '\0', n))
            return fail(reason, c, v, "contains a NUL character");
        if (c->type == PC_SINK_T_TEXT && c->typmod1 > 0 && utf8_chars(s, n) > (size_t)c->typmod1)
            return fail(reason, c, v, "longer than the column's length");
        return pc_buf_append(out, s, n);
    }
    if ((v->kind == PC_SINK_V_INT))
        return pc_buf_printf(out, "%lld", v->i);
    if ((v->kind == PC_SINK_V_REAL))
        return pc_buf_printf(out, "%.17g", v->d);
    if ((v->kind == PC_SINK_V_BOOL))
        return pc_buf_puts(out, v->b ? "true" : "false");
    /* objects and arrays: compact JSON */
    size_t before = out->len;
    int rc = conv_json(v, c, out, reason);
    if (rc == 0 && c->type == PC_SINK_T_TEXT && c->typmod1 > 0 &&
        utf8_chars(out->data + before, out->len - before) > (size_t)c->typmod1)
        return fail(reason, c, v, "longer than the column's length");
    return rc;
}

int pc_sink_convert_val(const pc_sink_val *v, const pc_sink_col *col, pc_buf *out, bool *is_null,
                        char **reason)
{
    out->len = 0;
    if (out->data)
        out->data[0] = '\0';
    return pc_sink_convert_append(v, col, out, is_null, reason);
}

bool pc_sink_type_copy_safe(pc_sink_type t)
{
    switch (t) {
    case PC_SINK_T_TEXT:
    case PC_SINK_T_JSON:
    case PC_SINK_T_OTHER:
        return false;
    case PC_SINK_T_INT2:
    case PC_SINK_T_INT4:
    case PC_SINK_T_INT8:
    case PC_SINK_T_NUMERIC:
    case PC_SINK_T_FLOAT4:
    case PC_SINK_T_FLOAT8:
    case PC_SINK_T_BOOL:
    case PC_SINK_T_UUID:
    case PC_SINK_T_TIMESTAMPTZ:
    case PC_SINK_T_TIMESTAMP:
    case PC_SINK_T_DATE:
        return true;
    }
    return false;
}

int pc_sink_convert_append(const pc_sink_val *v, const pc_sink_col *col, pc_buf *out,
                           bool *is_null, char **reason)
{
    *reason = NULL;
    *is_null = false;
    if (!v || v->kind == PC_SINK_V_NULL) {
        *is_null = true;
        if (!col->nullable || col->primary_key) {
            *reason = pc_asprintf("column %s (path %s): value is %s but the column is NOT NULL",
                                  col->name, col->path, v ? "null" : "missing");
            return PC_EINVAL;
        }
        return 0;
    }
    int rc = 0;
    switch (col->type) {
    case PC_SINK_T_TEXT:
    case PC_SINK_T_OTHER:
        rc = conv_text(v, col, out, reason);
        break;
    case PC_SINK_T_INT2:
    case PC_SINK_T_INT4:
    case PC_SINK_T_INT8:
        rc = conv_int(v, col, out, reason);
        break;
    case PC_SINK_T_NUMERIC:
    case PC_SINK_T_FLOAT4:
    case PC_SINK_T_FLOAT8:
        rc = conv_number(v, col, out, reason);
        break;
    case PC_SINK_T_BOOL:
        rc = conv_bool(v, col, out, reason);
        break;
    case PC_SINK_T_UUID:
        rc = conv_uuid(v, col, out, reason);
        break;
    case PC_SINK_T_TIMESTAMPTZ:
    case PC_SINK_T_TIMESTAMP:
    case PC_SINK_T_DATE:
        rc = conv_time(v, col, out, reason);
        break;
    case PC_SINK_T_JSON:
        rc = conv_json(v, col, out, reason);
        break;
    }
    if (rc == PC_ENOMEM && !*reason)
        *reason = pc_strdup("out of memory");
    return rc;
}

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
    return pc_buf_append(data, buffer, size) ? -1 : 0;
}

/* The jansson form of the converters' input: a value of a tree (tests, tools). Numbers and
 * containers carry their compact JSON as jansson writes it. */
int pc_sink_convert(const json_t *root, const pc_sink_col *col, pc_buf *out, bool *is_null,
                    char **reason)
{
    const json_t *j = pc_sink_json_get(root, col->path);
    pc_sink_val v = {.kind = PC_SINK_V_NULL};
    pc_buf text = {0};
    if (!j)
        return pc_sink_convert_val(NULL, col, out, is_null, reason);
    switch (json_typeof(j)) {
    case JSON_NULL:
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v.kind = PC_SINK_V_BOOL;
        v.b = json_is_true(j);
        break;
    case JSON_STRING:
        v.kind = PC_SINK_V_STRING;
        v.s = json_string_value(j);
        v.n = json_string_length(j);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
    case JSON_OBJECT:
    case JSON_ARRAY:
        v.kind = json_is_integer(j) ? PC_SINK_V_INT
                 : json_is_real(j)  ? PC_SINK_V_REAL
                                    : PC_SINK_V_JSON;
        v.i = json_is_integer(j) ? (long long)json_integer_value(j) : 0;
        v.d = json_is_real(j) ? json_real_value(j) : 0;
        if (json_dump_callback(j, dump_to_buf, &text, JSON_COMPACT | JSON_ENCODE_ANY) ||
            !text.data) {
            pc_buf_free(&text);
            *is_null = false;
            *reason = pc_strdup("out of memory");
            return PC_ENOMEM;
        }
        v.s = text.data;
        v.n = text.len;
        break;
    }
    int rc = pc_sink_convert_val(&v, col, out, is_null, reason);
    pc_buf_free(&text);
    return rc;
}

/* Bytes that COPY's text format escapes (see pc_sink_copy_escape). */
static const unsigned char copy_special[256] = {
    ['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    ['\b'] = 'b',  ['\f'] = 'f', ['\v'] = 'v',
};

int pc_sink_copy_escape(pc_buf *line, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char e = copy_special[(unsigned char)s[i]];
        if (e) {
            char rep[2] = {'\\', (char)e};
            if (pc_buf_append(line, s + start, i - start) || pc_buf_append(line, rep, 2))
                return PC_ENOMEM;
            start = i + 1;
        }
    }
    return pc_buf_append(line, s + start, n - start);
}

/* --- COPY binary format ------------------------------------------------------------------------
 * The field a column's converted text stands for, in the binary form of its type's receive
 * function: the text converters above decide what is valid, this only re-encodes their output,
 * so both formats load the same rows. */

int pc_sink_put_be(pc_buf *out, uint64_t v, int bytes)
{
    char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (char)(unsigned char)(v >> (8 * (bytes - 1 - i)));
    return pc_buf_append(out, b, (size_t)bytes);
}

static int field(pc_buf *out, const void *data, size_t n)
{
    if (n > INT32_MAX)
        return PC_EINVAL;
    if (pc_sink_put_be(out, (uint32_t)n, 4) || pc_buf_append(out, data, n))
        return PC_ENOMEM;
    return 0;
}

#define PG_EPOCH_DAYS 10957 /* 2000-01-01, PostgreSQL's epoch, in days from 1970-01-01 */

/* rint() in the default rounding mode, for x >= 0 (without libm) */
static double round_even(double x)
{
    long long k = (long long)x;
    double r = x - (double)k;
    if (r > 0.5 || (r == 0.5 && (k & 1)))
        k++;
    return (double)k;
}

/* conv_time's output (validated): YYYY-MM-DD[(T|t| )HH:MM[:SS[.f+]]][Z|z|(+|-)HH[[:]MM]]. */
static void time_bin(const char *s, size_t n, pc_sink_type t, pc_buf *out, int *rc)
{
    int y = 0, mo = 0, d = 0, hh = 0, mi = 0, ss = 0, tzh = 0, tzm = 0, sign = 0;
    double fsec = 0;
    digits(s, 4, &y);
    digits(s + 5, 2, &mo);
    digits(s + 8, 2, &d);
    int64_t days = pc_days_from_civil(y, mo, d) - PG_EPOCH_DAYS;
    if (t == PC_SINK_T_DATE) {
        *rc = pc_sink_put_be(out, 4, 4) || pc_sink_put_be(out, (uint32_t)(int32_t)days, 4)
                  ? PC_ENOMEM
                  : 0;
        return;
    }
    size_t i = 10;
    if (i < n) {
        digits(s + i + 1, 2, &hh);
        digits(s + i + 4, 2, &mi);
        i += 6;
        if (i < n && s[i] == ':') {
            digits(s + i + 1, 2, &ss);
            i += 3;
            if (i < n && s[i] == '.') {
                size_t f = i;
                while (i + 1 < n && isdigit((unsigned char)s[i + 1]))
                    i++;
                i++;
                fsec = fraction_usec(s + f, i - f);
            }
        }
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            sign = s[i] == '-' ? -1 : 1;
            const char *z = s + i + 1;
            digits(z, 2, &tzh);
            if (n - i - 1 == 4)
                digits(z + 2, 2, &tzm);
            else if (n - i - 1 == 5)
                digits(z + 3, 2, &tzm);
        }
    }
    int64_t us =
        days * 86400000000LL + (((int64_t)hh * 60 + mi) * 60 + ss) * 1000000LL + (int64_t)fsec;
    if (t == PC_SINK_T_TIMESTAMPTZ) /* local time at that offset -> UTC */
        us -= (int64_t)sign * ((int64_t)tzh * 3600 + tzm * 60) * 1000000LL;
    *rc = pc_sink_put_be(out, 8, 4) || pc_sink_put_be(out, (uint64_t)us, 8) ? PC_ENOMEM : 0;
}

static int numeric_digits(const char *s, size_t n, char *dig, pc_buf *out);

/* conv_numeric_text's output (validated) -> numeric's binary form: base-10000 digits, weight,
 * sign, display scale; PostgreSQL rounds to the column's scale as numeric_in does. */
static int numeric_bin(const char *s, size_t n, pc_buf *out)
{
    if (n == 3 && !strncasecmp(s, "nan", 3))
        return pc_sink_put_be(out, 8, 4) || pc_sink_put_be(out, 0, 2) ||
                       pc_sink_put_be(out, 0, 2) || pc_sink_put_be(out, 0xC000, 2) ||
                       pc_sink_put_be(out, 0, 2)
                   ? PC_ENOMEM
                   : 0;
    char stack[512];
    char *dig = n < sizeof stack ? stack : malloc(n);
    if (!dig)
        return PC_ENOMEM;
    int rc = numeric_digits(s, n, dig, out);
    if (dig != stack)
        free(dig);
    return rc;
}

/* dig: room for n digits */
static int numeric_digits(const char *s, size_t n, char *dig, pc_buf *out)
{
    size_t nd = 0, i = 0;
    long dp = 0; /* decimal point position in dig */
    bool neg = false;
    if (s[i] == '+' || s[i] == '-')
        neg = s[i++] == '-';
    for (; i < n && isdigit((unsigned char)s[i]); i++)
        dig[nd++] = s[i];
    dp = (long)nd;
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            dig[nd++] = s[i];
    if (i < n && (s[i] == 'e' || s[i] == 'E'))
        dp += strtol(s + i + 1, NULL, 10); /* |exp| <= 1000, checked by the converter */
    long dscale = (long)nd - dp;
    if (dscale < 0)
        dscale = 0;
    size_t a = 0, b = nd; /* strip leading and trailing zeros */
    while (a < b && dig[a] == '0') {
        a++;
        dp--;
    }
    while (b > a && dig[b - 1] == '0')
        b--;
    if (pc_sink_put_be(out, 0, 4)) /* the length, filled in below */
        return PC_ENOMEM;
    size_t at = out->len - 4;
    if (a == b) { /* zero */
        if (pc_sink_put_be(out, 0, 2) || pc_sink_put_be(out, 0, 2) || pc_sink_put_be(out, 0, 2) ||
            pc_sink_put_be(out, (uint16_t)dscale, 2))
            return PC_ENOMEM;
    } else {
        long r = ((dp % 4) + 4) % 4;
        long pad = r ? 4 - r : 0;         /* zeros in front: the point falls between groups */
        long weight = (dp + pad) / 4 - 1; /* of the first group, in powers of 10000 */
        size_t len = (size_t)pad + (b - a);
        size_t ngroups = (len + 3) / 4;
        if (pc_sink_put_be(out, (uint16_t)ngroups, 2) ||
            pc_sink_put_be(out, (uint16_t)(int16_t)weight, 2) ||
            pc_sink_put_be(out, neg ? 0x4000 : 0, 2) || pc_sink_put_be(out, (uint16_t)dscale, 2))
            return PC_ENOMEM;
        for (size_t g = 0; g < ngroups; g++) {
            int v = 0;
            for (size_t k = 0; k < 4; k++) {
                size_t pos = g * 4 + k; /* in the padded digit string */
                int dgt = pos < (size_t)pad || pos - (size_t)pad >= b - a
                              ? 0
                              : dig[a + pos - (size_t)pad] - '0';
                v = v * 10 + dgt;
            }
            if (pc_sink_put_be(out, (uint16_t)v, 2))
                return PC_ENOMEM;
        }
    }
    uint32_t flen = (uint32_t)(out->len - at - 4);
    for (int k = 0; k < 4; k++)
        ((unsigned char *)out->data)[at + (size_t)k] = (unsigned char)(flen >> (8 * (3 - k)));
    return 0;
}

static bool hexval(char c, int *v)
{
    if (c >= '0' && c <= '9')
        *v = c - '0';
    else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10;
    else
        return false;
    return true;
}

bool pc_sink_type_binary(const pc_sink_col *col)
{
    return col->type != PC_SINK_T_OTHER;
}

int pc_sink_bin_field(const pc_sink_col *col, const char *s, size_t n, pc_buf *out, char **reason)
{
    int rc = 0;
    *reason = NULL;
    switch (col->type) {
    case PC_SINK_T_TEXT:
        return field(out, s, n);
    case PC_SINK_T_JSON:
        if (col->type_name && !strncmp(col->type_name, "jsonb", 5)) { /* version 1, text */
            if (pc_sink_put_be(out, (uint32_t)n + 1, 4) || pc_buf_append(out, "\1", 1) ||
                pc_buf_append(out, s, n))
                return PC_ENOMEM;
            return 0;
        }
        return field(out, s, n);
    case PC_SINK_T_INT2:
    case PC_SINK_T_INT4:
    case PC_SINK_T_INT8: {
        char tmp[32];
        size_t l = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
        memcpy(tmp, s, l);
        tmp[l] = '\0';
        long long x = strtoll(tmp, NULL, 10);
        int bytes = col->type == PC_SINK_T_INT2 ? 2 : col->type == PC_SINK_T_INT4 ? 4 : 8;
        return pc_sink_put_be(out, (uint64_t)bytes, 4) || pc_sink_put_be(out, (uint64_t)x, bytes)
                   ? PC_ENOMEM
                   : 0;
    }
    case PC_SINK_T_BOOL:
        return pc_sink_put_be(out, 1, 4) || pc_buf_append(out, s[0] == 't' ? "\1" : "\0", 1)
                   ? PC_ENOMEM
                   : 0;
    case PC_SINK_T_UUID: {
        unsigned char u[16];
        size_t k = 0;
        for (size_t i = 0; i < n && k < 32; i++) {
            int v;
            if (!hexval(s[i], &v))
                continue; /* the dashes */
            if (k % 2 == 0)
                u[k / 2] = (unsigned char)(v << 4);
            else
                u[k / 2] |= (unsigned char)v;
            k++;
        }
        return field(out, u, sizeof u);
    }
    case PC_SINK_T_FLOAT4:
    case PC_SINK_T_FLOAT8: { /* parsed as float4in/float8in do: strtof/strtod */
        char tmp[512];
        if (n >= sizeof tmp)
            return PC_EINVAL;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        if (col->type == PC_SINK_T_FLOAT4) {
            float f = strtof(tmp, NULL);
            if (errno == ERANGE && (f == 0 || isinf(f)))
                rc = PC_EINVAL;
            uint32_t bits;
            memcpy(&bits, &f, 4);
            if (!rc && (pc_sink_put_be(out, 4, 4) || pc_sink_put_be(out, bits, 4)))
                return PC_ENOMEM;
        } else {
            double f = strtod(tmp, NULL);
            if (errno == ERANGE && (f == 0 || isinf(f)))
                rc = PC_EINVAL;
            uint64_t bits;
            memcpy(&bits, &f, 8);
            if (!rc && (pc_sink_put_be(out, 8, 4) || pc_sink_put_be(out, bits, 8)))
                return PC_ENOMEM;
        }
        if (rc) {
            *reason = pc_asprintf("column %s (path %s): value %.40s is out of range for type %s",
                                  col->name, col->path, tmp, type_label(col));
            return *reason ? PC_EINVAL : PC_ENOMEM;
        }
        return 0;
    }
    case PC_SINK_T_NUMERIC:
        return numeric_bin(s, n, out);
    case PC_SINK_T_TIMESTAMPTZ:
    case PC_SINK_T_TIMESTAMP:
    case PC_SINK_T_DATE:
        time_bin(s, n, col->type, out, &rc);
        return rc;
    case PC_SINK_T_OTHER:
        break;
    }
    *reason =
        pc_asprintf("column %s: type %s has no binary COPY form here", col->name, type_label(col));
    return *reason ? PC_EINVAL : PC_ENOMEM;
}
