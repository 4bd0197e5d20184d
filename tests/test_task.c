/* SPDX-License-Identifier: MIT */
/*
 * tests/test_task.c: the aq_task contract of lib/task.h. Work is simulated
 * by ops structs: one finishes inside start, one on an evtimer, with a cancel
 * hook that stops at once, later, never, or no hook at all; futures (ops
 * NULL) are settled by the test. Every loop run has a deadline, and each
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

#define DEADLINE_MS 2000 /* loop waits that must succeed; valgrind is slow */
#define QUIET_MS 50      /* a window that shows nothing happens */
#define LOG_MAX 8

enum outcome {
    OUTCOME_RESULT,    /* aq_task_set_result(value) */
    OUTCOME_ERROR,     /* aq_task_set_error(AQ_ERR_INTERNAL) */
    OUTCOME_CANCELLED, /* aq_task_set_cancelled, without being asked */
};

/* Simulated work: the arg of the ops below. */
struct work {
    struct event *timer;        /* owned: finishes the work */
    struct event *cancel_timer; /* owned: ends an asynchronous cancel */
    struct aq_task *task;       /* borrowed: set by start */
    int delay_ms;               /* < 0: finish inside start */
    int cancel_delay_ms;        /* for work_cancel_later */
    enum outcome outcome;
    int value;             /* the result's value */
    struct free_count *fc; /* handed to the result; may be NULL */
    int start_calls;
    int cancel_calls;
    bool started;
    bool finished;        /* the work called its set_* */
    int finish_rc;        /* what that call returned */
    bool cancel_finished; /* an asynchronous cancel called set_cancelled */
    int cancel_rc;        /* what the cancel's set_cancelled returned */
};

static void
work_finish(struct work *w)
{
    struct aq_error err;

    switch (w->outcome) {
    case OUTCOME_RESULT:
        w->finish_rc = aq_task_set_result(
            w->task, test_result_new(w->value, w->fc), test_result_free);
        break;
    case OUTCOME_ERROR:
        aq_error_set(&err, AQ_ERR_INTERNAL, "work: %d: failed", w->value);
        w->finish_rc = aq_task_set_error(w->task, &err);
        break;
    case OUTCOME_CANCELLED:
        w->finish_rc = aq_task_set_cancelled(w->task);
        break;
    }
    w->finished = true;
}

static void
work_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    work_finish(arg);
}

static void
work_cancel_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct work *w = arg;

    w->cancel_rc = aq_task_set_cancelled(w->task);
    w->cancel_finished = true;
}

static void
work_start(struct aq_task *t, void *arg)
{
    struct work *w = arg;
    struct timeval tv;

    w->task = t;
    w->start_calls++;
    w->started = true;
    if (w->delay_ms < 0) {
        work_finish(w);
        return;
    }
    tv = aq_clock_tv((int64_t)w->delay_ms * 1000);
    evtimer_add(w->timer, &tv);
}

/* Stops at once: the task is cancelled before aq_task_cancel returns. */
static void
work_cancel_now(struct aq_task *t, void *arg)
{
    struct work *w = arg;

    w->cancel_calls++;
    evtimer_del(w->timer);
    w->cancel_rc = aq_task_set_cancelled(t);
}

/* Stops the work now but reports the cancellation cancel_delay_ms later. */
static void
work_cancel_later(struct aq_task *t, void *arg)
{
    struct work *w = arg;
    struct timeval tv = aq_clock_tv((int64_t)w->cancel_delay_ms * 1000);

    w->cancel_calls++;
    evtimer_del(w->timer);
    evtimer_add(w->cancel_timer, &tv);
}

/* Notes the request and goes on: the work finishes as if never asked. */
static void
work_cancel_ignore(struct aq_task *t, void *arg)
{
    struct work *w = arg;

    w->cancel_calls++;
}

