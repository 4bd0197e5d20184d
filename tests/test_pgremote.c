/* SPDX-License-Identifier: MIT */
/*
 * tests/test_pgremote.c: what lib/pgremote.c decides without a server: a
 * row's record (the fields aq_job_record writes, from columns; a row no
 * job could be is refused) and list's statement (a condition and a
 * parameter per filter given, none for all states, one row beyond the
 * page, the order).
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "broker.h"
#include "jwrite.h"
#include "pgremote.h"
#include "suites.h"

/* The record of row v as compact JSON text (the caller's), or NULL. */
static char *
record_text(const char *const *v)
{
    json_t *rec = aq_pgremote_record(v);
    char *text;

    if (rec == NULL)
        return NULL;
    text = aq_jwrite_string(rec, NULL);
    json_decref(rec);
    return text;
}

START_TEST(finished_row_has_every_field_a_record_has)
{
    const char *v[AQ_PGR_NCOLS] = {
        [AQ_PGR_ID] = "42",
        [AQ_PGR_QUEUE] = "default",
        [AQ_PGR_KIND] = "0",
        [AQ_PGR_STATE] = "5",
        [AQ_PGR_PRIORITY] = "-3",
        [AQ_PGR_DUE] = "1700000009000000", /* not shown once finished */
        [AQ_PGR_ATTEMPTS] = "2",
        [AQ_PGR_RETRIED] = "1",
        [AQ_PGR_CREATED] = "1700000000500000",
        [AQ_PGR_STARTED] = "1700000001000000",
        [AQ_PGR_FINISHED] = "1700000002250000",
        [AQ_PGR_KEY] = "k",
        [AQ_PGR_NAME] = "nm",
        [AQ_PGR_BATCH] = "b",
        [AQ_PGR_AFTER] = "{7,9}",
        [AQ_PGR_AFTER_POLICY] = "1",
        [AQ_PGR_ARGS] = "{\"argv\":[\"/bin/false\"],\"n\":1e3}",
        [AQ_PGR_RESULT] = "{\"exit_code\":1}",
        [AQ_PGR_ERROR_CODE] = "exit",
        [AQ_PGR_ERROR_MESSAGE] = "exec: exited with status 1",
    };
    char *text = record_text(v);

    ck_assert_str_eq(
        text,
        "{\"job\":42,\"queue\":\"default\",\"kind\":\"exec\",\"state\":"
        "\"failed\",\"priority\":-3,\"attempts\":2,\"created\":1700000000.5,"
        "\"args\":{\"argv\":[\"/bin/false\"],\"n\":1e3},\"name\":\"nm\","
        "\"batch\":\"b\",\"retried\":1,\"key\":\"k\",\"after\":[7,9],"
        "\"after_policy\":\"finished\",\"started\":1700000001.0,"
        "\"finished\":1700000002.25,\"result\":{\"exit_code\":1},\"error\":{"
        "\"code\":\"exit\",\"message\":\"exec: exited with status 1\"}}");
    free(text);
}
END_TEST

START_TEST(pending_row_has_only_what_it_holds)
{
    const char *v[AQ_PGR_NCOLS] = {
        [AQ_PGR_ID] = "7",           [AQ_PGR_QUEUE] = "q",
        [AQ_PGR_KIND] = "3",         [AQ_PGR_STATE] = "2",
        [AQ_PGR_PRIORITY] = "0",     [AQ_PGR_ATTEMPTS] = "0",
        [AQ_PGR_RETRIED] = "0",      [AQ_PGR_CREATED] = "1000000",
        [AQ_PGR_ARGS] = "{}",        [AQ_PGR_DUE] = "5000000",
        [AQ_PGR_AFTER_POLICY] = "0",
    };
    char *text = record_text(v);

    ck_assert_str_eq(text, "{\"job\":7,\"queue\":\"q\",\"kind\":\"echo\","
                           "\"state\":\"pending\",\"priority\":0,"
                           "\"attempts\":0,\"created\":1.0,\"args\":{}}");
    free(text);
}
END_TEST

START_TEST(due_only_while_delayed_or_waiting)
{
    const char *v[AQ_PGR_NCOLS] = {
        [AQ_PGR_ID] = "7",       [AQ_PGR_QUEUE] = "q",
        [AQ_PGR_KIND] = "2",     [AQ_PGR_STATE] = "0",
        [AQ_PGR_PRIORITY] = "0", [AQ_PGR_ATTEMPTS] = "0",
        [AQ_PGR_RETRIED] = "0",  [AQ_PGR_CREATED] = "1000000",
        [AQ_PGR_ARGS] = "",      [AQ_PGR_DUE] = "5000000",
    };
    json_t *rec = aq_pgremote_record(v);

    /* Args not kept (""): no args, as in memory. */
    ck_assert_ptr_null(json_object_get(rec, "args"));
    ck_assert_str_eq(json_string_value(json_object_get(rec, "kind")), "sleep");
    ck_assert(json_real_value(json_object_get(rec, "due")) == 5.0);
    json_decref(rec);
    v[AQ_PGR_STATE] = "1";
    rec = aq_pgremote_record(v);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")),
                     "waiting");
    ck_assert(json_real_value(json_object_get(rec, "due")) == 5.0);
    json_decref(rec);
    v[AQ_PGR_STATE] = "3";
    rec = aq_pgremote_record(v);
    ck_assert_ptr_null(json_object_get(rec, "due"));
    json_decref(rec);
}
END_TEST

