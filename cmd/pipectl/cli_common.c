/* cli_common.c: manifest loading with diagnostics, error printing, terminal helpers. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "postgres.h"

/* Every secret the loaded manifest holds, installed for the process (pc_secrets_install):
 * pc_error_set, pc_redact and so the logger and every error printed scrub with it. Lives until
 * exit: worker threads read it. */
static pc_secrets g_secrets;

static int install_secrets(const pc_manifest *m)
{
    pc_secrets_install(NULL);
    pc_secrets_dispose(&g_secrets);
    int rc = pc_manifest_secrets(m, &g_secrets);
    if (rc == 0)
        rc = pc_pg_dsn_secrets(m->pg_dsn, &g_secrets);
    if (rc == 0)
        pc_secrets_install(pc_secrets_list(&g_secrets));
    return rc;
}

/* postgres.dsn as libpq reads it (offline): a DSN libpq would misread is refused here, by every
 * command, before anything connects with it and quotes what it misread. */
static int check_dsn(const pc_manifest *m, pc_diags *diags)
{
    char *problem = NULL;
    int rc = pc_pg_dsn_check(m->pg_dsn, &problem);
    if (rc == PC_EINVAL) {
        pc_diag *items = realloc(diags->items, (diags->n + 1) * sizeof *items);
        if (items == NULL) {
            free(problem);
            return PC_ENOMEM;
        }
        diags->items = items;
        items[diags->n].pos = m->pg_dsn_pos;
        items[diags->n].message = pc_asprintf("postgres.dsn: %s", problem);
        free(problem);
        if (items[diags->n].message == NULL)
            return PC_ENOMEM;
        diags->n++;
        return 0;
    }
    free(problem);
    return rc;
}

bool cli_color(FILE *f)
{
    const char *no = getenv("NO_COLOR");
    return isatty(fileno(f)) && (no == NULL || *no == '\0') && !pc_streq(getenv("TERM"), "dumb");
}

static void print_diags_json(const pc_diags *d, bool valid)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    for (size_t i = 0; i < d->n; i++) {
        json_array_append_new(arr, json_pack("{s:s?, s:i, s:i, s:s}", "file", d->file, "line",
                                             d->items[i].pos.line, "column", d->items[i].pos.col,
                                             "message", d->items[i].message));
    }
    json_object_set_new(root, "valid", json_boolean(valid));
    json_object_set_new(root, "errors", arr);
    char *s = json_dumps(root, JSON_INDENT(2));
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    json_decref(root);
}

/* Every command but validate reports a manifest that does not load as README's error document:
 * {"error": {"code": "invalid input", "message": ..., "diagnostics": [{file, line, column,
 * message}]}}; validate keeps its own {"valid": false, "errors": [...]}. */
static void print_diags_error_json(const pc_diags *d, const pc_error *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < d->n; i++)
        json_array_append_new(arr, json_pack("{s:s?, s:i, s:i, s:s}", "file", d->file, "line",
                                             d->items[i].pos.line, "column", d->items[i].pos.col,
                                             "message", d->items[i].message));
    char *first = d->n > 0 ? pc_diag_format(d, 0) : NULL;
    char *msg = d->n > 1 ? pc_asprintf("%s (and %zu more errors)", first, d->n - 1) : NULL;
    json_t *root = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", pc_code_name(err->code),
                             "message", msg ? msg : first ? first : err->msg, "diagnostics", arr);
    char *out = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    char *safe = out ? pc_scrub(out, pc_secrets_installed()) : NULL;
    if (safe != NULL)
        printf("%s\n", safe);
    free(safe);
    free(out);
    free(msg);
    free(first);
    json_decref(root);
}

