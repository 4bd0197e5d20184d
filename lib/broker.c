/* SPDX-License-Identifier: MIT */
/*
 * lib/broker.c: the queue table and the methods on it: put (acknowledged
 * once the queue has room and the store made the job durable), status,
 * cancel, join, scale, pause, reconfigure. Consumers are in consumer.c,
 * finished records in records.c, durability behind lib/store.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "error.h"
#include "http.h"
#include "idmap.h"
#include "log.h"
#include "task.h"
#include "wait.h"
#include "xmalloc.h"

/* ---- jobs ---- */

static uint64_t
job_key(const void *value)
{
    return ((const struct aq_job *)value)->id;
}

json_t *
job_record(const struct aq_job *j)
{
    json_t *rec = aq_job_record(j, job_queue(j)->cfg.name);

    lease_record(j, rec);
    return rec;
}

/* A delayed job's time came (its queue's ready_cb): it is pending now, in
 * its state, its record and list alike. */
static void
job_ready_cb(struct aq_queue_item *it, void *arg)
{
    job_set_state(job_of(it), AQ_JOB_PENDING);
}

/* A queue runs its own kind, and those its config lists: a put (or a
 * retry) may not pick a kind (exec) the queue's settings were never meant
 * for. */
static bool
queue_runs_kind(const struct broker_queue *bq, enum aq_kind kind)
{
    return kind == bq->kind || (bq->cfg.kinds & (1u << kind)) != 0;
}

static struct aq_job *
job_lookup(struct aq_broker *b, uint64_t id, struct aq_error *err)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);

    if (j == NULL)
        aq_error_set(err, AQ_ERR_NO_JOB, "no such job: %llu",
                     (unsigned long long)id);
    return j;
}

/* ---- the queue table ---- */

struct broker_queue *
broker_queue_find(const struct aq_broker *b, const char *name)
{
    struct broker_queue *bq;

    STAILQ_FOREACH (bq, &b->queues, link) {
        if (strcmp(bq->cfg.name, name) == 0)
            return bq;
    }
    return NULL;
}

static struct broker_queue *
broker_queue_lookup(const struct aq_broker *b, const char *name,
                    struct aq_error *err)
{
    struct broker_queue *bq =
        broker_queue_find(b, name != NULL ? name : "default");

    if (bq == NULL)
        aq_error_set(err, AQ_ERR_NO_QUEUE, "no such queue: %.100s",
                     name != NULL ? name : "default");
    return bq;
}

static void
broker_queue_configure(struct broker_queue *bq,
                       const struct aq_queue_config *qc)
{
    bool is_rate_changed = throttle_changes(bq, qc);

    if (&bq->cfg != qc) {
        aq_queue_config_clear(&bq->cfg);
        aq_queue_config_copy(&bq->cfg, qc);
    }
    if (aq_kind_parse(qc->kind, &bq->kind) < 0)
        bq->kind = AQ_KIND_EXEC;
    aq_queue_set_maxsize(bq->q, qc->maxsize);
    if (is_rate_changed) {
        /* Takers let go of their tokens and ask again under the new
         * limit, as a pause and resume would make them. */
        bool is_live = !bq->is_paused;

        if (is_live)
            consumers_pause(bq, true);
        throttle_configure(bq);
        if (is_live)
            consumers_pause(bq, false);
    }
}

struct broker_queue *
broker_queue_new(struct aq_broker *b, const struct aq_queue_config *qc)
{
    struct broker_queue *bq = xcalloc(1, sizeof *bq);
    struct aq_queue_opts opts = {
        .maxsize = qc->maxsize,
        .order = qc->order == AQ_ORDER_LIFO ? AQ_QUEUE_LIFO : AQ_QUEUE_PRIORITY,
        .ready_cb = job_ready_cb,
    };

    bq->b = b;
    LIST_INIT(&bq->consumers);
    broker_index_init(bq);
    aq_queue_config_copy(&bq->cfg, qc);
    bq->q = aq_queue_new(b->base, &opts);
    broker_queue_configure(bq, &bq->cfg);
    STAILQ_INSERT_TAIL(&b->queues, bq, link); /* stats list config order */
    bq->target = qc->consumers;
    if (b->is_started)
        consumers_scale(bq, qc->consumers);
    return bq;
}

static void
broker_queue_free(struct broker_queue *bq)
{
    consumers_free(bq);
    throttle_free(bq);      /* after its takers */
    aq_http_free(bq->http); /* after the runs that used it */
    aq_queue_free(bq->q);   /* no drop_cb: the id map owns the jobs */
    aq_queue_config_clear(&bq->cfg);
    broker_index_free(bq);
    free(bq);
}

/* ---- life ---- */

struct aq_broker *
aq_broker_new(struct event_base *base, struct aq_procs *procs,
              const struct aq_config *cfg)
{
    struct aq_broker *b = xcalloc(1, sizeof *b);

    b->base = base;
    b->procs = procs;
    STAILQ_INIT(&b->queues);
    TAILQ_INIT(&b->putters);
    LIST_INIT(&b->joins);
    LIST_INIT(&b->workers);
    TAILQ_INIT(&b->gets);
    TAILQ_INIT(&b->free_leases);
    b->jobs = aq_idmap_new(job_key);
    b->keys = json_object();
    b->store = aq_store_memory_new();
    b->batches = aq_batches_new(base);
    records_init(b, cfg);
    for (size_t i = 0; i < cfg->nqueues; i++)
        broker_queue_new(b, &cfg->queues[i]);
    b->sched = sched_new(b, cfg);
    return b;
}

void
aq_broker_start(struct aq_broker *b)
{
    struct broker_queue *bq;

    b->is_started = true;
    STAILQ_FOREACH (bq, &b->queues, link)
        consumers_scale(bq, bq->target);
    sched_start(b->sched);
}

static void
job_free_cb(void *value, void *arg)
{
    aq_job_free(value);
}

