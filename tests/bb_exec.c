/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_exec.c: the exec handler against a real asyncqd: results and
 * capture, the job's environment, cwd and stdin, no shell, exec.allow and
 * exec.path, spawn failures, timeout and kill_grace, cancel, and that no
 * process of a job (nor a zombie) is left behind.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define EXEC_PATH "/usr/local/bin:/usr/bin:/bin"
#define EXEC_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":2,"             \
    "\"exec\":{\"path\":\"" EXEC_PATH "\"}}}}"

/* ---- jobs ---- */

/* Puts a job with wait and returns its finished record (params taken). */
static json_t *
put_wait(struct bb_conn *c, json_t *params)
{
    json_object_set_new(params, "wait", json_true());
    return bb_result(c, "put", params);
}

/* ---- processes ---- */

static bool
has_no_children(void *arg)
{
    return bb_daemon_children(arg, NULL, 0) == 0;
}

static bool
has_children(void *arg)
{
    return bb_daemon_children(arg, NULL, 0) > 0;
}

/* ---- results ---- */

START_TEST(exec_echo_returns_exit_code_output_and_duration)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/echo\",\"hello\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "exec");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    ck_assert_int_eq(bb_int_at(rec, "result.exit_code"), 0);
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "hello\n");
    ck_assert_str_eq(bb_str_at(rec, "result.stderr"), "");
    ck_assert(json_is_false(bb_at(rec, "result.truncated")));
    ck_assert(json_is_number(bb_at(rec, "result.duration")));
    ck_assert(json_number_value(bb_at(rec, "result.duration")) >= 0);
    ck_assert_msg(bb_at(rec, "result.signal") == NULL ||
                      json_equal(bb_at(rec, "result.signal"), json_null()),
                  "signal in the result of a program that exited: %s",
                  bb_dump(rec));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_bare_program_name_is_looked_up_in_exec_path)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"echo\",\"found\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "found\n");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_nonzero_exit_fails_with_exit_error_and_captured_stderr)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                            "\"echo partial; echo oops >&2; exit 3\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "exit");
    ck_assert(strlen(bb_str_at(rec, "error.message")) > 0);
    ck_assert_int_eq(bb_int_at(rec, "result.exit_code"), 3);
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "partial\n");
    ck_assert_str_eq(bb_str_at(rec, "result.stderr"), "oops\n");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_output_beyond_capture_is_cut_and_marked_truncated)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"capture\":100}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(
        c, bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                   "\"yes x | head -c 5000; yes y | head -c 5000 >&2\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_int_eq(json_string_length(bb_at(rec, "result.stdout")), 100);
    ck_assert_int_eq(json_string_length(bb_at(rec, "result.stderr")), 100);
    ck_assert(strncmp(bb_str_at(rec, "result.stdout"), "x\nx\n", 4) == 0);
    ck_assert(strncmp(bb_str_at(rec, "result.stderr"), "y\ny\n", 4) == 0);
    ck_assert(json_is_true(bb_at(rec, "result.truncated")));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_output_within_capture_is_not_truncated)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"capture\":100}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                      "\"yes x | head -c 100\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_int_eq(json_string_length(bb_at(rec, "result.stdout")), 100);
    ck_assert(json_is_false(bb_at(rec, "result.truncated")));
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Parses env(1) output, NAME=value lines, into an object. */
static json_t *
parse_env(const char *text)
{
    json_t *env = json_object();

    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        const char *eq = memchr(text, '=', n);

        ck_assert_msg(eq != NULL, "not NAME=value: %.*s", (int)n, text);
        char *name = strndup(text, (size_t)(eq - text));
        json_object_set_new(env, name,
                            json_stringn(eq + 1, n - (size_t)(eq - text) - 1));
        free(name);
        text += n + (text[n] == '\n');
    }
    return env;
}

