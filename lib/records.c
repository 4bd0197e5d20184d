/* SPDX-License-Identifier: MIT */
/*
 * lib/records.c: finished jobs. A job that reaches its final state (done,
 * failed, cancelled) becomes a record: kept, packed into the record arena
 * with its args, in one of two lists in finish order (oldest first): done
 * records (results.ttl, results.max) and failed or cancelled ones
 * (results.failed_ttl, results.failed_max). results.max_bytes bounds the
 * bytes of both together: past it the oldest record of either goes. The
 * lists use the links of the job's queue item, which a finished job no
 * longer needs. A record leaves by eviction (the store forgets it), by a
 * delete (the store records that it is gone) or by a retry (it is queued
 * again).
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

static struct reclist *
class_of(struct records *rs, const struct aq_job *j)
{
    return j->state == AQ_JOB_DONE ? &rs->done : &rs->failed;
}

void
job_key_forget(struct aq_broker *b, const struct aq_job *j)
{
    if (j->ext != NULL && j->ext->key != NULL) {
        json_t *id = json_object_get(b->keys, j->ext->key);

        if (json_integer_value(id) == (json_int_t)j->id)
            json_object_del(b->keys, j->ext->key);
    }
}

/* Takes j out of its list and out of the byte count. */
static void
record_unlink(struct records *rs, struct aq_job *j)
{
    struct reclist *rl = class_of(rs, j);
    struct aq_queue_item *prev = REC_PREV(j), *next = REC_NEXT(j);

    if (prev != NULL)
        REC_NEXT(job_of(prev)) = next;
    else
        rl->head = next != NULL ? job_of(next) : NULL;
    if (next != NULL)
        REC_PREV(job_of(next)) = prev;
    else
        rl->tail = prev != NULL ? job_of(prev) : NULL;
    REC_PREV(j) = REC_NEXT(j) = NULL;
    rl->n--;
    rs->bytes -= aq_job_bytes(j);
}

/* j leaves the broker: evicted (the store forgets it, and may replay it
 * to be evicted again), or deleted by hand (the store records that). */
static void
record_drop(struct aq_broker *b, struct aq_job *j, bool is_deleted)
{
    record_unlink(&b->records, j);
    if (is_deleted)
        b->store->ops->remove(b->store, j);
    else
        b->store->ops->forget(b->store, j);
    job_unindex(j);
    aq_idmap_del(b->jobs, j->id);
    aq_trim_note(1);
    job_key_forget(b, j);
    aq_job_free(j);
}

static void
trim_class(struct aq_broker *b, struct reclist *rl, int64_t now_us)
{
    int64_t oldest_us = now_us - aq_clock_s_to_us(rl->ttl_s);

    while (rl->head != NULL &&
           (rl->n > rl->max || rl->head->ext->finished_us < oldest_us))
        record_drop(b, rl->head, false);
}

/* Drops the records over their class's count or age (as of now_us, wall
 * clock) and over the byte cap. */
static void
records_trim_at(struct aq_broker *b, int64_t now_us)
{
    struct records *rs = &b->records;

    trim_class(b, &rs->done, now_us);
    trim_class(b, &rs->failed, now_us);
    /* Over the byte cap: the oldest record of either class goes. */
    while (rs->bytes > rs->max_bytes &&
           (rs->done.head != NULL || rs->failed.head != NULL)) {
        struct aq_job *d = rs->done.head, *f = rs->failed.head;

        if (d == NULL ||
            (f != NULL &&
             (f->ext->finished_us < d->ext->finished_us ||
              (f->ext->finished_us == d->ext->finished_us && f->id < d->id))))
            d = f;
        record_drop(b, d, false);
    }
}

static void
records_trim(struct aq_broker *b)
{
    records_trim_at(b, aq_clock_wall_us());
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

/* Files the finished j (taken) as the newest record of its class; now_us:
 * the wall clock, for the records' age. */
static void
record_append_at(struct aq_broker *b, struct aq_job *j, int64_t now_us)
{
    struct records *rs = &b->records;
    struct reclist *rl = class_of(rs, j);

    /* Kept records live in their own arena (see recarena.h). */
    if (rl->max > 0 && rs->max_bytes > 0) {
        struct aq_job *packed = aq_job_pack(j, rs->arena);

        if (packed != j)
            aq_idmap_put(b->jobs, packed);
        j = packed;
    }
    REC_NEXT(j) = NULL;
    REC_PREV(j) = rl->tail != NULL ? &rl->tail->qi : NULL;
    if (rl->tail != NULL)
        REC_NEXT(rl->tail) = &j->qi;
    else
        rl->head = j;
    rl->tail = j;
    rl->n++;
    rs->bytes += aq_job_bytes(j);
    records_trim_at(b, now_us);
}

void
record_append(struct aq_broker *b, struct aq_job *j)
{
    record_append_at(b, j, aq_clock_wall_us());
}

struct aq_job *
record_take(struct aq_broker *b, struct aq_job *j)
{
    struct aq_job *nj;

    record_unlink(&b->records, j);
    nj = aq_job_unpack(j);
    if (nj != j)
        aq_idmap_put(b->jobs, nj);
    return nj;
}

void
record_delete(struct aq_broker *b, struct aq_job *j)
{
    record_drop(b, j, true);
}

bool
aq_broker_drop_record(struct aq_broker *b, uint64_t id)
{
    struct aq_job *j = aq_idmap_get(b->jobs, id);

    if (j == NULL || !aq_job_is_finished(j))
        return false;
    record_unlink(&b->records, j);
    job_unindex(j);
    aq_idmap_del(b->jobs, j->id);
    job_key_forget(b, j);
    aq_job_free(j);
    return true;
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
    if (x->deps != NULL)
        deps_finished(b, j); /* before it is packed, or evicted */
    record_append_at(b, j, x->finished_us); /* now: it just finished */
    if (b->deps_nwork > 0)
        deps_run(b);
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
    struct records *rs = &b->records;

    rs->done.ttl_s = cfg->results.ttl;
    rs->done.max = cfg->results.max;
    rs->failed.ttl_s = cfg->results.failed_ttl;
    rs->failed.max = cfg->results.failed_max;
    rs->max_bytes = cfg->results.max_bytes;
    records_trim(b);
}

void
records_free(struct aq_broker *b)
{
    aq_recarena_free(b->records.arena);
    event_free(b->records.expire_ev);
}
