/* SPDX-License-Identifier: MIT */
/*
 * lib/listen.h: the producers' listening sockets (spec sections 1 and 6):
 * tcp://HOST:PORT and unix:PATH, or sockets handed over already listening
 * (systemd's LISTEN_FDS). Each accepted socket goes to the accept callback
 * (daemon/main.c wires it to aq_server_accept); those of tls://HOST:PORT
 * listeners go to the TLS side for their handshake (lib/tls.h). Out of
 * descriptors, a listener pauses for a second instead of spinning on the error.
 */
#ifndef AQ_LISTEN_H
#define AQ_LISTEN_H

#include <stddef.h>

struct event_base;
struct sockaddr_storage;
struct aq_error;
struct aq_listen;
struct aq_tls;

/* fd: an accepted socket, non-blocking, the callback's to keep or close.
 * peer: the client's address for logs ("127.0.0.1:4711", "[::1]:4711",
 * "unix"), borrowed for the call. */
typedef void aq_listen_accept_cb(void *arg, int fd, const char *peer);

/* No listener yet; accepted sockets go to cb(arg). */
struct aq_listen *aq_listen_new(struct event_base *base,
                                aq_listen_accept_cb *cb, void *arg);
/* Closes every listener (aq_listen_close). NULL is fine. */
void aq_listen_free(struct aq_listen *l);

/* Where the sockets of tls:// listeners go (borrowed; outlives l). */
void aq_listen_set_tls(struct aq_listen *l, struct aq_tls *tls);

/* Listens on addr: "tcp://HOST:PORT" (IPv6 as [HOST]; port 0 lets the
 * system pick), "tls://HOST:PORT" (the same, through aq_listen_set_tls's
 * TLS side, which must be set) or "unix:PATH" (a socket left at PATH is
 * replaced; the socket file is removed at close). The bound address is
 * logged with its real port. Returns 0, or -1 with err. */
int aq_listen_add(struct aq_listen *l, const char *addr, struct aq_error *err);
/* Listens on fd, a socket bound and listening already (taken). */
void aq_listen_add_fd(struct aq_listen *l, int fd);

/* The bound TCP addresses of the listeners (real ports; sockets handed
 * over too), at most max of them into out. Returns how many. */
size_t aq_listen_addresses(const struct aq_listen *l,
                           struct sockaddr_storage *out, size_t max);

/* Stops accepting: closes every listener. */
void aq_listen_close(struct aq_listen *l);

#endif
