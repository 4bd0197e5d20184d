/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_http.c: the http handler against a real asyncqd and the test
 * server (tests/httpd.c): results, methods, headers and bodies, status
 * failures and expect, retries, timeout and cancel, connection errors
 * (refused, dns, reset, tls), capture and max_response_bytes, redirects,
 * the per-host connection cap and keep-alive, https with and without a
 * trusted CA, the checks made at put, and where jobs may connect
 * (http.allow / http.deny, link-local, the daemon's own listeners).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"
#include "httpd.h"

#define URL_MAX 256

/* An http queue "default" with consumers and retries (backoff 0), plus
 * http_extra: more fields of the queue, in ' quotes (",'http':{...}"). */
static struct bb_daemon *
start_http(int consumers, int retries, const char *http_extra)
{
    /* The daemon must not trust a CA from the environment by accident. */
    unsetenv("SSL_CERT_FILE");
    return bb_startq("{'queues':{'default':{'kind':'http','consumers':%d,"
                     "'retries':%d,'backoff':{'initial':0,'factor':1,"
                     "'max':0}%s}}}",
                     consumers, retries, http_extra);
}

#ifdef AQ_HAVE_TLS
/* start_http with SSL_CERT_FILE=ca_file in the daemon's environment. */
static struct bb_daemon *
start_http_trusting(const char *ca_file, const char *http_extra)
{
    struct bb_daemon *d;

    ck_assert_ptr_nonnull(ca_file);
    setenv("SSL_CERT_FILE", ca_file, 1);
    d = bb_startq("{'queues':{'default':{'kind':'http','consumers':2,"
                  "'retries':0%s}}}",
                  http_extra);
    unsetenv("SSL_CERT_FILE");
    return d;
}
#endif

/* s's URL for path, in buf (URL_MAX bytes); returns buf. */
static char *
url_of(char *buf, struct httpd *s, const char *path)
{
    snprintf(buf, URL_MAX, "%s://127.0.0.1:%d%s",
             httpd_ca_file(s) != NULL ? "https" : "http", httpd_port(s), path);
    return buf;
}

/* Puts an http job with args (taken) and wait, and returns its finished
 * record; fails the test unless it finishes within timeout_ms. */
static json_t *
run_within(struct bb_conn *c, json_t *args, int timeout_ms)
{
    json_t *params = json_pack("{s:o,s:b}", "args", args, "wait", 1);

    return bb_result_within(c, "put", params, timeout_ms);
}

static json_t *
run(struct bb_conn *c, json_t *args)
{
    return run_within(c, args, BB_TIMEOUT_MS);
}

/* run() of a GET of url. */
static json_t *
get(struct bb_conn *c, const char *url)
{
    return run(c, json_pack("{s:s}", "url", url));
}

static void
assert_failed_with(const json_t *rec, const char *code)
{
    ck_assert_msg(strcmp(bb_str_at(rec, "state"), "failed") == 0,
                  "expected a failed job (%s): %s", code, bb_dump(rec));
    ck_assert_msg(strcmp(bb_str_at(rec, "error.code"), code) == 0,
                  "expected error %s: %s", code, bb_dump(rec));
    ck_assert(strlen(bb_str_at(rec, "error.message")) > 0);
}

static void
assert_done(const json_t *rec)
{
    ck_assert_msg(strcmp(bb_str_at(rec, "state"), "done") == 0,
                  "expected a done job: %s", bb_dump(rec));
}

/* A failure before any response: the result is null (or absent). */
static void
assert_no_result(const json_t *rec)
{
    json_t *r = bb_at(rec, "result");

    ck_assert_msg(r == NULL || json_is_null(r),
                  "a result without a response: %s", bb_dump(rec));
}

/* A port on 127.0.0.1 that was just bound and closed: nothing listens. */
static int
closed_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static bool
server_has_requests(void *arg)
{
    return httpd_requests(arg) > 0;
}

static bool
server_has_no_connection(void *arg)
{
    return httpd_open(arg) == 0;
}

/* ---- results ---- */

START_TEST(http_get_returns_status_body_headers_duration_and_url)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/ok"));

    assert_done(rec);
    ck_assert_str_eq(bb_str_at(rec, "kind"), "http");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "hello");
    /* The server's spelling of the name. */
    ck_assert_str_eq(bb_str_at(rec, "result.headers.X-Test"), "yes");
    ck_assert_str_eq(bb_str_at(rec, "result.headers.Content-Type"),
                     "text/plain");
    ck_assert(json_is_false(bb_at(rec, "result.truncated")));
    ck_assert_msg(bb_num_at(rec, "result.duration") > 0, "duration: %s",
                  bb_dump(rec));
    ck_assert_str_eq(bb_str_at(rec, "result.url"), url);
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 0);
    ck_assert_msg(bb_at(rec, "error") == NULL ||
                      json_is_null(bb_at(rec, "error")),
                  "error on a done job: %s", bb_dump(rec));
    ck_assert_int_eq(httpd_requests(s), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_post_headers_and_body_reach_the_server)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec, *echo;
    json_error_t jerr;

    rec = run(c, json_pack("{s:s,s:s,s:{s:s,s:s},s:s}", "url",
                           url_of(url, s, "/echo?x"), "method", "POST",
                           "headers", "X-One", "1", "Content-Type",
                           "text/plain", "body", "payload \xc3\xbc"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.headers.Content-Type"),
                     "application/json");
    echo = json_loads(bb_str_at(rec, "result.body"), 0, &jerr);
    ck_assert_msg(echo != NULL, "echo body is not JSON: %s", bb_dump(rec));
    ck_assert_str_eq(bb_str_at(echo, "method"), "POST");
    ck_assert_str_eq(bb_str_at(echo, "uri"), "/echo?x");
    ck_assert_str_eq(bb_str_at(echo, "headers.X-One"), "1");
    ck_assert_str_eq(bb_str_at(echo, "headers.Content-Type"), "text/plain");
    ck_assert_str_eq(bb_str_at(echo, "body"), "payload \xc3\xbc");
    json_decref(echo);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_every_method_reaches_the_server_as_given)
{
    static const char *const methods[] = {"GET", "PUT", "DELETE", "PATCH",
                                          "OPTIONS"};
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec, *echo;

    url_of(url, s, "/echo");
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        rec = run(c, json_pack("{s:s,s:s,s:s}", "url", url, "method",
                               methods[i], "body", "b"));
        assert_done(rec);
        echo = json_loads(bb_str_at(rec, "result.body"), 0, NULL);
        ck_assert_msg(echo != NULL, "%s: %s", methods[i], bb_dump(rec));
        ck_assert_str_eq(bb_str_at(echo, "method"), methods[i]);
        json_decref(echo);
        json_decref(rec);
    }
    /* HEAD: the status and headers, no body. */
    rec = run(c, json_pack("{s:s,s:s}", "url", url_of(url, s, "/ok"), "method",
                           "HEAD"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "");
    ck_assert_str_eq(bb_str_at(rec, "result.headers.X-Test"), "yes");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- status, expect, retries ---- */

START_TEST(http_404_fails_with_status_error_and_is_not_retried)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/status/404"));
    const char *msg;

    assert_failed_with(rec, "status");
    msg = bb_str_at(rec, "error.message");
    ck_assert_msg(strstr(msg, "404") != NULL && strstr(msg, url) != NULL,
                  "the message names neither the status nor the URL: %s", msg);
    /* The response is kept for a status failure. */
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 404);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "status 404");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_int_eq(httpd_requests(s), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_flaky_server_with_two_retries_is_done_on_the_third_attempt)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 2, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/flaky?key=a&fail=2"));

    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 3);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "ok");
    ck_assert_int_eq(httpd_requests(s), 3);
    ck_assert_int_eq(bb_stat_int(c, "default", "retried"), 2);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- Retry-After ---- */

