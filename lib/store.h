/* SPDX-License-Identifier: MIT */
/*
 * lib/store.h: the seam between the broker and durability. The broker
 * tells its store what happens to each job (put, started, requeued,
 * finished, forgotten; retried or deleted by hand), asks it to acknowledge puts
 * once that is durable, and at start asks it to restore every job it holds. The
 * calls are coarse, one per job event, so that a store may keep a log (the
 * local journal, lib/store_journal.c over lib/journal.h) or rows in a database
 * shared by several daemons; it may acknowledge late (from the loop) and
 * fail (the barriers say why, and the broker refuses puts while error()
 * is set). Without a store the broker uses the memory store: nothing is
 * kept, everything is durable at once.
 */
#ifndef AQ_STORE_H
#define AQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "barrier.h"
#include "config.h"
#include "job.h"

struct event_base;
struct aq_broker;
struct broker_queue;
struct aq_error;
struct aq_journal;
struct aq_store;

/* A store's figures (asyncq_store_* metrics). */
struct aq_store_counters {
    bool connected;      /* to its database, and usable */
    uint64_t commits;    /* transactions committed */
    uint64_t reconnects; /* connections made again after the first */
    uint64_t backlog;    /* row writes waiting for their commit */
    uint64_t claims;     /* jobs claimed from the pool of shared jobs */
    uint64_t released;   /* jobs given back to the pool (stop, dead nodes) */
};

/* The store's side. Job events come in the order they happen, from the
 * loop; j is the broker's, read during the call only, except for j->jseg
 * which is the store's own mark (the journal's home segment). queue is
 * the name of j's queue. A cancel is a finish in state cancelled. */
struct aq_store_ops {
    const char *name; /* for messages: "journal" */
    /* At start, the loop not running yet: rebuilds every job the store
     * holds into b (aq_broker_restore_add and the job's fields), and sets
     * *last_id to the highest id it ever recorded. b stays the store's
     * broker from then on (the journal asks it for live jobs to rewrite).
     * 0, or -1 with err; *is_damaged when what it holds is damaged. */
    int (*restore)(struct aq_store *s, struct aq_broker *b, uint64_t *last_id,
                   bool *is_damaged, struct aq_error *err);
    void (*put)(struct aq_store *s, struct aq_job *j, const char *queue);
    void (*start)(struct aq_store *s, struct aq_job *j);
    /* Back to waiting (a retry, or a stop or crash cut its attempt). */
    void (*requeue)(struct aq_store *s, struct aq_job *j);
    /* A final state: done, failed or cancelled; j is a record from now. */
    void (*finish)(struct aq_store *s, struct aq_job *j, const char *queue);
    /* A finished record evicted (results.ttl, results.max, ...): a store
     * may still restore it, and the broker evicts it again. */
    void (*forget)(struct aq_store *s, struct aq_job *j);
    /* A finished job queued again by hand (the retry method): j whole, as
     * at put, with its id, retried count and the state it is queued in. */
    void (*retry)(struct aq_store *s, struct aq_job *j, const char *queue);
    /* A finished record deleted by hand: it must never be restored. */
    void (*remove)(struct aq_store *s, struct aq_job *j);
    /* Schedule name fired at fire_us (wall clock) and made job: kept
     * until the next one (or forgotten: fire_us 0). Restore gives the
     * last one back (aq_broker_restore_schedule). NULL = not kept. */
    void (*schedule)(struct aq_store *s, const char *name, int64_t fire_us,
                     uint64_t job);
    /* A wait until every event told so far is durable, on the caller's
     * node b (valid until cb or sync_cancel): 1 when cb runs later from
     * the loop (err NULL, or why it cannot become durable: -32603), 0
     * when it already is, -1 with err when the store is failing; cb is
     * never called for 0 and -1. */
    int (*sync)(struct aq_store *s, struct aq_barrier *b, aq_barrier_cb *cb,
                void *arg, struct aq_error *err);
    void (*sync_cancel)(struct aq_store *s, struct aq_barrier *b);
    /* NULL while new jobs can become durable; else why not (-32603). */
    const struct aq_error *(*error)(const struct aq_store *s);
    /* NULL while puts are acknowledged without waiting for the store to
     * come back; else why they would wait (a database connection lost:
     * "store unavailable: why", -32603), which a put with nowait answers
     * at once. NULL = never unavailable. */
    const struct aq_error *(*unavailable)(const struct aq_store *s);
    /* ---- sharing jobs with other nodes (the postgres store) ---- */
    /* Instead of put: j (pending, no dependency; or waiting on jobs of
     * other nodes) is given to the other
     * nodes rather than kept; the broker keeps it out of its queue's
     * items until aq_broker_given. The store marks it given (j->jseg not
     * 0) until then. Returns false when the store keeps it after all (put
     * was not called: the caller calls it). NULL = never. */
    bool (*give)(struct aq_store *s, struct aq_job *j, const char *queue);
    /* Whether other nodes run now (a put may then wait on jobs this node
     * does not hold: give in state waiting). NULL = never. */
    bool (*shares)(const struct aq_store *s);
    /* A taker of bq waits and bq has no ready job: the store may claim
     * jobs for it (aq_broker_claimed). NULL = never. */
    void (*hungry)(struct aq_store *s, struct broker_queue *bq);
    /* Its figures for lib/metrics.c; NULL = none. */
    void (*counters)(const struct aq_store *s, struct aq_store_counters *out);
    /* Makes what was told durable (as far as it can), and frees s. */
    void (*close)(struct aq_store *s);
};

