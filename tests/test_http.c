/* SPDX-License-Identifier: MIT */
/*
 * tests/test_http.c: the client of lib/http.h against tests/httpd (a real
 * HTTP and HTTPS server in a thread of this process). The pool runs on the
 * test's own base, driven by run_until() with deadlines; what the server
 * saw (connections open at once, accepted) is read from its counters.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "error.h"
#include "http.h"
#include "httpd.h"
#include "netmatch.h"
#include "suites.h"
#include "testutil.h"

#define DEADLINE_MS 8000

/* What one call's callback saw (copies), the test's. */
struct res {
    bool done;
    int calls;
    bool in_start; /* the test is inside aq_http_start */
    bool fired_in_start;
    char err_code[32];
    char err_message[512];
    int status;
    char *body; /* NUL-terminated copy */
    size_t body_len;
    bool truncated;
    char url[256];
    int redirects;
    int64_t duration_us;
    json_t *headers; /* copy */
};

static void
res_cb(void *arg, const struct aq_http_response *r)
{
    struct res *x = arg;

    x->calls++;
    x->fired_in_start = x->fired_in_start || x->in_start;
    x->done = true;
    snprintf(x->err_code, sizeof x->err_code, "%s",
             r->err_code != NULL ? r->err_code : "");
    snprintf(x->err_message, sizeof x->err_message, "%s",
             r->err_message != NULL ? r->err_message : "");
    x->status = r->status;
    x->body = malloc(r->body_len + 1);
    memcpy(x->body, r->body != NULL ? r->body : "", r->body_len);
    x->body[r->body_len] = '\0';
    x->body_len = r->body_len;
    x->truncated = r->truncated;
    snprintf(x->url, sizeof x->url, "%s", r->url);
    x->redirects = r->redirects;
    x->duration_us = r->duration_us;
    x->headers = r->headers != NULL ? json_deep_copy(r->headers) : NULL;
}

static void
res_clear(struct res *x)
{
    free(x->body);
    json_decref(x->headers);
    memset(x, 0, sizeof *x);
}

static const struct aq_http_limits default_lim = {
    .capture = 65536,
    .max_response_bytes = 1 << 20,
    .max_per_host = 8,
    .max_redirects = 5,
    .verify = true,
};

static struct aq_http *pool;
static struct httpd *srv;

static void
setup(void)
{
    test_base_setup();
    pool = aq_http_new(test_base);
    srv = httpd_start(false);
}

static void
teardown(void)
{
    aq_http_free(pool);
    test_base_teardown();
    httpd_stop(srv);
}

/* Starts a call of method on url with lim; x collects the outcome. */
static struct aq_http_call *
start(struct res *x, const struct aq_http_limits *lim, const char *method,
      const char *url, const json_t *headers, const char *body)
{
    struct aq_http_request req = {url, method, headers, body,
                                  body != NULL ? strlen(body) : 0};
    struct aq_http_call *c;

    x->in_start = true;
    c = aq_http_start(pool, lim, &req, res_cb, x);
    x->in_start = false;
    ck_assert_ptr_nonnull(c);
    return c;
}

static void
fetch(struct res *x, const struct aq_http_limits *lim, const char *method,
      const char *url, const json_t *headers, const char *body)
{
    start(x, lim, method, url, headers, body);
    ck_assert_msg(run_until(test_base, &x->done, DEADLINE_MS),
                  "%s %s: no answer", method != NULL ? method : "GET", url);
    ck_assert_int_eq(x->calls, 1);
    ck_assert(!x->fired_in_start);
}

static char *
url_of(const char *path)
{
    static char buf[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "http://127.0.0.1:%d%s", httpd_port(srv),
             path);
    return buf[i];
}

