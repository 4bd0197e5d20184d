/* SPDX-License-Identifier: MIT */
/*
 * tests/test_server.c: lib/server.c on its own, with stub ops instead of
 * the methods, spoken to through tests/testconn.h's socketpair. The stub
 * answers at once (ping), holds calls for the test to end later (hold, block),
 * sends big replies (big), and counts what reaches it, so framing, pipelining,
 * the window, batches, notifications, closing and back-pressure are seen from
 * both sides. Every wait is a loop run with a deadline.
 */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "broker.h"
#include "call.h"
#include "config.h"
#include "error.h"
#include "rpc.h"
#include "server.h"
#include "suites.h"
#include "testconn.h"
#include "testutil.h"

#define WAIT_MS TEST_CONN_WAIT_MS
#define HELD_MAX 64
#define BIG_BYTES (256u << 10) /* one "big" reply's string */
#define BIG_REPLIES 40         /* 10 MiB: more than the 4 MiB bound */
#define BIG_ARRAY 17           /* strings in one reply: 4.25 MiB */

static struct {
    struct event_base *base;
    struct aq_config *cfg;
    struct aq_server *s;
    struct aq_server_ops ops;
    struct test_conn *c;
    /* the stub's view */
    int requests, puts, abandoned;
    struct aq_call *held[HELD_MAX];
    size_t nheld;
    json_t *big;    /* the string of "big" replies */
    char *big_text; /* its text */
    bool closed;    /* close_all's done */
} T;

/* ---- the stub ops ---- */

static void
held_abandon(void *arg)
{
    T.held[(uintptr_t)arg] = NULL;
    T.abandoned++;
}

static void
hold(struct aq_call *call)
{
    ck_assert_uint_lt(T.nheld, HELD_MAX);
    T.held[T.nheld] = call;
    aq_call_on_abandon(call, held_abandon, (void *)(uintptr_t)T.nheld);
    T.nheld++;
}

/* Ends held call i with result (taken). */
static void
release(size_t i, json_t *result)
{
    struct aq_call *call = T.held[i];

    ck_assert_ptr_nonnull(call);
    T.held[i] = NULL;
    aq_call_on_abandon(call, NULL, NULL);
    aq_call_reply(call, result);
}

static void
stub_request(void *arg, struct aq_call *call, const struct aq_rpc_request *r)
{
    const char *m = r->method;
    struct aq_error err;

    T.requests++;
    if (strcmp(m, "ping") == 0)
        aq_call_reply(call, json_string("pong"));
    else if (strcmp(m, "hold") == 0)
        hold(call);
    else if (strcmp(m, "block") == 0) {
        hold(call);
        aq_call_block(call);
    } else if (strcmp(m, "big") == 0)
        aq_call_reply(call, json_incref(T.big));
    else if (strcmp(m, "bigarray") == 0) {
        /* 4.25 MiB of reply (over the 4 MiB bound), one string shared. */
        json_t *list = json_array();

        for (int i = 0; i < BIG_ARRAY; i++)
            json_array_append(list, T.big);
        aq_call_reply(call, list);
    } else if (strcmp(m, "notify") == 0) {
        aq_call_notify(call, "event", json_pack("{s:i}", "n", 1));
        aq_call_reply(call, json_string("done"));
    } else if (strcmp(m, "login") == 0) {
        aq_call_set_authenticated(call);
        aq_call_reply(call, json_true());
    } else if (strcmp(m, "authed") == 0)
        aq_call_reply(call, json_boolean(aq_call_is_authenticated(call)));
    else if (strcmp(m, "conns") == 0)
        aq_call_reply(call,
                      json_integer((json_int_t)aq_call_connections(call)));
    else {
        aq_error_set(&err, AQ_ERR_NO_METHOD, "method not found: %s",
                     r->method_shown);
        aq_call_fail(call, &err);
    }
}

static void
stub_put(void *arg, struct aq_call *call, const struct aq_put *p, bool wait)
{
    struct aq_put_result res = {.job = (uint64_t)++T.puts, .state = "pending"};

    aq_call_reply_put(call, &res);
}

/* ---- waiting ---- */

static bool
requests_reached(void *arg)
{
    return T.requests >= *(const int *)arg;
}

