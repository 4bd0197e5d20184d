/* SPDX-License-Identifier: MIT */
/*
 * lib/broker.c: queues of jobs and the consumers that run them.
 *
 * Every job the broker knows (unfinished, or a finished record not yet
 * expired) is in the id map, which owns it. An unfinished job is in its
 * queue (delayed or pending) or held by one consumer (running). A finished
 * job sits in the list of records in finish order, using the links of its
 * queue item, until results.max or results.ttl evicts it.
 *
 * A consumer is an aq_task whose work is the loop get -> run -> task_done.
 * Handlers may end a run inside start (echo): the consumer then goes on
 * iteratively instead of recursing. A consumer may be freed only from its
 * task's done-callback, so no caller up the stack holds a dangling pointer.
 */
#include "broker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "clock.h"
#include "config.h"
#include "error.h"
#include "handler.h"
#include "hist.h"
#include "http.h"
#include "idmap.h"
#include "job.h"
#include "journal.h"
#include "log.h"
#include "queue.h"
#include "recarena.h"
#include "task.h"
#include "wait.h"
#include "xmalloc.h"

#define EXPIRE_INTERVAL_US 1000000

enum interrupt { INT_NONE, INT_TIMEOUT, INT_CANCEL, INT_SHUTDOWN };

struct consumer {
    struct bqueue *bq;
    struct aq_task *task;     /* the broker's reference */
    struct aq_queue_waiter w; /* a get while idle */
    struct aq_job *job;       /* running; NULL when idle */
    void *run;                /* the handler's run of job */
    struct event *timeout_ev; /* owned: the job's timeout */
    enum interrupt interrupt; /* why run was cancelled */
    bool is_started;          /* its task started: it may wait for jobs */
    bool is_retiring;         /* end once idle (scale down, stop) */
    bool is_ended;            /* task finished; freed by its done-cb */
    bool in_start;            /* inside handler->start */
    bool has_sync_out;        /* the run ended inside start */
    struct aq_outcome sync_out;
    struct consumer *prev, *next;
};

struct bqueue {
    struct aq_broker *b;
    struct aq_queue_config cfg; /* owned copy; cfg.name is the name */
    enum aq_kind kind;
    struct aq_queue *q;         /* owned; items are the id map's jobs */
    struct consumer *consumers; /* owned, live and ended */
    int target;                 /* consumers asked for */
    int nlive, nbusy;
    bool is_paused;
    uint64_t n_put, n_done, n_failed, n_cancelled, n_retried;
    struct aq_hist wait_hist, run_hist;
    struct aq_http *http; /* owned: connection pool, made by the first http
                             job */
    struct bqueue *next;
};

struct aq_put_waiter {
    struct aq_broker *b;
    struct bqueue *bq;
    struct aq_queue_waiter w;
    struct aq_job *job; /* owned until queued */
    aq_put_cb *cb;
    void *arg;
    struct aq_put_waiter *prev, *next;
};

struct join_part {
    struct aq_queue_waiter w;
    struct aq_join *join;
    struct bqueue *bq;
};

struct aq_join {
    struct aq_broker *b;
    aq_join_cb *cb; /* NULL for the broker's own drain */
    void *arg;
    size_t nparts, left;
    struct join_part *parts; /* owned */
    struct aq_join *prev, *next;
};

enum stop_stage { STOP_NONE, STOP_DRAIN, STOP_GRACE, STOP_CANCEL, STOP_DONE };

struct aq_broker {
    struct event_base *base; /* borrowed */
    struct aq_procs *procs;  /* borrowed */
    struct bqueue *queues;   /* owned */
    struct aq_idmap *jobs;   /* owns every job */
    json_t *keys;            /* idempotency key -> job id */
    uint64_t last_id;
    struct aq_job *fin_head, *fin_tail; /* finished records, oldest first */
    struct aq_recarena *records;        /* owned: where they are kept */
    size_t nfinished;
    double results_ttl;
    size_t results_max;
    struct event *expire_ev;       /* owned: results.ttl sweep */
    struct aq_put_waiter *putters; /* owned */
    struct aq_join *joins;         /* owned */
    struct aq_put_waiter *spare_putter;
    struct aq_journal *journal; /* borrowed; NULL = memory only */
    bool is_started;            /* consumers run (aq_broker_start) */
    size_t nclamped;            /* replayed records with values out of range */

    /* graceful stop */
    enum stop_stage stage;
    struct aq_join *drain;     /* owned */
    struct aq_wait *stop_wait; /* owned */
    double grace_s;
    void (*stop_done)(void *arg);
    void *stop_arg;

    struct sockaddr_storage *own_addrs; /* owned: the daemon's listeners */
    size_t nown_addrs;
};

static void consumer_next(struct consumer *c);
static void consumers_stop(struct aq_broker *b);

/* ---- small helpers ---- */

static struct bqueue *
queue_find(const struct aq_broker *b, const char *name)
{
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        if (strcmp(bq->cfg.name, name) == 0)
            return bq;
    }
    return NULL;
}

static struct bqueue *
queue_lookup(const struct aq_broker *b, const char *name, struct aq_error *err)
{
    struct bqueue *bq = queue_find(b, name != NULL ? name : "default");

    if (bq == NULL)
        aq_error_set(err, AQ_ERR_NO_QUEUE, "no such queue: %.100s",
                     name != NULL ? name : "default");
    return bq;
}

static struct aq_job *
job_of(struct aq_queue_item *it)
{
    return (struct aq_job *)((char *)it - offsetof(struct aq_job, qi));
}

static uint64_t
job_key(const void *value)
{
    return ((const struct aq_job *)value)->id;
}

static int64_t
job_timeout_us(const struct aq_job *j, const struct bqueue *bq)
{
    if (j->ext != NULL && j->ext->timeout_us >= 0)
        return j->ext->timeout_us;
    return aq_clock_s_to_us(bq->cfg.timeout);
}

static int
job_retries(const struct aq_job *j, const struct bqueue *bq)
{
    if (j->ext != NULL && j->ext->retries >= 0)
        return j->ext->retries;
    return bq->cfg.retries;
}

/* The state as users see it: a delayed job whose time came is pending. */
static enum aq_job_state
job_state(const struct aq_job *j)
{
    if (j->state == AQ_JOB_DELAYED && !aq_queue_item_is_delayed(&j->qi))
        return AQ_JOB_PENDING;
    return j->state;
}

static json_t *
job_record(const struct aq_job *j)
{
    json_t *rec = aq_job_record(j, ((struct bqueue *)j->queue)->cfg.name);

    json_object_set_new(rec, "state",
                        json_string(aq_job_state_name(job_state(j))));
    return rec;
}

static void
outcome_clear(struct aq_outcome *out)
{
    free(out->result);
    free(out->err_code);
    free(out->err_message);
    memset(out, 0, sizeof *out);
}

/* ---- the journal ---- */

static struct aq_jstr
jstr(const char *s)
{
    return (struct aq_jstr){s, s != NULL ? (uint32_t)strlen(s) : 0};
}

/* The wall-clock time a delayed job becomes ready; 0 when it is ready. */
static int64_t
job_due_wall_us(const struct aq_job *j)
{
    int64_t due = aq_queue_item_due_us(&j->qi);

    return due == 0 ? 0 : aq_clock_wall_us() + (due - aq_clock_mono_us());
}

/* Appends the whole record of j (PUT while unfinished, END once finished)
 * and makes that segment its home. */