void
aq_broker_free(struct aq_broker *b)
{
    struct broker_queue *bq;
    struct aq_put_wait *w;

    if (b == NULL)
        return;
    sched_free(b->sched);
    b->sched = NULL;
    /* Made durable first (a journal rebuilt after a failed sync asks for
     * the live jobs): jobs interrupted by the stop are in it. */
    aq_store_close(b->store);
    b->store = NULL;
    leases_free(b);
    while ((w = TAILQ_FIRST(&b->putters)) != NULL) {
        TAILQ_REMOVE(&b->putters, w, u.room.link);
        aq_job_free(w->u.room.job);
    }
    while (!LIST_EMPTY(&b->joins))
        aq_broker_join_cancel(LIST_FIRST(&b->joins));
    if (b->drain != NULL)
        broker_join_free(b->drain);
    aq_wait_free(b->stop_wait);
    while ((bq = STAILQ_FIRST(&b->queues)) != NULL) {
        STAILQ_REMOVE_HEAD(&b->queues, link);
        broker_queue_free(bq);
    }
    aq_idmap_each(b->jobs, job_free_cb, NULL);
    aq_idmap_free(b->jobs);
    deps_free(b);
    records_free(b); /* after the records in it */
    aq_batches_free(b->batches);
    json_decref(b->keys);
    json_decref(b->key_puts);
    free(b->own_addrs);
    free(b);
}

/* Whether qc would turn bq from a remote queue into one its consumers
 * run, or the other way. */
static bool
kind_crosses_remote(const struct broker_queue *bq,
                    const struct aq_queue_config *qc)
{
    enum aq_kind kind;

    if (aq_kind_parse(qc->kind, &kind) < 0)
        kind = AQ_KIND_EXEC;
    return (kind == AQ_KIND_REMOTE) != (bq->kind == AQ_KIND_REMOTE);
}

void
aq_broker_reconfigure(struct aq_broker *b, const struct aq_config *cfg)
{
    struct broker_queue *bq;

    records_configure(b, cfg);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        const struct aq_queue_config *qc = &cfg->queues[i];
        enum aq_order order;

        if ((bq = broker_queue_find(b, qc->name)) == NULL) {
            broker_queue_new(b, qc);
            aq_log_queue(AQ_LOG_INFO, qc->name,
                         "reload: queue %s: added with %d consumers", qc->name,
                         qc->consumers);
            continue;
        }
        if (qc->order != bq->cfg.order)
            aq_log_queue(AQ_LOG_WARN, qc->name,
                         "reload: queue %s: order changes at restart",
                         qc->name);
        if (bq->is_scaled && qc->consumers != bq->target)
            aq_log_queue(AQ_LOG_WARN, qc->name,
                         "reload: queue %s: consumers %d (set by scale) -> %d "
                         "(the config)",
                         qc->name, bq->target, qc->consumers);
        bq->is_scaled = false;
        order = bq->cfg.order;
        if (kind_crosses_remote(bq, qc)) {
            /* Its waiting gets, leases and queued jobs belong to one side:
             * consumers would fail remote jobs, workers take others. */
            struct aq_queue_config keep = *qc;

            aq_log_queue(AQ_LOG_WARN, qc->name,
                         "reload: queue %s: kind %s -> %s changes at restart",
                         qc->name, aq_kind_name(bq->kind), qc->kind);
            keep.kind = xstrdup(bq->cfg.kind);
            keep.kinds = bq->cfg.kinds;
            keep.consumers = bq->cfg.consumers;
            broker_queue_configure(bq, &keep);
            free(keep.kind);
        } else {
            broker_queue_configure(bq, qc);
        }
        bq->cfg.order = order;
        if (b->is_started)
            consumers_scale(bq, bq->cfg.consumers);
        else
            bq->target = bq->cfg.consumers;
    }
    STAILQ_FOREACH (bq, &b->queues, link) {
        if (aq_config_queue(cfg, bq->cfg.name) == NULL)
            aq_log_queue(
                AQ_LOG_WARN, bq->cfg.name,
                "reload: queue %s: removed from the config, kept until "
                "restart",
                bq->cfg.name);
    }
    sched_reconfigure(b->sched, cfg);
}

/* ---- put ---- */

/* j (put with after, just queued and known) waits while one of its
 * dependencies is unfinished: out of its queue's items, still counted
 * unfinished (lib/deps.c says why), its due time kept in ext->due_us.
 * Returns whether it waits; if not, deps_resolve places it once the
 * store knows it. */
static bool
job_waits(struct aq_broker *b, struct broker_queue *bq, struct aq_job *j)
{
    int64_t due = aq_queue_item_due_us(&j->qi);

    if (deps_attach(b, j) == 0)
        return false;
    j->ext->due_us =
        due == 0 ? 0 : aq_clock_wall_us() + (due - aq_clock_mono_us());
    aq_queue_remove(bq->q, &j->qi);
    job_set_state(j, AQ_JOB_WAITING);
    return true;
}

/* The next id: from the store's next block once this one is used up
 * (several nodes give ids from one table, lib/store.h). */
static uint64_t
next_id(struct aq_broker *b)
{
    if (b->id_limit != 0 && b->last_id >= b->id_limit) {
        if (b->id_next_last != 0) {
            b->last_id = b->id_next_first - 1;
            b->id_limit = b->id_next_last;
            b->id_next_first = b->id_next_last = 0;
        } else {
            /* The store could not reserve the next block in time (its
             * database away): ids go on from here, and the store reserves
             * past them once it is back. */
            aq_log(AQ_LOG_WARN,
                   "%s: ids beyond the reserved block %llu: reserving "
                   "late",
                   b->store->ops->name, (unsigned long long)b->id_limit);
            b->id_limit = 0;
        }
    }
    return ++b->last_id;
}

#define AHEAD_WINDOW_US 20000 /* work a node takes ahead, per taker */
#define AHEAD_MAX 16          /* jobs ahead per taker at most */

size_t
broker_queue_ahead(const struct broker_queue *bq)
{
    int64_t mean;

    if (bq->run_hist.count == 0)
        return 1;
    mean = bq->run_hist.sum_us / (int64_t)bq->run_hist.count;
    if (mean * AHEAD_MAX < AHEAD_WINDOW_US)
        return AHEAD_MAX;
    return (size_t)(AHEAD_WINDOW_US / mean);
}

/* Whether j, just queued by a put, goes to the other nodes rather than
 * staying here: a store shares jobs, the job is ready (no delay, no
 * dependency), and this node would not start it soon: its ready jobs
 * with it outnumber its free takers plus what its consumers run within
 * AHEAD_WINDOW_US (broker_queue_ahead: long jobs are never kept waiting
 * here while another node may be idle). */
