/* test_manifest.c: pkg/manifest. Most cases are data: tests/unit/cases/manifest/bad/NAME.yaml
 * with NAME.expect holding the expected first diagnostic ("NAME.yaml:LINE:COL: " exactly, then
 * a substring of the message), and good/NAME.yaml which must load without a diagnostic. The
 * rest checks env expansion, defaults, units, redaction and the example manifests. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "manifest.h"

/* ---------- helpers ---------- */

typedef struct fake_env {
    const char *const *pairs; /* name, value, name, value, ..., NULL */
} fake_env;

static const char *fake_getenv(const char *name, void *ctx)
{
    const fake_env *e = ctx;
    for (size_t i = 0; e->pairs[i] != NULL; i += 2)
        if (strcmp(e->pairs[i], name) == 0)
            return e->pairs[i + 1];
    return NULL;
}

static const char *const k_case_env[] = {
    "NOCODB_TOKEN", "tok-123", "KAFKA_BOOTSTRAP", "broker:9092", "EMPTY", "",
    "PARTS",        "6",       "CASE_USER",       "alice",       NULL};

static char *cases_dir(const char *sub)
{
    const char *root = getenv("PC_CASES");
    if (root == NULL)
        fail_msg("PC_CASES is not set (CTest sets it to tests/unit/cases)");
    char *p = pc_asprintf("%s/manifest/%s", root, sub);
    assert_non_null(p);
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the files in dir ending in suffix; returns the count. */
static size_t list_files(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        fail_msg("cannot open %s", dir);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), sl = strlen(suffix);
        if (len <= sl || strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof *names);
        assert_non_null(names);
        names[n++] = pc_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char buf[1024];
    char *r = fgets(buf, sizeof buf, f);
    fclose(f);
    if (r == NULL)
        return NULL;
    buf[strcspn(buf, "\n")] = '\0';
    return pc_strdup(buf);
}

static pc_manifest *parse_ok(const char *text, const char *const *env)
{
    fake_env fe = {env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    int rc = pc_manifest_parse(&m, "t.yaml", text, strlen(text), fake_getenv, &fe, &d, &err);
    if (rc != 0) {
        for (size_t i = 0; i < d.n; i++) {
            char *l = pc_diag_format(&d, i);
            print_error("%s\n", l);
            free(l);
        }
        fail_msg("parse failed: %s", err.msg);
    }
    assert_int_equal(d.n, 0);
    pc_diags_free(&d);
    return m;
}

/* The first diagnostic for text, formatted (caller frees); asserts the parse failed. */
static char *parse_first_error(const char *text, size_t len, const char *const *env, size_t *ndiag)
{
    fake_env fe = {env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    int rc = pc_manifest_parse(&m, "t.yaml", text, len, fake_getenv, &fe, &d, &err);
    assert_int_equal(rc, PC_EINVAL);
    assert_null(m);
    assert_true(d.n >= 1);
    assert_int_equal(err.code, PC_EINVAL);
    char *l = pc_diag_format(&d, 0);
    if (ndiag != NULL)
        *ndiag = d.n;
    pc_diags_free(&d);
    return l;
}

static const char k_base[] = "apiVersion: pipectl/v1\n"
                             "kind: Pipeline\n"
                             "metadata: {name: demo}\n";

/* ---------- table-driven cases ---------- */

static void test_bad_cases(void **state)
{
    (void)state;
    char *dir = cases_dir("bad");
    char **names = NULL;
    size_t n = list_files(dir, ".yaml", &names);
    size_t failures = 0;
    fake_env fe = {k_case_env};
    for (size_t i = 0; i < n; i++) {
        char *path = pc_asprintf("%s/%s", dir, names[i]);
        char *stem = pc_strndup(names[i], strlen(names[i]) - 5);
        char *xpath = pc_asprintf("%s/%s.expect", dir, stem);
        char *expect = read_first_line(xpath);
        if (expect == NULL) {
            print_error("%s: missing or empty %s\n", names[i], xpath);
            failures++;
            goto next;
        }
        /* "NAME.yaml:L:C: substring" -> prefix "NAME.yaml:L:C: " and the substring */
        const char *colon = strchr(expect, ':');
        const char *sep = colon ? strstr(colon + 1, ": ") : NULL;
        if (sep == NULL) {
            print_error("%s: malformed expect line '%s'\n", names[i], expect);
            failures++;
            goto next;
        }
        size_t plen = (size_t)(sep + 2 - expect);
        const char *want_msg = sep + 2;

        pc_manifest *m = NULL;
        pc_diags d = {0};
        pc_error err = {0};
        int rc = pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err);
        if (rc != PC_EINVAL || m != NULL || d.n == 0) {
            print_error("%s: expected PC_EINVAL with diagnostics, got rc=%d n=%zu (%s)\n", names[i],
                        rc, d.n, err.msg);
            failures++;
        } else {
            char *line = pc_diag_format(&d, 0);
            const char *base = line + strlen(dir) + 1; /* drop "DIR/" */
            if (strncmp(line, dir, strlen(dir)) != 0 || strncmp(base, expect, plen) != 0 ||
                strstr(base + plen, want_msg) == NULL) {
                print_error("%s:\n  expected: %s\n  got:      %s\n", names[i], expect, base);
                failures++;
            }
            /* diagnostics are sorted by position */
            for (size_t k = 1; k < d.n; k++) {
                const pc_pos *a = &d.items[k - 1].pos, *b = &d.items[k].pos;
                if (a->line > b->line || (a->line == b->line && a->col > b->col)) {
                    print_error("%s: diagnostics not sorted\n", names[i]);
                    failures++;
                }
            }
            free(line);
        }
        pc_manifest_free(m);
        pc_diags_free(&d);
    next:
        free(path);
        free(stem);
        free(xpath);
        free(expect);
        free(names[i]);
    }
    free(names);
    free(dir);
    if (n < 25)
        fail_msg("only %zu bad cases found; expected at least 25", n);
    if (failures > 0)
        fail_msg("%zu of %zu bad manifest cases failed", failures, n);
}

static void test_good_cases(void **state)
{
    (void)state;
    char *dir = cases_dir("good");
    char **names = NULL;
    size_t n = list_files(dir, ".yaml", &names);
    size_t failures = 0;
    fake_env fe = {k_case_env};
    for (size_t i = 0; i < n; i++) {
        char *path = pc_asprintf("%s/%s", dir, names[i]);
        pc_manifest *m = NULL;
        pc_diags d = {0};
        pc_error err = {0};
        int rc = pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err);
        if (rc != 0 || m == NULL || d.n != 0) {
            print_error("%s: rc=%d %s\n", names[i], rc, err.msg);
            for (size_t k = 0; k < d.n; k++) {
                char *l = pc_diag_format(&d, k);
                print_error("  %s\n", l);
                free(l);
            }
            failures++;
        } else {
            /* redaction must leave valid YAML that parses to the same shape */
            char *red = NULL;
            pc_error e2 = {0};
            if (pc_manifest_redacted_text(m, &red, &e2) != 0) {
                print_error("%s: redaction failed: %s\n", names[i], e2.msg);
                failures++;
            }
            free(red);
        }
        pc_manifest_free(m);
        pc_diags_free(&d);
        free(path);
        free(names[i]);
    }
    free(names);
    free(dir);
    if (n < 3)
        fail_msg("only %zu good cases found", n);
    if (failures > 0)
        fail_msg("%zu of %zu good manifest cases failed", failures, n);
}