static void
journal_home(struct aq_broker *b, struct aq_job *j)
{
    const struct aq_job_ext *x = j->ext;
    struct aq_jrec r = {
        .type = aq_job_is_finished(j) ? AQ_JREC_END : AQ_JREC_PUT,
        .id = j->id,
        .kind = j->kind,
        .state = j->state,
        .attempts = j->attempts,
        .priority = j->qi.priority,
        .retries = x != NULL ? x->retries : -1,
        .timeout_us = x != NULL ? x->timeout_us : -1,
        .created_us = j->created_us,
        .started_us = x != NULL ? x->started_us : 0,
        .finished_us = x != NULL ? x->finished_us : 0,
        .queue = jstr(((struct bqueue *)j->queue)->cfg.name),
    };
    uint32_t seg;

    if (r.type == AQ_JREC_PUT) {
        r.due_us = job_due_wall_us(j);
        r.args = (struct aq_jstr){j->args, j->args_len};
    }
    if (x != NULL) {
        r.key = jstr(x->key);
        r.result = jstr(x->result);
        r.err_code = jstr(x->err_code);
        r.err_message = jstr(x->err_message);
    }
    seg = aq_journal_append(b->journal, &r);
    aq_journal_hold(b->journal, seg);
    if (j->jseg != 0)
        aq_journal_release(b->journal, j->jseg);
    j->jseg = seg;
}

static void
journal_start(struct aq_broker *b, const struct aq_job *j)
{
    struct aq_jrec r = {
        .type = AQ_JREC_START, .id = j->id, .started_us = j->ext->started_us};

    if (b->journal != NULL)
        aq_journal_append(b->journal, &r);
}

/* j went back to waiting: a retry, or a stop or crash cut its attempt. */
static void
journal_requeue(struct aq_broker *b, const struct aq_job *j)
{
    const struct aq_job_ext *x = j->ext;
    struct aq_jrec r = {.type = AQ_JREC_REQUEUE,
                        .id = j->id,
                        .state = j->state,
                        .attempts = j->attempts,
                        .due_us = job_due_wall_us(j),
                        .result = jstr(x->result),
                        .err_code = jstr(x->err_code),
                        .err_message = jstr(x->err_message)};

    if (b->journal != NULL)
        aq_journal_append(b->journal, &r);
}

/* A put while the journal cannot record jobs (a full disk, a failed
 * sync) is refused at once, -32603 naming why: never queued in memory
 * as if it were durable, never a silent wait. */
static int
journal_refuses(const struct aq_broker *b, struct aq_error *err)
{
    const struct aq_error *why =
        b->journal != NULL ? aq_journal_error(b->journal) : NULL;

    if (why == NULL)
        return 0;
    if (err != NULL)
        *err = *why;
    return -1;
}

/* ---- finished records ---- */

#define FIN_PREV(j) ((j)->qi.u.link[0])
#define FIN_NEXT(j) ((j)->qi.u.link[1])

static void
record_evict(struct aq_broker *b, struct aq_job *j)
{
    struct aq_queue_item *prev = FIN_PREV(j), *next = FIN_NEXT(j);

    if (prev != NULL)
        job_of(prev)->qi.u.link[1] = next;
    else
        b->fin_head = next != NULL ? job_of(next) : NULL;
    if (next != NULL)
        job_of(next)->qi.u.link[0] = prev;
    else
        b->fin_tail = prev != NULL ? job_of(prev) : NULL;
    b->nfinished--;
    if (b->journal != NULL && j->jseg != 0)
        aq_journal_release(b->journal, j->jseg);
    aq_idmap_del(b->jobs, j->id);
    aq_trim_note(1);
    if (j->ext != NULL && j->ext->key != NULL) {
        json_t *id = json_object_get(b->keys, j->ext->key);

        if (json_integer_value(id) == (json_int_t)j->id)
            json_object_del(b->keys, j->ext->key);
    }
    aq_job_free(j);
}

static void
records_trim(struct aq_broker *b)
{
    int64_t oldest_us = aq_clock_wall_us() - aq_clock_s_to_us(b->results_ttl);

    while (b->fin_head != NULL && (b->nfinished > b->results_max ||
                                   b->fin_head->ext->finished_us < oldest_us))
        record_evict(b, b->fin_head);
}

static void
expire_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_broker *b = arg;

    records_trim(b);
    /* Many jobs went since the last look: hand their memory back to the
     * system, so RSS follows the backlog down after a burst (glibc keeps
     * freed memory otherwise). */
    aq_trim_maybe();
}

static void
record_append(struct aq_broker *b, struct aq_job *j)
{
    /* Kept records live in their own arena (see recarena.h). */
    if (b->results_max > 0) {
        struct aq_job *packed = aq_job_pack(j, b->records);

        if (packed != j)
            aq_idmap_put(b->jobs, packed);
        j = packed;
    }
    FIN_NEXT(j) = NULL;
    FIN_PREV(j) = b->fin_tail != NULL ? &b->fin_tail->qi : NULL;
    if (b->fin_tail != NULL)
        FIN_NEXT(b->fin_tail) = &j->qi;
    else
        b->fin_head = j;
    b->fin_tail = j;
    b->nfinished++;
    records_trim(b);
}

/* ---- job life ---- */

/* j has just been queued: it gets its id and becomes known. */
static void
job_queued(struct aq_broker *b, struct bqueue *bq, struct aq_job *j,
           struct aq_put_result *res)
{
    j->id = ++b->last_id;
    j->state =
        aq_queue_item_is_delayed(&j->qi) ? AQ_JOB_DELAYED : AQ_JOB_PENDING;
    aq_idmap_put(b->jobs, j);
    if (j->ext != NULL && j->ext->key != NULL)
        json_object_set_new(b->keys, j->ext->key,
                            json_integer((json_int_t)j->id));
    bq->n_put++;
    if (b->journal != NULL)
        journal_home(b, j);
    res->job = j->id;
    res->state = aq_job_state_name(j->state);
    res->duplicate = false;
    aq_log(AQ_LOG_DEBUG, "job %llu: queued on %s", (unsigned long long)j->id,
           bq->cfg.name);
}

/* j reached a final state: it is done with its queue and its waiters. */
static void
job_finish(struct aq_broker *b, struct aq_job *j, enum aq_job_state st)
{
    struct bqueue *bq = j->queue;
    struct aq_job_ext *x = aq_job_ext(j);

    j->state = (uint8_t)st;
    x->finished_us = aq_clock_wall_us();
    if (x->started_us != 0)
        aq_hist_add(&bq->run_hist, x->finished_us - x->started_us);
    if (st == AQ_JOB_DONE)
        bq->n_done++;
    else if (st == AQ_JOB_FAILED)
        bq->n_failed++;
    else
        bq->n_cancelled++;
    aq_queue_task_done(bq->q, NULL);
    if (x->future != NULL)
        aq_task_set_result(x->future, job_record(j),
                           (void (*)(void *))json_decref);
    aq_log(st == AQ_JOB_FAILED ? AQ_LOG_INFO : AQ_LOG_DEBUG,
           "job %llu: %s on %s%s%s", (unsigned long long)j->id,
           aq_job_state_name(st), bq->cfg.name,
           x->err_message != NULL ? ": " : "",
           x->err_message != NULL ? x->err_message : "");
    if (b->journal != NULL)
        journal_home(b, j);
    record_append(b, j);
}

/* min(max, initial * factor^(attempt-1)): factor^n may reach inf (and
 * 0 * inf is NaN), so anything not below max is max, and no initial delay
 * is none whatever the factor. */
