/* SPDX-License-Identifier: MIT */
/*
 * lib/pgremote.c: methods on jobs other nodes hold, or the pool holds,
 * answered from S.jobs (lib/pgremote.h).
 *
 * A request is one transaction of one statement (a lookup, or a change
 * with its notifications in the same statement, so they are sent exactly
 * when the change commits), then its callback. Waits and joins register
 * once their first answer says they must wait: a wait as a watch of its
 * job id (a future shared by every wait on that id), a join as a join
 * request; both are re-checked together by one transaction (one
 * statement for every watched id, one for the joins of queues, one for
 * those of batches, one for joins of every queue), at each "f"
 * notification and every poll interval, one check at a time (a check
 * asked for while one is in flight follows it).
 */
#include "pgremote.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "broker.h"
#include "clock.h"
#include "error.h"
#include "idmap.h"
#include "job.h"
#include "jwrite.h"
#include "log.h"
#include "pg_schema.h"
#include "pgconn.h"
#include "task.h"
#include "xmalloc.h"

#define POLL_MS 1000         /* ASYNCQ_PG_POLL_MS sets another */
#define REQ_TIMEOUT_MS 15000 /* a request's answer, at most */
#define STATEMENT_TIMEOUT_MS 10000

enum rq_kind {
    RQ_STATUS,
    RQ_CANCEL,
    RQ_RETRY,
    RQ_DELETE,
    RQ_LIST,
    RQ_JOIN,
    RQ_FUTURES,
    RQ_COUNT, /* by queue: a number */
};

enum join_kind { JOIN_ALL, JOIN_QUEUE, JOIN_BATCH };

struct aq_pgremote_req {
    LIST_ENTRY(aq_pgremote_req) link; /* r->reqs: every request alive */
    /* r->joins while is_joining; r->cancels while is_cancelling */
    TAILQ_ENTRY(aq_pgremote_req) jlink;
    struct aq_pgremote *r;
    enum rq_kind kind;
    aq_pgremote_cb *cb;
    aq_pgremote_futures_cb *fcb;
    void *arg;
    bool is_over;     /* told (or withdrawn): no callback after */
    bool is_querying; /* its statement's callback is still to come */
    bool is_joining;
    bool is_cancelling;  /* waits for a held row's end */
    struct event *timer; /* the answer's deadline while querying */
    uint64_t id;
    uint64_t *ids; /* RQ_FUTURES: n of them */
    size_t n;
    size_t limit; /* RQ_LIST */
    bool is_desc;
    enum join_kind join_kind;
    char *join_name;
    uint64_t seq;           /* a join's registration */
    struct aq_task *future; /* RQ_CANCEL: the end it waits for */
};
LIST_HEAD(rq_list, aq_pgremote_req);
TAILQ_HEAD(rq_joins, aq_pgremote_req);

/* A waited id: the future every wait on it shares. */
struct watch {
    uint64_t id;
    struct aq_task *task; /* ours */
    uint64_t seq;         /* registration */
    uint64_t seen;        /* the check that last saw its row */
};

struct aq_pgremote {
    struct event_base *base;
    struct aq_pgconn *conn; /* owned */
    char *schema, *channel, *node;
    char why[512];
    struct aq_error unavail;
    struct rq_list reqs;
    struct rq_joins joins;
    struct rq_joins cancels;  /* waiting for the rows' holders */
    struct aq_idmap *watches; /* id: struct watch */
    size_t nwatches;
    uint64_t seq;       /* registrations so far */
    uint64_t check_seq; /* what the check in flight covers */
    bool is_checking, is_again;
    uint64_t *sent; /* ids of the check in flight */
    size_t nsent;
    struct event *check_ev, *poll_ev;
    char *sql_record, *sql_cancel, *sql_retry, *sql_delete, *sql_check_ids,
        *sql_check_queues, *sql_check_batches, *sql_check_all,
        *sql_cancel_queue, *sql_retry_queue, *sql_delete_queue;
};

/* ---- records ---- */

static json_t *
wall_seconds(int64_t us)
{
    return json_real((double)us / 1e6);
}

