/* SPDX-License-Identifier: MIT */
/* tests/bbproc.c: process helpers for the black-box suites (bbproc.h). */
#include "bbproc.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The daemon's child processes (zombies included), at most max of them
 * stored in pids; returns how many there are. */
size_t
bb_daemon_children(const struct bb_daemon *d, pid_t *pids, size_t max)
{
    char path[64];
    FILE *f;
    size_t n = 0;
    int pid;

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)bb_pid(d),
             (int)bb_pid(d));
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    while (fscanf(f, "%d", &pid) == 1) {
        if (n < max)
            pids[n] = pid;
        n++;
    }
    fclose(f);
    return n;
}

void
bb_pidfile_init(struct bb_pidfile *pf, const struct bb_daemon *d,
                const char *name)
{
    memset(pf, 0, sizeof *pf);
    snprintf(pf->path, sizeof pf->path, "%s/%s", bb_dir(d), name);
}

/* Reads the pids once the line is complete. */
bool
bb_pidfile_read(void *arg)
{
    struct bb_pidfile *pf = arg;
    FILE *f = fopen(pf->path, "r");
    char line[512];
    bool ok = false;

    if (f == NULL)
        return false;
    if (fgets(line, sizeof line, f) != NULL && strchr(line, '\n') != NULL) {
        char *p = line, *end;

        pf->n = 0;
        for (long v; pf->n < MAX_PIDS; p = end) {
            v = strtol(p, &end, 10);
            if (end == p)
                break;
            pf->pids[pf->n++] = (pid_t)v;
        }
        ok = pf->n > 0;
    }
    fclose(f);
    return ok;
}

void
bb_pidfile_wait(struct bb_pidfile *pf)
{
    ck_assert_msg(bb_poll(bb_pidfile_read, pf, 5000),
                  "%s not written by the job", pf->path);
}

struct pid_set {
    const pid_t *pids;
    size_t n;
};

static bool
all_dead(void *arg)
{
    const struct pid_set *s = arg;

    for (size_t i = 0; i < s->n; i++) {
        if (bb_pid_alive(s->pids[i]))
            return false;
    }
    return true;
}

/* Fails unless every pid is gone within timeout_ms. */
void
bb_assert_dead(const pid_t *pids, size_t n, int timeout_ms)
{
    struct pid_set s = {pids, n};

    if (bb_poll(all_dead, &s, timeout_ms))
        return;
    for (size_t i = 0; i < n; i++) {
        if (bb_pid_alive(pids[i]))
            kill(pids[i], SIGKILL); /* do not leak it past the test */
        ck_assert_msg(!bb_pid_alive(pids[i]),
                      "process %d still alive after %d ms", (int)pids[i],
                      timeout_ms);
    }
}
