/* SPDX-License-Identifier: MIT */
/*
 * tests/test_broker.c: the broker (lib/broker.h) driven on an event base
 * with echo and sleep jobs, without a server: put and its acknowledgement
 * (room, then durability: the memory store, a temp-dir journal, and a
 * fake store that acknowledges late or fails), cancel, join, scale,
 * pause, retries with backoff and timeouts, and the stages of a graceful
 * stop. The replay tests write journals the broker did not write the way
 * it writes now (records holding values a put could not make) and restore
 * them the way asyncqd starts; the ASan+UBSan build shows overflows. Every
 * wait runs the loop with a deadline; nothing sleeps.
 */
#include <check.h>
#include <dirent.h>
#include <event2/event.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "batch.h"
#include "broker-internal.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "journal.h"
#include "jwrite.h"
#include "store.h"
#include "suites.h"
#include "task.h"
#include "testutil.h"

#define WAIT_MS 5000
#define STR(s) ((struct aq_jstr){(s), sizeof(s) - 1})

struct env {
    char dir[64];
    struct event_base *base;
    struct aq_config *cfg;
    struct aq_broker *broker;
};

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static int
ignore_cb(const struct aq_jrec *r, uint32_t seg, void *arg,
          struct aq_error *err)
{
    return 0;
}

/* A temp dir holding a journal of the n records given. */
static void
env_write_journal(struct env *e, const struct aq_jrec *recs, size_t n)
{
    struct aq_journal_opts o = {
        .path = e->dir, .fsync = AQ_FSYNC_NEVER, .segment_bytes = 1 << 20};
    struct event_base *base = test_base_new();
    struct aq_error err = {0};
    struct aq_journal *j;
    uint64_t last_id = 0;
    bool damaged = false;

    snprintf(e->dir, sizeof e->dir, "/tmp/asyncq-tb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    j = aq_journal_open(base, &o, &err);
    ck_assert_msg(j != NULL, "open: %s", err.message);
    ck_assert_int_eq(
        aq_journal_replay(j, false, ignore_cb, NULL, &last_id, &damaged, &err),
        0);
    ck_assert_int_eq(aq_journal_start(j, 0, &err), 0);
    for (size_t i = 0; i < n; i++)
        aq_journal_hold(j, aq_journal_append(j, &recs[i]));
    aq_journal_close(j);
    test_base_free(base);
}

/* A broker on config text, with the memory store, not started. */
static void
env_new(struct env *e, const char *config)
{
    struct aq_error err = {0};

    e->base = test_base_new();
    e->cfg = aq_config_parse(config, strlen(config), &err);
    ck_assert_msg(e->cfg != NULL, "config: %s", err.message);
    e->broker = aq_broker_new(e->base, NULL, e->cfg);
}

/* The broker takes the journal store of e->dir and restores from it. */
static void
env_restore_journal(struct env *e, enum aq_fsync fsync)
{
    struct aq_error err = {0};
    struct aq_store *store;
    bool damaged = false;

    store = aq_store_journal_open(e->base, e->dir, fsync, 1 << 20, &err);
    ck_assert_msg(store != NULL, "open: %s", err.message);
    ck_assert_msg(aq_broker_restore(e->broker, store, &damaged, &err) == 0,
                  "restore: %s", err.message);
}

/* Starts a broker on config text and the journal, as asyncqd does. */
static void
env_start(struct env *e, const char *config)
{
    env_new(e, config);
    env_restore_journal(e, AQ_FSYNC_NEVER);
    aq_broker_start(e->broker);
}

static void
env_free(struct env *e)
{
    aq_broker_free(e->broker);
    aq_config_free(e->cfg);
    test_base_free(e->base);
    if (e->dir[0] != '\0')
        nftw(e->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void
flag_cb(struct aq_task *t, void *arg)
{
    *(bool *)arg = true;
}

/* The final record of job id, once it ends within WAIT_MS (new ref). */
static json_t *
await_end(struct env *e, uint64_t id)
{
    struct aq_error err = {0};
    struct aq_task *t = aq_broker_job_future(e->broker, id, &err);
    bool ended = false;
    json_t *rec;

    ck_assert_msg(t != NULL, "job %llu: %s", (unsigned long long)id,
                  err.message);
    aq_task_add_done_cb(t, flag_cb, &ended);
    ck_assert_msg(run_until(e->base, &ended, WAIT_MS),
                  "job %llu did not end within %d ms", (unsigned long long)id,
                  WAIT_MS);
    rec = json_incref(aq_task_result(t));
    aq_task_unref(t);
    return rec;
}

static const char *
state_of(struct env *e, uint64_t id)
{
    static char state[16];
    struct aq_error err = {0};
    json_t *rec = aq_broker_status(e->broker, id, &err);

    ck_assert_msg(rec != NULL, "status %llu: %s", (unsigned long long)id,
                  err.message);
    snprintf(state, sizeof state, "%s",
             json_string_value(json_object_get(rec, "state")));
    json_decref(rec);
    return state;
}

static struct aq_jrec
put_rec(uint64_t id, int kind, struct aq_jstr queue, struct aq_jstr args)
{
    return (struct aq_jrec){
        .type = AQ_JREC_PUT,
        .id = id,
        .kind = (uint8_t)kind,
        .state = 1, /* pending */
        .retries = -1,
        .timeout_us = -1,
        .created_us = aq_clock_wall_us(),
        .queue = queue,
        .args = args,
    };
}

/* Issue 11, defect 14: a sleep of 1e17 s put by an older version was
 * converted to microseconds past int64_t at every start. */
START_TEST(replayed_sleep_past_the_maximum_fails_instead_of_overflowing)
{
    struct env e = {0};
    struct aq_jrec recs[] = {
        put_rec(1, 2, STR("s"), STR("{\"seconds\":1e17}")),
        put_rec(2, 2, STR("s"), STR("{\"seconds\":1000000001}")),
        put_rec(3, 2, STR("s"), STR("{\"seconds\":0}")),
    };
    json_t *rec;

    env_write_journal(&e, recs, 3);
    env_start(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":1}}}");
    for (uint64_t id = 1; id <= 2; id++) {
        rec = await_end(&e, id);
        ck_assert_str_eq(json_string_value(json_object_get(rec, "state")),
                         "failed");
        ck_assert_str_eq(json_string_value(json_object_get(
                             json_object_get(rec, "error"), "code")),
                         "invalid_args");
        json_decref(rec);
    }
    rec = await_end(&e, 3);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "done");
    json_decref(rec);
    env_free(&e);
}
END_TEST

/* Times and durations no put makes are clamped, not trusted: a due time
 * at the end of time stays delayed (it does not wrap to "now"), a creation
 * time at the start of time does not overflow the wait-time histogram, a
 * timeout past the maximum does not overflow the timer. */
START_TEST(replayed_times_and_durations_out_of_range_are_clamped)
{
    struct env e = {0};
    struct aq_jrec recs[] = {
        put_rec(1, 3, STR("e"), STR("{\"a\":1}")),
        put_rec(2, 3, STR("e"), STR("{\"a\":2}")),
        put_rec(3, 3, STR("e"), STR("{\"a\":3}")),
        {.type = AQ_JREC_REQUEUE,
         .id = 3,
         .state = 4 /* failed */,
         .attempts = 1},
    };
    json_t *rec;

    recs[0].created_us = INT64_MIN;
    recs[0].started_us = INT64_MIN;
    recs[0].timeout_us = INT64_MAX;
    recs[0].retries = INT32_MIN;
    recs[1].due_us = INT64_MAX;
    env_write_journal(&e, recs, 4);
    env_start(&e, "{\"queues\":{\"e\":{\"kind\":\"echo\",\"consumers\":1}}}");
    rec = await_end(&e, 1);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "done");
    ck_assert(json_number_value(json_object_get(rec, "created")) >= 0);
    json_decref(rec);
    /* A requeue never finishes a job: 3 runs instead of ending "failed"
     * with no end record. */
    rec = await_end(&e, 3);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "done");
    json_decref(rec);
    ck_assert_str_eq(state_of(&e, 2), "delayed");
    env_free(&e);
}
END_TEST

/* ---- put and its acknowledgement ---- */

#define SLEEP_Q "{\"kind\":\"sleep\",\"consumers\":1}"
#define ECHO_Q "{\"kind\":\"echo\",\"consumers\":1}"

/* A put of args (JSON text) to queue, the queue's own settings. */
static struct aq_put
put_of(const char *queue, const char *args)
{
    return (struct aq_put){.queue = queue,
                           .args_raw = args,
                           .args_len = strlen(args),
                           .timeout = -1,
                           .retries = -1};
}

/* A put in flight and how it ended (filled by put_cb). */
struct put_out {
    struct aq_put_wait w;
    enum aq_put_status rc;
    bool is_called;
    int st;
    struct aq_put_result res;
    struct aq_error err;
};

static void
put_cb(void *arg, int st, const struct aq_put_result *res,
       const struct aq_error *err)
{
    struct put_out *o = arg;

    ck_assert_msg(!o->is_called, "a put's callback ran twice");
    o->is_called = true;
    o->st = st;
    if (res != NULL)
        o->res = *res;
    if (err != NULL)
        o->err = *err;
}

