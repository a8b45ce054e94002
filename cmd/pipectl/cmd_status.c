/* cmd_status.c: `pipectl status`: reachability of each declared system, drift, consumer lag,
 * and the backup side: pg_stat_archiver (archiving failing?) and the newest backup against
 * backups.schedule (late?). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup.h"
#include "cli.h"
#include "kafka.h"
#include "plan_io.h"
#include "postgres.h"

#define DEFAULT_GRACE_S 3600

static void help(void)
{
    printf(
        "Usage: pipectl [-f FILE] status [--backup-grace D] [--watch [--interval D]] [-o json]\n\n"
        "Checks each system the manifest declares: Kafka (bootstrap answers, declared topics\n"
        "present), PostgreSQL (reachable, WAL archiving settings as running), and whether the\n"
        "live state has drifted from the manifest (pending plan actions).\n"
        "For every sink: consumer lag per partition = the topic's high watermark minus the\n"
        "next offset the sink committed in pipectl.sink_offsets (shown, not judged: lag never\n"
        "makes status fail).\n"
        "With archiving: pg_stat_archiver's archived and failed counts, last archived and last\n"
        "failed WAL and times; unhealthy while archiving fails (the last failure is newer than\n"
        "the last success: PostgreSQL keeps the WAL in pg_wal meanwhile).\n"
        "With backups: the newest backup (label, age); unhealthy when there is none, or when\n"
        "it started before the schedule's latest fire time that is at least the grace period\n"
        "old (a scheduled backup is missing). A backup whose pipectl.json cannot be read is\n"
        "skipped with a warning naming it (the newest readable one is judged).\n"
        "With nocodb: NocoDB reachable and signed in, the base, each exposed schema's source\n"
        "and the number of tables NocoDB sees; unhealthy when NocoDB is unreachable, refuses\n"
        "the credentials, or the base or a declared source is missing.\n\n"
        "Options:\n"
        "  --backup-grace D   how late a scheduled backup may start: 30s, 10m, 1h, 2d\n"
        "                     (default 1h)\n"
        "  --watch            refresh the report every --interval (default 2s), like top: the\n"
        "                     screen is redrawn at a terminal (q or Ctrl-C quits, exit 0);\n"
        "                     elsewhere the reports follow each other (JSON: one per line)\n"
        "  -o json            the same as one JSON object on stdout (\"healthy\": true|false)\n\n"
        "Exit: 0 healthy, 1 a system is unreachable, has drifted, archiving fails or backups\n"
        "are missing or late, or NocoDB lacks what the manifest declares.\n");
}

/* "3d 4h", "5h 3m", "12m 5s", "40s" */
static void human_age(int64_t s, char out[32])
{
    if (s < 0)
        s = 0;
    if (s >= 86400)
        snprintf(out, 32, "%lldd %lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(out, 32, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(out, 32, "%lldm %llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(out, 32, "%llds", (long long)s);
}

static json_t *time_or_null(int64_t t)
{
    char b[32];
    if (t == 0)
        return json_null();
    pc_iso_utc(t, b);
    return json_string(b);
}

/* pg_stat_archiver, when the manifest turns archiving on. Sets *healthy false while archiving
 * fails. Returns the JSON object (or JSON null when archiving is not declared). */
static json_t *archiver_state(const pc_manifest *m, int64_t now, FILE *text, bool *healthy)
{
    if (!m->archiving.declared || !m->archiving.enabled || m->pg_dsn == NULL)
        return json_null();
    pc_archiver_stat a = {0};
    pc_error err = {0};
    if (pc_archiver_stat_read(m->pg_dsn, g_cli.timeout_s, &a, &err) != 0) {
        *healthy = false;
        if (text)
            fprintf(text, "  archiver  unknown: %s\n", err.msg);
        return json_pack("{s:s}", "error", err.msg);
    }
    if (a.failing)
        *healthy = false;
    if (text) {
        char t1[32] = "", t2[32] = "", ago1[32] = "", ago2[32] = "";
        if (a.last_archived_time) {
            pc_iso_utc(a.last_archived_time, t1);
            human_age(now - a.last_archived_time, ago1);
        }
        if (a.last_failed_time) {
            pc_iso_utc(a.last_failed_time, t2);
            human_age(now - a.last_failed_time, ago2);
        }
        fprintf(text, "  archiver  archive_mode=%s  archived %lld", a.archive_mode,
                (long long)a.archived_count);
        if (a.last_archived_wal)
            fprintf(text, ", last %s at %s (%s ago)", a.last_archived_wal, t1, ago1);
        fprintf(text, "; failed %lld", (long long)a.failed_count);
        if (a.last_failed_wal)
            fprintf(text, ", last %s at %s (%s ago)", a.last_failed_wal, t2, ago2);
        fprintf(text, "\n");
        if (a.failing)
            fprintf(text,
                    "  archiving FAILING: the last attempt (%s) failed and nothing was archived "
                    "since; PostgreSQL keeps the WAL in pg_wal until archive_command succeeds. "
                    "Check the repository %s (writable? space?) and the server log\n",
                    a.last_failed_wal ? a.last_failed_wal : "?",
                    m->archiving.repository ? m->archiving.repository : "(archiving.command)");
    }
    json_t *o =
        json_pack("{s:s?, s:I, s:s?, s:o, s:I, s:s?, s:o, s:b}", "archive_mode", a.archive_mode,
                  "archived_count", (json_int_t)a.archived_count, "last_archived_wal",
                  a.last_archived_wal, "last_archived_time", time_or_null(a.last_archived_time),
                  "failed_count", (json_int_t)a.failed_count, "last_failed_wal", a.last_failed_wal,
                  "last_failed_time", time_or_null(a.last_failed_time), "failing", a.failing);
    pc_archiver_stat_free(&a);
    return o;
}

/* The newest backup in archiving.repository and, with a backups: block, whether the schedule
 * is kept. JSON null when there is no repository to look at. */
static json_t *backup_state(const pc_manifest *m, int64_t now, int64_t grace, FILE *text,
                            bool *healthy)
{
    const char *repo = m->archiving.repository;
    bool judge = m->backups.declared;
    if (repo == NULL || repo[0] == '\0') {
        if (!judge)
            return json_null();
        *healthy = false;
        if (text)
            fprintf(text, "  backups   UNHEALTHY: backups: is declared but archiving.repository is "
                          "not\n");
        return json_pack("{s:s}", "problem", "backups declared without archiving.repository");
    }
    pc_backup_info *list = NULL;
    pc_backup_damaged *bad = NULL;
    size_t n = 0, nbad = 0;
    pc_error err = {0};
    json_t *o = NULL;
    char problem[PC_ERROR_MSG_MAX + 512] = "";
    /* a damaged backup is skipped with a warning (the newest readable one is judged) */
    pc_repo *r = NULL;
    int lrc = cli_repo_open(m, NULL, &r, &err);
    if (lrc == 0) {
        repo = pc_repo_uri(r);
        lrc = pc_backup_scan(r, &list, &n, &bad, &nbad, &err);
    }
    /* a directory repository that is not there yet: archiving or a backup makes it */
    bool missing = lrc == PC_EUNAVAIL && r != NULL && strcmp(pc_repo_kind(r), "dir") == 0 &&
                   access(repo, F_OK) != 0 && errno == ENOENT;
    if (lrc != 0) {
        if (judge)
            *healthy = false;
        if (text && missing)
            fprintf(text,
                    "  backups   none: the repository %s does not exist yet (the first archived WAL "
                    "segment or 'pipectl backup create' makes it; is archive_mode on?)\n",
                    repo);
        else if (text)
            fprintf(text, "  backups   cannot list %s: %s\n", repo, err.msg);
        o = json_pack("{s:s, s:s}", "repository", repo, "error", err.msg);
        goto done;
    }
    const pc_backup_info *b = n > 0 ? &list[n - 1] : NULL;
    int64_t due = 0;
    int fresh = PC_BACKUP_FRESH;
    if (judge) {
        pc_cron c;
        if (pc_cron_parse(m->backups.schedule, &c, &err) != 0) {
            snprintf(problem, sizeof problem, "%s", err.msg);
            *healthy = false;
        } else {
            fresh =
                pc_backup_schedule_check(&c, b != NULL, b ? b->start_time : 0, now, grace, &due);
            char d[32], st[32];
            pc_iso_utc(due, d);
            if (fresh == PC_BACKUP_NONE)
                snprintf(problem, sizeof problem,
                         "no backup in %s although backups are scheduled ('%s'): run 'pipectl "
                         "backup create', and 'pipectl run' for the schedule",
                         repo, m->backups.schedule);
            else if (fresh == PC_BACKUP_STALE) {
                pc_iso_utc(b->start_time, st);
                snprintf(problem, sizeof problem,
                         "the newest backup (%s) started at %s, before the scheduled time %s "
                         "(schedule '%s' UTC, grace %llds): the scheduled backup is missing; "
                         "check that 'pipectl run' is running with the 'backups' worker and its "
                         "log",
                         b->id, st, d, m->backups.schedule, (long long)grace);
            }
            if (fresh != PC_BACKUP_FRESH)
                *healthy = false;
        }
    }
    if (text) {
        if (b != NULL) {
            char age[32], stop[32];
            human_age(now - b->stop_time, age);
            pc_iso_utc(b->stop_time, stop);
            fprintf(text, "  backups   %zu in %s; newest %s \"%s\", finished %s (%s ago)\n", n,
                    repo, b->id, b->label ? b->label : "", stop, age);
        } else {
            fprintf(text, "  backups   none in %s\n", repo);
        }
        if (judge && problem[0] == '\0')
            fprintf(text, "  schedule  '%s' (UTC): on time\n", m->backups.schedule);
        else if (problem[0] != '\0')
            fprintf(text, "  schedule  UNHEALTHY: %s\n", problem);
        for (size_t i = 0; i < nbad; i++)
            fprintf(text, "  backups   warning: skipped damaged backup %s: %s\n", bad[i].id,
                    bad[i].problem);
    }
    json_t *damaged = json_array();
    for (size_t i = 0; i < nbad; i++)
        json_array_append_new(damaged,
                              json_pack("{s:s, s:s}", "id", bad[i].id, "problem", bad[i].problem));
    json_t *newest = json_null();
    if (b != NULL) {
        char st[32], et[32];
        pc_iso_utc(b->start_time, st);
        pc_iso_utc(b->stop_time, et);
        newest =
            json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", b->id, "label", b->label ? b->label : "",
                      "start_time", st, "stop_time", et, "age_s", (json_int_t)(now - b->stop_time));
    }
    o = json_pack("{s:s, s:I, s:o, s:o, s:s?, s:o, s:I, s:s?, s:s?}", "repository", repo, "count",
                  (json_int_t)n, "damaged", damaged, "newest", newest, "schedule",
                  m->backups.schedule, "due_since", judge && due ? time_or_null(due) : json_null(),
                  "grace_s", (json_int_t)grace, "state",
                  !judge                     ? NULL
                  : problem[0] == '\0'       ? "on_time"
                  : fresh == PC_BACKUP_NONE  ? "none"
                  : fresh == PC_BACKUP_STALE ? "late"
                                             : "invalid_schedule",
                  "problem", problem[0] ? problem : NULL);
done:
    /* after the last use of repo (it may point into r) */
    pc_backup_list_free(list, n);
    pc_backup_damaged_free(bad, nbad);
    pc_repo_close(r);
    return o;
}

