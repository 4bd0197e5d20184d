/* SPDX-License-Identifier: MIT */
/*
 * lib/broker-internal.h: what the broker's files share. broker.c holds the
 * queue table and the methods (put, status, cancel, join, scale, pause),
 * consumer.c the consumers that run jobs and the graceful stop, records.c
 * the finished records, store.c the seam to durability (lib/store.h) and
 * restore. Only they include it; daemon/ and black-box tests never do.
 *
 * Every job the broker knows (unfinished, or a finished record not yet
 * evicted) is in the id map, which owns it. An unfinished job is in its
 * queue (delayed or pending) or held by one consumer (running). A finished
 * job is in the records (records.c) until its class's limits
 * (results.ttl/max, failed_ttl/failed_max, max_bytes) evict it, or a
 * delete removes it, or a retry makes it unfinished again.
 */
#ifndef AQ_BROKER_INTERNAL_H
#define AQ_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>

#include "batch.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "handler.h"
#include "hist.h"
#include "idset.h"
#include "job.h"
#include "queue.h"
#include "store.h"

struct aq_http;
struct aq_recarena;
struct aq_wait;

/* Why a consumer's run was cancelled. */
enum interrupt { INT_NONE, INT_TIMEOUT, INT_CANCEL, INT_SHUTDOWN };

/* A taker of jobs under a queue's rate limit (throttle.c): an idle
 * consumer, or one queue of a waiting get. */
enum taker_state {
    TAKER_IDLE,    /* holds no token, waits for none */
    TAKER_QUEUED,  /* waits for a token, in the queue's takers */
    TAKER_HOLDING, /* holds a token: may wait on the queue for a job */
};

struct taker {
    TAILQ_ENTRY(taker) link;     /* the throttle's takers while QUEUED */
    void (*go)(struct taker *k); /* it holds a token now: go on */
    enum taker_state state;
};

/* An aq_task whose work is the loop get -> run -> end of attempt. It may
 * be freed only from its task's done-callback (consumer.c). */
struct consumer {
    struct broker_queue *bq;
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
    struct taker rt;           /* under bq's rate limit */
    LIST_ENTRY(consumer) link; /* bq->consumers */
};

/* The job states a queue indexes (enum aq_job_state). */
#define BROKER_NSTATES (AQ_JOB_CANCELLED + 1)

/* One queue of the config (or of replayed jobs). */
struct broker_queue {
    struct aq_broker *b;
    struct aq_queue_config cfg; /* owned copy; cfg.name is the name */
    enum aq_kind kind;
    struct aq_queue *q;              /* owned; items are the id map's jobs */
    LIST_HEAD(, consumer) consumers; /* owned, live and ended */
    int target;                      /* consumers asked for */
    int nbusy;                       /* consumers running a job */
    bool is_paused;
    uint64_t n_put, n_done, n_failed, n_cancelled, n_retried;
    uint64_t n_fail_by[AQ_FAIL_REASONS]; /* failed attempts, by reason */
    bool is_scaled; /* consumers set by scale since the config's last say */
    struct aq_hist wait_hist, run_hist;
    struct aq_http *http; /* owned: connection pool, made by the first http
                             job */
    /* owned: the ids of its jobs in each state, for list (joblist.c) */
    struct aq_idset *ids[BROKER_NSTATES];
    int nworkers; /* remote: workers with a get waiting or a lease held */
    struct throttle *rate; /* owned: the rate limit; NULL = none */
    int64_t throttled_us;  /* throttled time of rate limits since removed */
    /* jobs shared with other nodes (the postgres store's claims) */
    bool is_claiming; /* a claim of its pool rows in flight */
    bool pool_maybe;  /* its pool may hold ready rows (told or not known) */
    bool claim_again; /* told of pool rows while a claim was in flight */
    STAILQ_ENTRY(broker_queue) link; /* b->queues, in config order */
};

/* ---- remote workers (lease.c) ---- */

/* A job a worker holds: the attempt runs until task_done, release, the
 * deadline, a cancel, or the worker's connection closes. Leases are kept
 * for reuse (b->free_leases), each with its timer: a get allocates
 * nothing per job. */
