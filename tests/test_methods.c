/* SPDX-License-Identifier: MIT */
/*
 * tests/test_methods.c: lib/methods.c behind a real server and a real
 * broker (memory only: echo and sleep queues that run, exec and http
 * queues without consumers, whose puts are only checked). The order of
 * errors (-32601, then -32001, then -32602) on both paths a put takes,
 * every method's params checked field by field with the exact message,
 * and what each method answers.
 */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "config.h"
#include "error.h"
#include "methods.h"
#include "server.h"
#include "suites.h"
#include "testconn.h"
#include "testutil.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* default and s run; p holds what is put (no consumers); x and h check. */
static const char config_text[] =
    "{\"journal\":{\"path\":null},\"log\":{\"level\":\"error\"},"
    "\"queues\":{"
    "\"default\":{\"kind\":\"echo\",\"consumers\":1},"
    "\"s\":{\"kind\":\"sleep\",\"consumers\":1},"
    "\"p\":{\"kind\":\"echo\",\"consumers\":0},"
    "\"x\":{\"kind\":\"exec\",\"consumers\":0,\"exec\":{\"allow\":[\"*\"]}},"
    "\"h\":{\"kind\":\"http\",\"consumers\":0}}}";

static struct {
    struct event_base *base;
    struct aq_config *cfg;
    struct aq_broker *broker;
    struct aq_methods *methods;
    struct aq_server *s;
    struct test_conn *c;
} T;

static void
start(const char *token)
{
    struct aq_error err = {0};

    signal(SIGPIPE, SIG_IGN);
    T.base = test_base_new();
    T.cfg = aq_config_parse(config_text, strlen(config_text), &err);
    ck_assert_msg(T.cfg != NULL, "config: %s", err.message);
    T.broker = aq_broker_new(T.base, NULL, T.cfg);
    aq_broker_start(T.broker);
    T.methods = aq_methods_new(T.broker, token);
    T.s = aq_server_new(T.base, T.cfg, &aq_methods_ops, T.methods);
    T.c = test_conn_new(T.base, T.s);
}

static void
setup(void)
{
    start(NULL);
}

static void
setup_auth(void)
{
    start("secret");
}

static void
teardown(void)
{
    test_conn_free(T.c);
    aq_server_free(T.s);
    aq_methods_free(T.methods);
    aq_broker_free(T.broker);
    aq_config_free(T.cfg);
    test_base_free(T.base);
}

/* Sends {"id":1,"method":method[,"params":params]}. */
static void
call(const char *id, const char *method, const char *params)
{
    char line[1024];

    if (params != NULL)
        snprintf(line, sizeof line,
                 "{\"id\":%s,\"method\":\"%s\",\"params\":%s}\n", id, method,
                 params);
    else
        snprintf(line, sizeof line, "{\"id\":%s,\"method\":\"%s\"}\n", id,
                 method);
    test_conn_send(T.c, line);
}

/* The result of method(params) (a new reference). */
static json_t *
result(const char *method, const char *params)
{
    json_t *msg, *r;

    call("0", method, params);
    msg = test_conn_next(T.c);
    r = json_incref(json_object_get(msg, "result"));
    ck_assert_msg(r != NULL, "%s %s: %s", method, params,
                  json_string_value(json_object_get(
                      json_object_get(msg, "error"), "message")));
    json_decref(msg);
    return r;
}

static json_int_t
put_job(const char *params)
{
    json_t *r = result("put", params);
    json_int_t id = json_integer_value(json_object_get(r, "job"));

    ck_assert_int_gt(id, 0);
    json_decref(r);
    return id;
}

static const char *
str_at(const json_t *v, const char *key)
{
    const char *s = json_string_value(json_object_get(v, key));

    ck_assert_msg(s != NULL, "no string %s", key);
    return s;
}

/* ---- the order of errors ---- */

#define UNAUTHORIZED "unauthorized: send auth with the token first"

