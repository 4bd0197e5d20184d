/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq.h: what the files of the asyncq CLI share: the run's state,
 * the exit statuses, the connection and call helpers (asyncq.c), the
 * formatting of durations, tables, records and progress (asyncq_fmt.c), and
 * the verbs (asyncq_put.c, asyncq_jobs.c, asyncq_queues.c,
 * asyncq_sched.c).
 */
#ifndef AQ_TOOLS_ASYNCQ_H
#define AQ_TOOLS_ASYNCQ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "error.h"

/* Exit statuses (spec section 8). */
#define EXIT_JOB_FAILED 1 /* a job failed or was cancelled */
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3 /* connect, transport, no reply in time */
#define EXIT_SERVER 4      /* the server answered with an error */

#define CALL_TIMEOUT_MS 10000
#define TABLE_WIDTH 80

struct cli {
    const char *server;
    const char *token_file;
    struct aq_client_tls tls; /* --ca, --cert, --key (NULL: $ASYNCQ_...) */
    bool json;
    bool wide;                /* --wide: tables at full width */
    const char *verb;         /* for messages and usage */
    struct aq_client *client; /* owned */
    int argc;                 /* the verb's arguments */
    char **argv;
};

/* ---- asyncq.c ---- */

/* Prints "asyncq: VERB: message" and the verb's usage to stderr; returns
 * EXIT_USAGE. */
int usage_error(const struct cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints err ("asyncq: error CODE: message" for a server's) to stderr and
 * returns the exit status it maps to (EXIT_UNREACHABLE or EXIT_SERVER). */
int report_error(const struct aq_error *err);
/* The exit status err maps to, without printing. */
int error_status(const struct aq_error *err);
/* Connects cli->client (and sends auth); 0 or the exit status (printed). */
int connect_cli(struct cli *cli);
/* A second connection to the same server, or NULL with err. */
struct aq_client *connect_again(const struct cli *cli, struct aq_error *err);
/* Calls method (params taken); wait_long lifts the client's timeout (the
 * server bounds the wait). The result (new ref), or NULL with the error
 * printed and *rc set. */
json_t *call(struct cli *cli, const char *method, json_t *params,
             bool wait_long, int *rc);
/* Whether s is --help or -h. */
bool is_help(const char *s);
/* Prints the usage of verb (NULL: of every verb) to f. 0 if known. */
int print_usage(FILE *f, const char *verb);

/* ---- asyncq_fmt.c ---- */

double now_s(void); /* monotonic seconds */
int parse_id(const char *s, json_int_t *out);
/* A count >= 0. 0 or -1. */
int parse_count(const char *s, json_int_t *out);
/* A duration: a number with an optional unit s, m, h or d (90, 90s, 1.5m,
 * 2h, 1d), >= 0 and at most 1e9 s. 0 or -1. */
int parse_duration(const char *s, double *out);
/* put --at: an RFC 3339 time (with an offset), or HH:MM, the next time
 * the local clock shows it after now (today if still ahead, else
 * tomorrow), as epoch seconds. 0 or -1. */
int parse_at(const char *s, time_t now, double *out);
/* put --after: job ids separated by commas into a new array. NULL if s
 * is not that. */
json_t *parse_ids(const char *s);
/* A duration for a person: "42s", "3m05s", "2h07m", "3d04h" (buf). */
const char *fmt_age(double secs, char *buf, size_t size);
void print_json(const json_t *v);
const char *str_of(const json_t *o, const char *key); /* "" if absent */
json_int_t int_of(const json_t *o, const char *key);  /* 0 if absent */
/* "1 queue" / "2 queues" (buf). */
const char *plural(long long n, const char *one, const char *many, char *buf,
                   size_t size);
/* argv as a line a shell reads back to the same words (a new string). */
char *shell_join(const json_t *argv);
/* What a job is, for one cell: exec argv, http METHOD URL, else its name
 * or kind (a new string). */
char *job_what(const json_t *rec);
/* Prints s in a cell of width columns (UTF-8 aware, control characters as
 * spaces): cut with an ellipsis if longer, padded unless is_last. width
 * < 0: as it is, no cut. */
void print_cell(const char *s, int width, bool right, bool is_last);
/* Display columns s takes (code points, counted as one each). */
int text_width(const char *s);
/* The job record for a person (status, put --wait of a non-exec job). */
void print_record(const json_t *rec);
bool job_succeeded(const json_t *rec);

/* A progress line on stderr, drawn in place on a terminal; the rate and
 * the ETA come from the recent rate (an exponentially weighted average
 * over about 5 s), not the average since the start. */
struct progress {
    double t0, t_last;
    double done_last; /* done at t_last */
    double rate;      /* jobs/s, weighted to the recent past; < 0: none */
};
void progress_init(struct progress *p);
/* Updates the rate with done at now, then draws; note (may be NULL) is
 * shown after the numbers ("waiting for room"). */
void progress_draw(struct progress *p, const char *what, double done,
                   double total, const char *note);
void progress_end(void);

/* ---- verbs ---- */

int v_put(struct cli *cli);
int v_status(struct cli *cli);
int v_wait(struct cli *cli);
int v_cancel(struct cli *cli);
int v_list(struct cli *cli);
int v_retry(struct cli *cli);
int v_delete(struct cli *cli);
int v_join(struct cli *cli);
int v_stats(struct cli *cli);
int v_scale(struct cli *cli);
int v_pause(struct cli *cli);
int v_resume(struct cli *cli);
int v_ping(struct cli *cli);
int v_schedules(struct cli *cli); /* asyncq_sched.c */

#endif
