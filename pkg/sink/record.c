/* record.c: one Kafka record -> one COPY line, in a single pass of yajl's event parser.
 *
 * The columns' paths are compiled once (pc_sink_map_new) into a tree of path segments. While
 * yajl walks a record, each open container remembers the path node it stands for (or none);
 * a member name or an array position selects the child node, and a value whose node ends some
 * column's path is kept: scalars as they come (strings copied, yajl's buffer is reused),
 * objects and arrays as their byte range of the record, compacted (whitespace outside strings
 * dropped). Everything else is only validated by the parser. The kept values then go through
 * the typed converters (convert.c) column by column into the line. With jansson a randomuser
 * record cost ~20 us to load as a tree; this pass builds none and allocates nothing per record
 * once warm (yajl's own allocations come from a bump arena rewound per record).
 *
 * Semantics follow pc_sink_json_get on a jansson tree, so both parsers load the same rows: a
 * numeric segment indexes an array (and names a member of an object), a repeated member's last
 * value wins, integers beyond 64 bits and reals beyond a double make the record invalid JSON. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "sink_int.h"

#define MAP_DEPTH 64      /* containers tracked; deeper paths never match */
#define SEG_MAX 255       /* as pc_sink_json_get: longer path segments never match */
#define ARENA_BLOCK 16384 /* yajl's allocations for one record fit in it */

typedef struct node {
    const char *seg; /* the path segment naming this node under its parent */
    size_t len;
    bool is_idx; /* seg is an array index too */
    long idx;
    int child, sibling; /* first child, next sibling: node numbers, -1 for none */
    bool mapped;        /* some column's path ends here: keep its value */
    /* this record's value (valid when gen is the map's) */
    unsigned gen;
    unsigned seen; /* gen of the last time a member selected this node */
    pc_sink_kind kind;
    bool b;
    long long i;
    double d;
    size_t off, n; /* the value's text in m->keep */
    size_t start;  /* a container's first byte in the record */
} node;

/* Bump arena behind yajl's allocator: a record's parse allocates a few KB; all of it is dropped
 * at once when the next record starts. Allocations that do not fit fall back to malloc. */
typedef struct arena {
    char *block;
    size_t used;
} arena;

typedef struct hdr {
    size_t size;
    size_t heap; /* 1: from malloc */
} hdr;

struct pc_sink_map {
    const pc_sink_col *cols;
    size_t ncols;
    node *nodes;
    size_t nnodes, capnodes;
    int *colnode; /* each column's node, -1: its path can never match */
    bool *safe;   /* each column's text needs no COPY escaping (pc_sink_type_copy_safe) */
    unsigned gen;
    /* per record */
    const char *rec;
    yajl_handle h;
    int depth;          /* containers open */
    int stk[MAP_DEPTH]; /* each open container's node, -1 for none */
    bool isarr[MAP_DEPTH];
    long aidx[MAP_DEPTH]; /* an open array's current element */
    int pending;          /* node the member name just read selects, -1 for none */
    bool root_seen, root_object;
    int err;         /* PC_ENOMEM from a callback */
    const char *bad; /* why the JSON is refused beyond yajl's own checks */
    pc_buf keep;     /* kept values' text */
    pc_buf val;      /* one column's converted text */
    bool binary;     /* write COPY binary tuples */
    arena ar;
    yajl_alloc_funcs af;
};

/* --- the arena -------------------------------------------------------------------------------- */

static void *ar_malloc(void *ctx, size_t sz)
{
    arena *a = ctx;
    size_t need = sizeof(hdr) + ((sz + 15) & ~(size_t)15);
    hdr *h;
    if (a->block && a->used + need <= ARENA_BLOCK) {
        h = (hdr *)(a->block + a->used);
        a->used += need;
        h->heap = 0;
    } else {
        h = malloc(sizeof(hdr) + sz);
        if (!h)
            return NULL;
        h->heap = 1;
    }
    h->size = sz;
    return h + 1;
}

static void ar_free(void *ctx, void *p)
{
    (void)ctx;
    if (p && ((hdr *)p - 1)->heap)
        free((hdr *)p - 1);
}

static void *ar_realloc(void *ctx, void *p, size_t sz)
{
    if (!p)
        return ar_malloc(ctx, sz);
    hdr *h = (hdr *)p - 1;
    if (sz <= h->size)
        return p;
    void *q = ar_malloc(ctx, sz);
    if (!q)
        return NULL;
    memcpy(q, p, h->size);
    ar_free(ctx, p);
    return q;
}