static const struct aq_task_ops work_ops = {work_start, work_cancel_now};
static const struct aq_task_ops async_cancel_ops = {work_start,
                                                    work_cancel_later};
static const struct aq_task_ops ignore_cancel_ops = {work_start,
                                                     work_cancel_ignore};
static const struct aq_task_ops no_cancel_ops = {work_start, NULL};

static void
work_init(struct work *w, struct event_base *base, int delay_ms,
          enum outcome outcome)
{
    memset(w, 0, sizeof *w);
    w->timer = evtimer_new(base, work_timer_cb, w);
    w->cancel_timer = evtimer_new(base, work_cancel_timer_cb, w);
    w->delay_ms = delay_ms;
    w->cancel_delay_ms = 40;
    w->outcome = outcome;
    w->value = 42;
    w->finish_rc = 1; /* neither 0 nor -1 until the work finishes */
    w->cancel_rc = 1;
}

static void
work_release(struct work *w)
{
    event_free(w->timer);
    event_free(w->cancel_timer);
}

/* What done callbacks saw, in the order they ran. */
struct done_log {
    int n;
    int ids[LOG_MAX];
    struct aq_task *tasks[LOG_MAX];
    enum aq_task_state states[LOG_MAX];
    int values[LOG_MAX]; /* result_value when the callback ran */
    int64_t at_us[LOG_MAX];
    int want; /* done turns true once n reaches want */
    bool done;
};

struct done_entry {
    struct done_log *log;
    int id;
};

static void
log_done_cb(struct aq_task *t, void *arg)
{
    struct done_entry *e = arg;
    struct done_log *log = e->log;

    if (log->n < LOG_MAX) {
        log->ids[log->n] = e->id;
        log->tasks[log->n] = t;
        log->states[log->n] = aq_task_state(t);
        log->values[log->n] = test_result_value(t);
        log->at_us[log->n] = aq_clock_mono_us();
    }
    log->n++;
    if (log->n >= log->want)
        log->done = true;
}

/* A done callback that owns the last reference to the task and drops it. */
struct unref_probe {
    bool ran;
    enum aq_task_state state;
    int value;
};

static void
unref_done_cb(struct aq_task *t, void *arg)
{
    struct unref_probe *p = arg;

    p->ran = true;
    p->state = aq_task_state(t);
    p->value = test_result_value(t);
    aq_task_unref(t);
}

/* Runs until fc shows the result was released, then a while longer, and
 * returns how often it was released. */
static int
free_calls_settled(struct event_base *base, struct free_count *fc)
{
    run_until(base, &fc->freed, DEADLINE_MS);
    run_for(base, QUIET_MS);
    return fc->calls;
}

/* States */

START_TEST(state_names_are_the_asyncio_words)
{
    ck_assert_str_eq(aq_task_state_name(AQ_TASK_PENDING), "pending");
    ck_assert_str_eq(aq_task_state_name(AQ_TASK_RUNNING), "running");
    ck_assert_str_eq(aq_task_state_name(AQ_TASK_DONE), "done");
    ck_assert_str_eq(aq_task_state_name(AQ_TASK_FAILED), "failed");
    ck_assert_str_eq(aq_task_state_name(AQ_TASK_CANCELLED), "cancelled");
}
END_TEST

