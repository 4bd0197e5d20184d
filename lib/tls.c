/* SPDX-License-Identifier: MIT */
/*
 * lib/tls.c: the server side of tls:// listeners. The context is built
 * from the files the config names (each failure names the field and the
 * file); every accepted socket gets an SSL of the context in force and a
 * bufferevent_openssl that runs the handshake on the loop, with a timer
 * of tls.handshake_timeout. A completed handshake hands the bufferevent
 * over (the ready callback); a failed or stalled one is logged with the
 * peer and the TLS error and closed. Each SSL holds a reference to its
 * context, so a reload only swaps the context new connections get.
 */
#include "tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "xmalloc.h"

#ifdef AQ_HAVE_TLS

#include <event2/bufferevent_ssl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define PEER_MAX 96
#define WHY_MAX 200

/* A socket whose handshake is in progress. */
struct handshake {
    struct aq_tls *t;
    struct bufferevent *bev; /* owned until handed over */
    struct event *timer;     /* owned: tls.handshake_timeout */
    char peer[PEER_MAX];
    LIST_ENTRY(handshake) link;
};

struct aq_tls {
    struct event_base *base; /* borrowed */
    SSL_CTX *ctx;            /* a reference: new connections' context */
    aq_tls_ready_cb *cb;
    void *cb_arg;
    double timeout;     /* s */
    size_t max_pending; /* handshakes in progress at most */
    size_t npending;
    bool is_stopped;
    LIST_HEAD(, handshake) pending;
};

/* The reason of OpenSSL's first queued error, or dflt; clears the queue. */
static const char *
ssl_reason(const char *dflt)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : dflt;
}

/* Whether path opens for reading; else err says why, naming field. */
static bool
readable(const char *field, const char *path, struct aq_error *err)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "tls.%s: %s: %s", field, path,
                     strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A server context from tc, or NULL with err naming the field and file. */
static SSL_CTX *
ctx_new(const struct aq_tls_config *tc, struct aq_error *err)
{
    SSL_CTX *ctx;
    STACK_OF(X509_NAME) * names;

    ERR_clear_error();
    if (!readable("cert", tc->cert, err) || !readable("key", tc->key, err) ||
        (tc->client_ca != NULL && !readable("client_ca", tc->client_ca, err)))
        return NULL;
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "tls: %s", ssl_reason("no context"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* An idle connection keeps no read or write buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"asyncqd", 7);
    if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert) != 1) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "tls.cert: %s: not a PEM certificate: %s", tc->cert,
                     ssl_reason("unreadable"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_peek_error();

        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
            (e == 0 && SSL_CTX_get0_privatekey(ctx) != NULL)) {
            ERR_clear_error();
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "tls.key: %s: does not match the certificate of "
                         "tls.cert (%s)",
                         tc->key, tc->cert);
        } else
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "tls.key: %s: not a PEM private key: %s", tc->key,
                         ssl_reason("unreadable"));
        goto fail;
    }
    if (tc->client_ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, tc->client_ca, NULL) != 1 ||
            (names = SSL_load_client_CA_file(tc->client_ca)) == NULL) {
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "tls.client_ca: %s: no PEM certificate: %s",
                         tc->client_ca, ssl_reason("unreadable"));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* taken */
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Logs what was loaded: the certificate's subject and expiry, so that a
 * renewal shows in the log. */
static void
log_loaded(SSL_CTX *ctx, const struct aq_tls_config *tc, const char *what)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    BIO *b = BIO_new(BIO_s_mem());
    char subject[256] = "?", expiry[64] = "?";
    int n;

    if (x != NULL && b != NULL) {
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
        if (ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1 &&
            (n = BIO_read(b, expiry, (int)sizeof expiry - 1)) > 0)
            expiry[n] = '\0';
    }
    BIO_free(b);
    aq_log(AQ_LOG_INFO, "tls: %s %s: %s, expires %s; client certificates %s%s",
           what, tc->cert, subject, expiry,
           tc->client_ca != NULL ? "required, signed by " : "not asked",
           tc->client_ca != NULL ? tc->client_ca : "");
}

int
aq_tls_check(const struct aq_config *cfg, struct aq_error *err)
{
    SSL_CTX *ctx = ctx_new(cfg->tls, err);

    SSL_CTX_free(ctx);
    return ctx != NULL ? 0 : -1;
}

static void
apply_limits(struct aq_tls *t, const struct aq_config *cfg)
{
    t->timeout = cfg->tls->handshake_timeout;
    t->max_pending = (size_t)cfg->producers.max;
}

struct aq_tls *
aq_tls_new(struct event_base *base, const struct aq_config *cfg,
           aq_tls_ready_cb *cb, void *arg, struct aq_error *err)
{
    SSL_CTX *ctx = ctx_new(cfg->tls, err);
    struct aq_tls *t;

    if (ctx == NULL)
        return NULL;
    t = xcalloc(1, sizeof *t);
    t->base = base;
    t->ctx = ctx;
    t->cb = cb;
    t->cb_arg = arg;
    LIST_INIT(&t->pending);
    apply_limits(t, cfg);
    log_loaded(ctx, cfg->tls, "certificate");
    return t;
}

int
aq_tls_reload(struct aq_tls *t, const struct aq_config *cfg,
              struct aq_error *err)
{
    SSL_CTX *ctx = ctx_new(cfg->tls, err);

    if (ctx == NULL)
        return -1;
    SSL_CTX_free(t->ctx); /* connections on it keep their reference */
    t->ctx = ctx;
    apply_limits(t, cfg);
    log_loaded(ctx, cfg->tls, "reloaded certificate");
    return 0;
}