/* --- compiling the paths ---------------------------------------------------------------------- */

static int node_add(pc_sink_map *m, int parent, const char *seg, size_t len)
{
    for (int k = parent >= 0 ? m->nodes[parent].child : -1; k >= 0; k = m->nodes[k].sibling)
        if (m->nodes[k].len == len && !memcmp(m->nodes[k].seg, seg, len))
            return k;
    if (m->nnodes == m->capnodes) {
        size_t cap = m->capnodes ? m->capnodes * 2 : 32;
        node *nn = realloc(m->nodes, cap * sizeof *nn);
        if (!nn)
            return -1;
        m->nodes = nn;
        m->capnodes = cap;
    }
    int k = (int)m->nnodes++;
    node *nd = &m->nodes[k];
    *nd = (node){.seg = seg, .len = len, .child = -1, .sibling = -1};
    if (len > 0 && len <= SEG_MAX) { /* an array index as pc_sink_json_get reads it (strtol) */
        char tmp[SEG_MAX + 1], *end = NULL;
        memcpy(tmp, seg, len);
        tmp[len] = '\0';
        errno = 0;
        long idx = strtol(tmp, &end, 10);
        nd->is_idx = !errno && !*end && idx >= 0;
        nd->idx = idx;
    }
    if (parent >= 0) { /* appended, so that siblings keep the columns' order */
        int *link = &m->nodes[parent].child;
        while (*link >= 0)
            link = &m->nodes[*link].sibling;
        *link = k;
    }
    return k;
}

/* The node a column's path ends at; -1 when no record can have a value there (an empty or too
 * long segment, or too deep). -2: out of memory. Walks the path as pc_sink_json_get does. */
