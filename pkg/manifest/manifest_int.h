/* manifest_int.h: private pieces of pkg/manifest shared by its .c files: the small YAML node
 * tree (built from libyaml events, with positions), the diagnostics collector, and the value
 * parsers (durations, sizes, column types, identifiers). Not part of the public contract. */
#ifndef PC_MANIFEST_INT_H
#define PC_MANIFEST_INT_H

#include "manifest.h"

#define MF_MAX_BYTES (4u * 1024u * 1024u) /* larger manifests are refused */
#define MF_MAX_DEPTH 32                   /* deeper nesting is refused */
#define MF_MAX_VALUE_SHOWN 200            /* bytes of a value a diagnostic quotes */

typedef enum mf_kind { MF_SCALAR, MF_MAP, MF_SEQ } mf_kind;

typedef struct mf_node {
    mf_kind kind;
    pc_pos pos;            /* start of the node */
    size_t start, end;     /* byte range in the raw text */
    bool quoted;           /* scalar written quoted, as a block scalar, or tagged !!str */
    bool bad;              /* an error was already reported for this value */
    bool expanded;         /* ${VAR} expansion changed the text */
    char *value;           /* scalars: text after ${VAR} expansion */
    struct mf_node **kids; /* maps: key, value, key, value...; sequences: items */
    size_t nkids;
} mf_node;

/* Diagnostics collector used while parsing. */
typedef struct mf_ctx {
    pc_diags *diags;
    bool oom;
    pc_getenv_fn getenv_fn;
    void *env_ctx;
} mf_ctx;

void mf_diag(mf_ctx *c, pc_pos pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mf_diags_sort(pc_diags *d);

/* Builds the tree from text; reports syntax errors, aliases, depth, multiple documents.
 * *root is NULL for an empty stream. Returns 0, or -1 when a diagnostic stops parsing. */
int mf_tree_build(mf_ctx *c, const char *text, size_t len, mf_node **root);
void mf_node_free(mf_node *n);
/* Expands ${VAR}, ${VAR:-default} and $$ in every value scalar (not in mapping keys). */
void mf_tree_expand(mf_ctx *c, mf_node *n);
/* Expands one string; on error returns NULL and sets *errmsg (malloc'd). */
char *mf_expand(const char *s, pc_getenv_fn fn, void *ctx, char **errmsg);
/* Reports duplicate keys and non-scalar keys in every mapping. */
void mf_tree_check_keys(mf_ctx *c, mf_node *n);

/* True for a plain scalar YAML reads as null (~, null, empty). */
bool mf_is_null(const mf_node *n);
/* "string 'x'", "integer 3", "mapping", "sequence", "null", "boolean true" (value shortened). */
char *mf_describe(const mf_node *n);

/* Value parsers: 0 on success, -1 on a malformed value, -2 on overflow. */
int mf_parse_duration_ms(const char *s, int64_t *ms);
int mf_parse_size_bytes(const char *s, int64_t *bytes);
int mf_parse_int64(const char *s, int64_t *v);
/* Returns NULL when valid, else a static message fragment describing the problem. */
/* Normalises a column type (lower case, single spaces); NULL + *why when unknown/invalid. */
char *mf_column_type(const char *s, const char **why, const char **suggest);

bool mf_sql_ident_ok(const char *s);
/* NULL when s is a valid metadata.name (DNS-1123 label or SQL-style name), else why not. */
const char *mf_pipeline_name_problem(const char *s);
/* NULL when ok, else the reason. */
const char *mf_kafka_name_problem(const char *s);
/* kafka_check.c: NULL when Kafka documents the topic config key and value is valid for it
 * (value as normalised: durations and sizes already in ms and bytes), else a new message. */
char *mf_topic_config_problem(const char *key, const char *value);
/* NULL when every entry of kafka.bootstrap is [PROTOCOL://]host:port with a port 1-65535. */
char *mf_bootstrap_problem(const char *list);

#endif
