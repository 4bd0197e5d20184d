/* SPDX-License-Identifier: MIT */
/*
 * tests/test_pgconn.c: lib/pgconn.c against a real PostgreSQL 15, started
 * by tests/pg/pg.sh in a temporary directory once per test case (in the
 * runner's process) and stopped after it. Every test drives the loop until
 * what it waits for happened, under a deadline. Its port (55431-55440) is
 * held with a lock file against parallel runs (tests/pgtest.h). The suite
 * is skipped, saying why, only when the server binaries cannot be
 * installed (tests/pg/pg.sh install fails: not root, apt-get failed).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "error.h"
#include "pgconn.h"
#include "pgtest.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 8000
/* Ports 55431-55440 are this suite's (bb.pg and the bench use others). */
#define PORT_FIRST 55431
#define PORT_COUNT 10

static struct pgtest_server pg = {.lock_fd = -1};

static void
server_setup(void)
{
    pgtest_server_start(&pg, "/tmp/aq-pgconn.XXXXXX", PORT_FIRST, PORT_COUNT);
}

static void
server_teardown(void)
{
    pgtest_server_stop(&pg);
}

static void
test_setup(void)
{
    ck_assert_msg(pg.err[0] == '\0', "pgconn: %s", pg.err);
    test_base_setup();
}

static void
test_teardown(void)
{
    test_base_teardown();
}

static char conninfo[256];

static const char *
server_conninfo(void)
{
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d dbname=postgres user=postgres", pg.port);
    return conninfo;
}

/* A socket of type bound to a port of 127.0.0.1 (kept, so that no one
 * else takes it); the port. */
static int
loopback_port(int type, int *fd_out)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, type, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *fd_out = fd;
    return ntohs(a.sin_port);
}

/* A TCP port on 127.0.0.1 with nothing listening: never listened on,
 * connecting is refused. */
static int
dead_port(int *fd_out)
{
    return loopback_port(SOCK_STREAM, fd_out);
}

/* A TCP port on 127.0.0.1 that accepts connections (the kernel does)
 * and never answers: a server that is gone silent. */
static int
silent_port(int *fd_out)
{
    int fd, port = dead_port(&fd);

    ck_assert_int_eq(listen(fd, 8), 0);
    *fd_out = fd;
    return port;
}

/* ---- hooks ---- */

struct hooks_seen {
    int ready;
    int lost;
    bool is_ready;
    bool is_lost;
    char why[512];
    int64_t lost_ms[8]; /* when each of the first 8 lost hooks ran */
    int notified;
    bool is_notified;
    char channel[64];
    char payload[256];
};

