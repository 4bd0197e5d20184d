/* SPDX-License-Identifier: MIT */
/*
 * lib/pgconn.h: one PostgreSQL session driven by libpq on the libevent loop,
 * never blocking it: connects (multi-host conninfo and
 * target_session_attrs as libpq does them), reconnects after a backoff
 * (100 ms doubling to 5 s, reset once connected), and runs statements in
 * pipeline mode: statements queued between two commits form one
 * transaction, their results come back in order through their callbacks.
 * Callbacks and hooks run from the loop only, never from inside a call of
 * this API, and may call any function here (free included).
 * A host that makes no progress for connect_timeout seconds (conninfo;
 * default 10, at least 2) gives way to the next host of the conninfo, as
 * a refusing one does in libpq; after the last the attempt failed.
 * The transaction of statements queued with no commit yet stays open on
 * the server (their results still come back: PQsendFlushRequest).
 * Host names are resolved here, not by libpq (its getaddrinfo blocks):
 * before each attempt, every entry of the host list that is a name (not
 * an address literal, not a socket directory starting with '/' or '@')
 * and has no hostaddr entry of its own is looked up with evdns (A and
 * AAAA; /etc/hosts first, then the servers and options of
 * /etc/resolv.conf; the TLD "invalid" fails at once, RFC 6761), and the
 * attempt goes through the hosts in order with hostaddr set: a name as
 * one entry per address (IPv4 ones first), each tried as libpq tries the
 * addresses of a name; host keeps the name (TLS and Kerberos check it).
 * A name that does not resolve is logged and left out of that attempt;
 * when no host remains, the attempt failed with the resolver's message
 * ("cannot resolve NAME: ...": lost hook, backoff). The lookups of an
 * attempt are bounded by connect_timeout as a whole; those still out
 * then give up. The environment's PGHOST/PGHOSTADDR/PGPORT are read as
 * libpq would (unless a service file is named: hosts from a service file
 * are resolved by libpq itself, blocking). /etc/resolv.conf and
 * /etc/hosts are read once, at the first name. When every host is a
 * literal or a socket, no resolver is made at all. Messages are logged
 * as "store: postgres: ..." (one line per connect, failed attempt, name
 * not resolved and lost session).
 */
#ifndef AQ_PGCONN_H
#define AQ_PGCONN_H

#include <stdbool.h>

#include <libpq-fe.h>

struct event_base;
struct aq_error;
struct aq_pgconn;

struct aq_pgconn_hooks {
    /* Connected (again) and ready: statements may be sent from here on
     * (a fresh session: LISTEN again, prepare again). */
    void (*ready)(struct aq_pgconn *c, void *arg);
    /* A connect attempt failed or the connection was lost (why: libpq's
     * message, one line). Every statement in flight has had its callback
     * with err first. The next attempt follows after a backoff (100 ms
     * doubling to 5 s, reset once connected). */
    void (*lost)(struct aq_pgconn *c, const char *why, void *arg);
    /* A NOTIFY on a channel this session LISTENs to (may be NULL). */
    void (*notify)(struct aq_pgconn *c, const char *channel,
                   const char *payload, void *arg);
};

/* Starts connecting from the loop (PQconnectStart + PQconnectPoll, never
 * blocking; multi-host conninfo and target_session_attrs work as libpq
 * does). NULL with err when conninfo cannot be parsed. No hook runs before
 * this returns; hooks may be NULL (each of them). The caller owns the
 * result (aq_pgconn_free); hooks is copied. */
struct aq_pgconn *aq_pgconn_new(struct event_base *base, const char *conninfo,
                                const struct aq_pgconn_hooks *hooks, void *arg,
                                struct aq_error *err);
void
aq_pgconn_free(struct aq_pgconn *c); /* NULL fine; no callback runs after */
bool aq_pgconn_is_ready(const struct aq_pgconn *c);
/* "host:port" of the server connected to (for logs), or NULL. host is
 * the conninfo's (a name stays a name; the log line of the connect says
 * the address too). */
const char *aq_pgconn_server(const struct aq_pgconn *c);
/* Lookups answered so far (one per address family and name: 0 when no
 * host is a name). For tests and statistics. */
unsigned aq_pgconn_lookups(const struct aq_pgconn *c);
/* For tests: resolvers made from now on ask only the nameserver at addr
 * ("IP" or "IP:PORT"), without /etc/hosts; NULL: back to the system's. */
void aq_pgconn_test_nameserver(const char *addr);

/* res: the statement's result (valid during the call only; PGRES_TUPLES_OK
 * or PGRES_COMMAND_OK) and err NULL; or res NULL and err: the server's
 * message, or "connection lost: ..." (err valid during the call only).
 * A commit's callback gets res NULL and err NULL once committed. */
typedef void aq_pgconn_cb(void *arg, const PGresult *res, const char *err);

/* Queues a statement of the current transaction (pipeline mode; text
 * parameters, NULL = SQL NULL; text results). values are copied. If name
 * is not NULL the statement is prepared once per session under that name
 * (first use after each connect) and executed prepared from then on
 * (until the server confirmed that prepare, uses in later transactions
 * run unprepared: a prepare in a transaction that fails never runs).
 * 0, or -1 with err when not ready. cb may be NULL. The statement is sent
 * once the loop runs (all those queued in one loop pass together). */
int aq_pgconn_query(struct aq_pgconn *c, const char *name, const char *sql,
                    int nparams, const char *const *values, aq_pgconn_cb *cb,
                    void *arg, struct aq_error *err);
/* Ends the current transaction (PQpipelineSync): the statements queued
 * since the last commit run as one transaction; cb gets err NULL once it
 * committed, else why not (a statement failed: all rolled back; or the
 * connection was lost: committed or not is unknown). 0, or -1 with err
 * when not ready. */
int aq_pgconn_commit(struct aq_pgconn *c, aq_pgconn_cb *cb, void *arg,
                     struct aq_error *err);

#endif
