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

/* --- the report: computed first (status_compute), then rendered as text or JSON ------------- */

/* pg_stat_archiver, when the manifest turns archiving on. */
typedef struct archiver_status {
    bool read;         /* archiving is declared: pg_stat_archiver was read (or tried) */
    int rc;            /* 0: a holds the figures; else err says why not */
    pc_error err;
    pc_archiver_stat a;
} archiver_status;

/* The newest backup in archiving.repository and, with a backups: block, whether the schedule
 * is kept. */
typedef struct backup_status {
    bool shown;      /* false: no repository and no backups: block, nothing to say */
    bool judge;      /* backups: declared: the schedule is checked */
    bool no_repo;    /* backups: declared without archiving.repository */
    const char *repo; /* the repository as shown (may point into r) */
    pc_repo *r;
    int lrc;         /* 0: listed; else err says why not */
    bool missing;    /* a directory repository that does not exist yet */
    pc_error err;
    pc_backup_info *list;
    size_t n;
    pc_backup_damaged *bad; /* skipped with a warning: the newest readable one is judged */
    size_t nbad;
    int64_t due;
    int fresh;
    char problem[PC_ERROR_MSG_MAX + 512];
} backup_status;

/* Lag of one sink, per partition: high watermark - stored next offset (the whole partition
 * when the sink has stored nothing yet). */
typedef struct sink_status {
    const pc_mf_sink *sk;
    int rc; /* 0: high and next hold n partitions each; else err says why not */
    pc_error err;
    int64_t *high, *next;
    int n;
} sink_status;

typedef struct status_report {
    const pc_manifest *m;
    int64_t now, grace;
    bool healthy;
    int rc; /* computing the plan: 0, or err says which system failed */
    pc_error err;
    bool kafka_reachable, pg_reachable;
    pc_observed o;
    size_t *urp; /* indexes into o.topics: declared topics with under-replicated partitions */
    size_t nurp;
    bool have_plan;
    size_t cr, ch, de, re; /* the plan's summary: drift */
    sink_status *sinks;    /* one per m->sinks */
    archiver_status archiver;
    backup_status backups;
    cli_nocodb_status nocodb;
} status_report;

static void archiver_compute(status_report *sr)
{
    const pc_manifest *m = sr->m;
    archiver_status *as = &sr->archiver;
    if (!m->archiving.declared || !m->archiving.enabled || m->pg_dsn == NULL)
        return;
    as->read = true;
    as->rc = pc_archiver_stat_read(m->pg_dsn, g_cli.timeout_s, &as->a, &as->err);
    if (as->rc != 0 || as->a.failing)
        sr->healthy = false;
}

