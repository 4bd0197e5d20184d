/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq_jobs.c: the verbs on jobs: status, wait, cancel (one job or
 * a queue's), and the triage verbs of spec section 9: list (a table that
 * fits 80 columns, with the command to get the next page), retry and
 * delete (by id, or every job of a queue in a state).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "asyncq.h"
#include "xmalloc.h"

#define LIST_MAX 1000 /* the server's limit on a page */

/* The lower non-zero of two exit statuses: usage, then unreachable, then
 * a server's error; 1 (a job failed) only when nothing else went wrong. */
static int
worse(int rc, int other)
{
    if (rc == 0 || (other > 1 && (rc == 1 || other < rc)))
        return other;
    return rc;
}

static void
report_job_error(json_int_t id, const struct aq_error *err)
{
    if (aq_client_is_server_error(err))
        fprintf(stderr, "asyncq: job %lld: error %d: %s\n", (long long)id,
                err->code, err->message);
    else
        fprintf(stderr, "asyncq: job %lld: %s\n", (long long)id, err->message);
}

/* ---- status, wait ---- */

int
v_status(struct cli *cli)
{
    json_int_t id;
    json_t *r;
    int rc = 0;

    if (cli->argc != 1 || parse_id(cli->argv[0], &id) < 0)
        return usage_error(cli, "expected one job id");
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

int
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
        else if (strcmp(a, "--timeout") == 0) {
            if (k + 1 >= cli->argc ||
                parse_duration(cli->argv[k + 1], &t) < 0) {
                rc = usage_error(cli,
                                 "--timeout %s: expected a duration (90, 90s, "
                                 "5m, 1h, 2d)",
                                 k + 1 < cli->argc ? cli->argv[k + 1] : "");
                goto fail;
            }
            json_object_set_new(params, "timeout", json_real(t));
            k++;
        } else if (strcmp(a, "--cancel-on-timeout") == 0)
            json_object_set_new(params, "cancel_on_timeout", json_true());
        else if (parse_id(a, &id) == 0)
            json_array_append_new(ids, json_integer(id));
        else {
            rc = usage_error(cli, "%s: expected a job id or an option", a);
            goto fail;
        }
    }
    if (json_array_size(ids) == 0) {
        rc = usage_error(cli, "expected one or more job ids");
        goto fail;
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
            printf("job %lld: %s%s%s\n", (long long)int_of(rec, "job"),
                   str_of(rec, "state"),
                   json_object_get(rec, "error") != NULL ? ": " : "",
                   str_of(json_object_get(rec, "error"), "message"));
        if (!job_succeeded(rec))
            rc = EXIT_JOB_FAILED;
    }
    json_decref(r);
    return rc;
fail:
    json_decref(ids);
    json_decref(params);
    return rc;
}

/* ---- by id, or by queue ---- */

/* What a verb acting on ids or on a queue was given. */
struct target {
    const char *queue; /* -q */
    json_int_t *ids;   /* xcalloc'd */
    int n_ids;
    const char *states[3]; /* --failed, --done, --cancelled, as given */
    int n_states;
    bool all, running; /* cancel's --all, --running */
    bool has_delay;
    double delay_s; /* retry's --delay */
};

/* Reads [-q QUEUE] [--failed] [--done] [--cancelled] [--all] [--running]
 * [--delay D] ID... (what a verb allows is checked by the caller). 0 or
 * the usage error's status. */
