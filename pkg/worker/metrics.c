/* metrics.c: `pipectl run`'s Prometheus endpoint. libmicrohttpd serves GET /metrics from its own
 * polling thread; the text is rendered on each scrape from the workers' atomic counters, so a
 * scrape never waits for a worker. Lag gauges are pushed in by the caller (cmd/ computes them
 * from Kafka watermarks and the sink's offsets table) and guarded by a mutex. Nothing here
 * prints: libmicrohttpd's own error log is left off. */
#include "worker.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef struct metrics_worker {
    char *name;
    char *kind;
    pc_worker_stats *stats; /* borrowed */
    atomic_int running;
} metrics_worker;

typedef struct metrics_lag {
    char *worker;
    char *topic;
    int partition;
    int64_t lag;
} metrics_lag;

struct pc_metrics {
    metrics_worker *workers;
    size_t nworkers;
    pthread_mutex_t lock; /* guards lags */
    metrics_lag *lags;
    size_t nlags;
    struct MHD_Daemon *daemon;
    int port;
};

int pc_metrics_new(pc_metrics **out, pc_error *err)
{
    *out = NULL;
    pc_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory creating the metrics endpoint");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return pc_error_set(err, PC_ENOMEM, "cannot create a mutex for the metrics endpoint");
    }
    *out = m;
    return 0;
}

int pc_metrics_add_worker(pc_metrics *m, const char *name, const char *kind, pc_worker_stats *stats,
                          pc_error *err)
{
    if (m->daemon != NULL)
        return pc_error_set(err, PC_EINVAL,
                            "metrics endpoint: worker '%s' added after the server started", name);
    metrics_worker *w = realloc(m->workers, (m->nworkers + 1) * sizeof *w);
    if (w == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory adding worker '%s' to the metrics",
                            name);
    m->workers = w;
    w = &m->workers[m->nworkers];
    memset(w, 0, sizeof *w);
    w->name = pc_strdup(name);
    w->kind = pc_strdup(kind);
    w->stats = stats;
    atomic_init(&w->running, 0);
    if (w->name == NULL || w->kind == NULL) {
        free(w->name);
        free(w->kind);
        return pc_error_set(err, PC_ENOMEM, "out of memory adding worker '%s' to the metrics",
                            name);
    }
    m->nworkers++;
    return 0;
}

void pc_metrics_set_running(pc_metrics *m, const char *worker, bool running)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nworkers; i++)
        if (strcmp(m->workers[i].name, worker) == 0)
            atomic_store(&m->workers[i].running, running ? 1 : 0);
}

int pc_metrics_set_lag(pc_metrics *m, const char *worker, const char *topic, int partition,
                       int64_t lag, pc_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nlags; i++) {
        metrics_lag *l = &m->lags[i];
        if (l->partition == partition && strcmp(l->worker, worker) == 0 &&
            strcmp(l->topic, topic) == 0) {
            if (lag >= 0) {
                l->lag = lag;
            } else { /* forget: move the last entry into the hole */
                free(l->worker);
                free(l->topic);
                m->lags[i] = m->lags[--m->nlags];
            }
            goto done;
        }
    }
    if (lag < 0)
        goto done;
    metrics_lag *nl = realloc(m->lags, (m->nlags + 1) * sizeof *nl);
    if (nl == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory recording the lag of worker '%s'", worker);
        goto done;
    }
    m->lags = nl;
    nl = &m->lags[m->nlags];
    nl->worker = pc_strdup(worker);
    nl->topic = pc_strdup(topic);
    nl->partition = partition;
    nl->lag = lag;
    if (nl->worker == NULL || nl->topic == NULL) {
        free(nl->worker);
        free(nl->topic);
        rc = pc_error_set(err, PC_ENOMEM, "out of memory recording the lag of worker '%s'", worker);
        goto done;
    }
    m->nlags++;
done:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* A label value with \, " and newline escaped as the exposition format requires. */
static int put_label(pc_buf *b, const char *v)
{
    for (const char *p = v; *p != '\0'; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        int rc = esc != NULL ? pc_buf_puts(b, esc) : pc_buf_append(b, p, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef enum counter_field { C_IN, C_OUT, C_BATCHES, C_ERRORS, C_DEAD } counter_field;

static uint64_t counter_value(const pc_worker_stats *s, counter_field f)
{
    switch (f) {
    case C_IN:
        return atomic_load(&s->records_in);
    case C_OUT:
        return atomic_load(&s->records_out);
    case C_BATCHES:
        return atomic_load(&s->batches);
    case C_ERRORS:
        return atomic_load(&s->errors);
    case C_DEAD:
        return atomic_load(&s->dead_letters);
    }
    return 0;
}

int pc_metrics_render(pc_metrics *m, int64_t now_ms, char **out, pc_error *err)
{
    static const struct {
        counter_field f;
        const char *name;
        const char *help;
    } counters[] = {
        {C_IN, "pipectl_records_in_total",
         "Records received (ingest: users fetched; sink: records consumed)."},
        {C_OUT, "pipectl_records_out_total",
         "Records delivered (ingest: acknowledged by Kafka; sink: rows committed)."},
        {C_BATCHES, "pipectl_batches_total",
         "Successful batches (ingest: HTTP requests; sink: transactions)."},
        {C_ERRORS, "pipectl_errors_total", "Failures that were retried (HTTP, broker, database)."},
        {C_DEAD, "pipectl_dead_letters_total",
         "Records sent to the dead-letter topic (sink) or skipped as malformed (ingest)."},
    };
    pc_buf b = {0};
    int rc = 0;
    *out = NULL;
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        rc |= pc_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name,
                            counters[c].help, counters[c].name);
        for (size_t i = 0; i < m->nworkers; i++) {
            rc |= pc_buf_printf(&b, "%s{worker=\"", counters[c].name);
            rc |= put_label(&b, m->workers[i].name);
            rc |= pc_buf_printf(
                &b, "\"} %llu\n",
                (unsigned long long)counter_value(m->workers[i].stats, counters[c].f));
        }
    }
    rc |= pc_buf_puts(&b, "# HELP pipectl_last_commit_age_seconds Seconds since the worker last "
                          "committed (sink) or had a delivery acknowledged (ingest).\n"
                          "# TYPE pipectl_last_commit_age_seconds gauge\n");
    for (size_t i = 0; i < m->nworkers; i++) {
        int64_t last = atomic_load(&m->workers[i].stats->last_commit_ms);
        if (last <= 0)
            continue; /* never committed: no sample rather than a made-up age */
        double age = now_ms > last ? (double)(now_ms - last) / 1000.0 : 0.0;
        rc |= pc_buf_puts(&b, "pipectl_last_commit_age_seconds{worker=\"");
        rc |= put_label(&b, m->workers[i].name);
        rc |= pc_buf_printf(&b, "\"} %.3f\n", age);
    }
    rc |= pc_buf_puts(&b, "# HELP pipectl_worker_running 1 while the worker runs, 0 once it "
                          "stopped.\n# TYPE pipectl_worker_running gauge\n");
    for (size_t i = 0; i < m->nworkers; i++) {
        rc |= pc_buf_puts(&b, "pipectl_worker_running{worker=\"");
        rc |= put_label(&b, m->workers[i].name);
        rc |= pc_buf_puts(&b, "\",kind=\"");
        rc |= put_label(&b, m->workers[i].kind);
        rc |= pc_buf_printf(&b, "\"} %d\n", atomic_load(&m->workers[i].running));
    }
    rc |= pc_buf_puts(&b, "# HELP pipectl_consumer_lag Records in the topic partition not yet "
                          "committed by the sink (high watermark minus stored next offset).\n"
                          "# TYPE pipectl_consumer_lag gauge\n");
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nlags; i++) {
        rc |= pc_buf_puts(&b, "pipectl_consumer_lag{worker=\"");
        rc |= put_label(&b, m->lags[i].worker);
        rc |= pc_buf_puts(&b, "\",topic=\"");
        rc |= put_label(&b, m->lags[i].topic);
        rc |= pc_buf_printf(&b, "\",partition=\"%d\"} %lld\n", m->lags[i].partition,
                            (long long)m->lags[i].lag);
    }
    pthread_mutex_unlock(&m->lock);
    if (rc != 0) {
        pc_buf_free(&b);
        return pc_error_set(err, PC_ENOMEM, "out of memory rendering the metrics");
    }
    *out = pc_buf_detach(&b);
    return 0;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned int status, const char *type,
                               const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    pc_metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics\n");
    if (strcmp(url, "/metrics") != 0)
        return respond(c, MHD_HTTP_NOT_FOUND, "text/plain",
                       "pipectl run: metrics are at /metrics\n");
    char *text = NULL;
    pc_error err = {0};
    if (pc_metrics_render(m, pc_wall_ms(), &text, &err) != 0)
        return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", err.msg);
    enum MHD_Result ret = respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
    return ret;
}

/* Splits "host:port", "[v6]:port" or ":port" into host (NULL = any) and port. */
static int split_addr(const char *s, char *host, size_t hostsz, int *port)
{
    const char *colon = NULL, *hs = s, *he = NULL;
    if (s[0] == '[') {
        he = strchr(s, ']');
        if (he == NULL || he[1] != ':')
            return -1;
        hs = s + 1;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        he = colon;
    }
    size_t n = (size_t)(he - hs);
    if (n >= hostsz)
        return -1;
    memcpy(host, hs, n);
    host[n] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int pc_metrics_listen(pc_metrics *m, const char *addr_port, pc_error *err)
{
    int rc = 0;
    char host[256], portstr[16];
    int port = 0;
    struct addrinfo hints, *ai = NULL;

    if (m->daemon != NULL)
        return pc_error_set(err, PC_EINVAL, "metrics endpoint already listening on port %d",
                            m->port);
    if (addr_port == NULL || split_addr(addr_port, host, sizeof host, &port) != 0)
        return pc_error_set(err, PC_EINVAL,
                            "metrics address '%s' is not ADDR:PORT (e.g. 127.0.0.1:9464, "
                            ":9464 for every interface, [::1]:9464)",
                            addr_port ? addr_port : "");
    snprintf(portstr, sizeof portstr, "%d", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        rc = pc_error_set(err, PC_EINVAL, "metrics address '%s': cannot resolve '%s': %s",
                          addr_port, host, gai_strerror(gai));
        goto done;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR,
                                 ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32, MHD_OPTION_END);
    if (m->daemon == NULL) {
        rc = pc_error_set(err, PC_EUNAVAIL,
                          "cannot serve metrics on %s: the port is in use or the address is not "
                          "local; pick another --metrics ADDR:PORT",
                          addr_port);
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info != NULL && info->port != 0 ? (int)info->port : port;
done:
    if (ai != NULL)
        freeaddrinfo(ai);
    return rc;
}

int pc_metrics_port(const pc_metrics *m)
{
    return m != NULL && m->daemon != NULL ? m->port : 0;
}

void pc_metrics_free(pc_metrics *m)
{
    if (m == NULL)
        return;
    if (m->daemon != NULL)
        MHD_stop_daemon(m->daemon);
    for (size_t i = 0; i < m->nworkers; i++) {
        free(m->workers[i].name);
        free(m->workers[i].kind);
    }
    free(m->workers);
    for (size_t i = 0; i < m->nlags; i++) {
        free(m->lags[i].worker);
        free(m->lags[i].topic);
    }
    free(m->lags);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