static void backup_compute(status_report *sr)
{
    const pc_manifest *m = sr->m;
    backup_status *bs = &sr->backups;
    bs->repo = m->archiving.repository;
    bs->judge = m->backups.declared;
    bs->fresh = PC_BACKUP_FRESH;
    if (bs->repo == NULL || bs->repo[0] == '\0') {
        if (!bs->judge)
            return;
        bs->shown = true;
        bs->no_repo = true;
        sr->healthy = false;
        return;
    }
    bs->shown = true;
    bs->lrc = cli_repo_open(m, NULL, &bs->r, &bs->err);
    if (bs->lrc == 0) {
        bs->repo = pc_repo_uri(bs->r);
        bs->lrc = pc_backup_scan(bs->r, &bs->list, &bs->n, &bs->bad, &bs->nbad, &bs->err);
    }
    /* a directory repository that is not there yet: archiving or a backup makes it */
    bs->missing = bs->lrc == PC_EUNAVAIL && bs->r != NULL &&
                  strcmp(pc_repo_kind(bs->r), "dir") == 0 && access(bs->repo, F_OK) != 0 &&
                  errno == ENOENT;
    if (bs->lrc != 0) {
        if (bs->judge)
            sr->healthy = false;
        return;
    }
    if (!bs->judge)
        return;
    const pc_backup_info *b = bs->n > 0 ? &bs->list[bs->n - 1] : NULL;
    pc_cron c;
    pc_error err = {0};
    if (pc_cron_parse(m->backups.schedule, &c, &err) != 0) {
        snprintf(bs->problem, sizeof bs->problem, "%s", err.msg);
        sr->healthy = false;
        return;
    }
    bs->fresh = pc_backup_schedule_check(&c, b != NULL, b ? b->start_time : 0, sr->now, sr->grace,
                                         &bs->due);
    char d[32], st[32];
    pc_iso_utc(bs->due, d);
    if (bs->fresh == PC_BACKUP_NONE)
        snprintf(bs->problem, sizeof bs->problem,
                 "no backup in %s although backups are scheduled ('%s'): run 'pipectl "
                 "backup create', and 'pipectl run' for the schedule",
                 bs->repo, m->backups.schedule);
    else if (bs->fresh == PC_BACKUP_STALE) {
        pc_iso_utc(b->start_time, st);
        snprintf(bs->problem, sizeof bs->problem,
                 "the newest backup (%s) started at %s, before the scheduled time %s "
                 "(schedule '%s' UTC, grace %llds): the scheduled backup is missing; "
                 "check that 'pipectl run' is running with the 'backups' worker and its "
                 "log",
                 b->id, st, d, m->backups.schedule, (long long)sr->grace);
    }
    if (bs->fresh != PC_BACKUP_FRESH)
        sr->healthy = false;
}

/* Lag never makes status fail: shown, not judged. */
static void sink_compute(pc_session *s, sink_status *ss)
{
    ss->rc = -1;
    if (s->kafka == NULL || s->pg == NULL)
        pc_error_set(&ss->err, PC_EUNAVAIL, "Kafka or PostgreSQL unreachable: lag unknown");
    else if (pc_kafka_watermarks(s->kafka, ss->sk->topic, &ss->high, &ss->n, &ss->err) == 0 &&
             pc_pg_sink_offsets(s->pg, ss->sk->name, ss->sk->topic, &ss->next, ss->n,
                                &ss->err) == 0)
        ss->rc = 0;
}

static int64_t sink_partition_lag(const sink_status *ss, int p)
{
    int64_t lag = ss->next[p] >= 0 ? ss->high[p] - ss->next[p] : ss->high[p];
    return lag < 0 ? 0 : lag;
}

static int64_t sink_total_lag(const sink_status *ss)
{
    int64_t total = 0;
    for (int p = 0; ss->rc == 0 && p < ss->n; p++)
        total += sink_partition_lag(ss, p);
    return total;
}

static void status_dispose(status_report *sr)
{
    if (sr->archiver.read && sr->archiver.rc == 0)
        pc_archiver_stat_free(&sr->archiver.a);
    /* the list before the repository (repo may point into r) */
    pc_backup_list_free(sr->backups.list, sr->backups.n);
    pc_backup_damaged_free(sr->backups.bad, sr->backups.nbad);
    pc_repo_close(sr->backups.r);
    for (size_t i = 0; sr->sinks != NULL && i < sr->m->nsinks; i++) {
        free(sr->sinks[i].high);
        free(sr->sinks[i].next);
    }
    free(sr->sinks);
    cli_status_nocodb_dispose(&sr->nocodb);
    free(sr->urp);
    pc_observed_free(&sr->o);
}

