/* clock.c: the clocks and sleeps every module uses (see core.h). */
#include <time.h>

#include "core.h"

static int64_t ms_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pc_mono_ms(void)
{
    return ms_of(CLOCK_MONOTONIC);
}

int64_t pc_wall_ms(void)
{
    return ms_of(CLOCK_REALTIME);
}

void pc_sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal ends it early: callers re-check their stop flag */
}

void pc_iso_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
