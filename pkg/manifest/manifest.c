/* manifest.c: the node tree -> pc_manifest, with every validation a manifest can get without a
 * server: known keys (with "did you mean"), types, ranges, names, defaults, and cross references
 * (sources/sinks -> topics and tables). Every problem becomes one "FILE:LINE:COL: message"
 * diagnostic; we keep going after an error so the user sees all of them at once. */
#include "manifest_int.h"

#include <ctype.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- sections ---------- */

static const char *const k_top_keys[] = {"apiVersion", "kind",    "metadata", "kafka",
                                         "postgres",   "sources", "sinks",    "backups",
                                         "nocodb",     "git",     NULL};
static const char *const k_meta_keys[] = {"name", "description", NULL};
static const char *const k_pg_keys[] = {"dsn", "schemas", "archiving", NULL};
static const char *const k_schema_keys[] = {"name", "tables", NULL};
static const char *const k_table_keys[] = {"name", "columns", NULL};
static const char *const k_column_keys[] = {"name", "type", "primary_key", "nullable", NULL};
static const char *const k_source_keys[] = {"name",     "type", "url",    "topic",    "batch",
                                            "interval", "key",  "params", "security", NULL};
static const char *const k_sink_keys[] = {"name",  "topic",       "table",
                                          "mode",  "mapping",     "batch",
                                          "dead_letter", "convert_threads", "security", NULL};
static const char *const k_sink_batch_keys[] = {"max_records", "max_wait", NULL};
static const char *const k_backups_keys[] = {"schedule", "retention", "compression", NULL};
static const char *const k_retention_keys[] = {"full", "days", NULL};
static const char *const k_nocodb_keys[] = {"url",       "token",   "email", "password",
                                            "base",      "schemas", "role",  "role_password",
                                            "read_only", "pg_host", "pg_port", NULL};
static const char *const k_git_keys[] = {"repo", "branch", "push", "remote_url", "path", NULL};


/* checked: the key must be a topic config Kafka documents, with a valid value (config); not
 * for config_unchecked (a broker plugin's keys). */
