/* SPDX-License-Identifier: MIT */
/*
 * tests/bbproc.h: black-box helpers for processes: commands run to their
 * end with their output captured (asyncqd --check-config, the asyncq CLI),
 * and the processes jobs start: the daemon's children, pid files jobs
 * write, and waiting for pids to die.
 */
#ifndef AQ_BBPROC_H
#define AQ_BBPROC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "bb.h"

#define MAX_PIDS 16
#define BB_RUN_TIMEOUT_MS 30000 /* default deadline for a command */

/* ---- commands ---- */

/* What a command left once it exited. */
struct bb_run {
    int status; /* exit status, or 128 + signal */
    char *out;  /* stdout (NUL-terminated), the caller's (bb_run_free) */
    char *err;  /* stderr, likewise */
    char *cmd;  /* the command line without argv[0]'s directory */
};

struct bb_run_opts {
    const char *const *envp; /* the environment; NULL: the test's own */
    int timeout_ms;          /* 0: BB_RUN_TIMEOUT_MS */
    int sigint_at_lines;     /* > 0: SIGINT once stdout has that many lines */
};

/* Runs argv (argv[0] a path; o NULL for the defaults) with stdin on
 * /dev/null, default signal actions and no signal blocked, capturing
 * stdout and stderr until both close, then reaps it. Fails the test (and
 * kills the command) if it runs past the timeout. */
void bb_run_argv(struct bb_run *r, const struct bb_run_opts *o,
                 const char *const *argv);
void bb_run_free(struct bb_run *r);
/* How many '\n' s holds. */
size_t bb_count_lines(const char *s);

/* A command running in the background, its output read as it comes (for
 * a client that must see the daemon change under it). */
struct bb_bg;

/* Starts argv as bb_run_argv does (o may be NULL), without waiting. */
struct bb_bg *bb_bg_start(const struct bb_run_opts *o, const char *const *argv);
/* Waits up to timeout_ms for needle in the command's stdout (is_err:
 * stderr) at or after offset from; returns where it starts, or -1 if it
 * did not come in time or the command closed its output first. */
long bb_bg_wait(struct bb_bg *b, bool is_err, const char *needle, size_t from,
                int timeout_ms);
const char *bb_bg_out(const struct bb_bg *b); /* so far; borrowed */
const char *bb_bg_err(const struct bb_bg *b);
void bb_bg_signal(struct bb_bg *b, int sig);
/* Waits for the command's end (killing it and failing the test past
 * timeout_ms), fills r (bb_run_free it) and frees b. */
void bb_bg_finish(struct bb_bg *b, struct bb_run *r, int timeout_ms);

/* ---- processes of jobs ---- */

/* A file a job writes its pids to, one line ending in a newline. */
struct bb_pidfile {
    char path[PATH_MAX];
    pid_t pids[MAX_PIDS];
    size_t n; /* read so far */
};

void bb_pidfile_init(struct bb_pidfile *pf, const struct bb_daemon *d,
                     const char *name);
/* Reads the pids once the line is complete (a bb_poll predicate). */
bool bb_pidfile_read(void *arg);
/* Fails the test unless the job writes the file within 5 s. */
void bb_pidfile_wait(struct bb_pidfile *pf);

/* The daemon's child processes (zombies included), at most max of them
 * stored in pids; returns how many there are. */
size_t bb_daemon_children(const struct bb_daemon *d, pid_t *pids, size_t max);

/* Whether every pid is gone within timeout_ms (polled). */
bool bb_all_dead(const pid_t *pids, size_t n, int timeout_ms);
/* Fails the test unless every pid is gone within timeout_ms; one still
 * alive then is killed, so it does not outlive the test. */
void bb_assert_dead(const pid_t *pids, size_t n, int timeout_ms);

#endif
