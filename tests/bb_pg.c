/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_pg.c: the postgres store (store.kind "postgres", issue 17)
 * against the real asyncqd and real PostgreSQL 15 servers (tests/bbpg.h):
 * kill -9 of asyncqd and a new one on the same database, the server
 * restarted under producers, failover to a promoted synchronous standby
 * with 0 acknowledged jobs lost (two nodes sharing the schema), and
 * asyncqd started before its server.
 * What a test asserts about the database it reads with SQL from the
 * table asyncq.jobs (schema v1: state 3 running, 4 done).
 *
 * Skipped, saying why, only when PostgreSQL 15 cannot be installed.
 */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbpg.h"
#include "bbsuites.h"

#define KILL_TIMEOUT_MS 10000
#define REPLY_MS 30000   /* a put waiting for the store to come back */
#define RECOVER_MS 30000 /* reconnect backoff is at most 5 s */
#define STATE_RUNNING 3
#define STATE_DONE 4

/* The store part of a config: the server(s) of conninfo, schema asyncq,
 * node n1. A printf format with one %s (the conninfo) and the rest of the
 * config after it, in bb_startq's quoting. */
#define PG_CONFIG(rest)                                                        \
    "{'store':{'kind':'postgres','conninfo':'%s','schema':'asyncq',"           \
    "'node':'n1'},'results':{'max':1000000},'shutdown':{'grace':0.2}," rest    \
    "}"

/* The same, as node %s (after the conninfo). */
#define PG_CONFIG_NODE(rest)                                                   \
    "{'store':{'kind':'postgres','conninfo':'%s','schema':'asyncq',"           \
    "'node':'%s'},'results':{'max':1000000},'shutdown':{'grace':0.2}," rest    \
    "}"

/* ---- acknowledged ids ---- */

struct ids {
    json_int_t *v;
    size_t n, cap;
};

static void
ids_add(struct ids *ids, json_int_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap != 0 ? ids->cap * 2 : 1024;
        ids->v = realloc(ids->v, ids->cap * sizeof *ids->v);
        ck_assert_ptr_nonnull(ids->v);
    }
    ids->v[ids->n++] = id;
}

static int
cmp_id(const void *a, const void *b)
{
    json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;

    return (x > y) - (x < y);
}

/* Fails the test if an id was acknowledged twice. */
static void
ids_assert_unique(struct ids *ids)
{
    qsort(ids->v, ids->n, sizeof *ids->v, cmp_id);
    for (size_t i = 1; i < ids->n; i++)
        ck_assert_msg(ids->v[i] != ids->v[i - 1], "job %lld acknowledged twice",
                      (long long)ids->v[i]);
}

/* The ids as an SQL array literal ('{1,2,3}'::bigint[]), a new string. */
static char *
ids_sql(const struct ids *ids)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    fputs("'{", f);
    for (size_t i = 0; i < ids->n; i++)
        fprintf(f, "%s%lld", i > 0 ? "," : "", (long long)ids->v[i]);
    fputs("}'::bigint[]", f);
    fclose(f);
    return buf;
}

/* Fails the test unless every id is in s's asyncq.jobs, once, and the
 * table holds no other job. */
static void
assert_table_holds(const struct bbpg *s, const struct ids *ids)
{
    char *arr = ids_sql(ids);
    long long found =
        bbpg_int(s, "SELECT count(*) FROM asyncq.jobs WHERE id = ANY(%s)", arr);
    long long rows = bbpg_int(s, "SELECT count(*) FROM asyncq.jobs");

    ck_assert_msg(found == (long long)ids->n,
                  "%lld of %zu acknowledged jobs in the table: %zu lost", found,
                  ids->n, ids->n - (size_t)found);
    ck_assert_msg(rows == found,
                  "the table holds %lld jobs, %zu were acknowledged", rows,
                  ids->n);
    free(arr);
}

struct table_count {
    const struct bbpg *s;
    int state;
    long long want, last;
};

