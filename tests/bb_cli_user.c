/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_cli_user.c: the asyncq CLI as a user meets it (issue 13): help
 * for every verb, durations with units, exit 3 (cannot reach) versus 4
 * (the server said no), status with an exec job's output as text, stats
 * in 80 columns with singular and plural, put -f through back-pressure
 * and a lost connection with its count, put --wait leaving the job id
 * when the server stops, and stats --watch across a daemon restart.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define BG_MS 20000 /* deadline for what a background CLI should print */

#define CONFIG                                                                 \
    "{'queues':{"                                                              \
    "'default':{'kind':'exec','consumers':1,"                                  \
    "'exec':{'path':'/usr/local/bin:/usr/bin:/bin'}},"                         \
    "'held':{'kind':'exec','consumers':0},"                                    \
    "'e':{'kind':'echo','consumers':1},"                                       \
    "'bp':{'kind':'echo','consumers':0,'maxsize':5},"                          \
    "'a-queue-name-much-longer-than-a-table-column':{'kind':'echo',"           \
    "'consumers':0}}}"

static const char *const verbs[] = {
    "put",  "status", "wait",  "list",  "retry",  "delete", "cancel",
    "join", "stats",  "scale", "pause", "resume", "ping",   "help",
};

/* ---- help ---- */

START_TEST(help_and_verb_help_print_the_verbs_usage_and_exit_0)
{
    struct bb_run r;
    char want[64];

    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        snprintf(want, sizeof want, "usage: asyncq %s", verbs[i]);
        asyncq(&r, NULL, "help", verbs[i], NULL);
        assert_exit(&r, 0);
        assert_has(&r, r.out, want);
        assert_fits(&r, r.out, 80);
        bb_run_free(&r);
        asyncq(&r, NULL, verbs[i], "--help", NULL);
        assert_exit(&r, 0);
        assert_has(&r, r.out, want);
        bb_run_free(&r);
        asyncq(&r, NULL, verbs[i], "-h", NULL);
        assert_exit(&r, 0);
        assert_has(&r, r.out, want);
        bb_run_free(&r);
    }
    asyncq(&r, NULL, "help", NULL);
    assert_exit(&r, 0);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        snprintf(want, sizeof want, "asyncq %s", verbs[i]);
        assert_has(&r, r.out, want);
    }
    assert_has(&r, r.out, "4 the server");
    assert_fits(&r, r.out, 80);
    bb_run_free(&r);

    asyncq(&r, NULL, "help", "frobnicate", NULL);
    assert_exit(&r, 2);
    assert_has(&r, r.err, "frobnicate");
    bb_run_free(&r);
}
END_TEST

START_TEST(bare_asyncq_prints_the_usage_and_exits_2)
{
    struct bb_run r;

    asyncq(&r, NULL, NULL);
    assert_exit(&r, 2);
    assert_has(&r, r.err, "usage: asyncq");
    assert_has(&r, r.err, "asyncq list");
    assert_has(&r, r.err, "asyncq retry");
    ck_assert_str_eq(r.out, "");
    bb_run_free(&r);
}
END_TEST

/* put's command is the job's: its --help goes to the job. */
START_TEST(put_command_with_its_own_help_flag_is_not_asyncq_help)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "put", "--wait", "--", "/bin/sh", "-c", "echo $1", "sh",
           "--help", NULL);
    assert_exit(&r, 0);
    ck_assert_str_eq(r.out, "--help\n");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- durations ---- */

