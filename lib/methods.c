/* SPDX-License-Identifier: MIT */
/*
 * lib/methods.c: the method table, reached through the server's ops, which
 * decide auth and the order of errors. Each method checks its params
 * strictly (lib/params.h: an unknown field is an error, an integer field
 * takes only an integer), then calls the broker. Methods that wait (put
 * to a full queue, put with wait, wait, join, cancel of a running job)
 * keep a small struct for the call and release it from the call's
 * abandon hook if the caller goes.
 */
#include "methods.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "batch.h"
#include "broker.h"
#include "call.h"
#include "clock.h"
#include "error.h"
#include "hist.h"
#include "history.h"
#include "job.h"
#include "jwrite.h"
#include "params.h"
#include "pgremote.h"
#include "rpc.h"
#include "secret.h"
#include "server.h"
#include "task.h"
#include "wait.h"
#include "xmalloc.h"

#define MAX_KEY_BYTES 1024
#define MAX_WAIT_JOBS 100000 /* distinct ids in one wait (spec section 7) */

struct aq_methods {
    struct aq_broker *broker;   /* borrowed */
    char *token;                /* owned; NULL = no auth */
    int64_t started_us;         /* monotonic */
    struct aq_history *history; /* borrowed; NULL = none kept */
    struct aq_pgremote *remote; /* borrowed; NULL = this node's jobs only */
    aq_methods_pause_fn *pause; /* NULL = pauses are this node's */
    void *pause_arg;
};

/* params: the request's params; args: put's args as compact JSON text (p NULL
 * when absent), for methods that take them raw. Failures go to
 * params->err. */
typedef void method_fn(struct aq_methods *m, struct aq_call *call,
                       const struct aq_params *params, struct aq_jspan args);

/* The call may change state; else -32005 (docs/operations.md says why). */
static bool
check_writable(struct aq_call *call, const char *method)
{
    struct aq_error err;

    if (!aq_call_is_read_only(call))
        return true;
    aq_error_set(&err, AQ_ERR_NOT_ALLOWED,
                 "read-only: %s refused: the metrics listener is not on a "
                 "loopback address and auth is not configured",
                 method);
    aq_call_fail(call, &err);
    return false;
}

/* wait's cancel_on_timeout cancels jobs: refused as cancel is. */
static bool
check_writable_param(struct aq_call *call, const struct aq_params *params)
{
    if (!aq_call_is_read_only(call))
        return true;
    aq_params_fail(params, "cancel_on_timeout", "read-only: cannot cancel");
    params->err->code = AQ_ERR_NOT_ALLOWED;
    return false;
}

/* ---- waiting on one job's future ---- */

/* Replies with what make(record) builds once the job's future settles. */
struct future_call {
    struct aq_call *call;
    struct aq_task *future;
    json_t *(*make)(json_t *record);
    struct event *timer; /* owned; NULL: waits as long as the job runs */
    double timeout;
};

static void future_call_done_cb(struct aq_task *t, void *arg);

static void
future_call_abandon(void *arg)
{
    struct future_call *fc = arg;

    aq_task_remove_done_cb(fc->future, future_call_done_cb, fc);
    aq_task_unref(fc->future);
    if (fc->timer != NULL)
        event_free(fc->timer);
    free(fc);
}

/* The caller's patience ran out; the job goes on. */
static void
future_call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct future_call *fc = arg;
    struct aq_call *call = fc->call;
    struct aq_error err;

    aq_error_set(&err, AQ_ERR_TIMEOUT,
                 "timeout after %g s: the job is not finished (it goes on)",
                 fc->timeout);
    aq_call_on_abandon(call, NULL, NULL);
    future_call_abandon(fc);
    aq_call_fail(call, &err);
}

static void
future_call_done_cb(struct aq_task *t, void *arg)
{
    struct future_call *fc = arg;
    struct aq_call *call = fc->call;
    json_t *record = aq_task_result(t);

    aq_call_on_abandon(call, NULL, NULL);
    aq_call_reply(call, fc->make(record));
    aq_task_unref(fc->future);
    if (fc->timer != NULL)
        event_free(fc->timer);
    free(fc);
}

/* Replies with make(record) once job id finishes; with timeout >= 0,
 * -32008 after that many seconds. */
static void
future_call_start(struct aq_methods *m, struct aq_call *call, uint64_t id,
                  json_t *(*make)(json_t *record), double timeout)
{
    struct aq_error err;
    struct aq_task *future = aq_broker_job_future(m->broker, id, &err);
    struct future_call *fc;

    if (future == NULL) {
        aq_call_fail(call, &err);
        return;
    }
    fc = xcalloc(1, sizeof *fc);
    fc->call = call;
    fc->future = future;
    fc->make = make;
    aq_task_add_done_cb(future, future_call_done_cb, fc);
    aq_call_on_abandon(call, future_call_abandon, fc);
    if (timeout >= 0) {
        struct timeval tv = aq_clock_tv((int64_t)(timeout * 1e6));

        fc->timeout = timeout;
        fc->timer = evtimer_new(aq_call_base(call), future_call_timeout_cb, fc);
        evtimer_add(fc->timer, &tv);
    }
}

static json_t *
make_record(json_t *record)
{
    return json_incref(record);
}

static json_t *
make_cancel_reply(json_t *record)
{
    return json_pack("{s:O,s:O}", "job", json_object_get(record, "job"),
                     "state", json_object_get(record, "state"));
}

/* ---- answered from the database (lib/pgremote.h) ---- */

/* A method pgremote answers later: the call's reply is its result. */
struct remote_call {
    struct aq_call *call;
    struct aq_pgremote_req *req;
};

static void
remote_abandon(void *arg)
{
    struct remote_call *rc = arg;

    aq_pgremote_withdraw(rc->req);
    free(rc);
}

static void
remote_done_cb(void *arg, json_t *result, const struct aq_error *err)
{
    struct remote_call *rc = arg;

    aq_call_on_abandon(rc->call, NULL, NULL);
    if (err != NULL)
        aq_call_fail(rc->call, err);
    else
        aq_call_reply(rc->call, result);
    free(rc);
}

typedef int remote_id_fn(struct aq_pgremote *r, uint64_t id, aq_pgremote_cb *cb,
                         void *arg, struct aq_pgremote_req **req,
                         struct aq_error *err);

/* Whether the broker's err says job id is not this node's, and pgremote
 * may know it: then fn answers the call later (or now with -32603). */
static bool
remote_job(struct aq_methods *m, struct aq_call *call,
           const struct aq_error *err, uint64_t id, remote_id_fn *fn)
{
    struct remote_call *rc;
    struct aq_error e;

    if (m->remote == NULL || err->code != AQ_ERR_NO_JOB)
        return false;
    rc = xcalloc(1, sizeof *rc);
    rc->call = call;
    if (fn(m->remote, id, remote_done_cb, rc, &rc->req, &e) < 0) {
        free(rc);
        aq_call_fail(call, &e);
        return true;
    }
    aq_call_on_abandon(call, remote_abandon, rc);
    return true;
}

/* ---- put ---- */

/* A put in flight, in the call's scratch space: the hot path allocates
 * nothing for it. */
struct put_call {
    struct aq_put_wait w;
    struct aq_methods *m;
    struct aq_call *call;
};

_Static_assert(sizeof(struct put_call) <= AQ_CALL_SCRATCH,
               "a put's state fits in its call's scratch space");

static void
put_abandon(void *arg)
{
    struct put_call *pc = arg;

    aq_broker_put_cancel(pc->m->broker, &pc->w);
}

/* The put is acknowledged (queued, and durable), or failed. */
static void
put_acked_cb(void *arg, int st, const struct aq_put_result *res,
             const struct aq_error *err)
{
    struct put_call *pc = arg;

    aq_call_on_abandon(pc->call, NULL, NULL);
    if (st < 0)
        aq_call_fail(pc->call, err); /* frees pc with the call */
    else
        aq_call_reply_put(pc->call, res);
}

/* A put with wait is queued: the reply is the job's end (what happened
 * to it, not a durability promise; while the store fails, the broker
 * refuses puts before this). */
static void
put_queued_cb(void *arg, int st, const struct aq_put_result *res,
              const struct aq_error *err)
{
    struct put_call *pc = arg;

    aq_call_on_abandon(pc->call, NULL, NULL);
    if (st < 0)
        aq_call_fail(pc->call, err);
    else
        future_call_start(pc->m, pc->call, res->job, make_record,
                          aq_call_default_timeout(pc->call));
}

