/* SPDX-License-Identifier: MIT */
/*
 * lib/store.c: the store seam (lib/store.h) from the broker's side: the
 * memory store (keeps nothing, durable at once), and restore: a store
 * rebuilds its jobs into the broker, which then places them, unfinished
 * ones back in their queues, finished ones as records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "error.h"
#include "idmap.h"
#include "log.h"
#include "xmalloc.h"

/* ---- the memory store ---- */

static int
mem_restore(struct aq_store *s, struct aq_broker *b, uint64_t *last_id,
            bool *is_damaged, struct aq_error *err)
{
    *last_id = 0;
    *is_damaged = false;
    return 0;
}

static void
mem_event(struct aq_store *s, struct aq_job *j)
{
}

static void
mem_whole(struct aq_store *s, struct aq_job *j, const char *queue)
{
}

static int
mem_sync(struct aq_store *s, struct aq_barrier *b, aq_barrier_cb *cb, void *arg,
         struct aq_error *err)
{
    return 0;
}

static void
mem_sync_cancel(struct aq_store *s, struct aq_barrier *b)
{
}

static const struct aq_error *
mem_error(const struct aq_store *s)
{
    return NULL;
}

static void
mem_close(struct aq_store *s)
{
    free(s);
}

static const struct aq_store_ops memory_ops = {
    .name = "memory",
    .restore = mem_restore,
    .put = mem_whole,
    .start = mem_event,
    .requeue = mem_event,
    .finish = mem_whole,
    .forget = mem_event,
    .retry = mem_whole,
    .remove = mem_event,
    .sync = mem_sync,
    .sync_cancel = mem_sync_cancel,
    .error = mem_error,
    .close = mem_close,
};

struct aq_store *
aq_store_memory_new(void)
{
    struct aq_store *s = xmalloc(sizeof *s);

    s->ops = &memory_ops;
    return s;
}

