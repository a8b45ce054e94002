/* nocodb.c: the NocoDB calls pipectl needs (checked against NocoDB 0.301.3):
 *
 *   bases      GET/POST /api/v2/meta/bases
 *   sources    GET/POST /api/v2/meta/bases/{base}/sources, GET/PATCH/DELETE .../sources/{id}
 *   connection GET/POST/PATCH/DELETE /api/v2/meta/integrations[/{id}], POST
 *              /api/v2/meta/connection/test
 *   jobs       POST /api/v2/jobs/{base} (list), POST /jobs/listen (a job's messages)
 *   meta sync  POST /api/v2/meta/bases/{base}/meta-diff/{source} (refuses API tokens)
 *   tables     GET /api/v2/meta/bases/{base}/{source}/tables, GET /api/v2/meta/tables/{id}
 *   rows       GET /api/v2/tables/{table}/records?limit=1
 *
 * Why sources are made in two steps: since 0.258 a source's connection lives in an
 * "integration". When a source is added with the whole connection, NocoDB moves it to a new
 * integration and keeps only {"client"} on the source, and the merged config then loses
 * searchPath: NocoDB imports schema "public" instead of the declared one. So pipectl creates the
 * integration (host, port, user, password, database, schema) and then the source with
 * fk_integration_id and its own {database, searchPath}, which NocoDB merges over the
 * integration's. Adding and deleting a source and meta sync run as NocoDB jobs: we poll the job
 * list and, on failure, read the job's messages for NocoDB's reason. */
#include "nocodb_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NC_TITLE_MAX 50

static int oom(pc_error *err)
{
    return pc_error_set(err, PC_ENOMEM, "out of memory");
}

static bool safe_id(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static int check_id(const char *kind, const char *id, pc_error *err)
{
    if (!safe_id(id))
        return pc_error_set(err, PC_EINVAL, "NocoDB %s id '%s' is not a NocoDB id", kind,
                            id ? id : "(null)");
    return 0;
}

static char *jstrdup(json_t *o, const char *key)
{
    return pc_strdup(json_string_value(json_object_get(o, key)));
}

/* GET of the path fmt makes (the ids in it checked by the caller): the answer in *out, as
 * nc_call gives it. */
static int nc_get(pc_nocodb *nc, const char *what, json_t **out, pc_error *err, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static int nc_get(pc_nocodb *nc, const char *what, json_t **out, pc_error *err, const char *fmt,
                  ...)
{
    pc_buf path = {0};
    va_list ap;
    va_start(ap, fmt);
    int brc = pc_buf_vprintf(&path, fmt, ap);
    va_end(ap);
    int rc = brc != 0 ? oom(err) : nc_call(nc, "GET", path.data, NULL, what, 0, 0, out, NULL, err);
    pc_buf_free(&path);
    return rc;
}

/* --- open / free ------------------------------------------------------------------------------ */

void pc_nocodb_free(pc_nocodb *nc)
{
    if (!nc)
        return;
    if (nc->curl) {
        curl_easy_cleanup(nc->curl);
        curl_global_cleanup();
    }
    free(nc->url);
    free(nc->shown);
    free(nc->token);
    free(nc->email);
    if (nc->password) {
        memset(nc->password, 0, strlen(nc->password));
        free(nc->password);
    }
    free(nc->jwt);
    free(nc);
}

int pc_nocodb_open(pc_nocodb **out, const pc_nocodb_auth *auth, pc_error *err)
{
    pc_nocodb *nc = NULL;
    json_t *j = NULL;
    long status = 0;
    size_t n;
    int rc = 0;

    *out = NULL;
    if (!auth || !auth->url || !*auth->url)
        return pc_error_set(err, PC_EINVAL, "NocoDB: no URL given (the manifest's nocodb.url)");
    if ((strncmp(auth->url, "http://", 7) != 0 && strncmp(auth->url, "https://", 8) != 0) ||
        ((!auth->token || !*auth->token) && (!auth->email || !*auth->email || !auth->password))) {
        char *shown = pc_redact(auth->url);
        if (strncmp(auth->url, "http://", 7) != 0 && strncmp(auth->url, "https://", 8) != 0)
            rc = pc_error_set(err, PC_EINVAL, "NocoDB URL '%s' must start with http:// or https://",
                              shown ? shown : "(url withheld)");
        else
            rc = pc_error_set(err, PC_EINVAL,
                              "NocoDB %s: no credentials: give an API token (nocodb.token) or a "
                              "user (nocodb.email and nocodb.password)",
                              shown ? shown : "(url withheld)");
        free(shown);
        return rc;
    }
    if (!(nc = calloc(1, sizeof *nc)))
        return oom(err);
    nc->timeout_s = auth->timeout_s > 0 ? auth->timeout_s : 30;
    if (!(nc->url = pc_strdup(auth->url)))
        goto nomem;
    n = strlen(nc->url);
    while (n > 0 && nc->url[n - 1] == '/')
        nc->url[--n] = '\0';
    if (!(nc->shown = pc_redact(nc->url)))
        goto nomem;
    if (auth->token && *auth->token && !(nc->token = pc_strdup(auth->token)))
        goto nomem;
    if (auth->email && *auth->email &&
        (!(nc->email = pc_strdup(auth->email)) || !(nc->password = pc_strdup(auth->password))))
        goto nomem;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = pc_error_set(err, PC_EUNAVAIL, "NocoDB: libcurl failed to initialise");
        goto done;
    }
    if (!(nc->curl = curl_easy_init())) {
        curl_global_cleanup();
        goto nomem;
    }

    if ((rc = nc_call(nc, "GET", "/api/v1/health", NULL, "health check", NC_NO_AUTH, 0, &j, &status,
                      err)) < 0) {
        if (rc != PC_EUNAVAIL) { /* an HTTP error: something else listens there */
            pc_error_clear(err);
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "NocoDB %s: GET /api/v1/health answered HTTP %ld: is this "
                              "NocoDB? check the manifest's nocodb.url",
                              nc->shown, status);
        }
        goto done;
    }
    if (nc->token) {
        json_decref(j);
        j = NULL;
        rc = nc_call(nc, "GET", "/api/v2/meta/bases?limit=1", NULL, "API token check", NC_NO_RETRY,
                     0, &j, &status, err);
        if (rc == PC_EREFUSED && (status == 401 || status == 403)) {
            pc_error_clear(err); /* replaced by a message that says what to check */
            rc = pc_error_set(err, PC_EREFUSED,
                              "NocoDB %s refused the API token (header xc-token): HTTP %ld; "
                              "check the manifest's nocodb.token (the environment variable it "
                              "names) and that the token was not deleted",
                              nc->shown, status);
        }
        if (rc < 0)
            goto done;
    } else if ((rc = nc_signin(nc, err)) < 0) {
        goto done;
    }
    *out = nc;
    nc = NULL;
    goto done;
nomem:
    rc = oom(err);
done:
    json_decref(j);
    pc_nocodb_free(nc);
    return rc;
}

