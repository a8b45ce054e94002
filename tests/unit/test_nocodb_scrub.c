/* test_nocodb_scrub.c: NocoDB's error texts lose every secret the client holds (API token,
 * password, JWT, the source password of the request in flight), in every form a server may echo
 * them (as is, JSON-escaped, percent-encoded), and a message cut to its buffer never keeps part
 * of one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nocodb_int.h"

static void test_scrub_forms(void **state)
{
    (void)state;
    pc_nocodb nc = {.token = "tok-3f9a1c", .password = "pa\"ss word", .jwt = "eyJhbGciOi.x.y",
                    .extra_secret = "srcPw!42"};
    const char *in = "{\"msg\":\"bad token tok-3f9a1c for pa\\\"ss word\"} jwt=eyJhbGciOi.x.y "
                     "url=postgres://u:srcPw%2142@db pw=srcPw!42 pass=pa%22ss%20word";
    char *out = nc_scrubbed(&nc, in, strlen(in));
    assert_non_null(out);
    assert_null(strstr(out, "tok-3f9a1c"));
    assert_null(strstr(out, "ss word"));
    assert_null(strstr(out, "eyJhbGciOi"));
    assert_null(strstr(out, "srcPw"));
    assert_null(strstr(out, "pa%22ss"));
    assert_non_null(strstr(out, "bad token " PC_REDACTED));
    free(out);
}

static void test_scrub_in_place_cut(void **state)
{
    (void)state;
    pc_nocodb nc = {.token = "abcdefghijklmnop"};
    /* the secret straddles the buffer's end once <redacted> is longer than what it replaced */
    char buf[32];
    strcpy(buf, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    memcpy(buf, "token=abcdefghijklmnop tail", 28);
    nc_scrub(&nc, buf, sizeof buf);
    assert_null(strstr(buf, "abcdef"));
    assert_non_null(strstr(buf, "token=<redacted>"));
    assert_true(strlen(buf) < sizeof buf);

    char small[12] = "abcdefghijk";
    pc_nocodb nc2 = {.token = "defghijk"};
    nc_scrub(&nc2, small, sizeof small);
    assert_null(strstr(small, "defg"));
    assert_null(strstr(small, "ghijk"));
}

static void test_no_secrets(void **state)
{
    (void)state;
    pc_nocodb nc = {0};
    char *out = nc_scrubbed(&nc, "nothing to hide", 7);
    assert_string_equal(out, "nothing");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub_forms),
        cmocka_unit_test(test_scrub_in_place_cut),
        cmocka_unit_test(test_no_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