START_TEST(durations_take_units)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    char ids[32];
    struct bb_run r;
    json_t *rec;

    /* 0.3s: the job runs past it and fails on its timeout. */
    asyncq(&r, d, "--json", "put", "--timeout", "0.3s", "--wait", "--",
           "/bin/sleep", "30", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
    json_decref(rec);
    bb_run_free(&r);

    /* 1.5m, 1h, 2d: delayed jobs. */
    for (const char *v = "90\0001.5m\0001h\0002d\0"; *v != '\0';
         v += strlen(v) + 1) {
        asyncq(&r, d, "--json", "put", "-q", "e", "-k", "echo", "--args", "{}",
               "--delay", v, NULL);
        assert_exit(&r, 0);
        rec = out_json(&r);
        ck_assert_str_eq(bb_str_at(rec, "state"), "delayed");
        snprintf(ids, sizeof ids, "%lld", (long long)bb_int_at(rec, "job"));
        json_decref(rec);
        bb_run_free(&r);
    }
    ck_assert_int_eq(bb_stat_int(c, "e", "delayed"), 4);

    /* A wait of 200ms runs out: exit 3, the server's -32008. */
    asyncq(&r, d, "wait", ids, "--timeout", "200ms", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_bad_duration_is_a_usage_error_naming_the_option)
{
    static const struct {
        const char *opt; /* the option the message names */
        const char *args[6];
    } cases[] = {
        {"--delay", {"put", "--delay", "5x", "--", "/bin/true"}},
        {"--timeout", {"put", "--timeout", "1y", "--", "/bin/true"}},
        {"--delay", {"put", "--delay", "-1", "--", "/bin/true"}},
        {"--delay", {"put", "--delay", "1e10", "--", "/bin/true"}},
        {"--delay", {"put", "--delay", "inf", "--", "/bin/true"}},
        {"--timeout", {"wait", "1", "--timeout", "abc"}},
        {"--timeout", {"join", "--timeout", "5 m"}},
        {"--interval", {"stats", "--watch", "--interval", "0"}},
        {"--delay", {"retry", "1", "--delay", "3w"}},
    };
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].args;

        asyncq(&r, d, a[0], a[1], a[2], a[3], a[4], a[5], NULL);
        assert_exit(&r, 2);
        assert_has(&r, r.err, cases[i].opt);
        assert_has(&r, r.err, "usage: asyncq");
        ck_assert_str_eq(r.out, "");
        bb_run_free(&r);
    }
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- exit statuses ---- */

START_TEST(exit_4_when_the_server_says_no_3_when_it_cannot_answer)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id = bb_put_job(c,
                               bb_jsonq("{'queue':'held','args':{'argv':["
                                        "'/bin/true']}}"),
                               BB_TIMEOUT_MS);
    char ids[32];
    struct bb_run r;

    snprintf(ids, sizeof ids, "%lld", (long long)id);
    asyncq(&r, d, "status", "999999", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32004");
    bb_run_free(&r);

    asyncq(&r, d, "scale", "no-such-queue", "1", NULL);
    assert_exit(&r, 4);
    bb_run_free(&r);

    asyncq(&r, d, "put", "-q", "held", "-k", "nope", "--args", "{}", NULL);
    assert_exit(&r, 4);
    bb_run_free(&r);

    /* A timeout is "try again later": 3. */
    asyncq(&r, d, "wait", ids, "--timeout", "0.1", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- status ---- */

START_TEST(status_shows_an_exec_jobs_output_as_text)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    json_int_t id;
    char ids[32];
    json_t *rec;

    asyncq(&r, d, "--json", "put", "--wait", "--", "/bin/sh", "-c",
           "printf 'line one\\nline \"two\"\\n'; echo oops >&2; exit 3", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    id = bb_int_at(rec, "job");
    json_decref(rec);
    bb_run_free(&r);

    snprintf(ids, sizeof ids, "%lld", (long long)id);
    asyncq(&r, d, "status", ids, NULL);
    assert_exit(&r, 1);
    assert_has(&r, r.out, "failed");
    assert_has(&r, r.out, "exit code 3");
    assert_has(&r, r.out, "  stdout:\n    line one\n    line \"two\"\n");
    assert_has(&r, r.out, "  stderr:\n    oops\n");
    /* text, not a JSON blob (the command itself holds a "\n": look at
     * the output's escapes only) */
    ck_assert_msg(strstr(r.out, "\"stdout\"") == NULL &&
                      strstr(r.out, "oops\\n") == NULL,
                  "%s: JSON in \"%s\"", r.cmd, r.out);
    assert_has(&r, r.out, "created");
    assert_has(&r, r.out, "finished");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- stats ---- */

START_TEST(stats_fits_80_columns_unless_wide)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    long long n;
    const char *p;

    asyncq(&r, d, "stats", NULL);
    assert_exit(&r, 0);
    assert_fits(&r, r.out, 80);
    assert_has(&r, r.out, "5 queues");
    /* the long name is cut with an ellipsis */
    assert_has(&r, r.out, "\xe2\x80\xa6");
    ck_assert_msg(strstr(r.out, "CANCELLED") == NULL, "%s: %s", r.cmd, r.out);
    /* "N connection(s)", singular for 1 */
    ck_assert_ptr_nonnull(p = strstr(r.out, " connection"));
    while (p > r.out && p[-1] != ' ')
        p--;
    n = strtoll(p, NULL, 10);
    ck_assert_msg(n >= 1, "%s: %s", r.cmd, r.out);
    assert_has(&r, r.out, n == 1 ? "1 connection," : "connections,");
    bb_run_free(&r);

    asyncq(&r, d, "stats", "--wide", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "CANCELLED");
    assert_has(&r, r.out, "a-queue-name-much-longer-than-a-table-column");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);

    d = bb_startq("{'queues':{'only':{'kind':'echo','consumers':1}}}");
    asyncq(&r, d, "stats", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, " 1 queue\n");
    bb_run_free(&r);
    asyncq(&r, d, "scale", "only", "1", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "1 consumer\n");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(stats_watch_survives_a_daemon_restart)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_bg *b =
        asyncq_bg(d, "stats", "--watch", "--interval", "0.1", NULL);
    struct bb_run r;
    long at;

    ck_assert_msg(bb_bg_wait(b, false, "QUEUE", 0, BG_MS) >= 0, "no table: %s",
                  bb_bg_err(b));
    bb_restart(d);
    ck_assert_msg(bb_bg_wait(b, true, "reconnecting", 0, BG_MS) >= 0,
                  "no reconnecting: %s", bb_bg_err(b));
    ck_assert_msg(bb_bg_wait(b, true, "reconnected", 0, BG_MS) >= 0,
                  "no reconnected: %s", bb_bg_err(b));
    at = (long)strlen(bb_bg_out(b));
    ck_assert_msg(bb_bg_wait(b, false, "QUEUE", (size_t)at, BG_MS) >= 0,
                  "no table after the restart: %s", bb_bg_err(b));
    bb_bg_signal(b, SIGINT);
    bb_bg_finish(b, &r, CLI_TIMEOUT_MS);
    assert_exit(&r, 0);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put -f ---- */

static void
write_jobs(const char *path, const char *queue, int n)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "{\"queue\":\"%s\",\"args\":{\"i\":%d}}\n", queue, i);
    ck_assert_int_eq(fclose(f), 0);
}

