/* status_nocodb.c: the NocoDB part of `pipectl status`: is NocoDB reachable and are the
 * credentials good, does the base exist, is there a source for each exposed schema, and how
 * many tables NocoDB sees in it. It opens NocoDB on its own connection, so it reports NocoDB's
 * state even when another system (or the plan) failed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nocodb.h"

static const pc_nocodb_source *find_source(const pc_nocodb_base *b, const char *alias)
{
    for (size_t i = 0; b != NULL && i < b->nsources; i++)
        if (!b->sources[i].is_meta && pc_streq(b->sources[i].alias, alias))
            return &b->sources[i];
    return NULL;
}

/* One exposed schema: its source's state and the number of tables NocoDB sees in it. */
static json_t *source_status(pc_nocodb *nc, const pc_manifest *m, const pc_nocodb_base *base,
                             const char *schema, FILE *text, bool *healthy)
{
    pc_error err = {0};
    pc_nocodb_table *tables = NULL;
    size_t ntables = 0;
    char *alias = pc_plan_nc_alias(m->name, schema);
    const pc_nocodb_source *src = base != NULL ? find_source(base, alias) : NULL;
    const char *state = "missing";
    int rc = -1;
    if (src != NULL) {
        state = src->enabled ? "present" : "disabled";
        rc = pc_nocodb_list_tables(nc, base->id, src->id, false, &tables, &ntables, &err);
    }
    if (src == NULL || !src->enabled || rc != 0)
        *healthy = false;
    if (text != NULL) {
        fprintf(text, "    source  %s  schema %s: ", alias ? alias : "?", schema);
        if (src == NULL)
            fprintf(text, "MISSING (run 'pipectl apply')\n");
        else if (rc != 0)
            fprintf(text, "%s, tables unknown: %s\n", state, err.msg);
        else
            fprintf(text, "%s, %zu table%s NocoDB sees\n", state, ntables, ntables == 1 ? "" : "s");
    }
    json_t *j = json_pack("{s:s?, s:s, s:s?, s:s, s:o, s:s?}", "alias", alias, "schema", schema,
                          "id", src != NULL ? src->id : NULL, "state", state, "tables",
                          rc == 0 ? json_integer((json_int_t)ntables) : json_null(), "error",
                          src != NULL && rc != 0 ? err.msg : NULL);
    pc_nocodb_tables_free(tables, ntables);
    free(alias);
    return j;
}

json_t *cli_status_nocodb(const pc_manifest *m, pc_nocodb *shared, FILE *text,
                          bool *healthy)
{
    pc_error err = {0};
    pc_nocodb *nc = shared, *own = NULL;
    pc_nocodb_base *base = NULL;
    const pc_mf_nocodb *n = &m->nocodb;
    if (!n->declared)
        return NULL;
    pc_nocodb_auth auth = {.url = n->url,
                           .token = n->token,
                           .email = n->email,
                           .password = n->password,
                           .timeout_s = g_cli.timeout_s};
    int rc = 0;
    if (nc == NULL) { /* the plan's session is gone (a system failed): sign in on our own */
        rc = pc_nocodb_open(&own, &auth, &err);
        nc = own;
    }
    bool reachable = rc == 0;
    if (rc == 0)
        rc = pc_nocodb_find_base(nc, n->base, &base, &err);
    if (rc != 0 || base == NULL)
        *healthy = false;
    char *url = pc_redact(n->url); /* nocodb.url may hold user:password@ */
    if (text != NULL) {
        fprintf(text, "  nocodb    %s  %s\n", url ? url : "?",
                !reachable ? "UNREACHABLE"
                : rc != 0  ? "reachable, base unknown"
                           : "reachable");
        if (rc != 0)
            fprintf(text, "    error: %s\n", err.msg);
        else if (base == NULL)
            fprintf(text, "    base    %s: MISSING (run 'pipectl apply')\n",
                    n->base ? n->base : "?");
        else
            fprintf(text, "    base    %s (%s)\n", base->title ? base->title : "?",
                    base->id ? base->id : "?");
    }
    json_t *sources = json_array();
    for (size_t i = 0; rc == 0 && i < n->nschemas; i++)
        json_array_append_new(sources, source_status(nc, m, base, n->schemas[i], text, healthy));
    if (rc != 0)
        for (size_t i = 0; i < n->nschemas; i++) {
            char *alias = pc_plan_nc_alias(m->name, n->schemas[i]);
            json_array_append_new(sources,
                                  json_pack("{s:s?, s:s, s:s, s:n}", "alias", alias, "schema",
                                            n->schemas[i], "state", "unknown", "tables"));
            free(alias);
        }
    json_t *j =
        json_pack("{s:s?, s:b, s:s?, s:{s:s?, s:b, s:s?}, s:o}", "url", url, "reachable", reachable,
                  "error", rc != 0 ? err.msg : NULL, "base", "title", n->base, "found",
                  base != NULL, "id", base != NULL ? base->id : NULL, "sources", sources);
    free(url);
    pc_nocodb_base_free(base);
    pc_nocodb_free(own);
    return j;
}
