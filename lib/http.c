/* SPDX-License-Identifier: MIT */
/*
 * lib/http.c: the http kind's client (see http.h): the pool and its calls.
 * A call is sent on a connection of its host (http_conn.c), follows
 * redirects, keeps the first capture bytes of the body, is resent once
 * after a stale keep-alive connection, and ends with one callback from its
 * end_ev. http-internal.h says how the pool, hosts, connections and calls
 * fit together.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* a response's HTTP version: no getter */
#include <event2/keyvalq_struct.h>

#ifdef AQ_HAVE_TLS
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include "clock.h"
#include "http-internal.h"
#include "xmalloc.h"

#define IDLE_CLOSE_US (30 * 1000000LL) /* idle keep-alive connections */
#define SWEEP_INTERVAL_S 5

static void call_dispatch(struct aq_http_call *c);

/* ---- calls ---- */

static void
wait_unlink(struct aq_http_call *c)
{
    if (!c->is_waiting)
        return;
    TAILQ_REMOVE(&c->host->waiting, c, wait_link);
    c->is_waiting = false;
}

static void
response_clear(struct aq_http_call *c)
{
    c->req_ended = false;
    c->got_headers = false;
    c->status = 0;
    free(c->reason);
    c->reason = NULL;
    json_decref(c->res_headers);
    c->res_headers = NULL;
    free(c->location);
    c->location = NULL;
    evbuffer_drain(c->res_body, evbuffer_get_length(c->res_body));
    c->body_seen = 0;
    c->err_code = NULL;
    c->err_detail[0] = '\0';
}

/* Lets go of c's connection: back to idle for the next caller, or freed
 * if it cannot carry another request. Then a waiter of the host, if any,
 * gets a connection. */
static void
conn_release(struct aq_http_call *c, bool reusable)
{
    struct conn *cn = c->conn;
    struct host *ho;
    struct aq_http_call *w;

    if (cn == NULL)
        return;
    ho = cn->host;
    c->conn = NULL;
    cn->call = NULL;
    if (!reusable || cn->is_dead || cn->no_reuse || cn->evcon == NULL)
        http_conn_free(cn);
    else
        cn->idle_since_us = aq_clock_mono_us();
    if ((w = TAILQ_FIRST(&ho->waiting)) != NULL) {
        wait_unlink(w);
        call_dispatch(w);
    }
}

static void
header_cb_json(struct aq_http_call *c, struct evhttp_request *req)
{
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;

    c->res_headers = json_object();
    for (kv = hdrs->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        json_t *old = json_object_get(c->res_headers, kv->key);
        json_t *v;

        if (old != NULL) {
            char *joined =
                xasprintf("%s, %s", json_string_value(old), kv->value);

            v = json_string(joined);
            free(joined);
        } else
            v = json_string(kv->value);
        /* Header bytes that are not UTF-8 cannot be JSON strings. */
        if (v == NULL)
            v = json_string("(not UTF-8)");
        json_object_set_new(c->res_headers, kv->key, v);
    }
}

static int
req_header_cb(struct evhttp_request *req, void *arg)
{
    struct aq_http_call *c = arg;
    const char *loc;

    c->got_headers = true;
    c->status = evhttp_request_get_response_code(req);
    free(c->reason);
    c->reason = xstrdup(evhttp_request_get_response_code_line(req) != NULL
                            ? evhttp_request_get_response_code_line(req)
                            : "");
    json_decref(c->res_headers);
    header_cb_json(c, req);
    loc = evhttp_find_header(evhttp_request_get_input_headers(req), "Location");
    if (req->major == 1 && req->minor == 0 && c->conn != NULL) {
        const char *ka = evhttp_find_header(
            evhttp_request_get_input_headers(req), "Connection");

        c->conn->no_reuse = ka == NULL || strcasecmp(ka, "keep-alive") != 0;
    }
    free(c->location);
    c->location = loc != NULL ? xstrdup(loc) : NULL;
    return 0;
}

