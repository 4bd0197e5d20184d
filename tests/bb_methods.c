/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_methods.c: the methods of SPEC §2 against a real asyncqd: put
 * (delays, priorities, LIFO, timeouts, retries, keys, wait, nowait,
 * back-pressure, shutdown), status, wait, cancel, join, stats, scale,
 * pause/resume, SIGHUP reload and the expiry of finished records.
 *
 * Each test starts its own daemon with a small config. JSON in the tests is
 * written with single quotes ('queue') for legibility; bb_jsonq() and
 * bb_startq() turn them into double quotes before parsing, so no text here
 * may hold an apostrophe.
 * Nothing sleeps: tests wait for replies, or poll with a deadline.
 */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define POLL_MS 5000 /* deadline for a state the daemon reaches on its own */

/* ---- helpers ---- */

/* Fails unless actual equals expected (taken); actual is borrowed. */
static void
assert_json_eq(const json_t *actual, json_t *expected)
{
    if (!json_equal(actual, expected)) {
        char *a = bb_dump(actual);
        char *e = bb_dump(expected);

        ck_abort_msg("got %s, expected %s", a, e);
    }
    json_decref(expected);
}

/* A put that is answered at once with {"job":ID,"state":state}; the id. */
static json_int_t
put_ok(struct bb_conn *c, json_t *params, const char *state)
{
    json_t *r = bb_result(c, "put", params);
    json_int_t id;

    ck_assert_msg(json_is_integer(json_object_get(r, "job")), "put: no job id");
    id = bb_int_at(r, "job");
    ck_assert_int_gt(id, 0);
    assert_json_eq(r, json_pack("{s:I,s:s}", "job", id, "state", state));
    json_decref(r);
    return id;
}

static void
assert_state(struct bb_conn *c, json_int_t id, const char *state)
{
    json_t *rec = bb_job_status(c, id);

    ck_assert_str_eq(bb_str_at(rec, "state"), state);
    json_decref(rec);
}

/* The stats object of one queue (new ref). */
static json_t *
queue_stats(struct bb_conn *c, const char *queue)
{
    json_t *r = bb_result(c, "stats", json_pack("{s:s}", "queue", queue));
    json_t *q = json_object_get(json_object_get(r, "queues"), queue);

    ck_assert_msg(json_is_object(q), "stats: no queue %s", queue);
    json_incref(q);
    json_decref(r);
    return q;
}

static json_int_t
queue_stat(struct bb_conn *c, const char *queue, const char *field)
{
    json_t *q = queue_stats(c, queue);
    json_int_t n = bb_int_at(q, field);

    json_decref(q);
    return n;
}

/* Fails unless the listed integer counters of the queue have these values:
 * expected is a JSON object (taken) holding a subset of the stats fields. */
static void
assert_stats(struct bb_conn *c, const char *queue, json_t *expected)
{
    json_t *q = queue_stats(c, queue);
    json_t *subset = json_object();
    const char *key;
    json_t *v;

    json_object_foreach (expected, key, v) {
        json_t *got = json_object_get(q, key);

        json_object_set(subset, key, got != NULL ? got : json_null());
    }
    assert_json_eq(subset, expected);
    json_decref(subset);
    json_decref(q);
}

/* ---- polling ---- */

/* Whether a field is unset: absent or null. */
static bool
is_unset(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);

    return v == NULL || json_is_null(v);
}

/* Fails unless rec holds every field of a job record, with its type. */
static void
assert_record_fields(const json_t *rec, bool has_run, bool has_result,
                     bool has_error)
{
    ck_assert_int_gt(bb_int_at(rec, "job"), 0);
    bb_str_at(rec, "queue");
    bb_str_at(rec, "kind");
    bb_str_at(rec, "state");
    bb_int_at(rec, "priority");
    ck_assert_int_ge(bb_int_at(rec, "attempts"), 0);
    ck_assert(bb_num_at(rec, "created") > 0);
    if (has_run) {
        ck_assert(bb_num_at(rec, "started") >= bb_num_at(rec, "created"));
        ck_assert(bb_num_at(rec, "finished") >= bb_num_at(rec, "started"));
    }
    if (has_result)
        ck_assert(json_is_object(json_object_get(rec, "result")));
    if (has_error) {
        const json_t *e = json_object_get(rec, "error");

        ck_assert_msg(json_is_object(e), "record without an error object");
        bb_str_at(e, "code");
        bb_str_at(e, "message");
    }
}

/* The pid of a child process of pid, or 0 if it has none. */
static pid_t
child_of(pid_t pid)
{
    char path[64];
    struct dirent *de;
    DIR *dir;
    long child = 0;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    if ((dir = opendir(path)) == NULL)
        return 0;
    while (child == 0 && (de = readdir(dir)) != NULL) {
        char children[320];
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(children, sizeof children, "/proc/%d/task/%s/children",
                 (int)pid, de->d_name);
        if ((f = fopen(children, "r")) == NULL)
            continue;
        if (fscanf(f, "%ld", &child) != 1)
            child = 0;
        fclose(f);
    }
    closedir(dir);
    return (pid_t)child;
}

struct child_poll {
    pid_t parent, child;
};

static bool
has_child(void *arg)
{
    struct child_poll *p = arg;

    return (p->child = child_of(p->parent)) != 0;
}

static bool
child_is_gone(void *arg)
{
    struct child_poll *p = arg;

    return !bb_pid_alive(p->child);
}

/* ---- put ---- */

