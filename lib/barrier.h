/* SPDX-License-Identifier: MIT */
/*
 * lib/barrier.h: a wait until everything recorded so far is durable (what
 * a put's acknowledgement waits for). The node is the waiter's memory, so
 * the hot path allocates nothing; the log that links it (lib/journal.h, or
 * a store of lib/store.h) keeps its nodes in one list, oldest first, and
 * runs their callbacks from the loop.
 */
#ifndef AQ_BARRIER_H
#define AQ_BARRIER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct aq_error;

/* err NULL: durable; else why it cannot become so (-32603). */
typedef void aq_barrier_cb(void *arg, const struct aq_error *err);

/* Fields belong to the log that linked the node, until its callback runs
 * or the wait is cancelled. */
struct aq_barrier {
    TAILQ_ENTRY(aq_barrier) link;
    uint64_t pos; /* durable once the log's durable position reaches it */
    aq_barrier_cb *cb;
    void *arg;
    bool is_ours; /* allocated by the log, freed once run */
};

TAILQ_HEAD(aq_barrier_list, aq_barrier);

#endif
