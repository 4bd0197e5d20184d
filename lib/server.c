/* SPDX-License-Identifier: MIT */
/*
 * lib/server.c: connections and the JSON-RPC framing. What a request
 * means is the ops' business (lib/server.h); the calls in flight and
 * their replies are lib/call.c's (lib/server-internal.h between the
 * two); sockets come from whoever accepted them (lib/listen.c).
 *
 * A plain socket is read by the connection's own event into the server's
 * read buffer, and its complete lines are handled there (no copy); what
 * waits (a partial line, a stalled connection's input) and a TLS
 * connection's input are read as lines out of the input evbuffer.
 * A plain put goes the hot path (lib/fastput.c) straight to the put op;
 * any other line is checked as JSON (lib/jscan.c) and read as requests
 * (lib/rpc.c), whose id is kept as the raw text it arrived as. Messages
 * for the client wait in the connection's queue as JSON values and are
 * written into the output evbuffer only while it holds less than
 * OUTPUT_HIGH_BYTES (lib/jwrite.c stops between values), so a client that
 * does not read costs a bounded buffer, not a copy of every reply.
 * Requests are read while fewer than `window` calls are unanswered, no
 * call blocks the connection (a put waiting for room) and no message
 * waits; meanwhile the socket is still read up to STALLED_READ_BYTES so
 * that the client's close is seen. A client that closes its sending side
 * still gets the replies to what it sent, for at most idle_timeout,
 * outside producers.max. The server closes by flushing what is owed,
 * shutting its side down and reading until the client closes (no reset
 * that could destroy the last reply). A connection is freed only from the
 * loop (the server's reap event), never under a caller that may still use
 * it.
 */
#include "server-internal.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#ifdef AQ_HAVE_TLS
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include "clock.h"
#include "config.h"
#include "error.h"
#include "fastput.h"
#include "jscan.h"
#include "jwrite.h"
#include "log.h"
#include "rpc.h"
#include "xmalloc.h"

/* What is still read from a client whose requests are not processed now,
 * so that its close or reset is noticed. */
#define STALLED_READ_BYTES (64u << 10)
/* Closing: how long, and how much, to read and discard from a client
 * before the socket is closed. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (4u << 20)
#define READ_BYTES (64u << 10) /* what one read of a plain socket takes */
#define ACK_BYTES (16u << 10)  /* reply lines gathered before an add */

static void conn_process(struct conn *c);
static void conn_close(struct conn *c);
static void conn_free_soon(struct conn *c);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- writing ---- */

/* The reply lines gathered for c go to its output. */
static void
ack_flush(struct conn *c)
{
    struct aq_server *s = c->s;

    if (s->ack_conn != c || s->alen == 0)
        return;
    if (!c->is_freeing)
        evbuffer_add(bufferevent_get_output(c->bev), s->abuf, s->alen);
    s->alen = 0;
}

/* Reply lines for c are gathered until ack_end. */
static bool
ack_begin(struct conn *c)
{
    if (c->s->ack_conn != NULL || c->is_exchange)
        return false;
    c->s->ack_conn = c;
    return true;
}

/* The replies gathered are written straight to a plain socket when nothing
 * waits before them (no chain to allocate, fill and free, and no wait for
 * the flush pass); what the socket does not take goes to the output. */
static void
ack_end(struct conn *c)
{
    struct aq_server *s = c->s;
    ssize_t n;

    if (s->alen > 0 && c->rev != NULL && !c->is_freeing && !c->is_closing &&
        STAILQ_EMPTY(&c->outq) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
        (n = send(bufferevent_getfd(c->bev), s->abuf, s->alen,
                  MSG_NOSIGNAL | MSG_DONTWAIT)) > 0) {
        /* An error is left for the output's write to report. */
        s->alen -= (size_t)n;
        memmove(s->abuf, s->abuf + n, s->alen);
    }
    ack_flush(c);
    s->ack_conn = NULL;
}

struct evbuffer *
aq_conn_output(struct conn *c)
{
    if (c->out != NULL)
        return c->out;
    ack_flush(c);
    return bufferevent_get_output(c->bev);
}

