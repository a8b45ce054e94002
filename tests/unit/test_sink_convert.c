/* test_sink_convert.c: the sink's pure conversion logic (pkg/sink/sink_int.h): JSON paths, typed
 * conversion with the randomuser type traps, per-record reasons, COPY escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
    /* the exponent counts, also when the integer part is zero: 500000 has 6 digits, 5000 has 4 */
    {"numeric(9,4)", "{\"v\": \"0.5e6\"}", NULL, "too many digits", true},
    {"numeric(9,4)", "{\"v\": \"0.0005e7\"}", "0.0005e7", NULL, true},
    {"numeric(9,4)", "{\"v\": \"0.05e-3\"}", "0.05e-3", NULL, true},
    {"numeric(4,2)", "{\"v\": \"1.5e2\"}", NULL, "too many digits", true},
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

/* Every case. */
static void run_cases(void)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const conv_case *k = &CASES[i];
        json_error_t je;
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
    }
}

static void test_cases(void **state)
{
    (void)state;
    run_cases();
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

/* --- the sink's own parser (yajl events, pkg/sink/record.c) ------------------------------------ */

/* Every case again, through the record path the sink uses: the same text (COPY-escaped, one
 * line) or the same reason. */
static void test_cases_through_record_line(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const conv_case *k = &CASES[i];
        pc_sink_col col = {.name = "c", .path = "v", .type_name = k->type, .nullable = k->nullable};
        col.type = pc_sink_type_parse(k->type, &col.typmod1, &col.typmod2);
        pc_buf line = {0}, want = {0};
        char *reason = NULL;
        assert_int_equal(pc_sink_record_line(k->json, strlen(k->json), &col, 1, -1, &line, NULL,
                                             &reason), 0);
        if (k->want) {
            if (reason)
                fail_msg("case %zu (%s %s): unexpected error %s", i, k->type, k->json, reason);
            if (strcmp(k->want, "\\N") == 0)
                pc_buf_puts(&want, "\\N");
            else
                pc_sink_copy_escape(&want, k->want, strlen(k->want));
            pc_buf_puts(&want, "\n");
            if (strcmp(line.data ? line.data : "", want.data) != 0)
                fail_msg("case %zu (%s %s): want [%s] got [%s]", i, k->type, k->json, want.data,
                         line.data ? line.data : "");
        } else {
            if (!reason)
                fail_msg("case %zu (%s %s): expected an error, got [%s]", i, k->type, k->json,
                         line.data ? line.data : "(null)");
            if (!strstr(reason, k->why) || !strstr(reason, "column c") || !strstr(reason, "path v"))
                fail_msg("case %zu: reason [%s] lacks [%s] or the column/path", i, reason, k->why);
            assert_int_equal(line.len, 0);
        }
        free(reason);
        pc_buf_free(&line);
        pc_buf_free(&want);
    }
}

/* The line jansson's tree gives for a record (the converters fed by pc_sink_convert). */
static char *jansson_line(const char *json, const pc_sink_col *cols, size_t ncols, long long seq)
{
    json_t *root = json_loads(json, 0, NULL);
    assert_non_null(root);
    pc_buf line = {0}, val = {0};
    for (size_t i = 0; i < ncols; i++) {
        bool is_null = false;
        char *reason = NULL;
        if (pc_sink_convert(root, &cols[i], &val, &is_null, &reason) != 0) {
            json_decref(root);
            pc_buf_free(&val);
            pc_buf_free(&line);
            return reason; /* the reason instead of the line */
        }
        if (i)
            pc_buf_puts(&line, "\t");
        if (is_null)
            pc_buf_puts(&line, "\\N");
        else
            pc_sink_copy_escape(&line, val.data ? val.data : "", val.len);
    }
    if (seq >= 0)
        pc_buf_printf(&line, "\t%lld", seq);
    pc_buf_puts(&line, "\n");
    json_decref(root);
    pc_buf_free(&val);
    return line.data;
}

