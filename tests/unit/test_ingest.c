/* test_ingest.c: the pure parts of the ingest worker: URL building, key paths, backoff bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest_int.h"

static void test_url_basic(void **state)
{
    (void)state;
    pc_kvlist params = {0};
    assert_int_equal(pc_kvlist_add(&params, "seed", "pipe ctl&x=1"), 0);
    assert_int_equal(pc_kvlist_add(&params, "nat", "us,gb"), 0);
    assert_int_equal(pc_kvlist_add(&params, "results", "7"), 0); /* batch wins */
    assert_int_equal(pc_kvlist_add(&params, "page", "9"), 0);    /* only the first page */
    char *url = NULL;
    assert_int_equal(pc_ingest_build_url(&url, "http://h:1/api/", 500, &params, 3), 0);
    assert_string_equal(url,
                        "http://h:1/api/?results=500&seed=pipe%20ctl%26x%3D1&nat=us%2Cgb&page=3");
    free(url);
    url = NULL;
    assert_int_equal(pc_ingest_build_url(&url, "http://h/api/?inc=login", 1, NULL, 1), 0);
    assert_string_equal(url, "http://h/api/?inc=login&results=1&page=1");
    free(url);
    pc_kvlist_free(&params);
}

static void test_url_escape(void **state)
{
    (void)state;
    pc_buf b = {0};
    assert_int_equal(pc_ingest_url_escape(&b, "aZ09-._~ /?\xc3\xa9"), 0);
    assert_string_equal(b.data, "aZ09-._~%20%2F%3F%C3%A9");
    pc_buf_free(&b);
}

static void test_key_at(void **state)
{
    (void)state;
    json_t *u = json_loads("{\"login\":{\"uuid\":\"abc-1\",\"n\":42,\"e\":\"\",\"o\":{}},"
                           "\"email\":7,\"id\":{\"value\":null}}",
                           0, NULL);
    assert_non_null(u);
    char key[64];
    assert_int_equal(pc_ingest_key_at(u, "login.uuid", key, sizeof key), 0);
    assert_string_equal(key, "abc-1");
    assert_int_equal(pc_ingest_key_at(u, "login.n", key, sizeof key), 0);
    assert_string_equal(key, "42");
    assert_int_equal(pc_ingest_key_at(u, "email", key, sizeof key), 0);
    assert_string_equal(key, "7");
    assert_int_equal(pc_ingest_key_at(u, "login.e", key, sizeof key), -1);  /* empty */
    assert_int_equal(pc_ingest_key_at(u, "login.o", key, sizeof key), -1);  /* object */
    assert_int_equal(pc_ingest_key_at(u, "id.value", key, sizeof key), -1); /* null */
    assert_int_equal(pc_ingest_key_at(u, "login.x", key, sizeof key), -1);  /* missing */
    assert_int_equal(pc_ingest_key_at(u, "email.x", key, sizeof key), -1);  /* not an object */
    assert_int_equal(pc_ingest_key_at(u, "login..uuid", key, sizeof key), -1);
    assert_int_equal(pc_ingest_key_at(u, "login.uuid", key, 4), -1); /* does not fit */
    json_decref(u);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    uint64_t rng = 12345;
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        uint32_t cap = PC_INGEST_BACKOFF_BASE_MS << (attempt < 16 ? attempt : 16);
        if (cap > PC_INGEST_BACKOFF_CAP_MS || attempt >= 16)
            cap = PC_INGEST_BACKOFF_CAP_MS;
        uint32_t max = 0, min = UINT32_MAX;
        for (int i = 0; i < 2000; i++) {
            uint32_t ms = pc_ingest_backoff_ms(attempt, &rng);
            assert_true(ms <= cap);
            max = ms > max ? ms : max;
            min = ms < min ? ms : min;
        }
        /* full jitter: the draws spread over the whole window */
        assert_true(max > cap * 9 / 10);
        assert_true(min < cap / 10 + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_basic),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_key_at),
        cmocka_unit_test(test_backoff_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
