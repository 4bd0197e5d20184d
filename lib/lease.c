/* SPDX-License-Identifier: MIT */
/*
 * lib/lease.c: remote workers (spec section 10). A worker's get leases
 * ready jobs of remote queues: each leased job is running, its attempt
 * started as a consumer's would be (the store records the start), and
 * held by the worker until task_done ends the attempt, release gives it
 * back uncounted, its deadline passes (lease_expired), a cancel takes it
 * (job.cancel), or the worker's connection closes (worker_lost); failed
 * attempts then follow the queue's retry policy, as a consumer's do.
 *
 * Gets that find nothing ready wait on each of their queues at once, in
 * arrival order (the queues' getter lists); the first job to come wakes
 * one, which then takes what else is ready, up to its max. Leases are
 * reused, each with its own timer, so a get allocates nothing per job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "error.h"
#include "idmap.h"
#include "log.h"
#include "task.h"
#include "xmalloc.h"

/* ---- workers and their queues ---- */

/* w waits on or holds jobs of bq delta times more: bq's count of workers
 * follows. A worker uses few queues: a short array does. */
static void
worker_queue_ref(struct aq_worker *w, struct broker_queue *bq, int delta)
{
    struct worker_queue *wq = NULL;

    for (size_t i = 0; i < w->nwq; i++) {
        if (w->wq[i].bq == bq) {
            wq = &w->wq[i];
            break;
        }
    }
    if (wq == NULL) {
        w->wq = xreallocarray(w->wq, w->nwq + 1, sizeof *w->wq);
        wq = &w->wq[w->nwq++];
        wq->bq = bq;
        wq->n = 0;
    }
    if (wq->n == 0 && delta > 0)
        bq->nworkers++;
    wq->n = (uint32_t)((int64_t)wq->n + delta);
    if (wq->n == 0)
        bq->nworkers--;
}

struct aq_worker *
aq_broker_worker_new(struct aq_broker *b, const char *peer,
                     aq_worker_cancel_cb *cb, void *arg)
{
    struct aq_worker *w = xcalloc(1, sizeof *w);

    w->b = b;
    w->num = ++b->last_worker;
    snprintf(w->peer, sizeof w->peer, "%s", peer != NULL ? peer : "");
    w->cancel_cb = cb;
    w->cancel_arg = arg;
    TAILQ_INIT(&w->leases);
    LIST_INIT(&w->gets);
    LIST_INSERT_HEAD(&b->workers, w, link);
    return w;
}

/* ---- leases ---- */

static void lease_expired_cb(evutil_socket_t fd, short what, void *arg);

static struct lease *
lease_alloc(struct aq_broker *b)
{
    struct lease *l = TAILQ_FIRST(&b->free_leases);

    if (l != NULL) {
        TAILQ_REMOVE(&b->free_leases, l, link);
        return l;
    }
    l = xcalloc(1, sizeof *l);
    l->b = b;
    l->ev = evtimer_new(b->base, lease_expired_cb, l);
    return l;
}

/* The lease runs length_us from now (0: no deadline). */
static void
lease_arm(struct lease *l, int64_t length_us)
{
    l->length_us = length_us;
    if (length_us <= 0) {
        evtimer_del(l->ev);
        l->deadline_wall_us = 0;
        return;
    }
    struct timeval tv = aq_clock_tv(length_us);

    l->deadline_wall_us = aq_clock_wall_us() + length_us;
    evtimer_add(l->ev, &tv);
}

/* j (just taken from its queue) becomes w's, for lease_us (< 0: its
 * timeout). */
static struct lease *
lease_grant(struct aq_worker *w, struct aq_job *j, int64_t lease_us)
{
    struct aq_broker *b = w->b;
    struct broker_queue *bq = job_queue(j);
    struct lease *l = lease_alloc(b);
    struct aq_job_ext *x;

    l->job = j;
    l->w = w;
    attempt_begin(bq, j);
    x = j->ext;
    x->lease = l;
    x->holder = w->num;
    TAILQ_INSERT_TAIL(&w->leases, l, link);
    worker_queue_ref(w, bq, 1);
    b->nleases++;
    lease_arm(l, lease_us >= 0 ? lease_us : job_timeout_us(j));
    return l;
}