static void
on_ready(struct aq_pgconn *c, void *arg)
{
    struct hooks_seen *h = arg;

    ck_assert(aq_pgconn_is_ready(c));
    h->ready++;
    h->is_ready = true;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_lost(struct aq_pgconn *c, const char *why, void *arg)
{
    struct hooks_seen *h = arg;

    ck_assert(!aq_pgconn_is_ready(c));
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_null(strchr(why, '\n'));
    if (h->lost < 8)
        h->lost_ms[h->lost] = now_ms();
    h->lost++;
    h->is_lost = true;
    snprintf(h->why, sizeof h->why, "%s", why);
}

static void
on_notify(struct aq_pgconn *c, const char *channel, const char *payload,
          void *arg)
{
    struct hooks_seen *h = arg;

    (void)c;
    h->notified++;
    h->is_notified = true;
    snprintf(h->channel, sizeof h->channel, "%s", channel);
    snprintf(h->payload, sizeof h->payload, "%s", payload);
}

static const struct aq_pgconn_hooks hooks = {on_ready, on_lost, on_notify};

static struct aq_pgconn *
connect_ready(const char *ci, struct hooks_seen *h)
{
    struct aq_error err = {0};
    struct aq_pgconn *c;

    memset(h, 0, sizeof *h);
    c = aq_pgconn_new(test_base, ci, &hooks, h, &err);
    ck_assert_msg(c != NULL, "%s", err.message);
    ck_assert(!aq_pgconn_is_ready(c));
    ck_assert_int_eq(h->ready, 0); /* no hook from inside new */
    ck_assert_msg(run_until(test_base, &h->is_ready, WAIT_MS), "not ready: %s",
                  h->why);
    return c;
}

/* ---- statement results ---- */

struct result {
    bool is_done;
    bool is_ok;
    char err[512];
    char value[256]; /* row 0, column 0 */
    int ntuples;
};

static void
on_result(void *arg, const PGresult *res, const char *err)
{
    struct result *r = arg;

    ck_assert(!r->is_done);
    r->is_done = true;
    if (err != NULL) {
        ck_assert_ptr_null(res);
        snprintf(r->err, sizeof r->err, "%s", err);
        return;
    }
    r->is_ok = true;
    if (res != NULL) {
        ck_assert(PQresultStatus(res) == PGRES_TUPLES_OK ||
                  PQresultStatus(res) == PGRES_COMMAND_OK);
        r->ntuples = PQntuples(res);
        if (r->ntuples > 0 && PQnfields(res) > 0)
            snprintf(r->value, sizeof r->value, "%s",
                     PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    }
}

static void
query(struct aq_pgconn *c, const char *name, const char *sql, int n,
      const char *const *values, struct result *r)
{
    struct aq_error err = {0};

    memset(r, 0, sizeof *r);
    ck_assert_msg(
        aq_pgconn_query(c, name, sql, n, values, on_result, r, &err) == 0, "%s",
        err.message);
}

static void
commit(struct aq_pgconn *c, struct result *r)
{
    struct aq_error err = {0};

    memset(r, 0, sizeof *r);
    ck_assert_msg(aq_pgconn_commit(c, on_result, r, &err) == 0, "%s",
                  err.message);
}

/* One statement as its own transaction: its result, once committed. */
static void
exec_one(struct aq_pgconn *c, const char *sql, int n, const char *const *values,
         struct result *r)
{
    struct result cr;

    query(c, NULL, sql, n, values, r);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert(r->is_done);
    ck_assert_msg(r->is_ok, "%s: %s", sql, r->err);
    ck_assert_msg(cr.is_ok, "commit: %s", cr.err);
}

START_TEST(connect_and_select_with_params)
{
    struct hooks_seen h;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    const char *values[] = {"2", "3", NULL};
    char want[64];
    struct result r;

    snprintf(want, sizeof want, "127.0.0.1:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    exec_one(c, "SELECT $1::int + $2::int, $3::text IS NULL", 3, values, &r);
    ck_assert_int_eq(r.ntuples, 1);
    ck_assert_str_eq(r.value, "5");
    /* a statement with no commit after it still gets its result */
    query(c, NULL, "SELECT 'x' || $1", 1, (const char *const[]){"y"}, &r);
    ck_assert(run_until(test_base, &r.is_done, WAIT_MS));
    ck_assert_str_eq(r.value, "xy");
    ck_assert_int_eq(h.lost, 0);
    aq_pgconn_free(c);
}
END_TEST

struct counter {
    int ok;
    int failed;
};

static void
on_count(void *arg, const PGresult *res, const char *err)
{
    struct counter *n = arg;

    if (err == NULL && res != NULL)
        n->ok++;
    else
        n->failed++;
}

START_TEST(pipeline_of_inserts_commits_once)
{
    struct hooks_seen h;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct counter n = {0};
    struct result r, cr;
    char v[16];
    int i;

    exec_one(c, "CREATE TABLE many (id int PRIMARY KEY, body text)", 0, NULL,
             &r);
    for (i = 0; i < 1000; i++) {
        const char *values[] = {v, "some body of a job"};

        snprintf(v, sizeof v, "%d", i);
        ck_assert_int_eq(aq_pgconn_query(c, i % 2 ? "ins" : NULL,
                                         "INSERT INTO many VALUES ($1, $2)", 2,
                                         values, on_count, &n, NULL),
                         0);
    }
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert_msg(cr.is_ok, "%s", cr.err);
    ck_assert_int_eq(n.ok, 1000);
    ck_assert_int_eq(n.failed, 0);
    exec_one(c, "SELECT count(*) FROM many", 0, NULL, &r);
    ck_assert_str_eq(r.value, "1000");
    exec_one(c, "DROP TABLE many", 0, NULL, &r);
    aq_pgconn_free(c);
}
END_TEST

START_TEST(failed_statement_fails_its_transaction)
{
    struct hooks_seen h;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct result r, a, b, d, cr;

    exec_one(c, "CREATE TABLE uniq (id int PRIMARY KEY)", 0, NULL, &r);
    query(c, NULL, "INSERT INTO uniq VALUES (1)", 0, NULL, &a);
    query(c, "dup", "INSERT INTO uniq VALUES (1)", 0, NULL, &b);
    query(c, NULL, "INSERT INTO uniq VALUES (2)", 0, NULL, &d);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert(a.is_ok);
    ck_assert(!b.is_ok);
    ck_assert_msg(strstr(b.err, "duplicate key") != NULL, "%s", b.err);
    ck_assert(!d.is_ok); /* aborted: the failed statement's error */
    ck_assert_str_eq(d.err, b.err);
    ck_assert(!cr.is_ok);
    ck_assert_str_eq(cr.err, b.err);
    /* the next transaction starts clean; the first was rolled back whole */
    exec_one(c, "INSERT INTO uniq VALUES (3)", 0, NULL, &r);
    exec_one(c, "SELECT string_agg(id::text, ',') FROM uniq", 0, NULL, &r);
    ck_assert_str_eq(r.value, "3");
    /* a statement that cannot be prepared fails the same way */
    query(c, "bad", "SELECT nosuchcolumn FROM uniq", 0, NULL, &a);
    query(c, NULL, "SELECT 1", 0, NULL, &b);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert_msg(strstr(a.err, "nosuchcolumn") != NULL, "%s", a.err);
    ck_assert_str_eq(b.err, a.err);
    ck_assert_str_eq(cr.err, a.err);
    /* a prepare that did not run (its transaction failed before it) does
     * not fail the next transaction, queued before that was known */
    query(c, NULL, "INSERT INTO uniq VALUES (3)", 0, NULL, &a);
    query(c, "plus", "SELECT $1::int + 1", 1, (const char *const[]){"1"}, &b);
    commit(c, &cr);
    query(c, "plus", "SELECT $1::int + 1", 1, (const char *const[]){"2"}, &d);
    commit(c, &r);
    ck_assert(run_until(test_base, &r.is_done, WAIT_MS));
    ck_assert(!cr.is_ok);
    ck_assert(!b.is_ok);
    ck_assert_msg(d.is_ok, "%s", d.err);
    ck_assert_str_eq(d.value, "3");
    ck_assert_msg(r.is_ok, "%s", r.err);
    query(c, "plus", "SELECT $1::int + 1", 1, (const char *const[]){"4"}, &d);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert_str_eq(d.value, "5");
    exec_one(c,
             "SELECT count(*) FROM pg_prepared_statements WHERE name = "
             "'plus'",
             0, NULL, &r);
    ck_assert_str_eq(r.value, "1");
    exec_one(c, "DROP TABLE uniq", 0, NULL, &r);
    ck_assert_int_eq(h.lost, 0);
    aq_pgconn_free(c);
}
END_TEST

START_TEST(prepared_reused_and_prepared_again_after_reconnect)
{
    struct hooks_seen h, h2;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct aq_pgconn *killer = connect_ready(server_conninfo(), &h2);
    const char *count = "SELECT count(*) FROM pg_prepared_statements "
                        "WHERE name = 'twice'";
    struct result r, r2, cr;
    char pid[256];

    query(c, "twice", "SELECT $1::int * 2", 1, (const char *const[]){"4"}, &r);
    query(c, "twice", "SELECT $1::int * 2", 1, (const char *const[]){"5"}, &r2);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert_str_eq(r.value, "8");
    ck_assert_str_eq(r2.value, "10");
    exec_one(c, "SELECT $1::int * 2", 1, (const char *const[]){"6"}, &r);
    exec_one(c, count, 0, NULL, &r);
    ck_assert_str_eq(r.value, "1"); /* prepared once in this session */

    /* the server ends c's session: c reconnects, prepares again */
    exec_one(c, "SELECT pg_backend_pid()", 0, NULL, &r);
    snprintf(pid, sizeof pid, "%s", r.value);
    h.is_ready = false;
    exec_one(killer, "SELECT pg_terminate_backend($1::int)", 1,
             (const char *const[]){pid}, &r);
    ck_assert_str_eq(r.value, "t");
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert(run_until(test_base, &h.is_ready, WAIT_MS));
    ck_assert_int_eq(h.ready, 2);
    query(c, "twice", "SELECT $1::int * 2", 1, (const char *const[]){"7"}, &r);
    commit(c, &cr);
    ck_assert(run_until(test_base, &cr.is_done, WAIT_MS));
    ck_assert_msg(r.is_ok, "%s", r.err);
    ck_assert_str_eq(r.value, "14");
    exec_one(c, count, 0, NULL, &r);
    ck_assert_str_eq(r.value, "1");
    aq_pgconn_free(killer);
    aq_pgconn_free(c);
}
END_TEST

START_TEST(listen_gets_notify_of_another_session)
{
    struct hooks_seen h, h2;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct aq_pgconn *other = connect_ready(server_conninfo(), &h2);
    struct result r;

    exec_one(c, "LISTEN jobs_ch", 0, NULL, &r);
    exec_one(other, "SELECT pg_notify('jobs_ch', $1)", 1,
             (const char *const[]){"queue=default"}, &r);
    ck_assert(run_until(test_base, &h.is_notified, WAIT_MS));
    ck_assert_int_eq(h.notified, 1);
    ck_assert_str_eq(h.channel, "jobs_ch");
    ck_assert_str_eq(h.payload, "queue=default");
    ck_assert_int_eq(h2.notified, 0);
    aq_pgconn_free(other);
    aq_pgconn_free(c);
}
END_TEST

START_TEST(server_stop_fails_pending_then_reconnects)
{
    struct hooks_seen h;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct aq_error err = {0};
    struct result r, cr;

    query(c, NULL, "SELECT pg_sleep(30)", 0, NULL, &r);
    commit(c, &cr);
    event_base_loop(test_base, EVLOOP_NONBLOCK); /* sends them */
    ck_assert_int_eq(pgtest_sh("%s stop %s immediate", AQ_PG_SH, pg.dir), 0);
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert(r.is_done && !r.is_ok);
    ck_assert(cr.is_done && !cr.is_ok);
    ck_assert_msg(strncmp(cr.err, "connection lost: ", 17) == 0, "%s", cr.err);
    ck_assert(!aq_pgconn_is_ready(c));
    ck_assert_ptr_null(aq_pgconn_server(c));
    ck_assert_int_eq(
        aq_pgconn_query(c, NULL, "SELECT 1", 0, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "not connected") != NULL, "%s",
                  err.message);
    /* it keeps trying (failing) while the server is down */
    h.is_lost = false;
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert_int_ge(h.lost, 2);
    ck_assert_int_eq(pgtest_sh("%s restart %s", AQ_PG_SH, pg.dir), 0);
    h.is_ready = false;
    ck_assert(run_until(test_base, &h.is_ready, WAIT_MS));
    ck_assert_int_eq(h.ready, 2);
    exec_one(c, "SELECT 40 + 2", 0, NULL, &r);
    ck_assert_str_eq(r.value, "42");
    aq_pgconn_free(c);
}
END_TEST

START_TEST(multi_host_skips_a_dead_first_host)
{
    struct hooks_seen h;
    struct aq_pgconn *c;
    int fd, dead = dead_port(&fd);
    char ci[256], want[64];
    struct result r;

    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=postgres "
             "user=postgres",
             dead, pg.port);
    c = connect_ready(ci, &h);
    snprintf(want, sizeof want, "127.0.0.1:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    ck_assert_int_eq(h.lost, 0);
    exec_one(c, "SELECT 1", 0, NULL, &r);
    ck_assert_str_eq(r.value, "1");
    aq_pgconn_free(c);
    close(fd);
}
END_TEST

START_TEST(silent_host_times_out_then_next_host)
{
    struct hooks_seen h;
    struct aq_pgconn *c;
    int fd, silent = silent_port(&fd);
    char ci[256], want[64];
    int64_t t0 = now_ms();

    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=postgres "
             "user=postgres connect_timeout=2",
             silent, pg.port);
    c = connect_ready(ci, &h);
    ck_assert_int_ge(now_ms() - t0, 1900); /* waited for the first */
    snprintf(want, sizeof want, "127.0.0.1:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    ck_assert_int_eq(h.lost, 0); /* one attempt, that went on */
    aq_pgconn_free(c);

    /* alone, the silent host fails the attempt */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d connect_timeout=1", silent);
    memset(&h, 0, sizeof h);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, NULL);
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert_msg(strstr(h.why, "timeout expired after 2 s") != NULL, "%s",
                  h.why);
    ck_assert_int_eq(h.ready, 0);
    aq_pgconn_free(c);
    close(fd);
}
END_TEST

START_TEST(attempts_back_off_doubling)
{
    struct hooks_seen h = {0};
    struct aq_pgconn *c;
    int fd, dead = dead_port(&fd), i;
    char ci[128];
    int64_t deadline = now_ms() + WAIT_MS;

    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres", dead);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, NULL);
    /* the backoff timer is always pending: each pass ends on an event */
    while (h.lost < 5 && now_ms() < deadline)
        event_base_loop(test_base, EVLOOP_ONCE);
    ck_assert_int_ge(h.lost, 5);
    /* 100, 200, 400, 800 ms between refused attempts */
    for (i = 1; i < 5; i++) {
        int64_t gap = h.lost_ms[i] - h.lost_ms[i - 1];
        int64_t want = 100LL << (i - 1);

        ck_assert_msg(gap >= want - 20 && gap < want + 500,
                      "gap %d: %lld ms, want %lld", i, (long long)gap,
                      (long long)want);
    }
    aq_pgconn_free(c);
    close(fd);
}
END_TEST

START_TEST(unparsable_conninfo_is_refused)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(
        aq_pgconn_new(test_base, "host=a nonsense", &hooks, NULL, &err));
    ck_assert_msg(strstr(err.message, "conninfo") != NULL, "%s", err.message);
    ck_assert_ptr_null(
        aq_pgconn_new(test_base, "bogus_option=1", &hooks, NULL, &err));
    ck_assert_msg(strstr(err.message, "bogus_option") != NULL, "%s",
                  err.message);
}
END_TEST

START_TEST(query_when_not_ready_fails)
{
    struct hooks_seen h = {0};
    struct aq_error err = {0};
    struct aq_pgconn *c;
    int fd, dead = dead_port(&fd);
    char ci[128];

    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres", dead);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(
        aq_pgconn_query(c, NULL, "SELECT 1", 0, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "not connected") != NULL, "%s",
                  err.message);
    ck_assert_int_eq(aq_pgconn_commit(c, NULL, NULL, &err), -1);
    /* refused: the lost hook says why, and so does the next call */
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert_msg(strstr(h.why, "refused") != NULL, "%s", h.why);
    ck_assert_int_eq(aq_pgconn_commit(c, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "refused") != NULL, "%s", err.message);
    ck_assert_int_eq(h.ready, 0);
    aq_pgconn_free(c);
    close(fd);
}
END_TEST

