/* test_sink_convert.c: the sink's pure conversion logic (pkg/sink/sink_int.h): JSON paths, typed
 * conversion with the randomuser type traps, per-record reasons, COPY escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonmem.h"
#include "sink_int.h"

typedef struct conv_case {
    const char *type;
    const char *json;  /* the record; the value is at path "v" */
    const char *want;  /* expected text, "\\N" for NULL, NULL for a conversion error */
    const char *why;   /* substring of the reason when want is NULL */
    bool nullable;
} conv_case;

static const conv_case CASES[] = {
    /* text: numbers (postcode), booleans, objects as compact JSON */
    {"text", "{\"v\": 70963}", "70963", NULL, true},
    {"text", "{\"v\": \"0150\"}", "0150", NULL, true},
    {"text", "{\"v\": true}", "true", NULL, true},
    {"text", "{\"v\": {\"a\": [1, 2]}}", "{\"a\":[1,2]}", NULL, true},
    {"text", "{\"v\": null}", "\\N", NULL, true},
    {"text", "{}", "\\N", NULL, true},
    {"text", "{\"v\": null}", NULL, "NOT NULL", false},
    {"text", "{}", NULL, "missing", false},
    {"varchar(3)", "{\"v\": \"abcd\"}", NULL, "longer", true},
    {"varchar(4)", "{\"v\": \"\xc3\xa9t\xc3\xa9s\"}", "\xc3\xa9t\xc3\xa9s", NULL, true},
    /* integers */
    {"integer", "{\"v\": 42}", "42", NULL, true},
    {"integer", "{\"v\": \" 42 \"}", "42", NULL, true},
    {"integer", "{\"v\": 42.0}", "42", NULL, true},
    {"integer", "{\"v\": 42.5}", NULL, "whole number", true},
    {"integer", "{\"v\": \"4x\"}", NULL, "whole number", true},
    {"integer", "{\"v\": 3000000000}", NULL, "out of range", true},
    {"smallint", "{\"v\": 40000}", NULL, "out of range", true},
    {"bigint", "{\"v\": \"3000000000\"}", "3000000000", NULL, true},
    {"integer", "{\"v\": true}", NULL, "integer", true},
    /* numeric and floats: coordinates come as strings */
    {"numeric(9,4)", "{\"v\": \"-2.1054\"}", "-2.1054", NULL, true},
    {"numeric(9,4)", "{\"v\": 60.25}", "60.25", NULL, true},
    {"numeric(4,2)", "{\"v\": \"123.4\"}", NULL, "too many digits", true},
    {"numeric", "{\"v\": \"1e5\"}", "1e5", NULL, true},
    {"numeric", "{\"v\": \"abc\"}", NULL, "not a number", true},
    {"numeric", "{\"v\": \".\"}", NULL, "not a number", true},
    {"double precision", "{\"v\": \"60.1352\"}", "60.1352", NULL, true},
    {"real", "{\"v\": \"Infinity\"}", "Infinity", NULL, true},
    /* booleans */
    {"boolean", "{\"v\": false}", "false", NULL, true},
    {"boolean", "{\"v\": \"yes\"}", "true", NULL, true},
    {"boolean", "{\"v\": 1}", "true", NULL, true},
    {"boolean", "{\"v\": \"maybe\"}", NULL, "boolean", true},
    /* uuid */
    {"uuid", "{\"v\": \"6A419018-A6EB-465C-B6B7-E1437182AA2B\"}",
     "6a419018-a6eb-465c-b6b7-e1437182aa2b", NULL, true},
    {"uuid", "{\"v\": \"6a419018a6eb465cb6b7e1437182aa2b\"}",
     "6a419018-a6eb-465c-b6b7-e1437182aa2b", NULL, true},
    {"uuid", "{\"v\": \"not-a-uuid\"}", NULL, "uuid", true},
    {"uuid", "{\"v\": \"6a419018-a6eb-465c-b6b7-e1437182aa2\"}", NULL, "uuid", true},
    {"uuid", "{\"v\": 12}", NULL, "uuid", true},
    /* time */
    {"timestamptz", "{\"v\": \"1962-05-19T22:18:27.526Z\"}", "1962-05-19T22:18:27.526Z", NULL,
     true},
    {"timestamptz", "{\"v\": \"2020-01-02 03:04:05+05:30\"}", "2020-01-02 03:04:05+05:30", NULL,
     true},
    {"timestamptz", "{\"v\": \"1990-02-30T10:00:00Z\"}", NULL, "no such date", true},
    {"timestamptz", "{\"v\": \"2020-01-02T25:00:00Z\"}", NULL, "out of range", true},
    {"timestamptz", "{\"v\": \"2020-01-02Tnoon\"}", NULL, "time", true},
    {"timestamptz", "{\"v\": 0}", "1970-01-01 00:00:00.000000+00", NULL, true},
    {"timestamp", "{\"v\": \"2024-02-29T12:00:00\"}", "2024-02-29T12:00:00", NULL, true},
    {"timestamp", "{\"v\": \"2023-02-29T12:00:00\"}", NULL, "no such date", true},
    {"date", "{\"v\": \"1962-05-19T22:18:27.526Z\"}", "1962-05-19", NULL, true},
    {"date", "{\"v\": \"1962-05-19\"}", "1962-05-19", NULL, true},
    {"date", "{\"v\": \"19/05/1962\"}", NULL, "ISO 8601", true},
    /* json */
    {"jsonb", "{\"v\": {\"b\": 1, \"a\": \"x\"}}", "{\"b\":1,\"a\":\"x\"}", NULL, true},
    {"jsonb", "{\"v\": \"s\"}", "\"s\"", NULL, true},
    {"jsonb", "{\"v\": [1, null]}", "[1,null]", NULL, true},
    {"jsonb", "{\"v\": \"a\\u0000b\"}", NULL, "NUL", true},
    {"text", "{\"v\": \"a\\u0000b\"}", NULL, "NUL", true},
    /* a backslash followed by the text u0000 is not a NUL */
    {"jsonb", "{\"v\": {\"k\": \"a\\\\u0000\"}}", "{\"k\":\"a\\\\u0000\"}", NULL, true},
    /* a long sample is cut */
    {"uuid", "{\"v\": \"0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789\"}", NULL, "...", true},
};