/* --- jobs ------------------------------------------------------------------------------------- */

/* NocoDB's reason for a failed job, from the messages it keeps for a minute after the end. */
static char *job_reason(pc_nocodb *nc, const char *job_id)
{
    json_t *body = json_pack("{s:i, s:{s:s}}", "_mid", 0, "data", "id", job_id), *msgs = NULL;
    char *reason = NULL;
    size_t i;
    pc_error ignored = {0};
    if (!body)
        return NULL;
    if (nc_call(nc, "POST", "/jobs/listen", body, "job messages", 0, 5, &msgs, NULL, &ignored) ==
            0 &&
        json_is_array(msgs)) {
        for (i = json_array_size(msgs); i-- > 0 && !reason;) {
            json_t *d = json_object_get(json_array_get(msgs, i), "data");
            const char *m = json_string_value(
                json_object_get(json_object_get(json_object_get(d, "data"), "error"), "message"));
            if (m && *m)
                reason = pc_strdup(m);
        }
    }
    json_decref(body);
    json_decref(msgs);
    return reason;
}

static bool reason_is_unreachable(const char *r)
{
    static const char *const words[] = {"ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH",
                                        "ECONNRESET",   "timeout",   "Timeout"};
    size_t i;
    for (i = 0; r && i < sizeof words / sizeof *words; i++)
        if (strstr(r, words[i]))
            return true;
    return false;
}

/* Waits for job job_id of base_id to complete (at most timeout_s). what names the operation and
 * the object for messages. */
