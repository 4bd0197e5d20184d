/* SPDX-License-Identifier: MIT */
/*
 * lib/proc.c: child processes on an event_base (lib/proc.h): their pipes,
 * the reaper and the jobs' cgroups. The reaper collects every waitable
 * child, ours or orphans. When a child of ours exits, its orphans are
 * looked for first (while it still counts as running), then its group and
 * cgroup are killed while the zombie still pins the ids, its pipes are
 * drained and closed, and the callback runs later from the loop. Orphans:
 * lib/proc_orphans.c; how children are made: lib/proc_spawn.c.
 */
#include "proc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cgroup.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "proc-internal.h"
#include "pstat.h"
#include "runfile.h"
#include "xmalloc.h"

#define BUF_MIN 4096          /* first allocation of a capture buffer */
#define SCRATCH_SIZE 16384    /* bytes read at once beyond the capture */
#define READS_PER_EVENT 4     /* bounds a fast writer's share of the loop */
#define DRAIN_MAX_READS 1024  /* at exit: a pipe holds at most 1 MiB */
#define DYING_FIRST_US 1000   /* first retry of a killed cgroup */
#define DYING_MAX_US 100000   /* retries back off up to this */
#define DYING_WAIT_US 2000000 /* a callback waits this for its cgroup */
#define FREE_WAIT_US 2000000  /* aq_procs_free waits this for cgroups */
#define CGROUP_NAME_TRIES 8   /* names tried for a job's cgroup */

static void
procs_link(struct aq_procs *ps, struct aq_proc *p)
{
    LIST_INSERT_HEAD(&ps->running, p, link);
    p->is_linked = true;
}

static void
procs_unlink(struct aq_procs *ps, struct aq_proc *p)
{
    if (!p->is_linked)
        return;
    LIST_REMOVE(p, link);
    p->is_linked = false;
    if (ps->rf != NULL)
        aq_runfile_remove(ps->rf, p->pid);
}

/* A linear search: the list holds the running exec jobs, a few hundred at
 * most, and it is walked once per reaped child. */
struct aq_proc *
procs_find(const struct aq_procs *ps, pid_t pid)
{
    struct aq_proc *p;

    LIST_FOREACH (p, &ps->running, link) {
        if (p->pid == pid)
            return p;
    }
    return NULL;
}

static void
stream_close(struct stream *s)
{
    if (s->ev != NULL) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (s->fd != -1) {
        close(s->fd);
        s->fd = -1;
    }
}

/* Reads at most max_reads times, until the pipe is empty; closes the stream
 * at end of file or on an error. The first cap bytes are kept. */
static void
stream_read(struct stream *s, int max_reads)
{
    char scratch[SCRATCH_SIZE];
    ssize_t n;
    int i;

    for (i = 0; i < max_reads && s->fd != -1; i++) {
        if (s->len < s->cap) {
            if (s->len == s->alloc) {
                s->alloc = s->alloc < BUF_MIN / 2 ? BUF_MIN : s->alloc * 2;
                if (s->alloc > s->cap)
                    s->alloc = s->cap;
                s->buf = xrealloc(s->buf, s->alloc);
            }
            n = read(s->fd, s->buf + s->len, s->alloc - s->len);
            if (n > 0)
                s->len += (size_t)n;
        } else {
            n = read(s->fd, scratch, sizeof scratch);
            if (n > 0)
                s->is_truncated = true;
        }
        if (n > 0 || (n == -1 && errno == EINTR))
            continue;
        if (n == -1 && errno == EAGAIN)
            return;
        stream_close(s); /* end of file, or an error that will not clear */
    }
}

static void
stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
    stream_read(arg, READS_PER_EVENT);
}

static void
stdin_close(struct aq_proc *p)
{
    if (p->in_ev != NULL) {
        event_free(p->in_ev);
        p->in_ev = NULL;
    }
    if (p->in_fd != -1) {
        close(p->in_fd);
        p->in_fd = -1;
    }
}

/*
 * write(2) that reports EPIPE without raising SIGPIPE, whatever the process
 * does with SIGPIPE: the signal is blocked around the write, and one raised
 * by it is consumed before the mask is restored. Pipes have no MSG_NOSIGNAL.
 */
