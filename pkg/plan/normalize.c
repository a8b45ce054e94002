/* normalize.c: canonical forms used to compare what the manifest says with what a server
 * reports, so that equal values written differently ("True" vs "true", "int4" vs "integer",
 * "1min" vs "60" with unit "s") never show up as a change. */
#include "plan.h"
#include "plan_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Trimmed copy of s (NULL-safe). */
static char *trim_dup(const char *s)
{
    if (s == NULL)
        return NULL;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return pc_strndup(s, n);
}

static void lower_in_place(char *s)
{
    for (; s != NULL && *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* "+007" -> "7", "-0" -> "0", "-012" -> "-12"; NULL when s is not an integer. */
static char *canonical_integer(const char *s)
{
    bool neg = false;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    if (*s == '\0')
        return NULL;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return NULL;
    while (s[0] == '0' && s[1] != '\0')
        s++;
    if (strcmp(s, "0") == 0)
        neg = false;
    return pc_asprintf("%s%s", neg ? "-" : "", s);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "compact, Delete" -> "compact,delete": items trimmed, lower-cased, sorted. */
static char *canonical_list(const char *v)
{
    char *copy = pc_strdup(v);
    char **items = NULL;
    size_t n = 0;
    char *out = NULL;
    if (copy == NULL)
        goto done;
    items = calloc(strlen(v) + 1, sizeof *items);
    if (items == NULL)
        goto done;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim_dup(tok);
        if (t == NULL)
            goto done;
        if (*t == '\0') {
            free(t);
            continue;
        }
        lower_in_place(t);
        items[n++] = t;
    }
    qsort(items, n, sizeof *items, str_cmp);
    pc_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && pc_buf_puts(&b, ",") != 0) || pc_buf_puts(&b, items[i]) != 0) {
            pc_buf_free(&b);
            goto done;
        }
    }
    out = pc_buf_detach(&b);
done:
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    free(copy);
    return out;
}

char *pc_norm_kafka_config(const char *key, const char *value)
{
    char *v = trim_dup(value);
    if (v == NULL)
        return NULL;
    char *out = NULL;
    if (pc_streq(key, "cleanup.policy") || strchr(v, ',') != NULL) {
        out = canonical_list(v);
    } else if (strcasecmp(v, "true") == 0 || strcasecmp(v, "false") == 0) {
        lower_in_place(v);
        return v;
    } else if ((out = canonical_integer(v)) != NULL) {
        /* numeric: canonical integer */
    } else {
        if (pc_streq(key, "compression.type") || pc_streq(key, "message.timestamp.type"))
            lower_in_place(v);
        return v;
    }
    free(v);
    return out;
}

/* ---------- PostgreSQL types ---------- */

/* Lower-cased, single spaces, no spaces around "(", ")" and ",". */
static char *squeeze_type(const char *type)
{
    pc_buf b = {0};
    bool space = false;
    for (const char *p = type; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c)) {
            space = b.len > 0;
            continue;
        }
        if (space && c != '(' && c != ')' && c != ',' && c != '[' && b.len > 0 &&
            b.data[b.len - 1] != '(' && b.data[b.len - 1] != ',') {
            if (pc_buf_puts(&b, " ") != 0)
                goto oom;
        }
        space = false;
        char ch = (char)tolower(c);
        if (pc_buf_append(&b, &ch, 1) != 0)
            goto oom;
    }
    return pc_buf_detach(&b);
oom:
    pc_buf_free(&b);
    return NULL;
}

typedef struct type_alias {
    const char *from;
    const char *to;
} type_alias;

static const type_alias k_type_aliases[] = {
    {"int", "integer"},
    {"int4", "integer"},
    {"serial", "integer"},
    {"serial4", "integer"},
    {"int2", "smallint"},
    {"smallserial", "smallint"},
    {"serial2", "smallint"},
    {"int8", "bigint"},
    {"bigserial", "bigint"},
    {"serial8", "bigint"},
    {"float4", "real"},
    {"float8", "double precision"},
    {"float", "double precision"},
    {"bool", "boolean"},
    {"decimal", "numeric"},
    {"varchar", "character varying"},
    {"char", "character"},
    {"bpchar", "character"},
    {"varbit", "bit varying"},
};

