/* test_scheduler.c: the backup schedule's policy (pkg/backup/scheduler.c) on a simulated clock:
 * catch-up at start, one backup per fire time, fire times passed during a long backup skipped,
 * expire after success only, a lock conflict skipped quietly, stop honoured between backups.
 * No real minute is waited for: sleep advances the simulated clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backup.h"

#define MAXB 64

typedef struct sim {
    int64_t ms;               /* simulated time since the epoch, ms */
    int64_t backup_ms;        /* how long one backup takes */
    bool have;                /* a backup exists */
    int64_t newest;           /* its start (unix s) */
    int64_t fires[MAXB];      /* the start time of each create call */
    char labels[MAXB][96];
    int ncreate;
    int fail_on;              /* create number (1-based) that fails with PC_EIO; 0 none */
    int conflict_on;          /* ... that fails with PC_ECONFLICT */
    int nexpire;
    int expire_after[MAXB];   /* ncreate at each expire */
    int stop_after_sleeps;    /* > 0: set *stop after this many sleeps */
    int sleeps;
    int64_t other_at;         /* > 0: another process takes a backup at this time (unix s) */
    atomic_int *stop;
} sim;

static int64_t s_now(void *c) { return ((sim *)c)->ms / 1000; }
static int64_t s_mono(void *c) { return ((sim *)c)->ms; }
static void s_sleep(void *c, long ms)
{
    sim *s = c;
    s->ms += ms;
    if (s->other_at > 0 && s->ms / 1000 >= s->other_at) {
        s->have = true;
        s->newest = s->other_at;
        s->other_at = 0;
    }
    if (s->stop_after_sleeps > 0 && ++s->sleeps >= s->stop_after_sleeps)
        atomic_store(s->stop, 1);
}
static int s_newest(void *c, bool *have, int64_t *start, pc_error *err)
{
    (void)err;
    sim *s = c;
    *have = s->have;
    *start = s->newest;
    return 0;
}
static int s_create(void *c, const char *label, pc_backup_info *info, pc_error *err)
{
    sim *s = c;
    int n = ++s->ncreate;
    assert_true(n <= MAXB);
    s->fires[n - 1] = s->ms / 1000;
    snprintf(s->labels[n - 1], sizeof s->labels[0], "%s", label);
    int64_t start = s->ms / 1000;
    s->ms += s->backup_ms;
    if (n == s->conflict_on)
        return pc_error_set(err, PC_ECONFLICT, "lock held by backup expire");
    if (n == s->fail_on)
        return pc_error_set(err, PC_EIO, "the database went away");
    s->have = true;
    s->newest = start;
    info->id = strdup("x");
    return 0;
}
static int s_expire(void *c, int keep_full, int keep_days, int64_t now, pc_expire_result *res,
                    pc_error *err)
{
    (void)keep_full, (void)keep_days, (void)now, (void)res, (void)err;
    sim *s = c;
    s->expire_after[s->nexpire++] = s->ncreate;
    return 0;
}

/* 2026-12-06T10:00:00Z */
#define T0 1796551200LL

static int run(sim *s, const char *cron, int64_t start, int64_t duration_s, int keep)
{
    pc_cron cr;
    pc_error err = {0};
    assert_int_equal(pc_cron_parse(cron, &cr, &err), 0);
    static atomic_int stop;
    atomic_store(&stop, 0);
    s->stop = &stop;
    s->ms = start * 1000;
    pc_worker_stats st = {0};
    pc_worker_env env = {.name = "backups", .stop = &stop, .stats = &st,
                         .duration_ms = duration_s * 1000};
    pc_backup_sched sc = {.cron = &cr, .schedule = cron, .repository_uri = "/repo",
                          .keep_full = keep, .keep_days = 0,
                          .ops = {s_now, s_mono, s_sleep, s_newest, s_create, s_expire, s}};
    return pc_backup_sched_run(&sc, &env, &err);
}

static void test_catch_up_then_daily(void **state)
{
    (void)state;
    sim s = {.backup_ms = 60 * 1000};
    assert_int_equal(run(&s, "0 3 * * *", T0, 20 * 3600, 7), 0);
    /* at 10:00 there is no backup although 03:00 passed: one at once, then 03:00 the next day */
    assert_int_equal(s.ncreate, 2);
    assert_int_equal(s.fires[0], T0);
    assert_non_null(strstr(s.labels[0], "catch-up 2026-12-06T03:00:00Z"));
    assert_int_equal(s.fires[1], T0 + 17 * 3600);
    assert_non_null(strstr(s.labels[1], "scheduled 2026-12-07T03:00:00Z"));
    assert_int_equal(s.nexpire, 2);
}