/* Ends h: hands its bufferevent over (ready) or closes it. */
static void
handshake_end(struct handshake *h, bool ready)
{
    struct aq_tls *t = h->t;

    LIST_REMOVE(h, link);
    t->npending--;
    event_free(h->timer);
    if (ready) {
        bufferevent_setcb(h->bev, NULL, NULL, NULL, NULL);
        t->cb(t->cb_arg, h->bev, h->peer);
    } else
        bufferevent_free(h->bev);
    free(h);
}

/* Why the handshake on bev failed, into buf. */
static void
handshake_why(struct bufferevent *bev, short what, char *buf, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e, first = 0;
    int sock_err = EVUTIL_SOCKET_ERROR();

    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (first == 0)
            first = e;
    }
    if (vr != X509_V_OK)
        snprintf(buf, cap, "client certificate refused: %s",
                 X509_verify_cert_error_string(vr));
    else if (first != 0 && ERR_reason_error_string(first) != NULL)
        snprintf(buf, cap, "%s", ERR_reason_error_string(first));
    else if (first != 0)
        snprintf(buf, cap, "OpenSSL error %lx", first);
    else if ((what & BEV_EVENT_EOF) || sock_err == 0)
        snprintf(buf, cap, "the client closed the connection");
    else
        snprintf(buf, cap, "%s", evutil_socket_error_to_string(sock_err));
    ERR_clear_error();
}

static void
handshake_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct handshake *h = arg;
    char why[WHY_MAX];

    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        X509 *x = SSL_get_peer_certificate(ssl);
        char subject[160] = "";

        if (x != NULL) {
            X509_NAME_oneline(X509_get_subject_name(x), subject,
                              sizeof subject);
            X509_free(x);
        }
        aq_log(AQ_LOG_DEBUG, "tls: %s: handshake done: %s, %s%s%s", h->peer,
               SSL_get_version(ssl), SSL_get_cipher_name(ssl),
               x != NULL ? ", client " : "", subject);
        handshake_end(h, true);
        return;
    }
    handshake_why(bev, what, why, sizeof why);
    aq_log(AQ_LOG_INFO, "tls: %s: handshake failed: %s; closing", h->peer, why);
    handshake_end(h, false);
}

static void
handshake_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct handshake *h = arg;

    aq_log(AQ_LOG_INFO,
           "tls: %s: no handshake within %g s (tls.handshake_timeout); "
           "closing",
           h->peer, h->t->timeout);
    handshake_end(h, false);
}

void
aq_tls_accept(struct aq_tls *t, int fd, const char *peer)
{
    struct handshake *h;
    struct timeval tv;
    SSL *ssl;

    if (t->is_stopped) {
        close(fd);
        return;
    }
    if (t->npending >= t->max_pending) {
        aq_log(AQ_LOG_WARN,
               "tls: %s: refused, %zu handshakes in progress (producers.max)",
               peer, t->npending);
        close(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    if ((ssl = SSL_new(t->ctx)) == NULL) {
        aq_log(AQ_LOG_ERROR, "tls: %s: %s; closing", peer,
               ssl_reason("no SSL"));
        close(fd);
        return;
    }
    h = xcalloc(1, sizeof *h);
    h->t = t;
    snprintf(h->peer, sizeof h->peer, "%s", peer);
    /* Takes ssl (freed with the bufferevent) and fd (closed with it). */
    h->bev = bufferevent_openssl_socket_new(
        t->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (h->bev == NULL) {
        aq_log(AQ_LOG_ERROR, "tls: %s: no bufferevent; closing", peer);
        SSL_free(ssl);
        close(fd);
        free(h);
        return;
    }
    /* A client gone without close_notify is an end of input, as on TCP. */
    bufferevent_openssl_set_allow_dirty_shutdown(h->bev, 1);
    bufferevent_setcb(h->bev, NULL, NULL, handshake_event_cb, h);
    h->timer = evtimer_new(t->base, handshake_timeout_cb, h);
    tv = aq_clock_tv((int64_t)(t->timeout * 1e6));
    evtimer_add(h->timer, &tv);
    LIST_INSERT_HEAD(&t->pending, h, link);
    t->npending++;
}

void
aq_tls_stop(struct aq_tls *t)
{
    struct handshake *h;

    if (t == NULL)
        return;
    t->is_stopped = true;
    while ((h = LIST_FIRST(&t->pending)) != NULL)
        handshake_end(h, false);
}

void
aq_tls_free(struct aq_tls *t)
{
    if (t == NULL)
        return;
    aq_tls_stop(t);
    SSL_CTX_free(t->ctx);
    free(t);
}

#else /* !AQ_HAVE_TLS */

static int
no_tls(struct aq_error *err)
{
    aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                 "tls: this asyncqd was built without TLS (ASYNCQ_TLS=OFF)");
    return -1;
}

int
aq_tls_check(const struct aq_config *cfg, struct aq_error *err)
{
    return no_tls(err);
}

struct aq_tls *
aq_tls_new(struct event_base *base, const struct aq_config *cfg,
           aq_tls_ready_cb *cb, void *arg, struct aq_error *err)
{
    no_tls(err);
    return NULL;
}

void
aq_tls_free(struct aq_tls *t)
{
}

int
aq_tls_reload(struct aq_tls *t, const struct aq_config *cfg,
              struct aq_error *err)
{
    return no_tls(err);
}

void
aq_tls_accept(struct aq_tls *t, int fd, const char *peer)
{
    close(fd);
}

void
aq_tls_stop(struct aq_tls *t)
{
}

#endif
