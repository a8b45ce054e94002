/* test_ingest.c: the pure parts of the ingest worker: URL building, key paths, the tree-free
 * scan of a response into users, backoff bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* the user as JSON text (the worker no longer builds a tree: see pkg/ingest/scan.c) */
#define KEY_AT(u, path, key, sz) pc_ingest_key_at((u), strlen(u), (path), (key), (sz))

static void test_key_at(void **state)
{
    (void)state;
    const char *u = "{\"login\":{\"uuid\":\"abc-1\",\"n\":42,\"e\":\"\",\"o\":{}},"
                    "\"email\":7,\"id\":{\"value\":null}}";
    char key[64];
    assert_int_equal(KEY_AT(u, "login.uuid", key, sizeof key), 0);
    assert_string_equal(key, "abc-1");
    assert_int_equal(KEY_AT(u, "login.n", key, sizeof key), 0);
    assert_string_equal(key, "42");
    assert_int_equal(KEY_AT(u, "email", key, sizeof key), 0);
    assert_string_equal(key, "7");
    assert_int_equal(KEY_AT(u, "login.e", key, sizeof key), -1);  /* empty */
    assert_int_equal(KEY_AT(u, "login.o", key, sizeof key), -1);  /* object */
    assert_int_equal(KEY_AT(u, "id.value", key, sizeof key), -1); /* null */
    assert_int_equal(KEY_AT(u, "login.x", key, sizeof key), -1);  /* missing */
    assert_int_equal(KEY_AT(u, "email.x", key, sizeof key), -1);  /* not an object */
    assert_int_equal(KEY_AT(u, "login..uuid", key, sizeof key), -1);
    assert_int_equal(KEY_AT(u, "login.uuid", key, 4), -1); /* does not fit */
}

/* what the tree-free scanner must agree on with the tree it replaced */
static void test_key_at_edges(void **state)
{
    (void)state;
    char key[PC_INGEST_KEY_MAX + 2];
    /* escapes are decoded; a real number, a bool, an array, NUL inside are no keys */
    assert_int_equal(KEY_AT("{\"k\":\"a\\u0062\\n\"}", "k", key, sizeof key), 0);
    assert_string_equal(key, "ab\n");
    assert_int_equal(KEY_AT("{\"k\":-0}", "k", key, sizeof key), 0);
    assert_string_equal(key, "0");
    assert_int_equal(KEY_AT("{\"k\":1.5}", "k", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"k\":1e3}", "k", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"k\":99999999999999999999}", "k", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"k\":true}", "k", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"k\":[\"a\"]}", "k", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"k\":\"a\\u0000b\"}", "k", key, sizeof key), -1);
    /* the path only follows objects: not into arrays, not a name deeper down */
    assert_int_equal(KEY_AT("{\"a\":[{\"b\":\"x\"}]}", "a.b", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"x\":{\"b\":\"x\"}}", "b", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"a\":{\"a\":{\"b\":\"x\"}}}", "a.b", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"a\":{\"z\":{\"b\":1},\"b\":\"y\"}}", "a.b", key, sizeof key), 0);
    assert_string_equal(key, "y");
    /* a repeated name: the last one wins, at every level */
    assert_int_equal(KEY_AT("{\"a\":{\"b\":\"1\",\"b\":\"2\"}}", "a.b", key, sizeof key), 0);
    assert_string_equal(key, "2");
    assert_int_equal(KEY_AT("{\"a\":{\"b\":\"1\"},\"a\":{\"c\":2}}", "a.b", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"a\":{\"b\":\"1\"},\"a\":5}", "a.b", key, sizeof key), -1);
    /* not an object, not JSON, an empty path */
    assert_int_equal(KEY_AT("[1]", "a", key, sizeof key), -1);
    assert_int_equal(KEY_AT("\"a\"", "a", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"a\":", "a", key, sizeof key), -1);
    assert_int_equal(KEY_AT("{\"a\":\"x\"}", "", key, sizeof key), -1);
    /* the longest key fits, one byte more does not */
    char u[PC_INGEST_KEY_MAX + 32];
    snprintf(u, sizeof u, "{\"k\":\"%0*d\"}", (int)PC_INGEST_KEY_MAX, 7);
    assert_int_equal(KEY_AT(u, "k", key, sizeof key), 0);
    assert_int_equal(strlen(key), PC_INGEST_KEY_MAX);
    snprintf(u, sizeof u, "{\"k\":\"%0*d\"}", (int)PC_INGEST_KEY_MAX + 1, 7);
    assert_int_equal(KEY_AT(u, "k", key, sizeof key), -1);
}

static const char *rec_text(const char *body, const pc_ingest_rec *r, char *out, size_t outsz)
{
    assert_true(r->len < outsz);
    memcpy(out, body + r->off, r->len);
    out[r->len] = '\0';
    return out;
}

