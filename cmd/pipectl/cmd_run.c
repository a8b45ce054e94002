/* cmd_run.c: `pipectl run [NAME...]`: the manifest's ingest (sources) and sink workers in one
 * foreground process, one thread each, until SIGTERM/SIGINT (drain, commit, exit 0), a bound
 * (--max-records per worker, --duration) or a worker's failure (the others are stopped too, so a
 * supervisor such as systemd restarts the whole process). A second signal exits at once with
 * 130. Logs go to stderr through log.c; -o json adds a summary object on stdout at the end.
 * With --metrics the Prometheus endpoint (pkg/worker/metrics.c) runs while the workers run, and
 * this thread refreshes the sinks' consumer lag gauges every few seconds.
 *
 * The backup schedule (manifest backups.schedule, cron in UTC) is one more thread, the worker
 * named "backups": at each fire time it takes a base backup (pc_backup_create) into
 * archiving.repository, then expires per backups.retention. On start it catches up once: when
 * the newest backup in the repository started before the schedule's latest fire time (or there
 * is none), it takes one at once, like systemd's Persistent=true timers. A failed backup is
 * logged and counted and the schedule goes on (the workers are not stopped); `status` turns
 * unhealthy while backups are late. A stop signal during a backup: the backup is finished (and
 * the expire after it runs) before run exits 0. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "postgres.h"
#include "sink.h"
#include "worker.h"

#define LAG_REFRESH_MS 5000
#define LAG_TIMEOUT_MS 3000

static atomic_int g_stop; /* set by the signal handler, read by the worker threads */
static volatile sig_atomic_t g_first_sig; /* the first signal received, 0 = none yet */
/* When it came. Only the handler reads and writes it, and the handler cannot interrupt itself
 * (sa_mask blocks SIGTERM and SIGINT while it runs), so no other access races with it. */
static struct timespec g_first_at;

/* A second signal exits at once, unless it is the same signal arriving within 500 ms of the
 * first: that is one request delivered twice (GNU timeout, for one, signals its child and then
 * its whole process group). clock_gettime and write are async-signal-safe. */
static void on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (g_first_sig != 0) {
        long long ms = (long long)(now.tv_sec - g_first_at.tv_sec) * 1000 +
                       (now.tv_nsec - g_first_at.tv_nsec) / 1000000;
        if (sig == g_first_sig && ms < 500) {
            static const char rep[] = "pipectl run: the same signal again within 0.5 s: taken as "
                                      "one request, still draining\n";
            ssize_t w = write(STDERR_FILENO, rep, sizeof rep - 1);
            (void)w;
            return;
        }
        static const char msg[] = "pipectl run: second signal: exiting now without draining\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    g_first_at = now;
    g_first_sig = sig;
    g_stop = 1;
}

