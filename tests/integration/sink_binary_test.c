/* sink_binary_test.c: the sink's two COPY formats load the same rows, checked against a real
 * PostgreSQL 15 (white box: sink_int.h).
 *
 * The sink sends COPY in PostgreSQL's binary format when the table's types allow
 * (session.c decide_format); pc_sink_bin_field re-encodes what the text converters produce into
 * each type's binary input. If the two ever disagree, a user's rows land different (or are
 * dead-lettered) depending on the format. Here a table of edge values (the JSON a
 * randomuser-style record can hold: strings, numbers, booleans, nested objects) goes, one record
 * per value, through the sink's own path twice, pc_sink_map_line as a COPY text line and as a
 * binary tuple (the converters, then pc_sink_bin_field), and each is loaded by its own COPY:
 * text rows into table a, binary tuples into table b (session TimeZone UTC, as decide_format
 * requires for binary with timestamptz). Then:
 *  - every value has the outcome its case states, the same in both formats: loaded; refused by
 *    the converter (the same reason both ways); refused by PostgreSQL with the same SQLSTATE
 *    both ways; or refused by PostgreSQL in text and by the binary encoder (float out of range:
 *    a dead letter instead of a failed COPY);
 *  - a and b hold the same rows, compared in SQL column by column on their text output (so a
 *    numeric's display scale, a float's -0 and json's exact text count) and as a whole with
 *    EXCEPT ALL both ways, and the row count is the number of loaded cases.
 * Reads PC_PG_DSN (scripts/stack.sh exports it) and fails when it is unset; works in a scratch
 * schema pc_binedge_<pid>, dropped at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "sink_int.h"

/* The table: one column of every type with a binary form, and the typmod variants. */
/* clang-format off */
static const struct {
    const char *name;
    const char *type;
} k_cols[] = {
    {"id", "integer"},
    {"i2", "smallint"},
    {"i4", "integer"},
    {"i8", "bigint"},
    {"num", "numeric"},
    {"num94", "numeric(9,4)"},
    {"f4", "real"},
    {"f8", "double precision"},
    {"b", "boolean"},
    {"u", "uuid"},
    {"tstz", "timestamptz"},
    {"tstz3", "timestamptz(3)"},
    {"ts", "timestamp"},
    {"ts3", "timestamp(3)"},
    {"d", "date"},
    {"js", "json"},
    {"jsb", "jsonb"},
    {"t", "text"},
    {"vc10", "varchar(10)"},
    {"ch5", "char(5)"},
};
/* clang-format on */
#define NCOLS (sizeof k_cols / sizeof *k_cols)

typedef enum expect {
    LOAD,   /* both formats load it, the same */
    REJECT, /* the converter refuses it: both formats give the same reason, nothing is sent */
    PGERR,  /* converted, but PostgreSQL refuses it with SQLSTATE state in both formats */
    PGENC,  /* PostgreSQL refuses the text with state; the binary encoder refuses it (reason) */
} expect;

typedef struct tcase {
    const char *col;
    const char *json; /* the value as it stands in the record */
    expect want;
    const char *state; /* PGERR, PGENC */
} tcase;

