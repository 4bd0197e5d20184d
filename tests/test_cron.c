/* SPDX-License-Identifier: MIT */
/*
 * tests/test_cron.c: the contract of lib/cron.h: the parser (good and bad
 * expressions, with messages naming the field), next fire times in UTC
 * and in zones with DST (the gap skipped, the repeated hour once), month
 * ends, 29 February, the day-of-month / day-of-week rule, @every.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "error.h"
#include "suites.h"

/* Epoch seconds of a UTC date and time (timegm without the libc). */
static int64_t
utc(int y, int mo, int d, int h, int mi)
{
    int64_t yy = y - (mo <= 2), era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return (era * 146097 + doe - 719468) * 86400 + h * 3600 + mi * 60;
}

static struct aq_cron *
cron(const char *text)
{
    struct aq_error err = {0};
    struct aq_cron *c = aq_cron_parse(text, &err);

    ck_assert_msg(c != NULL, "%s: %s", text, err.message);
    return c;
}

static struct aq_tz *
zone(const char *name)
{
    struct aq_error err = {0};
    struct aq_tz *z = aq_tz_load(name, &err);

    ck_assert_msg(z != NULL, "%s: %s", name, err.message);
    return z;
}

/* The next fire time of text in zone name after t. */
static int64_t
next(const char *text, const char *name, int64_t t)
{
    struct aq_cron *c = cron(text);
    struct aq_tz *z = zone(name);
    int64_t n = aq_cron_next(c, z, t);

    aq_cron_free(c);
    aq_tz_free(z);
    return n;
}

static const char *const good[] = {
    "* * * * *",
    "*/5 * * * *",
    "0 0 1 1 *",
    "1,2,3-10/2 * * * *",
    "0 9-17 * * mon-fri",
    "0 0 * jan,JUL sun",
    "0 0 * * 7",
    "  5  4  *  *  *  ",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@every 1s",
    "@every 90",
    "@every 1.5m",
    "@every 2h",
    "@every 1d",
    "5/15 * * * *",
    "0 0 30 2 *",
};

START_TEST(parser_takes_good_expressions)
{
    struct aq_cron *c = cron(good[_i]);

    aq_cron_free(c);
}
END_TEST

struct bad {
    const char *text, *message;
};

static const struct bad bad[] = {
    {"*/0 * * * *", "cron \"*/0 * * * *\": field 1 (minute): step 0"},
    {"60 * * * *", "cron \"60 * * * *\": field 1 (minute): 60 out of range "
                   "0-59"},
    {"* 24 * * *", "cron \"* 24 * * *\": field 2 (hour): 24 out of range "
                   "0-23"},
    {"* * 0 * *", "cron \"* * 0 * *\": field 3 (day of month): 0 out of "
                  "range 1-31"},
    {"* * * 13 *", "cron \"* * * 13 *\": field 4 (month): 13 out of range "
                   "1-12"},
    {"* * * * 8", "cron \"* * * * 8\": field 5 (day of week): 8 out of range "
                  "0-7"},
    {"* * * * foo", "cron \"* * * * foo\": field 5 (day of week): bad value "
                    "\"foo\""},
    {"5-3 * * * *", "cron \"5-3 * * * *\": field 1 (minute): range 5-3 goes "
                    "backwards"},
    {"* * * *", "cron \"* * * *\": expected five fields (minute hour "
                "day-of-month month day-of-week)"},
    {"* * * * * *", "cron \"* * * * * *\": expected five fields (minute hour "
                    "day-of-month month day-of-week), got more"},
    {"1,,2 * * * *", "cron \"1,,2 * * * *\": field 1 (minute): bad value "
                     "\"\""},
    {"*/ * * * *", "cron \"*/ * * * *\": field 1 (minute): expected a step "
                   "after /"},
    {"@sometimes", "cron \"@sometimes\": expected five fields, or @hourly, "
                   "@daily, @weekly, @monthly, @yearly or @every DURATION"},
    {"@every 0s", "cron \"@every 0s\": @every: expected a duration from 1s "
                  "to 1e9s (90, 90s, 5m, 2h, 1d)"},
    {"@every 1x", "cron \"@every 1x\": @every: expected a duration from 1s "
                  "to 1e9s (90, 90s, 5m, 2h, 1d)"},
    {"@every 0.5", "cron \"@every 0.5\": @every: expected a duration from 1s "
                   "to 1e9s (90, 90s, 5m, 2h, 1d)"},
    {"", "cron \"\": expected five fields (minute hour day-of-month month "
         "day-of-week)"},
};

