/* test_secrets.c: the one redaction function (pc_redact), scrubbing the manifest's secrets
 * (pc_scrub, pc_secrets_add, pc_error_set), the DSN read by libpq's own parser (pc_pg_dsn_*)
 * and the manifest's list of secrets. Passwords hold / @ % : blank quote ' \ and tab. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core.h"
#include "manifest.h"
#include "postgres.h"

typedef struct redact_case {
    const char *in;
    const char *want;
} redact_case;

static void test_redact_table(void **state)
{
    (void)state;
    static const redact_case cases[] = {
        /* key=value */
        {"host=db user=u password=hunter2 dbname=x", "host=db user=u password=<redacted> dbname=x"},
        {"host=db sslpassword=k3y! dbname=x", "host=db sslpassword=<redacted> dbname=x"},
        {"host=db\tpassword\t=\ts3cr3t\tdbname=x", "host=db\tpassword\t=\t<redacted>\tdbname=x"},
        {"password='a b\\'c \"d' host=x", "password='<redacted>' host=x"},
        {"password = 'p/@%: \\\\x' user=u", "password = '<redacted>' user=u"},
        {"PASSWORD=Up user=u", "PASSWORD=<redacted> user=u"},
        {"sasl.password=abc: connect failed", "sasl.password=<redacted> connect failed"},
        {"password=${PG_PASSWORD:-a b} dbname=x", "password=<redacted> dbname=x"},
        /* URIs: a raw '/', '@' or bad escape in the password is still the password */
        {"postgresql://u:p%2Fw%40rd@h:5432/db", "postgresql://u:<redacted>@h:5432/db"},
        {"postgresql://pipectl:Zx9/Qm+SECRET@localhost/app",
         "postgresql://pipectl:<redacted>@localhost/app"},
        {"postgresql://u:a@b@h/db", "postgresql://u:<redacted>@h/db"},
        {"postgresql://u:ab%zz@h/db", "postgresql://u:<redacted>@h/db"},
        {"postgres://h/db?user=a&password=s3c:r/et&sslmode=off",
         "postgres://h/db?user=a&password=<redacted>&sslmode=off"},
        {"postgres://h/db?sslpassword=x%20y", "postgres://h/db?sslpassword=<redacted>"},
        {"NocoDB http://admin:pa:ss@nocodb:8080: HTTP 500",
         "NocoDB http://admin:<redacted>@nocodb:8080: HTTP 500"},
        {"{\"url\": \"http://u:p/w@h:8080\"}", "{\"url\": \"http://u:<redacted>@h:8080\"}"},
        {"https://ghp_abc123@github.com/o/r.git", "https://<redacted>@github.com/o/r.git"},
        /* nothing to hide */
        {"ssh://git@github.com/o/r", "ssh://git@github.com/o/r"},
        {"postgresql://pipectl@localhost/app", "postgresql://pipectl@localhost/app"},
        {"http://localhost:8080/api/v1", "http://localhost:8080/api/v1"},
        {"host=db user=app dbname=x", "host=db user=app dbname=x"},
        {"mail admin@example.com: token expired", "mail admin@example.com: token expired"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = pc_redact(cases[i].in);
        assert_non_null(got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: pc_redact(\"%s\") = \"%s\", want \"%s\"", i, cases[i].in, got,
                     cases[i].want);
        free(got);
    }
    assert_null(pc_redact(NULL));
}

static void test_scrub(void **state)
{
    (void)state;
    const char *const secrets[] = {"hunter2", "hunter22", "ab", NULL};
    char *s = pc_scrub("x hunter22 y hunter2z", secrets);
    assert_string_equal(s, "x <redacted> y <redacted>z"); /* longest first */
    free(s);
    /* a short secret only where it stands alone */
    s = pc_scrub("ab cab abc (ab).", secrets);
    assert_string_equal(s, "<redacted> cab abc (<redacted>).");
    free(s);
    s = pc_scrub("nothing", NULL);
    assert_string_equal(s, "nothing");
    free(s);
    assert_true(pc_has_secret("a hunter2", secrets));
    assert_false(pc_has_secret("a hunter", secrets));
}