/* Embedded first in each implementation's own struct. */
struct aq_store {
    const struct aq_store_ops *ops;
};

/* Nothing is kept; syncs complete at once. Free with aq_store_close. */
struct aq_store *aq_store_memory_new(void);
void aq_store_close(struct aq_store *s); /* NULL is fine */

/* ---- the local journal (lib/store_journal.c) ---- */

/* Opens (creating) and locks the journal directory path (one process per
 * journal). Returns the store, or NULL with err. */
struct aq_store *aq_store_journal_open(struct event_base *base,
                                       const char *path, enum aq_fsync fsync,
                                       size_t segment_bytes,
                                       struct aq_error *err);
/* The journal of a journal store (its figures: lib/metrics.c); NULL for
 * any other store. Borrowed. */
struct aq_journal *aq_store_journal(struct aq_store *s);
/* --repair: cuts the journal at path at its first damaged record, keeping
 * what precedes it. 0 with *records kept and *last_id, or -1 with err. */
int aq_store_journal_repair(struct event_base *base, const char *path,
                            size_t *records, uint64_t *last_id,
                            struct aq_error *err);

/* ---- PostgreSQL (lib/store_pg.c) ---- */

/* The store in schema (created and migrated at restore) of the database
 * at conninfo, as node (NULL: the host name). Connects from the loop;
 * restore runs the loop until connected, migrated, the schema's node
 * lock held and every row read (retrying connects forever, logged), and
 * fails when the schema is newer than this binary or held by another
 * node. Returns the store, or NULL with err (conninfo unparsable). */
struct aq_store *aq_store_pg_open(struct event_base *base, const char *conninfo,
                                  const char *schema, const char *node,
                                  struct aq_error *err);

/* ---- what a store calls on the broker while it restores ---- */

/* The job id, if b knows it (unfinished or a record), else NULL. */
struct aq_job *aq_broker_restore_find(struct aq_broker *b, uint64_t id);
/* A new job of id in the queue named (queue_len bytes; a queue the config
 * lacks is made, with no consumer): b files it under its id, and places
 * it once restore returns, by its state and fields, which the store sets
 * meanwhile (ext->due_us for a delayed one). */
struct aq_job *aq_broker_restore_add(struct aq_broker *b, uint64_t id,
                                     enum aq_kind kind, const char *queue,
                                     size_t queue_len, const char *args,
                                     size_t args_len);
/* j's idempotency key (j->ext->key) names j from now on. */
void aq_broker_restore_key(struct aq_broker *b, struct aq_job *j);
/* j was deleted by hand after what restored it: b forgets it and frees it
 * (the store has released its own marks on it first). */
void aq_broker_restore_drop(struct aq_broker *b, struct aq_job *j);

/* Schedule name (name_len bytes) last fired at fire_us and made job. */
void aq_broker_restore_schedule(struct aq_broker *b, const char *name,
                                size_t name_len, int64_t fire_us, uint64_t job);

/* ---- what a store sharing jobs with other nodes calls, from the loop ---- */

/* The put of the given job id (store ops give) is durable (ok): b forgets
 * it, another node runs it; or it could not be written (!ok): b queues
 * it as a job of its own. Nothing when id is no longer given. */
void aq_broker_given(struct aq_broker *b, uint64_t id, bool ok);
/* j, made with aq_broker_restore_add and filled (pending), was claimed
 * by this node: b queues it (its takers wake). */
void aq_broker_claimed(struct aq_broker *b, struct aq_job *j);
/* The idempotency key of job id is held by the live job other
 * (other_state) of another node: a put of id still waiting for the store
 * is answered as a duplicate of other, and id goes (the store told to
 * remove its row); a job answered already or started keeps running
 * without the key. */
void aq_broker_key_taken(struct aq_broker *b, uint64_t id, uint64_t other,
                         enum aq_job_state other_state);
/* The finished record id, if b has it, leaves b without a word to the
 * store (another node changed its row). Returns whether it had it. */
bool aq_broker_drop_record(struct aq_broker *b, uint64_t id);

/* Calls fn for every job b knows (live or a record; fn must not make or
 * drop jobs), with its queue's name. */
void aq_broker_each_job(struct aq_broker *b,
                        void (*fn)(struct aq_job *j, const char *queue,
                                   void *arg),
                        void *arg);

#endif