/* A squeezed type without "[]": "base(mods) rest", e.g. "timestamp(3) with time zone". */
static char *norm_scalar_type(const char *t)
{
    char *out = NULL;
    const char *lp = strchr(t, '(');
    const char *rp = lp ? strchr(lp, ')') : NULL;
    char *base = NULL, *mods = NULL, *rest = NULL;
    if (lp != NULL && rp != NULL) {
        base = pc_strndup(t, (size_t)(lp - t));
        mods = pc_strndup(lp, (size_t)(rp - lp + 1));
        rest = pc_strdup(rp[1] == ' ' ? rp + 2 : rp + 1);
    } else {
        base = pc_strdup(t);
        mods = pc_strdup("");
        rest = pc_strdup("");
    }
    if (base == NULL || mods == NULL || rest == NULL)
        goto done;
    if (strcmp(base, "timestamp") == 0 || strcmp(base, "time") == 0) {
        out = pc_asprintf("%s%s %s", base, mods, *rest ? rest : "without time zone");
    } else if (strcmp(base, "timestamptz") == 0 || strcmp(base, "timetz") == 0) {
        out = pc_asprintf("%s%s with time zone",
                          strcmp(base, "timestamptz") == 0 ? "timestamp" : "time", mods);
    } else {
        const char *canon = base;
        for (size_t i = 0; i < sizeof k_type_aliases / sizeof k_type_aliases[0]; i++)
            if (strcmp(base, k_type_aliases[i].from) == 0)
                canon = k_type_aliases[i].to;
        if (strcmp(canon, "character") == 0 && *mods == '\0' && *rest == '\0')
            out = pc_strdup("character(1)"); /* char means char(1) */
        else
            out = pc_asprintf("%s%s%s%s", canon, mods, *rest ? " " : "", rest);
    }
done:
    free(base);
    free(mods);
    free(rest);
    return out;
}

char *pc_norm_pg_type(const char *type)
{
    if (type == NULL)
        return NULL;
    char *t = squeeze_type(type);
    char *elem = NULL;
    pc_buf b = {0};
    char *out = NULL;
    if (t == NULL)
        goto done;
    /* arrays: normalise the element type, keep one "[]" per dimension */
    size_t len = strlen(t), dims = 0;
    while (len > 2 && strcmp(t + len - 2, "[]") == 0) {
        len -= 2;
        t[len] = '\0';
        dims++;
    }
    elem = norm_scalar_type(t);
    if (elem == NULL || pc_buf_puts(&b, elem) != 0)
        goto done;
    for (size_t i = 0; i < dims; i++)
        if (pc_buf_puts(&b, "[]") != 0)
            goto done;
    out = pc_buf_detach(&b);
done:
    pc_buf_free(&b);
    free(elem);
    free(t);
    return out;
}

/* Parses "name(a)" or "name(a,b)"; returns the number of modifiers read (0 when none). */
static int type_mods(const char *t, const char *name, long *a, long *b)
{
    size_t n = strlen(name);
    if (strncmp(t, name, n) != 0)
        return -1;
    if (t[n] == '\0')
        return 0;
    if (t[n] != '(')
        return -1;
    char *end = NULL;
    *a = strtol(t + n + 1, &end, 10);
    if (*end == ')' && end[1] == '\0')
        return 1;
    if (*end != ',')
        return -1;
    *b = strtol(end + 1, &end, 10);
    if (*end == ')' && end[1] == '\0')
        return 2;
    return -1;
}

static int int_digits(const char *t)
{
    if (strcmp(t, "smallint") == 0)
        return 5;
    if (strcmp(t, "integer") == 0)
        return 10;
    if (strcmp(t, "bigint") == 0)
        return 19;
    return 0;
}