/* clang-format off */
static const tcase k_cases[] = {
    /* smallint / integer / bigint */
    {"i2", "0", LOAD, NULL},
    {"i2", "32767", LOAD, NULL},
    {"i2", "-32768", LOAD, NULL},
    {"i2", "32768", REJECT, NULL},
    {"i2", "\"  12 \"", LOAD, NULL},
    {"i2", "\"-0\"", LOAD, NULL},
    {"i2", "1.0", LOAD, NULL},
    {"i2", "1.5", REJECT, NULL},
    {"i2", "\"0x10\"", REJECT, NULL},
    {"i2", "true", REJECT, NULL},
    {"i4", "2147483647", LOAD, NULL},
    {"i4", "-2147483648", LOAD, NULL},
    {"i4", "2147483648", REJECT, NULL},
    {"i4", "\"+42\"", LOAD, NULL},
    {"i4", "1e3", LOAD, NULL},
    {"i4", "\"1e3\"", REJECT, NULL},
    {"i8", "9223372036854775807", LOAD, NULL},
    {"i8", "-9223372036854775808", LOAD, NULL},
    {"i8", "\"9223372036854775808\"", REJECT, NULL},
    {"i8", "9.2e18", LOAD, NULL},
    {"i8", "\"007\"", LOAD, NULL},
    {"i8", "null", LOAD, NULL},
    /* numeric: scale, exponents, NaN, zeros, groups of four digits around the point */
    {"num", "0", LOAD, NULL},
    {"num", "-0.0", LOAD, NULL},
    {"num", "\"-0.00\"", LOAD, NULL},
    {"num", "\"0000.0000\"", LOAD, NULL},
    {"num", "\"-12.3400\"", LOAD, NULL},
    {"num", "1e5", LOAD, NULL},
    {"num", "\"1e5\"", LOAD, NULL},
    {"num", "\"1.5e-3\"", LOAD, NULL},
    {"num", "\"1E+20\"", LOAD, NULL},
    {"num", "\"12345.6789e-2\"", LOAD, NULL},
    {"num", "\"0.000100\"", LOAD, NULL},
    {"num", "\"10000\"", LOAD, NULL},
    {"num", "\"9999.9999\"", LOAD, NULL},
    {"num", "\"123456789012345678901234567890.123456789\"", LOAD, NULL},
    {"num", "\"1e1000\"", LOAD, NULL},
    {"num", "\"1e-1000\"", LOAD, NULL},
    {"num", "\"1.5e-1000\"", LOAD, NULL},
    {"num", "\"1e1001\"", REJECT, NULL},
    {"num", "\"NaN\"", LOAD, NULL},
    {"num", "\" nan \"", LOAD, NULL},
    {"num", "\"Infinity\"", REJECT, NULL},
    {"num", "\".5\"", LOAD, NULL},
    {"num", "\"5.\"", LOAD, NULL},
    {"num", "\".\"", REJECT, NULL},
    {"num", "\"1e\"", REJECT, NULL},
    {"num", "\"1e 5\"", REJECT, NULL},
    {"num", "0.1", LOAD, NULL},
    {"num", "-123456789012345678", LOAD, NULL},
    {"num", "1.7976931348623157e308", LOAD, NULL},
    {"num", "false", REJECT, NULL},
    /* numeric(9,4): rounding to the scale, the precision's limit */
    {"num94", "\"12345.67895\"", LOAD, NULL},
    {"num94", "\"12345.67894\"", LOAD, NULL},
    {"num94", "\"-0.00005\"", LOAD, NULL},
    {"num94", "\"0.00004\"", LOAD, NULL},
    {"num94", "\"5e-5\"", LOAD, NULL},
    {"num94", "\"1.23456789e4\"", LOAD, NULL},
    {"num94", "\"99999.9999\"", LOAD, NULL},
    {"num94", "\"99999.99995\"", PGERR, "22003"},
    {"num94", "\"123456\"", REJECT, NULL},
    {"num94", "\"NaN\"", LOAD, NULL},
    {"num94", "0.1", LOAD, NULL},
    {"num94", "-7", LOAD, NULL},
    /* real / double precision: limits, denormals, specials, out of range */
    {"f4", "3.4028235e38", LOAD, NULL},
    {"f4", "\"3.5e38\"", PGENC, "22003"},
    {"f4", "1e-45", LOAD, NULL},
    {"f4", "\"1.17549435e-38\"", LOAD, NULL},
    {"f4", "\"1e-46\"", PGENC, "22003"},
    {"f4", "\"Infinity\"", LOAD, NULL},
    {"f4", "\"-infinity\"", LOAD, NULL},
    {"f4", "\"NaN\"", LOAD, NULL},
    {"f4", "\"-0\"", LOAD, NULL},
    {"f4", "0.1", LOAD, NULL},
    {"f4", "16777217", LOAD, NULL},
    {"f4", "\"inf\"", REJECT, NULL},
    {"f8", "1.7976931348623157e308", LOAD, NULL},
    {"f8", "\"1e309\"", PGENC, "22003"},
    {"f8", "\"-1e309\"", PGENC, "22003"},
    {"f8", "\"4.9e-324\"", LOAD, NULL},
    {"f8", "\"2.2250738585072011e-308\"", LOAD, NULL},
    {"f8", "\"1e-400\"", PGENC, "22003"},
    {"f8", "\"-0\"", LOAD, NULL},
    {"f8", "-0.0", LOAD, NULL},
    {"f8", "0.1", LOAD, NULL},
    {"f8", "\" 1.5E+10 \"", LOAD, NULL},
    {"f8", "9007199254740993", LOAD, NULL},
    {"f8", "\"Infinity\"", LOAD, NULL},
    {"f8", "\"NaN\"", LOAD, NULL},
    /* boolean */
    {"b", "true", LOAD, NULL},
    {"b", "false", LOAD, NULL},
    {"b", "\"t\"", LOAD, NULL},
    {"b", "\"YES\"", LOAD, NULL},
    {"b", "\" off \"", LOAD, NULL},
    {"b", "1", LOAD, NULL},
    {"b", "0", LOAD, NULL},
    {"b", "2", REJECT, NULL},
    {"b", "\"maybe\"", REJECT, NULL},
    /* uuid */
    {"u", "\"550E8400-E29B-41D4-A716-446655440000\"", LOAD, NULL},
    {"u", "\"{550e8400-e29b-41d4-a716-446655440001}\"", LOAD, NULL},
    {"u", "\"550e8400e29b41d4a716446655440002\"", LOAD, NULL},
    {"u", "\"00000000-0000-0000-0000-000000000000\"", LOAD, NULL},
    {"u", "\"ffffffff-ffff-ffff-ffff-ffffffffffff\"", LOAD, NULL},
    {"u", "\"550e8400-e29b-41d4-a716-44665544000\"", REJECT, NULL},
    {"u", "12", REJECT, NULL},
    /* timestamptz: offsets, 7-digit fractions, 24:00, leap seconds, year 1, epoch numbers */
    {"tstz", "\"2024-02-29T12:34:56Z\"", LOAD, NULL},
    {"tstz", "\"2024-02-29T12:34:56.1234565+05:30\"", LOAD, NULL},
    {"tstz", "\"2024-02-29 12:34:56.1234575-0800\"", LOAD, NULL},
    {"tstz", "\"2024-02-29T12:34:56.9999995+01\"", LOAD, NULL},
    {"tstz", "\"1999-12-31T23:59:59.999999Z\"", LOAD, NULL},
    {"tstz", "\"2000-01-01T00:00:00Z\"", LOAD, NULL},
    {"tstz", "\"1969-12-31T23:59:59.5Z\"", LOAD, NULL},
    {"tstz", "\"2024-01-01T24:00:00Z\"", LOAD, NULL},
    {"tstz", "\"2024-01-01T24:00:00.0000004Z\"", LOAD, NULL},
    {"tstz", "\"2016-12-31T23:59:60Z\"", LOAD, NULL},
    {"tstz", "\"2016-12-31T12:00:60.5Z\"", LOAD, NULL},
    {"tstz", "\"2016-12-31T23:59:60.0000005Z\"", LOAD, NULL},
    {"tstz", "\"2016-12-31T23:59:60.5Z\"", REJECT, NULL},
    {"tstz", "\"2024-01-01T24:00:00.5Z\"", REJECT, NULL},
    {"tstz", "\"2016-12-31T23:59:60.0000015Z\"", REJECT, NULL},
    {"tstz", "\"0001-01-01T00:00:00+15:00\"", LOAD, NULL},
    {"tstz", "\"0001-01-01T00:00:00-15:59\"", LOAD, NULL},
    {"tstz", "\"9999-12-31T24:00:00-15\"", LOAD, NULL},
    {"tstz", "\"2024-01-01\"", LOAD, NULL},
    {"tstz", "\"2024-01-01T10:00\"", LOAD, NULL},
    {"tstz", "\"2024-01-01t10:00:00z\"", LOAD, NULL},
    {"tstz", "1700000000", LOAD, NULL},
    {"tstz", "1700000000.123456", LOAD, NULL},
    {"tstz", "-1.5", LOAD, NULL},
    {"tstz", "-62135596800", LOAD, NULL},
    {"tstz", "-62135596801", REJECT, NULL},
    {"tstz", "-99999999999", REJECT, NULL},
    {"tstz", "1e11", REJECT, NULL},
    {"tstz", "\"2023-02-29T00:00:00Z\"", REJECT, NULL},
    {"tstz", "\"2024-01-01T10:00:00+16:00\"", REJECT, NULL},
    {"tstz", "\"2024-01-01T10:00:00 BC\"", REJECT, NULL},
    {"tstz", "\"0000-12-31T00:00:00Z\"", REJECT, NULL},
    {"tstz", "{\"at\":1}", REJECT, NULL},
    /* timestamptz(3), timestamp, timestamp(3): the typmod rounds, the offset is ignored */
    {"tstz3", "\"2024-02-29T12:34:56.1235Z\"", LOAD, NULL},
    {"tstz3", "\"1999-12-31T23:59:59.9995Z\"", LOAD, NULL},
    {"tstz3", "\"1999-12-31T23:59:59.9994999+02:00\"", LOAD, NULL},
    {"tstz3", "1700000000.0005", LOAD, NULL},
    {"ts", "\"2024-02-29T12:34:56+05:30\"", LOAD, NULL},
    {"ts", "\"2024-01-01T24:00:00\"", LOAD, NULL},
    {"ts", "0", LOAD, NULL},
    {"ts", "\"0001-01-01T00:00:00\"", LOAD, NULL},
    {"ts", "\"9999-12-31T23:59:59.999999\"", LOAD, NULL},
    {"ts", "\"1901-12-13T20:45:52.0000001-1200\"", LOAD, NULL},
    {"ts3", "\"1969-07-20T20:17:40.0005\"", LOAD, NULL},
    {"ts3", "\"2000-01-01T00:00:00.0004999\"", LOAD, NULL},
    {"ts3", "\"1999-12-31T23:59:59.9995\"", LOAD, NULL},
    {"ts3", "-0.0005", LOAD, NULL},
    /* date */
    {"d", "\"2024-02-29\"", LOAD, NULL},
    {"d", "\"2024-02-29T23:59:59-10:00\"", LOAD, NULL},
    {"d", "\"0001-01-01\"", LOAD, NULL},
    {"d", "\"9999-12-31\"", LOAD, NULL},
    {"d", "\"1999-12-31\"", LOAD, NULL},
    {"d", "0", LOAD, NULL},
    {"d", "86399.9", LOAD, NULL},
    {"d", "-1", LOAD, NULL},
    {"d", "\"2024-13-01\"", REJECT, NULL},
    {"d", "\"24-01-01\"", REJECT, NULL},
    {"d", "\"2024-01-01T24:00:00.5\"", REJECT, NULL},
    /* json, jsonb: nested objects, escapes, scalars, NUL */
    {"js", "{\"name\":{\"first\":\"Zoé\",\"last\":\"名前\"},\"tags\":[true,null,1.5e300]}", LOAD, NULL},
    {"js", "{\"q\":\"\\\"quote\\\" \\\\ \\n \\t \\u00e9\"}", LOAD, NULL},
    {"js", "[]", LOAD, NULL},
    {"js", "{ \"dup\" : 1 , \"dup\" : 2 }", LOAD, NULL},
    {"js", "\"plain string\\twith tab\"", LOAD, NULL},
    {"js", "42", LOAD, NULL},
    {"js", "-0.5e-7", LOAD, NULL},
    {"js", "false", LOAD, NULL},
    {"js", "{\"k\":\"\\\\u0000\"}", LOAD, NULL},
    {"js", "\"nul\\u0000\"", REJECT, NULL},
    {"js", "{\"k\":\"\\u0000\"}", REJECT, NULL},
    {"jsb", "{\"location\":{\"street\":{\"number\":4526,\"name\":\"Rue\"},\"coordinates\":{\"latitude\":\"-45.1\"}},\"dob\":{\"age\":61}}", LOAD, NULL},
    {"jsb", "{\"dup\":1,\"dup\":2,\"a\":[1,{\"b\":[]}]}", LOAD, NULL},
    {"jsb", "{\"big\":123456789012345678.5,\"tiny\":1e-300}", LOAD, NULL},
    {"jsb", "{}", LOAD, NULL},
    {"jsb", "\"\\ud83d\\ude00 emoji \\\\N\"", LOAD, NULL},
    {"jsb", "3.14", LOAD, NULL},
    {"jsb", "true", LOAD, NULL},
    {"jsb", "[\"\\u0000\"]", REJECT, NULL},
    /* text, varchar(10), char(5): COPY text escapes, multibyte lengths, padding */
    {"t", "\"plain\"", LOAD, NULL},
    {"t", "\"tab\\tnew\\nline\\\\back \\r\\b\\f\\u000b\"", LOAD, NULL},
    {"t", "\"\\\\N\"", LOAD, NULL},
    {"t", "\"\"", LOAD, NULL},
    {"t", "\"  spaces  \"", LOAD, NULL},
    {"t", "\"Zoé 名前 \\ud83d\\ude00\"", LOAD, NULL},
    {"t", "123", LOAD, NULL},
    {"t", "1.5e300", LOAD, NULL},
    {"t", "true", LOAD, NULL},
    {"t", "{\"a\" : [1, \"x\"]}", LOAD, NULL},
    {"t", "\"nul\\u0000\"", REJECT, NULL},
    {"vc10", "\"abcdefghij\"", LOAD, NULL},
    {"vc10", "\"ééééééééé\\u00e9\"", LOAD, NULL},
    {"vc10", "\"abc   \"", LOAD, NULL},
    {"vc10", "\"\"", LOAD, NULL},
    {"vc10", "\"abcdefghijk\"", REJECT, NULL},
    {"vc10", "1234567890", LOAD, NULL},
    {"ch5", "\"ab\"", LOAD, NULL},
    {"ch5", "\"abcde\"", LOAD, NULL},
    {"ch5", "\"a b  \"", LOAD, NULL},
    {"ch5", "\"ü\"", LOAD, NULL},
    {"ch5", "\"abcdef\"", REJECT, NULL},
    {"ch5", "false", LOAD, NULL},
    {"vc10", "12345678901", PGERR, "22001"},
};
/* clang-format on */
#define NCASES (sizeof k_cases / sizeof *k_cases)

