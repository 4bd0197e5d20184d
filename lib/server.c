/* SPDX-License-Identifier: MIT */
/*
 * lib/server.c: listeners, connections and the JSON-RPC framing.
 *
 * A connection reads lines straight out of its input evbuffer (no copy),
 * parses each with jansson and turns each request into a call. Replies are
 * appended to the output evbuffer; libevent writes them when the loop next
 * polls, so the replies of one read are batched into one write. Reading
 * stops while a call blocks the connection (a put waiting for room), while
 * `window` calls are unanswered, or while the client is not reading its
 * replies; it resumes from the loop once that changes.
 * A connection is freed only from the loop (the server's reap event), never
 * under a caller that may still use it.
 */
#include "server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "call.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "fastput.h"
#include "log.h"
#include "methods.h"
#include "xmalloc.h"

/* Stop reading a client that does not read its replies past this. */
#define OUTPUT_HIGH_BYTES (4u << 20)
#define LISTEN_BACKLOG 1024
#define LIBEVENT_READ 4096     /* libevent 2.1's most per read */
#define READ_BURST (60u << 10) /* what one more read may take */
/* 16 digits keep microseconds in epoch times and print 0.2 as 0.2. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(16))

struct listener {
    struct aq_server *s;
    struct evconnlistener *lev; /* owned */
    char *unix_path;            /* owned; unlinked at close; NULL for TCP */
    char name[160];
    struct listener *next;
};

struct batch {
    json_t *replies; /* owned; one slot per request that gets a reply */
    size_t pending;  /* requests not yet answered */
};

struct conn;

struct aq_call {
    struct conn *conn;
    json_t *id;                     /* owned; NULL: id_raw, or a notification */
    json_t *params;                 /* owned; created when first asked for */
    char id_raw[AQ_FASTPUT_ID_MAX]; /* the id's JSON text (fast path) */
    _Alignas(max_align_t) unsigned char scratch[AQ_CALL_SCRATCH];
    uint8_t id_raw_len;  /* 0 = none */
    struct batch *batch; /* shared; NULL outside a batch */
    size_t slot;         /* index in batch->replies */
    void (*abandon)(void *arg);
    void *abandon_arg;
    struct aq_call *prev, *next; /* the connection's calls in flight */
};

struct conn {
    struct aq_server *s;
    struct bufferevent *bev; /* owned, closes the socket */
    uint64_t num;
    char peer[96];
    size_t inflight;         /* calls not yet ended */
    struct aq_call *calls;   /* in flight */
    struct aq_call *blocker; /* a call no further read may overtake */
    bool is_authed, is_eof, is_closing, is_rejected, in_process, is_freeing;
    struct conn *prev, *next;
    struct conn *next_dying; /* in s->dying once is_freeing */
    bool flush_pending;      /* in s->flushing */
    LIST_ENTRY(conn) flush_link;
};

struct aq_server {
    struct event_base *base;    /* borrowed */
    struct aq_methods *methods; /* borrowed */
    struct listener *listeners;
    struct conn *conns;
    size_t nconns; /* not counting rejected ones */
    uint64_t next_conn;
    int max_conns, window;
    size_t max_request_bytes;
    double idle_timeout;
    struct event *retry_ev; /* re-enables listeners after EMFILE */
    struct conn *dying;     /* to free from reap_ev */
    struct event *reap_ev;
    LIST_HEAD(, conn) flushing; /* with replies to write, from flush_ev */
    struct event *flush_ev;
    /* close_all */
    struct event *close_ev;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void conn_process(struct conn *c);
static void conn_update_reading(struct conn *c);
static void conn_close(struct conn *c);

/* ---- writing ---- */

static void
write_json(struct conn *c, json_t *msg)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char stack[4096];
    size_t n = json_dumpb(msg, stack, sizeof stack - 1, DUMP_FLAGS);

    if (n == 0)
        return;
    if (n < sizeof stack) {
        stack[n] = '\n';
        evbuffer_add(out, stack, n + 1);
        return;
    }
    char *big = json_dumps(msg, DUMP_FLAGS);
    if (big != NULL) {
        evbuffer_add(out, big, strlen(big));
        evbuffer_add(out, "\n", 1);
        free(big);
    }
}

