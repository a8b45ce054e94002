/* postgres.h: the Postgres adapter (libpq). Observes schemas, tables, columns, archiving
 * settings and pipectl's inventory; performs DDL and ALTER SYSTEM actions; holds the apply lock.
 * Decides nothing: what to change comes from pkg/plan. */
#ifndef PC_POSTGRES_H
#define PC_POSTGRES_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core.h"
#include "manifest.h"
#include "plan.h"

typedef struct pc_pg pc_pg;

/* postgres.dsn read by libpq's own parser (PQconninfoParse), both forms, without connecting.
 * 0 when libpq reads it as written; PC_EINVAL with *problem (a new message holding no secret)
 * when it cannot parse it, or would misread it: a URI whose password holds a raw '/', '@' ... so
 * that libpq takes part of it as the host, port or database (and would show it in its errors),
 * or a bad percent-escape. PC_ENOMEM. pc_pg_open checks this first; cmd/ at manifest load. */
int pc_pg_dsn_check(const char *dsn, char **problem);
/* Adds to out every secret of dsn: the password (and sslpassword, any option libpq marks as
 * secret) as libpq parses it, and as written, generously (see pc_manifest_secrets). */
int pc_pg_dsn_secrets(const char *dsn, pc_secrets *out);
/* The DSN as libpq reads it, as key=value pairs, secret options as PC_REDACTED; for messages.
 * New string, NULL on OOM. */
char *pc_pg_dsn_redacted(const char *dsn);

/* ---------- connecting: the one way every module opens a libpq connection ----------
 *
 * Precedence, the same for every connection pipectl makes: what the user wrote in postgres.dsn
 * wins for every parameter it sets (its own connect_timeout, application_name, keepalives_*,
 * tcp_user_timeout, sslmode...); pipectl's values below only fill what the DSN leaves unset,
 * and libpq's PG* environment variables and defaults fill the rest (PGAPPNAME beats pipectl's
 * application_name too: pipectl sets fallback_application_name). Mechanism: pipectl's values
 * stand before the expanded DSN in PQconnectStartParams' arrays (libpq: a later entry wins).
 * Three things are pipectl's, after the DSN: replication (a base backup needs it), and the
 * user and password of a login as another role (the NocoDB role check).
 *
 * pipectl's values: connect_timeout = --timeout (10 s when unset), keepalives=1,
 * keepalives_idle=10, keepalives_interval=5, keepalives_count=3 and tcp_user_timeout=30000
 * (a peer that vanished is noticed within about 30 s, idle or not), application_name naming
 * the command and worker ("pipectl apply", "pipectl run/sink users", "pipectl backup create").
 *
 * The attempt is asynchronous (PQconnectStartParams + PQconnectPoll, woken at least every
 * 100 ms): connect_timeout, whichever side set it, is enforced here (libpq applies it only in
 * its blocking calls) with libpq's reading (at least 2 s; 0 waits without limit), its timer
 * restarted whenever libpq moves on to the next host of a multi-host DSN; one difference: a
 * host that times out ends the attempt (libpq's blocking connect would try the next host
 * then; a host that refuses or fails is passed over as usual). A set *stop abandons the
 * attempt within a tick (as does o->deadline_ms), so a worker told to stop never sits in a
 * connect. Host name resolution (getaddrinfo) is the one step that cannot be interrupted. */
struct pg_conn; /* libpq's PGconn, without libpq's header for modules that do not need it */

typedef struct pc_pg_connect_opts {
    int timeout_s;                /* connect_timeout unless the DSN sets one; <= 0: 10 s */
    const char *application_name; /* fallback_application_name; NULL: "pipectl" */
    bool replication;             /* a physical replication connection (replication=true) */
    const char *user;             /* NULL, or log in as this role instead of the DSN's user */
    const char *password;         /* NULL, or this password instead of the DSN's (not empty) */
    const atomic_int *stop;       /* NULL, or abandon the attempt once *stop != 0 */
    int64_t deadline_ms;          /* 0, or abandon it at this pc_mono_ms() time, whatever
                                   * connect_timeout says (a worker's drain deadline) */
} pc_pg_connect_opts;

