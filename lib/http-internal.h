/* SPDX-License-Identifier: MIT */
/*
 * lib/http-internal.h: what the http client's files share. http.c holds
 * the pool and its calls (request, response, redirects, body limits),
 * http_conn.c the hosts and their connections (DNS through evdns, the
 * allow/deny checks, TLS), http_url.c the URL checks. Nothing else
 * includes it. Structure:
 *
 *   pool (struct aq_http) -> hosts (scheme://name:port) -> connections
 *                                                      -> calls waiting
 *
 * A connection carries one call at a time (no pipelining). A call is sent
 * on an idle connection of its host, or a new one while the host has fewer
 * than max_per_host open, or else waits in the host's FIFO. Every end of a
 * request (response, error) is recorded by the evhttp callbacks and acted
 * on from the call's own event (end_ev), outside libevent's callback stack:
 * there connections are freed or handed to the next waiter, redirects are
 * followed and the user's callback runs. A connection is never reused after
 * an error or a cancel (evhttp would reconnect it, which a TLS bufferevent
 * does not survive); it is closed and freed instead.
 */
#ifndef AQ_HTTP_INTERNAL_H
#define AQ_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/http.h>
#include <jansson.h>

#ifdef AQ_HAVE_TLS
#include <openssl/ssl.h>
#endif

#include "http.h"

#define MAX_HEADERS_BYTES (64 * 1024) /* response header block */
#define CONN_TIMEOUT_S                                                         \
    86400 /* evhttp's own inactivity timeout: the job's                        \
             timeout is the one that counts */

struct host;
struct conn;

struct aq_http_call {
    struct aq_http *h;
    struct aq_http_limits lim;
    aq_http_cb *cb;
    void *arg;
    /* the request */
    char *method_name;
    enum evhttp_cmd_type method;
    json_t *headers; /* owned reference; NULL = none */
    char *body;      /* owned; NULL = none */
    size_t body_len;
    char *url;                        /* owned: the URL being fetched now */
    char *scheme, *hostname, *target; /* owned, parsed from url */
    int port;
    bool is_tls;
    bool strip_credentials; /* redirected to another host */
    int redirects;
    bool stale_retried; /* resent once after a reused connection died */
    bool want_fresh;    /* the resend: on a new connection */
    int64_t start_us;
    /* where it is */
    struct host *host;          /* while waiting or sent */
    struct conn *conn;          /* while sent */
    struct evhttp_request *req; /* evhttp's; until its callback */
    bool is_waiting;            /* in host's FIFO */
    TAILQ_ENTRY(aq_http_call) wait_link;
    LIST_ENTRY(aq_http_call) link; /* the pool's calls */
    struct event *end_ev;          /* owned: acts on an ended request */
    /* how the current request ended */
    bool req_ended;
    bool got_headers;
    bool conn_was_reused;
    int status;
    char *reason;              /* owned */
    json_t *res_headers;       /* owned */
    char *location;            /* owned: the Location header */
    struct evbuffer *res_body; /* owned: the first capture bytes */
    size_t body_seen;
    const char *err_code; /* static string; NULL = none */
    char err_detail[200];
};

struct conn {
    struct host *host;
    struct evhttp_connection *evcon; /* owned; NULL while resolving */
    struct resolve *resolve;         /* the host name's lookup in flight */
    struct sockaddr_storage addr;    /* the checked address it connects to */
    struct aq_http_call *call;       /* on it now; NULL = idle */
    int64_t idle_since_us;
    bool is_dead;          /* closed by the peer or an error: never reused */
    bool no_reuse;         /* an HTTP/1.0 answer without keep-alive: the server
                              closes it, maybe just after we would reuse it */
    bool was_used;         /* has carried a request */
    LIST_ENTRY(conn) link; /* host's connections */
};

/* A host name lookup (evdns_getaddrinfo's argument). It is never
 * cancelled: evdns calls back later even then. A connection freed first
 * sets cn to NULL, and the callback only frees this. */
struct resolve {
    struct conn *cn;
};

struct host {
    struct aq_http *h;
    char *scheme, *name; /* owned */
    int port;
    bool is_tls;
    LIST_HEAD(, conn) conns; /* owned */
    int nconns;
    TAILQ_HEAD(, aq_http_call) waiting; /* for a connection, oldest first */
    LIST_ENTRY(host) link;              /* the pool's hosts */
};

struct aq_http {
    struct event_base *base;
    struct evdns_base *dns;          /* owned; created at the first host name */
    LIST_HEAD(, host) hosts;         /* owned */
    LIST_HEAD(, aq_http_call) calls; /* not ended; owned */
    struct event *sweep_ev;          /* owned: closes long-idle connections */
#ifdef AQ_HAVE_TLS
    SSL_CTX *tls_verify, *tls_noverify; /* owned; created when first needed */
#endif
};

/* ---- http_url.c ---- */

/* The parts of url the client needs (new strings, the caller's). 0, or -1
 * with why (static text). */
int http_url_split(const char *url, char **scheme, char **hostname, int *port,
                   char **target, const char **why);

/* ---- http_conn.c: hosts ---- */

/* The host scheme://name:port of h, or NULL. */
struct host *http_host_find(const struct aq_http *h, const char *scheme,
                            const char *name, int port);
/* The host scheme://name:port of h, made if h has none. */
struct host *http_host_get(struct aq_http *h, const char *scheme,
                           const char *name, int port);
/* Frees ho, unlinked, without connections or waiters. */
void http_host_free(struct host *ho);

/* ---- http_conn.c: connections ---- */

/* Closes cn and frees it; its call, if any, is the caller's to deal with. */
void http_conn_free(struct conn *cn);
/* Opens a new connection of ho for c; c is sent once it is connected
 * (perhaps before this returns), or ends with its error from end_ev. */
void http_conn_open(struct host *ho, struct aq_http_call *c);
/* An idle live connection of ho that c may use, or NULL. */
struct conn *http_conn_idle(struct host *ho, const struct aq_http_call *c);
/* Frees the least recently used idle connection of ho, if any. */
void http_conn_close_one_idle(struct host *ho);

/* ---- http.c ---- */

/* Sends c's request on cn. */
void http_call_send(struct aq_http_call *c, struct conn *cn);

#endif
