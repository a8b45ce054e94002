/* postgres_int.h: what the files of pkg/postgres share and no other module may use. */
#ifndef PC_POSTGRES_INT_H
#define PC_POSTGRES_INT_H

#include <libpq-fe.h>

#include "postgres.h"

/* libpq text as one line: line breaks end sentences, runs of whitespace become one space,
 * anything that looks like password=... is redacted. New string, or NULL on OOM. */
char *pc_pg_clean_text(const char *s);

/* pc_pg_connect without the translation: the same parameters, precedence and wait, but the
 * connection comes back in *out whatever its state (CONNECTION_OK or CONNECTION_BAD, for a
 * caller that needs libpq's own verdict, e.g. PQconnectionUsedPassword); NULL only on OOM.
 * *why is set when the wait, not libpq, ended the attempt: PC_EINTR (o->stop) or PC_EUNAVAIL
 * (connect_timeout), else 0. The DSN is not checked here (pc_pg_dsn_check). */
int pc_pg_connect_raw(PGconn **out, const char *dsn, const pc_pg_connect_opts *o, int *why);

#endif