static double
backoff_s(const struct bqueue *bq, unsigned attempt)
{
    double d;

    if (!(bq->cfg.backoff.initial > 0))
        return 0;
    d = bq->cfg.backoff.initial *
        pow(bq->cfg.backoff.factor, (double)attempt - 1);
    return d < bq->cfg.backoff.max ? d : bq->cfg.backoff.max;
}

/* An attempt of the consumer's job ended with out (taken). */
static void
job_end(struct consumer *c, struct aq_outcome *out)
{
    struct bqueue *bq = c->bq;
    struct aq_broker *b = bq->b;
    struct aq_job *j = c->job;
    struct aq_job_ext *x = aq_job_ext(j);
    enum interrupt why = c->interrupt;

    evtimer_del(c->timeout_ev);
    c->job = NULL;
    c->interrupt = INT_NONE;
    bq->nbusy--;

    free(x->result);
    x->result = out->result;
    out->result = NULL;
    if (why == INT_SHUTDOWN && !out->ok) {
        /* Interrupted by a graceful stop: back to pending, not counted. */
        j->state = AQ_JOB_PENDING;
        aq_queue_requeue(bq->q, &j->qi, j->qi.priority, 0, NULL);
        journal_requeue(b, j);
        aq_log(AQ_LOG_INFO, "job %llu: interrupted by shutdown, pending again",
               (unsigned long long)j->id);
        outcome_clear(out);
        return;
    }
    if (j->attempts < UINT16_MAX)
        j->attempts++;
    if (out->ok) {
        aq_job_set_error(j, NULL, NULL);
        job_finish(b, j, AQ_JOB_DONE);
    } else if (why == INT_CANCEL) {
        aq_job_set_error(j, "cancelled", "cancelled by request");
        job_finish(b, j, AQ_JOB_CANCELLED);
    } else {
        if (why == INT_TIMEOUT) {
            char msg[128];

            snprintf(msg, sizeof msg, "timed out after %g s",
                     (double)job_timeout_us(j, bq) / 1e6);
            aq_job_set_error(j, "timeout", msg);
        } else
            aq_job_set_error(j, out->err_code, out->err_message);
        if (!out->is_final && j->attempts <= job_retries(j, bq)) {
            double delay = backoff_s(bq, j->attempts);

            j->state = delay > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING;
            bq->n_retried++;
            aq_log(AQ_LOG_INFO,
                   "job %llu: attempt %u failed (%s), retry in %g s",
                   (unsigned long long)j->id, j->attempts, x->err_code, delay);
            aq_queue_requeue(bq->q, &j->qi, j->qi.priority,
                             aq_clock_s_to_us(delay), NULL);
            journal_requeue(b, j);
        } else
            job_finish(b, j, AQ_JOB_FAILED);
    }
    outcome_clear(out);
}

/* ---- consumers ---- */

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
    job_end(c, out);
    consumer_next(c);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct consumer *c = arg;
    const struct aq_handler *h = aq_handler_find(c->job->kind);

    /* A user's cancel or a shutdown already under way takes precedence. */
    if (c->interrupt != INT_NONE)
        return;
    c->interrupt = INT_TIMEOUT;
    h->cancel(c->run); /* may end the run, and free c, right here */
}

/* Starts an attempt of j. Returns true if it already ended (go on). */
static bool
run_job(struct consumer *c, struct aq_job *j)
{
    struct bqueue *bq = c->bq;
    const struct aq_handler *h = aq_handler_find(j->kind);
    struct aq_run_env env = {bq->b->base, bq->b->procs,     NULL,
                             &bq->cfg,    bq->b->own_addrs, bq->b->nown_addrs};
    struct aq_job_ext *x = aq_job_ext(j);
    int64_t timeout_us = job_timeout_us(j, bq);
    void *run;

    if (j->kind == AQ_KIND_HTTP && bq->http == NULL)
        bq->http = aq_http_new(bq->b->base);
    env.http = bq->http;
    c->job = j;
    j->state = AQ_JOB_RUNNING;
    x->started_us = aq_clock_wall_us();
    if (j->attempts == 0)
        aq_hist_add(&bq->wait_hist, x->started_us - j->created_us);
    journal_start(bq->b, j);
    bq->nbusy++;
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
    job_end(c, &c->sync_out);
    return true;
}

/* The consumer is done: its task finishes; its done-cb frees it. */
static void
consumer_end(struct consumer *c)
{
    struct bqueue *bq = c->bq;

    if (c->is_ended)
        return;
    c->is_ended = true;
    bq->nlive--;
    aq_queue_cancel(bq->q, &c->w);
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
    if (run_job(c, job_of(it)))
        consumer_next(c);
}

/* The consumer loop, iterative while runs end inside start. */
static void
consumer_next(struct consumer *c)
{
    struct bqueue *bq = c->bq;
    struct aq_queue_item *it;

    for (;;) {
        if (c->is_retiring || bq->b->stage >= STOP_GRACE) {
            consumer_end(c);
            return;
        }
        if (bq->is_paused)
            return; /* idle until resume */
        switch (aq_queue_get(bq->q, &c->w, got_cb, c, &it)) {
        case AQ_QUEUE_OK:
            if (!run_job(c, job_of(it)))
                return;
            break;
        case AQ_QUEUE_WAITING:
            return;
        default:
            consumer_end(c);
            return;
        }
    }
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
consumer_unlink(struct consumer *c)
{
    struct bqueue *bq = c->bq;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        bq->consumers = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

static void
consumer_task_done_cb(struct aq_task *t, void *arg)
{
    struct consumer *c = arg;

    /* A task cancelled before it started never ran consumer_end. */
    if (!c->is_ended) {
        c->is_ended = true;
        c->bq->nlive--;
    }
    aq_queue_cancel(c->bq->q, &c->w); /* never left linked once freed */
    consumer_unlink(c);
    event_free(c->timeout_ev);
    aq_task_unref(c->task);
    free(c);
}

static void
consumer_add(struct bqueue *bq)
{
    struct consumer *c = xcalloc(1, sizeof *c);

    c->bq = bq;
    c->timeout_ev = evtimer_new(bq->b->base, timeout_cb, c);
    c->task = aq_task_new(bq->b->base, &consumer_ops, c);
    aq_task_add_done_cb(c->task, consumer_task_done_cb, c);
    c->next = bq->consumers;
    if (bq->consumers != NULL)
        bq->consumers->prev = c;
    bq->consumers = c;
    bq->nlive++;
}

/* Brings the live consumers to target: new ones start from the loop;
 * surplus ones end, idle ones first, busy ones after their job. */
static void
queue_scale(struct bqueue *bq, int target)
{
    int surplus;

    bq->target = target;
    if (bq->b->stage >= STOP_GRACE)
        return;
    /* Retiring consumers still count as live until they end. */
    surplus = 0;
    for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
        if (!c->is_ended && !c->is_retiring)
            surplus++;
    }
    surplus -= target;
    /* Busy consumers told to retire and not yet ended stay instead of new
     * ones starting beside them: never more runs than asked for. */
    for (struct consumer *c = bq->consumers; c != NULL && surplus < 0;
         c = c->next) {
        if (!c->is_ended && c->is_retiring) {
            c->is_retiring = false;
            surplus++;
        }
    }
    for (; surplus < 0; surplus++)
        consumer_add(bq);
    for (int pass = 0; pass < 2 && surplus > 0; pass++) {
        for (struct consumer *c = bq->consumers; c != NULL && surplus > 0;
             c = c->next) {
            if (c->is_ended || c->is_retiring || (pass == 0 && c->job != NULL))
                continue;
            c->is_retiring = true;
            surplus--;
            if (c->job == NULL)
                consumer_end(c);
        }
    }
}

/* ---- queues ---- */

static void
queue_apply_config(struct bqueue *bq, const struct aq_queue_config *qc)
{
    if (&bq->cfg != qc) {
        aq_queue_config_clear(&bq->cfg);
        aq_queue_config_copy(&bq->cfg, qc);
    }
    if (aq_kind_parse(qc->kind, &bq->kind) < 0)
        bq->kind = AQ_KIND_EXEC;
    aq_queue_set_maxsize(bq->q, qc->maxsize);
}

static struct bqueue *
queue_new(struct aq_broker *b, const struct aq_queue_config *qc)
{
    struct bqueue *bq = xcalloc(1, sizeof *bq), **pp;
    struct aq_queue_opts opts = {
        .maxsize = qc->maxsize,
        .order = qc->order == AQ_ORDER_LIFO ? AQ_QUEUE_LIFO : AQ_QUEUE_PRIORITY,
    };

    bq->b = b;
    aq_queue_config_copy(&bq->cfg, qc);
    bq->q = aq_queue_new(b->base, &opts);
    queue_apply_config(bq, &bq->cfg);
    /* At the tail: stats list queues in config order. */
    for (pp = &b->queues; *pp != NULL; pp = &(*pp)->next)
        ;
    *pp = bq;
    bq->target = qc->consumers;
    if (b->is_started)
        queue_scale(bq, qc->consumers);
    return bq;
}

/* ---- public: life ---- */

void
aq_broker_start(struct aq_broker *b)
{
    b->is_started = true;
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next)
        queue_scale(bq, bq->target);
}

