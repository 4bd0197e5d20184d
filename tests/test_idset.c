/* SPDX-License-Identifier: MIT */
/*
 * tests/test_idset.c: the contract of lib/idset.h: membership, counts,
 * next/prev walks in both directions, across chunks, through the array
 * and bitmap forms (and back), ids far apart and out of order; then a
 * randomized run against a plain sorted array, bounded in steps.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idset.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"

#define CHUNK_IDS 4096 /* ids per chunk of lib/idset.c */

START_TEST(added_ids_are_members_until_deleted)
{
    struct aq_idset *s = aq_idset_new();

    ck_assert_uint_eq(aq_idset_count(s), 0);
    ck_assert_uint_eq(aq_idset_next(s, 0), 0);
    ck_assert_uint_eq(aq_idset_prev(s, 0), 0);
    ck_assert(!aq_idset_add(s, 0));
    ck_assert(aq_idset_add(s, 7));
    ck_assert(!aq_idset_add(s, 7));
    ck_assert(aq_idset_add(s, 3));
    ck_assert(aq_idset_has(s, 7) && aq_idset_has(s, 3));
    ck_assert(!aq_idset_has(s, 5) && !aq_idset_has(s, 0));
    ck_assert_uint_eq(aq_idset_count(s), 2);
    ck_assert(!aq_idset_del(s, 5));
    ck_assert(aq_idset_del(s, 7));
    ck_assert(!aq_idset_del(s, 7));
    ck_assert(!aq_idset_has(s, 7));
    ck_assert_uint_eq(aq_idset_count(s), 1);
    ck_assert(aq_idset_del(s, 3));
    ck_assert_uint_eq(aq_idset_count(s), 0);
    ck_assert_uint_eq(aq_idset_next(s, 0), 0);
    aq_idset_free(s);
    aq_idset_free(NULL);
}
END_TEST

START_TEST(next_and_prev_walk_in_order_across_chunks)
{
    struct aq_idset *s = aq_idset_new();
    const uint64_t ids[] = {1,
                            2,
                            CHUNK_IDS - 1,
                            CHUNK_IDS,
                            5 * CHUNK_IDS + 17,
                            UINT64_C(1) << 40,
                            UINT64_MAX - 1,
                            UINT64_MAX};
    const size_t n = sizeof ids / sizeof ids[0];

    for (size_t i = n; i-- > 0;)
        ck_assert(aq_idset_add(s, ids[i]));
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(aq_idset_next(s, i == 0 ? 0 : ids[i - 1]), ids[i]);
        ck_assert_uint_eq(aq_idset_next(s, ids[i] - 1), ids[i]);
        ck_assert_uint_eq(aq_idset_prev(s, i + 1 < n ? ids[i + 1] : 0), ids[i]);
        if (ids[i] != UINT64_MAX)
            ck_assert_uint_eq(aq_idset_prev(s, ids[i] + 1), ids[i]);
    }
    ck_assert_uint_eq(aq_idset_next(s, UINT64_MAX), 0);
    ck_assert_uint_eq(aq_idset_prev(s, 1), 0);
    ck_assert_uint_eq(aq_idset_prev(s, 2), 1);
    ck_assert_uint_eq(aq_idset_next(s, 3), CHUNK_IDS - 1);
    ck_assert_uint_eq(aq_idset_prev(s, 5 * CHUNK_IDS), CHUNK_IDS);
    aq_idset_free(s);
}
END_TEST

/* A dense run turns chunks into bitmaps: about a bit per id; emptied from
 * the front (as jobs leave a state), the set shrinks back. */