static int wait_job(pc_nocodb *nc, const char *base_id, const char *job_id, int timeout_s,
                    const char *what, pc_error *err)
{
    char *path = NULL, *reason = NULL;
    json_t *body = NULL, *list = NULL;
    if (timeout_s <= 0)
        timeout_s = 120;
    int64_t deadline = pc_mono_ms() + (int64_t)timeout_s * 1000;
    const char *last = "not listed yet";
    char last_buf[32] = "";
    int rc = 0;

    if ((rc = check_id("job", job_id, err)) < 0)
        return rc;
    if (!(path = pc_asprintf("/api/v2/jobs/%s", base_id)) || !(body = json_object())) {
        rc = oom(err);
        goto done;
    }
    for (;;) {
        size_t i;
        const char *st = NULL;
        json_decref(list);
        list = NULL;
        if ((rc = nc_call(nc, "POST", path, body, what, 0, 0, &list, NULL, err)) < 0)
            goto done;
        for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
            json_t *job = json_array_get(list, i);
            if (pc_streq(json_string_value(json_object_get(job, "id")), job_id))
                st = json_string_value(json_object_get(job, "status"));
        }
        if (pc_streq(st, "completed"))
            goto done;
        if (pc_streq(st, "failed")) {
            char msg[PC_ERROR_MSG_MAX];
            char *raw = job_reason(nc, job_id);
            reason = raw ? nc_scrubbed(nc, raw, strlen(raw)) : NULL;
            free(raw);
            snprintf(msg, sizeof msg, "NocoDB %s: %s failed (job %s): %s", nc->shown, what, job_id,
                     reason ? reason : "NocoDB gave no reason (see its log)");
            nc_scrub(nc, msg, sizeof msg);
            rc = pc_error_set(err, reason_is_unreachable(reason) ? PC_EUNAVAIL : PC_EREFUSED, "%s",
                              msg);
            goto done;
        }
        if (st) {
            snprintf(last_buf, sizeof last_buf, "%s", st);
            last = last_buf;
        }
        if (pc_mono_ms() >= deadline) {
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "NocoDB %s: %s did not finish within %d s (job %s, status %s); it "
                              "may still finish: run plan again later",
                              nc->shown, what, timeout_s, job_id, last);
            goto done;
        }
        pc_sleep_ms(300);
    }
done:
    free(path);
    free(reason);
    json_decref(body);
    json_decref(list);
    return rc;
}

/* An answer that started a NocoDB job ({"id": job}): waits until the job has finished. */
static int wait_started_job(pc_nocodb *nc, const char *base_id, json_t *answer, int timeout_s,
                            const char *what, pc_error *err)
{
    const char *job = json_string_value(json_object_get(answer, "id"));
    if (!job)
        return pc_error_set(err, PC_EREFUSED, "NocoDB %s: %s: no job id in the answer", nc->shown,
                            what);
    return wait_job(nc, base_id, job, timeout_s, what, err);
}

/* --- bases and sources ------------------------------------------------------------------------ */

static void source_clear(pc_nocodb_source *s)
{
    free(s->id);
    free(s->alias);
    free(s->type);
    free(s->host);
    free(s->database);
    free(s->user);
    free(s->schema);
    memset(s, 0, sizeof *s);
}

void pc_nocodb_base_free(pc_nocodb_base *b)
{
    size_t i;
    if (!b)
        return;
    for (i = 0; i < b->nsources; i++)
        source_clear(&b->sources[i]);
    free(b->sources);
    free(b->id);
    free(b->title);
    free(b);
}

/* Fills the connection fields of s from the source's own config (database, searchPath) and its
 * integration's (host, port, user; NocoDB never returns the password). */
static int source_details(pc_nocodb *nc, const char *base_id, pc_nocodb_source *s,
                          const char *integration_id, pc_error *err)
{
    char what[200];
    json_t *src = NULL, *in = NULL, *cfg, *conn, *sp;
    int rc = 0;

    snprintf(what, sizeof what, "source \"%s\"", s->alias ? s->alias : s->id);
    if ((rc = nc_get(nc, what, &src, err, "/api/v2/meta/bases/%s/sources/%s", base_id, s->id)) < 0)
        goto done;
    if (safe_id(integration_id) &&
        (rc = nc_get(nc, what, &in, err, "/api/v2/meta/integrations/%s?includeConfig=true",
                     integration_id)) < 0)
        goto done;
    /* integration first, then the source's own settings over it (NocoDB merges the same way) */
    json_t *cfgs[2] = {json_object_get(in, "config"), json_object_get(src, "config")};
    for (int k = 0; k < 2; k++) {
        cfg = cfgs[k];
        if (!json_is_object(cfg))
            continue;
        conn = json_object_get(cfg, "connection");
        if (json_is_string(json_object_get(conn, "host"))) {
            free(s->host);
            s->host = jstrdup(conn, "host");
        }
        if (json_is_integer(json_object_get(conn, "port")))
            s->port = (int)json_integer_value(json_object_get(conn, "port"));
        else if (json_is_string(json_object_get(conn, "port")))
            s->port = atoi(json_string_value(json_object_get(conn, "port")));
        if (json_is_string(json_object_get(conn, "user"))) {
            free(s->user);
            s->user = jstrdup(conn, "user");
        }
        if (json_is_string(json_object_get(conn, "database"))) {
            free(s->database);
            s->database = jstrdup(conn, "database");
        }
        sp = json_object_get(cfg, "searchPath");
        if (json_is_array(sp) && json_is_string(json_array_get(sp, 0))) {
            free(s->schema);
            s->schema = pc_strdup(json_string_value(json_array_get(sp, 0)));
        }
    }
done:
    json_decref(src);
    json_decref(in);
    return rc;
}