static bool
job_gives(struct aq_broker *b, struct broker_queue *bq, struct aq_job *j)
{
    return b->store->ops->give != NULL && j->state == AQ_JOB_PENDING &&
           (j->ext == NULL || j->ext->deps == NULL) &&
           aq_queue_qsize(bq->q) >
               aq_queue_getters(bq->q) +
                   (size_t)(bq->target > 0 ? bq->target : 0) *
                       broker_queue_ahead(bq) &&
           b->store->ops->give(b->store, j, bq->cfg.name);
}

/* Whether one of j's after ids names a job this node does not hold
 * (another node's: the put checked that the store shares jobs). */
static bool
deps_elsewhere(struct aq_broker *b, const struct aq_job *j)
{
    const struct aq_job_deps *d = j->ext->deps;

    for (uint32_t i = 0; i < d->nafter; i++)
        if (aq_idmap_get(b->jobs, d->after[i]) == NULL)
            return true;
    return false;
}

/* j waits on jobs of other nodes: it is given to the pool, waiting (the
 * database releases it once they all finished: lib/store_pg.c). Returns
 * whether it was given. */
static bool
job_gives_waiting(struct aq_broker *b, struct broker_queue *bq,
                  struct aq_job *j)
{
    int64_t due = aq_queue_item_due_us(&j->qi);
    enum aq_job_state was = j->state;

    j->ext->due_us =
        due == 0 ? 0 : aq_clock_wall_us() + (due - aq_clock_mono_us());
    job_set_state(j, AQ_JOB_WAITING);
    if (!b->store->ops->give(b->store, j, bq->cfg.name)) {
        job_set_state(j, was);
        return false;
    }
    aq_queue_remove(bq->q, &j->qi); /* counted until given */
    return true;
}

/* j has just been queued: it gets its id and becomes known. may_give:
 * the put may go to the other nodes (not one that waits for its job). */
static void
job_queued(struct aq_broker *b, struct broker_queue *bq, struct aq_job *j,
           bool may_give, struct aq_put_result *res)
{
    bool resolve = false;

    j->id = next_id(b);
    job_set_state(j, aq_queue_item_is_delayed(&j->qi) ? AQ_JOB_DELAYED
                                                      : AQ_JOB_PENDING);
    aq_idmap_put(b->jobs, j);
    if (j->ext != NULL && j->ext->key != NULL)
        json_object_set_new(b->keys, j->ext->key,
                            json_integer((json_int_t)j->id));
    bq->n_put++;
    if (may_give && j->ext != NULL && j->ext->deps != NULL &&
        b->store->ops->give != NULL && deps_elsewhere(b, j) &&
        job_gives_waiting(b, bq, j)) {
        res->job = j->id;
        res->duplicate = false;
        res->state = aq_job_state_name(AQ_JOB_WAITING);
        return;
    }
    if (j->ext != NULL && j->ext->deps != NULL && !job_waits(b, bq, j))
        resolve =
            j->ext->deps->failed != 0 && j->ext->deps->policy == AQ_AFTER_DONE;
    if (may_give && job_gives(b, bq, j))
        aq_queue_remove(bq->q, &j->qi); /* counted until given */
    else
        b->store->ops->put(b->store, j, bq->cfg.name);
    res->job = j->id;
    res->duplicate = false;
    aq_log_job(AQ_LOG_DEBUG, j->id, bq->cfg.name, "job %llu: queued on %s",
               (unsigned long long)j->id, bq->cfg.name);
    if (resolve) {
        /* A dependency failed before the put: cancelled at once (it may
         * be evicted inside: res names the state it ended in). */
        aq_queue_remove(bq->q, &j->qi);
        deps_resolve(b, j);
        res->state = aq_job_state_name(AQ_JOB_CANCELLED);
        return;
    }
    res->state = aq_job_state_name(j->state);
}

/* The store could not make the job durable: never an acknowledgement.
 * The job is queued all the same (it may be running already), so the
 * error names it: it may still run, and a retry should carry a key. */
static void
not_durable(struct aq_error *err, uint64_t job, const struct aq_error *why)
{
    aq_error_set(err, AQ_ERR_INTERNAL,
                 "%s: put not acknowledged (job %llu may still run)",
                 why->message, (unsigned long long)job);
}

/* The key_puts entry of w's job, as a string. */
static void
key_put_name(char *buf, size_t n, uint64_t job)
{
    snprintf(buf, n, "%llu", (unsigned long long)job);
}

static void
key_put_unfile(struct aq_put_wait *w)
{
    char name[24];

    if (w->u.sync.b == NULL)
        return;
    key_put_name(name, sizeof name, w->u.sync.job);
    json_object_del(w->u.sync.b->key_puts, name);
    w->u.sync.b = NULL;
}

static void
put_synced_cb(void *arg, const struct aq_error *why)
{
    struct aq_put_wait *w = arg;
    struct aq_put_result res = w->u.sync.res; /* cb may free w */
    struct aq_error err;

    key_put_unfile(w);
    if (why != NULL) {
        not_durable(&err, res.job, why);
        w->cb(w->arg, -1, NULL, &err);
    } else
        w->cb(w->arg, 0, &res, NULL);
}

/* The job of res is queued: acknowledged now, or once the store has made
 * it durable (w's callback). */
static enum aq_put_status
put_sync(struct aq_broker *b, struct aq_put_wait *w,
         const struct aq_put_result *res, struct aq_error *err)
{
    struct aq_error why;

    if (w->ack_queued)
        return AQ_PUT_DONE;
    w->is_syncing = true;
    w->u.sync.res = *res;
    w->u.sync.b = NULL;
    w->u.sync.job = res->job;
    switch (b->store->ops->sync(b->store, &w->u.sync.barrier, put_synced_cb, w,
                                &why)) {
    case 0:
        return AQ_PUT_DONE;
    case 1:
        if (b->store->ops->give != NULL && !res->duplicate) {
            /* A store sharing jobs: the key may be held elsewhere. */
            struct aq_job *j = aq_idmap_get(b->jobs, res->job);
            char name[24];

            if (j != NULL && j->ext != NULL && j->ext->key != NULL) {
                if (b->key_puts == NULL)
                    b->key_puts = json_object();
                key_put_name(name, sizeof name, res->job);
                json_object_set_new(b->key_puts, name,
                                    json_integer((json_int_t)(intptr_t)w));
                w->u.sync.b = b;
            }
        }
        return AQ_PUT_PENDING;
    default:
        not_durable(err, res->job, &why);
        return AQ_PUT_FAILED;
    }
}

