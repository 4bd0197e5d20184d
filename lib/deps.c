/* SPDX-License-Identifier: MIT */
/*
 * lib/deps.c: dependencies between jobs (spec section 11, put's after). A
 * job put with after waits (state waiting) until every job it names has
 * finished; then it is released (pending, or delayed while its at or
 * delay is still ahead) or, under policy done with a dependency failed or
 * cancelled, cancelled with error dependency_failed.
 *
 * Each job another one waits on keeps the ids of those dependents
 * (ext->deps->dependents), each waiting job the count of its unfinished
 * dependencies (nwait): a finish visits its own dependents only, never a
 * scan. A cancel of a dependent leaves its id in the lists (skipped when
 * visited: it is no longer waiting, and ids are never reused).
 *
 * A waiting job is in its queue's count of unfinished items but not in its
 * ready or delayed items: it is queued as any put is (so it waits for room
 * under maxsize, and join counts it), then taken out at once with
 * aq_queue_remove, which leaves it "taken but unfinished" exactly as a
 * running job is. Its release is aq_queue_requeue (no second count, no
 * wait for room), its cancel aq_queue_task_done (job_finish): no new queue
 * API, and the queue's invariants hold as for jobs consumers hold.
 *
 * Finishes that release or cancel dependents, which may finish more
 * (a cancelled one's own dependents), are handled by one loop over a work
 * list (b->deps_work), never by recursion: a chain of any length costs no
 * stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "idmap.h"
#include "log.h"
#include "xmalloc.h"

static struct aq_job_deps *
deps_of(struct aq_job *j)
{
    struct aq_job_ext *x = aq_job_ext(j);

    if (x->deps == NULL)
        x->deps = aq_job_deps_new(NULL, 0, AQ_AFTER_DONE);
    return x->deps;
}

static void
dependent_add(struct aq_job *dep, uint64_t id)
{
    struct aq_job_deps *d = deps_of(dep);

    if (d->ndependents == d->cap) {
        d->cap = d->cap != 0 ? d->cap * 2 : 4;
        d->dependents =
            xreallocarray(d->dependents, d->cap, sizeof *d->dependents);
    }
    d->dependents[d->ndependents++] = id;
}

/* The dependency id, finished in state st, is one of j's. */
static void
note_finished(struct aq_job_deps *d, uint64_t id, enum aq_job_state st)
{
    if (st != AQ_JOB_DONE && d->failed == 0) {
        d->failed = id;
        d->failed_state = (uint8_t)st;
    }
}

size_t
deps_attach(struct aq_broker *b, struct aq_job *j)
{
    struct aq_job_deps *d = j->ext->deps;

    d->nwait = 0;
    for (uint32_t i = 0; i < d->nafter; i++) {
        struct aq_job *dep = aq_idmap_get(b->jobs, d->after[i]);

        /* Gone (an evicted or deleted record): it finished, and a
         * record goes only once finished; counted done. */
        if (dep == NULL || dep == j)
            continue;
        if (aq_job_is_finished(dep)) {
            note_finished(d, dep->id, dep->state);
            continue;
        }
        dependent_add(dep, j->id);
        d->nwait++;
    }
    return d->nwait;
}

void
deps_resolve(struct aq_broker *b, struct aq_job *j)
{
    struct broker_queue *bq = job_queue(j);
    struct aq_job_ext *x = j->ext;
    struct aq_job_deps *d = x->deps;
    int64_t now_us, delay_us = 0;

    if (d->policy == AQ_AFTER_DONE && d->failed != 0) {
        char msg[96];

        snprintf(msg, sizeof msg, "job %llu %s", (unsigned long long)d->failed,
                 aq_job_state_name(d->failed_state));
        x->holder = 0;
        aq_job_set_error(j, "dependency_failed", msg);
        job_finish(b, j, AQ_JOB_CANCELLED);
        return;
    }
    now_us = aq_clock_wall_us();
    if (x->due_us > now_us)
        delay_us = x->due_us - now_us;
    x->due_us = 0;
    job_set_state(j, delay_us > 0 ? AQ_JOB_DELAYED : AQ_JOB_PENDING);
    aq_queue_requeue(bq->q, &j->qi, j->qi.priority, delay_us, NULL);
    b->store->ops->requeue(b->store, j);
    aq_log_job(AQ_LOG_DEBUG, j->id, bq->cfg.name,
               "job %llu: its dependencies finished: %s",
               (unsigned long long)j->id, aq_job_state_name(j->state));
}

void
deps_finished(struct aq_broker *b, struct aq_job *j)
{
    struct aq_job_deps *d = j->ext->deps;
    struct deps_work *w;

    if (d->ndependents == 0)
        return;
    if (b->deps_nwork == b->deps_capwork) {
        b->deps_capwork = b->deps_capwork != 0 ? b->deps_capwork * 2 : 16;
        b->deps_work =
            xreallocarray(b->deps_work, b->deps_capwork, sizeof *b->deps_work);
    }
    w = &b->deps_work[b->deps_nwork++];
    *w = (struct deps_work){.ids = d->dependents,
                            .n = d->ndependents,
                            .dep = j->id,
                            .st = j->state};
    d->dependents = NULL;
    d->ndependents = d->cap = 0;
}

void
deps_run(struct aq_broker *b)
{
    if (b->deps_running || b->deps_hold)
        return;
    b->deps_running = true;
    while (b->deps_nwork > 0) {
        /* A copy: visits may push more work (and move the array). */
        struct deps_work w = b->deps_work[--b->deps_nwork];

        for (uint32_t i = 0; i < w.n; i++) {
            struct aq_job *j = aq_idmap_get(b->jobs, w.ids[i]);
            struct aq_job_deps *d;

            if (j == NULL || j->state != AQ_JOB_WAITING)
                continue; /* cancelled meanwhile (or gone) */
            d = j->ext->deps;
            note_finished(d, w.dep, w.st);
            if (d->nwait > 0 && --d->nwait == 0)
                deps_resolve(b, j);
        }
        free(w.ids);
    }
    b->deps_running = false;
}

void
deps_free(struct aq_broker *b)
{
    while (b->deps_nwork > 0)
        free(b->deps_work[--b->deps_nwork].ids);
    free(b->deps_work);
    b->deps_work = NULL;
    b->deps_capwork = 0;
}
