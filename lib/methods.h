/* SPDX-License-Identifier: MIT */
/*
 * lib/methods.h: asyncqd's JSON-RPC methods (spec section 2): a table from
 * method name to a function that checks the params strictly (spec section
 * 7), calls the broker and ends the call, now or later.
 */
#ifndef AQ_METHODS_H
#define AQ_METHODS_H

#include <stdbool.h>
#include <stddef.h>

struct aq_broker;
struct aq_call;
struct aq_methods;

/* Methods over broker (borrowed). token: the auth token (copied), NULL when
 * auth is off. connections(arg) counts open connections for stats. */
struct aq_methods *aq_methods_new(struct aq_broker *broker, const char *token,
                                  size_t (*connections)(void *arg), void *arg);
void aq_methods_free(struct aq_methods *m); /* NULL is fine */

bool aq_methods_auth_required(const struct aq_methods *m);

struct aq_put;
/* put with its params already read (lib/fastput.c, or m_put): ends call
 * now, or later when the queue has room, the record is durable, or (with
 * wait) the job has finished. */
void aq_methods_put(struct aq_methods *m, struct aq_call *call,
                    const struct aq_put *p, bool wait);

struct aq_rpc_request;
/* Runs the request r on call, which it ends now or later: -32601 for a
 * method that does not exist (whatever its params), then -32001 if auth
 * is required and the connection has not sent it, then -32602 for
 * params that cannot be read, else the method. r is borrowed for the
 * call's duration only. */
void aq_methods_dispatch(struct aq_methods *m, struct aq_call *call,
                         const struct aq_rpc_request *r);

#endif
