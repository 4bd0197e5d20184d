/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_lifecycle.c: asyncqd's command line and life cycle against the
 * real binary: --version, --help, --check-config, start errors, graceful
 * stop on SIGTERM/SIGINT (grace, drain, a second signal, -32010 for new
 * work and pending waiters, no process left behind), SIGHUP, and a whole
 * session under valgrind when ASYNCQ_VALGRIND_SESSION=1.
 */
#include <check.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#ifndef ASYNCQD_PATH
#error "ASYNCQD_PATH must name the asyncqd binary"
#endif

#define CLI_TIMEOUT_MS 10000
#define JOB_START_MS 5000 /* deadline for a put job to be running */

/* ---- the command line ---- */

/* Runs asyncqd with args (NULL-terminated, argv[0] excluded), capturing
 * both outputs, within CLI_TIMEOUT_MS. */
static void
cli_run(struct bb_run *r, const char *const *args)
{
    const char *argv[16];
    const struct bb_run_opts o = {.timeout_ms = CLI_TIMEOUT_MS};
    int n = 0;

    argv[n++] = ASYNCQD_PATH;
    while (*args != NULL && n < 15)
        argv[n++] = *args++;
    argv[n] = NULL;
    bb_run_argv(r, &o, argv);
}

/* A temp dir holding a config file, for the command-line tests. */
struct cfgdir {
    char dir[64];
    char path[96];
};