static const char *setting_value(const pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->nsettings; i++)
        if (pc_streq(o->settings[i].name, name))
            return o->settings[i].value;
    return NULL;
}

/* Lag of one sink, per partition: high watermark - stored next offset (the whole partition
 * when the sink has stored nothing yet). Returns a JSON object; text mode prints it too. */
static json_t *sink_lag(pc_session *s, const pc_mf_sink *sk, bool text)
{
    pc_error err = {0};
    int64_t *high = NULL, *next = NULL;
    int n = 0;
    json_t *parts = json_array();
    json_int_t total = 0;
    int rc = -1;
    if (s->kafka == NULL || s->pg == NULL)
        pc_error_set(&err, PC_EUNAVAIL, "Kafka or PostgreSQL unreachable: lag unknown");
    else if (pc_kafka_watermarks(s->kafka, sk->topic, &high, &n, &err) == 0 &&
             pc_pg_sink_offsets(s->pg, sk->name, sk->topic, &next, n, &err) == 0)
        rc = 0;
    if (text)
        printf("  sink      %s  topic %s -> %s\n", sk->name, sk->topic, sk->table);
    for (int p = 0; rc == 0 && p < n; p++) {
        int64_t lag = next[p] >= 0 ? high[p] - next[p] : high[p];
        if (lag < 0)
            lag = 0;
        total += lag;
        json_array_append_new(parts, json_pack("{s:i, s:I, s:o, s:I}", "partition", p,
                                               "high_watermark", (json_int_t)high[p], "next_offset",
                                               next[p] >= 0 ? json_integer(next[p]) : json_null(),
                                               "lag", (json_int_t)lag));
        if (text) {
            char committed[32];
            if (next[p] >= 0)
                snprintf(committed, sizeof committed, "%lld", (long long)next[p]);
            else
                snprintf(committed, sizeof committed, "none");
            printf("    partition %-3d high %-10lld committed %-10s lag %lld\n", p,
                   (long long)high[p], committed, (long long)lag);
        }
    }
    if (text && rc != 0)
        printf("    lag unknown: %s\n", err.msg);
    else if (text)
        printf("    lag total %lld\n", (long long)total);
    free(high);
    free(next);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s?}", "name", sk->name, "topic", sk->topic,
                     "table", sk->table, "partitions", parts, "lag_total",
                     rc == 0 ? json_integer(total) : json_null(), "error",
                     rc != 0 ? err.msg : NULL);
}

