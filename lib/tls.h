/* SPDX-License-Identifier: MIT */
/*
 * lib/tls.h: the server side of tls:// listeners (spec section 10): the
 * OpenSSL context built from the config's "tls" section (TLS >= 1.2, the
 * certificate and key, and with client_ca mutual TLS), and the handshakes
 * of accepted sockets. A handshake runs on the loop (bufferevent_openssl,
 * never blocking) and is bounded by tls.handshake_timeout; once done, the
 * connection's bufferevent goes to the ready callback (daemon/main.c hands
 * it to aq_server_accept_bev). aq_tls_reload (SIGHUP) builds a new context
 * for new connections; open ones keep the one they started with.
 * Without OpenSSL (ASYNCQ_TLS=OFF) aq_tls_new fails saying so.
 */
#ifndef AQ_TLS_H
#define AQ_TLS_H

struct bufferevent;
struct event_base;
struct aq_config;
struct aq_error;
struct aq_tls;

/* A connection whose handshake completed: bev (taken: it closes the
 * socket) carries the decrypted stream; peer as given to aq_tls_accept. */
typedef void aq_tls_ready_cb(void *arg, struct bufferevent *bev,
                             const char *peer);

/* Checks cfg->tls (not NULL) by building its context: the files are read
 * and the key matched to the certificate. 0, or -1 with err naming the
 * field and the file ("tls.key: /etc/asyncq/key.pem: ..."). */
int aq_tls_check(const struct aq_config *cfg, struct aq_error *err);

/* The TLS side for cfg->tls (not NULL) on base; completed handshakes go to
 * cb(arg). NULL with err as aq_tls_check. */
struct aq_tls *aq_tls_new(struct event_base *base, const struct aq_config *cfg,
                          aq_tls_ready_cb *cb, void *arg, struct aq_error *err);
/* Drops the handshakes in progress. NULL is fine. */
void aq_tls_free(struct aq_tls *t);

/* SIGHUP: a context from cfg->tls (the files read again) for the
 * connections accepted from now on. On failure (-1 with err) the running
 * context stays. */
int aq_tls_reload(struct aq_tls *t, const struct aq_config *cfg,
                  struct aq_error *err);

/* Starts the handshake on fd, an accepted socket (taken). peer names the
 * client in logs (copied). Beyond producers.max handshakes in progress the
 * socket is closed at once. */
void aq_tls_accept(struct aq_tls *t, int fd, const char *peer);

/* Stopping: drops the handshakes in progress and closes what is accepted
 * from now on. */
void aq_tls_stop(struct aq_tls *t);

#endif
