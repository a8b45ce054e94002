/* pc-randomuser: a local, deterministic stand-in for the randomuser.me API (version 1.4 format)
 * for tests, benchmarks and the offline demo, with faults on demand.
 *
 *   GET  /api/, /api/1.0/ .. /api/1.4/   users (results, page, seed, gender, nat, inc, exc,
 *                                        noinfo, password=CHARSETS,LENGTH,
 *                                        format=json|pretty; csv/yaml/xml answer 400)
 *   POST /_faults   JSON body; counts add to what is pending:
 *                   {"status500": N, "status429": N, "retry_after": S, "html503": N,
 *                    "slow": N, "slow_ms": MS, "truncate": N, "malformed_record": N,
 *                    "malformed_kind": "no_uuid"|"email"}  ("reset": true clears everything)
 *                   The next requests to /api take them in this order: 500, 429 (+ Retry-After),
 *                   HTML 503 page, slow (sleeps slow_ms, then answers normally), truncated body
 *                   (half of it, status 200). Malformed records replace the first users of the
 *                   next intact responses (login.uuid missing, or email a number).
 *   GET  /_faults   pending faults;  GET /_stats   counters of requests served per kind.
 * A single request can also ask for one fault: ?_fault=500|429|html|slow|truncate. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core.h"
#include "gen.h"

typedef struct faults {
    long status500, status429, html503, slow, truncate, malformed;
    long retry_after_s, slow_ms;
    ru_malform kind;
} faults;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static faults g_faults = {.retry_after_s = 1, .slow_ms = 3000, .kind = RU_NO_UUID};

enum {
    S_REQUESTS,
    S_OK,
    S_USERS,
    S_500,
    S_429,
    S_HTML,
    S_SLOW,
    S_TRUNC,
    S_MALFORMED,
    S_404,
    S_400,
    S_FAULT_POSTS,
    S_N
};
static const char *const stat_names[S_N] = {"requests",  "ok",          "users",
                                            "status500", "status429",   "html503",
                                            "slow",      "truncated",   "malformed_records",
                                            "not_found", "bad_request", "fault_posts"};
static atomic_long g_stats[S_N];

typedef enum fault_kind { FK_NONE, FK_500, FK_429, FK_HTML, FK_SLOW, FK_TRUNC } fault_kind;

static int respond(struct MHD_Connection *c, unsigned status, const char *ctype, char *body,
                   size_t len, const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    int ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int respond_str(struct MHD_Connection *c, unsigned status, const char *ctype, const char *s,
                       const char *retry_after)
{
    char *body = strdup(s);
    if (!body)
        return MHD_NO;
    return respond(c, status, ctype, body, strlen(body), retry_after);
}

static fault_kind take_fault(const char *asked, long *retry_after, long *slow_ms, long *malformed,
                             ru_malform *kind, long results)
{
    fault_kind k = FK_NONE;
    pthread_mutex_lock(&g_mu);
    *retry_after = g_faults.retry_after_s;
    *slow_ms = g_faults.slow_ms;
    *kind = g_faults.kind;
    *malformed = 0;
    if (asked) {
        k = strcmp(asked, "500") == 0        ? FK_500
            : strcmp(asked, "429") == 0      ? FK_429
            : strcmp(asked, "html") == 0     ? FK_HTML
            : strcmp(asked, "slow") == 0     ? FK_SLOW
            : strcmp(asked, "truncate") == 0 ? FK_TRUNC
                                             : FK_NONE;
    } else if (g_faults.status500 > 0) {
        g_faults.status500--, k = FK_500;
    } else if (g_faults.status429 > 0) {
        g_faults.status429--, k = FK_429;
    } else if (g_faults.html503 > 0) {
        g_faults.html503--, k = FK_HTML;
    } else if (g_faults.slow > 0) {
        g_faults.slow--, k = FK_SLOW;
    } else if (g_faults.truncate > 0) {
        g_faults.truncate--, k = FK_TRUNC;
    }
    if (k == FK_NONE && g_faults.malformed > 0) {
        *malformed = g_faults.malformed < results ? g_faults.malformed : results;
        g_faults.malformed -= *malformed;
    }
    pthread_mutex_unlock(&g_mu);
    return k;
}

/* comma list -> mask; *bad set when an element is unknown */
static unsigned parse_list(const char *s, int (*index)(const char *, size_t), bool *bad)
{
    unsigned mask = 0;
    *bad = false;
    while (s && *s) {
        size_t len = strcspn(s, ",");
        while (len > 0 && s[len - 1] == ' ')
            len--;
        int i = len ? index(s, len) : -1;
        if (i < 0)
            *bad = true;
        else
            mask |= 1u << i;
        s += strcspn(s, ",");
        if (*s == ',')
            s++;
        while (*s == ' ')
            s++;
    }
    return mask;
}

