/* cmd_backup.c: `pipectl backup create|list|verify|expire`. The work is in pkg/backup; this file
 * parses options, resolves the repository, DSN and retention from the manifest, and prints. */
#include <getopt.h>
#include <openssl/crypto.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"

enum {
    OPT_REPOSITORY = 2001,
    OPT_LABEL,
    OPT_COMPRESSION,
    OPT_KEEP,
    OPT_KEEP_DAYS,
    OPT_ARCHIVE_WAIT,
    OPT_OUTPUT
};

static void backup_help(void)
{
    printf("Usage: pipectl [-f FILE] backup <create|list|verify|expire|credentials-file> "
           "[options]\n\n"
           "Base backups in the backup repository (archiving.repository), beside the WAL that\n"
           "wal-push archives there:\n"
           "  create   take a base backup of postgres.dsn (replication protocol, compressed tar)\n"
           "  list     complete backups, oldest first\n"
           "  verify   check a backup's files and its WAL against their checksums\n"
           "  expire   remove backups retention does not keep, and the WAL only they needed\n"
           "  credentials-file  write the secrets archive_command and restore_command read\n\n"
           "'pipectl backup <subcommand> --help' for each.\n");
}

static void create_help(void)
{
    printf("Usage: pipectl [-f FILE] backup create [--label L] [--repository DIR]\n"
           "                                      [--compression C] [--archive-wait D] [-o json]\n\n"
           "Takes a base backup of the cluster at postgres.dsn over the replication protocol\n"
           "(BASE_BACKUP: tar stream without WAL, backup_manifest with SHA-256 checksums) into\n"
           "REPO/backups/ID/:\n"
           "base.tar.zst (or .lz4, .gz, .tar), backup_manifest and pipectl.json (written last).\n"
           "The WAL comes from archiving into the same repository: the server must archive\n"
           "with 'pipectl wal-push' into REPO, and create succeeds only once the backup's last\n"
           "WAL segment is in REPO/wal: it waits for it as long as the archiver makes\n"
           "progress, and gives up (removing the backup) when nothing was archived, or\n"
           "archive_command kept failing, for --archive-wait. Only one backup or expire\n"
           "runs on a repository at a time (REPO/backups/.lock). A failed backup leaves\n"
           "nothing behind.\n\n"
           "Options:\n"
           "  --label L          backup label (default 'pipectl ID')\n"
           "  --repository DIR   backup repository (default: archiving.repository)\n"
           "  --compression C    zstd, lz4, gzip or none (default: backups.compression, zstd)\n"
           "  --archive-wait D   how long the archiver may make no progress (default 60s;\n"
           "                     1s..24h)\n"
           "  -o json            print the backup's metadata on stdout\n\n"
           "A progress bar is shown on stderr when it is a terminal.\n");
}

static void list_help(void)
{
    printf(
        "Usage: pipectl [-f FILE] backup list [--repository DIR] [-o json]\n\n"
        "Lists the complete backups in the repository (those with pipectl.json), oldest\n"
        "first: id, start time, duration, database size, stored size, WAL range.\n"
        "A backup whose pipectl.json cannot be read (damaged, empty) is skipped with a\n"
        "warning on stderr naming it and why (and listed under \"damaged\" with -o json);\n"
        "the others are listed and the exit status stays 0.\n\n"
        "Options:\n"
        "  --repository DIR   backup repository (default: archiving.repository)\n"
        "  -o json            {\"repository\", \"backups\": [...], \"damaged\": [{id, problem}]}\n"
        "                     on stdout\n");
}

