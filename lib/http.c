/* SPDX-License-Identifier: MIT */
/*
 * lib/http.c: the http kind's client (see http.h). Structure:
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
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
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
#include <openssl/x509v3.h>
#endif

#include "clock.h"
#include "error.h"
#include "log.h"
#include "netmatch.h"
#include "xmalloc.h"

#define MAX_HEADERS_BYTES (64 * 1024) /* response header block */
#define CONN_TIMEOUT_S 86400 /* evhttp's own inactivity timeout: the job's
                                timeout is the one that counts */
#define IDLE_CLOSE_US (30 * 1000000LL) /* idle keep-alive connections */
#define SWEEP_INTERVAL_S 5

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
    char *url;       /* owned: the URL being fetched now */
    char *scheme, *hostname, *target; /* owned, parsed from url */
    int port;
    bool is_tls;
    bool strip_credentials; /* redirected to another host */
    int redirects;
    bool stale_retried; /* resent once after a reused connection died */
    bool want_fresh;    /* the resend: on a new connection */
    int64_t start_us;
    /* where it is */
    struct host *host;     /* while waiting or sent */
    struct conn *conn;     /* while sent */
    struct evhttp_request *req; /* evhttp's; until its callback */
    bool is_waiting;       /* in host's FIFO */
    TAILQ_ENTRY(aq_http_call) wait_link;
    LIST_ENTRY(aq_http_call) link; /* the pool's calls */
    struct event *end_ev;  /* owned: acts on an ended request */
    /* how the current request ended */
    bool req_ended;
    bool got_headers;
    bool conn_was_reused;
    int status;
    char *reason;   /* owned */
    json_t *res_headers; /* owned */
    char *location; /* owned: the Location header */
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
    bool is_dead;   /* closed by the peer or an error: never reused */
    bool no_reuse;  /* an HTTP/1.0 answer without keep-alive: the server
                       closes it, maybe just after we would reuse it */
    bool was_used;  /* has carried a request */
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
    struct evdns_base *dns; /* owned; created at the first host name */
    LIST_HEAD(, host) hosts;         /* owned */
    LIST_HEAD(, aq_http_call) calls; /* not ended; owned */
    struct event *sweep_ev; /* owned: closes long-idle connections */
#ifdef AQ_HAVE_TLS
    SSL_CTX *tls_verify, *tls_noverify; /* owned; created when first needed */
#endif
};

static void call_dispatch(struct aq_http_call *c);

/* ---- URLs ---- */

/* The parts of url the client needs (new strings, the caller's). 0, or -1
 * with why (static text). */
static int
url_split(const char *url, char **scheme, char **hostname, int *port,
          char **target, const char **why)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    const char *s, *host, *path, *query;
    size_t hlen;

    *why = NULL;
    if (u == NULL) {
        *why = "not a valid URL";
        return -1;
    }
    s = evhttp_uri_get_scheme(u);
    host = evhttp_uri_get_host(u);
    if (s == NULL || (strcasecmp(s, "http") != 0 && strcasecmp(s, "https") != 0))
        *why = "expected an http:// or https:// URL";
    else if (strcasecmp(s, "https") == 0 && !aq_http_has_tls())
        *why = "https is not available in this build (built without OpenSSL)";
    else if (host == NULL || host[0] == '\0')
        *why = "no host";
    else if (evhttp_uri_get_userinfo(u) != NULL)
        *why = "credentials in the URL are not supported (send an "
               "Authorization header)";
    else if (evhttp_uri_get_port(u) == 0)
        *why = "bad port";
    if (*why != NULL) {
        evhttp_uri_free(u);
        return -1;
    }
    *scheme = xstrdup(strcasecmp(s, "https") == 0 ? "https" : "http");
    hlen = strlen(host);
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']')
        *hostname = xasprintf("%.*s", (int)(hlen - 2), host + 1);
    else
        *hostname = xstrdup(host);
    *port = evhttp_uri_get_port(u);
    if (*port < 0)
        *port = strcmp(*scheme, "https") == 0 ? 443 : 80;
    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (path == NULL || path[0] == '\0')
        path = "/";
    *target = xasprintf("%s%s%s", path, query != NULL ? "?" : "",
                        query != NULL ? query : "");
    evhttp_uri_free(u);
    return 0;
}

