/* SPDX-License-Identifier: MIT */
/*
 * tests/bbcli.h: running the asyncq CLI in black-box tests: to its end with
 * its output captured (asyncq), or in the background while the test
 * changes the daemon under it (asyncq_bg), in the test's environment less
 * $ASYNCQ_SERVER and $ASYNCQ_TOKEN; and assertions on what it left.
 */
#ifndef AQ_BBCLI_H
#define AQ_BBCLI_H

#include <check.h>
#include <string.h>

#include <jansson.h>

#include "bb.h"
#include "bbproc.h"

#define CLI_TIMEOUT_MS 30000 /* deadline for one run of the CLI */

struct run_opts {
    const char *env[4];  /* "NAME=value" added to the environment */
    int sigint_at_lines; /* > 0: SIGINT once stdout has that many lines */
};

/* Runs argv (argv[0] is a program) in the test's environment less the
 * server and token variables, plus o's, within CLI_TIMEOUT_MS. */
void cli_run_argv(struct bb_run *r, const struct run_opts *o,
                  const char **argv);

/* asyncq --server <d's address> ARGS... (d NULL: no --server). */
void asyncq(struct bb_run *r, const struct bb_daemon *d, ...)
    __attribute__((sentinel));
/* asyncq as above, with options (environment, SIGINT). */
void asyncq_with(struct bb_run *r, const struct run_opts *o,
                 const struct bb_daemon *d, ...) __attribute__((sentinel));
/* asyncq --server <d's address> ARGS... started in the background. */
struct bb_bg *asyncq_bg(const struct bb_daemon *d, ...)
    __attribute__((sentinel));

/* stdout as one JSON value (new ref); fails the test if it is not. */
json_t *out_json(const struct bb_run *r);
/* Fails the test unless got equals want (taken), naming both. */
void assert_json_eq(const struct bb_run *r, const json_t *got, json_t *want);
/* Fails the test unless every line of text is at most width columns
 * (UTF-8 code points), naming the first that is not. */
void assert_fits(const struct bb_run *r, const char *text, int width);

#define assert_exit(r, want)                                                   \
    ck_assert_msg((r)->status == (want),                                       \
                  "%s: exit %d, want %d; stdout: \"%s\"; stderr: \"%s\"",      \
                  (r)->cmd, (r)->status, (want), (r)->out, (r)->err)

#define assert_has(r, text, needle)                                            \
    ck_assert_msg(strstr((text), (needle)) != NULL,                            \
                  "%s: %s lacks \"%s\"; stdout: \"%s\"; stderr: \"%s\"",       \
                  (r)->cmd, #text, (needle), (r)->out, (r)->err)

#endif