/* kafka.security: what a worker inherits, what it replaces, and the secrets kept out of the
 * redacted text (tests/unit/cases/manifest/good/security.yaml). */
static void test_security(void **state)
{
    (void)state;
    char *dir = cases_dir("good");
    char *path = pc_asprintf("%s/security.yaml", dir);
    fake_env fe = {k_case_env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err), 0);
    const pc_mf_kafka_auth *a = &m->kafka_auth;
    assert_string_equal(a->protocol, "sasl_ssl");
    assert_string_equal(a->sasl_mechanism, "SCRAM-SHA-512");
    assert_string_equal(a->sasl_username, "admin");
    assert_string_equal(a->sasl_password, "alice");
    assert_string_equal(a->principal, "User:admin");
    assert_true(a->verify_hostname);
    assert_non_null(strstr(a->ca_file, "/good/tls/ca.pem"));
    assert_true(a->ca_file[0] == '/');
    /* the source: its own SASL user, password from a file, the controller's CA and mechanism */
    const pc_mf_kafka_auth *s = &m->sources[0].auth;
    assert_true(m->sources[0].own_auth);
    assert_string_equal(s->protocol, "sasl_ssl");
    assert_string_equal(s->sasl_mechanism, "SCRAM-SHA-512");
    assert_string_equal(s->sasl_username, "ingest");
    assert_string_equal(s->sasl_password, "ingest-pw-from-file");
    assert_string_equal(s->principal, "User:ingest");
    assert_string_equal(s->ca_file, a->ca_file);
    /* the sink: mutual TLS, none of the controller's SASL credentials */
    const pc_mf_kafka_auth *k = &m->sinks[0].auth;
    assert_string_equal(k->protocol, "ssl");
    assert_null(k->sasl_username);
    assert_null(k->sasl_password);
    assert_non_null(strstr(k->cert_file, "/tls/client.pem"));
    assert_non_null(strstr(k->key_file, "/tls/client.key"));
    assert_false(k->verify_hostname);
    assert_string_equal(k->principal, "User:CN=pipectl-mtls");
    assert_string_equal(k->ca_file, a->ca_file);
    /* client_config in order, with positions */
    assert_int_equal(m->nclient_config, 2);
    assert_string_equal(m->client_config[0].key, "socket.keepalive.enable");
    assert_string_equal(m->client_config[0].value, "true");
    assert_int_equal(m->client_config[0].key_pos.line, 12);
    /* acls and their defaults */
    assert_true(m->derive_acls);
    assert_int_equal(m->nacls, 3);
    assert_string_equal(m->acls[0].pattern, "prefixed");
    assert_int_equal(m->acls[0].noperations, 2);
    assert_string_equal(m->acls[1].operations[0], "read");
    assert_string_equal(m->acls[1].permission, "allow");
    assert_string_equal(m->acls[1].host, "*");
    assert_string_equal(m->acls[2].name, "kafka-cluster");
    assert_string_equal(m->acls[2].host, "10.0.0.1");
    char *g = pc_manifest_sink_group(m, &m->sinks[0]);
    assert_string_equal(g, "pipectl-demo-events_to_pg");
    free(g);
    /* no secret in the redacted text (the ${VAR} reference stays as written) */
    char *red = NULL;
    assert_int_equal(pc_manifest_redacted_text(m, &red, &err), 0);
    assert_null(strstr(red, "not-used-but-redacted"));
    assert_non_null(strstr(red, "${CASE_USER}"));
    free(red);
    pc_manifest_free(m);
    pc_diags_free(&d);
    free(path);
    free(dir);
}

