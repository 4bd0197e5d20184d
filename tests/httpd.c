/* SPDX-License-Identifier: MIT */
/*
 * tests/httpd.c: the test HTTP(S) server (see httpd.h). One thread runs
 * the server's own event_base; the test thread only starts it, reads the
 * counters (under the mutex) and stops it. Everything else, the routes'
 * state included, belongs to the server thread. A connection is counted
 * open from its accept to its close callback, which is set on the
 * connection right after evhttp made it, so that one closed before its
 * first request is counted too.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#ifdef AQ_HAVE_TLS
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#endif

#include "httpd.h"

#define BIG_MAX ((size_t)1 << 30) /* /big?n= larger than this is a 400 */
#define FLAKY_KEYS 64             /* distinct /flaky keys remembered */

/* A /slow request waiting for its timer. */
struct slow {
    struct evhttp_request *req;      /* evhttp's while on its connection; ours
                                        once evhttp detached it (client gone) */
    struct evhttp_connection *evcon; /* the connection it came on */
    struct event *timer;             /* owned */
    struct event *closed; /* owned: EV_CLOSED on the socket; NULL if the
                             backend cannot tell */
    LIST_ENTRY(slow) link;
};

/* An accepted connection whose evhttp_connection is not known yet. */
struct accept_watch {
    struct httpd *s;
    struct bufferevent *bev; /* evhttp's */
    struct event *ev;        /* owned: activated at accept */
    LIST_ENTRY(accept_watch) link;
};

struct flaky {
    char key[64];
    int seen; /* requests with this key so far */
};

struct httpd {
    struct event_base *base; /* owned */
    struct evhttp *http;     /* owned; owns the listener */
    struct event *stop_ev;   /* owned: reads stop_pipe[0] */
    int stop_pipe[2];
    pthread_t thread;
    int port;
    bool is_tls;
    char dir[64];      /* mkdtemp dir holding ca.pem; "" without TLS */
    char ca_file[128]; /* "" without TLS */
#ifdef AQ_HAVE_TLS
    SSL_CTX *ssl_ctx; /* owned */
#endif

    pthread_mutex_t mu; /* guards the counters */
    int open, max_open, accepted, requests;

    /* The server thread's alone. */
    LIST_HEAD(, slow) slows;
    LIST_HEAD(, accept_watch) watches;
    struct flaky flaky[FLAKY_KEYS];
    int nflaky;
};

/* ---- counters ---- */

static void
count_accept(struct httpd *s)
{
    pthread_mutex_lock(&s->mu);
    s->accepted++;
    if (++s->open > s->max_open)
        s->max_open = s->open;
    pthread_mutex_unlock(&s->mu);
}

static int
counter_get(struct httpd *s, const int *counter)
{
    int v;

    pthread_mutex_lock(&s->mu);
    v = *counter;
    pthread_mutex_unlock(&s->mu);
    return v;
}

int
httpd_max_open(struct httpd *s)
{
    return counter_get(s, &s->max_open);
}

int
httpd_open(struct httpd *s)
{
    return counter_get(s, &s->open);
}

int
httpd_accepted(struct httpd *s)
{
    return counter_get(s, &s->accepted);
}

int
httpd_requests(struct httpd *s)
{
    return counter_get(s, &s->requests);
}

int
httpd_port(const struct httpd *s)
{
    return s->port;
}

const char *
httpd_ca_file(const struct httpd *s)
{
    return s->is_tls ? s->ca_file : NULL;
}

/* ---- replies ---- */

static void
reply(struct evhttp_request *req, int code, const char *content_type,
      const char *body, size_t len)
{
    struct evbuffer *buf = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      content_type);
    evbuffer_add(buf, body, len);
    /* reason NULL: evhttp's phrase for the code ("Not Found"). */
    evhttp_send_reply(req, code, NULL, buf);
    evbuffer_free(buf);
}

static void
reply_text(struct evhttp_request *req, int code, const char *text)
{
    reply(req, code, "text/plain", text, strlen(text));
}

static void
reply_redirect(struct evhttp_request *req, int code, const char *location)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
                      location);
    reply_text(req, code, "redirect");
}

/* The integer value of name in the query, or def; -1 if it is malformed. */
static long
query_long(const struct evkeyvalq *q, const char *name, long def)
{
    const char *v = evhttp_find_header(q, name);
    char *end;
    long n;

    if (v == NULL)
        return def;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 0)
        return -1;
    return n;
}

/* The integer that is all of text, or -1. */
static long
path_long(const char *text)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || n < 0)
        return -1;
    return n;
}

