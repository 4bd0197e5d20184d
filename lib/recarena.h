/* SPDX-License-Identifier: MIT */
/*
 * lib/recarena.h: storage for finished job records. Records are kept in
 * finish order and dropped mostly oldest first (results.ttl, results.max),
 * so they are packed into 64 KiB chunks of their own, mapped from the
 * system and unmapped as soon as every record in a chunk is gone (but
 * for a few spare chunks kept for reuse, 256 KiB at most). Kept in
 * malloc's heap instead, each record pinned the page it landed on, and a
 * few thousand records spread over a drained backlog's heap kept it all
 * resident.
 */
#ifndef AQ_RECARENA_H
#define AQ_RECARENA_H

#include <stddef.h>

struct aq_recarena;

/* A new, empty arena (the caller's; free with aq_recarena_free). */
struct aq_recarena *aq_recarena_new(void);
/* Unmaps every chunk; blocks not released become invalid. NULL is fine. */
void aq_recarena_free(struct aq_recarena *a);

/* n bytes, 16-aligned, or NULL if n is more than a chunk can hold (the
 * caller keeps such a record where it is) or mapping failed. */
void *aq_recarena_alloc(struct aq_recarena *a, size_t n);
/* Gives back a block of aq_recarena_alloc (its chunk is found from the
 * address). */
void aq_recarena_release(void *p);
/* Bytes mapped now (whole chunks), for tests and statistics. */
size_t aq_recarena_mapped(const struct aq_recarena *a);

/*
 * Slabs, for queued jobs: blocks of one size (n rounded up to 8) are cut
 * from 32 KiB chunks of their own, with no per-block header, and a block
 * given back is reused by the next of its size (a queue's jobs do not all
 * leave in the order they came: priorities, delays, retries). A chunk's
 * pages go back to the system once its last block is released (but for a
 * few spare chunks, 128 KiB at most); chunks are cut from 2 MiB mappings,
 * so a large backlog takes few of the process's mappings. The slabs
 * belong to the calling thread: a block is released by the thread that
 * allocated it.
 */
#define AQ_SLAB_MAX 1024 /* the largest block a slab gives */

/* n bytes (0 < n <= AQ_SLAB_MAX), 8-aligned, or NULL if n is out of range
 * or mapping failed (the caller uses malloc instead). */
void *aq_slab_alloc(size_t n);
/* Gives back a block of aq_slab_alloc. */
void aq_slab_release(void *p);
/* The bytes a block of aq_slab_alloc occupies (n rounded up). */
size_t aq_slab_block_size(const void *p);
/* Bytes of the calling thread's slab chunks in use, spares included. */
size_t aq_slab_mapped(void);

#endif