static void
put_room_cb(struct aq_queue_waiter *qw, enum aq_queue_status st,
            struct aq_queue_item *it, void *arg)
{
    struct aq_put_wait *w = arg;
    struct aq_job *j = w->u.room.job;
    struct broker_queue *bq = job_queue(j);
    struct aq_broker *b = bq->b;
    struct aq_put_result res;
    struct aq_error err;

    TAILQ_REMOVE(&b->putters, w, u.room.link);
    if (st != AQ_QUEUE_OK) {
        aq_job_free(j);
        aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
        w->cb(w->arg, -1, NULL, &err);
        return;
    }
    job_queued(b, bq, j, !w->ack_queued, &res);
    switch (put_sync(b, w, &res, &err)) {
    case AQ_PUT_DONE:
        w->cb(w->arg, 0, &res, NULL);
        break;
    case AQ_PUT_FAILED:
        w->cb(w->arg, -1, NULL, &err);
        break;
    default:
        break;
    }
}

void
broker_putters_stop(struct aq_broker *b)
{
    struct aq_put_wait *w;
    struct aq_error err;

    aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
    while ((w = TAILQ_FIRST(&b->putters)) != NULL) {
        aq_put_cb *cb = w->cb;
        void *arg = w->arg;

        aq_broker_put_cancel(b, w);
        cb(arg, -1, NULL, &err);
    }
}

/* A new job holding the args as JSON text: the raw bytes when they came
 * raw, else jansson's compact encoding. */
static struct aq_job *
job_from_put(struct broker_queue *bq, enum aq_kind kind, const struct aq_put *p)
{
    const char *text = "{}";
    char *dumped = NULL;
    size_t len = 2;
    struct aq_job *j;

    if (p->args == NULL && p->args_raw != NULL) {
        text = p->args_raw;
        len = p->args_len;
    } else if (p->args != NULL) {
        if ((dumped = json_dumps(p->args, JSON_COMPACT)) == NULL)
            abort(); /* out of memory, as xmalloc */
        text = dumped;
        len = strlen(dumped);
    }
    j = aq_job_new(0, kind, text, len);
    free(dumped);
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
    if (p->name != NULL)
        aq_job_ext(j)->name = xstrdup(p->name);
    if (p->batch != NULL) {
        aq_job_ext(j)->batch = xstrdup(p->batch);
        j->batch_flags = AQ_JOB_BATCH_HAS;
    }
    if (p->nafter > 0)
        aq_job_ext(j)->deps = aq_job_deps_new(
            p->after, p->nafter, (enum aq_after_policy)p->after_policy);
    return j;
}

/* The handler's check of the args at put; raw args are parsed for it only
 * when the handler reads them. */
static int
check_args(const struct aq_handler *h, const struct broker_queue *bq,
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

/* The queue and kind of p, if the broker takes it: NULL with err if not. */
static struct broker_queue *
put_check(struct aq_broker *b, const struct aq_put *p, enum aq_kind *kind,
          struct aq_error *err)
{
    const struct aq_error *why;
    const struct aq_handler *h;
    struct broker_queue *bq;

    if (b->stage != STOP_NONE) {
        aq_error_set(err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
        return NULL;
    }
    /* The methods check these already; the broker is their last line. */
    if (!(p->delay >= 0 && p->delay <= AQ_DURATION_MAX_S) ||
        p->timeout > AQ_DURATION_MAX_S) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.%s: expected seconds, a number between 0 and 1e9",
                     p->timeout > AQ_DURATION_MAX_S ? "timeout" : "delay");
        return NULL;
    }
    if (p->nafter > AQ_AFTER_MAX ||
        (p->has_at && !(p->at >= 0 && p->at < 1e13 && p->delay == 0))) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     p->nafter > AQ_AFTER_MAX
                         ? "params.after: expected at most 1000 job ids"
                         : "params.at: expected a time, not with delay");
        return NULL;
    }
    if ((bq = broker_queue_lookup(b, p->queue, err)) == NULL)
        return NULL;
    *kind = bq->kind;
    if (p->kind != NULL && aq_kind_parse(p->kind, kind) < 0) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.kind: expected one of exec, http, sleep, echo, "
                     "remote");
        return NULL;
    }
    if (!queue_runs_kind(bq, *kind)) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "put: queue %s does not run kind %s (see queues.%s.kinds)",
                     bq->cfg.name, aq_kind_name(*kind), bq->cfg.name);
        return NULL;
    }
    if ((h = aq_handler_find(*kind)) == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.kind: %s jobs are not available in this build",
                     aq_kind_name(*kind));
        return NULL;
    }
    if (check_args(h, bq, p, err) < 0)
        return NULL;
    /* A put while the store cannot record jobs (a full disk, a failed
     * sync) is refused at once, -32603 naming why: never queued in memory
     * as if it were durable, never a silent wait. */
    if ((why = b->store->ops->error(b->store)) != NULL) {
        if (err != NULL)
            *err = *why;
        return NULL;
    }
    /* A put waits while the store reconnects, unless it must not wait. */
    if (p->nowait && b->store->ops->unavailable != NULL &&
        (why = b->store->ops->unavailable(b->store)) != NULL) {
        if (err != NULL)
            *err = *why;
        return NULL;
    }
    return bq;
}

enum aq_put_status
aq_broker_put(struct aq_broker *b, const struct aq_put *p,
              struct aq_put_wait *w, aq_put_cb *cb, void *arg,
              struct aq_put_result *res, struct aq_error *err)
{
    struct broker_queue *bq;
    enum aq_kind kind;
    struct aq_job *j;
    int64_t delay_us;