/* ---- connections ---- */

static void slow_free(struct slow *w);

static void
conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct httpd *s = arg;
    struct slow *w, *next;

    pthread_mutex_lock(&s->mu);
    s->open--;
    pthread_mutex_unlock(&s->mu);
    for (w = LIST_FIRST(&s->slows); w != NULL; w = next) {
        next = LIST_NEXT(w, link);
        if (w->evcon != evcon)
            continue;
        /* A request still on the connection goes with it; one that
         * evhttp detached when it saw the client go is ours to free. */
        if (evhttp_request_get_connection(w->req) == NULL)
            evhttp_request_free(w->req);
        slow_free(w);
    }
}

/* Runs in the same pass of the loop as the accept, before any I/O on the
 * connection: evhttp has made the connection and set it as the
 * bufferevent's callback argument. */
static void
accept_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct accept_watch *w = arg;
    void *evcon = NULL;

    bufferevent_getcb(w->bev, NULL, NULL, NULL, &evcon);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, conn_close_cb, w->s);
    LIST_REMOVE(w, link);
    event_free(w->ev);
    free(w);
}

static struct bufferevent *
conn_bev_cb(struct event_base *base, void *arg)
{
    struct httpd *s = arg;
    struct accept_watch *w = calloc(1, sizeof *w);
    struct bufferevent *bev;

#ifdef AQ_HAVE_TLS
    if (s->is_tls)
        bev = bufferevent_openssl_socket_new(base, -1, SSL_new(s->ssl_ctx),
                                             BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    else
#endif
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    count_accept(s);
    w->s = s;
    w->bev = bev;
    w->ev = event_new(base, -1, 0, accept_watch_cb, w);
    LIST_INSERT_HEAD(&s->watches, w, link);
    event_active(w->ev, EV_TIMEOUT, 0);
    return bev;
}

/* ---- routes ---- */

static void
route_ok(struct httpd *s, struct evhttp_request *req, const char *rest,
         const struct evkeyvalq *q)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Test", "yes");
    reply_text(req, 200, "hello");
}

static void
route_status(struct httpd *s, struct evhttp_request *req, const char *rest,
             const struct evkeyvalq *q)
{
    long code = path_long(rest);
    char body[32];

    if (code < 100 || code > 599) {
        reply_text(req, 400, "bad status");
        return;
    }
    snprintf(body, sizeof body, "status %ld", code);
    reply_text(req, (int)code, body);
}

static void
slow_free(struct slow *w)
{
    LIST_REMOVE(w, link);
    event_free(w->timer);
    if (w->closed != NULL)
        event_free(w->closed);
    free(w);
}

static void
slow_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct slow *w = arg;
    struct evhttp_request *req = w->req;

    slow_free(w);
    reply_text(req, 200, "slow");
}

/* The client went away: close the connection now rather than when the
 * reply fails, so that the test sees it closed. conn_close_cb frees w. */
static void
slow_closed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct slow *w = arg;

    evhttp_connection_free(w->evcon);
}

static void
route_slow(struct httpd *s, struct evhttp_request *req, const char *rest,
           const struct evkeyvalq *q)
{
    long ms = query_long(q, "ms", 1000);
    struct slow *w;
    struct timeval tv;
    evutil_socket_t fd;

    if (ms < 0) {
        reply_text(req, 400, "bad ms");
        return;
    }
    w = calloc(1, sizeof *w);
    w->req = req;
    w->evcon = evhttp_request_get_connection(req);
    w->timer = evtimer_new(s->base, slow_timer_cb, w);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(w->timer, &tv);
    fd = bufferevent_getfd(evhttp_connection_get_bufferevent(w->evcon));
    /* evhttp reads nothing while the request is the handler's, so it
     * would notice a client gone only when the reply fails. */
    if (fd >= 0 &&
        (event_base_get_features(s->base) & EV_FEATURE_EARLY_CLOSE) != 0) {
        w->closed = event_new(s->base, fd, EV_CLOSED, slow_closed_cb, w);
        event_add(w->closed, NULL);
    }
    LIST_INSERT_HEAD(&s->slows, w, link);
}