/* One report: text (or JSON, compact for --watch) on stdout; EXIT_OK when healthy. */
static int status_once(const pc_manifest *m, int64_t grace, bool compact)
{
    int exit_code = EXIT_ERR;
    pc_session s = {0};
    pc_observed o = {0};
    pc_plan *p = NULL;
    pc_error err = {0};
    json_t *js = json_object();
    bool healthy = true;
    int rc = cli_compute_plan(m, false, &s, &o, &p, &err);
    if (rc != 0) {
        healthy = false;
        /* one system failed and the session was closed: reconnect to each of the others on
         * its own, so the report says which one is down and still shows what it can */
        pc_error ignored = {0};
        /* not the one that just failed: status would wait for it twice */
        if (s.kafka == NULL && m->kafka_bootstrap != NULL && !pc_streq(s.failed, "kafka"))
            (void)pc_kafka_open_manifest(&s.kafka, m, g_cli.timeout_s * 1000, &ignored);
        pc_error_clear(&ignored);
        if (s.pg == NULL && m->pg_dsn != NULL && !pc_streq(s.failed, "postgres"))
            (void)pc_pg_open(&s.pg, m->pg_dsn, g_cli.timeout_s, &ignored);
    }
    /* replication: brokers that replica sets name but that are not live, and the declared
     * topics' partitions with fewer in-sync replicas than replicas */
    json_t *down = json_array(), *urp = json_array();
    pc_buf urp_text = {0}, down_text = {0};
    for (size_t i = 0; i < o.ndown_brokers; i++) {
        json_array_append_new(down, json_integer(o.down_brokers[i]));
        pc_buf_printf(&down_text, "%s%d", i ? ", " : "", o.down_brokers[i]);
    }
    for (size_t i = 0; i < o.ntopics; i++) {
        if (pc_manifest_find_topic(m, o.topics[i].name) == NULL || o.topics[i].under_replicated == 0)
            continue;
        const pc_obs_topic *t = &o.topics[i];
        json_t *ids = json_array();
        pc_buf_printf(&urp_text, "%s%s (%d: partition%s ", urp_text.len ? ", " : "", t->name,
                      t->under_replicated, t->under_replicated == 1 ? "" : "s");
        for (int j = 0; t->under_replicated_ids != NULL && j < t->under_replicated; j++) {
            json_array_append_new(ids, json_integer(t->under_replicated_ids[j]));
            pc_buf_printf(&urp_text, "%s%d", j ? "," : "", t->under_replicated_ids[j]);
        }
        pc_buf_puts(&urp_text, ")");
        json_array_append_new(urp, json_pack("{s:s, s:i, s:o}", "topic", t->name,
                                             "under_replicated_partitions", t->under_replicated,
                                             "partitions", ids));
    }
    if (o.ndown_brokers > 0 || json_array_size(urp) > 0)
        healthy = false;
    size_t cr = 0, ch = 0, de = 0, re = 0;
    if (p != NULL)
        pc_plan_summary(p, &cr, &ch, &de, &re);
    size_t drift = cr + ch + de + re;
    if (drift > 0)
        healthy = false;
    /* the backup side, computed before the verdict line; its text is printed after the rest */
    char *btext = NULL;
    size_t btext_len = 0;
    FILE *bf = g_cli.json ? NULL : open_memstream(&btext, &btext_len);
    int64_t now = (int64_t)time(NULL);
    json_t *archiver = archiver_state(m, now, bf, &healthy);
    json_t *backups = backup_state(m, now, grace, bf, &healthy);
    json_t *nocodb = cli_status_nocodb(m, s.nocodb, bf, &healthy);
    if (bf != NULL)
        fclose(bf);
    if (!g_cli.json) {
        printf("pipeline %s: %s\n", m->name, healthy ? "healthy" : "UNHEALTHY");
        if (rc != 0)
            printf("  error: %s\n", err.msg);
        if (m->kafka_bootstrap)
            printf("  kafka     %s  %s  (%zu topics declared)\n", m->kafka_bootstrap,
                   s.kafka ? "reachable" : "UNREACHABLE", m->ntopics);
        if (s.kafka != NULL && o.kafka_observed)
            printf("  brokers   %d live%s%s%s\n", o.kafka_brokers,
                   o.ndown_brokers ? ", DOWN: broker " : "",
                   o.ndown_brokers ? down_text.data : "",
                   o.ndown_brokers ? " (named in replica sets, not answering)" : "");
        if (urp_text.len > 0)
            printf("  replicas  UNDER-REPLICATED partitions: %s\n", urp_text.data);
        if (m->pg_dsn)
            printf("  postgres  %s  (%zu schemas declared)\n", s.pg ? "reachable" : "UNREACHABLE",
                   m->nschemas);
        if (o.pg_observed)
            printf("  archiving archive_mode=%s wal_level=%s\n",
                   setting_value(&o, "archive_mode") ? setting_value(&o, "archive_mode") : "?",
                   setting_value(&o, "wal_level") ? setting_value(&o, "wal_level") : "?");
        if (p != NULL)
            printf("  drift     %s\n", drift == 0 ? "none: live state matches the manifest"
                                                  : "pending changes: run 'pipectl plan'");
        for (size_t i = 0; i < m->nsinks; i++)
            json_decref(sink_lag(&s, &m->sinks[i], true));
        if (btext != NULL)
            fputs(btext, stdout);
    } else {
        json_object_set_new(js, "pipeline", json_string(m->name));
        json_object_set_new(js, "healthy", json_boolean(healthy));
        json_object_set_new(js, "error", rc != 0 ? json_string(err.msg) : json_null());
        json_object_set_new(js, "kafka",
                            json_pack("{s:s?, s:b, s:i, s:O, s:O}", "bootstrap", m->kafka_bootstrap,
                                      "reachable", s.kafka != NULL, "live_brokers",
                                      o.kafka_brokers, "down_brokers", down,
                                      "under_replicated", urp));
        json_object_set_new(js, "postgres",
                            json_pack("{s:b, s:s?, s:s?}", "reachable", s.pg != NULL,
                                      "archive_mode", setting_value(&o, "archive_mode"),
                                      "wal_level", setting_value(&o, "wal_level")));
        json_object_set_new(js, "drift",
                            json_pack("{s:I, s:I, s:I, s:I}", "create", (json_int_t)cr, "change",
                                      (json_int_t)ch, "delete", (json_int_t)de, "refused",
                                      (json_int_t)re));
        json_t *sinks = json_array();
        for (size_t i = 0; i < m->nsinks; i++)
            json_array_append_new(sinks, sink_lag(&s, &m->sinks[i], false));
        json_object_set_new(js, "sinks", sinks);
        json_object_set_new(js, "archiver", archiver);
        json_object_set_new(js, "backups", backups);
        json_object_set_new(js, "nocodb", nocodb ? nocodb : json_null());
        archiver = backups = nocodb = NULL;
        char *out = json_dumps(js, compact ? JSON_COMPACT : JSON_INDENT(2));
        if (out)
            printf("%s\n", out);
        free(out);
    }
    exit_code = healthy ? EXIT_OK : EXIT_ERR;
    json_decref(down);
    json_decref(urp);
    pc_buf_free(&urp_text);
    pc_buf_free(&down_text);
    json_decref(archiver);
    json_decref(backups);
    json_decref(nocodb);
    free(btext);
    json_decref(js);
    pc_plan_free(p);
    pc_observed_free(&o);
    pc_session_close(&s);
    return exit_code;
}

