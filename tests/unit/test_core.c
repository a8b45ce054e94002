/* test_core.c: error objects, buffers, kv lists and secret redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>

#include <cmocka.h>

#include "core.h"

static void check_redact(const char *in, const char *want)
{
    char *got = pc_redact(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_redact_dsn(void **state)
{
    (void)state;
    check_redact("host=db port=5432 user=app password=hunter2 dbname=x",
                 "host=db port=5432 user=app password=<redacted> dbname=x");
    check_redact("host=db password = 'a b\\'c' dbname=x", "host=db password = '<redacted>' dbname=x");
    check_redact("postgresql://app:hunter2@db:5432/x?sslmode=require",
                 "postgresql://app:<redacted>@db:5432/x?sslmode=require");
    check_redact("postgres://db/x?user=a&password=s3cret&sslmode=off",
                 "postgres://db/x?user=a&password=<redacted>&sslmode=off");
    check_redact("host=db user=app", "host=db user=app");
    /* a key naming a secret is redacted even when libpq has no such key */
    check_redact("host=db nopassword=1", "host=db nopassword=<redacted>");
}

static void test_secret_keys(void **state)
{
    (void)state;
    assert_true(pc_is_secret_key("password"));
    assert_true(pc_is_secret_key("NOCODB_TOKEN"));
    assert_true(pc_is_secret_key("role_password"));
    assert_false(pc_is_secret_key("email"));
    assert_false(pc_is_secret_key("partitions"));
}

static void test_error_first_wins(void **state)
{
    (void)state;
    pc_error err = {0};
    assert_int_equal(pc_error_set(&err, PC_EUNAVAIL, "broker %s down", "b1"), PC_EUNAVAIL);
    pc_error_set(&err, PC_EINVAL, "later");
    pc_error_prefix(&err, "apply");
    assert_int_equal(err.code, PC_EUNAVAIL);
    assert_string_equal(err.msg, "apply: broker b1 down");
}