static int list_sources(pc_nocodb *nc, pc_nocodb_base *b, pc_error *err)
{
    char what[120];
    json_t *j = NULL, *list;
    size_t i, n;
    int rc = 0;

    snprintf(what, sizeof what, "sources of base \"%s\"", b->title ? b->title : b->id);
    if ((rc = nc_get(nc, what, &j, err, "/api/v2/meta/bases/%s/sources", b->id)) < 0)
        goto done;
    list = json_object_get(j, "list");
    n = json_array_size(list);
    if (n && !(b->sources = calloc(n, sizeof *b->sources))) {
        rc = oom(err);
        goto done;
    }
    for (i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i);
        pc_nocodb_source *s = &b->sources[b->nsources];
        s->id = jstrdup(o, "id");
        if (!s->id)
            continue;
        b->nsources++;
        s->alias = jstrdup(o, "alias");
        s->type = jstrdup(o, "type");
        s->enabled = json_is_true(json_object_get(o, "enabled")) ||
                     json_integer_value(json_object_get(o, "enabled")) != 0;
        /* NocoDB's own source: is_meta in old bases, is_local (is_meta null) since 0.258 */
        s->is_meta = json_is_true(json_object_get(o, "is_meta")) ||
                     json_integer_value(json_object_get(o, "is_meta")) != 0 ||
                     json_is_true(json_object_get(o, "is_local"));
        if (!s->is_meta &&
            (rc = source_details(nc, b->id, s,
                                 json_string_value(json_object_get(o, "fk_integration_id")), err)) <
                0)
            goto done;
    }
done:
    json_decref(j);
    return rc;
}

int pc_nocodb_find_base(pc_nocodb *nc, const char *title, pc_nocodb_base **out, pc_error *err)
{
    json_t *j = NULL, *list;
    pc_nocodb_base *b = NULL;
    pc_buf ids = {0};
    char *path = NULL, *first_prev = NULL, what[120];
    size_t i, found = 0, offset = 0;
    int rc = 0;

    *out = NULL;
    snprintf(what, sizeof what, "looking for base \"%s\"", title);
    for (;;) {
        free(path);
        json_decref(j);
        j = NULL;
        if (!(path = pc_asprintf("/api/v2/meta/bases?limit=100&offset=%zu", offset))) {
            rc = oom(err);
            goto done;
        }
        if ((rc = nc_call(nc, "GET", path, NULL, what, 0, 0, &j, NULL, err)) < 0)
            goto done;
        list = json_object_get(j, "list");
        if (!json_array_size(list))
            break;
        /* a server that ignores offset repeats its first page: stop there */
        const char *first = json_string_value(json_object_get(json_array_get(list, 0), "id"));
        if (first_prev && pc_streq(first, first_prev))
            break;
        free(first_prev);
        first_prev = pc_strdup(first);
        for (i = 0; i < json_array_size(list); i++) {
            json_t *o = json_array_get(list, i);
            if (!pc_streq(json_string_value(json_object_get(o, "title")), title))
                continue;
            found++;
            pc_buf_printf(&ids, "%s%s", ids.len ? ", " : "",
                          json_string_value(json_object_get(o, "id")));
            if (!b) {
                if (!(b = calloc(1, sizeof *b)) || !(b->id = jstrdup(o, "id")) ||
                    !(b->title = pc_strdup(title))) {
                    rc = oom(err);
                    goto done;
                }
            }
        }
        offset += json_array_size(list);
        if (json_is_true(json_object_get(json_object_get(j, "pageInfo"), "isLastPage")))
            break;
    }
    if (found > 1) {
        rc = pc_error_set(err, PC_ECONFLICT,
                          "NocoDB %s holds %zu bases titled \"%s\" (ids %s): pipectl cannot tell "
                          "which is its own; rename or delete the others in NocoDB",
                          nc->shown, found, title, ids.data);
        goto done;
    }
    if (b) {
        if ((rc = list_sources(nc, b, err)) < 0)
            goto done;
        *out = b;
        b = NULL;
    }
done:
    free(path);
    free(first_prev);
    pc_buf_free(&ids);
    json_decref(j);
    pc_nocodb_base_free(b);
    return rc;
}

