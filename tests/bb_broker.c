/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_broker.c: the consumers of a queue under scale, pause, resume,
 * reload and stop in every order, against a real asyncqd (run it in the
 * ASan build: these are memory-safety tests first). Requests that must
 * reach the daemon in one read are sent in one write. A seeded random
 * sequence of those verbs, puts and cancels ends each run with the same
 * checks: the daemon answers, every job finishes, the counters add up.
 *
 * JSON is written with ' for " (bb_jsonq); nothing sleeps.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"
#include "rng.h"

#define POLL_MS 10000 /* deadline for a state the daemon reaches itself */

/* Sends the lines (each a JSON request with an id, ' for ") in one write
 * and checks that each is answered with a result. */
static void
send_together(struct bb_conn *c, const char *const *lines, size_t n)
{
    char buf[4096];
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + len, sizeof buf - len, "%s\n", lines[i]);

        ck_assert(w > 0 && (size_t)w < sizeof buf - len);
        for (int k = 0; k < w; k++) {
            if (buf[len + (size_t)k] == '\'')
                buf[len + (size_t)k] = '"';
        }
        len += (size_t)w;
    }
    ck_assert(bb_send_raw(c, buf, len));
    for (size_t i = 0; i < n; i++) {
        json_t *msg = bb_recv(c, POLL_MS);

        ck_assert_msg(msg != NULL, "no reply to request %zu of %zu", i + 1, n);
        ck_assert_msg(json_object_get(msg, "result") != NULL,
                      "request %zu of %zu failed: %s", i + 1, n, bb_dump(msg));
        json_decref(msg);
    }
}

/* Puts an echo job on queue and waits for it: the consumers work. */
static void
assert_runs_a_job(struct bb_conn *c, const char *queue)
{
    json_t *rec = bb_result(
        c, "put",
        bb_jsonq("{'queue':'%s','kind':'echo','args':{'n':1},'wait':true}",
                 queue));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
}

/* With no consumer, a put stays ready: the queue's waiters are sound. */
static json_int_t
scale_to_zero_then_put_stays(struct bb_conn *c)
{
    json_int_t id;

    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'z','consumers':0}")));
    id = bb_put_job(c, bb_jsonq("{'queue':'z','kind':'echo','args':{}}"),
                    POLL_MS);
    bb_await_stat(c, "z", "size", 1, POLL_MS);
    return id;
}

/* ---- the sequences of issue 11, defect 5 ---- */

START_TEST(scale_pause_resume_in_one_read_then_scale_to_zero_and_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'scale','params':{'queue':'z','consumers':3}}",
        "{'id':2,'method':'pause','params':{'queue':'z'}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;

    send_together(c, burst, 3);
    id = scale_to_zero_then_put_stays(c);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'z','consumers':2}")));
    bb_await_state(c, id, "done", POLL_MS);
    assert_runs_a_job(c, "z");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Paused first: the new consumers start paused, resume wakes them once. */
START_TEST(pause_scale_resume_in_one_read_then_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'pause','params':{'queue':'z'}}",
        "{'id':2,'method':'scale','params':{'queue':'z','consumers':2}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
        "{'id':4,'method':'pause','params':{'queue':'z'}}",
        "{'id':5,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 5);
    for (int i = 0; i < 5; i++)
        assert_runs_a_job(c, "z");
    scale_to_zero_then_put_stays(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Consumers that never started end cleanly at a stop in the same read. */
START_TEST(scale_up_resume_then_stop_before_the_consumers_start)
{
    static const char *const burst[] = {
        "{'id':1,'method':'pause','params':{'queue':'z'}}",
        "{'id':2,'method':'scale','params':{'queue':'z','consumers':4}}",
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 3);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, POLL_MS), 0);
    bb_free(d);
    bb_close(c);
}
END_TEST

/* Scale down while busy, then up before the busy ones end: they are kept
 * rather than doubled, so no more jobs run at once than asked for. */
