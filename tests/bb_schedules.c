/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_schedules.c: schedules (spec section 11) against a real
 * asyncqd: @every fires again and again, on time, with the schedule's
 * name on its jobs; a cron schedule's next time in a zone; overlap skip
 * with a slow job; catch_up one and none across a restart; one fire per
 * time across kill -9; SIGHUP adding, removing and changing schedules;
 * config errors naming the field; the schedules method and CLI verb.
 *
 * JSON is written with ' for " (bb_jsonq). Nothing sleeps to synchronise:
 * the tests poll `schedules` with deadlines; the only waits are for the
 * wall clock to pass a schedule's time while the daemon is down.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define POLL_MS 15000 /* deadline for a fire the daemon makes itself */

static double
wall_now_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Waits (no synchronisation: time itself must pass) until the wall clock
 * is past t. */
static void
wait_wall_past(double t)
{
    double left;

    while ((left = t - wall_now_s()) > 0) {
        struct timespec ts = {(time_t)left,
                              (long)((left - floor(left)) * 1e9) + 1000};

        nanosleep(&ts, NULL);
    }
}

/* The schedule named (new ref), from the schedules method. */
static json_t *
schedule(struct bb_conn *c, const char *name)
{
    json_t *r = bb_result(c, "schedules", bb_jsonq("{'name':'%s'}", name));
    json_t *list = json_object_get(r, "schedules"), *s;

    ck_assert_msg(json_array_size(list) == 1, "schedules %s: %s", name,
                  bb_dump(r));
    s = json_incref(json_array_get(list, 0));
    json_decref(r);
    ck_assert_str_eq(bb_str_at(s, "name"), name);
    return s;
}

struct until {
    struct bb_conn *c;
    const char *name, *field;
    json_int_t at_least;
};

static bool
counter_reached(void *arg)
{
    struct until *u = arg;
    json_t *s = schedule(u->c, u->name);
    bool ok = bb_int_at(s, u->field) >= u->at_least;

    json_decref(s);
    return ok;
}

/* Polls schedule name until its counter field ("fired", "skipped") is
 * at least n; fails the test past POLL_MS. Returns the schedule then. */
static json_t *
await_counter(struct bb_conn *c, const char *name, const char *field,
              json_int_t n)
{
    struct until u = {c, name, field, n};

    ck_assert_msg(bb_poll(counter_reached, &u, POLL_MS),
                  "schedule %s: %s did not reach %lld within %d ms", name,
                  field, (long long)n, POLL_MS);
    return schedule(c, name);
}

/* The jobs of queue named name, oldest first (new ref). */
static json_t *
named_jobs(struct bb_conn *c, const char *queue, const char *name)
{
    json_t *r = bb_result(
        c, "list",
        bb_jsonq("{'queue':'%s','name':'%s','limit':1000}", queue, name));
    json_t *jobs = json_incref(json_object_get(r, "jobs"));

    json_decref(r);
    return jobs;
}

/* The n-th schedule of a schedules result. */
static const json_t *
nth(const json_t *r, size_t n)
{
    const json_t *s = json_array_get(json_object_get(r, "schedules"), n);

    ck_assert_msg(s != NULL, "no schedule %zu in %s", n, bb_dump(r));
    return s;
}

static double
num_at(const json_t *v, const char *key)
{
    const json_t *n = json_object_get(v, key);

    ck_assert_msg(json_is_number(n), "%s: not a number in %s", key, bb_dump(v));
    return json_number_value(n);
}

/* GET /metrics from the daemon's metrics port (HTTP/1.0: read to EOF,
 * within 10 s). A new string. */
