/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_batch.c: batches (spec section 11) against a real asyncqd: a
 * put's batch in its record; stats by batch counting each state exactly
 * across two queues and two batches; join by batch waiting for its own
 * jobs only (a slow job of another batch does not hold it), at once for
 * an unknown batch, -32008 past its timeout; list by batch; evicted,
 * retried and deleted records and a restart from the journal keep the
 * counts exact; the params errors; the CLI's put -f --batch, join --batch
 * and stats --batch. JSON is written with ' for " (bb_jsonq); nothing
 * sleeps: a reply that must not come is waited for with a deadline.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbsuites.h"

#define POLL_MS 10000
#define QUIET_MS 300 /* how long a reply that must not come is awaited */

/* a: echo, no consumer (pending); b: echo (done); c: exec (failed with
 * /bin/false); s: sleep, one consumer (running). */
#define QUEUES                                                                 \
    "'queues':{'a':{'kind':'echo','consumers':0},"                             \
    "'b':{'kind':'echo','consumers':2},"                                       \
    "'c':{'kind':'exec','consumers':1,'exec':{'allow':['*']}},"                \
    "'s':{'kind':'sleep','consumers':1}}"

static json_int_t
put_in(struct bb_conn *c, const char *queue, const char *batch,
       const char *extra)
{
    json_t *r = bb_result(
        c, "put",
        bb_jsonq("{'queue':'%s','batch':'%s'%s}", queue, batch, extra));
    json_int_t id = bb_int_at(r, "job");

    json_decref(r);
    return id;
}

/* Fails unless stats of batch is exactly want (taken). */
static void
assert_batch(struct bb_conn *c, const char *batch, json_t *want)
{
    json_t *got = bb_result(c, "stats", bb_jsonq("{'batch':'%s'}", batch));

    json_object_set_new(want, "batch", json_string(batch));
    ck_assert_msg(json_equal(got, want), "stats of batch %s: %s, expected %s",
                  batch, bb_dump(got), bb_dump(want));
    json_decref(got);
    json_decref(want);
}

/* stats of batch x as the daemon should count them now. */
#define COUNTS(total, unf, del, pen, run, done, fail, canc)                    \
    bb_jsonq("{'total':%d,'unfinished':%d,'delayed':%d,'waiting':0,"           \
             "'pending':%d,'running':%d,'done':%d,'failed':%d,"                \
             "'cancelled':%d}",                                                \
             total, unf, del, pen, run, done, fail, canc)

/* Batch x: 2 pending (a), 1 delayed (a), 1 running (s), 2 done (b), 1
 * failed (c), 1 cancelled (a); batch y: 1 pending (a), 1 done (b). */
static json_int_t
fill_batches(struct bb_conn *c, json_int_t *running)
{
    json_int_t cancelled;

    put_in(c, "a", "x", ",'args':{}");
    put_in(c, "a", "x", ",'args':{}");
    put_in(c, "a", "x", ",'args':{},'delay':3600");
    *running = put_in(c, "s", "x", ",'args':{'seconds':60}");
    put_in(c, "b", "x", ",'args':{},'wait':true");
    put_in(c, "b", "x", ",'args':{},'wait':true");
    put_in(c, "c", "x", ",'args':{'argv':['/bin/false']},'wait':true");
    cancelled = put_in(c, "a", "x", ",'args':{}");
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)cancelled)));
    put_in(c, "a", "y", ",'args':{}");
    put_in(c, "b", "y", ",'args':{},'wait':true");
    bb_await_state(c, *running, "running", POLL_MS);
    return cancelled;
}

