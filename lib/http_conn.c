/* SPDX-License-Identifier: MIT */
/*
 * lib/http_conn.c: the http client's hosts and their keep-alive
 * connections (see http-internal.h). A connection is opened for a call:
 * its host name resolved by evdns, every address checked against the
 * call's allow/deny policy, connected to by number, over TLS for https. A
 * failure before the request is sent ends the call from its end_ev.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>

#ifdef AQ_HAVE_TLS
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#include "http-internal.h"
#include "log.h"
#include "netmatch.h"
#include "xmalloc.h"

struct host *
http_host_find(const struct aq_http *h, const char *scheme, const char *name,
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

struct host *
http_host_get(struct aq_http *h, const char *scheme, const char *name, int port)
{
    struct host *ho = http_host_find(h, scheme, name, port);

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

void
http_host_free(struct host *ho)
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

void
http_conn_free(struct conn *cn)
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
        int ok = numeric ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
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

/* The address of ss (AF_INET or AF_INET6) as text, in buf. */
static void
addr_text(const struct sockaddr_storage *ss, char buf[NI_MAXHOST])
{
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);

    if (getnameinfo((const struct sockaddr *)ss, len, buf, NI_MAXHOST, NULL, 0,
                    NI_NUMERICHOST) != 0)
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
    http_call_send(c, cn);
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
void
http_conn_open(struct host *ho, struct aq_http_call *c)
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
struct conn *
http_conn_idle(struct host *ho, const struct aq_http_call *c)
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
            http_conn_free(cn);
            continue;
        }
        if (best == NULL || cn->idle_since_us > best->idle_since_us)
            best = cn;
    }
    return best;
}

/* Frees the least recently used idle connection of ho, if any. */
void
http_conn_close_one_idle(struct host *ho)
{
    struct conn *cn, *oldest = NULL;

    LIST_FOREACH (cn, &ho->conns, link) {
        if (cn->call == NULL &&
            (oldest == NULL || cn->idle_since_us < oldest->idle_since_us))
            oldest = cn;
    }
    if (oldest != NULL)
        http_conn_free(oldest);
}