static ssize_t
write_nosigpipe(int fd, const void *buf, size_t len)
{
    static const struct timespec no_wait = {0, 0};
    sigset_t pipe_set, old_set, pending;
    bool was_pending;
    ssize_t n;
    int saved;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    if (!was_pending)
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    n = write(fd, buf, len);
    if (!was_pending) {
        if (n == -1 && errno == EPIPE) {
            saved = errno;
            while (sigtimedwait(&pipe_set, NULL, &no_wait) == -1 &&
                   errno == EINTR)
                ;
            errno = saved;
        }
        saved = errno;
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);
        errno = saved;
    }
    return n;
}

static void
stdin_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_proc *p = arg;
    ssize_t n;

    while (p->in_pos < p->in_len) {
        n = write_nosigpipe(p->in_fd, p->in_data + p->in_pos,
                            p->in_len - p->in_pos);
        if (n > 0)
            p->in_pos += (size_t)n;
        else if (n == -1 && errno == EINTR)
            continue;
        else if (n == -1 && errno == EAGAIN)
            return;
        else
            break; /* EPIPE: the child closed its stdin, the rest is moot */
    }
    stdin_close(p); /* all written: the child sees end of file */
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_proc *p = arg;
    struct aq_proc_result res;

    memset(&res, 0, sizeof res);
    if (WIFEXITED(p->status)) {
        res.exit_code = WEXITSTATUS(p->status);
    } else {
        res.exit_code = -1;
        res.signal = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
    }
    res.out = p->out.buf != NULL ? p->out.buf : "";
    res.out_len = p->out.len;
    res.out_truncated = p->out.is_truncated;
    res.err = p->err.buf != NULL ? p->err.buf : "";
    res.err_len = p->err.len;
    res.err_truncated = p->err.is_truncated;
    res.duration_us = p->duration_us;
    if (p->cb != NULL)
        p->cb(p, &res, p->arg); /* may free p */
}

/* ---- jobs' cgroups ---- */

static void
dying_arm(struct aq_procs *ps)
{
    struct timeval tv = aq_clock_tv(ps->dying_delay_us);

    evtimer_add(ps->dying_ev, &tv);
}

/* p's cgroup was killed: remove it once empty; p's callback waits for it
 * if wait. Takes p's cgroup. */
static void
dying_add(struct aq_procs *ps, struct aq_proc *p, bool wait)
{
    struct dying *d = xcalloc(1, sizeof *d);

    d->fd = p->cg_fd;
    memcpy(d->name, p->cg_name, sizeof d->name);
    d->since_us = aq_clock_mono_us();
    if (wait) {
        d->p = p;
        p->dying = d;
    }
    p->cg_fd = -1;
    LIST_INSERT_HEAD(&ps->dying, d, link);
    ps->dying_delay_us = DYING_FIRST_US;
    dying_arm(ps);
}

static void
dying_free(struct dying *d)
{
    if (d->p != NULL) {
        d->p->dying = NULL;
        event_active(d->p->done_ev, EV_TIMEOUT, 1);
    }
    LIST_REMOVE(d, link);
    close(d->fd);
    free(d);
}

/* Removes the dying cgroups that are empty, kills again in the others (a
 * kernel without cgroup.kill needs it), and lets a callback that waited
 * too long go. */
static void
dying_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_procs *ps = arg;
    struct dying *d, *next;
    int64_t now_us = aq_clock_mono_us();

    for (d = LIST_FIRST(&ps->dying); d != NULL; d = next) {
        next = LIST_NEXT(d, link);
        if (aq_cgroup_job_populated(d->fd) != 1 &&
            aq_cgroup_job_remove(ps->cg, d->name) == 0) {
            dying_free(d);
            continue;
        }
        aq_cgroup_job_kill(ps->cg, d->fd);
        if (d->p != NULL && now_us - d->since_us > DYING_WAIT_US) {
            aq_log(AQ_LOG_WARN,
                   "exec: cgroup %s: processes still there %.1f s after "
                   "SIGKILL",
                   d->name, (double)(now_us - d->since_us) / 1e6);
            d->p->dying = NULL;
            event_active(d->p->done_ev, EV_TIMEOUT, 1);
            d->p = NULL;
        }
    }
    if (!LIST_EMPTY(&ps->dying)) {
        ps->dying_delay_us *= 2;
        if (ps->dying_delay_us > DYING_MAX_US)
            ps->dying_delay_us = DYING_MAX_US;
        dying_arm(ps);
    }
}

/* Makes the cgroup of a child about to be spawned. -1 if there is none to
 * make or it could not be made (then the child runs without one). */
