/* SPDX-License-Identifier: MIT */
/*
 * tests/test_queue.c: the contract of lib/queue.h, one behaviour per test.
 * Items and waiters live in the tests' own structs (zeroed before use); every
 * wait on the loop is bounded by run_until, and run_for shows that something
 * did not happen. Each test frees its queue and heap items; the fixture
 * gives it its base and frees that.
 */
#include <check.h>
#include <event2/event.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "queue.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 2000             /* deadline for what must happen */
#define QUIET_MS 50              /* window in which nothing may happen */
#define FAR_US INT64_C(10000000) /* a delay no test waits out: 10 s */
#define SHORT_US INT64_C(100000) /* a delay tests wait out: 100 ms */
#define LOG_MAX 64

struct titem {
    struct aq_queue_item qi; /* zeroed before the first put */
    int id;
    int32_t prio; /* the priority the test put it with */
};

/* container_of: the titem holding queue item p */
/* clang-format off */
#define TITEM(p) ((struct titem *)((char *)(p) - offsetof(struct titem, qi)))
/* clang-format on */

/* Callback order shared by several waiters; done once n reaches want. */
struct tlog {
    int ids[LOG_MAX];
    int n;
    int want;
    bool done;
};

/* A test waiter: what its callback saw, and how often it fired. */
struct twait {
    struct aq_queue_waiter w; /* zeroed; the queue's while waiting */
    int id;
    int calls;
    bool fired;
    enum aq_queue_status st;
    struct aq_queue_item *it;      /* from the callback */
    struct aq_queue_item *got_now; /* from a get that returned OK */
    int64_t fired_us;              /* monotonic time of the last call */
    struct tlog *log;              /* optional */
};

/* What drop_cb received: a count and a bit per item id (< 32). */
struct dropped {
    int n;
    uint32_t mask;
    bool free_items; /* the items are heap titems: free them */
};

static int
item_id(struct aq_queue_item *it)
{
    if (it == NULL)
        return -1;
    return TITEM(it)->id;
}

static void
record_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
          struct aq_queue_item *it, void *arg)
{
    struct twait *tw = arg;

    ck_assert_ptr_eq(w, &tw->w);
    tw->calls++;
    tw->fired = true;
    tw->st = st;
    tw->it = it;
    tw->fired_us = aq_clock_mono_us();
    if (tw->log != NULL) {
        ck_assert_int_lt(tw->log->n, LOG_MAX);
        tw->log->ids[tw->log->n++] = tw->id;
        if (tw->log->n >= tw->log->want)
            tw->log->done = true;
    }
}

static void
drop_cb(struct aq_queue_item *it, void *arg)
{
    struct dropped *d = arg;
    int id = item_id(it);

    ck_assert_int_ge(id, 0);
    ck_assert_int_lt(id, 32);
    ck_assert_msg((d->mask & (UINT32_C(1) << id)) == 0, "item %d dropped twice",
                  id);
    d->n++;
    d->mask |= UINT32_C(1) << id;
    if (d->free_items)
        free(TITEM(it));
}

static struct aq_queue *
queue_new(struct event_base *base, size_t maxsize)
{
    struct aq_queue_opts opts = {.maxsize = maxsize};

    return aq_queue_new(base, &opts);
}

static struct aq_queue *
queue_new_dropping(struct event_base *base, size_t maxsize, struct dropped *d)
{
    struct aq_queue_opts opts = {
        .maxsize = maxsize,
        .drop_cb = drop_cb,
        .drop_arg = d,
    };

    return aq_queue_new(base, &opts);
}

static void
put_ok(struct aq_queue *q, struct titem *t, int32_t prio, int64_t delay_us)
{
    t->prio = prio;
    ck_assert_msg(aq_queue_put_nowait(q, &t->qi, prio, delay_us) == AQ_QUEUE_OK,
                  "put_nowait of item %d failed", t->id);
}

/* get_nowait that must succeed; returns the item's id. */
static int
take_id(struct aq_queue *q)
{
    struct aq_queue_item *it = NULL;

    ck_assert_int_eq(aq_queue_get_nowait(q, &it), AQ_QUEUE_OK);
    ck_assert_ptr_nonnull(it);
    return item_id(it);
}

static void
done_ok(struct aq_queue *q)
{
    struct aq_error err = {0};

    ck_assert_msg(aq_queue_task_done(q, &err) == 0, "task_done: %s",
                  err.message);
}

static enum aq_queue_status
get_wait(struct aq_queue *q, struct twait *tw)
{
    return aq_queue_get(q, &tw->w, record_cb, tw, &tw->got_now);
}

static enum aq_queue_status
put_wait(struct aq_queue *q, struct twait *tw, struct titem *t, int32_t prio,
         int64_t delay_us)
{
    t->prio = prio;
    return aq_queue_put(q, &tw->w, &t->qi, prio, delay_us, record_cb, tw);
}

static enum aq_queue_status
join_wait(struct aq_queue *q, struct twait *tw)
{
    return aq_queue_join(q, &tw->w, record_cb, tw);
}

static void
assert_counts(struct aq_queue *q, size_t qsize, size_t delayed,
              size_t unfinished)
{
    ck_assert_uint_eq(aq_queue_qsize(q), qsize);
    ck_assert_uint_eq(aq_queue_delayed(q), delayed);
    ck_assert_uint_eq(aq_queue_unfinished(q), unfinished);
}

/* Polls the delayed count from a 1 ms timer, so run_until can wait for
 * delayed items to become ready without taking them. */
struct delayed_watch {
    struct aq_queue *q;
    size_t want;
    bool done;
};

static void
delayed_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct delayed_watch *dw = arg;

    if (aq_queue_delayed(dw->q) == dw->want)
        dw->done = true;
}

static bool
run_until_delayed(struct event_base *base, struct aq_queue *q, size_t want,
                  int timeout_ms)
{
    struct delayed_watch dw = {.q = q, .want = want};
    struct event *ev = event_new(base, -1, EV_PERSIST, delayed_watch_cb, &dw);
    struct timeval tv = aq_clock_tv(1000);

    event_add(ev, &tv);
    run_until(base, &dw.done, timeout_ms);
    event_free(ev);
    return dw.done;
}

/*
 * A producer putting items[0..n) with aq_queue_put from its own callback,
 * and a consumer getting them with aq_queue_get from its own callback,
 * calling task_done for each.
 */
struct pump {
    struct aq_queue *q;
    struct titem *items; /* n items, the test's */
    int n;
    int next; /* producer: next item to put */
    struct aq_queue_waiter pw;
    struct aq_queue_waiter cw;
    int got;
    bool *seen;            /* n flags, or NULL */
    int *order;            /* ids in the order got, or NULL */
    size_t max_unfinished; /* the most unfinished items a get saw */
    bool done;             /* got == n */
};

static void producer_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
                        struct aq_queue_item *it, void *arg);
static void consumer_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
                        struct aq_queue_item *it, void *arg);

static void
producer_pump(struct pump *p)
{
    while (p->next < p->n) {
        struct titem *t = &p->items[p->next];
        enum aq_queue_status st =
            aq_queue_put(p->q, &p->pw, &t->qi, t->prio, 0, producer_cb, p);

        if (st == AQ_QUEUE_WAITING)
            return;
        ck_assert_int_eq(st, AQ_QUEUE_OK);
        p->next++;
    }
}

static void
producer_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
            struct aq_queue_item *it, void *arg)
{
    struct pump *p = arg;

    ck_assert_ptr_eq(w, &p->pw);
    ck_assert_int_eq(st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(it, &p->items[p->next].qi);
    p->next++;
    producer_pump(p);
}

static void
consume(struct pump *p, struct aq_queue_item *it)
{
    struct titem *t;
    size_t unfinished = aq_queue_unfinished(p->q);

    ck_assert_ptr_nonnull(it);
    t = TITEM(it);
    ck_assert_int_ge(t->id, 0);
    ck_assert_int_lt(t->id, p->n);
    if (p->seen != NULL) {
        ck_assert_msg(!p->seen[t->id], "item %d got twice", t->id);
        p->seen[t->id] = true;
    }
    if (p->order != NULL)
        p->order[p->got] = t->id;
    if (unfinished > p->max_unfinished)
        p->max_unfinished = unfinished;
    p->got++;
    done_ok(p->q);
    if (p->got == p->n)
        p->done = true;
}

static void
consumer_pump(struct pump *p)
{
    while (p->got < p->n) {
        struct aq_queue_item *it = NULL;
        enum aq_queue_status st =
            aq_queue_get(p->q, &p->cw, consumer_cb, p, &it);

        if (st == AQ_QUEUE_WAITING)
            return;
        ck_assert_int_eq(st, AQ_QUEUE_OK);
        consume(p, it);
    }
}

static void
consumer_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
            struct aq_queue_item *it, void *arg)
{
    struct pump *p = arg;

