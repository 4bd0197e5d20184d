/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_protocol.c: the wire protocol against a real asyncqd (spec
 * sections 1 and 7): framing, pipelining, ids, notifications, batches, the
 * protocol's errors, auth and the producers limits. Requests written by
 * hand use string ids (or integers above bb_call's), so their replies are
 * never taken for replies to bb_call.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define ECHO_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":2}}}"
/* Jobs stay pending: nothing consumes them. */
#define IDLE_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":0}}}"
#define SLEEP_CONFIG                                                           \
    "{\"queues\":{\"default\":{\"kind\":\"sleep\",\"consumers\":2}}}"

/* ---- helpers ---- */

/* Asserts got equals want (JSON text); takes got. */
static void
assert_json(json_t *got, const char *want_text)
{
    json_t *want = bb_json("%s", want_text);
    char *text = bb_dump(got);

    ck_assert_msg(got != NULL && json_equal(got, want), "got %s, want %s", text,
                  want_text);
    free(text);
    json_decref(want);
    json_decref(got);
}

/* Asserts msg is an error response to id (JSON text) with code: jsonrpc
 * "2.0", the id echoed, no result, an error holding an integer code and a
 * non-empty message (and nothing else but data). Takes msg. */
static void
assert_error(json_t *msg, const char *id, int code)
{
    json_t *err = json_object_get(msg, "error");
    char *text = bb_dump(msg);

    ck_assert_msg(json_is_object(msg), "got %s, want error %d", text, code);
    ck_assert_msg(bb_error_reply_code(json_incref(msg), id) == code,
                  "got %s, want error %d", text, code);
    ck_assert_msg(json_object_get(msg, "result") == NULL,
                  "error with a result: %s", text);
    ck_assert_msg(json_object_size(err) ==
                      2u + (json_object_get(err, "data") != NULL),
                  "unexpected members in the error: %s", text);
    free(text);
    json_decref(msg);
}

/* The next message on c is a reply to id (JSON text) with this result. */
static void
expect_result(struct bb_conn *c, const char *id, const char *result)
{
    char want[512];

    snprintf(want, sizeof want, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}",
             id, result);
    assert_json(bb_recv(c, BB_TIMEOUT_MS), want);
}

/* The next message on c is an error reply to id (JSON text) with code. */
static void
expect_error(struct bb_conn *c, const char *id, int code)
{
    assert_error(bb_recv(c, BB_TIMEOUT_MS), id, code);
}

/* Sends a ping with id "mark" and asserts its reply is the very next
 * message: nothing was sent for what came before. */
static void
expect_nothing_before_ping(struct bb_conn *c)
{
    bb_send_line(c, "{\"id\":\"mark\",\"method\":\"ping\"}");
    expect_result(c, "\"mark\"", "\"pong\"");
}

/* Puts a job with params (JSON text); its id, which must be positive. */
static json_int_t
put_job(struct bb_conn *c, const char *params)
{
    json_int_t id = bb_put_job(c, bb_json("%s", params), BB_TIMEOUT_MS);

    ck_assert_int_gt(id, 0);
    return id;
}

static const char *
reply_id(const json_t *msg)
{
    return json_string_value(json_object_get(msg, "id"));
}

/* ---- framing ---- */

START_TEST(ping_answers_pong)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r = bb_result(c, "ping", NULL);

    ck_assert_str_eq(json_string_value(r), "pong");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(jsonrpc_member_may_be_omitted_and_every_reply_carries_it)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":\"a\",\"method\":\"ping\"}");
    expect_result(c, "\"a\"", "\"pong\"");
    bb_send_line(c, "{\"id\":\"b\",\"method\":\"no.such.method\"}");
    expect_error(c, "\"b\"", METHOD_NOT_FOUND);
    bb_send_line(c, "not json");
    expect_error(c, "null", PARSE_ERROR);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(jsonrpc_other_than_2_0_is_invalid_request)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"jsonrpc\":\"1.0\",\"id\":\"a\",\"method\":\"ping\"}");
    expect_error(c, "\"a\"", INVALID_REQUEST);
    bb_send_line(c, "{\"jsonrpc\":2.0,\"id\":\"b\",\"method\":\"ping\"}");
    expect_error(c, "\"b\"", INVALID_REQUEST);
    bb_send_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"c\",\"method\":\"ping\"}");
    expect_result(c, "\"c\"", "\"pong\"");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(crlf_line_endings_are_accepted)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    const char *lines = "{\"id\":\"a\",\"method\":\"ping\"}\r\n"
                        "{\"id\":\"b\",\"method\":\"ping\"}\n"
                        "{\"id\":\"c\",\"method\":\"ping\"}\r\n";

    ck_assert(bb_send_raw(c, lines, strlen(lines)));
    expect_result(c, "\"a\"", "\"pong\"");
    expect_result(c, "\"b\"", "\"pong\"");
    expect_result(c, "\"c\"", "\"pong\"");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(empty_and_blank_lines_are_ignored)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    const char *blank = "\n\r\n\n   \n\t \r\n";

    ck_assert(bb_send_raw(c, blank, strlen(blank)));
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