static const struct {
    const char *line;
    int code;
    const char *message;
} order[] = {
    /* a method that does not exist, whatever its params */
    {"{\"id\":1,\"method\":\"nope\",\"params\":5}", AQ_ERR_NO_METHOD,
     "method not found: nope"},
    /* then auth, before any params */
    {"{\"id\":1,\"method\":\"ping\",\"params\":5}", AQ_ERR_UNAUTHORIZED,
     UNAUTHORIZED},
    {"{\"id\":1,\"method\":\"stats\",\"params\":{\"bogus\":1}}",
     AQ_ERR_UNAUTHORIZED, UNAUTHORIZED},
    /* a plain put (the hot path) and one the general path reads */
    {"{\"id\":1,\"method\":\"put\",\"params\":{\"args\":{}}}",
     AQ_ERR_UNAUTHORIZED, UNAUTHORIZED},
    {"{\"id\":1,\"method\":\"put\",\"params\":{\"q\\u0075eue\":\"default\"}}",
     AQ_ERR_UNAUTHORIZED, UNAUTHORIZED},
    {"{\"id\":1,\"method\":\"put\",\"params\":{\"priority\":1.5}}",
     AQ_ERR_UNAUTHORIZED, UNAUTHORIZED},
    /* auth itself: its params, then the token */
    {"{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":5}}",
     AQ_ERR_INVALID_PARAMS, "params.token: expected string"},
    {"{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":\"wrong\"}}",
     AQ_ERR_UNAUTHORIZED, "auth: wrong token"},
    {"{\"id\":1,\"method\":\"auth\"}", AQ_ERR_UNAUTHORIZED,
     "auth: wrong token"},
};

START_TEST(errors_come_in_order_method_then_auth_then_params)
{
    test_conn_send(T.c, order[_i].line);
    test_conn_send(T.c, "\n");
    test_conn_expect_error(T.c, "1", order[_i].code, order[_i].message);
}
END_TEST

START_TEST(after_auth_puts_and_params_are_served)
{
    json_t *r;

    /* A put sent as a notification before auth is refused silently. */
    test_conn_send(T.c, "{\"method\":\"put\",\"params\":{\"args\":{}}}\n");
    call("1", "auth", "{\"token\":\"secret\"}");
    test_conn_expect(T.c, "1", "true");
    call("2", "ping", "5");
    test_conn_expect_error(T.c, "2", AQ_ERR_INVALID_PARAMS, NULL);
    test_conn_send(T.c, "{\"id\":3,\"method\":\"put\",\"params\":"
                        "{\"queue\":\"p\",\"args\":{}}}\n");
    test_conn_expect(T.c, "3", "{\"job\":1,\"state\":\"pending\"}");
    r = result("stats", "{\"queue\":\"p\"}");
    ck_assert_int_eq(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(r, "queues"), "p"), "put")),
        1);
    json_decref(r);
}
END_TEST

START_TEST(auth_is_per_connection)
{
    struct test_conn *other = test_conn_new(T.base, T.s);

    call("1", "auth", "{\"token\":\"secret\"}");
    test_conn_expect(T.c, "1", "true");
    test_conn_send(other, "{\"id\":2,\"method\":\"ping\"}\n");
    test_conn_expect_error(other, "2", AQ_ERR_UNAUTHORIZED, UNAUTHORIZED);
    call("3", "ping", NULL);
    test_conn_expect(T.c, "3", "\"pong\"");
    test_conn_free(other);
}
END_TEST

/* ---- params, field by field ---- */

#define JOB_ID "expected a job id, an integer between 1 and 2^53-1"
#define SECONDS "expected seconds, a number between 0 and 1e9"

