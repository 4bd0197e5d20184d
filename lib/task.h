/* SPDX-License-Identifier: MIT */
/*
 * lib/task.h: asyncio.Task for C. A task is a cancellable unit of async
 * work on an event_base: pending -> running -> done | failed | cancelled.
 * With ops it is started from the loop (like create_task); without ops it is
 * a future that whoever holds it settles. Done-callbacks, start and timeouts
 * run from the event loop, never inside a call.
 * Tasks are reference counted; a pending or running task also holds a
 * reference on itself until it finishes, so dropping yours does not stop it.
 */
#ifndef AQ_TASK_H
#define AQ_TASK_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct aq_error;
struct aq_task;

enum aq_task_state {
    AQ_TASK_PENDING,   /* created, not started */
    AQ_TASK_RUNNING,   /* start called, not finished */
    AQ_TASK_DONE,      /* finished with a result */
    AQ_TASK_FAILED,    /* finished with an error */
    AQ_TASK_CANCELLED, /* finished by cancel (or by its timeout) */
};

struct aq_task_ops {
    /* Begins the work. The work finishes the task later (or now) with
     * aq_task_set_result, aq_task_set_error or aq_task_set_cancelled. */
    void (*start)(struct aq_task *t, void *arg);
    /* Asks running work to stop; the work then finishes the task, now or
     * later (usually aq_task_set_cancelled). NULL: cancelled at once. */
    void (*cancel)(struct aq_task *t, void *arg);
};

typedef void aq_task_done_cb(struct aq_task *t, void *arg);

/* Returns a pending task holding one reference for the caller. With ops
 * (copied pointer: static storage), ops->start(t, arg) runs from the loop;
 * with ops NULL the task is a future and stays pending until settled. */
struct aq_task *aq_task_new(struct event_base *base,
                            const struct aq_task_ops *ops, void *arg);
struct aq_task *aq_task_ref(struct aq_task *t); /* returns t */
void aq_task_unref(struct aq_task *t);          /* NULL is fine */

enum aq_task_state aq_task_state(const struct aq_task *t);
bool aq_task_is_finished(const struct aq_task *t); /* done/failed/cancelled */
const char *aq_task_state_name(enum aq_task_state st); /* "pending", ... */

/* Requests cancellation. Returns false if the task already finished (or a
 * cancel is already under way); true otherwise: a pending task is cancelled
 * at once, a running one gets ops->cancel. */
bool aq_task_cancel(struct aq_task *t);
bool aq_task_is_cancelling(const struct aq_task *t);

/* asyncio.wait_for: cancels the task if it is not finished timeout_us from
 * now (replaces an earlier timeout; < 0 removes it). */
void aq_task_set_timeout(struct aq_task *t, int64_t timeout_us);
bool aq_task_timed_out(const struct aq_task *t); /* cancelled by timeout */

/* Finish the task. Each returns 0, or -1 if it already finished (nothing
 * changes; set_result then frees result with free_fn). set_result takes
 * result: free_fn (may be NULL) releases it when the task is freed. The
 * work's reference goes here: without one of its own, do not touch t after. */
int aq_task_set_result(struct aq_task *t, void *result,
                       void (*free_fn)(void *));
int aq_task_set_error(struct aq_task *t, const struct aq_error *err);
int aq_task_set_cancelled(struct aq_task *t);

void *aq_task_result(const struct aq_task *t); /* borrowed; NULL unless done */
/* The error of a failed task, else NULL; borrowed like result. */
const struct aq_error *aq_task_error(const struct aq_task *t);

/* cb(t, arg) runs from the loop once t has finished (soon, if it already
 * has), in the order added. remove_done_cb withdraws the first match that
 * has not run yet and returns whether it found one. */
void aq_task_add_done_cb(struct aq_task *t, aq_task_done_cb *cb, void *arg);
bool aq_task_remove_done_cb(struct aq_task *t, aq_task_done_cb *cb, void *arg);

#endif
