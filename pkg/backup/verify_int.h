/* verify_int.h: private to pkg/backup: what restore.c reuses from verify.c. */
#ifndef PC_VERIFY_INT_H
#define PC_VERIFY_INT_H
#if !defined(PC_INSIDE_BACKUP) && !defined(PC_WHITEBOX_TEST)
#error "verify_int.h is private to pkg/backup: include backup.h"
#endif

#include "backup.h"

/* Checks the SHA-256 of every stored file that backups/<id>/pipectl.json records
 * ("files"), adding one problem line per mismatch or missing file to rep. 0 when all match,
 * PC_EIO when rep got problems, another code when pipectl.json cannot be read. When base_out is
 * not NULL it receives the name of the stored base tar ("base.tar.zst", ...), owned. When
 * base_sha_out is not NULL the base tar is not read: *base_sha_out receives its recorded SHA-256
 * (owned), for a caller that reads the whole object anyway and compares at the end (restore). */
int pc_backup_check_stored(pc_repo *repo, const char *id, pc_verify_report *rep,
                           char **base_out, char **base_sha_out, pc_error *err);

/* Adds a formatted problem line to rep. PC_ENOMEM or 0. */
int pc_verify_add(pc_verify_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
