/* SPDX-License-Identifier: MIT */
/*
 * lib/proc.c: child processes on an event_base. Each child is made by
 * posix_spawn (vfork-based) in a process group of its own, with default
 * signal handlers, an empty signal mask and no descriptor but 0, 1 and 2.
 * struct aq_procs owns the SIGCHLD evsignal and the list of running children;
 * its reaper collects every waitable child, ours or re-parented orphans. When
 * a child of ours exits, its group is killed while the zombie still pins the
 * group id, its pipes are drained and closed, and the callback runs later
 * from the loop.
 */
#include "proc.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "xmalloc.h"

#define BUF_MIN 4096         /* first allocation of a capture buffer */
#define SCRATCH_SIZE 16384   /* bytes read at once beyond the capture */
#define READS_PER_EVENT 4    /* bounds a fast writer's share of the loop */
#define DRAIN_MAX_READS 1024 /* at exit: a pipe holds at most 1 MiB */

/* One of the child's output pipes and what was kept of it. */
struct stream {
    int fd;           /* owned: the parent's read end; -1 once closed */
    struct event *ev; /* owned: EV_READ|EV_PERSIST on fd; NULL once closed */
    char *buf;        /* owned: the first cap bytes */
    size_t len, alloc, cap;
    bool is_truncated; /* bytes beyond cap were read and dropped */
};

