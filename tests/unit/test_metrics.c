/* test_metrics.c: pc_metrics_render, the Prometheus text `run --metrics` serves: every counter
 * of every worker, the commit age only once a worker committed, running, lag set and forgotten,
 * and label values escaped as the text format wants (\\, \" and \n). pc_metrics_render_json,
 * the dashboard's JSON: valid JSON (odd names included), and every sample of the text, no more
 * and no fewer, has the same value in the JSON rendered at the same moment, with and without
 * observed figures (archiver, backups, drift, observer); the history the page draws. No server
 * is started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker.h"

static void has(const char *text, const char *line)
{
    if (strstr(text, line) == NULL)
        fail_msg("metrics lack [%s] in:\n%s", line, text);
}

static void test_render(void **state)
{
    (void)state;
    pc_metrics *m = NULL;
    pc_error err = {0};
    pc_worker_stats a = {0}, b = {0};
    assert_int_equal(pc_metrics_new(&m, &err), 0);
    assert_int_equal(pc_metrics_add_worker(m, "users_in", "ingest", &a, &err), 0);
    assert_int_equal(pc_metrics_add_worker(m, "odd\"na\\me\n", "sink", &b, &err), 0);
    atomic_store(&a.records_in, 500);
    atomic_store(&a.records_out, 498);
    atomic_store(&a.batches, 5);
    atomic_store(&a.errors, 2);
    atomic_store(&a.dead_letters, 1);
    atomic_store(&a.last_commit_ms, 1000000);
    atomic_store(&b.records_out, 7);
    pc_metrics_set_running(m, "users_in", true);
    assert_int_equal(pc_metrics_set_lag(m, "odd\"na\\me\n", "users", 2, 42, &err), 0);
    assert_int_equal(pc_metrics_set_lag(m, "odd\"na\\me\n", "users", 3, 9, &err), 0);
    assert_int_equal(pc_metrics_set_lag(m, "odd\"na\\me\n", "users", 3, -1, &err), 0); /* forget */

    char *t = NULL;
    assert_int_equal(pc_metrics_render(m, 1002500, &t, &err), 0);
    has(t, "# TYPE pipectl_records_in_total counter\n");
    has(t, "pipectl_records_in_total{worker=\"users_in\"} 500\n");
    has(t, "pipectl_records_out_total{worker=\"users_in\"} 498\n");
    has(t, "pipectl_batches_total{worker=\"users_in\"} 5\n");
    has(t, "pipectl_errors_total{worker=\"users_in\"} 2\n");
    has(t, "pipectl_dead_letters_total{worker=\"users_in\"} 1\n");
    has(t, "pipectl_records_out_total{worker=\"odd\\\"na\\\\me\\n\"} 7\n");
    has(t, "pipectl_last_commit_age_seconds{worker=\"users_in\"} 2.500\n");
    /* never committed: no sample rather than a made-up age */
    assert_null(strstr(t, "pipectl_last_commit_age_seconds{worker=\"odd"));
    has(t, "pipectl_worker_running{worker=\"users_in\",kind=\"ingest\"} 1\n");
    has(t, "pipectl_worker_running{worker=\"odd\\\"na\\\\me\\n\",kind=\"sink\"} 0\n");
    has(t, "pipectl_consumer_lag{worker=\"odd\\\"na\\\\me\\n\",topic=\"users\",partition=\"2\"} 42\n");
    assert_null(strstr(t, "partition=\"3\""));
    /* one sample per line: no raw newline inside a label */
    for (const char *l = t; *l;) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        assert_true(l[0] == '#' || strstr(l, "} ") < nl);
        l = nl + 1;
    }
    free(t);
    pc_metrics_free(m);
}

/* ---------- the JSON against the text ---------- */

/* "name{labels}" -> value, as in the exposition text */
typedef struct sample {
    char key[640];
    double value;
} sample;

typedef struct samples {
    sample s[256];
    size_t n;
} samples;

static void add(samples *ss, const char *key, double v)
{
    assert_true(ss->n < 256);
    for (size_t i = 0; i < ss->n; i++)
        if (strcmp(ss->s[i].key, key) == 0)
            fail_msg("sample %s twice", key);
    snprintf(ss->s[ss->n].key, sizeof ss->s[ss->n].key, "%s", key);
    ss->s[ss->n++].value = v;
}

static void parse_text(const char *t, samples *ss)
{
    for (const char *l = t; *l;) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        if (l[0] != '#') {
            const char *sp = nl;
            while (sp > l && sp[-1] != ' ')
                sp--;
            char key[640];
            snprintf(key, sizeof key, "%.*s", (int)(sp - 1 - l), l);
            add(ss, key, strtod(sp, NULL));
        }
        l = nl + 1;
    }
}

