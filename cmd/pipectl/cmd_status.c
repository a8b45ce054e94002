/* cmd_status.c: `pipectl status`: reachability of each declared system and drift. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"
#include "plan_io.h"
#include "postgres.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] status [-o json]\n\n"
           "Checks each system the manifest declares: Kafka (bootstrap answers, declared topics\n"
           "present), PostgreSQL (reachable, WAL archiving settings as running), and whether the\n"
           "live state has drifted from the manifest (pending plan actions).\n"
           "For every sink: consumer lag per partition = the topic's high watermark minus the\n"
           "next offset the sink committed in pipectl.sink_offsets (shown, not judged: lag never\n"
           "makes status fail).\n\n"
           "Exit: 0 healthy, 1 a system is unreachable or has drifted.\n");
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
                                               "high_watermark", (json_int_t)high[p],
                                               "next_offset",
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

int cmd_status(int argc, char **argv)
{
    int parsed = cli_parse_plain(argc, argv, "status", help);
    if (parsed >= 0)
        return parsed;

    int exit_code = EXIT_ERR;
    pc_session s = {0};
    pc_observed o = {0};
    pc_plan *p = NULL;
    pc_error err = {0};
    json_t *js = json_object();
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;
    bool healthy = true;
    int rc = cli_compute_plan(m, false, &s, &o, &p, &err);
    const char *state = rc == 0 ? "reachable" : "unreachable";
    if (rc != 0)
        healthy = false;
    size_t cr = 0, ch = 0, de = 0, re = 0;
    if (p != NULL)
        pc_plan_summary(p, &cr, &ch, &de, &re);
    size_t drift = cr + ch + de + re;
    if (drift > 0)
        healthy = false;
    if (!g_cli.json) {
        printf("pipeline %s: %s\n", m->name, healthy ? "healthy" : "UNHEALTHY");
        if (rc != 0)
            printf("  error: %s\n", err.msg);
        if (m->kafka_bootstrap)
            printf("  kafka     %s  %s  (%zu topics declared)\n", m->kafka_bootstrap,
                   s.kafka ? "reachable" : state, m->ntopics);
        if (m->pg_dsn)
            printf("  postgres  %s  (%zu schemas declared)\n", s.pg ? "reachable" : state,
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
    } else {
        json_object_set_new(js, "pipeline", json_string(m->name));
        json_object_set_new(js, "healthy", json_boolean(healthy));
        json_object_set_new(js, "error", rc != 0 ? json_string(err.msg) : json_null());
        json_object_set_new(js, "kafka", json_pack("{s:s?, s:b}", "bootstrap", m->kafka_bootstrap,
                                                   "reachable", s.kafka != NULL));
        json_object_set_new(js, "postgres", json_pack("{s:b, s:s?, s:s?}", "reachable", s.pg != NULL,
                                                      "archive_mode", setting_value(&o, "archive_mode"),
                                                      "wal_level", setting_value(&o, "wal_level")));
        json_object_set_new(js, "drift", json_pack("{s:I, s:I, s:I, s:I}", "create", (json_int_t)cr,
                                                   "change", (json_int_t)ch, "delete", (json_int_t)de,
                                                   "refused", (json_int_t)re));
        json_t *sinks = json_array();
        for (size_t i = 0; i < m->nsinks; i++)
            json_array_append_new(sinks, sink_lag(&s, &m->sinks[i], false));
        json_object_set_new(js, "sinks", sinks);
        char *out = json_dumps(js, JSON_INDENT(2));
        if (out)
            printf("%s\n", out);
        free(out);
    }
    exit_code = healthy ? EXIT_OK : EXIT_ERR;
done:
    json_decref(js);
    pc_plan_free(p);
    pc_observed_free(&o);
    pc_session_close(&s);
    pc_manifest_free(m);
    return exit_code;
}
