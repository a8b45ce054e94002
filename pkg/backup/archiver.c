/* archiver.c: what PostgreSQL's archiver says about archiving into the repository
 * (pg_stat_archiver), for `status`. One short libpq connection, one query.
 *
 * "failing" is decided by the server's own clock in the query (timestamps compared at full
 * precision): the newest attempt failed when last_failed_time is later than last_archived_time.
 * A later successful push of the same segment clears it, which is how status turns healthy
 * again once the repository is writable. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "postgres.h"

void pc_archiver_stat_free(pc_archiver_stat *s)
{
    if (s == NULL)
        return;
    free(s->last_archived_wal);
    free(s->last_failed_wal);
    free(s->archive_mode);
    memset(s, 0, sizeof *s);
}

static char *col_str(PGresult *r, int c)
{
    return PQgetisnull(r, 0, c) ? NULL : pc_strdup(PQgetvalue(r, 0, c));
}

static int64_t col_i64(PGresult *r, int c)
{
    return PQgetisnull(r, 0, c) ? 0 : strtoll(PQgetvalue(r, 0, c), NULL, 10);
}

int pc_archiver_stat_read(const char *dsn, int timeout_s, pc_archiver_stat *out, pc_error *err)
{
    int rc = 0;
    PGconn *conn = NULL;
    PGresult *r = NULL;
    char *safe = NULL;
    memset(out, 0, sizeof *out);
    if (dsn == NULL || dsn[0] == '\0')
        return pc_error_set(err, PC_EINVAL,
                            "no postgres.dsn: cannot read pg_stat_archiver; declare postgres.dsn");
    const pc_pg_connect_opts co = {.timeout_s = timeout_s, .application_name = "pipectl status"};
    if ((rc = pc_pg_connect(&conn, dsn, &co, err)) != 0) {
        pc_error_prefix(err, "reading pg_stat_archiver");
        goto done;
    }
    r = PQexec(conn, "SELECT archived_count, last_archived_wal, "
                     "floor(extract(epoch FROM last_archived_time))::bigint, failed_count, "
                     "last_failed_wal, floor(extract(epoch FROM last_failed_time))::bigint, "
                     "last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR "
                     "last_failed_time > last_archived_time), current_setting('archive_mode') "
                     "FROM pg_stat_archiver");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        safe = pc_redact(dsn);
        rc = pc_error_set(err, PC_EREFUSED, "PostgreSQL at %s: reading pg_stat_archiver failed: %s",
                          safe ? safe : "postgres.dsn", PQerrorMessage(conn));
        goto done;
    }
    out->archived_count = col_i64(r, 0);
    out->last_archived_wal = col_str(r, 1);
    out->last_archived_time = col_i64(r, 2);
    out->failed_count = col_i64(r, 3);
    out->last_failed_wal = col_str(r, 4);
    out->last_failed_time = col_i64(r, 5);
    out->failing = strcmp(PQgetvalue(r, 0, 6), "t") == 0;
    out->archive_mode = col_str(r, 7);
    if ((!PQgetisnull(r, 0, 1) && out->last_archived_wal == NULL) ||
        (!PQgetisnull(r, 0, 4) && out->last_failed_wal == NULL) || out->archive_mode == NULL) {
        pc_archiver_stat_free(out);
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    }
done:
    PQclear(r);
    PQfinish(conn);
    free(safe);
    return rc;
}