/* A worker without a security block runs as the controller; plaintext by default. */
static void test_security_defaults(void **state)
{
    (void)state;
    static const char text[] = "apiVersion: pipectl/v1\nkind: Pipeline\nmetadata: {name: d}\n"
                               "kafka:\n  bootstrap: h:9092\n  security:\n    sasl: {mechanism: "
                               "PLAIN, username: u, password: p}\n  topics: [{name: t, "
                               "partitions: 1}]\nsources:\n  - {name: s, type: randomuser, "
                               "topic: t}\n";
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    fake_env fe = {k_case_env};
    assert_int_equal(pc_manifest_parse(&m, "x.yaml", text, sizeof text - 1, fake_getenv, &fe,
                                       &d, &err),
                     0);
    assert_string_equal(m->kafka_auth.protocol, "sasl_ssl"); /* implied by the sasl block */
    assert_string_equal(m->sources[0].auth.sasl_username, "u");
    assert_string_equal(m->sources[0].auth.sasl_password, "p");
    assert_string_equal(m->sources[0].auth.principal, "User:u");
    assert_false(m->sources[0].own_auth);
    pc_manifest_free(m);
    pc_diags_free(&d);
    static const char plain[] = "apiVersion: pipectl/v1\nkind: Pipeline\nmetadata: {name: d}\n"
                                "kafka:\n  bootstrap: h:9092\n";
    assert_int_equal(pc_manifest_parse(&m, "y.yaml", plain, sizeof plain - 1, fake_getenv, &fe,
                                       &d, &err),
                     0);
    assert_string_equal(m->kafka_auth.protocol, "plaintext");
    assert_null(m->kafka_auth.principal);
    pc_manifest_free(m);
    pc_diags_free(&d);
}

/* A 3 MB value is quoted cut, with its length stated: the diagnostic stays one short line. */
static void test_long_value_cut(void **state)
{
    (void)state;
    size_t n = 3u << 20;
    char *text = malloc(n + 256);
    assert_non_null(text);
    int k = snprintf(text, 256, "apiVersion: pipectl/v1\nkind: Pipeline\nmetadata: {name: ");
    memset(text + k, 'N', n);
    strcpy(text + k + n, "}\n");
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    fake_env fe = {k_case_env};
    assert_int_equal(pc_manifest_parse(&m, "big.yaml", text, strlen(text), fake_getenv, &fe, &d,
                                       &err),
                     PC_EINVAL);
    assert_true(d.n >= 1);
    char *l = pc_diag_format(&d, 0);
    assert_true(strlen(l) < 600);
    assert_non_null(strstr(l, "... (3145728 bytes in all)"));
    assert_null(strchr(l, '\n'));
    free(l);
    pc_diags_free(&d);
    free(text);
}

static void test_example_manifests(void **state)
{
    (void)state;
    static const char *const env[] = {
        "PG_PASSWORD", "pw", "NOCODB_TOKEN", "tok", "NOCODB_DB_PASSWORD", "nocopw",
        "KAFKA_ADMIN_PASSWORD", "kadm", "KAFKA_INGEST_PASSWORD", "king", "KAFKA_SINK_PASSWORD",
        "ksnk", NULL};
    fake_env fe = {env};
    const char *src = getenv("PC_SRC");
    if (src == NULL)
        fail_msg("PC_SRC is not set (CTest sets it to the source root)");
    static const char *const files[] = {"quickstart.yaml", "production.yaml"};
    for (size_t i = 0; i < 2; i++) {
        char *path = pc_asprintf("%s/manifests/%s", src, files[i]);
        pc_manifest *m = NULL;
        pc_diags d = {0};
        pc_error err = {0};
        int rc = pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err);
        for (size_t k = 0; k < d.n; k++) {
            char *l = pc_diag_format(&d, k);
            print_error("%s\n", l);
            free(l);
        }
        assert_int_equal(rc, 0);
        assert_non_null(m);
        assert_non_null(m->name);
        assert_true(m->ntopics >= 2);
        assert_true(m->nsinks >= 1);
        assert_true(m->git.declared);
        assert_true(m->dir[0] == '/');
        char *red = NULL;
        assert_int_equal(pc_manifest_redacted_text(m, &red, &err), 0);
        assert_null(strstr(red, "pw\"")); /* expanded values never land in the text */
        free(red);
        if (i == 0) {
            const pc_mf_topic *t = pc_manifest_find_topic(m, "users_created");
            assert_non_null(t);
            assert_int_equal(t->partitions, 3);
            assert_string_equal(pc_kvlist_get(&t->config, "retention.ms"), "604800000");
            assert_string_equal(m->kafka_bootstrap, "127.0.0.1:9092");
            assert_string_equal(m->pg_dsn,
                                "host=127.0.0.1 port=5432 dbname=pipeline user=postgres");
            const pc_mf_table *tb = pc_manifest_find_table(m, "raw", "users");
            assert_non_null(tb);
            assert_int_equal(tb->ncolumns, 12);
            assert_string_equal(m->sinks[0].mode, "upsert");
            assert_int_equal(m->archiving.archive_timeout_s, 60);
            char *want = pc_asprintf("%s/.pipectl/repo", m->dir);
            assert_string_equal(m->archiving.repository, want);
            free(want);
            assert_string_equal(m->backups.schedule, "0 3 * * *");
            assert_int_equal(m->backups.retention_full, 7);
        } else {
            assert_string_equal(m->nocodb.token, "tok");
            assert_true(m->nocodb.read_only);
            assert_string_equal(m->git.push, "origin");
            assert_int_equal(m->topics[0].replication_factor, 3);
            assert_true(m->nschemas >= 2);
        }
        pc_manifest_free(m);
        pc_diags_free(&d);
        free(path);
    }
}

