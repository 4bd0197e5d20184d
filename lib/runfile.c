/* SPDX-License-Identifier: MIT */
/*
 * lib/runfile.c: the record of the processes running jobs started
 * (lib/runfile.h). The file is "asyncqd-procs 1 BOOT_ID" then one
 * "PID START_TICKS" line per process, rewritten whole in place (one pwrite,
 * then ftruncate) on each change: the lock stays on the one inode, and a
 * stale line left by an interrupted rewrite names a process that was ours.
 */
#include "runfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "xmalloc.h"

#define MAGIC "asyncqd-procs 1 "
#define LEFTOVER_POLL_MS 10
#define PROCS_MAX 65536 /* processes of the /proc snapshot at start */

struct aq_runfile {
    int fd; /* owned: the file, locked */
    char boot_id[37];
    struct aq_runfile_entry *e; /* owned */
    size_t n, alloc;
};

static void
runfile_write(struct aq_runfile *rf)
{
    size_t cap = sizeof MAGIC + 40 + rf->n * 44, len;
    char *buf = xmalloc(cap);

    len = (size_t)snprintf(buf, cap, MAGIC "%s\n", rf->boot_id);
    for (size_t i = 0; i < rf->n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%d %llu\n",
                                (int)rf->e[i].pid,
                                (unsigned long long)rf->e[i].start_ticks);
    /* Best effort: a failure leaves the previous record, whose processes
     * were ours too; there is nothing better to do from the loop. */
    if (pwrite(rf->fd, buf, len, 0) == (ssize_t)len)
        (void)!ftruncate(rf->fd, (off_t)len);
    free(buf);
}

struct aq_runfile *
aq_runfile_open(const char *path, struct aq_error *err)
{
    struct aq_runfile *rf;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);

    if (fd == -1) {
        aq_error_set(err, AQ_ERR_INTERNAL, "procs: open %s: %s", path,
                     strerror(errno));
        return NULL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "procs: %s: in use by another process (is asyncqd "
                     "already running on it?)",
                     path);
        close(fd);
        return NULL;
    }
    rf = xcalloc(1, sizeof *rf);
    rf->fd = fd;
    aq_pstat_boot_id(rf->boot_id);
    return rf;
}

void
aq_runfile_free(struct aq_runfile *rf)
{
    if (rf == NULL)
        return;
    rf->n = 0;
    runfile_write(rf);
    close(rf->fd);
    free(rf->e);
    free(rf);
}

void
aq_runfile_add(struct aq_runfile *rf, pid_t pid, uint64_t start_ticks)
{
    if (rf->n == rf->alloc) {
        rf->alloc = rf->alloc == 0 ? 16 : rf->alloc * 2;
        rf->e = xreallocarray(rf->e, rf->alloc, sizeof *rf->e);
    }
    rf->e[rf->n].pid = pid;
    rf->e[rf->n].start_ticks = start_ticks;
    rf->n++;
    runfile_write(rf);
}

void
aq_runfile_remove(struct aq_runfile *rf, pid_t pid)
{
    for (size_t i = 0; i < rf->n; i++) {
        if (rf->e[i].pid == pid) {
            rf->e[i] = rf->e[--rf->n];
            runfile_write(rf);
            return;
        }
    }
}

size_t
aq_runfile_count(const struct aq_runfile *rf)
{
    return rf->n;
}

size_t
aq_runfile_parse(const char *text, size_t len, const char *boot_id,
                 struct aq_runfile_entry *out, size_t max)
{
    const char *p = text, *end = text + len;
    size_t n = 0, mlen = strlen(MAGIC), blen = strlen(boot_id);

    if (blen == 0 || len < mlen + blen + 1 || memcmp(p, MAGIC, mlen) != 0 ||
        memcmp(p + mlen, boot_id, blen) != 0 || p[mlen + blen] != '\n')
        return 0;
    p += mlen + blen + 1;
    while (p < end && n < max) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        char line[64];
        long long pid;
        unsigned long long start;
        char extra;

        if (nl == NULL)
            break; /* a torn last line */
        if ((size_t)(nl - p) < sizeof line) {
            memcpy(line, p, (size_t)(nl - p));
            line[nl - p] = '\0';
            if (sscanf(line, "%lld %llu %c", &pid, &start, &extra) == 2 &&
                pid > 1 && pid <= INT32_MAX) {
                out[n].pid = (pid_t)pid;
                out[n].start_ticks = start;
                n++;
            }
        }
        p = nl + 1;
    }
    return n;
}

/* The index of the process with pid in procs, or -1. */
static long
find_pid(const struct aq_pstat *procs, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++) {
        if (procs[i].pid == pid)
            return (long)i;
    }
    return -1;
}

/* Marks the members of session or group id that started at min_start or
 * later. */