static void parse_columns(mf_parse *P, pc_mf_table *tb, const mf_node *seq)
{
    mf_ctx *c = P->c;
    if (!mf_want_kind(c, seq, MF_SEQ, "table columns"))
        return;
    if (seq->nkids == 0) {
        mf_diag(c, seq->pos, "table '%s' has no columns; declare at least one",
                tb->name ? tb->name : "?");
        return;
    }
    tb->columns = calloc(seq->nkids, sizeof *tb->columns);
    mf_named *names = calloc(seq->nkids, sizeof *names);
    if (tb->columns == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_column *col = &tb->columns[tb->ncolumns++];
        col->pos = it->pos;
        col->nullable = true;
        if (!mf_want_kind(c, it, MF_MAP, "a column"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "column", k_column_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "column name", &col->name)) {
            if (mf_check_sql_name(c, v, "column name", col->name)) {
                names[i].name = col->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = mf_label("column", col->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (mf_obj_get(&o, "name") == NULL)
            mf_obj_missing(&o, "name", lab);
        char *type = NULL;
        if ((v = mf_obj_get(&o, "type")) != NULL && mf_get_str(c, v, "column type", &type)) {
            const char *why = NULL, *sug = NULL;
            col->type = mf_column_type(type, &why, &sug);
            if (col->type == NULL && why == NULL) {
                c->oom = true;
            } else if (col->type == NULL && strchr(type, '(') != NULL &&
                       strchr(type, ')') == NULL && it->kind == MF_MAP) {
                mf_diag(c, v->pos,
                        "column type '%s' for %s was cut at a comma: in a {...} flow mapping, "
                        "quote it, e.g. type: \"numeric(10,2)\"",
                        type, lab);
            } else if (col->type == NULL && strcmp(why, "unknown column type") == 0) {
                char *h = mf_hint(sug);
                mf_diag(c, v->pos, "unknown column type '%s' for %s%s", type, lab,
                        sug != NULL ? (h ? h : "")
                                    : " (known: text, varchar(n), integer, bigint, smallint, "
                                      "numeric(p,s), real, double precision, boolean, uuid, "
                                      "timestamptz, timestamp, date, time, jsonb, json, bytea, "
                                      "inet)");
                free(h);
            } else if (col->type == NULL) {
                mf_diag(c, v->pos, "invalid column type '%s' for %s: %s", type, lab, why);
            }
        } else if (v == NULL) {
            mf_obj_missing(&o, "type", lab);
        }
        free(type);
        if ((v = mf_obj_get(&o, "primary_key")) != NULL)
            mf_get_bool(c, v, "primary_key", &col->primary_key);
        if ((v = mf_obj_get(&o, "nullable")) != NULL)
            mf_get_bool(c, v, "nullable", &col->nullable);
        if (col->primary_key)
            col->nullable = false; /* Postgres makes primary key columns NOT NULL anyway */
        free(lab);
    }
    mf_check_dups(c, names, seq->nkids, "column");
    free(names);
}

static void parse_tables(mf_parse *P, pc_mf_schema *s, const mf_node *seq)
{
    mf_ctx *c = P->c;
    if (!mf_want_kind(c, seq, MF_SEQ, "schema tables"))
        return;
    s->tables = calloc(seq->nkids ? seq->nkids : 1, sizeof *s->tables);
    mf_named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
    if (s->tables == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_table *tb = &s->tables[s->ntables++];
        tb->pos = it->pos;
        if (!mf_want_kind(c, it, MF_MAP, "a table"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "table", k_table_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "table name", &tb->name)) {
            if (mf_check_sql_name(c, v, "table name", tb->name)) {
                names[i].name = tb->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        char *lab = mf_label("table", tb->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (mf_obj_get(&o, "name") == NULL)
            mf_obj_missing(&o, "name", lab);
        if ((v = mf_obj_get(&o, "columns")) != NULL)
            parse_columns(P, tb, v);
        else
            mf_obj_missing(&o, "columns", lab);
        free(lab);
    }
    mf_check_dups(c, names, seq->nkids, "table");
    free(names);
}

static void parse_schemas(mf_parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, seq, MF_SEQ, "postgres.schemas"))
        return;
    m->schemas = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->schemas);
    mf_named *names = calloc(seq->nkids ? seq->nkids : 1, sizeof *names);
    if (m->schemas == NULL || names == NULL) {
        c->oom = true;
        free(names);
        return;
    }
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_schema *s = &m->schemas[m->nschemas++];
        s->pos = it->pos;
        if (!mf_want_kind(c, it, MF_MAP, "a schema"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "schema", k_schema_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "schema name", &s->name)) {
            if (mf_check_sql_name(c, v, "schema name", s->name)) {
                if (strncmp(s->name, "pg_", 3) == 0 || strcmp(s->name, "information_schema") == 0)
                    mf_diag(c, v->pos, "schema name '%s' is reserved by PostgreSQL", s->name);
                names[i].name = s->name;
                names[i].pos = v->pos;
                names[i].ix = i;
            }
        }
        if (mf_obj_get(&o, "name") == NULL) {
            char *lab = mf_label("schema", NULL, i);
            if (lab != NULL)
                mf_obj_missing(&o, "name", lab);
            free(lab);
        }
        if ((v = mf_obj_get(&o, "tables")) != NULL)
            parse_tables(P, s, v);
    }
    mf_check_dups(c, names, seq->nkids, "schema");
    free(names);
}

static void parse_postgres(mf_parse *P, const mf_node *pg, const char *dir)
{
    mf_ctx *c = P->c;
    if (!mf_want_kind(c, pg, MF_MAP, "postgres"))
        return;
    mf_obj o;
    mf_obj_open(&o, c, pg, "postgres", k_pg_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "dsn")) != NULL) {
        mf_get_str(c, v, "postgres.dsn", &P->m->pg_dsn);
        P->m->pg_dsn_pos = v->pos;
    }
    else
        mf_obj_missing(&o, "dsn", "postgres");
    if ((v = mf_obj_get(&o, "schemas")) != NULL)
        parse_schemas(P, v);
    if ((v = mf_obj_get(&o, "archiving")) != NULL)
        mf_parse_archiving(P, v, dir);
}

static void parse_params(mf_ctx *c, pc_kvlist *l, const mf_node *map, const char *what)
{
    if (!mf_want_kind(c, map, MF_MAP, what))
        return;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const mf_node *k = map->kids[i], *v = map->kids[i + 1];
        if (k->kind != MF_SCALAR || k->bad || v->bad)
            continue;
        if (v->kind != MF_SCALAR || mf_is_null(v)) {
            char *w = pc_asprintf("%s '%s'", what, k->value);
            if (w != NULL)
                mf_type_error(c, v, w, "a string");
            free(w);
            continue;
        }
        if (pc_kvlist_set(l, k->value, v->value) != 0)
            c->oom = true;
    }
}

static void parse_sources(mf_parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, seq, MF_SEQ, "sources"))
        return;
    m->sources = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->sources);
    if (m->sources == NULL) {
        c->oom = true;
        return;
    }
    static const char *const types[] = {"randomuser", NULL};
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_source *s = &m->sources[m->nsources++];
        s->pos = it->pos;
        s->batch = 100;
        s->interval_ms = 1000;
        if (!mf_want_kind(c, it, MF_MAP, "a source"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "source", k_source_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "source name", &s->name))
            mf_check_kafka_name(c, v, "source name", s->name);
        char *lab = mf_label("source", s->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (mf_obj_get(&o, "name") == NULL)
            mf_obj_missing(&o, "name", lab);
        if ((v = mf_obj_get(&o, "type")) != NULL)
            mf_get_enum(c, v, "source type", types, &s->type);
        else
            mf_obj_missing(&o, "type", lab);
        if ((v = mf_obj_get(&o, "url")) != NULL) {
            if (mf_get_str(c, v, "source url", &s->url) && strncmp(s->url, "http://", 7) != 0 &&
                strncmp(s->url, "https://", 8) != 0)
                mf_diag(c, v->pos, "source url must start with http:// or https://, got '%s'",
                        s->url);
        } else if ((s->url = pc_strdup("https://randomuser.me/api/")) == NULL) {
            c->oom = true;
        }
        if ((v = mf_obj_get(&o, "topic")) != NULL)
            mf_get_str(c, v, "source topic", &s->topic);
        else
            mf_obj_missing(&o, "topic", lab);
        if ((v = mf_obj_get(&o, "batch")) != NULL)
            mf_get_int(c, v, "batch", 1, 5000, &s->batch);
        int64_t ms = 0;
        if ((v = mf_obj_get(&o, "interval")) != NULL &&
            mf_get_duration(c, v, "interval", 1, 0, 7LL * 86400000, &ms))
            s->interval_ms = (int)ms;
        if ((v = mf_obj_get(&o, "key")) != NULL)
            mf_get_str(c, v, "source key", &s->key);
        else if ((s->key = pc_strdup("login.uuid")) == NULL)
            c->oom = true;
        if ((v = mf_obj_get(&o, "params")) != NULL)
            parse_params(c, &s->params, v, "source params");
        char where[160];
        snprintf(where, sizeof where, "source '%s' security", s->name ? s->name : "?");
        mf_resolve_worker_auth(P, mf_obj_get(&o, "security"), where, &P->top, &s->auth, &s->own_auth);
        free(lab);
    }
}