static int
read_target(struct cli *cli, struct target *t)
{
    int n_args = 0;

    memset(t, 0, sizeof *t);
    t->ids = xcalloc((size_t)cli->argc + 1, sizeof *t->ids);
    for (int k = 0; k < cli->argc; k++) {
        const char *a = cli->argv[k];

        if ((strcmp(a, "-q") == 0 || strcmp(a, "--queue") == 0) &&
            k + 1 < cli->argc)
            t->queue = cli->argv[++k];
        else if (strcmp(a, "--failed") == 0 || strcmp(a, "--done") == 0 ||
                 strcmp(a, "--cancelled") == 0) {
            if (t->n_states < 3)
                t->states[t->n_states++] = a + 2;
        } else if (strcmp(a, "--all") == 0)
            t->all = true;
        else if (strcmp(a, "--running") == 0)
            t->running = true;
        else if (strcmp(a, "--delay") == 0) {
            if (k + 1 >= cli->argc ||
                parse_duration(cli->argv[k + 1], &t->delay_s) < 0)
                return usage_error(cli,
                                   "--delay %s: expected a duration (90, "
                                   "90s, 5m, 1h, 2d)",
                                   k + 1 < cli->argc ? cli->argv[k + 1] : "");
            t->has_delay = true;
            k++;
        } else if (parse_id(a, &t->ids[t->n_ids]) == 0)
            t->n_ids++;
        else
            return usage_error(cli, "%s: expected a job id or an option", a);
        n_args++;
    }
    if (t->queue != NULL && t->n_ids > 0)
        return usage_error(cli, "give job ids or -q QUEUE, not both");
    if (t->queue == NULL && t->n_ids == 0)
        return usage_error(cli, "expected job ids or -q QUEUE");
    return 0;
}

/* Calls method once per id with {"job":id} plus extra (borrowed), printing
 * "job ID WHAT" for each; the worst exit status. */
static int
each_id(struct cli *cli, const struct target *t, const char *method,
        const json_t *extra, const char *(*what)(const json_t *r))
{
    int rc = 0;

    for (int k = 0; k < t->n_ids; k++) {
        json_t *params = json_pack("{s:I}", "job", t->ids[k]), *r;
        struct aq_error err;

        if (extra != NULL)
            json_object_update(params, (json_t *)extra);
        aq_client_set_timeout(cli->client, -1);
        r = aq_client_call(cli->client, method, params, NULL, NULL, &err);
        if (r == NULL) {
            report_job_error(t->ids[k], &err);
            rc = worse(rc, error_status(&err));
            if (error_status(&err) == EXIT_UNREACHABLE)
                break; /* the connection is gone */
            continue;
        }
        if (cli->json)
            print_json(r);
        else
            printf("job %lld %s\n", (long long)t->ids[k], what(r));
        json_decref(r);
    }
    return rc;
}

static const char *
state_of(const json_t *r)
{
    return str_of(r, "state");
}

static const char *
deleted(const json_t *r)
{
    return "deleted";
}

/* Calls method on queue for each state given (or once, with none). */
static int
each_state(struct cli *cli, const struct target *t, const char *method,
           json_t *extra, const char *count_field, const char *did)
{
    int rc = 0, rounds = t->n_states > 0 ? t->n_states : 1;

    for (int k = 0; k < rounds; k++) {
        json_t *params = json_pack("{s:s}", "queue", t->queue), *r;
        json_int_t n;

        if (t->n_states > 0)
            json_object_set_new(params, "state", json_string(t->states[k]));
        if (extra != NULL)
            json_object_update(params, extra);
        if ((r = call(cli, method, params, true, &rc)) == NULL)
            break;
        if (cli->json)
            print_json(r);
        else {
            n = int_of(r, count_field);
            printf("queue %s: %lld %s%s%s %s\n", t->queue, (long long)n,
                   t->n_states > 0 ? t->states[k] : "",
                   t->n_states > 0 ? " " : "", n == 1 ? "job" : "jobs", did);
        }
        json_decref(r);
    }
    json_decref(extra);
    return rc;
}

