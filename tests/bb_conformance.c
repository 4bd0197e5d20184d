/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_conformance.c: every request answered exactly (spec sections 1
 * and 7), against a real asyncqd: ids and args come back byte for byte,
 * error precedence, required params, a client that closes or does not
 * read, and clean closes. Replies whose exact text matters are read as
 * text (bb_recv_text), since jansson itself would round them.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define ECHO_CONFIG "{'queues':{'default':{'kind':'echo','consumers':1}}}"

/* Sends line and asserts the next line back is exactly want. */
static void
expect_text(struct bb_conn *c, const char *line, const char *want)
{
    char *got;

    bb_send_line(c, line);
    got = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_msg(got != NULL, "no reply to %s", line);
    ck_assert_msg(strcmp(got, want) == 0, "%s: got %s, want %s", line, got,
                  want);
    free(got);
}

/* Sends line; the reply must start with prefix and hold needle. */
static void
expect_holding(struct bb_conn *c, const char *line, const char *prefix,
               const char *needle)
{
    char *got;

    bb_send_line(c, line);
    got = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_msg(got != NULL, "no reply to %s", line);
    ck_assert_msg(strncmp(got, prefix, strlen(prefix)) == 0,
                  "%s: got %s, want it to start %s", line, got, prefix);
    ck_assert_msg(needle == NULL || strstr(got, needle) != NULL,
                  "%s: got %s, want it to hold %s", line, got, needle);
    free(got);
}

/* ---- exact ids and values ---- */

START_TEST(ids_come_back_byte_for_byte)
{
    static const char *const ids[] = {
        "0.30000000000000004",
        "1e3",
        "1.7976931348623157e308",
        "-0",
        "123456789012345678901234567890",
        "1E-400",
        "\"a\\u0000b\"",
        "\"\\u00e9\\ud83d\\ude00\"",
        "null",
    };
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char line[256], want[256];

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(line, sizeof line,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", ids[i]);
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":\"pong\"}", ids[i]);
        expect_text(c, line, want);
        /* an error carries it just as well */
        snprintf(line, sizeof line, "{\"id\":%s,\"method\":\"nope\"}", ids[i]);
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":", ids[i]);
        expect_holding(c, line, want, "-32601");
        /* and a put on the hot path's neighbour, the general path */
        snprintf(line, sizeof line,
                 "{\"id\":%s,\"method\":\"put\",\"params\":{\"args\":{}}}",
                 ids[i]);
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"job\":", ids[i]);
        expect_holding(c, line, want, NULL);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* An echo job returns its args with every value intact: U+0000, integers
 * beyond 64 bits, doubles that need 17 digits, the largest double. */
START_TEST(echo_returns_every_value_intact)
{
    static const char args[] =
        "{\"nul\":\"a\\u0000b\",\"big\":123456789012345678901234567890,"
        "\"neg\":-98765432109876543210,\"f\":0.30000000000000004,"
        "\"max\":1.7976931348623157e308,\"e\":1E+3,\"z\":-0.0,"
        "\"deep\":[[[{\"x\":[]}]]],\"s\":\"\\ud83d\\ude00\\\"\"}";
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char line[1024], want[1024];
    char *got;

    /* whitespace is not a value: it goes */
    snprintf(line, sizeof line,
             "{\"jsonrpc\":\"2.0\",\"id\":\"u\",\"method\":\"put\",\"params\":"
             "{\"args\": %s ,\"wait\":true}}",
             args);
    snprintf(want, sizeof want, "\"result\":%s", args);
    expect_holding(c, line, "{\"jsonrpc\":\"2.0\",\"id\":\"u\",\"result\":{",
                   want);
    /* status shows the same */
    bb_send_line(c,
                 "{\"id\":\"s\",\"method\":\"status\",\"params\":{\"job\":1}}");
    got = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strstr(got, want) != NULL, "status: %s", got);
    free(got);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Timestamps and other reals the daemon makes read back as they are. */