static void parse_sinks(mf_parse *P, const mf_node *seq)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    if (!mf_want_kind(c, seq, MF_SEQ, "sinks"))
        return;
    m->sinks = calloc(seq->nkids ? seq->nkids : 1, sizeof *m->sinks);
    if (m->sinks == NULL) {
        c->oom = true;
        return;
    }
    static const char *const modes[] = {"insert", "upsert", NULL};
    for (size_t i = 0; i < seq->nkids; i++) {
        const mf_node *it = seq->kids[i];
        pc_mf_sink *s = &m->sinks[m->nsinks++];
        s->pos = it->pos;
        s->batch_max_records = 5000;
        s->batch_max_wait_ms = 200;
        if (!mf_want_kind(c, it, MF_MAP, "a sink"))
            continue;
        mf_obj o;
        mf_obj_open(&o, c, it, "sink", k_sink_keys);
        const mf_node *v;
        if ((v = mf_obj_get(&o, "name")) != NULL && mf_get_str(c, v, "sink name", &s->name))
            mf_check_kafka_name(c, v, "sink name", s->name);
        char *lab = mf_label("sink", s->name, i);
        if (lab == NULL) {
            c->oom = true;
            break;
        }
        if (mf_obj_get(&o, "name") == NULL)
            mf_obj_missing(&o, "name", lab);
        if ((v = mf_obj_get(&o, "topic")) != NULL)
            mf_get_str(c, v, "sink topic", &s->topic);
        else
            mf_obj_missing(&o, "topic", lab);
        if ((v = mf_obj_get(&o, "table")) != NULL)
            mf_get_str(c, v, "sink table", &s->table);
        else
            mf_obj_missing(&o, "table", lab);
        if ((v = mf_obj_get(&o, "mode")) != NULL)
            mf_get_enum(c, v, "sink mode", modes, &s->mode);
        else if ((s->mode = pc_strdup("insert")) == NULL)
            c->oom = true;
        if ((v = mf_obj_get(&o, "mapping")) != NULL) {
            parse_params(c, &s->mapping, v, "mapping for column");
            if (v->kind == MF_MAP && v->nkids == 0)
                mf_diag(c, v->pos, "%s has an empty mapping; map each column to a JSON path", lab);
        } else {
            mf_obj_missing(&o, "mapping", lab);
        }
        if ((v = mf_obj_get(&o, "batch")) != NULL && mf_want_kind(c, v, MF_MAP, "sink batch")) {
            mf_obj b;
            mf_obj_open(&b, c, v, "sink batch", k_sink_batch_keys);
            const mf_node *bv;
            if ((bv = mf_obj_get(&b, "max_records")) != NULL)
                mf_get_int(c, bv, "batch.max_records", 1, 1000000, &s->batch_max_records);
            int64_t ms = 0;
            if ((bv = mf_obj_get(&b, "max_wait")) != NULL &&
                mf_get_duration(c, bv, "batch.max_wait", 1, 1, 3600000, &ms))
                s->batch_max_wait_ms = (int)ms;
        }
        if ((v = mf_obj_get(&o, "dead_letter")) != NULL)
            mf_get_str(c, v, "dead_letter", &s->dead_letter);
        if ((v = mf_obj_get(&o, "convert_threads")) != NULL)
            mf_get_int(c, v, "convert_threads", 1, 64, &s->convert_threads);
        char where[160];
        snprintf(where, sizeof where, "sink '%s' security", s->name ? s->name : "?");
        mf_resolve_worker_auth(P, mf_obj_get(&o, "security"), where, &P->top, &s->auth, &s->own_auth);
        free(lab);
    }
}

