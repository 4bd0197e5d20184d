/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_workers.c: remote workers (spec section 10, docs/workers.md)
 * against the real asyncqd: get and task_done, batched and long-poll
 * gets in arrival order, leases that expire, are touched, released, lost
 * with their connection or cancelled (job.cancel, then -32009), -32014
 * for a lease this connection does not hold, pause, a graceful stop with
 * a waiting get and a lease held, kill -9 with leases out, the config and
 * stats of a remote queue, and params checked strictly.
 *
 * JSON is written with ' for " (bb_jsonq); nothing sleeps: waits are
 * replies with deadlines, or polls.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#ifndef ASYNCQD_PATH
#error "ASYNCQD_PATH must name the asyncqd binary"
#endif

#define POLL_MS 10000 /* deadline for what the daemon does by itself */

/* w: remote, one retry at once; e: an echo queue for comparison. */
#define QUEUES                                                                 \
    "'queues':{'w':{'kind':'remote','timeout':30,'retries':1,"                 \
    "'backoff':{'initial':0}},'e':{'kind':'echo','consumers':1}}"

static struct bb_daemon *
start(void)
{
    return bb_startq("{" QUEUES "}");
}

static json_int_t
put_w(struct bb_conn *c, const char *name)
{
    if (name != NULL)
        return bb_put_job(
            c, bb_jsonq("{'queue':'w','name':'%s','args':{'n':1}}", name),
            POLL_MS);
    return bb_put_job(c, bb_jsonq("{'queue':'w','args':{'n':1}}"), POLL_MS);
}

/* get with params (taken): the list of leased jobs (new ref). */
static json_t *
get(struct bb_conn *c, json_t *params)
{
    json_t *r = bb_result_within(c, "get", params, 2 * POLL_MS);

    ck_assert_msg(json_is_array(r), "get: not a list: %s", bb_dump(r));
    return r;
}

/* Gets exactly one job at once and returns its id. */
static json_int_t
get_one(struct bb_conn *c, const char *extra)
{
    json_t *r = get(c, bb_jsonq("{'queue':'w','wait':5%s}", extra));
    json_int_t id;

    ck_assert_msg(json_array_size(r) == 1, "get: %s", bb_dump(r));
    id = bb_int_at(json_array_get(r, 0), "job");
    json_decref(r);
    return id;
}

static const char *
task_done(struct bb_conn *c, json_int_t id, const char *rest, char *state,
          size_t n)
{
    json_t *r = bb_result(c, "task_done",
                          bb_jsonq("{'job':%lld%s}", (long long)id, rest));

    snprintf(state, n, "%s", bb_str_at(r, "state"));
    json_decref(r);
    return state;
}

static int
job_error(struct bb_conn *c, const char *method, json_int_t id,
          const char *rest)
{
    return bb_error(c, method, bb_jsonq("{'job':%lld%s}", (long long)id, rest));
}

/* The status's string at path, copied into buf. */
static const char *
status_str(struct bb_conn *c, json_int_t id, const char *path, char *buf,
           size_t n)
{
    json_t *rec = bb_job_status(c, id);

    snprintf(buf, n, "%s", bb_str_at(rec, path));
    json_decref(rec);
    return buf;
}

static json_int_t
status_int(struct bb_conn *c, json_int_t id, const char *path)
{
    json_t *rec = bb_job_status(c, id);
    json_int_t v = bb_int_at(rec, path);

    json_decref(rec);
    return v;
}

/* ---- get and task_done ---- */