/* The lease ends (its job's attempt is about to): l goes back for reuse. */
static void
lease_unlink(struct lease *l)
{
    struct aq_worker *w = l->w;
    struct aq_broker *b = l->b;

    evtimer_del(l->ev);
    TAILQ_REMOVE(&w->leases, l, link);
    worker_queue_ref(w, job_queue(l->job), -1);
    l->job->ext->lease = NULL;
    l->job = NULL;
    l->w = NULL;
    b->nleases--;
    TAILQ_INSERT_HEAD(&b->free_leases, l, link);
}

/* A stop waits for the leases: the last one to end ends the wait. */
static void
leases_changed(struct aq_broker *b)
{
    if (b->nleases == 0 && b->lease_task != NULL &&
        aq_task_state(b->lease_task) == AQ_TASK_RUNNING)
        aq_task_set_result(b->lease_task, NULL, NULL);
}

/* Ends l's attempt with out (taken), as why says. Returns the job's state
 * (the job may be gone after). */
static enum aq_job_state
lease_end(struct lease *l, struct aq_outcome *out, enum interrupt why)
{
    struct aq_broker *b = l->b;
    struct aq_job *j = l->job;
    enum aq_job_state st;

    lease_unlink(l);
    if (why != INT_CANCEL)
        j->ext->holder = 0;
    st = attempt_finish(j, out, why);
    leases_changed(b);
    return st;
}

/* A failed attempt: code and message copied. */
static enum aq_job_state
lease_fail(struct lease *l, const char *code, const char *message)
{
    struct aq_outcome out = {0};

    out.err_code = xstrdup(code);
    out.err_message = xstrdup(message);
    return lease_end(l, &out, INT_NONE);
}

static void
lease_expired_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lease *l = arg;
    char msg[200];

    aq_log_job(AQ_LOG_INFO, l->job->id, job_queue(l->job)->cfg.name,
               "job %llu: lease of worker %s expired",
               (unsigned long long)l->job->id, l->w->peer);
    snprintf(msg, sizeof msg, "lease expired after %g s (worker %s)",
             (double)l->length_us / 1e6, l->w->peer);
    lease_fail(l, "lease_expired", msg);
}

void
lease_cancel_job(struct aq_job *j)
{
    struct lease *l = j->ext->lease;
    struct aq_worker *w = l->w;
    uint64_t id = j->id;
    struct aq_outcome out = {0};

    out.err_code = xstrdup("cancelled");
    out.err_message = xstrdup("cancelled by request");
    lease_end(l, &out, INT_CANCEL);
    if (w->cancel_cb != NULL)
        w->cancel_cb(w->cancel_arg, id);
}

/* Every lease w holds fails with worker_lost (its connection closed), or
 * goes back to pending uncounted (a stop's grace is over). */
static void
worker_drop_leases(struct aq_worker *w, bool is_stop)
{
    struct lease *l;

    while ((l = TAILQ_FIRST(&w->leases)) != NULL) {
        if (is_stop) {
            struct aq_outcome out = {0};

            lease_end(l, &out, INT_SHUTDOWN);
        } else {
            char msg[200];

            snprintf(msg, sizeof msg, "worker %s closed its connection",
                     w->peer);
            lease_fail(l, "worker_lost", msg);
        }
    }
}

void
lease_record(const struct aq_job *j, json_t *rec)
{
    const struct lease *l = j->ext != NULL ? j->ext->lease : NULL;

    if (l == NULL)
        return;
    json_object_set_new(rec, "worker", json_string(l->w->peer));
    json_object_set_new(rec, "lease_deadline",
                        l->deadline_wall_us != 0
                            ? json_real((double)l->deadline_wall_us / 1e6)
                            : json_null());
}

/* ---- get ---- */

/* A slot of b->got for one more leased job. */
static struct aq_leased *
got_slot(struct aq_broker *b, size_t n)
{
    if (n == b->got_cap) {
        b->got_cap = b->got_cap != 0 ? b->got_cap * 2 : 64;
        b->got = xreallocarray(b->got, b->got_cap, sizeof *b->got);
    }
    return &b->got[n];
}

