/* postgres_int.h: what the files of pkg/postgres share and no other module may use. */
#ifndef PC_POSTGRES_INT_H
#define PC_POSTGRES_INT_H
#if !defined(PC_INSIDE_POSTGRES) && !defined(PC_WHITEBOX_TEST)
#error "postgres_int.h is private to pkg/postgres: include postgres.h"
#endif

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

/* Bounded waits for the session. A DDL statement waits at most this long for a lock held by
 * another session; no statement runs longer than statement_timeout (a type change rewrites the
 * table, so this is generous). */
#define PC_PG_LOCK_TIMEOUT "10s"
#define PC_PG_STATEMENT_TIMEOUT "15min"

struct pc_pg {
    PGconn *conn;
    char *where;          /* "PostgreSQL at host:port", for messages */
    bool inventory_ready; /* pipectl.inventory known to exist on this connection */
    char *dsn;            /* secret-bearing: for the login check as NocoDB's role; never shown */
    int timeout_s;
};

/* ---------- postgres.c: the session's helpers and error translation ---------- */

/* s when set and not empty, else def. */
const char *pc_pg__or_default(const char *s, const char *def);
bool pc_pg__empty(const char *s);
/* Same as PQescapeIdentifier/PQescapeLiteral, but the copy belongs to malloc (free() it). */
char *pc_pg__quote_ident(pc_pg *pg, const char *s);
char *pc_pg__quote_literal(pc_pg *pg, const char *s);
/* Translates a failed statement into err, keeping the server's primary message, detail and hint
 * and naming the statement (`what`, with plain unquoted names) and the server. */
int pc_pg__fail(pc_pg *pg, const PGresult *res, const char *what, pc_error *err);
/* Runs one statement with text parameters. On success *out (when not NULL) owns the result. */
int pc_pg__exec(pc_pg *pg, const char *sql, int nparams, const char *const *params,
                const char *what, PGresult **out, pc_error *err);

/* ---------- observe.c ---------- */

/* {"a","b"} with " and \ escaped: a text[] parameter. New string, NULL on OOM. */
char *pc_pg__text_array(const char *const *names, size_t n);

/* ---------- inventory.c ---------- */

/* Reads pipectl.inventory's rows for the pipeline into o->owned (none when the table is absent). */
int pc_pg__observe_inventory(pc_pg *pg, const char *pipeline, pc_observed *o, pc_error *err);

/* ---------- ddl.c ---------- */

/* Runs a statement built by the caller (no parameters), named `what` in messages. A NULL sql or
 * what (an allocation that failed while building them) is reported as out of memory. */
int pc_pg__exec_built(pc_pg *pg, const char *sql, const char *what, pc_error *err);

/* ---------- role.c ---------- */

/* Observes nocodb.role into o->role (existence, login, password, privileges). */
int pc_pg__observe_role(pc_pg *pg, const pc_mf_nocodb *nc, pc_observed *o, pc_error *err);

#endif
