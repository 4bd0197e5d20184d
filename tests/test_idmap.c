/* SPDX-License-Identifier: MIT */
/*
 * tests/test_idmap.c: the contract of lib/idmap.h: a value filed under its
 * id is found until deleted, a second put replaces it, ids dense or far
 * apart coexist, and aq_idmap_each visits each value once. Pages come and
 * go as ids do; deletions in random order check that the hash still finds
 * every page left. Values far apart or unaligned share a page too.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"

#define PAGE_IDS 1024 /* ids per page of lib/idmap.c */

struct val {
    uint64_t id;
    int visits;
};

static uint64_t
key_of(const void *value)
{
    return ((const struct val *)value)->id;
}

/* A key read with memcpy: the value may be unaligned. */
static uint64_t
odd_key_of(const void *value)
{
    uint64_t id;

    memcpy(&id, value, sizeof id);
    return id;
}

static void
visit_cb(void *value, void *arg)
{
    ((struct val *)value)->visits++;
    (*(size_t *)arg)++;
}

START_TEST(put_value_is_found_until_deleted)
{
    struct aq_idmap *m = aq_idmap_new(key_of);
    struct val a = {.id = 7}, b = {.id = 8};

    ck_assert_ptr_null(aq_idmap_get(m, 7));
    ck_assert_ptr_null(aq_idmap_del(m, 7));
    aq_idmap_put(m, &a);
    aq_idmap_put(m, &b);
    ck_assert_ptr_eq(aq_idmap_get(m, 7), &a);
    ck_assert_ptr_eq(aq_idmap_get(m, 8), &b);
    ck_assert_ptr_null(aq_idmap_get(m, 9));
    ck_assert_ptr_eq(aq_idmap_del(m, 7), &a);
    ck_assert_ptr_null(aq_idmap_get(m, 7));
    ck_assert_ptr_null(aq_idmap_del(m, 7));
    ck_assert_ptr_eq(aq_idmap_get(m, 8), &b);
    aq_idmap_free(m);
    aq_idmap_free(NULL);
}
END_TEST