static void expire_help(void)
{
    printf("Usage: pipectl [-f FILE] backup expire [--keep N] [--keep-days D]\n"
           "                                      [--repository DIR] [-o json]\n\n"
           "Removes the backups retention does not keep, then the archived WAL segments older\n"
           "than the oldest kept backup's first segment (timeline .history files are always\n"
           "kept). A backup is kept when it is among the newest N, or started less than D days\n"
           "ago; the newest backup is always kept. Also removes what a killed 'backup create'\n"
           "left behind (a backup directory without pipectl.json), and wal-push temporary\n"
           "files (wal/.NAME.zst.tmp-XXXXXX) not modified for an hour (a killed push's).\n"
           "A backup whose pipectl.json cannot be read is skipped with a warning: it is\n"
           "neither counted nor removed, and the WAL every readable kept backup needs stays\n"
           "(WAL only the damaged backup would need is not kept for it).\n\n"
           "Options:\n"
           "  --keep N           keep the newest N backups (default: backups.retention.full)\n"
           "  --keep-days D      keep backups younger than D days (default:\n"
           "                     backups.retention.days)\n"
           "  --repository DIR   backup repository (default: archiving.repository)\n"
           "  -o json            {backups_removed, wal_removed, oldest_wal_kept, tmp_removed,\n"
           "                     damaged: [{id, problem}]} on stdout\n");
}

/* Loads the manifest once (NULL after printing why). */
static pc_manifest *manifest(pc_manifest **m)
{
    if (*m == NULL)
        *m = cli_load_manifest();
    return *m;
}

static const char *resolve_repository(const char *opt, pc_manifest **m)
{
    if (opt != NULL)
        return opt;
    if (manifest(m) == NULL) {
        fprintf(stderr,
                "pipectl backup: cannot load the manifest %s to find the backup "
                "repository (or pass --repository DIR)\n",
                g_cli.file);
        return NULL;
    }
    if ((*m)->archiving.repository == NULL || (*m)->archiving.repository[0] == '\0') {
        fprintf(stderr,
                "pipectl backup: %s declares no archiving.repository: add one, or pass "
                "--repository DIR\n",
                g_cli.file);
        return NULL;
    }
    return (*m)->archiving.repository;
}

static void iso(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Where a backup is, for a person: "<repository>/backups/<ID>" (its directory in a directory
 * repository). */
static char *where(const pc_repo *r, const pc_backup_info *b)
{
    return pc_asprintf("%s/%s", pc_repo_uri(r), b->dir);
}

static json_t *info_json(const pc_repo *r, const pc_backup_info *b)
{
    char st[32], et[32];
    iso(b->start_time, st);
    iso(b->stop_time, et);
    char *dir = where(r, b);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:s, s:s}", "id", b->id,
                  "label", b->label ? b->label : "", "start_lsn", b->start_lsn, "stop_lsn",
                  b->stop_lsn, "start_time", st, "stop_time", et, "timeline",
                  (json_int_t)b->timeline, "start_wal", b->start_wal, "stop_wal", b->stop_wal,
                  "db_bytes", (json_int_t)b->db_bytes, "stored_bytes", (json_int_t)b->stored_bytes,
                  "compression", b->compression, "dir", dir != NULL ? dir : b->dir);
    free(dir);
    return j;
}

/* One warning line per damaged backup on stderr; the JSON array of them. */
static json_t *warn_damaged(const char *cmd, const pc_backup_damaged *bad, size_t nbad)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < nbad; i++) {
        fprintf(stderr, "pipectl %s: warning: skipped damaged backup %s: %s\n", cmd, bad[i].id,
                bad[i].problem);
        json_array_append_new(arr,
                              json_pack("{s:s, s:s}", "id", bad[i].id, "problem", bad[i].problem));
    }
    return arr;
}

