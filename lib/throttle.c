/* SPDX-License-Identifier: MIT */
/*
 * lib/throttle.c: a queue's rate limit (spec section 11, "rate") on the
 * event loop: the token bucket of lib/rate.h, the takers it holds back,
 * and ONE timer per queue for the next token.
 *
 * A taker (an idle consumer, or one queue of a waiting get) asks the
 * queue for a job only while it holds a token: it sets one aside before
 * it waits on the queue, spends it when a job comes, gives it back if it
 * stops waiting. A taker that finds no token (or finds others already
 * waiting for one) joins the queue's takers in arrival order and asks
 * nothing more; the timer, armed for the next token, hands tokens to them
 * in that order. Nothing polls: with no taker waiting the timer is idle.
 *
 * Throttled time (stats "throttled") is the time a ready job waited only
 * for a token: while takers wait for one, the part of that time the
 * queue's oldest ready job was ready.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "rate.h"
#include "xmalloc.h"

struct throttle {
    struct broker_queue *bq;
    struct aq_rate *bucket;     /* owned */
    struct event *ev;           /* owned: the next token for the takers */
    TAILQ_HEAD(, taker) takers; /* waiting for a token, in arrival order */
    int64_t since_us;           /* throttled time is counted up to then */
    int64_t throttled_us;       /* since start */
    double per_second;
    int burst;
};

/* Throttled time up to now_us, while takers wait. */
static int64_t
throttled_part_us(const struct throttle *t, int64_t now_us)
{
    int64_t ready_us, el_us;

    if (TAILQ_EMPTY(&t->takers) || now_us <= t->since_us)
        return 0;
    el_us = now_us - t->since_us;
    ready_us = aq_queue_oldest_ready_us(t->bq->q);
    return ready_us < el_us ? ready_us : el_us;
}

static void
account(struct throttle *t, int64_t now_us)
{
    t->throttled_us += throttled_part_us(t, now_us);
    t->since_us = now_us;
}

/* The timer follows the bucket while takers wait. */
static void
arm(struct throttle *t, int64_t now_us)
{
    int64_t wait_us;

    if (TAILQ_EMPTY(&t->takers))
        return;
    wait_us = aq_rate_wait_us(t->bucket, now_us);
    if (wait_us < 0) {
        /* The holders hold the whole burst: a token comes once one of
         * them spends or gives back its own (arm again then). */
        evtimer_del(t->ev);
        return;
    }
    struct timeval tv = aq_clock_tv(wait_us);

    evtimer_add(t->ev, &tv);
}

static void
token_cb(evutil_socket_t fd, short what, void *arg)
{
    struct throttle *t = arg;
    int64_t now_us = aq_clock_mono_us();
    struct taker *k;

    account(t, now_us);
    while ((k = TAILQ_FIRST(&t->takers)) != NULL &&
           aq_rate_hold(t->bucket, now_us)) {
        TAILQ_REMOVE(&t->takers, k, link);
        k->state = TAKER_HOLDING;
        k->go(k); /* may spend, give back, or wait again */
    }
    arm(t, aq_clock_mono_us());
}

void
throttle_configure(struct broker_queue *bq)
{
    struct throttle *t = bq->rate;
    const struct aq_queue_config *qc = &bq->cfg;
    int64_t now_us = aq_clock_mono_us();

    if (!(qc->rate.per_second > 0)) {
        throttle_free(bq);
        return;
    }
    if (t != NULL) {
        if (t->per_second != qc->rate.per_second || t->burst != qc->rate.burst)
            aq_rate_configure(t->bucket, qc->rate.per_second, qc->rate.burst,
                              now_us);
    } else {
        t = xcalloc(1, sizeof *t);
        t->bq = bq;
        t->bucket = aq_rate_new(qc->rate.per_second, qc->rate.burst, now_us);
        t->ev = evtimer_new(bq->b->base, token_cb, t);
        TAILQ_INIT(&t->takers);
        bq->rate = t;
    }
    t->per_second = qc->rate.per_second;
    t->burst = qc->rate.burst;
    arm(t, now_us);
}

bool
throttle_changes(const struct broker_queue *bq,
                 const struct aq_queue_config *qc)
{
    const struct throttle *t = bq->rate;

    if (t == NULL)
        return qc->rate.per_second > 0;
    return t->per_second != qc->rate.per_second || t->burst != qc->rate.burst;
}

void
throttle_free(struct broker_queue *bq)
{
    struct throttle *t = bq->rate;
    struct taker *k;

    if (t == NULL)
        return;
    account(t, aq_clock_mono_us());
    bq->throttled_us += t->throttled_us; /* the total outlives the limit */
    while ((k = TAILQ_FIRST(&t->takers)) != NULL) {
        TAILQ_REMOVE(&t->takers, k, link);
        k->state = TAKER_IDLE;
    }
    event_free(t->ev);
    aq_rate_free(t->bucket);
    free(t);
    bq->rate = NULL;
}

bool
throttle_hold(struct broker_queue *bq, struct taker *k)
{
    struct throttle *t = bq->rate;
    int64_t now_us;

    if (k->state != TAKER_IDLE)
        return k->state == TAKER_HOLDING;
    now_us = aq_clock_mono_us();
    if (TAILQ_EMPTY(&t->takers) && aq_rate_hold(t->bucket, now_us)) {
        k->state = TAKER_HOLDING;
        return true;
    }
    account(t, now_us);
    TAILQ_INSERT_TAIL(&t->takers, k, link);
    k->state = TAKER_QUEUED;
    arm(t, now_us);
    return false;
}

void
throttle_spend(struct broker_queue *bq, struct taker *k)
{
    struct throttle *t = bq->rate;
    int64_t now_us;

    if (t == NULL || k->state != TAKER_HOLDING)
        return;
    now_us = aq_clock_mono_us();
    k->state = TAKER_IDLE;
    aq_rate_spend_held(t->bucket, now_us);
    arm(t, now_us);
}

void
throttle_drop(struct broker_queue *bq, struct taker *k)
{
    struct throttle *t = bq->rate;
    int64_t now_us;

    if (t == NULL || k->state == TAKER_IDLE) {
        k->state = TAKER_IDLE;
        return;
    }
    now_us = aq_clock_mono_us();
    if (k->state == TAKER_QUEUED) {
        account(t, now_us);
        TAILQ_REMOVE(&t->takers, k, link);
    } else {
        aq_rate_unhold(t->bucket, now_us);
    }
    k->state = TAKER_IDLE;
    arm(t, now_us);
}

unsigned
throttle_take(struct broker_queue *bq, unsigned n)
{
    struct throttle *t = bq->rate;

    if (!TAILQ_EMPTY(&t->takers))
        return 0; /* earlier takers first */
    return aq_rate_take(t->bucket, n, aq_clock_mono_us());
}

void
throttle_give(struct broker_queue *bq, unsigned n)
{
    struct throttle *t = bq->rate;
    int64_t now_us = aq_clock_mono_us();

    if (n == 0)
        return;
    aq_rate_give(t->bucket, n, now_us);
    arm(t, now_us);
}

double
throttle_seconds(const struct broker_queue *bq)
{
    const struct throttle *t = bq->rate;

    if (t == NULL)
        return (double)bq->throttled_us / 1e6;
    return (double)(bq->throttled_us + t->throttled_us +
                    throttled_part_us(t, aq_clock_mono_us())) /
           1e6;
}