START_TEST(row_no_job_could_be_is_refused)
{
    const char *v[AQ_PGR_NCOLS] = {
        [AQ_PGR_ID] = "7",    [AQ_PGR_QUEUE] = "q",   [AQ_PGR_KIND] = "0",
        [AQ_PGR_STATE] = "7", [AQ_PGR_CREATED] = "0",
    };

    ck_assert_ptr_null(aq_pgremote_record(v)); /* state */
    v[AQ_PGR_STATE] = "4";
    v[AQ_PGR_KIND] = "9";
    ck_assert_ptr_null(aq_pgremote_record(v)); /* kind */
    v[AQ_PGR_KIND] = "0";
    v[AQ_PGR_ID] = "0";
    ck_assert_ptr_null(aq_pgremote_record(v)); /* id */
    v[AQ_PGR_ID] = NULL;
    ck_assert_ptr_null(aq_pgremote_record(v));
}
END_TEST

#define COLS_END " FROM s1.jobs WHERE true"

START_TEST(list_of_everything_has_no_filter_but_the_page)
{
    struct aq_list l = {.states = 0x7f, .limit = 100};
    struct aq_pgremote_listq q;

    aq_pgremote_list_sql("s1", &l, &q);
    ck_assert_ptr_nonnull(strstr(q.sql, COLS_END " ORDER BY id LIMIT $1"));
    ck_assert_ptr_nonnull(strstr(q.sql, "SELECT id, queue, kind, state, "));
    ck_assert_int_eq(q.n, 1);
    ck_assert_str_eq(q.values[0], "101"); /* one beyond the page */
    free(q.sql);
}
END_TEST

START_TEST(list_filters_each_become_a_condition_and_a_parameter)
{
    struct aq_list l = {.queue = "q",
                        .states = (1u << 2) | (1u << 6),
                        .name = "n",
                        .batch = "b",
                        .after = 10,
                        .before = 99,
                        .limit = 5,
                        .is_desc = true};
    struct aq_pgremote_listq q;
    const char *end;

    aq_pgremote_list_sql("s1", &l, &q);
    end = strstr(q.sql, COLS_END);
    ck_assert_ptr_nonnull(end);
    ck_assert_str_eq(end, COLS_END " AND state = ANY($1::smallint[]) AND "
                                   "queue = $2 AND name = $3 AND batch = $4 "
                                   "AND id > $5 AND id < $6 ORDER BY id DESC "
                                   "LIMIT $7");
    ck_assert_int_eq(q.n, 7);
    ck_assert_str_eq(q.values[0], "{2,6}");
    ck_assert_str_eq(q.values[1], "q");
    ck_assert_str_eq(q.values[2], "n");
    ck_assert_str_eq(q.values[3], "b");
    ck_assert_str_eq(q.values[4], "10");
    ck_assert_str_eq(q.values[5], "99");
    ck_assert_str_eq(q.values[6], "6");
    free(q.sql);
}
END_TEST

START_TEST(list_of_one_state_and_a_bound)
{
    struct aq_list l = {.states = 1u << 0, .before = 3, .limit = 1};
    struct aq_pgremote_listq q;

    aq_pgremote_list_sql("s1", &l, &q);
    ck_assert_str_eq(strstr(q.sql, COLS_END),
                     COLS_END " AND state = ANY($1::smallint[]) AND id < $2 "
                              "ORDER BY id LIMIT $3");
    ck_assert_str_eq(q.values[0], "{0}");
    ck_assert_str_eq(q.values[1], "3");
    ck_assert_str_eq(q.values[2], "2");
    free(q.sql);
}
END_TEST

Suite *
pgremote_suite(void)
{
    Suite *s = suite_create("pgremote");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, finished_row_has_every_field_a_record_has);
    tcase_add_test(tc, pending_row_has_only_what_it_holds);
    tcase_add_test(tc, due_only_while_delayed_or_waiting);
    tcase_add_test(tc, row_no_job_could_be_is_refused);
    tcase_add_test(tc, list_of_everything_has_no_filter_but_the_page);
    tcase_add_test(tc, list_filters_each_become_a_condition_and_a_parameter);
    tcase_add_test(tc, list_of_one_state_and_a_bound);
    suite_add_tcase(s, tc);
    return s;
}