START_TEST(scale_down_then_up_before_busy_consumers_end_keeps_the_bound)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'s':{'kind':'sleep','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[4];
    json_t *list;

    for (int i = 0; i < 4; i++)
        ids[i] = bb_put_job(c, bb_jsonq("{'queue':'s','args':{'seconds':0.3}}"),
                            POLL_MS);
    bb_await_stat(c, "s", "busy", 2, POLL_MS);
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'s','consumers':0}")));
    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'s','consumers':2}")));
    /* Still the two running: none of the waiting ones started early. */
    ck_assert_int_eq(bb_stat_int(c, "s", "busy"), 2);
    ck_assert_int_eq(bb_stat_int(c, "s", "size"), 2);
    list = bb_result(c, "wait",
                     bb_jsonq("{'jobs':[%lld,%lld,%lld,%lld]}",
                              (long long)ids[0], (long long)ids[1],
                              (long long)ids[2], (long long)ids[3]));
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(bb_str_at(json_array_get(list, i), "state"), "done");
    json_decref(list);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A reload between scale and resume changes the count under them. */
START_TEST(reload_between_scale_and_resume_then_scale_to_zero_and_put)
{
    static const char *const burst[] = {
        "{'id':1,'method':'scale','params':{'queue':'z','consumers':3}}",
        "{'id':2,'method':'pause','params':{'queue':'z'}}",
    };
    static const char *const burst2[] = {
        "{'id':3,'method':'resume','params':{'queue':'z'}}",
        "{'id':4,'method':'scale','params':{'queue':'z','consumers':5}}",
        "{'id':5,'method':'pause','params':{'queue':'z'}}",
        "{'id':6,'method':'resume','params':{'queue':'z'}}",
    };
    struct bb_daemon *d =
        bb_startq("{'queues':{'z':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);

    send_together(c, burst, 2);
    bb_write_configq(d, "{'queues':{'z':{'kind':'echo','consumers':1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", POLL_MS), "no reload: in the log");
    send_together(c, burst2, 4);
    assert_runs_a_job(c, "z");
    scale_to_zero_then_put_stays(c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- backoff and replay ---- */

/* No initial delay means none on any retry: initial * factor^n was
 * 0 * inf = NaN past n = 34 with factor 1e9, which waited backoff.max. */
START_TEST(backoff_without_an_initial_delay_never_waits_whatever_the_factor)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'x':{'kind':'exec','consumers':1,'retries':40,"
                  "'backoff':{'initial':0,'factor':1e9,'max':1e9},"
                  "'exec':{'allow':['/bin/false']}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;

    rec = bb_result_within(
        c, "put",
        bb_jsonq("{'queue':'x','args':{'argv':['/bin/false']},'wait':true}"),
        30000);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 41);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* A job accepted under a config that allowed its kind still runs after a
 * restart on a config that no longer does: it was acknowledged. */
START_TEST(replayed_job_of_a_kind_no_longer_allowed_still_runs)
{
    char root[64], config[256];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t id;
    json_t *list;

    snprintf(root, sizeof root, "/tmp/asyncq-bbb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(config, sizeof config,
             "{'journal':{'path':'%s/journal'},'queues':{'z':{'kind':'sleep',"
             "'kinds':['echo'],'consumers':0}}}",
             root);
    d = bb_startq("%s", config);
    c = bb_connect(d);
    id = bb_put_job(c, bb_jsonq("{'queue':'z','kind':'echo','args':{'a':1}}"),
                    POLL_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    snprintf(config, sizeof config,
             "{'journal':{'path':'%s/journal'},'queues':{'z':{'kind':'sleep',"
             "'consumers':1}}}",
             root);
    d = bb_startq("%s", config);
    c = bb_connect(d);
    list = bb_result(c, "wait", bb_jsonq("{'jobs':[%lld]}", (long long)id));
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "state"), "done");
    ck_assert_str_eq(bb_str_at(json_array_get(list, 0), "kind"), "echo");
    json_decref(list);
    ck_assert_int_eq(
        bb_error(c, "put", bb_jsonq("{'queue':'z','kind':'echo'}")),
        NOT_ALLOWED);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    ck_assert(bb_remove_dir(root));
}
END_TEST

/* ---- a seeded random sequence ---- */

#define RANDOM_STEPS 160
#define RANDOM_JOBS_MAX 256
#define BURST_MAX 6

/* How many "reload: ... applied" lines the log holds. */
static int
reloads_applied(const struct bb_daemon *d)
{
    char *log = bb_log(d);
    int n = 0;

    for (char *line = strtok(log, "\n"); line != NULL;
         line = strtok(NULL, "\n")) {
        if (strstr(line, "reload: ") != NULL &&
            strstr(line, " applied") != NULL)
            n++;
    }
    free(log);
    return n;
}

struct reload_poll {
    const struct bb_daemon *d;
    int want;
};

static bool
reloaded(void *arg)
{
    struct reload_poll *p = arg;

    return reloads_applied(p->d) >= p->want;
}

struct rnd {
    struct bb_daemon *d;
    struct bb_conn *c;
    struct rng rng;
    json_int_t jobs[RANDOM_JOBS_MAX];
    int njobs, nputs, nreloads; /* nputs: sent, some not answered yet */
};

/* One request of the sequence as a line (' for "), or NULL for a reload
 * (done at once, between bursts). */
static const char *
random_request(struct rnd *r, json_int_t id, char *buf, size_t size,
               bool *is_put)
{
    uint32_t pick = rng_below(&r->rng, 100);

    *is_put = false;
    if (pick < 40) {
        static const char *const args[] = {
            "'kind':'sleep','args':{'seconds':0}",
            "'kind':'sleep','args':{'seconds':0.005}",
            "'kind':'echo','args':{'n':1}"};

        *is_put = r->nputs < RANDOM_JOBS_MAX;
        r->nputs += *is_put;
        snprintf(buf, size,
                 "{'id':%lld,'method':'%s','params':{'queue':'z',%s}}",
                 (long long)id, *is_put ? "put" : "ping",
                 args[rng_below(&r->rng, 3)]);
        if (!*is_put)
            snprintf(buf, size, "{'id':%lld,'method':'ping'}", (long long)id);
    } else if (pick < 60)
        snprintf(buf, size,
                 "{'id':%lld,'method':'scale','params':{'queue':'z',"
                 "'consumers':%u}}",
                 (long long)id, rng_below(&r->rng, 5));
    else if (pick < 72)
        snprintf(buf, size,
                 "{'id':%lld,'method':'pause','params':{'queue':'z'}}",
                 (long long)id);
    else if (pick < 84)
        snprintf(buf, size,
                 "{'id':%lld,'method':'resume','params':{'queue':'z'}}",
                 (long long)id);
    else if (pick < 96 && r->njobs > 0)
        snprintf(buf, size,
                 "{'id':%lld,'method':'cancel','params':{'job':%lld}}",
                 (long long)id,
                 (long long)r->jobs[rng_below(&r->rng, (unsigned)r->njobs)]);
    else if (pick < 96)
        snprintf(buf, size, "{'id':%lld,'method':'stats'}", (long long)id);
    else
        return NULL;
    return buf;
}

static void
random_reload(struct rnd *r)
{
    struct reload_poll p = {r->d, ++r->nreloads};

    bb_write_configq(r->d,
                     "{'queues':{'z':{'kind':'sleep','kinds':['echo'],"
                     "'consumers':%u}}}",
                     rng_below(&r->rng, 4));
    bb_signal(r->d, SIGHUP);
    ck_assert_msg(bb_poll(reloaded, &p, POLL_MS), "reload %d not applied",
                  p.want);
}

/* Sends a burst of requests in one write and reads every reply: puts must
 * succeed; a cancel may find its job finished (-32009). */
static void
random_burst(struct rnd *r, json_int_t *next_id)
{
    int n = 1 + (int)rng_below(&r->rng, BURST_MAX);
    json_int_t ids[BURST_MAX];
    bool puts[BURST_MAX];
    char buf[BURST_MAX * 160], line[160];
    size_t len = 0;
    int k = 0;

    for (int i = 0; i < n; i++) {
        const char *req =
            random_request(r, *next_id, line, sizeof line, &puts[k]);

        if (req == NULL) {
            random_reload(r);
            continue;
        }
        ids[k++] = (*next_id)++;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n", req);
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\'')
            buf[i] = '"';
    }
    ck_assert(bb_send_raw(r->c, buf, len));
    for (int i = 0; i < k; i++) {
        json_t *msg = bb_wait_reply(r->c, ids[i], POLL_MS);
        json_t *res;

        ck_assert_msg(msg != NULL, "no reply to request %lld",
                      (long long)ids[i]);
        res = json_object_get(msg, "result");
        if (puts[i]) {
            ck_assert_msg(res != NULL, "put failed: %s", bb_dump(msg));
            r->jobs[r->njobs++] = bb_int_at(res, "job");
        } else if (res == NULL)
            ck_assert_int_eq(bb_int_at(json_object_get(msg, "error"), "code"),
                             ALREADY_FINISHED);
        json_decref(msg);
    }
}