static void print_json(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* Parses one subcommand's options. Returns -1 to continue, else an exit status. */
static int parse(const char *cmd, int argc, char **argv, const struct option *own,
                 void (*help)(void), int (*handle)(int c, const char *arg, void *ctx), void *ctx)
{
    struct option longopts[16];
    static const struct option globals[] = {CLI_GLOBAL_LONGOPTS};
    size_t k = 0;
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        longopts[k++] = globals[i];
    for (size_t i = 0; own[i].name != NULL && k < 15; i++)
        longopts[k++] = own[i];
    memset(&longopts[k], 0, sizeof longopts[k]);
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        if (g == -1)
            return cli_usage_error(cmd, "invalid value '%s'", optarg);
        if (c >= OPT_REPOSITORY && handle(c, optarg, ctx) == 0)
            continue;
        if (c >= OPT_REPOSITORY)
            return cli_usage_error(cmd, "invalid value '%s'", optarg);
        return cli_usage_error(cmd, "unknown option");
    }
    return -1;
}

typedef struct opts {
    const char *repository;
    const char *label;
    const char *compression;
    int keep;
    int keep_days;
    int archive_wait_s;
    const char *output;
} opts;

static int parse_count(const char *arg, int *out)
{
    char *end = NULL;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end != '\0' || v < 1 || v > 100000)
        return -1;
    *out = (int)v;
    return 0;
}

static int handle_opt(int c, const char *arg, void *ctx)
{
    opts *o = ctx;
    switch (c) {
    case OPT_REPOSITORY:
        o->repository = arg;
        return arg[0] ? 0 : -1;
    case OPT_LABEL:
        o->label = arg;
        return 0;
    case OPT_COMPRESSION:
        o->compression = arg;
        return 0;
    case OPT_ARCHIVE_WAIT: {
        int64_t ms = cli_parse_duration_ms(arg);
        if (ms < 1000 || ms > 24LL * 3600 * 1000)
            return -1;
        o->archive_wait_s = (int)(ms / 1000);
        return 0;
    }
    case OPT_KEEP:
        return parse_count(arg, &o->keep);
    case OPT_KEEP_DAYS:
        return parse_count(arg, &o->keep_days);
    case OPT_OUTPUT:
        o->output = arg;
        return arg[0] ? 0 : -1;
    default:
        return -1;
    }
}

static int do_create(int argc, char **argv)
{
    static const struct option own[] = {{"repository", required_argument, NULL, OPT_REPOSITORY},
                                        {"label", required_argument, NULL, OPT_LABEL},
                                        {"compression", required_argument, NULL, OPT_COMPRESSION},
                                        {"archive-wait", required_argument, NULL, OPT_ARCHIVE_WAIT},
                                        {NULL, 0, NULL, 0}};
    opts o = {0};
    int st = parse("backup create", argc, argv, own, create_help, handle_opt, &o);
    if (st >= 0)
        return st;
    if (optind < argc)
        return cli_usage_error("backup create", "unexpected argument '%s'", argv[optind]);
    pc_manifest *m = NULL;
    pc_repo *r = NULL;
    int status = EXIT_ERR;
    const char *uri = resolve_repository(o.repository, &m);
    if (uri == NULL)
        goto done;
    if (manifest(&m) == NULL) {
        fprintf(stderr,
                "pipectl backup create: the manifest %s gives the database to back up "
                "(postgres.dsn)\n",
                g_cli.file);
        goto done;
    }
    if (o.compression == NULL && m->backups.compression != NULL)
        o.compression = m->backups.compression;
    cli_progress prog;
    cli_progress_init(&prog, "backup create");
    pc_backup_info info = {0};
    pc_error err = {0};
    if (cli_repo_open(m, uri, &r, &err) != 0) {
        cli_print_error("backup create", &err);
        goto done;
    }
    time_t t0 = time(NULL);
    int rc = pc_backup_create(r, m->pg_dsn, o.compression, o.label, o.archive_wait_s, g_cli.timeout_s,
                              cli_progress_fn, &prog, &info, &err);
    cli_progress_end(&prog);
    if (rc != 0) {
        cli_print_error("backup create", &err);
        goto done;
    }
    if (g_cli.json) {
        print_json(info_json(r, &info));
    } else {
        char db[32], stored[32];
        cli_human_bytes(info.db_bytes, db);
        cli_human_bytes(info.stored_bytes, stored);
        char *dir = where(r, &info);
        printf("backup %s: LSN %s..%s, timeline %u, WAL %s..%s\n"
               "  %s of data, stored %s (%s) in %lld s\n  %s\n",
               info.id, info.start_lsn, info.stop_lsn, info.timeline, info.start_wal, info.stop_wal,
               db, stored, info.compression, (long long)(time(NULL) - t0),
               dir != NULL ? dir : info.dir);
        free(dir);
    }
    pc_backup_info_free(&info);
    status = EXIT_OK;
done:
    pc_repo_close(r);
    pc_manifest_free(m);
    return status;
}

