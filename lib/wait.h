/* SPDX-License-Identifier: MIT */
/*
 * lib/wait.h: waiting on a set of tasks, as asyncio's gather,
 * wait(FIRST_COMPLETED) and as_completed do, with an optional timeout that
 * can cancel what is left (wait_for). A task's failure or cancellation is an
 * outcome like any other (gather's return_exceptions=True).
 * Events fire from the loop, never inside a call.
 */
#ifndef AQ_WAIT_H
#define AQ_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct aq_task;
struct aq_wait;

enum aq_wait_mode {
    AQ_WAIT_ALL,   /* gather: DONE once every task finished */
    AQ_WAIT_FIRST, /* wait(FIRST_COMPLETED): DONE with the first finished */
    AQ_WAIT_EACH,  /* as_completed: TASK per task as it finishes, then DONE */
};

enum aq_wait_event {
    AQ_WAIT_TASK,    /* EACH: t just finished */
    AQ_WAIT_DONE,    /* final; t is the first finished for FIRST, else NULL */
    AQ_WAIT_TIMEOUT, /* final: the timeout came first; t is NULL */
};

/* After a final event the wait is over: the callback may free it. */
typedef void aq_wait_cb(struct aq_wait *w, enum aq_wait_event ev,
                        struct aq_task *t, void *arg);

/* Waits on tasks[0..n) (each referenced until aq_wait_free; the array is
 * copied). timeout_us < 0 = none; at the timeout, cancel_on_timeout cancels
 * the tasks not yet finished, then TIMEOUT fires. n may be 0: DONE (t NULL)
 * fires soon. Free with aq_wait_free, any time, also from the callback. */
struct aq_wait *aq_wait_new(struct event_base *base,
                            struct aq_task *const *tasks, size_t n,
                            enum aq_wait_mode mode, int64_t timeout_us,
                            bool cancel_on_timeout, aq_wait_cb *cb, void *arg);
void aq_wait_free(struct aq_wait *w); /* NULL is fine; no further events */

/* The tasks in the order given (gather's result order); borrowed. */
struct aq_task *const *aq_wait_tasks(const struct aq_wait *w, size_t *n);
size_t aq_wait_unfinished(const struct aq_wait *w);

#endif
