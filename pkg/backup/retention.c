/* retention.c: which backups to keep (pure) and `backup expire`, which removes the others and
 * exactly the WAL no kept backup needs.
 *
 * Crash safety: a backup's pipectl.json is deleted first, which takes it out of every listing
 * (list and restore know a backup by it), and only then its other objects; a crash mid-way
 * leaves objects without pipectl.json, which the next expire removes (with the lock held no
 * create is running, so such objects are what a killed create or expire left), never a
 * half-deleted backup that looks complete. WAL goes only after every unkept backup is gone, so
 * the oldest remaining backup always has its WAL.
 *
 * Everything goes through repo.h (the repository may be a directory or a bucket).
 *
 * A damaged backup (pipectl.json unreadable) is skipped, not a reason to stop: one bad file
 * must not stop retention for the whole repository while WAL piles up. It is neither counted
 * (so it never pushes a readable backup out of the kept set) nor removed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup_int.h"

void pc_backup_retention(const pc_backup_info *list, size_t n, int keep_full, int keep_days,
                         int64_t now, bool *keep)
{
    for (size_t i = 0; i < n; i++) {
        bool k = false;
        if (keep_full <= 0 && keep_days <= 0)
            k = true;
        if (keep_full > 0 && i + (size_t)keep_full >= n)
            k = true;
        if (keep_days > 0 && now - list[i].start_time < (int64_t)keep_days * 86400)
            k = true;
        keep[i] = k;
    }
    if (n > 0)
        keep[n - 1] = true;
}

void pc_expire_result_free(pc_expire_result *res)
{
    if (res == NULL)
        return;
    free(res->oldest_wal_kept);
    pc_backup_damaged_free(res->damaged, res->ndamaged);
    memset(res, 0, sizeof *res);
}

/* Keys of backups/: which belong to backups without pipectl.json (leftovers), all of them. */
typedef struct key_list {
    char **v;
    size_t n, cap;
} key_list;

static void key_list_free(key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int key_list_add(key_list *l, const char *k)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL)
            return PC_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    if ((l->v[l->n] = pc_strdup(k)) == NULL)
        return PC_ENOMEM;
    l->n++;
    return 0;
}

typedef struct leftover_ctx {
    key_list keys; /* every key of the backup being looked at */
    char id[PC_REPO_KEY_MAX + 1];
    bool has_meta;
    key_list doomed; /* keys of backups without pipectl.json */
} leftover_ctx;

/* Closes the group of keys of one backup: doomed when it has no pipectl.json. */
static int leftover_flush(leftover_ctx *c)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->keys.n && !c->has_meta; i++)
        rc = key_list_add(&c->doomed, c->keys.v[i]);
    key_list_free(&c->keys);
    c->has_meta = false;
    c->id[0] = '\0';
    return rc;
}

static int leftover_cb(void *ctx, const pc_repo_entry *e)
{
    leftover_ctx *c = ctx;
    const char *id = e->key + strlen(PC_BACKUPS_DIR "/");
    const char *slash = strchr(id, '/');
    if (slash == NULL)
        return 0; /* not in a backup's prefix: not ours to judge */
    size_t il = (size_t)(slash - id);
    /* a backup's keys are contiguous in a sorted listing */
    if (strlen(c->id) != il || strncmp(c->id, id, il) != 0) {
        int rc = leftover_flush(c);
        if (rc != 0)
            return rc;
        memcpy(c->id, id, il);
        c->id[il] = '\0';
    }
    if (strcmp(slash + 1, PC_BACKUP_META) == 0)
        c->has_meta = true;
    /* only what pipectl names: a backup ID ("20261125T030000Z") */
    if (!pc__backup_id_is(c->id))
        return 0;
    return key_list_add(&c->keys, e->key);
}

/* Removes the objects of backups without pipectl.json: with the lock held no create is
 * running, so those are what a killed or crashed create (or a crashed expire) left behind. */
static int sweep_leftovers(pc_repo *repo, pc_error *err)
{
    leftover_ctx c = {0};
    int rc = pc_repo_list(repo, PC_BACKUPS_DIR "/", leftover_cb, &c, err);
    if (rc == 0)
        rc = leftover_flush(&c);
    if (rc == PC_ENOMEM)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c.doomed.n; i++)
        rc = pc_repo_delete(repo, c.doomed.v[i], err);
    key_list_free(&c.keys);
    key_list_free(&c.doomed);
    return rc;
}

typedef struct prefix_ctx {
    key_list keys;
} prefix_ctx;

static int collect_cb(void *ctx, const pc_repo_entry *e)
{
    return key_list_add(&((prefix_ctx *)ctx)->keys, e->key);
}

/* pipectl.json first (the backup leaves every listing), then the rest. */
static int remove_backup(pc_repo *repo, const pc_backup_info *b, pc_error *err)
{
    prefix_ctx c = {0};
    char *meta = pc__backup_key(b->id, PC_BACKUP_META);
    char *prefix = pc_asprintf("%s/", b->dir);
    int rc = 0;
    if (meta == NULL || prefix == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_repo_delete(repo, meta, err)) != 0) {
        pc_error_prefix(err, "cannot remove expired backup %s", b->id);
        goto done;
    }
    rc = pc_repo_list(repo, prefix, collect_cb, &c, err);
    if (rc == PC_ENOMEM)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c.keys.n; i++)
        rc = pc_repo_delete(repo, c.keys.v[i], err);