int pc_nocodb_create_base(pc_nocodb *nc, const char *title, char **id_out, pc_error *err)
{
    json_t *body = NULL, *j = NULL;
    char what[120];
    int rc = 0;

    *id_out = NULL;
    if (!title || !*title || strlen(title) > NC_TITLE_MAX)
        return pc_error_set(err, PC_EINVAL, "NocoDB base title \"%s\" must have 1 to %d characters",
                            title ? title : "", NC_TITLE_MAX);
    snprintf(what, sizeof what, "creating base \"%s\"", title);
    if (!(body = json_pack("{s:s}", "title", title)))
        return oom(err);
    if ((rc = nc_call(nc, "POST", "/api/v2/meta/bases", body, what, 0, 0, &j, NULL, err)) < 0)
        goto done;
    if (!safe_id(json_string_value(json_object_get(j, "id")))) {
        rc = pc_error_set(err, PC_EREFUSED, "NocoDB %s: %s: the answer has no base id", nc->shown,
                          what);
        goto done;
    }
    if (!(*id_out = jstrdup(j, "id")))
        rc = oom(err);
done:
    json_decref(body);
    json_decref(j);
    return rc;
}

static int check_conn(const char *alias, const pc_nocodb_conn *c, pc_error *err)
{
    if (!alias || !*alias)
        return pc_error_set(err, PC_EINVAL, "NocoDB source: no alias given");
    if (!c || !c->host || !*c->host || c->port <= 0 || c->port > 65535 || !c->database ||
        !*c->database || !c->user || !*c->user || !c->schema || !*c->schema)
        return pc_error_set(err, PC_EINVAL,
                            "NocoDB source \"%s\": host, port, database, user and schema are all "
                            "needed",
                            alias);
    return 0;
}

/* The whole connection, as an integration holds it. */
static json_t *conn_config(const pc_nocodb_conn *c)
{
    return json_pack("{s:s, s:{s:s, s:i, s:s, s:s, s:s}, s:[s]}", "client", "pg", "connection",
                     "host", c->host, "port", c->port, "user", c->user, "password",
                     c->password ? c->password : "", "database", c->database, "searchPath",
                     c->schema);
}

/* The source's own part, merged by NocoDB over its integration's. */
static json_t *source_config(const pc_nocodb_conn *c)
{
    return json_pack("{s:s, s:{s:s}, s:[s]}", "client", "pg", "connection", "database", c->database,
                     "searchPath", c->schema);
}

static void delete_integration_if_unused(pc_nocodb *nc, const char *integration_id)
{
    json_t *j = NULL, *list;
    char *path = NULL;
    size_t i;
    pc_error ignored = {0};
    long used = -1;

    if (!safe_id(integration_id))
        return;
    if (nc_call(nc, "GET", "/api/v2/meta/integrations?limit=1000", NULL, "integrations", 0, 0, &j,
                NULL, &ignored) < 0)
        goto done;
    list = json_object_get(j, "list");
    for (i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i);
        if (pc_streq(json_string_value(json_object_get(o, "id")), integration_id)) {
            json_t *sc = json_object_get(o, "source_count");
            used = json_is_integer(sc)  ? (long)json_integer_value(sc)
                   : json_is_string(sc) ? atol(json_string_value(sc))
                                        : 1;
        }
    }
    if (used == 0 && (path = pc_asprintf("/api/v2/meta/integrations/%s", integration_id)))
        nc_call(nc, "DELETE", path, NULL, "unused connection", 0, 0, NULL, NULL, &ignored);
done:
    free(path);
    json_decref(j);
}

