/* SPDX-License-Identifier: MIT */
/* lib/clock.c: monotonic and wall clocks in microseconds. */
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

struct timeval
aq_clock_tv(int64_t us)
{
    struct timeval tv;

    if (us < 0)
        us = 0;
    tv.tv_sec = us / 1000000;
    tv.tv_usec = us % 1000000;
    return tv;
}
