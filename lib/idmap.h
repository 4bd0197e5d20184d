/* SPDX-License-Identifier: MIT */
/*
 * lib/idmap.h: a map from non-zero uint64 ids to pointers, for ids handed
 * out by a counter: pages of pointers indexed by id, found by page number
 * in a small hash. 4 bytes per live id when ids are dense and the values
 * made around the same time lie near each other (8 when not); O(1)
 * lookups.
 * What the pointers point to stays its owner's.
 */
#ifndef AQ_IDMAP_H
#define AQ_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct aq_idmap;

/* key_of(value) returns the id a value is filed under (read at put). */
typedef uint64_t aq_idmap_key_fn(const void *value);

struct aq_idmap *aq_idmap_new(aq_idmap_key_fn *key_of);
void aq_idmap_free(struct aq_idmap *m); /* NULL is fine; values untouched */

/* Files value under key_of(value), replacing any value with that id. */
void aq_idmap_put(struct aq_idmap *m, void *value);
void *aq_idmap_get(const struct aq_idmap *m, uint64_t id); /* or NULL */
void *aq_idmap_del(struct aq_idmap *m, uint64_t id); /* removed, or NULL */

/* Calls fn on every value (in no order); fn must not change the map. */
void aq_idmap_each(const struct aq_idmap *m, void (*fn)(void *value, void *arg),
                   void *arg);

#endif