static void
apply_results(struct aq_broker *b, const struct aq_config *cfg)
{
    b->results_ttl = cfg->results.ttl;
    b->results_max = cfg->results.max;
    records_trim(b);
}

struct aq_broker *
aq_broker_new(struct event_base *base, struct aq_procs *procs,
              const struct aq_config *cfg)
{
    struct aq_broker *b = xcalloc(1, sizeof *b);
    struct timeval tv = aq_clock_tv(EXPIRE_INTERVAL_US);

    b->base = base;
    b->procs = procs;
    b->jobs = aq_idmap_new(job_key);
    b->records = aq_recarena_new();
    b->keys = json_object();
    apply_results(b, cfg);
    b->expire_ev = event_new(base, -1, EV_PERSIST, expire_cb, b);
    event_add(b->expire_ev, &tv);
    for (size_t i = 0; i < cfg->nqueues; i++)
        queue_new(b, &cfg->queues[i]);
    return b;
}

static void
job_free_cb(void *value, void *arg)
{
    aq_job_free(value);
}

void
aq_broker_free(struct aq_broker *b)
{
    struct bqueue *bq;

    if (b == NULL)
        return;
    while (b->putters != NULL)
        aq_broker_put_cancel(b->putters);
    while (b->joins != NULL)
        aq_broker_join_cancel(b->joins);
    if (b->drain != NULL)
        aq_broker_join_cancel(b->drain);
    aq_wait_free(b->stop_wait);
    while ((bq = b->queues) != NULL) {
        struct consumer *c;

        b->queues = bq->next;
        while ((c = bq->consumers) != NULL) {
            aq_task_remove_done_cb(c->task, consumer_task_done_cb, c);
            if (c->run != NULL)
                aq_handler_find(c->job->kind)->abandon(c->run);
            aq_queue_cancel(bq->q, &c->w);
            aq_task_set_cancelled(c->task);
            bq->consumers = c->next;
            event_free(c->timeout_ev);
            aq_task_unref(c->task);
            free(c);
        }
        aq_http_free(bq->http); /* after the runs that used it */
        aq_queue_free(bq->q);   /* no drop_cb: the id map owns the jobs */
        aq_queue_config_clear(&bq->cfg);
        free(bq);
    }
    aq_idmap_each(b->jobs, job_free_cb, NULL);
    aq_idmap_free(b->jobs);
    aq_recarena_free(b->records); /* after the records in it */
    json_decref(b->keys);
    event_free(b->expire_ev);
    free(b->spare_putter);
    free(b->own_addrs);
    free(b);
}

void
aq_broker_reconfigure(struct aq_broker *b, const struct aq_config *cfg)
{
    apply_results(b, cfg);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        const struct aq_queue_config *qc = &cfg->queues[i];
        struct bqueue *bq = queue_find(b, qc->name);

        if (bq == NULL) {
            queue_new(b, qc);
            aq_log(AQ_LOG_INFO, "reload: queue %s: added with %d consumers",
                   qc->name, qc->consumers);
            continue;
        }
        if (qc->order != bq->cfg.order)
            aq_log(AQ_LOG_WARN, "reload: queue %s: order changes at restart",
                   qc->name);
        enum aq_order order = bq->cfg.order;
        queue_apply_config(bq, qc);
        bq->cfg.order = order;
        if (b->is_started)
            queue_scale(bq, qc->consumers);
        else
            bq->target = qc->consumers;
    }
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        if (aq_config_queue(cfg, bq->cfg.name) == NULL)
            aq_log(AQ_LOG_WARN,
                   "reload: queue %s: removed from the config, kept until "
                   "restart",
                   bq->cfg.name);
    }
}

/* ---- public: put ---- */

static void
putter_unlink(struct aq_put_waiter *pw)
{
    struct aq_broker *b = pw->b;

    if (pw->prev != NULL)
        pw->prev->next = pw->next;
    else
        b->putters = pw->next;
    if (pw->next != NULL)
        pw->next->prev = pw->prev;
}

static void
put_room_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
            struct aq_queue_item *it, void *arg)
{
    struct aq_put_waiter *pw = arg;
    struct aq_put_result res;
    struct aq_error err;

    putter_unlink(pw);
    if (st == AQ_QUEUE_OK) {
        job_queued(pw->b, pw->bq, pw->job, &res);
        pw->cb(pw->arg, 0, &res, NULL);
    } else {
        aq_job_free(pw->job);
        aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
        pw->cb(pw->arg, -1, NULL, &err);
    }
    free(pw);
}

/* A new job holding the args as JSON text: the raw bytes when they came
 * raw, else jansson's compact encoding. */
static struct aq_job *
job_from_put(struct bqueue *bq, enum aq_kind kind, const struct aq_put *p)
{
    char stack[1024];
    const char *text = stack;
    char *big = NULL;
    size_t len;
    struct aq_job *j;

    if (p->args == NULL && p->args_raw != NULL) {
        text = p->args_raw;
        len = p->args_len;
    } else if (p->args == NULL) {
        text = "{}";
        len = 2;
    } else if ((len = json_dumpb(p->args, stack, sizeof stack, JSON_COMPACT)) >
               sizeof stack) {
        text = big = xmalloc(len);
        json_dumpb(p->args, big, len, JSON_COMPACT);
    }
    j = aq_job_new(0, kind, text, len);
    free(big);
    j->queue = bq;
    j->created_us = aq_clock_wall_us();
    if (p->timeout >= 0 || p->retries >= 0 || p->key != NULL) {
        struct aq_job_ext *x = aq_job_ext(j);

        if (p->timeout >= 0)
            x->timeout_us = aq_clock_s_to_us(p->timeout);
        if (p->retries >= 0)
            x->retries = p->retries;
        if (p->key != NULL)
            x->key = xstrdup(p->key);
    }
    return j;
}

/* The handler's check of the args at put; raw args are parsed for it only
 * when the handler reads them. */
