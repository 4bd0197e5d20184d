/* SPDX-License-Identifier: MIT */
/*
 * lib/queue.c: asyncio.Queue on libevent.
 *
 * Ready items live in one intrusive list per priority ("bucket"); a small
 * min-heap orders the buckets and a hash table finds a bucket by priority, so
 * put and get are O(1) with few distinct priorities and O(log n) at worst.
 * Invariant: only the top bucket of the heap may be empty (it lingers so that
 * a single-priority queue going empty and back costs no heap or hash work).
 * Delayed items sit in a binary heap by due time with one evtimer armed for
 * the earliest. Waiters are woken from one "wake" event, never inside a call.
 */
#include "queue.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "xmalloc.h"

enum { WHERE_NONE = 0, WHERE_READY, WHERE_DELAYED };
enum {
    LIST_NONE = 0,
    LIST_PUTTERS,
    LIST_GETTERS,
    LIST_JOINERS,
    LIST_JOINED,
    LIST_COUNT
};

#define FREE_BUCKETS_MAX 32

struct wlist {
    TAILQ_HEAD(, aq_queue_waiter) waiters;
    size_t n;
};

struct bucket {
    int32_t priority;
    size_t heap_idx; /* index in q->levels */
    struct aq_queue_item *head, *tail;
    SLIST_ENTRY(bucket) free_link;
};

struct aq_queue {
    struct event_base *base; /* borrowed */
    struct aq_queue_opts opts;
    size_t nready, unfinished;
    size_t outside; /* unfinished items elsewhere: count toward maxsize */
    bool is_shutdown, wake_pending, in_dispatch;

    /* ready items: buckets in a min-heap by priority, found by hash */
    struct bucket **levels; /* owned, with the buckets */
    size_t nlevels, levels_cap;
    struct bucket **slots; /* hash, linear probing; NULL = empty slot */
    unsigned slots_bits;
    struct bucket *last;               /* bucket used last, a lookup cache */
    SLIST_HEAD(, bucket) free_buckets; /* recycled, up to FREE_BUCKETS_MAX */
    size_t nfree;

    /* delayed items: a min-heap by (due_us, seq) */
    struct aq_queue_item **timers;
    size_t ntimers, timers_cap;
    struct event *timer_ev; /* armed for timers[0] */
    int64_t armed_due_us;   /* due time timer_ev is armed for; 0 = none */
    uint32_t timer_seq;     /* FIFO among equal due times */

    struct event *wake_ev;
    struct wlist lists[LIST_COUNT];
};

/* ---- waiter lists ---- */

static void
wlist_append(struct aq_queue *q, int list, struct aq_queue_waiter *w)
{
    struct wlist *l = &q->lists[list];

    /* A waiter already waiting would be linked twice, and walked after its
     * owner frees it: stop at the caller's bug, not at the heap damage. */
    if (w->list != LIST_NONE) {
        fprintf(stderr, "asyncq: queue: a waiter was reused while still "
                        "waiting (broken invariant)\n");
        abort();
    }
    w->list = (uint8_t)list;
    TAILQ_INSERT_TAIL(&l->waiters, w, link);
    l->n++;
}

static void
wlist_remove(struct aq_queue *q, struct aq_queue_waiter *w)
{
    struct wlist *l = &q->lists[w->list];

    TAILQ_REMOVE(&l->waiters, w, link);
    l->n--;
    w->list = LIST_NONE;
}

/* ---- priority buckets: heap of levels ---- */

static void
level_set(struct aq_queue *q, size_t i, struct bucket *b)
{
    q->levels[i] = b;
    b->heap_idx = i;
}

static void
level_sift_up(struct aq_queue *q, size_t i)
{
    struct bucket *b = q->levels[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (q->levels[parent]->priority <= b->priority)
            break;
        level_set(q, i, q->levels[parent]);
        i = parent;
    }
    level_set(q, i, b);
}

