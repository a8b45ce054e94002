/* cmd_dashboard.c: `pipectl dashboard`: the dashboard page, its JSON and /metrics for a host
 * that runs no workers: it only observes (consumer lag of every sink, pg_stat_archiver, the
 * backup repository, drift). Also the observer itself (cli_observer_round), which `run
 * --metrics` uses too: one round reads each system with a bounded timeout and publishes what it
 * saw into the metrics endpoint (pkg/worker/metrics.c runs it on its own thread, never in an
 * HTTP request). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "plan_io.h"
#include "postgres.h"

#define OBSERVE_TIMEOUT_MS 3000 /* each connection of a round */
#define OBSERVE_DRIFT_EVERY 3   /* drift (a whole plan) every third round */
#define OBSERVE_BACKUP_GRACE_S 3600 /* as status's default --backup-grace */
#define DEFAULT_LISTEN "127.0.0.1:9464"

/* ---------- the observer ---------- */

struct cli_observer {
    const pc_manifest *m;
    const pc_mf_sink **sinks; /* whose lag to measure */
    int *nparts;              /* partitions last published per sink, to forget them */
    size_t nsinks;
    pc_kafka *kafka;
    pc_pg *pg;
    unsigned round;
    int drift; /* the last drift result, republished between plans */
    uint64_t drift_actions;
    char *drift_error;
};

