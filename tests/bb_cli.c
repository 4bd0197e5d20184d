/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_cli.c: the asyncq command-line client (spec section 8) against
 * a real asyncqd: every verb, --json output, the exit statuses (0 success,
 * 1 job failed, 2 usage error, 3 server unreachable, 4 server error), put
 * --wait passing an exec job's output and status through, bulk put -f,
 * stats --watch, auth and the server from $ASYNCQ_SERVER. Each run of the
 * CLI is bounded by a deadline; its stdout and stderr are pipes, so it
 * never sees a terminal. Unix sockets are not covered: the harness hands
 * the daemon a TCP socket.
 */
#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bb.h"
#include "bbcli.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define MAX_ARGS 64

/* exec jobs run on "default"; "held" and "stuck" have no consumers, so
 * their jobs stay pending; a retry waits 10 ms. */
#define CONFIG                                                                 \
    "{'queues':{"                                                              \
    "'default':{'kind':'exec','consumers':2,"                                  \
    "'exec':{'path':'/usr/local/bin:/usr/bin:/bin'},"                          \
    "'backoff':{'initial':0.01,'factor':1,'max':0.01}},"                       \
    "'held':{'kind':'exec','consumers':0},"                                    \
    "'e':{'kind':'echo','consumers':1},"                                       \
    "'s':{'kind':'sleep','consumers':1},"                                      \
    "'stuck':{'kind':'echo','consumers':0},"                                   \
    "'tiny':{'kind':'echo','consumers':0,'maxsize':1}}}"

#define TOKEN "cli-s3cret"

/* The id in put's human output "job ID STATE\n", checking the state. */
static json_int_t
put_output_id(const struct bb_run *r, const char *state)
{
    long long id;
    char got[32];
    int n = 0;

    ck_assert_msg(sscanf(r->out, "job %lld %31s%n", &id, got, &n) == 2 &&
                      strcmp(r->out + n, "\n") == 0 && id > 0,
                  "%s: stdout \"%s\", want \"job ID %s\"", r->cmd, r->out,
                  state);
    ck_assert_msg(strcmp(got, state) == 0, "%s: state %s, want %s", r->cmd, got,
                  state);
    return id;
}

/* Puts params (taken) on c and returns the job id. */
static json_int_t
put_job(struct bb_conn *c, const char *params)
{
    return bb_put_job(c, bb_jsonq("%s", params), BB_TIMEOUT_MS);
}

static json_int_t
stat_int(const struct bb_daemon *d, const char *queue, const char *name)
{
    struct bb_conn *c = bb_connect(d);
    json_int_t n = bb_stat_int(c, queue, name);

    bb_close(c);
    return n;
}

/* Whether word occurs in text between non-alphanumeric characters. */
static bool
has_word(const char *text, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = strstr(text, word); p != NULL;
         p = strstr(p + 1, word)) {
        bool starts = p == text || !isalnum((unsigned char)p[-1]),
             ends = !isalnum((unsigned char)p[n]);

        if (starts && ends)
            return true;
    }
    return false;
}

/* Whether some line of text starts with prefix. */
static bool
has_line_starting(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);

    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

/* Writes text to path. */
static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- ping, server address, help, version ---- */

START_TEST(ping_prints_pong_and_exits_0)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    json_t *v;

    asyncq(&r, d, "ping", NULL);
    assert_exit(&r, 0);
    ck_assert_msg(strncmp(r.out, "pong", 4) == 0, "%s: stdout \"%s\"", r.cmd,
                  r.out);
    ck_assert_str_eq(r.err, "");
    bb_run_free(&r);

    asyncq(&r, d, "--json", "ping", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    assert_json_eq(&r, v, json_string("pong"));
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(server_comes_from_asyncq_server_when_no_server_flag)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char env[64];
    struct run_opts o = {.env = {env, NULL}};
    struct bb_run r;

    snprintf(env, sizeof env, "ASYNCQ_SERVER=tcp://127.0.0.1:%d", bb_port(d));
    asyncq_with(&r, &o, NULL, "ping", NULL);
    assert_exit(&r, 0);
    ck_assert_msg(strncmp(r.out, "pong", 4) == 0, "%s: stdout \"%s\"", r.cmd,
                  r.out);
    bb_run_free(&r);

    asyncq_with(&r, &o, NULL, "put", "-q", "stuck", "-k", "echo", "--args",
                "{}", NULL);
    assert_exit(&r, 0);
    put_output_id(&r, "pending");
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "stuck", "put"), 1);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(unreachable_server_exits_3_naming_the_address)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char url[96], addr[64];
    struct bb_run r;

    /* A port bound but not listening refuses connections, and stays ours
     * (so no other process takes it) until we close it. */
    ck_assert_int_ge(fd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sin.sin_port));
    snprintf(url, sizeof url, "tcp://%s", addr);

    const char *verbs[][4] = {
        {"ping", NULL},
        {"stats", NULL},
        {"put", "--", "/bin/true", NULL},
        {"status", "1", NULL},
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        asyncq(&r, NULL, "--server", url, verbs[i][0], verbs[i][1], verbs[i][2],
               verbs[i][3], NULL);
        assert_exit(&r, 3);
        assert_has(&r, r.err, addr);
        ck_assert_str_eq(r.out, "");
        bb_run_free(&r);
    }
    close(fd);
}
END_TEST

START_TEST(help_exits_0_and_lists_every_verb)
{
    static const char *const verbs[] = {
        "put",   "status", "wait", "cancel", "join",  "stats",  "scale",
        "pause", "resume", "ping", "list",   "retry", "delete", "help",
    };
    struct bb_run r;

    asyncq(&r, NULL, "--help", NULL);
    assert_exit(&r, 0);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        ck_assert_msg(has_word(r.out, verbs[i]),
                      "--help does not list %s: \"%s\"", verbs[i], r.out);
    for (const char *opt = "--json\0--server\0--wait\0-f\0"; *opt != '\0';
         opt += strlen(opt) + 1)
        assert_has(&r, r.out, opt);
    bb_run_free(&r);
}
END_TEST