done:
    key_list_free(&c.keys);
    free(meta);
    free(prefix);
    return rc;
}

typedef struct wal_ctx {
    const char *oldest;
    key_list drop;
} wal_ctx;

static int wal_cb(void *ctx, const pc_repo_entry *e)
{
    wal_ctx *c = ctx;
    const char *file = e->key + strlen(PC_WAL_DIR "/");
    size_t len = strlen(file), sl = strlen(PC_WAL_SUFFIX);
    if (strchr(file, '/') != NULL || len <= sl || len - sl >= PC_WAL_NAME_MAX ||
        strcmp(file + len - sl, PC_WAL_SUFFIX) != 0)
        return 0;
    char name[PC_WAL_NAME_MAX];
    memcpy(name, file, len - sl);
    name[len - sl] = '\0';
    pc_wal_kind kind;
    if (pc_wal_name_check(name, &kind, NULL) != 0)
        return 0; /* not ours: leave it */
    bool drop = false;
    switch (kind) {
    case PC_WAL_SEGMENT:
    case PC_WAL_PARTIAL:
    case PC_WAL_BACKUP:
        drop = pc__wal_segcmp(name, c->oldest) < 0;
        break;
    case PC_WAL_HISTORY:
        drop = false; /* tiny, and every timeline switch needs them */
        break;
    }
    return drop ? key_list_add(&c->drop, e->key) : 0;
}

/* Removes wal/ objects (segments, .partial, .backup) positioned before oldest. */
static int remove_wal(pc_repo *repo, const char *oldest, size_t *removed, pc_error *err)
{
    wal_ctx c = {.oldest = oldest};
    int rc = pc_repo_list(repo, PC_WAL_DIR "/", wal_cb, &c, err);
    if (rc == PC_ENOMEM)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c.drop.n; i++) {
        if ((rc = pc_repo_delete(repo, c.drop.v[i], err)) != 0)
            pc_error_prefix(err, "cannot remove expired WAL file");
        else
            (*removed)++;
    }
    key_list_free(&c.drop);
    return rc;
}

/* Every deletion below is preceded by pc_repo_lock_check: an S3 lock whose refreshes failed for
 * its whole TTL may have been taken over meanwhile, and then a create may be running, whose
 * unpublished objects sweep_leftovers would take for leftovers, or another expire. A lost lock
 * stops here with nothing more deleted; what was already removed is consistent by the order
 * above (a backup's pipectl.json first, WAL only after every unkept backup), and the next
 * expire finishes the job. */
int pc__backup_expire_held(pc_repo *repo, pc_repo_lock *lock, int keep_full, int keep_days,
                           int64_t now, pc_expire_result *res, pc_error *err)
{
    int rc = 0;
    pc_backup_info *list = NULL;
    size_t n = 0;
    bool *keep = NULL;
    memset(res, 0, sizeof *res);
    if ((rc = pc_backup_scan(repo, &list, &n, &res->damaged, &res->ndamaged, err)) != 0)
        goto done;
    keep = calloc(n ? n : 1, sizeof *keep);
    if (keep == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_repo_lock_check(lock, err)) != 0 || (rc = sweep_leftovers(repo, err)) != 0)
        goto done;
    /* what interrupted writers left (wal-push temporaries and the like) */
    if ((rc = pc_repo_sweep(repo, now, PC_WAL_TMP_STALE_S, &res->tmp_removed, err)) != 0)
        goto done;
    if (n == 0)
        goto done; /* no backup: no anchor, so no WAL is known to be unneeded */
    pc_backup_retention(list, n, keep_full, keep_days, now, keep);
    const char *oldest = NULL;
    for (size_t i = 0; i < n; i++) {
        if (keep[i]) {
            if (oldest == NULL || pc__wal_segcmp(list[i].start_wal, oldest) < 0)
                oldest = list[i].start_wal;
            continue;
        }
        if ((rc = pc_repo_lock_check(lock, err)) != 0 ||
            (rc = remove_backup(repo, &list[i], err)) != 0)
            goto done;
        res->backups_removed++;
    }
    res->oldest_wal_kept = pc_strdup(oldest);
    if (res->oldest_wal_kept == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_repo_lock_check(lock, err)) != 0)
        goto done;
    rc = remove_wal(repo, oldest, &res->wal_removed, err);
done:
    free(keep);
    pc_backup_list_free(list, n);
    return rc;
}

int pc_backup_expire(pc_repo *repo, int keep_full, int keep_days, int64_t now,
                     pc_expire_result *res, pc_error *err)
{
    pc_repo_lock *lock = NULL;
    int rc = pc_repo_lock_take(repo, "backup expire", &lock, err);
    if (rc == 0)
        rc = pc__backup_expire_held(repo, lock, keep_full, keep_days, now, res, err);
    else
        memset(res, 0, sizeof *res);
    if (rc != 0)
        pc_error_prefix(err, "backup expire in %s", pc_repo_uri(repo));
    pc_repo_unlock(lock);
    return rc;
}