static int64_t
num(const char *v)
{
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

json_t *
aq_pgremote_record(const char *const *v)
{
    int64_t state, kind, retried;
    uint64_t id;
    json_t *rec;

    if (v[AQ_PGR_ID] == NULL || v[AQ_PGR_QUEUE] == NULL ||
        v[AQ_PGR_STATE] == NULL || v[AQ_PGR_KIND] == NULL)
        return NULL;
    id = strtoull(v[AQ_PGR_ID], NULL, 10);
    state = num(v[AQ_PGR_STATE]);
    kind = num(v[AQ_PGR_KIND]);
    if (id == 0 || state < AQ_JOB_DELAYED || state > AQ_JOB_CANCELLED ||
        kind < AQ_KIND_EXEC || kind > AQ_KIND_REMOTE)
        return NULL;
    rec = json_object();
    json_object_set_new(rec, "job", json_integer((json_int_t)id));
    json_object_set_new(rec, "queue", json_string(v[AQ_PGR_QUEUE]));
    json_object_set_new(rec, "kind",
                        json_string(aq_kind_name((enum aq_kind)kind)));
    json_object_set_new(
        rec, "state", json_string(aq_job_state_name((enum aq_job_state)state)));
    json_object_set_new(rec, "priority",
                        json_integer((json_int_t)num(v[AQ_PGR_PRIORITY])));
    json_object_set_new(rec, "attempts",
                        json_integer((json_int_t)num(v[AQ_PGR_ATTEMPTS])));
    json_object_set_new(rec, "created", wall_seconds(num(v[AQ_PGR_CREATED])));
    /* "" is a record whose args were not kept (an older journal's). */
    if (v[AQ_PGR_ARGS] != NULL && v[AQ_PGR_ARGS][0] != '\0')
        json_object_set_new(rec, "args",
                            aq_jraw(v[AQ_PGR_ARGS], strlen(v[AQ_PGR_ARGS])));
    if (state == AQ_JOB_DELAYED && v[AQ_PGR_DUE] != NULL)
        json_object_set_new(rec, "due", wall_seconds(num(v[AQ_PGR_DUE])));
    if (v[AQ_PGR_NAME] != NULL)
        json_object_set_new(rec, "name", json_string(v[AQ_PGR_NAME]));
    if (v[AQ_PGR_BATCH] != NULL)
        json_object_set_new(rec, "batch", json_string(v[AQ_PGR_BATCH]));
    if ((retried = num(v[AQ_PGR_RETRIED])) > 0)
        json_object_set_new(rec, "retried", json_integer((json_int_t)retried));
    if (v[AQ_PGR_KEY] != NULL)
        json_object_set_new(rec, "key", json_string(v[AQ_PGR_KEY]));
    if (state == AQ_JOB_WAITING && num(v[AQ_PGR_DUE]) != 0)
        json_object_set_new(rec, "due", wall_seconds(num(v[AQ_PGR_DUE])));
    if (v[AQ_PGR_AFTER] != NULL) {
        const char *p = v[AQ_PGR_AFTER] + (v[AQ_PGR_AFTER][0] == '{');
        json_t *after = json_array();

        while (*p != '\0' && *p != '}') {
            char *end;
            unsigned long long a = strtoull(p, &end, 10);

            if (end == p)
                break;
            if (a != 0)
                json_array_append_new(after, json_integer((json_int_t)a));
            p = end + (*end == ',');
        }
        if (json_array_size(after) > 0) {
            json_object_set_new(rec, "after", after);
            json_object_set_new(
                rec, "after_policy",
                json_string(aq_after_policy_names[num(v[AQ_PGR_AFTER_POLICY]) ==
                                                          AQ_AFTER_FINISHED
                                                      ? AQ_AFTER_FINISHED
                                                      : AQ_AFTER_DONE]));
        } else
            json_decref(after);
    }
    if (v[AQ_PGR_STARTED] != NULL && num(v[AQ_PGR_STARTED]) != 0)
        json_object_set_new(rec, "started",
                            wall_seconds(num(v[AQ_PGR_STARTED])));
    if (v[AQ_PGR_FINISHED] != NULL && num(v[AQ_PGR_FINISHED]) != 0)
        json_object_set_new(rec, "finished",
                            wall_seconds(num(v[AQ_PGR_FINISHED])));
    if (v[AQ_PGR_RESULT] != NULL)
        json_object_set_new(
            rec, "result", aq_jraw(v[AQ_PGR_RESULT], strlen(v[AQ_PGR_RESULT])));
    if (v[AQ_PGR_ERROR_CODE] != NULL)
        json_object_set_new(
            rec, "error",
            json_pack("{s:s,s:s}", "code", v[AQ_PGR_ERROR_CODE], "message",
                      v[AQ_PGR_ERROR_MESSAGE] != NULL ? v[AQ_PGR_ERROR_MESSAGE]
                                                      : ""));
    return rec;
}

/* The record of res's row (columns from col on, in AQ_PGR_* order). */
static json_t *
row_record(const PGresult *res, int row, int col)
{
    const char *v[AQ_PGR_NCOLS];

    for (int i = 0; i < AQ_PGR_NCOLS; i++)
        v[i] = PQgetisnull(res, row, col + i) ? NULL
                                              : PQgetvalue(res, row, col + i);
    return aq_pgremote_record(v);
}

/* ---- SQL ---- */

/* clang-format off */
#define TIME_US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"
#define US_TIME(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"

/* A record's columns, in AQ_PGR_* order. */
#define COLS \
    "id, queue, kind, state, priority, " TIME_US("due") ", attempts, " \
    "retried, " TIME_US("created") ", " TIME_US("started") ", " \
    TIME_US("finished") ", key, name, batch, after, after_policy, args, " \
    "result, error_code, error_message"

static const char sql_record[] =
    "SELECT " COLS " FROM @S.jobs WHERE id = $1::bigint";

/* A row no node holds and not running ends cancelled now, as the broker
 * ends a cancelled pending job; one a node holds is asked of it. Columns:
 * cancelled (0/1), the state before. */
static const char sql_cancel[] =
    "WITH old AS (SELECT state, node FROM @S.jobs WHERE id = $1::bigint), "
    "c AS (UPDATE @S.jobs SET state = 6, finished = now(), "
        "error_code = 'cancelled', error_message = 'cancelled by request', "
        "lease_deadline = NULL "
        "WHERE id = $1::bigint AND node IS NULL AND state < 3 RETURNING id), "
    "f AS (SELECT pg_notify($2, 'f') FROM c), "
    "h AS (SELECT pg_notify($2, 'c ' || $1::bigint) FROM old "
        "WHERE old.state < 4 AND NOT EXISTS (SELECT 1 FROM c)) "
    "SELECT (SELECT count(*) FROM c) + 0 * (SELECT count(*) FROM f) "
        "+ 0 * (SELECT count(*) FROM h), old.state FROM old";

/* Columns: the state after (NULL: not retried), the state before,
 * whether its args were kept. $3: the delay in microseconds. */
static const char sql_retry[] =
    "WITH old AS (SELECT state, args <> '' AS has_args FROM @S.jobs "
        "WHERE id = $1::bigint), "
    "r AS (UPDATE @S.jobs AS j SET "
        "state = CASE WHEN $3::bigint > 0 THEN 0 ELSE 2 END, "
        "due = CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * "
            "interval '1 microsecond' END, "
        "node = NULL, retried = retried + 1, attempts = 0, result = NULL, "
        "error_code = NULL, error_message = NULL, started = NULL, "
        "finished = NULL, lease_deadline = NULL, "
        "seq = nextval('@S.job_seq'), "
        "key = CASE WHEN EXISTS (SELECT 1 FROM @S.jobs k WHERE "
            "k.key = j.key AND k.state < 4) THEN NULL ELSE j.key END "
        "WHERE id = $1::bigint AND state >= 4 AND args <> '' "
        "RETURNING j.state, j.queue), "
    "p AS (SELECT pg_notify($2, 'p ' || queue) FROM r WHERE state = 2), "
    "x AS (SELECT pg_notify($2, 'x ' || $1::bigint) FROM r) "
    "SELECT (SELECT state FROM r), old.state, old.has_args, "
        "(SELECT count(*) FROM p) + (SELECT count(*) FROM x) FROM old";

/* Columns: deleted (0/1), the state before. */
static const char sql_delete[] =
    "WITH old AS (SELECT state FROM @S.jobs WHERE id = $1::bigint), "
    "d AS (DELETE FROM @S.jobs WHERE id = $1::bigint AND state >= 4 "
        "RETURNING id), "
    "x AS (SELECT pg_notify($2, 'x ' || $1::bigint) FROM d) "
    "SELECT (SELECT count(*) FROM d) + 0 * (SELECT count(*) FROM x), "
        "old.state FROM old";

/* By queue ($1), what other nodes and the pool hold (node is not $3,
 * this node: the broker does its own): pool rows not running end
 * cancelled, rows other nodes hold are asked of them ("c ID"; running
 * ones with $4). The column: how many. */
static const char sql_cancel_queue[] =
    "WITH c AS (UPDATE @S.jobs SET state = 6, finished = now(), "
        "error_code = 'cancelled', error_message = 'cancelled by request', "
        "lease_deadline = NULL "
        "WHERE queue = $1 AND node IS NULL AND state < 3 RETURNING id), "
    "f AS (SELECT pg_notify($2, 'f') WHERE EXISTS (SELECT 1 FROM c)), "
    "h AS (SELECT pg_notify($2, 'c ' || id) FROM @S.jobs WHERE queue = $1 "
        "AND node IS NOT NULL AND node <> $3 "
        "AND (state < 3 OR (state = 3 AND $4::boolean))) "
    "SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM h) "
        "+ 0 * (SELECT count(*) FROM f)";

/* Records of queue $1 in state $4 not this node's ($3), retried as one
 * is ($5: the delay in microseconds). */
static const char sql_retry_queue[] =
    "WITH r AS (UPDATE @S.jobs AS j SET "
        "state = CASE WHEN $5::bigint > 0 THEN 0 ELSE 2 END, "
        "due = CASE WHEN $5::bigint > 0 THEN now() + $5::bigint * "
            "interval '1 microsecond' END, "
        "node = NULL, retried = retried + 1, attempts = 0, result = NULL, "
        "error_code = NULL, error_message = NULL, started = NULL, "
        "finished = NULL, lease_deadline = NULL, "
        "seq = nextval('@S.job_seq'), "
        "key = CASE WHEN EXISTS (SELECT 1 FROM @S.jobs k WHERE "
            "k.key = j.key AND k.state < 4) THEN NULL ELSE j.key END "
        "WHERE queue = $1 AND state = $4::smallint AND args <> '' "
        "AND node IS DISTINCT FROM $3 RETURNING j.id, j.state), "
    "p AS (SELECT pg_notify($2, 'p ' || $1) "
        "WHERE EXISTS (SELECT 1 FROM r WHERE state = 2)), "
    "x AS (SELECT pg_notify($2, 'x ' || id) FROM r) "
    "SELECT (SELECT count(*) FROM r) + 0 * (SELECT count(*) FROM p) "
        "+ 0 * (SELECT count(*) FROM x)";

static const char sql_delete_queue[] =
    "WITH d AS (DELETE FROM @S.jobs WHERE queue = $1 AND state = $4::smallint "
        "AND node IS DISTINCT FROM $3 RETURNING id), "
    "x AS (SELECT pg_notify($2, 'x ' || id) FROM d) "
    "SELECT (SELECT count(*) FROM d) + 0 * (SELECT count(*) FROM x)";

static const char sql_check_ids[] =
    "SELECT " COLS " FROM @S.jobs WHERE id = ANY($1::bigint[])";

/* The queues (batches) of $1 with no unfinished row, each by the
 * (queue, state, id) index. */
static const char sql_check_queues[] =
    "SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS "
    "(SELECT 1 FROM @S.jobs j WHERE j.queue = k AND j.state < 4)";
static const char sql_check_batches[] =
    "SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS "
    "(SELECT 1 FROM @S.jobs j WHERE j.batch = k AND j.state < 4)";
static const char sql_check_all[] =
    "SELECT NOT EXISTS (SELECT 1 FROM @S.jobs WHERE state < 4)";
/* clang-format on */

/* *sql with before, $n and after appended. */
static void
sql_add(char **sql, const char *before, int n, const char *after)
{
    char *joined = xasprintf("%s%s$%d%s", *sql, before, n, after);

    free(*sql);
    *sql = joined;
}

void
aq_pgremote_list_sql(const char *schema, const struct aq_list *l,
                     struct aq_pgremote_listq *q)
{
    unsigned all = (1u << AQ_JOB_CANCELLED << 1) - 1;
    char *sql = aq_pg_sql("SELECT " COLS " FROM @S.jobs WHERE true", schema);
    size_t len = 0;

    memset(q, 0, sizeof *q);
    /* list's states are aq_list_state_names' order: the rows' numbers. */
    if ((l->states & all) != all) {
        q->states[len++] = '{';
        for (int st = 0; st <= AQ_JOB_CANCELLED; st++) {
            if (!(l->states & (1u << st)))
                continue;
            if (len > 1)
                q->states[len++] = ',';
            q->states[len++] = (char)('0' + st);
        }
        q->states[len++] = '}';
        q->values[q->n++] = q->states;
        sql_add(&sql, " AND state = ANY(", q->n, "::smallint[])");
    }
    if (l->queue != NULL) {
        q->values[q->n++] = l->queue;
        sql_add(&sql, " AND queue = ", q->n, "");
    }
    if (l->name != NULL) {
        q->values[q->n++] = l->name;
        sql_add(&sql, " AND name = ", q->n, "");
    }
    if (l->batch != NULL) {
        q->values[q->n++] = l->batch;
        sql_add(&sql, " AND batch = ", q->n, "");
    }
    if (l->after != 0) {
        snprintf(q->after, sizeof q->after, "%" PRIu64, l->after);
        q->values[q->n++] = q->after;
        sql_add(&sql, " AND id > ", q->n, "");
    }
    if (l->before != 0) {
        snprintf(q->before, sizeof q->before, "%" PRIu64, l->before);
        q->values[q->n++] = q->before;
        sql_add(&sql, " AND id < ", q->n, "");
    }
    /* One beyond the page: whether there is a next one. */
    snprintf(q->limit, sizeof q->limit, "%zu", l->limit + 1);
    q->values[q->n++] = q->limit;
    sql_add(&sql,
            l->is_desc ? " ORDER BY id DESC LIMIT " : " ORDER BY id LIMIT ",
            q->n, "");
    q->sql = sql;
}

/* ---- requests ---- */

static void
rq_free(struct aq_pgremote_req *rq)
{
    LIST_REMOVE(rq, link);
    if (rq->timer != NULL)
        event_free(rq->timer);
    free(rq->ids);
    free(rq->join_name);
    free(rq);
}

static void cancel_end_cb(struct aq_task *t, void *arg);

/* The request is over: no callback after; freed once no statement's
 * callback is to come. */
static void
rq_end(struct aq_pgremote_req *rq)
{
    rq->is_over = true;
    if (rq->timer != NULL)
        evtimer_del(rq->timer);
    if (rq->is_joining) {
        TAILQ_REMOVE(&rq->r->joins, rq, jlink);
        rq->is_joining = false;
    }
    if (rq->is_cancelling) {
        TAILQ_REMOVE(&rq->r->cancels, rq, jlink);
        rq->is_cancelling = false;
    }
    if (rq->future != NULL) {
        aq_task_remove_done_cb(rq->future, cancel_end_cb, rq);
        aq_task_unref(rq->future);
        rq->future = NULL;
    }
    if (!rq->is_querying)
        rq_free(rq);
}

/* Tells the request's end (result taken, or err) and ends it. */
static void
rq_tell(struct aq_pgremote_req *rq, json_t *result, const struct aq_error *err)
{
    aq_pgremote_cb *cb = rq->cb;
    void *arg = rq->arg;

    rq_end(rq);
    if (cb != NULL)
        cb(arg, result, err);
    else
        json_decref(result);
}

static void rq_fail(struct aq_pgremote_req *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rq_fail(struct aq_pgremote_req *rq, int code, const char *fmt, ...)
{
    struct aq_error err;
    va_list ap;

    err.code = code;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    if (rq->kind == RQ_FUTURES) {
        aq_pgremote_futures_cb *fcb = rq->fcb;
        void *arg = rq->arg;

        rq_end(rq);
        if (fcb != NULL)
            fcb(arg, NULL, &err);
        return;
    }
    rq_tell(rq, NULL, &err);
}

void
aq_pgremote_withdraw(struct aq_pgremote_req *rq)
{
    if (rq == NULL || rq->is_over)
        return;
    rq->cb = NULL;
    rq->fcb = NULL;
    rq_end(rq);
}

static void
rq_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgremote_req *rq = arg;

    rq_fail(rq, AQ_ERR_INTERNAL,
            "store unavailable: no answer from the database in %d ms",
            REQ_TIMEOUT_MS);
}

static const struct aq_error *
unavailable(struct aq_pgremote *r)
{
    aq_error_set(&r->unavail, AQ_ERR_INTERNAL, "store unavailable: %s",
                 r->why[0] != '\0' ? r->why : "connecting");
    return &r->unavail;
}

static aq_pgconn_cb rq_result_cb;

static void
commit_noop_cb(void *arg, const PGresult *res, const char *err)
{
}

/* A request sending sql (values[0..n)) as a transaction of its own. */
static struct aq_pgremote_req *
rq_send(struct aq_pgremote *r, enum rq_kind kind, const char *name,
        const char *sql, int n, const char *const *values, aq_pgremote_cb *cb,
        void *arg, struct aq_pgremote_req **req, struct aq_error *err)
{
    struct aq_pgremote_req *rq;
    struct timeval tv = {REQ_TIMEOUT_MS / 1000, (REQ_TIMEOUT_MS % 1000) * 1000};

    if (req != NULL)
        *req = NULL;
    if (!aq_pgconn_is_ready(r->conn)) {
        *err = *unavailable(r);
        return NULL;
    }
    rq = xcalloc(1, sizeof *rq);
    rq->r = r;
    rq->kind = kind;
    rq->cb = cb;
    rq->arg = arg;
    if (aq_pgconn_query(r->conn, name, sql, n, values, rq_result_cb, rq, err) <
            0 ||
        aq_pgconn_commit(r->conn, commit_noop_cb, NULL, err) < 0) {
        /* never: it is ready (a query queued stays queued) */
        free(rq);
        *err = *unavailable(r);
        return NULL;
    }
    rq->is_querying = true;
    LIST_INSERT_HEAD(&r->reqs, rq, link);
    rq->timer = evtimer_new(r->base, rq_timeout_cb, rq);
    evtimer_add(rq->timer, &tv);
    if (cb == NULL && kind != RQ_FUTURES)
        rq_end(rq); /* nobody to tell: it runs all the same */
    else if (req != NULL)
        *req = rq;
    return rq;
}

static int
id_request(struct aq_pgremote *r, enum rq_kind kind, const char *name,
           const char *sql, uint64_t id, const char *extra, aq_pgremote_cb *cb,
           void *arg, struct aq_pgremote_req **req, struct aq_error *err)
{
    char ids[24];
    const char *values[] = {ids, r->channel, extra};
    struct aq_pgremote_req *rq;
    int n = kind == RQ_STATUS ? 1 : extra != NULL ? 3 : 2;

    snprintf(ids, sizeof ids, "%" PRIu64, id);
    rq = rq_send(r, kind, name, sql, n, values, cb, arg, req, err);
    if (rq == NULL)
        return -1;
    rq->id = id;
    return 0;
}

int
aq_pgremote_status(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                   void *arg, struct aq_pgremote_req **req,
                   struct aq_error *err)
{
    return id_request(r, RQ_STATUS, "aq_r_record", r->sql_record, id, NULL, cb,
                      arg, req, err);
}

int
aq_pgremote_cancel(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                   void *arg, struct aq_pgremote_req **req,
                   struct aq_error *err)
{
    return id_request(r, RQ_CANCEL, "aq_r_cancel", r->sql_cancel, id, NULL, cb,
                      arg, req, err);
}

int
aq_pgremote_retry(struct aq_pgremote *r, uint64_t id, double delay_s,
                  aq_pgremote_cb *cb, void *arg, struct aq_pgremote_req **req,
                  struct aq_error *err)
{
    char delay[24];

    snprintf(delay, sizeof delay, "%" PRId64, aq_clock_s_to_us(delay_s));
    return id_request(r, RQ_RETRY, "aq_r_retry", r->sql_retry, id, delay, cb,
                      arg, req, err);
}

int
aq_pgremote_delete(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                   void *arg, struct aq_pgremote_req **req,
                   struct aq_error *err)
{
    return id_request(r, RQ_DELETE, "aq_r_delete", r->sql_delete, id, NULL, cb,
                      arg, req, err);
}

int
aq_pgremote_list(struct aq_pgremote *r, const struct aq_list *l,
                 aq_pgremote_cb *cb, void *arg, struct aq_pgremote_req **req,
                 struct aq_error *err)
{
    struct aq_pgremote_listq q;
    struct aq_pgremote_req *rq;

    aq_pgremote_list_sql(r->schema, l, &q);
    rq = rq_send(r, RQ_LIST, NULL, q.sql, q.n, q.values, cb, arg, req, err);
    free(q.sql);
    if (rq == NULL)
        return -1;
    rq->limit = l->limit;
    rq->is_desc = l->is_desc;
    return 0;
}

/* A statement by queue whose one column is a count: $1 queue, $2 the
 * channel, $3 this node, then extra. */
static int
queue_request(struct aq_pgremote *r, const char *name, const char *sql,
              const char *queue, const char *extra1, const char *extra2,
              aq_pgremote_cb *cb, void *arg, struct aq_pgremote_req **req,
              struct aq_error *err)
{
    const char *values[] = {queue, r->channel, r->node, extra1, extra2};

    return rq_send(r, RQ_COUNT, name, sql, extra2 != NULL ? 5 : 4, values, cb,
                   arg, req, err) != NULL
               ? 0
               : -1;
}

int
aq_pgremote_cancel_queue(struct aq_pgremote *r, const char *queue, bool running,
                         aq_pgremote_cb *cb, void *arg,
                         struct aq_pgremote_req **req, struct aq_error *err)
{
    return queue_request(r, "aq_r_cancel_queue", r->sql_cancel_queue, queue,
                         running ? "true" : "false", NULL, cb, arg, req, err);
}

/* A finished state's number ("done", "failed", "cancelled"). */
static const char *
state_number(const char *state)
{
    return strcmp(state, "done") == 0     ? "4"
           : strcmp(state, "failed") == 0 ? "5"
                                          : "6";
}

int
aq_pgremote_retry_queue(struct aq_pgremote *r, const char *queue,
                        const char *state, double delay_s, aq_pgremote_cb *cb,
                        void *arg, struct aq_pgremote_req **req,
                        struct aq_error *err)
{
    char delay[24];

    snprintf(delay, sizeof delay, "%" PRId64, aq_clock_s_to_us(delay_s));
    return queue_request(r, "aq_r_retry_queue", r->sql_retry_queue, queue,
                         state_number(state), delay, cb, arg, req, err);
}

int
aq_pgremote_delete_queue(struct aq_pgremote *r, const char *queue,
                         const char *state, aq_pgremote_cb *cb, void *arg,
                         struct aq_pgremote_req **req, struct aq_error *err)
{
    return queue_request(r, "aq_r_delete_queue", r->sql_delete_queue, queue,
                         state_number(state), NULL, cb, arg, req, err);
}

static void check_soon(struct aq_pgremote *r);

int
aq_pgremote_join(struct aq_pgremote *r, const char *queue, const char *batch,
                 aq_pgremote_cb *cb, void *arg, struct aq_pgremote_req **req,
                 struct aq_error *err)
{
    struct aq_pgremote_req *rq;

    *req = NULL;
    if (!aq_pgconn_is_ready(r->conn)) {
        *err = *unavailable(r);
        return -1;
    }
    rq = xcalloc(1, sizeof *rq);
    rq->r = r;
    rq->kind = RQ_JOIN;
    rq->cb = cb;
    rq->arg = arg;
    rq->join_kind = batch != NULL   ? JOIN_BATCH
                    : queue != NULL ? JOIN_QUEUE
                                    : JOIN_ALL;
    rq->join_name = xstrdup(batch != NULL ? batch : queue != NULL ? queue : "");
    rq->seq = ++r->seq;
    rq->is_joining = true;
    LIST_INSERT_HEAD(&r->reqs, rq, link);
    TAILQ_INSERT_TAIL(&r->joins, rq, jlink);
    check_soon(r);
    *req = rq;
    return 0;
}

int
aq_pgremote_futures(struct aq_pgremote *r, const uint64_t *ids, size_t n,
                    aq_pgremote_futures_cb *cb, void *arg,
                    struct aq_pgremote_req **req, struct aq_error *err)
{
    struct aq_pgremote_req *rq;
    char *list = xmalloc(n * 21 + 3), *p = list;
    const char *values[1] = {list};

    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%" PRIu64, i > 0 ? "," : "", ids[i]);
    *p++ = '}';
    *p = '\0';
    rq = rq_send(r, RQ_FUTURES, "aq_r_ids", r->sql_check_ids, 1, values, NULL,
                 arg, req, err);
    free(list);
    if (rq == NULL)
        return -1;
    rq->fcb = cb;
    rq->ids = xreallocarray(NULL, n, sizeof *ids);
    memcpy(rq->ids, ids, n * sizeof *ids);
    rq->n = n;
    *req = rq;
    return 0;
}

/* ---- watches ---- */

static uint64_t
watch_key(const void *value)
{
    return ((const struct watch *)value)->id;
}

static void
record_free(void *p)
{
    json_decref(p);
}

/* The future of id, made and watched if need be (a new reference). */
static struct aq_task *
watch_future(struct aq_pgremote *r, uint64_t id)
{
    struct watch *w = aq_idmap_get(r->watches, id);

    if (w == NULL) {
        w = xcalloc(1, sizeof *w);
        w->id = id;
        w->task = aq_task_new(r->base, NULL, NULL);
        w->seq = ++r->seq;
        aq_idmap_put(r->watches, w);
        r->nwatches++;
    }
    return aq_task_ref(w->task);
}

/* The watch ends: its future settled with rec (taken), or failed. */
static void
watch_settle(struct aq_pgremote *r, struct watch *w, json_t *rec)
{
    aq_idmap_del(r->watches, w->id);
    r->nwatches--;
    if (rec != NULL)
        aq_task_set_result(w->task, rec, record_free);
    else {
        struct aq_error err;

        aq_error_set(&err, AQ_ERR_NO_JOB, "no such job: %llu",
                     (unsigned long long)w->id);
        aq_task_set_error(w->task, &err);
    }
    aq_task_unref(w->task);
    free(w);
}

/* ---- answers ---- */

static void
answer_status(struct aq_pgremote_req *rq, const PGresult *res)
{
    json_t *rec = PQntuples(res) > 0 ? row_record(res, 0, 0) : NULL;

    if (rec == NULL) {
        rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %llu",
                (unsigned long long)rq->id);
        return;
    }
    rq_tell(rq, rec, NULL);
}

