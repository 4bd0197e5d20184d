/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_list.c: the list method (spec section 9) against a real
 * asyncqd: filters by queue and state (one or an array), cursor paging
 * with after/before in both orders visiting every job exactly once with
 * an exact null next, the limit's bounds and the params errors naming
 * their field, an unknown queue; states as they change: a delayed job
 * whose time comes, a running job, finished and evicted records; and the
 * same list after a restart from the journal.
 *
 * JSON is written with ' for " (bb_jsonq); nothing sleeps.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define POLL_MS 10000 /* deadline for a state the daemon reaches itself */
#define MAX_IDS 256

/* a: echo, no consumer (pending); b: echo (done); c: exec (failed with
 * /bin/false); s: sleep, one consumer (running). */
#define QUEUES                                                                 \
    "'queues':{'a':{'kind':'echo','consumers':0},"                             \
    "'b':{'kind':'echo','consumers':2},"                                       \
    "'c':{'kind':'exec','consumers':1,'exec':{'allow':['*']}},"                \
    "'s':{'kind':'sleep','consumers':1}}"

/* The ids of a page (at most MAX_IDS) into ids; returns how many, and
 * its next (0 for null) into *next. Checks the page's shape. */
static size_t
page_ids(const json_t *page, json_int_t *ids, json_int_t *next)
{
    const json_t *jobs = json_object_get(page, "jobs");
    const json_t *n = json_object_get(page, "next");
    size_t i;
    json_t *rec;

    ck_assert_msg(json_is_array(jobs), "list: no jobs array: %s",
                  bb_dump(page));
    ck_assert_msg(n != NULL && (json_is_null(n) || json_is_integer(n)),
                  "list: next must be an id or null: %s", bb_dump(page));
    *next = json_is_integer(n) ? json_integer_value(n) : 0;
    ck_assert_uint_le(json_array_size(jobs), MAX_IDS);
    json_array_foreach (jobs, i, rec)
        ids[i] = bb_int_at(rec, "job");
    return json_array_size(jobs);
}

/* list with params (taken): the ids of the page, its next. */
static size_t
list_ids(struct bb_conn *c, json_t *params, json_int_t *ids, json_int_t *next)
{
    json_t *page = bb_result(c, "list", params);
    size_t n = page_ids(page, ids, next);

    json_decref(page);
    return n;
}

/* Asserts the page of params is exactly want (n ids, in order) and the
 * last page. */
static void
assert_list(struct bb_conn *c, json_t *params, const json_int_t *want, size_t n)
{
    json_int_t ids[MAX_IDS], next;
    char *shown = bb_dump(params);
    size_t got = list_ids(c, params, ids, &next);

    ck_assert_msg(got == n, "list %s: %zu jobs, expected %zu", shown, got, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i],
                      "list %s: job %zu is %lld, expected %lld", shown, i,
                      (long long)ids[i], (long long)want[i]);
    ck_assert_msg(next == 0, "list %s: next %lld, expected null", shown,
                  (long long)next);
    free(shown);
}

static json_int_t
put_echo(struct bb_conn *c, const char *queue, bool wait)
{
    json_t *r =
        bb_result(c, "put",
                  bb_jsonq("{'queue':'%s','kind':'echo','args':{'n':1}%s}",
                           queue, wait ? ",'wait':true" : ""));
    json_int_t id = bb_int_at(r, "job");

    if (wait)
        ck_assert_str_eq(bb_str_at(r, "state"), "done");
    json_decref(r);
    return id;
}

static json_int_t
put_failing(struct bb_conn *c)
{
    json_t *r = bb_result(
        c, "put",
        bb_jsonq("{'queue':'c','args':{'argv':['/bin/false']},'wait':true}"));
    json_int_t id = bb_int_at(r, "job");

    ck_assert_str_eq(bb_str_at(r, "state"), "failed");
    json_decref(r);
    return id;
}

/* The state list gives for job id (polls until it is want). */
struct listed {
    struct bb_conn *c;
    json_int_t id;
    const char *state;
};

static bool
listed_as(void *arg)
{
    struct listed *l = arg;
    json_int_t ids[MAX_IDS], next;
    size_t n = list_ids(l->c, bb_jsonq("{'state':'%s','limit':1000}", l->state),
                        ids, &next);

    for (size_t i = 0; i < n; i++) {
        if (ids[i] == l->id)
            return true;
    }
    return false;
}

/* ---- filters ---- */

