/* SPDX-License-Identifier: MIT */
/*
 * tests/test_proc.c: the aq_proc contract of lib/proc.h, with real programs
 * (/bin/sh, cat, sleep, ...). What the children do is watched through the
 * callback and /proc, polled from an evtimer with a deadline: no test sleeps.
 * Each test gets its own base from the fixture, makes its own reaper and
 * releases all it made (the suite also runs under valgrind with CK_FORK=no,
 * and under ASan).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "cgroup.h"
#include "clock.h"
#include "error.h"
#include "proc-internal.h"
#include "proc.h"
#include "pstat.h"
#include "suites.h"
#include "testutil.h"
#include "xmalloc.h"

#define DEADLINE_MS 5000 /* loop waits that must succeed; valgrind is slow */
#define QUIET_MS 50      /* a window that shows nothing happens */
#define POLL_US 2000     /* how often a /proc condition is checked */
#define LONG_GRACE_US 5000000 /* SIGKILL must not be what ends the child */
#define MIB (1024 * 1024)

static const char *const test_envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};

/* What the exit callback saw; the test's, on its stack. */
struct run {
    struct aq_proc *p; /* the test's */
    pid_t pid;
    bool in_api; /* the test is inside aq_proc_spawn or aq_proc_kill */
    bool free_in_cb;
    bool done;
    int calls;
    bool fired_in_api;
    int exit_code, signal;
    char *out, *err; /* owned, NUL-terminated copies */
    size_t out_len, err_len;
    bool out_truncated, err_truncated;
    int64_t duration_us;
    int64_t done_us; /* monotonic time of the callback */
};

static void
exit_cb(struct aq_proc *p, const struct aq_proc_result *res, void *arg)
{
    struct run *r = arg;

    ck_assert_ptr_eq(p, r->p);
    r->calls++;
    r->done = true;
    r->fired_in_api = r->fired_in_api || r->in_api;
    r->done_us = aq_clock_mono_us();
    r->exit_code = res->exit_code;
    r->signal = res->signal;
    free(r->out);
    free(r->err);
    r->out = xmalloc(res->out_len + 1);
    memcpy(r->out, res->out, res->out_len);
    r->out[res->out_len] = '\0';
    r->out_len = res->out_len;
    r->out_truncated = res->out_truncated;
    r->err = xmalloc(res->err_len + 1);
    memcpy(r->err, res->err, res->err_len);
    r->err[res->err_len] = '\0';
    r->err_len = res->err_len;
    r->err_truncated = res->err_truncated;
    r->duration_us = res->duration_us;
    if (r->free_in_cb) {
        aq_proc_free(p);
        r->p = NULL;
    }
}

static void
run_release(struct run *r)
{
    aq_proc_free(r->p);
    r->p = NULL;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static struct aq_proc_opts
opts_for(const char *const *argv)
{
    struct aq_proc_opts o = {
        .argv = argv,
        .envp = test_envp,
        .capture = 65536,
        .kill_grace_us = LONG_GRACE_US,
    };

    return o;
}

static struct aq_proc *
spawn_ok(struct aq_procs *ps, const struct aq_proc_opts *o, struct run *r)
{
    struct aq_error err = {0};

    r->in_api = true;
    r->p = aq_proc_spawn(ps, o, exit_cb, r, &err);
    r->in_api = false;
    ck_assert_msg(r->p != NULL, "spawn %s: %s", o->argv[0], err.message);
    r->pid = aq_proc_pid(r->p);
    ck_assert_int_gt(r->pid, 0);
    return r->p;
}

static void
kill_in_api(struct run *r)
{
    r->in_api = true;
    aq_proc_kill(r->p);
    r->in_api = false;
}

/* Runs argv to its end with o's other settings; r has the outcome. */
static void
run_to_end(struct aq_procs *ps, struct event_base *base,
           const struct aq_proc_opts *o, struct run *r)
{
    spawn_ok(ps, o, r);
    ck_assert_msg(run_until(base, &r->done, DEADLINE_MS), "%s did not end",
                  o->argv[0]);
    ck_assert_int_eq(r->calls, 1);
    ck_assert(!r->fired_in_api);
}

/* A condition on the system, checked every POLL_US by the loop. */
struct poll {
    bool (*pred)(pid_t pid);
    pid_t pid;
    bool ok;
};

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct poll *pl = arg;

    pl->ok = pl->ok || pl->pred(pl->pid);
}

/* Runs base until pred(pid) holds or timeout_ms passes; returns whether it
 * holds. The reaper runs meanwhile. */
static bool
poll_until(struct event_base *base, bool (*pred)(pid_t), pid_t pid,
           int timeout_ms)
{
    struct poll pl = {pred, pid, pred(pid)};
    struct event *ev = event_new(base, -1, EV_PERSIST, poll_cb, &pl);
    struct timeval tv = aq_clock_tv(POLL_US);

    evtimer_add(ev, &tv);
    run_until(base, &pl.ok, timeout_ms);
    event_free(ev);
    return pl.ok;
}

