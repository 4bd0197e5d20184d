/* SPDX-License-Identifier: MIT */
/*
 * lib/batch.c: the batch table: a hash table (FNV-1a, chained, doubled
 * past one entry per bucket) from a label to its counts, its ids and its
 * waiting joins. A join whose moment came moves to the table's fired
 * list and is called from one event, as aq_queue's joins are: a callback
 * never runs inside the state change that caused it.
 */
#include "batch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "idset.h"
#include "xmalloc.h"

#define MIN_BUCKETS 16

struct aq_batch_join {
    struct aq_batches *t;
    struct entry *e; /* waited on; NULL once fired */
    aq_batches_join_cb *cb;
    void *arg;
    TAILQ_ENTRY(aq_batch_join) link; /* e->joins, or t->fired */
};

TAILQ_HEAD(join_list, aq_batch_join);

struct entry {
    SLIST_ENTRY(entry) link; /* its bucket */
    uint64_t hash;
    struct aq_batch_counts c;
    struct aq_idset *ids;   /* owned: its jobs */
    struct join_list joins; /* waiting, in arrival order */
    char name[];
};

SLIST_HEAD(bucket, entry);

struct aq_batches {
    struct event_base *base; /* borrowed */
    struct event *wake_ev;   /* owned: calls the fired joins */
    struct bucket *buckets;  /* owned, nbuckets of them (a power of 2) */
    size_t nbuckets, n;
    struct join_list fired; /* owned, in firing order */
};

static uint64_t
name_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool
state_is_finished(int st)
{
    return aq_job_state_is_finished((enum aq_job_state)st);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_batches *t = arg;
    struct aq_batch_join *j;

    /* Each callback may join or cancel again: take one at a time. */
    while ((j = TAILQ_FIRST(&t->fired)) != NULL) {
        TAILQ_REMOVE(&t->fired, j, link);
        j->cb(j->arg);
        free(j);
    }
}

struct aq_batches *
aq_batches_new(struct event_base *base)
{
    struct aq_batches *t = xcalloc(1, sizeof *t);

    t->base = base;
    t->wake_ev = event_new(base, -1, 0, wake_cb, t);
    t->nbuckets = MIN_BUCKETS;
    t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
    TAILQ_INIT(&t->fired);
    return t;
}

static void
entry_free(struct entry *e)
{
    struct aq_batch_join *j;

    while ((j = TAILQ_FIRST(&e->joins)) != NULL) {
        TAILQ_REMOVE(&e->joins, j, link);
        free(j);
    }
    aq_idset_free(e->ids);
    free(e);
}

void
aq_batches_free(struct aq_batches *t)
{
    struct aq_batch_join *j;
    struct entry *e;

    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        while ((e = SLIST_FIRST(&t->buckets[i])) != NULL) {
            SLIST_REMOVE_HEAD(&t->buckets[i], link);
            entry_free(e);
        }
    }
    while ((j = TAILQ_FIRST(&t->fired)) != NULL) {
        TAILQ_REMOVE(&t->fired, j, link);
        free(j);
    }
    event_free(t->wake_ev);
    free(t->buckets);
    free(t);
}