START_TEST(new_task_is_pending_until_the_loop_starts_it)
{
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 30, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_PENDING);
    ck_assert_int_eq(w.start_calls, 0);
    ck_assert(!aq_task_is_finished(t));
    ck_assert(!aq_task_is_cancelling(t));
    ck_assert(!aq_task_timed_out(t));
    ck_assert_ptr_null(aq_task_result(t));
    ck_assert_ptr_null(aq_task_error(t));

    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    ck_assert_int_eq(w.start_calls, 1);
    ck_assert_ptr_eq(w.task, t);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);
    ck_assert(!aq_task_is_finished(t));
    ck_assert_ptr_null(aq_task_result(t));

    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert(aq_task_is_finished(t));
    ck_assert_int_eq(test_result_value(t), 42);
    ck_assert_ptr_null(aq_task_error(t));
    ck_assert_int_eq(w.start_calls, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(work_finishing_inside_start_ends_done_once)
{
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, -1, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_PENDING);
    ck_assert_int_eq(w.start_calls, 0);

    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 42);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(w.start_calls, 1);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(work_reporting_an_error_ends_failed)
{
    struct work w;
    struct aq_task *t;
    const struct aq_error *err;

    work_init(&w, test_base, 10, OUTCOME_ERROR);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);

    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_FAILED);
    ck_assert(aq_task_is_finished(t));
    ck_assert_ptr_null(aq_task_result(t));
    err = aq_task_error(t);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(err->code, AQ_ERR_INTERNAL);
    ck_assert_str_eq(err->message, "work: 42: failed");
    ck_assert(!aq_task_timed_out(t));

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(work_cancelling_itself_ends_cancelled)
{
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 10, OUTCOME_CANCELLED);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);

    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(aq_task_is_finished(t));
    ck_assert_ptr_null(aq_task_result(t));
    ck_assert_ptr_null(aq_task_error(t));
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(w.cancel_calls, 0);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

/* Results and references */

START_TEST(result_is_freed_once_when_the_last_reference_drops)
{
    struct free_count fc = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    ck_assert_ptr_eq(aq_task_ref(t), t);
    ck_assert_ptr_eq(aq_task_ref(t), t);
    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(7, &fc), test_result_free), 0);
    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(fc.calls, 0);

    aq_task_unref(t);
    ck_assert_int_eq(fc.calls, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 7);
    aq_task_unref(t);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(fc.calls, 0);
    ck_assert_int_eq(test_result_value(t), 7);

    aq_task_unref(t);
    ck_assert_int_eq(free_calls_settled(test_base, &fc), 1);
    aq_task_unref(NULL);
}
END_TEST

START_TEST(set_result_on_finished_task_fails_and_frees_the_new_result)
{
    struct free_count first = {0}, second = {0};
    struct aq_error err;
    int on_stack = 5;
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(1, &first), test_result_free), 0);
    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(2, &second), test_result_free),
        -1);
    ck_assert_int_eq(second.calls, 1);
    ck_assert_int_eq(first.calls, 0);
    ck_assert_int_eq(test_result_value(t), 1);
    ck_assert_int_eq(aq_task_set_result(t, &on_stack, NULL), -1);

    aq_error_set(&err, AQ_ERR_INTERNAL, "work: late");
    ck_assert_int_eq(aq_task_set_error(t, &err), -1);
    ck_assert_int_eq(aq_task_set_cancelled(t), -1);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_ptr_null(aq_task_error(t));
    ck_assert_int_eq(test_result_value(t), 1);
    ck_assert_int_eq(first.calls, 0);

    aq_task_unref(t);
    ck_assert_int_eq(free_calls_settled(test_base, &first), 1);
    ck_assert_int_eq(second.calls, 1);
}
END_TEST

START_TEST(set_error_keeps_a_copy_of_the_error)
{
    struct aq_error err;
    const struct aq_error *got;
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_error_set(&err, AQ_ERR_TIMEOUT, "job: 7: timed out after %d s", 3);
    ck_assert_int_eq(aq_task_set_error(t, &err), 0);
    memset(&err, 0, sizeof err);
    aq_error_set(&err, AQ_ERR_PARSE, "changed");

    ck_assert_int_eq(aq_task_state(t), AQ_TASK_FAILED);
    got = aq_task_error(t);
    ck_assert_ptr_nonnull(got);
    ck_assert_ptr_ne(got, &err);
    ck_assert_int_eq(got->code, AQ_ERR_TIMEOUT);
    ck_assert_str_eq(got->message, "job: 7: timed out after 3 s");
    ck_assert_ptr_null(aq_task_result(t));

    aq_task_unref(t);
}
END_TEST

