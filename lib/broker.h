/* SPDX-License-Identifier: MIT */
/*
 * lib/broker.h: the queues, their jobs and their consumers: asyncqd's methods
 * (spec section 2) in C, with no protocol in sight. Each queue is an
 * aq_queue of jobs served by N consumer tasks that run jobs through their
 * kind's handler with a timeout, retries and backoff. Finished records are
 * kept per the results.* limits, and may be retried or deleted by hand. Every
 * job event goes to the broker's store (lib/store.h; memory until
 * aq_broker_restore gives it another), and a put is acknowledged once its job
 * is durable there. Replies that wait (a put to a full queue or to a store that
 * syncs, wait, join, cancel of a running job) come through callbacks from the
 * loop.
 */
#ifndef AQ_BROKER_H
#define AQ_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/queue.h>

#include <jansson.h>

#include "barrier.h"
#include "queue.h"

struct event_base;
struct aq_config;
struct aq_error;
struct aq_procs;
struct aq_task;
struct aq_broker;

/* Builds the queues of cfg, without consumers yet (replay comes first).
 * cfg is copied; base and procs are borrowed and must outlive the broker. */
struct aq_broker *aq_broker_new(struct event_base *base, struct aq_procs *procs,
                                const struct aq_config *cfg);
/* Starts every queue's consumers (they take jobs from the loop on). */
void aq_broker_start(struct aq_broker *b);
/* Frees everything at once, running jobs included (their processes are
 * killed). A graceful stop is aq_broker_stop first. NULL is fine. */
void aq_broker_free(struct aq_broker *b);

/* SIGHUP: applies consumer counts, maxsize, timeouts, retries, backoff,
 * exec/http settings and results limits live, adds new queues. A queue
 * missing from cfg is kept (logged: needs a restart). */
void aq_broker_reconfigure(struct aq_broker *b, const struct aq_config *cfg);

/* ---- put ---- */

struct aq_put {
    const char *queue;    /* NULL = "default" */
    const char *kind;     /* NULL = the queue's */
    const json_t *args;   /* an object; NULL: args_raw, or {} */
    const char *args_raw; /* or an object's JSON text (valid: lib/jscan) */
    size_t args_len;
    int32_t priority;
    double delay;          /* s, 0 to 1e9 (AQ_DURATION_MAX_S) */
    bool has_at;           /* instead of delay: ready at wall clock at */
    double at;             /* epoch s, >= 0; in the past: at once (the methods
                              say: not with delay, at most 1e9 s ahead) */
    const uint64_t *after; /* ids it waits on (waiting until they all
                              finished); NULL = none */
    size_t nafter;         /* 0 to AQ_AFTER_MAX */
    int after_policy;      /* enum aq_after_policy of lib/job.h */
    double timeout;        /* s, 0 to 1e9 (0 = none); < 0 = the queue's */
    int retries;           /* >= 0; < 0 = the queue's */
    const char *key;       /* NULL = none */
    const char *name;      /* NULL = none; at most AQ_NAME_MAX bytes */
    const char *batch;     /* NULL = none; 1 to AQ_BATCH_NAME_MAX bytes */
    bool nowait;
    bool ack_queued; /* acknowledge once queued, before it is durable: for
                        a put that answers with the job's end instead */
};

#define AQ_NAME_MAX 200       /* bytes of a put's name */
#define AQ_BATCH_NAME_MAX 200 /* bytes of a put's batch */

struct aq_put_result {
    uint64_t job;
    const char *state; /* "pending", "delayed", "waiting", "cancelled" (a
                          dependency failed already), or the state of a
                          duplicate; static storage */
    bool duplicate;
};

/* How a put that did not end at once ended: st 0 with res (acknowledged:
 * queued, and durable), or -1 with err. */
typedef void aq_put_cb(void *arg, int st, const struct aq_put_result *res,
                       const struct aq_error *err);

/* A put in flight: the caller's memory (a call's scratch space, so the hot
 * path allocates nothing), valid until its callback runs or the put is
 * withdrawn. Fields are the broker's. */