/* Runs until the stub has seen n requests in all. */
static void
await_requests(int n)
{
    ck_assert_msg(test_run_until(T.base, requests_reached, &n, WAIT_MS),
                  "%d requests reached the stub, not %d", T.requests, n);
}

/* The next whole line from the server, as text (not taken). */
static void
peek_line(char *buf, size_t cap)
{
    size_t n;
    const char *line = test_conn_peek(T.c, &n);

    snprintf(buf, cap, "%.*s", (int)n, line);
}

/* ---- fixture ---- */

static void
setup(void)
{
    memset(&T, 0, sizeof T);
    signal(SIGPIPE, SIG_IGN); /* as asyncqd: a write to a gone client */
    T.base = test_base_new();
    T.cfg = aq_config_default();
    T.ops = (struct aq_server_ops){stub_request, stub_put};
    T.s = aq_server_new(T.base, T.cfg, &T.ops, NULL);
    T.big_text = memset(malloc(BIG_BYTES), 'x', BIG_BYTES);
    T.big = json_stringn_nocheck(T.big_text, BIG_BYTES);
    T.c = test_conn_new(T.base, T.s);
}

static void
teardown(void)
{
    test_conn_free(T.c);
    aq_server_free(T.s);
    aq_config_free(T.cfg);
    json_decref(T.big);
    free(T.big_text);
    test_base_free(T.base);
}

/* New limits, as SIGHUP applies them. */
static void
limits(int window, size_t max_request_bytes, int max_conns)
{
    T.cfg->producers.window = window;
    T.cfg->producers.max_request_bytes = max_request_bytes;
    T.cfg->producers.max = max_conns;
    aq_server_reconfigure(T.s, T.cfg);
}

/* ---- framing ---- */

START_TEST(lines_end_with_lf_or_crlf_and_blank_lines_are_skipped)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"ping\"}\n"
                        "\n   \r\n\t\n"
                        "{\"id\":2,\"method\":\"ping\"}\r\n"
                        "\r\n");
    test_conn_expect(T.c, "1", "\"pong\"");
    test_conn_expect(T.c, "2", "\"pong\"");
    test_conn_expect_silence(T.c, 20);
    ck_assert_int_eq(T.requests, 2);
}
END_TEST

START_TEST(a_byte_order_mark_may_start_the_first_line_only)
{
    test_conn_send(T.c, "\xEF\xBB\xBF{\"id\":1,\"method\":\"ping\"}\n"
                        "\xEF\xBB\xBF{\"id\":2,\"method\":\"ping\"}\n");
    test_conn_expect(T.c, "1", "\"pong\"");
    test_conn_expect_error(T.c, "null", -32700, NULL);
}
END_TEST

START_TEST(the_id_comes_back_byte_for_byte)
{
    char line[200];

    test_conn_send(T.c, "{\"id\":1e3,\"method\":\"ping\"}\n"
                        "{\"id\":\"a\\u0041\",\"method\":\"ping\"}\n");
    /* read raw: the text is what is checked */
    peek_line(line, sizeof line);
    ck_assert_msg(strstr(line, "\"id\":1e3,") != NULL, "%s", line);
    json_decref(test_conn_next(T.c));
    peek_line(line, sizeof line);
    ck_assert_msg(strstr(line, "\"id\":\"a\\u0041\",") != NULL, "%s", line);
}
END_TEST

START_TEST(a_line_that_is_not_json_is_a_parse_error_and_the_connection_stays)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\n"
                        "{\"id\":2,\"method\":\"ping\"}\n");
    test_conn_expect_error(T.c, "null", -32700, NULL);
    test_conn_expect(T.c, "2", "\"pong\"");
}
END_TEST

START_TEST(an_unterminated_last_line_is_handled_at_end_of_file)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"ping\"}");
    shutdown(T.c->fd, SHUT_WR);
    test_conn_expect(T.c, "1", "\"pong\"");
    test_conn_expect_eof(T.c);
}
END_TEST

/* ---- pipelining and the window ---- */