/* Everything status reports, and the verdict. Returns 0 or PC_ENOMEM. */
static int status_compute(status_report *sr, const pc_manifest *m, int64_t grace)
{
    pc_session s = {0};
    pc_plan *p = NULL;
    int rc = 0;
    sr->m = m;
    sr->grace = grace;
    sr->healthy = true;
    sr->rc = cli_compute_plan(m, false, &s, &sr->o, &p, &sr->err);
    if (sr->rc != 0) {
        sr->healthy = false;
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
    sr->kafka_reachable = s.kafka != NULL;
    sr->pg_reachable = s.pg != NULL;
    /* replication: brokers that replica sets name but that are not live, and the declared
     * topics' partitions with fewer in-sync replicas than replicas */
    const pc_observed *o = &sr->o;
    sr->urp = calloc(o->ntopics ? o->ntopics : 1, sizeof *sr->urp);
    sr->sinks = calloc(m->nsinks ? m->nsinks : 1, sizeof *sr->sinks);
    if (sr->urp == NULL || sr->sinks == NULL) {
        rc = PC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < o->ntopics; i++)
        if (pc_manifest_find_topic(m, o->topics[i].name) != NULL &&
            o->topics[i].under_replicated != 0)
            sr->urp[sr->nurp++] = i;
    if (o->ndown_brokers > 0 || sr->nurp > 0)
        sr->healthy = false;
    sr->have_plan = p != NULL;
    if (p != NULL)
        pc_plan_summary(p, &sr->cr, &sr->ch, &sr->de, &sr->re);
    if (sr->cr + sr->ch + sr->de + sr->re > 0)
        sr->healthy = false;
    sr->now = (int64_t)time(NULL);
    archiver_compute(sr);
    backup_compute(sr);
    cli_status_nocodb_compute(&sr->nocodb, m, s.nocodb, &sr->healthy);
    for (size_t i = 0; i < m->nsinks; i++) {
        sr->sinks[i].sk = &m->sinks[i];
        sink_compute(&s, &sr->sinks[i]);
    }
done:
    pc_plan_free(p);
    pc_session_close(&s);
    return rc;
}

/* --- text ----------------------------------------------------------------------------------- */

static void archiver_text(const status_report *sr, FILE *out)
{
    const archiver_status *as = &sr->archiver;
    const pc_archiver_stat *a = &as->a;
    if (!as->read)
        return;
    if (as->rc != 0) {
        fprintf(out, "  archiver  unknown: %s\n", as->err.msg);
        return;
    }
    char t1[32] = "", t2[32] = "", ago1[32] = "", ago2[32] = "";
    if (a->last_archived_time) {
        pc_iso_utc(a->last_archived_time, t1);
        human_age(sr->now - a->last_archived_time, ago1);
    }
    if (a->last_failed_time) {
        pc_iso_utc(a->last_failed_time, t2);
        human_age(sr->now - a->last_failed_time, ago2);
    }
    fprintf(out, "  archiver  archive_mode=%s  archived %lld", a->archive_mode,
            (long long)a->archived_count);
    if (a->last_archived_wal)
        fprintf(out, ", last %s at %s (%s ago)", a->last_archived_wal, t1, ago1);
    fprintf(out, "; failed %lld", (long long)a->failed_count);
    if (a->last_failed_wal)
        fprintf(out, ", last %s at %s (%s ago)", a->last_failed_wal, t2, ago2);
    fprintf(out, "\n");
    if (a->failing)
        fprintf(out,
                "  archiving FAILING: the last attempt (%s) failed and nothing was archived "
                "since; PostgreSQL keeps the WAL in pg_wal until archive_command succeeds. "
                "Check the repository %s (writable? space?) and the server log\n",
                a->last_failed_wal ? a->last_failed_wal : "?",
                sr->m->archiving.repository ? sr->m->archiving.repository
                                            : "(archiving.command)");
}

static void backup_text(const status_report *sr, FILE *out)
{
    const backup_status *bs = &sr->backups;
    if (!bs->shown)
        return;
    if (bs->no_repo) {
        fprintf(out, "  backups   UNHEALTHY: backups: is declared but archiving.repository is "
                     "not\n");
        return;
    }
    if (bs->lrc != 0) {
        if (bs->missing)
            fprintf(out,
                    "  backups   none: the repository %s does not exist yet (the first archived WAL "
                    "segment or 'pipectl backup create' makes it; is archive_mode on?)\n",
                    bs->repo);
        else
            fprintf(out, "  backups   cannot list %s: %s\n", bs->repo, bs->err.msg);
        return;
    }
    const pc_backup_info *b = bs->n > 0 ? &bs->list[bs->n - 1] : NULL;
    if (b != NULL) {
        char age[32], stop[32];
        human_age(sr->now - b->stop_time, age);
        pc_iso_utc(b->stop_time, stop);
        fprintf(out, "  backups   %zu in %s; newest %s \"%s\", finished %s (%s ago)\n", bs->n,
                bs->repo, b->id, b->label ? b->label : "", stop, age);
    } else {
        fprintf(out, "  backups   none in %s\n", bs->repo);
    }
    if (bs->judge && bs->problem[0] == '\0')
        fprintf(out, "  schedule  '%s' (UTC): on time\n", sr->m->backups.schedule);
    else if (bs->problem[0] != '\0')
        fprintf(out, "  schedule  UNHEALTHY: %s\n", bs->problem);
    for (size_t i = 0; i < bs->nbad; i++)
        fprintf(out, "  backups   warning: skipped damaged backup %s: %s\n", bs->bad[i].id,
                bs->bad[i].problem);
}

static void sink_text(const sink_status *ss, FILE *out)
{
    const pc_mf_sink *sk = ss->sk;
    fprintf(out, "  sink      %s  topic %s -> %s\n", sk->name, sk->topic, sk->table);
    for (int p = 0; ss->rc == 0 && p < ss->n; p++) {
        char committed[32];
        if (ss->next[p] >= 0)
            snprintf(committed, sizeof committed, "%lld", (long long)ss->next[p]);
        else
            snprintf(committed, sizeof committed, "none");
        fprintf(out, "    partition %-3d high %-10lld committed %-10s lag %lld\n", p,
                (long long)ss->high[p], committed, (long long)sink_partition_lag(ss, p));
    }
    if (ss->rc != 0)
        fprintf(out, "    lag unknown: %s\n", ss->err.msg);
    else
        fprintf(out, "    lag total %lld\n", (long long)sink_total_lag(ss));
}

static const char *setting_value(const pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->nsettings; i++)
        if (pc_streq(o->settings[i].name, name))
            return o->settings[i].value;
    return NULL;
}

