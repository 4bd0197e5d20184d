/* SPDX-License-Identifier: MIT */
/*
 * tests/clib_worker.c: libasyncq-client's worker calls (lib/client.h, the
 * shared library as installed) against a real asyncqd: get -> task_done
 * with a result and with an error, the notification form, release (not
 * counted) and touch, the errors a worker meets (-32014 for a lease not
 * held, -32004, -32005, -32002), a get that waits longer than the
 * client's timeout, a worker over mutual TLS; and the example programs:
 * the jobs examples/producer puts are done by examples/worker, which stops
 * cleanly on SIGTERM.
 *
 * The daemon is driven through tests/bb.h (jobs put and checked over a
 * connection of the harness's own); nothing sleeps.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asyncq/client.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"

#define TIMEOUT_MS 10000
#define N_EXAMPLE 200

/* w: remote; e: echo, no consumer (not remote). */
#define CONFIG                                                                 \
    "{'queues':{'w':{'kind':'remote','timeout':30},"                           \
    "'e':{'kind':'echo','consumers':0}}}"

static const char *const W[] = {"w"};

static struct aq_client *
client_for(const struct bb_daemon *d, int timeout_ms)
{
    struct aq_error err = {0};
    char addr[64];
    struct aq_client *c;

    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", bb_port(d));
    c = aq_client_connect(addr, timeout_ms, &err);
    ck_assert_msg(c != NULL, "connect %s: %s", addr, err.message);
    return c;
}

static json_int_t
put_named(struct bb_conn *bc, const char *name, const char *text)
{
    return bb_put_job(bc,
                      json_pack("{s:s,s:s,s:{s:s}}", "queue", "w", "name", name,
                                "args", "text", text),
                      TIMEOUT_MS);
}

/* One job leased with get (wait 5 s), checked against id; returns it. */
static json_t *
get_one(struct aq_client *c, json_int_t id)
{
    struct aq_error err = {0};
    json_t *jobs = aq_client_get(c, W, 1, 1, 5, 0, NULL, NULL, &err), *job;

    ck_assert_msg(jobs != NULL, "get: %s", err.message);
    ck_assert_msg(json_array_size(jobs) == 1, "get: %s", bb_dump(jobs));
    job = json_incref(json_array_get(jobs, 0));
    json_decref(jobs);
    ck_assert_int_eq(bb_int_at(job, "job"), id);
    return job;
}

