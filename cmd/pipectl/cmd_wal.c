/* cmd_wal.c: `pipectl wal-push PATH NAME` (archive_command target) and `pipectl wal-fetch NAME
 * PATH` (restore_command target). PostgreSQL reads only the exit status and logs stderr, so the
 * exit codes are the contract: wal-push exits 0 only when the file is durably archived;
 * wal-fetch exits 1 only for "no such file" and above 125 for anything that must stop recovery. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "cli.h"

/* wal-fetch's status for every failure other than "not archived": PostgreSQL treats an exit
 * status above 125 as fatal and stops, instead of ending recovery early (and promoting) at a
 * corrupt or unreachable archive. */
enum { EXIT_FETCH_FATAL = 200 };
enum {
    OPT_REPOSITORY = 2001,
    OPT_S3_ENDPOINT,
    OPT_S3_REGION,
    OPT_S3_URI_STYLE,
    OPT_S3_CA_FILE,
    OPT_S3_NO_VERIFY,
    OPT_ENCRYPTED,
    OPT_CREDENTIALS,
    OPT_PARALLEL,
};

/* The repository options archive_command and restore_command carry (pc_mf_archiving_args). */
#define REPO_OPTIONS_HELP \
    "  --repository URI   backup repository: an absolute directory or s3://bucket/prefix\n" \
    "                     (default: archiving.repository from the manifest)\n" \
    "  --s3-endpoint URL  S3 endpoint (default https://s3.REGION.amazonaws.com)\n" \
    "  --s3-region R      signing region (default AWS_REGION, then us-east-1)\n" \
    "  --s3-uri-style S   path or virtual\n" \
    "  --s3-ca-file F     PEM bundle to trust instead of the system's\n" \
    "  --s3-no-verify-tls do not check the server's certificate\n" \
    "  --encrypted        the repository is encrypted: PIPECTL_REPO_KEY is its passphrase\n" \
    "  --credentials-file F  KEY=VALUE file (mode 600) with AWS_ACCESS_KEY_ID,\n" \
    "                     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, PIPECTL_REPO_KEY; values\n" \
    "                     not in it come from the environment\n"

static void push_help(void)
{
    printf("Usage: pipectl [-f FILE] wal-push [REPOSITORY OPTIONS] PATH NAME\n\n"
           "archive_command target: stores the WAL file at PATH under NAME in the backup\n"
           "repository's wal/ directory, zstd-compressed, with the SHA-256 of its content.\n"
           "PostgreSQL calls it as: archive_command = 'pipectl -f MANIFEST wal-push %%p %%f'\n\n"
           "NAME must be what PostgreSQL archives: a WAL segment (24 hex digits), a .partial\n"
           "segment, a timeline .history file or a .backup label; anything else is refused.\n"
           "The copy is written under a temporary name, fsync'd, read back and checked, renamed\n"
           "(never over an existing file) and the directory fsync'd before exit 0.\n"
           "Pushing identical content again succeeds; different content under an archived name\n"
           "is refused. PATH must be a regular file (a FIFO or /dev/zero is refused) of at most\n"
           "1 GiB, PostgreSQL's largest wal_segment_size, and a segment no larger than the\n"
           "segment size its first page states; a refused or failed push leaves nothing behind.\n\n"
           "Options:\n" REPO_OPTIONS_HELP
           "  --parallel N       push-ahead: a background pusher (one at a time) pushes the\n"
           "                     other files waiting in PATH's pg_wal/archive_status (*.ready),\n"
           "                     N at once, and records each stored one in\n"
           "                     pg_wal/" PC_WAL_SPOOL_DIR "/NAME.ok; the later call for such a file\n"
           "                     exits 0 when it is still the file read (same inode, size,\n"
           "                     mtime and ctime) or its SHA-256 matches the record, else\n"
           "                     pushes it\n"
           "                     (1-%d, default 1; archiving.parallel in the manifest)\n"
           "  -v                 report what was stored on stderr\n"
           "  -o json            print {name, result, sha256, size, stored_size} on stdout\n\n"
           "Exit: 0 archived (or already archived identically), 1 error: PostgreSQL keeps the\n"
           "WAL file and retries.\n",
           PC_WAL_PARALLEL_MAX);
}

