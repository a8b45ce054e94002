/* scheduler.c: the backup schedule as a worker (`pipectl run` runs it beside ingest and sink).
 *
 * backups.schedule is cron in UTC. At start, when the newest backup in the repository started
 * before the schedule's latest fire time (or there is none), one is taken at once ("catch-up").
 * Then a backup at every fire time; fire times that pass while a backup runs are skipped, as cron
 * does. Expire runs after a successful backup only (never after a failed one: a failure must not
 * also shrink what is kept). Failures are logged and counted, and the schedule goes on.
 *
 * Every contact with the world goes through pc_backup_sched_ops (clock, sleep, list, create,
 * expire), so the whole policy is unit-tested with a simulated clock (tests/unit/test_scheduler.c)
 * instead of waiting for real minutes. Arithmetic is in UTC seconds: no time zone, no DST. */
#include "backup.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define STOP_TICK_MS 250

static void slog(const pc_backup_sched *s, const pc_worker_env *env, pc_log_level lv,
                 const char *msg, const char *const *fields)
{
    (void)s;
    if (env->log != NULL)
        env->log(env->log_ctx, lv, env->name, msg, fields);
}

static bool stopping(const pc_worker_env *env)
{
    return env->stop != NULL && atomic_load(env->stop) != 0;
}

/* One backup for fire time `fire` (why: "scheduled" or "catch-up"), then expire. */
static void one_backup(const pc_backup_sched *s, const pc_worker_env *env, int64_t fire,
                       const char *why)
{
    const pc_backup_sched_ops *o = &s->ops;
    pc_error err = {0};
    char fire_s[32], label[96], num[32], num2[32];
    pc_iso_utc(fire, fire_s);
    if (stopping(env))
        return; /* stopping: no new backup */
    bool have = false;
    int64_t newest = 0;
    if (o->newest(o->ctx, &have, &newest, &err) == 0 && have && newest >= fire) {
        char id_s[32];
        pc_iso_utc(newest, id_s);
        slog(s, env, PC_LOG_INFO,
             "backup for this fire time already taken (by another process): skipped",
             (const char *const[]){"fire_time", fire_s, "newest_backup_start", id_s, NULL});
        return;
    }
    pc_error_clear(&err);
    snprintf(label, sizeof label, "pipectl %s %s", why, fire_s);
    slog(s, env, PC_LOG_INFO, "scheduled backup starting",
         (const char *const[]){"fire_time", fire_s, "reason", why, "repository",
                               s->repository_uri != NULL ? s->repository_uri : "", NULL});
    if (env->stats != NULL)
        atomic_fetch_add(&env->stats->records_in, 1);
    pc_backup_info info = {0};
    int64_t t0 = o->mono_ms(o->ctx);
    int rc = o->create(o->ctx, label, &info, &err);
    if (rc == PC_ECONFLICT) {
        slog(s, env, PC_LOG_WARN,
             "scheduled backup skipped: another backup or expire holds the repository lock",
             (const char *const[]){"fire_time", fire_s, "error", err.msg, NULL});
        return;
    }
    if (rc != 0) {
        if (env->stats != NULL)
            atomic_fetch_add(&env->stats->errors, 1);
        slog(s, env, PC_LOG_ERROR,
             stopping(env) ? "scheduled backup failed while stopping; nothing partial is left"
                           : "scheduled backup failed; retrying at the next fire time",
             (const char *const[]){"fire_time", fire_s, "code", pc_code_name(rc), "error",
                                   err.msg, NULL});
        pc_backup_info_free(&info);
        return;
    }
    if (env->stats != NULL) {
        atomic_fetch_add(&env->stats->records_out, 1);
        atomic_fetch_add(&env->stats->batches, 1);
        atomic_store(&env->stats->last_commit_ms, o->now(o->ctx) * 1000);
    }
    snprintf(num, sizeof num, "%.1f", (double)(o->mono_ms(o->ctx) - t0) / 1000.0);
    snprintf(num2, sizeof num2, "%llu", (unsigned long long)info.stored_bytes);
    slog(s, env, PC_LOG_INFO, "scheduled backup completed",
         (const char *const[]){"backup", info.id != NULL ? info.id : "", "fire_time", fire_s,
                               "reason", why, "seconds", num, "stored_bytes", num2, "start_lsn",
                               info.start_lsn != NULL ? info.start_lsn : "", "stop_lsn",
                               info.stop_lsn != NULL ? info.stop_lsn : "", NULL});
    pc_backup_info_free(&info);

    if (s->keep_full == 0 && s->keep_days == 0) {
        slog(s, env, PC_LOG_DEBUG, "no backups.retention: nothing expired", NULL);
        return;
    }
    pc_expire_result res = {0};
    pc_error_clear(&err);
    rc = o->expire(o->ctx, s->keep_full, s->keep_days, o->now(o->ctx), &res, &err);
    if (rc != 0) {
        if (env->stats != NULL)
            atomic_fetch_add(&env->stats->errors, 1);
        slog(s, env, PC_LOG_ERROR, "expiring old backups failed",
             (const char *const[]){"code", pc_code_name(rc), "error", err.msg, NULL});
    } else {
        snprintf(num, sizeof num, "%zu", res.backups_removed);
        snprintf(num2, sizeof num2, "%zu", res.wal_removed);
        slog(s, env, PC_LOG_INFO, "expired old backups",
             (const char *const[]){"backups_removed", num, "wal_removed", num2,
                                   "oldest_wal_kept",
                                   res.oldest_wal_kept ? res.oldest_wal_kept : "", NULL});
    }
    pc_expire_result_free(&res);
}

