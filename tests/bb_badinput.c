/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_badinput.c: bad input against a real asyncqd (spec section 1,
 * "Bad input never crashes the daemon", and section 7): garbage, broken
 * and oversized JSON, out-of-range and mistyped params, abandoned and slow
 * connections. After each, the daemon must still serve other connections,
 * and the same one where the spec keeps it open. Requests written by hand
 * use string ids, so they never collide with bb_call's integer ids.
 */
#include <check.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"
#include "rng.h"

#define ECHO_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":2}}}"
/* Jobs stay pending: nothing consumes them. */
#define IDLE_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":0}}}"

#define MAX_RSS_KB (200 * 1024)

/* ---- helpers ---- */

/* The next message on c is an error reply to id (JSON text) with code. */
static void
expect_error(struct bb_conn *c, const char *id, int code)
{
    ck_assert_int_eq(bb_error_reply_code(bb_recv(c, BB_TIMEOUT_MS), id), code);
}

/* A put with these params fails with -32602 and a message naming field. */
static void
expect_invalid_param(struct bb_conn *c, const char *method, const char *params,
                     const char *field)
{
    json_t *r = bb_call(c, method, bb_json("%s", params));
    json_t *err = json_object_get(r, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    char *text = bb_dump(r);

    ck_assert_msg(
        json_integer_value(json_object_get(err, "code")) == INVALID_PARAMS,
        "%s %s: got %s, want error %d", method, params, text, INVALID_PARAMS);
    ck_assert_msg(msg != NULL && strstr(msg, field) != NULL,
                  "%s %s: the message does not name %s: %s", method, params,
                  field, text);
    free(text);
    json_decref(r);
}

/* c answers a ping, and it is the next message: nothing else was owed. */
static void
assert_conn_serves(struct bb_conn *c)
{
    json_t *r;
    char *text;

    bb_send_line(c, "{\"id\":\"alive\",\"method\":\"ping\"}");
    r = bb_recv(c, BB_TIMEOUT_MS);
    text = bb_dump(r);
    ck_assert_msg(
        json_is_string(json_object_get(r, "id")) &&
            strcmp(json_string_value(json_object_get(r, "id")), "alive") == 0 &&
            json_is_string(json_object_get(r, "result")),
        "got %s, want the reply to ping \"alive\"", text);
    free(text);
    json_decref(r);
}

/* A new connection gets its ping answered. */
static void
assert_daemon_serves(struct bb_daemon *d)
{
    struct bb_conn *other = bb_connect(d);

    assert_conn_serves(other);
    bb_close(other);
}

/* Under a wrapper (valgrind) the RSS is the wrapper's, not asyncqd's. */
static void
assert_rss_bounded(const struct bb_daemon *d)
{
    const char *w = getenv("ASYNCQD_WRAPPER");
    long kb;

    if (w != NULL && *w != '\0')
        return;
    kb = bb_rss_kb(d);
    ck_assert_msg(kb < MAX_RSS_KB, "asyncqd RSS is %ld kB, over %d kB", kb,
                  MAX_RSS_KB);
}

/* Sends n lines of random bytes (NUL and 0xff among them) in one write.
 * Each starts with a byte no JSON text starts with, so each must get a
 * parse error; returns nothing, the caller reads the n replies. */
static void
send_garbage(struct bb_conn *c, int n, uint64_t seed)
{
    static const unsigned char first[] = {0x00, 0xff, 0x80, 0xc0, 0x01};
    unsigned char *buf = malloc((size_t)n * 202);
    size_t len = 0;
    struct rng r = {seed};

    for (int i = 0; i < n; i++) {
        size_t k = rng_below(&r, 200);

        buf[len++] = first[i % sizeof first];
        for (size_t j = 0; j < k; j++) {
            unsigned char b = (unsigned char)rng_next(&r);

            buf[len++] = b == '\n' ? 0xff : b;
        }
        buf[len++] = '\n';
    }
    ck_assert(bb_send_raw(c, buf, len));
    free(buf);
}

static void
expect_parse_errors(struct bb_conn *c, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *r = bb_recv(c, BB_TIMEOUT_MS);

        ck_assert_msg(r != NULL, "reply %d of %d missing", i + 1, n);
        ck_assert_int_eq(bb_error_reply_code(r, "null"), PARSE_ERROR);
    }
}

