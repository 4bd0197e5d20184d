/* SPDX-License-Identifier: MIT */
/*
 * tests/test_wait.c: the aq_wait contract of lib/wait.h (gather,
 * wait(FIRST_COMPLETED), as_completed, with an optional timeout). Tasks are
 * futures the test settles, or simulated work that finishes on an evtimer
 * and stops at once when cancelled. Every loop run has a deadline, and each
 * test releases all it made (the suite also runs under valgrind and ASan).
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "suites.h"
#include "task.h"
#include "testutil.h"
#include "wait.h"

#define DEADLINE_MS 2000 /* loop waits that must succeed; valgrind is slow */
#define QUIET_MS 50      /* a window that shows nothing happens */
#define LOG_MAX 8

/* Finishes t with a result of value; fc (may be NULL) sees it freed. */
static int
settle(struct aq_task *t, int value, struct free_count *fc)
{
    return aq_task_set_result(t, test_result_new(value, fc), test_result_free);
}

/* Which works finished, in order. */
struct tally {
    int n;
    int values[LOG_MAX];
    int want; /* done turns true once n reaches want */
    bool done;
};

/* Simulated work: finishes with value after delay_ms; a cancel stops it at
 * once. */
struct work {
    struct event *timer;  /* owned */
    struct aq_task *task; /* borrowed: set by start */
    int delay_ms;
    int value;
    struct tally *tally; /* borrowed */
    int cancel_calls;
};

static void
work_ended(struct work *w)
{
    struct tally *ty = w->tally;

    if (ty->n < LOG_MAX)
        ty->values[ty->n] = w->value;
    ty->n++;
    if (ty->n >= ty->want)
        ty->done = true;
}

static void
work_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct work *w = arg;

    settle(w->task, w->value, NULL);
    work_ended(w);
}

static void
work_start(struct aq_task *t, void *arg)
{
    struct work *w = arg;
    struct timeval tv = aq_clock_tv((int64_t)w->delay_ms * 1000);

    w->task = t;
    evtimer_add(w->timer, &tv);
}

static void
work_cancel(struct aq_task *t, void *arg)
{
    struct work *w = arg;

    w->cancel_calls++;
    evtimer_del(w->timer);
    aq_task_set_cancelled(t);
    work_ended(w);
}

static const struct aq_task_ops work_ops = {work_start, work_cancel};

/* Makes tasks[i] run works[i], finishing with value 100 + i after
 * delays_ms[i]; ty counts them as they end. */
static void
works_new(struct event_base *base, struct work *works, struct aq_task **tasks,
          const int *delays_ms, size_t n, struct tally *ty)
{
    size_t i;

    memset(ty, 0, sizeof *ty);
    ty->want = (int)n;
    for (i = 0; i < n; i++) {
        memset(&works[i], 0, sizeof works[i]);
        works[i].timer = evtimer_new(base, work_timer_cb, &works[i]);
        works[i].delay_ms = delays_ms[i];
        works[i].value = 100 + (int)i;
        works[i].tally = ty;
        tasks[i] = aq_task_new(base, &work_ops, &works[i]);
    }
}

static void
works_release(struct work *works, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        event_free(works[i].timer);
}

static void
futures_new(struct event_base *base, struct aq_task **tasks, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        tasks[i] = aq_task_new(base, NULL, NULL);
}

static void
tasks_unref(struct aq_task **tasks, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        aq_task_unref(tasks[i]);
}

/* What the wait callback saw, event by event. */
struct wait_log {
    int n;
    enum aq_wait_event evs[LOG_MAX];
    struct aq_task *tasks[LOG_MAX];
    enum aq_task_state states[LOG_MAX]; /* of tasks[i], when not NULL */
    size_t unfinished[LOG_MAX];         /* aq_wait_unfinished then */
    bool all_finished[LOG_MAX];         /* every task of the wait was */
    int64_t at_us[LOG_MAX];
    int want; /* reached turns true once n reaches want */
    bool reached;
    bool final;         /* DONE or TIMEOUT seen */
    bool free_on_final; /* the callback frees the wait at DONE/TIMEOUT */
    bool free_on_task;  /* ... at the first TASK */
    bool freed;
};