static json_t *
error_response(json_t *id, int code, const char *message)
{
    return json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id",
                     id != NULL ? id : json_null(), "error", "code", code,
                     "message", message);
}

/* A reply for a slot of batch b, or for the connection directly. */
static void
deliver(struct conn *c, struct batch *b, size_t slot, json_t *response)
{
    if (b == NULL) {
        if (!c->is_closing)
            write_json(c, response);
        json_decref(response);
        return;
    }
    json_array_set_new(b->replies, slot, response);
    if (--b->pending > 0)
        return;
    if (!c->is_closing && json_array_size(b->replies) > 0)
        write_json(c, b->replies);
    json_decref(b->replies);
    free(b);
}

/* An error for a request that never became a call. */
static void reply_error_now(struct conn *c, struct batch *b, json_t *id,
                            int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
reply_error_now(struct conn *c, struct batch *b, json_t *id, int code,
                const char *fmt, ...)
{
    char msg[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b != NULL) {
        size_t slot = json_array_size(b->replies);

        json_array_append_new(b->replies, json_null());
        b->pending++;
        deliver(c, b, slot, error_response(id, code, msg));
        return;
    }
    deliver(c, NULL, 0, error_response(id, code, msg));
}

/* ---- calls ---- */

static struct aq_call *
call_new(struct conn *c, json_t *id, json_t *params, struct batch *b)
{
    struct aq_call *call = xcalloc(1, sizeof *call);

    call->conn = c;
    call->id = json_incref(id);
    call->params = json_incref(params);
    if (b != NULL && id != NULL) {
        call->batch = b;
        call->slot = json_array_size(b->replies);
        json_array_append_new(b->replies, json_null());
        b->pending++;
    }
    call->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = call;
    c->calls = call;
    c->inflight++;
    return call;
}

/* Ends call with response (reference taken; NULL: no reply owed). */
static void
call_end(struct aq_call *call, json_t *response)
{
    struct conn *c = call->conn;
    bool was_stalled =
        c->blocker != NULL || c->inflight >= (size_t)c->s->window;

    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    c->inflight--;
    if (c->blocker == call)
        c->blocker = NULL;
    if ((call->id != NULL || call->id_raw_len > 0) && response != NULL)
        deliver(c, call->batch, call->slot, response);
    else
        json_decref(response);
    json_decref(call->id);
    json_decref(call->params);
    free(call);
    /* Resume reading from the loop, not under the caller's feet. */
    if (was_stalled && !c->in_process)
        bufferevent_trigger(c->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS |
                                BEV_TRIG_DEFER_CALLBACKS);
    else if (c->is_eof && c->inflight == 0 && !c->in_process)
        bufferevent_trigger(c->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS |
                                BEV_TRIG_DEFER_CALLBACKS);
}

void *
aq_call_scratch(struct aq_call *call, size_t size)
{
    assert(size <= sizeof call->scratch);
    return call->scratch;
}

json_t *
aq_call_params(const struct aq_call *call)
{
    struct aq_call *mut = (struct aq_call *)call;

    if (mut->params == NULL)
        mut->params = json_object();
    return mut->params;
}

/* The id as JSON (a new reference), or NULL for a notification. */
static json_t *
call_id(const struct aq_call *call)
{
    if (call->id != NULL)
        return json_incref(call->id);
    if (call->id_raw_len == 0)
        return NULL;
    return json_loadb(call->id_raw, call->id_raw_len, JSON_DECODE_ANY, NULL);
}

struct event_base *
aq_call_base(const struct aq_call *call)
{
    return call->conn->s->base;
}

void
aq_call_reply(struct aq_call *call, json_t *result)
{
    json_t *response = NULL, *id = call_id(call);

    if (id != NULL)
        response = json_pack("{s:s,s:o,s:o}", "jsonrpc", "2.0", "id", id,
                             "result", result);
    else
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
 * jansson would write for {"jsonrpc","id","result":{"job","state"}}. */
void
aq_call_reply_put(struct aq_call *call, const struct aq_put_result *res)
{
    struct conn *c = call->conn;
    char idbuf[64], line[256];
    const char *id = call->id_raw;
    size_t id_len = call->id_raw_len, n;

    if (call->id != NULL) {
        id_len = json_dumpb(call->id, idbuf, sizeof idbuf,
                            JSON_COMPACT | JSON_ENCODE_ANY);
        id = idbuf;
    }
    if (call->batch != NULL || id_len == 0 || id_len >= sizeof idbuf) {
        aq_call_reply(call, put_result_json(res)); /* the general way */
        return;
    }
    /* Assembled by hand: snprintf was a tenth of the hot path. */
    n = 0;
    n = APPEND_LIT(line, n, "{\"jsonrpc\":\"2.0\",\"id\":");
    n = append(line, n, id, id_len);
    n = APPEND_LIT(line, n, ",\"result\":{\"job\":");
    n = append_u64(line, n, res->job);
    n = APPEND_LIT(line, n, ",\"state\":\"");
    n = append(line, n, res->state, strlen(res->state));
    if (res->duplicate)
        n = APPEND_LIT(line, n, "\",\"duplicate\":true}}\n");
    else
        n = APPEND_LIT(line, n, "\"}}\n");
    if (!c->is_closing)
        evbuffer_add(bufferevent_get_output(c->bev), line, n);
    call_end(call, NULL);
}

void
aq_call_fail(struct aq_call *call, const struct aq_error *err)
{
    json_t *response = NULL, *id = call_id(call);

    if (id != NULL) {
        response = error_response(id, err->code, err->message);
        json_decref(id);
    }
    call_end(call, response);
}

void
aq_call_notify(struct aq_call *call, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s,s:s,s:o}", "jsonrpc", "2.0", "method", method,
                            "params", params);

    if (!call->conn->is_closing)
        write_json(call->conn, msg);
    json_decref(msg);
}