static void parse_backups(mf_parse *P, const mf_node *b)
{
    mf_ctx *c = P->c;
    pc_mf_backups *bk = &P->m->backups;
    bk->pos = b->pos;
    if (!mf_want_kind(c, b, MF_MAP, "backups"))
        return;
    bk->declared = true;
    mf_obj o;
    mf_obj_open(&o, c, b, "backups", k_backups_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "schedule")) != NULL) {
        if (mf_get_str(c, v, "backups.schedule", &bk->schedule)) {
            /* the parser `run` uses, so what validates is what runs */
            pc_cron cron;
            pc_error err = {0};
            int64_t first = 0;
            if (pc_cron_parse(bk->schedule, &cron, &err) != 0)
                mf_diag(c, v->pos, "backups.schedule: %s", err.msg);
            else if (pc_cron_next(&cron, 0, &first) != 0)
                mf_diag(c, v->pos,
                        "backups.schedule '%s' never fires (no month has that day): pick a "
                        "day of the month every chosen month has, e.g. '0 3 28 2 *'",
                        bk->schedule);
        }
    } else {
        mf_obj_missing(&o, "schedule", "backups");
    }
    if ((v = mf_obj_get(&o, "retention")) != NULL && mf_want_kind(c, v, MF_MAP, "backups.retention")) {
        mf_obj r;
        mf_obj_open(&r, c, v, "backups.retention", k_retention_keys);
        const mf_node *rv;
        if ((rv = mf_obj_get(&r, "full")) != NULL)
            mf_get_int(c, rv, "retention.full", 1, 10000, &bk->retention_full);
        if ((rv = mf_obj_get(&r, "days")) != NULL)
            mf_get_int(c, rv, "retention.days", 1, 36500, &bk->retention_days);
    }
    static const char *const comps[] = {"zstd", "lz4", "gzip", "none", NULL};
    if ((v = mf_obj_get(&o, "compression")) != NULL)
        mf_get_enum(c, v, "backups.compression", comps, &bk->compression);
    else if ((bk->compression = pc_strdup("zstd")) == NULL)
        c->oom = true;
}

static void parse_nocodb(mf_parse *P, const mf_node *n)
{
    mf_ctx *c = P->c;
    pc_mf_nocodb *nc = &P->m->nocodb;
    nc->pos = n->pos;
    if (!mf_want_kind(c, n, MF_MAP, "nocodb"))
        return;
    nc->declared = true;
    mf_obj o;
    mf_obj_open(&o, c, n, "nocodb", k_nocodb_keys);
    const mf_node *v;
    if ((v = mf_obj_get(&o, "url")) != NULL) {
        if (mf_get_str(c, v, "nocodb.url", &nc->url) && strncmp(nc->url, "http://", 7) != 0 &&
            strncmp(nc->url, "https://", 8) != 0)
            mf_diag(c, v->pos, "nocodb.url must start with http:// or https://, got '%s'", nc->url);
    } else {
        mf_obj_missing(&o, "url", "nocodb");
    }
    if ((v = mf_obj_get(&o, "token")) != NULL)
        mf_get_str(c, v, "nocodb.token", &nc->token);
    if ((v = mf_obj_get(&o, "email")) != NULL)
        mf_get_str(c, v, "nocodb.email", &nc->email);
    if ((v = mf_obj_get(&o, "password")) != NULL)
        mf_get_str(c, v, "nocodb.password", &nc->password);
    if (mf_obj_get(&o, "token") == NULL &&
        (mf_obj_get(&o, "email") == NULL || mf_obj_get(&o, "password") == NULL))
        mf_diag(c, n->pos, "nocodb needs 'token', or 'email' and 'password', to sign in");
    if ((v = mf_obj_get(&o, "base")) != NULL)
        mf_get_str(c, v, "nocodb.base", &nc->base);
    if ((v = mf_obj_get(&o, "schemas")) != NULL && mf_want_kind(c, v, MF_SEQ, "nocodb.schemas")) {
        nc->schemas = calloc(v->nkids ? v->nkids : 1, sizeof *nc->schemas);
        if (nc->schemas == NULL) {
            c->oom = true;
            return;
        }
        for (size_t i = 0; i < v->nkids; i++) {
            char *s = NULL;
            if (mf_get_str(c, v->kids[i], "nocodb schema", &s))
                nc->schemas[nc->nschemas++] = s;
        }
    }
    if ((v = mf_obj_get(&o, "role")) != NULL && mf_get_str(c, v, "nocodb.role", &nc->role))
        mf_check_sql_name(c, v, "nocodb.role", nc->role);
    if ((v = mf_obj_get(&o, "role_password")) != NULL)
        mf_get_str(c, v, "nocodb.role_password", &nc->role_password);
    if ((v = mf_obj_get(&o, "read_only")) != NULL)
        mf_get_bool(c, v, "nocodb.read_only", &nc->read_only);
    if ((v = mf_obj_get(&o, "pg_host")) != NULL)
        mf_get_str(c, v, "nocodb.pg_host", &nc->pg_host);
    if ((v = mf_obj_get(&o, "pg_port")) != NULL)
        mf_get_int(c, v, "nocodb.pg_port", 1, 65535, &nc->pg_port);
}