static void fetch_help(void)
{
    printf("Usage: pipectl [-f FILE] wal-fetch [REPOSITORY OPTIONS] NAME PATH\n\n"
           "restore_command target: decompresses NAME from the backup repository to PATH\n"
           "(through a temporary file and a rename) and checks its SHA-256.\n"
           "PostgreSQL calls it as: restore_command = 'pipectl -f MANIFEST wal-fetch %%f %%p'\n\n"
           "Options:\n" REPO_OPTIONS_HELP
           "  --parallel N       accepted and ignored (wal-push's option: the commands share\n"
           "                     the repository options pc_mf_archiving_args gives)\n"
           "  -v                 report what was restored on stderr\n\n"
           "Exit: 0 restored; 1 NAME is not in the repository (recovery probes for files that\n"
           "do not exist); %d for every other failure (corrupt file, checksum mismatch,\n"
           "unreadable repository, bad arguments) so PostgreSQL stops instead of ending\n"
           "recovery early.\n",
           EXIT_FETCH_FATAL);
}

static const char *resolve_repository(const char *cmd, const char *opt, pc_manifest **m_out);

/* Parses the options shared by both commands. Returns -1 to continue, else an exit status. */
static int parse_opts(const char *cmd, int argc, char **argv, cli_repo_flags *f,
                      unsigned *parallel, void (*help)(void), int usage_status)
{
    static const struct option longopts[] = {
        CLI_GLOBAL_LONGOPTS,
        {"repository", required_argument, NULL, OPT_REPOSITORY},
        {"s3-endpoint", required_argument, NULL, OPT_S3_ENDPOINT},
        {"s3-region", required_argument, NULL, OPT_S3_REGION},
        {"s3-uri-style", required_argument, NULL, OPT_S3_URI_STYLE},
        {"s3-ca-file", required_argument, NULL, OPT_S3_CA_FILE},
        {"s3-no-verify-tls", no_argument, NULL, OPT_S3_NO_VERIFY},
        {"encrypted", no_argument, NULL, OPT_ENCRYPTED},
        {"credentials-file", required_argument, NULL, OPT_CREDENTIALS},
        {"parallel", required_argument, NULL, OPT_PARALLEL},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        if (c >= OPT_REPOSITORY && c != OPT_S3_NO_VERIFY && c != OPT_ENCRYPTED &&
            optarg[0] == '\0') {
            cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
            return usage_status;
        }
        switch (c) {
        case OPT_REPOSITORY:
            f->uri = optarg;
            continue;
        case OPT_S3_ENDPOINT:
            f->s3_endpoint = optarg, f->any_s3 = true;
            continue;
        case OPT_S3_REGION:
            f->s3_region = optarg, f->any_s3 = true;
            continue;
        case OPT_S3_URI_STYLE:
            f->s3_uri_style = optarg, f->any_s3 = true;
            continue;
        case OPT_S3_CA_FILE:
            f->s3_ca_file = optarg, f->any_s3 = true;
            continue;
        case OPT_S3_NO_VERIFY:
            f->s3_no_verify_tls = true, f->any_s3 = true;
            continue;
        case OPT_ENCRYPTED:
            f->encrypted = true;
            continue;
        case OPT_CREDENTIALS:
            f->credentials_file = optarg;
            continue;
        case OPT_PARALLEL: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > PC_WAL_PARALLEL_MAX) {
                cli_usage_error(cmd, "--parallel needs a number from 1 to %d, got '%s'",
                                PC_WAL_PARALLEL_MAX, optarg);
                return usage_status;
            }
            if (parallel != NULL) /* wal-fetch takes it, as restore_command may carry it */
                *parallel = (unsigned)v;
            continue;
        }
        default:
            break;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1) {
            cli_usage_error(cmd, "invalid value '%s'", optarg);
            return usage_status;
        }
        cli_usage_error(cmd, "unknown option");
        return usage_status;
    }
    if (f->uri == NULL && (f->any_s3 || f->encrypted || f->credentials_file != NULL)) {
        cli_usage_error(cmd, "the --s3-*, --encrypted and --credentials-file options go with "
                             "--repository");
        return usage_status;
    }
    if (argc - optind != 2) {
        cli_usage_error(cmd, "expected 2 arguments (%s), got %d",
                        strcmp(cmd, "wal-push") == 0 ? "PATH NAME" : "NAME PATH", argc - optind);
        return usage_status;
    }
    return -1;
}