static int do_list(int argc, char **argv)
{
    static const struct option own[] = {{"repository", required_argument, NULL, OPT_REPOSITORY},
                                        {NULL, 0, NULL, 0}};
    opts o = {0};
    int st = parse("backup list", argc, argv, own, list_help, handle_opt, &o);
    if (st >= 0)
        return st;
    if (optind < argc)
        return cli_usage_error("backup list", "unexpected argument '%s'", argv[optind]);
    pc_manifest *m = NULL;
    pc_backup_info *list = NULL;
    pc_backup_damaged *bad = NULL;
    size_t n = 0, nbad = 0;
    int status = EXIT_ERR;
    pc_repo *r = NULL;
    const char *uri = resolve_repository(o.repository, &m);
    if (uri == NULL)
        goto done;
    pc_error err = {0};
    if (cli_repo_open(m, uri, &r, &err) != 0 ||
        pc_backup_scan(r, &list, &n, &bad, &nbad, &err) != 0) {
        cli_print_error("backup list", &err);
        goto done;
    }
    const char *repo = pc_repo_uri(r);
    json_t *damaged = warn_damaged("backup list", bad, nbad);
    if (g_cli.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, info_json(r, &list[i]));
        print_json(
            json_pack("{s:s, s:o, s:o}", "repository", repo, "backups", arr, "damaged", damaged));
        damaged = NULL;
    } else if (n == 0) {
        printf("no backups in %s\n", repo);
    } else {
        printf("%-17s  %-20s  %8s  %10s  %10s  %s\n", "ID", "START (UTC)", "DURATION", "DB SIZE",
               "STORED", "WAL RANGE");
        for (size_t i = 0; i < n; i++) {
            char st_[32], db[32], stored[32];
            iso(list[i].start_time, st_);
            cli_human_bytes(list[i].db_bytes, db);
            cli_human_bytes(list[i].stored_bytes, stored);
            char dur[32];
            snprintf(dur, sizeof dur, "%llds", (long long)(list[i].stop_time - list[i].start_time));
            printf("%-17s  %-20s  %8s  %10s  %10s  %s..%s\n", list[i].id, st_, dur, db, stored,
                   list[i].start_wal, list[i].stop_wal);
        }
    }
    json_decref(damaged);
    status = EXIT_OK;
done:
    pc_backup_list_free(list, n);
    pc_backup_damaged_free(bad, nbad);
    pc_repo_close(r);
    pc_manifest_free(m);
    return status;
}