/* ---------- expansion ---------- */

static void test_env_expansion(void **state)
{
    (void)state;
    static const char *const env[] = {"HOST", "db.internal", "PORT", "6543", "EMPTY",
                                      "",     "PARTS",       "4",    NULL};
    char *text = pc_asprintf("%s"
                             "kafka:\n"
                             "  bootstrap: ${HOST}:${MISSING_PORT:-9092}\n"
                             "  topics:\n"
                             "    - {name: t, partitions: \"${PARTS}\", replication_factor: "
                             "'${RF:-2}'}\n"
                             "postgres:\n"
                             "  dsn: 'host=${HOST} port=${PORT} application_name=$$app ${EMPTY:-x}"
                             " cost=$5 lit=$${HOST}'\n",
                             k_base);
    pc_manifest *m = parse_ok(text, env);
    assert_string_equal(m->kafka_bootstrap, "db.internal:9092");
    assert_int_equal(m->topics[0].partitions, 4);
    assert_int_equal(m->topics[0].replication_factor, 2);
    assert_string_equal(m->pg_dsn,
                        "host=db.internal port=6543 application_name=$app x cost=$5 lit=${HOST}");
    /* raw keeps the text as written */
    assert_non_null(strstr(m->raw, "${HOST}:${MISSING_PORT:-9092}"));
    assert_int_equal(m->raw_len, strlen(text));
    pc_manifest_free(m);

    /* every unset variable is reported, each at its value */
    char *bad = pc_asprintf("%s"
                            "kafka:\n"
                            "  bootstrap: ${NOPE_A}\n"
                            "postgres:\n"
                            "  dsn: x ${NOPE_B}\n",
                            k_base);
    fake_env fe = {env};
    pc_manifest *m2 = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(pc_manifest_parse(&m2, "t.yaml", bad, strlen(bad), fake_getenv, &fe, &d, &err),
                     PC_EINVAL);
    assert_int_equal(d.n, 2);
    char *l0 = pc_diag_format(&d, 0), *l1 = pc_diag_format(&d, 1);
    assert_string_equal(l0, "t.yaml:5:14: ${NOPE_A} is not set; export it or write "
                            "${NOPE_A:-default}");
    assert_string_equal(l1, "t.yaml:7:8: ${NOPE_B} is not set; export it or write "
                            "${NOPE_B:-default}");
    free(l0);
    free(l1);
    pc_diags_free(&d);
    free(bad);
    free(text);
}

/* ---------- defaults, units, types ---------- */

static void test_defaults(void **state)
{
    (void)state;
    char *text =
        pc_asprintf("%s"
                    "kafka:\n"
                    "  bootstrap: k:9092\n"
                    "  topics: [{name: t, partitions: 1}]\n"
                    "postgres:\n"
                    "  dsn: host=x\n"
                    "  schemas:\n"
                    "    - name: s\n"
                    "      tables:\n"
                    "        - name: tb\n"
                    "          columns:\n"
                    "            - {name: id, type: UUID, primary_key: true, nullable: true}\n"
                    "            - {name: v, type: text}\n"
                    "  archiving: {repository: ../repo/./x}\n"
                    "sources: [{name: src, type: randomuser, topic: t}]\n"
                    "sinks: [{name: snk, topic: t, table: s.tb, mapping: {id: a.b}}]\n"
                    "backups: {schedule: '*/15 0-6,22-23 1,15 jan-mar,dec sun'}\n"
                    "nocodb: {url: 'http://n:8080', email: a@b, password: pw}\n"
                    "git: {repo: state}\n",
                    k_base);
    pc_manifest *m = parse_ok(text, k_case_env);
    assert_int_equal(m->topics[0].replication_factor, 1);
    const pc_mf_table *tb = pc_manifest_find_table(m, "s", "tb");
    assert_non_null(tb);
    assert_null(pc_manifest_find_table(m, "s", "nope"));
    assert_null(pc_manifest_find_topic(m, "nope"));
    assert_string_equal(tb->columns[0].type, "uuid");
    assert_true(tb->columns[0].primary_key);
    assert_false(tb->columns[0].nullable); /* forced */
    assert_true(tb->columns[1].nullable);
    assert_true(m->archiving.declared);
    assert_true(m->archiving.enabled);
    assert_string_equal(m->archiving.wal_level, "replica");
    assert_int_equal(m->archiving.archive_timeout_s, 0);
    char *parent = pc_strdup(m->dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent)
        *slash = '\0';
    char *want = pc_asprintf("%s/repo/x", strcmp(parent, m->dir) == 0 ? "" : parent);
    assert_string_equal(m->archiving.repository, want);
    free(want);
    free(parent);
    assert_string_equal(m->sources[0].key, "login.uuid");
    assert_string_equal(m->sources[0].url, "https://randomuser.me/api/");
    assert_int_equal(m->sources[0].batch, 100);
    assert_int_equal(m->sources[0].interval_ms, 1000);
    assert_string_equal(m->sinks[0].mode, "insert");
    assert_int_equal(m->sinks[0].batch_max_records, 5000);
    assert_int_equal(m->sinks[0].batch_max_wait_ms, 200);
    assert_null(m->sinks[0].dead_letter);
    assert_string_equal(m->backups.compression, "zstd");
    assert_int_equal(m->backups.retention_full, 0);
    assert_string_equal(m->git.branch, "main");
    assert_string_equal(m->git.path, "demo");
    assert_null(m->git.push);
    char *gw = pc_asprintf("%s/state", m->dir);
    assert_string_equal(m->git.repo, gw);
    free(gw);
    assert_string_equal(m->nocodb.base, "demo");
    assert_false(m->nocodb.read_only);
    assert_true(m->backups.declared);
    pc_manifest_free(m);
    free(text);
}