struct aq_proc {
    struct aq_procs *ps;           /* borrowed */
    struct aq_proc *prev, *next;   /* in ps->running while not reaped */
    pid_t pid;                     /* also the process group id */
    bool is_linked;                /* in ps->running */
    bool is_exited;                /* reaped: status is set */
    bool is_killing;               /* aq_proc_kill was called */
    int status;                    /* from waitpid */
    int64_t start_us, duration_us; /* monotonic */
    int64_t kill_grace_us;
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

struct aq_procs {
    struct event_base *base;  /* borrowed */
    struct event *sigchld_ev; /* owned */
    struct aq_proc *running;  /* not owned: spawned and not yet reaped */
    size_t count;             /* live aq_proc objects */
};

static void
procs_link(struct aq_procs *ps, struct aq_proc *p)
{
    p->prev = NULL;
    p->next = ps->running;
    if (ps->running != NULL)
        ps->running->prev = p;
    ps->running = p;
    p->is_linked = true;
}

static void
procs_unlink(struct aq_procs *ps, struct aq_proc *p)
{
    if (!p->is_linked)
        return;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        ps->running = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    p->is_linked = false;
}

/* A linear search: the list holds the running exec jobs, a few hundred at
 * most, and it is walked once per reaped child. */
static struct aq_proc *
procs_find(const struct aq_procs *ps, pid_t pid)
{
    struct aq_proc *p;

    for (p = ps->running; p != NULL; p = p->next) {
        if (p->pid == pid)
            return p;
    }
    return NULL;
}

/* Signals the child's whole group. Only the leader may be left if it moved
 * itself to another group: then signal it alone. */
static void
group_signal(const struct aq_proc *p, int sig)
{
    if (kill(-p->pid, sig) == -1 && errno == ESRCH)
        kill(p->pid, sig);
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

/* The child p was reaped with status: release its pipes and timers, and
 * schedule the callback. */
static void
proc_exited(struct aq_proc *p, int status)
{
    p->status = status;
    p->is_exited = true;
    p->duration_us = aq_clock_mono_us() - p->start_us;
    procs_unlink(p->ps, p);
    if (p->kill_ev != NULL)
        evtimer_del(p->kill_ev);
    stdin_close(p);
    /* What the child wrote before it exited is in the pipes; a member of
     * its group still writing was just killed, so the drain ends. */
    stream_read(&p->out, DRAIN_MAX_READS);
    stream_close(&p->out);
    stream_read(&p->err, DRAIN_MAX_READS);
    stream_close(&p->err);
    event_active(p->done_ev, EV_TIMEOUT, 1);
}

/* Reaps every waitable child. A child of ours is peeked at first (WNOWAIT):
 * while it is a zombie its pid cannot be reused, so killing its group then
 * cannot hit an unrelated process. */
static void
procs_reap(struct aq_procs *ps)
{
    struct aq_proc *p;
    siginfo_t si;
    pid_t pid;
    int status;

    for (;;) {
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1) {
            if (errno == EINTR)
                continue;
            return; /* ECHILD: no child at all */
        }
        if (si.si_pid == 0)
            return; /* none has exited */
        p = procs_find(ps, si.si_pid);
        if (p != NULL)
            group_signal(p, SIGKILL); /* leftovers, e.g. a background job */
        do
            pid = waitpid(si.si_pid, &status, WNOHANG);
        while (pid == -1 && errno == EINTR);
        if (pid != si.si_pid)
            return; /* cannot be: do not spin on it */
        if (p != NULL)
            proc_exited(p, status);
    }
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
    ps->sigchld_ev = evsignal_new(base, SIGCHLD, sigchld_cb, ps);
    evsignal_add(ps->sigchld_ev, NULL);
    return ps;
}

void
aq_procs_free(struct aq_procs *ps)
{
    if (ps == NULL)
        return;
    assert(ps->count == 0);
    event_free(ps->sigchld_ev);
    procs_reap(ps); /* children that exited since the loop last ran */
    free(ps);
}

/* Calls fn(pid) for each child of this process, from /proc. */
static void
children_each(void (*fn)(pid_t pid, void *arg), void *arg)
{
    DIR *tasks = opendir("/proc/self/task");
    struct dirent *t;

    while (tasks != NULL && (t = readdir(tasks)) != NULL) {
        char path[300];
        FILE *f;
        long pid;

        if (t->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        while (fscanf(f, "%ld", &pid) == 1)
            fn((pid_t)pid, arg);
        fclose(f);
    }
    if (tasks != NULL)
        closedir(tasks);
}

static void
kill_child(pid_t pid, void *arg)
{
    int *n = arg;

    /* A setsid'd orphan leads its own group: take the group with it. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    (*n)++;
}

int
aq_procs_kill_all(int64_t timeout_us)
{
    int64_t deadline_us = aq_clock_mono_us() + timeout_us;
    int total = 0;

    for (;;) {
        int n = 0;

        children_each(kill_child, &n);
        total += n;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (n == 0 || aq_clock_mono_us() > deadline_us)
            return total;
        poll(NULL, 0, 5); /* give the killed ones a moment to die */
    }
}

size_t
aq_procs_count(const struct aq_procs *ps)
{
    return ps->count;
}

/* Moves fd to 3 or above (keeping close-on-exec), so that the child's
 * dup2 onto 0, 1 and 2 cannot clobber another of its pipe ends. Returns the
 * new fd, or -1 with errno and fd closed. */
static int
fd_above_stdio(int fd)
{
    int nfd, saved;

    if (fd > STDERR_FILENO)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    saved = errno;
    close(fd);
    errno = saved;
    return nfd;
}

/* Makes a pipe for the child's stdio fd child_no: child_fd gets the child's
 * end (blocking, as programs expect), *parent_fd the non-blocking other end.
 * Both are close-on-exec. Returns 0, or -1 with errno and nothing open. */
static int
pipe_open(int child_no, int *child_fd, int *parent_fd)
{
    int fds[2], saved;
    int child_end = child_no == STDIN_FILENO ? 0 : 1;

    /* Not O_NONBLOCK in pipe2: it would apply to the child's end too. */
    if (pipe2(fds, O_CLOEXEC) == -1)
        return -1;
    fds[0] = fd_above_stdio(fds[0]);
    fds[1] = fd_above_stdio(fds[1]);
    if (fds[0] == -1 || fds[1] == -1)
        goto fail;
    if (fcntl(fds[1 - child_end], F_SETFL, O_NONBLOCK) == -1)
        goto fail;
    *child_fd = fds[child_end];
    *parent_fd = fds[1 - child_end];
    return 0;

fail:
    saved = errno;
    if (fds[0] != -1)
        close(fds[0]);
    if (fds[1] != -1)
        close(fds[1]);
    errno = saved;
    return -1;
}

/* posix_spawn with the child's setup; returns 0 or an errno value. */
static int
spawn_child(const struct aq_proc_opts *opts, const int child_fd[3], pid_t *pid)
{
    static const char *const no_env[] = {NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t empty, all;
    int rc, i;

    sigemptyset(&empty);
    /* The daemon ignores SIGPIPE and libevent catches signals: a job starts
     * with every handler at its default (SIGKILL and SIGSTOP cannot be). */
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    rc = 0;
    for (i = 0; rc == 0 && i < 3; i++)
        rc = posix_spawn_file_actions_adddup2(&fa, child_fd[i], i);
    if (rc == 0 && opts->cwd != NULL)
        rc = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
    if (rc == 0) /* no descriptor of the daemon's leaks into the job */
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                                 POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &empty);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0)
        rc = posix_spawn(
            pid, opts->argv[0], &fa, &attr, (char *const *)opts->argv,
            (char *const *)(opts->envp != NULL ? opts->envp : no_env));
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
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
    int i, rc;