static void
route_big(struct httpd *s, struct evhttp_request *req, const char *rest,
          const struct evkeyvalq *q)
{
    static char xs[65536];
    long n = query_long(q, "n", 0);
    struct evbuffer *buf;

    if (n < 0 || (size_t)n > BIG_MAX) {
        reply_text(req, 400, "bad n");
        return;
    }
    if (xs[0] != 'x')
        memset(xs, 'x', sizeof xs);
    buf = evbuffer_new();
    for (size_t left = (size_t)n; left > 0;) {
        size_t k = left < sizeof xs ? left : sizeof xs;

        evbuffer_add_reference(buf, xs, k, NULL, NULL);
        left -= k;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain");
    evhttp_send_reply(req, 200, NULL, buf);
    evbuffer_free(buf);
}

static void
redirect(struct httpd *s, struct evhttp_request *req, const char *rest,
         bool is_absolute)
{
    long n = path_long(rest);
    char location[128];

    if (n < 0) {
        reply_text(req, 400, "bad count");
        return;
    }
    if (n == 0) {
        reply_text(req, 200, "done");
        return;
    }
    if (is_absolute)
        snprintf(location, sizeof location,
                 "%s://127.0.0.1:%d/redirect-abs/%ld",
                 s->is_tls ? "https" : "http", s->port, n - 1);
    else
        snprintf(location, sizeof location, "/redirect/%ld", n - 1);
    reply_redirect(req, 302, location);
}

static void
route_redirect(struct httpd *s, struct evhttp_request *req, const char *rest,
               const struct evkeyvalq *q)
{
    redirect(s, req, rest, false);
}

static void
route_redirect_abs(struct httpd *s, struct evhttp_request *req,
                   const char *rest, const struct evkeyvalq *q)
{
    redirect(s, req, rest, true);
}

static void
route_see_other(struct httpd *s, struct evhttp_request *req, const char *rest,
                const struct evkeyvalq *q)
{
    reply_redirect(req, 303, "/echo");
}

static void
route_to(struct httpd *s, struct evhttp_request *req, const char *rest,
         const struct evkeyvalq *q)
{
    const char *url = evhttp_find_header(q, "url");

    if (url == NULL) {
        reply_text(req, 400, "no url");
        return;
    }
    reply_redirect(req, 302, url);
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

static void
route_echo(struct httpd *s, struct evhttp_request *req, const char *rest,
           const struct evkeyvalq *q)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    json_t *headers = json_object(), *o;
    struct evkeyval *h;
    char *text;

    TAILQ_FOREACH (h, in, next) {
        json_t *old = json_object_get(headers, h->key);
        char *joined;

        if (old == NULL) {
            json_object_set_new(headers, h->key, json_string(h->value));
            continue;
        }
        if (asprintf(&joined, "%s, %s", json_string_value(old), h->value) < 0)
            ck_abort_msg("httpd: out of memory");
        json_object_set_new(headers, h->key, json_string(joined));
        free(joined);
    }
    /* A body that is not UTF-8 comes back as null. */
    o = json_pack(
        "{s:s,s:s,s:o,s:o?}", "method",
        method_name(evhttp_request_get_command(req)), "uri",
        evhttp_request_get_uri(req), "headers", headers, "body",
        len == 0 ? json_string("")
                 : json_stringn((const char *)evbuffer_pullup(body, -1), len));
    text = json_dumps(o, JSON_COMPACT);
    reply(req, 200, "application/json", text, strlen(text));
    free(text);
    json_decref(o);
}

static void
route_flaky(struct httpd *s, struct evhttp_request *req, const char *rest,
            const struct evkeyvalq *q)
{
    const char *key = evhttp_find_header(q, "key");
    const char *retry_after = evhttp_find_header(q, "retry_after");
    long fail = query_long(q, "fail", 1);
    long status = query_long(q, "status", 500);
    struct flaky *f = NULL;

    if (key == NULL || strlen(key) >= sizeof f->key || fail < 0 ||
        status < 400 || status > 599) {
        reply_text(req, 400, "bad key, fail or status");
        return;
    }
    for (int i = 0; i < s->nflaky && f == NULL; i++) {
        if (strcmp(s->flaky[i].key, key) == 0)
            f = &s->flaky[i];
    }
    if (f == NULL) {
        if (s->nflaky == FLAKY_KEYS) {
            reply_text(req, 400, "too many keys");
            return;
        }
        f = &s->flaky[s->nflaky++];
        snprintf(f->key, sizeof f->key, "%s", key);
    }
    if (++f->seen <= fail) {
        if (retry_after != NULL)
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Retry-After", retry_after);
        reply_text(req, (int)status, "flaky");
    } else
        reply_text(req, 200, "ok");
}

/* "partial" is written: close without the last chunk. evhttp calls this
 * from the bufferevent's write callback, which holds a reference on the
 * bufferevent, so freeing the connection here is safe; the request on it
 * goes with it. */
static void
reset_written_cb(struct evhttp_connection *evcon, void *arg)
{
    evhttp_connection_free(evcon);
}

static void
route_reset(struct httpd *s, struct evhttp_request *req, const char *rest,
            const struct evkeyvalq *q)
{
    struct evbuffer *buf = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain");
    evhttp_send_reply_start(req, 200, NULL);
    evbuffer_add(buf, "partial", 7);
    evhttp_send_reply_chunk_with_cb(req, buf, reset_written_cb, NULL);
    evbuffer_free(buf);
}

typedef void route_fn(struct httpd *s, struct evhttp_request *req,
                      const char *rest, const struct evkeyvalq *q);

/* A path ending in '/' is a prefix; rest is what follows it. */
static const struct route {
    const char *path;
    route_fn *fn;
} routes[] = {
    {"/ok", route_ok},
    {"/status/", route_status},
    {"/slow", route_slow},
    {"/big", route_big},
    {"/redirect/", route_redirect},
    {"/redirect-abs/", route_redirect_abs},
    {"/see-other", route_see_other},
    {"/to", route_to},
    {"/echo", route_echo},
    {"/flaky", route_flaky},
    {"/reset", route_reset},
};

static void
request_cb(struct evhttp_request *req, void *arg)
{
    struct httpd *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq q;

    pthread_mutex_lock(&s->mu);
    s->requests++;
    pthread_mutex_unlock(&s->mu);
    TAILQ_INIT(&q);
    if (query != NULL && evhttp_parse_query_str(query, &q) < 0)
        TAILQ_INIT(&q); /* malformed: as if there were none */
    for (size_t i = 0; path != NULL && i < sizeof routes / sizeof *routes;
         i++) {
        size_t n = strlen(routes[i].path);
        bool is_prefix = routes[i].path[n - 1] == '/';

        if (is_prefix ? strncmp(path, routes[i].path, n) == 0
                      : strcmp(path, routes[i].path) == 0) {
            routes[i].fn(s, req, path + (is_prefix ? n : 0), &q);
            evhttp_clear_headers(&q);
            return;
        }
    }
    evhttp_clear_headers(&q);
    reply_text(req, 404, "not found");
}

/* ---- TLS: a CA and a server certificate, made at start ---- */

#ifdef AQ_HAVE_TLS
static EVP_PKEY *
key_new(void)
{
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    EVP_PKEY *key = NULL;

    if (kc == NULL || EVP_PKEY_keygen_init(kc) <= 0 ||
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kc, NID_X9_62_prime256v1) <= 0 ||
        EVP_PKEY_keygen(kc, &key) <= 0)
        ck_abort_msg("httpd: EC key generation failed");
    EVP_PKEY_CTX_free(kc);
    return key;
}