static void
level_sift_down(struct aq_queue *q, size_t i)
{
    struct bucket *b = q->levels[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= q->nlevels)
            break;
        if (child + 1 < q->nlevels &&
            q->levels[child + 1]->priority < q->levels[child]->priority)
            child++;
        if (b->priority <= q->levels[child]->priority)
            break;
        level_set(q, i, q->levels[child]);
        i = child;
    }
    level_set(q, i, b);
}

/* ---- priority buckets: hash by priority ---- */

static size_t
slot_hash(const struct aq_queue *q, int32_t priority)
{
    /* Fibonacci hashing: the top bits of a multiplicative hash. */
    return ((uint32_t)priority * 0x9E3779B1u) >> (32 - q->slots_bits);
}

static size_t
slot_find(const struct aq_queue *q, int32_t priority)
{
    size_t mask = ((size_t)1 << q->slots_bits) - 1;
    size_t i = slot_hash(q, priority);

    while (q->slots[i] != NULL && q->slots[i]->priority != priority)
        i = (i + 1) & mask;
    return i;
}

static void
slots_grow(struct aq_queue *q)
{
    struct bucket **old = q->slots;
    size_t old_n = (size_t)1 << q->slots_bits;

    q->slots_bits++;
    q->slots = xcalloc((size_t)1 << q->slots_bits, sizeof *q->slots);
    for (size_t i = 0; i < old_n; i++) {
        if (old[i] != NULL)
            q->slots[slot_find(q, old[i]->priority)] = old[i];
    }
    free(old);
}