/* Every form a password with / @ % : blank quotes \ and tab takes in what pipectl prints. */
static void test_secret_forms(void **state)
{
    (void)state;
    const char *pw = "p/@%: \"q'\\\tZ9";
    pc_secrets set = {0};
    assert_int_equal(pc_secrets_add(&set, pw), 0);
    assert_int_equal(pc_secrets_add(&set, NULL), 0);
    assert_int_equal(pc_secrets_add(&set, ""), 0);
    const char *const shown[] = {
        "p/@%: \"q'\\\tZ9",                /* raw */
        "p%2F%40%25%3A%20%22q%27%5C%09Z9", /* percent-encoded */
        "p/@%: \\\"q'\\\\\\tZ9",           /* JSON string, quoted log value */
        "p/@%: \"q'\\\\tZ9",               /* error message (tab escaped) */
        "p/@%: \"q\\'\\\\\tZ9",            /* libpq-quoted */
        "p/@%: \"q'\\ Z9",                 /* libpq text, blanks as spaces */
    };
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        char *text = pc_asprintf("before %s after", shown[i]);
        char *s = pc_scrub(text, pc_secrets_list(&set));
        if (strcmp(s, "before <redacted> after") != 0)
            fail_msg("form %zu: \"%s\" scrubbed to \"%s\"", i, text, s);
        free(s);
        free(text);
    }
    pc_secrets_dispose(&set);
    /* a percent-encoded value is also known decoded */
    assert_int_equal(pc_secrets_add(&set, "p%2Fw%40rd"), 0);
    char *s = pc_scrub("[p/w@rd]", pc_secrets_list(&set));
    assert_string_equal(s, "[<redacted>]");
    free(s);
    pc_secrets_dispose(&set);
    pc_secrets_dispose(&set); /* twice: harmless */
}

static void test_error_scrubbed(void **state)
{
    (void)state;
    pc_secrets set = {0};
    assert_int_equal(pc_secrets_add(&set, "Zx9/Qm+SECRET"), 0);
    pc_secrets_install(pc_secrets_list(&set));
    pc_error err = {0};
    pc_error_set(&err, PC_EUNAVAIL, "libpq: could not parse \"%s\"", "Zx9/Qm+SECRET\t");
    assert_null(strstr(err.msg, "SECRET"));
    pc_error_prefix(&err, "at Zx9/Qm+SECRET");
    assert_null(strstr(err.msg, "SECRET"));
    char *r = pc_redact("log: Zx9/Qm+SECRET");
    assert_string_equal(r, "log: <redacted>");
    free(r);
    /* cut to size after scrubbing: no prefix of a secret survives the cut */
    char big[PC_ERROR_MSG_MAX];
    memset(big, 'x', sizeof big);
    big[PC_ERROR_MSG_MAX - 8] = '\0';
    pc_error e2 = {0};
    pc_error_set(&e2, PC_EINVAL, "%s%s", big, "Zx9/Qm+SECRET");
    assert_null(strstr(e2.msg, "Zx9"));
    pc_secrets_install(NULL);
    pc_secrets_dispose(&set);
}

typedef struct dsn_case {
    const char *dsn;
    bool ok;
    const char *hidden[4]; /* never in the problem */
} dsn_case;

