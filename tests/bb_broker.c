/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_broker.c: the consumers of a queue under scale, pause, resume,
 * reload and stop in every order, against a real asyncqd (run it in the
 * ASan build: these are memory-safety tests first). Requests that must
 * reach the daemon in one read are sent in one write.
 *
 * JSON is written with ' for " (bb_jsonq); nothing sleeps.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define POLL_MS 10000 /* deadline for a state the daemon reaches itself */

/* Sends the lines (each a JSON request with an id, ' for ") in one write
 * and checks that each is answered with a result. */
static void
send_together(struct bb_conn *c, const char *const *lines, size_t n)
{
    char buf[4096];
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + len, sizeof buf - len, "%s\n", lines[i]);

        ck_assert(w > 0 && (size_t)w < sizeof buf - len);
        for (int k = 0; k < w; k++) {
            if (buf[len + (size_t)k] == '\'')
                buf[len + (size_t)k] = '"';
        }
        len += (size_t)w;
    }
    ck_assert(bb_send_raw(c, buf, len));
    for (size_t i = 0; i < n; i++) {
        json_t *msg = bb_recv(c, POLL_MS);

        ck_assert_msg(msg != NULL, "no reply to request %zu of %zu", i + 1, n);
        ck_assert_msg(json_object_get(msg, "result") != NULL,
                      "request %zu of %zu failed: %s", i + 1, n, bb_dump(msg));
        json_decref(msg);
    }
}

struct stat_poll {
    struct bb_conn *c;
    const char *queue, *field;
    json_int_t value;
};

static bool
stat_is(void *arg)
{
    struct stat_poll *p = arg;

    return bb_stat_int(p->c, p->queue, p->field) == p->value;
}

static void
await_stat(struct bb_conn *c, const char *queue, const char *field,
           json_int_t value)
{
    struct stat_poll p = {c, queue, field, value};

    ck_assert_msg(bb_poll(stat_is, &p, POLL_MS),
                  "stats %s.%s did not reach %lld within %d ms", queue, field,
                  (long long)value, POLL_MS);
}

/* Puts an echo job on queue and waits for it: the consumers work. */
static void
assert_runs_a_job(struct bb_conn *c, const char *queue)
{
    json_t *rec = bb_result(
        c, "put",
        bb_jsonq("{'queue':'%s','kind':'echo','args':{'n':1},'wait':true}",
                 queue));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
}

/* With no consumer, a put stays ready: the queue's waiters are sound. */
static json_int_t
scale_to_zero_then_put_stays(struct bb_conn *c)
{
    json_int_t id;

    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'z','consumers':0}")));
    id = bb_put_job(c, bb_jsonq("{'queue':'z','kind':'echo','args':{}}"),
                    POLL_MS);
    await_stat(c, "z", "size", 1);
    return id;
}

/* ---- the sequences of issue 11, defect 5 ---- */

START_TEST(scale_pause_resume_in_one_read_then_scale_to_zero_and_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'scale','params':{'queue':'z','consumers':3}}",
        "{'id':2,'method':'pause','params':{'queue':'z'}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;

    send_together(c, burst, 3);
    id = scale_to_zero_then_put_stays(c);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'z','consumers':2}")));
    bb_await_state(c, id, "done", POLL_MS);
    assert_runs_a_job(c, "z");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Paused first: the new consumers start paused, resume wakes them once. */