static long parse_range(const char *s, long lo, long hi, long dflt)
{
    if (!s || !*s)
        return dflt;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return dflt;
    return v;
}

static int serve_api(struct MHD_Connection *c, const char *version)
{
#define ARG(n) MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, n)
    const char *format = ARG("format");
    if (format && (strcasecmp(format, "csv") == 0 || strcasecmp(format, "yaml") == 0 ||
                   strcasecmp(format, "xml") == 0)) {
        atomic_fetch_add(&g_stats[S_400], 1);
        return respond_str(c, 400, "text/plain",
                           "pc-randomuser: format=csv, yaml and xml are not supported by this "
                           "local server; use format=json (default) or format=pretty\n",
                           NULL);
    }
    bool pretty = format && strcasecmp(format, "pretty") == 0;
    long results = parse_range(ARG("results"), 1, 5000, 1);
    ru_req rq = {.page = parse_range(ARG("page"), 1, 10000, 1), .now = time(NULL)};
    char seedbuf[17];
    const char *seed = ARG("seed");
    if (seed && *seed) {
        rq.seed = seed;
    } else {
        unsigned char rb[8] = {0};
        if (getrandom(rb, sizeof rb, 0) != (ssize_t)sizeof rb) {
            uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rb;
            memcpy(rb, &t, sizeof rb);
        }
        pc_hex_encode(rb, sizeof rb, seedbuf);
        rq.seed = seedbuf;
        const char *gender = ARG("gender");
        rq.gender = gender && strcasecmp(gender, "male") == 0     ? 1
                    : gender && strcasecmp(gender, "female") == 0 ? 2
                                                                  : 0;
    }
    bool bad = false;
    rq.nat_mask = parse_list(ARG("nat"), ru_nat_index, &bad);
    if (bad)
        rq.nat_mask = 0; /* one invalid code and the whole list is ignored */
    rq.fields = RU_ALL_FIELDS;
    unsigned inc = parse_list(ARG("inc"), ru_field_index, &bad);
    if (inc)
        rq.fields = inc;
    rq.fields &= ~parse_list(ARG("exc"), ru_field_index, &bad);
    ru_parse_password(ARG("password"), &rq);
    const char *noinfo_v = NULL;
    size_t noinfo_len = 0; /* "?noinfo" has no value: ask whether the key is there at all */
    bool noinfo = MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "noinfo", 6, &noinfo_v,
                                                &noinfo_len) == MHD_YES;

    long retry_after, slow_ms, malformed;
    ru_malform kind;
    fault_kind fk = take_fault(ARG("_fault"), &retry_after, &slow_ms, &malformed, &kind, results);
    switch (fk) {
    case FK_500:
        atomic_fetch_add(&g_stats[S_500], 1);
        return respond_str(c, 500, "application/json",
                           "{\"error\":\"Uh oh, something has gone wrong. Please tweet us "
                           "@randomapi about the issue. Thank you.\"}",
                           NULL);
    case FK_429: {
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", retry_after);
        atomic_fetch_add(&g_stats[S_429], 1);
        return respond_str(c, 429, "application/json",
                           "{\"error\":\"Whoa, slow down there! You've made too many requests.\"}",
                           ra);
    }
    case FK_HTML:
        atomic_fetch_add(&g_stats[S_HTML], 1);
        return respond_str(c, 503, "text/html",
                           "<!DOCTYPE html><html><head><title>503 Service Unavailable</title>"
                           "</head><body><h1>Service Unavailable</h1></body></html>\n",
                           NULL);
    case FK_SLOW: {
        atomic_fetch_add(&g_stats[S_SLOW], 1);
        struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        break;
    }
    case FK_TRUNC:
    case FK_NONE:
        break;
    }

    pc_buf b = {0};
    int rc = pc_buf_puts(&b, "{\"results\":[");
    for (long i = 0; i < results && rc == 0; i++) {
        if (i)
            rc = pc_buf_append(&b, ",", 1);
        if (rc == 0)
            rc = ru_gen_user(&b, &rq, i, i < malformed ? kind : RU_OK);
    }
    if (rc == 0)
        rc = pc_buf_puts(&b, "]");
    if (rc == 0 && !noinfo) {
        rc = pc_buf_puts(&b, ",\"info\":{\"seed\":");
        if (rc == 0)
            rc = ru_json_str(&b, rq.seed);
        if (rc == 0)
            rc = pc_buf_printf(&b, ",\"results\":%ld,\"page\":%ld,\"version\":\"%s\"}", results,
                               rq.page, version);
    }
    if (rc == 0)
        rc = pc_buf_puts(&b, "}");
    if (rc != 0) {
        pc_buf_free(&b);
        return respond_str(c, 500, "text/plain", "pc-randomuser: out of memory\n", NULL);
    }
    if (pretty) {
        json_t *j = json_loadb(b.data, b.len, 0, NULL);
        char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(j);
        if (s) {
            pc_buf_free(&b);
            b.data = s;
            b.len = strlen(s);
        }
    }
    size_t len = b.len;
    if (fk == FK_TRUNC) {
        atomic_fetch_add(&g_stats[S_TRUNC], 1);
        len /= 2;
    } else {
        atomic_fetch_add(&g_stats[S_OK], 1);
        atomic_fetch_add(&g_stats[S_USERS], results);
        atomic_fetch_add(&g_stats[S_MALFORMED], malformed);
    }
    char *body = b.data; /* ownership moves to the response */
    b.data = NULL;
    return respond(c, 200, "application/json; charset=utf-8", body, len, NULL);
