/* SPDX-License-Identifier: MIT */
/*
 * lib/rate.c: the token bucket of lib/rate.h. The level is a fraction of
 * tokens, refilled from the time elapsed since the last call, capped at
 * burst less the held tokens. A whole token is there when the level is
 * 1 within a rounding slack, so a timer armed for aq_rate_wait_us finds
 * the token it waited for.
 */
#include "rate.h"

#include <math.h>
#include <stdlib.h>

#include "xmalloc.h"

/* Rounding of the level: a token within this of whole counts. */
#define SLACK 1e-9

struct aq_rate {
    double per_us; /* tokens a microsecond */
    double burst;
    double level;    /* tokens in the bucket; may be below 0 after a
                        configure lowered burst below the held ones */
    unsigned held;   /* set aside (aq_rate_hold), not spent yet */
    int64_t last_us; /* level is as of then */
};

static double
per_us_of(double per_second)
{
    return per_second > 0 ? per_second / 1e6 : 1e-12;
}

static void
refill(struct aq_rate *r, int64_t now_us)
{
    double cap = r->burst - r->held;

    if (now_us > r->last_us && r->level < cap) {
        r->level += (double)(now_us - r->last_us) * r->per_us;
        if (r->level > cap)
            r->level = cap;
    }
    if (now_us > r->last_us)
        r->last_us = now_us;
}

struct aq_rate *
aq_rate_new(double per_second, int burst, int64_t now_us)
{
    struct aq_rate *r = xcalloc(1, sizeof *r);

    r->per_us = per_us_of(per_second);
    r->burst = burst < 1 ? 1 : burst;
    r->level = r->burst;
    r->last_us = now_us;
    return r;
}

void
aq_rate_free(struct aq_rate *r)
{
    free(r);
}

void
aq_rate_configure(struct aq_rate *r, double per_second, int burst,
                  int64_t now_us)
{
    double cap;

    refill(r, now_us);
    r->per_us = per_us_of(per_second);
    r->burst = burst < 1 ? 1 : burst;
    cap = r->burst - r->held;
    if (r->level > cap)
        r->level = cap > 0 ? cap : 0;
}

unsigned
aq_rate_take(struct aq_rate *r, unsigned n, int64_t now_us)
{
    double whole;
    unsigned got;

    refill(r, now_us);
    whole = floor(r->level + SLACK);
    got = whole <= 0 ? 0 : whole < (double)n ? (unsigned)whole : n;
    r->level -= got;
    if (r->level < 0 && got > 0)
        r->level = 0; /* the slack's crumb */
    return got;
}

void
aq_rate_give(struct aq_rate *r, unsigned n, int64_t now_us)
{
    double cap;

    refill(r, now_us);
    cap = r->burst - r->held;
    r->level += n;
    if (r->level > cap)
        r->level = cap;
}

bool
aq_rate_hold(struct aq_rate *r, int64_t now_us)
{
    if (aq_rate_take(r, 1, now_us) == 0)
        return false;
    r->held++;
    return true;
}

void
aq_rate_spend_held(struct aq_rate *r, int64_t now_us)
{
    refill(r, now_us); /* up to now with the old cap */
    if (r->held > 0)
        r->held--;
}

void
aq_rate_unhold(struct aq_rate *r, int64_t now_us)
{
    refill(r, now_us);
    if (r->held == 0)
        return;
    r->held--;
    aq_rate_give(r, 1, now_us);
}

int64_t
aq_rate_wait_us(struct aq_rate *r, int64_t now_us)
{
    double need;

    refill(r, now_us);
    if (r->level + SLACK >= 1)
        return 0;
    if (r->burst - r->held < 1)
        return -1;
    need = (1 - r->level) / r->per_us;
    return need >= 1e15 ? INT64_C(1000000000000000) : (int64_t)ceil(need);
}

double
aq_rate_tokens(struct aq_rate *r, int64_t now_us)
{
    refill(r, now_us);
    return r->level;
}

unsigned
aq_rate_held(const struct aq_rate *r)
{
    return r->held;
}
