/* SPDX-License-Identifier: MIT */
/*
 * tests/bbproc.h: black-box helpers for processes started by jobs: the
 * daemon's children, pid files jobs write, and waiting for pids to die.
 */
#ifndef AQ_BBPROC_H
#define AQ_BBPROC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "bb.h"

#define MAX_PIDS 16

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

/* Fails the test unless every pid is gone within timeout_ms; one still
 * alive then is killed, so it does not outlive the test. */
void bb_assert_dead(const pid_t *pids, size_t n, int timeout_ms);

#endif