START_TEST(put_returns_job_id_and_pending_state)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a, b;

    a = put_ok(c, bb_jsonq("{'args':{'n':1}}"), "pending");
    b = put_ok(c, bb_jsonq("{'queue':'default','kind':'echo'}"), "pending");
    ck_assert_int_ne(a, b);
    assert_state(c, a, "pending");
    assert_state(c, b, "pending");
    assert_stats(c, "default", bb_jsonq("{'size':2,'unfinished':2,'put':2}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_delay_is_delayed_then_pending_after_the_delay)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    double t0 = bb_now_s();
    json_int_t a = put_ok(c, bb_jsonq("{'delay':0.5}"), "delayed");
    json_t *rec = bb_job_status(c, a);

    /* Answered before the delay passed, it can only say delayed. */
    if (bb_now_s() - t0 < 0.5)
        ck_assert_str_eq(bb_str_at(rec, "state"), "delayed");
    json_decref(rec);
    bb_await_state(c, a, "pending", POLL_MS);
    ck_assert_msg(bb_now_s() - t0 >= 0.5, "pending after %.3f s, before 0.5 s",
                  bb_now_s() - t0);
    assert_stats(c, "default",
                 bb_jsonq("{'size':1,'delayed':0,'unfinished':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_delay_runs_the_job_no_earlier_than_the_delay)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    double t0 = bb_now_s();
    json_t *rec =
        bb_result(c, "put", bb_jsonq("{'delay':0.4,'wait':true,'args':{}}"));
    double elapsed = bb_now_s() - t0;

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_msg(elapsed >= 0.4, "done after %.3f s, before the 0.4 s delay",
                  elapsed);
    /* The daemon's own clock agrees (within a timer's rounding). */
    ck_assert_msg(bb_num_at(rec, "started") - bb_num_at(rec, "created") >=
                      0.4 - 0.005,
                  "started %.3f s after created",
                  bb_num_at(rec, "started") - bb_num_at(rec, "created"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_runs_lower_priority_first_then_in_put_order)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    const int prio[4] = {5, 1, 3, 1};
    const int order[4] = {1, 3, 2, 0}; /* indexes of ids, as they must run */
    json_int_t ids[4], w;
    json_t *list;

    for (int i = 0; i < 4; i++)
        ids[i] =
            put_ok(c, bb_jsonq("{'priority':%d,'args':{'n':%d}}", prio[i], i),
                   "pending");
    w = bb_send_call(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld,%lld,%lld],'mode':'stream'}",
                              (long long)ids[0], (long long)ids[1],
                              (long long)ids[2], (long long)ids[3]));
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':1}")));
    list = bb_wait_reply(c, w, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(list);
    ck_assert_int_eq(json_array_size(json_object_get(list, "result")), 4);
    /* The job.done notifications came in the order the jobs finished. */
    for (int i = 0; i < 4; i++) {
        json_t *n = bb_recv(c, BB_TIMEOUT_MS);
        json_t *rec = json_object_get(n, "params");

        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(bb_str_at(n, "method"), "job.done");
        ck_assert_int_eq(bb_int_at(rec, "job"), ids[order[i]]);
        ck_assert_int_eq(bb_int_at(rec, "priority"), prio[order[i]]);
        json_decref(n);
    }
    /* And each one started no earlier than the one before it. */
    for (int i = 1; i < 4; i++) {
        json_t *prev = bb_job_status(c, ids[order[i - 1]]);
        json_t *rec = bb_job_status(c, ids[order[i]]);

        ck_assert(bb_num_at(rec, "started") >= bb_num_at(prev, "started"));
        json_decref(prev);
        json_decref(rec);
    }
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_to_lifo_queue_runs_the_newest_job_first)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'stack':{'kind':'echo','consumers':0,'order':'lifo'}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[3], w;
    json_t *list;

    for (int i = 0; i < 3; i++)
        ids[i] = put_ok(c, bb_jsonq("{'queue':'stack','args':{'n':%d}}", i),
                        "pending");
    w = bb_send_call(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld,%lld],'mode':'stream'}",
                              (long long)ids[0], (long long)ids[1],
                              (long long)ids[2]));
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'stack','consumers':1}")));
    list = bb_wait_reply(c, w, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(list);
    for (int i = 2; i >= 0; i--) {
        json_t *n = bb_recv(c, BB_TIMEOUT_MS);

        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(bb_str_at(n, "method"), "job.done");
        ck_assert_int_eq(bb_int_at(json_object_get(n, "params"), "job"),
                         ids[i]);
        json_decref(n);
    }
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_timeout_fails_a_job_that_runs_too_long)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    double t0 = bb_now_s();
    json_t *rec = bb_result(
        c, "put", bb_jsonq("{'args':{'seconds':5},'timeout':0.2,'wait':true}"));
    double elapsed = bb_now_s() - t0;

    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(json_object_get(rec, "error"), "code"),
                     "timeout");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_msg(elapsed >= 0.2 && elapsed < 4, "failed after %.3f s",
                  elapsed);
    assert_stats(c, "default", bb_jsonq("{'failed':1,'done':0,'running':0}"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_timeout_defaults_to_the_queue_timeout)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'sleep','consumers':1,'timeout':0.2}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec =
        bb_result(c, "put", bb_jsonq("{'args':{'seconds':5},'wait':true}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(json_object_get(rec, "error"), "code"),
                     "timeout");
    json_decref(rec);
    /* A job's own timeout overrides the queue's. */
    rec = bb_result(
        c, "put", bb_jsonq("{'args':{'seconds':0.3},'timeout':5,'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_retries_a_failing_job_with_backoff_then_fails_it)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'exec','consumers':1,"
                  "'backoff':{'initial':0.1,'factor':2,'max':1}}}}");
    struct bb_conn *c = bb_connect(d);
    double t0 = bb_now_s(), elapsed;
    json_int_t a = put_ok(
        c, bb_jsonq("{'args':{'argv':['/bin/sh','-c','exit 3']},'retries':2}"),
        "pending");
    json_t *list, *rec;

    /* Between attempts the job waits in state delayed. */
    bb_await_state(c, a, "delayed", POLL_MS);
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a));
    elapsed = bb_now_s() - t0;
    rec = json_array_get(list, 0);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 3);
    ck_assert_int_eq(bb_int_at(json_object_get(rec, "result"), "exit_code"), 3);
    assert_record_fields(rec, true, true, true);
    /* Backoff: 0.1 s before attempt 2, 0.2 s before attempt 3. */
    ck_assert_msg(elapsed >= 0.3, "3 attempts in %.3f s, backoff is 0.3 s",
                  elapsed);
    assert_stats(c, "default",
                 bb_jsonq("{'put':1,'retried':2,'failed':1,'done':0}"));
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_retries_default_to_the_queue_retries)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'exec','consumers':1,'retries':2,"
        "'backoff':{'initial':0}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    rec = bb_result(
        c, "put",
        bb_jsonq("{'args':{'argv':['/bin/sh','-c','exit 3']},'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 3);
    json_decref(rec);
    /* A job's own retries override the queue's. */
    rec = bb_result(c, "put",
                    bb_jsonq("{'args':{'argv':['/bin/sh','-c','exit 3']},"
                             "'retries':0,'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);
    assert_stats(c, "default", bb_jsonq("{'put':2,'retried':2,'failed':2}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_a_known_key_returns_the_same_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'key':'order-17'}"), "pending"), b;
    json_t *r;

    r = bb_result(c, "put", bb_jsonq("{'key':'order-17'}"));
    assert_json_eq(r,
                   bb_jsonq("{'job':%lld,'state':'pending','duplicate':true}",
                            (long long)a));
    json_decref(r);
    b = put_ok(c, bb_jsonq("{'key':'order-18'}"), "pending");
    ck_assert_int_ne(a, b);
    assert_stats(c, "default", bb_jsonq("{'put':2,'unfinished':2}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_wait_returns_the_finished_record)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec = bb_result(
        c, "put",
        bb_jsonq("{'args':{'x':[1,2.5,null],'s':'hi','o':{}},'wait':true}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "default");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "echo");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    assert_json_eq(json_object_get(rec, "result"),
                   bb_jsonq("{'x':[1,2.5,null],'s':'hi','o':{}}"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_nowait_on_a_full_queue_fails_at_once)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo','consumers':0,'maxsize':1}}}");
    struct bb_conn *c = bb_connect(d);
    double t0;

    put_ok(c, bb_jsonq("{'nowait':true}"), "pending");
    t0 = bb_now_s();
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'nowait':true}")),
                     QUEUE_FULL);
    ck_assert_msg(bb_now_s() - t0 < 2, "queue full after %.3f s",
                  bb_now_s() - t0);
    assert_stats(c, "default",
                 bb_jsonq("{'put':1,'unfinished':1,'maxsize':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_to_an_unknown_queue_fails_with_no_such_queue)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'queue':'nope'}")),
                     NO_SUCH_QUEUE);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'nope','wait':true}")),
        NO_SUCH_QUEUE);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_of_an_unknown_kind_or_bad_args_fails_with_invalid_params)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'echo','"
                                    "kinds':['http'],'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'kind':'teleport'}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'kind':7}")),
                     INVALID_PARAMS);
    /* A built kind still checks its args at put. */
    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'kind':'http','args':{'url':'ftp://127.0.0.1/'}}")),
        INVALID_PARAMS);
    assert_stats(c, "default", bb_jsonq("{'put':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_of_a_program_outside_the_allow_list_fails_not_allowed)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'exec','consumers':1,"
                  "'exec':{'allow':['/bin/echo']}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'args':{'argv':['/bin/sh','-c','true']}}")),
        NOT_ALLOWED);
    rec = bb_result(
        c, "put", bb_jsonq("{'args':{'argv':['/bin/echo','hi']},'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(json_object_get(rec, "result"), "stdout"),
                     "hi\n");
    json_decref(rec);
    assert_stats(c, "default", bb_jsonq("{'put':1,'done':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The message of an error reply to a call expected to fail with code. */
static char *
error_message(struct bb_conn *c, const char *method, json_t *params, int code)
{
    json_t *r = bb_call(c, method, params);
    json_t *e = json_object_get(r, "error");
    char *msg;

    ck_assert_msg(json_is_object(e), "%s succeeded: %s", method, bb_dump(r));
    ck_assert_int_eq(bb_int_at(e, "code"), code);
    msg = strdup(bb_str_at(e, "message"));
    json_decref(r);
    return msg;
}

static void
assert_has(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "\"%s\" does not hold \"%s\"",
                  text, needle);
}

/* Issue 11, defect 15: a queue of another kind kept the default exec
 * allow list ["*"], so an exec put on it ran any program. */
START_TEST(put_of_a_kind_its_queue_does_not_run_fails_not_allowed)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'web':{'kind':'echo','consumers':1},"
        "'ex':{'kind':'exec','consumers':1,'exec':{'allow':['/bin/true']}}}}");
    struct bb_conn *c = bb_connect(d);
    char *msg;

    msg = error_message(c, "put",
                        bb_jsonq("{'queue':'web','kind':'exec','args':"
                                 "{'argv':['/bin/sh','-c','echo pwned']}}"),
                        NOT_ALLOWED);
    assert_has(msg, "web");
    assert_has(msg, "exec");
    free(msg);
    ck_assert_int_eq(bb_error(c, "put",
                              bb_jsonq("{'queue':'web','kind':'sleep',"
                                       "'args':{'seconds':0}}")),
                     NOT_ALLOWED);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'ex','kind':'echo'}")),
        NOT_ALLOWED);
    /* Naming the queue's own kind is fine. */
    json_decref(bb_result(c, "put",
                          bb_jsonq("{'queue':'web','kind':'echo',"
                                   "'wait':true}")));
    assert_stats(c, "web", bb_jsonq("{'put':1}"));
    assert_stats(c, "ex", bb_jsonq("{'put':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A listed kind runs with the queue's own settings: its exec.allow. */
START_TEST(put_of_a_listed_kind_is_checked_against_the_queue_settings)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'web':{'kind':'echo','kinds':['exec'],"
                  "'consumers':1,'exec':{'allow':['/bin/true']}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'queue':'web','kind':'exec',"
                          "'args':{'argv':['/bin/sh','-c','true']}}")),
        NOT_ALLOWED);
    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'web','kind':'exec',"
                             "'args':{'argv':['/bin/true']},'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "exec");
    json_decref(rec);
    rec = bb_result(c, "put", bb_jsonq("{'queue':'web','wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "kind"), "echo");
    json_decref(rec);
    ck_assert_int_eq(bb_error(c, "put",
                              bb_jsonq("{'queue':'web','kind':'sleep',"
                                       "'args':{'seconds':0}}")),
                     NOT_ALLOWED);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Issue 11, defect 14: seconds 1e17 overflowed a conversion to int64_t at
 * every run (and at every start, replayed). */
START_TEST(put_of_a_duration_past_1e9_seconds_fails_naming_the_field)
{
    static const char *const bad[][2] = {
        {"{'kind':'sleep','args':{'seconds':1e17}}", "params.args.seconds"},
        {"{'kind':'sleep','args':{'seconds':1000000000.5}}",
         "params.args.seconds"},
        {"{'kind':'sleep','args':{'seconds':1e308}}", "params.args.seconds"},
        {"{'kind':'echo','delay':1e17}", "params.delay"},
        {"{'kind':'echo','timeout':1e17}", "params.timeout"},
    };
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep','"
                                    "kinds':['echo'],'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *msg =
            error_message(c, "put", bb_jsonq("%s", bad[i][0]), INVALID_PARAMS);

        assert_has(msg, bad[i][1]);
        free(msg);
    }
    /* The maximum itself is a valid duration. */
    id = put_ok(c, bb_jsonq("{'args':{'seconds':1e9}}"), "pending");
    bb_await_state(c, id, "running", POLL_MS);
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", id)));
    bb_await_state(c, id, "cancelled", POLL_MS);
    assert_stats(c, "default", bb_jsonq("{'put':1,'cancelled':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_args_must_be_an_object)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'args':[1,2]}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'args':'x'}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'args':3}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'args':true}")),
                     INVALID_PARAMS);
    assert_stats(c, "default", bb_jsonq("{'put':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_rejects_params_of_the_wrong_type)
{
    static const char *const bad[] = {
        "{'priority':1.5}", "{'priority':'1'}",  "{'retries':-1}",
        "{'retries':1.5}",  "{'delay':-1}",      "{'delay':'1'}",
        "{'timeout':-0.5}", "{'timeout':'1'}",   "{'wait':1}",
        "{'nowait':'yes'}", "{'key':5}",         "{'queue':5}",
        "{'queue':null}",   "{'priority':true}", NULL};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    for (int i = 0; bad[i] != NULL; i++) {
        int code = bb_error(c, "put", bb_jsonq("%s", bad[i]));

        ck_assert_msg(code == INVALID_PARAMS,
                      "put %s: error %d, expected -32602", bad[i], code);
    }
    assert_stats(c, "default", bb_jsonq("{'put':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_during_shutdown_fails_while_running_jobs_finish)
{
    struct bb_daemon *d = bb_startq("{'shutdown':{'grace':30},"
                                    "'queues':{'default':{'kind':'sleep',"
                                    "'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':1}}"), "pending"), w;
    json_t *list;

    bb_await_state(c, a, "running", POLL_MS);
    w = bb_send_call(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a));
    bb_signal(d, SIGTERM);
    ck_assert_msg(bb_log_wait(d, "stopping", POLL_MS),
                  "no stopping in the log");
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'args':{'seconds':0}}")),
                     SHUTTING_DOWN);
    /* The running job has its grace: it finishes, and the waiter hears. */
    list = bb_wait_reply(c, w, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(list);
    ck_assert_str_eq(
        bb_str_at(json_array_get(json_object_get(list, "result"), 0), "state"),
        "done");
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_wait_exit(d, 20000), 0);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- back-pressure ---- */

START_TEST(put_to_a_full_queue_is_answered_only_when_a_job_finishes)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'sleep','consumers':1,'maxsize':2}}}");
    struct bb_conn *c = bb_connect(d), *other;
    json_int_t a, p3, ping;
    json_t *r, *msg;

    a = put_ok(c, bb_jsonq("{'args':{'seconds':1}}"), "pending");
    put_ok(c, bb_jsonq("{'args':{'seconds':0.3}}"), "pending");
    p3 = bb_send_call(c, "put", bb_jsonq("{'args':{'seconds':0.3}}"));
    r = bb_wait_reply(c, p3, 100);
    ck_assert_msg(r == NULL, "a put to a full queue was answered at once");
    /* The connection is not read while the put waits... */
    ping = bb_send_call(c, "ping", NULL);
    /* ...but another connection is served, and sees the queue full. */
    other = bb_connect(d);
    r = bb_result(other, "ping", NULL);
    ck_assert_str_eq(json_string_value(r), "pong");
    json_decref(r);
    assert_stats(other, "default",
                 bb_jsonq("{'unfinished':2,'running':1,'size':1}"));
    assert_state(other, a, "running");
    /* The put is answered once a finishes, and only then the ping. */
    msg = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(bb_int_at(msg, "id"), p3);
    ck_assert_str_eq(bb_str_at(json_object_get(msg, "result"), "state"),
                     "pending");
    json_decref(msg);
    msg = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(bb_int_at(msg, "id"), ping);
    ck_assert_str_eq(bb_str_at(msg, "result"), "pong");
    json_decref(msg);
    assert_state(other, a, "done");
    bb_close(other);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_counts_delayed_and_running_jobs_against_maxsize)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'sleep','consumers':1,'maxsize':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a, b;

    a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    bb_await_state(c, a, "running", POLL_MS);
    b = put_ok(c, bb_jsonq("{'args':{'seconds':0},'delay':60}"), "delayed");
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'args':{'seconds':0},'nowait':true}")),
        QUEUE_FULL);
    assert_stats(c, "default",
                 bb_jsonq("{'size':0,'delayed':1,'running':1,'unfinished':2}"));
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", b)));
    put_ok(c, bb_jsonq("{'args':{'seconds':0},'nowait':true}"), "pending");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- status ---- */

