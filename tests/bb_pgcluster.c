/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_pgcluster.c: what asyncqd nodes sharing one schema agree on
 * (lib/pgcluster.h), against the real asyncqd and a throw-away PostgreSQL
 * (tests/bbpg.h): schedules fire only on the holder of the schedules lock,
 * from the last fire in S.schedules (catch_up, and overlap with a job
 * another node runs); pause and resume reach a node by NOTIFY, are
 * written to S.queues and read back by a node started later; maxsize
 * counts the unfinished rows other nodes hold. First with one asyncqd
 * and the test's own session as the other nodes (locks, rows, NOTIFY),
 * then with two or three asyncqd nodes: one fire per second, also after
 * kill -9 of the leader; a pause on one node stops another's consumers;
 * maxsize bounds puts across nodes. One server for the suite, a schema
 * per test; nodes poll and beat every 100 ms (ASYNCQ_PG_POLL_MS,
 * ASYNCQ_PG_LEASE_RENEW_MS). Skipped, saying why, only when PostgreSQL 15
 * cannot be installed.
 */
#include <check.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbpg.h"
#include "bbsuites.h"
#include "pg_schema.h"

#define ROW_MS 10000
#define QUIET_MS 1500 /* what must not happen does not, for that long */

static struct bbpg *pg; /* the suite's server */

static void
suite_setup(void)
{
    bbpg_suite_setup(&pg);
    setenv("ASYNCQ_PG_POLL_MS", "100", 1);
    /* Nodes see each other (and give puts to the pool) within 3 of these. */
    setenv("ASYNCQ_PG_LEASE_RENEW_MS", "100", 1);
}

static void
suite_teardown(void)
{
    bbpg_suite_teardown(&pg);
}

static void
session_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK ||
                      PQresultStatus(res) == PGRES_COMMAND_OK,
                  "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
}

/* The schedule named (new ref). */
static json_t *
schedule(struct bb_conn *c, const char *name)
{
    json_t *r = bb_result(c, "schedules", bb_jsonq("{'name':'%s'}", name));
    json_t *s = json_incref(json_array_get(json_object_get(r, "schedules"), 0));

    json_decref(r);
    ck_assert_ptr_nonnull(s);
    return s;
}

static json_int_t
sched_int(struct bb_conn *c, const char *name, const char *field)
{
    json_t *s = schedule(c, name);
    json_int_t n = bb_int_at(s, field);

    json_decref(s);
    return n;
}

struct counter {
    struct bb_conn *c;
    const char *name, *field;
    json_int_t at_least;
};

static bool
counter_reached(void *arg)
{
    struct counter *u = arg;

    return sched_int(u->c, u->name, u->field) >= u->at_least;
}

static bool
queue_paused(struct bb_conn *c, const char *queue)
{
    json_t *r = bb_result(c, "stats", NULL);
    json_t *q = json_object_get(json_object_get(r, "queues"), queue);
    bool paused = json_is_true(json_object_get(q, "paused"));

    ck_assert_msg(q != NULL, "stats: no queue %s", queue);
    json_decref(r);
    return paused;
}

struct pause_want {
    struct bb_conn *c;
    const char *queue;
    bool paused;
};

static bool
pause_is(void *arg)
{
    struct pause_want *w = arg;

    return queue_paused(w->c, w->queue) == w->paused;
}

/* Polls until queue's paused is paused on d (c: a connection to it). */
static void
await_paused(struct bb_daemon *d, struct bb_conn *c, const char *queue,
             bool paused)
{
    struct pause_want w = {c, queue, paused};
    char *log;

    if (bb_poll(pause_is, &w, ROW_MS))
        return;
    log = bb_log(d);
    ck_abort_msg("queue %s: paused is not %s; log:\n%s", queue,
                 paused ? "true" : "false", log);
}

struct job_left {
    struct bb_conn *c;
    json_int_t id;
};

static bool
job_left_pending(void *arg)
{
    struct job_left *j = arg;
    json_t *st = bb_job_status(j->c, j->id);
    bool left = strcmp(bb_str_at(st, "state"), "pending") != 0;

    json_decref(st);
    return left;
}