/* Reads /proc/PID/NAME into buf (NUL-terminated); -1 if it is unreadable. */
static int
proc_read(pid_t pid, const char *name, char *buf, size_t size)
{
    char path[64];
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* The state letter of pid (R, S, Z, ...), or 0 if it does not exist. */
static char
proc_state(pid_t pid)
{
    char buf[512];
    const char *p;

    if (proc_read(pid, "stat", buf, sizeof buf) == -1)
        return 0;
    p = strrchr(buf, ')'); /* the command name may hold anything */
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

/* Field n (1-based, as in proc(5)) of /proc/PID/stat, or -1. */
static long
proc_stat_field(pid_t pid, int n)
{
    char buf[512];
    char *p, *tok, *save;
    int i;

    if (proc_read(pid, "stat", buf, sizeof buf) == -1)
        return -1;
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* Field 3 (state) is the first after the command name. */
    for (i = 3, tok = strtok_r(p + 1, " ", &save); tok != NULL;
         i++, tok = strtok_r(NULL, " ", &save)) {
        if (i == n)
            return strtol(tok, NULL, 10);
    }
    return -1;
}

/* Reaped by its parent: the pid no longer exists. */
static bool
pid_is_gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* Dead: gone, or a zombie of a parent that is not ours to judge (an orphan
 * re-parented to init, which may not reap in a container). */
static bool
pid_is_dead(pid_t pid)
{
    return pid_is_gone(pid) || proc_state(pid) == 'Z';
}

/* Re-parented to this process (the subreaper): its parent has exited. */
static bool
pid_is_ours(pid_t pid)
{
    return proc_stat_field(pid, 4) == (long)getpid();
}

/* The first child of pid, or 0. */
static pid_t
first_child(pid_t pid)
{
    char name[64], buf[256];

    snprintf(name, sizeof name, "task/%d/children", (int)pid);
    if (proc_read(pid, name, buf, sizeof buf) == -1)
        return 0;
    return (pid_t)strtol(buf, NULL, 10);
}

static bool
pid_has_child(pid_t pid)
{
    return first_child(pid) > 0;
}

static bool
pid_ignores_sigterm(pid_t pid)
{
    char buf[4096];
    const char *p;

    if (proc_read(pid, "status", buf, sizeof buf) == -1)
        return false;
    p = strstr(buf, "\nSigIgn:");
    return p != NULL &&
           (strtoull(p + 8, NULL, 16) & (1ULL << (SIGTERM - 1))) != 0;
}

static bool
pid_stdin_is_dev_null(pid_t pid)
{
    char path[64], target[64];
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%d/fd/0", (int)pid);
    n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return strcmp(target, "/dev/null") == 0;
}

static int
open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

/* No child of this process is left, not even a zombie. */
static void
assert_no_child(void)
{
    int status;

    errno = 0;
    ck_assert_int_eq(waitpid(-1, &status, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

START_TEST(echo_exits_zero_with_its_stdout)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/echo", "hello", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_int_eq(r.signal, 0);
    ck_assert_str_eq(r.out, "hello\n");
    ck_assert_uint_eq(r.out_len, 6);
    ck_assert(!r.out_truncated);
    ck_assert_uint_eq(r.err_len, 0);
    ck_assert(!r.err_truncated);
    ck_assert_int_gt(r.duration_us, 0);
    ck_assert_uint_eq(aq_procs_count(ps), 1);
    run_release(&r);
    ck_assert_uint_eq(aq_procs_count(ps), 0);
    aq_procs_free(ps);
}
END_TEST

START_TEST(exit_code_and_stderr_are_reported)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c", "echo e >&2; exit 3",
                                       NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 3);
    ck_assert_int_eq(r.signal, 0);
    ck_assert_str_eq(r.err, "e\n");
    ck_assert_uint_eq(r.out_len, 0);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(stdin_data_is_piped_to_the_child)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/cat", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    char data[] = "line one\nline two\n";

    o.stdin_data = data;
    o.stdin_len = strlen(data);
    spawn_ok(ps, &o, &r);
    memset(data, '#', strlen(data)); /* the child got a copy */
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_str_eq(r.out, "line one\nline two\n");
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(large_stdin_with_small_capture_completes_truncated)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/cat", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    char *data = xmalloc(MIB);
    size_t i;

    memset(data, 'x', MIB);
    o.stdin_data = data;
    o.stdin_len = MIB;
    o.capture = 1000;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_uint_eq(r.out_len, 1000);
    ck_assert(r.out_truncated);
    for (i = 0; i < r.out_len; i++)
        ck_assert_int_eq(r.out[i], 'x');
    ck_assert(!r.err_truncated);
    run_release(&r);
    free(data);
    aq_procs_free(ps);
}
END_TEST

START_TEST(big_output_is_capped_drained_and_truncated)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/usr/bin/head", "-c", "5000000",
                                       "/dev/zero", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    o.capture = 100000;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_int_eq(r.signal, 0);
    ck_assert_uint_eq(r.out_len, 100000);
    ck_assert(r.out_truncated);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(output_of_exactly_capture_bytes_is_not_truncated)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/usr/bin/head", "-c", "10000",
                                       "/dev/zero", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    o.capture = 10000;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_uint_eq(r.out_len, 10000);
    ck_assert(!r.out_truncated);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(zero_capture_keeps_nothing_and_marks_truncated)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/echo", "hello", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    o.capture = 0;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_uint_eq(r.out_len, 0);
    ck_assert(r.out_truncated);
    ck_assert(!r.err_truncated);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(environment_is_exactly_envp)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/usr/bin/env", NULL};
    static const char *const envp[] = {"A=1", "B=two words", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    o.envp = envp;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_str_eq(r.out, "A=1\nB=two words\n");
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(cwd_is_respected)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/pwd", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    char dir[] = "/tmp/aq-proc-cwd-XXXXXX";
    char *real, *want;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    real = realpath(dir, NULL); /* pwd prints the physical path */
    ck_assert_ptr_nonnull(real);
    want = xmalloc(strlen(real) + 2);
    sprintf(want, "%s\n", real);
    o.cwd = dir;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_str_eq(r.out, want);
    run_release(&r);
    rmdir(dir);
    free(real);
    free(want);
    aq_procs_free(ps);
}
END_TEST

/* Spawning o must fail with message, leaving no fd, object or child. */
static void
assert_spawn_fails(const struct aq_proc_opts *o, const char *message)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    struct aq_error err = {0};
    struct run r = {0};
    int fds = open_fd_count();

    r.in_api = true;
    ck_assert_ptr_null(aq_proc_spawn(ps, o, exit_cb, &r, &err));
    r.in_api = false;
    ck_assert_str_eq(err.message, message);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_eq(open_fd_count(), fds);
    ck_assert_uint_eq(aq_procs_count(ps), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(r.calls, 0);
    assert_no_child();
    aq_procs_free(ps);
}

START_TEST(missing_program_fails_to_spawn_naming_it)
{
    static const char *const argv[] = {"/no/such/program", "x", NULL};
    struct aq_proc_opts o = opts_for(argv);

    assert_spawn_fails(&o, "exec: /no/such/program: No such file or "
                           "directory");
}
END_TEST

START_TEST(non_executable_file_fails_to_spawn)
{
    char path[] = "/tmp/aq-proc-noexec-XXXXXX";
    const char *argv[] = {path, NULL};
    struct aq_proc_opts o = opts_for(argv);
    char want[128];
    int fd = mkstemp(path);

    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd); /* mkstemp made it 0600: no execute bit, even for root */
    snprintf(want, sizeof want, "exec: %s: Permission denied", path);
    assert_spawn_fails(&o, want);
    unlink(path);
}
END_TEST

START_TEST(missing_cwd_fails_to_spawn_naming_it)
{
    static const char *const argv[] = {"/bin/pwd", NULL};
    struct aq_proc_opts o = opts_for(argv);

    o.cwd = "/no/such/dir";
    assert_spawn_fails(&o, "exec: cwd /no/such/dir: No such file or "
                           "directory");
}
END_TEST

START_TEST(relative_program_path_is_refused)
{
    static const char *const argv[] = {"echo", "hello", NULL};
    struct aq_proc_opts o = opts_for(argv);

    assert_spawn_fails(&o, "exec: echo: not an absolute path");
}
END_TEST

START_TEST(child_leads_its_own_process_group)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sleep", "30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    spawn_ok(ps, &o, &r);
    ck_assert_int_eq(proc_stat_field(r.pid, 5), r.pid); /* pgrp */
    ck_assert_int_ne(getpgrp(), r.pid);
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

/* The hexadecimal mask after name in /proc/PID/status text; all ones if it
 * is missing. */
static unsigned long long
status_mask(const char *status, const char *name)
{
    const char *p = strstr(status, name);

    return p != NULL ? strtoull(p + strlen(name), NULL, 16) : ~0ULL;
}

/* The bits, as in /proc/PID/status, of the real-time signals glibc keeps. */
static unsigned long long
libc_internal_signals(void)
{
    unsigned long long mask = 0;
    int sig;

    for (sig = 32; sig < SIGRTMIN; sig++)
        mask |= 1ULL << (sig - 1);
    return mask;
}

START_TEST(child_starts_with_default_signals_and_empty_mask)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {
        "/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe, old_term;
    sigset_t usr1, old_mask;

    /* As the daemon: SIGPIPE and SIGTERM ignored, a signal blocked. */
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigaction(SIGTERM, &ign, &old_term);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old_mask);
    spawn_ok(ps, &o, &r);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_uint_eq(status_mask(r.out, "SigBlk:"), 0);
    /* glibc's posix_spawn leaves its internal signals (32 and 33, below
     * SIGRTMIN) ignored in every child, whatever the attributes say; no
     * program can use them, so only the others are checked. */
    ck_assert_uint_eq(status_mask(r.out, "SigIgn:") & ~libc_internal_signals(),
                      0);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(kill_ends_a_sleeping_child_with_sigterm)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sleep", "30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    int64_t start_us;

    spawn_ok(ps, &o, &r);
    start_us = aq_clock_mono_us();
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert(!r.fired_in_api);
    ck_assert_int_eq(r.exit_code, -1);
    ck_assert_int_eq(r.signal, SIGTERM);
    ck_assert_int_lt(r.done_us - start_us, LONG_GRACE_US);
    assert_no_child();
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(kill_escalates_to_sigkill_after_the_grace)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c",
                                       "trap '' TERM; /bin/sleep 30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    int64_t start_us;

    o.kill_grace_us = 500000;
    spawn_ok(ps, &o, &r);
    /* SIGTERM before the trap is set would end it at once. */
    ck_assert(poll_until(test_base, pid_ignores_sigterm, r.pid, DEADLINE_MS));
    start_us = aq_clock_mono_us();
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.signal, SIGKILL);
    ck_assert_int_eq(r.exit_code, -1);
    ck_assert_int_ge(r.done_us - start_us, o.kill_grace_us);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(background_grandchild_is_killed_when_the_child_exits)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c",
                                       "/bin/sleep 30 & echo $!", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    pid_t grandchild;

    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    grandchild = (pid_t)strtol(r.out, NULL, 10);
    ck_assert_int_gt(grandchild, 0);
    ck_assert(poll_until(test_base, pid_is_dead, grandchild, DEADLINE_MS));
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(background_grandchild_is_killed_with_the_group_on_kill)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {
        "/bin/sh", "-c", "/bin/sleep 30 & exec /bin/sleep 30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    pid_t grandchild;

    spawn_ok(ps, &o, &r);
    ck_assert(poll_until(test_base, pid_has_child, r.pid, DEADLINE_MS));
    grandchild = first_child(r.pid);
    ck_assert_int_gt(grandchild, 0);
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.signal, SIGTERM);
    ck_assert(poll_until(test_base, pid_is_dead, grandchild, DEADLINE_MS));
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(orphan_of_a_subreaper_is_reaped)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c",
                                       "/bin/sleep 30 & echo $!", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    pid_t grandchild;

    /* As the daemon: orphans of the jobs become ours to reap. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    run_to_end(ps, test_base, &o, &r);
    grandchild = (pid_t)strtol(r.out, NULL, 10);
    ck_assert_int_gt(grandchild, 0);
    /* Not a zombie: gone, reaped by ps. */
    ck_assert(poll_until(test_base, pid_is_gone, grandchild, DEADLINE_MS));
    assert_no_child();
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(no_zombie_remains_after_the_callback)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/true", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    run_to_end(ps, test_base, &o, &r);
    ck_assert(pid_is_gone(r.pid));
    run_for(test_base, QUIET_MS);
    assert_no_child();
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(free_of_a_running_child_kills_and_reaps_it)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sleep", "30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    pid_t pid;

    spawn_ok(ps, &o, &r);
    pid = r.pid;
    ck_assert_uint_eq(aq_procs_count(ps), 1);
    aq_proc_free(r.p);
    r.p = NULL;
    ck_assert_uint_eq(aq_procs_count(ps), 0);
    ck_assert(poll_until(test_base, pid_is_gone, pid, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(r.calls, 0);
    assert_no_child();
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(free_inside_the_callback_is_allowed)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/echo", "bye", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {.free_in_cb = true};

    run_to_end(ps, test_base, &o, &r);
    ck_assert_ptr_null(r.p);
    ck_assert_str_eq(r.out, "bye\n");
    ck_assert_uint_eq(aq_procs_count(ps), 0);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(r.calls, 1);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(callback_fires_from_the_loop_never_inside_spawn_or_kill)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/true", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    siginfo_t si = {0};
    int64_t deadline_us = aq_clock_mono_us() + DEADLINE_MS * 1000LL;

    spawn_ok(ps, &o, &r);
    /* Wait, without running the loop, until the child is a zombie with its
     * SIGCHLD pending in the loop: WNOWAIT leaves it to the reaper. */
    while (si.si_pid != r.pid && aq_clock_mono_us() < deadline_us) {
        ck_assert_int_eq(
            waitid(P_PID, (id_t)r.pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
    }
    ck_assert_int_eq(si.si_pid, r.pid);
    kill_in_api(&r);
    kill_in_api(&r); /* a second time is harmless */
    ck_assert_int_eq(r.calls, 0);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert(!r.fired_in_api);
    ck_assert_int_eq(r.exit_code, 0); /* it had exited before the kill */
    ck_assert_int_eq(r.signal, 0);
    kill_in_api(&r); /* after the exit: harmless, no second callback */
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(r.calls, 1);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(daemon_fds_do_not_leak_into_the_child)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/ls", "/proc/self/fd", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
    int high = fcntl(fd, F_DUPFD, 100);   /* clear of ls's own fd 3 */

    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(high, 100);
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    /* 0, 1, 2, and the directory ls is reading. */
    ck_assert_str_eq(r.out, "0\n1\n2\n3\n");
    close(high);
    close(fd);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(stdin_the_child_does_not_read_raises_no_sigpipe)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {
        "/bin/sh", "-c", "exec </dev/null; exec /bin/sleep 30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old_pipe;
    char *data = xmalloc(MIB);

    /* Unlike the daemon, let SIGPIPE kill this process. */
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGPIPE, &dfl, &old_pipe);
    memset(data, 'x', MIB);
    o.stdin_data = data;
    o.stdin_len = MIB;
    spawn_ok(ps, &o, &r);
    /* Once the reader is gone, the pending writes fail with EPIPE. */
    ck_assert(poll_until(test_base, pid_stdin_is_dev_null, r.pid, DEADLINE_MS));
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(r.calls, 0);
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.signal, SIGTERM);
    sigaction(SIGPIPE, &old_pipe, NULL);
    run_release(&r);
    free(data);
    aq_procs_free(ps);
}
END_TEST

#define CONCURRENT 50

static bool
all_done(const struct run *runs, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!runs[i].done)
            return false;
    }
    return true;
}