static char *
scrape(const struct bb_daemon *d)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)bb_metrics_port(d))};
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int64_t deadline = bb_now_ms() + 10000;
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)sizeof req - 1);
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;

        ck_assert_msg(bb_now_ms() < deadline, "no /metrics reply in 10 s");
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        if ((n = read(fd, buf + len, cap - len - 1)) <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

/* A journal directory of the test's own, kept across daemons. */
struct jdir {
    char root[64];
    char journal[96];
};

static void
jdir_init(struct jdir *jd)
{
    snprintf(jd->root, sizeof jd->root, "/tmp/asyncq-bbs.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(jd->root));
    snprintf(jd->journal, sizeof jd->journal, "%s/journal", jd->root);
}

/* ---- firing ---- */

START_TEST(every_second_fires_again_and_again_on_time)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo'}},"
                  "'metrics':'127.0.0.1:0',"
                  "'schedules':{'tick':{'cron':'@every 1s','args':{'n':1},"
                  "'name':'ticker','priority':3}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *s = await_counter(c, "tick", "fired", 3), *jobs, *job;
    char *metrics = scrape(d);
    size_t i;

    ck_assert_msg(strstr(metrics, "asyncq_schedule_fires_total{schedule="
                                  "\"tick\"} ") != NULL &&
                      strstr(metrics, "asyncq_schedule_skipped_total{"
                                      "schedule=\"tick\"} 0\n") != NULL,
                  "%s", metrics);
    free(metrics);

    ck_assert_str_eq(bb_str_at(s, "cron"), "@every 1s");
    ck_assert_str_eq(bb_str_at(s, "timezone"), "UTC");
    ck_assert_str_eq(bb_str_at(s, "queue"), "default");
    ck_assert_str_eq(bb_str_at(s, "kind"), "echo");
    ck_assert_str_eq(bb_str_at(s, "overlap"), "skip");
    ck_assert_str_eq(bb_str_at(s, "catch_up"), "one");
    ck_assert_int_eq(bb_int_at(s, "skipped"), 0);
    /* @every is anchored at the epoch: whole seconds, next = last + 1. */
    ck_assert_int_eq(bb_int_at(s, "next"), bb_int_at(s, "last") + 1);
    jobs = named_jobs(c, "default", "ticker");
    ck_assert_int_ge(json_array_size(jobs), 3);
    json_array_foreach (jobs, i, job) {
        double created = num_at(job, "created");

        ck_assert_int_eq(bb_int_at(job, "priority"), 3);
        ck_assert_int_eq(bb_int_at(job, "args.n"), 1);
        /* Put at its second (lateness well under the bench's numbers,
         * loose here for sanitizers and a loaded machine). */
        ck_assert_msg(created - floor(created) < 0.5,
                      "job %lld put %.3f s after its time",
                      (long long)bb_int_at(job, "job"),
                      created - floor(created));
        if (i > 0)
            ck_assert_double_ge(
                created - num_at(json_array_get(jobs, i - 1), "created"), 0.5);
    }
    /* The last job is the one the schedule names. */
    ck_assert_int_ge(bb_int_at(s, "last_job"), 1);
    json_decref(jobs);
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cron_next_time_is_shown_in_its_zone)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo'}},"
        "'schedules':{'noon':{'cron':'0 12 * * *','timezone':'Europe/Berlin'},"
        "'b':{'cron':'@hourly'}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *r = bb_result(c, "schedules", NULL), *s;
    double now = wall_now_s();
    json_int_t next, local;
    struct bb_run run;

    /* Every schedule, in name order. */
    ck_assert_int_eq(json_array_size(bb_at(r, "schedules")), 2);
    ck_assert_str_eq(bb_str_at(nth(r, 0), "name"), "b");
    ck_assert_str_eq(bb_str_at(nth(r, 1), "name"), "noon");
    json_decref(r);
    s = schedule(c, "noon");
    next = bb_int_at(s, "next");
    ck_assert_msg(next > now && next <= now + 86400 + 3600, "next %lld",
                  (long long)next);
    /* 12:00 in Berlin: 11:00 or 10:00 UTC (CET or CEST). */
    local = next % 86400;
    ck_assert_msg(local == 11 * 3600 || local == 10 * 3600,
                  "next %lld is not noon in Berlin", (long long)next);
    ck_assert(json_is_null(bb_at(s, "last")));
    ck_assert(json_is_null(bb_at(s, "last_job")));
    ck_assert_int_eq(bb_int_at(s, "fired"), 0);
    json_decref(s);
    s = schedule(c, "b");
    ck_assert_int_eq(bb_int_at(s, "next") % 3600, 0);
    json_decref(s);
    ck_assert_int_eq(bb_error(c, "schedules", bb_jsonq("{'name':'nope'}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "schedules", bb_jsonq("{'nme':'b'}")),
                     INVALID_PARAMS);
    /* The CLI: a table naming them, or the JSON. */
    asyncq(&run, d, "schedules", NULL);
    ck_assert_msg(run.status == 0 && strstr(run.out, "NEXT") != NULL &&
                      strstr(run.out, "noon") != NULL &&
                      strstr(run.out, "Europe/Berlin") != NULL,
                  "%s%s", run.out, run.err);
    bb_run_free(&run);
    asyncq(&run, d, "schedules", "noon", "--json", NULL);
    ck_assert_int_eq(run.status, 0);
    r = out_json(&run);
    ck_assert_int_eq(bb_int_at(nth(r, 0), "next"), next);
    json_decref(r);
    bb_run_free(&run);
    asyncq(&run, d, "schedules", "nope", NULL);
    ck_assert_int_eq(run.status, 4);
    bb_run_free(&run);
    asyncq(&run, d, "schedules", "a", "b", NULL);
    ck_assert_int_eq(run.status, 2);
    bb_run_free(&run);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(overlap_skip_waits_for_the_previous_job)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'slow':{'kind':'sleep','consumers':1}},"
                  "'shutdown':{'grace':0},"
                  "'schedules':{'s':{'cron':'@every 1s','queue':'slow',"
                  "'args':{'seconds':30}},"
                  "'a':{'cron':'@every 1s','queue':'slow','overlap':'allow',"
                  "'args':{'seconds':30}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *s = await_counter(c, "s", "skipped", 2), *a;

    /* Its first job runs (or waits behind the others) for 30 s: every
     * later time is skipped. */
    ck_assert_int_eq(bb_int_at(s, "fired"), 1);
    a = await_counter(c, "a", "fired", 3);
    ck_assert_int_eq(bb_int_at(a, "skipped"), 0);
    json_decref(a);
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_refused_fire_is_counted_skipped_and_logged_once)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'sleep'}},"
        "'schedules':{'bad':{'cron':'@every 1s','args':{'secs':1}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *s = await_counter(c, "bad", "skipped", 2);
    char *log = bb_log(d);
    const char *first = strstr(log, "schedule bad: fire refused");

    ck_assert_int_eq(bb_int_at(s, "fired"), 0);
    ck_assert_msg(first != NULL, "no refusal logged: %s", log);
    ck_assert_msg(strstr(first + 1, "schedule bad: fire refused") == NULL,
                  "refusal logged twice: %s", log);
    free(log);
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- restarts ---- */

