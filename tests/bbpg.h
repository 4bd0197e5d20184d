/* SPDX-License-Identifier: MIT */
/*
 * tests/bbpg.h: throw-away PostgreSQL 15 servers for the black-box tests
 * of the postgres store (tests/pg/pg.sh), and blocking SQL (libpq) for
 * their assertions.
 *
 * A suite calls bbpg_setup and bbpg_teardown as an unchecked fixture (in
 * the runner, around each test case): the servers of a case live in one
 * directory, and the teardown kills whatever a failed or timed-out test
 * left running there. Ports come from 55441-55459 (bb.pg and bb.pgstore),
 * each held with a lock file against other suites and parallel runs
 * (tests/pgport.h), skipping any a server listens on.
 * Every call is bounded in time and fails the test on an error, naming
 * pg.sh's message.
 */
#ifndef AQ_BBPG_H
#define AQ_BBPG_H

#include <stdbool.h>

#include <libpq-fe.h>

struct bbpg;

/* Unchecked fixture: makes sure the server binaries are there (pg.sh
 * install, which installs postgresql-15 when we are root) and makes the
 * case's directory. */
void bbpg_setup(void);
/* Unchecked fixture: kills every server of the case still running and
 * removes its directory. */
void bbpg_teardown(void);
/* Whether the servers can run. If not (the binaries are missing and
 * cannot be installed: pg.sh install says why and exits 1), prints
 * "bb.pg: skipped: WHY" and the test should return: the only case in
 * which the suite skips. Fails the test on any other fault of pg.sh. */
bool bbpg_available(void);

/* A server with a port and a directory of its own, not started yet. */
struct bbpg *bbpg_new(void);
/* pg.sh start: a fresh database on the server's port; with is_sync, a
 * commit waits for a synchronous standby. */
void bbpg_start(struct bbpg *s, bool is_sync);
/* pg.sh standby: s starts as a streaming hot standby of primary. */
void bbpg_start_standby(struct bbpg *s, const struct bbpg *primary);
/* pg.sh promote: the standby s becomes a primary. */
void bbpg_promote(struct bbpg *s);
/* pg.sh stop (fast). */
void bbpg_stop(struct bbpg *s);
/* pg.sh kill: kill -9 of the postmaster; returns once it is gone. */
void bbpg_kill(struct bbpg *s);
/* pg.sh restart: starts s again on its data directory and port. */
void bbpg_restart(struct bbpg *s);
/* Stops the server (immediate) and removes its directory; NULL is fine. */
void bbpg_free(struct bbpg *s);

int bbpg_port(const struct bbpg *s);
/* "host=127.0.0.1 port=P dbname=postgres user=postgres" (static in s). */
const char *bbpg_conninfo(const struct bbpg *s);

/* Runs the SQL (a printf format) on s in a connection of its own; the
 * result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), the caller's to PQclear.
 * Fails the test on an error, naming it. */
PGresult *bbpg_query(const struct bbpg *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The integer in the first column of the one row the SQL returns. */
long long bbpg_int(const struct bbpg *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* bbpg_int that does not fail: whether the query answered (the server
 * may be down, the table not there yet), for polling. */
bool bbpg_try_int(const struct bbpg *s, long long *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* bbpg_query with the result dropped. */
void bbpg_exec(const struct bbpg *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The first column of the first row the SQL returns as text ("" for none
 * or NULL), the caller's to free. */
char *bbpg_text(const struct bbpg *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Fails the test unless sql gives the text want (as bbpg_text). */
void bbpg_is(const struct bbpg *s, const char *sql, const char *want);
/* Polls until sql gives the text want, for the commits no reply awaits;
 * fails the test, naming what it got, after timeout_ms. */
void bbpg_await_text(const struct bbpg *s, const char *sql, const char *want,
                     int timeout_ms);
/* Polls until the integer the SQL gives (as bbpg_try_int) is want; fails
 * the test, naming the last it got (-1: none), after timeout_ms. */
void bbpg_await_int(const struct bbpg *s, long long want, int timeout_ms,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A suite whose cases share one server: call these from its unchecked
 * fixture. bbpg_setup, then *s a server started (without a synchronous
 * standby) when bbpg_available, else NULL. */
void bbpg_suite_setup(struct bbpg **s);
/* bbpg_free(*s), *s = NULL, then bbpg_teardown. */
void bbpg_suite_teardown(struct bbpg **s);

/* ---- several nodes (part "cluster" of issue 17) ---- */

struct bb_daemon;
/* Starts asyncqd as node on schema of s, with rest: the config's other
 * top-level fields in bb_startq's quoting ("'queues': {...}"; no %);
 * returns once its cluster session (lib/pgcluster.h) LISTENs. */
struct bb_daemon *bbpg_cluster_start(const struct bbpg *s, const char *schema,
                                     const char *node, const char *rest);
/* A session of the test's own to s (PQfinish it), failing the test if
 * it cannot connect: to hold advisory locks, or LISTEN. */
PGconn *bbpg_cluster_session(const struct bbpg *s);

/* ---- core: several asyncqd nodes sharing one schema (bb.pgshare) ---- */

/* asyncqd as node on schema of s, with the queues given as JSON text
 * (with ' for ", as bb_startq), a heartbeat every renew_ms and a poll
 * every poll_ms (ASYNCQ_PG_LEASE_RENEW_MS, ASYNCQ_PG_POLL_MS); started
 * and answering. */
struct bb_daemon *bbpg_core_node(const struct bbpg *s, const char *schema,
                                 const char *node, const char *queues,
                                 int renew_ms, int poll_ms);

#endif