static bool
wait_all_finished(const struct aq_wait *w)
{
    struct aq_task *const *tasks;
    size_t i, n;

    tasks = aq_wait_tasks(w, &n);
    for (i = 0; i < n; i++)
        if (!aq_task_is_finished(tasks[i]))
            return false;
    return true;
}

static void
log_wait_cb(struct aq_wait *w, enum aq_wait_event ev, struct aq_task *t,
            void *arg)
{
    struct wait_log *log = arg;
    int i = log->n;

    if (i < LOG_MAX) {
        log->evs[i] = ev;
        log->tasks[i] = t;
        log->states[i] = t != NULL ? aq_task_state(t) : AQ_TASK_PENDING;
        log->unfinished[i] = aq_wait_unfinished(w);
        log->all_finished[i] = wait_all_finished(w);
        log->at_us[i] = aq_clock_mono_us();
    }
    log->n++;
    if (log->n >= log->want)
        log->reached = true;
    if (ev != AQ_WAIT_TASK)
        log->final = true;
    if ((log->free_on_final && ev != AQ_WAIT_TASK) ||
        (log->free_on_task && ev == AQ_WAIT_TASK)) {
        aq_wait_free(w);
        log->freed = true;
    }
}

/* gather (AQ_WAIT_ALL) */

START_TEST(all_fires_done_once_after_the_last_task_finished)
{
    struct wait_log log = {0};
    struct aq_task *t[3];
    struct aq_wait *w;

    futures_new(test_base, t, 3);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_ALL, -1, false, log_wait_cb, &log);
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(aq_wait_unfinished(w), 3);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);

    ck_assert_int_eq(settle(t[2], 2, NULL), 0);
    ck_assert_int_eq(log.n, 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);
    ck_assert_uint_eq(aq_wait_unfinished(w), 2);

    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);
    ck_assert_uint_eq(aq_wait_unfinished(w), 1);

    ck_assert_int_eq(settle(t[1], 1, NULL), 0);
    ck_assert_int_eq(log.n, 0);
    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_null(log.tasks[0]);
    ck_assert(log.all_finished[0]);
    ck_assert_uint_eq(log.unfinished[0], 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_uint_eq(aq_wait_unfinished(w), 0);

    aq_wait_free(w);
    tasks_unref(t, 3);
}
END_TEST

START_TEST(all_keeps_the_given_order_whatever_the_finish_order)
{
    static const int delays_ms[3] = {90, 10, 50};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[3];
    struct aq_task *t[3];
    struct aq_task *const *got;
    struct aq_wait *w;
    size_t i, n;

    works_new(test_base, works, t, delays_ms, 3, &ty);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_ALL, -1, false, log_wait_cb, &log);
    /* The wait holds its own references. */
    tasks_unref(t, 3);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_null(log.tasks[0]);
    ck_assert(log.all_finished[0]);
    /* They did finish out of order. */
    ck_assert_int_eq(ty.n, 3);
    ck_assert_int_eq(ty.values[0], 101);
    ck_assert_int_eq(ty.values[1], 102);
    ck_assert_int_eq(ty.values[2], 100);

    got = aq_wait_tasks(w, &n);
    ck_assert_uint_eq(n, 3);
    for (i = 0; i < 3; i++) {
        ck_assert_ptr_eq(got[i], t[i]);
        ck_assert_int_eq(aq_task_state(got[i]), AQ_TASK_DONE);
        ck_assert_int_eq(test_result_value(got[i]), 100 + (int)i);
    }
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    works_release(works, 3);
}
END_TEST

START_TEST(all_counts_failures_and_cancellations_as_finished)
{
    struct wait_log log = {0};
    struct aq_error err;
    struct aq_task *t[3];
    struct aq_task *const *got;
    struct aq_wait *w;
    size_t n;

    futures_new(test_base, t, 3);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_ALL, -1, false, log_wait_cb, &log);

    aq_error_set(&err, AQ_ERR_INTERNAL, "work: 0: failed");
    ck_assert_int_eq(aq_task_set_error(t[0], &err), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);
    ck_assert(aq_task_cancel(t[2]));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);
    ck_assert_uint_eq(aq_wait_unfinished(w), 1);
    ck_assert_int_eq(settle(t[1], 1, NULL), 0);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    got = aq_wait_tasks(w, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(aq_task_state(got[0]), AQ_TASK_FAILED);
    ck_assert_int_eq(aq_task_error(got[0])->code, AQ_ERR_INTERNAL);
    ck_assert_int_eq(aq_task_state(got[1]), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(got[1]), 1);
    ck_assert_int_eq(aq_task_state(got[2]), AQ_TASK_CANCELLED);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    tasks_unref(t, 3);
}
END_TEST