int pc_nocodb_create_source(pc_nocodb *nc, const char *base_id, const char *alias,
                            const pc_nocodb_conn *conn, int job_timeout_s, char **id_out,
                            pc_error *err)
{
    json_t *body = NULL, *j = NULL, *list;
    char *path = NULL, *integration_id = NULL, what[400];
    size_t i;
    int rc = 0;

    *id_out = NULL;
    if ((rc = check_id("base", base_id, err)) < 0 || (rc = check_conn(alias, conn, err)) < 0)
        return rc;
    nc->extra_secret = conn->password;
    snprintf(what, sizeof what,
             "adding source \"%s\" (Postgres %s:%d database %s schema %s as %s) to base %s", alias,
             conn->host, conn->port, conn->database, conn->schema, conn->user, base_id);

    /* 1. the connection */
    if (!(body = json_pack("{s:s, s:s, s:s, s:o}", "title", alias, "type", "database", "sub_type",
                           "pg", "config", conn_config(conn)))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "POST", "/api/v2/meta/integrations", body, what, 0, 0, &j, NULL, err)) <
        0)
        goto done;
    if (!safe_id(json_string_value(json_object_get(j, "id")))) {
        rc = pc_error_set(err, PC_EREFUSED, "NocoDB %s: %s: no connection id in the answer",
                          nc->shown, what);
        goto done;
    }
    if (!(integration_id = jstrdup(j, "id"))) {
        rc = oom(err);
        goto done;
    }

    /* 2. the source, as a job */
    json_decref(body);
    json_decref(j);
    j = NULL;
    if (!(body = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "alias", alias, "type", "pg",
                           "fk_integration_id", integration_id, "config", source_config(conn),
                           "inflection_column", "none", "inflection_table", "none")) ||
        !(path = pc_asprintf("/api/v2/meta/bases/%s/sources", base_id))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "POST", path, body, what, 0, 0, &j, NULL, err)) < 0 ||
        (rc = wait_started_job(nc, base_id, j, job_timeout_s, what, err)) < 0)
        goto done;

    /* 3. the new source is the one on our connection (aliases need not be unique) */
    json_decref(j);
    j = NULL;
    if ((rc = nc_call(nc, "GET", path, NULL, what, 0, 0, &j, NULL, err)) < 0)
        goto done;
    list = json_object_get(j, "list");
    for (i = 0; i < json_array_size(list) && !*id_out; i++) {
        json_t *o = json_array_get(list, i);
        if (pc_streq(json_string_value(json_object_get(o, "fk_integration_id")), integration_id) &&
            !(*id_out = jstrdup(o, "id"))) {
            rc = oom(err);
            goto done;
        }
    }
    if (!*id_out)
        rc = pc_error_set(err, PC_EREFUSED,
                          "NocoDB %s: %s: the job completed but base %s lists no such source",
                          nc->shown, what, base_id);
done:
    if (rc < 0 && integration_id)
        delete_integration_if_unused(nc, integration_id); /* the job removed a failed source */
    nc->extra_secret = NULL;
    free(path);
    free(integration_id);
    json_decref(body);
    json_decref(j);
    return rc;
}

int pc_nocodb_update_source(pc_nocodb *nc, const char *base_id, const char *source_id,
                            const char *alias, const pc_nocodb_conn *conn, pc_error *err)
{
    json_t *body = NULL, *src = NULL, *in = NULL, *test = NULL;
    char *path = NULL, what[400];
    const char *integration_id, *title;
    int rc = 0;

    if ((rc = check_id("base", base_id, err)) < 0 ||
        (rc = check_id("source", source_id, err)) < 0 || (rc = check_conn(alias, conn, err)) < 0)
        return rc;
    nc->extra_secret = conn->password;
    snprintf(what, sizeof what,
             "updating source \"%s\" (%s) of base %s to Postgres %s:%d database %s schema %s as "
             "%s",
             alias, source_id, base_id, conn->host, conn->port, conn->database, conn->schema,
             conn->user);
    if (!(path = pc_asprintf("/api/v2/meta/bases/%s/sources/%s", base_id, source_id))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "GET", path, NULL, what, 0, 0, &src, NULL, err)) < 0)
        goto done;
    integration_id = json_string_value(json_object_get(src, "fk_integration_id"));
    if (!safe_id(integration_id)) {
        rc = pc_error_set(err, PC_EINVAL,
                          "NocoDB %s: %s: the source has no connection of its own (NocoDB's "
                          "default source?)",
                          nc->shown, what);
        goto done;
    }

    /* refuse settings NocoDB cannot use rather than break a working source */
    if (!(body = conn_config(conn))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "POST", "/api/v2/meta/connection/test", body, what, 0, 0, &test, NULL,
                      err)) < 0)
        goto done;
    if (json_integer_value(json_object_get(test, "code")) != 0) {
        char msg[PC_ERROR_MSG_MAX];
        const char *m = json_string_value(json_object_get(test, "message"));
        char *safe = m ? nc_scrubbed(nc, m, strlen(m)) : NULL;
        snprintf(msg, sizeof msg, "NocoDB %s: %s: NocoDB cannot connect with the new settings: %s",
                 nc->shown, what, safe ? safe : "(no reason given)");
        free(safe);
        nc_scrub(nc, msg, sizeof msg);
        rc = pc_error_set(err, reason_is_unreachable(m) ? PC_EUNAVAIL : PC_EREFUSED, "%s", msg);
        goto done;
    }

    /* the connection (title kept), then the source's alias, database and schema */
    free(path);
    if (!(path = pc_asprintf("/api/v2/meta/integrations/%s", integration_id))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "GET", path, NULL, what, 0, 0, &in, NULL, err)) < 0)
        goto done;
    title = json_string_value(json_object_get(in, "title"));
    json_decref(body);
    if (!(body = json_pack("{s:s, s:s, s:s, s:o}", "title", title ? title : alias, "type",
                           "database", "sub_type", "pg", "config", conn_config(conn)))) {
        rc = oom(err);
        goto done;
    }
    if ((rc = nc_call(nc, "PATCH", path, body, what, 0, 0, NULL, NULL, err)) < 0)
        goto done;
    free(path);
    json_decref(body);
    if (!(path = pc_asprintf("/api/v2/meta/bases/%s/sources/%s", base_id, source_id)) ||
        !(body = json_pack("{s:s, s:o}", "alias", alias, "config", source_config(conn)))) {
        rc = oom(err);
        goto done;
    }
    rc = nc_call(nc, "PATCH", path, body, what, 0, 0, NULL, NULL, err);
