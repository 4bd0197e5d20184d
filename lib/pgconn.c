/* SPDX-License-Identifier: MIT */
/*
 * lib/pgconn.c: a libpq session on the libevent loop (see pgconn.h). The
 * state is one of: waiting (no PGconn; the timer is the backoff),
 * connecting (PQconnectPoll on each event; the timer is the per-host
 * connect timeout) and ready (pipeline mode, non-blocking). In ready, the
 * pending FIFO holds one entry per request sent (prepare, statement,
 * sync) in the order the server answers them; io waits for EV_READ always
 * and EV_WRITE while PQflush has output left. Nothing calls back from
 * inside a public call: sends are flushed, and send failures handled, from
 * the kick event; callbacks run under busy, and a free during one is
 * deferred to the end of the outermost dispatch.
 */
#include "pgconn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "error.h"
#include "log.h"
#include "xmalloc.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_S 10 /* per host, when conninfo has none */

enum state {
    STATE_WAITING,
    STATE_CONNECTING,
    STATE_READY,
};

enum entry_kind {
    ENTRY_PREPARE, /* our own PQsendPrepare: no callback */
    ENTRY_STMT,
    ENTRY_SYNC, /* a commit */
};

struct entry {
    TAILQ_ENTRY(entry) link;
    enum entry_kind kind;
    aq_pgconn_cb *cb; /* NULL: nobody waits */
    void *arg;
    char *name;    /* ENTRY_PREPARE: the statement's name; owned */
    PGresult *res; /* the result so far (owned), until its NULL comes */
};
TAILQ_HEAD(entry_list, entry);

struct prepared {
    LIST_ENTRY(prepared) link;
    char *name; /* owned */
};

struct aq_pgconn {
    struct event_base *base;
    char *conninfo; /* owned */
    struct aq_pgconn_hooks hooks;
    void *arg;
    int connect_timeout_s;

    enum state state;
    PGconn *conn;     /* NULL while waiting */
    struct event *io; /* on io_fd for io_what; NULL when none */
    int io_fd;
    short io_what;
    struct event *timer; /* backoff (waiting) or connect timeout */
    struct event *kick;  /* flushes what was queued in this loop pass */
    int backoff_ms;
    char *server;   /* "host:port" while ready; owned */
    char *last_why; /* why the last attempt failed or the session ended */

    struct entry_list pending;      /* sent, awaiting results, in order */
    LIST_HEAD(, prepared) prepared; /* names prepared in this session */
    char *txn_err;       /* the first failure of the current transaction */
    bool need_flush_req; /* ... and no flush request followed it */
    bool want_write;     /* PQflush left output */
    char *broken;        /* a send failed: why (the kick ends the session) */

    int busy;   /* callbacks running up the stack */
    bool freed; /* aq_pgconn_free was called while busy */
};

static void session_lost(struct aq_pgconn *c, const char *why);
static void attempt_start(struct aq_pgconn *c);

/* libpq's messages span lines ("...failed: Connection refused\n\tIs the
 * server running ..."): one line, without the final newline. Owned by
 * the caller. */
static char *
one_line(const char *msg)
{
    char *s = xstrdup(msg != NULL && msg[0] != '\0' ? msg : "unknown error");
    char *r = s, *w = s;
    bool space = false;

    for (; *r != '\0'; r++) {
        if (*r == '\n' || *r == '\t' || *r == '\r' || *r == ' ') {
            space = true;
            continue;
        }
        if (space && w != s)
            *w++ = ' ';
        space = false;
        *w++ = *r;
    }
    *w = '\0';
    return s;
}

static void
busy_enter(struct aq_pgconn *c)
{
    c->busy++;
}

static void destroy(struct aq_pgconn *c);

/* Returns whether c is gone (freed by a callback): then stop touching it. */
static bool
busy_leave(struct aq_pgconn *c)
{
    if (--c->busy > 0)
        return c->freed;
    if (c->freed) {
        destroy(c);
        return true;
    }
    return false;
}

static void
entry_free(struct entry *e)
{
    if (e == NULL)
        return;
    PQclear(e->res);
    free(e->name);
    free(e);
}