static void
cfgdir_write(struct cfgdir *cd, const char *text)
{
    FILE *f;

    snprintf(cd->dir, sizeof cd->dir, "/tmp/asyncq-bbl.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cd->dir));
    snprintf(cd->path, sizeof cd->path, "%s/asyncqd.json", cd->dir);
    f = fopen(cd->path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void
cfgdir_remove(struct cfgdir *cd)
{
    unlink(cd->path);
    rmdir(cd->dir);
}

/* ---- processes and jobs ---- */

struct child_count {
    const struct bb_daemon *d;
    size_t n;
};

static bool
has_n_children(void *arg)
{
    const struct child_count *cc = arg;

    return bb_daemon_children(cc->d, NULL, 0) >= cc->n;
}

/* Waits until the daemon has n children; stores their pids. */
static void
wait_children(const struct bb_daemon *d, size_t n, pid_t *pids)
{
    struct child_count cc = {d, n};

    ck_assert_msg(bb_poll(has_n_children, &cc, 5000),
                  "the daemon did not start %zu processes", n);
    ck_assert_int_ge(bb_daemon_children(d, pids, n), n);
}

/* The error code of a reply, failing the test if it is none. */
static int
reply_error_code(json_t *r, const char *what)
{
    int code;

    ck_assert_msg(r != NULL, "%s: no reply", what);
    ck_assert_msg(json_is_object(json_object_get(r, "error")),
                  "%s: expected an error, got %s", what, bb_dump(r));
    code = (int)bb_int_at(r, "error.code");
    json_decref(r);
    return code;
}

/* ---- command line ---- */

START_TEST(version_flag_prints_the_version_and_exits_0)
{
    static const char *const args[] = {"--version", NULL};
    struct bb_daemon *d = bb_start(
        "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *st = bb_result(c, "stats", NULL);
    const char *version = bb_str_at(st, "version");
    unsigned major, minor, patch;
    struct bb_run r;

    ck_assert_int_eq(sscanf(version, "%u.%u.%u", &major, &minor, &patch), 3);
    cli_run(&r, args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.out, version) != NULL,
                  "--version printed \"%s\", not the version %s", r.out,
                  version);
    bb_run_free(&r);
    json_decref(st);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(help_flag_exits_0_and_mentions_config)
{
    static const char *const args[] = {"--help", NULL};
    struct bb_run r;

    cli_run(&r, args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.out, "--config") != NULL,
                  "--help does not mention --config: %s", r.out);
    bb_run_free(&r);
}
END_TEST

START_TEST(check_config_accepts_a_valid_config_and_exits_0)
{
    struct cfgdir cd;
    struct bb_run r;

    cfgdir_write(&cd, "{\"listen\":[\"tcp://127.0.0.1:0\"],"
                      "\"journal\":{\"path\":null},"
                      "\"queues\":{\"default\":{\"kind\":\"exec\","
                      "\"consumers\":2},\"mail\":{\"kind\":\"sleep\"}}}");
    const char *const args[] = {"--config", cd.path, "--check-config", NULL};
    cli_run(&r, args);
    ck_assert_msg(r.status == 0, "exit %d: %s%s", r.status, r.out, r.err);
    bb_run_free(&r);
    cfgdir_remove(&cd);
}
END_TEST

START_TEST(check_config_rejects_a_bad_value_naming_the_field)
{
    struct cfgdir cd;
    struct bb_run r;
    char *both;

    cfgdir_write(&cd, "{\"queues\":{\"default\":{\"consumers\":-1}}}");
    const char *const args[] = {"--check-config", "--config", cd.path, NULL};
    cli_run(&r, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_ge(asprintf(&both, "%s%s", r.out, r.err), 0);
    ck_assert_msg(strstr(both, "queues.default.consumers") != NULL,
                  "the message does not name the field: %s", both);
    free(both);
    bb_run_free(&r);
    cfgdir_remove(&cd);
}
END_TEST

START_TEST(check_config_rejects_an_unknown_field_naming_it)
{
    struct cfgdir cd;
    struct bb_run r;
    char *both;

    cfgdir_write(&cd, "{\"queues\":{\"default\":{\"consumerz\":1}}}");
    const char *const args[] = {"--config", cd.path, "--check-config", NULL};
    cli_run(&r, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_ge(asprintf(&both, "%s%s", r.out, r.err), 0);
    ck_assert_msg(strstr(both, "queues.default.consumerz") != NULL,
                  "the message does not name the field: %s", both);
    free(both);
    bb_run_free(&r);
    cfgdir_remove(&cd);
}
END_TEST

START_TEST(unknown_flag_exits_nonzero)
{
    static const char *const args[] = {"--no-such-flag", NULL};
    struct bb_run r;

    cli_run(&r, args);
    ck_assert_int_ne(r.status, 0);
    ck_assert_msg(strstr(r.err, "--no-such-flag") != NULL,
                  "stderr does not name the flag: %s", r.err);
    bb_run_free(&r);
}
END_TEST

START_TEST(start_with_a_missing_config_file_exits_1_naming_the_path)
{
    char dir[] = "/tmp/asyncq-bbl.XXXXXX", path[96];
    struct bb_run r;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/missing.json", dir);
    const char *const args[] = {"--config", path, NULL};
    cli_run(&r, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, path) != NULL, "stderr does not name %s: %s",
                  path, r.err);
    bb_run_free(&r);
    rmdir(dir);
}
END_TEST

/* ---- graceful stop ---- */

START_TEST(sigterm_with_idle_consumers_exits_0_at_once)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":4},"
                 "\"other\":{\"kind\":\"sleep\",\"consumers\":2}}}");
    int64_t t0 = bb_now_ms();
    int st;

    bb_signal(d, SIGTERM);
    st = bb_wait_exit(d, 2000);
    ck_assert_msg(st != -1, "still running 2 s after SIGTERM");
    ck_assert_int_eq(st, 0);
    ck_assert_int_lt(bb_now_ms() - t0, 2000);
    bb_free(d);
}
END_TEST

START_TEST(sigterm_lets_a_running_job_finish_within_the_grace)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":10},"
        "\"queues\":{\"default\":{\"kind\":\"sleep\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id, wid;
    int64_t t0;
    json_t *r;
    int st;

    id = bb_put_job(c, bb_json("{\"args\":{\"seconds\":1}}"), BB_TIMEOUT_MS);
    bb_await_state(c, id, "running", JOB_START_MS);
    wid = bb_send_call(c, "wait", json_pack("{s:[I]}", "jobs", id));
    t0 = bb_now_ms();
    bb_signal(d, SIGTERM);
    /* The job completes: its waiter gets the record, not -32010. */
    r = bb_wait_reply(c, wid, 10000);
    ck_assert_msg(r != NULL, "no reply to wait");
    ck_assert_msg(json_is_array(bb_at(r, "result")), "wait: %s", bb_dump(r));
    ck_assert_str_eq(bb_str_at(json_array_get(bb_at(r, "result"), 0), "state"),
                     "done");
    st = bb_wait_exit(d, 10000);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(bb_now_ms() - t0 < 5000,
                  "exit %lld ms after SIGTERM: the daemon waited out the grace",
                  (long long)(bb_now_ms() - t0));
    ck_assert_msg(!bb_log_has(d, "interrupted"), "a job was interrupted");
    json_decref(r);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(sigterm_past_the_grace_interrupts_the_job_and_requeues_it)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":0.5},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    int64_t t0, elapsed;
    pid_t pid;
    int st;

    id = bb_put_job(c, bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"30\"]}}"),
                    BB_TIMEOUT_MS);
    bb_await_state(c, id, "running", JOB_START_MS);
    wait_children(d, 1, &pid);
    t0 = bb_now_ms();
    bb_signal(d, SIGTERM);
    st = bb_wait_exit(d, 10000);
    elapsed = bb_now_ms() - t0;
    ck_assert_int_eq(st, 0);
    ck_assert_msg(elapsed >= 400,
                  "exit %lld ms after SIGTERM, before the grace",
                  (long long)elapsed);
    ck_assert_msg(elapsed < 3000, "exit %lld ms after SIGTERM",
                  (long long)elapsed);
    ck_assert_msg(bb_log_has(d, "interrupted") && bb_log_has(d, "pending"),
                  "the log does not say the job was interrupted and is "
                  "pending again");
    bb_assert_dead(&pid, 1, 1000);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(second_sigterm_skips_the_grace)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":30},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    int64_t t0;
    pid_t pid;
    int st;

    id = bb_put_job(c, bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"30\"]}}"),
                    BB_TIMEOUT_MS);
    bb_await_state(c, id, "running", JOB_START_MS);
    wait_children(d, 1, &pid);
    bb_signal(d, SIGTERM);
    /* Two signals sent together could merge into one. */
    ck_assert(bb_log_wait(d, "stopping", 5000));
    ck_assert_int_eq(bb_wait_exit(d, 300), -1); /* in its grace */
    t0 = bb_now_ms();
    bb_signal(d, SIGTERM);
    st = bb_wait_exit(d, 10000);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(bb_now_ms() - t0 < 2000,
                  "exit %lld ms after the second signal",
                  (long long)(bb_now_ms() - t0));
    bb_assert_dead(&pid, 1, 1000);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(sigint_stops_gracefully_like_sigterm)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":10},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id, wid;
    int64_t t0;
    json_t *r;

    id = bb_put_job(c, bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"1\"]}}"),
                    BB_TIMEOUT_MS);
    bb_await_state(c, id, "running", JOB_START_MS);
    wid = bb_send_call(c, "wait", json_pack("{s:[I]}", "jobs", id));
    t0 = bb_now_ms();
    bb_signal(d, SIGINT);
    ck_assert(bb_log_wait(d, "stopping", 5000));
    ck_assert_int_eq(bb_error(c, "put",
                              bb_json("{\"args\":{\"argv\":["
                                      "\"/bin/echo\"]}}")),
                     SHUTTING_DOWN);
    r = bb_wait_reply(c, wid, 10000);
    ck_assert_msg(r != NULL, "no reply to wait");
    ck_assert_msg(json_is_array(bb_at(r, "result")), "wait: %s", bb_dump(r));
    ck_assert_str_eq(bb_str_at(json_array_get(bb_at(r, "result"), 0), "state"),
                     "done");
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    ck_assert_int_lt(bb_now_ms() - t0, 5000);
    ck_assert(!bb_log_has(d, "interrupted"));
    json_decref(r);
    bb_close(c);
    bb_free(d);
}
END_TEST