/* Opens the repository from the options, else from the manifest. *m_out owns the manifest
 * when one was loaded. Prints why and returns non-zero on failure. */
static int open_repo(const char *cmd, const cli_repo_flags *f, pc_manifest **m_out,
                     pc_repo **r)
{
    pc_error err = {0};
    int rc;
    if (f->uri != NULL) {
        rc = cli_repo_open_flags(f, r, &err);
    } else {
        const char *uri = resolve_repository(cmd, NULL, m_out);
        if (uri == NULL)
            return PC_EINVAL;
        rc = cli_repo_open(*m_out, uri, r, &err);
    }
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
    return rc;
}

/* The repository from --repository or the manifest. *m_out owns the loaded manifest. NULL after
 * printing why. */
static const char *resolve_repository(const char *cmd, const char *opt, pc_manifest **m_out)
{
    if (opt != NULL)
        return opt;
    pc_manifest *m = cli_load_manifest();
    if (m == NULL) {
        fprintf(stderr,
                "%s: cannot load the manifest %s to find the backup repository (or pass "
                "--repository DIR)\n",
                cmd, g_cli.file);
        return NULL;
    }
    if (m->archiving.repository == NULL || m->archiving.repository[0] == '\0') {
        fprintf(stderr,
                "%s: %s declares no archiving.repository: add one, or pass "
                "--repository DIR\n",
                cmd, g_cli.file);
        pc_manifest_free(m);
        return NULL;
    }
    *m_out = m;
    return m->archiving.repository;
}

static const char *push_result_name(pc_wal_push_result r)
{
    switch (r) {
    case PC_WAL_PUSHED:
        return "pushed";
    case PC_WAL_ALREADY:
        return "already-archived";
    case PC_WAL_REPAIRED:
        return "repaired";
    case PC_WAL_AHEAD:
        return "pushed-ahead";
    }
    return "?";
}

static void print_json(const char *name, const char *result, const pc_wal_info *info)
{
    /* name is a validated WAL file name: no character needs escaping. */
    printf("{\n  \"name\": \"%s\",\n  \"result\": \"%s\",\n  \"sha256\": \"%s\",\n"
           "  \"size\": %llu,\n  \"stored_size\": %llu\n}\n",
           name, result, info->sha256, (unsigned long long)info->size,
           (unsigned long long)info->stored_size);
}

/* How pc_wal_push_ahead opens a handle: from the options, else from the manifest. */
typedef struct push_open_ctx {
    const cli_repo_flags *flags;
    const pc_manifest *m;
} push_open_ctx;

static int push_open(void *ctx, pc_repo **out, pc_error *err)
{
    const push_open_ctx *c = ctx;
    if (c->flags->uri != NULL)
        return cli_repo_open_flags(c->flags, out, err);
    return cli_repo_open(c->m, c->m->archiving.repository, out, err);
}

