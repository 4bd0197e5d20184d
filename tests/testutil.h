/* SPDX-License-Identifier: MIT */
/*
 * tests/testutil.h: helpers shared by the suites. run_until() drives an
 * event_base until a flag turns true or a deadline passes, so no test
 * sleeps or hangs; test_tcase_with_base() gives each test of a case its own
 * event base (as libevent's TT_NEED_BASE).
 */
#ifndef AQ_TESTUTIL_H
#define AQ_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <check.h>

struct event_base;

/* A base with precise timers, for tests that measure delays. */
struct event_base *test_base_new(void);

/* Runs base until *flag is true or timeout_ms passes; returns *flag. */
bool run_until(struct event_base *base, const bool *flag, int timeout_ms);

/* Runs base for exactly ms milliseconds of loop time (to show that nothing
 * happens in that window), then returns. */
void run_for(struct event_base *base, int ms);

/* Runs what the loop already has scheduled (a task released from the loop,
 * say), then frees base. */
void test_base_free(struct event_base *base);

/* A Check test case with the suites' 10 s time limit. */
TCase *test_tcase_new(const char *name);

/* The running test's event base: made before each test of a case from
 * test_tcase_with_base (or by test_base_setup), freed after it. */
extern struct event_base *test_base;

/* test_tcase_new with a checked fixture (run in the test's own process)
 * that sets test_base before each test and frees it after (test_base_free):
 * a test uses the base and frees only what it made on it. */
TCase *test_tcase_with_base(const char *name);

/* That fixture's two halves, for a suite whose own checked fixture needs
 * the base: call setup first and teardown last in its own. */
void test_base_setup(void);
void test_base_teardown(void);

/* ---- task results, for the task and wait suites ---- */

struct aq_task;

/* Counts how often a task released the result it held. */
struct free_count {
    int calls;
    bool freed;
};

/* A result holding value, for aq_task_set_result with test_result_free;
 * fc (may be NULL) sees it freed. */
void *test_result_new(int value, struct free_count *fc);
void test_result_free(void *result);
/* The value of t's result, or -1 if it has none. */
int test_result_value(const struct aq_task *t);

#endif