    if ((bq = put_check(b, p, &kind, err)) == NULL)
        return AQ_PUT_FAILED;
    w->cb = cb;
    w->arg = arg;
    w->ack_queued = p->ack_queued;
    w->is_syncing = false;
    if (p->key != NULL) {
        json_t *id = json_object_get(b->keys, p->key);
        struct aq_job *dup =
            id != NULL ? aq_idmap_get(b->jobs, (uint64_t)json_integer_value(id))
                       : NULL;

        if (dup != NULL) {
            res->job = dup->id;
            res->state = aq_job_state_name(dup->state);
            res->duplicate = true;
            return put_sync(b, w, res, err);
        }
    }
    for (size_t i = 0; i < p->nafter; i++) {
        /* A job this node does not hold may be another node's: the put
         * waits on it in the database (given, waiting), unless it must be
         * answered at once. */
        if (aq_idmap_get(b->jobs, p->after[i]) == NULL &&
            (p->ack_queued || b->store->ops->shares == NULL ||
             !b->store->ops->shares(b->store))) {
            aq_error_set(err, AQ_ERR_NO_JOB, "params.after: no such job: %llu",
                         (unsigned long long)p->after[i]);
            res->job = p->after[i];
            return AQ_PUT_FAILED;
        }
    }
    j = job_from_put(bq, kind, p);
    delay_us = aq_clock_s_to_us(p->delay);
    if (p->has_at) {
        /* From now: a time in the past is now, one too far ahead is
         * capped as a delay is. */
        delay_us = (int64_t)(p->at * 1e6) - aq_clock_wall_us();
        if (delay_us < 0)
            delay_us = 0;
        if (delay_us > AQ_DURATION_MAX_US)
            delay_us = AQ_DURATION_MAX_US;
    }
    if (p->nowait) {
        if (aq_queue_put_nowait(bq->q, &j->qi, p->priority, delay_us) !=
            AQ_QUEUE_OK) {
            aq_job_free(j);
            aq_error_set(err, AQ_ERR_QUEUE_FULL,
                         "queue full: %s holds %zu unfinished jobs (maxsize)",
                         bq->cfg.name, aq_queue_unfinished(bq->q));
            return AQ_PUT_FAILED;
        }
    } else {
        w->u.room.w = (struct aq_queue_waiter){0};
        if (aq_queue_put(bq->q, &w->u.room.w, &j->qi, p->priority, delay_us,
                         put_room_cb, w) != AQ_QUEUE_OK) {
            /* await q.put(): the queue is full. */
            w->u.room.job = j;
            TAILQ_INSERT_TAIL(&b->putters, w, u.room.link);
            return AQ_PUT_FULL;
        }
    }
    job_queued(b, bq, j, !p->ack_queued, res);
    return put_sync(b, w, res, err);
}

int
broker_put_force(struct aq_broker *b, const struct aq_put *p,
                 struct aq_put_result *res, struct aq_error *err)
{
    struct broker_queue *bq;
    enum aq_kind kind;
    struct aq_job *j;

    if ((bq = put_check(b, p, &kind, err)) == NULL)
        return -1;
    j = job_from_put(bq, kind, p);
    if (aq_queue_put_force(bq->q, &j->qi, p->priority,
                           aq_clock_s_to_us(p->delay)) != AQ_QUEUE_OK) {
        aq_job_free(j);
        aq_error_set(err, AQ_ERR_SHUTTING_DOWN, "put: shutting down");
        return -1;
    }
    job_queued(b, bq, j, true, res);
    return 0;
}

/* ---- jobs shared with other nodes (lib/store.h) ---- */

void
aq_broker_given(struct aq_broker *b, uint64_t id, bool ok)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);
    struct broker_queue *bq;

    if (j == NULL || j->jseg == 0)
        return;
    j->jseg = 0;
    if (j->state == AQ_JOB_WAITING) {
        /* on other nodes' jobs: the database releases it (not written
         * (!ok): its put was refused "may still run", and it goes) */
        bq = job_queue(j);
        aq_queue_task_done(bq->q, NULL);
        job_key_forget(b, j);
        job_unindex(j);
        aq_idmap_del(b->jobs, j->id);
        aq_job_free(j);
        return;
    }
    if (j->state != AQ_JOB_PENDING)
        return; /* cancelled meanwhile: a record here */
    bq = job_queue(j);
    if (!ok || (j->ext != NULL && j->ext->future != NULL)) {
        /* Not written, or someone here waits for its end: it runs
         * here after all. */
        aq_queue_requeue(bq->q, &j->qi, j->qi.priority, 0, NULL);
        b->store->ops->put(b->store, j, bq->cfg.name);
        return;
    }
    aq_queue_task_done(bq->q, NULL);
    job_key_forget(b, j);
    job_unindex(j);
    aq_idmap_del(b->jobs, j->id);
    aq_job_free(j);
}

void
aq_broker_key_taken(struct aq_broker *b, uint64_t id, uint64_t other,
                    enum aq_job_state other_state)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);
    struct broker_queue *bq;
    struct aq_put_wait *w = NULL;
    json_t *v;
    char name[24];

    if (j == NULL || aq_job_is_finished(j) || j->ext == NULL ||
        j->ext->key == NULL)
        return;
    bq = job_queue(j);
    key_put_name(name, sizeof name, id);
    if (b->key_puts != NULL && (v = json_object_get(b->key_puts, name)) != NULL)
        w = (struct aq_put_wait *)(intptr_t)json_integer_value(v);
    aq_log_job(AQ_LOG_INFO, id, bq->cfg.name,
               "job %llu: key %s is held by job %llu on another node%s",
               (unsigned long long)id, j->ext->key, (unsigned long long)other,
               w != NULL ? ": its put is a duplicate" : "");
    job_key_forget(b, j);
    free(j->ext->key);
    j->ext->key = NULL;
    if (w == NULL ||
        (j->state != AQ_JOB_PENDING && j->state != AQ_JOB_DELAYED)) {
        /* Answered already, or started: it runs, without the key. */
        b->store->ops->requeue(b->store, j); /* its row, keyless */
        return;
    }
    /* Its put is answered as a duplicate of the other job, and the job
     * goes, row and all. */
    key_put_unfile(w);
    w->u.sync.res.job = other;
    w->u.sync.res.duplicate = true;
    w->u.sync.res.state = aq_job_state_name(other_state);
    if (j->jseg != 0)
        j->jseg = 0; /* given: out of the queue's items already */
    else
        aq_queue_remove(bq->q, &j->qi);
    aq_queue_task_done(bq->q, NULL);
    if (bq->n_put > 0)
        bq->n_put--;
    b->store->ops->remove(b->store, j);
    job_unindex(j);
    aq_idmap_del(b->jobs, j->id);
    aq_job_free(j);
}