void
aq_call_block(struct aq_call *call)
{
    call->conn->blocker = call;
    conn_update_reading(call->conn);
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

/* Releases every call in flight through its abandon hook; with err, the
 * client is told (shutting down), else nothing is sent. */
static void
calls_abandon(struct conn *c, const struct aq_error *err)
{
    struct aq_call *call;

    while ((call = c->calls) != NULL) {
        if (call->abandon != NULL)
            call->abandon(call->abandon_arg);
        call->abandon = NULL;
        if (err != NULL)
            aq_call_fail(call, err);
        else
            call_end(call, NULL);
    }
}

/* ---- requests ---- */

/* A request that cannot run: answered, unless it is a notification. */
#define REJECT(code, ...)                                                      \
    do {                                                                       \
        if (!is_notification)                                                  \
            reply_error_now(c, b, id, code, __VA_ARGS__);                      \
        return;                                                                \
    } while (0)

static void
handle_request(struct conn *c, json_t *req, struct batch *b)
{
    struct aq_server *s = c->s;
    json_t *id = NULL, *params, *jsonrpc, *v;
    const char *method, *key;
    bool is_notification = false;
    struct aq_call *call;
    struct aq_error err;

    if (!json_is_object(req))
        REJECT(AQ_ERR_INVALID_REQUEST,
               "invalid request: expected a JSON object");
    method = json_string_value(json_object_get(req, "method"));
    id = json_object_get(req, "id");
    /* Without an id, a request naming a method is a notification: it
     * runs, and nothing is ever sent back for it, not even an error. */
    is_notification = id == NULL && method != NULL;
    if (id != NULL && !json_is_string(id) && !json_is_number(id) &&
        !json_is_null(id)) {
        id = NULL;
        REJECT(AQ_ERR_INVALID_REQUEST,
               "invalid request: id: expected string, number or null");
    }
    json_object_foreach (req, key, v) {
        if (strcmp(key, "jsonrpc") != 0 && strcmp(key, "id") != 0 &&
            strcmp(key, "method") != 0 && strcmp(key, "params") != 0)
            REJECT(AQ_ERR_INVALID_REQUEST,
                   "invalid request: %.100s: unknown member", key);
    }
    jsonrpc = json_object_get(req, "jsonrpc");
    if (jsonrpc != NULL && (!json_is_string(jsonrpc) ||
                            strcmp(json_string_value(jsonrpc), "2.0") != 0))
        REJECT(AQ_ERR_INVALID_REQUEST,
               "invalid request: jsonrpc: expected \"2.0\"");
    if (method == NULL)
        REJECT(AQ_ERR_INVALID_REQUEST,
               "invalid request: method: expected string");
    params = json_object_get(req, "params");
    if (params != NULL && !json_is_object(params))
        REJECT(AQ_ERR_INVALID_PARAMS, "params: expected object (named params)");
    call = call_new(c, id, params, b);
    if (aq_methods_auth_required(s->methods) && !c->is_authed &&
        strcmp(method, "auth") != 0 && aq_methods_exists(method)) {
        aq_error_set(&err, AQ_ERR_UNAUTHORIZED,
                     "unauthorized: send auth with the token first");
        aq_call_fail(call, &err);
        return;
    }
    if (aq_methods_dispatch(s->methods, method, call) < 0) {
        aq_error_set(&err, AQ_ERR_NO_METHOD, "method not found: %.100s",
                     method);
        aq_call_fail(call, &err);
    }
}

#undef REJECT

/* The hot path: a plain put, read without jansson (lib/fastput.c). */
static bool
handle_fast_put(struct conn *c, const char *line, size_t len)
{
    struct aq_fastput fp;
    struct aq_call *call;

    if (aq_methods_auth_required(c->s->methods) && !c->is_authed)
        return false;
    if (aq_fastput_parse(line, len, &fp) < 0)
        return false;
    call = call_new(c, NULL, NULL, NULL);
    memcpy(call->id_raw, fp.id, fp.id_len);
    call->id_raw_len = (uint8_t)fp.id_len;
    aq_methods_put(c->s->methods, call, &fp.put, fp.wait);
    return true;
}

static void
handle_line(struct conn *c, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg;

    if (handle_fast_put(c, line, len))
        return;
    msg =
        json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    if (msg == NULL) {
        reply_error_now(c, NULL, NULL, AQ_ERR_PARSE,
                        "parse error: column %d: %s", jerr.column, jerr.text);
        return;
    }
    if (!json_is_array(msg)) {
        handle_request(c, msg, NULL);
        json_decref(msg);
        return;
    }
    if (json_array_size(msg) == 0) {
        reply_error_now(c, NULL, NULL, AQ_ERR_INVALID_REQUEST,
                        "invalid request: empty batch");
        json_decref(msg);
        return;
    }
    /* A batch: one array of replies, sent once every request is answered.
     * pending starts at 1 so it cannot complete while still being filled. */
    struct batch *b = xcalloc(1, sizeof *b);
    size_t i;
    json_t *req;

    b->replies = json_array();
    b->pending = 1;
    json_array_foreach (msg, i, req)
        handle_request(c, req, b);
    deliver(c, b, SIZE_MAX, NULL);
    json_decref(msg);
}

static bool
is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

static void
line_too_long(struct conn *c)
{
    aq_log(AQ_LOG_INFO, "conn %llu (%s): request over %zu bytes, closing",
           (unsigned long long)c->num, c->peer, c->s->max_request_bytes);
    reply_error_now(c, NULL, NULL, AQ_ERR_INVALID_REQUEST,
                    "invalid request: line longer than "
                    "producers.max_request_bytes (%zu)",
                    c->s->max_request_bytes);
    conn_close(c);
}

/* Handles the complete lines buffered, as far as the window, a blocking
 * call and the client's reading of replies allow. */
static void
conn_process(struct conn *c)
{
    struct aq_server *s = c->s;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->in_process || c->is_closing)
        return;
    c->in_process = true;
    while (!c->is_closing && c->blocker == NULL &&
           c->inflight < (size_t)s->window &&
           evbuffer_get_length(out) < OUTPUT_HIGH_BYTES) {
        size_t eol_len = 0, avail = evbuffer_get_length(in), len;
        struct evbuffer_ptr eol =
            evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);

        if (eol.pos < 0) {
            if (avail > s->max_request_bytes)
                line_too_long(c);
            else if (c->is_eof && avail > 0)
                eol.pos = (ssize_t)avail; /* the last line, unterminated */
            if (eol.pos < 0)
                break;
        }
        len = (size_t)eol.pos;
        if (len > s->max_request_bytes) {
            line_too_long(c);
            break;
        }
        const char *line = (const char *)evbuffer_pullup(in, len + eol_len);
        size_t n = len;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (!is_blank(line, n))
            handle_line(c, line, n);
        evbuffer_drain(in, len + eol_len);
    }
    c->in_process = false;
    if (c->is_eof && !c->is_closing && c->inflight == 0 &&
        evbuffer_get_length(in) == 0)
        conn_close(c); /* the client is done and owed nothing more */
    else
        conn_update_reading(c);
}