    p->ps = ps;
    p->in_fd = p->out.fd = p->err.fd = -1;
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
    for (i = 0; i < 3; i++) {
        if (pipe_open(i, &child_fd[i], parent_fd[i]) == -1) {
            aq_error_set(err, AQ_ERR_INTERNAL, "exec: pipe: %s",
                         strerror(errno));
            goto fail;
        }
    }

    p->start_us = aq_clock_mono_us();
    rc = spawn_child(opts, child_fd, &p->pid);
    for (i = 0; i < 3; i++) {
        close(child_fd[i]);
        child_fd[i] = -1;
    }
    if (rc != 0) {
        spawn_error(opts, rc, err);
        goto fail;
    }
    /* Registered before the loop can run sigchld_cb, so an early exit is
     * not missed. Where posix_spawn is emulated by fork, the parent may run
     * before the child's own setpgid: do it here too, as shells do (it
     * fails harmlessly once the child has exec'd). */
    procs_link(ps, p);
    ps->count++;
    setpgid(p->pid, p->pid);

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
    if (opts->stdin_data != NULL && opts->stdin_len > 0) {
        /* A copy: the caller's buffer need not outlive the call. */
        p->in_data = xmalloc(opts->stdin_len);
        memcpy(p->in_data, opts->stdin_data, opts->stdin_len);
        p->in_len = opts->stdin_len;
        p->in_ev = event_new(ps->base, p->in_fd, EV_WRITE | EV_PERSIST,
                             stdin_write_cb, p);
        event_add(p->in_ev, NULL);
    } else {
        stdin_close(p); /* empty stdin: end of file at once */
    }
    return p;

fail:
    for (i = 0; i < 3; i++) {
        if (child_fd[i] != -1)
            close(child_fd[i]);
        if (*parent_fd[i] != -1)
            close(*parent_fd[i]);
    }
    free(p);
    return NULL;
}

static void
kill_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_proc *p = arg;

    if (!p->is_exited)
        group_signal(p, SIGKILL);
}

void
aq_proc_kill(struct aq_proc *p)
{
    struct timeval tv;

    if (p->is_exited || p->is_killing)
        return;
    p->is_killing = true;
    group_signal(p, SIGTERM);
    p->kill_ev = evtimer_new(p->ps->base, kill_timer_cb, p);
    tv = aq_clock_tv(p->kill_grace_us);
    evtimer_add(p->kill_ev, &tv);
}

void
aq_proc_free(struct aq_proc *p)
{
    if (p == NULL)
        return;
    if (!p->is_exited) {
        /* Reaped later by procs_reap as a child it does not know. */
        group_signal(p, SIGKILL);
        procs_unlink(p->ps, p);
    }
    stdin_close(p);
    stream_close(&p->out);
    stream_close(&p->err);
    if (p->kill_ev != NULL)
        event_free(p->kill_ev);
    event_free(p->done_ev);
    free(p->out.buf);
    free(p->err.buf);
    free(p->in_data);
    p->ps->count--;
    free(p);
}

pid_t
aq_proc_pid(const struct aq_proc *p)
{
    return p->pid;
}
