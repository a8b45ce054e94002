/* plan.h: the pure planning core. desired (manifest) + observed (what adapters saw) -> an ordered
 * list of actions, rendered as text or JSON, saved to and loaded from plan files.
 *
 * Nothing in pkg/plan opens a socket or a file, reads the clock or the environment. Adapters fill
 * a pc_observed; pkg/apply executes a pc_plan's actions through the adapters. */
#ifndef PC_PLAN_H
#define PC_PLAN_H

#include "core.h"
#include "manifest.h"

/* ---------- observed state (filled by adapters, or by tests) ---------- */

typedef enum pc_cfg_source {
    PC_CFG_DEFAULT = 0,     /* broker/static default: not an override on this topic */
    PC_CFG_TOPIC_OVERRIDE,  /* dynamic topic config: set on this topic */
} pc_cfg_source;

typedef struct pc_obs_config {
    char *key;
    char *value;            /* NULL for sensitive or null values */
    pc_cfg_source source;
} pc_obs_config;

typedef struct pc_obs_topic {
    char *name;
    int partitions;
    int replication_factor; /* replicas of partition 0 */
    bool internal;          /* Kafka internal topic (__consumer_offsets, ...) */
    int under_replicated;   /* partitions whose in-sync replicas are fewer than their replicas */
    int *under_replicated_ids; /* their partition ids, ascending (under_replicated of them) */
    bool configs_known;     /* DescribeConfigs was done for this topic */
    pc_obs_config *configs; /* every config the broker reported (effective values) */
    size_t nconfigs;
} pc_obs_topic;

typedef struct pc_obs_column {
    char *name;
    char *type;     /* pg format_type(): "integer", "character varying(10)", "timestamp with time zone" */
    bool nullable;
    bool primary_key;
} pc_obs_column;

typedef struct pc_obs_table {
    char *schema;
    char *name;
    pc_obs_column *columns; /* in attnum order */
    size_t ncolumns;
} pc_obs_table;

typedef struct pc_obs_setting {
    char *name;       /* "archive_mode", "archive_command", "wal_level", "archive_timeout" */
    char *value;      /* pg_settings.setting (running value) */
    char *unit;       /* pg_settings.unit or NULL ("s", "ms", "kB", "8kB", ...) */
    char *context;    /* pg_settings.context: "postmaster", "sighup", ... */
    char *pending;    /* value from postgresql.auto.conf/pg_file_settings awaiting restart, or NULL */
} pc_obs_setting;

/* One Kafka ACL binding: a principal's permission for one operation on one resource pattern.
 * Every field is a string in the manifest's lower-case vocabulary (kafka.acls), so the plan core
 * stays free of librdkafka: resource "topic" | "group" | "cluster" | "transactional_id";
 * pattern "literal" | "prefixed"; operation "all" | "read" | "write" | "create" | "delete" |
 * "alter" | "describe" | "cluster_action" | "describe_configs" | "alter_configs" |
 * "idempotent_write"; permission "allow" | "deny"; host "*" or an address. An observed binding
 * the vocabulary cannot name (a resource type newer than pipectl) carries "unknown". */
typedef struct pc_acl {
    char *principal;  /* "User:ingest" */
    char *resource;
    char *name;       /* resource name; "kafka-cluster" for the cluster */
    char *pattern;
    char *operation;
    char *permission;
    char *host;
} pc_acl;

/* What pipectl recorded as its own (Postgres table pipectl.inventory): the ownership mark. */
typedef struct pc_obs_owned {
    char *kind;       /* "topic" | "table" | "acl" */
    char *name;       /* topic name, "schema.table", or an ACL's pc_plan_acl_string */
    pc_kvlist managed_keys; /* for topics: config keys the manifest managed at last apply (value "") */
} pc_obs_owned;

/* Where postgres.dsn connects, as libpq resolved it (host NULL for a Unix socket). */
typedef struct pc_obs_pgconn {
    char *host;
    int port;
    char *database;
    char *user;
} pc_obs_pgconn;

/* Privileges are written as a comma-separated subset of "SELECT,INSERT,UPDATE,DELETE", in that
 * order ("" = none): the privileges pipectl manages for NocoDB's role. */
typedef struct pc_obs_role_table {
    char *name;
    char *privileges;  /* the role's privileges on the table */
} pc_obs_role_table;

typedef struct pc_obs_role_schema {
    char *name;               /* an exposed schema that exists */
    bool usage;               /* the role has USAGE on it */
    char *default_privileges; /* granted to the role on tables the DSN user creates here later */
    pc_obs_role_table *tables; /* every table of the schema */
    size_t ntables;
} pc_obs_role_schema;