int
v_retry(struct cli *cli)
{
    struct target t;
    json_t *extra = NULL;
    int rc;

    if ((rc = read_target(cli, &t)) != 0)
        goto out;
    if (t.all || t.running) {
        rc = usage_error(cli, "takes job ids, or -q QUEUE with --failed or "
                              "--cancelled");
        goto out;
    }
    if (t.queue == NULL && t.n_states > 0) {
        rc = usage_error(cli, "--%s needs -q QUEUE", t.states[0]);
        goto out;
    }
    for (int k = 0; k < t.n_states; k++)
        if (strcmp(t.states[k], "done") == 0) {
            rc = usage_error(cli, "-q QUEUE takes --failed or --cancelled "
                                  "(retry done jobs by id)");
            goto out;
        }
    if (t.queue != NULL && t.n_states == 0) {
        rc = usage_error(cli, "-q %s: say which jobs: --failed or --cancelled",
                         t.queue);
        goto out;
    }
    if (t.has_delay)
        extra = json_pack("{s:f}", "delay", t.delay_s);
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    if (t.queue != NULL) {
        rc = each_state(cli, &t, "retry", extra, "retried", "retried");
        extra = NULL;
    } else
        rc = each_id(cli, &t, "retry", extra, state_of);
out:
    json_decref(extra);
    free(t.ids);
    return rc;
}

int
v_delete(struct cli *cli)
{
    struct target t;
    int rc;

    if ((rc = read_target(cli, &t)) != 0)
        goto out;
    if (t.all || t.running || t.has_delay) {
        rc = usage_error(cli, "takes job ids, or -q QUEUE with --failed, "
                              "--done or --cancelled");
        goto out;
    }
    if (t.queue == NULL && t.n_states > 0) {
        rc = usage_error(cli, "--%s needs -q QUEUE", t.states[0]);
        goto out;
    }
    if (t.queue != NULL && t.n_states == 0) {
        rc = usage_error(cli,
                         "-q %s: say which records: --failed, --done or "
                         "--cancelled",
                         t.queue);
        goto out;
    }
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    if (t.queue != NULL)
        rc = each_state(cli, &t, "delete", NULL, "deleted", "deleted");
    else
        rc = each_id(cli, &t, "delete", NULL, deleted);
out:
    free(t.ids);
    return rc;
}

int
v_cancel(struct cli *cli)
{
    struct target t;
    int rc;

    if ((rc = read_target(cli, &t)) != 0)
        goto out;
    if (t.n_states > 0 || t.has_delay ||
        (t.queue == NULL && (t.all || t.running))) {
        rc = usage_error(cli, "takes job ids, or -q QUEUE --all [--running]");
        goto out;
    }
    if (t.queue != NULL && !t.all) {
        rc = usage_error(cli,
                         "-q %s: add --all to cancel every waiting job "
                         "of the queue",
                         t.queue);
        goto out;
    }
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    if (t.queue != NULL)
        rc = each_state(cli, &t, "cancel",
                        t.running ? json_pack("{s:b}", "running", 1) : NULL,
                        "cancelled", "cancelled");
    else
        rc = each_id(cli, &t, "cancel", NULL, state_of);
out:
    free(t.ids);
    return rc;
}

/* ---- list ---- */

enum { C_ID, C_QUEUE, C_STATE, C_WHAT, C_ATTEMPTS, C_AGE, C_ERROR, N_COLS };

static const char *const col_names[N_COLS] = {
    "ID", "QUEUE", "STATE", "COMMAND", "ATTEMPTS", "AGE", "ERROR"};

/* Upper bounds for the narrow columns in an 80-column table. */
static const int col_max[N_COLS] = {16, 12, 9, -1, 8, 7, -1};

static int
screen_width(void)
{
    struct winsize ws;

    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
        ws.ws_col > TABLE_WIDTH)
        return ws.ws_col;
    return TABLE_WIDTH;
}