/* Backward-shift deletion keeps linear probing free of tombstones. */
static void
slot_delete(struct aq_queue *q, int32_t priority)
{
    size_t mask = ((size_t)1 << q->slots_bits) - 1;
    size_t i = slot_find(q, priority);
    size_t j = i;

    assert(q->slots[i] != NULL);
    q->slots[i] = NULL;
    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (q->slots[j] == NULL)
            break;
        home = slot_hash(q, q->slots[j]->priority);
        /* Leave slots[j] if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        q->slots[i] = q->slots[j];
        q->slots[j] = NULL;
        i = j;
    }
}

/* ---- priority buckets: life cycle ---- */

static struct bucket *
bucket_find(struct aq_queue *q, int32_t priority)
{
    struct bucket *b;

    if (q->last != NULL && q->last->priority == priority)
        return q->last;
    b = q->slots[slot_find(q, priority)];
    if (b != NULL)
        q->last = b;
    return b;
}

static void
bucket_release(struct aq_queue *q, struct bucket *b)
{
    size_t i = b->heap_idx;

    assert(b->head == NULL);
    q->nlevels--;
    if (i < q->nlevels) {
        struct bucket *moved = q->levels[q->nlevels];

        level_set(q, i, moved);
        level_sift_up(q, i);
        if (moved->heap_idx == i)
            level_sift_down(q, i);
    }
    slot_delete(q, b->priority);
    if (q->last == b)
        q->last = NULL;
    if (q->nfree < FREE_BUCKETS_MAX) {
        SLIST_INSERT_HEAD(&q->free_buckets, b, free_link);
        q->nfree++;
    } else
        free(b);
}

static struct bucket *
bucket_get(struct aq_queue *q, int32_t priority)
{
    struct bucket *b = bucket_find(q, priority);

    if (b != NULL)
        return b;
    /* Keep "only the top may be empty": drop a lingering empty top. */
    if (q->nlevels > 0 && q->levels[0]->head == NULL)
        bucket_release(q, q->levels[0]);

    if ((q->nlevels + 1) * 2 > ((size_t)1 << q->slots_bits))
        slots_grow(q);
    if ((b = SLIST_FIRST(&q->free_buckets)) != NULL) {
        SLIST_REMOVE_HEAD(&q->free_buckets, free_link);
        q->nfree--;
    } else
        b = xmalloc(sizeof *b);
    b->priority = priority;
    b->head = b->tail = NULL;
    q->slots[slot_find(q, priority)] = b;
    if (q->nlevels == q->levels_cap) {
        q->levels_cap = q->levels_cap != 0 ? q->levels_cap * 2 : 8;
        q->levels = xreallocarray(q->levels, q->levels_cap, sizeof *q->levels);
    }
    level_set(q, q->nlevels++, b);
    level_sift_up(q, b->heap_idx);
    q->last = b;
    return b;
}

/* ---- ready items ---- */

#define PREV(it) ((it)->u.link[0])
#define NEXT(it) ((it)->u.link[1])

/* When an item became ready, in ticks of READY_TICK_US of the loop's
 * cached clock (no system call per put), modulo 2^30 in the item's spare
 * bits: ages are right up to 2^30 ticks, 203 days. */
#define READY_TICK_SHIFT 14 /* 16.384 ms */
#define READY_TICK_MASK ((UINT32_C(1) << 30) - 1)

static uint32_t
ready_tick_now(const struct aq_queue *q)
{
    struct timeval tv;

    event_base_gettimeofday_cached(q->base, &tv);
    return (uint32_t)((((uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec) >>
                       READY_TICK_SHIFT) &
                      READY_TICK_MASK);
}

static void
ready_push(struct aq_queue *q, struct aq_queue_item *it)
{
    struct bucket *b = bucket_get(q, it->priority);

    if (q->opts.order == AQ_QUEUE_LIFO) {
        PREV(it) = NULL;
        NEXT(it) = b->head;
        if (b->head != NULL)
            PREV(b->head) = it;
        else
            b->tail = it;
        b->head = it;
    } else {
        NEXT(it) = NULL;
        PREV(it) = b->tail;
        if (b->tail != NULL)
            NEXT(b->tail) = it;
        else
            b->head = it;
        b->tail = it;
    }
    it->where = WHERE_READY;
    it->ready_tick = ready_tick_now(q);
    q->nready++;
}

static void
ready_unlink(struct aq_queue *q, struct bucket *b, struct aq_queue_item *it)
{
    if (PREV(it) != NULL)
        NEXT(PREV(it)) = NEXT(it);
    else
        b->head = NEXT(it);
    if (NEXT(it) != NULL)
        PREV(NEXT(it)) = PREV(it);
    else
        b->tail = PREV(it);
    it->where = WHERE_NONE;
    q->nready--;
    /* Only the top bucket may stay empty. */
    if (b->head == NULL && b->heap_idx != 0)
        bucket_release(q, b);
}

static struct aq_queue_item *
ready_pop(struct aq_queue *q)
{
    struct bucket *b;

    assert(q->nready > 0);
    while ((b = q->levels[0])->head == NULL)
        bucket_release(q, b);
    struct aq_queue_item *it = b->head;
    ready_unlink(q, b, it);
    return it;
}

/* ---- delayed items ---- */

static bool
timer_before(const struct aq_queue_item *a, const struct aq_queue_item *b)
{
    if (a->u.timer.due_us != b->u.timer.due_us)
        return a->u.timer.due_us < b->u.timer.due_us;
    /* Sequence numbers wrap: compare them as a window. */
    return (int32_t)(a->u.timer.seq - b->u.timer.seq) < 0;
}

static void
timer_set(struct aq_queue *q, size_t i, struct aq_queue_item *it)
{
    q->timers[i] = it;
    it->u.timer.heap_idx = (uint32_t)i;
}

static void
timer_sift_up(struct aq_queue *q, size_t i)
{
    struct aq_queue_item *it = q->timers[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!timer_before(it, q->timers[parent]))
            break;
        timer_set(q, i, q->timers[parent]);
        i = parent;
    }
    timer_set(q, i, it);
}

static void
timer_sift_down(struct aq_queue *q, size_t i)
{
    struct aq_queue_item *it = q->timers[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= q->ntimers)
            break;
        if (child + 1 < q->ntimers &&
            timer_before(q->timers[child + 1], q->timers[child]))
            child++;
        if (!timer_before(q->timers[child], it))
            break;
        timer_set(q, i, q->timers[child]);
        i = child;
    }
    timer_set(q, i, it);
}

