/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_cli_manage.c: the CLI's triage verbs (spec section 9) against a
 * real asyncqd: list as a table that fits 80 columns with its next-page
 * footer, --wide, --json, filters and paging; retry and delete by id and
 * by queue; cancel of a whole queue; status showing what the job was.
 * They need the server's list, retry, delete and cancel by queue, and
 * records that keep args.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define CONFIG                                                                 \
    "{'queues':{"                                                              \
    "'default':{'kind':'exec','consumers':2,"                                  \
    "'exec':{'path':'/usr/local/bin:/usr/bin:/bin'}},"                         \
    "'held':{'kind':'exec','consumers':0},"                                    \
    "'e':{'kind':'echo','consumers':1}}}"

#define LONG_ARG                                                               \
    "an-argument-long-enough-to-push-the-command-column-past-eighty-columns"

static json_int_t
put_job(struct bb_conn *c, const char *params)
{
    return bb_put_job(c, bb_jsonq("%s", params), BB_TIMEOUT_MS);
}

/* A job on default that fails with a long message on stderr. */
static json_int_t
put_failing(struct bb_conn *c)
{
    json_int_t id = put_job(c, "{'args':{'argv':['/bin/sh','-c','exit 7']}}");

    bb_await_state(c, id, "failed", 10000);
    return id;
}

static char *
id_text(json_int_t id)
{
    static char buf[4][32];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%lld", (long long)id);
    return buf[k];
}

/* Whether some line of text starts with id as its first word (the ID
 * column is right-aligned). */