static int
check_args(const struct aq_handler *h, const struct bqueue *bq,
           const struct aq_put *p, struct aq_error *err)
{
    json_t *args;
    int rc;

    if (!h->needs_args)
        return 0;
    if (p->args != NULL)
        return h->check(&bq->cfg, p->args, err);
    args = p->args_raw != NULL ? aq_args_parse(p->args_raw, p->args_len, err)
                               : json_object();
    if (args == NULL)
        return -1;
    rc = h->check(&bq->cfg, args, err);
    json_decref(args);
    return rc;
}

int
aq_broker_put(struct aq_broker *b, const struct aq_put *p,
              struct aq_put_result *res, struct aq_put_waiter **waiter,
              struct aq_error *err)
{
    struct bqueue *bq;
    enum aq_kind kind;
    const struct aq_handler *h;
    struct aq_job *j;
    struct aq_put_waiter *pw;
    int64_t delay_us;

    if (b->stage != STOP_NONE) {
        aq_error_set(err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
        return -1;
    }
    /* The methods check these already; the broker is their last line. */
    if (!(p->delay >= 0 && p->delay <= AQ_DURATION_MAX_S) ||
        p->timeout > AQ_DURATION_MAX_S) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.%s: expected seconds, a number between 0 and 1e9",
                     p->timeout > AQ_DURATION_MAX_S ? "timeout" : "delay");
        return -1;
    }
    if ((bq = queue_lookup(b, p->queue, err)) == NULL)
        return -1;
    kind = bq->kind;
    if (p->kind != NULL && aq_kind_parse(p->kind, &kind) < 0) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.kind: expected one of exec, http, sleep, echo");
        return -1;
    }
    /* A queue runs its own kind, and those its config lists: a put may not
     * pick a kind (exec) the queue's settings were never meant for. */
    if (kind != bq->kind && !(bq->cfg.kinds & (1u << kind))) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "put: queue %s does not run kind %s (see queues.%s.kinds)",
                     bq->cfg.name, aq_kind_name(kind), bq->cfg.name);
        return -1;
    }
    if ((h = aq_handler_find(kind)) == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.kind: %s jobs are not available in this build",
                     aq_kind_name(kind));
        return -1;
    }
    if (check_args(h, bq, p, err) < 0 || journal_refuses(b, err) < 0)
        return -1;
    if (p->key != NULL) {
        json_t *id = json_object_get(b->keys, p->key);
        struct aq_job *dup =
            id != NULL ? aq_idmap_get(b->jobs, (uint64_t)json_integer_value(id))
                       : NULL;

        if (dup != NULL) {
            res->job = dup->id;
            res->state = aq_job_state_name(job_state(dup));
            res->duplicate = true;
            return 0;
        }
    }
    j = job_from_put(bq, kind, p);
    delay_us = aq_clock_s_to_us(p->delay);
    if (p->nowait) {
        if (aq_queue_put_nowait(bq->q, &j->qi, p->priority, delay_us) !=
            AQ_QUEUE_OK) {
            aq_job_free(j);
            aq_error_set(err, AQ_ERR_QUEUE_FULL,
                         "queue full: %s holds %zu unfinished jobs (maxsize)",
                         bq->cfg.name, aq_queue_unfinished(bq->q));
            return -1;
        }
        job_queued(b, bq, j, res);
        return 0;
    }
    /* Waiting needs a waiter that outlives this call; keep one spare so
     * the common case (room now) allocates nothing. */
    pw = b->spare_putter != NULL ? b->spare_putter : xmalloc(sizeof *pw);
    b->spare_putter = NULL;
    memset(pw, 0, sizeof *pw);
    if (aq_queue_put(bq->q, &pw->w, &j->qi, p->priority, delay_us, put_room_cb,
                     pw) == AQ_QUEUE_OK) {
        b->spare_putter = pw;
        job_queued(b, bq, j, res);
        return 0;
    }
    pw->b = b;
    pw->bq = bq;
    pw->job = j;
    pw->next = b->putters;
    if (b->putters != NULL)
        b->putters->prev = pw;
    b->putters = pw;
    *waiter = pw;
    return 1;
}

void
aq_broker_put_on_room(struct aq_put_waiter *pw, aq_put_cb *cb, void *arg)
{
    pw->cb = cb;
    pw->arg = arg;
}

void
aq_broker_put_cancel(struct aq_put_waiter *pw)
{
    aq_queue_cancel(pw->bq->q, &pw->w);
    putter_unlink(pw);
    aq_job_free(pw->job);
    free(pw);
}

/* ---- public: jobs ---- */

static struct aq_job *
job_lookup(struct aq_broker *b, uint64_t id, struct aq_error *err)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);

    if (j == NULL)
        aq_error_set(err, AQ_ERR_NO_JOB, "no such job: %llu",
                     (unsigned long long)id);
    return j;
}

json_t *
aq_broker_status(struct aq_broker *b, uint64_t id, struct aq_error *err)
{
    struct aq_job *j = job_lookup(b, id, err);

    return j != NULL ? job_record(j) : NULL;
}

struct aq_task *
aq_broker_job_future(struct aq_broker *b, uint64_t id, struct aq_error *err)
{
    struct aq_job *j = job_lookup(b, id, err);
    struct aq_job_ext *x;

    if (j == NULL)
        return NULL;
    x = aq_job_ext(j);
    if (x->future == NULL) {
        x->future = aq_task_new(b->base, NULL, NULL);
        if (aq_job_is_finished(j))
            aq_task_set_result(x->future, job_record(j),
                               (void (*)(void *))json_decref);
    }
    return aq_task_ref(x->future);
}

static struct consumer *
consumer_of(struct aq_job *j)
{
    struct bqueue *bq = j->queue;

    for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
        if (c->job == j)
            return c;
    }
    return NULL;
}

int
aq_broker_cancel(struct aq_broker *b, uint64_t id, const char **state,
                 struct aq_error *err)
{
    struct aq_job *j = job_lookup(b, id, err);
    struct consumer *c;

    if (j == NULL)
        return -1;
    if (aq_job_is_finished(j)) {
        aq_error_set(err, AQ_ERR_FINISHED, "job %llu already %s",
                     (unsigned long long)id, aq_job_state_name(j->state));
        return -1;
    }
    if (j->state != AQ_JOB_RUNNING) {
        aq_queue_remove(((struct bqueue *)j->queue)->q, &j->qi);
        aq_job_set_error(j, "cancelled", "cancelled by request");
        job_finish(b, j, AQ_JOB_CANCELLED);
        *state = aq_job_state_name(AQ_JOB_CANCELLED);
        return 0;
    }
    c = consumer_of(j);
    if (c->interrupt != INT_CANCEL) {
        c->interrupt = INT_CANCEL;
        aq_handler_find(j->kind)->cancel(c->run);
    }
    /* The run may have ended inside cancel (sleep does), and j may even be
     * evicted already (results.max 0). */
    j = aq_idmap_get(b->jobs, id);
    if (j == NULL || j->state != AQ_JOB_RUNNING) {
        *state = aq_job_state_name(j != NULL ? j->state : AQ_JOB_CANCELLED);
        return 0;
    }
    return 1;
}

/* ---- public: queues ---- */

static void
join_unlink(struct aq_join *j)
{
    struct aq_broker *b = j->b;

    if (j == b->drain) {
        b->drain = NULL;
        return;
    }
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        b->joins = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
}

static void
join_free(struct aq_join *j)
{
    for (size_t i = 0; i < j->nparts; i++)
        aq_queue_cancel(j->parts[i].bq->q, &j->parts[i].w);
    free(j->parts);
    free(j);
}

static void drain_done(struct aq_broker *b);

