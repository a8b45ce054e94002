/* backup_int.h: helpers shared by basebackup.c and retention.c (private to pkg/backup). */
#ifndef PC_BACKUP_INT_H
#define PC_BACKUP_INT_H

#include "backup.h"

#define PC_BACKUPS_DIR "backups"
#define PC_BACKUP_META "pipectl.json"

/* Reads and checks dir/pipectl.json of backup id into *b (zeroed first; freed on failure).
 * PC_ENOTFOUND when the file does not exist (an incomplete backup), PC_EIO when it is damaged
 * (not JSON, empty, a field missing or invalid, an ID other than id), PC_ENOMEM; the message
 * names the file. list, verify and restore judge a backup by this one function. */
int pc__backup_read_meta(const char *dir, const char *id, pc_backup_info *b, pc_error *err);
/* Takes REPO/backups/.lock (flock, non-blocking), creating REPO/backups when missing.
 * *fd_out is the open lock; release with close(). PC_ECONFLICT when held. */
int pc__backup_lock(const char *repository, const char *what, int *fd_out, pc_error *err);
/* rm -rf path (no error when it does not exist). */
int pc__rmtree(const char *path, pc_error *err);
/* fsync of every regular file and directory under dir, directories after their contents. */
int pc__fsync_tree(const char *dir, pc_error *err);
/* Compares the positions of two WAL file names (segment, .partial or .backup) by segment number
 * only (hex digits 9..24), ignoring the timeline: WAL positions grow across timelines, so a lower
 * number is older whatever its timeline. <0, 0, >0 like strcmp. */
int pc__wal_segcmp(const char *a, const char *b);

#endif