/* Sends an unterminated request of len bytes on a new connection (the
 * send may fail once the daemon gives up on it) and expects -32600, then
 * the close. */
static void
oversized_request_is_refused(struct bb_daemon *d, size_t len)
{
    struct bb_conn *c = bb_connect(d);
    static const char head[] =
        "{\"id\":\"big\",\"method\":\"put\",\"params\":{\"args\":{\"s\":\"";
    char *big = malloc(len);

    memcpy(big, head, sizeof head - 1);
    memset(big + sizeof head - 1, 'a', len - (sizeof head - 1));
    bb_send_raw(c, big, len);
    free(big);
    expect_error(c, "null", INVALID_REQUEST);
    ck_assert(bb_wait_closed(c, BB_TIMEOUT_MS));
    bb_close(c);
}

/* A line of depth nested '[' (no newline), for the caller to send. */
static char *
nested_arrays(size_t depth)
{
    char *s = malloc(depth + 1);

    memset(s, '[', depth);
    s[depth] = '\0';
    return s;
}

/* Opens n connections, each sending a partial request, waits until the
 * daemon holds them all, then drops them abruptly: every other one with a
 * reset (SO_LINGER 0). c is a connection of the caller's, which stays. */
static void
storm_of_abandoned_connections(struct bb_daemon *d, struct bb_conn *c, int n)
{
    static const char partial[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi";
    struct bb_conn **conns = calloc((size_t)n, sizeof *conns);
    json_int_t before = bb_stat_int(c, NULL, "connections");

    for (int i = 0; i < n; i++) {
        conns[i] = bb_connect(d);
        ck_assert(bb_send_raw(conns[i], partial, sizeof partial - 1));
    }
    bb_await_connections(c, before + n, 30000);
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(bb_fd(conns[i]), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        bb_close(conns[i]);
    }
    free(conns);
    bb_await_connections(c, before, 30000);
}

/* ---- garbage and broken JSON ---- */

START_TEST(binary_garbage_lines_get_parse_errors_and_the_connection_stays)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    send_garbage(c, 200, 0x2545f491u);
    expect_parse_errors(c, 200);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(truncated_json_line_is_a_parse_error)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":1,\"method\":\"pi");
    expect_error(c, "null", PARSE_ERROR);
    bb_send_line(c, "{\"id\":\"x\",\"method\":\"ping\"");
    expect_error(c, "null", PARSE_ERROR);
    bb_send_line(c, "[{\"id\":\"x\",\"method\":\"ping\"}");
    expect_error(c, "null", PARSE_ERROR);
    /* trailing garbage after a complete request */
    bb_send_line(c, "{\"id\":\"x\",\"method\":\"ping\"} }");
    expect_error(c, "null", PARSE_ERROR);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Duplicate names are valid JSON (RFC 8259 leaves their meaning open):
 * docs/protocol.md refuses them, so a request never means two things, with
 * the id when it is not itself the duplicate. */