START_TEST(fifty_concurrent_children_complete_with_their_own_output)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/cat", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run runs[CONCURRENT] = {0};
    char data[CONCURRENT][32];
    int64_t deadline_us = aq_clock_mono_us() + 4 * DEADLINE_MS * 1000LL;
    int i;

    for (i = 0; i < CONCURRENT; i++) {
        snprintf(data[i], sizeof data[i], "child %d\n", i);
        o.stdin_data = data[i];
        o.stdin_len = strlen(data[i]);
        spawn_ok(ps, &o, &runs[i]);
    }
    ck_assert_uint_eq(aq_procs_count(ps), CONCURRENT);
    while (!all_done(runs, CONCURRENT) && aq_clock_mono_us() < deadline_us)
        event_base_loop(test_base, EVLOOP_ONCE);
    for (i = 0; i < CONCURRENT; i++) {
        ck_assert_msg(runs[i].done, "child %d did not end", i);
        ck_assert_int_eq(runs[i].calls, 1);
        ck_assert_int_eq(runs[i].exit_code, 0);
        ck_assert_str_eq(runs[i].out, data[i]);
        run_release(&runs[i]);
    }
    ck_assert_uint_eq(aq_procs_count(ps), 0);
    assert_no_child();
    aq_procs_free(ps);
}
END_TEST

