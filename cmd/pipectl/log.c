/* log.c: text-at-a-terminal / JSON-lines-otherwise logger for `pipectl run` (see log.h). */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cli_logger_init(cli_logger *lg, FILE *f, int verbose)
{
    memset(lg, 0, sizeof *lg);
    lg->f = f;
    const char *fmt = getenv("PIPECTL_LOG_FORMAT");
    if (pc_streq(fmt, "json"))
        lg->json = true;
    else if (pc_streq(fmt, "text"))
        lg->json = false;
    else
        lg->json = !isatty(fileno(f));
    lg->color = !lg->json && cli_color(f);
    lg->min = verbose > 0 ? PC_LOG_DEBUG : PC_LOG_INFO;
    pthread_mutex_init(&lg->lock, NULL);
}

void cli_logger_destroy(cli_logger *lg)
{
    pthread_mutex_destroy(&lg->lock);
}

static const char *level_name(pc_log_level l)
{
    switch (l) {
    case PC_LOG_DEBUG:
        return "debug";
    case PC_LOG_INFO:
        return "info";
    case PC_LOG_WARN:
        return "warn";
    case PC_LOG_ERROR:
        return "error";
    }
    return "info";
}

static const char *level_color(pc_log_level l)
{
    switch (l) {
    case PC_LOG_DEBUG:
        return "\033[2m";
    case PC_LOG_INFO:
        return "\033[32m";
    case PC_LOG_WARN:
        return "\033[33m";
    case PC_LOG_ERROR:
        return "\033[31m";
    }
    return "";
}

/* RFC 3339 UTC with milliseconds. */
static void timestamp(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

/* A text value quoted when it holds spaces, quotes or '=' so key=value stays parseable. */
static void put_text_value(pc_buf *b, const char *v)
{
    bool plain = v[0] != '\0' && strpbrk(v, " \"=\\") == NULL;
    for (const char *p = v; plain && *p; p++)
        plain = (unsigned char)*p >= 0x20 && *p != 0x7f;
    if (plain) {
        pc_buf_puts(b, v);
        return;
    }
    pc_buf_puts(b, "\"");
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            pc_buf_append(b, "\\", 1);
        pc_buf_escape(b, p, 1, 0); /* control characters as \n, \t, \xNN */
    }
    pc_buf_puts(b, "\"");
}

void cli_log(void *ctx, pc_log_level level, const char *worker, const char *msg,
             const char *const *fields)
{
    cli_logger *lg = ctx;
    if (lg == NULL || level < lg->min)
        return;
    char ts[48];
    timestamp(ts, sizeof ts);
    char *clean = pc_redact(msg != NULL ? msg : "");
    pc_buf line = {0};
    json_t *o = NULL;
    if (lg->json) {
        o = json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_name(level)));
        if (worker != NULL)
            json_object_set_new(o, "worker", json_string(worker));
        json_object_set_new(o, "msg", json_string(clean != NULL ? clean : ""));
    } else {
        if (lg->color)
            pc_buf_printf(&line, "\033[2m%s\033[0m %s%-5s\033[0m", ts, level_color(level),
                          level_name(level));
        else
            pc_buf_printf(&line, "%s %-5s", ts, level_name(level));
        if (worker != NULL)
            pc_buf_printf(&line, " [%s]", worker);
        /* one event, one line: a message holding control characters cannot start another */
        pc_buf_puts(&line, " ");
        pc_buf_escape(&line, clean != NULL ? clean : "", clean != NULL ? strlen(clean) : 0, 0);
    }
    for (size_t i = 0; fields != NULL && fields[i] != NULL && fields[i + 1] != NULL; i += 2) {
        const char *key = fields[i];
        char *val = pc_is_secret_key(key) ? pc_strdup(PC_REDACTED) : pc_redact(fields[i + 1]);
        if (val == NULL)
            continue;
        if (o != NULL) {
            /* reserved keys keep their meaning; a colliding field gets a prefix */
            bool reserved = pc_streq(key, "ts") || pc_streq(key, "level") ||
                            pc_streq(key, "worker") || pc_streq(key, "msg");
            char *k2 = reserved ? pc_asprintf("field_%s", key) : NULL;
            json_object_set_new(o, k2 != NULL ? k2 : key, json_string(val));
            free(k2);
        } else {
            pc_buf_printf(&line, " %s=", key);
            put_text_value(&line, val);
        }
        free(val);
    }
    char *text = NULL;
    if (o != NULL)
        text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    pthread_mutex_lock(&lg->lock);
    if (o != NULL) {
        if (text != NULL)
            fprintf(lg->f, "%s\n", text);
    } else if (line.data != NULL) {
        fprintf(lg->f, "%s\n", line.data);
    }
    fflush(lg->f);
    pthread_mutex_unlock(&lg->lock);
    free(text);
    json_decref(o);
    pc_buf_free(&line);
    free(clean);
}

void cli_logf(cli_logger *lg, pc_log_level level, const char *worker, const char *fmt, ...)
{
    if (lg == NULL || level < lg->min)
        return;
    pc_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    pc_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    cli_log(lg, level, worker, b.data != NULL ? b.data : "", NULL);
    pc_buf_free(&b);
}
