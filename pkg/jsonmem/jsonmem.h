/* jsonmem.h: a per-thread arena for jansson's allocations on hot paths.
 *
 * Parsing one record with json_loadb makes dozens of small allocations (every object, key,
 * string and number) and frees them all again at json_decref. A thread that parses records one
 * after another can instead let them come from an arena it owns: allocation is a pointer bump,
 * freeing is nothing, and the arena is rewound for the next record.
 *
 *     pc_jsonmem_install();                      // once, in main(), before any thread starts
 *     pc_jsonmem *a = pc_jsonmem_new();
 *     pc_jsonmem_begin(a);                       // this thread's jansson allocations -> a
 *     json_t *v = json_loadb(...); ... json_decref(v);
 *     pc_jsonmem_end(a);                         // rewinds a; plain malloc again
 *
 * Rule: every jansson value and every buffer jansson hands out (json_dumps) between begin and
 * end must be released before end, on the same thread; nothing allocated there may outlive it.
 * Outside begin/end, and in threads that never call begin, jansson allocates with malloc as
 * usual, and pointers from malloc are freed with free even inside begin/end. Without
 * pc_jsonmem_install the arena is simply never used (begin/end cost nothing and change
 * nothing), so correctness never depends on it. */
#ifndef PC_JSONMEM_H
#define PC_JSONMEM_H

#include <stddef.h>

typedef struct pc_jsonmem pc_jsonmem;

/* Points jansson's allocator at this module (json_set_alloc_funcs). Call before other threads
 * exist; calling it again does nothing. */
void pc_jsonmem_install(void);

pc_jsonmem *pc_jsonmem_new(void); /* NULL when out of memory */
void pc_jsonmem_free(pc_jsonmem *a);

/* a may be NULL (an arena that could not be made): jansson then uses malloc, and end(NULL)
 * returns 0. */
void pc_jsonmem_begin(pc_jsonmem *a);
/* Rewinds the arena (keeping its first block for the next record). Returns how many arena
 * allocations were not released since begin: 0 unless the caller broke the rule above. */
size_t pc_jsonmem_end(pc_jsonmem *a);

/* Bytes the arena holds now (its blocks), for tests and memory accounting. */
size_t pc_jsonmem_held(const pc_jsonmem *a);

#endif
