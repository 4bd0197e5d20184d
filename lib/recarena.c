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

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

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

/* A CHUNK-aligned mapping of CHUNK bytes: map twice the size, unmap the
 * misaligned ends. */
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
    char *p;
    uintptr_t start, end;
    struct chunk *c;

    if (a->nspare > 0) {
        c = a->spare[--a->nspare];
        c->used = HEADER;
        return c;
    }
    p = mmap(NULL, 2 * CHUNK, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    start = ((uintptr_t)p + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1);
    end = start + CHUNK;
    if (start > (uintptr_t)p)
        munmap(p, start - (uintptr_t)p);
    if ((uintptr_t)p + 2 * CHUNK > end)
        munmap((void *)end, (uintptr_t)p + 2 * CHUNK - end);
    c = (struct chunk *)start;
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
