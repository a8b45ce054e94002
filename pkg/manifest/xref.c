/* xref.c: the manifest's cross references, checked once every section is read: sources and
 * sinks name declared topics and tables, mappings name real columns and fill every NOT NULL one,
 * upsert has a key, NocoDB's schemas are declared, worker names are unique. */
#include "manifest_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------- cross references ---------- */

static void ref_topic(mf_parse *P, const mf_node *v, const char *who, const char *role,
                      const char *name)
{
    if (P->topics_unknown)
        return;
    pc_manifest *m = P->m;
    if (name == NULL || pc_manifest_find_topic(m, name) != NULL)
        return;
    const char **cands = calloc(m->ntopics + 1, sizeof *cands);
    if (cands == NULL) {
        P->c->oom = true;
        return;
    }
    for (size_t i = 0; i < m->ntopics; i++)
        cands[i] = m->topics[i].name;
    char *h = mf_hint(mf_nearest(name, cands, m->ntopics));
    mf_diag(P->c, v->pos, "%s %s topic '%s', which is not declared in kafka.topics%s", who, role,
            name, h ? h : "");
    free(h);
    free(cands);
}

static const mf_node *item_value(const mf_node *seq, size_t i, const char *key)
{
    if (seq == NULL || seq->kind != MF_SEQ || i >= seq->nkids || seq->kids[i]->kind != MF_MAP)
        return NULL;
    const mf_node *it = seq->kids[i];
    for (size_t k = 0; k + 1 < it->nkids; k += 2)
        if (it->kids[k]->kind == MF_SCALAR && strcmp(it->kids[k]->value, key) == 0)
            return it->kids[k + 1];
    return NULL;
}

const mf_node *mf_root_get(const mf_node *root, const char *key)
{
    for (size_t k = 0; k + 1 < root->nkids; k += 2)
        if (root->kids[k]->kind == MF_SCALAR && strcmp(root->kids[k]->value, key) == 0)
            return root->kids[k + 1];
    return NULL;
}