static const struct {
    const char *method;
    const char *params;
    const char *message; /* -32602 with this message */
} bad_params[] = {
    {"put", "[1]", NULL},
    {"put", "{\"bogus\":1}", "params.bogus: unknown field"},
    {"put", "{\"queue\":7}", "params.queue: expected string"},
    {"put", "{\"queue\":\"de\\u0000f\"}",
     "params.queue: expected string without \\u0000"},
    {"put", "{\"kind\":[]}", "params.kind: expected string"},
    {"put", "{\"priority\":1.5}",
     "params.priority: expected integer between -2147483648 and 2147483647"},
    {"put", "{\"priority\":2147483648}",
     "params.priority: expected integer between -2147483648 and 2147483647"},
    {"put", "{\"delay\":-1}", "params.delay: " SECONDS},
    {"put", "{\"timeout\":1e10}", "params.timeout: " SECONDS},
    {"put", "{\"retries\":1000001}",
     "params.retries: expected integer between 0 and 1000000"},
    {"put", "{\"key\":\"\"}",
     "params.key: expected a string of 1 to 1024 bytes"},
    {"put", "{\"args\":5}", "params.args: expected object"},
    {"put", "{\"wait\":1}", "params.wait: expected true or false"},
    {"put", "{\"nowait\":\"yes\"}", "params.nowait: expected true or false"},
    /* a sleep job's args */
    {"put", "{\"queue\":\"s\",\"args\":{}}",
     "params.args.seconds: required for kind sleep"},
    {"put", "{\"queue\":\"s\",\"args\":{\"seconds\":-1}}",
     "params.args.seconds: " SECONDS},
    {"put", "{\"queue\":\"s\",\"args\":{\"seconds\":1,\"x\":1}}",
     "params.args.x: unknown field for kind sleep"},
    /* an exec job's args */
    {"put", "{\"queue\":\"x\",\"args\":{}}",
     "params.args.argv: required for kind exec"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[]}}",
     "params.args.argv: expected a non-empty array of strings"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\",1]}}",
     "params.args.argv[1]: expected string"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/e\\u0000cho\"]}}",
     "params.args.argv[0]: expected string without \\u0000"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"shell\":1}}",
     "params.args.shell: unknown field for kind exec"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"env\":[]}}",
     "params.args.env: expected object of strings"},
    {"put",
     "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"env\":{\"A\":1}}}",
     "params.args.env.A: expected string"},
    {"put",
     "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"env\":{\"A=B\":"
     "\"1\"}}}",
     "params.args.env: invalid variable name \"A=B\""},
    {"put",
     "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"cwd\":\"/"
     "\\u0000\"}}",
     "params.args.cwd: expected string without \\u0000"},
    {"put", "{\"queue\":\"x\",\"args\":{\"argv\":[\"/bin/echo\"],\"stdin\":1}}",
     "params.args.stdin: expected string"},
    /* an http job's args */
    {"put", "{\"queue\":\"h\",\"args\":{}}",
     "params.args.url: required for kind http"},
    {"put", "{\"queue\":\"h\",\"args\":{\"url\":7}}",
     "params.args.url: expected string"},
    {"put",
     "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"method\":\"GO\"}}",
     "params.args.method: expected one of \"GET\", \"HEAD\", \"POST\", "
     "\"PUT\", "
     "\"DELETE\", \"PATCH\", \"OPTIONS\""},
    {"put",
     "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"headers\":{\"a "
     "b\":\"1\"}}}",
     "params.args.headers: invalid header name \"a b\""},
    {"put",
     "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"headers\":{\"A\":1}}}",
     "params.args.headers.A: expected string"},
    {"put",
     "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"headers\":{\"A\":"
     "\"1\\r\\n\"}}}",
     "params.args.headers.A: CR, LF or NUL in the value"},
    {"put", "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"body\":7}}",
     "params.args.body: expected string"},
    {"put", "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"expect\":600}}",
     "params.args.expect: expected a status 100-599 or [lo, hi]"},
    {"put", "{\"queue\":\"h\",\"args\":{\"url\":\"http://h/\",\"x\":1}}",
     "params.args.x: unknown field for kind http"},
    /* the other methods */
    {"status", "{}", "params.job: required"},
    {"status", "{\"job\":0}", "params.job: " JOB_ID},
    {"status", "{\"job\":9007199254740992}", "params.job: " JOB_ID},
    {"status", "{\"job\":1,\"x\":1}", "params.x: unknown field"},
    {"cancel", "{\"job\":\"1\"}", "params.job: " JOB_ID},
    {"wait", "{}", "params.jobs: required"},
    {"wait", "{\"jobs\":[]}",
     "params.jobs: expected a non-empty array of job ids"},
    {"wait", "{\"jobs\":1}",
     "params.jobs: expected a non-empty array of job ids"},
    {"wait", "{\"jobs\":[1,0]}", "params.jobs[1]: " JOB_ID},
    {"wait", "{\"jobs\":[1],\"mode\":\"some\"}",
     "params.mode: expected one of \"all\", \"any\", \"stream\""},
    {"wait", "{\"jobs\":[1],\"timeout\":-1}", "params.timeout: " SECONDS},
    {"wait", "{\"jobs\":[1],\"cancel_on_timeout\":1}",
     "params.cancel_on_timeout: expected true or false"},
    {"join", "{\"queue\":5}", "params.queue: expected string"},
    {"join", "{\"timeout\":\"1\"}", "params.timeout: " SECONDS},
    {"stats", "{\"queue\":1}", "params.queue: expected string"},
    {"stats", "{\"x\":1}", "params.x: unknown field"},
    {"scale", "{}", "params.queue: required"},
    {"scale", "{\"queue\":\"default\"}", "params.consumers: required"},
    {"scale", "{\"queue\":\"default\",\"consumers\":10001}",
     "params.consumers: expected integer between 0 and 10000"},
    {"pause", "{}", "params.queue: required"},
    {"resume", "{\"queue\":7}", "params.queue: expected string"},
    {"ping", "{\"x\":1}", "params.x: unknown field"},
    {"auth", "{\"token\":5}", "params.token: expected string"},
};