void
aq_broker_claimed(struct aq_broker *b, struct aq_job *j)
{
    struct broker_queue *bq = job_queue(j);

    /* Counted in its batch from the state it is placed in on. */
    if (j->ext != NULL && j->ext->batch != NULL)
        j->batch_flags = AQ_JOB_BATCH_HAS;
    job_set_state(j, AQ_JOB_PENDING); /* filled pending, not indexed yet */
    /* A queue shut down (a stop) keeps it unqueued: the store gives its
     * row back at close. */
    aq_queue_put_force(bq->q, &j->qi, j->qi.priority, 0);
}

void
aq_broker_put_cancel(struct aq_broker *b, struct aq_put_wait *w)
{
    if (w->is_syncing) {
        key_put_unfile(w);
        b->store->ops->sync_cancel(b->store, &w->u.sync.barrier);
        return;
    }
    aq_queue_cancel(job_queue(w->u.room.job)->q, &w->u.room.w);
    TAILQ_REMOVE(&b->putters, w, u.room.link);
    aq_job_free(w->u.room.job);
}

/* ---- jobs ---- */

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

int
aq_broker_cancel(struct aq_broker *b, uint64_t id, const char **state,
                 struct aq_error *err)
{
    struct aq_job *j = job_lookup(b, id, err);

    if (j == NULL)
        return -1;
    if (aq_job_is_finished(j)) {
        aq_error_set(err, AQ_ERR_FINISHED, "job %llu already %s",
                     (unsigned long long)id, aq_job_state_name(j->state));
        return -1;
    }
    if (j->state != AQ_JOB_RUNNING) {
        if (j->ext != NULL)
            j->ext->holder = 0; /* no worker held it when cancelled */
        aq_queue_remove(job_queue(j)->q, &j->qi);
        aq_job_set_error(j, "cancelled", "cancelled by request");
        job_finish(b, j, AQ_JOB_CANCELLED);
        *state = aq_job_state_name(AQ_JOB_CANCELLED);
        return 0;
    }
    consumer_cancel_job(j);
    /* The run may have ended inside cancel (sleep does), and j may even be
     * evicted already (results.max 0). */
    j = aq_idmap_get(b->jobs, id);
    if (j == NULL || j->state != AQ_JOB_RUNNING) {
        *state = aq_job_state_name(j != NULL ? j->state : AQ_JOB_CANCELLED);
        return 0;
    }
    return 1;
}

/* ---- cancel by queue ---- */

static void
cancel_taken_cb(struct aq_queue_item *it, void *arg)
{
    struct aq_job *j = job_of(it);

    aq_job_set_error(j, "cancelled", "cancelled by request");
    job_finish(arg, j, AQ_JOB_CANCELLED);
}

int
aq_broker_cancel_queue(struct aq_broker *b, const char *queue, bool running,
                       size_t *n, struct aq_error *err)
{
    struct broker_queue *bq = broker_queue_lookup(b, queue, err);

    if (bq == NULL)
        return -1;
    /* The waiting ones first: a consumer whose run is cancelled below
     * finds none of them to take next. */
    *n = aq_queue_take_all(bq->q, cancel_taken_cb, b);
    /* Waiting jobs are not in the queue's items: by their set, from the
     * id after the last (a cancel may cascade to others of the set). */
    for (uint64_t id = aq_idset_next(bq->ids[AQ_JOB_WAITING], 0); id != 0;
         id = aq_idset_next(bq->ids[AQ_JOB_WAITING], id)) {
        struct aq_job *j = aq_idmap_get(b->jobs, id);

        j->ext->holder = 0;
        aq_job_set_error(j, "cancelled", "cancelled by request");
        job_finish(b, j, AQ_JOB_CANCELLED);
        (*n)++;
    }
    if (running) {
        /* By the running set, from the id after the last one: a cancel
         * may end a run (and leave the set) inside the call. */
        const struct aq_idset *set = bq->ids[AQ_JOB_RUNNING];

        for (uint64_t id = aq_idset_next(set, 0); id != 0;
             id = aq_idset_next(set, id)) {
            consumer_cancel_job(aq_idmap_get(b->jobs, id));
            (*n)++;
        }
    }
    if (*n > 0)
        aq_log_queue(AQ_LOG_INFO, bq->cfg.name,
                     "queue %s: %zu jobs cancelled by request%s", bq->cfg.name,
                     *n, running ? " (running ones included)" : "");
    return 0;
}

/* ---- finished records: retry, delete ---- */

/* The finished-state words of retry and delete, as enum aq_job_state;
 * -1 (err naming params.state) for any other. */
static int
record_state(const char *state, bool done_ok, struct aq_error *err)
{
    if (done_ok && strcmp(state, "done") == 0)
        return AQ_JOB_DONE;
    if (strcmp(state, "failed") == 0)
        return AQ_JOB_FAILED;
    if (strcmp(state, "cancelled") == 0)
        return AQ_JOB_CANCELLED;
    aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                 "params.state: expected one of %s\"failed\", \"cancelled\"",
                 done_ok ? "\"done\", " : "");
    return -1;
}

static int
not_finished(const struct aq_job *j, const char *what, struct aq_error *err)
{
    aq_error_set(err, AQ_ERR_NOT_FINISHED, "%s: job %llu is %s, not finished%s",
                 what, (unsigned long long)j->id,
                 aq_job_state_name((enum aq_job_state)j->state),
                 strcmp(what, "delete") == 0 ? " (cancel it first)" : "");
    return -1;
}

/* Whether the record j may run again on its queue now, as a put of it
 * would be checked: -32005 (or -32602) with err if not. */
static int
retry_check(const struct aq_job *j, struct aq_error *err)
{
    const struct broker_queue *bq = job_queue(j);
    const struct aq_handler *h = aq_handler_find(j->kind);
    struct aq_put p = {.args_raw = j->args, .args_len = j->args_len};

    if (j->args_len == 0) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "retry: job %llu: its args were not kept (it finished "
                     "under an older asyncqd)",
                     (unsigned long long)j->id);
        return -1;
    }
    if (h == NULL || !queue_runs_kind(bq, j->kind)) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "retry: job %llu: queue %s does not run kind %s now",
                     (unsigned long long)j->id, bq->cfg.name,
                     aq_kind_name(j->kind));
        return -1;
    }
    return check_args(h, bq, &p, err);
}