static int
cgroup_make(struct aq_procs *ps, struct aq_proc *p, uint64_t job_id)
{
    struct aq_error err = {0};
    int fd = -1;

    if (ps->cg == NULL)
        return -1;
    for (int i = 0; fd == -1 && i < CGROUP_NAME_TRIES; i++) {
        snprintf(p->cg_name, sizeof p->cg_name,
                 AQ_CGROUP_JOB_PREFIX "%llu-%llu", (unsigned long long)job_id,
                 (unsigned long long)(p->seq + (uint64_t)i));
        fd = aq_cgroup_job_new(ps->cg, p->cg_name, &err);
        if (fd == -1 && errno != EEXIST)
            break;
    }
    if (fd == -1)
        aq_log(AQ_LOG_WARN, "%s; running the job without a cgroup",
               err.message);
    return fd;
}

/* ---- reaping ---- */

/* The child p was reaped with status: release its pipes and timers, kill
 * what is left in its cgroup, and schedule the callback (once the cgroup
 * is empty). */
static void
proc_exited(struct aq_proc *p, int status)
{
    struct aq_procs *ps = p->ps;

    p->status = status;
    p->is_exited = true;
    p->duration_us = aq_clock_mono_us() - p->start_us;
    procs_unlink(ps, p);
    if (p->kill_ev != NULL)
        evtimer_del(p->kill_ev);
    stdin_close(p);
    /* What the child wrote before it exited is in the pipes; a member of
     * its group still writing was just killed, so the drain ends. */
    stream_read(&p->out, DRAIN_MAX_READS);
    stream_close(&p->out);
    stream_read(&p->err, DRAIN_MAX_READS);
    stream_close(&p->err);
    if (p->cg_fd != -1) {
        if (aq_cgroup_job_populated(p->cg_fd) == 0 &&
            aq_cgroup_job_remove(ps->cg, p->cg_name) == 0) {
            close(p->cg_fd);
            p->cg_fd = -1;
        } else {
            aq_cgroup_job_kill(ps->cg, p->cg_fd);
            dying_add(ps, p, true);
            return;
        }
    }
    event_active(p->done_ev, EV_TIMEOUT, 1);
}

/* Reaps every waitable child. A child of ours is peeked at first (WNOWAIT):
 * while it is a zombie its pid cannot be reused, so killing its group then
 * cannot hit an unrelated process; and the orphans it made are looked for
 * while it still counts as running, so that they are known as its. */
static void
procs_reap(struct aq_procs *ps)
{
    struct aq_proc *p;
    bool reaped_orphan = false;
    siginfo_t si;
    pid_t pid;
    int status;

    for (;;) {
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: no child at all */
        }
        if (si.si_pid == 0)
            break; /* none has exited */
        p = procs_find(ps, si.si_pid);
        if (p != NULL) {
            procs_scan(ps);
            /* Leftovers, e.g. a background job. The zombie has no children
             * left to walk: they were re-parented to us (found by the
             * scan) before it could be waited for. */
            proc_signal_all(p, SIGKILL, false);
        }
        do
            pid = waitpid(si.si_pid, &status, WNOHANG);
        while (pid == -1 && errno == EINTR);
        if (pid != si.si_pid)
            break; /* cannot be: do not spin on it */
        if (p != NULL) {
            proc_exited(p, status);
        } else {
            procs_orphan_reaped(ps, pid);
            reaped_orphan = true;
        }
    }
    /* An orphan's exit may have orphaned more (a child's, its children were
     * looked for above); an exit may have ended the last owner of some. */
    if (reaped_orphan)
        procs_scan(ps);
    procs_settle(ps);
}

static void
sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    procs_reap(arg);
}

struct aq_procs *
aq_procs_new(struct event_base *base)
{
    struct aq_procs *ps = xcalloc(1, sizeof *ps);

    ps->base = base;
    LIST_INIT(&ps->running);
    LIST_INIT(&ps->orphans);
    LIST_INIT(&ps->dying);
    ps->use_clone3 = true;
    /* Above stdio, so that no dup2 of the child's clobbers it. */
    ps->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (ps->null_fd != -1)
        ps->null_fd = aq_proc_fd_above_stdio(ps->null_fd);
    ps->sigchld_ev = evsignal_new(base, SIGCHLD, sigchld_cb, ps);
    ps->scan_ev = evtimer_new(base, procs_scan_cb, ps);
    ps->dying_ev = evtimer_new(base, dying_cb, ps);
    evsignal_add(ps->sigchld_ev, NULL);
    return ps;
}

/* At free: the dying cgroups, killed and removed, waiting for them to
 * empty up to FREE_WAIT_US. */