START_TEST(version_prints_asyncq_and_the_version_the_daemon_reports)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *st = bb_result(c, "stats", NULL);
    char want[64];
    struct bb_run r;

    snprintf(want, sizeof want, "asyncq %s\n", bb_str_at(st, "version"));
    asyncq(&r, NULL, "--version", NULL);
    assert_exit(&r, 0);
    ck_assert_str_eq(r.out, want);
    bb_run_free(&r);
    json_decref(st);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- usage errors ---- */

START_TEST(usage_errors_exit_2_without_touching_the_server)
{
    static const char *const cases[][5] = {
        {NULL},                                 /* no verb */
        {"frobnicate", NULL},                   /* unknown verb */
        {"--bogus", "ping", NULL},              /* unknown option */
        {"put", "--bogus", "x", "/bin/true"},   /* unknown put option */
        {"status", NULL},                       /* status without an id */
        {"status", "abc", NULL},                /* an id that is not a number */
        {"status", "1", "2", NULL},             /* two ids */
        {"scale", "e", "-1", NULL},             /* a negative count */
        {"scale", "e", NULL},                   /* no count */
        {"put", NULL},                          /* put without a command */
        {"put", "-q", "e", NULL},               /* options, no command */
        {"put", "--", NULL},                    /* an empty command */
        {"put", "-k", "echo", "--args", "[1]"}, /* args not an object */
        {"put", "-p", "high", "--", "/bin/true"}, /* priority not a number */
        {"wait", NULL},                           /* wait without an id */
        {"ping", "extra", NULL},                  /* ping takes nothing */
    };
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i];

        if (a[0] == NULL)
            asyncq(&r, d, NULL);
        else if (a[1] == NULL)
            asyncq(&r, d, a[0], NULL);
        else if (a[2] == NULL)
            asyncq(&r, d, a[0], a[1], NULL);
        else if (a[3] == NULL)
            asyncq(&r, d, a[0], a[1], a[2], NULL);
        else
            asyncq(&r, d, a[0], a[1], a[2], a[3], a[4], NULL);
        assert_exit(&r, 2);
        ck_assert_msg(strlen(r.err) > 0, "%s: no message on stderr", r.cmd);
        ck_assert_msg(strcmp(r.out, "") == 0, "%s: stdout \"%s\"", r.cmd,
                      r.out);
        bb_run_free(&r);
    }
    for (const char *q = "default\0e\0held\0"; *q != '\0'; q += strlen(q) + 1)
        ck_assert_int_eq(stat_int(d, q, "put"), 0);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put ---- */

START_TEST(put_of_a_command_prints_the_job_id_and_state)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id, id2;
    json_t *rec, *v;
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "held", "--", "/bin/echo", "-n", "a b", NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "pending");
    bb_run_free(&r);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "kind"), "exec");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "held");
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    json_decref(rec);

    asyncq(&r, d, "--json", "put", "-q", "held", "--", "/bin/true", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    id2 = bb_int_at(v, "job");
    ck_assert_int_gt(id2, id);
    assert_json_eq(&r, v, bb_jsonq("{'job':%lld,'state':'pending'}", id2));
    json_decref(v);
    bb_run_free(&r);

    /* The command runs with its arguments as given (no shell). */
    asyncq(&r, d, "--json", "put", "--wait", "--", "/bin/echo", "-n", "a  b",
           "$HOME", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_str_eq(bb_str_at(v, "state"), "done");
    ck_assert_str_eq(bb_str_at(v, "result.stdout"), "a  b $HOME");
    json_decref(v);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_queue_and_priority_options_sets_them_on_the_job)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    json_t *rec;
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "held", "-p", "5", "--", "/bin/true", NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "pending");
    bb_run_free(&r);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "queue"), "held");
    ck_assert_int_eq(bb_int_at(rec, "priority"), 5);
    json_decref(rec);

    asyncq(&r, d, "put", "--queue", "held", "--priority", "-3", "--",
           "/bin/true", NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "pending");
    bb_run_free(&r);
    rec = bb_job_status(c, id);
    ck_assert_int_eq(bb_int_at(rec, "priority"), -3);
    json_decref(rec);
    ck_assert_int_eq(bb_stat_int(c, "held", "put"), 2);
    ck_assert_int_eq(bb_stat_int(c, "default", "put"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_delay_makes_the_job_delayed)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    json_t *rec;
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "e", "-k", "echo", "--args", "{}", "--delay",
           "60", NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "delayed");
    bb_run_free(&r);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "delayed");
    json_decref(rec);
    ck_assert_int_eq(bb_stat_int(c, "e", "delayed"), 1);

    /* A short delay: the job runs once it is over. */
    asyncq(&r, d, "--json", "put", "-q", "e", "-k", "echo", "--args", "{}",
           "--delay", "0.2", NULL);
    assert_exit(&r, 0);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "state"), "delayed");
    bb_await_state(c, bb_int_at(rec, "job"), "done", 10000);
    json_decref(rec);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_timeout_fails_a_job_that_runs_past_it)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    json_t *rec;

    asyncq(&r, d, "--json", "put", "--timeout", "0.3", "--wait", "--",
           "/bin/sleep", "30", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_retries_runs_a_failing_job_again)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    json_t *rec;

    asyncq(&r, d, "--json", "put", "--retries", "2", "--wait", "--",
           "/bin/false", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 3);
    json_decref(rec);
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "default", "retried"), 2);

    asyncq(&r, d, "--json", "put", "--retries", "0", "--wait", "--",
           "/bin/false", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
    json_decref(rec);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_with_the_same_key_twice_returns_the_first_job_as_duplicate)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    json_int_t id;
    json_t *v;
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "held", "--key", "nightly", "--", "/bin/true",
           NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "pending");
    bb_run_free(&r);

    asyncq(&r, d, "put", "-q", "held", "--key", "nightly", "--", "/bin/true",
           NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "duplicate");
    ck_assert_int_eq(strtoll(r.out + strlen("job "), NULL, 10), id);
    bb_run_free(&r);

    asyncq(&r, d, "--json", "put", "-q", "held", "--key", "nightly", "--",
           "/bin/true", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    assert_json_eq(&r, v,
                   bb_jsonq("{'job':%lld,'state':'pending','duplicate':true}",
                            (long long)id));
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "held", "put"), 1);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_nowait_on_a_full_queue_exits_4_with_32000)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "tiny", "-k", "echo", "--args", "{}", "--nowait",
           NULL);
    assert_exit(&r, 0);
    put_output_id(&r, "pending");
    bb_run_free(&r);

    asyncq(&r, d, "put", "-q", "tiny", "-k", "echo", "--args", "{}", "--nowait",
           NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32000");
    ck_assert_str_eq(r.out, "");
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "tiny", "put"), 1);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_kind_echo_with_args_json_runs_an_echo_job)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    json_t *rec;
    struct bb_run r;

    asyncq(&r, d, "put", "-q", "stuck", "-k", "echo", "--args",
           "{\"a\":[1,2],\"b\":\"x\"}", NULL);
    assert_exit(&r, 0);
    id = put_output_id(&r, "pending");
    bb_run_free(&r);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "kind"), "echo");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "stuck");
    json_decref(rec);

    asyncq(&r, d, "--json", "put", "-q", "e", "-k", "echo", "--args",
           "{\"a\":[1,2],\"b\":\"x\"}", "--wait", NULL);
    assert_exit(&r, 0);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "echo");
    assert_json_eq(&r, bb_at(rec, "result"), bb_jsonq("{'a':[1,2],'b':'x'}"));
    json_decref(rec);
    bb_run_free(&r);

    /* Without --json, --wait of a non-exec job prints its record. */
    asyncq(&r, d, "put", "-q", "e", "-k", "echo", "--args", "{\"n\":7}",
           "--wait", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "done");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put --wait ---- */

