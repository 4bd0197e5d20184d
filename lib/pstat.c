/* SPDX-License-Identifier: MIT */
/*
 * lib/pstat.c: reading /proc for the processes jobs leave (lib/pstat.h).
 * Every file is read whole with open/read, never through stdio, so the
 * callers' loops do not allocate per process.
 */
#include "pstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "xmalloc.h"

#define STAT_MAX 1024 /* a stat line: the name is at most 64 bytes */

char *
aq_pstat_read_file(int dirfd, const char *path, size_t *len)
{
    size_t alloc = 4096, n = 0;
    char *buf;
    ssize_t r;
    int fd, saved;

    if ((fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC)) == -1)
        return NULL;
    buf = xmalloc(alloc);
    for (;;) {
        if (n + 1 == alloc)
            buf = xrealloc(buf, alloc *= 2);
        r = read(fd, buf + n, alloc - n - 1);
        if (r > 0)
            n += (size_t)r;
        else if (r == 0)
            break;
        else if (errno != EINTR)
            goto fail;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    saved = errno;
    close(fd);
    free(buf);
    errno = saved;
    return NULL;
}

/* The next unsigned decimal number of [*p, end), skipping blanks and
 * newlines (cgroup.procs has one pid a line); -1 if there is none. */
static int
next_number(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;

    while (s < end && (*s == ' ' || *s == '\n' || *s == '\t'))
        s++;
    if (s == end || ((*s < '0' || *s > '9') && *s != '-'))
        return -1;
    if (*s == '-') /* a negative field (tty_pgrp -1): not one we keep */
        s++;
    *v = 0;
    while (s < end && *s >= '0' && *s <= '9')
        *v = *v * 10 + (uint64_t)(*s++ - '0');
    *p = s;
    return 0;
}

int
aq_pstat_parse(const char *text, size_t len, struct aq_pstat *st)
{
    const char *end = text + len, *p, *open, *close = NULL;
    uint64_t v, fields[21];
    int i;

    for (p = text; p < end; p++) { /* the last ')' ends the name */
        if (*p == ')')
            close = p;
    }
    open = memchr(text, '(', len);
    if (open == NULL || close == NULL || close < open || close + 3 >= end ||
        close[1] != ' ')
        return -1;
    p = text;
    if (next_number(&p, open, &v) < 0 || v == 0 || v > INT32_MAX)
        return -1;
    st->pid = (pid_t)v;
    st->state = close[2];
    p = close + 3;
    /* Fields 4 (ppid) to 24 (rss), after the state. */
    for (i = 4; i <= 24; i++) {
        if (next_number(&p, end, &fields[i - 4]) < 0)
            return -1;
    }
    st->ppid = (pid_t)fields[0];
    st->pgid = (pid_t)fields[1];
    st->sid = (pid_t)fields[2];
    st->utime = fields[14 - 4];
    st->stime = fields[15 - 4];
    st->start_ticks = fields[22 - 4];
    st->vsize_bytes = fields[23 - 4];
    st->rss_pages = fields[24 - 4];
    return 0;
}

int
aq_pstat_read(pid_t pid, struct aq_pstat *st)
{
    char path[64], buf[STAT_MAX];
    ssize_t n;
    int fd, saved;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
        return -1;
    do
        n = read(fd, buf, sizeof buf);
    while (n == -1 && errno == EINTR);
    saved = errno;
    close(fd);
    if (n <= 0) {
        errno = n == 0 ? ESRCH : saved; /* a process that just went */
        return -1;
    }
    if (aq_pstat_parse(buf, (size_t)n, st) < 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

bool
aq_pstat_is_alive(pid_t pid, uint64_t start_ticks)
{
    struct aq_pstat st;

    return aq_pstat_read(pid, &st) == 0 && st.start_ticks == start_ticks &&
           st.state != 'Z' && st.state != 'X';
}

size_t
aq_pstat_parse_pids(const char *text, size_t len, pid_t *out, size_t max)
{
    const char *p = text, *end = text + len;
    size_t n = 0;
    uint64_t v;

    while (next_number(&p, end, &v) == 0) {
        if (v > 0 && v <= INT32_MAX) {
            if (n < max)
                out[n] = (pid_t)v;
            n++;
        }
    }
    return n;
}

size_t
aq_pstat_children(pid_t pid, pid_t *out, size_t max)
{
    char path[64];
    DIR *tasks;
    struct dirent *t;
    size_t n = 0;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    if ((tasks = opendir(path)) == NULL)
        return 0;
    while ((t = readdir(tasks)) != NULL) {
        char file[300], *text;
        size_t len, k;

        if (t->d_name[0] == '.')
            continue;
        snprintf(file, sizeof file, "/proc/%d/task/%s/children", (int)pid,
                 t->d_name);
        if ((text = aq_pstat_read_file(AT_FDCWD, file, &len)) == NULL)
            continue;
        k = aq_pstat_parse_pids(text, len, out + (n < max ? n : max),
                                n < max ? max - n : 0);
        n += k;
        free(text);
    }
    closedir(tasks);
    return n;
}

static bool
set_has(const pid_t *set, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++) {
        if (set[i] == pid)
            return true;
    }
    return false;
}

size_t
aq_pstat_descendants(pid_t *set, size_t *n, size_t max)
{
    pid_t kids[256];

    for (size_t i = 0; i < *n; i++) {
        size_t k = aq_pstat_children(set[i], kids, 256);

        for (size_t j = 0; j < k && j < 256; j++) {
            if (*n < max && !set_has(set, *n, kids[j]))
                set[(*n)++] = kids[j];
        }
    }
    return *n;
}

void
aq_pstat_boot_id(char buf[static 37])
{
    size_t len;
    char *text =
        aq_pstat_read_file(AT_FDCWD, "/proc/sys/kernel/random/boot_id", &len);

    buf[0] = '\0';
    if (text != NULL && len >= 36) {
        memcpy(buf, text, 36);
        buf[36] = '\0';
    }
    free(text);
}

/* The boot time (Unix seconds) from /proc/stat's "btime" line; 0 if it
 * cannot be read. */
static uint64_t
boot_time_s(void)
{
    size_t len;
    char *text = aq_pstat_read_file(AT_FDCWD, "/proc/stat", &len);
    const char *at = text != NULL ? strstr(text, "\nbtime ") : NULL;
    uint64_t v = 0;

    if (at != NULL)
        v = strtoull(at + 7, NULL, 10);
    free(text);
    return v;
}

int
aq_pstat_self(struct aq_pstat_self *st)
{
    double tick_s = 1.0 / (double)sysconf(_SC_CLK_TCK);
    struct aq_pstat ps;
    struct rlimit rl;
    struct dirent *e;
    DIR *fds;

    if (aq_pstat_read(getpid(), &ps) < 0)
        return -1;
    st->cpu_s = (double)(ps.utime + ps.stime) * tick_s;
    st->start_s = (double)boot_time_s() + (double)ps.start_ticks * tick_s;
    st->vsize_bytes = ps.vsize_bytes;
    st->rss_bytes = ps.rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
    st->open_fds = 0;
    if ((fds = opendir("/proc/self/fd")) != NULL) {
        while ((e = readdir(fds)) != NULL) {
            if (e->d_name[0] != '.')
                st->open_fds++;
        }
        closedir(fds);
        st->open_fds--; /* the directory's own */
    }
    st->max_fds =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
    return 0;
}
