/* SPDX-License-Identifier: MIT */
/*
 * lib/call.h: one JSON-RPC request in flight, as methods see it. The server
 * (lib/server.c) creates a call per request, hands it to its ops (the
 * methods), and writes the reply when they end it, now or later. A call that
 * blocks its connection (a put waiting for room) stops the server from
 * reading further requests from that connection until it ends.
 */
#ifndef AQ_CALL_H
#define AQ_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct event_base;
struct aq_error;
struct aq_call;

struct event_base *aq_call_base(const struct aq_call *c);

/* End the call: reply with result (reference taken), or with an error.
 * The call is freed: do not touch it after. */
void aq_call_reply(struct aq_call *c, json_t *result);
void aq_call_fail(struct aq_call *c, const struct aq_error *err);
/* The same with the error's data (taken; NULL = none). */
void aq_call_fail_data(struct aq_call *c, const struct aq_error *err,
                       json_t *data);
/* put's reply, {"job":ID,"state":...} (with "duplicate"), written straight
 * into the output on the hot path. Ends the call too. */
struct aq_put_result;
void aq_call_reply_put(struct aq_call *c, const struct aq_put_result *res);

/* Sends a notification (reference to params taken) on the call's
 * connection, e.g. job.done in wait's stream mode; nothing when the call
 * is itself a notification (spec section 7). */
void aq_call_notify(struct aq_call *c, const char *method, json_t *params);

/* The connection reads nothing more until this call ends. */
void aq_call_block(struct aq_call *c);

/* cb(arg) runs if the call is abandoned before it ends (its connection
 * closed) or ended by the server (shutting down: it then replies -32010).
 * It must release what the method holds for the call, and not end it. */
void aq_call_on_abandon(struct aq_call *c, void (*cb)(void *arg), void *arg);

/* Up to AQ_CALL_SCRATCH bytes (aligned) for the method's state while the
 * call is in flight, freed with the call: no allocation of its own. */
#define AQ_CALL_SCRATCH 128
void *aq_call_scratch(struct aq_call *c, size_t size);

/* Replaces the params (reference taken) the call keeps for the method. */
void aq_call_set_params(struct aq_call *c, json_t *params);

/* The authentication state of the call's connection: false until set. */
void aq_call_set_authenticated(struct aq_call *c);
bool aq_call_is_authenticated(const struct aq_call *c);

/* The connections open on the server the call came from (stats). */
size_t aq_call_connections(const struct aq_call *c);

/* Whether the call came in an exchange (lib/server.h: an HTTP request),
 * whose connection lives only until its replies are sent: no lease can
 * be held on it, no notification reaches the client. */
bool aq_call_is_exchange(const struct aq_call *c);
/* Whether state-changing methods are refused to the call (-32005). */
bool aq_call_is_read_only(const struct aq_call *c);
/* How long a wait that gives no timeout may wait, s (< 0: forever). */
double aq_call_default_timeout(const struct aq_call *c);

/* Whether the call is a notification (no id: nothing is ever sent). */
bool aq_call_is_notification(const struct aq_call *c);
/* Ends the call with a result given as compact JSON text (valid; n
 * bytes), written as it is. */
void aq_call_reply_raw(struct aq_call *c, const char *text, size_t n);

/* ---- the call's connection, for state the methods keep on it ---- */

struct aq_conn; /* a connection, as the methods see it */

/* The call's connection: valid until its closed hook (below) runs. */
struct aq_conn *aq_call_conn(const struct aq_call *c);
/* The methods' data on the connection (NULL until set). closed(data) runs
 * once when the connection closes, after its calls were abandoned;
 * eof(data) (may be NULL) once when the client has closed its sending
 * side, after what it sent before was read. */
void *aq_conn_data(const struct aq_conn *c);
void aq_conn_set_data(struct aq_conn *c, void *data, void (*closed)(void *data),
                      void (*eof)(void *data));
/* The peer's address, as logs name it. */
const char *aq_conn_peer(const struct aq_conn *c);
/* Sends a server notification (reference to params taken), unless the
 * connection is closing. */
void aq_conn_notify(struct aq_conn *c, const char *method, json_t *params);

#endif