/* Whether a new connection is served: connects and pings. */
static bool
new_connection_answers(const struct bb_daemon *d)
{
    struct pollfd pfd;
    char buf[256];
    bool answered = false;
    int fd = bb_dial(d);
    static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":1,"
                               "\"method\":\"ping\"}\n";

    if (fd < 0)
        return false;
    if (send(fd, ping, sizeof ping - 1, MSG_NOSIGNAL) > 0) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        answered = poll(&pfd, 1, 1000) == 1 && recv(fd, buf, sizeof buf, 0) > 0;
    }
    close(fd);
    return answered;
}

START_TEST(during_shutdown_new_puts_get_32010_and_new_connections_are_refused)
{
    struct bb_daemon *d =
        bb_start("{\"shutdown\":{\"grace\":30},"
                 "\"queues\":{\"default\":{\"kind\":\"sleep\",\"consumers\":1},"
                 "\"echo\":{\"kind\":\"echo\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    json_t *r;

    id = bb_put_job(c, bb_json("{\"args\":{\"seconds\":30}}"), BB_TIMEOUT_MS);
    bb_await_state(c, id, "running", JOB_START_MS);
    bb_signal(d, SIGTERM);
    ck_assert(bb_log_wait(d, "stopping", 5000));
    ck_assert_int_eq(
        bb_error(c, "put", bb_json("{\"args\":{\"seconds\":0.1}}")),
        SHUTTING_DOWN);
    ck_assert_int_eq(bb_error(c, "put",
                              bb_json("{\"queue\":\"echo\",\"args\":{},"
                                      "\"nowait\":true}")),
                     SHUTTING_DOWN);
    /* The open connection is still served for everything but new work. */
    r = bb_result(c, "status", json_pack("{s:I}", "job", id));
    ck_assert_str_eq(bb_str_at(r, "state"), "running");
    json_decref(r);
    ck_assert_msg(!new_connection_answers(d),
                  "a new connection was served during shutdown");
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(pending_waiters_get_32010_before_the_daemon_exits)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":0.5},"
        "\"queues\":{\"default\":{\"kind\":\"sleep\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_conn *c2 = bb_connect(d);
    json_int_t running, pending, w_running, w_pending, w_join, w_put;

    running =
        bb_put_job(c, bb_json("{\"args\":{\"seconds\":30}}"), BB_TIMEOUT_MS);
    bb_await_state(c, running, "running", JOB_START_MS);
    pending =
        bb_put_job(c, bb_json("{\"args\":{\"seconds\":30}}"), BB_TIMEOUT_MS);
    w_running = bb_send_call(c, "wait", json_pack("{s:[I]}", "jobs", running));
    w_pending = bb_send_call(c2, "wait",
                             json_pack("{s:[I,I]}", "jobs", running, pending));
    w_join = bb_send_call(c2, "join", NULL);
    w_put = bb_send_call(c, "put",
                         bb_json("{\"args\":{\"seconds\":30},\"wait\":true}"));
    /* Every request was read before the signal: a ping behind them. */
    json_decref(bb_result(c, "ping", NULL));
    json_decref(bb_result(c2, "ping", NULL));
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(
        reply_error_code(bb_wait_reply(c, w_running, 10000), "wait running"),
        SHUTTING_DOWN);
    ck_assert_int_eq(
        reply_error_code(bb_wait_reply(c2, w_pending, 10000), "wait pending"),
        SHUTTING_DOWN);
    ck_assert_int_eq(reply_error_code(bb_wait_reply(c2, w_join, 10000), "join"),
                     SHUTTING_DOWN);
    ck_assert_int_eq(
        reply_error_code(bb_wait_reply(c, w_put, 10000), "put with wait"),
        SHUTTING_DOWN);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    bb_close(c);
    bb_close(c2);
    bb_free(d);
}
END_TEST

#define DRAIN_JOBS 8

/* The lines of a file, as a sorted JSON array of integers. */
static json_t *
read_numbers(const char *path)
{
    FILE *f = fopen(path, "r");
    json_t *a = json_array();
    long n;

    ck_assert_msg(f != NULL, "%s: not written", path);
    while (fscanf(f, "%ld", &n) == 1) {
        size_t i = 0;

        while (i < json_array_size(a) &&
               json_integer_value(json_array_get(a, i)) < n)
            i++;
        json_array_insert_new(a, i, json_integer(n));
    }
    fclose(f);
    return a;
}

START_TEST(drain_runs_every_pending_job_before_exit)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"drain\":true,\"grace\":10},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":2}}}");
    struct bb_conn *c = bb_connect(d);
    char path[PATH_MAX];
    json_t *got, *st, *want = json_array();

    snprintf(path, sizeof path, "%s/lines", bb_dir(d));
    for (int i = 1; i <= DRAIN_JOBS; i++) {
        bb_put_job(c,
                   bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                           "\"sleep 0.1; echo $1 >> %s\",\"sh\",\"%d\"]}}",
                           path, i),
                   BB_TIMEOUT_MS);
        json_array_append_new(want, json_integer(i));
    }
    st = bb_result(c, "stats", json_pack("{s:s}", "queue", "default"));
    ck_assert_msg(bb_int_at(st, "queues.default.size") > 0,
                  "no job left pending to drain: %s", bb_dump(st));
    json_decref(st);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 30000), 0);
    got = read_numbers(path);
    ck_assert_msg(json_equal(got, want), "jobs run: %s, expected %s",
                  bb_dump(got), bb_dump(want));
    json_decref(got);
    json_decref(want);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(without_drain_pending_jobs_do_not_run_at_shutdown)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":10},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    char path[PATH_MAX];
    json_int_t first = 0;
    json_t *got, *want;

    snprintf(path, sizeof path, "%s/lines", bb_dir(d));
    for (int i = 1; i <= 4; i++) {
        json_int_t id =
            bb_put_job(c,
                       bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                               "\"sleep 0.3; echo $1 >> %s\",\"sh\",\"%d\"]}}",
                               path, i),
                       BB_TIMEOUT_MS);
        if (i == 1)
            first = id;
    }
    bb_await_state(c, first, "running", JOB_START_MS);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    got = read_numbers(path);
    want = json_pack("[i]", 1);
    ck_assert_msg(json_equal(got, want), "jobs run: %s, expected %s",
                  bb_dump(got), bb_dump(want));
    json_decref(got);
    json_decref(want);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(no_job_process_outlives_the_daemon)
{
    struct bb_daemon *d =
        bb_start("{\"shutdown\":{\"grace\":0.2},"
                 "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":3,"
                 "\"exec\":{\"kill_grace\":0.5}}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile a, b;
    pid_t pids[3 + 2 * MAX_PIDS];
    size_t n = 0;

    bb_pidfile_init(&a, d, "a");
    bb_pidfile_init(&b, d, "b");
    bb_put_job(c, bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"30\"]}}"),
               BB_TIMEOUT_MS);
    bb_put_job(c,
               bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                       "\"sleep 30 & sleep 30 & echo $$ $! > %s; wait\"]}}",
                       a.path),
               BB_TIMEOUT_MS);
    /* Everything ignores SIGTERM here: it takes the SIGKILL. */
    bb_put_job(c,
               bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                       "\"trap '' TERM; sleep 30 & echo $$ $! > %s; "
                       "while :; do sleep 0.1; done\"]}}",
                       b.path),
               BB_TIMEOUT_MS);
    bb_pidfile_wait(&a);
    bb_pidfile_wait(&b);
    wait_children(d, 3, pids);
    n = 3;
    for (size_t i = 0; i < a.n; i++)
        pids[n++] = a.pids[i];
    for (size_t i = 0; i < b.n; i++)
        pids[n++] = b.pids[i];
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(bb_pid_alive(pids[i]), "process %d is not running",
                      (int)pids[i]);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    /* Killed processes may take a moment to die once signalled. */
    bb_assert_dead(pids, n, 500);
    bb_close(c);
    bb_free(d);
}
END_TEST

