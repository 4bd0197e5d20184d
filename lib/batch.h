/* SPDX-License-Identifier: MIT */
/*
 * lib/batch.h: batches (spec section 11): a put's `batch` label, and per
 * label the count of its jobs in each state, unfinished and in all, the
 * ids of its jobs (for list), and the joins waiting for it to have no
 * unfinished job. The broker tells the table every state change of a job
 * that has a batch (job_set_state, job_unindex), so `stats` by batch is a
 * lookup, not a scan. A label no job carries any more (every job of it
 * evicted or deleted) leaves the table. No I/O: a join fires from the
 * loop (an event of the base it was given), never inside a move.
 */
#ifndef AQ_BATCH_H
#define AQ_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct event_base;
struct aq_idset;

/* The job states a batch counts (enum aq_job_state). */
#define AQ_BATCH_NSTATES (AQ_JOB_CANCELLED + 1)

struct aq_batches;

/* base is borrowed and must outlive the table. */
struct aq_batches *aq_batches_new(struct event_base *base);
/* Frees the table; its waiting joins are dropped with no callback (their
 * owners withdraw them first). NULL is fine. */
void aq_batches_free(struct aq_batches *t);

/* Job id of batch name moves from state from to state to: from -1 when
 * it enters (put, restore), to -1 when it leaves (its record is evicted
 * or deleted). Once its batch has no unfinished job, the joins waiting
 * for it fire (from the loop). */
void aq_batches_move(struct aq_batches *t, const char *name, uint64_t id,
                     int from, int to);

struct aq_batch_counts {
    uint64_t total;      /* jobs known: unfinished and kept records */
    uint64_t unfinished; /* in a state that is not finished */
    uint64_t states[AQ_BATCH_NSTATES];
};

/* The counts of batch name (zeros for one no job carries). */
void aq_batches_counts(const struct aq_batches *t, const char *name,
                       struct aq_batch_counts *out);
/* The ids of batch name's jobs (borrowed until the next move), or NULL
 * when no job carries it. */
const struct aq_idset *aq_batches_ids(const struct aq_batches *t,
                                      const char *name);
/* How many labels the table holds (jobs carry them, or joins wait). */
size_t aq_batches_size(const struct aq_batches *t);

typedef void aq_batches_join_cb(void *arg);
struct aq_batch_join;

/* Waits until batch name has no unfinished job. Returns 0 if that is so
 * already (an unknown batch is empty), or 1 with *join set: cb(arg) fires
 * from the loop once the count reaches 0 (withdraw with
 * aq_batches_join_cancel; no callback after). */
int aq_batches_join(struct aq_batches *t, const char *name,
                    aq_batches_join_cb *cb, void *arg,
                    struct aq_batch_join **join);
void aq_batches_join_cancel(struct aq_batch_join *j); /* NULL is fine */

#endif