struct lease {
    struct aq_job *job;       /* running, leased; NULL while free */
    struct aq_worker *w;      /* the holder */
    struct aq_broker *b;      /* for the timer's callback */
    struct event *ev;         /* owned: the deadline */
    int64_t length_us;        /* as granted or last touched; 0 = no end */
    int64_t deadline_wall_us; /* 0 = none */
    TAILQ_ENTRY(lease) link;  /* w->leases, or b->free_leases */
};

/* A queue a worker waits on or holds jobs of, and how many times. */
struct worker_queue {
    struct broker_queue *bq;
    uint32_t n;
};

/* A worker: one connection that takes jobs (get), as the methods tell. */
struct aq_worker {
    struct aq_broker *b; /* NULL once the broker is freed */
    uint64_t num;        /* unique for the broker's life */
    char peer[96];
    aq_worker_cancel_cb *cancel_cb;
    void *cancel_arg;
    TAILQ_HEAD(, lease) leases;
    LIST_HEAD(, aq_get_wait) gets; /* its waiting gets */
    struct worker_queue *wq;       /* owned */
    size_t nwq;
    LIST_ENTRY(aq_worker) link; /* b->workers */
    bool is_eof;                /* its client sent EOF: no more jobs */
};

/* A get waiting for jobs: one queue waiter per queue it names. */
struct get_part {
    struct aq_queue_waiter w;
    struct aq_get_wait *g;
    struct broker_queue *bq;
    struct taker rt; /* under bq's rate limit */
};

struct aq_get_wait {
    struct aq_worker *w;
    aq_get_cb *cb;
    void *arg;
    size_t max;
    int64_t lease_us;              /* < 0: each job's timeout */
    struct event *timer;           /* owned: wait's end; NULL = none */
    TAILQ_ENTRY(aq_get_wait) link; /* b->gets, in arrival order */
    LIST_ENTRY(aq_get_wait) wlink; /* w->gets */
    size_t nparts;
    struct get_part parts[];
};

/* A join: one queue waiter per queue it covers. */
struct join_part {
    struct aq_queue_waiter w;
    struct aq_join *join;
    struct broker_queue *bq;
};

struct aq_join {
    struct aq_broker *b;
    aq_join_cb *cb;
    void *arg;
    size_t nparts, left;
    struct join_part *parts;  /* owned */
    struct aq_batch_join *bj; /* a join by batch: the table's; or NULL */
    LIST_ENTRY(aq_join) link; /* b->joins, unless it is b->drain */
};

enum stop_stage { STOP_NONE, STOP_DRAIN, STOP_GRACE, STOP_CANCEL, STOP_DONE };

/* One retention class of finished records, in finish order (oldest
 * first), with its limits. */
struct reclist {
    struct aq_job *head, *tail;
    size_t n;
    double ttl_s; /* results.ttl, results.failed_ttl */
    size_t max;   /* results.max, results.failed_max */
};

/* Finished records (records.c): done ones, and failed or cancelled ones,
 * kept apart so that each class has its own limits. */
struct records {
    struct reclist done, failed;
    struct aq_recarena *arena; /* owned: where they are kept */
    size_t bytes;              /* aq_job_bytes of every record */
    size_t max_bytes;          /* results.max_bytes */
    struct event *expire_ev;   /* owned: the ttl sweep */
};

/* A finished job's dependents, to visit (deps.c). */
struct deps_work {
    uint64_t *ids; /* owned */
    uint32_t n;
    uint8_t st;   /* the state it finished in */
    uint64_t dep; /* the finished job */
};

struct aq_broker {
    struct event_base *base;            /* borrowed */
    struct aq_procs *procs;             /* borrowed */
    STAILQ_HEAD(, broker_queue) queues; /* owned */
    struct aq_idmap *jobs;              /* owns every job */
    json_t *keys;                       /* idempotency key -> job id */
    uint64_t last_id;
    struct aq_store *store; /* owned; the memory store until restore */
    struct records records;
    TAILQ_HEAD(, aq_put_wait) putters; /* waiting for room */
    LIST_HEAD(, aq_join) joins;        /* owned */
    bool is_started;                   /* consumers run (aq_broker_start) */

    /* graceful stop (consumer.c) */
    enum stop_stage stage;
    struct aq_join *drain;     /* owned */
    struct aq_wait *stop_wait; /* owned */
    double grace_s;
    void (*stop_done)(void *arg);
    void *stop_arg;