/* Whole randomuser-style records (every column set at once), loaded too. */
static const char *const k_records[] = {
    "{\"id\":9001,\"i2\":61,\"i4\":4526,\"i8\":1700000000123,\"num\":\"-45.1234\","
    "\"num94\":\"0.1\",\"f4\":-45.1234,\"f8\":\"167.6418\",\"b\":true,"
    "\"u\":\"8C2B7A1E-1F9E-4B0E-9C1F-6A5D8E2B4C3A\",\"tstz\":\"1963-05-10T04:18:29.123Z\","
    "\"tstz3\":\"2013-11-22T14:44:07.5675+10:00\",\"ts\":\"1963-05-10T04:18:29.123Z\","
    "\"ts3\":1385131447.5675,\"d\":\"1963-05-10T04:18:29.123Z\","
    "\"js\":{\"title\":\"Mrs\",\"first\":\"Léa\"},\"jsb\":{\"postcode\":74653,\"city\":\"Nîmes\"},"
    "\"t\":\"l\\u00e9a.dupont@example.com\",\"vc10\":\"06-12-33\",\"ch5\":\"FR\"}",
    "{\"id\":9002,\"i2\":\"-1\",\"i4\":0,\"i8\":\"-9223372036854775808\",\"num\":1e-7,"
    "\"num94\":\"-99999.99994\",\"f4\":\"NaN\",\"f8\":\"-Infinity\",\"b\":\"no\","
    "\"u\":\"{00000000-0000-4000-8000-000000000000}\",\"tstz\":-0.000001,\"tstz3\":0,"
    "\"ts\":\"2000-02-29\",\"ts3\":\"2000-02-29 23:59:60\",\"d\":951868800,"
    "\"js\":[],\"jsb\":[{}],\"t\":\"\",\"vc10\":\" \",\"ch5\":\"\"}",
};
#define NRECORDS (sizeof k_records / sizeof *k_records)

