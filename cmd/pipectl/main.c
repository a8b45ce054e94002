/* main.c: pipectl's entry point: global options, the command table, dispatch. */
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

cli_globals g_cli = {.file = "pipeline.yaml", .json = false, .verbose = 0, .timeout_s = 10};

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"validate", cmd_validate, "check the manifest without contacting any server"},
    {"plan", cmd_plan, "show the actions that would converge Kafka and Postgres to the manifest"},
    {"apply", cmd_apply, "perform those actions (or a saved plan) and snapshot the result to git"},
    {"run", cmd_run, "run the ingest and sink workers in the foreground until stopped"},
    {"status", cmd_status, "show reachability and drift of every declared system"},
    {"dashboard", cmd_dashboard, "serve the live dashboard, its JSON and /metrics; observes only"},
    {"snapshot", cmd_snapshot, "commit the redacted manifest and observed state to git"},
    {"wal-push", cmd_wal_push, "archive_command target: store a WAL file durably in the repository"},
    {"wal-fetch", cmd_wal_fetch, "restore_command target: fetch a WAL file from the repository"},
    {"restore", cmd_restore, "rebuild a data directory at a point in time from the repository"},
    {"backup", cmd_backup, "base backups: create, list, verify, expire"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: pipectl [-f FILE] [-o text|json] [-v] <command> [options]\n\n"
               "A declarative controller for a realtime user-data pipeline: one YAML manifest\n"
               "declares Kafka topics and Postgres schemas, tables and archiving settings;\n"
               "pipectl plans and applies the changes that make them so.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nGlobal options (also accepted after the command):\n"
               "  -f, --file FILE     manifest (default ./pipeline.yaml); ${VAR} and ${VAR:-default}\n"
               "                      expand from the environment\n"
               "  -o, --output FMT    text (default) or json: machine-readable result on stdout\n"
               "  -v, --verbose       more detail on stderr\n"
               "      --timeout SEC   connection timeout per system (default 10)\n"
               "  -h, --help          this help; 'pipectl <command> --help' for a command\n\n"
               "Exit codes: 0 success, 1 error or invalid input, 2 changes present\n"
               "(plan --detailed-exitcode only).\n");
}

/* What getopt_long last returned to a command, for cli_usage_error. */
static int g_last_opt;

static const char *opt_name(int c)
{
    switch (c) {
    case 'f': return "-f/--file";
    case 'o': return "-o/--output";
    case 1000: return "--timeout";
    default: return "?";
    }
}

static const char *wants(int c)
{
    switch (c) {
    case 'f': return "a manifest file";
    case 'o': return "text or json";
    case 1000: return "whole seconds from 1 to 3600";
    default: return NULL;
    }
}

/* The option as the user wrote it: argv[optind - 1] for getopt's last one (cut at '='). */
static void last_option_text(char *buf, size_t n)
{
    const char *a = g_cli.argv != NULL && optind > 0 ? g_cli.argv[optind - 1] : NULL;
    if (a == NULL || a[0] != '-') {
        snprintf(buf, n, "%s", "?");
        return;
    }
    if (a[1] != '-' && optopt > 0 && optopt < 256) { /* a short one, maybe among others: -vx */
        snprintf(buf, n, "-%c", optopt);
        return;
    }
    pc_buf b = {0};
    pc_buf_escape(&b, a, strcspn(a, "="), 64);
    snprintf(buf, n, "%s", b.data != NULL ? b.data : "?");
    pc_buf_free(&b);
}