/* Moves queued messages into the output until it holds
 * OUTPUT_HIGH_BYTES; the rest waits for the client to read. */
static void
conn_pump(struct conn *c)
{
    struct evbuffer *out = aq_conn_output(c);
    /* An exchange's output is the reply being built: no limit. */
    size_t limit = c->is_exchange ? SIZE_MAX : OUTPUT_HIGH_BYTES;
    struct outmsg *m;

    while ((m = STAILQ_FIRST(&c->outq)) != NULL) {
        if (!aq_jwrite_step(m->w, out, limit))
            return;
        evbuffer_add(out, "\n", 1);
        STAILQ_REMOVE_HEAD(&c->outq, link);
        aq_jwrite_free(m->w);
        free(m);
    }
}

/* Sends msg (taken) to the client, after the messages before it. */
void
aq_conn_send(struct conn *c, json_t *msg)
{
    struct outmsg *m;

    if (c->is_freeing) {
        json_decref(msg);
        return;
    }
    m = xmalloc(sizeof *m);
    m->w = aq_jwrite_new(msg);
    STAILQ_INSERT_TAIL(&c->outq, m, link);
    conn_pump(c);
}

/* Sends one line of text (with its '\n'), written as it is. */
void
aq_conn_send_line(struct conn *c, const char *line, size_t n)
{
    struct aq_server *s = c->s;

    if (c->is_freeing)
        return;
    if (s->ack_conn == c && STAILQ_EMPTY(&c->outq) && n <= ACK_BYTES) {
        if (s->alen + n > ACK_BYTES)
            ack_flush(c);
        memcpy(s->abuf + s->alen, line, n);
        s->alen += n;
        return;
    }
    if (STAILQ_EMPTY(&c->outq))
        evbuffer_add(aq_conn_output(c), line, n);
    else
        aq_conn_send(c, aq_jraw(line, n - 1));
}

/* ---- calls ---- */

bool
aq_conn_is_stalled(const struct conn *c)
{
    if (c->is_exchange)
        return false; /* it reads nothing more */
    return c->blocker != NULL || c->inflight >= (size_t)c->s->window ||
           !STAILQ_EMPTY(&c->outq) ||
           evbuffer_get_length(bufferevent_get_output(c->bev)) >=
               OUTPUT_HIGH_BYTES;
}

/* ---- requests ---- */

/* One request (a validated JSON value): a call for its method, or an
 * error for it (none for a notification). */
static void
handle_request(struct conn *c, struct aq_jspan v, struct batch *b)
{
    struct aq_rpc_request r;
    struct aq_error err;

    if (aq_rpc_request(v, &r, &err) < 0) {
        if (!r.is_notification)
            aq_reply_error_now(c, b, r.id, err.code, "%s", err.message);
        return;
    }
    c->s->ops.request(c->s->ops_arg, aq_call_new(c, r.id, b), &r);
}

/* The hot path: a plain put, read without jansson (lib/fastput.c), goes
 * straight to the put op. */
static bool
handle_fast_put(struct conn *c, const char *line, size_t len)
{
    struct aq_server *s = c->s;
    struct aq_fastput fp;
    struct aq_call *call;

    if (s->ops.put == NULL || aq_fastput_parse(line, len, &fp) < 0)
        return false;
    call = aq_call_new(
        c, (struct aq_jspan){fp.id_len > 0 ? fp.id : NULL, fp.id_len}, NULL);
    s->ops.put(s->ops_arg, call, &fp.put, fp.wait);
    return true;
}

static size_t
skip_ws(const char *p, size_t len, size_t pos)
{
    while (pos < len && (p[pos] == ' ' || p[pos] == '\t' || p[pos] == '\n' ||
                         p[pos] == '\r'))
        pos++;
    return pos;
}