static void status_text(const status_report *sr, FILE *out)
{
    const pc_manifest *m = sr->m;
    const pc_observed *o = &sr->o;
    fprintf(out, "pipeline %s: %s\n", m->name, sr->healthy ? "healthy" : "UNHEALTHY");
    if (sr->rc != 0)
        fprintf(out, "  error: %s\n", sr->err.msg);
    if (m->kafka_bootstrap)
        fprintf(out, "  kafka     %s  %s  (%zu topics declared)\n", m->kafka_bootstrap,
                sr->kafka_reachable ? "reachable" : "UNREACHABLE", m->ntopics);
    if (sr->kafka_reachable && o->kafka_observed) {
        fprintf(out, "  brokers   %d live", o->kafka_brokers);
        if (o->ndown_brokers) {
            fprintf(out, ", DOWN: broker ");
            for (size_t i = 0; i < o->ndown_brokers; i++)
                fprintf(out, "%s%d", i ? ", " : "", o->down_brokers[i]);
            fprintf(out, " (named in replica sets, not answering)");
        }
        fprintf(out, "\n");
    }
    if (sr->nurp > 0) {
        fprintf(out, "  replicas  UNDER-REPLICATED partitions: ");
        for (size_t k = 0; k < sr->nurp; k++) {
            const pc_obs_topic *t = &o->topics[sr->urp[k]];
            fprintf(out, "%s%s (%d: partition%s ", k ? ", " : "", t->name, t->under_replicated,
                    t->under_replicated == 1 ? "" : "s");
            for (int j = 0; t->under_replicated_ids != NULL && j < t->under_replicated; j++)
                fprintf(out, "%s%d", j ? "," : "", t->under_replicated_ids[j]);
            fprintf(out, ")");
        }
        fprintf(out, "\n");
    }
    if (m->pg_dsn)
        fprintf(out, "  postgres  %s  (%zu schemas declared)\n",
                sr->pg_reachable ? "reachable" : "UNREACHABLE", m->nschemas);
    if (o->pg_observed)
        fprintf(out, "  archiving archive_mode=%s wal_level=%s\n",
                setting_value(o, "archive_mode") ? setting_value(o, "archive_mode") : "?",
                setting_value(o, "wal_level") ? setting_value(o, "wal_level") : "?");
    if (sr->have_plan)
        fprintf(out, "  drift     %s\n", sr->cr + sr->ch + sr->de + sr->re == 0
                                             ? "none: live state matches the manifest"
                                             : "pending changes: run 'pipectl plan'");
    for (size_t i = 0; i < m->nsinks; i++)
        sink_text(&sr->sinks[i], out);
    archiver_text(sr, out);
    backup_text(sr, out);
    cli_status_nocodb_text(&sr->nocodb, out);
}

