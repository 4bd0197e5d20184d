/* SPDX-License-Identifier: MIT */
/*
 * lib/call.c: the requests in flight on a connection (lib/call.h), and
 * what is sent for them: each reply, a batch's array once all its calls
 * have ended, errors for requests that never became calls, and put's
 * reply written by hand on the hot path. A call that ends lets its
 * connection read again (from the loop, never under the caller's feet).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "broker.h"
#include "error.h"
#include "jwrite.h"
#include "server-internal.h"
#include "xmalloc.h"

/* ---- replies ---- */

/* {"jsonrpc":"2.0","id":ID} to complete: id is raw text (NULL: null). */
static json_t *
response_new(const char *id, size_t id_len)
{
    json_t *r = json_object();

    json_object_set_new(r, "jsonrpc", json_string("2.0"));
    json_object_set_new(r, "id",
                        id != NULL ? aq_jraw(id, id_len) : json_null());
    return r;
}

static json_t *
error_response(const char *id, size_t id_len, int code, const char *message)
{
    json_t *r = response_new(id, id_len);

    json_object_set_new(
        r, "error", json_pack("{s:i,s:s}", "code", code, "message", message));
    return r;
}

/* One reply of batch b in; the array goes out once it is complete (a
 * NULL response: the call was abandoned, nothing is owed for it). */
static void
batch_deliver(struct conn *c, struct batch *b, size_t slot, json_t *response)
{
    if (response != NULL)
        json_array_set_new(b->replies, slot, response);
    if (--b->pending > 0)
        return;
    if (json_array_size(b->replies) > 0 && !c->is_closing)
        aq_conn_send(c, b->replies);
    else
        json_decref(b->replies);
    free(b);
}

struct batch *
aq_batch_new(void)
{
    struct batch *b = xcalloc(1, sizeof *b);

    /* pending starts at 1 so that it cannot complete while filling */
    b->replies = json_array();
    b->pending = 1;
    return b;
}

void
aq_batch_close(struct conn *c, struct batch *b)
{
    batch_deliver(c, b, SIZE_MAX, NULL);
}

/* A slot in batch b for a reply to come. */
static size_t
batch_slot(struct batch *b)
{
    json_array_append_new(b->replies, json_null());
    b->pending++;
    return json_array_size(b->replies) - 1;
}

void
aq_reply_error_now(struct conn *c, struct batch *b, struct aq_jspan id,
                   int code, const char *fmt, ...)
{
    char msg[300];
    json_t *r;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r = error_response(id.p, id.n, code, msg);
    if (b != NULL)
        batch_deliver(c, b, batch_slot(b), r);
    else
        aq_conn_send(c, r);
}

/* ---- calls ---- */

/* A call for a request with raw id (p NULL: a notification). */
struct aq_call *
aq_call_new(struct conn *c, struct aq_jspan id, struct batch *b)
{
    struct aq_call *call = xcalloc(1, sizeof *call);

    call->conn = c;
    if (id.p != NULL) {
        call->id = id.n <= sizeof call->id_buf ? call->id_buf : xmalloc(id.n);
        memcpy(call->id, id.p, id.n);
        call->id_len = id.n;
        if (b != NULL) {
            call->batch = b;
            call->slot = batch_slot(b);
        }
    }
    LIST_INSERT_HEAD(&c->calls, call, link);
    c->inflight++;
    return call;
}

/* Ends call with response (reference taken; NULL: no reply owed). */
static void
call_end(struct aq_call *call, json_t *response)
{
    struct conn *c = call->conn;
    bool was_stalled = aq_conn_is_stalled(c);

    LIST_REMOVE(call, link);
    c->inflight--;
    if (c->blocker == call)
        c->blocker = NULL;
    if (call->batch != NULL)
        batch_deliver(c, call->batch, call->slot, response);
    else if (response != NULL && !c->is_closing)
        aq_conn_send(c, response);
    else
        json_decref(response);
    json_decref(call->params);
    if (call->id != call->id_buf)
        free(call->id);
    free(call);
    if (c->is_exchange) {
        if (!c->in_process && !c->is_closing && c->inflight == 0)
            aq_exchange_ended(c);
        return;
    }
    /* Resume reading (or close after EOF) from the loop, not under the
     * caller's feet. */
    if (!c->in_process && !c->is_closing &&
        (was_stalled || (c->is_eof && c->inflight == 0)))
        aq_conn_resume(c);
}