/* Every case, with the record's JSON tree in arena a when a is not NULL (as the sink does). */
static void run_cases(pc_jsonmem *a)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const conv_case *k = &CASES[i];
        json_error_t je;
        if (a)
            pc_jsonmem_begin(a);
        json_t *root = json_loads(k->json, JSON_ALLOW_NUL, &je);
        assert_non_null(root);
        pc_sink_col col = {.name = "c", .path = "v", .type_name = k->type, .nullable = k->nullable};
        col.type = pc_sink_type_parse(k->type, &col.typmod1, &col.typmod2);
        pc_buf out = {0};
        bool is_null = false;
        char *reason = NULL;
        int rc = pc_sink_convert(root, &col, &out, &is_null, &reason);
        if (k->want) {
            if (rc != 0)
                fail_msg("case %zu (%s %s): unexpected error %s", i, k->type, k->json, reason);
            const char *got = is_null ? "\\N" : (out.data ? out.data : "");
            if (strcmp(got, k->want) != 0)
                fail_msg("case %zu (%s %s): want [%s] got [%s]", i, k->type, k->json, k->want,
                         got);
        } else {
            if (rc != PC_EINVAL || !reason)
                fail_msg("case %zu (%s %s): expected an error, got [%s]", i, k->type, k->json,
                         out.data ? out.data : "(null)");
            if (!strstr(reason, k->why) || !strstr(reason, "column c") || !strstr(reason, "path v"))
                fail_msg("case %zu: reason [%s] lacks [%s] or the column/path", i, reason, k->why);
        }
        free(reason);
        pc_buf_free(&out);
        json_decref(root);
        if (a && pc_jsonmem_end(a) != 0)
            fail_msg("case %zu (%s %s): jansson memory not released in the arena", i, k->type,
                     k->json);
    }
}

