/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_pgshare.c: several asyncqd nodes sharing queues through one
 * PostgreSQL schema (docs/cluster.md "How nodes share a queue"): jobs put
 * on a node without free takers run on another, exactly once; claims
 * follow priorities; a node killed has its running jobs run again
 * elsewhere (node_lost); a clean stop gives held jobs to the others; a
 * remote worker's get on one node takes a job put on another; node names
 * are unique; NOTIFY "c id" cancels; keys hold across nodes; a node's
 * stale write does not overwrite a row another node took. Nodes are
 * bbpg_core_node daemons on one server (tests/bbpg.h), a schema per test,
 * every wait a poll with a deadline.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbpg.h"
#include "bbsuites.h"

#define ROW_MS 20000
#define RENEW_MS 100
#define POLL_MS 200

static struct bbpg *pg; /* the suite's server */

static void
suite_setup(void)
{
    bbpg_suite_setup(&pg);
}

static void
suite_teardown(void)
{
    bbpg_suite_teardown(&pg);
}

static struct bb_daemon *
node(const char *schema, const char *name, const char *queues)
{
    return bbpg_core_node(pg, schema, name, queues, RENEW_MS, POLL_MS);
}

static json_int_t
put(struct bb_conn *c, const char *params)
{
    return bb_put_job(c, bb_jsonq("%s", params), 10000);
}

/* The node the other one sees alive (puts on it may go to the pool). */
static void
await_peers(const char *schema, int n)
{
    bbpg_await_int(pg, n, ROW_MS,
                   "SELECT count(*) FROM %s.nodes WHERE seen > now() - "
                   "interval '1 second'",
                   schema);
}

static void
scale(struct bb_conn *c, const char *queue, int n)
{
    json_decref(bb_result(
        c, "scale", json_pack("{s:s,s:i}", "queue", queue, "consumers", n)));
}

/* (a) A has no consumer for the queue, B has: every job put on A runs on
 * B, once. */