static void parse_git(mf_parse *P, const mf_node *g, const char *dir)
{
    mf_ctx *c = P->c;
    pc_mf_git *gt = &P->m->git;
    gt->pos = g->pos;
    if (!mf_want_kind(c, g, MF_MAP, "git"))
        return;
    gt->declared = true;
    mf_obj o;
    mf_obj_open(&o, c, g, "git", k_git_keys);
    const mf_node *v;
    char *repo = NULL;
    if ((v = mf_obj_get(&o, "repo")) != NULL) {
        if (mf_get_str(c, v, "git.repo", &repo) && (gt->repo = mf_resolve_path(dir, repo)) == NULL)
            c->oom = true;
    } else {
        mf_obj_missing(&o, "repo", "git");
    }
    free(repo);
    if ((v = mf_obj_get(&o, "branch")) != NULL) {
        if (mf_get_str(c, v, "git.branch", &gt->branch) &&
            (strpbrk(gt->branch, " ~^:?*[\\") != NULL || strstr(gt->branch, "..") != NULL ||
             gt->branch[0] == '-' || gt->branch[0] == '/'))
            mf_diag(c, v->pos, "git.branch '%s' is not a valid branch name", gt->branch);
    } else if ((gt->branch = pc_strdup("main")) == NULL) {
        c->oom = true;
    }
    if ((v = mf_obj_get(&o, "push")) != NULL)
        mf_get_str(c, v, "git.push", &gt->push);
    if ((v = mf_obj_get(&o, "remote_url")) != NULL)
        mf_get_str(c, v, "git.remote_url", &gt->remote_url);
    if ((v = mf_obj_get(&o, "path")) != NULL) {
        if (mf_get_str(c, v, "git.path", &gt->path) &&
            (gt->path[0] == '/' || strstr(gt->path, "..") != NULL))
            mf_diag(c, v->pos, "git.path '%s' must be a relative folder inside the repository",
                    gt->path);
    }
}

/* ---------- top level ---------- */

static void parse_root(mf_parse *P, const mf_node *root, const char *dir)
{
    mf_ctx *c = P->c;
    pc_manifest *m = P->m;
    mf_obj o;
    mf_obj_open(&o, c, root, "manifest", k_top_keys);
    const mf_node *v;
    char *s = NULL;
    if ((v = mf_obj_get(&o, "apiVersion")) != NULL) {
        if (mf_get_str(c, v, "apiVersion", &s) && strcmp(s, "pipectl/v1") != 0)
            mf_diag(c, v->pos, "apiVersion must be pipectl/v1, got '%s'", s);
    } else {
        mf_obj_missing(&o, "apiVersion", "manifest");
    }
    free(s);
    s = NULL;
    if ((v = mf_obj_get(&o, "kind")) != NULL) {
        if (mf_get_str(c, v, "kind", &s) && strcmp(s, "Pipeline") != 0)
            mf_diag(c, v->pos, "kind must be Pipeline, got '%s'", s);
    } else {
        mf_obj_missing(&o, "kind", "manifest");
    }
    free(s);
    if ((v = mf_obj_get(&o, "metadata")) != NULL) {
        if (mf_want_kind(c, v, MF_MAP, "metadata")) {
            mf_obj md;
            mf_obj_open(&md, c, v, "metadata", k_meta_keys);
            const mf_node *nv;
            if ((nv = mf_obj_get(&md, "name")) != NULL) {
                if (mf_get_str(c, nv, "metadata.name", &m->name))
                    mf_check_pipeline_name(c, nv, m->name);
            } else {
                mf_obj_missing(&md, "name", "metadata");
            }
            char *desc = NULL;
            if ((nv = mf_obj_get(&md, "description")) != NULL)
                mf_get_str(c, nv, "metadata.description", &desc);
            free(desc);
        }
    } else {
        mf_obj_missing(&o, "metadata", "manifest");
    }
    if ((v = mf_obj_get(&o, "kafka")) != NULL)
        mf_parse_kafka(P, v);
    if (m->kafka_auth.protocol == NULL) /* no (readable) kafka block: plaintext */
        mf_parse_top_security(P, NULL, &P->top);
    if ((v = mf_obj_get(&o, "postgres")) != NULL)
        parse_postgres(P, v, dir);
    if ((v = mf_obj_get(&o, "sources")) != NULL)
        parse_sources(P, v);
    if ((v = mf_obj_get(&o, "sinks")) != NULL)
        parse_sinks(P, v);
    mf_check_derive(P);
    if ((v = mf_obj_get(&o, "backups")) != NULL) {
        parse_backups(P, v);
        /* what `run` and `status` need of a schedule, said here first (FILE:LINE:COL) */
        if (m->backups.declared && mf_obj_get(&o, "postgres") != NULL &&
            (m->archiving.repository == NULL || m->archiving.repository[0] == '\0'))
            mf_diag(c, v->pos,
                    "backups needs postgres.archiving.repository (where base backups and WAL are "
                    "stored): add it, or remove the backups block");
        else if (m->backups.declared && mf_obj_get(&o, "postgres") == NULL)
            mf_diag(c, v->pos,
                    "backups needs a postgres block (the database to back up, and "
                    "archiving.repository)");
    }
    if ((v = mf_obj_get(&o, "nocodb")) != NULL)
        parse_nocodb(P, v);
    if ((v = mf_obj_get(&o, "git")) != NULL)
        parse_git(P, v, dir);
    if (m->git.declared && m->git.path == NULL && m->name != NULL &&
        (m->git.path = pc_strdup(m->name)) == NULL)
        c->oom = true;
    if (m->nocodb.declared && m->nocodb.base == NULL && m->name != NULL &&
        (m->nocodb.base = pc_strdup(m->name)) == NULL)
        c->oom = true;
    /* when the block holding the declarations is misspelt or malformed, its error is the one
     * to fix; "not declared" for every reference would only bury it */
    const mf_node *kv = mf_obj_get(&o, "kafka"), *pv = mf_obj_get(&o, "postgres");
    const mf_node *tv = kv != NULL && kv->kind == MF_MAP ? mf_root_get(kv, "topics") : NULL;
    const mf_node *sv = pv != NULL && pv->kind == MF_MAP ? mf_root_get(pv, "schemas") : NULL;
    P->topics_unknown = (kv == NULL && o.suggested != 0) || (kv != NULL && kv->kind != MF_MAP) ||
                        (tv != NULL && tv->kind != MF_SEQ);
    P->tables_unknown = (pv == NULL && o.suggested != 0) || (pv != NULL && pv->kind != MF_MAP) ||
                        (sv != NULL && sv->kind != MF_SEQ);
    mf_check_refs(P, root);
}