START_TEST(dense_runs_cost_about_a_bit_per_id)
{
    struct aq_idset *s = aq_idset_new();
    const uint64_t n = 1000000;
    size_t empty = aq_idset_bytes(s);

    for (uint64_t id = 1; id <= n; id++)
        ck_assert(aq_idset_add(s, id));
    ck_assert_uint_eq(aq_idset_count(s), n);
    ck_assert_uint_lt(aq_idset_bytes(s), n / 8 * 12 / 10); /* < 1.2 bit */
    for (uint64_t id = 1; id <= n; id += 97) {
        ck_assert_uint_eq(aq_idset_next(s, id - 1), id);
        ck_assert_uint_eq(aq_idset_prev(s, id + 1), id);
    }
    ck_assert_uint_eq(aq_idset_prev(s, 0), n);
    for (uint64_t id = 1; id <= n; id++) {
        if (!aq_idset_del(s, id))
            ck_abort_msg("id %llu missing", (unsigned long long)id);
        if (id % 50000 == 0 && id < n && aq_idset_next(s, 0) != id + 1)
            ck_abort_msg("after deleting up to %llu: next %llu",
                         (unsigned long long)id,
                         (unsigned long long)aq_idset_next(s, 0));
    }
    ck_assert_uint_eq(aq_idset_count(s), 0);
    ck_assert_uint_le(aq_idset_bytes(s), empty + 8192); /* directory */
    aq_idset_free(s);
}
END_TEST

/* One chunk grows from an array into a bitmap and back, holding the same
 * ids all along (in a set of enough chunks that sparse ones are arrays). */
START_TEST(a_chunk_changes_form_and_keeps_its_ids)
{
    struct aq_idset *s = aq_idset_new();
    size_t bitmap_bytes;

    for (uint64_t k = 10; k < 16; k++)
        aq_idset_add(s, k * CHUNK_IDS + 1);

    for (uint64_t v = 0; v < CHUNK_IDS; v += 3)
        aq_idset_add(s, CHUNK_IDS + v); /* 1366 ids: a bitmap */
    ck_assert_uint_eq(aq_idset_count(s), 6 + (CHUNK_IDS + 2) / 3);
    bitmap_bytes = aq_idset_bytes(s);
    for (uint64_t v = 0; v < CHUNK_IDS; v += 3) {
        if (v % 300 != 0)
            ck_assert(aq_idset_del(s, CHUNK_IDS + v));
    }
    ck_assert_uint_eq(aq_idset_count(s), 6 + 14);
    ck_assert_uint_lt(aq_idset_bytes(s), bitmap_bytes - 256); /* an array */
    for (uint64_t v = 0, prev = 0; v < CHUNK_IDS; v += 300) {
        ck_assert_uint_eq(aq_idset_next(s, prev), CHUNK_IDS + v);
        prev = CHUNK_IDS + v;
        ck_assert(aq_idset_has(s, prev));
    }
    ck_assert_uint_eq(aq_idset_prev(s, 10 * CHUNK_IDS), CHUNK_IDS + 3900);
    aq_idset_free(s);
}
END_TEST

/* The reference: a sorted array of ids. */
struct ref {
    uint64_t *ids;
    size_t n;
};