static void
never_called(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    ck_abort_msg("callback after free: %s", err != NULL ? err : "ok");
}

START_TEST(free_with_statements_in_flight_calls_nothing)
{
    struct hooks_seen h;
    struct aq_pgconn *c = connect_ready(server_conninfo(), &h);
    struct aq_pgconn *d = connect_ready(server_conninfo(), &h);
    int i;

    /* queued, not sent yet */
    for (i = 0; i < 10; i++)
        aq_pgconn_query(c, i % 2 ? "p" : NULL, "SELECT $1::int", 1,
                        (const char *const[]){"1"}, never_called, NULL, NULL);
    aq_pgconn_commit(c, never_called, NULL, NULL);
    aq_pgconn_free(c);
    /* sent, results on their way */
    for (i = 0; i < 10; i++)
        aq_pgconn_query(d, NULL, "SELECT pg_sleep(0.01)", 0, NULL, never_called,
                        NULL, NULL);
    aq_pgconn_commit(d, never_called, NULL, NULL);
    event_base_loop(test_base, EVLOOP_NONBLOCK);
    aq_pgconn_free(d);
    aq_pgconn_free(NULL);
    run_for(test_base, 200);
}
END_TEST

/* ---- callbacks that call back in ---- */

struct reentry {
    struct aq_pgconn *c;
    int calls;
    bool is_done;
    struct result next, next_commit;
};