static void help(void)
{
    printf(
        "Usage: pipectl [-f FILE] run [NAME...] [--max-records N] [--duration D]\n"
        "                           [--metrics ADDR:PORT] [--no-backups] [-o json]\n\n"
        "Runs the manifest's workers in the foreground, one thread each: every source (ingest:\n"
        "randomuser API -> Kafka) and every sink (Kafka -> PostgreSQL, exactly once), or only\n"
        "the NAMEs given. SIGTERM or SIGINT stops them cleanly: ingest flushes what it produced,\n"
        "sinks commit the batch in progress with its offsets; then exit 0. A second signal (not\n"
        "the same one repeated within 0.5 s, as `timeout` delivers it) exits at once (status\n"
        "130; sinks stay exactly-once, the open transaction is rolled back).\n"
        "When one worker fails, the others are stopped and run exits 1 naming it.\n\n"
        "Backups: with a backups: block, the worker named 'backups' takes a base backup of\n"
        "postgres.dsn into archiving.repository at every fire time of backups.schedule (cron,\n"
        "UTC), then expires per backups.retention. At start it catches up once: when the newest\n"
        "backup started before the schedule's latest fire time (or there is none), one is taken\n"
        "at once. A failed backup is logged and counted, and retried at the next fire time; it\n"
        "does not stop the other workers. SIGTERM/SIGINT during a backup: it is finished (and\n"
        "expired) first, then run exits 0; a second signal abandons it (the server drops the\n"
        "backup, the partial directory is ignored and removed by the next expire). Run the\n"
        "schedule on one host only.\n\n"
        "Options:\n"
        "  NAME...               source or sink names from the manifest, or 'backups' for the\n"
        "                        backup schedule (default: all of them)\n"
        "  --no-backups          leave the backup schedule out (without NAMEs: every source and\n"
        "                        sink only; also the default with --max-records unless\n"
        "                        'backups' is named, and then it stops with the others)\n"
        "  --max-records N       each worker stops after N records (ingest: delivered to Kafka;\n"
        "                        sink: committed to PostgreSQL)\n"
        "  --duration D          stop after D: 500ms, 10s, 5m, 1h\n"
        "  --metrics ADDR:PORT   serve Prometheus metrics at http://ADDR:PORT/metrics while the\n"
        "                        workers run (':9464' = every interface, port 0 = any free port)\n"
        "  -o json               print a JSON summary of every worker on stdout at the end\n"
        "                        (for 'backups': records_in = backups started, records_out =\n"
        "                        completed, errors = failed backups or expires; also in the\n"
        "                        metrics, worker=\"backups\", kind=\"backup\")\n"
        "  -v                    debug logs\n\n"
        "Logs: stderr, text at a terminal, JSON lines otherwise (PIPECTL_LOG_FORMAT=text|json\n"
        "forces one).\n"
        "Exit: 0 every worker stopped cleanly, 1 a worker failed or bad input, 130 second "
        "signal.\n");
}

typedef enum worker_kind { W_SOURCE, W_SINK, W_BACKUPS } worker_kind;

#define BACKUPS_WORKER "backups"

typedef struct run_worker {
    worker_kind kind;
    const pc_mf_source *src;
    const pc_mf_sink *sink;
    const pc_manifest *m;
    pc_cron cron;   /* W_BACKUPS */
    cli_logger *lg; /* W_BACKUPS */
    pc_worker_stats stats;
    pc_worker_env env;
    pthread_t thread;
    bool started;
    atomic_bool finished;
    int rc;
    pc_error err;
} run_worker;

static const char *kind_name(worker_kind k)
{
    switch (k) {
    case W_SOURCE:
        return "ingest";
    case W_SINK:
        return "sink";
    case W_BACKUPS:
        return "backup";
    }
    return "worker";
}

/* ---------- the backup schedule ---------- */

/* Start time of the newest complete backup; false when there is none (or the repository cannot
 * be read: *err says so). */
static bool newest_backup(const char *repo, int64_t *start, pc_error *err)
{
    pc_backup_info *list = NULL;
    size_t n = 0;
    bool have = false;
    if (pc_backup_list(repo, &list, &n, err) == 0 && n > 0) {
        *start = list[n - 1].start_time;
        have = true;
    }
    pc_backup_list_free(list, n);
    return have;
}

/* One scheduled backup for the fire time `fire` (why: "scheduled" or "catch-up"), then expire.
 * Never fails the worker: the outcome is logged and counted. */
