/* SPDX-License-Identifier: MIT */
/*
 * tests/test_store_pg.c: lib/store_pg.c against a real PostgreSQL 15,
 * started by tests/pg/pg.sh once for the suite (in the runner's process),
 * each test on a fresh schema of its own. The store is opened and
 * restored the way asyncqd does (aq_store_pg_open, aq_broker_restore on a
 * broker of a remote queue), and driven by the broker's own paths in one
 * loop pass when a test needs one send window: put, a worker's get (the
 * start) and task_done, cancel, delete; the store's ops are called
 * directly only for what the broker never does (a row written again after
 * its delete). Rows are read back over a blocking libpq connection of the
 * test's, and a trigger the test adds to S.jobs logs every row write (its
 * transaction, kind, the row's state and key), so that "one row write"
 * and "in one transaction" are counted exactly, with no statistics
 * collector in between. Every wait runs the loop until a flag or a query's
 * answer, under a deadline. Its port (55470-55479) is held with a lock
 * file against parallel runs (tests/pgtest.h). The suite is skipped,
 * saying why, only when the server binaries cannot be installed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "broker.h"
#include "config.h"
#include "error.h"
#include "pg_schema.h"
#include "pgtest.h"
#include "store.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 8000
/* Ports 55470-55479 are this suite's (unit.pgconn, bb.pg and the bench
 * use others). */
#define PORT_FIRST 55470
#define PORT_COUNT 10

static struct pgtest_server pg = {.lock_fd = -1};

static void
server_setup(void)
{
    pgtest_server_start(&pg, "/tmp/aq-storepg.XXXXXX", PORT_FIRST, PORT_COUNT);
}

static void
server_teardown(void)
{
    pgtest_server_stop(&pg);
}

static void
test_setup(void)
{
    ck_assert_msg(pg.err[0] == '\0', "store_pg: %s", pg.err);
    test_base_setup();
}

static void
test_teardown(void)
{
    test_base_teardown();
}

/* ---- the test's own connection (blocking) ---- */

static PGconn *
db_connect(void)
{
    char ci[128];
    PGconn *db;

    snprintf(ci, sizeof ci,
             "host=127.0.0.1 port=%d dbname=postgres user=postgres", pg.port);
    db = PQconnectdb(ci);
    ck_assert_msg(PQstatus(db) == CONNECTION_OK, "connect: %s",
                  PQerrorMessage(db));
    return db;
}