static int compile_path(pc_sink_map *m, const char *path)
{
    int cur = 0; /* the root */
    int depth = 0;
    if (!path)
        return -1;
    for (const char *p = path; *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n > SEG_MAX || ++depth >= MAP_DEPTH)
            return -1;
        cur = node_add(m, cur, p, n);
        if (cur < 0)
            return -2;
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

int pc_sink_map_new(pc_sink_map **out, const pc_sink_col *cols, size_t ncols)
{
    *out = NULL;
    pc_sink_map *m = calloc(1, sizeof *m);
    if (!m || !(m->colnode = calloc(ncols ? ncols : 1, sizeof *m->colnode)) ||
        !(m->safe = calloc(ncols ? ncols : 1, sizeof *m->safe)) ||
        !(m->ar.block = malloc(ARENA_BLOCK)) || node_add(m, -1, "", 0) != 0)
        goto nomem;
    m->cols = cols;
    m->ncols = ncols;
    for (size_t i = 0; i < ncols; i++) {
        int k = compile_path(m, cols[i].path);
        if (k == -2)
            goto nomem;
        m->colnode[i] = k;
        m->safe[i] = pc_sink_type_copy_safe(cols[i].type);
        if (k >= 0)
            m->nodes[k].mapped = true;
    }
    m->af = (yajl_alloc_funcs){ar_malloc, ar_realloc, ar_free, &m->ar};
    *out = m;
    return 0;
nomem:
    pc_sink_map_free(m);
    return PC_ENOMEM;
}

void pc_sink_map_free(pc_sink_map *m)
{
    if (!m)
        return;
    free(m->nodes);
    free(m->colnode);
    free(m->safe);
    free(m->ar.block);
    pc_buf_free(&m->keep);
    pc_buf_free(&m->val);
    free(m);
}

/* --- the event pass --------------------------------------------------------------------------- */

/* A repeated member replaces the earlier value and everything below it. */
static void forget(pc_sink_map *m, int k)
{
    m->nodes[k].gen = 0;
    m->nodes[k].seen = 0;
    for (int c = m->nodes[k].child; c >= 0; c = m->nodes[c].sibling)
        forget(m, c);
}

/* The node the value starting now stands for (-1: none), the array position advanced. */
static int value_node(pc_sink_map *m)
{
    if (m->depth == 0) {
        m->root_seen = true;
        return 0;
    }
    if (m->depth > MAP_DEPTH)
        return -1;
    int top = m->stk[m->depth - 1];
    if (!m->isarr[m->depth - 1]) {
        int k = m->pending;
        m->pending = -1;
        return k;
    }
    long i = ++m->aidx[m->depth - 1];
    if (top < 0)
        return -1;
    for (int k = m->nodes[top].child; k >= 0; k = m->nodes[k].sibling)
        if (m->nodes[k].is_idx && m->nodes[k].idx == i)
            return k;
    return -1;
}

static int keep_text(pc_sink_map *m, node *nd, const char *s, size_t n)
{
    nd->off = m->keep.len;
    nd->n = n;
    if (pc_buf_append(&m->keep, s, n)) {
        m->err = PC_ENOMEM;
        return 0;
    }
    return 1;
}

static int on_null(void *ctx)
{
    pc_sink_map *m = ctx;
    int k = value_node(m);
    if (k >= 0 && m->nodes[k].mapped) {
        m->nodes[k].gen = m->gen;
        m->nodes[k].kind = PC_SINK_V_NULL;
    }
    return 1;
}

static int on_boolean(void *ctx, int b)
{
    pc_sink_map *m = ctx;
    int k = value_node(m);
    if (k >= 0 && m->nodes[k].mapped) {
        m->nodes[k].gen = m->gen;
        m->nodes[k].kind = PC_SINK_V_BOOL;
        m->nodes[k].b = b != 0;
    }
    return 1;
}

/* Numbers come as their text. jansson refused an integer beyond long long and a real beyond a
 * double for the whole record; so do we (checked only where it can happen: cheap). Kept
 * integers carry their canonical text ("-0" is 0), reals the text as written. */
static int on_number(void *ctx, const char *s, size_t n)
{
    pc_sink_map *m = ctx;
    bool real = memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n);
    int k = value_node(m);
    bool keep = k >= 0 && m->nodes[k].mapped;
    char tmp[400];
    if (!real && (keep || n >= 19)) {
        if (n >= sizeof tmp) {
            m->bad = "too big integer";
            return 0;
        }
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        long long x = strtoll(tmp, NULL, 10);
        if (errno == ERANGE) {
            m->bad = "too big integer";
            return 0;
        }
        if (keep) {
            node *nd = &m->nodes[k];
            nd->gen = m->gen;
            nd->kind = PC_SINK_V_INT;
            nd->i = x;
            int len = snprintf(tmp, sizeof tmp, "%lld", x);
            return keep_text(m, nd, tmp, (size_t)len);
        }
        return 1;
    }
    if (real && (keep || n > 300 || memchr(s, 'e', n) || memchr(s, 'E', n))) {
        char *t = n < sizeof tmp ? tmp : malloc(n + 1);
        if (!t) {
            m->err = PC_ENOMEM;
            return 0;
        }
        memcpy(t, s, n);
        t[n] = '\0';
        errno = 0;
        double d = strtod(t, NULL);
        bool over = errno == ERANGE && isinf(d);
        if (t != tmp)
            free(t);
        if (over) {
            m->bad = "real number overflow";
            return 0;
        }
        if (keep) {
            node *nd = &m->nodes[k];
            nd->gen = m->gen;
            nd->kind = PC_SINK_V_REAL;
            nd->d = d;
            return keep_text(m, nd, s, n);
        }
    }
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    pc_sink_map *m = ctx;
    int k = value_node(m);
    if (k >= 0 && m->nodes[k].mapped) {
        node *nd = &m->nodes[k];
        nd->gen = m->gen;
        nd->kind = PC_SINK_V_STRING;
        return keep_text(m, nd, (const char *)s, n);
    }
    return 1;
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
    pc_sink_map *m = ctx;
    m->pending = -1;
    int top = m->depth <= MAP_DEPTH ? m->stk[m->depth - 1] : -1;
    if (top < 0)
        return 1;
    for (int k = m->nodes[top].child; k >= 0; k = m->nodes[k].sibling) {
        node *nd = &m->nodes[k];
        if (nd->len == n && nd->seg[0] == (char)s[0] && !memcmp(nd->seg, s, n)) {
            if (nd->seen == m->gen)
                forget(m, k); /* a repeated member: the last one wins */
            nd->seen = m->gen;
            m->pending = k;
            break;
        }
    }
    return 1;
}

static int open_container(pc_sink_map *m, bool arr)
{
    int k = value_node(m);
    if (m->depth == 0)
        m->root_object = !arr;
    if (m->depth < MAP_DEPTH) {
        m->stk[m->depth] = k;
        m->isarr[m->depth] = arr;
        m->aidx[m->depth] = -1;
        if (k >= 0 && m->nodes[k].mapped) /* the '{' or '[' just read */
            m->nodes[k].start = yajl_get_bytes_consumed(m->h) - 1;
    }
    m->depth++;
    return 1;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, false);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, true);
}