int cmd_wal_push(int argc, char **argv)
{
    cli_repo_flags flags = {0};
    unsigned parallel = 0;
    int st = parse_opts("wal-push", argc, argv, &flags, &parallel, push_help, EXIT_ERR);
    bool parallel_given = parallel != 0;
    if (!parallel_given)
        parallel = 1;
    if (st >= 0)
        return st;
    const char *path = argv[optind];
    const char *name = argv[optind + 1];
    pc_error err = {0};
    /* Check the name before anything else: it becomes a path in the repository. */
    if (pc_wal_name_check(name, NULL, &err) != 0) {
        fprintf(stderr, "wal-push: %s\n", err.msg);
        return EXIT_ERR;
    }
    pc_manifest *m = NULL;
    const char *uri = flags.uri;
    if (uri == NULL && (uri = resolve_repository("wal-push", NULL, &m)) == NULL)
        return EXIT_ERR;
    if (!parallel_given && m != NULL && m->archiving.parallel > 1)
        parallel = (unsigned)m->archiving.parallel;
    push_open_ctx oc = {.flags = &flags, .m = m};
    pc_wal_push_opts po = {
        .parallel = parallel, .repo_id = uri, .open_repo = push_open, .open_ctx = &oc};
    pc_wal_push_result res = PC_WAL_PUSHED;
    pc_wal_info info;
    size_t ahead = 0;
    int rc = pc_wal_push_ahead(path, name, &po, &res, &info, &ahead, &err);
    if (rc != 0) {
        fprintf(stderr, "wal-push: %s\n", err.msg);
        pc_manifest_free(m);
        return EXIT_ERR;
    }
    if (g_cli.verbose > 0 || res == PC_WAL_REPAIRED)
        fprintf(stderr, "wal-push: %s %s in %s (%llu bytes, stored %llu, sha256 %s)\n",
                res == PC_WAL_REPAIRED ? "replaced a corrupt archived copy of"
                                       : push_result_name(res),
                name, uri, (unsigned long long)info.size, (unsigned long long)info.stored_size,
                info.sha256);
    if (g_cli.verbose > 0 && ahead > 0)
        fprintf(stderr, "wal-push: handed %zu waiting file(s) to a background pusher\n", ahead);
    if (g_cli.json)
        print_json(name, push_result_name(res), &info);
    pc_manifest_free(m);
    return EXIT_OK;
}

int cmd_wal_fetch(int argc, char **argv)
{
    cli_repo_flags flags = {0};
    int st = parse_opts("wal-fetch", argc, argv, &flags, NULL, fetch_help, EXIT_FETCH_FATAL);
    if (st >= 0)
        return st;
    const char *name = argv[optind];
    const char *path = argv[optind + 1];
    pc_error err = {0};
    if (pc_wal_name_check(name, NULL, &err) != 0) {
        fprintf(stderr, "wal-fetch: %s\n", err.msg);
        return EXIT_FETCH_FATAL;
    }
    pc_manifest *m = NULL;
    pc_repo *r = NULL;
    if (open_repo("wal-fetch", &flags, &m, &r) != 0) {
        pc_manifest_free(m);
        return EXIT_FETCH_FATAL;
    }
    const char *repo = pc_repo_uri(r);
    pc_wal_info info;
    int rc = pc_wal_fetch(r, name, path, &info, &err);
    int status = EXIT_OK;
    if (rc == PC_ENOTFOUND) {
        /* An ordinary answer: recovery asks for the next segment until there is none. */
        if (g_cli.verbose > 0)
            fprintf(stderr, "wal-fetch: %s\n", err.msg);
        status = EXIT_ERR;
    } else if (rc != 0) {
        fprintf(stderr, "wal-fetch: %s\n", err.msg);
        status = EXIT_FETCH_FATAL;
    } else {
        if (g_cli.verbose > 0)
            fprintf(stderr, "wal-fetch: restored %s from %s to %s (%llu bytes, sha256 %s)\n", name,
                    repo, path, (unsigned long long)info.size, info.sha256);
        if (g_cli.json)
            print_json(name, "fetched", &info);
    }
    pc_repo_close(r);
    pc_manifest_free(m);
    return status;
}
