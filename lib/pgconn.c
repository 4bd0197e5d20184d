/* SPDX-License-Identifier: MIT */
/*
 * lib/pgconn.c: a libpq session on the libevent loop (see pgconn.h). The
 * state is one of: waiting (no PGconn; the timer is the backoff),
 * resolving (the conninfo's host names looked up by evdns, not by
 * libpq, whose getaddrinfo blocks; the timer is their deadline),
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "error.h"
#include "log.h"
#include "xmalloc.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_S 10 /* per host, when conninfo has none */

enum state {
    STATE_WAITING,
    STATE_RESOLVING, /* the timer is the deadline of the lookups */
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

/* A list of servers libpq goes through: host, hostaddr and port split
 * at their commas (NULL-terminated, strings owned; NULL when not given). */
struct servers {
    char **hosts, **hostaddrs, **ports;
    int nhosts, nhostaddrs, nports;
    int n; /* hosts one attempt goes through (1: no skipping) */
};

/* The evdns base of one aq_pgconn, created at its first host name. It
 * lives while the aq_pgconn or one of its lookups needs it: a cancelled
 * lookup is still called back (later, from the loop). */
struct resolver {
    struct evdns_base *dns;
    int refs; /* the aq_pgconn's, and one per lookup not called back */
};

/* One lookup (one address family) of one conf host: evdns_getaddrinfo's
 * argument. Each asks one family, so that evdns is done with the base
 * once it called back (with both families in one, it may still touch
 * it after: the other half's cancel). */
struct lookup {
    LIST_ENTRY(lookup) link;               /* c->lookups, while c has it */
    struct aq_pgconn *c;                   /* NULL once abandoned */
    struct resolver *rs;                   /* a reference */
    struct evdns_getaddrinfo_request *req; /* in flight: may be cancelled */
    int host;                              /* index in c->conf */
    int family;                            /* AF_INET or AF_INET6 */
    bool is_calling;                       /* inside evdns_getaddrinfo */
    bool is_done;                          /* called back */
};

/* What the lookups of one conf host found this attempt. */
struct found {
    char **addrs[2]; /* numeric: IPv4 [0], IPv6 [1]; owned strv */
    int naddrs[2];
    char *why; /* the first failure; owned */
};

struct aq_pgconn {
    struct event_base *base;
    /* The conninfo's options but the server lists (NULL-terminated
     * arrays, strings owned), and the lists split at their commas: an
     * attempt that times out on one host goes on with the next ones. */
    char **keywords;
    char **values;
    struct servers conf; /* as the conninfo (or PGHOST...) gives them */
    struct servers cur;  /* this attempt's: host names resolved */
    bool *is_name;       /* per conf host: resolved by us (NULL: none is) */
    int first;           /* this attempt's first host (in cur) */
    struct aq_pgconn_hooks hooks;
    void *arg;
    int connect_timeout_s;