START_TEST(put_wait_of_an_exec_job_prints_its_stdout_and_exits_0)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "put", "--wait", "--", "/bin/echo", "hello", "world", NULL);
    assert_exit(&r, 0);
    ck_assert_str_eq(r.out, "hello world\n");
    ck_assert_str_eq(r.err, "");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_wait_of_an_exec_job_passes_its_stderr_and_exit_code)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "put", "--wait", "--", "/bin/sh", "-c",
           "echo out; echo err >&2; exit 3", NULL);
    assert_exit(&r, 3);
    ck_assert_str_eq(r.out, "out\n");
    ck_assert_msg(strncmp(r.err, "err\n", 4) == 0,
                  "%s: stderr does not start with the job's: \"%s\"", r.cmd,
                  r.err);
    bb_run_free(&r);

    asyncq(&r, d, "put", "--wait", "--", "/bin/sh", "-c", "exit 42", NULL);
    assert_exit(&r, 42);
    ck_assert_str_eq(r.out, "");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_wait_of_an_exec_job_killed_by_a_signal_exits_128_plus_it)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "put", "--wait", "--", "/bin/sh", "-c",
           "echo before; kill -KILL $$", NULL);
    assert_exit(&r, 128 + SIGKILL);
    ck_assert_str_eq(r.out, "before\n");
    bb_run_free(&r);

    asyncq(&r, d, "put", "--wait", "--", "/bin/sh", "-c", "kill -USR1 $$",
           NULL);
    assert_exit(&r, 128 + SIGUSR1);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_wait_of_a_failed_non_exec_job_exits_1)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;
    json_t *rec;

    asyncq(&r, d, "put", "-q", "s", "-k", "sleep", "--args", "{\"seconds\":30}",
           "--timeout", "0.2", "--wait", NULL);
    assert_exit(&r, 1);
    assert_has(&r, r.out, "failed");
    bb_run_free(&r);

    asyncq(&r, d, "--json", "put", "-q", "s", "-k", "sleep", "--args",
           "{\"seconds\":30}", "--timeout", "0.2", "--wait", NULL);
    assert_exit(&r, 1);
    rec = out_json(&r);
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    ck_assert_str_eq(bb_str_at(rec, "kind"), "sleep");
    json_decref(rec);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- put -f ---- */

