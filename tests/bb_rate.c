/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_rate.c: per-queue rate limits (spec section 11, "rate"), black
 * box: consumers start burst jobs at once then per_second on average; a
 * remote queue's get leases at most the tokens there are, and a waiting
 * get is answered when tokens come; stats "throttled" and its metric;
 * SIGHUP changes and removes a limit live; pause and a graceful stop
 * while takers wait for tokens. Times are measured: lower bounds firm,
 * upper bounds generous.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define POLL_MS 10000 /* deadline for what the daemon does by itself */

static void
put_n(struct bb_conn *c, const char *queue, int n)
{
    for (int i = 0; i < n; i++)
        bb_put_job(c, bb_jsonq("{'queue':'%s','args':{'i':%d}}", queue, i),
                   POLL_MS);
}

/* stats.queues.<queue> (new ref). */
static json_t *
queue_stats(struct bb_conn *c, const char *queue)
{
    json_t *r = bb_result(c, "stats", bb_jsonq("{'queue':'%s'}", queue));
    char path[128];
    json_t *q;

    snprintf(path, sizeof path, "queues.%s", queue);
    q = json_incref(bb_at(r, path));
    json_decref(r);
    return q;
}

static double
throttled_s(struct bb_conn *c, const char *queue)
{
    json_t *q = queue_stats(c, queue);
    double v = bb_num_at(q, "throttled");

    json_decref(q);
    return v;
}

/* The wall time a job started, from its record. */
static double
started_s(struct bb_conn *c, json_int_t id)
{
    json_t *r = bb_job_status(c, id);
    double v = bb_num_at(r, "started");

    json_decref(r);
    return v;
}

/* Asserts that stat name of queue stays at want for ms (nothing runs). */
static void
assert_stat_stays(struct bb_conn *c, const char *queue, const char *name,
                  json_int_t want, int ms)
{
    int64_t end = bb_now_ms() + ms;

    while (bb_now_ms() < end) {
        json_int_t v = bb_stat_int(c, queue, name);

        ck_assert_msg(v == want, "%s.%s went to %lld while held at %lld", queue,
                      name, (long long)v, (long long)want);
        usleep(20000); /* a sampling interval, not a synchronisation */
    }
}