void mf_check_refs(mf_parse *P, const mf_node *root)
{
    pc_manifest *m = P->m;
    mf_ctx *c = P->c;
    const mf_node *srcs = mf_root_get(root, "sources"), *sinks = mf_root_get(root, "sinks");

    /* sources and sinks share one namespace: `pipectl run NAME` picks either */
    mf_named *names = calloc(m->nsources + m->nsinks + 1, sizeof *names);
    if (names == NULL) {
        c->oom = true;
        return;
    }
    size_t nn = 0;
    for (size_t i = 0; i < m->nsources; i++) {
        const pc_mf_source *s = &m->sources[i];
        const mf_node *tv = item_value(srcs, i, "topic");
        if (tv != NULL && s->name != NULL)
            ref_topic(P, tv, "source", "writes to", s->topic);
        names[nn].name = s->name;
        names[nn].pos = mf_name_pos(srcs->kids[i], s->pos);
        names[nn].ix = nn;
        nn++;
    }
    for (size_t i = 0; i < m->nsinks; i++) {
        const pc_mf_sink *s = &m->sinks[i];
        names[nn].name = s->name;
        names[nn].pos = mf_name_pos(sinks->kids[i], s->pos);
        names[nn].ix = nn;
        nn++;
        const mf_node *v;
        if ((v = item_value(sinks, i, "topic")) != NULL)
            ref_topic(P, v, "sink", "reads", s->topic);
        if ((v = item_value(sinks, i, "dead_letter")) != NULL && s->dead_letter != NULL) {
            ref_topic(P, v, "sink", "sends dead letters to", s->dead_letter);
            if (pc_streq(s->dead_letter, s->topic))
                mf_diag(c, v->pos,
                        "dead_letter must be a different topic than the one the sink "
                        "reads ('%s')",
                        s->topic);
        }
        const pc_mf_table *tb = NULL;
        if ((v = item_value(sinks, i, "table")) != NULL && s->table != NULL && !P->tables_unknown) {
            const char *dot = strchr(s->table, '.');
            if (dot == NULL) {
                mf_diag(c, v->pos, "sink table must be written as schema.table, got '%s'",
                        s->table);
                continue;
            }
            char *schema = pc_strndup(s->table, (size_t)(dot - s->table));
            if (schema == NULL) {
                c->oom = true;
                break;
            }
            tb = pc_manifest_find_table(m, schema, dot + 1);
            if (tb == NULL) {
                size_t total = 0;
                for (size_t a = 0; a < m->nschemas; a++)
                    total += m->schemas[a].ntables;
                char **full = calloc(total + 1, sizeof *full);
                size_t nf = 0;
                for (size_t a = 0; full != NULL && a < m->nschemas; a++)
                    for (size_t b = 0; b < m->schemas[a].ntables; b++)
                        if (m->schemas[a].name && m->schemas[a].tables[b].name)
                            full[nf++] = pc_asprintf("%s.%s", m->schemas[a].name,
                                                     m->schemas[a].tables[b].name);
                char *h = full ? mf_hint(mf_nearest(s->table, (const char *const *)full, nf)) : NULL;
                mf_diag(c, v->pos,
                        "sink writes to table '%s', which is not declared in "
                        "postgres.schemas%s",
                        s->table, h ? h : "");
                free(h);
                for (size_t a = 0; a < nf; a++)
                    free(full[a]);
                free(full);
            }
            free(schema);
        }
        if (tb == NULL)
            continue;
        const mf_node *mp = item_value(sinks, i, "mapping");
        const char **cols = calloc(tb->ncolumns + 1, sizeof *cols);
        if (cols == NULL) {
            c->oom = true;
            break;
        }
        for (size_t k = 0; k < tb->ncolumns; k++)
            cols[k] = tb->columns[k].name;
        if (mp != NULL && mp->kind == MF_MAP) {
            for (size_t k = 0; k + 1 < mp->nkids; k += 2) {
                const mf_node *kn = mp->kids[k];
                if (kn->kind != MF_SCALAR)
                    continue;
                bool found = false;
                for (size_t x = 0; x < tb->ncolumns; x++)
                    if (pc_streq(cols[x], kn->value))
                        found = true;
                if (!found) {
                    char *h = mf_hint(mf_nearest(kn->value, cols, tb->ncolumns));
                    mf_diag(c, kn->pos, "mapping names column '%s', which is not a column of %s%s",
                            kn->value, s->table, h ? h : "");
                    free(h);
                }
            }
            bool has_pk = false;
            for (size_t x = 0; x < tb->ncolumns; x++) {
                const pc_mf_column *col = &tb->columns[x];
                has_pk |= col->primary_key;
                if (col->name != NULL && !col->nullable &&
                    pc_kvlist_get(&s->mapping, col->name) == NULL)
                    mf_diag(c, mp->pos,
                            "mapping of sink '%s' does not fill NOT NULL column '%s' "
                            "of %s",
                            s->name ? s->name : "?", col->name, s->table);
            }
            if (pc_streq(s->mode, "upsert") && !has_pk)
                mf_diag(c, s->pos, "sink '%s' uses mode upsert but %s has no primary_key column",
                        s->name ? s->name : "?", s->table);
        }
        free(cols);
    }
    mf_check_dups(c, names, nn, "source/sink name");
    free(names);

    /* nocodb.schemas must be declared schemas */
    const mf_node *nc = mf_root_get(root, "nocodb");
    const mf_node *ncs = NULL;
    if (nc != NULL && nc->kind == MF_MAP)
        ncs = mf_root_get(nc, "schemas");
    if (ncs != NULL && ncs->kind == MF_SEQ) {
        const char **cands = calloc(m->nschemas + 1, sizeof *cands);
        for (size_t i = 0; cands != NULL && i < m->nschemas; i++)
            cands[i] = m->schemas[i].name;
        for (size_t i = 0; cands != NULL && i < ncs->nkids; i++) {
            const mf_node *sv = ncs->kids[i];
            if (sv->kind != MF_SCALAR || sv->bad || mf_is_null(sv))
                continue;
            bool found = false;
            for (size_t k = 0; k < m->nschemas; k++)
                found |= pc_streq(m->schemas[k].name, sv->value);
            if (!found) {
                char *h = mf_hint(mf_nearest(sv->value, cands, m->nschemas));
                mf_diag(c, sv->pos, "nocodb schema '%s' is not declared in postgres.schemas%s",
                        sv->value, h ? h : "");
                free(h);
            }
        }
        if (cands == NULL)
            c->oom = true;
        free(cands);
    }
}
