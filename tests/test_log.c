/* SPDX-License-Identifier: MIT */
/*
 * tests/test_log.c: the contract of lib/log.h: lines above the threshold
 * are dropped; a text line reads "TIMESTAMP LEVEL: message", or under
 * journald ($JOURNAL_STREAM naming stderr) "<N>LEVEL: message"; a json
 * line is one valid object whatever the message holds; a line is one line
 * whatever the message holds. A checked fixture points stderr at a pipe
 * the test reads, and puts stderr and every setting back after each test.
 */
#include <check.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "suites.h"
#include "testutil.h"

/* 2026-12-06T07:45:10.123456Z */
#define SOME_TIME_US INT64_C(1796543110123456)
#define TS_RE                                                                  \
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}[+-][0-"  \
    "9]{2}:[0-9]{2}"

static int saved_stderr = -1, pipe_rd = -1;
static enum aq_log_level saved_level;

static void
capture_setup(void)
{
    int fds[2];

    ck_assert_int_eq(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    saved_stderr = dup(STDERR_FILENO);
    ck_assert_int_ge(saved_stderr, 0);
    ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
    close(fds[1]);
    pipe_rd = fds[0];
    saved_level = aq_log_get_level();
    unsetenv("JOURNAL_STREAM");
    aq_log_detect_journal();
}

static void
capture_teardown(void)
{
    aq_log_set_level(saved_level);
    aq_log_set_format(AQ_LOG_TEXT);
    unsetenv("JOURNAL_STREAM");
    aq_log_detect_journal();
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(pipe_rd);
}

/* What stderr received since the last call (a static buffer). */
static const char *
captured(void)
{
    static char buf[16384];
    ssize_t n = read(pipe_rd, buf, sizeof buf - 1);

    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static bool
matches(const char *re, const char *s)
{
    regex_t r;
    bool ok;

    ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* The text lines captured, each with its timestamp checked and cut off. */
static const char *
captured_untimed(void)
{
    static char out[16384];
    const char *p = captured();
    size_t n = 0;

    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        char line[64];

        ck_assert_ptr_nonnull(eol);
        snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
        ck_assert_msg(matches("^" TS_RE " ", line),
                      "no RFC 3339 timestamp at the start of \"%s\"", line);
        p = strchr(p, ' ') + 1;
        memcpy(out + n, p, (size_t)(eol + 1 - p));
        n += (size_t)(eol + 1 - p);
        p = eol + 1;
    }
    out[n] = '\0';
    return out;
}

/* Points $JOURNAL_STREAM at stderr, as systemd does for the journal. */
static void
journal_stream_is_stderr(void)
{
    struct stat st;
    char v[64];

    ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
    snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
}

START_TEST(at_info_debug_is_dropped_and_the_rest_written)
{
    aq_log_set_level(AQ_LOG_INFO);
    aq_log(AQ_LOG_DEBUG, "hidden %d", 1);
    ck_assert_str_eq(captured(), "");
    aq_log(AQ_LOG_INFO, "queue: %s: ready", "default");
    ck_assert_str_eq(captured_untimed(), "info: queue: default: ready\n");
    aq_log(AQ_LOG_WARN, "w");
    aq_log(AQ_LOG_ERROR, "e");
    ck_assert_str_eq(captured_untimed(), "warn: w\nerror: e\n");
}
END_TEST

START_TEST(lines_above_the_threshold_are_dropped)
{
    aq_log_set_level(AQ_LOG_ERROR);
    ck_assert_int_eq(aq_log_get_level(), AQ_LOG_ERROR);
    aq_log(AQ_LOG_WARN, "w");
    aq_log(AQ_LOG_INFO, "i");
    aq_log(AQ_LOG_DEBUG, "d");
    aq_log_job(AQ_LOG_WARN, 1, "q", "w");
    ck_assert_str_eq(captured(), "");
    aq_log(AQ_LOG_ERROR, "e");
    ck_assert_str_eq(captured_untimed(), "error: e\n");
    aq_log_set_level(AQ_LOG_DEBUG);
    aq_log(AQ_LOG_DEBUG, "d");
    ck_assert_str_eq(captured_untimed(), "debug: d\n");
}
END_TEST

START_TEST(a_message_is_one_line_whatever_it_holds)
{
    char big[2000];

    aq_log(AQ_LOG_INFO, "a\nb\r\nc");
    ck_assert_str_eq(captured_untimed(), "info: a b  c\n");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    aq_log(AQ_LOG_INFO, "%s", big);
    {
        const char *line = captured_untimed();
        size_t len = strlen(line);

        /* the message cut to 1023 bytes, still one line */
        ck_assert_uint_eq(len, strlen("info: ") + 1023 + 1);
        ck_assert_int_eq(line[len - 1], '\n');
        ck_assert_ptr_eq(strchr(line, '\n'), line + len - 1);
        ck_assert_int_eq(strncmp(line, "info: xxx", 9), 0);
    }
}
END_TEST

START_TEST(level_names_follow_the_enum)
{
    ck_assert_str_eq(aq_log_level_names[AQ_LOG_ERROR], "error");
    ck_assert_str_eq(aq_log_level_names[AQ_LOG_WARN], "warn");
    ck_assert_str_eq(aq_log_level_names[AQ_LOG_INFO], "info");
    ck_assert_str_eq(aq_log_level_names[AQ_LOG_DEBUG], "debug");
    ck_assert_ptr_null(aq_log_level_names[AQ_LOG_DEBUG + 1]);
    ck_assert_str_eq(aq_log_format_names[AQ_LOG_TEXT], "text");
    ck_assert_str_eq(aq_log_format_names[AQ_LOG_JSON], "json");
    ck_assert_ptr_null(aq_log_format_names[AQ_LOG_JSON + 1]);
}
END_TEST

/* The timestamp is local time with milliseconds and the UTC offset. */
static const struct {
    const char *tz, *want;
} zones[] = {
    {"UTC0", "2026-12-06T07:45:10.123+00:00"},
    {"IST-5:30", "2026-12-06T13:15:10.123+05:30"},
    {"EST5", "2026-12-06T02:45:10.123-05:00"},
};

START_TEST(timestamp_is_rfc3339_with_milliseconds_and_offset)
{
    char buf[32];
    char *old = getenv("TZ") != NULL ? strdup(getenv("TZ")) : NULL;

    setenv("TZ", zones[_i].tz, 1);
    tzset();
    ck_assert_int_eq(aq_log_timestamp(buf, SOME_TIME_US), 29);
    ck_assert_str_eq(buf, zones[_i].want);
    if (old != NULL)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    tzset();
    free(old);
}
END_TEST

START_TEST(under_journald_lines_carry_the_priority_and_no_timestamp)
{
    journal_stream_is_stderr();
    ck_assert(aq_log_detect_journal());
    aq_log_set_level(AQ_LOG_DEBUG);
    aq_log(AQ_LOG_ERROR, "journal: %s: gone", "x");
    aq_log_job(AQ_LOG_WARN, 7, "q", "job 7: failed on q");
    aq_log(AQ_LOG_INFO, "i");
    aq_log(AQ_LOG_DEBUG, "d");
    ck_assert_str_eq(captured(), "<3>error: journal: x: gone\n"
                                 "<4>warn: job 7: failed on q\n"
                                 "<6>info: i\n"
                                 "<7>debug: d\n");
}
END_TEST

/* $JOURNAL_STREAM that names another file (stderr was redirected after
 * systemd set it), or that is not DEVICE:INODE, is not the journal. */
static const char *const not_journal[] = {"1:1", "",    "12",
                                          "12:", "a:b", "5:6x"};

START_TEST(journal_stream_naming_another_file_is_ignored)
{
    setenv("JOURNAL_STREAM", not_journal[_i], 1);
    ck_assert(!aq_log_detect_journal());
    aq_log(AQ_LOG_WARN, "w");
    ck_assert_str_eq(captured_untimed(), "warn: w\n");
}
END_TEST

/* The captured json line, parsed (the caller's); fails on anything else. */
static json_t *
captured_json(const char *prefix)
{
    const char *line = captured();
    size_t len = strlen(line), plen = strlen(prefix);
    json_error_t jerr;
    json_t *v;

    ck_assert_msg(len > plen && strncmp(line, prefix, plen) == 0 &&
                      line[len - 1] == '\n' &&
                      strchr(line, '\n') == line + len - 1,
                  "not one line after \"%s\": %s", prefix, line);
    v = json_loadb(line + plen, len - plen - 1, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_msg(v != NULL, "not JSON (%s): %s", jerr.text, line);
    ck_assert(json_is_object(v));
    ck_assert_msg(
        matches("^" TS_RE "$", json_string_value(json_object_get(v, "ts"))),
        "ts is not RFC 3339: %s", line);
    return v;
}

START_TEST(json_line_is_one_object_with_the_fields)
{
    json_t *v;

    aq_log_set_format(AQ_LOG_JSON);
    aq_log_job(AQ_LOG_WARN, 42, "work", "job %d: failed on %s", 42, "work");
    v = captured_json("");
    ck_assert_str_eq(json_string_value(json_object_get(v, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(v, "msg")),
                     "job 42: failed on work");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "job")), 42);
    ck_assert_str_eq(json_string_value(json_object_get(v, "queue")), "work");
    ck_assert_uint_eq(json_object_size(v), 5);
    json_decref(v);

    aq_log_conn(AQ_LOG_INFO, 3, "127.0.0.1:4000", "conn 3: closing");
    v = captured_json("");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "conn")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(v, "peer")),
                     "127.0.0.1:4000");
    ck_assert_ptr_null(json_object_get(v, "job"));
    json_decref(v);

    aq_log_queue(AQ_LOG_ERROR, "q", "queue q: x");
    v = captured_json("");
    ck_assert_str_eq(json_string_value(json_object_get(v, "level")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(v, "queue")), "q");
    ck_assert_uint_eq(json_object_size(v), 4);
    json_decref(v);

    aq_log(AQ_LOG_INFO, "plain");
    v = captured_json("");
    ck_assert_uint_eq(json_object_size(v), 3);
    json_decref(v);
}
END_TEST