/* ---- what a child leaves: sessions and orphans (subreaper) ---- */

START_TEST(child_leads_its_own_session)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sleep", "30", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    spawn_ok(ps, &o, &r);
    ck_assert_int_eq(proc_stat_field(r.pid, 6), r.pid); /* session */
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

/* A script that starts a sleep in a session of its own with no parent in
 * the job (setsid, then the intermediate shell exits), prints its pid,
 * then runs tail. */
#define ESCAPE "setsid sh -c 'sleep 30 & echo $!'; "

/* The pid the child printed first, once its stdout has it: the escaped
 * sleep of ESCAPE. Reads the pipe only through the exit callback, so the
 * child must have exited; for a running child, see escaped_pid_file. */
static pid_t
printed_pid(const struct run *r)
{
    pid_t pid = (pid_t)strtol(r->out, NULL, 10);

    ck_assert_msg(pid > 1, "no pid printed: \"%s\"", r->out);
    return pid;
}

START_TEST(escaped_grandchild_is_killed_when_the_child_exits)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c", ESCAPE "exit 0", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};

    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    run_to_end(ps, test_base, &o, &r);
    ck_assert(poll_until(test_base, pid_is_gone, printed_pid(&r), DEADLINE_MS));
    ck_assert_uint_eq(aq_procs_orphans(ps), 0);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

