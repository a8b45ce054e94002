/* connect.c: the one way pipectl opens a libpq connection (pc_pg_connect), and the one
 * translation of a failed connect into a message for the user.
 *
 * Why asynchronous: PQconnectdb blocks until libpq gives up, and without connect_timeout it
 * never does against a server that accepts the TCP connection and then says nothing (a hung
 * postmaster, a firewall that half-answers, a proxy): the sink thread stalled there and SIGTERM
 * with it. Polling the socket ourselves, a tick at a time, lets the stop flag end the wait; the
 * timeout is ours to enforce as well, since libpq applies connect_timeout only in its blocking
 * calls. Where the parameters come from (the precedence rule) is documented in postgres.h and
 * verified by tests/integration/pg_adapter_test.c against libpq 15. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_int.h"

#define PC_PG_DEFAULT_CONNECT_TIMEOUT 10
#define PC_PG_CONNECT_TICK_MS 100

/* TCP keepalive probes after 10 s of silence, every 5 s, 3 unanswered ones drop the
 * connection: a vanished peer is noticed about 25 s after the last traffic. tcp_user_timeout
 * covers the other case, data sent and never acknowledged. */
#define PC_PG_KEEPALIVES_IDLE "10"
#define PC_PG_KEEPALIVES_INTERVAL "5"
#define PC_PG_KEEPALIVES_COUNT "3"
#define PC_PG_TCP_USER_TIMEOUT "30000"

static void ignore_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

static const char *or_default(const char *s, const char *def)
{
    return s != NULL && s[0] != '\0' ? s : def;
}

char *pc_pg_clean_text(const char *s)
{
    char *r = pc_redact(s != NULL ? s : "");
    char *out = r != NULL ? malloc(2 * strlen(r) + 1) : NULL;
    if (out == NULL) {
        free(r);
        return NULL;
    }
    size_t j = 0;
    bool space = false;
    for (size_t i = 0; r[i] != '\0'; i++) {
        char c = r[i];
        if (c == '\n' && j > 0 && strchr(".:;?!", out[j - 1]) == NULL && r[i + 1] != '\0')
            out[j++] = '.';
        if (c == '\n' || c == '\t' || c == '\r')
            c = ' ';
        if (c == ' ') {
            if (space || j == 0)
                continue;
            space = true;
        } else {
            space = false;
        }
        out[j++] = c;
    }
    while (j > 0 && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
    free(r);
    return out;
}

/* A server that answered and said no (authentication, missing database or role, permissions);
 * anything else (refused TCP connection, timeout, server starting or full) is worth retrying. */
static bool server_refused(PGconn *c, const char *text)
{
    static const char *const transient[] = {"too many",          "starting up",
                                            "shutting down",     "recovery mode",
                                            "not yet accepting", "connection slots"};
    if (PQconnectionNeedsPassword(c))
        return true;
    if (strstr(text, "authentication") != NULL || strstr(text, "no password supplied") != NULL)
        return true;
    if (strstr(text, "FATAL:") == NULL)
        return false;
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        if (strstr(text, transient[i]) != NULL)
            return false;
    return true;
}

/* The connect_timeout in effect (the DSN's or ours, libpq resolved which), in ms; 0 = none.
 * dflt_ms (ours) when libpq cannot say.
 * libpq's rule: at most an int, 1 counts as 2, 0 or less waits forever. -1 when not a number. */
static int64_t effective_timeout_ms(PGconn *c, int64_t dflt_ms, char *bad, size_t badcap)
{
    int64_t ms = 0;
    PQconninfoOption *opts = PQconninfo(c);
    if (opts == NULL)
        return dflt_ms; /* out of memory: at least our own bound */
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") != 0 || o->val == NULL || o->val[0] == '\0')
            continue;
        char *end = NULL;
        errno = 0;
        long v = strtol(o->val, &end, 10);
        while (end != NULL && (*end == ' ' || *end == '\t'))
            end++;
        if (errno != 0 || end == o->val || *end != '\0' || v > 2147483647L) {
            snprintf(bad, badcap, "%s", o->val);
            ms = -1;
        } else {
            ms = v <= 0 ? 0 : (v == 1 ? 2 : v) * (int64_t)1000;
        }
    }
    PQconninfoFree(opts);
    return ms;
}

