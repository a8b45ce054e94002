/* values.c: the manifest's small value languages: durations ("200ms", "7d", "1h30m"), sizes
 * ("512MiB", "1GB"), integers, Postgres column types, and the naming
 * rules for SQL identifiers and Kafka names. Pure string functions. */
#include "manifest_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int mf_parse_int64(const char *s, int64_t *v)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (!isdigit((unsigned char)*p))
        return -1;
    int64_t acc = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (acc > (INT64_MAX - d) / 10)
            return -2;
        acc = acc * 10 + d;
    }
    if (*p != '\0')
        return -1;
    *v = neg ? -acc : acc;
    return 0;
}

/* One or more NUMBER UNIT groups: "200ms", "1s", "5m", "1h30m", "7d", "2w". */
int mf_parse_duration_ms(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    const char *p = s;
    int64_t total = 0;
    if (*p == '\0')
        return -1;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -1;
        int64_t n = 0;
        for (; isdigit((unsigned char)*p); p++) {
            if (n > (INT64_MAX - 9) / 10)
                return -2;
            n = n * 10 + (*p - '0');
        }
        size_t ulen = 0;
        while (isalpha((unsigned char)p[ulen]))
            ulen++;
        int64_t mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strlen(units[i].unit) == ulen && strncmp(p, units[i].unit, ulen) == 0)
                mult = units[i].ms;
        if (mult == 0)
            return -1;
        if (n > (INT64_MAX - total) / mult)
            return -2;
        total += n * mult;
        p += ulen;
    }
    *ms = total;
    return 0;
}

/* "1073741824", "1GiB", "512MiB", "1GB", "64kB", "10 MB". Decimal units are powers of 1000,
 * binary ones (KiB.., and the one-letter K/M/G/T as in JVM options) powers of 1024. */
int mf_parse_size_bytes(const char *s, int64_t *bytes)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"b", 1},
                 {"k", 1024},
                 {"kb", 1000},
                 {"kib", 1024},
                 {"m", 1024 * 1024},
                 {"mb", 1000 * 1000},
                 {"mib", 1024 * 1024},
                 {"g", 1024LL * 1024 * 1024},
                 {"gb", 1000LL * 1000 * 1000},
                 {"gib", 1024LL * 1024 * 1024},
                 {"t", 1024LL * 1024 * 1024 * 1024},
                 {"tb", 1000LL * 1000 * 1000 * 1000},
                 {"tib", 1024LL * 1024 * 1024 * 1024}};
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    int64_t n = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (INT64_MAX - 9) / 10)
            return -2;
        n = n * 10 + (*p - '0');
    }
    while (*p == ' ')
        p++;
    if (*p == '\0') {
        *bytes = n;
        return 0;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].unit) == 0) {
            if (n > INT64_MAX / units[i].mult)
                return -2;
            *bytes = n * units[i].mult;
            return 0;
        }
    }
    return -1;
}

/* ---------- column types ---------- */

static char *squeeze_lower(const char *s)
{
    pc_buf b = {0};
    bool space = false;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isspace(ch)) {
            space = b.len > 0;
            continue;
        }
        if (space && ch != '(' && ch != ')' && ch != ',' && ch != '[' && ch != ']' &&
            b.data[b.len - 1] != '(' && b.data[b.len - 1] != ',') {
            if (pc_buf_append(&b, " ", 1) != 0)
                goto oom;
        }
        space = false;
        char low = (char)tolower(ch);
        if (pc_buf_append(&b, &low, 1) != 0)
            goto oom;
    }
    return pc_buf_detach(&b);
oom:
    pc_buf_free(&b);
    return NULL;
}

static const char *const k_simple_types[] = {"text",
                                             "integer",
                                             "int",
                                             "int4",
                                             "bigint",
                                             "int8",
                                             "smallint",
                                             "int2",
                                             "numeric",
                                             "decimal",
                                             "real",
                                             "float4",
                                             "double precision",
                                             "float8",
                                             "boolean",
                                             "bool",
                                             "uuid",
                                             "timestamptz",
                                             "timestamp",
                                             "timestamp with time zone",
                                             "timestamp without time zone",
                                             "date",
                                             "time",
                                             "timetz",
                                             "jsonb",
                                             "json",
                                             "bytea",
                                             "inet",
                                             "varchar",
                                             "character varying",
                                             "char",
                                             "character",
                                             "cidr",
                                             "interval"};