    ck_assert_ptr_eq(w, &p->cw);
    ck_assert_int_eq(st, AQ_QUEUE_OK);
    consume(p, it);
    consumer_pump(p);
}

/* ---- put_nowait / get_nowait ---- */

START_TEST(put_nowait_then_get_nowait_returns_the_item)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 7};
    struct aq_queue_item *out = NULL;

    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 0, 0), AQ_QUEUE_OK);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_OK);
    ck_assert_ptr_eq(out, &a.qi);
    ck_assert_int_eq(TITEM(out)->id, 7);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(get_nowait_on_empty_queue_returns_empty)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct aq_queue_item *out = NULL;

    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    /* Emptied again: the taken item does not count as ready. */
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(put_nowait_on_full_queue_returns_full_and_keeps_item_out)
{
    struct aq_queue *q = queue_new(test_base, 2);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct aq_queue_item *out = NULL;
    enum aq_queue_status st;

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    st = aq_queue_put_nowait(q, &c.qi, 0, 0);
    ck_assert_int_eq(st, AQ_QUEUE_FULL);
    ck_assert_int_ne(st, AQ_QUEUE_EMPTY);
    assert_counts(q, 2, 0, 2);
    ck_assert(!aq_queue_remove(q, &c.qi));
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(take_id(q), 2);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    done_ok(q);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(maxsize_counts_ready_delayed_and_taken_items)
{
    struct aq_queue *q = queue_new(test_base, 3);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, FAR_US);
    put_ok(q, &c, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    /* one ready, one delayed, one taken: three unfinished = maxsize */
    assert_counts(q, 1, 1, 3);
    ck_assert(aq_queue_full(q));
    ck_assert_int_eq(aq_queue_put_nowait(q, &d.qi, 0, 0), AQ_QUEUE_FULL);
    ck_assert_int_eq(aq_queue_put_nowait(q, &d.qi, 0, FAR_US), AQ_QUEUE_FULL);
    assert_counts(q, 1, 1, 3);
    done_ok(q);
    ck_assert(!aq_queue_full(q));
    ck_assert_int_eq(aq_queue_put_nowait(q, &d.qi, 0, 0), AQ_QUEUE_OK);
    assert_counts(q, 2, 1, 3);
    aq_queue_free(q);
}
END_TEST

START_TEST(taking_an_item_frees_no_room_but_task_done_does)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, 0, 0), AQ_QUEUE_FULL);
    ck_assert(aq_queue_full(q));
    done_ok(q);
    ck_assert(!aq_queue_full(q));
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, 0, 0), AQ_QUEUE_OK);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* ---- put ---- */

START_TEST(put_with_room_returns_ok_and_never_calls_back)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1};
    struct twait p = {.id = 1};

    ck_assert_int_eq(put_wait(q, &p, &a, 0, 0), AQ_QUEUE_OK);
    assert_counts(q, 1, 0, 1);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(put_on_full_queue_waits_until_task_done_frees_room)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    assert_counts(q, 1, 0, 1);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    /* taking a frees no room: still no callback */
    ck_assert_int_eq(take_id(q), 1);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    done_ok(q);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(p.it, &b.qi);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_putters_are_served_in_arrival_order)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem items[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    struct tlog log = {.want = 3};
    struct twait p[3] = {
        {.id = 1, .log = &log},
        {.id = 2, .log = &log},
        {.id = 3, .log = &log},
    };
    int i;

    put_ok(q, &items[0], 0, 0);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(put_wait(q, &p[i], &items[i + 1], 0, 0),
                         AQ_QUEUE_WAITING);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(take_id(q), i);
        done_ok(q);
        ck_assert(run_until(test_base, &p[i].fired, WAIT_MS));
        /* one room freed: exactly one more putter went on */
        ck_assert_int_eq(log.n, i + 1);
        ck_assert_int_eq(log.ids[i], i + 1);
        ck_assert_int_eq(p[i].st, AQ_QUEUE_OK);
        ck_assert_ptr_eq(p[i].it, &items[i + 1].qi);
    }
    ck_assert_int_eq(take_id(q), 3);
    done_ok(q);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(p[i].calls, 1);
    aq_queue_free(q);
}
END_TEST

START_TEST(woken_putter_whose_item_no_longer_fits_waits_again)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p = {.id = 1};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    /* the freed room is taken by put_nowait before the loop runs */
    ck_assert_int_eq(aq_queue_put_nowait(q, &c.qi, 0, 0), AQ_QUEUE_OK);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 3);
    done_ok(q);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(p.it, &b.qi);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(new_put_does_not_overtake_waiting_putters)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p1 = {.id = 1}, p2 = {.id = 2};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p1, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    /* there is room, but p1 still waits: p2 must queue behind it */
    ck_assert_int_eq(put_wait(q, &p2, &c, 0, 0), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &p1.fired, WAIT_MS));
    ck_assert_int_eq(p1.st, AQ_QUEUE_OK);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p2.calls, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    ck_assert(run_until(test_base, &p2.fired, WAIT_MS));
    ck_assert_int_eq(p2.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(p2.it, &c.qi);
    ck_assert_int_eq(take_id(q), 3);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_put_queues_item_with_its_priority)
{
    struct aq_queue *q = queue_new(test_base, 3);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4};
    struct twait p = {.id = 1};

    put_ok(q, &a, 5, 0);
    put_ok(q, &b, 5, 0);
    put_ok(q, &c, 5, 0);
    ck_assert_int_eq(put_wait(q, &p, &d, -3, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    ck_assert_int_eq(take_id(q), 4);
    ck_assert_int_eq(take_id(q), 2);
    ck_assert_int_eq(take_id(q), 3);
    done_ok(q);
    done_ok(q);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_put_with_delay_is_delayed_once_queued)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};
    struct aq_queue_item *out = NULL;

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, FAR_US), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    assert_counts(q, 0, 1, 1);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    ck_assert(aq_queue_remove(q, &b.qi));
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(cancelled_putter_item_is_not_queued_and_stays_callers)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};
    struct aq_queue_item *out = NULL;

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &p.w);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    assert_counts(q, 0, 0, 0);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    ck_assert(!aq_queue_remove(q, &b.qi));
    /* still the caller's: it can be put again */
    put_ok(q, &b, 0, 0);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(putter_cancelled_after_room_freed_does_not_queue_its_item)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p1 = {.id = 1}, p2 = {.id = 2};
    struct aq_queue_item *out = NULL;

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p1, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(put_wait(q, &p2, &c, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q); /* p1's turn, but its callback has not fired yet */
    aq_queue_cancel(q, &p1.w);
    /* the room goes to the next putter instead */
    ck_assert(run_until(test_base, &p2.fired, WAIT_MS));
    ck_assert_int_eq(p2.st, AQ_QUEUE_OK);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p1.calls, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 3);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    ck_assert(!aq_queue_remove(q, &b.qi));
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* ---- get ---- */

START_TEST(get_with_item_ready_returns_ok_and_never_calls_back)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.got_now, &a.qi);
    assert_counts(q, 0, 0, 1);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(get_on_empty_queue_waits_and_receives_next_put_item)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    put_ok(q, &a, 0, 0);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.it, &a.qi);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_getters_are_served_in_arrival_order)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem items[3] = {{.id = 0}, {.id = 1}, {.id = 2}};
    struct tlog log = {.want = 3};
    struct twait g[3] = {
        {.id = 0, .log = &log},
        {.id = 1, .log = &log},
        {.id = 2, .log = &log},
    };
    int i;

    for (i = 0; i < 3; i++)
        ck_assert_int_eq(get_wait(q, &g[i]), AQ_QUEUE_WAITING);
    for (i = 0; i < 3; i++)
        put_ok(q, &items[i], 0, 0);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(log.ids[i], i);
        ck_assert_int_eq(g[i].calls, 1);
        ck_assert_int_eq(g[i].st, AQ_QUEUE_OK);
        ck_assert_ptr_eq(g[i].it, &items[i].qi);
        done_ok(q);
    }
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(new_get_does_not_overtake_waiting_getters)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait g1 = {.id = 1}, g2 = {.id = 2};

    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    put_ok(q, &a, 0, 0);
    /* a is g1's: its callback has not fired yet, so g2 queues behind */
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &g1.fired, WAIT_MS));
    ck_assert_ptr_eq(g1.it, &a.qi);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g2.calls, 0);
    put_ok(q, &b, 0, 0);
    ck_assert(run_until(test_base, &g2.fired, WAIT_MS));
    ck_assert_int_eq(g2.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g2.it, &b.qi);
    done_ok(q);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(cancelled_getter_does_not_lose_next_item_to_next_getter)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g1 = {.id = 1}, g2 = {.id = 2};

    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &g1.w);
    put_ok(q, &a, 0, 0);
    ck_assert(run_until(test_base, &g2.fired, WAIT_MS));
    ck_assert_int_eq(g2.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g2.it, &a.qi);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g1.calls, 0);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(cancelled_getter_leaves_next_item_queued_when_no_getter_waits)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &g.w);
    put_ok(q, &a, 0, 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(getter_cancelled_after_put_woke_it_passes_item_to_next_getter)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g1 = {.id = 1}, g2 = {.id = 2};

    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    put_ok(q, &a, 0, 0); /* g1's turn, its callback not fired yet */
    aq_queue_cancel(q, &g1.w);
    ck_assert(run_until(test_base, &g2.fired, WAIT_MS));
    ck_assert_int_eq(g2.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g2.it, &a.qi);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g1.calls, 0);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(getter_cancelled_after_put_woke_it_leaves_item_queued)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    put_ok(q, &a, 0, 0); /* g's turn, its callback not fired yet */
    aq_queue_cancel(q, &g.w);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* The broker once waited twice on one consumer's waiter (issue 11, defect
 * 5): linked twice, it was walked after the consumer was freed. The queue
 * now stops at the second wait. */