static void
prepared_clear(struct aq_pgconn *c)
{
    struct prepared *p;

    while ((p = LIST_FIRST(&c->prepared)) != NULL) {
        LIST_REMOVE(p, link);
        free(p->name);
        free(p);
    }
}

static struct prepared *
prepared_find(struct aq_pgconn *c, const char *name)
{
    struct prepared *p;

    LIST_FOREACH (p, &c->prepared, link) {
        if (strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for what on fd (0: nothing), re-creating the event when either
 * changed: the socket changes between hosts and attempts. */
static void
io_set(struct aq_pgconn *c, int fd, short what)
{
    if (c->io != NULL && c->io_fd == fd && c->io_what == what)
        return;
    if (c->io != NULL) {
        event_free(c->io);
        c->io = NULL;
    }
    c->io_fd = fd;
    c->io_what = what;
    if (fd < 0 || what == 0)
        return;
    c->io = event_new(c->base, fd, what | EV_PERSIST, io_cb, c);
    event_add(c->io, NULL);
}

static void
timer_start(struct aq_pgconn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(c->timer, &tv);
}

/* Ends the PGconn (no callback): back to waiting, nothing pending. */
static void
conn_close(struct aq_pgconn *c)
{
    io_set(c, -1, 0);
    evtimer_del(c->timer);
    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->state = STATE_WAITING;
    free(c->server);
    c->server = NULL;
    free(c->txn_err);
    c->txn_err = NULL;
    free(c->broken);
    c->broken = NULL;
    c->need_flush_req = false;
    c->want_write = false;
    prepared_clear(c);
}

static void
notice_cb(void *arg, const char *message)
{
    char *line = one_line(message);

    (void)arg;
    aq_log(AQ_LOG_DEBUG, "store: postgres: %s", line);
    free(line);
}

static void
session_ready(struct aq_pgconn *c)
{
    const char *host = PQhost(c->conn), *port = PQport(c->conn);

    if (PQsetnonblocking(c->conn, 1) != 0 ||
        PQenterPipelineMode(c->conn) != 1) {
        char *why = one_line(PQerrorMessage(c->conn));

        session_lost(c, why);
        free(why);
        return;
    }
    PQsetNoticeProcessor(c->conn, notice_cb, NULL);
    evtimer_del(c->timer);
    c->state = STATE_READY;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->server = xasprintf("%s:%s", host != NULL ? host : "?",
                          port != NULL ? port : "?");
    free(c->last_why);
    c->last_why = NULL;
    io_set(c, PQsocket(c->conn), EV_READ);
    aq_log(AQ_LOG_INFO, "store: postgres: connected to %s", c->server);
    if (c->hooks.ready != NULL) {
        busy_enter(c);
        c->hooks.ready(c, c->arg);
        busy_leave(c);
    }
}

/* A connect attempt failed or the session ended: every pending callback
 * gets "connection lost: why", then the lost hook; the next attempt
 * follows after the backoff. */
static void
session_lost(struct aq_pgconn *c, const char *why)
{
    struct entry_list failed = TAILQ_HEAD_INITIALIZER(failed);
    struct entry *e;
    char *msg;
    bool was_ready = c->state == STATE_READY;

    if (was_ready)
        aq_log(AQ_LOG_WARN, "store: postgres: connection to %s lost: %s",
               c->server, why);
    else
        aq_log(AQ_LOG_WARN, "store: postgres: cannot connect: %s", why);
    TAILQ_CONCAT(&failed, &c->pending, link);
    conn_close(c);
    free(c->last_why);
    c->last_why = xstrdup(why);
    timer_start(c, c->backoff_ms);
    c->backoff_ms =
        c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    msg = xasprintf("connection lost: %s", why);
    busy_enter(c);
    while ((e = TAILQ_FIRST(&failed)) != NULL) {
        TAILQ_REMOVE(&failed, e, link);
        if (!c->freed && e->cb != NULL)
            e->cb(e->arg, NULL, msg);
        entry_free(e);
    }
    free(msg);
    if (!c->freed && c->hooks.lost != NULL)
        c->hooks.lost(c, c->last_why, c->arg);
    busy_leave(c);
}

static void
session_lost_conn(struct aq_pgconn *c)
{
    char *why = one_line(PQerrorMessage(c->conn));

    session_lost(c, why);
    free(why);
}

/* Sends what PQflush can; waits for EV_WRITE while some is left. Returns
 * -1 once the session is lost. */
static int
flush_out(struct aq_pgconn *c)
{
    int r = PQflush(c->conn);

    if (r < 0) {
        session_lost_conn(c);
        return -1;
    }
    c->want_write = r == 1;
    io_set(c, PQsocket(c->conn), EV_READ | (c->want_write ? EV_WRITE : 0));
    return 0;
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgconn *c = arg;

    (void)fd;
    (void)what;
    if (c->state != STATE_READY)
        return;
    if (c->broken != NULL) {
        char *why = c->broken;

        c->broken = NULL;
        session_lost(c, why);
        free(why);
        return;
    }
    if (c->need_flush_req) {
        if (PQsendFlushRequest(c->conn) != 1) {
            session_lost_conn(c);
            return;
        }
        c->need_flush_req = false;
    }
    flush_out(c);
}

static void
kick(struct aq_pgconn *c)
{
    event_active(c->kick, EV_TIMEOUT, 1);
}

/* The error a failed result reports: the server's primary message. */
static char *
result_error(const PGresult *r)
{
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

    return one_line(m != NULL ? m : PQresultErrorMessage(r));
}

/* The head entry is complete: pops it and calls its callback. */
static void
entry_done(struct aq_pgconn *c, struct entry *e)
{
    ExecStatusType st =
        e->res != NULL ? PQresultStatus(e->res) : PGRES_FATAL_ERROR;
    char *err = NULL;

    TAILQ_REMOVE(&c->pending, e, link);
    if (st == PGRES_PIPELINE_ABORTED) {
        err = xstrdup(c->txn_err != NULL ? c->txn_err
                                         : "aborted: an earlier statement "
                                           "of its transaction failed");
    } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (e->res == NULL)
            err = xstrdup("no result");
        else if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR)
            err = result_error(e->res);
        else
            err = xasprintf("unexpected result: %s", PQresStatus(st));
        if (c->txn_err == NULL)
            c->txn_err = xstrdup(err);
    }
    if (e->kind == ENTRY_PREPARE && err != NULL) {
        /* not prepared after all: prepared again at its next use */
        struct prepared *p = prepared_find(c, e->name);

        if (p != NULL) {
            LIST_REMOVE(p, link);
            free(p->name);
            free(p);
        }
    }
    if (e->cb != NULL)
        e->cb(e->arg, err == NULL ? e->res : NULL, err);
    free(err);
    entry_free(e);
}

/* A commit's PGRES_PIPELINE_SYNC: the transaction ended. */
static void
sync_done(struct aq_pgconn *c, struct entry *e)
{
    char *err = c->txn_err;

    c->txn_err = NULL;
    TAILQ_REMOVE(&c->pending, e, link);
    if (e->cb != NULL)
        e->cb(e->arg, NULL, err);
    free(err);
    entry_free(e);
}

/* Hands out every complete result, in order. Runs under busy; stops when
 * c was freed or the session lost. */
static void
dispatch(struct aq_pgconn *c)
{
    struct entry *e;
    PGresult *r;

    while (!c->freed && c->state == STATE_READY &&
           (e = TAILQ_FIRST(&c->pending)) != NULL) {
        if (PQisBusy(c->conn))
            return;
        r = PQgetResult(c->conn);
        if (e->kind == ENTRY_SYNC) {
            if (r == NULL)
                return; /* nothing yet (or the connection broke) */
            if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
                char *why = xasprintf("unexpected result %s for a commit",
                                      PQresStatus(PQresultStatus(r)));

                PQclear(r);
                session_lost(c, why);
                free(why);
                return;
            }
            PQclear(r);
            sync_done(c, e);
            continue;
        }
        if (r != NULL) {
            if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                session_lost(c, "unexpected commit result");
                return;
            }
            /* one result per statement; keep the first, drop others */
            if (e->res == NULL)
                e->res = r;
            else
                PQclear(r);
            continue;
        }
        if (e->res == NULL && PQstatus(c->conn) == CONNECTION_BAD)
            return;
        entry_done(c, e);
    }
}