static void
add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL || X509_add_ext(cert, ext, -1) != 1)
        ck_abort_msg("httpd: certificate extension %s=%s", OBJ_nid2sn(nid),
                     value);
    X509_EXTENSION_free(ext);
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed);
 * the caller's. */
static X509 *
cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_get_subject_name(cert);
    uint64_t serial;

    if (RAND_bytes((unsigned char *)&serial, sizeof serial) != 1)
        ck_abort_msg("httpd: RAND_bytes failed");
    X509_set_version(cert, 2); /* v3 */
    ASN1_INTEGER_set_int64(X509_get_serialNumber(cert), (int64_t)(serial >> 1));
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    if (issuer == NULL) {
        X509_set_issuer_name(cert, name);
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(cert, cert, NID_subject_key_identifier, "hash");
    } else {
        X509_set_issuer_name(cert, X509_get_subject_name(issuer));
        add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(cert, issuer, NID_ext_key_usage, "serverAuth");
        add_ext(cert, issuer, NID_subject_alt_name,
                "DNS:localhost,IP:127.0.0.1");
        add_ext(cert, issuer, NID_subject_key_identifier, "hash");
        add_ext(cert, issuer, NID_authority_key_identifier, "keyid:always");
    }
    if (X509_sign(cert, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <=
        0)
        ck_abort_msg("httpd: signing the certificate failed");
    return cert;
}