static void
handle_line(struct conn *c, const char *line, size_t len)
{
    const struct aq_jspan none = {0};
    struct aq_jspan key, v;
    const char *what;
    struct batch *b;
    size_t pos;

    if (handle_fast_put(c, line, len))
        return;
    if (!aq_jscan_check(line, len, &pos, &what)) {
        aq_reply_error_now(c, NULL, none, AQ_ERR_PARSE,
                           "parse error: column %zu: %s", pos + 1, what);
        return;
    }
    pos = skip_ws(line, len, 0);
    if (line[pos] != '[') {
        handle_request(c, (struct aq_jspan){line + pos, len - pos}, NULL);
        return;
    }
    /* A batch: one array of replies, sent once every request is answered. */
    b = aq_batch_new();
    aq_jscan_enter(line, len, &pos);
    if (!aq_jscan_next(line, len, &pos, &key, &v))
        aq_reply_error_now(c, NULL, none, AQ_ERR_INVALID_REQUEST,
                           "invalid request: empty batch");
    else {
        do
            handle_request(c, v, b);
        while (!c->is_closing && aq_jscan_next(line, len, &pos, &key, &v));
    }
    aq_batch_close(c, b);
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
    aq_log_conn(AQ_LOG_INFO, c->num, c->peer,
                "conn %llu (%s): request over %zu bytes, closing",
                (unsigned long long)c->num, c->peer, c->s->max_request_bytes);
    aq_reply_error_now(c, NULL, (struct aq_jspan){0}, AQ_ERR_INVALID_REQUEST,
                       "invalid request: line longer than "
                       "producers.max_request_bytes (%zu)",
                       c->s->max_request_bytes);
    c->must_linger = true;
    conn_close(c);
}

/* One line as read, without its '\n'. */
static void
process_line(struct conn *c, const char *line, size_t n)
{
    if (n > 0 && line[n - 1] == '\r')
        n--;
    /* A UTF-8 byte-order mark may start the first line (RFC 8259 lets a
     * parser ignore it). */
    if (c->lines++ == 0 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        n -= 3;
    }
    if (!is_blank(line, n))
        handle_line(c, line, n);
}

/* Handles the complete lines buffered, as far as the window, a blocking
 * call and the client's reading of replies allow. */
static void
conn_process(struct conn *c)
{
    struct aq_server *s = c->s;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool acks;

    if (c->in_process || c->is_closing)
        return;
    c->in_process = true;
    acks = ack_begin(c);
    while (!c->is_closing && !aq_conn_is_stalled(c)) {
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
        process_line(c, (const char *)evbuffer_pullup(in, len + eol_len), len);
        evbuffer_drain(in, len + eol_len);
    }
    if (acks)
        ack_end(c);
    c->in_process = false;
    if (c->is_eof && !c->is_closing && c->inflight == 0 &&
        evbuffer_get_length(in) == 0)
        conn_close(c); /* the client is done and owed nothing more */
    else
        aq_conn_update_reading(c);
}

/* The idle timeout for reading (NULL: none), in tv. */
static const struct timeval *
idle_tv(const struct conn *c, struct timeval *tv)
{
    if (!c->is_timed || c->s->idle_timeout <= 0)
        return NULL;
    *tv = aq_clock_tv((int64_t)(c->s->idle_timeout * 1e6));
    return tv;
}

/* A plain socket is read by its own event (sock_read_cb), a TLS one by
 * its bufferevent. */
static void
conn_start_reading(struct conn *c)
{
    struct timeval tv;

    if (c->rev == NULL)
        bufferevent_enable(c->bev, EV_READ);
    else if (!c->is_reading) {
        event_add(c->rev, idle_tv(c, &tv));
        c->is_reading = true;
    }
}

static void
conn_stop_reading(struct conn *c)
{
    if (c->rev == NULL)
        bufferevent_disable(c->bev, EV_READ);
    else if (c->is_reading) {
        event_del(c->rev);
        c->is_reading = false;
    }
}

/* Reading goes on while requests are processed, and, up to
 * STALLED_READ_BYTES, while they are not: the client's EOF or reset must
 * be seen even then. */
