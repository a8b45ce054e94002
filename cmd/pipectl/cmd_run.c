/* cmd_run.c: `pipectl run [NAME...]`: the manifest's ingest (sources) and sink workers in one
 * foreground process, one thread each, until SIGTERM/SIGINT (drain, commit, exit 0), a bound
 * (--max-records per worker, --duration) or a worker's failure (the others are stopped too, so a
 * supervisor such as systemd restarts the whole process). A second signal exits at once with
 * 130. Logs go to stderr through log.c; -o json adds a summary object on stdout at the end.
 * With --metrics the endpoint of pkg/worker/metrics.c runs while the workers run: Prometheus
 * /metrics, the dashboard page and its JSON; its observer thread (cli_observer_round, in
 * cmd_dashboard.c) refreshes the sinks' consumer lag, the archiver, backups and drift.
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

#define OBSERVE_MS 5000 /* the metrics observer's period */

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
        "                           [--metrics ADDR:PORT] [--no-backups] [-o json]\n"
        "       pipectl [-f FILE] run SINK... --until-caught-up [--duration D]\n"
        "                           [--max-records N] [-o json]\n\n"
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
        "  --until-caught-up     drain the backlog, then stop (sinks only: name them): at start\n"
        "                        the high watermark of every partition of the sink's topic is\n"
        "                        read; the sink stops, committing its last batch, once the\n"
        "                        offsets its consumer group committed in PostgreSQL\n"
        "                        (pipectl.sink_offsets) reach them all (records sent to the\n"
        "                        dead-letter topic count). Records produced after the start are\n"
        "                        left for the next run. Already caught up: exit 0 at once. With\n"
        "                        --duration, not caught up in time is exit 1, saying how far it\n"
        "                        got; with --max-records, whichever comes first (exit 0). Several\n"
        "                        instances of a sink each stop when the group has caught up\n"
        "  --metrics ADDR:PORT   while the workers run, serve Prometheus metrics at\n"
        "                        http://ADDR:PORT/metrics, the live dashboard at / and its JSON\n"
        "                        at /api/metrics.json (':9464' = every interface, port 0 = any\n"
        "                        free port); lag, archiver, backups and drift are observed every\n"
        "                        5 s on a thread of their own\n"
        "  -o json               print a JSON summary of every worker on stdout at the end\n"
        "                        (for 'backups': records_in = backups started, records_out =\n"
        "                        completed, errors = failed backups or expires; also in the\n"
        "                        metrics, worker=\"backups\", kind=\"backup\"; with\n"
        "                        --until-caught-up each sink's caught_up: true or false)\n"
        "  -v                    debug logs\n\n"
        "Logs: stderr, text at a terminal, JSON lines otherwise (PIPECTL_LOG_FORMAT=text|json\n"
        "forces one).\n"
        "Exit: 0 every worker stopped cleanly, 1 a worker failed or bad input (also a sink\n"
        "not caught up when --duration ends), 130 second signal.\n");
}

typedef enum worker_kind { W_SOURCE, W_SINK, W_BACKUPS } worker_kind;

#define BACKUPS_WORKER "backups"