#define PIPELINED 1000

static int
cmp_int(const void *a, const void *b)
{
    json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;

    return (x > y) - (x < y);
}

START_TEST(pipelined_requests_in_one_write_are_all_answered)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    static json_int_t jobs[PIPELINED];
    bool seen[PIPELINED + 1] = {false};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    for (int i = 1; i <= PIPELINED; i++)
        fprintf(f,
                "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"put\","
                "\"params\":{\"args\":{\"n\":%d}}}\n",
                i, i);
    fclose(f);
    ck_assert(bb_send_raw(c, text, len));
    free(text);
    for (int n = 0; n < PIPELINED; n++) {
        json_t *r = bb_recv(c, BB_TIMEOUT_MS);
        json_t *res = json_object_get(r, "result");
        json_int_t id = json_integer_value(json_object_get(r, "id"));
        char *dumped = bb_dump(r);

        ck_assert_msg(r != NULL, "reply %d of %d missing", n + 1, PIPELINED);
        ck_assert_msg(id >= 1 && id <= PIPELINED && !seen[id],
                      "unexpected or repeated id: %s", dumped);
        seen[id] = true;
        ck_assert_msg(json_integer_value(json_object_get(res, "job")) > 0,
                      "put failed: %s", dumped);
        jobs[n] = json_integer_value(json_object_get(res, "job"));
        free(dumped);
        json_decref(r);
    }
    qsort(jobs, PIPELINED, sizeof jobs[0], cmp_int);
    for (int n = 1; n < PIPELINED; n++)
        ck_assert_msg(jobs[n] != jobs[n - 1], "job id %lld given twice",
                      (long long)jobs[n]);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), PIPELINED);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- ids ---- */