static void
req_chunk_cb(struct evhttp_request *req, void *arg)
{
    struct aq_http_call *c = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    size_t have = evbuffer_get_length(c->res_body);

    if (have < c->lim.capture) {
        size_t take = c->lim.capture - have;

        evbuffer_remove_buffer(in, c->res_body, take < n ? take : n);
    }
    c->body_seen += n; /* evhttp drains the rest after this returns */
}

/* Names what went wrong with the request on c's connection, from libevent's
 * error, the socket error it saved, and the TLS or DNS state. */
static void
classify_error(struct aq_http_call *c, enum evhttp_request_error e,
               int sock_err)
{
    struct bufferevent *bev =
        c->conn != NULL ? evhttp_connection_get_bufferevent(c->conn->evcon)
                        : NULL;
    int dns_err = bev != NULL ? bufferevent_socket_get_dns_error(bev) : 0;

    if (dns_err != 0) {
        c->err_code = "dns";
        snprintf(c->err_detail, sizeof c->err_detail, "cannot resolve %s: %s",
                 c->hostname, evutil_gai_strerror(dns_err));
        return;
    }
#ifdef AQ_HAVE_TLS
    if (c->is_tls && bev != NULL && !c->got_headers) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
        unsigned long oe = bufferevent_get_openssl_error(bev);

        if (vr != X509_V_OK) {
            c->err_code = "tls";
            snprintf(c->err_detail, sizeof c->err_detail,
                     "certificate of %s not trusted: %s", c->hostname,
                     X509_verify_cert_error_string(vr));
            return;
        }
        if (oe != 0) {
            char buf[160];

            ERR_error_string_n(oe, buf, sizeof buf);
            c->err_code = "tls";
            snprintf(c->err_detail, sizeof c->err_detail,
                     "TLS handshake with %s failed: %s", c->hostname, buf);
            return;
        }
    }
#endif
    switch (e) {
    case EVREQ_HTTP_DATA_TOO_LONG:
        c->err_code = "too_large";
        if (c->got_headers)
            snprintf(c->err_detail, sizeof c->err_detail,
                     "response body over %zu bytes (http.max_response_bytes)",
                     c->lim.max_response_bytes);
        else
            snprintf(c->err_detail, sizeof c->err_detail,
                     "response header over %d bytes", MAX_HEADERS_BYTES);
        return;
    case EVREQ_HTTP_INVALID_HEADER:
        c->err_code = "protocol";
        snprintf(c->err_detail, sizeof c->err_detail, "invalid HTTP response");
        return;
    case EVREQ_HTTP_TIMEOUT:
        c->err_code = "reset";
        snprintf(c->err_detail, sizeof c->err_detail, "no data for %d s",
                 CONN_TIMEOUT_S);
        return;
    default:
        break;
    }
    if (sock_err == ECONNREFUSED || sock_err == ENETUNREACH ||
        sock_err == EHOSTUNREACH || sock_err == ETIMEDOUT ||
        sock_err == EADDRNOTAVAIL) {
        c->err_code = "connect";
        snprintf(c->err_detail, sizeof c->err_detail,
                 "cannot connect to %s:%d: %s", c->hostname, c->port,
                 strerror(sock_err));
    } else if (c->got_headers) {
        c->err_code = "reset";
        snprintf(c->err_detail, sizeof c->err_detail,
                 "connection closed before the response ended (%zu body "
                 "bytes)%s%s",
                 c->body_seen, sock_err != 0 ? ": " : "",
                 sock_err != 0 ? strerror(sock_err) : "");
    } else {
        c->err_code = "reset";
        snprintf(c->err_detail, sizeof c->err_detail,
                 "connection closed without a response%s%s",
                 sock_err != 0 ? ": " : "",
                 sock_err != 0 ? strerror(sock_err) : "");
    }
}

static void
req_error_cb(enum evhttp_request_error e, void *arg)
{
    struct aq_http_call *c = arg;
    int sock_err = errno; /* evhttp restores the socket's error for us */

    if (e == EVREQ_HTTP_REQUEST_CANCEL)
        return; /* our own cancel: the call is being dropped */
    classify_error(c, e, sock_err);
}

