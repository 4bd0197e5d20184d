/* SPDX-License-Identifier: MIT */
/*
 * lib/clock.h: the two clocks asyncq uses. Deadlines and delays run on the
 * monotonic clock; job records and the journal carry wall-clock times.
 */
#ifndef AQ_CLOCK_H
#define AQ_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

int64_t aq_clock_mono_us(void); /* CLOCK_MONOTONIC, microseconds */
int64_t aq_clock_wall_us(void); /* CLOCK_REALTIME, microseconds */

/* A relative duration in microseconds (>= 0) as a struct timeval. */
struct timeval aq_clock_tv(int64_t us);

#endif
