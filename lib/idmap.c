/* SPDX-License-Identifier: MIT */
/*
 * lib/idmap.c: ids come from a counter, so the values live in pages of
 * PAGE_SLOTS slots indexed by id; a small hash (linear probing over
 * (page number, page) slots, at most half full, backward-shift deletion)
 * finds a page by its number. A page holds its values as 32-bit offsets
 * (in 8-byte units) from a base address, the first value filed in it,
 * while every value is 8-aligned and within 16 GiB of it (values made
 * around the same time: jobs of one slab or heap), else as pointers
 * (wide). Dense ids cost 4 bytes each, 8 on a wide page; a page is freed
 * when its last value goes.
 */
#include "idmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define PAGE_BITS 10
#define PAGE_SLOTS (1u << PAGE_BITS)
#define MIN_HASH 16

struct page {
    uint64_t no;    /* id >> PAGE_BITS */
    uintptr_t base; /* narrow: the address offsets count from */
    uint32_t used;  /* slots holding a value */
    uint32_t wide;  /* slots are pointers, else offsets */
    /* PAGE_SLOTS slots: narrow, one uint32_t each, 0 = none, else the
     * value's offset from base in 8-byte units, plus one, as an int32_t;
     * wide, two for a pointer each (read and written with memcpy). */
    uint32_t e[];
};

static size_t
page_size(bool wide)
{
    return sizeof(struct page) + (wide ? 2 : 1) * PAGE_SLOTS * sizeof(uint32_t);
}

/* The slot of value v on narrow page p, or 0 if v cannot be one. */
static uint32_t
encode(const struct page *p, const void *v)
{
    int64_t d = (int64_t)((uintptr_t)v - p->base);

    if ((d & 7) != 0)
        return 0;
    d = d / 8 + 1;
    return d >= INT32_MIN && d <= INT32_MAX ? (uint32_t)(int32_t)d : 0;
}

static void *
slot_get(const struct page *p, size_t k)
{
    if (p->wide) {
        void *v;

        memcpy(&v, &p->e[2 * k], sizeof v);
        return v;
    }
    if (p->e[k] == 0)
        return NULL;
    return (void *)(p->base + (uintptr_t)(((int64_t)(int32_t)p->e[k] - 1) * 8));
}

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

/* p made wide, in place of p in the hash (p is freed). */
static struct page *
widen(struct aq_idmap *m, struct page *p)
{
    struct page *w = xmalloc(page_size(true));

    w->no = p->no;
    w->base = 0;
    w->used = p->used;
    w->wide = 1;
    for (size_t k = 0; k < PAGE_SLOTS; k++) {
        void *v = slot_get(p, k);

        memcpy(&w->e[2 * k], &v, sizeof v);
    }
    m->hash[find(m, p->no)] = w;
    if (m->last == p)
        m->last = w;
    free(p);
    return w;
}

void
aq_idmap_put(struct aq_idmap *m, void *value)
{
    uint64_t id = m->key_of(value), no = id >> PAGE_BITS;
    struct page *p = page_get(m, no);
    size_t k = id & (PAGE_SLOTS - 1);
    uint32_t e;

    if (p == NULL) {
        if ((m->npages + 1) * 2 > m->mask + 1)
            resize(m, (m->mask + 1) * 2);
        p = xcalloc(1, page_size(false));
        p->no = no;
        p->base = (uintptr_t)value;
        m->hash[find(m, no)] = p;
        m->npages++;
    }
    m->last = p;
    if (slot_get(p, k) == NULL)
        p->used++;
    if (!p->wide && (e = encode(p, value)) != 0) {
        p->e[k] = e;
        return;
    }
    if (!p->wide)
        p = widen(m, p);
    memcpy(&p->e[2 * k], &value, sizeof value);
}

void *
aq_idmap_get(const struct aq_idmap *m, uint64_t id)
{
    struct page *p = page_get(m, id >> PAGE_BITS);

    return p != NULL ? slot_get(p, id & (PAGE_SLOTS - 1)) : NULL;
}

void *
aq_idmap_del(struct aq_idmap *m, uint64_t id)
{
    struct page *p = page_get(m, id >> PAGE_BITS);
    size_t k = id & (PAGE_SLOTS - 1);
    void *value;

    if (p == NULL || (value = slot_get(p, k)) == NULL)
        return NULL;
    if (p->wide)
        memset(&p->e[2 * k], 0, 2 * sizeof p->e[0]);
    else
        p->e[k] = 0;
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
            void *v = slot_get(p, k);

            if (v != NULL)
                fn(v, arg);
        }
    }
}