START_TEST(get_ok)
{
    struct res x = {0};

    fetch(&x, &default_lim, NULL, url_of("/ok"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body, "hello");
    ck_assert(!x.truncated);
    ck_assert_str_eq(x.url, url_of("/ok"));
    ck_assert_int_eq(x.redirects, 0);
    ck_assert_int_gt(x.duration_us, 0);
    ck_assert_str_eq(json_string_value(json_object_get(x.headers, "X-Test")),
                     "yes");
    res_clear(&x);
}
END_TEST

START_TEST(post_round_trips)
{
    struct res x = {0};
    json_t *hdrs =
        json_pack("{s:s, s:s}", "X-Token", "abc", "Content-Type", "text/plain");
    json_t *echo, *h;

    fetch(&x, &default_lim, "POST", url_of("/echo?q=1"), hdrs, "payload");
    ck_assert_int_eq(x.status, 200);
    echo = json_loads(x.body, 0, NULL);
    ck_assert_ptr_nonnull(echo);
    ck_assert_str_eq(json_string_value(json_object_get(echo, "method")),
                     "POST");
    ck_assert_str_eq(json_string_value(json_object_get(echo, "uri")),
                     "/echo?q=1");
    ck_assert_str_eq(json_string_value(json_object_get(echo, "body")),
                     "payload");
    h = json_object_get(echo, "headers");
    ck_assert_str_eq(json_string_value(json_object_get(h, "X-Token")), "abc");
    ck_assert_ptr_nonnull(json_object_get(h, "Host"));
    ck_assert_int_eq(
        strncmp(json_string_value(json_object_get(h, "User-Agent")), "asyncq/",
                7),
        0);
    ck_assert_str_eq(json_string_value(json_object_get(h, "Content-Length")),
                     "7");
    json_decref(echo);
    json_decref(hdrs);
    res_clear(&x);
}
END_TEST

START_TEST(error_status_is_a_response)
{
    struct res x = {0};

    fetch(&x, &default_lim, NULL, url_of("/status/404"), NULL, NULL);
    ck_assert_str_eq(x.err_code, ""); /* the handler judges statuses */
    ck_assert_int_eq(x.status, 404);
    ck_assert_str_eq(x.body, "status 404");
    res_clear(&x);
}
END_TEST

START_TEST(body_capture_and_limit)
{
    struct aq_http_limits lim = default_lim;
    struct res x = {0};

    lim.capture = 1000;
    fetch(&x, &lim, NULL, url_of("/big?n=200000"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.body_len, 1000);
    ck_assert(x.truncated);
    ck_assert_int_eq(x.body[999], 'x');
    res_clear(&x);

    lim.max_response_bytes = 5000;
    fetch(&x, &lim, NULL, url_of("/big?n=200000"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "too_large");
    ck_assert_ptr_nonnull(strstr(x.err_message, "5000"));
    res_clear(&x);
}
END_TEST

START_TEST(redirects_followed)
{
    struct res x = {0};
    char want[256];

    fetch(&x, &default_lim, NULL, url_of("/redirect/3"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(x.body, "done");
    ck_assert_int_eq(x.redirects, 3);
    snprintf(want, sizeof want, "%s", url_of("/redirect/0"));
    ck_assert_str_eq(x.url, want);
    res_clear(&x);

    fetch(&x, &default_lim, NULL, url_of("/redirect-abs/2"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.redirects, 2);
    res_clear(&x);
}
END_TEST

START_TEST(redirect_limit)
{
    struct aq_http_limits lim = default_lim;
    struct res x = {0};

    fetch(&x, &lim, NULL, url_of("/redirect/9"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "redirects");
    ck_assert_ptr_nonnull(strstr(x.err_message, "5"));
    res_clear(&x);

    lim.max_redirects = 0; /* the 3xx is the response */
    fetch(&x, &lim, NULL, url_of("/redirect/1"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.status, 302);
    ck_assert_int_eq(x.redirects, 0);
    res_clear(&x);
}
END_TEST

START_TEST(see_other_turns_post_into_get)
{
    struct res x = {0};
    json_t *echo;

    fetch(&x, &default_lim, "POST", url_of("/see-other"), NULL, "data");
    ck_assert_str_eq(x.err_code, "");
    echo = json_loads(x.body, 0, NULL);
    ck_assert_ptr_nonnull(echo);
    ck_assert_str_eq(json_string_value(json_object_get(echo, "method")), "GET");
    ck_assert_str_eq(json_string_value(json_object_get(echo, "body")), "");
    json_decref(echo);
    res_clear(&x);
}
END_TEST

START_TEST(refused)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char url[64];
    struct res x = {0};

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* nobody listens there now */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    fetch(&x, &default_lim, NULL, url, NULL, NULL);
    ck_assert_str_eq(x.err_code, "connect");
    ck_assert_msg(strstr(x.err_message, "refused") != NULL, "%s",
                  x.err_message);
    ck_assert_int_eq(x.status, 0);
    res_clear(&x);
}
END_TEST

START_TEST(reset_mid_body)
{
    struct res x = {0};

    fetch(&x, &default_lim, NULL, url_of("/reset"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "reset");
    res_clear(&x);
}
END_TEST

START_TEST(unknown_host)
{
    struct res x = {0};

    fetch(&x, &default_lim, NULL, "http://no-such-host.invalid/", NULL, NULL);
    ck_assert_str_eq(x.err_code, "dns");
    ck_assert_ptr_nonnull(strstr(x.err_message, "no-such-host.invalid"));
    res_clear(&x);
}
END_TEST

START_TEST(host_name_resolves)
{
    struct res x = {0};
    char url[64];

    snprintf(url, sizeof url, "http://localhost:%d/ok", httpd_port(srv));
    fetch(&x, &default_lim, NULL, url, NULL, NULL);
    ck_assert_str_eq(x.err_code, "");
    ck_assert_int_eq(x.status, 200);
    res_clear(&x);
}
END_TEST

START_TEST(bad_urls)
{
    static const char *const bad[] = {"ftp://127.0.0.1/", "http://",
                                      "not a url", "http://u:p@127.0.0.1/",
                                      "http://127.0.0.1:0/"};
    struct aq_error err = {0};
    struct res x = {0};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(aq_http_check_url(bad[i], "params.args.url", &err),
                         -1);
        ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
        ck_assert_msg(strncmp(err.message, "params.args.url: ", 17) == 0, "%s",
                      err.message);
    }
    ck_assert_int_eq(aq_http_check_url(url_of("/x"), "u", &err), 0);
    /* Started anyway: the callback says so, from the loop. */
    fetch(&x, &default_lim, NULL, "ftp://127.0.0.1/", NULL, NULL);
    ck_assert_str_eq(x.err_code, "url");
    res_clear(&x);
}
END_TEST

/* ---- the policy (lib/netmatch.h) ---- */

/* A policy of the NULL-ended lists, with the test server as the daemon's
 * own listener if own_is_srv. The caller's. */
static struct aq_netmatch *
policy_of(const char *const *allow, const char *const *deny, bool own_is_srv)
{
    struct sockaddr_storage own = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&own;
    size_t nallow = 0, ndeny = 0;

    while (allow[nallow] != NULL)
        nallow++;
    while (deny[ndeny] != NULL)
        ndeny++;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons((uint16_t)httpd_port(srv));
    return aq_netmatch_new((char *const *)allow, nallow, (char *const *)deny,
                           ndeny, &own, own_is_srv ? 1 : 0);
}

static const char *const allow_all[] = {"*", NULL};
static const char *const deny_none[] = {NULL};

/* fetch() with lim.policy = m, which it frees; the outcome must be
 * "forbidden" with no connection made to the server. */
static void
fetch_forbidden(struct res *x, struct aq_netmatch *m, const char *url,
                const char *why)
{
    struct aq_http_limits lim = default_lim;

    lim.policy = m;
    fetch(x, &lim, NULL, url, NULL, NULL);
    aq_netmatch_free(m);
    ck_assert_msg(strcmp(x->err_code, "forbidden") == 0, "%s: %s: %s", url,
                  x->err_code, x->err_message);
    ck_assert_msg(strstr(x->err_message, why) != NULL,
                  "the message does not say \"%s\": %s", why, x->err_message);
    ck_assert_int_eq(x->status, 0);
}

START_TEST(policy_refuses_a_literal_without_connecting)
{
    const char *const deny[] = {"10.0.0.0/8", "127.0.0.0/8", NULL};
    struct res x = {0};
    char want[96];

    snprintf(want, sizeof want,
             "127.0.0.1 port %d is not allowed (http.deny[1] "
             "\"127.0.0.0/8\")",
             httpd_port(srv));
    fetch_forbidden(&x, policy_of(allow_all, deny, false), url_of("/ok"), want);
    ck_assert_int_eq(httpd_accepted(srv), 0);
    res_clear(&x);
}
END_TEST

START_TEST(policy_refuses_a_name_by_the_address_it_resolves_to)
{
    const char *const deny[] = {"127.0.0.0/8", "::1", NULL};
    struct res x = {0};
    char url[64];

    snprintf(url, sizeof url, "http://localhost:%d/ok", httpd_port(srv));
    fetch_forbidden(&x, policy_of(allow_all, deny, false), url, "localhost (");
    ck_assert_int_eq(httpd_accepted(srv), 0);
    res_clear(&x);
    /* Allowed by name: the same host is fetched. */
    {
        const char *const allow[] = {"localhost", NULL};
        struct aq_http_limits lim = default_lim;
        struct aq_netmatch *m = policy_of(allow, deny_none, false);

        lim.policy = m;
        fetch(&x, &lim, NULL, url, NULL, NULL);
        aq_netmatch_free(m);
        ck_assert_msg(x.err_code[0] == '\0', "%s", x.err_message);
        ck_assert_int_eq(x.status, 200);
        res_clear(&x);
    }
}
END_TEST

START_TEST(policy_refuses_a_name_without_resolving_it)
{
    const char *const allow[] = {"*.example.com", NULL};
    struct res x = {0};

    /* Not "dns": the name is not looked up. */
    fetch_forbidden(&x, policy_of(allow, deny_none, false),
                    "http://no-such-host.invalid/", "not in http.allow");
    res_clear(&x);
}
END_TEST

START_TEST(policy_refuses_the_daemons_own_listener)
{
    struct res x = {0};
    char url[64];

    fetch_forbidden(&x, policy_of(allow_all, deny_none, true), url_of("/ok"),
                    "the daemon's own listener");
    snprintf(url, sizeof url, "http://0.0.0.0:%d/ok", httpd_port(srv));
    res_clear(&x);
    fetch_forbidden(&x, policy_of(allow_all, deny_none, true), url,
                    "the daemon's own listener");
    res_clear(&x);
    snprintf(url, sizeof url, "http://localhost:%d/ok", httpd_port(srv));
    fetch_forbidden(&x, policy_of(allow_all, deny_none, true), url,
                    "the daemon's own listener");
    ck_assert_int_eq(httpd_accepted(srv), 0);
    res_clear(&x);
}
END_TEST

START_TEST(policy_checks_every_redirect)
{
    const char *const allow[] = {"localhost", NULL};
    struct res x = {0};
    char url[64];

    /* localhost is allowed; its redirect to 127.0.0.1 is not. */
    snprintf(url, sizeof url, "http://localhost:%d/redirect-abs/1",
             httpd_port(srv));
    fetch_forbidden(&x, policy_of(allow, deny_none, false), url,
                    "not in http.allow");
    ck_assert_int_eq(x.redirects, 1);
    ck_assert_str_eq(x.url, url_of("/redirect-abs/0"));
    ck_assert_int_eq(httpd_requests(srv), 1);
    res_clear(&x);
}
END_TEST

/* A kept-alive connection is reused while the policy allows its address,
 * and closed, not used, once a call's policy refuses it. */
START_TEST(policy_is_checked_on_a_reused_connection)
{
    const char *const deny[] = {"127.0.0.1", NULL};
    struct aq_http_limits lim = default_lim;
    struct aq_netmatch *m = policy_of(allow_all, deny_none, false);
    struct res x = {0};

    lim.policy = m;
    for (int i = 0; i < 2; i++) {
        fetch(&x, &lim, NULL, url_of("/ok"), NULL, NULL);
        ck_assert_int_eq(x.status, 200);
        res_clear(&x);
    }
    aq_netmatch_free(m);
    ck_assert_int_eq(httpd_accepted(srv), 1);
    ck_assert_int_eq(
        aq_http_open_conns(pool, "http", "127.0.0.1", httpd_port(srv)), 1);
    fetch_forbidden(&x, policy_of(allow_all, deny, false), url_of("/ok"),
                    "http.deny[0]");
    ck_assert_int_eq(httpd_requests(srv), 2);
    ck_assert_int_eq(
        aq_http_open_conns(pool, "http", "127.0.0.1", httpd_port(srv)), 0);
    res_clear(&x);
}
END_TEST

/* Twelve slow calls, two connections at most: the calls queue for them and
 * reuse them. */
START_TEST(per_host_cap_and_reuse)
{
    struct aq_http_limits lim = default_lim;
    struct res x[12] = {{0}};
    bool all = false;
    int peak = 0;

    lim.max_per_host = 2;
    for (int i = 0; i < 12; i++)
        start(&x[i], &lim, NULL, url_of("/slow?ms=20"), NULL, NULL);
    for (int spins = 0; !all && spins < 400; spins++) {
        int n = aq_http_open_conns(pool, "http", "127.0.0.1", httpd_port(srv));

        peak = n > peak ? n : peak;
        run_for(test_base, 5);
        all = true;
        for (int i = 0; i < 12; i++)
            all = all && x[i].done;
    }
    ck_assert_msg(all, "not all calls ended");
    for (int i = 0; i < 12; i++) {
        ck_assert_str_eq(x[i].err_code, "");
        ck_assert_int_eq(x[i].status, 200);
        res_clear(&x[i]);
    }
    ck_assert_int_le(peak, 2);
    ck_assert_int_le(httpd_max_open(srv), 2);
    ck_assert_int_le(httpd_accepted(srv), 2);
    ck_assert_int_eq(httpd_requests(srv), 12);
}
END_TEST

START_TEST(cancel_in_flight_and_waiting)
{
    struct aq_http_limits lim = default_lim;
    struct res a = {0}, b = {0}, c = {0};
    struct aq_http_call *ca, *cb;

    lim.max_per_host = 1;
    ca = start(&a, &lim, NULL, url_of("/slow?ms=5000"), NULL, NULL);
    cb = start(&b, &lim, NULL, url_of("/ok"), NULL, NULL); /* waits */
    run_for(test_base, 100);
    ck_assert(!a.done && !b.done);
    ck_assert_int_eq(httpd_requests(srv), 1);
    aq_http_cancel(cb); /* leaves the wait */
    aq_http_cancel(ca); /* aborts the request, closes its connection */
    ck_assert_int_eq(
        aq_http_open_conns(pool, "http", "127.0.0.1", httpd_port(srv)), 0);
    /* The pool still works, and nothing calls back for the cancelled. */
    fetch(&c, &lim, NULL, url_of("/ok"), NULL, NULL);
    ck_assert_int_eq(c.status, 200);
    run_for(test_base, 50);
    ck_assert_int_eq(a.calls, 0);
    ck_assert_int_eq(b.calls, 0);
    res_clear(&c);
}
END_TEST

START_TEST(free_with_calls_in_flight)
{
    struct res a = {0}, b = {0};

    start(&a, &default_lim, NULL, url_of("/slow?ms=5000"), NULL, NULL);
    start(&b, &default_lim, NULL, "ftp://x/", NULL, NULL);
    run_for(test_base, 50);
    ck_assert(!a.done);
    aq_http_free(pool); /* no callbacks, no leaks (valgrind, ASan) */
    pool = aq_http_new(test_base);
    run_for(test_base, 20);
    ck_assert_int_eq(a.calls, 0);
    res_clear(&b);
}
END_TEST

/* An HTTP/1.0 server on the test's own base, as Python's http.server
 * answers: no Connection header, and the connection closed right after
 * the response. A client that reused it would race the close. */
struct http10 {
    struct evconnlistener *lev;
    int port;
    int accepted;
};

static void
http10_write_cb(struct bufferevent *bev, void *arg)
{
    bufferevent_free(bev); /* the response is out: close */
}

static void
http10_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";

    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0)
        return;
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_setcb(bev, NULL, http10_write_cb, NULL, arg);
    bufferevent_write(bev, resp, sizeof resp - 1);
}

static void
http10_event_cb(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);
}

static void
http10_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                 struct sockaddr *sa, int len, void *arg)
{
    struct http10 *h = arg;
    struct bufferevent *bev = bufferevent_socket_new(
        evconnlistener_get_base(lev), fd, BEV_OPT_CLOSE_ON_FREE);

    h->accepted++;
    bufferevent_setcb(bev, http10_read_cb, NULL, http10_event_cb, h);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
http10_start(struct http10 *h)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->lev = evconnlistener_new_bind(test_base, http10_accept_cb, h,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sa, sizeof sa);
    ck_assert_ptr_nonnull(h->lev);
    getsockname(evconnlistener_get_fd(h->lev), (struct sockaddr *)&sa, &len);
    h->port = ntohs(sa.sin_port);
}

/* Twenty calls over one allowed connection to an HTTP/1.0 server that
 * closes after each response: each gets a new connection, none fails. */
START_TEST(http10_connections_are_not_reused)
{
    struct aq_http_limits lim = default_lim;
    struct http10 h = {0};
    struct res x[20] = {{0}};
    char url[64];
    bool all = false;

    http10_start(&h);
    lim.max_per_host = 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", h.port);
    for (int i = 0; i < 20; i++)
        start(&x[i], &lim, NULL, url, NULL, NULL);
    for (int spins = 0; !all && spins < 400; spins++) {
        run_for(test_base, 5);
        all = true;
        for (int i = 0; i < 20; i++)
            all = all && x[i].done;
    }
    ck_assert_msg(all, "not all calls ended");
    for (int i = 0; i < 20; i++) {
        ck_assert_msg(x[i].err_code[0] == '\0', "call %d: %s", i,
                      x[i].err_message);
        ck_assert_str_eq(x[i].body, "ok");
        res_clear(&x[i]);
    }
    ck_assert_int_eq(h.accepted, 20);
    evconnlistener_free(h.lev);
}
END_TEST

#ifdef AQ_HAVE_TLS
static struct httpd *tls_srv;

static char *
tls_url(const char *host, const char *path)
{
    static char buf[2][256];
    static int i;

    i = (i + 1) % 2;
    snprintf(buf[i], sizeof buf[i], "https://%s:%d%s", host,
             httpd_port(tls_srv), path);
    return buf[i];
}

START_TEST(tls_verified)
{
    struct res x = {0};

    tls_srv = httpd_start(true);
    setenv("SSL_CERT_FILE", httpd_ca_file(tls_srv), 1);
    aq_http_free(pool); /* contexts read the store when first made */
    pool = aq_http_new(test_base);
    fetch(&x, &default_lim, NULL, tls_url("127.0.0.1", "/ok"), NULL, NULL);
    ck_assert_msg(x.err_code[0] == '\0', "%s", x.err_message);
    ck_assert_str_eq(x.body, "hello");
    res_clear(&x);
    fetch(&x, &default_lim, NULL, tls_url("localhost", "/redirect/2"), NULL,
          NULL);
    ck_assert_msg(x.err_code[0] == '\0', "%s", x.err_message);
    ck_assert_int_eq(x.redirects, 2);
    res_clear(&x);
    unsetenv("SSL_CERT_FILE");
    httpd_stop(tls_srv);
}
END_TEST

START_TEST(tls_untrusted)
{
    struct aq_http_limits lim = default_lim;
    struct res x = {0};

    tls_srv = httpd_start(true);
    setenv("SSL_CERT_FILE", "/nonexistent", 1); /* trust nothing */
    aq_http_free(pool);
    pool = aq_http_new(test_base);
    fetch(&x, &lim, NULL, tls_url("127.0.0.1", "/ok"), NULL, NULL);
    ck_assert_str_eq(x.err_code, "tls");
    ck_assert_ptr_nonnull(strstr(x.err_message, "certificate"));
    res_clear(&x);
    lim.verify = false; /* only when asked for */
    fetch(&x, &lim, NULL, tls_url("127.0.0.1", "/ok"), NULL, NULL);
    ck_assert_msg(x.err_code[0] == '\0', "%s", x.err_message);
    ck_assert_int_eq(x.status, 200);
    res_clear(&x);
    unsetenv("SSL_CERT_FILE");
    httpd_stop(tls_srv);
}
END_TEST

START_TEST(tls_to_plain_server)
{
    struct res x = {0};
    char url[64];

    snprintf(url, sizeof url, "https://127.0.0.1:%d/ok", httpd_port(srv));
    fetch(&x, &default_lim, NULL, url, NULL, NULL);
    ck_assert_msg(strcmp(x.err_code, "tls") == 0 ||
                      strcmp(x.err_code, "reset") == 0,
                  "%s: %s", x.err_code, x.err_message);
    res_clear(&x);
}
END_TEST
#endif

/* ---- Retry-After ---- */

#define SUN_1994_US (INT64_C(784111777) * 1000000) /* 06 Nov 1994 08:49:37 */

static int64_t
retry_after_us(const char *value, int64_t now_us)
{
    int64_t d = -12345;

    ck_assert_msg(aq_http_retry_after(value, now_us, &d) == 0,
                  "\"%s\" was not read", value);
    return d;
}

START_TEST(retry_after_reads_delta_seconds)
{
    ck_assert_int_eq(retry_after_us("2", 0), 2000000);
    ck_assert_int_eq(retry_after_us(" 120 ", 5), 120000000);
    ck_assert_int_eq(retry_after_us("0", 0), 0);
    /* past the longest delay: capped at 1e9 s */
    ck_assert_int_eq(retry_after_us("99999999999999999999999", 0),
                     INT64_C(1000000000000000));
}
END_TEST

START_TEST(retry_after_reads_the_three_http_date_forms_as_gmt)
{
    int64_t now = SUN_1994_US - 10 * 1000000;

    ck_assert_int_eq(retry_after_us("Sun, 06 Nov 1994 08:49:37 GMT", now),
                     10000000);
    ck_assert_int_eq(retry_after_us("Sunday, 06-Nov-94 08:49:37 GMT", now),
                     10000000);
    ck_assert_int_eq(retry_after_us("Sun Nov  6 08:49:37 1994", now), 10000000);
    /* a date in the past is now */
    ck_assert_int_eq(
        retry_after_us("Sun, 06 Nov 1994 08:49:37 GMT", SUN_1994_US + 5000000),
        0);
    /* sub-second now: the delay is from now exactly */
    ck_assert_int_eq(
        retry_after_us("Sun, 06 Nov 1994 08:49:37 GMT", SUN_1994_US - 1500000),
        1500000);
}
END_TEST

START_TEST(retry_after_refuses_what_is_neither)
{
    static const char *const bad[] = {
        "",
        "   ",
        "-1",
        "1.5",
        "2 s",
        "soon",
        "Sun, 06 Nov 1994 08:49:37 CET",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        "Sun, 31 Foo 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 25:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTSun, 06 Nov 1994 08:49:37 GMT"
        "Sun, 06 Nov 1994 08:49:37 GMT",
    };
    int64_t d = 7;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(aq_http_retry_after(bad[i], 0, &d) == -1,
                      "\"%s\" was read as %lld", bad[i], (long long)d);
    ck_assert_int_eq(aq_http_retry_after(NULL, 0, &d), -1);
    ck_assert_int_eq(d, 7);
}
END_TEST

Suite *
http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = test_tcase_new("client");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, get_ok);
    tcase_add_test(tc, post_round_trips);
    tcase_add_test(tc, error_status_is_a_response);
    tcase_add_test(tc, body_capture_and_limit);
    tcase_add_test(tc, redirects_followed);
    tcase_add_test(tc, redirect_limit);
    tcase_add_test(tc, see_other_turns_post_into_get);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, reset_mid_body);
    tcase_add_test(tc, unknown_host);
    tcase_add_test(tc, host_name_resolves);
    tcase_add_test(tc, bad_urls);
    tcase_add_test(tc, per_host_cap_and_reuse);
    tcase_add_test(tc, cancel_in_flight_and_waiting);
    tcase_add_test(tc, free_with_calls_in_flight);
    tcase_add_test(tc, http10_connections_are_not_reused);
    tcase_add_test(tc, policy_refuses_a_literal_without_connecting);
    tcase_add_test(tc, policy_refuses_a_name_by_the_address_it_resolves_to);
    tcase_add_test(tc, policy_refuses_a_name_without_resolving_it);
    tcase_add_test(tc, policy_refuses_the_daemons_own_listener);
    tcase_add_test(tc, policy_checks_every_redirect);
    tcase_add_test(tc, policy_is_checked_on_a_reused_connection);
#ifdef AQ_HAVE_TLS
    tcase_add_test(tc, tls_verified);
    tcase_add_test(tc, tls_untrusted);
    tcase_add_test(tc, tls_to_plain_server);
#endif
    suite_add_tcase(s, tc);
    tc = test_tcase_new("retry_after");
    tcase_add_test(tc, retry_after_reads_delta_seconds);
    tcase_add_test(tc, retry_after_reads_the_three_http_date_forms_as_gmt);
    tcase_add_test(tc, retry_after_refuses_what_is_neither);
    suite_add_tcase(s, tc);
    return s;
}
