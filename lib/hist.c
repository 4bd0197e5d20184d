/* SPDX-License-Identifier: MIT */
/* lib/hist.c: log-linear buckets: index = 8 * log2(v) + the next 3 bits. */
#include "hist.h"

static unsigned
bucket_of(uint64_t v)
{
    unsigned msb, idx;

    if (v < AQ_HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    idx = msb * AQ_HIST_SUB + (unsigned)((v >> (msb - 3)) & (AQ_HIST_SUB - 1));
    return idx < AQ_HIST_BUCKETS ? idx : AQ_HIST_BUCKETS - 1;
}

static int64_t
bucket_upper(unsigned idx)
{
    unsigned msb = idx / AQ_HIST_SUB, sub = idx % AQ_HIST_SUB;

    if (idx < AQ_HIST_SUB)
        return idx;
    /* Indices 8..23 stay empty: values 8.. start at 3 * AQ_HIST_SUB. */
    if (msb < 3)
        return AQ_HIST_SUB - 1;
    return (int64_t)(((uint64_t)(AQ_HIST_SUB + sub + 1) << (msb - 3)) - 1);
}

void
aq_hist_add(struct aq_hist *h, int64_t us)
{
    h->buckets[bucket_of(us > 0 ? (uint64_t)us : 0)]++;
    h->count++;
    h->sum_us += us > 0 ? us : 0;
}

int64_t
aq_hist_quantile(const struct aq_hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    for (unsigned i = 0; i < AQ_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > rank)
            return bucket_upper(i);
    }
    return bucket_upper(AQ_HIST_BUCKETS - 1);
}

uint64_t
aq_hist_count_le(const struct aq_hist *h, int64_t le_us)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < AQ_HIST_BUCKETS && bucket_upper(i) <= le_us; i++)
        n += h->buckets[i];
    return n;
}