void
aq_methods_put(struct aq_methods *m, struct aq_call *call,
               const struct aq_put *p, bool wait)
{
    struct put_call *pc = aq_call_scratch(call, sizeof *pc);
    aq_put_cb *cb = put_acked_cb;
    struct aq_put_result res;
    struct aq_put copy;
    struct aq_error err;

    pc->m = m;
    pc->call = call;
    if (wait) {
        copy = *p;
        copy.ack_queued = true;
        p = &copy;
        cb = put_queued_cb;
    }
    switch (aq_broker_put(m->broker, p, &pc->w, cb, pc, &res, &err)) {
    case AQ_PUT_FAILED:
        if (err.code == AQ_ERR_NO_JOB && p->nafter > 0)
            aq_call_fail_data(call, &err,
                              json_pack("{s:I}", "job", (json_int_t)res.job));
        else
            aq_call_fail(call, &err);
        return;
    case AQ_PUT_DONE:
        if (wait)
            future_call_start(m, call, res.job, make_record,
                              aq_call_default_timeout(call));
        else
            aq_call_reply_put(call, &res);
        return;
    case AQ_PUT_FULL:
        /* await q.put(): no reply, and no further reads, until room. */
        aq_call_block(call);
        break;
    case AQ_PUT_PENDING:
        break;
    }
    aq_call_on_abandon(call, put_abandon, pc);
}

/* put's at (epoch seconds, or an RFC 3339 string), after (job ids) and
 * after_policy into p; *after is the caller's to free. -1 with
 * params->err. */
static int
put_deps(const struct aq_params *params, struct aq_put *p, uint64_t **after)
{
    const json_t *at = json_object_get(params->v, "at");
    struct aq_params arr;
    size_t policy = AQ_AFTER_DONE;
    int rc;

    if (at != NULL) {
        if (json_is_string(at)
                ? aq_rfc3339_parse(json_string_value(at), &p->at) < 0
                : !json_is_number(at) || (p->at = json_number_value(at)) < 0)
            return aq_params_fail(params, "at",
                                  "expected epoch seconds (a number >= 0) or "
                                  "an RFC 3339 time with an offset");
        if (json_object_get(params->v, "delay") != NULL)
            return aq_params_fail(params, "at", "not with delay");
        if (p->at > (double)aq_clock_wall_us() / 1e6 + AQ_DURATION_MAX_S)
            return aq_params_fail(params, "at", "more than 1e9 seconds ahead");
        p->has_at = true;
    }
    if ((rc = aq_params_array(params, "after", 0, "job ids", &arr)) < 0)
        return -1;
    if (aq_params_word(params, "after_policy", 0, aq_after_policy_names,
                       &policy) < 0)
        return -1;
    if (rc == 0) {
        if (json_object_get(params->v, "after_policy") != NULL)
            return aq_params_fail(params, "after_policy", "only with after");
        return 0;
    }
    p->nafter = json_array_size(arr.v);
    if (p->nafter > AQ_AFTER_MAX)
        return aq_params_fail(params, "after", "expected at most %d job ids",
                              AQ_AFTER_MAX);
    *after = xreallocarray(NULL, p->nafter, sizeof **after);
    for (size_t i = 0; i < p->nafter; i++) {
        if (aq_params_id_at(&arr, i, &(*after)[i]) < 0)
            return -1;
    }
    p->after = *after;
    p->after_policy = (int)policy;
    return 0;
}

static void
m_put(struct aq_methods *m, struct aq_call *call,
      const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {
        "queue",   "kind",  "args",         "priority", "delay", "timeout",
        "retries", "key",   "name",         "batch",    "wait",  "nowait",
        "at",      "after", "after_policy", NULL};
    struct aq_put p = {.timeout = -1, .retries = -1};
    json_int_t prio = 0, retries = -1;
    bool wait = false;
    uint64_t *after = NULL;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", 0, &p.queue) < 0 ||
        aq_params_string(params, "kind", 0, &p.kind) < 0 ||
        aq_params_int(params, "priority", 0, INT32_MIN, INT32_MAX, &prio) < 0 ||
        aq_params_duration(params, "delay", 0, &p.delay) < 0 ||
        aq_params_duration(params, "timeout", 0, &p.timeout) < 0 ||
        aq_params_int(params, "retries", 0, 0, 1000000, &retries) < 0 ||
        aq_params_string(params, "key", 0, &p.key) < 0 ||
        aq_params_string(params, "name", 0, &p.name) < 0 ||
        aq_params_string(params, "batch", 0, &p.batch) < 0 ||
        aq_params_bool(params, "wait", 0, &wait) < 0 ||
        aq_params_bool(params, "nowait", 0, &p.nowait) < 0 ||
        put_deps(params, &p, &after) < 0)
        goto fail;
    /* An object arrives raw (lib/rpc.c), anything else parsed. */
    if (json_object_get(params->v, "args") != NULL) {
        aq_params_fail(params, "args", "expected object");
        goto fail;
    }
    p.args_raw = args.p;
    p.args_len = args.n;
    if (p.key != NULL && (p.key[0] == '\0' || strlen(p.key) > MAX_KEY_BYTES)) {
        aq_params_fail(params, "key", "expected a string of 1 to %d bytes",
                       MAX_KEY_BYTES);
        goto fail;
    }
    if (p.name != NULL && strlen(p.name) > AQ_NAME_MAX) {
        aq_params_fail(params, "name", "expected a string of at most %d bytes",
                       AQ_NAME_MAX);
        goto fail;
    }
    if (p.batch != NULL &&
        (p.batch[0] == '\0' || strlen(p.batch) > AQ_BATCH_NAME_MAX)) {
        aq_params_fail(params, "batch", "expected a string of 1 to %d bytes",
                       AQ_BATCH_NAME_MAX);
        goto fail;
    }
    p.priority = (int32_t)prio;
    p.retries = (int)retries;
    aq_methods_put(m, call, &p, wait); /* after is copied, or not kept */
    free(after);
    return;
fail:
    free(after);
    aq_call_fail(call, params->err);
}

/* ---- status, cancel ---- */

static void
m_status(struct aq_methods *m, struct aq_call *call,
         const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", NULL};
    uint64_t id;
    json_t *rec;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_id(params, "job", AQ_PARAM_REQUIRED, &id) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    if ((rec = aq_broker_status(m->broker, id, params->err)) == NULL) {
        if (!remote_job(m, call, params->err, id, aq_pgremote_status))
            aq_call_fail(call, params->err);
        return;
    }
    aq_call_reply(call, rec);
}

/* params.job or params.queue, one of them: 1 for job (*id set), 0 for
 * queue (*queue set), -1 with params->err. */
static int
job_or_queue(const struct aq_params *params, uint64_t *id, const char **queue)
{
    int has_job, has_queue;

    if ((has_job = aq_params_id(params, "job", 0, id)) < 0 ||
        (has_queue = aq_params_string(params, "queue", 0, queue)) < 0)
        return -1;
    if (has_job && has_queue)
        return aq_params_fail(params, "queue",
                              "expected either params.job or params.queue, "
                              "not both");
    if (!has_job && !has_queue)
        return aq_params_fail(params, "job",
                              "required (or params.queue for all of a "
                              "queue's jobs)");
    return has_job;
}

/* A field that goes only with params.queue, given with params.job. */
static int
only_with_queue(const struct aq_params *params, const char *name)
{
    if (json_object_get(params->v, name) == NULL)
        return 0;
    return aq_params_fail(params, name, "only with params.queue");
}

/* For aq_broker_each_queue: whether a queue exists is all it asks. */
static void
no_queue_fn(const struct aq_queue_stats *s, void *arg)
{
}

/* cancel, retry or delete by queue with the database: the rows of the
 * queue other nodes and the pool hold first (lib/pgremote.h), then this
 * node's jobs; the reply counts both. */
enum queue_op { QUEUE_CANCEL, QUEUE_RETRY, QUEUE_DELETE };

struct queue_call {
    struct aq_methods *m;
    struct aq_call *call;
    struct aq_pgremote_req *req;
    enum queue_op op;
    char *queue;       /* owned */
    const char *state; /* static */
    bool running;
    double delay;
};

static void
queue_call_free(struct queue_call *qc)
{
    free(qc->queue);
    free(qc);
}

static void
queue_abandon(void *arg)
{
    struct queue_call *qc = arg;

    aq_pgremote_withdraw(qc->req);
    queue_call_free(qc);
}

