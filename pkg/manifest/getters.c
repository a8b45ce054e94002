/* getters.c: the typed getters every section of the manifest is read through (strings, integers
 * in a range, booleans, durations, enums, SQL/Kafka/pipeline names, duplicate names, paths), and
 * the "mapping with a fixed set of keys" that reports unknown keys with a suggestion. Each
 * problem is one FILE:LINE:COL diagnostic; the parse goes on so the user sees all of them. */
#include "manifest_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- small helpers ---------- */

char *mf_dup_or_oom(mf_ctx *c, const char *s)
{
    char *p = pc_strdup(s);
    if (s != NULL && p == NULL)
        c->oom = true;
    return p;
}

/* The mf_nearest candidate for a misspelt word, or NULL when nothing is close. */
const char *mf_nearest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (cands[i] == NULL)
            continue;
        size_t d = pc_levenshtein(word, cands[i]);
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    size_t len = strlen(word);
    if (best == NULL || bestd == 0 || (bestd > 2 && bestd * 2 > len))
        return NULL;
    return best;
}

/* "; did you mean 'x'?" or "". */
char *mf_hint(const char *s)
{
    return s ? pc_asprintf("; did you mean '%s'?", s) : pc_strdup("");
}

/* ---------- objects: a mapping with a fixed set of keys ---------- */


/* "{name: x, type: numeric(10,2)}" reads as type "numeric(10" plus a key "2)": the column
 * code reports the cut type, so the stray key is not reported again. */
static bool cut_type_tail(const mf_node *map, const char *key)
{
    size_t n = strspn(key, " 0123456789");
    if (n == 0 || strcmp(key + n, ")") != 0)
        return false;
    for (size_t i = 0; i + 1 < map->nkids; i += 2)
        if (map->kids[i]->kind == MF_SCALAR && strcmp(map->kids[i]->value, "type") == 0 &&
            map->kids[i + 1]->kind == MF_SCALAR && strchr(map->kids[i + 1]->value, '(') != NULL)
            return true;
    return false;
}

void mf_obj_open(mf_obj *o, mf_ctx *c, const mf_node *map, const char *where,
                     const char *const *keys)
{
    o->c = c;
    o->map = map;
    o->keys = keys;
    o->suggested = 0;
    size_t nk = 0;
    while (keys[nk] != NULL)
        nk++;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const mf_node *k = map->kids[i];
        if (k->kind != MF_SCALAR || k->bad)
            continue;
        bool known = false;
        for (size_t j = 0; j < nk; j++)
            if (strcmp(k->value, keys[j]) == 0)
                known = true;
        /* "<<" is YAML's merge key; its alias is already reported */
        if (known || cut_type_tail(map, k->value) || strcmp(k->value, "<<") == 0)
            continue;
        const char *s = mf_nearest(k->value, keys, nk);
        char *h = mf_hint(s);
        if (h == NULL) {
            c->oom = true;
            return;
        }
        mf_diag(c, k->pos, "unknown key '%s' in %s%s", k->value, where, h);
        free(h);
        for (size_t j = 0; s != NULL && j < nk && j < 64; j++)
            if (keys[j] == s)
                o->suggested |= (uint64_t)1 << j;
    }
}

/* The value for key (first occurrence; duplicates are reported elsewhere), or NULL. */
const mf_node *mf_obj_get(const mf_obj *o, const char *key)
{
    for (size_t i = 0; i + 1 < o->map->nkids; i += 2) {
        const mf_node *k = o->map->kids[i];
        if (k->kind == MF_SCALAR && strcmp(k->value, key) == 0)
            return o->map->kids[i + 1];
    }
    return NULL;
}

void mf_obj_missing(mf_obj *o, const char *key, const char *label)
{
    for (size_t j = 0; o->keys[j] != NULL && j < 64; j++)
        if (strcmp(o->keys[j], key) == 0 && (o->suggested & ((uint64_t)1 << j)))
            return; /* the unknown-key message already pointed here */
    mf_diag(o->c, o->map->pos, "%s is missing '%s'", label, key);
}

/* ---------- typed values ---------- */

void mf_type_error(mf_ctx *c, const mf_node *v, const char *what, const char *expected)
{
    char *d = mf_describe(v);
    if (d == NULL) {
        c->oom = true;
        return;
    }
    mf_diag(c, v->pos, "%s must be %s, got %s", what, expected, d);
    free(d);
}

