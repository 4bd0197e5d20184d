/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq.c: the asyncq command-line client (spec section 8), on the
 * client API of lib/client.h. Human-readable output by default, --json for
 * scripts. Exit status: 0 success, 1 a job failed (or was cancelled), 2
 * usage error, 3 cannot reach the server or the server answered an error.
 * Verbs are a {name, function} table; each parses its own arguments.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "error.h"

#define EXIT_JOB_FAILED 1
#define EXIT_USAGE 2
#define EXIT_SERVER 3
#define CALL_TIMEOUT_MS 10000
#define BULK_WINDOW 256

struct cli {
    const char *server;
    const char *token_file;
    bool json;
    struct aq_client *client; /* owned */
    int argc;                 /* the verb's arguments */
    char **argv;
};

typedef int verb_fn(struct cli *cli);

static volatile sig_atomic_t interrupted;

/* ---- output ---- */

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("asyncq: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(asyncq --help lists the verbs and their options)\n", stderr);
    return EXIT_USAGE;
}

static int
server_error(const struct aq_error *err)
{
    if (aq_client_is_server_error(err))
        fprintf(stderr, "asyncq: error %d: %s\n", err->code, err->message);
    else
        fprintf(stderr, "asyncq: %s\n", err->message);
    return EXIT_SERVER;
}

static void
print_json(const json_t *v)
{
    char *s =
        json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));

    puts(s != NULL ? s : "null");
    free(s);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A one-line progress bar on stderr, redrawn in place (terminals only). */
static void
progress(const char *what, double done, double total, double rate)
{
    int width = 30, filled;
    double frac = total > 0 ? done / total : 0;
    char eta[32] = "";

    if (frac > 1)
        frac = 1;
    filled = (int)(frac * width);
    if (rate > 0 && total > done)
        snprintf(eta, sizeof eta, " ETA %.0fs", (total - done) / rate);
    fprintf(stderr, "\r[%.*s%*s] %3.0f%% %.0f/%.0f %s, %.0f/s%s\033[K", filled,
            "==============================", width - filled, "", frac * 100,
            done, total, what, rate, eta);
    fflush(stderr);
}

static void
progress_end(void)
{
    fputs("\r\033[K", stderr);
    fflush(stderr);
}

/* ---- argument helpers ---- */

static int
parse_id(const char *s, json_int_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < 1)
        return -1;
    *out = v;
    return 0;
}

static int
parse_number(const char *s, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return errno != 0 || *s == '\0' || *end != '\0' || !isfinite(*out) ||
                   *out < 0
               ? -1
               : 0;
}

/* ---- connection ---- */

static int
connect_cli(struct cli *cli)
{
    struct aq_error err;

    cli->client = aq_client_connect(cli->server, CALL_TIMEOUT_MS, &err);
    if (cli->client == NULL)
        return server_error(&err);
    if (aq_client_auth(cli->client, cli->token_file, &err) < 0)
        return server_error(&err);
    return 0;
}

/* Calls method; with wait_long, without the client's timeout (the server
 * bounds the wait). Returns the result or NULL (error printed, *rc set). */
static json_t *
call(struct cli *cli, const char *method, json_t *params, bool wait_long,
     int *rc)
{
    struct aq_error err;
    json_t *r;

    aq_client_set_timeout(cli->client, wait_long ? -1 : CALL_TIMEOUT_MS);
    r = aq_client_call(cli->client, method, params, NULL, NULL, &err);
    if (r == NULL)
        *rc = server_error(&err);
    return r;
}

/* ---- job records ---- */

static const char *
str_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

static bool
job_succeeded(const json_t *rec)
{
    return strcmp(str_of(rec, "state"), "done") == 0;
}