static bool
table_count_is(void *arg)
{
    struct table_count *t = arg;

    return bbpg_try_int(t->s, &t->last,
                        "SELECT count(*) FROM asyncq.jobs WHERE state = %d",
                        t->state) &&
           t->last == t->want;
}

/* Polls until want jobs of s's table are in state; fails the test if not
 * within timeout_ms. */
static void
await_table_count(const struct bbpg *s, int state, long long want,
                  int timeout_ms)
{
    struct table_count t = {.s = s, .state = state, .want = want, .last = -1};

    ck_assert_msg(bb_poll(table_count_is, &t, timeout_ms),
                  "%lld jobs in state %d in the table after %d ms, not %lld",
                  t.last, state, timeout_ms, want);
}

/* ---- producers: pipelined puts on a few connections ---- */

#define NCONNS 2
#define WINDOW 16

struct producer {
    struct bb_conn *conns[NCONNS];
    int unanswered[NCONNS];
    struct ids acked;
    long seq;
};

static void
producer_open(struct producer *p, const struct bb_daemon *d)
{
    memset(p, 0, sizeof *p);
    for (int k = 0; k < NCONNS; k++)
        p->conns[k] = bb_connect(d);
}

/* A reply to a put: its id is acknowledged. Puts wait for the store, they
 * never fail. */
static void
producer_take(struct producer *p, int k, json_t *msg)
{
    ck_assert_msg(json_is_object(bb_at(msg, "result")), "put failed: %s",
                  bb_dump(msg));
    ids_add(&p->acked, bb_int_at(msg, "result.job"));
    p->unanswered[k]--;
    json_decref(msg);
}

/* Reads the replies on every connection for up to wait_ms. */
static void
producer_read(struct producer *p, int wait_ms)
{
    struct pollfd pfd[NCONNS];

    for (int k = 0; k < NCONNS; k++) {
        pfd[k].fd = bb_fd(p->conns[k]);
        pfd[k].events = POLLIN;
    }
    if (poll(pfd, NCONNS, wait_ms) <= 0)
        return;
    for (int k = 0; k < NCONNS; k++) {
        json_t *msg;

        if (pfd[k].revents == 0)
            continue;
        while ((msg = bb_recv(p->conns[k], 0)) != NULL)
            producer_take(p, k, msg);
    }
}

/* Keeps a window of puts in flight on every connection until
 * deadline_ms (while the store is away, the windows fill and wait). */
static void
producer_run(struct producer *p, int64_t deadline_ms)
{
    while (bb_now_ms() < deadline_ms) {
        for (int k = 0; k < NCONNS; k++) {
            while (p->unanswered[k] < WINDOW) {
                bb_send_call(p->conns[k], "put",
                             json_pack("{s:{s:i,s:I}}", "args", "conn", k, "n",
                                       (json_int_t)p->seq++));
                p->unanswered[k]++;
            }
        }
        producer_read(p, (int)(deadline_ms - bb_now_ms()));
    }
}

static int
producer_unanswered(const struct producer *p)
{
    int n = 0;

    for (int k = 0; k < NCONNS; k++)
        n += p->unanswered[k];
    return n;
}

/* Sends no more; waits for the reply to every put sent; fails the test if
 * one is not there within timeout_ms. Closes the connections. */
static void
producer_finish(struct producer *p, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    while (producer_unanswered(p) > 0 && bb_now_ms() < deadline)
        producer_read(p, (int)(deadline - bb_now_ms()));
    ck_assert_msg(producer_unanswered(p) == 0,
                  "%d puts unanswered %d ms after the store came back "
                  "(%zu acknowledged)",
                  producer_unanswered(p), timeout_ms, p->acked.n);
    for (int k = 0; k < NCONNS; k++) {
        bb_close(p->conns[k]);
        p->conns[k] = NULL;
    }
}

/* ---- daemons ---- */