START_TEST(waiting_again_on_a_waiter_that_still_waits_aborts)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct twait g = {.id = 1};

    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    get_wait(q, &g); /* SIGABRT here */
    ck_abort_msg("a second wait on a waiting waiter went through");
}
END_TEST

/* A waiter that was cancelled, or whose callback fired, may wait again. */
START_TEST(waiter_waits_again_after_cancel_or_callback)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait w = {.id = 1};

    ck_assert_int_eq(get_wait(q, &w), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &w.w);
    ck_assert_int_eq(join_wait(q, &w), AQ_QUEUE_OK);
    ck_assert_int_eq(get_wait(q, &w), AQ_QUEUE_WAITING);
    put_ok(q, &a, 0, 0);
    ck_assert(run_until(test_base, &w.fired, WAIT_MS));
    w.fired = false;
    ck_assert_int_eq(put_wait(q, &w, &b, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &w.w);
    ck_assert_int_eq(join_wait(q, &w), AQ_QUEUE_WAITING);
    done_ok(q);
    ck_assert(run_until(test_base, &w.fired, WAIT_MS));
    ck_assert_int_eq(w.calls, 2);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(cancel_of_waiter_not_waiting_is_harmless)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4};
    struct twait never = {.id = 1}, at_once = {.id = 2}, fired = {.id = 3};
    struct twait cancelled = {.id = 4}, waiting = {.id = 5};

    ck_assert_int_eq(get_wait(q, &fired), AQ_QUEUE_WAITING);
    put_ok(q, &a, 0, 0);
    ck_assert(run_until(test_base, &fired.fired, WAIT_MS));
    ck_assert_int_eq(get_wait(q, &cancelled), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &cancelled.w);
    ck_assert_int_eq(get_wait(q, &waiting), AQ_QUEUE_WAITING);
    put_ok(q, &b, 0, 0);
    ck_assert(run_until(test_base, &waiting.fired, WAIT_MS));
    put_ok(q, &c, 0, 0);
    ck_assert_int_eq(get_wait(q, &at_once), AQ_QUEUE_OK);
    ck_assert_int_eq(get_wait(q, &waiting), AQ_QUEUE_WAITING);

    aq_queue_cancel(q, &never.w);
    aq_queue_cancel(q, &at_once.w);
    aq_queue_cancel(q, &fired.w);
    aq_queue_cancel(q, &cancelled.w);
    assert_counts(q, 0, 0, 3);

    /* the getter still waiting was not unlinked by those cancels */
    waiting.fired = false;
    put_ok(q, &d, 0, 0);
    ck_assert(run_until(test_base, &waiting.fired, WAIT_MS));
    ck_assert_int_eq(waiting.calls, 2);
    ck_assert_ptr_eq(waiting.it, &d.qi);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(never.calls, 0);
    ck_assert_int_eq(at_once.calls, 0);
    ck_assert_int_eq(fired.calls, 1);
    ck_assert_int_eq(cancelled.calls, 0);
    done_ok(q);
    done_ok(q);
    done_ok(q);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

/* ---- join / task_done ---- */

START_TEST(join_on_empty_queue_returns_ok_without_callback)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait j1 = {.id = 1}, j2 = {.id = 2};

    ck_assert_int_eq(join_wait(q, &j1), AQ_QUEUE_OK);
    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert_int_eq(join_wait(q, &j2), AQ_QUEUE_OK);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j1.calls, 0);
    ck_assert_int_eq(j2.calls, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(join_waits_until_every_item_is_task_done)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait j = {.id = 1};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(take_id(q), 2);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j.calls, 0);
    done_ok(q);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j.calls, 0);
    done_ok(q);
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    ck_assert_int_eq(j.calls, 1);
    ck_assert_int_eq(j.st, AQ_QUEUE_OK);
    ck_assert_ptr_null(j.it);
    aq_queue_free(q);
}
END_TEST

START_TEST(all_waiting_joiners_are_woken)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct tlog log = {.want = 3};
    struct twait j[3] = {
        {.id = 0, .log = &log},
        {.id = 1, .log = &log},
        {.id = 2, .log = &log},
    };
    int i;

    put_ok(q, &a, 0, 0);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(join_wait(q, &j[i]), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    run_for(test_base, QUIET_MS);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(j[i].calls, 1);
        ck_assert_int_eq(j[i].st, AQ_QUEUE_OK);
        ck_assert_ptr_null(j[i].it);
    }
    aq_queue_free(q);
}
END_TEST

START_TEST(cancelled_joiner_is_not_called)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait j1 = {.id = 1}, j2 = {.id = 2};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(join_wait(q, &j1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(join_wait(q, &j2), AQ_QUEUE_WAITING);
    aq_queue_cancel(q, &j1.w);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert(run_until(test_base, &j2.fired, WAIT_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j1.calls, 0);
    ck_assert_int_eq(j2.calls, 1);
    aq_queue_free(q);
}
END_TEST

START_TEST(task_done_with_nothing_taken_fails_with_error_and_keeps_counts)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct aq_error err = {0};

    ck_assert_int_eq(aq_queue_task_done(q, &err), -1);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_ne(err.message[0], '\0');
    assert_counts(q, 0, 0, 0);

    /* an item queued but not taken is not a taken item either */
    put_ok(q, &a, 0, 0);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(aq_queue_task_done(q, &err), -1);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_ne(err.message[0], '\0');
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(task_done_more_than_taken_fails_while_items_remain_queued)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct aq_error err = {0};
    struct twait j = {.id = 1};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    put_ok(q, &c, 0, FAR_US);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    done_ok(q);
    ck_assert_int_eq(aq_queue_task_done(q, &err), -1);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_ne(err.message[0], '\0');
    assert_counts(q, 1, 1, 2);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j.calls, 0);
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    assert_counts(q, 0, 1, 1);
    ck_assert(aq_queue_remove(q, &c.qi));
    done_ok(q);
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    aq_queue_free(q);
}
END_TEST

/* ---- order ---- */

#define ORDER_MAX 32

/* Items put back to back (item i with prio[i] and delay_us[i]) and the ids
 * get_nowait then hands out, once every delay short of FAR_US is due; an
 * item delayed FAR_US stays delayed, and nothing more is ready. */
struct order_case {
    const char *what;
    enum aq_queue_order order;
    int n;
    int32_t prio[ORDER_MAX];
    int64_t delay_us[ORDER_MAX]; /* 0: ready at once */
    int nwant;
    int want[ORDER_MAX];
};