/* Arms timer_ev for the earliest due item, if that changed. */
static void
timer_arm(struct aq_queue *q)
{
    if (q->ntimers == 0) {
        if (q->armed_due_us != 0)
            evtimer_del(q->timer_ev);
        q->armed_due_us = 0;
        return;
    }
    int64_t due_us = q->timers[0]->u.timer.due_us;
    if (due_us == q->armed_due_us)
        return;
    struct timeval tv = aq_clock_tv(due_us - aq_clock_mono_us());
    evtimer_add(q->timer_ev, &tv);
    q->armed_due_us = due_us;
}

static void
delayed_push(struct aq_queue *q, struct aq_queue_item *it, int64_t delay_us)
{
    if (q->ntimers == q->timers_cap) {
        q->timers_cap = q->timers_cap != 0 ? q->timers_cap * 2 : 16;
        q->timers = xreallocarray(q->timers, q->timers_cap, sizeof *q->timers);
    }
    /* Saturated: no delay a caller passes can overflow the due time. */
    if (delay_us > AQ_DURATION_MAX_US)
        delay_us = AQ_DURATION_MAX_US;
    it->u.timer.due_us = aq_clock_add_us(aq_clock_mono_us(), delay_us);
    it->u.timer.seq = q->timer_seq++;
    it->where = WHERE_DELAYED;
    timer_set(q, q->ntimers++, it);
    timer_sift_up(q, it->u.timer.heap_idx);
    if (it->u.timer.heap_idx == 0)
        timer_arm(q);
}

/* Takes it out of the timer heap; returns whether it was the earliest, in
 * which case the caller re-arms the timer (once, after a batch). */
static bool
delayed_unlink(struct aq_queue *q, struct aq_queue_item *it)
{
    size_t i = it->u.timer.heap_idx;

    q->ntimers--;
    if (i < q->ntimers) {
        struct aq_queue_item *moved = q->timers[q->ntimers];

        timer_set(q, i, moved);
        timer_sift_up(q, i);
        if (moved->u.timer.heap_idx == i)
            timer_sift_down(q, i);
    }
    it->where = WHERE_NONE;
    return i == 0;
}

/* ---- waking waiters ---- */

static void
wake_schedule(struct aq_queue *q)
{
    if (!q->wake_pending) {
        q->wake_pending = true;
        event_active(q->wake_ev, EV_TIMEOUT, 0);
    }
}

static bool
is_full(const struct aq_queue *q)
{
    return q->opts.maxsize != 0 &&
           q->unfinished + q->outside >= q->opts.maxsize;
}

/* Items taken by get or remove and not yet task_done. */
static size_t
taken(const struct aq_queue *q)
{
    return q->unfinished - q->nready - q->ntimers;
}

static bool
nothing_left(const struct aq_queue *q)
{
    return q->nready == 0 && q->ntimers == 0;
}

/* Queues it: ready now, or delayed. Wakes a getter if one waits. */
static void
insert(struct aq_queue *q, struct aq_queue_item *it, int32_t priority,
       int64_t delay_us)
{
    it->priority = priority;
    if (delay_us > 0)
        delayed_push(q, it, delay_us);
    else {
        ready_push(q, it);
        if (q->lists[LIST_GETTERS].n > 0)
            wake_schedule(q);
    }
}

/* An item left the queue: after shutdown, its end may wake getters. */
static void
item_left(struct aq_queue *q)
{
    if (q->is_shutdown && nothing_left(q) && q->lists[LIST_GETTERS].n > 0)
        wake_schedule(q);
}

/* unfinished dropped or maxsize changed: room for putters, or join's
 * moment. */
static void
counts_changed(struct aq_queue *q)
{
    if (q->unfinished == 0 && q->lists[LIST_JOINERS].n > 0) {
        struct aq_queue_waiter *w;

        while ((w = TAILQ_FIRST(&q->lists[LIST_JOINERS].waiters)) != NULL) {
            wlist_remove(q, w);
            wlist_append(q, LIST_JOINED, w);
        }
        wake_schedule(q);
    }
    if (q->lists[LIST_PUTTERS].n > 0 && !is_full(q))
        wake_schedule(q);
}