START_TEST(params_are_checked_field_by_field)
{
    call("1", bad_params[_i].method, bad_params[_i].params);
    test_conn_expect_error(T.c, "1", AQ_ERR_INVALID_PARAMS,
                           bad_params[_i].message);
}
END_TEST

static const struct {
    const char *method;
    const char *params;
    int code;
} refused[] = {
    {"put", "{\"queue\":\"nope\"}", AQ_ERR_NO_QUEUE},
    {"put", "{\"kind\":\"sleep\",\"args\":{\"seconds\":1}}",
     AQ_ERR_NOT_ALLOWED},
    {"put", "{\"queue\":\"h\",\"args\":{\"url\":\"http://169.254.1.1/\"}}",
     AQ_ERR_NOT_ALLOWED},
    {"status", "{\"job\":99}", AQ_ERR_NO_JOB},
    {"cancel", "{\"job\":99}", AQ_ERR_NO_JOB},
    {"wait", "{\"jobs\":[99]}", AQ_ERR_NO_JOB},
    {"join", "{\"queue\":\"nope\"}", AQ_ERR_NO_QUEUE},
    {"stats", "{\"queue\":\"nope\"}", AQ_ERR_NO_QUEUE},
    {"scale", "{\"queue\":\"nope\",\"consumers\":1}", AQ_ERR_NO_QUEUE},
    {"pause", "{\"queue\":\"nope\"}", AQ_ERR_NO_QUEUE},
};

START_TEST(what_the_broker_refuses_is_answered_with_its_code)
{
    call("1", refused[_i].method, refused[_i].params);
    test_conn_expect_error(T.c, "1", refused[_i].code, NULL);
}
END_TEST

/* ---- what each method answers ---- */

START_TEST(put_status_wait_and_join)
{
    json_t *r;

    test_conn_send(T.c, "{\"id\":1,\"method\":\"put\",\"params\":"
                        "{\"args\":{\"n\":1}}}\n");
    test_conn_expect(T.c, "1", "{\"job\":1,\"state\":\"pending\"}");
    call("2", "wait", "{\"jobs\":[1,1]}");
    r = test_conn_next(T.c);
    ck_assert_uint_eq(json_array_size(json_object_get(r, "result")), 2);
    ck_assert_str_eq(
        str_at(json_array_get(json_object_get(r, "result"), 1), "state"),
        "done");
    json_decref(r);
    r = result("status", "{\"job\":1}");
    ck_assert_str_eq(str_at(r, "state"), "done");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r, "result"), "n")),
        1);
    json_decref(r);
    call("3", "join", "{\"queue\":\"default\"}");
    test_conn_expect(T.c, "3", "{\"queue\":\"default\"}");
    call("4", "join", NULL);
    test_conn_expect(T.c, "4", "{\"queue\":\"*\"}");
    /* the same key: the same job */
    ck_assert_int_eq(put_job("{\"key\":\"k\",\"queue\":\"p\"}"), 2);
    call("5", "put", "{\"key\":\"k\",\"queue\":\"p\"}");
    test_conn_expect(T.c, "5",
                     "{\"job\":2,\"state\":\"pending\",\"duplicate\":true}");
}
END_TEST