/* A label value as the text escapes it. */
static void lbl(char *out, size_t n, const char *v)
{
    size_t o = 0;
    for (const char *p = v; *p && o + 3 < n; p++) {
        if (*p == '\\' || *p == '"') {
            out[o++] = '\\';
            out[o++] = *p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void add_num(samples *ss, const char *key, const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return; /* absent in the text too */
    assert_true(json_is_number(v));
    add(ss, key, json_number_value(v));
}

/* The JSON mapped to the Prometheus names README and worker.h document. */
static void parse_json(const char *text, samples *ss)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (j == NULL)
        fail_msg("not JSON (%s at %d): %s", je.text, je.position, text);
    char key[640], w[200], k2[200];
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(j, "workers"), i, x)
    {
        lbl(w, sizeof w, json_string_value(json_object_get(x, "name")));
        static const char *const f[] = {"records_in_total",   "records_out_total",
                                        "batches_total",      "errors_total",
                                        "dead_letters_total", "batch_duration_seconds_sum",
                                        "batch_duration_seconds_count",
                                        "last_commit_age_seconds"};
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
            snprintf(key, sizeof key, "pipectl_%s{worker=\"%s\"}", f[k], w);
            add_num(ss, key, json_object_get(x, f[k]));
        }
        lbl(k2, sizeof k2, json_string_value(json_object_get(x, "kind")));
        snprintf(key, sizeof key, "pipectl_worker_running{worker=\"%s\",kind=\"%s\"}", w, k2);
        add_num(ss, key, json_object_get(x, "running"));
    }
    json_array_foreach(json_object_get(j, "lag"), i, x)
    {
        lbl(w, sizeof w, json_string_value(json_object_get(x, "worker")));
        lbl(k2, sizeof k2, json_string_value(json_object_get(x, "topic")));
        snprintf(key, sizeof key, "pipectl_consumer_lag{worker=\"%s\",topic=\"%s\",partition=\"%d\"}",
                 w, k2, (int)json_integer_value(json_object_get(x, "partition")));
        add_num(ss, key, json_object_get(x, "lag"));
    }
    x = json_object_get(j, "archiver");
    if (!json_is_null(x)) {
        add_num(ss, "pipectl_archiver_archived_total", json_object_get(x, "archived_total"));
        add_num(ss, "pipectl_archiver_failed_total", json_object_get(x, "failed_total"));
        add_num(ss, "pipectl_archiver_failing", json_object_get(x, "failing"));
        add_num(ss, "pipectl_archiver_last_archived_timestamp_seconds",
                json_object_get(x, "last_archived_timestamp_seconds"));
        add_num(ss, "pipectl_archiver_last_failed_timestamp_seconds",
                json_object_get(x, "last_failed_timestamp_seconds"));
        const char *wal = json_string_value(json_object_get(x, "last_archived_wal"));
        if (wal != NULL) {
            lbl(w, sizeof w, wal);
            snprintf(key, sizeof key, "pipectl_archiver_last_archived_wal_info{wal=\"%s\"}", w);
            add(ss, key, 1);
        }
    }
    x = json_object_get(j, "backups");
    if (!json_is_null(x)) {
        add_num(ss, "pipectl_backup_count", json_object_get(x, "count"));
        add_num(ss, "pipectl_backup_newest_end_timestamp_seconds",
                json_object_get(x, "newest_end_timestamp_seconds"));
        add_num(ss, "pipectl_backup_newest_age_seconds", json_object_get(x, "newest_age_seconds"));
        add_num(ss, "pipectl_backup_late", json_object_get(x, "late"));
    }
    x = json_object_get(j, "drift");
    if (!json_is_null(x)) {
        add_num(ss, "pipectl_drift", json_object_get(x, "drift"));
        add_num(ss, "pipectl_drift_pending_actions", json_object_get(x, "pending_actions"));
    }
    x = json_object_get(j, "observer");
    if (!json_is_null(x)) {
        add_num(ss, "pipectl_observe_timestamp_seconds", json_object_get(x, "timestamp_seconds"));
        add_num(ss, "pipectl_observe_ok", json_object_get(x, "ok"));
    }
    json_decref(j);
}