static void test_units(void **state)
{
    (void)state;
    char *text = pc_asprintf("%s"
                             "kafka:\n"
                             "  bootstrap: k:9092\n"
                             "  topics:\n"
                             "    - name: t\n"
                             "      partitions: 1\n"
                             "      config:\n"
                             "        retention.ms: 7d\n"
                             "        segment.ms: 1h30m\n"
                             "        delete.retention.ms: 86400000\n"
                             "        local.retention.ms: -1\n"
                             "        retention.bytes: 1GiB\n"
                             "        segment.bytes: 512MiB\n"
                             "        max.message.bytes: 1GB\n"
                             "        index.interval.bytes: 4kB\n"
                             "        preallocate: True\n"
                             "        unclean.leader.election.enable: false\n"
                             "        min.insync.replicas: 2\n"
                             "        min.cleanable.dirty.ratio: 0.5\n"
                             "        cleanup.policy: compact,delete\n"
                             "        message.format.version: \"true\"\n"
                             "postgres:\n"
                             "  dsn: x\n"
                             "  schemas:\n"
                             "    - name: s\n"
                             "      tables:\n"
                             "        - name: tb\n"
                             "          columns:\n"
                             "            - {name: a, type: VARCHAR(10)}\n"
                             "            - {name: b, type: Double   Precision}\n"
                             "            - {name: c, type: \"numeric( 10 , 2 )\"}\n"
                             "            - {name: d, type: character varying(5)}\n"
                             "            - {name: e, type: 'text[]'}\n"
                             "            - {name: f, type: int8}\n"
                             "            - {name: g, type: inet}\n"
                             "  archiving: {repository: /r, archive_timeout: 5m}\n"
                             "sources: [{name: s1, type: randomuser, topic: t, interval: 1h30m,"
                             " batch: 5000}]\n"
                             "sinks:\n"
                             "  - {name: k1, topic: t, table: s.tb, mapping: {a: x},"
                             " batch: {max_records: 10, max_wait: 2s}}\n"
                             "  - {name: k2, topic: t, table: s.tb, mapping: {a: x},"
                             " batch: {max_wait: 750}}\n",
                             k_base);
    pc_manifest *m = parse_ok(text, k_case_env);
    const pc_kvlist *c = &m->topics[0].config;
    assert_string_equal(pc_kvlist_get(c, "retention.ms"), "604800000");
    assert_string_equal(pc_kvlist_get(c, "segment.ms"), "5400000");
    assert_string_equal(pc_kvlist_get(c, "delete.retention.ms"), "86400000");
    assert_string_equal(pc_kvlist_get(c, "local.retention.ms"), "-1");
    assert_string_equal(pc_kvlist_get(c, "retention.bytes"), "1073741824");
    assert_string_equal(pc_kvlist_get(c, "segment.bytes"), "536870912");
    assert_string_equal(pc_kvlist_get(c, "max.message.bytes"), "1000000000");
    assert_string_equal(pc_kvlist_get(c, "index.interval.bytes"), "4000");
    assert_string_equal(pc_kvlist_get(c, "preallocate"), "true");
    assert_string_equal(pc_kvlist_get(c, "unclean.leader.election.enable"), "false");
    assert_string_equal(pc_kvlist_get(c, "min.insync.replicas"), "2");
    assert_string_equal(pc_kvlist_get(c, "min.cleanable.dirty.ratio"), "0.5");
    assert_string_equal(pc_kvlist_get(c, "cleanup.policy"), "compact,delete");
    assert_string_equal(pc_kvlist_get(c, "message.format.version"), "true");
    const pc_mf_table *tb = pc_manifest_find_table(m, "s", "tb");
    assert_string_equal(tb->columns[0].type, "varchar(10)");
    assert_string_equal(tb->columns[1].type, "double precision");
    assert_string_equal(tb->columns[2].type, "numeric(10,2)");
    assert_string_equal(tb->columns[3].type, "character varying(5)");
    assert_string_equal(tb->columns[4].type, "text[]");
    assert_string_equal(tb->columns[5].type, "int8");
    assert_int_equal(m->archiving.archive_timeout_s, 300);
    assert_int_equal(m->sources[0].interval_ms, 5400000);
    assert_int_equal(m->sources[0].batch, 5000);
    assert_int_equal(m->sinks[0].batch_max_records, 10);
    assert_int_equal(m->sinks[0].batch_max_wait_ms, 2000);
    assert_int_equal(m->sinks[1].batch_max_wait_ms, 750);
    pc_manifest_free(m);
    free(text);

    /* archive_timeout as a bare integer means seconds */
    char *t2 = pc_asprintf("%spostgres: {dsn: x, archiving: {repository: /r, archive_timeout: "
                           "120}}\n",
                           k_base);
    m = parse_ok(t2, k_case_env);
    assert_int_equal(m->archiving.archive_timeout_s, 120);
    pc_manifest_free(m);
    free(t2);
}

