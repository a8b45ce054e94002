/* manifest.h: the pipeline manifest (YAML, apiVersion pipectl/v1) as typed, validated structs.
 *
 * pc_manifest_load reads a file, expands ${VAR} / ${VAR:-default} from a caller-supplied
 * environment lookup, and validates everything it can without servers. Every problem is
 * reported as "FILE:LINE:COL: message" (1-based line and column), all of them, not just the
 * first. */
#ifndef PC_MANIFEST_H
#define PC_MANIFEST_H

#include "core.h"

typedef struct pc_pos {
    int line; /* 1-based; 0 when unknown */
    int col;  /* 1-based */
} pc_pos;

typedef struct pc_mf_topic {
    char *name;
    int partitions;         /* >= 1 */
    int replication_factor; /* >= 1 */
    pc_kvlist config;       /* values as strings, human units already converted ("7d" -> "604800000") */
    pc_pos pos;
} pc_mf_topic;

/* How a Kafka client connects and who it is (kafka.security, and sources[]/sinks[].security for
 * a worker's own principal). After parsing, every worker's block is complete: fields it leaves
 * out are copied from kafka.security. Secrets are the values themselves (read from password_file
 * when given). Paths are absolute. */
typedef struct pc_mf_kafka_auth {
    char *protocol;       /* "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"; never NULL */
    char *sasl_mechanism; /* "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512", or NULL (no SASL) */
    char *sasl_username;
    char *sasl_password;  /* secret */
    char *ca_file;        /* PEM CA bundle, or NULL: the system's trust store */
    char *cert_file;      /* client certificate (mutual TLS), or NULL */
    char *key_file;       /* client key (mutual TLS), or NULL */
    char *key_password;   /* secret, or NULL */
    bool verify_hostname; /* default true */
    char *principal;      /* the principal the broker sees ("User:ingest"): given, or
                           * "User:<sasl.username>"; NULL when unknown (mTLS without principal) */
    pc_pos pos;           /* of the block (the top-level one when inherited) */
} pc_mf_kafka_auth;

/* One kafka.client_config entry: a librdkafka property passed through to every client. Checked
 * against librdkafka's own list by pc_kafka_check_client_config (pkg/kafka), not here. */
typedef struct pc_mf_kafka_prop {
    char *key;
    char *value;          /* secret when pc_is_secret_key(key) (sasl.password, ssl.key.pem...) */
    pc_pos key_pos;
    pc_pos value_pos;
} pc_mf_kafka_prop;

/* One kafka.acls entry (one binding per operation once expanded by the plan core). */
typedef struct pc_mf_acl {
    char *principal;      /* "User:alice" (any "Type:name") */
    char *resource;       /* "topic" | "group" | "cluster" | "transactional_id" */
    char *name;           /* resource name; "kafka-cluster" for cluster */
    char *pattern;        /* "literal" | "prefixed" */
    char **operations;    /* lower case: read, write, create, delete, alter, describe,
                           * cluster_action, describe_configs, alter_configs, idempotent_write, all */
    size_t noperations;
    char *permission;     /* "allow" | "deny" */
    char *host;           /* default "*" */
    pc_pos pos;
} pc_mf_acl;

typedef struct pc_mf_column {
    char *name;
    char *type;       /* as written, lower-cased, validated: text, integer, bigint, numeric(10,2), ... */
    bool primary_key;
    bool nullable;    /* default true; primary key columns are always NOT NULL */
    pc_pos pos;
} pc_mf_column;

typedef struct pc_mf_table {
    char *name;
    pc_mf_column *columns;
    size_t ncolumns;
    pc_pos pos;
} pc_mf_table;

typedef struct pc_mf_schema {
    char *name;
    pc_mf_table *tables;
    size_t ntables;
    pc_pos pos;
} pc_mf_schema;

/* postgres.archiving.s3: where an s3:// repository's bucket is served and who may use it. Every
 * key is optional: NULL means AWS's default (endpoint https://s3.<region>.amazonaws.com, region
 * from AWS_REGION / AWS_DEFAULT_REGION / us-east-1, credentials from AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN). */
typedef struct pc_mf_archiving_s3 {
    bool declared;
    char *endpoint;          /* http(s)://host[:port] */
    char *region;
    char *uri_style;         /* "path", "virtual" or NULL (virtual-host unless the host is an IP) */
    char *access_key_id;
    char *secret_access_key; /* secret */
    char *session_token;     /* secret */
    char *ca_file;           /* absolute (manifest-relative resolved) */
    bool verify_tls;         /* default true */
    pc_pos pos;
} pc_mf_archiving_s3;

/* postgres.archiving.encryption: client-side encryption of everything in the repository. */
typedef struct pc_mf_archiving_encryption {
    bool declared;
    char *cipher; /* "aes-256-gcm" (the only one) */
    char *key;    /* the passphrase the repository key is derived from (secret) */
    pc_pos pos;
} pc_mf_archiving_encryption;

