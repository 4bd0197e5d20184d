/* SPDX-License-Identifier: MIT */
/*
 * lib/pgcluster.h: what asyncqd nodes sharing one PostgreSQL schema
 * (store.kind postgres) agree on beyond the jobs (spec section 12), over a
 * session of its own (lib/pgconn.h):
 * - schedules fire on one node, the leader: the holder of a session
 *   advisory lock (aq_pg_schedules_lock_key), tried at connect and at each
 *   poll; a new leader reads S.schedules before it fires (catch_up and
 *   overlap from what the previous one fired); a lost session stops its
 *   schedules at once;
 * - pause and resume apply to every node: S.queues keeps the state, a
 *   NOTIFY "P queue" / "R queue" on <schema>_events tells the others, and
 *   a node reads S.queues at each connect;
 * - maxsize counts the queue's unfinished rows that other nodes hold or
 *   that no node holds, read at each poll and after a NOTIFY "f" or
 *   "p queue" (aq_queue_set_outside).
 * The poll runs every ASYNCQ_PG_POLL_MS milliseconds (default 1000).
 */
#ifndef AQ_PGCLUSTER_H
#define AQ_PGCLUSTER_H

#include <stdbool.h>

struct aq_broker;
struct aq_error;
struct aq_pgcluster;
struct event_base;

/* Starts connecting to conninfo for broker b (borrowed: it must outlive
 * the result); node NULL: the host name (as the store). b's schedules
 * stop firing until this node leads. NULL with err when conninfo cannot
 * be parsed. */
struct aq_pgcluster *aq_pgcluster_new(struct event_base *base,
                                      struct aq_broker *b, const char *conninfo,
                                      const char *schema, const char *node,
                                      struct aq_error *err);
/* Before the broker starts: runs the loop until the session has read
 * S.queues (queues paused by other nodes start paused), at most
 * timeout_ms (then logged, and they pause once read). -1 with err
 * (AQ_ERR_SHUTTING_DOWN) when SIGTERM or SIGINT came meanwhile. */
int aq_pgcluster_start(struct aq_pgcluster *c, int timeout_ms,
                       struct aq_error *err);
/* NULL is fine. Ends the session: another node may lead from then on. */
void aq_pgcluster_free(struct aq_pgcluster *c);

/* pause or resume of queue on this node (already applied here): written
 * to S.queues and told to the other nodes (at the next loop pass, or once
 * connected again). An aq_methods_pause_fn (lib/methods.h), arg c. */
void aq_pgcluster_paused(void *c, const char *queue, bool paused);

/* Whether this node's schedules fire (it holds the lock and has read
 * S.schedules). For tests and logs. */
bool aq_pgcluster_is_leader(const struct aq_pgcluster *c);

#endif
