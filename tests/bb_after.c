/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_after.c: put's at and after against the real asyncqd (spec
 * section 11): at as epoch seconds or RFC 3339 (past = now, not with
 * delay; each put goes over the wire as one line, so the fast put path
 * must hand these params to the general one), after waiting then running,
 * policy done cancelling with dependency_failed down a chain, policy
 * finished running anyway, dependencies finished before the put, unknown
 * ids, join and maxsize counting waiting jobs, cancel (one, by queue),
 * list by state waiting, a restart (graceful and kill -9) that keeps jobs
 * waiting and releases them once their dependency finishes, and the CLI's
 * --at HH:MM.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbsuites.h"

#define RUN_MS 10000 /* a job runs to its end within this */

/* gate: dependencies, finished by a scale (done) or a cancel; fail: exec
 * dependencies that fail once scaled; run: dependents; small: dependents
 * under maxsize 2. */
#define QUEUES                                                                 \
    "'queues':{'gate':{'kind':'echo','consumers':0},"                          \
    "'fail':{'kind':'exec','consumers':0,'retries':0},"                        \
    "'run':{'kind':'echo','consumers':2},"                                     \
    "'small':{'kind':'echo','consumers':1,'maxsize':2}}"

static json_int_t
put_q(struct bb_conn *c, const char *queue, const char *extra)
{
    return bb_put_job(c,
                      bb_jsonq("{'queue':'%s','args':{}%s%s}", queue,
                               *extra != '\0' ? "," : "", extra),
                      BB_TIMEOUT_MS);
}

static const char *
state_of(struct bb_conn *c, json_int_t id, char *buf, size_t len)
{
    json_t *r = bb_job_status(c, id);

    snprintf(buf, len, "%s", bb_str_at(r, "state"));
    json_decref(r);
    return buf;
}

static void
scale(struct bb_conn *c, const char *queue, int n)
{
    json_decref(bb_result(c, "scale",
                          bb_jsonq("{'queue':'%s','consumers':%d}", queue, n)));
}

static void
assert_error_code(struct bb_conn *c, json_int_t id, const char *code,
                  const char *message)
{
    json_t *r = bb_job_status(c, id);

    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    ck_assert_str_eq(bb_str_at(r, "error.code"), code);
    ck_assert_msg(strcmp(bb_str_at(r, "error.message"), message) == 0,
                  "job %lld: error %s, want %s", (long long)id,
                  bb_str_at(r, "error.message"), message);
    json_decref(r);
}

