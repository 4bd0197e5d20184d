/* SPDX-License-Identifier: MIT */
/*
 * lib/consumer.c: the consumers that run jobs, and the graceful stop.
 *
 * A consumer is an aq_task whose work is the loop get -> start an attempt
 * -> the attempt ends (done, a retry after backoff, failed, cancelled, or
 * back to pending when a stop cut it). Handlers may end a run inside start
 * (echo): the consumer then goes on iteratively instead of recursing. A
 * consumer may be freed only from its task's done-callback, so no caller
 * up the stack holds a dangling pointer.
 *
 * A stop goes through stages: drain (a join over every queue), grace
 * (consumers take no new job; busy ones have grace_s to finish), cancel
 * (the busy ones are interrupted: their jobs go back to pending).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "task.h"
#include "wait.h"
#include "xmalloc.h"

static void consumer_next(struct consumer *c);

static void
outcome_clear(struct aq_outcome *out)
{
    free(out->result);
    free(out->err_code);
    free(out->err_message);
    free(out->err_traceback);
    memset(out, 0, sizeof *out);
}

/* ---- attempts ---- */

const char *const aq_fail_reasons[AQ_FAIL_REASONS + 1] = {
    "exit",  "signal",   "timeout",       "spawn",       "invalid_args",
    "crash", "status",   "connect",       "dns",         "tls",
    "reset", "protocol", "too_large",     "redirects",   "forbidden",
    "url",   "args",     "lease_expired", "worker_lost", "exception",
    "other", NULL,
};

void
broker_count_failure(struct broker_queue *bq, const char *code)
{
    size_t i = 0;

    while (i < AQ_FAIL_REASONS - 1 &&
           (code == NULL || strcmp(code, aq_fail_reasons[i]) != 0))
        i++;
    bq->n_fail_by[i]++;
}

/* min(max, initial * factor^(attempt-1)): factor^n may reach inf (and
 * 0 * inf is NaN), so anything not below max is max, and no initial delay
 * is none whatever the factor. */
static double
backoff_s(const struct broker_queue *bq, unsigned attempt)
{
    double d;

    if (!(bq->cfg.backoff.initial > 0))
        return 0;
    d = bq->cfg.backoff.initial *
        pow(bq->cfg.backoff.factor, (double)attempt - 1);
    return d < bq->cfg.backoff.max ? d : bq->cfg.backoff.max;
}

/* j goes back to waiting, its attempt over: delay_us from now. */
static void
job_requeue(struct aq_broker *b, struct aq_job *j, int64_t delay_us)
{
    struct broker_queue *bq = job_queue(j);

    job_set_state(j, delay_us > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING);
    aq_queue_requeue(bq->q, &j->qi, j->qi.priority, delay_us, NULL);
    b->store->ops->requeue(b->store, j);
}