static enum aq_put_status
put(struct env *e, const struct aq_put *p, struct put_out *o)
{
    memset(o, 0, sizeof *o);
    o->rc = aq_broker_put(e->broker, p, &o->w, put_cb, o, &o->res, &o->err);
    ck_assert_msg(!o->is_called, "a put's callback ran inside the put");
    return o->rc;
}

/* Puts p, which must be acknowledged at once; returns its job id. */
static uint64_t
put_now(struct env *e, const struct aq_put *p)
{
    struct put_out o;

    ck_assert_msg(put(e, p, &o) == AQ_PUT_DONE, "put: %d (%s)", o.rc,
                  o.err.message);
    return o.res.job;
}

struct stats_out {
    struct aq_queue_stats s;
    bool is_found;
};

static void
stats_cb(const struct aq_queue_stats *s, void *arg)
{
    struct stats_out *o = arg;

    o->s = *s;
    o->is_found = true;
}

static struct aq_queue_stats
stats_of(struct env *e, const char *queue)
{
    struct stats_out o = {0};
    struct aq_error err = {0};

    ck_assert_msg(aq_broker_each_queue(e->broker, queue, stats_cb, &o, &err) ==
                      0,
                  "stats %s: %s", queue, err.message);
    return o.s;
}

static const char *
str_at(json_t *rec, const char *key, const char *sub)
{
    json_t *v = json_object_get(rec, key);

    return json_string_value(sub != NULL ? json_object_get(v, sub) : v);
}

START_TEST(put_echo_job_runs_to_done)
{
    struct env e = {0};
    struct aq_put p = put_of("e", "{\"a\":[1,2]}");
    json_t *rec;
    char *text;
    uint64_t id;

    env_new(&e, "{\"queues\":{\"e\":" ECHO_Q "}}");
    aq_broker_start(e.broker);
    id = put_now(&e, &p);
    ck_assert_uint_eq(id, 1);
    rec = await_end(&e, id);
    ck_assert_str_eq(str_at(rec, "state", NULL), "done");
    /* echo: the args unchanged, kept as their JSON text (lib/jwrite.h) */
    text = aq_jwrite_string(json_object_get(rec, "result"), NULL);
    ck_assert_str_eq(text, "{\"a\":[1,2]}");
    free(text);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "attempts")), 1);
    json_decref(rec);
    ck_assert_uint_eq(stats_of(&e, "e").done, 1);
    env_free(&e);
}
END_TEST

START_TEST(put_refusals_name_the_error)
{
    struct env e = {0};
    struct aq_put p = put_of("nope", "{}");
    struct put_out o;

    env_new(&e, "{\"queues\":{\"e\":" ECHO_Q "}}");
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FAILED);
    ck_assert_int_eq(o.err.code, AQ_ERR_NO_QUEUE);
    p = put_of("e", "{}");
    p.kind = "exec";
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FAILED);
    ck_assert_int_eq(o.err.code, AQ_ERR_NOT_ALLOWED);
    p = put_of("e", "{}");
    p.delay = -1;
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FAILED);
    ck_assert_int_eq(o.err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_uint_eq(stats_of(&e, "e").put, 0);
    env_free(&e);
}
END_TEST

START_TEST(put_with_a_known_key_names_the_first_job)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":5}");
    struct put_out o;

    env_new(&e, "{\"queues\":{\"s\":" SLEEP_Q "}}");
    p.key = "k1";
    ck_assert_uint_eq(put_now(&e, &p), 1);
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_DONE);
    ck_assert_uint_eq(o.res.job, 1);
    ck_assert(o.res.duplicate);
    ck_assert_str_eq(o.res.state, "pending");
    ck_assert_uint_eq(stats_of(&e, "s").put, 1);
    env_free(&e);
}
END_TEST

#define FULL_Q                                                                 \
    "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":0,\"maxsize\":1}}}"

/* await q.put(): a put to a full queue waits, then is queued once a job
 * leaves (here: cancelled), its callback from the loop. */
START_TEST(put_to_a_full_queue_waits_for_room)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out o;
    const char *state;

    env_new(&e, FULL_Q);
    aq_broker_start(e.broker);
    ck_assert_uint_eq(put_now(&e, &p), 1);
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FULL);
    run_for(e.base, 20);
    ck_assert(!o.is_called);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 1, &state, NULL), 0);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert_int_eq(o.st, 0);
    ck_assert_uint_eq(o.res.job, 2);
    ck_assert_str_eq(state_of(&e, 2), "pending");
    env_free(&e);
}
END_TEST

START_TEST(put_nowait_to_a_full_queue_fails)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out o;

    env_new(&e, FULL_Q);
    put_now(&e, &p);
    p.nowait = true;
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FAILED);
    ck_assert_int_eq(o.err.code, AQ_ERR_QUEUE_FULL);
    env_free(&e);
}
END_TEST

START_TEST(put_withdrawn_while_waiting_for_room_is_never_queued)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out o;
    const char *state;

    env_new(&e, FULL_Q);
    put_now(&e, &p);
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FULL);
    aq_broker_put_cancel(e.broker, &o.w);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 1, &state, NULL), 0);
    run_for(e.base, 20);
    ck_assert(!o.is_called);
    ck_assert_uint_eq(stats_of(&e, "s").unfinished, 0);
    ck_assert_uint_eq(stats_of(&e, "s").put, 1);
    env_free(&e);
}
END_TEST

static void
stopped_cb(void *arg)
{
    *(bool *)arg = true;
}

START_TEST(put_waiting_for_room_fails_when_the_broker_stops)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out o, late;
    bool stopped = false;

    env_new(&e, FULL_Q);
    aq_broker_start(e.broker);
    put_now(&e, &p);
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FULL);
    aq_broker_stop(e.broker, false, 0, stopped_cb, &stopped);
    ck_assert(o.is_called);
    ck_assert_int_eq(o.st, -1);
    ck_assert_int_eq(o.err.code, AQ_ERR_SHUTTING_DOWN);
    ck_assert_int_eq(put(&e, &p, &late), AQ_PUT_FAILED);
    ck_assert_int_eq(late.err.code, AQ_ERR_SHUTTING_DOWN);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    env_free(&e);
}
END_TEST

/* ---- the store seam: a fake store ---- */

/* Records the events it is told, and acknowledges syncs when the test
 * says (from the loop), or fails them. */
struct fake_store {
    struct aq_store store;
    char log[512];
    struct aq_barrier_list waits;
    struct aq_error fail; /* what error() and failed syncs say */
    bool is_failing, is_closed;
    int ncancelled;
    struct event_base *base;
};

static struct fake_store *
fake_of(struct aq_store *s)
{
    return (struct fake_store *)s;
}

static void
fake_log(struct aq_store *s, const char *what, const struct aq_job *j)
{
    struct fake_store *fs = fake_of(s);
    size_t n = strlen(fs->log);

    snprintf(fs->log + n, sizeof fs->log - n, "%s %llu;", what,
             (unsigned long long)j->id);
}

static int
fake_restore(struct aq_store *s, struct aq_broker *b, uint64_t *last_id,
             bool *is_damaged, struct aq_error *err)
{
    *last_id = 0;
    return 0;
}

static void
fake_put(struct aq_store *s, struct aq_job *j, const char *queue)
{
    fake_log(s, "put", j);
}

static void
fake_start(struct aq_store *s, struct aq_job *j)
{
    fake_log(s, "start", j);
}

static void
fake_requeue(struct aq_store *s, struct aq_job *j)
{
    fake_log(s, "requeue", j);
}

static void
fake_finish(struct aq_store *s, struct aq_job *j, const char *queue)
{
    fake_log(s, aq_job_state_name(j->state), j);
}

static void
fake_forget(struct aq_store *s, struct aq_job *j)
{
    fake_log(s, "forget", j);
}

static void
fake_retry(struct aq_store *s, struct aq_job *j, const char *queue)
{
    fake_log(s, "retry", j);
}

static void
fake_remove(struct aq_store *s, struct aq_job *j)
{
    fake_log(s, "remove", j);
}

static int
fake_sync(struct aq_store *s, struct aq_barrier *b, aq_barrier_cb *cb,
          void *arg, struct aq_error *err)
{
    struct fake_store *fs = fake_of(s);

    if (fs->is_failing) {
        *err = fs->fail;
        return -1;
    }
    b->cb = cb;
    b->arg = arg;
    TAILQ_INSERT_TAIL(&fs->waits, b, link);
    return 1;
}

static void
fake_sync_cancel(struct aq_store *s, struct aq_barrier *b)
{
    TAILQ_REMOVE(&fake_of(s)->waits, b, link);
    fake_of(s)->ncancelled++;
}

static const struct aq_error *
fake_error(const struct aq_store *s)
{
    const struct fake_store *fs = (const struct fake_store *)s;

    return fs->is_failing ? &fs->fail : NULL;
}

static void
fake_close(struct aq_store *s)
{
    fake_of(s)->is_closed = true; /* the test's memory */
}