static void test_cases(void **state)
{
    (void)state;
    run_cases(NULL);
}

/* The same cases with jansson allocating from an arena: every reason and value the conversion
 * hands out must be ours (malloc), none jansson's, or freeing it would break the arena. */
static void test_cases_in_arena(void **state)
{
    (void)state;
    pc_jsonmem *a = pc_jsonmem_new();
    assert_non_null(a);
    run_cases(a);
    pc_jsonmem_free(a);
}

static void test_reason_names_type_and_sample(void **state)
{
    (void)state;
    json_t *root = json_loads("{\"login\": {\"uuid\": \"zzz\"}}", 0, NULL);
    pc_sink_col col = {.name = "id", .path = "login.uuid", .type_name = "uuid", .nullable = true};
    col.type = pc_sink_type_parse("uuid", &col.typmod1, &col.typmod2);
    pc_buf out = {0};
    bool is_null;
    char *reason = NULL;
    assert_int_equal(pc_sink_convert(root, &col, &out, &is_null, &reason), PC_EINVAL);
    assert_string_equal(reason, "column id (path login.uuid): value \"zzz\" is not a valid uuid");
    free(reason);
    pc_buf_free(&out);
    json_decref(root);
}

static void test_paths(void **state)
{
    (void)state;
    json_t *root = json_loads("{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", 0, NULL);
    assert_int_equal(json_integer_value(pc_sink_json_get(root, "a.b.0")), 10);
    assert_string_equal(json_string_value(pc_sink_json_get(root, "a.b.1.c")), "x");
    assert_null(pc_sink_json_get(root, "a.b.2"));
    assert_null(pc_sink_json_get(root, "a.x.y"));
    assert_null(pc_sink_json_get(root, "a..b"));
    assert_true(json_is_null(pc_sink_json_get(root, "n")));
    json_decref(root);
}

static void test_types(void **state)
{
    (void)state;
    int a, b;
    assert_int_equal(pc_sink_type_parse("numeric(10,2)", &a, &b), PC_SINK_T_NUMERIC);
    assert_int_equal(a, 10);
    assert_int_equal(b, 2);
    assert_int_equal(pc_sink_type_parse("varchar(40)", &a, &b), PC_SINK_T_TEXT);
    assert_int_equal(a, 40);
    assert_int_equal(pc_sink_type_parse("timestamp with time zone", &a, &b),
                     PC_SINK_T_TIMESTAMPTZ);
    assert_int_equal(pc_sink_type_parse("timestamp(3) without time zone", &a, &b),
                     PC_SINK_T_TIMESTAMP);
    assert_int_equal(pc_sink_type_parse("double precision", &a, &b), PC_SINK_T_FLOAT8);
    assert_int_equal(pc_sink_type_parse("json", &a, &b), PC_SINK_T_JSON);
    assert_int_equal(pc_sink_type_parse("inet", &a, &b), PC_SINK_T_OTHER);
    assert_int_equal(pc_sink_type_parse("text[]", &a, &b), PC_SINK_T_OTHER);
}

static void test_copy_escape(void **state)
{
    (void)state;
    pc_buf b = {0};
    const char in[] = "a\tb\\c\nd\re";
    assert_int_equal(pc_sink_copy_escape(&b, in, sizeof in - 1), 0);
    assert_string_equal(b.data, "a\\tb\\\\c\\nd\\re");
    pc_buf_free(&b);
}

/* The converting threads give exactly what converting one record after another gives: the same
 * lines in the same order, the same reasons on the same records, the upsert sequence numbers. */