/* Reads the pid a job wrote to path (a poll predicate's argument). */
static pid_t
pid_in_file(const char *path)
{
    char buf[32] = "";
    FILE *f = fopen(path, "r");

    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL || strchr(buf, '\n') == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    return (pid_t)strtol(buf, NULL, 10);
}

static const char *escaped_path; /* where the job writes the escaped pid */

static bool
escaped_written(pid_t unused)
{
    return pid_in_file(escaped_path) > 0;
}

/* Runs base until the child wrote the escaped pid to path; returns it. */
static pid_t
await_escaped(struct event_base *base, const char *path)
{
    escaped_path = path;
    ck_assert_msg(poll_until(base, escaped_written, 0, DEADLINE_MS),
                  "%s not written", path);
    return pid_in_file(path);
}

START_TEST(escaped_grandchild_gets_the_signals_of_kill)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    char path[] = "/tmp/asyncq-escaped.XXXXXX", script[256];
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    pid_t escaped;

    close(mkstemp(path));
    /* Its parent stays in the job: found as a descendant at SIGTERM. */
    snprintf(script, sizeof script, "setsid sleep 30 & echo $! > %s; wait",
             path);
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    spawn_ok(ps, &o, &r);
    escaped = await_escaped(test_base, path);
    ck_assert(!pid_is_dead(escaped));
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    /* SIGTERM, not the SIGKILL of the long grace: it was signalled too. */
    ck_assert(poll_until(test_base, pid_is_gone, escaped, DEADLINE_MS));
    ck_assert_int_lt(r.duration_us, LONG_GRACE_US);
    unlink(path);
    run_release(&r);
    aq_procs_free(ps);
}
END_TEST

