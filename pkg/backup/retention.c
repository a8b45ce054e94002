/* retention.c: which backups to keep (pure) and `backup expire`, which removes the others and
 * exactly the WAL no kept backup needs.
 *
 * Crash safety: a backup is first renamed to a dot-name (REPO/backups/.expire-ID), which list
 * and restore skip, and only then removed; a crash mid-way leaves a dot directory that the next
 * expire finishes removing, never a half-deleted backup that looks complete. WAL goes only after
 * every unkept backup is gone, so the oldest remaining backup always has its WAL.
 *
 * A damaged backup (pipectl.json unreadable) is skipped, not a reason to stop: one bad file
 * must not stop retention for the whole repository while WAL piles up. It is neither counted
 * (so it never pushes a readable backup out of the kept set) nor removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A backup ID: "20261125T030000Z". */
static bool is_backup_id(const char *s)
{
    static const char pat[] = "DDDDDDDDTDDDDDDZ";
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'D' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    }
    return s[sizeof pat - 1] == '\0';
}

/* Finishes removals a crashed expire left behind (REPO/backups/.expire-*), and removes backup
 * directories without pipectl.json: with the lock held no create is running, so those are what
 * a killed or crashed create left behind. */
static int sweep_leftovers(const char *root, pc_error *err)
{
    DIR *d = opendir(root);
    if (d == NULL)
        return 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        bool dot = strncmp(de->d_name, ".expire-", 8) == 0;
        if (!dot && !is_backup_id(de->d_name))
            continue;
        char *p = pc_asprintf("%s/%s", root, de->d_name);
        char *meta = pc_asprintf("%s/%s/%s", root, de->d_name, PC_BACKUP_META);
        if (p == NULL || meta == NULL)
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        else if (dot || access(meta, F_OK) != 0)
            rc = pc__rmtree(p, err);
        free(p);
        free(meta);
    }
    closedir(d);
    return rc;
}

static int remove_backup(const char *root, const pc_backup_info *b, pc_error *err)
{
    int rc = 0;
    char *hidden = pc_asprintf("%s/.expire-%s", root, b->id);
    if (hidden == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    if (rename(b->dir, hidden) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot rename expired backup %s to %s: %s", b->dir, hidden,
                          strerror(errno));
        goto done;
    }
    if ((rc = pc_fsync_dir(root, err)) != 0)
        goto done;
    rc = pc__rmtree(hidden, err);
done:
    free(hidden);
    return rc;
}

/* Is name exactly what pc_wal_push's mkstemp makes: ".<WAL name>.zst.tmp-XXXXXX"? */
static bool is_push_tmp(const char *name)
{
    static const char mid[] = PC_WAL_SUFFIX ".tmp-";
    if (name[0] != '.')
        return false;
    const char *m = strstr(name + 1, mid);
    if (m == NULL || m - (name + 1) >= PC_WAL_NAME_MAX)
        return false;
    char wal[PC_WAL_NAME_MAX];
    memcpy(wal, name + 1, (size_t)(m - (name + 1)));
    wal[m - (name + 1)] = '\0';
    if (pc_wal_name_check(wal, NULL, NULL) != 0)
        return false;
    const char *x = m + sizeof mid - 1;
    if (strlen(x) != 6)
        return false;
    for (; *x != '\0'; x++)
        if (!((*x >= '0' && *x <= '9') || (*x >= 'A' && *x <= 'Z') || (*x >= 'a' && *x <= 'z')))
            return false;
    return true;
}

/* Removes wal-push temporary files in REPO/wal last modified PC_WAL_TMP_STALE_S or more before
 * now: what a push killed mid-way (or wal-push of an endless file before pushes were bounded)
 * left behind. Anything else starting with a dot is not ours and stays. */