static const struct aq_store_ops fake_ops = {
    .name = "fake",
    .restore = fake_restore,
    .put = fake_put,
    .start = fake_start,
    .requeue = fake_requeue,
    .finish = fake_finish,
    .forget = fake_forget,
    .retry = fake_retry,
    .remove = fake_remove,
    .sync = fake_sync,
    .sync_cancel = fake_sync_cancel,
    .error = fake_error,
    .close = fake_close,
};

static void
fake_ack_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fake_store *fs = arg;
    struct aq_barrier *b;

    while ((b = TAILQ_FIRST(&fs->waits)) != NULL) {
        TAILQ_REMOVE(&fs->waits, b, link);
        b->cb(b->arg, fs->is_failing ? &fs->fail : NULL);
    }
}

/* Every sync so far completes from the loop's next pass (or fails, when
 * the store is failing by then). */
static void
fake_ack(struct fake_store *fs)
{
    struct timeval now = {0, 0};

    event_base_once(fs->base, -1, EV_TIMEOUT, fake_ack_cb, fs, &now);
}

static void
env_fake(struct env *e, struct fake_store *fs, const char *config)
{
    struct aq_error err = {0};
    bool damaged;

    env_new(e, config);
    memset(fs, 0, sizeof *fs);
    fs->store.ops = &fake_ops;
    fs->base = e->base;
    TAILQ_INIT(&fs->waits);
    aq_error_set(&fs->fail, AQ_ERR_INTERNAL, "fake: disk on fire");
    ck_assert_int_eq(aq_broker_restore(e->broker, &fs->store, &damaged, &err),
                     0);
}

START_TEST(put_is_acknowledged_only_once_the_store_is)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("e", "{}");
    struct put_out o;

    env_fake(&e, &fs, "{\"queues\":{\"e\":" ECHO_Q "}}");
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_PENDING);
    ck_assert_str_eq(fs.log, "put 1;");
    run_for(e.base, 20);
    ck_assert(!o.is_called);
    fake_ack(&fs);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert_int_eq(o.st, 0);
    ck_assert_uint_eq(o.res.job, 1);
    ck_assert_str_eq(o.res.state, "pending");
    ck_assert(!o.res.duplicate);
    env_free(&e);
    ck_assert(fs.is_closed);
}
END_TEST

/* A put after room came: acknowledged once room came AND the store
 * acknowledged, in one callback. */
START_TEST(put_waiting_for_room_is_acknowledged_once_durable)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out first, o;
    const char *state;

    env_fake(&e, &fs, FULL_Q);
    ck_assert_int_eq(put(&e, &p, &first), AQ_PUT_PENDING);
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FULL);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 1, &state, NULL), 0);
    run_for(e.base, 20); /* room came: job 2 is queued, and syncing */
    ck_assert_str_eq(fs.log, "put 1;cancelled 1;put 2;");
    ck_assert(!o.is_called);
    fake_ack(&fs);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert(first.is_called);
    ck_assert_int_eq(o.st, 0);
    ck_assert_uint_eq(o.res.job, 2);
    env_free(&e);
}
END_TEST

START_TEST(put_fails_with_32603_when_the_store_fails_first)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("e", "{}");
    struct put_out o;

    env_fake(&e, &fs, "{\"queues\":{\"e\":" ECHO_Q "}}");
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_PENDING);
    fs.is_failing = true;
    fake_ack(&fs);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert_int_eq(o.st, -1);
    ck_assert_int_eq(o.err.code, AQ_ERR_INTERNAL);
    ck_assert_str_eq(o.err.message, "fake: disk on fire: put not "
                                    "acknowledged (job 1 may still run)");
    /* While the store fails, puts are refused at once, nothing queued. */
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_FAILED);
    ck_assert_int_eq(o.err.code, AQ_ERR_INTERNAL);
    ck_assert_str_eq(o.err.message, "fake: disk on fire");
    ck_assert_uint_eq(stats_of(&e, "e").put, 1);
    env_free(&e);
}
END_TEST

START_TEST(put_withdrawn_while_syncing_gets_no_callback)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("e", "{}");
    struct put_out o;

    env_fake(&e, &fs, "{\"queues\":{\"e\":" ECHO_Q "}}");
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_PENDING);
    aq_broker_put_cancel(e.broker, &o.w);
    ck_assert_int_eq(fs.ncancelled, 1);
    ck_assert(TAILQ_EMPTY(&fs.waits));
    fake_ack(&fs);
    run_for(e.base, 20);
    ck_assert(!o.is_called);
    env_free(&e);
}
END_TEST

/* ack_queued (a put that answers with the job's end) does not wait for
 * the store; a duplicate waits as long as a new job would. */
START_TEST(put_ack_queued_skips_the_sync_a_duplicate_does_not)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("e", "{}");
    struct put_out o;

    env_fake(&e, &fs, "{\"queues\":{\"e\":" ECHO_Q "}}");
    p.key = "k";
    p.ack_queued = true;
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_DONE);
    p.ack_queued = false;
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_PENDING);
    fake_ack(&fs);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert(o.res.duplicate);
    ck_assert_uint_eq(o.res.job, 1);
    env_free(&e);
}
END_TEST

/* The store hears each job event once, in order: an echo job that runs,
 * a sleep cancelled while pending, a record evicted by results.failed_max
 * (cancelled records are that class's since issue 13), a retry and a
 * delete by hand. */
START_TEST(store_is_told_every_job_event_in_order)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("e", "{}");
    const char *state;

    env_fake(&e, &fs,
             "{\"results\":{\"max\":1,\"failed_max\":0},\"queues\":{"
             "\"e\":" ECHO_Q ",\"s\":{\"kind\":\"sleep\",\"consumers\":0}}}");
    p.ack_queued = true;
    put_now(&e, &p);
    p = put_of("s", "{\"seconds\":1}");
    p.ack_queued = true;
    put_now(&e, &p);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 2, &state, NULL), 0);
    aq_broker_start(e.broker);
    json_decref(await_end(&e, 1));
    ck_assert_int_eq(aq_broker_retry(e.broker, 1, 0, &state, NULL), 0);
    json_decref(await_end(&e, 1));
    ck_assert_int_eq(aq_broker_delete(e.broker, 1, NULL), 0);
    ck_assert_str_eq(fs.log, "put 1;put 2;cancelled 2;forget 2;start 1;done "
                             "1;retry 1;start 1;done 1;remove 1;");
    env_free(&e);
}
END_TEST

/* ---- durability with the journal ---- */

/* fsync batch: the put is acknowledged from the loop once synced, and a
 * broker restored from the same journal has the job. */
START_TEST(put_acknowledged_by_the_journal_survives_a_restart)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":1}");
    struct put_out o;

    snprintf(e.dir, sizeof e.dir, "/tmp/asyncq-tb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e.dir));
    env_new(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":0}}}");
    env_restore_journal(&e, AQ_FSYNC_BATCH);
    p.priority = 7;
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_PENDING);
    ck_assert(run_until(e.base, &o.is_called, WAIT_MS));
    ck_assert_int_eq(o.st, 0);
    ck_assert_uint_eq(o.res.job, 1);
    aq_broker_free(e.broker);
    e.broker = aq_broker_new(e.base, NULL, e.cfg);
    env_restore_journal(&e, AQ_FSYNC_BATCH);
    ck_assert_str_eq(state_of(&e, 1), "pending");
    ck_assert_uint_eq(stats_of(&e, "s").size, 1);
    /* Ids go on from the journal's. */
    p.ack_queued = true;
    ck_assert_uint_eq(put_now(&e, &p), 2);
    env_free(&e);
}
END_TEST

/* ---- cancel, join ---- */

START_TEST(cancel_ends_pending_and_running_jobs_and_refuses_finished_ones)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":10}");
    struct aq_error err = {0};
    const char *state = NULL;
    json_t *rec;

    env_new(&e, "{\"queues\":{\"s\":" SLEEP_Q "}}");
    aq_broker_start(e.broker);
    put_now(&e, &p);
    put_now(&e, &p);
    run_for(e.base, 20); /* job 1 starts */
    ck_assert_str_eq(state_of(&e, 1), "running");
    ck_assert_int_eq(aq_broker_cancel(e.broker, 2, &state, &err), 0);
    ck_assert_str_eq(state, "cancelled");
    /* A sleep stops inside cancel. */
    ck_assert_int_eq(aq_broker_cancel(e.broker, 1, &state, &err), 0);
    ck_assert_str_eq(state, "cancelled");
    rec = await_end(&e, 1);
    ck_assert_str_eq(str_at(rec, "error", "code"), "cancelled");
    json_decref(rec);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 1, &state, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_FINISHED);
    ck_assert_int_eq(aq_broker_cancel(e.broker, 9, &state, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_JOB);
    ck_assert_uint_eq(stats_of(&e, "s").cancelled, 2);
    env_free(&e);
}
END_TEST

static void
join_cb(void *arg, int st, const struct aq_error *err)
{
    *(bool *)arg = true;
}