/* ---------- errors: all of them, sorted; bounds ---------- */

static void test_all_errors_sorted(void **state)
{
    (void)state;
    const char *text = "apiVersion: pipectl/v1\n"
                       "kind: Pipeline\n"
                       "metadata: {name: demo}\n"
                       "kafka:\n"
                       "  bootstrap: k:9092\n"
                       "  topics:\n"
                       "    - {name: a, partitions: 0}\n"
                       "    - {name: a, partitions: x, replication_factor: 0}\n"
                       "backups: {schedule: '61 * * * *'}\n";
    fake_env fe = {k_case_env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(
        pc_manifest_parse(&m, "t.yaml", text, strlen(text), fake_getenv, &fe, &d, &err), PC_EINVAL);
    const char *want[] = {
        "t.yaml:7:29: partitions must be between 1 and 1000000, got 0",
        "t.yaml:8:14: duplicate topic 'a' (first declared at line 7, column 14)",
        "t.yaml:8:29: partitions must be an integer, got string 'x'",
        "t.yaml:8:52: replication_factor must be between 1 and 32767, got 0",
        "t.yaml:9:10: backups needs a postgres block (the database to back up, and "
        "archiving.repository)",
        "t.yaml:9:21: backups.schedule: cron expression '61 * * * *': minute value 61 is out of "
        "range 0-59",
    };
    assert_int_equal(d.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < d.n; i++) {
        char *l = pc_diag_format(&d, i);
        assert_string_equal(l, want[i]);
        free(l);
    }
    assert_non_null(strstr(err.msg, "t.yaml:7:29"));
    pc_diags_free(&d);
}

static void test_bounds(void **state)
{
    (void)state;
    /* larger than 4 MiB: refused before parsing */
    size_t big = 4u * 1024u * 1024u + 10;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    char *l = parse_first_error(text, big, k_case_env, NULL);
    assert_non_null(strstr(l, "t.yaml:1:1: manifest is"));
    assert_non_null(strstr(l, "4 MiB"));
    free(l);
    free(text);

    /* an alias bomb is refused at the first alias, nothing is expanded */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
    fake_env fe = {k_case_env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(
        pc_manifest_parse(&m, "t.yaml", bomb, strlen(bomb), fake_getenv, &fe, &d, &err), PC_EINVAL);
    bool seen = false;
    size_t aliases = 0;
    for (size_t i = 0; i < d.n; i++) {
        char *one = pc_diag_format(&d, i);
        seen |= strcmp(one, "t.yaml:2:8: YAML aliases (*a) are not supported in a manifest; "
                            "write the value out") == 0;
        aliases += strstr(one, "aliases") != NULL;
        free(one);
    }
    assert_true(seen);
    assert_int_equal(aliases, 18); /* one per alias, each reported, none expanded */
    pc_diags_free(&d);

    /* NUL inside a quoted value (escape) and raw bytes */
    const char *esc = "apiVersion: \"pipectl/v1\\0\"\nkind: Pipeline\nmetadata: {name: x}\n";
    l = parse_first_error(esc, strlen(esc), k_case_env, NULL);
    assert_non_null(strstr(l, "t.yaml:1:13: value contains a NUL character"));
    free(l);
    const char raw[] = "apiVersion: pipe\0ctl/v1\n";
    l = parse_first_error(raw, sizeof raw - 1, k_case_env, NULL);
    assert_non_null(strstr(l, "t.yaml:1:17: manifest contains a NUL byte"));
    free(l);
    /* UTF-16 with a BOM is not UTF-8 */
    const char u16[] = "\xff\xfe"
                       "a\0:\0 \0b\0";
    l = parse_first_error(u16, sizeof u16 - 1, k_case_env, NULL);
    assert_non_null(strstr(l, "t.yaml:1:1:"));
    free(l);
    /* scalar root, null root */
    l = parse_first_error("hello\n", 6, k_case_env, NULL);
    assert_non_null(strstr(l, "t.yaml:1:1: manifest must be a mapping"));
    free(l);
    l = parse_first_error("~\n", 2, k_case_env, NULL);
    assert_string_equal(l, "t.yaml:1:1: manifest is empty");
    free(l);
}

static void test_load_errors(void **state)
{
    (void)state;
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(pc_manifest_load(&m, "/nonexistent/pipeline.yaml", NULL, NULL, &d, &err),
                     PC_EIO);
    assert_null(m);
    assert_int_equal(d.n, 0);
    assert_non_null(strstr(err.msg, "/nonexistent/pipeline.yaml"));
    pc_error_clear(&err);
    assert_int_equal(pc_manifest_load(&m, "/", NULL, NULL, &d, &err), PC_EIO);
    pc_diags_free(&d);
    pc_diags_free(NULL);
    pc_manifest_free(NULL);

    /* a diagnostic without a position formats as "FILE: message" */
    pc_diag one = {.pos = {0, 0}, .message = "boom"};
    pc_diags dd = {.file = "f.yaml", .items = &one, .n = 1};
    char *l = pc_diag_format(&dd, 0);
    assert_string_equal(l, "f.yaml: boom");
    free(l);
    assert_null(pc_diag_format(&dd, 1));
}

/* ---------- redaction ---------- */

static void test_redaction(void **state)
{
    (void)state;
    static const char *const env[] = {
        "PG_PASSWORD", "hunter2", "NOCODB_TOKEN", "tok-abc", "NOCODB_DB_PASSWORD", "dbpw", NULL};
    const char *text = "# pipeline with secrets\n"
                       "apiVersion: pipectl/v1\n"
                       "kind: Pipeline\n"
                       "metadata: {name: demo}   # trailing comment\n"
                       "postgres:\n"
                       "  dsn: \"host=db user=app password=s3cr3t sslmode=require\"   # literal!\n"
                       "nocodb:\n"
                       "  url: http://localhost:8080\n"
                       "  token: ${NOCODB_TOKEN}\n"
                       "  email: admin@example.com\n"
                       "  password: 'Pa ss'\n"
                       "  role_password: ${NOCODB_DB_PASSWORD:-fallbackpw}\n"
                       "git:\n"
                       "  repo: ./state\n"
                       "  remote_url: https://bot:ghp_abcdef@git.example.com/x.git\n";
    pc_manifest *m = parse_ok(text, env);
    assert_string_equal(m->pg_dsn, "host=db user=app password=s3cr3t sslmode=require");
    char *red = NULL;
    pc_error err = {0};
    assert_int_equal(pc_manifest_redacted_text(m, &red, &err), 0);
    const char *want =
        "# pipeline with secrets\n"
        "apiVersion: pipectl/v1\n"
        "kind: Pipeline\n"
        "metadata: {name: demo}   # trailing comment\n"
        "postgres:\n"
        "  dsn: \"host=db user=app password=<redacted> sslmode=require\"   # literal!\n"
        "nocodb:\n"
        "  url: http://localhost:8080\n"
        "  token: ${NOCODB_TOKEN}\n"
        "  email: admin@example.com\n"
        "  password: \"<redacted>\"\n"
        "  role_password: ${NOCODB_DB_PASSWORD:-<redacted>}\n"
        "git:\n"
        "  repo: ./state\n"
        "  remote_url: https://bot:<redacted>@git.example.com/x.git\n";
    assert_string_equal(red, want);
    free(red);
    pc_manifest_free(m);

    /* ${VAR} password in a DSN stays; URI DSN; a literal token; block scalar; nested secret */
    const char *t2 = "apiVersion: pipectl/v1\n"
                     "kind: Pipeline\n"
                     "metadata: {name: demo}\n"
                     "postgres:\n"
                     "  dsn: host=db password=${PG_PASSWORD} user=x\n"
                     "nocodb: {url: 'http://n', token: abc123, schemas: []}\n";
    m = parse_ok(t2, env);
    assert_int_equal(pc_manifest_redacted_text(m, &red, &err), 0);
    assert_non_null(strstr(red, "dsn: host=db password=${PG_PASSWORD} user=x\n"));
    assert_non_null(strstr(red, "token: \"<redacted>\", schemas"));
    assert_null(strstr(red, "abc123"));
    assert_null(strstr(red, "hunter2"));
    free(red);
    pc_manifest_free(m);

    const char *t3 = "apiVersion: pipectl/v1\n"
                     "kind: Pipeline\n"
                     "metadata: {name: demo}\n"
                     "postgres:\n"
                     "  dsn: postgresql://app:Secr3t%40x@db:5432/app?sslmode=require\n"
                     "nocodb:\n"
                     "  url: http://n\n"
                     "  token: |\n"
                     "    line-one-secret\n"
                     "    line-two-secret\n"
                     "\n"
                     "git: {repo: ./s}\n";
    m = parse_ok(t3, env);
    assert_int_equal(pc_manifest_redacted_text(m, &red, &err), 0);
    assert_non_null(strstr(red, "dsn: postgresql://app:<redacted>@db:5432/app?sslmode=require\n"));
    assert_null(strstr(red, "secret"));
    assert_non_null(strstr(red, "  token: \"<redacted>\"\n\ngit: {repo: ./s}\n"));
    /* the redacted text is still a valid manifest */
    pc_manifest *m2 = parse_ok(red, env);
    assert_string_equal(m2->nocodb.token, "<redacted>");
    pc_manifest_free(m2);
    free(red);
    pc_manifest_free(m);
}

/* A secret variable misused in a non-secret field must not be quoted by the type error. */
static void test_secret_var_not_in_errors(void **state)
{
    (void)state;
    static const char *const env[] = {"PG_PASSWORD", "hunter2xyz", NULL};
    const char *text = "apiVersion: pipectl/v1\nkind: Pipeline\nmetadata: {name: x}\n"
                       "kafka:\n  bootstrap: b:1\n  topics:\n    - name: t\n"
                       "      partitions: ${PG_PASSWORD}\n";
    char *l = parse_first_error(text, strlen(text), env, NULL);
    assert_non_null(strstr(l, "t.yaml:8:19:"));
    assert_null(strstr(l, "hunter2xyz"));
    assert_non_null(strstr(l, "<redacted>"));
    free(l);
}

/* metadata.name: DNS-1123 labels (as Kubernetes) and SQL-style names; each refusal says why. */
static void test_pipeline_names(void **state)
{
    (void)state;
    static const char l63[] = "a23456789012345678901234567890123456789012345678901234567890123";
    static const char l64[] = "a234567890123456789012345678901234567890123456789012345678901234";
    static const char *const good[] = {"users", "users-eu", "users_eu", "_users", "1users",
                                       "a",     "a--b",     "eu-1",     l63};
    static const struct {
        const char *name, *why;
    } bad[] = {
        {"Users", "it has an upper-case letter"},
        {"-a", "it starts with '-'"},
        {"a-", "it ends with '-'"},
        {"a_b-c", "it mixes '-' and '_'"},
        {l64, "it is longer than 63 characters"},
        {"users.eu", "it may only hold lower-case letters, digits, '-' or '_'"},
        {"1_a", "it starts with a digit"},
    };
    static const char k_head[] = "apiVersion: pipectl/v1\nkind: Pipeline\n";
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *text = pc_asprintf("%smetadata: {name: \"%s\"}\n", k_head, good[i]);
        pc_manifest *m = NULL;
        pc_diags d = {0};
        pc_error err = {0};
        fake_env fe = {k_case_env};
        int rc = pc_manifest_parse(&m, "t.yaml", text, strlen(text), fake_getenv, &fe, &d, &err);
        if (rc != 0)
            fail_msg("'%s' refused: %s", good[i], d.n ? pc_diag_format(&d, 0) : err.msg);
        assert_string_equal(m->name, good[i]);
        pc_manifest_free(m);
        pc_diags_free(&d);
        free(text);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = pc_asprintf("%smetadata: {name: \"%s\"}\n", k_head, bad[i].name);
        char *l = parse_first_error(text, strlen(text), k_case_env, NULL);
        char *want = pc_asprintf("t.yaml:3:18: metadata.name '%s' is not a valid pipeline name: %s",
                                 bad[i].name, bad[i].why);
        if (strncmp(l, want, strlen(want)) != 0)
            fail_msg("'%s':\n  expected: %s...\n  got:      %s", bad[i].name, want, l);
        assert_non_null(strstr(l, "DNS-1123 label"));
        free(want);
        free(l);
        free(text);
    }
}

/* What is derived from a hyphenated name: the consumer group, the git folder, the NocoDB base. */
static void test_pipeline_name_derived(void **state)
{
    (void)state;
    char *dir = cases_dir("good");
    char *path = pc_asprintf("%s/pipeline_name_dns.yaml", dir);
    fake_env fe = {k_case_env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err), 0);
    assert_string_equal(m->name, "users-eu");
    char *g = pc_manifest_sink_group(m, &m->sinks[0]);
    assert_string_equal(g, "pipectl-users-eu-to_pg");
    free(g);
    assert_string_equal(m->git.path, "users-eu");
    assert_string_equal(m->nocodb.base, "users-eu");
    pc_manifest_free(m);
    pc_diags_free(&d);
    free(path);
    free(dir);
}