static void
print_time(const char *label, const json_t *rec, const char *key)
{
    const json_t *t = json_object_get(rec, key);
    time_t secs;
    struct tm tm;
    char buf[64];

    if (!json_is_number(t))
        return;
    secs = (time_t)json_number_value(t);
    localtime_r(&secs, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("  %-9s %s.%03d\n", label, buf,
           (int)(fmod(json_number_value(t), 1) * 1000));
}

static void
print_record(const json_t *rec)
{
    const json_t *res = json_object_get(rec, "result"),
                 *e = json_object_get(rec, "error");

    printf("job %" JSON_INTEGER_FORMAT " (%s) on %s: %s\n",
           json_integer_value(json_object_get(rec, "job")), str_of(rec, "kind"),
           str_of(rec, "queue"), str_of(rec, "state"));
    printf("  attempts  %" JSON_INTEGER_FORMAT
           ", priority %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(rec, "attempts")),
           json_integer_value(json_object_get(rec, "priority")));
    if (json_object_get(rec, "key") != NULL)
        printf("  key       %s\n", str_of(rec, "key"));
    print_time("created", rec, "created");
    print_time("started", rec, "started");
    print_time("finished", rec, "finished");
    if (e != NULL)
        printf("  error     %s: %s\n", str_of(e, "code"), str_of(e, "message"));
    if (res != NULL) {
        char *s = json_dumps(res, JSON_INDENT(2) | JSON_ENCODE_ANY |
                                      JSON_REAL_PRECISION(16));

        printf("  result    %s\n", s != NULL ? s : "");
        free(s);
    }
}

/* ---- verbs ---- */

static int
v_ping(struct cli *cli)
{
    double t0 = now_s();
    int rc = 0;
    json_t *r;

    if (cli->argc != 0)
        return usage_error("ping takes no argument");
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, "ping", NULL, false, &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else
        printf("%s from %s in %.1f ms\n", json_string_value(r),
               aq_client_server(cli->client), (now_s() - t0) * 1e3);
    json_decref(r);
    return 0;
}

/* put --wait: an exec job's stdout and stderr pass through, and its exit
 * status becomes ours; other kinds print the record. */
static int
put_waited(struct cli *cli, json_t *rec)
{
    const json_t *res = json_object_get(rec, "result");
    int rc = job_succeeded(rec) ? 0 : EXIT_JOB_FAILED;

    if (cli->json) {
        print_json(rec);
        return rc;
    }
    if (strcmp(str_of(rec, "kind"), "exec") != 0 || !json_is_object(res)) {
        print_record(rec);
        return rc;
    }
    fwrite(json_string_value(json_object_get(res, "stdout")), 1,
           json_string_length(json_object_get(res, "stdout")), stdout);
    fwrite(json_string_value(json_object_get(res, "stderr")), 1,
           json_string_length(json_object_get(res, "stderr")), stderr);
    if (json_object_get(rec, "error") != NULL) {
        const json_t *e = json_object_get(rec, "error");

        fprintf(stderr, "asyncq: job %" JSON_INTEGER_FORMAT " %s: %s\n",
                json_integer_value(json_object_get(rec, "job")),
                str_of(rec, "state"), str_of(e, "message"));
    }
    if (json_integer_value(json_object_get(res, "signal")) > 0)
        return 128 + (int)json_integer_value(json_object_get(res, "signal"));
    if (json_is_integer(json_object_get(res, "exit_code")) &&
        json_integer_value(json_object_get(res, "exit_code")) > 0)
        return (int)json_integer_value(json_object_get(res, "exit_code"));
    return rc;
}

static int put_file(struct cli *cli, const char *path, const json_t *defaults);

static int
v_put(struct cli *cli)
{
    json_t *params = json_object(), *args = NULL, *r;
    const char *file = NULL;
    bool wait = false;
    int i, rc = 0;

    for (i = 0; i < cli->argc; i++) {
        const char *a = cli->argv[i],
                   *v = i + 1 < cli->argc ? cli->argv[i + 1] : NULL;
        double d;
        json_int_t n;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--wait") == 0) {
            wait = true;
            continue;
        }
        if (strcmp(a, "--nowait") == 0) {
            json_object_set_new(params, "nowait", json_true());
            continue;
        }
        if (a[0] != '-')
            break; /* the command, without "--" */
        if (v == NULL) {
            rc = usage_error("put: %s needs a value", a);
            goto out;
        }
        i++;
        if (strcmp(a, "-q") == 0 || strcmp(a, "--queue") == 0)
            json_object_set_new(params, "queue", json_string(v));
        else if (strcmp(a, "-k") == 0 || strcmp(a, "--kind") == 0)
            json_object_set_new(params, "kind", json_string(v));
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--priority") == 0) {
            char *end;
            long long p = strtoll(v, &end, 10);

            if (*v == '\0' || *end != '\0' || p < INT32_MIN || p > INT32_MAX) {
                rc = usage_error("put: %s: expected an integer priority", v);
                goto out;
            }
            json_object_set_new(params, "priority", json_integer(p));
        } else if (strcmp(a, "--delay") == 0 || strcmp(a, "--timeout") == 0) {
            if (parse_number(v, &d) < 0) {
                rc = usage_error("put: %s %s: expected seconds >= 0", a, v);
                goto out;
            }
            json_object_set_new(params, a + 2, json_real(d));
        } else if (strcmp(a, "--retries") == 0) {
            if (parse_id(v, &n) < 0 && strcmp(v, "0") != 0) {
                rc = usage_error("put: --retries %s: expected an integer >= 0",
                                 v);
                goto out;
            }
            json_object_set_new(params, "retries",
                                json_integer(strcmp(v, "0") == 0 ? 0 : n));
        } else if (strcmp(a, "--key") == 0)
            json_object_set_new(params, "key", json_string(v));
        else if (strcmp(a, "--args") == 0) {
            json_error_t jerr;

            json_decref(args);
            args = json_loads(v, 0, &jerr);
            if (!json_is_object(args)) {
                rc = usage_error("put: --args: expected a JSON object: %s",
                                 args == NULL ? jerr.text : "not an object");
                goto out;
            }
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0)
            file = v;
        else {
            rc = usage_error("put: unknown option %s", a);
            goto out;
        }
    }
    if (file != NULL) {
        if (i < cli->argc || args != NULL || wait) {
            rc = usage_error("put -f takes no command, --args or --wait");
            goto out;
        }
        rc = put_file(cli, file, params);
        goto out;
    }
    if (i < cli->argc) {
        /* An exec job: the command and its arguments. */
        json_t *argv = json_array();

        if (args != NULL) {
            json_decref(argv);
            rc = usage_error("put: give a command or --args, not both");
            goto out;
        }
        for (; i < cli->argc; i++)
            json_array_append_new(argv, json_string(cli->argv[i]));
        args = json_pack("{s:o}", "argv", argv);
        if (json_object_get(params, "kind") == NULL)
            json_object_set_new(params, "kind", json_string("exec"));
    } else if (args == NULL) {
        rc = usage_error("put: give a command after --, --args JSON or -f "
                         "FILE");
        goto out;
    }
    json_object_set_new(params, "args", args);
    args = NULL;
    if (wait)
        json_object_set_new(params, "wait", json_true());
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    /* A put to a full queue waits for room (back-pressure): no timeout. */
    r = call(cli, "put", params, true, &rc);
    params = NULL;
    if (r == NULL)
        goto out;
    if (wait)
        rc = put_waited(cli, r);
    else if (cli->json)
        print_json(r);
    else if (json_is_true(json_object_get(r, "duplicate")))
        printf("job %" JSON_INTEGER_FORMAT " (a duplicate: its key matched), "
               "%s\n",
               json_integer_value(json_object_get(r, "job")),
               str_of(r, "state"));
    else
        printf("job %" JSON_INTEGER_FORMAT " %s\n",
               json_integer_value(json_object_get(r, "job")),
               str_of(r, "state"));
    json_decref(r);