static void scheduled_backup(run_worker *w, int64_t fire, const char *why)
{
    const pc_manifest *m = w->m;
    const char *repo = m->archiving.repository;
    pc_error err = {0};
    char fire_s[32], label[96], num[32], num2[32];
    pc_iso_utc(fire, fire_s);
    if (*w->env.stop)
        return; /* stopping: no new backup */
    int64_t newest = 0;
    if (newest_backup(repo, &newest, &err) && newest >= fire) {
        char id_s[32];
        pc_iso_utc(newest, id_s);
        cli_log(w->lg, PC_LOG_INFO, w->env.name,
                "backup for this fire time already taken (by another process): skipped",
                (const char *const[]){"fire_time", fire_s, "newest_backup_start", id_s, NULL});
        return;
    }
    pc_error_clear(&err);
    snprintf(label, sizeof label, "pipectl %s %s", why, fire_s);
    cli_log(w->lg, PC_LOG_INFO, w->env.name, "scheduled backup starting",
            (const char *const[]){"fire_time", fire_s, "reason", why, "repository", repo, NULL});
    atomic_fetch_add(&w->stats.records_in, 1);
    pc_backup_info info = {0};
    int64_t t0 = pc_mono_ms();
    int rc =
        pc_backup_create(repo, m->pg_dsn, m->backups.compression, label, 0, NULL, NULL, &info,
                         &err);
    if (rc == PC_ECONFLICT) {
        cli_log(w->lg, PC_LOG_WARN, w->env.name,
                "scheduled backup skipped: another backup or expire holds the repository lock",
                (const char *const[]){"fire_time", fire_s, "error", err.msg, NULL});
        return;
    }
    if (rc != 0) {
        atomic_fetch_add(&w->stats.errors, 1);
        cli_log(w->lg, PC_LOG_ERROR, w->env.name,
                *w->env.stop ? "scheduled backup failed while stopping; nothing partial is left"
                             : "scheduled backup failed; retrying at the next fire time",
                (const char *const[]){"fire_time", fire_s, "code", pc_code_name(rc), "error",
                                      err.msg, NULL});
        return;
    }
    atomic_fetch_add(&w->stats.records_out, 1);
    atomic_fetch_add(&w->stats.batches, 1);
    atomic_store(&w->stats.last_commit_ms, (int64_t)time(NULL) * 1000);
    snprintf(num, sizeof num, "%.1f", (double)(pc_mono_ms() - t0) / 1000.0);
    snprintf(num2, sizeof num2, "%llu", (unsigned long long)info.stored_bytes);
    cli_log(w->lg, PC_LOG_INFO, w->env.name, "scheduled backup completed",
            (const char *const[]){"backup", info.id, "fire_time", fire_s, "reason", why, "seconds",
                                  num, "stored_bytes", num2, "start_lsn", info.start_lsn,
                                  "stop_lsn", info.stop_lsn, NULL});
    pc_backup_info_free(&info);

    int keep = m->backups.retention_full, days = m->backups.retention_days;
    if (keep == 0 && days == 0) {
        cli_log(w->lg, PC_LOG_DEBUG, w->env.name, "no backups.retention: nothing expired", NULL);
        return;
    }
    pc_expire_result res = {0};
    pc_error_clear(&err);
    rc = pc_backup_expire(repo, keep, days, (int64_t)time(NULL), &res, &err);
    if (rc != 0) {
        atomic_fetch_add(&w->stats.errors, 1);
        cli_log(w->lg, PC_LOG_ERROR, w->env.name, "expiring old backups failed",
                (const char *const[]){"code", pc_code_name(rc), "error", err.msg, NULL});
    } else {
        snprintf(num, sizeof num, "%zu", res.backups_removed);
        snprintf(num2, sizeof num2, "%zu", res.wal_removed);
        cli_log(w->lg, PC_LOG_INFO, w->env.name, "expired old backups",
                (const char *const[]){"backups_removed", num, "wal_removed", num2,
                                      "oldest_wal_kept",
                                      res.oldest_wal_kept ? res.oldest_wal_kept : "", NULL});
    }
    pc_expire_result_free(&res);
}

/* The schedule's thread. Sleeps in short steps so a stop is seen within a quarter second; a
 * backup in progress is not interrupted by a stop: pc_backup_create streams the base backup
 * over libpq in this thread (no child process), which, like every worker thread, has SIGTERM
 * and SIGINT blocked, so it runs to its end and the expire after it too. */