typedef enum pc_pw_state {
    PC_PW_UNKNOWN = 0, /* not checked (role missing, cannot log in, or no password declared) */
    PC_PW_OK,          /* a libpq connection as the role with nocodb.role_password succeeded */
    PC_PW_FAILED,      /* the server rejected that password */
} pc_pw_state;

/* The Postgres role NocoDB connects as (nocodb.role). */
typedef struct pc_obs_role {
    bool observed;     /* nocodb.role is declared and Postgres was asked */
    char *name;
    bool exists;
    bool superuser;
    bool can_login;
    bool connect;      /* CONNECT on the DSN's database */
    pc_pw_state password;
    char *login_error; /* a login failure not about the password (pg_hba.conf, ...), or NULL */
    pc_obs_role_schema *schemas;
    size_t nschemas;
} pc_obs_role;

typedef struct pc_obs_nc_table {
    char *name;        /* table_name in Postgres */
    char **columns;    /* column names NocoDB knows */
    size_t ncolumns;
} pc_obs_nc_table;

typedef struct pc_obs_nc_source {
    char *id;
    char *alias;
    char *host;        /* connection as NocoDB returns it; NULL / 0 when it does not say */
    int port;
    char *database;
    char *user;
    char *schema;
    bool enabled;
    bool is_meta;      /* NocoDB's own default source of the base */
    bool tables_known; /* the tables below were listed (pipectl's sources only) */
    pc_obs_nc_table *tables;
    size_t ntables;
} pc_obs_nc_source;

typedef struct pc_obs_nocodb {
    bool observed;     /* the manifest declares nocodb and NocoDB answered */
    char *base_id;     /* the base titled nocodb.base, NULL when there is none */
    char *base_title;
    pc_obs_nc_source *sources;
    size_t nsources;
} pc_obs_nocodb;

typedef struct pc_observed {
    bool kafka_observed;       /* false when the manifest has no kafka block */
    pc_obs_topic *topics;      /* all topics in the cluster (metadata), configs for managed ones */
    size_t ntopics;
    int kafka_brokers;         /* live brokers the metadata lists; 0 when unknown */
    int *down_brokers;         /* ids in some topic's replica set that the metadata does not
                                * list as live (a broker down), ascending */
    size_t ndown_brokers;
    bool pg_observed;
    char **schemas;            /* existing schemas among the declared ones */
    size_t nschemas;
    pc_obs_table *tables;      /* existing tables in declared schemas */
    size_t ntables;
    pc_obs_setting *settings;  /* the archiving settings */
    size_t nsettings;
    pc_obs_owned *owned;       /* inventory for this pipeline (empty when not yet created) */
    size_t nowned;
    pc_obs_pgconn pgconn;      /* filled with pg_observed */
    pc_obs_role role;          /* NocoDB's Postgres role (nocodb.role) */
    pc_obs_nocodb nocodb;
    bool acls_observed;        /* DescribeAcls answered (the cluster has an authorizer) */
    pc_acl *acls;              /* every ACL binding in the cluster */
    size_t nacls;
} pc_observed;

void pc_observed_free(pc_observed *o);       /* frees the members, not o itself */
/* Canonical JSON of the observed state (sorted, stable, no secrets); used for snapshots and the
 * plan fingerprint. */
int pc_observed_to_json(const pc_observed *o, char **out, pc_error *err);
/* SHA-256 hex of pc_observed_to_json restricted to what the manifest manages. */
int pc_observed_fingerprint(const pc_manifest *m, const pc_observed *o, char out[65], pc_error *err);

/* ---------- actions ---------- */

typedef enum pc_op {
    PC_OP_CREATE = 0, /* "+" */
    PC_OP_CHANGE,     /* "~" */
    PC_OP_DELETE,     /* "-" */
    PC_OP_REFUSED,    /* "!" drift or request pipectl will not perform; explained in reason */
} pc_op;