static json_t *
cancel_reply(json_t *record)
{
    return json_pack("{s:O,s:O}", "job", json_object_get(record, "job"),
                     "state", json_object_get(record, "state"));
}

static void
cancel_end_cb(struct aq_task *t, void *arg)
{
    struct aq_pgremote_req *rq = arg;
    json_t *rec = aq_task_result(t);

    if (rec == NULL) {
        rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %llu",
                (unsigned long long)rq->id);
        return;
    }
    rq_tell(rq, cancel_reply(rec), NULL);
}

static void
answer_cancel(struct aq_pgremote_req *rq, const PGresult *res)
{
    int64_t was;

    if (PQntuples(res) == 0) {
        rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %llu",
                (unsigned long long)rq->id);
        return;
    }
    was = num(PQgetvalue(res, 0, 1));
    if (num(PQgetvalue(res, 0, 0)) > 0) {
        rq_tell(rq,
                json_pack("{s:I,s:s}", "job", (json_int_t)rq->id, "state",
                          "cancelled"),
                NULL);
        return;
    }
    if (was >= AQ_JOB_DONE) {
        rq_fail(rq, AQ_ERR_FINISHED, "job %llu already %s",
                (unsigned long long)rq->id,
                aq_job_state_name((enum aq_job_state)was));
        return;
    }
    /* Its holder was asked ("c ID"): the answer once it has stopped. */
    if (rq->cb == NULL) {
        rq_end(rq);
        return;
    }
    rq->future = watch_future(rq->r, rq->id);
    aq_task_add_done_cb(rq->future, cancel_end_cb, rq);
    rq->is_cancelling = true;
    TAILQ_INSERT_TAIL(&rq->r->cancels, rq, jlink);
    check_soon(rq->r);
}