/* The bench's 17 columns over randomuser records written in different ways (spacing, member
 * order, escapes, unicode, arrays, missing members): yajl's pass gives jansson's line. */
static void test_record_line_matches_jansson(void **state)
{
    (void)state;
    static const char *const spec[][3] = {
        {"id", "login.uuid", "uuid"},
        {"first_name", "name.first", "text"},
        {"last_name", "name.last", "text"},
        {"gender", "gender", "text"},
        {"address", "location.street.name", "text"},
        {"post_code", "location.postcode", "text"},
        {"email", "email", "text"},
        {"username", "login.username", "text"},
        {"dob", "dob.date", "timestamptz"},
        {"registered_date", "registered.date", "timestamptz"},
        {"phone", "phone", "text"},
        {"picture", "picture.medium", "text"},
        {"street_number", "location.street.number", "integer"},
        {"latitude", "location.coordinates.latitude", "numeric(9,4)"},
        {"id_value", "id.value", "text"},
        {"dob_day", "dob.date", "date"},
        {"login", "login", "jsonb"},
        {"tag1", "tags.1", "text"},
        {"ratio", "ratio", "double precision"},
        {"flags", "flags", "json"},
    };
    enum { NC = sizeof spec / sizeof spec[0] };
    pc_sink_col cols[NC];
    for (size_t i = 0; i < NC; i++) {
        cols[i] = (pc_sink_col){.name = spec[i][0], .path = spec[i][1], .type_name = spec[i][2],
                                .nullable = i != 0, .primary_key = i == 0};
        cols[i].type = pc_sink_type_parse(spec[i][2], &cols[i].typmod1, &cols[i].typmod2);
    }
    static const char *const recs[] = {
        "{\"gender\":\"female\",\"name\":{\"title\":\"Ms\",\"first\":\"Zo\xc3\xab\",\"last\":\"O'Neil\"},"
        "\"location\":{\"street\":{\"number\":8929,\"name\":\"Valwood Pkwy\"},\"city\":\"Billings\","
        "\"postcode\":70963,\"coordinates\":{\"latitude\":\"-69.8246\",\"longitude\":\"134.8719\"}},"
        "\"email\":\"zoe@example.com\",\"login\":{\"uuid\":\"6a419018-a6eb-465c-b6b7-e1437182aa2b\","
        "\"username\":\"zoe42\",\"password\":\"x\\ty\"},\"dob\":{\"date\":\"1962-05-19T22:18:27.526Z\","
        "\"age\":62},\"registered\":{\"date\":\"2010-01-02T03:04:05.000Z\",\"age\":14},\"phone\":"
        "\"(272) 790-0888\",\"id\":{\"name\":\"\",\"value\":null},\"picture\":{\"medium\":"
        "\"https://randomuser.me/api/portraits/med/women/1.jpg\"},\"tags\":[\"a\",\"b\\nc\"],"
        "\"ratio\":0.25,\"flags\":[true,false,null,{\"x\":[]}]}",
        /* pretty-printed, members in another order, postcode a string, a tab in a name */
        "{\n  \"login\" : {\n    \"username\" : \"lars\",\n    \"uuid\" : "
        "\"00000000-0000-4000-8000-000000000001\"\n  },\n  \"email\" : \"l@x.org\",\n  \"name\" : "
        "{ \"first\" : \"La\\trs\", \"last\" : \"Back\\\\slash\" },\n  \"location\" : { \"postcode\" : "
        "\"N2 4AB\", \"street\" : { \"name\" : \"Main St\", \"number\" : -7 }, \"coordinates\" : "
        "{ \"latitude\" : 12.5 } },\n  \"tags\" : [ 1 , 2 ],\n  \"ratio\" : -3,\n  \"flags\" : { } \n}",
        /* most members missing, tags too short, arrays where objects are expected */
        "{\"login\":{\"uuid\":\"00000000-0000-4000-8000-000000000002\"},\"email\":\"m@x\","
        "\"name\":[\"first\"],\"location\":{\"street\":\"no object\"},\"tags\":[\"only\"],"
        "\"dob\":{\"date\":\"2024-02-29\"},\"registered\":{\"date\":1700000000}}",
        /* unicode written as escapes, outside and inside the jsonb column */
        "{\"login\":{\"uuid\":\"00000000-0000-4000-8000-000000000003\",\"username\":\"\\u00e9t\\u00e9\"},"
        "\"email\":\"\\u00e9@x\",\"name\":{\"first\":\"\\ud83d\\ude00\"},\"phone\":\"a\\/b\"}",
    };
    for (size_t r = 0; r < sizeof recs / sizeof recs[0]; r++) {
        char *want = jansson_line(recs[r], cols, NC, (long long)r);
        pc_buf got = {0};
        char *reason = NULL;
        assert_int_equal(pc_sink_record_line(recs[r], strlen(recs[r]), cols, NC, (long long)r,
                                             &got, NULL, &reason), 0);
        if (r == 3) {
            /* the jsonb column keeps the record's escapes (PostgreSQL reads both the same) */
            assert_null(reason);
            assert_non_null(strstr(got.data, "\t{\"uuid\":\"00000000-0000-4000-8000-000000000003\","
                                             "\"username\":\"\\\\u00e9t\\\\u00e9\"}\t"));
            assert_non_null(strstr(got.data, "\t\xc3\xa9@x\t"));
            assert_non_null(strstr(got.data, "\t\xf0\x9f\x98\x80\t"));
            assert_non_null(strstr(got.data, "\ta/b\t"));
        } else if (reason || strcmp(got.data, want) != 0) {
            fail_msg("record %zu: jansson [%s] yajl [%s] (%s)", r, want, got.data,
                     reason ? reason : "");
        }
        free(want);
        free(reason);
        pc_buf_free(&got);
    }
}

