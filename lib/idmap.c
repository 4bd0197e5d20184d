/* SPDX-License-Identifier: MIT */
/*
 * lib/idmap.c: linear probing over a power-of-two table of (id, value)
 * slots, kept at most half full; a probe compares ids in the table itself,
 * never touching the values. Deletion shifts entries back instead of
 * leaving tombstones, so lookups never slow down with churn.
 */
#include "idmap.h"

#include <stdlib.h>

#include "xmalloc.h"

#define MIN_SLOTS 16

struct slot {
    uint64_t id; /* 0 = empty (ids are never 0) */
    void *value;
};

struct aq_idmap {
    aq_idmap_key_fn *key_of;
    struct slot *slots;
    size_t mask; /* slots - 1 */
    size_t count;
};

static size_t
home(const struct aq_idmap *m, uint64_t id)
{
    /* Ids are sequential: mix them so neighbours spread over the table. */
    id ^= id >> 33;
    id *= UINT64_C(0xff51afd7ed558ccd);
    id ^= id >> 33;
    return (size_t)id & m->mask;
}

static size_t
find(const struct aq_idmap *m, uint64_t id)
{
    size_t i = home(m, id);

    while (m->slots[i].id != 0 && m->slots[i].id != id)
        i = (i + 1) & m->mask;
    return i;
}

static void
resize(struct aq_idmap *m, size_t nslots)
{
    struct slot *old = m->slots;
    size_t old_n = m->mask + 1;

    m->slots = xcalloc(nslots, sizeof *m->slots);
    m->mask = nslots - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].id != 0)
            m->slots[find(m, old[i].id)] = old[i];
    }
    free(old);
}

struct aq_idmap *
aq_idmap_new(aq_idmap_key_fn *key_of)
{
    struct aq_idmap *m = xcalloc(1, sizeof *m);

    m->key_of = key_of;
    m->slots = xcalloc(MIN_SLOTS, sizeof *m->slots);
    m->mask = MIN_SLOTS - 1;
    return m;
}

void
aq_idmap_free(struct aq_idmap *m)
{
    if (m == NULL)
        return;
    free(m->slots);
    free(m);
}

void
aq_idmap_put(struct aq_idmap *m, void *value)
{
    uint64_t id = m->key_of(value);
    size_t i;

    if ((m->count + 1) * 2 > m->mask + 1)
        resize(m, (m->mask + 1) * 2);
    i = find(m, id);
    if (m->slots[i].id == 0)
        m->count++;
    m->slots[i].id = id;
    m->slots[i].value = value;
}

void *
aq_idmap_get(const struct aq_idmap *m, uint64_t id)
{
    return id != 0 ? m->slots[find(m, id)].value : NULL;
}

void *
aq_idmap_del(struct aq_idmap *m, uint64_t id)
{
    size_t i, j;
    void *value;

    if (id == 0)
        return NULL;
    i = j = find(m, id);
    if ((value = m->slots[i].value) == NULL)
        return NULL;
    m->slots[i] = (struct slot){0, NULL};
    m->count--;
    for (;;) {
        size_t h;

        j = (j + 1) & m->mask;
        if (m->slots[j].id == 0)
            break;
        h = home(m, m->slots[j].id);
        /* Leave slots[j] if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j] = (struct slot){0, NULL};
        i = j;
    }
    if (m->mask + 1 > MIN_SLOTS && m->count * 8 < m->mask + 1)
        resize(m, (m->mask + 1) / 2);
    return value;
}

size_t
aq_idmap_count(const struct aq_idmap *m)
{
    return m->count;
}

void
aq_idmap_each(const struct aq_idmap *m, void (*fn)(void *value, void *arg),
              void *arg)
{
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->slots[i].id != 0)
            fn(m->slots[i].value, arg);
    }
}