START_TEST(at_takes_epoch_seconds_and_rfc3339_past_is_now)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    double now = bb_now_s(), wall = (double)time(NULL);
    char iso[64], extra[128];
    time_t t = (time_t)wall + 3600;
    struct tm tm;
    json_int_t id;
    json_t *r;

    (void)now;
    snprintf(extra, sizeof extra, "'at':%.0f", wall + 100);
    id = put_q(c, "run", extra);
    r = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    ck_assert_msg(bb_num_at(r, "due") > wall + 98 &&
                      bb_num_at(r, "due") < wall + 102,
                  "due %.3f, want about %.0f", bb_num_at(r, "due"), wall + 100);
    json_decref(r);

    /* RFC 3339 with an offset: one hour ahead, written as UTC+02:00 */
    t += 2 * 3600;
    gmtime_r(&t, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S.5+02:00", &tm);
    snprintf(extra, sizeof extra, "'at':'%s'", iso);
    id = put_q(c, "run", extra);
    r = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    ck_assert_msg(bb_num_at(r, "due") > wall + 3599 &&
                      bb_num_at(r, "due") < wall + 3602,
                  "%s: due %.3f, want about %.0f", iso, bb_num_at(r, "due"),
                  wall + 3600.5);
    json_decref(r);

    /* in the past: ready at once, and it runs */
    id = put_q(c, "run", "'at':'2001-02-03T04:05:06Z'");
    bb_await_state(c, id, "done", RUN_MS);
    id = put_q(c, "run", "'at':0");
    bb_await_state(c, id, "done", RUN_MS);

    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'queue':'run','at':%.0f,'delay':5}", wall + 10)),
        -32602);
    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'queue':'run','at':'2030-01-01T00:00:00'}")),
        -32602);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'queue':'run','at':-1}")),
                     -32602);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'run','at':%.0f}", wall + 2e9)),
        -32602);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'queue':'run','at':true}")),
                     -32602);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(after_waits_until_its_dependency_is_done_then_runs)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t g, j;
    json_t *r, *gr, *rec;
    char extra[64];

    g = put_q(c, "gate", "");
    snprintf(extra, sizeof extra, "'after':[%lld,%lld]", (long long)g,
             (long long)g);
    r = bb_result(c, "put",
                  bb_jsonq("{'queue':'run','args':{'n':1},%s}", extra));
    ck_assert_str_eq(bb_str_at(r, "state"), "waiting");
    j = bb_int_at(r, "job");
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 1);
    ck_assert_int_eq(bb_stat_int(c, "run", "unfinished"), 1);
    ck_assert_int_eq(bb_stat_int(c, "run", "size"), 0);
    r = bb_result(c, "list", bb_jsonq("{'state':'waiting'}"));
    ck_assert_int_eq(json_array_size(json_object_get(r, "jobs")), 1);
    rec = json_array_get(json_object_get(r, "jobs"), 0);
    ck_assert_int_eq(bb_int_at(rec, "job"), j);
    /* the duplicate counts once */
    ck_assert_int_eq(json_array_size(bb_at(rec, "after")), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(bb_at(rec, "after"), 0)),
                     g);
    ck_assert_str_eq(bb_str_at(rec, "after_policy"), "done");
    json_decref(r);

    scale(c, "gate", 1);
    bb_await_state(c, j, "done", RUN_MS);
    gr = bb_job_status(c, g);
    r = bb_job_status(c, j);
    ck_assert_msg(bb_num_at(r, "started") >= bb_num_at(gr, "finished"),
                  "started before its dependency finished");
    ck_assert_int_eq(bb_int_at(r, "result.n"), 1);
    json_decref(r);
    json_decref(gr);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(policy_done_cancels_down_a_chain_and_finished_runs_anyway)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t f, chain[50], k;
    char extra[96], msg[64];

    f = bb_put_job(c,
                   bb_jsonq("{'queue':'fail','args':{'argv':['/bin/sh','-c',"
                            "'exit 3']}}"),
                   BB_TIMEOUT_MS);
    for (size_t i = 0; i < 50; i++) {
        snprintf(extra, sizeof extra, "'after':[%lld]",
                 (long long)(i == 0 ? f : chain[i - 1]));
        chain[i] = put_q(c, "run", extra);
    }
    snprintf(extra, sizeof extra, "'after':[%lld],'after_policy':'finished'",
             (long long)f);
    k = put_q(c, "run", extra);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 51);

    scale(c, "fail", 1);
    bb_await_state(c, chain[49], "cancelled", RUN_MS);
    snprintf(msg, sizeof msg, "job %lld failed", (long long)f);
    assert_error_code(c, chain[0], "dependency_failed", msg);
    for (size_t i = 1; i < 50; i++) {
        snprintf(msg, sizeof msg, "job %lld cancelled",
                 (long long)chain[i - 1]);
        assert_error_code(c, chain[i], "dependency_failed", msg);
    }
    bb_await_state(c, k, "done", RUN_MS);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 0);
    ck_assert_int_eq(bb_stat_int(c, "run", "unfinished"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(finished_dependencies_count_at_put_and_unknown_ids_are_refused)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t done, cancelled, id;
    char extra[96], msg[64];
    json_t *r;

    done = put_q(c, "run", "");
    bb_await_state(c, done, "done", RUN_MS);
    cancelled = put_q(c, "gate", "");
    json_decref(bb_result(c, "cancel", bb_jsonq("{'job':%lld}", cancelled)));

    r = bb_result(c, "put",
                  bb_jsonq("{'queue':'run','after':[%lld]}", (long long)done));
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    json_decref(r);
    r = bb_result(c, "put",
                  bb_jsonq("{'queue':'run','after':[%lld,%lld]}",
                           (long long)done, (long long)cancelled));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    id = bb_int_at(r, "job");
    json_decref(r);
    snprintf(msg, sizeof msg, "job %lld cancelled", (long long)cancelled);
    assert_error_code(c, id, "dependency_failed", msg);
    snprintf(extra, sizeof extra,
             "{'queue':'run','after':[%lld],'after_policy':'finished',"
             "'delay':100}",
             (long long)cancelled);
    r = bb_result(c, "put", bb_jsonq("%s", extra));
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    json_decref(r);

    /* -32004 naming the first unknown id in data.job */
    r = bb_call(
        c, "put",
        bb_jsonq("{'queue':'run','after':[%lld,9999,8888]}", (long long)done));
    ck_assert_int_eq(bb_int_at(r, "error.code"), -32004);
    ck_assert_int_eq(bb_int_at(r, "error.data.job"), 9999);
    json_decref(r);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'run','after_policy':'done'}")),
        -32602);
    ck_assert_int_eq(bb_error(c, "put",
                              bb_jsonq("{'queue':'run','after':[%lld],"
                                       "'after_policy':'maybe'}",
                                       (long long)done)),
                     -32602);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'queue':'run','after':[]}")),
                     -32602);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'run','after':['1']}")), -32602);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(waiting_jobs_count_for_maxsize_and_join)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d), *p = bb_connect(d), *w = bb_connect(d);
    json_int_t g, put_id, join_id;
    json_t *r;
    char extra[64];

    g = put_q(c, "gate", "");
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)g);
    put_q(c, "small", extra);
    put_q(c, "small", extra);
    ck_assert_int_eq(bb_stat_int(c, "small", "unfinished"), 2);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'small','nowait':true}")),
        -32000);
    /* a put is held back: the queue is full of waiting jobs */
    put_id = bb_send_call(p, "put", bb_jsonq("{'queue':'small'}"));
    r = bb_recv(p, 300); /* no answer while the queue is full */
    ck_assert_msg(r == NULL, "a put to a full queue was answered");
    ck_assert_int_eq(bb_stat_int(c, "small", "put"), 2);
    join_id = bb_send_call(w, "join", bb_jsonq("{'queue':'small'}"));
    ck_assert_int_eq(bb_stat_int(c, "small", "waiting"), 2);

    scale(c, "gate", 1);
    r = bb_wait_reply(p, put_id, RUN_MS);
    ck_assert_ptr_nonnull(json_object_get(r, "result"));
    json_decref(r);
    r = bb_wait_reply(w, join_id, RUN_MS);
    ck_assert_ptr_nonnull(json_object_get(r, "result"));
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "small", "unfinished"), 0);
    bb_close(w);
    bb_close(p);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_one_waiting_job_and_by_queue)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t g, a, b2, b3, after_b;
    char extra[64], buf[32];
    json_t *r;

    g = put_q(c, "gate", "");
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)g);
    a = put_q(c, "run", extra);
    b2 = put_q(c, "run", extra);
    b3 = put_q(c, "run", extra);
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)b2);
    after_b = put_q(c, "gate", extra); /* another queue: cascades there */

    r = bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)a));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    json_decref(r);
    ck_assert_int_eq(
        bb_error(c, "cancel", bb_jsonq("{'job':%lld}", (long long)a)), -32009);
    ck_assert_int_eq(
        bb_error(c, "delete", bb_jsonq("{'job':%lld}", (long long)b2)), -32012);
    ck_assert_int_eq(
        bb_error(c, "retry", bb_jsonq("{'job':%lld}", (long long)b2)), -32012);
    r = bb_result(c, "cancel", bb_jsonq("{'queue':'run'}"));
    ck_assert_int_eq(bb_int_at(r, "cancelled"), 2);
    json_decref(r);
    ck_assert_str_eq(state_of(c, b3, buf, sizeof buf), "cancelled");
    snprintf(extra, sizeof extra, "job %lld cancelled", (long long)b2);
    assert_error_code(c, after_b, "dependency_failed", extra);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 0);
    ck_assert_int_eq(bb_stat_int(c, "run", "unfinished"), 0);
    /* the dependency finishing later finds nobody waiting */
    scale(c, "gate", 1);
    bb_await_state(c, g, "done", RUN_MS);
    ck_assert_str_eq(state_of(c, a, buf, sizeof buf), "cancelled");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A restart keeps waiting jobs waiting (their due time too), and
 * releases them when their dependency finishes after it; a cascade that
 * happened before it stays as it was. */