START_TEST(json_stays_valid_whatever_the_message_holds)
{
    char big[3000];
    json_t *v;

    aq_log_set_format(AQ_LOG_JSON);
    /* quotes, backslashes, controls, DEL, UTF-8, and bytes that are not */
    aq_log(AQ_LOG_INFO, "a\"b\\c\nd\re\tf\x01g\x7fh \xc3\xa9\xe2\x82\xac "
                        "\xff\xc3(\xed\xa0\x80");
    v = captured_json("");
    ck_assert_str_eq(json_string_value(json_object_get(v, "msg")),
                     "a\"b\\c\nd\re\tf\x01g\x7fh \xc3\xa9\xe2\x82\xac "
                     "\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
                     "\xef\xbf\xbd");
    json_decref(v);
    /* a long message of characters that escape: cut, never broken */
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    aq_log_job(AQ_LOG_INFO, 1, "q\"\\", "%s", big);
    v = captured_json("");
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(v, "msg"))),
                      1023);
    ck_assert_str_eq(json_string_value(json_object_get(v, "queue")), "q\"\\");
    json_decref(v);
}
END_TEST

START_TEST(json_under_journald_carries_the_priority)
{
    json_t *v;

    journal_stream_is_stderr();
    ck_assert(aq_log_detect_journal());
    aq_log_set_format(AQ_LOG_JSON);
    aq_log_job(AQ_LOG_WARN, 5, "q", "job 5: failed on q");
    v = captured_json("<4>");
    ck_assert_str_eq(json_string_value(json_object_get(v, "level")), "warn");
    json_decref(v);
}
END_TEST

Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = test_tcase_new("log");

    tcase_add_checked_fixture(tc, capture_setup, capture_teardown);
    tcase_add_test(tc, at_info_debug_is_dropped_and_the_rest_written);
    tcase_add_test(tc, lines_above_the_threshold_are_dropped);
    tcase_add_test(tc, a_message_is_one_line_whatever_it_holds);
    tcase_add_test(tc, level_names_follow_the_enum);
    tcase_add_loop_test(tc, timestamp_is_rfc3339_with_milliseconds_and_offset,
                        0, sizeof zones / sizeof zones[0]);
    tcase_add_test(tc,
                   under_journald_lines_carry_the_priority_and_no_timestamp);
    tcase_add_loop_test(tc, journal_stream_naming_another_file_is_ignored, 0,
                        sizeof not_journal / sizeof not_journal[0]);
    tcase_add_test(tc, json_line_is_one_object_with_the_fields);
    tcase_add_test(tc, json_stays_valid_whatever_the_message_holds);
    tcase_add_test(tc, json_under_journald_carries_the_priority);
    suite_add_tcase(s, tc);
    return s;
}
