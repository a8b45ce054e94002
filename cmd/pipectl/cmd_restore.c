/* cmd_restore.c: `pipectl restore`: rebuilds a data directory at a point in time from the backup
 * repository (pc_backup_restore) and optionally starts it. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"

enum {
    OPT_TIME = 2201,
    OPT_LSN,
    OPT_XID,
    OPT_LATEST,
    OPT_TO,
    OPT_BACKUP,
    OPT_START,
    OPT_PORT,
    OPT_REPO,
    OPT_PGBIN,
    OPT_WAIT
};

static void restore_help(void)
{
    printf(
        "Usage: pipectl [-f FILE] restore (--target-time TS | --target-lsn LSN | --target-xid XID "
        "|\n"
        "                                  --latest) --to DIR [--backup ID] [--start [--port N]]\n"
        "                                  [--repository DIR] [-o json]\n\n"
        "Rebuilds a PostgreSQL data directory as it was at the target from the backup\n"
        "repository: picks the newest base backup that ended before the target (or --backup),\n"
        "checks its stored checksums (a corrupt backup is refused), extracts it into DIR and\n"
        "configures recovery: restore_command = 'pipectl wal-fetch --repository R %%f %%p', the\n"
        "target, recovery_target_action = 'promote', recovery_target_timeline = 'latest' and\n"
        "archive_mode = 'off' (the copy must not archive into the same repository), plus\n"
        "recovery.signal. PostgreSQL replays the archived WAL up to the target on start.\n\n"
        "Targets (exactly one):\n"
        "  --target-time TS    'YYYY-MM-DD HH:MM:SS[.fff][ZONE]', ZONE Z, +HH, +HHMM or +HH:MM;\n"
        "                      no zone means UTC. Recovery stops before the first transaction\n"
        "                      that committed after TS.\n"
        "  --target-lsn LSN    like 0/3000060: stops after replaying up to LSN\n"
        "  --target-xid XID    stops after transaction XID commits (the newest backup is used:\n"
        "                      pass --backup for an older one when XID is older)\n"
        "  --latest            every archived transaction\n\n"
        "Options:\n"
        "  --to DIR            new data directory: must not exist or be empty\n"
        "  --backup ID         restore this backup (see 'pipectl backup list')\n"
        "  --start             start the server (pg_ctl, log in DIR/restore.log, listening on\n"
        "                      127.0.0.1 and a socket in DIR) and wait until recovery ended and\n"
        "                      it was promoted; prints the log line that proves it. As root the\n"
        "                      directory is handed to the 'postgres' OS user, which runs it.\n"
        "  --port N            port for --start (default: a free one)\n"
        "  --pg-bin DIR        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)\n"
        "  --wait SEC          bound for --start (default 600)\n"
        "  --repository DIR    backup repository (default: archiving.repository from the\n"
        "                      manifest)\n"
        "  -o json             print {backup, to, target, started, port, proof} on stdout\n\n"
        "The restored server stays running after --start; stop it with pg_ctl -D DIR stop.\n"
        "Exit: 0 restored (and, with --start, recovered), 1 error.\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
                                             {"target-time", required_argument, NULL, OPT_TIME},
                                             {"target-lsn", required_argument, NULL, OPT_LSN},
                                             {"target-xid", required_argument, NULL, OPT_XID},
                                             {"latest", no_argument, NULL, OPT_LATEST},
                                             {"to", required_argument, NULL, OPT_TO},
                                             {"backup", required_argument, NULL, OPT_BACKUP},
                                             {"start", no_argument, NULL, OPT_START},
                                             {"port", required_argument, NULL, OPT_PORT},
                                             {"repository", required_argument, NULL, OPT_REPO},
                                             {"pg-bin", required_argument, NULL, OPT_PGBIN},
                                             {"wait", required_argument, NULL, OPT_WAIT},
                                             {NULL, 0, NULL, 0}};
    pc_restore_opts o = {0};
    const char *repo_opt = NULL; /* --repository, else archiving.repository */
    bool port_given = false;
    long v;
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            restore_help();
            return EXIT_OK;
        case OPT_TIME:
            o.target_time = optarg;
            continue;
        case OPT_LSN:
            o.target_lsn = optarg;
            continue;
        case OPT_XID:
            o.target_xid = optarg;
            continue;
        case OPT_LATEST:
            o.latest = true;
            continue;
        case OPT_TO:
            o.to = optarg;
            continue;
        case OPT_BACKUP:
            o.backup_id = optarg;
            continue;
        case OPT_START:
            o.start = true;
            continue;
        case OPT_PORT:
            if (parse_int(optarg, 1, 65535, &v) != 0)
                return cli_usage_error("restore", "--port '%s' is not a port number", optarg);
            o.port = (int)v;
            port_given = true;
            continue;
        case OPT_REPO:
            repo_opt = optarg;
            continue;
        case OPT_PGBIN:
            o.pg_bin = optarg;
            continue;
        case OPT_WAIT:
            if (parse_int(optarg, 1, 86400, &v) != 0)
                return cli_usage_error("restore", "--wait '%s' is not a number of seconds", optarg);
            o.timeout_s = v;
            continue;
        default:
            break;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error("restore", "invalid value '%s'", optarg);
        return cli_usage_error("restore", "unknown option");
    }
    if (optind < argc)
        return cli_usage_error("restore", "unexpected argument '%s'", argv[optind]);
    int ntargets = (o.target_time != NULL) + (o.target_lsn != NULL) + (o.target_xid != NULL) +
                   (o.latest ? 1 : 0);
    if (ntargets == 0)
        return cli_usage_error("restore", "give a target: --target-time, --target-lsn, "
                                          "--target-xid or --latest");
    if (ntargets > 1)
        return cli_usage_error("restore", "give only one of --target-time, --target-lsn, "
                                          "--target-xid and --latest");
    if (o.to == NULL || o.to[0] == '\0')
        return cli_usage_error("restore", "--to DIR is required (a new or empty directory)");
    if (port_given && !o.start)
        return cli_usage_error("restore", "--port only makes sense with --start");
    if (o.timeout_s > 0 && !o.start)
        return cli_usage_error("restore", "--wait only makes sense with --start");

    pc_manifest *m = NULL;
    char *to_abs = NULL;
    pc_buf fetch_args = {0};
    int status = EXIT_ERR;
    if (repo_opt == NULL) {
        m = cli_load_manifest();
        if (m == NULL || m->archiving.repository == NULL || m->archiving.repository[0] == '\0') {
            fprintf(stderr,
                    "pipectl restore: no backup repository: pass --repository DIR or declare "
                    "archiving.repository in %s\n",
                    g_cli.file);
            goto done;
        }
        repo_opt = m->archiving.repository;
    }
    /* restore_command runs in the data directory: every path in it must be absolute (the
     * repository's URI is: cli_repo_open resolves a relative directory) */
    {
        pc_error oe = {0};
        if (cli_repo_open(m, repo_opt, &o.repo, &oe) != 0) {
            cli_print_error("restore", &oe);
            goto done;
        }
    }
    if (o.to[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL || (to_abs = pc_asprintf("%s/%s", cwd, o.to)) == NULL) {
            fprintf(stderr, "pipectl restore: cannot resolve %s\n", o.to);
            goto done;
        }
        o.to = to_abs;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "pipectl restore: cannot find the pipectl binary (/proc/self/exe)\n");
        goto done;
    }
    exe[n] = '\0';
    o.pipectl_exe = exe;
    /* the restored server's restore_command reaches an S3 or encrypted repository the way
     * archive_command does: its options on the command line, secrets from credentials_file */
    if (m != NULL && repo_opt == m->archiving.repository &&
        (strncmp(repo_opt, "s3://", 5) == 0 || m->archiving.encryption.declared)) {
        if (pc_mf_archiving_args(&m->archiving, &fetch_args) != 0) {
            fprintf(stderr, "pipectl restore: out of memory\n");
            goto done;
        }
        o.fetch_args = fetch_args.data;
    }

    bool tty = !g_cli.json && isatty(fileno(stderr));
    if (tty)
        fprintf(stderr, "restoring into %s from %s\n", o.to, pc_repo_uri(o.repo));
    pc_restore_result res = {0};
    pc_error err = {0};
    cli_progress prog;
    cli_progress_init(&prog, "restore");
    int rc = pc_backup_restore(&o, cli_progress_fn, &prog, &res, &err);
    cli_progress_end(&prog);
    if (rc != 0) {
        if (res.backup_id != NULL && !g_cli.json)
            fprintf(stderr, "pipectl restore: using backup %s\n", res.backup_id);
        cli_print_error("restore", &err);
        pc_restore_result_free(&res);
        goto done;
    }
    const char *target = o.target_time  ? o.target_time
                         : o.target_lsn ? o.target_lsn
                         : o.target_xid ? o.target_xid
                                        : "latest";
    if (g_cli.json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "backup", res.backup_id, "to", o.to, "target",
                              target, "started", o.start);
        if (j != NULL && o.start) {
            json_object_set_new(j, "port", json_integer(res.port));
            json_object_set_new(j, "proof", json_string(res.proof != NULL ? res.proof : ""));
        }
        char *s = j != NULL ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        printf("restored backup %s into %s (target: %s)\n", res.backup_id, o.to, target);
        if (o.start)
            printf("recovery finished, server running on port %d (log %s/restore.log):\n  %s\n",
                   res.port, o.to, res.proof != NULL ? res.proof : "");
        else
            printf("start it with: pg_ctl -D %s start (as the directory's owner)\n", o.to);
    }
    pc_restore_result_free(&res);
    status = EXIT_OK;
done:
    free(to_abs);
    pc_buf_free(&fetch_args);
    pc_repo_close(o.repo);
    pc_manifest_free(m);
    return status;
}
