/* SPDX-License-Identifier: MIT */
/*
 * lib/broker.h: the queues, their jobs and their consumers: asyncqd's methods
 * (spec section 2) in C, with no protocol in sight. Each queue is an
 * aq_queue of jobs served by N consumer tasks that run jobs through their
 * kind's handler with a timeout, retries and backoff. Finished records are
 * kept per results.ttl / results.max. Replies that wait (a put to a full
 * queue, wait, join, cancel of a running job) come through callbacks from
 * the loop.
 */
#ifndef AQ_BROKER_H
#define AQ_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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
    double delay;    /* s, 0 to 1e9 (AQ_DURATION_MAX_S) */
    double timeout;  /* s, 0 to 1e9 (0 = none); < 0 = the queue's */
    int retries;     /* >= 0; < 0 = the queue's */
    const char *key; /* NULL = none */
    bool nowait;
};

struct aq_put_result {
    uint64_t job;
    const char *state; /* "pending", "delayed" (or the state of a
                          duplicate); static storage */
    bool duplicate;
};

/* A put that had to wait for room ended: st 0 with res, or -1 with err
 * (-32010 when the broker stopped first). */
typedef void aq_put_cb(void *arg, int st, const struct aq_put_result *res,
                       const struct aq_error *err);
struct aq_put_waiter;

/* Returns 0 with *res filled (queued now, or a duplicate key); 1 when the
 * queue is full: *waiter is set, and its callback (set with
 * aq_broker_put_on_room before the loop runs) fires once there is room;
 * withdraw with aq_broker_put_cancel; -1 with err (-32602, -32002, -32005:
 * a kind the queue does not run (its kind and "kinds") or args its settings
 * refuse, -32000 with nowait, -32010 while stopping, -32603 while the
 * journal cannot record it). */
int aq_broker_put(struct aq_broker *b, const struct aq_put *p,
                  struct aq_put_result *res, struct aq_put_waiter **waiter,
                  struct aq_error *err);
void aq_broker_put_on_room(struct aq_put_waiter *w, aq_put_cb *cb, void *arg);
void aq_broker_put_cancel(struct aq_put_waiter *w); /* no callback after */

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

struct aq_hist;

/* One queue's numbers, borrowed for the callback's duration. */
struct aq_queue_stats {
    const char *name;
    const char *kind;
    size_t size, delayed, unfinished, maxsize; /* size: ready jobs */
    int running, consumers;                    /* consumers: asked for */
    bool paused;
    uint64_t put, done, failed, cancelled, retried; /* since start */
    const struct aq_hist *wait, *run; /* put -> first start; start -> end */
};

/* Calls fn for each queue (one, when queue is not NULL): 0, or -1 with
 * err -32002. */
int aq_broker_each_queue(struct aq_broker *b, const char *queue,
                         void (*fn)(const struct aq_queue_stats *s, void *arg),
                         void *arg, struct aq_error *err);

/* The "queues" part of stats (spec section 5), for one queue or all. */
json_t *aq_broker_stats(struct aq_broker *b, const char *queue,
                        struct aq_error *err);
int aq_broker_scale(struct aq_broker *b, const char *queue, int consumers,
                    struct aq_error *err);
int aq_broker_pause(struct aq_broker *b, const char *queue, bool paused,
                    struct aq_error *err);

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
bool aq_broker_is_stopping(const struct aq_broker *b);

/* ---- durability (lib/journal.h) ---- */

struct aq_journal;
struct aq_barrier;
struct aq_jrec;

/* The journal the broker records every job event in (borrowed; set it
 * before replay). Without one, jobs live in memory only. */
void aq_broker_set_journal(struct aq_broker *b, struct aq_journal *j);
bool aq_broker_has_journal(const struct aq_broker *b);
/* Replay: an aq_journal_replay_cb rebuilding jobs and records (arg: b). */
int aq_broker_replay_cb(const struct aq_jrec *r, uint32_t seg, void *arg,
                        struct aq_error *err);
/* After aq_journal_start: queues what replay rebuilt. Jobs that were
 * running at a crash count the attempt and run again (see docs). */
void aq_broker_restore_done(struct aq_broker *b, uint64_t last_id);
/* An aq_journal_rehome_cb (arg: b): re-appends the jobs homed in the
 * segments the journal is evacuating. */
void aq_broker_rehome(struct aq_journal *j, void *arg);
/* cb(arg, NULL) from the loop once all recorded so far is durable, or
 * cb(arg, err) (-32603) if the journal fails first; waiting on node (the
 * caller's, valid until cb or aq_broker_durable_cancel). Returns 1 (cb
 * later), 0 when it already is durable (or there is no journal), -1 with
 * err when the journal is failing; cb is never called for 0 and -1. */
int aq_broker_durable(struct aq_broker *b, struct aq_barrier *node,
                      void (*cb)(void *arg, const struct aq_error *err),
                      void *arg, struct aq_error *err);
void aq_broker_durable_cancel(struct aq_broker *b,
                              struct aq_barrier *h);

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