START_TEST(pipelined_requests_are_answered_in_order)
{
    char buf[64 * 40];
    size_t n = 0;

    for (int i = 1; i <= 64; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n,
                              "{\"id\":%d,\"method\":\"ping\"}\n", i);
    test_conn_send(T.c, buf);
    for (int i = 1; i <= 64; i++) {
        char id[16];

        snprintf(id, sizeof id, "%d", i);
        test_conn_expect(T.c, id, "\"pong\"");
    }
}
END_TEST

START_TEST(a_later_reply_may_overtake_a_waiting_call)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n"
                        "{\"id\":2,\"method\":\"ping\"}\n");
    test_conn_expect(T.c, "2", "\"pong\"");
    release(0, json_string("held"));
    test_conn_expect(T.c, "1", "\"held\"");
}
END_TEST

START_TEST(a_full_window_stops_reading_until_a_call_ends)
{
    limits(4, 1 << 20, 16);
    for (int i = 0; i < 10; i++)
        test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n");
    await_requests(4);
    run_for(T.base, 30);
    ck_assert_int_eq(T.requests, 4);
    release(0, json_null());
    await_requests(5);
    run_for(T.base, 30);
    ck_assert_int_eq(T.requests, 5);
}
END_TEST

START_TEST(a_blocking_call_stops_reading_until_it_ends)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"block\"}\n"
                        "{\"id\":2,\"method\":\"ping\"}\n");
    await_requests(1);
    test_conn_expect_silence(T.c, 30);
    ck_assert_int_eq(T.requests, 1);
    release(0, json_string("unblocked"));
    test_conn_expect(T.c, "1", "\"unblocked\"");
    test_conn_expect(T.c, "2", "\"pong\"");
}
END_TEST

/* ---- batches and notifications ---- */

START_TEST(a_batch_gets_one_array_in_order_once_all_are_answered)
{
    json_t *msg, *want;

    test_conn_send(
        T.c, "[{\"id\":1,\"method\":\"hold\"},{\"method\":\"ping\"},"
             "{\"id\":2,\"method\":\"ping\"},{\"id\":3,\"method\":\"nope\"},"
             "{\"id\":4}]\n");
    await_requests(4);
    test_conn_expect_silence(T.c, 20);
    release(0, json_string("late"));
    msg = test_conn_next(T.c);
    ck_assert(json_is_array(msg));
    ck_assert_int_eq(json_array_size(msg), 4);
    want = json_loads("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"late\"},"
                      "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":\"pong\"}]",
                      0, NULL);
    ck_assert(json_equal(json_array_get(msg, 0), json_array_get(want, 0)));
    ck_assert(json_equal(json_array_get(msg, 1), json_array_get(want, 1)));
    ck_assert_int_eq(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(msg, 2), "error"), "code")),
        AQ_ERR_NO_METHOD);
    ck_assert_int_eq(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(msg, 3), "error"), "code")),
        AQ_ERR_INVALID_REQUEST);
    json_decref(want);
    json_decref(msg);
}
END_TEST

START_TEST(an_empty_batch_is_invalid_and_a_batch_of_notifications_silent)
{
    test_conn_send(T.c, "[]\n"
                        "[{\"method\":\"ping\"},{\"method\":\"nope\"}]\n"
                        "{\"id\":9,\"method\":\"ping\"}\n");
    test_conn_expect_error(T.c, "null", -32600, NULL);
    test_conn_expect(T.c, "9", "\"pong\"");
    ck_assert_int_eq(T.requests, 3);
}
END_TEST

START_TEST(notifications_are_run_and_never_answered_nor_notified)
{
    json_t *ev;

    test_conn_send(T.c, "{\"method\":\"ping\"}\n"
                        "{\"method\":\"nope\"}\n"
                        "{\"method\":\"notify\"}\n"
                        "{\"method\":\"put\",\"params\":{}}\n"
                        "{\"id\":1,\"method\":\"notify\"}\n");
    ev = test_conn_next(T.c);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "method")), "event");
    ck_assert_ptr_null(json_object_get(ev, "id"));
    json_decref(ev);
    test_conn_expect(T.c, "1", "\"done\"");
    test_conn_expect_silence(T.c, 20);
    ck_assert_int_eq(T.requests, 4);
    ck_assert_int_eq(T.puts, 1);
}
END_TEST

/* ---- the put op ---- */