int
aq_http_check_url(const char *url, const char *field, struct aq_error *err)
{
    char *scheme, *hostname, *target;
    const char *why;
    int port;

    if (url_split(url, &scheme, &hostname, &port, &target, &why) < 0) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "%s: %s: \"%.200s\"", field,
                     why, url);
        return -1;
    }
    free(scheme);
    free(hostname);
    free(target);
    return 0;
}

int
aq_http_check_target(const char *url, const struct aq_netmatch *policy,
                     const char *field, struct aq_error *err)
{
    char *scheme, *hostname, *target;
    const char *bad;
    char why[160];
    int port, rc = 0;

    if (url_split(url, &scheme, &hostname, &port, &target, &bad) < 0)
        return 0; /* aq_http_check_url says what is wrong */
    if (!aq_netmatch_may_allow(policy, hostname, port, why, sizeof why)) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "%s: %.200s port %d is not allowed (%s)", field, hostname,
                     port, why);
        rc = -1;
    }
    free(scheme);
    free(hostname);
    free(target);
    return rc;
}

bool
aq_http_has_tls(void)
{
#ifdef AQ_HAVE_TLS
    return true;
#else
    return false;
#endif
}

/* ---- connections ---- */

static struct host *
host_find(const struct aq_http *h, const char *scheme, const char *name,
          int port)
{
    struct host *ho;

    for (ho = LIST_FIRST(&h->hosts); ho != NULL; ho = LIST_NEXT(ho, link)) {
        if (ho->port == port && strcmp(ho->scheme, scheme) == 0 &&
            strcasecmp(ho->name, name) == 0)
            return ho;
    }
    return NULL;
}

static struct host *
host_get(struct aq_http *h, const char *scheme, const char *name, int port)
{
    struct host *ho = host_find(h, scheme, name, port);

    if (ho != NULL)
        return ho;
    ho = xcalloc(1, sizeof *ho);
    ho->h = h;
    ho->scheme = xstrdup(scheme);
    ho->name = xstrdup(name);
    ho->port = port;
    ho->is_tls = strcmp(scheme, "https") == 0;
    LIST_INIT(&ho->conns);
    TAILQ_INIT(&ho->waiting);
    LIST_INSERT_HEAD(&h->hosts, ho, link);
    return ho;
}

static void
host_free(struct host *ho)
{
    free(ho->scheme);
    free(ho->name);
    free(ho);
}

static void
conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    struct conn *cn = arg;

    cn->is_dead = true;
}

static void
conn_free(struct conn *cn)
{
    struct host *ho = cn->host;

    LIST_REMOVE(cn, link);
    ho->nconns--;
    if (cn->resolve != NULL)
        cn->resolve->cn = NULL;
    if (cn->evcon != NULL) {
        evhttp_connection_set_closecb(cn->evcon, NULL, NULL);
        evhttp_connection_free(cn->evcon);
    }
    free(cn);
}

#ifdef AQ_HAVE_TLS
static bool
is_numeric_host(const char *name)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, name, buf) == 1 ||
           inet_pton(AF_INET6, name, buf) == 1;
}