/* maxsize 5, no consumer: 5 get in, the rest wait for room, which comes
 * when the queue is scaled up. */
START_TEST(put_file_waits_through_back_pressure_and_counts)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    char path[128];
    struct bb_bg *b;
    struct bb_run r;

    snprintf(path, sizeof path, "%s/jobs.ndjson", bb_dir(d));
    write_jobs(path, "bp", 10);
    b = asyncq_bg(d, "put", "-f", path, NULL);
    bb_await_stat(c, "bp", "put", 5, BB_TIMEOUT_MS);
    /* held back, not failed: the CLI says nothing yet */
    ck_assert_int_eq(bb_bg_wait(b, false, "put,", 0, 300), -1);
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'bp','consumers':1}")));
    bb_bg_finish(b, &r, CLI_TIMEOUT_MS);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "10 put, 0 failed");
    ck_assert_str_eq(r.err, "");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "bp", "put"), 10);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_file_that_loses_the_server_says_how_many_got_in)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    char path[128];
    struct bb_bg *b;
    struct bb_run r;

    snprintf(path, sizeof path, "%s/jobs.ndjson", bb_dir(d));
    write_jobs(path, "bp", 10);
    b = asyncq_bg(d, "put", "-f", path, NULL);
    bb_await_stat(c, "bp", "put", 5, BB_TIMEOUT_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_bg_finish(b, &r, CLI_TIMEOUT_MS);
    assert_exit(&r, 3);
    ck_assert_msg(strncmp(r.out, "5 put, ", 7) == 0, "%s: stdout \"%s\"", r.cmd,
                  r.out);
    /* the puts held back were refused (-32010), never answered, or (a
     * slow client, under ASan) never sent: an error naming line 6 */
    ck_assert_msg(strstr(r.out, "not answered") != NULL ||
                      strstr(r.err, ".ndjson:6: ") != NULL,
                  "%s: stdout \"%s\", stderr \"%s\"", r.cmd, r.out, r.err);
    bb_run_free(&r);
}
END_TEST

