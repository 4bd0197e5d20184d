/* SPDX-License-Identifier: MIT */
/*
 * tests/test_batch.c: the batch table (lib/batch.h) alone: counts by
 * state, unfinished and total through enters, moves and leaves; a label
 * leaves the table with its last job; many labels (the table grows);
 * joins fire from the loop once nothing is unfinished, never inside the
 * move, and a cancelled join never fires. The broker's side (every state
 * change of a batched job reaches the table) is unit.broker's list test.
 */
#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "idset.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 2000

static struct aq_batch_counts
counts_of(struct aq_batches *t, const char *name)
{
    struct aq_batch_counts c;

    aq_batches_counts(t, name, &c);
    return c;
}

START_TEST(counts_follow_enters_moves_and_leaves)
{
    struct aq_batches *t = aq_batches_new(test_base);
    struct aq_batch_counts c;

    aq_batches_move(t, "a", 1, -1, AQ_JOB_PENDING);
    aq_batches_move(t, "a", 2, -1, AQ_JOB_DELAYED);
    aq_batches_move(t, "a", 3, -1, AQ_JOB_DONE); /* a restored record */
    aq_batches_move(t, "b", 4, -1, AQ_JOB_PENDING);
    aq_batches_move(t, "a", 1, AQ_JOB_PENDING, AQ_JOB_RUNNING);
    c = counts_of(t, "a");
    ck_assert_uint_eq(c.total, 3);
    ck_assert_uint_eq(c.unfinished, 2);
    ck_assert_uint_eq(c.states[AQ_JOB_RUNNING], 1);
    ck_assert_uint_eq(c.states[AQ_JOB_DELAYED], 1);
    ck_assert_uint_eq(c.states[AQ_JOB_DONE], 1);
    ck_assert_uint_eq(c.states[AQ_JOB_PENDING], 0);
    ck_assert_uint_eq(aq_idset_count(aq_batches_ids(t, "a")), 3);
    ck_assert(aq_idset_has(aq_batches_ids(t, "a"), 2));
    ck_assert(!aq_idset_has(aq_batches_ids(t, "a"), 4));
    aq_batches_move(t, "a", 1, AQ_JOB_RUNNING, AQ_JOB_FAILED);
    aq_batches_move(t, "a", 2, AQ_JOB_DELAYED, AQ_JOB_CANCELLED);
    /* a retry by hand: a record runs again */
    aq_batches_move(t, "a", 1, AQ_JOB_FAILED, AQ_JOB_PENDING);
    c = counts_of(t, "a");
    ck_assert_uint_eq(c.unfinished, 1);
    ck_assert_uint_eq(c.states[AQ_JOB_FAILED], 0);
    ck_assert_uint_eq(c.states[AQ_JOB_CANCELLED], 1);
    /* records evicted or deleted leave it */
    aq_batches_move(t, "a", 2, AQ_JOB_CANCELLED, -1);
    aq_batches_move(t, "a", 3, AQ_JOB_DONE, -1);
    c = counts_of(t, "a");
    ck_assert_uint_eq(c.total, 1);
    ck_assert_uint_eq(c.states[AQ_JOB_DONE], 0);
    ck_assert_uint_eq(aq_batches_size(t), 2);
    aq_batches_move(t, "a", 1, AQ_JOB_PENDING, AQ_JOB_DONE);
    aq_batches_move(t, "a", 1, AQ_JOB_DONE, -1);
    /* the last job of a went: a is gone, b stays */
    ck_assert_uint_eq(aq_batches_size(t), 1);
    ck_assert_ptr_null(aq_batches_ids(t, "a"));
    c = counts_of(t, "a");
    ck_assert_uint_eq(c.total, 0);
    ck_assert_uint_eq(counts_of(t, "b").total, 1);
    ck_assert_uint_eq(counts_of(t, "nope").total, 0);
    aq_batches_free(t);
}
END_TEST

/* Past 16 labels the table doubles; every label still finds its own. */
START_TEST(many_labels_each_keep_their_counts)
{
    struct aq_batches *t = aq_batches_new(test_base);
    char name[32];

    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "batch-%d", i);
        for (int k = 0; k <= i % 5; k++)
            aq_batches_move(t, name, (uint64_t)(i * 10 + k + 1), -1,
                            AQ_JOB_PENDING);
    }
    ck_assert_uint_eq(aq_batches_size(t), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "batch-%d", i);
        ck_assert_uint_eq(counts_of(t, name).total, (uint64_t)(i % 5 + 1));
        ck_assert_uint_eq(counts_of(t, name).states[AQ_JOB_PENDING],
                          (uint64_t)(i % 5 + 1));
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(name, sizeof name, "batch-%d", i);
        for (int k = 0; k <= i % 5; k++)
            aq_batches_move(t, name, (uint64_t)(i * 10 + k + 1), AQ_JOB_PENDING,
                            -1);
    }
    ck_assert_uint_eq(aq_batches_size(t), 500);
    ck_assert_uint_eq(counts_of(t, "batch-999").total, 5);
    ck_assert_uint_eq(counts_of(t, "batch-998").total, 0);
    aq_batches_free(t);
}
END_TEST

