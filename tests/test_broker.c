/* SPDX-License-Identifier: MIT */
/*
 * tests/test_broker.c: what the broker does with a journal it did not
 * write the way it writes now: records holding values a put could not make
 * (durations past 1e9 s, times out of range, args past a kind's limits).
 * Each test writes such records with lib/journal, then replays them into a
 * broker the way asyncqd starts, and runs the loop (with deadlines) until
 * the jobs end. The ASan+UBSan build is the one that shows overflows.
 */
#include <check.h>
#include <event2/event.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "journal.h"
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

/* Starts a broker on config text and the journal, as asyncqd does. */
static void
env_start(struct env *e, const char *config)
{
    struct aq_error err = {0};
    struct aq_store *store;
    bool damaged = false;

    e->base = test_base_new();
    e->cfg = aq_config_parse(config, strlen(config), &err);
    ck_assert_msg(e->cfg != NULL, "config: %s", err.message);
    e->broker = aq_broker_new(e->base, NULL, e->cfg);
    store =
        aq_store_journal_open(e->base, e->dir, AQ_FSYNC_NEVER, 1 << 20, &err);
    ck_assert_msg(store != NULL, "open: %s", err.message);
    ck_assert_msg(aq_broker_restore(e->broker, store, &damaged, &err) == 0,
                  "restore: %s", err.message);
    aq_broker_start(e->broker);
}

static void
env_free(struct env *e)
{
    aq_broker_free(e->broker);
    aq_config_free(e->cfg);
    test_base_free(e->base);
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

Suite *
broker_suite(void)
{
    Suite *s = suite_create("broker");
    TCase *tc = test_tcase_new("replay");

    tcase_add_test(
        tc, replayed_sleep_past_the_maximum_fails_instead_of_overflowing);
    tcase_add_test(tc, replayed_times_and_durations_out_of_range_are_clamped);
    suite_add_tcase(s, tc);
    return s;
}