START_TEST(get_then_task_done_with_result)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    struct aq_client *c = client_for(d, TIMEOUT_MS);
    struct aq_error err = {0};
    json_int_t id = put_named(bc, "upper", "hi");
    json_t *job = get_one(c, id), *r, *st;

    ck_assert_str_eq(bb_str_at(job, "queue"), "w");
    ck_assert_str_eq(bb_str_at(job, "name"), "upper");
    ck_assert_str_eq(bb_str_at(job, "args.text"), "hi");
    ck_assert_int_eq(bb_int_at(job, "attempts"), 0);
    ck_assert(bb_num_at(job, "lease_deadline") > 0);
    r = aq_client_task_done(c, id, json_pack("{s:s}", "text", "HI"), NULL, NULL,
                            true, &err);
    ck_assert_msg(r != NULL, "task_done: %s", err.message);
    ck_assert_int_eq(bb_int_at(r, "job"), id);
    ck_assert_str_eq(bb_str_at(r, "state"), "done");
    json_decref(r);
    st = bb_job_status(bc, id);
    ck_assert_str_eq(bb_str_at(st, "state"), "done");
    ck_assert_str_eq(bb_str_at(st, "result.text"), "HI");
    json_decref(st);
    /* Twice: the lease is no longer held. */
    r = aq_client_task_done(c, id, NULL, NULL, NULL, true, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_YOUR_LEASE);
    ck_assert(aq_client_is_server_error(&err));
    json_decref(job);
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(task_done_with_error_and_no_retry_fails_the_job)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    struct aq_client *c = client_for(d, TIMEOUT_MS);
    struct aq_error err = {0};
    json_int_t id = put_named(bc, "upper", "x");
    json_t *job = get_one(c, id), *r, *st;

    r = aq_client_task_done(c, id, NULL, "boom", "it broke", false, &err);
    ck_assert_msg(r != NULL, "task_done: %s", err.message);
    ck_assert_str_eq(bb_str_at(r, "state"), "failed");
    json_decref(r);
    st = bb_job_status(bc, id);
    ck_assert_str_eq(bb_str_at(st, "state"), "failed");
    ck_assert_str_eq(bb_str_at(st, "error.code"), "boom");
    ck_assert_str_eq(bb_str_at(st, "error.message"), "it broke");
    json_decref(st);
    json_decref(job);
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(task_done_nowait_is_pipelined)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    struct aq_client *c = client_for(d, TIMEOUT_MS);
    struct aq_error err = {0};
    json_int_t ids[3];
    json_t *jobs, *job, *pong;
    size_t i;

    for (i = 0; i < 3; i++)
        ids[i] = put_named(bc, "upper", "p");
    jobs = aq_client_get(c, W, 1, 10, 5, 0, NULL, NULL, &err);
    ck_assert_msg(jobs != NULL, "get: %s", err.message);
    ck_assert_msg(json_array_size(jobs) == 3, "get max 10: %s", bb_dump(jobs));
    json_array_foreach (jobs, i, job) {
        ck_assert_int_eq(bb_int_at(job, "job"), ids[i]); /* FIFO */
        ck_assert_int_eq(aq_client_task_done_nowait(c, ids[i],
                                                    json_integer((int)i), NULL,
                                                    NULL, true, &err),
                         0);
    }
    json_decref(jobs);
    /* Answered after the notifications before it have run. */
    pong = aq_client_call(c, "ping", NULL, NULL, NULL, &err);
    ck_assert_msg(pong != NULL, "ping: %s", err.message);
    json_decref(pong);
    for (i = 0; i < 3; i++) {
        json_t *st = bb_job_status(bc, ids[i]);

        ck_assert_str_eq(bb_str_at(st, "state"), "done");
        ck_assert_int_eq(bb_int_at(st, "result"), (json_int_t)i);
        json_decref(st);
    }
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(release_is_not_counted_and_touch_renews)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    struct aq_client *c = client_for(d, TIMEOUT_MS);
    struct aq_error err = {0};
    json_int_t id = put_named(bc, "upper", "r");
    json_t *job = get_one(c, id), *r;
    double first;

    r = aq_client_release(c, id, 0, &err);
    ck_assert_msg(r != NULL, "release: %s", err.message);
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    json_decref(r);
    json_decref(job);
    /* Leased again: the released attempt is not counted. */
    job = get_one(c, id);
    ck_assert_int_eq(bb_int_at(job, "attempts"), 0);
    first = bb_num_at(job, "lease_deadline");
    r = aq_client_touch(c, id, 300, &err);
    ck_assert_msg(r != NULL, "touch: %s", err.message);
    ck_assert_int_eq(bb_int_at(r, "job"), id);
    ck_assert_msg(bb_num_at(r, "lease_deadline") > first + 200,
                  "touch lease 300: %s, was %f", bb_dump(r), first);
    json_decref(r);
    /* A job this connection does not hold, one that does not exist. */
    r = aq_client_touch(c, put_named(bc, "upper", "not leased"), 0, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_YOUR_LEASE);
    r = aq_client_release(c, 999999, 0, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_NO_JOB);
    r = aq_client_task_done(c, id, NULL, NULL, NULL, true, &err);
    ck_assert_msg(r != NULL, "task_done: %s", err.message);
    json_decref(r);
    json_decref(job);
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(get_errors_and_waits)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    /* A timeout shorter than the get's wait. */
    struct aq_client *c = client_for(d, 200);
    struct aq_error err = {0};
    static const char *const e[] = {"e"}, *const none[] = {"nope"};
    static const char *const both[] = {"w", "w"};
    json_t *r;
    int64_t t0;

    r = aq_client_get(c, e, 1, 1, 0, 0, NULL, NULL, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_ALLOWED);
    ck_assert_msg(strstr(err.message, "e") != NULL, "%s", err.message);
    r = aq_client_get(c, none, 1, 1, 0, 0, NULL, NULL, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    r = aq_client_get(c, W, 0, 1, 0, 0, NULL, NULL, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    /* Nothing ready, wait 0: [] at once. */
    r = aq_client_get(c, W, 1, 5, 0, 0, NULL, NULL, &err);
    ck_assert_msg(json_is_array(r) && json_array_size(r) == 0, "%s",
                  r != NULL ? bb_dump(r) : err.message);
    json_decref(r);
    /* Wait 1 s with a 200 ms client timeout: [] when the wait runs out. */
    t0 = bb_now_ms();
    r = aq_client_get(c, both, 2, 5, 1, 0, NULL, NULL, &err);
    ck_assert_msg(json_is_array(r) && json_array_size(r) == 0, "%s",
                  r != NULL ? bb_dump(r) : err.message);
    ck_assert_int_ge(bb_now_ms() - t0, 900);
    json_decref(r);
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

#ifdef AQ_HAVE_TLS
#define LISTENING "listening on tls://127.0.0.1:"

START_TEST(worker_over_mutual_tls)
{
    struct bb_daemon *d = bb_start(
        "{\"listen\":[\"tls://127.0.0.1:0\"],"
        "\"tls\":{\"cert\":\"%s/server.pem\",\"key\":\"%s/server.key\","
        "\"client_ca\":\"%s/ca.pem\"},"
        "\"queues\":{\"w\":{\"kind\":\"remote\"}}}",
        AQ_TLS_DIR, AQ_TLS_DIR, AQ_TLS_DIR);
    struct aq_client_tls tls = {.ca_file = AQ_TLS_DIR "/ca.pem",
                                .cert_file = AQ_TLS_DIR "/client.pem",
                                .key_file = AQ_TLS_DIR "/client.key"};
    struct bb_conn *bc = bb_connect(d);
    struct aq_error err = {0};
    struct aq_client *c;
    char *log, addr[64];
    json_int_t id;
    json_t *job, *r;

    ck_assert_msg(bb_log_wait(d, LISTENING, TIMEOUT_MS), "no tls listener");
    log = bb_log(d);
    snprintf(addr, sizeof addr, "tls://127.0.0.1:%d",
             atoi(strstr(log, LISTENING) + strlen(LISTENING)));
    free(log);
    c = aq_client_connect_tls(addr, TIMEOUT_MS, &tls, &err);
    ck_assert_msg(c != NULL, "connect %s: %s", addr, err.message);
    id = put_named(bc, "upper", "secret");
    job = get_one(c, id);
    ck_assert_str_eq(bb_str_at(job, "args.text"), "secret");
    r = aq_client_task_done(c, id, json_string("SECRET"), NULL, NULL, true,
                            &err);
    ck_assert_msg(r != NULL, "task_done: %s", err.message);
    ck_assert_str_eq(bb_str_at(r, "state"), "done");
    json_decref(r);
    json_decref(job);
    aq_client_free(c);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST
#endif

static bool
all_done(void *arg)
{
    struct bb_conn *bc = arg;
    json_t *page = bb_result(bc, "list",
                             json_pack("{s:s,s:s,s:i}", "queue", "w", "state",
                                       "done", "limit", N_EXAMPLE));
    bool done = json_array_size(json_object_get(page, "jobs")) == N_EXAMPLE;

    json_decref(page);
    return done;
}

START_TEST(example_worker_runs_what_example_producer_puts)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *bc = bb_connect(d);
    char addr[64], n[16];
    const char *prod[] = {EXAMPLE_PRODUCER, "-s", addr, "-n", n, "w", NULL};
    const char *work[] = {EXAMPLE_WORKER, "-s", addr, "w", NULL};
    struct bb_run r;
    struct bb_bg *bg;
    json_t *page, *rec;
    size_t i;

    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", bb_port(d));
    snprintf(n, sizeof n, "%d", N_EXAMPLE);
    bb_run_argv(&r, NULL, prod);
    ck_assert_msg(r.status == 0, "producer: %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "200 jobs put, 0 refused") != NULL, "%s",
                  r.out);
    bb_run_free(&r);
    bg = bb_bg_start(NULL, work);
    ck_assert_msg(bb_poll(all_done, bc, TIMEOUT_MS),
                  "the worker did not finish %d jobs: %s", N_EXAMPLE,
                  bb_bg_err(bg));
    bb_bg_signal(bg, SIGTERM);
    bb_bg_finish(bg, &r, TIMEOUT_MS);
    ck_assert_msg(r.status == 0, "worker: %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "200 jobs done, stopped") != NULL, "%s", r.err);
    bb_run_free(&r);
    page = bb_result(bc, "list",
                     json_pack("{s:s,s:i}", "queue", "w", "limit", 10));
    json_array_foreach (json_object_get(page, "jobs"), i, rec) {
        json_t *st = bb_job_status(bc, bb_int_at(rec, "job"));

        ck_assert_msg(strncmp(bb_str_at(st, "result.text"), "JOB ", 4) == 0,
                      "%s", bb_dump(st));
        json_decref(st);
    }
    json_decref(page);
    bb_close(bc);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("clib_worker");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    /* A daemon that closes a socket must fail a send, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, get_then_task_done_with_result);
    tcase_add_test(tc, task_done_with_error_and_no_retry_fails_the_job);
    tcase_add_test(tc, task_done_nowait_is_pipelined);
    tcase_add_test(tc, release_is_not_counted_and_touch_renews);
    tcase_add_test(tc, get_errors_and_waits);
    tcase_add_test(tc, example_worker_runs_what_example_producer_puts);
#ifdef AQ_HAVE_TLS
    tcase_add_test(tc, worker_over_mutual_tls);
#endif
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