/* Once d counts 2 unfinished jobs of queue cap (maxsize 2): a nowait put
 * on c is refused (-32000) and a put on p waits. Returns that put's call,
 * for the caller to await once there is room. */
static json_int_t
put_waits_while_cap_full(struct bb_daemon *d, struct bb_conn *c,
                         struct bb_conn *p)
{
    json_int_t call;
    json_t *reply;

    ck_assert(bb_log_wait(d, "cluster: queue cap: 2 unfinished jobs", ROW_MS));
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue': 'cap', 'nowait': true}")),
        -32000);
    call = bb_send_call(p, "put", bb_jsonq("{'queue': 'cap'}"));
    reply = bb_wait_reply(p, call, QUIET_MS);
    ck_assert_msg(reply == NULL, "put answered while queue cap was full");
    return call;
}

/* A row of schema's jobs for a job of another node, alive (seen and
 * leased an hour ahead: no node sweeps it): queue, state, node. */
static void
insert_job(const char *schema, long long id, const char *queue, int state,
           const char *node)
{
    bbpg_exec(pg,
              "INSERT INTO %s.nodes (node, started, seen) VALUES ('%s', "
              "now(), now() + interval '1 hour') ON CONFLICT (node) DO "
              "NOTHING",
              schema, node);
    bbpg_exec(pg,
              "INSERT INTO %s.jobs (id, queue, kind, state, priority, "
              "attempts, retries, retried, timeout_us, created, node, "
              "lease_deadline, args) VALUES (%lld, '%s', 0, %d, 0, 1, 0, 0, "
              "-1, now(), '%s', now() + interval '1 hour', '{}')",
              schema, id, queue, state, node);
}

/* The schedules lock held by the test's session: the node does not fire.
 * S.schedules says tick last fired 10 s ago, making a job another node
 * still runs. Once the session ends, the node leads: catch_up fires the
 * missed times once, but overlap "skip" waits for that job, which it does
 * not hold, until its row is finished; then the node fires every second. */
START_TEST(schedules_fire_on_the_lock_holder_from_the_last_fire_read)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *holder;
    char sql[160];
    struct counter skipped, fired;

    if (!bbpg_available())
        return;
    holder = bbpg_cluster_session(pg);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)",
             (long long)aq_pg_schedules_lock_key("t_lead"));
    session_exec(holder, sql);
    d = bbpg_cluster_start(pg, "t_lead", "n1",
                           "'queues': {'default': {'kind': 'echo', "
                           "'consumers': 1}}, 'schedules': {'tick': "
                           "{'cron': '@every 1s'}}");
    c = bb_connect(d);
    insert_job("t_lead", 900001, "default", 3, "gone");
    bbpg_exec(pg,
              "INSERT INTO t_lead.schedules VALUES ('tick', now() - interval "
              "'10 seconds', 900001)");
    fired = (struct counter){c, "tick", "fired", 1};
    ck_assert_msg(!bb_poll(counter_reached, &fired, QUIET_MS),
                  "fired while another session held the lock");
    ck_assert_int_eq(
        bbpg_int(pg, "SELECT count(*) FROM t_lead.jobs WHERE id <> 900001"), 0);
    PQfinish(holder);
    ck_assert(bb_log_wait(d, "schedules: this node fires them", ROW_MS));
    skipped = (struct counter){c, "tick", "skipped", 2};
    ck_assert(bb_poll(counter_reached, &skipped, ROW_MS));
    ck_assert_int_eq(sched_int(c, "tick", "fired"), 0);
    bbpg_exec(pg,
              "UPDATE t_lead.jobs SET state = 4, finished = now() WHERE id = "
              "900001");
    fired.at_least = 2;
    ck_assert(bb_poll(counter_reached, &fired, ROW_MS));
    bbpg_await_int(pg, 1, ROW_MS,
                   "SELECT count(*) FROM t_lead.schedules s JOIN t_lead.jobs j "
                   "ON j.id = s.last_job WHERE j.id <> 900001");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Another node's pause (a NOTIFY "P work") stops this node's consumers
 * and its resume ("R work") starts them; this node's pause is written to
 * S.queues and told with a NOTIFY; a node started while a queue is paused
 * starts it paused, and a resume on it runs the job. */
