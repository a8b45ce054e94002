/* tree.c: libyaml events -> a small node tree with positions, plus the diagnostics collector and
 * ${VAR} expansion.
 *
 * We build our own tree from the event API rather than use yaml_document_t because we need to
 * refuse aliases at their position (the document loader would expand them: billion laughs), to
 * bound nesting depth while parsing, and to keep byte ranges for redaction. */
#include "manifest_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---------- diagnostics ---------- */

#define MF_MAX_DIAGS 200 /* beyond this, more messages only bury the first ones */

void mf_diag(mf_ctx *c, pc_pos pos, const char *fmt, ...)
{
    pc_buf b = {0};
    int rc;
    if (c->diags->n > MF_MAX_DIAGS)
        return;
    if (c->diags->n == MF_MAX_DIAGS) {
        rc = pc_buf_puts(&b, "too many errors; fix the ones above first");
    } else {
        va_list ap;
        va_start(ap, fmt);
        /* values from the manifest: control characters escaped, long ones cut */
        va_list aq;
        va_copy(aq, ap);
        rc = pc_buf_vprintf_safe(&b, MF_MAX_VALUE_SHOWN, fmt, ap);
        if (rc == PC_EINVAL) { /* a conversion it does not know: print as given */
            pc_buf_free(&b);
            rc = pc_buf_vprintf(&b, fmt, aq);
        }
        va_end(aq);
        va_end(ap);
    }
    pc_diag *items = NULL;
    if (rc == 0)
        items = realloc(c->diags->items, (c->diags->n + 1) * sizeof *items);
    if (items == NULL) {
        pc_buf_free(&b);
        c->oom = true;
        return;
    }
    c->diags->items = items;
    items[c->diags->n].pos = pos;
    items[c->diags->n].message = pc_buf_detach(&b);
    c->diags->n++;
}

typedef struct diag_ix {
    pc_diag d;
    size_t ix;
} diag_ix;

static int diag_cmp(const void *a, const void *b)
{
    const diag_ix *x = a, *y = b;
    if (x->d.pos.line != y->d.pos.line)
        return x->d.pos.line < y->d.pos.line ? -1 : 1;
    if (x->d.pos.col != y->d.pos.col)
        return x->d.pos.col < y->d.pos.col ? -1 : 1;
    return x->ix < y->ix ? -1 : (x->ix > y->ix);
}

/* Stable sort by position: errors at the same spot keep the order they were found in. */
void mf_diags_sort(pc_diags *d)
{
    if (d->n < 2)
        return;
    diag_ix *tmp = malloc(d->n * sizeof *tmp);
    if (tmp == NULL)
        return; /* unsorted is still correct output */
    for (size_t i = 0; i < d->n; i++) {
        tmp[i].d = d->items[i];
        tmp[i].ix = i;
    }
    qsort(tmp, d->n, sizeof *tmp, diag_cmp);
    for (size_t i = 0; i < d->n; i++)
        d->items[i] = tmp[i].d;
    free(tmp);
}

/* ---------- tree ---------- */

