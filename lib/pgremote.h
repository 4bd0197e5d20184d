/* SPDX-License-Identifier: MIT */
/*
 * lib/pgremote.h: the methods on jobs this node does not hold, answered
 * from the database (spec section 12, docs/cluster.md "Methods across
 * nodes"): status, wait, cancel, retry, delete, list and join read or
 * change the rows of S.jobs over a PostgreSQL session of their own
 * (lib/pgconn.h, the store's conninfo and schema), never blocking the
 * loop. The session LISTENs to "<schema>_events": a payload "f" (a
 * transaction finished jobs) re-checks every waiting wait and join at
 * once, in one transaction (one statement for all waited ids, one per
 * kind of join); a poll every ASYNCQ_PG_POLL_MS (default 1000) does the
 * same when a notification is missed. Each request is bounded: the
 * session's statement_timeout, and REQ_TIMEOUT_MS on the client side.
 * While the session is down a request is refused at once with -32603
 * "store unavailable: WHY".
 *
 * Records are built from rows field for field as lib/job.c's
 * aq_job_record builds them from memory, but for what a row does not
 * hold: a remote worker's lease (worker, lease_deadline) and an error's
 * traceback.
 */
#ifndef AQ_PGREMOTE_H
#define AQ_PGREMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct aq_error;
struct aq_list;
struct aq_task;
struct aq_pgremote;
struct aq_pgremote_req;

/* Connects from the loop (lib/pgconn.h) to conninfo, on schema's tables
 * (made by the store), for node (the store's node name; NULL: the host
 * name, as the store's default). NULL with err when conninfo cannot be
 * parsed. */
struct aq_pgremote *aq_pgremote_new(struct event_base *base,
                                    const char *conninfo, const char *schema,
                                    const char *node, struct aq_error *err);
void aq_pgremote_free(struct aq_pgremote *r); /* NULL fine; no cb after */

/* A request's end: result (a new reference, the callee's; NULL for a
 * join) and err NULL, or result NULL and err. From the loop only. */
typedef void aq_pgremote_cb(void *arg, json_t *result,
                            const struct aq_error *err);

/* Each request below returns 0 with *req set (cb later, from the loop),
 * or -1 with err -32603 "store unavailable: WHY" while the session is
 * down. cb may be NULL (nothing is told; req may be NULL too). Withdraw
 * a request with aq_pgremote_withdraw: no callback after. */
void aq_pgremote_withdraw(struct aq_pgremote_req *req); /* NULL fine */

/* The record of job id: -32004 when there is no row. */
int aq_pgremote_status(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                       void *arg, struct aq_pgremote_req **req,
                       struct aq_error *err);

/* Cancels job id: a row no node holds (the pool, or a delayed or waiting
 * row with node NULL) ends cancelled now, as the broker ends a cancelled
 * pending job ("f" notified); a row a node holds is asked of that node
 * ("c ID" notified) and the answer comes once the row has finished, as a
 * cancel of a running job answers. Result {"job","state"}; -32004 no row,
 * -32009 finished already. */
int aq_pgremote_cancel(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                       void *arg, struct aq_pgremote_req **req,
                       struct aq_error *err);

/* Retries the finished row id as the broker retries a record: pending
 * (or delayed, due after delay_s) in the pool with node NULL, retried +
 * 1, attempts 0, result, error and times cleared, a new seq; its key
 * kept unless a live job holds it. "p QUEUE" (when pending) and "x ID"
 * notified. Result {"job","state"}; -32004, -32012 not finished, -32005
 * args not kept. */
int aq_pgremote_retry(struct aq_pgremote *r, uint64_t id, double delay_s,
                      aq_pgremote_cb *cb, void *arg,
                      struct aq_pgremote_req **req, struct aq_error *err);

/* Deletes the finished row id ("x ID" notified). Result
 * {"job","deleted":true}; -32004, -32012 not finished. */
int aq_pgremote_delete(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                       void *arg, struct aq_pgremote_req **req,
                       struct aq_error *err);

