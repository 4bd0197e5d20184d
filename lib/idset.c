/* SPDX-License-Identifier: MIT */
/*
 * lib/idset.c: ids in chunks of CHUNK_IDS consecutive ids (key: id >>
 * CHUNK_BITS). A chunk holds its ids' low bits as a sorted array of
 * uint16 while it has at most ARRAY_MAX of them, else as a bitmap of the
 * same size at most (512 bytes); a bitmap that falls under ARRAY_MIN ids
 * becomes an array again (the gap keeps a chunk from flipping back and
 * forth). Small sets and dense runs start chunks as bitmaps (see
 * new_is_bitmap), so the put/get/done path only flips bits. The directory is an
 * array of (key, chunk) sorted by key, with room at both ends: ids come from a
 * counter, so adds land in the last chunk and deletes of the oldest ids in the
 * first, both found without a search and both O(1) in the directory.
 */
#include "idset.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define CHUNK_BITS 12
#define CHUNK_IDS (1u << CHUNK_BITS)
#define CHUNK_MASK (CHUNK_IDS - 1)
#define BITMAP_WORDS (CHUNK_IDS / 64)
#define ARRAY_MAX 256 /* 512 bytes of offsets: a bitmap is no bigger */
#define ARRAY_MIN 64  /* a bitmap under this many ids turns into an array */
#define ARRAY_FIRST 4 /* a new array's capacity */
#define SMALL_SET 4   /* chunks a set may hold as bitmaps however few ids */

struct chunk {
    uint16_t n;   /* ids held: 1 to CHUNK_IDS; 0: an empty set's */
    uint16_t cap; /* an array's capacity (offsets); 0 = a bitmap */
    uint32_t unused;
    uint64_t w[]; /* bitmap: BITMAP_WORDS words; array: cap uint16_t */
};

struct slot {
    uint64_t key;    /* id >> CHUNK_BITS */
    struct chunk *c; /* owned */
};

struct aq_idset {
    struct slot *dir; /* owned: dir[off] to dir[off + n - 1], by key */
    size_t off, n, cap;
    size_t count;        /* ids */
    size_t chunk_bytes;  /* what the chunks hold, spare included */
    struct chunk *spare; /* owned: the last chunk emptied, for the next */
};

/* ---- chunks ---- */

static uint16_t *
vals(struct chunk *c)
{
    return (uint16_t *)(void *)c->w;
}

static const uint16_t *
cvals(const struct chunk *c)
{
    return (const uint16_t *)(const void *)c->w;
}

static size_t
chunk_size(uint16_t cap)
{
    return sizeof(struct chunk) +
           (cap == 0 ? BITMAP_WORDS * sizeof(uint64_t)
                     : ((size_t)cap * sizeof(uint16_t) + 7) / 8 * 8);
}

static struct chunk *
chunk_new(struct aq_idset *s, uint16_t cap)
{
    size_t size = chunk_size(cap);
    struct chunk *c = s->spare;

    /* A set that empties and fills again (the running jobs, a queue its
     * consumers keep empty) reuses its chunk: no malloc per job. Emptied,
     * it holds no id: its bitmap is all zeros. */
    if (c != NULL && c->cap == cap) {
        s->spare = NULL;
        return c;
    }
    c = xcalloc(1, size);
    c->cap = cap;
    s->chunk_bytes += size;
    return c;
}

static void
chunk_free(struct aq_idset *s, struct chunk *c)
{
    s->chunk_bytes -= chunk_size(c->cap);
    free(c);
}

/* c is empty: kept as the spare if there is none. */
static void
chunk_drop(struct aq_idset *s, struct chunk *c)
{
    if (s->spare == NULL && (c->cap == 0 || c->cap == ARRAY_FIRST))
        s->spare = c;
    else
        chunk_free(s, c);
}

static bool
bit_has(const struct chunk *c, unsigned v)
{
    return (c->w[v >> 6] >> (v & 63)) & 1;
}