START_TEST(all_reports_tasks_finished_before_new_soon)
{
    struct wait_log log = {0};
    struct aq_task *t[2];
    struct aq_wait *w;

    futures_new(test_base, t, 2);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    ck_assert(aq_task_cancel(t[1]));
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_ALL, -1, false, log_wait_cb, &log);
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_null(log.tasks[0]);
    ck_assert_uint_eq(log.unfinished[0], 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    tasks_unref(t, 2);
}
END_TEST

/* wait(FIRST_COMPLETED) (AQ_WAIT_FIRST) */

START_TEST(first_fires_done_once_with_the_first_finished_task)
{
    static const int delays_ms[3] = {90, 10, 50};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[3];
    struct aq_task *t[3];
    struct aq_wait *w;

    works_new(test_base, works, t, delays_ms, 3, &ty);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_FIRST, -1, false, log_wait_cb,
                    &log);
    tasks_unref(t, 3);
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_eq(log.tasks[0], t[1]);
    ck_assert_int_eq(log.states[0], AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(log.tasks[0]), 101);

    /* The others finish later and go unreported. */
    ck_assert(run_until(test_base, &ty.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(aq_task_state(t[0]), AQ_TASK_DONE);
    ck_assert_int_eq(aq_task_state(t[2]), AQ_TASK_DONE);

    aq_wait_free(w);
    works_release(works, 3);
}
END_TEST

START_TEST(first_counts_a_failure_as_the_first_finished)
{
    struct wait_log log = {0};
    struct aq_error err;
    struct aq_task *t[3];
    struct aq_wait *w;

    futures_new(test_base, t, 3);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_FIRST, -1, false, log_wait_cb,
                    &log);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);

    aq_error_set(&err, AQ_ERR_INTERNAL, "work: 2: failed");
    ck_assert_int_eq(aq_task_set_error(t[2], &err), 0);
    ck_assert_int_eq(log.n, 0);
    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_eq(log.tasks[0], t[2]);
    ck_assert_int_eq(log.states[0], AQ_TASK_FAILED);

    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    ck_assert(aq_task_cancel(t[1]));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    tasks_unref(t, 3);
}
END_TEST

START_TEST(first_reports_a_task_finished_before_new_soon)
{
    struct wait_log log = {0};
    struct aq_task *t[3];
    struct aq_wait *w;

    futures_new(test_base, t, 3);
    ck_assert_int_eq(settle(t[1], 1, NULL), 0);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_FIRST, -1, false, log_wait_cb,
                    &log);
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_eq(log.tasks[0], t[1]);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    ck_assert(aq_task_cancel(t[2]));
    tasks_unref(t, 3);
}
END_TEST

/* as_completed (AQ_WAIT_EACH) */

START_TEST(each_reports_tasks_in_completion_order_then_done)
{
    static const int delays_ms[3] = {90, 10, 50};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[3];
    struct aq_task *t[3];
    struct aq_wait *w;
    int i;

    works_new(test_base, works, t, delays_ms, 3, &ty);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_EACH, -1, false, log_wait_cb,
                    &log);
    tasks_unref(t, 3);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 4);
    ck_assert_ptr_eq(log.tasks[0], t[1]);
    ck_assert_ptr_eq(log.tasks[1], t[2]);
    ck_assert_ptr_eq(log.tasks[2], t[0]);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(log.evs[i], AQ_WAIT_TASK);
        ck_assert_int_eq(log.states[i], AQ_TASK_DONE);
        /* aq_wait_unfinished counts down as tasks are reported. */
        ck_assert_uint_eq(log.unfinished[i], 2 - (size_t)i);
    }
    ck_assert_int_eq(log.evs[3], AQ_WAIT_DONE);
    ck_assert_ptr_null(log.tasks[3]);
    ck_assert(log.all_finished[3]);

    aq_wait_free(w);
    works_release(works, 3);
}
END_TEST