/* Leases j to w and fills slot n of b->got with it. */
static void
got_add(struct aq_worker *w, struct aq_job *j, int64_t lease_us, size_t n)
{
    struct aq_leased *g = got_slot(w->b, n);
    struct lease *l = lease_grant(w, j, lease_us);

    g->job = j->id;
    g->queue = job_queue(j)->cfg.name;
    g->name = j->ext->name;
    g->args = j->args;
    g->args_len = j->args_len;
    g->attempts = j->attempts;
    g->lease_deadline_us = l->deadline_wall_us;
}

/* Leases what is ready in bqs (in order) to w, from slot n of b->got on,
 * up to max slots in all; returns the slots filled. Earlier waiting gets
 * go first: a queue with getters waiting gives nothing here. */
static size_t
take_ready(struct aq_worker *w, struct broker_queue *const *bqs, size_t nq,
           size_t n, size_t max, int64_t lease_us)
{
    for (size_t i = 0; i < nq && n < max; i++) {
        struct broker_queue *bq = bqs[i];
        struct aq_queue_waiter probe = {0};
        struct aq_queue_item *it;

        size_t limit = max, n0 = n;
        unsigned tokens = 0;

        if (bq->is_paused)
            continue;
        /* Under a rate limit: at most as many jobs as tokens. */
        if (bq->rate != NULL) {
            if ((tokens = throttle_take(bq, (unsigned)(max - n))) == 0)
                continue;
            limit = n + tokens;
        }
        if (aq_queue_get(bq->q, &probe, NULL, NULL, &it) != AQ_QUEUE_OK) {
            aq_queue_cancel(bq->q, &probe);
            if (bq->rate != NULL)
                throttle_give(bq, tokens);
            continue;
        }
        got_add(w, job_of(it), lease_us, n++);
        while (n < limit && aq_queue_get_nowait(bq->q, &it) == AQ_QUEUE_OK)
            got_add(w, job_of(it), lease_us, n++);
        if (bq->rate != NULL)
            throttle_give(bq, tokens - (unsigned)(n - n0));
    }
    return n;
}

static void
get_wait_free(struct aq_get_wait *g)
{
    struct aq_broker *b = g->w->b;

    for (size_t i = 0; i < g->nparts; i++) {
        aq_queue_cancel(g->parts[i].bq->q, &g->parts[i].w);
        throttle_drop(g->parts[i].bq, &g->parts[i].rt);
        worker_queue_ref(g->w, g->parts[i].bq, -1);
    }
    if (g->timer != NULL)
        event_free(g->timer);
    TAILQ_REMOVE(&b->gets, g, link);
    LIST_REMOVE(g, wlink);
    free(g);
}

/* The waiting get g ends with what b->got holds (n jobs). */
static void
get_wait_answer(struct aq_get_wait *g, size_t n)
{
    struct aq_broker *b = g->w->b;
    aq_get_cb *cb = g->cb;
    void *arg = g->arg;

    get_wait_free(g);
    cb(arg, b->got, n);
}

/* The waiting get of part was handed it (or its queue shut down). */
static void
get_part_cb(struct aq_queue_waiter *qw, enum aq_queue_status st,
            struct aq_queue_item *it, void *arg)
{
    struct get_part *part = arg;
    struct aq_get_wait *g = part->g;
    struct broker_queue *bqs[AQ_GET_QUEUES];
    size_t n = 0;

    /* Off every queue first: what else is ready is taken below. The
     * token part held is spent on it; the others' go back. */
    if (st == AQ_QUEUE_OK && part->bq->rate != NULL)
        throttle_spend(part->bq, &part->rt);
    for (size_t i = 0; i < g->nparts; i++) {
        aq_queue_cancel(g->parts[i].bq->q, &g->parts[i].w);
        throttle_drop(g->parts[i].bq, &g->parts[i].rt);
        bqs[i] = g->parts[i].bq;
    }
    if (st == AQ_QUEUE_OK) {
        got_add(g->w, job_of(it), g->lease_us, n++);
        n = take_ready(g->w, bqs, g->nparts, n, g->max, g->lease_us);
    }
    get_wait_answer(g, n);
}

static void
get_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    get_wait_answer(arg, 0);
}