enum aq_job_state
attempt_finish(struct aq_job *j, struct aq_outcome *out, enum interrupt why)
{
    struct broker_queue *bq = job_queue(j);
    struct aq_broker *b = bq->b;
    struct aq_job_ext *x = aq_job_ext(j);
    enum aq_job_state st;

    bq->nbusy--;
    free(x->result);
    x->result = out->result;
    out->result = NULL;
    if (why == INT_SHUTDOWN && !out->ok) {
        job_requeue(b, j, 0);
        aq_log_job(AQ_LOG_INFO, j->id, bq->cfg.name,
                   "job %llu: interrupted by shutdown, pending again",
                   (unsigned long long)j->id);
        outcome_clear(out);
        return AQ_JOB_PENDING;
    }
    if (j->attempts < UINT16_MAX)
        j->attempts++;
    if (out->ok) {
        aq_job_set_error(j, NULL, NULL);
        st = AQ_JOB_DONE;
        job_finish(b, j, st);
    } else if (why == INT_CANCEL) {
        aq_job_set_error(j, "cancelled", "cancelled by request");
        st = AQ_JOB_CANCELLED;
        job_finish(b, j, st);
    } else {
        if (why == INT_TIMEOUT) {
            char msg[128];

            snprintf(msg, sizeof msg, "timed out after %g s",
                     (double)job_timeout_us(j) / 1e6);
            aq_job_set_error(j, "timeout", msg);
        } else {
            aq_job_set_error(j, out->err_code, out->err_message);
            x->err_traceback = out->err_traceback;
            out->err_traceback = NULL;
        }
        broker_count_failure(bq, x->err_code);
        if (!out->is_final && j->attempts <= job_retries(j)) {
            /* The server's Retry-After, if it gave one, else the backoff.
             * The retry is a start like any: a rate limit still applies. */
            int64_t delay_us =
                out->has_retry_after
                    ? out->retry_after_us
                    : aq_clock_s_to_us(backoff_s(bq, j->attempts));

            bq->n_retried++;
            aq_log_job(AQ_LOG_INFO, j->id, bq->cfg.name,
                       "job %llu: attempt %u failed (%s), retry in %g s%s",
                       (unsigned long long)j->id, j->attempts, x->err_code,
                       (double)delay_us / 1e6,
                       out->has_retry_after ? " (Retry-After)" : "");
            job_requeue(b, j, delay_us);
            st = j->state;
        } else {
            st = AQ_JOB_FAILED;
            job_finish(b, j, st);
        }
    }
    outcome_clear(out);
    return st;
}

/* An attempt of the consumer's job ended with out (taken). */
static void
attempt_end(struct consumer *c, struct aq_outcome *out)
{
    struct aq_job *j = c->job;
    enum interrupt why = c->interrupt;

    evtimer_del(c->timeout_ev);
    c->job = NULL;
    c->interrupt = INT_NONE;
    attempt_finish(j, out, why);
}

static void
run_done_cb(void *arg, struct aq_outcome *out)
{
    struct consumer *c = arg;

    if (c->in_start) {
        c->sync_out = *out;
        c->has_sync_out = true;
        return;
    }
    c->run = NULL;
    attempt_end(c, out);
    consumer_next(c);
}

static void
job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct consumer *c = arg;
    const struct aq_handler *h = aq_handler_find(c->job->kind);

    /* A user's cancel or a shutdown already under way takes precedence. */
    if (c->interrupt != INT_NONE)
        return;
    c->interrupt = INT_TIMEOUT;
    h->cancel(c->run); /* may end the run, and free c, right here */
}

void
attempt_begin(struct broker_queue *bq, struct aq_job *j)
{
    struct aq_job_ext *x = aq_job_ext(j);

    job_set_state(j, AQ_JOB_RUNNING);
    x->started_us = aq_clock_wall_us();
    if (j->attempts == 0 && x->retried == 0) /* put -> first start */
        aq_hist_add(&bq->wait_hist, x->started_us - j->created_us);
    bq->b->store->ops->start(bq->b->store, j);
    bq->nbusy++;
}

/* Starts an attempt of j. Returns true if it already ended (go on). */
static bool
attempt_start(struct consumer *c, struct aq_job *j)
{
    struct broker_queue *bq = c->bq;
    struct aq_broker *b = bq->b;
    const struct aq_handler *h = aq_handler_find(j->kind);
    struct aq_run_env env = {b->base,  b->procs,     NULL,
                             &bq->cfg, b->own_addrs, b->nown_addrs};
    int64_t timeout_us = job_timeout_us(j);
    void *run;

    if (j->kind == AQ_KIND_HTTP && bq->http == NULL)
        bq->http = aq_http_new(b->base);
    env.http = bq->http;
    c->job = j;
    attempt_begin(bq, j);
    if (timeout_us > 0) {
        struct timeval tv = aq_clock_tv(timeout_us);

        evtimer_add(c->timeout_ev, &tv);
    }
    c->in_start = true;
    c->has_sync_out = false;
    run = h->start(&env, j, run_done_cb, c);
    c->in_start = false;
    if (!c->has_sync_out) {
        c->run = run;
        return false;
    }
    attempt_end(c, &c->sync_out);
    return true;
}