START_TEST(join_waits_until_the_queue_has_no_unfinished_job)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":0.02}");
    struct aq_join *join, *dropped;
    struct aq_error err = {0};
    bool joined = false, never = false;

    env_new(&e, "{\"queues\":{\"s\":" SLEEP_Q ",\"e\":" ECHO_Q "}}");
    ck_assert_int_eq(
        aq_broker_join(e.broker, "s", join_cb, &joined, &join, &err), 0);
    ck_assert_int_eq(
        aq_broker_join(e.broker, "nope", join_cb, &joined, &join, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    put_now(&e, &p);
    put_now(&e, &p);
    ck_assert_int_eq(
        aq_broker_join(e.broker, "s", join_cb, &joined, &join, &err), 1);
    ck_assert_int_eq(
        aq_broker_join(e.broker, NULL, join_cb, &never, &dropped, &err), 1);
    aq_broker_join_cancel(dropped);
    aq_broker_start(e.broker);
    ck_assert(run_until(e.base, &joined, WAIT_MS));
    ck_assert_str_eq(state_of(&e, 2), "done");
    ck_assert(!never);
    env_free(&e);
}
END_TEST

/* ---- scale, pause ---- */

START_TEST(scale_starts_and_retires_consumers)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":10}");
    struct aq_error err = {0};

    env_new(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":0}}}");
    aq_broker_start(e.broker);
    for (int i = 0; i < 3; i++)
        put_now(&e, &p);
    run_for(e.base, 20);
    ck_assert_int_eq(stats_of(&e, "s").running, 0);
    ck_assert_int_eq(aq_broker_scale(e.broker, "s", 2, &err), 0);
    run_for(e.base, 20);
    ck_assert_int_eq(stats_of(&e, "s").running, 2);
    ck_assert_int_eq(stats_of(&e, "s").consumers, 2);
    /* Down to one: a busy consumer retires after its job, so two still
     * run; one more job would never start beside them. */
    ck_assert_int_eq(aq_broker_scale(e.broker, "s", 1, &err), 0);
    ck_assert_int_eq(stats_of(&e, "s").running, 2);
    ck_assert_int_eq(aq_broker_scale(e.broker, "nope", 1, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    env_free(&e);
}
END_TEST

START_TEST(pause_holds_jobs_until_resume)
{
    struct env e = {0};
    struct aq_put p = put_of("e", "{}");
    struct aq_error err = {0};
    json_t *rec;

    env_new(&e, "{\"queues\":{\"e\":" ECHO_Q "}}");
    aq_broker_start(e.broker);
    run_for(e.base, 10); /* the consumer waits for jobs */
    ck_assert_int_eq(aq_broker_pause(e.broker, "e", true, &err), 0);
    ck_assert(stats_of(&e, "e").paused);
    put_now(&e, &p);
    run_for(e.base, 20);
    ck_assert_str_eq(state_of(&e, 1), "pending");
    ck_assert_int_eq(aq_broker_pause(e.broker, "e", false, &err), 0);
    rec = await_end(&e, 1);
    ck_assert_str_eq(str_at(rec, "state", NULL), "done");
    json_decref(rec);
    env_free(&e);
}
END_TEST

/* ---- retries, backoff, timeouts ---- */

/* A sleep past its timeout fails "timeout", is retried after the backoff
 * (0.02 s, then 0.04 s), and fails for good once out of retries. */
START_TEST(timed_out_job_is_retried_with_backoff_then_fails)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":10}");
    int64_t start_us = aq_clock_mono_us(), took_us;
    json_t *rec;

    env_new(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":1,"
                "\"timeout\":0.01,\"retries\":2,\"backoff\":{\"initial\":0.02,"
                "\"factor\":2,\"max\":1}}}}");
    aq_broker_start(e.broker);
    put_now(&e, &p);
    rec = await_end(&e, 1);
    took_us = aq_clock_mono_us() - start_us;
    ck_assert_str_eq(str_at(rec, "state", NULL), "failed");
    ck_assert_str_eq(str_at(rec, "error", "code"), "timeout");
    ck_assert_str_eq(str_at(rec, "error", "message"), "timed out after 0.01 s");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "attempts")), 3);
    json_decref(rec);
    /* Three timeouts and two backoffs: 0.03 + 0.06 s at least. */
    ck_assert_msg(took_us >= 90000, "took %lld us", (long long)took_us);
    ck_assert_uint_eq(stats_of(&e, "s").retried, 2);
    ck_assert_uint_eq(stats_of(&e, "s").failed, 1);
    env_free(&e);
}
END_TEST

/* A job's own retries and timeout win over the queue's. */
START_TEST(job_retries_and_timeout_override_the_queue)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":10}");
    json_t *rec;

    env_new(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":1,"
                "\"timeout\":100,\"retries\":5}}}");
    aq_broker_start(e.broker);
    p.timeout = 0.01;
    p.retries = 0;
    put_now(&e, &p);
    rec = await_end(&e, 1);
    ck_assert_str_eq(str_at(rec, "error", "code"), "timeout");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "attempts")), 1);
    json_decref(rec);
    env_free(&e);
}
END_TEST

/* ---- the graceful stop ---- */

/* A started broker whose queue "s" (one consumer) has n sleeps of args,
 * the first one running. */
static void
env_sleepers(struct env *e, const char *args, int n)
{
    struct aq_put p = put_of("s", args);

    env_new(e, "{\"queues\":{\"s\":" SLEEP_Q "}}");
    aq_broker_start(e->broker);
    for (int i = 0; i < n; i++)
        put_now(e, &p);
    run_for(e->base, 10);
}

START_TEST(stop_lets_a_running_job_finish_within_the_grace)
{
    struct env e = {0};
    bool stopped = false;

    /* Long enough that job 1 is still running when the stop comes, however
     * late a loaded machine runs the loop (0.03 s once finished first and
     * let job 2 start). */
    env_sleepers(&e, "{\"seconds\":0.5}", 2);
    aq_broker_stop(e.broker, false, 5, stopped_cb, &stopped);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    ck_assert_str_eq(state_of(&e, 1), "done");
    ck_assert_str_eq(state_of(&e, 2), "pending"); /* not started: no drain */
    env_free(&e);
}
END_TEST

/* Past the grace, a busy consumer is interrupted: its job goes back to
 * pending, the attempt not counted, and the store is told. */
START_TEST(stop_past_the_grace_puts_running_jobs_back_to_pending)
{
    struct env e = {0};
    struct fake_store fs;
    struct aq_put p = put_of("s", "{\"seconds\":10}");
    bool stopped = false;
    json_t *rec;

    env_fake(&e, &fs, "{\"queues\":{\"s\":" SLEEP_Q "}}");
    aq_broker_start(e.broker);
    p.ack_queued = true;
    put_now(&e, &p);
    run_for(e.base, 10);
    aq_broker_stop(e.broker, false, 0.02, stopped_cb, &stopped);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    rec = aq_broker_status(e.broker, 1, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "pending");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "attempts")), 0);
    json_decref(rec);
    ck_assert_str_eq(fs.log, "put 1;start 1;requeue 1;");
    env_free(&e);
}
END_TEST

START_TEST(stop_with_drain_runs_every_queued_job_first)
{
    struct env e = {0};
    bool stopped = false;

    env_sleepers(&e, "{\"seconds\":0.01}", 3);
    aq_broker_stop(e.broker, true, 5, stopped_cb, &stopped);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    ck_assert_uint_eq(stats_of(&e, "s").done, 3);
    env_free(&e);
}
END_TEST

/* A second signal, in the drain (_i 0) or in the grace (_i 1): what is
 * left of both is skipped, the running job interrupted at once. */
START_TEST(stop_now_interrupts_at_once)
{
    struct env e = {0};
    bool stopped = false;

    env_sleepers(&e, "{\"seconds\":10}", 2);
    aq_broker_stop(e.broker, _i == 0, 100, stopped_cb, &stopped);
    run_for(e.base, 10);
    ck_assert(!stopped);
    aq_broker_stop_now(e.broker);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    ck_assert_str_eq(state_of(&e, 1), "pending");
    ck_assert_str_eq(state_of(&e, 2), "pending");
    env_free(&e);
}
END_TEST

/* ---- records: retention, retry, delete, cancel by queue (issue 13) ---- */

/* Queue c: echo jobs that wait (no consumer) to be cancelled into
 * records; queue e: echo jobs that run to done. */
#define REC_QUEUES                                                             \
    "\"queues\":{\"e\":" ECHO_Q ",\"c\":{\"kind\":\"echo\",\"consumers\":0}}"

static int
error_of(struct env *e, uint64_t id)
{
    struct aq_error err = {0};
    json_t *rec = aq_broker_status(e->broker, id, &err);

    json_decref(rec);
    return rec != NULL ? 0 : err.code;
}

static json_int_t
int_at(json_t *rec, const char *key)
{
    return json_integer_value(json_object_get(rec, key));
}

/* A job put on c and cancelled: a cancelled record. */
static uint64_t
cancelled_job(struct env *e, const char *args)
{
    struct aq_put p = put_of("c", args);
    const char *state;
    uint64_t id;

    p.ack_queued = true;
    id = put_now(e, &p);
    ck_assert_int_eq(aq_broker_cancel(e->broker, id, &state, NULL), 0);
    return id;
}

