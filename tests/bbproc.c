/* SPDX-License-Identifier: MIT */
/* tests/bbproc.c: process helpers for the black-box suites (bbproc.h). */
#include "bbproc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- commands ---- */

/* Reads what fd has into *buf (kept NUL-terminated); false at end of
 * file. */
static bool
drain_fd(int fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);

    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    *buf = realloc(*buf, *len + (size_t)n + 1);
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return true;
}

size_t
bb_count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The command line for messages: argv[0]'s base name, then the rest. */
static char *
command_line(const char *const *argv)
{
    const char *base = strrchr(argv[0], '/');
    char *cmd = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&cmd, &len);

    fputs(base != NULL ? base + 1 : argv[0], f);
    for (int i = 1; argv[i] != NULL; i++)
        fprintf(f, " %s", argv[i]);
    fclose(f);
    return cmd;
}

static pid_t
spawn(const char *const *argv, const char *const *envp, int out, int err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    /* The command starts with default signal actions and nothing blocked,
     * whatever the test process set. */
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv,
                                 (char *const *)envp),
                     0);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return pid;
}

void
bb_run_argv(struct bb_run *r, const struct bb_run_opts *o,
            const char *const *argv)
{
    static const struct bb_run_opts defaults;
    int out[2], err[2], st, timeout_ms;
    size_t out_len = 0, err_len = 0;
    int64_t deadline;
    bool out_open = true, err_open = true, sent_sigint = false;
    pid_t pid;

    if (o == NULL)
        o = &defaults;
    timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : BB_RUN_TIMEOUT_MS;
    deadline = bb_now_ms() + timeout_ms;
    r->cmd = command_line(argv);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    pid = spawn(argv, o->envp != NULL ? o->envp : (const char *const *)environ,
                out[1], err[1]);
    close(out[1]);
    close(err[1]);
    r->out = strdup("");
    r->err = strdup("");
    while (out_open || err_open) {
        struct pollfd pfd[2] = {
            {.fd = out_open ? out[0] : -1, .events = POLLIN},
            {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int wait_ms = (int)(deadline - bb_now_ms());

        if (wait_ms <= 0 || poll(pfd, 2, wait_ms) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ck_abort_msg("%s did not finish within %d ms; stdout: %s; "
                         "stderr: %s",
                         r->cmd, timeout_ms, r->out, r->err);
        }
        if (pfd[0].revents != 0)
            out_open = drain_fd(out[0], &r->out, &out_len);
        if (pfd[1].revents != 0)
            err_open = drain_fd(err[0], &r->err, &err_len);
        if (o->sigint_at_lines > 0 && !sent_sigint &&
            bb_count_lines(r->out) >= (size_t)o->sigint_at_lines) {
            kill(pid, SIGINT);
            sent_sigint = true;
        }
    }
    close(out[0]);
    close(err[0]);
    /* Both pipes are closed: the process is exiting. */
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- commands in the background ---- */

struct bb_bg {
    pid_t pid;
    int out, err; /* read ends; -1 once closed */
    struct bb_run run;
    size_t out_len, err_len;
};

struct bb_bg *
bb_bg_start(const struct bb_run_opts *o, const char *const *argv)
{
    struct bb_bg *b = calloc(1, sizeof *b);
    int out[2], err[2];

    b->run.cmd = command_line(argv);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    b->pid = spawn(argv,
                   o != NULL && o->envp != NULL ? o->envp
                                                : (const char *const *)environ,
                   out[1], err[1]);
    close(out[1]);
    close(err[1]);
    b->out = out[0];
    b->err = err[0];
    b->run.out = strdup("");
    b->run.err = strdup("");
    return b;
}

/* Reads what the command wrote, waiting up to wait_ms for some; false
 * once both pipes are closed. */
static bool
bg_read(struct bb_bg *b, int wait_ms)
{
    struct pollfd pfd[2] = {{.fd = b->out, .events = POLLIN},
                            {.fd = b->err, .events = POLLIN}};

    if (b->out < 0 && b->err < 0)
        return false;
    if (poll(pfd, 2, wait_ms) <= 0)
        return true;
    if (pfd[0].revents != 0 && !drain_fd(b->out, &b->run.out, &b->out_len)) {
        close(b->out);
        b->out = -1;
    }
    if (pfd[1].revents != 0 && !drain_fd(b->err, &b->run.err, &b->err_len)) {
        close(b->err);
        b->err = -1;
    }
    return true;
}

long
bb_bg_wait(struct bb_bg *b, bool is_err, const char *needle, size_t from,
           int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    for (;;) {
        const char *text = is_err ? b->run.err : b->run.out;
        const char *hit =
            strlen(text) >= from ? strstr(text + from, needle) : NULL;
        int64_t left = deadline - bb_now_ms();

        if (hit != NULL)
            return (long)(hit - text);
        if (left <= 0 || !bg_read(b, (int)left))
            return -1;
    }
}

const char *
bb_bg_out(const struct bb_bg *b)
{
    return b->run.out;
}

const char *
bb_bg_err(const struct bb_bg *b)
{
    return b->run.err;
}

void
bb_bg_signal(struct bb_bg *b, int sig)
{
    kill(b->pid, sig);
}

void
bb_bg_finish(struct bb_bg *b, struct bb_run *r, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    int st;

    while (b->out >= 0 || b->err >= 0) {
        int64_t left = deadline - bb_now_ms();

        if (left <= 0) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            ck_abort_msg("%s did not finish within %d ms; stdout: %s; "
                         "stderr: %s",
                         b->run.cmd, timeout_ms, b->run.out, b->run.err);
        }
        bg_read(b, (int)left);
    }
    ck_assert_int_eq(waitpid(b->pid, &st, 0), b->pid);
    b->run.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    *r = b->run;
    free(b);
}

void
bb_run_free(struct bb_run *r)
{
    free(r->out);
    free(r->err);
    free(r->cmd);
}

/* ---- processes of jobs ---- */

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
are_dead(void *arg)
{
    const struct pid_set *s = arg;

    for (size_t i = 0; i < s->n; i++) {
        if (bb_pid_alive(s->pids[i]))
            return false;
    }
    return true;
}

bool
bb_all_dead(const pid_t *pids, size_t n, int timeout_ms)
{
    struct pid_set s = {pids, n};

    return bb_poll(are_dead, &s, timeout_ms);
}

/* Fails unless every pid is gone within timeout_ms. */
void
bb_assert_dead(const pid_t *pids, size_t n, int timeout_ms)
{
    if (bb_all_dead(pids, n, timeout_ms))
        return;
    for (size_t i = 0; i < n; i++) {
        if (bb_pid_alive(pids[i]))
            kill(pids[i], SIGKILL); /* do not leak it past the test */
        ck_assert_msg(!bb_pid_alive(pids[i]),
                      "process %d still alive after %d ms", (int)pids[i],
                      timeout_ms);
    }
}
