/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_pgremote.c: the methods on jobs a node does not hold, answered
 * from the database (lib/pgremote.h, docs/cluster.md "Methods across
 * nodes"), against the real asyncqd with the postgres store. The test
 * writes the rows other nodes and the pool would hold (node 'other', or
 * NULL) straight into the node's schema with libpq, as the shared-queue
 * model makes them, and checks the node's answers about them: status,
 * wait (woken by an "f" notification, or by the poll without one),
 * cancel (a pool row ends cancelled, a held row is asked of its holder
 * with "c ID"), retry and delete of records ("p QUEUE", "x ID"), list
 * over several states and pages, join of a queue and of a batch, and
 * -32603 "store unavailable" while the server is stopped. The test's own
 * LISTEN connection sees the notifications. Last, two real nodes: a
 * job put on one runs on the other, seen from the first. Node 'other' is
 * given a S.nodes row seen far ahead and its running rows a lease far
 * ahead, so no sweep of a shared-queue node takes them back meanwhile.
 */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bb.h"
#include "bbjson.h"
#include "bbpg.h"
#include "bbsuites.h"

#define ROW_MS 10000
#define REPLY_MS 10000
/* Ids the node never gives (its own come from 1 up). */
#define FAR 1000000000LL

static struct bbpg *pg; /* the suite's server (the runner's) */

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

#define CONFIG                                                                 \
    "{'store': {'kind': 'postgres', 'conninfo': '%s', 'schema': '%s', "        \
    "'node': 'a'}, "                                                           \
    "'queues': {'default': {'kind': 'echo', 'consumers': 1}, "                 \
    "'hold': {'kind': 'echo', 'consumers': 0}, "                               \
    "'lq': {'kind': 'echo', 'consumers': 0}, "                                 \
    "'jq': {'kind': 'echo', 'consumers': 0}}}"

static bool
remote_answers(void *arg)
{
    json_t *reply = bb_call(arg, "status", json_pack("{s:I}", "job", FAR * 2));
    bool ok = json_integer_value(json_object_get(
                  json_object_get(reply, "error"), "code")) == -32004;

    json_decref(reply);
    return ok;
}

/* Until d's session across nodes is connected: a status of a job no
 * node has is -32004, not -32603 "store unavailable: connecting". */
static void
await_remote(struct bb_daemon *d)
{
    struct bb_conn *c = bb_connect(d);

    ck_assert(bb_poll(remote_answers, c, ROW_MS));
    bb_close(c);
}

/* Node a on schema, polling the database every poll_ms. */
static struct bb_daemon *
start(const struct bbpg *s, const char *schema, const char *poll_ms)
{
    struct bb_daemon *d;

    setenv("ASYNCQ_PG_POLL_MS", poll_ms, 1);
    d = bb_startq(CONFIG, bbpg_conninfo(s), schema);
    unsetenv("ASYNCQ_PG_POLL_MS");
    await_remote(d);
    /* Node 'other' is alive for an hour: no sweep takes its rows. */
    bbpg_exec(s,
              "INSERT INTO %s.nodes (node, started, seen) VALUES ('other', "
              "now(), now() + interval '1 hour') ON CONFLICT (node) DO "
              "NOTHING",
              schema);
    return d;
}

/* A row of queue, written as another node (node 'other') or the pool
 * (node NULL) writes it; extra: more "column = value" settings, or "". */
static void
put_row(const struct bbpg *s, const char *schema, long long id,
        const char *queue, int state, const char *node, const char *extra)
{
    bbpg_exec(
        s,
        "INSERT INTO %s.jobs (id, queue, kind, state, priority, attempts, "
        "retries, retried, timeout_us, created, node, args) VALUES "
        "(%lld, '%s', 3, %d, 0, 0, -1, 0, -1, now(), %s, '{\"n\":%lld}')",
        schema, id, queue, state, node != NULL ? node : "NULL", id);
    if (state == 3)
        bbpg_exec(
            s,
            "UPDATE %s.jobs SET started = now(), lease_deadline = now() + "
            "interval '1 hour' WHERE id = %lld",
            schema, id);
    if (extra[0] != '\0')
        bbpg_exec(s, "UPDATE %s.jobs SET %s WHERE id = %lld", schema, extra,
                  id);
}

/* The holder finishes row id (state 4 to 6) and says so, as a node
 * commits a finish: with notify, "f" in the same transaction. */
static void
finish_row(const struct bbpg *s, const char *schema, long long id, int state,
           bool notify)
{
    bbpg_exec(
        s,
        "BEGIN; UPDATE %s.jobs SET state = %d, attempts = attempts + 1, "
        "finished = now(), lease_deadline = NULL, result = '{\"r\":%lld}' "
        "WHERE id = %lld; %s%s%s COMMIT",
        schema, state, id, id, notify ? "SELECT pg_notify('" : "",
        notify ? schema : "", notify ? "_events', 'f');" : "");
}

static json_t *
status_of(struct bb_conn *c, long long id)
{
    return bb_result(c, "status", json_pack("{s:I}", "job", (json_int_t)id));
}

/* ---- notifications, as another node LISTENs for them ---- */

static PGconn *
listener(const struct bbpg *s, const char *schema)
{
    PGconn *conn = PQconnectdb(bbpg_conninfo(s));
    char sql[128];
    PGresult *res;

    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "listen: %s",
                  PQerrorMessage(conn));
    snprintf(sql, sizeof sql, "LISTEN \"%s_events\"", schema);
    res = PQexec(conn, sql);
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return conn;
}