static pc_manifest *cli_load_manifest_ex(bool validate_shape)
{
    pc_manifest *m = NULL;
    pc_diags diags = {0};
    pc_error err = {0};
    int rc = pc_manifest_load(&m, g_cli.file, NULL, NULL, &diags, &err);
    /* kafka.client_config is checked against the librdkafka pipectl runs with, offline */
    if (rc == 0 && (rc = install_secrets(m)) != 0)
        rc = pc_error_set(&err, PC_ENOMEM, "out of memory");
    if (rc == 0 && (rc = pc_kafka_check_client_config(m, &diags)) == 0 &&
        (rc = check_dsn(m, &diags)) == 0 && diags.n > 0) {
        if (diags.file == NULL && (diags.file = pc_strdup(g_cli.file)) == NULL)
            rc = pc_error_set(&err, PC_ENOMEM, "out of memory");
        else
            rc = pc_error_set(&err, PC_EINVAL, "%s is not valid", g_cli.file);
    }
    if (rc != 0) {
        pc_manifest_free(m);
        m = NULL;
        for (size_t i = 0; i < diags.n; i++) {
            char *line = pc_diag_format(&diags, i);
            char *safe = pc_scrub(line, pc_secrets_installed());
            if (safe != NULL)
                fprintf(stderr, "%s\n", safe);
            free(safe);
            free(line);
        }
        if (diags.n == 0)
            fprintf(stderr, "pipectl: error: %s\n", err.msg);
        else if (diags.n > 1)
            fprintf(stderr, "%s: %zu errors; nothing was changed.\n", g_cli.file, diags.n);
        if (g_cli.json) {
            pc_diag one = {.pos = {0, 0}, .message = err.msg};
            pc_diags d1 = {.file = (char *)g_cli.file, .items = &one, .n = 1};
            const pc_diags *d = diags.n == 0 ? &d1 : &diags;
            if (err.code == 0)
                pc_error_set(&err, PC_EINVAL, "%s is not valid", g_cli.file);
            if (validate_shape)
                print_diags_json(d, false);
            else
                print_diags_error_json(d, &err);
        }
        pc_diags_free(&diags);
        return NULL;
    }
    pc_diags_free(&diags);
    return m;
}

pc_manifest *cli_load_manifest(void)
{
    return cli_load_manifest_ex(false);
}

pc_manifest *cli_load_manifest_validate(void)
{
    return cli_load_manifest_ex(true);
}

void cli_print_error(const char *what, const pc_error *err)
{
    /* err->msg was scrubbed when it was set; this catches a secret in what, and one set before
     * the manifest's secrets were installed */
    char *msg = pc_redact(err->msg);
    const char *shown = msg != NULL ? msg : "(message withheld: out of memory redacting it)";
    if (what != NULL)
        fprintf(stderr, "pipectl: %s: %s\n", what, shown);
    else
        fprintf(stderr, "pipectl: error: %s\n", shown);
    if (g_cli.json) {
        json_t *o =
            json_pack("{s:{s:s, s:s}}", "error", "code", pc_code_name(err->code), "message", shown);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    }
    free(msg);
}

void cli_plan_opts(pc_plan_opts *opts, bool allow_delete)
{
    static char exe[PATH_MAX];
    static char manifest[PATH_MAX];
    memset(opts, 0, sizeof *opts);
    opts->allow_delete = allow_delete;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        opts->pipectl_exe = exe;
    } else {
        opts->pipectl_exe = "pipectl";
    }
    if (realpath(g_cli.file, manifest) != NULL)
        opts->manifest_path = manifest;
    else
        opts->manifest_path = g_cli.file;
}

int cli_parse_plain(int argc, char **argv, const char *cmd, void (*help)(void))
{
    static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS, {NULL, 0, NULL, 0}};
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
        return cli_usage_error(cmd, "unknown option");
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return -1;
}

int64_t cli_parse_duration_ms(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v < 0 || s[0] == '-')
        return -1;
    int64_t mult = strcmp(end, "ms") == 0  ? 1
                   : strcmp(end, "s") == 0 ? 1000
                   : strcmp(end, "m") == 0 ? 60 * 1000
                   : strcmp(end, "h") == 0 ? 3600 * 1000
                   : strcmp(end, "d") == 0 ? 86400 * 1000
                                           : 0;
    if (mult == 0 || v > INT64_MAX / mult)
        return -1;
    return (int64_t)v * mult;
}

/* ---------- the backup repository ---------- */

/* Secrets read from a credentials file (cli_repo_open_flags) come first, then the environment. */
static pc_kvlist g_creds;