bool mf_want_kind(mf_ctx *c, const mf_node *v, mf_kind kind, const char *what)
{
    if (v->bad)
        return false;
    if (v->kind == kind)
        return true;
    mf_type_error(c, v, what, kind == MF_MAP ? "a mapping" : kind == MF_SEQ ? "a list" : "a value");
    return false;
}

/* A non-null scalar as a string. */
bool mf_get_str(mf_ctx *c, const mf_node *v, const char *what, char **out)
{
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v) || v->value[0] == '\0') {
        if (v->kind == MF_SCALAR && !mf_is_null(v))
            mf_diag(c, v->pos, "%s must not be empty", what);
        else
            mf_type_error(c, v, what, "a string");
        return false;
    }
    free(*out);
    *out = mf_dup_or_oom(c, v->value);
    return *out != NULL;
}

void mf_range_error(mf_ctx *c, const mf_node *v, const char *what, int64_t lo, int64_t hi,
                        int64_t got)
{
    mf_diag(c, v->pos, "%s must be between %lld and %lld, got %lld", what, (long long)lo,
            (long long)hi, (long long)got);
}

bool mf_get_int(mf_ctx *c, const mf_node *v, const char *what, int lo, int hi, int *out)
{
    int64_t n = 0;
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v)) {
        mf_type_error(c, v, what, "an integer");
        return false;
    }
    int rc = mf_parse_int64(v->value, &n);
    if (rc == -1) {
        mf_type_error(c, v, what, "an integer");
        return false;
    }
    if (rc == -2 || n < lo || n > hi) {
        if (rc == -2)
            mf_diag(c, v->pos, "%s is far too large", what);
        else
            mf_range_error(c, v, what, lo, hi, n);
        return false;
    }
    *out = (int)n;
    return true;
}

bool mf_get_bool(mf_ctx *c, const mf_node *v, const char *what, bool *out)
{
    if (v->bad)
        return false;
    if (v->kind == MF_SCALAR) {
        const char *s = v->value;
        if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
            *out = false;
            return true;
        }
    }
    mf_type_error(c, v, what, "true or false");
    return false;
}

/* A duration ("200ms", "1s", "5m", "1h", "7d") or a bare integer in `bare_unit_ms`. */
bool mf_get_duration(mf_ctx *c, const mf_node *v, const char *what, int64_t bare_unit_ms,
                         int64_t lo_ms, int64_t hi_ms, int64_t *out_ms)
{
    int64_t ms = 0, n = 0;
    if (v->bad)
        return false;
    if (v->kind != MF_SCALAR || mf_is_null(v)) {
        mf_type_error(c, v, what, "a duration like 200ms, 1s, 5m, 1h or 7d");
        return false;
    }
    int rc = mf_parse_int64(v->value, &n);
    if (rc == 0) {
        if (n < 0 || (n > 0 && n > INT64_MAX / bare_unit_ms))
            rc = -2;
        else
            ms = n * bare_unit_ms;
    } else if (rc == -1) {
        rc = mf_parse_duration_ms(v->value, &ms);
        if (rc == -1) {
            mf_type_error(c, v, what, "a duration like 200ms, 1s, 5m, 1h or 7d");
            return false;
        }
    }
    if (rc == -2 || ms < lo_ms || ms > hi_ms) {
        mf_diag(c, v->pos, "%s '%s' is out of range (%lldms to %lldms)", what, v->value,
                (long long)lo_ms, (long long)hi_ms);
        return false;
    }
    *out_ms = ms;
    return true;
}

bool mf_get_enum(mf_ctx *c, const mf_node *v, const char *what, const char *const *allowed,
                     char **out)
{
    char *s = NULL;
    if (!mf_get_str(c, v, what, &s))
        return false;
    size_t n = 0;
    for (; allowed[n] != NULL; n++) {
        if (strcmp(s, allowed[n]) == 0) {
            free(*out);
            *out = s;
            return true;
        }
    }
    pc_buf list = {0};
    for (size_t i = 0; i < n; i++)
        pc_buf_printf(&list, "%s%s", i ? (i + 1 == n ? " or " : ", ") : "", allowed[i]);
    char *h = mf_hint(mf_nearest(s, allowed, n));
    mf_diag(c, v->pos, "%s must be %s, got '%s'%s", what, list.data ? list.data : "?", s,
            h ? h : "");
    free(h);
    pc_buf_free(&list);
    free(s);
    return false;
}