static void test_fresh_backup_no_catch_up(void **state)
{
    (void)state;
    sim s = {.backup_ms = 1000, .have = true, .newest = T0 - 6 * 3600}; /* 04:00, after 03:00 */
    assert_int_equal(run(&s, "0 3 * * *", T0, 3600, 7), 0);
    assert_int_equal(s.ncreate, 0);
    /* older than the last fire time: caught up */
    sim o = {.backup_ms = 1000, .have = true, .newest = T0 - 8 * 3600}; /* 02:00 */
    assert_int_equal(run(&o, "0 3 * * *", T0, 3600, 7), 0);
    assert_int_equal(o.ncreate, 1);
}

static void test_long_backup_skips_fire_times(void **state)
{
    (void)state;
    /* every 10 minutes, each backup takes 25: after the 10:10 one ends at 10:35, 10:20 and 10:30
     * are skipped and the next is 10:40 */
    sim s = {.backup_ms = 25 * 60 * 1000, .have = true, .newest = T0 + 30};
    assert_int_equal(run(&s, "*/10 * * * *", T0 + 60, 45 * 60, 0), 0);
    assert_true(s.ncreate >= 2);
    assert_int_equal(s.fires[0], T0 + 600);
    assert_int_equal(s.fires[1], T0 + 2400);
    assert_int_equal(s.nexpire, 0); /* no retention: never expires */
}

static void test_expire_after_success_only(void **state)
{
    (void)state;
    sim s = {.backup_ms = 1000, .have = true, .newest = T0, .fail_on = 1};
    assert_int_equal(run(&s, "0 * * * *", T0 + 1, 2 * 3600 + 60, 3), 0);
    assert_int_equal(s.ncreate, 2);  /* 11:00 failed, 12:00 worked */
    assert_int_equal(s.nexpire, 1);
    assert_int_equal(s.expire_after[0], 2); /* after the second, successful one */
}

static void test_conflict_skipped(void **state)
{
    (void)state;
    sim s = {.backup_ms = 1000, .have = true, .newest = T0, .conflict_on = 1};
    assert_int_equal(run(&s, "0 * * * *", T0 + 1, 2 * 3600 + 60, 3), 0);
    assert_int_equal(s.ncreate, 2);
    assert_int_equal(s.nexpire, 1);
}

static void test_taken_by_another_process(void **state)
{
    (void)state;
    /* fresh at start; at 11:00:00 another host's schedule takes the 11:00 backup first */
    sim s = {.backup_ms = 1000, .have = true, .newest = T0, .other_at = T0 + 3600};
    assert_int_equal(run(&s, "0 * * * *", T0 + 1, 3600 + 60, 3), 0);
    assert_int_equal(s.ncreate, 0);
    assert_int_equal(s.newest, T0 + 3600);
    /* the same without the other host: this one takes it */
    sim o = {.backup_ms = 1000, .have = true, .newest = T0};
    assert_int_equal(run(&o, "0 * * * *", T0 + 1, 3600 + 60, 3), 0);
    assert_int_equal(o.ncreate, 1);
}

static void test_stop_between_backups(void **state)
{
    (void)state;
    sim s = {.backup_ms = 1000, .have = true, .newest = T0, .stop_after_sleeps = 8};
    int64_t t = T0 + 1;
    assert_int_equal(run(&s, "0 * * * *", t, 0, 3), 0);
    assert_int_equal(s.ncreate, 0);
    assert_int_equal(s.sleeps, 8); /* seen at once: within one tick */
    assert_true(s.ms / 1000 - t <= 3);
}

static void test_never_fires(void **state)
{
    (void)state;
    sim s = {.backup_ms = 1000, .have = true, .newest = T0};
    assert_int_equal(run(&s, "0 0 30 2 *", T0, 60, 3), PC_EINVAL);
    assert_int_equal(s.ncreate, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catch_up_then_daily),
        cmocka_unit_test(test_fresh_backup_no_catch_up),
        cmocka_unit_test(test_long_backup_skips_fire_times),
        cmocka_unit_test(test_expire_after_success_only),
        cmocka_unit_test(test_conflict_skipped),
        cmocka_unit_test(test_taken_by_another_process),
        cmocka_unit_test(test_stop_between_backups),
        cmocka_unit_test(test_never_fires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