/* The record j (checked) queued again; returns it (it may have moved). */
static struct aq_job *
job_retry(struct aq_broker *b, struct aq_job *j, int64_t delay_us)
{
    struct broker_queue *bq = job_queue(j);
    struct aq_job_ext *x;

    j = record_take(b, j);
    x = aq_job_ext(j);
    /* Its future told the last end; a later wait waits for the next. */
    if (x->future != NULL) {
        if (!aq_task_is_finished(x->future))
            aq_task_set_cancelled(x->future);
        aq_task_unref(x->future);
        x->future = NULL;
    }
    j->attempts = 0;
    x->holder = 0;
    if (x->retried < UINT32_MAX)
        x->retried++;
    aq_job_set_error(j, NULL, NULL);
    free(x->result);
    x->result = NULL;
    x->started_us = x->finished_us = x->due_us = 0;
    if (x->key != NULL) {
        json_t *id = json_object_get(b->keys, x->key);
        uint64_t holder = (uint64_t)json_integer_value(id);

        if (id != NULL && holder != j->id &&
            aq_idmap_get(b->jobs, holder) != NULL) {
            free(x->key); /* another job took it meanwhile */
            x->key = NULL;
        } else
            json_object_set_new(b->keys, x->key,
                                json_integer((json_int_t)j->id));
    }
    job_set_state(j, delay_us > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING);
    aq_queue_put_force(bq->q, &j->qi, j->qi.priority, delay_us);
    b->store->ops->retry(b->store, j, bq->cfg.name);
    aq_log_job(AQ_LOG_INFO, j->id, bq->cfg.name,
               "job %llu: retried by request on %s (%u)",
               (unsigned long long)j->id, bq->cfg.name, x->retried);
    return j;
}

static int
retry_refused(const struct aq_broker *b, const struct broker_queue *bq,
              struct aq_error *err)
{
    if (b->stage == STOP_NONE && (bq == NULL || !aq_queue_is_shutdown(bq->q)))
        return 0;
    aq_error_set(err, AQ_ERR_SHUTTING_DOWN, "retry: shutting down");
    return -1;
}

int
aq_broker_retry(struct aq_broker *b, uint64_t id, double delay_s,
                const char **state, struct aq_error *err)
{
    struct aq_job *j;

    if (retry_refused(b, NULL, err) < 0 || (j = job_lookup(b, id, err)) == NULL)
        return -1;
    if (!aq_job_is_finished(j))
        return not_finished(j, "retry", err);
    if (retry_refused(b, job_queue(j), err) < 0 || retry_check(j, err) < 0)
        return -1;
    j = job_retry(b, j, aq_clock_s_to_us(delay_s));
    *state = aq_job_state_name(j->state);
    return 0;
}

int
aq_broker_retry_queue(struct aq_broker *b, const char *queue, const char *state,
                      double delay_s, size_t *n, struct aq_error *err)
{
    struct broker_queue *bq;
    size_t skipped = 0;
    int st;

    *n = 0;
    if (retry_refused(b, NULL, err) < 0 ||
        (bq = broker_queue_lookup(b, queue, err)) == NULL ||
        retry_refused(b, bq, err) < 0 ||
        (st = record_state(state, false, err)) < 0)
        return -1;
    /* In id order, each step from the id after the last: a retried job
     * leaves the set, a skipped one stays. */
    for (uint64_t id = aq_idset_next(bq->ids[st], 0); id != 0;
         id = aq_idset_next(bq->ids[st], id)) {
        struct aq_job *j = aq_idmap_get(b->jobs, id);

        if (retry_check(j, NULL) < 0)
            skipped++;
        else {
            job_retry(b, j, aq_clock_s_to_us(delay_s));
            (*n)++;
        }
    }
    if (skipped > 0)
        aq_log_queue(AQ_LOG_WARN, bq->cfg.name,
                     "queue %s: %zu %s jobs not retried: the queue does not "
                     "allow them now, or their args were not kept",
                     bq->cfg.name, skipped, state);
    return 0;
}

int
aq_broker_delete(struct aq_broker *b, uint64_t id, struct aq_error *err)
{
    struct aq_job *j = job_lookup(b, id, err);

    if (j == NULL)
        return -1;
    if (!aq_job_is_finished(j))
        return not_finished(j, "delete", err);
    record_delete(b, j);
    return 0;
}

int
aq_broker_delete_queue(struct aq_broker *b, const char *queue,
                       const char *state, size_t *n, struct aq_error *err)
{
    struct broker_queue *bq;
    int st;

    *n = 0;
    if ((bq = broker_queue_lookup(b, queue, err)) == NULL ||
        (st = record_state(state, true, err)) < 0)
        return -1;
    for (uint64_t id = aq_idset_next(bq->ids[st], 0); id != 0;
         id = aq_idset_next(bq->ids[st], id)) {
        record_delete(b, aq_idmap_get(b->jobs, id));
        (*n)++;
    }
    if (*n > 0)
        aq_log_queue(AQ_LOG_INFO, bq->cfg.name,
                     "queue %s: %zu %s records deleted by request",
                     bq->cfg.name, *n, state);
    return 0;
}

/* ---- join ---- */

static void
join_unlink(struct aq_join *j)
{
    if (j == j->b->drain)
        j->b->drain = NULL;
    else
        LIST_REMOVE(j, link);
}

void
broker_join_free(struct aq_join *j)
{
    aq_batches_join_cancel(j->bj);
    for (size_t i = 0; i < j->nparts; i++)
        aq_queue_cancel(j->parts[i].bq->q, &j->parts[i].w);
    free(j->parts);
    free(j);
}

static void
join_part_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
             struct aq_queue_item *it, void *arg)
{
    struct join_part *part = arg;
    struct aq_join *j = part->join;

    if (--j->left > 0)
        return;
    join_unlink(j);
    j->cb(j->arg, 0, NULL);
    broker_join_free(j);
}

struct aq_join *
broker_join_new(struct aq_broker *b, struct broker_queue *only, aq_join_cb *cb,
                void *arg)
{
    struct aq_join *j = xcalloc(1, sizeof *j);
    struct broker_queue *bq;
    size_t n = 0;

    STAILQ_FOREACH (bq, &b->queues, link)
        n++;
    j->b = b;
    j->cb = cb;
    j->arg = arg;
    j->parts = xcalloc(n, sizeof *j->parts);
    STAILQ_FOREACH (bq, &b->queues, link) {
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
        broker_join_free(j);
        return NULL;
    }
    return j;
}