struct aq_put_wait {
    aq_put_cb *cb;
    void *arg;
    bool ack_queued; /* the put's ack_queued */
    bool is_syncing; /* queued: waits for the store, no longer for room */
    union {
        struct {
            struct aq_queue_waiter w;
            struct aq_job *job; /* owned until queued */
            TAILQ_ENTRY(aq_put_wait) link;
        } room;
        struct {
            struct aq_barrier barrier;
            struct aq_put_result res;
            struct aq_broker *b; /* set while filed by its job (keyed) */
            uint64_t job;        /* the job it queued */
        } sync;
    } u;
};

enum aq_put_status {
    AQ_PUT_FAILED = -1, /* err says why; nothing was queued */
    AQ_PUT_DONE = 0,    /* acknowledged now: *res is filled */
    AQ_PUT_PENDING,     /* queued, waiting for the store: cb later */
    AQ_PUT_FULL,        /* waiting for room, then for the store: cb later;
                           read no more requests meanwhile (back-pressure) */
};

/* Puts a job, acknowledged once its queue has room AND the store has made
 * it durable (lib/store.h; at once without a store; with p->ack_queued,
 * once queued). A duplicate key is acknowledged with the job it names, as
 * durable as what was put before it. Returns AQ_PUT_DONE with *res;
 * AQ_PUT_PENDING or AQ_PUT_FULL with cb(arg, ...) to come from the loop,
 * never inside this call: -32010 when the broker stops while the put waits
 * for room, -32603 when the store fails first (the job is queued all the
 * same: the message names it, as it may still run). Withdraw with
 * aq_broker_put_cancel. AQ_PUT_FAILED with err: -32602, -32004 (an id of
 * after the broker does not know: res->job names it), -32002, -32005 (a
 * kind the queue does not run, or args its settings refuse), -32000 with
 * nowait, -32010 while stopping, -32603 while the store cannot record
 * jobs. cb is never called for DONE and FAILED. */
enum aq_put_status aq_broker_put(struct aq_broker *b, const struct aq_put *p,
                                 struct aq_put_wait *w, aq_put_cb *cb,
                                 void *arg, struct aq_put_result *res,
                                 struct aq_error *err);
void aq_broker_put_cancel(struct aq_broker *b, struct aq_put_wait *w);

/* ---- jobs ---- */

/* The job record (a new object), or NULL with err -32004. */
json_t *aq_broker_status(struct aq_broker *b, uint64_t id,
                         struct aq_error *err);

/* A future settled with the job's final record (the task's result, a
 * json_t * it owns) when the job finishes; already settled if it has. A new
 * reference, the caller's; NULL with err -32004 for an unknown job. */
struct aq_task *aq_broker_job_future(struct aq_broker *b, uint64_t id,
                                     struct aq_error *err);

/* Returns 0 with *state set (static storage) when the job ended now: a
 * delayed or pending job is removed, a sleep stops at once; 1 when a
 * running job was interrupted: it ends soon (its future tells how, usually
 * "cancelled"; a run that completes first ends "done"); -1 with err: -32004
 * unknown, -32009 already finished. */
int aq_broker_cancel(struct aq_broker *b, uint64_t id, const char **state,
                     struct aq_error *err);

/* Cancels every delayed and pending job of queue (they end cancelled
 * now), and with running, interrupts its running ones as aq_broker_cancel
 * does (they end soon). 0 with *n (jobs cancelled or interrupted), or -1
 * with err -32002. O(jobs of the queue). */
int aq_broker_cancel_queue(struct aq_broker *b, const char *queue, bool running,
                           size_t *n, struct aq_error *err);

/* ---- finished records (spec section 9) ---- */

/* Queues the finished job id again, by hand: same id, args, priority,
 * own timeout and retries, and key (unless another job holds it now);
 * attempts from 0, retried + 1, result, error and times cleared; ready
 * after delay_s (0: now). It is checked as a put is (kind, args), but
 * never waits for room: it may take its queue past maxsize. The job's
 * future is new: a later wait waits for its next end. Returns 0 with
 * *state ("pending" or "delayed", static storage), or -1 with err:
 * -32004 unknown, -32012 not finished, -32005 not allowed now (or its
 * args were not kept: a record of an older journal), -32010 stopping. */
