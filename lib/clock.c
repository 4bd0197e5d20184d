/* SPDX-License-Identifier: MIT */
/* lib/clock.c: monotonic and wall clocks in microseconds, and saturating
 * conversions of durations. */
#include "clock.h"

#include <stdbool.h>
#include <time.h>

static int64_t
clock_us(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
aq_clock_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

int64_t
aq_clock_wall_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

int64_t
aq_clock_s_to_us(double s)
{
    /* !(s > 0) is true for NaN too; compare before converting: a double
     * beyond int64_t's range must never reach the cast. */
    if (!(s > 0))
        return 0;
    if (s >= AQ_DURATION_MAX_S)
        return AQ_DURATION_MAX_US;
    return (int64_t)(s * 1e6);
}

int64_t
aq_clock_add_us(int64_t a, int64_t b)
{
    int64_t sum;

    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return sum;
}

struct timeval
aq_clock_tv(int64_t us)
{
    struct timeval tv;

    if (us < 0)
        us = 0;
    if (us > AQ_DURATION_MAX_US)
        us = AQ_DURATION_MAX_US;
    tv.tv_sec = (time_t)(us / 1000000);
    tv.tv_usec = (suseconds_t)(us % 1000000);
    return tv;
}

/* n decimal digits at *p: the value, or -1. */
static int
digits(const char **p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

int
aq_rfc3339_parse(const char *s, double *epoch_s)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, off = 0;
    double frac = 0, scale = 0.1;

    if ((y = digits(&p, 4)) < 1970 || *p++ != '-' || (mo = digits(&p, 2)) < 1 ||
        mo > 12 || *p++ != '-' || (d = digits(&p, 2)) < 1 ||
        d > month_days(y, mo))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' ||
        (mi = digits(&p, 2)) < 0 || mi > 59 || *p++ != ':' ||
        (sec = digits(&p, 2)) < 0 || sec > 59)
        return -1;
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return -1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;

        if ((oh = digits(&p, 2)) < 0 || oh > 23 || *p++ != ':' ||
            (om = digits(&p, 2)) < 0 || om > 59)
            return -1;
        off = sign * (oh * 3600 + om * 60);
    } else
        return -1;
    if (*p != '\0')
        return -1;
    *epoch_s = (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
                        sec - off) +
               frac;
    return 0;
}