static void
notifies(struct aq_pgconn *c)
{
    PGnotify *n;

    while (!c->freed && c->state == STATE_READY &&
           (n = PQnotifies(c->conn)) != NULL) {
        if (c->hooks.notify != NULL)
            c->hooks.notify(c, n->relname, n->extra, c->arg);
        PQfreemem(n);
    }
}

static void
ready_io(struct aq_pgconn *c, short what)
{
    if ((what & EV_WRITE) && flush_out(c) < 0)
        return;
    if (!(what & EV_READ))
        return;
    if (PQconsumeInput(c->conn) != 1) {
        session_lost_conn(c);
        return;
    }
    busy_enter(c);
    dispatch(c);
    notifies(c);
    if (!c->freed && c->state == STATE_READY &&
        PQstatus(c->conn) == CONNECTION_BAD)
        session_lost_conn(c);
    if (!c->freed && c->state == STATE_READY && c->want_write)
        flush_out(c);
    busy_leave(c);
}

/* One step of PQconnectPoll, then wait for what it asks. */
static void
connect_poll(struct aq_pgconn *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->conn);
    int fd = PQsocket(c->conn);

    /* The socket may have changed (the next host, or a retry over SSL):
     * even under the same number, the old one was closed and the event
     * is stale. A new event each step; the timeout counts from the last
     * progress. */
    io_set(c, -1, 0);
    switch (st) {
    case PGRES_POLLING_OK:
        session_ready(c);
        return;
    case PGRES_POLLING_FAILED:
        session_lost_conn(c);
        return;
    case PGRES_POLLING_READING:
        timer_start(c, c->connect_timeout_s * 1000);
        io_set(c, fd, EV_READ);
        return;
    default: /* PGRES_POLLING_WRITING */
        timer_start(c, c->connect_timeout_s * 1000);
        io_set(c, fd, EV_WRITE);
        return;
    }
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgconn *c = arg;

    (void)fd;
    if (c->state == STATE_CONNECTING)
        connect_poll(c);
    else if (c->state == STATE_READY)
        ready_io(c, what);
}