static void
answer_retry(struct aq_pgremote_req *rq, const PGresult *res)
{
    int64_t was;

    if (PQntuples(res) == 0) {
        rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %llu",
                (unsigned long long)rq->id);
        return;
    }
    was = num(PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 0)) {
        rq_tell(rq,
                json_pack("{s:I,s:s}", "job", (json_int_t)rq->id, "state",
                          aq_job_state_name(
                              (enum aq_job_state)num(PQgetvalue(res, 0, 0)))),
                NULL);
        return;
    }
    if (was < AQ_JOB_DONE)
        rq_fail(rq, AQ_ERR_NOT_FINISHED, "retry: job %llu is %s, not finished",
                (unsigned long long)rq->id,
                aq_job_state_name((enum aq_job_state)was));
    else
        rq_fail(rq, AQ_ERR_NOT_ALLOWED,
                "retry: job %llu: its args were not kept (it finished under "
                "an older asyncqd)",
                (unsigned long long)rq->id);
}

static void
answer_delete(struct aq_pgremote_req *rq, const PGresult *res)
{
    int64_t was;

    if (PQntuples(res) == 0) {
        rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %llu",
                (unsigned long long)rq->id);
        return;
    }
    if (num(PQgetvalue(res, 0, 0)) > 0) {
        rq_tell(rq,
                json_pack("{s:I,s:b}", "job", (json_int_t)rq->id, "deleted", 1),
                NULL);
        return;
    }
    was = num(PQgetvalue(res, 0, 1));
    rq_fail(rq, AQ_ERR_NOT_FINISHED,
            "delete: job %llu is %s, not finished (cancel it first)",
            (unsigned long long)rq->id,
            aq_job_state_name((enum aq_job_state)was));
}