START_TEST(parser_names_the_bad_field)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(aq_cron_parse(bad[_i].text, &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, bad[_i].message);
}
END_TEST

START_TEST(unknown_zone_is_an_error)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(aq_tz_load("Mars/Olympus_Mons", &err));
    ck_assert_str_eq(err.message,
                     "timezone \"Mars/Olympus_Mons\": unknown zone (expected "
                     "a tz database name such as \"Europe/Berlin\", or "
                     "\"UTC\")");
    ck_assert_ptr_null(aq_tz_load("../../etc/passwd", &err));
    ck_assert_ptr_null(aq_tz_load("", &err));
}
END_TEST

START_TEST(next_in_utc)
{
    int64_t t = utc(2026, 12, 6, 13, 42);

    ck_assert_int_eq(next("* * * * *", "UTC", t), utc(2026, 12, 6, 13, 43));
    /* Strictly after: a time on the boundary gives the next one. */
    ck_assert_int_eq(next("*/5 * * * *", "UTC", utc(2026, 12, 6, 13, 45)),
                     utc(2026, 12, 6, 13, 50));
    ck_assert_int_eq(next("*/5 * * * *", "UTC", t + 30),
                     utc(2026, 12, 6, 13, 45));
    ck_assert_int_eq(next("@hourly", "UTC", t), utc(2026, 12, 6, 14, 0));
    ck_assert_int_eq(next("@daily", "UTC", t), utc(2026, 12, 7, 0, 0));
    /* 2026-12-06 is a Sunday: @weekly is the next Sunday. */
    ck_assert_int_eq(next("@weekly", "UTC", t), utc(2026, 12, 13, 0, 0));
    ck_assert_int_eq(next("@monthly", "UTC", t), utc(2027, 1, 1, 0, 0));
    ck_assert_int_eq(next("@yearly", "UTC", t), utc(2027, 1, 1, 0, 0));
    ck_assert_int_eq(next("0 9-17 * * mon-fri", "UTC", t),
                     utc(2026, 12, 7, 9, 0));
    ck_assert_int_eq(next("0 0 * * 7", "UTC", t), utc(2026, 12, 13, 0, 0));
    ck_assert_int_eq(next("5/15 * * * *", "UTC", t), utc(2026, 12, 6, 13, 50));
    ck_assert_int_eq(next("30 2 * jul *", "UTC", t), utc(2027, 7, 1, 2, 30));
}
END_TEST

START_TEST(next_at_month_ends_and_29_february)
{
    /* The 31st skips the months without one. */
    ck_assert_int_eq(next("0 0 31 * *", "UTC", utc(2027, 1, 31, 0, 0)),
                     utc(2027, 3, 31, 0, 0));
    ck_assert_int_eq(next("0 0 31 * *", "UTC", utc(2027, 4, 1, 0, 0)),
                     utc(2027, 5, 31, 0, 0));
    ck_assert_int_eq(next("59 23 31 12 *", "UTC", utc(2026, 12, 31, 23, 58)),
                     utc(2026, 12, 31, 23, 59));
    ck_assert_int_eq(next("0 0 1 * *", "UTC", utc(2026, 12, 31, 23, 59)),
                     utc(2027, 1, 1, 0, 0));
    /* 29 February: the next leap year, 2028. */
    ck_assert_int_eq(next("0 12 29 2 *", "UTC", utc(2026, 12, 6, 0, 0)),
                     utc(2028, 2, 29, 12, 0));
    ck_assert_int_eq(next("0 12 29 2 *", "UTC", utc(2028, 2, 29, 12, 0)),
                     utc(2032, 2, 29, 12, 0));
    /* 2100 is no leap year. */
    ck_assert_int_eq(next("0 0 29 2 *", "UTC", utc(2096, 3, 1, 0, 0)),
                     utc(2104, 2, 29, 0, 0));
    /* A day that never comes: none. */
    ck_assert_int_eq(next("0 0 30 2 *", "UTC", utc(2026, 1, 1, 0, 0)), -1);
}
END_TEST