START_TEST(no_job_process_outlives_the_daemon_even_outside_its_group)
{
    struct bb_daemon *d = bb_start(
        "{\"shutdown\":{\"grace\":0.2},"
        "\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile pf;

    /* setsid(1) puts the grandchild in a session (and group) of its own,
     * and it writes its pid from there; once its parent dies it is
     * re-parented to the daemon, a subreaper. */
    bb_pidfile_init(&pf, d, "pid");
    bb_put_job(c,
               bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                       "\"setsid sh -c 'echo $$ > %s; exec sleep 30' & "
                       "wait\"]}}",
                       pf.path),
               BB_TIMEOUT_MS);
    bb_pidfile_wait(&pf);
    ck_assert_int_eq(pf.n, 1);
    ck_assert_msg(bb_pid_alive(pf.pids[0]), "the grandchild is not running");
    ck_assert_int_eq(getsid(pf.pids[0]), pf.pids[0]);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    bb_assert_dead(pf.pids, pf.n, 500);
    bb_close(c);
    bb_free(d);
}
END_TEST

/* ---- reload ---- */

START_TEST(sighup_adds_a_new_queue)
{
    struct bb_daemon *d = bb_start(
        "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec, *want;

    ck_assert_int_eq(
        bb_error(c, "put", bb_json("{\"queue\":\"extra\",\"args\":{}}")),
        NO_SUCH_QUEUE);
    bb_write_config(d, "{\"queues\":{\"default\":{\"kind\":\"echo\","
                       "\"consumers\":1},\"extra\":{\"kind\":\"echo\","
                       "\"consumers\":1}}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", 5000), "no reload in the log");
    rec = bb_result(
        c, "put",
        bb_json("{\"queue\":\"extra\",\"args\":{\"n\":[1,2]},\"wait\":true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "extra");
    want = json_pack("{s:[i,i]}", "n", 1, 2);
    ck_assert_msg(json_equal(bb_at(rec, "result"), want), "result: %s",
                  bb_dump(rec));
    json_decref(want);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- valgrind ---- */

#define VALGRIND_WRAPPER                                                       \
    "valgrind -q --error-exitcode=99 --leak-check=full "                       \
    "--errors-for-leak-kinds=definite,indirect "                               \
    "--show-leak-kinds=definite,indirect"
#define VALGRIND_REPLY_MS 30000

static void
vg_expect_state(struct bb_conn *c, const char *method, json_t *params,
                const char *state)
{
    json_t *r = bb_result_within(c, method, params, VALGRIND_REPLY_MS);

    ck_assert_msg(strcmp(bb_str_at(r, "state"), state) == 0, "%s: %s, not %s",
                  method, bb_dump(r), state);
    json_decref(r);
}

START_TEST(valgrind_session_reports_no_errors_or_leaks)
{
    const char *on = getenv("ASYNCQ_VALGRIND_SESSION");
    char jdir[] = "/tmp/asyncq-vg.XXXXXX", config[1024];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t a, b, e;
    json_t *r;
    int st;

    if (on == NULL || strcmp(on, "1") != 0) {
        ck_assert(true); /* opt-in: slow */
        return;
    }
    /* With a journal (small segments, so rotation and reclamation run
     * too), and a second daemon replaying it at the end. */
    ck_assert_ptr_nonnull(mkdtemp(jdir));
    snprintf(config, sizeof config,
             "{\"shutdown\":{\"grace\":0.5},"
             "\"journal\":{\"path\":\"%s/j\",\"segment_bytes\":4096},"
             "\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":2},"
             "\"nap\":{\"kind\":\"sleep\",\"consumers\":1},"
             "\"run\":{\"kind\":\"exec\",\"consumers\":2,"
             "\"exec\":{\"kill_grace\":0.5,\"capture\":64}}}}",
             jdir);
    setenv("ASYNCQD_WRAPPER", VALGRIND_WRAPPER, 1);
    d = bb_start("%s", config);
    unsetenv("ASYNCQD_WRAPPER");
    c = bb_connect(d);

    /* Each kind once, waited for. */
    vg_expect_state(c, "put", bb_json("{\"args\":{\"x\":[1]},\"wait\":true}"),
                    "done");
    vg_expect_state(c, "put",
                    bb_json("{\"queue\":\"nap\",\"args\":{\"seconds\":0.05},"
                            "\"wait\":true}"),
                    "done");
    vg_expect_state(
        c, "put",
        bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/sh\","
                "\"-c\",\"yes | head -c 1000; echo e >&2\"],"
                "\"stdin\":\"in\",\"env\":{\"A\":\"b\"}},"
                "\"wait\":true}"),
        "done");
    vg_expect_state(
        c, "put",
        bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/sh\","
                "\"-c\",\"exit 2\"]},\"retries\":1,"
                "\"wait\":true}"),
        "failed");
    vg_expect_state(c, "put",
                    bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/"
                            "echo\"],\"cwd\":\"/no/such/dir\"},\"wait\":true}"),
                    "failed");
    r = bb_call_within(c, "put",
                       bb_json("{\"queue\":\"run\",\"args\":{\"argv\":["
                               "\"asyncq-no-such-program\"]}}"),
                       VALGRIND_REPLY_MS);
    ck_assert_int_eq(reply_error_code(r, "put of a missing program"),
                     INVALID_PARAMS);

    /* wait on several, in all modes. */
    a = bb_put_job(c, bb_json("{\"args\":{\"a\":1}}"), VALGRIND_REPLY_MS);
    b = bb_put_job(c, bb_json("{\"queue\":\"nap\",\"args\":{\"seconds\":0.1}}"),
                   VALGRIND_REPLY_MS);
    r = bb_result_within(c, "wait", json_pack("{s:[I,I]}", "jobs", a, b),
                         VALGRIND_REPLY_MS);
    ck_assert_int_eq(json_array_size(r), 2);
    json_decref(r);
    r = bb_result_within(
        c, "wait", json_pack("{s:[I,I],s:s}", "jobs", a, b, "mode", "stream"),
        VALGRIND_REPLY_MS);
    json_decref(r);

    /* Cancel: a running sleep, a pending one, a running exec job. */
    a = bb_put_job(c, bb_json("{\"queue\":\"nap\",\"args\":{\"seconds\":30}}"),
                   VALGRIND_REPLY_MS);
    b = bb_put_job(c, bb_json("{\"queue\":\"nap\",\"args\":{\"seconds\":30}}"),
                   VALGRIND_REPLY_MS);
    bb_await_state(c, a, "running", VALGRIND_REPLY_MS);
    vg_expect_state(c, "cancel", json_pack("{s:I}", "job", b), "cancelled");
    vg_expect_state(c, "cancel", json_pack("{s:I}", "job", a), "cancelled");
    e = bb_put_job(c,
                   bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/sh\","
                           "\"-c\",\"sleep 30 & wait\"]}}"),
                   VALGRIND_REPLY_MS);
    bb_await_state(c, e, "running", VALGRIND_REPLY_MS);
    vg_expect_state(c, "cancel", json_pack("{s:I}", "job", e), "cancelled");
    r = bb_call_within(c, "cancel", json_pack("{s:I}", "job", e),
                       VALGRIND_REPLY_MS);
    ck_assert_int_eq(reply_error_code(r, "second cancel"), ALREADY_FINISHED);

    /* A timeout, then a wait that times out. */
    vg_expect_state(c, "put",
                    bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/"
                            "sleep\",\"30\"]},\"timeout\":0.3,\"wait\":true}"),
                    "failed");
    a = bb_put_job(c, bb_json("{\"queue\":\"nap\",\"args\":{\"seconds\":30}}"),
                   VALGRIND_REPLY_MS);
    r = bb_call_within(c, "wait",
                       json_pack("{s:[I],s:f}", "jobs", a, "timeout", 0.2),
                       VALGRIND_REPLY_MS);
    ck_assert_int_eq(reply_error_code(r, "wait with timeout"), TIMED_OUT);
    json_decref(bb_result_within(c, "stats", NULL, VALGRIND_REPLY_MS));

    /* Stop with jobs running (a is running or pending), an exec one too,
     * and a waiter pending. */
    e = bb_put_job(c,
                   bb_json("{\"queue\":\"run\",\"args\":{\"argv\":[\"/bin/"
                           "sleep\",\"30\"]}}"),
                   VALGRIND_REPLY_MS);
    bb_await_state(c, e, "running", VALGRIND_REPLY_MS);
    bb_send_call(c, "wait", json_pack("{s:[I]}", "jobs", e));
    json_decref(bb_result_within(c, "ping", NULL, VALGRIND_REPLY_MS));
    st = bb_stop(d);
    ck_assert_msg(st == 0,
                  "asyncqd under valgrind exited with %d (99: errors or "
                  "leaks; its log is above)",
                  st);
    bb_close(c);

    /* Replay: the interrupted exec job is pending or running again. */
    setenv("ASYNCQD_WRAPPER", VALGRIND_WRAPPER, 1);
    d = bb_start("%s", config);
    unsetenv("ASYNCQD_WRAPPER");
    c = bb_connect(d);
    r = bb_result_within(c, "status", json_pack("{s:I}", "job", e),
                         VALGRIND_REPLY_MS);
    ck_assert_str_ne(bb_str_at(r, "state"), "done");
    json_decref(r);
    st = bb_stop(d);
    ck_assert_msg(st == 0, "asyncqd replaying under valgrind exited with %d",
                  st);
    bb_close(c);
    ck_assert(bb_remove_dir(jdir));
}
END_TEST