static bool
has_row(const char *text, json_int_t id)
{
    for (const char *p = text; p != NULL && *p != '\0';) {
        long long got;
        char word[64];

        /* not the footer's "2 jobs shown" */
        if (sscanf(p, " %lld %63s", &got, word) == 2 && got == id &&
            strcmp(word, "jobs") != 0 && strcmp(word, "job") != 0)
            return true;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

START_TEST(list_prints_a_table_that_fits_80_columns)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p =
        put_job(c, "{'queue':'held','args':{'argv':['/bin/echo','" LONG_ARG
                   "','it s']}}");
    json_int_t f = put_failing(c);
    struct bb_run r;
    json_t *v;

    asyncq(&r, d, "list", NULL);
    assert_exit(&r, 0);
    assert_fits(&r, r.out, 80);
    for (const char *h = "ID\0QUEUE\0STATE\0COMMAND\0ATTEMPTS\0AGE\0ERROR\0";
         *h != '\0'; h += strlen(h) + 1)
        assert_has(&r, r.out, h);
    ck_assert(has_row(r.out, p));
    ck_assert(has_row(r.out, f));
    assert_has(&r, r.out, "/bin/echo an-argument");
    assert_has(&r, r.out, "\xe2\x80\xa6"); /* cut with an ellipsis */
    assert_has(&r, r.out, "pending");
    assert_has(&r, r.out, "failed");
    ck_assert_msg(strstr(r.out, "next page") == NULL, "%s: %s", r.cmd, r.out);
    bb_run_free(&r);

    /* --wide: the whole command, shell-quoted */
    asyncq(&r, d, "list", "--wide", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "/bin/echo " LONG_ARG " 'it s'");
    bb_run_free(&r);

    /* filters */
    asyncq(&r, d, "list", "-s", "failed", NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, f));
    ck_assert(!has_row(r.out, p));
    assert_has(&r, r.out, "exit");
    bb_run_free(&r);
    asyncq(&r, d, "list", "-q", "held", NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, p));
    ck_assert(!has_row(r.out, f));
    bb_run_free(&r);
    asyncq(&r, d, "list", "-s", "pending,failed", NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, p) && has_row(r.out, f));
    bb_run_free(&r);

    /* --json: the raw result */
    asyncq(&r, d, "--json", "list", "-q", "held", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_int_eq(json_array_size(bb_at(v, "jobs")), 1);
    ck_assert_int_eq(bb_int_at(json_array_get(bb_at(v, "jobs"), 0), "job"), p);
    ck_assert(json_is_null(bb_at(v, "next")));
    json_decref(v);
    bb_run_free(&r);

    asyncq(&r, d, "list", "-q", "e", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "no jobs");
    bb_run_free(&r);

    asyncq(&r, d, "list", "-n", "0", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(list_footer_gives_the_command_for_the_next_page)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[5];
    char want[128];
    struct bb_run r;

    for (int i = 0; i < 5; i++)
        ids[i] = put_job(c, "{'queue':'held','args':{'argv':['/bin/true']}}");
    asyncq(&r, d, "list", "-q", "held", "-n", "2", NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, ids[0]) && has_row(r.out, ids[1]));
    ck_assert(!has_row(r.out, ids[2]));
    snprintf(want, sizeof want, "asyncq list -q held -n 2 --after %lld",
             (long long)ids[1]);
    assert_has(&r, r.out, want);
    assert_fits(&r, r.out, 80);
    bb_run_free(&r);

    asyncq(&r, d, "list", "-q", "held", "-n", "2", "--after", id_text(ids[1]),
           NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, ids[2]) && has_row(r.out, ids[3]));
    ck_assert(!has_row(r.out, ids[1]));
    bb_run_free(&r);

    /* newest first: the footer pages with --before */
    asyncq(&r, d, "list", "-q", "held", "-n", "2", "--desc", NULL);
    assert_exit(&r, 0);
    ck_assert(has_row(r.out, ids[4]) && has_row(r.out, ids[3]));
    snprintf(want, sizeof want, "--before %lld", (long long)ids[3]);
    assert_has(&r, r.out, want);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(retry_by_id_and_by_queue)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t f1 = put_failing(c), f2 = put_failing(c), f3 = put_failing(c);
    json_int_t p = put_job(c, "{'queue':'held','args':{'argv':['/bin/true']}}");
    char want[64];
    struct bb_run r;
    json_t *rec, *v;

    asyncq(&r, d, "retry", id_text(f1), NULL);
    assert_exit(&r, 0);
    snprintf(want, sizeof want, "job %lld ", (long long)f1);
    assert_has(&r, r.out, want);
    bb_run_free(&r);
    bb_await_state(c, f1, "failed", 10000);
    rec = bb_job_status(c, f1);
    ck_assert_int_eq(bb_int_at(rec, "retried"), 1);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);

    /* a live job cannot be retried: the server says no (4) */
    asyncq(&r, d, "retry", id_text(p), NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32012");
    bb_run_free(&r);

    asyncq(&r, d, "--json", "retry", "-q", "default", "--failed", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_int_eq(bb_int_at(v, "retried"), 3);
    json_decref(v);
    bb_run_free(&r);
    bb_await_state(c, f2, "failed", 10000);
    bb_await_state(c, f3, "failed", 10000);
    bb_await_state(c, f1, "failed", 10000);

    asyncq(&r, d, "retry", "-q", "default", "--failed", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "queue default: 3 failed jobs retried");
    bb_run_free(&r);

    asyncq(&r, d, "retry", "-q", "default", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    asyncq(&r, d, "retry", "-q", "default", "--done", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(delete_by_id_and_by_queue)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t f1 = put_failing(c), f2 = put_failing(c);
    json_int_t p = put_job(c, "{'queue':'held','args':{'argv':['/bin/true']}}");
    char want[64];
    struct bb_run r;

    asyncq(&r, d, "delete", id_text(f1), NULL);
    assert_exit(&r, 0);
    snprintf(want, sizeof want, "job %lld deleted", (long long)f1);
    assert_has(&r, r.out, want);
    bb_run_free(&r);
    asyncq(&r, d, "status", id_text(f1), NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32004");
    bb_run_free(&r);

    asyncq(&r, d, "delete", id_text(p), NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32012");
    bb_run_free(&r);

    asyncq(&r, d, "delete", "-q", "default", "--failed", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "queue default: 1 failed job deleted");
    bb_run_free(&r);
    asyncq(&r, d, "status", id_text(f2), NULL);
    assert_exit(&r, 4);
    bb_run_free(&r);

    asyncq(&r, d, "delete", "-q", "default", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_all_of_a_queue)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;

    for (int i = 0; i < 3; i++)
        put_job(c, "{'queue':'held','args':{'argv':['/bin/true']}}");
    asyncq(&r, d, "cancel", "-q", "held", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "held", "unfinished"), 3);

    asyncq(&r, d, "cancel", "-q", "held", "--all", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "queue held: 3 jobs cancelled");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "held", "unfinished"), 0);

    asyncq(&r, d, "cancel", "-q", "held", "--all", "--running", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "queue held: 0 jobs cancelled");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_shows_the_command_and_the_due_time)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p = put_job(c, "{'queue':'held','args':{'argv':['/bin/echo',"
                              "'a b','it s']}}");
    json_int_t l = put_job(c, "{'queue':'held','delay':300,"
                              "'args':{'argv':['/bin/true']}}");
    struct bb_run r;

    asyncq(&r, d, "status", id_text(p), NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "command   /bin/echo 'a b' 'it s'\n");
    bb_run_free(&r);

    asyncq(&r, d, "status", id_text(l), NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "delayed");
    assert_has(&r, r.out, "due");
    assert_has(&r, r.out, "(in 4m");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_cli_manage_suite(void)
{
    Suite *s = suite_create("bb_cli_manage");
    TCase *t = tcase_create("manage");

    tcase_set_timeout(t, 90);
    tcase_add_test(t, list_prints_a_table_that_fits_80_columns);
    tcase_add_test(t, list_footer_gives_the_command_for_the_next_page);
    tcase_add_test(t, retry_by_id_and_by_queue);
    tcase_add_test(t, delete_by_id_and_by_queue);
    tcase_add_test(t, cancel_all_of_a_queue);
    tcase_add_test(t, status_shows_the_command_and_the_due_time);
    suite_add_tcase(s, t);
    return s;
}