START_TEST(jobs_put_on_a_node_without_takers_run_on_another_once)
{
    struct bb_daemon *a, *b;
    struct bb_conn *c;

    if (!bbpg_available())
        return;
    b = node("s_a", "B", "{'q': {'kind': 'echo', 'consumers': 2}}");
    a = node("s_a", "A", "{'q': {'kind': 'echo', 'consumers': 0}}");
    await_peers("s_a", 2);
    c = bb_connect(a);
    for (int i = 0; i < 20; i++)
        put(c, "{'queue': 'q', 'args': {'i': 1}}");
    bbpg_await_int(
        pg, 20, ROW_MS,
        "SELECT count(*) FROM s_a.jobs WHERE state = 4 AND node = 'B' "
        "AND attempts = 1");
    ck_assert_int_eq(bbpg_int(pg, "SELECT count(*) FROM s_a.jobs"), 20);
    bb_close(c);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

#define NPUT 1000

/* Sends NPUT puts pipelined on c, then reads their answers: the ids
 * acknowledged, into ids. */
static void
put_pipelined(struct bb_conn *c, json_int_t *ids)
{
    static json_int_t calls[NPUT];

    for (int i = 0; i < NPUT; i++)
        calls[i] = bb_send_call(c, "put", bb_jsonq("{'queue': 'q'}"));
    for (int i = 0; i < NPUT; i++) {
        json_t *m = bb_wait_reply(c, calls[i], 30000);
        json_t *job = json_object_get(json_object_get(m, "result"), "job");

        ck_assert_msg(json_is_integer(job), "put %d not acknowledged", i);
        ids[i] = json_integer_value(job);
        json_decref(m);
    }
}

/* (b) Both nodes run the queue; producers on both put 2000 jobs at once:
 * every job is done exactly once, and the rows are those acknowledged. */
START_TEST(jobs_put_on_both_nodes_run_exactly_once)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    static json_int_t ids[2 * NPUT];
    char *list;
    size_t len = 0;

    if (!bbpg_available())
        return;
    a = node("s_b", "A", "{'q': {'kind': 'echo', 'consumers': 4}}");
    b = node("s_b", "B", "{'q': {'kind': 'echo', 'consumers': 4}}");
    await_peers("s_b", 2);
    ca = bb_connect(a);
    cb = bb_connect(b);
    put_pipelined(ca, ids);
    put_pipelined(cb, ids + NPUT);
    bbpg_await_int(pg, 2 * NPUT, ROW_MS,
                   "SELECT count(*) FROM s_b.jobs WHERE state = 4");
    ck_assert_int_eq(bbpg_int(pg, "SELECT count(*) FROM s_b.jobs"), 2 * NPUT);
    ck_assert_int_eq(
        bbpg_int(pg, "SELECT count(*) FROM s_b.jobs WHERE attempts <> 1"), 0);
    list = malloc(2 * NPUT * 24 + 2);
    list[len++] = '{';
    for (int i = 0; i < 2 * NPUT; i++)
        len += (size_t)sprintf(list + len, "%s%lld", i > 0 ? "," : "",
                               (long long)ids[i]);
    list[len++] = '}';
    list[len] = '\0';
    ck_assert_int_eq(bbpg_int(pg,
                              "SELECT count(DISTINCT id) FROM s_b.jobs WHERE "
                              "id = ANY('%s'::bigint[])",
                              list),
                     2 * NPUT);
    free(list);
    bb_close(ca);
    bb_close(cb);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (c) The pool is taken in priority order: A puts a low then a high
 * priority job while no node runs the queue; once B has a consumer, the
 * high one starts first. */
START_TEST(claims_take_the_pool_by_priority)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    json_int_t low, high;

    if (!bbpg_available())
        return;
    b = node("s_c", "B", "{'q': {'kind': 'sleep', 'consumers': 0}}");
    a = node("s_c", "A", "{'q': {'kind': 'sleep', 'consumers': 0}}");
    await_peers("s_c", 2);
    ca = bb_connect(a);
    cb = bb_connect(b);
    low = put(ca, "{'queue': 'q', 'priority': 10, 'args': {'seconds': 0.3}}");
    high = put(ca, "{'queue': 'q', 'priority': 0, 'args': {'seconds': 0.3}}");
    bbpg_await_int(
        pg, 2, ROW_MS,
        "SELECT count(*) FROM s_c.jobs WHERE node IS NULL AND state = 2");
    scale(cb, "q", 1);
    bbpg_await_int(pg, 2, ROW_MS,
                   "SELECT count(*) FROM s_c.jobs WHERE state = 4");
    ck_assert_int_eq(bbpg_int(pg,
                              "SELECT id FROM s_c.jobs ORDER BY started LIMIT "
                              "1"),
                     high);
    ck_assert_int_eq(bbpg_int(pg,
                              "SELECT count(*) FROM s_c.jobs WHERE node = 'B' "
                              "AND id IN (%lld, %lld)",
                              (long long)low, (long long)high),
                     2);
    bb_close(ca);
    bb_close(cb);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (d) A is killed while running jobs: B sweeps them (the attempt counts,
 * node_lost naming A) and runs them again; none is lost. */
START_TEST(jobs_of_a_killed_node_run_again_on_another)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    json_int_t id[2];

    if (!bbpg_available())
        return;
    b = node("s_d", "B", "{'nap': {'kind': 'sleep', 'consumers': 0}}");
    a = node("s_d", "A", "{'nap': {'kind': 'sleep', 'consumers': 2}}");
    await_peers("s_d", 2);
    ca = bb_connect(a);
    for (int i = 0; i < 2; i++)
        id[i] = put(ca, "{'queue': 'nap', 'args': {'seconds': 60}}");
    bbpg_await_int(
        pg, 2, ROW_MS,
        "SELECT count(*) FROM s_d.jobs WHERE state = 3 AND node = 'A' "
        "AND lease_deadline IS NOT NULL");
    bb_close(ca);
    bb_signal(a, SIGKILL);
    bb_wait_exit(a, 10000);
    bb_free(a);
    /* swept into the pool by B: the attempt counted */
    bbpg_await_int(
        pg, 2, ROW_MS,
        "SELECT count(*) FROM s_d.jobs WHERE state = 2 AND node IS NULL "
        "AND attempts = 1 AND error_code = 'node_lost' AND "
        "error_message LIKE '%%node A%%'");
    cb = bb_connect(b);
    scale(cb, "nap", 2);
    bbpg_await_int(
        pg, 2, ROW_MS,
        "SELECT count(*) FROM s_d.jobs WHERE state = 3 AND node = 'B' "
        "AND id IN (%lld, %lld)",
        (long long)id[0], (long long)id[1]);
    for (int i = 0; i < 2; i++)
        json_decref(bb_result(cb, "cancel", json_pack("{s:I}", "job", id[i])));
    bbpg_await_int(
        pg, 2, ROW_MS,
        "SELECT count(*) FROM s_d.jobs WHERE state = 6 AND node = 'B' "
        "AND attempts = 2");
    bb_close(cb);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (e) A clean stop gives the jobs A held and had not run to the pool:
 * B runs them. */
START_TEST(clean_stop_gives_held_jobs_to_the_other_nodes)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca;

    if (!bbpg_available())
        return;
    b = node("s_e", "B", "{'q': {'kind': 'echo', 'consumers': 1}}");
    a = node("s_e", "A", "{'q': {'kind': 'echo', 'consumers': 0}}");
    await_peers("s_e", 2);
    ca = bb_connect(a);
    /* delayed jobs are held by the node they are put on */
    for (int i = 0; i < 3; i++)
        put(ca, "{'queue': 'q', 'delay': 0.3}");
    bbpg_await_int(pg, 3, ROW_MS,
                   "SELECT count(*) FROM s_e.jobs WHERE node = 'A'");
    bb_close(ca);
    ck_assert_int_eq(bb_stop(a), 0);
    bbpg_await_int(
        pg, 3, ROW_MS,
        "SELECT count(*) FROM s_e.jobs WHERE state = 4 AND node = 'B' "
        "AND attempts = 1");
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (f) A remote worker's get waiting on B takes a job put on A. */
START_TEST(remote_get_on_one_node_takes_a_job_put_on_another)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    json_int_t call, id;
    json_t *m, *jobs;

    if (!bbpg_available())
        return;
    b = node("s_f", "B", "{'r': {'kind': 'remote'}}");
    a = node("s_f", "A", "{'r': {'kind': 'remote'}}");
    await_peers("s_f", 2);
    ca = bb_connect(a);
    cb = bb_connect(b);
    call = bb_send_call(cb, "get", bb_jsonq("{'queue': 'r', 'wait': 15}"));
    id = put(ca, "{'queue': 'r', 'args': {'x': 1}}");
    m = bb_wait_reply(cb, call, 20000);
    jobs = json_object_get(m, "result");
    ck_assert_msg(json_is_array(jobs) && json_array_size(jobs) == 1,
                  "get answered no job");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_array_get(jobs, 0), "job")),
        id);
    json_decref(m);
    json_decref(bb_result(cb, "task_done",
                          json_pack("{s:I,s:{}}", "job", id, "result")));
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT count(*) FROM s_f.jobs WHERE state = 4 AND node = 'B' "
        "AND id = %lld",
        (long long)id);
    bb_close(ca);
    bb_close(cb);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (g) A node of a name already running is refused, naming it; other
 * names run side by side. */
