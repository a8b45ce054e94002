/* inventory.c: pipectl's own tables in PostgreSQL: the inventory (what pipectl created, its
 * ownership mark), the sink offsets status reads, and the advisory lock apply holds per
 * pipeline. */
#include "postgres_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int inventory_exists(pc_pg *pg, bool *exists, pc_error *err)
{
    PGresult *res = NULL;
    *exists = false;
    int rc = pc_pg__exec(pg, "SELECT to_regclass('pipectl.inventory') IS NOT NULL", 0, NULL,
                         "the inventory lookup (to_regclass('pipectl.inventory'))", &res, err);
    if (rc == 0)
        *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc;
}

static int parse_keys(const char *text, pc_kvlist *out)
{
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    int rc = 0;
    if (arr == NULL || !json_is_array(arr)) {
        rc = PC_EINVAL;
        goto done;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && pc_kvlist_add(out, json_string_value(v), "") != 0) {
            rc = PC_ENOMEM;
            goto done;
        }
    }
done:
    json_decref(arr);
    return rc;
}

int pc_pg__observe_inventory(pc_pg *pg, const char *pipeline, pc_observed *o, pc_error *err)
{
    PGresult *res = NULL;
    bool exists = false;
    int rc = inventory_exists(pg, &exists, err);
    if (rc != 0 || !exists)
        goto done;
    pg->inventory_ready = true;
    const char *params[1] = {pipeline};
    rc = pc_pg__exec(pg,
                     "SELECT kind, name, managed_keys::text FROM pipectl.inventory "
                     "WHERE pipeline = $1 ORDER BY kind, name",
                     1, params, "SELECT FROM pipectl.inventory", &res, err);
    if (rc != 0)
        goto done;
    int n = PQntuples(res);
    if (n == 0)
        goto done;
    pc_obs_owned *grown = realloc(o->owned, (o->nowned + (size_t)n) * sizeof *grown);
    if (grown == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    o->owned = grown;
    memset(o->owned + o->nowned, 0, (size_t)n * sizeof *grown);
    for (int r = 0; r < n; r++) {
        pc_obs_owned *w = &o->owned[o->nowned++];
        w->kind = pc_strdup(PQgetvalue(res, r, 0));
        w->name = pc_strdup(PQgetvalue(res, r, 1));
        if (w->kind == NULL || w->name == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        int prc = parse_keys(PQgetvalue(res, r, 2), &w->managed_keys);
        if (prc == PC_ENOMEM) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (prc != 0) {
            rc = pc_error_set(err, PC_EINVAL,
                              "%s: pipectl.inventory row (%s, %s, %s) has managed_keys that are "
                              "not a JSON array of strings; fix or delete the row",
                              pg->where, pipeline, w->kind, w->name);
            goto done;
        }
    }
done:
    PQclear(res);
    return rc;
}

/* ---------- lock ---------- */

int pc_pg_lock(pc_pg *pg, const char *pipeline, pc_error *err)
{
    PGresult *res = NULL;
    char *what = pc_asprintf("pg_try_advisory_lock for pipeline '%s'", pipeline);
    const char *params[1] = {pipeline};
    int rc = 0;
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pc_pg__exec(pg, "SELECT pg_try_advisory_lock(hashtext('pipectl:' || $1::text))", 1, params,
                     what, &res, err);
    if (rc != 0)
        goto done;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_ECONFLICT,
                          "another pipectl apply for pipeline '%s' holds the lock on %s; wait for "
                          "it to finish (see pg_stat_activity where application_name LIKE "
                          "'pipectl%%'), then re-run",
                          pipeline, pg->where);
done:
    free(what);
    PQclear(res);
    return rc;
}

int pc_pg_unlock(pc_pg *pg, const char *pipeline, pc_error *err)
{
    PGresult *res = NULL;
    char *what = pc_asprintf("pg_advisory_unlock for pipeline '%s'", pipeline);
    const char *params[1] = {pipeline};
    int rc = 0;
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = pc_pg__exec(pg, "SELECT pg_advisory_unlock(hashtext('pipectl:' || $1::text))", 1, params,
                     what, &res, err);
    if (rc != 0)
        goto done;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = pc_error_set(err, PC_EINVAL,
                          "the apply lock for pipeline '%s' was not held by this session on %s; "
                          "nothing to release",
                          pipeline, pg->where);
done:
    free(what);
    PQclear(res);
    return rc;
}

/* ---------- inventory ---------- */

/* Creates pipectl.inventory when missing. Checks first: CREATE SCHEMA IF NOT EXISTS needs the
 * CREATE privilege on the database even when the schema exists. */
static int inventory_ensure(pc_pg *pg, pc_error *err)
{
    bool exists = false;
    int rc = 0;
    if (pg->inventory_ready)
        return 0;
    rc = inventory_exists(pg, &exists, err);
    if (rc != 0)
        return rc;
    if (!exists) {
        rc = pc_pg__exec(pg, "CREATE SCHEMA IF NOT EXISTS pipectl", 0, NULL,
                         "CREATE SCHEMA pipectl", NULL, err);
        if (rc == 0)
            rc = pc_pg__exec(pg,
                             "CREATE TABLE IF NOT EXISTS pipectl.inventory ("
                             "pipeline text NOT NULL, kind text NOT NULL, name text NOT NULL, "
                             "managed_keys jsonb NOT NULL DEFAULT '[]', "
                             "updated_at timestamptz NOT NULL DEFAULT now(), "
                             "PRIMARY KEY (pipeline, kind, name))",
                             0, NULL, "CREATE TABLE pipectl.inventory", NULL, err);
        if (rc != 0)
            return rc;
    }
    pg->inventory_ready = true;
    return 0;
}

static char *keys_json(const pc_kvlist *keys)
{
    json_t *arr = json_array();
    char *out = NULL;
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; keys != NULL && i < keys->n; i++)
        if (json_array_append_new(arr, json_string(keys->items[i].key)) != 0)
            goto done;
    out = json_dumps(arr, JSON_COMPACT);
done:
    json_decref(arr);
    return out;
}