    struct sockaddr_storage *own_addrs; /* owned: the daemon's listeners */
    size_t nown_addrs;

    /* remote workers (lease.c) */
    LIST_HEAD(, aq_worker) workers; /* borrowed: the methods own them */
    uint64_t last_worker;
    TAILQ_HEAD(, aq_get_wait) gets;  /* waiting, in arrival order */
    TAILQ_HEAD(, lease) free_leases; /* owned, for reuse */
    size_t nleases;                  /* held */
    struct aq_task *lease_task;      /* stopping: ends once none is held */
    struct aq_leased *got;           /* owned: a get's answer, reused */
    size_t got_cap;

    struct aq_batches *batches; /* owned: counts per batch (batch.h) */
    /* dependencies (deps.c) */
    struct deps_work *deps_work; /* owned: finishes whose dependents wait
                                    for a visit */
    size_t deps_nwork, deps_capwork;
    bool deps_running; /* deps_run is on the stack */
    bool deps_hold;    /* restore: visits wait until every job is placed */
    struct sched_table *sched; /* owned: the schedules (schedule.c) */
    /* ids from blocks a store reserves (several nodes give ids): ids up
     * to id_limit are the broker's (0: no limit), then the next block */
    uint64_t id_limit, id_next_first, id_next_last;
    /* keyed puts waiting for the store, by their job's id (a store
     * sharing jobs may find the key held elsewhere: aq_broker_key_taken) */
    json_t *key_puts; /* owned; NULL until the first */
};

/* ---- jobs ---- */

static inline struct aq_job *
job_of(struct aq_queue_item *it)
{
    return (struct aq_job *)((char *)it - offsetof(struct aq_job, qi));
}

static inline struct broker_queue *
job_queue(const struct aq_job *j)
{
    return j->queue;
}

static inline int64_t
job_timeout_us(const struct aq_job *j)
{
    if (j->ext != NULL && j->ext->timeout_us >= 0)
        return j->ext->timeout_us;
    return aq_clock_s_to_us(job_queue(j)->cfg.timeout);
}

static inline int
job_retries(const struct aq_job *j)
{
    if (j->ext != NULL && j->ext->retries >= 0)
        return j->ext->retries;
    return job_queue(j)->cfg.retries;
}

/* The job j with a batch goes to state to (-1: it leaves the broker): its
 * batch's counts follow (broker.c). */
void broker_batch_move(struct aq_job *j, int to);

/* Every change of a job's state in the broker goes through here, so that
 * its queue's per-state index (bq->ids) stays in step: j's id moves from
 * its old state's set to st's. A job not indexed yet (new, or rebuilt by
 * restore with the state replay gave it) is simply filed under st; so
 * job_set_state(j, j->state) files a restored record as it is. O(1) on
 * the hot path: ids are mostly the newest or oldest of their set. The
 * counts of a job's batch follow too (one test for a job without). */
static inline void
job_set_state(struct aq_job *j, enum aq_job_state st)
{
    struct broker_queue *bq = job_queue(j);

    if (j->state != st)
        aq_idset_del(bq->ids[j->state], j->id);
    aq_idset_add(bq->ids[st], j->id);
    if (j->batch_flags != 0)
        broker_batch_move(j, (int)st);
    j->state = (uint8_t)st;
}

/* j leaves the broker (its record is evicted or deleted): called before
 * it is unfiled from the id map and freed. */
static inline void
job_unindex(struct aq_job *j)
{
    aq_idset_del(job_queue(j)->ids[j->state], j->id);
    if (j->batch_flags != 0)
        broker_batch_move(j, -1);
}

/* The job record of spec section 2, as users see it (a new object). */
json_t *job_record(const struct aq_job *j);

/* A taker of bq waits and no job of bq is ready: a store sharing jobs
 * with other nodes may claim some (lib/store.h hungry). */
static inline void
broker_hungry(struct broker_queue *bq)
{
    struct aq_store *s = bq->b->store;

    if (s->ops->hungry != NULL)
        s->ops->hungry(s, bq);
}

/* ---- broker.c ---- */

struct broker_queue *broker_queue_find(const struct aq_broker *b,
                                       const char *name);
/* A new queue at the end of b's; its consumers start with b's. */
struct broker_queue *broker_queue_new(struct aq_broker *b,
                                      const struct aq_queue_config *qc);