/* ---------- byte-level checks ---------- */

static pc_pos pos_at(const char *text, size_t off)
{
    pc_pos p = {1, 1};
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            p.line++;
            p.col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

/* Offset of the first byte that is not valid UTF-8, or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 1;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            n = 2;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            n = 3;
            cp = b & 0x07;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

static bool only_blank(const char *text, size_t len)
{
    /* whitespace and comments only */
    bool comment = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (comment) {
            if (ch == '\n')
                comment = false;
            continue;
        }
        if (ch == '#')
            comment = true;
        else if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
            return false;
    }
    return true;
}

/* ---------- public API ---------- */

/* Replaces every occurrence of needle in *msg with PC_REDACTED. */
static void scrub(char **msg, const char *needle)
{
    if (*msg == NULL || strstr(*msg, needle) == NULL)
        return;
    pc_buf b = {0};
    size_t nl = strlen(needle);
    const char *p = *msg;
    for (const char *hit; (hit = strstr(p, needle)) != NULL; p = hit + nl)
        if (pc_buf_append(&b, p, (size_t)(hit - p)) != 0 || pc_buf_puts(&b, PC_REDACTED) != 0)
            goto oom;
    if (pc_buf_puts(&b, p) != 0)
        goto oom;
    free(*msg);
    *msg = pc_buf_detach(&b);
    return;
oom:
    pc_buf_free(&b);
}

/* A secret variable used in a non-secret field (partitions: ${PG_PASSWORD}) would otherwise be
 * quoted by a type error: scrub the values of every ${VAR} whose name looks secret from all
 * diagnostics. */
static void scrub_secret_vars(const char *text, size_t len, const mf_ctx *c, pc_diags *d)
{
    for (size_t i = 0; i + 2 < len; i++) {
        if (text[i] != '$' || text[i + 1] != '{')
            continue;
        size_t j = i + 2;
        while (j < len && (isalnum((unsigned char)text[j]) || text[j] == '_'))
            j++;
        char name[128];
        size_t n = j - (i + 2);
        if (n == 0 || n >= sizeof name)
            continue;
        memcpy(name, text + i + 2, n);
        name[n] = '\0';
        const char *v = pc_is_secret_key(name) ? c->getenv_fn(name, c->env_ctx) : NULL;
        if (v == NULL || strlen(v) < 3)
            continue;
        for (size_t k = 0; k < d->n; k++)
            scrub(&d->items[k].message, v);
    }
}

static const char *process_getenv(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

static char *cwd_dir(void)
{
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof buf) == NULL)
        return pc_strdup("/");
    return pc_strdup(buf);
}

