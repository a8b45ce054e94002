/* nocodb.h: the NocoDB adapter (libcurl + jansson). Signs in, finds or creates the base and one
 * Postgres source per exposed schema, updates or deletes a source, runs meta sync, and observes
 * what NocoDB holds. Decides nothing: what to change comes from pkg/plan.
 *
 * Every request has a timeout. Errors name the NocoDB URL, the HTTP method and path, the HTTP
 * status, NocoDB's own message ("msg"/"message" in its JSON) and the object (base title, source
 * alias); never a token or a password. A 401 on a request made with a JWT from email/password
 * sign-in signs in again once and retries the request. */
#ifndef PC_NOCODB_H
#define PC_NOCODB_H

#include "core.h"

typedef struct pc_nocodb pc_nocodb;

/* With a token, every request uses it, except meta sync: NocoDB (0.301) refuses API tokens there
 * ("ERR_API_TOKEN_NOT_ALLOWED"), so pc_nocodb_meta_sync signs in with email/password when they
 * are given too, and fails with PC_EREFUSED naming nocodb.email/nocodb.password when not. */
typedef struct pc_nocodb_auth {
    const char *url;      /* "http://127.0.0.1:8080" (a trailing '/' is ignored) */
    const char *token;    /* API token (header xc-token), or NULL */
    const char *email;    /* used when token is NULL: POST /api/v1/auth/user/signin -> xc-auth JWT */
    const char *password;
    int timeout_s;        /* per request (connect + transfer); 0 = 30 */
} pc_nocodb_auth;

/* Checks GET /api/v1/health and signs in (or checks the token with one authenticated request).
 * PC_EUNAVAIL when NocoDB cannot be reached or answers 5xx; PC_EREFUSED on bad credentials (the
 * message says which credential kind was used and which environment variable to check). */
int pc_nocodb_open(pc_nocodb **out, const pc_nocodb_auth *auth, pc_error *err);
void pc_nocodb_free(pc_nocodb *nc);

/* The Postgres connection a source uses. password is a secret: sent, never logged or returned. */
typedef struct pc_nocodb_conn {
    const char *host;
    int port;
    const char *database;
    const char *user;
    const char *password;
    const char *schema;   /* searchPath[0]: one schema per source */
} pc_nocodb_conn;

/* A source as observed. Connection fields NocoDB does not return are NULL / 0.
 * What NocoDB 0.301 returns: GET .../sources lists no connection settings at all; pkg/nocodb
 * reads them from GET .../sources/{id} (its own config: database, searchPath) and from its
 * connection object, GET /api/v2/meta/integrations/{id}?includeConfig=true (host, port, user,
 * database, searchPath), so host, port, database, user and schema are all filled for a
 * Postgres source. The password is never returned (NocoDB answers null): a changed password
 * cannot be detected, only set again with pc_nocodb_update_source. is_meta is also true for
 * NocoDB's default source, which 0.301 marks is_local rather than is_meta. */
typedef struct pc_nocodb_source {
    char *id;
    char *alias;
    char *type;        /* "pg" */
    char *host;
    int port;
    char *database;
    char *user;
    char *schema;
    bool enabled;
    bool is_meta;      /* NocoDB's own default source of the base (not a pipectl source) */
} pc_nocodb_source;

typedef struct pc_nocodb_table {
    char *id;
    char *name;        /* table_name in Postgres */
    char *title;
    char **columns;    /* column_name of every column, when fetched (else NULL / 0) */
    size_t ncolumns;
} pc_nocodb_table;

typedef struct pc_nocodb_base {
    char *id;
    char *title;
    pc_nocodb_source *sources;
    size_t nsources;
} pc_nocodb_base;

void pc_nocodb_base_free(pc_nocodb_base *b); /* frees b and its members; NULL-safe */
void pc_nocodb_tables_free(pc_nocodb_table *t, size_t n);

/* Finds the base with this exact title (listing every page). *out = NULL when there is none;
 * PC_ECONFLICT when several bases carry the title (the message lists their ids). The sources
 * are listed too. */
int pc_nocodb_find_base(pc_nocodb *nc, const char *title, pc_nocodb_base **out, pc_error *err);
/* Creates a base; *id_out (owned by the caller) is the new base's id. */
int pc_nocodb_create_base(pc_nocodb *nc, const char *title, char **id_out, pc_error *err);

/* Adds a Postgres source and waits (at most job_timeout_s) for NocoDB's source-create job.
 * A failed job is reported with NocoDB's reason (e.g. it cannot reach Postgres) and the object;
 * *id_out is the new source's id. NocoDB keeps the connection in a separate "integration" object
 * (titled like the alias): it is made first, and removed again when the source cannot be made
 * or is deleted with pc_nocodb_delete_source and no other source uses it. */
int pc_nocodb_create_source(pc_nocodb *nc, const char *base_id, const char *alias,
                            const pc_nocodb_conn *conn, int job_timeout_s, char **id_out,
                            pc_error *err);
/* Replaces a source's connection settings (its connection object and its alias, database and
 * schema). NocoDB tests the new settings first: when it cannot connect with them, nothing is
 * changed and the error carries NocoDB's reason. A changed database or schema needs a meta sync
 * afterwards for the tables to follow. */
int pc_nocodb_update_source(pc_nocodb *nc, const char *base_id, const char *source_id,
                            const char *alias, const pc_nocodb_conn *conn, pc_error *err);
int pc_nocodb_delete_source(pc_nocodb *nc, const char *base_id, const char *source_id,
                            pc_error *err);

/* Meta sync of one source (new tables and columns appear), waited for at most job_timeout_s.
 * Needs email/password sign-in (see pc_nocodb_auth). */
int pc_nocodb_meta_sync(pc_nocodb *nc, const char *base_id, const char *source_id,
                        int job_timeout_s, pc_error *err);

/* Tables NocoDB sees in a source; with_columns also fetches each table's columns. */
int pc_nocodb_list_tables(pc_nocodb *nc, const char *base_id, const char *source_id,
                          bool with_columns, pc_nocodb_table **out, size_t *n, pc_error *err);

/* Number of rows NocoDB's data API returns for a table (pageInfo.totalRows), and the first row
 * as JSON text in *first_row (owned by the caller; NULL when empty or not wanted). */
int pc_nocodb_count_rows(pc_nocodb *nc, const char *base_id, const char *table_id,
                         long long *count, char **first_row, pc_error *err);

#endif
