/* SPDX-License-Identifier: MIT */
/*
 * lib/methods.c: the method table. Each method checks its params strictly
 * (an unknown field is an error, an integer field takes only an integer),
 * then calls the broker. Methods that wait (put to a full queue, put with
 * wait, wait, join, cancel of a running job) keep a small struct for the
 * call and release it from the call's abandon hook if the caller goes.
 */
#include "methods.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "broker.h"
#include "call.h"
#include "clock.h"
#include "error.h"
#include "journal.h"
#include "task.h"
#include "wait.h"
#include "xmalloc.h"

#define MAX_DURATION_S 1e9 /* about 31 years */
#define MAX_ID ((INT64_C(1) << 53) - 1)
#define MAX_KEY_BYTES 1024

struct aq_methods {
    struct aq_broker *broker; /* borrowed */
    char *token;              /* owned; NULL = no auth */
    size_t (*connections)(void *arg);
    void *connections_arg;
    int64_t started_us; /* monotonic */
};

typedef void method_fn(struct aq_methods *m, struct aq_call *call,
                       json_t *params);

/* ---- params ---- */

static int
check_fields(const json_t *params, const char *const *allowed,
             struct aq_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)params, key, v) {
        size_t i;

        for (i = 0; allowed[i] != NULL; i++) {
            if (strcmp(key, allowed[i]) == 0)
                break;
        }
        if (allowed[i] == NULL) {
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "params.%.100s: unknown field", key);
            return -1;
        }
    }
    return 0;
}