done:
    nc->extra_secret = NULL;
    free(path);
    json_decref(body);
    json_decref(src);
    json_decref(in);
    json_decref(test);
    return rc;
}

int pc_nocodb_delete_source(pc_nocodb *nc, const char *base_id, const char *source_id,
                            pc_error *err)
{
    json_t *src = NULL, *j = NULL;
    char *path = NULL, *integration_id = NULL, what[200];
    int rc = 0;

    if ((rc = check_id("base", base_id, err)) < 0 || (rc = check_id("source", source_id, err)) < 0)
        return rc;
    if (!(path = pc_asprintf("/api/v2/meta/bases/%s/sources/%s", base_id, source_id)))
        return oom(err);
    snprintf(what, sizeof what, "deleting source %s of base %s", source_id, base_id);
    if ((rc = nc_call(nc, "GET", path, NULL, what, 0, 0, &src, NULL, err)) < 0)
        goto done;
    const char *alias = json_string_value(json_object_get(src, "alias"));
    if (alias)
        snprintf(what, sizeof what, "deleting source \"%s\" (%s) of base %s", alias, source_id,
                 base_id);
    if (json_is_true(json_object_get(src, "is_local")) ||
        json_is_true(json_object_get(src, "is_meta"))) {
        rc = pc_error_set(err, PC_EINVAL, "NocoDB %s: %s: this is NocoDB's own default source",
                          nc->shown, what);
        goto done;
    }
    integration_id = jstrdup(src, "fk_integration_id");
    if ((rc = nc_call(nc, "DELETE", path, NULL, what, 0, 0, &j, NULL, err)) < 0)
        goto done;
    /* 0.301 deletes in a job ({"id": job}); older versions answer true */
    if (json_is_string(json_object_get(j, "id")) &&
        (rc = wait_job(nc, base_id, json_string_value(json_object_get(j, "id")), 120, what, err)) <
            0)
        goto done;
    delete_integration_if_unused(nc, integration_id);
done:
    free(path);
    free(integration_id);
    json_decref(src);
    json_decref(j);
    return rc;
}

int pc_nocodb_meta_sync(pc_nocodb *nc, const char *base_id, const char *source_id,
                        int job_timeout_s, pc_error *err)
{
    json_t *j = NULL;
    char *path = NULL, what[160];
    int rc = 0;

    if ((rc = check_id("base", base_id, err)) < 0 || (rc = check_id("source", source_id, err)) < 0)
        return rc;
    snprintf(what, sizeof what, "meta sync of source %s in base %s", source_id, base_id);
    if (!nc->email)
        return pc_error_set(err, PC_EREFUSED,
                            "NocoDB %s refuses API tokens for %s: set the manifest's nocodb.email "
                            "and nocodb.password too, so pipectl can sign in for it",
                            nc->shown, what);
    if (!(path = pc_asprintf("/api/v2/meta/bases/%s/meta-diff/%s", base_id, source_id)))
        return oom(err);
    /* NocoDB refuses API tokens here: this signs in with email/password */
    if ((rc = nc_call(nc, "POST", path, NULL, what, NC_NEED_JWT, 0, &j, NULL, err)) >= 0)
        rc = wait_started_job(nc, base_id, j, job_timeout_s, what, err);
    free(path);
    json_decref(j);
    return rc;
}