/* An S3, encrypted repository: the keys land where they should, the secrets are among the
 * scrubbed values, and the options archive_command/restore_command get name no secret. */
static void test_archiving_s3(void **state)
{
    (void)state;
    char *dir = cases_dir("good");
    char *path = pc_asprintf("%s/archiving_s3.yaml", dir);
    fake_env fe = {k_case_env};
    pc_manifest *m = NULL;
    pc_diags d = {0};
    pc_error err = {0};
    assert_int_equal(pc_manifest_load(&m, path, fake_getenv, &fe, &d, &err), 0);
    const pc_mf_archiving *ar = &m->archiving;
    assert_string_equal(ar->repository, "s3://pipectl-backups/prod/users");
    assert_true(ar->s3.declared);
    assert_string_equal(ar->s3.endpoint, "https://minio.internal:9000");
    assert_string_equal(ar->s3.uri_style, "path");
    assert_true(ar->s3.verify_tls);
    assert_string_equal(ar->encryption.cipher, "aes-256-gcm");
    assert_string_equal(ar->encryption.key, "correct-horse-battery-staple");
    assert_string_equal(ar->credentials_file, "/var/lib/postgresql/pipectl.env");

    pc_buf b = {0};
    assert_int_equal(pc_mf_archiving_args(ar, &b), 0);
    assert_string_equal(b.data,
                        " --repository 's3://pipectl-backups/prod/users'"
                        " --s3-endpoint 'https://minio.internal:9000' --s3-region 'eu-west-1'"
                        " --s3-uri-style 'path'"
                        " --s3-ca-file '/etc/ssl/certs/ca-certificates.crt' --encrypted"
                        " --credentials-file '/var/lib/postgresql/pipectl.env'");
    assert_null(strstr(b.data, "not-a-real-secret-value"));
    assert_null(strstr(b.data, "correct-horse"));
    pc_buf_free(&b);

    pc_secrets sec = {0};
    assert_int_equal(pc_manifest_secrets(m, &sec), 0);
    char *scrubbed =
        pc_scrub("key correct-horse-battery-staple s3 not-a-real-secret-value", pc_secrets_list(&sec));
    assert_non_null(scrubbed);
    assert_null(strstr(scrubbed, "correct-horse"));
    assert_null(strstr(scrubbed, "not-a-real-secret"));
    free(scrubbed);
    pc_secrets_dispose(&sec);
    pc_manifest_free(m);
    pc_diags_free(&d);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_cases),         cmocka_unit_test(test_good_cases),
        cmocka_unit_test(test_example_manifests), cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_defaults),          cmocka_unit_test(test_units),
        cmocka_unit_test(test_all_errors_sorted), cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_load_errors),       cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_secret_var_not_in_errors), cmocka_unit_test(test_security),
        cmocka_unit_test(test_security_defaults), cmocka_unit_test(test_long_value_cut),
        cmocka_unit_test(test_pipeline_names),    cmocka_unit_test(test_pipeline_name_derived),
        cmocka_unit_test(test_archiving_s3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