/* ---- the consumer loop ---- */

/* The consumer is done: its task finishes; its done-cb frees it. */
static void
consumer_end(struct consumer *c)
{
    if (c->is_ended)
        return;
    c->is_ended = true;
    aq_queue_cancel(c->bq->q, &c->w);
    throttle_drop(c->bq, &c->rt);
    aq_task_set_result(c->task, NULL, NULL);
}

static void
got_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
       struct aq_queue_item *it, void *arg)
{
    struct consumer *c = arg;

    if (st != AQ_QUEUE_OK) {
        consumer_end(c);
        return;
    }
    if (c->bq->rate != NULL)
        throttle_spend(c->bq, &c->rt);
    if (attempt_start(c, job_of(it)))
        consumer_next(c);
}

/* The consumer loop, iterative while runs end inside start. */
static void
consumer_next(struct consumer *c)
{
    struct broker_queue *bq = c->bq;
    struct aq_queue_item *it;

    for (;;) {
        if (c->is_retiring || bq->b->stage >= STOP_GRACE) {
            consumer_end(c);
            return;
        }
        if (bq->is_paused)
            return; /* idle until resume */
        /* Under a rate limit, a token first: else its go comes later. */
        if (bq->rate != NULL && !throttle_hold(bq, &c->rt))
            return;
        switch (aq_queue_get(bq->q, &c->w, got_cb, c, &it)) {
        case AQ_QUEUE_OK:
            if (bq->rate != NULL)
                throttle_spend(bq, &c->rt);
            if (!attempt_start(c, job_of(it)))
                return;
            break;
        case AQ_QUEUE_WAITING:
            broker_hungry(bq);
            return;
        default:
            consumer_end(c);
            return;
        }
    }
}

/* A token came for the consumer (the rate's timer). */
static void
consumer_go(struct taker *k)
{
    consumer_next(
        (struct consumer *)((char *)k - offsetof(struct consumer, rt)));
}

static void
consumer_start(struct aq_task *t, void *arg)
{
    struct consumer *c = arg;

    c->is_started = true;
    consumer_next(c);
}

/* Task cancel (a stop past its grace): interrupt the job, or end now. */
static void
consumer_cancel(struct aq_task *t, void *arg)
{
    struct consumer *c = arg;

    c->is_retiring = true;
    if (c->job == NULL) {
        consumer_end(c);
        return;
    }
    c->interrupt = INT_SHUTDOWN;
    aq_handler_find(c->job->kind)->cancel(c->run);
}

static const struct aq_task_ops consumer_ops = {consumer_start,
                                                consumer_cancel};

static void
consumer_task_done_cb(struct aq_task *t, void *arg)
{
    struct consumer *c = arg;

    c->is_ended = true; /* a task cancelled before it started never was */
    aq_queue_cancel(c->bq->q, &c->w); /* never left linked once freed */
    throttle_drop(c->bq, &c->rt);
    LIST_REMOVE(c, link);
    event_free(c->timeout_ev);
    aq_task_unref(c->task);
    free(c);
}

static void
consumer_add(struct broker_queue *bq)
{
    struct consumer *c = xcalloc(1, sizeof *c);

    c->bq = bq;
    c->rt.go = consumer_go;
    c->timeout_ev = evtimer_new(bq->b->base, job_timeout_cb, c);
    c->task = aq_task_new(bq->b->base, &consumer_ops, c);
    aq_task_add_done_cb(c->task, consumer_task_done_cb, c);
    LIST_INSERT_HEAD(&bq->consumers, c, link);
}