/* Makes the CA (written to s->ca_file) and the server's SSL_CTX. */
static void
tls_setup(struct httpd *s)
{
    EVP_PKEY *ca_key = key_new(), *key = key_new();
    X509 *ca, *cert;
    char cn[64];
    FILE *f;

    /* A name of its own: two servers' CAs must not be mistaken. */
    snprintf(cn, sizeof cn, "asyncq test CA %d %p", (int)getpid(), (void *)s);
    ca = cert_new(ca_key, cn, NULL, NULL);
    cert = cert_new(key, "localhost", ca, ca_key);
    snprintf(s->dir, sizeof s->dir, "/tmp/asyncq-httpd.XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        ck_abort_msg("httpd: mkdtemp: %s", strerror(errno));
    snprintf(s->ca_file, sizeof s->ca_file, "%s/ca.pem", s->dir);
    f = fopen(s->ca_file, "w");
    if (f == NULL || PEM_write_X509(f, ca) != 1 || fclose(f) != 0)
        ck_abort_msg("httpd: writing %s failed", s->ca_file);
    s->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (s->ssl_ctx == NULL || SSL_CTX_use_certificate(s->ssl_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(s->ssl_ctx, key) != 1 ||
        SSL_CTX_check_private_key(s->ssl_ctx) != 1)
        ck_abort_msg("httpd: SSL_CTX setup failed: %s",
                     ERR_error_string(ERR_get_error(), NULL));
    X509_free(cert);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}
#endif

/* ---- the thread ---- */

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpd *s = arg;

    event_base_loopbreak(s->base);
}

static void *
httpd_main(void *arg)
{
    struct httpd *s = arg;
    sigset_t pipe_set;

    /* A client that closes while the server writes must not kill the test
     * process: SIGPIPE goes to the writing thread, where it stays blocked,
     * and the write fails with EPIPE. */
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* A listening socket on 127.0.0.1:0 (close-on-exec: the daemon the test
 * forks must not hold it); sets s->port. */
static evutil_socket_t
listen_socket(struct httpd *s)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        ck_abort_msg("httpd: socket: %s", strerror(errno));
    s->port = ntohs(sin.sin_port);
    return fd;
}

struct httpd *
httpd_start(bool tls)
{
    struct httpd *s = calloc(1, sizeof *s);
    struct evconnlistener *lev;
    evutil_socket_t fd;

#ifndef AQ_HAVE_TLS
    if (tls)
        ck_abort_msg("httpd: built without TLS (AQ_HAVE_TLS)");
#endif
    s->is_tls = tls;
    pthread_mutex_init(&s->mu, NULL);
    LIST_INIT(&s->slows);
    LIST_INIT(&s->watches);
#ifdef AQ_HAVE_TLS
    if (tls)
        tls_setup(s);
#endif
    s->base = event_base_new();
    s->http = evhttp_new(s->base);
    if (s->base == NULL || s->http == NULL)
        ck_abort_msg("httpd: event_base_new or evhttp_new failed");
    evhttp_set_allowed_methods(
        s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_bevcb(s->http, conn_bev_cb, s);
    evhttp_set_gencb(s->http, request_cb, s);
    fd = listen_socket(s);
    lev = evconnlistener_new(s->base, NULL, NULL,
                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                 LEV_OPT_REUSEABLE,
                             128, fd);
    if (lev == NULL || evhttp_bind_listener(s->http, lev) == NULL)
        ck_abort_msg("httpd: listen: %s", strerror(errno));
    if (pipe2(s->stop_pipe, O_CLOEXEC) != 0)
        ck_abort_msg("httpd: pipe: %s", strerror(errno));
    s->stop_ev = event_new(s->base, s->stop_pipe[0], EV_READ, stop_cb, s);
    event_add(s->stop_ev, NULL);
    if (pthread_create(&s->thread, NULL, httpd_main, s) != 0)
        ck_abort_msg("httpd: pthread_create failed");
    return s;
}

void
httpd_stop(struct httpd *s)
{
    struct accept_watch *w;

    if (s == NULL)
        return;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        ck_abort_msg("httpd: write: %s", strerror(errno));
    pthread_join(s->thread, NULL);
    /* The loop is over: this thread owns everything now. Closing the
     * connections frees the /slow requests on them (conn_close_cb). */
    evhttp_free(s->http);
    while ((w = LIST_FIRST(&s->watches)) != NULL) {
        LIST_REMOVE(w, link);
        event_free(w->ev);
        free(w);
    }
    event_free(s->stop_ev);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    event_base_free(s->base);
#ifdef AQ_HAVE_TLS
    if (s->is_tls) {
        SSL_CTX_free(s->ssl_ctx);
        unlink(s->ca_file);
        rmdir(s->dir);
    }
#endif
    pthread_mutex_destroy(&s->mu);
    free(s);
}