void
aq_conn_update_reading(struct conn *c)
{
    size_t limit;

    if (c->is_freeing || c->is_exchange)
        return;
    if (!c->is_lingering && (c->is_closing || c->is_eof)) {
        conn_stop_reading(c);
        return;
    }
    limit = !c->is_lingering && aq_conn_is_stalled(c) ? STALLED_READ_BYTES : 0;
    if (c->rev != NULL) {
        /* sock_read reads no further than the limit. */
        c->read_limit = limit;
        if (limit > 0 &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) >= limit)
            conn_stop_reading(c);
        else
            conn_start_reading(c);
        return;
    }
    if (limit != c->read_limit) { /* not on every pass: the hot path */
        bufferevent_setwatermark(c->bev, EV_READ, 0, limit);
        c->read_limit = limit;
    }
    bufferevent_enable(c->bev, EV_READ);
}

void
aq_conn_resume(struct conn *c)
{
    if (c->rev == NULL) {
        bufferevent_trigger(c->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS |
                                BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    /* resume_cb processes what is buffered; the socket, if it holds
     * more, wakes rev as usual. */
    if (c->resume_pending || c->is_freeing)
        return;
    c->resume_pending = true;
    LIST_INSERT_HEAD(&c->s->resuming, c, resume_link);
    event_active(c->s->resume_ev, EV_READ, 0);
}

/* ---- connection life ---- */

/* Leaves the server's count of open or half-closed connections. */
static void
conn_leave_slot(struct conn *c)
{
    struct aq_server *s = c->s;

    if (c->slot == SLOT_OPEN)
        s->nconns--;
    else if (c->slot == SLOT_HALF_CLOSED) {
        TAILQ_REMOVE(&s->half_closed, c, half_link);
        s->nhalf--;
    }
    c->slot = SLOT_NONE;
}

static void
conn_free(struct conn *c)
{
    struct aq_server *s = c->s;
    struct outmsg *m;

    aq_conn_detach(c);
    while ((m = STAILQ_FIRST(&c->outq)) != NULL) {
        STAILQ_REMOVE_HEAD(&c->outq, link);
        aq_jwrite_free(m->w);
        free(m);
    }
    if (c->flush_pending)
        LIST_REMOVE(c, flush_link);
    if (c->resume_pending)
        LIST_REMOVE(c, resume_link);
    conn_leave_slot(c);
    TAILQ_REMOVE(&s->conns, c, link);
    aq_log_conn(AQ_LOG_DEBUG, c->num, c->peer, "conn %llu (%s): closed",
                (unsigned long long)c->num, c->peer);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->rev != NULL)
        event_free(c->rev);
#ifdef AQ_HAVE_TLS
    if (!c->is_socket) {
        /* A TLS connection ends with close_notify (sent if the socket has
         * room: never waited for), so that the client sees a clean end. */
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

        if (ssl != NULL && SSL_is_init_finished(ssl) &&
            !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
            SSL_shutdown(ssl);
        ERR_clear_error();
    }
#endif
    bufferevent_free(c->bev);
    free(c);
}

/* Frees the connections marked dying. */
static void
reap(struct aq_server *s)
{
    struct conn *c;

    while ((c = SLIST_FIRST(&s->dying)) != NULL) {
        SLIST_REMOVE_HEAD(&s->dying, dying_link);
        conn_free(c);
        /* A closed connection freed a few kilobytes (and its closing
         * more, briefly): worth about a hundred jobs. */
        aq_trim_note(100);
    }
    if (TAILQ_EMPTY(&s->conns) && s->closed != NULL)
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
    c->is_closing = true;
    conn_stop_reading(c);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->timer != NULL)
        event_del(c->timer);
    SLIST_INSERT_HEAD(&c->s->dying, c, dying_link);
    event_active(c->s->reap_ev, EV_TIMEOUT, 0);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->is_lingering) {
        conn_free_soon(c);
        return;
    }
    aq_log_conn(AQ_LOG_INFO, c->num, c->peer,
                "conn %llu (%s): closed its side %g s ago with %zu requests "
                "unanswered, closing",
                (unsigned long long)c->num, c->peer, c->s->idle_timeout,
                c->inflight);
    conn_close(c);
}

static void
conn_timer_start(struct conn *c, int64_t us)
{
    struct timeval tv = aq_clock_tv(us);

    if (c->timer == NULL)
        c->timer = evtimer_new(c->s->base, conn_timer_cb, c);
    evtimer_add(c->timer, &tv);
}