int pc_backup_sched_run(const pc_backup_sched *s, const pc_worker_env *env, pc_error *err)
{
    const pc_backup_sched_ops *o = &s->ops;
    int64_t started = o->mono_ms(o->ctx);
    int64_t now = o->now(o->ctx), prev = 0, next = 0;
    char when[32];
    pc_error lerr = {0};
    if (pc_cron_prev(s->cron, now, &prev) == 0) {
        bool have = false;
        int64_t newest = 0;
        if (o->newest(o->ctx, &have, &newest, &lerr) != 0) {
            slog(s, env, PC_LOG_WARN, "cannot list the backups",
                 (const char *const[]){"error", lerr.msg, NULL});
        } else if (!have || newest < prev) {
            pc_iso_utc(prev, when);
            slog(s, env, PC_LOG_INFO,
                 have ? "the newest backup is older than the last fire time: catching up"
                      : "no backup in the repository yet: catching up",
                 (const char *const[]){"missed_fire_time", when, NULL});
            one_backup(s, env, prev, "catch-up");
        }
    }
    while (!stopping(env)) {
        now = o->now(o->ctx);
        if (pc_cron_next(s->cron, now, &next) != 0)
            return pc_error_set(err, PC_EINVAL, "backups.schedule '%s' never fires: fix it",
                                s->schedule != NULL ? s->schedule : "?");
        pc_iso_utc(next, when);
        slog(s, env, PC_LOG_INFO, "next scheduled backup",
             (const char *const[]){"fire_time", when, "schedule",
                                   s->schedule != NULL ? s->schedule : "", NULL});
        while (!stopping(env) && o->now(o->ctx) < next) {
            if (env->duration_ms > 0 && o->mono_ms(o->ctx) - started >= env->duration_ms)
                return 0;
            o->sleep_ms(o->ctx, STOP_TICK_MS);
        }
        if (stopping(env))
            break;
        one_backup(s, env, next, "scheduled");
        /* fire times that passed while the backup ran are skipped, like cron */
        int64_t after = 0;
        if (pc_cron_next(s->cron, next, &after) == 0 && after <= o->now(o->ctx)) {
            pc_iso_utc(after, when);
            slog(s, env, PC_LOG_WARN,
                 "the backup outlasted the next fire time(s): skipped, as cron does",
                 (const char *const[]){"skipped_from", when, NULL});
        }
    }
    return 0;
}