START_TEST(duplicate_keys_are_refused)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":\"a\",\"id\":\"b\",\"method\":\"ping\"}");
    expect_error(c, "null", INVALID_REQUEST);
    bb_send_line(c, "{\"id\":\"m\",\"method\":\"ping\",\"method\":\"ping\"}");
    expect_error(c, "\"m\"", INVALID_REQUEST);
    bb_send_line(c, "{\"id\":\"p\",\"method\":\"put\",\"params\":"
                    "{\"priority\":1,\"priority\":2}}");
    expect_error(c, "\"p\"", INVALID_PARAMS);
    bb_send_line(c, "{\"id\":\"q\",\"method\":\"put\",\"params\":"
                    "{\"args\":{},\"args\":{}}}");
    expect_error(c, "\"q\"", INVALID_PARAMS);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(truncated_line_then_close_leaves_the_daemon_serving)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *watcher = bb_connect(d), *c;
    static const char partial[] = "{\"id\":1,\"method\":\"pi";

    bb_await_connections(watcher, 1, BB_TIMEOUT_MS);
    c = bb_connect(d);
    ck_assert(bb_send_raw(c, partial, sizeof partial - 1));
    bb_await_connections(watcher, 2, BB_TIMEOUT_MS);
    bb_close(c);
    bb_await_connections(watcher, 1, BB_TIMEOUT_MS);
    assert_conn_serves(watcher);
    assert_daemon_serves(d);
    bb_close(watcher);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(unterminated_request_over_max_request_bytes_is_refused_and_closed)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *other = bb_connect(d);

    /* 2 MB without a newline, against the default 1 MiB limit. */
    oversized_request_is_refused(d, 2u << 20);
    assert_conn_serves(other);
    assert_daemon_serves(d);
    bb_close(other);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(deeply_nested_json_is_a_parse_error)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char *arrays = nested_arrays(100000);
    char *objects = malloc(6 * 50000 + 1);

    bb_send_line(c, arrays);
    expect_error(c, "null", PARSE_ERROR);
    for (int i = 0; i < 50000; i++)
        memcpy(objects + 6 * i, "{\"a\":[", 6);
    objects[6 * 50000] = '\0';
    bb_send_line(c, objects);
    expect_error(c, "null", PARSE_ERROR);
    free(arrays);
    free(objects);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- numbers ---- */

/* Sends line, a request with id "n"; its reply refuses it: -32700 (with a
 * null id: the parser gave up) or -32602 (with the id). */
static void
expect_number_refused(struct bb_conn *c, const char *line)
{
    json_t *r;
    char *text;

    bb_send_line(c, line);
    r = bb_recv(c, BB_TIMEOUT_MS);
    text = bb_dump(r);
    ck_assert_msg(r != NULL, "no reply to %s", line);
    if (json_is_null(json_object_get(r, "id")))
        ck_assert_msg(bb_error_reply_code(r, "null") == PARSE_ERROR,
                      "%s: got %s, want error -32700 or -32602", line, text);
    else
        ck_assert_msg(bb_error_reply_code(r, "\"n\"") == INVALID_PARAMS,
                      "%s: got %s, want error -32700 or -32602", line, text);
    free(text);
}

START_TEST(numbers_the_parser_cannot_represent_are_refused)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char *text;

    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"put\","
                             "\"params\":{\"priority\":1e999}}");
    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"put\","
                             "\"params\":{\"priority\":-1e999}}");
    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"put\",\"params\":"
                             "{\"priority\":123456789012345678901234567890}}");
    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"put\",\"params\":"
                             "{\"retries\":-123456789012345678901234567890}}");
    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"put\",\"params\":"
                             "{\"delay\":1e999}}");
    expect_number_refused(c, "{\"id\":\"n\",\"method\":\"status\",\"params\":"
                             "{\"job\":123456789012345678901234567890}}");
    /* As an id, such a number comes back as it was sent. */
    bb_send_line(c, "{\"id\":123456789012345678901234567890,"
                    "\"method\":\"ping\"}");
    text = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_pstr_eq(text,
                      "{\"jsonrpc\":\"2.0\",\"id\":"
                      "123456789012345678901234567890,\"result\":\"pong\"}");
    free(text);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A put with params is refused with -32602 or accepted; returns the job,
 * or 0 if refused. */
static json_int_t
put_refused_or_accepted(struct bb_conn *c, const char *params)
{
    json_t *r = bb_call(c, "put", bb_json("%s", params));
    json_t *err = json_object_get(r, "error");
    json_int_t job = json_integer_value(
        json_object_get(json_object_get(r, "result"), "job"));
    char *text = bb_dump(r);

    ck_assert_msg(job > 0 || json_integer_value(json_object_get(err, "code")) ==
                                 INVALID_PARAMS,
                  "put %s: got %s, want a job or error -32602", params, text);
    free(text);
    json_decref(r);
    return job;
}