typedef enum pc_action_kind {
    PC_ACT_TOPIC_CREATE = 0,   /* topic, partitions, replication_factor, configs */
    PC_ACT_TOPIC_PARTITIONS,   /* topic, partitions (new total) */
    PC_ACT_TOPIC_CONFIG,       /* topic, configs = the COMPLETE override set to send (AlterConfigs) */
    PC_ACT_TOPIC_DELETE,       /* topic */
    PC_ACT_SCHEMA_CREATE,      /* schema */
    PC_ACT_TABLE_CREATE,       /* schema, table, columns */
    PC_ACT_COLUMN_ADD,         /* schema, table, column (columns[0]) */
    PC_ACT_COLUMN_TYPE,        /* schema, table, column (columns[0]: new type) */
    PC_ACT_COLUMN_NULLABLE,    /* schema, table, column (columns[0].nullable: new value) */
    PC_ACT_COLUMN_DROP,        /* schema, table, column */
    PC_ACT_SETTING,            /* setting, value, restart_required */
    PC_ACT_NOTE,               /* no-op information: a pending restart, an unmanaged extra */
    /* NocoDB's Postgres role (system "postgres"). The password is never in an action: apply
     * takes it from the manifest (nocodb.role_password). */
    PC_ACT_ROLE_CREATE,        /* role (LOGIN, never SUPERUSER, with the password) */
    PC_ACT_ROLE_ALTER,         /* role: LOGIN and the password (changes say which is wrong) */
    PC_ACT_ROLE_GRANT,         /* role, privileges, schema (NULL: CONNECT on database) */
    /* NocoDB (system "nocodb") */
    PC_ACT_NC_BASE_CREATE,     /* base */
    PC_ACT_NC_SOURCE_CREATE,   /* base, alias, schema, host, port, database, role */
    PC_ACT_NC_SOURCE_UPDATE,   /* same + base_id, source_id */
    PC_ACT_NC_SOURCE_DELETE,   /* base, base_id, source_id, alias */
    PC_ACT_NC_META_SYNC,       /* base, base_id, source_id, alias, schema */
    /* Kafka ACLs (system "kafka", object = pc_plan_acl_string of acl) */
    PC_ACT_ACL_CREATE,         /* acl (op CREATE) */
    PC_ACT_ACL_DELETE,         /* acl (op DELETE, or REFUSED without --allow-delete) */
    /* A new kind goes above this line, and into pc_action_system_of (the compiler says so). */
} pc_action_kind;

/* The last kind, for code that walks every kind (tests). Move it when a kind is added last. */
#define PC_ACT_LAST PC_ACT_ACL_DELETE

/* The system an action is performed on. */
typedef enum pc_action_system {
    PC_SYS_NONE = 0, /* PC_ACT_NOTE: information only, performed nowhere */
    PC_SYS_KAFKA,
    PC_SYS_POSTGRES,
    PC_SYS_NOCODB,
} pc_action_system;

/* The one classification of action kinds by system: topics and ACLs are Kafka's; schemas,
 * tables, columns, settings and NocoDB's role are PostgreSQL's; bases, sources and meta syncs
 * are NocoDB's; a note is no system's. An action's system field is pc_action_system_name of
 * this for every kind but PC_ACT_NOTE, whose system says what the note is about. */
pc_action_system pc_action_system_of(pc_action_kind k);
/* "kafka", "postgres", "nocodb"; "" for PC_SYS_NONE. Static string. */
const char *pc_action_system_name(pc_action_system s);
/* The object an action of kind k is about, as plan and apply show it between the system and
 * the object's name: "topic", "schema", "table", "column", "setting", "role", "grant", "base",
 * "source", "meta sync of source", "acl"; "note" for PC_ACT_NOTE; "object" for a value that is
 * no kind. Static string. */
const char *pc_action_noun(pc_action_kind k);

/* One attribute change shown to the user: key: from -> to (from NULL = unset, to NULL = reset). */
typedef struct pc_change {
    char *key;
    char *from;
    char *to;
} pc_change;

typedef struct pc_action {
    pc_op op;
    pc_action_kind kind;
    char *system;            /* "kafka" | "postgres" */
    char *object;            /* display name: topic name, "schema.table", "schema.table.column", setting */

    char *topic;
    int partitions;
    int replication_factor;
    pc_kvlist configs;

    char *schema;
    char *table;
    pc_mf_column *columns;   /* owned copies */
    size_t ncolumns;

    char *setting;
    char *value;
    bool restart_required;

    char *role;              /* role_*; nocodb source: the user NocoDB connects as */
    char *privileges;        /* role_grant: "SELECT" or "SELECT,INSERT,UPDATE,DELETE" */
    char *base;              /* nocodb_*: the base title */
    char *base_id;           /* observed base id; NULL when this plan creates the base */
    char *source_id;         /* nocodb source update/delete/sync */
    char *alias;             /* nocodb source alias ("<pipeline>_<schema>") */
    char *host;              /* nocodb source: Postgres as NocoDB reaches it */
    int port;
    char *database;

    pc_acl acl;              /* acl_create, acl_delete: the one binding */

    pc_change *changes;      /* for display */
    size_t nchanges;
    char *reason;            /* why refused / what a note means / "needs --allow-delete" */
} pc_action;

typedef struct pc_plan {
    char *pipeline;          /* metadata.name */
    char fingerprint[65];    /* of the observed state the plan was computed from */
    pc_action *actions;      /* in execution order */
    size_t nactions;
} pc_plan;

typedef struct pc_plan_opts {
    bool allow_delete;
    const char *pipectl_exe; /* absolute path of the running binary, for the default archive_command */
    const char *manifest_path; /* absolute manifest path, for the default archive_command */
} pc_plan_opts;