static void
req_done_cb(struct evhttp_request *req, void *arg)
{
    struct aq_http_call *c = arg;

    if (c->req_ended)
        return;
    c->req = NULL; /* evhttp frees it after this returns */
    c->req_ended = true;
    if (req != NULL && evhttp_request_get_response_code(req) == 0 &&
        c->err_code == NULL) {
        /* evhttp's connect cleanup: the request back without an error
         * callback. It takes that path for ECONNREFUSED. */
        c->err_code = "connect";
        snprintf(c->err_detail, sizeof c->err_detail,
                 "cannot connect to %s:%d: connection refused", c->hostname,
                 c->port);
    } else if (req == NULL || evhttp_request_get_response_code(req) == 0) {
        if (c->err_code == NULL) {
            c->err_code = "reset";
            snprintf(c->err_detail, sizeof c->err_detail,
                     "connection closed without a response");
        }
    }
    event_active(c->end_ev, EV_TIMEOUT, 0);
}

/* Sends c's request on cn. */
void
http_call_send(struct aq_http_call *c, struct conn *cn)
{
    struct evhttp_request *req = evhttp_request_new(req_done_cb, c);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    bool has_host = false, has_ua = false, with_body;
    const char *name;
    json_t *v;

    c->conn = cn;
    cn->call = c;
    c->want_fresh = false;
    c->conn_was_reused = cn->was_used;
    cn->was_used = true;
    c->req = req;
    evhttp_request_set_error_cb(req, req_error_cb);
    evhttp_request_set_header_cb(req, req_header_cb);
    evhttp_request_set_chunked_cb(req, req_chunk_cb);
    evhttp_connection_set_max_body_size(cn->evcon,
                                        (ev_ssize_t)c->lim.max_response_bytes);
    json_object_foreach (c->headers, name, v) {
        if (c->strip_credentials && (strcasecmp(name, "Authorization") == 0 ||
                                     strcasecmp(name, "Cookie") == 0))
            continue;
        if (strcasecmp(name, "Content-Length") == 0)
            continue; /* ours, from the body */
        if (strcasecmp(name, "Host") == 0) {
            if (c->strip_credentials)
                continue; /* it named the first host */
            has_host = true;
        }
        has_ua = has_ua || strcasecmp(name, "User-Agent") == 0;
        evhttp_add_header(out, name, json_string_value(v));
    }
    if (!has_host) {
        bool default_port = c->port == (c->is_tls ? 443 : 80);
        bool v6 = strchr(c->hostname, ':') != NULL;
        char host[300];

        snprintf(host, sizeof host, "%s%s%s%s%.0d", v6 ? "[" : "", c->hostname,
                 v6 ? "]" : "", default_port ? "" : ":",
                 default_port ? 0 : c->port);
        evhttp_add_header(out, "Host", host);
    }
    if (!has_ua)
        evhttp_add_header(out, "User-Agent", "asyncq/" ASYNCQ_VERSION);
    with_body = c->body != NULL || c->method == EVHTTP_REQ_POST ||
                c->method == EVHTTP_REQ_PUT || c->method == EVHTTP_REQ_PATCH;
    if (with_body) {
        char len[32];

        snprintf(len, sizeof len, "%zu", c->body_len);
        evhttp_add_header(out, "Content-Length", len);
        if (c->body_len > 0)
            evbuffer_add(evhttp_request_get_output_buffer(req), c->body,
                         c->body_len);
    }
    /* Whatever happens, evhttp reports it through req_done_cb (perhaps
     * from inside this call, which end_ev defers). */
    if (evhttp_make_request(cn->evcon, req, c->method, c->target) < 0 &&
        !c->req_ended) {
        /* Refused before queueing: evhttp has freed req. */
        c->req = NULL;
        c->req_ended = true;
        if (c->err_code == NULL) {
            c->err_code = "connect";
            snprintf(c->err_detail, sizeof c->err_detail,
                     "cannot connect to %s:%d", c->hostname, c->port);
        }
        cn->is_dead = true;
        event_active(c->end_ev, EV_TIMEOUT, 0);
    }
}

