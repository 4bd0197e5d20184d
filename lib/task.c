/* SPDX-License-Identifier: MIT */
/*
 * lib/task.c: asyncio.Task on libevent.
 *
 * One "soon" event per task runs, from the loop, either the start of a
 * pending task or the done-callbacks of a finished one. References: the
 * caller's, one held by the work while the task is unfinished, and one held
 * while the soon event is scheduled, so a task is never freed under a
 * callback that is about to run. A finished task with no callback to run
 * holds none: the last aq_task_unref frees it at once.
 */
#include "task.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "xmalloc.h"

struct done_cb {
    TAILQ_ENTRY(done_cb) link;
    aq_task_done_cb *cb;
    void *arg;
};

struct aq_task {
    struct event_base *base;       /* borrowed */
    const struct aq_task_ops *ops; /* borrowed; NULL for a future */
    void *arg;                     /* the work's; not owned */
    unsigned refs;
    enum aq_task_state state;
    bool is_cancelling, is_timed_out, soon_scheduled;
    struct event *soon_ev;    /* owned */
    struct event *timeout_ev; /* owned; NULL until a timeout is set */
    void *result;             /* owned through result_free */
    void (*result_free)(void *);
    struct aq_error error;
    TAILQ_HEAD(, done_cb) cbs; /* owned; run in this order */
};

static const char *const state_names[] = {
    [AQ_TASK_PENDING] = "pending",     [AQ_TASK_RUNNING] = "running",
    [AQ_TASK_DONE] = "done",           [AQ_TASK_FAILED] = "failed",
    [AQ_TASK_CANCELLED] = "cancelled",
};

static void
soon_schedule(struct aq_task *t)
{
    if (!t->soon_scheduled) {
        t->soon_scheduled = true;
        t->refs++; /* the loop's reference, dropped by soon_cb */
        event_active(t->soon_ev, EV_TIMEOUT, 0);
    }
}

static void
run_done_cbs(struct aq_task *t)
{
    struct done_cb *n;

    /* Pop before calling: a callback may add or remove others. */
    while ((n = TAILQ_FIRST(&t->cbs)) != NULL) {
        TAILQ_REMOVE(&t->cbs, n, link);
        n->cb(t, n->arg);
        free(n);
    }
}

static void
soon_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_task *t = arg;

    t->soon_scheduled = false;
    if (t->state == AQ_TASK_PENDING && t->ops != NULL) {
        t->state = AQ_TASK_RUNNING;
        t->ops->start(t, t->arg);
    } else if (aq_task_is_finished(t))
        run_done_cbs(t);
    aq_task_unref(t);
}

/* Moves an unfinished task to its final state and drops the work's
 * reference: t may be freed here, so the caller must not touch it after
 * unless it holds a reference of its own. */
static void
finish(struct aq_task *t, enum aq_task_state st)
{
    t->state = st;
    t->is_cancelling = false;
    if (st != AQ_TASK_CANCELLED)
        t->is_timed_out = false; /* the work finished despite the timeout */
    if (t->timeout_ev != NULL)
        evtimer_del(t->timeout_ev);
    if (!TAILQ_EMPTY(&t->cbs))
        soon_schedule(t); /* the loop's reference keeps t alive */
    aq_task_unref(t);
}

struct aq_task *
aq_task_new(struct event_base *base, const struct aq_task_ops *ops, void *arg)
{
    struct aq_task *t = xcalloc(1, sizeof *t);

    t->base = base;
    t->ops = ops != NULL && ops->start != NULL ? ops : NULL;
    t->arg = arg;
    t->refs = 2; /* the caller's and the work's */
    t->state = AQ_TASK_PENDING;
    TAILQ_INIT(&t->cbs);
    t->soon_ev = event_new(base, -1, 0, soon_cb, t);
    if (t->ops != NULL)
        soon_schedule(t);
    return t;
}

struct aq_task *
aq_task_ref(struct aq_task *t)
{
    t->refs++;
    return t;
}

