/* SPDX-License-Identifier: MIT */
/*
 * tests/test_rate.c: the token bucket of lib/rate.h on a fake clock: a
 * full bucket gives burst at once, then per_second on average; fractional
 * rates; an idle bucket stops at burst; held tokens count against burst;
 * a reconfigure keeps a sane level.
 */
#include <check.h>
#include <stdint.h>

#include "rate.h"
#include "suites.h"
#include "testutil.h"

#define S INT64_C(1000000) /* one second in microseconds */

START_TEST(a_full_bucket_gives_burst_at_once_then_nothing)
{
    struct aq_rate *r = aq_rate_new(20, 5, 1000 * S);

    ck_assert_uint_eq(aq_rate_take(r, 64, 1000 * S), 5);
    ck_assert_uint_eq(aq_rate_take(r, 1, 1000 * S), 0);
    /* 1/20 s for the next one */
    ck_assert_int_eq(aq_rate_wait_us(r, 1000 * S), S / 20);
    ck_assert_uint_eq(aq_rate_take(r, 1, 1000 * S + S / 20 - 1), 0);
    ck_assert_uint_eq(aq_rate_take(r, 1, 1000 * S + S / 20), 1);
    aq_rate_free(r);
}
END_TEST

START_TEST(taking_as_the_wait_says_averages_per_second)
{
    struct aq_rate *r = aq_rate_new(20, 5, 0);
    int64_t now = 0;
    unsigned got = 0;

    /* A taker that asks each time the bucket says: 45 tokens in 2 s. */
    while (got < 45) {
        int64_t w = aq_rate_wait_us(r, now);

        ck_assert_int_ge(w, 0);
        now += w;
        got += aq_rate_take(r, 1, now);
    }
    ck_assert_int_ge(now, 2 * S - 1000);
    ck_assert_int_le(now, 2 * S + 1000);
    aq_rate_free(r);
}
END_TEST

START_TEST(fractional_rates_space_tokens_wider_than_a_second)
{
    struct aq_rate *r = aq_rate_new(0.5, 1, 0);

    ck_assert_uint_eq(aq_rate_take(r, 3, 0), 1);
    ck_assert_int_eq(aq_rate_wait_us(r, 0), 2 * S);
    ck_assert_uint_eq(aq_rate_take(r, 1, 2 * S - 1), 0);
    ck_assert_uint_eq(aq_rate_take(r, 1, 2 * S), 1);
    /* a faster rate from now on: the next token 1/10 s later */
    aq_rate_configure(r, 10, 3, 2 * S);
    ck_assert_uint_eq(aq_rate_take(r, 10, 2 * S + S / 10), 1);
    aq_rate_free(r);
}
END_TEST

START_TEST(a_long_idle_fills_the_bucket_to_burst_only)
{
    struct aq_rate *r = aq_rate_new(100, 4, 0);

    ck_assert_uint_eq(aq_rate_take(r, 4, 0), 4);
    ck_assert_double_eq_tol(aq_rate_tokens(r, 3600 * S), 4, 1e-9);
    ck_assert_uint_eq(aq_rate_take(r, 100, 3600 * S), 4);
    ck_assert_uint_eq(aq_rate_take(r, 100, 3600 * S), 0);
    aq_rate_free(r);
}
END_TEST

START_TEST(held_tokens_count_against_burst_until_spent_or_given_back)
{
    struct aq_rate *r = aq_rate_new(10, 3, 0);

    ck_assert(aq_rate_hold(r, 0));
    ck_assert(aq_rate_hold(r, 0));
    ck_assert_uint_eq(aq_rate_held(r), 2);
    /* idle for long: the bucket holds burst - held, not burst */
    ck_assert_double_eq_tol(aq_rate_tokens(r, 100 * S), 1, 1e-9);
    ck_assert(aq_rate_hold(r, 100 * S));
    ck_assert(!aq_rate_hold(r, 100 * S));
    /* the holders hold the whole burst: no token comes on its own */
    ck_assert_int_eq(aq_rate_wait_us(r, 200 * S), -1);
    aq_rate_spend_held(r, 200 * S);
    ck_assert_int_eq(aq_rate_wait_us(r, 200 * S), S / 10);
    aq_rate_unhold(r, 200 * S);
    ck_assert_uint_eq(aq_rate_held(r), 1);
    ck_assert_int_eq(aq_rate_wait_us(r, 200 * S), 0);
    ck_assert_uint_eq(aq_rate_take(r, 5, 300 * S), 2);
    aq_rate_free(r);
}
END_TEST

START_TEST(given_back_tokens_are_there_again)
{
    struct aq_rate *r = aq_rate_new(1, 8, 0);

    ck_assert_uint_eq(aq_rate_take(r, 8, 0), 8);
    aq_rate_give(r, 5, 0);
    ck_assert_uint_eq(aq_rate_take(r, 8, 0), 5);
    aq_rate_free(r);
}
END_TEST

START_TEST(reconfigure_keeps_a_sane_level)
{
    struct aq_rate *r = aq_rate_new(1, 10, 0);

    /* lower burst: the level comes down to it */
    aq_rate_configure(r, 1, 2, 0);
    ck_assert_uint_eq(aq_rate_take(r, 10, 0), 2);
    /* higher burst: no free tokens, the refill goes on at the new rate */
    aq_rate_configure(r, 100, 50, 0);
    ck_assert_uint_eq(aq_rate_take(r, 100, 0), 0);
    ck_assert_uint_eq(aq_rate_take(r, 100, S / 10), 10);
    /* holders past a lowered burst: nothing more until they are done */
    ck_assert(aq_rate_hold(r, 10 * S));
    ck_assert(aq_rate_hold(r, 10 * S));
    aq_rate_configure(r, 100, 1, 10 * S);
    ck_assert_double_eq_tol(aq_rate_tokens(r, 10 * S), 0, 1e-9);
    ck_assert_int_eq(aq_rate_wait_us(r, 20 * S), -1);
    aq_rate_spend_held(r, 20 * S);
    aq_rate_spend_held(r, 20 * S);
    ck_assert_int_eq(aq_rate_wait_us(r, 20 * S), S / 100);
    ck_assert_uint_eq(aq_rate_take(r, 5, 30 * S), 1);
    aq_rate_free(r);
}
END_TEST

START_TEST(out_of_range_limits_are_raised_to_the_least)
{
    struct aq_rate *r = aq_rate_new(0, 0, 0);

    ck_assert_uint_eq(aq_rate_take(r, 2, 0), 1);
    ck_assert_int_gt(aq_rate_wait_us(r, 0), 0);
    aq_rate_free(r);
    aq_rate_free(NULL);
}
END_TEST

Suite *
rate_suite(void)
{
    Suite *s = suite_create("rate");
    TCase *tc = test_tcase_new("rate");

    tcase_add_test(tc, a_full_bucket_gives_burst_at_once_then_nothing);
    tcase_add_test(tc, taking_as_the_wait_says_averages_per_second);
    tcase_add_test(tc, fractional_rates_space_tokens_wider_than_a_second);
    tcase_add_test(tc, a_long_idle_fills_the_bucket_to_burst_only);
    tcase_add_test(tc,
                   held_tokens_count_against_burst_until_spent_or_given_back);
    tcase_add_test(tc, given_back_tokens_are_there_again);
    tcase_add_test(tc, reconfigure_keeps_a_sane_level);
    tcase_add_test(tc, out_of_range_limits_are_raised_to_the_least);
    suite_add_tcase(s, tc);
    return s;
}