START_TEST(exec_job_sees_only_the_minimal_environment_and_its_own_env)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *rec, *env, *want;

    /* The daemon's environment must not reach the job. */
    setenv("ASYNCQ_SECRET", "x", 1);
    d = bb_start(EXEC_CONFIG);
    unsetenv("ASYNCQ_SECRET");
    c = bb_connect(d);
    rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"/usr/bin/env\"],"
                            "\"env\":{\"FOO\":\"bar baz\",\"EMPTY\":\"\"}}}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    env = parse_env(bb_str_at(rec, "result.stdout"));
    want = json_pack("{s:s,s:s,s:s,s:s,s:s}", "PATH", EXEC_PATH, "HOME", "/",
                     "LANG", "C.UTF-8", "FOO", "bar baz", "EMPTY", "");
    ck_assert_msg(json_equal(env, want), "job environment: %s, expected %s",
                  bb_dump(env), bb_dump(want));
    json_decref(want);
    json_decref(env);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_cwd_is_the_job_working_directory)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char real[PATH_MAX], want[PATH_MAX + 2];
    json_t *rec;

    ck_assert_ptr_nonnull(realpath(bb_dir(d), real));
    snprintf(want, sizeof want, "%s\n", real);
    rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/pwd\"],"
                              "\"cwd\":\"%s\"}}",
                              bb_dir(d)));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), want);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_stdin_is_piped_to_the_program)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(
        c, bb_json("{\"args\":{\"argv\":[\"/bin/cat\"],\"stdin\":\"abc\"}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "abc");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_stdin_larger_than_a_pipe_buffer_arrives_whole)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    size_t n = 300000;
    char *in = malloc(n + 1);
    json_t *params, *rec;

    memset(in, 'z', n);
    in[n] = '\0';
    params = json_pack("{s:{s:[s,s],s:s}}", "args", "argv", "/usr/bin/wc", "-c",
                       "stdin", in);
    rec = put_wait(c, params);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_int_eq(atol(bb_str_at(rec, "result.stdout")), (long)n);
    free(in);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_without_stdin_the_program_reads_end_of_file)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/cat\"]}}"));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_invalid_utf8_output_comes_back_as_valid_json)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    /* printf(1) turns the octal escapes into the bytes 0xff 0xfe. */
    json_t *rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"/usr/bin/printf\","
                            "\"a\\\\377\\\\376b\"]}}"));
    const char *out;

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    out = bb_str_at(rec, "result.stdout");
    ck_assert_msg(strstr(out, "\xef\xbf\xbd") != NULL,
                  "no U+FFFD in stdout: %s", bb_dump(rec));
    ck_assert_int_eq(out[0], 'a');
    ck_assert_int_eq(out[strlen(out) - 1], 'b');
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_argv_is_not_run_through_a_shell)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(
        c, bb_json("{\"args\":{\"argv\":[\"/bin/echo\",\"$HOME\",\"*\","
                   "\"a;b\",\"`id`\",\"x > y\"],\"cwd\":\"%s\"}}",
                   bb_dir(d)));

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"),
                     "$HOME * a;b `id` x > y\n");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put-time checks and spawn failures ---- */

START_TEST(exec_program_outside_the_allow_list_is_refused_at_put)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"allow\":[\"/bin/echo\"],\"path\":\"/bin\"}}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec, *st;

    ck_assert_int_eq(
        bb_error(
            c, "put",
            bb_json("{\"args\":{\"argv\":[\"/bin/cat\",\"/etc/passwd\"]}}")),
        NOT_ALLOWED);
    ck_assert_int_eq(
        bb_error(c, "put", bb_json("{\"args\":{\"argv\":[\"cat\"]}}")),
        NOT_ALLOWED);
    ck_assert_int_eq(
        bb_error(
            c, "put",
            bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\",\"echo\"]}}")),
        NOT_ALLOWED);
    rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/echo\",\"ok\"]}}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "ok\n");
    json_decref(rec);
    rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"echo\",\"bare\"]}}"));
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "bare\n");
    json_decref(rec);
    /* The refused puts made no job. */
    st = bb_result(c, "stats", json_pack("{s:s}", "queue", "default"));
    ck_assert_int_eq(bb_int_at(st, "queues.default.put"), 2);
    json_decref(st);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_program_not_found_in_exec_path_is_invalid_params)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);

    ck_assert_int_eq(
        bb_error(c, "put",
                 bb_json("{\"args\":{\"argv\":[\"asyncq-no-such-program\"]}}")),
        INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_json("{\"args\":{\"argv\":[]}}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "put", bb_json("{\"args\":{\"argv\":[7]}}")),
                     INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_program_that_is_not_executable_fails_with_spawn_error)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    char path[PATH_MAX];
    FILE *f;
    json_t *rec;

    snprintf(path, sizeof path, "%s/not-executable", bb_dir(d));
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#!/bin/sh\necho should not run\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0644), 0);
    rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"%s\"]}}", path));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "spawn");
    ck_assert(strlen(bb_str_at(rec, "error.message")) > 0);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_missing_cwd_fails_with_spawn_error)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/echo\"],"
                                      "\"cwd\":\"%s/no-such-dir\"}}",
                                      bb_dir(d)));

    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "spawn");
    ck_assert_msg(strstr(bb_str_at(rec, "error.message"), "no-such-dir") !=
                      NULL,
                  "the error does not name the cwd: %s", bb_dump(rec));
    json_decref(rec);
    /* The consumer goes on with the next job. */
    rec =
        put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/echo\",\"next\"]}}"));
    ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "next\n");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- timeout, kill_grace, cancel ---- */