/* The first result frees the connection: the rest never run. */
static void
free_from_callback(void *arg, const PGresult *res, const char *err)
{
    struct reentry *re = arg;

    (void)res;
    (void)err;
    re->calls++;
    re->is_done = true;
    aq_pgconn_free(re->c);
}

/* The first result queues a new transaction. */
static void
query_from_callback(void *arg, const PGresult *res, const char *err)
{
    struct reentry *re = arg;

    (void)res;
    ck_assert_ptr_null(err);
    re->calls++;
    query(re->c, "again", "SELECT 'again'", 0, NULL, &re->next);
    commit(re->c, &re->next_commit);
}

START_TEST(callbacks_may_query_and_free)
{
    struct hooks_seen h;
    struct reentry re = {0};
    struct result first;
    int i;

    re.c = connect_ready(server_conninfo(), &h);
    query(re.c, NULL, "SELECT 1", 0, NULL, &first);
    aq_pgconn_commit(re.c, query_from_callback, &re, NULL);
    ck_assert(run_until(test_base, &re.next_commit.is_done, WAIT_MS));
    ck_assert_int_eq(re.calls, 1);
    ck_assert_msg(re.next.is_ok, "%s", re.next.err);
    ck_assert_str_eq(re.next.value, "again");
    ck_assert(re.next_commit.is_ok);

    re.calls = 0;
    for (i = 0; i < 5; i++)
        aq_pgconn_query(re.c, NULL, "SELECT 1", 0, NULL, free_from_callback,
                        &re, NULL);
    aq_pgconn_commit(re.c, free_from_callback, &re, NULL);
    ck_assert(run_until(test_base, &re.is_done, WAIT_MS));
    run_for(test_base, 100);
    ck_assert_int_eq(re.calls, 1);
}
END_TEST