/* ---------- --watch: the same report refreshed, like top ---------- */

static volatile sig_atomic_t g_watch_stop;
static void watch_signal(int sig)
{
    (void)sig;
    g_watch_stop = 1;
}

/* Refreshes every interval_ms until q (at a terminal), Ctrl-C or SIGTERM: 0. At a terminal the
 * screen is redrawn; otherwise each report follows the last (text: a blank line between them;
 * -o json: one JSON object per line). */
static int status_watch(const pc_manifest *m, int64_t grace, int64_t interval_ms)
{
    bool tty_out = isatty(STDOUT_FILENO) && !g_cli.json;
    bool tty_in = isatty(STDIN_FILENO);
    struct termios saved;
    bool raw = false;
    if (tty_in && tty_out && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios t = saved;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = watch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g_watch_stop = 0;
    while (!g_watch_stop) {
        if (tty_out)
            fputs("\033[H\033[2J", stdout); /* home, clear */
        char when[32];
        pc_iso_utc((int64_t)time(NULL), when);
        if (!g_cli.json)
            printf("pipectl status --watch: %s, every %.1f s%s\n", when, interval_ms / 1000.0,
                   raw ? " (q quits)" : "");
        (void)status_once(m, grace, true);
        if (!tty_out && !g_cli.json)
            putchar('\n');
        fflush(stdout);
        for (int64_t end = pc_mono_ms() + interval_ms; !g_watch_stop && pc_mono_ms() < end;) {
            struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
            if (raw && poll(&pfd, 1, 100) > 0) {
                char ch = 0;
                if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
                    g_watch_stop = 1;
            } else if (!raw) {
                pc_sleep_ms(100);
            }
        }
    }
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"backup-grace", required_argument, NULL, 'G'},
                                             {"watch", no_argument, NULL, 'W'},
                                             {"interval", required_argument, NULL, 'I'},
                                             {NULL, 0, NULL, 0}};
    int64_t grace = DEFAULT_GRACE_S, interval_ms = -1;
    bool watch = false;
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'W') {
            watch = true;
            continue;
        }
        if (c == 'I') {
            interval_ms = cli_parse_duration_ms(optarg);
            if (interval_ms < 500 || interval_ms > 3600 * 1000)
                return cli_usage_error("status",
                                       "--interval wants a duration from 500ms to 1h (2s, 10s, "
                                       "1m), got '%s'",
                                       optarg);
            continue;
        }
        if (c == 'G') {
            int64_t ms = cli_parse_duration_ms(optarg);
            grace = ms < 0 ? -1 : ms / 1000;
            if (grace < 0)
                return cli_usage_error("status",
                                       "--backup-grace wants a number and a unit (30s, 10m, 1h, "
                                       "2d), got '%s'",
                                       optarg);
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("status", "invalid value '%s'", optarg);
        return cli_usage_error("status", "unknown option");
    }
    if (optind < argc)
        return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
    if (interval_ms >= 0 && !watch)
        return cli_usage_error("status", "--interval goes with --watch");
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        return EXIT_ERR;
    int rc = watch ? status_watch(m, grace, interval_ms < 0 ? 2000 : interval_ms)
                   : status_once(m, grace, false);
    pc_manifest_free(m);
    return rc;
}