static void
join_part_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
             struct aq_queue_item *it, void *arg)
{
    struct join_part *part = arg;
    struct aq_join *j = part->join;

    if (--j->left > 0)
        return;
    join_unlink(j);
    if (j->cb != NULL)
        j->cb(j->arg, 0, NULL);
    else
        drain_done(j->b);
    join_free(j);
}

/* A join over one queue or all: NULL when nothing is unfinished. */
static struct aq_join *
join_new(struct aq_broker *b, struct bqueue *only, aq_join_cb *cb, void *arg)
{
    struct aq_join *j = xcalloc(1, sizeof *j);
    size_t n = 0;

    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next)
        n++;
    j->b = b;
    j->cb = cb;
    j->arg = arg;
    j->parts = xcalloc(n, sizeof *j->parts);
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        struct join_part *part = &j->parts[j->nparts];

        if (only != NULL && bq != only)
            continue;
        part->join = j;
        part->bq = bq;
        if (aq_queue_join(bq->q, &part->w, join_part_cb, part) ==
            AQ_QUEUE_WAITING) {
            j->nparts++;
            j->left++;
        }
    }
    if (j->left == 0) {
        join_free(j);
        return NULL;
    }
    return j;
}

int
aq_broker_join(struct aq_broker *b, const char *queue, aq_join_cb *cb,
               void *arg, struct aq_join **join, struct aq_error *err)
{
    struct bqueue *only = NULL;
    struct aq_join *j;

    if (queue != NULL && (only = queue_lookup(b, queue, err)) == NULL)
        return -1;
    if ((j = join_new(b, only, cb, arg)) == NULL)
        return 0;
    j->next = b->joins;
    if (b->joins != NULL)
        b->joins->prev = j;
    b->joins = j;
    *join = j;
    return 1;
}

void
aq_broker_join_cancel(struct aq_join *j)
{
    join_unlink(j);
    join_free(j);
}

static json_t *
quantiles(const struct aq_hist *h)
{
    return json_pack("{s:f,s:f,s:f}", "p50",
                     (double)aq_hist_quantile(h, 0.50) / 1e6, "p90",
                     (double)aq_hist_quantile(h, 0.90) / 1e6, "p99",
                     (double)aq_hist_quantile(h, 0.99) / 1e6);
}

static void
queue_numbers(const struct bqueue *bq, struct aq_queue_stats *s)
{
    *s = (struct aq_queue_stats){
        .name = bq->cfg.name,
        .kind = aq_kind_name(bq->kind),
        .size = aq_queue_qsize(bq->q),
        .delayed = aq_queue_delayed(bq->q),
        .unfinished = aq_queue_unfinished(bq->q),
        .maxsize = aq_queue_maxsize(bq->q),
        .running = bq->nbusy,
        .consumers = bq->target,
        .paused = bq->is_paused,
        .put = bq->n_put,
        .done = bq->n_done,
        .failed = bq->n_failed,
        .cancelled = bq->n_cancelled,
        .retried = bq->n_retried,
        .wait = &bq->wait_hist,
        .run = &bq->run_hist,
    };
}

int
aq_broker_each_queue(struct aq_broker *b, const char *queue,
                     void (*fn)(const struct aq_queue_stats *s, void *arg),
                     void *arg, struct aq_error *err)
{
    struct aq_queue_stats s;

    if (queue != NULL) {
        struct bqueue *bq = queue_lookup(b, queue, err);

        if (bq == NULL)
            return -1;
        queue_numbers(bq, &s);
        fn(&s, arg);
        return 0;
    }
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        queue_numbers(bq, &s);
        fn(&s, arg);
    }
    return 0;
}

static void
stats_json(const struct aq_queue_stats *s, void *arg)
{
    json_t *o = json_object();

    json_object_set_new(o, "size", json_integer((json_int_t)s->size));
    json_object_set_new(o, "delayed", json_integer((json_int_t)s->delayed));
    json_object_set_new(o, "running", json_integer(s->running));
    json_object_set_new(o, "unfinished",
                        json_integer((json_int_t)s->unfinished));
    json_object_set_new(o, "maxsize", json_integer((json_int_t)s->maxsize));
    json_object_set_new(o, "consumers", json_integer(s->consumers));
    json_object_set_new(o, "busy", json_integer(s->running));
    json_object_set_new(o, "paused", json_boolean(s->paused));
    json_object_set_new(o, "kind", json_string(s->kind));
    json_object_set_new(o, "put", json_integer((json_int_t)s->put));
    json_object_set_new(o, "done", json_integer((json_int_t)s->done));
    json_object_set_new(o, "failed", json_integer((json_int_t)s->failed));
    json_object_set_new(o, "cancelled", json_integer((json_int_t)s->cancelled));
    json_object_set_new(o, "retried", json_integer((json_int_t)s->retried));
    json_object_set_new(o, "wait_time", quantiles(s->wait));
    json_object_set_new(o, "run_time", quantiles(s->run));
    json_object_set_new(arg, s->name, o);
}

json_t *
aq_broker_stats(struct aq_broker *b, const char *queue, struct aq_error *err)
{
    json_t *all = json_object();

    if (aq_broker_each_queue(b, queue, stats_json, all, err) < 0) {
        json_decref(all);
        return NULL;
    }
    return all;
}

int
aq_broker_scale(struct aq_broker *b, const char *queue, int consumers,
                struct aq_error *err)
{
    struct bqueue *bq = queue_lookup(b, queue, err);

    if (bq == NULL)
        return -1;
    aq_log(AQ_LOG_INFO, "queue %s: scale %d -> %d consumers", bq->cfg.name,
           bq->target, consumers);
    queue_scale(bq, consumers);
    return 0;
}

int
aq_broker_pause(struct aq_broker *b, const char *queue, bool paused,
                struct aq_error *err)
{
    struct bqueue *bq = queue_lookup(b, queue, err);

    if (bq == NULL)
        return -1;
    if (bq->is_paused == paused)
        return 0;
    bq->is_paused = paused;
    aq_log(AQ_LOG_INFO, "queue %s: %s", bq->cfg.name,
           paused ? "paused" : "resumed");
    /* Only idle consumers that started: one not started yet takes its
     * first job from the loop, and waiting twice on one waiter would link
     * it twice into the queue (a use-after-free once the consumer ends). */
    for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
        if (c->is_ended || !c->is_started || c->job != NULL)
            continue;
        if (paused)
            aq_queue_cancel(bq->q, &c->w); /* idle: stop waiting for jobs */
        else
            consumer_next(c);
    }
    return 0;
}

/* ---- public: stop ---- */

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
    size_t cap = 0;

    *n = 0;
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
            if (c->is_ended)
                continue;
            if (*n == cap) {
                cap = cap != 0 ? cap * 2 : 16;
                tasks = xreallocarray(tasks, cap, sizeof *tasks);
            }
            tasks[(*n)++] = c->task;
        }
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
consumers_stop(struct aq_broker *b)
{
    b->stage = STOP_GRACE;
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
            if (!c->is_ended && c->job == NULL)
                consumer_end(c);
        }
    }
    stop_wait_consumers(b, aq_clock_s_to_us(b->grace_s));
}

static void
drain_done(struct aq_broker *b)
{
    aq_log(AQ_LOG_INFO, "broker: drained, every queue is empty");
    consumers_stop(b);
}

