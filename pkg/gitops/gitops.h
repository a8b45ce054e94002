/* gitops.h: configuration snapshots in a Git repository (libgit2). */
#ifndef PC_GITOPS_H
#define PC_GITOPS_H

#include "core.h"
#include "manifest.h"

typedef struct pc_snapshot_result {
    bool committed;     /* false when the snapshot equals the branch tip's content */
    char commit[41];    /* the new commit, or the current tip when nothing changed ("" if none) */
    bool pushed;
    char *dir;          /* folder inside the repo that holds the snapshot (owned) */
} pc_snapshot_result;

/* Writes <cfg->path or pipeline>/manifest.yaml (redacted_manifest) and
 * <...>/observed.json (observed_json) into the repository at cfg->repo (initialised with
 * cfg->branch when missing), commits on cfg->branch only when a file changed, and pushes the
 * branch to cfg->push when set (adding the remote with cfg->remote_url when it is missing).
 * message NULL -> "pipectl: snapshot of <pipeline>". */
int pc_gitops_snapshot(const pc_mf_git *cfg, const char *pipeline, const char *redacted_manifest,
                       const char *observed_json, const char *message, pc_snapshot_result *res,
                       pc_error *err);
void pc_snapshot_result_free(pc_snapshot_result *res);

#endif
