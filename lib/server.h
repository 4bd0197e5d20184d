/* SPDX-License-Identifier: MIT */
/*
 * lib/server.h: the producers' side of asyncqd (spec section 1): listeners
 * on TCP and Unix sockets (or sockets handed over by systemd), one
 * connection per producer reading newline-delimited JSON-RPC 2.0 with
 * bufferevents, pipelining, batches, notifications, back-pressure, the
 * per-connection window, request size limit, idle timeout, connection limit
 * and auth. Requests go to lib/methods.
 */
#ifndef AQ_SERVER_H
#define AQ_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct aq_config;
struct aq_error;
struct aq_methods;
struct aq_server;

/* A server on base (borrowed) dispatching to methods (borrowed, set later
 * with aq_server_set_methods). Limits come from cfg->producers. */
struct aq_server *aq_server_new(struct event_base *base,
                                const struct aq_config *cfg);
void aq_server_set_methods(struct aq_server *s, struct aq_methods *m);
/* Closes listeners and connections at once (no replies). NULL is fine. */
void aq_server_free(struct aq_server *s);

/* Listens on every address of cfg->listen, or, when fds > 0, on the
 * already bound and listening sockets fds[0..n) (systemd's LISTEN_FDS).
 * Each bound address is logged with its real port. 0, or -1 with err. */
int aq_server_listen(struct aq_server *s, const struct aq_config *cfg,
                     const int *fds, size_t nfds, struct aq_error *err);
/* The bound TCP addresses of the listeners (real ports; sockets handed
 * over too), at most max of them into out. Returns how many. */
struct sockaddr_storage;
size_t aq_server_addresses(const struct aq_server *s,
                           struct sockaddr_storage *out, size_t max);

/* SIGHUP: new limits (window, sizes, idle timeout, max connections). */
void aq_server_reconfigure(struct aq_server *s, const struct aq_config *cfg);

size_t aq_server_connections(const struct aq_server *s);

/* Shutdown, step 1: stop accepting connections. */
void aq_server_stop_listening(struct aq_server *s);
/* Shutdown, step 2: answer every call still waiting with -32010, flush
 * what is owed to each client and close; done(arg) fires from the loop once
 * every connection is gone or after timeout_ms. */
void aq_server_close_all(struct aq_server *s, int timeout_ms,
                         void (*done)(void *arg), void *arg);

#endif