/* Writes n lines of echo puts on queue to path. */
static void
write_ndjson(const char *path, const char *queue, int n)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "{\"queue\":\"%s\",\"kind\":\"echo\",\"args\":{\"i\":%d}}\n",
                queue, i);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(put_file_puts_every_line_and_prints_a_summary)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char path[128];
    long long put, errors;
    struct bb_run r;

    snprintf(path, sizeof path, "%s/jobs.ndjson", bb_dir(d));
    write_ndjson(path, "stuck", 1000);
    asyncq(&r, d, "put", "-f", path, NULL);
    assert_exit(&r, 0);
    ck_assert_msg(sscanf(r.out, "%lld put, %lld failed in", &put, &errors) ==
                          2 &&
                      put == 1000 && errors == 0,
                  "%s: summary \"%s\"", r.cmd, r.out);
    ck_assert_int_eq(bb_count_lines(r.out), 1);
    /* stderr is a pipe: no progress bar, no terminal codes. */
    ck_assert_msg(strchr(r.err, '\r') == NULL && strchr(r.err, '\033') == NULL,
                  "%s: stderr holds a progress bar: \"%s\"", r.cmd, r.err);
    ck_assert_msg(strchr(r.out, '\r') == NULL && strchr(r.out, '\033') == NULL,
                  "%s: stdout holds terminal codes: \"%s\"", r.cmd, r.out);
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "stuck", "put"), 1000);
    ck_assert_int_eq(stat_int(d, "stuck", "unfinished"), 1000);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_file_with_json_prints_the_summary_as_json)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char path[128];
    struct bb_run r;
    json_t *v;

    snprintf(path, sizeof path, "%s/jobs.ndjson", bb_dir(d));
    write_ndjson(path, "stuck", 1000);
    asyncq(&r, d, "--json", "put", "-f", path, NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_int_eq(bb_int_at(v, "put"), 1000);
    ck_assert_int_eq(bb_int_at(v, "errors"), 0);
    ck_assert_double_ge(bb_num_at(v, "seconds"), 0);
    json_decref(v);
    ck_assert_msg(strchr(r.err, '\r') == NULL && strchr(r.err, '\033') == NULL,
                  "%s: stderr holds a progress bar: \"%s\"", r.cmd, r.err);
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "stuck", "put"), 1000);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_file_with_a_malformed_line_exits_2_naming_its_number)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char path[128], where[160];
    struct bb_run r;

    snprintf(path, sizeof path, "%s/bad.ndjson", bb_dir(d));
    write_file(path, "{\"queue\":\"stuck\",\"kind\":\"echo\",\"args\":{}}\n"
                     "\n"
                     "{\"queue\":\"stuck\",\"kind\":\"echo\",\"args\":{}}\n"
                     "{not json\n"
                     "{\"queue\":\"stuck\",\"kind\":\"echo\",\"args\":{}}\n");
    asyncq(&r, d, "put", "-f", path, NULL);
    assert_exit(&r, 2);
    snprintf(where, sizeof where, "%s:4", path);
    assert_has(&r, r.err, where);
    bb_run_free(&r);

    /* A file that does not exist is a usage error too, naming it. */
    snprintf(path, sizeof path, "%s/missing.ndjson", bb_dir(d));
    asyncq(&r, d, "put", "-f", path, NULL);
    assert_exit(&r, 2);
    assert_has(&r, r.err, path);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(put_file_with_a_refused_line_exits_4_and_counts_the_error)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    char path[128];
    struct bb_run r;
    json_t *v;

    snprintf(path, sizeof path, "%s/mixed.ndjson", bb_dir(d));
    write_file(path, "{\"queue\":\"stuck\",\"kind\":\"echo\",\"args\":{}}\n"
                     "{\"queue\":\"no-such-queue\",\"args\":{}}\n"
                     "{\"queue\":\"stuck\",\"kind\":\"echo\",\"args\":{}}\n");
    asyncq(&r, d, "--json", "put", "-f", path, NULL);
    assert_exit(&r, 4);
    v = out_json(&r);
    ck_assert_int_eq(bb_int_at(v, "put"), 2);
    ck_assert_int_eq(bb_int_at(v, "errors"), 1);
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(stat_int(d, "stuck", "put"), 2);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- status ---- */