/* The GET of path with one retry (the backoff is 0): the finished record,
 * and in *elapsed_ms how long it took. */
static json_t *
get_timed(struct bb_conn *c, struct httpd *s, const char *path,
          int64_t *elapsed_ms)
{
    char url[URL_MAX];
    int64_t t0 = bb_now_ms();
    json_t *rec =
        run_within(c, json_pack("{s:s}", "url", url_of(url, s, path)), 20000);

    *elapsed_ms = bb_now_ms() - t0;
    return rec;
}

START_TEST(http_429_with_retry_after_seconds_retries_then_not_at_backoff)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 1, "");
    struct bb_conn *c = bb_connect(d);
    int64_t ms;
    json_t *rec =
        get_timed(c, s, "/flaky?key=a&fail=1&status=429&retry_after=2", &ms);

    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    /* the backoff is 0: only Retry-After made it wait */
    ck_assert_msg(ms >= 1900, "retried after %lld ms", (long long)ms);
    ck_assert_msg(ms < 8000, "retried after %lld ms", (long long)ms);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_503_with_retry_after_date_retries_at_that_date)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 1, "");
    struct bb_conn *c = bb_connect(d);
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed",
                                     "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char path[160], date[80];
    time_t at = time(NULL) + 3;
    struct tm tm;
    int64_t ms;
    json_t *rec;

    /* IMF-fixdate (names in English whatever the locale), URL-encoded */
    gmtime_r(&at, &tm);
    snprintf(date, sizeof date,
             "%s,%%20%02d%%20%s%%20%d%%20%02d:%02d:%02d%%20GMT", wd[tm.tm_wday],
             tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
    snprintf(path, sizeof path, "/flaky?key=b&fail=1&status=503&retry_after=%s",
             date);
    rec = get_timed(c, s, path, &ms);
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    /* at is 2 to 3 s away when the first answer comes */
    ck_assert_msg(ms >= 1800, "retried after %lld ms", (long long)ms);
    ck_assert_msg(ms < 9000, "retried after %lld ms", (long long)ms);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_retry_after_unreadable_or_past_keeps_the_backoff)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 1, "");
    struct bb_conn *c = bb_connect(d);
    int64_t ms;
    json_t *rec;

    /* unreadable: the backoff (0) */
    rec =
        get_timed(c, s, "/flaky?key=c&fail=1&status=429&retry_after=soon", &ms);
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    ck_assert_msg(ms < 1500, "retried after %lld ms", (long long)ms);
    json_decref(rec);
    /* a date in the past: now */
    rec = get_timed(c, s,
                    "/flaky?key=d&fail=1&status=503&retry_after="
                    "Sun,%2006%20Nov%201994%2008:49:37%20GMT",
                    &ms);
    assert_done(rec);
    ck_assert_msg(ms < 1500, "retried after %lld ms", (long long)ms);
    json_decref(rec);
    /* not on other statuses: a 500 with Retry-After 30 retries at once */
    rec = get_timed(c, s, "/flaky?key=e&fail=1&status=500&retry_after=30", &ms);
    assert_done(rec);
    ck_assert_msg(ms < 1500, "retried after %lld ms", (long long)ms);
    json_decref(rec);
    /* out of retries: failed, the message names the Retry-After */
    rec = get_timed(c, s, "/flaky?key=f&fail=9&status=429&retry_after=1", &ms);
    assert_failed_with(rec, "status");
    ck_assert_msg(strstr(bb_str_at(rec, "error.message"), "Retry-After: 1") !=
                      NULL,
                  "%s", bb_dump(rec));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_500_with_one_retry_fails_after_two_attempts)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 1, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/status/500"));

    assert_failed_with(rec, "status");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 2);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 500);
    ck_assert_int_eq(httpd_requests(s), 2);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_expect_decides_which_statuses_succeed)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    rec = run(c, json_pack("{s:s,s:i}", "url", url_of(url, s, "/status/404"),
                           "expect", 404));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 404);
    json_decref(rec);
    rec = run(c, json_pack("{s:s,s:[i,i]}", "url",
                           url_of(url, s, "/status/503"), "expect", 500, 503));
    assert_done(rec);
    json_decref(rec);
    /* Outside the range, a 200 fails too. */
    rec = run(c, json_pack("{s:s,s:[i,i]}", "url", url_of(url, s, "/ok"),
                           "expect", 500, 599));
    assert_failed_with(rec, "status");
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    json_decref(rec);
    rec = run(
        c, json_pack("{s:s,s:i}", "url", url_of(url, s, "/ok"), "expect", 201));
    assert_failed_with(rec, "status");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_unfollowed_redirect_is_the_response_and_expect_judges_it)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, ",'http':{'max_redirects':0}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    /* max_redirects 0: the 302 is the response; < 400 succeeds. */
    rec = get(c, url_of(url, s, "/redirect/1"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 302);
    ck_assert_str_eq(bb_str_at(rec, "result.headers.Location"), "/redirect/0");
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 0);
    json_decref(rec);
    rec = run(c, json_pack("{s:s,s:[i,i]}", "url", url, "expect", 200, 299));
    assert_failed_with(rec, "status");
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 302);
    json_decref(rec);
    ck_assert_int_eq(httpd_requests(s), 2);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- redirects ---- */