/* "name(a)" / "name(a,b)" for the types that take modifiers. */
static const char *type_with_mods(const char *t, const char **suggest)
{
    static const struct {
        const char *name;
        int maxmods;
    } mods[] = {{"varchar", 1},   {"character varying", 1}, {"char", 1},
                {"character", 1}, {"numeric", 2},           {"decimal", 2},
                {"timestamp", 1}, {"timestamptz", 1},       {"time", 1}};
    const char *open = strchr(t, '(');
    size_t blen = (size_t)(open - t);
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        if (strlen(mods[i].name) != blen || strncmp(t, mods[i].name, blen) != 0)
            continue;
        const char *p = open + 1;
        long v[2] = {0, 0};
        int n = 0;
        for (;;) {
            if (!isdigit((unsigned char)*p))
                return "type modifiers must be numbers, e.g. varchar(255) or numeric(10,2)";
            char *end = NULL;
            v[n++] = strtol(p, &end, 10);
            p = end;
            if (*p == ',' && n < mods[i].maxmods) {
                p++;
                continue;
            }
            break;
        }
        if (strcmp(p, ")") != 0)
            return mods[i].maxmods == 2 ? "write numeric(precision) or numeric(precision,scale)"
                                        : "this type takes one modifier, e.g. varchar(255)";
        if (mods[i].maxmods == 2) {
            if (v[0] < 1 || v[0] > 1000)
                return "numeric precision must be between 1 and 1000";
            if (n == 2 && v[1] > v[0])
                return "numeric scale must be between 0 and the precision";
        } else if (strncmp(t, "time", 4) == 0) {
            if (v[0] > 6)
                return "time precision must be between 0 and 6";
        } else if (v[0] < 1 || v[0] > 10485760) {
            return "length must be between 1 and 10485760";
        }
        return NULL;
    }
    *suggest = NULL;
    return "unknown column type";
}

char *mf_column_type(const char *s, const char **why, const char **suggest)
{
    *why = NULL;
    *suggest = NULL;
    char *t = squeeze_lower(s);
    if (t == NULL)
        return NULL;
    size_t len = strlen(t);
    size_t base_len = len;
    while (base_len > 2 && strcmp(t + base_len - 2, "[]") == 0) /* arrays of a known type */
        base_len -= 2;
    char *base = pc_strndup(t, base_len);
    if (base == NULL) {
        free(t);
        return NULL;
    }
    bool ok = false;
    if (strchr(base, '(') != NULL) {
        *why = type_with_mods(base, suggest);
        ok = *why == NULL;
    } else {
        for (size_t i = 0; i < sizeof k_simple_types / sizeof k_simple_types[0]; i++)
            if (strcmp(base, k_simple_types[i]) == 0)
                ok = true;
        if (!ok) {
            *why = "unknown column type";
            size_t best = (size_t)-1;
            for (size_t i = 0; i < sizeof k_simple_types / sizeof k_simple_types[0]; i++) {
                size_t d = pc_levenshtein(base, k_simple_types[i]);
                if (d < best) {
                    best = d;
                    *suggest = k_simple_types[i];
                }
            }
            if (best > 2)
                *suggest = NULL;
        }
    }
    free(base);
    if (!ok) {
        free(t);
        *why = *why ? *why : "unknown column type";
        return NULL;
    }
    return t;
}

/* ---------- names ---------- */

bool mf_sql_ident_ok(const char *s)
{
    if (!(islower((unsigned char)s[0]) || s[0] == '_'))
        return false;
    size_t n = 1;
    for (; s[n]; n++)
        if (!(islower((unsigned char)s[n]) || isdigit((unsigned char)s[n]) || s[n] == '_'))
            return false;
    return n <= 63;
}

/* A pipeline name is a DNS-1123 label, as Kubernetes names objects
 * ([a-z0-9]([-a-z0-9]*[a-z0-9])?), or a SQL-style name ([a-z_][a-z0-9_]*), at most 63
 * characters either way. Not both at once:
 * "a_b-c" is neither, and a name that fits one convention reads the same in every place it is
 * derived into (consumer groups, NocoDB aliases, git folders). Everything derived from it is
 * passed as a parameter or quoted, so '-' needs no escaping anywhere. */
const char *mf_pipeline_name_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "is empty";
    if (n > 63)
        return "is longer than 63 characters";
    bool dash = false, underscore = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isupper(ch))
            return "has an upper-case letter";
        if (!(islower(ch) || isdigit(ch) || ch == '-' || ch == '_'))
            return "may only hold lower-case letters, digits, '-' or '_'";
        dash |= ch == '-';
        underscore |= ch == '_';
    }
    if (dash && underscore)
        return "mixes '-' and '_'";
    if (dash && s[0] == '-')
        return "starts with '-'";
    if (dash && s[n - 1] == '-')
        return "ends with '-'";
    if (underscore && isdigit((unsigned char)s[0]))
        return "starts with a digit (a name with '_' must start with a letter or '_')";
    return NULL;
}

const char *mf_kafka_name_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "must not be empty";
    if (n > 249)
        return "must be at most 249 characters";
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return "must not be '.' or '..'";
    if (strncmp(s, "__", 2) == 0)
        return "must not start with '__' (reserved for Kafka's internal topics)";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '.' || ch == '_' || ch == '-'))
            return "may only hold letters, digits, '.', '_' and '-'";
    }
    return NULL;
}