/* Paths and records the way pc_sink_json_get reads a tree: array indices, repeated members
 * (the last wins, also over a whole subtree), the whole record for an empty path, paths that
 * can never match. */
static void test_record_paths(void **state)
{
    (void)state;
    static const struct {
        const char *json, *path, *want; /* want NULL: missing */
    } P[] = {
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "a.b.0", "10"},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "a.b.1.c", "x"},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "a.b.2", NULL},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "a.x.y", NULL},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "a..b", NULL},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", ".a", NULL},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"n\": null}", "n", NULL},
        {"{\"a\": {\"b\": [10, {\"c\": \"x\"}]}}", "a.b", "[10,{\"c\":\"x\"}]"},
        {"{\"a\": [[1, 2], [3, [4, 5]]]}", "a.1.1.0", "4"},
        {"{\"a\": {\"0\": \"key zero\"}}", "a.0", "key zero"},
        {"{\"a\": [\"x\"]}", "a.b", NULL},
        {"{\"a\": \"scalar\"}", "a.b", NULL},
        {"{\"v\": 1, \"v\": 2}", "v", "2"},
        {"{\"v\": {\"a\": 1}, \"v\": 5}", "v.a", NULL},
        {"{\"v\": {\"a\": 1}, \"v\": {\"b\": 2}}", "v.a", NULL},
        {"{\"v\": {\"a\": 1}, \"w\": {\"v\": {\"a\": 2}}}", "v.a", "1"},
        {"{\"x\": [{\"k\": 1}, {\"k\": 2}]}", "x.1.k", "2"},
        {"{\"v\": -0}", "v", "0"},
        {"{ \"a\" : 1 }", "", "{\"a\":1}"},
        {"{\"a\": 1}", "a.", "1"},
    };
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
        pc_sink_col col = {.name = "c", .path = P[i].path, .type_name = "text", .nullable = true};
        col.type = pc_sink_type_parse("text", &col.typmod1, &col.typmod2);
        pc_buf line = {0};
        char *reason = NULL;
        assert_int_equal(pc_sink_record_line(P[i].json, strlen(P[i].json), &col, 1, -1, &line,
                                             NULL, &reason), 0);
        if (reason)
            fail_msg("path %zu (%s in %s): %s", i, P[i].path, P[i].json, reason);
        char want[128];
        snprintf(want, sizeof want, "%s\n", P[i].want ? P[i].want : "\\N");
        if (strcmp(line.data, want) != 0)
            fail_msg("path %zu (%s in %s): want [%s] got [%s]", i, P[i].path, P[i].json,
                     P[i].want ? P[i].want : "\\N", line.data);
        /* the same as jansson's tree */
        char *j = jansson_line(P[i].json, &col, 1, -1);
        if (strcmp(j, want) != 0 && P[i].path[0] != '\0')
            fail_msg("path %zu (%s in %s): jansson gives [%s]", i, P[i].path, P[i].json, j);
        free(j);
        pc_buf_free(&line);
    }
}

