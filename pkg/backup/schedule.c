/* schedule.c: is the newest backup as recent as backups.schedule wants? PURE (see backup.h). */
#include "backup.h"

int pc_backup_schedule_check(const pc_cron *c, bool have_backup, int64_t newest_start, int64_t now,
                             int64_t grace_s, int64_t *due)
{
    int64_t d = 0;
    if (grace_s < 0)
        grace_s = 0;
    bool fired = pc_cron_prev(c, now - grace_s, &d) == 0;
    if (due != NULL)
        *due = fired ? d : 0;
    if (!have_backup)
        return PC_BACKUP_NONE;
    if (fired && newest_start < d)
        return PC_BACKUP_STALE;
    return PC_BACKUP_FRESH;
}