static void
mark_members(const struct aq_pstat *procs, size_t n, pid_t id,
             uint64_t min_start, bool *kill)
{
    for (size_t i = 0; i < n; i++) {
        if ((procs[i].sid == id || procs[i].pgid == id) &&
            procs[i].start_ticks >= min_start)
            kill[i] = true;
    }
}

size_t
aq_runfile_select(const struct aq_pstat *procs, size_t n,
                  const struct aq_runfile_entry *rec, size_t nrec, pid_t self,
                  bool *kill)
{
    size_t count = 0;
    bool changed;

    memset(kill, 0, n * sizeof *kill);
    for (size_t r = 0; r < nrec; r++) {
        long i = find_pid(procs, n, rec[r].pid);

        if (rec[r].pid <= 1 || rec[r].pid == self)
            continue; /* never ours to end, nor their sessions */

        if (i >= 0 && procs[i].start_ticks == rec[r].start_ticks) {
            kill[i] = true;
            /* It holds its session and group ids: their members are its
             * own descendants, or joined them from inside its session. */
            if (procs[i].sid == rec[r].pid || procs[i].pgid == rec[r].pid)
                mark_members(procs, n, rec[r].pid, 0, kill);
        } else if (i < 0) {
            /* Gone, and no process took its pid: a session or group of
             * that id still alive is the one it led, unless the pid went
             * round to a process that led a new one and died since. */
            mark_members(procs, n, rec[r].pid, rec[r].start_ticks, kill);
        }
        /* Else the pid is another process's now: the id was free, so no
         * member of the old session or group is left. */
    }
    do { /* descendants, down to the deepest */
        changed = false;
        for (size_t i = 0; i < n; i++) {
            long p;

            if (kill[i] || procs[i].ppid <= 1)
                continue;
            p = find_pid(procs, n, procs[i].ppid);
            if (p >= 0 && kill[p]) {
                kill[i] = true;
                changed = true;
            }
        }
    } while (changed);
    for (size_t i = 0; i < n; i++) {
        if (procs[i].pid == self || procs[i].pid == 1 ||
            procs[i].state == 'Z' || procs[i].state == 'X')
            kill[i] = false;
        count += kill[i];
    }
    return count;
}

/* A snapshot of every process of /proc into a new array (the caller's). */
static struct aq_pstat *
snapshot(size_t *n)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    struct aq_pstat *procs = NULL;
    size_t alloc = 0;

    *n = 0;
    while (d != NULL && (e = readdir(d)) != NULL && *n < PROCS_MAX) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);

        if (*end != '\0' || pid <= 0)
            continue;
        if (*n == alloc) {
            alloc = alloc == 0 ? 256 : alloc * 2;
            procs = xreallocarray(procs, alloc, sizeof *procs);
        }
        if (aq_pstat_read((pid_t)pid, &procs[*n]) == 0)
            (*n)++;
    }
    if (d != NULL)
        closedir(d);
    return procs;
}

int
aq_runfile_kill_leftovers(struct aq_runfile *rf, int64_t timeout_us)
{
    int64_t deadline_us = aq_clock_mono_us() + timeout_us;
    struct aq_runfile_entry *rec;
    struct aq_pstat *procs;
    size_t n, nrec, len = 0, alloc = 4096;
    char *text = xmalloc(alloc);
    bool *kill_it;
    ssize_t r;
    int killed = 0;

    /* The whole file: at most a line per process the last run had. */
    while ((r = pread(rf->fd, text + len, alloc - len - 1, (off_t)len)) > 0) {
        len += (size_t)r;
        if (len + 1 == alloc)
            text = xrealloc(text, alloc *= 2);
    }
    rec = xreallocarray(NULL, len / 4 + 1, sizeof *rec);
    nrec = aq_runfile_parse(text, len, rf->boot_id, rec, len / 4 + 1);
    free(text);
    if (nrec > 0) {
        procs = snapshot(&n);
        kill_it = xcalloc(n + 1, sizeof *kill_it);
        aq_runfile_select(procs, n, rec, nrec, getpid(), kill_it);
        for (size_t i = 0; i < n; i++) {
            if (kill_it[i] && kill(procs[i].pid, SIGKILL) == 0)
                killed++;
        }
        /* They are not our children: watch them go through /proc. */
        for (size_t i = 0; i < n; i++) {
            while (kill_it[i] &&
                   aq_pstat_is_alive(procs[i].pid, procs[i].start_ticks) &&
                   aq_clock_mono_us() < deadline_us)
                poll(NULL, 0, LEFTOVER_POLL_MS);
        }
        free(kill_it);
        free(procs);
    }
    free(rec);
    rf->n = 0;
    runfile_write(rf);
    return killed;
}