START_TEST(node_names_are_unique_others_run_side_by_side)
{
    struct bb_daemon *a, *b, *again;

    if (!bbpg_available())
        return;
    a = node("s_g", "A", "{'q': {'kind': 'echo'}}");
    b = node("s_g", "B", "{'q': {'kind': 'echo'}}");
    again = bb_spawnq("{'store': {'kind': 'postgres', 'conninfo': '%s', "
                      "'schema': 's_g', 'node': 'A'}}",
                      bbpg_conninfo(pg));
    ck_assert_int_ne(bb_wait_exit(again, 30000), 0);
    ck_assert(bb_log_has(again, "schema s_g: node A is running already"));
    bb_free(again);
    await_peers("s_g", 2);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* (h) NOTIFY "c id" on the schema's channel cancels a job the node
 * holds, as the cancel method would. */
START_TEST(notify_c_cancels_a_job_the_node_holds)
{
    struct bb_daemon *a;
    struct bb_conn *c;
    json_int_t id;

    if (!bbpg_available())
        return;
    a = node("s_h", "A", "{'nap': {'kind': 'sleep', 'consumers': 1}}");
    c = bb_connect(a);
    id = put(c, "{'queue': 'nap', 'args': {'seconds': 60}}");
    bb_await_state(c, id, "running", ROW_MS);
    PQclear(bbpg_query(pg, "SELECT pg_notify('s_h_events', 'c %lld')",
                       (long long)id));
    bb_await_state(c, id, "cancelled", ROW_MS);
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT count(*) FROM s_h.jobs WHERE state = 6 AND id = %lld",
        (long long)id);
    bb_close(c);
    ck_assert_int_eq(bb_stop(a), 0);
}
END_TEST

/* (j) Writes are fenced: once another node holds a row (here the test
 * plays it), the node that ran it does not overwrite it. */
START_TEST(stale_write_does_not_overwrite_a_row_another_node_took)
{
    struct bb_daemon *a;
    struct bb_conn *c;
    json_int_t id, next;

    if (!bbpg_available())
        return;
    a = node("s_j", "A", "{'nap': {'kind': 'sleep', 'consumers': 1}}");
    c = bb_connect(a);
    id = put(c, "{'queue': 'nap', 'args': {'seconds': 0.5}}");
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT count(*) FROM s_j.jobs WHERE state = 3 AND node = 'A' "
        "AND id = %lld",
        (long long)id);
    /* ghost: a live node (seen ahead) that took the row */
    PQclear(bbpg_query(pg, "INSERT INTO s_j.nodes VALUES ('ghost', now(), "
                           "now() + interval '1 hour')"));
    PQclear(bbpg_query(pg, "UPDATE s_j.jobs SET node = 'ghost' WHERE id = %lld",
                       (long long)id));
    bb_await_state(c, id, "done", ROW_MS);
    /* a later job's row committed: the finish before it was sent */
    next = put(c, "{'queue': 'nap', 'args': {'seconds': 0}}");
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT count(*) FROM s_j.jobs WHERE state = 4 AND id = %lld",
        (long long)next);
    ck_assert_int_eq(bbpg_int(pg,
                              "SELECT count(*) FROM s_j.jobs WHERE id = %lld "
                              "AND state = 3 AND node = 'ghost'",
                              (long long)id),
                     1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(a), 0);
}
END_TEST

