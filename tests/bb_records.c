/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_records.c: finished records against the real asyncqd (spec
 * sections 2 and 9): what a record shows (args as put), retry (one job,
 * or a queue's failed ones; a done job too), delete (one, or by queue and
 * state), cancel by queue, retention per class (results.failed_ttl apart
 * from results.ttl; results.max_bytes), and a restart, graceful or kill
 * -9, that keeps records with their args, retried counts and deletions.
 */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define RUN_MS 10000 /* a job runs to its end within this */

/* Queues: "run" runs exec jobs, "echo" echo jobs, "held" echo jobs that
 * wait (no consumer) to be cancelled. */
#define QUEUES                                                                 \
    "'queues':{'run':{'kind':'exec','consumers':2},"                           \
    "'echo':{'kind':'echo','consumers':1},"                                    \
    "'held':{'kind':'echo','consumers':0,'maxsize':2}}"

static json_int_t
put_in(struct bb_conn *c, const char *queue, const char *args)
{
    return bb_put_job(c, bb_jsonq("{'queue':'%s','args':%s}", queue, args),
                      BB_TIMEOUT_MS);
}

/* A job on held, cancelled: a cancelled record. */
static json_int_t
cancelled_in_held(struct bb_conn *c, const char *args)
{
    json_int_t id = put_in(c, "held", args);

    json_decref(bb_result(c, "cancel", bb_jsonq("{'job':%lld}", id)));
    return id;
}

static int
status_error(struct bb_conn *c, json_int_t id)
{
    return bb_error(c, "status", bb_jsonq("{'job':%lld}", id));
}

/* The status of id as the daemon wrote it (a new string). */
static char *
status_text(struct bb_conn *c, json_int_t id)
{
    char line[64];

    snprintf(line, sizeof line,
             "{\"id\":1,\"method\":\"status\",\"params\":{\"job\":%lld}}",
             (long long)id);
    ck_assert(bb_send_line(c, line));
    return bb_recv_text(c, BB_TIMEOUT_MS);
}

/* argv[i] of a record's exec args. */
static const char *
argv_at(json_t *rec, size_t i)
{
    const char *s =
        json_string_value(json_array_get(bb_at(rec, "args.argv"), i));

    ck_assert_msg(s != NULL, "no args.argv[%zu] in %s", i, bb_dump(rec));
    return s;
}

static const char *
error_message(json_t *reply)
{
    return bb_str_at(reply, "error.message");
}

/* A failing exec job's record shows what it was; a retry runs it again
 * under its id, attempts from 0, retried 1, and it can now succeed. */
START_TEST(failed_exec_record_shows_args_and_retry_runs_it_again)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    char flag[256], args[512], *text;
    json_t *rec, *r;
    json_int_t id;

    snprintf(flag, sizeof flag, "%s/ok", bb_dir(d));
    snprintf(args, sizeof args,
             "{'argv':['/bin/sh','-c','test -e %s'],'env':{'N':'1'}}", flag);
    id = put_in(c, "run", args);
    bb_await_state(c, id, "failed", RUN_MS);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(argv_at(rec, 0), "/bin/sh");
    ck_assert_str_eq(bb_str_at(rec, "args.env.N"), "1");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "exit");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_ptr_null(json_object_get(rec, "retried"));
    json_decref(rec);

    fclose(fopen(flag, "w"));
    r = bb_result(c, "retry", bb_jsonq("{'job':%lld}", id));
    ck_assert_int_eq(bb_int_at(r, "job"), id);
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    json_decref(r);
    r = bb_result_within(c, "wait", bb_jsonq("{'jobs':[%lld]}", id), RUN_MS);
    rec = json_array_get(r, 0);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_int_eq(bb_int_at(rec, "retried"), 1);
    ck_assert_ptr_null(json_object_get(rec, "error"));
    ck_assert_str_eq(argv_at(rec, 0), "/bin/sh");
    json_decref(r);

    /* args as put: a number keeps its spelling */
    ck_assert(bb_send_line(c, "{\"id\":\"p\",\"method\":\"put\",\"params\":"
                              "{\"queue\":\"echo\",\"args\":{\"n\":1e3,"
                              "\"f\":0.30000000000000004}}}"));
    r = bb_recv(c, BB_TIMEOUT_MS);
    id = bb_int_at(r, "result.job");
    json_decref(r);
    bb_await_state(c, id, "done", RUN_MS);
    text = status_text(c, id);
    ck_assert_msg(
        strstr(text, "\"args\":{\"n\":1e3,\"f\":0.30000000000000004}"), "%s",
        text);
    free(text);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Retry of every failed job of a queue, and of a done job. */
