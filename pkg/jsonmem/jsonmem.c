/* jsonmem.c: see jsonmem.h. */
#include "jsonmem.h"

#include <jansson.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK_MIN (64 * 1024)
#define BLOCK_MAX (16 * 1024 * 1024)
#define ALIGN alignof(max_align_t)

typedef struct block {
    struct block *next;
    size_t size; /* usable bytes after the header */
    size_t used;
} block;

struct pc_jsonmem {
    block *head; /* the block allocations come from; older blocks follow */
    size_t live; /* allocations not yet freed since begin */
};

#define HDR (((sizeof(block) + ALIGN - 1) / ALIGN) * ALIGN)

static _Thread_local pc_jsonmem *current;

static block *block_new(size_t size)
{
    block *b = malloc(HDR + size);
    if (b) {
        b->next = NULL;
        b->size = size;
        b->used = 0;
    }
    return b;
}

static int owns(const pc_jsonmem *a, const void *p)
{
    uintptr_t u = (uintptr_t)p;
    for (const block *b = a->head; b; b = b->next) {
        uintptr_t lo = (uintptr_t)b + HDR;
        if (u >= lo && u < lo + b->size)
            return 1;
    }
    return 0;
}

static void *jm_malloc(size_t n)
{
    pc_jsonmem *a = current;
    if (!a)
        return malloc(n);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = n ? (n + ALIGN - 1) / ALIGN * ALIGN : ALIGN;
    block *b = a->head;
    if (b->size - b->used < n) {
        /* blocks double (up to BLOCK_MAX) so that a big record makes few of them: jm_free
         * walks the chain */
        size_t size = b->size < BLOCK_MAX / 2 ? b->size * 2 : BLOCK_MAX;
        if (size < n)
            size = n;
        block *nb = block_new(size);
        if (!nb)
            return NULL;
        nb->next = b;
        a->head = b = nb;
    }
    void *p = (char *)b + HDR + b->used;
    b->used += n;
    a->live++;
    return p;
}

static void jm_free(void *p)
{
    pc_jsonmem *a = current;
    if (!p)
        return;
    if (a && owns(a, p)) {
        a->live--;
        return;
    }
    free(p);
}

static void install_once(void)
{
    json_set_alloc_funcs(jm_malloc, jm_free);
}

void pc_jsonmem_install(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    (void)pthread_once(&once, install_once);
}

pc_jsonmem *pc_jsonmem_new(void)
{
    pc_jsonmem *a = calloc(1, sizeof *a);
    if (a && !(a->head = block_new(BLOCK_MIN))) {
        free(a);
        a = NULL;
    }
    return a;
}

void pc_jsonmem_free(pc_jsonmem *a)
{
    if (!a)
        return;
    if (current == a)
        current = NULL;
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void pc_jsonmem_begin(pc_jsonmem *a)
{
    current = a;
}

size_t pc_jsonmem_end(pc_jsonmem *a)
{
    if (a == NULL) { /* begin(NULL): plain malloc all along */
        current = NULL;
        return 0;
    }
    size_t live = a->live;
    if (current == a)
        current = NULL;
    /* keep the first block (the oldest, at the end of the chain), give back the rest */
    while (a->head->next) {
        block *b = a->head;
        a->head = b->next;
        free(b);
    }
    a->head->used = 0;
    a->live = 0;
    return live;
}

size_t pc_jsonmem_held(const pc_jsonmem *a)
{
    size_t n = 0;
    for (const block *b = a->head; b; b = b->next)
        n += HDR + b->size;
    return n;
}