static struct entry *
entry_find(const struct aq_batches *t, const char *name, uint64_t hash)
{
    struct entry *e;

    SLIST_FOREACH (e, &t->buckets[hash & (t->nbuckets - 1)], link) {
        if (e->hash == hash && strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

static void
grow(struct aq_batches *t)
{
    size_t n = t->nbuckets * 2;
    struct bucket *nb = xcalloc(n, sizeof *nb);
    struct entry *e;

    for (size_t i = 0; i < t->nbuckets; i++) {
        while ((e = SLIST_FIRST(&t->buckets[i])) != NULL) {
            SLIST_REMOVE_HEAD(&t->buckets[i], link);
            SLIST_INSERT_HEAD(&nb[e->hash & (n - 1)], e, link);
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
}

static struct entry *
entry_add(struct aq_batches *t, const char *name, uint64_t hash)
{
    size_t len = strlen(name);
    struct entry *e = xcalloc(1, sizeof *e + len + 1);

    memcpy(e->name, name, len + 1);
    e->hash = hash;
    e->ids = aq_idset_new();
    TAILQ_INIT(&e->joins);
    if (++t->n > t->nbuckets)
        grow(t);
    SLIST_INSERT_HEAD(&t->buckets[hash & (t->nbuckets - 1)], e, link);
    return e;
}

/* e goes once no job carries it and no join waits on it. */
static void
entry_maybe_drop(struct aq_batches *t, struct entry *e)
{
    if (e->c.total > 0 || !TAILQ_EMPTY(&e->joins))
        return;
    SLIST_REMOVE(&t->buckets[e->hash & (t->nbuckets - 1)], e, entry, link);
    t->n--;
    entry_free(e);
}

/* e has no unfinished job: its joins fire (from the loop). */
static void
entry_fire(struct aq_batches *t, struct entry *e)
{
    struct aq_batch_join *j;

    if (TAILQ_EMPTY(&e->joins))
        return;
    while ((j = TAILQ_FIRST(&e->joins)) != NULL) {
        TAILQ_REMOVE(&e->joins, j, link);
        j->e = NULL;
        TAILQ_INSERT_TAIL(&t->fired, j, link);
    }
    event_active(t->wake_ev, EV_TIMEOUT, 0);
}

void
aq_batches_move(struct aq_batches *t, const char *name, uint64_t id, int from,
                int to)
{
    uint64_t hash = name_hash(name);
    struct entry *e = entry_find(t, name, hash);

    if (e == NULL) {
        if (from >= 0 || to < 0)
            return; /* never: a job leaves only a batch it entered */
        e = entry_add(t, name, hash);
    }
    if (from >= 0) {
        e->c.states[from]--;
        if (!state_is_finished(from))
            e->c.unfinished--;
    } else {
        e->c.total++;
        aq_idset_add(e->ids, id);
    }
    if (to >= 0) {
        e->c.states[to]++;
        if (!state_is_finished(to))
            e->c.unfinished++;
    } else {
        e->c.total--;
        aq_idset_del(e->ids, id);
    }
    if (e->c.unfinished == 0)
        entry_fire(t, e);
    entry_maybe_drop(t, e);
}

void
aq_batches_counts(const struct aq_batches *t, const char *name,
                  struct aq_batch_counts *out)
{
    const struct entry *e = entry_find(t, name, name_hash(name));

    if (e != NULL)
        *out = e->c;
    else
        memset(out, 0, sizeof *out);
}

const struct aq_idset *
aq_batches_ids(const struct aq_batches *t, const char *name)
{
    const struct entry *e = entry_find(t, name, name_hash(name));

    return e != NULL && e->c.total > 0 ? e->ids : NULL;
}

size_t
aq_batches_size(const struct aq_batches *t)
{
    return t->n;
}

int
aq_batches_join(struct aq_batches *t, const char *name, aq_batches_join_cb *cb,
                void *arg, struct aq_batch_join **join)
{
    uint64_t hash = name_hash(name);
    struct entry *e = entry_find(t, name, hash);
    struct aq_batch_join *j;

    if (e == NULL || e->c.unfinished == 0)
        return 0;
    j = xcalloc(1, sizeof *j);
    j->t = t;
    j->e = e;
    j->cb = cb;
    j->arg = arg;
    TAILQ_INSERT_TAIL(&e->joins, j, link);
    *join = j;
    return 1;
}

void
aq_batches_join_cancel(struct aq_batch_join *j)
{
    if (j == NULL)
        return;
    if (j->e != NULL) {
        struct entry *e = j->e;

        TAILQ_REMOVE(&e->joins, j, link);
        entry_maybe_drop(j->t, e);
    } else
        TAILQ_REMOVE(&j->t->fired, j, link);
    free(j);
}