START_TEST(orphan_of_a_running_child_outlives_another_childs_exit)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    char path[] = "/tmp/asyncq-escaped.XXXXXX", script[256];
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    static const char *const true_argv[] = {"/bin/true", NULL};
    struct aq_proc_opts o = opts_for(argv), t = opts_for(true_argv);
    struct run first = {0}, second = {0};
    pid_t escaped;

    close(mkstemp(path));
    snprintf(script, sizeof script,
             "setsid sh -c 'sleep 30 & echo $! > %s'; exec sleep 30", path);
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    spawn_ok(ps, &o, &first);
    escaped = await_escaped(test_base, path);
    /* Its parent has exited: an orphan already when the second ends. */
    ck_assert(poll_until(test_base, pid_is_ours, escaped, DEADLINE_MS));
    /* An orphan nobody can tell the owner of: the first child's or the
     * second's. The second ends: it stays while the first runs. */
    run_to_end(ps, test_base, &t, &second);
    ck_assert_uint_eq(aq_procs_orphans(ps), 1);
    ck_assert(!pid_is_dead(escaped));
    kill_in_api(&first);
    ck_assert(run_until(test_base, &first.done, DEADLINE_MS));
    ck_assert(poll_until(test_base, pid_is_gone, escaped, DEADLINE_MS));
    ck_assert_uint_eq(aq_procs_orphans(ps), 0);
    unlink(path);
    run_release(&second);
    run_release(&first);
    aq_procs_free(ps);
}
END_TEST

/* ---- children in cgroups of their own ---- */

/* A cgroup v2 made for the test and marked delegated, and asyncqd's
 * handle on it (which moved this process into DIR/asyncqd). */
struct cgfix {
    char orig[PATH_MAX - 64]; /* this process's cgroup before */
    char dir[PATH_MAX];
    struct aq_cgroup *cg;
};

/* Sets f up; false (the reason printed) where cgroup v2 cannot be used
 * here: the test then passes without checking anything. */
static bool
cgfix_setup(struct cgfix *f)
{
    char cgpath[PATH_MAX], mnt[PATH_MAX], root[PATH_MAX];
    char *self = NULL, *info = NULL;
    struct aq_error err = {0};
    size_t len;
    const char *why = NULL;

    memset(f, 0, sizeof *f);
    self = aq_pstat_read_file(AT_FDCWD, "/proc/self/cgroup", &len);
    info = aq_pstat_read_file(AT_FDCWD, "/proc/self/mountinfo", &len);
    if (self == NULL || aq_cgroup_parse_self(self, cgpath, sizeof cgpath) < 0)
        why = "no cgroup v2 entry";
    else if (info == NULL || aq_cgroup_parse_mountinfo(info, mnt, sizeof mnt,
                                                       root, sizeof root) < 0)
        why = "no cgroup2 mount";
    else if (aq_cgroup_dir(mnt, root, cgpath, f->orig, sizeof f->orig) < 0)
        why = "cgroup outside the mount";
    free(self);
    free(info);
    if (why == NULL) {
        snprintf(f->dir, sizeof f->dir, "%s/asyncq-unit-%d", f->orig,
                 (int)getpid());
        if (mkdir(f->dir, 0755) == -1)
            why = strerror(errno);
        else if (setxattr(f->dir, "trusted.delegate", "1", 1, 0) == -1 ||
                 (f->cg = aq_cgroup_open(f->dir, &err)) == NULL) {
            why = err.message[0] != '\0' ? err.message
                                         : "cannot set trusted.delegate";
            rmdir(f->dir);
        }
    }
    if (why != NULL) {
        printf("proc: cgroup tests skipped: %s\n", why);
        return false;
    }
    return true;
}

/* Moves this process back where it was and removes the test's cgroup,
 * which must hold no job cgroup any more. */
static void
cgfix_teardown(struct cgfix *f)
{
    char path[PATH_MAX + 32], pid[32];
    FILE *procs;

    aq_cgroup_free(f->cg);
    snprintf(path, sizeof path, "%s/cgroup.procs", f->orig);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    procs = fopen(path, "w");
    ck_assert_ptr_nonnull(procs);
    fputs(pid, procs);
    ck_assert_int_eq(fclose(procs), 0);
    snprintf(path, sizeof path, "%s/" AQ_CGROUP_LEAF, f->dir);
    ck_assert_int_eq(rmdir(path), 0);
    ck_assert_msg(rmdir(f->dir) == 0, "%s: %s (a job cgroup left?)", f->dir,
                  strerror(errno));
}

/* Loop index: 0 clone3 (where the kernel has it), 1 fork. */
START_TEST(child_runs_in_a_cgroup_of_its_own_removed_after_it)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/cat", "/proc/self/cgroup", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    char path[PATH_MAX + 32], want[64];
    struct cgfix f;

    if (!cgfix_setup(&f))
        goto out;
    aq_procs_set_cgroup(ps, f.cg);
    aq_procs_set_clone3(ps, _i == 0);
    o.job_id = 7;
    run_to_end(ps, test_base, &o, &r);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_int_eq(aq_cgroup_parse_self(r.out, path, sizeof path), 0);
    snprintf(want, sizeof want, "/asyncq-unit-%d/job-7-1", (int)getpid());
    ck_assert_msg(strstr(path, want) != NULL, "in %s, not in %s", path, want);
    snprintf(path, sizeof path, "%s/job-7-1", f.dir);
    ck_assert_msg(access(path, F_OK) == -1, "%s is left", path);
    run_release(&r);
    aq_procs_free(ps);
    cgfix_teardown(&f);
out:
}
END_TEST