static uint64_t
done_job(struct env *e, const char *args)
{
    struct aq_put p = put_of("e", args);
    uint64_t id;

    p.ack_queued = true;
    id = put_now(e, &p);
    json_decref(await_end(e, id));
    return id;
}

START_TEST(done_and_failed_records_are_kept_by_their_own_limits)
{
    struct env e = {0};
    uint64_t c1, c2, c3, d1, d2;

    env_new(&e, "{\"results\":{\"max\":1,\"failed_max\":2}," REC_QUEUES "}");
    aq_broker_start(e.broker);
    c1 = cancelled_job(&e, "{}");
    d1 = done_job(&e, "{}");
    c2 = cancelled_job(&e, "{}");
    d2 = done_job(&e, "{}");
    c3 = cancelled_job(&e, "{}");
    /* done: only the newest; failed and cancelled: the two newest */
    ck_assert_int_eq(error_of(&e, d1), AQ_ERR_NO_JOB);
    ck_assert_int_eq(error_of(&e, d2), 0);
    ck_assert_int_eq(error_of(&e, c1), AQ_ERR_NO_JOB);
    ck_assert_int_eq(error_of(&e, c2), 0);
    ck_assert_int_eq(error_of(&e, c3), 0);
    env_free(&e);
}
END_TEST

/* results.ttl and results.failed_ttl apart: restored records an hour and
 * a day old, done ones gone after ttl 3600, failed ones kept a week. */
START_TEST(done_records_expire_by_ttl_failed_ones_by_failed_ttl)
{
    struct env e = {0};
    int64_t now_us = aq_clock_wall_us();
    struct aq_jrec recs[4];
    static const int64_t age_s[4] = {7200, 7200, 86400, 8 * 86400};
    static const uint8_t state[4] = {3, 4, 5, 4};

    for (size_t i = 0; i < 4; i++)
        recs[i] = (struct aq_jrec){
            .type = AQ_JREC_END,
            .id = i + 1,
            .kind = 3,
            .state = state[i],
            .created_us = now_us - age_s[i] * 1000000 - 1,
            .finished_us = now_us - age_s[i] * 1000000,
            .queue = STR("c"),
            .args = STR("{\"n\":1}"),
        };
    env_write_journal(&e, recs, 4);
    env_start(&e, "{" REC_QUEUES "}");
    ck_assert_int_eq(error_of(&e, 1), AQ_ERR_NO_JOB); /* done, 2 h */
    ck_assert_str_eq(state_of(&e, 2), "failed");      /* 2 h */
    ck_assert_str_eq(state_of(&e, 3), "cancelled");   /* a day */
    ck_assert_int_eq(error_of(&e, 4), AQ_ERR_NO_JOB); /* failed, 8 days */
    env_free(&e);
}
END_TEST

/* results.max_bytes over both classes: the oldest record overall goes,
 * whatever its class. */
START_TEST(max_bytes_evicts_the_oldest_record_of_either_class)
{
    struct env e = {0};
    char args[700], config[256];
    uint64_t c1, d1, d2;

    snprintf(args, sizeof args, "{\"pad\":\"%0600d\"}", 0);
    /* an echo record holds its args twice (args, result): ~1.5 kB */
    snprintf(config, sizeof config,
             "{\"results\":{\"max_bytes\":3600}," REC_QUEUES "}");
    env_new(&e, config);
    aq_broker_start(e.broker);
    c1 = cancelled_job(&e, args);
    d1 = done_job(&e, args);
    ck_assert_int_eq(error_of(&e, c1), 0);
    d2 = done_job(&e, args);
    ck_assert_int_eq(error_of(&e, c1), AQ_ERR_NO_JOB);
    ck_assert_int_eq(error_of(&e, d1), 0);
    ck_assert_int_eq(error_of(&e, d2), 0);
    env_free(&e);
}
END_TEST

/* A retry: same id and args, attempts from 0, retried 1, error gone; it
 * is unfinished again (join waits, a new wait waits for its next end);
 * a done job may be retried too; its key comes back with it. */
