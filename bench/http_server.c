/* SPDX-License-Identifier: MIT */
/*
 * bench/http_server.c: the HTTP server bench/http measures the http job
 * kind against. One thread, libevent's evhttp on 127.0.0.1: every request,
 * whatever its method and path, is answered 200 with a body of -b bytes
 * ("x"s), keep-alive. Prints "listening PORT" on stdout once it accepts
 * (-p 0: a port the kernel picks), and "served N" when SIGTERM or SIGINT
 * stops it, then exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#define MAX_BODY_BYTES (64L * 1024 * 1024)

struct server {
    struct event_base *base;
    char *body; /* -b bytes of 'x'; owned */
    size_t body_len;
    long long served; /* requests answered */
};

static void
usage(void)
{
    fputs("usage: http_server -p PORT [-b BODY_BYTES]\n"
          "  answers every request 200 with BODY_BYTES bytes (default 2);\n"
          "  -p 0 picks a free port; prints \"listening PORT\" when ready\n",
          stderr);
    exit(2);
}

/* Any request: 200 and the body, by reference (the server outlives every
 * reply). evhttp adds Content-Length and keeps the connection open unless
 * the client asked otherwise. */
static void
request_cb(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain");
    evbuffer_add_reference(out, s->body, s->body_len, NULL, NULL);
    evhttp_send_reply(req, HTTP_OK, "OK", NULL);
    s->served++;
}

static void
signal_cb(evutil_socket_t sig, short events, void *arg)
{
    struct server *s = arg;

    event_base_loopbreak(s->base);
}

/* The port l listens on, or -1. */
static int
listener_port(struct evconnlistener *l)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;

    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len) <
        0)
        return -1;
    return ntohs(sin.sin_port);
}

int
main(int argc, char **argv)
{
    struct server s = {0};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct evconnlistener *listener = NULL;
    struct evhttp *http = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    long port = -1, body_bytes = 2;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        long n;

        if (v == NULL)
            usage();
        n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0')
            usage();
        if (strcmp(a, "-p") == 0)
            port = n;
        else if (strcmp(a, "-b") == 0)
            body_bytes = n;
        else
            usage();
        i++;
    }
    if (port < 0 || port > 65535 || body_bytes < 0 ||
        body_bytes > MAX_BODY_BYTES)
        usage();

    /* A client closing while its reply is written must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    s.body_len = (size_t)body_bytes;
    s.body = malloc(s.body_len + 1);
    if (s.body == NULL) {
        fprintf(stderr, "http_server: out of memory\n");
        return 1;
    }
    memset(s.body, 'x', s.body_len);

    if ((s.base = event_base_new()) == NULL) {
        fprintf(stderr, "http_server: event_base_new failed\n");
        goto fail;
    }
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((unsigned short)port);
    listener = evconnlistener_new_bind(
        s.base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
        (struct sockaddr *)&sin, sizeof sin);
    if (listener == NULL) {
        perror("http_server: listen 127.0.0.1");
        goto fail;
    }
    http = evhttp_new(s.base);
    /* evhttp frees the listener with the bound socket, from evhttp_free. */
    if (http == NULL || evhttp_bind_listener(http, listener) == NULL) {
        fprintf(stderr, "http_server: evhttp setup failed\n");
        evconnlistener_free(listener);
        goto fail;
    }
    /* evhttp's default leaves out OPTIONS and PATCH (405). */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                         EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, request_cb, &s);
    sigterm = evsignal_new(s.base, SIGTERM, signal_cb, &s);
    sigint = evsignal_new(s.base, SIGINT, signal_cb, &s);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) < 0 ||
        evsignal_add(sigint, NULL) < 0) {
        fprintf(stderr, "http_server: cannot watch signals\n");
        goto fail;
    }

    printf("listening %d\n", listener_port(listener));
    fflush(stdout);
    if (event_base_dispatch(s.base) < 0) {
        fprintf(stderr, "http_server: event loop failed\n");
        goto fail;
    }
    printf("served %lld\n", s.served);
    fflush(stdout);
    rc = 0;
fail:
    if (sigint != NULL)
        event_free(sigint);
    if (sigterm != NULL)
        event_free(sigterm);
    if (http != NULL)
        evhttp_free(http);
    if (s.base != NULL)
        event_base_free(s.base);
    free(s.body);
    return rc;
}