static void
attempt_start(struct aq_pgconn *c)
{
    c->conn = PQconnectStart(c->conninfo);
    c->state = STATE_CONNECTING;
    if (c->conn == NULL) {
        session_lost(c, "out of memory");
        return;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD || PQsocket(c->conn) < 0) {
        session_lost_conn(c);
        return;
    }
    /* as if PQconnectPoll had said PGRES_POLLING_WRITING */
    timer_start(c, c->connect_timeout_s * 1000);
    io_set(c, PQsocket(c->conn), EV_WRITE);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgconn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == STATE_WAITING) {
        attempt_start(c);
    } else if (c->state == STATE_CONNECTING) {
        char *host = PQhost(c->conn), *port = PQport(c->conn);
        char *why = xasprintf("connection to %s:%s: timeout expired after "
                              "%d s",
                              host != NULL ? host : "?",
                              port != NULL ? port : "?", c->connect_timeout_s);

        session_lost(c, why);
        free(why);
    }
}

struct aq_pgconn *
aq_pgconn_new(struct event_base *base, const char *conninfo,
              const struct aq_pgconn_hooks *hooks, void *arg,
              struct aq_error *err)
{
    struct aq_pgconn *c;
    PQconninfoOption *opts, *o;
    char *errmsg = NULL;
    int timeout_s = CONNECT_TIMEOUT_S;

    opts = PQconninfoParse(conninfo, &errmsg);
    if (opts == NULL) {
        char *why = one_line(errmsg != NULL ? errmsg : "out of memory");

        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "postgres: conninfo: %s", why);
        free(why);
        PQfreemem(errmsg);
        return NULL;
    }
    for (o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL &&
            o->val[0] != '\0') {
            /* libpq's rule: 0 or none is forever (we keep ours), at
             * least 2 s */
            int t = atoi(o->val);

            if (t > 0)
                timeout_s = t < 2 ? 2 : t;
        }
    }
    PQconninfoFree(opts);

    c = xcalloc(1, sizeof *c);
    c->base = base;
    c->conninfo = xstrdup(conninfo);
    if (hooks != NULL)
        c->hooks = *hooks;
    c->arg = arg;
    c->connect_timeout_s = timeout_s;
    c->state = STATE_WAITING;
    c->io_fd = -1;
    c->backoff_ms = BACKOFF_MIN_MS;
    TAILQ_INIT(&c->pending);
    LIST_INIT(&c->prepared);
    c->timer = evtimer_new(base, timer_cb, c);
    c->kick = event_new(base, -1, 0, kick_cb, c);
    /* the first attempt from the loop: no hook before we return */
    timer_start(c, 0);
    return c;
}