START_TEST(put_with_wait_answers_the_finished_record)
{
    json_t *r = result("put", "{\"args\":{\"x\":[1,2]},\"wait\":true}");

    ck_assert_str_eq(str_at(r, "state"), "done");
    ck_assert_str_eq(str_at(r, "queue"), "default");
    json_decref(r);
}
END_TEST

START_TEST(wait_modes_any_and_stream)
{
    json_int_t a = put_job("{\"queue\":\"s\",\"args\":{\"seconds\":0.01}}");
    json_int_t b = put_job("{\"queue\":\"p\"}");
    char params[100];
    json_t *msg;

    snprintf(params, sizeof params, "{\"jobs\":[%lld,%lld],\"mode\":\"any\"}",
             (long long)b, (long long)a);
    msg = result("wait", params);
    ck_assert_uint_eq(json_array_size(msg), 1);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_array_get(msg, 0), "job")), a);
    json_decref(msg);
    snprintf(params, sizeof params, "{\"jobs\":[%lld],\"mode\":\"stream\"}",
             (long long)a);
    call("7", "wait", params);
    msg = test_conn_next(T.c);
    ck_assert_str_eq(str_at(msg, "method"), "job.done");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(msg, "params"), "job")),
                     a);
    json_decref(msg);
    msg = test_conn_next(T.c);
    ck_assert_uint_eq(json_array_size(json_object_get(msg, "result")), 1);
    json_decref(msg);
}
END_TEST

START_TEST(wait_and_join_time_out)
{
    json_int_t id = put_job("{\"queue\":\"p\"}");
    char params[100];
    json_t *r;

    snprintf(params, sizeof params,
             "{\"jobs\":[%lld],\"timeout\":0.02,\"cancel_on_timeout\":true}",
             (long long)id);
    call("1", "wait", params);
    test_conn_expect_error(
        T.c, "1", AQ_ERR_TIMEOUT,
        "wait: timeout after 0.02 s with 1 of 1 jobs unfinished (cancelled)");
    snprintf(params, sizeof params, "{\"job\":%lld}", (long long)id);
    r = result("status", params);
    ck_assert_str_eq(str_at(r, "state"), "cancelled");
    json_decref(r);
    put_job("{\"queue\":\"p\"}");
    call("2", "join", "{\"queue\":\"p\",\"timeout\":0.02}");
    test_conn_expect_error(T.c, "2", AQ_ERR_TIMEOUT,
                           "join: timeout after 0.02 s");
}
END_TEST

START_TEST(cancel_a_pending_then_a_running_job)
{
    json_int_t p = put_job("{\"queue\":\"p\"}");
    json_int_t s = put_job("{\"queue\":\"s\",\"args\":{\"seconds\":30}}");
    char params[64], want[64];
    json_t *r;

    snprintf(params, sizeof params, "{\"job\":%lld}", (long long)p);
    snprintf(want, sizeof want, "{\"job\":%lld,\"state\":\"cancelled\"}",
             (long long)p);
    call("1", "cancel", params);
    test_conn_expect(T.c, "1", want);
    call("2", "cancel", params);
    test_conn_expect_error(T.c, "2", AQ_ERR_FINISHED, NULL);
    /* running once the sleep consumer took it */
    snprintf(params, sizeof params, "{\"job\":%lld}", (long long)s);
    for (int i = 0; i < 100; i++) {
        r = result("status", params);
        bool running = strcmp(str_at(r, "state"), "running") == 0;

        json_decref(r);
        if (running)
            break;
        run_for(T.base, 5);
    }
    snprintf(want, sizeof want, "{\"job\":%lld,\"state\":\"cancelled\"}",
             (long long)s);
    call("3", "cancel", params);
    test_conn_expect(T.c, "3", want);
}
END_TEST