/* Loop index: 0 with cgroup.kill, 1 as on a kernel without it. */
START_TEST(escaped_process_in_the_cgroup_is_dead_when_the_callback_fires)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {"/bin/sh", "-c", ESCAPE "exit 0", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    struct cgfix f;
    pid_t escaped;

    if (!cgfix_setup(&f))
        goto out;
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    aq_procs_set_cgroup(ps, f.cg);
    if (_i == 1)
        aq_cgroup_set_no_kill_file(f.cg);
    run_to_end(ps, test_base, &o, &r);
    escaped = printed_pid(&r);
    /* Not a zombie to reap later: the callback waited for the cgroup to
     * empty, so whatever is left of it is at most our zombie. */
    ck_assert(pid_is_dead(escaped));
    run_release(&r);
    aq_procs_free(ps);
    ck_assert(pid_is_gone(escaped));
    cgfix_teardown(&f);
out:
}
END_TEST

START_TEST(kill_in_a_cgroup_reaches_a_process_that_left_the_session)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    char path[] = "/tmp/asyncq-escaped.XXXXXX", script[256];
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    struct cgfix f;
    pid_t escaped;

    if (!cgfix_setup(&f))
        goto out;
    close(mkstemp(path));
    snprintf(script, sizeof script,
             "setsid sh -c 'sleep 30 & echo $! > %s'; exec sleep 30", path);
    aq_procs_set_cgroup(ps, f.cg);
    spawn_ok(ps, &o, &r);
    escaped = await_escaped(test_base, path);
    kill_in_api(&r);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.signal, SIGTERM);
    ck_assert(pid_is_dead(escaped));
    unlink(path);
    run_release(&r);
    aq_procs_free(ps);
    cgfix_teardown(&f);
out:
}
END_TEST

/* Loop index: 0 clone3, 1 fork. */
START_TEST(child_in_a_cgroup_starts_with_default_signals_and_empty_mask)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    static const char *const argv[] = {
        "/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status", NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct run r = {0};
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_term;
    sigset_t usr1, old_mask;
    struct cgfix f;

    if (!cgfix_setup(&f))
        goto out;
    aq_procs_set_cgroup(ps, f.cg);
    aq_procs_set_clone3(ps, _i == 0);
    sigemptyset(&ign.sa_mask);
    sigaction(SIGTERM, &ign, &old_term);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old_mask);
    spawn_ok(ps, &o, &r);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    ck_assert(run_until(test_base, &r.done, DEADLINE_MS));
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_uint_eq(status_mask(r.out, "SigBlk:"), 0);
    ck_assert_uint_eq(status_mask(r.out, "SigIgn:") & ~libc_internal_signals(),
                      0);
    ck_assert_int_eq(proc_stat_field(getpid(), 6), getsid(0)); /* ours */
    run_release(&r);
    aq_procs_free(ps);
    cgfix_teardown(&f);
out:
}
END_TEST

/* Loop index: 0 clone3, 1 fork: the child's exec error comes back. */
START_TEST(exec_failure_in_a_cgroup_is_reported_and_the_cgroup_removed)
{
    struct aq_procs *ps = aq_procs_new(test_base);
    char path[] = "/tmp/asyncq-noexec.XXXXXX", cg[PATH_MAX + 32];
    const char *argv[] = {path, NULL};
    struct aq_proc_opts o = opts_for(argv);
    struct aq_error err = {0};
    struct run r = {0};
    struct cgfix f;
    int fd;

    if (!cgfix_setup(&f))
        goto out;
    aq_procs_set_cgroup(ps, f.cg);
    aq_procs_set_clone3(ps, _i == 0);
    fd = mkstemp(path); /* executable, but no format the kernel knows */
    ck_assert_int_eq(write(fd, "\x01\x02\x03\x04", 4), 4);
    close(fd);
    chmod(path, 0755);
    o.job_id = 9;
    ck_assert_ptr_null(aq_proc_spawn(ps, &o, exit_cb, &r, &err));
    ck_assert_msg(strstr(err.message, "Exec format error") != NULL, "%s",
                  err.message);
    snprintf(cg, sizeof cg, "%s/job-9-1", f.dir);
    ck_assert_msg(access(cg, F_OK) == -1, "%s is left", cg);
    assert_no_child();
    unlink(path);
    aq_procs_free(ps);
    cgfix_teardown(&f);
out:
}
END_TEST