START_TEST(day_of_month_or_day_of_week)
{
    /* Both restricted: either matches (the 13th, or a Friday). Dec 2026:
     * the 11th is a Friday, the 13th a Sunday. */
    ck_assert_int_eq(next("0 0 13 * 5", "UTC", utc(2026, 12, 6, 0, 0)),
                     utc(2026, 12, 11, 0, 0));
    ck_assert_int_eq(next("0 0 13 * 5", "UTC", utc(2026, 12, 11, 0, 0)),
                     utc(2026, 12, 13, 0, 0));
    /* One of them '*': the other alone decides. */
    ck_assert_int_eq(next("0 0 * * 5", "UTC", utc(2026, 12, 6, 0, 0)),
                     utc(2026, 12, 11, 0, 0));
    ck_assert_int_eq(next("0 0 13 * *", "UTC", utc(2026, 12, 6, 0, 0)),
                     utc(2026, 12, 13, 0, 0));
    /* A field starting with '*' counts as '*' (Vixie): Fridays that are
     * odd days. */
    ck_assert_int_eq(next("0 0 */2 * fri", "UTC", utc(2026, 12, 6, 0, 0)),
                     utc(2026, 12, 11, 0, 0));
    ck_assert_int_eq(next("0 0 */2 * fri", "UTC", utc(2026, 12, 11, 0, 0)),
                     utc(2026, 12, 25, 0, 0));
}
END_TEST

START_TEST(new_york_dst_gap_is_skipped)
{
    /* 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist. */
    int64_t before = utc(2026, 3, 7, 12, 0);

    ck_assert_int_eq(next("30 2 * * *", "America/New_York", before),
                     utc(2026, 3, 9, 6, 30)); /* 02:30 EDT on the 9th */
    /* Around the jump: 01:59 EST is 06:59 UTC, 03:00 EDT 07:00 UTC. */
    ck_assert_int_eq(
        next("* * * * *", "America/New_York", utc(2026, 3, 8, 6, 59)),
        utc(2026, 3, 8, 7, 0));
    ck_assert_int_eq(next("0 3 * * *", "America/New_York", before),
                     utc(2026, 3, 8, 7, 0));
    ck_assert_int_eq(next("@hourly", "America/New_York", utc(2026, 3, 8, 6, 0)),
                     utc(2026, 3, 8, 7, 0));
}
END_TEST