/* part waits on its queue; returns false if the queue handed a job at
 * once (*it). */
static bool
get_part_wait(struct get_part *part, struct aq_queue_item **it)
{
    /* Under a rate limit, a token first: else its go comes later. */
    if (part->bq->rate != NULL && !throttle_hold(part->bq, &part->rt))
        return true;
    if (aq_queue_get(part->bq->q, &part->w, get_part_cb, part, it) ==
        AQ_QUEUE_OK)
        return false;
    broker_hungry(part->bq);
    return true;
}

/* A token came for part (the rate's timer): it waits on its queue now,
 * or takes what is ready. */
static void
get_part_go(struct taker *k)
{
    struct get_part *part =
        (struct get_part *)((char *)k - offsetof(struct get_part, rt));
    struct aq_queue_item *it;

    if (!get_part_wait(part, &it)) {
        aq_queue_cancel(part->bq->q, &part->w);
        get_part_cb(&part->w, AQ_QUEUE_OK, it, part);
    }
}

/* The queues g names, checked: -1 with err if one is unknown or not
 * remote. */
static int
get_queues(struct aq_broker *b, const struct aq_get *g,
           struct broker_queue **bqs, struct aq_error *err)
{
    if (g->nqueues == 0 || g->nqueues > AQ_GET_QUEUES) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.queue: expected 1 to %d queue names",
                     AQ_GET_QUEUES);
        return -1;
    }
    for (size_t i = 0; i < g->nqueues; i++) {
        if ((bqs[i] = broker_queue_find(b, g->queues[i])) == NULL) {
            aq_error_set(err, AQ_ERR_NO_QUEUE, "no such queue: %.100s",
                         g->queues[i]);
            return -1;
        }
        if (bqs[i]->kind != AQ_KIND_REMOTE) {
            aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                         "get: queue %s is not a remote queue (its kind is "
                         "%s; its consumers run its jobs)",
                         bqs[i]->cfg.name, aq_kind_name(bqs[i]->kind));
            return -1;
        }
    }
    return 0;
}

int
aq_broker_get(struct aq_broker *b, struct aq_worker *w, const struct aq_get *g,
              aq_get_cb *cb, void *arg, struct aq_get_wait **wait,
              struct aq_error *err)
{
    struct broker_queue *bqs[AQ_GET_QUEUES];
    int64_t lease_us = g->lease_s >= 0 ? aq_clock_s_to_us(g->lease_s) : -1;
    size_t max = g->max < 1 ? 1 : g->max > AQ_GET_MAX ? AQ_GET_MAX : g->max;
    struct aq_get_wait *gw;
    size_t n;

    if (get_queues(b, g, bqs, err) < 0)
        return -1;
    if (b->stage >= STOP_GRACE || w->is_eof) {
        cb(arg, NULL, 0);
        return 0;
    }
    n = take_ready(w, bqs, g->nqueues, 0, max, lease_us);
    if (n > 0 || !(g->wait_s > 0)) {
        cb(arg, b->got, n);
        return 0;
    }
    gw = xcalloc(1, sizeof *gw + g->nqueues * sizeof gw->parts[0]);
    gw->w = w;
    gw->cb = cb;
    gw->arg = arg;
    gw->max = max;
    gw->lease_us = lease_us;
    TAILQ_INSERT_TAIL(&b->gets, gw, link);
    LIST_INSERT_HEAD(&w->gets, gw, wlink);
    for (size_t i = 0; i < g->nqueues; i++) {
        struct get_part *part = &gw->parts[gw->nparts];
        bool dup = false;

        for (size_t k = 0; k < gw->nparts; k++)
            dup = dup || gw->parts[k].bq == bqs[i];
        if (dup)
            continue; /* a queue named twice waits once */
        part->g = gw;
        part->bq = bqs[i];
        part->rt.go = get_part_go;
        gw->nparts++;
        worker_queue_ref(w, bqs[i], 1);
        /* Nothing was ready: the queues have waiting getters, or none. */
        if (!bqs[i]->is_paused) {
            struct aq_queue_item *it;

            if (!get_part_wait(part, &it)) {
                /* Cannot happen (nothing was ready), but if it does the
                 * job is this get's. */
                for (size_t k = 0; k + 1 < gw->nparts; k++)
                    aq_queue_cancel(gw->parts[k].bq->q, &gw->parts[k].w);
                if (bqs[i]->rate != NULL)
                    throttle_spend(bqs[i], &part->rt);
                got_add(w, job_of(it), lease_us, 0);
                get_wait_answer(gw, 1);
                return 0;
            }
        }
    }
    if (g->wait_s <= AQ_DURATION_MAX_S) {
        struct timeval tv = aq_clock_tv(aq_clock_s_to_us(g->wait_s));

        gw->timer = evtimer_new(b->base, get_timeout_cb, gw);
        evtimer_add(gw->timer, &tv);
    }
    *wait = gw;
    return 1;
}