START_TEST(get_and_task_done_round_trip)
{
    struct bb_daemon *d = start();
    struct bb_conn *p = bb_connect(d), *w = bb_connect(d);
    json_int_t id = put_w(p, "resize");
    double before = bb_now_s(), deadline;
    json_t *r, *job, *rec;
    char st[32], buf[64];

    r = get(w, bb_jsonq("{'queue':'w','lease':60}"));
    ck_assert_uint_eq(json_array_size(r), 1);
    job = json_array_get(r, 0);
    ck_assert_int_eq(bb_int_at(job, "job"), id);
    ck_assert_str_eq(bb_str_at(job, "queue"), "w");
    ck_assert_str_eq(bb_str_at(job, "name"), "resize");
    ck_assert_int_eq(bb_int_at(job, "args.n"), 1);
    ck_assert_int_eq(bb_int_at(job, "attempts"), 0);
    deadline = bb_num_at(job, "lease_deadline");
    json_decref(r);
    (void)before;

    rec = bb_job_status(p, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "running");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "remote");
    ck_assert_ptr_nonnull(strchr(bb_str_at(rec, "worker"), ':'));
    ck_assert(bb_num_at(rec, "lease_deadline") == deadline);
    json_decref(rec);
    ck_assert_int_eq(bb_stat_int(p, "w", "busy"), 1);
    ck_assert_int_eq(bb_stat_int(p, "w", "workers"), 1);
    ck_assert_int_eq(bb_stat_int(p, "w", "consumers"), 0);

    ck_assert_str_eq(task_done(w, id,
                               ",'result':{'r':0.30000000000000004,'x':[1.5]}",
                               st, sizeof st),
                     "done");
    {
        char *text;
        json_int_t call =
            bb_send_call(p, "status", bb_jsonq("{'job':%lld}", (long long)id));

        (void)call;
        text = bb_recv_text(p, POLL_MS);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(strstr(text, "\"result\":{\"r\":0.30000000000000004,"
                                   "\"x\":[1.5]}") != NULL,
                      "the result is not kept as sent: %s", text);
        ck_assert_msg(strstr(text, "\"name\":\"resize\"") != NULL, "%s", text);
        free(text);
    }
    ck_assert_str_eq(status_str(p, id, "state", buf, sizeof buf), "done");
    ck_assert_int_eq(status_int(p, id, "attempts"), 1);
    ck_assert_int_eq(bb_stat_int(p, "w", "busy"), 0);
    ck_assert_int_eq(bb_stat_int(p, "w", "workers"), 0);
    ck_assert_int_eq(bb_stat_int(p, "w", "done"), 1);
    /* Done twice: not this connection's any more. */
    ck_assert_int_eq(job_error(w, "task_done", id, ",'result':1"),
                     NOT_YOUR_LEASE);
    bb_close(p);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(task_done_with_an_error_retries_then_fails_with_traceback)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d);
    json_int_t id = put_w(w, NULL), again;
    json_t *rec;
    char st[32];

    get_one(w, "");
    ck_assert_str_eq(task_done(w, id,
                               ",'error':{'code':'exception','message':'boom',"
                               "'traceback':'line 1'}",
                               st, sizeof st),
                     "pending");
    again = get_one(w, "");
    ck_assert_int_eq(again, id);
    ck_assert_int_eq(status_int(w, id, "attempts"), 1);
    ck_assert_str_eq(
        task_done(w, id,
                  ",'error':{'code':'exception','message':'boom again',"
                  "'traceback':'line 2'}",
                  st, sizeof st),
        "failed");
    rec = bb_job_status(w, id);
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "exception");
    ck_assert_str_eq(bb_str_at(rec, "error.message"), "boom again");
    ck_assert_str_eq(bb_str_at(rec, "error.traceback"), "line 2");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    json_decref(rec);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(retry_false_fails_at_once_and_no_result_is_null)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d);
    json_int_t a = put_w(w, NULL), b = put_w(w, NULL);
    json_t *r, *rec;
    char st[32];

    r = get(w, bb_jsonq("{'queue':'w','max':2,'wait':0}"));
    ck_assert_uint_eq(json_array_size(r), 2);
    json_decref(r);
    ck_assert_str_eq(task_done(w, a,
                               ",'retry':false,'error':{'code':'bad',"
                               "'message':'no'}",
                               st, sizeof st),
                     "failed");
    ck_assert_str_eq(task_done(w, b, "", st, sizeof st), "done");
    rec = bb_job_status(w, b);
    ck_assert(json_is_null(json_object_get(rec, "result")));
    json_decref(rec);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(get_max_takes_a_batch_in_queue_order)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d);
    json_int_t ids[5];
    json_t *r;
    size_t i;

    for (i = 0; i < 5; i++)
        ids[i] = put_w(w, NULL);
    r = get(w, bb_jsonq("{'queue':'w','max':3}"));
    ck_assert_uint_eq(json_array_size(r), 3);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(bb_int_at(json_array_get(r, i), "job"), ids[i]);
    json_decref(r);
    r = get(w, bb_jsonq("{'queue':'w','max':10,'wait':0}"));
    ck_assert_uint_eq(json_array_size(r), 2);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "job"), ids[3]);
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(w, "w", "busy"), 5);
    /* Nothing left: wait 0 answers [] at once. */
    r = get(w, bb_jsonq("{'queue':'w','max':10,'wait':0}"));
    ck_assert_uint_eq(json_array_size(r), 0);
    json_decref(r);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(waiting_gets_are_woken_by_puts_in_arrival_order)
{
    struct bb_daemon *d = start();
    struct bb_conn *p = bb_connect(d), *a = bb_connect(d), *b = bb_connect(d);
    json_int_t ga, gb, j1, j2;
    json_t *ra, *rb;
    int64_t t0;

    ga = bb_send_call(a, "get", bb_jsonq("{'queue':'w','wait':30,'max':5}"));
    bb_await_stat(p, "w", "workers", 1, POLL_MS);
    gb = bb_send_call(b, "get", bb_jsonq("{'queue':'w','wait':30,'max':5}"));
    bb_await_stat(p, "w", "workers", 2, POLL_MS);
    /* A connection waiting in get still answers its other requests. */
    json_decref(bb_result(a, "ping", NULL));
    j1 = put_w(p, NULL);
    ra = bb_wait_reply(a, ga, POLL_MS);
    ck_assert_ptr_nonnull(ra);
    ck_assert_uint_eq(json_array_size(json_object_get(ra, "result")), 1);
    ck_assert_int_eq(
        bb_int_at(json_array_get(json_object_get(ra, "result"), 0), "job"), j1);
    j2 = put_w(p, NULL);
    rb = bb_wait_reply(b, gb, POLL_MS);
    ck_assert_ptr_nonnull(rb);
    ck_assert_int_eq(
        bb_int_at(json_array_get(json_object_get(rb, "result"), 0), "job"), j2);
    json_decref(ra);
    json_decref(rb);
    /* A wait that runs out answers []. */
    t0 = bb_now_ms();
    ra = get(a, bb_jsonq("{'queue':['w'],'wait':0.2}"));
    ck_assert_uint_eq(json_array_size(ra), 0);
    ck_assert_int_ge(bb_now_ms() - t0, 190);
    json_decref(ra);
    bb_close(p);
    bb_close(a);
    bb_close(b);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(get_takes_from_queues_in_order_of_preference)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'hi':{'kind':'remote'},'lo':{'kind':'remote'}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t lo =
        bb_put_job(c, bb_jsonq("{'queue':'lo','args':{}}"), POLL_MS);
    json_int_t hi =
        bb_put_job(c, bb_jsonq("{'queue':'hi','args':{}}"), POLL_MS);
    json_t *r = get(c, bb_jsonq("{'queue':['hi','lo'],'max':2}"));

    ck_assert_uint_eq(json_array_size(r), 2);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "job"), hi);
    ck_assert_str_eq(bb_str_at(json_array_get(r, 0), "queue"), "hi");
    ck_assert_int_eq(bb_int_at(json_array_get(r, 1), "job"), lo);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- leases ---- */