static int do_expire(int argc, char **argv)
{
    static const struct option own[] = {{"repository", required_argument, NULL, OPT_REPOSITORY},
                                        {"keep", required_argument, NULL, OPT_KEEP},
                                        {"keep-days", required_argument, NULL, OPT_KEEP_DAYS},
                                        {NULL, 0, NULL, 0}};
    opts o = {0};
    int st = parse("backup expire", argc, argv, own, expire_help, handle_opt, &o);
    if (st >= 0)
        return st;
    if (optind < argc)
        return cli_usage_error("backup expire", "unexpected argument '%s'", argv[optind]);
    pc_manifest *m = NULL;
    int status = EXIT_ERR;
    pc_expire_result res = {0};
    pc_repo *r = NULL;
    const char *uri = resolve_repository(o.repository, &m);
    if (uri == NULL)
        goto done;
    if (o.keep == 0 && o.keep_days == 0) {
        if (manifest(&m) == NULL)
            goto done;
        o.keep = m->backups.retention_full;
        o.keep_days = m->backups.retention_days;
    }
    if (o.keep == 0 && o.keep_days == 0) {
        status = cli_usage_error("backup expire",
                                 "no retention: pass --keep N or --keep-days D, "
                                 "or declare backups.retention in %s",
                                 g_cli.file);
        goto done;
    }
    pc_error err = {0};
    if (cli_repo_open(m, uri, &r, &err) != 0 ||
        pc_backup_expire(r, o.keep, o.keep_days, (int64_t)time(NULL), &res, &err) != 0) {
        cli_print_error("backup expire", &err);
        goto done;
    }
    const char *repo = pc_repo_uri(r);
    json_t *damaged = warn_damaged("backup expire", res.damaged, res.ndamaged);
    if (g_cli.json) {
        print_json(json_pack("{s:I, s:I, s:s?, s:I, s:o}", "backups_removed",
                             (json_int_t)res.backups_removed, "wal_removed",
                             (json_int_t)res.wal_removed, "oldest_wal_kept", res.oldest_wal_kept,
                             "tmp_removed", (json_int_t)res.tmp_removed, "damaged", damaged));
    } else {
        printf("expired %zu backup(s) and %zu WAL file(s) in %s; oldest WAL kept: %s\n",
               res.backups_removed, res.wal_removed, repo,
               res.oldest_wal_kept ? res.oldest_wal_kept : "(no backups: all kept)");
        if (res.tmp_removed > 0)
            printf("removed %zu stale wal-push temporary file(s)\n", res.tmp_removed);
        if (res.ndamaged > 0)
            printf("skipped %zu damaged backup(s): neither counted nor removed, and WAL only "
                   "they would need is not kept; inspect them ('pipectl backup verify ID'), "
                   "then repair or delete them\n",
                   res.ndamaged);
        json_decref(damaged);
    }
    status = EXIT_OK;
done:
    pc_expire_result_free(&res);
    pc_repo_close(r);
    pc_manifest_free(m);
    return status;
}

static void creds_help(void)
{
    printf("Usage: pipectl [-f FILE] backup credentials-file --to PATH\n\n"
           "Writes the secrets PostgreSQL's archive_command and restore_command need for the\n"
           "manifest's repository (archiving.credentials_file names where the server reads them):\n"
           "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN for an S3 repository\n"
           "(from archiving.s3, else the same variables in this environment) and\n"
           "PIPECTL_REPO_KEY for an encrypted one. PATH is written with mode 600 (temporary\n"
           "file, fsync, rename); then give it to PostgreSQL's OS user: chown postgres PATH.\n"
           "Nothing secret is printed.\n\n"
           "Options:\n"
           "  --to PATH          the file to write (replaced if it exists)\n");
}

/* KEY=VALUE, refusing a value that would not read back as written. */
static int creds_line(pc_buf *b, const char *key, const char *value, pc_error *err)
{
    if (value == NULL || value[0] == '\0')
        return 0;
    if (strpbrk(value, "\r\n") != NULL)
        return pc_error_set(err, PC_EINVAL, "%s holds a line break: it cannot be written to a "
                                            "credentials file", key);
    return pc_buf_printf(b, "%s=%s\n", key, value) != 0 ? pc_error_set(err, PC_ENOMEM, "out of memory")
                                                       : 0;
}