out:
    json_decref(params);
    json_decref(args);
    return rc;
}

/* put -f: one JSON object of put params per line, pipelined; the options
 * given with -f (-q, -p, --delay, ...) fill in what a line leaves out. */
static int
put_file(struct cli *cli, const char *path, const json_t *defaults)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    bool tty = isatty(STDERR_FILENO);
    long total = 0, sent = 0, acked = 0, errors = 0, lineno = 0;
    double t0, last_draw = 0;
    char *line = NULL;
    size_t cap = 0;
    struct aq_error err;
    int rc;

    if (f == NULL)
        return usage_error("put -f %s: %s", path, strerror(errno));
    /* Count the lines first (for the bar's total), unless a pipe. */
    if (f != stdin) {
        while (getline(&line, &cap, f) > 0)
            total++;
        rewind(f);
    }
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    aq_client_set_timeout(cli->client, 60000);
    t0 = now_s();
    for (;;) {
        /* Keep BULK_WINDOW puts in flight; read replies as they come. */
        while (sent - acked < BULK_WINDOW) {
            json_error_t jerr;
            json_t *params;
            ssize_t n = getline(&line, &cap, f);

            if (n <= 0)
                break;
            lineno++;
            if (strspn(line, " \t\r\n") == (size_t)n)
                continue;
            params = json_loads(line, 0, &jerr);
            if (!json_is_object(params)) {
                fprintf(stderr, "asyncq: %s:%ld: not a JSON object: %s\n", path,
                        lineno, params == NULL ? jerr.text : "");
                json_decref(params);
                rc = EXIT_USAGE;
                goto out;
            }
            json_object_update_missing(params, (json_t *)defaults);
            if (aq_client_send(cli->client, "put", params, &err) < 0) {
                rc = server_error(&err);
                goto out;
            }
            sent++;
        }
        if (acked == sent)
            break;
        int64_t id;
        json_t *msg = aq_client_recv(cli->client, &id, NULL, &err);

        if (msg == NULL) {
            rc = server_error(&err);
            goto out;
        }
        if (json_object_get(msg, "error") != NULL) {
            if (errors++ < 5)
                fprintf(stderr, "%sasyncq: put %" PRId64 ": %s\n",
                        tty ? "\r\033[K" : "", id,
                        str_of(json_object_get(msg, "error"), "message"));
        }
        json_decref(msg);
        acked++;
        if (tty && now_s() - last_draw > 0.1) {
            last_draw = now_s();
            progress("jobs", (double)acked, (double)(total > 0 ? total : sent),
                     (double)acked / (now_s() - t0));
        }
    }
    if (tty)
        progress_end();
    double secs = now_s() - t0;
    if (cli->json)
        printf("{\"put\":%ld,\"errors\":%ld,\"seconds\":%.3f}\n",
               acked - errors, errors, secs);
    else
        printf("%ld jobs put in %.2f s (%.0f jobs/s), %ld errors\n",
               acked - errors, secs, secs > 0 ? (double)acked / secs : 0,
               errors);
    rc = errors > 0 ? EXIT_SERVER : 0;