static SSL_CTX *
tls_ctx(struct aq_http *h, bool verify)
{
    SSL_CTX **slot = verify ? &h->tls_verify : &h->tls_noverify;
    SSL_CTX *ctx = *slot;

    if (ctx != NULL)
        return ctx;
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (verify) {
        /* The system store; SSL_CERT_FILE / SSL_CERT_DIR override it. */
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            aq_log(AQ_LOG_WARN, "http: cannot load the system CA store");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    *slot = ctx;
    return ctx;
}

/* A TLS bufferevent for a connection to ho, verifying as asked. NULL if
 * OpenSSL failed (out of memory, no context). */
static struct bufferevent *
tls_bev(struct aq_http *h, const struct host *ho, bool verify)
{
    SSL_CTX *ctx = tls_ctx(h, verify);
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    struct bufferevent *bev;
    bool numeric = is_numeric_host(ho->name);

    if (ssl == NULL)
        return NULL;
    if (!numeric)
        SSL_set_tlsext_host_name(ssl, ho->name); /* SNI */
    if (verify) {
        int ok = numeric
                     ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                                     ho->name)
                     : SSL_set1_host(ssl, ho->name);

        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    bev = bufferevent_openssl_socket_new(
        h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Many servers close without a TLS close_notify; the HTTP framing
     * (Content-Length, chunks) says whether a body is complete. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}
#endif

static struct evdns_base *
pool_dns(struct aq_http *h)
{
    if (h->dns != NULL)
        return h->dns;
    h->dns = evdns_base_new(h->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (h->dns == NULL) {
        /* No usable resolv.conf: /etc/hosts still answers. */
        aq_log(AQ_LOG_WARN, "http: no DNS servers configured "
                            "(/etc/resolv.conf); only /etc/hosts resolves");
        h->dns = evdns_base_new(h->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (h->dns != NULL)
            evdns_base_load_hosts(h->dns, NULL);
    }
    return h->dns;
}

/* Ends c's current request before it was sent, with code and a message
 * (from end_ev); its connection, if any, is not reused. */
static void call_fail(struct aq_http_call *c, const char *code, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

static void
call_fail(struct aq_http_call *c, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err_detail, sizeof c->err_detail, fmt, ap);
    va_end(ap);
    c->err_code = code;
    c->req_ended = true;
    if (c->conn != NULL)
        c->conn->is_dead = true;
    event_active(c->end_ev, EV_TIMEOUT, 0);
}

static void call_send(struct aq_http_call *c, struct conn *cn);

/* The address of ss (AF_INET or AF_INET6) as text, in buf. */
static void
addr_text(const struct sockaddr_storage *ss, char buf[NI_MAXHOST])
{
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);

    if (getnameinfo((const struct sockaddr *)ss, len, buf, NI_MAXHOST, NULL,
                    0, NI_NUMERICHOST) != 0)
        snprintf(buf, NI_MAXHOST, "?");
}

/* Connects cn to addrs, the addresses of its host, and sends its call on
 * it: every address must be allowed by the call's policy (one refused
 * refuses the host: a name answering with a private address beside a
 * public one is not to be trusted), and the connection goes to the first,
 * given to evhttp as a numeric address so that nothing resolves the name
 * again between the check and the connect. */
static void
conn_connect(struct conn *cn, const struct evutil_addrinfo *addrs)
{
    struct host *ho = cn->host;
    struct aq_http *h = ho->h;
    struct aq_http_call *c = cn->call;
    const struct evutil_addrinfo *ai;
    struct bufferevent *bev = NULL;
    char numeric[NI_MAXHOST], why[160];
    bool have = false;

    for (ai = addrs; ai != NULL; ai = ai->ai_next) {
        struct sockaddr_storage ss = {0};

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof ss)
            continue;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)ho->port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)ho->port);
        addr_text(&ss, numeric);
        if (c->lim.policy != NULL &&
            !aq_netmatch_allows(c->lim.policy, ho->name, (struct sockaddr *)&ss,
                                why, sizeof why)) {
            if (strcmp(numeric, ho->name) == 0)
                call_fail(c, "forbidden", "%s port %d is not allowed (%s)",
                          ho->name, ho->port, why);
            else
                call_fail(c, "forbidden", "%s (%s) port %d is not allowed (%s)",
                          ho->name, numeric, ho->port, why);
            return;
        }
        if (!have)
            cn->addr = ss;
        have = true;
    }
    if (!have) {
        call_fail(c, "dns", "cannot resolve %s: no IP address", ho->name);
        return;
    }
    addr_text(&cn->addr, numeric);
#ifdef AQ_HAVE_TLS
    /* SNI and the certificate check name the host, not the address. */
    if (ho->is_tls && (bev = tls_bev(h, ho, c->lim.verify)) == NULL) {
        call_fail(c, "tls", "cannot set up TLS for %s", ho->name);
        return;
    }
