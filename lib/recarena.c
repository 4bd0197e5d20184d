/* SPDX-License-Identifier: MIT */
/*
 * lib/recarena.c: see recarena.h. A chunk is CHUNK bytes at a CHUNK-aligned
 * address, so a block finds its chunk by masking. Allocation bumps through
 * the current chunk; a full one is left to drain and a new one taken. A
 * chunk whose live count drops to zero is kept as a spare while there are
 * fewer than SPARES (the next new chunk is a spare: its pages are already
 * resident, so a steady stream of records evicted oldest first costs no
 * mmap, munmap or page fault), else unmapped; the current one starts over.
 */
#include "recarena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/queue.h>

#include "xmalloc.h"

#define CHUNK ((size_t)64 * 1024)
#define ALIGN 16
#define SPARES 4 /* drained chunks kept for reuse: 256 KiB at most */

struct chunk {
    struct aq_recarena *arena;
    size_t used; /* bytes from the chunk's start, header included */
    size_t live; /* blocks not released */
};

struct aq_recarena {
    struct chunk *cur; /* NULL until the first allocation */
    size_t nchunks;    /* mapped, spares included */
    struct chunk *spare[SPARES];
    size_t nspare;
};

#define HEADER ((sizeof(struct chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

/* A size-aligned mapping of size bytes (a power of two): map twice the
 * size, unmap the misaligned ends. NULL if mapping failed. */
static void *
map_aligned(size_t size)
{
    char *p = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uintptr_t start, end;

    if (p == MAP_FAILED)
        return NULL;
    start = ((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1);
    end = start + size;
    if (start > (uintptr_t)p)
        munmap(p, start - (uintptr_t)p);
    if ((uintptr_t)p + 2 * size > end)
        munmap((void *)end, (uintptr_t)p + 2 * size - end);
    return (void *)start;
}

static void
chunk_unmap(struct chunk *c)
{
    c->arena->nchunks--;
    munmap(c, CHUNK);
}

/* c has drained and is not current: a spare, or gone. */
static void
chunk_retire(struct chunk *c)
{
    struct aq_recarena *a = c->arena;

    if (a->nspare < SPARES)
        a->spare[a->nspare++] = c;
    else
        chunk_unmap(c);
}

static struct chunk *
chunk_map(struct aq_recarena *a)
{
    struct chunk *c;

    if (a->nspare > 0) {
        c = a->spare[--a->nspare];
        c->used = HEADER;
        return c;
    }
    if ((c = map_aligned(CHUNK)) == NULL)
        return NULL;
    a->nchunks++;
    c->arena = a;
    c->used = HEADER;
    c->live = 0;
    return c;
}

struct aq_recarena *
aq_recarena_new(void)
{
    return xcalloc(1, sizeof(struct aq_recarena));
}

void
aq_recarena_free(struct aq_recarena *a)
{
    if (a == NULL)
        return;
    /* Chunks still holding records are the caller's leak to avoid; only
     * the current one is known here. */
    if (a->cur != NULL)
        chunk_unmap(a->cur);
    while (a->nspare > 0)
        chunk_unmap(a->spare[--a->nspare]);
    free(a);
}

void *
aq_recarena_alloc(struct aq_recarena *a, size_t n)
{
    struct chunk *c = a->cur;
    void *p;

    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (n > CHUNK - HEADER)
        return NULL;
    if (c == NULL || c->used + n > CHUNK) {
        struct chunk *fresh = chunk_map(a);

        if (fresh == NULL)
            return NULL;
        /* The old current chunk drains on its own; if it already has, it
         * goes now. */
        if (c != NULL && c->live == 0)
            chunk_retire(c);
        a->cur = c = fresh;
    }
    p = (char *)c + c->used;
    c->used += n;
    c->live++;
    return p;
}

void
aq_recarena_release(void *p)
{
    struct chunk *c = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(CHUNK - 1));

    if (--c->live > 0)
        return;
    if (c == c->arena->cur)
        c->used = HEADER; /* empty: start over in place */
    else
        chunk_retire(c);
}

size_t
aq_recarena_mapped(const struct aq_recarena *a)
{
    return a->nchunks * CHUNK;
}

/* Slabs. A slab chunk is SLAB_CHUNK bytes at a SLAB_CHUNK-aligned address
 * (a block finds its chunk by masking), cut into blocks of one size: never
 * used ones from bump on, released ones on the chunk's free list (linked
 * through their first word). Chunks with room are on their size's list,
 * the one given back to last first, so the blocks in use gather in few
 * chunks; a full chunk is on none.
 * Chunks are cut from regions of SLAB_REGION bytes, one mapping each: a
 * million queued jobs take ~90 mappings, not ~5,700 (the kernel allows a
 * process 65,530, vm.max_map_count). A chunk given back has its pages
 * dropped (MADV_DONTNEED: RSS comes back, the mapping stays); a region is
 * unmapped once none of its chunks is in use. Regions after the first get
 * transparent huge pages; drained chunks are kept as spares only from
 * regions without, so that a drained backlog leaves no huge page pinned. */
#define SLAB_CHUNK ((size_t)32 * 1024)
#define SLAB_REGION ((size_t)2 * 1024 * 1024)
_Static_assert(SLAB_REGION / SLAB_CHUNK == 64, "a region's chunks: 64 bits");
#define SLAB_GRAIN 8
#define SLAB_CLASSES (AQ_SLAB_MAX / SLAB_GRAIN)
#define SLAB_SPARES 4 /* drained chunks kept for reuse: 128 KiB at most */

struct slab_region {
    LIST_ENTRY(slab_region) link; /* on slabs.regions while it has room */
    char *base;                   /* SLAB_REGION bytes, mapped */
    uint64_t used;                /* bit i: chunk i handed out */
    bool is_huge;                 /* transparent huge pages advised */
};