/* Counts how many times needle is in the daemon's log. */
static int
log_count(const struct bb_daemon *d, const char *needle)
{
    char *log = bb_log(d);
    int n = 0;

    for (const char *p = log; (p = strstr(p, needle)) != NULL;
         p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* ---- a. kill -9 of asyncqd, a new one on the same database ---- */

#define NAP_JOBS 6
#define NAP_CONSUMERS 2

START_TEST(kill_9_of_asyncqd_loses_no_job_and_reruns_the_running_ones)
{
    struct bbpg *s;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t ids[NAP_JOBS], later;
    char *cfg;
    json_t *r;
    int running = 0;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    bbpg_start(s, false);
    ck_assert_int_ge(
        asprintf(&cfg,
                 PG_CONFIG("'queues':{'nap':{'kind':'sleep','consumers':%d,"
                           "'retries':3}}"),
                 bbpg_conninfo(s), NAP_CONSUMERS),
        0);
    d = bb_startq("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < NAP_JOBS; i++)
        ids[i] = bb_put_job(
            c, bb_jsonq("{'queue':'nap','args':{'seconds':1.0}}"), REPLY_MS);
    /* Acknowledged at commit: every one is in the table already. */
    ck_assert_int_eq(bbpg_int(s, "SELECT count(*) FROM asyncq.jobs"), NAP_JOBS);
    /* Two run (the first two: FIFO), their start is written. */
    for (int i = 0; i < NAP_CONSUMERS; i++)
        bb_await_state(c, ids[i], "running", 5000);
    await_table_count(s, STATE_RUNNING, NAP_CONSUMERS, 5000);
    bb_close(c);
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, KILL_TIMEOUT_MS), 128 + SIGKILL);
    bb_free(d);

    d = bb_startq("%s", cfg); /* restored: it answered a ping */
    c = bb_connect(d);
    r = bb_result_within(c, "wait",
                         json_pack("{s:[I,I,I,I,I,I],s:f}", "jobs", ids[0],
                                   ids[1], ids[2], ids[3], ids[4], ids[5],
                                   "timeout", 20.0),
                         25000);
    ck_assert_int_eq(json_array_size(r), NAP_JOBS);
    for (int i = 0; i < NAP_JOBS; i++) {
        json_t *rec = json_array_get(r, (size_t)i);

        ck_assert_msg(bb_int_at(rec, "job") == ids[i] &&
                          strcmp(bb_str_at(rec, "state"), "done") == 0,
                      "after kill -9: %s", bb_dump(rec));
        /* The attempt the crash cut short counted. */
        if (bb_int_at(rec, "attempts") == 2)
            running++;
        else
            ck_assert_msg(bb_int_at(rec, "attempts") == 1, "after kill -9: %s",
                          bb_dump(rec));
    }
    ck_assert_int_eq(running, NAP_CONSUMERS);
    json_decref(r);
    /* Done in the table, once each; a new id follows the restored ones. */
    await_table_count(s, STATE_DONE, NAP_JOBS, 5000);
    ck_assert_int_eq(bbpg_int(s, "SELECT count(*) FROM asyncq.jobs"), NAP_JOBS);
    ck_assert_int_eq(
        bbpg_int(s, "SELECT count(*) FROM asyncq.jobs WHERE attempts = 2"),
        NAP_CONSUMERS);
    later = bb_put_job(c, bb_jsonq("{'queue':'nap','args':{'seconds':0}}"),
                       REPLY_MS);
    ck_assert_msg(later > ids[NAP_JOBS - 1],
                  "id %lld after the restart, not above %lld", (long long)later,
                  (long long)ids[NAP_JOBS - 1]);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    bbpg_free(s);
}
END_TEST

/* ---- b. the server restarted under producers ---- */

#define ECHO_QUEUE "'queues':{'default':{'kind':'echo','consumers':2}}"
#define PRODUCE_MS 300

START_TEST(server_restart_under_producers_delays_puts_and_loses_none)
{
    struct producer p;
    struct bbpg *s;
    struct bb_daemon *d;
    size_t before;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    bbpg_start(s, false);
    d = bb_startq(PG_CONFIG(ECHO_QUEUE), bbpg_conninfo(s));
    producer_open(&p, d);
    producer_run(&p, bb_now_ms() + PRODUCE_MS);
    ck_assert_msg(p.acked.n > 0, "no put acknowledged before the stop");

    bbpg_stop(s);
    /* Replies to what committed before the stop arrive at once; from then
     * on the puts wait, unanswered, without an error. */
    producer_run(&p, bb_now_ms() + 200);
    before = p.acked.n;
    producer_run(&p, bb_now_ms() + 500);
    ck_assert_msg(p.acked.n == before,
                  "%zu puts acknowledged while the server was down",
                  p.acked.n - before);
    ck_assert_int_eq(producer_unanswered(&p), NCONNS * WINDOW);

    bbpg_restart(s);
    producer_finish(&p, RECOVER_MS);
    ck_assert_msg(p.acked.n > before, "no put acknowledged after the restart");
    ids_assert_unique(&p.acked);
    assert_table_holds(s, &p.acked);
    await_table_count(s, STATE_DONE, (long long)p.acked.n, RECOVER_MS);
    ck_assert_msg(bb_log_has(d, "store: postgres:"),
                  "the log does not mention the store");
    fprintf(stderr, "bb.pg: server restart: %zu acknowledged, 0 lost\n",
            p.acked.n);
    ck_assert_int_eq(bb_stop(d), 0);
    free(p.acked.v);
    bbpg_free(s);
}
END_TEST

/* ---- c. failover to a promoted synchronous standby ---- */

/* Two nodes (n1, n2) share the schema, each with its producers: both
 * reconnect through the multi-host conninfo to the promoted standby. */
START_TEST(failover_to_a_promoted_sync_standby_loses_no_acknowledged_job)
{
    static const char *const nodes[] = {"n1", "n2"};
    struct producer p[2];
    struct ids all = {0};
    struct bbpg *primary, *standby;
    struct bb_daemon *d[2];
    char conninfo[256], server[64];
    size_t before[2];

    if (!bbpg_available())
        return;
    primary = bbpg_new();
    standby = bbpg_new();
    bbpg_start(primary, true);
    bbpg_start_standby(standby, primary);
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=postgres "
             "user=postgres target_session_attrs=read-write",
             bbpg_port(primary), bbpg_port(standby));
    for (int k = 0; k < 2; k++) {
        d[k] = bb_startq(PG_CONFIG_NODE(ECHO_QUEUE), conninfo, nodes[k]);
        producer_open(&p[k], d[k]);
    }
    for (int k = 0; k < 2; k++) {
        producer_run(&p[k], bb_now_ms() + PRODUCE_MS);
        ck_assert_msg(p[k].acked.n > 0,
                      "%s: no put acknowledged before the failover", nodes[k]);
    }

    bbpg_kill(primary);
    for (int k = 0; k < 2; k++)
        before[k] = p[k].acked.n;
    bbpg_promote(standby);
    for (int k = 0; k < 2; k++)
        producer_run(&p[k], bb_now_ms() + PRODUCE_MS);
    snprintf(server, sizeof server, "127.0.0.1:%d", bbpg_port(standby));
    for (int k = 0; k < 2; k++) {
        producer_finish(&p[k], RECOVER_MS);
        ck_assert_msg(p[k].acked.n > before[k],
                      "%s: no put acknowledged after the promotion", nodes[k]);
        ck_assert_msg(bb_log_has(d[k], server),
                      "%s: the log does not name the promoted server %s",
                      nodes[k], server);
        for (size_t i = 0; i < p[k].acked.n; i++)
            ids_add(&all, p[k].acked.v[i]);
    }
    ids_assert_unique(&all);
    /* Every acknowledged commit reached the standby before its answer. */
    assert_table_holds(standby, &all);
    await_table_count(standby, STATE_DONE, (long long)all.n, RECOVER_MS);
    fprintf(stderr, "bb.pg: failover: %zu acknowledged on 2 nodes, 0 lost\n",
            all.n);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(bb_stop(d[k]), 0);
        free(p[k].acked.v);
    }
    free(all.v);
    bbpg_free(primary);
    bbpg_free(standby);
}
END_TEST