static const struct order_case order_cases[] = {
    {.what = "by priority, fifo among equal",
     .order = AQ_QUEUE_PRIORITY,
     .n = 10,
     .prio = {3, 1, 2, 1, 3, 2, 1, 0, 2, 3},
     .nwant = 10,
     .want = {7, 1, 3, 6, 2, 5, 8, 0, 4, 9}},
    {.what = "lifo: by priority, lifo among equal",
     .order = AQ_QUEUE_LIFO,
     .n = 10,
     .prio = {3, 1, 2, 1, 3, 2, 1, 0, 2, 3},
     .nwant = 10,
     .want = {7, 6, 3, 1, 8, 5, 2, 9, 4, 0}},
    {.what = "extreme and negative priorities",
     .order = AQ_QUEUE_PRIORITY,
     .n = 10,
     .prio = {INT32_MAX, 0, INT32_MIN, -1, 1, INT32_MIN + 1, INT32_MAX - 1,
              INT32_MIN, -1, INT32_MAX},
     .nwant = 10,
     .want = {2, 7, 5, 3, 8, 1, 4, 6, 0, 9}},
    /* Many share a due microsecond: only the tie-break keeps put order. */
    {.what = "equal delays become ready in put order",
     .order = AQ_QUEUE_PRIORITY,
     .n = 32,
     .delay_us = {50000, 50000, 50000, 50000, 50000, 50000, 50000, 50000,
                  50000, 50000, 50000, 50000, 50000, 50000, 50000, 50000,
                  50000, 50000, 50000, 50000, 50000, 50000, 50000, 50000,
                  50000, 50000, 50000, 50000, 50000, 50000, 50000, 50000},
     .nwant = 32,
     .want = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
              16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}},
    {.what = "a delayed low priority does not jump ahead before due",
     .order = AQ_QUEUE_PRIORITY,
     .n = 3,
     .prio = {10, INT32_MIN, 10},
     .delay_us = {0, FAR_US, 0},
     .nwant = 2,
     .want = {0, 2}},
    {.what = "a due delayed item is ordered by priority among ready items",
     .order = AQ_QUEUE_PRIORITY,
     .n = 4,
     .prio = {10, 0, 20, 10},
     .delay_us = {0, 50000, 60000, 0},
     .nwant = 4,
     .want = {1, 0, 3, 2}},
};

START_TEST(items_leave_in_the_order_of_the_table)
{
    const struct order_case *oc = &order_cases[_i];
    struct aq_queue_opts opts = {.order = oc->order};
    struct aq_queue *q = aq_queue_new(test_base, &opts);
    struct titem items[ORDER_MAX];
    enum aq_queue_status st[ORDER_MAX];
    struct aq_queue_item *out = NULL;
    size_t far = 0;
    int i;

    /* No ck_assert while putting: in fork mode each one writes to a pipe,
     * which would spread the due times apart. */
    memset(items, 0, sizeof items);
    for (i = 0; i < oc->n; i++) {
        items[i].id = i;
        items[i].prio = oc->prio[i];
        far += oc->delay_us[i] == FAR_US;
    }
    for (i = 0; i < oc->n; i++)
        st[i] =
            aq_queue_put_nowait(q, &items[i].qi, oc->prio[i], oc->delay_us[i]);
    for (i = 0; i < oc->n; i++)
        ck_assert_msg(st[i] == AQ_QUEUE_OK, "%s: put of item %d failed",
                      oc->what, i);
    ck_assert_msg(run_until_delayed(test_base, q, far, WAIT_MS),
                  "%s: delays not due", oc->what);
    assert_counts(q, (size_t)oc->n - far, far, (size_t)oc->n);
    for (i = 0; i < oc->nwant; i++) {
        int id = take_id(q);

        ck_assert_msg(id == oc->want[i],
                      "%s: item %d left as number %d, want %d", oc->what, id, i,
                      oc->want[i]);
    }
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    assert_counts(q, 0, far, (size_t)oc->n);
    for (i = 0; i < oc->nwant; i++)
        done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* Ten thousand items with random priorities in [-1000, 1000] leave sorted,
 * and in put order (priority order) or reverse (lifo) among equals; the
 * loop index is the order. */
START_TEST(random_priorities_leave_sorted_in_the_queues_order)
{
    enum { N = 10000 };
    enum aq_queue_order order = _i == 0 ? AQ_QUEUE_PRIORITY : AQ_QUEUE_LIFO;
    struct aq_queue_opts opts = {.order = order};
    struct aq_queue *q = aq_queue_new(test_base, &opts);
    struct titem *items = calloc(N, sizeof *items);
    struct rng r = {2463534242u};
    struct titem *prev = NULL;
    int i;

    for (i = 0; i < N; i++) {
        items[i].id = i;
        put_ok(q, &items[i], (int32_t)rng_below(&r, 2001) - 1000, 0);
    }
    assert_counts(q, N, 0, N);
    for (i = 0; i < N; i++) {
        struct aq_queue_item *it = NULL;
        struct titem *t;

        ck_assert_int_eq(aq_queue_get_nowait(q, &it), AQ_QUEUE_OK);
        t = TITEM(it);
        if (prev != NULL) {
            ck_assert_int_le(prev->prio, t->prio);
            if (prev->prio == t->prio && order == AQ_QUEUE_PRIORITY)
                ck_assert_int_lt(prev->id, t->id);
            if (prev->prio == t->prio && order == AQ_QUEUE_LIFO)
                ck_assert_int_gt(prev->id, t->id);
        }
        prev = t;
        done_ok(q);
    }
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
    free(items);
}
END_TEST

/* ---- delayed items ---- */

START_TEST(delayed_item_is_counted_delayed_and_unfinished_not_ready)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};

    put_ok(q, &a, 0, FAR_US);
    assert_counts(q, 0, 1, 1);
    ck_assert(aq_queue_empty(q));
    put_ok(q, &b, 0, 0);
    assert_counts(q, 1, 1, 2);
    ck_assert(!aq_queue_empty(q));
    ck_assert_int_eq(take_id(q), 2);
    assert_counts(q, 0, 1, 2);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(get_nowait_returns_empty_before_delay_then_the_item)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct aq_queue_item *out = NULL;
    int64_t t0 = aq_clock_mono_us();

    put_ok(q, &a, 0, SHORT_US);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    ck_assert(run_until_delayed(test_base, q, 0, WAIT_MS));
    ck_assert_int_ge(aq_clock_mono_us() - t0, SHORT_US);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_get_receives_delayed_item_no_earlier_than_delay)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};
    int64_t t0 = aq_clock_mono_us();

    put_ok(q, &a, 0, SHORT_US);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.it, &a.qi);
    ck_assert_int_ge(g.fired_us - t0, SHORT_US);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(delayed_items_become_ready_in_due_order)
{
    static const int64_t delay_us[] = {150000, 50000, 100000};
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem items[3] = {{.id = 0}, {.id = 1}, {.id = 2}};
    struct tlog log = {.want = 3};
    struct twait g[3] = {
        {.id = 0, .log = &log},
        {.id = 1, .log = &log},
        {.id = 2, .log = &log},
    };
    int64_t t0 = aq_clock_mono_us();
    int i;

    for (i = 0; i < 3; i++)
        put_ok(q, &items[i], 0, delay_us[i]);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(get_wait(q, &g[i]), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_ptr_eq(g[0].it, &items[1].qi);
    ck_assert_ptr_eq(g[1].it, &items[2].qi);
    ck_assert_ptr_eq(g[2].it, &items[0].qi);
    ck_assert_int_ge(g[0].fired_us - t0, delay_us[1]);
    ck_assert_int_ge(g[1].fired_us - t0, delay_us[2]);
    ck_assert_int_ge(g[2].fired_us - t0, delay_us[0]);
    for (i = 0; i < 3; i++)
        done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(put_with_zero_or_negative_delay_is_ready_at_once)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p = {.id = 1};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, -SHORT_US);
    ck_assert_int_eq(put_wait(q, &p, &c, 0, INT64_MIN), AQ_QUEUE_OK);
    assert_counts(q, 3, 0, 3);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(take_id(q), 2);
    ck_assert_int_eq(take_id(q), 3);
    done_ok(q);
    done_ok(q);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* ---- remove ---- */

START_TEST(remove_ready_item_makes_it_callers_and_unfinished)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct aq_queue_item *out = NULL;
    struct aq_error err = {0};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    put_ok(q, &c, 0, 0);
    ck_assert(aq_queue_remove(q, &b.qi));
    assert_counts(q, 2, 0, 3);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(take_id(q), 3);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    /* b counts as taken: three task_done calls succeed, a fourth fails */
    done_ok(q);
    done_ok(q);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    ck_assert_int_eq(aq_queue_task_done(q, &err), -1);
    aq_queue_free(q);
}
END_TEST

START_TEST(remove_delayed_item_makes_it_callers_and_unfinished)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    put_ok(q, &a, 0, 20000);
    ck_assert(aq_queue_remove(q, &a.qi));
    assert_counts(q, 0, 0, 1);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    /* well past its due time: the removed item never reaches the getter */
    run_for(test_base, 150);
    ck_assert_int_eq(g.calls, 0);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_cancel(q, &g.w);
    aq_queue_free(q);
}
END_TEST