static void
restart_keeps_waiting(bool is_kill)
{
    char root[64], cfg[1024], extra[96];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t g, w1, w2, late, f, lost;
    double due;
    json_t *r;

    snprintf(root, sizeof root, "/tmp/asyncq-bba.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{\"journal\":{\"path\":\"%s/journal\",\"fsync\":\"always\"},"
             "\"queues\":{\"gate\":{\"kind\":\"echo\",\"consumers\":0},"
             "\"run\":{\"kind\":\"echo\",\"consumers\":1}}}",
             root);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    g = put_q(c, "gate", "");
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)g);
    w1 = put_q(c, "run", extra);
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)w1);
    w2 = put_q(c, "run", extra);
    snprintf(extra, sizeof extra,
             "'after':[%lld],'after_policy':'finished','delay':300",
             (long long)g);
    late = put_q(c, "run", extra);
    r = bb_job_status(c, late);
    due = bb_num_at(r, "due");
    json_decref(r);
    f = put_q(c, "gate", "");
    snprintf(extra, sizeof extra, "'after':[%lld]", (long long)f);
    lost = put_q(c, "run", extra);
    json_decref(bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)f)));
    bb_close(c);
    if (is_kill) {
        bb_signal(d, SIGKILL);
        ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
        bb_free(d);
    } else
        ck_assert_int_eq(bb_stop(d), 0);

    d = bb_start("%s", cfg);
    c = bb_connect(d);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 3);
    ck_assert_int_eq(bb_stat_int(c, "run", "unfinished"), 3);
    r = bb_job_status(c, w2);
    ck_assert_str_eq(bb_str_at(r, "state"), "waiting");
    ck_assert_int_eq(json_integer_value(json_array_get(bb_at(r, "after"), 0)),
                     w1);
    json_decref(r);
    r = bb_job_status(c, late);
    ck_assert_str_eq(bb_str_at(r, "after_policy"), "finished");
    ck_assert_msg(bb_num_at(r, "due") > due - 0.01 &&
                      bb_num_at(r, "due") < due + 0.01,
                  "due %.3f, was %.3f", bb_num_at(r, "due"), due);
    json_decref(r);
    snprintf(extra, sizeof extra, "job %lld cancelled", (long long)f);
    assert_error_code(c, lost, "dependency_failed", extra);

    scale(c, "gate", 1);
    bb_await_state(c, w2, "done", RUN_MS);
    bb_await_state(c, late, "delayed", RUN_MS);
    bb_close(c);
    /* and once more: released jobs stay released */
    bb_restart(d);
    c = bb_connect(d);
    ck_assert_int_eq(bb_stat_int(c, "run", "waiting"), 0);
    r = bb_job_status(c, late);
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}