START_TEST(pause_and_resume_reach_every_node)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *listener;
    PGnotify *n;
    struct job_left left;
    json_int_t id;
    int64_t deadline;
    static const char rest[] = "'queues': {'work': {'kind': 'echo', "
                               "'consumers': 1}}";

    if (!bbpg_available())
        return;
    d = bbpg_cluster_start(pg, "t_pause", "n1", rest);
    c = bb_connect(d);
    bbpg_exec(pg, "SELECT pg_notify('t_pause_events', 'P work')");
    await_paused(d, c, "work", true);
    id = bb_put_job(c, bb_jsonq("{'queue': 'work'}"), 5000);
    left = (struct job_left){c, id};
    ck_assert_msg(!bb_poll(job_left_pending, &left, QUIET_MS),
                  "job %lld ran while the queue was paused", (long long)id);
    bbpg_exec(pg, "SELECT pg_notify('t_pause_events', 'R work')");
    bb_await_state(c, id, "done", ROW_MS);

    /* pause here: a row and a NOTIFY for the other nodes. */
    listener = bbpg_cluster_session(pg);
    session_exec(listener, "LISTEN t_pause_events");
    json_decref(bb_result(c, "pause", bb_jsonq("{'queue': 'work'}")));
    bbpg_await_int(pg, 1, ROW_MS,
                   "SELECT count(*) FROM t_pause.queues WHERE name = 'work' "
                   "AND paused");
    deadline = bb_now_ms() + ROW_MS;
    while ((n = PQnotifies(listener)) == NULL && bb_now_ms() < deadline) {
        ck_assert_int_eq(PQconsumeInput(listener), 1);
        if ((n = PQnotifies(listener)) != NULL)
            break;
        {
            struct pollfd pfd = {PQsocket(listener), POLLIN, 0};

            poll(&pfd, 1, 100); /* the NOTIFY's bytes, or a deadline */
        }
    }
    ck_assert_msg(n != NULL, "no NOTIFY on t_pause_events");
    ck_assert_str_eq(n->extra, "P work");
    PQfreemem(n);
    PQfinish(listener);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* Started while paused: paused. */
    d = bbpg_cluster_start(pg, "t_pause", "n1", rest);
    c = bb_connect(d);
    await_paused(d, c, "work", true);
    id = bb_put_job(c, bb_jsonq("{'queue': 'work'}"), 5000);
    left = (struct job_left){c, id};
    ck_assert(!bb_poll(job_left_pending, &left, QUIET_MS));
    json_decref(bb_result(c, "resume", bb_jsonq("{'queue': 'work'}")));
    bb_await_state(c, id, "done", ROW_MS);
    bbpg_await_int(pg, 0, ROW_MS,
                   "SELECT count(*) FROM t_pause.queues WHERE paused");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* maxsize 2 and two unfinished rows another node holds: a nowait put is
 * refused -32000, a put waits; once those rows finish (and a NOTIFY "f"
 * says so), the put goes on. */
START_TEST(maxsize_counts_the_jobs_other_nodes_hold)
{
    struct bb_daemon *d;
    struct bb_conn *c, *p;
    json_int_t call;
    json_t *reply;

    if (!bbpg_available())
        return;
    d = bbpg_cluster_start(pg, "t_max", "n1",
                           "'log': {'level': 'debug'}, 'queues': {'cap': "
                           "{'kind': 'echo', 'consumers': 0, 'maxsize': 2}}");
    c = bb_connect(d);
    p = bb_connect(d);
    insert_job("t_max", 900001, "cap", 2, "other");
    insert_job("t_max", 900002, "cap", 3, "other");
    call = put_waits_while_cap_full(d, c, p);
    bbpg_exec(pg,
              "UPDATE t_max.jobs SET state = 4 WHERE id IN (900001, 900002); "
              "SELECT pg_notify('t_max_events', 'f')");
    reply = bb_wait_reply(p, call, ROW_MS);
    ck_assert_msg(reply != NULL && json_object_get(reply, "result") != NULL,
                  "put not answered once there was room");
    json_decref(reply);
    bb_close(p);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- several asyncqd nodes ---- */

#define TICK_REST                                                              \
    "'queues': {'default': {'kind': 'echo', 'consumers': 1}}, "                \
    "'schedules': {'tick': {'cron': '@every 1s'}}"

/* Seconds in which tick made more than one job (each fire is one job put
 * at its second; a catch_up fire after a takeover is in a second the
 * previous leader did not fire in). */
#define TWICE_SQL                                                              \
    "SELECT count(*) FROM (SELECT 1 FROM t_once.jobs WHERE name = 'tick' "     \
    "GROUP BY date_trunc('second', created) HAVING count(*) > 1) AS x"

static struct bb_daemon *
leader_of(struct bb_daemon **d, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] != NULL && bb_log_has(d[i], "schedules: this node fires")) {
            *at = i;
            return d[i];
        }
    }
    return NULL;
}