/* Serves waiters in arrival order: putters while there is room, getters
 * while there are items, then fired joiners. Each callback may call back
 * into the queue, so every loop re-reads the state. */
static void
dispatch(struct aq_queue *q)
{
    struct aq_queue_waiter *w;

    q->in_dispatch = true;
    while ((w = TAILQ_FIRST(&q->lists[LIST_PUTTERS].waiters)) != NULL) {
        struct aq_queue_item *it = w->item;

        if (q->is_shutdown) {
            wlist_remove(q, w);
            w->cb(w, AQ_QUEUE_SHUTDOWN, it, w->arg);
            continue;
        }
        if (is_full(q))
            break;
        wlist_remove(q, w);
        q->unfinished++;
        insert(q, it, w->priority, w->delay_us);
        w->cb(w, AQ_QUEUE_OK, it, w->arg);
    }
    while ((w = TAILQ_FIRST(&q->lists[LIST_GETTERS].waiters)) != NULL) {
        if (q->nready > 0) {
            struct aq_queue_item *it = ready_pop(q);

            wlist_remove(q, w);
            w->cb(w, AQ_QUEUE_OK, it, w->arg);
        } else if (q->is_shutdown && nothing_left(q)) {
            wlist_remove(q, w);
            w->cb(w, AQ_QUEUE_SHUTDOWN, NULL, w->arg);
        } else
            break;
    }
    while ((w = TAILQ_FIRST(&q->lists[LIST_JOINED].waiters)) != NULL) {
        wlist_remove(q, w);
        w->cb(w, AQ_QUEUE_OK, NULL, w->arg);
    }
    q->in_dispatch = false;
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_queue *q = arg;

    q->wake_pending = false;
    dispatch(q);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_queue *q = arg;
    int64_t now_us = aq_clock_mono_us();
    bool moved = false;

    q->armed_due_us = 0;
    /* libevent's coarse clock may fire a little early: items not yet due
     * by our clock stay, and the timer is re-armed for them. */
    while (q->ntimers > 0 && q->timers[0]->u.timer.due_us <= now_us) {
        struct aq_queue_item *it = q->timers[0];

        delayed_unlink(q, it);
        ready_push(q, it);
        if (q->opts.ready_cb != NULL)
            q->opts.ready_cb(it, q->opts.ready_arg);
        moved = true;
    }
    timer_arm(q);
    if (moved && q->lists[LIST_GETTERS].n > 0)
        dispatch(q);
}

/* ---- public ---- */

struct aq_queue *
aq_queue_new(struct event_base *base, const struct aq_queue_opts *opts)
{
    struct aq_queue *q = xcalloc(1, sizeof *q);

    q->base = base;
    if (opts != NULL)
        q->opts = *opts;
    for (int i = 0; i < LIST_COUNT; i++)
        TAILQ_INIT(&q->lists[i].waiters);
    SLIST_INIT(&q->free_buckets);
    q->slots_bits = 3;
    q->slots = xcalloc((size_t)1 << q->slots_bits, sizeof *q->slots);
    q->timer_ev = evtimer_new(base, timer_cb, q);
    q->wake_ev = event_new(base, -1, 0, wake_cb, q);
    return q;
}

/* Empties the queue into fn (items are then the callee's): from the
 * ends, where ready items pop in O(1) and the last timer leaves the heap
 * without a sift. Returns how many items it took. */
static size_t
take_all(struct aq_queue *q, void (*fn)(struct aq_queue_item *it, void *arg),
         void *arg)
{
    size_t n = 0;

    while (q->ntimers > 0 || q->nready > 0) {
        struct aq_queue_item *it;

        if (q->ntimers > 0) {
            it = q->timers[q->ntimers - 1];
            delayed_unlink(q, it);
        } else
            it = ready_pop(q);
        n++;
        if (fn != NULL)
            fn(it, arg);
    }
    timer_arm(q);
    return n;
}

/* Empties the queue into drop_cb; returns how many items it dropped. */
static size_t
drop_all(struct aq_queue *q)
{
    return take_all(q, q->opts.drop_cb, q->opts.drop_arg);
}

