/* SPDX-License-Identifier: MIT */
/*
 * tests/bbcli.c: running the asyncq CLI for the black-box suites (see
 * bbcli.h).
 */
#include "bbcli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bbjson.h"

#ifndef ASYNCQ_CLI_PATH
#error "ASYNCQ_CLI_PATH must name the asyncq binary"
#endif

#define MAX_ARGS 64
#define MAX_ENV 512

extern char **environ;

/* The test's environment without ASYNCQ_SERVER and ASYNCQ_TOKEN, plus
 * extra (NULL-terminated), in envp (static storage is not needed: the
 * strings are borrowed from environ and extra). */
static void
build_env(const char **envp, const char *const *extra)
{
    size_t n = 0;

    for (char **e = environ; *e != NULL && n < MAX_ENV - 8; e++) {
        if (strncmp(*e, "ASYNCQ_SERVER=", 14) != 0 &&
            strncmp(*e, "ASYNCQ_TOKEN=", 13) != 0)
            envp[n++] = *e;
    }
    for (; *extra != NULL; extra++)
        envp[n++] = *extra;
    envp[n] = NULL;
}

/* Runs argv (argv[0] is the CLI) in the test's environment less the
 * server and token variables, plus o's, within CLI_TIMEOUT_MS. */
void
cli_run_argv(struct bb_run *r, const struct run_opts *o, const char **argv)
{
    const char *envp[MAX_ENV];
    const struct bb_run_opts ro = {.envp = envp,
                                   .timeout_ms = CLI_TIMEOUT_MS,
                                   .sigint_at_lines = o->sigint_at_lines};

    build_env(envp, o->env);
    bb_run_argv(r, &ro, argv);
}

/* The argv of asyncq --server <d's address> ARGS (up to a NULL in ap), in
 * argv (MAX_ARGS) with the URL in url. */
static void
cli_argv(const char **argv, char *url, size_t size, const struct bb_daemon *d,
         va_list ap)
{
    const char *a;
    int n = 0;

    argv[n++] = ASYNCQ_CLI_PATH;
    if (d != NULL) {
        snprintf(url, size, "tcp://127.0.0.1:%d", bb_port(d));
        argv[n++] = "--server";
        argv[n++] = url;
    }
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, MAX_ARGS - 1);
        argv[n++] = a;
    }
    argv[n] = NULL;
}

/* Runs asyncq with the arguments in ap (up to a NULL), after --server
 * tcp://127.0.0.1:PORT when d is not NULL. */
static void
run_va(struct bb_run *r, const struct run_opts *o, const struct bb_daemon *d,
       va_list ap)
{
    const char *argv[MAX_ARGS];
    char url[64];

    cli_argv(argv, url, sizeof url, d, ap);
    cli_run_argv(r, o, argv);
}

void
asyncq(struct bb_run *r, const struct bb_daemon *d, ...)
{
    static const struct run_opts none;
    va_list ap;

    va_start(ap, d);
    run_va(r, &none, d, ap);
    va_end(ap);
}

void
asyncq_with(struct bb_run *r, const struct run_opts *o,
            const struct bb_daemon *d, ...)
{
    va_list ap;

    va_start(ap, d);
    run_va(r, o, d, ap);
    va_end(ap);
}

/* stdout as one JSON value (new ref); fails the test if it is not. */
json_t *
out_json(const struct bb_run *r)
{
    json_error_t jerr;
    json_t *v = json_loads(r->out, JSON_DECODE_ANY, &jerr);

    ck_assert_msg(v != NULL, "%s: stdout is not JSON (%s): \"%s\"", r->cmd,
                  jerr.text, r->out);
    return v;
}

/* Fails the test unless got equals want (taken), naming both. */
void
assert_json_eq(const struct bb_run *r, const json_t *got, json_t *want)
{
    char *g = bb_dump(got), *w = bb_dump(want);

    ck_assert_msg(json_equal(got, want), "%s: got %s, want %s", r->cmd, g, w);
    free(g);
    free(w);
    json_decref(want);
}

struct bb_bg *
asyncq_bg(const struct bb_daemon *d, ...)
{
    static const char *const none[] = {NULL};
    const char *argv[MAX_ARGS], *envp[MAX_ENV];
    const struct bb_run_opts ro = {.envp = envp};
    char url[64];
    va_list ap;

    va_start(ap, d);
    cli_argv(argv, url, sizeof url, d, ap);
    va_end(ap);
    build_env(envp, none);
    return bb_bg_start(&ro, argv);
}

void
assert_fits(const struct bb_run *r, const char *text, int width)
{
    int cols = 0, line = 1;

    for (const unsigned char *p = (const unsigned char *)text; *p != '\0';
         p++) {
        if (*p == '\n') {
            cols = 0;
            line++;
            continue;
        }
        if ((*p & 0xc0) != 0x80) /* not a UTF-8 continuation byte */
            cols++;
        ck_assert_msg(cols <= width,
                      "%s: line %d is wider than %d columns: \"%s\"", r->cmd,
                      line, width, text);
    }
}