/* Opens a connection to dsn (postgres.dsn) with o (NULL: defaults). 0 and *out (the caller's:
 * PQfinish) in CONNECTION_OK, NOTICEs silenced. Errors, translated here once, naming the
 * server as host:port dbname=... user=... (never the password; libpq's text is redacted and
 * scrubbed of the DSN's secrets): PC_EINVAL for a DSN libpq cannot parse or would misread
 * (pc_pg_dsn_check) or a connect_timeout that is not a number; PC_EREFUSED when the server
 * answered no (authentication, pg_hba.conf, missing database or role); PC_EUNAVAIL when it
 * cannot be reached, did not answer within connect_timeout, or is starting / shutting down /
 * full (retryable); PC_EINTR when *o->stop or o->deadline_ms ended the attempt; PC_ENOMEM. */
int pc_pg_connect(struct pg_conn **out, const char *dsn, const pc_pg_connect_opts *o,
                  pc_error *err);

/* The adapter's session, over pc_pg_connect with o (application_name "pipectl" when NULL or
 * unset), then lock_timeout and statement_timeout set for the session. pc_pg_open is the same
 * with only the timeout given. Errors as pc_pg_connect's. */
int pc_pg_open_with(pc_pg **out, const char *dsn, const pc_pg_connect_opts *o, pc_error *err);
int pc_pg_open(pc_pg **out, const char *dsn, int timeout_s, pc_error *err);
void pc_pg_free(pc_pg *pg);

/* Observes: which declared schemas exist, every table (with columns: format_type, nullability,
 * primary key) in the declared schemas, the settings archive_mode, archive_command, wal_level,
 * archive_timeout (with unit, context and the pending value from pg_file_settings when a restart
 * is needed), and the inventory rows for pipeline m->name. Sets o->pg_observed. */
int pc_pg_observe(pc_pg *pg, const pc_manifest *m, pc_observed *o, pc_error *err);

/* Session advisory lock keyed on the pipeline name; PC_ECONFLICT when another apply holds it. */
int pc_pg_lock(pc_pg *pg, const char *pipeline, pc_error *err);
int pc_pg_unlock(pc_pg *pg, const char *pipeline, pc_error *err);

/* Performs one action of kind SCHEMA_CREATE, TABLE_CREATE, COLUMN_*, SETTING. Identifiers are
 * quoted. SETTING runs ALTER SYSTEM; call pc_pg_reload afterwards. */
int pc_pg_apply(pc_pg *pg, const pc_action *a, pc_error *err);
int pc_pg_reload(pc_pg *pg, pc_error *err);

/* Performs a ROLE_CREATE, ROLE_ALTER or ROLE_GRANT action for NocoDB's role. password is
 * nocodb.role_password (create/alter): hashed by libpq before it is sent, never in a message.
 * CREATE ROLE ... LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION; a schema grant gives
 * USAGE, the action's privileges on all tables and as default privileges of the connected user,
 * and revokes the other managed privileges (SELECT, INSERT, UPDATE, DELETE), in one transaction.
 * pc_pg_observe fills o->pgconn (where the DSN connects) and, when the manifest declares
 * nocodb.role, o->role, including a real login as the role with its declared password. */
int pc_pg_apply_role(pc_pg *pg, const pc_action *a, const char *password, pc_error *err);

/* Inventory (the ownership mark): table pipectl.inventory(pipeline, kind, name, managed_keys
 * jsonb, updated_at), created on first use. managed_keys may be NULL. */
int pc_pg_inventory_record(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           const pc_kvlist *managed_keys, pc_error *err);
int pc_pg_inventory_forget(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           pc_error *err);
/* The same for many names of one kind in one statement each (Kafka ACLs: thousands of rows):
 * record adds missing rows (managed_keys []) and touches existing ones; forget removes them. */
int pc_pg_inventory_record_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err);
int pc_pg_inventory_forget_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err);

/* Next offsets the sink `sink` stored for topic in pipectl.sink_offsets (written by pkg/sink in
 * the same transaction as its rows): *next (owned by the caller, free()) has npartitions
 * entries indexed by partition, -1 where no row exists (or the table does not exist yet). */
int pc_pg_sink_offsets(pc_pg *pg, const char *sink, const char *topic, int64_t **next,
                       int npartitions, pc_error *err);

#endif