START_TEST(status_prints_the_record_and_json_prints_it_raw)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id = put_job(c, "{'queue':'stuck','args':{'x':1}}");
    char ids[32];
    json_t *v, *rec;
    struct bb_run r;

    snprintf(ids, sizeof ids, "%lld", (long long)id);
    asyncq(&r, d, "status", ids, NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "pending");
    assert_has(&r, r.out, "stuck");
    bb_run_free(&r);

    asyncq(&r, d, "--json", "status", ids, NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    rec = bb_job_status(c, id);
    assert_json_eq(&r, v, rec);
    json_decref(v);
    bb_run_free(&r);

    /* Global options may follow the verb too. */
    asyncq(&r, d, "status", ids, "--json", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_int_eq(bb_int_at(v, "job"), id);
    json_decref(v);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* An echo job's result holds its args exactly, integers beyond 64 bits
 * too: the CLI reads such a record (as the nearest double). */
START_TEST(status_of_a_record_with_a_huge_integer_is_read)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    char ids[32], *text;
    struct bb_run run;

    bb_send_line(c, "{\"id\":\"h\",\"method\":\"put\",\"params\":{\"queue\":"
                    "\"e\",\"args\":{\"n\":123456789012345678901234567890},"
                    "\"wait\":true}}");
    text = bb_recv_text(c, BB_TIMEOUT_MS);
    ck_assert_ptr_nonnull(strstr(text, "123456789012345678901234567890"));
    free(text);
    bb_close(c);
    snprintf(ids, sizeof ids, "%d", 1);
    asyncq(&run, d, "status", ids, NULL);
    assert_exit(&run, 0);
    assert_has(&run, run.out, "done");
    bb_run_free(&run);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_a_failed_job_exits_1)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id = put_job(c, "{'args':{'argv':['/bin/false']}}");
    char ids[32];
    struct bb_run r;
    json_t *v;

    bb_await_state(c, id, "failed", 10000);
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    asyncq(&r, d, "status", ids, NULL);
    assert_exit(&r, 1);
    assert_has(&r, r.out, "failed");
    bb_run_free(&r);

    asyncq(&r, d, "--json", "status", ids, NULL);
    assert_exit(&r, 1);
    v = out_json(&r);
    ck_assert_str_eq(bb_str_at(v, "state"), "failed");
    json_decref(v);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(status_of_an_unknown_job_exits_4_with_32004)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "status", "999999", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32004");
    ck_assert_str_eq(r.out, "");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- wait ---- */

START_TEST(wait_exits_0_once_every_job_is_done)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_job(c, "{'queue':'s','args':{'seconds':0.1}}");
    json_int_t b = put_job(c, "{'queue':'e','args':{'v':2}}");
    char as[32], bs[32], line[64];
    struct bb_run r;
    json_t *v;

    snprintf(as, sizeof as, "%lld", (long long)a);
    snprintf(bs, sizeof bs, "%lld", (long long)b);
    asyncq(&r, d, "wait", as, bs, NULL);
    assert_exit(&r, 0);
    snprintf(line, sizeof line, "job %s: done", as);
    assert_has(&r, r.out, line);
    snprintf(line, sizeof line, "job %s: done", bs);
    assert_has(&r, r.out, line);
    bb_run_free(&r);

    /* --json: the records, in the order given. */
    asyncq(&r, d, "--json", "wait", bs, as, NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_msg(json_is_array(v) && json_array_size(v) == 2,
                  "%s: stdout \"%s\"", r.cmd, r.out);
    ck_assert_int_eq(bb_int_at(json_array_get(v, 0), "job"), b);
    ck_assert_int_eq(bb_int_at(json_array_get(v, 1), "job"), a);
    ck_assert_str_eq(bb_str_at(json_array_get(v, 0), "state"), "done");
    assert_json_eq(&r, bb_at(json_array_get(v, 0), "result"),
                   bb_jsonq("{'v':2}"));
    json_decref(v);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_exits_1_if_one_job_failed)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_job(c, "{'queue':'e','args':{}}");
    json_int_t f = put_job(c, "{'args':{'argv':['/bin/false']}}");
    char as[32], fs[32];
    struct bb_run r;

    snprintf(as, sizeof as, "%lld", (long long)a);
    snprintf(fs, sizeof fs, "%lld", (long long)f);
    asyncq(&r, d, "wait", as, fs, NULL);
    assert_exit(&r, 1);
    assert_has(&r, r.out, "failed");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_any_returns_the_first_finished_job)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p = put_job(c, "{'queue':'stuck','args':{}}");
    json_int_t a = put_job(c, "{'queue':'e','args':{}}");
    char ps[32], as[32];
    struct bb_run r;
    json_t *v;

    snprintf(ps, sizeof ps, "%lld", (long long)p);
    snprintf(as, sizeof as, "%lld", (long long)a);
    asyncq(&r, d, "--json", "wait", "--any", ps, as, NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert_msg(json_is_array(v) && json_array_size(v) == 1,
                  "%s: stdout \"%s\"", r.cmd, r.out);
    ck_assert_int_eq(bb_int_at(json_array_get(v, 0), "job"), a);
    ck_assert_str_eq(bb_str_at(json_array_get(v, 0), "state"), "done");
    json_decref(v);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(wait_timeout_with_an_unfinished_job_exits_3_with_32008)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p = put_job(c, "{'queue':'stuck','args':{}}");
    char ps[32];
    struct bb_run r;
    json_t *rec;

    snprintf(ps, sizeof ps, "%lld", (long long)p);
    asyncq(&r, d, "wait", ps, "--timeout", "0.2", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);
    rec = bb_job_status(c, p);
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    json_decref(rec);

    /* --cancel-on-timeout cancels what is still unfinished. */
    asyncq(&r, d, "wait", ps, "--timeout", "0.2", "--cancel-on-timeout", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);
    bb_await_state(c, p, "cancelled", 5000);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- cancel ---- */

START_TEST(cancel_of_a_pending_job_cancels_it_and_exits_0)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p = put_job(c, "{'queue':'stuck','args':{}}");
    json_int_t q = put_job(c, "{'queue':'stuck','args':{}}");
    char ps[32], qs[32], want[64];
    struct bb_run r;
    json_t *v;

    snprintf(ps, sizeof ps, "%lld", (long long)p);
    snprintf(qs, sizeof qs, "%lld", (long long)q);
    asyncq(&r, d, "cancel", ps, NULL);
    assert_exit(&r, 0);
    snprintf(want, sizeof want, "job %s cancelled\n", ps);
    ck_assert_str_eq(r.out, want);
    bb_run_free(&r);
    v = bb_job_status(c, p);
    ck_assert_str_eq(bb_str_at(v, "state"), "cancelled");
    json_decref(v);

    asyncq(&r, d, "--json", "cancel", qs, NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    assert_json_eq(&r, v,
                   bb_jsonq("{'job':%lld,'state':'cancelled'}", (long long)q));
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "stuck", "cancelled"), 2);
    ck_assert_int_eq(bb_stat_int(c, "stuck", "unfinished"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cancel_of_a_done_job_exits_4_with_32009)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t a = put_job(c, "{'queue':'e','args':{}}");
    char as[32];
    struct bb_run r;

    bb_await_state(c, a, "done", 10000);
    snprintf(as, sizeof as, "%lld", (long long)a);
    asyncq(&r, d, "cancel", as, NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32009");
    bb_run_free(&r);

    asyncq(&r, d, "cancel", "999999", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32004");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- join ---- */

START_TEST(join_returns_once_every_job_of_the_queue_has_finished)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;
    json_t *v;

    for (int i = 0; i < 3; i++)
        put_job(c, "{'queue':'s','args':{'seconds':0.1}}");
    asyncq(&r, d, "join", "s", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "every job has finished");
    ck_assert_msg(strchr(r.err, '\r') == NULL && strchr(r.err, '\033') == NULL,
                  "%s: stderr holds a progress bar: \"%s\"", r.cmd, r.err);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "s", "unfinished"), 0);
    ck_assert_int_eq(bb_stat_int(c, "s", "done"), 3);

    put_job(c, "{'queue':'s','args':{'seconds':0.1}}");
    asyncq(&r, d, "--json", "join", "s", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    assert_json_eq(&r, v, bb_jsonq("{'queue':'s'}"));
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "s", "done"), 4);

    /* Without a queue: all of them (none is stuck here). */
    put_job(c, "{'queue':'e','args':{}}");
    put_job(c, "{'queue':'s','args':{'seconds':0.1}}");
    asyncq(&r, d, "join", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "all queues");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "s", "unfinished"), 0);
    ck_assert_int_eq(bb_stat_int(c, "e", "unfinished"), 0);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_timeout_on_a_queue_without_consumers_exits_3)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;

    put_job(c, "{'queue':'stuck','args':{}}");
    asyncq(&r, d, "join", "stuck", "--timeout", "0.2", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);

    asyncq(&r, d, "join", "--timeout", "0.2", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, "-32008");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(join_of_an_unknown_queue_exits_4_with_32002)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_run r;

    asyncq(&r, d, "join", "no-such-queue", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32002");
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- stats ---- */

static const char *const queue_names[] = {"default", "held",  "e",
                                          "s",       "stuck", "tiny"};

/* Fails the test unless q has the spec's per-queue fields. */
static void
assert_queue_stats(const struct bb_run *r, const char *name, const json_t *q)
{
    static const char *const ints[] = {
        "size", "delayed", "running", "unfinished", "maxsize",   "consumers",
        "busy", "put",     "done",    "failed",     "cancelled", "retried"};
    char *text = bb_dump(q);

    ck_assert_msg(json_is_object(q), "%s: queue %s: %s", r->cmd, name, text);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ck_assert_msg(json_is_integer(json_object_get(q, ints[i])),
                      "%s: queues.%s.%s is not an integer: %s", r->cmd, name,
                      ints[i], text);
    ck_assert_msg(json_is_boolean(json_object_get(q, "paused")),
                  "%s: queues.%s.paused is not a boolean: %s", r->cmd, name,
                  text);
    free(text);
}

START_TEST(stats_prints_a_table_naming_every_queue)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    char prefix[32];
    struct bb_run r;

    put_job(c, "{'queue':'stuck','args':{}}");
    asyncq(&r, d, "stats", NULL);
    assert_exit(&r, 0);
    assert_has(&r, r.out, "QUEUE");
    for (size_t i = 0; i < sizeof queue_names / sizeof queue_names[0]; i++) {
        snprintf(prefix, sizeof prefix, "%s ", queue_names[i]);
        ck_assert_msg(has_line_starting(r.out, prefix),
                      "%s: no line for queue %s: \"%s\"", r.cmd, queue_names[i],
                      r.out);
    }
    ck_assert_msg(strchr(r.out, '\033') == NULL,
                  "%s: terminal codes on a pipe: \"%s\"", r.cmd, r.out);
    bb_run_free(&r);

    /* One queue: its line only. */
    asyncq(&r, d, "stats", "stuck", NULL);
    assert_exit(&r, 0);
    ck_assert_msg(has_line_starting(r.out, "stuck "), "%s: \"%s\"", r.cmd,
                  r.out);
    ck_assert_msg(!has_line_starting(r.out, "default "), "%s: \"%s\"", r.cmd,
                  r.out);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(stats_json_has_the_spec_fields_for_every_queue)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;
    json_t *v, *queues;

    put_job(c, "{'queue':'stuck','args':{}}");
    put_job(c, "{'queue':'stuck','args':{}}");
    asyncq(&r, d, "--json", "stats", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    ck_assert(json_is_number(bb_at(v, "uptime")));
    ck_assert(json_is_string(bb_at(v, "version")));
    ck_assert(json_is_integer(bb_at(v, "connections")));
    queues = bb_at(v, "queues");
    ck_assert(json_is_object(queues));
    ck_assert_int_eq(json_object_size(queues),
                     sizeof queue_names / sizeof queue_names[0]);
    for (size_t i = 0; i < sizeof queue_names / sizeof queue_names[0]; i++)
        assert_queue_stats(&r, queue_names[i],
                           json_object_get(queues, queue_names[i]));
    ck_assert_int_eq(bb_int_at(v, "queues.stuck.put"), 2);
    ck_assert_int_eq(bb_int_at(v, "queues.stuck.size"), 2);
    ck_assert_int_eq(bb_int_at(v, "queues.tiny.maxsize"), 1);
    ck_assert_int_eq(bb_int_at(v, "queues.default.consumers"), 2);
    json_decref(v);
    bb_run_free(&r);

    asyncq(&r, d, "--json", "stats", "stuck", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    queues = bb_at(v, "queues");
    ck_assert_msg(json_is_object(queues) && json_object_size(queues) == 1,
                  "%s: \"%s\"", r.cmd, r.out);
    assert_queue_stats(&r, "stuck", json_object_get(queues, "stuck"));
    ck_assert_int_eq(bb_int_at(v, "queues.stuck.put"), 2);
    json_decref(v);
    bb_run_free(&r);

    asyncq(&r, d, "stats", "no-such-queue", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32002");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(stats_watch_json_prints_a_line_per_interval_until_sigint)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct run_opts o = {.sigint_at_lines = 3};
    struct bb_run r;
    char *line, *save = NULL;
    size_t n = 0;

    asyncq_with(&r, &o, d, "stats", "--watch", "--json", "--interval", "0.1",
                NULL);
    assert_exit(&r, 0);
    ck_assert_msg(bb_count_lines(r.out) >= 2, "%s: stdout \"%s\"", r.cmd,
                  r.out);
    for (line = strtok_r(r.out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), n++) {
        json_error_t jerr;
        json_t *v = json_loads(line, 0, &jerr);

        ck_assert_msg(v != NULL, "%s: line %zu is not JSON: %s", r.cmd, n + 1,
                      line);
        ck_assert(json_is_object(bb_at(v, "queues")));
        ck_assert(json_is_number(bb_at(v, "uptime")));
        json_decref(v);
    }
    ck_assert_uint_ge(n, 2);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- scale, pause, resume ---- */

START_TEST(scale_sets_the_consumer_count_seen_in_stats)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t p = put_job(c, "{'queue':'stuck','args':{}}");
    struct bb_run r;
    json_t *v;

    asyncq(&r, d, "scale", "e", "3", NULL);
    assert_exit(&r, 0);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "e", "consumers"), 3);

    asyncq(&r, d, "--json", "scale", "e", "0", NULL);
    assert_exit(&r, 0);
    v = out_json(&r);
    assert_json_eq(&r, v, bb_jsonq("{'queue':'e','consumers':0}"));
    json_decref(v);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stat_int(c, "e", "consumers"), 0);

    /* Scaling up a queue without consumers runs its pending job. */
    asyncq(&r, d, "scale", "stuck", "1", NULL);
    assert_exit(&r, 0);
    bb_run_free(&r);
    bb_await_state(c, p, "done", 10000);

    asyncq(&r, d, "scale", "no-such-queue", "1", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32002");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(pause_stops_a_queue_and_resume_restarts_it)
{
    struct bb_daemon *d = bb_startq(CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_int_t id;
    struct bb_run r;
    json_t *st;

    asyncq(&r, d, "pause", "e", NULL);
    assert_exit(&r, 0);
    bb_run_free(&r);
    st = bb_result(c, "stats", bb_jsonq("{'queue':'e'}"));
    ck_assert(json_is_true(bb_at(st, "queues.e.paused")));
    json_decref(st);

    id = put_job(c, "{'queue':'e','args':{}}");
    /* A paused queue holds its job: a wait for it times out. */
    {
        char ids[32];

        snprintf(ids, sizeof ids, "%lld", (long long)id);
        asyncq(&r, d, "wait", ids, "--timeout", "0.3", NULL);
        assert_exit(&r, 3);
        bb_run_free(&r);
    }
    st = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(st, "state"), "pending");
    json_decref(st);

    asyncq(&r, d, "resume", "e", NULL);
    assert_exit(&r, 0);
    bb_run_free(&r);
    st = bb_result(c, "stats", bb_jsonq("{'queue':'e'}"));
    ck_assert(json_is_false(bb_at(st, "queues.e.paused")));
    json_decref(st);
    bb_await_state(c, id, "done", 10000);

    asyncq(&r, d, "pause", "no-such-queue", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32002");
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- auth ---- */

START_TEST(auth_token_comes_from_asyncq_token_or_token_file)
{
    char token_file[64], wrong_file[64];
    struct bb_daemon *d;
    struct run_opts good = {.env = {"ASYNCQ_TOKEN=" TOKEN, NULL}};
    struct run_opts bad = {.env = {"ASYNCQ_TOKEN=wrong", NULL}};
    struct bb_run r;
    int fd;

    snprintf(token_file, sizeof token_file, "/tmp/asyncq-cli-token.XXXXXX");
    ck_assert_int_ge(fd = mkstemp(token_file), 0);
    ck_assert_int_eq(write(fd, TOKEN "\n", strlen(TOKEN) + 1),
                     (int)strlen(TOKEN) + 1);
    close(fd);
    snprintf(wrong_file, sizeof wrong_file, "/tmp/asyncq-cli-token.XXXXXX");
    ck_assert_int_ge(fd = mkstemp(wrong_file), 0);
    ck_assert_int_eq(write(fd, "nope\n", 5), 5);
    close(fd);
    d = bb_startq("{'auth':{'token_file':'%s'},'queues':{'e':{'kind':"
                  "'echo','consumers':1}}}",
                  token_file);

    asyncq(&r, d, "ping", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32001");
    bb_run_free(&r);

    asyncq_with(&r, &bad, d, "ping", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32001");
    bb_run_free(&r);

    asyncq(&r, d, "--token-file", wrong_file, "ping", NULL);
    assert_exit(&r, 4);
    assert_has(&r, r.err, "-32001");
    bb_run_free(&r);

    asyncq_with(&r, &good, d, "ping", NULL);
    assert_exit(&r, 0);
    ck_assert_msg(strncmp(r.out, "pong", 4) == 0, "%s: \"%s\"", r.cmd, r.out);
    bb_run_free(&r);

    asyncq_with(&r, &good, d, "put", "-q", "e", "-k", "echo", "--args",
                "{\"a\":1}", "--wait", "--json", NULL);
    assert_exit(&r, 0);
    {
        json_t *rec = out_json(&r);

        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        json_decref(rec);
    }
    bb_run_free(&r);

    asyncq(&r, d, "--token-file", token_file, "ping", NULL);
    assert_exit(&r, 0);
    ck_assert_msg(strncmp(r.out, "pong", 4) == 0, "%s: \"%s\"", r.cmd, r.out);
    bb_run_free(&r);

    asyncq(&r, d, "--token-file", token_file, "--json", "stats", NULL);
    assert_exit(&r, 0);
    {
        json_t *st = out_json(&r);

        ck_assert_int_eq(bb_int_at(st, "queues.e.put"), 1);
        json_decref(st);
    }
    bb_run_free(&r);

    /* A token file that cannot be read: the CLI says which. */
    unlink(wrong_file);
    asyncq(&r, d, "--token-file", wrong_file, "ping", NULL);
    assert_exit(&r, 3);
    assert_has(&r, r.err, wrong_file);
    bb_run_free(&r);
    unlink(token_file);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- asyncq-bench, the load generator ---- */

#ifndef ASYNCQ_BENCH_PATH
#error "ASYNCQ_BENCH_PATH must name the asyncq-bench binary"
#endif

/* asyncq-bench -s 127.0.0.1:<d's port> ARGS... */
static void bench(struct bb_run *r, const struct bb_daemon *d, ...)
    __attribute__((sentinel));

static void
bench(struct bb_run *r, const struct bb_daemon *d, ...)
{
    static const struct run_opts none;
    const char *argv[MAX_ARGS];
    char addr[64];
    const char *a;
    va_list ap;
    int n = 0;

    snprintf(addr, sizeof addr, "127.0.0.1:%d", bb_port(d));
    argv[n++] = ASYNCQ_BENCH_PATH;
    argv[n++] = "-s";
    argv[n++] = addr;
    va_start(ap, d);
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, MAX_ARGS - 1);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    cli_run_argv(r, &none, argv);
}

START_TEST(bench_end_to_end_reports_rates_and_latencies_as_json)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':2}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;
    json_t *out, *st;

    bench(&r, d, "-n", "2000", "-c", "2", "-P", "16", "--sample-done", "10",
          "--json", NULL);
    ck_assert_msg(r.status == 0, "%s: %d: %s", r.cmd, r.status, r.err);
    out = json_loads(r.out, 0, NULL);
    ck_assert_msg(out != NULL, "not JSON: %s", r.out);
    ck_assert_int_eq(bb_int_at(out, "jobs"), 2000);
    ck_assert_int_eq(bb_int_at(out, "errors"), 0);
    ck_assert(json_number_value(bb_at(out, "ingest_jobs_per_s")) > 0);
    ck_assert(json_number_value(bb_at(out, "e2e_jobs_per_s")) > 0);
    ck_assert(json_number_value(bb_at(out, "ack_us.p50")) > 0);
    /* Every 10th put waited for its job: put -> done was measured. */
    ck_assert(json_number_value(bb_at(out, "done_us.p50")) > 0);
    /* The daemon is local: its RSS was read through stats' pid. */
    ck_assert_int_gt(bb_int_at(out, "rss_kb_after"), 0);
    st = bb_result(c, "stats", bb_jsonq("{'queue':'default'}"));
    ck_assert_int_eq(bb_int_at(st, "queues.default.done"), 2000);
    json_decref(st);
    json_decref(out);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Ingest only: no consumer will ever finish a job, so a put waiting for
 * its job would hold a window slot for ever (this hung bench/durable). */
START_TEST(bench_no_join_on_a_queue_without_consumers_ends)
{
    struct bb_daemon *d =
        bb_startq("{'queues':{'default':{'kind':'echo','consumers':0,"
                  "'maxsize':0}}}");
    struct bb_conn *c = bb_connect(d);
    struct bb_run r;
    json_t *st;

    bench(&r, d, "-n", "5000", "-c", "2", "-P", "8", "--no-join", NULL);
    ck_assert_msg(r.status == 0, "%s: %d: %s", r.cmd, r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "ingest:"));
    st = bb_result(c, "stats", bb_jsonq("{'queue':'default'}"));
    ck_assert_int_eq(bb_int_at(st, "queues.default.put"), 5000);
    ck_assert_int_eq(bb_int_at(st, "queues.default.size"), 5000);
    json_decref(st);
    bb_run_free(&r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(bench_bad_args_exit_2_naming_the_problem)
{
    struct bb_daemon *d = bb_startq("{}");
    struct bb_run r;

    bench(&r, d, "-a", "[1,2]", "-n", "10", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "--args") != NULL, "%s", r.err);
    bb_run_free(&r);
    bench(&r, d, "--sample-done", "-1", NULL);
    ck_assert_int_eq(r.status, 2);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_cli_suite(void)
{
    Suite *s = suite_create("bb_cli");
    TCase *basic = tcase_create("basic");
    TCase *put = tcase_create("put");
    TCase *jobs = tcase_create("jobs");
    TCase *queues = tcase_create("queues");
    TCase *auth = tcase_create("auth");
    TCase *benchc = tcase_create("bench");

    tcase_set_timeout(basic, 60);
    tcase_add_test(basic, ping_prints_pong_and_exits_0);
    tcase_add_test(basic, server_comes_from_asyncq_server_when_no_server_flag);
    tcase_add_test(basic, unreachable_server_exits_3_naming_the_address);
    tcase_add_test(basic, help_exits_0_and_lists_every_verb);
    tcase_add_test(basic,
                   version_prints_asyncq_and_the_version_the_daemon_reports);
    tcase_add_test(basic, usage_errors_exit_2_without_touching_the_server);
    suite_add_tcase(s, basic);

    tcase_set_timeout(put, 120);
    tcase_add_test(put, put_of_a_command_prints_the_job_id_and_state);
    tcase_add_test(put,
                   put_with_queue_and_priority_options_sets_them_on_the_job);
    tcase_add_test(put, put_with_delay_makes_the_job_delayed);
    tcase_add_test(put, put_with_timeout_fails_a_job_that_runs_past_it);
    tcase_add_test(put, put_with_retries_runs_a_failing_job_again);
    tcase_add_test(
        put, put_with_the_same_key_twice_returns_the_first_job_as_duplicate);
    tcase_add_test(put, put_nowait_on_a_full_queue_exits_4_with_32000);
    tcase_add_test(put, put_kind_echo_with_args_json_runs_an_echo_job);
    tcase_add_test(put, put_wait_of_an_exec_job_prints_its_stdout_and_exits_0);
    tcase_add_test(put,
                   put_wait_of_an_exec_job_passes_its_stderr_and_exit_code);
    tcase_add_test(
        put, put_wait_of_an_exec_job_killed_by_a_signal_exits_128_plus_it);
    tcase_add_test(put, put_wait_of_a_failed_non_exec_job_exits_1);
    tcase_add_test(put, put_file_puts_every_line_and_prints_a_summary);
    tcase_add_test(put, put_file_with_json_prints_the_summary_as_json);
    tcase_add_test(put,
                   put_file_with_a_malformed_line_exits_2_naming_its_number);
    tcase_add_test(put,
                   put_file_with_a_refused_line_exits_4_and_counts_the_error);
    suite_add_tcase(s, put);

    tcase_set_timeout(jobs, 60);
    tcase_add_test(jobs, status_prints_the_record_and_json_prints_it_raw);
    tcase_add_test(jobs, status_of_a_record_with_a_huge_integer_is_read);
    tcase_add_test(jobs, status_of_a_failed_job_exits_1);
    tcase_add_test(jobs, status_of_an_unknown_job_exits_4_with_32004);
    tcase_add_test(jobs, wait_exits_0_once_every_job_is_done);
    tcase_add_test(jobs, wait_exits_1_if_one_job_failed);
    tcase_add_test(jobs, wait_any_returns_the_first_finished_job);
    tcase_add_test(jobs,
                   wait_timeout_with_an_unfinished_job_exits_3_with_32008);
    tcase_add_test(jobs, cancel_of_a_pending_job_cancels_it_and_exits_0);
    tcase_add_test(jobs, cancel_of_a_done_job_exits_4_with_32009);
    suite_add_tcase(s, jobs);

    tcase_set_timeout(queues, 60);
    tcase_add_test(queues,
                   join_returns_once_every_job_of_the_queue_has_finished);
    tcase_add_test(queues, join_timeout_on_a_queue_without_consumers_exits_3);
    tcase_add_test(queues, join_of_an_unknown_queue_exits_4_with_32002);
    tcase_add_test(queues, stats_prints_a_table_naming_every_queue);
    tcase_add_test(queues, stats_json_has_the_spec_fields_for_every_queue);
    tcase_add_test(queues,
                   stats_watch_json_prints_a_line_per_interval_until_sigint);
    tcase_add_test(queues, scale_sets_the_consumer_count_seen_in_stats);
    tcase_add_test(queues, pause_stops_a_queue_and_resume_restarts_it);
    suite_add_tcase(s, queues);

    tcase_set_timeout(auth, 60);
    tcase_add_test(auth, auth_token_comes_from_asyncq_token_or_token_file);
    suite_add_tcase(s, auth);

    tcase_set_timeout(benchc, 60);
    tcase_add_test(benchc,
                   bench_end_to_end_reports_rates_and_latencies_as_json);
    tcase_add_test(benchc, bench_no_join_on_a_queue_without_consumers_ends);
    tcase_add_test(benchc, bench_bad_args_exit_2_naming_the_problem);
    suite_add_tcase(s, benchc);
    return s;
}