typedef struct run_worker {
    worker_kind kind;
    const pc_mf_source *src;
    const pc_mf_sink *sink;
    const pc_manifest *m;
    pc_cron cron;   /* W_BACKUPS */
    pc_worker_stats stats;
    pc_worker_env env;
    bool until_caught_up;  /* W_SINK: --until-caught-up */
    pc_sink_report report; /* W_SINK */
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

/* ---------- the backup schedule ----------
 * The policy (catch-up, fire times, skipping, expire after success) is pkg/backup's
 * pc_backup_sched_run; here are only its operations on the real world: the wall clock, and the
 * repository the manifest names, opened for each operation (a repository that was unreachable at
 * one fire time is tried again at the next). */

static int64_t sched_now(void *ctx)
{
    (void)ctx;
    return (int64_t)time(NULL);
}

static int64_t sched_mono(void *ctx)
{
    (void)ctx;
    return pc_mono_ms();
}

static void sched_sleep(void *ctx, long ms)
{
    (void)ctx;
    pc_sleep_ms(ms);
}

static int sched_newest(void *ctx, bool *have, int64_t *start, pc_error *err)
{
    const pc_manifest *m = ((run_worker *)ctx)->m;
    pc_backup_info *list = NULL;
    size_t n = 0;
    pc_repo *r = NULL;
    int rc = cli_repo_open(m, NULL, &r, err);
    if (rc == 0)
        rc = pc_backup_list(r, &list, &n, err);
    *have = rc == 0 && n > 0;
    if (*have)
        *start = list[n - 1].start_time;
    pc_backup_list_free(list, n);
    pc_repo_close(r);
    return rc;
}

static int sched_create(void *ctx, const char *label, pc_backup_info *info, pc_error *err)
{
    const pc_manifest *m = ((run_worker *)ctx)->m;
    pc_repo *r = NULL;
    int rc = cli_repo_open(m, NULL, &r, err);
    if (rc != 0)
        pc_error_prefix(err, "cannot open the backup repository");
    else
        rc = pc_backup_create(r, m->pg_dsn, m->backups.compression, label, 0, 0, NULL, NULL, info,
                              err);
    pc_repo_close(r);
    return rc;
}

static int sched_expire(void *ctx, int keep_full, int keep_days, int64_t now,
                        pc_expire_result *res, pc_error *err)
{
    const pc_manifest *m = ((run_worker *)ctx)->m;
    pc_repo *r = NULL;
    int rc = cli_repo_open(m, NULL, &r, err);
    if (rc == 0)
        rc = pc_backup_expire(r, keep_full, keep_days, now, res, err);
    pc_repo_close(r);
    return rc;
}

/* The schedule's thread. A backup in progress is not interrupted by a stop: pc_backup_create
 * streams the base backup over libpq in this thread (no child process), which, like every worker
 * thread, has SIGTERM and SIGINT blocked, so it runs to its end and the expire after it too. */
static int backups_main(run_worker *w)
{
    const pc_manifest *m = w->m;
    pc_backup_sched s = {.cron = &w->cron,
                         .schedule = m->backups.schedule,
                         .repository_uri = m->archiving.repository,
                         .keep_full = m->backups.retention_full,
                         .keep_days = m->backups.retention_days,
                         .ops = {sched_now, sched_mono, sched_sleep, sched_newest, sched_create,
                                 sched_expire, w}};
    return pc_backup_sched_run(&s, &w->env, &w->err);
}

static void *worker_main(void *arg)
{
    run_worker *w = arg;
    switch (w->kind) {
    case W_SOURCE:
        w->rc = pc_ingest_run(w->m, w->src, &w->env, &w->err);
        break;
    case W_SINK:
        w->rc = pc_sink_run_opts(w->m, w->sink, &w->env,
                                 &(pc_sink_opts){.until_caught_up = w->until_caught_up},
                                 &w->report, &w->err);
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
                                             {"until-caught-up", no_argument, NULL, 'U'},
                                             {NULL, 0, NULL, 0}};
    uint64_t max_records = 0;
    int64_t duration_ms = 0;
    const char *metrics_addr = NULL;
    bool no_backups = false, until_caught_up = false;
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
        if (c == 'U') {
            until_caught_up = true;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("run", "invalid value '%s'", optarg);
        return cli_usage_error("run", "unknown option");
    }

    if (until_caught_up && optind >= argc)
        return cli_usage_error("run", "--until-caught-up drains sinks: name the sink(s) to drain "
                                      "(pipectl run SINK --until-caught-up)");

    int exit_code = EXIT_ERR;
    run_worker *ws = NULL;
    size_t nw = 0;
    pc_metrics *metrics = NULL;
    cli_observer *observer = NULL;
    const pc_mf_sink **run_sinks = NULL;
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
    for (size_t i = 0; until_caught_up && i < nw; i++) {
        if (ws[i].kind == W_SINK) {
            ws[i].until_caught_up = true;
            continue;
        }
        exit_code = cli_usage_error("run",
                                    "--until-caught-up is only for sinks, and '%s' is %s: name "
                                    "only sinks with it",
                                    ws[i].kind == W_SOURCE ? ws[i].src->name : BACKUPS_WORKER,
                                    ws[i].kind == W_SOURCE ? "a source (it ingests, nothing to "
                                                             "catch up with)"
                                                           : "the backup schedule");
        goto done;
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
        /* the lag observed is that of the sinks this process runs */
        size_t nrs = 0;
        run_sinks = calloc(nw, sizeof *run_sinks);
        int rc = run_sinks == NULL ? pc_error_set(&err, PC_ENOMEM, "out of memory") : 0;
        for (size_t i = 0; rc == 0 && i < nw; i++)
            if (ws[i].kind == W_SINK)
                run_sinks[nrs++] = ws[i].sink;
        if (rc == 0)
            rc = pc_metrics_new(&metrics, &err);
        if (rc == 0)
            rc = pc_metrics_set_identity(metrics, m->name, "run", &err);
        for (size_t i = 0; rc == 0 && i < nw; i++)
            rc = pc_metrics_add_worker(metrics, ws[i].env.name, kind_name(ws[i].kind), &ws[i].stats,
                                       &err);
        if (rc == 0)
            rc = pc_metrics_listen(metrics, metrics_addr, &err);
        if (rc == 0)
            rc = cli_observer_new(&observer, m, run_sinks, nrs, &err);
        if (rc == 0)
            rc = pc_metrics_observe(metrics, cli_observer_round, observer, OBSERVE_MS, &err);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
            pc_error_prefix(&err, "--metrics");
            cli_print_error("run", &err);
            goto done;
        }
        char url[320];
        cli_listen_url(metrics_addr, pc_metrics_port(metrics), url, sizeof url);
        cli_logf(&lg, PC_LOG_INFO, NULL, "serving metrics at %s/metrics", url);
        cli_logf(&lg, PC_LOG_INFO, NULL, "dashboard at %s/ (its JSON at %s/api/metrics.json)",
                 url, url);
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

    int64_t start = pc_mono_ms();
    bool draining = false, bounded_stop = false;
    bool has_stream = false;
    for (size_t i = 0; i < nw; i++) {
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
            json_t *wo = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "name",
                               w->env.name, "kind", kind_name(w->kind), "status",
                               w->rc == 0 ? "stopped" : "failed", "records_in",
                               (json_int_t)atomic_load(&w->stats.records_in), "records_out",
                               (json_int_t)atomic_load(&w->stats.records_out), "batches",
                               (json_int_t)atomic_load(&w->stats.batches), "errors",
                               (json_int_t)atomic_load(&w->stats.errors), "dead_letters",
                               (json_int_t)atomic_load(&w->stats.dead_letters), "last_commit_ms",
                               (json_int_t)last, "error", w->rc != 0 ? w->err.msg : NULL);
            if (wo != NULL && w->until_caught_up)
                json_object_set_new(wo, "caught_up", json_boolean(w->report.caught_up));
            json_array_append_new(arr, wo);
        }
        json_t *o = json_pack("{s:o, s:b}", "workers", arr, "ok", exit_code == EXIT_OK);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    }
done:
    pc_metrics_free(metrics); /* stops the observer before it goes */
    cli_observer_free(observer);
    free(run_sinks);
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