START_TEST(second_put_under_an_id_replaces_the_first)
{
    struct aq_idmap *m = aq_idmap_new(key_of);
    struct val a = {.id = 3}, a2 = {.id = 3};
    size_t n = 0;

    aq_idmap_put(m, &a);
    aq_idmap_put(m, &a2);
    ck_assert_ptr_eq(aq_idmap_get(m, 3), &a2);
    aq_idmap_each(m, visit_cb, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(a.visits, 0);
    ck_assert_ptr_eq(aq_idmap_del(m, 3), &a2);
    ck_assert_ptr_null(aq_idmap_get(m, 3));
    aq_idmap_free(m);
}
END_TEST

START_TEST(ids_far_apart_coexist)
{
    static const uint64_t ids[] = {
        1,         PAGE_IDS - 1, PAGE_IDS, UINT64_C(1) << 32, UINT64_C(1) << 63,
        UINT64_MAX};
    enum { N = sizeof ids / sizeof ids[0] };
    struct aq_idmap *m = aq_idmap_new(key_of);
    struct val v[N];
    size_t n = 0;

    for (size_t i = 0; i < N; i++) {
        v[i] = (struct val){.id = ids[i]};
        aq_idmap_put(m, &v[i]);
    }
    for (size_t i = 0; i < N; i++)
        ck_assert_ptr_eq(aq_idmap_get(m, ids[i]), &v[i]);
    ck_assert_ptr_null(aq_idmap_get(m, 2));
    ck_assert_ptr_null(aq_idmap_get(m, UINT64_MAX - 1));
    aq_idmap_each(m, visit_cb, &n);
    ck_assert_uint_eq(n, N);
    for (size_t i = 0; i < N; i++)
        ck_assert_int_eq(v[i].visits, 1);
    aq_idmap_free(m);
}
END_TEST

/* Dense runs of ids on many pages, deleted in random order: every value
 * left is found after each deletion, each visits each once, and the map
 * empties. */
START_TEST(values_deleted_in_any_order_leave_the_rest_found)
{
    enum { PAGES = 3000, PER_PAGE = 3, N = PAGES * PER_PAGE };
    struct aq_idmap *m = aq_idmap_new(key_of);
    struct val *v = calloc(N, sizeof *v);
    size_t *order = calloc(N, sizeof *order), n = 0;
    struct rng r = {0x1d3a9u};

    for (size_t i = 0; i < N; i++) {
        v[i].id = (uint64_t)(i / PER_PAGE) * PAGE_IDS + i % PER_PAGE + 1;
        aq_idmap_put(m, &v[i]);
        order[i] = i;
    }
    aq_idmap_each(m, visit_cb, &n);
    ck_assert_uint_eq(n, N);
    for (size_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
        size_t k = rng_below(&r, (unsigned)(i + 1)), t = order[i];

        order[i] = order[k];
        order[k] = t;
    }
    for (size_t i = 0; i < N; i++) {
        struct val *gone = &v[order[i]];

        ck_assert_ptr_eq(aq_idmap_del(m, gone->id), gone);
        if (i % 500 != 0)
            continue;
        /* No ck_assert per lookup: in fork mode each one costs a write. */
        for (size_t k = i + 1; k < N; k++) {
            if (aq_idmap_get(m, v[order[k]].id) != &v[order[k]])
                ck_abort_msg("id %llu lost after %zu deletions",
                             (unsigned long long)v[order[k]].id, i + 1);
        }
    }
    for (size_t i = 0; i < N; i++)
        ck_assert_ptr_null(aq_idmap_get(m, v[i].id));
    n = 0;
    aq_idmap_each(m, visit_cb, &n);
    ck_assert_uint_eq(n, 0);
    aq_idmap_free(m);
    free(order);
    free(v);
}
END_TEST

/* Values of one page far apart (the stack and the heap), below the first
 * one filed, or not 8-aligned: each still found, replaced and deleted. */
START_TEST(values_anywhere_in_memory_share_a_page)
{
    struct aq_idmap *m = aq_idmap_new(key_of);
    struct val *heap = calloc(4, sizeof *heap), local = {.id = 5}, *odd;
    unsigned char *buf = calloc(1, 2 * sizeof(struct val) + 1);
    size_t n = 0;

    odd = (struct val *)(buf + 1); /* read through key_of only: memcpy */
    heap[1].id = 2;
    heap[0].id = 1;
    aq_idmap_put(m, &heap[1]);
    aq_idmap_put(m, &heap[0]); /* below the first one */
    ck_assert_ptr_eq(aq_idmap_get(m, 1), &heap[0]);
    ck_assert_ptr_eq(aq_idmap_get(m, 2), &heap[1]);
    aq_idmap_put(m, &local); /* far from the heap */
    ck_assert_ptr_eq(aq_idmap_get(m, 5), &local);
    ck_assert_ptr_eq(aq_idmap_get(m, 1), &heap[0]);
    ck_assert_ptr_eq(aq_idmap_get(m, 2), &heap[1]);
    heap[2].id = 2;
    aq_idmap_put(m, &heap[2]); /* replaces heap[1] */
    ck_assert_ptr_eq(aq_idmap_get(m, 2), &heap[2]);
    aq_idmap_each(m, visit_cb, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_ptr_eq(aq_idmap_del(m, 5), &local);
    ck_assert_ptr_eq(aq_idmap_del(m, 1), &heap[0]);
    ck_assert_ptr_eq(aq_idmap_del(m, 2), &heap[2]);
    ck_assert_ptr_null(aq_idmap_get(m, 2));
    aq_idmap_free(m);

    /* An unaligned value on a fresh page, after an aligned one. */
    m = aq_idmap_new(odd_key_of);
    heap[3].id = 9;
    aq_idmap_put(m, &heap[3]);
    memcpy(buf + 1, &(uint64_t){10}, sizeof(uint64_t));
    aq_idmap_put(m, odd);
    ck_assert_ptr_eq(aq_idmap_get(m, 9), &heap[3]);
    ck_assert_ptr_eq(aq_idmap_get(m, 10), odd);
    ck_assert_ptr_eq(aq_idmap_del(m, 10), odd);
    ck_assert_ptr_eq(aq_idmap_del(m, 9), &heap[3]);
    aq_idmap_free(m);
    free(buf);
    free(heap);
}
END_TEST

Suite *
idmap_suite(void)
{
    Suite *s = suite_create("idmap");
    TCase *tc = test_tcase_new("idmap");

    tcase_add_test(tc, put_value_is_found_until_deleted);
    tcase_add_test(tc, second_put_under_an_id_replaces_the_first);
    tcase_add_test(tc, ids_far_apart_coexist);
    tcase_add_test(tc, values_deleted_in_any_order_leave_the_rest_found);
    tcase_add_test(tc, values_anywhere_in_memory_share_a_page);
    suite_add_tcase(s, tc);
    return s;
}
