/* SPDX-License-Identifier: MIT */
/*
 * lib/proc_spawn.c: how an exec job's process is made (proc-internal.h).
 * Without a cgroup, clone(CLONE_VM|CLONE_VFORK), as posix_spawn does, but
 * on a stack the caller keeps from one spawn to the next (posix_spawn maps
 * and unmaps one per call, and its file actions query the descriptor limit
 * each). Into a cgroup, a fork-like clone3 or fork. Either way, between it
 * and execve the child calls only async-signal-safe functions, and every
 * signal stays blocked until its handlers are back to their defaults, so
 * no handler of the daemon's (such as libevent's, which writes to the
 * daemon's signal pipe) runs in it.
 */
#include "proc-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xmalloc.h"

#ifdef __has_include
#if __has_include(<linux/sched.h>)
#include <linux/sched.h>
#endif
#endif

#if defined(CLONE_INTO_CGROUP) && defined(SYS_clone3)
#define HAVE_CLONE_INTO_CGROUP 1
#endif

/* A sanitizer's runtime cannot follow a child that runs on a stack of its
 * own in the daemon's memory (ASan's shadow and per-thread state are
 * shared with it): sanitized builds fork instead. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SPAWN_SHARES_MEMORY 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer)
#define SPAWN_SHARES_MEMORY 0
#endif
#endif
#ifndef SPAWN_SHARES_MEMORY
#define SPAWN_SHARES_MEMORY 1
#endif

static const char *const no_env[] = {NULL};

int
aq_proc_fd_above_stdio(int fd)
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

int
aq_proc_pipe_open(int child_no, int *child_fd, int *parent_fd)
{
    int fds[2], saved;
    int child_end = child_no == STDIN_FILENO ? 0 : 1;

    /* Not O_NONBLOCK in pipe2: it would apply to the child's end too. */
    if (pipe2(fds, O_CLOEXEC) == -1)
        return -1;
    fds[0] = aq_proc_fd_above_stdio(fds[0]);
    fds[1] = aq_proc_fd_above_stdio(fds[1]);
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

/* Closes every descriptor from 3 up but keep (-1: none), which stays
 * open until exec (it is close-on-exec). Now, not at exec: the parent
 * resumes before the exec closes anything, and a pipe end the daemon has
 * just closed but the child still holds keeps the daemon's epoll
 * registration of it alive (libevent deletes it later, by a number now
 * closed or reused), which then reports that pipe's end of file again and
 * again. close_range where the kernel has it (5.9), else one by one. */
static void
child_close_from_3(int keep)
{
    unsigned lo = STDERR_FILENO + 1;
    struct rlimit rl;

    if (keep >= (int)lo) {
        if (keep > (int)lo && close_range(lo, (unsigned)keep - 1, 0) == -1)
            goto slow;
        lo = (unsigned)keep + 1;
    }
    if (close_range(lo, ~0U, 0) == 0)
        return;
slow:
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur > 1048576)
        rl.rlim_cur = 1048576;
    for (int fd = STDERR_FILENO + 1; fd < (int)rl.rlim_cur; fd++) {
        if (fd != keep)
            close(fd);
    }
}

/* In the child, after fork, clone3 or clone: the setup posix_spawn would
 * do, then exec. Async-signal-safe calls only; never returns. procs_fd:
 * the cgroup's cgroup.procs to join first, or -1. If the exec fails, its
 * errno goes to err_fd (a pipe: after fork), else to *err_out (the
 * parent's memory: after clone with CLONE_VM). */
static void __attribute__((noreturn))
child_exec(const struct aq_proc_opts *opts, const int child_fd[3], int procs_fd,
           int err_fd, int *err_out)
{
    struct sigaction dfl;
    sigset_t empty;
    int sig, i, error;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL); /* glibc's own ones refuse: moot */
    }
    if (procs_fd != -1 && write(procs_fd, "0", 1) != 1)
        goto fail;
    if (setsid() == -1)
        goto fail;
    for (i = 0; i < 3; i++) {
        if (dup2(child_fd[i], i) == -1)
            goto fail;
    }
    if (opts->cwd != NULL && chdir(opts->cwd) == -1)
        goto fail;
    child_close_from_3(err_fd); /* err_fd's end of file at exec: success */
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(opts->argv[0], (char *const *)opts->argv,
           (char *const *)(opts->envp != NULL ? opts->envp : no_env));
fail:
    error = errno;
    if (err_out != NULL)
        *err_out = error;
    else
        while (write(err_fd, &error, sizeof error) == -1 && errno == EINTR)
            ;
    _exit(127);
}