static void
destroy(struct aq_pgconn *c)
{
    struct entry *e;

    while ((e = TAILQ_FIRST(&c->pending)) != NULL) {
        TAILQ_REMOVE(&c->pending, e, link);
        entry_free(e);
    }
    conn_close(c);
    event_free(c->timer);
    event_free(c->kick);
    free(c->last_why);
    free(c->conninfo);
    free(c);
}

void
aq_pgconn_free(struct aq_pgconn *c)
{
    if (c == NULL || c->freed)
        return;
    if (c->busy > 0) {
        c->freed = true; /* destroyed when the outermost callback returns */
        return;
    }
    destroy(c);
}

bool
aq_pgconn_is_ready(const struct aq_pgconn *c)
{
    return c != NULL && !c->freed && c->state == STATE_READY &&
           c->broken == NULL;
}

const char *
aq_pgconn_server(const struct aq_pgconn *c)
{
    return aq_pgconn_is_ready(c) ? c->server : NULL;
}

static int
not_ready(const struct aq_pgconn *c, struct aq_error *err)
{
    if (c->last_why != NULL)
        aq_error_set(err, AQ_ERR_INTERNAL, "postgres: not connected: %s",
                     c->last_why);
    else
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "postgres: not connected: connecting");
    return -1;
}

static struct entry *
entry_push(struct aq_pgconn *c, enum entry_kind kind, aq_pgconn_cb *cb,
           void *arg)
{
    struct entry *e = xcalloc(1, sizeof *e);

    e->kind = kind;
    e->cb = cb;
    e->arg = arg;
    TAILQ_INSERT_TAIL(&c->pending, e, link);
    return e;
}

/* A send failed: the kick ends the session (so that no callback runs
 * from inside the caller's call); the entry waits in pending and fails
 * with the others. */
static void
send_failed(struct aq_pgconn *c)
{
    if (c->broken == NULL)
        c->broken = one_line(PQerrorMessage(c->conn));
}

int
aq_pgconn_query(struct aq_pgconn *c, const char *name, const char *sql,
                int nparams, const char *const *values, aq_pgconn_cb *cb,
                void *arg, struct aq_error *err)
{
    int ok;

    if (!aq_pgconn_is_ready(c))
        return not_ready(c, err);
    if (nparams < 0 || nparams > 65535) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "postgres: query: %d parameters (0 to 65535)", nparams);
        return -1;
    }
    if (name != NULL && prepared_find(c, name) == NULL) {
        struct prepared *p = xcalloc(1, sizeof *p);
        struct entry *e = entry_push(c, ENTRY_PREPARE, NULL, NULL);

        e->name = xstrdup(name);
        p->name = xstrdup(name);
        LIST_INSERT_HEAD(&c->prepared, p, link);
        if (PQsendPrepare(c->conn, name, sql, nparams, NULL) != 1)
            send_failed(c);
    }
    /* libpq copies the parameters into its output buffer */
    if (name != NULL)
        ok = PQsendQueryPrepared(c->conn, name, nparams, values, NULL, NULL, 0);
    else
        ok = PQsendQueryParams(c->conn, sql, nparams, NULL, values, NULL, NULL,
                               0);
    entry_push(c, ENTRY_STMT, cb, arg);
    if (ok != 1)
        send_failed(c);
    c->need_flush_req = true;
    kick(c);
    return 0;
}

int
aq_pgconn_commit(struct aq_pgconn *c, aq_pgconn_cb *cb, void *arg,
                 struct aq_error *err)
{
    if (!aq_pgconn_is_ready(c))
        return not_ready(c, err);
    entry_push(c, ENTRY_SYNC, cb, arg);
    if (PQpipelineSync(c->conn) != 1)
        send_failed(c);
    c->need_flush_req = false; /* the sync makes the server answer */
    kick(c);
    return 0;
}
