/* SPDX-License-Identifier: MIT */
/*
 * tests/test_client.c: the contract of lib/client.h against a server the
 * test plays itself: the client connects to a listening socket of the
 * test (tcp://HOST:PORT, HOST:PORT, unix:/PATH, $ASYNCQ_SERVER), the test
 * accepts, reads the request line and writes the reply lines. The client
 * blocks, but each request fits the socket buffers, so one thread plays
 * both sides. Every wait is the client's own timeout.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "error.h"
#include "suites.h"
#include "testutil.h"

#define TIMEOUT_MS 5000

/* A listening socket of the test's, and the connection it accepted. */
struct srv {
    int lfd, fd;
    char addr[128]; /* "tcp://127.0.0.1:PORT" or "unix:/PATH" */
    char dir[64];   /* unix: the temp dir holding the socket */
};

static void
srv_tcp(struct srv *s)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;

    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s->lfd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(s->lfd, 8), 0);
    ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
    snprintf(s->addr, sizeof s->addr, "tcp://127.0.0.1:%d",
             ntohs(sin.sin_port));
}

static void
srv_unix(struct srv *s)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    memset(s, 0, sizeof *s);
    s->fd = -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/asyncq-client.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sock", s->dir);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s->lfd, 0);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sun, sizeof sun), 0);
    ck_assert_int_eq(listen(s->lfd, 8), 0);
    snprintf(s->addr, sizeof s->addr, "unix:%s", sun.sun_path);
}

/* Accepts the client's connection (already in the backlog). */
static void
srv_accept(struct srv *s)
{
    struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};

    ck_assert_int_eq(poll(&pfd, 1, TIMEOUT_MS), 1);
    s->fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(s->fd, 0);
}

static void
srv_close(struct srv *s)
{
    if (s->fd >= 0)
        close(s->fd);
    close(s->lfd);
    if (s->dir[0] != '\0') {
        char path[128];

        snprintf(path, sizeof path, "%s/sock", s->dir);
        unlink(path);
        rmdir(s->dir);
    }
}

/* The next request line the client sent, parsed (new ref). */
static json_t *
srv_read(struct srv *s)
{
    char line[4096];
    size_t n = 0;
    json_error_t jerr;
    json_t *v;

    while (n < sizeof line - 1) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};

        ck_assert_int_eq(poll(&pfd, 1, TIMEOUT_MS), 1);
        ck_assert_int_eq(read(s->fd, line + n, 1), 1);
        if (line[n++] == '\n')
            break;
    }
    v = json_loadb(line, n, 0, &jerr);
    ck_assert_msg(v != NULL, "client sent %.*s: %s", (int)n, line, jerr.text);
    return v;
}

/* Writes text (lines, each with its '\n') as the server. */
static void
srv_write(struct srv *s, const char *text)
{
    size_t len = strlen(text);

    ck_assert_int_eq(write(s->fd, text, len), (ssize_t)len);
}

/* Connects a client to s and accepts it. */
static struct aq_client *
connect_to(struct srv *s, const char *server)
{
    struct aq_error err = {0};
    struct aq_client *c = aq_client_connect(server, TIMEOUT_MS, &err);

    ck_assert_msg(c != NULL, "connect %s: %s", server, err.message);
    srv_accept(s);
    return c;
}

/* Connecting to server fails with a transport error holding why. */
static void
assert_connect_fails(const char *server, const char *why)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(aq_client_connect(server, TIMEOUT_MS, &err));
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_msg(strstr(err.message, why) != NULL, "%s: \"%s\" lacks \"%s\"",
                  server, err.message, why);
    ck_assert(!aq_client_is_server_error(&err));
}

/* ---- addresses ---- */

