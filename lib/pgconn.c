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

/* A name prepared in this session, or being prepared: the Parse sent,
 * its result not back yet. */
struct prepared {
    LIST_ENTRY(prepared) link;
    char *name;   /* owned */
    bool is_ok;   /* the server confirmed it */
    uint64_t txn; /* the transaction (c->txn) its Parse went in */
};

struct aq_pgconn {
    struct event_base *base;
    /* The conninfo's options but the server lists (NULL-terminated
     * arrays, strings owned), and the lists split at their commas: an
     * attempt that times out on one host goes on with the next ones. */
    char **keywords;
    char **values;
    char **hosts, **hostaddrs, **ports; /* owned */
    int nhosts, nhostaddrs, nports;
    int nservers; /* hosts one attempt goes through (1: no skipping) */
    int first;    /* this attempt's first host */
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
    char *txn_err;       /* the first failure in the transaction being read */
    uint64_t txn;        /* commits queued so far: the current transaction */
    bool need_flush_req; /* a statement was queued, no sync or flush yet */
    bool want_write;     /* PQflush left output */
    char *broken;        /* a send failed: why (the kick ends the session) */

    int busy;   /* callbacks running up the stack */
    bool freed; /* aq_pgconn_free was called while busy */
};

static void session_lost(struct aq_pgconn *c, const char *why);

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

/* s split at its commas ("a,,b": "a", "", "b"), NULL-terminated, and
 * *n the count; owned by the caller (strv_free). */
static char **
list_split(const char *s, int *n)
{
    char **v;
    const char *p;
    int i = 1;

    for (p = s; *p != '\0'; p++)
        i += *p == ',';
    v = xcalloc(i + 1, sizeof *v);
    *n = i;
    for (i = 0;; i++) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);

        v[i] = xcalloc(1, len + 1);
        memcpy(v[i], s, len);
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return v;
}

