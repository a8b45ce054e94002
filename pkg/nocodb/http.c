/* http.c: NocoDB's HTTP plumbing: one libcurl easy handle per client, authentication headers
 * (xc-token or xc-auth), sign-in and one re-sign-in on a 401, and error messages that name the
 * request, NocoDB's reason and the object, with every secret scrubbed. */
#include "nocodb_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    pc_buf *b = ud;
    if (pc_buf_append(b, p, size * n) < 0)
        return 0;
    return size * n;
}

/* The client's secrets in every form they can take (pc_secrets_add), scrubbed by pkg/core's one
 * scrubber; NULL on OOM. */
char *nc_scrubbed(const pc_nocodb *nc, const char *s, size_t n)
{
    pc_secrets sec = {0};
    const char *const mine[] = {nc->token, nc->password, nc->jwt, nc->extra_secret};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof mine / sizeof mine[0]; i++)
        rc = pc_secrets_add(&sec, mine[i]);
    char *text = rc == 0 ? pc_strndup(s, n) : NULL;
    char *out = text != NULL ? pc_scrub(text, pc_secrets_list(&sec)) : NULL;
    free(text);
    pc_secrets_dispose(&sec);
    return out;
}

void nc_scrub(const pc_nocodb *nc, char *s, size_t cap)
{
    char *out = nc_scrubbed(nc, s, strlen(s));
    /* out of memory: nothing of the text is kept rather than a secret */
    snprintf(s, cap, "%s", out != NULL ? out : "(message withheld: out of memory)");
    free(out);
}

const char *nc_json_msg(json_t *j)
{
    const char *m;
    json_t *errs;
    if (!json_is_object(j))
        return NULL;
    errs = json_object_get(j, "errors"); /* validation details beat "Invalid request body" */
    if (json_is_array(errs) && json_array_size(errs) > 0 &&
        (m = json_string_value(json_object_get(json_array_get(errs, 0), "message"))) && *m)
        return m;
    if ((m = json_string_value(json_object_get(j, "msg"))) && *m)
        return m;
    if ((m = json_string_value(json_object_get(j, "message"))) && *m)
        return m;
    if ((m = json_string_value(json_object_get(j, "error"))) && *m)
        return m;
    return NULL;
}

/* Performs one request; 0 with *status set, or PC_EUNAVAIL when no HTTP answer came. */
static int perform(pc_nocodb *nc, const char *method, const char *path, const char *body,
                   const char *auth_header, long timeout_s, long *status, pc_buf *resp,
                   const char *what, pc_error *err)
{
    struct curl_slist *hdrs = NULL, *tmp;
    char *url = NULL;
    int rc = 0;
    CURLcode cc;
    CURL *c = nc->curl;

    if (!(url = pc_asprintf("%s%s", nc->url, path)))
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    tmp = curl_slist_append(hdrs, "Accept: application/json");
    if (tmp)
        hdrs = tmp;
    if (body && (tmp = curl_slist_append(hdrs, "Content-Type: application/json")))
        hdrs = tmp;
    if (auth_header && (tmp = curl_slist_append(hdrs, auth_header)))
        hdrs = tmp;
    if (!tmp) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout_s < 10 ? timeout_s : 10L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nc->curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pipectl-nocodb/0.1");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    nc->curl_err[0] = '\0';
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = pc_error_set(err, PC_EUNAVAIL,
                          "NocoDB at %s cannot be reached (%s %s%s%s): %s; check that NocoDB "
                          "runs and the manifest's nocodb.url",
                          nc->shown, method, path, what ? " for " : "", what ? what : "",
                          nc->curl_err[0] ? nc->curl_err : curl_easy_strerror(cc));
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
done:
    curl_slist_free_all(hdrs);
    free(url);
    return rc;
}

static int http_error(pc_nocodb *nc, const char *method, const char *path, const char *what,
                      long status, const pc_buf *resp, json_t *j, pc_error *err)
{
    char reason[512];
    const char *m = nc_json_msg(j);
    const char *hint = "";
    int code;
    /* scrubbed before it is cut short: no part of a secret survives the cut */
    char *raw = m ? nc_scrubbed(nc, m, strlen(m))
                  : resp->len ? nc_scrubbed(nc, resp->data, resp->len) : NULL;
    if (m || resp->len)
        snprintf(reason, sizeof reason, m ? "%s" : "%.200s",
                 raw ? raw : "(answer not shown: out of memory)");
    else
        snprintf(reason, sizeof reason, "(empty answer)");
    free(raw);
    if (status >= 500) {
        code = PC_EUNAVAIL;
        hint = "; NocoDB failed on its side: see its log, retry later";
    } else if (status == 404) {
        code = PC_ENOTFOUND;
    } else {
        code = PC_EREFUSED;
        if (status == 401 || status == 403)
            hint = nc->token ? "; check the API token (the manifest's nocodb.token) and its "
                               "owner's role"
                             : "; check the NocoDB user (the manifest's nocodb.email and "
                               "nocodb.password) and its role";
    }
    char msg[PC_ERROR_MSG_MAX], obj[320] = "";
    if (what)
        snprintf(obj, sizeof obj, " (%s)", what);
    snprintf(msg, sizeof msg, "NocoDB %s: %s %s%s: HTTP %ld: %s%s", nc->shown, method, path, obj,
             status, reason, hint);
    nc_scrub(nc, msg, sizeof msg);
    return pc_error_set(err, code, "%s", msg);
}

