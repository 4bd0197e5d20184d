/* SPDX-License-Identifier: MIT */
/*
 * lib/idmap.c: linear probing over a power-of-two table of value pointers,
 * kept at most half full; deletion shifts entries back instead of leaving
 * tombstones, so lookups never slow down with churn.
 */
#include "idmap.h"

#include <stdlib.h>

#include "xmalloc.h"

#define MIN_SLOTS 16

struct aq_idmap {
    aq_idmap_key_fn *key_of;
    void **slots; /* NULL = empty */
    size_t mask;  /* slots - 1 */
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

    while (m->slots[i] != NULL && m->key_of(m->slots[i]) != id)
        i = (i + 1) & m->mask;
    return i;
}

static void
resize(struct aq_idmap *m, size_t nslots)
{
    void **old = m->slots;
    size_t old_n = m->mask + 1;

    m->slots = xcalloc(nslots, sizeof *m->slots);
    m->mask = nslots - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i] != NULL)
            m->slots[find(m, m->key_of(old[i]))] = old[i];
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
    size_t i;

    if ((m->count + 1) * 2 > m->mask + 1)
        resize(m, (m->mask + 1) * 2);
    i = find(m, m->key_of(value));
    if (m->slots[i] == NULL)
        m->count++;
    m->slots[i] = value;
}

void *
aq_idmap_get(const struct aq_idmap *m, uint64_t id)
{
    return m->slots[find(m, id)];
}

void *
aq_idmap_del(struct aq_idmap *m, uint64_t id)
{
    size_t i = find(m, id), j = i;
    void *value = m->slots[i];

    if (value == NULL)
        return NULL;
    m->slots[i] = NULL;
    m->count--;
    for (;;) {
        size_t h;

        j = (j + 1) & m->mask;
        if (m->slots[j] == NULL)
            break;
        h = home(m, m->key_of(m->slots[j]));
        /* Leave slots[j] if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j] = NULL;
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
        if (m->slots[i] != NULL)
            fn(m->slots[i], arg);
    }
}