START_TEST(graceful_restart_keeps_jobs_waiting)
{
    restart_keeps_waiting(false);
}
END_TEST

START_TEST(kill_9_restart_keeps_jobs_waiting)
{
    restart_keeps_waiting(true);
}
END_TEST

/* The CLI turns --at HH:MM into the next time the local clock shows it
 * (TZ=UTC here, so the test knows it), and RFC 3339 as given; it sends
 * epoch seconds. */
START_TEST(cli_at_hh_mm_is_the_next_such_local_time)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    struct run_opts o = {.env = {"TZ=UTC"}};
    struct bb_run r;
    time_t now = time(NULL), ahead = now + 120, behind = now - 120;
    struct tm tm;
    char hm[8];
    double want;
    json_t *rec, *out;

    for (int k = 0; k < 2; k++) {
        time_t t = k == 0 ? ahead : behind;

        gmtime_r(&t, &tm);
        strftime(hm, sizeof hm, "%H:%M", &tm);
        want = (double)(t - tm.tm_sec);
        if (want <= (double)now)
            want += 86400; /* gone today: tomorrow */
        asyncq_with(&r, &o, d, "--json", "put", "-q", "run", "--at", hm,
                    "--args", "{}", NULL);
        assert_exit(&r, 0);
        out = out_json(&r);
        rec = bb_job_status(c, bb_int_at(out, "job"));
        ck_assert_msg(bb_num_at(rec, "due") > want - 2 &&
                          bb_num_at(rec, "due") < want + 2,
                      "--at %s: due %.0f, want %.0f", hm, bb_num_at(rec, "due"),
                      want);
        json_decref(rec);
        json_decref(out);
        bb_run_free(&r);
    }
    asyncq(&r, d, "put", "-q", "run", "--at", "25:00", "--args", "{}", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    asyncq(&r, d, "put", "-q", "run", "--at", "10:00", "--delay", "5m",
           "--args", "{}", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    asyncq(&r, d, "put", "-q", "run", "--after", "1,x", "--args", "{}", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    asyncq(&r, d, "put", "-q", "run", "--after-policy", "finished", "--args",
           "{}", NULL);
    assert_exit(&r, 2);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_after_suite(void)
{
    Suite *s = suite_create("bb_after");
    TCase *tc = tcase_create("after");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, at_takes_epoch_seconds_and_rfc3339_past_is_now);
    tcase_add_test(tc, after_waits_until_its_dependency_is_done_then_runs);
    tcase_add_test(tc,
                   policy_done_cancels_down_a_chain_and_finished_runs_anyway);
    tcase_add_test(
        tc, finished_dependencies_count_at_put_and_unknown_ids_are_refused);
    tcase_add_test(tc, waiting_jobs_count_for_maxsize_and_join);
    tcase_add_test(tc, cancel_one_waiting_job_and_by_queue);
    tcase_add_test(tc, graceful_restart_keeps_jobs_waiting);
    tcase_add_test(tc, kill_9_restart_keeps_jobs_waiting);
    tcase_add_test(tc, cli_at_hh_mm_is_the_next_such_local_time);
    suite_add_tcase(s, tc);
    return s;
}