START_TEST(remove_of_item_not_queued_returns_false)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2}, never = {.id = 3};

    ck_assert(!aq_queue_remove(q, &never.qi));
    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    ck_assert(!aq_queue_remove(q, &never.qi));
    assert_counts(q, 2, 0, 2);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert(!aq_queue_remove(q, &a.qi)); /* taken */
    ck_assert(aq_queue_remove(q, &b.qi));
    ck_assert(!aq_queue_remove(q, &b.qi)); /* removed already */
    assert_counts(q, 0, 0, 2);
    done_ok(q);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* ---- requeue ---- */

START_TEST(requeue_puts_taken_item_back_without_counting_it_again)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct aq_error err = {0};

    put_ok(q, &a, 5, 0);
    put_ok(q, &b, 5, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 1, 0, &err), 0);
    assert_counts(q, 2, 0, 2);
    /* a is queued again, not taken: nothing to task_done */
    ck_assert_int_eq(aq_queue_task_done(q, &err), -1);
    ck_assert_int_eq(take_id(q), 1); /* its new priority 1 beats b's 5 */
    ck_assert_int_eq(take_id(q), 2);
    done_ok(q);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(requeue_with_delay_makes_taken_item_delayed)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};
    struct aq_error err = {0};
    int64_t t0;

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    t0 = aq_clock_mono_us();
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, SHORT_US, &err), 0);
    assert_counts(q, 0, 1, 1);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.it, &a.qi);
    ck_assert_int_ge(g.fired_us - t0, SHORT_US);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(requeue_works_on_full_queue)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct aq_error err = {0};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert(aq_queue_full(q));
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, 0, &err), 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, 0, 0), AQ_QUEUE_FULL);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, FAR_US, &err), 0);
    assert_counts(q, 0, 1, 1);
    ck_assert(aq_queue_remove(q, &a.qi));
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(requeue_works_after_shutdown)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct aq_queue_item *out = NULL;
    struct aq_error err = {0};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    aq_queue_shutdown(q, false);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_SHUTDOWN);
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, 0, &err), 0);
    assert_counts(q, 1, 0, 1);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_SHUTDOWN);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(requeue_with_nothing_taken_fails_with_error)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct aq_error err = {0};

    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, 0, &err), -1);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_ne(err.message[0], '\0');
    assert_counts(q, 0, 0, 0);
    put_ok(q, &a, 0, 0);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(aq_queue_requeue(q, &b.qi, 0, 0, &err), -1);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_ne(err.message[0], '\0');
    assert_counts(q, 1, 0, 1);
    ck_assert(!aq_queue_remove(q, &b.qi));
    aq_queue_free(q);
}
END_TEST

START_TEST(requeue_wakes_waiting_getter)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};
    struct aq_error err = {0};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    ck_assert_int_eq(aq_queue_requeue(q, &a.qi, 0, 0, &err), 0);
    ck_assert(!g.fired);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.it, &a.qi);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

/* ---- shutdown ---- */

START_TEST(put_and_put_nowait_after_shutdown_return_shutdown)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};

    ck_assert(!aq_queue_is_shutdown(q));
    aq_queue_shutdown(q, false);
    ck_assert(aq_queue_is_shutdown(q));
    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 0, 0), AQ_QUEUE_SHUTDOWN);
    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 0, FAR_US),
                     AQ_QUEUE_SHUTDOWN);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_SHUTDOWN);
    assert_counts(q, 0, 0, 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    ck_assert(!aq_queue_remove(q, &a.qi));
    ck_assert(!aq_queue_remove(q, &b.qi));
    aq_queue_free(q);
}
END_TEST

START_TEST(put_nowait_on_full_shut_down_queue_returns_shutdown)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};

    put_ok(q, &a, 0, 0);
    aq_queue_shutdown(q, false);
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, 0, 0), AQ_QUEUE_SHUTDOWN);
    assert_counts(q, 1, 0, 1);
    aq_queue_free(q);
}
END_TEST

START_TEST(shutdown_hands_waiting_putters_their_items_back)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct tlog log = {.want = 2};
    struct twait p1 = {.id = 1, .log = &log}, p2 = {.id = 2, .log = &log};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p1, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(put_wait(q, &p2, &c, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_int_eq(p1.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_eq(p1.it, &b.qi);
    ck_assert_int_eq(p2.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_eq(p2.it, &c.qi);
    assert_counts(q, 1, 0, 1);
    ck_assert(!aq_queue_remove(q, &b.qi));
    ck_assert(!aq_queue_remove(q, &c.qi));
    /* freeing room now queues nothing of theirs */
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p1.calls, 1);
    ck_assert_int_eq(p2.calls, 1);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(remaining_items_can_be_got_after_shutdown_then_gets_fail)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait g1 = {.id = 1}, g2 = {.id = 2};
    struct aq_queue_item *out = NULL;

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    aq_queue_shutdown(q, false);
    assert_counts(q, 2, 0, 2);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_OK);
    ck_assert_ptr_eq(g1.got_now, &b.qi);
    /* nothing left (b is taken, not done): gets now fail */
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_SHUTDOWN);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_SHUTDOWN);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g1.calls, 0);
    ck_assert_int_eq(g2.calls, 0);
    done_ok(q);
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(shutdown_wakes_getters_waiting_on_empty_queue)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct tlog log = {.want = 2};
    struct twait g1 = {.id = 1, .log = &log}, g2 = {.id = 2, .log = &log};

    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_int_eq(g1.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g1.it);
    ck_assert_int_eq(g2.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g2.it);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g1.calls, 1);
    ck_assert_int_eq(g2.calls, 1);
    aq_queue_free(q);
}
END_TEST

START_TEST(shutdown_leaves_getter_waiting_for_remaining_delayed_item)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem d = {.id = 1};
    struct twait g = {.id = 1};
    struct aq_queue_item *out = NULL;
    int64_t t0 = aq_clock_mono_us();

    put_ok(q, &d, 0, 200000);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    /* something is left: not SHUTDOWN yet, just nothing ready */
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_EMPTY);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g.it, &d.qi);
    ck_assert_int_ge(g.fired_us - t0, 200000);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_SHUTDOWN);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(getter_left_waiting_after_shutdown_fails_once_last_item_is_taken)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem d = {.id = 1};
    struct tlog log = {.want = 2};
    struct twait g1 = {.id = 1, .log = &log}, g2 = {.id = 2, .log = &log};

    put_ok(q, &d, 0, SHORT_US);
    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_int_eq(log.ids[0], 1);
    ck_assert_int_eq(g1.st, AQ_QUEUE_OK);
    ck_assert_ptr_eq(g1.it, &d.qi);
    ck_assert_int_eq(g2.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g2.it);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(getter_left_waiting_after_shutdown_fails_once_last_item_is_removed)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem d = {.id = 1};
    struct twait g = {.id = 1};

    put_ok(q, &d, 0, FAR_US);
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(g.calls, 0);
    ck_assert(aq_queue_remove(q, &d.qi));
    ck_assert(!g.fired);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_int_eq(g.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g.it);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(immediate_shutdown_drops_every_queued_item_and_wakes_joiners)
{
    struct dropped d = {0};
    struct aq_queue *q = queue_new_dropping(test_base, 0, &d);
    struct titem items[5] = {
        {.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}, {.id = 4},
    };
    struct twait j = {.id = 1};
    struct aq_queue_item *out = NULL;

    put_ok(q, &items[0], 0, 0);
    put_ok(q, &items[1], -5, 0);
    put_ok(q, &items[2], 7, 0);
    put_ok(q, &items[3], 0, FAR_US);
    put_ok(q, &items[4], 0, SHORT_US);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, true);
    ck_assert(aq_queue_is_shutdown(q));
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    ck_assert_int_eq(j.st, AQ_QUEUE_OK);
    ck_assert_int_eq(d.n, 5);
    ck_assert_uint_eq(d.mask, 0x1f);
    assert_counts(q, 0, 0, 0);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_SHUTDOWN);
    /* the delayed items' timer is gone too: nothing comes back later */
    run_for(test_base, 150);
    assert_counts(q, 0, 0, 0);
    ck_assert_int_eq(d.n, 5);
    aq_queue_free(q);
    ck_assert_int_eq(d.n, 5);
}
END_TEST