/* A page of the rows l selects, as aq_broker_list's (lib/broker.h):
 * {"jobs":[records],"next":ID or null}. l->queue is not checked here. */
int aq_pgremote_list(struct aq_pgremote *r, const struct aq_list *l,
                     aq_pgremote_cb *cb, void *arg,
                     struct aq_pgremote_req **req, struct aq_error *err);

/* Waits until no unfinished row (state < 4) of queue (NULL: of any
 * queue), or of batch when batch is not NULL, exists: cb(arg, NULL,
 * NULL). */
int aq_pgremote_join(struct aq_pgremote *r, const char *queue,
                     const char *batch, aq_pgremote_cb *cb, void *arg,
                     struct aq_pgremote_req **req, struct aq_error *err);

/* By queue, the rows this node does not hold (node NULL, or another
 * node's; this node's jobs are the broker's to handle): result the
 * number of jobs (a json integer). cancel: pool rows not running end
 * cancelled ("f"), rows other nodes hold are asked of them ("c ID", the
 * running ones only with running), all counted. retry and delete: the
 * records in state ("done", "failed" or "cancelled"; retry takes no
 * "done" from the methods) as the single ones above, "x ID" each. */
int aq_pgremote_cancel_queue(struct aq_pgremote *r, const char *queue,
                             bool running, aq_pgremote_cb *cb, void *arg,
                             struct aq_pgremote_req **req,
                             struct aq_error *err);
int aq_pgremote_retry_queue(struct aq_pgremote *r, const char *queue,
                            const char *state, double delay_s,
                            aq_pgremote_cb *cb, void *arg,
                            struct aq_pgremote_req **req, struct aq_error *err);
int aq_pgremote_delete_queue(struct aq_pgremote *r, const char *queue,
                             const char *state, aq_pgremote_cb *cb, void *arg,
                             struct aq_pgremote_req **req,
                             struct aq_error *err);

/* Futures of the jobs ids[0..n): tasks[i] (new references, the callee's)
 * settles with the record of ids[i] once its row is finished (at once if
 * it is), or fails with -32004 if its row is deleted first; futures of
 * one id are shared. err: -32004 naming the first id without a row (no
 * tasks then), or -32603. */
typedef void aq_pgremote_futures_cb(void *arg, struct aq_task **tasks,
                                    const struct aq_error *err);
int aq_pgremote_futures(struct aq_pgremote *r, const uint64_t *ids, size_t n,
                        aq_pgremote_futures_cb *cb, void *arg,
                        struct aq_pgremote_req **req, struct aq_error *err);

/* ---- for tests ---- */

/* The columns a record is built from, in this order. */
enum {
    AQ_PGR_ID,
    AQ_PGR_QUEUE,
    AQ_PGR_KIND,
    AQ_PGR_STATE,
    AQ_PGR_PRIORITY,
    AQ_PGR_DUE,
    AQ_PGR_ATTEMPTS,
    AQ_PGR_RETRIED,
    AQ_PGR_CREATED,
    AQ_PGR_STARTED,
    AQ_PGR_FINISHED,
    AQ_PGR_KEY,
    AQ_PGR_NAME,
    AQ_PGR_BATCH,
    AQ_PGR_AFTER,
    AQ_PGR_AFTER_POLICY,
    AQ_PGR_ARGS,
    AQ_PGR_RESULT,
    AQ_PGR_ERROR_CODE,
    AQ_PGR_ERROR_MESSAGE,
    AQ_PGR_NCOLS,
};

/* The job record of a row: v[col] the text of each column (times in
 * microseconds since the epoch), NULL for SQL NULL. NULL when the row
 * cannot be a job's (no id, a state or kind out of range). */
json_t *aq_pgremote_record(const char *const *v);

/* A list's statement: sql (owned) and its parameters (values[0..n),
 * pointing into the struct). */
struct aq_pgremote_listq {
    char *sql;
    const char *values[8];
    int n;
    char states[32], after[24], before[24], limit[24];
};
void aq_pgremote_list_sql(const char *schema, const struct aq_list *l,
                          struct aq_pgremote_listq *q);

#endif