typedef struct pc_mf_archiving {
    bool declared;         /* the archiving block is present */
    bool enabled;
    char *repository;      /* absolute or manifest-relative path, resolved to absolute; or
                              s3://bucket[/prefix], kept as written */
    pc_mf_archiving_s3 s3;
    pc_mf_archiving_encryption encryption;
    /* Where PostgreSQL's archive_command/restore_command (run in the server's environment, which
     * holds none of the operator's variables) read the S3 credentials and the encryption
     * passphrase: a KEY=VALUE file readable only by the server's OS user. Required when the
     * repository is on S3 or encrypted and archiving.command is not given. */
    char *credentials_file;
    int archive_timeout_s; /* 0 = leave unset */
    int parallel;          /* wal-push --parallel: files pushed at once (push-ahead), 1-32;
                              1 (the default) pushes only the file PostgreSQL asks for */
    char *command;         /* explicit archive_command, or NULL for pipectl's default */
    char *wal_level;       /* default "replica" when enabled */
    pc_pos pos;
} pc_mf_archiving;

/* Appends the options that name ar's repository to wal-push / wal-fetch (" --repository URI
 * [--s3-endpoint URL] [--s3-region R] [--s3-uri-style S] [--s3-ca-file F] [--s3-no-verify-tls]
 * [--encrypted] [--credentials-file F]"), each a shell word with '%' doubled: the part of
 * archive_command and restore_command that says where. Never a secret. 0 or PC_ENOMEM. */
int pc_mf_archiving_args(const pc_mf_archiving *ar, pc_buf *out);

typedef struct pc_mf_source {
    char *name;
    char *type;       /* "randomuser" */
    char *url;
    char *topic;      /* must be a declared topic */
    int batch;        /* results per request, 1..5000 */
    int interval_ms;
    char *key;        /* JSON path used as record key, default "login.uuid" */
    pc_kvlist params; /* extra query parameters */
    pc_mf_kafka_auth auth; /* resolved: security (own principal) over kafka.security */
    bool own_auth;    /* the source has a security block of its own */
    pc_pos pos;
} pc_mf_source;

typedef struct pc_mf_sink {
    char *name;
    char *topic;       /* declared topic */
    char *table;       /* "schema.table", declared */
    char *mode;        /* "insert" | "upsert" */
    pc_kvlist mapping; /* column -> JSON path; every column must exist in the table */
    int batch_max_records;
    int batch_max_wait_ms;
    char *dead_letter; /* declared topic or NULL */
    int convert_threads; /* threads converting records; 0 = one per online CPU, at most 8 */
    pc_mf_kafka_auth auth; /* resolved: security (own principal) over kafka.security */
    bool own_auth;    /* the sink has a security block of its own */
    pc_pos pos;
} pc_mf_sink;

typedef struct pc_mf_backups {
    bool declared;
    char *schedule;      /* 5-field cron, validated */
    int retention_full;  /* keep N full backups, 0 = unset */
    int retention_days;  /* keep backups newer than N days, 0 = unset */
    char *compression;   /* "zstd" | "lz4" | "gzip" | "none" */
    pc_pos pos;
} pc_mf_backups;

typedef struct pc_mf_nocodb {
    bool declared;
    char *url;
    char *token;    /* secret */
    char *email;
    char *password; /* secret */
    char *base;
    char **schemas; /* exposed schemas (declared ones) */
    size_t nschemas;
    char *role;     /* Postgres role NocoDB connects as */
    char *role_password; /* secret */
    bool read_only;
    pc_pos pos;
    char *pg_host;  /* Postgres host as NocoDB must reach it, or NULL: postgres.dsn's host */
    int pg_port;    /* Postgres port as NocoDB must reach it, or 0: postgres.dsn's port */
} pc_mf_nocodb;

typedef struct pc_mf_git {
    bool declared;
    char *repo;       /* path, resolved against the manifest's directory */
    char *branch;     /* default "main" */
    char *push;       /* remote name to push to, or NULL: no push */
    char *remote_url; /* optional: URL for the remote named by push, added when missing */
    char *path;       /* folder inside the repo for this pipeline, default metadata.name */
    pc_pos pos;
} pc_mf_git;