/* Unread input, ours or still in the socket. */
static bool
conn_has_input(struct conn *c)
{
    int n = 0;

    return evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
           (c->is_socket &&
            ioctl(bufferevent_getfd(c->bev), FIONREAD, &n) == 0 && n > 0);
}

/* Everything owed is written: close, letting the client read it. Closing
 * a socket with unread input resets the connection, and a reset may
 * destroy the reply the client has not read yet. So when input is
 * pending, or the client may still be sending (refused, or its line was
 * too long), the server shuts its side down and reads what comes until
 * the client closes too, or LINGER_MS pass. */
static void
conn_finish(struct conn *c)
{
    if (c->is_lingering || c->is_freeing)
        return;
    if (c->is_eof || !c->is_socket || (!c->must_linger && !conn_has_input(c))) {
        conn_free_soon(c);
        return;
    }
    c->is_lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    conn_timer_start(c, (int64_t)LINGER_MS * 1000);
    aq_conn_update_reading(c);
}

/* The client closed its sending side with replies still owed: they are
 * sent, but the connection no longer holds a producers.max slot, lives
 * at most idle_timeout, and at most producers.max such connections are
 * kept (the oldest goes first). */
static void
conn_half_close(struct conn *c)
{
    struct aq_server *s = c->s;

    if (c->slot != SLOT_OPEN || c->is_closing)
        return;
    conn_leave_slot(c);
    c->slot = SLOT_HALF_CLOSED;
    TAILQ_INSERT_TAIL(&s->half_closed, c, half_link);
    s->nhalf++;
    if (s->idle_timeout > 0)
        conn_timer_start(c, (int64_t)(s->idle_timeout * 1e6));
    if (s->nhalf > (size_t)s->max_conns) {
        struct conn *old = TAILQ_FIRST(&s->half_closed);

        aq_log_conn(AQ_LOG_INFO, old->num, old->peer,
                    "conn %llu (%s): closed its side; more than producers.max "
                    "(%d) such connections wait for replies, closing",
                    (unsigned long long)old->num, old->peer, s->max_conns);
        conn_close(old);
    }
}

/* Stops processing, abandons the calls in flight, writes what is owed,
 * then closes (conn_finish). */
static void
conn_close(struct conn *c)
{
    if (c->is_closing)
        return;
    ack_flush(c); /* owed, as the rest of the output */
    c->is_closing = true;
    conn_leave_slot(c); /* it serves no more requests */
    if (c->timer != NULL)
        event_del(c->timer);
    aq_conn_detach(c);
    aq_conn_update_reading(c);
    if (STAILQ_EMPTY(&c->outq) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_finish(c);
    /* else conn_output_drained finishes once the output is written */
}

/* Frees every connection now (after reaping the dying ones, which are
 * also still on the list). */
static void
conns_free_all(struct aq_server *s)
{
    struct conn *c;

    reap(s);
    while ((c = TAILQ_FIRST(&s->conns)) != NULL) {
        c->is_closing = true;
        conn_free(c);
    }
}

/* Everything in the output has been written. */
static void
conn_output_drained(struct conn *c)
{
    if (!STAILQ_EMPTY(&c->outq)) {
        conn_pump(c); /* flushed in turn, coming back here */
        return;
    }
    if (c->is_closing) {
        conn_finish(c);
        return;
    }
    /* The client read its replies: maybe reading can resume. */
    if (!aq_conn_is_stalled(c))
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
    struct conn *c = arg;

    /* The write event drained the output: direct writes again. */
    if (c->is_socket)
        bufferevent_disable(bev, EV_WRITE);
    conn_output_drained(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->is_lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);

        c->lingered += evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->lingered > LINGER_MAX_BYTES)
            conn_free_soon(c);
        return;
    }
    conn_process(c);
}

/* The complete lines of buf (n bytes, read from the socket while nothing
 * older waited in the input), handled in place as far as the connection
 * may go; returns the bytes used. */