bool pc_plan_type_change_safe(const char *from, const char *to)
{
    static const char *ints[] = {"smallint", "integer", "bigint"};
    int fi = -1, ti = -1;
    for (int i = 0; i < 3; i++) {
        if (strcmp(from, ints[i]) == 0)
            fi = i;
        if (strcmp(to, ints[i]) == 0)
            ti = i;
    }
    if (fi >= 0 && ti >= 0)
        return ti > fi;
    long p1 = 0, s1 = 0, p2 = 0, s2 = 0;
    int n2 = type_mods(to, "numeric", &p2, &s2);
    if (fi >= 0 && n2 >= 0)
        return n2 == 0 || p2 - s2 >= int_digits(from);
    int n1 = type_mods(from, "numeric", &p1, &s1);
    if (n1 >= 0 && n2 >= 0) {
        if (n2 == 0)
            return true;
        if (n1 == 0)
            return false;
        return s2 >= s1 && p2 - s2 >= p1 - s1;
    }
    if (strcmp(from, "real") == 0 && strcmp(to, "double precision") == 0)
        return true;
    int v1 = type_mods(from, "character varying", &p1, &s1);
    int c1 = type_mods(from, "character", &p1, &s1);
    int v2 = type_mods(to, "character varying", &p2, &s2);
    if ((v1 >= 0 || c1 >= 0) && strcmp(to, "text") == 0)
        return true;
    if (v1 >= 0 && v2 >= 0)
        return v2 == 0 || (v1 == 1 && p2 > p1);
    return false;
}

/* ---------- PostgreSQL settings ---------- */

static bool bool_word(const char *v, const char **canon)
{
    static const char *on[] = {"on", "true", "yes", "1"};
    static const char *off[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, on[i]) == 0) {
            *canon = "on";
            return true;
        }
        if (strcasecmp(v, off[i]) == 0) {
            *canon = "off";
            return true;
        }
    }
    return false;
}

/* Size of a unit in its family's base (ms for time, bytes for memory); 0 when unknown. */
static double unit_size(const char *u, int *family)
{
    static const struct {
        const char *name;
        double size;
        int family;
    } units[] = {
        {"us", 0.001, 1},
        {"ms", 1, 1},
        {"s", 1000, 1},
        {"min", 60000, 1},
        {"h", 3600000, 1},
        {"d", 86400000, 1},
        {"B", 1, 2},
        {"kB", 1024, 2},
        {"MB", 1048576, 2},
        {"GB", 1073741824.0, 2},
        {"TB", 1099511627776.0, 2},
    };
    /* pg_settings units may carry a multiplier: "8kB", "16MB" */
    char *end = NULL;
    double mult = 1;
    if (isdigit((unsigned char)*u)) {
        mult = strtod(u, &end);
        u = end;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(u, units[i].name) == 0) {
            *family = units[i].family;
            return mult * units[i].size;
        }
    return 0;
}

char *pc_norm_pg_setting(const pc_obs_setting *s, const char *value)
{
    char *v = trim_dup(value);
    if (v == NULL)
        return NULL;
    /* values written in configuration files may keep their quotes */
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') {
        memmove(v, v + 1, n - 2);
        v[n - 2] = '\0';
    }
    const char *name = s != NULL ? s->name : NULL;
    const char *canon = NULL;
    if (pc_streq(name, "wal_level")) {
        lower_in_place(v);
        if (strcmp(v, "archive") == 0 || strcmp(v, "hot_standby") == 0) {
            free(v);
            return pc_strdup("replica");
        }
        return v;
    }
    if (pc_streq(name, "archive_mode")) {
        if (bool_word(v, &canon)) {
            free(v);
            return pc_strdup(canon);
        }
        lower_in_place(v);
        return v;
    }
    if (pc_streq(name, "archive_command"))
        return v;
    if (s != NULL && s->unit != NULL && *v != '\0') {
        int fam_setting = 0, fam_value = 0;
        double setting_unit = unit_size(s->unit, &fam_setting);
        errno = 0;
        char *end = NULL;
        double num = strtod(v, &end);
        if (setting_unit > 0 && end != v && errno == 0) {
            while (isspace((unsigned char)*end))
                end++;
            double base;
            if (*end == '\0') {
                base = num * setting_unit;
            } else {
                double vu = unit_size(end, &fam_value);
                if (vu <= 0 || fam_value != fam_setting)
                    return v;
                base = num * vu;
            }
            double in_unit = base / setting_unit;
            free(v);
            return pc_asprintf("%lld", (long long)(in_unit < 0 ? in_unit - 0.5 : in_unit + 0.5));
        }
        return v;
    }
    /* a boolean written as a word in a setting without a unit */
    if (s != NULL && s->unit == NULL && bool_word(v, &canon) && !isdigit((unsigned char)*v)) {
        free(v);
        return pc_strdup(canon);
    }
    return v;
}
