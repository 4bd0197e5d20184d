/* SPDX-License-Identifier: MIT */
/*
 * tests/test_history.c: the contract of lib/history.h's rings: a queue's
 * first note is only its base, later notes count what the totals grew by
 * into the last complete second, skipped seconds count 0, samples come
 * oldest first and at most AQ_HISTORY_SECONDS back, counters saturate,
 * and queues noted in any order keep their own counts.
 */
#include <check.h>
#include <stdint.h>

#include "history.h"
#include "suites.h"
#include "testutil.h"

#define N AQ_HISTORY_SECONDS

static uint32_t done[N], failed[N];

static void
samples(struct aq_history *h, const char *queue, size_t n)
{
    aq_history_samples(h, queue, n, done, failed);
}

START_TEST(a_new_history_is_all_zeros_up_to_its_end)
{
    struct aq_history *h = aq_history_new(1000);

    ck_assert_int_eq(aq_history_end(h), 1000);
    done[N - 1] = failed[0] = 7;
    samples(h, "default", N);
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(done[i], 0);
        ck_assert_uint_eq(failed[i], 0);
    }
    aq_history_free(h);
}
END_TEST

START_TEST(the_first_note_is_the_base_and_later_ones_count_the_growth)
{
    struct aq_history *h = aq_history_new(100);

    aq_history_note(h, "q", 50, 4); /* done before the history began */
    samples(h, "q", 1);
    ck_assert_uint_eq(done[0], 0);
    aq_history_note(h, "q", 53, 4);
    aq_history_advance(h, 101);
    aq_history_note(h, "q", 55, 6);
    aq_history_note(h, "q", 56, 6); /* two notes in one second add up */
    samples(h, "q", 3);
    ck_assert_uint_eq(done[0], 0); /* second 99 */
    ck_assert_uint_eq(done[1], 3); /* 100 */
    ck_assert_uint_eq(done[2], 3); /* 101 */
    ck_assert_uint_eq(failed[1], 0);
    ck_assert_uint_eq(failed[2], 2);
    aq_history_free(h);
}
END_TEST

START_TEST(skipped_seconds_count_zero_and_old_ones_fall_off)
{
    struct aq_history *h = aq_history_new(0);

    aq_history_note(h, "q", 0, 0);
    for (int64_t s = 1; s <= 2 * N; s++) {
        aq_history_advance(h, s);
        aq_history_note(h, "q", (uint64_t)s, 0); /* one a second */
    }
    samples(h, "q", N);
    for (size_t i = 0; i < N; i++)
        ck_assert_uint_eq(done[i], 1);
    /* The loop stalled for 5 s: those seconds are 0, the growth is in
     * the last one. */
    aq_history_advance(h, 2 * N + 5);
    aq_history_note(h, "q", 2 * N + 5, 0);
    ck_assert_int_eq(aq_history_end(h), 2 * N + 5);
    samples(h, "q", 6);
    ck_assert_uint_eq(done[0], 1);
    for (size_t i = 1; i < 5; i++)
        ck_assert_uint_eq(done[i], 0);
    ck_assert_uint_eq(done[5], 5);
    /* Longer than the ring: all gone. */
    aq_history_advance(h, 10 * N);
    samples(h, "q", N);
    for (size_t i = 0; i < N; i++)
        ck_assert_uint_eq(done[i], 0);
    aq_history_free(h);
}
END_TEST

START_TEST(a_clock_going_back_keeps_counting_into_the_last_second)
{
    struct aq_history *h = aq_history_new(500);

    aq_history_note(h, "q", 0, 0);
    aq_history_note(h, "q", 2, 0);
    aq_history_advance(h, 400);
    aq_history_note(h, "q", 3, 0);
    ck_assert_int_eq(aq_history_end(h), 500);
    samples(h, "q", 2);
    ck_assert_uint_eq(done[0], 0);
    ck_assert_uint_eq(done[1], 3);
    aq_history_free(h);
}
END_TEST

START_TEST(counts_saturate_and_totals_going_down_count_nothing)
{
    struct aq_history *h = aq_history_new(7);

    aq_history_note(h, "q", 0, 10);
    aq_history_note(h, "q", UINT64_C(1) << 40, 5);
    samples(h, "q", 1);
    ck_assert_uint_eq(done[0], UINT32_MAX);
    ck_assert_uint_eq(failed[0], 0);
    aq_history_note(h, "q", (UINT64_C(1) << 40) + 1, 6);
    samples(h, "q", 1);
    ck_assert_uint_eq(done[0], UINT32_MAX);
    ck_assert_uint_eq(failed[0], 1);
    aq_history_free(h);
}
END_TEST

START_TEST(queues_keep_their_own_counts_whatever_the_order_of_notes)
{
    struct aq_history *h = aq_history_new(10);
    static const char *const names[] = {"a", "b", "c"};

    for (size_t i = 0; i < 3; i++)
        aq_history_note(h, names[i], 0, 0);
    aq_history_advance(h, 11);
    aq_history_note(h, "c", 30, 3);
    aq_history_note(h, "a", 10, 1);
    aq_history_note(h, "b", 20, 2);
    aq_history_note(h, "d", 99, 99); /* new: its base */
    for (size_t i = 0; i < 3; i++) {
        samples(h, names[i], 2);
        ck_assert_uint_eq(done[0], 0);
        ck_assert_uint_eq(done[1], 10 * (i + 1));
        ck_assert_uint_eq(failed[1], i + 1);
    }
    samples(h, "d", 1);
    ck_assert_uint_eq(done[0], 0);
    samples(h, "nowhere", 1);
    ck_assert_uint_eq(done[0], 0);
    aq_history_free(h);
}
END_TEST

Suite *
history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = test_tcase_new("history");

    tcase_add_test(tc, a_new_history_is_all_zeros_up_to_its_end);
    tcase_add_test(tc,
                   the_first_note_is_the_base_and_later_ones_count_the_growth);
    tcase_add_test(tc, skipped_seconds_count_zero_and_old_ones_fall_off);
    tcase_add_test(tc, a_clock_going_back_keeps_counting_into_the_last_second);
    tcase_add_test(tc, counts_saturate_and_totals_going_down_count_nothing);
    tcase_add_test(tc,
                   queues_keep_their_own_counts_whatever_the_order_of_notes);
    suite_add_tcase(s, tc);
    return s;
}