/* The first position in c's array whose offset is >= v. */
static size_t
array_lower(const struct chunk *c, unsigned v)
{
    const uint16_t *a = cvals(c);
    size_t lo = 0, hi = c->n;

    if (c->n > 0 && a[c->n - 1] < v)
        return c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* An array full at ARRAY_MAX becomes a bitmap. */
static struct chunk *
to_bitmap(struct aq_idset *s, struct chunk *c)
{
    struct chunk *b = chunk_new(s, 0);

    for (size_t i = 0; i < c->n; i++)
        b->w[vals(c)[i] >> 6] |= UINT64_C(1) << (vals(c)[i] & 63);
    b->n = c->n;
    chunk_free(s, c);
    return b;
}

static struct chunk *
to_array(struct aq_idset *s, struct chunk *c)
{
    struct chunk *a = chunk_new(s, ARRAY_MIN);
    uint16_t *out = vals(a);

    for (unsigned wi = 0; wi < BITMAP_WORDS; wi++) {
        for (uint64_t word = c->w[wi]; word != 0; word &= word - 1)
            *out++ = (uint16_t)(wi * 64 + (unsigned)__builtin_ctzll(word));
    }
    a->n = c->n;
    chunk_free(s, c);
    return a;
}

static struct chunk *
array_resize(struct aq_idset *s, struct chunk *c, uint16_t cap)
{
    s->chunk_bytes += chunk_size(cap) - chunk_size(c->cap);
    c = xrealloc(c, chunk_size(cap));
    c->cap = cap;
    return c;
}

/* The smallest offset >= v in c, or -1. */
static int
chunk_next(const struct chunk *c, unsigned v)
{
    if (c->cap == 0) {
        unsigned wi = v >> 6;
        uint64_t word = c->w[wi] & (~UINT64_C(0) << (v & 63));

        while (word == 0) {
            if (++wi == BITMAP_WORDS)
                return -1;
            word = c->w[wi];
        }
        return (int)(wi * 64 + (unsigned)__builtin_ctzll(word));
    }
    size_t i = array_lower(c, v);
    return i < c->n ? cvals(c)[i] : -1;
}

/* The largest offset <= v in c, or -1. */
static int
chunk_prev(const struct chunk *c, unsigned v)
{
    if (c->cap == 0) {
        unsigned wi = v >> 6;
        uint64_t word = c->w[wi] & (~UINT64_C(0) >> (63 - (v & 63)));

        while (word == 0) {
            if (wi-- == 0)
                return -1;
            word = c->w[wi];
        }
        return (int)(wi * 64 + 63 - (unsigned)__builtin_clzll(word));
    }
    size_t i = array_lower(c, v + 1);
    return i > 0 ? cvals(c)[i - 1] : -1;
}

/* ---- the directory ---- */

static struct slot *
slot_at(const struct aq_idset *s, size_t i)
{
    return &s->dir[s->off + i];
}

/* The first slot whose key is >= key (n if none): the newest and the
 * oldest chunks first, without a search. */
static size_t
dir_lower(const struct aq_idset *s, uint64_t key)
{
    size_t lo = 0, hi = s->n;

    if (s->n == 0 || slot_at(s, 0)->key >= key)
        return 0;
    if (slot_at(s, s->n - 1)->key < key)
        return s->n;
    if (slot_at(s, s->n - 1)->key == key)
        return s->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (slot_at(s, mid)->key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The chunk of key, or NULL; *at is where it is or would go. */
static struct chunk *
dir_find(const struct aq_idset *s, uint64_t key, size_t *at)
{
    size_t i = dir_lower(s, key);

    *at = i;
    return i < s->n && slot_at(s, i)->key == key ? slot_at(s, i)->c : NULL;
}

static void
dir_insert(struct aq_idset *s, size_t i, uint64_t key, struct chunk *c)
{
    if (i == 0 && s->off > 0) {
        s->off--;
    } else {
        if (s->off + s->n == s->cap) {
            if (s->off > s->n) { /* half of it free at the front: reuse */
                memmove(s->dir, slot_at(s, 0), s->n * sizeof *s->dir);
                s->off = 0;
            } else {
                s->cap = s->cap != 0 ? s->cap * 2 : 4;
                s->dir = xreallocarray(s->dir, s->cap, sizeof *s->dir);
            }
        }
        memmove(slot_at(s, i + 1), slot_at(s, i), (s->n - i) * sizeof *s->dir);
    }
    s->n++;
    *slot_at(s, i) = (struct slot){key, c};
}

static void
dir_remove(struct aq_idset *s, size_t i)
{
    chunk_drop(s, slot_at(s, i)->c);
    if (i == 0)
        s->off++;
    else
        memmove(slot_at(s, i), slot_at(s, i + 1),
                (s->n - i - 1) * sizeof *s->dir);
    if (--s->n == 0)
        s->off = 0;
}

/* Whether a chunk new at slot at starts as a bitmap: in a small set (the
 * running jobs, a queue its consumers keep nearly empty), so that the hot
 * path only flips bits; and after a full chunk at the end (ids put in a
 * run), which a bitmap would hold in the end. Either way a set holds few
 * bitmaps with few ids: SMALL_SET, and one after each dense run. */
static bool
new_is_bitmap(const struct aq_idset *s, size_t at)
{
    const struct chunk *last;

    if (s->n < SMALL_SET)
        return true;
    last = slot_at(s, s->n - 1)->c;
    return at == s->n && last->cap == 0 && last->n >= ARRAY_MAX;
}

/* ---- public ---- */

struct aq_idset *
aq_idset_new(void)
{
    return xcalloc(1, sizeof(struct aq_idset));
}

void
aq_idset_free(struct aq_idset *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(slot_at(s, i)->c);
    free(s->spare);
    free(s->dir);
    free(s);
}

/* The bitmap chunk of id if it is the set's first or last (with first),
 * else NULL: the put/get/done path's ids, found with a compare or two. */
static inline struct chunk *
end_bitmap(const struct aq_idset *s, uint64_t id, bool first)
{
    const struct slot *sl;

    if (s->n == 0)
        return NULL;
    sl = slot_at(s, s->n - 1);
    if (sl->key != id >> CHUNK_BITS && first)
        sl = slot_at(s, 0);
    return sl->key == id >> CHUNK_BITS && sl->c->cap == 0 ? sl->c : NULL;
}

static bool add_slow(struct aq_idset *s, uint64_t id);
static bool del_slow(struct aq_idset *s, uint64_t id);

bool
aq_idset_add(struct aq_idset *s, uint64_t id)
{
    struct chunk *c = end_bitmap(s, id, false);
    uint64_t bit = UINT64_C(1) << (id & 63), *w;

    if (c == NULL)
        return add_slow(s, id);
    w = &c->w[(id & CHUNK_MASK) >> 6];
    if (*w & bit)
        return false;
    *w |= bit;
    c->n++;
    s->count++;
    return true;
}

bool
aq_idset_del(struct aq_idset *s, uint64_t id)
{
    struct chunk *c = end_bitmap(s, id, true);
    uint64_t bit = UINT64_C(1) << (id & 63), *w;

    /* What only the slow path knows to do: a chunk that empties. */
    if (c == NULL || (c->n == 1 && s->n > 1) ||
        (c->n <= ARRAY_MIN && s->n > SMALL_SET))
        return del_slow(s, id);
    w = &c->w[(id & CHUNK_MASK) >> 6];
    if (!(*w & bit))
        return false;
    *w &= ~bit;
    c->n--;
    s->count--;
    return true;
}

static bool __attribute__((noinline)) add_slow(struct aq_idset *s, uint64_t id)
{
    uint64_t key = id >> CHUNK_BITS;
    unsigned v = (unsigned)(id & CHUNK_MASK);
    struct chunk *c;
    size_t at, i;

    if (id == 0)
        return false;
    if (s->count == 0 && s->n == 1) /* its chunk, empty: any key fits */
        slot_at(s, 0)->key = key;
    if ((c = dir_find(s, key, &at)) == NULL) {
        c = chunk_new(s, new_is_bitmap(s, at) ? 0 : ARRAY_FIRST);
        dir_insert(s, at, key, c);
    }
    if (c->cap == 0) {
        if (bit_has(c, v))
            return false;
        c->w[v >> 6] |= UINT64_C(1) << (v & 63);
        c->n++;
        s->count++;
        return true;
    }
    if ((i = array_lower(c, v)) < c->n && vals(c)[i] == v)
        return false;
    if (c->n == c->cap) {
        if (c->cap == ARRAY_MAX) {
            c = slot_at(s, at)->c = to_bitmap(s, c);
            c->w[v >> 6] |= UINT64_C(1) << (v & 63);
            c->n++;
            s->count++;
            return true;
        }
        c = slot_at(s, at)->c = array_resize(s, c, (uint16_t)(c->cap * 2));
    }
    memmove(&vals(c)[i + 1], &vals(c)[i], (c->n - i) * sizeof(uint16_t));
    vals(c)[i] = (uint16_t)v;
    c->n++;
    s->count++;
    return true;
}

static bool __attribute__((noinline)) del_slow(struct aq_idset *s, uint64_t id)
{
    unsigned v = (unsigned)(id & CHUNK_MASK);
    struct chunk *c;
    size_t at, i;

    if ((c = dir_find(s, id >> CHUNK_BITS, &at)) == NULL)
        return false;
    if (c->cap == 0) {
        if (!bit_has(c, v))
            return false;
        c->w[v >> 6] &= ~(UINT64_C(1) << (v & 63));
    } else {
        if ((i = array_lower(c, v)) == c->n || vals(c)[i] != v)
            return false;
        memmove(&vals(c)[i], &vals(c)[i + 1],
                (c->n - i - 1) * sizeof(uint16_t));
    }
    c->n--;
    s->count--;
    /* A set keeps its last chunk, empty: one that empties and fills again
     * (the running jobs) allocates nothing. */
    if (c->n == 0) {
        if (s->n > 1)
            dir_remove(s, at);
    } else if (c->cap == 0 && c->n < ARRAY_MIN && s->n > SMALL_SET)
        slot_at(s, at)->c = to_array(s, c);
    else if (c->cap > ARRAY_FIRST && c->n <= c->cap / 4)
        slot_at(s, at)->c = array_resize(s, c, (uint16_t)(c->cap / 2));
    return true;
}

bool
aq_idset_has(const struct aq_idset *s, uint64_t id)
{
    unsigned v = (unsigned)(id & CHUNK_MASK);
    const struct chunk *c;
    size_t at, i;

    if (id == 0 || (c = dir_find(s, id >> CHUNK_BITS, &at)) == NULL)
        return false;
    if (c->cap == 0)
        return bit_has(c, v);
    i = array_lower(c, v);
    return i < c->n && cvals(c)[i] == v;
}

size_t
aq_idset_count(const struct aq_idset *s)
{
    return s->count;
}

uint64_t
aq_idset_next(const struct aq_idset *s, uint64_t after)
{
    uint64_t x, key;
    size_t i;
    int r;

    if (after == UINT64_MAX || s->count == 0)
        return 0;
    x = after + 1;
    key = x >> CHUNK_BITS;
    i = dir_lower(s, key);
    if (i < s->n && slot_at(s, i)->key == key) {
        if ((r = chunk_next(slot_at(s, i)->c, (unsigned)(x & CHUNK_MASK))) >= 0)
            return key << CHUNK_BITS | (unsigned)r;
        i++;
    }
    if (i == s->n)
        return 0;
    return slot_at(s, i)->key << CHUNK_BITS |
           (unsigned)chunk_next(slot_at(s, i)->c, 0);
}

uint64_t
aq_idset_prev(const struct aq_idset *s, uint64_t before)
{
    uint64_t x = before != 0 ? before - 1 : UINT64_MAX, key;
    size_t i;
    int r;

    if (x == 0 || s->count == 0)
        return 0;
    key = x >> CHUNK_BITS;
    i = dir_lower(s, key + 1); /* the first slot past key */
    if (i == 0)
        return 0;
    i--;
    if (slot_at(s, i)->key == key) {
        if ((r = chunk_prev(slot_at(s, i)->c, (unsigned)(x & CHUNK_MASK))) >= 0)
            return key << CHUNK_BITS | (unsigned)r;
        if (i == 0)
            return 0;
        i--;
    }
    return slot_at(s, i)->key << CHUNK_BITS |
           (unsigned)chunk_prev(slot_at(s, i)->c, CHUNK_MASK);
}

size_t
aq_idset_bytes(const struct aq_idset *s)
{
    return sizeof *s + s->cap * sizeof *s->dir + s->chunk_bytes;
}