static int
opt_string(const json_t *params, const char *name, const char **out,
           struct aq_error *err)
{
    const json_t *v = json_object_get(params, name);

    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "params.%s: expected string",
                     name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int
opt_int(const json_t *params, const char *name, json_int_t min, json_int_t max,
        json_int_t *out, struct aq_error *err)
{
    const json_t *v = json_object_get(params, name);

    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.%s: expected integer between %lld and %lld", name,
                     (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int
opt_duration(const json_t *params, const char *name, double *out,
             struct aq_error *err)
{
    const json_t *v = json_object_get(params, name);

    if (v == NULL)
        return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
        json_number_value(v) > MAX_DURATION_S) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.%s: expected seconds, a number between 0 and 1e9",
                     name);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int
opt_bool(const json_t *params, const char *name, bool *out,
         struct aq_error *err)
{
    const json_t *v = json_object_get(params, name);

    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.%s: expected true or false", name);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int
id_value(const json_t *v, const char *what, uint64_t *out, struct aq_error *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > MAX_ID) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "%s: expected a job id, an integer between 1 and 2^53-1",
                     what);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int
req_id(const json_t *params, const char *name, uint64_t *out,
       struct aq_error *err)
{
    char what[64];

    snprintf(what, sizeof what, "params.%s", name);
    if (json_object_get(params, name) == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "params.%s: required", name);
        return -1;
    }
    return id_value(json_object_get(params, name), what, out, err);
}

/* ---- waiting on one job's future ---- */

/* Replies with what make(record) builds once the job's future settles. */
struct future_call {
    struct aq_call *call;
    struct aq_task *future;
    json_t *(*make)(json_t *record);
};

static void future_call_done_cb(struct aq_task *t, void *arg);

static void
future_call_abandon(void *arg)
{
    struct future_call *fc = arg;

    aq_task_remove_done_cb(fc->future, future_call_done_cb, fc);
    aq_task_unref(fc->future);
    free(fc);
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
    free(fc);
}

static void
future_call_start(struct aq_methods *m, struct aq_call *call, uint64_t id,
                  json_t *(*make)(json_t *record))
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

/* ---- put ---- */

struct put_call {
    struct aq_methods *m;
    struct aq_call *call;
    struct aq_put_waiter *waiter;
    bool wait;
};

/* A put's reply held until its journal record is durable: in the call's
 * scratch space, so the hot path allocates nothing for it. */
struct durable_call {
    struct aq_methods *m;
    struct aq_call *call;
    struct aq_journal_barrier barrier;
    struct aq_put_result res;
};

/* The journal could not make the job durable: never an acknowledgement.
 * The job is queued all the same (it may be running already), so the
 * error names it: it may still run, and a retry should carry a key. */
static void
put_not_durable(struct aq_call *call, uint64_t job, const struct aq_error *why)
{
    struct aq_error err;

    aq_error_set(&err, AQ_ERR_INTERNAL,
                 "%s: put not acknowledged (job %llu may still run)",
                 why->message, (unsigned long long)job);
    aq_call_fail(call, &err);
}

static void
durable_abandon(void *arg)
{
    struct durable_call *dc = arg;

    aq_broker_durable_cancel(dc->m->broker, &dc->barrier);
}

static void
durable_cb(void *arg, const struct aq_error *err)
{
    struct durable_call *dc = arg;

    aq_call_on_abandon(dc->call, NULL, NULL);
    if (err != NULL)
        put_not_durable(dc->call, dc->res.job, err); /* frees dc */
    else
        aq_call_reply_put(dc->call, &dc->res); /* frees dc with the call */
}

/* The job is queued: reply once its record is durable (the fsync policy
 * says when), or -32603 if the journal fails first; with wait, once it has
 * finished (the reply is what happened to it, not a durability promise;
 * while the journal fails, the broker refuses puts before this). */
static void
put_queued(struct aq_methods *m, struct aq_call *call, bool wait,
           const struct aq_put_result *res)
{
    struct durable_call *dc;
    struct aq_error err;

    if (wait) {
        future_call_start(m, call, res->job, make_record);
        return;
    }
    if (!aq_broker_has_journal(m->broker)) {
        aq_call_reply_put(call, res);
        return;
    }
    dc = aq_call_scratch(call, sizeof *dc);
    dc->m = m;
    dc->call = call;
    dc->res = *res;
    switch (aq_broker_durable(m->broker, &dc->barrier, durable_cb, dc, &err)) {
    case 0:
        aq_call_reply_put(call, res);
        return;
    case -1:
        put_not_durable(call, res->job, &err);
        return;
    default:
        aq_call_on_abandon(call, durable_abandon, dc);
    }
}

static void
put_abandon(void *arg)
{
    struct put_call *pc = arg;

    aq_broker_put_cancel(pc->waiter);
    free(pc);
}

static void
put_room_cb(void *arg, int st, const struct aq_put_result *res,
            const struct aq_error *err)
{
    struct put_call *pc = arg;

    aq_call_on_abandon(pc->call, NULL, NULL);
    if (st < 0)
        aq_call_fail(pc->call, err);
    else
        put_queued(pc->m, pc->call, pc->wait, res);
    free(pc);
}

void
aq_methods_put(struct aq_methods *m, struct aq_call *call,
               const struct aq_put *p, bool wait)
{
    struct aq_put_result res;
    struct aq_put_waiter *waiter = NULL;
    struct aq_error err;
    int rc = aq_broker_put(m->broker, p, &res, &waiter, &err);

    if (rc < 0) {
        aq_call_fail(call, &err);
        return;
    }
    if (rc == 0) {
        put_queued(m, call, wait, &res);
        return;
    }
    /* await q.put(): no reply, and no further reads, until room. */
    struct put_call *pc = xcalloc(1, sizeof *pc);

    pc->m = m;
    pc->call = call;
    pc->waiter = waiter;
    pc->wait = wait;
    aq_broker_put_on_room(waiter, put_room_cb, pc);
    aq_call_on_abandon(call, put_abandon, pc);
    aq_call_block(call);
}

static void
m_put(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {
        "queue",   "kind", "args", "priority", "delay", "timeout",
        "retries", "key",  "wait", "nowait",   NULL};
    struct aq_put p = {.timeout = -1, .retries = -1};
    struct aq_error err;
    json_int_t prio = 0, retries = -1;
    bool wait = false;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "queue", &p.queue, &err) < 0 ||
        opt_string(params, "kind", &p.kind, &err) < 0 ||
        opt_int(params, "priority", INT32_MIN, INT32_MAX, &prio, &err) < 0 ||
        opt_duration(params, "delay", &p.delay, &err) < 0 ||
        opt_duration(params, "timeout", &p.timeout, &err) < 0 ||
        opt_int(params, "retries", 0, 1000000, &retries, &err) < 0 ||
        opt_string(params, "key", &p.key, &err) < 0 ||
        opt_bool(params, "wait", &wait, &err) < 0 ||
        opt_bool(params, "nowait", &p.nowait, &err) < 0)
        goto fail;
    p.args = json_object_get(params, "args");
    if (p.args != NULL && !json_is_object(p.args)) {
        aq_error_set(&err, AQ_ERR_INVALID_PARAMS,
                     "params.args: expected object");
        goto fail;
    }
    if (p.key != NULL && (p.key[0] == '\0' || strlen(p.key) > MAX_KEY_BYTES)) {
        aq_error_set(&err, AQ_ERR_INVALID_PARAMS,
                     "params.key: expected a string of 1 to %d bytes",
                     MAX_KEY_BYTES);
        goto fail;
    }
    p.priority = (int32_t)prio;
    p.retries = (int)retries;
    aq_methods_put(m, call, &p, wait);
    return;
