/* test_jsonmem.c: the per-thread arena for jansson (pkg/jsonmem): values parsed inside come from
 * the arena and are rewound at end; values from outside are freed normally even inside; a
 * record larger than a block grows the arena for its duration only; threads do not share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>

#include "jsonmem.h"

static const char RECORD[] = "{\"name\": {\"first\": \"Ada\", \"last\": \"Lovelace\"}, "
                             "\"location\": {\"postcode\": 70963, \"coordinates\": "
                             "{\"latitude\": \"-69.8246\"}}, \"id\": {\"value\": null}}";

static void test_parse_in_arena(void **state)
{
    (void)state;
    pc_jsonmem *a = pc_jsonmem_new();
    assert_non_null(a);
    size_t held0 = pc_jsonmem_held(a);
    for (int i = 0; i < 1000; i++) {
        pc_jsonmem_begin(a);
        json_t *v = json_loads(RECORD, 0, NULL);
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(json_object_get(v, "name"), "last")),
                            "Lovelace");
        char *dumped = json_dumps(v, JSON_COMPACT);
        assert_non_null(dumped);
        json_free_t jfree;
        json_get_alloc_funcs(NULL, &jfree);
        jfree(dumped); /* jansson's own buffer goes back through jansson's free */
        json_decref(v);
        assert_int_equal(pc_jsonmem_end(a), 0);
    }
    assert_int_equal(pc_jsonmem_held(a), held0); /* rewound, not grown */
    pc_jsonmem_free(a);
}

static void test_outside_values_freed_inside(void **state)
{
    (void)state;
    json_t *outside = json_loads(RECORD, 0, NULL); /* malloc: no arena yet */
    assert_non_null(outside);
    pc_jsonmem *a = pc_jsonmem_new();
    pc_jsonmem_begin(a);
    json_t *inside = json_loads(RECORD, 0, NULL);
    assert_true(json_equal(inside, outside));
    json_decref(outside); /* freed with free(), inside the arena's scope (ASan checks) */
    json_decref(inside);
    assert_int_equal(pc_jsonmem_end(a), 0);
    pc_jsonmem_free(a);
}

static void test_big_record_grows_then_shrinks(void **state)
{
    (void)state;
    pc_jsonmem *a = pc_jsonmem_new();
    size_t held0 = pc_jsonmem_held(a);
    json_t *big = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(big, json_sprintf("string number %d", i));
    char *text = json_dumps(big, JSON_COMPACT); /* outside: malloc, freed with free */
    json_decref(big);
    assert_non_null(text);
    pc_jsonmem_begin(a);
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 20000);
    assert_true(pc_jsonmem_held(a) > held0 + 20000 * 16); /* it came from the arena */
    json_decref(v);
    assert_int_equal(pc_jsonmem_end(a), 0);
    assert_int_equal(pc_jsonmem_held(a), held0);
    free(text);
    pc_jsonmem_free(a);
}

static void test_unreleased_is_counted(void **state)
{
    (void)state;
    pc_jsonmem *a = pc_jsonmem_new();
    pc_jsonmem_begin(a);
    json_t *v = json_loads(RECORD, 0, NULL);
    assert_non_null(v);
    (void)v; /* deliberately not released: end reports it (and v must not be used again) */
    assert_true(pc_jsonmem_end(a) > 0);
    /* the arena works again afterwards */
    pc_jsonmem_begin(a);
    v = json_loads(RECORD, 0, NULL);
    json_decref(v);
    assert_int_equal(pc_jsonmem_end(a), 0);
    pc_jsonmem_free(a);
}

/* begin/end with no arena (pc_jsonmem_new failed): plain malloc, nothing breaks */
static void test_null_arena(void **state)
{
    (void)state;
    pc_jsonmem_begin(NULL);
    json_t *v = json_loads(RECORD, 0, NULL);
    assert_non_null(v);
    json_decref(v);
    assert_int_equal(pc_jsonmem_end(NULL), 0);
}

static void *parse_many(void *arg)
{
    bool arena = arg != NULL;
    pc_jsonmem *a = arena ? pc_jsonmem_new() : NULL;
    long bad = 0;
    for (int i = 0; i < 5000; i++) {
        if (a)
            pc_jsonmem_begin(a);
        json_t *v = json_loads(RECORD, 0, NULL);
        if (!v || json_integer_value(json_object_get(json_object_get(v, "location"),
                                                     "postcode")) != 70963)
            bad++;
        json_decref(v);
        if (a && pc_jsonmem_end(a) != 0)
            bad++;
    }
    pc_jsonmem_free(a);
    return (void *)bad;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) /* two with an arena each, two with plain malloc */
        assert_int_equal(pthread_create(&t[i], NULL, parse_many, i % 2 ? (void *)1 : NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad = NULL;
        pthread_join(t[i], &bad);
        assert_null(bad);
    }
}

int main(void)
{
    pc_jsonmem_install();
    pc_jsonmem_install(); /* twice is harmless */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_in_arena),
        cmocka_unit_test(test_outside_values_freed_inside),
        cmocka_unit_test(test_big_record_grows_then_shrinks),
        cmocka_unit_test(test_unreleased_is_counted),
        cmocka_unit_test(test_null_arena),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