START_TEST(http_redirects_are_followed_relative_and_absolute)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    rec = get(c, url_of(url, s, "/redirect/3"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "done");
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 3);
    ck_assert_str_eq(bb_str_at(rec, "result.url"),
                     url_of(url, s, "/redirect/0"));
    json_decref(rec);
    rec = get(c, url_of(url, s, "/redirect-abs/2"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 2);
    ck_assert_str_eq(bb_str_at(rec, "result.url"),
                     url_of(url, s, "/redirect-abs/0"));
    json_decref(rec);
    /* max_redirects (5) redirects are allowed. */
    rec = get(c, url_of(url, s, "/redirect/5"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 5);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_more_redirects_than_max_redirects_fail)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, ",'http':{'max_redirects':5}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/redirect/9"));

    assert_failed_with(rec, "redirects");
    /* The 6th redirect is not followed. */
    ck_assert_int_eq(httpd_requests(s), 6);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_303_after_a_post_is_followed_with_a_get)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec, *echo;

    rec = run(c, json_pack("{s:s,s:s,s:s}", "url", url_of(url, s, "/see-other"),
                           "method", "POST", "body", "data"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 1);
    echo = json_loads(bb_str_at(rec, "result.body"), 0, NULL);
    ck_assert_msg(echo != NULL, "no echo: %s", bb_dump(rec));
    ck_assert_str_eq(bb_str_at(echo, "method"), "GET");
    ck_assert_str_eq(bb_str_at(echo, "uri"), "/echo");
    ck_assert_str_eq(bb_str_at(echo, "body"), "");
    json_decref(echo);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- bodies ---- */

START_TEST(http_body_beyond_capture_is_cut_and_marked_truncated)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, ",'http':{'capture':1000}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    const char *body;
    json_t *rec;

    rec = get(c, url_of(url, s, "/big?n=200000"));
    assert_done(rec);
    body = bb_str_at(rec, "result.body");
    ck_assert_int_eq(strlen(body), 1000);
    ck_assert_int_eq(strspn(body, "x"), 1000);
    ck_assert(json_is_true(bb_at(rec, "result.truncated")));
    json_decref(rec);
    rec = get(c, url_of(url, s, "/big?n=1000"));
    assert_done(rec);
    ck_assert_int_eq(strlen(bb_str_at(rec, "result.body")), 1000);
    ck_assert(json_is_false(bb_at(rec, "result.truncated")));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_body_beyond_max_response_bytes_fails_with_too_large)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d =
        start_http(2, 0, ",'http':{'capture':100,'max_response_bytes':100000}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    rec = get(c, url_of(url, s, "/big?n=200000"));
    assert_failed_with(rec, "too_large");
    json_decref(rec);
    /* Exactly the limit is not larger. */
    rec = get(c, url_of(url, s, "/big?n=100000"));
    assert_done(rec);
    ck_assert(json_is_true(bb_at(rec, "result.truncated")));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- connection errors ---- */

START_TEST(http_refused_connection_fails_with_connect)
{
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", closed_port());
    rec = get(c, url);
    assert_failed_with(rec, "connect");
    assert_no_result(rec);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_unknown_host_fails_with_dns)
{
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    json_t *rec = run_within(
        c, json_pack("{s:s}", "url", "http://no-such-host.invalid/"), 60000);
    const char *code = bb_str_at(rec, "error.code");

    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    /* connect: a machine without a resolver may say so instead. */
    ck_assert_msg(strcmp(code, "dns") == 0 || strcmp(code, "connect") == 0,
                  "expected dns: %s", bb_dump(rec));
    ck_assert_msg(
        strstr(bb_str_at(rec, "error.message"), "no-such-host.invalid") != NULL,
        "the message does not name the host: %s", bb_dump(rec));
    assert_no_result(rec);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_body_cut_off_by_the_server_fails_with_reset)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/reset"));

    assert_failed_with(rec, "reset");
    json_decref(rec);
    /* The queue goes on with the next job. */
    rec = get(c, url_of(url, s, "/ok"));
    assert_done(rec);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- timeout and cancel ---- */

START_TEST(http_timeout_aborts_the_request_and_fails_the_job)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    int64_t t0 = bb_now_ms(), elapsed;
    json_t *rec = bb_result_within(c, "put",
                                   json_pack("{s:{s:s},s:f,s:b}", "args", "url",
                                             url_of(url, s, "/slow?ms=5000"),
                                             "timeout", 0.3, "wait", 1),
                                   10000);

    elapsed = bb_now_ms() - t0;
    assert_failed_with(rec, "timeout");
    assert_no_result(rec);
    ck_assert_int_ge(elapsed, 300);
    ck_assert_msg(elapsed < 3000, "the timeout took %lld ms",
                  (long long)elapsed);
    /* Aborted: the server sees the connection go, long before 5 s. */
    ck_assert_msg(bb_poll(server_has_no_connection, s, 2000),
                  "the request's connection is still open");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_cancel_aborts_a_running_request)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_int_t id = bb_put_job(
        c,
        json_pack("{s:{s:s}}", "args", "url", url_of(url, s, "/slow?ms=10000")),
        BB_TIMEOUT_MS);
    int64_t t0;
    json_t *r, *st;

    ck_assert_msg(bb_poll(server_has_requests, s, 5000),
                  "the request never reached the server");
    ck_assert_int_eq(httpd_open(s), 1);
    t0 = bb_now_ms();
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", id));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    st = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(st, "state"), "cancelled");
    ck_assert_msg(bb_poll(server_has_no_connection, s, 2000),
                  "the cancelled request's connection is still open");
    ck_assert_msg(bb_now_ms() - t0 < 3000, "cancel took %lld ms",
                  (long long)(bb_now_ms() - t0));
    ck_assert_int_eq(httpd_requests(s), 1);
    json_decref(st);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- connections ---- */