static PGconn *g_pg;
static char g_schema[64];
static pc_sink_col g_cols[NCOLS];

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int exec_ok(const char *sql)
{
    PGresult *r = PQexec(g_pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(g_pg));
    PQclear(r);
    return ok;
}

static size_t col_index(const char *name)
{
    for (size_t i = 0; i < NCOLS; i++)
        if (!strcmp(k_cols[i].name, name))
            return i;
    fail_msg("no column %s in the test table", name);
    return 0;
}

/* Runs one COPY with data[0..n). Returns 1 when it loaded, else 0 with the SQLSTATE in state
 * and the message in msg. */
static int copy_in(const char *table, bool binary, const char *data, size_t n, char state[6],
                   char *msg, size_t msgsz)
{
    char sql[256];
    snprintf(sql, sizeof sql, "COPY %s.%s FROM STDIN%s", g_schema, table,
             binary ? " (FORMAT binary)" : "");
    state[0] = '\0';
    msg[0] = '\0';
    PGresult *r = PQexec(g_pg, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        snprintf(msg, msgsz, "%s: %s", sql, PQerrorMessage(g_pg));
        PQclear(r);
        return 0;
    }
    PQclear(r);
    if (PQputCopyData(g_pg, data, (int)n) != 1 || PQputCopyEnd(g_pg, NULL) != 1) {
        snprintf(msg, msgsz, "sending COPY data: %s", PQerrorMessage(g_pg));
        return 0;
    }
    int ok = 1;
    while ((r = PQgetResult(g_pg)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", st ? st : "?????");
            snprintf(msg, msgsz, "%s", PQresultErrorMessage(r));
            msg[strcspn(msg, "\n")] = '\0';
            ok = 0;
        }
        PQclear(r);
    }
    return ok;
}

