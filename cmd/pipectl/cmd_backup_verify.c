/* cmd_backup_verify.c: `pipectl backup verify ID`: checks one base backup and the WAL archive it
 * needs (pc_backup_verify) and prints every problem found. Dispatched from cmd_backup. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "cli.h"

enum { OPT_VREPOSITORY = 2101 };

static void verify_help(void)
{
    printf("Usage: pipectl [-f FILE] backup verify [--repository DIR] [-o json] ID\n\n"
           "Checks backup ID in the repository without restoring it:\n"
           "  - the SHA-256 of every stored file (base tar, backup_manifest) recorded in\n"
           "    pipectl.json;\n"
           "  - every member of the base tar against backup_manifest (size and SHA-256),\n"
           "    reporting mismatched, missing and extra members by path;\n"
           "  - every archived WAL segment from the backup's start_wal to the newest one on its\n"
           "    timeline (and on later timelines that branch from it), decompressed and checked\n"
           "    against its recorded SHA-256; a missing segment is reported by name.\n\n"
           "Options:\n"
           "  --repository DIR   backup repository (default: archiving.repository from the\n"
           "                     manifest)\n"
           "  -o json            print {backup, intact, files_checked, wal_checked, problems}\n\n"
           "A backup is intact only when every one of these checks ran and passed: whatever\n"
           "stops a check (pipectl.json damaged, empty or missing, a file missing or\n"
           "unreadable, a WAL segment or history file that cannot be read) is a problem.\n\n"
           "Exit: 0 intact, 1 problems found (one line each, and \"intact\": false with them\n"
           "listed) or verify could not run (no such backup: a message on stderr).\n");
}

static int print_json_report(const char *id, const pc_verify_report *rep, const char *extra,
                             bool intact)
{
    json_t *o = json_object();
    json_t *probs = json_array();
    if (o == NULL || probs == NULL) {
        json_decref(o);
        json_decref(probs);
        fprintf(stderr, "pipectl: error: out of memory\n");
        return EXIT_ERR;
    }
    for (size_t i = 0; i < rep->nproblems; i++)
        json_array_append_new(probs, json_string(rep->problems[i]));
    if (extra != NULL)
        json_array_append_new(probs, json_string(extra));
    json_object_set_new(o, "backup", json_string(id));
    json_object_set_new(o, "intact", json_boolean(intact));
    json_object_set_new(o, "files_checked", json_integer((json_int_t)rep->files_checked));
    json_object_set_new(o, "wal_checked", json_integer((json_int_t)rep->wal_checked));
    json_object_set_new(o, "problems", probs);
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (s == NULL)
        return EXIT_ERR;
    printf("%s\n", s);
    free(s);
    return EXIT_OK;
}

int cli_backup_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_GLOBAL_LONGOPTS,
        {"repository", required_argument, NULL, OPT_VREPOSITORY},
        {NULL, 0, NULL, 0}};
    const char *repo = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            verify_help();
            return EXIT_OK;
        }
        if (c == OPT_VREPOSITORY) {
            if (optarg[0] == '\0')
                return cli_usage_error("backup verify", "--repository needs a directory");
            repo = optarg;
            continue;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("backup verify", "invalid value '%s'", optarg);
        return cli_usage_error("backup verify", "unknown option");
    }
    if (argc - optind != 1)
        return cli_usage_error("backup verify", "expected one backup ID, got %d argument(s)",
                               argc - optind);
    const char *id = argv[optind];

    pc_manifest *m = NULL;
    if (repo == NULL) {
        m = cli_load_manifest();
        if (m == NULL || m->archiving.repository == NULL || m->archiving.repository[0] == '\0') {
            fprintf(stderr,
                    "pipectl backup verify: no backup repository: pass --repository DIR or "
                    "declare archiving.repository in %s\n",
                    g_cli.file);
            pc_manifest_free(m);
            return EXIT_ERR;
        }
        repo = m->archiving.repository;
    }

    pc_verify_report rep = {0};
    pc_error err = {0};
    pc_repo *r = NULL;
    int rc = cli_repo_open(m, repo, &r, &err);
    if (rc == 0)
        rc = pc_backup_verify(r, id, &rep, &err);
    else
        rc = rc == PC_EIO ? PC_EUNAVAIL : rc; /* not a verify problem: the repository's */
    int status = EXIT_OK;
    if (rc != 0 && rc != PC_EIO) {
        cli_print_error("backup verify", &err);
        status = EXIT_ERR;
        goto done;
    }
    /* intact means every check ran and passed; pkg/backup lists every failure as a problem,
     * and should one ever come back without a line, its message is shown as one */
    const char *extra =
        rc != 0 && rep.nproblems == 0 ? (err.msg[0] ? err.msg : "verify failed") : NULL;
    bool intact = rc == 0 && rep.nproblems == 0;
    if (g_cli.json) {
        status = print_json_report(id, &rep, extra, intact);
        if (!intact)
            status = EXIT_ERR;
        goto done;
    }
    for (size_t i = 0; i < rep.nproblems; i++)
        printf("%s\n", rep.problems[i]);
    if (extra != NULL)
        printf("%s\n", extra);
    if (intact) {
        printf("backup %s is intact: %zu file(s) and %zu WAL segment(s) checked\n", id,
               rep.files_checked, rep.wal_checked);
    } else {
        fprintf(stderr,
                "backup %s is NOT intact: %zu problem(s) (%zu file(s), %zu WAL segment(s) "
                "checked)\n",
                id, rep.nproblems + (extra != NULL), rep.files_checked, rep.wal_checked);
        status = EXIT_ERR;
    }
done:
    pc_verify_report_free(&rep);
    pc_repo_close(r);
    pc_manifest_free(m);
    return status;
}
