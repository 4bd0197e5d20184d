/* SPDX-License-Identifier: MIT */
/* lib/clock.c: monotonic and wall clocks in microseconds, and saturating
 * conversions of durations. */
#include "clock.h"

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
