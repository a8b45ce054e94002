/* cmd_status.c: `pipectl status`: reachability of each declared system and drift. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan_io.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] status [-o json]\n\n"
           "Checks each system the manifest declares: Kafka (bootstrap answers, declared topics\n"
           "present), PostgreSQL (reachable, WAL archiving settings as running), and whether the\n"
           "live state has drifted from the manifest (pending plan actions).\n\n"
           "Exit: 0 healthy, 1 a system is unreachable or has drifted.\n");
}

static const char *setting_value(const pc_observed *o, const char *name)
{
    for (size_t i = 0; i < o->nsettings; i++)
        if (pc_streq(o->settings[i].name, name))
            return o->settings[i].value;
    return NULL;
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