START_TEST(an_expired_lease_fails_the_attempt_then_retries)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d), *w2 = bb_connect(d);
    json_int_t id = put_w(w, NULL);
    json_t *r, *rec;
    char buf[64];

    get_one(w, ",'lease':0.2");
    /* Its retry comes back to a waiting get, counted. */
    r = get(w2, bb_jsonq("{'queue':'w','wait':10,'lease':0.2}"));
    ck_assert_uint_eq(json_array_size(r), 1);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "job"), id);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "attempts"), 1);
    json_decref(r);
    ck_assert_int_eq(job_error(w, "task_done", id, ",'result':1"),
                     NOT_YOUR_LEASE);
    /* Out of retries the second time. */
    bb_await_state(w, id, "failed", POLL_MS);
    rec = bb_job_status(w, id);
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "lease_expired");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    json_decref(rec);
    ck_assert_int_eq(job_error(w2, "task_done", id, ",'result':1"),
                     NOT_YOUR_LEASE);
    ck_assert_str_eq(status_str(w, id, "state", buf, sizeof buf), "failed");
    bb_close(w);
    bb_close(w2);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_closed_connection_loses_its_leases)
{
    struct bb_daemon *d = start();
    struct bb_conn *p = bb_connect(d), *w = bb_connect(d);
    json_int_t id = put_w(p, NULL);
    json_t *rec;

    get_one(w, "");
    bb_close(w);
    bb_await_state(p, id, "pending", POLL_MS);
    rec = bb_job_status(p, id);
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "worker_lost");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_ptr_null(json_object_get(rec, "worker"));
    json_decref(rec);
    bb_await_stat(p, "w", "workers", 0, POLL_MS);
    bb_close(p);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(touch_extends_a_lease)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d), *w2 = bb_connect(d);
    json_int_t id = put_w(w, NULL);
    double now = 0;
    json_t *r;
    char st[32];

    get_one(w, ",'lease':0.3");
    r = bb_result(w, "touch",
                  bb_jsonq("{'job':%lld,'lease':30}", (long long)id));
    ck_assert_int_eq(bb_int_at(r, "job"), id);
    now = bb_num_at(r, "lease_deadline");
    ck_assert(now > 0);
    json_decref(r);
    /* Past the first lease's end: still held (no job to take). */
    r = get(w2, bb_jsonq("{'queue':'w','wait':0.8}"));
    ck_assert_uint_eq(json_array_size(r), 0);
    json_decref(r);
    /* A touch without lease renews for the length last granted. */
    r = bb_result(w, "touch", bb_jsonq("{'job':%lld}", (long long)id));
    ck_assert(bb_num_at(r, "lease_deadline") >= now);
    json_decref(r);
    ck_assert_str_eq(task_done(w, id, ",'result':'ok'", st, sizeof st), "done");
    ck_assert_int_eq(job_error(w, "touch", id, ""), NOT_YOUR_LEASE);
    bb_close(w);
    bb_close(w2);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(release_gives_the_job_back_uncounted)
{
    struct bb_daemon *d = start();
    struct bb_conn *w = bb_connect(d);
    json_int_t id = put_w(w, NULL);
    json_t *r;
    char buf[64];

    get_one(w, "");
    r = bb_result(w, "release", bb_jsonq("{'job':%lld}", (long long)id));
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    json_decref(r);
    r = get(w, bb_jsonq("{'queue':'w'}"));
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "attempts"), 0);
    json_decref(r);
    r = bb_result(w, "release",
                  bb_jsonq("{'job':%lld,'delay':3600}", (long long)id));
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    json_decref(r);
    ck_assert_str_eq(status_str(w, id, "state", buf, sizeof buf), "delayed");
    ck_assert_int_eq(status_int(w, id, "attempts"), 0);
    ck_assert_int_eq(job_error(w, "release", id, ""), NOT_YOUR_LEASE);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_leased_job_notifies_its_holder)
{
    struct bb_daemon *d = start();
    struct bb_conn *p = bb_connect(d), *w = bb_connect(d);
    json_int_t id = put_w(p, NULL);
    json_t *r, *note;
    char buf[64];

    get_one(w, "");
    r = bb_result(p, "cancel", bb_jsonq("{'job':%lld}", (long long)id));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    json_decref(r);
    note = bb_recv(w, POLL_MS);
    ck_assert_ptr_nonnull(note);
    ck_assert_ptr_null(json_object_get(note, "id"));
    ck_assert_str_eq(bb_str_at(note, "jsonrpc"), "2.0");
    ck_assert_str_eq(bb_str_at(note, "method"), "job.cancel");
    ck_assert_int_eq(bb_int_at(note, "params.job"), id);
    json_decref(note);
    ck_assert_str_eq(status_str(p, id, "state", buf, sizeof buf), "cancelled");
    ck_assert_int_eq(job_error(w, "task_done", id, ",'result':1"),
                     ALREADY_FINISHED);
    ck_assert_int_eq(job_error(w, "touch", id, ""), ALREADY_FINISHED);
    /* Another connection never held it. */
    ck_assert_int_eq(job_error(p, "task_done", id, ""), NOT_YOUR_LEASE);
    ck_assert_int_eq(bb_stat_int(p, "w", "busy"), 0);
    bb_close(p);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(not_your_lease_for_jobs_this_connection_does_not_hold)
{
    struct bb_daemon *d = start();
    struct bb_conn *a = bb_connect(d), *b = bb_connect(d);
    json_int_t held = put_w(a, NULL), pending;
    char st[32];

    get_one(a, "");
    pending = put_w(a, NULL);
    /* Never leased. */
    ck_assert_int_eq(job_error(a, "task_done", pending, ""), NOT_YOUR_LEASE);
    ck_assert_int_eq(job_error(b, "release", pending, ""), NOT_YOUR_LEASE);
    /* Another connection's. */
    ck_assert_int_eq(job_error(b, "task_done", held, ",'result':1"),
                     NOT_YOUR_LEASE);
    ck_assert_int_eq(job_error(b, "touch", held, ""), NOT_YOUR_LEASE);
    ck_assert_int_eq(job_error(b, "release", held, ""), NOT_YOUR_LEASE);
    /* Unknown. */
    ck_assert_int_eq(job_error(a, "task_done", 999999, ""), NO_SUCH_JOB);
    /* Nothing changed: the holder still ends it. */
    ck_assert_str_eq(task_done(a, held, ",'result':1", st, sizeof st), "done");
    ck_assert_int_eq(job_error(a, "task_done", held, ",'result':1"),
                     NOT_YOUR_LEASE);
    bb_close(a);
    bb_close(b);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(pause_holds_a_waiting_get)
{
    struct bb_daemon *d = start();
    struct bb_conn *p = bb_connect(d), *w = bb_connect(d);
    json_int_t g, id;
    json_t *r;

    json_decref(bb_result(p, "pause", bb_jsonq("{'queue':'w'}")));
    g = bb_send_call(w, "get", bb_jsonq("{'queue':'w','wait':30}"));
    bb_await_stat(p, "w", "workers", 1, POLL_MS);
    id = put_w(p, NULL);
    ck_assert_ptr_null(bb_wait_reply(w, g, 300));
    r = get(p, bb_jsonq("{'queue':'w','wait':0}"));
    ck_assert_uint_eq(json_array_size(r), 0);
    json_decref(r);
    json_decref(bb_result(p, "resume", bb_jsonq("{'queue':'w'}")));
    r = bb_wait_reply(w, g, POLL_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(
        bb_int_at(json_array_get(json_object_get(r, "result"), 0), "job"), id);
    json_decref(r);
    bb_close(p);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- stop and crash ---- */

START_TEST(graceful_stop_answers_gets_and_waits_for_holders)
{
    struct bb_daemon *d = bb_startq("{'shutdown':{'grace':10}," QUEUES "}");
    struct bb_conn *p = bb_connect(d), *w = bb_connect(d), *g = bb_connect(d);
    json_int_t id = put_w(p, NULL), call;
    json_t *r;
    char st[32];

    get_one(w, "");
    call = bb_send_call(g, "get", bb_jsonq("{'queue':'w','wait':60}"));
    bb_await_stat(p, "w", "workers", 2, POLL_MS);
    bb_signal(d, SIGTERM);
    r = bb_wait_reply(g, call, POLL_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(json_array_size(json_object_get(r, "result")), 0);
    json_decref(r);
    /* New gets are answered [] at once; the holder may still finish. */
    r = get(g, bb_jsonq("{'queue':'w','wait':60}"));
    ck_assert_uint_eq(json_array_size(r), 0);
    json_decref(r);
    ck_assert_str_eq(task_done(w, id, ",'result':7", st, sizeof st), "done");
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 0);
    bb_free(d);
    bb_close(p);
    bb_close(w);
    bb_close(g);
}
END_TEST

START_TEST(graceful_stop_past_the_grace_puts_held_jobs_back_uncounted)
{
    char root[] = "/tmp/asyncq-bbw.XXXXXX", cfg[512];
    struct bb_daemon *d;
    struct bb_conn *p, *w;
    json_int_t id;
    json_t *r;

    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{'journal':{'path':'%s/journal'},'shutdown':{'grace':0.3}," QUEUES
             "}",
             root);
    d = bb_startq("%s", cfg);
    p = bb_connect(d);
    w = bb_connect(d);
    id = put_w(p, NULL);
    get_one(w, "");
    bb_signal(d, SIGTERM);
    ck_assert(bb_wait_closed(w, POLL_MS));
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 0);
    bb_free(d);
    bb_close(p);
    bb_close(w);

    d = bb_startq("%s", cfg);
    w = bb_connect(d);
    r = get(w, bb_jsonq("{'queue':'w','wait':5}"));
    ck_assert_uint_eq(json_array_size(r), 1);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "job"), id);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "attempts"), 0);
    json_decref(r);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}