static int remove_stale_tmp(const char *repository, int64_t now, size_t *removed, pc_error *err)
{
    int rc = 0;
    char *dir = pc_asprintf("%s/%s", repository, PC_WAL_DIR);
    DIR *d = NULL;
    if (dir == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT)
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", dir, strerror(errno));
        goto done;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_push_tmp(de->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if ((int64_t)st.st_mtime > now - PC_WAL_TMP_STALE_S)
            continue; /* possibly a push in progress */
        if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT) {
            rc = pc_error_set(err, PC_EIO, "cannot remove stale temporary file %s/%s: %s", dir,
                              de->d_name, strerror(errno));
            goto done;
        }
        (*removed)++;
    }
    if (*removed > 0)
        rc = pc_fsync_dir(dir, err);
done:
    if (d != NULL)
        closedir(d);
    free(dir);
    return rc;
}

/* Removes REPO/wal files (segments, .partial, .backup) positioned before oldest. */
static int remove_wal(const char *repository, const char *oldest, size_t *removed, pc_error *err)
{
    int rc = 0;
    char *dir = pc_asprintf("%s/%s", repository, PC_WAL_DIR);
    DIR *d = NULL;
    if (dir == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    d = opendir(dir);
    if (d == NULL) {
        if (errno != ENOENT)
            rc = pc_error_set(err, PC_EIO, "cannot read %s: %s", dir, strerror(errno));
        goto done;
    }
    struct dirent *de;
    size_t sl = strlen(PC_WAL_SUFFIX);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= sl || len - sl >= PC_WAL_NAME_MAX ||
            strcmp(de->d_name + len - sl, PC_WAL_SUFFIX) != 0)
            continue;
        char name[PC_WAL_NAME_MAX];
        memcpy(name, de->d_name, len - sl);
        name[len - sl] = '\0';
        pc_wal_kind kind;
        if (pc_wal_name_check(name, &kind, NULL) != 0)
            continue; /* not ours: leave it */
        bool drop = false;
        switch (kind) {
        case PC_WAL_SEGMENT:
        case PC_WAL_PARTIAL:
        case PC_WAL_BACKUP:
            drop = pc__wal_segcmp(name, oldest) < 0;
            break;
        case PC_WAL_HISTORY:
            drop = false; /* tiny, and every timeline switch needs them */
            break;
        }
        if (!drop)
            continue;
        char *p = pc_asprintf("%s/%s", dir, de->d_name);
        if (p == NULL) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        if (unlink(p) != 0 && errno != ENOENT) {
            rc = pc_error_set(err, PC_EIO, "cannot remove expired WAL file %s: %s", p,
                              strerror(errno));
            free(p);
            goto done;
        }
        free(p);
        (*removed)++;
    }
    rc = pc_fsync_dir(dir, err);
done:
    if (d != NULL)
        closedir(d);
    free(dir);
    return rc;
}

int pc_backup_expire(const char *repository, int keep_full, int keep_days, int64_t now,
                     pc_expire_result *res, pc_error *err)
{
    int rc = 0;
    int lock = -1;
    pc_backup_info *list = NULL;
    size_t n = 0;
    bool *keep = NULL;
    char *root = NULL;
    memset(res, 0, sizeof *res);
    if ((rc = pc__backup_lock(repository, "backup expire", &lock, err)) != 0)
        goto done;
    if ((rc = pc_backup_scan(repository, &list, &n, &res->damaged, &res->ndamaged, err)) != 0)
        goto done;
    root = pc_asprintf("%s/%s", repository, PC_BACKUPS_DIR);
    keep = calloc(n ? n : 1, sizeof *keep);
    if (root == NULL || keep == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = sweep_leftovers(root, err)) != 0)
        goto done;
    if ((rc = remove_stale_tmp(repository, now, &res->tmp_removed, err)) != 0)
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
        if ((rc = remove_backup(root, &list[i], err)) != 0)
            goto done;
        res->backups_removed++;
    }
    res->oldest_wal_kept = pc_strdup(oldest);
    if (res->oldest_wal_kept == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    rc = remove_wal(repository, oldest, &res->wal_removed, err);
done:
    if (rc != 0)
        pc_error_prefix(err, "backup expire in %s", repository);
    free(keep);
    free(root);
    pc_backup_list_free(list, n);
    if (lock >= 0)
        close(lock);
    return rc;
}