#endif
    cn->evcon = evhttp_connection_base_bufferevent_new(
        h->base, NULL, bev, numeric, (uint16_t)ho->port);
    if (cn->evcon == NULL) {
        if (bev != NULL)
            bufferevent_free(bev);
        call_fail(c, "connect", "cannot create a connection");
        return;
    }
    evhttp_connection_set_family(cn->evcon, cn->addr.ss_family);
    evhttp_connection_set_retries(cn->evcon, 0);
    evhttp_connection_set_timeout(cn->evcon, CONN_TIMEOUT_S);
    evhttp_connection_set_max_headers_size(cn->evcon, MAX_HEADERS_BYTES);
    evhttp_connection_set_closecb(cn->evcon, conn_closed_cb, cn);
    call_send(c, cn);
}

static void
resolve_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolve *r = arg;
    struct conn *cn = r->cn;

    free(r);
    if (cn != NULL) {
        cn->resolve = NULL;
        if (result != 0)
            call_fail(cn->call, "dns", "cannot resolve %s: %s", cn->host->name,
                      evutil_gai_strerror(result));
        else
            conn_connect(cn, res);
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
}

/* Opens a new connection of ho for c: an address literal is checked at
 * once, a name first against the patterns and then, resolved by evdns,
 * address by address (conn_connect). c is sent once it is connected, which
 * may be before this returns (a literal, or a name from /etc/hosts), or
 * ends with its error from end_ev. */