int pc_pg_connect_raw(PGconn **out, const char *dsn, const pc_pg_connect_opts *o, int *why)
{
    static const pc_pg_connect_opts none = {0};
    const char *keys[16], *vals[16];
    size_t n = 0;
    char tbuf[16];
    *out = NULL;
    *why = 0;
    if (o == NULL)
        o = &none;
    int timeout_s = o->timeout_s > 0 ? o->timeout_s : PC_PG_DEFAULT_CONNECT_TIMEOUT;
    snprintf(tbuf, sizeof tbuf, "%d", timeout_s);
    /* pipectl's values first: the expanded DSN that follows overrides any it sets */
    keys[n] = "connect_timeout", vals[n++] = tbuf;
    keys[n] = "keepalives", vals[n++] = "1";
    keys[n] = "keepalives_idle", vals[n++] = PC_PG_KEEPALIVES_IDLE;
    keys[n] = "keepalives_interval", vals[n++] = PC_PG_KEEPALIVES_INTERVAL;
    keys[n] = "keepalives_count", vals[n++] = PC_PG_KEEPALIVES_COUNT;
    keys[n] = "tcp_user_timeout", vals[n++] = PC_PG_TCP_USER_TIMEOUT;
    keys[n] = "fallback_application_name", vals[n++] = or_default(o->application_name, "pipectl");
    keys[n] = "dbname", vals[n++] = dsn;
    /* then what pipectl must decide itself (libpq ignores NULL or empty values) */
    if (o->user != NULL)
        keys[n] = "user", vals[n++] = o->user;
    if (o->password != NULL)
        keys[n] = "password", vals[n++] = o->password;
    if (o->replication)
        keys[n] = "replication", vals[n++] = "true";
    keys[n] = NULL, vals[n] = NULL;

    PGconn *c = PQconnectStartParams(keys, vals, 1);
    if (c == NULL)
        return PC_ENOMEM;
    *out = c;
    if (PQstatus(c) == CONNECTION_BAD)
        return 0;
    char bad[64];
    int64_t limit = effective_timeout_ms(c, timeout_s * (int64_t)1000, bad, sizeof bad);
    if (limit < 0) {
        *why = PC_EINVAL;
        return 0;
    }
    /* The timer restarts when libpq moves to the next host, as its blocking connect does. */
    const char *host = PQhost(c), *port = PQport(c);
    int64_t start = pc_mono_ms();
    PostgresPollingStatusType st = PGRES_POLLING_WRITING; /* the documented first state */
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int64_t now = pc_mono_ms();
        if ((o->stop != NULL && atomic_load(o->stop)) ||
            (o->deadline_ms > 0 && now >= o->deadline_ms)) {
            *why = PC_EINTR;
            return 0;
        }
        if (PQhost(c) != host || PQport(c) != port) {
            host = PQhost(c), port = PQport(c);
            start = now;
        }
        int64_t left = limit > 0 ? start + limit - now : PC_PG_CONNECT_TICK_MS;
        if (left <= 0) {
            *why = PC_EUNAVAIL;
            return 0;
        }
        if (o->deadline_ms > 0 && o->deadline_ms - now < left)
            left = o->deadline_ms - now;
        struct pollfd pfd = {.fd = PQsocket(c),
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int ready = 1;
        if (pfd.fd >= 0)
            ready =
                poll(&pfd, 1, (int)(left < PC_PG_CONNECT_TICK_MS ? left : PC_PG_CONNECT_TICK_MS));
        if (ready < 0 && errno != EINTR)
            ready = 1; /* let libpq see and report the socket's trouble */
        if (ready > 0)
            st = PQconnectPoll(c);
    }
    return 0;
}

/* The one translation of a failed attempt. why: 0 (libpq's verdict), PC_EUNAVAIL (our
 * timer), PC_EINTR (stopped), PC_EINVAL (connect_timeout not a number). */