static void
count_cb(void *arg)
{
    (*(int *)arg)++;
}

static void
flag_cb(void *arg)
{
    *(bool *)arg = true;
}

START_TEST(join_fires_from_the_loop_once_nothing_is_unfinished)
{
    struct aq_batches *t = aq_batches_new(test_base);
    struct aq_batch_join *j1, *j2, *j3;
    int fired = 0;
    bool other = false;

    /* unknown, or finished only: at once */
    ck_assert_int_eq(aq_batches_join(t, "a", count_cb, &fired, &j1), 0);
    aq_batches_move(t, "a", 1, -1, AQ_JOB_DONE);
    ck_assert_int_eq(aq_batches_join(t, "a", count_cb, &fired, &j1), 0);
    aq_batches_move(t, "a", 2, -1, AQ_JOB_PENDING);
    aq_batches_move(t, "a", 3, -1, AQ_JOB_DELAYED);
    aq_batches_move(t, "b", 4, -1, AQ_JOB_PENDING);
    ck_assert_int_eq(aq_batches_join(t, "a", count_cb, &fired, &j1), 1);
    ck_assert_int_eq(aq_batches_join(t, "a", count_cb, &fired, &j2), 1);
    ck_assert_int_eq(aq_batches_join(t, "b", flag_cb, &other, &j3), 1);
    aq_batches_join_cancel(j2); /* withdrawn: never fires */
    aq_batches_move(t, "a", 2, AQ_JOB_PENDING, AQ_JOB_DONE);
    run_for(test_base, 10);
    ck_assert_int_eq(fired, 0); /* 3 is still delayed */
    aq_batches_move(t, "a", 3, AQ_JOB_DELAYED, AQ_JOB_CANCELLED);
    ck_assert_int_eq(fired, 0); /* not inside the move */
    run_for(test_base, 10);
    ck_assert_int_eq(fired, 1);
    ck_assert(!other); /* b's job is still pending */
    aq_batches_move(t, "b", 4, AQ_JOB_PENDING, AQ_JOB_RUNNING);
    aq_batches_move(t, "b", 4, AQ_JOB_RUNNING, AQ_JOB_DONE);
    ck_assert(run_until(test_base, &other, WAIT_MS));
    ck_assert_int_eq(fired, 1);
    aq_batches_free(t);
}
END_TEST

/* A join withdrawn after its moment came but before the loop called it
 * never fires; a table freed with joins waiting frees them. */
START_TEST(join_cancelled_after_firing_and_freed_waiting_never_call)
{
    struct aq_batches *t = aq_batches_new(test_base);
    struct aq_batch_join *j1, *j2;
    int fired = 0;

    aq_batches_move(t, "a", 1, -1, AQ_JOB_PENDING);
    aq_batches_move(t, "b", 2, -1, AQ_JOB_PENDING);
    ck_assert_int_eq(aq_batches_join(t, "a", count_cb, &fired, &j1), 1);
    ck_assert_int_eq(aq_batches_join(t, "b", count_cb, &fired, &j2), 1);
    aq_batches_move(t, "a", 1, AQ_JOB_PENDING, AQ_JOB_DONE);
    aq_batches_join_cancel(j1);
    /* a's job leaves: no job and no join, a goes */
    aq_batches_move(t, "a", 1, AQ_JOB_DONE, -1);
    ck_assert_uint_eq(aq_batches_size(t), 1);
    run_for(test_base, 10);
    ck_assert_int_eq(fired, 0);
    aq_batches_free(t); /* b's join still waits: freed, not called */
    run_for(test_base, 10);
    ck_assert_int_eq(fired, 0);
}
END_TEST

Suite *
batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = test_tcase_with_base("table");

    tcase_add_test(tc, counts_follow_enters_moves_and_leaves);
    tcase_add_test(tc, many_labels_each_keep_their_counts);
    tcase_add_test(tc, join_fires_from_the_loop_once_nothing_is_unfinished);
    tcase_add_test(tc,
                   join_cancelled_after_firing_and_freed_waiting_never_call);
    suite_add_tcase(s, tc);
    return s;
}
