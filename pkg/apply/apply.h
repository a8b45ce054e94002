/* apply.h: connects the adapters a manifest needs, observes the live state, and executes a
 * plan's actions in order through the adapters. It decides nothing about WHAT to change (that is
 * pkg/plan); it decides only HOW a run proceeds: lock, order, stop at first failure, record
 * ownership, reload, snapshot. */
#ifndef PC_APPLY_H
#define PC_APPLY_H

#include "core.h"
#include "gitops.h"
#include "kafka.h"
#include "manifest.h"
#include "nocodb.h"
#include "plan.h"
#include "postgres.h"

typedef struct pc_session {
    pc_kafka *kafka;   /* NULL when the manifest has no kafka block */
    pc_pg *pg;         /* NULL when the manifest has no postgres block */
    pc_nocodb *nocodb; /* NULL when the manifest has no nocodb block */
    const char *failed; /* after pc_session_open failed: "kafka", "postgres" or "nocodb" */
} pc_session;

/* How long apply waits for one NocoDB job (source creation, meta sync). */
#define PC_APPLY_NOCODB_JOB_TIMEOUT_S 180

/* Opens every system the manifest declares, each within timeout_s. On failure nothing has been
 * changed anywhere and err names the system that failed. NocoDB (when declared) is opened
 * last: health check and sign-in; down or wrong credentials fail here, before any change. */
int pc_session_open(pc_session *s, const pc_manifest *m, int timeout_s, pc_error *err);
void pc_session_close(pc_session *s);

/* Observes what the manifest manages: all topics' metadata, configs of declared and owned
 * topics, Postgres schemas/tables/settings/inventory, NocoDB's role in Postgres, and in NocoDB
 * the base, its sources and (for pipectl's sources) the tables and columns NocoDB sees. o must
 * be zeroed; free with pc_observed_free. */
int pc_session_observe(pc_session *s, const pc_manifest *m, pc_observed *o, pc_error *err);

/* Called after each action: rc 0 = done, rc < 0 = failed (err set), rc 1 = skipped. */
typedef void (*pc_apply_report_fn)(void *ctx, const pc_action *a, size_t index, int rc,
                                   double seconds, const pc_error *err);

typedef struct pc_apply_result {
    size_t done;          /* actions performed */
    size_t skipped;       /* refused actions and notes (not performed) */
    size_t failed_index;  /* index of the failed action when the run stopped, else SIZE_MAX */
    bool reloaded;        /* pg_reload_conf() was called */
    bool restart_needed;  /* a postmaster-context setting was changed */
} pc_apply_result;

/* Takes the pipeline's advisory lock in Postgres (when Postgres is declared), executes the
 * actions in order, stopping at the first failure, records ownership of the manifest's topics
 * and tables in the inventory, reloads the configuration when a reloadable setting changed,
 * and releases the lock. o is the state the plan was computed from. Role actions take the
 * password from m->nocodb.role_password (plans never hold it); NocoDB jobs are waited for at
 * most PC_APPLY_NOCODB_JOB_TIMEOUT_S each. */
int pc_apply_execute(pc_session *s, const pc_manifest *m, const pc_observed *o, const pc_plan *p,
                     pc_apply_report_fn report, void *ctx, pc_apply_result *res, pc_error *err);

/* Observes again and commits the redacted manifest + observed state to the git repository the
 * manifest declares (no-op result when git is not declared: res->committed false, res->dir NULL). */
int pc_apply_snapshot(pc_session *s, const pc_manifest *m, const char *message,
                      pc_snapshot_result *res, pc_error *err);

#endif
