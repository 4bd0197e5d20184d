/* SPDX-License-Identifier: MIT */
/*
 * lib/pstat.h: what /proc says about processes, for finding and ending the
 * processes a job left: a process's parent, group, session and start time
 * (which, with the pid, names one process for as long as the machine is up:
 * a pid that was reused has another start time), a process's children, and
 * the machine's boot id. Reads only; the kills are the callers'.
 */
#ifndef AQ_PSTAT_H
#define AQ_PSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct aq_pstat {
    pid_t pid, ppid, pgid, sid;
    char state;            /* 'R', 'S', 'D', 'Z', 'T', ... */
    uint64_t utime, stime; /* CPU time, clock ticks (fields 14, 15) */
    uint64_t start_ticks;  /* start time, clock ticks since boot (22) */
    uint64_t vsize_bytes;  /* virtual memory size (23) */
    uint64_t rss_pages;    /* resident set size (24) */
};

/* Parses the text of /proc/PID/stat (len bytes, not NUL-terminated). The
 * command name may hold spaces and parentheses: fields are counted from
 * its last ')'. Returns 0, or -1 if the text is not such a line. */
int aq_pstat_parse(const char *text, size_t len, struct aq_pstat *st);

/* Reads /proc/PID/stat. Returns 0, or -1 with errno (ENOENT or ESRCH: no
 * such process). */
int aq_pstat_read(pid_t pid, struct aq_pstat *st);

/* Whether pid is the process that started at start_ticks and is not a
 * zombie: the test before signalling a process known by pid and start. */
bool aq_pstat_is_alive(pid_t pid, uint64_t start_ticks);

/* Parses a children file ("12 345 6789 "): stores at most max pids in out
 * and returns how many the text holds. */
size_t aq_pstat_parse_pids(const char *text, size_t len, pid_t *out,
                           size_t max);

/* The children of pid, from /proc/PID/task/TID/children of each of its
 * threads: at most max stored in out; returns how many there are. 0 if the
 * process is gone. */
size_t aq_pstat_children(pid_t pid, pid_t *out, size_t max);

/* Appends to set (holding *n pids, room for max) the descendants of the
 * pids already in it, breadth first, each once. Returns *n. A process
 * that forks while it is walked may have a child that is missed. */
size_t aq_pstat_descendants(pid_t *set, size_t *n, size_t max);

/* Reads the file path (relative to dirfd, or AT_FDCWD) whole into a new
 * NUL-terminated buffer (the caller's to free), *len its length; NULL with
 * errno if it cannot be read. For /proc and cgroupfs files, which never
 * wait on a disk. */
char *aq_pstat_read_file(int dirfd, const char *path, size_t *len);

/* This process as Prometheus' client libraries describe one (their
 * process_* metrics). */
struct aq_pstat_self {
    double cpu_s;   /* user + system CPU time */
    double start_s; /* start time, Unix seconds */
    uint64_t vsize_bytes, rss_bytes;
    uint64_t open_fds; /* open file descriptors */
    uint64_t max_fds;  /* RLIMIT_NOFILE, the soft limit */
};

/* Reads /proc/self/stat, /proc/stat's btime, /proc/self/fd and the fd
 * limit into st. Returns 0, or -1 with errno if /proc cannot be read. */
int aq_pstat_self(struct aq_pstat_self *st);

/* The boot id (/proc/sys/kernel/random/boot_id) into buf (37 bytes), or
 * "" if it is unreadable. Start times are only comparable within a boot. */
void aq_pstat_boot_id(char buf[static 37]);

#endif