START_TEST(dropping_own_reference_does_not_stop_running_task)
{
    struct free_count fc = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 30, OUTCOME_RESULT);
    w.fc = &fc;
    t = aq_task_new(test_base, &work_ops, &w);
    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_unref(t);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(log.states[0], AQ_TASK_DONE);
    ck_assert_int_eq(log.values[0], 42);
    ck_assert_int_eq(w.cancel_calls, 0);
    /* Nobody holds it any more: it is freed once it has finished. */
    ck_assert_int_eq(free_calls_settled(test_base, &fc), 1);
    ck_assert_int_eq(log.n, 1);

    work_release(&w);
}
END_TEST

START_TEST(dropping_own_reference_does_not_stop_pending_task)
{
    struct free_count fc = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 10, OUTCOME_RESULT);
    w.fc = &fc;
    t = aq_task_new(test_base, &work_ops, &w);
    aq_task_add_done_cb(t, log_done_cb, &e);
    aq_task_unref(t);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(w.start_calls, 1);
    ck_assert_int_eq(log.states[0], AQ_TASK_DONE);
    ck_assert_int_eq(log.values[0], 42);
    ck_assert_int_eq(free_calls_settled(test_base, &fc), 1);

    work_release(&w);
}
END_TEST

/* Done callbacks */

START_TEST(done_callbacks_run_from_the_loop_in_the_order_added)
{
    struct done_log log = {.want = 3};
    struct done_entry e[3] = {{&log, 1}, {&log, 2}, {&log, 3}};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);
    int i;

    for (i = 0; i < 3; i++)
        aq_task_add_done_cb(t, log_done_cb, &e[i]);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 0);

    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(9, NULL), test_result_free), 0);
    ck_assert_int_eq(log.n, 0);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 3);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(log.ids[i], i + 1);
        ck_assert_ptr_eq(log.tasks[i], t);
        ck_assert_int_eq(log.states[i], AQ_TASK_DONE);
        ck_assert_int_eq(log.values[i], 9);
    }

    aq_task_unref(t);
}
END_TEST

START_TEST(done_callback_added_after_finish_runs_soon)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct aq_error err;
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_error_set(&err, AQ_ERR_INTERNAL, "work: broken");
    ck_assert_int_eq(aq_task_set_error(t, &err), 0);
    run_for(test_base, QUIET_MS);

    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert_int_eq(log.n, 0);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_ptr_eq(log.tasks[0], t);
    ck_assert_int_eq(log.states[0], AQ_TASK_FAILED);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_task_unref(t);
}
END_TEST

START_TEST(remove_done_cb_withdraws_the_first_match_not_yet_run)
{
    struct done_log log = {.want = 2};
    struct done_entry a = {&log, 1}, b = {&log, 2}, c = {&log, 3};
    struct unref_probe probe = {0};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_task_add_done_cb(t, log_done_cb, &a);
    aq_task_add_done_cb(t, log_done_cb, &b);
    aq_task_add_done_cb(t, log_done_cb, &a);
    ck_assert(!aq_task_remove_done_cb(t, log_done_cb, &c));
    ck_assert(!aq_task_remove_done_cb(t, unref_done_cb, &a));
    ck_assert(!aq_task_remove_done_cb(t, unref_done_cb, &probe));
    ck_assert(aq_task_remove_done_cb(t, log_done_cb, &a));

    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(1, NULL), test_result_free), 0);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    /* The first a went; b and the second a are left, in that order. */
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(log.ids[0], 2);
    ck_assert_int_eq(log.ids[1], 1);
    ck_assert(!probe.ran);

    /* Callbacks that already ran are not found. */
    ck_assert(!aq_task_remove_done_cb(t, log_done_cb, &b));
    ck_assert(!aq_task_remove_done_cb(t, log_done_cb, &a));

    aq_task_unref(t);
}
END_TEST