START_TEST(retry_all_failed_of_a_queue_and_a_done_job)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[3], done;
    json_t *r;

    for (int i = 0; i < 3; i++)
        ids[i] = put_in(c, "run", "{'argv':['/bin/false']}");
    for (int i = 0; i < 3; i++)
        bb_await_state(c, ids[i], "failed", RUN_MS);
    r = bb_result(c, "retry", bb_jsonq("{'queue':'run','state':'cancelled'}"));
    ck_assert_int_eq(bb_int_at(r, "retried"), 0);
    json_decref(r);
    r = bb_result(c, "retry", bb_jsonq("{'queue':'run','state':'failed'}"));
    ck_assert_int_eq(bb_int_at(r, "retried"), 3);
    json_decref(r);
    r = bb_result_within(
        c, "wait",
        bb_jsonq("{'jobs':[%lld,%lld,%lld]}", ids[0], ids[1], ids[2]), RUN_MS);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(bb_str_at(json_array_get(r, (size_t)i), "state"),
                         "failed");
        ck_assert_int_eq(bb_int_at(json_array_get(r, (size_t)i), "retried"), 1);
    }
    json_decref(r);

    done = put_in(c, "echo", "{'x':1}");
    bb_await_state(c, done, "done", RUN_MS);
    r = bb_result(c, "retry", bb_jsonq("{'job':%lld,'delay':0}", done));
    json_decref(r);
    bb_await_state(c, done, "done", RUN_MS);
    r = bb_job_status(c, done);
    ck_assert_int_eq(bb_int_at(r, "retried"), 1);
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "echo", "put"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A retry past maxsize: the operator's action does not wait for room. */
START_TEST(retry_takes_a_queue_past_maxsize)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_t *r;

    for (int i = 0; i < 4; i++)
        cancelled_in_held(c, "{}");
    put_in(c, "held", "{}");
    put_in(c, "held", "{}");
    r = bb_result(c, "retry", bb_jsonq("{'queue':'held','state':'cancelled'}"));
    ck_assert_int_eq(bb_int_at(r, "retried"), 4);
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "held", "unfinished"), 6);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'held','nowait':true}")),
        QUEUE_FULL);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The errors of retry, delete and cancel by queue, each naming what is
 * wrong. */