/* A priority out of the daemon's range is refused, never wrapped. */
static int
priority_refused_or_kept(struct bb_conn *c, const char *prio)
{
    char params[64];
    json_int_t job;
    json_t *rec, *want = bb_json("%s", prio);
    char *text;

    snprintf(params, sizeof params, "{\"priority\":%s}", prio);
    job = put_refused_or_accepted(c, params);
    if (job == 0) {
        json_decref(want);
        return 0;
    }
    rec = bb_result(c, "status", bb_json("{\"job\":%lld}", (long long)job));
    text = bb_dump(rec);
    ck_assert_msg(json_equal(json_object_get(rec, "priority"), want),
                  "put priority %s: the job holds %s", prio, text);
    free(text);
    json_decref(rec);
    json_decref(want);
    return 1;
}

START_TEST(out_of_range_numbers_are_refused_or_kept_exactly)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    int made = 0;

    /* A real where an integer is due, however large. */
    expect_invalid_param(c, "put", "{\"priority\":1e308}", "priority");
    expect_invalid_param(c, "put", "{\"retries\":1e300}", "retries");
    made += priority_refused_or_kept(c, "2147483648");
    made += priority_refused_or_kept(c, "-2147483649");
    made += priority_refused_or_kept(c, "9223372036854775807");
    made += priority_refused_or_kept(c, "-9223372036854775808");
    made += put_refused_or_accepted(c, "{\"delay\":1e308}") > 0;
    made += put_refused_or_accepted(c, "{\"timeout\":1e308}") > 0;
    made += put_refused_or_accepted(c, "{\"retries\":9223372036854775807}") > 0;
    /* Job ids are below 2^53. */
    expect_invalid_param(c, "status", "{\"job\":9007199254740992}", "job");
    expect_invalid_param(c, "cancel", "{\"job\":9223372036854775807}", "job");
    ck_assert_int_eq(
        bb_error(c, "status", bb_json("{\"job\":9007199254740991}")),
        NO_SUCH_JOB);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), made);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(negative_priority_is_valid)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r = bb_result(c, "put", bb_json("{\"priority\":-5}"));

    ck_assert_pstr_eq(json_string_value(json_object_get(r, "state")),
                      "pending");
    json_decref(r);
    r = bb_result(c, "put", bb_json("{\"priority\":-2147483648}"));
    ck_assert_pstr_eq(json_string_value(json_object_get(r, "state")),
                      "pending");
    json_decref(r);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 2);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(negative_counts_durations_and_ids_are_invalid_params)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    expect_invalid_param(c, "put", "{\"delay\":-1}", "delay");
    expect_invalid_param(c, "put", "{\"timeout\":-0.5}", "timeout");
    expect_invalid_param(c, "put", "{\"retries\":-1}", "retries");
    expect_invalid_param(c, "status", "{\"job\":-1}", "job");
    expect_invalid_param(c, "status", "{\"job\":0}", "job");
    expect_invalid_param(c, "cancel", "{\"job\":-3}", "job");
    expect_invalid_param(c, "wait", "{\"jobs\":[-1]}", "jobs");
    expect_invalid_param(c, "wait", "{\"jobs\":[1],\"timeout\":-1}", "timeout");
    expect_invalid_param(c, "join", "{\"timeout\":-1}", "timeout");
    expect_invalid_param(c, "scale", "{\"queue\":\"default\",\"consumers\":-1}",
                         "consumers");
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- types ---- */

START_TEST(wrong_type_for_every_put_param_names_the_field)
{
    static const char *const cases[][2] = {
        {"queue", "1"},       {"queue", "[]"},       {"kind", "2"},
        {"args", "\"x\""},    {"args", "[]"},        {"args", "5"},
        {"priority", "1.5"},  {"priority", "\"1\""}, {"priority", "true"},
        {"delay", "\"1\""},   {"delay", "true"},     {"timeout", "[]"},
        {"timeout", "{}"},    {"retries", "1.5"},    {"retries", "\"2\""},
        {"key", "5"},         {"key", "[\"k\"]"},    {"wait", "1"},
        {"wait", "\"true\""}, {"nowait", "\"yes\""}, {"nowait", "0"},
        {"priorty", "1"},
    };
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char params[128];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(params, sizeof params, "{\"%s\":%s}", cases[i][0],
                 cases[i][1]);
        expect_invalid_param(c, "put", params, cases[i][0]);
    }
    /* None of them made a job. */
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- strings ---- */

