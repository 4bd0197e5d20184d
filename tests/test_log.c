/* SPDX-License-Identifier: MIT */
/*
 * tests/test_log.c: the contract of lib/log.h: lines above the threshold
 * are dropped, a line reads "LEVEL: message" and is one line whatever the
 * message holds, and the level names follow the enum. A checked fixture
 * points stderr at a pipe the test reads, and puts stderr and the
 * threshold back after each test.
 */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "suites.h"
#include "testutil.h"

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
}

static void
capture_teardown(void)
{
    aq_log_set_level(saved_level);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(pipe_rd);
}

/* What stderr received since the last call (a static buffer). */
static const char *
captured(void)
{
    static char buf[4096];
    ssize_t n = read(pipe_rd, buf, sizeof buf - 1);

    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

START_TEST(at_info_debug_is_dropped_and_the_rest_written)
{
    aq_log_set_level(AQ_LOG_INFO);
    aq_log(AQ_LOG_DEBUG, "hidden %d", 1);
    ck_assert_str_eq(captured(), "");
    aq_log(AQ_LOG_INFO, "queue: %s: ready", "default");
    ck_assert_str_eq(captured(), "info: queue: default: ready\n");
    aq_log(AQ_LOG_WARN, "w");
    aq_log(AQ_LOG_ERROR, "e");
    ck_assert_str_eq(captured(), "warn: w\nerror: e\n");
}
END_TEST

START_TEST(lines_above_the_threshold_are_dropped)
{
    aq_log_set_level(AQ_LOG_ERROR);
    ck_assert_int_eq(aq_log_get_level(), AQ_LOG_ERROR);
    aq_log(AQ_LOG_WARN, "w");
    aq_log(AQ_LOG_INFO, "i");
    aq_log(AQ_LOG_DEBUG, "d");
    ck_assert_str_eq(captured(), "");
    aq_log(AQ_LOG_ERROR, "e");
    ck_assert_str_eq(captured(), "error: e\n");
    aq_log_set_level(AQ_LOG_DEBUG);
    aq_log(AQ_LOG_DEBUG, "d");
    ck_assert_str_eq(captured(), "debug: d\n");
}
END_TEST

START_TEST(a_message_is_one_line_whatever_it_holds)
{
    char big[2000];

    aq_log(AQ_LOG_INFO, "a\nb\r\nc");
    ck_assert_str_eq(captured(), "info: a b  c\n");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    aq_log(AQ_LOG_INFO, "%s", big);
    {
        const char *line = captured();
        size_t len = strlen(line);

        /* cut to the line buffer, still one line */
        ck_assert_uint_eq(len, 1023);
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
    suite_add_tcase(s, tc);
    return s;
}