static void
queue_remote_cb(void *arg, json_t *result, const struct aq_error *err)
{
    static const char *const keys[] = {"cancelled", "retried", "deleted"};
    struct queue_call *qc = arg;
    struct aq_broker *b = qc->m->broker;
    json_int_t remote = json_integer_value(result);
    struct aq_error e;
    size_t n = 0;
    int rc;

    json_decref(result);
    aq_call_on_abandon(qc->call, NULL, NULL);
    if (err != NULL) {
        aq_call_fail(qc->call, err);
        queue_call_free(qc);
        return;
    }
    switch (qc->op) {
    case QUEUE_CANCEL:
        rc = aq_broker_cancel_queue(b, qc->queue, qc->running, &n, &e);
        break;
    case QUEUE_RETRY:
        rc = aq_broker_retry_queue(b, qc->queue, qc->state, qc->delay, &n, &e);
        break;
    default:
        rc = aq_broker_delete_queue(b, qc->queue, qc->state, &n, &e);
        break;
    }
    if (rc < 0)
        aq_call_fail(qc->call, &e);
    else
        aq_call_reply(qc->call,
                      json_pack("{s:I}", keys[qc->op], (json_int_t)n + remote));
    queue_call_free(qc);
}

/* Starts op by queue on the database: 0 (the call is answered later),
 * or -1 with err (-32002, -32603). */
static int
queue_remote(struct aq_methods *m, struct aq_call *call, enum queue_op op,
             const char *queue, const char *state, bool running, double delay,
             struct aq_error *err)
{
    struct queue_call *qc;
    int rc;

    if (aq_broker_each_queue(m->broker, queue, no_queue_fn, NULL, err) < 0)
        return -1;
    qc = xcalloc(1, sizeof *qc);
    qc->m = m;
    qc->call = call;
    qc->op = op;
    qc->queue = xstrdup(queue);
    qc->state = state;
    qc->running = running;
    qc->delay = delay;
    if (op == QUEUE_CANCEL)
        rc = aq_pgremote_cancel_queue(m->remote, queue, running,
                                      queue_remote_cb, qc, &qc->req, err);
    else if (op == QUEUE_RETRY)
        rc = aq_pgremote_retry_queue(m->remote, queue, state, delay,
                                     queue_remote_cb, qc, &qc->req, err);
    else
        rc = aq_pgremote_delete_queue(m->remote, queue, state, queue_remote_cb,
                                      qc, &qc->req, err);
    if (rc < 0) {
        queue_call_free(qc);
        return -1;
    }
    aq_call_on_abandon(call, queue_abandon, qc);
    return 0;
}

static void
m_cancel(struct aq_methods *m, struct aq_call *call,
         const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "queue", "running", NULL};
    const char *state, *queue = NULL;
    bool running = false;
    uint64_t id;
    size_t n;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        (rc = job_or_queue(params, &id, &queue)) < 0)
        goto fail;
    if (rc == 0) {
        if (aq_params_bool(params, "running", 0, &running) < 0)
            goto fail;
        if (m->remote != NULL) {
            if (queue_remote(m, call, QUEUE_CANCEL, queue, NULL, running, 0,
                             params->err) < 0)
                goto fail;
            return;
        }
        if (aq_broker_cancel_queue(m->broker, queue, running, &n, params->err) <
            0)
            goto fail;
        aq_call_reply(call, json_pack("{s:I}", "cancelled", (json_int_t)n));
        return;
    }
    if (only_with_queue(params, "running") < 0)
        goto fail;
    if ((rc = aq_broker_cancel(m->broker, id, &state, params->err)) < 0) {
        if (remote_job(m, call, params->err, id, aq_pgremote_cancel))
            return;
        goto fail;
    }
    if (rc == 0) {
        aq_call_reply(call, json_pack("{s:I,s:s}", "job", (json_int_t)id,
                                      "state", state));
        return;
    }
    /* A running job: reply once its run has stopped. */
    future_call_start(m, call, id, make_cancel_reply, -1);
    return;
fail:
    aq_call_fail(call, params->err);
}

/* ---- retry, delete (spec section 9) ---- */

static void
m_retry(struct aq_methods *m, struct aq_call *call,
        const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "queue", "state", "delay",
                                         NULL};
    static const char *const states[] = {"failed", "cancelled", NULL};
    const char *state, *queue = NULL;
    double delay = 0;
    size_t which = 0, n;
    uint64_t id;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        (rc = job_or_queue(params, &id, &queue)) < 0 ||
        aq_params_duration(params, "delay", 0, &delay) < 0)
        goto fail;
    if (rc == 0) {
        if (aq_params_word(params, "state", AQ_PARAM_REQUIRED, states, &which) <
            0)
            goto fail;
        if (m->remote != NULL) {
            if (queue_remote(m, call, QUEUE_RETRY, queue, states[which], false,
                             delay, params->err) < 0)
                goto fail;
            return;
        }
        if (aq_broker_retry_queue(m->broker, queue, states[which], delay, &n,
                                  params->err) < 0)
            goto fail;
        aq_call_reply(call, json_pack("{s:I}", "retried", (json_int_t)n));
        return;
    }
    if (only_with_queue(params, "state") < 0)
        goto fail;
    if (aq_broker_retry(m->broker, id, delay, &state, params->err) < 0) {
        if (m->remote != NULL && params->err->code == AQ_ERR_NO_JOB) {
            struct remote_call *r = xcalloc(1, sizeof *r);
            struct aq_error e;

            r->call = call;
            if (aq_pgremote_retry(m->remote, id, delay, remote_done_cb, r,
                                  &r->req, &e) < 0) {
                free(r);
                aq_call_fail(call, &e);
                return;
            }
            aq_call_on_abandon(call, remote_abandon, r);
            return;
        }
        goto fail;
    }
    aq_call_reply(
        call, json_pack("{s:I,s:s}", "job", (json_int_t)id, "state", state));
    return;
fail:
    aq_call_fail(call, params->err);
}

static void
m_delete(struct aq_methods *m, struct aq_call *call,
         const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "queue", "state", NULL};
    static const char *const states[] = {"done", "failed", "cancelled", NULL};
    const char *queue = NULL;
    size_t which = 0, n;
    uint64_t id;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        (rc = job_or_queue(params, &id, &queue)) < 0)
        goto fail;
    if (rc == 0) {
        if (aq_params_word(params, "state", AQ_PARAM_REQUIRED, states, &which) <
            0)
            goto fail;
        if (m->remote != NULL) {
            if (queue_remote(m, call, QUEUE_DELETE, queue, states[which], false,
                             0, params->err) < 0)
                goto fail;
            return;
        }
        if (aq_broker_delete_queue(m->broker, queue, states[which], &n,
                                   params->err) < 0)
            goto fail;
        aq_call_reply(call, json_pack("{s:I}", "deleted", (json_int_t)n));
        return;
    }
    if (only_with_queue(params, "state") < 0)
        goto fail;
    if (aq_broker_delete(m->broker, id, params->err) < 0) {
        if (remote_job(m, call, params->err, id, aq_pgremote_delete))
            return;
        goto fail;
    }
    aq_call_reply(
        call, json_pack("{s:I,s:b}", "job", (json_int_t)id, "deleted", true));
    return;
fail:
    aq_call_fail(call, params->err);
}

/* ---- list ---- */

/* params.state: one state or a non-empty array of them, as bits of
 * aq_list_state_names; absent: all. Returns -1 with params->err. */
static int
list_states(const struct aq_params *params, unsigned *states)
{
    const json_t *v = json_object_get(params->v, "state");
    struct aq_params arr;
    size_t i, k;

    *states = 0;
    if (v == NULL) {
        for (i = 0; aq_list_state_names[i] != NULL; i++)
            *states |= 1u << i;
        return 0;
    }
    if (!json_is_array(v)) {
        if (aq_params_word(params, "state", 0, aq_list_state_names, &k) < 0)
            return -1;
        *states = 1u << k;
        return 0;
    }
    if (aq_params_array(params, "state", 0, "states", &arr) < 0)
        return -1;
    for (i = 0; i < json_array_size(v); i++) {
        char path[AQ_PARAMS_PATH_MAX + 24];
        struct aq_params el;

        snprintf(path, sizeof path, "%s[%zu]", arr.path, i);
        aq_params_init(&el, json_array_get(v, i), path, NULL, params->err);
        for (k = 0; aq_list_state_names[k] != NULL; k++) {
            if (json_is_string(el.v) &&
                strcmp(json_string_value(el.v), aq_list_state_names[k]) == 0)
                break;
        }
        if (aq_list_state_names[k] == NULL)
            return aq_params_fail(&el, NULL,
                                  "expected a state: delayed, waiting, "
                                  "pending, running, done, failed or "
                                  "cancelled");
        *states |= 1u << k;
    }
    return 0;
}