START_TEST(reals_in_records_read_back_exactly)
{
    struct bb_daemon *d = bb_startq("{'queues':{'default':{'kind':'sleep',"
                                    "'consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *r =
        bb_result(c, "put", bb_jsonq("{'args':{'seconds':0.1},'wait':true}"));

    ck_assert_double_eq(
        json_real_value(json_object_get(json_object_get(r, "result"), "slept")),
        0.1);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(byte_order_mark_before_the_first_request_is_ignored)
{
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    expect_text(c, "\xEF\xBB\xBF{\"id\":1,\"method\":\"ping\"}",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"pong\"}");
    bb_close(c);
    c = bb_connect(d);
    expect_holding(c,
                   "\xEF\xBB\xBF{\"id\":2,\"method\":\"put\",\"params\":"
                   "{\"args\":{}}}",
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"job\":", NULL);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- precedence and required params ---- */

START_TEST(unknown_method_is_32601_whatever_its_params)
{
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    expect_holding(c,
                   "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subtract\","
                   "\"params\":[42,23]}",
                   "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601",
                   NULL);
    expect_holding(c, "{\"id\":2,\"method\":\"nope\",\"params\":{\"x\":1e999}}",
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32601",
                   NULL);
    /* ping refuses unknown params, as every other method */
    ck_assert_int_eq(bb_error(c, "ping", bb_jsonq("{'x':1}")), INVALID_PARAMS);
    expect_holding(c, "{\"id\":3,\"method\":\"ping\",\"params\":[1]}",
                   "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602",
                   NULL);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(pause_resume_and_scale_require_a_queue)
{
    static const char *const methods[] = {"pause", "resume", "scale"};
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);

    for (size_t i = 0; i < 3; i++) {
        json_t *r =
            bb_call(c, methods[i], i == 2 ? bb_jsonq("{'consumers':3}") : NULL);
        json_t *err = json_object_get(r, "error");
        const char *msg = json_string_value(json_object_get(err, "message"));

        ck_assert_int_eq(json_integer_value(json_object_get(err, "code")),
                         INVALID_PARAMS);
        ck_assert_msg(msg != NULL && strstr(msg, "params.queue") != NULL,
                      "%s: %s", methods[i], msg);
        json_decref(r);
    }
    /* nothing changed on default */
    ck_assert_int_eq(bb_stat_int(c, "default", "consumers"), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- notifications ---- */

/* A wait in stream mode sent as a notification causes no job.done. */
START_TEST(stream_wait_as_a_notification_sends_nothing)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t job = bb_put_job(c, bb_jsonq("{'args':{}}"), BB_TIMEOUT_MS);
    char line[128], *got;

    snprintf(line, sizeof line,
             "{\"method\":\"wait\",\"params\":{\"jobs\":[%lld],"
             "\"mode\":\"stream\"}}",
             (long long)job);
    bb_send_line(c, line);
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'default','consumers':1}")));
    bb_await_state(c, job, "done", BB_TIMEOUT_MS);
    bb_send_line(c, "{\"id\":\"last\",\"method\":\"ping\"}");
    got = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(
        got, "{\"jsonrpc\":\"2.0\",\"id\":\"last\",\"result\":\"pong\"}");
    free(got);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- clients that go ---- */

/* A client that closes while its wait is pending no longer holds a
 * producers.max slot. */
START_TEST(closed_client_gives_back_its_connection_slot)
{
    struct bb_daemon *d =
        bb_startq("{'producers':{'max':2},"
                  "'queues':{'default':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *a = bb_connect(d), *b, *c;
    json_int_t job =
        bb_put_job(a, bb_jsonq("{'args':{'seconds':60}}"), BB_TIMEOUT_MS);

    bb_send_call(a, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)job));
    bb_send_call(a, "join", NULL);
    b = bb_connect(d);
    bb_await_connections(b, 2, BB_TIMEOUT_MS);
    bb_close(a);
    bb_await_connections(b, 1, BB_TIMEOUT_MS);
    c = bb_connect(d);
    json_decref(bb_result(c, "ping", NULL));
    bb_await_connections(c, 2, BB_TIMEOUT_MS);
    bb_close(b);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* One that only shuts its sending side down still gets its replies (as
 * `nc -N` does). */
START_TEST(half_closed_client_still_gets_its_replies)
{
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r;

    bb_send_line(c, "{\"id\":1,\"method\":\"put\",\"params\":{\"args\":"
                    "{\"a\":1},\"wait\":true}}");
    shutdown(bb_fd(c), SHUT_WR);
    r = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(r, "result"), "state")),
                     "done");
    json_decref(r);
    ck_assert(bb_wait_closed(c, BB_TIMEOUT_MS));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Reads what the daemon sends until it closes: true for a clean close
 * (EOF), false for a reset. *text gets the first line. */
static bool
read_until_closed(int fd, char *text, size_t cap)
{
    size_t n = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    for (;;) {
        ssize_t k;

        ck_assert_msg(poll(&pfd, 1, BB_TIMEOUT_MS) == 1,
                      "the daemon neither wrote nor closed");
        k = recv(fd, text + n, cap - 1 - n, 0);
        if (k == 0)
            break;
        if (k < 0)
            return false;
        n += (size_t)k;
        ck_assert_uint_lt(n, cap - 1);
    }
    text[n] = '\0';
    return true;
}

/* Refused with -32011, a client that already sent requests still reads
 * the refusal and then a clean close, not a reset. */
START_TEST(refused_client_reads_its_error_then_a_clean_close)
{
    struct bb_daemon *d = bb_startq("{'producers':{'max':1},"
                                    "'queues':{'default':{'kind':'echo'}}}");
    struct bb_conn *a = bb_connect(d);
    char junk[32768], text[4096];

    json_decref(bb_result(a, "ping", NULL));
    memset(junk, ' ', sizeof junk);
    for (int i = 0; i < 20; i++) {
        int fd = bb_dial(d);

        ck_assert_int_ge(fd, 0);
        /* requests on their way while the daemon refuses */
        ck_assert_int_eq(send(fd, junk, sizeof junk, MSG_NOSIGNAL),
                         (ssize_t)sizeof junk);
        ck_assert_msg(read_until_closed(fd, text, sizeof text),
                      "round %d: reset after %s", i, text);
        ck_assert_msg(strstr(text, "-32011") != NULL, "round %d: got %s", i,
                      text);
        close(fd);
    }
    bb_close(a);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The same for a line over producers.max_request_bytes. */
START_TEST(oversized_line_is_answered_then_closed_cleanly)
{
    struct bb_daemon *d = bb_startq("{'producers':{'max_request_bytes':4096},"
                                    "'queues':{'default':{'kind':'echo'}}}");
    char big[65536], text[4096];

    memset(big, 'x', sizeof big);
    for (int i = 0; i < 20; i++) {
        int fd = bb_dial(d);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(send(fd, big, sizeof big, MSG_NOSIGNAL),
                         (ssize_t)sizeof big);
        ck_assert_msg(read_until_closed(fd, text, sizeof text),
                      "round %d: reset after %s", i, text);
        ck_assert_msg(strstr(text, "-32600") != NULL, "round %d: got %s", i,
                      text);
        close(fd);
    }
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- bounded memory ---- */

/* A wait naming one job 16,000 times: it is waited on once, the reply
 * has a record per position, and writing it neither takes the daemon's
 * memory nor stalls it for others while the client does not read. */
START_TEST(wait_with_repeated_ids_stays_bounded_and_others_are_served)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d), *other;
    size_t big = 60000, n = 16000;
    char *line = malloc(big + 256), *p;
    json_int_t job;
    long before, after;
    int64_t t0;

    /* a job with a 60 KB record */
    p = line + sprintf(line, "{\"id\":\"big\",\"method\":\"put\",\"params\":"
                             "{\"args\":{\"s\":\"");
    memset(p, 'a', big);
    strcpy(p + big, "\"},\"wait\":true}}");
    bb_send_line(c, line);
    json_decref(bb_recv(c, BB_TIMEOUT_MS));
    job = 1;
    free(line);
    line = malloc(n * 4 + 128);
    p = line + sprintf(line, "{\"id\":\"w\",\"method\":\"wait\",\"params\":"
                             "{\"jobs\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%lld", i ? "," : "", (long long)job);
    strcpy(p, "]}}");
    before = bb_rss_kb(d);
    bb_send_line(c, line);
    free(line);
    /* the reply is nearly 1 GB; c reads none of it */
    other = bb_connect(d);
    t0 = bb_now_ms();
    for (int i = 0; i < 20; i++)
        json_decref(bb_result(other, "ping", NULL));
    ck_assert_int_lt(bb_now_ms() - t0, 5000);
    after = bb_rss_kb(d);
    if (bb_rss_is_meaningful())
        ck_assert_msg(after - before < 64 * 1024,
                      "RSS grew from %ld kB to %ld kB", before, after);
    bb_close(c);
    bb_await_connections(other, 1, BB_TIMEOUT_MS);
    bb_close(other);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_takes_at_most_100000_distinct_ids)
{
    struct bb_daemon *d = bb_startq(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char *line = malloc(100001 * 8 + 128), *p;
    json_t *r;
    const char *msg;

    p = line + sprintf(line, "{\"id\":\"w\",\"method\":\"wait\",\"params\":"
                             "{\"jobs\":[");
    for (int i = 1; i <= 100001; i++)
        p += sprintf(p, "%s%d", i > 1 ? "," : "", i);
    strcpy(p, "]}}");
    bb_send_line(c, line);
    free(line);
    r = bb_recv(c, BB_TIMEOUT_MS);
    ck_assert_int_eq(json_integer_value(
                         json_object_get(json_object_get(r, "error"), "code")),
                     INVALID_PARAMS);
    msg = json_string_value(
        json_object_get(json_object_get(r, "error"), "message"));
    ck_assert_msg(strstr(msg, "params.jobs") != NULL, "%s", msg);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A stream waiter that does not read: job.done notifications wait as
 * the records they are, not as text buffered without bound. */
START_TEST(stream_waiter_that_does_not_read_stays_bounded)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo','consumers':0,'maxsize':0}}}");
    struct bb_conn *c = bb_connect(d), *ctl = bb_connect(d);
    size_t big = 50000, jobs = 2000;
    char *line = malloc(big + 256), *p, *ids = malloc(jobs * 8 + 128), *q;
    long before;

    p = line + sprintf(line, "{\"method\":\"put\",\"params\":{\"args\":"
                             "{\"s\":\"");
    memset(p, 'b', big);
    strcpy(p + big, "\"}}}");
    q = ids + sprintf(ids, "{\"id\":\"w\",\"method\":\"wait\",\"params\":"
                           "{\"mode\":\"stream\",\"jobs\":[");
    for (size_t i = 1; i <= jobs; i++) {
        bb_send_line(ctl, line);
        q += sprintf(q, "%s%zu", i > 1 ? "," : "", i);
    }
    strcpy(q, "]}}");
    ck_assert_int_eq(bb_stat_int(ctl, "default", "put"), (json_int_t)jobs);
    bb_send_line(c, ids);
    json_decref(bb_result(ctl, "ping", NULL));
    before = bb_rss_kb(d);
    /* 2000 records of 50 KB: 100 MB of notifications, never read */
    json_decref(
        bb_result(ctl, "scale", bb_jsonq("{'queue':'default','consumers':4}")));
    json_decref(
        bb_result_within(ctl, "join", bb_jsonq("{'timeout':60}"), 60000));
    /* The waiter's futures hold the 2000 records whatever the client
     * does, and the broker keeps them: each holds its args and its result
     * (echo: the args again), 100 kB, since records keep args (issue 13).
     * Their text must not be buffered besides (another 100 MB or more). */
    if (bb_rss_is_meaningful())
        ck_assert_msg(bb_rss_kb(d) - before <
                          (long)(3 * jobs * big / 1024) + 40 * 1024,
                      "RSS grew from %ld kB to %ld kB", before, bb_rss_kb(d));
    free(line);
    free(ids);
    bb_close(c);
    bb_close(ctl);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A batch whose client goes while one of its requests waits: nothing
 * leaks (the ASan build's daemon would not exit 0). */
START_TEST(batch_of_a_client_that_goes_is_freed)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo','consumers':0,'maxsize':1},"
        "'s':{'kind':'sleep','consumers':1}}}");
    struct bb_conn *c, *w = bb_connect(d);

    for (int i = 0; i < 10; i++) {
        c = bb_connect(d);
        bb_send_line(c,
                     "[{\"id\":1,\"method\":\"ping\"},"
                     "{\"id\":2,\"method\":\"put\",\"params\":{\"queue\":\"s\","
                     "\"args\":{\"seconds\":30},\"wait\":true}},"
                     "{\"id\":3,\"method\":\"join\"},"
                     "{\"id\":4,\"method\":\"wait\",\"params\":{\"jobs\":[1]}},"
                     "{\"id\":5,\"method\":\"put\",\"params\":{\"args\":{}}},"
                     "{\"id\":6,\"method\":\"put\",\"params\":{\"args\":{}}}]");
        bb_await_connections(w, 2, BB_TIMEOUT_MS);
        bb_close(c);
        bb_await_connections(w, 1, BB_TIMEOUT_MS);
    }
    json_decref(bb_result(w, "ping", NULL));
    bb_close(w);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_conformance_suite(void)
{
    Suite *s = suite_create("bb_conformance");
    TCase *tc = tcase_create("exact");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ids_come_back_byte_for_byte);
    tcase_add_test(tc, echo_returns_every_value_intact);
    tcase_add_test(tc, reals_in_records_read_back_exactly);
    tcase_add_test(tc, byte_order_mark_before_the_first_request_is_ignored);
    tcase_add_test(tc, unknown_method_is_32601_whatever_its_params);
    tcase_add_test(tc, pause_resume_and_scale_require_a_queue);
    tcase_add_test(tc, stream_wait_as_a_notification_sends_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("clients");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, closed_client_gives_back_its_connection_slot);
    tcase_add_test(tc, half_closed_client_still_gets_its_replies);
    tcase_add_test(tc, refused_client_reads_its_error_then_a_clean_close);
    tcase_add_test(tc, oversized_line_is_answered_then_closed_cleanly);
    tcase_add_test(tc, batch_of_a_client_that_goes_is_freed);
    suite_add_tcase(s, tc);

    tc = tcase_create("bounded");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc,
                   wait_with_repeated_ids_stays_bounded_and_others_are_served);
    tcase_add_test(tc, wait_takes_at_most_100000_distinct_ids);
    tcase_add_test(tc, stream_waiter_that_does_not_read_stays_bounded);
    suite_add_tcase(s, tc);
    return s;
}