static int safe_printf(pc_buf *b, size_t cut, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int safe_printf(pc_buf *b, size_t cut, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = pc_buf_vprintf_safe(b, cut, fmt, ap);
    va_end(ap);
    return rc;
}

/* One problem, one line: a value holding a newline cannot forge a second "FILE:1:1:" line; a
 * long value is cut with its length stated; numbers format as printf does. */
static void test_safe_printf(void **state)
{
    (void)state;
    pc_buf b = {0};
    assert_int_equal(safe_printf(&b, 0, "key '%s' at %d:%zu (%.1f%%) %lld %02x %c",
                                 "a\nx.yaml:1:1: forged\tz\x1b[31m", -3, (size_t)7, 2.5,
                                 (long long)-9000000000LL, 10, 'q'),
                     0);
    assert_string_equal(b.data, "key 'a\\nx.yaml:1:1: forged\\tz\\x1b[31m' at -3:7 (2.5%) "
                                "-9000000000 0a q");
    pc_buf_free(&b);

    char *big = malloc(3u << 20);
    assert_non_null(big);
    memset(big, 'n', (3u << 20) - 1);
    big[(3u << 20) - 1] = '\0';
    assert_int_equal(safe_printf(&b, 16, "name '%s' is bad", big), 0);
    assert_string_equal(b.data, "name 'nnnnnnnnnnnnnnnn... (3145727 bytes in all)' is bad");
    pc_buf_free(&b);
    free(big);

    /* a cut never splits a UTF-8 sequence; precision bounds what is read */
    assert_int_equal(safe_printf(&b, 3, "%s|%.2s", "a\xc3\xa9\xc3\xa9", "xyz"), 0);
    assert_string_equal(b.data, "a... (5 bytes in all)|xy");
    pc_buf_free(&b);

    /* pc_error_set escapes too */
    pc_error err = {0};
    pc_error_set(&err, PC_EINVAL, "unknown worker '%s'", "w\r\nFAKE: ok");
    assert_string_equal(err.msg, "unknown worker 'w\\r\\nFAKE: ok'");
}

/* A message longer than the error object holds is cut, never overflows; context prefixed onto a
 * full message keeps the prefix and cuts the tail. */
static void test_error_truncation(void **state)
{
    (void)state;
    char big[3 * PC_ERROR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pc_error err = {0};
    pc_error_set(&err, PC_EINVAL, "value %s end", big);
    assert_int_equal(strlen(err.msg), PC_ERROR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "value xxx", 9);
    pc_error_prefix(&err, "sink %s", "users");
    assert_int_equal(strlen(err.msg), PC_ERROR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "sink users: value xxx", 21);
    /* a huge context is cut to 511 bytes; the message it explains stays whole */
    pc_error e2 = {0};
    pc_error_set(&e2, PC_EIO, "disk full");
    pc_error_prefix(&e2, "%s", big);
    assert_int_equal(strlen(e2.msg), 511 + strlen(": disk full"));
    assert_string_equal(e2.msg + 511, ": disk full");
}

static void test_buf_kvlist(void **state)
{
    (void)state;
    pc_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pc_buf_printf(&b, "%d,", i), 0);
    char *s = pc_buf_detach(&b);
    assert_int_equal(strncmp(s, "0,1,2,", 6), 0);
    free(s);
    pc_kvlist l = {0};
    pc_kvlist_add(&l, "b", "2");
    pc_kvlist_set(&l, "a", "1");
    pc_kvlist_set(&l, "b", "3");
    pc_kvlist_sort(&l);
    assert_string_equal(l.items[0].key, "a");
    assert_string_equal(pc_kvlist_get(&l, "b"), "3");
    pc_kvlist_free(&l);
    pc_kvlist_free(NULL);
    assert_int_equal(pc_levenshtein("partitons", "partitions"), 1);
    char hex[65];
    pc_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* pc_envfile_load: values as written, comments skipped, a later line wins; refused when others
 * may read it or a line is not KEY=VALUE, and the message never holds a value. */
static void test_envfile(void **state)
{
    (void)state;
    char dir[] = "/tmp/pc-envfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = pc_asprintf("%s/creds.env", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# pipectl credentials\nAWS_ACCESS_KEY_ID=AKIA1\n\nAWS_SECRET_ACCESS_KEY=a=b c'd\r\n"
          "PIPECTL_REPO_KEY=first\nPIPECTL_REPO_KEY=second", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    pc_kvlist kv = {0};
    pc_error err = {0};
    assert_int_equal(pc_envfile_load(path, &kv, &err), 0);
    assert_string_equal(pc_kvlist_get(&kv, "AWS_ACCESS_KEY_ID"), "AKIA1");
    assert_string_equal(pc_kvlist_get(&kv, "AWS_SECRET_ACCESS_KEY"), "a=b c'd");
    assert_string_equal(pc_kvlist_get(&kv, "PIPECTL_REPO_KEY"), "second");
    pc_kvlist_free(&kv);

    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(pc_envfile_load(path, &kv, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(kv.n, 0);

    f = fopen(path, "w");
    fputs("GOOD=1\nthis-is-the-secret\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    err = (pc_error){0};
    assert_int_equal(pc_envfile_load(path, &kv, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_null(strstr(err.msg, "this-is-the-secret"));
    pc_kvlist_free(&kv);

    char *link = pc_asprintf("%s/link.env", dir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(pc_envfile_load(link, &kv, &err), PC_EIO);
    assert_int_equal(pc_envfile_load("/nonexistent/creds.env", &kv, &err), PC_ENOTFOUND);
    unlink(link);
    unlink(path);
    rmdir(dir);
    free(link);
    free(path);
}

/* The calendar arithmetic cron, the S3 client and the sink's binary COPY share: known dates,
 * and a round trip over every day of 800 years around the epochs (leap years of every kind). */
static void test_civil_days(void **state)
{
    (void)state;
    assert_int_equal(pc_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(pc_days_from_civil(2000, 1, 1), 10957); /* PostgreSQL's epoch */
    assert_int_equal(pc_days_from_civil(2000, 3, 1), 11017); /* 2000 is a leap year */
    assert_int_equal(pc_days_from_civil(1900, 3, 1) - pc_days_from_civil(1900, 2, 28), 1);
    assert_int_equal(pc_days_from_civil(2026, 12, 6), 20793);
    assert_int_equal(pc_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(pc_days_from_civil(1, 1, 1), -719162);
    int64_t prev = pc_days_from_civil(1700, 1, 1) - 1;
    for (int64_t z = pc_days_from_civil(1700, 1, 1); z < pc_days_from_civil(2500, 1, 1); z++) {
        int64_t y;
        int m, d;
        pc_civil_from_days(z, &y, &m, &d);
        assert_true(m >= 1 && m <= 12 && d >= 1 && d <= 31);
        assert_int_equal(pc_days_from_civil(y, m, d), z);
        assert_int_equal(z, prev + 1);
        prev = z;
    }
}

/* pc_index answers what a linear search for the first element of that name does: over 3,000
 * elements with repeated names, NULL names and names absent, for arrays of structs and of
 * strings, and on an empty index. */
typedef struct idx_item {
    int id;
    const char *name;
} idx_item;

static const void *idx_linear(const idx_item *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].name != NULL && strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

static void test_index(void **state)
{
    (void)state;
    enum { N = 3000 };
    static char names[N][16];
    static idx_item items[N];
    static const char *strs[N];
    for (int i = 0; i < N; i++) {
        /* every 7th name repeats an earlier one; every 11th is NULL; the rest unique */
        snprintf(names[i], sizeof names[i], "t%05d", (i % 7 == 6) ? (i * 31) % (i ? i : 1) : i);
        items[i] = (idx_item){.id = i, .name = (i % 11 == 10) ? NULL : names[i]};
        strs[i] = names[(i * 17) % N];
    }
    pc_index ix = {0}, sx = {0}, empty = {0};
    pc_index_add_array(&ix, items, N, sizeof items[0], offsetof(idx_item, name));
    pc_index_add_array(&sx, strs, N, sizeof strs[0], 0);
    assert_int_equal(pc_index_sort(&ix), 0);
    assert_int_equal(pc_index_sort(&sx), 0);
    assert_int_equal(pc_index_sort(&empty), 0);
    for (int i = 0; i < N + 100; i++) {
        char probe[16];
        snprintf(probe, sizeof probe, "t%05d", i); /* i >= N: absent */
        assert_ptr_equal(pc_index_find(&ix, probe), idx_linear(items, N, probe));
        const void *want = NULL;
        for (int k = 0; k < N && want == NULL; k++)
            if (strcmp(strs[k], probe) == 0)
                want = &strs[k];
        assert_ptr_equal(pc_index_find(&sx, probe), want);
    }
    assert_null(pc_index_find(&ix, "t"));
    assert_null(pc_index_find(&ix, "u"));
    assert_null(pc_index_find(&ix, NULL));
    assert_null(pc_index_find(&empty, "t00001"));
    pc_index_free(&ix);
    pc_index_free(&sx);
    pc_index_free(&empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_dsn),
        cmocka_unit_test(test_secret_keys),
        cmocka_unit_test(test_error_first_wins),
        cmocka_unit_test(test_buf_kvlist),
        cmocka_unit_test(test_envfile),
        cmocka_unit_test(test_safe_printf),
        cmocka_unit_test(test_error_truncation),
        cmocka_unit_test(test_civil_days),
        cmocka_unit_test(test_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