static void
strv_free(char **v)
{
    char **p;

    if (v == NULL)
        return;
    for (p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

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

    /* from now, not from the loop pass's start: libpq may have taken a
     * while (a connect attempt) */
    event_base_update_cache_time(c->base);
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
    if (e->kind == ENTRY_PREPARE) {
        /* The only one in flight for its name: a new one is sent only
         * once this one's failure removed the name. */
        struct prepared *p = prepared_find(c, e->name);

        if (p != NULL && err == NULL) {
            p->is_ok = true;
        } else if (p != NULL) {
            /* not prepared (it failed, or its transaction had failed
             * before it): prepared again at its next use */
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
        /* Broken: the caller ends the session (PQgetResult would wait on
         * the dead socket for results that cannot come). */
        if (PQstatus(c->conn) == CONNECTION_BAD || PQisBusy(c->conn))
            return;
        r = PQgetResult(c->conn);
        if (e->kind == ENTRY_SYNC) {
            if (r == NULL)
                return; /* cannot be: libpq has the sync queued */
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

/* list[first..n) joined with commas; owned by the caller. */
static char *
list_join(char **list, int n, int first)
{
    size_t len = 1;
    char *s;
    int i;

    for (i = first; i < n; i++)
        len += strlen(list[i]) + 1;
    s = xcalloc(1, len);
    for (i = first; i < n; i++) {
        if (i > first)
            strcat(s, ",");
        strcat(s, list[i]);
    }
    return s;
}

/* A new PGconn for hosts first.. of the conninfo. */
static PGconn *
conn_start(struct aq_pgconn *c, int first)
{
    const char **kw, **val;
    char *lists[3] = {NULL, NULL, NULL};
    size_t n = 0, i;
    PGconn *conn;

    while (c->keywords[n] != NULL)
        n++;
    kw = xcalloc(n + 4, sizeof *kw);
    val = xcalloc(n + 4, sizeof *val);
    for (i = 0; i < n; i++) {
        kw[i] = c->keywords[i];
        val[i] = c->values[i];
    }
    if (c->nhosts > 0) {
        kw[n] = "host";
        val[n++] = lists[0] = list_join(c->hosts, c->nhosts, first);
    }
    if (c->nhostaddrs > 0) {
        kw[n] = "hostaddr";
        val[n++] = lists[1] = list_join(c->hostaddrs, c->nhostaddrs, first);
    }
    if (c->nports > 0) {
        kw[n] = "port";
        val[n++] = lists[2] =
            list_join(c->ports, c->nports, c->nports > 1 ? first : 0);
    }
    conn = PQconnectStartParams(kw, val, 0);
    for (i = 0; i < 3; i++)
        free(lists[i]);
    free(kw);
    free(val);
    return conn;
}

static void
attempt_start(struct aq_pgconn *c, int first)
{
    c->first = first;
    c->conn = conn_start(c, first);
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

/* Which of the conninfo's hosts conn is at (libpq does not say): the
 * first from c->first whose host (or hostaddr) and port match; -1 when
 * none does. */
static int
current_host(const struct aq_pgconn *c)
{
    const char *host = PQhost(c->conn), *port = PQport(c->conn);
    int i;

    for (i = c->first; i < c->nservers; i++) {
        const char *h = c->nhosts > 0 ? c->hosts[i] : "";
        const char *p = c->nports == 0   ? ""
                        : c->nports == 1 ? c->ports[0]
                                         : c->ports[i];

        if (h[0] == '\0' && c->nhostaddrs > 0)
            h = c->hostaddrs[i];
        if (host != NULL && strcmp(h, host) == 0 &&
            (p[0] == '\0' || (port != NULL && strcmp(p, port) == 0)))
            return i;
    }
    return -1;
}

/* No progress for connect_timeout: libpq (with PQconnectPoll) leaves
 * that to us. The next host if there is one, as libpq would on a refusal
 * (a host that is gone does not refuse: it is silent), else the attempt
 * failed. */
static void
connect_timeout(struct aq_pgconn *c)
{
    const char *host = PQhost(c->conn), *port = PQport(c->conn);
    int at = current_host(c);
    char *why = xasprintf("connection to server at %s, port %s: timeout "
                          "expired after %d s",
                          host != NULL ? host : "?", port != NULL ? port : "?",
                          c->connect_timeout_s);

    if (at >= 0 && at + 1 < c->nservers) {
        aq_log(AQ_LOG_WARN, "store: postgres: %s: trying the next host", why);
        free(why);
        io_set(c, -1, 0);
        PQfinish(c->conn);
        c->conn = NULL;
        attempt_start(c, at + 1);
        return;
    }
    session_lost(c, why);
    free(why);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgconn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == STATE_WAITING)
        attempt_start(c, 0);
    else if (c->state == STATE_CONNECTING)
        connect_timeout(c);
}

struct aq_pgconn *
aq_pgconn_new(struct event_base *base, const char *conninfo,
              const struct aq_pgconn_hooks *hooks, void *arg,
              struct aq_error *err)
{
    struct aq_pgconn *c;
    PQconninfoOption *opts, *o;
    char *errmsg = NULL;
    int timeout_s = CONNECT_TIMEOUT_S, n = 0;

    opts = PQconninfoParse(conninfo, &errmsg);
    if (opts == NULL) {
        char *why = one_line(errmsg != NULL ? errmsg : "out of memory");

        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "postgres: conninfo: %s", why);
        free(why);
        PQfreemem(errmsg);
        return NULL;
    }
    c = xcalloc(1, sizeof *c);
    for (o = opts; o->keyword != NULL; o++)
        n++;
    c->keywords = xcalloc(n + 1, sizeof *c->keywords);
    c->values = xcalloc(n + 1, sizeof *c->values);
    n = 0;
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "host") == 0) {
            c->hosts = list_split(o->val, &c->nhosts);
            continue;
        }
        if (strcmp(o->keyword, "hostaddr") == 0) {
            c->hostaddrs = list_split(o->val, &c->nhostaddrs);
            continue;
        }
        if (strcmp(o->keyword, "port") == 0) {
            c->ports = list_split(o->val, &c->nports);
            continue;
        }
        if (strcmp(o->keyword, "connect_timeout") == 0) {
            /* libpq's rule: 0 is forever (we keep ours), at least 2 s */
            int t = atoi(o->val);

            if (t > 0)
                timeout_s = t < 2 ? 2 : t;
        }
        c->keywords[n] = xstrdup(o->keyword);
        c->values[n++] = xstrdup(o->val);
    }
    PQconninfoFree(opts);
    /* libpq's rules: host and hostaddr lists of one length, one port or
     * one per host. Lists libpq will refuse are passed on whole, and its
     * error is what the attempt reports. */
    c->nservers = c->nhosts > c->nhostaddrs ? c->nhosts : c->nhostaddrs;
    if ((c->nhosts > 0 && c->nhostaddrs > 0 && c->nhosts != c->nhostaddrs) ||
        (c->nports > 1 && c->nports != c->nservers))
        c->nservers = 1;

    c->base = base;
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
    strv_free(c->keywords);
    strv_free(c->values);
    strv_free(c->hosts);
    strv_free(c->hostaddrs);
    strv_free(c->ports);
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
    struct prepared *p = NULL;
    int ok;

    if (!aq_pgconn_is_ready(c))
        return not_ready(c, err);
    if (nparams < 0 || nparams > 65535) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "postgres: query: %d parameters (0 to 65535)", nparams);
        return -1;
    }
    if (name != NULL)
        p = prepared_find(c, name);
    if (name != NULL && p == NULL) {
        struct entry *e = entry_push(c, ENTRY_PREPARE, NULL, NULL);

        p = xcalloc(1, sizeof *p);
        e->name = xstrdup(name);
        p->name = xstrdup(name);
        p->txn = c->txn;
        LIST_INSERT_HEAD(&c->prepared, p, link);
        if (PQsendPrepare(c->conn, name, sql, nparams, NULL) != 1)
            send_failed(c);
    }
    /* A Parse whose result is not back may not run (its transaction
     * fails before it): in its own transaction that fails this statement
     * anyway, in a later one the statement goes unprepared, once. libpq
     * copies the parameters into its output buffer. */
    if (p != NULL && (p->is_ok || p->txn == c->txn))
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
    c->txn++;
    if (PQpipelineSync(c->conn) != 1)
        send_failed(c);
    c->need_flush_req = false; /* the sync makes the server answer */
    kick(c);
    return 0;
}