START_TEST(list_filters_by_queue_and_state)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t pend[3], done[3], failed[2], all[8], running, ids[MAX_IDS], next;
    json_t *page;

    /* Interleaved, so that each state's ids are not one run. */
    for (int i = 0; i < 3; i++) {
        pend[i] = put_echo(c, "a", false);
        done[i] = put_echo(c, "b", true);
        if (i < 2)
            failed[i] = put_failing(c);
    }
    running =
        bb_put_job(c, bb_jsonq("{'queue':'s','args':{'seconds':60}}"), POLL_MS);
    bb_await_state(c, running, "running", POLL_MS);

    assert_list(c, bb_jsonq("{'queue':'a'}"), pend, 3);
    assert_list(c, bb_jsonq("{'state':'pending'}"), pend, 3);
    assert_list(c, bb_jsonq("{'state':'done'}"), done, 3);
    assert_list(c, bb_jsonq("{'queue':'c','state':'failed'}"), failed, 2);
    assert_list(c, bb_jsonq("{'state':'running'}"), &running, 1);
    assert_list(c, bb_jsonq("{'queue':'b','state':'pending'}"), NULL, 0);
    assert_list(c, bb_jsonq("{'state':'waiting'}"), NULL, 0);
    assert_list(c, bb_jsonq("{'state':['delayed','cancelled']}"), NULL, 0);
    /* An array of states merges them by id. */
    all[0] = pend[0], all[1] = done[0], all[2] = failed[0];
    all[3] = pend[1], all[4] = done[1], all[5] = failed[1];
    all[6] = pend[2], all[7] = done[2];
    {
        json_int_t want[6] = {pend[0], failed[0], pend[1], failed[1], pend[2]};
        assert_list(c, bb_jsonq("{'state':['failed','pending']}"), want, 5);
    }
    {
        json_int_t want[9];

        memcpy(want, all, sizeof all);
        want[8] = running;
        assert_list(c, bb_jsonq("{}"), want, 9);
    }
    /* The records are status's: queue, state, the rest. */
    page = bb_result(c, "list", bb_jsonq("{'state':'failed','limit':1}"));
    ck_assert_int_eq(bb_int_at(page, "next"), failed[0]);
    {
        json_t *rec = json_array_get(json_object_get(page, "jobs"), 0),
               *st = bb_job_status(c, failed[0]);

        ck_assert_int_eq(bb_int_at(rec, "job"), failed[0]);
        ck_assert_str_eq(bb_str_at(rec, "queue"), "c");
        ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
        ck_assert_ptr_nonnull(bb_at(rec, "error"));
        ck_assert_msg(json_equal(rec, st), "list %s, status %s", bb_dump(rec),
                      bb_dump(st));
        json_decref(st);
    }
    json_decref(page);
    /* A cancel moves a job from pending to cancelled. */
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)pend[1])));
    assert_list(c, bb_jsonq("{'state':'cancelled'}"), &pend[1], 1);
    {
        json_int_t want[2] = {pend[0], pend[2]};
        assert_list(c, bb_jsonq("{'queue':'a','state':'pending'}"), want, 2);
    }
    ck_assert_uint_eq(list_ids(c, bb_jsonq("{'name':'x'}"), ids, &next), 0);
    ck_assert_int_eq(next, 0);
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)running)));
    assert_list(c, bb_jsonq("{'state':'running'}"), NULL, 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- paging ---- */

/* Follows next from params_fmt (with a %s for the cursor member) page by
 * page; returns the ids seen, in order. */
static size_t
walk_pages(struct bb_conn *c, const char *base, const char *cursor,
           json_int_t limit, json_int_t *out, size_t *npages)
{
    json_int_t next = 0;
    size_t n = 0;

    *npages = 0;
    do {
        json_int_t ids[MAX_IDS];
        char extra[64] = "";
        size_t got;

        if (next != 0)
            snprintf(extra, sizeof extra, ",'%s':%lld", cursor,
                     (long long)next);
        got = list_ids(
            c, bb_jsonq("{%s'limit':%lld%s}", base, (long long)limit, extra),
            ids, &next);
        ck_assert_msg(got > 0 || next == 0, "an empty page with a next");
        ck_assert_uint_le(got, (size_t)limit);
        if (next != 0)
            ck_assert_msg(got == (size_t)limit, "a short page with a next");
        ck_assert_uint_le(n + got, MAX_IDS);
        memcpy(out + n, ids, got * sizeof *ids);
        n += got;
        ck_assert_uint_lt(++*npages, 100);
    } while (next != 0);
    return n;
}

START_TEST(paging_visits_every_job_exactly_once)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[40], seen[MAX_IDS];
    size_t n, npages;

    for (int i = 0; i < 40; i++)
        ids[i] = put_echo(c, i % 3 == 0 ? "b" : "a", i % 3 == 0);
    /* 40 jobs by 5, ascending: 8 full pages, the last with next null. */
    n = walk_pages(c, "", "after", 5, seen, &npages);
    ck_assert_uint_eq(n, 40);
    ck_assert_uint_eq(npages, 8);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(seen[i], ids[i]);
    /* Descending by 7: 6 pages, highest first. */
    n = walk_pages(c, "'order':'desc',", "before", 7, seen, &npages);
    ck_assert_uint_eq(n, 40);
    ck_assert_uint_eq(npages, 6);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(seen[i], ids[39 - i]);
    /* One state of one queue, by 4, both ways. */
    n = walk_pages(c, "'queue':'a','state':'pending',", "after", 4, seen,
                   &npages);
    ck_assert_uint_eq(n, 26);
    for (size_t i = 0, k = 0; i < 40; i++) {
        if (i % 3 != 0)
            ck_assert_int_eq(seen[k++], ids[i]);
    }
    n = walk_pages(c, "'state':'done','order':'desc',", "before", 4, seen,
                   &npages);
    ck_assert_uint_eq(n, 14);
    ck_assert_int_eq(seen[0], ids[39]);
    ck_assert_int_eq(seen[13], ids[0]);
    /* after and before together: ids strictly between, either order. */
    {
        json_int_t want[5];

        for (int i = 0; i < 5; i++)
            want[i] = ids[10 + i];
        assert_list(c,
                    bb_jsonq("{'after':%lld,'before':%lld}", (long long)ids[9],
                             (long long)ids[15]),
                    want, 5);
        for (int i = 0; i < 5; i++)
            want[i] = ids[14 - i];
        assert_list(c,
                    bb_jsonq("{'after':%lld,'before':%lld,'order':'desc'}",
                             (long long)ids[9], (long long)ids[15]),
                    want, 5);
        assert_list(c,
                    bb_jsonq("{'after':%lld,'before':%lld}", (long long)ids[15],
                             (long long)ids[9]),
                    NULL, 0);
    }
    /* A page that ends exactly at the last job says null. */
    assert_list(c, bb_jsonq("{'after':%lld,'limit':1}", (long long)ids[38]),
                &ids[39], 1);
    assert_list(c, bb_jsonq("{'after':%lld}", (long long)ids[39]), NULL, 0);
    assert_list(
        c,
        bb_jsonq("{'before':%lld,'order':'desc','limit':1}", (long long)ids[1]),
        &ids[0], 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- params ---- */

/* list with params text (' for ") fails with -32602 naming field. */
static void
assert_invalid(struct bb_conn *c, const char *params, const char *field)
{
    json_t *r = bb_call(c, "list", bb_jsonq("%s", params));
    const json_t *e = json_object_get(r, "error");
    const char *msg;

    ck_assert_msg(e != NULL, "list %s: expected an error, got %s", params,
                  bb_dump(r));
    ck_assert_int_eq(bb_int_at(r, "error.code"), INVALID_PARAMS);
    msg = bb_str_at(r, "error.message");
    ck_assert_msg(strstr(msg, field) != NULL,
                  "list %s: message \"%s\" does not name %s", params, msg,
                  field);
    json_decref(r);
}

START_TEST(list_params_are_checked_strictly)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[MAX_IDS], next;

    for (int i = 0; i < 3; i++)
        put_echo(c, "a", false);
    ck_assert_uint_eq(list_ids(c, bb_jsonq("{'limit':1}"), ids, &next), 1);
    ck_assert_int_eq(next, ids[0]);
    ck_assert_uint_eq(list_ids(c, bb_jsonq("{'limit':1000}"), ids, &next), 3);
    assert_invalid(c, "{'limit':0}", "params.limit");
    assert_invalid(c, "{'limit':1001}", "params.limit");
    assert_invalid(c, "{'limit':'5'}", "params.limit");
    assert_invalid(c, "{'limit':2.5}", "params.limit");
    assert_invalid(c, "{'state':'bogus'}", "params.state");
    assert_invalid(c, "{'state':[]}", "params.state");
    assert_invalid(c, "{'state':5}", "params.state");
    assert_invalid(c, "{'state':['done',3]}", "params.state[1]");
    assert_invalid(c, "{'state':['done','Done']}", "params.state[1]");
    assert_invalid(c, "{'order':'up'}", "params.order");
    assert_invalid(c, "{'order':1}", "params.order");
    assert_invalid(c, "{'after':0}", "params.after");
    assert_invalid(c, "{'after':-1}", "params.after");
    assert_invalid(c, "{'after':'7'}", "params.after");
    assert_invalid(c, "{'before':1.5}", "params.before");
    assert_invalid(c, "{'queue':5}", "params.queue");
    assert_invalid(c, "{'name':true}", "params.name");
    assert_invalid(c, "{'batch':{}}", "params.batch");
    assert_invalid(c, "{'bogus':1}", "bogus");
    ck_assert_int_eq(bb_error(c, "list", bb_jsonq("{'queue':'nope'}")),
                     NO_SUCH_QUEUE);
    ck_assert_int_eq(bb_error(c, "list", bb_jsonq("[1]")), INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- states as they change ---- */

START_TEST(delayed_job_is_listed_pending_once_due)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id = bb_put_job(
        c, bb_jsonq("{'queue':'a','kind':'echo','args':{},'delay':0.3}"),
        POLL_MS);
    struct listed l = {c, id, "pending"};
    json_t *rec;

    assert_list(c, bb_jsonq("{'state':'delayed'}"), &id, 1);
    ck_assert_msg(bb_poll(listed_as, &l, POLL_MS),
                  "job %lld never listed pending", (long long)id);
    assert_list(c, bb_jsonq("{'state':'delayed'}"), NULL, 0);
    assert_list(c, bb_jsonq("{'queue':'a','state':'pending'}"), &id, 1);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(evicted_records_leave_the_list)
{
    struct bb_daemon *d = bb_startq("{'results':{'max':3}," QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[6];

    for (int i = 0; i < 6; i++)
        ids[i] = put_echo(c, "b", true);
    assert_list(c, bb_jsonq("{'queue':'b'}"), &ids[3], 3);
    assert_list(c,
                bb_jsonq("{'state':'done','order':'desc','limit':1,"
                         "'before':%lld}",
                         (long long)ids[4]),
                &ids[3], 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- restart ---- */

/* The whole list as one JSON array of [id, queue, state]. */
static json_t *
list_summary(struct bb_conn *c)
{
    json_t *page = bb_result(c, "list", bb_jsonq("{'limit':1000}"));
    json_t *out = json_array(), *rec;
    size_t i;

    ck_assert(json_is_null(json_object_get(page, "next")));
    json_array_foreach (json_object_get(page, "jobs"), i, rec)
        json_array_append_new(out, json_pack("[I,s,s]", bb_int_at(rec, "job"),
                                             bb_str_at(rec, "queue"),
                                             bb_str_at(rec, "state")));
    json_decref(page);
    return out;
}

START_TEST(list_after_a_restart_is_the_same)
{
    char root[] = "/tmp/asyncq-bbl.XXXXXX", cfg[512];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *before, *after;
    json_int_t delayed, cancelled;

    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{'journal':{'path':'%s/journal'},'shutdown':{'grace':0.1}," QUEUES
             "}",
             root);
    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < 4; i++) {
        put_echo(c, "a", false);
        put_echo(c, "b", true);
    }
    put_failing(c);
    delayed = bb_put_job(
        c, bb_jsonq("{'queue':'a','kind':'echo','args':{},'delay':3600}"),
        POLL_MS);
    cancelled = put_echo(c, "a", false);
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)cancelled)));
    before = list_summary(c);
    ck_assert_uint_eq(json_array_size(before), 11);
    assert_list(c, bb_jsonq("{'state':'delayed'}"), &delayed, 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    after = list_summary(c);
    ck_assert_msg(json_equal(before, after), "before %s, after %s",
                  bb_dump(before), bb_dump(after));
    assert_list(c, bb_jsonq("{'state':'delayed'}"), &delayed, 1);
    assert_list(c, bb_jsonq("{'state':'cancelled'}"), &cancelled, 1);
    /* New jobs and state changes after the restart are indexed too. */
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)delayed)));
    {
        json_int_t want[2] = {delayed, cancelled};

        if (delayed > cancelled)
            want[0] = cancelled, want[1] = delayed;
        assert_list(c, bb_jsonq("{'state':'cancelled'}"), want, 2);
    }
    assert_list(c, bb_jsonq("{'state':'delayed'}"), NULL, 0);
    json_decref(before);
    json_decref(after);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}
END_TEST

Suite *
bb_list_suite(void)
{
    Suite *s = suite_create("bb_list");
    TCase *tc = tcase_create("list");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, list_filters_by_queue_and_state);
    tcase_add_test(tc, paging_visits_every_job_exactly_once);
    tcase_add_test(tc, list_params_are_checked_strictly);
    tcase_add_test(tc, delayed_job_is_listed_pending_once_due);
    tcase_add_test(tc, evicted_records_leave_the_list);
    tcase_add_test(tc, list_after_a_restart_is_the_same);
    suite_add_tcase(s, tc);
    return s;
}