START_TEST(a_plain_put_goes_to_the_put_op)
{
    char line[200];

    test_conn_send(T.c, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"put\","
                        "\"params\":{\"queue\":\"q\",\"args\":{\"n\":1}}}\n");
    peek_line(line, sizeof line);
    /* the hand-written reply is what lib/jwrite would write */
    ck_assert_str_eq(line, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":"
                           "{\"job\":1,\"state\":\"pending\"}}\n");
    ck_assert_int_eq(T.puts, 1);
    ck_assert_int_eq(T.requests, 0);
}
END_TEST

START_TEST(a_put_the_fast_path_leaves_goes_to_request)
{
    test_conn_send(
        T.c, "{\"id\":7,\"method\":\"put\",\"params\":{\"q\\u0075eue\":1}}\n"
             "[{\"id\":8,\"method\":\"put\",\"params\":{}}]\n");
    test_conn_expect_error(T.c, "7", -32601, NULL); /* the stub's answer */
    json_decref(test_conn_next(T.c));
    ck_assert_int_eq(T.puts, 0);
    ck_assert_int_eq(T.requests, 2);
}
END_TEST

START_TEST(without_a_put_op_every_put_goes_to_request)
{
    aq_server_free(T.s);
    test_conn_free(T.c);
    T.ops.put = NULL;
    T.s = aq_server_new(T.base, T.cfg, &T.ops, NULL);
    T.c = test_conn_new(T.base, T.s);
    test_conn_send(
        T.c, "{\"id\":7,\"method\":\"put\",\"params\":{\"queue\":\"q\"}}\n");
    test_conn_expect_error(T.c, "7", -32601, NULL);
    ck_assert_int_eq(T.puts, 0);
    ck_assert_int_eq(T.requests, 1);
}
END_TEST

/* ---- the connection's state for the ops ---- */

START_TEST(auth_is_kept_per_connection)
{
    struct test_conn *other;

    other = test_conn_new(T.base, T.s);
    test_conn_send(T.c, "{\"id\":1,\"method\":\"authed\"}\n"
                        "{\"id\":2,\"method\":\"login\"}\n"
                        "{\"id\":3,\"method\":\"authed\"}\n");
    test_conn_expect(T.c, "1", "false");
    test_conn_expect(T.c, "2", "true");
    test_conn_expect(T.c, "3", "true");
    test_conn_send(other, "{\"id\":4,\"method\":\"authed\"}\n");
    test_conn_expect(other, "4", "false");
    test_conn_free(other);
}
END_TEST

START_TEST(a_call_counts_the_open_connections)
{
    struct test_conn *other;

    test_conn_send(T.c, "{\"id\":1,\"method\":\"conns\"}\n");
    test_conn_expect(T.c, "1", "1");
    other = test_conn_new(T.base, T.s);
    test_conn_send(T.c, "{\"id\":2,\"method\":\"conns\"}\n");
    test_conn_expect(T.c, "2", "2");
    ck_assert_uint_eq(aq_server_connections(T.s), 2);
    test_conn_free(other);
}
END_TEST

/* ---- limits and closing ---- */

START_TEST(an_oversized_line_gets_32600_then_a_clean_close)
{
    char big[3000];

    limits(16, 1024, 16);
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    test_conn_send(T.c, "{\"id\":1,\"method\":\"ping\"}\n");
    test_conn_send(T.c, big);
    test_conn_expect(T.c, "1", "\"pong\"");
    test_conn_expect_error(T.c, "null", -32600, NULL);
    test_conn_expect_eof(T.c);
    ck_assert_uint_eq(aq_server_connections(T.s), 0);
}
END_TEST

START_TEST(beyond_producers_max_a_connection_gets_32011_and_is_closed)
{
    struct test_conn *other;

    limits(16, 1 << 20, 1);
    other = test_conn_new(T.base, T.s);
    test_conn_expect_error(other, "null", -32011, NULL);
    test_conn_expect_eof(other);
    test_conn_free(other);
    test_conn_send(T.c, "{\"id\":1,\"method\":\"ping\"}\n");
    test_conn_expect(T.c, "1", "\"pong\"");
}
END_TEST