/* The cells of one job (each a new string). */
static void
list_cells(const json_t *rec, double now, char **cells)
{
    const json_t *e = json_object_get(rec, "error");
    char age[32];

    cells[C_ID] = xasprintf("%lld", (long long)int_of(rec, "job"));
    cells[C_QUEUE] = xstrdup(str_of(rec, "queue"));
    cells[C_STATE] = xstrdup(str_of(rec, "state"));
    cells[C_WHAT] = job_what(rec);
    cells[C_ATTEMPTS] = xasprintf("%lld", (long long)int_of(rec, "attempts"));
    cells[C_AGE] = xstrdup(
        json_is_number(json_object_get(rec, "created"))
            ? fmt_age(now - json_number_value(json_object_get(rec, "created")),
                      age, sizeof age)
            : "");
    if (e != NULL && !json_is_null(e))
        cells[C_ERROR] =
            *str_of(e, "message") != '\0'
                ? xasprintf("%s: %s", str_of(e, "code"), str_of(e, "message"))
                : xstrdup(str_of(e, "code"));
    else
        cells[C_ERROR] = xstrdup("");
}

/* Column widths for rows (n of them): the narrow columns as wide as their
 * widest cell (up to col_max), the rest shared by COMMAND and ERROR. */
static void
list_widths(char **cells, size_t n, bool wide, int *w)
{
    int room, need_what, need_err;

    for (int c = 0; c < N_COLS; c++) {
        w[c] = text_width(col_names[c]);
        for (size_t i = 0; i < n; i++) {
            int cw = text_width(cells[i * N_COLS + c]);

            if (cw > w[c])
                w[c] = cw;
        }
        if (!wide && col_max[c] > 0 && w[c] > col_max[c])
            w[c] = col_max[c];
    }
    if (wide)
        return;
    need_what = w[C_WHAT];
    need_err = w[C_ERROR];
    room = screen_width() - (N_COLS - 1); /* the spaces between columns */
    for (int c = 0; c < N_COLS; c++)
        if (c != C_WHAT && c != C_ERROR)
            room -= w[c];
    /* COMMAND gets three fifths; what one column leaves, the other takes */
    w[C_WHAT] = room * 3 / 5;
    w[C_ERROR] = room - w[C_WHAT];
    if (need_what < w[C_WHAT]) {
        w[C_ERROR] += w[C_WHAT] - need_what;
        w[C_WHAT] = need_what;
    } else if (need_err < w[C_ERROR]) {
        w[C_WHAT] += w[C_ERROR] - need_err;
        w[C_ERROR] = need_err;
    }
    if (w[C_ERROR] > need_err)
        w[C_ERROR] = need_err;
}

static void
list_row(char *const *cells, const int *w)
{
    for (int c = 0; c < N_COLS; c++) {
        bool right = c == C_ID || c == C_ATTEMPTS || c == C_AGE;

        if (c == N_COLS - 1 && *cells[c] == '\0')
            break; /* no trailing blanks */
        if (c > 0)
            putchar(' ');
        print_cell(cells[c], w[c], right, c == N_COLS - 1);
    }
    putchar('\n');
}

/* How to get the next page: the same command, --after (or --before) next,
 * quoted for a shell. */
static void
list_footer(const struct cli *cli, size_t shown, json_int_t next, bool desc)
{
    json_t *words = json_array();
    char n[64], *line;

    for (int k = 0; k < cli->argc; k++) {
        if (strcmp(cli->argv[k], "--after") == 0 ||
            strcmp(cli->argv[k], "--before") == 0) {
            k++;
            continue;
        }
        json_array_append_new(words, json_string(cli->argv[k]));
    }
    json_array_append_new(words, json_string(desc ? "--before" : "--after"));
    json_array_append_new(words, json_sprintf("%lld", (long long)next));
    line = shell_join(words);
    printf("%s shown; next page: asyncq list %s\n",
           plural((long long)shown, "job", "jobs", n, sizeof n), line);
    free(line);
    json_decref(words);
}