void
aq_broker_worker_eof(struct aq_worker *w)
{
    w->is_eof = true;
    while (!LIST_EMPTY(&w->gets))
        get_wait_answer(LIST_FIRST(&w->gets), 0);
}

void
aq_broker_get_cancel(struct aq_get_wait *g)
{
    if (g != NULL)
        get_wait_free(g);
}

void
leases_pause(struct broker_queue *bq, bool paused)
{
    struct aq_get_wait *g, *next;

    for (g = TAILQ_FIRST(&bq->b->gets); g != NULL; g = next) {
        next = TAILQ_NEXT(g, link);
        for (size_t i = 0; i < g->nparts; i++) {
            struct get_part *part = &g->parts[i];
            struct aq_queue_item *it;

            if (part->bq != bq)
                continue;
            if (paused) {
                aq_queue_cancel(bq->q, &part->w);
                throttle_drop(bq, &part->rt);
            } else if (!get_part_wait(part, &it)) {
                /* Resumed with jobs ready: this get takes them. */
                aq_queue_cancel(bq->q, &part->w);
                get_part_cb(&part->w, AQ_QUEUE_OK, it, part);
                /* g is gone, and next may have been served meanwhile:
                 * only g was, as only g's callback ran. */
            }
            break;
        }
    }
}

/* ---- task_done, touch, release ---- */

/* The lease w holds on job id, or NULL with err (see broker.h). */
static struct lease *
lease_find(struct aq_broker *b, struct aq_worker *w, uint64_t id,
           const char *what, struct aq_error *err)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);
    struct lease *l;

    if (j == NULL) {
        aq_error_set(err, AQ_ERR_NO_JOB, "no such job: %llu",
                     (unsigned long long)id);
        return NULL;
    }
    l = j->ext != NULL ? j->ext->lease : NULL;
    if (l != NULL && w != NULL && l->w == w)
        return l;
    if (w != NULL && j->ext != NULL && j->state == AQ_JOB_CANCELLED &&
        j->ext->holder == w->num) {
        aq_error_set(err, AQ_ERR_FINISHED,
                     "%s: job %llu was cancelled while this worker held it",
                     what, (unsigned long long)id);
        return NULL;
    }
    aq_error_set(err, AQ_ERR_NOT_YOUR_LEASE,
                 "%s: job %llu: not your lease (this connection does not hold "
                 "it: never leased here, expired, ended, or another worker's)",
                 what, (unsigned long long)id);
    return NULL;
}

int
aq_broker_task_done(struct aq_broker *b, struct aq_worker *w,
                    const struct aq_task_done *d, const char **state,
                    struct aq_error *err)
{
    struct lease *l = lease_find(b, w, d->job, "task_done", err);
    struct aq_outcome out = {0};
    enum aq_job_state st;

    if (l == NULL)
        return -1;
    if (!d->is_error) {
        out.ok = true;
        out.result = xstrdup(d->result != NULL ? d->result : "null");
        st = lease_end(l, &out, INT_NONE);
    } else {
        out.err_code = xstrdup(d->err_code);
        out.err_message = xstrdup(d->err_message);
        out.is_final = !d->retry;
        if (d->traceback != NULL)
            out.err_traceback = xstrdup(d->traceback);
        st = lease_end(l, &out, INT_NONE);
    }
    *state = aq_job_state_name(st);
    return 0;
}

