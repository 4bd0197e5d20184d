/* SPDX-License-Identifier: MIT */
/*
 * lib/queue.h: asyncio.Queue for C callbacks on a libevent event_base.
 * Ready items leave by priority (lower first), FIFO among equal priorities
 * (or LIFO); delayed items wait on one evtimer. maxsize bounds the unfinished
 * items (ready + delayed + taken but not task_done), as asyncqd needs.
 * Items and waiters are the caller's memory, embedded in its own structs:
 * no operation allocates beyond an occasional priority bucket.
 * Callbacks never fire inside a call: they run from the event loop.
 */
#ifndef AQ_QUEUE_H
#define AQ_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct aq_error;
struct aq_queue;

/* Embed in your item. Its fields belong to the queue while the item is in
 * it; before the first put, zero it (or never pass it to remove). */
struct aq_queue_item {
    union {
        struct aq_queue_item *link[2]; /* ready: prev, next */
        struct {
            uint32_t heap_idx; /* delayed: index in the timer heap */
            uint32_t seq;      /* delayed: FIFO among equal due times */
            int64_t due_us;    /* delayed: monotonic time it is ready */
        } timer;
    } u;
    int32_t priority;
    uint32_t where : 2;       /* private: not queued, ready or delayed */
    uint32_t ready_tick : 30; /* private: when it became ready (queue.c) */
};

enum aq_queue_status {
    AQ_QUEUE_OK = 0,   /* done at once (or, in a callback: done) */
    AQ_QUEUE_WAITING,  /* suspended: the waiter's callback fires later */
    AQ_QUEUE_FULL,     /* put_nowait: maxsize unfinished items */
    AQ_QUEUE_EMPTY,    /* get_nowait: no ready item */
    AQ_QUEUE_SHUTDOWN, /* the queue is shut down (for get: and empty) */
};

struct aq_queue_waiter;
/* A waiting put, get or join ended. get: st OK with the item (now the
 * caller's, to task_done later) or SHUTDOWN with NULL. put: OK with the item
 * now queued, or SHUTDOWN with the item handed back. join: OK, NULL. */
typedef void aq_queue_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
                         struct aq_queue_item *it, void *arg);

/* A suspended put, get or join: the caller's memory, which must stay valid
 * until the callback fires or aq_queue_cancel. Fields are private. A waiter
 * waits on one call at a time: passing one that still waits to put, get or
 * join is a caller's bug, and aborts with a message. */
struct aq_queue_waiter {
    TAILQ_ENTRY(aq_queue_waiter) link; /* on the list it waits on */
    aq_queue_cb *cb;
    void *arg;
    struct aq_queue_item *item; /* put: the item to insert */
    int64_t delay_us;           /* put: delay once inserted */
    int32_t priority;           /* put: priority */
    uint8_t list;               /* which list it waits on; 0 = none */
};

enum aq_queue_order {
    AQ_QUEUE_PRIORITY = 0, /* lower first, FIFO among equal (asyncio.Queue) */
    AQ_QUEUE_LIFO,         /* lower first, LIFO among equal (LifoQueue) */
};

struct aq_queue_opts {
    size_t maxsize; /* unfinished items before put waits; 0 = unbounded */
    enum aq_queue_order order;
    /* Called for each item shutdown(immediate) drops and each item still
     * queued at aq_queue_free; the item is then the callee's. May be NULL. */
    void (*drop_cb)(struct aq_queue_item *it, void *arg);
    void *drop_arg;
    /* Called for each delayed item whose time came, as it becomes ready
     * (from the queue's timer, before waiting getters are served); it must
     * not call the queue. May be NULL. */
    void (*ready_cb)(struct aq_queue_item *it, void *arg);
    void *ready_arg;
};

/* Returns a new empty queue on base; opts is copied. Free with
 * aq_queue_free, which hands queued items to drop_cb and forgets waiters
 * (no callback). Must not be freed from one of its own callbacks. */
struct aq_queue *aq_queue_new(struct event_base *base,
                              const struct aq_queue_opts *opts);
void aq_queue_free(struct aq_queue *q); /* NULL is fine */

/* put_nowait: queues it (ready, or delayed by delay_us > 0, at most
 * AQ_DURATION_MAX_US of lib/clock.h) and returns OK, or FULL / SHUTDOWN
 * leaving it the caller's. */
enum aq_queue_status aq_queue_put_nowait(struct aq_queue *q,
                                         struct aq_queue_item *it,
                                         int32_t priority, int64_t delay_us);
/* put: OK if queued now; WAITING if full or earlier putters wait (w's
 * callback fires when it is queued, in arrival order); SHUTDOWN. */
enum aq_queue_status aq_queue_put(struct aq_queue *q, struct aq_queue_waiter *w,
                                  struct aq_queue_item *it, int32_t priority,
                                  int64_t delay_us, aq_queue_cb *cb, void *arg);