int
aq_broker_join(struct aq_broker *b, const char *queue, aq_join_cb *cb,
               void *arg, struct aq_join **join, struct aq_error *err)
{
    struct broker_queue *only = NULL;
    struct aq_join *j;

    if (queue != NULL && (only = broker_queue_lookup(b, queue, err)) == NULL)
        return -1;
    if ((j = broker_join_new(b, only, cb, arg)) == NULL)
        return 0;
    LIST_INSERT_HEAD(&b->joins, j, link);
    *join = j;
    return 1;
}

void
aq_broker_join_cancel(struct aq_join *j)
{
    join_unlink(j);
    broker_join_free(j);
}

/* ---- batches ---- */

_Static_assert(AQ_BATCH_NSTATES == BROKER_NSTATES,
               "a batch counts the states a queue indexes");

void
broker_batch_move(struct aq_job *j, int to)
{
    int from = (j->batch_flags & AQ_JOB_BATCH_COUNTED) ? j->state : -1;

    if (from < 0 && to < 0)
        return; /* never counted: dropped while restore replays */
    aq_batches_move(job_queue(j)->b->batches, j->ext->batch, j->id, from, to);
    if (to >= 0)
        j->batch_flags |= AQ_JOB_BATCH_COUNTED;
    else
        j->batch_flags &= (uint8_t)~AQ_JOB_BATCH_COUNTED;
}

static void
join_batch_cb(void *arg)
{
    struct aq_join *j = arg;

    j->bj = NULL; /* the table frees it */
    join_unlink(j);
    j->cb(j->arg, 0, NULL);
    broker_join_free(j);
}

int
aq_broker_join_batch(struct aq_broker *b, const char *batch, aq_join_cb *cb,
                     void *arg, struct aq_join **join)
{
    struct aq_join *j = xcalloc(1, sizeof *j);

    j->b = b;
    j->cb = cb;
    j->arg = arg;
    if (aq_batches_join(b->batches, batch, join_batch_cb, j, &j->bj) == 0) {
        free(j);
        return 0;
    }
    LIST_INSERT_HEAD(&b->joins, j, link);
    *join = j;
    return 1;
}

void
aq_broker_batch_counts(const struct aq_broker *b, const char *batch,
                       struct aq_batch_counts *out)
{
    aq_batches_counts(b->batches, batch, out);
}

/* ---- queues ---- */

static void
broker_queue_stats(const struct broker_queue *bq, struct aq_queue_stats *s)
{
    *s = (struct aq_queue_stats){
        .name = bq->cfg.name,
        .kind = aq_kind_name(bq->kind),
        .size = aq_queue_qsize(bq->q),
        .delayed = aq_queue_delayed(bq->q),
        .waiting = aq_idset_count(bq->ids[AQ_JOB_WAITING]),
        .unfinished = aq_queue_unfinished(bq->q),
        .maxsize = aq_queue_maxsize(bq->q),
        .running = bq->nbusy,
        .consumers = bq->target,
        .workers = bq->nworkers,
        .leases = bq->kind == AQ_KIND_REMOTE ? bq->nbusy : 0,
        .paused = bq->is_paused,
        .put = bq->n_put,
        .done = bq->n_done,
        .failed = bq->n_failed,
        .cancelled = bq->n_cancelled,
        .retried = bq->n_retried,
        .wait = &bq->wait_hist,
        .run = &bq->run_hist,
        .oldest_ready_s = (double)aq_queue_oldest_ready_us(bq->q) / 1e6,
        .putters = aq_queue_putters(bq->q),
        .failures = bq->n_fail_by,
        .throttled_s = throttle_seconds(bq),
        .rate_per_second = bq->rate != NULL ? bq->cfg.rate.per_second : 0,
        .rate_burst = bq->cfg.rate.burst,
    };
}

int
aq_broker_each_queue(struct aq_broker *b, const char *queue,
                     void (*fn)(const struct aq_queue_stats *s, void *arg),
                     void *arg, struct aq_error *err)
{
    struct broker_queue *bq;
    struct aq_queue_stats s;

    if (queue != NULL) {
        if ((bq = broker_queue_lookup(b, queue, err)) == NULL)
            return -1;
        broker_queue_stats(bq, &s);
        fn(&s, arg);
        return 0;
    }
    STAILQ_FOREACH (bq, &b->queues, link) {
        broker_queue_stats(bq, &s);
        fn(&s, arg);
    }
    return 0;
}

int
aq_broker_scale(struct aq_broker *b, const char *queue, int consumers,
                struct aq_error *err)
{
    struct broker_queue *bq = broker_queue_lookup(b, queue, err);

    if (bq == NULL)
        return -1;
    if (bq->kind == AQ_KIND_REMOTE && consumers > 0) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "scale: queue %s is a remote queue: workers take its "
                     "jobs (get), it has no consumers",
                     bq->cfg.name);
        return -1;
    }
    aq_log_queue(AQ_LOG_INFO, bq->cfg.name,
                 "queue %s: scale %d -> %d consumers", bq->cfg.name, bq->target,
                 consumers);
    bq->is_scaled = true;
    consumers_scale(bq, consumers);
    return 0;
}

int
aq_broker_pause(struct aq_broker *b, const char *queue, bool paused,
                struct aq_error *err)
{
    struct broker_queue *bq = broker_queue_lookup(b, queue, err);

    if (bq == NULL)
        return -1;
    if (bq->is_paused == paused)
        return 0;
    bq->is_paused = paused;
    aq_log_queue(AQ_LOG_INFO, bq->cfg.name, "queue %s: %s", bq->cfg.name,
                 paused ? "paused" : "resumed");
    consumers_pause(bq, paused);
    return 0;
}

void
aq_broker_counts(const struct aq_broker *b, size_t *unfinished, size_t *running)
{
    const struct broker_queue *bq;

    *unfinished = *running = 0;
    STAILQ_FOREACH (bq, &b->queues, link) {
        *unfinished += aq_queue_unfinished(bq->q);
        *running += (size_t)bq->nbusy;
    }
}

void
aq_broker_set_own_addresses(struct aq_broker *b,
                            const struct sockaddr_storage *addrs, size_t n)
{
    free(b->own_addrs);
    b->own_addrs = xcalloc(n > 0 ? n : 1, sizeof *b->own_addrs);
    memcpy(b->own_addrs, addrs, n * sizeof *addrs);
    b->nown_addrs = n;
}