END_TEST

START_TEST(kill_9_with_leases_out_runs_the_jobs_again_counted)
{
    char root[] = "/tmp/asyncq-bbw.XXXXXX", cfg[512];
    struct bb_daemon *d;
    struct bb_conn *p, *w;
    json_int_t a, b;
    json_t *r;
    char st[32];

    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(cfg, sizeof cfg,
             "{'journal':{'path':'%s/journal','fsync':'always'}," QUEUES "}",
             root);
    d = bb_startq("%s", cfg);
    p = bb_connect(d);
    w = bb_connect(d);
    a = put_w(p, "x");
    b = put_w(p, NULL);
    r = get(w, bb_jsonq("{'queue':'w','max':2}"));
    ck_assert_uint_eq(json_array_size(r), 2);
    json_decref(r);
    /* One done before the crash: it stays done. */
    ck_assert_str_eq(task_done(w, b, ",'result':2", st, sizeof st), "done");
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 128 + SIGKILL);
    bb_free(d);
    bb_close(p);
    bb_close(w);

    d = bb_startq("%s", cfg);
    w = bb_connect(d);
    r = get(w, bb_jsonq("{'queue':'w','wait':5,'max':5}"));
    ck_assert_uint_eq(json_array_size(r), 1);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "job"), a);
    ck_assert_int_eq(bb_int_at(json_array_get(r, 0), "attempts"), 1);
    ck_assert_str_eq(bb_str_at(json_array_get(r, 0), "name"), "x");
    json_decref(r);
    ck_assert_str_eq(task_done(w, a, ",'result':1", st, sizeof st), "done");
    ck_assert_int_eq(status_int(w, b, "result"), 2);
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_remove_dir(root);
}
END_TEST