int nc_signin(pc_nocodb *nc, pc_error *err)
{
    json_t *body = NULL, *j = NULL;
    pc_buf resp = {0};
    char *text = NULL;
    long status = 0;
    int rc;
    const char *tok;

    if (!nc->email || !nc->password)
        return pc_error_set(err, PC_EREFUSED,
                            "NocoDB %s: this request needs a signed-in user (NocoDB refuses API "
                            "tokens for it): set the manifest's nocodb.email and nocodb.password",
                            nc->shown);
    free(nc->jwt);
    nc->jwt = NULL;
    body = json_pack("{s:s, s:s}", "email", nc->email, "password", nc->password);
    if (!body || !(text = json_dumps(body, JSON_COMPACT))) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = perform(nc, "POST", "/api/v1/auth/user/signin", text, NULL, nc->timeout_s, &status, &resp,
                 NULL, err);
    if (rc < 0)
        goto done;
    j = resp.len ? json_loads(resp.data, JSON_DECODE_ANY, NULL) : NULL;
    if (status == 400 || status == 401 || status == 403) {
        const char *jm = nc_json_msg(j);
        char *m = jm ? nc_scrubbed(nc, jm, strlen(jm)) : NULL;
        char msg[PC_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg,
                 "NocoDB %s refused the sign-in of user %s (email/password): HTTP %ld: %s; check "
                 "the manifest's nocodb.email and nocodb.password (the environment variables "
                 "they name)",
                 nc->shown, nc->email, status, m ? m : "(no reason given)");
        free(m);
        nc_scrub(nc, msg, sizeof msg);
        rc = pc_error_set(err, PC_EREFUSED, "%s", msg);
        goto done;
    }
    if (status >= 300) {
        rc = http_error(nc, "POST", "/api/v1/auth/user/signin", "sign-in", status, &resp, j, err);
        goto done;
    }
    tok = json_string_value(json_object_get(j, "token"));
    if (!tok || !*tok) {
        rc =
            pc_error_set(err, PC_EREFUSED, "NocoDB %s: sign-in of user %s answered without a token",
                         nc->shown, nc->email);
        goto done;
    }
    if (!(nc->jwt = pc_strdup(tok)))
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
done:
    json_decref(body);
    json_decref(j);
    if (text) {
        memset(text, 0, strlen(text)); /* held the password */
        free(text);
    }
    pc_buf_free(&resp);
    return rc;
}

int nc_call(pc_nocodb *nc, const char *method, const char *path, json_t *body, const char *what,
            int flags, long timeout_s, json_t **out, long *status_out, pc_error *err)
{
    char *text = NULL, *auth = NULL;
    pc_buf resp = {0};
    json_t *j = NULL;
    long status = 0;
    int rc = 0, attempt;
    bool use_jwt;

    if (out)
        *out = NULL;
    if (timeout_s <= 0)
        timeout_s = nc->timeout_s;
    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    use_jwt = !(flags & NC_NO_AUTH) && (!nc->token || (flags & NC_NEED_JWT));
    for (attempt = 0; attempt < 2; attempt++) {
        free(auth);
        auth = NULL;
        if (!(flags & NC_NO_AUTH)) {
            if (use_jwt && !nc->jwt && (rc = nc_signin(nc, err)) < 0)
                goto done;
            auth = use_jwt ? pc_asprintf("xc-auth: %s", nc->jwt)
                           : pc_asprintf("xc-token: %s", nc->token);
            if (!auth) {
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
                goto done;
            }
        }
        resp.len = 0;
        if (resp.data)
            resp.data[0] = '\0';
        if ((rc = perform(nc, method, path, text, auth, timeout_s, &status, &resp, what, err)) < 0)
            goto done;
        /* an expired or revoked JWT: sign in again once */
        if (status == 401 && use_jwt && attempt == 0 && !(flags & NC_NO_RETRY)) {
            free(nc->jwt);
            nc->jwt = NULL;
            continue;
        }
        break;
    }
    if (resp.len) {
        j = json_loads(resp.data, JSON_DECODE_ANY, NULL);
        if (!j && status < 400) {
            char *raw = nc_scrubbed(nc, resp.data, resp.len);
            rc =
                pc_error_set(err, PC_EUNAVAIL,
                             "NocoDB %s: %s %s: HTTP %ld with an answer that is not JSON: %.120s; "
                             "is %s NocoDB's base URL (not a proxy's page)?",
                             nc->shown, method, path, status, raw ? raw : "(not shown)", nc->shown);
            free(raw);
            goto done;
        }
    }
    if (status >= 400) {
        rc = http_error(nc, method, path, what, status, &resp, j, err);
        goto done;
    }
    if (out) {
        *out = j;
        j = NULL;
    }
done:
    if (status_out)
        *status_out = status;
    json_decref(j);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    if (text) {
        memset(text, 0, strlen(text)); /* may hold a source's password */
        free(text);
    }
    pc_buf_free(&resp);
    return rc;
}