/* Every sample of the text is in the JSON with the same value, and the other way round. */
static void same_figures(pc_metrics *m, int64_t now_ms)
{
    pc_error err = {0};
    char *t = NULL, *js = NULL;
    assert_int_equal(pc_metrics_render(m, now_ms, &t, &err), 0);
    assert_int_equal(pc_metrics_render_json(m, now_ms, &js, &err), 0);
    static samples a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    parse_text(t, &a);
    parse_json(js, &b);
    for (size_t i = 0; i < a.n; i++) {
        size_t k = 0;
        while (k < b.n && strcmp(a.s[i].key, b.s[k].key) != 0)
            k++;
        if (k == b.n)
            fail_msg("%s is in /metrics but not in the JSON:\n%s", a.s[i].key, js);
        if (a.s[i].value != b.s[k].value)
            fail_msg("%s: %.6f in /metrics, %.6f in the JSON", a.s[i].key, a.s[i].value,
                     b.s[k].value);
    }
    if (a.n != b.n)
        fail_msg("the JSON has %zu samples, /metrics %zu:\n%s\n%s", b.n, a.n, js, t);
    free(t);
    free(js);
}

static void test_json_equals_text(void **state)
{
    (void)state;
    pc_metrics *m = NULL;
    pc_error err = {0};
    pc_worker_stats a = {0}, b = {0};
    assert_int_equal(pc_metrics_new(&m, &err), 0);
    assert_int_equal(pc_metrics_set_identity(m, "users-eu", "run", &err), 0);
    assert_int_equal(pc_metrics_add_worker(m, "users_in", "ingest", &a, &err), 0);
    assert_int_equal(pc_metrics_add_worker(m, "odd\"na\\me\n\t", "sink", &b, &err), 0);
    atomic_store(&a.records_in, 500);
    atomic_store(&a.records_out, 498);
    atomic_store(&a.batches, 5);
    atomic_store(&a.batch_us, 1234567);
    atomic_store(&a.batches_timed, 5);
    atomic_store(&a.last_commit_ms, 1000000);
    atomic_store(&b.dead_letters, 3);
    pc_metrics_set_running(m, "users_in", true);
    assert_int_equal(pc_metrics_set_lag(m, "odd\"na\\me\n\t", "users", 1, 7, &err), 0);
    assert_int_equal(pc_metrics_set_lag(m, "odd\"na\\me\n\t", "users", 0, 42, &err), 0);
    /* before the observer's first round: workers and lag only */
    same_figures(m, 1002500);

    char *t = NULL;
    assert_int_equal(pc_metrics_render(m, 1002500, &t, &err), 0);
    has(t, "# TYPE pipectl_batch_duration_seconds summary\n");
    has(t, "pipectl_batch_duration_seconds_sum{worker=\"users_in\"} 1.234567\n");
    has(t, "pipectl_batch_duration_seconds_count{worker=\"users_in\"} 5\n");
    assert_null(strstr(t, "pipectl_archiver"));
    assert_null(strstr(t, "pipectl_backup"));
    assert_null(strstr(t, "pipectl_drift"));
    free(t);

    pc_metrics_observed o = {0};
    o.has_archiver = true;
    o.archive_mode = pc_strdup("on");
    o.archived_count = 17;
    o.failed_count = 2;
    o.last_archived_wal = pc_strdup("000000010000000000000011");
    o.last_archived_time = 1700000000;
    o.last_failed_time = 1690000000;
    o.has_backups = true;
    o.backup_repository = pc_strdup("/srv/repo");
    o.backup_count = 3;
    o.backup_newest_id = pc_strdup("20240101T000000Z");
    o.backup_newest_stop = 999; /* 1000000 ms = 1000 s: 1 s before "now" below, 3.5 s */
    o.backup_late = 1;
    o.drift = 1;
    o.drift_actions = 4;
    o.observed_ms = 1001000;
    o.error = pc_strdup("drift: NocoDB \"down\"");
    pc_metrics_publish(m, &o);
    assert_null(o.archive_mode); /* taken */
    same_figures(m, 1002500);

    assert_int_equal(pc_metrics_render(m, 1002500, &t, &err), 0);
    has(t, "pipectl_archiver_archived_total 17\n");
    has(t, "pipectl_archiver_failed_total 2\n");
    has(t, "pipectl_archiver_failing 0\n");
    has(t, "pipectl_archiver_last_archived_timestamp_seconds 1700000000\n");
    has(t, "pipectl_archiver_last_archived_wal_info{wal=\"000000010000000000000011\"} 1\n");
    has(t, "pipectl_backup_count 3\n");
    has(t, "pipectl_backup_newest_end_timestamp_seconds 999\n");
    has(t, "pipectl_backup_newest_age_seconds 3.500\n");
    has(t, "pipectl_backup_late 1\n");
    has(t, "pipectl_drift 1\n");
    has(t, "pipectl_drift_pending_actions 4\n");
    has(t, "pipectl_observe_ok 0\n");
    free(t);

    /* the JSON's strings: odd names and the observer's error survive the round trip */
    char *js = NULL;
    assert_int_equal(pc_metrics_render_json(m, 1002500, &js, &err), 0);
    json_t *j = json_loads(js, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "pipeline")), "users-eu");
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "run");
    json_t *w1 = json_array_get(json_object_get(j, "workers"), 1);
    assert_string_equal(json_string_value(json_object_get(w1, "name")), "odd\"na\\me\n\t");
    assert_true(json_is_null(json_object_get(w1, "last_commit_age_seconds")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "observer"), "error")),
        "drift: NocoDB \"down\"");
    /* lag sorted by worker, topic, partition */
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(j, "lag"), 0), "partition")),
                     0);
    json_decref(j);
    free(js);

    /* a second round that saw less: what it did not see disappears from both */
    pc_metrics_observed o2 = {0};
    o2.backup_late = -1;
    o2.drift = -1;
    o2.observed_ms = 1002000;
    pc_metrics_publish(m, &o2);
    assert_int_equal(pc_metrics_render(m, 1002500, &t, &err), 0);
    assert_null(strstr(t, "pipectl_archiver"));
    assert_null(strstr(t, "pipectl_drift"));
    has(t, "pipectl_observe_ok 1\n");
    free(t);
    same_figures(m, 1002500);
    pc_metrics_free(m);
}