void *
aq_call_scratch(struct aq_call *call, size_t size)
{
    assert(size <= sizeof call->scratch);
    return call->scratch;
}

void
aq_call_set_params(struct aq_call *call, json_t *params)
{
    json_decref(call->params);
    call->params = params;
}

struct event_base *
aq_call_base(const struct aq_call *call)
{
    return call->conn->s->base;
}

void
aq_call_reply(struct aq_call *call, json_t *result)
{
    json_t *response = NULL;

    if (call->id != NULL) {
        response = response_new(call->id, call->id_len);
        json_object_set_new(response, "result", result);
    } else
        json_decref(result);
    call_end(call, response);
}

static json_t *
put_result_json(const struct aq_put_result *res)
{
    json_t *r = json_pack("{s:I,s:s}", "job", (json_int_t)res->job, "state",
                          res->state);

    if (res->duplicate)
        json_object_set_new(r, "duplicate", json_true());
    return r;
}

static size_t
append(char *buf, size_t at, const char *s, size_t n)
{
    memcpy(buf + at, s, n);
    return at + n;
}

#define APPEND_LIT(buf, at, lit) append(buf, at, lit, sizeof lit - 1)

static size_t
append_u64(char *buf, size_t at, uint64_t v)
{
    char digits[20];
    size_t n = 0;

    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        buf[at++] = digits[--n];
    return at;
}

/* The hot path's reply, written without building JSON objects: the bytes
 * lib/jwrite would write for {"jsonrpc","id","result":{"job","state"}}. */
void
aq_call_reply_put(struct aq_call *call, const struct aq_put_result *res)
{
    char line[256];
    size_t n;

    if (call->batch != NULL || call->id == NULL || call->id_len > 128) {
        aq_call_reply(call, put_result_json(res)); /* the general way */
        return;
    }
    /* Assembled by hand: snprintf was a tenth of the hot path. */
    n = 0;
    n = APPEND_LIT(line, n, "{\"jsonrpc\":\"2.0\",\"id\":");
    n = append(line, n, call->id, call->id_len);
    n = APPEND_LIT(line, n, ",\"result\":{\"job\":");
    n = append_u64(line, n, res->job);
    n = APPEND_LIT(line, n, ",\"state\":\"");
    n = append(line, n, res->state, strlen(res->state));
    if (res->duplicate)
        n = APPEND_LIT(line, n, "\",\"duplicate\":true}}\n");
    else
        n = APPEND_LIT(line, n, "\"}}\n");
    if (!call->conn->is_closing)
        aq_conn_send_line(call->conn, line, n);
    call_end(call, NULL);
}

void
aq_call_fail(struct aq_call *call, const struct aq_error *err)
{
    json_t *response = NULL;

    if (err->code == AQ_ERR_UNAUTHORIZED)
        call->conn->saw_unauthorized = true; /* an exchange's answer: 401 */
    if (call->id != NULL)
        response =
            error_response(call->id, call->id_len, err->code, err->message);
    call_end(call, response);
}

void
aq_call_fail_data(struct aq_call *call, const struct aq_error *err,
                  json_t *data)
{
    json_t *response = NULL;

    if (call->id != NULL) {
        response =
            error_response(call->id, call->id_len, err->code, err->message);
        if (data != NULL)
            json_object_set(json_object_get(response, "error"), "data", data);
    }
    json_decref(data);
    call_end(call, response);
}