static void
conn_update_reading(struct conn *c)
{
    bool stalled = c->blocker != NULL || c->inflight >= (size_t)c->s->window ||
                   evbuffer_get_length(bufferevent_get_output(c->bev)) >=
                       OUTPUT_HIGH_BYTES;

    if (c->is_closing || c->is_eof || stalled)
        bufferevent_disable(c->bev, EV_READ);
    else
        bufferevent_enable(c->bev, EV_READ);
}

/* ---- connection life ---- */

static void
conn_free(struct conn *c)
{
    struct aq_server *s = c->s;

    calls_abandon(c, NULL);
    if (c->flush_pending)
        LIST_REMOVE(c, flush_link);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (!c->is_rejected)
        s->nconns--;
    aq_log(AQ_LOG_DEBUG, "conn %llu (%s): closed", (unsigned long long)c->num,
           c->peer);
    bufferevent_free(c->bev);
    free(c);
}

/* Frees the connections marked dying. */
static void
reap(struct aq_server *s)
{
    struct conn *c;

    while ((c = s->dying) != NULL) {
        s->dying = c->next_dying;
        conn_free(c);
        /* A closed connection freed a few kilobytes (and its closing
         * more, briefly): worth about a hundred jobs. */
        aq_trim_note(100);
    }
    if (s->conns == NULL && s->closed != NULL)
        event_active(s->close_ev, EV_TIMEOUT, 0);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
    reap(arg);
}