static void
m_list(struct aq_methods *m, struct aq_call *call,
       const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "state", "name",
                                         "batch", "after", "before",
                                         "limit", "order", NULL};
    static const char *const orders[] = {"asc", "desc", NULL};
    struct aq_list l = {.limit = 100};
    json_int_t limit = 100;
    size_t order = 0;
    json_t *page;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", 0, &l.queue) < 0 ||
        list_states(params, &l.states) < 0 ||
        aq_params_string(params, "name", 0, &l.name) < 0 ||
        aq_params_string(params, "batch", 0, &l.batch) < 0 ||
        aq_params_id(params, "after", 0, &l.after) < 0 ||
        aq_params_id(params, "before", 0, &l.before) < 0 ||
        aq_params_int(params, "limit", 0, 1, AQ_LIST_MAX, &limit) < 0 ||
        aq_params_word(params, "order", 0, orders, &order) < 0)
        goto fail;
    l.limit = (size_t)limit;
    l.is_desc = order == 1;
    if (m->remote != NULL) {
        /* The database's committed rows: every node's jobs, the pool's. */
        struct remote_call *rc;

        if (l.queue != NULL &&
            aq_broker_each_queue(m->broker, l.queue, no_queue_fn, NULL,
                                 params->err) < 0)
            goto fail;
        rc = xcalloc(1, sizeof *rc);
        rc->call = call;
        if (aq_pgremote_list(m->remote, &l, remote_done_cb, rc, &rc->req,
                             params->err) < 0) {
            free(rc);
            goto fail;
        }
        aq_call_on_abandon(call, remote_abandon, rc);
        return;
    }
    if ((page = aq_broker_list(m->broker, &l, params->err)) == NULL)
        goto fail;
    aq_call_reply(call, page);
    return;
fail:
    aq_call_fail(call, params->err);
}

/* ---- wait ---- */

/* A wait on the distinct jobs of params.jobs: each is waited on once; the
 * reply still has one record per position, as gather's has. */
struct wait_call {
    struct aq_methods *m;
    struct aq_call *call;
    struct aq_wait *w;
    enum aq_wait_mode mode;
    bool cancel_on_timeout;
    double timeout;
    int64_t started_us; /* monotonic, when the database was asked: the
                           timeout counts from there; 0 = not asked */
    uint64_t *ids;      /* owned: the distinct ids, in first-seen order */
    size_t *at;         /* owned: for each position, its index in ids */
    size_t npos, nids;
    /* While the database is asked for the jobs this node does not hold:
     * the futures by ids' index (owned; NULL for those asked). */
    struct aq_task **tasks;
    struct aq_pgremote_req *req;
};

static void
wait_call_free(struct wait_call *wc)
{
    aq_wait_free(wc->w);
    aq_pgremote_withdraw(wc->req);
    if (wc->tasks != NULL) {
        for (size_t i = 0; i < wc->nids; i++)
            aq_task_unref(wc->tasks[i]);
        free(wc->tasks);
    }
    free(wc->ids);
    free(wc->at);
    free(wc);
}

static void
wait_abandon(void *arg)
{
    wait_call_free(arg);
}

static void
wait_timed_out(struct wait_call *wc, struct aq_task *const *tasks)
{
    struct aq_error err;
    size_t left = 0;

    for (size_t i = 0; i < wc->nids; i++) {
        const char *state;

        struct aq_error e;

        if (aq_task_is_finished(tasks[i]))
            continue;
        left++;
        if (wc->cancel_on_timeout &&
            aq_broker_cancel(wc->m->broker, wc->ids[i], &state, &e) < 0 &&
            e.code == AQ_ERR_NO_JOB && wc->m->remote != NULL)
            aq_pgremote_cancel(wc->m->remote, wc->ids[i], NULL, NULL, NULL, &e);
    }
    aq_error_set(&err, AQ_ERR_TIMEOUT,
                 "wait: timeout after %g s with %zu of %zu jobs unfinished%s",
                 wc->timeout, left, wc->nids,
                 wc->cancel_on_timeout ? " (cancelled)" : "");
    aq_call_fail(wc->call, &err);
}

/* A finished job's record (a new reference): null for a job whose row
 * was deleted before it was seen finished (lib/pgremote.h). */
static json_t *
task_record(struct aq_task *t)
{
    json_t *rec = aq_task_result(t);

    return rec != NULL ? json_incref(rec) : json_null();
}

static void
wait_cb(struct aq_wait *w, enum aq_wait_event ev, struct aq_task *t, void *arg)
{
    struct wait_call *wc = arg;
    struct aq_task *const *tasks;
    json_t *list;
    size_t n;

    if (ev == AQ_WAIT_TASK) {
        aq_call_notify(wc->call, "job.done", task_record(t));
        return;
    }
    tasks = aq_wait_tasks(w, &n);
    aq_call_on_abandon(wc->call, NULL, NULL);
    if (ev == AQ_WAIT_TIMEOUT)
        wait_timed_out(wc, tasks);
    else {
        /* Records are shared, not copied; the server writes the list as
         * the client reads it. */
        list = json_array();
        if (wc->mode == AQ_WAIT_FIRST)
            json_array_append_new(list, task_record(t));
        else {
            for (size_t i = 0; i < wc->npos; i++)
                json_array_append_new(list, task_record(tasks[wc->at[i]]));
        }
        aq_call_reply(wc->call, list);
    }
    wait_call_free(wc);
}

/* The distinct ids of the array jobs into wc (ids, at), or -1 with
 * jobs->err. */
static int
wait_ids(struct wait_call *wc, const struct aq_params *jobs)
{
    size_t cap = 16, i, *slots;

    wc->npos = json_array_size(jobs->v);
    wc->at = xcalloc(wc->npos, sizeof *wc->at);
    while (cap < 2 * wc->npos)
        cap *= 2;
    /* Open addressing over indexes into wc->ids, + 1 (0: empty). */
    slots = xcalloc(cap, sizeof *slots);
    wc->ids = xcalloc(wc->npos, sizeof *wc->ids);
    for (i = 0; i < wc->npos; i++) {
        uint64_t id;
        size_t h;

        if (aq_params_id_at(jobs, i, &id) < 0)
            goto fail;
        h = (size_t)(id * UINT64_C(0x9E3779B97F4A7C15)) & (cap - 1);
        while (slots[h] != 0 && wc->ids[slots[h] - 1] != id)
            h = (h + 1) & (cap - 1);
        if (slots[h] == 0) {
            if (wc->nids == MAX_WAIT_JOBS) {
                aq_params_fail(jobs, NULL, "more than %d distinct job ids",
                               MAX_WAIT_JOBS);
                goto fail;
            }
            wc->ids[wc->nids++] = id;
            slots[h] = wc->nids;
        }
        wc->at[i] = slots[h] - 1;
    }
    free(slots);
    return 0;
fail:
    free(slots);
    return -1;
}

/* Waits on wc->tasks, every one of them known now. */
static void
wait_begin(struct wait_call *wc)
{
    double left = wc->timeout;

    if (left >= 0 && wc->started_us != 0) {
        left -= (double)(aq_clock_mono_us() - wc->started_us) / 1e6;
        if (left < 0)
            left = 0;
    }
    wc->w =
        aq_wait_new(aq_call_base(wc->call), wc->tasks, wc->nids, wc->mode,
                    left >= 0 ? (int64_t)(left * 1e6) : -1, false, wait_cb, wc);
    for (size_t i = 0; i < wc->nids; i++)
        aq_task_unref(wc->tasks[i]);
    free(wc->tasks);
    wc->tasks = NULL;
    aq_call_on_abandon(wc->call, wait_abandon, wc);
}

/* The futures of the jobs the database was asked for, in the order of
 * the NULL slots of wc->tasks. */
static void
wait_remote_cb(void *arg, struct aq_task **tasks, const struct aq_error *err)
{
    struct wait_call *wc = arg;
    size_t k = 0;

    wc->req = NULL; /* over */
    if (err != NULL) {
        aq_call_on_abandon(wc->call, NULL, NULL);
        aq_call_fail(wc->call, err);
        wait_call_free(wc);
        return;
    }
    for (size_t i = 0; i < wc->nids; i++) {
        if (wc->tasks[i] == NULL)
            wc->tasks[i] = tasks[k++];
    }
    wait_begin(wc);
}