void
aq_task_unref(struct aq_task *t)
{
    struct done_cb *n;

    if (t == NULL || --t->refs > 0)
        return;
    while ((n = TAILQ_FIRST(&t->cbs)) != NULL) {
        TAILQ_REMOVE(&t->cbs, n, link);
        free(n);
    }
    if (t->result_free != NULL)
        t->result_free(t->result);
    event_free(t->soon_ev);
    if (t->timeout_ev != NULL)
        event_free(t->timeout_ev);
    free(t);
}

enum aq_task_state
aq_task_state(const struct aq_task *t)
{
    return t->state;
}

bool
aq_task_is_finished(const struct aq_task *t)
{
    return t->state >= AQ_TASK_DONE;
}

const char *
aq_task_state_name(enum aq_task_state st)
{
    if ((unsigned)st >= sizeof state_names / sizeof state_names[0])
        return "unknown";
    return state_names[st];
}

bool
aq_task_cancel(struct aq_task *t)
{
    if (aq_task_is_finished(t) || t->is_cancelling)
        return false;
    if (t->state == AQ_TASK_RUNNING && t->ops->cancel != NULL) {
        t->is_cancelling = true;
        t->ops->cancel(t, t->arg); /* may finish t before it returns */
    } else
        finish(t, AQ_TASK_CANCELLED);
    return true;
}

bool
aq_task_is_cancelling(const struct aq_task *t)
{
    return t->is_cancelling;
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_task *t = arg;

    /* Set before cancelling, so ops->cancel can tell a timeout apart. */
    t->is_timed_out = true;
    if (!aq_task_cancel(t))
        t->is_timed_out = false;
}

void
aq_task_set_timeout(struct aq_task *t, int64_t timeout_us)
{
    if (aq_task_is_finished(t))
        return;
    if (timeout_us < 0) {
        if (t->timeout_ev != NULL)
            evtimer_del(t->timeout_ev);
        return;
    }
    if (t->timeout_ev == NULL)
        t->timeout_ev = evtimer_new(t->base, timeout_cb, t);
    struct timeval tv = aq_clock_tv(timeout_us);
    evtimer_add(t->timeout_ev, &tv);
}

bool
aq_task_timed_out(const struct aq_task *t)
{
    return t->is_timed_out;
}

int
aq_task_set_result(struct aq_task *t, void *result, void (*free_fn)(void *))
{
    if (aq_task_is_finished(t)) {
        if (free_fn != NULL)
            free_fn(result);
        return -1;
    }
    t->result = result;
    t->result_free = free_fn;
    finish(t, AQ_TASK_DONE);
    return 0;
}

int
aq_task_set_error(struct aq_task *t, const struct aq_error *err)
{
    if (aq_task_is_finished(t))
        return -1;
    if (err != NULL)
        t->error = *err;
    else
        aq_error_set(&t->error, AQ_ERR_INTERNAL, "task: failed");
    finish(t, AQ_TASK_FAILED);
    return 0;
}

int
aq_task_set_cancelled(struct aq_task *t)
{
    if (aq_task_is_finished(t))
        return -1;
    finish(t, AQ_TASK_CANCELLED);
    return 0;
}

void *
aq_task_result(const struct aq_task *t)
{
    return t->state == AQ_TASK_DONE ? t->result : NULL;
}

const struct aq_error *
aq_task_error(const struct aq_task *t)
{
    return t->state == AQ_TASK_FAILED ? &t->error : NULL;
}

void
aq_task_add_done_cb(struct aq_task *t, aq_task_done_cb *cb, void *arg)
{
    struct done_cb *n = xmalloc(sizeof *n);

    n->cb = cb;
    n->arg = arg;
    TAILQ_INSERT_TAIL(&t->cbs, n, link);
    if (aq_task_is_finished(t))
        soon_schedule(t);
}

bool
aq_task_remove_done_cb(struct aq_task *t, aq_task_done_cb *cb, void *arg)
{
    struct done_cb *n;

    for (n = TAILQ_FIRST(&t->cbs); n != NULL; n = TAILQ_NEXT(n, link)) {
        if (n->cb == cb && n->arg == arg) {
            TAILQ_REMOVE(&t->cbs, n, link);
            free(n);
            return true;
        }
    }
    return false;
}
