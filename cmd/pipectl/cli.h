/* cli.h: what the command files share: global options, manifest loading with diagnostics,
 * terminal detection. Only cmd/ prints and chooses exit codes. */
#ifndef PC_CLI_H
#define PC_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "apply.h"
#include "core.h"
#include "manifest.h"
#include "plan.h"

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
/* `backup verify ID` (cmd_backup_verify.c), dispatched from cmd_backup. argv[0] is "verify". */
int cli_backup_verify(int argc, char **argv);

/* The NocoDB part of `pipectl status` (status_nocodb.c), on its own NocoDB connection: NocoDB
 * reachable and signed in, the base found, each exposed schema's source present (and enabled)
 * and the number of tables NocoDB sees in it. Writes its text lines to text (NULL: none).
 * Returns a new JSON object {url, reachable, error, base: {title, found, id}, sources: [{alias,
 * schema, id, state: present|disabled|missing|unknown, tables, error}]}, or NULL when the
 * manifest has no nocodb block. Sets *healthy = false when NocoDB is unreachable or refuses the
 * credentials, the base is missing, or a declared source is missing, disabled or unreadable;
 * never sets it true. shared: the plan's signed-in NocoDB session to reuse, or NULL to sign in
 * here. */
json_t *cli_status_nocodb(const pc_manifest *m, pc_nocodb *shared, FILE *text, bool *healthy);

#endif