/* A schedule @every 2s with catch_up, fired once, stopped past its next
 * time, started again: what happens at the start. */
static void
catch_up_across_a_restart(const char *catch_up)
{
    struct jdir jd;
    char *cfg;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *s;
    json_int_t last;

    jdir_init(&jd);
    ck_assert_int_ge(asprintf(&cfg,
                              "{\"journal\":{\"path\":\"%s\"},"
                              "\"queues\":{\"default\":{\"kind\":\"echo\"}},"
                              "\"schedules\":{\"t\":{\"cron\":\"@every 2s\","
                              "\"catch_up\":\"%s\"}}}",
                              jd.journal, catch_up),
                     0);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    s = await_counter(c, "t", "fired", 1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    last = bb_int_at(s, "last");
    json_decref(s);
    /* Down past the next time (last + 2): a missed time. */
    wait_wall_past((double)last + 2.3);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    if (strcmp(catch_up, "one") == 0) {
        /* One fire at once for the missed time(s), not on the grid. */
        s = await_counter(c, "t", "fired", 1);
        ck_assert_int_eq(bb_int_at(s, "skipped"), 0);
        ck_assert_double_gt(num_at(s, "last"), (double)last + 2);
    } else {
        s = await_counter(c, "t", "skipped", 1);
        ck_assert_int_eq(bb_int_at(s, "skipped"), 1);
        json_decref(s);
        /* The next fire is back on the grid. */
        s = await_counter(c, "t", "fired", 1);
        ck_assert_int_eq(bb_int_at(s, "last") % 2, 0);
        ck_assert_double_eq(num_at(s, "last"), floor(num_at(s, "last")));
    }
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    bb_remove_dir(jd.root);
}

START_TEST(catch_up_one_fires_once_after_downtime)
{
    catch_up_across_a_restart("one");
}
END_TEST

START_TEST(catch_up_none_skips_the_missed_times)
{
    catch_up_across_a_restart("none");
}
END_TEST

START_TEST(kill_9_and_restart_fire_a_time_once)
{
    struct jdir jd;
    char *cfg;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *s, *jobs;
    json_int_t last, job;

    jdir_init(&jd);
    ck_assert_int_ge(asprintf(&cfg,
                              "{\"journal\":{\"path\":\"%s\"},"
                              "\"queues\":{\"default\":{\"kind\":\"echo\"}},"
                              "\"schedules\":{\"t\":{\"cron\":\"@every 8s\"}}}",
                              jd.journal),
                     0);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    s = await_counter(c, "t", "fired", 1);
    last = bb_int_at(s, "last");
    job = bb_int_at(s, "last_job");
    json_decref(s);
    bb_close(c);
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
    bb_free(d);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    ck_assert_msg(wall_now_s() < (double)last + 8,
                  "the restart took longer than the period: inconclusive");
    /* The same time is not fired again: the last fire came back. */
    s = schedule(c, "t");
    ck_assert_int_eq(bb_int_at(s, "last"), last);
    ck_assert_int_eq(bb_int_at(s, "last_job"), job);
    ck_assert_int_eq(bb_int_at(s, "fired"), 0);
    ck_assert_int_eq(bb_int_at(s, "next"), last + 8);
    json_decref(s);
    /* And the next time fires as usual. */
    s = await_counter(c, "t", "fired", 1);
    ck_assert_int_eq(bb_int_at(s, "last"), last + 8);
    json_decref(s);
    jobs = named_jobs(c, "default", "t");
    ck_assert_int_eq(json_array_size(jobs), 2);
    json_decref(jobs);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    bb_remove_dir(jd.root);
}
END_TEST

static bool
first_segment_gone(void *arg)
{
    char path[160];

    snprintf(path, sizeof path, "%s/00000001.aqj", (const char *)arg);
    return access(path, F_OK) != 0;
}

/* The last fire is live state: trimming the journal's old segments moves
 * its record along (as a live job's), and a restart still finds it. */
START_TEST(last_fire_survives_journal_trimming)
{
    struct jdir jd;
    char *cfg;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *s;
    json_int_t last, job;

    jdir_init(&jd);
    ck_assert_int_ge(
        asprintf(&cfg,
                 "{\"journal\":{\"path\":\"%s\",\"segment_bytes\":4096},"
                 "\"results\":{\"max\":0},"
                 "\"queues\":{\"default\":{\"kind\":\"echo\"},"
                 "\"held\":{\"kind\":\"echo\",\"consumers\":0}},"
                 "\"schedules\":{\"h\":{\"cron\":\"@every 1s\","
                 "\"queue\":\"held\"}}}",
                 jd.journal),
        0);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    /* Its first job waits (no consumer): later times are skipped. */
    s = await_counter(c, "h", "fired", 1);
    last = bb_int_at(s, "last");
    job = bb_int_at(s, "last_job");
    json_decref(s);
    for (int i = 0; i < 400 && !first_segment_gone(jd.journal); i++) {
        json_decref(bb_result(
            c, "put", bb_jsonq("{'kind':'echo','args':{'pad':'%0200d'}}", i)));
        if (i % 50 == 49)
            json_decref(bb_result(c, "join", bb_jsonq("{'queue':'default'}")));
    }
    ck_assert_msg(bb_poll(first_segment_gone, jd.journal, POLL_MS),
                  "the first segment was never trimmed");
    bb_close(c);
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
    bb_free(d);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    s = schedule(c, "h");
    ck_assert_int_eq(bb_int_at(s, "last"), last);
    ck_assert_int_eq(bb_int_at(s, "last_job"), job);
    json_decref(s);
    /* Its job still waits, so every time is skipped, none fired. */
    s = await_counter(c, "h", "skipped", 1);
    ck_assert_int_eq(bb_int_at(s, "fired"), 0);
    json_decref(s);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    bb_remove_dir(jd.root);
}
END_TEST

/* ---- SIGHUP ---- */

START_TEST(sighup_adds_removes_and_changes_schedules)
{
    struct bb_daemon *d = bb_startq(
        "{'queues':{'default':{'kind':'echo'}},"
        "'schedules':{'a':{'cron':'@every 1s'},'b':{'cron':'@every 1s'},"
        "'k':{'cron':'0 0 1 1 *'}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *a = await_counter(c, "a", "fired", 1), *r, *k;
    json_int_t k_next;

    json_decref(a);
    k = schedule(c, "k");
    k_next = bb_int_at(k, "next");
    json_decref(k);
    bb_write_configq(d, "{'queues':{'default':{'kind':'echo'}},"
                        "'schedules':{'a':{'cron':'0 0 1 1 *'},"
                        "'c':{'cron':'@every 1s'},'k':{'cron':'0 0 1 1 *'}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload: schedule c: added", POLL_MS),
                  "no reload in the log");
    r = bb_result(c, "schedules", NULL);
    ck_assert_int_eq(json_array_size(bb_at(r, "schedules")), 3);
    ck_assert_str_eq(bb_str_at(nth(r, 0), "name"), "a");
    ck_assert_str_eq(bb_str_at(nth(r, 1), "name"), "c");
    ck_assert_str_eq(bb_str_at(nth(r, 2), "name"), "k");
    /* a changed: its next time is recomputed, its last fire kept. */
    ck_assert_str_eq(bb_str_at(nth(r, 0), "cron"), "0 0 1 1 *");
    ck_assert_int_eq(bb_int_at(nth(r, 0), "next") % 86400, 0);
    ck_assert_double_gt(bb_int_at(nth(r, 0), "next"), wall_now_s() + 60);
    ck_assert(json_is_integer(bb_at(nth(r, 0), "last")));
    ck_assert_int_ge(bb_int_at(nth(r, 0), "fired"), 1);
    /* k unchanged: the same next time. */
    ck_assert_int_eq(bb_int_at(nth(r, 2), "next"), k_next);
    json_decref(r);
    /* b is gone, c fires. */
    ck_assert_int_eq(bb_error(c, "schedules", bb_jsonq("{'name':'b'}")),
                     INVALID_PARAMS);
    json_decref(await_counter(c, "c", "fired", 1));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- config errors ---- */

struct bad_config {
    const char *config, *message;
};

static const struct bad_config bad_configs[] = {
    {"{'schedules':{'x':{'cron':'*/0 * * * *'}}}",
     "schedules.x.cron: cron \"*/0 * * * *\": field 1 (minute): step 0"},
    {"{'schedules':{'x':{'cron':'* 25 * * *'}}}",
     "schedules.x.cron: cron \"* 25 * * *\": field 2 (hour): 25 out of range "
     "0-23"},
    {"{'schedules':{'x':{'cron':'@daily','timezone':'Mars/Base'}}}",
     "schedules.x.timezone: timezone \"Mars/Base\": unknown zone"},
    {"{'schedules':{'x':{'cron':'@daily','queue':'nope'}}}",
     "schedules.x.queue: no queue \"nope\" in queues"},
    {"{'schedules':{'x':{'cron':'@daily','kind':'http'}}}",
     "schedules.x.kind: queue default does not run kind http"},
    {"{'schedules':{'x':{'cron':'@daily','overlap':'maybe'}}}",
     "schedules.x.overlap: expected one of \"skip\", \"allow\""},
    {"{'schedules':{'x':{'cron':'@daily','catch_up':'all'}}}",
     "schedules.x.catch_up: expected one of \"one\", \"none\""},
    {"{'schedules':{'x':{'cron':'@daily','args':[]}}}",
     "schedules.x.args: expected object"},
    {"{'schedules':{'x':{'cron':'@daily','every':1}}}",
     "schedules.x.every: unknown field"},
    {"{'schedules':{'x':{'timezone':'UTC'}}}", "schedules.x.cron: required"},
    {"{'schedules':{'x':{'cron':5}}}", "schedules.x.cron: expected string"},
    {"{'schedules':{'x':{'cron':'@daily','retries':-1}}}",
     "schedules.x.retries: expected integer >= 0"},
};

START_TEST(check_config_names_the_bad_schedule_field)
{
    char dir[] = "/tmp/asyncq-bbs.XXXXXX", path[64];
    const char *argv[] = {ASYNCQD_PATH, "--check-config", "--config", path,
                          NULL};
    struct bb_run r;
    FILE *f;
    char *text = strdup(bad_configs[_i].config);

    for (char *p = text; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.json", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
    bb_run_argv(&r, NULL, argv);
    ck_assert_msg(r.status == 1, "exit %d: %s%s", r.status, r.out, r.err);
    ck_assert_msg(strstr(r.err, bad_configs[_i].message) != NULL,
                  "expected \"%s\" in: %s", bad_configs[_i].message, r.err);
    bb_run_free(&r);
    free(text);
    bb_remove_dir(dir);
}
END_TEST

Suite *
bb_schedules_suite(void)
{
    Suite *s = suite_create("bb_schedules");
    TCase *tc = tcase_create("schedules");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_second_fires_again_and_again_on_time);
    tcase_add_test(tc, cron_next_time_is_shown_in_its_zone);
    tcase_add_test(tc, overlap_skip_waits_for_the_previous_job);
    tcase_add_test(tc, a_refused_fire_is_counted_skipped_and_logged_once);
    tcase_add_test(tc, catch_up_one_fires_once_after_downtime);
    tcase_add_test(tc, catch_up_none_skips_the_missed_times);
    tcase_add_test(tc, kill_9_and_restart_fire_a_time_once);
    tcase_add_test(tc, last_fire_survives_journal_trimming);
    tcase_add_test(tc, sighup_adds_removes_and_changes_schedules);
    tcase_add_loop_test(tc, check_config_names_the_bad_schedule_field, 0,
                        (int)(sizeof bad_configs / sizeof bad_configs[0]));
    suite_add_tcase(s, tc);
    return s;
}