START_TEST(put_file_errors_name_the_line)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char path[128], where[160];
    struct bb_run r;
    FILE *f;

    snprintf(path, sizeof path, "%s/mixed.ndjson", bb_dir(d));
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs("{\"queue\":\"e\",\"args\":{}}\n"
          "\n"
          "{\"queue\":\"no-such-queue\",\"args\":{}}\n"
          "{\"queue\":\"e\",\"args\":{}}\n",
          f);
    ck_assert_int_eq(fclose(f), 0);
    asyncq(&r, d, "put", "-f", path, NULL);
    assert_exit(&r, 4);
    snprintf(where, sizeof where, "asyncq: %s:3: error -32002", path);
    assert_has(&r, r.err, where);
    assert_has(&r, r.out, "2 put, 1 failed");
    bb_run_free(&r);

    /* A line that is not JSON stops the run: what went before is counted. */
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(
        "{\"queue\":\"e\",\"args\":{}}\n{nope\n{\"queue\":\"e\",\"args\":{}}\n",
        f);
    ck_assert_int_eq(fclose(f), 0);
    asyncq(&r, d, "put", "-f", path, NULL);
    assert_exit(&r, 2);
    snprintf(where, sizeof where, "%s:2: not a JSON object", path);
    assert_has(&r, r.err, where);
    assert_has(&r, r.out, "1 put, 0 failed");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put --wait ---- */

START_TEST(put_wait_cut_short_by_a_server_stop_prints_the_job_id)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_bg *b =
        asyncq_bg(d, "put", "--wait", "-q", "held", "--", "/bin/true", NULL);
    struct bb_run r;
    long long id = 0, again = 0;
    const char *p;

    bb_await_stat(c, "held", "put", 1, BB_TIMEOUT_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    bb_bg_finish(b, &r, CLI_TIMEOUT_MS);
    assert_exit(&r, 3);
    ck_assert_msg((p = strstr(r.err, "asyncq: job ")) != NULL &&
                      sscanf(p, "asyncq: job %lld queued", &id) == 1,
                  "%s: stderr \"%s\"", r.cmd, r.err);
    ck_assert_msg((p = strstr(r.err, "asyncq wait ")) != NULL &&
                      sscanf(p, "asyncq wait %lld", &again) == 1 &&
                      again == id && id >= 1,
                  "%s: stderr \"%s\"", r.cmd, r.err);
    bb_run_free(&r);
}
END_TEST

Suite *
bb_cli_user_suite(void)
{
    Suite *s = suite_create("bb_cli_user");
    TCase *help = tcase_create("help");
    TCase *output = tcase_create("output");
    TCase *server = tcase_create("server");

    tcase_set_timeout(help, 60);
    tcase_add_test(help, help_and_verb_help_print_the_verbs_usage_and_exit_0);
    tcase_add_test(help, bare_asyncq_prints_the_usage_and_exits_2);
    tcase_add_test(help, put_command_with_its_own_help_flag_is_not_asyncq_help);
    tcase_add_test(help, durations_take_units);
    tcase_add_test(help, a_bad_duration_is_a_usage_error_naming_the_option);
    tcase_add_test(help,
                   exit_4_when_the_server_says_no_3_when_it_cannot_answer);
    suite_add_tcase(s, help);

    tcase_set_timeout(output, 60);
    tcase_add_test(output, status_shows_an_exec_jobs_output_as_text);
    tcase_add_test(output, stats_fits_80_columns_unless_wide);
    suite_add_tcase(s, output);

    tcase_set_timeout(server, 90);
    tcase_add_test(server, stats_watch_survives_a_daemon_restart);
    tcase_add_test(server, put_file_waits_through_back_pressure_and_counts);
    tcase_add_test(server, put_file_that_loses_the_server_says_how_many_got_in);
    tcase_add_test(server, put_file_errors_name_the_line);
    tcase_add_test(server,
                   put_wait_cut_short_by_a_server_stop_prints_the_job_id);
    suite_add_tcase(s, server);
    return s;
}