START_TEST(ids_of_every_json_kind_are_echoed_exactly)
{
    static const char *const ids[] = {
        "\"abc\"", "\"\"", "\"1\"", "\"\\u00fc \\u2713\"", "0",    "-7",
        "1",       "3.25", "1e3",   "9007199254740993",    "null",
    };
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char line[256];

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(line, sizeof line, "{\"id\":%s,\"method\":\"ping\"}", ids[i]);
        bb_send_line(c, line);
        expect_result(c, ids[i], "\"pong\"");
        snprintf(line, sizeof line, "{\"id\":%s,\"method\":\"no.such\"}",
                 ids[i]);
        bb_send_line(c, line);
        expect_error(c, ids[i], METHOD_NOT_FOUND);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(ids_that_are_not_string_number_or_null_are_invalid_requests)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":{\"a\":1},\"method\":\"ping\"}");
    expect_error(c, "null", INVALID_REQUEST);
    bb_send_line(c, "{\"id\":[1],\"method\":\"ping\"}");
    expect_error(c, "null", INVALID_REQUEST);
    bb_send_line(c, "{\"id\":true,\"method\":\"ping\"}");
    expect_error(c, "null", INVALID_REQUEST);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(replies_to_later_requests_overtake_a_waiting_put)
{
    struct bb_daemon *d = bb_start(SLEEP_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *put;

    bb_send_line(c, "{\"id\":\"put\",\"method\":\"put\",\"params\":"
                    "{\"args\":{\"seconds\":1},\"wait\":true}}");
    bb_send_line(c, "{\"id\":\"ping\",\"method\":\"ping\"}");
    expect_result(c, "\"ping\"", "\"pong\"");
    put = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_pstr_eq(reply_id(put), "put");
    ck_assert_pstr_eq(json_string_value(json_object_get(
                          json_object_get(put, "result"), "state")),
                      "done");
    json_decref(put);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- notifications ---- */

START_TEST(notification_is_executed_and_not_answered)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"put\","
                    "\"params\":{\"args\":{\"n\":1}}}");
    bb_send_line(c, "{\"method\":\"ping\"}");
    expect_nothing_before_ping(c);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 1);
    ck_assert_int_eq(bb_stat_int(c, "default", "unfinished"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(failing_notifications_get_no_error_reply)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    /* invalid params, unknown method, positional params, no such queue */
    bb_send_line(c, "{\"method\":\"put\",\"params\":{\"priority\":\"x\"}}");
    bb_send_line(c, "{\"method\":\"no.such.method\"}");
    bb_send_line(c, "{\"method\":\"ping\",\"params\":[1]}");
    bb_send_line(c, "{\"method\":\"put\",\"params\":{\"queue\":\"nope\"}}");
    bb_send_line(c, "{\"method\":\"status\",\"params\":{\"job\":424242}}");
    expect_nothing_before_ping(c);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- batches ---- */

#define BATCH_CONFIG                                                           \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":2},"            \
    "\"slow\":{\"kind\":\"sleep\",\"consumers\":1}}}"

START_TEST(batch_replies_come_in_request_order_without_notifications)
{
    struct bb_daemon *d = bb_start(BATCH_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r, *e;

    /* The first request finishes last: the order is still the request's. */
    bb_send_line(c, "[{\"id\":\"w\",\"method\":\"put\",\"params\":{\"queue\":"
                    "\"slow\",\"args\":{\"seconds\":0.3},\"wait\":true}},"
                    "{\"method\":\"put\",\"params\":{\"args\":{\"n\":1}}},"
                    "{\"id\":\"p\",\"method\":\"ping\"},"
                    "{\"id\":\"e\",\"method\":\"no.such\"}]");
    r = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_msg(json_is_array(r), "batch reply is not an array");
    ck_assert_int_eq(json_array_size(r), 3);
    e = json_array_get(r, 0);
    ck_assert_pstr_eq(reply_id(e), "w");
    ck_assert_pstr_eq(json_string_value(json_object_get(e, "jsonrpc")), "2.0");
    ck_assert_pstr_eq(json_string_value(json_object_get(
                          json_object_get(e, "result"), "state")),
                      "done");
    assert_json(json_incref(json_array_get(r, 1)),
                "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":\"pong\"}");
    assert_error(json_incref(json_array_get(r, 2)), "\"e\"", METHOD_NOT_FOUND);
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(batch_of_only_notifications_gets_no_reply)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "[{\"method\":\"ping\"},"
                    "{\"method\":\"put\",\"params\":{\"args\":{\"n\":1}}},"
                    "{\"method\":\"no.such.method\"}]");
    expect_nothing_before_ping(c);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(empty_batch_is_one_invalid_request_error)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "[]");
    expect_error(c, "null", INVALID_REQUEST);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(batch_mixing_valid_invalid_and_unknown_entries_answers_each)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r;

    bb_send_line(c, "[{\"id\":\"ok\",\"method\":\"ping\"},"
                    "1,"
                    "{\"id\":\"nf\",\"method\":\"no.such\"},"
                    "\"ping\","
                    "{\"method\":\"ping\"},"
                    "{\"id\":\"ip\",\"method\":\"ping\",\"params\":[]},"
                    "{\"id\":\"ir\",\"method\":\"ping\",\"x\":1}]");
    r = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_msg(json_is_array(r), "batch reply is not an array");
    ck_assert_int_eq(json_array_size(r), 6);
    assert_json(json_incref(json_array_get(r, 0)),
                "{\"jsonrpc\":\"2.0\",\"id\":\"ok\",\"result\":\"pong\"}");
    assert_error(json_incref(json_array_get(r, 1)), "null", INVALID_REQUEST);
    assert_error(json_incref(json_array_get(r, 2)), "\"nf\"", METHOD_NOT_FOUND);
    assert_error(json_incref(json_array_get(r, 3)), "null", INVALID_REQUEST);
    assert_error(json_incref(json_array_get(r, 4)), "\"ip\"", INVALID_PARAMS);
    assert_error(json_incref(json_array_get(r, 5)), "\"ir\"", INVALID_REQUEST);
    json_decref(r);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- errors ---- */

START_TEST(unknown_method_is_method_not_found)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(bb_error(c, "no.such.method", NULL), METHOD_NOT_FOUND);
    ck_assert_int_eq(bb_error(c, "PING", NULL), METHOD_NOT_FOUND);
    ck_assert_int_eq(bb_error(c, "", NULL), METHOD_NOT_FOUND);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(positional_params_are_invalid_params)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":\"a\",\"method\":\"ping\",\"params\":[]}");
    expect_error(c, "\"a\"", INVALID_PARAMS);
    bb_send_line(c, "{\"id\":\"b\",\"method\":\"put\",\"params\":"
                    "[\"default\",{\"n\":1}]}");
    expect_error(c, "\"b\"", INVALID_PARAMS);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(requests_that_are_not_request_objects_are_invalid)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    /* an unknown member */
    bb_send_line(c, "{\"id\":\"a\",\"method\":\"ping\",\"extra\":1}");
    expect_error(c, "\"a\"", INVALID_REQUEST);
    /* no method, a method that is not a string */
    bb_send_line(c, "{\"id\":\"b\"}");
    expect_error(c, "\"b\"", INVALID_REQUEST);
    bb_send_line(c, "{\"id\":\"c\",\"method\":7}");
    expect_error(c, "\"c\"", INVALID_REQUEST);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A scalar is JSON (RFC 8259), so not a parse error: it is not a request
 * object, as a scalar inside a batch is not. */
START_TEST(json_scalar_line_is_invalid_request_not_parse_error)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "\"ping\"");
    expect_error(c, "null", INVALID_REQUEST);
    bb_send_line(c, "42");
    expect_error(c, "null", INVALID_REQUEST);
    bb_send_line(c, "null");
    expect_error(c, "null", INVALID_REQUEST);
    expect_nothing_before_ping(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(error_reply_has_code_and_message_and_no_result)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r = bb_call(c, "put", bb_json("{\"priority\":\"high\"}"));
    json_t *err = json_object_get(r, "error");

    ck_assert_pstr_eq(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    ck_assert_ptr_null(json_object_get(r, "result"));
    ck_assert_int_eq(json_integer_value(json_object_get(err, "code")),
                     INVALID_PARAMS);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(err, "message")), "priority"));
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- server notifications ---- */

