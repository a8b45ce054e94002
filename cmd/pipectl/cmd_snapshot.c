/* cmd_snapshot.c: `pipectl snapshot`: commit the redacted manifest + observed state to git. */
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] snapshot [-m MESSAGE] [-o json]\n\n"
           "Observes Kafka and PostgreSQL and commits <git.path or metadata.name>/manifest.yaml\n"
           "(every secret replaced by <redacted>) and observed.json to the repository in the\n"
           "manifest's git block (initialised when missing). Commits only when a file changed;\n"
           "pushes the branch when git.push names a remote. 'apply' does this after each run.\n");
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_GLOBAL_LONGOPTS, {"message", required_argument, NULL, 'm'}, {NULL, 0, NULL, 0}};
    const char *message = NULL;
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS "m:", longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c == 'm') {
            message = optarg;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("snapshot", "invalid value '%s'", optarg);
        return cli_usage_error("snapshot", "unknown option");
    }
    if (optind < argc)
        return cli_usage_error("snapshot", "unexpected argument '%s'", argv[optind]);
    int exit_code = EXIT_ERR;
    pc_session s = {0};
    pc_error err = {0};
    pc_snapshot_result snap = {0};
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        goto done;
    if (!m->git.declared) {
        fprintf(stderr, "pipectl snapshot: %s has no git block; add e.g.\n"
                        "  git: {repo: ./pipeline-state, branch: main}\n", g_cli.file);
        goto done;
    }
    if (pc_session_open(&s, m, g_cli.timeout_s, &err) != 0 ||
        pc_apply_snapshot(&s, m, message, &snap, &err) != 0) {
        cli_print_error("snapshot", &err);
        goto done;
    }
    if (g_cli.json)
        printf("{\n  \"committed\": %s,\n  \"commit\": \"%s\",\n  \"pushed\": %s\n}\n",
               snap.committed ? "true" : "false", snap.commit, snap.pushed ? "true" : "false");
    else if (snap.committed)
        printf("Snapshot committed to %s (%s): %s%s\n", m->git.repo, snap.dir, snap.commit,
               snap.pushed ? ", pushed" : "");
    else
        printf("Snapshot unchanged in %s: %s%s\n", m->git.repo, snap.commit,
               snap.pushed ? ", pushed" : "");
    exit_code = EXIT_OK;
done:
    pc_snapshot_result_free(&snap);
    pc_session_close(&s);
    pc_manifest_free(m);
    return exit_code;
}