int aq_broker_retry(struct aq_broker *b, uint64_t id, double delay_s,
                    const char **state, struct aq_error *err);
/* The same for every record of queue in state ("failed" or
 * "cancelled"), in id order; records that cannot run now (-32005 above)
 * are left as they are. 0 with *n retried, or -1 with err: -32002,
 * -32602 for another state, -32010. */
int aq_broker_retry_queue(struct aq_broker *b, const char *queue,
                          const char *state, double delay_s, size_t *n,
                          struct aq_error *err);

/* Deletes the finished record id: 0, or -1 with err -32004 unknown,
 * -32012 not finished (cancel it first). */
int aq_broker_delete(struct aq_broker *b, uint64_t id, struct aq_error *err);
/* Deletes every record of queue in state ("done", "failed" or
 * "cancelled"): 0 with *n, or -1 with err -32002, -32602 for another
 * state. */
int aq_broker_delete_queue(struct aq_broker *b, const char *queue,
                           const char *state, size_t *n, struct aq_error *err);
/* ---- list (spec section 9) ---- */

#define AQ_LIST_MAX 1000 /* jobs in one page */

/* The states list knows, in the order of spec section 9 (NULL-ended):
 * bit i of aq_list.states is aq_list_state_names[i]. */
extern const char *const aq_list_state_names[];

struct aq_list {
    const char *queue;        /* NULL = every queue */
    unsigned states;          /* bits, see aq_list_state_names; 0 = none */
    const char *name, *batch; /* NULL = any */
    uint64_t after, before;   /* ids strictly between; 0 = no bound */
    size_t limit;             /* 1 to AQ_LIST_MAX */
    bool is_desc;             /* highest id first */
};

/* A page of job records: a new {"jobs":[...],"next":ID or null}, where
 * next is the after (ascending) or before (descending) of the following
 * page, null when no job is left. A page costs O(limit) set steps per
 * queue and state walked, never a scan of a state's jobs; name and batch
 * test each job of the states walked, at most AQ_LIST_SCAN of them per
 * call (a shorter page then, with next where it stopped). NULL with err
 * -32002 for an unknown queue. */
#define AQ_LIST_SCAN 100000
json_t *aq_broker_list(struct aq_broker *b, const struct aq_list *l,
                       struct aq_error *err);

/* ---- queues ---- */

typedef void aq_join_cb(void *arg, int st, const struct aq_error *err);
struct aq_join;
/* Waits until the queue (NULL: every queue) has no unfinished job. Returns
 * 0 if that is already so, 1 with *join set (cb fires later: st 0, or -1
 * with -32010 if the broker stops first; withdraw with aq_broker_join_cancel)
 * or -1 with err -32002. */
int aq_broker_join(struct aq_broker *b, const char *queue, aq_join_cb *cb,
                   void *arg, struct aq_join **join, struct aq_error *err);
void aq_broker_join_cancel(struct aq_join *j); /* no callback after */
/* The same for batch (spec section 11): until no job of it is
 * unfinished. 0 at once for a batch no job carries; never -1. */
int aq_broker_join_batch(struct aq_broker *b, const char *batch, aq_join_cb *cb,
                         void *arg, struct aq_join **join);

struct aq_batch_counts;
/* The counts of batch's jobs by state (lib/batch.h), O(1): the jobs the
 * broker knows (unfinished, and records not yet evicted or deleted). */
void aq_broker_batch_counts(const struct aq_broker *b, const char *batch,
                            struct aq_batch_counts *out);

struct aq_hist;