static size_t
process_read(struct conn *c, const char *buf, size_t n)
{
    const char *eol;
    size_t at = 0;
    bool acks;

    c->in_process = true;
    acks = ack_begin(c);
    while (!c->is_closing && !aq_conn_is_stalled(c) &&
           (eol = memchr(buf + at, '\n', n - at)) != NULL) {
        size_t len = (size_t)(eol - (buf + at));

        if (len > c->s->max_request_bytes) {
            line_too_long(c);
            break;
        }
        process_line(c, buf + at, len);
        at += len + 1;
    }
    if (acks)
        ack_end(c);
    c->in_process = false;
    return at;
}

/* One read of a plain socket into the server's read buffer: what it cannot
 * handle now goes to the input evbuffer, for conn_process. libevent's own
 * read would ask the socket's size (FIONREAD) and read at most 4 KiB per
 * wake-up into a new chain; this costs one recv per wake-up and copies
 * only a partial last line or what a stalled connection cannot take yet.
 * EOF, errors and the idle timeout reach conn_event_cb as the
 * bufferevent's would, reading stopped. */
static void
sock_read(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t want = READ_BYTES, have = evbuffer_get_length(in), at = 0;
    ssize_t n;

    if (c->read_limit > 0) {
        if (have >= c->read_limit) {
            conn_stop_reading(c);
            return;
        }
        if (c->read_limit - have < want)
            want = c->read_limit - have;
    }
    n = recv(bufferevent_getfd(c->bev), c->s->rbuf, want, 0);
    if (n <= 0) {
        int e = errno;

        if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
            return;
        conn_stop_reading(c);
        errno = e; /* for conn_event_cb's message */
        conn_event_cb(
            c->bev,
            BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), c);
        return;
    }
    if (c->is_lingering) {
        c->lingered += (size_t)n;
        if (c->lingered > LINGER_MAX_BYTES)
            conn_free_soon(c);
        return;
    }
    if (have == 0 && !c->in_process && !c->is_closing)
        at = process_read(c, c->s->rbuf, (size_t)n);
    if (at < (size_t)n && !c->is_closing) {
        /* A socket bufferevent keeps its input's end frozen to all but
         * its own read callback; it is ours for this add. */
        evbuffer_unfreeze(in, 0);
        evbuffer_add(in, c->s->rbuf + at, (size_t)n - at);
        evbuffer_freeze(in, 0);
    }
    conn_process(c);
}

static void
sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->is_freeing)
        return;
    if (what & EV_TIMEOUT) {
        conn_stop_reading(c);
        conn_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, c);
        return;
    }
    sock_read(c);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_server *s = arg;
    struct conn *c;

    while ((c = LIST_FIRST(&s->resuming)) != NULL) {
        LIST_REMOVE(c, resume_link);
        c->resume_pending = false;
        if (!c->is_freeing)
            conn_read_cb(c->bev, c);
    }
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (c->is_lingering) {
        conn_free_soon(c); /* the client closed too, or went away */
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->inflight > 0 || !STAILQ_EMPTY(&c->outq)) {
            /* Waiting for a reply (wait, join) is not idleness. */
            aq_conn_update_reading(c);
            return;
        }
        aq_log_conn(AQ_LOG_INFO, c->num, c->peer,
                    "conn %llu (%s): idle for %g s, closing",
                    (unsigned long long)c->num, c->peer, c->s->idle_timeout);
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* The client closed its side: finish what it sent, answer it,
         * then close. */
        c->is_eof = true;
        conn_process(c);
        if (c->data_eof != NULL && c->data != NULL)
            c->data_eof(c->data);
        if (!c->is_closing)
            conn_half_close(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        aq_log_conn(AQ_LOG_DEBUG, c->num, c->peer, "conn %llu (%s): %s",
                    (unsigned long long)c->num, c->peer,
                    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        c->is_closing = true;
        aq_calls_abandon(c, NULL);
        conn_free_soon(c);
    }
}

