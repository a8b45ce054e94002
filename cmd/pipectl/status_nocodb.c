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
static void source_compute(cli_nocodb_source *so, pc_nocodb *nc, const pc_manifest *m,
                           const pc_nocodb_base *base, const char *schema, bool *healthy)
{
    pc_nocodb_table *tables = NULL;
    so->schema = schema;
    so->alias = pc_plan_nc_alias(m->name, schema);
    const pc_nocodb_source *src = base != NULL ? find_source(base, so->alias) : NULL;
    so->state = "missing";
    so->rc = -1;
    if (src != NULL) {
        so->found = true;
        so->id = src->id;
        so->state = src->enabled ? "present" : "disabled";
        so->rc = pc_nocodb_list_tables(nc, base->id, src->id, false, &tables, &so->ntables,
                                       &so->err);
    }
    if (src == NULL || !src->enabled || so->rc != 0)
        *healthy = false;
    pc_nocodb_tables_free(tables, so->ntables);
}

void cli_status_nocodb_compute(cli_nocodb_status *st, const pc_manifest *m, pc_nocodb *shared,
                               bool *healthy)
{
    pc_nocodb *nc = shared, *own = NULL;
    const pc_mf_nocodb *n = &m->nocodb;
    if (!n->declared)
        return;
    st->declared = true;
    st->base_name = n->base;
    pc_nocodb_auth auth = {.url = n->url,
                           .token = n->token,
                           .email = n->email,
                           .password = n->password,
                           .timeout_s = g_cli.timeout_s};
    if (nc == NULL) { /* the plan's session is gone (a system failed): sign in on our own */
        st->rc = pc_nocodb_open(&own, &auth, &st->err);
        nc = own;
    }
    st->reachable = st->rc == 0;
    if (st->rc == 0)
        st->rc = pc_nocodb_find_base(nc, n->base, &st->base, &st->err);
    if (st->rc != 0 || st->base == NULL)
        *healthy = false;
    st->url = pc_redact(n->url); /* nocodb.url may hold user:password@ */
    st->sources = calloc(n->nschemas ? n->nschemas : 1, sizeof *st->sources);
    for (size_t i = 0; st->sources != NULL && i < n->nschemas; i++) {
        cli_nocodb_source *so = &st->sources[st->nsources++];
        if (st->rc == 0) {
            source_compute(so, nc, m, st->base, n->schemas[i], healthy);
        } else {
            so->schema = n->schemas[i];
            so->alias = pc_plan_nc_alias(m->name, n->schemas[i]);
            so->state = "unknown";
            so->rc = -1;
        }
    }
    pc_nocodb_free(own);
}

void cli_status_nocodb_text(const cli_nocodb_status *st, FILE *out)
{
    if (!st->declared)
        return;
    const pc_nocodb_base *base = st->base;
    fprintf(out, "  nocodb    %s  %s\n", st->url ? st->url : "?",
            !st->reachable ? "UNREACHABLE"
            : st->rc != 0  ? "reachable, base unknown"
                           : "reachable");
    if (st->rc != 0)
        fprintf(out, "    error: %s\n", st->err.msg);
    else if (base == NULL)
        fprintf(out, "    base    %s: MISSING (run 'pipectl apply')\n",
                st->base_name ? st->base_name : "?");
    else
        fprintf(out, "    base    %s (%s)\n", base->title ? base->title : "?",
                base->id ? base->id : "?");
    for (size_t i = 0; st->rc == 0 && i < st->nsources; i++) {
        const cli_nocodb_source *so = &st->sources[i];
        fprintf(out, "    source  %s  schema %s: ", so->alias ? so->alias : "?", so->schema);
        if (!so->found)
            fprintf(out, "MISSING (run 'pipectl apply')\n");
        else if (so->rc != 0)
            fprintf(out, "%s, tables unknown: %s\n", so->state, so->err.msg);
        else
            fprintf(out, "%s, %zu table%s NocoDB sees\n", so->state, so->ntables,
                    so->ntables == 1 ? "" : "s");
    }
}

json_t *cli_status_nocodb_json(const cli_nocodb_status *st)
{
    if (!st->declared)
        return NULL;
    json_t *sources = json_array();
    for (size_t i = 0; i < st->nsources; i++) {
        const cli_nocodb_source *so = &st->sources[i];
        if (st->rc != 0)
            json_array_append_new(sources,
                                  json_pack("{s:s?, s:s, s:s, s:n}", "alias", so->alias, "schema",
                                            so->schema, "state", "unknown", "tables"));
        else
            json_array_append_new(
                sources, json_pack("{s:s?, s:s, s:s?, s:s, s:o, s:s?}", "alias", so->alias,
                                   "schema", so->schema, "id", so->id, "state", so->state,
                                   "tables",
                                   so->rc == 0 ? json_integer((json_int_t)so->ntables)
                                               : json_null(),
                                   "error", so->found && so->rc != 0 ? so->err.msg : NULL));
    }
    const pc_nocodb_base *base = st->base;
    return json_pack("{s:s?, s:b, s:s?, s:{s:s?, s:b, s:s?}, s:o}", "url", st->url, "reachable",
                     st->reachable, "error", st->rc != 0 ? st->err.msg : NULL, "base", "title",
                     st->base_name, "found", base != NULL, "id", base != NULL ? base->id : NULL,
                     "sources", sources);
}

void cli_status_nocodb_dispose(cli_nocodb_status *st)
{
    for (size_t i = 0; i < st->nsources; i++)
        free(st->sources[i].alias);
    free(st->sources);
    free(st->url);
    pc_nocodb_base_free(st->base);
    *st = (cli_nocodb_status){0};
}