/* get_nowait: OK with *out set to the next ready item (the caller's until
 * task_done), EMPTY, or SHUTDOWN once shut down with nothing left. */
enum aq_queue_status aq_queue_get_nowait(struct aq_queue *q,
                                         struct aq_queue_item **out);
/* get: as get_nowait, but WAITING instead of EMPTY (or while earlier getters
 * wait): w's callback gets the item, getters served in arrival order. */
enum aq_queue_status aq_queue_get(struct aq_queue *q, struct aq_queue_waiter *w,
                                  aq_queue_cb *cb, void *arg,
                                  struct aq_queue_item **out);

/* join: OK at once if no item is unfinished, else WAITING until the count
 * reaches zero. */
enum aq_queue_status aq_queue_join(struct aq_queue *q,
                                   struct aq_queue_waiter *w, aq_queue_cb *cb,
                                   void *arg);

/* Withdraws a waiting put, get or join: no callback fires, a put's item
 * stays the caller's. Harmless if w is not waiting. */
void aq_queue_cancel(struct aq_queue *q, struct aq_queue_waiter *w);

/* Marks one taken item finished. Returns 0, or -1 (err set) when no taken
 * item is unfinished: more task_done calls than items taken. */
int aq_queue_task_done(struct aq_queue *q, struct aq_error *err);

/* Takes it out of the queue (ready or delayed) as a get would: it becomes
 * the caller's, still unfinished. Returns false if it was not queued. */
bool aq_queue_remove(struct aq_queue *q, struct aq_queue_item *it);

/* Queues it now whatever maxsize says (an operator's retry: never waits,
 * may take the queue past maxsize), counted unfinished like a put.
 * Returns OK, or SHUTDOWN leaving it the caller's. */
enum aq_queue_status aq_queue_put_force(struct aq_queue *q,
                                        struct aq_queue_item *it,
                                        int32_t priority, int64_t delay_us);

/* Takes every queued item out (ready and delayed), as remove would, and
 * calls fn for each: it becomes the caller's, still unfinished (fn may
 * task_done it, but must not queue items). O(items). Returns how many. */
size_t aq_queue_take_all(struct aq_queue *q,
                         void (*fn)(struct aq_queue_item *it, void *arg),
                         void *arg);

/* Puts back a taken, unfinished item (a retry, or a job interrupted by a
 * shutdown) without counting it again or waiting for room; works after
 * shutdown too. Returns 0, or -1 (err set) if no taken item is unfinished. */
int aq_queue_requeue(struct aq_queue *q, struct aq_queue_item *it,
                     int32_t priority, int64_t delay_us, struct aq_error *err);

/* Python 3.13 Queue.shutdown: puts fail, waiting putters get SHUTDOWN, gets
 * fail once nothing is left. immediate also drops every queued item (to
 * drop_cb, counted finished) so getters and joiners wake at once. */
void aq_queue_shutdown(struct aq_queue *q, bool immediate);

/* Changes maxsize (0 = unbounded); waiting putters that now fit go on. */
void aq_queue_set_maxsize(struct aq_queue *q, size_t maxsize);

/* n unfinished items this queue does not hold (held elsewhere: other
 * asyncqd nodes sharing the queue) count toward maxsize with its own:
 * puts wait (or are FULL) while both reach it; putters that now fit go
 * on when n drops. 0 (the default) is none. */
void aq_queue_set_outside(struct aq_queue *q, size_t n);
size_t aq_queue_outside(const struct aq_queue *q);

size_t aq_queue_qsize(const struct aq_queue *q);      /* ready items */
size_t aq_queue_delayed(const struct aq_queue *q);    /* delayed items */
size_t aq_queue_unfinished(const struct aq_queue *q); /* put, not done */
size_t aq_queue_maxsize(const struct aq_queue *q);
bool aq_queue_empty(const struct aq_queue *q); /* no ready item */
bool aq_queue_full(const struct aq_queue *q);
bool aq_queue_is_shutdown(const struct aq_queue *q);
/* Whether it is queued and waiting for its delay (not yet ready). */
bool aq_queue_item_is_delayed(const struct aq_queue_item *it);
/* A delayed item's due time (monotonic microseconds); 0 otherwise. */
int64_t aq_queue_item_due_us(const struct aq_queue_item *it);

/* How long the ready item that became ready first has been ready, in
 * microseconds (to 16.4 ms, for up to 203 days); 0 with no ready item.
 * Costs one look per distinct priority, not per item. */
int64_t aq_queue_oldest_ready_us(const struct aq_queue *q);
/* Puts waiting for room (maxsize): each holds its producer back. */
size_t aq_queue_putters(const struct aq_queue *q);
/* Gets waiting for an item: takers with nothing to take. */
size_t aq_queue_getters(const struct aq_queue *q);

#endif