/* ---- d. asyncqd started before its server ---- */

struct log_lines {
    const struct bb_daemon *d;
    int want;
};

static bool
log_has_lines(void *arg)
{
    struct log_lines *l = arg;

    return log_count(l->d, "store: postgres:") >= l->want;
}

START_TEST(asyncqd_started_before_its_server_retries_then_serves)
{
    struct log_lines lines;
    struct bbpg *s;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *r;

    if (!bbpg_available())
        return;
    s = bbpg_new(); /* its port, nothing listening */
    d = bb_spawnq(PG_CONFIG(ECHO_QUEUE), bbpg_conninfo(s));
    /* It retries, saying so each time (backoff from 100 ms), and serves
     * nobody meanwhile: its jobs are not restored yet. */
    lines = (struct log_lines){.d = d, .want = 3};
    ck_assert_msg(bb_poll(log_has_lines, &lines, 10000),
                  "asyncqd did not log 3 connect attempts in 10 s");
    ck_assert_msg(!bb_await_up(d, 500),
                  "asyncqd answered before its server was there");
    ck_assert(bb_pid_alive(bb_pid(d)));

    bbpg_start(s, false);
    ck_assert_msg(bb_await_up(d, RECOVER_MS),
                  "asyncqd did not serve within %d ms of its server",
                  RECOVER_MS);
    c = bb_connect(d);
    r = bb_result(c, "put", bb_jsonq("{'args':{'a':1},'wait':true}"));
    ck_assert_str_eq(bb_str_at(r, "state"), "done");
    await_table_count(s, STATE_DONE, 1, 5000);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bbpg_free(s);
}
END_TEST

