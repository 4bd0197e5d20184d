/* SPDX-License-Identifier: MIT */
/*
 * lib/idmap.c: ids come from a counter, so the values live in pages of
 * PAGE_SLOTS pointers indexed by id; a small hash (linear probing over
 * (page number, page) slots, at most half full, backward-shift deletion)
 * finds a page by its number. Dense ids cost 8 bytes each; a page is freed
 * when its last value goes.
 */
#include "idmap.h"

#include <stdlib.h>

#include "xmalloc.h"

#define PAGE_BITS 10
#define PAGE_SLOTS (1u << PAGE_BITS)
#define MIN_HASH 16

struct page {
    uint64_t no; /* id >> PAGE_BITS */
    size_t used; /* non-NULL slots */
    void *slot[PAGE_SLOTS];
};

struct aq_idmap {
    aq_idmap_key_fn *key_of;
    struct page **hash; /* NULL = empty */
    size_t mask;        /* hash size - 1 */
    size_t npages;
    struct page *last; /* the page used last: ids come in runs */
};

static size_t
home(const struct aq_idmap *m, uint64_t no)
{
    no ^= no >> 33;
    no *= UINT64_C(0xff51afd7ed558ccd);
    no ^= no >> 33;
    return (size_t)no & m->mask;
}

static size_t
find(const struct aq_idmap *m, uint64_t no)
{
    size_t i = home(m, no);

    while (m->hash[i] != NULL && m->hash[i]->no != no)
        i = (i + 1) & m->mask;
    return i;
}

static void
resize(struct aq_idmap *m, size_t size)
{
    struct page **old = m->hash;
    size_t old_n = m->mask + 1;

    m->hash = xcalloc(size, sizeof *m->hash);
    m->mask = size - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i] != NULL)
            m->hash[find(m, old[i]->no)] = old[i];
    }
    free(old);
}

static struct page *
page_get(const struct aq_idmap *m, uint64_t no)
{
    if (m->last != NULL && m->last->no == no)
        return m->last;
    return m->hash[find(m, no)];
}

static void
page_remove(struct aq_idmap *m, struct page *p)
{
    size_t i = find(m, p->no), j = i;

    m->hash[i] = NULL;
    for (;;) {
        size_t h;

        j = (j + 1) & m->mask;
        if (m->hash[j] == NULL)
            break;
        h = home(m, m->hash[j]->no);
        /* Leave hash[j] if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
            continue;
        m->hash[i] = m->hash[j];
        m->hash[j] = NULL;
        i = j;
    }
    if (m->last == p)
        m->last = NULL;
    m->npages--;
    free(p);
    if (m->mask + 1 > MIN_HASH && m->npages * 8 < m->mask + 1)
        resize(m, (m->mask + 1) / 2);
}

struct aq_idmap *
aq_idmap_new(aq_idmap_key_fn *key_of)
{
    struct aq_idmap *m = xcalloc(1, sizeof *m);

    m->key_of = key_of;
    m->hash = xcalloc(MIN_HASH, sizeof *m->hash);
    m->mask = MIN_HASH - 1;
    return m;
}

void
aq_idmap_free(struct aq_idmap *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i <= m->mask; i++)
        free(m->hash[i]);
    free(m->hash);
    free(m);
}

void
aq_idmap_put(struct aq_idmap *m, void *value)
{
    uint64_t id = m->key_of(value), no = id >> PAGE_BITS;
    struct page *p = page_get(m, no);
    void **slot;

    if (p == NULL) {
        if ((m->npages + 1) * 2 > m->mask + 1)
            resize(m, (m->mask + 1) * 2);
        p = xcalloc(1, sizeof *p);
        p->no = no;
        m->hash[find(m, no)] = p;
        m->npages++;
    }
    m->last = p;
    slot = &p->slot[id & (PAGE_SLOTS - 1)];
    if (*slot == NULL)
        p->used++;
    *slot = value;
}

void *
aq_idmap_get(const struct aq_idmap *m, uint64_t id)
{
    struct page *p = page_get(m, id >> PAGE_BITS);

    return p != NULL ? p->slot[id & (PAGE_SLOTS - 1)] : NULL;
}

void *
aq_idmap_del(struct aq_idmap *m, uint64_t id)
{
    struct page *p = page_get(m, id >> PAGE_BITS);
    void *value;

    if (p == NULL || (value = p->slot[id & (PAGE_SLOTS - 1)]) == NULL)
        return NULL;
    p->slot[id & (PAGE_SLOTS - 1)] = NULL;
    if (--p->used == 0)
        page_remove(m, p);
    return value;
}

void
aq_idmap_each(const struct aq_idmap *m, void (*fn)(void *value, void *arg),
              void *arg)
{
    for (size_t i = 0; i <= m->mask; i++) {
        const struct page *p = m->hash[i];

        for (size_t k = 0; p != NULL && k < PAGE_SLOTS; k++) {
            if (p->slot[k] != NULL)
                fn(p->slot[k], arg);
        }
    }
}
