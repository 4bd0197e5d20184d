/* SPDX-License-Identifier: MIT */
/*
 * tests/test_metrics.c: the limits of lib/metrics.h's listener, with a
 * real event base and the test's own client sockets: an idle connection
 * is closed after the idle time, one beyond the connection cap at once;
 * without a broker, /metrics still shows the build and the process.
 * The sizes are checked against the daemon in tests/bb_service.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "metrics.h"
#include "suites.h"
#include "testutil.h"

#define IDLE_MS 1000 /* long enough for valgrind to serve a request first */
#define DEADLINE_MS 5000

static struct aq_metrics *metrics;

static void
setup(void)
{
    struct aq_error err = {0};

    test_base_setup();
    /* No broker, server or journal: only /healthz is asked for. */
    metrics = aq_metrics_new(test_base, "127.0.0.1:0", NULL, NULL, NULL, &err);
    ck_assert_msg(metrics != NULL, "aq_metrics_new: %s", err.message);
    aq_metrics_set_health(metrics, AQ_HEALTH_READY);
}

static void
teardown(void)
{
    aq_metrics_free(metrics);
    test_base_teardown();
}

static void
set_limits(int idle_timeout_ms, size_t max_connections)
{
    struct aq_metrics_limits l = {
        .max_header_bytes = AQ_METRICS_MAX_HEADER_BYTES,
        .max_body_bytes = AQ_METRICS_MAX_BODY_BYTES,
        .idle_timeout_ms = idle_timeout_ms,
        .max_connections = max_connections,
    };

    aq_metrics_set_limits(metrics, &l);
}

/* A client socket connected to the listener (the kernel completes the
 * handshake before the loop accepts). */
static int
dial(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_port = htons((uint16_t)aq_metrics_port(metrics));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0,
                  "connect: %s", strerror(errno));
    return fd;
}

/* Watches a client socket from the loop: what it read, and when the
 * listener closed it. */
struct client {
    int fd;
    struct event *ev;
    char reply[16384];
    size_t len;
    bool has_healthz; /* a whole /healthz reply was read */
    bool is_closed;
    int64_t closed_us; /* monotonic */
};

static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    char buf[4096];
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

    if (got > 0) {
        size_t n = (size_t)got;

        if (n > sizeof c->reply - 1 - c->len)
            n = sizeof c->reply - 1 - c->len;
        memcpy(c->reply + c->len, buf, n);
        c->len += n;
        c->reply[c->len] = '\0';
        c->has_healthz = strstr(c->reply, "\r\n\r\nok\n") != NULL;
        return;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    c->is_closed = true;
    c->closed_us = aq_clock_mono_us();
    event_del(c->ev);
}

static void
client_watch(struct client *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->ev = event_new(test_base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    event_add(c->ev, NULL);
}

static void
client_close(struct client *c)
{
    event_free(c->ev);
    close(c->fd);
}

/* A connection that never sends a byte, and one that goes quiet after a
 * request was answered (keep-alive), are both closed after the idle time,
 * not before. */
static const char *const idle_first[] = {
    "",
    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
};

START_TEST(idle_connection_is_closed_after_the_idle_time)
{
    const char *req = idle_first[_i];
    struct client c;
    int64_t start_us;

    set_limits(IDLE_MS, AQ_METRICS_MAX_CONNECTIONS);
    client_watch(&c, dial());
    start_us = aq_clock_mono_us();
    if (req[0] != '\0')
        ck_assert_int_eq(send(c.fd, req, strlen(req), MSG_NOSIGNAL),
                         (ssize_t)strlen(req));
    ck_assert_msg(run_until(test_base, &c.is_closed, DEADLINE_MS),
                  "an idle connection is open after %d ms", DEADLINE_MS);
    if (req[0] != '\0')
        ck_assert_msg(strncmp(c.reply, "HTTP/1.1 200", 12) == 0,
                      "GET /healthz: %s", c.reply);
    /* The idle time counts from the last byte read or written. */
    ck_assert_int_ge(c.closed_us - start_us, (int64_t)IDLE_MS * 1000);
    client_close(&c);
}
END_TEST

START_TEST(connection_beyond_the_cap_is_closed_at_once)
{
    struct client c[3];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    set_limits(60000, 2);
    for (int i = 0; i < 3; i++)
        client_watch(&c[i], dial());
    ck_assert_msg(run_until(test_base, &c[2].is_closed, DEADLINE_MS),
                  "the third connection is open with a cap of 2");
    ck_assert_msg(!c[0].is_closed && !c[1].is_closed,
                  "a connection within the cap was closed");
    /* Those within the cap are served. */
    ck_assert_int_eq(send(c[0].fd, req, strlen(req), MSG_NOSIGNAL),
                     (ssize_t)strlen(req));
    ck_assert_msg(run_until(test_base, &c[0].has_healthz, DEADLINE_MS),
                  "GET /healthz within the cap: no reply: %s", c[0].reply);
    ck_assert_msg(strncmp(c[0].reply, "HTTP/1.1 200", 12) == 0,
                  "GET /healthz within the cap: %s", c[0].reply);
    for (int i = 0; i < 3; i++)
        client_close(&c[i]);
}
END_TEST

/* Without a broker or a server (the fixture's), /metrics still shows the
 * build and the process, as Prometheus' client libraries name them, each
 * family with its HELP and TYPE; asyncq_up is gone (Prometheus' own up). */
START_TEST(metrics_show_the_build_and_the_process)
{
    static const char *const want[] = {
        "# TYPE asyncq_build_info gauge\n",
        "\nasyncq_build_info{version=\"" ASYNCQ_VERSION "\"} 1\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n",
    };
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n";
    struct client c;

    client_watch(&c, dial());
    ck_assert_int_eq(send(c.fd, req, strlen(req), MSG_NOSIGNAL),
                     (ssize_t)strlen(req));
    ck_assert_msg(run_until(test_base, &c.is_closed, DEADLINE_MS),
                  "no whole reply to GET /metrics");
    ck_assert_msg(strncmp(c.reply, "HTTP/1.1 200", 12) == 0, "%s", c.reply);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(c.reply, want[i]) != NULL, "no \"%s\" in %s",
                      want[i], c.reply);
    ck_assert_ptr_null(strstr(c.reply, "\nasyncq_up "));
    ck_assert_ptr_null(strstr(c.reply, " asyncq_up "));
    client_close(&c);
}
END_TEST

Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = test_tcase_new("limits");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, idle_connection_is_closed_after_the_idle_time, 0,
                        sizeof idle_first / sizeof idle_first[0]);
    tcase_add_test(tc, connection_beyond_the_cap_is_closed_at_once);
    tcase_add_test(tc, metrics_show_the_build_and_the_process);
    suite_add_tcase(s, tc);
    return s;
}