START_TEST(stats_by_batch_counts_each_state_exactly)
{
    struct bb_daemon *d = bb_startq("{'shutdown':{'grace':0.1}," QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t running, cancelled;
    json_t *rec, *page;

    cancelled = fill_batches(c, &running);
    assert_batch(c, "x", COUNTS(8, 4, 1, 2, 1, 2, 1, 1));
    assert_batch(c, "y", COUNTS(2, 1, 0, 1, 0, 1, 0, 0));
    assert_batch(c, "nobody", COUNTS(0, 0, 0, 0, 0, 0, 0, 0));
    rec = bb_job_status(c, cancelled);
    ck_assert_str_eq(bb_str_at(rec, "batch"), "x");
    json_decref(rec);
    /* list by batch: its jobs only, filtered by queue and state too */
    page = bb_result(c, "list", bb_jsonq("{'batch':'x'}"));
    ck_assert_uint_eq(json_array_size(json_object_get(page, "jobs")), 8);
    json_decref(page);
    page = bb_result(c, "list",
                     bb_jsonq("{'batch':'x','queue':'a','state':'pending'}"));
    ck_assert_uint_eq(json_array_size(json_object_get(page, "jobs")), 2);
    json_decref(page);
    page = bb_result(c, "list", bb_jsonq("{'batch':'y','state':'done'}"));
    ck_assert_uint_eq(json_array_size(json_object_get(page, "jobs")), 1);
    ck_assert_str_eq(
        bb_str_at(json_array_get(json_object_get(page, "jobs"), 0), "queue"),
        "b");
    json_decref(page);
    /* the running job cancelled: running -> cancelled */
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)running)));
    bb_await_state(c, running, "cancelled", POLL_MS);
    assert_batch(c, "x", COUNTS(8, 3, 1, 2, 0, 2, 1, 2));
    /* params */
    ck_assert_int_eq(
        bb_error(c, "stats", bb_jsonq("{'batch':'x','queue':'a'}")),
        INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "join", bb_jsonq("{'batch':'x','queue':'a'}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "join", bb_jsonq("{'batch':1}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'a','args':{},'batch':''}")),
        INVALID_PARAMS);
    {
        char long_name[202];

        memset(long_name, 'n', 201);
        long_name[201] = '\0';
        ck_assert_int_eq(bb_error(c, "put",
                                  bb_jsonq("{'queue':'a','args':{},'batch':"
                                           "'%s'}",
                                           long_name)),
                         INVALID_PARAMS);
        long_name[200] = '\0'; /* 200 bytes: taken */
        put_in(c, "a", long_name, ",'args':{}");
        assert_batch(c, long_name, COUNTS(1, 1, 0, 1, 0, 0, 0, 0));
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_by_batch_waits_for_its_own_jobs_only)
{
    struct bb_daemon *d = bb_startq("{'shutdown':{'grace':0.1}," QUEUES "}");
    struct bb_conn *c = bb_connect(d), *c2 = bb_connect(d);
    json_int_t slow, join_id;
    json_t *r;

    slow = put_in(c, "s", "slow", ",'args':{'seconds':60}");
    bb_await_state(c, slow, "running", POLL_MS);
    for (int i = 0; i < 5; i++)
        put_in(c, "a", "fast", ",'args':{}");
    /* unknown batch: at once; a batch with only finished jobs too */
    r = bb_result_within(c, "join", bb_jsonq("{'batch':'nobody'}"), 2000);
    ck_assert_str_eq(bb_str_at(r, "batch"), "nobody");
    json_decref(r);
    put_in(c, "b", "over", ",'args':{},'wait':true");
    r = bb_result_within(c, "join", bb_jsonq("{'batch':'over'}"), 2000);
    ck_assert_str_eq(bb_str_at(r, "batch"), "over");
    json_decref(r);
    /* fast's jobs wait for a consumer: the join waits */
    join_id = bb_send_call(c2, "join", bb_jsonq("{'batch':'fast'}"));
    ck_assert_ptr_null(bb_wait_reply(c2, join_id, QUIET_MS));
    /* past its timeout: -32008 */
    ck_assert_int_eq(
        bb_error(c, "join", bb_jsonq("{'batch':'slow','timeout':0.2}")),
        TIMED_OUT);
    /* a's consumer runs fast's jobs: the join answers while slow runs */
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'a','consumers':1}")));
    r = bb_wait_reply(c2, join_id, POLL_MS);
    ck_assert_msg(r != NULL, "join of batch fast: no reply");
    ck_assert_str_eq(bb_str_at(r, "result.batch"), "fast");
    json_decref(r);
    r = bb_job_status(c, slow);
    ck_assert_str_eq(bb_str_at(r, "state"), "running");
    json_decref(r);
    bb_close(c);
    bb_close(c2);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* How many jobs of batch list gives (in state, if not NULL). */
