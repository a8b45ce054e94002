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
           "Makes Kafka, PostgreSQL and NocoDB match the manifest: computes the plan (or takes\n"
           "PLANFILE, saved by 'plan -out'), prints it, performs each action in order and reports\n"
           "its result, stops at the first failure (then lists which actions were applied and\n"
           "which were not), then commits a snapshot (manifest with secrets redacted + observed\n"
           "state) to the git repository named in the manifest's git block.\n"
           "Safe to re-run: a second apply changes nothing and creates no commit.\n"
           "Two applies of one pipeline never race: a PostgreSQL advisory lock serialises them.\n\n"
           "Options:\n"
           "  PLANFILE            apply exactly this saved plan: apply plans again from the manifest\n"
           "                      and the live state and refuses the file (changing nothing) when\n"
           "                      the live state changed since it was saved (stale) or when the\n"
           "                      plan computed now differs from it in any action or field (edited);\n"
           "                      a plan saved with 'plan --allow-delete' that deletes something\n"
           "                      needs 'apply --allow-delete PLANFILE'\n"
           "  --allow-delete      delete topics this pipeline created and no longer declares,\n"
           "                      drop undeclared columns of its tables, and delete NocoDB sources\n"
           "                      it made for schemas no longer exposed (otherwise refused)\n"
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

/* What happened to each action of the plan; NOT_REACHED until the run gets there. */
enum { ST_NOT_REACHED = 0, ST_DONE, ST_SKIPPED, ST_FAILED };

typedef struct report_ctx {
    json_t *results; /* JSON mode */
    size_t total;
    int *status;     /* per action index */
} report_ctx;

static const char *status_name(int st)
{
    switch (st) {
    case ST_DONE: return "done";
    case ST_SKIPPED: return "skipped";
    case ST_FAILED: return "failed";
    }
    return "not_reached";
}

static void report(void *vctx, const pc_action *a, size_t index, int rc, double seconds,
                   const pc_error *err)
{
    report_ctx *ctx = vctx;
    const char *status = rc == 0 ? "done" : rc == 1 ? "skipped" : "failed";
    if (ctx->status != NULL && index < ctx->total)
        ctx->status[index] = rc == 0 ? ST_DONE : rc == 1 ? ST_SKIPPED : ST_FAILED;
    if (ctx->results != NULL) {
        json_array_append_new(ctx->results,
                              json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:s?}", "index",
                                        (json_int_t)index, "system", a->system ? a->system : "",
                                        "kind", pc_action_noun(a->kind), "object",
                                        a->object ? a->object : "", "status", status, "seconds",
                                        seconds, "error", err ? err->msg : NULL));
    }
    if (a->kind == PC_ACT_NOTE)
        return;
    FILE *f = g_cli.json ? stderr : stdout;
    if (rc == 1)
        fprintf(f, "  [%zu/%zu] %s %s %s %s: not performed (%s)\n", index + 1, ctx->total,
                op_sym(a->op), a->system, pc_action_noun(a->kind), a->object,
                a->reason ? a->reason : "refused");
    else if (rc == 0)
        fprintf(f, "  [%zu/%zu] %s %s %s %s: done (%.2f s)\n", index + 1, ctx->total, op_sym(a->op),
                a->system, pc_action_noun(a->kind), a->object, seconds);
    else
        fprintf(f, "  [%zu/%zu] %s %s %s %s: FAILED\n", index + 1, ctx->total, op_sym(a->op),
                a->system, pc_action_noun(a->kind), a->object);
    fflush(f);
}

/* After a failed run: which actions were applied and which were not, explicitly (the systems
 * differ: Kafka and Postgres may be done while NocoDB is not). Text on stderr; with -o json one
 * document on stdout with the error and every action's status. */
static size_t count_applied(const pc_plan *p, const report_ctx *ctx)
{
    size_t applied = 0;
    for (size_t i = 0; i < p->nactions; i++)
        if (ctx->status[i] == ST_DONE)
            applied++;
    return applied;
}

/* What was and was not applied, for people (stderr). */
static void report_partial(const pc_plan *p, const report_ctx *ctx, const pc_apply_result *res)
{
    size_t applied = count_applied(p, ctx);
    if (res->failed_index != SIZE_MAX) {
        const pc_action *f = &p->actions[res->failed_index];
        fprintf(stderr, "Apply stopped at action %zu of %zu (%s %s %s %s), which failed.\n",
                res->failed_index + 1, p->nactions, op_sym(f->op), f->system,
                pc_action_noun(f->kind), f->object);
    }
    fprintf(stderr, "Applied (%zu):%s\n", applied, applied == 0 ? " none" : "");
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (ctx->status[i] == ST_DONE)
            fprintf(stderr, "  %s %s %s %s\n", op_sym(a->op), a->system, pc_action_noun(a->kind),
                    a->object);
    }
    fprintf(stderr, "Not applied:\n");
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        if (ctx->status[i] == ST_DONE || a->kind == PC_ACT_NOTE)
            continue;
        fprintf(stderr, "  %s %s %s %s (%s)\n", op_sym(a->op), a->system, pc_action_noun(a->kind),
                a->object,
                ctx->status[i] == ST_FAILED    ? "failed"
                : ctx->status[i] == ST_SKIPPED ? "refused, not performed"
                                               : "not reached");
    }
    fprintf(stderr, "Fix the problem above and run apply again; it resumes from the live "
                    "state.\n");
}