struct leader_want {
    struct bb_daemon **d;
    size_t n, at;
};

static bool
has_leader(void *arg)
{
    struct leader_want *w = arg;

    return leader_of(w->d, w->n, &w->at) != NULL;
}

/* Node seer has seen node seen (its heartbeat after seen's start):
 * from then on it gives puts it does not run to the pool. */
static void
await_seen(const char *schema, const char *seer, const char *seen)
{
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT (a.seen > b.started)::int FROM %s.nodes a, %s.nodes b "
        "WHERE a.node = '%s' AND b.node = '%s'",
        schema, schema, seer, seen);
}

/* Three nodes with the same every-second schedule: one fires, once per
 * second. kill -9 of that one: another takes over, and from then on
 * each second is fired once again. */
START_TEST(schedules_fire_once_across_nodes_and_after_the_leader_dies)
{
    struct bb_daemon *d[3];
    struct leader_want w = {d, 3, 0};
    long long n;
    size_t first;

    if (!bbpg_available())
        return;
    d[0] = bbpg_cluster_start(pg, "t_once", "n1", TICK_REST);
    d[1] = bbpg_cluster_start(pg, "t_once", "n2", TICK_REST);
    d[2] = bbpg_cluster_start(pg, "t_once", "n3", TICK_REST);
    ck_assert(bb_poll(has_leader, &w, ROW_MS));
    first = w.at;
    bbpg_await_int(pg, 1, ROW_MS,
                   "SELECT (count(*) >= 4)::int FROM t_once.jobs WHERE name = "
                   "'tick' AND state = 4");
    ck_assert_int_eq(bbpg_int(pg, TWICE_SQL), 0);
    for (size_t i = 0; i < 3; i++)
        if (i != first)
            ck_assert(!bb_log_has(d[i], "schedules: this node fires"));

    bb_signal(d[first], SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d[first], ROW_MS), 128 + SIGKILL);
    bb_free(d[first]);
    d[first] = NULL;
    ck_assert(bb_poll(has_leader, &w, ROW_MS));
    ck_assert_uint_ne(w.at, first);
    n = bbpg_int(pg, "SELECT count(*) FROM t_once.jobs WHERE name = 'tick'");
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT (count(*) >= %lld)::int FROM t_once.jobs WHERE name = "
        "'tick' AND state = 4",
        n + 4);
    ck_assert_int_eq(bbpg_int(pg, TWICE_SQL), 0);
    for (size_t i = 0; i < 3; i++)
        if (d[i] != NULL)
            ck_assert_int_eq(bb_stop(d[i]), 0);
}
END_TEST

struct state_left {
    json_int_t id;
    int state;
};

static bool
row_left_state(void *arg)
{
    struct state_left *l = arg;
    long long st;

    return bbpg_try_int(pg, &st,
                        "SELECT state FROM t_share.jobs WHERE id = %lld",
                        (long long)l->id) &&
           st != l->state;
}

/* A pause on node A (which runs nothing of work) stops node B's
 * consumers: a job put on A waits in the pool, B does not take it; a node
 * C started meanwhile starts paused; a resume on A lets B run it. */
