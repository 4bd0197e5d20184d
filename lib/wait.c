/* SPDX-License-Identifier: MIT */
/*
 * lib/wait.c: gather, wait(FIRST_COMPLETED) and as_completed over tasks.
 * A wait is a done-callback on each of its tasks plus an optional timer.
 * Once over (final event fired), it has withdrawn every callback, so no
 * event can follow; the user may free it inside the final callback, which
 * is why the code never touches w after calling out if it was freed.
 */
#include "wait.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "task.h"
#include "xmalloc.h"

struct aq_wait {
    struct aq_task **tasks; /* owned array; one reference per entry */
    size_t n, unfinished;
    enum aq_wait_mode mode;
    bool cancel_on_timeout, is_over;
    aq_wait_cb *cb;
    void *arg;
    struct event *timeout_ev; /* owned; NULL without a timeout */
    struct event *empty_ev;   /* owned; NULL unless n == 0 */
    bool *freed;              /* set by aq_wait_free while calling out */
};

static void task_done_cb(struct aq_task *t, void *arg);

/* Withdraws the done-callbacks still registered: after this no event. */
static void
wait_end(struct aq_wait *w)
{
    w->is_over = true;
    for (size_t i = 0; i < w->n; i++)
        aq_task_remove_done_cb(w->tasks[i], task_done_cb, w);
    if (w->timeout_ev != NULL)
        evtimer_del(w->timeout_ev);
}

/* Calls the user back; returns false if the callback freed w. */
static bool
call_out(struct aq_wait *w, enum aq_wait_event ev, struct aq_task *t)
{
    bool freed = false;

    w->freed = &freed;
    w->cb(w, ev, t, w->arg);
    if (freed)
        return false;
    w->freed = NULL;
    return true;
}

static void
task_done_cb(struct aq_task *t, void *arg)
{
    struct aq_wait *w = arg;

    w->unfinished--;
    switch (w->mode) {
    case AQ_WAIT_FIRST:
        wait_end(w);
        call_out(w, AQ_WAIT_DONE, t);
        return;
    case AQ_WAIT_EACH:
        if (!call_out(w, AQ_WAIT_TASK, t) || w->is_over)
            return;
        break;
    case AQ_WAIT_ALL:
        break;
    }
    if (w->unfinished == 0) {
        wait_end(w);
        call_out(w, AQ_WAIT_DONE, NULL);
    }
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_wait *w = arg;

    wait_end(w);
    if (w->cancel_on_timeout) {
        for (size_t i = 0; i < w->n; i++)
            aq_task_cancel(w->tasks[i]); /* false for finished ones */
    }
    call_out(w, AQ_WAIT_TIMEOUT, NULL);
}

static void
empty_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_wait *w = arg;

    wait_end(w);
    call_out(w, AQ_WAIT_DONE, NULL);
}

struct aq_wait *
aq_wait_new(struct event_base *base, struct aq_task *const *tasks, size_t n,
            enum aq_wait_mode mode, int64_t timeout_us, bool cancel_on_timeout,
            aq_wait_cb *cb, void *arg)
{
    struct aq_wait *w = xcalloc(1, sizeof *w);

    w->tasks = xcalloc(n, sizeof *w->tasks);
    w->n = w->unfinished = n;
    w->mode = mode;
    w->cancel_on_timeout = cancel_on_timeout;
    w->cb = cb;
    w->arg = arg;
    /* Already finished tasks report soon: add_done_cb schedules them. */
    for (size_t i = 0; i < n; i++) {
        w->tasks[i] = aq_task_ref(tasks[i]);
        aq_task_add_done_cb(tasks[i], task_done_cb, w);
    }
    if (n == 0) {
        w->empty_ev = event_new(base, -1, 0, empty_cb, w);
        event_active(w->empty_ev, EV_TIMEOUT, 0);
    } else if (timeout_us >= 0) {
        struct timeval tv = aq_clock_tv(timeout_us);

        w->timeout_ev = evtimer_new(base, timeout_cb, w);
        evtimer_add(w->timeout_ev, &tv);
    }
    return w;
}

void
aq_wait_free(struct aq_wait *w)
{
    if (w == NULL)
        return;
    if (!w->is_over)
        wait_end(w);
    if (w->freed != NULL)
        *w->freed = true;
    for (size_t i = 0; i < w->n; i++)
        aq_task_unref(w->tasks[i]);
    if (w->timeout_ev != NULL)
        event_free(w->timeout_ev);
    if (w->empty_ev != NULL)
        event_free(w->empty_ev);
    free(w->tasks);
    free(w);
}

struct aq_task *const *
aq_wait_tasks(const struct aq_wait *w, size_t *n)
{
    *n = w->n;
    return w->tasks;
}

size_t
aq_wait_unfinished(const struct aq_wait *w)
{
    return w->unfinished;
}