START_TEST(remove_done_cb_after_finish_stops_the_scheduled_callback)
{
    struct done_log log = {.want = 1};
    struct done_entry a = {&log, 1}, b = {&log, 2};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_task_add_done_cb(t, log_done_cb, &a);
    aq_task_add_done_cb(t, log_done_cb, &b);
    ck_assert_int_eq(aq_task_set_cancelled(t), 0);
    ck_assert(aq_task_remove_done_cb(t, log_done_cb, &a));

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(log.ids[0], 2);
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);

    aq_task_unref(t);
}
END_TEST

START_TEST(done_callback_may_drop_the_last_reference)
{
    struct free_count fc = {0};
    struct unref_probe probe = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 10, OUTCOME_RESULT);
    w.fc = &fc;
    t = aq_task_new(test_base, &work_ops, &w);
    /* The test's reference now belongs to unref_done_cb. */
    aq_task_add_done_cb(t, unref_done_cb, &probe);
    aq_task_add_done_cb(t, log_done_cb, &e);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert(probe.ran);
    ck_assert_int_eq(probe.state, AQ_TASK_DONE);
    ck_assert_int_eq(probe.value, 42);
    ck_assert_int_eq(log.states[0], AQ_TASK_DONE);
    ck_assert_int_eq(log.values[0], 42);
    ck_assert_int_eq(free_calls_settled(test_base, &fc), 1);
    ck_assert_int_eq(log.n, 1);

    work_release(&w);
}
END_TEST

/* Cancellation */

START_TEST(cancel_of_pending_task_cancels_it_without_starting)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 10, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    aq_task_add_done_cb(t, log_done_cb, &e);

    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(aq_task_is_finished(t));
    ck_assert_ptr_null(aq_task_result(t));
    ck_assert_ptr_null(aq_task_error(t));
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(w.start_calls, 0);
    ck_assert_int_eq(w.cancel_calls, 0);
    ck_assert_int_eq(log.n, 1);
    ck_assert(!aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(cancel_of_running_task_calls_the_cancel_hook)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 1000, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);

    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(w.cancel_calls, 1);
    ck_assert_int_eq(w.cancel_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);
    run_for(test_base, QUIET_MS);
    ck_assert(!w.finished);
    ck_assert(!aq_task_cancel(t));
    ck_assert_int_eq(w.cancel_calls, 1);
    ck_assert_int_eq(log.n, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(second_cancel_while_cancelling_returns_false)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 1000, OUTCOME_RESULT);
    t = aq_task_new(test_base, &async_cancel_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert(!aq_task_is_cancelling(t));

    ck_assert(aq_task_cancel(t));
    ck_assert(aq_task_is_cancelling(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);
    ck_assert(!aq_task_cancel(t));
    ck_assert(aq_task_is_cancelling(t));
    ck_assert_int_eq(w.cancel_calls, 1);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(!aq_task_cancel(t));
    ck_assert_int_eq(w.cancel_calls, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(asynchronous_cancel_ends_cancelled_when_the_work_stops)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;
    int64_t start_us;

    work_init(&w, test_base, 1000, OUTCOME_RESULT);
    w.cancel_delay_ms = 40;
    t = aq_task_new(test_base, &async_cancel_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);

    start_us = aq_clock_mono_us();
    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);
    ck_assert(!aq_task_is_finished(t));
    run_for(test_base, 10);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);
    ck_assert_int_eq(log.n, 0);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert(w.cancel_finished);
    ck_assert_int_eq(w.cancel_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);
    ck_assert_int_ge(log.at_us[0] - start_us, 40000);
    ck_assert(!aq_task_timed_out(t));
    ck_assert(!w.finished);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(cancel_of_finished_task_returns_false_and_changes_nothing)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct aq_error err;
    struct work w;
    struct aq_task *t, *f;

    work_init(&w, test_base, -1, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));

    ck_assert(!aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 42);
    ck_assert(!aq_task_is_cancelling(t));
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(w.cancel_calls, 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    f = aq_task_new(test_base, NULL, NULL);
    aq_error_set(&err, AQ_ERR_NO_JOB, "job: 3: no such job");
    ck_assert_int_eq(aq_task_set_error(f, &err), 0);
    ck_assert(!aq_task_cancel(f));
    ck_assert_int_eq(aq_task_state(f), AQ_TASK_FAILED);
    ck_assert_int_eq(aq_task_error(f)->code, AQ_ERR_NO_JOB);
    ck_assert(!aq_task_is_cancelling(f));

    aq_task_unref(f);
    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(cancel_without_cancel_hook_cancels_at_once)
{
    struct free_count fc = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 30, OUTCOME_RESULT);
    w.fc = &fc;
    t = aq_task_new(test_base, &no_cancel_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);

    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(aq_task_is_finished(t));
    ck_assert(!aq_task_cancel(t));

    /* The work did not hear of it; its late result is refused and freed. */
    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, -1);
    ck_assert_int_eq(fc.calls, 1);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert_ptr_null(aq_task_result(t));

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(log.n, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(work_ignoring_cancel_ends_done)
{
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 40, OUTCOME_RESULT);
    t = aq_task_new(test_base, &ignore_cancel_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));

    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(w.cancel_calls, 1);
    ck_assert(aq_task_is_cancelling(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);

    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 42);
    ck_assert(!aq_task_timed_out(t));
    ck_assert(!aq_task_cancel(t));

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

