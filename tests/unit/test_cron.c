/* test_cron.c: the backup schedule (pkg/backup/cron.c, pure): parsing 5-field cron expressions
 * (lists, ranges, steps, names, '*', errors naming the field), next and previous fire times in
 * UTC across hour, day, month, year and leap-day boundaries, the day-of-month / day-of-week OR
 * rule, expressions that never fire, and the freshness rule `status` applies.
 *
 * Expected times are written as calendar dates and converted with the C library's timegm, an
 * implementation independent of cron.c's own calendar code; a brute-force cross-check compares
 * next/prev with a minute-by-minute scan (gmtime_r) for many expressions and start times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup.h"

/* "2024-02-29 03:00" (UTC) -> unix seconds */
static int64_t T(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec);
    assert_true(n >= 5);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void fmt(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S %a", &tm);
}

static pc_cron parse_ok(const char *expr)
{
    pc_cron c;
    pc_error err = {0};
    int rc = pc_cron_parse(expr, &c, &err);
    if (rc != 0)
        fail_msg("'%s' should parse: %s", expr, err.msg);
    return c;
}

/* ---------- parsing ---------- */

static void test_parse_fields(void **state)
{
    (void)state;
    pc_cron c = parse_ok("0 3 * * *");
    assert_int_equal(c.minute, 1);
    assert_int_equal(c.hour, 1u << 3);
    assert_int_equal(c.dom, 0xfffffffeu); /* 1..31 */
    assert_int_equal(c.month, 0x1ffe);    /* 1..12 */
    assert_int_equal(c.dow, 0x7f);
    assert_true(c.dom_star);
    assert_true(c.dow_star);

    c = parse_ok("*/15 8-18/2 1,15 jan-mar,DEC mon-fri");
    assert_int_equal(c.minute, (1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45));
    assert_int_equal(c.hour,
                     (1u << 8) | (1u << 10) | (1u << 12) | (1u << 14) | (1u << 16) | (1u << 18));
    assert_int_equal(c.dom, (1u << 1) | (1u << 15));
    assert_int_equal(c.month, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
    assert_int_equal(c.dow, 0x3e); /* mon..fri */
    assert_false(c.dom_star);
    assert_false(c.dow_star);

    c = parse_ok("5/20 0 * * 7"); /* N/STEP: 5,25,45; 7 is Sunday */
    assert_int_equal(c.minute, (1ull << 5) | (1ull << 25) | (1ull << 45));
    assert_int_equal(c.dow, 1);
    c = parse_ok("0 0 * * 5-7"); /* fri, sat, sun */
    assert_int_equal(c.dow, (1 << 5) | (1 << 6) | 1);
    c = parse_ok("  59\t23  31 12   0  "); /* any blank separates */
    assert_int_equal(c.minute, 1ull << 59);
    assert_int_equal(c.dom, 1u << 31);
    c = parse_ok("0-59/1 * * * *");
    assert_int_equal(c.minute, (1ull << 60) - 1);
    c = parse_ok("0 0 */10 * *"); /* '*' with a step still counts as '*' for the OR rule */
    assert_true(c.dom_star);
    assert_int_equal(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *want;
    } cases[] = {
        {"", "has 0 field(s)"},
        {"0 3 * *", "has 4 field(s)"},
        {"0 3 * * * *", "more than 5 fields"},
        {"60 * * * *", "minute value 60 is out of range 0-59"},
        {"* 24 * * *", "hour value 24 is out of range 0-23"},
        {"* * 0 * *", "day-of-month value 0 is out of range 1-31"},
        {"* * * 13 *", "month value 13 is out of range 1-12"},
        {"* * * * 8", "day-of-week value 8 is out of range 0-7"},
        {"5-1 * * * *", "minute range 5-1 runs backwards"},
        {"*/0 * * * *", "minute step 0 is out of range 1-59"},
        {"*/ * * * *", "minute field '*/'"},
        {"1,,2 * * * *", "empty or overlong list item"},
        {"1, * * * *", "empty or overlong list item"},
        {"x * * * *", "minute field 'x'"},
        {"* * * foo *", "month field 'foo'"},
        {"* * * * monday", "day-of-week field 'monday'"},
        {"@daily", "macros are not supported"},
        {"1-2-3 * * * *", "minute field '1-2-3'"},
        {"99999999999 * * * *", "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_cron c;
        pc_error err = {0};
        int rc = pc_cron_parse(cases[i].expr, &c, &err);
        if (rc != PC_EINVAL || strstr(err.msg, cases[i].want) == NULL)
            fail_msg("'%s': rc %d, message '%s', wanted '%s'", cases[i].expr, rc, err.msg,
                     cases[i].want);
        assert_non_null(strstr(err.msg, cases[i].expr)); /* the expression is named */
    }
}

/* ---------- next / prev against the calendar ---------- */

typedef struct tcase {
    const char *expr;
    const char *from;
    const char *next; /* first fire strictly after from */
    const char *prev; /* latest fire at or before from */
} tcase;

static const tcase tcases[] = {
    /* daily at 03:00 */
    {"0 3 * * *", "2026-11-25 02:59:59", "2026-11-25 03:00", "2026-11-24 03:00"},
    {"0 3 * * *", "2026-11-25 03:00:00", "2026-11-26 03:00", "2026-11-25 03:00"},
    {"0 3 * * *", "2026-11-25 03:00:30", "2026-11-26 03:00", "2026-11-25 03:00"},
    {"0 3 * * *", "2026-12-31 23:59", "2027-01-01 03:00", "2026-12-31 03:00"},
    /* every minute */
    {"* * * * *", "2026-01-01 00:00:00", "2026-01-01 00:01", "2026-01-01 00:00"},
    {"* * * * *", "2026-01-01 00:00:59", "2026-01-01 00:01", "2026-01-01 00:00"},
    {"* * * * *", "2025-12-31 23:59:30", "2026-01-01 00:00", "2025-12-31 23:59"},
    /* steps and lists */
    {"*/15 * * * *", "2026-03-01 10:44", "2026-03-01 10:45", "2026-03-01 10:30"},
    {"*/15 * * * *", "2026-03-01 23:50", "2026-03-02 00:00", "2026-03-01 23:45"},
    {"5,35 */6 * * *", "2026-03-01 06:36", "2026-03-01 12:05", "2026-03-01 06:35"},
    {"30 8-18/5 * * *", "2026-03-01 18:31", "2026-03-02 08:30", "2026-03-01 18:30"},
    /* month boundaries and lengths */
    {"0 0 31 * *", "2026-04-15 00:00", "2026-05-31 00:00", "2026-03-31 00:00"},
    {"0 12 30 * *", "2026-02-01 00:00", "2026-03-30 12:00", "2026-01-30 12:00"},
    {"15 4 1 jan,jul *", "2026-07-01 04:14", "2026-07-01 04:15", "2026-01-01 04:15"},
    {"0 0 1 1 *", "2026-06-01 00:00", "2027-01-01 00:00", "2026-01-01 00:00"},
    /* leap day: every 4 years, not 2100 */
    {"0 0 29 2 *", "2025-01-01 00:00", "2028-02-29 00:00", "2024-02-29 00:00"},
    {"0 0 29 feb *", "2096-03-01 00:00", "2104-02-29 00:00", "2096-02-29 00:00"},
    /* day of week: 2026-11-25 is a Wednesday */
    {"0 9 * * mon-fri", "2026-11-27 09:00", "2026-11-30 09:00", "2026-11-27 09:00"},
    {"0 9 * * 1-5", "2026-11-28 12:00", "2026-11-30 09:00", "2026-11-27 09:00"},
    {"0 0 * * 0", "2026-11-25 12:00", "2026-11-29 00:00", "2026-11-22 00:00"},
    {"0 0 * * 7", "2026-11-25 12:00", "2026-11-29 00:00", "2026-11-22 00:00"},
    {"0 0 * * sat,sun", "2026-11-29 00:00", "2026-12-05 00:00", "2026-11-29 00:00"},
    /* the OR rule: both restricted -> either; one '*' -> only the other */
    {"0 3 1 * mon", "2026-11-25 00:00", "2026-11-30 03:00", "2026-11-23 03:00"},
    {"0 3 1 * mon", "2026-11-30 04:00", "2026-12-01 03:00", "2026-11-30 03:00"},
    {"0 3 13 * fri", "2026-02-13 04:00", "2026-02-20 03:00", "2026-02-13 03:00"},
    {"0 3 * * mon", "2026-11-25 00:00", "2026-11-30 03:00", "2026-11-23 03:00"},
    {"0 3 1 * *", "2026-11-25 00:00", "2026-12-01 03:00", "2026-11-01 03:00"},
    /* a step on a star starts with a star: AND, odd days that are Mondays (Vixie DOM_STAR) */
    {"0 3 */2 * mon", "2026-11-25 00:00", "2026-12-07 03:00", "2026-11-23 03:00"},
    {"0 3 1-31/2 * mon", "2026-11-25 00:00", "2026-11-25 03:00", "2026-11-23 03:00"},
    /* month and weekday together: the first Monday-or-Friday in June */
    {"0 0 * jun mon,fri", "2026-01-01 00:00", "2026-06-01 00:00", "2025-06-30 00:00"},
    /* before 1970 and far ahead still work (negative unix times) */
    {"0 0 1 1 *", "1969-06-01 00:00", "1970-01-01 00:00", "1969-01-01 00:00"},
    {"59 23 31 12 *", "2099-12-31 23:59", "2100-12-31 23:59", "2099-12-31 23:59"},
};

static void test_next_prev(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tcases / sizeof tcases[0]; i++) {
        const tcase *tc = &tcases[i];
        pc_cron c = parse_ok(tc->expr);
        int64_t from = T(tc->from), got = 0;
        char g[32], w[32];
        assert_int_equal(pc_cron_next(&c, from, &got), 0);
        if (got != T(tc->next)) {
            fmt(got, g);
            fmt(T(tc->next), w);
            fail_msg("next('%s', %s) = %s, want %s", tc->expr, tc->from, g, w);
        }
        assert_int_equal(pc_cron_prev(&c, from, &got), 0);
        if (got != T(tc->prev)) {
            fmt(got, g);
            fmt(T(tc->prev), w);
            fail_msg("prev('%s', %s) = %s, want %s", tc->expr, tc->from, g, w);
        }
    }
}

static void test_never_fires(void **state)
{
    (void)state;
    static const char *const never[] = {"0 0 30 2 *", "0 0 31 feb *", "0 0 31 4,6,9,11 *"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        pc_cron c = parse_ok(never[i]);
        int64_t out = -1;
        assert_int_equal(pc_cron_next(&c, T("2026-01-01 00:00"), &out), PC_ENOTFOUND);
        assert_int_equal(pc_cron_prev(&c, T("2026-01-01 00:00"), &out), PC_ENOTFOUND);
    }
    /* ...but a weekday restriction makes 30 February fire on Mondays in February (OR rule) */
    pc_cron c = parse_ok("0 0 30 2 mon");
    int64_t out = 0;
    assert_int_equal(pc_cron_next(&c, T("2026-01-01 00:00"), &out), 0);
    assert_int_equal(out, T("2026-02-02 00:00"));
}

/* ---------- brute force: the same answers as a minute-by-minute scan ---------- */

static bool naive_match(const pc_cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    bool dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
    bool day = (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
    return ((c->minute >> tm.tm_min) & 1) && ((c->hour >> tm.tm_hour) & 1) &&
           ((c->month >> (tm.tm_mon + 1)) & 1) && day;
}

static void test_brute_force(void **state)
{
    (void)state;
    static const char *const exprs[] = {
        "* * * * *",   "*/7 * * * *",       "13 */5 * * *",    "0 0 * * *",
        "45 23 * * 6", "0 12 1,15 * *",     "0 12 1,15 * wed", "*/20 1-3 * * mon-fri",
        "0 0 31 * *",  "0 6 * jan,apr *",   "0 0 1-7 * sun",   "0 0 */3 * 2",
        "59 0 29 2 *", "0,30 9-17 * * 1-5", "7 7 7 7 *",       "0 22 * * 0,7",
    };
    static const char *const starts[] = {"2026-11-25 02:59:59", "2027-12-31 23:59:59",
                                         "2028-02-28 23:30:00", "2026-03-29 01:00:00",
                                         "2025-10-26 00:59:00"};
    size_t compared = 0;
    for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
        pc_cron c = parse_ok(exprs[e]);
        for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
            int64_t from = T(starts[s]);
            /* naive next: scan forward up to 400 days */
            int64_t want_next = -1, want_prev = -1;
            for (int64_t m = from / 60 * 60 + 60; m < from + 400LL * 86400; m += 60)
                if (naive_match(&c, m)) {
                    want_next = m;
                    break;
                }
            for (int64_t m = from / 60 * 60; m > from - 400LL * 86400; m -= 60)
                if (naive_match(&c, m)) {
                    want_prev = m;
                    break;
                }
            if (want_next < 0 || want_prev < 0)
                continue; /* rarer than 400 days (29 Feb): covered by the table above */
            int64_t got = 0;
            assert_int_equal(pc_cron_next(&c, from, &got), 0);
            if (got != want_next)
                fail_msg("next('%s', %s): %lld, scan says %lld", exprs[e], starts[s],
                         (long long)got, (long long)want_next);
            assert_int_equal(pc_cron_prev(&c, from, &got), 0);
            if (got != want_prev)
                fail_msg("prev('%s', %s): %lld, scan says %lld", exprs[e], starts[s],
                         (long long)got, (long long)want_prev);
            /* chaining next from a fire time gives the following fire */
            int64_t a = 0, b = 0;
            assert_int_equal(pc_cron_next(&c, want_next, &a), 0);
            assert_int_equal(pc_cron_prev(&c, a - 1, &b), 0);
            assert_int_equal(b, want_next);
            compared++;
        }
    }
    assert_true(compared >= 75); /* only "59 0 29 2 *" is too rare for the scan */
}