/* Sends len bytes as one line and expects a parse error. */
static void
expect_parse_error_for(struct bb_conn *c, const char *line, size_t len)
{
    ck_assert(bb_send_raw(c, line, len));
    ck_assert(bb_send_raw(c, "\n", 1));
    expect_error(c, "null", PARSE_ERROR);
}

#define LINE(s) s, sizeof(s) - 1

/* \u0000 is valid JSON (spec section 1): where it cannot be used the
 * answer names the field and carries the request's id; a raw NUL byte is
 * not JSON at all. */
START_TEST(nul_is_refused_where_it_cannot_be_used)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_send_line(c, "{\"id\":\"s\",\"method\":\"put\",\"params\":"
                    "{\"queue\":\"def\\u0000ault\"}}");
    expect_error(c, "\"s\"", INVALID_PARAMS);
    bb_send_line(c, "{\"id\":\"s\",\"method\":\"put\",\"params\":"
                    "{\"key\":\"k\\u0000\"}}");
    expect_error(c, "\"s\"", INVALID_PARAMS);
    bb_send_line(c, "{\"id\":\"s\",\"method\":\"put\",\"params\":"
                    "{\"args\":{\"\\u0000\":1}}}");
    expect_error(c, "\"s\"", INVALID_PARAMS);
    bb_send_line(c, "{\"id\":\"s\",\"method\":\"pi\\u0000ng\"}");
    expect_error(c, "\"s\"", METHOD_NOT_FOUND);
    /* a raw NUL byte inside a string, and after a number */
    expect_parse_error_for(c,
                           LINE("{\"id\":\"s\",\"method\":\"put\",\"params\":"
                                "{\"key\":\"a\0b\"}}"));
    expect_parse_error_for(c, LINE("{\"id\":13\0,\"method\":\"ping\"}"));
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    /* in a string of args it is just a character */
    json_decref(bb_result(c, "put", bb_jsonq("{'args':{'x':'a\\u0000b'}}")));
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 1);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(invalid_utf8_inside_strings_is_a_parse_error)
{
    static const char *const bad[] = {
        "\xff",             /* never in UTF-8 */
        "\xc3\x28",         /* a lead byte without its continuation */
        "\x80",             /* a lone continuation byte */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* an encoded surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xe2\x82",         /* truncated */
    };
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char line[160];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(line, sizeof line,
                         "{\"id\":\"u\",\"method\":\"put\",\"params\":"
                         "{\"args\":{\"s\":\"a%sb\"}}}",
                         bad[i]);

        expect_parse_error_for(c, line, (size_t)n);
        n = snprintf(line, sizeof line,
                     "{\"id\":\"u\",\"method\":\"put\",\"params\":"
                     "{\"queue\":\"%s\"}}",
                     bad[i]);
        expect_parse_error_for(c, line, (size_t)n);
    }
    /* a lone surrogate, escaped */
    expect_parse_error_for(c,
                           LINE("{\"id\":\"u\",\"method\":\"put\",\"params\":"
                                "{\"args\":{\"s\":\"\\ud800\"}}}"));
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- connections ---- */