out:
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

static int
v_status(struct cli *cli)
{
    json_int_t id;
    json_t *r;
    int rc = 0;

    if (cli->argc != 1 || parse_id(cli->argv[0], &id) < 0)
        return usage_error("status takes one job id");
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, "status", json_pack("{s:I}", "job", id), false, &rc)) ==
        NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else
        print_record(r);
    rc = strcmp(str_of(r, "state"), "failed") == 0 ||
                 strcmp(str_of(r, "state"), "cancelled") == 0
             ? EXIT_JOB_FAILED
             : 0;
    json_decref(r);
    return rc;
}

static int
v_wait(struct cli *cli)
{
    json_t *ids = json_array(), *params = json_object(), *r, *rec;
    int rc = 0;
    size_t i;

    for (int k = 0; k < cli->argc; k++) {
        const char *a = cli->argv[k];
        json_int_t id;
        double t;

        if (strcmp(a, "--any") == 0)
            json_object_set_new(params, "mode", json_string("any"));
        else if (strcmp(a, "--timeout") == 0 && k + 1 < cli->argc &&
                 parse_number(cli->argv[k + 1], &t) == 0) {
            json_object_set_new(params, "timeout", json_real(t));
            k++;
        } else if (strcmp(a, "--cancel-on-timeout") == 0)
            json_object_set_new(params, "cancel_on_timeout", json_true());
        else if (parse_id(a, &id) == 0)
            json_array_append_new(ids, json_integer(id));
        else {
            json_decref(ids);
            json_decref(params);
            return usage_error("wait: %s: expected a job id or an option", a);
        }
    }
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        json_decref(params);
        return usage_error("wait takes one or more job ids");
    }
    json_object_set_new(params, "jobs", ids);
    if ((rc = connect_cli(cli)) != 0) {
        json_decref(params);
        return rc;
    }
    if ((r = call(cli, "wait", params, true, &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(r);
    json_array_foreach (r, i, rec) {
        if (!cli->json)
            printf("job %" JSON_INTEGER_FORMAT ": %s%s%s\n",
                   json_integer_value(json_object_get(rec, "job")),
                   str_of(rec, "state"),
                   json_object_get(rec, "error") != NULL ? ": " : "",
                   str_of(json_object_get(rec, "error"), "message"));
        if (!job_succeeded(rec))
            rc = EXIT_JOB_FAILED;
    }
    json_decref(r);
    return rc;
}

static int
v_cancel(struct cli *cli)
{
    json_int_t id;
    json_t *r;
    int rc;

    if (cli->argc != 1 || parse_id(cli->argv[0], &id) < 0)
        return usage_error("cancel takes one job id");
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, "cancel", json_pack("{s:I}", "job", id), true, &rc)) ==
        NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else
        printf("job %" JSON_INTEGER_FORMAT " %s\n", id, str_of(r, "state"));
    json_decref(r);
    return 0;
}

