/* cmd_apply.c: `pipectl apply [PLANFILE]`: converge, report each action, snapshot to git. */
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan_io.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] apply [PLANFILE] [--allow-delete] [--no-snapshot] [-o json]\n\n"
           "Makes Kafka and PostgreSQL match the manifest: computes the plan (or takes PLANFILE,\n"
           "saved by 'plan -out'), prints it, performs each action in order and reports its result,\n"
           "stops at the first failure, then commits a snapshot (manifest with secrets redacted +\n"
           "observed state) to the git repository named in the manifest's git block.\n"
           "Safe to re-run: a second apply changes nothing and creates no commit.\n"
           "Two applies of one pipeline never race: a PostgreSQL advisory lock serialises them.\n\n"
           "Options:\n"
           "  PLANFILE            apply exactly this saved plan; refused as stale when the live state\n"
           "                      changed since it was computed (run plan again)\n"
           "  --allow-delete      delete topics this pipeline created and no longer declares, and\n"
           "                      drop undeclared columns of its tables (otherwise refused)\n"
           "  --no-snapshot       skip the git snapshot\n"
           "  -o json             results as JSON on stdout\n"
           "  --timeout SEC       connection timeout per system (default 10)\n\n"
           "Exit: 0 applied (refused actions are listed, not performed), 1 error.\n");
}

static const char *op_sym(pc_op op)
{
    switch (op) {
    case PC_OP_CREATE: return "+";
    case PC_OP_CHANGE: return "~";
    case PC_OP_DELETE: return "-";
    case PC_OP_REFUSED: return "!";
    }
    return "?";
}

static const char *kind_noun(pc_action_kind k)
{
    switch (k) {
    case PC_ACT_TOPIC_CREATE:
    case PC_ACT_TOPIC_PARTITIONS:
    case PC_ACT_TOPIC_CONFIG:
    case PC_ACT_TOPIC_DELETE: return "topic";
    case PC_ACT_SCHEMA_CREATE: return "schema";
    case PC_ACT_TABLE_CREATE: return "table";
    case PC_ACT_COLUMN_ADD:
    case PC_ACT_COLUMN_TYPE:
    case PC_ACT_COLUMN_NULLABLE:
    case PC_ACT_COLUMN_DROP: return "column";
    case PC_ACT_SETTING: return "setting";
    case PC_ACT_NOTE: return "note";
    }
    return "object";
}

typedef struct report_ctx {
    json_t *results; /* JSON mode */
    size_t total;
} report_ctx;

static void report(void *vctx, const pc_action *a, size_t index, int rc, double seconds,
                   const pc_error *err)
{
    report_ctx *ctx = vctx;
    const char *status = rc == 0 ? "done" : rc == 1 ? "skipped" : "failed";
    if (ctx->results != NULL) {
        json_array_append_new(ctx->results,
                              json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:s?}", "index",
                                        (json_int_t)index, "system", a->system ? a->system : "",
                                        "kind", kind_noun(a->kind), "object",
                                        a->object ? a->object : "", "status", status, "seconds",
                                        seconds, "error", err ? err->msg : NULL));
    }
    if (a->kind == PC_ACT_NOTE)
        return;
    FILE *f = g_cli.json ? stderr : stdout;
    if (rc == 1)
        fprintf(f, "  [%zu/%zu] %s %s %s %s: not performed (%s)\n", index + 1, ctx->total,
                op_sym(a->op), a->system, kind_noun(a->kind), a->object,
                a->reason ? a->reason : "refused");
    else if (rc == 0)
        fprintf(f, "  [%zu/%zu] %s %s %s %s: done (%.2f s)\n", index + 1, ctx->total, op_sym(a->op),
                a->system, kind_noun(a->kind), a->object, seconds);
    else
        fprintf(f, "  [%zu/%zu] %s %s %s %s: FAILED\n", index + 1, ctx->total, op_sym(a->op),
                a->system, kind_noun(a->kind), a->object);
    fflush(f);
}