static void
answer_list(struct aq_pgremote_req *rq, const PGresult *res)
{
    json_t *jobs = json_array();
    int n = PQntuples(res);
    uint64_t next = 0;

    for (int i = 0; i < n; i++) {
        json_t *rec;

        if ((size_t)i == rq->limit) { /* one beyond the page */
            next = strtoull(PQgetvalue(res, i - 1, AQ_PGR_ID), NULL, 10);
            break;
        }
        if ((rec = row_record(res, i, 0)) != NULL)
            json_array_append_new(jobs, rec);
    }
    rq_tell(rq,
            json_pack("{s:o,s:o}", "jobs", jobs, "next",
                      next != 0 ? json_integer((json_int_t)next) : json_null()),
            NULL);
}

static void
answer_futures(struct aq_pgremote_req *rq, const PGresult *res)
{
    struct aq_pgremote *r = rq->r;
    aq_pgremote_futures_cb *fcb = rq->fcb;
    void *arg = rq->arg;
    struct aq_task **tasks;
    json_t *found = json_object(); /* id: its record, or null (unfinished) */
    char key[24];

    for (int i = 0; i < PQntuples(res); i++) {
        json_t *rec = row_record(res, i, 0);
        const char *st = PQgetvalue(res, i, AQ_PGR_STATE);

        if (rec == NULL)
            continue;
        json_object_set_new(found, PQgetvalue(res, i, AQ_PGR_ID),
                            num(st) >= AQ_JOB_DONE ? rec : json_null());
        if (num(st) < AQ_JOB_DONE)
            json_decref(rec);
    }
    for (size_t i = 0; i < rq->n; i++) {
        snprintf(key, sizeof key, "%" PRIu64, rq->ids[i]);
        if (json_object_get(found, key) == NULL) {
            json_decref(found);
            rq_fail(rq, AQ_ERR_NO_JOB, "no such job: %s", key);
            return;
        }
    }
    tasks = xcalloc(rq->n, sizeof *tasks);
    for (size_t i = 0; i < rq->n; i++) {
        json_t *rec;

        snprintf(key, sizeof key, "%" PRIu64, rq->ids[i]);
        rec = json_object_get(found, key);
        if (json_is_object(rec)) {
            tasks[i] = aq_task_new(r->base, NULL, NULL);
            aq_task_set_result(tasks[i], json_incref(rec), record_free);
        } else
            tasks[i] = watch_future(r, rq->ids[i]);
    }
    json_decref(found);
    rq_end(rq);
    if (fcb != NULL)
        fcb(arg, tasks, NULL);
    else
        for (size_t i = 0; i < rq->n; i++)
            aq_task_unref(tasks[i]);
    free(tasks);
    check_soon(r);
}