START_TEST(each_reports_tasks_finished_before_new_soon)
{
    struct wait_log log = {.want = 2};
    struct aq_task *t[3];
    struct aq_wait *w;

    futures_new(test_base, t, 3);
    ck_assert_int_eq(settle(t[2], 2, NULL), 0);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_EACH, -1, false, log_wait_cb,
                    &log);
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.reached, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TASK);
    ck_assert_int_eq(log.evs[1], AQ_WAIT_TASK);
    /* Both, in either order. */
    ck_assert(log.tasks[0] == t[0] || log.tasks[0] == t[2]);
    ck_assert(log.tasks[1] == t[0] || log.tasks[1] == t[2]);
    ck_assert_ptr_ne(log.tasks[0], log.tasks[1]);
    ck_assert_uint_eq(aq_wait_unfinished(w), 1);

    ck_assert_int_eq(settle(t[1], 1, NULL), 0);
    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.n, 4);
    ck_assert_int_eq(log.evs[2], AQ_WAIT_TASK);
    ck_assert_ptr_eq(log.tasks[2], t[1]);
    ck_assert_int_eq(log.evs[3], AQ_WAIT_DONE);

    aq_wait_free(w);
    tasks_unref(t, 3);
}
END_TEST

/* No tasks: loop over AQ_WAIT_ALL and AQ_WAIT_EACH. */
START_TEST(empty_wait_fires_done_soon)
{
    static const enum aq_wait_mode modes[] = {AQ_WAIT_ALL, AQ_WAIT_EACH};
    struct wait_log log = {0};
    struct aq_wait *w;
    size_t n = 1;

    w = aq_wait_new(test_base, NULL, 0, modes[_i], -1, false, log_wait_cb,
                    &log);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(log.n, 0);
    ck_assert_uint_eq(aq_wait_unfinished(w), 0);
    aq_wait_tasks(w, &n);
    ck_assert_uint_eq(n, 0);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_null(log.tasks[0]);

    aq_wait_free(w);
}
END_TEST

/* Timeouts */

START_TEST(timeout_fires_once_and_nothing_after)
{
    static const int delays_ms[2] = {10, 150};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[2];
    struct aq_task *t[2];
    struct aq_wait *w;
    int64_t start_us;

    works_new(test_base, works, t, delays_ms, 2, &ty);
    start_us = aq_clock_mono_us();
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_EACH, 60000, false, log_wait_cb,
                    &log);
    tasks_unref(t, 2);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TASK);
    ck_assert_ptr_eq(log.tasks[0], t[0]);
    ck_assert_int_eq(log.evs[1], AQ_WAIT_TIMEOUT);
    ck_assert_ptr_null(log.tasks[1]);
    ck_assert_int_ge(log.at_us[1] - start_us, 60000);
    ck_assert(!log.all_finished[1]);

    /* The slow task still finishes; the wait says nothing more. */
    ck_assert(run_until(test_base, &ty.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 2);

    aq_wait_free(w);
    works_release(works, 2);
}
END_TEST

START_TEST(timeout_without_cancel_lets_tasks_finish_normally)
{
    static const int delays_ms[2] = {120, 150};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[2];
    struct aq_task *t[2];
    struct aq_wait *w;
    int64_t start_us;

    works_new(test_base, works, t, delays_ms, 2, &ty);
    start_us = aq_clock_mono_us();
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_ALL, 40000, false, log_wait_cb,
                    &log);
    tasks_unref(t, 2);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TIMEOUT);
    ck_assert_ptr_null(log.tasks[0]);
    ck_assert_int_ge(log.at_us[0] - start_us, 40000);
    ck_assert_int_eq(aq_task_state(t[0]), AQ_TASK_RUNNING);
    ck_assert_int_eq(aq_task_state(t[1]), AQ_TASK_RUNNING);

    ck_assert(run_until(test_base, &ty.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(aq_task_state(t[0]), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t[0]), 100);
    ck_assert_int_eq(aq_task_state(t[1]), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t[1]), 101);
    ck_assert_int_eq(works[0].cancel_calls, 0);
    ck_assert_int_eq(works[1].cancel_calls, 0);

    aq_wait_free(w);
    works_release(works, 2);
}
END_TEST