void
consumers_scale(struct broker_queue *bq, int target)
{
    struct consumer *c;
    int surplus;

    bq->target = target;
    if (bq->b->stage >= STOP_GRACE)
        return;
    /* Retiring consumers still count as live until they end. */
    surplus = 0;
    LIST_FOREACH (c, &bq->consumers, link) {
        if (!c->is_ended && !c->is_retiring)
            surplus++;
    }
    surplus -= target;
    /* Busy consumers told to retire and not yet ended stay instead of new
     * ones starting beside them: never more runs than asked for. */
    LIST_FOREACH (c, &bq->consumers, link) {
        if (surplus >= 0)
            break;
        if (!c->is_ended && c->is_retiring) {
            c->is_retiring = false;
            surplus++;
        }
    }
    for (; surplus < 0; surplus++)
        consumer_add(bq);
    for (int pass = 0; pass < 2 && surplus > 0; pass++) {
        LIST_FOREACH (c, &bq->consumers, link) {
            if (surplus == 0)
                break;
            if (c->is_ended || c->is_retiring || (pass == 0 && c->job != NULL))
                continue;
            c->is_retiring = true;
            surplus--;
            if (c->job == NULL)
                consumer_end(c);
        }
    }
}

void
consumers_pause(struct broker_queue *bq, bool paused)
{
    struct consumer *c;

    /* Only idle consumers that started: one not started yet takes its
     * first job from the loop, and waiting twice on one waiter would link
     * it twice into the queue (a use-after-free once the consumer ends). */
    LIST_FOREACH (c, &bq->consumers, link) {
        if (c->is_ended || !c->is_started || c->job != NULL)
            continue;
        if (paused) {
            aq_queue_cancel(bq->q, &c->w); /* idle: stop waiting for jobs */
            throttle_drop(bq, &c->rt);
        } else
            consumer_next(c);
    }
    leases_pause(bq, paused);
}

void
consumer_cancel_job(struct aq_job *j)
{
    struct consumer *c;

    if (j->ext != NULL && j->ext->lease != NULL) {
        lease_cancel_job(j);
        return;
    }

    LIST_FOREACH (c, &job_queue(j)->consumers, link) {
        if (c->job == j)
            break;
    }
    if (c->interrupt != INT_CANCEL) {
        c->interrupt = INT_CANCEL;
        aq_handler_find(j->kind)->cancel(c->run);
    }
}

void
consumers_free(struct broker_queue *bq)
{
    struct consumer *c;

    while ((c = LIST_FIRST(&bq->consumers)) != NULL) {
        aq_task_remove_done_cb(c->task, consumer_task_done_cb, c);
        if (c->run != NULL)
            aq_handler_find(c->job->kind)->abandon(c->run);
        aq_queue_cancel(bq->q, &c->w);
        throttle_drop(bq, &c->rt);
        aq_task_set_cancelled(c->task);
        LIST_REMOVE(c, link);
        event_free(c->timeout_ev);
        aq_task_unref(c->task);
        free(c);
    }
}

/* ---- the graceful stop ---- */

static void
stop_finish(struct aq_broker *b)
{
    b->stage = STOP_DONE;
    aq_log(AQ_LOG_INFO, "broker: every consumer has ended");
    if (b->stop_done != NULL)
        b->stop_done(b->stop_arg);
}

/* The live consumer tasks of every queue, as a new array (the caller's). */
static struct aq_task **
live_tasks(struct aq_broker *b, size_t *n)
{
    struct aq_task **tasks = NULL;
    struct broker_queue *bq;
    struct consumer *c;
    size_t cap = 0;

    *n = 0;
    STAILQ_FOREACH (bq, &b->queues, link) {
        LIST_FOREACH (c, &bq->consumers, link) {
            if (c->is_ended)
                continue;
            if (*n + 1 >= cap) {
                cap = cap != 0 ? cap * 2 : 16;
                tasks = xreallocarray(tasks, cap, sizeof *tasks);
            }
            tasks[(*n)++] = c->task;
        }
    }
    /* The workers' leases, as one more task. */
    if (b->lease_task != NULL && !aq_task_is_finished(b->lease_task)) {
        if (*n + 1 >= cap) {
            cap = cap != 0 ? cap * 2 : 16;
            tasks = xreallocarray(tasks, cap, sizeof *tasks);
        }
        tasks[(*n)++] = b->lease_task;
    }
    return tasks;
}