/* A join over one queue (only) or all: NULL when nothing is unfinished. */
struct aq_join *broker_join_new(struct aq_broker *b, struct broker_queue *only,
                                aq_join_cb *cb, void *arg);
void broker_join_free(struct aq_join *j); /* unlinked: no callback after */
/* Fails every put waiting for room with -32010 (the broker stops). */
void broker_putters_stop(struct aq_broker *b);
/* Jobs a taker of bq takes ahead (a store sharing jobs keeps them at a
 * put, claims them): as many as its consumers run in about 20 ms, by the
 * mean run time so far, 0 to 16 (1 before any ran). */
size_t broker_queue_ahead(const struct broker_queue *bq);
/* A put from the daemon itself (a schedule's fire): checked as a put,
 * queued at once whatever maxsize says (as a retry), never waiting for the
 * store. 0 with *res, or -1 with err (as aq_broker_put's). */
int broker_put_force(struct aq_broker *b, const struct aq_put *p,
                     struct aq_put_result *res, struct aq_error *err);

/* ---- joblist.c ---- */

/* bq's empty per-state index, and its end (with bq). */
void broker_index_init(struct broker_queue *bq);
void broker_index_free(struct broker_queue *bq);

/* ---- consumer.c ---- */

/* Brings bq's live consumers to target: new ones start from the loop;
 * surplus ones end, idle ones first, busy ones after their job. */
void consumers_scale(struct broker_queue *bq, int target);
/* Idle consumers stop waiting for jobs (paused), or wait again. */
void consumers_pause(struct broker_queue *bq, bool paused);
/* Frees bq's consumers at once: runs are abandoned, no callback. */
void consumers_free(struct broker_queue *bq);
/* An attempt failed with error code code: counted by reason (metrics). */
void broker_count_failure(struct broker_queue *bq, const char *code);
/* Cancels the running job j's attempt (a user's cancel): it ends soon,
 * maybe inside this call (a leased job's at once). */
void consumer_cancel_job(struct aq_job *j);
/* An attempt of j starts: running, timed, told to the store, busy. */
void attempt_begin(struct broker_queue *bq, struct aq_job *j);
/* j's attempt ended with out (taken) after why interrupted it: the job is
 * done, retried, failed or cancelled, or pending again after a stop cut
 * the attempt (not counted). Returns the state it went to; j may be gone
 * (an evicted record) once this returns. */
enum aq_job_state attempt_finish(struct aq_job *j, struct aq_outcome *out,
                                 enum interrupt why);

/* ---- lease.c ---- */

/* Cancels the leased job j: cancelled now, its holder told. */
void lease_cancel_job(struct aq_job *j);
/* Waiting gets stop taking from bq (paused), or take again. */
void leases_pause(struct broker_queue *bq, bool paused);
/* A stop's grace begins: waiting gets are answered [] and new ones at
 * once; returns a task that ends once no lease is held (NULL when none
 * is), whose cancel (the grace is over) sends them back to pending. */
struct aq_task *leases_stop(struct aq_broker *b);
/* The broker goes: leases and waiting gets are dropped silently. */
void leases_free(struct aq_broker *b);
/* A leased job's worker and lease_deadline, added to its record. */
void lease_record(const struct aq_job *j, json_t *rec);

/* ---- throttle.c: a queue's rate limit (bq->rate) ---- */

/* Makes bq->rate follow bq->cfg.rate: new, changed, or freed (null).
 * Takers must be dropped first (consumers_pause) when it changes. */
void throttle_configure(struct broker_queue *bq);
/* Whether qc's rate differs from the one bq applies. */
bool throttle_changes(const struct broker_queue *bq,
                      const struct aq_queue_config *qc);
void throttle_free(struct broker_queue *bq); /* takers forgotten */
/* k holds a token (true: it may ask the queue for a job), or waits for
 * one (false: its go callback runs, from the loop, once it holds one).
 * Only with bq->rate set. */
bool throttle_hold(struct broker_queue *bq, struct taker *k);
/* k's held token is spent: a job starts. */
void throttle_spend(struct broker_queue *bq, struct taker *k);
/* k stops: its token goes back, or it stops waiting. Any state. */
void throttle_drop(struct broker_queue *bq, struct taker *k);
/* Up to n tokens now (0 while takers wait for one: they come first), and
 * the ones not spent after all, back. Only with bq->rate set. */
