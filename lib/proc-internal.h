/* SPDX-License-Identifier: MIT */
/*
 * lib/proc-internal.h: shared by lib/proc.c (children on the loop: their
 * pipes, the reaper, their cgroups), lib/proc_orphans.c (what a child
 * leaves behind: its orphans, and the signals that reach all of a child's
 * processes) and lib/proc_spawn.c (how a child is made). Not for daemon/.
 *
 * struct aq_procs owns the SIGCHLD evsignal, the list of running
 * children, the orphans re-parented to us and the jobs' cgroups waiting
 * to be removed.
 */
#ifndef AQ_PROC_INTERNAL_H
#define AQ_PROC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/util.h>

#include "proc.h"

struct aq_cgroup;
struct aq_runfile;
struct event;
struct event_base;

/* One of the child's output pipes and what was kept of it. */
struct stream {
    int fd;           /* owned: the parent's read end; -1 once closed */
    struct event *ev; /* owned: EV_READ|EV_PERSIST on fd; NULL once closed */
    char *buf;        /* owned: the first cap bytes */
    size_t len, alloc, cap;
    bool is_truncated; /* bytes beyond cap were read and dropped */
};

struct dying;

struct aq_proc {
    struct aq_procs *ps;           /* borrowed */
    LIST_ENTRY(aq_proc) link;      /* in ps->running while not reaped */
    pid_t pid;                     /* also its session and group id */
    uint64_t seq;                  /* spawn order, from 1 */
    bool is_linked;                /* in ps->running */
    bool is_exited;                /* reaped: status is set */
    bool is_killing;               /* aq_proc_kill was called */
    int status;                    /* from waitpid */
    int64_t start_us, duration_us; /* monotonic */
    int64_t kill_grace_us;
    int cg_fd;           /* owned: its cgroup's directory; -1 = none */
    char cg_name[64];    /* its cgroup, under the daemon's */
    struct dying *dying; /* the callback waits for it to empty; or NULL */
    struct stream out, err;
    int in_fd;             /* owned: the write end of stdin; -1 once closed */
    struct event *in_ev;   /* owned: EV_WRITE|EV_PERSIST on in_fd */
    char *in_data;         /* owned: a copy of opts->stdin_data */
    size_t in_len, in_pos; /* in_pos bytes of in_data are written */
    struct event *kill_ev; /* owned: SIGKILL after the grace; lazily made */
    struct event *done_ev; /* owned: runs cb from the loop */
    aq_proc_exit_cb *cb;
    void *arg;
};

/* A process re-parented to us that we did not spawn: a job's orphan. */
struct orphan {
    LIST_ENTRY(orphan) link;
    pid_t pid;
    uint64_t start_ticks;
    uint64_t owner_seq; /* the child whose session or group it is in; 0 */
    uint64_t seq_max;   /* else: the newest child running when first seen */
    bool is_killed;
};

/* A job's cgroup that was killed, removed once it is empty. */
struct dying {
    LIST_ENTRY(dying) link;
    int fd; /* owned: its directory */
    char name[64];
    struct aq_proc *p; /* borrowed: its callback waits for this; or NULL */
    int64_t since_us;  /* monotonic: when it was killed */
};

struct aq_procs {
    struct event_base *base;  /* borrowed */
    struct event *sigchld_ev; /* owned */
    LIST_HEAD(, aq_proc)
    running;                     /* not owned: spawned, not reaped;
                                    newest first */
    LIST_HEAD(, orphan) orphans; /* owned */
    LIST_HEAD(, dying) dying;    /* owned */
    struct event *scan_ev;       /* owned: looks for orphans */
    struct event *dying_ev;      /* owned: retries dying cgroups */
    int64_t dying_delay_us;      /* the next retry's */
    struct aq_cgroup *cg;        /* borrowed; NULL = none */
    struct aq_runfile *rf;       /* borrowed; NULL = none */
    bool use_clone3;             /* until the kernel refuses it */
    void *spawn_stack;           /* owned: SPAWN_STACK_SIZE; or NULL */
    int null_fd;                 /* owned: /dev/null, the stdin of jobs
                                    given none; -1 = none (a pipe then) */
    uint64_t seq;                /* of the newest spawn */
    size_t count;                /* live aq_proc objects */
    size_t norphans;
};

/* The stack a child made with CLONE_VM runs on until it execs. */
#define SPAWN_STACK_SIZE (64 * 1024)

/* ---- proc.c ---- */

/* The running child pid of ps, or NULL. */
struct aq_proc *procs_find(const struct aq_procs *ps, pid_t pid);
/* For tests: make children with fork instead of clone3 (cgroup mode). */
void aq_procs_set_clone3(struct aq_procs *ps, bool use_clone3);

/* ---- proc_orphans.c ---- */

/* Files the orphans among our children not seen yet under their owner. */
void procs_scan(struct aq_procs *ps);
/* Kills the orphans no running child may own any more; runs the scan
 * timer while there is something to see. */
void procs_settle(struct aq_procs *ps);
/* ps->scan_ev's callback: procs_scan, then procs_settle. */
void procs_scan_cb(evutil_socket_t fd, short what, void *arg);
/* The orphan pid (if it is one of ps's) was reaped: forgets it. */
void procs_orphan_reaped(struct aq_procs *ps, pid_t pid);
/* Signals everything of p's: its group, its descendants (if
 * with_descendants: a zombie has none, they were re-parented), the orphans
 * it owns and its cgroup. */
void proc_signal_all(struct aq_proc *p, int sig, bool with_descendants);

/* ---- proc_spawn.c ---- */

/* Makes a pipe for the child's stdio fd child_no: child_fd gets the child's
 * end (blocking, as programs expect), *parent_fd the non-blocking other end.
 * Both are close-on-exec and above 2. Returns 0, or -1 with errno and
 * nothing open. */
int aq_proc_pipe_open(int child_no, int *child_fd, int *parent_fd);
/* fd moved to 3 or above (keeping close-on-exec), so that the child's dup2
 * onto 0, 1 and 2 cannot clobber it: fd itself if it is already, else the
 * new fd, or -1 with errno and fd closed. */
int aq_proc_fd_above_stdio(int fd);

/* Starts opts->argv with child_fd[0..2] as its stdin, stdout and stderr,
 * leading a session (and process group) of its own, default signal
 * handlers, an empty signal mask and no other descriptor. cg_fd -1: with
 * clone(CLONE_VM|CLONE_VFORK) on ps->spawn_stack (made at the first call;
 * fork in sanitized builds).
 * Else in the cgroup whose directory cg_fd is, before it runs a single
 * instruction of the program: clone3(CLONE_INTO_CGROUP) while
 * ps->use_clone3 (cleared when the kernel refuses clone3), else fork and
 * the child writes itself into cgroup.procs before exec. Returns 0 with
 * *pid, or an errno value (the child's, when its exec failed). */
int aq_proc_spawn_child(struct aq_procs *ps, const struct aq_proc_opts *opts,
                        const int child_fd[3], int cg_fd, pid_t *pid);

#endif