Suite *
bb_lifecycle_suite(void)
{
    Suite *s = suite_create("bb_lifecycle");
    TCase *cli = tcase_create("cli");
    TCase *stop = tcase_create("stop");
    TCase *reload = tcase_create("reload");
    TCase *valgrind = tcase_create("valgrind");

    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, version_flag_prints_the_version_and_exits_0);
    tcase_add_test(cli, help_flag_exits_0_and_mentions_config);
    tcase_add_test(cli, check_config_accepts_a_valid_config_and_exits_0);
    tcase_add_test(cli, check_config_rejects_a_bad_value_naming_the_field);
    tcase_add_test(cli, check_config_rejects_an_unknown_field_naming_it);
    tcase_add_test(cli, unknown_flag_exits_nonzero);
    tcase_add_test(cli,
                   start_with_a_missing_config_file_exits_1_naming_the_path);
    suite_add_tcase(s, cli);

    tcase_set_timeout(stop, 120);
    tcase_add_test(stop, sigterm_with_idle_consumers_exits_0_at_once);
    tcase_add_test(stop, sigterm_lets_a_running_job_finish_within_the_grace);
    tcase_add_test(stop,
                   sigterm_past_the_grace_interrupts_the_job_and_requeues_it);
    tcase_add_test(stop, second_sigterm_skips_the_grace);
    tcase_add_test(stop, sigint_stops_gracefully_like_sigterm);
    tcase_add_test(
        stop,
        during_shutdown_new_puts_get_32010_and_new_connections_are_refused);
    tcase_add_test(stop, pending_waiters_get_32010_before_the_daemon_exits);
    tcase_add_test(stop, drain_runs_every_pending_job_before_exit);
    tcase_add_test(stop, without_drain_pending_jobs_do_not_run_at_shutdown);
    tcase_add_test(stop, no_job_process_outlives_the_daemon);
    tcase_add_test(stop,
                   no_job_process_outlives_the_daemon_even_outside_its_group);
    suite_add_tcase(s, stop);

    tcase_set_timeout(reload, 60);
    tcase_add_test(reload, sighup_adds_a_new_queue);
    suite_add_tcase(s, reload);

    tcase_set_timeout(valgrind, 300);
    tcase_add_test(valgrind, valgrind_session_reports_no_errors_or_leaks);
    suite_add_tcase(s, valgrind);
    return s;
}