static void
list_table(const struct cli *cli, const json_t *r, bool desc)
{
    const json_t *jobs = json_object_get(r, "jobs"), *rec;
    size_t n = json_array_size(jobs), i;
    char **cells = xcalloc(n * N_COLS + N_COLS, sizeof *cells);
    int w[N_COLS];
    struct timeval tv;

    gettimeofday(&tv, NULL);
    json_array_foreach ((json_t *)jobs, i, rec)
        list_cells(rec, (double)tv.tv_sec + (double)tv.tv_usec / 1e6,
                   cells + i * N_COLS);
    if (n == 0)
        puts("no jobs");
    else {
        list_widths(cells, n, cli->wide, w);
        list_row((char *const *)col_names, w);
        for (i = 0; i < n; i++)
            list_row(cells + i * N_COLS, w);
    }
    if (json_is_integer(json_object_get(r, "next")))
        list_footer(cli, n, int_of(r, "next"), desc);
    for (i = 0; i < n * N_COLS; i++)
        free(cells[i]);
    free(cells);
}

/* Adds -s's value (a state, or states separated by commas) to states. */
static void
add_states(json_t *states, const char *v)
{
    const char *p = v, *comma;

    do {
        comma = strchr(p, ',');
        if (comma == NULL)
            comma = p + strlen(p);
        if (comma > p)
            json_array_append_new(states, json_stringn(p, (size_t)(comma - p)));
        p = comma + 1;
    } while (*comma != '\0');
}

int
v_list(struct cli *cli)
{
    json_t *params = json_object(), *states = json_array(), *r;
    bool desc = false;
    int rc = 0;

    for (int k = 0; k < cli->argc; k++) {
        const char *a = cli->argv[k],
                   *v = k + 1 < cli->argc ? cli->argv[k + 1] : NULL;
        json_int_t n;

        if (strcmp(a, "--desc") == 0) {
            desc = true;
            continue;
        }
        if (strcmp(a, "--wide") == 0) {
            cli->wide = true;
            continue;
        }
        if (v == NULL || a[0] != '-') {
            rc = usage_error(cli,
                             v == NULL && a[0] == '-'
                                 ? "%s needs a value"
                                 : "%s: unexpected argument",
                             a);
            goto out;
        }
        k++;
        if (strcmp(a, "-q") == 0 || strcmp(a, "--queue") == 0)
            json_object_set_new(params, "queue", json_string(v));
        else if (strcmp(a, "-s") == 0 || strcmp(a, "--state") == 0)
            add_states(states, v);
        else if (strcmp(a, "--name") == 0 || strcmp(a, "--batch") == 0)
            json_object_set_new(params, a + 2, json_string(v));
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--limit") == 0) {
            if (parse_count(v, &n) < 0 || n < 1 || n > LIST_MAX) {
                rc = usage_error(cli, "%s %s: expected a count from 1 to %d", a,
                                 v, LIST_MAX);
                goto out;
            }
            json_object_set_new(params, "limit", json_integer(n));
        } else if (strcmp(a, "--after") == 0 || strcmp(a, "--before") == 0) {
            if (parse_count(v, &n) < 0) {
                rc = usage_error(cli, "%s %s: expected a job id", a, v);
                goto out;
            }
            json_object_set_new(params, a + 2, json_integer(n));
        } else {
            rc = usage_error(cli, "unknown option %s", a);
            goto out;
        }
    }
    if (json_array_size(states) == 1)
        json_object_set(params, "state", json_array_get(states, 0));
    else if (json_array_size(states) > 1)
        json_object_set(params, "state", states);
    if (desc)
        json_object_set_new(params, "order", json_string("desc"));
    if ((rc = connect_cli(cli)) != 0)
        goto out;
    r = call(cli, "list", params, false, &rc);
    params = NULL;
    if (r == NULL)
        goto out;
    if (cli->json)
        print_json(r);
    else
        list_table(cli, r, desc);
    json_decref(r);
out:
    json_decref(params);
    json_decref(states);
    return rc;
}