void
aq_call_notify(struct aq_call *call, const char *method, json_t *params)
{
    /* A notification's call causes no messages either (spec section 7);
     * an exchange's reply is one value: no room for them. */
    if (call->id == NULL || call->conn->is_closing || call->conn->is_exchange) {
        json_decref(params);
        return;
    }
    aq_conn_send(call->conn, json_pack("{s:s,s:s,s:o}", "jsonrpc", "2.0",
                                       "method", method, "params", params));
}

void
aq_call_block(struct aq_call *call)
{
    call->conn->blocker = call;
    aq_conn_update_reading(call->conn);
}

void
aq_call_on_abandon(struct aq_call *call, void (*cb)(void *arg), void *arg)
{
    call->abandon = cb;
    call->abandon_arg = arg;
}

void
aq_call_set_authenticated(struct aq_call *call)
{
    call->conn->is_authed = true;
}

bool
aq_call_is_authenticated(const struct aq_call *call)
{
    return call->conn->is_authed;
}

size_t
aq_call_connections(const struct aq_call *call)
{
    return call->conn->s->nconns;
}

/* Releases every call in flight through its abandon hook; with err, the
 * client is told (shutting down), else nothing is sent. */
void
aq_calls_abandon(struct conn *c, const struct aq_error *err)
{
    struct aq_call *call;

    while ((call = LIST_FIRST(&c->calls)) != NULL) {
        if (call->abandon != NULL)
            call->abandon(call->abandon_arg);
        call->abandon = NULL;
        if (err != NULL)
            aq_call_fail(call, err);
        else
            call_end(call, NULL);
    }
}

bool
aq_call_is_exchange(const struct aq_call *call)
{
    return call->conn->is_exchange;
}

bool
aq_call_is_read_only(const struct aq_call *call)
{
    return call->conn->is_read_only;
}

double
aq_call_default_timeout(const struct aq_call *call)
{
    return call->conn->is_exchange ? call->conn->default_timeout : -1;
}

bool
aq_call_is_notification(const struct aq_call *call)
{
    return call->id == NULL;
}

void
aq_call_reply_raw(struct aq_call *call, const char *text, size_t n)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    static const char mid[] = ",\"result\":";
    struct conn *c = call->conn;
    struct evbuffer *out;

    if (call->batch != NULL || call->id == NULL || c->is_closing ||
        !STAILQ_EMPTY(&c->outq)) {
        aq_call_reply(call, aq_jraw(text, n)); /* the general way */
        return;
    }
    out = aq_conn_output(c);
    evbuffer_add(out, head, sizeof head - 1);
    evbuffer_add(out, call->id, call->id_len);
    evbuffer_add(out, mid, sizeof mid - 1);
    evbuffer_add(out, text, n);
    evbuffer_add(out, "}\n", 2);
    call_end(call, NULL);
}

/* ---- the connection, for the methods ---- */

struct aq_conn *
aq_call_conn(const struct aq_call *call)
{
    return (struct aq_conn *)call->conn;
}

void *
aq_conn_data(const struct aq_conn *ac)
{
    return ((const struct conn *)ac)->data;
}

void
aq_conn_set_data(struct aq_conn *ac, void *data, void (*closed)(void *data),
                 void (*eof)(void *data))
{
    struct conn *c = (struct conn *)ac;

    c->data = data;
    c->data_closed = closed;
    c->data_eof = eof;
}

const char *
aq_conn_peer(const struct aq_conn *ac)
{
    return ((const struct conn *)ac)->peer;
}

void
aq_conn_notify(struct aq_conn *ac, const char *method, json_t *params)
{
    struct conn *c = (struct conn *)ac;

    if (c->is_closing || c->is_exchange) {
        json_decref(params);
        return;
    }
    aq_conn_send(c, json_pack("{s:s,s:s,s:o}", "jsonrpc", "2.0", "method",
                              method, "params", params));
}

void
aq_conn_detach(struct conn *c)
{
    void (*closed)(void *) = c->data_closed;

    aq_calls_abandon(c, NULL);
    c->data_closed = NULL;
    if (closed != NULL)
        closed(c->data);
    c->data = NULL;
}