static size_t
ref_lower(const struct ref *r, uint64_t id)
{
    size_t lo = 0, hi = r->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (r->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool
ref_add(struct ref *r, uint64_t id)
{
    size_t i = ref_lower(r, id);

    if (i < r->n && r->ids[i] == id)
        return false;
    memmove(&r->ids[i + 1], &r->ids[i], (r->n - i) * sizeof *r->ids);
    r->ids[i] = id;
    r->n++;
    return true;
}

static bool
ref_del(struct ref *r, uint64_t id)
{
    size_t i = ref_lower(r, id);

    if (i == r->n || r->ids[i] != id)
        return false;
    memmove(&r->ids[i], &r->ids[i + 1], (r->n - i - 1) * sizeof *r->ids);
    r->n--;
    return true;
}

static uint64_t
ref_next(const struct ref *r, uint64_t after)
{
    size_t i = after == UINT64_MAX ? r->n : ref_lower(r, after + 1);

    return i < r->n ? r->ids[i] : 0;
}

static uint64_t
ref_prev(const struct ref *r, uint64_t before)
{
    size_t i = before == 0 ? r->n : ref_lower(r, before);

    return i > 0 ? r->ids[i - 1] : 0;
}

/* Ids in a window that moves up like a job counter, with bursts of old
 * ids (retries) and the odd far one; every answer checked. */
START_TEST(random_operations_match_a_sorted_array)
{
    enum { STEPS = 400000, MAX_IDS = 60000 };
    struct rng rng = {.s = 13};
    struct ref ref = {calloc(MAX_IDS + 1, sizeof(uint64_t)), 0};
    struct aq_idset *s = aq_idset_new();
    uint64_t top = 1;

    for (long step = 0; step < STEPS; step++) {
        unsigned op = rng_below(&rng, 100);
        uint64_t id;

        if (rng_chance(&rng, 2))
            id = rng_next(&rng) | 1; /* far away */
        else if (rng_chance(&rng, 50))
            id = top - rng_below(&rng, 3 * CHUNK_IDS) % top; /* recent */
        else
            id = 1 + rng_below(&rng, (unsigned)top); /* any so far */
        if (op < 45 && ref.n < MAX_IDS) {
            if (aq_idset_add(s, id) != ref_add(&ref, id))
                ck_abort_msg("step %ld: add %llu disagrees", step,
                             (unsigned long long)id);
            top += rng_below(&rng, 3);
        } else if (op < 85) {
            if (aq_idset_del(s, id) != ref_del(&ref, id))
                ck_abort_msg("step %ld: del %llu disagrees", step,
                             (unsigned long long)id);
        } else if (op < 90) {
            if (aq_idset_has(s, id) != (ref_lower(&ref, id) < ref.n &&
                                        ref.ids[ref_lower(&ref, id)] == id))
                ck_abort_msg("step %ld: has %llu disagrees", step,
                             (unsigned long long)id);
        } else if (op < 95) {
            if (aq_idset_next(s, id) != ref_next(&ref, id))
                ck_abort_msg("step %ld: next(%llu) %llu, expected %llu", step,
                             (unsigned long long)id,
                             (unsigned long long)aq_idset_next(s, id),
                             (unsigned long long)ref_next(&ref, id));
        } else {
            if (rng_chance(&rng, 5))
                id = 0;
            if (aq_idset_prev(s, id) != ref_prev(&ref, id))
                ck_abort_msg("step %ld: prev(%llu) %llu, expected %llu", step,
                             (unsigned long long)id,
                             (unsigned long long)aq_idset_prev(s, id),
                             (unsigned long long)ref_prev(&ref, id));
        }
        if (aq_idset_count(s) != ref.n)
            ck_abort_msg("step %ld: count %zu, expected %zu", step,
                         aq_idset_count(s), ref.n);
    }
    /* A whole walk each way visits exactly the reference. */
    uint64_t id = 0;
    for (size_t i = 0; i < ref.n; i++) {
        id = aq_idset_next(s, id);
        if (id != ref.ids[i])
            ck_abort_msg("walk: %zu-th id %llu, expected %llu", i,
                         (unsigned long long)id,
                         (unsigned long long)ref.ids[i]);
    }
    ck_assert_uint_eq(aq_idset_next(s, id), 0);
    id = 0;
    for (size_t i = ref.n; i-- > 0;) {
        id = aq_idset_prev(s, id);
        if (id != ref.ids[i])
            ck_abort_msg("reverse walk: id %llu, expected %llu",
                         (unsigned long long)id,
                         (unsigned long long)ref.ids[i]);
    }
    aq_idset_free(s);
    free(ref.ids);
}
END_TEST

Suite *
idset_suite(void)
{
    Suite *s = suite_create("idset");
    TCase *tc = test_tcase_new("idset");

    tcase_add_test(tc, added_ids_are_members_until_deleted);
    tcase_add_test(tc, next_and_prev_walk_in_order_across_chunks);
    tcase_add_test(tc, a_chunk_changes_form_and_keeps_its_ids);
    tcase_add_test(tc, random_operations_match_a_sorted_array);
    suite_add_tcase(s, tc);
    /* A million ids added and deleted one by one: seconds under ASan on
     * a loaded machine, past the default 10 s. */
    tc = test_tcase_new("idset-million");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, dense_runs_cost_about_a_bit_per_id);
    suite_add_tcase(s, tc);
    return s;
}