static void test_pool_matches_sequential(void **state)
{
    (void)state;
    pc_sink_col cols[3] = {{.name = "id", .path = "id", .type_name = "uuid", .primary_key = true},
                           {.name = "n", .path = "n", .type_name = "integer", .nullable = true},
                           {.name = "j", .path = "j", .type_name = "jsonb", .nullable = true}};
    for (size_t c = 0; c < 3; c++)
        cols[c].type = pc_sink_type_parse(cols[c].type_name, &cols[c].typmod1, &cols[c].typmod2);
    enum { N = 1000 };
    static char *payload[N];
    for (size_t i = 0; i < N; i++) {
        if (i % 97 == 5)
            payload[i] = pc_strdup("{not json");
        else if (i % 89 == 7)
            payload[i] = pc_asprintf("{\"id\": \"zzz\", \"n\": %zu}", i);
        else
            payload[i] = pc_asprintf("{\"id\": \"00000000-0000-4000-8000-%012zu\", \"n\": %zu, "
                                     "\"j\": {\"k\": [%zu, \"t\\tab\"]}}", i, i, i);
    }
    /* sequentially */
    pc_buf want = {0}, val = {0};
    char *want_reason[N] = {0};
    for (size_t i = 0; i < N; i++)
        assert_int_equal(pc_sink_record_line(payload[i], strlen(payload[i]), cols, 3,
                                             (long long)i, &want, &val, &want_reason[i]), 0);
    /* on 3 threads, in chunks */
    pc_sink_pool *pool = NULL;
    pc_error err = {0};
    assert_int_equal(pc_sink_pool_new(&pool, 3, cols, 3, &err), 0);
    size_t nchunks = (N + PC_SINK_CHUNK - 1) / PC_SINK_CHUNK;
    pc_sink_chunk *chunk = calloc(nchunks, sizeof *chunk);
    assert_non_null(chunk);
    for (size_t k = 0; k < nchunks; k++) {
        pc_sink_chunk *c = &chunk[k];
        c->seq0 = (long long)(k * PC_SINK_CHUNK);
        for (size_t i = k * PC_SINK_CHUNK; i < N && c->n < PC_SINK_CHUNK; i++) {
            c->payload[c->n] = payload[i];
            c->plen[c->n++] = strlen(payload[i]);
        }
        pc_sink_pool_submit(pool, c);
    }
    pc_buf got = {0};
    size_t bad = 0;
    for (size_t k = 0; k < nchunks; k++) {
        pc_sink_chunk *c = &chunk[k];
        assert_true(pc_sink_pool_done(pool, c, true));
        assert_int_equal(c->rc, 0);
        size_t off = 0;
        for (size_t i = 0; i < c->n; i++) {
            size_t r = k * PC_SINK_CHUNK + i;
            if (want_reason[r]) {
                assert_int_equal(c->len[i], 0);
                assert_non_null(c->reason[i]);
                assert_string_equal(c->reason[i], want_reason[r]);
                bad++;
            } else {
                assert_null(c->reason[i]);
                assert_true(c->len[i] > 0);
            }
            pc_buf_append(&got, c->out.data + off, c->len[i]);
            off += c->len[i];
        }
        assert_int_equal(off, c->out.len);
        pc_sink_chunk_reset(c);
        pc_buf_free(&c->out);
    }
    assert_true(bad >= 20);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    assert_non_null(strstr(got.data, "\t999\n")); /* the last record's sequence number */
    pc_sink_pool_free(pool);
    free(chunk);
    for (size_t i = 0; i < N; i++) {
        free(payload[i]);
        free(want_reason[i]);
    }
    pc_buf_free(&want);
    pc_buf_free(&val);
    pc_buf_free(&got);
}

int main(void)
{
    pc_jsonmem_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_cases_in_arena),
        cmocka_unit_test(test_reason_names_type_and_sample),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_copy_escape),
        cmocka_unit_test(test_pool_matches_sequential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