static void
dying_drain(struct aq_procs *ps)
{
    int64_t deadline_us = aq_clock_mono_us() + FREE_WAIT_US;
    struct dying *d;

    while ((d = LIST_FIRST(&ps->dying)) != NULL) {
        if ((aq_cgroup_job_populated(d->fd) != 1 &&
             aq_cgroup_job_remove(ps->cg, d->name) == 0) ||
            aq_clock_mono_us() > deadline_us) {
            d->p = NULL;
            dying_free(d);
            continue;
        }
        aq_cgroup_job_kill(ps->cg, d->fd);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ; /* killed orphans of ours */
        poll(NULL, 0, 1);
    }
}

void
aq_procs_free(struct aq_procs *ps)
{
    struct orphan *o;

    if (ps == NULL)
        return;
    assert(ps->count == 0);
    event_free(ps->sigchld_ev);
    procs_reap(ps); /* children that exited since the loop last ran */
    event_free(ps->scan_ev);
    event_free(ps->dying_ev);
    dying_drain(ps);
    while ((o = LIST_FIRST(&ps->orphans)) != NULL) {
        /* Killed by procs_settle (nothing runs); reaped by whoever comes
         * after (aq_procs_kill_all at exit). */
        LIST_REMOVE(o, link);
        if (ps->rf != NULL)
            aq_runfile_remove(ps->rf, o->pid);
        free(o);
    }
    if (ps->null_fd != -1)
        close(ps->null_fd);
    free(ps->spawn_stack);
    free(ps);
}

void
aq_procs_set_cgroup(struct aq_procs *ps, struct aq_cgroup *cg)
{
    ps->cg = cg;
}

void
aq_procs_set_runfile(struct aq_procs *ps, struct aq_runfile *rf)
{
    ps->rf = rf;
}

void
aq_procs_set_clone3(struct aq_procs *ps, bool use_clone3)
{
    ps->use_clone3 = use_clone3;
}

size_t
aq_procs_count(const struct aq_procs *ps)
{
    return ps->count;
}

/* 0 if path is a directory the daemon may enter, else -1 with errno. */
static int
dir_check(const char *path)
{
    struct stat st;

    if (stat(path, &st) == -1)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return faccessat(AT_FDCWD, path, X_OK, AT_EACCESS);
}

/* Reports why opts cannot run: the cwd if it is the culprit, else argv[0]. */
static void
spawn_error(const struct aq_proc_opts *opts, int error, struct aq_error *err)
{
    if (opts->cwd != NULL && dir_check(opts->cwd) == -1)
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "exec: cwd %s: %s", opts->cwd,
                     strerror(errno));
    else
        aq_error_set(err,
                     error == ENOENT || error == EACCES || error == ENOTDIR ||
                             error == ENOEXEC || error == ELOOP ||
                             error == ENAMETOOLONG
                         ? AQ_ERR_INVALID_PARAMS
                         : AQ_ERR_INTERNAL,
                     "exec: %s: %s", opts->argv[0], strerror(error));
}