fail:
    aq_call_fail(call, &err);
}

/* ---- status, cancel ---- */

static void
m_status(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"job", NULL};
    struct aq_error err;
    uint64_t id;
    json_t *rec;

    if (check_fields(params, fields, &err) < 0 ||
        req_id(params, "job", &id, &err) < 0 ||
        (rec = aq_broker_status(m->broker, id, &err)) == NULL) {
        aq_call_fail(call, &err);
        return;
    }
    aq_call_reply(call, rec);
}

static void
m_cancel(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"job", NULL};
    struct aq_error err;
    const char *state;
    uint64_t id;
    int rc;

    if (check_fields(params, fields, &err) < 0 ||
        req_id(params, "job", &id, &err) < 0 ||
        (rc = aq_broker_cancel(m->broker, id, &state, &err)) < 0) {
        aq_call_fail(call, &err);
        return;
    }
    if (rc == 0) {
        aq_call_reply(call, json_pack("{s:I,s:s}", "job", (json_int_t)id,
                                      "state", state));
        return;
    }
    /* A running job: reply once its run has stopped. */
    future_call_start(m, call, id, make_cancel_reply);
}

/* ---- wait ---- */

struct wait_call {
    struct aq_methods *m;
    struct aq_call *call;
    struct aq_wait *w;
    enum aq_wait_mode mode;
    bool cancel_on_timeout;
    double timeout;
};

static void
wait_call_free(struct wait_call *wc)
{
    aq_wait_free(wc->w);
    free(wc);
}

static void
wait_abandon(void *arg)
{
    wait_call_free(arg);
}

static void
wait_cb(struct aq_wait *w, enum aq_wait_event ev, struct aq_task *t, void *arg)
{
    struct wait_call *wc = arg;
    struct aq_task *const *tasks;
    struct aq_error err;
    json_t *list;
    size_t n;

    if (ev == AQ_WAIT_TASK) {
        aq_call_notify(wc->call, "job.done", json_incref(aq_task_result(t)));
        return;
    }
    tasks = aq_wait_tasks(w, &n);
    aq_call_on_abandon(wc->call, NULL, NULL);
    if (ev == AQ_WAIT_TIMEOUT) {
        json_t *ids = json_array();

        for (size_t i = 0; i < n; i++) {
            json_t *rec = aq_task_result(tasks[i]);
            const char *state;

            if (rec != NULL)
                continue;
            /* The future of an unfinished job has no record yet; its id is
             * the caller's i-th id. */
            json_array_append(
                ids, json_array_get(
                         json_object_get(aq_call_params(wc->call), "jobs"), i));
            if (wc->cancel_on_timeout)
                aq_broker_cancel(wc->m->broker,
                                 (uint64_t)json_integer_value(json_array_get(
                                     ids, json_array_size(ids) - 1)),
                                 &state, NULL);
        }
        aq_error_set(
            &err, AQ_ERR_TIMEOUT,
            "wait: timeout after %g s with %zu of %zu jobs unfinished%s",
            wc->timeout, json_array_size(ids), n,
            wc->cancel_on_timeout ? " (cancelled)" : "");
        json_decref(ids);
        aq_call_fail(wc->call, &err);
        wait_call_free(wc);
        return;
    }
    list = json_array();
    if (wc->mode == AQ_WAIT_FIRST)
        json_array_append(list, aq_task_result(t));
    else {
        for (size_t i = 0; i < n; i++)
            json_array_append(list, aq_task_result(tasks[i]));
    }
    aq_call_reply(wc->call, list);
    wait_call_free(wc);
}