/* --- JSON ----------------------------------------------------------------------------------- */

static json_t *archiver_json(const status_report *sr)
{
    const archiver_status *as = &sr->archiver;
    const pc_archiver_stat *a = &as->a;
    if (!as->read)
        return json_null();
    if (as->rc != 0)
        return json_pack("{s:s}", "error", as->err.msg);
    return json_pack("{s:s?, s:I, s:s?, s:o, s:I, s:s?, s:o, s:b}", "archive_mode",
                     a->archive_mode, "archived_count", (json_int_t)a->archived_count,
                     "last_archived_wal", a->last_archived_wal, "last_archived_time",
                     time_or_null(a->last_archived_time), "failed_count",
                     (json_int_t)a->failed_count, "last_failed_wal", a->last_failed_wal,
                     "last_failed_time", time_or_null(a->last_failed_time), "failing",
                     a->failing);
}

static json_t *backup_json(const status_report *sr)
{
    const backup_status *bs = &sr->backups;
    if (!bs->shown)
        return json_null();
    if (bs->no_repo)
        return json_pack("{s:s}", "problem", "backups declared without archiving.repository");
    if (bs->lrc != 0)
        return json_pack("{s:s, s:s}", "repository", bs->repo, "error", bs->err.msg);
    const pc_backup_info *b = bs->n > 0 ? &bs->list[bs->n - 1] : NULL;
    json_t *damaged = json_array();
    for (size_t i = 0; i < bs->nbad; i++)
        json_array_append_new(damaged, json_pack("{s:s, s:s}", "id", bs->bad[i].id, "problem",
                                                 bs->bad[i].problem));
    json_t *newest = json_null();
    if (b != NULL) {
        char st[32], et[32];
        pc_iso_utc(b->start_time, st);
        pc_iso_utc(b->stop_time, et);
        newest = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", b->id, "label",
                           b->label ? b->label : "", "start_time", st, "stop_time", et, "age_s",
                           (json_int_t)(sr->now - b->stop_time));
    }
    const char *problem = bs->problem;
    return json_pack("{s:s, s:I, s:o, s:o, s:s?, s:o, s:I, s:s?, s:s?}", "repository", bs->repo,
                     "count", (json_int_t)bs->n, "damaged", damaged, "newest", newest,
                     "schedule", sr->m->backups.schedule, "due_since",
                     bs->judge && bs->due ? time_or_null(bs->due) : json_null(), "grace_s",
                     (json_int_t)sr->grace, "state",
                     !bs->judge                     ? NULL
                     : problem[0] == '\0'           ? "on_time"
                     : bs->fresh == PC_BACKUP_NONE  ? "none"
                     : bs->fresh == PC_BACKUP_STALE ? "late"
                                                    : "invalid_schedule",
                     "problem", problem[0] ? problem : NULL);
}