int cli_observer_new(cli_observer **out, const pc_manifest *m, const pc_mf_sink *const *sinks,
                     size_t nsinks, pc_error *err)
{
    *out = NULL;
    cli_observer *o = calloc(1, sizeof *o);
    if (o == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory creating the observer");
    o->m = m;
    o->drift = -1;
    size_t n = sinks != NULL ? nsinks : m->nsinks;
    o->sinks = calloc(n ? n : 1, sizeof *o->sinks);
    o->nparts = calloc(n ? n : 1, sizeof *o->nparts);
    if (o->sinks == NULL || o->nparts == NULL) {
        cli_observer_free(o);
        return pc_error_set(err, PC_ENOMEM, "out of memory creating the observer");
    }
    for (size_t i = 0; i < n; i++)
        o->sinks[i] = sinks != NULL ? sinks[i] : &m->sinks[i];
    o->nsinks = n;
    *out = o;
    return 0;
}

void cli_observer_free(cli_observer *o)
{
    if (o == NULL)
        return;
    pc_kafka_free(o->kafka);
    pc_pg_free(o->pg);
    free(o->sinks);
    free(o->nparts);
    free(o->drift_error);
    free(o);
}

static void problem(pc_buf *b, const char *what, const char *msg)
{
    pc_buf_printf(b, "%s%s: %s", b->len ? "; " : "", what, msg);
}

/* Lag of each sink: high watermark - stored next offset (the whole partition when the sink has
 * stored nothing yet), as `status` computes it. On failure the sink's partitions are forgotten
 * (no stale figure shown as current) and the connections dropped, to be reopened next round. */
static void observe_lag(cli_observer *o, pc_metrics *mx, pc_buf *problems)
{
    const pc_manifest *m = o->m;
    pc_error err = {0};
    if (o->nsinks == 0 || m->kafka_bootstrap == NULL || m->pg_dsn == NULL)
        return;
    if (o->kafka == NULL &&
        pc_kafka_open_manifest(&o->kafka, m, OBSERVE_TIMEOUT_MS, &err) != 0)
        goto fail;
    if (o->pg == NULL && pc_pg_open(&o->pg, m->pg_dsn, OBSERVE_TIMEOUT_MS / 1000, &err) != 0)
        goto fail;
    for (size_t i = 0; i < o->nsinks; i++) {
        const pc_mf_sink *s = o->sinks[i];
        int64_t *high = NULL, *next = NULL;
        int n = 0;
        if (pc_kafka_watermarks(o->kafka, s->topic, &high, &n, &err) != 0 ||
            pc_pg_sink_offsets(o->pg, s->name, s->topic, &next, n, &err) != 0) {
            free(high);
            free(next);
            goto fail;
        }
        for (int p = 0; p < n; p++) {
            int64_t lag = next[p] >= 0 ? high[p] - next[p] : high[p];
            pc_metrics_set_lag(mx, s->name, s->topic, p, lag < 0 ? 0 : lag, &err);
        }
        for (int p = n; p < o->nparts[i]; p++) /* partitions that went away */
            pc_metrics_set_lag(mx, s->name, s->topic, p, -1, &err);
        o->nparts[i] = n;
        free(high);
        free(next);
    }
    return;
fail:
    problem(problems, "consumer lag", err.msg);
    for (size_t i = 0; i < o->nsinks; i++) {
        for (int p = 0; p < o->nparts[i]; p++)
            pc_metrics_set_lag(mx, o->sinks[i]->name, o->sinks[i]->topic, p, -1, NULL);
        o->nparts[i] = 0;
    }
    pc_kafka_free(o->kafka);
    pc_pg_free(o->pg);
    o->kafka = NULL;
    o->pg = NULL;
}

static void observe_archiver(cli_observer *o, pc_metrics_observed *out, pc_buf *problems)
{
    const pc_manifest *m = o->m;
    if (!m->archiving.declared || !m->archiving.enabled || m->pg_dsn == NULL)
        return;
    pc_archiver_stat a = {0};
    pc_error err = {0};
    if (pc_archiver_stat_read(m->pg_dsn, OBSERVE_TIMEOUT_MS / 1000, &a, &err) != 0) {
        problem(problems, "archiver", err.msg);
        return;
    }
    out->has_archiver = true;
    out->archive_mode = a.archive_mode;
    out->last_archived_wal = a.last_archived_wal;
    out->last_failed_wal = a.last_failed_wal;
    a.archive_mode = a.last_archived_wal = a.last_failed_wal = NULL; /* moved */
    out->archived_count = a.archived_count;
    out->failed_count = a.failed_count;
    out->last_archived_time = a.last_archived_time;
    out->last_failed_time = a.last_failed_time;
    out->archiver_failing = a.failing;
    pc_archiver_stat_free(&a);
}

static void observe_backups(cli_observer *o, pc_metrics_observed *out, pc_buf *problems)
{
    const pc_manifest *m = o->m;
    const char *repo = m->archiving.repository;
    if (repo == NULL || repo[0] == '\0')
        return;
    pc_backup_info *list = NULL;
    size_t n = 0;
    pc_error err = {0};
    pc_repo *r = NULL;
    int rc = cli_repo_open(m, NULL, &r, &err);
    if (rc == 0)
        rc = pc_backup_scan(r, &list, &n, NULL, NULL, &err);
    /* a directory repository not there yet: no backup, as status says */
    bool missing = rc == PC_EUNAVAIL && r != NULL && strcmp(pc_repo_kind(r), "dir") == 0 &&
                   access(pc_repo_uri(r), F_OK) != 0 && errno == ENOENT;
    pc_repo_close(r);
    if (rc != 0 && !missing) {
        problem(problems, "backups", err.msg);
        return;
    }
    const pc_backup_info *b = n > 0 ? &list[n - 1] : NULL;
    out->has_backups = true;
    out->backup_repository = pc_strdup(repo);
    out->backup_count = n;
    if (b != NULL) {
        out->backup_newest_id = pc_strdup(b->id);
        out->backup_newest_stop = b->stop_time;
    }
    if (m->backups.declared) {
        pc_cron c;
        int64_t due = 0;
        pc_error_clear(&err);
        if (pc_cron_parse(m->backups.schedule, &c, &err) == 0)
            out->backup_late = pc_backup_schedule_check(&c, b != NULL, b ? b->start_time : 0,
                                                        (int64_t)time(NULL),
                                                        OBSERVE_BACKUP_GRACE_S,
                                                        &due) != PC_BACKUP_FRESH;
        else
            problem(problems, "backups.schedule", err.msg);
    }
    pc_backup_list_free(list, n);
}

/* Drift: the plan `pipectl plan` would print, counted (a whole observation of every system). */
static void observe_drift(cli_observer *o)
{
    pc_session s = {0};
    pc_observed obs = {0};
    pc_plan *p = NULL;
    pc_error err = {0};
    free(o->drift_error);
    o->drift_error = NULL;
    if (cli_compute_plan(o->m, false, &s, &obs, &p, &err) == 0 && p != NULL) {
        size_t cr = 0, ch = 0, de = 0, re = 0;
        pc_plan_summary(p, &cr, &ch, &de, &re);
        o->drift_actions = cr + ch + de + re;
        o->drift = o->drift_actions > 0;
    } else {
        o->drift = -1;
        o->drift_error = pc_strdup(err.msg[0] ? err.msg : "the plan could not be computed");
    }
    pc_plan_free(p);
    pc_observed_free(&obs);
    pc_session_close(&s);
}

void cli_observer_round(void *ctx, pc_metrics *mx, pc_metrics_observed *out,
                        const atomic_int *stop)
{
    cli_observer *o = ctx;
    pc_buf problems = {0};
    observe_lag(o, mx, &problems);
    if (!atomic_load(stop))
        observe_archiver(o, out, &problems);
    if (!atomic_load(stop))
        observe_backups(o, out, &problems);
    if (!atomic_load(stop) && o->round % OBSERVE_DRIFT_EVERY == 0)
        observe_drift(o);
    o->round++;
    out->drift = o->drift;
    out->drift_actions = o->drift_actions;
    if (o->drift_error != NULL)
        problem(&problems, "drift", o->drift_error);
    if (problems.len > 0) {
        out->error = pc_redact(problems.data); /* shown on a web page: never a credential */
        if (out->error == NULL)
            out->error = pc_strdup("out of memory describing the observer's problems");
    }
    pc_buf_free(&problems);
    out->observed_ms = pc_wall_ms();
}

/* "http://HOST:PORT" for a listen address as given and the port bound. */
void cli_listen_url(const char *addr, int port, char *out, size_t n)
{
    const char *colon = strrchr(addr, ':');
    int hostlen = colon != NULL ? (int)(colon - addr) : 0;
    snprintf(out, n, "http://%.*s:%d", hostlen > 0 ? hostlen : 7, hostlen > 0 ? addr : "0.0.0.0",
             port);
}

/* ---------- the command ---------- */

static atomic_int g_dash_stop;
static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_dash_stop, 1);
}