static void
conn_set_timeouts(struct conn *c)
{
    struct timeval tv;

    if (c->rev != NULL) {
        c->is_timed = true;
        if (c->is_reading) {
            /* A persistent event keeps its last timeout unless assigned
             * anew. */
            event_del(c->rev);
            event_assign(c->rev, c->s->base, bufferevent_getfd(c->bev),
                         EV_READ | EV_PERSIST, sock_read_cb, c);
            event_add(c->rev, idle_tv(c, &tv));
        }
        return;
    }
    if (c->s->idle_timeout > 0) {
        tv = aq_clock_tv((int64_t)(c->s->idle_timeout * 1e6));
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    } else
        bufferevent_set_timeouts(c->bev, NULL, NULL);
}

/* A connection on bev (taken); is_socket: bev is a plain socket's, which
 * the shortcuts around libevent (sock_read, conn_flush, conn_has_input,
 * conn_finish) may read, write and shut down directly. */
static void
conn_new(struct aq_server *s, struct bufferevent *bev, const char *peer,
         bool is_socket)
{
    struct conn *c = xcalloc(1, sizeof *c);

    c->s = s;
    c->num = ++s->next_conn;
    LIST_INIT(&c->calls);
    STAILQ_INIT(&c->outq);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->bev = bev;
    c->is_socket = is_socket;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    if (is_socket) {
        c->rev = event_new(s->base, bufferevent_getfd(bev),
                           EV_READ | EV_PERSIST, sock_read_cb, c);
        evbuffer_add_cb(bufferevent_get_output(c->bev), output_added_cb, c);
        /* see conn_flush and sock_read */
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    } else
        bufferevent_enable(c->bev, EV_WRITE); /* it writes its output */
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    if (s->nconns >= (size_t)s->max_conns) {
        aq_log_conn(
            AQ_LOG_WARN, c->num, c->peer,
            "conn %llu (%s): refused, producers.max (%d) connections open",
            (unsigned long long)c->num, c->peer, s->max_conns);
        aq_reply_error_now(
            c, NULL, (struct aq_jspan){0}, AQ_ERR_TOO_MANY_CONNECTIONS,
            "too many connections: producers.max is %d", s->max_conns);
        c->must_linger = true;
        conn_close(c);
        return;
    }
    c->slot = SLOT_OPEN;
    s->nconns++;
    conn_set_timeouts(c);
    aq_log_conn(AQ_LOG_DEBUG, c->num, c->peer, "conn %llu (%s): accepted",
                (unsigned long long)c->num, c->peer);
    conn_start_reading(c);
}

void
aq_server_accept(struct aq_server *s, int fd, const char *peer)
{
    evutil_make_socket_nonblocking(fd); /* listeners' are already */
    conn_new(s, bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE),
             peer, true);
}

void
aq_server_accept_bev(struct aq_server *s, struct bufferevent *bev,
                     const char *peer)
{
    conn_new(s, bev, peer, false);
}

/* ---- exchanges ---- */

struct aq_exchange {
    struct conn c;         /* first: the calls' connection */
    struct event *done_ev; /* owned: runs done from the loop */
    aq_exchange_done_fn *done;
    void *arg;
    LIST_ENTRY(aq_exchange) link; /* s->exchanges */
};

static void
exchange_free(struct aq_exchange *x)
{
    struct conn *c = &x->c;

    c->is_closing = true; /* calls abandoned now reply nothing */
    aq_conn_detach(c);
    assert(STAILQ_EMPTY(&c->outq)); /* an exchange's output takes all */
    LIST_REMOVE(x, link);
    if (x->done_ev != NULL)
        event_free(x->done_ev);
    free(x);
}

static void
exchange_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_exchange *x = arg;

    if (x->c.inflight > 0)
        return; /* a call was made since (none is, today) */
    x->done(x->arg, x->c.out, x->c.saw_unauthorized);
    exchange_free(x);
}

void
aq_exchange_ended(struct conn *c)
{
    struct aq_exchange *x = (struct aq_exchange *)c;

    event_active(x->done_ev, EV_TIMEOUT, 0);
}