START_TEST(sigterm_stops_asyncqd_waiting_for_its_server)
{
    struct log_lines lines;
    struct bbpg *s;
    struct bb_daemon *d;
    int st;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    d = bb_spawnq(PG_CONFIG(ECHO_QUEUE), bbpg_conninfo(s));
    lines = (struct log_lines){.d = d, .want = 1};
    ck_assert_msg(bb_poll(log_has_lines, &lines, 10000),
                  "asyncqd did not log a connect attempt in 10 s");
    /* It stops at once (docs/durability.md): a stop by a signal, exit 0,
     * saying why. */
    bb_signal(d, SIGTERM);
    st = bb_wait_exit(d, 10000);
    ck_assert_msg(st == 0,
                  "asyncqd waiting for its server: exit %d at SIGTERM, not 0",
                  st);
    ck_assert_msg(bb_log_has(d, "stopped by SIGTERM"),
                  "the log does not say SIGTERM stopped the start");
    bb_free(d);
    bbpg_free(s);
}
END_TEST

Suite *
bb_pg_suite(void)
{
    Suite *s = suite_create("bb_pg");
    struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"kill9", kill_9_of_asyncqd_loses_no_job_and_reruns_the_running_ones,
         90},
        {"restart", server_restart_under_producers_delays_puts_and_loses_none,
         120},
        {"failover",
         failover_to_a_promoted_sync_standby_loses_no_acknowledged_job, 120},
        {"down", asyncqd_started_before_its_server_retries_then_serves, 90},
        {"down_sigterm", sigterm_stops_asyncqd_waiting_for_its_server, 60},
    };

    /* A case per test: the teardown (in the runner) kills the servers a
     * failed test left, before the next one picks its ports. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);

        tcase_add_unchecked_fixture(tc, bbpg_setup, bbpg_teardown);
        tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