/* ---- config, stats, params ---- */

START_TEST(a_remote_queue_with_consumers_is_a_config_error)
{
    char dir[] = "/tmp/asyncq-bbw.XXXXXX", path[96];
    const char *argv[] = {ASYNCQD_PATH, "--config", path, "--check-config",
                          NULL};
    const struct bb_run_opts o = {.timeout_ms = POLL_MS};
    struct bb_run r;
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/asyncqd.json", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"queues\":{\"jobs\":{\"kind\":\"remote\",\"consumers\":2}}}", f);
    fclose(f);
    bb_run_argv(&r, &o, argv);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "queues.jobs.consumers") != NULL, "%s%s", r.out,
                  r.err);
    bb_run_free(&r);
    /* Without consumers it is valid: 0 is the default for remote. */
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"queues\":{\"jobs\":{\"kind\":\"remote\"}}}", f);
    fclose(f);
    bb_run_argv(&r, &o, argv);
    ck_assert_msg(r.status == 0, "%s%s", r.out, r.err);
    bb_run_free(&r);
    bb_remove_dir(dir);
}
END_TEST

START_TEST(remote_queues_refuse_scale_and_others_refuse_get)
{
    struct bb_daemon *d = start();
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(
        bb_error(c, "scale", bb_jsonq("{'queue':'w','consumers':1}")),
        NOT_ALLOWED);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'w','consumers':0}")));
    ck_assert_int_eq(bb_error(c, "get", bb_jsonq("{'queue':'e','wait':0}")),
                     NOT_ALLOWED);
    ck_assert_int_eq(
        bb_error(c, "get", bb_jsonq("{'queue':['w','nope'],'wait':0}")),
        NO_SUCH_QUEUE);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The error of a call, and that its message names field. */