/* A kept object or array: its bytes in the record without the whitespace between tokens (the
 * parser has checked them: strings hold no raw control characters). */
static int close_container(void *ctx)
{
    pc_sink_map *m = ctx;
    m->depth--;
    int k = m->depth < MAP_DEPTH ? m->stk[m->depth] : -1;
    if (k < 0 || !m->nodes[k].mapped)
        return 1;
    node *nd = &m->nodes[k];
    const char *s = m->rec + nd->start;
    size_t n = yajl_get_bytes_consumed(m->h) - nd->start;
    nd->gen = m->gen;
    nd->kind = PC_SINK_V_JSON;
    nd->off = m->keep.len;
    size_t from = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in = false;
        } else if (c == '"') {
            in = true;
        } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            if (pc_buf_append(&m->keep, s + from, i - from))
                goto nomem;
            from = i + 1;
        }
    }
    if (pc_buf_append(&m->keep, s + from, n - from))
        goto nomem;
    nd->n = m->keep.len - nd->off;
    return 1;
nomem:
    m->err = PC_ENOMEM;
    return 0;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = close_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = close_container,
};

/* Parses the record; 0 with m's nodes holding the mapped values, PC_EINVAL with *reason, or
 * PC_ENOMEM. */
static int parse(pc_sink_map *m, const char *payload, size_t len, char **reason)
{
    if (++m->gen == 0) { /* wrapped: every stamp is stale again */
        for (size_t k = 0; k < m->nnodes; k++)
            m->nodes[k].gen = m->nodes[k].seen = 0;
        m->gen = 1;
    }
    m->rec = payload;
    m->depth = 0;
    m->pending = -1;
    m->root_seen = m->root_object = false;
    m->err = 0;
    m->bad = NULL;
    m->keep.len = 0;
    m->ar.used = 0;
    m->h = yajl_alloc(&callbacks, &m->af, m);
    if (!m->h)
        return PC_ENOMEM;
    yajl_status st = yajl_parse(m->h, (const unsigned char *)payload, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(m->h);
    int rc = 0;
    if (m->err) {
        rc = m->err;
    } else if (st != yajl_status_ok || !m->root_seen) {
        size_t at = yajl_get_bytes_consumed(m->h);
        char *e = NULL;
        if (!m->bad && st != yajl_status_ok)
            e = (char *)yajl_get_error(m->h, 0, NULL, 0);
        const char *why = m->bad ? m->bad : e ? e : "no value";
        *reason = pc_asprintf("value is not valid JSON: %.*s at byte %zu", (int)strcspn(why, "\n"),
                              why, at);
        if (e)
            yajl_free_error(m->h, (unsigned char *)e);
        rc = *reason ? PC_EINVAL : PC_ENOMEM;
    } else if (!m->root_object) {
        *reason = pc_strdup("value is not a JSON object");
        rc = *reason ? PC_EINVAL : PC_ENOMEM;
    }
    yajl_free(m->h);
    m->h = NULL;
    return rc;
}

void pc_sink_map_set_binary(pc_sink_map *m, bool binary)
{
    m->binary = binary;
}

/* Column i's value in the record just parsed, filled into *v; NULL when its path was not in
 * the record (which the converters tell apart from a JSON null). */
static const pc_sink_val *col_value(const pc_sink_map *m, size_t i, pc_sink_val *v)
{
    int k = m->colnode[i];
    const node *nd = k >= 0 && m->nodes[k].gen == m->gen ? &m->nodes[k] : NULL;
    if (nd == NULL)
        return NULL;
    *v = (pc_sink_val){.kind = nd->kind,
                       .b = nd->b,
                       .i = nd->i,
                       .d = nd->d,
                       .s = m->keep.data + nd->off,
                       .n = nd->n};
    return v;
}

/* The record's binary tuple: field count, then each column's field (see pc_sink_bin_field). */
static int map_tuple(pc_sink_map *m, long long seq, pc_buf *line, char **reason)
{
    size_t nf = m->ncols + (seq >= 0);
    if (pc_sink_put_be(line, nf, 2))
        return PC_ENOMEM;
    for (size_t i = 0; i < m->ncols; i++) {
        pc_sink_val vbuf;
        const pc_sink_val *v = col_value(m, i, &vbuf);
        bool is_null = false;
        const pc_sink_col *col = &m->cols[i];
        if (col->type == PC_SINK_T_TEXT || col->type == PC_SINK_T_JSON) {
            /* the text is the field: converted straight into the tuple, its length after */
            size_t at = line->len;
            bool jsonb = col->type == PC_SINK_T_JSON && col->type_name &&
                         !strncmp(col->type_name, "jsonb", 5);
            if (pc_sink_put_be(line, 0, 4) || (jsonb && pc_buf_append(line, "\1", 1)))
                return PC_ENOMEM;
            int rc = pc_sink_convert_append(v, col, line, &is_null, reason);
            if (rc)
                return rc;
            uint32_t flen = is_null ? 0xFFFFFFFFu : (uint32_t)(line->len - at - 4);
            if (is_null)
                line->len = at + 4;
            for (int b = 0; b < 4; b++) /* in place: appending would move the terminator */
                line->data[at + (size_t)b] = (char)(unsigned char)(flen >> (8 * (3 - b)));
            continue;
        }
        int rc = pc_sink_convert_val(v, col, &m->val, &is_null, reason);
        if (rc == 0 && is_null)
            rc = pc_sink_put_be(line, 0xFFFFFFFFu, 4) ? PC_ENOMEM : 0;
        else if (rc == 0)
            rc = pc_sink_bin_field(&m->cols[i], m->val.data ? m->val.data : "", m->val.len, line,
                                   reason);
        if (rc == PC_EINVAL && !*reason &&
            !(*reason = pc_asprintf("column %s (path %s): value too large for COPY",
                                    m->cols[i].name, m->cols[i].path)))
            rc = PC_ENOMEM;
        if (rc)
            return rc;
    }
    if (seq >= 0 &&
        (pc_sink_put_be(line, 8, 4) || pc_sink_put_be(line, (unsigned long long)seq, 8)))
        return PC_ENOMEM;
    return 0;
}

int pc_sink_map_line(pc_sink_map *m, const void *payload, size_t len, long long seq, pc_buf *line,
                     char **reason)
{
    size_t start = line->len;
    int rc = 0;
    *reason = NULL;
    if (!payload) {
        *reason = pc_strdup("record has no value (tombstone)");
        return *reason ? 0 : PC_ENOMEM;
    }
    rc = parse(m, payload, len, reason);
    if (rc == PC_EINVAL)
        return 0;
    if (rc)
        return rc;
    if (m->binary) {
        rc = map_tuple(m, seq, line, reason);
        if (rc == PC_EINVAL)
            rc = 0;
        goto done;
    }
    for (size_t i = 0; i < m->ncols; i++) {
        pc_sink_val vbuf;
        const pc_sink_val *v = col_value(m, i, &vbuf);
        bool is_null = false;
        if (i && pc_buf_append(line, "\t", 1))
            goto nomem;
        if (m->safe[i]) { /* straight into the line */
            rc = pc_sink_convert_append(v, &m->cols[i], line, &is_null, reason);
        } else {
            rc = pc_sink_convert_val(v, &m->cols[i], &m->val, &is_null, reason);
            if (rc == 0 && !is_null &&
                pc_sink_copy_escape(line, m->val.data ? m->val.data : "", m->val.len))
                goto nomem;
        }
        if (rc == PC_EINVAL) {
            rc = 0;
            goto done;
        }
        if (rc)
            goto done;
        if (is_null && pc_buf_append(line, "\\N", 2))
            goto nomem;
    }
    if (seq >= 0 && pc_buf_printf(line, "\t%lld", seq))
        goto nomem;
    if (pc_buf_append(line, "\n", 1))
        goto nomem;
    goto done;
nomem:
    rc = PC_ENOMEM;
done:
    if (rc || *reason)
        line->len = start;
    if (line->data)
        line->data[line->len] = '\0';
    return rc;
}

int pc_sink_record_line(const void *payload, size_t len, const pc_sink_col *cols, size_t ncols,
                        long long seq, pc_buf *line, pc_buf *val, char **reason)
{
    (void)val;
    pc_sink_map *m = NULL;
    *reason = NULL;
    if (pc_sink_map_new(&m, cols, ncols))
        return PC_ENOMEM;
    int rc = pc_sink_map_line(m, payload, len, seq, line, reason);
    pc_sink_map_free(m);
    return rc;
}