START_TEST(timeout_with_cancel_cancels_only_unfinished_tasks)
{
    static const int delays_ms[3] = {10, 1000, 1000};
    struct wait_log log = {0};
    struct tally ty;
    struct work works[3];
    struct aq_task *t[3];
    struct aq_wait *w;
    int64_t start_us;

    works_new(test_base, works, t, delays_ms, 3, &ty);
    start_us = aq_clock_mono_us();
    w = aq_wait_new(test_base, t, 3, AQ_WAIT_ALL, 60000, true, log_wait_cb,
                    &log);
    tasks_unref(t, 3);

    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TIMEOUT);
    ck_assert_ptr_null(log.tasks[0]);
    ck_assert_int_ge(log.at_us[0] - start_us, 60000);
    /* Cancelled first (the hook stops at once), then TIMEOUT. */
    ck_assert(log.all_finished[0]);

    ck_assert_int_eq(aq_task_state(t[0]), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t[0]), 100);
    ck_assert_int_eq(works[0].cancel_calls, 0);
    ck_assert_int_eq(aq_task_state(t[1]), AQ_TASK_CANCELLED);
    ck_assert_int_eq(works[1].cancel_calls, 1);
    ck_assert_int_eq(aq_task_state(t[2]), AQ_TASK_CANCELLED);
    ck_assert_int_eq(works[2].cancel_calls, 1);
    ck_assert(ty.done);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_wait_free(w);
    works_release(works, 3);
}
END_TEST

START_TEST(timeout_after_the_final_event_does_nothing)
{
    struct wait_log log = {0};
    struct aq_task *t[2];
    struct aq_wait *w;

    futures_new(test_base, t, 2);
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_FIRST, 30000, true, log_wait_cb,
                    &log);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_eq(log.tasks[0], t[0]);

    /* Past the 30 ms mark: no TIMEOUT, and t[1] is not cancelled. */
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(aq_task_state(t[1]), AQ_TASK_PENDING);

    aq_wait_free(w);
    ck_assert_int_eq(settle(t[1], 1, NULL), 0);
    tasks_unref(t, 2);
}
END_TEST

/* Freeing */

START_TEST(done_callback_may_free_the_wait)
{
    struct wait_log log = {.free_on_final = true};
    struct aq_task *t[2];
    struct aq_wait *w;

    futures_new(test_base, t, 2);
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_FIRST, -1, false, log_wait_cb,
                    &log);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);

    ck_assert(run_until(test_base, &log.freed, DEADLINE_MS));
    ck_assert_int_eq(log.evs[0], AQ_WAIT_DONE);
    ck_assert_ptr_eq(log.tasks[0], t[0]);
    ck_assert_int_eq(settle(t[1], 1, NULL), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    tasks_unref(t, 2);
}
END_TEST

START_TEST(timeout_callback_may_free_the_wait)
{
    static const int delays_ms[2] = {1000, 1000};
    struct wait_log log = {.free_on_final = true};
    struct tally ty;
    struct work works[2];
    struct aq_task *t[2];

    works_new(test_base, works, t, delays_ms, 2, &ty);
    aq_wait_new(test_base, t, 2, AQ_WAIT_EACH, 30000, true, log_wait_cb, &log);
    tasks_unref(t, 2);

    ck_assert(run_until(test_base, &log.freed, DEADLINE_MS));
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TIMEOUT);
    ck_assert(ty.done);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(works[0].cancel_calls, 1);
    ck_assert_int_eq(works[1].cancel_calls, 1);

    works_release(works, 2);
}
END_TEST

