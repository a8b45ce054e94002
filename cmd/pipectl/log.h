/* log.h: the structured logger `pipectl run` hands to its workers (a pc_log_fn). At a terminal
 * it writes "TIMESTAMP LEVEL [worker] message key=value ..."; otherwise (systemd journal, files,
 * pipes) one JSON object per line: {"ts","level","worker","msg",<fields>}. PIPECTL_LOG_FORMAT=
 * text|json overrides the choice. Every message and field value passes through pc_redact
 * (credentials by position, and every secret the manifest holds, in any of its forms), and
 * fields with secret-looking keys are replaced by PC_REDACTED, so a careless caller (or a
 * library's text) still never logs a password. Lines are written whole under a mutex (workers log
 * from threads). */
#ifndef PC_CLI_LOG_H
#define PC_CLI_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "worker.h"

typedef struct cli_logger {
    FILE *f;
    bool json;
    bool color;
    pc_log_level min; /* lines below this level are dropped */
    pthread_mutex_t lock;
} cli_logger;

/* verbose > 0 lowers the threshold to DEBUG. */
void cli_logger_init(cli_logger *lg, FILE *f, int verbose);
void cli_logger_destroy(cli_logger *lg);

/* The pc_log_fn: ctx is a cli_logger. worker and fields may be NULL. */
void cli_log(void *ctx, pc_log_level level, const char *worker, const char *msg,
             const char *const *fields);
/* printf-style convenience for cmd/ code. */
void cli_logf(cli_logger *lg, pc_log_level level, const char *worker, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
