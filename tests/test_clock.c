/* SPDX-License-Identifier: MIT */
/*
 * tests/test_clock.c: the contract of lib/clock.h: conversions of durations
 * saturate instead of overflowing (NaN, negatives, infinities and huge
 * values included), and the two clocks read the time.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "suites.h"
#include "testutil.h"

START_TEST(seconds_convert_to_microseconds)
{
    ck_assert_int_eq(aq_clock_s_to_us(1.5), 1500000);
    ck_assert_int_eq(aq_clock_s_to_us(0.000001), 1);
    ck_assert_int_eq(aq_clock_s_to_us(0.0000001), 0);
    ck_assert_int_eq(aq_clock_s_to_us(86400), INT64_C(86400000000));
}
END_TEST

START_TEST(seconds_saturate_to_zero_and_the_longest_duration)
{
    ck_assert_int_eq(aq_clock_s_to_us(0), 0);
    ck_assert_int_eq(aq_clock_s_to_us(-1), 0);
    ck_assert_int_eq(aq_clock_s_to_us(-INFINITY), 0);
    ck_assert_int_eq(aq_clock_s_to_us(NAN), 0);
    ck_assert_int_eq(aq_clock_s_to_us(AQ_DURATION_MAX_S), AQ_DURATION_MAX_US);
    ck_assert_int_eq(aq_clock_s_to_us(1e300), AQ_DURATION_MAX_US);
    ck_assert_int_eq(aq_clock_s_to_us(INFINITY), AQ_DURATION_MAX_US);
    ck_assert_int_lt(aq_clock_s_to_us(AQ_DURATION_MAX_S - 1),
                     AQ_DURATION_MAX_US);
}
END_TEST

START_TEST(add_saturates_instead_of_overflowing)
{
    ck_assert_int_eq(aq_clock_add_us(2, 3), 5);
    ck_assert_int_eq(aq_clock_add_us(-2, 3), 1);
    ck_assert_int_eq(aq_clock_add_us(INT64_MAX, 1), INT64_MAX);
    ck_assert_int_eq(aq_clock_add_us(INT64_MAX - 1, INT64_MAX), INT64_MAX);
    ck_assert_int_eq(aq_clock_add_us(INT64_MIN, -1), INT64_MIN);
    ck_assert_int_eq(aq_clock_add_us(INT64_MIN, INT64_MAX), -1);
}
END_TEST

START_TEST(timeval_holds_the_saturated_duration)
{
    struct timeval tv = aq_clock_tv(1500000);

    ck_assert_int_eq(tv.tv_sec, 1);
    ck_assert_int_eq(tv.tv_usec, 500000);
    tv = aq_clock_tv(-5);
    ck_assert_int_eq(tv.tv_sec, 0);
    ck_assert_int_eq(tv.tv_usec, 0);
    tv = aq_clock_tv(INT64_MAX);
    ck_assert_int_eq(tv.tv_sec, AQ_DURATION_MAX_US / 1000000);
    ck_assert_int_eq(tv.tv_usec, 0);
}
END_TEST

START_TEST(monotonic_clock_never_goes_back_and_wall_clock_reads_the_time)
{
    int64_t prev = aq_clock_mono_us();
    int64_t wall = aq_clock_wall_us();
    int64_t now_s = (int64_t)time(NULL);

    for (int i = 0; i < 1000; i++) {
        int64_t t = aq_clock_mono_us();

        if (t < prev)
            ck_abort_msg("monotonic clock went back: %lld after %lld",
                         (long long)t, (long long)prev);
        prev = t;
    }
    ck_assert_int_ge(wall / 1000000, now_s - 1);
    ck_assert_int_le(wall / 1000000, now_s + 1);
}
END_TEST

/* RFC 3339 times, checked against epoch values computed elsewhere
 * (date -u -d ... +%s), and what is not one. */
START_TEST(rfc3339_times_parse_strictly)
{
    static const struct {
        const char *s;
        double want;
    } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-12-06T14:00:00Z", 1796565600},
        {"2026-12-06T14:00:00+01:00", 1796562000},
        {"2026-12-06 14:00:00-02:30", 1796574600},
        {"2026-12-06t14:00:00.25z", 1796565600.25},
        {"2024-02-29T23:59:59Z", 1709251199},
        {"2000-03-01T00:00:00Z", 951868800},
        {"9999-12-31T23:59:59Z", 253402300799},
    };
    static const char *const bad[] = {
        "",
        "2026-12-06T14:00:00",       /* no offset */
        "2026-12-06",                /* no time */
        "2026-12-06T14:00Z",         /* no seconds */
        "2026-13-01T00:00:00Z",      /* month */
        "2025-02-29T00:00:00Z",      /* not a leap year */
        "1900-02-29T00:00:00Z",      /* before 1970 */
        "2026-12-06T24:00:00Z",      /* hour */
        "2026-12-06T14:60:00Z",      /* minute */
        "2026-12-06T14:00:60Z",      /* second */
        "2026-12-06T14:00:00.Z",     /* empty fraction */
        "2026-12-06T14:00:00+0100",  /* offset without colon */
        "2026-12-06T14:00:00Z ",     /* trailing space */
        "2026-12-06X14:00:00Z",      /* separator */
        "+2026-12-06T14:00:00Z",     /* sign */
        "2026-12-06T14:00:00+24:00", /* offset hour */
    };
    double v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = -1;
        ck_assert_msg(aq_rfc3339_parse(good[i].s, &v) == 0, "%s refused",
                      good[i].s);
        ck_assert_msg(v == good[i].want, "%s: %.3f, want %.3f", good[i].s, v,
                      good[i].want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(aq_rfc3339_parse(bad[i], &v) < 0, "%s taken", bad[i]);
}
END_TEST

Suite *
clock_suite(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = test_tcase_new("clock");

    tcase_add_test(tc, seconds_convert_to_microseconds);
    tcase_add_test(tc, rfc3339_times_parse_strictly);
    tcase_add_test(tc, seconds_saturate_to_zero_and_the_longest_duration);
    tcase_add_test(tc, add_saturates_instead_of_overflowing);
    tcase_add_test(tc, timeval_holds_the_saturated_duration);
    tcase_add_test(
        tc, monotonic_clock_never_goes_back_and_wall_clock_reads_the_time);
    suite_add_tcase(s, tc);
    return s;
}