START_TEST(a_half_closed_connection_still_gets_its_replies)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n"
                        "{\"id\":2,\"method\":\"hold\"}\n");
    await_requests(2);
    shutdown(T.c->fd, SHUT_WR);
    run_for(T.base, 20);
    /* out of producers.max, waiting for its replies */
    ck_assert_uint_eq(aq_server_connections(T.s), 0);
    release(1, json_string("second"));
    test_conn_expect(T.c, "2", "\"second\"");
    release(0, json_string("first"));
    test_conn_expect(T.c, "1", "\"first\"");
    test_conn_expect_eof(T.c);
    ck_assert_int_eq(T.abandoned, 0);
}
END_TEST

START_TEST(calls_are_abandoned_when_the_client_goes_away)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n"
                        "{\"id\":2,\"method\":\"hold\"}\n"
                        "{\"id\":3,\"method\":\"hold\"}\n");
    await_requests(3);
    test_conn_drop(T.c);
    /* A closed peer looks half-closed until a write to it fails. */
    release(0, json_string("unread"));
    run_for(T.base, 50);
    ck_assert_int_eq(T.abandoned, 2);
    ck_assert_ptr_null(T.held[1]);
    ck_assert_ptr_null(T.held[2]);
}
END_TEST

START_TEST(an_idle_connection_is_closed_but_not_one_waiting_for_a_reply)
{
    struct test_conn *other;

    T.cfg->producers.idle_timeout = 0.05;
    aq_server_reconfigure(T.s, T.cfg);
    other = test_conn_new(T.base, T.s);
    test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n");
    test_conn_expect_eof(other);
    test_conn_free(other);
    test_conn_expect_silence(T.c, 150);
    ck_assert(!T.c->is_eof);
    release(0, json_string("late"));
    test_conn_expect(T.c, "1", "\"late\"");
}
END_TEST

static void
closed_cb(void *arg)
{
    T.closed = true;
}

static bool
is_closed(void *arg)
{
    return T.closed;
}

START_TEST(close_all_answers_waiting_calls_32010_and_closes)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"hold\"}\n"
                        "{\"id\":2,\"method\":\"ping\"}\n");
    test_conn_expect(T.c, "2", "\"pong\"");
    aq_server_close_all(T.s, WAIT_MS, closed_cb, NULL);
    test_conn_expect_error(T.c, "1", -32010, NULL);
    ck_assert_int_eq(T.abandoned, 1);
    test_conn_expect_eof(T.c);
    ck_assert(test_run_until(T.base, is_closed, NULL, WAIT_MS));
}
END_TEST

/* ---- output ---- */

/* The next line is prefix, then n big strings "x...x" joined by ",",
 * then suffix: checked as text, which the slow runs (valgrind) read far
 * faster than jansson parses it. */
static void
take_big_reply(const char *prefix, const char *suffix, size_t n)
{
    size_t len, at = strlen(prefix);
    const char *line = test_conn_peek(T.c, &len);

    ck_assert_uint_eq(len,
                      at + n * BIG_BYTES + (n - 1) * 3 + strlen(suffix) + 1);
    ck_assert(memcmp(line, prefix, at) == 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert(memcmp(line + at, T.big_text, BIG_BYTES) == 0);
        at += BIG_BYTES;
        if (i + 1 < n) {
            ck_assert(memcmp(line + at, "\",\"", 3) == 0);
            at += 3;
        }
    }
    ck_assert(memcmp(line + at, suffix, strlen(suffix)) == 0);
    test_conn_take(T.c, len);
}

static bool
big_replies_in(void *arg)
{
    return T.c->in_len >= BIG_REPLIES * (size_t)BIG_BYTES;
}

START_TEST(a_client_that_does_not_read_is_not_read_either)
{
    test_conn_pause(T.c, true); /* the client stops reading */
    for (int i = 0; i < BIG_REPLIES; i++)
        test_conn_send(T.c, "{\"id\":1,\"method\":\"big\"}\n");
    await_requests(1);
    run_for(T.base, 50);
    /* 4 MiB fit in the output, a little more in the socket, then
     * requests wait: 10 MiB of replies are never buffered. */
    ck_assert_int_lt(T.requests, BIG_REPLIES * 3 / 4);
    test_conn_pause(T.c, false);
    ck_assert(test_run_until(T.base, big_replies_in, NULL, WAIT_MS));
    for (int i = 0; i < BIG_REPLIES; i++)
        take_big_reply("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"", "\"}", 1);
    ck_assert_int_eq(T.requests, BIG_REPLIES);
}
END_TEST

