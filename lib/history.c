/* SPDX-License-Identifier: MIT */
/*
 * lib/history.c: per-queue rings of done/failed counts per second (see
 * lib/history.h). Slot i of a ring holds the second s with s % SECONDS ==
 * i, for the SECONDS seconds up to h->end. Queues are found by name; the
 * timer notes them in the broker's order, which is stable, so a cursor
 * finds each at once and a tick costs O(queues).
 */
#include "history.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "clock.h"
#include "xmalloc.h"

#define SECONDS AQ_HISTORY_SECONDS
#define TICK_LATE_US 5000 /* after the second's end: its last jobs noted */

struct ring {
    char *name; /* owned */
    uint64_t done_total, failed_total;
    uint32_t done[SECONDS], failed[SECONDS]; /* saturating */
};

struct aq_history {
    struct ring **rings; /* owned, each owned */
    size_t n, cap;
    size_t cursor; /* where the next note's queue probably is */
    int64_t end;   /* the last complete second */
    struct event *timer;
    struct aq_broker *broker;
};

static size_t
slot(int64_t sec)
{
    int64_t i = sec % SECONDS;

    return (size_t)(i < 0 ? i + SECONDS : i);
}

struct aq_history *
aq_history_new(int64_t end)
{
    struct aq_history *h = xcalloc(1, sizeof *h);

    h->end = end;
    return h;
}

void
aq_history_free(struct aq_history *h)
{
    if (h == NULL)
        return;
    if (h->timer != NULL)
        event_free(h->timer);
    for (size_t i = 0; i < h->n; i++) {
        free(h->rings[i]->name);
        free(h->rings[i]);
    }
    free(h->rings);
    free(h);
}

void
aq_history_advance(struct aq_history *h, int64_t sec)
{
    int64_t steps = sec - h->end;

    h->cursor = 0;
    if (steps <= 0)
        return;
    if (steps > SECONDS)
        steps = SECONDS;
    for (size_t i = 0; i < h->n; i++) {
        struct ring *r = h->rings[i];

        for (int64_t s = sec - steps + 1; s <= sec; s++) {
            r->done[slot(s)] = 0;
            r->failed[slot(s)] = 0;
        }
    }
    h->end = sec;
}

static struct ring *
find(const struct aq_history *h, const char *queue, size_t *at)
{
    if (h->cursor < h->n && strcmp(h->rings[h->cursor]->name, queue) == 0) {
        *at = h->cursor;
        return h->rings[h->cursor];
    }
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->rings[i]->name, queue) == 0) {
            *at = i;
            return h->rings[i];
        }
    }
    return NULL;
}

static uint32_t
sat_add(uint32_t a, uint64_t b)
{
    return b >= UINT32_MAX - a ? UINT32_MAX : (uint32_t)(a + b);
}

void
aq_history_note(struct aq_history *h, const char *queue, uint64_t done,
                uint64_t failed)
{
    size_t at = h->n;
    struct ring *r = find(h, queue, &at);
    size_t i = slot(h->end);

    if (r == NULL) {
        if (h->n == h->cap) {
            h->cap = h->cap != 0 ? 2 * h->cap : 8;
            h->rings = xrealloc(h->rings, h->cap * sizeof *h->rings);
        }
        r = xcalloc(1, sizeof *r);
        r->name = xstrdup(queue);
        r->done_total = done;
        r->failed_total = failed;
        h->rings[h->n++] = r;
        h->cursor = h->n;
        return;
    }
    h->cursor = at + 1;
    if (done > r->done_total)
        r->done[i] = sat_add(r->done[i], done - r->done_total);
    if (failed > r->failed_total)
        r->failed[i] = sat_add(r->failed[i], failed - r->failed_total);
    r->done_total = done;
    r->failed_total = failed;
}

int64_t
aq_history_end(const struct aq_history *h)
{
    return h->end;
}

void
aq_history_samples(const struct aq_history *h, const char *queue, size_t n,
                   uint32_t *done, uint32_t *failed)
{
    size_t at;
    const struct ring *r = find(h, queue, &at);

    for (size_t k = 0; k < n; k++) {
        size_t i = slot(h->end - (int64_t)(n - 1 - k));

        done[k] = r != NULL ? r->done[i] : 0;
        failed[k] = r != NULL ? r->failed[i] : 0;
    }
}

/* ---- the timer ---- */

static void
note_cb(const struct aq_queue_stats *s, void *arg)
{
    aq_history_note(arg, s->name, s->done, s->failed);
}

static void
arm(struct aq_history *h)
{
    int64_t now = aq_clock_wall_us();
    struct timeval tv = aq_clock_tv(1000000 - now % 1000000 + TICK_LATE_US);

    evtimer_add(h->timer, &tv);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_history *h = arg;

    /* Just after second S began: S - 1 is complete. */
    aq_history_advance(h, aq_clock_wall_us() / 1000000 - 1);
    aq_broker_each_queue(h->broker, NULL, note_cb, h, NULL);
    arm(h);
}

void
aq_history_start(struct aq_history *h, struct event_base *base,
                 struct aq_broker *broker)
{
    h->broker = broker;
    h->timer = evtimer_new(base, tick_cb, h);
    aq_history_advance(h, aq_clock_wall_us() / 1000000 - 1);
    aq_broker_each_queue(broker, NULL, note_cb, h, NULL); /* the bases */
    arm(h);
}