START_TEST(status_of_a_done_job_has_every_record_field)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *done = bb_result(
        c, "put", bb_jsonq("{'args':{'v':1},'priority':-2,'wait':true}"));
    json_t *rec = bb_job_status(c, bb_int_at(done, "job"));

    assert_json_eq(rec, json_incref(done));
    assert_record_fields(rec, true, true, false);
    ck_assert_str_eq(bb_str_at(rec, "queue"), "default");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "echo");
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_int_eq(bb_int_at(rec, "priority"), -2);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    assert_json_eq(json_object_get(rec, "result"), bb_jsonq("{'v':1}"));
    ck_assert(is_unset(rec, "error"));
    json_decref(rec);
    json_decref(done);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_a_failed_job_holds_its_error)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'exec','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *failed = bb_result(
        c, "put",
        bb_jsonq("{'args':{'argv':['/bin/sh','-c','exit 3']},'wait':true}"));
    json_t *rec = bb_job_status(c, bb_int_at(failed, "job"));

    assert_record_fields(rec, true, true, true);
    ck_assert_str_eq(bb_str_at(rec, "kind"), "exec");
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_int_eq(bb_int_at(json_object_get(rec, "result"), "exit_code"), 3);
    json_decref(rec);
    json_decref(failed);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_a_pending_job_has_no_run_fields)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'priority':7}"), "pending");
    json_t *rec = bb_job_status(c, a);

    assert_record_fields(rec, false, false, false);
    ck_assert_int_eq(bb_int_at(rec, "job"), a);
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    ck_assert_int_eq(bb_int_at(rec, "priority"), 7);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 0);
    ck_assert(is_unset(rec, "started"));
    ck_assert(is_unset(rec, "finished"));
    ck_assert(is_unset(rec, "result"));
    ck_assert(is_unset(rec, "error"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_a_cancelled_job_says_cancelled)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    json_int_t b = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    json_t *rec;

    bb_await_state(c, a, "running", POLL_MS);
    /* b is cancelled while pending, then a while running. */
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", b)));
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    rec = bb_job_status(c, a);
    assert_record_fields(rec, true, false, false);
    ck_assert_str_eq(bb_str_at(rec, "state"), "cancelled");
    json_decref(rec);
    rec = bb_job_status(c, b);
    assert_record_fields(rec, false, false, false);
    ck_assert_str_eq(bb_str_at(rec, "state"), "cancelled");
    ck_assert(bb_num_at(rec, "finished") >= bb_num_at(rec, "created"));
    ck_assert(is_unset(rec, "started"));
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 0);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_an_unknown_job_fails_with_no_such_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "status", bb_jsonq("{'job':987654}")),
                     NO_SUCH_JOB);
    ck_assert_int_eq(
        bb_error(c, "status", bb_jsonq("{'job':9007199254740991}")),
        NO_SUCH_JOB);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_rejects_ids_that_are_not_positive_integers)
{
    static const char *const bad[] = {"{'job':0}",
                                      "{'job':-1}",
                                      "{'job':1.5}",
                                      "{'job':'1'}",
                                      "{'job':null}",
                                      "{'job':[1]}",
                                      "{'job':9007199254740992}",
                                      "{}",
                                      NULL};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    put_ok(c, bb_jsonq("{}"), "pending");
    for (int i = 0; bad[i] != NULL; i++) {
        int code = bb_error(c, "status", bb_jsonq("%s", bad[i]));

        ck_assert_msg(code == INVALID_PARAMS,
                      "status %s: error %d, expected -32602", bad[i], code);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- wait ---- */

START_TEST(wait_all_returns_records_in_the_given_order)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep','"
                                    "kinds':['echo'],'consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':0.3}}"), "pending");
    json_int_t b = put_ok(c, bb_jsonq("{'kind':'echo'}"), "pending");
    json_t *list;

    list = bb_result(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld],'mode':'all'}", (long long)a,
                              (long long)b));
    ck_assert_int_eq(json_array_size(list), 2);
    ck_assert_int_eq(bb_int_at(json_array_get(list, 0), "job"), a);
    ck_assert_int_eq(bb_int_at(json_array_get(list, 1), "job"), b);
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    ck_assert_str_eq(bb_str_at(json_array_get(list, 1), "state"), "done");
    json_decref(list);
    /* all is the default mode; the order is the caller's, not finish order. */
    list =
        bb_result(c, "wait",
                  bb_jsonq("{'jobs':[%lld,%lld]}", (long long)b, (long long)a));
    ck_assert_int_eq(json_array_size(list), 2);
    ck_assert_int_eq(bb_int_at(json_array_get(list, 0), "job"), b);
    ck_assert_int_eq(bb_int_at(json_array_get(list, 1), "job"), a);
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_any_returns_the_first_finished_job)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep','"
                                    "kinds':['echo'],'consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':1}}"), "pending");
    json_int_t b = put_ok(c, bb_jsonq("{'kind':'echo'}"), "pending");
    json_t *list;

    list = bb_result(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld],'mode':'any'}", (long long)a,
                              (long long)b));
    ck_assert_msg(json_is_array(list), "wait any: expected a list");
    ck_assert_int_eq(json_array_size(list), 1);
    ck_assert_int_eq(bb_int_at(json_array_get(list, 0), "job"), b);
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    assert_state(c, a, "running");
    json_decref(list);
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_stream_notifies_each_job_as_it_finishes_then_answers)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':0.5}}"), "pending");
    json_int_t b = put_ok(c, bb_jsonq("{'args':{'seconds':0.1}}"), "pending");
    json_int_t w = bb_send_call(c, "wait",
                                bb_jsonq("{'jobs':[%lld,%lld],'mode':'stream'}",
                                         (long long)a, (long long)b));
    json_t *nb, *na, *reply, *list;

    /* Read in arrival order: b's notice, a's notice, then the reply. */
    nb = bb_recv(c, BB_TIMEOUT_MS);
    na = bb_recv(c, BB_TIMEOUT_MS);
    reply = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(nb);
    ck_assert_ptr_nonnull(na);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(nb, "method"), "job.done");
    ck_assert(is_unset(nb, "id"));
    ck_assert_int_eq(bb_int_at(json_object_get(nb, "params"), "job"), b);
    ck_assert_str_eq(bb_str_at(na, "method"), "job.done");
    ck_assert(is_unset(na, "id"));
    ck_assert_int_eq(bb_int_at(json_object_get(na, "params"), "job"), a);
    ck_assert_int_eq(bb_int_at(reply, "id"), w);
    list = json_object_get(reply, "result");
    ck_assert_int_eq(json_array_size(list), 2);
    /* A notice's params is the job record, as the list holds it. */
    for (size_t i = 0; i < 2; i++) {
        json_t *rec = json_array_get(list, i);
        json_t *n = bb_int_at(rec, "job") == a ? na : nb;

        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        assert_json_eq(json_object_get(n, "params"), json_incref(rec));
    }
    ck_assert_int_ne(bb_int_at(json_array_get(list, 0), "job"),
                     bb_int_at(json_array_get(list, 1), "job"));
    ck_assert_ptr_null(bb_recv(c, 100));
    json_decref(nb);
    json_decref(na);
    json_decref(reply);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_past_its_timeout_fails_with_timeout)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    double t0 = bb_now_s();

    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld],'timeout':0.2}", (long long)a)),
        TIMED_OUT);
    ck_assert_msg(bb_now_s() - t0 >= 0.2, "timeout after %.3f s",
                  bb_now_s() - t0);
    /* Without cancel_on_timeout the job goes on. */
    assert_state(c, a, "running");
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_with_cancel_on_timeout_cancels_the_unfinished_jobs)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep','"
                                    "kinds':['echo'],'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'kind':'echo'}"), "pending");
    json_int_t b, e;

    json_decref(
        bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a)));
    b = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    e = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    bb_await_state(c, b, "running", POLL_MS);
    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld,%lld,%lld],'timeout':0.2,"
                          "'cancel_on_timeout':true}",
                          (long long)a, (long long)b, (long long)e)),
        TIMED_OUT);
    bb_await_state(c, b, "cancelled", POLL_MS);
    bb_await_state(c, e, "cancelled", POLL_MS);
    assert_state(c, a, "done");
    assert_stats(
        c, "default",
        bb_jsonq("{'done':1,'cancelled':2,'running':0,'unfinished':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_for_an_unknown_job_fails_with_no_such_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{}"), "pending");

    ck_assert_int_eq(bb_error(c, "wait", bb_jsonq("{'jobs':[987654]}")),
                     NO_SUCH_JOB);
    ck_assert_int_eq(
        bb_error(c, "wait", bb_jsonq("{'jobs':[%lld,987654]}", (long long)a)),
        NO_SUCH_JOB);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_rejects_an_empty_or_malformed_job_list)
{
    static const char *const bad[] = {
        "{'jobs':[]}",    "{}", "{'jobs':1}", "{'jobs':[0]}", "{'jobs':['1']}",
        "{'jobs':[1.5]}", NULL};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    long long a = (long long)put_ok(c, bb_jsonq("{}"), "pending");

    for (int i = 0; bad[i] != NULL; i++) {
        int code = bb_error(c, "wait", bb_jsonq("%s", bad[i]));

        ck_assert_msg(code == INVALID_PARAMS,
                      "wait %s: error %d, expected -32602", bad[i], code);
    }
    ck_assert_int_eq(
        bb_error(c, "wait", bb_jsonq("{'jobs':[%lld],'mode':'some'}", a)),
        INVALID_PARAMS);
    ck_assert_int_eq(
        bb_error(c, "wait", bb_jsonq("{'jobs':[%lld],'timeout':-1}", a)),
        INVALID_PARAMS);
    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld],'cancel_on_timeout':1}", a)),
        INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- cancel ---- */