/* Records that cannot be loaded: the reason a dead letter carries, and no line. */
static void test_record_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *json, *why;
    } M[] = {
        {"{not json", "value is not valid JSON"},
        {"", "value is not valid JSON"},
        {"   ", "value is not valid JSON"},
        {"{\"id\": \"00000000-0000-4000-8000-000000000001\"} trailing", "value is not valid JSON"},
        {"{\"id\": \"00000000-0000-4000-8000-000000000001\"", "value is not valid JSON"},
        {"{\"id\": \"00000000-0000-4000-8000-000000000001\", \"x\": 12345678901234567890}",
         "too big integer"},
        {"{\"id\": \"00000000-0000-4000-8000-000000000001\", \"x\": 1e999}", "real number overflow"},
        {"{\"id\": \"00000000-0000-4000-8000-000000000001\", \"x\": \"\xff\"}",
         "value is not valid JSON"},
        {"{\"id\": \"a\tb\"}", "value is not valid JSON"},
        {"[{\"id\": \"00000000-0000-4000-8000-000000000001\"}]", "value is not a JSON object"},
        {"\"00000000-0000-4000-8000-000000000001\"", "value is not a JSON object"},
        {"{\"id\": \"zzz\"}", "column id (path id): value \"zzz\" is not a valid uuid"},
        {"{\"x\": 1}", "column id (path id): value is missing but the column is NOT NULL"},
        {"{\"id\": null}", "column id (path id): value is null but the column is NOT NULL"},
    };
    pc_sink_col col = {.name = "id", .path = "id", .type_name = "uuid", .primary_key = true};
    col.type = pc_sink_type_parse("uuid", &col.typmod1, &col.typmod2);
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++) {
        pc_buf line = {0};
        pc_buf_puts(&line, "kept\n");
        char *reason = NULL;
        assert_int_equal(pc_sink_record_line(M[i].json, strlen(M[i].json), &col, 1, 7, &line,
                                             NULL, &reason), 0);
        if (!reason || !strstr(reason, M[i].why))
            fail_msg("record %zu [%s]: reason [%s] lacks [%s]", i, M[i].json,
                     reason ? reason : "(none)", M[i].why);
        assert_string_equal(line.data, "kept\n");
        free(reason);
        pc_buf_free(&line);
    }
    char *reason = NULL;
    pc_buf line = {0};
    assert_int_equal(pc_sink_record_line(NULL, 0, &col, 1, -1, &line, NULL, &reason), 0);
    assert_string_equal(reason, "record has no value (tombstone)");
    free(reason);
    /* a record after a malformed one, with the same map: nothing of the first one is left */
    pc_sink_map *m = NULL;
    assert_int_equal(pc_sink_map_new(&m, &col, 1), 0);
    const char *bad = "{\"id\": \"00000000-0000-4000-8000-000000000001\", \"x\": [";
    const char *good = "{\"x\": 1}";
    assert_int_equal(pc_sink_map_line(m, bad, strlen(bad), -1, &line, &reason), 0);
    assert_non_null(strstr(reason, "not valid JSON"));
    free(reason);
    assert_int_equal(pc_sink_map_line(m, good, strlen(good), -1, &line, &reason), 0);
    assert_non_null(strstr(reason, "missing"));
    free(reason);
    pc_sink_map_free(m);
    pc_buf_free(&line);
}