START_TEST(thousand_abandoned_partial_connections_are_all_released)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    bb_await_connections(c, 1, BB_TIMEOUT_MS);
    storm_of_abandoned_connections(d, c, 1000);
    ck_assert_int_eq(bb_stat_int(c, NULL, "connections"), 1);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    assert_rss_bounded(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(slow_client_does_not_hold_up_other_connections)
{
    static const char request[] =
        "{\"jsonrpc\":\"2.0\",\"id\":\"slow\",\"method\":\"ping\"}\n";
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *slow = bb_connect(d), *fast = bb_connect(d);
    size_t len = sizeof request - 1;
    json_t *r;

    for (size_t i = 0; i < len; i++) {
        ck_assert(bb_send_raw(slow, request + i, 1));
        /* The slow client's pace is the behaviour under test. */
        poll(NULL, 0, 50);
        if (i % 8 == 4 && i + 1 < len) {
            int64_t t0 = bb_now_ms();

            r = bb_result(fast, "ping", NULL);
            json_decref(r);
            ck_assert_msg(bb_now_ms() - t0 < 500,
                          "ping took %lld ms while a client was slow",
                          (long long)(bb_now_ms() - t0));
            ck_assert_ptr_null(bb_recv(slow, 0));
        }
    }
    r = bb_recv(slow, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_pstr_eq(json_string_value(json_object_get(r, "id")), "slow");
    ck_assert_pstr_eq(json_string_value(json_object_get(r, "result")), "pong");
    json_decref(r);
    bb_close(fast);
    bb_close(slow);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- all of it ---- */

START_TEST(bad_input_keeps_jobs_and_memory_bounded)
{
    struct bb_daemon *d = bb_start(IDLE_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t jobs[3];
    char *arrays = nested_arrays(100000);

    bb_await_connections(c, 1, BB_TIMEOUT_MS);
    for (int i = 0; i < 3; i++) {
        json_t *r = bb_result(c, "put", bb_json("{\"args\":{\"n\":%d}}", i));

        jobs[i] = json_integer_value(json_object_get(r, "job"));
        json_decref(r);
    }
    for (int round = 0; round < 5; round++) {
        send_garbage(c, 200, 0x9e3779b9u + (uint32_t)round);
        expect_parse_errors(c, 200);
        bb_send_line(c, arrays);
        expect_parse_errors(c, 1);
        oversized_request_is_refused(d, 2u << 20);
    }
    storm_of_abandoned_connections(d, c, 1000);
    free(arrays);
    /* The accepted jobs are intact. */
    for (int i = 0; i < 3; i++) {
        json_t *r = bb_result(c, "status",
                              bb_json("{\"job\":%lld}", (long long)jobs[i]));

        ck_assert_int_eq(json_integer_value(json_object_get(r, "job")),
                         jobs[i]);
        ck_assert_pstr_eq(json_string_value(json_object_get(r, "state")),
                          "pending");
        json_decref(r);
    }
    ck_assert_int_eq(bb_stat_int(c, "default", "unfinished"), 3);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 3);
    assert_conn_serves(c);
    assert_daemon_serves(d);
    assert_rss_bounded(d);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_badinput_suite(void)
{
    Suite *s = suite_create("bb_badinput");
    TCase *tc = tcase_create("json");

    tcase_set_timeout(tc, 120);
    tcase_add_test(
        tc, binary_garbage_lines_get_parse_errors_and_the_connection_stays);
    tcase_add_test(tc, truncated_json_line_is_a_parse_error);
    tcase_add_test(tc, duplicate_keys_are_refused);
    tcase_add_test(tc, truncated_line_then_close_leaves_the_daemon_serving);
    tcase_add_test(
        tc, unterminated_request_over_max_request_bytes_is_refused_and_closed);
    tcase_add_test(tc, deeply_nested_json_is_a_parse_error);
    tcase_add_test(tc, nul_is_refused_where_it_cannot_be_used);
    tcase_add_test(tc, invalid_utf8_inside_strings_is_a_parse_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("params");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, numbers_the_parser_cannot_represent_are_refused);
    tcase_add_test(tc, out_of_range_numbers_are_refused_or_kept_exactly);
    tcase_add_test(tc, negative_priority_is_valid);
    tcase_add_test(tc, negative_counts_durations_and_ids_are_invalid_params);
    tcase_add_test(tc, wrong_type_for_every_put_param_names_the_field);
    suite_add_tcase(s, tc);

    tc = tcase_create("connections");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, thousand_abandoned_partial_connections_are_all_released);
    tcase_add_test(tc, slow_client_does_not_hold_up_other_connections);
    tcase_add_test(tc, bad_input_keeps_jobs_and_memory_bounded);
    suite_add_tcase(s, tc);
    return s;
}