static void
m_wait(struct aq_methods *m, struct aq_call *call,
       const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"jobs", "mode", "timeout",
                                         "cancel_on_timeout", NULL};
    /* wait's modes, in the order of modes[] */
    static const char *const mode_words[] = {"all", "any", "stream", NULL};
    static const enum aq_wait_mode modes[] = {AQ_WAIT_ALL, AQ_WAIT_FIRST,
                                              AQ_WAIT_EACH};
    struct wait_call *wc = NULL;
    struct aq_params jobs;
    double timeout = -1;
    uint64_t *remote = NULL;
    size_t mode = 0, nremote = 0, i;

    wc = xcalloc(1, sizeof *wc);
    if (aq_params_fields(params, fields) < 0 ||
        aq_params_word(params, "mode", 0, mode_words, &mode) < 0 ||
        aq_params_duration(params, "timeout", 0, &timeout) < 0 ||
        aq_params_bool(params, "cancel_on_timeout", 0, &wc->cancel_on_timeout) <
            0 ||
        (wc->cancel_on_timeout && !check_writable_param(call, params)) ||
        aq_params_array(params, "jobs", AQ_PARAM_REQUIRED, "job ids", &jobs) <
            0 ||
        wait_ids(wc, &jobs) < 0)
        goto fail;
    wc->mode = modes[mode];
    if (timeout < 0)
        timeout = aq_call_default_timeout(call);
    wc->m = m;
    wc->call = call;
    wc->timeout = timeout;
    wc->tasks = xcalloc(wc->nids, sizeof *wc->tasks);
    for (i = 0; i < wc->nids; i++) {
        if ((wc->tasks[i] = aq_broker_job_future(m->broker, wc->ids[i],
                                                 params->err)) != NULL)
            continue;
        if (m->remote == NULL || params->err->code != AQ_ERR_NO_JOB)
            goto fail;
        remote = xreallocarray(remote, nremote + 1, sizeof *remote);
        remote[nremote++] = wc->ids[i];
    }
    if (nremote > 0) {
        /* Jobs this node does not hold: their rows first. */
        wc->started_us = aq_clock_mono_us();
        if (aq_pgremote_futures(m->remote, remote, nremote, wait_remote_cb, wc,
                                &wc->req, params->err) < 0)
            goto fail;
        free(remote);
        aq_call_on_abandon(call, wait_abandon, wc);
        return;
    }
    wait_begin(wc);
    return;
fail:
    free(remote);
    wait_call_free(wc);
    aq_call_fail(call, params->err);
}

/* ---- join ---- */

/* join and stats take a queue or a batch, not both. */
static int
batch_not_with_queue(const struct aq_params *params, const char *queue,
                     const char *batch)
{
    if (queue != NULL && batch != NULL)
        return aq_params_fail(params, "batch", "not with params.queue");
    return 0;
}

struct join_call {
    struct aq_call *call;
    struct aq_join *join;        /* the broker's, or: */
    struct aq_pgremote_req *req; /* the database's */
    struct event *timer;         /* owned; NULL without a timeout */
    json_t *reply;
    double timeout;
};

static void
join_call_free(struct join_call *jc)
{
    if (jc->timer != NULL)
        event_free(jc->timer);
    json_decref(jc->reply);
    free(jc);
}

/* No callback after. */
static void
join_withdraw(struct join_call *jc)
{
    if (jc->join != NULL)
        aq_broker_join_cancel(jc->join);
    aq_pgremote_withdraw(jc->req);
}

static void
join_abandon(void *arg)
{
    struct join_call *jc = arg;

    join_withdraw(jc);
    join_call_free(jc);
}

static void
join_done_cb(void *arg, int st, const struct aq_error *err)
{
    struct join_call *jc = arg;

    aq_call_on_abandon(jc->call, NULL, NULL);
    if (st < 0)
        aq_call_fail(jc->call, err);
    else
        aq_call_reply(jc->call, json_incref(jc->reply));
    join_call_free(jc);
}

static void
join_remote_cb(void *arg, json_t *result, const struct aq_error *err)
{
    json_decref(result);
    join_done_cb(arg, err != NULL ? -1 : 0, err);
}

static void
join_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct join_call *jc = arg;
    struct aq_error err;

    aq_call_on_abandon(jc->call, NULL, NULL);
    join_withdraw(jc);
    aq_error_set(&err, AQ_ERR_TIMEOUT, "join: timeout after %g s", jc->timeout);
    aq_call_fail(jc->call, &err);
    join_call_free(jc);
}

static void
m_join(struct aq_methods *m, struct aq_call *call,
       const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "batch", "timeout", NULL};
    struct join_call *jc = xcalloc(1, sizeof *jc);
    const char *queue = NULL, *batch = NULL;
    double timeout = -1;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", 0, &queue) < 0 ||
        aq_params_string(params, "batch", 0, &batch) < 0 ||
        aq_params_duration(params, "timeout", 0, &timeout) < 0 ||
        batch_not_with_queue(params, queue, batch) < 0)
        goto fail;
    if (timeout < 0)
        timeout = aq_call_default_timeout(call);
    jc->call = call;
    jc->timeout = timeout;
    if (m->remote != NULL) {
        /* Until no unfinished row of it is left, whoever holds them. */
        if (queue != NULL && batch == NULL &&
            aq_broker_each_queue(m->broker, queue, no_queue_fn, NULL,
                                 params->err) < 0)
            goto fail;
        jc->reply = batch != NULL ? json_pack("{s:s}", "batch", batch)
                                  : json_pack("{s:s}", "queue",
                                              queue != NULL ? queue : "*");
        if (aq_pgremote_join(m->remote, batch != NULL ? NULL : queue, batch,
                             join_remote_cb, jc, &jc->req, params->err) < 0)
            goto fail;
        rc = 1;
    } else if (batch != NULL) {
        jc->reply = json_pack("{s:s}", "batch", batch);
        rc =
            aq_broker_join_batch(m->broker, batch, join_done_cb, jc, &jc->join);
    } else {
        jc->reply = json_pack("{s:s}", "queue", queue != NULL ? queue : "*");
        rc = aq_broker_join(m->broker, queue, join_done_cb, jc, &jc->join,
                            params->err);
    }
    if (rc < 0)
        goto fail;
    if (rc == 0) {
        aq_call_reply(call, json_incref(jc->reply));
        join_call_free(jc);
        return;
    }
    if (timeout >= 0) {
        struct timeval tv = aq_clock_tv((int64_t)(timeout * 1e6));

        jc->timer = evtimer_new(aq_call_base(call), join_timeout_cb, jc);
        evtimer_add(jc->timer, &tv);
    }
    aq_call_on_abandon(call, join_abandon, jc);
    return;
fail:
    join_call_free(jc);
    aq_call_fail(call, params->err);
}

/* ---- remote workers (spec section 10) ---- */

#define MAX_TRACEBACK_BYTES 65536

static void
worker_cancel_cb(void *arg, uint64_t job)
{
    aq_conn_notify(arg, "job.cancel",
                   json_pack("{s:I}", "job", (json_int_t)job));
}

static void
worker_closed_cb(void *data)
{
    aq_broker_worker_free(data);
}

/* The worker of the call's connection; with make, made on first use
 * (else NULL until then). */
/* A worker that sent EOF takes no more jobs: they could only be lost
 * with its connection. */
static void
worker_eof_cb(void *data)
{
    aq_broker_worker_eof(data);
}

static struct aq_worker *
conn_worker(struct aq_methods *m, struct aq_call *call, bool make)
{
    struct aq_conn *conn = aq_call_conn(call);
    struct aq_worker *w = aq_conn_data(conn);

    if (w == NULL && make) {
        w = aq_broker_worker_new(m->broker, aq_conn_peer(conn),
                                 worker_cancel_cb, conn);
        aq_conn_set_data(conn, w, worker_closed_cb, worker_eof_cb);
    }
    return w;
}

/* A get's answer, written by hand: a list of leased jobs. */
struct textbuf {
    char *p;
    size_t n, cap;
};

static void
tb_reserve(struct textbuf *t, size_t more)
{
    if (t->n + more > t->cap) {
        t->cap = (t->n + more) * 2;
        t->p = xrealloc(t->p, t->cap);
    }
}

static void
tb_add(struct textbuf *t, const char *s, size_t n)
{
    tb_reserve(t, n);
    memcpy(t->p + t->n, s, n);
    t->n += n;
}

#define TB_LIT(t, lit) tb_add(t, lit, sizeof lit - 1)

static void
tb_u64(struct textbuf *t, uint64_t v)
{
    char digits[20];
    size_t n = 0;

    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    tb_reserve(t, n);
    while (n > 0)
        t->p[t->n++] = digits[--n];
}