START_TEST(wait_stream_sends_job_done_records_before_the_list)
{
    struct bb_daemon *d = bb_start(SLEEP_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t slow = put_job(c, "{\"args\":{\"seconds\":1}}");
    json_int_t fast = put_job(c, "{\"args\":{\"seconds\":0.05}}");
    json_int_t id;
    json_t *first, *second, *reply, *list;

    /* Listed slow first: the notifications come in finishing order, the
     * final list in the given order. */
    id = bb_send_call(c, "wait",
                      bb_json("{\"jobs\":[%lld,%lld],\"mode\":\"stream\"}",
                              (long long)slow, (long long)fast));
    first = bb_recv(c, BB_TIMEOUT_MS);
    second = bb_recv(c, BB_TIMEOUT_MS);
    reply = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(second);
    ck_assert_ptr_nonnull(reply);
    ck_assert_pstr_eq(json_string_value(json_object_get(first, "method")),
                      "job.done");
    ck_assert_pstr_eq(json_string_value(json_object_get(first, "jsonrpc")),
                      "2.0");
    ck_assert_ptr_null(json_object_get(first, "id"));
    ck_assert_pstr_eq(json_string_value(json_object_get(second, "method")),
                      "job.done");
    ck_assert_ptr_null(json_object_get(second, "id"));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(first, "params"), "job")),
                     fast);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(second, "params"), "job")),
                     slow);
    ck_assert_pstr_eq(json_string_value(json_object_get(
                          json_object_get(second, "params"), "state")),
                      "done");
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "id")), id);
    list = json_object_get(reply, "result");
    ck_assert_int_eq(json_array_size(list), 2);
    ck_assert(
        json_equal(json_array_get(list, 0), json_object_get(second, "params")));
    ck_assert(
        json_equal(json_array_get(list, 1), json_object_get(first, "params")));
    json_decref(first);
    json_decref(second);
    json_decref(reply);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- auth ---- */