/* Sends c now if its host has a connection for it, else queues it. */
static void
call_dispatch(struct aq_http_call *c)
{
    struct host *ho = http_host_get(c->h, c->scheme, c->hostname, c->port);
    struct conn *cn;

    c->host = ho;
    if (c->want_fresh) {
        /* Not an idle one (it may be as stale as the last): close one to
         * make room if the host is at its limit. */
        cn = NULL;
        if (ho->nconns >= c->lim.max_per_host)
            http_conn_close_one_idle(ho);
    } else
        cn = http_conn_idle(ho, c);
    if (cn == NULL && ho->nconns < c->lim.max_per_host) {
        http_conn_open(ho, c);
        return;
    }
    if (cn == NULL) {
        c->is_waiting = true;
        TAILQ_INSERT_TAIL(&ho->waiting, c, wait_link);
        return;
    }
    http_call_send(c, cn);
}

/* Takes url as c's current one. 0, or -1 with c's error set. */
static int
call_set_url(struct aq_http_call *c, const char *url)
{
    char *scheme, *hostname, *target;
    const char *why;
    int port;

    if (http_url_split(url, &scheme, &hostname, &port, &target, &why) < 0) {
        c->err_code = c->redirects > 0 ? "redirects" : "url";
        snprintf(c->err_detail, sizeof c->err_detail, "%s%s: %.120s",
                 c->redirects > 0 ? "redirected to a URL that is " : "", why,
                 url);
        return -1;
    }
    if (c->hostname != NULL &&
        (strcasecmp(c->hostname, hostname) != 0 || c->port != port))
        c->strip_credentials = true;
    free(c->url);
    free(c->scheme);
    free(c->hostname);
    free(c->target);
    c->url = xstrdup(url);
    c->scheme = scheme;
    c->hostname = hostname;
    c->target = target;
    c->port = port;
    c->is_tls = strcmp(scheme, "https") == 0;
    return 0;
}

/* The absolute URL a Location value points to from c's current URL (a new
 * string). */
static char *
resolve_location(const struct aq_http_call *c, const char *loc)
{
    bool v6 = strchr(c->hostname, ':') != NULL;
    char *out, *base;

    if (strstr(loc, "://") != NULL && strcspn(loc, ":/?#") == strcspn(loc, ":"))
        return xstrdup(loc); /* absolute */
    if (loc[0] == '/' && loc[1] == '/')
        return xasprintf("%s:%s", c->scheme, loc);
    base = xasprintf("%s://%s%s%s:%d", c->scheme, v6 ? "[" : "", c->hostname,
                     v6 ? "]" : "", c->port);
    if (loc[0] == '/')
        out = xasprintf("%s%s", base, loc);
    else {
        /* Relative to the current path's directory. */
        size_t dir = strcspn(c->target, "?");

        while (dir > 0 && c->target[dir - 1] != '/')
            dir--;
        out = xasprintf("%s%.*s%s", base, (int)dir, c->target, loc);
    }
    free(base);
    return out;
}

static bool
is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 ||
           status == 308;
}

static bool
is_idempotent(enum evhttp_cmd_type m)
{
    return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD || m == EVHTTP_REQ_PUT ||
           m == EVHTTP_REQ_DELETE || m == EVHTTP_REQ_OPTIONS;
}

static void
call_free(struct aq_http_call *c)
{
    event_free(c->end_ev);
    free(c->method_name);
    json_decref(c->headers);
    free(c->body);
    free(c->url);
    free(c->scheme);
    free(c->hostname);
    free(c->target);
    free(c->reason);
    json_decref(c->res_headers);
    free(c->location);
    evbuffer_free(c->res_body);
    free(c);
}

/* The current request of c ended (end_ev): follow a redirect, resend after
 * a stale keep-alive connection, or report. */