static int parse_with_dir(pc_manifest **out, const char *name, const char *text, size_t len,
                          const char *dir, pc_getenv_fn getenv_fn, void *env_ctx, pc_diags *diags,
                          pc_error *err)
{
    pc_manifest *m = NULL;
    mf_node *root = NULL;
    pc_diags local = {0};
    int rc = 0;
    *out = NULL;
    if (diags == NULL)
        diags = &local;
    pc_diags_free(diags);
    mf_ctx c = {
        .diags = diags, .getenv_fn = getenv_fn ? getenv_fn : process_getenv, .env_ctx = env_ctx};
    pc_pos top = {1, 1};
    if ((diags->file = pc_strdup(name)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", name);
        goto done;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL || (m->file = pc_strdup(name)) == NULL || (m->dir = pc_strdup(dir)) == NULL ||
        (m->raw = pc_strndup(text, len)) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", name);
        goto done;
    }
    m->raw_len = len;

    const void *nul = memchr(text, '\0', len);
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (len > MF_MAX_BYTES) {
        mf_diag(&c, top,
                "manifest is %zu bytes, larger than the 4 MiB limit; is this the right "
                "file?",
                len);
    } else if (len == 0 || only_blank(text, len)) {
        mf_diag(&c, top, "manifest is empty");
    } else if (nul != NULL && (size_t)((const char *)nul - text) < bad) {
        mf_diag(&c, pos_at(text, (size_t)((const char *)nul - text)),
                "manifest contains a NUL byte: this looks like a binary file, not YAML");
    } else if (bad < len) {
        bool utf16 = len >= 2 && ((unsigned char)text[0] == 0xFF || (unsigned char)text[0] == 0xFE);
        mf_diag(&c, pos_at(text, bad),
                "manifest is not valid UTF-8 (byte 0x%02x%s); save it as UTF-8 text",
                (unsigned char)text[bad], utf16 ? ", looks like UTF-16" : "");
    } else if (mf_tree_build(&c, text, len, &root) == 0 && !c.oom) {
        if (root == NULL || mf_is_null(root)) {
            mf_diag(&c, top, "manifest is empty");
        } else if (root->kind != MF_MAP) {
            char *d = mf_describe(root);
            mf_diag(&c, root->pos,
                    "manifest must be a mapping with apiVersion, kind, metadata, ...; got %s",
                    d ? d : "something else");
            free(d);
        } else {
            mf_tree_check_keys(&c, root);
            mf_tree_expand(&c, root);
            mf_parse P = {.c = &c, .m = m, .dir = dir};
            if (!c.oom)
                parse_root(&P, root, dir);
            mf_auth_dispose(&P.top.a);
        }
    }
    if (c.oom) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory parsing manifest %s", name);
        goto done;
    }
    if (diags->n > 0) {
        scrub_secret_vars(text, len, &c, diags);
        mf_diags_sort(diags);
        char *first = pc_diag_format(diags, 0);
        rc = pc_error_set(err, PC_EINVAL, "manifest %s is invalid: %s%s", name,
                          first ? first : "see the diagnostics",
                          diags->n > 1 ? " (and more errors)" : "");
        free(first);
        goto done;
    }
    *out = m;
    m = NULL;
done:
    mf_node_free(root);
    pc_manifest_free(m);
    pc_diags_free(&local);
    return rc;
}

int pc_manifest_parse(pc_manifest **out, const char *name, const char *text, size_t len,
                      pc_getenv_fn getenv_fn, void *env_ctx, pc_diags *diags, pc_error *err)
{
    char *dir = cwd_dir();
    if (dir == NULL) {
        *out = NULL;
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    int rc = parse_with_dir(out, name, text, len, dir, getenv_fn, env_ctx, diags, err);
    free(dir);
    return rc;
}

/* Absolute directory holding path (symlinks in the directory resolved when possible). */
static char *abs_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash == NULL ? pc_strdup(".")
                            : pc_strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (d == NULL)
        return NULL;
    char buf[PATH_MAX];
    if (realpath(d, buf) != NULL) {
        free(d);
        return pc_strdup(buf);
    }
    char *cwd = cwd_dir();
    char *abs = cwd ? mf_resolve_path(cwd, d) : NULL;
    free(cwd);
    free(d);
    return abs;
}

int pc_manifest_load(pc_manifest **out, const char *path, pc_getenv_fn getenv_fn, void *env_ctx,
                     pc_diags *diags, pc_error *err)
{
    FILE *f = NULL;
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    int rc = 0;
    *out = NULL;
    if (diags != NULL)
        pc_diags_free(diags);
    f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        rc =
            pc_error_set(err, PC_EIO, "cannot read manifest %s: %s; check the path or pass -f FILE",
                         path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = pc_error_set(err, PC_EIO, "cannot read manifest %s: it is a directory; pass -f FILE",
                          path);
        goto done;
    }
    /* read a little past the limit (at most twice it): enough to report "too large" without
     * swallowing a huge file */
    size_t cap = 64 * 1024;
    text = malloc(cap + 1);
    if (text == NULL)
        goto oom;
    for (;;) {
        if (len == cap) {
            if (cap > MF_MAX_BYTES)
                break;
            cap *= 2;
            char *t = realloc(text, cap + 1);
            if (t == NULL)
                goto oom;
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                rc =
                    pc_error_set(err, PC_EIO, "cannot read manifest %s: %s", path, strerror(errno));
                goto done;
            }
            break;
        }
    }
    text[len] = '\0';
    if ((dir = abs_dir_of(path)) == NULL)
        goto oom;
    rc = parse_with_dir(out, path, text, len, dir, getenv_fn, env_ctx, diags, err);
    goto done;
oom:
    rc = pc_error_set(err, PC_ENOMEM, "out of memory reading manifest %s", path);
done:
    if (f != NULL)
        fclose(f);
    free(text);
    free(dir);
    return rc;
}

void mf_auth_dispose(pc_mf_kafka_auth *a)
{
    free(a->protocol);
    free(a->sasl_mechanism);
    free(a->sasl_username);
    if (a->sasl_password != NULL)
        memset(a->sasl_password, 0, strlen(a->sasl_password));
    free(a->sasl_password);
    free(a->ca_file);
    free(a->cert_file);
    free(a->key_file);
    if (a->key_password != NULL)
        memset(a->key_password, 0, strlen(a->key_password));
    free(a->key_password);
    free(a->principal);
    memset(a, 0, sizeof *a);
}