static void test_history(void **state)
{
    (void)state;
    pc_metrics *m = NULL;
    pc_error err = {0};
    pc_worker_stats a = {0};
    assert_int_equal(pc_metrics_new(&m, &err), 0);
    assert_int_equal(pc_metrics_add_worker(m, "sink1", "sink", &a, &err), 0);
    char *js = NULL;
    assert_int_equal(pc_metrics_render_json(m, 5000, &js, &err), 0);
    json_t *j = json_loads(js, 0, NULL);
    assert_non_null(j); /* no point yet: empty arrays, still JSON */
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "history"), "t")), 0);
    json_decref(j);
    free(js);
    /* more points than the ring holds: the newest PC_METRICS_HISTORY, oldest first */
    for (int k = 0; k < PC_METRICS_HISTORY + 5; k++) {
        atomic_store(&a.records_out, (uint64_t)k * 100);
        assert_int_equal(pc_metrics_set_lag(m, "sink1", "t", 0, k, &err), 0);
        assert_int_equal(pc_metrics_set_lag(m, "sink1", "t", 1, 1, &err), 0);
        pc_metrics_sample(m, 1000 + (int64_t)k * 2000);
    }
    assert_int_equal(pc_metrics_render_json(m, 999999, &js, &err), 0);
    j = json_loads(js, 0, NULL);
    assert_non_null(j);
    json_t *h = json_object_get(j, "history");
    assert_int_equal(json_integer_value(json_object_get(h, "interval_ms")), PC_METRICS_SAMPLE_MS);
    json_t *tt = json_object_get(h, "t");
    assert_int_equal(json_array_size(tt), PC_METRICS_HISTORY);
    assert_int_equal(json_integer_value(json_array_get(tt, 0)), 1000 + 5 * 2000);
    json_t *out = json_object_get(json_array_get(json_object_get(h, "workers"), 0), "records_out");
    assert_int_equal(json_integer_value(json_array_get(out, 0)), 500);
    assert_int_equal(json_integer_value(json_array_get(out, PC_METRICS_HISTORY - 1)),
                     (PC_METRICS_HISTORY + 4) * 100);
    json_t *lag = json_array_get(json_object_get(h, "lag"), 0);
    assert_string_equal(json_string_value(json_object_get(lag, "worker")), "sink1");
    /* the sink's total over its partitions */
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(lag, "total"), PC_METRICS_HISTORY - 1)),
        PC_METRICS_HISTORY + 4 + 1);
    json_decref(j);
    free(js);
    pc_metrics_free(m);
}

static void test_batch_timed(void **state)
{
    (void)state;
    pc_worker_stats s = {0};
    int64_t t0 = pc_worker_clock_us();
    pc_sleep_ms(5);
    pc_worker_batch_timed(&s, t0);
    assert_int_equal(atomic_load(&s.batches_timed), 1);
    assert_true(atomic_load(&s.batch_us) >= 5000);
    assert_true(atomic_load(&s.batch_us) < 5000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render),
                                       cmocka_unit_test(test_json_equals_text),
                                       cmocka_unit_test(test_history),
                                       cmocka_unit_test(test_batch_timed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
