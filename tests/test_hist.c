/* SPDX-License-Identifier: MIT */
/*
 * tests/test_hist.c: the contract of lib/hist.h: values below 8 us are
 * exact, larger ones land in a bucket whose upper bound is at most 12.5%
 * above them, quantiles name the bucket of the value at their rank, and
 * count_le counts whole buckets.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "hist.h"
#include "suites.h"
#include "testutil.h"

/* The bound a histogram holding only v reports for it. */
static int64_t
upper_of(int64_t v)
{
    struct aq_hist h;

    memset(&h, 0, sizeof h);
    aq_hist_add(&h, v);
    return aq_hist_quantile(&h, 0.5);
}

START_TEST(empty_histogram_has_quantile_zero_and_counts_nothing)
{
    struct aq_hist h;

    memset(&h, 0, sizeof h);
    ck_assert_int_eq(aq_hist_quantile(&h, 0.5), 0);
    ck_assert_int_eq(aq_hist_quantile(&h, 1.0), 0);
    ck_assert_uint_eq(aq_hist_count_le(&h, INT64_MAX), 0);
}
END_TEST

START_TEST(values_below_eight_are_exact_and_negative_ones_count_as_zero)
{
    struct aq_hist h;

    for (int64_t v = 0; v < AQ_HIST_SUB; v++)
        ck_assert_int_eq(upper_of(v), v);
    memset(&h, 0, sizeof h);
    aq_hist_add(&h, -5);
    ck_assert_uint_eq(h.count, 1);
    ck_assert_int_eq(h.sum_us, 0);
    ck_assert_int_eq(aq_hist_quantile(&h, 0.5), 0);
}
END_TEST

START_TEST(a_value_reads_back_at_most_an_eighth_above_itself)
{
    /* Every power of two and its neighbours, up to the last bucket. */
    for (int shift = 3; shift < 41; shift++) {
        for (int64_t d = -1; d <= 1; d++) {
            int64_t v = (INT64_C(1) << shift) + d;
            int64_t up = upper_of(v);

            ck_assert_msg(up >= v && up - v <= v / 8,
                          "%lld us reads back as %lld", (long long)v,
                          (long long)up);
        }
    }
    for (int64_t v = 8; v < 5000; v++) {
        int64_t up = upper_of(v);

        ck_assert_msg(up >= v && up - v <= v / 8, "%lld us reads back as %lld",
                      (long long)v, (long long)up);
    }
}
END_TEST

START_TEST(values_past_the_last_bucket_read_as_its_bound)
{
    int64_t last = (INT64_C(1) << 41) - 1;

    ck_assert_int_eq(upper_of(last), last);
    ck_assert_int_eq(upper_of(INT64_C(1) << 45), last);
    ck_assert_int_eq(upper_of(INT64_MAX), last);
}
END_TEST

START_TEST(quantile_is_the_bound_of_the_value_at_its_rank)
{
    static const double qs[] = {0, 0.25, 0.5, 0.9, 0.99, 1.0};
    struct aq_hist h;

    memset(&h, 0, sizeof h);
    for (int64_t v = 1; v <= 100; v++)
        aq_hist_add(&h, v);
    ck_assert_uint_eq(h.count, 100);
    ck_assert_int_eq(h.sum_us, 5050);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        /* rank floor(q * count), the last one for q = 1 */
        int64_t rank = (int64_t)(qs[i] * 100);
        int64_t at = (rank < 100 ? rank : 99) + 1; /* values are 1..100 */

        ck_assert_msg(aq_hist_quantile(&h, qs[i]) == upper_of(at),
                      "quantile %g: %lld, want the bound of %lld", qs[i],
                      (long long)aq_hist_quantile(&h, qs[i]), (long long)at);
    }
}
END_TEST

START_TEST(count_le_counts_the_buckets_whose_bound_is_not_above)
{
    struct aq_hist h;

    memset(&h, 0, sizeof h);
    for (int64_t v = 1; v <= 100; v++)
        aq_hist_add(&h, v);
    ck_assert_uint_eq(aq_hist_count_le(&h, 0), 0);
    ck_assert_uint_eq(aq_hist_count_le(&h, 7), 7);
    /* 88..95 share a bucket with bound 95; 96..103 one with bound 103 */
    ck_assert_uint_eq(aq_hist_count_le(&h, 94), 87);
    ck_assert_uint_eq(aq_hist_count_le(&h, 95), 95);
    ck_assert_uint_eq(aq_hist_count_le(&h, 100), 95);
    ck_assert_uint_eq(aq_hist_count_le(&h, 103), 100);
    ck_assert_uint_eq(aq_hist_count_le(&h, INT64_MAX), 100);
}
END_TEST

Suite *
hist_suite(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = test_tcase_new("hist");

    tcase_add_test(tc, empty_histogram_has_quantile_zero_and_counts_nothing);
    tcase_add_test(
        tc, values_below_eight_are_exact_and_negative_ones_count_as_zero);
    tcase_add_test(tc, a_value_reads_back_at_most_an_eighth_above_itself);
    tcase_add_test(tc, values_past_the_last_bucket_read_as_its_bound);
    tcase_add_test(tc, quantile_is_the_bound_of_the_value_at_its_rank);
    tcase_add_test(tc, count_le_counts_the_buckets_whose_bound_is_not_above);
    suite_add_tcase(s, tc);
    return s;
}
