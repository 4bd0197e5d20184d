/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_procs.c: no process of a job outlives it, nor the daemon, even
 * one that escaped its process group and session (a double fork with
 * setsid, `setsid sleep &`): after the job exits, after cancel, after a
 * timeout, at a graceful stop, and after kill -9 of the daemon (the
 * restarted daemon ends them before the job runs again). Each test runs in
 * both modes of lib/proc.h: as a child subreaper (always), and with a
 * delegated cgroup (the test makes a cgroup v2, marks it delegated as
 * systemd does, and starts asyncqd in it), skipped with a printed reason
 * where cgroup v2 cannot be written.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#define DEAD_MS 3000 /* a killed process is gone within this */
#define CONFIG_FMT                                                             \
    "{%s\"queues\":{\"default\":{\"kind\":\"exec\",\"consumers\":2,"           \
    "\"exec\":{\"kill_grace\":0.5}}}}"

enum mode { SUBREAPER, CGROUP, NMODES };
static const char *const mode_names[] = {"subreaper", "cgroup"};

/* ---- the delegated cgroup of cgroup mode ---- */

struct cg_env {
    bool is_on;
    char path[PATH_MAX];    /* the test's cgroup, marked delegated */
    char dir[64];           /* a temp dir holding the wrapper */
    char wrapper[PATH_MAX]; /* puts asyncqd into path, then execs it */
};