/* A COPY binary stream of one tuple: header, the tuple, trailer. */
static void binary_stream(pc_buf *out, const pc_buf *tuple)
{
    static const char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    out->len = 0;
    assert_int_equal(pc_buf_append(out, sig, sizeof sig), 0);
    assert_int_equal(pc_sink_put_be(out, 0, 4), 0); /* flags */
    assert_int_equal(pc_sink_put_be(out, 0, 4), 0); /* header extension length */
    assert_int_equal(pc_buf_append(out, tuple->data, tuple->len), 0);
    assert_int_equal(pc_sink_put_be(out, 0xFFFF, 2), 0); /* trailer: field count -1 */
}

static const char *expect_name(expect e)
{
    switch (e) { /* clang-format off */
    case LOAD: return "loaded";
    case REJECT: return "refused by the converter";
    case PGERR: return "refused by PostgreSQL in both formats";
    case PGENC: return "refused by PostgreSQL (text) and the binary encoder";
    } /* clang-format on */
    return "?";
}

static int group_setup(void **state)
{
    (void)state;
    const char *dsn = getenv("PC_PG_DSN");
    if (dsn == NULL || *dsn == '\0') {
        fprintf(stderr, "PC_PG_DSN is not set: start the stack with scripts/stack.sh (it exports "
                        "PC_PG_DSN) and run again\n");
        return -1;
    }
    g_pg = PQconnectdb(dsn);
    if (PQstatus(g_pg) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect with PC_PG_DSN: %s", PQerrorMessage(g_pg));
        return -1;
    }
    PQsetNoticeProcessor(g_pg, quiet, NULL);
    snprintf(g_schema, sizeof g_schema, "pc_binedge_%ld", (long)getpid());
    pc_buf ddl = {0};
    /* UTC: decide_format sends binary with a timestamptz column only in a UTC session */
    pc_buf_printf(&ddl,
                  "SET TimeZone = 'UTC'; SET client_encoding = 'UTF8'; "
                  "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;",
                  g_schema, g_schema);
    for (int t = 0; t < 2; t++) {
        pc_buf_printf(&ddl, " CREATE TABLE %s.%s (", g_schema, t ? "b" : "a");
        for (size_t i = 0; i < NCOLS; i++)
            pc_buf_printf(&ddl, "%s%s %s%s", i ? ", " : "", k_cols[i].name, k_cols[i].type,
                          i ? "" : " NOT NULL");
        pc_buf_puts(&ddl, ");");
    }
    int ok = ddl.data && exec_ok(ddl.data);
    pc_buf_free(&ddl);
    if (!ok)
        return -1;
    for (size_t i = 0; i < NCOLS; i++) {
        pc_sink_col *c = &g_cols[i];
        c->name = k_cols[i].name;
        c->path = k_cols[i].name;
        c->type_name = k_cols[i].type;
        c->type = pc_sink_type_parse(k_cols[i].type, &c->typmod1, &c->typmod2);
        c->nullable = i != 0;
        c->primary_key = i == 0;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_pg && g_schema[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", g_schema);
        exec_ok(sql);
    }
    PQfinish(g_pg);
    g_pg = NULL;
    return 0;
}

/* Every column has a binary form here, with the type (and typmods) the manifest parser gives:
 * the table is one decide_format sends in binary. */
static void test_columns_binary(void **state)
{
    (void)state;
    static const pc_sink_type want[NCOLS] = {
        PC_SINK_T_INT4,      PC_SINK_T_INT2,      PC_SINK_T_INT4,        PC_SINK_T_INT8,
        PC_SINK_T_NUMERIC,   PC_SINK_T_NUMERIC,   PC_SINK_T_FLOAT4,      PC_SINK_T_FLOAT8,
        PC_SINK_T_BOOL,      PC_SINK_T_UUID,      PC_SINK_T_TIMESTAMPTZ, PC_SINK_T_TIMESTAMPTZ,
        PC_SINK_T_TIMESTAMP, PC_SINK_T_TIMESTAMP, PC_SINK_T_DATE,        PC_SINK_T_JSON,
        PC_SINK_T_JSON,      PC_SINK_T_TEXT,      PC_SINK_T_TEXT,        PC_SINK_T_TEXT};
    for (size_t i = 0; i < NCOLS; i++) {
        if (g_cols[i].type != want[i])
            fail_msg("column %s (%s) parses as type %d, expected %d", g_cols[i].name,
                     g_cols[i].type_name, (int)g_cols[i].type, (int)want[i]);
        assert_true(pc_sink_type_binary(&g_cols[i]));
    }
    assert_int_equal(g_cols[col_index("num94")].typmod1, 9);
    assert_int_equal(g_cols[col_index("num94")].typmod2, 4);
    assert_int_equal(g_cols[col_index("vc10")].typmod1, 10);
    assert_int_equal(g_cols[col_index("ch5")].typmod1, 5);
}

/* One record through both formats and into a and b; returns the number of failures. */
static int run_record(pc_sink_map *mt, pc_sink_map *mb, int id, const char *rec, expect want,
                      const char *want_state, size_t *loaded)
{
    pc_buf line = {0}, tuple = {0}, stream = {0};
    char *rt = NULL, *rb = NULL;
    char st_t[6], st_b[6], msg_t[512], msg_b[512];
    int bad = 0;
    assert_int_equal(pc_sink_map_line(mt, rec, strlen(rec), -1, &line, &rt), 0);
    assert_int_equal(pc_sink_map_line(mb, rec, strlen(rec), -1, &tuple, &rb), 0);
#define BAD(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "MISMATCH id %d %s (expected: %s): ", id, rec, expect_name(want));         \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        bad++;                                                                                     \
    } while (0)
    if (want == REJECT) {
        if (!rt || !rb)
            BAD("text converter %s, binary %s", rt ? rt : "accepted it", rb ? rb : "accepted it");
        else if (strcmp(rt, rb))
            BAD("reasons differ: text \"%s\", binary \"%s\"", rt, rb);
        if (line.len || tuple.len)
            BAD("a refused record left %zu text / %zu binary bytes", line.len, tuple.len);
        goto done;
    }
    if (rt) {
        BAD("the text converter refused it: %s", rt);
        goto done;
    }
    int ok_t = copy_in("a", false, line.data, line.len, st_t, msg_t, sizeof msg_t);
    int ok_b = 0;
    st_b[0] = msg_b[0] = '\0';
    if (!rb) {
        binary_stream(&stream, &tuple);
        ok_b = copy_in("b", true, stream.data, stream.len, st_b, msg_b, sizeof msg_b);
    }
    switch (want) {
    case LOAD:
        if (!ok_t)
            BAD("COPY text refused %s: %s [%s]", line.data, msg_t, st_t);
        if (rb)
            BAD("the binary encoder refused it: %s", rb);
        else if (!ok_b)
            BAD("COPY binary refused it: %s [%s]", msg_b, st_b);
        if (ok_t && ok_b)
            (*loaded)++;
        break;
    case PGERR:
    case PGENC:
        if (ok_t || strcmp(st_t, want_state))
            BAD("COPY text of %s: %s [%s], expected SQLSTATE %s", line.data,
                ok_t ? "loaded" : msg_t, st_t, want_state);
        if (want == PGERR && rb)
            BAD("the binary encoder refused it (%s), expected PostgreSQL's SQLSTATE %s", rb,
                want_state);
        else if (want == PGERR && (ok_b || strcmp(st_b, want_state)))
            BAD("COPY binary: %s [%s], expected SQLSTATE %s", ok_b ? "loaded" : msg_b, st_b,
                want_state);
        if (want == PGENC && (!rb || !strstr(rb, "out of range")))
            BAD("binary: %s, expected the encoder to refuse it as out of range",
                rb     ? rb
                : ok_b ? "loaded by COPY"
                       : msg_b);
        break;
    case REJECT:
        break;
    }
#undef BAD
done:
    free(rt);
    free(rb);
    pc_buf_free(&line);
    pc_buf_free(&tuple);
    pc_buf_free(&stream);
    return bad;
}

