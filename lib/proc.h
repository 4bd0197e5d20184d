/* SPDX-License-Identifier: MIT */
/*
 * lib/proc.h: child processes on an event_base, for exec jobs. Each child is
 * spawned without a shell in a session and process group of its own, with
 * stdin, stdout and stderr on non-blocking pipes watched by libevent; its
 * exit is observed through SIGCHLD (an evsignal owned by struct aq_procs)
 * and waitpid(WNOHANG), never by blocking. When the child exits, what is
 * left of it is killed, so a job leaves no process behind:
 * - with a delegated cgroup (aq_procs_set_cgroup), each child runs in a
 *   cgroup of its own, and everything in it is killed (cgroup.kill);
 * - always, as a child subreaper (the caller sets PR_SET_CHILD_SUBREAPER),
 *   its process group, the descendants it still has, and the orphans
 *   re-parented to us that belong to it: an orphan in the session or group
 *   of a running child is that child's; any other (one that called setsid
 *   and lost its parent) is killed once every child that was running when
 *   it was first seen has ended.
 */
#ifndef AQ_PROC_H
#define AQ_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct aq_error;
struct aq_procs;
struct aq_proc;
struct aq_cgroup;
struct aq_runfile;

/* The reaper: one per event_base and process (it owns SIGCHLD on base).
 * It also reaps children it did not spawn (orphans re-parented to a
 * subreaper). Free with aq_procs_free after every aq_proc is freed: it
 * kills the orphans left and removes the jobs' cgroups, waiting up to 2 s
 * for them to empty (it blocks: for after the loop). */
struct aq_procs *aq_procs_new(struct event_base *base);
void aq_procs_free(struct aq_procs *ps);          /* NULL is fine */
size_t aq_procs_count(const struct aq_procs *ps); /* live aq_proc objects */

/* Runs each child from now on in a cgroup of its own under cg (borrowed,
 * NULL for none), named job-JOBID-N. */
void aq_procs_set_cgroup(struct aq_procs *ps, struct aq_cgroup *cg);
/* Records each child and each orphan seen in rf (borrowed, NULL for none)
 * while it runs, for the next run to kill if this one dies first. */
void aq_procs_set_runfile(struct aq_procs *ps, struct aq_runfile *rf);
/* Orphans re-parented to us that are still tracked (not yet reaped). */
size_t aq_procs_orphans(const struct aq_procs *ps);

/* At exit: SIGKILL every remaining child of this process with its group
 * and its descendants, such as a job's grandchild that left its session
 * with setsid and was re-parented to us as subreaper, and reap them, for
 * up to timeout_us. Blocks: for after the loop has ended. Returns how many
 * were killed. */
int aq_procs_kill_all(int64_t timeout_us);

struct aq_proc_opts {
    const char *const *argv; /* argv[0] an absolute path; NULL-terminated */
    const char *const *envp; /* the whole environment; NULL-terminated */
    const char *cwd;         /* NULL = the daemon's */
    const char *stdin_data;  /* written then closed; NULL = empty stdin */
    size_t stdin_len;
    size_t capture;        /* bytes kept per stream; more is read and
                              dropped, and marked truncated */
    int64_t kill_grace_us; /* SIGTERM -> SIGKILL delay on kill */
    uint64_t job_id;       /* names its cgroup; 0 is fine */
};

struct aq_proc_result {
    int exit_code;   /* exit status, or -1 if killed by a signal */
    int signal;      /* the signal that killed it, or 0 */
    const char *out; /* captured stdout (not NUL-terminated), borrowed */
    size_t out_len;
    bool out_truncated;
    const char *err; /* captured stderr, borrowed */
    size_t err_len;
    bool err_truncated;
    int64_t duration_us; /* spawn to exit, monotonic */
};

/* The child has exited and its pipes are drained (and, with a cgroup, the
 * cgroup is empty, or 2 s have passed since it was killed): res is
 * borrowed for the call only. Fires from the loop, never inside
 * aq_proc_spawn or kill. */
typedef void aq_proc_exit_cb(struct aq_proc *p,
                             const struct aq_proc_result *res, void *arg);

/* Spawns opts->argv. Returns the running child (the caller's: free with
 * aq_proc_free after the callback, or to abandon it), or NULL with err when
 * it could not start (no such file, permission, fork failure). */
struct aq_proc *aq_proc_spawn(struct aq_procs *ps,
                              const struct aq_proc_opts *opts,
                              aq_proc_exit_cb *cb, void *arg,
                              struct aq_error *err);

/* Timeout or cancel: SIGTERM to the child's process group, its
 * descendants, its orphans and its cgroup, SIGKILL to them after
 * kill_grace_us if the child has not exited. The callback still fires once
 * it has. Harmless after exit or a second time. */
void aq_proc_kill(struct aq_proc *p);

/* SIGKILL to all of the child's if it still runs (it is then reaped later
 * by ps, no zombie), and releases everything; no callback afterwards. */
void aq_proc_free(struct aq_proc *p); /* NULL is fine */

pid_t aq_proc_pid(const struct aq_proc *p);

#endif