/* Frees c from the loop, where no caller can still be using it. */
static void
conn_free_soon(struct conn *c)
{
    if (c->is_freeing)
        return;
    c->is_freeing = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->next_dying = c->s->dying;
    c->s->dying = c;
    event_active(c->s->reap_ev, EV_TIMEOUT, 0);
}

/* Frees every connection now (after reaping the dying ones, which are
 * also still on the list). */
static void
conns_free_all(struct aq_server *s)
{
    reap(s);
    while (s->conns != NULL) {
        s->conns->is_closing = true;
        conn_free(s->conns);
    }
}

/* Everything owed to the client has been written. */
static void
conn_output_drained(struct conn *c)
{
    if (c->is_closing) {
        conn_free_soon(c);
        return;
    }
    /* The client read its replies: maybe reading can resume. */
    if (c->blocker == NULL && c->inflight < (size_t)c->s->window)
        conn_process(c);
}

/* Replies are written straight from the loop iteration that made them,
 * all of a connection's in one write: bufferevent's own path would wait
 * for the next epoll_wait to report the socket writable, and add and
 * remove the write event each time (two epoll_ctl, another epoll_wait
 * and its timerfd_settime per batch). Only when the socket is full does
 * the bufferevent's write event take over, until the output drains. */
static void
conn_flush(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->is_freeing)
        return;
    if (evbuffer_get_length(out) > 0) {
        /* A socket bufferevent keeps its output's front frozen to all but
         * its own write callback; it is ours for this write. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(c->bev));
        evbuffer_freeze(out, 1);
        if (evbuffer_get_length(out) > 0) {
            /* Full, or failed: libevent writes the rest when it can, or
             * reports the error to conn_event_cb. */
            bufferevent_enable(c->bev, EV_WRITE);
            return;
        }
    }
    conn_output_drained(c);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_server *s = arg;
    struct conn *c;

    while ((c = LIST_FIRST(&s->flushing)) != NULL) {
        LIST_REMOVE(c, flush_link);
        c->flush_pending = false;
        conn_flush(c);
    }
}