/* The rows of a and b differ in some column: prints each difference with the value that made
 * the row. Returns the number of differing cells. */
static int report_differences(void)
{
    int n = 0;
    char sql[512];
    for (size_t i = 1; i < NCOLS; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT id, a.%1$s::text, b.%1$s::text FROM %2$s.a JOIN %2$s.b USING (id) "
                 "WHERE a.%1$s::text IS DISTINCT FROM b.%1$s::text ORDER BY 1",
                 k_cols[i].name, g_schema);
        PGresult *r = PQexec(g_pg, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        for (int k = 0; k < PQntuples(r); k++, n++) {
            int id = atoi(PQgetvalue(r, k, 0));
            const char *v = id >= 1 && (size_t)id <= NCASES ? k_cases[id - 1].json : "(record)";
            fprintf(stderr,
                    "DIFFERENT id %d column %s (%s) value %s: text COPY -> %.80s, binary "
                    "COPY -> %.80s\n",
                    id, k_cols[i].name, k_cols[i].type, v,
                    PQgetisnull(r, k, 1) ? "NULL" : PQgetvalue(r, k, 1),
                    PQgetisnull(r, k, 2) ? "NULL" : PQgetvalue(r, k, 2));
        }
        PQclear(r);
    }
    snprintf(sql, sizeof sql,
             "SELECT coalesce(a.id, b.id), a.id IS NULL FROM %1$s.a FULL JOIN %1$s.b USING (id) "
             "WHERE a.id IS NULL OR b.id IS NULL ORDER BY 1",
             g_schema);
    PGresult *r = PQexec(g_pg, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int k = 0; k < PQntuples(r); k++, n++)
        fprintf(stderr, "DIFFERENT id %s: only the %s COPY loaded it\n", PQgetvalue(r, k, 0),
                PQgetvalue(r, k, 1)[0] == 't' ? "binary" : "text");
    PQclear(r);
    return n;
}