struct slab_chunk {
    LIST_ENTRY(slab_chunk) link; /* on its size's list while it has room */
    struct slab_region *region;  /* the region it was cut from */
    void *free;                  /* released blocks */
    uint32_t size;               /* of its blocks */
    uint32_t bump;               /* offset of the first never used block */
    uint32_t live;               /* blocks not released */
    uint8_t has_room;            /* on its size's list */
};

#define SLAB_HEADER                                                            \
    ((sizeof(struct slab_chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

struct slabs {
    LIST_HEAD(, slab_chunk) room[SLAB_CLASSES + 1]; /* by size / SLAB_GRAIN */
    LIST_HEAD(, slab_region) regions; /* those with a chunk not in use */
    struct slab_chunk *spare[SLAB_SPARES];
    size_t nspare;
    size_t nchunks;  /* in use, spares included */
    size_t nregions; /* mapped */
};

static _Thread_local struct slabs slabs;

/* A chunk not in use, cut from a region with room or a new region; NULL
 * if mapping failed. The chunk's pages may be resident or not. */
static struct slab_chunk *
region_take(void)
{
    struct slab_region *r = LIST_FIRST(&slabs.regions);
    struct slab_chunk *c;
    int i;

    if (r == NULL) {
        if ((r = calloc(1, sizeof *r)) == NULL)
            return NULL;
        if ((r->base = map_aligned(SLAB_REGION)) == NULL) {
            free(r);
            return NULL;
        }
        /* A growing backlog: one page fault per region rather than per
         * 4 KiB where the system has transparent huge pages (advice, so
         * no error). Not the first region: a huge page is resident
         * whole, and the few chunks a short queue uses, and the spares,
         * must not keep 2 MiB. */
        if (slabs.nregions > 0 &&
            madvise(r->base, SLAB_REGION, MADV_HUGEPAGE) == 0)
            r->is_huge = true;
        slabs.nregions++;
        LIST_INSERT_HEAD(&slabs.regions, r, link);
    }
    i = __builtin_ctzll(~r->used);
    r->used |= (uint64_t)1 << i;
    if (r->used == UINT64_MAX)
        LIST_REMOVE(r, link);
    c = (struct slab_chunk *)(r->base + (size_t)i * SLAB_CHUNK);
    c->region = r;
    return c;
}

/* Gives c back to its region: its pages dropped, or the region unmapped
 * when it was the last chunk in use. */
static void
region_give(struct slab_chunk *c)
{
    struct slab_region *r = c->region;
    int i = (int)(((char *)c - r->base) / SLAB_CHUNK);

    if (r->used == UINT64_MAX)
        LIST_INSERT_HEAD(&slabs.regions, r, link);
    r->used &= ~((uint64_t)1 << i);
    if (r->used == 0) {
        LIST_REMOVE(r, link);
        munmap(r->base, SLAB_REGION);
        free(r);
        slabs.nregions--;
        return;
    }
    madvise(c, SLAB_CHUNK, MADV_DONTNEED);
}

static bool
slab_full(const struct slab_chunk *c)
{
    return c->free == NULL && c->bump + c->size > SLAB_CHUNK;
}

static struct slab_chunk *
slab_chunk_new(uint32_t size)
{
    struct slab_chunk *c;

    if (slabs.nspare > 0) {
        c = slabs.spare[--slabs.nspare];
    } else {
        if ((c = region_take()) == NULL)
            return NULL;
        slabs.nchunks++;
    }
    c->free = NULL;
    c->size = size;
    c->bump = SLAB_HEADER;
    c->live = 0;
    c->has_room = 1;
    LIST_INSERT_HEAD(&slabs.room[size / SLAB_GRAIN], c, link);
    return c;
}

void *
aq_slab_alloc(size_t n)
{
    struct slab_chunk *c;
    uint32_t size;
    void *p;

    if (n == 0 || n > AQ_SLAB_MAX)
        return NULL;
    size = (uint32_t)((n + SLAB_GRAIN - 1) & ~(size_t)(SLAB_GRAIN - 1));
    if ((c = LIST_FIRST(&slabs.room[size / SLAB_GRAIN])) == NULL &&
        (c = slab_chunk_new(size)) == NULL)
        return NULL;
    if (c->free != NULL) {
        p = c->free;
        c->free = *(void **)p;
    } else {
        p = (char *)c + c->bump;
        c->bump += size;
    }
    c->live++;
    if (slab_full(c)) {
        LIST_REMOVE(c, link);
        c->has_room = 0;
    }
    return p;
}

static struct slab_chunk *
slab_chunk_of(const void *p)
{
    return (struct slab_chunk *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK - 1));
}

void
aq_slab_release(void *p)
{
    struct slab_chunk *c = slab_chunk_of(p);

    *(void **)p = c->free;
    c->free = p;
    if (--c->live == 0) {
        /* Drained: a spare, or gone. */
        if (c->has_room)
            LIST_REMOVE(c, link);
        if (slabs.nspare < SLAB_SPARES && !c->region->is_huge) {
            slabs.spare[slabs.nspare++] = c;
        } else {
            slabs.nchunks--;
            region_give(c);
        }
        return;
    }
    if (!c->has_room) {
        c->has_room = 1;
        LIST_INSERT_HEAD(&slabs.room[c->size / SLAB_GRAIN], c, link);
    }
}

size_t
aq_slab_block_size(const void *p)
{
    return slab_chunk_of(p)->size;
}

size_t
aq_slab_mapped(void)
{
    return slabs.nchunks * SLAB_CHUNK;
}
