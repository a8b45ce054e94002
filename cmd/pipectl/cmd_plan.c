/* cmd_plan.c: `pipectl plan`: observe the live systems, print the actions that would converge
 * them, optionally save the plan for `apply FILE`. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "plan_io.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] plan [--detailed-exitcode] [--allow-delete] [-out PLANFILE] [-o json]\n\n"
           "Observes Kafka, PostgreSQL and NocoDB and prints the actions that would make them match\n"
           "the manifest, without changing anything:\n"
           "  + create   ~ change   - delete   ! refused (drift pipectl will not repair; reason given)\n\n"
           "Options:\n"
           "  --detailed-exitcode  exit 0 when there are no changes, 2 when there are, 1 on error\n"
           "  --allow-delete       plan deletes of topics this pipeline created that the manifest no\n"
           "                       longer declares, drops of undeclared columns in its tables, and\n"
           "                       deletes of NocoDB sources it made for schemas no longer exposed\n"
           "  -out, --out FILE     save the plan (JSON, with a fingerprint of the observed state);\n"
           "                       'pipectl apply FILE' applies exactly it, or refuses it as stale\n"
           "  -o json              the plan as JSON on stdout (schema: README, format_version 1)\n"
           "  --timeout SEC        connection timeout per system (default 10)\n");
}

int cli_compute_plan(const pc_manifest *m, bool allow_delete, pc_session *s, pc_observed *o,
                     pc_plan **out, pc_error *err)
{
    int rc = pc_session_open(s, m, g_cli.timeout_s, err);
    if (rc != 0)
        return rc;
    rc = pc_session_observe(s, m, o, err);
    if (rc != 0)
        return rc;
    pc_plan_opts opts;
    cli_plan_opts(&opts, allow_delete);
    return pc_plan_build(out, m, o, &opts, err);
}

int cli_print_plan(const pc_plan *p, FILE *f)
{
    pc_error err = {0};
    char *text = NULL;
    int rc = g_cli.json ? pc_plan_render_json(p, &text, &err)
                        : pc_plan_render_text(p, cli_color(f), &text, &err);
    if (rc != 0) {
        cli_print_error("rendering the plan", &err);
        return rc;
    }
    /* no action holds a secret; should one ever, the manifest's secrets are scrubbed here */
    char *safe = pc_scrub(text, pc_secrets_installed());
    free(text);
    if (safe == NULL) {
        pc_error_set(&err, PC_ENOMEM, "out of memory");
        cli_print_error("rendering the plan", &err);
        return PC_ENOMEM;
    }
    fputs(safe, f);
    if (safe[0] != '\0' && safe[strlen(safe) - 1] != '\n')
        fputc('\n', f);
    free(safe);
    return 0;
}

int cmd_plan(int argc, char **argv)
{
    static const char *const single[] = {"out", "detailed-exitcode", "allow-delete", NULL};
    static const struct option longopts[] = {
        CLI_GLOBAL_LONGOPTS,
        {"detailed-exitcode", no_argument, NULL, 'd'},
        {"allow-delete", no_argument, NULL, 'D'},
        {"out", required_argument, NULL, 'O'},
        {NULL, 0, NULL, 0}};
    bool detailed = false, allow_delete = false;
    const char *out_file = NULL;
    cli_fix_single_dash(argc, argv, single);
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return EXIT_OK;
        case 'd':
            detailed = true;
            continue;
        case 'D':
            allow_delete = true;
            continue;
        case 'O':
            out_file = optarg;
            continue;
        default:
            break;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("plan", "invalid value '%s'", optarg);
        return cli_usage_error("plan", "unknown option");
    }
    if (optind < argc)
        return cli_usage_error("plan", "unexpected argument '%s'", argv[optind]);

    int exit_code = EXIT_ERR;
    pc_session s = {0};
    pc_observed o = {0};
    pc_plan *p = NULL;
    pc_error err = {0};
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;
    if (cli_compute_plan(m, allow_delete, &s, &o, &p, &err) != 0) {
        cli_print_error("plan", &err);
        fprintf(stderr, "Nothing was changed.\n");
        goto done;
    }
    if (cli_print_plan(p, stdout) != 0)
        goto done;
    if (out_file != NULL) {
        if (plan_io_save(p, out_file, &err) != 0) {
            cli_print_error("saving the plan", &err);
            goto done;
        }
        bool deletes = false;
        for (size_t i = 0; i < p->nactions; i++)
            deletes |= p->actions[i].op == PC_OP_DELETE;
        fprintf(stderr, "Saved the plan to %s. Apply exactly it with: pipectl -f %s apply %s%s\n",
                out_file, g_cli.file, deletes ? "--allow-delete " : "", out_file);
    }
    exit_code = (detailed && pc_plan_has_changes(p)) ? EXIT_CHANGES : EXIT_OK;
done:
    pc_plan_free(p);
    pc_observed_free(&o);
    pc_session_close(&s);
    pc_manifest_free(m);
    return exit_code;
}