/* A JSON string of s (valid UTF-8 without U+0000, as params gave it). */
static void
tb_str(struct textbuf *t, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    tb_reserve(t, 2);
    t->p[t->n++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        tb_reserve(t, 7);
        if (ch == '"' || ch == '\\') {
            t->p[t->n++] = '\\';
            t->p[t->n++] = (char)ch;
        } else if (ch < 0x20) {
            memcpy(t->p + t->n, "\\u00", 4);
            t->n += 4;
            t->p[t->n++] = hex[ch >> 4];
            t->p[t->n++] = hex[ch & 15];
        } else
            t->p[t->n++] = (char)ch;
    }
    t->p[t->n++] = '"';
}

/* Epoch seconds with microseconds, e.g. 1763776800.123456. */
static void
tb_wall(struct textbuf *t, int64_t us)
{
    char frac[7];

    tb_u64(t, (uint64_t)(us / 1000000));
    us %= 1000000;
    for (int i = 5; i >= 0; i--, us /= 10)
        frac[i] = (char)('0' + us % 10);
    frac[6] = '\0';
    TB_LIT(t, ".");
    tb_add(t, frac, 6);
}

/* The shared buffer of get answers (the loop is single-threaded). */
static struct textbuf get_text;

static void
get_reply(struct aq_call *call, const struct aq_leased *jobs, size_t n)
{
    struct textbuf *t = &get_text;

    t->n = 0;
    TB_LIT(t, "[");
    for (size_t i = 0; i < n; i++) {
        const struct aq_leased *l = &jobs[i];

        if (i > 0)
            TB_LIT(t, ",");
        TB_LIT(t, "{\"job\":");
        tb_u64(t, l->job);
        TB_LIT(t, ",\"queue\":");
        tb_str(t, l->queue);
        if (l->name != NULL) {
            TB_LIT(t, ",\"name\":");
            tb_str(t, l->name);
        }
        TB_LIT(t, ",\"args\":");
        tb_add(t, l->args, l->args_len);
        TB_LIT(t, ",\"attempts\":");
        tb_u64(t, l->attempts);
        TB_LIT(t, ",\"lease_deadline\":");
        if (l->lease_deadline_us != 0)
            tb_wall(t, l->lease_deadline_us);
        else
            TB_LIT(t, "null");
        TB_LIT(t, "}");
    }
    TB_LIT(t, "]");
    aq_call_reply_raw(call, t->p, t->n);
    /* A huge answer once does not keep its buffer for ever. */
    if (t->cap > (1u << 20)) {
        free(t->p);
        *t = (struct textbuf){0};
    }
}

/* A get in flight, in the call's scratch space. */
struct get_call {
    struct aq_call *call;
    struct aq_get_wait *wait;
};

_Static_assert(sizeof(struct get_call) <= AQ_CALL_SCRATCH,
               "a get's state fits in its call's scratch space");

static void
get_done_cb(void *arg, const struct aq_leased *jobs, size_t n)
{
    struct get_call *gc = arg;

    aq_call_on_abandon(gc->call, NULL, NULL);
    get_reply(gc->call, jobs, n);
}

static void
get_abandon(void *arg)
{
    struct get_call *gc = arg;

    aq_broker_get_cancel(gc->wait);
}

/* params.queue: a name, or a non-empty array of names (up to
 * AQ_GET_QUEUES), into names. */
static int
get_queue_names(const struct aq_params *params, const char **names, size_t *n)
{
    const json_t *v = json_object_get(params->v, "queue");
    struct aq_params arr;

    if (v == NULL || !json_is_array(v)) {
        *n = 1;
        return aq_params_string(params, "queue", AQ_PARAM_REQUIRED, &names[0]) <
                       0
                   ? -1
                   : 0;
    }
    if (aq_params_array(params, "queue", 0, "queue names", &arr) < 0)
        return -1;
    if (json_array_size(v) > AQ_GET_QUEUES)
        return aq_params_fail(params, "queue",
                              "expected at most %d queue names", AQ_GET_QUEUES);
    *n = json_array_size(v);
    for (size_t i = 0; i < *n; i++) {
        if (aq_params_string_at(&arr, i, 0, &names[i]) < 0)
            return -1;
    }
    return 0;
}

static void
m_get(struct aq_methods *m, struct aq_call *call,
      const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "max", "wait", "lease", NULL};
    const char *names[AQ_GET_QUEUES];
    struct aq_get g = {.queues = names, .wait_s = 30, .lease_s = -1};
    struct get_call *gc;
    json_int_t max = 1;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        get_queue_names(params, names, &g.nqueues) < 0 ||
        aq_params_int(params, "max", 0, 1, AQ_GET_MAX, &max) < 0 ||
        aq_params_duration(params, "wait", 0, &g.wait_s) < 0 ||
        aq_params_duration(params, "lease", 0, &g.lease_s) < 0)
        goto fail;
    if (json_object_get(params->v, "lease") != NULL && !(g.lease_s > 0)) {
        aq_params_fail(params, "lease",
                       "expected seconds, a number above 0 and at most 1e9");
        goto fail;
    }
    g.max = (size_t)max;
    if (aq_call_is_notification(call)) {
        /* Nobody would ever see the jobs: take none. */
        aq_call_reply(call, json_null());
        return;
    }
    gc = aq_call_scratch(call, sizeof *gc);
    gc->call = call;
    gc->wait = NULL;
    rc = aq_broker_get(m->broker, conn_worker(m, call, true), &g, get_done_cb,
                       gc, &gc->wait, params->err);
    if (rc < 0)
        goto fail;
    if (rc == 1)
        aq_call_on_abandon(call, get_abandon, gc);
    return;
fail:
    aq_call_fail(call, params->err);
}

/* params.error: {"code":string,"message":string,"traceback":string?}. */
static int
task_error(const struct aq_params *params, struct aq_task_done *d)
{
    static const char *const fields[] = {"code", "message", "traceback", NULL};
    struct aq_params e;

    if (aq_params_object(params, "error", AQ_PARAM_REQUIRED, NULL, &e) < 0 ||
        aq_params_fields(&e, fields) < 0 ||
        aq_params_string(&e, "code", AQ_PARAM_REQUIRED, &d->err_code) < 0 ||
        aq_params_string(&e, "message", AQ_PARAM_REQUIRED, &d->err_message) <
            0 ||
        aq_params_string(&e, "traceback", 0, &d->traceback) < 0)
        return -1;
    if (d->err_code[0] == '\0' || strlen(d->err_code) > 64)
        return aq_params_fail(&e, "code", "expected a string of 1 to 64 bytes");
    if (strlen(d->err_message) > MAX_TRACEBACK_BYTES)
        return aq_params_fail(&e, "message",
                              "expected a string of at most %d bytes",
                              MAX_TRACEBACK_BYTES);
    if (d->traceback != NULL && strlen(d->traceback) > MAX_TRACEBACK_BYTES)
        return aq_params_fail(&e, "traceback",
                              "expected a string of at most %d bytes",
                              MAX_TRACEBACK_BYTES);
    d->is_error = true;
    return 0;
}

static void
m_task_done(struct aq_methods *m, struct aq_call *call,
            const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "result", "error", "retry",
                                         NULL};
    struct aq_task_done d = {.retry = true};
    const json_t *result = json_object_get(params->v, "result");
    char *text = NULL;
    const char *state;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_id(params, "job", AQ_PARAM_REQUIRED, &d.job) < 0 ||
        aq_params_bool(params, "retry", 0, &d.retry) < 0)
        goto fail;
    if (json_object_get(params->v, "error") != NULL) {
        if (result != NULL) {
            aq_params_fail(params, "error",
                           "expected either params.result or params.error, "
                           "not both");
            goto fail;
        }
        if (task_error(params, &d) < 0)
            goto fail;
    } else if (result != NULL)
        d.result = text = aq_jwrite_string(result, NULL);
    if (aq_broker_task_done(m->broker, conn_worker(m, call, false), &d, &state,
                            params->err) < 0)
        goto fail;
    free(text);
    aq_call_reply(
        call, json_pack("{s:I,s:s}", "job", (json_int_t)d.job, "state", state));
    return;
fail:
    free(text);
    aq_call_fail(call, params->err);
}

