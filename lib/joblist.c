/* SPDX-License-Identifier: MIT */
/*
 * lib/joblist.c: the per-state indexes and list (spec section 9). Each
 * queue keeps one aq_idset per job state, kept exact by job_set_state and
 * job_unindex (broker-internal.h); a page of list is a k-way walk by id
 * over the sets it covers (its queues times its states): each step takes
 * the lowest (or highest) head among them and moves that set on, so a
 * page costs O(limit x sets) set steps however many jobs the states hold.
 * One job beyond the page tells whether next is null. A list by batch
 * walks that batch's ids instead (lib/batch.h), testing queue and state.
 */
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "error.h"
#include "idmap.h"
#include "xmalloc.h"

const char *const aq_list_state_names[] = {
    "delayed", "waiting", "pending",   "running",
    "done",    "failed",  "cancelled", NULL,
};

/* The state of each of aq_list_state_names. */
static const int list_states[] = {
    AQ_JOB_DELAYED, AQ_JOB_WAITING, AQ_JOB_PENDING,   AQ_JOB_RUNNING,
    AQ_JOB_DONE,    AQ_JOB_FAILED,  AQ_JOB_CANCELLED,
};
_Static_assert(sizeof list_states / sizeof list_states[0] == BROKER_NSTATES,
               "list knows every state");

void
broker_index_init(struct broker_queue *bq)
{
    for (int st = 0; st < BROKER_NSTATES; st++)
        bq->ids[st] = aq_idset_new();
}

void
broker_index_free(struct broker_queue *bq)
{
    for (int st = 0; st < BROKER_NSTATES; st++) {
        aq_idset_free(bq->ids[st]);
        bq->ids[st] = NULL;
    }
}

/* One set of the walk and the next id it gives (0 = done). */
struct walk {
    const struct aq_idset *set;
    uint64_t head;
};

/* The id of s after id in l's order, within l's bounds; 0 if none. id 0
 * starts at the first. */
static uint64_t
walk_step(const struct aq_list *l, const struct aq_idset *s, uint64_t id)
{
    if (l->is_desc) {
        id = aq_idset_prev(s, id != 0 ? id : l->before);
        return id > l->after ? id : 0;
    }
    id = aq_idset_next(s, id != 0 ? id : l->after);
    return l->before == 0 || id < l->before ? id : 0;
}

/* The walk whose head comes first in l's order, or NULL when all are
 * done. */
static struct walk *
walk_first(const struct aq_list *l, struct walk *w, size_t n)
{
    struct walk *best = NULL;

    for (size_t i = 0; i < n; i++) {
        if (w[i].head == 0)
            continue;
        if (best == NULL ||
            (l->is_desc ? w[i].head > best->head : w[i].head < best->head))
            best = &w[i];
    }
    return best;
}

static bool
str_is(const char *filter, const char *value)
{
    return filter == NULL || (value != NULL && strcmp(filter, value) == 0);
}

static bool
list_matches(const struct aq_list *l, const struct aq_job *j)
{
    if (l->name == NULL && l->batch == NULL)
        return true;
    if (j->ext == NULL)
        return false;
    return str_is(l->name, j->ext->name) && str_is(l->batch, j->ext->batch);
}

/* Whether l's states cover j's (a walk over a batch's ids sees them all). */
static bool
list_state_matches(const struct aq_list *l, const struct aq_job *j)
{
    for (size_t i = 0; aq_list_state_names[i] != NULL; i++) {
        if (list_states[i] == (int)j->state)
            return (l->states & (1u << i)) != 0;
    }
    return false;
}

/* Adds a walk over each non-empty set of bq that l covers. */
static size_t
walks_add(const struct aq_list *l, const struct broker_queue *bq,
          struct walk *w, size_t n)
{
    for (size_t i = 0; aq_list_state_names[i] != NULL; i++) {
        const struct aq_idset *s;

        if (!(l->states & (1u << i)))
            continue;
        s = bq->ids[list_states[i]];
        if (aq_idset_count(s) == 0)
            continue;
        w[n] = (struct walk){s, walk_step(l, s, 0)};
        if (w[n].head != 0)
            n++;
    }
    return n;
}

json_t *
aq_broker_list(struct aq_broker *b, const struct aq_list *l,
               struct aq_error *err)
{
    struct broker_queue *only = NULL, *bq;
    struct walk *w, *first;
    size_t n = 0, nqueues = 0, scanned = 0, njobs = 0;
    uint64_t next = 0, last = 0;
    json_t *jobs;

    if (l->queue != NULL && (only = broker_queue_find(b, l->queue)) == NULL) {
        aq_error_set(err, AQ_ERR_NO_QUEUE, "no such queue: %.100s", l->queue);
        return NULL;
    }
    STAILQ_FOREACH (bq, &b->queues, link)
        nqueues++;
    w = xcalloc(nqueues * BROKER_NSTATES + 1, sizeof *w);
    if (l->batch != NULL) {
        /* One walk over the batch's ids: a batch is usually a small part
         * of the jobs, each tested for queue and state. */
        const struct aq_idset *s = aq_batches_ids(b->batches, l->batch);

        if (s != NULL) {
            w[0] = (struct walk){s, walk_step(l, s, 0)};
            n = w[0].head != 0 ? 1 : 0;
        }
    } else {
        STAILQ_FOREACH (bq, &b->queues, link) {
            if (only == NULL || bq == only)
                n = walks_add(l, bq, w, n);
        }
    }
    jobs = json_array();
    while ((first = walk_first(l, w, n)) != NULL) {
        uint64_t id = first->head;
        const struct aq_job *j = aq_idmap_get(b->jobs, id);

        first->head = walk_step(l, first->set, id);
        if (j == NULL) /* never: the sets follow the id map */
            continue;
        if (!list_matches(l, j) ||
            (l->batch != NULL && ((only != NULL && job_queue(j) != only) ||
                                  !list_state_matches(l, j)))) {
            if (++scanned == AQ_LIST_SCAN) {
                next = id; /* go on from here next time */
                break;
            }
            continue;
        }
        if (njobs == l->limit) { /* one beyond the page: there is more */
            next = last;
            break;
        }
        json_array_append_new(jobs, job_record(j));
        last = id;
        njobs++;
    }
    free(w);
    return json_pack("{s:o,s:o}", "jobs", jobs, "next",
                     next != 0 ? json_integer((json_int_t)next) : json_null());
}
