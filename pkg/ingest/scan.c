/* scan.c: finds the users of a randomuser response without building a tree. yajl's event parser
 * walks the body once; each element of the root's "results" array is kept as a byte range of the
 * body (its record value, exactly the text the server sent) plus the key found at the key path
 * on the way. A 5,000-user page is 5.4 MB of text; as a jansson tree it was 45 MB, which was
 * most of the worker's peak RSS. Only this file includes yajl. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ingest_int.h"

#define PATH_PARTS 16
#define PART_MAX 127 /* longer path parts never match */

enum { KEY_NONE = 0, KEY_OK = 1, KEY_BAD = -1 };

typedef struct scan {
    pc_ingest_page *page;
    const char *body;
    yajl_handle h;
    bool key_mode; /* pc_ingest_key_at: the root value is the one element */
    /* the key path, split at dots; path_ok false when a part is empty or too long */
    const char *part[PATH_PARTS];
    size_t part_len[PATH_PARTS];
    int nparts;
    bool path_ok;
    int level;         /* containers open */
    bool root_results; /* the root object's current member is "results" */
    bool have_results; /* the last "results" member is an array */
    int elem_parent;   /* level whose values are elements (the results array); -1: none */
    /* the element being scanned */
    bool elem_open;
    bool elem_is_map;
    int elem_level; /* level of the element's own container */
    size_t elem_off;
    size_t prev_end; /* where the previous element (or the array's '[') ended */
    int onp;         /* deepest open container on the key path */
    bool keyhit;     /* the current member's name is the path's next part */
    int key_state;
    char key[PC_INGEST_KEY_MAX + 1];
    size_t key_len;
    int err;
} scan;

static size_t consumed(const scan *s)
{
    return yajl_get_bytes_consumed(s->h);
}

static int push_rec(scan *s, size_t off, size_t end, bool ok)
{
    pc_ingest_page *p = s->page;
    if (end < off) /* a scalar at the very end of the text: its end is not known here */
        end = off;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        pc_ingest_rec *r = realloc(p->recs, cap * sizeof *r);
        if (!r)
            return PC_ENOMEM;
        p->recs = r;
        p->cap = cap;
    }
    pc_ingest_rec *r = &p->recs[p->n];
    *r = (pc_ingest_rec){.off = off, .len = end - off, .key_off = p->keys.len, .ok = ok};
    if (ok) {
        if (pc_buf_append(&p->keys, s->key, s->key_len + 1) < 0)
            return PC_ENOMEM;
        r->key_len = s->key_len;
    }
    p->n++;
    s->prev_end = end;
    return 0;
}

/* a scalar element starts after the previous one's end, the comma and any whitespace */
static size_t scalar_start(const scan *s)
{
    size_t i = s->prev_end;
    while (s->body[i] == ' ' || s->body[i] == '\t' || s->body[i] == '\n' || s->body[i] == '\r' ||
           s->body[i] == ',')
        i++;
    return i;
}

static void set_key_string(scan *s, const unsigned char *v, size_t n)
{
    if (n == 0 || n > PC_INGEST_KEY_MAX || memchr(v, '\0', n) != NULL) {
        s->key_state = KEY_BAD;
        return;
    }
    memcpy(s->key, v, n);
    s->key[n] = '\0';
    s->key_len = n;
    s->key_state = KEY_OK;
}

/* an integer key is printed in decimal ("-0" -> "0"); a real number or one beyond 64 bits is
 * not a key */
static void set_key_number(scan *s, const char *v, size_t n)
{
    char tmp[32];
    s->key_state = KEY_BAD;
    if (n >= sizeof tmp || memchr(v, '.', n) || memchr(v, 'e', n) || memchr(v, 'E', n))
        return;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    errno = 0;
    long long x = strtoll(tmp, NULL, 10);
    if (errno == ERANGE)
        return;
    int len = snprintf(s->key, sizeof s->key, "%lld", x);
    if (len <= 0 || (size_t)len > PC_INGEST_KEY_MAX)
        return;
    s->key_len = (size_t)len;
    s->key_state = KEY_OK;
}

/* A value begins at s->level (a scalar, or a container about to open). Returns 0 or an error. */
static int value_begin(scan *s, bool container, bool is_map)
{
    bool hit = s->keyhit;
    s->keyhit = false;
    if (!s->key_mode && s->level == 1 && s->root_results) {
        /* the root's "results": the last one counts */
        s->root_results = false;
        s->have_results = container && !is_map;
        s->page->n = 0;
        s->page->keys.len = 0;
        if (s->have_results) {
            s->elem_parent = 2;
            s->prev_end = consumed(s);
        }
        return 0;
    }
    if (s->level == s->elem_parent) {
        if (!container) /* a scalar element: never a user */
            return push_rec(s, scalar_start(s), consumed(s), false);
        s->elem_open = true;
        s->elem_is_map = is_map;
        s->elem_level = s->level + 1;
        s->elem_off = consumed(s) - 1; /* the '{' or '[' just read */
        s->key_state = KEY_NONE;
        s->onp = is_map ? s->elem_level : 0;
        return 0;
    }
    if (s->elem_open && hit) {
        /* a member on the key path; a repeated name replaces what the earlier one held */
        if (s->level - s->elem_level + 1 == s->nparts) {
            s->key_state = container ? KEY_BAD : s->key_state; /* scalars set it themselves */
        } else {
            s->key_state = KEY_NONE;
            if (is_map)
                s->onp = s->level + 1;
        }
    }
    return 0;
}

