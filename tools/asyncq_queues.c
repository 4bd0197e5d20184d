/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq_queues.c: the verbs on queues and the server: join (with a
 * progress bar polled on a second connection), stats (a table that fits 80
 * columns; --watch redraws it and rides out a daemon restart by
 * reconnecting with backoff), scale, pause, resume and ping.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asyncq.h"
#include "xmalloc.h"

#define RECONNECT_MIN_S 0.1
#define RECONNECT_MAX_S 5.0

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Sleeps secs, or less if a signal comes (the watch period, not a sync). */
static void
pause_s(double secs)
{
    struct timespec ts = {(time_t)secs, (long)(fmod(secs, 1) * 1e9)};

    nanosleep(&ts, NULL);
}

int
v_ping(struct cli *cli)
{
    double t0 = now_s();
    int rc = 0;
    json_t *r;

    if (cli->argc != 0)
        return usage_error(cli, "takes no argument");
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

/* ---- join ---- */

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

/* The finished jobs of a batch: done + failed + cancelled. */
static double
batch_finished(const json_t *st)
{
    return (double)(int_of(st, "done") + int_of(st, "failed") +
                    int_of(st, "cancelled"));
}

/* A batch's bar: its finished jobs of all it holds. */
static void
join_draw_batch(struct aq_client *watch, const char *batch,
                struct progress *bar)
{
    struct aq_error err;
    json_t *st = aq_client_call(
        watch, "stats", json_pack("{s:s}", "batch", batch), NULL, NULL, &err);

    if (st == NULL)
        return;
    progress_draw(bar, "finished", batch_finished(st),
                  (double)int_of(st, "total"), NULL);
    json_decref(st);
}

static void
join_draw(struct aq_client *watch, const char *queue, const char *batch,
          struct progress *bar, double *done0)
{
    struct aq_error err;
    json_t *st, *qs;
    double done, left;

    if (batch != NULL) {
        join_draw_batch(watch, batch, bar);
        return;
    }
    st = aq_client_call(watch, "stats",
                        queue != NULL ? json_pack("{s:s}", "queue", queue)
                                      : NULL,
                        NULL, NULL, &err);
    if (st == NULL)
        return;
    qs = json_object_get(st, "queues");
    done = stats_sum(qs, "done") + stats_sum(qs, "failed") +
           stats_sum(qs, "cancelled");
    left = stats_sum(qs, "unfinished");
    if (*done0 < 0)
        *done0 = done;
    progress_draw(bar, "finished", done - *done0, done - *done0 + left, NULL);
    json_decref(st);
}

int
v_join(struct cli *cli)
{
    const char *queue = NULL, *batch = NULL;
    json_t *params = json_object(), *r;
    bool tty = isatty(STDERR_FILENO) && !cli->json;
    struct aq_client *watch = NULL;
    struct progress bar;
    struct aq_error err;
    double done0 = -1;
    int64_t join_id;
    int rc;

    for (int k = 0; k < cli->argc; k++) {
        double t;

        if (strcmp(cli->argv[k], "--timeout") == 0) {
            if (k + 1 >= cli->argc ||
                parse_duration(cli->argv[k + 1], &t) < 0) {
                json_decref(params);
                return usage_error(cli,
                                   "--timeout %s: expected a duration (90, "
                                   "90s, 5m, 1h, 2d)",
                                   k + 1 < cli->argc ? cli->argv[k + 1] : "");
            }
            json_object_set_new(params, "timeout", json_real(t));
            k++;
        } else if (strcmp(cli->argv[k], "--batch") == 0) {
            if (k + 1 >= cli->argc || cli->argv[k + 1][0] == '\0') {
                json_decref(params);
                return usage_error(cli, "--batch: expected a batch name");
            }
            batch = cli->argv[++k];
        } else if (queue == NULL && cli->argv[k][0] != '-')
            queue = cli->argv[k];
        else {
            json_decref(params);
            return usage_error(cli, "%s: unexpected argument", cli->argv[k]);
        }
    }
    if (queue != NULL && batch != NULL) {
        json_decref(params);
        return usage_error(cli, "give QUEUE or --batch, not both");
    }
    if (queue != NULL)
        json_object_set_new(params, "queue", json_string(queue));
    if (batch != NULL)
        json_object_set_new(params, "batch", json_string(batch));
    if ((rc = connect_cli(cli)) != 0) {
        json_decref(params);
        return rc;
    }
    if ((join_id = aq_client_send(cli->client, "join", params, &err)) < 0)
        return report_error(&err);
    /* The bar: a second connection polls stats while join waits. */
    if (tty)
        watch = connect_again(cli, &err);
    progress_init(&bar);
    for (;;) {
        int64_t id;
        json_t *msg, *e;

        aq_client_set_timeout(cli->client, watch != NULL ? 500 : -1);
        msg = aq_client_recv(cli->client, &id, NULL, &err);
        if (msg == NULL) {
            if (watch == NULL || !aq_client_timed_out(cli->client)) {
                if (watch != NULL)
                    progress_end();
                rc = report_error(&err);
                break;
            }
            join_draw(watch, queue, batch, &bar, &done0);
            continue;
        }
        if (id != join_id) {
            json_decref(msg);
            continue;
        }
        if (watch != NULL)
            progress_end();
        if ((e = json_object_get(msg, "error")) != NULL) {
            aq_error_set(&err, (int)int_of(e, "code"), "%s",
                         str_of(e, "message"));
            json_decref(msg);
            rc = report_error(&err);
            break;
        }
        r = json_object_get(msg, "result");
        if (cli->json)
            print_json(r);
        else if (batch != NULL)
            printf("batch %s: every job has finished\n", str_of(r, "batch"));
        else if (strcmp(str_of(r, "queue"), "*") == 0)
            puts("all queues: every job has finished");
        else
            printf("queue %s: every job has finished\n", str_of(r, "queue"));
        json_decref(msg);
        rc = 0;
        break;
    }
    aq_client_free(watch);
    return rc;
}

/* ---- stats ---- */

#define N(q, f) ((long long)int_of((q), (f)))

/* "2h05m" for the server's uptime, "1 connection", "6 queues". */
static void
stats_header(const json_t *st)
{
    char up[32], conns[64], queues[64];

    printf("asyncqd %s, up %s, %s, %s\n", str_of(st, "version"),
           fmt_age(floor(json_number_value(json_object_get(st, "uptime"))), up,
                   sizeof up),
           plural(N(st, "connections"), "connection", "connections", conns,
                  sizeof conns),
           plural((long long)json_object_size(json_object_get(st, "queues")),
                  "queue", "queues", queues, sizeof queues));
}

/* The QUEUE cell: the name, and "(paused)" when it is. */
static char *
queue_cell(const char *name, const json_t *q)
{
    return json_is_true(json_object_get(q, "paused"))
               ? xasprintf("%s (paused)", name)
               : xstrdup(name);
}

/* The width of the widest QUEUE cell (at least the header's). */
static int
queue_width(const json_t *queues)
{
    int w = 5;
    const char *name;
    json_t *q;

    json_object_foreach ((json_t *)queues, name, q) {
        char *cell = queue_cell(name, q);

        if (text_width(cell) > w)
            w = text_width(cell);
        free(cell);
    }
    return w;
}

static void
stats_narrow(const json_t *queues)
{
    /* READY DELAYED RUNNING BUSY DONE FAILED: 46 columns and 6 spaces */
    const int fixed = 52;
    int w = queue_width(queues);
    const char *name;
    json_t *q;

    if (w > TABLE_WIDTH - fixed - 1)
        w = TABLE_WIDTH - fixed - 1;
    print_cell("QUEUE", w, false, false);
    printf(" %7s %7s %7s %9s %9s %7s\n", "READY", "DELAYED", "RUNNING", "BUSY",
           "DONE", "FAILED");
    json_object_foreach ((json_t *)queues, name, q) {
        char *cell = queue_cell(name, q), busy[48];

        snprintf(
            busy, sizeof busy, "%lld/%lld", N(q, "busy"),
            N(q, json_object_get(q, "workers") != NULL && N(q, "consumers") == 0
                     ? "workers"
                     : "consumers"));
        print_cell(cell, w, false, false);
        printf(" %7lld %7lld %7lld %9s %9lld %7lld\n", N(q, "size"),
               N(q, "delayed"), N(q, "running"), busy, N(q, "done"),
               N(q, "failed"));
        free(cell);
    }
}

static void
stats_wide(const json_t *queues)
{
    int w = queue_width(queues);
    const char *name;
    json_t *q;

    print_cell("QUEUE", w, false, false);
    printf(" %7s %7s %7s %10s %8s %9s %7s %10s %10s %8s %9s %8s %9s %9s\n",
           "READY", "DELAYED", "RUNNING", "UNFINISHED", "MAXSIZE", "CONSUMERS",
           "BUSY", "PUT", "DONE", "FAILED", "CANCELLED", "RETRIED", "WAIT_P50",
           "RUN_P50");
    json_object_foreach ((json_t *)queues, name, q) {
        char *cell = queue_cell(name, q);

        print_cell(cell, w, false, false);
        printf(" %7lld %7lld %7lld %10lld %8lld %9lld %7lld %10lld %10lld "
               "%8lld %9lld %8lld %8.3fs %8.3fs\n",
               N(q, "size"), N(q, "delayed"), N(q, "running"),
               N(q, "unfinished"), N(q, "maxsize"), N(q, "consumers"),
               N(q, "busy"), N(q, "put"), N(q, "done"), N(q, "failed"),
               N(q, "cancelled"), N(q, "retried"),
               json_number_value(
                   json_object_get(json_object_get(q, "wait_time"), "p50")),
               json_number_value(
                   json_object_get(json_object_get(q, "run_time"), "p50")));
        free(cell);
    }
}

#undef N

/* One round of stats: the result (new ref) or NULL with err. */
static json_t *
stats_once(struct aq_client *c, const char *queue, const char *batch,
           struct aq_error *err)
{
    json_t *params = NULL;

    if (batch != NULL)
        params = json_pack("{s:s}", "batch", batch);
    else if (queue != NULL)
        params = json_pack("{s:s}", "queue", queue);
    aq_client_set_timeout(c, CALL_TIMEOUT_MS);
    return aq_client_call(c, "stats", params, NULL, NULL, err);
}

/* stats --batch: one line of counts, then the states that have jobs. */
static void
stats_batch(const json_t *st)
{
    static const char *const states[] = {"delayed",   "waiting", "pending",
                                         "running",   "done",    "failed",
                                         "cancelled", NULL};

    printf("batch %s: %lld jobs, %lld unfinished, %lld finished\n",
           str_of(st, "batch"), (long long)int_of(st, "total"),
           (long long)int_of(st, "unfinished"), (long long)batch_finished(st));
    for (size_t i = 0; states[i] != NULL; i++) {
        if (int_of(st, states[i]) > 0)
            printf("  %-10s %lld\n", states[i],
                   (long long)int_of(st, states[i]));
    }
}

/* Until the server answers again (or ^C): connects with backoff, saying so
 * once. 0, or the exit status of an error that retrying will not mend. */
static int
stats_reconnect(struct cli *cli, const struct aq_error *why, bool tty)
{
    double backoff = RECONNECT_MIN_S;
    struct aq_error err;

    aq_client_free(cli->client);
    cli->client = NULL;
    if (tty && !cli->json)
        fputs("\033[H\033[2J", stdout);
    fflush(stdout);
    fprintf(stderr, "asyncq: %s; reconnecting...\n", why->message);
    while (!interrupted) {
        cli->client = connect_again(cli, &err);
        if (cli->client != NULL) {
            fprintf(stderr, "asyncq: reconnected to %s\n",
                    aq_client_server(cli->client));
            return 0;
        }
        if (error_status(&err) == EXIT_SERVER)
            return report_error(&err); /* e.g. the token is refused now */
        pause_s(backoff);
        backoff = fmin(backoff * 2, RECONNECT_MAX_S);
    }
    return 0;
}

int
v_stats(struct cli *cli)
{
    const char *queue = NULL, *batch = NULL;
    bool watch = false, tty = isatty(STDOUT_FILENO);
    struct sigaction sa = {.sa_handler = on_sigint};
    double interval = 1;
    int rc;

    for (int k = 0; k < cli->argc; k++) {
        if (strcmp(cli->argv[k], "--watch") == 0)
            watch = true;
        else if (strcmp(cli->argv[k], "--wide") == 0)
            cli->wide = true;
        else if (strcmp(cli->argv[k], "--interval") == 0) {
            if (k + 1 >= cli->argc ||
                parse_duration(cli->argv[k + 1], &interval) < 0 ||
                interval <= 0)
                return usage_error(cli,
                                   "--interval %s: expected a duration > 0 "
                                   "(0.5, 2s, 1m)",
                                   k + 1 < cli->argc ? cli->argv[k + 1] : "");
            k++;
        } else if (strcmp(cli->argv[k], "--batch") == 0) {
            if (k + 1 >= cli->argc || cli->argv[k + 1][0] == '\0')
                return usage_error(cli, "--batch: expected a batch name");
            batch = cli->argv[++k];
        } else if (queue == NULL && cli->argv[k][0] != '-')
            queue = cli->argv[k];
        else
            return usage_error(cli, "%s: unexpected argument", cli->argv[k]);
    }
    if (queue != NULL && batch != NULL)
        return usage_error(cli, "give QUEUE or --batch, not both");
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    /* ^C ends a watch cleanly (exit 0): the handler only sets a flag. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    do {
        struct aq_error err;
        json_t *st = cli->client != NULL
                         ? stats_once(cli->client, queue, batch, &err)
                         : NULL;

        if (st == NULL) {
            if (!watch || error_status(&err) == EXIT_SERVER)
                return report_error(&err);
            if ((rc = stats_reconnect(cli, &err, tty)) != 0)
                return rc;
            continue;
        }
        if (cli->json)
            print_json(st);
        else {
            if (watch && tty)
                fputs("\033[H\033[2J", stdout); /* redraw in place */
            if (batch != NULL)
                stats_batch(st);
            else if (cli->wide) {
                stats_header(st);
                stats_wide(json_object_get(st, "queues"));
            } else {
                stats_header(st);
                stats_narrow(json_object_get(st, "queues"));
            }
        }
        fflush(stdout);
        json_decref(st);
        if (watch && !interrupted)
            pause_s(interval);
    } while (watch && !interrupted);
    return 0;
}

/* ---- scale, pause, resume ---- */

int
v_scale(struct cli *cli)
{
    json_int_t n;
    json_t *r;
    int rc;

    if (cli->argc != 2 || parse_count(cli->argv[1], &n) < 0)
        return usage_error(cli, "expected QUEUE N (N an integer >= 0)");
    if ((rc = connect_cli(cli)) != 0)
        return rc;
    if ((r = call(cli, "scale",
                  json_pack("{s:s,s:I}", "queue", cli->argv[0], "consumers", n),
                  false, &rc)) == NULL)
        return rc;
    if (cli->json)
        print_json(r);
    else {
        char c[64];

        printf("queue %s: %s\n", cli->argv[0],
               plural(n, "consumer", "consumers", c, sizeof c));
    }
    json_decref(r);
    return 0;
}

static int
pause_resume(struct cli *cli, const char *method)
{
    json_t *r;
    int rc;

    if (cli->argc != 1)
        return usage_error(cli, "expected QUEUE");
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

int
v_pause(struct cli *cli)
{
    return pause_resume(cli, "pause");
}

int
v_resume(struct cli *cli)
{
    return pause_resume(cli, "resume");
}