static json_t *sink_json(const sink_status *ss)
{
    const pc_mf_sink *sk = ss->sk;
    json_t *parts = json_array();
    for (int p = 0; ss->rc == 0 && p < ss->n; p++)
        json_array_append_new(
            parts, json_pack("{s:i, s:I, s:o, s:I}", "partition", p, "high_watermark",
                             (json_int_t)ss->high[p], "next_offset",
                             ss->next[p] >= 0 ? json_integer(ss->next[p]) : json_null(), "lag",
                             (json_int_t)sink_partition_lag(ss, p)));
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s?}", "name", sk->name, "topic", sk->topic,
                     "table", sk->table, "partitions", parts, "lag_total",
                     ss->rc == 0 ? json_integer(sink_total_lag(ss)) : json_null(), "error",
                     ss->rc != 0 ? ss->err.msg : NULL);
}

static json_t *status_json(const status_report *sr)
{
    const pc_manifest *m = sr->m;
    const pc_observed *o = &sr->o;
    json_t *js = json_object();
    json_t *down = json_array(), *urp = json_array();
    for (size_t i = 0; i < o->ndown_brokers; i++)
        json_array_append_new(down, json_integer(o->down_brokers[i]));
    for (size_t k = 0; k < sr->nurp; k++) {
        const pc_obs_topic *t = &o->topics[sr->urp[k]];
        json_t *ids = json_array();
        for (int j = 0; t->under_replicated_ids != NULL && j < t->under_replicated; j++)
            json_array_append_new(ids, json_integer(t->under_replicated_ids[j]));
        json_array_append_new(urp, json_pack("{s:s, s:i, s:o}", "topic", t->name,
                                             "under_replicated_partitions", t->under_replicated,
                                             "partitions", ids));
    }
    json_object_set_new(js, "pipeline", json_string(m->name));
    json_object_set_new(js, "healthy", json_boolean(sr->healthy));
    json_object_set_new(js, "error", sr->rc != 0 ? json_string(sr->err.msg) : json_null());
    json_object_set_new(js, "kafka",
                        json_pack("{s:s?, s:b, s:i, s:o, s:o}", "bootstrap", m->kafka_bootstrap,
                                  "reachable", sr->kafka_reachable, "live_brokers",
                                  o->kafka_brokers, "down_brokers", down, "under_replicated",
                                  urp));
    json_object_set_new(js, "postgres",
                        json_pack("{s:b, s:s?, s:s?}", "reachable", sr->pg_reachable,
                                  "archive_mode", setting_value(o, "archive_mode"), "wal_level",
                                  setting_value(o, "wal_level")));
    json_object_set_new(js, "drift",
                        json_pack("{s:I, s:I, s:I, s:I}", "create", (json_int_t)sr->cr, "change",
                                  (json_int_t)sr->ch, "delete", (json_int_t)sr->de, "refused",
                                  (json_int_t)sr->re));
    json_t *sinks = json_array();
    for (size_t i = 0; i < m->nsinks; i++)
        json_array_append_new(sinks, sink_json(&sr->sinks[i]));
    json_object_set_new(js, "sinks", sinks);
    json_object_set_new(js, "archiver", archiver_json(sr));
    json_object_set_new(js, "backups", backup_json(sr));
    json_t *nocodb = cli_status_nocodb_json(&sr->nocodb);
    json_object_set_new(js, "nocodb", nocodb ? nocodb : json_null());
    return js;
}

/* One report: text (or JSON, compact for --watch) on stdout; EXIT_OK when healthy. */
static int status_once(const pc_manifest *m, int64_t grace, bool compact)
{
    status_report sr = {0};
    if (status_compute(&sr, m, grace) != 0) {
        fprintf(stderr, "pipectl status: out of memory\n");
        status_dispose(&sr);
        return EXIT_ERR;
    }
    if (!g_cli.json) {
        status_text(&sr, stdout);
    } else {
        json_t *js = status_json(&sr);
        char *out = json_dumps(js, compact ? JSON_COMPACT : JSON_INDENT(2));
        if (out)
            printf("%s\n", out);
        free(out);
        json_decref(js);
    }
    int exit_code = sr.healthy ? EXIT_OK : EXIT_ERR;
    status_dispose(&sr);
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