void
aq_queue_free(struct aq_queue *q)
{
    struct bucket *b;

    if (q == NULL)
        return;
    assert(!q->in_dispatch);
    drop_all(q);
    while (q->nlevels > 0)
        bucket_release(q, q->levels[0]);
    while ((b = SLIST_FIRST(&q->free_buckets)) != NULL) {
        SLIST_REMOVE_HEAD(&q->free_buckets, free_link);
        free(b);
    }
    event_free(q->timer_ev);
    event_free(q->wake_ev);
    free(q->levels);
    free(q->slots);
    free(q->timers);
    free(q);
}

enum aq_queue_status
aq_queue_put_nowait(struct aq_queue *q, struct aq_queue_item *it,
                    int32_t priority, int64_t delay_us)
{
    if (q->is_shutdown)
        return AQ_QUEUE_SHUTDOWN;
    if (is_full(q))
        return AQ_QUEUE_FULL;
    q->unfinished++;
    insert(q, it, priority, delay_us);
    return AQ_QUEUE_OK;
}

enum aq_queue_status
aq_queue_put(struct aq_queue *q, struct aq_queue_waiter *w,
             struct aq_queue_item *it, int32_t priority, int64_t delay_us,
             aq_queue_cb *cb, void *arg)
{
    if (q->is_shutdown)
        return AQ_QUEUE_SHUTDOWN;
    /* Earlier putters go first, even when room just appeared for them. */
    if (q->lists[LIST_PUTTERS].n == 0 && !is_full(q)) {
        q->unfinished++;
        insert(q, it, priority, delay_us);
        return AQ_QUEUE_OK;
    }
    w->cb = cb;
    w->arg = arg;
    w->item = it;
    w->priority = priority;
    w->delay_us = delay_us;
    wlist_append(q, LIST_PUTTERS, w);
    return AQ_QUEUE_WAITING;
}

enum aq_queue_status
aq_queue_get_nowait(struct aq_queue *q, struct aq_queue_item **out)
{
    if (q->nready > 0) {
        *out = ready_pop(q);
        item_left(q);
        return AQ_QUEUE_OK;
    }
    *out = NULL;
    return q->is_shutdown && nothing_left(q) ? AQ_QUEUE_SHUTDOWN
                                             : AQ_QUEUE_EMPTY;
}

enum aq_queue_status
aq_queue_get(struct aq_queue *q, struct aq_queue_waiter *w, aq_queue_cb *cb,
             void *arg, struct aq_queue_item **out)
{
    /* Earlier getters go first, even when an item is ready for them. */
    if (q->lists[LIST_GETTERS].n == 0) {
        enum aq_queue_status st = aq_queue_get_nowait(q, out);

        if (st != AQ_QUEUE_EMPTY)
            return st;
    }
    *out = NULL;
    w->cb = cb;
    w->arg = arg;
    w->item = NULL;
    wlist_append(q, LIST_GETTERS, w);
    return AQ_QUEUE_WAITING;
}

enum aq_queue_status
aq_queue_join(struct aq_queue *q, struct aq_queue_waiter *w, aq_queue_cb *cb,
              void *arg)
{
    if (q->unfinished == 0)
        return AQ_QUEUE_OK;
    w->cb = cb;
    w->arg = arg;
    w->item = NULL;
    wlist_append(q, LIST_JOINERS, w);
    return AQ_QUEUE_WAITING;
}

void
aq_queue_cancel(struct aq_queue *q, struct aq_queue_waiter *w)
{
    if (w->list != LIST_NONE)
        wlist_remove(q, w);
}

int
aq_queue_task_done(struct aq_queue *q, struct aq_error *err)
{
    if (taken(q) == 0) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "queue: task_done: called more times than items taken");
        return -1;
    }
    q->unfinished--;
    counts_changed(q);
    return 0;
}

