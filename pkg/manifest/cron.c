/* cron.c: the backup schedule: 5-field cron expressions and their fire times, in UTC.
 *
 * PURE: no clock, no environment, no I/O. Times are unix seconds; every computation is done on
 * a proleptic Gregorian calendar in UTC (days_from_civil / civil_from_days), so the result does
 * not depend on TZ or on the C library's timegm.
 *
 * Syntax (what pkg/manifest's validator accepts, Vixie cron's):
 *     minute 0-59  hour 0-23  day-of-month 1-31  month 1-12 or jan-dec  day-of-week 0-7 or sun-sat
 * Each field is a comma list of items: '*', N, A-B, each optionally followed by /STEP; "N/STEP"
 * means N-max/STEP. Day-of-week 7 is Sunday like 0.
 * The day rule (Vixie cron): when both day-of-month and day-of-week are restricted (neither
 * field starts with '*'), a day matches when EITHER matches ("0 3 1 * mon" = the 1st of each
 * month and every Monday); when one starts with '*', only the other one counts.
 *
 * Search: next/prev walk the calendar field by field (a wrong month skips the whole month, a
 * wrong day the whole day, a wrong hour the whole hour), which is a few hundred steps at most
 * per year searched. Expressions that never fire ("0 0 30 feb *") are reported after
 * PC_CRON_HORIZON_Y years. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "manifest.h"

#define PC_CRON_HORIZON_Y                                                                          \
    10 /* 29 February on a given weekday recurs within 28 years, but the                           \
          OR rule makes any day-of-week match often; only day-of-month                             \
          alone can be rare: 29 Feb every 4 (8 around 2100) years */

typedef struct field_def {
    const char *name;
    int lo, hi;
    const char *const *names;
    int name_base;
} field_def;

static const char *const k_mon[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                    "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const k_dow[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field_def k_fields[5] = {
    {"minute", 0, 59, NULL, 0}, {"hour", 0, 23, NULL, 0},        {"day-of-month", 1, 31, NULL, 0},
    {"month", 1, 12, k_mon, 1}, {"day-of-week", 0, 7, k_dow, 0},
};

/* One number or (month/day) name; chars consumed, 0 when none. */
static int read_value(const field_def *f, const char *s, int *v)
{
    if (isdigit((unsigned char)*s)) {
        int n = 0, i = 0;
        for (; isdigit((unsigned char)s[i]); i++)
            if (n < 100000)
                n = n * 10 + (s[i] - '0');
        *v = n;
        return i;
    }
    for (int i = 0; f->names != NULL && f->names[i] != NULL; i++)
        if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *v = i + f->name_base;
            return 3;
        }
    return 0;
}

/* Parses one comma-separated item into bits. */
static int parse_item(const field_def *f, const char *item, size_t len, uint64_t *bits,
                      const char *expr, pc_error *err)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return pc_error_set(err, PC_EINVAL,
                            "cron expression '%s': %s field has an empty or overlong list item",
                            expr, f->name);
    memcpy(buf, item, len);
    buf[len] = '\0';
    const char *p = buf;
    int a = f->lo, b = f->hi, step = 1, n = 0;
    if (*p == '*') {
        p++;
    } else {
        if ((n = read_value(f, p, &a)) == 0)
            goto bad;
        p += n;
        b = a;
        if (*p == '-') {
            p++;
            if ((n = read_value(f, p, &b)) == 0)
                goto bad;
            p += n;
        } else if (*p == '/') {
            b = f->hi; /* "N/STEP": from N to the end of the range */
        }
        if (a < f->lo || a > f->hi || b < f->lo || b > f->hi)
            return pc_error_set(err, PC_EINVAL,
                                "cron expression '%s': %s value %d is out of range %d-%d", expr,
                                f->name, a < f->lo || a > f->hi ? a : b, f->lo, f->hi);
        if (a > b)
            return pc_error_set(err, PC_EINVAL,
                                "cron expression '%s': %s range %d-%d runs backwards", expr,
                                f->name, a, b);
    }
    if (*p == '/') {
        p++;
        if (!isdigit((unsigned char)*p))
            goto bad;
        step = 0;
        for (; isdigit((unsigned char)*p); p++)
            if (step < 100000)
                step = step * 10 + (*p - '0');
        if (step < 1 || step > f->hi)
            return pc_error_set(err, PC_EINVAL,
                                "cron expression '%s': %s step %d is out of range 1-%d", expr,
                                f->name, step, f->hi);
    }
    if (*p != '\0')
        goto bad;
    for (int v = a; v <= b; v += step)
        *bits |= (uint64_t)1 << v;
    return 0;
bad:
    return pc_error_set(err, PC_EINVAL,
                        "cron expression '%s': %s field '%s' is not a number, name, '*', range, "
                        "list or step",
                        expr, f->name, buf);
}