static void
conn_open(struct host *ho, struct aq_http_call *c)
{
    struct conn *cn = xcalloc(1, sizeof *cn);
    struct evdns_base *dns;
    struct resolve *r;
    struct evutil_addrinfo hints = {0}, lit = {0};
    struct sockaddr_storage ss = {0};
    char why[160];

    cn->host = ho;
    cn->call = c;
    c->conn = cn;
    LIST_INSERT_HEAD(&ho->conns, cn, link);
    ho->nconns++;
    if (inet_pton(AF_INET, ho->name, &((struct sockaddr_in *)&ss)->sin_addr) ==
        1) {
        ss.ss_family = AF_INET;
        lit.ai_addrlen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, ho->name,
                         &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        lit.ai_addrlen = sizeof(struct sockaddr_in6);
    }
    if (ss.ss_family != 0) {
        lit.ai_family = ss.ss_family;
        lit.ai_addr = (struct sockaddr *)&ss;
        conn_connect(cn, &lit);
        return;
    }
    /* A name refused whatever it resolves to is not even looked up. */
    if (c->lim.policy != NULL &&
        !aq_netmatch_may_allow(c->lim.policy, ho->name, ho->port, why,
                               sizeof why)) {
        call_fail(c, "forbidden", "%s port %d is not allowed (%s)", ho->name,
                  ho->port, why);
        return;
    }
    if ((dns = pool_dns(ho->h)) == NULL) {
        call_fail(c, "dns", "cannot resolve %s: no resolver", ho->name);
        return;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    r = xcalloc(1, sizeof *r);
    r->cn = cn;
    cn->resolve = r;
    /* Answers from /etc/hosts call back before this returns (and free
     * r): the handle it returns is not kept, as nothing cancels it. */
    evdns_getaddrinfo(dns, ho->name, NULL, &hints, resolve_cb, r);
}

/* An idle live connection of ho that c may use, the most recently used,
 * or NULL. Dead idle ones met on the way are freed, and so are those
 * whose address c's policy refuses (the lists changed since). */
static struct conn *
conn_idle(struct host *ho, const struct aq_http_call *c)
{
    struct conn *cn, *next, *best = NULL;
    char why[160];

    for (cn = LIST_FIRST(&ho->conns); cn != NULL; cn = next) {
        next = LIST_NEXT(cn, link);
        if (cn->call != NULL)
            continue;
        if (cn->is_dead || (c->lim.policy != NULL &&
                            !aq_netmatch_allows(c->lim.policy, ho->name,
                                                (struct sockaddr *)&cn->addr,
                                                why, sizeof why))) {
            conn_free(cn);
            continue;
        }
        if (best == NULL || cn->idle_since_us > best->idle_since_us)
            best = cn;
    }
    return best;
}

/* Frees the least recently used idle connection of ho, if any. */
static void
conn_close_one_idle(struct host *ho)
{
    struct conn *cn, *oldest = NULL;

    LIST_FOREACH (cn, &ho->conns, link) {
        if (cn->call == NULL &&
            (oldest == NULL || cn->idle_since_us < oldest->idle_since_us))
            oldest = cn;
    }
    if (oldest != NULL)
        conn_free(oldest);
}

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
        conn_free(cn);
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
    loc = evhttp_find_header(evhttp_request_get_input_headers(req),
                             "Location");
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
classify_error(struct aq_http_call *c, enum evhttp_request_error e, int sock_err)
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
        snprintf(c->err_detail, sizeof c->err_detail,
                 "invalid HTTP response");
        return;
    case EVREQ_HTTP_TIMEOUT:
        c->err_code = "reset";
        snprintf(c->err_detail, sizeof c->err_detail,
                 "no data for %d s", CONN_TIMEOUT_S);
        return;
    default:
        break;
    }
    if (sock_err == ECONNREFUSED || sock_err == ENETUNREACH ||
        sock_err == EHOSTUNREACH || sock_err == ETIMEDOUT ||
        sock_err == EADDRNOTAVAIL) {
        c->err_code = "connect";
        snprintf(c->err_detail, sizeof c->err_detail, "cannot connect to %s:%d: %s",
                 c->hostname, c->port, strerror(sock_err));
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
static void
call_send(struct aq_http_call *c, struct conn *cn)
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

        snprintf(host, sizeof host, "%s%s%s%s%.0d", v6 ? "[" : "",
                 c->hostname, v6 ? "]" : "", default_port ? "" : ":",
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
    struct host *ho =
        host_get(c->h, c->scheme, c->hostname, c->port);
    struct conn *cn;

    c->host = ho;
    if (c->want_fresh) {
        /* Not an idle one (it may be as stale as the last): close one to
         * make room if the host is at its limit. */
        cn = NULL;
        if (ho->nconns >= c->lim.max_per_host)
            conn_close_one_idle(ho);
    } else
        cn = conn_idle(ho, c);
    if (cn == NULL && ho->nconns < c->lim.max_per_host) {
        conn_open(ho, c);
        return;
    }
    if (cn == NULL) {
        c->is_waiting = true;
        TAILQ_INSERT_TAIL(&ho->waiting, c, wait_link);
        return;
    }
    call_send(c, cn);
}

/* Takes url as c's current one. 0, or -1 with c's error set. */
static int
call_set_url(struct aq_http_call *c, const char *url)
{
    char *scheme, *hostname, *target;
    const char *why;
    int port;

    if (url_split(url, &scheme, &hostname, &port, &target, &why) < 0) {
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
    return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD ||
           m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_DELETE ||
           m == EVHTTP_REQ_OPTIONS;
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

    if (c->err_code == NULL && is_redirect(c->status) &&
        c->location != NULL && c->lim.max_redirects > 0) {
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
        if (c->status == 303 ||
            ((c->status == 301 || c->status == 302) &&
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
        {"GET", EVHTTP_REQ_GET},       {"HEAD", EVHTTP_REQ_HEAD},
        {"POST", EVHTTP_REQ_POST},     {"PUT", EVHTTP_REQ_PUT},
        {"DELETE", EVHTTP_REQ_DELETE}, {"PATCH", EVHTTP_REQ_PATCH},
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
        snprintf(c->err_detail, sizeof c->err_detail,
                 "method not supported");
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
    const struct host *ho = host_find(h, scheme, host, port);

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
                conn_free(cn);
        }
        if (LIST_EMPTY(&ho->conns) && TAILQ_EMPTY(&ho->waiting)) {
            LIST_REMOVE(ho, link);
            host_free(ho);
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
            conn_free(LIST_FIRST(&ho->conns));
        host_free(ho);
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