/* Shared by the parent and the child of clone(CLONE_VM): the parent sleeps
 * until the child has exec'd or exited, so the child may write error. */
struct vm_child {
    const struct aq_proc_opts *opts;
    const int *child_fd;
    int error; /* the child's errno if it did not get to run the program */
};

static int
vm_child_main(void *arg)
{
    struct vm_child *c = arg;

    child_exec(c->opts, c->child_fd, -1, -1, &c->error);
}

/* clone(CLONE_VM|CLONE_VFORK) on stack: no copy of the daemon's memory,
 * and the parent resumes once the child has exec'd. Returns 0 or an errno
 * value (the child's, when its exec failed; it is reaped then). */
static int
vm_spawn(const struct aq_proc_opts *opts, const int child_fd[3], void *stack,
         size_t stack_size, pid_t *pid)
{
    struct vm_child c = {.opts = opts, .child_fd = child_fd, .error = 0};
    /* The stack grows down from its end, 16-byte aligned. */
    char *top = (char *)(((uintptr_t)stack + stack_size) & ~(uintptr_t)15);
    sigset_t all, old;
    pid_t child;
    int rc = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    child = clone(vm_child_main, top, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
    if (child == -1)
        rc = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (child != -1 && c.error != 0) {
        while (waitpid(child, NULL, 0) == -1 && errno == EINTR)
            ;
        rc = c.error;
    } else if (child != -1) {
        *pid = child;
    }
    return rc;
}

/* A fork-like clone3 into the cgroup of cg_fd: the pid (0 in the child),
 * or -1 with errno. */
static pid_t
clone_into(int cg_fd)
{
#ifdef HAVE_CLONE_INTO_CGROUP
    struct clone_args ca;

    memset(&ca, 0, sizeof ca);
    /* CLONE_VFORK: we sleep until the child has exec'd, so it runs at
     * once, as posix_spawn's does (the memory is still a copy). */
    ca.flags = CLONE_INTO_CGROUP | CLONE_VFORK;
    ca.exit_signal = SIGCHLD;
    ca.cgroup = (__u64)cg_fd;
    return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
#else
    (void)cg_fd;
    errno = ENOSYS;
    return -1;
#endif
}

static int
fork_child(const struct aq_proc_opts *opts, const int child_fd[3], int cg_fd,
           bool *use_clone3, pid_t *pid)
{
    int err_pipe[2], procs_fd = -1, child_error = 0, rc = 0;
    sigset_t all, old;
    pid_t child = -1;
    ssize_t n;

    if (pipe2(err_pipe, O_CLOEXEC) == -1)
        return errno;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (cg_fd == -1) {
        child = fork();
    } else {
        if (*use_clone3) {
            child = clone_into(cg_fd);
            /* Older kernels (< 5.7), seccomp filters and valgrind refuse
             * clone3 or its cgroup: fork and join from the child instead. */
            if (child == -1 && (errno == ENOSYS || errno == E2BIG ||
                                errno == EPERM || errno == EINVAL))
                *use_clone3 = false;
        }
        if (!*use_clone3) {
            procs_fd = openat(cg_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
            child = procs_fd != -1 ? fork() : -1;
        }
    }
    if (child == 0)
        child_exec(opts, child_fd, procs_fd, err_pipe[1], NULL);
    if (child == -1)
        rc = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(err_pipe[1]);
    if (procs_fd != -1)
        close(procs_fd);
    if (child != -1) {
        /* End of file once the child has exec'd; its errno otherwise. */
        do
            n = read(err_pipe[0], &child_error, sizeof child_error);
        while (n == -1 && errno == EINTR);
        if (n == (ssize_t)sizeof child_error) {
            while (waitpid(child, NULL, 0) == -1 && errno == EINTR)
                ;
            rc = child_error;
        } else {
            *pid = child;
        }
    }
    close(err_pipe[0]);
    return rc;
}

int
aq_proc_spawn_child(struct aq_procs *ps, const struct aq_proc_opts *opts,
                    const int child_fd[3], int cg_fd, pid_t *pid)
{
    if (cg_fd == -1 && SPAWN_SHARES_MEMORY) {
        if (ps->spawn_stack == NULL)
            ps->spawn_stack = xmalloc(SPAWN_STACK_SIZE);
        return vm_spawn(opts, child_fd, ps->spawn_stack, SPAWN_STACK_SIZE, pid);
    }
    return fork_child(opts, child_fd, cg_fd, &ps->use_clone3, pid);
}