START_TEST(a_reply_larger_than_the_output_bound_is_written_as_read)
{
    test_conn_send(T.c, "{\"id\":1,\"method\":\"bigarray\"}\n"
                        "{\"id\":2,\"method\":\"ping\"}\n");
    take_big_reply("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[\"", "\"]}",
                   BIG_ARRAY);
    test_conn_expect(T.c, "2", "\"pong\"");
}
END_TEST

/* ---- another transport ---- */

static bool pair_has_line;

static void
pair_read_cb(struct bufferevent *bev, void *arg)
{
    pair_has_line = evbuffer_search_eol(bufferevent_get_input(bev), NULL, NULL,
                                        EVBUFFER_EOL_LF)
                        .pos >= 0;
}

START_TEST(a_bufferevent_transport_speaks_the_same_protocol)
{
    struct bufferevent *pair[2];
    char *line;
    json_t *msg;

    ck_assert_int_eq(bufferevent_pair_new(T.base, BEV_OPT_CLOSE_ON_FREE, pair),
                     0);
    aq_server_accept_bev(T.s, pair[0], "pair");
    bufferevent_setcb(pair[1], pair_read_cb, NULL, NULL, NULL);
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(pair[1]),
                        "{\"id\":1,\"method\":\"ping\"}\n");
    ck_assert(run_until(T.base, &pair_has_line, WAIT_MS));
    line =
        evbuffer_readln(bufferevent_get_input(pair[1]), NULL, EVBUFFER_EOL_LF);
    msg = json_loads(line, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(msg, "result")), "pong");
    json_decref(msg);
    free(line);
    bufferevent_free(pair[1]);
}
END_TEST

Suite *
server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *tc = test_tcase_new("framing");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lines_end_with_lf_or_crlf_and_blank_lines_are_skipped);
    tcase_add_test(tc, a_byte_order_mark_may_start_the_first_line_only);
    tcase_add_test(tc, the_id_comes_back_byte_for_byte);
    tcase_add_test(
        tc, a_line_that_is_not_json_is_a_parse_error_and_the_connection_stays);
    tcase_add_test(tc, an_unterminated_last_line_is_handled_at_end_of_file);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("pipelining");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, pipelined_requests_are_answered_in_order);
    tcase_add_test(tc, a_later_reply_may_overtake_a_waiting_call);
    tcase_add_test(tc, a_full_window_stops_reading_until_a_call_ends);
    tcase_add_test(tc, a_blocking_call_stops_reading_until_it_ends);
    tcase_add_test(tc, a_batch_gets_one_array_in_order_once_all_are_answered);
    tcase_add_test(
        tc, an_empty_batch_is_invalid_and_a_batch_of_notifications_silent);
    tcase_add_test(tc, notifications_are_run_and_never_answered_nor_notified);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_plain_put_goes_to_the_put_op);
    tcase_add_test(tc, a_put_the_fast_path_leaves_goes_to_request);
    tcase_add_test(tc, without_a_put_op_every_put_goes_to_request);
    tcase_add_test(tc, auth_is_kept_per_connection);
    tcase_add_test(tc, a_call_counts_the_open_connections);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("closing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, an_oversized_line_gets_32600_then_a_clean_close);
    tcase_add_test(tc,
                   beyond_producers_max_a_connection_gets_32011_and_is_closed);
    tcase_add_test(tc, a_half_closed_connection_still_gets_its_replies);
    tcase_add_test(tc, calls_are_abandoned_when_the_client_goes_away);
    tcase_add_test(
        tc, an_idle_connection_is_closed_but_not_one_waiting_for_a_reply);
    tcase_add_test(tc, close_all_answers_waiting_calls_32010_and_closes);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("output");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_client_that_does_not_read_is_not_read_either);
    tcase_add_test(tc, a_reply_larger_than_the_output_bound_is_written_as_read);
    tcase_add_test(tc, a_bufferevent_transport_speaks_the_same_protocol);
    suite_add_tcase(s, tc);
    return s;
}