int pc_plan_build(pc_plan **out, const pc_manifest *m, const pc_observed *o,
                  const pc_plan_opts *opts, pc_error *err);
void pc_plan_free(pc_plan *p);

/* true when at least one action is CREATE/CHANGE/DELETE/REFUSED (notes don't count). */
bool pc_plan_has_changes(const pc_plan *p);
/* counts by op */
void pc_plan_summary(const pc_plan *p, size_t *create, size_t *change, size_t *del, size_t *refused);

/* Text like terraform's: "+ kafka topic users_created (partitions=3 ...)", "~ ...", "- ...", "! ...",
 * and a summary line; "No changes. ..." when empty. color adds ANSI colours. */
int pc_plan_render_text(const pc_plan *p, bool color, char **out, pc_error *err);
/* JSON, schema documented in README ("format_version": "1"). */
int pc_plan_render_json(const pc_plan *p, char **out, pc_error *err);
/* Plan file = the JSON rendering; load validates format_version and every field. */
int pc_plan_load_json(pc_plan **out, const char *text, size_t len, pc_error *err);
/* Whether a saved plan is exactly the plan computed now: the same pipeline, fingerprint and
 * actions in the same order, every field of every action equal (op, kind, system, object,
 * payload, ACL binding, changes and reason; topic configs as a set). apply of a plan file runs
 * it only then. When they differ and why is not NULL, *why is a new one-line string naming the
 * first difference, e.g. `actions[3] (setting "archive_command"): value is "..." in the saved
 * plan, "..." now` (values quoted, escaped and cut), or NULL when out of memory. */
bool pc_plan_equal(const pc_plan *saved, const pc_plan *now, char **why);

/* The alias of pipectl's NocoDB source for an exposed schema: "<pipeline>_<schema>". New string. */
char *pc_plan_nc_alias(const char *pipeline, const char *schema);
/* Shown instead of the role's password in plans ("password: (from manifest, redacted)"). */
#define PC_PLAN_PASSWORD_SHOWN "(from manifest, redacted)"

/* ---------- Kafka ACLs (plan_acl.c) ---------- */

/* One binding the manifest wants, and why. */
typedef struct pc_acl_desired {
    pc_acl acl;
    bool derived;            /* from kafka.derive_acls (else a kafka.acls entry) */
    const char *worker_kind; /* derived: "source" | "sink" (static strings) */
    const char *worker;      /* derived: the worker's name (borrowed from the manifest) */
    pc_pos pos;              /* the kafka.acls entry, or the worker that caused it */
} pc_acl_desired;

/* The bindings the manifest wants: kafka.acls expanded to one binding per operation, in
 * manifest order, then, with kafka.derive_acls, each worker's least privileges (sources: WRITE
 * and DESCRIBE on their topic; sinks: READ and DESCRIBE on their topic, READ on their consumer
 * group, WRITE and DESCRIBE on their dead-letter topic), all literal, allow, host "*". A worker
 * without a principal, or whose principal is the controller's own (kafka.security), gets none.
 * Identical bindings appear once (the first one wins). *out is owned by the caller. */
int pc_plan_acls_desired(const pc_manifest *m, pc_acl_desired **out, size_t *n, pc_error *err);
void pc_plan_acls_desired_free(pc_acl_desired *d, size_t n);

/* The canonical one-line form of a binding, used as action object and inventory name:
 * "User:ingest allow write topic:users_created (literal) host *". New string, NULL on OOM. */
char *pc_plan_acl_string(const pc_acl *a);
/* NULL when every field is set and in the vocabulary; else the name of the first bad field. */
const char *pc_plan_acl_invalid(const pc_acl *a);
bool pc_plan_acl_equal(const pc_acl *a, const pc_acl *b);
/* Deep copy into *dst (zeroed or disposed first); PC_ENOMEM on failure. */
int pc_plan_acl_copy(pc_acl *dst, const pc_acl *src);
/* Frees the members (not a itself) and zeroes it. */
void pc_acl_dispose(pc_acl *a);

/* keep[i] (o->nacls entries) tells whether o->acls[i] concerns the manifest: its principal is
 * one the desired bindings name, or it is in the inventory as this pipeline's. What the plan
 * fingerprint and snapshots cover. */
int pc_plan_acls_managed(const pc_manifest *m, const pc_observed *o, bool *keep, pc_error *err);

/* Normalisation used for comparisons (exposed for tests). Return new strings. */
char *pc_norm_pg_type(const char *type);                          /* "int4" -> "integer" */
char *pc_norm_kafka_config(const char *key, const char *value);   /* "7d"? no: "True" -> "true", lists sorted */
char *pc_norm_pg_setting(const pc_obs_setting *s, const char *value); /* "60s" with unit "s" -> "60" */

#endif
