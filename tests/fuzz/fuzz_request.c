/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_request.c: bytes a producer sends, through exactly the
 * code asyncqd runs: lib/server.c's framing, the put fast path and the
 * general path (lib/jscan.c, lib/rpc.c), lib/methods.c's params checks, the
 * broker. Each input gets a fresh event base, broker (memory only: queues
 * "default" and "e" of kind echo, "s" of kind sleep, one consumer each, no exec
 * allowed, and "w" of kind remote for get/task_done), methods and server,
 * listening on a Unix socket made once; a client socket writes the input, shuts
 * its side, and reads replies until the server closes or FUZZ_REQUEST_MS pass.
 * Every line the server writes must be a JSON-RPC reply (an object, or a
 * batch's array of objects). Then all is freed with the daemon's free
 * functions, so LeakSanitizer sees what a closed connection leaves behind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "fuzz.h"
#include "jscan.h"
#include "listen.h"
#include "methods.h"
#include "proc.h"
#include "server.h"

/* The most one input may run the loop: long enough for echo jobs and
 * short sleeps, short enough for thousands of inputs a second when the
 * server closes at once. */
#ifndef FUZZ_REQUEST_MS
#define FUZZ_REQUEST_MS 20
#endif
#define REPLY_MAX (1u << 20) /* reply bytes kept for the JSON check */

static const char config_text[] =
    "{\"metrics\":null,\"journal\":{\"path\":null},"
    "\"producers\":{\"max\":8,\"window\":64,\"max_request_bytes\":4096,"
    "\"idle_timeout\":0},"
    "\"results\":{\"ttl\":60,\"max\":64},"
    "\"log\":{\"level\":\"error\"},"
    "\"queues\":{"
    "\"default\":{\"kind\":\"echo\",\"consumers\":1,\"maxsize\":8,"
    "\"exec\":{\"allow\":[]}},"
    "\"e\":{\"kind\":\"echo\",\"consumers\":1,\"maxsize\":8,"
    "\"exec\":{\"allow\":[]}},"
    "\"s\":{\"kind\":\"sleep\",\"consumers\":1,\"maxsize\":8,\"timeout\":1,"
    "\"exec\":{\"allow\":[]}},"
    "\"w\":{\"kind\":\"remote\",\"maxsize\":8,\"timeout\":1,\"retries\":1}}}";

static struct aq_config *cfg;
static char reply_buf[REPLY_MAX];
static int listen_fd = -1;
static struct sockaddr_un listen_addr;

/* The client side of one input. */
struct client {
    int fd;
    const uint8_t *data;
    size_t len, off; /* written so far */
    struct event *rev, *wev;
    char *reply; /* the first REPLY_MAX bytes the server wrote (static) */
    size_t nreply;
    bool is_full;   /* nothing more is kept: the kept part is contiguous */
    bool is_closed; /* the server closed (EOF or reset) */
};

static void
client_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;

    while (c->off < c->len) {
        ssize_t n = send(fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) /* the server closed early (an oversized line) */
            break;
        c->off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    event_del(c->wev);
}

static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    char buf[65536];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            c->is_closed = true;
            event_del(c->rev);
            return;
        }
        if (!c->is_full && c->nreply + (size_t)n <= REPLY_MAX) {
            memcpy(c->reply + c->nreply, buf, (size_t)n);
            c->nreply += (size_t)n;
        } else
            c->is_full = true;
    }
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* A reply line: one JSON text (RFC 8259: the daemon sends ids and args
 * back exactly, so jansson could not read them all) that is a response or
 * notification object, or a batch's array of them, as lib/jwrite writes
 * them. */
static bool
is_reply(const char *p, size_t n, const char **why)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",";
    size_t pos;

    if (!aq_jscan_check(p, n, &pos, why))
        return false;
    *why = "not a response, a notification or a batch of them";
    if (n > 0 && p[0] == '[')
        p++, n--;
    return n >= sizeof head - 1 && memcmp(p, head, sizeof head - 1) == 0;
}

/* Every complete line the server wrote is a reply. */
static void
check_replies(const struct client *c)
{
    const char *p = c->reply, *end = c->reply + c->nreply, *nl, *why;

    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (!is_reply(p, (size_t)(nl - p), &why)) {
            fprintf(stderr, "not a JSON-RPC reply (%s): %.*s\n", why,
                    (int)(nl - p > 500 ? 500 : nl - p), p);
            abort();
        }
        p = nl + 1;
    }
}

static void
accept_cb(void *arg, int fd, const char *peer)
{
    aq_server_accept(arg, fd, peer);
}

static void
listen_remove(void)
{
    unlink(listen_addr.sun_path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fuzz_setup(config_text);
    listen_addr.sun_family = AF_UNIX;
    snprintf(listen_addr.sun_path, sizeof listen_addr.sun_path, "%s/sock",
             fuzz_scratch_dir());
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 ||
        bind(listen_fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) <
            0 ||
        listen(listen_fd, 64) < 0) {
        fprintf(stderr, "fuzz_request: listen %s: %s\n", listen_addr.sun_path,
                strerror(errno));
        abort();
    }
    atexit(listen_remove);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event_base *base = event_base_new();
    struct aq_procs *procs = aq_procs_new(base);
    struct aq_broker *broker = aq_broker_new(base, procs, cfg);
    struct aq_methods *methods = aq_methods_new(broker, NULL);
    struct aq_server *server =
        aq_server_new(base, cfg, &aq_methods_ops, methods);
    struct aq_listen *listen = aq_listen_new(base, accept_cb, server);
    struct client c = {.data = data, .len = size, .reply = reply_buf};
    struct timeval tv = aq_clock_tv((int64_t)FUZZ_REQUEST_MS * 1000);
    bool expired = false;
    struct event *deadline = evtimer_new(base, deadline_cb, &expired);
    /* lib/listen.c closes the listener it is given: it gets a copy. */
    int fd = dup(listen_fd);

    aq_broker_start(broker);
    if (fd < 0) {
        fprintf(stderr, "fuzz_request: dup: %s\n", strerror(errno));
        abort();
    }
    aq_listen_add_fd(listen, fd);
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&listen_addr,
                            sizeof listen_addr) < 0) {
        fprintf(stderr, "fuzz_request: connect: %s\n", strerror(errno));
        abort();
    }
    c.rev = event_new(base, c.fd, EV_READ | EV_PERSIST, client_read_cb, &c);
    c.wev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, client_write_cb, &c);
    event_add(c.rev, NULL);
    event_add(c.wev, NULL);
    evtimer_add(deadline, &tv);
    while (!c.is_closed && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    check_replies(&c);

    event_free(deadline);
    event_free(c.rev);
    event_free(c.wev);
    close(c.fd);
    aq_listen_free(listen);
    aq_server_free(server);
    aq_methods_free(methods);
    aq_broker_free(broker);
    aq_procs_free(procs);
    event_base_free(base);
    return 0;
}