static json_int_t
list_count(struct bb_conn *c, const char *batch, const char *state)
{
    json_t *page = bb_result(
        c, "list",
        state != NULL
            ? bb_jsonq("{'batch':'%s','state':'%s','limit':1000}", batch, state)
            : bb_jsonq("{'batch':'%s','limit':1000}", batch));
    json_int_t n = (json_int_t)json_array_size(json_object_get(page, "jobs"));

    json_decref(page);
    return n;
}

/* Evicted records leave the counts; a retried record keeps its batch; a
 * deleted one leaves; a restart from the journal counts the same. */
START_TEST(counts_follow_eviction_retry_delete_and_a_restart)
{
    char root[] = "/tmp/asyncq-bbb.XXXXXX", cfg[512];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t running, cancelled, done;
    json_t *before, *after, *rec;

    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{'journal':{'path':'%s/journal'},'shutdown':{'grace':0.1},"
             "'results':{'max':3}," QUEUES "}",
             root);
    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    cancelled = fill_batches(c, &running);
    /* 3 done records kept of 4 (x: 2, y: 1 then 1 more): the oldest goes */
    done = put_in(c, "b", "y", ",'args':{},'wait':true");
    assert_batch(c, "x", COUNTS(7, 4, 1, 2, 1, 1, 1, 1));
    assert_batch(c, "y", COUNTS(3, 1, 0, 1, 0, 2, 0, 0));
    before = bb_result(c, "stats", bb_jsonq("{'batch':'x'}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* the running job was cut by the stop: pending again, as before */
    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'s','consumers':0}")));
    after = bb_result(c, "stats", bb_jsonq("{'batch':'x'}"));
    ck_assert_int_eq(bb_int_at(after, "total"), bb_int_at(before, "total"));
    ck_assert_int_eq(bb_int_at(after, "unfinished"),
                     bb_int_at(before, "unfinished"));
    ck_assert_int_eq(bb_int_at(after, "running") + bb_int_at(after, "pending"),
                     3);
    ck_assert_int_eq(bb_int_at(after, "done"), 1);
    ck_assert_int_eq(bb_int_at(after, "failed"), 1);
    ck_assert_int_eq(bb_int_at(after, "cancelled"), 1);
    json_decref(before);
    json_decref(after);
    assert_batch(c, "y", COUNTS(3, 1, 0, 1, 0, 2, 0, 0));
    /* retry keeps the batch; delete leaves it */
    json_decref(
        bb_result(c, "retry", bb_jsonq("{'job':%lld}", (long long)cancelled)));
    rec = bb_job_status(c, cancelled);
    ck_assert_str_eq(bb_str_at(rec, "batch"), "x");
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    json_decref(rec);
    json_decref(
        bb_result(c, "delete", bb_jsonq("{'job':%lld}", (long long)done)));
    assert_batch(c, "y", COUNTS(2, 1, 0, 1, 0, 1, 0, 0));
    before = bb_result(c, "stats", bb_jsonq("{'batch':'x'}"));
    ck_assert_int_eq(bb_int_at(before, "cancelled"), 0);
    ck_assert_int_eq(bb_int_at(before, "unfinished"), 5);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    assert_batch(c, "y", COUNTS(2, 1, 0, 1, 0, 1, 0, 0));
    after = bb_result(c, "stats", bb_jsonq("{'batch':'x'}"));
    /* A record evicted before may come back from the journal while the
     * limits allow it (docs/durability.md): the counts follow what the
     * daemon knows, as list shows it. */
    ck_assert_int_eq(bb_int_at(after, "total"), list_count(c, "x", NULL));
    ck_assert_int_eq(bb_int_at(after, "done"), list_count(c, "x", "done"));
    ck_assert_int_eq(bb_int_at(after, "unfinished"), 5);
    ck_assert_int_eq(bb_int_at(after, "cancelled"), 0);
    json_decref(before);
    json_decref(after);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}
END_TEST

START_TEST(cli_put_file_join_and_stats_by_batch)
{
    struct bb_daemon *d = bb_startq("{'shutdown':{'grace':0.1}," QUEUES "}");
    char path[160];
    struct bb_run r;
    FILE *f;
    json_t *st;

    snprintf(path, sizeof path, "%s/jobs.ndjson", bb_dir(d));
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 20; i++)
        fprintf(f,
                "{\"queue\":\"b\",\"kind\":\"echo\",\"args\":{\"i\":%d}%s}\n",
                i, i < 5 ? ",\"batch\":\"own\"" : "");
    ck_assert_int_eq(fclose(f), 0);
    asyncq(&r, d, "put", "-f", path, "--batch", "nightly", NULL);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", r.cmd, r.status, r.err);
    bb_run_free(&r);
    asyncq(&r, d, "join", "--batch", "nightly", "--timeout", "10", NULL);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", r.cmd, r.status, r.err);
    ck_assert_str_eq(r.out, "batch nightly: every job has finished\n");
    ck_assert_msg(strchr(r.err, '\r') == NULL, "%s: a bar on a pipe: %s", r.cmd,
                  r.err);
    bb_run_free(&r);
    asyncq(&r, d, "--json", "stats", "--batch", "nightly", NULL);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", r.cmd, r.status, r.err);
    st = out_json(&r);
    ck_assert_int_eq(bb_int_at(st, "total"), 15);
    ck_assert_int_eq(bb_int_at(st, "done"), 15);
    ck_assert_int_eq(bb_int_at(st, "unfinished"), 0);
    json_decref(st);
    bb_run_free(&r);
    asyncq(&r, d, "stats", "--batch", "own", NULL);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", r.cmd, r.status, r.err);
    ck_assert_msg(
        strstr(r.out, "batch own: 5 jobs, 0 unfinished, 5 finished") != NULL &&
            strstr(r.out, "done") != NULL,
        "%s: %s", r.cmd, r.out);
    bb_run_free(&r);
    /* a single put with --batch; join with a timeout on a stuck batch */
    asyncq(&r, d, "put", "-q", "a", "-k", "echo", "--args", "{}", "--batch",
           "stuck", NULL);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", r.cmd, r.status, r.err);
    bb_run_free(&r);
    asyncq(&r, d, "join", "--batch", "stuck", "--timeout", "0.2", NULL);
    ck_assert_msg(r.status == 3 || r.status == 4, "%s: exit %d: %s", r.cmd,
                  r.status, r.err);
    bb_run_free(&r);
    /* usage errors */
    asyncq(&r, d, "join", "a", "--batch", "x", NULL);
    ck_assert_int_eq(r.status, 2);
    bb_run_free(&r);
    asyncq(&r, d, "join", "--batch", NULL);
    ck_assert_int_eq(r.status, 2);
    bb_run_free(&r);
    asyncq(&r, d, "stats", "a", "--batch", "x", NULL);
    ck_assert_int_eq(r.status, 2);
    bb_run_free(&r);
    asyncq(&r, d, "put", "--batch", "", "--args", "{}", NULL);
    ck_assert_int_eq(r.status, 2);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_batch_suite(void)
{
    Suite *s = suite_create("bb_batch");
    TCase *tc = tcase_create("batch");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, stats_by_batch_counts_each_state_exactly);
    tcase_add_test(tc, join_by_batch_waits_for_its_own_jobs_only);
    tcase_add_test(tc, counts_follow_eviction_retry_delete_and_a_restart);
    tcase_add_test(tc, cli_put_file_join_and_stats_by_batch);
    suite_add_tcase(s, tc);
    return s;
}