unsigned throttle_take(struct broker_queue *bq, unsigned n);
void throttle_give(struct broker_queue *bq, unsigned n);
/* Throttled time since start, in seconds (stats "throttled"). */
double throttle_seconds(const struct broker_queue *bq);

/* ---- records.c ---- */

void records_init(struct aq_broker *b, const struct aq_config *cfg);
void records_configure(struct aq_broker *b, const struct aq_config *cfg);
void records_free(struct aq_broker *b); /* after the jobs */
/* j reached its final state st: its queue, waiters and store are told,
 * and it becomes a record. */
void job_finish(struct aq_broker *b, struct aq_job *j, enum aq_job_state st);
/* j (finished) becomes the newest record; old ones may be evicted. */
void record_append(struct aq_broker *b, struct aq_job *j);
/* The record j leaves the records: it runs again (a retry). Returns j,
 * moved back into the heap and filed again (aq_job_unpack). */
struct aq_job *record_take(struct aq_broker *b, struct aq_job *j);
/* The record j is deleted by hand: gone now, and for good (the store
 * records it). */
void record_delete(struct aq_broker *b, struct aq_job *j);
/* j's idempotency key, if it still names j, names no job any more (j
 * leaves the broker). */
void job_key_forget(struct aq_broker *b, const struct aq_job *j);

/* ---- deps.c ---- */

/* j (with ext->deps, its id set) is put: each of its after ids that is
 * unfinished learns j waits on it, finished ones are noted (a failed one
 * for policy done). Returns how many it waits on (deps->nwait). */
size_t deps_attach(struct aq_broker *b, struct aq_job *j);
/* The waiting j's dependencies all finished: released (pending, or
 * delayed until ext->due_us) and told to the store, or cancelled with
 * dependency_failed. */
void deps_resolve(struct aq_broker *b, struct aq_job *j);
/* j (ext set) finished: its dependents are handed to the work list (then
 * deps_run visits them). */
void deps_finished(struct aq_broker *b, struct aq_job *j);
/* Visits the work list until it is empty (unless running already, or held
 * by restore): one loop, whatever the cascade. */
void deps_run(struct aq_broker *b);
void deps_free(struct aq_broker *b);
/* ---- schedule.c ---- */

/* The schedules of cfg (none fires before sched_start). */
struct sched_table *sched_new(struct aq_broker *b, const struct aq_config *cfg);
void sched_free(struct sched_table *t); /* NULL is fine */
/* After restore: next fire times (missed ones per catch_up), the timer
 * armed. */
void sched_start(struct sched_table *t);
/* The broker stops: nothing fires from now on. */
void sched_stop(struct sched_table *t);
/* SIGHUP: removed schedules stop, changed ones recompute their next
 * time, unchanged ones keep it; last fire times are kept. */
void sched_reconfigure(struct sched_table *t, const struct aq_config *cfg);
/* Several nodes (lib/pgcluster.c): from the first call, schedules fire
 * only while may_fire (this node leads); opening plans every schedule
 * again from its last fire (catch_up, as at a start). */
void aq_broker_schedules_gate(struct aq_broker *b, bool may_fire);
/* The database says schedule name last fired at fire_us making job (taken
 * when later than what this node knows), which is_busy: unfinished (an
 * overlap "skip" waits for it when this node does not hold it). */
void aq_broker_schedule_seen(struct aq_broker *b, const char *name,
                             size_t name_len, int64_t fire_us, uint64_t job,
                             bool is_busy);
bool aq_broker_has_schedules(const struct aq_broker *b);
/* The last jobs (*jobs: a new array, n of them) that overlap "skip"
 * schedules wait for and this node does not hold: the database says when
 * they finish. */
size_t aq_broker_schedules_waiting(struct aq_broker *b, uint64_t **jobs);
/* Those of jobs (n, sorted here) that finished or are gone: their
 * schedules fire again. */
void aq_broker_schedules_finished(struct aq_broker *b, uint64_t *jobs,
                                  size_t n);

/* ---- store.c ---- */

/* Queues what restore rebuilt: jobs that were running at a crash count
 * the attempt and run again (or fail, out of attempts). */
void broker_restore_place(struct aq_broker *b, uint64_t last_id);

#endif