typedef struct pc_manifest {
    char *file;       /* path as given */
    char *dir;        /* absolute directory of the file, for relative paths */
    char *raw;        /* the file's bytes as read (before ${VAR} expansion) */
    size_t raw_len;
    char *name;       /* metadata.name: safe identifier, also the ownership mark */

    char *kafka_bootstrap;
    pc_mf_topic *topics;
    size_t ntopics;
    pc_mf_kafka_auth kafka_auth; /* kafka.security: the controller's (plan/apply/status) */
    pc_mf_kafka_prop *client_config; /* kafka.client_config, in manifest order */
    size_t nclient_config;
    pc_mf_acl *acls;             /* kafka.acls, as written */
    size_t nacls;
    bool derive_acls;            /* kafka.derive_acls: plan each worker's least privileges */
    pc_pos acls_pos;             /* of kafka.acls or kafka.derive_acls (for messages) */

    char *pg_dsn;     /* secret-bearing: never print; pkg/postgres shows it redacted */
    pc_pos pg_dsn_pos;
    pc_mf_schema *schemas;
    size_t nschemas;
    pc_mf_archiving archiving;

    pc_mf_source *sources;
    size_t nsources;
    pc_mf_sink *sinks;
    size_t nsinks;
    pc_mf_backups backups;
    pc_mf_nocodb nocodb;
    pc_mf_git git;
} pc_manifest;

/* Looks up an environment variable; returns NULL when unset. Tests pass their own. */
typedef const char *(*pc_getenv_fn)(const char *name, void *ctx);

/* One diagnostic: "FILE:LINE:COL: message". */
typedef struct pc_diag {
    pc_pos pos;
    char *message;
} pc_diag;

typedef struct pc_diags {
    char *file;
    pc_diag *items;
    size_t n;
} pc_diags;

/* Parses and validates. On success returns 0 and *out owns the manifest. On invalid input
 * returns PC_EINVAL with every problem in diags (sorted by position) and a summary in err.
 * Unreadable file: PC_EIO. getenv_fn NULL means the process environment. */
int pc_manifest_load(pc_manifest **out, const char *path, pc_getenv_fn getenv_fn, void *env_ctx,
                     pc_diags *diags, pc_error *err);
/* Same from a buffer (name is used in diagnostics; relative paths resolve against cwd). */
int pc_manifest_parse(pc_manifest **out, const char *name, const char *text, size_t len,
                      pc_getenv_fn getenv_fn, void *env_ctx, pc_diags *diags, pc_error *err);
void pc_manifest_free(pc_manifest *m);

/* Formats one diagnostic line "FILE:LINE:COL: message" (no newline) into a new string. */
char *pc_diag_format(const pc_diags *d, size_t i);
void pc_diags_free(pc_diags *d);

/* The raw manifest text with every secret scalar replaced by PC_REDACTED: values of secret keys
 * (pc_is_secret_key), passwords inside DSNs. ${VAR} references are kept as written (they hold
 * no secret). Comments and layout are preserved. */
int pc_manifest_redacted_text(const pc_manifest *m, char **out, pc_error *err);

/* Adds every secret value m holds to out (pc_secrets_add: in all their forms): the DSN's
 * password (and sslpassword...) as written in either libpq form, nocodb token, password and
 * role_password, Kafka SASL and key passwords (kafka.security and every worker's own), secret
 * kafka.client_config values and source params, and the passwords of URLs with userinfo
 * (nocodb.url, sources[].url, git.remote_url). 0 or PC_ENOMEM. */
int pc_manifest_secrets(const pc_manifest *m, pc_secrets *out);

/* The consumer group a sink joins: "pipectl-<pipeline>-<sink>". New string. */
char *pc_manifest_sink_group(const pc_manifest *m, const pc_mf_sink *s);

/* Helpers shared with the plan core. */
const pc_mf_table *pc_manifest_find_table(const pc_manifest *m, const char *schema, const char *table);
const pc_mf_topic *pc_manifest_find_topic(const pc_manifest *m, const char *name);

/* ---------- cron expressions (cron.c, PURE) ----------
 * backups.schedule: a 5-field cron expression evaluated in UTC. Syntax and the day-of-month /
 * day-of-week rule are described at the top of cron.c. */

typedef struct pc_cron {
    uint64_t minute;  /* bit i: minute i (0-59) */
    uint32_t hour;    /* bit i: hour i (0-23) */
    uint32_t dom;     /* bit i: day of month i (1-31) */
    uint16_t month;   /* bit i: month i (1-12) */
    uint8_t dow;      /* bit i: weekday i (0 Sunday - 6 Saturday) */
    bool dom_star;    /* the field starts with '*': not a restriction for the OR rule */
    bool dow_star;
} pc_cron;

/* PC_EINVAL with the field named when expr is not a valid 5-field expression. */
int pc_cron_parse(const char *expr, pc_cron *out, pc_error *err);
/* The first fire time strictly after t (unix seconds, UTC; fire times are whole minutes).
 * PC_ENOTFOUND when the expression never fires (e.g. "0 0 30 2 *"). */
int pc_cron_next(const pc_cron *c, int64_t t, int64_t *out);
/* The latest fire time at or before t. PC_ENOTFOUND when none within ten years. */
int pc_cron_prev(const pc_cron *c, int64_t t, int64_t *out);

#endif