static int do_credentials_file(int argc, char **argv)
{
    static const struct option own[] = {{"to", required_argument, NULL, OPT_OUTPUT},
                                        {NULL, 0, NULL, 0}};
    opts o = {0};
    int st = parse("backup credentials-file", argc, argv, own, creds_help, handle_opt, &o);
    if (st >= 0)
        return st;
    if (optind < argc)
        return cli_usage_error("backup credentials-file", "unexpected argument '%s'",
                               argv[optind]);
    if (o.output == NULL)
        return cli_usage_error("backup credentials-file", "--to PATH is required");
    pc_manifest *m = cli_load_manifest();
    if (m == NULL)
        return EXIT_ERR;
    const pc_mf_archiving *ar = &m->archiving;
    bool on_s3 = ar->repository != NULL && strncmp(ar->repository, "s3://", 5) == 0;
    int status = EXIT_ERR;
    pc_buf b = {0};
    pc_error err = {0};
    if (!on_s3 && !ar->encryption.declared) {
        fprintf(stderr,
                "pipectl backup credentials-file: %s's repository is an unencrypted directory: "
                "archive_command needs no secret\n",
                g_cli.file);
        goto done;
    }
    pc_buf_puts(&b, "# pipectl backup credentials-file: read by wal-push / wal-fetch "
                    "(--credentials-file)\n");
    int rc = 0;
    if (on_s3) {
        const char *id = ar->s3.access_key_id, *key = ar->s3.secret_access_key,
                   *tok = ar->s3.session_token;
        if (id == NULL) { /* the manifest's rule: all three from the environment */
            id = getenv("AWS_ACCESS_KEY_ID");
            key = getenv("AWS_SECRET_ACCESS_KEY");
            tok = getenv("AWS_SESSION_TOKEN");
        }
        if (id == NULL || key == NULL) {
            fprintf(stderr,
                    "pipectl backup credentials-file: no S3 credentials: set "
                    "archiving.s3.access_key_id and secret_access_key in %s, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n",
                    g_cli.file);
            goto done;
        }
        rc = creds_line(&b, "AWS_ACCESS_KEY_ID", id, &err);
        if (rc == 0)
            rc = creds_line(&b, "AWS_SECRET_ACCESS_KEY", key, &err);
        if (rc == 0)
            rc = creds_line(&b, "AWS_SESSION_TOKEN", tok, &err);
    }
    if (rc == 0 && ar->encryption.declared)
        rc = creds_line(&b, "PIPECTL_REPO_KEY", ar->encryption.key, &err);
    if (rc == 0)
        rc = pc_durable_write(o.output, b.data, b.len, 0600, &err);
    if (rc != 0) {
        cli_print_error("backup credentials-file", &err);
        goto done;
    }
    if (g_cli.json)
        print_json(json_pack("{s:s, s:b, s:b}", "path", o.output, "s3", on_s3, "encryption",
                             ar->encryption.declared));
    else
        fprintf(stderr, "wrote %s (mode 600): give it to PostgreSQL's OS user (chown postgres "
                        "%s) where archiving.credentials_file says (%s)\n",
                o.output, o.output, ar->credentials_file != NULL ? ar->credentials_file : "unset");
    status = EXIT_OK;
done:
    if (b.data != NULL)
        OPENSSL_cleanse(b.data, b.len);
    pc_buf_free(&b);
    pc_manifest_free(m);
    return status;
}

int cmd_backup(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("backup", "expected a subcommand: create, list, verify or expire");
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        backup_help();
        return EXIT_OK;
    }
    if (strcmp(sub, "create") == 0)
        return do_create(argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0)
        return do_list(argc - 1, argv + 1);
    if (strcmp(sub, "expire") == 0)
        return do_expire(argc - 1, argv + 1);
    if (strcmp(sub, "verify") == 0)
        return cli_backup_verify(argc - 1, argv + 1);
    if (strcmp(sub, "credentials-file") == 0)
        return do_credentials_file(argc - 1, argv + 1);
    return cli_usage_error("backup",
                           "unknown subcommand '%s': use create, list, verify, expire or "
                           "credentials-file",
                           sub);
}