int pc_cron_parse(const char *expr, pc_cron *out, pc_error *err)
{
    memset(out, 0, sizeof *out);
    if (expr == NULL)
        return pc_error_set(err, PC_EINVAL, "no cron expression");
    const char *p = expr;
    uint64_t bits[5] = {0};
    bool star[5] = {false};
    int nf = 0;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
        if (nf == 5)
            return pc_error_set(err, PC_EINVAL,
                                "cron expression '%s' has more than 5 fields; expected 5 fields "
                                "(minute hour day-of-month month day-of-week)",
                                expr);
        if (*start == '@')
            return pc_error_set(err, PC_EINVAL,
                                "cron expression '%s': macros are not supported; write 5 fields, "
                                "e.g. '0 3 * * *'",
                                expr);
        star[nf] = *start == '*';
        const char *q = start;
        for (;;) {
            const char *comma = q;
            while (comma < p && *comma != ',')
                comma++;
            int rc = parse_item(&k_fields[nf], q, (size_t)(comma - q), &bits[nf], expr, err);
            if (rc != 0)
                return rc;
            if (comma == p)
                break;
            q = comma + 1;
        }
        nf++;
    }
    if (nf != 5)
        return pc_error_set(err, PC_EINVAL,
                            "cron expression '%s' has %d field(s); expected 5 fields (minute hour "
                            "day-of-month month day-of-week)",
                            expr, nf);
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 = Sunday = 0 */
    out->dom_star = star[2];
    out->dow_star = star[4];
    return 0;
}

/* ---------- calendar (pc_days_from_civil and pc_civil_from_days, in pkg/core) ---------- */

static int days_in_month(int64_t y, int m)
{
    static const int k[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : k[m - 1];
}

typedef struct when {
    int64_t y;
    int mon, day, hour, min;
} when;

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static when split(int64_t t)
{
    when w;
    int64_t days = floor_div(t, 86400);
    int64_t secs = t - days * 86400;
    pc_civil_from_days(days, &w.y, &w.mon, &w.day);
    w.hour = (int)(secs / 3600);
    w.min = (int)(secs % 3600 / 60);
    return w;
}

static int64_t join(const when *w)
{
    return pc_days_from_civil(w->y, w->mon, w->day) * 86400 + w->hour * 3600 + w->min * 60;
}

static bool day_matches(const pc_cron *c, const when *w)
{
    int64_t days = pc_days_from_civil(w->y, w->mon, w->day);
    int wd = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    bool dom = (c->dom >> w->day) & 1;
    bool dow = (c->dow >> wd) & 1;
    if (c->dom_star || c->dow_star)
        return dom && dow;
    return dom || dow;
}

/* Steps w forward to the first minute of the next month / day / hour. */
static void next_month(when *w)
{
    w->day = 1, w->hour = 0, w->min = 0;
    if (++w->mon > 12)
        w->mon = 1, w->y++;
}

static void next_day(when *w)
{
    w->hour = 0, w->min = 0;
    if (++w->day > days_in_month(w->y, w->mon))
        next_month(w);
}

static void next_hour(when *w)
{
    w->min = 0;
    if (++w->hour > 23)
        next_day(w);
}

int pc_cron_next(const pc_cron *c, int64_t t, int64_t *out)
{
    when w = split(floor_div(t, 60) * 60 + 60);
    int64_t limit = w.y + PC_CRON_HORIZON_Y;
    while (w.y <= limit) {
        if (!((c->month >> w.mon) & 1)) {
            next_month(&w);
            continue;
        }
        if (!day_matches(c, &w)) {
            next_day(&w);
            continue;
        }
        if (!((c->hour >> w.hour) & 1)) {
            next_hour(&w);
            continue;
        }
        for (; w.min < 60; w.min++)
            if ((c->minute >> w.min) & 1) {
                *out = join(&w);
                return 0;
            }
        next_hour(&w); /* no minute left in this hour */
    }
    return PC_ENOTFOUND;
}

/* Steps w back to the last minute of the previous hour / day / month. */
static void back_hour(when *w)
{
    w->min = 59;
    if (--w->hour < 0) {
        w->hour = 23;
        if (--w->day < 1) {
            if (--w->mon < 1)
                w->mon = 12, w->y--;
            w->day = days_in_month(w->y, w->mon);
        }
    }
}

int pc_cron_prev(const pc_cron *c, int64_t t, int64_t *out)
{
    when w = split(floor_div(t, 60) * 60);
    int64_t limit = w.y - PC_CRON_HORIZON_Y;
    while (w.y >= limit) {
        if (!((c->month >> w.mon) & 1)) {
            w.hour = 23, w.min = 59;
            if (--w.mon < 1)
                w.mon = 12, w.y--;
            w.day = days_in_month(w.y, w.mon);
            continue;
        }
        if (!day_matches(c, &w)) {
            w.hour = 23, w.min = 59;
            if (--w.day < 1) {
                if (--w.mon < 1)
                    w.mon = 12, w.y--;
                w.day = days_in_month(w.y, w.mon);
            }
            continue;
        }
        if (!((c->hour >> w.hour) & 1)) {
            back_hour(&w);
            continue;
        }
        for (; w.min >= 0; w.min--)
            if ((c->minute >> w.min) & 1) {
                *out = join(&w);
                return 0;
            }
        back_hour(&w);
    }
    return PC_ENOTFOUND;
}