/* --- tables and rows -------------------------------------------------------------------------- */

void pc_nocodb_tables_free(pc_nocodb_table *t, size_t n)
{
    size_t i, k;
    if (!t)
        return;
    for (i = 0; i < n; i++) {
        free(t[i].id);
        free(t[i].name);
        free(t[i].title);
        for (k = 0; k < t[i].ncolumns; k++)
            free(t[i].columns[k]);
        free(t[i].columns);
    }
    free(t);
}

static int table_columns(pc_nocodb *nc, pc_nocodb_table *t, pc_error *err)
{
    json_t *j = NULL, *cols;
    char what[200];
    size_t i, n;
    int rc = 0;

    snprintf(what, sizeof what, "columns of table \"%s\"", t->name);
    if ((rc = nc_get(nc, what, &j, err, "/api/v2/meta/tables/%s", t->id)) < 0)
        goto done;
    cols = json_object_get(j, "columns");
    n = json_array_size(cols);
    if (n && !(t->columns = calloc(n, sizeof *t->columns))) {
        rc = oom(err);
        goto done;
    }
    for (i = 0; i < n; i++) {
        /* virtual columns (links, lookups) have no column_name */
        const char *cn = json_string_value(json_object_get(json_array_get(cols, i), "column_name"));
        if (!cn)
            continue;
        if (!(t->columns[t->ncolumns] = pc_strdup(cn))) {
            rc = oom(err);
            goto done;
        }
        t->ncolumns++;
    }
done:
    json_decref(j);
    return rc;
}

int pc_nocodb_list_tables(pc_nocodb *nc, const char *base_id, const char *source_id,
                          bool with_columns, pc_nocodb_table **out, size_t *n, pc_error *err)
{
    json_t *j = NULL, *list;
    pc_nocodb_table *t = NULL;
    char what[160];
    size_t i, cnt = 0, len;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if ((rc = check_id("base", base_id, err)) < 0 || (rc = check_id("source", source_id, err)) < 0)
        return rc;
    snprintf(what, sizeof what, "tables of source %s in base %s", source_id, base_id);
    if ((rc = nc_get(nc, what, &j, err, "/api/v2/meta/bases/%s/%s/tables", base_id, source_id)) < 0)
        goto done;
    list = json_object_get(j, "list");
    len = json_array_size(list);
    if (len && !(t = calloc(len, sizeof *t))) {
        rc = oom(err);
        goto done;
    }
    for (i = 0; i < len; i++) {
        json_t *o = json_array_get(list, i);
        if (!safe_id(json_string_value(json_object_get(o, "id"))))
            continue;
        t[cnt].id = jstrdup(o, "id");
        t[cnt].name = jstrdup(o, "table_name");
        t[cnt].title = jstrdup(o, "title");
        cnt++;
        if (!t[cnt - 1].id || !t[cnt - 1].name) {
            rc = oom(err);
            goto done;
        }
        if (with_columns && (rc = table_columns(nc, &t[cnt - 1], err)) < 0)
            goto done;
    }
    *out = t;
    *n = cnt;
    t = NULL;
done:
    pc_nocodb_tables_free(t, cnt);
    json_decref(j);
    return rc;
}

int pc_nocodb_count_rows(pc_nocodb *nc, const char *base_id, const char *table_id, long long *count,
                         char **first_row, pc_error *err)
{
    json_t *j = NULL, *tr, *first;
    char what[160];
    int rc = 0;

    *count = 0;
    if (first_row)
        *first_row = NULL;
    if ((rc = check_id("base", base_id, err)) < 0 || (rc = check_id("table", table_id, err)) < 0)
        return rc;
    snprintf(what, sizeof what, "rows of table %s in base %s", table_id, base_id);
    if ((rc = nc_get(nc, what, &j, err, "/api/v2/tables/%s/records?limit=1", table_id)) < 0)
        goto done;
    tr = json_object_get(json_object_get(j, "pageInfo"), "totalRows");
    if (!json_is_integer(tr)) {
        rc = pc_error_set(err, PC_EREFUSED, "NocoDB %s: %s: the answer has no pageInfo.totalRows",
                          nc->shown, what);
        goto done;
    }
    *count = (long long)json_integer_value(tr);
    first = json_array_get(json_object_get(j, "list"), 0);
    if (first_row && first && !(*first_row = json_dumps(first, JSON_COMPACT | JSON_SORT_KEYS)))
        rc = oom(err);
done:
    json_decref(j);
    return rc;
}
