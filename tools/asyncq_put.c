/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq_put.c: asyncq put. One job (an exec command, or a kind with
 * JSON args), optionally waited for: the put is answered with the job's id
 * first and the wait follows, so a server that stops mid-wait still leaves
 * the caller the id to wait on again. put -f streams a file of jobs,
 * pipelined, waiting as long as the server holds it back (back-pressure is
 * not an error, a closed connection is), and always ends with a count.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asyncq.h"

#define BULK_WINDOW 256     /* puts in flight */
#define MAX_SHOWN_ERRORS 20 /* refused lines printed; the rest counted */
#define REDRAW_MS 250       /* the bar's timer */
#define HELD_BACK_S 1.0     /* no reply this long: say the server holds back */

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

        fprintf(stderr, "asyncq: job %lld %s: %s\n",
                (long long)int_of(rec, "job"), str_of(rec, "state"),
                str_of(e, "message"));
    }
    if (int_of(res, "signal") > 0)
        return 128 + (int)int_of(res, "signal");
    if (int_of(res, "exit_code") > 0)
        return (int)int_of(res, "exit_code");
    return rc;
}

/* Puts params (taken) and, with wait, waits for the job on the same
 * connection. Returns the exit status. */
static int
put_one(struct cli *cli, json_t *params, bool wait)
{
    struct aq_error err;
    json_int_t id;
    json_t *r, *recs;
    int rc = 0;

    /* A put to a full queue waits for room (back-pressure): no timeout. */
    if ((r = call(cli, "put", params, true, &rc)) == NULL)
        return rc;
    id = int_of(r, "job");
    if (!wait) {
        if (cli->json)
            print_json(r);
        else if (json_is_true(json_object_get(r, "duplicate")))
            printf("job %lld (a duplicate: its key matched), %s\n",
                   (long long)id, str_of(r, "state"));
        else
            printf("job %lld %s\n", (long long)id, str_of(r, "state"));
        json_decref(r);
        return 0;
    }
    json_decref(r);
    aq_client_set_timeout(cli->client, -1);
    recs = aq_client_call(cli->client, "wait", json_pack("{s:[I]}", "jobs", id),
                          NULL, NULL, &err);
    if (recs == NULL) {
        rc = error_status(&err);
        if (rc == EXIT_UNREACHABLE && err.code != AQ_ERR_TIMEOUT) {
            /* The job is in: a script can wait for it again. */
            fprintf(stderr,
                    "asyncq: job %lld queued; the server stopped before it "
                    "finished: asyncq wait %lld\n(%s)\n",
                    (long long)id, (long long)id, err.message);
            return rc;
        }
        return report_error(&err);
    }
    rc = put_waited(cli, json_array_get(recs, 0));
    json_decref(recs);
    return rc;
}

/* ---- put -f ---- */

struct bulk {
    struct cli *cli;
    const char *path;
    FILE *f;
    bool is_tty;
    long total; /* lines in the file; 0 for a pipe */
    long lineno, sent, acked, errors;
    long line_of[BULK_WINDOW]; /* the input line of request id % window */
    int rc;                    /* worst exit status so far */
    double last_reply;         /* monotonic s */
    struct progress bar;
};

static void
bulk_draw(struct bulk *b)
{
    const char *note = NULL;

    if (!b->is_tty)
        return;
    if (b->sent > b->acked && now_s() - b->last_reply > HELD_BACK_S)
        note = "waiting: the server holds back (queue full)";
    progress_draw(&b->bar, "put", (double)b->acked,
                  (double)(b->total > 0 ? b->total : b->sent), note);
}