static void
m_wait(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"jobs", "mode", "timeout",
                                         "cancel_on_timeout", NULL};
    const json_t *jobs = json_object_get(params, "jobs");
    const char *mode = "all";
    struct aq_task **tasks = NULL;
    struct wait_call *wc = NULL;
    struct aq_error err;
    double timeout = -1;
    size_t n = 0, i;
    json_t *v;

    wc = xcalloc(1, sizeof *wc);
    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "mode", &mode, &err) < 0 ||
        opt_duration(params, "timeout", &timeout, &err) < 0 ||
        opt_bool(params, "cancel_on_timeout", &wc->cancel_on_timeout, &err) < 0)
        goto fail;
    if (strcmp(mode, "all") == 0)
        wc->mode = AQ_WAIT_ALL;
    else if (strcmp(mode, "any") == 0)
        wc->mode = AQ_WAIT_FIRST;
    else if (strcmp(mode, "stream") == 0)
        wc->mode = AQ_WAIT_EACH;
    else {
        aq_error_set(&err, AQ_ERR_INVALID_PARAMS,
                     "params.mode: expected \"all\", \"any\" or \"stream\"");
        goto fail;
    }
    if (!json_is_array(jobs) || json_array_size(jobs) == 0) {
        aq_error_set(&err, AQ_ERR_INVALID_PARAMS,
                     "params.jobs: expected a non-empty array of job ids");
        goto fail;
    }
    tasks = xcalloc(json_array_size(jobs), sizeof *tasks);
    json_array_foreach (jobs, i, v) {
        char what[48];
        uint64_t id;

        snprintf(what, sizeof what, "params.jobs[%zu]", i);
        if (id_value(v, what, &id, &err) < 0 ||
            (tasks[n] = aq_broker_job_future(m->broker, id, &err)) == NULL)
            goto fail;
        n++;
    }
    wc->m = m;
    wc->call = call;
    wc->timeout = timeout;
    wc->w = aq_wait_new(aq_call_base(call), tasks, n, wc->mode,
                        timeout >= 0 ? (int64_t)(timeout * 1e6) : -1, false,
                        wait_cb, wc);
    for (i = 0; i < n; i++)
        aq_task_unref(tasks[i]);
    free(tasks);
    aq_call_on_abandon(call, wait_abandon, wc);
    return;
fail:
    for (i = 0; i < n; i++)
        aq_task_unref(tasks[i]);
    free(tasks);
    free(wc);
    aq_call_fail(call, &err);
}

/* ---- join ---- */

struct join_call {
    struct aq_call *call;
    struct aq_join *join;
    struct event *timer; /* owned; NULL without a timeout */
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

static void
join_abandon(void *arg)
{
    struct join_call *jc = arg;

    aq_broker_join_cancel(jc->join);
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
join_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct join_call *jc = arg;
    struct aq_error err;

    aq_call_on_abandon(jc->call, NULL, NULL);
    aq_broker_join_cancel(jc->join);
    aq_error_set(&err, AQ_ERR_TIMEOUT, "join: timeout after %g s", jc->timeout);
    aq_call_fail(jc->call, &err);
    join_call_free(jc);
}

static void
m_join(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"queue", "timeout", NULL};
    struct join_call *jc = xcalloc(1, sizeof *jc);
    const char *queue = NULL;
    struct aq_error err;
    double timeout = -1;
    int rc;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "queue", &queue, &err) < 0 ||
        opt_duration(params, "timeout", &timeout, &err) < 0)
        goto fail;
    jc->call = call;
    jc->timeout = timeout;
    jc->reply = json_pack("{s:s}", "queue", queue != NULL ? queue : "*");
    rc = aq_broker_join(m->broker, queue, join_done_cb, jc, &jc->join, &err);
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
    aq_call_fail(call, &err);
}

/* ---- queues and the rest ---- */