START_TEST(pause_scale_resume_in_one_read_then_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'pause','params':{'queue':'z'}}",
        "{'id':2,'method':'scale','params':{'queue':'z','consumers':2}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
        "{'id':4,'method':'pause','params':{'queue':'z'}}",
        "{'id':5,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 5);
    for (int i = 0; i < 5; i++)
        assert_runs_a_job(c, "z");
    scale_to_zero_then_put_stays(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Consumers that never started end cleanly at a stop in the same read. */
START_TEST(scale_up_resume_then_stop_before_the_consumers_start)
{
    static const char *const burst[] = {
        "{'id':1,'method':'pause','params':{'queue':'z'}}",
        "{'id':2,'method':'scale','params':{'queue':'z','consumers':4}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 3);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 0);
    bb_free(d);
    bb_close(c);
}
END_TEST

/* Scale down while busy, then up before the busy ones end: they are kept
 * rather than doubled, so no more jobs run at once than asked for. */
START_TEST(scale_down_then_up_before_busy_consumers_end_keeps_the_bound)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'s':{'kind':'sleep','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[4];
    json_t *list;

    for (int i = 0; i < 4; i++)
        ids[i] = bb_put_job(c, bb_jsonq("{'queue':'s','args':{'seconds':0.3}}"),
                            POLL_MS);
    await_stat(c, "s", "busy", 2);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'s','consumers':0}")));
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'s','consumers':2}")));
    /* Still the two running: none of the waiting ones started early. */
    ck_assert_int_eq(bb_stat_int(c, "s", "busy"), 2);
    ck_assert_int_eq(bb_stat_int(c, "s", "size"), 2);
    list = bb_result(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld,%lld,%lld]}",
                              (long long)ids[0], (long long)ids[1],
                              (long long)ids[2], (long long)ids[3]));
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(bb_str_at(json_array_get(list, i), "state"), "done");
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A reload between scale and resume changes the count under them. */
START_TEST(reload_between_scale_and_resume_then_scale_to_zero_and_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'scale','params':{'queue':'z','consumers':3}}",
        "{'id':2,'method':'pause','params':{'queue':'z'}}",
    };
    static const char *const burst2[] = {
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
        "{'id':4,'method':'scale','params':{'queue':'z','consumers':5}}",
        "{'id':5,'method':'pause','params':{'queue':'z'}}",
        "{'id':6,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 2);
    bb_write_configq(d, "{'queues':{'z':{'kind':'echo','consumers':1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    send_together(c, burst2, 4);
    assert_runs_a_job(c, "z");
    scale_to_zero_then_put_stays(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- backoff and replay ---- */

/* No initial delay means none on any retry: initial * factor^n was
 * 0 * inf = NaN past n = 34 with factor 1e9, which waited backoff.max. */
START_TEST(backoff_without_an_initial_delay_never_waits_whatever_the_factor)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'x':{'kind':'exec','consumers':1,'retries':40,"
                  "'backoff':{'initial':0,'factor':1e9,'max':1e9},"
                  "'exec':{'allow':['/bin/false']}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    rec = bb_result_within(
        c, "put",
        bb_jsonq("{'queue':'x','args':{'argv':['/bin/false']},'wait':true}"),
        30000);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 41);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A job accepted under a config that allowed its kind still runs after a
 * restart on a config that no longer does: it was acknowledged. */
START_TEST(replayed_job_of_a_kind_no_longer_allowed_still_runs)
{
    char root[64], config[256];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t id;
    json_t *list;

    snprintf(root, sizeof root, "/tmp/asyncq-bbb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(config, sizeof config,
             "{'journal':{'path':'%s/journal'},'queues':{'z':{'kind':'sleep',"
             "'kinds':['echo'],'consumers':0}}}",
             root);
    d = bb_startq("%s", config);
    c = bb_connect(d);
    id = bb_put_job(c, bb_jsonq("{'queue':'z','kind':'echo','args':{'a':1}}"),
                    POLL_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    snprintf(config, sizeof config,
             "{'journal':{'path':'%s/journal'},'queues':{'z':{'kind':'sleep',"
             "'consumers':1}}}",
             root);
    d = bb_startq("%s", config);
    c = bb_connect(d);
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)id));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "kind"), "echo");
    json_decref(list);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'z','kind':'echo'}")), -32005);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    snprintf(config, sizeof config, "rm -rf '%s'", root);
    ck_assert_int_eq(system(config), 0);
}
END_TEST

Suite *
bb_broker_suite(void)
{
    Suite *s = suite_create("bb_broker");
    TCase *tc = tcase_create("consumers");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc,
                   scale_pause_resume_in_one_read_then_scale_to_zero_and_put);
    tcase_add_test(tc, pause_scale_resume_in_one_read_then_put);
    tcase_add_test(tc, scale_up_resume_then_stop_before_the_consumers_start);
    tcase_add_test(
        tc, scale_down_then_up_before_busy_consumers_end_keeps_the_bound);
    tcase_add_test(tc,
                   reload_between_scale_and_resume_then_scale_to_zero_and_put);
    tcase_add_test(
        tc, backoff_without_an_initial_delay_never_waits_whatever_the_factor);
    tcase_add_test(tc, replayed_job_of_a_kind_no_longer_allowed_still_runs);
    suite_add_tcase(s, tc);
    return s;
}