START_TEST(retry_delete_and_cancel_refuse_what_they_cannot_do)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t live = put_in(c, "held", "{}");
    json_t *r;

    r = bb_call(c, "retry", bb_jsonq("{'job':%lld}", live));
    ck_assert_int_eq(bb_int_at(r, "error.code"), NOT_FINISHED);
    json_decref(r);
    r = bb_call(c, "delete", bb_jsonq("{'job':%lld}", live));
    ck_assert_int_eq(bb_int_at(r, "error.code"), NOT_FINISHED);
    ck_assert_msg(strstr(error_message(r), "cancel it first") != NULL, "%s",
                  bb_dump(r));
    json_decref(r);
    ck_assert_int_eq(bb_error(c, "retry", bb_jsonq("{'job':999}")),
                     NO_SUCH_JOB);
    ck_assert_int_eq(bb_error(c, "delete", bb_jsonq("{'job':999}")),
                     NO_SUCH_JOB);
    ck_assert_int_eq(
        bb_error(c, "retry", bb_jsonq("{'queue':'nope','state':'failed'}")),
        NO_SUCH_QUEUE);
    r = bb_call(c, "retry", bb_jsonq("{'queue':'held','state':'done'}"));
    ck_assert_int_eq(bb_int_at(r, "error.code"), INVALID_PARAMS);
    ck_assert_msg(strstr(error_message(r), "params.state") != NULL, "%s",
                  bb_dump(r));
    json_decref(r);
    r = bb_call(c, "delete", bb_jsonq("{'queue':'held','state':'pending'}"));
    ck_assert_int_eq(bb_int_at(r, "error.code"), INVALID_PARAMS);
    ck_assert_msg(strstr(error_message(r), "params.state") != NULL, "%s",
                  bb_dump(r));
    json_decref(r);
    ck_assert_int_eq(bb_error(c, "retry", bb_jsonq("{'queue':'held'}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "retry", bb_jsonq("{}")), INVALID_PARAMS);
    ck_assert_int_eq(
        bb_error(c, "retry", bb_jsonq("{'job':%lld,'delay':-1}", live)),
        INVALID_PARAMS);
    r = bb_call(c, "cancel", bb_jsonq("{'job':%lld,'queue':'held'}", live));
    ck_assert_int_eq(bb_int_at(r, "error.code"), INVALID_PARAMS);
    ck_assert_msg(strstr(error_message(r), "params.") != NULL, "%s",
                  bb_dump(r));
    json_decref(r);
    ck_assert_int_eq(
        bb_error(c, "cancel", bb_jsonq("{'queue':'held','running':1}")),
        INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "cancel", bb_jsonq("{'queue':'nope'}")),
                     NO_SUCH_QUEUE);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(delete_one_record_and_a_queues_records_of_a_state)
{
    struct bb_daemon *d = bb_startq("{" QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = cancelled_in_held(c, "{}"), b = cancelled_in_held(c, "{}");
    json_int_t e = put_in(c, "echo", "{}");
    json_t *r;

    bb_await_state(c, e, "done", RUN_MS);
    r = bb_result(c, "delete", bb_jsonq("{'job':%lld}", a));
    ck_assert_int_eq(bb_int_at(r, "job"), a);
    ck_assert(json_is_true(json_object_get(r, "deleted")));
    json_decref(r);
    ck_assert_int_eq(status_error(c, a), NO_SUCH_JOB);
    r = bb_result(c, "delete",
                  bb_jsonq("{'queue':'held','state':'cancelled'}"));
    ck_assert_int_eq(bb_int_at(r, "deleted"), 1);
    json_decref(r);
    ck_assert_int_eq(status_error(c, b), NO_SUCH_JOB);
    r = bb_result(c, "delete", bb_jsonq("{'queue':'echo','state':'done'}"));
    ck_assert_int_eq(bb_int_at(r, "deleted"), 1);
    json_decref(r);
    ck_assert_int_eq(status_error(c, e), NO_SUCH_JOB);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* cancel with a queue: delayed and pending jobs; running ones only with
 * running: true. */
START_TEST(cancel_by_queue_with_and_without_running)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'nap':{'kind':'sleep','consumers':1,'maxsize':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t first = put_in(c, "nap", "{'seconds':60}"), delayed;
    json_t *r;

    for (int i = 0; i < 20; i++)
        put_in(c, "nap", "{'seconds':60}");
    delayed = bb_put_job(c,
                         bb_jsonq("{'queue':'nap','delay':60,"
                                  "'args':{'seconds':1}}"),
                         BB_TIMEOUT_MS);
    bb_await_state(c, first, "running", RUN_MS);
    r = bb_result(c, "cancel", bb_jsonq("{'queue':'nap'}"));
    ck_assert_int_eq(bb_int_at(r, "cancelled"), 21);
    json_decref(r);
    bb_await_state(c, delayed, "cancelled", RUN_MS);
    ck_assert_int_eq(bb_stat_int(c, "nap", "unfinished"), 1);
    r = bb_job_status(c, first);
    ck_assert_str_eq(bb_str_at(r, "state"), "running");
    json_decref(r);
    r = bb_result(c, "cancel", bb_jsonq("{'queue':'nap','running':true}"));
    ck_assert_int_eq(bb_int_at(r, "cancelled"), 1);
    json_decref(r);
    bb_await_state(c, first, "cancelled", RUN_MS);
    ck_assert_int_eq(bb_stat_int(c, "nap", "unfinished"), 0);
    ck_assert_int_eq(bb_stat_int(c, "nap", "cancelled"), 22);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

static bool
is_gone(void *arg)
{
    void **a = arg;
    json_t *r =
        bb_call(a[0], "status", bb_jsonq("{'job':%lld}", *(json_int_t *)a[1]));
    bool gone = bb_at(r, "error.code") != NULL &&
                bb_int_at(r, "error.code") == NO_SUCH_JOB;

    json_decref(r);
    return gone;
}

/* A short results.ttl drops done records; failed ones live by
 * results.failed_ttl. */
START_TEST(failed_records_outlive_a_short_results_ttl)
{
    struct bb_daemon *d =
        bb_startq("{'results':{'ttl':0.1,'failed_ttl':3600}," QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    json_int_t failed = put_in(c, "run", "{'argv':['/bin/false']}");
    json_int_t done = put_in(c, "echo", "{}");
    void *arg[2] = {c, &done};
    json_t *r;

    bb_await_state(c, failed, "failed", RUN_MS);
    ck_assert_msg(bb_poll(is_gone, arg, 5000), "done record kept past ttl");
    r = bb_job_status(c, failed);
    ck_assert_str_eq(bb_str_at(r, "state"), "failed");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* results.max_bytes: big records push the oldest out. */
START_TEST(max_bytes_evicts_the_oldest_records)
{
    struct bb_daemon *d =
        bb_startq("{'results':{'max_bytes':20000}," QUEUES "}");
    struct bb_conn *c = bb_connect(d);
    char args[4200];
    json_int_t ids[8];

    snprintf(args, sizeof args, "{'pad':'%04000d'}", 7);
    for (int i = 0; i < 8; i++)
        ids[i] = cancelled_in_held(c, args);
    ck_assert_int_eq(status_error(c, ids[0]), NO_SUCH_JOB);
    json_decref(bb_job_status(c, ids[7]));
    json_decref(bb_job_status(c, ids[6]));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A restart (graceful, or kill -9) keeps records with their args, a
 * retry's count, and a delete. */
static void
restart_keeps_records(bool is_kill)
{
    char root[64], cfg[1024];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t failed, retried, deleted, done;
    json_t *r;

    snprintf(root, sizeof root, "/tmp/asyncq-bbr.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{\"journal\":{\"path\":\"%s/journal\",\"fsync\":\"always\"},"
             "\"queues\":{\"run\":{\"kind\":\"exec\",\"consumers\":1},"
             "\"held\":{\"kind\":\"echo\",\"consumers\":0}}}",
             root);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    failed = put_in(c, "run", "{'argv':['/bin/sh','-c','exit 7']}");
    bb_await_state(c, failed, "failed", RUN_MS);
    retried = cancelled_in_held(c, "{'n':2}");
    json_decref(bb_result(c, "retry", bb_jsonq("{'job':%lld}", retried)));
    deleted = cancelled_in_held(c, "{'n':3}");
    json_decref(bb_result(c, "delete", bb_jsonq("{'job':%lld}", deleted)));
    done = cancelled_in_held(c, "{'n':4}");
    bb_close(c);
    if (is_kill) {
        bb_signal(d, SIGKILL);
        ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
        bb_free(d);
    } else
        ck_assert_int_eq(bb_stop(d), 0);

    d = bb_start("%s", cfg);
    c = bb_connect(d);
    r = bb_job_status(c, failed);
    ck_assert_str_eq(bb_str_at(r, "state"), "failed");
    ck_assert_str_eq(argv_at(r, 2), "exit 7");
    ck_assert_str_eq(bb_str_at(r, "error.code"), "exit");
    json_decref(r);
    r = bb_job_status(c, retried);
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    ck_assert_int_eq(bb_int_at(r, "retried"), 1);
    ck_assert_int_eq(bb_int_at(r, "args.n"), 2);
    json_decref(r);
    ck_assert_int_eq(status_error(c, deleted), NO_SUCH_JOB);
    r = bb_job_status(c, done);
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    ck_assert_int_eq(bb_int_at(r, "args.n"), 4);
    json_decref(r);
    /* and the retried job runs again after the restart */
    json_decref(bb_result(c, "retry", bb_jsonq("{'job':%lld}", failed)));
    bb_await_state(c, failed, "failed", RUN_MS);
    r = bb_job_status(c, failed);
    ck_assert_int_eq(bb_int_at(r, "retried"), 1);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}

START_TEST(graceful_restart_keeps_records_retries_and_deletes)
{
    restart_keeps_records(false);
}
END_TEST

START_TEST(kill_9_restart_keeps_records_retries_and_deletes)
{
    restart_keeps_records(true);
}
END_TEST

Suite *
bb_records_suite(void)
{
    Suite *s = suite_create("bb_records");
    TCase *tc = tcase_create("records");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, failed_exec_record_shows_args_and_retry_runs_it_again);
    tcase_add_test(tc, retry_all_failed_of_a_queue_and_a_done_job);
    tcase_add_test(tc, retry_takes_a_queue_past_maxsize);
    tcase_add_test(tc, retry_delete_and_cancel_refuse_what_they_cannot_do);
    tcase_add_test(tc, delete_one_record_and_a_queues_records_of_a_state);
    tcase_add_test(tc, cancel_by_queue_with_and_without_running);
    tcase_add_test(tc, failed_records_outlive_a_short_results_ttl);
    tcase_add_test(tc, max_bytes_evicts_the_oldest_records);
    tcase_add_test(tc, graceful_restart_keeps_records_retries_and_deletes);
    tcase_add_test(tc, kill_9_restart_keeps_records_retries_and_deletes);
    suite_add_tcase(s, tc);
    return s;
}