START_TEST(http_sequential_jobs_reuse_one_kept_alive_connection)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(1, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];

    url_of(url, s, "/ok");
    for (int i = 0; i < 5; i++) {
        json_t *rec = get(c, url);

        assert_done(rec);
        json_decref(rec);
    }
    ck_assert_int_eq(httpd_requests(s), 5);
    ck_assert_msg(httpd_accepted(s) == 1, "5 jobs in a row took %d connections",
                  httpd_accepted(s));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

#define NJOBS 20

START_TEST(http_max_per_host_caps_and_reuses_connections)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(8, 0, ",'http':{'max_per_host':2}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_int_t ids[NJOBS];

    url_of(url, s, "/slow?ms=50");
    for (int i = 0; i < NJOBS; i++)
        ids[i] = bb_send_call(
            c, "put",
            json_pack("{s:{s:s},s:b}", "args", "url", url, "wait", 1));
    for (int i = 0; i < NJOBS; i++) {
        json_t *r = bb_wait_reply(c, ids[i], 30000);
        json_t *rec = json_object_get(r, "result");

        ck_assert_msg(r != NULL, "no reply for job %d", i);
        ck_assert_msg(rec != NULL, "put %d failed: %s", i, bb_dump(r));
        assert_done(rec);
        json_decref(r);
    }
    ck_assert_int_eq(httpd_requests(s), NJOBS);
    ck_assert_msg(httpd_max_open(s) <= 2, "%d connections open at once",
                  httpd_max_open(s));
    ck_assert_msg(httpd_max_open(s) == 2,
                  "8 consumers used %d connection(s) of 2", httpd_max_open(s));
    ck_assert_msg(httpd_accepted(s) <= 2,
                  "%d connections for %d jobs: not reused", httpd_accepted(s),
                  NJOBS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

/* ---- https ---- */

#ifdef AQ_HAVE_TLS
START_TEST(https_with_a_trusted_ca_is_done)
{
    struct httpd *s = httpd_start(true);
    struct bb_daemon *d = start_http_trusting(httpd_ca_file(s), "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;

    rec = get(c, url_of(url, s, "/ok"));
    assert_done(rec);
    ck_assert_int_eq(bb_int_at(rec, "result.status"), 200);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "hello");
    ck_assert_str_eq(bb_str_at(rec, "result.url"), url);
    ck_assert(strncmp(url, "https://", 8) == 0);
    json_decref(rec);
    /* An absolute redirect stays on https. */
    rec = get(c, url_of(url, s, "/redirect-abs/1"));
    assert_done(rec);
    ck_assert_str_eq(bb_str_at(rec, "result.url"),
                     url_of(url, s, "/redirect-abs/0"));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(https_with_an_untrusted_ca_fails_with_tls)
{
    struct httpd *trusted = httpd_start(true), *s = httpd_start(true);
    struct bb_daemon *d = start_http_trusting(httpd_ca_file(trusted), "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/ok"));

    assert_failed_with(rec, "tls");
    assert_no_result(rec);
    ck_assert_int_eq(httpd_requests(s), 0);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
    httpd_stop(trusted);
}
END_TEST

START_TEST(https_with_an_untrusted_ca_and_verify_false_is_done)
{
    struct httpd *trusted = httpd_start(true), *s = httpd_start(true);
    struct bb_daemon *d =
        start_http_trusting(httpd_ca_file(trusted), ",'http':{'verify':false}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/ok"));

    assert_done(rec);
    ck_assert_str_eq(bb_str_at(rec, "result.body"), "hello");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
    httpd_stop(trusted);
}
END_TEST

START_TEST(https_to_a_plain_http_port_fails_with_tls_or_protocol)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX];
    json_t *rec;
    const char *code;

    snprintf(url, sizeof url, "https://127.0.0.1:%d/ok", httpd_port(s));
    rec = get(c, url);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    code = bb_str_at(rec, "error.code");
    ck_assert_msg(strcmp(code, "tls") == 0 || strcmp(code, "protocol") == 0,
                  "expected tls or protocol: %s", bb_dump(rec));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST
#else
START_TEST(https_url_is_refused_at_put_without_tls)
{
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_jsonq("{'args':{'url':'https://127.0.0.1:1/ok'}}")),
        INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST
#endif

/* ---- checks at put ---- */

/* A put of args (JSON text in ' quotes) gets -32602 naming field (NULL:
 * any message). */
static void
assert_invalid_args(struct bb_conn *c, const char *args, const char *field)
{
    json_t *r = bb_call(c, "put", bb_jsonq("{'kind':'http','args':%s}", args));
    json_t *err = json_object_get(r, "error");
    const char *msg;

    ck_assert_msg(err != NULL, "args %s accepted: %s", args, bb_dump(r));
    ck_assert_msg(bb_int_at(err, "code") == INVALID_PARAMS, "args %s: %s", args,
                  bb_dump(r));
    msg = bb_str_at(err, "message");
    ck_assert_msg(field == NULL || strstr(msg, field) != NULL,
                  "args %s: the message does not name %s: %s", args, field,
                  msg);
    json_decref(r);
}

START_TEST(http_bad_args_are_refused_at_put)
{
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);

    assert_invalid_args(c, "{}", "params.args.url");
    assert_invalid_args(c, "{'url':7}", "params.args.url");
    assert_invalid_args(c, "{'url':'ftp://127.0.0.1/x'}", "params.args.url");
    assert_invalid_args(c, "{'url':'http://'}", "params.args.url");
    assert_invalid_args(c, "{'url':'http:///path'}", "params.args.url");
    assert_invalid_args(c, "{'url':'http://127.0.0.1:99999/'}",
                        "params.args.url");
    assert_invalid_args(c, "{'url':'http://127.0.0.1:port/'}",
                        "params.args.url");
    assert_invalid_args(c, "{'url':'not a url'}", "params.args.url");
    assert_invalid_args(c, "{'url':'http://h/','method':'FETCH'}",
                        "params.args.method");
    assert_invalid_args(c, "{'url':'http://h/','method':7}",
                        "params.args.method");
    assert_invalid_args(c, "{'url':'http://h/','headers':'X: y'}",
                        "params.args.headers");
    assert_invalid_args(c, "{'url':'http://h/','headers':{'X':1}}",
                        "params.args.headers");
    assert_invalid_args(c, "{'url':'http://h/','headers':{'X\\r\\nY':'v'}}",
                        "params.args.headers");
    assert_invalid_args(c, "{'url':'http://h/','headers':{'X':'a\\r\\nY: b'}}",
                        "params.args.headers");
    assert_invalid_args(c, "{'url':'http://h/','body':7}", "params.args.body");
    assert_invalid_args(c, "{'url':'http://h/','expect':'200'}",
                        "params.args.expect");
    assert_invalid_args(c, "{'url':'http://h/','expect':[200]}",
                        "params.args.expect");
    assert_invalid_args(c, "{'url':'http://h/','expect':[200,'x']}",
                        "params.args.expect");
    assert_invalid_args(c, "{'url':'http://h/','bogus':1}", "bogus");
    assert_invalid_args(c, "'http://h/'", "params.args");
    /* None of them made a job. */
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- where jobs may connect: http.allow / http.deny ---- */