/* A message on its own line, even while the bar is drawn. */
static void bulk_say(const struct bulk *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bulk_say(const struct bulk *b, const char *fmt, ...)
{
    va_list ap;

    if (b->is_tty)
        progress_end();
    fputs("asyncq: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
}

static void
worsen(struct bulk *b, int rc)
{
    /* usage (2) and unreachable (3) win over refused lines (4) */
    if (b->rc == 0 || (rc != 0 && rc < b->rc))
        b->rc = rc;
}

/* Sends lines while the window has room. Returns false at the end of the
 * input or once it must stop (a bad line, a send that failed). */
static bool
bulk_send(struct bulk *b, const json_t *defaults, char **line, size_t *cap)
{
    struct aq_error err;

    while (b->sent - b->acked < BULK_WINDOW) {
        json_error_t jerr;
        json_t *params;
        ssize_t n = getline(line, cap, b->f);
        int64_t id;

        if (n <= 0)
            return false;
        b->lineno++;
        if (strspn(*line, " \t\r\n") == (size_t)n)
            continue;
        params = json_loads(*line, 0, &jerr);
        if (!json_is_object(params)) {
            bulk_say(b, "%s:%ld: not a JSON object: %s", b->path, b->lineno,
                     params == NULL ? jerr.text : "");
            json_decref(params);
            worsen(b, EXIT_USAGE);
            return false;
        }
        json_object_update_missing(params, (json_t *)defaults);
        if ((id = aq_client_send(b->cli->client, "put", params, &err)) < 0) {
            bulk_say(b, "%s:%ld: %s", b->path, b->lineno, err.message);
            worsen(b, error_status(&err));
            return false;
        }
        b->line_of[id % BULK_WINDOW] = b->lineno;
        b->sent++;
    }
    return true;
}

/* Reads one reply (redrawing the bar while none comes). false once the
 * connection is lost. */
static bool
bulk_recv(struct bulk *b)
{
    struct aq_error err;
    int64_t id;
    json_t *msg, *e;

    aq_client_set_timeout(b->cli->client, b->is_tty ? REDRAW_MS : -1);
    while ((msg = aq_client_recv(b->cli->client, &id, NULL, &err)) == NULL) {
        if (!aq_client_timed_out(b->cli->client)) {
            bulk_say(b, "%s", err.message);
            worsen(b, error_status(&err));
            return false;
        }
        bulk_draw(b);
    }
    if (id < 0) { /* a notification: not a reply */
        json_decref(msg);
        return true;
    }
    b->last_reply = now_s();
    if ((e = json_object_get(msg, "error")) != NULL) {
        struct aq_error perr;

        aq_error_set(&perr, (int)int_of(e, "code"), "%s", str_of(e, "message"));
        if (b->errors++ < MAX_SHOWN_ERRORS)
            bulk_say(b, "%s:%ld: error %d: %s", b->path,
                     b->line_of[id % BULK_WINDOW], perr.code, perr.message);
        worsen(b, error_status(&perr));
    }
    json_decref(msg);
    b->acked++;
    return true;
}

static void
bulk_summary(const struct bulk *b, double secs)
{
    long put = b->acked - b->errors, lost = b->sent - b->acked;

    if (b->is_tty)
        progress_end();
    if (b->cli->json) {
        printf("{\"put\":%ld,\"errors\":%ld,\"unanswered\":%ld,"
               "\"seconds\":%.3f}\n",
               put, b->errors, lost, secs);
        return;
    }
    printf("%ld put, %ld failed in %.2f s (%.0f jobs/s)", put, b->errors, secs,
           secs > 0 ? (double)b->acked / secs : 0);
    if (lost > 0)
        printf("; %ld sent but not answered: they may or may not be in", lost);
    if (b->errors > MAX_SHOWN_ERRORS)
        printf("; the first %d failures shown", MAX_SHOWN_ERRORS);
    putchar('\n');
}

/* put -f: one JSON object of put params per line, pipelined; the options
 * given with -f (-q, -p, --delay, ...) fill in what a line leaves out. */
static int
put_file(struct cli *cli, const char *path, const json_t *defaults)
{
    struct bulk b = {.cli = cli, .path = path};
    char *line = NULL;
    size_t cap = 0;
    bool more = true;
    int rc;

    b.f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (b.f == NULL)
        return usage_error(cli, "-f %s: %s", path, strerror(errno));
    b.is_tty = isatty(STDERR_FILENO) && !cli->json;
    /* Count the lines first (for the bar's total), unless a pipe. */
    if (b.f != stdin) {
        while (getline(&line, &cap, b.f) > 0)
            b.total++;
        rewind(b.f);
    }
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    progress_init(&b.bar);
    b.last_reply = now_s();
    for (;;) {
        if (more)
            more = bulk_send(&b, defaults, &line, &cap);
        if (b.acked == b.sent)
            break;
        if (!bulk_recv(&b))
            break;
        if (b.is_tty && now_s() - b.bar.t_last > 0.1)
            bulk_draw(&b);
    }
    bulk_summary(&b, now_s() - b.bar.t0);
    rc = b.rc;
out:
    free(line);
    if (b.f != stdin)
        fclose(b.f);
    return rc;
}

int
v_put(struct cli *cli)
{
    json_t *params = json_object(), *args = NULL;
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
        if (is_help(a)) {
            json_decref(params);
            return print_usage(stdout, "put");
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
            rc = usage_error(cli, "%s needs a value", a);
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
                rc = usage_error(cli, "%s %s: expected an integer priority", a,
                                 v);
                goto out;
            }
            json_object_set_new(params, "priority", json_integer(p));
        } else if (strcmp(a, "--delay") == 0 || strcmp(a, "--timeout") == 0) {
            if (parse_duration(v, &d) < 0) {
                rc = usage_error(cli,
                                 "%s %s: expected a duration (90, 90s, 5m, "
                                 "1h, 2d)",
                                 a, v);
                goto out;
            }
            json_object_set_new(params, a + 2, json_real(d));
        } else if (strcmp(a, "--at") == 0) {
            if (parse_at(v, time(NULL), &d) < 0) {
                rc = usage_error(cli,
                                 "--at %s: expected an RFC 3339 time "
                                 "(2026-12-06T14:00:00Z, with an offset) or "
                                 "HH:MM (local time)",
                                 v);
                goto out;
            }
            json_object_set_new(params, "at", json_real(d));
        } else if (strcmp(a, "--after") == 0) {
            json_t *ids = parse_ids(v);

            if (ids == NULL) {
                rc = usage_error(cli, "--after %s: expected job ids (ID,ID...)",
                                 v);
                goto out;
            }
            json_object_set_new(params, "after", ids);
        } else if (strcmp(a, "--after-policy") == 0) {
            if (strcmp(v, "done") != 0 && strcmp(v, "finished") != 0) {
                rc = usage_error(
                    cli, "--after-policy %s: expected done or finished", v);
                goto out;
            }
            json_object_set_new(params, "after_policy", json_string(v));
        } else if (strcmp(a, "--retries") == 0) {
            if (parse_count(v, &n) < 0) {
                rc = usage_error(cli, "--retries %s: expected an integer >= 0",
                                 v);
                goto out;
            }
            json_object_set_new(params, "retries", json_integer(n));
        } else if (strcmp(a, "--key") == 0)
            json_object_set_new(params, "key", json_string(v));
        else if (strcmp(a, "--batch") == 0) {
            if (*v == '\0' || strlen(v) > 200) {
                rc = usage_error(cli, "--batch: expected a name of 1 to 200 "
                                      "bytes");
                goto out;
            }
            json_object_set_new(params, "batch", json_string(v));
        } else if (strcmp(a, "--args") == 0) {
            json_error_t jerr;

            json_decref(args);
            args = json_loads(v, 0, &jerr);
            if (!json_is_object(args)) {
                rc = usage_error(cli, "--args: expected a JSON object: %s",
                                 args == NULL ? jerr.text : "not an object");
                goto out;
            }
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0)
            file = v;
        else {
            rc = usage_error(cli, "unknown option %s", a);
            goto out;
        }
    }
    if (json_object_get(params, "at") != NULL &&
        json_object_get(params, "delay") != NULL) {
        rc = usage_error(cli, "give --at or --delay, not both");
        goto out;
    }
    if (json_object_get(params, "after_policy") != NULL &&
        json_object_get(params, "after") == NULL) {
        rc = usage_error(cli, "--after-policy needs --after");
        goto out;
    }
    if (file != NULL) {
        if (i < cli->argc || args != NULL || wait) {
            rc = usage_error(cli, "-f takes no command, --args or --wait");
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
            rc = usage_error(cli, "give a command or --args, not both");
            goto out;
        }
        for (; i < cli->argc; i++)
            json_array_append_new(argv, json_string(cli->argv[i]));
        args = json_pack("{s:o}", "argv", argv);
        if (json_object_get(params, "kind") == NULL)
            json_object_set_new(params, "kind", json_string("exec"));
    } else if (args == NULL) {
        rc = usage_error(cli, "give a command after --, --args JSON or -f "
                              "FILE");
        goto out;
    }
    json_object_set_new(params, "args", args);
    args = NULL;
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    rc = put_one(cli, params, wait);
    params = NULL;
out:
    json_decref(params);
    json_decref(args);
    return rc;
}