char *pc_manifest_sink_group(const pc_manifest *m, const pc_mf_sink *s)
{
    return pc_asprintf("pipectl-%s-%s", m->name, s->name);
}

void pc_manifest_free(pc_manifest *m)
{
    if (m == NULL)
        return;
    free(m->file);
    free(m->dir);
    free(m->raw);
    free(m->name);
    free(m->kafka_bootstrap);
    mf_auth_dispose(&m->kafka_auth);
    for (size_t i = 0; m->client_config != NULL && i < m->nclient_config; i++) {
        free(m->client_config[i].key);
        free(m->client_config[i].value);
    }
    free(m->client_config);
    for (size_t i = 0; m->acls != NULL && i < m->nacls; i++) {
        pc_mf_acl *a = &m->acls[i];
        free(a->principal);
        free(a->resource);
        free(a->name);
        free(a->pattern);
        for (size_t j = 0; j < a->noperations; j++)
            free(a->operations[j]);
        free(a->operations);
        free(a->permission);
        free(a->host);
    }
    free(m->acls);
    for (size_t i = 0; m->topics != NULL && i < m->ntopics; i++) {
        free(m->topics[i].name);
        pc_kvlist_free(&m->topics[i].config);
    }
    free(m->topics);
    free(m->pg_dsn);
    for (size_t i = 0; m->schemas != NULL && i < m->nschemas; i++) {
        pc_mf_schema *s = &m->schemas[i];
        for (size_t j = 0; s->tables != NULL && j < s->ntables; j++) {
            pc_mf_table *t = &s->tables[j];
            for (size_t k = 0; t->columns != NULL && k < t->ncolumns; k++) {
                free(t->columns[k].name);
                free(t->columns[k].type);
            }
            free(t->columns);
            free(t->name);
        }
        free(s->tables);
        free(s->name);
    }
    free(m->schemas);
    free(m->archiving.repository);
    free(m->archiving.s3.endpoint);
    free(m->archiving.s3.region);
    free(m->archiving.s3.uri_style);
    free(m->archiving.s3.access_key_id);
    free(m->archiving.s3.secret_access_key);
    free(m->archiving.s3.session_token);
    free(m->archiving.s3.ca_file);
    free(m->archiving.encryption.cipher);
    free(m->archiving.encryption.key);
    free(m->archiving.credentials_file);
    free(m->archiving.command);
    free(m->archiving.wal_level);
    for (size_t i = 0; m->sources != NULL && i < m->nsources; i++) {
        pc_mf_source *s = &m->sources[i];
        free(s->name);
        free(s->type);
        free(s->url);
        free(s->topic);
        free(s->key);
        pc_kvlist_free(&s->params);
        mf_auth_dispose(&s->auth);
    }
    free(m->sources);
    for (size_t i = 0; m->sinks != NULL && i < m->nsinks; i++) {
        pc_mf_sink *s = &m->sinks[i];
        free(s->name);
        free(s->topic);
        free(s->table);
        free(s->mode);
        pc_kvlist_free(&s->mapping);
        free(s->dead_letter);
        mf_auth_dispose(&s->auth);
    }
    free(m->sinks);
    free(m->backups.schedule);
    free(m->backups.compression);
    pc_mf_nocodb *nc = &m->nocodb;
    free(nc->url);
    free(nc->token);
    free(nc->email);
    free(nc->password);
    free(nc->base);
    for (size_t i = 0; nc->schemas != NULL && i < nc->nschemas; i++)
        free(nc->schemas[i]);
    free(nc->schemas);
    free(nc->role);
    free(nc->role_password);
    free(nc->pg_host);
    free(m->git.repo);
    free(m->git.branch);
    free(m->git.push);
    free(m->git.remote_url);
    free(m->git.path);
    free(m);
}

char *pc_diag_format(const pc_diags *d, size_t i)
{
    if (d == NULL || i >= d->n)
        return NULL;
    const pc_diag *g = &d->items[i];
    const char *file = d->file ? d->file : "<manifest>";
    if (g->pos.line <= 0)
        return pc_asprintf("%s: %s", file, g->message);
    return pc_asprintf("%s:%d:%d: %s", file, g->pos.line, g->pos.col, g->message);
}

void pc_diags_free(pc_diags *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->items[i].message);
    free(d->items);
    free(d->file);
    d->items = NULL;
    d->file = NULL;
    d->n = 0;
}

const pc_mf_table *pc_manifest_find_table(const pc_manifest *m, const char *schema,
                                          const char *table)
{
    if (m == NULL || schema == NULL || table == NULL)
        return NULL;
    for (size_t i = 0; i < m->nschemas; i++) {
        if (!pc_streq(m->schemas[i].name, schema))
            continue;
        for (size_t j = 0; j < m->schemas[i].ntables; j++)
            if (pc_streq(m->schemas[i].tables[j].name, table))
                return &m->schemas[i].tables[j];
    }
    return NULL;
}

const pc_mf_topic *pc_manifest_find_topic(const pc_manifest *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < m->ntopics; i++)
        if (pc_streq(m->topics[i].name, name))
            return &m->topics[i];
    return NULL;
}