/* start_http(2 consumers, 2 retries) with the metrics listener on
 * metrics_host port 0; *metrics_port is the port it got, from the log. */
static struct bb_daemon *
start_with_metrics(const char *metrics_host, const char *http_extra,
                   int *metrics_port)
{
    struct bb_daemon *d;
    const char *at, *colon;
    char *log;

    unsetenv("SSL_CERT_FILE");
    d = bb_startq("{'metrics':'%s:0','queues':{'default':{'kind':'http',"
                  "'consumers':2,'retries':2,'backoff':{'initial':0,"
                  "'factor':1,'max':0}%s}}}",
                  metrics_host, http_extra);
    ck_assert_msg(bb_log_wait(d, "/metrics", 5000), "no metrics listener");
    log = bb_log(d);
    at = strstr(log, "metrics on http://");
    ck_assert_ptr_nonnull(at);
    colon = strstr(at, "/metrics");
    while (colon > at && *colon != ':')
        colon--;
    *metrics_port = atoi(colon + 1);
    ck_assert_int_gt(*metrics_port, 0);
    free(log);
    return d;
}

/* A finished record refused by the policy: failed with "forbidden" on the
 * first attempt (a refusal is not retried), why in the message, no
 * response. */
static void
assert_forbidden(json_t *rec, const char *why)
{
    assert_failed_with(rec, "forbidden");
    ck_assert_msg(strstr(bb_str_at(rec, "error.message"), why) != NULL,
                  "the message does not say \"%s\": %s", why, bb_dump(rec));
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    assert_no_result(rec);
    json_decref(rec);
}

/* A put of url on queue refused with -32005 naming params.args.url and
 * why. */
static void
assert_put_not_allowed(struct bb_conn *c, const char *queue, const char *url,
                       const char *why)
{
    json_t *r =
        bb_call(c, "put",
                json_pack("{s:s,s:{s:s}}", "queue", queue, "args", "url", url));
    json_t *err = json_object_get(r, "error");
    const char *msg;

    ck_assert_msg(err != NULL, "%s accepted: %s", url, bb_dump(r));
    ck_assert_msg(bb_int_at(err, "code") == NOT_ALLOWED, "%s: %s", url,
                  bb_dump(r));
    msg = bb_str_at(err, "message");
    ck_assert_msg(strstr(msg, "params.args.url") != NULL &&
                      strstr(msg, why) != NULL,
                  "%s: the message names neither the field nor \"%s\": %s", url,
                  why, msg);
    json_decref(r);
}

