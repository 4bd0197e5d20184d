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