/* One queue's numbers, borrowed for the callback's duration. */
struct aq_queue_stats {
    const char *name;
    const char *kind;
    size_t size, delayed, unfinished, maxsize; /* size: ready jobs */
    size_t waiting;         /* for their dependencies (put's after) */
    int running, consumers; /* consumers: asked for */
    int workers; /* remote: workers with a get waiting or a lease held */
    int leases;  /* remote: jobs leased (they are its running ones) */
    bool paused;
    uint64_t put, done, failed, cancelled, retried; /* since start */
    const struct aq_hist *wait, *run; /* put -> first start; start -> end */
    double oldest_ready_s;    /* how long the oldest ready job has been ready */
    size_t putters;           /* puts waiting for room: producers held back */
    const uint64_t *failures; /* failed attempts since start, by reason:
                                 AQ_FAIL_REASONS, aq_fail_reasons' order */
    double throttled_s;       /* a ready job waited only for a rate token */
    double rate_per_second;   /* the rate limit; 0 = none */
    int rate_burst;
};

/* The reasons failed attempts are counted by: the error codes of the job
 * record (docs/protocol.md), the last "other" for any code not listed;
 * then NULL. */
#define AQ_FAIL_REASONS 21
extern const char *const aq_fail_reasons[AQ_FAIL_REASONS + 1];

/* Calls fn for each queue (one, when queue is not NULL): 0, or -1 with
 * err -32002. */
int aq_broker_each_queue(struct aq_broker *b, const char *queue,
                         void (*fn)(const struct aq_queue_stats *s, void *arg),
                         void *arg, struct aq_error *err);

int aq_broker_scale(struct aq_broker *b, const char *queue, int consumers,
                    struct aq_error *err);
int aq_broker_pause(struct aq_broker *b, const char *queue, bool paused,
                    struct aq_error *err);

/* ---- schedules (spec section 11) ---- */

/* The schedules in name order, or only the one named (name not NULL), as
 * {"schedules":[{"name","cron","timezone","queue","kind","overlap",
 * "catch_up","next","last","last_job","fired","skipped"}]} (a new
 * object; times are epoch seconds or null), or NULL for an unknown name. */
json_t *aq_broker_schedules(struct aq_broker *b, const char *name);

struct aq_schedule_stats {
    const char *name;
    uint64_t fired, skipped; /* since start */
};
/* Calls fn for each schedule, in name order (metrics). */
void aq_broker_each_schedule(struct aq_broker *b,
                             void (*fn)(const struct aq_schedule_stats *s,
                                        void *arg),
                             void *arg);

/* ---- remote workers (spec section 10) ---- */

/* A worker is a connection that takes jobs. The methods make one per
 * connection on its first worker call, and free it when the connection
 * closes: each job it still holds then fails its attempt with
 * worker_lost. cancel_cb(arg, job) tells it that a job it holds was
 * cancelled (job.cancel); the job is no longer its. */
struct aq_worker;
typedef void aq_worker_cancel_cb(void *arg, uint64_t job);
struct aq_worker *aq_broker_worker_new(struct aq_broker *b, const char *peer,
                                       aq_worker_cancel_cb *cb, void *arg);
void aq_broker_worker_free(struct aq_worker *w); /* NULL is fine */
/* The worker's client closed its sending side: its waiting gets are
 * answered [] and its later gets take nothing; its leases stay until it
 * ends them or its connection closes. */
void aq_broker_worker_eof(struct aq_worker *w);

#define AQ_GET_MAX 1000  /* jobs in one get */
#define AQ_GET_QUEUES 64 /* queues one get names */

struct aq_get {
    const char *const *queues; /* in order of preference */
    size_t nqueues;            /* 1 to AQ_GET_QUEUES */
    size_t max;                /* 1 to AQ_GET_MAX */
    double wait_s;             /* 0 = answer at once */
    double lease_s;            /* > 0; < 0 = each job's timeout */
};

/* A job a get leased, borrowed for the callback's duration. */
struct aq_leased {
    uint64_t job;
    const char *queue;
    const char *name; /* NULL = none */
    const char *args; /* compact JSON text, args_len bytes */
    size_t args_len;
    unsigned attempts;         /* attempts that ended before this one */
    int64_t lease_deadline_us; /* wall clock; 0 = no deadline */
};

typedef void aq_get_cb(void *arg, const struct aq_leased *jobs, size_t n);
struct aq_get_wait;