struct aq_proc *
aq_proc_spawn(struct aq_procs *ps, const struct aq_proc_opts *opts,
              aq_proc_exit_cb *cb, void *arg, struct aq_error *err)
{
    struct aq_proc *p = xcalloc(1, sizeof *p);
    int child_fd[3] = {-1, -1, -1};
    int *parent_fd[3];
    struct aq_pstat st;
    bool has_stdin;
    int i, rc;

    p->ps = ps;
    p->in_fd = p->out.fd = p->err.fd = p->cg_fd = -1;
    parent_fd[0] = &p->in_fd;
    parent_fd[1] = &p->out.fd;
    parent_fd[2] = &p->err.fd;
    if (opts->argv == NULL || opts->argv[0] == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "exec: argv: empty");
        goto fail;
    }
    if (opts->argv[0][0] != '/') {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "exec: %s: not an absolute path", opts->argv[0]);
        goto fail;
    }
    /* The usual mistakes are found here, before any fork. It is also the
     * only report of them where posix_spawn is emulated by fork (valgrind),
     * since the child's exec error then never reaches the parent. */
    if (faccessat(AT_FDCWD, opts->argv[0], X_OK, AT_EACCESS) == -1 ||
        (opts->cwd != NULL && dir_check(opts->cwd) == -1)) {
        spawn_error(opts, errno, err);
        goto fail;
    }
    /* No stdin to write: the child reads /dev/null, end of file at once,
     * without a pipe to make and close. */
    has_stdin = opts->stdin_data != NULL && opts->stdin_len > 0;
    if (!has_stdin && ps->null_fd != -1)
        child_fd[0] = ps->null_fd;
    for (i = 0; i < 3; i++) {
        if (child_fd[i] != -1)
            continue;
        if (aq_proc_pipe_open(i, &child_fd[i], parent_fd[i]) == -1) {
            aq_error_set(err, AQ_ERR_INTERNAL, "exec: pipe: %s",
                         strerror(errno));
            goto fail;
        }
    }

    p->seq = ++ps->seq;
    p->cg_fd = cgroup_make(ps, p, opts->job_id);
    p->start_us = aq_clock_mono_us();
    rc = aq_proc_spawn_child(ps, opts, child_fd, p->cg_fd, &p->pid);
    for (i = 0; i < 3; i++) {
        if (child_fd[i] != ps->null_fd)
            close(child_fd[i]);
        child_fd[i] = -1;
    }
    if (rc != 0) {
        spawn_error(opts, rc, err);
        goto fail;
    }
    /* Registered before the loop can run sigchld_cb, so an early exit is
     * not missed; recorded while its pid is pinned (not reaped yet). */
    procs_link(ps, p);
    ps->count++;
    if (ps->rf != NULL && aq_pstat_read(p->pid, &st) == 0)
        aq_runfile_add(ps->rf, p->pid, st.start_ticks);
    procs_settle(ps); /* the scan timer runs while a child does */

    p->cb = cb;
    p->arg = arg;
    p->kill_grace_us = opts->kill_grace_us;
    p->out.cap = p->err.cap = opts->capture;
    p->done_ev = event_new(ps->base, -1, 0, done_cb, p);
    p->out.ev = event_new(ps->base, p->out.fd, EV_READ | EV_PERSIST,
                          stream_read_cb, &p->out);
    p->err.ev = event_new(ps->base, p->err.fd, EV_READ | EV_PERSIST,
                          stream_read_cb, &p->err);
    event_add(p->out.ev, NULL);
    event_add(p->err.ev, NULL);
    if (has_stdin) {
        /* A copy: the caller's buffer need not outlive the call. */
        p->in_data = xmemdup(opts->stdin_data, opts->stdin_len);
        p->in_len = opts->stdin_len;
        p->in_ev = event_new(ps->base, p->in_fd, EV_WRITE | EV_PERSIST,
                             stdin_write_cb, p);
        event_add(p->in_ev, NULL);
    } else {
        stdin_close(p); /* a pipe (no /dev/null): end of file at once */
    }
    return p;

fail:
    for (i = 0; i < 3; i++) {
        if (child_fd[i] != -1 && child_fd[i] != ps->null_fd)
            close(child_fd[i]);
        if (*parent_fd[i] != -1)
            close(*parent_fd[i]);
    }
    if (p->cg_fd != -1) {
        aq_cgroup_job_remove(ps->cg, p->cg_name);
        close(p->cg_fd);
    }
    free(p);
    return NULL;
}

static void
kill_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_proc *p = arg;

    if (!p->is_exited)
        proc_signal_all(p, SIGKILL, true);
}

void
aq_proc_kill(struct aq_proc *p)
{
    struct timeval tv;

    if (p->is_exited || p->is_killing)
        return;
    p->is_killing = true;
    procs_scan(p->ps); /* its orphans get the SIGTERM too */
    proc_signal_all(p, SIGTERM, true);
    p->kill_ev = evtimer_new(p->ps->base, kill_timer_cb, p);
    tv = aq_clock_tv(p->kill_grace_us);
    evtimer_add(p->kill_ev, &tv);
}

void
aq_proc_free(struct aq_proc *p)
{
    struct aq_procs *ps;

    if (p == NULL)
        return;
    ps = p->ps;
    if (!p->is_exited) {
        /* Reaped later by procs_reap as a child it does not know. */
        procs_scan(ps);
        proc_signal_all(p, SIGKILL, true);
        procs_unlink(ps, p);
        if (p->cg_fd != -1)
            dying_add(ps, p, false);
        procs_settle(ps);
    }
    if (p->dying != NULL) /* its cgroup goes on without the callback */
        p->dying->p = NULL;
    stdin_close(p);
    stream_close(&p->out);
    stream_close(&p->err);
    if (p->kill_ev != NULL)
        event_free(p->kill_ev);
    event_free(p->done_ev);
    free(p->out.buf);
    free(p->err.buf);
    free(p->in_data);
    ps->count--;
    free(p);
}

pid_t
aq_proc_pid(const struct aq_proc *p)
{
    return p->pid;
}