void
aq_store_close(struct aq_store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

/* ---- what a store calls while it restores ---- */

struct aq_job *
aq_broker_restore_find(struct aq_broker *b, uint64_t id)
{
    return aq_idmap_get(b->jobs, id);
}

/* The queue of a restored job; a queue the config no longer has is kept
 * with no consumer, its jobs waiting until it is configured again. */
static struct broker_queue *
restore_queue(struct aq_broker *b, const char *name, size_t len)
{
    char buf[128];
    struct aq_queue_config qc;
    struct broker_queue *bq;

    snprintf(buf, sizeof buf, "%.*s", (int)len, name);
    if ((bq = broker_queue_find(b, buf)) != NULL)
        return bq;
    aq_log_queue(AQ_LOG_WARN, buf,
                 "%s: queue %s has jobs but is not in the config: kept with no "
                 "consumer until it is configured",
                 b->store->ops->name, buf);
    aq_queue_config_defaults(&qc, buf);
    qc.consumers = 0;
    bq = broker_queue_new(b, &qc);
    aq_queue_config_clear(&qc);
    return bq;
}

struct aq_job *
aq_broker_restore_add(struct aq_broker *b, uint64_t id, enum aq_kind kind,
                      const char *queue, size_t queue_len, const char *args,
                      size_t args_len)
{
    struct aq_job *j = aq_job_new(id, kind, args, args_len);

    j->queue = restore_queue(b, queue, queue_len);
    aq_idmap_put(b->jobs, j);
    return j;
}

void
aq_broker_restore_key(struct aq_broker *b, struct aq_job *j)
{
    json_object_set_new(b->keys, j->ext->key, json_integer((json_int_t)j->id));
}

void
aq_broker_restore_drop(struct aq_broker *b, struct aq_job *j)
{
    job_key_forget(b, j);
    job_unindex(j);
    aq_idmap_del(b->jobs, j->id);
    aq_job_free(j);
}

struct each_job {
    void (*fn)(struct aq_job *j, const char *queue, void *arg);
    void *arg;
};

static void
each_job_cb(void *value, void *arg)
{
    struct each_job *e = arg;
    struct aq_job *j = value;

    e->fn(j, job_queue(j)->cfg.name, e->arg);
}

void
aq_broker_each_job(struct aq_broker *b,
                   void (*fn)(struct aq_job *j, const char *queue, void *arg),
                   void *arg)
{
    struct each_job e = {fn, arg};

    aq_idmap_each(b->jobs, each_job_cb, &e);
}

/* ---- placing what was restored ---- */

struct restore {
    struct aq_job **unfinished, **finished;
    size_t nu, nf, cap_u, cap_f;
};

static void
restore_collect(void *value, void *arg)
{
    struct restore *rs = arg;
    struct aq_job *j = value;

    /* Counted in its batch from the state it is placed in on. */
    if (j->ext != NULL && j->ext->batch != NULL)
        j->batch_flags = AQ_JOB_BATCH_HAS;
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
restore_crashed(struct aq_job *j)
{
    char msg[160];

    if (j->attempts < UINT16_MAX)
        j->attempts++;
    snprintf(msg, sizeof msg, "the daemon stopped during attempt %u",
             j->attempts);
    aq_job_set_error(j, "crash", msg);
    broker_count_failure(job_queue(j), "crash");
    if (j->attempts <= job_retries(j) + 1) {
        job_set_state(j, AQ_JOB_PENDING);
        return true;
    }
    aq_log_job(AQ_LOG_WARN, j->id, job_queue(j)->cfg.name,
               "job %llu: %s, out of attempts: failed",
               (unsigned long long)j->id, msg);
    return false;
}

/* Queues what restore rebuilt, in id order; records in finish order. */
static void
restore_place(struct aq_broker *b, uint64_t last_id)
{
    struct restore rs = {0};
    struct broker_queue *bq;
    int64_t now_us = aq_clock_wall_us();
    size_t crashed = 0, delayed = 0, waiting = 0, nfree = 0;
    struct aq_job **freed = NULL; /* waiting ones whose dependencies all
                                     finished already */

    if (last_id > b->last_id)
        b->last_id = last_id;
    aq_idmap_each(b->jobs, restore_collect, &rs);
    if (rs.nu > 1)
        qsort(rs.unfinished, rs.nu, sizeof *rs.unfinished, cmp_id);
    if (rs.nf > 1)
        qsort(rs.finished, rs.nf, sizeof *rs.finished, cmp_finished);
    /* Waiting jobs learn their dependencies' states as the journal left
     * them, before records are placed (and maybe evicted): a dependency
     * no longer known counts as done. Finishes during placement (jobs
     * out of attempts) visit their dependents only once every job is
     * placed. */
    b->deps_hold = true;
    for (size_t i = 0; i < rs.nu; i++) {
        struct aq_job *j = rs.unfinished[i];

        if (j->state != AQ_JOB_WAITING)
            continue;
        if (j->ext->deps == NULL) /* a PUT in state waiting without after */
            j->ext->deps = aq_job_deps_new(NULL, 0, AQ_AFTER_DONE);
        if (deps_attach(b, j) == 0) {
            if (nfree == 0)
                freed = xreallocarray(NULL, rs.nu, sizeof *freed);
            freed[nfree++] = j;
        }
    }
    for (size_t i = 0; i < rs.nf; i++) {
        if (rs.finished[i]->id > b->last_id)
            b->last_id = rs.finished[i]->id;
        job_set_state(rs.finished[i], rs.finished[i]->state); /* indexed */
        record_append(b, rs.finished[i]);
    }
    /* Jobs come back whatever maxsize says now: none may be dropped. */
    STAILQ_FOREACH (bq, &b->queues, link)
        aq_queue_set_maxsize(bq->q, 0);
    for (size_t i = 0; i < rs.nu; i++) {
        struct aq_job *j = rs.unfinished[i];
        int64_t delay_us = 0;
        bool was_running = j->state == AQ_JOB_RUNNING;

        bq = job_queue(j);
        if (j->id > b->last_id)
            b->last_id = j->id;
        if (j->state == AQ_JOB_WAITING) {
            /* Counted unfinished, out of the queue's items (deps.c). */
            aq_queue_put_nowait(bq->q, &j->qi, j->qi.priority, 0);
            aq_queue_remove(bq->q, &j->qi);
            job_set_state(j, AQ_JOB_WAITING);
            waiting++;
            continue;
        }
        if (was_running) {
            crashed++;
            if (!restore_crashed(j)) {
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
        job_set_state(j, delay_us > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING);
        if (was_running)
            b->store->ops->requeue(b->store, j);
    }
    for (size_t i = 0; i < nfree; i++) {
        if (freed[i]->state == AQ_JOB_WAITING)
            deps_resolve(b, freed[i]);
    }
    b->deps_hold = false;
    deps_run(b);
    STAILQ_FOREACH (bq, &b->queues, link)
        aq_queue_set_maxsize(bq->q, bq->cfg.maxsize);
    aq_log(AQ_LOG_INFO,
           "%s: restored %zu unfinished jobs (%zu delayed, %zu waiting, %zu "
           "cut short by a crash) and %zu finished records; next id %llu",
           b->store->ops->name, rs.nu, delayed, waiting, crashed, rs.nf,
           (unsigned long long)b->last_id + 1);
    free(freed);
    free(rs.unfinished);
    free(rs.finished);
}

int
aq_broker_restore(struct aq_broker *b, struct aq_store *s, bool *is_damaged,
                  struct aq_error *err)
{
    uint64_t last_id = 0;

    aq_store_close(b->store);
    b->store = s;
    *is_damaged = false;
    if (s->ops->restore(s, b, &last_id, is_damaged, err) < 0)
        return -1;
    restore_place(b, last_id);
    return 0;
}