START_TEST(exec_timeout_terminates_the_program_and_fails_the_job)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    int64_t t0 = bb_now_ms(), elapsed;
    json_int_t id =
        bb_send_call(c, "put",
                     bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"30\"]},"
                             "\"timeout\":0.3,\"wait\":true}"));
    pid_t pid;
    json_t *r, *rec;

    ck_assert_msg(bb_poll(has_children, d, 5000), "the job never started");
    ck_assert_int_eq(bb_daemon_children(d, &pid, 1), 1);
    r = bb_wait_reply(c, id, 10000);
    elapsed = bb_now_ms() - t0;
    ck_assert_msg(r != NULL, "no reply to the put within 10 s");
    rec = json_object_get(r, "result");
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
    ck_assert_int_eq(bb_int_at(rec, "result.signal"), SIGTERM);
    ck_assert_int_ge(elapsed, 300);
    ck_assert_msg(elapsed < 1500, "timeout took %lld ms", (long long)elapsed);
    ck_assert_msg(!bb_pid_alive(pid), "sleep %d alive after its job ended",
                  (int)pid);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_kill_grace_escalates_to_sigkill_for_a_program_ignoring_sigterm)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"kill_grace\":0.5}}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile pf;
    int64_t t0, elapsed;
    json_t *rec;

    bb_pidfile_init(&pf, d, "pid");
    t0 = bb_now_ms();
    rec = put_wait(
        c, bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\",\"trap '' TERM; "
                   "echo $$ > %s; while :; do sleep 0.1; done\"]},"
                   "\"timeout\":0.3}",
                   pf.path));
    elapsed = bb_now_ms() - t0;
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
    ck_assert_int_eq(bb_int_at(rec, "result.signal"), SIGKILL);
    ck_assert_msg(elapsed >= 800, "ended after %lld ms, before timeout + grace",
                  (long long)elapsed);
    ck_assert_msg(elapsed < 3000, "ended after %lld ms", (long long)elapsed);
    ck_assert(json_number_value(bb_at(rec, "result.duration")) >= 0.75);
    bb_pidfile_wait(&pf);
    bb_assert_dead(pf.pids, 1, 0);
    ck_assert_msg(bb_poll(has_no_children, d, 2000),
                  "processes of the job are left");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_background_grandchild_is_killed_when_the_job_exits)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    int64_t t0 = bb_now_ms();
    json_t *rec = put_wait(c, bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                      "\"sleep 30 & echo $!\"]}}"));
    pid_t grandchild;

    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_msg(bb_now_ms() - t0 < 5000, "the job waited for its grandchild");
    grandchild = (pid_t)atol(bb_str_at(rec, "result.stdout"));
    ck_assert_int_gt(grandchild, 1);
    bb_assert_dead(&grandchild, 1, 2000);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_grandchild_ignoring_sigterm_is_killed_at_timeout)
{
    /* A long kill_grace: the leader dies of SIGTERM at once, and its
     * grandchild must go with it, not kill_grace later. */
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"kill_grace\":20}}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile pf;
    json_t *rec;

    bb_pidfile_init(&pf, d, "pids");
    rec = put_wait(
        c,
        bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                "\"(trap '' TERM; exec sleep 30) & echo $$ $! > %s; wait\"]},"
                "\"timeout\":0.3}",
                pf.path));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
    bb_pidfile_wait(&pf);
    ck_assert_int_eq(pf.n, 2);
    bb_assert_dead(pf.pids, 2, 2000);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_cancel_of_a_running_job_kills_its_process_group)
{
    struct bb_daemon *d = bb_start(EXEC_CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile pf;
    json_int_t id;
    json_t *r, *want, *st;

    bb_pidfile_init(&pf, d, "pids");
    id =
        bb_put_job(c,
                   bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                           "\"sleep 30 & sleep 30 & echo $$ $! > %s; wait\"]}}",
                           pf.path),
                   BB_TIMEOUT_MS);
    bb_pidfile_wait(&pf);
    ck_assert_int_eq(pf.n, 2);
    ck_assert(bb_pid_alive(pf.pids[0]) && bb_pid_alive(pf.pids[1]));
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", id));
    want = json_pack("{s:I,s:s}", "job", id, "state", "cancelled");
    ck_assert_msg(json_equal(r, want), "cancel: %s", bb_dump(r));
    st = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(st, "state"), "cancelled");
    bb_assert_dead(pf.pids, 2, 2000);
    ck_assert_msg(bb_poll(has_no_children, d, 2000),
                  "processes of the job are left");
    json_decref(st);
    json_decref(want);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_cancel_kills_a_grandchild_ignoring_sigterm)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":1,"
                 "\"exec\":{\"kill_grace\":20}}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_pidfile pf;
    json_int_t id;
    json_t *r;

    bb_pidfile_init(&pf, d, "pids");
    id = bb_put_job(
        c,
        bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                "\"(trap '' TERM; exec sleep 30) & echo $$ $! > %s; wait\"]}}",
                pf.path),
        BB_TIMEOUT_MS);
    bb_pidfile_wait(&pf);
    ck_assert_int_eq(pf.n, 2);
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", id));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    bb_assert_dead(pf.pids, 2, 2000);
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- many jobs ---- */

