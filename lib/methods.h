/* SPDX-License-Identifier: MIT */
/*
 * lib/methods.h: asyncqd's JSON-RPC methods (spec section 2): a table from
 * method name to a function that checks the params strictly (spec section
 * 7, lib/params.h), calls the broker and ends the call, now or later. The
 * server reaches them through aq_methods_ops; auth (per connection) and
 * the order of errors are decided here.
 */
#ifndef AQ_METHODS_H
#define AQ_METHODS_H

#include <stdbool.h>

struct aq_broker;
struct aq_call;
struct aq_methods;
struct aq_put;

/* Methods over broker (borrowed). token: the auth token (copied), NULL when
 * auth is off. */
struct aq_methods *aq_methods_new(struct aq_broker *broker, const char *token);
void aq_methods_free(struct aq_methods *m); /* NULL is fine */
/* The history the history method reads (borrowed; it must outlive m). */
struct aq_history;
void aq_methods_set_history(struct aq_methods *m, struct aq_history *h);
/* The database's view of the jobs other nodes hold (borrowed; it must
 * outlive m; NULL = none, the default): status, wait, cancel, retry and
 * delete of a job this node does not know ask it, and list and join read
 * it always (docs/cluster.md, "Methods across nodes"). */
struct aq_pgremote;
void aq_methods_set_remote(struct aq_methods *m, struct aq_pgremote *r);
/* pause and resume call fn once they changed this node's queue (to share
 * the change with other nodes: lib/pgcluster.c); NULL: none. */
typedef void aq_methods_pause_fn(void *arg, const char *queue, bool paused);
void aq_methods_set_pause_hook(struct aq_methods *m, aq_methods_pause_fn *fn,
                               void *arg);

/* The server's ops (lib/server.h), with a struct aq_methods as their arg.
 * request: -32601 for a method that does not exist (whatever its params),
 * then -32001 if auth is required and the connection has not sent it,
 * then -32602 for params that cannot be read, else the method. put: the
 * hot path's put, -32001 the same way, else aq_methods_put. */
extern const struct aq_server_ops aq_methods_ops;

/* put with its params already read (the put op, or m_put): ends call
 * now, or later when the queue has room, the record is durable, or (with
 * wait) the job has finished. */
void aq_methods_put(struct aq_methods *m, struct aq_call *call,
                    const struct aq_put *p, bool wait);

#endif