/* The lost hook frees the connection. */
static void
free_on_lost(struct aq_pgconn *c, const char *why, void *arg)
{
    (void)why;
    *(bool *)arg = true;
    aq_pgconn_free(c);
}

START_TEST(lost_hook_may_free)
{
    const struct aq_pgconn_hooks free_hooks = {NULL, free_on_lost, NULL};
    struct aq_error err = {0};
    bool is_lost = false;
    int fd, dead = dead_port(&fd);
    char ci[128];

    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres", dead);
    ck_assert_ptr_nonnull(
        aq_pgconn_new(test_base, ci, &free_hooks, &is_lost, &err));
    ck_assert(run_until(test_base, &is_lost, WAIT_MS));
    run_for(test_base, 300); /* no retry of a freed connection */
    close(fd);
}
END_TEST

/* ---- host names (resolved by evdns, never by libpq) ---- */

START_TEST(host_name_resolved_without_libpq)
{
    struct hooks_seen h;
    struct aq_pgconn *c;
    char ci[256], want[64];
    struct result r;

    /* a literal: no lookup at all */
    c = connect_ready(server_conninfo(), &h);
    ck_assert_uint_eq(aq_pgconn_lookups(c), 0);
    aq_pgconn_free(c);

    /* localhost: from /etc/hosts through evdns (A and AAAA) */
    snprintf(ci, sizeof ci,
             "host=localhost port=%d dbname=postgres user=postgres", pg.port);
    c = connect_ready(ci, &h);
    ck_assert_uint_eq(aq_pgconn_lookups(c), 2);
    snprintf(want, sizeof want, "localhost:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    exec_one(c, "SELECT host(inet_server_addr())", 0, NULL, &r);
    ck_assert_str_eq(r.value, "127.0.0.1");
    aq_pgconn_free(c);
}
END_TEST

START_TEST(unresolvable_host_left_out_of_the_attempt)
{
    struct hooks_seen h;
    struct aq_pgconn *c;
    int fd, dead = dead_port(&fd);
    char ci[256], want[64];

    snprintf(ci, sizeof ci,
             "host=no-such-host.invalid,127.0.0.1 port=%d,%d dbname=postgres "
             "user=postgres",
             dead, pg.port);
    c = connect_ready(ci, &h);
    snprintf(want, sizeof want, "127.0.0.1:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    ck_assert_int_eq(h.lost, 0); /* one attempt, without the name */
    aq_pgconn_free(c);
    close(fd);
}
END_TEST

START_TEST(unresolvable_host_alone_fails_and_retries)
{
    struct hooks_seen h = {0};
    struct aq_error err = {0};
    struct aq_pgconn *c;
    char ci[256];
    int64_t deadline = now_ms() + WAIT_MS;

    snprintf(ci, sizeof ci,
             "host=no-such-host.invalid port=%d dbname=postgres user=postgres",
             pg.port);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, &err);
    ck_assert_ptr_nonnull(c);
    while (h.lost < 2 && now_ms() < deadline)
        event_base_loop(test_base, EVLOOP_ONCE);
    ck_assert_int_ge(h.lost, 2);
    ck_assert_int_eq(h.ready, 0);
    ck_assert_msg(strstr(h.why, "cannot resolve no-such-host.invalid") != NULL,
                  "%s", h.why);
    ck_assert_int_eq(aq_pgconn_commit(c, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "no-such-host.invalid") != NULL, "%s",
                  err.message);
    aq_pgconn_free(c);
}
END_TEST

/* A UDP port on 127.0.0.1 that never answers: a DNS server gone silent. */
static int
silent_udp_port(int *fd_out)
{
    return loopback_port(SOCK_DGRAM, fd_out);
}

START_TEST(silent_nameserver_bounded_by_connect_timeout)
{
    struct hooks_seen h;
    struct aq_pgconn *c;
    int fd, ns = silent_udp_port(&fd);
    char ci[256], addr[64], want[64];
    int64_t t0 = now_ms();

    snprintf(addr, sizeof addr, "127.0.0.1:%d", ns);
    aq_pgconn_test_nameserver(addr);
    /* the name gives up after connect_timeout, the next host connects */
    snprintf(ci, sizeof ci,
             "host=db.example,127.0.0.1 port=%d dbname=postgres user=postgres "
             "connect_timeout=2",
             pg.port);
    c = connect_ready(ci, &h);
    ck_assert_int_ge(now_ms() - t0, 1900);
    snprintf(want, sizeof want, "127.0.0.1:%d", pg.port);
    ck_assert_str_eq(aq_pgconn_server(c), want);
    ck_assert_int_eq(h.lost, 0);
    aq_pgconn_free(c);

    /* alone, it fails the attempt, naming the name */
    snprintf(ci, sizeof ci, "host=db.example port=%d connect_timeout=2",
             pg.port);
    memset(&h, 0, sizeof h);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, NULL);
    ck_assert(run_until(test_base, &h.is_lost, WAIT_MS));
    ck_assert_msg(strstr(h.why, "cannot resolve db.example: timeout expired "
                                "after 2 s") != NULL,
                  "%s", h.why);
    ck_assert_int_eq(h.ready, 0);
    aq_pgconn_free(c);

    /* freed with its lookups in flight: cancelled, nothing called */
    memset(&h, 0, sizeof h);
    c = aq_pgconn_new(test_base, ci, &hooks, &h, NULL);
    run_for(test_base, 100);
    aq_pgconn_free(c);
    run_for(test_base, 200);
    ck_assert_int_eq(h.lost + h.ready, 0);
    aq_pgconn_test_nameserver(NULL);
    close(fd);
}
END_TEST

