/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_pgstore.c: store.kind postgres against the real asyncqd and a
 * throw-away PostgreSQL (tests/pg/pg.sh): a put is a row once
 * acknowledged and its finish is in the row; a restart restores pending
 * and finished jobs and continues ids; a newer schema and a second node
 * of the same name on the schema are refused at start; while the server is
 * stopped a nowait put is refused at once and a put waits until it is back. The
 * rows are checked through a libpq connection of the test's own. One
 * server for the suite (a schema per test), one more for the stop tests,
 * both from tests/bbpg.h (ports and directories of their own, held against
 * parallel runs); skipped, saying why, only when PostgreSQL 15 cannot be
 * installed.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbpg.h"
#include "bbproc.h"
#include "bbsuites.h"

#ifndef ASYNCQD_PATH
#error "ASYNCQD_PATH must name the asyncqd binary"
#endif
#define ROW_MS 10000

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
    "'node': '%s'}, "                                                          \
    "'queues': {'default': {'kind': 'echo', 'consumers': 1}, "                 \
    "'hold': {'kind': 'echo', 'consumers': 0}}}"

static struct bb_daemon *
start(const struct bbpg *s, const char *schema, const char *node)
{
    return bb_startq(CONFIG, bbpg_conninfo(s), schema, node);
}

/* asyncqd on that config, which must refuse to start with message. */
static void
expect_refused(const struct bbpg *s, const char *schema, const char *node,
               const char *message)
{
    char dir[] = "/tmp/asyncq-bbpg.XXXXXX", path[64];
    FILE *f;
    struct bb_run r;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.json", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"listen\": [\"tcp://127.0.0.1:0\"], \"metrics\": null, "
            "\"journal\": {\"path\": null}, \"store\": {\"kind\": "
            "\"postgres\", \"conninfo\": \"%s\", \"schema\": \"%s\", "
            "\"node\": \"%s\"}}",
            bbpg_conninfo(s), schema, node);
    fclose(f);
    {
        const char *argv[] = {ASYNCQD_PATH, "-c", path, NULL};

        bb_run_argv(&r, NULL, argv);
    }
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, message) != NULL, "stderr: %s", r.err);
    bb_run_free(&r);
    bb_remove_dir(dir);
}