START_TEST(new_york_repeated_hour_fires_once)
{
    /* 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at
     * 05:30 UTC (EDT) and 06:30 UTC (EST): once, the first. */
    int64_t first = utc(2026, 11, 1, 5, 30);

    ck_assert_int_eq(
        next("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0)),
        first);
    ck_assert_int_eq(next("30 1 * * *", "America/New_York", first),
                     utc(2026, 11, 2, 6, 30)); /* 01:30 EST on the 2nd */
    /* Started during the repeat (01:10 EST): 01:30 already happened. */
    ck_assert_int_eq(
        next("30 1 * * *", "America/New_York", utc(2026, 11, 1, 6, 10)),
        utc(2026, 11, 2, 6, 30));
    /* Hourly: 01:00 EDT, then 02:00 EST (the repeated 01:00 skipped). */
    ck_assert_int_eq(
        next("@hourly", "America/New_York", utc(2026, 11, 1, 5, 0)),
        utc(2026, 11, 1, 7, 0));
}
END_TEST

START_TEST(berlin_dst_both_ways)
{
    /* 2027-03-28: 02:00 CET jumps to 03:00 CEST; 2027-10-31: 03:00 CEST
     * falls back to 02:00 CET. */
    ck_assert_int_eq(
        next("30 2 * * *", "Europe/Berlin", utc(2027, 3, 27, 12, 0)),
        utc(2027, 3, 29, 0, 30)); /* 02:30 CEST on the 29th */
    ck_assert_int_eq(
        next("30 2 * * *", "Europe/Berlin", utc(2027, 10, 30, 12, 0)),
        utc(2027, 10, 31, 0, 30)); /* 02:30 CEST, once */
    ck_assert_int_eq(
        next("30 2 * * *", "Europe/Berlin", utc(2027, 10, 31, 0, 30)),
        utc(2027, 11, 1, 1, 30)); /* 02:30 CET */
    ck_assert_int_eq(next("0 12 * * *", "Europe/Berlin", utc(2027, 7, 1, 0, 0)),
                     utc(2027, 7, 1, 10, 0));
}
END_TEST

START_TEST(zone_past_its_table_uses_the_footer)
{
    struct aq_tz *z = zone("Europe/Berlin");

    /* 2100 is past a fat file's table (2037): the POSIX rule decides. */
    ck_assert_int_eq(aq_tz_offset(z, utc(2100, 7, 1, 0, 0)), 7200);
    ck_assert_int_eq(aq_tz_offset(z, utc(2100, 1, 1, 0, 0)), 3600);
    /* Last Sunday of March 2100 is the 28th: 01:00 UTC. */
    ck_assert_int_eq(aq_tz_offset(z, utc(2100, 3, 28, 0, 59)), 3600);
    ck_assert_int_eq(aq_tz_offset(z, utc(2100, 3, 28, 1, 0)), 7200);
    ck_assert_int_eq(
        next("30 2 * * *", "Europe/Berlin", utc(2100, 3, 27, 12, 0)),
        utc(2100, 3, 29, 0, 30));
    aq_tz_free(z);
    z = zone("America/New_York");
    ck_assert_int_eq(aq_tz_offset(z, utc(2090, 7, 1, 0, 0)), -4 * 3600);
    ck_assert_int_eq(aq_tz_offset(z, utc(2090, 12, 1, 0, 0)), -5 * 3600);
    aq_tz_free(z);
}
END_TEST

START_TEST(every_is_anchored_at_the_epoch)
{
    ck_assert_int_eq(next("@every 1s", "UTC", 1000), 1001);
    ck_assert_int_eq(next("@every 10s", "UTC", 1000), 1010);
    ck_assert_int_eq(next("@every 10s", "UTC", 1005), 1010);
    ck_assert_int_eq(next("@every 90", "UTC", 0), 90);
    ck_assert_int_eq(next("@every 1d", "UTC", utc(2026, 12, 6, 13, 0)),
                     utc(2026, 12, 7, 0, 0));
    /* The zone plays no part. */
    ck_assert_int_eq(
        next("@every 1d", "America/New_York", utc(2026, 12, 6, 13, 0)),
        utc(2026, 12, 7, 0, 0));
    {
        struct aq_cron *c = cron("@every 2h");

        ck_assert_int_eq(aq_cron_every_s(c), 7200);
        aq_cron_free(c);
    }
}
END_TEST

Suite *
cron_suite(void)
{
    Suite *s = suite_create("cron");
    TCase *tc = tcase_create("cron");

    tcase_add_loop_test(tc, parser_takes_good_expressions, 0,
                        (int)(sizeof good / sizeof good[0]));
    tcase_add_loop_test(tc, parser_names_the_bad_field, 0,
                        (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, unknown_zone_is_an_error);
    tcase_add_test(tc, next_in_utc);
    tcase_add_test(tc, next_at_month_ends_and_29_february);
    tcase_add_test(tc, day_of_month_or_day_of_week);
    tcase_add_test(tc, new_york_dst_gap_is_skipped);
    tcase_add_test(tc, new_york_repeated_hour_fires_once);
    tcase_add_test(tc, berlin_dst_both_ways);
    tcase_add_test(tc, zone_past_its_table_uses_the_footer);
    tcase_add_test(tc, every_is_anchored_at_the_epoch);
    suite_add_tcase(s, tc);
    return s;
}