/* A record nested far deeper than any path, and a path deeper than the map tracks. */
static void test_record_deep(void **state)
{
    (void)state;
    pc_buf rec = {0}, path = {0}, line = {0};
    pc_buf_puts(&rec, "{\"v\": 1, \"d\": ");
    for (int i = 0; i < 3000; i++)
        pc_buf_puts(&rec, "[");
    for (int i = 0; i < 3000; i++)
        pc_buf_puts(&rec, "]");
    pc_buf_puts(&rec, "}");
    pc_sink_col col = {.name = "c", .path = "v", .type_name = "integer", .nullable = true};
    col.type = pc_sink_type_parse("integer", &col.typmod1, &col.typmod2);
    char *reason = NULL;
    assert_int_equal(pc_sink_record_line(rec.data, rec.len, &col, 1, -1, &line, NULL, &reason), 0);
    assert_null(reason);
    assert_string_equal(line.data, "1\n");
    /* d.0.0.0...: 100 levels: never matches, the record still loads (NULL) */
    pc_buf_puts(&path, "d");
    for (int i = 0; i < 100; i++)
        pc_buf_puts(&path, ".0");
    col.path = path.data;
    line.len = 0;
    assert_int_equal(pc_sink_record_line(rec.data, rec.len, &col, 1, -1, &line, NULL, &reason), 0);
    assert_null(reason);
    assert_string_equal(line.data, "\\N\n");
    pc_buf_free(&rec);
    pc_buf_free(&path);
    pc_buf_free(&line);
}

/* Columns whose text goes into the line unescaped (numbers, uuid, times, booleans): values
 * with blanks, tabs or newlines inside are refused, never passed into the COPY line. */
static void test_record_safe_types_refuse_specials(void **state)
{
    (void)state;
    static const struct {
        const char *type, *json;
    } S[] = {
        {"numeric", "{\"v\": \"1e\\t5\"}"},   {"numeric", "{\"v\": \"1e\\n5\"}"},
        {"numeric", "{\"v\": \"1e 5\"}"},     {"double precision", "{\"v\": \"1\\t2\"}"},
        {"integer", "{\"v\": \"4\\t2\"}"},    {"uuid", "{\"v\": \"6a419018\\ta6eb465cb6b7e1437182aa2b\"}"},
        {"timestamptz", "{\"v\": \"2020-01-02T03:04:05\\tZ\"}"}, {"date", "{\"v\": \"2020-01\\n02\"}"},
        {"boolean", "{\"v\": \"t\\nrue\"}"},
    };
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        pc_sink_col col = {.name = "c", .path = "v", .type_name = S[i].type, .nullable = true};
        col.type = pc_sink_type_parse(S[i].type, &col.typmod1, &col.typmod2);
        assert_true(pc_sink_type_copy_safe(col.type));
        pc_buf line = {0};
        char *reason = NULL;
        assert_int_equal(pc_sink_record_line(S[i].json, strlen(S[i].json), &col, 1, -1, &line,
                                             NULL, &reason), 0);
        if (!reason)
            fail_msg("case %zu (%s %s): loaded as [%s]", i, S[i].type, S[i].json, line.data);
        assert_true(line.len == 0);
        free(reason);
        pc_buf_free(&line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_reason_names_type_and_sample),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_copy_escape),
        cmocka_unit_test(test_pool_matches_sequential),
        cmocka_unit_test(test_cases_through_record_line),
        cmocka_unit_test(test_record_line_matches_jansson),
        cmocka_unit_test(test_record_paths),
        cmocka_unit_test(test_record_malformed),
        cmocka_unit_test(test_record_deep),
        cmocka_unit_test(test_record_safe_types_refuse_specials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