START_TEST(put_is_a_row_once_acknowledged_and_its_finish_too)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t held, ran;
    char sql[160];
    char *got;

    if (!bbpg_available())
        return;
    d = start(pg, "t_put", "n1");
    c = bb_connect(d);
    held = bb_put_job(c, bb_jsonq("{'queue': 'hold', 'args': {'a': 1}}"), 5000);
    /* Acknowledged: the row is there, pending, with its args. */
    got = bbpg_text(
        pg, "SELECT state || ' ' || args FROM t_put.jobs WHERE id = %lld",
        (long long)held);
    ck_assert_str_eq(got, "2 {\"a\":1}");
    free(got);
    ran = bb_put_job(c, bb_jsonq("{'args': {'b': 2}}"), 5000);
    bb_await_state(c, ran, "done", 5000);
    snprintf(sql, sizeof sql,
             "SELECT state || ' ' || attempts || ' ' || result || ' ' || "
             "node || ' ' || (finished IS NOT NULL) FROM t_put.jobs WHERE "
             "id = %lld",
             (long long)ran);
    bbpg_await_text(pg, sql, "4 1 {\"b\":2} n1 true", ROW_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(restart_restores_pending_and_finished_jobs_and_continues_ids)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t a, b, done, next;
    json_t *st;

    if (!bbpg_available())
        return;
    d = start(pg, "t_restart", "n1");
    c = bb_connect(d);
    a = bb_put_job(c, bb_jsonq("{'queue': 'hold', 'args': {'n': 1}}"), 5000);
    b = bb_put_job(c,
                   bb_jsonq("{'queue': 'hold', 'args': {'n': 2}, "
                            "'priority': -1, 'key': 'k2'}"),
                   5000);
    done = bb_put_job(c, bb_jsonq("{'args': {'n': 3}}"), 5000);
    bb_await_state(c, done, "done", 5000);
    bb_close(c);
    bb_restart(d); /* SIGTERM: what was told is committed first */
    c = bb_connect(d);
    st = bb_job_status(c, a);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")),
                     "pending");
    json_decref(st);
    st = bb_job_status(c, b);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "priority")), -1);
    json_decref(st);
    st = bb_job_status(c, done);
    ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "done");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(st, "result"), "n")),
        3);
    json_decref(st);
    /* The key names its live job again: a put with it is a duplicate. */
    st = bb_result(c, "put",
                   bb_jsonq("{'queue': 'hold', 'args': {}, 'key': 'k2'}"));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "job")), b);
    json_decref(st);
    next = bb_put_job(c, bb_jsonq("{'queue': 'hold', 'args': {}}"), 5000);
    ck_assert_int_eq(next, done + 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

#define IDS_JOBS 5

/* Ids are reserved ahead in S.ids: with every row gone (evicted, deleted
 * by hand), a restart gives no id twice, after a clean stop or a kill. */
START_TEST(ids_are_never_given_twice_once_their_rows_are_deleted)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t ids[IDS_JOBS], next, top;
    char *got;

    if (!bbpg_available())
        return;
    d = start(pg, "t_ids", "n1");
    c = bb_connect(d);
    for (int i = 0; i < IDS_JOBS; i++)
        ids[i] = bb_put_job(c, bb_jsonq("{'args': {}}"), 5000);
    for (int i = 0; i < IDS_JOBS; i++)
        bb_await_state(c, ids[i], "done", 5000);
    /* The block is reserved with the first put, beyond the ids given. */
    got = bbpg_text(pg, "SELECT last_id >= %lld FROM t_ids.ids",
                    (long long)ids[IDS_JOBS - 1] + 100);
    ck_assert_str_eq(got, "t");
    free(got);
    bb_close(c);
    bbpg_exec(pg, "DELETE FROM t_ids.jobs");
    bb_restart(d); /* a clean stop gives back the ids not given */
    c = bb_connect(d);
    next = bb_put_job(c, bb_jsonq("{'queue': 'hold', 'args': {}}"), 5000);
    ck_assert_int_eq(next, ids[IDS_JOBS - 1] + 1);
    bb_close(c);
    /* A kill: the rest of the block is skipped, no id is given twice. */
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
    bb_free(d);
    bbpg_exec(pg, "DELETE FROM t_ids.jobs");
    d = start(pg, "t_ids", "n1");
    c = bb_connect(d);
    top = bb_put_job(c, bb_jsonq("{'queue': 'hold', 'args': {}}"), 5000);
    ck_assert_int_gt(top, next);
    ck_assert_int_le(top, next + 10000);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(newer_schema_is_refused_at_start)
{
    if (!bbpg_available())
        return;
    bbpg_exec(pg, "CREATE SCHEMA t_newer");
    bbpg_exec(pg, "CREATE TABLE t_newer.schema_version (version integer NOT "
                  "NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    bbpg_exec(pg, "INSERT INTO t_newer.schema_version VALUES (99)");
    expect_refused(pg, "t_newer", "n1",
                   "store: postgres: schema t_newer is at version 99, this "
                   "asyncqd knows up to 2: upgrade asyncqd");
}
END_TEST

START_TEST(second_node_of_the_same_name_is_refused)
{
    struct bb_daemon *d, *other;

    if (!bbpg_available())
        return;
    d = start(pg, "t_two", "first");
    expect_refused(pg, "t_two", "first",
                   "store: postgres: schema t_two: node first is running "
                   "already (another asyncqd holds its lock): store.node "
                   "must be unique per node");
    /* another name runs beside it */
    other = start(pg, "t_two", "second");
    ck_assert_int_eq(bb_stop(other), 0);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

struct refused {
    struct bb_conn *c;
};

static bool
nowait_refused(void *arg)
{
    struct refused *r = arg;
    json_t *reply = bb_call(r->c, "put",
                            bb_jsonq("{'queue': 'hold', 'args': {}, "
                                     "'nowait': true}"));
    json_t *e = json_object_get(reply, "error");
    bool ok = e != NULL &&
              json_integer_value(json_object_get(e, "code")) == -32603 &&
              strstr(json_string_value(json_object_get(e, "message")),
                     "store unavailable: ") != NULL;

    json_decref(reply);
    return ok;
}

START_TEST(server_stopped_nowait_refused_put_waits_until_it_is_back)
{
    struct bbpg *s;
    struct bb_daemon *d;
    struct bb_conn *c;
    struct refused r;
    json_int_t id;
    json_t *reply;
    char *got;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    bbpg_start(s, false);
    d = start(s, "t_stop", "n1");
    c = bb_connect(d);
    r.c = c;
    bbpg_stop(s);
    /* Refused at once, -32603 naming why, once the loss is seen. */
    ck_assert(bb_poll(nowait_refused, &r, 10000));
    /* A put without nowait is not acknowledged while the server is away. */
    id =
        bb_send_call(c, "put", bb_jsonq("{'queue': 'hold', 'args': {'w': 1}}"));
    reply = bb_wait_reply(c, id, 300);
    ck_assert_ptr_null(reply);
    bbpg_restart(s);
    reply = bb_wait_reply(c, id, 15000);
    ck_assert_ptr_nonnull(reply);
    id = json_integer_value(
        json_object_get(json_object_get(reply, "result"), "job"));
    ck_assert_int_gt(id, 0);
    json_decref(reply);
    got = bbpg_text(s, "SELECT args FROM t_stop.jobs WHERE id = %lld",
                    (long long)id);
    ck_assert_str_eq(got, "{\"w\":1}");
    free(got);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bbpg_free(s);
}
END_TEST

/* The value of the metric name (a line "name value") on /metrics. */
static long long
metric(int port, const char *name)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    char buf[65536], want[96], *line;
    size_t len = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0,
                  "connect to metrics: %s", strerror(errno));
    ck_assert(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
    while (len < sizeof buf - 1 &&
           (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    snprintf(want, sizeof want, "\n%s ", name);
    line = strstr(buf, want);
    ck_assert_msg(line != NULL, "no %s in %s", name, buf);
    return strtoll(line + strlen(want), NULL, 10);
}

#define BACKLOG_JOBS 20

static bool
all_done(void *arg)
{
    json_t *r = bb_result(arg, "stats", bb_jsonq("{'queue': 'default'}"));
    bool ok = bb_int_at(r, "queues.default.done") == 1 + BACKLOG_JOBS;

    json_decref(r);
    return ok;
}

/* While the server is away every event of a job (put, start, finish)
 * waits: a row's later write replaces the one before, so the backlog is
 * one write per job, not one per event; all commit once it is back. */
START_TEST(backlog_while_disconnected_is_one_write_per_job)
{
    char sql[128];
    struct bbpg *s;
    struct bb_daemon *d;
    struct bb_conn *c, *q;
    struct refused r;
    json_int_t first, calls[BACKLOG_JOBS], job = 0;
    long long before;
    int mport;

    if (!bbpg_available())
        return;
    s = bbpg_new();
    bbpg_start(s, false);
    d = bb_startq("{'metrics': '127.0.0.1:0', 'store': {'kind': 'postgres', "
                  "'conninfo': '%s', 'schema': 't_backlog', 'node': 'n1'}, "
                  "'queues': {'default': {'kind': 'echo', 'consumers': 1}, "
                  "'hold': {'kind': 'echo', 'consumers': 0}}}",
                  bbpg_conninfo(s));
    mport = bb_metrics_port(d);
    c = bb_connect(d);
    q = bb_connect(d);
    r.c = q;
    first = bb_put_job(c, bb_jsonq("{'args': {}}"), 5000);
    bb_await_state(q, first, "done", 5000);
    bbpg_stop(s);
    ck_assert(bb_poll(nowait_refused, &r, 10000));
    /* (the nowait puts accepted before the loss was seen may wait too) */
    before = metric(mport, "asyncq_store_backlog");
    /* Each job is put, started and finished while the server is away. */
    for (int i = 0; i < BACKLOG_JOBS; i++)
        calls[i] = bb_send_call(c, "put", bb_jsonq("{'args': {}}"));
    ck_assert(bb_poll(all_done, q, 10000));
    ck_assert_int_eq(metric(mport, "asyncq_store_backlog"),
                     before + BACKLOG_JOBS);
    bbpg_restart(s);
    for (int i = 0; i < BACKLOG_JOBS; i++) {
        json_t *reply = bb_wait_reply(c, calls[i], 15000);

        ck_assert_ptr_nonnull(reply);
        if (i == 0)
            job = json_integer_value(
                json_object_get(json_object_get(reply, "result"), "job"));
        ck_assert_int_eq(json_integer_value(json_object_get(
                             json_object_get(reply, "result"), "job")),
                         job + i);
        json_decref(reply);
    }
    /* Acknowledged: committed, every row at its last state. */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM t_backlog.jobs WHERE state = 4 AND id >= "
             "%lld",
             (long long)job);
    bbpg_await_text(s, sql, "20", ROW_MS);
    ck_assert_int_eq(metric(mport, "asyncq_store_backlog"), 0);
    bb_close(q);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bbpg_free(s);
}
END_TEST

struct moved {
    const char *sql;
    long long was;
};

static bool
has_moved(void *arg)
{
    struct moved *m = arg;
    char *got = bbpg_text(pg, "%s", m->sql);
    bool ok = atoll(got) > m->was;

    free(got);
    return ok;
}

/* The heartbeat (every 100 ms here: ASYNCQ_PG_LEASE_RENEW_MS) moves the
 * node's seen and the leases of the rows it runs forward, ahead of now:
 * 3 intervals for a job without a timeout, the queue's timeout (300 s by
 * default) for one with it. */
START_TEST(heartbeat_renews_the_lease_of_a_running_job)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t id, slow;
    char lease[160];
    struct moved m;
    char *got;

    if (!bbpg_available())
        return;
    setenv("ASYNCQ_PG_LEASE_RENEW_MS", "100", 1);
    d = bb_startq("{'store': {'kind': 'postgres', 'conninfo': '%s', 'schema': "
                  "'t_lease', 'node': 'n1'}, 'queues': {'nap': {'kind': "
                  "'sleep', 'consumers': 2}}}",
                  bbpg_conninfo(pg));
    unsetenv("ASYNCQ_PG_LEASE_RENEW_MS");
    c = bb_connect(d);
    /* No timeout of its own: leased 3 intervals ahead, renewed. */
    id = bb_put_job(
        c, bb_jsonq("{'queue': 'nap', 'args': {'seconds': 60}, 'timeout': 0}"),
        5000);
    slow = bb_put_job(c, bb_jsonq("{'queue': 'nap', 'args': {'seconds': 60}}"),
                      5000);
    bb_await_state(c, id, "running", 5000);
    bb_await_state(c, slow, "running", 5000);
    snprintf(lease, sizeof lease,
             "SELECT (extract(epoch FROM lease_deadline) * 1000000)::bigint "
             "FROM t_lease.jobs WHERE id = %lld AND state = 3",
             (long long)id);
    m.sql = lease;
    m.was = 0;
    ck_assert(bb_poll(has_moved, &m, ROW_MS)); /* leased */
    got = bbpg_text(pg, "%s", lease);
    m.was = atoll(got);
    free(got);
    ck_assert(bb_poll(has_moved, &m, ROW_MS)); /* and again, later */
    got = bbpg_text(pg,
                    "SELECT lease_deadline > now() AND lease_deadline <= "
                    "now() + interval '1 second' FROM t_lease.jobs WHERE id = "
                    "%lld",
                    (long long)id);
    ck_assert_str_eq(got, "t");
    free(got);
    got =
        bbpg_text(pg,
                  "SELECT lease_deadline > now() + interval '290 seconds' AND "
                  "lease_deadline <= now() + interval '301 seconds' FROM "
                  "t_lease.jobs WHERE id = %lld",
                  (long long)slow);
    ck_assert_str_eq(got, "t");
    free(got);
    m.sql = "SELECT (extract(epoch FROM seen) * 1000000)::bigint FROM "
            "t_lease.nodes WHERE node = 'n1'";
    got = bbpg_text(pg, "%s", m.sql);
    m.was = atoll(got);
    free(got);
    ck_assert(bb_poll(has_moved, &m, ROW_MS));
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", id)));
    json_decref(bb_result(c, "cancel", json_pack("{s:I}", "job", slow)));
    bb_await_state(c, id, "cancelled", 5000);
    bb_await_state(c, slow, "cancelled", 5000);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_pgstore_suite(void)
{
    Suite *s = suite_create("bb_pgstore");
    TCase *tc = tcase_create("pgstore");

    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_test(tc, put_is_a_row_once_acknowledged_and_its_finish_too);
    tcase_add_test(
        tc, restart_restores_pending_and_finished_jobs_and_continues_ids);
    tcase_add_test(tc, ids_are_never_given_twice_once_their_rows_are_deleted);
    tcase_add_test(tc, newer_schema_is_refused_at_start);
    tcase_add_test(tc, second_node_of_the_same_name_is_refused);
    tcase_add_test(tc,
                   server_stopped_nowait_refused_put_waits_until_it_is_back);
    tcase_add_test(tc, backlog_while_disconnected_is_one_write_per_job);
    tcase_add_test(tc, heartbeat_renews_the_lease_of_a_running_job);
    suite_add_tcase(s, tc);
    return s;
}