static void db_run(PGconn *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs statements (fmt, no parameters), which must succeed. */
static void
db_run(PGconn *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    PGresult *r;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = PQexec(db, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                      PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static const char *db_value(PGconn *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Row 0, column 0 of a query: "(none)" without rows, "(null)" for NULL.
 * Static storage, until the next call. */
static const char *
db_value(PGconn *db, const char *fmt, ...)
{
    static char value[1024];
    char sql[2048];
    va_list ap;
    PGresult *r;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = PQexec(db, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    snprintf(value, sizeof value, "%s",
             PQntuples(r) == 0      ? "(none)"
             : PQgetisnull(r, 0, 0) ? "(null)"
                                    : PQgetvalue(r, 0, 0));
    PQclear(r);
    return value;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop until sql answers want (asked every 10 ms of loop time),
 * failing after WAIT_MS with the last answer. */
#define DB_WAIT(db, want, ...)                                                 \
    do {                                                                       \
        int64_t until_ = now_ms() + WAIT_MS;                                   \
        const char *got_;                                                      \
                                                                               \
        while (strcmp(got_ = db_value((db), __VA_ARGS__), (want)) != 0) {      \
            ck_assert_msg(now_ms() < until_, "waited for %s, got %s: %s",      \
                          (want), got_, #__VA_ARGS__);                         \
            run_for(test_base, 10);                                            \
        }                                                                      \
    } while (0)

/* ---- a broker on the store, as asyncqd starts ---- */

struct env {
    char schema[64];
    char app[80]; /* the store's application_name: its backend */
    char node[32];
    struct aq_config *cfg;
    struct aq_broker *b;
    struct aq_store *s; /* the broker's, from restore on */
    struct aq_worker *w;
    PGconn *db;
};

/* A schema no test used before (the suite's server is shared). */
static void
env_init(struct env *e, const char *schema, const char *node)
{
    static int n;

    memset(e, 0, sizeof *e);
    if (schema != NULL)
        snprintf(e->schema, sizeof e->schema, "%s", schema);
    else
        snprintf(e->schema, sizeof e->schema, "t%d_%d", (int)getpid(), ++n);
    snprintf(e->node, sizeof e->node, "%s", node);
    snprintf(e->app, sizeof e->app, "aqtest_%s_%s", e->schema, node);
    e->db = db_connect();
}

/* Opens the store and restores the broker from it: 0, or -1 with err. */
static int
env_restore(struct env *e, struct aq_error *err)
{
    static const char config[] = "{\"queues\":{\"r\":{\"kind\":\"remote\"}}}";
    char ci[256];
    bool damaged = false;

    e->cfg = aq_config_parse(config, strlen(config), err);
    ck_assert_msg(e->cfg != NULL, "config: %s", err->message);
    e->b = aq_broker_new(test_base, NULL, e->cfg);
    snprintf(ci, sizeof ci,
             "host=127.0.0.1 port=%d dbname=postgres user=postgres "
             "application_name=%s",
             pg.port, e->app);
    e->s = aq_store_pg_open(test_base, ci, e->schema, e->node, err);
    ck_assert_msg(e->s != NULL, "open: %s", err->message);
    if (aq_broker_restore(e->b, e->s, &damaged, err) < 0) {
        ck_assert(!damaged);
        return -1;
    }
    aq_broker_start(e->b);
    e->w = aq_broker_worker_new(e->b, "test", NULL, NULL);
    return 0;
}

/* Every write of a row of S.jobs from now on, logged in S.w by a
 * trigger, in the writing transaction. */
static void
env_log_writes(struct env *e)
{
    db_run(e->db,
           "CREATE TABLE %s.w (n bigserial PRIMARY KEY, "
           "xid bigint NOT NULL DEFAULT txid_current(), op text NOT NULL, "
           "id bigint NOT NULL, state smallint, key text)",
           e->schema);
    db_run(e->db,
           "CREATE FUNCTION %s.w_log() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN IF TG_OP = 'DELETE' THEN INSERT INTO %s.w (op, id, state, "
           "key) VALUES (TG_OP, OLD.id, OLD.state, OLD.key); ELSE INSERT INTO "
           "%s.w (op, id, state, key) VALUES (TG_OP, NEW.id, NEW.state, "
           "NEW.key); END IF; RETURN NULL; END$$",
           e->schema, e->schema, e->schema);
    db_run(e->db,
           "CREATE TRIGGER w AFTER INSERT OR UPDATE OR DELETE ON %s.jobs "
           "FOR EACH ROW EXECUTE FUNCTION %s.w_log()",
           e->schema, e->schema);
}

/* A broker on a fresh schema, restored, its writes logged. */
static void
env_open(struct env *e, const char *node)
{
    struct aq_error err = {0};

    env_init(e, NULL, node);
    ck_assert_msg(env_restore(e, &err) == 0, "restore: %s", err.message);
    env_log_writes(e);
}

/* Frees the broker (a clean close of the store) and waits until its
 * session has left the server (its node lock with it). */
static void
env_close(struct env *e)
{
    aq_broker_worker_free(e->w);
    e->w = NULL;
    aq_broker_free(e->b);
    e->b = NULL;
    e->s = NULL;
    aq_config_free(e->cfg);
    e->cfg = NULL;
    DB_WAIT(e->db, "0",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            "'%s'",
            e->app);
}

static void
env_free(struct env *e)
{
    if (e->b != NULL)
        env_close(e);
    PQfinish(e->db);
}

/* The writes of row id logged so far: "INSERT 2,UPDATE 4", ... */
static const char *
writes_of(struct env *e, uint64_t id)
{
    return db_value(e->db,
                    "SELECT coalesce(string_agg(op || ' ' || state, ',' "
                    "ORDER BY n), '') FROM %s.w WHERE id = %llu",
                    e->schema, (unsigned long long)id);
}

static const char *
state_of_row(struct env *e, uint64_t id)
{
    return db_value(e->db, "SELECT state FROM %s.jobs WHERE id = %llu",
                    e->schema, (unsigned long long)id);
}

static uint64_t
backlog(struct env *e)
{
    struct aq_store_counters c = {0};

    e->s->ops->counters(e->s, &c);
    return c.backlog;
}

/* ---- the broker's paths ---- */

struct putw {
    struct aq_put_wait w;
    struct env *e;
    uint64_t job;
    bool is_done;
    int st;
    char err[256];
    char seen[32]; /* the row's state, from the test's connection, at ack */
};

static void
put_cb(void *arg, int st, const struct aq_put_result *res,
       const struct aq_error *err)
{
    struct putw *pw = arg;

    ck_assert(!pw->is_done);
    pw->is_done = true;
    pw->st = st;
    if (st != 0) {
        snprintf(pw->err, sizeof pw->err, "%s", err->message);
        return;
    }
    ck_assert_uint_eq(res->job, pw->job);
    snprintf(pw->seen, sizeof pw->seen, "%s", state_of_row(pw->e, res->job));
}

/* Puts a job in queue r: acknowledged later, from the loop (the store
 * waits for its commit). Its id. */
static uint64_t
put(struct env *e, struct putw *pw, const char *key)
{
    struct aq_put p = {.queue = "r", .timeout = -1, .retries = -1, .key = key};
    struct aq_put_result res = {0};
    struct aq_error err = {0};
    enum aq_put_status st;

    memset(pw, 0, sizeof *pw);
    pw->e = e;
    st = aq_broker_put(e->b, &p, &pw->w, put_cb, pw, &res, &err);
    ck_assert_msg(st == AQ_PUT_PENDING, "put: %d %s", st, err.message);
    ck_assert(!pw->is_done);
    pw->job = res.job;
    return res.job;
}

static void
await_put(struct putw *pw)
{
    ck_assert_msg(run_until(test_base, &pw->is_done, WAIT_MS),
                  "put of job %llu not acknowledged",
                  (unsigned long long)pw->job);
    ck_assert_msg(pw->st == 0, "put of job %llu: %s",
                  (unsigned long long)pw->job, pw->err);
}

static void
got_cb(void *arg, const struct aq_leased *jobs, size_t n)
{
    *(uint64_t *)arg = n > 0 ? jobs[0].job : 0;
}

/* The worker leases the next ready job of r (its start): its id. */
static uint64_t
lease(struct env *e)
{
    static const char *const queues[] = {"r"};
    struct aq_get g = {.queues = queues, .nqueues = 1, .max = 1, .lease_s = -1};
    struct aq_get_wait *wait = NULL;
    struct aq_error err = {0};
    uint64_t id = 0;

    ck_assert_msg(aq_broker_get(e->b, e->w, &g, got_cb, &id, &wait, &err) == 0,
                  "get: %s", err.message);
    ck_assert_uint_ne(id, 0);
    return id;
}

/* The worker ends its attempt of id: done, with result. */
static void
complete(struct env *e, uint64_t id, const char *result)
{
    struct aq_task_done d = {.job = id, .result = result};
    struct aq_error err = {0};
    const char *state;

    ck_assert_msg(aq_broker_task_done(e->b, e->w, &d, &state, &err) == 0,
                  "task_done: %s", err.message);
    ck_assert_str_eq(state, "done");
}

static void
cancel(struct env *e, uint64_t id)
{
    struct aq_error err = {0};
    const char *state;

    ck_assert_msg(aq_broker_cancel(e->b, id, &state, &err) == 0, "cancel: %s",
                  err.message);
    ck_assert_str_eq(state, "cancelled");
}

static void
delete_record(struct env *e, uint64_t id)
{
    struct aq_error err = {0};

    ck_assert_msg(aq_broker_delete(e->b, id, &err) == 0, "delete: %s",
                  err.message);
}

struct synced {
    bool is_done;
    bool is_ok;
};

static void
synced_cb(void *arg, const struct aq_error *err)
{
    struct synced *s = arg;

    s->is_done = true;
    s->is_ok = err == NULL;
}

/* Waits until every event told so far is committed. */
static void
store_sync(struct env *e)
{
    struct aq_barrier b;
    struct synced s = {0};
    struct aq_error err = {0};
    int rc = e->s->ops->sync(e->s, &b, synced_cb, &s, &err);

    ck_assert_msg(rc >= 0, "sync: %s", err.message);
    if (rc == 0)
        return;
    ck_assert(run_until(test_base, &s.is_done, WAIT_MS));
    ck_assert(s.is_ok);
}

/* ---- tests ---- */

/* A put is acknowledged at its commit: when its callback runs, the row
 * is there for every other session; not before (nothing is sent until
 * the loop runs). */
START_TEST(put_acknowledged_once_its_row_is_committed)
{
    struct env e;
    struct putw a, b;
    uint64_t ida, idb;

    env_open(&e, "n1");
    ida = put(&e, &a, NULL);
    ck_assert_str_eq(state_of_row(&e, ida), "(none)");
    await_put(&a);
    ck_assert_str_eq(a.seen, "2"); /* pending, committed */
    /* the next put, its own transaction */
    idb = put(&e, &b, "k");
    ck_assert_uint_eq(idb, ida + 1);
    ck_assert_str_eq(state_of_row(&e, idb), "(none)");
    await_put(&b);
    ck_assert_str_eq(b.seen, "2");
    ck_assert_str_eq(db_value(e.db, "SELECT key FROM %s.jobs WHERE id = %llu",
                              e.schema, (unsigned long long)idb),
                     "k");
    ck_assert_uint_eq(backlog(&e), 0);
    env_free(&e);
}
END_TEST

/* A job put, started and finished in one loop pass is one row write (one
 * op in the backlog), holding the final state; several such jobs share
 * one transaction. */
START_TEST(events_of_one_pass_are_one_row_write)
{
    struct env e;
    struct putw pw[3];
    uint64_t id[3], before;

    env_open(&e, "n1");
    for (int i = 0; i < 3; i++)
        id[i] = put(&e, &pw[i], NULL);
    before = backlog(&e); /* 3 rows (ids come from a block reserved at
                             restore) */
    ck_assert_uint_eq(before, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(lease(&e), id[i]);
        complete(&e, id[i], "7");
    }
    ck_assert_uint_eq(backlog(&e), before);
    for (int i = 0; i < 3; i++) {
        await_put(&pw[i]);
        ck_assert_str_eq(pw[i].seen, "4"); /* done */
        ck_assert_str_eq(writes_of(&e, id[i]), "INSERT 4");
    }
    ck_assert_str_eq(
        db_value(e.db, "SELECT count(DISTINCT xid) FROM %s.w", e.schema), "1");
    ck_assert_str_eq(
        db_value(e.db,
                 "SELECT attempts || ' ' || result || ' ' || node || ' ' || "
                 "(started IS NOT NULL) || ' ' || (finished IS NOT NULL) "
                 "FROM %s.jobs WHERE id = %llu",
                 e.schema, (unsigned long long)id[1]),
        "1 7 n1 true true");
    ck_assert_uint_eq(backlog(&e), 0);
    env_free(&e);
}
END_TEST

/* A key freed (its job finished and its record deleted) and taken by a
 * new put in the same transaction: the delete goes first, so the unique
 * index on live keys never sees the key twice. (A finished record keeps
 * its key: the broker answers a put of that key as a duplicate, so a key
 * moves to a new job only once the record is gone.) */
START_TEST(key_freed_and_taken_in_one_transaction)
{
    struct env e;
    struct putw a, b, c, d;
    uint64_t ida, idb, idc, idd;
    char want[64];

    env_open(&e, "n1");
    ida = put(&e, &a, "K");
    await_put(&a);
    ck_assert_str_eq(writes_of(&e, ida), "INSERT 2");
    /* the committed row holds K live; one pass frees it and takes it */
    cancel(&e, ida);
    delete_record(&e, ida);
    idb = put(&e, &b, "K");
    await_put(&b);
    ck_assert_str_eq(state_of_row(&e, ida), "(none)");
    ck_assert_str_eq(b.seen, "2");
    ck_assert_str_eq(writes_of(&e, ida), "INSERT 2,DELETE 2");
    ck_assert_str_eq(writes_of(&e, idb), "INSERT 2");
    ck_assert_str_eq(
        db_value(e.db,
                 "SELECT count(DISTINCT xid) FROM %s.w WHERE n > (SELECT "
                 "min(n) FROM %s.w)",
                 e.schema, e.schema),
        "1");
    /* a live key finished and taken again, all in one window, twice */
    cancel(&e, idb);
    delete_record(&e, idb);
    idc = put(&e, &c, "K");
    cancel(&e, idc);
    delete_record(&e, idc);
    idd = put(&e, &d, "K");
    await_put(&c);
    await_put(&d);
    ck_assert_str_eq(state_of_row(&e, idb), "(none)");
    ck_assert_str_eq(state_of_row(&e, idc), "(none)");
    ck_assert_str_eq(writes_of(&e, idc), "");
    ck_assert_str_eq(d.seen, "2");
    snprintf(want, sizeof want, "%llu K", (unsigned long long)idd);
    ck_assert_str_eq(db_value(e.db,
                              "SELECT string_agg(id || ' ' || key, ',' ORDER "
                              "BY id) FROM %s.jobs",
                              e.schema),
                     want);
    env_free(&e);
}
END_TEST

/* A row's delete replaces its whole row not sent yet (no row is ever
 * written); a whole row told after a delete stays after it, so the row
 * is there in the end. The broker never writes a row again once deleted
 * (ids are not reused): the store's ops are called directly for that. */
START_TEST(delete_and_whole_row_of_one_window_keep_their_order)
{
    struct env e;
    struct putw a, b;
    uint64_t ida, idb;
    struct aq_job *j;

    env_open(&e, "n1");
    /* put, cancelled and deleted in one pass: no row, no write */
    ida = put(&e, &a, NULL);
    cancel(&e, ida);
    delete_record(&e, ida);
    await_put(&a);
    ck_assert_str_eq(a.seen, "(none)");
    ck_assert_str_eq(writes_of(&e, ida), "");
    ck_assert_uint_eq(backlog(&e), 0);

    /* a committed record deleted, then written whole, in one window:
     * the delete goes first */
    idb = put(&e, &b, NULL);
    cancel(&e, idb);
    await_put(&b);
    ck_assert_str_eq(writes_of(&e, idb), "INSERT 6");
    j = aq_broker_restore_find(e.b, idb);
    ck_assert_ptr_nonnull(j);
    e.s->ops->remove(e.s, j);
    e.s->ops->finish(e.s, j, "r");
    ck_assert_uint_eq(backlog(&e), 2); /* both stay */
    store_sync(&e);
    ck_assert_str_eq(state_of_row(&e, idb), "6");
    ck_assert_str_eq(writes_of(&e, idb), "INSERT 6,DELETE 6,INSERT 6");
    /* and the other way round: the delete wins */
    e.s->ops->finish(e.s, j, "r");
    e.s->ops->remove(e.s, j);
    ck_assert_uint_eq(backlog(&e), 1);
    store_sync(&e);
    ck_assert_str_eq(state_of_row(&e, idb), "(none)");
    ck_assert_str_eq(writes_of(&e, idb), "INSERT 6,DELETE 6,INSERT 6,DELETE 6");
    delete_record(&e, idb); /* the broker's record goes too */
    store_sync(&e);
    env_free(&e);
}
END_TEST

/* Ids are reserved ahead in S.ids, committed no later than the rows that
 * use them; a clean close gives back what was not given, so the next
 * start goes on right after the last id given, even when its row is gone
 * (ids are never given twice). */
START_TEST(ids_reserved_ahead_and_given_back_at_close)
{
    struct env e, e2;
    struct putw pw[3], p4;
    uint64_t id[3];
    struct aq_error err = {0};

    env_open(&e, "n1");
    /* a block of ids reserved at restore (several nodes give ids) */
    ck_assert_str_eq(db_value(e.db, "SELECT last_id FROM %s.ids", e.schema),
                     "10000");
    for (int i = 0; i < 3; i++)
        id[i] = put(&e, &pw[i], NULL);
    ck_assert_uint_eq(id[0], 1);
    ck_assert_uint_eq(id[2], 3);
    for (int i = 0; i < 3; i++)
        await_put(&pw[i]);
    ck_assert_str_eq(db_value(e.db,
                              "SELECT last_id > (SELECT max(id) FROM %s.jobs) "
                              "FROM %s.ids",
                              e.schema, e.schema),
                     "t");
    /* the last id's row goes: its id is still given */
    cancel(&e, id[2]);
    delete_record(&e, id[2]);
    store_sync(&e);
    ck_assert_str_eq(state_of_row(&e, id[2]), "(none)");
    env_close(&e);
    ck_assert_str_eq(db_value(e.db, "SELECT last_id FROM %s.ids", e.schema),
                     "3");

    /* the next start restores jobs 1 and 2, and gives 4 */
    env_init(&e2, e.schema, "n1");
    ck_assert_msg(env_restore(&e2, &err) == 0, "restore: %s", err.message);
    for (int i = 0; i < 2; i++) {
        json_t *rec = aq_broker_status(e2.b, id[i], &err);

        ck_assert_msg(rec != NULL, "%s", err.message);
        ck_assert_str_eq(json_string_value(json_object_get(rec, "state")),
                         "pending");
        json_decref(rec);
    }
    ck_assert_ptr_null(aq_broker_status(e2.b, id[2], &err));
    ck_assert_uint_eq(put(&e2, &p4, NULL), 4);
    await_put(&p4);
    ck_assert_str_eq(db_value(e.db, "SELECT last_id > 4 FROM %s.ids", e.schema),
                     "t");
    env_free(&e2);
    env_free(&e);
}
END_TEST

/* The store's backend waits on a lock the test holds, so that its
 * transaction is in flight and cannot commit; the test terminates it.
 * Every op not committed is sent again after the reconnect, window by
 * window in order, in one transaction: each row written once more, to
 * its final state, and every put acknowledged with no error. */
START_TEST(ops_in_flight_sent_again_after_a_lost_connection)
{
    struct env e;
    struct putw a, b, c, d;
    uint64_t ida, idb, idc, idd;
    struct aq_store_counters n = {0};
    PGconn *holder = db_connect();
    char pid[32];

    env_open(&e, "n1");
    ida = put(&e, &a, NULL);
    idb = put(&e, &b, NULL);
    await_put(&a);
    await_put(&b);

    db_run(holder, "BEGIN");
    db_run(holder, "LOCK TABLE %s.jobs IN EXCLUSIVE MODE", e.schema);
    /* window 1: A started, C put; sent, it waits for the lock */
    ck_assert_uint_eq(lease(&e), ida);
    idc = put(&e, &c, NULL);
    DB_WAIT(e.db, "1",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            "'%s' AND wait_event_type = 'Lock'",
            e.app);
    /* window 2: A done, B cancelled, D put (sent behind it, or not) */
    complete(&e, ida, "\"ok\"");
    cancel(&e, idb);
    idd = put(&e, &d, NULL);
    event_base_loop(test_base, EVLOOP_NONBLOCK);
    snprintf(pid, sizeof pid, "%s",
             db_value(e.db,
                      "SELECT pid FROM pg_stat_activity WHERE "
                      "application_name = '%s'",
                      e.app));
    ck_assert_str_eq(
        db_value(e.db, "SELECT pg_terminate_backend(%s, 5000)", pid), "t");
    db_run(holder, "COMMIT");
    PQfinish(holder);
    ck_assert(!c.is_done);
    ck_assert(!d.is_done);

    await_put(&c);
    await_put(&d);
    store_sync(&e);
    ck_assert_str_eq(state_of_row(&e, ida), "4");
    ck_assert_str_eq(state_of_row(&e, idb), "6");
    ck_assert_str_eq(state_of_row(&e, idc), "2");
    ck_assert_str_eq(state_of_row(&e, idd), "2");
    ck_assert_str_eq(db_value(e.db, "SELECT count(*) FROM %s.jobs", e.schema),
                     "4");
    ck_assert_str_eq(db_value(e.db,
                              "SELECT result FROM %s.jobs WHERE id = %llu",
                              e.schema, (unsigned long long)ida),
                     "\"ok\"");
    /* exactly the writes of the windows, once each */
    ck_assert_str_eq(writes_of(&e, ida), "INSERT 2,UPDATE 3,UPDATE 4");
    ck_assert_str_eq(writes_of(&e, idb), "INSERT 2,UPDATE 6");
    ck_assert_str_eq(writes_of(&e, idc), "INSERT 2");
    ck_assert_str_eq(writes_of(&e, idd), "INSERT 2");
    ck_assert_str_eq(
        db_value(e.db,
                 "SELECT count(DISTINCT xid) FROM %s.w WHERE id IN (%llu, "
                 "%llu) OR n > 2",
                 e.schema, (unsigned long long)idc, (unsigned long long)idd),
        "1");
    e.s->ops->counters(e.s, &n);
    ck_assert(n.connected);
    ck_assert_uint_eq(n.reconnects, 1);
    ck_assert_uint_eq(n.backlog, 0);
    env_free(&e);
}
END_TEST

/* A schema at a version this binary does not know: restore fails, saying
 * to upgrade. */
START_TEST(newer_schema_is_refused)
{
    struct env e;
    struct aq_error err = {0};
    char want[160];

    env_init(&e, NULL, "n1");
    db_run(e.db, "CREATE SCHEMA %s", e.schema);
    db_run(e.db,
           "CREATE TABLE %s.schema_version (version integer NOT NULL, "
           "applied_at timestamptz NOT NULL DEFAULT now())",
           e.schema);
    db_run(e.db, "INSERT INTO %s.schema_version (version) VALUES (%d)",
           e.schema, aq_pg_schema_latest() + 1);
    ck_assert_int_eq(env_restore(&e, &err), -1);
    snprintf(want, sizeof want,
             "store: postgres: schema %s is at version %d, this asyncqd "
             "knows up to %d: upgrade asyncqd",
             e.schema, aq_pg_schema_latest() + 1, aq_pg_schema_latest());
    ck_assert_str_eq(err.message, want);
    ck_assert_int_eq(err.code, AQ_ERR_INTERNAL);
    /* nothing was created */
    ck_assert_str_eq(db_value(e.db, "SELECT to_regclass('%s.jobs')", e.schema),
                     "(null)");
    env_free(&e);
}
END_TEST

/* A second node of the same name on a schema: restore fails naming the
 * node; the holder goes on; once it has closed, the name is free. A node
 * of another name runs beside it, with a block of ids of its own. */
START_TEST(same_node_name_is_refused_other_names_run_beside)
{
    struct env a, b, c, d;
    struct putw pw, pd;
    struct aq_error err = {0};
    char want[256];
    uint64_t ida, idd;

    env_open(&a, "alpha");
    env_init(&b, a.schema, "alpha");
    snprintf(b.app, sizeof b.app, "aqtest_%s_alpha_2", a.schema);
    ck_assert_int_eq(env_restore(&b, &err), -1);
    snprintf(want, sizeof want,
             "store: postgres: schema %s: node alpha is running already "
             "(another asyncqd holds its lock): store.node must be unique "
             "per node",
             a.schema);
    ck_assert_str_eq(err.message, want);
    env_free(&b);
    env_init(&d, a.schema, "delta");
    ck_assert_msg(env_restore(&d, &err) == 0, "restore: %s", err.message);
    ida = put(&a, &pw, NULL);
    idd = put(&d, &pd, NULL);
    ck_assert_uint_ne(ida, idd);
    await_put(&pw);
    await_put(&pd);
    env_close(&a);
    env_free(&d);

    env_init(&c, a.schema, "alpha");
    ck_assert_msg(env_restore(&c, &err) == 0, "restore: %s", err.message);
    ck_assert_str_eq(db_value(c.db,
                              "SELECT string_agg(node, ',' ORDER BY node) "
                              "FROM %s.nodes",
                              a.schema),
                     "alpha,delta");
    env_free(&c);
    env_free(&a);
}
END_TEST

Suite *
store_pg_suite(void)
{
    Suite *s = suite_create("store_pg");
    TCase *tc;

    if (pgtest_skip_suite("store_pg"))
        return s;
    tc = test_tcase_new("server");
    /* one server for the case, in the runner's process */
    tcase_add_unchecked_fixture(tc, server_setup, server_teardown);
    tcase_add_checked_fixture(tc, test_setup, test_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, put_acknowledged_once_its_row_is_committed);
    tcase_add_test(tc, events_of_one_pass_are_one_row_write);
    tcase_add_test(tc, key_freed_and_taken_in_one_transaction);
    tcase_add_test(tc, delete_and_whole_row_of_one_window_keep_their_order);
    tcase_add_test(tc, ids_reserved_ahead_and_given_back_at_close);
    tcase_add_test(tc, ops_in_flight_sent_again_after_a_lost_connection);
    tcase_add_test(tc, newer_schema_is_refused);
    tcase_add_test(tc, same_node_name_is_refused_other_names_run_beside);
    suite_add_tcase(s, tc);
    return s;
}
