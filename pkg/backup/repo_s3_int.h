/* repo_s3_int.h: what repo_s3.c (the repository in a bucket) and repo_s3_lock.c (its lock)
 * share; private to pkg/backup. */
#ifndef PC_REPO_S3_INT_H
#define PC_REPO_S3_INT_H
#if !defined(PC_INSIDE_BACKUP) && !defined(PC_WHITEBOX_TEST)
#error "repo_s3_int.h is private to pkg/backup: include backup.h"
#endif

#include "repo.h"

typedef struct s3_repo {
    pc_repo head;
    pc_s3 *s3;
    char *bucket;
    char *prefix;     /* "" or "a/b" */
    bool bucket_seen; /* the bucket answered once: a 404 HEAD is then a missing key */
} s3_repo;

/* "<prefix>/<key>" ("<key>" with no prefix), or NULL when out of memory. */
char *pc__s3r_key(const s3_repo *r, const char *key);
/* Fills err for a failed S3 call rc (op on key, on connection s3) with the server's code and
 * a hint; returns rc. */
int pc__s3r_fail(s3_repo *r, pc_s3 *s3, int rc, const char *op, const char *key, pc_error *err);

/* The repository's lock (repo_s3_lock.c): pc_repo_ops' lock, unlock and lock_check. */
int pc__s3r_lock(pc_repo *repo, const char *what, pc_repo_lock **out, pc_error *err);
void pc__s3r_unlock(pc_repo_lock *lk);
int pc__s3r_lock_check(pc_repo_lock *lk, pc_error *err);

#endif
