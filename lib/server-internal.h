/* SPDX-License-Identifier: MIT */
/*
 * lib/server-internal.h: what lib/server.c (connections: reading, framing,
 * writing, closing) and lib/call.c (the calls in flight on them, their
 * replies and batches) share. Nothing else includes it.
 */
#ifndef AQ_SERVER_INTERNAL_H
#define AQ_SERVER_INTERNAL_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/bufferevent.h>
#include <jansson.h>

#include "call.h"
#include "jscan.h"
#include "server.h"

struct aq_error;

/* What a connection's output may hold before the server stops writing
 * messages into it (and stops reading requests) until the client reads. */
#define OUTPUT_HIGH_BYTES (4u << 20)
#define ID_INLINE 32 /* ids up to this long live in the call */

/* The replies of one batch request, sent as one array once all are in. */
struct batch {
    json_t *replies; /* owned; one slot per request that gets a reply */
    size_t pending;  /* requests not yet answered, + 1 while filling */
};

/* A message for the client, written as the output drains. */
struct outmsg {
    STAILQ_ENTRY(outmsg) link;
    struct aq_jwrite *w; /* owned */
};

struct conn;

struct aq_call {
    struct conn *conn;
    json_t *params; /* owned: what the method reads from (set_params) */
    char *id;       /* the raw id text: id_buf or owned; NULL for a
                       notification */
    size_t id_len;
    char id_buf[ID_INLINE];
    _Alignas(max_align_t) unsigned char scratch[AQ_CALL_SCRATCH];
    struct batch *batch; /* shared; NULL outside a batch */
    size_t slot;         /* index in batch->replies */
    void (*abandon)(void *arg);
    void *abandon_arg;
    LIST_ENTRY(aq_call) link; /* the connection's calls in flight */
};

/* Which count of the server a connection is in. */
enum slot { SLOT_NONE, SLOT_OPEN, SLOT_HALF_CLOSED };

struct conn {
    struct aq_server *s;
    struct bufferevent *bev; /* owned, closes the socket */
    struct event *rev;       /* owned: a plain socket's reading (sock_read) */
    bool is_reading;         /* rev is added */
    bool resume_pending;     /* in s->resuming */
    LIST_ENTRY(conn) resume_link;
    bool is_timed; /* rev's reading has the idle timeout */
    uint64_t num;
    char peer[96];
    size_t inflight;            /* calls not yet ended */
    LIST_HEAD(, aq_call) calls; /* in flight */
    struct aq_call *blocker;    /* a call no further read may overtake */
    STAILQ_HEAD(, outmsg) outq; /* messages not yet in the output */
    struct event *timer;        /* owned: half-closed deadline, or lingering */
    size_t lines;               /* lines read, for the byte-order mark */
    size_t lingered;            /* bytes discarded while lingering */
    size_t read_limit;          /* the read high-water mark set; 0 = none */
    enum slot slot;
    bool is_socket; /* bev is a plain socket's (see conn_new) */
    bool is_authed, is_eof, is_closing, is_lingering, in_process, is_freeing;
    bool must_linger;       /* closed on an error the client may not expect */
    TAILQ_ENTRY(conn) link; /* s->conns */
    TAILQ_ENTRY(conn) half_link;  /* s->half_closed, with SLOT_HALF_CLOSED */
    SLIST_ENTRY(conn) dying_link; /* in s->dying once is_freeing */
    bool flush_pending;           /* in s->flushing */
    LIST_ENTRY(conn) flush_link;
    /* An exchange (aq_server_exchange) has no bev: its replies go to out
     * (borrowed), and it lives in s->exchanges, not s->conns. */
    bool is_exchange, is_read_only, saw_unauthorized;
    double default_timeout; /* s; < 0: none */
    struct evbuffer *out;
    void *data; /* the methods' (aq_conn_set_data) */
    void (*data_closed)(void *data);
    void (*data_eof)(void *data); /* the client sent EOF */
};

struct aq_server {
    struct event_base *base; /* borrowed */
    struct aq_server_ops ops;
    void *ops_arg;
    TAILQ_HEAD(, conn) conns;
    TAILQ_HEAD(, conn) half_closed; /* oldest first */
    size_t nconns;                  /* SLOT_OPEN */
    size_t nhalf;                   /* SLOT_HALF_CLOSED */
    uint64_t next_conn;
    int max_conns, window;
    size_t max_request_bytes;
    double idle_timeout;
    LIST_HEAD(, aq_exchange) exchanges; /* with calls in flight */
    SLIST_HEAD(, conn) dying;           /* to free from reap_ev */
    struct event *reap_ev;
    char *rbuf; /* owned: READ_BYTES, what one read of a plain socket takes */
    /* The reply lines of the connection whose requests are being handled
     * (ack_conn), added to its output in one piece: when it is done, when
     * full, or before anything else reaches that output. */
    struct conn *ack_conn;
    char *abuf; /* owned: ACK_BYTES */
    size_t alen;
    LIST_HEAD(, conn) flushing; /* with replies to write, from flush_ev */
    LIST_HEAD(, conn) resuming; /* plain sockets to process, from resume_ev */
    struct event *resume_ev;
    struct event *flush_ev;
    /* close_all */
    struct event *close_ev;
    void (*closed)(void *arg);
    void *closed_arg;
};

/* ---- lib/server.c ---- */

/* Where the connection's messages are written (after the put replies
 * gathered for it, if any). */
struct evbuffer *aq_conn_output(struct conn *c);
/* An exchange's last call ended (not under its own processing): done runs
 * from the loop. */
void aq_exchange_ended(struct conn *c);

/* Sends msg (taken) to the client, after the messages before it. */
void aq_conn_send(struct conn *c, json_t *msg);
/* Sends one line of text (with its '\n'), written as it is. */
void aq_conn_send_line(struct conn *c, const char *line, size_t n);
/* The connection reads no requests now (window, blocker, output). */
bool aq_conn_is_stalled(const struct conn *c);
/* Reading on or off after the state changed. */
void aq_conn_update_reading(struct conn *c);
/* A call ended that may let the connection read again, or close: it is
 * processed from the loop, never under the caller's feet. */
void aq_conn_resume(struct conn *c);

/* ---- lib/call.c ---- */

/* A call for a request with raw id (p NULL: a notification), in batch b
 * (NULL: none). */
struct aq_call *aq_call_new(struct conn *c, struct aq_jspan id,
                            struct batch *b);
/* Releases every call in flight through its abandon hook; with err, the
 * client is told (shutting down), else nothing is sent. */
void aq_calls_abandon(struct conn *c, const struct aq_error *err);
/* The connection closes: its calls are abandoned, then the methods'
 * closed hook runs (once). */
void aq_conn_detach(struct conn *c);
/* An error for a request that never became a call; id is its raw id (p
 * NULL: null); in batch b, or alone (b NULL). */
void aq_reply_error_now(struct conn *c, struct batch *b, struct aq_jspan id,
                        int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A batch request's replies: filled by the calls made in it, sent as one
 * array once aq_batch_close was called and every call has ended. */
struct batch *aq_batch_new(void);
void aq_batch_close(struct conn *c, struct batch *b);

#endif