static void
rq_result_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgremote_req *rq = arg;

    rq->is_querying = false;
    if (rq->is_over) {
        rq_free(rq);
        return;
    }
    evtimer_del(rq->timer);
    if (err != NULL) {
        if (strncmp(err, "connection lost", 15) == 0)
            rq_fail(rq, AQ_ERR_INTERNAL, "store unavailable: %s", err);
        else
            rq_fail(rq, AQ_ERR_INTERNAL, "store: postgres: %s", err);
        return;
    }
    switch (rq->kind) {
    case RQ_STATUS:
        answer_status(rq, res);
        break;
    case RQ_CANCEL:
        answer_cancel(rq, res);
        break;
    case RQ_RETRY:
        answer_retry(rq, res);
        break;
    case RQ_DELETE:
        answer_delete(rq, res);
        break;
    case RQ_LIST:
        answer_list(rq, res);
        break;
    case RQ_FUTURES:
        answer_futures(rq, res);
        break;
    case RQ_COUNT:
        rq_tell(rq,
                json_integer((json_int_t)(PQntuples(res) > 0
                                              ? num(PQgetvalue(res, 0, 0))
                                              : 0)),
                NULL);
        break;
    case RQ_JOIN:
        break; /* never: joins are checked */
    }
}

/* ---- checks ---- */