/* ---------- freshness (what status judges) ---------- */

static void test_schedule_check(void **state)
{
    (void)state;
    pc_cron c = parse_ok("0 3 * * *");
    int64_t due = 0, hour = 3600;
    /* 2026-11-25 03:30, grace 1h: the due fire is 24 Nov 03:00 (25 Nov 03:00 is within grace) */
    int64_t now = T("2026-11-25 03:30");
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-24 03:00:05"), now, hour, &due),
                     PC_BACKUP_FRESH);
    assert_int_equal(due, T("2026-11-24 03:00"));
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-24 02:59:59"), now, hour, &due),
                     PC_BACKUP_STALE);
    /* after the grace, today's 03:00 is due */
    now = T("2026-11-25 04:00:01");
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-24 03:00:05"), now, hour, &due),
                     PC_BACKUP_STALE);
    assert_int_equal(due, T("2026-11-25 03:00"));
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-25 03:00:00"), now, hour, &due),
                     PC_BACKUP_FRESH);
    /* a manual backup after the fire counts too */
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-25 03:59"), now, hour, &due),
                     PC_BACKUP_FRESH);
    /* no backup at all */
    assert_int_equal(pc_backup_schedule_check(&c, false, 0, now, hour, &due), PC_BACKUP_NONE);
    /* grace 0, every minute */
    c = parse_ok("* * * * *");
    now = T("2026-11-25 10:00:30");
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-25 09:59:59"), now, 0, &due),
                     PC_BACKUP_STALE);
    assert_int_equal(due, T("2026-11-25 10:00"));
    assert_int_equal(pc_backup_schedule_check(&c, true, T("2026-11-25 10:00:01"), now, 0, &due),
                     PC_BACKUP_FRESH);
    /* a schedule that never fired in the window: any backup is fresh */
    c = parse_ok("0 0 30 2 *");
    assert_int_equal(pc_backup_schedule_check(&c, true, 0, now, 0, &due), PC_BACKUP_FRESH);
    assert_int_equal(due, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_next_prev),    cmocka_unit_test(test_never_fires),
        cmocka_unit_test(test_brute_force),  cmocka_unit_test(test_schedule_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
