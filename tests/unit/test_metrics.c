/* test_metrics.c: pc_metrics_render, the Prometheus text `run --metrics` serves: every counter
 * of every worker, the commit age only once a worker committed, running, lag set and forgotten,
 * and label values escaped as the text format wants (\\, \" and \n). No server is started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