/* Random scale, pause, resume, put, cancel and reload in random bursts;
 * then every job must finish and the counters add up. The loop index is
 * the seed, so a failure names a sequence that can be replayed. */
START_TEST(random_sequences_of_scale_pause_resume_put_cancel_reload)
{
    struct rnd r = {0};
    json_int_t next_id = 1000;
    json_t *list, *stats, *q;
    char ids[RANDOM_JOBS_MAX * 24];
    size_t len = 0;

    r.rng.s = 0x9E3779B9u * (uint32_t)(_i + 1);
    r.d = bb_startq("{'queues':{'z':{'kind':'sleep','kinds':['echo'],"
                    "'consumers':1}}}");
    r.c = bb_connect(r.d);
    for (int step = 0; step < RANDOM_STEPS; step++)
        random_burst(&r, &next_id);
    json_decref(bb_result(r.c, "resume", bb_jsonq("{'queue':'z'}")));
    json_decref(
        bb_result(r.c, "scale", bb_jsonq("{'queue':'z','consumers':2}")));
    for (int i = 0; i < r.njobs; i++)
        len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%lld",
                                i == 0 ? "" : ",", (long long)r.jobs[i]);
    if (r.njobs > 0) {
        list = bb_result(r.c, "wait", bb_jsonq("{'jobs':[%s]}", ids));
        ck_assert_int_eq((int)json_array_size(list), r.njobs);
        json_decref(list);
    }
    stats = bb_result(r.c, "stats", bb_jsonq("{'queue':'z'}"));
    q = json_object_get(json_object_get(stats, "queues"), "z");
    ck_assert_int_eq(bb_int_at(q, "put"), r.njobs);
    ck_assert_int_eq(bb_int_at(q, "done") + bb_int_at(q, "cancelled"), r.njobs);
    ck_assert_int_eq(bb_int_at(q, "failed"), 0);
    ck_assert_int_eq(bb_int_at(q, "unfinished"), 0);
    json_decref(stats);
    assert_runs_a_job(r.c, "z");
    bb_close(r.c);
    ck_assert_int_eq(bb_stop(r.d), 0);
}
END_TEST