static long count_rows(const char *sql)
{
    PGresult *r = PQexec(g_pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(g_pg));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static void test_formats_agree(void **state)
{
    (void)state;
    pc_sink_map *mt = NULL, *mb = NULL;
    assert_int_equal(pc_sink_map_new(&mt, g_cols, NCOLS), 0);
    assert_int_equal(pc_sink_map_new(&mb, g_cols, NCOLS), 0);
    pc_sink_map_set_binary(mb, true);
    size_t loaded = 0, nload = 0, per_col[NCOLS] = {0};
    int bad = 0;
    for (size_t k = 0; k < NCASES; k++) {
        const tcase *c = &k_cases[k];
        per_col[col_index(c->col)]++;
        nload += c->want == LOAD;
        int id = (int)k + 1;
        char rec[1024];
        int w = snprintf(rec, sizeof rec, "{\"id\":%d,\"%s\":%s}", id, c->col, c->json);
        assert_true(w > 0 && (size_t)w < sizeof rec);
        bad += run_record(mt, mb, id, rec, c->want, c->state, &loaded);
    }
    for (size_t k = 0; k < NRECORDS; k++) {
        nload++;
        bad += run_record(mt, mb, 9001 + (int)k, k_records[k], LOAD, NULL, &loaded);
    }
    pc_sink_map_free(mt);
    pc_sink_map_free(mb);
    for (size_t i = 1; i < NCOLS; i++)
        if (per_col[i] < 2)
            fail_msg("column %s has %zu edge values", k_cols[i].name, per_col[i]);

    /* what landed: the same rows on both sides, as many as were loaded */
    char cols[512] = "";
    for (size_t i = 0; i < NCOLS; i++)
        snprintf(cols + strlen(cols), sizeof cols - strlen(cols), "%s%s::text", i ? ", " : "",
                 k_cols[i].name);
    char sql[1400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT %s FROM %s.a EXCEPT ALL SELECT %s FROM %s.b) x", cols,
             g_schema, cols, g_schema);
    long a_not_b = count_rows(sql);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT %s FROM %s.b EXCEPT ALL SELECT %s FROM %s.a) x", cols,
             g_schema, cols, g_schema);
    long b_not_a = count_rows(sql);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.a", g_schema);
    long na = count_rows(sql);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.b", g_schema);
    long nb = count_rows(sql);
    int diffs = a_not_b || b_not_a ? report_differences() : 0;
    fprintf(stderr,
            "sink_binary: %zu edge values + %zu records, %zu expected to load, %zu loaded in "
            "both formats; table a %ld rows, b %ld rows; rows of a not in b %ld, of b not in a "
            "%ld; outcome mismatches %d\n",
            NCASES, NRECORDS, nload, loaded, na, nb, a_not_b, b_not_a, bad);
    assert_int_equal(bad, 0);
    assert_int_equal(diffs, 0);
    assert_int_equal(a_not_b, 0);
    assert_int_equal(b_not_a, 0);
    assert_int_equal(loaded, nload);
    assert_int_equal(na, (long)nload);
    assert_int_equal(nb, (long)nload);
    assert_true(NCASES >= 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_binary),
        cmocka_unit_test(test_formats_agree),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