/* Rejects a scalar that is not a safe SQL identifier. */
bool mf_check_sql_name(mf_ctx *c, const mf_node *v, const char *what, const char *name)
{
    if (mf_sql_ident_ok(name))
        return true;
    mf_diag(c, v->pos,
            "%s '%s' is not a safe SQL name: use lower-case letters, digits and '_', starting "
            "with a letter or '_', at most 63 characters",
            what, name);
    return false;
}

bool mf_check_pipeline_name(mf_ctx *c, const mf_node *v, const char *name)
{
    const char *why = mf_pipeline_name_problem(name);
    if (why == NULL)
        return true;
    mf_diag(c, v->pos,
            "metadata.name '%s' is not a valid pipeline name: it %s; use a DNS-1123 label "
            "(lower-case letters, digits and '-', starting and ending with a letter or digit, as "
            "Kubernetes names) or lower-case letters, digits and '_' starting with a letter or "
            "'_', at most 63 characters",
            name, why);
    return false;
}

bool mf_check_kafka_name(mf_ctx *c, const mf_node *v, const char *what, const char *name)
{
    const char *why = mf_kafka_name_problem(name);
    if (why == NULL)
        return true;
    mf_diag(c, v->pos, "%s '%s' is not a valid Kafka name: it %s", what, name, why);
    return false;
}

/* ---------- duplicate names ---------- */


static int named_cmp(const void *a, const void *b)
{
    const mf_named *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r != 0)
        return r;
    return x->ix < y->ix ? -1 : (x->ix > y->ix);
}

/* Reports every name that repeats an earlier one; entries with a NULL name are skipped. */
void mf_check_dups(mf_ctx *c, mf_named *v, size_t n, const char *what)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].name != NULL)
            v[m++] = v[i];
    qsort(v, m, sizeof *v, named_cmp);
    for (size_t i = 1; i < m; i++) {
        size_t first = i - 1;
        while (i < m && strcmp(v[i].name, v[first].name) == 0) {
            mf_diag(c, v[i].pos, "duplicate %s '%s' (first declared at line %d, column %d)", what,
                    v[i].name, v[first].pos.line, v[first].pos.col);
            i++;
        }
    }
}

/* Position of the 'name' value inside an item mapping (for duplicate reports). */
pc_pos mf_name_pos(const mf_node *item, pc_pos fallback)
{
    if (item == NULL || item->kind != MF_MAP)
        return fallback;
    for (size_t i = 0; i + 1 < item->nkids; i += 2)
        if (item->kids[i]->kind == MF_SCALAR && strcmp(item->kids[i]->value, "name") == 0)
            return item->kids[i + 1]->pos;
    return fallback;
}

/* ---------- paths ---------- */

/* Lexically normalised absolute path: dir + "/" + p unless p is absolute. */
char *mf_resolve_path(const char *dir, const char *p)
{
    char *joined = p[0] == '/' ? pc_strdup(p) : pc_asprintf("%s/%s", dir, p);
    if (joined == NULL)
        return NULL;
    size_t n = strlen(joined);
    char **parts = calloc(n + 1, sizeof *parts);
    if (parts == NULL) {
        free(joined);
        return NULL;
    }
    size_t np = 0;
    char *save = NULL;
    for (char *t = strtok_r(joined, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0)
            continue;
        if (strcmp(t, "..") == 0) {
            if (np > 0)
                np--;
            continue;
        }
        parts[np++] = t;
    }
    pc_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < np && rc == 0; i++)
        rc = pc_buf_printf(&b, "/%s", parts[i]);
    if (rc == 0 && np == 0)
        rc = pc_buf_puts(&b, "/");
    free(parts);
    free(joined);
    if (rc != 0) {
        pc_buf_free(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

/* "what 'name'" or "what #N" for diagnostics about a list item. */
char *mf_label(const char *what, const char *name, size_t index)
{
    return name ? pc_asprintf("%s '%s'", what, name) : pc_asprintf("%s #%zu", what, index + 1);
}