/* Sums a stats field over the queues in q (one queue or all). */
static double
stats_sum(const json_t *queues, const char *field)
{
    const char *name;
    json_t *q;
    double n = 0;

    json_object_foreach ((json_t *)queues, name, q)
        n += json_number_value(json_object_get(q, field));
    return n;
}

static int
v_join(struct cli *cli)
{
    const char *queue = NULL;
    json_t *params = json_object(), *r;
    bool tty = isatty(STDERR_FILENO);
    struct aq_client *watch = NULL;
    struct aq_error err;
    int64_t join_id;
    int rc;

    for (int k = 0; k < cli->argc; k++) {
        double t;

        if (strcmp(cli->argv[k], "--timeout") == 0 && k + 1 < cli->argc &&
            parse_number(cli->argv[k + 1], &t) == 0) {
            json_object_set_new(params, "timeout", json_real(t));
            k++;
        } else if (queue == NULL && cli->argv[k][0] != '-')
            queue = cli->argv[k];
        else {
            json_decref(params);
            return usage_error("join takes [QUEUE] [--timeout S]");
        }
    }
    if (queue != NULL)
        json_object_set_new(params, "queue", json_string(queue));
    if ((rc = connect_cli(cli)) != 0) {
        json_decref(params);
        return rc;
    }
    if ((join_id = aq_client_send(cli->client, "join", params, &err)) < 0)
        return server_error(&err);
    /* The bar: a second connection polls stats while join waits. */
    if (tty && !cli->json)
        watch = aq_client_connect(cli->server, CALL_TIMEOUT_MS, &err);
    if (watch != NULL && aq_client_auth(watch, cli->token_file, &err) < 0) {
        aq_client_free(watch);
        watch = NULL;
    }
    double t0 = now_s(), done0 = -1;
    for (;;) {
        int64_t id;
        json_t *msg;

        aq_client_set_timeout(cli->client, watch != NULL ? 500 : -1);
        msg = aq_client_recv(cli->client, &id, NULL, &err);
        if (msg != NULL && id == join_id) {
            json_t *e = json_object_get(msg, "error");

            if (watch != NULL)
                progress_end();
            if (e != NULL) {
                aq_error_set(
                    &err, (int)json_integer_value(json_object_get(e, "code")),
                    "%s", str_of(e, "message"));
                json_decref(msg);
                rc = server_error(&err);
                break;
            }
            r = json_object_get(msg, "result");
            if (cli->json)
                print_json(r);
            else
                printf("%s%s: every job has finished\n",
                       strcmp(str_of(r, "queue"), "*") == 0 ? "all queues"
                                                            : "queue ",
                       strcmp(str_of(r, "queue"), "*") == 0
                           ? ""
                           : str_of(r, "queue"));
            json_decref(msg);
            rc = 0;
            break;
        }
        json_decref(msg);
        if (msg == NULL && (watch == NULL || err.code != AQ_ERR_TRANSPORT ||
                            strstr(err.message, "no reply") == NULL)) {
            rc = server_error(&err);
            break;
        }
        json_t *st = aq_client_call(
            watch, "stats",
            queue != NULL ? json_pack("{s:s}", "queue", queue) : NULL, NULL,
            NULL, &err);
        if (st != NULL) {
            json_t *qs = json_object_get(st, "queues");
            double done = stats_sum(qs, "done") + stats_sum(qs, "failed") +
                          stats_sum(qs, "cancelled"),
                   left = stats_sum(qs, "unfinished");

            if (done0 < 0)
                done0 = done;
            progress("finished", done - done0, done - done0 + left,
                     (done - done0) / (now_s() - t0));
            json_decref(st);
        }
    }
    aq_client_free(watch);
    return rc;
}