struct ids_buf {
    char *text;
    size_t len, cap;
    struct aq_pgremote *r;
};

static void
ids_add(void *value, void *arg)
{
    struct watch *w = value;
    struct ids_buf *b = arg;
    char t[24];
    int n = snprintf(t, sizeof t, "%s%" PRIu64, b->len > 1 ? "," : "", w->id);

    if (b->len + (size_t)n + 2 > b->cap) {
        b->cap = (b->len + (size_t)n + 2) * 2;
        b->text = xrealloc(b->text, b->cap);
    }
    memcpy(b->text + b->len, t, (size_t)n);
    b->len += (size_t)n;
    b->r->sent = xreallocarray(b->r->sent, b->r->nsent + 1, sizeof *b->r->sent);
    b->r->sent[b->r->nsent++] = w->id;
}

static void
check_ids_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgremote *r = arg;

    if (err != NULL)
        return; /* checked again at the next ready, or poll */
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t id = strtoull(PQgetvalue(res, i, AQ_PGR_ID), NULL, 10);
        struct watch *w = aq_idmap_get(r->watches, id);

        if (w == NULL || w->seq > r->check_seq)
            continue;
        w->seen = r->check_seq;
        if (num(PQgetvalue(res, i, AQ_PGR_STATE)) >= AQ_JOB_DONE)
            watch_settle(r, w, row_record(res, i, 0));
    }
    /* A watched row gone before it was seen finished (deleted). */
    for (size_t i = 0; i < r->nsent; i++) {
        struct watch *w = aq_idmap_get(r->watches, r->sent[i]);

        if (w != NULL && w->seq <= r->check_seq && w->seen != r->check_seq)
            watch_settle(r, w, NULL);
    }
}

/* Joins of kind whose name is in the rows of res are over. */
static void
joins_over(struct aq_pgremote *r, enum join_kind kind, const PGresult *res)
{
    struct aq_pgremote_req *rq, *next;

    for (rq = TAILQ_FIRST(&r->joins); rq != NULL; rq = next) {
        bool idle = false;

        next = TAILQ_NEXT(rq, jlink);
        if (rq->join_kind != kind || rq->seq > r->check_seq)
            continue;
        for (int i = 0; i < PQntuples(res) && !idle; i++) {
            idle = kind == JOIN_ALL
                       ? strcmp(PQgetvalue(res, i, 0), "t") == 0
                       : strcmp(PQgetvalue(res, i, 0), rq->join_name) == 0;
        }
        if (idle) {
            /* The callback may withdraw others: start again after it. */
            rq_tell(rq, NULL, NULL);
            next = TAILQ_FIRST(&r->joins);
        }
    }
}

static void
check_queues_cb(void *arg, const PGresult *res, const char *err)
{
    if (err == NULL)
        joins_over(arg, JOIN_QUEUE, res);
}

static void
check_batches_cb(void *arg, const PGresult *res, const char *err)
{
    if (err == NULL)
        joins_over(arg, JOIN_BATCH, res);
}

static void
check_all_cb(void *arg, const PGresult *res, const char *err)
{
    if (err == NULL)
        joins_over(arg, JOIN_ALL, res);
}

static void check_cb(evutil_socket_t fd, short what, void *arg);

static void
checked_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgremote *r = arg;

    r->is_checking = false;
    r->nsent = 0;
    if (r->is_again) {
        r->is_again = false;
        check_soon(r);
    }
}

/* An array literal of the names of r's joins of kind (registered up to
 * now), or NULL when there is none. */
static char *
join_names(struct aq_pgremote *r, enum join_kind kind)
{
    struct aq_pgremote_req *rq;
    char *text = NULL;

    TAILQ_FOREACH (rq, &r->joins, jlink) {
        char *more;

        if (rq->join_kind != kind)
            continue;
        /* As an element of a text array: quoted, " and \ escaped. */
        more = xmalloc(strlen(rq->join_name) * 2 + 3);
        {
            char *p = more;

            *p++ = '"';
            for (const char *s = rq->join_name; *s != '\0'; s++) {
                if (*s == '"' || *s == '\\')
                    *p++ = '\\';
                *p++ = *s;
            }
            *p++ = '"';
            *p = '\0';
        }
        if (text == NULL)
            text = xasprintf("{%s", more);
        else {
            char *t = xasprintf("%s,%s", text, more);

            free(text);
            text = t;
        }
        free(more);
    }
    if (text != NULL) {
        char *t = xasprintf("%s}", text);

        free(text);
        text = t;
    }
    return text;
}

/* One transaction re-checks every watch and join. */
static void
check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgremote *r = arg;
    struct aq_error e;
    struct aq_pgremote_req *rq;
    bool has_all = false;
    char *queues, *batches;
    int sent = 0;

    if (r->is_checking) {
        r->is_again = true;
        return;
    }
    if (!aq_pgconn_is_ready(r->conn) ||
        (r->nwatches == 0 && TAILQ_EMPTY(&r->joins)))
        return;
    r->check_seq = r->seq;
    r->nsent = 0;
    if (r->nwatches > 0) {
        struct ids_buf b = {xmalloc(64), 1, 64, r};
        const char *values[1];

        b.text[0] = '{';
        aq_idmap_each(r->watches, ids_add, &b);
        b.text[b.len++] = '}';
        b.text[b.len] = '\0';
        values[0] = b.text;
        sent += aq_pgconn_query(r->conn, "aq_r_ids", r->sql_check_ids, 1,
                                values, check_ids_cb, r, &e) == 0;
        free(b.text);
    }
    queues = join_names(r, JOIN_QUEUE);
    batches = join_names(r, JOIN_BATCH);
    TAILQ_FOREACH (rq, &r->joins, jlink)
        has_all |= rq->join_kind == JOIN_ALL;
    if (queues != NULL) {
        const char *values[] = {queues};

        sent += aq_pgconn_query(r->conn, "aq_r_queues", r->sql_check_queues, 1,
                                values, check_queues_cb, r, &e) == 0;
    }
    if (batches != NULL) {
        const char *values[] = {batches};

        sent += aq_pgconn_query(r->conn, "aq_r_batches", r->sql_check_batches,
                                1, values, check_batches_cb, r, &e) == 0;
    }
    if (has_all)
        sent += aq_pgconn_query(r->conn, "aq_r_all", r->sql_check_all, 0, NULL,
                                check_all_cb, r, &e) == 0;
    free(queues);
    free(batches);
    if (sent > 0 && aq_pgconn_commit(r->conn, checked_cb, r, &e) == 0)
        r->is_checking = true;
}