START_TEST(pause_on_a_node_stops_the_consumers_of_another)
{
    struct bb_daemon *a, *b, *c3;
    struct bb_conn *ca, *cb, *cc;
    struct state_left left;
    json_int_t id;

    if (!bbpg_available())
        return;
    a = bbpg_cluster_start(pg, "t_share", "a",
                           "'queues': {'work': {'kind': 'echo', "
                           "'consumers': 0}}");
    b = bbpg_cluster_start(pg, "t_share", "b",
                           "'queues': {'work': {'kind': 'echo', "
                           "'consumers': 1}}");
    ca = bb_connect(a);
    cb = bb_connect(b);
    await_seen("t_share", "a", "b");
    json_decref(bb_result(ca, "pause", bb_jsonq("{'queue': 'work'}")));
    await_paused(b, cb, "work", true);
    id = bb_put_job(ca, bb_jsonq("{'queue': 'work'}"), 5000);
    left = (struct state_left){id, 2};
    ck_assert_msg(!bb_poll(row_left_state, &left, QUIET_MS),
                  "job %lld left the pool while work was paused",
                  (long long)id);
    c3 = bbpg_cluster_start(pg, "t_share", "c",
                            "'queues': {'work': {'kind': 'echo', "
                            "'consumers': 1}}");
    cc = bb_connect(c3);
    await_paused(c3, cc, "work", true);
    ck_assert(!bb_poll(row_left_state, &left, QUIET_MS));
    json_decref(bb_result(ca, "resume", bb_jsonq("{'queue': 'work'}")));
    await_paused(b, cb, "work", false);
    await_paused(c3, cc, "work", false);
    bbpg_await_int(pg, 4, ROW_MS,
                   "SELECT state FROM t_share.jobs WHERE id = %lld",
                   (long long)id);
    bb_close(cc);
    bb_close(cb);
    bb_close(ca);
    ck_assert_int_eq(bb_stop(c3), 0);
    ck_assert_int_eq(bb_stop(b), 0);
    ck_assert_int_eq(bb_stop(a), 0);
}
END_TEST

/* maxsize 2 on both nodes: two jobs put on A (which runs none: they wait
 * in the pool) fill the queue for B too: a nowait put on B is refused
 * -32000 and a put waits, until A runs them (scaled to one consumer). */
START_TEST(maxsize_bounds_puts_across_nodes)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb, *pb;
    json_int_t call;
    json_t *reply;
    static const char rest[] = "'log': {'level': 'debug'}, 'queues': {'cap': "
                               "{'kind': 'echo', 'consumers': 0, "
                               "'maxsize': 2}}";

    if (!bbpg_available())
        return;
    a = bbpg_cluster_start(pg, "t_cap", "a", rest);
    b = bbpg_cluster_start(pg, "t_cap", "b", rest);
    ca = bb_connect(a);
    cb = bb_connect(b);
    pb = bb_connect(b);
    await_seen("t_cap", "a", "b");
    bb_put_job(ca, bb_jsonq("{'queue': 'cap'}"), 5000);
    bb_put_job(ca, bb_jsonq("{'queue': 'cap'}"), 5000);
    call = put_waits_while_cap_full(b, cb, pb);
    json_decref(
        bb_result(ca, "scale", bb_jsonq("{'queue': 'cap', 'consumers': 1}")));
    reply = bb_wait_reply(pb, call, ROW_MS);
    ck_assert_msg(reply != NULL && json_object_get(reply, "result") != NULL,
                  "put on b not answered once a ran the jobs");
    json_decref(reply);
    bbpg_await_int(pg, 3, ROW_MS, "SELECT count(*) FROM t_cap.jobs");
    bb_close(pb);
    bb_close(cb);
    bb_close(ca);
    ck_assert_int_eq(bb_stop(b), 0);
    ck_assert_int_eq(bb_stop(a), 0);
}
END_TEST

Suite *
bb_pgcluster_suite(void)
{
    Suite *s = suite_create("bb_pgcluster");
    TCase *tc = tcase_create("pgcluster");

    tcase_set_timeout(tc, 180);
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_test(tc,
                   schedules_fire_on_the_lock_holder_from_the_last_fire_read);
    tcase_add_test(tc, pause_and_resume_reach_every_node);
    tcase_add_test(tc, maxsize_counts_the_jobs_other_nodes_hold);
    tcase_add_test(tc,
                   schedules_fire_once_across_nodes_and_after_the_leader_dies);
    tcase_add_test(tc, pause_on_a_node_stops_the_consumers_of_another);
    tcase_add_test(tc, maxsize_bounds_puts_across_nodes);
    suite_add_tcase(s, tc);
    return s;
}