static const char *cli_getenv(const char *name, void *ctx)
{
    (void)ctx;
    const char *v = pc_kvlist_get(&g_creds, name);
    return v != NULL ? v : getenv(name);
}

void cli_repo_config(const pc_manifest *m, const char *uri, pc_s3_config *s3, pc_repo_config *cfg)
{
    const pc_mf_archiving *ar = m != NULL ? &m->archiving : NULL;
    memset(s3, 0, sizeof *s3);
    memset(cfg, 0, sizeof *cfg);
    cfg->uri = uri != NULL ? uri : ar != NULL ? ar->repository : NULL;
    /* what the manifest does not say comes from AWS's variables (the manifest's rule) */
    s3->getenv_fn = cli_getenv;
    s3->skip_tls_verify = false;
    if (ar != NULL && ar->s3.declared) {
        const pc_mf_archiving_s3 *m3 = &ar->s3;
        s3->endpoint = m3->endpoint;
        s3->region = m3->region;
        s3->uri_style = pc_streq(m3->uri_style, "path")      ? PC_S3_URI_PATH
                        : pc_streq(m3->uri_style, "virtual") ? PC_S3_URI_VIRTUAL
                                                             : PC_S3_URI_AUTO;
        s3->access_key_id = m3->access_key_id;
        s3->secret_access_key = m3->secret_access_key;
        s3->session_token = m3->session_token;
        s3->ca_file = m3->ca_file;
        s3->skip_tls_verify = !m3->verify_tls;
    }
    cfg->s3 = s3;
    if (ar != NULL && ar->encryption.declared)
        cfg->passphrase = ar->encryption.key;
}

/* Opens cfg; a relative directory is taken from the working directory (restore_command and
 * archive_command run elsewhere, so what is stored in them must be absolute). */
static int open_resolved(pc_repo_config cfg, pc_repo **out, pc_error *err)
{
    char *abs = NULL;
    if (cfg.uri != NULL && cfg.uri[0] != '\0' && cfg.uri[0] != '/' &&
        strncmp(cfg.uri, "s3://", 5) != 0) {
        char cwd[PATH_MAX];
        abs = realpath(cfg.uri, NULL); /* a missing one is joined to the cwd */
        if (abs == NULL && getcwd(cwd, sizeof cwd) == NULL)
            return pc_error_set(err, PC_EIO,
                                "backup repository %s: cannot resolve a relative path: %s", cfg.uri,
                                strerror(errno));
        if (abs == NULL && (abs = pc_asprintf("%s/%s", cwd, cfg.uri)) == NULL)
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        cfg.uri = abs;
    }
    int rc = pc_repo_open_config(&cfg, out, err);
    free(abs);
    return rc;
}

int cli_repo_open(const pc_manifest *m, const char *uri, pc_repo **out, pc_error *err)
{
    *out = NULL;
    pc_s3_config s3;
    pc_repo_config cfg;
    cli_repo_config(m, uri, &s3, &cfg);
    return open_resolved(cfg, out, err);
}