bool
aq_queue_remove(struct aq_queue *q, struct aq_queue_item *it)
{
    switch (it->where) {
    case WHERE_READY:
        ready_unlink(q, bucket_find(q, it->priority), it);
        break;
    case WHERE_DELAYED:
        if (delayed_unlink(q, it))
            timer_arm(q);
        break;
    default:
        return false;
    }
    item_left(q);
    return true;
}

enum aq_queue_status
aq_queue_put_force(struct aq_queue *q, struct aq_queue_item *it,
                   int32_t priority, int64_t delay_us)
{
    if (q->is_shutdown)
        return AQ_QUEUE_SHUTDOWN;
    q->unfinished++;
    insert(q, it, priority, delay_us);
    return AQ_QUEUE_OK;
}

size_t
aq_queue_take_all(struct aq_queue *q,
                  void (*fn)(struct aq_queue_item *it, void *arg), void *arg)
{
    size_t n = take_all(q, fn, arg);

    item_left(q);
    return n;
}

int
aq_queue_requeue(struct aq_queue *q, struct aq_queue_item *it, int32_t priority,
                 int64_t delay_us, struct aq_error *err)
{
    if (taken(q) == 0) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "queue: requeue: no taken item is unfinished");
        return -1;
    }
    insert(q, it, priority, delay_us);
    return 0;
}

void
aq_queue_shutdown(struct aq_queue *q, bool immediate)
{
    q->is_shutdown = true;
    if (immediate) {
        q->unfinished -= drop_all(q);
        counts_changed(q);
    }
    if (q->lists[LIST_PUTTERS].n > 0 ||
        (q->lists[LIST_GETTERS].n > 0 && nothing_left(q)))
        wake_schedule(q);
}

void
aq_queue_set_maxsize(struct aq_queue *q, size_t maxsize)
{
    q->opts.maxsize = maxsize;
    counts_changed(q);
}

void
aq_queue_set_outside(struct aq_queue *q, size_t n)
{
    if (q->outside == n)
        return;
    q->outside = n;
    counts_changed(q);
}

size_t
aq_queue_outside(const struct aq_queue *q)
{
    return q->outside;
}

size_t
aq_queue_qsize(const struct aq_queue *q)
{
    return q->nready;
}

size_t
aq_queue_delayed(const struct aq_queue *q)
{
    return q->ntimers;
}

size_t
aq_queue_unfinished(const struct aq_queue *q)
{
    return q->unfinished;
}

size_t
aq_queue_maxsize(const struct aq_queue *q)
{
    return q->opts.maxsize;
}

bool
aq_queue_empty(const struct aq_queue *q)
{
    return q->nready == 0;
}

bool
aq_queue_full(const struct aq_queue *q)
{
    return is_full(q);
}

bool
aq_queue_is_shutdown(const struct aq_queue *q)
{
    return q->is_shutdown;
}

bool
aq_queue_item_is_delayed(const struct aq_queue_item *it)
{
    return it->where == WHERE_DELAYED;
}

int64_t
aq_queue_item_due_us(const struct aq_queue_item *it)
{
    return it->where == WHERE_DELAYED ? it->u.timer.due_us : 0;
}

/* Each bucket is in the order its items became ready: FIFO's oldest is
 * its head, LIFO's its tail. */
int64_t
aq_queue_oldest_ready_us(const struct aq_queue *q)
{
    uint32_t now = ready_tick_now(q), oldest = 0;

    for (size_t i = 0; i < q->nlevels; i++) {
        const struct bucket *b = q->levels[i];
        const struct aq_queue_item *it =
            q->opts.order == AQ_QUEUE_LIFO ? b->tail : b->head;
        uint32_t age;

        if (it == NULL)
            continue;
        age = (now - it->ready_tick) & READY_TICK_MASK;
        if (age > oldest)
            oldest = age;
    }
    return (int64_t)oldest << READY_TICK_SHIFT;
}

size_t
aq_queue_putters(const struct aq_queue *q)
{
    return q->lists[LIST_PUTTERS].n;
}

size_t
aq_queue_getters(const struct aq_queue *q)
{
    return q->lists[LIST_GETTERS].n;
}