/* Reads a small file whole into buf; false if it cannot. */
static bool
read_text(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd != -1 ? read(fd, buf, size - 1) : -1;

    if (fd != -1)
        close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* The cgroup v2 directory of this process into dir, or a reason. */
static const char *
own_cgroup_dir(char *dir, size_t size)
{
    static char info[65536];
    char self[4096], mnt[PATH_MAX] = "", *line, *p;

    if (!read_text("/proc/self/cgroup", self, sizeof self) ||
        (p = strstr(self, "0::/")) == NULL || (p != self && p[-1] != '\n'))
        return "no cgroup v2 entry in /proc/self/cgroup";
    p += 3;
    p[strcspn(p, "\n")] = '\0';
    if (!read_text("/proc/self/mountinfo", info, sizeof info))
        return "no /proc/self/mountinfo";
    for (line = strtok(info, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char root[PATH_MAX], point[PATH_MAX];

        if (strstr(line, " - cgroup2 ") != NULL &&
            sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) == 2 &&
            strcmp(root, "/") == 0) {
            snprintf(mnt, sizeof mnt, "%s", point);
            break;
        }
    }
    if (mnt[0] == '\0')
        return "no cgroup2 file system mounted";
    snprintf(dir, size, "%s%s", mnt, strcmp(p, "/") == 0 ? "" : p);
    return NULL;
}

/* Makes the delegated cgroup and the wrapper asyncqd starts through;
 * false (and why, printed) where this machine does not allow it. */
static bool
cg_setup(struct cg_env *e)
{
    char parent[PATH_MAX - 32], wrapper_env[PATH_MAX + 256];
    const char *why = own_cgroup_dir(parent, sizeof parent);
    const char *old = getenv("ASYNCQD_WRAPPER");
    FILE *f;

    memset(e, 0, sizeof *e);
    if (why == NULL) {
        snprintf(e->path, sizeof e->path, "%s/asyncq-bb-%d", parent,
                 (int)getpid());
        if (mkdir(e->path, 0755) == -1)
            why = strerror(errno);
        else if (setxattr(e->path, "trusted.delegate", "1", 1, 0) == -1) {
            why = "cannot set trusted.delegate";
            rmdir(e->path);
        }
    }
    if (why != NULL) {
        printf("bb_procs: cgroup mode skipped: %s: %s\n", parent, why);
        return false;
    }
    snprintf(e->dir, sizeof e->dir, "/tmp/asyncq-cg.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    snprintf(e->wrapper, sizeof e->wrapper, "%s/into-cgroup", e->dir);
    f = fopen(e->wrapper, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "#!/bin/sh\necho $$ > '%s/cgroup.procs' || exit 97\n"
            "exec \"$@\"\n",
            e->path);
    fclose(f);
    chmod(e->wrapper, 0755);
    snprintf(wrapper_env, sizeof wrapper_env, "%s%s%s", e->wrapper,
             old != NULL ? " " : "", old != NULL ? old : "");
    setenv("ASYNCQD_WRAPPER", wrapper_env, 1);
    e->is_on = true;
    return true;
}

/* After the daemon stopped: no job's cgroup is left; removes the rest. */
static void
cg_teardown(struct cg_env *e)
{
    char leaf[PATH_MAX + 16];

    if (!e->is_on)
        return;
    snprintf(leaf, sizeof leaf, "%s/asyncqd", e->path);
    rmdir(leaf);
    ck_assert_msg(rmdir(e->path) == 0, "%s: %s (a job's cgroup left?)", e->path,
                  strerror(errno));
    ck_assert(bb_remove_dir(e->dir));
}

/* Starts asyncqd in mode (extra: top-level config fields, each with a
 * trailing comma); NULL when the mode is not available here. */
static struct bb_daemon *
start_in(enum mode mode, struct cg_env *e, const char *extra)
{
    memset(e, 0, sizeof *e);
    if (mode == CGROUP && !cg_setup(e))
        return NULL;
    return bb_start(CONFIG_FMT, extra);
}

/* A daemon in a mode, a connection, and a pid file for the jobs. */
struct fixture {
    enum mode mode;
    struct cg_env e;
    struct bb_daemon *d;
    struct bb_conn *c;
    struct bb_pidfile pf; /* "escaped" in the daemon's dir */
};

/* false when the mode is not available here (the test then passes). */
static bool
fx_start(struct fixture *fx, enum mode mode)
{
    memset(fx, 0, sizeof *fx);
    fx->mode = mode;
    if ((fx->d = start_in(mode, &fx->e, "")) == NULL)
        return false;
    fx->c = bb_connect(fx->d);
    bb_pidfile_init(&fx->pf, fx->d, "escaped");
    return true;
}

/* A graceful stop, which must exit 0, and the cgroup's teardown. */
static void
fx_stop(struct fixture *fx)
{
    bb_close(fx->c);
    ck_assert_int_eq(bb_stop(fx->d), 0);
    cg_teardown(&fx->e);
}

/* ---- pid files ---- */

/* Every pid in a file of pids (whitespace-separated), at most max. */
static size_t
read_pids(const char *path, pid_t *pids, size_t max)
{
    char buf[4096], *p, *end;
    size_t n = 0;

    if (!read_text(path, buf, sizeof buf))
        return 0;
    for (p = buf; n < max; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p)
            break;
        pids[n++] = (pid_t)v;
    }
    return n;
}

struct pid_wait {
    const char *path;
    size_t want;
};

static bool
has_pids(void *arg)
{
    struct pid_wait *w = arg;
    pid_t pids[MAX_PIDS];

    return read_pids(w->path, pids, MAX_PIDS) >= w->want;
}

/* Waits for path to hold want pids (written by a job); fails otherwise. */
static void
await_pids(const char *path, size_t want)
{
    struct pid_wait w = {path, want};

    ck_assert_msg(bb_poll(has_pids, &w, 5000), "%s: fewer than %zu pids", path,
                  want);
}

/* Put params for a job running script in /bin/sh (a new reference). */
static json_t *
sh_job(const char *script)
{
    return json_pack("{s:{s:[s,s,s]}}", "args", "argv", "/bin/sh", "-c",
                     script);
}

/* sh_job that waits for the end, with a timeout in seconds if not 0. */
static json_t *
sh_job_wait(const char *script, int timeout_s)
{
    json_t *params = sh_job(script);

    json_object_set_new(params, "wait", json_true());
    if (timeout_s > 0)
        json_object_set_new(params, "timeout", json_integer(timeout_s));
    return params;
}

/* ---- escapes: how a job leaves a process behind ---- */

enum end { END_EXIT, END_CANCEL, END_TIMEOUT, NENDS };
static const char *const end_names[] = {"exit", "cancel", "timeout"};

#define NESCAPES 2
#define SCRIPT_SIZE (2 * PATH_MAX)

/* Script escape: writes the escaped process's pid to pidfile, then goes on
 * with tail (an exit, or a long sleep so that the job is still running). */
static void
escape_script(int escape, const char *pidfile, const char *tail,
              char script[SCRIPT_SIZE])
{
    if (escape == 0)
        /* Daemonised: a child leaves the session (setsid), forks the
         * sleep and exits, so the sleep has neither its group nor its
         * session nor a parent in the job. */
        snprintf(script, SCRIPT_SIZE,
                 "setsid sh -c 'sleep 1000 & echo $! > %s'; %s", pidfile, tail);
    else
        /* `setsid sleep &`: a new session, its parent the job's shell. */
        snprintf(script, SCRIPT_SIZE, "setsid sleep 1000 & echo $! > %s; %s",
                 pidfile, tail);
}

/* Loop index: mode, then the end, then the escape. */
START_TEST(escaped_process_dies_with_its_job)
{
    enum mode mode = (enum mode)(_i % NMODES);
    enum end how = (enum end)(_i / NMODES % NENDS);
    int escape = _i / NMODES / NENDS;
    struct fixture fx;
    char script[SCRIPT_SIZE];
    json_t *rec = NULL, *r;
    json_int_t id;

    if (!fx_start(&fx, mode))
        return;
    escape_script(escape, fx.pf.path, how == END_EXIT ? "exit 0" : "sleep 1000",
                  script);
    switch (how) {
    case END_EXIT:
        rec = bb_result(fx.c, "put", sh_job_wait(script, 0));
        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        bb_pidfile_wait(&fx.pf);
        break;
    case END_CANCEL:
        id = bb_put_job(fx.c, sh_job(script), BB_TIMEOUT_MS);
        bb_pidfile_wait(&fx.pf);
        ck_assert_msg(bb_pid_alive(fx.pf.pids[0]),
                      "the escaped sleep died early");
        r = bb_result(fx.c, "cancel", json_pack("{s:I}", "job", id));
        ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
        json_decref(r);
        break;
    default:
        rec = bb_result(fx.c, "put", sh_job_wait(script, 1));
        ck_assert_str_eq(bb_str_at(rec, "error.code"), "timeout");
        bb_pidfile_wait(&fx.pf);
        break;
    }
    printf("bb_procs: %s, %s: escaped pid %d\n", mode_names[fx.mode],
           end_names[how], (int)fx.pf.pids[0]);
    bb_assert_dead(fx.pf.pids, 1, DEAD_MS);
    json_decref(rec);
    fx_stop(&fx);
}
END_TEST

START_TEST(orphan_of_a_running_job_outlives_another_jobs_end)
{
    enum mode mode = (enum mode)_i;
    struct fixture fx;
    char script[SCRIPT_SIZE];
    json_int_t id;
    json_t *rec, *r;

    if (!fx_start(&fx, mode))
        return;
    escape_script(0, fx.pf.path, "sleep 1000", script);
    id = bb_put_job(fx.c, sh_job(script), BB_TIMEOUT_MS);
    bb_pidfile_wait(&fx.pf);
    /* A job started later ends while the first runs: the first job's
     * escaped process may be anyone's, and stays. */
    rec = bb_result(
        fx.c, "put",
        bb_json("{\"args\":{\"argv\":[\"/bin/true\"]},\"wait\":true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    ck_assert_msg(bb_pid_alive(fx.pf.pids[0]),
                  "%s: a running job's process was killed when another job "
                  "ended",
                  mode_names[fx.mode]);
    r = bb_result(fx.c, "cancel", json_pack("{s:I}", "job", id));
    json_decref(r);
    bb_assert_dead(fx.pf.pids, 1, DEAD_MS);
    json_decref(rec);
    fx_stop(&fx);
}
END_TEST

START_TEST(graceful_stop_leaves_no_process_of_a_job)
{
    struct fixture fx;
    char script[SCRIPT_SIZE];
    pid_t daemon_pid;

    if (!fx_start(&fx, (enum mode)_i))
        return;
    snprintf(script, sizeof script,
             "setsid sh -c 'trap \"\" TERM; exec sleep 1000' & "
             "echo $$ $! > %s; wait",
             fx.pf.path);
    bb_put_job(fx.c, sh_job(script), BB_TIMEOUT_MS);
    bb_pidfile_wait(&fx.pf);
    ck_assert_int_eq(fx.pf.n, 2);
    daemon_pid = bb_pid(fx.d);
    bb_close(fx.c);
    /* SIGTERM twice: no grace, the job is interrupted at once. */
    bb_signal(fx.d, SIGTERM);
    bb_signal(fx.d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(fx.d, 20000), 0);
    bb_free(fx.d);
    ck_assert(!bb_pid_alive(daemon_pid));
    bb_assert_dead(fx.pf.pids, 2, DEAD_MS);
    cg_teardown(&fx.e);
}
END_TEST

/* The job's script, run in dir: notes in "overlap" any pid of "runs"
 * (earlier runs) that is still alive, then appends its own pid and an
 * escaped sleep's to "runs", and runs on. */
#define OVERLAP_SCRIPT                                                         \
    "for p in $(cat runs 2>/dev/null); do "                                    \
    "s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); "                           \
    "[ -n \"$s\" ] && [ \"$s\" != Z ] && echo $p >> overlap; done; "           \
    "echo $$ >> runs; setsid sleep 1000 & echo $! >> runs; sleep 1000"

START_TEST(leftovers_of_a_killed_daemon_end_before_the_job_runs_again)
{
    enum mode mode = (enum mode)_i;
    char dir[] = "/tmp/asyncq-rerun.XXXXXX", extra[256];
    char runs[PATH_MAX], overlap[PATH_MAX];
    bool overlapped, first_alive, all_gone;
    json_t *params;
    int st;
    pid_t pids[MAX_PIDS];
    struct cg_env e;
    struct bb_daemon *d;
    struct bb_conn *c;
    size_t n;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(extra, sizeof extra, "\"journal\":{\"path\":\"%s/journal\"},",
             dir);
    snprintf(runs, sizeof runs, "%s/runs", dir);
    snprintf(overlap, sizeof overlap, "%s/overlap", dir);
    if ((d = start_in(mode, &e, extra)) == NULL) {
        rmdir(dir);
        return;
    }
    c = bb_connect(d);
    params = sh_job(OVERLAP_SCRIPT);
    json_object_set_new(json_object_get(params, "args"), "cwd",
                        json_string(dir));
    bb_put_job(c, params, BB_TIMEOUT_MS);
    await_pids(runs, 2);
    bb_close(c);

    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 128 + SIGKILL);
    bb_free(d);
    ck_assert_int_eq(read_pids(runs, pids, MAX_PIDS), 2);
    /* What the fix is about: they outlived the daemon. */
    ck_assert_msg(bb_pid_alive(pids[0]) && bb_pid_alive(pids[1]),
                  "the job's processes died with the daemon");

    d = bb_start(CONFIG_FMT, extra);
    await_pids(runs, 4);
    overlapped = access(overlap, F_OK) == 0;
    first_alive = bb_pid_alive(pids[0]) || bb_pid_alive(pids[1]);
    st = bb_stop(d);
    n = read_pids(runs, pids, MAX_PIDS);
    all_gone = bb_all_dead(pids, n, DEAD_MS);
    for (size_t i = 0; i < n; i++) {
        if (bb_pid_alive(pids[i])) /* a failure must not leave them */
            kill(pids[i], SIGKILL);
    }
    ck_assert_msg(!overlapped,
                  "%s: the job ran again while its first run's processes "
                  "were alive",
                  mode_names[mode]);
    ck_assert_msg(!first_alive, "%s: the first run's processes are alive",
                  mode_names[mode]);
    ck_assert_int_eq(st, 0);
    ck_assert_int_eq(n, 4);
    ck_assert_msg(all_gone, "%s: processes of the job outlived the daemon",
                  mode_names[mode]);
    cg_teardown(&e);
    ck_assert(bb_remove_dir(dir));
}
END_TEST

Suite *
bb_procs_suite(void)
{
    Suite *s = suite_create("bb_procs");
    TCase *tc = tcase_create("escape");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, escaped_process_dies_with_its_job, 0,
                        (int)(NMODES * NENDS * NESCAPES));
    tcase_add_loop_test(tc, orphan_of_a_running_job_outlives_another_jobs_end,
                        0, NMODES);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, graceful_stop_leaves_no_process_of_a_job, 0,
                        NMODES);
    tcase_add_loop_test(
        tc, leftovers_of_a_killed_daemon_end_before_the_job_runs_again, 0,
        NMODES);
    suite_add_tcase(s, tc);
    return s;
}