static void
m_touch(struct aq_methods *m, struct aq_call *call,
        const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "lease", NULL};
    double lease = -1;
    int64_t deadline_us;
    uint64_t id;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_id(params, "job", AQ_PARAM_REQUIRED, &id) < 0 ||
        aq_params_duration(params, "lease", 0, &lease) < 0)
        goto fail;
    if (json_object_get(params->v, "lease") != NULL && !(lease > 0)) {
        aq_params_fail(params, "lease",
                       "expected seconds, a number above 0 and at most 1e9");
        goto fail;
    }
    if (aq_broker_touch(m->broker, conn_worker(m, call, false), id, lease,
                        &deadline_us, params->err) < 0)
        goto fail;
    aq_call_reply(
        call, json_pack("{s:I,s:o}", "job", (json_int_t)id, "lease_deadline",
                        deadline_us != 0 ? json_real((double)deadline_us / 1e6)
                                         : json_null()));
    return;
fail:
    aq_call_fail(call, params->err);
}

static void
m_release(struct aq_methods *m, struct aq_call *call,
          const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"job", "delay", NULL};
    double delay = 0;
    const char *state;
    uint64_t id;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_id(params, "job", AQ_PARAM_REQUIRED, &id) < 0 ||
        aq_params_duration(params, "delay", 0, &delay) < 0 ||
        aq_broker_release(m->broker, conn_worker(m, call, false), id, delay,
                          &state, params->err) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    aq_call_reply(
        call, json_pack("{s:I,s:s}", "job", (json_int_t)id, "state", state));
}

/* ---- queues and the rest ---- */

static json_t *
quantiles(const struct aq_hist *h)
{
    return json_pack("{s:f,s:f,s:f}", "p50",
                     (double)aq_hist_quantile(h, 0.50) / 1e6, "p90",
                     (double)aq_hist_quantile(h, 0.90) / 1e6, "p99",
                     (double)aq_hist_quantile(h, 0.99) / 1e6);
}

/* One queue's part of stats (spec section 5), into the object arg. */
static void
queue_stats_json(const struct aq_queue_stats *s, void *arg)
{
    json_t *o = json_object();

    json_object_set_new(o, "size", json_integer((json_int_t)s->size));
    json_object_set_new(o, "delayed", json_integer((json_int_t)s->delayed));
    json_object_set_new(o, "waiting", json_integer((json_int_t)s->waiting));
    json_object_set_new(o, "running", json_integer(s->running));
    json_object_set_new(o, "unfinished",
                        json_integer((json_int_t)s->unfinished));
    json_object_set_new(o, "maxsize", json_integer((json_int_t)s->maxsize));
    json_object_set_new(o, "consumers", json_integer(s->consumers));
    json_object_set_new(o, "busy", json_integer(s->running));
    if (strcmp(s->kind, "remote") == 0)
        json_object_set_new(o, "workers", json_integer(s->workers));
    json_object_set_new(o, "paused", json_boolean(s->paused));
    json_object_set_new(o, "oldest_ready", json_real(s->oldest_ready_s));
    json_object_set_new(o, "throttled", json_real(s->throttled_s));
    if (s->rate_per_second > 0)
        json_object_set_new(o, "rate",
                            json_pack("{s:f,s:i}", "per_second",
                                      s->rate_per_second, "burst",
                                      s->rate_burst));
    json_object_set_new(o, "kind", json_string(s->kind));
    json_object_set_new(o, "put", json_integer((json_int_t)s->put));
    json_object_set_new(o, "done", json_integer((json_int_t)s->done));
    json_object_set_new(o, "failed", json_integer((json_int_t)s->failed));
    json_object_set_new(o, "cancelled", json_integer((json_int_t)s->cancelled));
    json_object_set_new(o, "retried", json_integer((json_int_t)s->retried));
    json_object_set_new(o, "wait_time", quantiles(s->wait));
    json_object_set_new(o, "run_time", quantiles(s->run));
    json_object_set_new(arg, s->name, o);
}

/* stats by batch: {"batch","total","unfinished", then a count per state
 * in the states' order (list's). */
static json_t *
batch_stats_json(const struct aq_broker *b, const char *batch)
{
    struct aq_batch_counts c;
    json_t *o;

    aq_broker_batch_counts(b, batch, &c);
    o = json_pack("{s:s,s:I,s:I}", "batch", batch, "total", (json_int_t)c.total,
                  "unfinished", (json_int_t)c.unfinished);
    for (int st = 0; st < AQ_BATCH_NSTATES; st++)
        json_object_set_new(o, aq_job_state_name((enum aq_job_state)st),
                            json_integer((json_int_t)c.states[st]));
    return o;
}

static void
m_stats(struct aq_methods *m, struct aq_call *call,
        const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "batch", NULL};
    const char *queue = NULL, *batch = NULL;
    json_t *queues;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", 0, &queue) < 0 ||
        aq_params_string(params, "batch", 0, &batch) < 0 ||
        batch_not_with_queue(params, queue, batch) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    if (batch != NULL) {
        aq_call_reply(call, batch_stats_json(m->broker, batch));
        return;
    }
    queues = json_object();
    if (aq_broker_each_queue(m->broker, queue, queue_stats_json, queues,
                             params->err) < 0) {
        json_decref(queues);
        aq_call_fail(call, params->err);
        return;
    }
    /* "pid" lets local tools (asyncq-bench) read the daemon's RSS. */
    aq_call_reply(
        call,
        json_pack("{s:f,s:s,s:I,s:I,s:o}", "uptime",
                  (double)(aq_clock_mono_us() - m->started_us) / 1e6, "version",
                  ASYNCQ_VERSION, "pid", (json_int_t)getpid(), "connections",
                  (json_int_t)aq_call_connections(call), "queues", queues));
}

static void
m_scale(struct aq_methods *m, struct aq_call *call,
        const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "consumers", NULL};
    const char *queue = NULL;
    json_int_t n = 0;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", AQ_PARAM_REQUIRED, &queue) < 0 ||
        aq_params_int(params, "consumers", AQ_PARAM_REQUIRED, 0, 10000, &n) <
            0 ||
        aq_broker_scale(m->broker, queue, (int)n, params->err) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    aq_call_reply(call, json_pack("{s:s,s:I}", "queue", queue, "consumers", n));
}

static void
pause_or_resume(struct aq_methods *m, struct aq_call *call,
                const struct aq_params *params, bool paused)
{
    static const char *const fields[] = {"queue", NULL};
    const char *queue = NULL;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", AQ_PARAM_REQUIRED, &queue) < 0 ||
        aq_broker_pause(m->broker, queue, paused, params->err) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    if (m->pause != NULL)
        m->pause(m->pause_arg, queue, paused);
    aq_call_reply(call,
                  json_pack("{s:s,s:b}", "queue", queue, "paused", paused));
}

static void
m_pause(struct aq_methods *m, struct aq_call *call,
        const struct aq_params *params, struct aq_jspan args)
{
    pause_or_resume(m, call, params, true);
}

static void
m_resume(struct aq_methods *m, struct aq_call *call,
         const struct aq_params *params, struct aq_jspan args)
{
    pause_or_resume(m, call, params, false);
}

static void
m_ping(struct aq_methods *m, struct aq_call *call,
       const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {NULL};

    if (aq_params_fields(params, fields) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    aq_call_reply(call, json_string("pong"));
}

static void
m_auth(struct aq_methods *m, struct aq_call *call,
       const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"token", NULL};
    const char *token = NULL;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "token", 0, &token) < 0)
        goto fail;
    if (m->token != NULL &&
        (token == NULL || !aq_secret_equal(token, strlen(token), m->token))) {
        aq_error_set(params->err, AQ_ERR_UNAUTHORIZED, "auth: wrong token");
        goto fail;
    }
    aq_call_set_authenticated(call);
    aq_call_reply(call, json_true());
    return;
fail:
    aq_call_fail(call, params->err);
}

/* What a method is, for the checks made before it runs. */
enum {
    M_RAW_ARGS = 1, /* params.args kept as text (lib/rpc.h) */
    M_WRITES = 2,   /* changes state: refused to a read-only call */
    M_LEASE = 4,    /* a remote worker's: needs a connection to hold a lease */
    M_NO_AUTH = 8,  /* answered before auth */
};

/* What the caller may do here (spec section 13): the dashboard asks
 * first. Answered without auth. */
static void
m_session(struct aq_methods *m, struct aq_call *call,
          const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {NULL};
    bool authorized = m->token == NULL || aq_call_is_authenticated(call);

    if (aq_params_fields(params, fields) < 0) {
        aq_call_fail(call, params->err);
        return;
    }
    aq_call_reply(call, json_pack("{s:s,s:b,s:b,s:b}", "version",
                                  ASYNCQ_VERSION, "auth", m->token != NULL,
                                  "authorized", authorized, "writable",
                                  authorized && !aq_call_is_read_only(call)));
}