/* Leases up to g->max ready jobs of g's queues (each a remote queue) to
 * w. Returns 0 once cb(arg, jobs, n) was called (inside this call): n
 * may be 0 when wait_s is 0, the queues are paused, or the broker stops;
 * 1 when it waits (*wait set; withdraw with aq_broker_get_cancel): cb
 * comes from the loop once jobs are ready (1 to max of them, what is
 * ready then), with 0 when the wait runs out or the broker stops; -1 with
 * err: -32002 unknown queue, -32005 a queue not remote. Waiting gets are
 * served in arrival order. */
int aq_broker_get(struct aq_broker *b, struct aq_worker *w,
                  const struct aq_get *g, aq_get_cb *cb, void *arg,
                  struct aq_get_wait **wait, struct aq_error *err);
void aq_broker_get_cancel(struct aq_get_wait *g); /* no callback after */

struct aq_task_done {
    uint64_t job;
    const char *result; /* compact JSON text (NUL-ended); NULL: null */
    bool is_error;      /* the attempt failed: */
    const char *err_code, *err_message, *traceback; /* traceback NULL */
    bool retry; /* false: no further attempt */
};

/* The errors of task_done, touch and release for a job w does not hold:
 * -32004 unknown, -32009 cancelled while w held it, -32014 anything else
 * (never w's, another's, expired, ended already). w may be NULL. */

/* Ends w's attempt of d->job: 0 with *state (static storage: done,
 * pending, delayed, failed), or -1 with err. */
int aq_broker_task_done(struct aq_broker *b, struct aq_worker *w,
                        const struct aq_task_done *d, const char **state,
                        struct aq_error *err);
/* Renews w's lease of job from now, for lease_s (< 0: as long as it was
 * granted): 0 with *deadline_us (wall; 0 = none), or -1 with err. */
int aq_broker_touch(struct aq_broker *b, struct aq_worker *w, uint64_t job,
                    double lease_s, int64_t *deadline_us, struct aq_error *err);
/* Gives w's job back, the attempt not counted, ready after delay_s: 0
 * with *state ("pending" or "delayed"), or -1 with err. */
int aq_broker_release(struct aq_broker *b, struct aq_worker *w, uint64_t job,
                      double delay_s, const char **state, struct aq_error *err);

/* ---- lifecycle ---- */

/* Graceful stop (spec section 6): puts fail with -32010 from now on and
 * waiting ones get it; with drain, waits for every queue to empty; then
 * lets running jobs finish for up to grace_s, then cancels the consumers
 * still busy: their jobs go back to pending, the attempt not counted.
 * done(arg) fires from the loop once every consumer has ended. */
void aq_broker_stop(struct aq_broker *b, bool drain, double grace_s,
                    void (*done)(void *arg), void *arg);
/* A second signal: skip what is left of drain and grace. */
void aq_broker_stop_now(struct aq_broker *b);

/* ---- durability (lib/store.h) ---- */

struct aq_store;
/* Takes s (on failure too) as the store of every job event, and rebuilds
 * the jobs it holds: unfinished ones queued again (those that were running
 * at a crash count the attempt and run again, see docs/durability.md),
 * finished ones kept as records. Before aq_broker_start; without it, jobs
 * live in memory only. Returns 0, or -1 with err (*is_damaged when what
 * the store holds is damaged rather than unreadable). */
int aq_broker_restore(struct aq_broker *b, struct aq_store *s, bool *is_damaged,
                      struct aq_error *err);

/* Counts for logs and STATUS=: jobs unfinished, running. */
void aq_broker_counts(const struct aq_broker *b, size_t *unfinished,
                      size_t *running);

/* ---- the daemon's addresses ---- */

struct sockaddr_storage;
/* The addresses asyncqd listens on (copied): http jobs may never connect
 * to them (lib/netmatch.h). Set before the loop runs jobs. */
void aq_broker_set_own_addresses(struct aq_broker *b,
                                 const struct sockaddr_storage *addrs,
                                 size_t n);

#endif