static int backups_main(run_worker *w)
{
    int64_t started = pc_mono_ms();
    int64_t now = (int64_t)time(NULL), prev = 0, next = 0;
    char when[32];
    pc_error err = {0};
    if (pc_cron_prev(&w->cron, now, &prev) == 0) {
        int64_t newest = 0;
        bool have = newest_backup(w->m->archiving.repository, &newest, &err);
        if (err.code != 0)
            cli_log(w->lg, PC_LOG_WARN, w->env.name, "cannot list the backups",
                    (const char *const[]){"error", err.msg, NULL});
        else if (!have || newest < prev) {
            pc_iso_utc(prev, when);
            cli_log(w->lg, PC_LOG_INFO, w->env.name,
                    have ? "the newest backup is older than the last fire time: catching up"
                         : "no backup in the repository yet: catching up",
                    (const char *const[]){"missed_fire_time", when, NULL});
            scheduled_backup(w, prev, "catch-up");
        }
    }
    while (!*w->env.stop) {
        now = (int64_t)time(NULL);
        if (pc_cron_next(&w->cron, now, &next) != 0)
            return pc_error_set(&w->err, PC_EINVAL,
                                "backups.schedule '%s' never fires: fix it in %s",
                                w->m->backups.schedule, g_cli.file);
        pc_iso_utc(next, when);
        cli_log(w->lg, PC_LOG_INFO, w->env.name, "next scheduled backup",
                (const char *const[]){"fire_time", when, "schedule", w->m->backups.schedule, NULL});
        while (!*w->env.stop && (int64_t)time(NULL) < next) {
            if (w->env.duration_ms > 0 && pc_mono_ms() - started >= w->env.duration_ms)
                return 0;
            pc_sleep_ms(250);
        }
        if (*w->env.stop)
            break;
        scheduled_backup(w, next, "scheduled");
        /* fire times that passed while the backup ran are skipped, like cron */
        int64_t after = 0;
        if (pc_cron_next(&w->cron, next, &after) == 0 && after <= (int64_t)time(NULL)) {
            pc_iso_utc(after, when);
            cli_log(w->lg, PC_LOG_WARN, w->env.name,
                    "the backup outlasted the next fire time(s): skipped, as cron does",
                    (const char *const[]){"skipped_from", when, NULL});
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    run_worker *w = arg;
    switch (w->kind) {
    case W_SOURCE:
        w->rc = pc_ingest_run(w->m, w->src, &w->env, &w->err);
        break;
    case W_SINK:
        w->rc = pc_sink_run(w->m, w->sink, &w->env, &w->err);
        break;
    case W_BACKUPS:
        w->rc = backups_main(w);
        break;
    }
    if (w->rc != 0 && w->err.msg[0] == '\0')
        pc_error_set(&w->err, w->rc, "worker '%s' stopped with %s and no message", w->env.name,
                     pc_code_name(w->rc));
    atomic_store(&w->finished, true);
    return NULL;
}

/* Lag gauges for every sink worker: high watermark minus the next offset stored in
 * pipectl.sink_offsets (the high watermark itself when the sink has stored nothing yet).
 * Connections are opened on first use and dropped after a failure, to be retried next time. */
typedef struct lag_state {
    pc_kafka *kafka;
    pc_pg *pg;
    bool warned;
} lag_state;

static void refresh_lag(lag_state *ls, pc_metrics *metrics, const pc_manifest *m, run_worker *ws,
                        size_t nw, cli_logger *lg)
{
    pc_error err = {0};
    int64_t *high = NULL, *next = NULL;
    int n = 0;
    if (m->kafka_bootstrap == NULL || m->pg_dsn == NULL)
        return; /* validation requires both for a sink; nothing to measure without them */
    if (ls->kafka == NULL &&
        pc_kafka_open_manifest(&ls->kafka, m, LAG_TIMEOUT_MS, &err) != 0)
        goto fail;
    if (ls->pg == NULL && pc_pg_open(&ls->pg, m->pg_dsn, LAG_TIMEOUT_MS / 1000, &err) != 0)
        goto fail;
    for (size_t i = 0; i < nw; i++) {
        if (ws[i].kind != W_SINK)
            continue;
        const pc_mf_sink *s = ws[i].sink;
        if (pc_kafka_watermarks(ls->kafka, s->topic, &high, &n, &err) != 0 ||
            pc_pg_sink_offsets(ls->pg, s->name, s->topic, &next, n, &err) != 0)
            goto fail;
        for (int p = 0; p < n; p++) {
            int64_t lag = next[p] >= 0 ? high[p] - next[p] : high[p];
            pc_metrics_set_lag(metrics, s->name, s->topic, p, lag < 0 ? 0 : lag, &err);
        }
        free(high);
        free(next);
        high = next = NULL;
    }
    ls->warned = false;
    return;
fail:
    free(high);
    free(next);
    if (!ls->warned)
        cli_logf(lg, PC_LOG_WARN, NULL, "consumer lag metrics not updated: %s", err.msg);
    ls->warned = true;
    pc_kafka_free(ls->kafka);
    pc_pg_free(ls->pg);
    ls->kafka = NULL;
    ls->pg = NULL;
}

/* Adds the worker called name (a source, a sink, or both when they share it; "backups" is the
 * backup schedule). false when the manifest has no such worker. */
static bool select_worker(const pc_manifest *m, const char *name, run_worker *ws, size_t *nw)
{
    bool found = false;
    if (m->backups.declared && strcmp(name, BACKUPS_WORKER) == 0) {
        ws[(*nw)++] = (run_worker){.kind = W_BACKUPS, .m = m};
        found = true;
    }
    for (size_t i = 0; i < m->nsources; i++)
        if (pc_streq(m->sources[i].name, name)) {
            ws[(*nw)++] = (run_worker){.kind = W_SOURCE, .src = &m->sources[i], .m = m};
            found = true;
        }
    for (size_t i = 0; i < m->nsinks; i++)
        if (pc_streq(m->sinks[i].name, name)) {
            ws[(*nw)++] = (run_worker){.kind = W_SINK, .sink = &m->sinks[i], .m = m};
            found = true;
        }
    return found;
}

static void print_known(const pc_manifest *m)
{
    fprintf(stderr, "Workers declared in %s:", g_cli.file);
    if (m->nsources + m->nsinks == 0 && !m->backups.declared)
        fprintf(stderr, " none (add sources: or sinks: to the manifest)");
    for (size_t i = 0; i < m->nsources; i++)
        fprintf(stderr, " %s (source)", m->sources[i].name);
    for (size_t i = 0; i < m->nsinks; i++)
        fprintf(stderr, " %s (sink)", m->sinks[i].name);
    if (m->backups.declared)
        fprintf(stderr, " %s (backup schedule)", BACKUPS_WORKER);
    fprintf(stderr, "\n");
}

int cmd_run(int argc, char **argv)
{
    static const char *const single[] = {"max-records", "duration", "metrics", NULL};
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"max-records", required_argument, NULL, 'N'},
                                             {"duration", required_argument, NULL, 'D'},
                                             {"metrics", required_argument, NULL, 'M'},
                                             {"no-backups", no_argument, NULL, 'B'},
                                             {NULL, 0, NULL, 0}};
    uint64_t max_records = 0;
    int64_t duration_ms = 0;
    const char *metrics_addr = NULL;
    bool no_backups = false;
    cli_fix_single_dash(argc, argv, single);
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'N') {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (end == optarg || *end != '\0' || errno != 0 || v == 0 || optarg[0] == '-')
                return cli_usage_error("run", "--max-records wants a positive integer, got '%s'",
                                       optarg);
            max_records = (uint64_t)v;
            continue;
        }
        if (c == 'D') {
            duration_ms = cli_parse_duration_ms(optarg);
            if (duration_ms <= 0)
                return cli_usage_error("run",
                                       "--duration wants a number and a unit (500ms, 10s, 5m, "
                                       "1h), got '%s'",
                                       optarg);
            continue;
        }
        if (c == 'M') {
            metrics_addr = optarg;
            continue;
        }
        if (c == 'B') {
            no_backups = true;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("run", "invalid value '%s'", optarg);
        return cli_usage_error("run", "unknown option");
    }

    int exit_code = EXIT_ERR;
    run_worker *ws = NULL;
    size_t nw = 0;
    pc_metrics *metrics = NULL;
    lag_state ls = {0};
    pc_error err = {0};
    cli_logger lg;
    bool lg_init = false, sigs_installed = false;
    struct sigaction old_term, old_int;
    sigset_t block, oldmask;
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;

    /* Each name can match a source and a sink; the table is sized for the worst case. */
    size_t cap = (m->nsources + m->nsinks + 1) * (size_t)(argc > optind ? argc - optind : 1) + 1;
    ws = calloc(cap, sizeof *ws);
    if (ws == NULL) {
        fprintf(stderr, "pipectl: run: out of memory\n");
        goto done;
    }
    if (optind < argc) {
        bool bad = false;
        for (int i = optind; i < argc; i++) {
            bool dup = false;
            for (int j = optind; j < i; j++)
                dup = dup || strcmp(argv[i], argv[j]) == 0;
            if (dup)
                continue;
            if (no_backups && strcmp(argv[i], BACKUPS_WORKER) == 0) {
                fprintf(stderr, "pipectl: run: '%s' and --no-backups contradict each other\n",
                        BACKUPS_WORKER);
                bad = true;
            } else if (!select_worker(m, argv[i], ws, &nw)) {
                if (strcmp(argv[i], BACKUPS_WORKER) == 0)
                    fprintf(stderr,
                            "pipectl: run: %s declares no backups: block, so there is no "
                            "backup schedule to run\n",
                            g_cli.file);
                else
                    fprintf(stderr, "pipectl: run: no source or sink named '%s' in %s\n", argv[i],
                            g_cli.file);
                bad = true;
            }
        }
        if (bad) {
            print_known(m);
            goto done;
        }
    } else {
        for (size_t i = 0; i < m->nsources; i++)
            ws[nw++] = (run_worker){.kind = W_SOURCE, .src = &m->sources[i], .m = m};
        for (size_t i = 0; i < m->nsinks; i++)
            ws[nw++] = (run_worker){.kind = W_SINK, .sink = &m->sinks[i], .m = m};
        /* a run bounded by --max-records is a batch job: the schedule only when named */
        if (m->backups.declared && !no_backups && max_records == 0)
            ws[nw++] = (run_worker){.kind = W_BACKUPS, .m = m};
    }
    if (nw == 0) {
        if (m->backups.declared)
            fprintf(stderr,
                    "pipectl: run: %s declares no sources or sinks, and the backup schedule is "
                    "left out (--no-backups, or --max-records without the name 'backups'): "
                    "nothing to run. Run 'pipectl run backups' for the schedule.\n",
                    g_cli.file);
        else
            fprintf(stderr,
                    "pipectl: run: %s declares no sources, sinks or backups: nothing to run. "
                    "Add a sources:, sinks: or backups: block to the manifest.\n",
                    g_cli.file);
        goto done;
    }
    /* The schedule needs the repository, the database and a schedule that parses. */
    for (size_t i = 0; i < nw; i++) {
        if (ws[i].kind != W_BACKUPS)
            continue;
        const char *missing = m->archiving.repository == NULL || !m->archiving.repository[0]
                                  ? "archiving.repository (where backups are stored)"
                              : m->pg_dsn == NULL ? "postgres.dsn (the database to back up)"
                                                  : NULL;
        if (missing != NULL) {
            fprintf(stderr,
                    "pipectl: run: the backup schedule needs %s in %s; add it, or leave the "
                    "schedule out with --no-backups\n",
                    missing, g_cli.file);
            goto done;
        }
        if (pc_cron_parse(m->backups.schedule, &ws[i].cron, &err) != 0) {
            cli_print_error("run", &err);
            goto done;
        }
        int64_t probe = 0;
        if (pc_cron_next(&ws[i].cron, (int64_t)time(NULL), &probe) != 0) {
            fprintf(stderr,
                    "pipectl: run: backups.schedule '%s' in %s never fires (no such date): fix "
                    "it\n",
                    m->backups.schedule, g_cli.file);
            goto done;
        }
    }

    cli_logger_init(&lg, stderr, g_cli.verbose);
    lg_init = true;
    g_stop = 0;
    g_first_sig = 0;
    for (size_t i = 0; i < nw; i++) {
        run_worker *w = &ws[i];
        w->lg = &lg;
        w->env = (pc_worker_env){.name = w->kind == W_SOURCE ? w->src->name
                                         : w->kind == W_SINK ? w->sink->name
                                                             : BACKUPS_WORKER,
                                 .stop = &g_stop,
                                 .stats = &w->stats,
                                 .log = cli_log,
                                 .log_ctx = &lg,
                                 .max_records = max_records,
                                 .duration_ms = duration_ms};
        atomic_init(&w->finished, false);
    }

    /* Signals: handled by this thread only (workers and the threads their libraries start
     * inherit a mask blocking them), installed before any worker can get going. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    sigs_installed = true;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &oldmask);

    if (metrics_addr != NULL) {
        int rc = pc_metrics_new(&metrics, &err);
        for (size_t i = 0; rc == 0 && i < nw; i++)
            rc = pc_metrics_add_worker(metrics, ws[i].env.name, kind_name(ws[i].kind), &ws[i].stats,
                                       &err);
        if (rc == 0)
            rc = pc_metrics_listen(metrics, metrics_addr, &err);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
            cli_print_error("run", &err);
            goto done;
        }
        const char *colon = strrchr(metrics_addr, ':');
        int hostlen = (int)(colon - metrics_addr);
        cli_logf(&lg, PC_LOG_INFO, NULL, "serving metrics at http://%.*s:%d/metrics",
                 hostlen > 0 ? hostlen : 7, hostlen > 0 ? metrics_addr : "0.0.0.0",
                 pc_metrics_port(metrics));
    }

    for (size_t i = 0; i < nw; i++) {
        run_worker *w = &ws[i];
        if (w->kind == W_SOURCE)
            cli_logf(&lg, PC_LOG_INFO, w->env.name, "starting ingest worker: %s -> topic %s",
                     w->src->type ? w->src->type : "source", w->src->topic);
        else if (w->kind == W_BACKUPS)
            cli_logf(&lg, PC_LOG_INFO, w->env.name,
                     "starting backup schedule '%s' (UTC) -> repository %s, retention: %d full, "
                     "%d days (0 = no limit)",
                     m->backups.schedule, m->archiving.repository, m->backups.retention_full,
                     m->backups.retention_days);
        else
            cli_logf(&lg, PC_LOG_INFO, w->env.name,
                     "starting sink worker: topic %s -> table %s (%s)", w->sink->topic,
                     w->sink->table, w->sink->mode ? w->sink->mode : "insert");
        int prc = pthread_create(&w->thread, NULL, worker_main, w);
        if (prc != 0) {
            pc_error_set(&w->err, PC_ENOMEM, "cannot start a thread for worker '%s': %s",
                         w->env.name, strerror(prc));
            w->rc = PC_ENOMEM;
            atomic_store(&w->finished, true);
            g_stop = 1;
            break;
        }
        w->started = true;
        pc_metrics_set_running(metrics, w->env.name, true);
    }
    pthread_sigmask(SIG_SETMASK, &oldmask, NULL);

    int64_t start = pc_mono_ms(), next_lag = start;
    bool draining = false, bounded_stop = false;
    bool has_sink = false, has_stream = false;
    for (size_t i = 0; i < nw; i++) {
        has_sink = has_sink || ws[i].kind == W_SINK;
        has_stream = has_stream || ws[i].kind != W_BACKUPS;
    }
    for (;;) {
        size_t running = 0, running_stream = 0;
        for (size_t i = 0; i < nw; i++) {
            run_worker *w = &ws[i];
            if (!w->started)
                continue;
            if (!atomic_load(&w->finished)) {
                running++;
                running_stream += w->kind != W_BACKUPS;
                continue;
            }
            pthread_join(w->thread, NULL);
            w->started = false;
            pc_metrics_set_running(metrics, w->env.name, false);
            if (w->rc != 0) {
                cli_log(&lg, PC_LOG_ERROR, w->env.name, w->err.msg,
                        (const char *const[]){"code", pc_code_name(w->rc), NULL});
                if (!g_stop)
                    cli_logf(&lg, PC_LOG_WARN, NULL,
                             "worker '%s' failed: stopping the other workers", w->env.name);
                g_stop = 1;
            } else {
                char in[32], out[32];
                snprintf(in, sizeof in, "%llu",
                         (unsigned long long)atomic_load(&w->stats.records_in));
                snprintf(out, sizeof out, "%llu",
                         (unsigned long long)atomic_load(&w->stats.records_out));
                cli_log(&lg, PC_LOG_INFO, w->env.name, "worker stopped cleanly",
                        (const char *const[]){"records_in", in, "records_out", out, NULL});
            }
        }
        if (running == 0)
            break;
        /* sources and sinks bounded by --max-records are done: the schedule stops with them */
        if (has_stream && running_stream == 0 && !g_stop)
            g_stop = 1;
        if (g_stop && !draining) {
            draining = true;
            if (g_first_sig)
                cli_logf(&lg, PC_LOG_INFO, NULL,
                         "signal received: draining and committing (send it again to exit "
                         "immediately)");
        }
        /* Workers bound themselves by env->duration_ms; this is the backstop for the process. */
        if (duration_ms > 0 && !bounded_stop && pc_mono_ms() - start >= duration_ms + 2000) {
            bounded_stop = true;
            g_stop = 1;
        }
        if (metrics != NULL && has_sink && pc_mono_ms() >= next_lag) {
            refresh_lag(&ls, metrics, m, ws, nw, &lg);
            next_lag = pc_mono_ms() + LAG_REFRESH_MS;
        }
        pc_sleep_ms(100);
    }

    exit_code = EXIT_OK;
    size_t failed = 0;
    for (size_t i = 0; i < nw; i++)
        if (ws[i].rc != 0) {
            failed++;
            exit_code = EXIT_ERR;
        }
    if (failed > 0)
        for (size_t i = 0; i < nw; i++)
            if (ws[i].rc != 0)
                fprintf(stderr, "pipectl: run: worker '%s' (%s) failed: %s\n", ws[i].env.name,
                        kind_name(ws[i].kind), ws[i].err.msg);
    if (g_cli.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nw; i++) {
            run_worker *w = &ws[i];
            int64_t last = atomic_load(&w->stats.last_commit_ms);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "name",
                               w->env.name, "kind", kind_name(w->kind), "status",
                               w->rc == 0 ? "stopped" : "failed", "records_in",
                               (json_int_t)atomic_load(&w->stats.records_in), "records_out",
                               (json_int_t)atomic_load(&w->stats.records_out), "batches",
                               (json_int_t)atomic_load(&w->stats.batches), "errors",
                               (json_int_t)atomic_load(&w->stats.errors), "dead_letters",
                               (json_int_t)atomic_load(&w->stats.dead_letters), "last_commit_ms",
                               (json_int_t)last, "error", w->rc != 0 ? w->err.msg : NULL));
        }
        json_t *o = json_pack("{s:o, s:b}", "workers", arr, "ok", exit_code == EXIT_OK);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    }
done:
    pc_metrics_free(metrics);
    pc_kafka_free(ls.kafka);
    pc_pg_free(ls.pg);
    if (sigs_installed) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    if (lg_init)
        cli_logger_destroy(&lg);
    free(ws);
    pc_manifest_free(m);
    return exit_code;
}