/* history's reply, written as text: up to 2 x 900 numbers a queue. */
struct history_reply {
    struct aq_methods *m;
    struct textbuf t;
    size_t seconds, nqueues;
    uint32_t *done, *failed; /* seconds each */
};

static void
history_array(struct textbuf *t, const uint32_t *v, size_t n)
{
    TB_LIT(t, "[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            TB_LIT(t, ",");
        tb_u64(t, v[i]);
    }
    TB_LIT(t, "]");
}

static void
history_queue(const struct aq_queue_stats *s, void *arg)
{
    struct history_reply *hr = arg;

    aq_history_samples(hr->m->history, s->name, hr->seconds, hr->done,
                       hr->failed);
    if (hr->nqueues++ > 0)
        TB_LIT(&hr->t, ",");
    tb_str(&hr->t, s->name);
    TB_LIT(&hr->t, ":{\"done\":");
    history_array(&hr->t, hr->done, hr->seconds);
    TB_LIT(&hr->t, ",\"failed\":");
    history_array(&hr->t, hr->failed, hr->seconds);
    TB_LIT(&hr->t, "}");
}

/* Done and failed per second, oldest first, for the chart (spec section
 * 13). */
static void
m_history(struct aq_methods *m, struct aq_call *call,
          const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"queue", "seconds", NULL};
    struct history_reply hr = {.m = m};
    const char *queue = NULL;
    json_int_t seconds = AQ_HISTORY_SECONDS;
    int rc;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "queue", 0, &queue) < 0 ||
        aq_params_int(params, "seconds", 0, 1, AQ_HISTORY_SECONDS, &seconds) <
            0)
        goto fail;
    if (m->history == NULL) {
        aq_error_set(params->err, AQ_ERR_INTERNAL, "history: not kept here");
        goto fail;
    }
    hr.seconds = (size_t)seconds;
    hr.done = xcalloc(hr.seconds, sizeof *hr.done);
    hr.failed = xcalloc(hr.seconds, sizeof *hr.failed);
    TB_LIT(&hr.t, "{\"interval\":1,\"end\":");
    tb_u64(&hr.t, (uint64_t)aq_history_end(m->history));
    TB_LIT(&hr.t, ",\"queues\":{");
    rc =
        aq_broker_each_queue(m->broker, queue, history_queue, &hr, params->err);
    TB_LIT(&hr.t, "}}");
    free(hr.done);
    free(hr.failed);
    if (rc < 0) {
        free(hr.t.p);
        goto fail;
    }
    aq_call_reply_raw(call, hr.t.p, hr.t.n);
    free(hr.t.p);
    return;
fail:
    aq_call_fail(call, params->err);
}

/* ---- schedules (spec section 11) ---- */

static void
m_schedules(struct aq_methods *m, struct aq_call *call,
            const struct aq_params *params, struct aq_jspan args)
{
    static const char *const fields[] = {"name", NULL};
    const char *name = NULL;
    json_t *res;

    if (aq_params_fields(params, fields) < 0 ||
        aq_params_string(params, "name", 0, &name) < 0)
        goto fail;
    if ((res = aq_broker_schedules(m->broker, name)) == NULL) {
        aq_params_fail(params, "name", "no such schedule");
        goto fail;
    }
    aq_call_reply(call, res);
    return;
fail:
    aq_call_fail(call, params->err);
}

static const struct {
    const char *name;
    method_fn *fn;
    unsigned flags;
} methods[] = {
    {"put", m_put, M_RAW_ARGS | M_WRITES},
    {"status", m_status, 0},
    {"wait", m_wait, 0},
    {"cancel", m_cancel, M_WRITES},
    {"join", m_join, 0},
    {"stats", m_stats, 0},
    {"scale", m_scale, M_WRITES},
    {"pause", m_pause, M_WRITES},
    {"resume", m_resume, M_WRITES},
    {"ping", m_ping, 0},
    {"auth", m_auth, M_NO_AUTH},
    {"session", m_session, M_NO_AUTH},
    {"history", m_history, 0},
    {"list", m_list, 0},
    {"schedules", m_schedules, 0},
    {"retry", m_retry, M_WRITES},
    {"delete", m_delete, M_WRITES},
    {"get", m_get, M_LEASE},
    {"task_done", m_task_done, M_LEASE},
    {"touch", m_touch, M_LEASE},
    {"release", m_release, M_LEASE},
};

struct aq_methods *
aq_methods_new(struct aq_broker *broker, const char *token)
{
    struct aq_methods *m = xcalloc(1, sizeof *m);

    m->broker = broker;
    m->token = token != NULL ? xstrdup(token) : NULL;
    m->started_us = aq_clock_mono_us();
    return m;
}

void
aq_methods_set_history(struct aq_methods *m, struct aq_history *h)
{
    m->history = h;
}

void
aq_methods_set_remote(struct aq_methods *m, struct aq_pgremote *r)
{
    m->remote = r;
}

void
aq_methods_set_pause_hook(struct aq_methods *m, aq_methods_pause_fn *fn,
                          void *arg)
{
    m->pause = fn;
    m->pause_arg = arg;
}

void
aq_methods_free(struct aq_methods *m)
{
    if (m == NULL)
        return;
    free(m->token);
    free(m);
}

/* ---- the server's ops ---- */

/* Auth is off, or the call's connection has sent it; else -32001. */
static bool
check_authorized(const struct aq_methods *m, struct aq_call *call)
{
    struct aq_error err;

    if (m->token == NULL || aq_call_is_authenticated(call))
        return true;
    if (aq_call_is_exchange(call))
        aq_error_set(&err, AQ_ERR_UNAUTHORIZED,
                     "unauthorized: send Authorization: Bearer TOKEN");
    else
        aq_error_set(&err, AQ_ERR_UNAUTHORIZED,
                     "unauthorized: send auth with the token first");
    aq_call_fail(call, &err);
    return false;
}

/* -32601 for a method that does not exist (whatever its params), then
 * -32005 for a worker's method in an exchange, -32001 if auth is required
 * and not sent (auth and session excepted), -32005 for a state-changing
 * method on a read-only call, then -32602 for params that cannot be read,
 * else the method. */
static void
ops_request(void *arg, struct aq_call *call, const struct aq_rpc_request *r)
{
    struct aq_methods *m = arg;
    struct aq_jspan args = {0};
    struct aq_params params;
    struct aq_error err;
    char *raw = NULL;
    json_t *obj;
    size_t i;

    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(methods[i].name, r->method) == 0)
            break;
    }
    if (i == sizeof methods / sizeof methods[0]) {
        aq_error_set(&err, AQ_ERR_NO_METHOD, "method not found: %s",
                     r->method_shown);
        aq_call_fail(call, &err);
        return;
    }
    if ((methods[i].flags & M_LEASE) && aq_call_is_exchange(call)) {
        aq_error_set(&err, AQ_ERR_NOT_ALLOWED,
                     "not allowed over HTTP: %s needs a connection to hold "
                     "its lease (use TCP)",
                     r->method);
        aq_call_fail(call, &err);
        return;
    }
    if (!(methods[i].flags & M_NO_AUTH) && !check_authorized(m, call))
        return;
    if ((methods[i].flags & M_WRITES) && !check_writable(call, r->method))
        return;
    obj =
        aq_rpc_params(r->params, (methods[i].flags & M_RAW_ARGS) ? &raw : NULL,
                      &args.n, &err);
    if (obj == NULL) {
        aq_call_fail(call, &err);
        return;
    }
    args.p = raw;
    aq_call_set_params(call, obj);
    aq_params_init(&params, obj, "params", NULL, &err);
    methods[i].fn(m, call, &params, args);
    free(raw); /* what needs it took a copy */
}

/* Out of line, so that ops_put stays a tail call. */
static void __attribute__((noinline))
put_with_auth(struct aq_methods *m, struct aq_call *call,
              const struct aq_put *p, bool wait)
{
    if (check_authorized(m, call) && check_writable(call, "put"))
        aq_methods_put(m, call, p, wait);
}

/* The hot path's put: what ops_request would do with the same line. */
static void
ops_put(void *arg, struct aq_call *call, const struct aq_put *p, bool wait)
{
    struct aq_methods *m = arg;

    /* Without auth (the usual case) straight on, as a tail call. */
    if (m->token == NULL && !aq_call_is_read_only(call))
        aq_methods_put(m, call, p, wait);
    else
        put_with_auth(m, call, p, wait);
}

const struct aq_server_ops aq_methods_ops = {ops_request, ops_put};