/* Output was added: flush it once the current callback is done. */
static void
output_added_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                void *arg)
{
    struct conn *c = arg;

    if (info->n_added == 0 || c->flush_pending || c->is_freeing)
        return;
    c->flush_pending = true;
    LIST_INSERT_HEAD(&c->s->flushing, c, flush_link);
    event_active(c->s->flush_ev, EV_WRITE, 0);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    /* The write event drained the output: direct writes again. */
    bufferevent_disable(bev, EV_WRITE);
    conn_output_drained(arg);
}

/* Stops reading, abandons the calls in flight, and frees the connection
 * once what is already in its output has been written. */
static void
conn_close(struct conn *c)
{
    if (c->is_closing)
        return;
    c->is_closing = true;
    bufferevent_disable(c->bev, EV_READ);
    calls_abandon(c, NULL);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free_soon(c);
    /* else conn_output_drained frees it once the output is written */
}

/* libevent 2.1 reads at most 4 KiB per wake-up (EVBUFFER_MAX_READ), and
 * a pipelining producer has more waiting: each further 4 KiB would cost a
 * loop pass (epoll_wait, timerfd_settime, FIONREAD, read). When
 * libevent's read came back full, one readv into reserved space takes up
 * to READ_BURST more now. EOF and errors stay on the socket for
 * libevent's next read to report. An idle connection never gets here, so
 * it never holds the larger buffer. */
static void
read_burst(struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[2];
    ssize_t n;
    int nv;

    if (evbuffer_get_length(in) < LIBEVENT_READ)
        return;
    /* A socket bufferevent keeps its input's end frozen to all but its
     * own read callback; it is ours for this read. */
    evbuffer_unfreeze(in, 0);
    nv = evbuffer_reserve_space(in, READ_BURST, v, 2);
    if (nv <= 0) {
        evbuffer_freeze(in, 0);
        return;
    }
    /* struct evbuffer_iovec has struct iovec's layout where one exists. */
    n = readv(bufferevent_getfd(bev), (struct iovec *)v, nv);
    for (int i = 0; i < nv; i++) {
        size_t take = n > 0 ? (size_t)n : 0;

        if (v[i].iov_len > take)
            v[i].iov_len = take;
        n -= (ssize_t)v[i].iov_len;
    }
    evbuffer_commit_space(in, v, nv);
    evbuffer_freeze(in, 0);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    read_burst(bev);
    conn_process(arg);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_TIMEOUT) {
        if (c->inflight > 0) {
            /* Waiting for a reply (wait, join) is not idleness. */
            bufferevent_enable(bev, EV_READ);
            return;
        }
        aq_log(AQ_LOG_INFO, "conn %llu (%s): idle for %g s, closing",
               (unsigned long long)c->num, c->peer, c->s->idle_timeout);
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* The client closed its side: finish what it sent, answer it,
         * then close. */
        c->is_eof = true;
        conn_process(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        aq_log(AQ_LOG_DEBUG, "conn %llu (%s): %s", (unsigned long long)c->num,
               c->peer, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        c->is_closing = true;
        calls_abandon(c, NULL);
        conn_free_soon(c);
    }
}

static void
peer_name(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    default:
        snprintf(buf, len, "unix");
        break;
    }
}