#define NJOBS 20

struct busy_watch {
    struct bb_conn *c;
    json_int_t max_busy; /* the most seen at once */
};

/* True once the queue runs 4 jobs at once; records the maximum. */
static bool
four_busy(void *arg)
{
    struct busy_watch *w = arg;
    json_t *st =
        bb_result(w->c, "stats", json_pack("{s:s}", "queue", "default"));
    json_int_t busy = bb_int_at(st, "queues.default.busy");

    json_decref(st);
    if (busy > w->max_busy)
        w->max_busy = busy;
    return busy == 4;
}

START_TEST(exec_twenty_concurrent_jobs_on_four_consumers_get_their_own_output)
{
    struct bb_daemon *d = bb_start(
        "{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":4}}}");
    struct bb_conn *c = bb_connect(d);
    struct busy_watch w = {bb_connect(d), 0};
    json_int_t ids[NJOBS];
    char want_out[32], want_err[32];

    for (int i = 0; i < NJOBS; i++)
        ids[i] =
            bb_send_call(c, "put",
                         bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                 "\"sleep 0.2; echo out-$1; echo err-$1 >&2\","
                                 "\"sh\",\"%d\"]},\"wait\":true}",
                                 i));
    ck_assert_msg(bb_poll(four_busy, &w, 5000),
                  "never 4 jobs at once (at most %lld)", (long long)w.max_busy);
    for (int i = 0; i < NJOBS; i++) {
        json_t *r = bb_wait_reply(c, ids[i], 30000);
        json_t *rec = json_object_get(r, "result");

        ck_assert_msg(r != NULL, "no reply for job %d", i);
        ck_assert_msg(rec != NULL, "put %d failed: %s", i, bb_dump(r));
        snprintf(want_out, sizeof want_out, "out-%d\n", i);
        snprintf(want_err, sizeof want_err, "err-%d\n", i);
        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        ck_assert_str_eq(bb_str_at(rec, "result.stdout"), want_out);
        ck_assert_str_eq(bb_str_at(rec, "result.stderr"), want_err);
        json_decref(r);
    }
    ck_assert_int_le(w.max_busy, 4);
    bb_close(w.c);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(exec_finished_jobs_leave_no_zombie_behind)
{
    struct bb_daemon *d =
        bb_start("{\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":4,"
                 "\"exec\":{\"kill_grace\":0.2}}}}");
    struct bb_conn *c = bb_connect(d);
    json_int_t ids[5], cancel_id;
    struct bb_pidfile pf;
    json_t *r;

    bb_pidfile_init(&pf, d, "pids");
    ids[0] = bb_send_call(
        c, "put",
        bb_json("{\"args\":{\"argv\":[\"/bin/echo\",\"x\"]},\"wait\":true}"));
    ids[1] = bb_send_call(c, "put",
                          bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                  "\"exit 4\"]},\"wait\":true}"));
    ids[2] = bb_send_call(c, "put",
                          bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                  "\"sleep 30 & sleep 30 & echo $!\"]},"
                                  "\"wait\":true}"));
    ids[3] =
        bb_send_call(c, "put",
                     bb_json("{\"args\":{\"argv\":[\"/bin/sleep\",\"30\"]},"
                             "\"timeout\":0.2,\"wait\":true}"));
    ids[4] = bb_send_call(c, "put",
                          bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                  "\"trap '' TERM; sleep 30 & wait\"]},"
                                  "\"timeout\":0.2,\"wait\":true}"));
    for (int i = 0; i < 5; i++) {
        r = bb_wait_reply(c, ids[i], 10000);
        ck_assert_msg(r != NULL && json_object_get(r, "result") != NULL,
                      "job %d: %s", i, bb_dump(r));
        json_decref(r);
    }
    cancel_id = bb_put_job(c,
                           bb_json("{\"args\":{\"argv\":[\"/bin/sh\",\"-c\","
                                   "\"sleep 30 & echo $! > %s; wait\"]}}",
                                   pf.path),
                           BB_TIMEOUT_MS);
    bb_pidfile_wait(&pf);
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", cancel_id));
    json_decref(r);
    ck_assert_msg(bb_poll(has_no_children, d, 5000),
                  "the daemon still has %zu children (zombies?)",
                  bb_daemon_children(d, NULL, 0));
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_exec_suite(void)
{
    Suite *s = suite_create("bb_exec");
    TCase *run = tcase_create("run");
    TCase *checks = tcase_create("checks");
    TCase *kill = tcase_create("kill");
    TCase *many = tcase_create("many");

    tcase_set_timeout(run, 60);
    tcase_add_test(run, exec_echo_returns_exit_code_output_and_duration);
    tcase_add_test(run, exec_bare_program_name_is_looked_up_in_exec_path);
    tcase_add_test(run,
                   exec_nonzero_exit_fails_with_exit_error_and_captured_stderr);
    tcase_add_test(run, exec_output_beyond_capture_is_cut_and_marked_truncated);
    tcase_add_test(run, exec_output_within_capture_is_not_truncated);
    tcase_add_test(run,
                   exec_job_sees_only_the_minimal_environment_and_its_own_env);
    tcase_add_test(run, exec_cwd_is_the_job_working_directory);
    tcase_add_test(run, exec_stdin_is_piped_to_the_program);
    tcase_add_test(run, exec_stdin_larger_than_a_pipe_buffer_arrives_whole);
    tcase_add_test(run, exec_without_stdin_the_program_reads_end_of_file);
    tcase_add_test(run, exec_invalid_utf8_output_comes_back_as_valid_json);
    tcase_add_test(run, exec_argv_is_not_run_through_a_shell);
    suite_add_tcase(s, run);

    tcase_set_timeout(checks, 60);
    tcase_add_test(checks,
                   exec_program_outside_the_allow_list_is_refused_at_put);
    tcase_add_test(checks,
                   exec_program_not_found_in_exec_path_is_invalid_params);
    tcase_add_test(checks,
                   exec_program_that_is_not_executable_fails_with_spawn_error);
    tcase_add_test(checks, exec_missing_cwd_fails_with_spawn_error);
    suite_add_tcase(s, checks);

    tcase_set_timeout(kill, 90);
    tcase_add_test(kill, exec_timeout_terminates_the_program_and_fails_the_job);
    tcase_add_test(
        kill,
        exec_kill_grace_escalates_to_sigkill_for_a_program_ignoring_sigterm);
    tcase_add_test(kill,
                   exec_background_grandchild_is_killed_when_the_job_exits);
    tcase_add_test(kill, exec_grandchild_ignoring_sigterm_is_killed_at_timeout);
    tcase_add_test(kill, exec_cancel_of_a_running_job_kills_its_process_group);
    tcase_add_test(kill, exec_cancel_kills_a_grandchild_ignoring_sigterm);
    suite_add_tcase(s, kill);

    tcase_set_timeout(many, 120);
    tcase_add_test(
        many,
        exec_twenty_concurrent_jobs_on_four_consumers_get_their_own_output);
    tcase_add_test(many, exec_finished_jobs_leave_no_zombie_behind);
    suite_add_tcase(s, many);
    return s;
}
