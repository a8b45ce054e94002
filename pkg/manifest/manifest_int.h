/* manifest_int.h: private pieces of pkg/manifest shared by its .c files: the small YAML node
 * tree (built from libyaml events, with positions), the diagnostics collector, and the value
 * parsers (durations, sizes, column types, identifiers). Not part of the public contract. */
#ifndef PC_MANIFEST_INT_H
#define PC_MANIFEST_INT_H
#if !defined(PC_INSIDE_MANIFEST) && !defined(PC_WHITEBOX_TEST)
#error "manifest_int.h is private to pkg/manifest: include manifest.h"
#endif

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

/* ---------- typed getters (getters.c): every value of a manifest is read through these, which
 * report a wrong kind, range or name as one FILE:LINE:COL diagnostic and return false ---------- */

/* A mapping with a fixed set of keys: unknown keys are reported (with "did you mean") when it is
 * opened, mf_obj_get fetches a known key's value, mf_obj_missing reports a required one absent. */
typedef struct mf_obj {
    mf_ctx *c;
    const mf_node *map;
    const char *const *keys;
    uint64_t suggested; /* bit i: an unknown key was reported with keys[i] as the suggestion */
} mf_obj;

typedef struct mf_named {
    const char *name;
    pc_pos pos;
    size_t ix;
} mf_named;

char *mf_dup_or_oom(mf_ctx *c, const char *s);
const char *mf_nearest(const char *word, const char *const *cands, size_t n);
char *mf_hint(const char *s);
void mf_obj_open(mf_obj *o, mf_ctx *c, const mf_node *map, const char *where,
                     const char *const *keys);
const mf_node *mf_obj_get(const mf_obj *o, const char *key);
void mf_obj_missing(mf_obj *o, const char *key, const char *label);
void mf_type_error(mf_ctx *c, const mf_node *v, const char *what, const char *expected);
bool mf_want_kind(mf_ctx *c, const mf_node *v, mf_kind kind, const char *what);
bool mf_get_str(mf_ctx *c, const mf_node *v, const char *what, char **out);
void mf_range_error(mf_ctx *c, const mf_node *v, const char *what, int64_t lo, int64_t hi,
                        int64_t got);
bool mf_get_int(mf_ctx *c, const mf_node *v, const char *what, int lo, int hi, int *out);
bool mf_get_bool(mf_ctx *c, const mf_node *v, const char *what, bool *out);
bool mf_get_duration(mf_ctx *c, const mf_node *v, const char *what, int64_t bare_unit_ms,
                         int64_t lo_ms, int64_t hi_ms, int64_t *out_ms);
bool mf_get_enum(mf_ctx *c, const mf_node *v, const char *what, const char *const *allowed,
                     char **out);
bool mf_check_sql_name(mf_ctx *c, const mf_node *v, const char *what, const char *name);
bool mf_check_pipeline_name(mf_ctx *c, const mf_node *v, const char *name);
bool mf_check_kafka_name(mf_ctx *c, const mf_node *v, const char *what, const char *name);
void mf_check_dups(mf_ctx *c, mf_named *v, size_t n, const char *what);
pc_pos mf_name_pos(const mf_node *item, pc_pos fallback);
char *mf_resolve_path(const char *dir, const char *p);

/* ---------- the parse in progress (manifest.c; cross references in xref.c) ---------- */

typedef struct mf_sec_block {
    pc_mf_kafka_auth a;
    int verify;     /* -1 unset, 0, 1 */
    bool has_sasl;  /* a sasl block is present */
    bool has_cert;  /* tls.cert_file or tls.key_file given */
    bool has_ca;
    bool mech_written; /* sasl.mechanism was given (maybe invalid: already reported) */
} mf_sec_block;

typedef struct mf_parse {
    mf_ctx *c;
    pc_manifest *m;
    const char *dir;     /* the manifest's directory, for relative paths */
    mf_sec_block top;       /* kafka.security as written (what workers inherit) */
    bool topics_unknown; /* kafka.topics unreadable (misspelt block, not a list): skip refs */
    bool tables_unknown; /* same for postgres.schemas */
} mf_parse;

/* Cross references, once every section is read: sources and sinks -> topics and tables, mapping
 * columns, NocoDB schemas, worker names (xref.c). */
void mf_check_refs(mf_parse *P, const mf_node *root);
/* "what 'name'" or "what #index" (1-based) for diagnostics about a list item (getters.c). */
char *mf_label(const char *what, const char *name, size_t index);
/* The kafka block (kafka_section.c) and postgres.archiving (archiving.c). */
void mf_parse_kafka(mf_parse *P, const mf_node *k);
/* A source's or sink's security block over what kafka.security gives it (kafka_section.c). */
void mf_resolve_worker_auth(mf_parse *P, const mf_node *n, const char *where,
                            const mf_sec_block *top, pc_mf_kafka_auth *out, bool *own);
/* kafka.security as written (n NULL: no kafka block, plaintext), into top (kafka_section.c). */
void mf_parse_top_security(mf_parse *P, const mf_node *n, mf_sec_block *top);
/* derive_acls needs principals for every worker (kafka_section.c). */
void mf_check_derive(mf_parse *P);
void mf_parse_archiving(mf_parse *P, const mf_node *a, const char *dir);
/* Frees what a pc_mf_kafka_auth holds (manifest.c). */
void mf_auth_dispose(pc_mf_kafka_auth *a);
/* The value of a top-level key, or NULL. */
const mf_node *mf_root_get(const mf_node *root, const char *key);

#endif
