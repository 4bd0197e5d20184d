/* SPDX-License-Identifier: MIT */
/*
 * lib/records.c: finished jobs. A job that reaches its final state (done,
 * failed, cancelled) becomes a record: kept, packed into the record arena,
 * in one list in finish order (oldest first), until results.max or
 * results.ttl evicts it. The list uses the links of the job's queue item,
 * which a finished job no longer needs.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "idmap.h"
#include "log.h"
#include "recarena.h"
#include "task.h"
#include "xmalloc.h"

#define EXPIRE_INTERVAL_US 1000000

#define REC_PREV(j) ((j)->qi.u.link[0])
#define REC_NEXT(j) ((j)->qi.u.link[1])

static void
record_evict(struct aq_broker *b, struct aq_job *j)
{
    struct records *rs = &b->records;
    struct aq_queue_item *prev = REC_PREV(j), *next = REC_NEXT(j);

    if (prev != NULL)
        REC_NEXT(job_of(prev)) = next;
    else
        rs->head = next != NULL ? job_of(next) : NULL;
    if (next != NULL)
        REC_PREV(job_of(next)) = prev;
    else
        rs->tail = prev != NULL ? job_of(prev) : NULL;
    rs->n--;
    b->store->ops->forget(b->store, j);
    job_unindex(j);
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
    struct records *rs = &b->records;
    int64_t oldest_us = aq_clock_wall_us() - aq_clock_s_to_us(rs->ttl_s);

    while (rs->head != NULL &&
           (rs->n > rs->max || rs->head->ext->finished_us < oldest_us))
        record_evict(b, rs->head);
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

void
record_append(struct aq_broker *b, struct aq_job *j)
{
    struct records *rs = &b->records;

    /* Kept records live in their own arena (see recarena.h). */
    if (rs->max > 0) {
        struct aq_job *packed = aq_job_pack(j, rs->arena);

        if (packed != j)
            aq_idmap_put(b->jobs, packed);
        j = packed;
    }
    REC_NEXT(j) = NULL;
    REC_PREV(j) = rs->tail != NULL ? &rs->tail->qi : NULL;
    if (rs->tail != NULL)
        REC_NEXT(rs->tail) = &j->qi;
    else
        rs->head = j;
    rs->tail = j;
    rs->n++;
    records_trim(b);
}

void
job_finish(struct aq_broker *b, struct aq_job *j, enum aq_job_state st)
{
    struct broker_queue *bq = job_queue(j);
    struct aq_job_ext *x = aq_job_ext(j);

    job_set_state(j, st);
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
    aq_log_job(st == AQ_JOB_FAILED ? AQ_LOG_WARN : AQ_LOG_DEBUG, j->id,
               bq->cfg.name, "job %llu: %s on %s%s%s",
               (unsigned long long)j->id, aq_job_state_name(st), bq->cfg.name,
               x->err_message != NULL ? ": " : "",
               x->err_message != NULL ? x->err_message : "");
    b->store->ops->finish(b->store, j, bq->cfg.name);
    record_append(b, j);
}

void
records_init(struct aq_broker *b, const struct aq_config *cfg)
{
    struct timeval tv = aq_clock_tv(EXPIRE_INTERVAL_US);

    b->records.arena = aq_recarena_new();
    b->records.expire_ev = event_new(b->base, -1, EV_PERSIST, expire_cb, b);
    event_add(b->records.expire_ev, &tv);
    records_configure(b, cfg);
}

void
records_configure(struct aq_broker *b, const struct aq_config *cfg)
{
    b->records.ttl_s = cfg->results.ttl;
    b->records.max = cfg->results.max;
    records_trim(b);
}

void
records_free(struct aq_broker *b)
{
    aq_recarena_free(b->records.arena);
    event_free(b->records.expire_ev);
}
