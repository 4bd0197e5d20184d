/* SPDX-License-Identifier: MIT */
/* tests/testconn.c: a client of a server inside the test (testconn.h). */
#include "testconn.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "server.h"
#include "xmalloc.h"

#define SHOWN 300 /* bytes of a message shown in a failure */

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

bool
test_run_until(struct event_base *base, bool (*pred)(void *arg), void *arg,
               int timeout_ms)
{
    bool expired = false;
    struct event *deadline = evtimer_new(base, deadline_cb, &expired);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    evtimer_add(deadline, &tv);
    while (!pred(arg) && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(deadline);
    return pred(arg);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct test_conn *c = arg;

    for (;;) {
        ssize_t n;

        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = xrealloc(c->in, c->in_cap);
        }
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            c->is_eof = true;
            c->error = n == 0 ? 0 : errno;
            event_del(c->rev);
        }
        return;
    }
}

struct test_conn *
test_conn_new(struct event_base *base, struct aq_server *s)
{
    struct test_conn *c = xcalloc(1, sizeof *c);
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    aq_server_accept(s, sv[0], "test");
    c->base = base;
    c->fd = sv[1];
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, read_cb, c);
    event_add(c->rev, NULL);
    return c;
}

void
test_conn_drop(struct test_conn *c)
{
    event_del(c->rev);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void
test_conn_free(struct test_conn *c)
{
    if (c == NULL)
        return;
    test_conn_drop(c);
    event_free(c->rev);
    free(c->in);
    free(c);
}

void
test_conn_pause(struct test_conn *c, bool paused)
{
    if (paused)
        event_del(c->rev);
    else
        event_add(c->rev, NULL);
}

void
test_conn_send_n(struct test_conn *c, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(c->fd, text, len);

        if (n < 0) {
            /* The socket is full: let the server read. */
            ck_assert_int_eq(errno, EAGAIN);
            event_base_loop(c->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            continue;
        }
        text += n;
        len -= (size_t)n;
    }
}

void
test_conn_send(struct test_conn *c, const char *text)
{
    test_conn_send_n(c, text, strlen(text));
}

static bool
has_line(void *arg)
{
    const struct test_conn *c = arg;

    return c->in_len > 0 && memchr(c->in, '\n', c->in_len) != NULL;
}

const char *
test_conn_peek(struct test_conn *c, size_t *len)
{
    ck_assert_msg(test_run_until(c->base, has_line, c, TEST_CONN_WAIT_MS),
                  "no message within %d ms", TEST_CONN_WAIT_MS);
    *len = (size_t)((const char *)memchr(c->in, '\n', c->in_len) - c->in) + 1;
    return c->in;
}

void
test_conn_take(struct test_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

json_t *
test_conn_next(struct test_conn *c)
{
    json_error_t jerr;
    size_t n;
    const char *line = test_conn_peek(c, &n);
    json_t *v = json_loadb(line, n - 1, 0, &jerr);

    ck_assert_msg(v != NULL, "not JSON (%s): %.*s", jerr.text,
                  (int)(n > SHOWN ? SHOWN : n), line);
    test_conn_take(c, n);
    return v;
}

/* The next message, a reply to id (JSON text); its text in *text. */
static json_t *
next_reply(struct test_conn *c, const char *id, char **text)
{
    json_t *msg = test_conn_next(c);
    json_t *want_id = json_loads(id, JSON_DECODE_ANY, NULL);

    ck_assert_msg(want_id != NULL, "bad id in the test: %s", id);
    *text = json_dumps(msg, 0);
    ck_assert_msg(json_equal(json_object_get(msg, "id"), want_id),
                  "a reply to %s expected: %.300s", id, *text);
    ck_assert_msg(json_is_string(json_object_get(msg, "jsonrpc")) &&
                      strcmp(json_string_value(json_object_get(msg, "jsonrpc")),
                             "2.0") == 0,
                  "no \"jsonrpc\":\"2.0\": %.300s", *text);
    json_decref(want_id);
    return msg;
}

void
test_conn_expect(struct test_conn *c, const char *id, const char *result)
{
    char *text;
    json_t *msg = next_reply(c, id, &text);
    json_t *want = json_loads(result, JSON_DECODE_ANY, NULL);

    ck_assert_msg(want != NULL, "bad result in the test: %s", result);
    ck_assert_msg(json_equal(json_object_get(msg, "result"), want),
                  "result %s expected: %.300s", result, text);
    json_decref(want);
    json_decref(msg);
    free(text);
}

void
test_conn_expect_error(struct test_conn *c, const char *id, int code,
                       const char *message)
{
    char *text;
    json_t *msg = next_reply(c, id, &text);
    json_t *e = json_object_get(msg, "error");

    ck_assert_msg(json_integer_value(json_object_get(e, "code")) == code,
                  "error %d expected: %.300s", code, text);
    if (message != NULL)
        ck_assert_msg(
            json_is_string(json_object_get(e, "message")) &&
                strcmp(json_string_value(json_object_get(e, "message")),
                       message) == 0,
            "message \"%s\" expected: %.300s", message, text);
    json_decref(msg);
    free(text);
}

static bool
never(void *arg)
{
    return false;
}

void
test_conn_expect_silence(struct test_conn *c, int ms)
{
    test_run_until(c->base, never, NULL, ms);
    ck_assert_msg(c->in_len == 0, "unexpected: %.*s",
                  (int)(c->in_len > SHOWN ? SHOWN : c->in_len), c->in);
}

static bool
is_eof(void *arg)
{
    return ((const struct test_conn *)arg)->is_eof;
}

void
test_conn_expect_eof(struct test_conn *c)
{
    ck_assert_msg(test_run_until(c->base, is_eof, c, TEST_CONN_WAIT_MS),
                  "not closed within %d ms", TEST_CONN_WAIT_MS);
    ck_assert_msg(c->error == 0, "closed with %s", strerror(c->error));
    ck_assert_msg(c->in_len == 0, "unread: %.*s",
                  (int)(c->in_len > SHOWN ? SHOWN : c->in_len), c->in);
}