static int connect_failure(PGconn *c, const char *dsn, int why, double waited_s, pc_error *err)
{
    pc_secrets local = {0};
    char *scrubbed = NULL, *text = NULL;
    int rc;
    if (pc_pg_dsn_secrets(dsn, &local) != 0 ||
        (scrubbed = pc_scrub(PQerrorMessage(c), pc_secrets_list(&local))) == NULL ||
        (text = pc_pg_clean_text(scrubbed)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *host = or_default(PQhost(c), "localhost");
    const char *port = or_default(PQport(c), "5432");
    const char *db = or_default(PQdb(c), "?");
    const char *user = or_default(PQuser(c), "?");
    if (why != 0) {
        /* libpq 15 opens each host's error with "connection to server at ... failed:"; when we
         * end the wait, the last one has nothing after it: drop it, keep earlier hosts' text */
        size_t len = strlen(text);
        char *last = NULL;
        for (char *p = strstr(text, "connection to server"); p != NULL;
             p = strstr(p + 1, "connection to server"))
            last = p;
        if (len > 0 && text[len - 1] == ':' && last != NULL) {
            *last = '\0';
            for (len = strlen(text); len > 0 && strchr(" .", text[len - 1]) != NULL; len--)
                text[len - 1] = '\0';
        }
    }
    switch (why) {
    case PC_EINVAL: {
        char bad[64] = "";
        (void)effective_timeout_ms(c, 0, bad, sizeof bad);
        rc = pc_error_set(err, PC_EINVAL,
                          "invalid connect_timeout '%s' in postgres.dsn for PostgreSQL at %s:%s: "
                          "write a whole number of seconds",
                          bad, host, port);
        break;
    }
    case PC_EINTR:
        rc = pc_error_set(err, PC_EINTR,
                          "gave up connecting to PostgreSQL at %s:%s dbname=%s user=%s: stopping, "
                          "and the server had not completed the connection (%.1f s into the "
                          "attempt)%s%s",
                          host, port, db, user, waited_s, text[0] ? "; libpq: " : "", text);
        break;
    case PC_EUNAVAIL:
        rc = pc_error_set(err, PC_EUNAVAIL,
                          "cannot reach PostgreSQL at %s:%s dbname=%s user=%s: no answer "
                          "within connect_timeout (waited %.0f s)%s%s; check that the server "
                          "is running and reachable at the host and port in postgres.dsn, then "
                          "retry",
                          host, port, db, user, waited_s, text[0] ? "; libpq: " : "", text);
        break;
    default:
        if (server_refused(c, text))
            rc = pc_error_set(err, PC_EREFUSED,
                              "PostgreSQL at %s:%s dbname=%s user=%s refused the connection: %s; "
                              "check the user, password and dbname in postgres.dsn, that the "
                              "database exists, and the server's pg_hba.conf and grants",
                              host, port, db, user, text);
        else
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "cannot reach PostgreSQL at %s:%s dbname=%s user=%s: %s; check that "
                              "the server is running and reachable at the host and port in "
                              "postgres.dsn, then retry",
                              host, port, db, user, text);
        break;
    }
done:
    free(text);
    free(scrubbed);
    pc_secrets_dispose(&local);
    return rc;
}

int pc_pg_connect(PGconn **out, const char *dsn, const pc_pg_connect_opts *o, pc_error *err)
{
    int rc = 0, why = 0;
    char *problem = NULL;
    PGconn *c = NULL;
    *out = NULL;
    if (dsn == NULL || *dsn == '\0')
        return pc_error_set(err, PC_EINVAL,
                            "no PostgreSQL connection string; set postgres.dsn in the manifest");
    /* A malformed DSN, or one libpq would misread, is refused before libpq tries to connect
     * with it (and quotes what it misread in its errors). */
    if ((rc = pc_pg_dsn_check(dsn, &problem)) != 0) {
        rc = pc_error_set(err, rc,
                          "invalid PostgreSQL connection string in postgres.dsn: %s; use "
                          "key=value pairs (host=... port=... dbname=... user=...) or a "
                          "postgresql:// URI",
                          problem != NULL ? problem : "out of memory");
        goto done;
    }
    int64_t t0 = pc_mono_ms();
    if (pc_pg_connect_raw(&c, dsn, o, &why) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory connecting to PostgreSQL");
        goto done;
    }
    if (why != 0 || PQstatus(c) != CONNECTION_OK) {
        rc = connect_failure(c, dsn, why, (double)(pc_mono_ms() - t0) / 1000.0, err);
        goto done;
    }
    PQsetNoticeReceiver(c, ignore_notice, NULL);
    *out = c;
    c = NULL;
done:
    if (c != NULL)
        PQfinish(c);
    free(problem);
    return rc;
}