int cli_global_opt(int c, const char *arg)
{
    g_last_opt = c;
    switch (c) {
    case 'f':
        g_cli.file = arg;
        return 1;
    case 'o':
        if (strcmp(arg, "json") == 0)
            g_cli.json = true;
        else if (strcmp(arg, "text") == 0)
            g_cli.json = false;
        else
            return -1;
        return 1;
    case 'v':
        g_cli.verbose++;
        return 1;
    case 1000: {
        char *end = NULL;
        long v = strtol(arg, &end, 10);
        if (end == arg || *end != '\0' || v < 1 || v > 3600)
            return -1;
        g_cli.timeout_s = (int)v;
        return 1;
    }
    default:
        return 0;
    }
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char opt[96];
    fprintf(stderr, "pipectl %s: ", cmd);
    if (strcmp(fmt, "unknown option") == 0 && (g_last_opt == ':' || g_last_opt == '?')) {
        last_option_text(opt, sizeof opt);
        if (g_last_opt == ':')
            fprintf(stderr, "option '%s' needs a value%s%s%s", opt, wants(optopt) ? " (" : "",
                    wants(optopt) ? wants(optopt) : "", wants(optopt) ? ")" : "");
        else
            fprintf(stderr, "unknown option '%s'", opt);
    } else if (strcmp(fmt, "invalid value '%s'") == 0 && wants(g_last_opt) != NULL) {
        va_list ap;
        va_start(ap, fmt);
        const char *v = va_arg(ap, const char *);
        va_end(ap);
        pc_buf b = {0};
        pc_buf_escape(&b, v != NULL ? v : "", v != NULL ? strlen(v) : 0, 64);
        fprintf(stderr, "option '%s' wants %s, got '%s'", opt_name(g_last_opt),
                wants(g_last_opt), b.data != NULL ? b.data : "");
        pc_buf_free(&b);
    } else {
        pc_buf b = {0};
        va_list ap;
        va_start(ap, fmt);
        pc_buf_vprintf_safe(&b, 200, fmt, ap);
        va_end(ap);
        fputs(b.data != NULL ? b.data : fmt, stderr);
        pc_buf_free(&b);
    }
    fprintf(stderr, "\nTry 'pipectl %s --help'.\n", cmd);
    return EXIT_ERR;
}

void cli_fix_single_dash(int argc, char **argv, const char *const *names)
{
    static char storage[16][64];
    int used = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (argv[i][0] != '-' || argv[i][1] == '-' || argv[i][1] == '\0' || argv[i][2] == '\0')
            continue;
        for (size_t k = 0; names[k] != NULL; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(argv[i] + 1, names[k], n) == 0 &&
                (argv[i][1 + n] == '\0' || argv[i][1 + n] == '=') && used < 16 &&
                strlen(argv[i]) + 2 < sizeof storage[0]) {
                snprintf(storage[used], sizeof storage[0], "-%s", argv[i]);
                argv[i] = storage[used++];
                break;
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS, {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int c;
    g_cli.argv = argv;
    /* '+' stops at the command name: the rest belongs to the command. */
    while ((c = getopt_long(argc, argv, "+" CLI_GLOBAL_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return EXIT_OK;
        }
        if (c == 'V') {
            printf("pipectl 0.1.0\n");
            return EXIT_OK;
        }
        int g = cli_global_opt(c, optarg);
        if (g == 1)
            continue;
        char opt[96];
        last_option_text(opt, sizeof opt);
        if (g == -1)
            fprintf(stderr, "pipectl: option '%s' wants %s, got '%s'\n", opt_name(c), wants(c),
                    optarg);
        else if (c == ':')
            fprintf(stderr, "pipectl: option '%s' needs a value%s%s%s\n", opt,
                    wants(optopt) ? " (" : "", wants(optopt) ? wants(optopt) : "",
                    wants(optopt) ? ")" : "");
        else
            fprintf(stderr, "pipectl: unknown option '%s'\n", opt);
        fprintf(stderr, "Try 'pipectl --help'.\n");
        return EXIT_ERR;
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_ERR;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            optind = 0; /* full reinit: forget the top-level "+" (stop at first argument) mode */
            g_cli.argv = sub_argv;
            return commands[i].fn(sub_argc, sub_argv);
        }
    }
    fprintf(stderr, "pipectl: unknown command '%s'\n", name);
    size_t best = 0, bestd = (size_t)-1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        size_t d = pc_levenshtein(name, commands[i].name);
        if (d < bestd) {
            bestd = d;
            best = i;
        }
    }
    if (bestd <= 2)
        fprintf(stderr, "Did you mean '%s'?\n", commands[best].name);
    fprintf(stderr, "Run 'pipectl --help' for the list of commands.\n");
    return EXIT_ERR;
}