/* a page's users are byte ranges of the body, in order, with their keys */
static void test_scan_results(void **state)
{
    (void)state;
    const char *body =
        "{\"results\":[{\"login\":{\"uuid\":\"u-1\"},\"n\":[1,{\"x\":\"}\"}]} ,\n"
        "  {\"login\":{\"uuid\":\"u\\u002d2\"} } , 5,\"s\",null,[{\"login\":{\"uuid\":\"no\"}}],"
        "{\"login\":{}},{\"login\":{\"uuid\":\"u-3\"}}],"
        "\"info\":{\"seed\":\"s\",\"results\":8,\"page\":1,\"version\":\"1.4\"}}";
    pc_ingest_page page = {0};
    assert_int_equal(pc_ingest_scan(&page, body, strlen(body), "login.uuid"), 0);
    assert_int_equal(page.n, 8);
    char t[256];
    const struct {
        const char *text, *key;
    } want[] = {
        {"{\"login\":{\"uuid\":\"u-1\"},\"n\":[1,{\"x\":\"}\"}]}", "u-1"},
        {"{\"login\":{\"uuid\":\"u\\u002d2\"} }", "u-2"}, /* as sent: escapes and spaces */
        {"5", NULL},
        {"\"s\"", NULL},
        {"null", NULL},
        {"[{\"login\":{\"uuid\":\"no\"}}]", NULL}, /* an array is no user */
        {"{\"login\":{}}", NULL},
        {"{\"login\":{\"uuid\":\"u-3\"}}", "u-3"},
    };
    for (size_t i = 0; i < page.n; i++) {
        assert_string_equal(rec_text(body, &page.recs[i], t, sizeof t), want[i].text);
        assert_int_equal(page.recs[i].ok, want[i].key != NULL);
        if (want[i].key) {
            assert_string_equal(page.keys.data + page.recs[i].key_off, want[i].key);
            assert_int_equal(page.recs[i].key_len, strlen(want[i].key));
        }
    }
    /* the same page object is reused for the next body */
    const char *b2 = "{\"info\":{},\"results\":[]}";
    assert_int_equal(pc_ingest_scan(&page, b2, strlen(b2), "login.uuid"), 0);
    assert_int_equal(page.n, 0);
    pc_ingest_page_dispose(&page);
    pc_ingest_page_dispose(&page); /* twice: harmless */
}

/* a body that is not the documented JSON is refused as a whole, with the parser's reason */
static void test_scan_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "{\"results\":[{\"login\":{\"uuid\":\"a\"}},{\"login\":{\"uu", /* truncated */
        "{\"results\":[]} x",                                          /* trailing garbage */
        "<!DOCTYPE html><html></html>",
        "{\"error\":\"Whoa, slow down there!\"}",
        "{\"results\":{\"a\":1}}",
        "[{\"results\":[]}]",
        "{\"results\":[],\"results\":7}", /* the last one counts */
        "{\"a\":{\"results\":[]}}",
        "{\"results\":[\"\xff\"]}", /* not UTF-8 */
    };
    pc_ingest_page page = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pc_ingest_scan(&page, bad[i], strlen(bad[i]), "login.uuid"), PC_EINVAL);
        assert_int_equal(page.n, 0);
        assert_true(page.why[0] != '\0');
        assert_null(strchr(page.why, '\n'));
    }
    assert_int_equal(pc_ingest_scan(&page, bad[5], strlen(bad[5]), "x"), PC_EINVAL);
    assert_string_equal(page.why, "no results array");
    /* a repeated "results": the last array counts */
    const char *twice = "{\"results\":[{\"k\":\"1\"}],\"results\":[{\"k\":\"2\"},{\"k\":\"3\"}]}";
    assert_int_equal(pc_ingest_scan(&page, twice, strlen(twice), "k"), 0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.keys.data + page.recs[0].key_off, "2");
    pc_ingest_page_dispose(&page);
}

/* many users: the record array and the key arena grow */
static void test_scan_many(void **state)
{
    (void)state;
    pc_buf b = {0};
    assert_int_equal(pc_buf_puts(&b, "{\"results\":["), 0);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(
            pc_buf_printf(&b, "%s{\"login\":{\"uuid\":\"id-%d\"},\"nat\":\"IE\"}", i ? "," : "", i),
            0);
    assert_int_equal(pc_buf_puts(&b, "],\"info\":{\"results\":5000}}"), 0);
    pc_ingest_page page = {0};
    assert_int_equal(pc_ingest_scan(&page, b.data, b.len, "login.uuid"), 0);
    assert_int_equal(page.n, 5000);
    char want[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(want, sizeof want, "id-%d", i);
        assert_true(page.recs[i].ok);
        assert_string_equal(page.keys.data + page.recs[i].key_off, want);
        assert_int_equal(b.data[page.recs[i].off], '{');
        assert_int_equal(b.data[page.recs[i].off + page.recs[i].len - 1], '}');
    }
    pc_ingest_page_dispose(&page);
    pc_buf_free(&b);
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
        cmocka_unit_test(test_url_basic),    cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_key_at),       cmocka_unit_test(test_key_at_edges),
        cmocka_unit_test(test_scan_results), cmocka_unit_test(test_scan_refused),
        cmocka_unit_test(test_scan_many),    cmocka_unit_test(test_backoff_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