static void
check_soon(struct aq_pgremote *r)
{
    event_active(r->check_ev, EV_TIMEOUT, 0);
}

/* ---- the session ---- */

static void
ready_hook(struct aq_pgconn *c, void *arg)
{
    struct aq_pgremote *r = arg;
    struct aq_error e;
    char *listen = xasprintf("LISTEN \"%s\"", r->channel);
    char *timeout =
        xasprintf("SET statement_timeout = %d", STATEMENT_TIMEOUT_MS);

    r->why[0] = '\0';
    r->is_checking = false;
    r->nsent = 0;
    if (aq_pgconn_query(c, NULL, timeout, 0, NULL, NULL, NULL, &e) == 0 &&
        aq_pgconn_query(c, NULL, listen, 0, NULL, NULL, NULL, &e) == 0)
        aq_pgconn_commit(c, commit_noop_cb, NULL, &e);
    free(listen);
    free(timeout);
    check_soon(r); /* what finished while it was away */
}

static void
lost_hook(struct aq_pgconn *c, const char *why, void *arg)
{
    struct aq_pgremote *r = arg;

    snprintf(r->why, sizeof r->why, "%s", why);
    r->is_checking = false;
    r->nsent = 0;
}

static void
notify_hook(struct aq_pgconn *c, const char *channel, const char *payload,
            void *arg)
{
    if (strcmp(payload, "f") == 0)
        check_soon(arg);
}

static void
cancel_again_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgremote_req *rq = arg;

    rq->is_querying = false;
    if (rq->is_over)
        rq_free(rq);
    /* Else its row's end comes through its watch, as before. */
}

/* The cancels still waiting are sent again: a row whose holder died and
 * went back to the pool meanwhile ends cancelled now, and a holder that
 * missed "c ID" (its session lost) hears it again. */
static void
cancels_again(struct aq_pgremote *r)
{
    struct aq_pgremote_req *rq;
    struct aq_error e;
    int sent = 0;

    if (!aq_pgconn_is_ready(r->conn))
        return;
    TAILQ_FOREACH (rq, &r->cancels, jlink) {
        char id[24];
        const char *values[] = {id, r->channel};

        if (rq->is_querying)
            continue;
        snprintf(id, sizeof id, "%" PRIu64, rq->id);
        if (aq_pgconn_query(r->conn, "aq_r_cancel", r->sql_cancel, 2, values,
                            cancel_again_cb, rq, &e) < 0)
            break;
        rq->is_querying = true;
        sent++;
    }
    if (sent > 0)
        aq_pgconn_commit(r->conn, commit_noop_cb, NULL, &e);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    check_cb(fd, what, arg);
    cancels_again(arg);
}

struct aq_pgremote *
aq_pgremote_new(struct event_base *base, const char *conninfo,
                const char *schema, const char *node, struct aq_error *err)
{
    static const struct aq_pgconn_hooks hooks = {
        .ready = ready_hook,
        .lost = lost_hook,
        .notify = notify_hook,
    };
    struct aq_pgremote *r = xcalloc(1, sizeof *r);
    long ms = aq_pg_env_ms("ASYNCQ_PG_POLL_MS", POLL_MS);
    struct timeval every = {ms / 1000, (ms % 1000) * 1000};

    r->base = base;
    r->schema = xstrdup(schema);
    r->channel = xasprintf("%s_events", schema);
    r->node = aq_pg_node_name(node); /* NULL: the host name */
    snprintf(r->why, sizeof r->why, "connecting");
    LIST_INIT(&r->reqs);
    TAILQ_INIT(&r->joins);
    TAILQ_INIT(&r->cancels);
    r->watches = aq_idmap_new(watch_key);
    r->check_ev = event_new(base, -1, 0, check_cb, r);
    r->poll_ev = event_new(base, -1, EV_PERSIST, poll_cb, r);
    event_add(r->poll_ev, &every);
    r->sql_record = aq_pg_sql(sql_record, schema);
    r->sql_cancel = aq_pg_sql(sql_cancel, schema);
    r->sql_retry = aq_pg_sql(sql_retry, schema);
    r->sql_delete = aq_pg_sql(sql_delete, schema);
    r->sql_check_ids = aq_pg_sql(sql_check_ids, schema);
    r->sql_check_queues = aq_pg_sql(sql_check_queues, schema);
    r->sql_check_batches = aq_pg_sql(sql_check_batches, schema);
    r->sql_check_all = aq_pg_sql(sql_check_all, schema);
    r->sql_cancel_queue = aq_pg_sql(sql_cancel_queue, schema);
    r->sql_retry_queue = aq_pg_sql(sql_retry_queue, schema);
    r->sql_delete_queue = aq_pg_sql(sql_delete_queue, schema);
    if ((r->conn = aq_pgconn_new(base, conninfo, &hooks, r, err)) == NULL) {
        aq_pgremote_free(r);
        return NULL;
    }
    return r;
}

static void
watch_drop(void *value, void *arg)
{
    struct watch *w = value;

    if (!aq_task_is_finished(w->task))
        aq_task_set_cancelled(w->task);
    aq_task_unref(w->task);
    free(w);
}

void
aq_pgremote_free(struct aq_pgremote *r)
{
    struct aq_pgremote_req *rq;

    if (r == NULL)
        return;
    aq_pgconn_free(r->conn); /* no statement's callback after */
    while ((rq = LIST_FIRST(&r->reqs)) != NULL) {
        rq->is_querying = false;
        rq->cb = NULL;
        rq->fcb = NULL;
        if (rq->is_over)
            rq_free(rq);
        else
            rq_end(rq);
    }
    aq_idmap_each(r->watches, watch_drop, NULL);
    aq_idmap_free(r->watches);
    event_free(r->check_ev);
    event_free(r->poll_ev);
    free(r->sent);
    free(r->sql_record);
    free(r->sql_cancel);
    free(r->sql_retry);
    free(r->sql_delete);
    free(r->sql_check_ids);
    free(r->sql_check_queues);
    free(r->sql_check_batches);
    free(r->sql_check_all);
    free(r->sql_cancel_queue);
    free(r->sql_retry_queue);
    free(r->sql_delete_queue);
    free(r->node);
    free(r->channel);
    free(r->schema);
    free(r);
}