#define TOKEN "s3cret-token"

/* A token file in /tmp holding TOKEN; the caller unlinks it. */
static void
make_token_file(char *path, size_t len)
{
    int fd;

    snprintf(path, len, "/tmp/asyncq-token.XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, TOKEN "\n", strlen(TOKEN) + 1),
                     (int)strlen(TOKEN) + 1);
    close(fd);
}

#define AUTH_CONFIG                                                            \
    "{\"auth\":{\"token_file\":\"%s\"},"                                       \
    "\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":0}}}"

START_TEST(methods_before_auth_are_unauthorized)
{
    char token_file[64];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *r;

    make_token_file(token_file, sizeof token_file);
    d = bb_start(AUTH_CONFIG, token_file);
    unlink(token_file); /* read at start */
    c = bb_connect(d);
    ck_assert_int_eq(bb_error(c, "ping", NULL), UNAUTHORIZED);
    ck_assert_int_eq(bb_error(c, "stats", NULL), UNAUTHORIZED);
    ck_assert_int_eq(bb_error(c, "put", bb_json("{\"args\":{}}")),
                     UNAUTHORIZED);
    /* An unauthorized notification is not executed either. */
    bb_send_line(c, "{\"method\":\"put\",\"params\":{\"args\":{}}}");
    ck_assert_int_eq(bb_error(c, "no.such.method", NULL), METHOD_NOT_FOUND);
    ck_assert_int_eq(bb_error(c, "auth", bb_json("{\"token\":\"wrong\"}")),
                     UNAUTHORIZED);
    ck_assert_int_eq(bb_error(c, "ping", NULL), UNAUTHORIZED);
    r = bb_result(c, "auth", bb_json("{\"token\":\"" TOKEN "\"}"));
    ck_assert(json_is_true(r));
    json_decref(r);
    r = bb_result(c, "ping", NULL);
    ck_assert_pstr_eq(json_string_value(r), "pong");
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    put_job(c, "{\"args\":{}}");
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(auth_is_per_connection)
{
    char token_file[64];
    struct bb_daemon *d;
    struct bb_conn *a, *b;
    json_t *r;

    make_token_file(token_file, sizeof token_file);
    d = bb_start(AUTH_CONFIG, token_file);
    unlink(token_file); /* read at start */
    a = bb_connect(d);
    b = bb_connect(d);
    r = bb_result(a, "auth", bb_json("{\"token\":\"" TOKEN "\"}"));
    json_decref(r);
    r = bb_result(a, "ping", NULL);
    json_decref(r);
    ck_assert_int_eq(bb_error(b, "ping", NULL), UNAUTHORIZED);
    bb_close(a);
    bb_close(b);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- producers limits ---- */

START_TEST(connection_over_producers_max_is_refused_and_closed)
{
    struct bb_daemon *d =
        bb_start("{\"producers\":{\"max\":2},"
                 "\"queues\":{\"default\":{\"kind\":\"echo\"}}}");
    struct bb_conn *a = bb_connect(d), *b, *refused, *later;
    json_t *r;

    /* bb_start's own connection may still be closing. */
    bb_await_connections(a, 1, BB_TIMEOUT_MS);
    b = bb_connect(d);
    r = bb_result(b, "ping", NULL);
    json_decref(r);
    refused = bb_connect(d);
    expect_error(refused, "null", TOO_MANY_CONNECTIONS);
    ck_assert(bb_wait_closed(refused, BB_TIMEOUT_MS));
    bb_close(refused);
    /* Once one closes, a new connection is accepted. */
    bb_close(b);
    bb_await_connections(a, 1, BB_TIMEOUT_MS);
    later = bb_connect(d);
    r = bb_result(later, "ping", NULL);
    ck_assert_pstr_eq(json_string_value(r), "pong");
    json_decref(r);
    bb_await_connections(a, 2, BB_TIMEOUT_MS);
    bb_close(later);
    bb_close(a);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(full_window_stops_reading_until_a_reply_is_sent)
{
    struct bb_daemon *d = bb_start("{\"producers\":{\"window\":2},"
                                   "\"queues\":{\"default\":{\"kind\":\"echo\","
                                   "\"consumers\":0}}}");
    struct bb_conn *c = bb_connect(d), *other = bb_connect(d);
    json_int_t j1 = put_job(c, "{\"args\":{\"n\":1}}");
    json_int_t j2 = put_job(c, "{\"args\":{\"n\":2}}");
    enum { W1 = 101, W2 = 102, PING = 103 }; /* above bb_call's ids */
    char lines[256];
    json_t *r;

    /* In one write, so the window must hold back a line already read. */
    snprintf(lines, sizeof lines,
             "{\"id\":%d,\"method\":\"wait\",\"params\":{\"jobs\":[%lld]}}\n"
             "{\"id\":%d,\"method\":\"wait\",\"params\":{\"jobs\":[%lld]}}\n"
             "{\"id\":%d,\"method\":\"ping\"}\n",
             W1, (long long)j1, W2, (long long)j2, PING);
    ck_assert(bb_send_raw(c, lines, strlen(lines)));
    /* Two waits are unanswered: the ping is not read. The absence of a
     * reply can only be shown over a stretch of time. */
    ck_assert_ptr_null(bb_wait_reply(c, PING, 500));
    r = bb_result(other, "cancel", bb_json("{\"job\":%lld}", (long long)j1));
    json_decref(r);
    r = bb_wait_reply(c, W1, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_pstr_eq(
        json_string_value(json_object_get(
            json_array_get(json_object_get(r, "result"), 0), "state")),
        "cancelled");
    json_decref(r);
    r = bb_wait_reply(c, PING, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_pstr_eq(json_string_value(json_object_get(r, "result")), "pong");
    json_decref(r);
    r = bb_result(other, "cancel", bb_json("{\"job\":%lld}", (long long)j2));
    json_decref(r);
    r = bb_wait_reply(c, W2, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    json_decref(r);
    bb_close(other);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(idle_connection_is_closed_but_one_awaiting_a_reply_is_not)
{
    struct bb_daemon *d = bb_start("{\"producers\":{\"idle_timeout\":0.3},"
                                   "\"queues\":{\"default\":{\"kind\":\"echo\","
                                   "\"consumers\":0}}}");
    struct bb_conn *waiting = bb_connect(d), *idle;
    json_int_t job = put_job(waiting, "{\"args\":{}}"), w;
    struct bb_conn *other;
    json_t *r;

    w = bb_send_call(waiting, "wait",
                     bb_json("{\"jobs\":[%lld]}", (long long)job));
    idle = bb_connect(d);
    ck_assert(bb_wait_closed(idle, 5000));
    /* waiting had its last read before idle connected; give it three more
     * idle periods to be (wrongly) closed. */
    ck_assert(!bb_wait_closed(waiting, 1000));
    other = bb_connect(d);
    r = bb_result(other, "cancel", bb_json("{\"job\":%lld}", (long long)job));
    json_decref(r);
    bb_close(other);
    r = bb_wait_reply(waiting, w, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    json_decref(r);
    /* Answered, it is idle now. */
    ck_assert(bb_wait_closed(waiting, 5000));
    bb_close(waiting);
    bb_close(idle);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A ping request padded with spaces to exactly len bytes (no newline). */
static char *
padded_ping(const char *id, size_t len)
{
    char *line = malloc(len + 1);
    int n = snprintf(line, len + 1, "{\"id\":\"%s\",\"method\":\"ping\"}", id);

    ck_assert_int_le(n, (int)len);
    memset(line + n, ' ', len - (size_t)n);
    line[len] = '\0';
    return line;
}

START_TEST(line_over_max_request_bytes_is_refused_and_closes_the_connection)
{
    struct bb_daemon *d =
        bb_start("{\"producers\":{\"max_request_bytes\":1024},"
                 "\"queues\":{\"default\":{\"kind\":\"echo\"}}}");
    struct bb_conn *c = bb_connect(d), *other = bb_connect(d);
    char *fits = padded_ping("fits", 1024), *over = padded_ping("over", 1025);
    json_t *r;

    bb_send_line(c, fits);
    expect_result(c, "\"fits\"", "\"pong\"");
    bb_send_line(c, over);
    expect_error(c, "null", INVALID_REQUEST);
    ck_assert(bb_wait_closed(c, BB_TIMEOUT_MS));
    r = bb_result(other, "ping", NULL);
    ck_assert_pstr_eq(json_string_value(r), "pong");
    json_decref(r);
    free(fits);
    free(over);
    bb_close(other);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(half_closed_connection_gets_every_reply_then_is_closed)
{
    struct bb_daemon *d = bb_start(SLEEP_CONFIG);
    struct bb_conn *c = bb_connect(d);
    const char *lines = "{\"id\":\"p1\",\"method\":\"ping\"}\n"
                        "{\"id\":\"w\",\"method\":\"put\",\"params\":"
                        "{\"args\":{\"seconds\":0.2},\"wait\":true}}\n"
                        "{\"id\":\"p2\",\"method\":\"ping\"}\n";
    bool seen_p1 = false, seen_p2 = false, seen_w = false;

    ck_assert(bb_send_raw(c, lines, strlen(lines)));
    ck_assert_int_eq(shutdown(bb_fd(c), SHUT_WR), 0);
    for (int i = 0; i < 3; i++) {
        json_t *r = bb_recv(c, BB_TIMEOUT_MS);
        const char *id = reply_id(r);
        char *text = bb_dump(r);

        ck_assert_msg(id != NULL, "reply %d of 3: %s", i + 1, text);
        if (strcmp(id, "w") == 0) {
            ck_assert_pstr_eq(json_string_value(json_object_get(
                                  json_object_get(r, "result"), "state")),
                              "done");
            seen_w = true;
        } else {
            ck_assert_pstr_eq(json_string_value(json_object_get(r, "result")),
                              "pong");
            seen_p1 |= strcmp(id, "p1") == 0;
            seen_p2 |= strcmp(id, "p2") == 0;
        }
        free(text);
        json_decref(r);
    }
    ck_assert(seen_p1 && seen_p2 && seen_w);
    ck_assert(bb_wait_closed(c, BB_TIMEOUT_MS));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_protocol_suite(void)
{
    Suite *s = suite_create("bb_protocol");
    TCase *tc = tcase_create("framing");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ping_answers_pong);
    tcase_add_test(tc,
                   jsonrpc_member_may_be_omitted_and_every_reply_carries_it);
    tcase_add_test(tc, jsonrpc_other_than_2_0_is_invalid_request);
    tcase_add_test(tc, crlf_line_endings_are_accepted);
    tcase_add_test(tc, empty_and_blank_lines_are_ignored);
    tcase_add_test(tc, pipelined_requests_in_one_write_are_all_answered);
    tcase_add_test(tc, half_closed_connection_gets_every_reply_then_is_closed);
    suite_add_tcase(s, tc);

    tc = tcase_create("messages");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ids_of_every_json_kind_are_echoed_exactly);
    tcase_add_test(tc,
                   ids_that_are_not_string_number_or_null_are_invalid_requests);
    tcase_add_test(tc, replies_to_later_requests_overtake_a_waiting_put);
    tcase_add_test(tc, notification_is_executed_and_not_answered);
    tcase_add_test(tc, failing_notifications_get_no_error_reply);
    tcase_add_test(tc,
                   batch_replies_come_in_request_order_without_notifications);
    tcase_add_test(tc, batch_of_only_notifications_gets_no_reply);
    tcase_add_test(tc, empty_batch_is_one_invalid_request_error);
    tcase_add_test(tc,
                   batch_mixing_valid_invalid_and_unknown_entries_answers_each);
    tcase_add_test(tc, unknown_method_is_method_not_found);
    tcase_add_test(tc, positional_params_are_invalid_params);
    tcase_add_test(tc, requests_that_are_not_request_objects_are_invalid);
    tcase_add_test(tc, json_scalar_line_is_invalid_request_not_parse_error);
    tcase_add_test(tc, error_reply_has_code_and_message_and_no_result);
    tcase_add_test(tc, wait_stream_sends_job_done_records_before_the_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("auth");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, methods_before_auth_are_unauthorized);
    tcase_add_test(tc, auth_is_per_connection);
    suite_add_tcase(s, tc);

    tc = tcase_create("producers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, connection_over_producers_max_is_refused_and_closed);
    tcase_add_test(tc, full_window_stops_reading_until_a_reply_is_sent);
    tcase_add_test(tc,
                   idle_connection_is_closed_but_one_awaiting_a_reply_is_not);
    tcase_add_test(
        tc, line_over_max_request_bytes_is_refused_and_closes_the_connection);
    suite_add_tcase(s, tc);
    return s;
}