int cli_repo_open_flags(const cli_repo_flags *f, pc_repo **out, pc_error *err)
{
    *out = NULL;
    if (f->credentials_file != NULL) {
        pc_kvlist_free(&g_creds);
        int rc = pc_envfile_load(f->credentials_file, &g_creds, err);
        if (rc != 0)
            return rc;
        /* every value is a secret: never printed, even inside a library's message */
        static pc_secrets sec;
        for (size_t i = 0; i < g_creds.n && rc == 0; i++)
            if (!pc_streq(g_creds.items[i].key, "AWS_ACCESS_KEY_ID"))
                rc = pc_secrets_add(&sec, g_creds.items[i].value);
        if (rc == 0)
            pc_secrets_install(pc_secrets_list(&sec));
    }
    bool on_s3 = f->uri != NULL && strncmp(f->uri, "s3://", 5) == 0;
    if (f->any_s3 && !on_s3)
        return pc_error_set(err, PC_EINVAL,
                            "--s3-* options need an s3://bucket/prefix --repository, got %s",
                            f->uri != NULL ? f->uri : "none");
    pc_s3_config s3 = {.endpoint = f->s3_endpoint,
                       .region = f->s3_region,
                       .uri_style = pc_streq(f->s3_uri_style, "path")      ? PC_S3_URI_PATH
                                    : pc_streq(f->s3_uri_style, "virtual") ? PC_S3_URI_VIRTUAL
                                                                           : PC_S3_URI_AUTO,
                       .ca_file = f->s3_ca_file,
                       .skip_tls_verify = f->s3_no_verify_tls,
                       .getenv_fn = cli_getenv};
    if (f->s3_uri_style != NULL && s3.uri_style == PC_S3_URI_AUTO)
        return pc_error_set(err, PC_EINVAL, "--s3-uri-style must be path or virtual, got '%s'",
                            f->s3_uri_style);
    pc_repo_config cfg = {.uri = f->uri, .s3 = &s3};
    if (f->encrypted) {
        cfg.passphrase = cli_getenv("PIPECTL_REPO_KEY", NULL);
        if (cfg.passphrase == NULL || cfg.passphrase[0] == '\0')
            return pc_error_set(err, PC_EINVAL,
                                "the repository %s is encrypted (--encrypted) but no "
                                "PIPECTL_REPO_KEY is in %s%s: add it (pipectl backup "
                                "credentials-file writes it)",
                                f->uri, f->credentials_file != NULL ? f->credentials_file
                                                                   : "the environment",
                                f->credentials_file != NULL ? " or the environment" : "");
    }
    return open_resolved(cfg, out, err);
}

/* ---------- progress of long work ---------- */

void cli_human_bytes(uint64_t n, char out[32])
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof unit / sizeof unit[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, 32, u == 0 ? "%.0f %s" : "%.1f %s", v, unit[u]);
}

void cli_progress_init(cli_progress *p, const char *what)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->quiet = g_cli.json;
    p->tty = !p->quiet && isatty(STDERR_FILENO);
    p->start_ms = pc_mono_ms();
}

static void progress_line(cli_progress *p, int64_t now, bool final)
{
    char d[32], t[32], r[32], eta[32] = "";
    double secs = (double)(now - p->start_ms) / 1000.0;
    double rate = secs > 0.2 ? (double)p->done / secs : 0.0;
    cli_human_bytes(p->done, d);
    cli_human_bytes((uint64_t)rate, r);
    unsigned pct = 0;
    if (p->total > 0) {
        cli_human_bytes(p->total, t);
        pct = p->done >= p->total ? 100 : (unsigned)(p->done * 100 / p->total);
        if (!final && rate > 0 && p->done < p->total)
            snprintf(eta, sizeof eta, ", ETA %.0fs", (double)(p->total - p->done) / rate);
    }
    if (p->tty) {
        int fill = (int)(pct * 24 / 100);
        if (p->total > 0)
            fprintf(stderr, "\r%s [%.*s%*s] %3u%%  %s of ~%s  %s/s%s   ", p->what, fill,
                    "########################", 24 - fill, "", pct, d, t, r, eta);
        else
            fprintf(stderr, "\r%s: %s  %s/s   ", p->what, d, r);
    } else if (p->total > 0) {
        fprintf(stderr, "%s: %s of ~%s (%u%%), %s/s%s%s\n", p->what, d, t, pct, r, eta,
                final ? ", done" : "");
    } else {
        fprintf(stderr, "%s: %s, %s/s%s\n", p->what, d, r, final ? ", done" : "");
    }
}

void cli_progress_fn(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress *p = ctx;
    p->done = done;
    p->total = total;
    if (p->quiet)
        return;
    int64_t now = pc_mono_ms();
    int64_t every = p->tty ? 250 : 10000;
    if (p->shown && now - p->last_ms < every)
        return;
    if (!p->tty && !p->shown && now - p->start_ms < every)
        return; /* short work says nothing elsewhere */
    p->last_ms = now;
    p->shown = true;
    progress_line(p, now, false);
}

void cli_progress_end(cli_progress *p)
{
    if (p->quiet || !p->shown)
        return;
    progress_line(p, pc_mono_ms(), true);
    if (p->tty)
        fputc('\n', stderr);
}