static void
call_end_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_http_call *c = arg;
    struct aq_http_response res = {0};
    char msg[512];
    int64_t now = aq_clock_mono_us();

    if (c->err_code == NULL && is_redirect(c->status) && c->location != NULL &&
        c->lim.max_redirects > 0) {
        char *next;

        conn_release(c, true);
        if (c->redirects >= c->lim.max_redirects) {
            c->err_code = "redirects";
            snprintf(c->err_detail, sizeof c->err_detail,
                     "more than %d redirects (http.max_redirects)",
                     c->lim.max_redirects);
            goto report;
        }
        next = resolve_location(c, c->location);
        c->redirects++;
        if (call_set_url(c, next) < 0) {
            free(next);
            goto report;
        }
        free(next);
        if (c->status == 303 || ((c->status == 301 || c->status == 302) &&
                                 c->method == EVHTTP_REQ_POST)) {
            if (c->method != EVHTTP_REQ_HEAD) {
                c->method = EVHTTP_REQ_GET;
                free(c->method_name);
                c->method_name = xstrdup("GET");
            }
            free(c->body);
            c->body = NULL;
            c->body_len = 0;
        }
        response_clear(c);
        call_dispatch(c);
        return;
    }
    if (c->err_code != NULL && c->conn_was_reused && !c->got_headers &&
        !c->stale_retried && is_idempotent(c->method) &&
        strcmp(c->err_code, "reset") == 0) {
        /* The server closed a keep-alive connection as we reused it: the
         * request never reached it. Once, on a new connection. */
        c->stale_retried = true;
        c->want_fresh = true;
        conn_release(c, false);
        response_clear(c);
        call_dispatch(c);
        return;
    }
    conn_release(c, c->err_code == NULL);
report:
    snprintf(msg, sizeof msg, "http: %s %.200s: %s", c->method_name, c->url,
             c->err_detail);
    res.err_code = c->err_code;
    res.err_message = c->err_code != NULL ? msg : NULL;
    res.status = c->status;
    res.reason = c->reason != NULL ? c->reason : "";
    res.headers = c->res_headers;
    res.body = (const char *)evbuffer_pullup(c->res_body, -1);
    res.body_len = evbuffer_get_length(c->res_body);
    res.truncated = c->body_seen > res.body_len;
    res.url = c->url;
    res.redirects = c->redirects;
    res.duration_us = now - c->start_us;
    LIST_REMOVE(c, link);
    c->cb(c->arg, &res);
    call_free(c);
}

static enum evhttp_cmd_type
method_parse(const char *m, bool *ok)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {
        {"GET", EVHTTP_REQ_GET},         {"HEAD", EVHTTP_REQ_HEAD},
        {"POST", EVHTTP_REQ_POST},       {"PUT", EVHTTP_REQ_PUT},
        {"DELETE", EVHTTP_REQ_DELETE},   {"PATCH", EVHTTP_REQ_PATCH},
        {"OPTIONS", EVHTTP_REQ_OPTIONS},
    };

    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(m, methods[i].name) == 0) {
            *ok = true;
            return methods[i].type;
        }
    }
    *ok = false;
    return EVHTTP_REQ_GET;
}

struct aq_http_call *
aq_http_start(struct aq_http *h, const struct aq_http_limits *lim,
              const struct aq_http_request *req, aq_http_cb *cb, void *arg)
{
    struct aq_http_call *c = xcalloc(1, sizeof *c);
    bool ok;

    c->h = h;
    c->lim = *lim;
    if (c->lim.max_per_host < 1)
        c->lim.max_per_host = 1;
    c->cb = cb;
    c->arg = arg;
    c->method_name = xstrdup(req->method != NULL ? req->method : "GET");
    c->method = method_parse(c->method_name, &ok);
    c->headers = req->headers != NULL ? json_incref((json_t *)req->headers)
                                      : json_object();
    if (req->body != NULL) {
        c->body = xmemdup(req->body, req->body_len);
        c->body_len = req->body_len;
    }
    c->res_body = evbuffer_new();
    c->end_ev = event_new(h->base, -1, 0, call_end_cb, c);
    c->start_us = aq_clock_mono_us();
    LIST_INSERT_HEAD(&h->calls, c, link);
    if (!ok) {
        c->url = xstrdup(req->url);
        c->err_code = "url";
        snprintf(c->err_detail, sizeof c->err_detail, "method not supported");
        event_active(c->end_ev, EV_TIMEOUT, 0);
    } else if (call_set_url(c, req->url) < 0) {
        c->url = xstrdup(req->url);
        event_active(c->end_ev, EV_TIMEOUT, 0);
    } else
        call_dispatch(c);
    return c;
}