void
aq_broker_stop(struct aq_broker *b, bool drain, double grace_s,
               void (*done)(void *arg), void *arg)
{
    struct aq_error err;

    if (b->stage != STOP_NONE)
        return;
    b->stage = STOP_DRAIN;
    b->grace_s = grace_s;
    b->stop_done = done;
    b->stop_arg = arg;
    aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
    while (b->putters != NULL) {
        struct aq_put_waiter *pw = b->putters;
        aq_put_cb *cb = pw->cb;
        void *cb_arg = pw->arg;

        aq_broker_put_cancel(pw);
        cb(cb_arg, -1, NULL, &err);
    }
    if (drain && (b->drain = join_new(b, NULL, NULL, NULL)) != NULL) {
        aq_log(AQ_LOG_INFO, "broker: draining the queues before stopping");
        return;
    }
    consumers_stop(b);
}

void
aq_broker_stop_now(struct aq_broker *b)
{
    switch (b->stage) {
    case STOP_DRAIN:
        if (b->drain != NULL) {
            join_free(b->drain);
            b->drain = NULL;
        }
        b->grace_s = 0;
        consumers_stop(b);
        break;
    case STOP_GRACE:
        /* Cancel now instead of at the end of the grace. */
        b->stage = STOP_CANCEL;
        aq_wait_free(b->stop_wait);
        b->stop_wait = NULL;
        for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
            for (struct consumer *c = bq->consumers; c != NULL; c = c->next) {
                if (!c->is_ended)
                    aq_task_cancel(c->task);
            }
        }
        stop_wait_consumers(b, -1);
        break;
    default:
        break;
    }
}

bool
aq_broker_is_stopping(const struct aq_broker *b)
{
    return b->stage != STOP_NONE;
}

void
aq_broker_counts(const struct aq_broker *b, size_t *unfinished, size_t *running)
{
    *unfinished = *running = 0;
    for (const struct bqueue *bq = b->queues; bq != NULL; bq = bq->next) {
        *unfinished += aq_queue_unfinished(bq->q);
        *running += (size_t)bq->nbusy;
    }
}

/* ---- public: durability ---- */

void
aq_broker_set_journal(struct aq_broker *b, struct aq_journal *j)
{
    b->journal = j;
}

bool
aq_broker_has_journal(const struct aq_broker *b)
{
    return b->journal != NULL;
}

int
aq_broker_durable(struct aq_broker *b, struct aq_barrier *node,
                  void (*cb)(void *arg, const struct aq_error *err), void *arg,
                  struct aq_error *err)
{
    if (b->journal == NULL)
        return 0;
    return aq_journal_barrier_add(b->journal, node, cb, arg, err);
}

void
aq_broker_durable_cancel(struct aq_broker *b, struct aq_barrier *h)
{
    aq_journal_barrier_cancel(b->journal, h);
}

struct rehome {
    struct aq_journal *journal;
    struct aq_job **jobs;
    size_t n, cap;
};

static void
rehome_collect(void *value, void *arg)
{
    struct rehome *rh = arg;
    struct aq_job *j = value;

    if (!aq_journal_is_evacuated(rh->journal, j->jseg))
        return;
    if (rh->n == rh->cap) {
        rh->cap = rh->cap != 0 ? rh->cap * 2 : 64;
        rh->jobs = xreallocarray(rh->jobs, rh->cap, sizeof *rh->jobs);
    }
    rh->jobs[rh->n++] = j;
}

void
aq_broker_rehome(struct aq_journal *journal, void *arg)
{
    struct aq_broker *b = arg;
    struct rehome rh = {.journal = journal};

    /* Collect first: appending must not run under the map's iteration. */
    aq_idmap_each(b->jobs, rehome_collect, &rh);
    for (size_t i = 0; i < rh.n; i++)
        journal_home(b, rh.jobs[i]);
    aq_log(AQ_LOG_DEBUG, "journal: %zu jobs re-appended from old segments",
           rh.n);
    free(rh.jobs);
}

/* ---- public: replay ---- */

static void
ext_str(char **dst, struct aq_jstr s)
{
    free(*dst);
    *dst = NULL;
    if (s.p != NULL) {
        *dst = xmalloc(s.len + 1);
        memcpy(*dst, s.p, s.len);
        (*dst)[s.len] = '\0';
    }
}

/* The queue of a replayed job; a queue the config no longer has is kept
 * with no consumer, its jobs waiting until it is configured again. */
static struct bqueue *
replay_queue(struct aq_broker *b, struct aq_jstr name)
{
    char buf[128];
    struct aq_queue_config qc;
    struct bqueue *bq;

    snprintf(buf, sizeof buf, "%.*s", (int)name.len, name.p);
    if ((bq = queue_find(b, buf)) != NULL)
        return bq;
    aq_log(AQ_LOG_WARN,
           "journal: queue %s has jobs but is not in the config: kept with no "
           "consumer until it is configured",
           buf);
    aq_queue_config_defaults(&qc, buf);
    qc.consumers = 0;
    bq = queue_new(b, &qc);
    aq_queue_config_clear(&qc);
    return bq;
}

/* Fills j from a whole record (PUT or END). */
static void
replay_whole(struct aq_broker *b, struct aq_job *j, const struct aq_jrec *r,
             uint32_t seg)
{
    struct aq_job_ext *x = aq_job_ext(j);

    j->state = r->state;
    j->attempts = r->attempts;
    j->qi.priority = r->priority;
    j->created_us = r->created_us;
    x->started_us = r->started_us;
    x->finished_us = r->finished_us;
    x->due_us = r->due_us;
    if (r->type == AQ_JREC_PUT) {
        x->retries = r->retries;
        x->timeout_us = r->timeout_us;
    }
    ext_str(&x->key, r->key);
    ext_str(&x->result, r->result);
    ext_str(&x->err_code, r->err_code);
    ext_str(&x->err_message, r->err_message);
    if (x->key != NULL)
        json_object_set_new(b->keys, x->key, json_integer((json_int_t)j->id));
    aq_journal_hold(b->journal, seg);
    if (j->jseg != 0)
        aq_journal_release(b->journal, j->jseg);
    j->jseg = seg;
}

/* What put takes for retries (lib/methods.c), so retries + 1 cannot
 * overflow. */
#define REPLAY_RETRIES_MAX 1000000

/* Wall-clock times a record may hold: anything later is clamped, so that
 * differences of two of them (run and wait times) cannot overflow. */
#define REPLAY_WALL_MAX_US (INT64_C(1) << 60)

static bool
clamp_i64(int64_t *v, int64_t lo, int64_t hi)
{
    int64_t was = *v;

    *v = was < lo ? lo : was > hi ? hi : was;
    return *v != was;
}

/* Replay never trusts a value a put could not have made (a journal from
 * an older version, or a bug): durations and times are clamped into what
 * the daemon accepts, states into those the record type carries. Returns
 * whether anything changed. */
static bool
replay_clamp(struct aq_jrec *r)
{
    bool changed = false;
    int64_t now_us = aq_clock_wall_us();

    changed |= clamp_i64(&r->created_us, 0, REPLAY_WALL_MAX_US);
    changed |= clamp_i64(&r->started_us, 0, REPLAY_WALL_MAX_US);
    changed |= clamp_i64(&r->finished_us, 0, REPLAY_WALL_MAX_US);
    changed |=
        clamp_i64(&r->due_us, 0, aq_clock_add_us(now_us, AQ_DURATION_MAX_US));
    changed |= clamp_i64(&r->timeout_us, -1, AQ_DURATION_MAX_US);
    if (r->retries < -1 || r->retries > REPLAY_RETRIES_MAX) {
        r->retries = r->retries < -1 ? -1 : REPLAY_RETRIES_MAX;
        changed = true;
    }
    if (r->type == AQ_JREC_REQUEUE && r->state != AQ_JOB_DELAYED &&
        r->state != AQ_JOB_PENDING) {
        r->state = AQ_JOB_PENDING;
        changed = true;
    }
    return changed;
}

