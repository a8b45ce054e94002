/* kvlist.c: ordered lists of owned key/value strings. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

int pc_kvlist_add(pc_kvlist *l, const char *key, const char *value)
{
    pc_kv *items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (items == NULL)
        return PC_ENOMEM;
    l->items = items;
    char *k = pc_strdup(key);
    char *v = pc_strdup(value);
    if (k == NULL || (value != NULL && v == NULL)) {
        free(k);
        free(v);
        return PC_ENOMEM;
    }
    l->items[l->n].key = k;
    l->items[l->n].value = v;
    l->n++;
    return 0;
}

int pc_kvlist_set(pc_kvlist *l, const char *key, const char *value)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, key) == 0) {
            char *v = pc_strdup(value);
            if (value != NULL && v == NULL)
                return PC_ENOMEM;
            free(l->items[i].value);
            l->items[i].value = v;
            return 0;
        }
    }
    return pc_kvlist_add(l, key, value);
}

const char *pc_kvlist_get(const pc_kvlist *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0)
            return l->items[i].value;
    return NULL;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const pc_kv *)a)->key, ((const pc_kv *)b)->key);
}

void pc_kvlist_sort(pc_kvlist *l)
{
    if (l->n > 1)
        qsort(l->items, l->n, sizeof *l->items, kv_cmp);
}

int pc_kvlist_copy(pc_kvlist *dst, const pc_kvlist *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (pc_kvlist_add(dst, src->items[i].key, src->items[i].value) != 0)
            return PC_ENOMEM;
    return 0;
}

void pc_kvlist_free(pc_kvlist *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}