Suite *
pgconn_suite(void)
{
    Suite *s = suite_create("pgconn");
    TCase *tc;

    if (pgtest_skip_suite("pgconn"))
        return s;
    tc = test_tcase_new("server");
    /* one server for the case, in the runner's process */
    tcase_add_unchecked_fixture(tc, server_setup, server_teardown);
    tcase_add_checked_fixture(tc, test_setup, test_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, connect_and_select_with_params);
    tcase_add_test(tc, pipeline_of_inserts_commits_once);
    tcase_add_test(tc, failed_statement_fails_its_transaction);
    tcase_add_test(tc, prepared_reused_and_prepared_again_after_reconnect);
    tcase_add_test(tc, listen_gets_notify_of_another_session);
    tcase_add_test(tc, multi_host_skips_a_dead_first_host);
    tcase_add_test(tc, silent_host_times_out_then_next_host);
    tcase_add_test(tc, attempts_back_off_doubling);
    tcase_add_test(tc, unparsable_conninfo_is_refused);
    tcase_add_test(tc, query_when_not_ready_fails);
    tcase_add_test(tc, free_with_statements_in_flight_calls_nothing);
    tcase_add_test(tc, callbacks_may_query_and_free);
    tcase_add_test(tc, lost_hook_may_free);
    tcase_add_test(tc, host_name_resolved_without_libpq);
    tcase_add_test(tc, unresolvable_host_left_out_of_the_attempt);
    tcase_add_test(tc, unresolvable_host_alone_fails_and_retries);
    tcase_add_test(tc, silent_nameserver_bounded_by_connect_timeout);
    /* last: it stops and restarts the server */
    tcase_add_test(tc, server_stop_fails_pending_then_reconnects);
    suite_add_tcase(s, tc);
    return s;
}