START_TEST(immediate_shutdown_wakes_getters_with_shutdown)
{
    struct dropped d = {0};
    struct aq_queue *q = queue_new_dropping(test_base, 0, &d);
    struct titem a = {.id = 1};
    struct tlog log = {.want = 2};
    struct twait g1 = {.id = 1, .log = &log}, g2 = {.id = 2, .log = &log};

    put_ok(q, &a, 0, FAR_US);
    ck_assert_int_eq(get_wait(q, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q, &g2), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, true);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_int_eq(g1.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g1.it);
    ck_assert_int_eq(g2.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g2.it);
    ck_assert_int_eq(d.n, 1);
    ck_assert_uint_eq(d.mask, 1u << 1);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(immediate_shutdown_leaves_taken_items_unfinished)
{
    struct dropped d = {0};
    struct aq_queue *q = queue_new_dropping(test_base, 0, &d);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait j = {.id = 1};

    put_ok(q, &a, 0, 0);
    put_ok(q, &b, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, true);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(j.calls, 0);
    ck_assert_int_eq(d.n, 1);
    ck_assert_uint_eq(d.mask, 1u << 2);
    assert_counts(q, 0, 0, 1);
    done_ok(q);
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    ck_assert_int_eq(j.st, AQ_QUEUE_OK);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

/* ---- free ---- */

START_TEST(free_hands_queued_items_to_drop_cb)
{
    struct dropped d = {.free_items = true};
    struct aq_queue *q = queue_new_dropping(test_base, 0, &d);
    struct titem *items[6];
    struct aq_queue_item *out = NULL;
    int i;

    for (i = 0; i < 6; i++) {
        items[i] = calloc(1, sizeof *items[i]);
        items[i]->id = i;
    }
    put_ok(q, items[0], 0, 0);
    put_ok(q, items[1], 3, 0);
    put_ok(q, items[2], -3, 0);
    put_ok(q, items[3], 0, FAR_US);
    put_ok(q, items[4], 1, SHORT_US);
    put_ok(q, items[5], 9, 0);
    ck_assert_int_eq(aq_queue_get_nowait(q, &out), AQ_QUEUE_OK);
    ck_assert_ptr_eq(out, &items[2]->qi); /* taken: stays the test's */
    ck_assert_int_eq(d.n, 0);
    aq_queue_free(q);
    ck_assert_int_eq(d.n, 5);
    ck_assert_uint_eq(d.mask, 0x3fu & ~(1u << 2));
    free(items[2]);
}
END_TEST

START_TEST(free_of_empty_queue_drops_nothing_and_free_of_null_is_harmless)
{
    struct dropped d = {0};
    struct aq_queue *q = queue_new_dropping(test_base, 0, &d);
    struct titem a = {.id = 1};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    aq_queue_free(q);
    ck_assert_int_eq(d.n, 0);
    aq_queue_free(NULL);
    ck_assert_int_eq(d.n, 0);
}
END_TEST

START_TEST(free_forgets_waiters_without_calling_them)
{
    struct dropped d1 = {0}, d2 = {0};
    struct aq_queue *q1 = queue_new_dropping(test_base, 1, &d1);
    struct aq_queue *q2 = queue_new_dropping(test_base, 0, &d2);
    struct titem a = {.id = 1}, b = {.id = 2}, x = {.id = 3};
    struct twait p = {.id = 1}, j = {.id = 2}, g1 = {.id = 3}, g2 = {.id = 4};

    /* q1: full, with a waiting putter and joiner */
    put_ok(q1, &a, 0, 0);
    ck_assert_int_eq(put_wait(q1, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(join_wait(q1, &j), AQ_QUEUE_WAITING);
    /* q2: a getter woken by a put whose callback has not fired yet */
    ck_assert_int_eq(get_wait(q2, &g1), AQ_QUEUE_WAITING);
    ck_assert_int_eq(get_wait(q2, &g2), AQ_QUEUE_WAITING);
    put_ok(q2, &x, 0, 0);
    aq_queue_free(q1);
    aq_queue_free(q2);
    ck_assert_int_eq(d1.n, 1);
    ck_assert_uint_eq(d1.mask, 1u << 1); /* b was never queued */
    ck_assert_int_le(d2.n, 1);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    ck_assert_int_eq(j.calls, 0);
    ck_assert_int_eq(g1.calls, 0);
    ck_assert_int_eq(g2.calls, 0);
}
END_TEST

/* ---- maxsize ---- */

START_TEST(raising_maxsize_lets_waiting_putters_proceed)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p1 = {.id = 1}, p2 = {.id = 2};
    int i;

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p1, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(put_wait(q, &p2, &c, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_set_maxsize(q, 2);
    ck_assert_uint_eq(aq_queue_maxsize(q), 2);
    ck_assert(run_until(test_base, &p1.fired, WAIT_MS));
    ck_assert_int_eq(p1.st, AQ_QUEUE_OK);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p2.calls, 0);
    ck_assert(aq_queue_full(q));
    aq_queue_set_maxsize(q, 3);
    ck_assert(run_until(test_base, &p2.fired, WAIT_MS));
    ck_assert_int_eq(p2.st, AQ_QUEUE_OK);
    assert_counts(q, 3, 0, 3);
    for (i = 1; i <= 3; i++) {
        ck_assert_int_eq(take_id(q), i);
        done_ok(q);
    }
    aq_queue_free(q);
}
END_TEST

START_TEST(maxsize_zero_means_unbounded)
{
    enum { N = 1000 };
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem *items = calloc(N, sizeof *items);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};
    int i;

    ck_assert_uint_eq(aq_queue_maxsize(q), 0);
    for (i = 0; i < N; i++)
        put_ok(q, &items[i], i % 7, i % 3 == 0 ? FAR_US : 0);
    ck_assert(!aq_queue_full(q));
    ck_assert_uint_eq(aq_queue_unfinished(q), N);
    aq_queue_free(q);

    /* lowering a bound to 0 lifts it: the waiting putter goes on */
    q = queue_new(test_base, 1);
    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_set_maxsize(q, 0);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    ck_assert(!aq_queue_full(q));
    ck_assert_uint_eq(aq_queue_maxsize(q), 0);
    assert_counts(q, 2, 0, 2);
    aq_queue_free(q);
    free(items);
}
END_TEST

/* Items held elsewhere (other nodes) count toward maxsize: puts are full
 * while both reach it, and a waiting putter goes on once they drop. */
START_TEST(outside_items_count_toward_maxsize)
{
    struct aq_queue *q = queue_new(test_base, 2);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait p = {.id = 1};

    put_ok(q, &a, 0, 0);
    aq_queue_set_outside(q, 1);
    ck_assert_uint_eq(aq_queue_outside(q), 1);
    ck_assert(aq_queue_full(q));
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, 0, 0), AQ_QUEUE_FULL);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_set_outside(q, 2);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(p.calls, 0);
    aq_queue_set_outside(q, 0);
    ck_assert(run_until(test_base, &p.fired, WAIT_MS));
    ck_assert_int_eq(p.st, AQ_QUEUE_OK);
    assert_counts(q, 2, 0, 2); /* its own only */
    ck_assert(aq_queue_full(q));
    aq_queue_free(q);
}
END_TEST

/* ---- accessors ---- */

START_TEST(accessors_track_each_step_of_a_scenario)
{
    struct aq_queue *q = queue_new(test_base, 2);
    struct titem a = {.id = 1}, b = {.id = 2};

    assert_counts(q, 0, 0, 0);
    ck_assert_uint_eq(aq_queue_maxsize(q), 2);
    ck_assert(aq_queue_empty(q));
    ck_assert(!aq_queue_full(q));
    ck_assert(!aq_queue_is_shutdown(q));

    put_ok(q, &a, 0, 0);
    assert_counts(q, 1, 0, 1);
    ck_assert(!aq_queue_empty(q));
    ck_assert(!aq_queue_full(q));

    put_ok(q, &b, 0, FAR_US);
    assert_counts(q, 1, 1, 2);
    ck_assert(!aq_queue_empty(q));
    ck_assert(aq_queue_full(q));

    ck_assert_int_eq(take_id(q), 1);
    assert_counts(q, 0, 1, 2);
    ck_assert(aq_queue_empty(q));
    ck_assert(aq_queue_full(q));

    done_ok(q);
    assert_counts(q, 0, 1, 1);
    ck_assert(!aq_queue_full(q));

    aq_queue_set_maxsize(q, 1);
    ck_assert_uint_eq(aq_queue_maxsize(q), 1);
    ck_assert(aq_queue_full(q));

    aq_queue_shutdown(q, false);
    ck_assert(aq_queue_is_shutdown(q));
    assert_counts(q, 0, 1, 1);

    ck_assert(aq_queue_remove(q, &b.qi));
    assert_counts(q, 0, 0, 1);
    ck_assert(aq_queue_empty(q));
    done_ok(q);
    assert_counts(q, 0, 0, 0);
    ck_assert(!aq_queue_full(q));
    ck_assert(aq_queue_is_shutdown(q));
    aq_queue_free(q);
}
END_TEST

/* ---- callbacks run from the loop ---- */

START_TEST(waiting_get_callback_never_fires_inside_put_nowait)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait g = {.id = 1};

    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 0, 0), AQ_QUEUE_OK);
    ck_assert(!g.fired);
    ck_assert(run_until(test_base, &g.fired, WAIT_MS));
    ck_assert_ptr_eq(g.it, &a.qi);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(waiting_put_callback_never_fires_inside_task_done_or_set_maxsize)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct twait p1 = {.id = 1}, p2 = {.id = 2};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(put_wait(q, &p1, &b, 0, 0), AQ_QUEUE_WAITING);
    ck_assert_int_eq(take_id(q), 1);
    done_ok(q);
    ck_assert(!p1.fired);
    ck_assert(run_until(test_base, &p1.fired, WAIT_MS));
    ck_assert_int_eq(put_wait(q, &p2, &c, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_set_maxsize(q, 2);
    ck_assert(!p2.fired);
    ck_assert(run_until(test_base, &p2.fired, WAIT_MS));
    assert_counts(q, 2, 0, 2);
    aq_queue_free(q);
}
END_TEST

START_TEST(join_callback_never_fires_inside_task_done)
{
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem a = {.id = 1};
    struct twait j = {.id = 1};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    done_ok(q);
    ck_assert(!j.fired);
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    aq_queue_free(q);
}
END_TEST

START_TEST(shutdown_callbacks_never_fire_inside_shutdown)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct tlog log = {.want = 2};
    struct twait g = {.id = 1, .log = &log}, p = {.id = 2, .log = &log};

    put_ok(q, &a, 0, 0);
    ck_assert_int_eq(take_id(q), 1); /* empty, but full: a is taken */
    ck_assert_int_eq(get_wait(q, &g), AQ_QUEUE_WAITING);
    ck_assert_int_eq(put_wait(q, &p, &b, 0, 0), AQ_QUEUE_WAITING);
    aq_queue_shutdown(q, false);
    ck_assert(!g.fired);
    ck_assert(!p.fired);
    ck_assert(run_until(test_base, &log.done, WAIT_MS));
    ck_assert_int_eq(g.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_null(g.it);
    ck_assert_int_eq(p.st, AQ_QUEUE_SHUTDOWN);
    ck_assert_ptr_eq(p.it, &b.qi);
    done_ok(q);
    aq_queue_free(q);
}
END_TEST

START_TEST(getter_callback_may_task_done_and_get_again)
{
    enum { N = 6 };
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem items[N];
    int order[N];
    struct pump c = {.q = q, .items = items, .n = N, .order = order};
    struct twait j = {.id = 1};
    int i;

    memset(items, 0, sizeof items);
    for (i = 0; i < N; i++)
        items[i].id = i;
    consumer_pump(&c); /* empty: waits */
    ck_assert_int_eq(c.got, 0);
    for (i = 0; i < N - 1; i++)
        put_ok(q, &items[i], 0, 0);
    ck_assert_int_eq(join_wait(q, &j), AQ_QUEUE_WAITING);
    ck_assert(run_until(test_base, &j.fired, WAIT_MS));
    ck_assert_int_eq(c.got, N - 1);
    for (i = 0; i < N - 1; i++)
        ck_assert_int_eq(order[i], i);
    assert_counts(q, 0, 0, 0);
    /* the consumer got again from its callback: it still waits */
    put_ok(q, &items[N - 1], 0, 0);
    ck_assert(run_until(test_base, &c.done, WAIT_MS));
    ck_assert_int_eq(order[N - 1], N - 1);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

START_TEST(putter_callback_may_put_again)
{
    enum { N = 4 };
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem items[N];
    int order[N];
    struct pump p = {.q = q, .items = items, .n = N, .order = order};
    int i;

    memset(items, 0, sizeof items);
    for (i = 0; i < N; i++)
        items[i].id = i;
    producer_pump(&p);
    ck_assert_int_eq(p.next, 1); /* one queued, the second waits */
    consumer_pump(&p);
    ck_assert_int_eq(p.got, 1);
    ck_assert(run_until(test_base, &p.done, WAIT_MS));
    ck_assert_int_eq(p.next, N);
    for (i = 0; i < N; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_uint_le(p.max_unfinished, 1);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
}
END_TEST

/* ---- stress ---- */

START_TEST(hundred_thousand_put_get_task_done_end_with_nothing_unfinished)
{
    enum { N = 100000, PRIOS = 16 };
    struct aq_queue *q = queue_new(test_base, 0);
    struct titem *items = calloc(N, sizeof *items);
    bool *seen = calloc(N, sizeof *seen);
    int last_id[PRIOS];
    struct rng r = {88172645u};
    int next = 0, got = 0, i;

    for (i = 0; i < PRIOS; i++)
        last_id[i] = -1;
    while (got < N) {
        int nput = 1 + (int)rng_below(&r, 64);
        int nget = 1 + (int)rng_below(&r, 64);
        int32_t last_prio = INT32_MIN;

        for (i = 0; i < nput && next < N; i++, next++) {
            items[next].id = next;
            put_ok(q, &items[next], (int32_t)rng_below(&r, PRIOS) - PRIOS / 2,
                   0);
        }
        /* between puts, gets come out sorted; equal priorities in put
         * order over the whole run */
        for (i = 0; i < nget; i++) {
            struct aq_queue_item *it = NULL;
            enum aq_queue_status st = aq_queue_get_nowait(q, &it);
            struct titem *t;

            if (st == AQ_QUEUE_EMPTY)
                break;
            ck_assert_int_eq(st, AQ_QUEUE_OK);
            t = TITEM(it);
            ck_assert(!seen[t->id]);
            seen[t->id] = true;
            ck_assert_int_ge(t->prio, last_prio);
            last_prio = t->prio;
            ck_assert_int_gt(t->id, last_id[t->prio + PRIOS / 2]);
            last_id[t->prio + PRIOS / 2] = t->id;
            got++;
            done_ok(q);
        }
        ck_assert_uint_eq(aq_queue_qsize(q), (size_t)(next - got));
        ck_assert_uint_eq(aq_queue_unfinished(q), (size_t)(next - got));
    }
    assert_counts(q, 0, 0, 0);
    ck_assert(aq_queue_empty(q));
    aq_queue_free(q);
    free(seen);
    free(items);
}
END_TEST

START_TEST(producer_and_consumer_waiters_move_twenty_thousand_items)
{
    enum { N = 20000, MAXSIZE = 8 };
    struct aq_queue *q = queue_new(test_base, MAXSIZE);
    struct titem *items = calloc(N, sizeof *items);
    bool *seen = calloc(N, sizeof *seen);
    struct pump p = {.q = q, .items = items, .n = N, .seen = seen};
    struct rng r = {1u};
    int i;

    for (i = 0; i < N; i++) {
        items[i].id = i;
        items[i].prio = (int32_t)rng_below(&r, 5) - 2;
    }
    producer_pump(&p);
    ck_assert_int_eq(p.next, MAXSIZE);
    consumer_pump(&p);
    ck_assert(run_until(test_base, &p.done, 30000));
    ck_assert_int_eq(p.next, N);
    ck_assert_int_eq(p.got, N);
    ck_assert_uint_le(p.max_unfinished, MAXSIZE);
    assert_counts(q, 0, 0, 0);
    aq_queue_free(q);
    free(seen);
    free(items);
}
END_TEST

/* The oldest ready item is found whatever the priorities put at the head,
 * in either order, without a scan; none ready is 0. */
START_TEST(oldest_ready_age_is_the_item_ready_longest_not_the_head)
{
    struct aq_queue_opts opts = {.order = _i == 0 ? AQ_QUEUE_PRIORITY
                                                  : AQ_QUEUE_LIFO};
    struct aq_queue *q = aq_queue_new(test_base, &opts);
    struct titem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    struct aq_queue_item *got;

    ck_assert_int_eq(aq_queue_oldest_ready_us(q), 0);
    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 5, 0), AQ_QUEUE_OK);
    ck_assert_int_eq(aq_queue_put_nowait(q, &c.qi, 0, FAR_US), AQ_QUEUE_OK);
    run_for(test_base, 100);
    ck_assert_int_eq(aq_queue_put_nowait(q, &b.qi, -5, 0), AQ_QUEUE_OK);
    /* b is the head; a, ready 100 ms ago, is the oldest (16 ms ticks) */
    ck_assert_int_ge(aq_queue_oldest_ready_us(q), 80000);
    ck_assert_int_lt(aq_queue_oldest_ready_us(q), 5000000);
    ck_assert_int_eq(aq_queue_get_nowait(q, &got), AQ_QUEUE_OK);
    ck_assert_int_eq(item_id(got), 2);
    ck_assert_int_ge(aq_queue_oldest_ready_us(q), 80000);
    ck_assert_int_eq(aq_queue_get_nowait(q, &got), AQ_QUEUE_OK);
    ck_assert_int_eq(item_id(got), 1);
    /* only a delayed item left */
    ck_assert_int_eq(aq_queue_oldest_ready_us(q), 0);
    ck_assert(aq_queue_remove(q, &c.qi));
    aq_queue_free(q);
}
END_TEST

/* Each put waiting for room counts until it gets in. */
START_TEST(putters_counts_puts_waiting_for_room)
{
    struct aq_queue *q = queue_new(test_base, 1);
    struct titem a = {.id = 1}, b = {.id = 2};
    struct twait w = {.id = 2};
    struct aq_queue_item *got;

    ck_assert_int_eq(aq_queue_put_nowait(q, &a.qi, 0, 0), AQ_QUEUE_OK);
    ck_assert_uint_eq(aq_queue_putters(q), 0);
    ck_assert_int_eq(aq_queue_put(q, &w.w, &b.qi, 0, 0, record_cb, &w),
                     AQ_QUEUE_WAITING);
    ck_assert_uint_eq(aq_queue_putters(q), 1);
    ck_assert_int_eq(aq_queue_get_nowait(q, &got), AQ_QUEUE_OK);
    ck_assert_int_eq(aq_queue_task_done(q, NULL), 0);
    ck_assert(run_until(test_base, &w.fired, 1000));
    ck_assert_uint_eq(aq_queue_putters(q), 0);
    aq_queue_free(q);
}
END_TEST

Suite *
queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc;

    tc = test_tcase_with_base("nowait");
    tcase_add_test(tc, put_nowait_then_get_nowait_returns_the_item);
    tcase_add_test(tc, get_nowait_on_empty_queue_returns_empty);
    tcase_add_test(tc,
                   put_nowait_on_full_queue_returns_full_and_keeps_item_out);
    tcase_add_test(tc, maxsize_counts_ready_delayed_and_taken_items);
    tcase_add_test(tc, taking_an_item_frees_no_room_but_task_done_does);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("put");
    tcase_add_test(tc, put_with_room_returns_ok_and_never_calls_back);
    tcase_add_test(tc, put_on_full_queue_waits_until_task_done_frees_room);
    tcase_add_test(tc, waiting_putters_are_served_in_arrival_order);
    tcase_add_test(tc, woken_putter_whose_item_no_longer_fits_waits_again);
    tcase_add_test(tc, new_put_does_not_overtake_waiting_putters);
    tcase_add_test(tc, waiting_put_queues_item_with_its_priority);
    tcase_add_test(tc, waiting_put_with_delay_is_delayed_once_queued);
    tcase_add_test(tc, cancelled_putter_item_is_not_queued_and_stays_callers);
    tcase_add_test(tc,
                   putter_cancelled_after_room_freed_does_not_queue_its_item);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("get");
    tcase_add_test(tc, get_with_item_ready_returns_ok_and_never_calls_back);
    tcase_add_test(tc, get_on_empty_queue_waits_and_receives_next_put_item);
    tcase_add_test(tc, waiting_getters_are_served_in_arrival_order);
    tcase_add_test(tc, new_get_does_not_overtake_waiting_getters);
    tcase_add_test(tc, cancelled_getter_does_not_lose_next_item_to_next_getter);
    tcase_add_test(
        tc, cancelled_getter_leaves_next_item_queued_when_no_getter_waits);
    tcase_add_test(
        tc, getter_cancelled_after_put_woke_it_passes_item_to_next_getter);
    tcase_add_test(tc, getter_cancelled_after_put_woke_it_leaves_item_queued);
    tcase_add_test(tc, cancel_of_waiter_not_waiting_is_harmless);
    tcase_add_test(tc, waiter_waits_again_after_cancel_or_callback);
    /* An abort is caught only in a forked test: not with CK_FORK=no, as
     * the valgrind run has it. */
    if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0)
        tcase_add_test_raise_signal(
            tc, waiting_again_on_a_waiter_that_still_waits_aborts, SIGABRT);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("join");
    tcase_add_test(tc, join_on_empty_queue_returns_ok_without_callback);
    tcase_add_test(tc, join_waits_until_every_item_is_task_done);
    tcase_add_test(tc, all_waiting_joiners_are_woken);
    tcase_add_test(tc, cancelled_joiner_is_not_called);
    tcase_add_test(
        tc, task_done_with_nothing_taken_fails_with_error_and_keeps_counts);
    tcase_add_test(tc,
                   task_done_more_than_taken_fails_while_items_remain_queued);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("order");
    tcase_add_loop_test(tc, items_leave_in_the_order_of_the_table, 0,
                        (int)(sizeof order_cases / sizeof order_cases[0]));
    tcase_add_loop_test(tc, random_priorities_leave_sorted_in_the_queues_order,
                        0, 2);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("delay");
    tcase_add_test(tc,
                   delayed_item_is_counted_delayed_and_unfinished_not_ready);
    tcase_add_test(tc, get_nowait_returns_empty_before_delay_then_the_item);
    tcase_add_test(tc, waiting_get_receives_delayed_item_no_earlier_than_delay);
    tcase_add_test(tc, delayed_items_become_ready_in_due_order);
    tcase_add_test(tc, put_with_zero_or_negative_delay_is_ready_at_once);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("remove");
    tcase_add_test(tc, remove_ready_item_makes_it_callers_and_unfinished);
    tcase_add_test(tc, remove_delayed_item_makes_it_callers_and_unfinished);
    tcase_add_test(tc, remove_of_item_not_queued_returns_false);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("requeue");
    tcase_add_test(tc, requeue_puts_taken_item_back_without_counting_it_again);
    tcase_add_test(tc, requeue_with_delay_makes_taken_item_delayed);
    tcase_add_test(tc, requeue_works_on_full_queue);
    tcase_add_test(tc, requeue_works_after_shutdown);
    tcase_add_test(tc, requeue_with_nothing_taken_fails_with_error);
    tcase_add_test(tc, requeue_wakes_waiting_getter);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("shutdown");
    tcase_add_test(tc, put_and_put_nowait_after_shutdown_return_shutdown);
    tcase_add_test(tc, put_nowait_on_full_shut_down_queue_returns_shutdown);
    tcase_add_test(tc, shutdown_hands_waiting_putters_their_items_back);
    tcase_add_test(tc,
                   remaining_items_can_be_got_after_shutdown_then_gets_fail);
    tcase_add_test(tc, shutdown_wakes_getters_waiting_on_empty_queue);
    tcase_add_test(tc,
                   shutdown_leaves_getter_waiting_for_remaining_delayed_item);
    tcase_add_test(
        tc, getter_left_waiting_after_shutdown_fails_once_last_item_is_taken);
    tcase_add_test(
        tc, getter_left_waiting_after_shutdown_fails_once_last_item_is_removed);
    tcase_add_test(
        tc, immediate_shutdown_drops_every_queued_item_and_wakes_joiners);
    tcase_add_test(tc, immediate_shutdown_wakes_getters_with_shutdown);
    tcase_add_test(tc, immediate_shutdown_leaves_taken_items_unfinished);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("free");
    tcase_add_test(tc, free_hands_queued_items_to_drop_cb);
    tcase_add_test(
        tc, free_of_empty_queue_drops_nothing_and_free_of_null_is_harmless);
    tcase_add_test(tc, free_forgets_waiters_without_calling_them);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("maxsize");
    tcase_add_test(tc, raising_maxsize_lets_waiting_putters_proceed);
    tcase_add_test(tc, maxsize_zero_means_unbounded);
    tcase_add_test(tc, outside_items_count_toward_maxsize);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("accessors");
    tcase_add_test(tc, accessors_track_each_step_of_a_scenario);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("callbacks");
    tcase_add_test(tc, waiting_get_callback_never_fires_inside_put_nowait);
    tcase_add_test(
        tc, waiting_put_callback_never_fires_inside_task_done_or_set_maxsize);
    tcase_add_test(tc, join_callback_never_fires_inside_task_done);
    tcase_add_test(tc, shutdown_callbacks_never_fire_inside_shutdown);
    tcase_add_test(tc, getter_callback_may_task_done_and_get_again);
    tcase_add_test(tc, putter_callback_may_put_again);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("stress");
    tcase_set_timeout(tc, 30);
    tcase_add_test(
        tc, hundred_thousand_put_get_task_done_end_with_nothing_unfinished);
    tcase_add_test(tc,
                   producer_and_consumer_waiters_move_twenty_thousand_items);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("ages");
    tcase_add_loop_test(
        tc, oldest_ready_age_is_the_item_ready_longest_not_the_head, 0, 2);
    tcase_add_test(tc, putters_counts_puts_waiting_for_room);
    suite_add_tcase(s, tc);
    return s;
}