int
aq_broker_touch(struct aq_broker *b, struct aq_worker *w, uint64_t job,
                double lease_s, int64_t *deadline_us, struct aq_error *err)
{
    struct lease *l = lease_find(b, w, job, "touch", err);

    if (l == NULL)
        return -1;
    lease_arm(l, lease_s >= 0 ? aq_clock_s_to_us(lease_s) : l->length_us);
    *deadline_us = l->deadline_wall_us;
    return 0;
}

int
aq_broker_release(struct aq_broker *b, struct aq_worker *w, uint64_t job,
                  double delay_s, const char **state, struct aq_error *err)
{
    struct lease *l = lease_find(b, w, job, "release", err);
    struct aq_job *j;
    struct broker_queue *bq;

    if (l == NULL)
        return -1;
    j = l->job;
    bq = job_queue(j);
    lease_unlink(l);
    j->ext->holder = 0;
    bq->nbusy--;
    job_set_state(j, delay_s > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING);
    aq_queue_requeue(bq->q, &j->qi, j->qi.priority, aq_clock_s_to_us(delay_s),
                     NULL);
    b->store->ops->requeue(b->store, j);
    *state = aq_job_state_name(j->state);
    leases_changed(b);
    return 0;
}

/* ---- the worker's end ---- */

void
aq_broker_worker_free(struct aq_worker *w)
{
    struct aq_get_wait *g;

    if (w == NULL)
        return;
    if (w->b != NULL) {
        while ((g = LIST_FIRST(&w->gets)) != NULL)
            get_wait_free(g);
        worker_drop_leases(w, false);
        LIST_REMOVE(w, link);
    }
    free(w->wq);
    free(w);
}

/* ---- stop ---- */

static void
lease_task_start(struct aq_task *t, void *arg)
{
    leases_changed(arg);
}

/* The grace is over: what is still held goes back to pending. */
static void
lease_task_cancel(struct aq_task *t, void *arg)
{
    struct aq_broker *b = arg;
    struct aq_worker *w;

    LIST_FOREACH (w, &b->workers, link)
        worker_drop_leases(w, true);
    aq_task_set_cancelled(t);
}

static const struct aq_task_ops lease_task_ops = {lease_task_start,
                                                  lease_task_cancel};

/* However the task ended (cancelled before it started, too): nothing is
 * held after it. */
static void
lease_task_done_cb(struct aq_task *t, void *arg)
{
    struct aq_broker *b = arg;
    struct aq_worker *w;

    LIST_FOREACH (w, &b->workers, link)
        worker_drop_leases(w, true);
}

struct aq_task *
leases_stop(struct aq_broker *b)
{
    struct aq_get_wait *g;
    struct aq_task *t;

    while ((g = TAILQ_FIRST(&b->gets)) != NULL)
        get_wait_answer(g, 0);
    if (b->nleases == 0)
        return NULL;
    aq_log(AQ_LOG_INFO,
           "broker: %zu jobs held by workers: waiting for them up to the "
           "grace",
           b->nleases);
    t = aq_task_new(b->base, &lease_task_ops, b);
    aq_task_add_done_cb(t, lease_task_done_cb, b);
    return t;
}

void
leases_free(struct aq_broker *b)
{
    struct aq_worker *w;
    struct lease *l;

    while ((w = LIST_FIRST(&b->workers)) != NULL) {
        struct aq_get_wait *g;

        while ((g = LIST_FIRST(&w->gets)) != NULL)
            get_wait_free(g);
        while ((l = TAILQ_FIRST(&w->leases)) != NULL) {
            TAILQ_REMOVE(&w->leases, l, link);
            l->job->ext->lease = NULL;
            event_free(l->ev);
            free(l);
        }
        LIST_REMOVE(w, link);
        w->b = NULL; /* the methods free it later */
    }
    if (b->lease_task != NULL) {
        aq_task_remove_done_cb(b->lease_task, lease_task_done_cb, b);
        if (!aq_task_is_finished(b->lease_task))
            aq_task_set_cancelled(b->lease_task);
        aq_task_unref(b->lease_task);
        b->lease_task = NULL;
    }
    while ((l = TAILQ_FIRST(&b->free_leases)) != NULL) {
        TAILQ_REMOVE(&b->free_leases, l, link);
        event_free(l->ev);
        free(l);
    }
    free(b->got);
}