/* (i) A key names one live job across the nodes: a put on B of a key a
 * job put on A holds is answered as a duplicate naming that job, and
 * the other jobs of its transaction are written. */
START_TEST(key_held_on_another_node_is_a_duplicate)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    json_int_t first, other;
    json_t *r;

    if (!bbpg_available())
        return;
    a = node("s_i", "A", "{'q': {'kind': 'echo', 'consumers': 0}}");
    b = node("s_i", "B", "{'q': {'kind': 'echo', 'consumers': 0}}");
    await_peers("s_i", 2);
    ca = bb_connect(a);
    cb = bb_connect(b);
    first = put(ca, "{'queue': 'q', 'key': 'k1'}");
    r = bb_result(cb, "put", bb_jsonq("{'queue': 'q', 'key': 'k1'}"));
    ck_assert_int_eq(json_integer_value(json_object_get(r, "job")), first);
    ck_assert(json_is_true(json_object_get(r, "duplicate")));
    json_decref(r);
    other = put(cb, "{'queue': 'q', 'key': 'k2'}");
    bbpg_await_int(
        pg, 1, ROW_MS,
        "SELECT count(*) FROM s_i.jobs WHERE id = %lld AND key = 'k2'",
        (long long)other);
    ck_assert_int_eq(bbpg_int(pg, "SELECT count(*) FROM s_i.jobs"), 2);
    bb_close(ca);
    bb_close(cb);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

/* A put whose after names a job this node gave away (now another node's)
 * waits on it in the database: released once it finished, run where a
 * taker is free. */
START_TEST(after_a_job_of_another_node_waits_in_the_database)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca;
    json_int_t first, then;
    json_t *r;

    if (!bbpg_available())
        return;
    b = node("s_k", "B", "{'q': {'kind': 'sleep', 'consumers': 1}}");
    a = node("s_k", "A", "{'q': {'kind': 'sleep', 'consumers': 0}}");
    await_peers("s_k", 2);
    ca = bb_connect(a);
    first = put(ca, "{'queue': 'q', 'args': {'seconds': 0.5}}");
    bbpg_await_int(pg, 0, ROW_MS,
                   "SELECT count(*) FROM s_k.jobs WHERE node = 'A'");
    r = bb_result(
        ca, "put",
        bb_jsonq("{'queue': 'q', 'args': {'seconds': 0}, 'after': [%lld]}",
                 (long long)first));
    then = json_integer_value(json_object_get(r, "job"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "waiting");
    json_decref(r);
    bbpg_await_int(pg, 2, ROW_MS,
                   "SELECT count(*) FROM s_k.jobs WHERE state = 4 AND "
                   "node = 'B'");
    ck_assert_int_eq(bbpg_int(pg,
                              "SELECT count(*) FROM s_k.jobs WHERE id = %lld "
                              "AND started >= (SELECT finished FROM s_k.jobs "
                              "WHERE id = %lld)",
                              (long long)then, (long long)first),
                     1);
    bb_close(ca);
    ck_assert_int_eq(bb_stop(a), 0);
    ck_assert_int_eq(bb_stop(b), 0);
}
END_TEST

Suite *
bb_pgshare_suite(void)
{
    Suite *s = suite_create("bb_pgshare");
    TCase *tc = tcase_create("pgshare");

    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_test(tc, jobs_put_on_a_node_without_takers_run_on_another_once);
    tcase_add_test(tc, jobs_put_on_both_nodes_run_exactly_once);
    tcase_add_test(tc, claims_take_the_pool_by_priority);
    tcase_add_test(tc, jobs_of_a_killed_node_run_again_on_another);
    tcase_add_test(tc, clean_stop_gives_held_jobs_to_the_other_nodes);
    tcase_add_test(tc, remote_get_on_one_node_takes_a_job_put_on_another);
    tcase_add_test(tc, node_names_are_unique_others_run_side_by_side);
    tcase_add_test(tc, notify_c_cancels_a_job_the_node_holds);
    tcase_add_test(tc, key_held_on_another_node_is_a_duplicate);
    tcase_add_test(tc, stale_write_does_not_overwrite_a_row_another_node_took);
    tcase_add_test(tc, after_a_job_of_another_node_waits_in_the_database);
    suite_add_tcase(s, tc);
    return s;
}