START_TEST(cancel_of_a_pending_job_removes_it_and_the_next_one_runs)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{}"), "pending");
    json_int_t b = put_ok(c, bb_jsonq("{}"), "pending");
    json_t *r, *list;

    r = bb_result(c, "cancel", json_pack("{s:I}", "job", a));
    assert_json_eq(r,
                   bb_jsonq("{'job':%lld,'state':'cancelled'}", (long long)a));
    json_decref(r);
    assert_state(c, a, "cancelled");
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':1}")));
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)b));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    json_decref(list);
    r = bb_job_status(c, a);
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    ck_assert(is_unset(r, "started"));
    json_decref(r);
    assert_stats(c, "default",
                 bb_jsonq("{'put':2,'done':1,'cancelled':1,'unfinished':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_running_sleep_job_ends_it_at_once)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    double t0;
    json_t *r;

    bb_await_state(c, a, "running", POLL_MS);
    t0 = bb_now_s();
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", a));
    ck_assert_msg(bb_now_s() - t0 < 2, "cancel took %.3f s", bb_now_s() - t0);
    assert_json_eq(r,
                   bb_jsonq("{'job':%lld,'state':'cancelled'}", (long long)a));
    json_decref(r);
    assert_state(c, a, "cancelled");
    assert_stats(
        c, "default",
        bb_jsonq("{'running':0,'busy':0,'cancelled':1,'unfinished':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_running_exec_job_kills_its_process)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'exec','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(
        c, bb_jsonq("{'args':{'argv':['/bin/sh','-c','exec sleep 30']}}"),
        "pending");
    struct child_poll p = {bb_pid(d), 0};
    double t0;
    json_t *r;

    bb_await_state(c, a, "running", POLL_MS);
    ck_assert_msg(bb_poll(has_child, &p, POLL_MS),
                  "the running exec job has no process");
    t0 = bb_now_s();
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", a));
    ck_assert_msg(bb_now_s() - t0 < 2, "cancel took %.3f s", bb_now_s() - t0);
    assert_json_eq(r,
                   bb_jsonq("{'job':%lld,'state':'cancelled'}", (long long)a));
    json_decref(r);
    ck_assert_msg(bb_poll(child_is_gone, &p, POLL_MS),
                  "process %d of the cancelled job is still alive",
                  (int)p.child);
    assert_state(c, a, "cancelled");
    assert_stats(c, "default",
                 bb_jsonq("{'running':0,'busy':0,'cancelled':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_finished_job_fails_already_finished)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'echo','"
                                    "kinds':['exec'],'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *done = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    json_t *failed = bb_result(
        c, "put",
        bb_jsonq("{'kind':'exec','args':{'argv':['/bin/sh','-c','exit 3']},"
                 "'wait':true}"));
    json_int_t x;

    ck_assert_str_eq(bb_str_at(done, "state"), "done");
    ck_assert_str_eq(bb_str_at(failed, "state"), "failed");
    ck_assert_int_eq(
        bb_error(c, "cancel",
                 json_pack("{s:I}", "job", bb_int_at(done, "job"))),
        ALREADY_FINISHED);
    ck_assert_int_eq(
        bb_error(c, "cancel",
                 json_pack("{s:I}", "job", bb_int_at(failed, "job"))),
        ALREADY_FINISHED);
    json_decref(bb_result(c, "pause", bb_jsonq("{'queue':'default'}")));
    x = put_ok(c, bb_jsonq("{}"), "pending");
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", x)));
    ck_assert_int_eq(bb_error(c, "cancel", json_pack("{s:I}", "job", x)),
                     ALREADY_FINISHED);
    assert_state(c, bb_int_at(done, "job"), "done");
    json_decref(done);
    json_decref(failed);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_an_unknown_job_fails_with_no_such_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "cancel", bb_jsonq("{'job':987654}")),
                     NO_SUCH_JOB);
    ck_assert_int_eq(bb_error(c, "cancel", bb_jsonq("{'job':0}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "cancel", bb_jsonq("{'job':'1'}")),
                     INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_running_job_is_not_retried)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'sleep','consumers':1,'retries':3,"
        "'backoff':{'initial':0}}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    json_t *r;

    bb_await_state(c, a, "running", POLL_MS);
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    /* join answers only when nothing is unfinished: no retry is queued. */
    r = bb_result(c, "join", bb_jsonq("{'queue':'default','timeout':5}"));
    assert_json_eq(r, bb_jsonq("{'queue':'default'}"));
    json_decref(r);
    assert_state(c, a, "cancelled");
    assert_stats(
        c, "default",
        bb_jsonq("{'retried':0,'cancelled':1,'failed':0,'unfinished':0,"
                 "'delayed':0,'size':0,'running':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- join ---- */

START_TEST(join_answers_once_every_job_of_the_queue_finished)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[5];
    double t0 = bb_now_s();
    json_t *r;

    for (int i = 0; i < 5; i++)
        ids[i] = put_ok(c, bb_jsonq("{'args':{'seconds':0.1}}"), "pending");
    r = bb_result(c, "join", bb_jsonq("{'queue':'default'}"));
    assert_json_eq(r, bb_jsonq("{'queue':'default'}"));
    json_decref(r);
    /* Five 0.1 s jobs on two consumers take three rounds. */
    ck_assert_msg(bb_now_s() - t0 >= 0.3, "joined after %.3f s",
                  bb_now_s() - t0);
    for (int i = 0; i < 5; i++)
        assert_state(c, ids[i], "done");
    assert_stats(c, "default", bb_jsonq("{'done':5,'unfinished':0}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_on_an_idle_queue_answers_at_once)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    double t0 = bb_now_s();
    json_t *r = bb_result(c, "join", bb_jsonq("{'queue':'default'}"));

    ck_assert_msg(bb_now_s() - t0 < 2, "joined after %.3f s", bb_now_s() - t0);
    assert_json_eq(r, bb_jsonq("{'queue':'default'}"));
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_without_a_queue_waits_for_every_queue)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'a':{'kind':'sleep','consumers':1},"
                  "'b':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a =
        put_ok(c, bb_jsonq("{'queue':'a','args':{'seconds':0.2}}"), "pending");
    json_int_t b =
        put_ok(c, bb_jsonq("{'queue':'b','args':{'seconds':0.4}}"), "pending");
    json_t *r = bb_result(c, "join", bb_jsonq("{}"));

    ck_assert_msg(json_is_object(r) && json_object_get(r, "queue") != NULL,
                  "join: expected {\"queue\":...}");
    assert_state(c, a, "done");
    assert_state(c, b, "done");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_past_its_timeout_fails_with_timeout)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':30}}"), "pending");
    double t0 = bb_now_s();

    ck_assert_int_eq(
        bb_error(c, "join", bb_jsonq("{'queue':'default','timeout':0.2}")),
        TIMED_OUT);
    ck_assert_msg(bb_now_s() - t0 >= 0.2, "timeout after %.3f s",
                  bb_now_s() - t0);
    ck_assert_int_eq(bb_error(c, "join", bb_jsonq("{'timeout':0.2}")),
                     TIMED_OUT);
    assert_state(c, a, "running");
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(methods_on_an_unknown_queue_fail_with_no_such_queue)
{
    static const char *const calls[][2] = {
        {"join", "{'queue':'nope'}"},
        {"stats", "{'queue':'nope'}"},
        {"scale", "{'queue':'nope','consumers':1}"},
        {"pause", "{'queue':'nope'}"},
        {"resume", "{'queue':'nope'}"},
        {NULL, NULL}};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    for (int i = 0; calls[i][0] != NULL; i++) {
        int code = bb_error(c, calls[i][0], bb_jsonq("%s", calls[i][1]));

        ck_assert_msg(code == NO_SUCH_QUEUE, "%s %s: error %d, expected -32002",
                      calls[i][0], calls[i][1], code);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- stats ---- */

START_TEST(stats_has_the_documented_shape)
{
    static const char *const counters[] = {
        "size",      "delayed", "running", "unfinished", "maxsize",
        "consumers", "busy",    "put",     "done",       "failed",
        "cancelled", "retried", NULL};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1},"
                  "'slow':{'kind':'sleep','consumers':0,'maxsize':9}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *s = bb_result(c, "stats", NULL);
    json_t *queues = json_object_get(s, "queues");
    unsigned major, minor, patch;
    int end = 0;

    ck_assert(bb_num_at(s, "uptime") >= 0);
    ck_assert_msg(sscanf(bb_str_at(s, "version"), "%u.%u.%u%n", &major, &minor,
                         &patch, &end) == 3 &&
                      end > 0,
                  "version %s is not x.y.z", bb_str_at(s, "version"));
    ck_assert_int_ge(bb_int_at(s, "connections"), 1);
    ck_assert_int_eq(json_object_size(queues), 2);
    for (int q = 0; q < 2; q++) {
        json_t *qs = json_object_get(queues, q == 0 ? "default" : "slow");

        ck_assert_msg(json_is_object(qs), "stats: queue missing");
        for (int i = 0; counters[i] != NULL; i++)
            ck_assert_int_ge(bb_int_at(qs, counters[i]), 0);
        ck_assert_msg(json_is_boolean(json_object_get(qs, "paused")),
                      "paused: expected true or false");
        ck_assert(!is_unset(qs, "wait_time"));
        ck_assert(!is_unset(qs, "run_time"));
    }
    assert_stats(c, "slow",
                 bb_jsonq("{'maxsize':9,'consumers':0,'busy':0,'paused':false,"
                          "'put':0,'unfinished':0}"));
    assert_stats(c, "default", bb_jsonq("{'consumers':1,'maxsize':10000}"));
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(stats_counts_a_known_sequence_of_jobs)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'held':{'kind':'echo','consumers':0,'maxsize':10},"
        "'run':{'kind':'exec','consumers':1,'retries':1,"
        "'backoff':{'initial':0}}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a;

    a = put_ok(c, bb_jsonq("{'queue':'held'}"), "pending");
    put_ok(c, bb_jsonq("{'queue':'held'}"), "pending");
    put_ok(c, bb_jsonq("{'queue':'held','delay':60}"), "delayed");
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", a)));
    json_decref(bb_result(
        c, "put",
        bb_jsonq("{'queue':'run','args':{'argv':['/bin/true']},'wait':true}")));
    json_decref(
        bb_result(c, "put",
                  bb_jsonq("{'queue':'run','args':{'argv':['/bin/sh','-c',"
                           "'exit 3']},'wait':true}")));
    assert_stats(c, "held",
                 bb_jsonq("{'size':1,'delayed':1,'running':0,'unfinished':2,"
                          "'maxsize':10,'consumers':0,'busy':0,'paused':false,"
                          "'put':3,'done':0,'failed':0,'cancelled':1,"
                          "'retried':0}"));
    assert_stats(c, "run",
                 bb_jsonq("{'size':0,'delayed':0,'running':0,'unfinished':0,"
                          "'consumers':1,'busy':0,'put':2,'done':1,'failed':1,"
                          "'cancelled':0,'retried':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(stats_of_one_queue_holds_only_that_queue)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'a':{'kind':'echo','consumers':1},"
                  "'b':{'kind':'echo','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *s = bb_result(c, "stats", bb_jsonq("{'queue':'b'}"));
    json_t *queues = json_object_get(s, "queues");

    ck_assert(bb_num_at(s, "uptime") >= 0);
    bb_str_at(s, "version");
    bb_int_at(s, "connections");
    ck_assert_int_eq(json_object_size(queues), 1);
    ck_assert_int_eq(bb_int_at(json_object_get(queues, "b"), "consumers"), 2);
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- scale ---- */

START_TEST(scale_sets_the_number_of_consumers_up_and_down)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *r;

    r = bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':3}"));
    assert_json_eq(r, bb_jsonq("{'queue':'default','consumers':3}"));
    json_decref(r);
    ck_assert_int_eq(queue_stat(c, "default", "consumers"), 3);
    r = bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':1}"));
    assert_json_eq(r, bb_jsonq("{'queue':'default','consumers':1}"));
    json_decref(r);
    ck_assert_int_eq(queue_stat(c, "default", "consumers"), 1);
    r = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    ck_assert_str_eq(bb_str_at(r, "state"), "done");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

struct busy_poll {
    struct bb_conn *c;
    json_int_t max_busy, max_running;
};

/* Records the highest busy count seen; true once all 6 jobs are done. */
static bool
busy_sample(void *arg)
{
    struct busy_poll *p = arg;
    json_t *q = queue_stats(p->c, "default");
    bool all_done = bb_int_at(q, "done") == 6;

    if (bb_int_at(q, "busy") > p->max_busy)
        p->max_busy = bb_int_at(q, "busy");
    if (bb_int_at(q, "running") > p->max_running)
        p->max_running = bb_int_at(q, "running");
    json_decref(q);
    return all_done;
}

START_TEST(scale_bounds_the_jobs_running_at_once)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':3}}}");
    struct bb_conn *c = bb_connect(d);
    struct busy_poll p = {c, 0, 0};

    for (int i = 0; i < 6; i++)
        put_ok(c, bb_jsonq("{'args':{'seconds':0.5}}"), "pending");
    ck_assert_msg(bb_poll(busy_sample, &p, 10000),
                  "6 jobs of 0.5 s not done in 10 s on 3 consumers");
    ck_assert_int_eq(p.max_busy, 3);
    ck_assert_int_eq(p.max_running, 3);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(scale_to_zero_leaves_jobs_pending)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a;
    json_t *list;

    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':0}")));
    a = put_ok(c, bb_jsonq("{}"), "pending");
    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld],'timeout':0.3}", (long long)a)),
        TIMED_OUT);
    assert_state(c, a, "pending");
    assert_stats(c, "default",
                 bb_jsonq("{'consumers':0,'size':1,'unfinished':1}"));
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':1}")));
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(scale_down_lets_the_busy_consumer_finish_its_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':0.3}}"), "pending");
    json_int_t b;
    json_t *r, *list;

    bb_await_state(c, a, "running", POLL_MS);
    r = bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':0}"));
    assert_json_eq(r, bb_jsonq("{'queue':'default','consumers':0}"));
    json_decref(r);
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    json_decref(list);
    bb_await_stat(c, "default", "busy", 0, POLL_MS);
    b = put_ok(c, bb_jsonq("{'args':{'seconds':0}}"), "pending");
    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld],'timeout':0.3}", (long long)b)),
        TIMED_OUT);
    assert_state(c, b, "pending");
    assert_stats(c, "default",
                 bb_jsonq("{'consumers':0,'done':1,'cancelled':0,'size':1}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(scale_rejects_consumers_that_are_not_integers_at_least_zero)
{
    static const char *const bad[] = {"{'queue':'default','consumers':-1}",
                                      "{'queue':'default','consumers':1.5}",
                                      "{'queue':'default','consumers':'2'}",
                                      "{'queue':'default','consumers':null}",
                                      "{'queue':'default'}",
                                      NULL};
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    for (int i = 0; bad[i] != NULL; i++) {
        int code = bb_error(c, "scale", bb_jsonq("%s", bad[i]));

        ck_assert_msg(code == INVALID_PARAMS,
                      "scale %s: error %d, expected -32602", bad[i], code);
    }
    ck_assert_int_eq(queue_stat(c, "default", "consumers"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- pause / resume ---- */

START_TEST(pause_stops_taking_jobs_and_resume_restarts)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep','"
                                    "kinds':['echo'],'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_ok(c, bb_jsonq("{'args':{'seconds':0.3}}"), "pending");
    json_int_t b;
    json_t *list;

    bb_await_state(c, a, "running", POLL_MS);
    json_decref(bb_result(c, "pause", bb_jsonq("{'queue':'default'}")));
    assert_stats(c, "default", bb_jsonq("{'paused':true}"));
    b = put_ok(c, bb_jsonq("{'kind':'echo'}"), "pending");
    /* The running job goes on to its end. */
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)a));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    json_decref(list);
    /* The new one is not taken while paused. */
    ck_assert_int_eq(
        bb_error(c, "wait",
                 bb_jsonq("{'jobs':[%lld],'timeout':0.3}", (long long)b)),
        TIMED_OUT);
    assert_state(c, b, "pending");
    json_decref(bb_result(c, "resume", bb_jsonq("{'queue':'default'}")));
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)b));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    json_decref(list);
    assert_stats(c, "default", bb_jsonq("{'paused':false,'done':2}"));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- SIGHUP reload ---- */

START_TEST(reload_applies_consumer_count_and_maxsize)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo','consumers':1,'maxsize':2}}}");
    struct bb_conn *c = bb_connect(d);

    bb_write_configq(
        d, "{'queues':{'default':{'kind':'echo','consumers':0,'maxsize':3}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    assert_stats(c, "default", bb_jsonq("{'consumers':0,'maxsize':3}"));
    /* Three jobs fit now, the fourth does not. */
    for (int i = 0; i < 3; i++)
        put_ok(c, bb_jsonq("{'nowait':true}"), "pending");
    ck_assert_int_eq(bb_error(c, "put", bb_jsonq("{'nowait':true}")),
                     QUEUE_FULL);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(reload_adds_a_new_queue)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    ck_assert_int_eq(bb_error(c, "stats", bb_jsonq("{'queue':'extra'}")),
                     NO_SUCH_QUEUE);
    bb_write_configq(d, "{'queues':{'default':{'kind':'echo','consumers':1},"
                        "'extra':{'kind':'echo','consumers':2}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    assert_stats(c, "extra", bb_jsonq("{'consumers':2,'put':0}"));
    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'extra','args':{'a':1},'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "extra");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A queue cannot turn remote, or stop being remote, under its waiting
 * gets, leases and queued jobs: that waits for a restart. */
START_TEST(reload_keeps_a_remote_queue_remote_until_restart)
{
    struct bb_daemon *d = bb_startq("{'queues':{'w':{'kind':'remote'}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    json_t *rec;

    id = bb_put_job(c, bb_jsonq("{'queue':'w','args':{'n':1}}"), POLL_MS);
    bb_write_configq(d, "{'queues':{'w':{'kind':'echo','consumers':2}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(
        bb_log_wait(d, "kind remote -> echo changes at restart", POLL_MS),
        "no warning about the kind in the log");
    assert_stats(c, "w", bb_jsonq("{'consumers':0}"));
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    json_decref(rec);
    /* A worker still takes it. */
    rec = bb_result(c, "get", bb_jsonq("{'queue':'w','wait':0}"));
    ck_assert_uint_eq(json_array_size(rec), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

struct refusal_poll {
    struct bb_conn *c;
    const char *params; /* ' for " */
    int code;
};

/* Whether a put of p->params now fails with p->code. */
static bool
put_is_refused(void *arg)
{
    struct refusal_poll *p = arg;
    json_t *r = bb_call(p->c, "put", bb_jsonq("%s", p->params));
    json_t *e = json_object_get(r, "error");
    bool refused = e != NULL && bb_int_at(e, "code") == p->code;

    json_decref(r);
    return refused;
}

START_TEST(reload_applies_a_change_of_kinds)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    struct refusal_poll p = {c, "{'kind':'echo'}", NOT_ALLOWED};
    json_t *rec;

    ck_assert(put_is_refused(&p));
    bb_write_configq(d, "{'queues':{'default':{'kind':'sleep',"
                        "'kinds':['echo'],'consumers':1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    rec = bb_result(c, "put", bb_jsonq("{'kind':'echo','wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    bb_write_configq(d,
                     "{'queues':{'default':{'kind':'sleep','consumers':1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_poll(put_is_refused, &p, POLL_MS),
                  "echo still allowed after the reload dropped it");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(reload_rejects_a_bad_config_and_keeps_the_old_one)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;
    char *log;

    bb_write_configq(d,
                     "{'queues':{'default':{'kind':'echo','consumers':-1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    log = bb_log(d);
    ck_assert_msg(strstr(log, "queues.default.consumers") != NULL,
                  "the log does not name the bad field: %s", log);
    free(log);
    assert_stats(c, "default", bb_jsonq("{'consumers':2}"));
    rec = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(reload_changes_the_log_level)
{
    struct bb_daemon *d =
        bb_startq("{'log':{'level':'info'},"
                  "'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;
    char *log;

    rec = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    log = bb_log(d);
    ck_assert_msg(strstr(log, "debug") == NULL, "debug lines at level info: %s",
                  log);
    free(log);
    bb_write_configq(d, "{'log':{'level':'debug'},"
                        "'queues':{'default':{'kind':'echo','consumers':1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    rec = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    ck_assert_msg(bb_log_wait(d, "debug", POLL_MS),
                  "no debug line after the reload to level debug");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- finished records ---- */

START_TEST(results_max_forgets_the_oldest_finished_jobs)
{
    struct bb_daemon *d =
        bb_startq("{'results':{'max':2},"
                  "'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[4];
    json_t *rec;

    for (int i = 0; i < 4; i++) {
        rec = bb_result(c, "put", bb_jsonq("{'args':{'n':%d},'wait':true}", i));
        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        ids[i] = bb_int_at(rec, "job");
        json_decref(rec);
    }
    ck_assert_int_eq(bb_error(c, "status", json_pack("{s:I}", "job", ids[0])),
                     NO_SUCH_JOB);
    ck_assert_int_eq(bb_error(c, "status", json_pack("{s:I}", "job", ids[1])),
                     NO_SUCH_JOB);
    assert_state(c, ids[2], "done");
    rec = bb_job_status(c, ids[3]);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    assert_json_eq(json_object_get(rec, "result"), bb_jsonq("{'n':3}"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

struct expiry_poll {
    struct bb_conn *c;
    json_int_t job;
};

static bool
record_expired(void *arg)
{
    struct expiry_poll *p = arg;
    json_t *r = bb_call(p->c, "status", json_pack("{s:I}", "job", p->job));
    json_t *e = json_object_get(r, "error");
    bool gone = json_is_object(e) &&
                json_integer_value(json_object_get(e, "code")) == NO_SUCH_JOB;

    json_decref(r);
    return gone;
}

START_TEST(results_ttl_expires_finished_records)
{
    struct bb_daemon *d =
        bb_startq("{'results':{'ttl':0.5},"
                  "'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec = bb_result(c, "put", bb_jsonq("{'wait':true}"));
    struct expiry_poll p = {c, bb_int_at(rec, "job")};
    json_int_t pending;

    json_decref(rec);
    json_decref(bb_result(c, "pause", bb_jsonq("{'queue':'default'}")));
    pending = put_ok(c, bb_jsonq("{}"), "pending");
    ck_assert_msg(bb_poll(record_expired, &p, POLL_MS),
                  "job %lld still has a record %d ms after a ttl of 0.5 s",
                  (long long)p.job, POLL_MS);
    /* Only finished records expire. */
    assert_state(c, pending, "pending");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- the suite ---- */

static TCase *
tcase_new(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return tc;
}

Suite *
bb_methods_suite(void)
{
    Suite *s = suite_create("bb_methods");
    TCase *tc;

    tc = tcase_new(s, "put");
    tcase_add_test(tc, put_returns_job_id_and_pending_state);
    tcase_add_test(tc, put_with_delay_is_delayed_then_pending_after_the_delay);
    tcase_add_test(tc, put_with_delay_runs_the_job_no_earlier_than_the_delay);
    tcase_add_test(tc, put_runs_lower_priority_first_then_in_put_order);
    tcase_add_test(tc, put_to_lifo_queue_runs_the_newest_job_first);
    tcase_add_test(tc, put_timeout_fails_a_job_that_runs_too_long);
    tcase_add_test(tc, put_timeout_defaults_to_the_queue_timeout);
    tcase_add_test(tc, put_retries_a_failing_job_with_backoff_then_fails_it);
    tcase_add_test(tc, put_retries_default_to_the_queue_retries);
    tcase_add_test(tc, put_with_a_known_key_returns_the_same_job);
    tcase_add_test(tc, put_with_wait_returns_the_finished_record);
    tcase_add_test(tc, put_nowait_on_a_full_queue_fails_at_once);
    tcase_add_test(tc, put_to_an_unknown_queue_fails_with_no_such_queue);
    tcase_add_test(
        tc, put_of_an_unknown_kind_or_bad_args_fails_with_invalid_params);
    tcase_add_test(tc,
                   put_of_a_program_outside_the_allow_list_fails_not_allowed);
    tcase_add_test(tc, put_of_a_kind_its_queue_does_not_run_fails_not_allowed);
    tcase_add_test(tc,
                   put_of_a_listed_kind_is_checked_against_the_queue_settings);
    tcase_add_test(tc,
                   put_of_a_duration_past_1e9_seconds_fails_naming_the_field);
    tcase_add_test(tc, put_args_must_be_an_object);
    tcase_add_test(tc, put_rejects_params_of_the_wrong_type);
    tcase_add_test(tc, put_during_shutdown_fails_while_running_jobs_finish);

    tc = tcase_new(s, "backpressure");
    tcase_add_test(tc,
                   put_to_a_full_queue_is_answered_only_when_a_job_finishes);
    tcase_add_test(tc, put_counts_delayed_and_running_jobs_against_maxsize);

    tc = tcase_new(s, "status");
    tcase_add_test(tc, status_of_a_done_job_has_every_record_field);
    tcase_add_test(tc, status_of_a_failed_job_holds_its_error);
    tcase_add_test(tc, status_of_a_pending_job_has_no_run_fields);
    tcase_add_test(tc, status_of_a_cancelled_job_says_cancelled);
    tcase_add_test(tc, status_of_an_unknown_job_fails_with_no_such_job);
    tcase_add_test(tc, status_rejects_ids_that_are_not_positive_integers);

    tc = tcase_new(s, "wait");
    tcase_add_test(tc, wait_all_returns_records_in_the_given_order);
    tcase_add_test(tc, wait_any_returns_the_first_finished_job);
    tcase_add_test(tc,
                   wait_stream_notifies_each_job_as_it_finishes_then_answers);
    tcase_add_test(tc, wait_past_its_timeout_fails_with_timeout);
    tcase_add_test(tc, wait_with_cancel_on_timeout_cancels_the_unfinished_jobs);
    tcase_add_test(tc, wait_for_an_unknown_job_fails_with_no_such_job);
    tcase_add_test(tc, wait_rejects_an_empty_or_malformed_job_list);

    tc = tcase_new(s, "cancel");
    tcase_add_test(tc,
                   cancel_of_a_pending_job_removes_it_and_the_next_one_runs);
    tcase_add_test(tc, cancel_of_a_running_sleep_job_ends_it_at_once);
    tcase_add_test(tc, cancel_of_a_running_exec_job_kills_its_process);
    tcase_add_test(tc, cancel_of_a_finished_job_fails_already_finished);
    tcase_add_test(tc, cancel_of_an_unknown_job_fails_with_no_such_job);
    tcase_add_test(tc, cancel_of_a_running_job_is_not_retried);

    tc = tcase_new(s, "join");
    tcase_add_test(tc, join_answers_once_every_job_of_the_queue_finished);
    tcase_add_test(tc, join_on_an_idle_queue_answers_at_once);
    tcase_add_test(tc, join_without_a_queue_waits_for_every_queue);
    tcase_add_test(tc, join_past_its_timeout_fails_with_timeout);
    tcase_add_test(tc, methods_on_an_unknown_queue_fail_with_no_such_queue);

    tc = tcase_new(s, "stats");
    tcase_add_test(tc, stats_has_the_documented_shape);
    tcase_add_test(tc, stats_counts_a_known_sequence_of_jobs);
    tcase_add_test(tc, stats_of_one_queue_holds_only_that_queue);

    tc = tcase_new(s, "scale");
    tcase_add_test(tc, scale_sets_the_number_of_consumers_up_and_down);
    tcase_add_test(tc, scale_bounds_the_jobs_running_at_once);
    tcase_add_test(tc, scale_to_zero_leaves_jobs_pending);
    tcase_add_test(tc, scale_down_lets_the_busy_consumer_finish_its_job);
    tcase_add_test(tc,
                   scale_rejects_consumers_that_are_not_integers_at_least_zero);

    tc = tcase_new(s, "pause");
    tcase_add_test(tc, pause_stops_taking_jobs_and_resume_restarts);

    tc = tcase_new(s, "reload");
    tcase_add_test(tc, reload_applies_consumer_count_and_maxsize);
    tcase_add_test(tc, reload_adds_a_new_queue);
    tcase_add_test(tc, reload_keeps_a_remote_queue_remote_until_restart);
    tcase_add_test(tc, reload_applies_a_change_of_kinds);
    tcase_add_test(tc, reload_rejects_a_bad_config_and_keeps_the_old_one);
    tcase_add_test(tc, reload_changes_the_log_level);

    tc = tcase_new(s, "results");
    tcase_add_test(tc, results_max_forgets_the_oldest_finished_jobs);
    tcase_add_test(tc, results_ttl_expires_finished_records);
    return s;
}