int
aq_broker_replay_cb(const struct aq_jrec *rec, uint32_t seg, void *arg,
                    struct aq_error *err)
{
    struct aq_broker *b = arg;
    struct aq_job *j = aq_idmap_get(b->jobs, rec->id);
    struct aq_jrec copy = *rec;
    const struct aq_jrec *r = &copy;

    if (replay_clamp(&copy))
        b->nclamped++;
    switch (r->type) {
    case AQ_JREC_PUT:
    case AQ_JREC_END:
        if (j == NULL) {
            struct aq_jstr args = r->args;

            if (args.p == NULL)
                args = (struct aq_jstr){"{}", 2};
            if (r->id == 0 || r->kind > AQ_KIND_ECHO || r->queue.p == NULL ||
                r->state > AQ_JOB_CANCELLED) {
                aq_error_set(err, AQ_ERR_INTERNAL,
                             "journal: job %llu: malformed record",
                             (unsigned long long)r->id);
                return -1;
            }
            j = aq_job_new(r->id, r->kind, args.p, args.len);
            j->queue = replay_queue(b, r->queue);
            aq_idmap_put(b->jobs, j);
        }
        replay_whole(b, j, r, seg);
        break;
    case AQ_JREC_START:
        if (j != NULL && !aq_job_is_finished(j)) {
            j->state = AQ_JOB_RUNNING;
            aq_job_ext(j)->started_us = r->started_us;
        }
        break;
    case AQ_JREC_REQUEUE:
        if (j != NULL && !aq_job_is_finished(j)) {
            struct aq_job_ext *x = aq_job_ext(j);

            j->state = r->state;
            j->attempts = r->attempts;
            x->due_us = r->due_us;
            ext_str(&x->result, r->result);
            ext_str(&x->err_code, r->err_code);
            ext_str(&x->err_message, r->err_message);
        }
        break;
    default:
        break; /* a SEGMENT record, or a type from a later version */
    }
    return 0;
}

struct restore {
    struct aq_job **unfinished, **finished;
    size_t nu, nf, cap_u, cap_f;
};

static void
restore_collect(void *value, void *arg)
{
    struct restore *rs = arg;
    struct aq_job *j = value;

    if (aq_job_is_finished(j)) {
        if (rs->nf == rs->cap_f) {
            rs->cap_f = rs->cap_f != 0 ? rs->cap_f * 2 : 1024;
            rs->finished =
                xreallocarray(rs->finished, rs->cap_f, sizeof *rs->finished);
        }
        rs->finished[rs->nf++] = j;
    } else {
        if (rs->nu == rs->cap_u) {
            rs->cap_u = rs->cap_u != 0 ? rs->cap_u * 2 : 1024;
            rs->unfinished = xreallocarray(rs->unfinished, rs->cap_u,
                                           sizeof *rs->unfinished);
        }
        rs->unfinished[rs->nu++] = j;
    }
}

static int
cmp_id(const void *a, const void *b)
{
    const struct aq_job *x = *(struct aq_job *const *)a,
                        *y = *(struct aq_job *const *)b;

    return (x->id > y->id) - (x->id < y->id);
}

static int
cmp_finished(const void *a, const void *b)
{
    const struct aq_job *x = *(struct aq_job *const *)a,
                        *y = *(struct aq_job *const *)b;
    int64_t fx = x->ext->finished_us, fy = y->ext->finished_us;

    return fx != fy ? (fx > fy) - (fx < fy) : cmp_id(a, b);
}

/* A job that was running when the daemon died: the attempt counts (so a
 * job that kills the daemon cannot loop forever); it runs again while
 * attempts <= retries + 1, so even with no retries it gets one more run:
 * at-least-once. Returns false when it is out of attempts. */
static bool
restore_crashed(struct aq_broker *b, struct aq_job *j)
{
    struct bqueue *bq = j->queue;
    char msg[160];

    if (j->attempts < UINT16_MAX)
        j->attempts++;
    snprintf(msg, sizeof msg, "the daemon stopped during attempt %u",
             j->attempts);
    aq_job_set_error(j, "crash", msg);
    if (j->attempts <= job_retries(j, bq) + 1) {
        j->state = AQ_JOB_PENDING;
        return true;
    }
    aq_log(AQ_LOG_WARN, "job %llu: %s, out of attempts: failed",
           (unsigned long long)j->id, msg);
    return false;
}

void
aq_broker_restore_done(struct aq_broker *b, uint64_t last_id)
{
    struct restore rs = {0};
    int64_t now_us = aq_clock_wall_us();
    size_t crashed = 0, delayed = 0;

    if (last_id > b->last_id)
        b->last_id = last_id;
    aq_idmap_each(b->jobs, restore_collect, &rs);
    if (rs.nu > 1)
        qsort(rs.unfinished, rs.nu, sizeof *rs.unfinished, cmp_id);
    if (rs.nf > 1)
        qsort(rs.finished, rs.nf, sizeof *rs.finished, cmp_finished);
    for (size_t i = 0; i < rs.nf; i++) {
        if (rs.finished[i]->id > b->last_id)
            b->last_id = rs.finished[i]->id;
        record_append(b, rs.finished[i]);
    }
    /* Jobs come back whatever maxsize says now: none may be dropped. */
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next)
        aq_queue_set_maxsize(bq->q, 0);
    for (size_t i = 0; i < rs.nu; i++) {
        struct aq_job *j = rs.unfinished[i];
        struct bqueue *bq = j->queue;
        int64_t delay_us = 0;
        bool was_running = j->state == AQ_JOB_RUNNING;

        if (j->id > b->last_id)
            b->last_id = j->id;
        if (was_running) {
            crashed++;
            if (!restore_crashed(b, j)) {
                aq_queue_put_nowait(bq->q, &j->qi, j->qi.priority, 0);
                aq_queue_remove(bq->q, &j->qi);
                job_finish(b, j, AQ_JOB_FAILED);
                continue;
            }
        } else if (j->ext != NULL && j->ext->due_us > now_us) {
            delay_us = j->ext->due_us - now_us;
            delayed++;
        }
        aq_queue_put_nowait(bq->q, &j->qi, j->qi.priority, delay_us);
        j->state = delay_us > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING;
        if (was_running)
            journal_requeue(b, j);
    }
    for (struct bqueue *bq = b->queues; bq != NULL; bq = bq->next)
        aq_queue_set_maxsize(bq->q, bq->cfg.maxsize);
    if (b->nclamped > 0)
        aq_log(AQ_LOG_WARN,
               "journal: %zu records held times or durations out of range "
               "(over 1e9 s, or negative): clamped",
               b->nclamped);
    aq_log(AQ_LOG_INFO,
           "journal: restored %zu unfinished jobs (%zu delayed, %zu cut "
           "short by a crash) and %zu finished records; next id %llu",
           rs.nu, delayed, crashed, rs.nf, (unsigned long long)b->last_id + 1);
    free(rs.unfinished);
    free(rs.finished);
}

/* ---- public: the daemon's addresses ---- */

void
aq_broker_set_own_addresses(struct aq_broker *b,
                            const struct sockaddr_storage *addrs, size_t n)
{
    free(b->own_addrs);
    b->own_addrs = xcalloc(n > 0 ? n : 1, sizeof *b->own_addrs);
    memcpy(b->own_addrs, addrs, n * sizeof *addrs);
    b->nown_addrs = n;
}