static void
print_stats_table(const json_t *st)
{
    const json_t *queues = json_object_get(st, "queues");
    const char *name;
    json_t *q;

    printf("asyncqd %s, up %.0f s, %" JSON_INTEGER_FORMAT " connections\n",
           str_of(st, "version"),
           json_number_value(json_object_get(st, "uptime")),
           json_integer_value(json_object_get(st, "connections")));
    printf("%-16s %8s %8s %7s %10s %9s %6s %10s %10s %8s %9s %8s %9s %9s\n",
           "QUEUE", "READY", "DELAYED", "RUNNING", "UNFINISHED", "CONSUMERS",
           "PAUSED", "PUT", "DONE", "FAILED", "CANCELLED", "RETRIED",
           "WAIT_P50", "RUN_P50");
    json_object_foreach ((json_t *)queues, name, q) {
#define N(f) json_integer_value(json_object_get(q, f))
        printf("%-16s %8" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
               " %7" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT
               " %9" JSON_INTEGER_FORMAT " %6s %10" JSON_INTEGER_FORMAT
               " %10" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
               " %9" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
               " %8.3fs %8.3fs\n",
               name, N("size"), N("delayed"), N("running"), N("unfinished"),
               N("consumers"),
               json_is_true(json_object_get(q, "paused")) ? "yes" : "no",
               N("put"), N("done"), N("failed"), N("cancelled"), N("retried"),
               json_number_value(
                   json_object_get(json_object_get(q, "wait_time"), "p50")),
               json_number_value(
                   json_object_get(json_object_get(q, "run_time"), "p50")));
#undef N
    }
}

static void
on_sigint(int sig)
{
    interrupted = 1;
}

static int
v_stats(struct cli *cli)
{
    const char *queue = NULL;
    bool watch = false, tty = isatty(STDOUT_FILENO);
    double interval = 1;
    int rc;

    for (int k = 0; k < cli->argc; k++) {
        if (strcmp(cli->argv[k], "--watch") == 0)
            watch = true;
        else if (strcmp(cli->argv[k], "--interval") == 0 && k + 1 < cli->argc &&
                 parse_number(cli->argv[k + 1], &interval) == 0 && interval > 0)
            k++;
        else if (queue == NULL && cli->argv[k][0] != '-')
            queue = cli->argv[k];
        else
            return usage_error("stats takes [QUEUE] [--watch] [--interval S]");
    }
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    signal(SIGINT, on_sigint);
    do {
        json_t *st =
            call(cli, "stats",
                 queue != NULL ? json_pack("{s:s}", "queue", queue) : NULL,
                 false, &rc);

        if (st == NULL)
            return rc;
        if (cli->json)
            print_json(st);
        else {
            if (watch && tty)
                fputs("\033[H\033[2J", stdout); /* redraw in place */
            print_stats_table(st);
        }
        fflush(stdout);
        json_decref(st);
        if (watch && !interrupted) {
            struct timespec ts = {(time_t)interval,
                                  (long)(fmod(interval, 1) * 1e9)};

            nanosleep(&ts, NULL); /* the refresh period, not a sync */
        }
    } while (watch && !interrupted);
    return 0;
}

static int
v_scale(struct cli *cli)
{
    json_int_t n;
    json_t *r;
    int rc;

    if (cli->argc != 2 ||
        (parse_id(cli->argv[1], &n) < 0 && strcmp(cli->argv[1], "0") != 0))
        return usage_error("scale takes QUEUE N (N an integer >= 0)");
    if (strcmp(cli->argv[1], "0") == 0)
        n = 0;
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, "scale",
                  json_pack("{s:s,s:I}", "queue", cli->argv[0], "consumers", n),
                  false, &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else
        printf("queue %s: %" JSON_INTEGER_FORMAT " consumers\n", cli->argv[0],
               n);
    json_decref(r);
    return 0;
}