#undef ARG
}

static char *faults_json(void)
{
    pthread_mutex_lock(&g_mu);
    faults f = g_faults;
    pthread_mutex_unlock(&g_mu);
    return pc_asprintf("{\"status500\":%ld,\"status429\":%ld,\"retry_after\":%ld,\"html503\":%ld,"
                       "\"slow\":%ld,\"slow_ms\":%ld,\"truncate\":%ld,\"malformed_record\":%ld,"
                       "\"malformed_kind\":\"%s\"}\n",
                       f.status500, f.status429, f.retry_after_s, f.html503, f.slow, f.slow_ms,
                       f.truncate, f.malformed,
                       f.kind == RU_EMAIL_NOT_STRING ? "email" : "no_uuid");
}

static int post_faults(struct MHD_Connection *c, const char *body, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        atomic_fetch_add(&g_stats[S_400], 1);
        return respond_str(c, 400, "text/plain",
                           "pc-randomuser: POST /_faults wants a JSON object such as "
                           "{\"status500\": 3}\n",
                           NULL);
    }
    pthread_mutex_lock(&g_mu);
    if (json_is_true(json_object_get(j, "reset")))
        g_faults = (faults){.retry_after_s = 1, .slow_ms = 3000, .kind = RU_NO_UUID};
    static const struct {
        const char *key;
        size_t off;
        bool add;
    } keys[] = {{"status500", offsetof(faults, status500), true},
                {"status429", offsetof(faults, status429), true},
                {"html503", offsetof(faults, html503), true},
                {"slow", offsetof(faults, slow), true},
                {"truncate", offsetof(faults, truncate), true},
                {"malformed_record", offsetof(faults, malformed), true},
                {"retry_after", offsetof(faults, retry_after_s), false},
                {"slow_ms", offsetof(faults, slow_ms), false}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(j, keys[i].key);
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            long *p = (long *)(void *)((char *)&g_faults + keys[i].off);
            *p = keys[i].add ? *p + (long)json_integer_value(v) : (long)json_integer_value(v);
        }
    }
    const char *kind = json_string_value(json_object_get(j, "malformed_kind"));
    if (kind)
        g_faults.kind = strcmp(kind, "email") == 0 ? RU_EMAIL_NOT_STRING : RU_NO_UUID;
    pthread_mutex_unlock(&g_mu);
    json_decref(j);
    atomic_fetch_add(&g_stats[S_FAULT_POSTS], 1);
    char *s = faults_json();
    return s ? respond(c, 200, "application/json", s, strlen(s), NULL) : MHD_NO;
}