static int scalar(scan *s, const unsigned char *str, const char *num, size_t n)
{
    bool final = s->keyhit && s->level - s->elem_level + 1 == s->nparts;
    int rc = value_begin(s, false, false);
    if (rc == 0 && final && s->elem_open) {
        if (str)
            set_key_string(s, str, n);
        else if (num)
            set_key_number(s, num, n);
        else
            s->key_state = KEY_BAD; /* null, true, false */
    }
    s->err = rc;
    return rc == 0;
}

static int on_null(void *ctx)
{
    return scalar(ctx, NULL, NULL, 0);
}

static int on_boolean(void *ctx, int v)
{
    (void)v;
    return scalar(ctx, NULL, NULL, 0);
}

static int on_number(void *ctx, const char *v, size_t n)
{
    return scalar(ctx, NULL, v, n);
}

static int on_string(void *ctx, const unsigned char *v, size_t n)
{
    return scalar(ctx, v, NULL, n);
}

static int open_container(scan *s, bool is_map)
{
    s->err = value_begin(s, true, is_map);
    s->level++;
    return s->err == 0;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, true);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, false);
}

static int on_map_key(void *ctx, const unsigned char *k, size_t n)
{
    scan *s = ctx;
    s->keyhit = false;
    if (!s->key_mode && s->level == 1) {
        s->root_results = n == 7 && memcmp(k, "results", 7) == 0;
        return 1;
    }
    if (s->elem_open && s->path_ok && s->onp == s->level) {
        int i = s->level - s->elem_level;
        s->keyhit = i < s->nparts && s->part_len[i] == n && memcmp(s->part[i], k, n) == 0;
    }
    return 1;
}

static int close_container(void *ctx)
{
    scan *s = ctx;
    s->keyhit = false;
    if (s->elem_open && s->level == s->elem_level) {
        s->elem_open = false;
        s->err = push_rec(s, s->elem_off, consumed(s), s->elem_is_map && s->key_state == KEY_OK);
        if (s->err)
            return 0;
    }
    if (!s->key_mode && s->level == 2 && s->elem_parent == 2)
        s->elem_parent = -1; /* the results array closed */
    if (s->onp == s->level)
        s->onp = s->level - 1;
    s->level--;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = close_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = close_container,
};

static void split_path(scan *s, const char *path)
{
    s->path_ok = path != NULL && *path != '\0';
    for (const char *p = path; s->path_ok && p;) {
        size_t len = strcspn(p, ".");
        if (len == 0 || len > PART_MAX || s->nparts == PATH_PARTS) {
            s->path_ok = false;
            break;
        }
        s->part[s->nparts] = p;
        s->part_len[s->nparts++] = len;
        p = p[len] == '.' ? p + len + 1 : NULL;
    }
}

static int run(scan *s, const char *body, size_t len)
{
    pc_ingest_page *p = s->page;
    p->n = 0;
    p->keys.len = 0;
    p->why[0] = '\0';
    s->body = body;
    s->h = yajl_alloc(&callbacks, NULL, s);
    if (!s->h)
        return PC_ENOMEM;
    yajl_status st = yajl_parse(s->h, (const unsigned char *)body, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(s->h);
    int rc = 0;
    if (st != yajl_status_ok) {
        rc = s->err ? s->err : PC_EINVAL;
        unsigned char *e = s->err ? NULL : yajl_get_error(s->h, 0, NULL, 0);
        snprintf(p->why, sizeof p->why, "%s", e ? (const char *)e : "out of memory");
        p->why[strcspn(p->why, "\n")] = '\0';
        if (e)
            yajl_free_error(s->h, e);
    } else if (!s->key_mode && !s->have_results) {
        rc = PC_EINVAL;
        snprintf(p->why, sizeof p->why, "no results array");
    }
    if (rc != 0)
        p->n = 0;
    yajl_free(s->h);
    s->h = NULL;
    return rc;
}

int pc_ingest_scan(pc_ingest_page *page, const char *body, size_t len, const char *keypath)
{
    scan s = {.page = page, .elem_parent = -1};
    split_path(&s, keypath);
    return run(&s, body ? body : "", body ? len : 0);
}

void pc_ingest_page_dispose(pc_ingest_page *page)
{
    if (!page)
        return;
    free(page->recs);
    pc_buf_free(&page->keys);
    *page = (pc_ingest_page){0};
}

int pc_ingest_key_at(const char *user, size_t len, const char *path, char *out, size_t outsz)
{
    pc_ingest_page page = {0};
    scan s = {.page = &page, .key_mode = true, .elem_parent = 0};
    split_path(&s, path);
    int rc = run(&s, user ? user : "", user ? len : 0);
    if (rc == 0 && (page.n != 1 || !page.recs[0].ok || page.recs[0].key_len >= outsz))
        rc = -1;
    if (rc == 0)
        memcpy(out, page.keys.data + page.recs[0].key_off, page.recs[0].key_len + 1);
    pc_ingest_page_dispose(&page);
    return rc == 0 ? 0 : -1;
}