void
aq_http_cancel(struct aq_http_call *c)
{
    struct conn *cn = c->conn;

    wait_unlink(c);
    if (cn != NULL) {
        if (c->req != NULL && !c->req_ended) {
            c->req_ended = true; /* callbacks from the cancel are ignored */
            evhttp_cancel_request(c->req);
            c->req = NULL;
            cn->is_dead = true;
        }
        conn_release(c, c->err_code == NULL && !cn->is_dead);
    }
    LIST_REMOVE(c, link);
    call_free(c);
}

int
aq_http_open_conns(const struct aq_http *h, const char *scheme,
                   const char *host, int port)
{
    const struct host *ho = http_host_find(h, scheme, host, port);

    return ho != NULL ? ho->nconns : 0;
}

/* ---- the pool ---- */

/* Closes connections idle for long and forgets hosts with nothing left. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_http *h = arg;
    struct host *ho, *ho_next;
    int64_t now = aq_clock_mono_us();

    for (ho = LIST_FIRST(&h->hosts); ho != NULL; ho = ho_next) {
        struct conn *cn, *next;

        ho_next = LIST_NEXT(ho, link);
        for (cn = LIST_FIRST(&ho->conns); cn != NULL; cn = next) {
            next = LIST_NEXT(cn, link);
            if (cn->call == NULL &&
                (cn->is_dead || now - cn->idle_since_us > IDLE_CLOSE_US))
                http_conn_free(cn);
        }
        if (LIST_EMPTY(&ho->conns) && TAILQ_EMPTY(&ho->waiting)) {
            LIST_REMOVE(ho, link);
            http_host_free(ho);
        }
    }
}

struct aq_http *
aq_http_new(struct event_base *base)
{
    struct aq_http *h = xcalloc(1, sizeof *h);
    struct timeval tv = {SWEEP_INTERVAL_S, 0};

    h->base = base;
    LIST_INIT(&h->hosts);
    LIST_INIT(&h->calls);
    h->sweep_ev = event_new(base, -1, EV_PERSIST, sweep_cb, h);
    event_add(h->sweep_ev, &tv);
    return h;
}

void
aq_http_free(struct aq_http *h)
{
    struct host *ho;

    if (h == NULL)
        return;
    while (!LIST_EMPTY(&h->calls)) {
        struct aq_http_call *c = LIST_FIRST(&h->calls);

        /* No waiter may be handed a connection while we tear down. */
        wait_unlink(c);
        if (c->req != NULL && !c->req_ended) {
            c->req_ended = true;
            evhttp_cancel_request(c->req);
        }
        if (c->conn != NULL)
            c->conn->call = NULL;
        LIST_REMOVE(c, link);
        call_free(c);
    }
    while ((ho = LIST_FIRST(&h->hosts)) != NULL) {
        LIST_REMOVE(ho, link);
        while (!LIST_EMPTY(&ho->conns))
            http_conn_free(LIST_FIRST(&ho->conns));
        http_host_free(ho);
    }
    event_free(h->sweep_ev);
    /* Lookups in flight end with a callback that frees their struct
     * resolve (from the loop, if it runs again). */
    if (h->dns != NULL)
        evdns_base_free(h->dns, 1);
#ifdef AQ_HAVE_TLS
    SSL_CTX_free(h->tls_verify);
    SSL_CTX_free(h->tls_noverify);
#endif
    free(h);
}
