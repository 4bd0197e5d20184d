/* SPDX-License-Identifier: MIT */
/*
 * lib/http.h: the HTTP/1.1 client behind the http job kind, on libevent's
 * evhttp client (and bufferevent_openssl for https). A pool (one per
 * queue) keeps keep-alive connections per scheme://host:port and never has
 * more than max_per_host of them open to one; calls beyond that wait, in
 * arrival order, for one to come free. A call follows redirects, captures
 * the first `capture` bytes of the body (the rest is read and dropped),
 * and ends with exactly one callback unless cancelled. Host names are
 * resolved with evdns: nothing here blocks the loop. Every connection, the
 * first and each redirect's, goes to an address the call's policy allows
 * (lib/netmatch.h), checked after resolution and connected to by number.
 */
#ifndef AQ_HTTP_H
#define AQ_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct aq_error;
struct aq_http;
struct aq_http_call;
struct aq_netmatch;

struct aq_http_limits {
    size_t capture;            /* body bytes kept in the response */
    size_t max_response_bytes; /* larger bodies fail with "too_large" */
    int max_per_host;          /* >= 1: connections open to one host:port */
    int max_redirects;         /* >= 0; 0 = a 3xx is the response */
    bool verify;               /* https: check certificate and host name */
    const struct aq_netmatch *policy; /* where it may connect; NULL = any;
                                         borrowed until the call ends */
};

struct aq_http_request {
    const char *url;       /* http://... or https://...; borrowed */
    const char *method;    /* "GET" "HEAD" "POST" "PUT" "DELETE" "PATCH"
                              "OPTIONS"; NULL = GET */
    const json_t *headers; /* object of strings, or NULL; borrowed */
    const char *body;      /* NULL = none; borrowed until start returns */
    size_t body_len;
};

/* How a call ended; everything is borrowed for the callback only. */
struct aq_http_response {
    const char *err_code;    /* NULL: a response arrived (any status); else
                                "url" "dns" "connect" "tls" "reset" "protocol"
                                "too_large" "redirects" "forbidden" (the
                                policy refused the host or an address) */
    const char *err_message; /* "http: GET http://h/p: connection refused" */
    int status;              /* of the last response head; 0 if none */
    const char *reason;      /* "Not Found"; "" when none */
    const json_t *headers;   /* object; a repeated name is joined with ", " */
    const char *body;        /* the first `capture` bytes (not NUL-ended) */
    size_t body_len;
    bool truncated;      /* the body was longer than capture */
    const char *url;     /* the URL that answered (after redirects) */
    int redirects;       /* redirects followed */
    int64_t duration_us; /* from start to the end of the last response */
};

typedef void aq_http_cb(void *arg, const struct aq_http_response *res);

/* A pool on base (borrowed; it outlives the pool). The caller's; free with
 * aq_http_free. */
struct aq_http *aq_http_new(struct event_base *base);
/* Frees the pool and closes its connections. Calls not yet ended are
 * abandoned without callback; their handles become invalid. NULL is fine. */
void aq_http_free(struct aq_http *h);

/* Whether https:// is built in (OpenSSL). */
bool aq_http_has_tls(void);
/* Checks url is one this client can fetch: 0, or -1 with err (-32602,
 * naming "field"). */
int aq_http_check_url(const char *url, const char *field, struct aq_error *err);
/* The check at put of a URL that passed aq_http_check_url against policy,
 * where it needs no DNS (aq_netmatch_may_allow): 0, or -1 with err
 * (-32005 naming "field", the host and the rule). */
int aq_http_check_target(const char *url, const struct aq_netmatch *policy,
                         const char *field, struct aq_error *err);

/* Starts a call with lim (copied). Returns its handle, valid until the
 * callback returns or aq_http_cancel; the callback never runs inside this
 * function (a bad URL ends the call on the next loop iteration). */
struct aq_http_call *aq_http_start(struct aq_http *h,
                                   const struct aq_http_limits *lim,
                                   const struct aq_http_request *req,
                                   aq_http_cb *cb, void *arg);
/* Stops a call that has not ended: its request is aborted (its connection
 * closed) or it leaves the wait for a connection. No callback follows. */
void aq_http_cancel(struct aq_http_call *c);

/* Connections the pool holds open now to scheme://host:port ("http",
 * "127.0.0.1", 8080), busy or idle; for tests and stats. */
int aq_http_open_conns(const struct aq_http *h, const char *scheme,
                       const char *host, int port);

/* The value of a Retry-After header (delta-seconds, or an HTTP-date) as
 * a delay from now_wall_us (wall-clock microseconds), saturated to
 * [0, AQ_DURATION_MAX_US]: a date in the past is 0. 0, or -1 when value
 * is none of them (or NULL). */
int aq_http_retry_after(const char *value, int64_t now_wall_us,
                        int64_t *delay_us);

#endif