/* A GET of http://host:port/path is refused as the daemon's own
 * listener. */
static void
assert_own(struct bb_conn *c, const char *host, int port, const char *path)
{
    char url[URL_MAX];

    snprintf(url, sizeof url, "http://%s:%d%s", host, port, path);
    assert_forbidden(get(c, url), "the daemon's own listener");
}

START_TEST(http_to_the_daemons_own_listeners_is_forbidden_and_not_retried)
{
    int mport;
    struct bb_daemon *d = start_with_metrics("127.0.0.1", "", &mport);
    struct bb_conn *c = bb_connect(d);

    assert_own(c, "127.0.0.1", mport, "/metrics");
    assert_own(c, "localhost", mport, "/healthz");
    /* The JSON-RPC listener (a socket handed over as systemd does). */
    assert_own(c, "127.0.0.1", bb_port(d), "/");
    assert_own(c, "0.0.0.0", bb_port(d), "/");
    ck_assert_int_eq(bb_stat_int(c, "default", "retried"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_to_a_wildcard_listener_is_forbidden_on_a_local_address)
{
    int mport;
    struct bb_daemon *d = start_with_metrics("0.0.0.0", "", &mport);
    struct bb_conn *c = bb_connect(d);

    /* 0.0.0.0 takes every local address on its port. */
    assert_own(c, "127.0.0.1", mport, "/metrics");
    assert_own(c, "127.0.0.9", mport, "/metrics");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_link_local_literal_is_refused_at_put)
{
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);

    assert_put_not_allowed(
        c, "default", "http://169.254.169.254/latest/meta-data/", "link-local");
    assert_put_not_allowed(c, "default", "http://[fe80::1]:8080/",
                           "link-local");
    assert_put_not_allowed(c, "default", "http://[::ffff:169.254.169.254]/",
                           "link-local");
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_allow_list_refuses_every_other_target)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'http','consumers':2,'retries':3,"
        "'http':{'allow':['*.example.com','10.0.0.0/8']}},"
        "'names':{'kind':'http','consumers':1,"
        "'http':{'allow':['*.example.com']}}}}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX], local[URL_MAX];

    /* An address literal is judged at put. */
    assert_put_not_allowed(c, "default", url_of(url, s, "/ok"),
                           "not in http.allow");
    /* A name needs its addresses: 10.0.0.0/8 might hold them. */
    snprintf(local, sizeof local, "http://localhost:%d/ok", httpd_port(s));
    assert_forbidden(get(c, local), "localhost (127.0.0.1)");
    /* Unless no address could be allowed. */
    assert_put_not_allowed(c, "names", local, "not in http.allow");
    ck_assert_int_eq(httpd_accepted(s), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_name_resolving_to_a_denied_address_is_forbidden)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d =
        start_http(2, 0, ",'http':{'deny':['10.0.0.0/8','127.0.0.0/8']}");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX], want[URL_MAX];

    snprintf(url, sizeof url, "http://localhost:%d/ok", httpd_port(s));
    snprintf(want, sizeof want,
             "localhost (127.0.0.1) port %d is not allowed (http.deny[1] "
             "\"127.0.0.0/8\")",
             httpd_port(s));
    assert_forbidden(get(c, url), want);
    ck_assert_int_eq(httpd_accepted(s), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_redirect_to_a_denied_target_is_forbidden)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d;
    struct bb_conn *c;
    char path[128], url[URL_MAX];
    int mport;

    d = start_with_metrics("127.0.0.1", "", &mport);
    c = bb_connect(d);
    /* An allowed server sends the job to the daemon's metrics... */
    snprintf(path, sizeof path,
             "/to?url=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fmetrics", mport);
    assert_forbidden(get(c, url_of(url, s, path)), "the daemon's own listener");
    /* ...or to a cloud metadata address. */
    assert_forbidden(
        get(c, url_of(url, s, "/to?url=http%3A%2F%2F169.254.169.254%2F")),
        "link-local");
    ck_assert_int_eq(httpd_requests(s), 2);
    /* Allowed targets still are. */
    snprintf(path, sizeof path, "/to?url=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fok",
             httpd_port(s));
    {
        json_t *rec = get(c, url_of(url, s, path));

        assert_done(rec);
        ck_assert_int_eq(bb_int_at(rec, "result.redirects"), 1);
        json_decref(rec);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

START_TEST(http_reload_applies_allow_and_deny)
{
    struct httpd *s = httpd_start(false);
    struct bb_daemon *d = start_http(2, 0, "");
    struct bb_conn *c = bb_connect(d);
    char url[URL_MAX], local[URL_MAX];
    json_t *rec = get(c, url_of(url, s, "/ok"));

    assert_done(rec);
    json_decref(rec);
    bb_write_configq(d, "{'queues':{'default':{'kind':'http','consumers':2,"
                        "'http':{'deny':['127.0.0.1']}}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "applied", 5000), "no reload in the log");
    assert_put_not_allowed(c, "default", url_of(url, s, "/ok"), "http.deny[0]");
    /* Nor is the connection kept alive from before used. */
    snprintf(local, sizeof local, "http://localhost:%d/ok", httpd_port(s));
    assert_forbidden(get(c, local), "http.deny[0]");
    ck_assert_int_eq(httpd_requests(s), 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    httpd_stop(s);
}
END_TEST

Suite *
bb_http_suite(void)
{
    Suite *s = suite_create("bb_http");
    TCase *run_tc = tcase_create("run");
    TCase *status = tcase_create("status");
    TCase *errors = tcase_create("errors");
    TCase *conns = tcase_create("connections");
    TCase *tls = tcase_create("tls");
    TCase *checks = tcase_create("checks");
    TCase *policy = tcase_create("policy");

    tcase_set_timeout(run_tc, 60);
    tcase_add_test(run_tc,
                   http_get_returns_status_body_headers_duration_and_url);
    tcase_add_test(run_tc, http_post_headers_and_body_reach_the_server);
    tcase_add_test(run_tc, http_every_method_reaches_the_server_as_given);
    tcase_add_test(run_tc, http_redirects_are_followed_relative_and_absolute);
    tcase_add_test(run_tc, http_more_redirects_than_max_redirects_fail);
    tcase_add_test(run_tc, http_303_after_a_post_is_followed_with_a_get);
    tcase_add_test(run_tc,
                   http_body_beyond_capture_is_cut_and_marked_truncated);
    tcase_add_test(run_tc,
                   http_body_beyond_max_response_bytes_fails_with_too_large);
    suite_add_tcase(s, run_tc);

    tcase_set_timeout(status, 60);
    tcase_add_test(status, http_404_fails_with_status_error_and_is_not_retried);
    tcase_add_test(
        status,
        http_flaky_server_with_two_retries_is_done_on_the_third_attempt);
    tcase_add_test(
        status, http_429_with_retry_after_seconds_retries_then_not_at_backoff);
    tcase_add_test(status, http_503_with_retry_after_date_retries_at_that_date);
    tcase_add_test(status,
                   http_retry_after_unreadable_or_past_keeps_the_backoff);
    tcase_add_test(status, http_500_with_one_retry_fails_after_two_attempts);
    tcase_add_test(status, http_expect_decides_which_statuses_succeed);
    tcase_add_test(
        status, http_unfollowed_redirect_is_the_response_and_expect_judges_it);
    suite_add_tcase(s, status);

    tcase_set_timeout(errors, 90);
    tcase_add_test(errors, http_refused_connection_fails_with_connect);
    tcase_add_test(errors, http_unknown_host_fails_with_dns);
    tcase_add_test(errors, http_body_cut_off_by_the_server_fails_with_reset);
    tcase_add_test(errors, http_timeout_aborts_the_request_and_fails_the_job);
    tcase_add_test(errors, http_cancel_aborts_a_running_request);
    suite_add_tcase(s, errors);

    tcase_set_timeout(conns, 90);
    tcase_add_test(conns, http_sequential_jobs_reuse_one_kept_alive_connection);
    tcase_add_test(conns, http_max_per_host_caps_and_reuses_connections);
    suite_add_tcase(s, conns);

    tcase_set_timeout(tls, 60);
#ifdef AQ_HAVE_TLS
    tcase_add_test(tls, https_with_a_trusted_ca_is_done);
    tcase_add_test(tls, https_with_an_untrusted_ca_fails_with_tls);
    tcase_add_test(tls, https_with_an_untrusted_ca_and_verify_false_is_done);
    tcase_add_test(tls, https_to_a_plain_http_port_fails_with_tls_or_protocol);
#else
    tcase_add_test(tls, https_url_is_refused_at_put_without_tls);
#endif
    suite_add_tcase(s, tls);

    tcase_set_timeout(checks, 60);
    tcase_add_test(checks, http_bad_args_are_refused_at_put);
    suite_add_tcase(s, checks);

    tcase_set_timeout(policy, 60);
    tcase_add_test(
        policy, http_to_the_daemons_own_listeners_is_forbidden_and_not_retried);
    tcase_add_test(policy,
                   http_to_a_wildcard_listener_is_forbidden_on_a_local_address);
    tcase_add_test(policy, http_link_local_literal_is_refused_at_put);
    tcase_add_test(policy, http_allow_list_refuses_every_other_target);
    tcase_add_test(policy,
                   http_name_resolving_to_a_denied_address_is_forbidden);
    tcase_add_test(policy, http_redirect_to_a_denied_target_is_forbidden);
    tcase_add_test(policy, http_reload_applies_allow_and_deny);
    suite_add_tcase(s, policy);
    return s;
}