static void
conn_set_timeouts(struct conn *c)
{
    struct timeval tv;

    if (c->s->idle_timeout > 0) {
        tv = aq_clock_tv((int64_t)(c->s->idle_timeout * 1e6));
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    } else
        bufferevent_set_timeouts(c->bev, NULL, NULL);
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int socklen, void *arg)
{
    struct listener *l = arg;
    struct aq_server *s = l->s;
    struct conn *c = xcalloc(1, sizeof *c);

    c->s = s;
    c->num = ++s->next_conn;
    peer_name(sa, c->peer, sizeof c->peer);
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    evbuffer_add_cb(bufferevent_get_output(c->bev), output_added_cb, c);
    bufferevent_disable(c->bev, EV_WRITE); /* on by default; see conn_flush */
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    if (s->nconns >= (size_t)s->max_conns) {
        c->is_rejected = true;
        aq_log(AQ_LOG_WARN,
               "conn %llu (%s): refused, producers.max (%d) connections open",
               (unsigned long long)c->num, c->peer, s->max_conns);
        reply_error_now(c, NULL, NULL, AQ_ERR_TOO_MANY_CONNECTIONS,
                        "too many connections: producers.max is %d",
                        s->max_conns);
        conn_close(c);
        return;
    }
    s->nconns++;
    conn_set_timeouts(c);
    aq_log(AQ_LOG_DEBUG, "conn %llu (%s): accepted on %s",
           (unsigned long long)c->num, c->peer, l->name);
    bufferevent_enable(c->bev, EV_READ);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_server *s = arg;

    for (struct listener *l = s->listeners; l != NULL; l = l->next)
        evconnlistener_enable(l->lev);
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {1, 0};

    aq_log(AQ_LOG_WARN, "listen: %s: accept: %s; retrying in 1 s", l->name,
           evutil_socket_error_to_string(e));
    /* Out of descriptors: stop accepting for a second instead of
     * spinning on the same error (as tmux does). */
    evconnlistener_disable(lev);
    evtimer_add(l->s->retry_ev, &tv);
}

/* ---- listeners ---- */

static void
listener_add(struct aq_server *s, struct evconnlistener *lev,
             const char *unix_path)
{
    struct listener *l = xcalloc(1, sizeof *l);
    evutil_socket_t fd = evconnlistener_get_fd(lev);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN];

    l->s = s;
    l->lev = lev;
    l->unix_path = unix_path != NULL ? xstrdup(unix_path) : NULL;
    memset(&ss, 0, sizeof ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(l->name, sizeof l->name, "tcp://%s:%u", host,
                 ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(l->name, sizeof l->name, "tcp://[%s]:%u", host,
                 ntohs(in6->sin6_port));
    } else if (ss.ss_family == AF_UNIX)
        snprintf(l->name, sizeof l->name, "unix:%s",
                 ((struct sockaddr_un *)&ss)->sun_path);
    else
        snprintf(l->name, sizeof l->name, "fd %d", (int)fd);
    evconnlistener_set_cb(lev, accept_cb, l);
    evconnlistener_set_error_cb(lev, accept_error_cb);
    l->next = s->listeners;
    s->listeners = l;
    aq_log(AQ_LOG_INFO, "listening on %s", l->name);
}

static int
listen_tcp(struct aq_server *s, const char *addr, struct aq_error *err)
{
    const char *hostport = addr + strlen("tcp://");
    const char *colon = strrchr(hostport, ':');
    char host[256], port[16];
    struct addrinfo hints = {0}, *res = NULL;
    struct evconnlistener *lev;
    size_t hlen;
    int rc;

    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host ||
        strlen(colon + 1) >= sizeof port)
        goto bad;
    hlen = (size_t)(colon - hostport);
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']') {
        memcpy(host, hostport + 1, hlen - 2); /* [v6] */
        host[hlen - 2] = '\0';
    } else {
        memcpy(host, hostport, hlen);
        host[hlen] = '\0';
    }
    strcpy(port, colon + 1);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr,
                     gai_strerror(rc));
        return -1;
    }
    lev = evconnlistener_new_bind(
        s->base, accept_cb, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
            (res->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
        LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (lev == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr,
                     strerror(errno));
        return -1;
    }
    listener_add(s, lev, NULL);
    return 0;
bad:
    aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: expected tcp://HOST:PORT",
                 addr);
    return -1;
}