static void help(void)
{
    printf("Usage: pipectl [-f FILE] dashboard [--listen ADDR:PORT]\n\n"
           "Serves the live dashboard for a host that runs no workers: it only observes. Every\n"
           "5 s, on a thread of its own and with bounded timeouts, it reads the consumer lag of\n"
           "every sink (high watermark minus the offset the sink committed), pg_stat_archiver\n"
           "(with archiving), the newest backup in archiving.repository and, every 15 s, drift\n"
           "(the actions 'pipectl plan' would take). `pipectl run --metrics` serves the same\n"
           "page with its workers' rates and latencies as well.\n\n"
           "  http://ADDR:PORT/                    the dashboard (one page, no external asset)\n"
           "  http://ADDR:PORT/api/metrics.json    its figures as JSON, with the last minutes\n"
           "  http://ADDR:PORT/metrics             the same figures for Prometheus\n"
           "                                       (Grafana: templates/grafana/pipectl.json)\n\n"
           "Options:\n"
           "  --listen ADDR:PORT   where to serve (default " DEFAULT_LISTEN "; ':9464' = every\n"
           "                       interface, port 0 = any free port, [::1]:9464 for IPv6)\n"
           "  --timeout SEC        connection timeout for the drift check (default 10)\n"
           "  -v                   debug logs\n\n"
           "Runs until SIGTERM or SIGINT. Logs go to stderr (JSON lines when not a terminal).\n"
           "Exit: 0 stopped by a signal, 1 bad input or the address cannot be served.\n");
}

int cmd_dashboard(int argc, char **argv)
{
    static const char *const single[] = {"listen", NULL};
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"listen", required_argument, NULL, 'L'},
                                             {NULL, 0, NULL, 0}};
    const char *listen_addr = DEFAULT_LISTEN;
    cli_fix_single_dash(argc, argv, single);
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'L') {
            listen_addr = optarg;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("dashboard", "invalid value '%s'", optarg);
        return cli_usage_error("dashboard", "unknown option");
    }
    if (optind < argc)
        return cli_usage_error("dashboard", "unexpected argument '%s'", argv[optind]);

    int exit_code = EXIT_ERR;
    pc_metrics *mx = NULL;
    cli_observer *ob = NULL;
    pc_error err = {0};
    cli_logger lg;
    bool lg_init = false, sigs = false;
    struct sigaction sa, old_term, old_int;
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;
    cli_logger_init(&lg, stderr, g_cli.verbose);
    lg_init = true;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    atomic_store(&g_dash_stop, 0);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    sigs = true;
    if (pc_metrics_new(&mx, &err) != 0 ||
        pc_metrics_set_identity(mx, m->name, "dashboard", &err) != 0 ||
        pc_metrics_listen(mx, listen_addr, &err) != 0 ||
        cli_observer_new(&ob, m, NULL, 0, &err) != 0 ||
        pc_metrics_observe(mx, cli_observer_round, ob, 5000, &err) != 0) {
        cli_print_error("dashboard", &err);
        goto done;
    }
    char url[320];
    cli_listen_url(listen_addr, pc_metrics_port(mx), url, sizeof url);
    cli_logf(&lg, PC_LOG_INFO, NULL,
             "serving the dashboard of pipeline %s at %s/ (JSON at %s/api/metrics.json, "
             "Prometheus at %s/metrics); observing %zu sinks every 5 s",
             m->name, url, url, url, m->nsinks);
    while (!atomic_load(&g_dash_stop))
        pc_sleep_ms(100);
    cli_logf(&lg, PC_LOG_INFO, NULL, "signal received: stopping the dashboard");
    exit_code = EXIT_OK;
done:
    pc_metrics_free(mx); /* stops the observer before ob goes */
    cli_observer_free(ob);
    if (sigs) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    if (lg_init)
        cli_logger_destroy(&lg);
    pc_manifest_free(m);
    return exit_code;
}