START_TEST(leftover_job_cgroups_are_killed_and_removed)
{
    char job[PATH_MAX + 32], procs[PATH_MAX + 64], pid_text[32];
    struct aq_error err = {0};
    struct cgfix f;
    pid_t left;
    FILE *fp;
    int status;

    if (!cgfix_setup(&f))
        return;
    snprintf(job, sizeof job, "%s/job-3-1", f.dir);
    ck_assert_int_eq(mkdir(job, 0755), 0);
    left = fork();
    if (left == 0) {
        pause();
        _exit(0);
    }
    snprintf(procs, sizeof procs, "%s/cgroup.procs", job);
    snprintf(pid_text, sizeof pid_text, "%d", (int)left);
    fp = fopen(procs, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(pid_text, fp);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(aq_cgroup_kill_leftovers(f.cg, 5000000, &err), 1);
    ck_assert_int_eq(waitpid(left, &status, 0), left);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_msg(access(job, F_OK) == -1, "%s is left", job);
    ck_assert_int_eq(aq_cgroup_kill_leftovers(f.cg, 5000000, &err), 0);
    cgfix_teardown(&f);
}
END_TEST

START_TEST(cgroup_not_marked_delegated_or_in_use_is_refused)
{
    char path[PATH_MAX + 32], pid_text[32];
    struct aq_error err = {0};
    struct cgfix f;
    pid_t other;
    FILE *fp;

    if (!cgfix_setup(&f))
        return;
    snprintf(path, sizeof path, "%s/plain", f.dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_ptr_null(aq_cgroup_open(path, &err));
    ck_assert_msg(strstr(err.message, "not delegated") != NULL, "%s",
                  err.message);
    ck_assert_int_eq(rmdir(path), 0);
    /* Another process in the leaf: another asyncqd on the same cgroup. */
    other = fork();
    if (other == 0) {
        pause();
        _exit(0);
    }
    snprintf(path, sizeof path, "%s/" AQ_CGROUP_LEAF "/cgroup.procs", f.dir);
    snprintf(pid_text, sizeof pid_text, "%d", (int)other);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(pid_text, fp);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_ptr_null(aq_cgroup_open(f.dir, &err));
    ck_assert_msg(strstr(err.message, "in use by process") != NULL, "%s",
                  err.message);
    kill(other, SIGKILL);
    ck_assert_int_eq(waitpid(other, NULL, 0), other);
    cgfix_teardown(&f);
}
END_TEST

Suite *
proc_suite(void)
{
    Suite *s = suite_create("proc");
    TCase *tc;

    tc = test_tcase_with_base("run");
    tcase_add_test(tc, echo_exits_zero_with_its_stdout);
    tcase_add_test(tc, exit_code_and_stderr_are_reported);
    tcase_add_test(tc, environment_is_exactly_envp);
    tcase_add_test(tc, cwd_is_respected);
    tcase_add_test(tc, child_leads_its_own_process_group);
    tcase_add_test(tc, child_starts_with_default_signals_and_empty_mask);
    tcase_add_test(tc, daemon_fds_do_not_leak_into_the_child);
    tcase_add_test(tc, callback_fires_from_the_loop_never_inside_spawn_or_kill);
    tcase_add_test(tc, free_inside_the_callback_is_allowed);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("io");
    tcase_add_test(tc, stdin_data_is_piped_to_the_child);
    tcase_add_test(tc, large_stdin_with_small_capture_completes_truncated);
    tcase_add_test(tc, big_output_is_capped_drained_and_truncated);
    tcase_add_test(tc, output_of_exactly_capture_bytes_is_not_truncated);
    tcase_add_test(tc, zero_capture_keeps_nothing_and_marks_truncated);
    tcase_add_test(tc, stdin_the_child_does_not_read_raises_no_sigpipe);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("spawn_error");
    tcase_add_test(tc, missing_program_fails_to_spawn_naming_it);
    tcase_add_test(tc, non_executable_file_fails_to_spawn);
    tcase_add_test(tc, missing_cwd_fails_to_spawn_naming_it);
    tcase_add_test(tc, relative_program_path_is_refused);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("kill");
    tcase_add_test(tc, kill_ends_a_sleeping_child_with_sigterm);
    tcase_add_test(tc, background_grandchild_is_killed_when_the_child_exits);
    tcase_add_test(tc, background_grandchild_is_killed_with_the_group_on_kill);
    tcase_add_test(tc, orphan_of_a_subreaper_is_reaped);
    tcase_add_test(tc, no_zombie_remains_after_the_callback);
    tcase_add_test(tc, free_of_a_running_child_kills_and_reaps_it);
    tcase_add_test(tc, child_leads_its_own_session);
    tcase_add_test(tc, escaped_grandchild_is_killed_when_the_child_exits);
    tcase_add_test(tc, escaped_grandchild_gets_the_signals_of_kill);
    tcase_add_test(tc, orphan_of_a_running_child_outlives_another_childs_exit);
    suite_add_tcase(s, tc);

    tc = test_tcase_with_base("cgroup");
    tcase_add_loop_test(tc, child_runs_in_a_cgroup_of_its_own_removed_after_it,
                        0, 2);
    tcase_add_loop_test(
        tc, escaped_process_in_the_cgroup_is_dead_when_the_callback_fires, 0,
        2);
    tcase_add_test(tc,
                   kill_in_a_cgroup_reaches_a_process_that_left_the_session);
    tcase_add_loop_test(
        tc, child_in_a_cgroup_starts_with_default_signals_and_empty_mask, 0, 2);
    tcase_add_loop_test(
        tc, exec_failure_in_a_cgroup_is_reported_and_the_cgroup_removed, 0, 2);
    tcase_add_test(tc, leftover_job_cgroups_are_killed_and_removed);
    tcase_add_test(tc, cgroup_not_marked_delegated_or_in_use_is_refused);
    suite_add_tcase(s, tc);

    /* Seconds each: the kill grace, and fifty processes under valgrind. */
    tc = test_tcase_with_base("slow");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kill_escalates_to_sigkill_after_the_grace);
    tcase_add_test(tc,
                   fifty_concurrent_children_complete_with_their_own_output);
    suite_add_tcase(s, tc);
    return s;
}