/* A failed apply for machines (stdout): the error and every action's status, one shape whether
 * or not some actions were applied before the failure. */
static void report_failure_json(const pc_plan *p, const report_ctx *ctx, const pc_error *err)
{
    size_t applied = count_applied(p, ctx);
    json_t *acts = json_array();
    for (size_t i = 0; i < p->nactions; i++) {
        const pc_action *a = &p->actions[i];
        json_array_append_new(
            acts, json_pack("{s:I, s:s, s:s, s:s, s:s}", "index", (json_int_t)i, "system",
                            a->system ? a->system : "", "kind", pc_action_noun(a->kind), "object",
                            a->object ? a->object : "", "status", status_name(ctx->status[i])));
    }
    json_t *out = json_pack("{s:s, s:{s:s, s:s}, s:I, s:o}", "format_version", "1", "error",
                            "code", pc_code_name(err->code), "message", err->msg, "applied",
                            (json_int_t)applied, "actions", acts);
    char *text = out != NULL ? json_dumps(out, JSON_INDENT(2)) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(out);
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
    /* A saved plan is planned again with the allow_delete it was made with. Only
     * 'plan --allow-delete' produces delete actions, and without it the same candidates come out
     * refused, so a file with deletes was made with it and one without was made without it (or
     * had nothing to delete). Deleting needs the operator's --allow-delete here too; a
     * --allow-delete given for a file without deletes adds none. */
    bool replan_delete = allow_delete;
    if (saved != NULL) {
        size_t deletes = 0;
        pc_plan_summary(saved, NULL, NULL, &deletes, NULL);
        if (deletes > 0 && !allow_delete) {
            pc_error_set(&err, PC_EINVAL,
                         "plan file %s deletes %zu object(s) (it was saved by 'pipectl plan "
                         "--allow-delete'); review its deletes and apply it with 'pipectl apply "
                         "--allow-delete %s'. Nothing was changed.",
                         plan_file, deletes, plan_file);
            cli_print_error("apply", &err);
            goto done;
        }
        replan_delete = deletes > 0;
    }
    if (cli_compute_plan(m, replan_delete, &s, &o, &p, &err) != 0) {
        cli_print_error("apply", &err);
        fprintf(stderr, "Nothing was changed.\n");
        goto done;
    }
    if (saved != NULL) {
        if (!pc_streq(saved->pipeline, m->name)) {
            pc_error_set(&err, PC_EINVAL,
                         "plan file %s is for pipeline '%s' but %s declares '%s'. Nothing was "
                         "changed.",
                         plan_file, saved->pipeline ? saved->pipeline : "?", g_cli.file, m->name);
            cli_print_error("apply", &err);
            goto done;
        }
        if (strcmp(saved->fingerprint, p->fingerprint) != 0) {
            pc_error_set(&err, PC_ECONFLICT,
                         "plan file %s is stale: Kafka, PostgreSQL or NocoDB changed since it was "
                         "computed (fingerprint %.12s, now %.12s). Nothing was changed. Run "
                         "'pipectl plan -out %s' again and review it.",
                         plan_file, saved->fingerprint, p->fingerprint, plan_file);
            cli_print_error("apply", &err);
            goto done;
        }
        /* The fingerprint does not cover the actions: whoever could write the file could add
         * an ALTER SYSTEM SET archive_command. Only a file equal to what the manifest and the
         * live state give now is applied. */
        char *why = NULL;
        if (!pc_plan_equal(saved, p, &why)) {
            pc_error_set(&err, PC_ECONFLICT,
                         "plan file %s does not match the plan computed now from %s and the live "
                         "state (first difference: %s); it was edited after it was saved, or the "
                         "manifest changed. Nothing was changed. Run 'pipectl plan -out %s' again "
                         "and review it.",
                         plan_file, g_cli.file, why ? why : "(out of memory describing it)",
                         plan_file);
            free(why);
            cli_print_error("apply", &err);
            goto done;
        }
        /* Equal in every field: run the plan computed now, so nothing the comparison might
         * overlook can come from the file. */
        pc_plan_free(saved);
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
    rctx.status = calloc(p->nactions + 1, sizeof *rctx.status);
    if (rctx.status == NULL) {
        fprintf(stderr, "pipectl: apply: out of memory. Nothing was changed.\n");
        goto done;
    }
    int rc = pc_apply_execute(&s, m, &o, p, report, &rctx, &res, &err);
    if (rc != 0) {
        fprintf(stderr, "pipectl: apply: %s\n", err.msg);
        if (res.done > 0 || res.failed_index != SIZE_MAX)
            report_partial(p, &rctx, &res);
        else
            fprintf(stderr, "Nothing was changed.\n");
        if (g_cli.json)
            report_failure_json(p, &rctx, &err);
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
    free(rctx.status);
    pc_snapshot_result_free(&snap);
    pc_plan_free(saved);
    pc_plan_free(p);
    pc_observed_free(&o);
    pc_session_close(&s);
    pc_manifest_free(m);
    return exit_code;
}
