/* SPDX-License-Identifier: MIT */
/*
 * lib/server.h: the producers' connections (spec section 1): newline-
 * delimited JSON-RPC 2.0 read with bufferevents, pipelining, batches,
 * notifications, back-pressure, the per-connection window, the request
 * size limit, the idle timeout and the connection limit. What a request
 * means is not the server's business: each one goes to the ops it was
 * given, as a call (lib/call.h) the ops end now or later. It accepts the
 * sockets it is handed (lib/listen.c accepts them).
 */
#ifndef AQ_SERVER_H
#define AQ_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct event_base;
struct aq_call;
struct aq_config;
struct aq_put;
struct aq_rpc_request;
struct aq_server;

struct aq_server_ops {
    /* A request read from a connection: r is borrowed until the op
     * returns; the op ends call now or later (lib/call.h). */
    void (*request)(void *arg, struct aq_call *call,
                    const struct aq_rpc_request *r);
    /* A plain put read by the hot path (lib/fastput.c), without building
     * JSON: p is borrowed until the op returns, which ends call now or
     * later. It gives what request would give for the same line, auth
     * included. NULL: every put goes to request. */
    void (*put)(void *arg, struct aq_call *call, const struct aq_put *p,
                bool wait);
};

/* A server on base (borrowed) calling ops (copied) with arg. Limits come
 * from cfg->producers. */
struct aq_server *aq_server_new(struct event_base *base,
                                const struct aq_config *cfg,
                                const struct aq_server_ops *ops, void *arg);
/* Closes every connection at once (no replies). NULL is fine. */
void aq_server_free(struct aq_server *s);

/* A connection on fd, an accepted stream socket (taken: made non-blocking,
 * closed with the connection). peer names the client in logs (copied). Beyond
 * producers.max connections it gets -32011 and is closed. No op runs
 * before this returns. */
void aq_server_accept(struct aq_server *s, int fd, const char *peer);
/* The same on bev (taken; made with BEV_OPT_CLOSE_ON_FREE), a transport
 * the server only reads and writes through libevent, e.g. a TLS
 * filter: none of the plain socket's shortcuts. */
void aq_server_accept_bev(struct aq_server *s, struct bufferevent *bev,
                          const char *peer);

/* SIGHUP: new limits (window, sizes, idle timeout, max connections). */
void aq_server_reconfigure(struct aq_server *s, const struct aq_config *cfg);

/* Open connections (not the half-closed ones waiting for replies). */
size_t aq_server_connections(const struct aq_server *s);

/* Shutdown: answer every call still waiting with -32010, flush what is
 * owed to each client and close; done(arg) fires from the loop once
 * every connection is gone or after timeout_ms. */
void aq_server_close_all(struct aq_server *s, int timeout_ms,
                         void (*done)(void *arg), void *arg);

/* ---- exchanges: requests that come without a connection (HTTP) ---- */

struct aq_exchange;

/* What an exchange's calls may do (lib/call.h tells the methods). */
struct aq_exchange_opts {
    const char *peer;       /* names the client in logs (copied) */
    bool authenticated;     /* as if auth had been sent with the token */
    bool read_only;         /* state-changing methods are refused */
    double default_timeout; /* s, for waits that give none; < 0: none */
};

/* done's arguments: out holds the replies (one JSON value and its '\n',
 * or nothing when every request was a notification); unauthorized: some
 * call was refused with -32001. */
typedef void aq_exchange_done_fn(void *arg, struct evbuffer *out,
                                 bool unauthorized);

/* Runs text (n bytes: one JSON-RPC request or a batch, newlines allowed)
 * through the ops as a connection sending only that would, without the
 * window or the line framing; notifications the methods send (wait's
 * job.done) are dropped. Replies go into out, borrowed until the exchange
 * ends. Returns NULL when every call has ended already: out is complete
 * and *unauthorized set. Else the exchange: done(arg, ...) runs from the
 * loop once every call has ended (aq_server_close_all ends them with
 * -32010), then the exchange is freed. */
struct aq_exchange *
aq_server_exchange(struct aq_server *s, const char *text, size_t n,
                   const struct aq_exchange_opts *opts, struct evbuffer *out,
                   aq_exchange_done_fn *done, void *arg, bool *unauthorized);
/* The client went away: the calls are abandoned, done never runs, the
 * exchange is freed. */
void aq_exchange_cancel(struct aq_exchange *x);

#endif