static pc_pos mark_pos(yaml_mark_t m)
{
    pc_pos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

void mf_node_free(mf_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        mf_node_free(n->kids[i]);
    free(n->kids);
    free(n->value);
    free(n);
}

static int node_add(mf_node *parent, mf_node *kid)
{
    if ((parent->nkids & (parent->nkids - 1)) == 0) { /* grow at powers of two */
        size_t cap = parent->nkids ? parent->nkids * 2 : 4;
        mf_node **k = realloc(parent->kids, cap * sizeof *k);
        if (k == NULL)
            return PC_ENOMEM;
        parent->kids = k;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static mf_node *node_new(mf_kind kind, yaml_mark_t start)
{
    mf_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->pos = mark_pos(start);
    n->start = start.index;
    n->end = start.index;
    return n;
}

int mf_tree_build(mf_ctx *c, const char *text, size_t len, mf_node **root)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    mf_node *stack[MF_MAX_DEPTH + 1];
    size_t depth = 0;
    int docs = 0;
    int rc = 0;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        c->oom = true;
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            size_t at = parser.problem_mark.index;
            if (parser.error == YAML_MEMORY_ERROR) {
                c->oom = true;
            } else if (at > 0 && at < len && text[at] == '{' && text[at - 1] == '$') {
                /* `{name: ${X}}`: in flow style '{' ends a plain scalar, so the reference
                 * breaks the mapping; quoting is the fix */
                pc_pos p = mark_pos(parser.problem_mark);
                p.col = p.col > 1 ? p.col - 1 : p.col;
                mf_diag(c, p,
                        "invalid YAML: a ${VAR} reference inside {...} or [...] must be "
                        "quoted, e.g. \"${NAME}\" (%s)",
                        parser.problem ? parser.problem : "syntax error");
            } else if (parser.context != NULL) {
                mf_diag(c, mark_pos(parser.problem_mark), "invalid YAML: %s (%s at line %d)",
                        parser.problem ? parser.problem : "syntax error", parser.context,
                        (int)parser.context_mark.line + 1);
            } else {
                mf_diag(c, mark_pos(parser.problem_mark), "invalid YAML: %s",
                        parser.problem ? parser.problem : "syntax error");
            }
            rc = -1;
            break;
        }
        mf_node *n = NULL;
        switch (ev.type) {
        case YAML_NO_EVENT:
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                mf_diag(c, mark_pos(ev.start_mark),
                        "a manifest holds one YAML document; remove this second one (or the "
                        "'---' line)");
                rc = -1;
                done = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            mf_diag(c, mark_pos(ev.start_mark),
                    "YAML aliases (*%s) are not supported in a manifest; write the value out",
                    (const char *)ev.data.alias.anchor);
            n = node_new(MF_SCALAR, ev.start_mark);
            if (n != NULL) {
                n->bad = true;
                n->value = pc_strdup("");
                n->end = ev.end_mark.index;
                if (n->value == NULL) {
                    mf_node_free(n);
                    n = NULL;
                }
            }
            if (n == NULL)
                c->oom = true;
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(MF_SCALAR, ev.start_mark);
            if (n == NULL) {
                c->oom = true;
                break;
            }
            n->end = ev.end_mark.index;
            n->quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                        (ev.data.scalar.tag != NULL &&
                         strcmp((const char *)ev.data.scalar.tag, YAML_STR_TAG) == 0);
            n->value = pc_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            if (n->value == NULL) {
                mf_node_free(n);
                n = NULL;
                c->oom = true;
                break;
            }
            if (strlen(n->value) != ev.data.scalar.length) {
                mf_diag(c, n->pos, "value contains a NUL character");
                n->bad = true;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            n = node_new(ev.type == YAML_MAPPING_START_EVENT ? MF_MAP : MF_SEQ, ev.start_mark);
            if (n == NULL)
                c->oom = true;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                stack[depth - 1]->end = ev.end_mark.index;
                depth--;
            }
            break;
        }
        if (n != NULL) {
            if (depth > 0) {
                if (node_add(stack[depth - 1], n) != 0) {
                    mf_node_free(n);
                    c->oom = true;
                    n = NULL;
                }
            } else if (*root == NULL) {
                *root = n;
            } else {
                mf_node_free(n); /* cannot happen with one document */
                n = NULL;
            }
            if (n != NULL && n->kind != MF_SCALAR) {
                if (depth >= MF_MAX_DEPTH) {
                    mf_diag(c, n->pos,
                            "nesting is deeper than %d levels; a manifest never needs "
                            "that much",
                            MF_MAX_DEPTH);
                    rc = -1;
                    done = true;
                } else {
                    stack[depth++] = n;
                }
            }
        }
        yaml_event_delete(&ev);
        if (c->oom) {
            rc = -1;
            break;
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* ---------- keys ---------- */

typedef struct key_ix {
    const mf_node *key;
    size_t ix;
} key_ix;

static int key_cmp(const void *a, const void *b)
{
    const key_ix *x = a, *y = b;
    int r = strcmp(x->key->value, y->key->value);
    if (r != 0)
        return r;
    return x->ix < y->ix ? -1 : (x->ix > y->ix);
}

void mf_tree_check_keys(mf_ctx *c, mf_node *n)
{
    if (n == NULL || n->kind == MF_SCALAR)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        mf_tree_check_keys(c, n->kids[i]);
    if (n->kind != MF_MAP)
        return;
    size_t nk = n->nkids / 2, m = 0;
    key_ix *keys = malloc((nk ? nk : 1) * sizeof *keys);
    if (keys == NULL) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < nk; i++) {
        mf_node *k = n->kids[2 * i];
        if (k->kind != MF_SCALAR) {
            mf_diag(c, k->pos, "mapping keys must be plain names, not a %s",
                    k->kind == MF_MAP ? "mapping" : "sequence");
            k->bad = true;
            continue;
        }
        keys[m].key = k;
        keys[m].ix = i;
        m++;
    }
    qsort(keys, m, sizeof *keys, key_cmp);
    for (size_t i = 1; i < m; i++) {
        size_t first = i - 1;
        while (i < m && strcmp(keys[i].key->value, keys[first].key->value) == 0) {
            mf_diag(c, keys[i].key->pos, "duplicate key '%s' (first at line %d, column %d)",
                    keys[i].key->value, keys[first].key->pos.line, keys[first].key->pos.col);
            i++;
        }
    }
    free(keys);
}

/* ---------- ${VAR} expansion ---------- */

static bool var_start(char ch)
{
    return isalpha((unsigned char)ch) || ch == '_';
}

static bool var_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

char *mf_expand(const char *s, pc_getenv_fn fn, void *ctx, char **errmsg)
{
    pc_buf out = {0};
    *errmsg = NULL;
    const char *p = s;
    while (*p) {
        const char *d = strchr(p, '$');
        if (d == NULL) {
            if (pc_buf_puts(&out, p) != 0)
                goto oom;
            break;
        }
        if (pc_buf_append(&out, p, (size_t)(d - p)) != 0)
            goto oom;
        if (d[1] == '$') { /* $$ -> $ */
            if (pc_buf_append(&out, "$", 1) != 0)
                goto oom;
            p = d + 2;
            continue;
        }
        if (d[1] != '{') { /* a lone $ is literal */
            if (pc_buf_append(&out, "$", 1) != 0)
                goto oom;
            p = d + 1;
            continue;
        }
        const char *close = strchr(d + 2, '}');
        if (close == NULL) {
            *errmsg = pc_asprintf("unterminated '${' reference; write ${NAME} or ${NAME:-default} "
                                  "(or $$ for a literal dollar)");
            goto fail;
        }
        const char *name = d + 2, *q = name;
        if (var_start(*q))
            while (var_char(*q))
                q++;
        bool has_default = q[0] == ':' && q[1] == '-';
        if (q == name || (q != close && !has_default)) {
            *errmsg = pc_asprintf("malformed reference '%.*s'; write ${NAME} or ${NAME:-default}",
                                  (int)(close + 1 - d), d);
            goto fail;
        }
        char *var = pc_strndup(name, (size_t)(q - name));
        if (var == NULL)
            goto oom;
        const char *val = fn(var, ctx);
        if (has_default && (val == NULL || *val == '\0')) {
            if (pc_buf_append(&out, q + 2, (size_t)(close - (q + 2))) != 0) {
                free(var);
                goto oom;
            }
        } else if (val == NULL) {
            *errmsg = pc_asprintf("${%s} is not set; export it or write ${%s:-default}", var, var);
            free(var);
            goto fail;
        } else if (pc_buf_puts(&out, val) != 0) {
            free(var);
            goto oom;
        }
        free(var);
        p = close + 1;
    }
    return pc_buf_detach(&out);
oom:
    pc_buf_free(&out);
    return NULL;
fail:
    pc_buf_free(&out);
    if (*errmsg == NULL)
        *errmsg = pc_strdup("out of memory");
    return NULL;
}

void mf_tree_expand(mf_ctx *c, mf_node *n)
{
    if (n == NULL || c->oom)
        return;
    switch (n->kind) {
    case MF_MAP:
        for (size_t i = 1; i < n->nkids; i += 2)
            mf_tree_expand(c, n->kids[i]);
        return;
    case MF_SEQ:
        for (size_t i = 0; i < n->nkids; i++)
            mf_tree_expand(c, n->kids[i]);
        return;
    case MF_SCALAR:
        break;
    }
    if (n->bad || strchr(n->value, '$') == NULL)
        return;
    char *msg = NULL;
    char *v = mf_expand(n->value, c->getenv_fn, c->env_ctx, &msg);
    if (v == NULL && msg == NULL) {
        c->oom = true;
        return;
    }
    if (v == NULL) {
        mf_diag(c, n->pos, "%s", msg);
        free(msg);
        n->bad = true;
        return;
    }
    n->expanded = strcmp(v, n->value) != 0;
    free(n->value);
    n->value = v;
}

/* ---------- describing values ---------- */

bool mf_is_null(const mf_node *n)
{
    if (n == NULL || n->kind != MF_SCALAR || n->quoted)
        return false;
    const char *v = n->value;
    return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static bool looks_bool(const char *v)
{
    static const char *const words[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(v, words[i]) == 0)
            return true;
    return false;
}

static bool looks_number(const char *v)
{
    char *end = NULL;
    if (*v == '\0' || isspace((unsigned char)*v))
        return false;
    (void)strtod(v, &end);
    return *end == '\0';
}

char *mf_describe(const mf_node *n)
{
    if (n->kind == MF_MAP)
        return pc_strdup("a mapping");
    if (n->kind == MF_SEQ)
        return pc_strdup("a sequence");
    if (mf_is_null(n))
        return pc_strdup("null");
    const char *v = n->value;
    int len = (int)strlen(v);
    const char *ell = "";
    if (len > 40) {
        len = 40;
        ell = "...";
    }
    if (!n->quoted && looks_bool(v))
        return pc_asprintf("boolean %s", v);
    if (!n->quoted && looks_number(v))
        return pc_asprintf("number %s", v);
    return pc_asprintf("string '%.*s%s'", len, v, ell);
}