START_TEST(retry_runs_a_finished_job_again_under_its_id)
{
    struct env e = {0};
    struct aq_put p = put_of("c", "{\"n\":1e3}");
    struct aq_error err = {0};
    struct aq_task *t;
    struct put_out o;
    const char *state;
    json_t *rec;
    uint64_t id;

    env_new(&e, "{" REC_QUEUES "}");
    aq_broker_start(e.broker);
    p.key = "k";
    p.priority = 4;
    p.ack_queued = true;
    id = put_now(&e, &p);
    ck_assert_int_eq(aq_broker_retry(e.broker, id, 0, &state, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_FINISHED);
    ck_assert_int_eq(aq_broker_cancel(e.broker, id, &state, NULL), 0);
    ck_assert_uint_eq(stats_of(&e, "c").unfinished, 0);
    ck_assert_int_eq(aq_broker_retry(e.broker, id, 0, &state, &err), 0);
    ck_assert_str_eq(state, "pending");
    ck_assert_uint_eq(stats_of(&e, "c").unfinished, 1);
    rec = aq_broker_status(e.broker, id, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "pending");
    ck_assert_int_eq(int_at(rec, "attempts"), 0);
    ck_assert_int_eq(int_at(rec, "retried"), 1);
    ck_assert_int_eq(int_at(rec, "priority"), 4);
    ck_assert_ptr_null(json_object_get(rec, "error"));
    ck_assert_ptr_null(json_object_get(rec, "finished"));
    json_decref(rec);
    /* the key names the job again */
    ck_assert_int_eq(put(&e, &p, &o), AQ_PUT_DONE);
    ck_assert(o.res.duplicate);
    ck_assert_uint_eq(o.res.job, id);
    /* a wait from now on waits for the next end */
    t = aq_broker_job_future(e.broker, id, NULL);
    ck_assert(!aq_task_is_finished(t));
    aq_task_unref(t);
    ck_assert_int_eq(aq_broker_scale(e.broker, "c", 1, NULL), 0);
    rec = await_end(&e, id);
    ck_assert_str_eq(str_at(rec, "state", NULL), "done");
    ck_assert_int_eq(int_at(rec, "attempts"), 1);
    ck_assert_int_eq(int_at(rec, "retried"), 1);
    json_decref(rec);
    /* done, retried again, with a delay */
    ck_assert_int_eq(aq_broker_retry(e.broker, id, 60, &state, &err), 0);
    ck_assert_str_eq(state, "delayed");
    rec = aq_broker_status(e.broker, id, NULL);
    ck_assert_int_eq(int_at(rec, "retried"), 2);
    ck_assert(json_number_value(json_object_get(rec, "due")) >
              (double)aq_clock_wall_us() / 1e6 + 50);
    json_decref(rec);
    ck_assert_int_eq(aq_broker_retry(e.broker, 999, 0, &state, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_JOB);
    env_free(&e);
}
END_TEST

/* Retry of a queue's failed or cancelled records: all of them, past
 * maxsize (an operator's action does not wait for room). */
START_TEST(retry_by_queue_requeues_every_record_of_the_state_past_maxsize)
{
    struct env e = {0};
    struct aq_error err = {0};
    size_t n = 0;

    env_new(&e, "{\"queues\":{\"e\":" ECHO_Q ",\"c\":{\"kind\":\"echo\","
                "\"consumers\":0,\"maxsize\":2}}}");
    aq_broker_start(e.broker);
    for (int i = 0; i < 5; i++)
        cancelled_job(&e, "{}");
    done_job(&e, "{}");
    ck_assert_int_eq(
        aq_broker_retry_queue(e.broker, "c", "failed", 0, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(
        aq_broker_retry_queue(e.broker, "c", "cancelled", 0, &n, &err), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(stats_of(&e, "c").unfinished, 5);
    ck_assert_uint_eq(stats_of(&e, "c").size, 5);
    ck_assert_int_eq(aq_broker_retry_queue(e.broker, "c", "done", 0, &n, &err),
                     -1);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_int_eq(
        aq_broker_retry_queue(e.broker, "nope", "failed", 0, &n, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    env_free(&e);
}
END_TEST

START_TEST(delete_drops_records_and_refuses_live_jobs)
{
    struct env e = {0};
    struct aq_put p = put_of("c", "{}");
    struct aq_error err = {0};
    uint64_t live, c1, d1;
    size_t n = 0;

    env_new(&e, "{" REC_QUEUES "}");
    aq_broker_start(e.broker);
    p.ack_queued = true;
    live = put_now(&e, &p);
    ck_assert_int_eq(aq_broker_delete(e.broker, live, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_FINISHED);
    ck_assert_msg(strstr(err.message, "cancel it first") != NULL, "%s",
                  err.message);
    c1 = cancelled_job(&e, "{}");
    cancelled_job(&e, "{}");
    d1 = done_job(&e, "{}");
    ck_assert_int_eq(aq_broker_delete(e.broker, c1, &err), 0);
    ck_assert_int_eq(error_of(&e, c1), AQ_ERR_NO_JOB);
    ck_assert_int_eq(aq_broker_delete(e.broker, c1, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_JOB);
    ck_assert_int_eq(
        aq_broker_delete_queue(e.broker, "c", "cancelled", &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(aq_broker_delete_queue(e.broker, "c", "done", &n, &err),
                     0);
    ck_assert_uint_eq(n, 0); /* d1 is e's */
    ck_assert_int_eq(aq_broker_delete_queue(e.broker, "e", "done", &n, &err),
                     0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(error_of(&e, d1), AQ_ERR_NO_JOB);
    ck_assert_int_eq(aq_broker_delete_queue(e.broker, "e", "pending", &n, &err),
                     -1);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(state_of(&e, live), "pending");
    env_free(&e);
}
END_TEST

/* Cancel by queue: the pending and delayed jobs at once; the running ones
 * only when asked, interrupted as a single cancel does. */
START_TEST(cancel_by_queue_ends_waiting_jobs_and_running_ones_when_asked)
{
    struct env e = {0};
    struct aq_put p = put_of("s", "{\"seconds\":30}");
    struct aq_error err = {0};
    json_t *rec;
    size_t n = 0;

    env_new(&e, "{\"queues\":{\"s\":{\"kind\":\"sleep\",\"consumers\":2}}}");
    aq_broker_start(e.broker);
    p.ack_queued = true;
    for (int i = 0; i < 4; i++)
        put_now(&e, &p);
    p.delay = 60;
    put_now(&e, &p); /* 5, delayed */
    run_for(e.base, 20);
    ck_assert_int_eq(stats_of(&e, "s").running, 2);
    ck_assert_int_eq(aq_broker_cancel_queue(e.broker, "s", false, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(state_of(&e, 5), "cancelled");
    ck_assert_str_eq(state_of(&e, 3), "cancelled");
    ck_assert_str_eq(state_of(&e, 1), "running");
    ck_assert_int_eq(aq_broker_cancel_queue(e.broker, "s", true, &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    rec = await_end(&e, 1);
    ck_assert_str_eq(str_at(rec, "state", NULL), "cancelled");
    json_decref(rec);
    json_decref(await_end(&e, 2));
    ck_assert_uint_eq(stats_of(&e, "s").unfinished, 0);
    ck_assert_int_eq(aq_broker_cancel_queue(e.broker, "nope", true, &n, &err),
                     -1);
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    env_free(&e);
}
END_TEST

/* Records keep their args through a restart; a retry and a delete are in
 * the journal: the retried job comes back unfinished, the deleted one
 * does not come back. */
START_TEST(records_retries_and_deletes_survive_a_restart)
{
    struct env e = {0};
    const char *state;
    json_t *rec;
    uint64_t a, b, c;

    snprintf(e.dir, sizeof e.dir, "/tmp/asyncq-tb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e.dir));
    env_start(&e, "{" REC_QUEUES "}");
    a = cancelled_job(&e, "{\"n\":1.50}");
    b = cancelled_job(&e, "{\"n\":2}");
    c = cancelled_job(&e, "{\"n\":3}");
    ck_assert_int_eq(aq_broker_retry(e.broker, b, 0, &state, NULL), 0);
    ck_assert_int_eq(aq_broker_delete(e.broker, c, NULL), 0);
    aq_broker_free(e.broker);
    e.broker = aq_broker_new(e.base, NULL, e.cfg);
    env_restore_journal(&e, AQ_FSYNC_NEVER);
    rec = aq_broker_status(e.broker, a, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "cancelled");
    {
        char *text = aq_jwrite_string(json_object_get(rec, "args"), NULL);

        ck_assert_str_eq(text, "{\"n\":1.50}");
        free(text);
    }
    json_decref(rec);
    rec = aq_broker_status(e.broker, b, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "pending");
    ck_assert_int_eq(int_at(rec, "retried"), 1);
    ck_assert_int_eq(int_at(rec, "attempts"), 0);
    ck_assert_ptr_null(json_object_get(rec, "error"));
    json_decref(rec);
    ck_assert_int_eq(error_of(&e, c), AQ_ERR_NO_JOB);
    ck_assert_uint_eq(stats_of(&e, "c").unfinished, 1);
    env_free(&e);
}
END_TEST

/* Replay of records as the journal holds them: END then PUT of one id (a
 * retry) is live again; END then DELETE is gone; an END of format 2
 * (no args) is a record without args that cannot be retried. */
/* A whole record after a job's first one (a retry's PUT after its END)
 * is checked as the first is: a state out of range, or one its type
 * cannot hold, is damage, not an index out of bounds (found by
 * fuzz_journal). */
START_TEST(replayed_later_whole_record_with_a_bad_state_is_malformed)
{
    static const uint8_t bad[] = {33, AQ_JOB_DONE};

    for (size_t i = 0; i < sizeof bad; i++) {
        struct env e = {0};
        struct aq_jrec recs[2];
        struct aq_error err = {0};
        struct aq_store *store;
        bool damaged = false;

        recs[0] = (struct aq_jrec){.type = AQ_JREC_END,
                                   .id = 1,
                                   .kind = 3,
                                   .state = AQ_JOB_FAILED,
                                   .created_us = aq_clock_wall_us() - 10,
                                   .finished_us = aq_clock_wall_us(),
                                   .queue = STR("c"),
                                   .args = STR("{}")};
        recs[1] = put_rec(1, 3, STR("c"), STR("{}"));
        recs[1].state = bad[i];
        env_write_journal(&e, recs, 2);
        env_new(&e, "{" REC_QUEUES "}");
        store =
            aq_store_journal_open(e.base, e.dir, AQ_FSYNC_NEVER, 1 << 20, &err);
        ck_assert_msg(store != NULL, "open: %s", err.message);
        ck_assert_int_eq(aq_broker_restore(e.broker, store, &damaged, &err),
                         -1);
        ck_assert_msg(strstr(err.message, "job 1: malformed record") != NULL,
                      "%s", err.message);
        env_free(&e);
    }
}
END_TEST

START_TEST(replayed_end_then_put_is_live_end_then_delete_is_gone)
{
    struct env e = {0};
    struct aq_jrec end = {.type = AQ_JREC_END,
                          .id = 1,
                          .kind = 3,
                          .state = 4,
                          .attempts = 1,
                          .created_us = aq_clock_wall_us() - 10,
                          .finished_us = aq_clock_wall_us(),
                          .queue = STR("c"),
                          .args = STR("{\"v\":1}"),
                          .err_code = STR("exit"),
                          .err_message = STR("exit code 1")};
    struct aq_jrec recs[6];
    struct aq_error err = {0};
    const char *state;
    json_t *rec;

    recs[0] = end;
    recs[1] = put_rec(1, 3, STR("c"), STR("{\"v\":1}"));
    recs[1].retried = 1;
    recs[2] = end;
    recs[2].id = 2;
    recs[3] = (struct aq_jrec){.type = AQ_JREC_DELETE, .id = 2};
    recs[4] = end;
    recs[4].id = 3;
    recs[4].args = (struct aq_jstr){NULL, 0};
    recs[5] = (struct aq_jrec){.type = AQ_JREC_DELETE, .id = 99};
    env_write_journal(&e, recs, 6);
    env_new(&e, "{" REC_QUEUES "}");
    env_restore_journal(&e, AQ_FSYNC_NEVER);
    rec = aq_broker_status(e.broker, 1, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "pending");
    ck_assert_int_eq(int_at(rec, "retried"), 1);
    ck_assert_ptr_null(json_object_get(rec, "error"));
    json_decref(rec);
    ck_assert_uint_eq(stats_of(&e, "c").unfinished, 1);
    ck_assert_int_eq(error_of(&e, 2), AQ_ERR_NO_JOB);
    rec = aq_broker_status(e.broker, 3, NULL);
    ck_assert_str_eq(str_at(rec, "state", NULL), "failed");
    ck_assert_ptr_null(json_object_get(rec, "args"));
    json_decref(rec);
    ck_assert_int_eq(aq_broker_retry(e.broker, 3, 0, &state, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_NOT_ALLOWED);
    env_free(&e);
}
END_TEST

static size_t
segment_files(const char *dir, bool *has_first)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t n = 0;

    ck_assert_ptr_nonnull(d);
    *has_first = false;
    while ((ent = readdir(d)) != NULL) {
        if (strstr(ent->d_name, ".aqj") != NULL &&
            strstr(ent->d_name, ".tmp") == NULL) {
            n++;
            *has_first |= strcmp(ent->d_name, "00000001.aqj") == 0;
        }
    }
    closedir(d);
    return n;
}

/* A failed record lives a week: it must not pin the segment it was
 * written to. Once that segment holds little else, the record is
 * re-appended (rehomed) and the segment deleted; it comes back at a
 * restart all the same. */
START_TEST(long_lived_records_are_rehomed_out_of_old_segments)
{
    struct env e = {0};
    struct aq_error err = {0};
    struct aq_store *store;
    bool damaged = false, has_first = true;
    json_t *rec;
    char *text;
    uint64_t kept;
    int i;

    snprintf(e.dir, sizeof e.dir, "/tmp/asyncq-tb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e.dir));
    env_new(&e, "{\"results\":{\"max\":0}," REC_QUEUES "}");
    store = aq_store_journal_open(e.base, e.dir, AQ_FSYNC_NEVER, 4096, &err);
    ck_assert_msg(store != NULL, "open: %s", err.message);
    ck_assert_int_eq(aq_broker_restore(e.broker, store, &damaged, &err), 0);
    aq_broker_start(e.broker);
    kept = cancelled_job(&e, "{\"keep\":\"me\"}");
    for (i = 0; i < 2000 && has_first; i++) {
        done_job(&e, "{\"pad\":\"0123456789012345678901234567890123456789\"}");
        if (i % 50 == 49) {
            run_for(e.base, 5);
            segment_files(e.dir, &has_first);
        }
    }
    ck_assert_msg(!has_first, "segment 1 still there after %d jobs", i);
    aq_broker_free(e.broker);
    e.broker = aq_broker_new(e.base, NULL, e.cfg);
    env_restore_journal(&e, AQ_FSYNC_NEVER);
    rec = aq_broker_status(e.broker, kept, NULL);
    ck_assert_ptr_nonnull(rec);
    ck_assert_str_eq(str_at(rec, "state", NULL), "cancelled");
    text = aq_jwrite_string(json_object_get(rec, "args"), NULL);
    ck_assert_str_eq(text, "{\"keep\":\"me\"}");
    free(text);
    json_decref(rec);
    env_free(&e);
}
END_TEST

/* ---- list: the per-state indexes ---- */

#define LIST_JOBS 96

/* How many jobs list gives for queue in the state of bit k. */
static size_t
list_count(struct env *e, const char *queue, unsigned k)
{
    struct aq_list l = {
        .queue = queue, .states = 1u << k, .limit = AQ_LIST_MAX};
    json_t *page = aq_broker_list(e->broker, &l, NULL);
    size_t n = json_array_size(json_object_get(page, "jobs"));

    json_decref(page);
    return n;
}

/* The batches of the list test: each counts, by state, exactly the jobs
 * whose status names it (evicted ones leave it), and list by batch gives
 * them, in id order. */
static void
assert_batches_exact(struct env *e, const uint64_t *ids, size_t n)
{
    static const char *const batches[] = {"b0", "b1"};

    for (size_t k = 0; k < 2; k++) {
        struct aq_batch_counts want = {0}, got;
        struct aq_list l = {
            .batch = batches[k], .states = ~0u, .limit = AQ_LIST_MAX};
        json_t *page;

        for (size_t at = 0; at < n; at++) {
            json_t *rec = aq_broker_status(e->broker, ids[at], NULL);
            const char *b = str_at(rec, "batch", NULL);

            if (rec != NULL && b != NULL && strcmp(b, batches[k]) == 0) {
                for (int st = 0; st < AQ_BATCH_NSTATES; st++) {
                    if (strcmp(str_at(rec, "state", NULL),
                               aq_job_state_name((enum aq_job_state)st)) == 0)
                        want.states[st]++;
                }
                want.total++;
            }
            json_decref(rec);
        }
        aq_broker_batch_counts(e->broker, batches[k], &got);
        ck_assert_uint_eq(got.total, want.total);
        for (int st = 0; st < AQ_BATCH_NSTATES; st++) {
            ck_assert_msg(got.states[st] == want.states[st],
                          "batch %s: %s %llu, status says %llu", batches[k],
                          aq_job_state_name((enum aq_job_state)st),
                          (unsigned long long)got.states[st],
                          (unsigned long long)want.states[st]);
            if (!aq_job_state_is_finished((enum aq_job_state)st))
                want.unfinished += want.states[st];
        }
        ck_assert_uint_eq(got.unfinished, want.unfinished);
        page = aq_broker_list(e->broker, &l, NULL);
        ck_assert_uint_eq(json_array_size(json_object_get(page, "jobs")),
                          want.total);
        json_decref(page);
    }
}

/* Every job of ids[] is listed under exactly the state its status gives
 * (an evicted one nowhere), in id order, each state walked one page of
 * 1000 at most; each queue's delayed, pending and running jobs are as
 * many as its stats count (the queue's own view). */
static void
assert_index_exact(struct env *e, const uint64_t *ids, size_t n)
{
    const char *listed[LIST_JOBS + 1] = {0}; /* by position in ids */
    static const char *const queues[] = {"p", "e", "t", "s"};

    for (size_t q = 0; q < 4; q++) {
        struct aq_queue_stats st = stats_of(e, queues[q]);

        ck_assert_uint_eq(list_count(e, queues[q], 0), st.delayed);
        ck_assert_uint_eq(list_count(e, queues[q], 2), st.size);
        ck_assert_uint_eq(list_count(e, queues[q], 3), (size_t)st.running);
    }

    for (size_t k = 0; aq_list_state_names[k] != NULL; k++) {
        struct aq_list l = {.states = 1u << k, .limit = AQ_LIST_MAX};
        struct aq_error err = {0};
        json_t *page = aq_broker_list(e->broker, &l, &err), *rec;
        uint64_t prev = 0;
        size_t i;

        ck_assert_msg(page != NULL, "list: %s", err.message);
        ck_assert(json_is_null(json_object_get(page, "next")));
        json_array_foreach (json_object_get(page, "jobs"), i, rec) {
            uint64_t id =
                (uint64_t)json_integer_value(json_object_get(rec, "job"));
            size_t at = 0;

            ck_assert_msg(id > prev, "list %s: not in id order",
                          aq_list_state_names[k]);
            prev = id;
            while (at < n && ids[at] != id)
                at++;
            ck_assert_msg(at < n, "list %s: unknown job %llu",
                          aq_list_state_names[k], (unsigned long long)id);
            ck_assert_msg(listed[at] == NULL, "job %llu listed %s and %s",
                          (unsigned long long)id, listed[at],
                          aq_list_state_names[k]);
            listed[at] = aq_list_state_names[k];
            ck_assert_str_eq(str_at(rec, "state", NULL),
                             aq_list_state_names[k]);
        }
        json_decref(page);
    }
    for (size_t at = 0; at < n; at++) {
        struct aq_error err = {0};
        json_t *rec = aq_broker_status(e->broker, ids[at], &err);

        if (rec == NULL) {
            ck_assert_msg(listed[at] == NULL, "evicted job %llu listed %s",
                          (unsigned long long)ids[at], listed[at]);
            continue;
        }
        ck_assert_msg(listed[at] != NULL &&
                          strcmp(listed[at], str_at(rec, "state", NULL)) == 0,
                      "job %llu is %s, listed %s", (unsigned long long)ids[at],
                      str_at(rec, "state", NULL),
                      listed[at] != NULL ? listed[at] : "nowhere");
        json_decref(rec);
    }
    assert_batches_exact(e, ids, n);
}

/* Jobs through every path that changes a state: put (pending, delayed),
 * a delay running out, start, timeout and retry after a backoff, done,
 * failed, cancel (pending, delayed, running), records evicted by
 * results.max, a stop that puts running jobs back, a restart from the
 * journal with jobs that were running; the indexes agree with status at
 * every step. */
START_TEST(list_indexes_follow_every_state_change)
{
    struct env e = {0};
    const char *cfg =
        "{\"results\":{\"max\":20},\"queues\":{"
        "\"p\":{\"kind\":\"echo\",\"consumers\":0},"
        "\"e\":{\"kind\":\"echo\",\"consumers\":2},"
        "\"t\":{\"kind\":\"sleep\",\"consumers\":2,\"timeout\":0.01,"
        "\"retries\":1,\"backoff\":{\"initial\":0.02}},"
        "\"s\":{\"kind\":\"sleep\",\"consumers\":2}}}";
    uint64_t ids[LIST_JOBS];
    size_t n = 0;
    bool stopped = false;

    snprintf(e.dir, sizeof e.dir, "/tmp/asyncq-tb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e.dir));
    env_start(&e, cfg);
    for (int round = 0; round < 4; round++) {
        struct aq_put p;

        for (int i = 0; i < 6; i++) {
            p = put_of("p", "{}");
            p.delay = i % 2 == 0 ? 0.03 : 0;
            p.batch = i % 3 == 0 ? "b0" : i % 3 == 1 ? "b1" : NULL;
            p.ack_queued = true;
            ids[n++] = put_now(&e, &p);
            p = put_of("e", "{}");
            p.batch = i % 3 == 2 ? "b0" : i % 3 == 0 ? "b1" : NULL;
            p.ack_queued = true;
            ids[n++] = put_now(&e, &p);
        }
        p = put_of("t", "{\"seconds\":5}");
        p.batch = "b1";
        p.ack_queued = true;
        ids[n++] = put_now(&e, &p);
        p = put_of("s", "{\"seconds\":5}");
        p.batch = "b0";
        p.ack_queued = true;
        ids[n++] = put_now(&e, &p);
        p = put_of("p", "{}");
        p.batch = round % 2 == 0 ? "b0" : NULL;
        p.delay = 100;
        p.ack_queued = true;
        ids[n++] = put_now(&e, &p);
        assert_index_exact(&e, ids, n);
        run_for(e.base, 15);
        assert_index_exact(&e, ids, n);
        /* Cancel a pending, a delayed and a running job. */
        for (size_t i = n - 15; i < n; i++) {
            const char *st = state_of(&e, ids[i]), *ignored;

            if (i % 5 == 0 && strcmp(st, "pending") == 0)
                aq_broker_cancel(e.broker, ids[i], &ignored, NULL);
        }
        aq_broker_cancel(e.broker, ids[n - 1], &(const char *){0}, NULL);
        aq_broker_cancel(e.broker, ids[n - 2], &(const char *){0}, NULL);
        run_for(e.base, 40);
        assert_index_exact(&e, ids, n);
    }
    ck_assert_uint_le(n, LIST_JOBS);
    /* A stop past the grace: running jobs go back to pending. */
    aq_broker_stop(e.broker, false, 0.01, stopped_cb, &stopped);
    ck_assert(run_until(e.base, &stopped, WAIT_MS));
    assert_index_exact(&e, ids, n);
    /* Restarted from the journal: the same, and a job left running at a
     * "crash" (the broker freed under it) counts the attempt. */
    aq_broker_free(e.broker);
    e.broker = aq_broker_new(e.base, NULL, e.cfg);
    env_restore_journal(&e, AQ_FSYNC_NEVER);
    assert_index_exact(&e, ids, n);
    aq_broker_start(e.broker);
    run_for(e.base, 30);
    assert_index_exact(&e, ids, n);
    aq_broker_free(e.broker);
    e.broker = aq_broker_new(e.base, NULL, e.cfg);
    env_restore_journal(&e, AQ_FSYNC_NEVER);
    assert_index_exact(&e, ids, n);
    /* By hand: a record retried (it keeps its batch), another deleted. */
    {
        size_t retried = 0, deleted = 0;

        for (size_t at = 0; at < n; at++) {
            json_t *rec = aq_broker_status(e.broker, ids[at], NULL);
            const char *st = str_at(rec, "state", NULL), *ignored;

            if (st != NULL && strcmp(st, "cancelled") == 0 &&
                json_object_get(rec, "batch") != NULL) {
                if (retried < 2 &&
                    aq_broker_retry(e.broker, ids[at], 0, &ignored, NULL) == 0)
                    retried++;
                else if (deleted < 2 &&
                         aq_broker_delete(e.broker, ids[at], NULL) == 0)
                    deleted++;
            }
            json_decref(rec);
        }
        ck_assert_uint_eq(retried, 2);
        ck_assert_uint_eq(deleted, 2);
    }
    assert_index_exact(&e, ids, n);
    env_free(&e);
}
END_TEST

START_TEST(list_pages_merge_queues_and_states_by_id)
{
    struct env e = {0};
    struct aq_list l = {.states = ~0u, .limit = 3};
    struct aq_error err = {0};
    uint64_t want[9];
    json_t *page;

    env_new(&e, "{\"queues\":{\"a\":{\"kind\":\"echo\",\"consumers\":0},"
                "\"b\":{\"kind\":\"echo\",\"consumers\":0}}}");
    for (int i = 0; i < 9; i++) {
        struct aq_put p = put_of(i % 2 == 0 ? "a" : "b", "{}");

        p.delay = i % 3 == 0 ? 50 : 0;
        want[i] = put_now(&e, &p);
    }
    for (int order = 0; order < 2; order++) {
        size_t seen = 0;

        l.is_desc = order == 1;
        l.after = l.before = 0;
        do {
            json_t *rec, *next;
            size_t i;

            page = aq_broker_list(e.broker, &l, &err);
            ck_assert_ptr_nonnull(page);
            json_array_foreach (json_object_get(page, "jobs"), i, rec) {
                uint64_t id =
                    (uint64_t)json_integer_value(json_object_get(rec, "job"));

                ck_assert_uint_eq(id, want[order == 0 ? seen : 8 - seen]);
                seen++;
            }
            next = json_object_get(page, "next");
            if (l.is_desc)
                l.before = (uint64_t)json_integer_value(next);
            else
                l.after = (uint64_t)json_integer_value(next);
            ck_assert(json_is_null(next) == (seen == 9));
            json_decref(page);
        } while (seen < 9);
    }
    l = (struct aq_list){.queue = "nope", .states = ~0u, .limit = 1};
    ck_assert_ptr_null(aq_broker_list(e.broker, &l, &err));
    ck_assert_int_eq(err.code, AQ_ERR_NO_QUEUE);
    env_free(&e);
}
END_TEST

/* A node sharing jobs takes ahead what its consumers run in about 20 ms:
 * 16 per taker of short jobs, none of long ones, 1 before any ran. */
START_TEST(ahead_follows_the_mean_run_time)
{
    struct broker_queue bq;

    memset(&bq, 0, sizeof bq);
    ck_assert_uint_eq(broker_queue_ahead(&bq), 1);
    aq_hist_add(&bq.run_hist, 50);
    ck_assert_uint_eq(broker_queue_ahead(&bq), 16);
    memset(&bq, 0, sizeof bq);
    aq_hist_add(&bq.run_hist, 5000);
    ck_assert_uint_eq(broker_queue_ahead(&bq), 4);
    aq_hist_add(&bq.run_hist, 10000000);
    ck_assert_uint_eq(broker_queue_ahead(&bq), 0);
}
END_TEST

Suite *
broker_suite(void)
{
    Suite *s = suite_create("broker");
    TCase *tc = test_tcase_new("replay");

    tcase_add_test(
        tc, replayed_sleep_past_the_maximum_fails_instead_of_overflowing);
    tcase_add_test(tc, replayed_times_and_durations_out_of_range_are_clamped);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("put");
    tcase_add_test(tc, put_echo_job_runs_to_done);
    tcase_add_test(tc, put_refusals_name_the_error);
    tcase_add_test(tc, put_with_a_known_key_names_the_first_job);
    tcase_add_test(tc, put_to_a_full_queue_waits_for_room);
    tcase_add_test(tc, put_nowait_to_a_full_queue_fails);
    tcase_add_test(tc, put_withdrawn_while_waiting_for_room_is_never_queued);
    tcase_add_test(tc, put_waiting_for_room_fails_when_the_broker_stops);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("store");
    tcase_add_test(tc, put_is_acknowledged_only_once_the_store_is);
    tcase_add_test(tc, put_waiting_for_room_is_acknowledged_once_durable);
    tcase_add_test(tc, put_fails_with_32603_when_the_store_fails_first);
    tcase_add_test(tc, put_withdrawn_while_syncing_gets_no_callback);
    tcase_add_test(tc, put_ack_queued_skips_the_sync_a_duplicate_does_not);
    tcase_add_test(tc, store_is_told_every_job_event_in_order);
    tcase_add_test(tc, put_acknowledged_by_the_journal_survives_a_restart);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("jobs");
    tcase_add_test(
        tc, cancel_ends_pending_and_running_jobs_and_refuses_finished_ones);
    tcase_add_test(tc, join_waits_until_the_queue_has_no_unfinished_job);
    tcase_add_test(tc, scale_starts_and_retires_consumers);
    tcase_add_test(tc, pause_holds_jobs_until_resume);
    tcase_add_test(tc, timed_out_job_is_retried_with_backoff_then_fails);
    tcase_add_test(tc, job_retries_and_timeout_override_the_queue);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("records");
    tcase_add_test(tc, done_and_failed_records_are_kept_by_their_own_limits);
    tcase_add_test(tc, done_records_expire_by_ttl_failed_ones_by_failed_ttl);
    tcase_add_test(tc, max_bytes_evicts_the_oldest_record_of_either_class);
    tcase_add_test(tc, retry_runs_a_finished_job_again_under_its_id);
    tcase_add_test(
        tc, retry_by_queue_requeues_every_record_of_the_state_past_maxsize);
    tcase_add_test(tc, delete_drops_records_and_refuses_live_jobs);
    tcase_add_test(
        tc, cancel_by_queue_ends_waiting_jobs_and_running_ones_when_asked);
    tcase_add_test(tc, records_retries_and_deletes_survive_a_restart);
    tcase_add_test(tc, replayed_end_then_put_is_live_end_then_delete_is_gone);
    tcase_add_test(tc,
                   replayed_later_whole_record_with_a_bad_state_is_malformed);
    tcase_add_test(tc, long_lived_records_are_rehomed_out_of_old_segments);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("stop");
    tcase_add_test(tc, stop_lets_a_running_job_finish_within_the_grace);
    tcase_add_test(tc, stop_past_the_grace_puts_running_jobs_back_to_pending);
    tcase_add_test(tc, stop_with_drain_runs_every_queued_job_first);
    tcase_add_loop_test(tc, stop_now_interrupts_at_once, 0, 2);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("list");
    tcase_add_test(tc, list_indexes_follow_every_state_change);
    tcase_add_test(tc, list_pages_merge_queues_and_states_by_id);
    tcase_add_test(tc, ahead_follows_the_mean_run_time);
    suite_add_tcase(s, tc);
    return s;
}