/* A random sequence, then a stop with jobs pending and running: the
 * consumers in every state end, and the daemon exits 0. */
START_TEST(random_sequences_then_stop)
{
    struct rnd r = {0};
    json_int_t next_id = 1000;

    r.rng.s = 0x85EBCA6Bu * (uint32_t)(_i + 1);
    r.d = bb_startq("{'shutdown':{'grace':0.05},'queues':{'z':{'kind':"
                    "'sleep','kinds':['echo'],'consumers':2}}}");
    r.c = bb_connect(r.d);
    for (int step = 0; step < RANDOM_STEPS / 4; step++)
        random_burst(&r, &next_id);
    bb_signal(r.d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(r.d, POLL_MS), 0);
    bb_free(r.d);
    bb_close(r.c);
}
END_TEST

Suite *
bb_broker_suite(void)
{
    Suite *s = suite_create("bb_broker");
    TCase *tc = tcase_create("consumers");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc,
                   scale_pause_resume_in_one_read_then_scale_to_zero_and_put);
    tcase_add_test(tc, pause_scale_resume_in_one_read_then_put);
    tcase_add_test(tc, scale_up_resume_then_stop_before_the_consumers_start);
    tcase_add_test(
        tc, scale_down_then_up_before_busy_consumers_end_keeps_the_bound);
    tcase_add_test(tc,
                   reload_between_scale_and_resume_then_scale_to_zero_and_put);
    tcase_add_test(
        tc, backoff_without_an_initial_delay_never_waits_whatever_the_factor);
    tcase_add_test(tc, replayed_job_of_a_kind_no_longer_allowed_still_runs);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(
        tc, random_sequences_of_scale_pause_resume_put_cancel_reload, 0, 6);
    tcase_add_loop_test(tc, random_sequences_then_stop, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}