    enum state state;
    PGconn *conn;                /* NULL while waiting or resolving */
    struct resolver *rs;         /* created at the first name */
    LIST_HEAD(, lookup) lookups; /* in flight */
    struct found *found;         /* per conf host, while resolving */
    bool is_issuing;             /* starting this attempt's lookups */
    unsigned nlookups;           /* answered so far (for tests) */
    struct event *io;            /* on io_fd for io_what; NULL when none */
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

static void resolve_abandon(struct aq_pgconn *c);

/* Ends the PGconn or the lookups (no callback): back to waiting, nothing
 * pending. */
static void
conn_close(struct aq_pgconn *c)
{
    io_set(c, -1, 0);
    evtimer_del(c->timer);
    resolve_abandon(c);
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
    const char *addr = PQhostaddr(c->conn);

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
    if (addr != NULL && addr[0] != '\0' && host != NULL &&
        strcmp(addr, host) != 0)
        aq_log(AQ_LOG_INFO, "store: postgres: connected to %s (%s)", c->server,
               addr);
    else
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

/* ---- host names, resolved by evdns ---- */

static char *test_nameserver; /* aq_pgconn_test_nameserver's; owned */

static char **
strv_dup(char **v, int n)
{
    char **d;
    int i;

    if (v == NULL)
        return NULL;
    d = xcalloc(n + 1, sizeof *d);
    for (i = 0; i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

/* Appends a copy of s to the NULL-terminated *v of *n strings. */
static void
strv_push(char ***v, int *n, const char *s)
{
    *v = xreallocarray(*v, *n + 2, sizeof **v);
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

static void
servers_free(struct servers *s)
{
    strv_free(s->hosts);
    strv_free(s->hostaddrs);
    strv_free(s->ports);
    memset(s, 0, sizeof *s);
}

static void
servers_copy(struct servers *d, const struct servers *s)
{
    *d = *s;
    d->hosts = strv_dup(s->hosts, s->nhosts);
    d->hostaddrs = strv_dup(s->hostaddrs, s->nhostaddrs);
    d->ports = strv_dup(s->ports, s->nports);
}

/* Whether libpq would look h up by name (getaddrinfo, blocking): not
 * empty, not a socket directory ('/' or '@', as libpq decides), not an
 * address literal (IPv4 in any form inet_aton takes; anything with a ':'
 * is IPv6, with a zone or not). */
static bool
host_is_name(const char *h)
{
    struct in_addr a;

    return h[0] != '\0' && h[0] != '/' && h[0] != '@' &&
           strchr(h, ':') == NULL && inet_aton(h, &a) == 0;
}

/* Whether name is in the reserved top-level domain "invalid", which
 * resolvers answer as not existing without asking (RFC 6761 6.4). */
static bool
name_is_invalid(const char *name)
{
    size_t len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
        len--;
    return (len == 7 && strncasecmp(name, "invalid", 7) == 0) ||
           (len > 8 && strncasecmp(name + len - 8, ".invalid", 8) == 0);
}

/* c's resolver, created at its first use; NULL when evdns cannot make
 * one. */
static struct resolver *
resolver_get(struct aq_pgconn *c)
{
    struct evdns_base *dns;

    if (c->rs != NULL)
        return c->rs;
    if (test_nameserver != NULL) {
        dns = evdns_base_new(c->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (dns != NULL &&
            evdns_base_nameserver_ip_add(dns, test_nameserver) != 0) {
            evdns_base_free(dns, 0);
            dns = NULL;
        }
    } else {
        dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                          EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (dns == NULL) {
            /* No usable resolv.conf: /etc/hosts still answers. */
            aq_log(AQ_LOG_WARN, "store: postgres: no DNS servers configured "
                                "(/etc/resolv.conf); only /etc/hosts "
                                "resolves");
            dns = evdns_base_new(c->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
            if (dns != NULL)
                evdns_base_load_hosts(dns, NULL);
        }
    }
    if (dns == NULL)
        return NULL;
    c->rs = xcalloc(1, sizeof *c->rs);
    c->rs->dns = dns;
    c->rs->refs = 1;
    return c->rs;
}

/* Drops a reference; the last frees the evdns base. Each lookup asks
 * one family, so once its callback ran evdns no longer needs the base
 * for it. */
static void
resolver_unref(struct resolver *rs)
{
    if (rs == NULL || --rs->refs > 0)
        return;
    evdns_base_free(rs->dns, 0);
    free(rs);
}

static void
lookup_free(struct lookup *lk)
{
    resolver_unref(lk->rs);
    free(lk);
}

static void
found_free(struct aq_pgconn *c)
{
    int i;

    if (c->found == NULL)
        return;
    for (i = 0; i < c->conf.nhosts; i++) {
        strv_free(c->found[i].addrs[0]);
        strv_free(c->found[i].addrs[1]);
        free(c->found[i].why);
    }
    free(c->found);
    c->found = NULL;
}

/* Cancels the lookups in flight: their callbacks (later, from the loop)
 * only free them. */
static void
lookups_cancel(struct aq_pgconn *c)
{
    struct lookup *lk;

    while ((lk = LIST_FIRST(&c->lookups)) != NULL) {
        LIST_REMOVE(lk, link);
        lk->c = NULL;
        if (lk->req != NULL)
            evdns_getaddrinfo_cancel(lk->req);
    }
}

static void
resolve_abandon(struct aq_pgconn *c)
{
    lookups_cancel(c);
    found_free(c);
}

/* A host's lookup answered: its addresses, or why not. */
static void
found_add(struct aq_pgconn *c, const struct lookup *lk, int result,
          const struct evutil_addrinfo *res)
{
    struct found *f = &c->found[lk->host];
    int k = lk->family == AF_INET6;
    char buf[INET6_ADDRSTRLEN];

    c->nlookups++;
    if (result != 0) {
        /* "no address" of one family says less than the other's error */
        if (f->why == NULL && result != EVUTIL_EAI_NODATA)
            f->why = xasprintf("cannot resolve %s: %s", c->conf.hosts[lk->host],
                               evutil_gai_strerror(result));
        return;
    }
    for (; res != NULL; res = res->ai_next) {
        const void *a =
            res->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)res->ai_addr)
                      ->sin6_addr;

        if (res->ai_family != lk->family ||
            inet_ntop(res->ai_family, a, buf, sizeof buf) == NULL)
            continue;
        strv_push(&f->addrs[k], &f->naddrs[k], buf);
    }
}

static void attempt_start(struct aq_pgconn *c, int first);

/* Every lookup of this attempt answered (or was given up): the attempt
 * goes through the conninfo's hosts in order, a name as one entry per
 * address (IPv4 first), with hostaddr set, and without the names that
 * did not resolve. None left: the attempt failed, saying why. */
static void
resolve_done(struct aq_pgconn *c)
{
    const struct servers *f = &c->conf;
    struct servers *s = &c->cur;
    char *why = NULL;
    int i, k, j;

    evtimer_del(c->timer);
    servers_free(s);
    for (i = 0; i < f->nhosts; i++) {
        const char *port = f->nports > 1 ? f->ports[i] : NULL;

        if (!c->is_name[i]) {
            strv_push(&s->hosts, &s->nhosts, f->hosts[i]);
            strv_push(&s->hostaddrs, &s->nhostaddrs,
                      f->nhostaddrs > 0 ? f->hostaddrs[i] : "");
            if (port != NULL)
                strv_push(&s->ports, &s->nports, port);
            continue;
        }
        for (k = 0; k < 2; k++) {
            for (j = 0; j < c->found[i].naddrs[k]; j++) {
                strv_push(&s->hosts, &s->nhosts, f->hosts[i]);
                strv_push(&s->hostaddrs, &s->nhostaddrs,
                          c->found[i].addrs[k][j]);
                if (port != NULL)
                    strv_push(&s->ports, &s->nports, port);
            }
        }
    }
    s->n = s->nhosts;
    if (f->nports == 1) {
        s->ports = strv_dup(f->ports, 1);
        s->nports = 1;
    }
    for (i = 0; i < f->nhosts; i++) {
        struct found *fd = &c->found[i];
        char *w, *joined;

        if (!c->is_name[i] || fd->naddrs[0] + fd->naddrs[1] > 0)
            continue;
        w = fd->why != NULL
                ? xstrdup(fd->why)
                : xasprintf("cannot resolve %s: no address", f->hosts[i]);
        if (s->n > 0)
            aq_log(AQ_LOG_WARN, "store: postgres: %s: trying the other hosts",
                   w);
        joined = why != NULL ? xasprintf("%s; %s", why, w) : xstrdup(w);
        free(why);
        free(w);
        why = joined;
    }
    found_free(c);
    if (s->n == 0) {
        session_lost(c, why != NULL ? why : "no host to connect to");
        free(why);
        return;
    }
    free(why);
    attempt_start(c, 0);
}

static void
lookup_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct lookup *lk = arg;
    struct aq_pgconn *c = lk->c;

    lk->req = NULL; /* evdns frees it after this returns */
    lk->is_done = true;
    if (c != NULL) {
        LIST_REMOVE(lk, link);
        found_add(c, lk, result, res);
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (!lk->is_calling)
        lookup_free(lk); /* else resolve_start does */
    if (c != NULL && !c->is_issuing && LIST_EMPTY(&c->lookups))
        resolve_done(c);
}

/* No answer for connect_timeout: the names not resolved yet give up. */
static void
resolve_timeout(struct aq_pgconn *c)
{
    struct lookup *lk;

    LIST_FOREACH (lk, &c->lookups, link) {
        struct found *f = &c->found[lk->host];

        free(f->why);
        f->why = xasprintf("cannot resolve %s: timeout expired after %d s",
                           c->conf.hosts[lk->host], c->connect_timeout_s);
    }
    lookups_cancel(c);
    resolve_done(c);
}

/* Looks the conninfo's host names up (A and AAAA each), under the
 * connect_timeout; the attempt follows once all answered. Answers from
 * /etc/hosts come before evdns_getaddrinfo returns. */
static void
resolve_start(struct aq_pgconn *c)
{
    struct resolver *rs = resolver_get(c);
    struct evutil_addrinfo hints = {0};
    int i, k;

    c->state = STATE_RESOLVING;
    c->found = xcalloc(c->conf.nhosts, sizeof *c->found);
    timer_start(c, c->connect_timeout_s * 1000);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    c->is_issuing = true;
    for (i = 0; i < c->conf.nhosts; i++) {
        const char *name = c->conf.hosts[i];

        if (!c->is_name[i])
            continue;
        if (rs == NULL || name_is_invalid(name)) {
            c->found[i].why =
                xasprintf("cannot resolve %s: %s", name,
                          rs == NULL ? "no resolver"
                                     : evutil_gai_strerror(EVUTIL_EAI_NONAME));
            continue;
        }
        for (k = 0; k < 2; k++) {
            struct lookup *lk = xcalloc(1, sizeof *lk);
            struct evdns_getaddrinfo_request *req;

            hints.ai_family = k == 0 ? AF_INET : AF_INET6;
            lk->c = c;
            lk->rs = rs;
            rs->refs++;
            lk->host = i;
            lk->family = hints.ai_family;
            LIST_INSERT_HEAD(&c->lookups, lk, link);
            lk->is_calling = true;
            req = evdns_getaddrinfo(rs->dns, name, NULL, &hints, lookup_cb, lk);
            lk->is_calling = false;
            if (lk->is_done)
                lookup_free(lk);
            else
                lk->req = req;
        }
    }
    c->is_issuing = false;
    if (LIST_EMPTY(&c->lookups))
        resolve_done(c);
}

void
aq_pgconn_test_nameserver(const char *addr)
{
    free(test_nameserver);
    test_nameserver = addr != NULL ? xstrdup(addr) : NULL;
}

unsigned
aq_pgconn_lookups(const struct aq_pgconn *c)
{
    return c != NULL ? c->nlookups : 0;
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

/* A new PGconn for hosts first.. of this attempt's list. */
static PGconn *
conn_start(struct aq_pgconn *c, int first)
{
    const struct servers *s = &c->cur;
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
    if (s->nhosts > 0) {
        kw[n] = "host";
        val[n++] = lists[0] = list_join(s->hosts, s->nhosts, first);
    }
    if (s->nhostaddrs > 0) {
        kw[n] = "hostaddr";
        val[n++] = lists[1] = list_join(s->hostaddrs, s->nhostaddrs, first);
    }
    if (s->nports > 0) {
        kw[n] = "port";
        val[n++] = lists[2] =
            list_join(s->ports, s->nports, s->nports > 1 ? first : 0);
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

/* Whether a and b are the same address literal (or string). */
static bool
addr_eq(const char *a, const char *b)
{
    unsigned char x[sizeof(struct in6_addr)], y[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
        return memcmp(x, y, sizeof(struct in_addr)) == 0;
    if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
        return memcmp(x, y, sizeof(struct in6_addr)) == 0;
    return strcmp(a, b) == 0;
}

/* Which of this attempt's hosts conn is at (libpq does not say): the
 * first from c->first whose host (or hostaddr) and port match, and its
 * hostaddr too when both are given (a name resolved to several addresses
 * is one entry per address); -1 when none does. */
static int
current_host(const struct aq_pgconn *c)
{
    const struct servers *s = &c->cur;
    const char *host = PQhost(c->conn), *port = PQport(c->conn);
    const char *addr = PQhostaddr(c->conn);
    int i;

    for (i = c->first; i < s->n; i++) {
        const char *h = s->nhosts > 0 ? s->hosts[i] : "";
        const char *a = s->nhostaddrs > 0 ? s->hostaddrs[i] : "";
        const char *p = s->nports == 0   ? ""
                        : s->nports == 1 ? s->ports[0]
                                         : s->ports[i];

        if (h[0] == '\0')
            h = a;
        else if (a[0] != '\0' && addr != NULL && addr[0] != '\0' &&
                 !addr_eq(a, addr))
            continue;
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

    if (at >= 0 && at + 1 < c->cur.n) {
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
    if (c->state == STATE_WAITING && c->is_name != NULL)
        resolve_start(c);
    else if (c->state == STATE_WAITING)
        attempt_start(c, 0);
    else if (c->state == STATE_RESOLVING)
        resolve_timeout(c);
    else if (c->state == STATE_CONNECTING)
        connect_timeout(c);
}

/* Marks the conf hosts that are names with no hostaddr of their own:
 * c->is_name stays NULL when there is none (no resolver at all). */
static void
names_find(struct aq_pgconn *c)
{
    const struct servers *f = &c->conf;
    bool any = false;
    int i;

    c->is_name = xcalloc(f->nhosts > 0 ? f->nhosts : 1, sizeof *c->is_name);
    for (i = 0; i < f->nhosts; i++) {
        c->is_name[i] = host_is_name(f->hosts[i]) &&
                        (f->nhostaddrs == 0 || f->hostaddrs[i][0] == '\0');
        any = any || c->is_name[i];
    }
    if (!any) {
        free(c->is_name);
        c->is_name = NULL;
    }
}

struct aq_pgconn *
aq_pgconn_new(struct event_base *base, const char *conninfo,
              const struct aq_pgconn_hooks *hooks, void *arg,
              struct aq_error *err)
{
    struct aq_pgconn *c;
    PQconninfoOption *opts, *o;
    struct servers *f;
    char *errmsg = NULL;
    int timeout_s = CONNECT_TIMEOUT_S, n = 0;
    bool has_service = false;

    opts = PQconninfoParse(conninfo, &errmsg);
    if (opts == NULL) {
        char *why = one_line(errmsg != NULL ? errmsg : "out of memory");

        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "postgres: conninfo: %s", why);
        free(why);
        PQfreemem(errmsg);
        return NULL;
    }
    c = xcalloc(1, sizeof *c);
    f = &c->conf;
    LIST_INIT(&c->lookups);
    for (o = opts; o->keyword != NULL; o++)
        n++;
    c->keywords = xcalloc(n + 1, sizeof *c->keywords);
    c->values = xcalloc(n + 1, sizeof *c->values);
    n = 0;
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "host") == 0) {
            f->hosts = list_split(o->val, &f->nhosts);
            continue;
        }
        if (strcmp(o->keyword, "hostaddr") == 0) {
            f->hostaddrs = list_split(o->val, &f->nhostaddrs);
            continue;
        }
        if (strcmp(o->keyword, "port") == 0) {
            f->ports = list_split(o->val, &f->nports);
            continue;
        }
        if (strcmp(o->keyword, "service") == 0)
            has_service = true;
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
    /* What libpq would take from the environment, taken here so that a
     * name in PGHOST is resolved too; a service file (PGSERVICE or
     * service=) comes before the environment in libpq: left to it. */
    if (!has_service && getenv("PGSERVICE") == NULL) {
        const char *e;

        if (f->nhosts == 0 && (e = getenv("PGHOST")) != NULL && e[0] != '\0')
            f->hosts = list_split(e, &f->nhosts);
        if (f->nhostaddrs == 0 && (e = getenv("PGHOSTADDR")) != NULL &&
            e[0] != '\0')
            f->hostaddrs = list_split(e, &f->nhostaddrs);
        if (f->nports == 0 && (e = getenv("PGPORT")) != NULL && e[0] != '\0')
            f->ports = list_split(e, &f->nports);
    }
    /* libpq's rules: host and hostaddr lists of one length, one port or
     * one per host. Lists libpq will refuse are passed on whole (no
     * lookup: libpq checks them first), and its error is what the
     * attempt reports. */
    f->n = f->nhosts > f->nhostaddrs ? f->nhosts : f->nhostaddrs;
    if ((f->nhosts > 0 && f->nhostaddrs > 0 && f->nhosts != f->nhostaddrs) ||
        (f->nports > 1 && f->nports != f->n))
        f->n = 1;
    else
        names_find(c);
    /* without names, every attempt goes through the conninfo's lists */
    if (c->is_name == NULL)
        servers_copy(&c->cur, f);

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
    servers_free(&c->conf);
    servers_free(&c->cur);
    free(c->is_name);
    resolver_unref(c->rs); /* freed once its cancelled lookups called back */
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