START_TEST(connects_to_tcp_host_port_with_or_without_the_scheme)
{
    struct srv s;
    struct aq_client *c;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    ck_assert_str_eq(aq_client_server(c), s.addr);
    aq_client_free(c);
    close(s.fd);
    c = connect_to(&s, s.addr + strlen("tcp://"));
    ck_assert_str_eq(aq_client_server(c), s.addr + strlen("tcp://"));
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(connects_to_a_unix_socket)
{
    struct srv s;
    struct aq_client *c;

    srv_unix(&s);
    c = connect_to(&s, s.addr);
    ck_assert_str_eq(aq_client_server(c), s.addr);
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(no_server_named_means_asyncq_server_from_the_environment)
{
    struct srv s;
    struct aq_client *c;

    srv_tcp(&s);
    setenv("ASYNCQ_SERVER", s.addr, 1);
    c = connect_to(&s, NULL);
    ck_assert_str_eq(aq_client_server(c), s.addr);
    aq_client_free(c);
    close(s.fd);
    c = connect_to(&s, "");
    ck_assert_str_eq(aq_client_server(c), s.addr);
    aq_client_free(c);
    unsetenv("ASYNCQ_SERVER");
    srv_close(&s);
}
END_TEST

START_TEST(bracketed_ipv6_host_is_read_without_its_brackets)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    socklen_t len = sizeof sin6;
    struct srv s = {.fd = -1};
    char addr[64];
    struct aq_client *c;

    s.lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sin6.sin6_addr = in6addr_loopback;
    if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&sin6, sizeof sin6) != 0) {
        /* no IPv6 loopback here: nothing to connect to */
        if (s.lfd >= 0)
            close(s.lfd);
        return;
    }
    ck_assert_int_eq(listen(s.lfd, 8), 0);
    ck_assert_int_eq(getsockname(s.lfd, (struct sockaddr *)&sin6, &len), 0);
    snprintf(addr, sizeof addr, "tcp://[::1]:%d", ntohs(sin6.sin6_port));
    c = connect_to(&s, addr);
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(bad_addresses_fail_naming_why)
{
    char path[200];
    struct srv s;
    char refused[sizeof s.addr];

    assert_connect_fails(
        "localhost", "expected tcp://HOST:PORT, tls://HOST:PORT or unix:/PATH");
    assert_connect_fails("tcp://no-port", "expected tcp://HOST:PORT");
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    memcpy(path, "unix:/", 6);
    assert_connect_fails(path, "path too long");
    assert_connect_fails("unix:/nonexistent/asyncq.sock",
                         "connect unix:/nonexistent/asyncq.sock");
    /* a port nobody listens on any more */
    srv_tcp(&s);
    snprintf(refused, sizeof refused, "%s", s.addr);
    srv_close(&s);
    assert_connect_fails(refused, "connect 127.0.0.1:");
}
END_TEST

/* ---- requests and replies ---- */

struct notes {
    int n;
    char last[64];
};

static void
note_cb(const char *method, json_t *params, void *arg)
{
    struct notes *nt = arg;

    nt->n++;
    snprintf(nt->last, sizeof nt->last, "%s %lld", method,
             (long long)json_integer_value(json_object_get(params, "n")));
}

START_TEST(call_sends_a_request_and_returns_the_result_of_its_reply)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    struct notes nt = {0};
    json_t *req, *res;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    /* The reply is there before the call reads: requests are pipelined,
     * and the reply is matched by id, after a notification and a reply to
     * another id. */
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"progress\","
                  "\"params\":{\"n\":3}}\n"
                  "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":0}\n"
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"job\":5}}\n");
    res = aq_client_call(c, "put", json_pack("{s:s}", "queue", "q"), note_cb,
                         &nt, &err);
    ck_assert_msg(res != NULL, "call: %s", err.message);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "job")), 5);
    ck_assert_int_eq(nt.n, 1);
    ck_assert_str_eq(nt.last, "progress 3");
    req = srv_read(&s);
    ck_assert_str_eq(json_string_value(json_object_get(req, "jsonrpc")), "2.0");
    ck_assert_int_eq(json_integer_value(json_object_get(req, "id")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(req, "method")), "put");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(req, "params"), "queue")),
                     "q");
    json_decref(req);
    json_decref(res);
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(error_reply_is_the_servers_error_with_its_code_and_message)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                  "\"message\":\"put: delay: expected number >= 0\"}}\n");
    ck_assert_ptr_null(aq_client_call(c, "put", NULL, NULL, NULL, &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, "put: delay: expected number >= 0");
    ck_assert(aq_client_is_server_error(&err));
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(recv_gives_up_after_the_timeout_and_at_a_close)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    int64_t id;
    const char *method;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    aq_client_set_timeout(c, 50);
    ck_assert_ptr_null(aq_client_recv(c, &id, &method, &err));
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_ptr_nonnull(strstr(err.message, "no reply within 50 ms"));
    close(s.fd);
    s.fd = -1;
    aq_client_set_timeout(c, TIMEOUT_MS);
    ck_assert_ptr_null(aq_client_recv(c, &id, &method, &err));
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_ptr_nonnull(strstr(err.message, "connection closed"));
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(reply_that_is_not_an_object_is_a_transport_error)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    int64_t id;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    srv_write(&s, "[1,2]\n{oops\n");
    ck_assert_ptr_null(aq_client_recv(c, &id, NULL, &err));
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_ptr_nonnull(strstr(err.message, "bad reply: not an object"));
    ck_assert_ptr_null(aq_client_recv(c, &id, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "bad reply"));
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(result_with_an_integer_beyond_64_bits_reads_as_a_number)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    json_t *res;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":"
                  "{\"big\":123456789012345678901234567890}}\n");
    res = aq_client_call(c, "status", NULL, NULL, NULL, &err);
    ck_assert_msg(res != NULL, "call: %s", err.message);
    ck_assert(json_is_real(json_object_get(res, "big")));
    ck_assert(json_real_value(json_object_get(res, "big")) > 1.2e29);
    json_decref(res);
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