typedef struct post_ctx {
    pc_buf body;
} post_ctx;

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    post_ctx *p = *con_cls;
    if (p) {
        pc_buf_free(&p->body);
        free(p);
        *con_cls = NULL;
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)cls, (void)version;
    if (strcmp(method, "POST") == 0 && strcmp(url, "/_faults") == 0) {
        post_ctx *p = *con_cls;
        if (!p) {
            p = calloc(1, sizeof *p);
            if (!p)
                return MHD_NO;
            *con_cls = p;
            return MHD_YES;
        }
        if (*upload_size) {
            if (p->body.len + *upload_size > 65536 ||
                pc_buf_append(&p->body, upload, *upload_size) < 0)
                return MHD_NO;
            *upload_size = 0;
            return MHD_YES;
        }
        return (enum MHD_Result)post_faults(c, p->body.data ? p->body.data : "", p->body.len);
    }
    if (!*con_cls) { /* first call: headers only; answer on the second */
        *con_cls = calloc(1, sizeof(post_ctx));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_size) { /* a body nobody asked for: read and drop it, answer at the end */
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&g_stats[S_REQUESTS], 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return (enum MHD_Result)respond_str(c, 405, "text/plain", "Method Not Allowed\n", NULL);
    if (strcmp(url, "/_stats") == 0) {
        pc_buf b = {0};
        pc_buf_puts(&b, "{");
        for (int i = 0; i < S_N; i++)
            pc_buf_printf(&b, "%s\"%s\":%ld", i ? "," : "", stat_names[i],
                          atomic_load(&g_stats[i]));
        pc_buf_puts(&b, "}\n");
        if (!b.data)
            return MHD_NO;
        return (enum MHD_Result)respond(c, 200, "application/json", b.data, b.len, NULL);
    }
    if (strcmp(url, "/_faults") == 0) {
        char *s = faults_json();
        return s ? (enum MHD_Result)respond(c, 200, "application/json", s, strlen(s), NULL)
                 : MHD_NO;
    }
    const char *api_version = NULL;
    if (strcmp(url, "/api") == 0 || strcmp(url, "/api/") == 0) {
        api_version = "1.4";
    } else if (strncmp(url, "/api/", 5) == 0) {
        static const char *const versions[] = {"1.0", "1.1", "1.2", "1.3", "1.4"};
        const char *v = url + 5;
        size_t vlen = strcspn(v, "/");
        bool tail_ok = v[vlen] == '\0' || strcmp(v + vlen, "/") == 0;
        for (size_t i = 0; tail_ok && i < 5; i++)
            if (vlen == 3 && strncmp(v, versions[i], 3) == 0)
                api_version = versions[i];
    }
    if (!api_version) {
        atomic_fetch_add(&g_stats[S_404], 1);
        return (enum MHD_Result)respond_str(c, 404, "text/plain", "Not Found\n", NULL);
    }
    return (enum MHD_Result)serve_api(c, api_version);
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: pc-randomuser --port N [--bind ADDR] [--port-file FILE]\n"
               "A local randomuser.me-compatible API (format 1.4) with fault injection.\n"
               "  --port N         TCP port; 0 picks a free one (see --port-file)\n"
               "  --bind ADDR      IPv4 address to listen on (default 127.0.0.1)\n"
               "  --port-file F    write the port actually bound to F once listening\n"
               "Endpoints: GET /api/[1.0-1.4/], POST|GET /_faults, GET /_stats\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
                                         {"bind", required_argument, NULL, 'b'},
                                         {"port-file", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    long port = -1;
    const char *bind_addr = "127.0.0.1", *port_file = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "p:b:f:h", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            port = parse_range(optarg, 0, 65535, -1);
            break;
        case 'b':
            bind_addr = optarg;
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (port < 0 || optind != argc) {
        fprintf(stderr, "pc-randomuser: --port N (0..65535) is required\n");
        usage(stderr);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "pc-randomuser: --bind %s is not an IPv4 address\n", bind_addr);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the daemon's threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "pc-randomuser: cannot listen on %s:%ld: %s\n", bind_addr, port,
                strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = info ? info->port : (unsigned)port;
    if (port_file) {
        char *tmp = pc_asprintf("%s.tmp", port_file);
        FILE *f = tmp ? fopen(tmp, "w") : NULL;
        if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "pc-randomuser: cannot write %s: %s\n", port_file, strerror(errno));
            free(tmp);
            MHD_stop_daemon(d);
            return 1;
        }
        free(tmp);
    }
    fprintf(stderr, "pc-randomuser: listening on http://%s:%u/api/\n", bind_addr, bound);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
