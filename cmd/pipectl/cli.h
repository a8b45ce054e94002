/* cli.h: what the command files share: global options, manifest loading with diagnostics,
 * terminal detection. Only cmd/ prints and chooses exit codes. */
#ifndef PC_CLI_H
#define PC_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "apply.h"
#include "backup.h"
#include "core.h"
#include "manifest.h"
#include "plan.h"
#include "worker.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_CHANGES = 2 };

typedef struct cli_globals {
    const char *file;   /* -f, default ./pipeline.yaml */
    bool json;          /* -o json */
    int verbose;        /* -v */
    int timeout_s;      /* --timeout, connection timeout per system */
    char **argv;        /* the command's argv (getopt's), for naming a bad option */
} cli_globals;

extern cli_globals g_cli;

/* Long options every command accepts in addition to its own (-f, -o, -v, --timeout, --help). */
/* The leading ':' makes getopt silent and report a missing value as ':' (not '?'): the
 * commands' "unknown option" path then names the option and what it wants, once. */
#define CLI_GLOBAL_SHORTOPTS ":f:o:vh"
#define CLI_GLOBAL_LONGOPTS                                                                        \
    {"file", required_argument, NULL, 'f'}, {"output", required_argument, NULL, 'o'},              \
        {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'},                     \
        {"timeout", required_argument, NULL, 1000}

/* Handles a global option returned by getopt_long: 1 handled, 0 not a global, -1 bad value. */
int cli_global_opt(int c, const char *arg);
/* Prints "pipectl <cmd>: <msg>" + "Try 'pipectl <cmd> --help'." and returns EXIT_ERR. The two
 * messages every command gives after getopt_long, "unknown option" and "invalid value '%s'",
 * are replaced by the precise one for the option getopt last returned (cli_global_opt records
 * it): an unknown option named, a missing value, a bad value with the range wanted. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "500ms", "30s", "5m", "2h", "1d" -> milliseconds (0 for "0s": callers that need more say
 * so); -1 when malformed or negative. */
int64_t cli_parse_duration_ms(const char *s);
/* Parses a command that takes only the global options and no arguments. Returns -1 to go on,
 * else the exit code to return (after --help, or a usage error). */
int cli_parse_plain(int argc, char **argv, const char *cmd, void (*help)(void));
/* Rewrites terraform-style single-dash long options (-out) to --out, in place. */
void cli_fix_single_dash(int argc, char **argv, const char *const *names);

/* Loads g_cli.file; prints every diagnostic (text: FILE:LINE:COL lines on stderr; with -o json
 * README's error document on stdout, the diagnostics listed in it). NULL on error. */
pc_manifest *cli_load_manifest(void);
/* As cli_load_manifest, with validate's JSON ({"valid": false, "errors": [...]}) on failure. */
pc_manifest *cli_load_manifest_validate(void);
/* Prints an error for the user: "pipectl: error: <msg>" on stderr (and JSON on stdout with -o json). */
void cli_print_error(const char *what, const pc_error *err);
bool cli_color(FILE *f);
/* Absolute path of the running binary and the manifest, for the default archive_command. */
void cli_plan_opts(pc_plan_opts *opts, bool allow_delete);

/* The backup repository. cli_repo_config is the one place that maps the manifest's archiving
 * block (repository, s3, encryption) to a pc_repo_config: uri (NULL: archiving.repository)
 * replaces the repository, m may be NULL (a --repository without a manifest: a directory or an
 * S3 bucket with AWS's defaults). What cfg points to is borrowed from m, uri and *s3. */
void cli_repo_config(const pc_manifest *m, const char *uri, pc_s3_config *s3, pc_repo_config *cfg);
/* Opens the repository cli_repo_config describes; a relative directory path is taken from the
 * working directory. The caller prints err and closes *out with pc_repo_close. */
int cli_repo_open(const pc_manifest *m, const char *uri, pc_repo **out, pc_error *err);
/* The repository as wal-push / wal-fetch get it from archive_command and restore_command
 * (pc_mf_archiving_args): the URI and the S3 settings on the command line, the secrets
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, PIPECTL_REPO_KEY) from
 * credentials_file, else from the environment. */
typedef struct cli_repo_flags {
    const char *uri;
    const char *s3_endpoint, *s3_region, *s3_uri_style, *s3_ca_file;
    bool s3_no_verify_tls;
    bool encrypted; /* the passphrase is PIPECTL_REPO_KEY; its absence is an error */
    const char *credentials_file;
    bool any_s3;    /* an --s3-* option was given */
} cli_repo_flags;
int cli_repo_open_flags(const cli_repo_flags *f, pc_repo **out, pc_error *err);

/* Progress of long work (backup create, restore) on stderr: at a terminal one line redrawn at
 * most 4 times a second (bar, bytes done of the total, rate, ETA); elsewhere a plain line every 10
 * s; with -o json nothing. Pass cli_progress_fn and the struct as a pc_backup_progress_fn and its
 * context; cli_progress_end finishes the line (a final plain line elsewhere). */
/* "1.5 MiB": bytes in binary units, as every command prints sizes. */
void cli_human_bytes(uint64_t n, char out[32]);

typedef struct cli_progress {
    const char *what;   /* "backup", "restore" */
    bool tty, quiet;
    int64_t start_ms, last_ms;
    uint64_t done, total;
    bool shown;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *what);
void cli_progress_fn(void *ctx, uint64_t done, uint64_t total);
void cli_progress_end(cli_progress *p);

int cmd_validate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_wal_push(int argc, char **argv);
int cmd_wal_fetch(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);
/* `backup verify ID` (cmd_backup_verify.c), dispatched from cmd_backup. argv[0] is "verify". */
int cli_backup_verify(int argc, char **argv);

/* The NocoDB part of `pipectl status` (status_nocodb.c), on its own NocoDB connection: NocoDB
 * reachable and signed in, the base found, each exposed schema's source present (and enabled)
 * and the number of tables NocoDB sees in it. Computed first (cli_status_nocodb_compute), then
 * rendered as text or JSON. */
typedef struct cli_nocodb_source {
    char *alias;        /* owned; NULL when out of memory */
    const char *schema; /* borrowed from the manifest */
    const char *id;     /* borrowed from the base; NULL when the source is missing */
    const char *state;  /* present, disabled, missing or unknown */
    bool found;         /* the base has a source of this alias */
    int rc;             /* 0: ntables is known; else err says why not (missing: no err) */
    pc_error err;
    size_t ntables;
} cli_nocodb_source;

typedef struct cli_nocodb_status {
    bool declared; /* false: the manifest has no nocodb block, nothing else is set */
    char *url;     /* nocodb.url redacted (owned) */
    const char *base_name; /* nocodb.base as declared (borrowed from the manifest) */
    bool reachable;
    int rc; /* signing in and finding the base: 0, or err says why not */
    pc_error err;
    pc_nocodb_base *base; /* NULL when missing or unknown */
    cli_nocodb_source *sources; /* one per exposed schema */
    size_t nsources;
} cli_nocodb_status;

/* Fills out (zeroed by the caller). Sets *healthy = false when NocoDB is unreachable or refuses
 * the credentials, the base is missing, or a declared source is missing, disabled or
 * unreadable; never sets it true. shared: the plan's signed-in NocoDB session to reuse, or NULL
 * to sign in here. */
void cli_status_nocodb_compute(cli_nocodb_status *out, const pc_manifest *m, pc_nocodb *shared,
                               bool *healthy);
/* Its text lines (none when not declared). */
void cli_status_nocodb_text(const cli_nocodb_status *st, FILE *out);
/* A new JSON object {url, reachable, error, base: {title, found, id}, sources: [{alias, schema,
 * id, state: present|disabled|missing|unknown, tables, error}]}, or NULL when not declared. */
json_t *cli_status_nocodb_json(const cli_nocodb_status *st);
void cli_status_nocodb_dispose(cli_nocodb_status *st);

/* The dashboard's observer (cmd_dashboard.c), shared by `dashboard` and `run --metrics`: one
 * round (cli_observer_round, a pc_metrics_observe_fn) measures the lag of the given sinks (NULL:
 * all of the manifest's), reads pg_stat_archiver and the backup repository, and every third
 * round computes drift, each with a bounded timeout. m and sinks are borrowed. */
typedef struct cli_observer cli_observer;
int cli_observer_new(cli_observer **out, const pc_manifest *m, const pc_mf_sink *const *sinks,
                     size_t nsinks, pc_error *err);
void cli_observer_round(void *ctx, pc_metrics *mx, pc_metrics_observed *out,
                        const atomic_int *stop);
void cli_observer_free(cli_observer *o);
/* "http://HOST:PORT" for a listen address as given (":9464" -> 0.0.0.0) and the bound port. */
void cli_listen_url(const char *addr, int port, char *out, size_t n);

#endif
