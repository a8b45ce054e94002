/* index.c: pc_index, a sorted (name, element) array searched by bisection. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void pc_index_add(pc_index *ix, const char *name, const void *elem)
{
    if (name == NULL || ix->failed)
        return;
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 64;
        pc_index_entry *e = realloc(ix->e, cap * sizeof *e);
        if (e == NULL) {
            ix->failed = true;
            return;
        }
        ix->e = e;
        ix->cap = cap;
    }
    ix->e[ix->n++] = (pc_index_entry){.name = name, .elem = elem};
}

void pc_index_add_array(pc_index *ix, const void *base, size_t n, size_t size, size_t name_off)
{
    for (size_t i = 0; i < n; i++) {
        const char *elem = (const char *)base + i * size;
        const char *name;
        memcpy(&name, elem + name_off, sizeof name);
        pc_index_add(ix, name, elem);
    }
}

static int entry_cmp(const pc_index_entry *a, const pc_index_entry *b)
{
    return strcmp(a->name, b->name);
}

/* Bottom-up merge sort: stable, so the first element added under a name stays first (qsort
 * gives no such promise), O(n log n) with one scratch array. */
int pc_index_sort(pc_index *ix)
{
    if (ix->failed)
        return PC_ENOMEM;
    if (ix->n < 2)
        return 0;
    pc_index_entry *tmp = malloc(ix->n * sizeof *tmp);
    if (tmp == NULL)
        return PC_ENOMEM;
    pc_index_entry *src = ix->e, *dst = tmp;
    for (size_t w = 1; w < ix->n; w *= 2) {
        for (size_t lo = 0; lo < ix->n; lo += 2 * w) {
            size_t mid = lo + w < ix->n ? lo + w : ix->n;
            size_t hi = lo + 2 * w < ix->n ? lo + 2 * w : ix->n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = entry_cmp(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        pc_index_entry *t = src;
        src = dst;
        dst = t;
    }
    if (src != ix->e)
        memcpy(ix->e, src, ix->n * sizeof *src);
    free(tmp);
    return 0;
}

const void *pc_index_find(const pc_index *ix, const char *name)
{
    if (name == NULL || ix->failed)
        return NULL;
    size_t lo = 0, hi = ix->n; /* the first entry whose name is >= name */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->e[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ix->n && strcmp(ix->e[lo].name, name) == 0 ? ix->e[lo].elem : NULL;
}

void pc_index_free(pc_index *ix)
{
    free(ix->e);
    *ix = (pc_index){0};
}