static int
listen_unix(struct aq_server *s, const char *addr, struct aq_error *err)
{
    const char *path = addr + strlen("unix:");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct evconnlistener *lev;
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof sun.sun_path) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: path too long", addr);
        return -1;
    }
    strcpy(sun.sun_path, path);
    /* A socket left by a previous run is stale: replace it. Anything
     * else at that path is not ours to remove. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr,
                     strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    lev = evconnlistener_new(s->base, accept_cb, NULL,
                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                             fd);
    listener_add(s, lev, path);
    return 0;
}

int
aq_server_listen(struct aq_server *s, const struct aq_config *cfg,
                 const int *fds, size_t nfds, struct aq_error *err)
{
    if (nfds > 0) {
        for (size_t i = 0; i < nfds; i++) {
            evutil_make_socket_nonblocking(fds[i]);
            evutil_make_socket_closeonexec(fds[i]);
            listener_add(s,
                         evconnlistener_new(s->base, accept_cb, NULL,
                                            LEV_OPT_CLOSE_ON_FREE |
                                                LEV_OPT_CLOSE_ON_EXEC,
                                            -1, fds[i]),
                         NULL);
        }
        return 0;
    }
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const char *addr = cfg->listen[i];
        int rc = strncmp(addr, "unix:", 5) == 0 ? listen_unix(s, addr, err)
                                                : listen_tcp(s, addr, err);

        if (rc < 0)
            return -1;
    }
    return 0;
}

size_t
aq_server_addresses(const struct aq_server *s, struct sockaddr_storage *out,
                    size_t max)
{
    size_t n = 0;

    for (const struct listener *l = s->listeners; l != NULL; l = l->next) {
        struct sockaddr_storage ss = {0};
        socklen_t sl = sizeof ss;

        if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss,
                        &sl) == 0 &&
            (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) && n < max)
            out[n++] = ss;
    }
    return n;
}

/* ---- server ---- */

static void
apply_limits(struct aq_server *s, const struct aq_config *cfg)
{
    s->max_conns = cfg->producers.max;
    s->window = cfg->producers.window;
    s->max_request_bytes = cfg->producers.max_request_bytes;
    s->idle_timeout = cfg->producers.idle_timeout;
}

struct aq_server *
aq_server_new(struct event_base *base, const struct aq_config *cfg)
{
    struct aq_server *s = xcalloc(1, sizeof *s);

    s->base = base;
    apply_limits(s, cfg);
    s->retry_ev = evtimer_new(base, retry_cb, s);
    s->reap_ev = event_new(base, -1, 0, reap_cb, s);
    LIST_INIT(&s->flushing);
    s->flush_ev = event_new(base, -1, 0, flush_cb, s);
    return s;
}

void
aq_server_set_methods(struct aq_server *s, struct aq_methods *m)
{
    s->methods = m;
}

void
aq_server_reconfigure(struct aq_server *s, const struct aq_config *cfg)
{
    apply_limits(s, cfg);
    for (struct conn *c = s->conns; c != NULL; c = c->next) {
        if (!c->is_closing)
            conn_set_timeouts(c);
    }
}

size_t
aq_server_connections(const struct aq_server *s)
{
    return s->nconns;
}

void
aq_server_stop_listening(struct aq_server *s)
{
    struct listener *l;

    while ((l = s->listeners) != NULL) {
        s->listeners = l->next;
        evconnlistener_free(l->lev);
        if (l->unix_path != NULL)
            unlink(l->unix_path);
        free(l->unix_path);
        free(l);
    }
    evtimer_del(s->retry_ev);
}

static void
close_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_server *s = arg;
    void (*closed)(void *) = s->closed;

    /* On timeout, clients that do not read their replies are cut off. */
    s->closed = NULL;
    conns_free_all(s);
    if (closed != NULL)
        closed(s->closed_arg);
}

void
aq_server_close_all(struct aq_server *s, int timeout_ms,
                    void (*done)(void *arg), void *arg)
{
    struct aq_error err;
    struct timeval tv = aq_clock_tv((int64_t)timeout_ms * 1000);

    aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "shutting down");
    s->closed = done;
    s->closed_arg = arg;
    s->close_ev = evtimer_new(s->base, close_cb, s);
    evtimer_add(s->close_ev, &tv);
    for (struct conn *c = s->conns; c != NULL; c = c->next) {
        calls_abandon(c, &err);
        conn_close(c);
    }
    if (s->conns == NULL)
        event_active(s->close_ev, EV_TIMEOUT, 0);
}

void
aq_server_free(struct aq_server *s)
{
    if (s == NULL)
        return;
    aq_server_stop_listening(s);
    if (s->close_ev != NULL) {
        event_free(s->close_ev); /* no done callback from here on */
        s->close_ev = NULL;
    }
    conns_free_all(s);
    event_free(s->retry_ev);
    event_free(s->reap_ev);
    event_free(s->flush_ev);
    free(s);
}