static void
m_stats(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"queue", NULL};
    const char *queue = NULL;
    struct aq_error err;
    json_t *queues;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "queue", &queue, &err) < 0 ||
        (queues = aq_broker_stats(m->broker, queue, &err)) == NULL) {
        aq_call_fail(call, &err);
        return;
    }
    /* "pid" lets local tools (asyncq-bench) read the daemon's RSS. */
    aq_call_reply(
        call,
        json_pack("{s:f,s:s,s:I,s:I,s:o}", "uptime",
                  (double)(aq_clock_mono_us() - m->started_us) / 1e6, "version",
                  ASYNCQ_VERSION, "pid", (json_int_t)getpid(), "connections",
                  (json_int_t)(m->connections != NULL
                                   ? m->connections(m->connections_arg)
                                   : 0),
                  "queues", queues));
}

static void
m_scale(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"queue", "consumers", NULL};
    const char *queue = NULL;
    json_int_t n = -1;
    struct aq_error err;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "queue", &queue, &err) < 0 ||
        opt_int(params, "consumers", 0, 10000, &n, &err) < 0)
        goto fail;
    if (n < 0) {
        aq_error_set(&err, AQ_ERR_INVALID_PARAMS, "params.consumers: required");
        goto fail;
    }
    if (aq_broker_scale(m->broker, queue, (int)n, &err) < 0)
        goto fail;
    aq_call_reply(call,
                  json_pack("{s:s,s:I}", "queue",
                            queue != NULL ? queue : "default", "consumers", n));
    return;
fail:
    aq_call_fail(call, &err);
}

static void
pause_or_resume(struct aq_methods *m, struct aq_call *call, json_t *params,
                bool paused)
{
    static const char *const fields[] = {"queue", NULL};
    const char *queue = NULL;
    struct aq_error err;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "queue", &queue, &err) < 0 ||
        aq_broker_pause(m->broker, queue, paused, &err) < 0) {
        aq_call_fail(call, &err);
        return;
    }
    aq_call_reply(call, json_pack("{s:s,s:b}", "queue",
                                  queue != NULL ? queue : "default", "paused",
                                  paused));
}

static void
m_pause(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    pause_or_resume(m, call, params, true);
}

static void
m_resume(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    pause_or_resume(m, call, params, false);
}

static void
m_ping(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    aq_call_reply(call, json_string("pong"));
}

static void
m_auth(struct aq_methods *m, struct aq_call *call, json_t *params)
{
    static const char *const fields[] = {"token", NULL};
    const char *token = NULL;
    struct aq_error err;

    if (check_fields(params, fields, &err) < 0 ||
        opt_string(params, "token", &token, &err) < 0)
        goto fail;
    if (m->token != NULL && (token == NULL || strcmp(token, m->token) != 0)) {
        aq_error_set(&err, AQ_ERR_UNAUTHORIZED, "auth: wrong token");
        goto fail;
    }
    aq_call_set_authenticated(call);
    aq_call_reply(call, json_true());
    return;
fail:
    aq_call_fail(call, &err);
}

static const struct {
    const char *name;
    method_fn *fn;
} methods[] = {
    {"put", m_put},       {"status", m_status}, {"wait", m_wait},
    {"cancel", m_cancel}, {"join", m_join},     {"stats", m_stats},
    {"scale", m_scale},   {"pause", m_pause},   {"resume", m_resume},
    {"ping", m_ping},     {"auth", m_auth},
};

static method_fn *
method_find(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(methods[i].name, name) == 0)
            return methods[i].fn;
    }
    return NULL;
}

struct aq_methods *
aq_methods_new(struct aq_broker *broker, const char *token,
               size_t (*connections)(void *arg), void *arg)
{
    struct aq_methods *m = xcalloc(1, sizeof *m);

    m->broker = broker;
    m->token = token != NULL ? xstrdup(token) : NULL;
    m->connections = connections;
    m->connections_arg = arg;
    m->started_us = aq_clock_mono_us();
    return m;
}

void
aq_methods_free(struct aq_methods *m)
{
    if (m == NULL)
        return;
    free(m->token);
    free(m);
}

bool
aq_methods_auth_required(const struct aq_methods *m)
{
    return m->token != NULL;
}

bool
aq_methods_exists(const char *name)
{
    return method_find(name) != NULL;
}

int
aq_methods_dispatch(struct aq_methods *m, const char *name,
                    struct aq_call *call)
{
    method_fn *fn = method_find(name);

    if (fn == NULL)
        return -1;
    fn(m, call, aq_call_params(call));
    return 0;
}
