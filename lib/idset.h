/* SPDX-License-Identifier: MIT */
/*
 * lib/idset.h: an ordered set of non-zero uint64 ids, for ids handed out by
 * a counter (the broker keeps one per queue and job state, so `list` walks
 * a page without a scan). Compressed like a roaring bitmap: ids go in
 * chunks of 4096 consecutive ids, each a sorted array of 16-bit offsets
 * while sparse or a 512-byte bitmap while dense, found through a sorted
 * directory. Dense runs cost about a bit per id; adds and deletes at
 * either end (the newest and oldest ids) are O(1). Pure: no I/O.
 */
#ifndef AQ_IDSET_H
#define AQ_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aq_idset;

struct aq_idset *aq_idset_new(void);
void aq_idset_free(struct aq_idset *s); /* NULL is fine */

/* Adds id (>= 1): true if it was not there. id 0 is refused (false). */
bool aq_idset_add(struct aq_idset *s, uint64_t id);
/* Removes id: true if it was there. */
bool aq_idset_del(struct aq_idset *s, uint64_t id);
bool aq_idset_has(const struct aq_idset *s, uint64_t id);
size_t aq_idset_count(const struct aq_idset *s);

/* The smallest id above after, or 0 if none. */
uint64_t aq_idset_next(const struct aq_idset *s, uint64_t after);
/* The largest id below before (before 0: the largest of all), or 0. */
uint64_t aq_idset_prev(const struct aq_idset *s, uint64_t before);

/* The bytes it holds on the heap (its directory and chunks). */
size_t aq_idset_bytes(const struct aq_idset *s);

#endif