/* ---- auth ---- */

/* The token the next request (an auth) carries, answering it. */
static char *
srv_take_auth(struct srv *s)
{
    json_t *req = srv_read(s);
    char *token;

    ck_assert_str_eq(json_string_value(json_object_get(req, "method")), "auth");
    token = strdup(json_string_value(
        json_object_get(json_object_get(req, "params"), "token")));
    json_decref(req);
    return token;
}

START_TEST(auth_sends_the_token_files_first_line_else_asyncq_token)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    char path[] = "/tmp/asyncq-token.XXXXXX";
    int fd = mkstemp(path);
    char *token;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "s3cret\r\nsecond line\n", 20), 20);
    close(fd);
    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    setenv("ASYNCQ_TOKEN", "from-env", 1);
    /* the file wins over the environment */
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":true}\n");
    ck_assert_int_eq(aq_client_auth(c, path, &err), 0);
    token = srv_take_auth(&s);
    ck_assert_str_eq(token, "s3cret");
    free(token);
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":true}\n");
    ck_assert_int_eq(aq_client_auth(c, NULL, &err), 0);
    token = srv_take_auth(&s);
    ck_assert_str_eq(token, "from-env");
    free(token);
    /* a refusal is the server's error */
    srv_write(&s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32001,"
                  "\"message\":\"auth: wrong token\"}}\n");
    ck_assert_int_eq(aq_client_auth(c, NULL, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_UNAUTHORIZED);
    free(srv_take_auth(&s));
    unsetenv("ASYNCQ_TOKEN");
    unlink(path);
    ck_assert_int_eq(aq_client_auth(c, path, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_ptr_nonnull(strstr(err.message, path));
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

START_TEST(auth_without_a_token_sends_nothing)
{
    struct srv s;
    struct aq_client *c;
    struct aq_error err = {0};
    struct pollfd pfd;

    srv_tcp(&s);
    c = connect_to(&s, s.addr);
    unsetenv("ASYNCQ_TOKEN");
    ck_assert_int_eq(aq_client_auth(c, NULL, &err), 0);
    pfd = (struct pollfd){.fd = s.fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    aq_client_free(c);
    srv_close(&s);
}
END_TEST

Suite *
client_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc = test_tcase_new("address");

    tcase_add_test(tc, connects_to_tcp_host_port_with_or_without_the_scheme);
    tcase_add_test(tc, connects_to_a_unix_socket);
    tcase_add_test(tc,
                   no_server_named_means_asyncq_server_from_the_environment);
    tcase_add_test(tc, bracketed_ipv6_host_is_read_without_its_brackets);
    tcase_add_test(tc, bad_addresses_fail_naming_why);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("calls");
    tcase_add_test(tc,
                   call_sends_a_request_and_returns_the_result_of_its_reply);
    tcase_add_test(tc,
                   error_reply_is_the_servers_error_with_its_code_and_message);
    tcase_add_test(tc, recv_gives_up_after_the_timeout_and_at_a_close);
    tcase_add_test(tc, reply_that_is_not_an_object_is_a_transport_error);
    tcase_add_test(tc, result_with_an_integer_beyond_64_bits_reads_as_a_number);
    tcase_add_test(tc, auth_sends_the_token_files_first_line_else_asyncq_token);
    tcase_add_test(tc, auth_without_a_token_sends_nothing);
    suite_add_tcase(s, tc);
    return s;
}