static int
pause_resume(struct cli *cli, const char *method)
{
    json_t *r;
    int rc;

    if (cli->argc != 1)
        return usage_error("%s takes QUEUE", method);
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, method, json_pack("{s:s}", "queue", cli->argv[0]), false,
                  &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else
        printf("queue %s %s\n", cli->argv[0],
               strcmp(method, "pause") == 0 ? "paused" : "resumed");
    json_decref(r);
    return 0;
}

static int
v_pause(struct cli *cli)
{
    return pause_resume(cli, "pause");
}

static int
v_resume(struct cli *cli)
{
    return pause_resume(cli, "resume");
}

static const struct {
    const char *name;
    verb_fn *fn;
} verbs[] = {
    {"put", v_put},       {"status", v_status}, {"wait", v_wait},
    {"cancel", v_cancel}, {"join", v_join},     {"stats", v_stats},
    {"scale", v_scale},   {"pause", v_pause},   {"resume", v_resume},
    {"ping", v_ping},
};

static void
usage(FILE *f)
{
    fputs("usage: asyncq [--server URL] [--json] [--token-file FILE] VERB ...\n"
          "       asyncq --version | --help\n"
          "\n"
          "  put [-q QUEUE] [-p PRIO] [--delay S] [--timeout S] [--retries N]\n"
          "      [--key K] [--nowait] [--wait] -- CMD ARG...   an exec job\n"
          "  put -k KIND --args JSON [options]                 any kind\n"
          "  put -f FILE.ndjson [options] one JSON object of put params a "
          "line\n"
          "  status ID                   a job's record\n"
          "  wait ID... [--any] [--timeout S] [--cancel-on-timeout]\n"
          "  cancel ID\n"
          "  join [QUEUE] [--timeout S]  until every job has finished\n"
          "  stats [QUEUE] [--watch] [--interval S]\n"
          "  scale QUEUE N | pause QUEUE | resume QUEUE | ping\n"
          "\n"
          "The server is --server, else $ASYNCQ_SERVER, else "
          "tcp://127.0.0.1:7878\n"
          "(unix:/PATH for a Unix socket). The auth token is the first line "
          "of\n"
          "--token-file, else $ASYNCQ_TOKEN. put --wait of an exec job prints "
          "its\n"
          "output and exits with its exit status (128+N if killed by signal "
          "N).\n"
          "Exit status: 0 success, 1 a job failed, 2 usage error, 3 cannot "
          "reach\nthe server or the server answered an error.\n",
          f);
}

int
main(int argc, char **argv)
{
    struct cli cli = {0};
    int i, rc;

    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0)
            cli.json = true;
        else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            cli.server = argv[++i];
        else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc)
            cli.token_file = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0 ||
                   strcmp(argv[i], "-V") == 0) {
            printf("asyncq %s\n", ASYNCQ_VERSION);
            return 0;
        } else
            return usage_error("unknown option %s", argv[i]);
    }
    if (i == argc)
        return usage_error("no verb given");
    for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++) {
        if (strcmp(verbs[k].name, argv[i]) != 0)
            continue;
        /* Global options may also follow the verb. */
        cli.argv = calloc((size_t)argc, sizeof *cli.argv);
        for (int j = i + 1; j < argc; j++) {
            if (strcmp(argv[j], "--") == 0) {
                for (; j < argc; j++)
                    cli.argv[cli.argc++] = argv[j];
                break;
            }
            if (strcmp(argv[j], "--json") == 0)
                cli.json = true;
            else if (strcmp(argv[j], "--server") == 0 && j + 1 < argc)
                cli.server = argv[++j];
            else if (strcmp(argv[j], "--token-file") == 0 && j + 1 < argc)
                cli.token_file = argv[++j];
            else
                cli.argv[cli.argc++] = argv[j];
        }
        rc = verbs[k].fn(&cli);
        aq_client_free(cli.client);
        free(cli.argv);
        return rc;
    }
    return usage_error("unknown verb %s", argv[i]);
}