/* Futures */

START_TEST(future_stays_pending_until_settled)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_task_add_done_cb(t, log_done_cb, &e);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_PENDING);
    ck_assert(!aq_task_is_finished(t));
    ck_assert_ptr_null(aq_task_result(t));
    ck_assert_int_eq(log.n, 0);

    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(3, NULL), test_result_free), 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 3);
    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(log.values[0], 3);

    aq_task_unref(t);
}
END_TEST

START_TEST(future_cancel_is_immediate)
{
    struct free_count fc = {0};
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct aq_task *t = aq_task_new(test_base, NULL, NULL);

    aq_task_add_done_cb(t, log_done_cb, &e);
    ck_assert(aq_task_cancel(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert(aq_task_is_finished(t));
    ck_assert_int_eq(log.n, 0);

    ck_assert_int_eq(
        aq_task_set_result(t, test_result_new(4, &fc), test_result_free), -1);
    ck_assert_int_eq(fc.calls, 1);
    ck_assert(!aq_task_cancel(t));

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);

    aq_task_unref(t);
}
END_TEST

/* Timeouts (wait_for) */

START_TEST(timeout_cancels_a_slow_task)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;
    int64_t start_us;

    work_init(&w, test_base, 1000, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);

    start_us = aq_clock_mono_us();
    aq_task_set_timeout(t, 50000);
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_ge(log.at_us[0] - start_us, 50000);
    ck_assert(aq_task_timed_out(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert_int_eq(log.states[0], AQ_TASK_CANCELLED);
    ck_assert_int_eq(w.cancel_calls, 1);
    ck_assert(!w.finished);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(timeout_leaves_a_fast_task_alone)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 5, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    aq_task_add_done_cb(t, log_done_cb, &e);
    aq_task_set_timeout(t, 100000);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    /* Past the 100 ms mark: the timeout does not touch a finished task. */
    run_for(test_base, 150);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert_int_eq(test_result_value(t), 42);
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(w.cancel_calls, 0);
    ck_assert_int_eq(log.n, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(set_timeout_replaces_the_earlier_timeout)
{
    struct done_log log = {.want = 1};
    struct done_entry e = {&log, 1};
    struct work w;
    struct aq_task *t;
    int64_t start_us;

    work_init(&w, test_base, 1000, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));
    aq_task_add_done_cb(t, log_done_cb, &e);

    aq_task_set_timeout(t, 20000);
    start_us = aq_clock_mono_us();
    aq_task_set_timeout(t, 150000);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_RUNNING);
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(w.cancel_calls, 0);

    ck_assert(run_until(test_base, &log.done, DEADLINE_MS));
    ck_assert_int_ge(log.at_us[0] - start_us, 150000);
    ck_assert(aq_task_timed_out(t));
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_CANCELLED);
    ck_assert_int_eq(w.cancel_calls, 1);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

START_TEST(negative_timeout_removes_the_timeout)
{
    struct work w;
    struct aq_task *t;

    work_init(&w, test_base, 80, OUTCOME_RESULT);
    t = aq_task_new(test_base, &work_ops, &w);
    ck_assert(run_until(test_base, &w.started, DEADLINE_MS));

    aq_task_set_timeout(t, 20000);
    aq_task_set_timeout(t, -1);
    ck_assert(run_until(test_base, &w.finished, DEADLINE_MS));
    ck_assert_int_eq(w.finish_rc, 0);
    ck_assert_int_eq(aq_task_state(t), AQ_TASK_DONE);
    ck_assert(!aq_task_timed_out(t));
    ck_assert_int_eq(w.cancel_calls, 0);

    aq_task_unref(t);
    work_release(&w);
}
END_TEST

Suite *
task_suite(void)
{
    Suite *s = suite_create("task");
    TCase *tc;

    tc = test_tcase_with_base("state");
    tcase_add_test(tc, state_names_are_the_asyncio_words);
    tcase_add_test(tc, new_task_is_pending_until_the_loop_starts_it);
    tcase_add_test(tc, work_finishing_inside_start_ends_done_once);
    tcase_add_test(tc, work_reporting_an_error_ends_failed);
    tcase_add_test(tc, work_cancelling_itself_ends_cancelled);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("result");
    tcase_add_test(tc, result_is_freed_once_when_the_last_reference_drops);
    tcase_add_test(tc,
                   set_result_on_finished_task_fails_and_frees_the_new_result);
    tcase_add_test(tc, set_error_keeps_a_copy_of_the_error);
    tcase_add_test(tc, dropping_own_reference_does_not_stop_running_task);
    tcase_add_test(tc, dropping_own_reference_does_not_stop_pending_task);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("done_cb");
    tcase_add_test(tc, done_callbacks_run_from_the_loop_in_the_order_added);
    tcase_add_test(tc, done_callback_added_after_finish_runs_soon);
    tcase_add_test(tc, remove_done_cb_withdraws_the_first_match_not_yet_run);
    tcase_add_test(tc,
                   remove_done_cb_after_finish_stops_the_scheduled_callback);
    tcase_add_test(tc, done_callback_may_drop_the_last_reference);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("cancel");
    tcase_add_test(tc, cancel_of_pending_task_cancels_it_without_starting);
    tcase_add_test(tc, cancel_of_running_task_calls_the_cancel_hook);
    tcase_add_test(tc, second_cancel_while_cancelling_returns_false);
    tcase_add_test(tc, asynchronous_cancel_ends_cancelled_when_the_work_stops);
    tcase_add_test(tc,
                   cancel_of_finished_task_returns_false_and_changes_nothing);
    tcase_add_test(tc, cancel_without_cancel_hook_cancels_at_once);
    tcase_add_test(tc, work_ignoring_cancel_ends_done);
    tcase_add_test(tc, future_stays_pending_until_settled);
    tcase_add_test(tc, future_cancel_is_immediate);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("timeout");
    tcase_add_test(tc, timeout_cancels_a_slow_task);
    tcase_add_test(tc, timeout_leaves_a_fast_task_alone);
    tcase_add_test(tc, set_timeout_replaces_the_earlier_timeout);
    tcase_add_test(tc, negative_timeout_removes_the_timeout);
    suite_add_tcase(s, tc);
    return s;
}