START_TEST(task_event_callback_may_free_the_wait)
{
    struct wait_log log = {.free_on_task = true};
    struct aq_task *t[3];

    futures_new(test_base, t, 3);
    aq_wait_new(test_base, t, 3, AQ_WAIT_EACH, 30000, false, log_wait_cb, &log);
    /* Two finish in the same loop turn: only the first is reported. */
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    ck_assert_int_eq(settle(t[1], 1, NULL), 0);

    ck_assert(run_until(test_base, &log.freed, DEADLINE_MS));
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(log.evs[0], AQ_WAIT_TASK);
    ck_assert(log.tasks[0] == t[0] || log.tasks[0] == t[1]);
    ck_assert_int_eq(settle(t[2], 2, NULL), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    tasks_unref(t, 3);
}
END_TEST

START_TEST(free_before_any_event_stops_all_events)
{
    struct wait_log each_log = {0}, all_log = {0};
    struct aq_task *t[2];
    struct aq_wait *each, *all;

    futures_new(test_base, t, 2);
    ck_assert_int_eq(settle(t[0], 0, NULL), 0);
    /* EACH would report t[0] soon, and time out after 20 ms. */
    each = aq_wait_new(test_base, t, 2, AQ_WAIT_EACH, 20000, true, log_wait_cb,
                       &each_log);
    /* ALL on a finished task would fire DONE soon. */
    all = aq_wait_new(test_base, t, 1, AQ_WAIT_ALL, -1, false, log_wait_cb,
                      &all_log);
    aq_wait_free(each);
    aq_wait_free(all);
    aq_wait_free(NULL);

    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(each_log.n, 0);
    ck_assert_int_eq(all_log.n, 0);
    /* Not cancelled either: the timeout never came. */
    ck_assert_int_eq(aq_task_state(t[1]), AQ_TASK_PENDING);

    ck_assert(aq_task_cancel(t[1]));
    tasks_unref(t, 2);
}
END_TEST

START_TEST(wait_holds_its_tasks_until_freed)
{
    struct wait_log log = {0};
    struct free_count fc[2] = {{0}, {0}};
    struct aq_task *t[2];
    struct aq_task *const *got;
    struct aq_wait *w;
    size_t n;

    futures_new(test_base, t, 2);
    w = aq_wait_new(test_base, t, 2, AQ_WAIT_ALL, -1, false, log_wait_cb, &log);
    tasks_unref(t, 2);

    got = aq_wait_tasks(w, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(aq_task_state(got[0]), AQ_TASK_PENDING);
    ck_assert_int_eq(settle(got[1], 1, &fc[1]), 0);
    ck_assert_int_eq(settle(got[0], 0, &fc[0]), 0);
    ck_assert(run_until(test_base, &log.final, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(fc[0].calls, 0);
    ck_assert_int_eq(fc[1].calls, 0);
    got = aq_wait_tasks(w, &n);
    ck_assert_int_eq(test_result_value(got[0]), 0);
    ck_assert_int_eq(test_result_value(got[1]), 1);

    aq_wait_free(w);
    run_until(test_base, &fc[0].freed, DEADLINE_MS);
    run_until(test_base, &fc[1].freed, DEADLINE_MS);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(fc[0].calls, 1);
    ck_assert_int_eq(fc[1].calls, 1);
}
END_TEST

Suite *
wait_suite(void)
{
    Suite *s = suite_create("wait");
    TCase *tc;

    tc = test_tcase_with_base("all");
    tcase_add_test(tc, all_fires_done_once_after_the_last_task_finished);
    tcase_add_test(tc, all_keeps_the_given_order_whatever_the_finish_order);
    tcase_add_test(tc, all_counts_failures_and_cancellations_as_finished);
    tcase_add_test(tc, all_reports_tasks_finished_before_new_soon);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("first");
    tcase_add_test(tc, first_fires_done_once_with_the_first_finished_task);
    tcase_add_test(tc, first_counts_a_failure_as_the_first_finished);
    tcase_add_test(tc, first_reports_a_task_finished_before_new_soon);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("each");
    tcase_add_test(tc, each_reports_tasks_in_completion_order_then_done);
    tcase_add_test(tc, each_reports_tasks_finished_before_new_soon);
    tcase_add_loop_test(tc, empty_wait_fires_done_soon, 0, 2);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("timeout");
    tcase_add_test(tc, timeout_fires_once_and_nothing_after);
    tcase_add_test(tc, timeout_without_cancel_lets_tasks_finish_normally);
    tcase_add_test(tc, timeout_with_cancel_cancels_only_unfinished_tasks);
    tcase_add_test(tc, timeout_after_the_final_event_does_nothing);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("free");
    tcase_add_test(tc, done_callback_may_free_the_wait);
    tcase_add_test(tc, timeout_callback_may_free_the_wait);
    tcase_add_test(tc, task_event_callback_may_free_the_wait);
    tcase_add_test(tc, free_before_any_event_stops_all_events);
    tcase_add_test(tc, wait_holds_its_tasks_until_freed);
    suite_add_tcase(s, tc);
    return s;
}