static void
assert_bad(struct bb_conn *c, const char *method, const char *params,
           const char *field)
{
    json_t *r = bb_call(c, method, bb_jsonq("%s", params));
    const char *msg;

    ck_assert_msg(json_object_get(r, "error") != NULL, "%s %s: %s", method,
                  params, bb_dump(r));
    ck_assert_int_eq(bb_int_at(r, "error.code"), INVALID_PARAMS);
    msg = bb_str_at(r, "error.message");
    ck_assert_msg(strstr(msg, field) != NULL, "%s %s: %s does not name %s",
                  method, params, msg, field);
    json_decref(r);
}

START_TEST(bad_params_are_refused_naming_the_field)
{
    struct bb_daemon *d = start();
    struct bb_conn *c = bb_connect(d);
    char name[260];

    assert_bad(c, "get", "{}", "params.queue");
    assert_bad(c, "get", "{'queue':5}", "params.queue");
    assert_bad(c, "get", "{'queue':[]}", "params.queue");
    assert_bad(c, "get", "{'queue':['w',5]}", "params.queue[1]");
    assert_bad(c, "get", "{'queue':'w','max':0}", "params.max");
    assert_bad(c, "get", "{'queue':'w','max':1001}", "params.max");
    assert_bad(c, "get", "{'queue':'w','max':1.5}", "params.max");
    assert_bad(c, "get", "{'queue':'w','max':'2'}", "params.max");
    assert_bad(c, "get", "{'queue':'w','wait':-1}", "params.wait");
    assert_bad(c, "get", "{'queue':'w','wait':2e9}", "params.wait");
    assert_bad(c, "get", "{'queue':'w','wait':true}", "params.wait");
    assert_bad(c, "get", "{'queue':'w','lease':0}", "params.lease");
    assert_bad(c, "get", "{'queue':'w','lease':1e10}", "params.lease");
    assert_bad(c, "get", "{'queue':'w','leases':1}", "params.leases");
    assert_bad(c, "task_done", "{}", "params.job");
    assert_bad(c, "task_done", "{'job':0}", "params.job");
    assert_bad(c, "task_done", "{'job':'1'}", "params.job");
    assert_bad(c, "task_done", "{'job':1,'result':1,'error':{}}",
               "params.error");
    assert_bad(c, "task_done", "{'job':1,'error':'x'}", "params.error");
    assert_bad(c, "task_done", "{'job':1,'error':{'message':'m'}}",
               "params.error.code");
    assert_bad(c, "task_done", "{'job':1,'error':{'code':1,'message':'m'}}",
               "params.error.code");
    assert_bad(c, "task_done", "{'job':1,'error':{'code':'c'}}",
               "params.error.message");
    assert_bad(c, "task_done",
               "{'job':1,'error':{'code':'c','message':'m','traceback':1}}",
               "params.error.traceback");
    assert_bad(c, "task_done",
               "{'job':1,'error':{'code':'c','message':'m','x':1}}",
               "params.error.x");
    assert_bad(c, "task_done", "{'job':1,'retry':1}", "params.retry");
    assert_bad(c, "touch", "{'job':1,'lease':-1}", "params.lease");
    assert_bad(c, "touch", "{'job':1,'lease':0}", "params.lease");
    assert_bad(c, "release", "{'job':1,'delay':'x'}", "params.delay");
    assert_bad(c, "release", "{'job':1,'delay':2e9}", "params.delay");
    assert_bad(c, "put", "{'queue':'w','name':5}", "params.name");
    memset(name, 'n', 201);
    name[201] = '\0';
    {
        char params[320];

        snprintf(params, sizeof params, "{'queue':'w','name':'%s'}", name);
        assert_bad(c, "put", params, "params.name");
        name[200] = '\0';
        snprintf(params, sizeof params, "{'queue':'w','name':'%s'}", name);
        json_decref(bb_result(c, "put", bb_jsonq("%s", params)));
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_workers_suite(void)
{
    Suite *s = suite_create("bb_workers");
    TCase *tc = tcase_create("workers");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, get_and_task_done_round_trip);
    tcase_add_test(tc,
                   task_done_with_an_error_retries_then_fails_with_traceback);
    tcase_add_test(tc, retry_false_fails_at_once_and_no_result_is_null);
    tcase_add_test(tc, get_max_takes_a_batch_in_queue_order);
    tcase_add_test(tc, waiting_gets_are_woken_by_puts_in_arrival_order);
    tcase_add_test(tc, get_takes_from_queues_in_order_of_preference);
    tcase_add_test(tc, an_expired_lease_fails_the_attempt_then_retries);
    tcase_add_test(tc, a_closed_connection_loses_its_leases);
    tcase_add_test(tc, touch_extends_a_lease);
    tcase_add_test(tc, release_gives_the_job_back_uncounted);
    tcase_add_test(tc, cancel_of_a_leased_job_notifies_its_holder);
    tcase_add_test(tc, not_your_lease_for_jobs_this_connection_does_not_hold);
    tcase_add_test(tc, pause_holds_a_waiting_get);
    tcase_add_test(tc, graceful_stop_answers_gets_and_waits_for_holders);
    tcase_add_test(tc,
                   graceful_stop_past_the_grace_puts_held_jobs_back_uncounted);
    tcase_add_test(tc, kill_9_with_leases_out_runs_the_jobs_again_counted);
    tcase_add_test(tc, a_remote_queue_with_consumers_is_a_config_error);
    tcase_add_test(tc, remote_queues_refuse_scale_and_others_refuse_get);
    tcase_add_test(tc, bad_params_are_refused_naming_the_field);
    suite_add_tcase(s, tc);
    return s;
}