/* Waits for a notification with payload want, skipping others. */
static void
expect_notify(PGconn *conn, const char *want)
{
    int64_t deadline = bb_now_ms() + ROW_MS;

    for (;;) {
        PGnotify *n;
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        int64_t left = deadline - bb_now_ms();

        ck_assert_int_eq(PQconsumeInput(conn), 1);
        while ((n = PQnotifies(conn)) != NULL) {
            bool is = strcmp(n->extra, want) == 0;

            PQfreemem(n);
            if (is)
                return;
        }
        ck_assert_msg(left > 0, "no notification \"%s\" in %d ms", want,
                      ROW_MS);
        poll(&p, 1, (int)left);
    }
}

/* ---- the tests ---- */

/* A finished job's record from the database is its record from memory,
 * field for field: the node's own row, copied under another id (as
 * another node would see it). */
START_TEST(record_from_a_row_is_the_record_from_memory)
{
    static const char *const puts[] = {
        "{'args': {'a': [1, 2.5, 'x']}, 'name': 'nm', 'batch': 'bt', 'key': "
        "'k1', 'priority': -3}",
        "{'queue': 'hold', 'args': {'b': 1}, 'batch': 'bt2'}",
    };
    struct bb_daemon *d;
    struct bb_conn *c;

    if (!bbpg_available())
        return;
    d = start(pg, "r_rec", "60000");
    c = bb_connect(d);
    for (size_t i = 0; i < sizeof puts / sizeof puts[0]; i++) {
        json_int_t id = bb_put_job(c, bb_jsonq("%s", puts[i]), 5000);
        json_t *mem, *db;
        char sql[160];

        if (i == 1) /* a cancelled one: its error */
            json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", id)));
        bb_await_state(c, id, i == 1 ? "cancelled" : "done", 5000);
        snprintf(sql, sizeof sql,
                 "SELECT state FROM r_rec.jobs WHERE id = %lld", (long long)id);
        bbpg_await_text(pg, sql, i == 1 ? "6" : "4", ROW_MS);
        mem = status_of(c, id);
        bbpg_exec(pg,
                  "INSERT INTO r_rec.jobs (id, queue, kind, state, priority, "
                  "due, attempts, retries, retried, timeout_us, created, "
                  "started, finished, node, name, batch, after, after_policy, "
                  "args, result, error_code, error_message) SELECT %lld + id, "
                  "queue, kind, state, priority, due, attempts, retries, "
                  "retried, timeout_us, created, started, finished, 'other', "
                  "name, batch, after, after_policy, args, result, error_code, "
                  "error_message FROM r_rec.jobs WHERE id = %lld",
                  FAR, (long long)id);
        db = status_of(c, FAR + id);
        json_object_set_new(mem, "job", json_integer(FAR + id));
        json_object_del(mem, "key"); /* keys are unique: not copied */
        ck_assert_msg(json_equal(mem, db), "memory %s, database %s",
                      bb_dump(mem), bb_dump(db));
        json_decref(mem);
        json_decref(db);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_pool_and_held_rows)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *r;

    if (!bbpg_available())
        return;
    d = start(pg, "r_status", "60000");
    c = bb_connect(d);
    put_row(pg, "r_status", FAR + 1, "hold", 2, NULL, "name = 'p'");
    put_row(pg, "r_status", FAR + 2, "hold", 3, "'other'", "");
    put_row(pg, "r_status", FAR + 3, "hold", 0, NULL,
            "due = now() + interval '1 hour'");
    r = status_of(c, FAR + 1);
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    ck_assert_str_eq(bb_str_at(r, "queue"), "hold");
    ck_assert_str_eq(bb_str_at(r, "kind"), "echo");
    ck_assert_str_eq(bb_str_at(r, "name"), "p");
    ck_assert_int_eq(bb_int_at(r, "args.n"), FAR + 1);
    json_decref(r);
    r = status_of(c, FAR + 2);
    ck_assert_str_eq(bb_str_at(r, "state"), "running");
    ck_assert(bb_num_at(r, "started") > 0);
    json_decref(r);
    r = status_of(c, FAR + 3);
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    ck_assert(bb_num_at(r, "due") > bb_now_s() + 3000);
    json_decref(r);
    ck_assert_int_eq(bb_error(c, "status", json_pack("{s:I}", "job", FAR + 99)),
                     -32004);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A wait on a job another node runs answers at the "f" of its finish
 * (the poll is a minute away), alongside a job of the node's own. */
START_TEST(wait_wakes_at_the_finish_notification)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t call, own;
    json_t *reply;

    if (!bbpg_available())
        return;
    d = start(pg, "r_wait", "60000");
    c = bb_connect(d);
    own = bb_put_job(c, bb_jsonq("{'args': {'own': 1}}"), 5000);
    put_row(pg, "r_wait", FAR + 1, "hold", 3, "'other'", "");
    call = bb_send_call(
        c, "wait", json_pack("{s:[I,I,I]}", "jobs", FAR + 1, own, FAR + 1));
    ck_assert_ptr_null(bb_wait_reply(c, call, 300));
    finish_row(pg, "r_wait", FAR + 1, 4, true);
    reply = bb_wait_reply(c, call, 5000);
    ck_assert_msg(reply != NULL, "no reply at the notification");
    ck_assert_int_eq(json_array_size(bb_at(reply, "result")), 3);
    ck_assert_int_eq(
        bb_int_at(json_array_get(bb_at(reply, "result"), 0), "job"), FAR + 1);
    ck_assert_str_eq(
        bb_str_at(json_array_get(bb_at(reply, "result"), 0), "state"), "done");
    ck_assert_int_eq(
        bb_int_at(json_array_get(bb_at(reply, "result"), 0), "result.r"),
        FAR + 1);
    ck_assert_int_eq(
        bb_int_at(json_array_get(bb_at(reply, "result"), 1), "job"), own);
    ck_assert_int_eq(
        bb_int_at(json_array_get(bb_at(reply, "result"), 2), "job"), FAR + 1);
    json_decref(reply);
    /* Finished already: at once. Unknown: -32004. A timeout: -32008. */
    reply = bb_result(c, "wait", json_pack("{s:[I]}", "jobs", FAR + 1));
    ck_assert_str_eq(bb_str_at(json_array_get(reply, 0), "state"), "done");
    json_decref(reply);
    ck_assert_int_eq(
        bb_error(c, "wait", json_pack("{s:[I,I]}", "jobs", own, FAR + 99)),
        -32004);
    put_row(pg, "r_wait", FAR + 2, "hold", 3, "'other'", "");
    ck_assert_int_eq(
        bb_error(c, "wait",
                 json_pack("{s:[I],s:f}", "jobs", FAR + 2, "timeout", 0.2)),
        -32008);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Without a notification the poll (100 ms here) finds the finish. */
START_TEST(wait_and_join_wake_at_the_poll_without_notification)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t wait, join, cancel;
    json_t *reply;

    if (!bbpg_available())
        return;
    d = start(pg, "r_poll", "100");
    c = bb_connect(d);
    put_row(pg, "r_poll", FAR + 1, "jq", 3, "'other'", "");
    wait = bb_send_call(c, "wait", json_pack("{s:[I]}", "jobs", FAR + 1));
    join = bb_send_call(c, "join", bb_jsonq("{'queue': 'jq'}"));
    ck_assert_ptr_null(bb_wait_reply(c, wait, 300));
    finish_row(pg, "r_poll", FAR + 1, 5, false);
    reply = bb_wait_reply(c, wait, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(
        bb_str_at(json_array_get(bb_at(reply, "result"), 0), "state"),
        "failed");
    json_decref(reply);
    reply = bb_wait_reply(c, join, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(reply, "result.queue"), "jq");
    json_decref(reply);
    /* A cancel waiting on a holder that died: once the sweep gives its
     * row back to the pool, the poll's cancel ends it there. */
    put_row(pg, "r_poll", FAR + 2, "hold", 2, "'other'", "");
    cancel = bb_send_call(c, "cancel", json_pack("{s:I}", "job", FAR + 2));
    ck_assert_ptr_null(bb_wait_reply(c, cancel, 300));
    bbpg_exec(pg, "UPDATE r_poll.jobs SET node = NULL WHERE id = %lld",
              FAR + 2);
    reply = bb_wait_reply(c, cancel, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(reply, "result.state"), "cancelled");
    json_decref(reply);
    bbpg_is(pg, "SELECT state FROM r_poll.jobs WHERE id = 1000000002", "6");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_pool_row_ends_it_cancelled)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *l;
    json_t *r;
    char sql[200];

    if (!bbpg_available())
        return;
    d = start(pg, "r_cpool", "60000");
    c = bb_connect(d);
    l = listener(pg, "r_cpool");
    put_row(pg, "r_cpool", FAR + 1, "hold", 2, NULL, "");
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", FAR + 1));
    ck_assert_int_eq(bb_int_at(r, "job"), FAR + 1);
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    json_decref(r);
    expect_notify(l, "f");
    snprintf(sql, sizeof sql,
             "SELECT state || ' ' || error_code || ' ' || (finished IS NOT "
             "NULL) || ' ' || (node IS NULL) FROM r_cpool.jobs WHERE id = "
             "%lld",
             FAR + 1);
    bbpg_is(pg, sql, "6 cancelled true true");
    r = status_of(c, FAR + 1);
    ck_assert_str_eq(bb_str_at(r, "error.code"), "cancelled");
    ck_assert_str_eq(bb_str_at(r, "error.message"), "cancelled by request");
    json_decref(r);
    ck_assert_int_eq(bb_error(c, "cancel", json_pack("{s:I}", "job", FAR + 1)),
                     -32009);
    ck_assert_int_eq(bb_error(c, "cancel", json_pack("{s:I}", "job", FAR + 9)),
                     -32004);
    PQfinish(l);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Records no live node holds are dropped past results.ttl (done) or
 * results.failed_ttl (failed, cancelled), as a node drops its own: those
 * a cancel in the database ended, or a node gone for good left. */
START_TEST(old_records_no_node_holds_are_dropped)
{
    struct bb_daemon *d;

    if (!bbpg_available())
        return;
    setenv("ASYNCQ_PG_LEASE_RENEW_MS", "200", 1);
    d = start(pg, "r_drop", "60000");
    unsetenv("ASYNCQ_PG_LEASE_RENEW_MS");
    put_row(pg, "r_drop", FAR + 1, "hold", 6, NULL,
            "finished = now() - interval '8 days'");
    put_row(pg, "r_drop", FAR + 2, "hold", 5, "'other'",
            "finished = now() - interval '8 days'");
    put_row(pg, "r_drop", FAR + 3, "hold", 4, "'gone'",
            "finished = now() - interval '2 hours'");
    put_row(pg, "r_drop", FAR + 4, "hold", 4, NULL,
            "finished = now() - interval '10 minutes'");
    put_row(pg, "r_drop", FAR + 5, "hold", 5, NULL,
            "finished = now() - interval '6 days'");
    /* dropped: the pool's past failed_ttl, the lost node's past ttl;
     * kept: a live node's (it drops its own), those not old enough */
    bbpg_await_text(pg,
                    "SELECT string_agg((id % 10)::text, ',' ORDER BY id) FROM "
                    "r_drop.jobs",
                    "2,4,5", ROW_MS);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A row held by another node: "c ID" asks its holder; the reply comes
 * once the holder has ended it. */
START_TEST(cancel_of_a_held_row_asks_its_holder)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *l;
    json_int_t call;
    json_t *reply;
    char want[48];

    if (!bbpg_available())
        return;
    d = start(pg, "r_cheld", "60000");
    c = bb_connect(d);
    l = listener(pg, "r_cheld");
    put_row(pg, "r_cheld", FAR + 1, "hold", 3, "'other'", "");
    call = bb_send_call(c, "cancel", json_pack("{s:I}", "job", FAR + 1));
    snprintf(want, sizeof want, "c %lld", FAR + 1);
    expect_notify(l, want);
    ck_assert_ptr_null(bb_wait_reply(c, call, 200));
    bbpg_is(pg, "SELECT state FROM r_cheld.jobs", "3"); /* not ours to end */
    finish_row(pg, "r_cheld", FAR + 1, 6, true);
    reply = bb_wait_reply(c, call, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_int_eq(bb_int_at(reply, "result.job"), FAR + 1);
    ck_assert_str_eq(bb_str_at(reply, "result.state"), "cancelled");
    json_decref(reply);
    /* A pending row another node holds is asked of it too. */
    put_row(pg, "r_cheld", FAR + 2, "hold", 2, "'other'", "");
    call = bb_send_call(c, "cancel", json_pack("{s:I}", "job", FAR + 2));
    snprintf(want, sizeof want, "c %lld", FAR + 2);
    expect_notify(l, want);
    bbpg_is(pg, "SELECT state FROM r_cheld.jobs WHERE id = 1000000002", "2");
    PQfinish(l);
    bb_close(c); /* the cancel's call withdrawn with its connection */
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(retry_and_delete_of_records_another_node_wrote)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *l;
    json_t *r;
    char want[48], sql[400];
    char *seq;

    if (!bbpg_available())
        return;
    d = start(pg, "r_retry", "60000");
    c = bb_connect(d);
    l = listener(pg, "r_retry");
    put_row(pg, "r_retry", FAR + 1, "hold", 5, "'other'",
            "attempts = 3, started = now(), finished = now(), error_code = "
            "'exit', error_message = 'exec: exited with status 1', result = "
            "'1', key = 'k'");
    seq =
        bbpg_text(pg, "SELECT seq FROM r_retry.jobs WHERE id = %lld", FAR + 1);
    r = bb_result(c, "retry", json_pack("{s:I}", "job", FAR + 1));
    ck_assert_int_eq(bb_int_at(r, "job"), FAR + 1);
    ck_assert_str_eq(bb_str_at(r, "state"), "pending");
    json_decref(r);
    expect_notify(l, "p hold");
    snprintf(want, sizeof want, "x %lld", FAR + 1);
    expect_notify(l, want);
    snprintf(sql, sizeof sql,
             "SELECT state || ' ' || (node IS NULL) || ' ' || retried || ' ' "
             "|| attempts || ' ' || (result IS NULL) || ' ' || (error_code IS "
             "NULL) || ' ' || (started IS NULL) || ' ' || (finished IS NULL) "
             "|| ' ' || key || ' ' || (seq > %s) FROM r_retry.jobs WHERE id = "
             "%lld",
             seq, FAR + 1);
    bbpg_is(pg, sql, "2 true 1 0 true true true true k true");
    free(seq);
    /* Not finished now: -32012, as delete. */
    ck_assert_int_eq(bb_error(c, "retry", json_pack("{s:I}", "job", FAR + 1)),
                     -32012);
    ck_assert_int_eq(bb_error(c, "delete", json_pack("{s:I}", "job", FAR + 1)),
                     -32012);
    /* With a delay: delayed, due ahead. */
    put_row(pg, "r_retry", FAR + 2, "hold", 6, "'other'",
            "finished = now(), error_code = 'cancelled', error_message = "
            "'cancelled by request'");
    r = bb_result(c, "retry",
                  json_pack("{s:I,s:i}", "job", FAR + 2, "delay", 600));
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    json_decref(r);
    r = status_of(c, FAR + 2);
    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    ck_assert_int_eq(bb_int_at(r, "retried"), 1);
    ck_assert(bb_num_at(r, "due") > bb_now_s() + 500);
    ck_assert_ptr_null(json_object_get(r, "error"));
    json_decref(r);
    /* Delete of a record: the row goes, "x ID" tells its holder. */
    put_row(pg, "r_retry", FAR + 3, "hold", 4, "'other'", "finished = now()");
    r = bb_result(c, "delete", json_pack("{s:I}", "job", FAR + 3));
    ck_assert_int_eq(bb_int_at(r, "job"), FAR + 3);
    ck_assert(json_is_true(bb_at(r, "deleted")));
    json_decref(r);
    snprintf(want, sizeof want, "x %lld", FAR + 3);
    expect_notify(l, want);
    bbpg_is(pg, "SELECT count(*) FROM r_retry.jobs WHERE id = 1000000003", "0");
    ck_assert_int_eq(bb_error(c, "delete", json_pack("{s:I}", "job", FAR + 3)),
                     -32004);
    ck_assert_int_eq(bb_error(c, "retry", json_pack("{s:I}", "job", FAR + 3)),
                     -32004);
    PQfinish(l);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* By queue, cancel, retry and delete reach the rows of other nodes and
 * of the pool too; the reply counts them with the node's own. */
START_TEST(queue_wide_cancel_retry_and_delete_reach_every_row)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    PGconn *l;
    json_t *r;
    char want[48];

    if (!bbpg_available())
        return;
    d = start(pg, "r_queue", "60000");
    c = bb_connect(d);
    l = listener(pg, "r_queue");
    put_row(pg, "r_queue", FAR + 1, "hold", 2, NULL, "");
    put_row(pg, "r_queue", FAR + 2, "hold", 2, "'other'", "");
    put_row(pg, "r_queue", FAR + 3, "hold", 3, "'other'", "");
    put_row(pg, "r_queue", FAR + 4, "hold", 5, "'other'", "finished = now()");
    put_row(pg, "r_queue", FAR + 5, "hold", 5, "'other'", "finished = now()");
    put_row(pg, "r_queue", FAR + 6, "hold", 6, "'other'", "finished = now()");
    put_row(pg, "r_queue", FAR + 7, "jq", 2, NULL, ""); /* another queue */
    /* The pool's pending row ends cancelled, the other node's pending one
     * is asked of it; its running one is left (no running). */
    r = bb_result(c, "cancel", bb_jsonq("{'queue': 'hold'}"));
    ck_assert_int_eq(bb_int_at(r, "cancelled"), 2);
    json_decref(r);
    snprintf(want, sizeof want, "c %lld", FAR + 2);
    expect_notify(l, want);
    bbpg_is(pg,
            "SELECT string_agg(id - 1000000000 || ':' || state, ' ' ORDER BY "
            "id) FROM r_queue.jobs",
            "1:6 2:2 3:3 4:5 5:5 6:6 7:2");
    r = bb_result(c, "cancel", bb_jsonq("{'queue': 'hold', 'running': true}"));
    ck_assert_int_eq(bb_int_at(r, "cancelled"), 2); /* 2 and 3 asked */
    json_decref(r);
    snprintf(want, sizeof want, "c %lld", FAR + 3);
    expect_notify(l, want);
    r = bb_result(c, "retry", bb_jsonq("{'queue': 'hold', 'state': 'failed'}"));
    ck_assert_int_eq(bb_int_at(r, "retried"), 2);
    json_decref(r);
    snprintf(want, sizeof want, "x %lld", FAR + 5);
    expect_notify(l, want);
    bbpg_is(pg,
            "SELECT string_agg(id - 1000000000 || ':' || state || ':' || "
            "coalesce(node, '-') || ':' || retried, ' ' ORDER BY id) FROM "
            "r_queue.jobs WHERE id IN (1000000004, 1000000005)",
            "4:2:-:1 5:2:-:1");
    r = bb_result(c, "delete",
                  bb_jsonq("{'queue': 'hold', 'state': 'cancelled'}"));
    ck_assert_int_eq(bb_int_at(r, "deleted"), 2);
    json_decref(r);
    snprintf(want, sizeof want, "x %lld", FAR + 6);
    expect_notify(l, want);
    bbpg_is(pg,
            "SELECT string_agg((id - 1000000000)::text, ' ' ORDER BY id) FROM "
            "r_queue.jobs",
            "2 3 4 5 7");
    ck_assert_int_eq(bb_error(c, "cancel", bb_jsonq("{'queue': 'nope'}")),
                     -32002);
    PQfinish(l);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The ids of a list page, "1 2 3", and its next ("-" for null). */
static void
list_is(struct bb_conn *c, json_t *params, const char *ids, long long next)
{
    json_t *r = bb_result(c, "list", params);
    json_t *jobs = bb_at(r, "jobs");
    char got[512] = "";

    for (size_t i = 0; i < json_array_size(jobs); i++) {
        char one[32];

        snprintf(one, sizeof one, "%s%lld", i > 0 ? " " : "",
                 (long long)(bb_int_at(json_array_get(jobs, i), "job") - FAR));
        strcat(got, one);
    }
    ck_assert_msg(strcmp(got, ids) == 0, "list: got ids \"%s\", want \"%s\"",
                  got, ids);
    if (next < 0)
        ck_assert(json_is_null(json_object_get(r, "next")));
    else
        ck_assert_int_eq(bb_int_at(r, "next"), FAR + next);
    json_decref(r);
}

START_TEST(list_reads_the_rows_of_every_node)
{
    static const int states[] = {2, 3, 4, 5, 6, 0, 2, 4};
    struct bb_daemon *d;
    struct bb_conn *c;

    if (!bbpg_available())
        return;
    d = start(pg, "r_list", "60000");
    c = bb_connect(d);
    /* Ids FAR + 1 to 8 in queue lq: states above, some the pool's. */
    for (int i = 0; i < 8; i++)
        put_row(pg, "r_list", FAR + 1 + i, "lq", states[i],
                states[i] == 2 && i == 0 ? NULL : "'other'",
                i < 4 ? "name = 'even', batch = 'b'" : "");
    list_is(c, bb_jsonq("{'queue': 'lq'}"), "1 2 3 4 5 6 7 8", -1);
    list_is(c, bb_jsonq("{'queue': 'lq', 'limit': 3}"), "1 2 3", 3);
    list_is(
        c,
        json_pack("{s:s,s:i,s:I}", "queue", "lq", "limit", 3, "after", FAR + 3),
        "4 5 6", 6);
    list_is(
        c,
        json_pack("{s:s,s:i,s:I}", "queue", "lq", "limit", 3, "after", FAR + 6),
        "7 8", -1);
    list_is(c, bb_jsonq("{'queue': 'lq', 'order': 'desc', 'limit': 2}"), "8 7",
            7);
    list_is(c, bb_jsonq("{'queue': 'lq', 'state': 'pending'}"), "1 7", -1);
    list_is(c, bb_jsonq("{'queue': 'lq', 'state': ['done', 'delayed']}"),
            "3 6 8", -1);
    list_is(c, bb_jsonq("{'queue': 'lq', 'name': 'even'}"), "1 2 3 4", -1);
    list_is(c, bb_jsonq("{'batch': 'b', 'state': ['failed', 'running']}"),
            "2 4", -1);
    list_is(c,
            json_pack("{s:s,s:I,s:I}", "queue", "lq", "after", FAR + 2,
                      "before", FAR + 5),
            "3 4", -1);
    ck_assert_int_eq(bb_error(c, "list", bb_jsonq("{'queue': 'nope'}")),
                     -32002);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_waits_for_the_last_unfinished_row)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t queue, batch, idle;
    json_t *reply;

    if (!bbpg_available())
        return;
    d = start(pg, "r_join", "60000");
    c = bb_connect(d);
    put_row(pg, "r_join", FAR + 1, "jq", 3, "'other'", "");
    put_row(pg, "r_join", FAR + 2, "jq", 2, "'other'", "batch = 'bj'");
    put_row(pg, "r_join", FAR + 3, "hold", 4, "'other'", "batch = 'done'");
    idle = bb_send_call(c, "join", bb_jsonq("{'batch': 'done'}"));
    reply = bb_wait_reply(c, idle, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(reply, "result.batch"), "done");
    json_decref(reply);
    queue = bb_send_call(c, "join", bb_jsonq("{'queue': 'jq'}"));
    batch = bb_send_call(c, "join", bb_jsonq("{'batch': 'bj'}"));
    ck_assert_ptr_null(bb_wait_reply(c, queue, 300));
    finish_row(pg, "r_join", FAR + 2, 4, true);
    reply = bb_wait_reply(c, batch, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(reply, "result.batch"), "bj");
    json_decref(reply);
    ck_assert_ptr_null(bb_wait_reply(c, queue, 200)); /* FAR + 1 runs */
    finish_row(pg, "r_join", FAR + 1, 4, true);
    reply = bb_wait_reply(c, queue, 5000);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(bb_str_at(reply, "result.queue"), "jq");
    json_decref(reply);
    ck_assert_int_eq(bb_error(c, "join", bb_jsonq("{'queue': 'nope'}")),
                     -32002);
    put_row(pg, "r_join", FAR + 4, "jq", 3, "'other'", "");
    ck_assert_int_eq(
        bb_error(c, "join", bb_jsonq("{'queue': 'jq', 'timeout': 0.2}")),
        -32008);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

struct unavailable {
    struct bb_conn *c;
    const char *method;
};

static bool
is_unavailable(void *arg)
{
    struct unavailable *u = arg;
    json_t *reply = bb_call(u->c, u->method,
                            json_pack("{s:I}", "job", (json_int_t)FAR + 1));
    json_t *e = json_object_get(reply, "error");
    bool ok = e != NULL &&
              json_integer_value(json_object_get(e, "code")) == -32603 &&
              strstr(json_string_value(json_object_get(e, "message")),
                     "store unavailable: ") != NULL;

    json_decref(reply);
    return ok;
}

static bool
is_back(void *arg)
{
    struct unavailable *u = arg;
    json_t *reply =
        bb_call(u->c, "status", json_pack("{s:I}", "job", (json_int_t)FAR + 1));
    bool ok = json_object_get(reply, "result") != NULL;

    json_decref(reply);
    return ok;
}

START_TEST(store_unavailable_while_the_server_is_stopped)
{
    struct bbpg *s;
    struct bb_daemon *d;
    struct bb_conn *c;
    struct unavailable u;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    bbpg_start(s, false);
    d = start(s, "r_down", "60000");
    put_row(s, "r_down", FAR + 1, "hold", 2, "'other'", "");
    c = bb_connect(d);
    u.c = c;
    bbpg_stop(s);
    u.method = "status";
    ck_assert(bb_poll(is_unavailable, &u, ROW_MS));
    u.method = "cancel";
    ck_assert(is_unavailable(&u));
    ck_assert_int_eq(bb_error(c, "list", bb_jsonq("{'queue': 'hold'}")),
                     -32603);
    ck_assert_int_eq(bb_error(c, "wait", json_pack("{s:[I]}", "jobs", FAR + 1)),
                     -32603);
    bbpg_restart(s);
    ck_assert(bb_poll(is_back, &u, 20000));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bbpg_free(s);
}
END_TEST

#define TWO_CONFIG                                                             \
    "{'store': {'kind': 'postgres', 'conninfo': '%s', 'schema': 'r_two', "     \
    "'node': '%s'}, 'queues': {'work': {'kind': 'sleep', 'consumers': %d}}}"

/* Two nodes on one schema: a job put on a (no consumer: the pool) runs
 * on b; a's status, wait, list and join see it through the database, and
 * a's record of it is b's, field for field; a cancel on a of a job
 * running on b interrupts it there. */
START_TEST(job_put_on_one_node_runs_on_another)
{
    struct bb_daemon *a, *b;
    struct bb_conn *ca, *cb;
    json_int_t id, wait, slow;
    json_t *reply, *onb;

    if (!bbpg_available())
        return;
    /* b first: a sees a peer from its start, so its puts may go to the
     * pool. */
    b = bb_startq(TWO_CONFIG, bbpg_conninfo(pg), "b", 1);
    a = bb_startq(TWO_CONFIG, bbpg_conninfo(pg), "a", 0);
    await_remote(a);
    ca = bb_connect(a);
    cb = bb_connect(b);
    id = bb_put_job(ca,
                    bb_jsonq("{'queue': 'work', 'args': {'seconds': 0.5}, "
                             "'name': 'two'}"),
                    5000);
    wait = bb_send_call(ca, "wait", json_pack("{s:[I]}", "jobs", id));
    reply = bb_wait_reply(ca, wait, 10000);
    ck_assert_msg(reply != NULL, "no reply to the wait on a");
    ck_assert_msg(json_array_size(bb_at(reply, "result")) == 1, "wait: %s",
                  bb_dump(reply));
    ck_assert_str_eq(
        bb_str_at(json_array_get(bb_at(reply, "result"), 0), "state"), "done");
    json_decref(reply);
    /* b ran it and holds its record; a reads the row: the same record. */
    onb = status_of(cb, id);
    reply = status_of(ca, id);
    ck_assert_msg(json_equal(reply, onb), "a: %s, b: %s", bb_dump(reply),
                  bb_dump(onb));
    json_decref(reply);
    json_decref(onb);
    reply = bb_result(ca, "list", bb_jsonq("{'queue': 'work'}"));
    ck_assert_int_eq(json_array_size(bb_at(reply, "jobs")), 1);
    json_decref(reply);
    json_decref(bb_result(ca, "join", bb_jsonq("{'queue': 'work'}")));
    /* Cancelled from a while it runs on b. */
    slow = bb_put_job(
        ca, bb_jsonq("{'queue': 'work', 'args': {'seconds': 60}}"), 5000);
    bb_await_state(cb, slow, "running", 10000);
    reply =
        bb_result_within(ca, "cancel", json_pack("{s:I}", "job", slow), 10000);
    ck_assert_str_eq(bb_str_at(reply, "state"), "cancelled");
    json_decref(reply);
    bb_close(ca);
    bb_close(cb);
    ck_assert_int_eq(bb_stop(b), 0);
    ck_assert_int_eq(bb_stop(a), 0);
}
END_TEST

Suite *
bb_pgremote_suite(void)
{
    Suite *s = suite_create("bb_pgremote");
    TCase *tc = tcase_create("pgremote");

    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_test(tc, record_from_a_row_is_the_record_from_memory);
    tcase_add_test(tc, status_of_pool_and_held_rows);
    tcase_add_test(tc, wait_wakes_at_the_finish_notification);
    tcase_add_test(tc, wait_and_join_wake_at_the_poll_without_notification);
    tcase_add_test(tc, cancel_of_a_pool_row_ends_it_cancelled);
    tcase_add_test(tc, old_records_no_node_holds_are_dropped);
    tcase_add_test(tc, cancel_of_a_held_row_asks_its_holder);
    tcase_add_test(tc, retry_and_delete_of_records_another_node_wrote);
    tcase_add_test(tc, queue_wide_cancel_retry_and_delete_reach_every_row);
    tcase_add_test(tc, list_reads_the_rows_of_every_node);
    tcase_add_test(tc, join_waits_for_the_last_unfinished_row);
    tcase_add_test(tc, store_unavailable_while_the_server_is_stopped);
    tcase_add_test(tc, job_put_on_one_node_runs_on_another);
    suite_add_tcase(s, tc);
    return s;
}
