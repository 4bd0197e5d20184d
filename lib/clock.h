/* SPDX-License-Identifier: MIT */
/*
 * lib/clock.h: the two clocks asyncq uses. Deadlines and delays run on the
 * monotonic clock; job records and the journal carry wall-clock times.
 * Durations are bounded (spec section 7): every conversion from seconds
 * saturates, so no input can overflow a conversion or a deadline.
 */
#ifndef AQ_CLOCK_H
#define AQ_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* The longest duration anything takes (delay, timeout, sleep, backoff,
 * config durations): 1e9 s, about 31 years. */
#define AQ_DURATION_MAX_S 1e9
#define AQ_DURATION_MAX_US INT64_C(1000000000000000)

int64_t aq_clock_mono_us(void); /* CLOCK_MONOTONIC, microseconds */
int64_t aq_clock_wall_us(void); /* CLOCK_REALTIME, microseconds */

/* s seconds in microseconds, saturated to [0, AQ_DURATION_MAX_US]: NaN and
 * s <= 0 give 0. Never an out-of-range conversion. */
int64_t aq_clock_s_to_us(double s);
/* a + b, saturated to [INT64_MIN, INT64_MAX] instead of overflowing. */
int64_t aq_clock_add_us(int64_t a, int64_t b);

/* A relative duration in microseconds as a struct timeval, saturated to
 * [0, AQ_DURATION_MAX_US]. */
struct timeval aq_clock_tv(int64_t us);

/* An RFC 3339 time ("2026-12-06T14:00:00Z", "2026-12-06 14:00:00.5+01:00":
 * date, 'T' or ' ', time, optional fraction, then 'Z' or an offset; no
 * offset is an error) as epoch seconds. 0, or -1 if s is not one, or
 * names a date that does not exist. Years 1970 to 9999. */
int aq_rfc3339_parse(const char *s, double *epoch_s);

#endif