START_TEST(stats_counts_connections_and_queues)
{
    struct test_conn *other;
    json_t *r = result("stats", NULL);

    ck_assert_int_eq(json_integer_value(json_object_get(r, "connections")), 1);
    ck_assert_ptr_nonnull(
        json_object_get(json_object_get(r, "queues"), "default"));
    ck_assert_str_eq(str_at(r, "version"), ASYNCQ_VERSION);
    json_decref(r);
    other = test_conn_new(T.base, T.s);
    r = result("stats", "{\"queue\":\"s\"}");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "connections")), 2);
    ck_assert_uint_eq(json_object_size(json_object_get(r, "queues")), 1);
    json_decref(r);
    test_conn_free(other);
}
END_TEST

START_TEST(scale_pause_resume_and_ping)
{
    call("1", "scale", "{\"queue\":\"p\",\"consumers\":2}");
    test_conn_expect(T.c, "1", "{\"queue\":\"p\",\"consumers\":2}");
    call("2", "pause", "{\"queue\":\"p\"}");
    test_conn_expect(T.c, "2", "{\"queue\":\"p\",\"paused\":true}");
    call("3", "resume", "{\"queue\":\"p\"}");
    test_conn_expect(T.c, "3", "{\"queue\":\"p\",\"paused\":false}");
    call("4", "ping", NULL);
    test_conn_expect(T.c, "4", "\"pong\"");
    call("5", "auth", "{\"token\":\"any\"}"); /* auth is off */
    test_conn_expect(T.c, "5", "true");
}
END_TEST

START_TEST(a_waiting_call_is_released_when_its_connection_goes)
{
    json_int_t id = put_job("{\"queue\":\"p\"}");
    char params[64];
    bool done = false;

    snprintf(params, sizeof params, "{\"jobs\":[%lld]}", (long long)id);
    call("1", "wait", params);
    call("2", "join", "{\"queue\":\"p\"}");
    test_conn_expect_silence(T.c, 20);
    /* The server abandons both: their hooks release the broker's side.
     * The job then ends with nobody to tell (under ASan, a hook left
     * behind would be a use after free). */
    test_conn_free(T.c);
    T.c = NULL;
    aq_server_free(T.s);
    T.s = NULL;
    ck_assert_int_eq(aq_broker_scale(T.broker, "p", 1, NULL), 0);
    for (int i = 0; i < 400 && !done; i++) {
        json_t *rec = aq_broker_status(T.broker, (uint64_t)id, NULL);

        done = strcmp(str_at(rec, "state"), "done") == 0;
        json_decref(rec);
        if (!done)
            run_for(T.base, 5);
    }
    ck_assert(done);
}
END_TEST

Suite *
methods_suite(void)
{
    Suite *s = suite_create("methods");
    TCase *tc = test_tcase_new("order");

    tcase_add_checked_fixture(tc, setup_auth, teardown);
    tcase_add_loop_test(tc, errors_come_in_order_method_then_auth_then_params,
                        0, NELEM(order));
    tcase_add_test(tc, after_auth_puts_and_params_are_served);
    tcase_add_test(tc, auth_is_per_connection);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("params");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, params_are_checked_field_by_field, 0,
                        NELEM(bad_params));
    tcase_add_loop_test(tc, what_the_broker_refuses_is_answered_with_its_code,
                        0, NELEM(refused));
    suite_add_tcase(s, tc);

    tc = test_tcase_new("methods");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, put_status_wait_and_join);
    tcase_add_test(tc, put_with_wait_answers_the_finished_record);
    tcase_add_test(tc, wait_modes_any_and_stream);
    tcase_add_test(tc, wait_and_join_time_out);
    tcase_add_test(tc, cancel_a_pending_then_a_running_job);
    tcase_add_test(tc, stats_counts_connections_and_queues);
    tcase_add_test(tc, scale_pause_resume_and_ping);
    tcase_add_test(tc, a_waiting_call_is_released_when_its_connection_goes);
    suite_add_tcase(s, tc);
    return s;
}
