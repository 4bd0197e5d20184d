/* SPDX-License-Identifier: MIT */
/*
 * lib/client_worker.c: the worker calls of the blocking client (SPEC
 * section 10): get, task_done, touch and release, built on aq_client_send,
 * aq_client_recv and aq_client_call.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "client.h"
#include "error.h"

/* Beyond wait_s, how long a get may take to be answered. */
#define GET_GRACE_MS 10000

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* {"job":job} plus a number field when v > 0. */
static json_t *
job_params(int64_t job, const char *field, double v)
{
    json_t *p = json_pack("{s:I}", "job", (json_int_t)job);

    if (field != NULL && v > 0)
        json_object_set_new(p, field, json_real(v));
    return p;
}

/* The reply msg (taken) as aq_client_call gives it: its result, or NULL
 * with the server's error in err. */
static json_t *
reply_result(json_t *msg, struct aq_error *err)
{
    json_t *e = json_object_get(msg, "error"), *res;

    if (e != NULL) {
        aq_error_set(err, (int)json_integer_value(json_object_get(e, "code")),
                     "%s", json_string_value(json_object_get(e, "message")));
        json_decref(msg);
        return NULL;
    }
    res = json_incref(json_object_get(msg, "result"));
    json_decref(msg);
    return res;
}

json_t *
aq_client_get(struct aq_client *c, const char *const *queues, size_t n, int max,
              double wait_s, double lease_s, aq_client_note_fn *on_note,
              void *arg, struct aq_error *err)
{
    json_t *params = json_object(), *q, *msg;
    int64_t id, got, deadline;
    const char *note;

    if (n == 0 || queues == NULL) {
        json_decref(params);
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "get: queue: none given");
        return NULL;
    }
    if (n == 1)
        q = json_string(queues[0]);
    else {
        q = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(q, json_string(queues[i]));
    }
    json_object_set_new(params, "queue", q);
    json_object_set_new(params, "max", json_integer(max));
    json_object_set_new(params, "wait", json_real(wait_s < 0 ? 0 : wait_s));
    if (lease_s > 0)
        json_object_set_new(params, "lease", json_real(lease_s));
    if ((id = aq_client_send(c, "get", params, err)) < 0)
        return NULL;
    /* The server answers within wait_s: the client's timeout may be
     * shorter, so a recv that only timed out waits on (the jobs of a
     * reply left unread would stay leased to us until their leases ran
     * out). */
    deadline = mono_ms() + (int64_t)ceil((wait_s < 0 ? 0 : wait_s) * 1000) +
               GET_GRACE_MS;
    for (;;) {
        msg = aq_client_recv(c, &got, &note, err);
        if (msg == NULL) {
            if (aq_client_timed_out(c) && mono_ms() < deadline)
                continue;
            return NULL;
        }
        if (got == id)
            return reply_result(msg, err);
        if (got < 0 && note != NULL && on_note != NULL)
            on_note(note, json_object_get(msg, "params"), arg);
        json_decref(msg);
    }
}

static json_t *
task_done_params(int64_t job, json_t *result, const char *err_code,
                 const char *err_message, bool retry)
{
    json_t *p = job_params(job, NULL, 0);

    if (err_code != NULL)
        json_object_set_new(p, "error",
                            json_pack("{s:s,s:s}", "code", err_code, "message",
                                      err_message != NULL ? err_message : ""));
    if (result != NULL || err_code == NULL)
        json_object_set_new(p, "result", result != NULL ? result : json_null());
    if (!retry)
        json_object_set_new(p, "retry", json_false());
    return p;
}

json_t *
aq_client_task_done(struct aq_client *c, int64_t job, json_t *result,
                    const char *err_code, const char *err_message, bool retry,
                    struct aq_error *err)
{
    return aq_client_call(
        c, "task_done",
        task_done_params(job, result, err_code, err_message, retry), NULL, NULL,
        err);
}

int
aq_client_task_done_nowait(struct aq_client *c, int64_t job, json_t *result,
                           const char *err_code, const char *err_message,
                           bool retry, struct aq_error *err)
{
    return aq_client_notify(
        c, "task_done",
        task_done_params(job, result, err_code, err_message, retry), err);
}

json_t *
aq_client_touch(struct aq_client *c, int64_t job, double lease_s,
                struct aq_error *err)
{
    return aq_client_call(c, "touch", job_params(job, "lease", lease_s), NULL,
                          NULL, err);
}

json_t *
aq_client_release(struct aq_client *c, int64_t job, double delay_s,
                  struct aq_error *err)
{
    return aq_client_call(c, "release", job_params(job, "delay", delay_s), NULL,
                          NULL, err);
}