struct aq_exchange *
aq_server_exchange(struct aq_server *s, const char *text, size_t n,
                   const struct aq_exchange_opts *opts, struct evbuffer *out,
                   aq_exchange_done_fn *done, void *arg, bool *unauthorized)
{
    struct aq_exchange *x = xcalloc(1, sizeof *x);
    struct conn *c = &x->c;

    c->s = s;
    c->num = ++s->next_conn;
    LIST_INIT(&c->calls);
    STAILQ_INIT(&c->outq);
    snprintf(c->peer, sizeof c->peer, "%s", opts->peer);
    c->is_exchange = true;
    c->is_authed = opts->authenticated;
    c->is_read_only = opts->read_only;
    c->default_timeout = opts->default_timeout;
    c->out = out;
    x->done = done;
    x->arg = arg;
    LIST_INSERT_HEAD(&s->exchanges, x, link);
    /* A UTF-8 byte-order mark may start it, as the first line may. */
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        n -= 3;
    }
    c->in_process = true;
    handle_line(c, text, n);
    c->in_process = false;
    if (c->inflight == 0) {
        *unauthorized = c->saw_unauthorized;
        exchange_free(x);
        return NULL;
    }
    x->done_ev = event_new(s->base, -1, 0, exchange_done_cb, x);
    return x;
}

void
aq_exchange_cancel(struct aq_exchange *x)
{
    aq_log_conn(AQ_LOG_DEBUG, x->c.num, x->c.peer,
                "conn %llu (%s): gone with %zu calls unanswered",
                (unsigned long long)x->c.num, x->c.peer, x->c.inflight);
    exchange_free(x);
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
aq_server_new(struct event_base *base, const struct aq_config *cfg,
              const struct aq_server_ops *ops, void *arg)
{
    struct aq_server *s = xcalloc(1, sizeof *s);

    s->base = base;
    s->ops = *ops;
    s->ops_arg = arg;
    apply_limits(s, cfg);
    s->reap_ev = event_new(base, -1, 0, reap_cb, s);
    TAILQ_INIT(&s->conns);
    TAILQ_INIT(&s->half_closed);
    SLIST_INIT(&s->dying);
    LIST_INIT(&s->flushing);
    LIST_INIT(&s->exchanges);
    s->flush_ev = event_new(base, -1, 0, flush_cb, s);
    LIST_INIT(&s->resuming);
    s->resume_ev = event_new(base, -1, 0, resume_cb, s);
    s->rbuf = xmalloc(READ_BYTES);
    s->abuf = xmalloc(ACK_BYTES);
    return s;
}

void
aq_server_reconfigure(struct aq_server *s, const struct aq_config *cfg)
{
    struct conn *c;

    apply_limits(s, cfg);
    TAILQ_FOREACH (c, &s->conns, link) {
        if (!c->is_closing)
            conn_set_timeouts(c);
    }
}

size_t
aq_server_connections(const struct aq_server *s)
{
    return s->nconns;
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
    struct aq_exchange *x;
    struct conn *c;

    aq_error_set(&err, AQ_ERR_SHUTTING_DOWN, "shutting down");
    s->closed = done;
    s->closed_arg = arg;
    s->close_ev = evtimer_new(s->base, close_cb, s);
    evtimer_add(s->close_ev, &tv);
    TAILQ_FOREACH (c, &s->conns, link) {
        aq_calls_abandon(c, &err);
        conn_close(c);
    }
    /* Their done runs from the loop, with the -32010 replies. */
    LIST_FOREACH (x, &s->exchanges, link)
        aq_calls_abandon(&x->c, &err);
    if (TAILQ_EMPTY(&s->conns))
        event_active(s->close_ev, EV_TIMEOUT, 0);
}

void
aq_server_free(struct aq_server *s)
{
    if (s == NULL)
        return;
    if (s->close_ev != NULL) {
        event_free(s->close_ev); /* no done callback from here on */
        s->close_ev = NULL;
    }
    conns_free_all(s);
    while (!LIST_EMPTY(&s->exchanges))
        aq_exchange_cancel(LIST_FIRST(&s->exchanges));
    event_free(s->reap_ev);
    event_free(s->flush_ev);
    event_free(s->resume_ev);
    free(s->rbuf);
    free(s->abuf);
    free(s);
}