START_TEST(consumers_start_burst_at_once_then_per_second)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'e':{'kind':'echo','consumers':4,"
                  "'rate':{'per_second':20,'burst':5}}}}");
    struct bb_conn *c = bb_connect(d);
    int64_t t0 = bb_now_ms(), elapsed;
    double first, fifth, last;
    json_t *q;

    put_n(c, "e", 45);
    bb_await_stat(c, "e", "done", 45, POLL_MS);
    elapsed = bb_now_ms() - t0;
    first = started_s(c, 1);
    fifth = started_s(c, 5);
    last = started_s(c, 45);
    /* 5 at once, then 40 more at 20 a second: 2 s */
    ck_assert_msg(fifth - first < 0.15, "the first 5 took %.3f s",
                  fifth - first);
    ck_assert_msg(last - first >= 1.9, "45 jobs started within %.3f s",
                  last - first);
    ck_assert_msg(elapsed < 10000, "45 jobs took %lld ms", (long long)elapsed);
    q = queue_stats(c, "e");
    ck_assert_double_eq(bb_num_at(q, "rate.per_second"), 20);
    ck_assert_int_eq(bb_int_at(q, "rate.burst"), 5);
    ck_assert_msg(bb_num_at(q, "throttled") > 0.5, "throttled %g",
                  bb_num_at(q, "throttled"));
    json_decref(q);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_get_leases_at_most_the_tokens_and_waits_for_more)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'w':{'kind':'remote','timeout':30,"
                  "'rate':{'per_second':4,'burst':3}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *r;
    int64_t t0;
    int leased;

    put_n(c, "w", 10);
    r = bb_result(c, "get", bb_jsonq("{'queue':'w','max':50,'wait':0}"));
    ck_assert_msg(json_array_size(r) == 3, "get: %s", bb_dump(r));
    json_decref(r);
    r = bb_result(c, "get", bb_jsonq("{'queue':'w','max':50,'wait':0}"));
    ck_assert_msg(json_array_size(r) <= 1, "get: %s", bb_dump(r));
    leased = 3 + (int)json_array_size(r);
    json_decref(r);
    /* Waiting gets are answered as tokens come: about 4 a second. */
    t0 = bb_now_ms();
    for (int i = 0; i < 4; i++) {
        r = bb_result_within(
            c, "get", bb_jsonq("{'queue':'w','max':50,'wait':5}"), POLL_MS);
        ck_assert_msg(json_array_size(r) == 1, "get: %s", bb_dump(r));
        json_decref(r);
    }
    ck_assert_msg(bb_now_ms() - t0 >= 700, "4 paced gets took %lld ms",
                  (long long)(bb_now_ms() - t0));
    ck_assert_msg(bb_now_ms() - t0 < 5000, "4 paced gets took %lld ms",
                  (long long)(bb_now_ms() - t0));
    ck_assert_int_eq(bb_stat_int(c, "w", "running"), leased + 4);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* GET /metrics from the metrics listener: the body (the caller's). */
static char *
metrics_text(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    int64_t end = bb_now_ms() + POLL_MS;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(fd >= 0 && buf != NULL);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0,
                  "connect to metrics: %s", strerror(errno));
    ck_assert(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        ck_assert_msg(bb_now_ms() < end, "/metrics did not end in time");
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (len + 4096 > cap)
            ck_assert((buf = realloc(buf, cap *= 2)) != NULL);
        if ((n = read(fd, buf + len, cap - len - 1)) <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

START_TEST(throttled_time_grows_while_held_and_is_exported)
{
    struct bb_daemon *d =
        bb_startq("{'metrics':'127.0.0.1:0','queues':{'e':{'kind':'echo',"
                  "'consumers':1,'rate':{'per_second':2,'burst':1}},"
                  "'f':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    int port = bb_metrics_port(d);
    int64_t end;
    double a, b;
    char *text, *line;
    json_t *q;

    put_n(c, "e", 6);
    end = bb_now_ms() + POLL_MS;
    while ((a = throttled_s(c, "e")) < 0.3)
        ck_assert_msg(bb_now_ms() < end, "throttled stays at %g", a);
    end = bb_now_ms() + POLL_MS;
    while ((b = throttled_s(c, "e")) <= a)
        ck_assert_msg(bb_now_ms() < end, "throttled stays at %g", b);
    /* a queue without rate: never throttled, no "rate" */
    q = queue_stats(c, "f");
    ck_assert_double_eq(bb_num_at(q, "throttled"), 0);
    ck_assert_ptr_null(json_object_get(q, "rate"));
    json_decref(q);
    text = metrics_text(port);
    line = strstr(text, "asyncq_queue_throttled_seconds_total{queue=\"e\"} ");
    ck_assert_msg(line != NULL, "no throttled metric for e in %s", text);
    ck_assert_msg(strtod(line + strlen("asyncq_queue_throttled_seconds_total"
                                       "{queue=\"e\"} "),
                         NULL) > 0.2,
                  "%.80s", line);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE asyncq_queue_throttled_seconds_"
                                       "total counter"));
    free(text);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(sighup_changes_and_removes_a_rate_live)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'e':{'kind':'echo','consumers':2,"
                  "'rate':{'per_second':0.5,'burst':1}}}}");
    struct bb_conn *c = bb_connect(d);
    int64_t t0;
    json_t *q;

    put_n(c, "e", 20);
    bb_await_stat(c, "e", "done", 1, POLL_MS);
    /* 0.5 a second would take 38 s: a faster rate runs them in ~1 s */
    bb_write_configq(d, "{'queues':{'e':{'kind':'echo','consumers':2,"
                        "'rate':{'per_second':20,'burst':2}}}}");
    t0 = bb_now_ms();
    bb_signal(d, SIGHUP);
    bb_await_stat(c, "e", "done", 20, POLL_MS);
    ck_assert_msg(bb_now_ms() - t0 < 8000, "took %lld ms",
                  (long long)(bb_now_ms() - t0));
    q = queue_stats(c, "e");
    ck_assert_double_eq(bb_num_at(q, "rate.per_second"), 20);
    ck_assert_int_eq(bb_int_at(q, "rate.burst"), 2);
    json_decref(q);

    /* back to slow, then null: the held jobs all run at once */
    bb_write_configq(d, "{'queues':{'e':{'kind':'echo','consumers':2,"
                        "'rate':{'per_second':0.1,'burst':1}}}}");
    bb_signal(d, SIGHUP);
    ck_assert(bb_log_wait(d, "reload:", POLL_MS));
    {
        int64_t end = bb_now_ms() + POLL_MS;
        json_t *r;

        /* the reload is applied once stats shows the new rate */
        for (;;) {
            r = queue_stats(c, "e");
            if (bb_num_at(r, "rate.per_second") == 0.1)
                break;
            json_decref(r);
            ck_assert_msg(bb_now_ms() < end, "the reload did not apply");
            usleep(10000);
        }
        json_decref(r);
    }
    put_n(c, "e", 10);
    bb_await_stat(c, "e", "done", 21, POLL_MS);
    assert_stat_stays(c, "e", "done", 21, 500);
    bb_write_configq(d, "{'queues':{'e':{'kind':'echo','consumers':2,"
                        "'rate':null}}}");
    t0 = bb_now_ms();
    bb_signal(d, SIGHUP);
    bb_await_stat(c, "e", "done", 30, POLL_MS);
    ck_assert_msg(bb_now_ms() - t0 < 5000, "took %lld ms",
                  (long long)(bb_now_ms() - t0));
    q = queue_stats(c, "e");
    ck_assert_ptr_null(json_object_get(q, "rate"));
    ck_assert_msg(bb_num_at(q, "throttled") > 0, "throttled %g",
                  bb_num_at(q, "throttled"));
    json_decref(q);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(pause_holds_throttled_consumers_and_resume_goes_on)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'e':{'kind':'echo','consumers':3,"
                  "'rate':{'per_second':4,'burst':1}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *r;

    put_n(c, "e", 8);
    bb_await_stat(c, "e", "done", 2, POLL_MS);
    r = bb_result(c, "pause", bb_jsonq("{'queue':'e'}"));
    json_decref(r);
    {
        json_int_t done = bb_stat_int(c, "e", "done");

        /* tokens come every 250 ms: none is spent while paused */
        assert_stat_stays(c, "e", "done", done, 800);
    }
    r = bb_result(c, "resume", bb_jsonq("{'queue':'e'}"));
    json_decref(r);
    bb_await_stat(c, "e", "done", 8, POLL_MS);
    /* scale while throttled: down to 0 and back up still runs jobs */
    put_n(c, "e", 4);
    r = bb_result(c, "scale", bb_jsonq("{'queue':'e','consumers':0}"));
    json_decref(r);
    r = bb_result(c, "scale", bb_jsonq("{'queue':'e','consumers':5}"));
    json_decref(r);
    bb_await_stat(c, "e", "done", 12, POLL_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_graceful_stop_while_throttled_ends_promptly)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'e':{'kind':'echo','consumers':4,"
        "'rate':{'per_second':0.05,'burst':1}},"
        "'w':{'kind':'remote','rate':{'per_second':0.05,'burst':1}}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_conn *w = bb_connect(d);
    json_int_t g;
    json_t *r;
    int64_t t0;

    put_n(c, "e", 5);
    put_n(c, "w", 3);
    bb_await_stat(c, "e", "done", 1, POLL_MS);
    r = bb_result(c, "get", bb_jsonq("{'queue':'w','wait':0}"));
    ck_assert_int_eq(json_array_size(r), 1);
    json_decref(r);
    g = bb_send_call(w, "get", bb_jsonq("{'queue':'w','wait':60}"));
    bb_await_stat(c, "w", "workers", 2, POLL_MS);
    t0 = bb_now_ms();
    bb_signal(d, SIGTERM);
    r = bb_wait_reply(w, g, POLL_MS);
    ck_assert_msg(r != NULL, "the waiting get was not answered at the stop");
    ck_assert_msg(json_array_size(json_object_get(r, "result")) == 0, "%s",
                  bb_dump(r));
    json_decref(r);
    bb_close(w);
    bb_close(c);
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 0);
    ck_assert_msg(bb_now_ms() - t0 < 5000, "the stop took %lld ms",
                  (long long)(bb_now_ms() - t0));
    bb_free(d);
}
END_TEST

Suite *
bb_rate_suite(void)
{
    Suite *s = suite_create("bb_rate");
    TCase *tc = tcase_create("rate");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, consumers_start_burst_at_once_then_per_second);
    tcase_add_test(tc, a_get_leases_at_most_the_tokens_and_waits_for_more);
    tcase_add_test(tc, throttled_time_grows_while_held_and_is_exported);
    tcase_add_test(tc, sighup_changes_and_removes_a_rate_live);
    tcase_add_test(tc, pause_holds_throttled_consumers_and_resume_goes_on);
    tcase_add_test(tc, a_graceful_stop_while_throttled_ends_promptly);
    suite_add_tcase(s, tc);
    return s;
}