static void stop_wait_cb(struct aq_wait *w, enum aq_wait_event ev,
                         struct aq_task *t, void *arg);

/* Waits for the live consumers: with a timeout (the grace) that cancels
 * them, or, once cancelled, for as long as they take to stop. */
static void
stop_wait_consumers(struct aq_broker *b, int64_t timeout_us)
{
    size_t n;
    struct aq_task **tasks = live_tasks(b, &n);

    aq_wait_free(b->stop_wait);
    b->stop_wait = aq_wait_new(b->base, tasks, n, AQ_WAIT_ALL, timeout_us, true,
                               stop_wait_cb, b);
    free(tasks);
}

static void
stop_wait_cb(struct aq_wait *w, enum aq_wait_event ev, struct aq_task *t,
             void *arg)
{
    struct aq_broker *b = arg;

    if (ev == AQ_WAIT_TASK)
        return;
    aq_wait_free(w);
    b->stop_wait = NULL;
    if (ev == AQ_WAIT_TIMEOUT) {
        /* cancel_on_timeout interrupted the busy ones: their jobs go back
         * to pending as their processes stop. Wait for that. */
        aq_log(AQ_LOG_INFO, "broker: shutdown grace over, interrupting jobs");
        b->stage = STOP_CANCEL;
        stop_wait_consumers(b, -1);
        return;
    }
    stop_finish(b);
}

/* Consumers stop taking jobs; busy ones have grace_s to finish theirs. */
static void
stop_grace(struct aq_broker *b)
{
    struct broker_queue *bq;
    struct consumer *c;

    b->stage = STOP_GRACE;
    b->lease_task = leases_stop(b);
    STAILQ_FOREACH (bq, &b->queues, link) {
        LIST_FOREACH (c, &bq->consumers, link) {
            if (!c->is_ended && c->job == NULL)
                consumer_end(c);
        }
    }
    stop_wait_consumers(b, aq_clock_s_to_us(b->grace_s));
}

static void
drained_cb(void *arg, int st, const struct aq_error *err)
{
    struct aq_broker *b = arg;

    aq_log(AQ_LOG_INFO, "broker: drained, every queue is empty");
    stop_grace(b);
}

void
aq_broker_stop(struct aq_broker *b, bool drain, double grace_s,
               void (*done)(void *arg), void *arg)
{
    if (b->stage != STOP_NONE)
        return;
    b->stage = STOP_DRAIN;
    b->grace_s = grace_s;
    b->stop_done = done;
    b->stop_arg = arg;
    sched_stop(b->sched);
    broker_putters_stop(b);
    if (drain && (b->drain = broker_join_new(b, NULL, drained_cb, b)) != NULL) {
        aq_log(AQ_LOG_INFO, "broker: draining the queues before stopping");
        return;
    }
    stop_grace(b);
}

void
aq_broker_stop_now(struct aq_broker *b)
{
    struct broker_queue *bq;
    struct consumer *c;

    switch (b->stage) {
    case STOP_DRAIN:
        if (b->drain != NULL) {
            broker_join_free(b->drain);
            b->drain = NULL;
        }
        b->grace_s = 0;
        stop_grace(b);
        break;
    case STOP_GRACE:
        /* Cancel now instead of at the end of the grace. */
        b->stage = STOP_CANCEL;
        aq_wait_free(b->stop_wait);
        b->stop_wait = NULL;
        STAILQ_FOREACH (bq, &b->queues, link) {
            LIST_FOREACH (c, &bq->consumers, link) {
                if (!c->is_ended)
                    aq_task_cancel(c->task);
            }
        }
        if (b->lease_task != NULL)
            aq_task_cancel(b->lease_task);
        stop_wait_consumers(b, -1);
        break;
    default:
        break;
    }
}