static void test_dsn_check(void **state)
{
    (void)state;
    static const dsn_case cases[] = {
        {"host=h port=5432 password='a b\\'c/@%:' dbname=d", true, {NULL}},
        {"host=h\tsslpassword=k3y\tdbname=d", true, {NULL}},
        {"postgresql://u:p%2Fw%40rd%25%3A%20%22%27@h:5432/db", true, {NULL}},
        {"postgresql://pipectl@localhost/app", true, {NULL}},
        {"postgresql://u:pa:ss#w?x@h/db", true, {NULL}}, /* libpq reads ':' '#' '?' here */
        /* libpq misreads these: part of the password would be the host, port or dbname */
        {"postgresql://pipectl:Zx9/Qm+SECRET@localhost/app", false, {"Zx9", "Qm+SECRET", NULL}},
        {"postgresql://u:a@b@h/db", false, {"a@b", NULL}},
        {"postgresql://u:a/b@c@h:5432/db", false, {"a/b", "b@c", NULL}},
        /* libpq cannot parse these and quotes what it read */
        {"postgresql://u:ab%zz@h/db", false, {"ab%zz", NULL}},
        {"host=h password=ab cdef dbname=x", false, {"cdef", NULL}},
        {"host=h password='Unterm9x dbname=x", false, {"Unterm9x", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *problem = NULL;
        int rc = pc_pg_dsn_check(cases[i].dsn, &problem);
        if (cases[i].ok) {
            if (rc != 0)
                fail_msg("case %zu (%s): refused: %s", i, cases[i].dsn, problem);
            assert_null(problem);
            continue;
        }
        if (rc != PC_EINVAL)
            fail_msg("case %zu (%s): accepted", i, cases[i].dsn);
        assert_non_null(problem);
        for (size_t k = 0; cases[i].hidden[k] != NULL; k++)
            if (strstr(problem, cases[i].hidden[k]) != NULL)
                fail_msg("case %zu: the problem shows '%s': %s", i, cases[i].hidden[k], problem);
        free(problem);
    }
}

static void test_dsn_secrets_and_redacted(void **state)
{
    (void)state;
    pc_secrets set = {0};
    assert_int_equal(
        pc_pg_dsn_secrets("postgresql://u:p%2Fw%40rd@h:5433/db?sslpassword=zz9x", &set), 0);
    char *s = pc_scrub("p/w@rd p%2Fw%40rd zz9x", pc_secrets_list(&set));
    assert_string_equal(s, "<redacted> <redacted> <redacted>");
    free(s);
    pc_secrets_dispose(&set);

    char *r = pc_pg_dsn_redacted("postgresql://u:p%2Fw%40rd@h:5433/db?sslpassword=zz9x");
    assert_non_null(r);
    assert_non_null(strstr(r, "host=h"));
    assert_non_null(strstr(r, "port=5433"));
    assert_non_null(strstr(r, " password=<redacted>"));
    assert_non_null(strstr(r, "sslpassword=<redacted>"));
    assert_null(strstr(r, "p/w"));
    assert_null(strstr(r, "zz9x"));
    free(r);
    r = pc_pg_dsn_redacted("host='a b' password='x y'");
    assert_string_equal(r, "password=<redacted> host='a b'");
    free(r);
}

static const char k_manifest[] =
    "apiVersion: pipectl/v1\n"
    "kind: Pipeline\n"
    "metadata: {name: sec}\n"
    "postgres:\n"
    "  dsn: \"postgresql://pipectl:Pg%2Fpw%40x@localhost/app\"\n"
    "nocodb:\n"
    "  url: \"http://admin:Nc:url/pw@localhost:8080\"\n"
    "  token: tok-123456\n"
    "  base: Users\n"
    "  role: nocodb\n"
    "  role_password: \"Role pw'9\"\n"
    "git:\n"
    "  repo: ./state\n"
    "  push: origin\n"
    "  remote_url: \"https://x-access-token:Git@tok@example.com/s.git\"\n";

static void test_manifest_secrets(void **state)
{
    (void)state;
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    int rc =
        pc_manifest_parse(&m, "t.yaml", k_manifest, sizeof k_manifest - 1, NULL, NULL, &d, &err);
    for (size_t i = 0; i < d.n; i++)
        print_error("%s\n", d.items[i].message);
    assert_int_equal(rc, 0);
    pc_secrets set = {0};
    assert_int_equal(pc_manifest_secrets(m, &set), 0);
    static const char *const want[] = {"Pg%2Fpw%40x", "Pg/pw@x",   "Nc:url/pw",
                                       "tok-123456",  "Role pw'9", "Git@tok"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *text = pc_asprintf("[%s]", want[i]);
        char *s = pc_scrub(text, pc_secrets_list(&set));
        if (strcmp(s, "[<redacted>]") != 0)
            fail_msg("'%s' is not among the manifest's secrets: %s", want[i], s);
        free(s);
        free(text);
    }
    pc_secrets_dispose(&set);
    pc_diags_free(&d);
    pc_manifest_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_table),     cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_secret_forms),     cmocka_unit_test(test_error_scrubbed),
        cmocka_unit_test(test_dsn_check),        cmocka_unit_test(test_dsn_secrets_and_redacted),
        cmocka_unit_test(test_manifest_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