int pc_pg_inventory_record(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           const pc_kvlist *managed_keys, pc_error *err)
{
    char *json = NULL;
    char *what = NULL;
    int rc = inventory_ensure(pg, err);
    if (rc != 0)
        goto done;
    json = keys_json(managed_keys);
    what = pc_asprintf("INSERT INTO pipectl.inventory (%s, %s, %s)", pipeline, kind, name);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[4] = {pipeline, kind, name, json};
    rc = pc_pg__exec(
        pg,
        "INSERT INTO pipectl.inventory (pipeline, kind, name, managed_keys, updated_at) "
        "VALUES ($1, $2, $3, $4::jsonb, now()) "
        "ON CONFLICT (pipeline, kind, name) DO UPDATE "
        "SET managed_keys = EXCLUDED.managed_keys, updated_at = now()",
        4, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

int pc_pg_inventory_forget(pc_pg *pg, const char *pipeline, const char *kind, const char *name,
                           pc_error *err)
{
    char *what = NULL;
    bool exists = pg->inventory_ready;
    int rc = 0;
    if (!exists) {
        rc = inventory_exists(pg, &exists, err);
        if (rc != 0 || !exists)
            goto done; /* nothing recorded anywhere: nothing to forget */
        pg->inventory_ready = true;
    }
    what = pc_asprintf("DELETE FROM pipectl.inventory (%s, %s, %s)", pipeline, kind, name);
    if (what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, name};
    rc = pc_pg__exec(
        pg, "DELETE FROM pipectl.inventory WHERE pipeline = $1 AND kind = $2 AND name = $3", 3,
        params, what, NULL, err);
done:
    free(what);
    return rc;
}

/* names as a JSON array of strings (a parameter for jsonb_array_elements_text). */
static char *names_json(const char *const *names, size_t n)
{
    json_t *arr = json_array();
    char *out = NULL;
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (names[i] == NULL || json_array_append_new(arr, json_string(names[i])) != 0)
            goto done;
    out = json_dumps(arr, JSON_COMPACT);
done:
    json_decref(arr);
    return out;
}

int pc_pg_inventory_record_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err)
{
    char *json = NULL, *what = NULL;
    int rc = n == 0 ? 0 : inventory_ensure(pg, err);
    if (rc != 0 || n == 0)
        goto done;
    json = names_json(names, n);
    what = pc_asprintf("INSERT INTO pipectl.inventory (%s, %s, %zu names)", pipeline, kind, n);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, json};
    rc = pc_pg__exec(
        pg,
        "INSERT INTO pipectl.inventory (pipeline, kind, name, managed_keys, updated_at) "
        "SELECT $1, $2, x, '[]'::jsonb, now() FROM jsonb_array_elements_text($3::jsonb) "
        "AS x ON CONFLICT (pipeline, kind, name) DO UPDATE SET updated_at = now()",
        3, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

int pc_pg_inventory_forget_many(pc_pg *pg, const char *pipeline, const char *kind,
                                const char *const *names, size_t n, pc_error *err)
{
    char *json = NULL, *what = NULL;
    bool exists = pg->inventory_ready;
    int rc = 0;
    if (n == 0)
        return 0;
    if (!exists) {
        rc = inventory_exists(pg, &exists, err);
        if (rc != 0 || !exists)
            goto done; /* nothing recorded anywhere: nothing to forget */
        pg->inventory_ready = true;
    }
    json = names_json(names, n);
    what = pc_asprintf("DELETE FROM pipectl.inventory (%s, %s, %zu names)", pipeline, kind, n);
    if (json == NULL || what == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    const char *params[3] = {pipeline, kind, json};
    rc = pc_pg__exec(pg,
                     "DELETE FROM pipectl.inventory WHERE pipeline = $1 AND kind = $2 AND name IN "
                     "(SELECT jsonb_array_elements_text($3::jsonb))",
                     3, params, what, NULL, err);
done:
    free(json);
    free(what);
    return rc;
}

/* ---------- sink offsets (consumer lag for status) ---------- */

int pc_pg_sink_offsets(pc_pg *pg, const char *sink, const char *topic, int64_t **next,
                       int npartitions, pc_error *err)
{
    int rc = 0;
    PGresult *res = NULL;
    int64_t *out = NULL;

    *next = NULL;
    if (npartitions < 0)
        npartitions = 0;
    out = malloc((npartitions > 0 ? (size_t)npartitions : 1) * sizeof *out);
    if (out == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory reading the offsets of sink '%s'", sink);
        goto done;
    }
    for (int i = 0; i < npartitions; i++)
        out[i] = -1;
    rc = pc_pg__exec(pg, "SELECT to_regclass('pipectl.sink_offsets') IS NOT NULL", 0, NULL,
                     "the offsets table lookup (to_regclass('pipectl.sink_offsets'))", &res, err);
    if (rc != 0)
        goto done;
    bool exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (exists) {
        const char *params[2] = {sink, topic};
        rc = pc_pg__exec(pg,
                         "SELECT partition, next_offset FROM pipectl.sink_offsets "
                         "WHERE sink = $1 AND topic = $2",
                         2, params, "the query of pipectl.sink_offsets", &res, err);
        if (rc != 0)
            goto done;
        for (int r = 0; r < PQntuples(res); r++) {
            long part = strtol(PQgetvalue(res, r, 0), NULL, 10);
            long long off = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            if (part >= 0 && part < npartitions)
                out[part] = (int64_t)off;
        }
    }
    *next = out;
    out = NULL;
done:
    PQclear(res);
    free(out);
    return rc;
}