int cmd_apply(int argc, char **argv)
{
    static const char *const single[] = {"allow-delete", "no-snapshot", NULL};
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"allow-delete", no_argument, NULL, 'D'},
                                             {"no-snapshot", no_argument, NULL, 'S'},
                                             {NULL, 0, NULL, 0}};
    bool allow_delete = false, snapshot = true;
    cli_fix_single_dash(argc, argv, single);
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'D') {
            allow_delete = true;
            continue;
        }
        if (c == 'S') {
            snapshot = false;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("apply", "invalid value '%s'", optarg);
        return cli_usage_error("apply", "unknown option");
    }
    const char *plan_file = NULL;
    if (optind < argc)
        plan_file = argv[optind++];
    if (optind < argc)
        return cli_usage_error("apply", "unexpected argument '%s'", argv[optind]);

    int exit_code = EXIT_ERR;
    pc_session s = {0};
    pc_observed o = {0};
    pc_plan *p = NULL;
    pc_plan *saved = NULL;
    pc_error err = {0};
    pc_apply_result res;
    pc_snapshot_result snap = {0};
    report_ctx rctx = {0};
    json_t *out = NULL;
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;

    if (plan_file != NULL && plan_io_load(&saved, plan_file, &err) != 0) {
        cli_print_error("apply", &err);
        fprintf(stderr, "Nothing was changed.\n");
        goto done;
    }
    if (cli_compute_plan(m, allow_delete, &s, &o, &p, &err) != 0) {
        cli_print_error("apply", &err);
        fprintf(stderr, "Nothing was changed.\n");
        goto done;
    }
    if (saved != NULL) {
        if (!pc_streq(saved->pipeline, m->name)) {
            fprintf(stderr,
                    "pipectl: apply: plan file %s is for pipeline '%s' but %s declares '%s'. "
                    "Nothing was changed.\n",
                    plan_file, saved->pipeline ? saved->pipeline : "?", g_cli.file, m->name);
            goto done;
        }
        if (strcmp(saved->fingerprint, p->fingerprint) != 0) {
            fprintf(stderr,
                    "pipectl: apply: plan file %s is stale: Kafka or PostgreSQL changed since it was "
                    "computed (fingerprint %.12s, now %.12s). Nothing was changed. Run "
                    "'pipectl plan -out %s' again and review it.\n",
                    plan_file, saved->fingerprint, p->fingerprint, plan_file);
            if (g_cli.json)
                printf("{\"error\": {\"code\": \"conflict\", \"message\": \"stale plan\"}}\n");
            goto done;
        }
        pc_plan_free(p);
        p = saved;
        saved = NULL;
    }

    if (!g_cli.json) {
        if (cli_print_plan(p, stdout) != 0)
            goto done;
        if (pc_plan_has_changes(p))
            printf("\nApplying:\n");
    } else {
        rctx.results = json_array();
    }
    rctx.total = p->nactions;
    int rc = pc_apply_execute(&s, m, &o, p, report, &rctx, &res, &err);
    if (rc != 0) {
        cli_print_error("apply", &err);
        if (res.failed_index != SIZE_MAX)
            fprintf(stderr,
                    "Apply stopped at action %zu of %zu: %zu action(s) before it were applied, the "
                    "rest were not. Fix the problem above and run apply again; it resumes from the "
                    "live state.\n",
                    res.failed_index + 1, p->nactions, res.done);
        else
            fprintf(stderr, "Nothing was changed.\n");
        goto done;
    }
    if (res.reloaded && !g_cli.json)
        printf("PostgreSQL configuration reloaded (pg_reload_conf).\n");
    if (res.restart_needed)
        fprintf(g_cli.json ? stderr : stdout,
                "Restart required: a setting that only takes effect at server start was changed "
                "with ALTER SYSTEM; restart PostgreSQL (e.g. systemctl restart postgresql) to apply "
                "it.\n");

    if (snapshot && m->git.declared) {
        if (pc_apply_snapshot(&s, m, NULL, &snap, &err) != 0) {
            cli_print_error("snapshot", &err);
            fprintf(stderr, "The changes above were applied; only the git snapshot failed. Fix it "
                            "and run 'pipectl snapshot'.\n");
            goto done;
        }
        if (!g_cli.json) {
            if (snap.committed)
                printf("Snapshot committed to %s (%s): %.12s%s\n", m->git.repo, snap.dir,
                       snap.commit, snap.pushed ? ", pushed" : "");
            else
                printf("Snapshot unchanged in %s (%.12s)%s\n", m->git.repo, snap.commit,
                       snap.pushed ? ", pushed" : "");
        }
    }
    if (!g_cli.json) {
        size_t cr, ch, de, re;
        pc_plan_summary(p, &cr, &ch, &de, &re);
        printf("Apply complete: %zu action(s) performed", res.done);
        if (re > 0)
            printf(", %zu refused (see above)", re);
        printf(".\n");
    } else {
        char *plan_json = NULL;
        json_t *plan_obj = NULL;
        if (pc_plan_render_json(p, &plan_json, &err) == 0)
            plan_obj = json_loads(plan_json, 0, NULL);
        free(plan_json);
        out = json_pack("{s:s, s:o, s:o, s:b, s:b}", "format_version", "1", "plan",
                        plan_obj ? plan_obj : json_null(), "results", rctx.results, "reloaded",
                        res.reloaded, "restart_required", res.restart_needed);
        rctx.results = NULL;
        if (m->git.declared && snapshot)
            json_object_set_new(out, "snapshot",
                                json_pack("{s:b, s:s, s:b}", "committed", snap.committed, "commit",
                                          snap.commit, "pushed", snap.pushed));
        char *s2 = json_dumps(out, JSON_INDENT(2));
        if (s2 != NULL)
            printf("%s\n", s2);
        free(s2);
    }
    exit_code = EXIT_OK;
done:
    json_decref(out);
    json_decref(rctx.results);
    pc_snapshot_result_free(&snap);
    pc_plan_free(saved);
    pc_plan_free(p);
    pc_observed_free(&o);
    pc_session_close(&s);
    pc_manifest_free(m);
    return exit_code;
}
