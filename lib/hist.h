/* SPDX-License-Identifier: MIT */
/*
 * lib/hist.h: a fixed-size log-linear histogram of durations in
 * microseconds (8 sub-buckets per power of two: <= 12.5% error), for the
 * wait and run time percentiles of stats. No allocation; plain data.
 */
#ifndef AQ_HIST_H
#define AQ_HIST_H

#include <stdint.h>

#define AQ_HIST_SUB 8
#define AQ_HIST_BUCKETS (41 * AQ_HIST_SUB) /* up to 2^41 us: 25 days */

struct aq_hist {
    uint64_t count;
    int64_t sum_us;
    uint32_t buckets[AQ_HIST_BUCKETS];
};

void aq_hist_add(struct aq_hist *h, int64_t us); /* negative counts as 0 */
/* The value at quantile q (0..1), in microseconds: the upper bound of the
 * bucket holding it; 0 when empty. */
int64_t aq_hist_quantile(const struct aq_hist *h, double q);
/* How many values were <= le_us (counting whole buckets whose upper bound
 * is <= le_us: a Prometheus "le" bucket, within the 12.5% bucket width). */
uint64_t aq_hist_count_le(const struct aq_hist *h, int64_t le_us);

#endif
