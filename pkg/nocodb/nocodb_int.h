/* nocodb_int.h: internals shared by the files of pkg/nocodb (HTTP plumbing in http.c, the API
 * calls in nocodb.c). Not part of the public contract. */
#ifndef PC_NOCODB_INT_H
#define PC_NOCODB_INT_H
#if !defined(PC_INSIDE_NOCODB) && !defined(PC_WHITEBOX_TEST)
#error "nocodb_int.h is private to pkg/nocodb: include nocodb.h"
#endif

#include "nocodb.h"

#include <curl/curl.h>
#include <jansson.h>

struct pc_nocodb {
    CURL *curl;
    char *url;   /* without trailing '/'; may hold user:password@: never in a message */
    char *shown; /* url through pc_redact: the form every message names */
    char *token; /* API token (xc-token), or NULL */
    char *email; /* email/password sign-in (xc-auth JWT), or NULL */
    char *password;
    char *jwt; /* JWT from the last sign-in, or NULL */
    long timeout_s;
    const char *extra_secret; /* a secret of the request in flight (source password): scrubbed */
    char curl_err[CURL_ERROR_SIZE];
};

enum {
    NC_TOKEN_OK = 0, /* an API token may authenticate the request */
    NC_NEED_JWT = 1, /* NocoDB refuses API tokens here (meta sync): sign in */
    NC_NO_AUTH = 2,  /* health check, sign-in */
    NC_NO_RETRY = 4, /* no re-sign-in on 401 */
};

/* One request. body may be NULL. On HTTP < 400, *out (may be NULL) gets the parsed JSON (NULL
 * for an empty body). On HTTP >= 400 the error names the URL, method, path, status, NocoDB's
 * message and `what` (the object, e.g. "base \"x\""); 5xx -> PC_EUNAVAIL, 401/403 and other
 * 4xx -> PC_EREFUSED, 404 -> PC_ENOTFOUND. *status (may be NULL) gets the HTTP status. */
int nc_call(pc_nocodb *nc, const char *method, const char *path, json_t *body, const char *what,
            int flags, long timeout_s, json_t **out, long *status, pc_error *err);
/* Signs in with email/password; replaces nc->jwt. */
int nc_signin(pc_nocodb *nc, pc_error *err);
/* NocoDB's message in an error body ("msg", "message", "error", errors[0].message); NULL if none.
 * Borrowed from j. */
const char *nc_json_msg(json_t *j);
/* Replaces every secret nc holds (token, password, JWT, extra_secret) in s by <redacted>. */
void nc_scrub(const pc_nocodb *nc, char *s, size_t cap);
/* A new string: s[0..n) (up to a NUL) with every secret nc holds replaced, scrubbed whole so that
 * a later cut to length can never leave part of a secret. NULL when out of memory. */
char *nc_scrubbed(const pc_nocodb *nc, const char *s, size_t n);

#endif
