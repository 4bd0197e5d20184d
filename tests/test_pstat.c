/* SPDX-License-Identifier: MIT */
/*
 * tests/test_pstat.c: the pure parts of finding a job's leftover processes:
 * /proc/PID/stat and children files (lib/pstat.h), the record of running
 * processes and which processes of a snapshot it selects for killing
 * (lib/runfile.h), and cgroup v2 paths and files (lib/cgroup.h); then the
 * record file itself, with real processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "cgroup.h"
#include "error.h"
#include "pstat.h"
#include "runfile.h"
#include "suites.h"
#include "testutil.h"

/* ---- /proc/PID/stat ---- */

/* A stat line with the given command name, ppid 10, pgrp 20, session 30,
 * start time 123456 (field 22). */
static int
stat_line(char *buf, size_t size, const char *comm)
{
    return snprintf(buf, size,
                    "4242 (%s) S 10 20 30 34816 -1 4194560 100 0 0 0 1 2 0 0 "
                    "20 0 1 0 123456 2420736 200 18446744073709551615 1 1 0 "
                    "0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
                    comm);
}

START_TEST(stat_line_fields_are_read)
{
    char buf[512];
    struct aq_pstat st;
    int len = stat_line(buf, sizeof buf, "sleep");

    ck_assert_int_eq(aq_pstat_parse(buf, (size_t)len, &st), 0);
    ck_assert_int_eq(st.pid, 4242);
    ck_assert_int_eq(st.state, 'S');
    ck_assert_int_eq(st.ppid, 10);
    ck_assert_int_eq(st.pgid, 20);
    ck_assert_int_eq(st.sid, 30);
    ck_assert_uint_eq(st.start_ticks, 123456);
    ck_assert_uint_eq(st.utime, 1);
    ck_assert_uint_eq(st.stime, 2);
    ck_assert_uint_eq(st.vsize_bytes, 2420736);
    ck_assert_uint_eq(st.rss_pages, 200);
}
END_TEST

START_TEST(stat_command_with_spaces_and_parentheses_is_skipped_whole)
{
    char buf[512];
    struct aq_pstat st;
    int len = stat_line(buf, sizeof buf, "a) R 1 2 3 (b");

    ck_assert_int_eq(aq_pstat_parse(buf, (size_t)len, &st), 0);
    ck_assert_int_eq(st.state, 'S');
    ck_assert_int_eq(st.ppid, 10);
    ck_assert_uint_eq(st.start_ticks, 123456);
}
END_TEST

START_TEST(truncated_or_foreign_stat_text_is_refused)
{
    static const char *const bad[] = {
        "",
        "4242",
        "4242 (sleep",
        "4242 (sleep) S 10 20 30",
        "x (sleep) S 10 20 30 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18",
        "4242 sleep) S 10",
    };
    struct aq_pstat st;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(aq_pstat_parse(bad[i], strlen(bad[i]), &st) == -1,
                      "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(own_stat_matches_the_process)
{
    struct aq_pstat st;

    ck_assert_int_eq(aq_pstat_read(getpid(), &st), 0);
    ck_assert_int_eq(st.pid, getpid());
    ck_assert_int_eq(st.ppid, getppid());
    ck_assert_int_eq(st.pgid, getpgrp());
    ck_assert_int_eq(st.sid, getsid(0));
    ck_assert(aq_pstat_is_alive(getpid(), st.start_ticks));
    ck_assert(!aq_pstat_is_alive(getpid(), st.start_ticks + 1));
}
END_TEST

START_TEST(children_and_procs_text_is_a_list_of_pids)
{
    static const char text[] = "12 345 6789 ";
    pid_t pids[2];

    ck_assert_uint_eq(aq_pstat_parse_pids(text, strlen(text), pids, 2), 3);
    ck_assert_int_eq(pids[0], 12);
    ck_assert_int_eq(pids[1], 345);
    ck_assert_uint_eq(aq_pstat_parse_pids("", 0, pids, 2), 0);
    /* cgroup.procs: one a line. */
    ck_assert_uint_eq(aq_pstat_parse_pids("7\n8\n", 4, pids, 2), 2);
    ck_assert_int_eq(pids[1], 8);
}
END_TEST

START_TEST(children_and_descendants_are_found)
{
    pid_t child, set[8] = {0};
    size_t n = 1;
    int status;

    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        pid_t grandchild = fork();

        if (grandchild == 0) {
            pause();
            _exit(0);
        }
        pause();
        _exit(0);
    }
    set[0] = getpid();
    /* Until the grandchild exists: bounded by the test's time limit. */
    while (aq_pstat_descendants(set, &n, 8) < 3)
        n = 1;
    ck_assert_int_eq(set[1], child);
    ck_assert_uint_eq(aq_pstat_children(child, set, 8), 1);
    kill(set[0], SIGKILL);
    kill(child, SIGKILL);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
}
END_TEST

/* ---- the record of running processes ---- */

#define BOOT "0123abcd-0000-4000-8000-00000000beef"

START_TEST(record_lines_are_read_and_bad_ones_skipped)
{
    static const char text[] = "asyncqd-procs 1 " BOOT "\n"
                               "100 5000\n"
                               "garbage\n"
                               "1 7\n"
                               "200 6000 extra\n"
                               "300 7000\n"
                               "400 80"; /* torn: no newline */
    struct aq_runfile_entry e[8];

    ck_assert_uint_eq(aq_runfile_parse(text, strlen(text), BOOT, e, 8), 2);
    ck_assert_int_eq(e[0].pid, 100);
    ck_assert_uint_eq(e[0].start_ticks, 5000);
    ck_assert_int_eq(e[1].pid, 300);
    ck_assert_uint_eq(e[1].start_ticks, 7000);
}
END_TEST

START_TEST(record_of_another_boot_or_format_holds_nothing)
{
    static const char other_boot[] =
        "asyncqd-procs 1 ffffffff-0000-4000-8000-00000000beef\n100 5000\n";
    static const char other_format[] = "asyncqd-procs 2 " BOOT "\n100 5000\n";
    struct aq_runfile_entry e[8];

    ck_assert_uint_eq(
        aq_runfile_parse(other_boot, strlen(other_boot), BOOT, e, 8), 0);
    ck_assert_uint_eq(
        aq_runfile_parse(other_format, strlen(other_format), BOOT, e, 8), 0);
    ck_assert_uint_eq(aq_runfile_parse("", 0, BOOT, e, 8), 0);
    ck_assert_uint_eq(
        aq_runfile_parse(other_boot, strlen(other_boot), "", e, 8), 0);
}
END_TEST

/* A process of a snapshot: pid, ppid, pgid, sid, state, start. */
#define P(pid_, ppid_, pgid_, sid_, state_, start_)                            \
    {                                                                          \
        .pid = (pid_), .ppid = (ppid_), .pgid = (pgid_), .sid = (sid_),        \
        .state = (state_), .start_ticks = (start_)                             \
    }

START_TEST(selection_takes_recorded_processes_their_sessions_and_descendants)
{
    static const struct aq_pstat procs[] = {
        P(1, 0, 1, 1, 'S', 1),          /* init */
        P(100, 1, 100, 100, 'S', 50),   /* recorded, alive */
        P(101, 100, 100, 100, 'S', 51), /* its session */
        P(102, 1, 102, 100, 'S', 52),   /* its session, another group */
        P(103, 101, 103, 103, 'S', 53), /* left by setsid: a descendant */
        P(104, 103, 103, 103, 'S', 54), /* deeper */
        P(105, 100, 100, 100, 'Z', 55), /* a zombie: nothing to kill */
        P(200, 1, 200, 200, 'S', 10),   /* unrelated */
        P(300, 1, 300, 300, 'S', 60),   /* ourselves */
        P(401, 1, 401, 400, 'S', 72),   /* session 400, its leader gone */
        P(402, 1, 402, 400, 'S', 65),   /* older than that leader: not it */
        P(500, 1, 500, 500, 'S', 90),   /* pid 500 is another process now */
        P(501, 500, 500, 500, 'S', 91), /* so its session is not ours */
        P(600, 1, 600, 600, 'S', 99),   /* recorded, start differs */
    };
    static const struct aq_runfile_entry rec[] = {
        {100, 50}, {400, 70}, {500, 80}, {600, 98}, {1, 1}, {300, 60},
    };
    static const bool want[] = {false, true,  true, true,  true,  true,  false,
                                false, false, true, false, false, false, false};
    size_t n = sizeof procs / sizeof procs[0];
    bool kill_it[sizeof procs / sizeof procs[0]];

    ck_assert_uint_eq(aq_runfile_select(procs, n, rec,
                                        sizeof rec / sizeof rec[0], 300,
                                        kill_it),
                      6);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(kill_it[i] == want[i], "pid %d: %s, want %s",
                      (int)procs[i].pid, kill_it[i] ? "kill" : "keep",
                      want[i] ? "kill" : "keep");
}
END_TEST

/* Writes text to a new file in dir; returns its path (static). */
static const char *
write_record(const char *dir, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/" AQ_RUNFILE_NAME, dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

START_TEST(record_kills_what_an_earlier_run_left_and_is_locked)
{
    char dir[] = "/tmp/asyncq-runfile.XXXXXX", boot[37], text[256];
    struct aq_runfile *rf, *other;
    struct aq_error err = {0};
    struct aq_pstat st;
    const char *path;
    pid_t left, unrelated;
    int status;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    aq_pstat_boot_id(boot);
    ck_assert_uint_eq(strlen(boot), 36);
    left = fork();
    if (left == 0) {
        setsid(); /* as a job's leader */
        pause();
        _exit(0);
    }
    unrelated = fork();
    if (unrelated == 0) {
        pause();
        _exit(0);
    }
    while (aq_pstat_read(left, &st) == -1 || st.sid != left)
        ; /* until it has its session: bounded by the test's time limit */
    snprintf(text, sizeof text, "asyncqd-procs 1 %s\n%d %llu\n%d %llu\n", boot,
             (int)left, (unsigned long long)st.start_ticks, (int)unrelated,
             0ULL /* a start time it does not have: a reused pid */);
    path = write_record(dir, text);
    rf = aq_runfile_open(path, &err);
    ck_assert_msg(rf != NULL, "%s", err.message);
    other = aq_runfile_open(path, &err);
    ck_assert_ptr_null(other);
    ck_assert_msg(strstr(err.message, "in use by another process") != NULL,
                  "%s", err.message);
    ck_assert_int_eq(aq_runfile_kill_leftovers(rf, 5000000), 1);
    ck_assert_int_eq(waitpid(left, &status, 0), left);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(waitpid(unrelated, &status, WNOHANG), 0);
    ck_assert_uint_eq(aq_runfile_count(rf), 0);
    aq_runfile_add(rf, unrelated, 7);
    ck_assert_uint_eq(aq_runfile_count(rf), 1);
    aq_runfile_remove(rf, unrelated);
    aq_runfile_free(rf);
    kill(unrelated, SIGKILL);
    waitpid(unrelated, &status, 0);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ---- cgroup v2 paths and files ---- */

START_TEST(own_cgroup_v2_path_is_the_0_line)
{
    static const char v1_and_v2[] = "12:pids:/user.slice\n"
                                    "1:name=systemd:/user.slice/x.scope\n"
                                    "0::/system.slice/asyncqd.service\n";
    char path[64];

    ck_assert_int_eq(aq_cgroup_parse_self(v1_and_v2, path, sizeof path), 0);
    ck_assert_str_eq(path, "/system.slice/asyncqd.service");
    ck_assert_int_eq(aq_cgroup_parse_self("0::/\n", path, sizeof path), 0);
    ck_assert_str_eq(path, "/");
    ck_assert_int_eq(aq_cgroup_parse_self("4:memory:/a\n", path, sizeof path),
                     -1);
    ck_assert_int_eq(aq_cgroup_parse_self("0::/a/very/long/path", path, 8), -1);
}
END_TEST

START_TEST(cgroup2_mount_is_found_in_mountinfo)
{
    static const char hybrid[] =
        "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
        "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "40 30 0:37 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 "
        "rw\n";
    static const char escaped[] =
        "40 30 0:37 /sub /mnt/my\\040cgroups rw - cgroup2 none rw\n";
    char mnt[64], root[64];

    ck_assert_int_eq(
        aq_cgroup_parse_mountinfo(hybrid, mnt, sizeof mnt, root, sizeof root),
        0);
    ck_assert_str_eq(mnt, "/sys/fs/cgroup/unified");
    ck_assert_str_eq(root, "/");
    ck_assert_int_eq(
        aq_cgroup_parse_mountinfo(escaped, mnt, sizeof mnt, root, sizeof root),
        0);
    ck_assert_str_eq(mnt, "/mnt/my cgroups");
    ck_assert_str_eq(root, "/sub");
    ck_assert_int_eq(
        aq_cgroup_parse_mountinfo(hybrid, mnt, 8, root, sizeof root), -1);
    ck_assert_int_eq(aq_cgroup_parse_mountinfo("31 30 0:28 / /c rw - cgroup "
                                               "cgroup rw\n",
                                               mnt, sizeof mnt, root,
                                               sizeof root),
                     -1);
}
END_TEST

START_TEST(cgroup_directory_is_the_path_below_the_mount_root)
{
    char dir[64];

    ck_assert_int_eq(
        aq_cgroup_dir("/sys/fs/cgroup", "/", "/a.service", dir, sizeof dir), 0);
    ck_assert_str_eq(dir, "/sys/fs/cgroup/a.service");
    ck_assert_int_eq(aq_cgroup_dir("/c", "/", "/", dir, sizeof dir), 0);
    ck_assert_str_eq(dir, "/c");
    ck_assert_int_eq(aq_cgroup_dir("/c", "/sub", "/sub/x", dir, sizeof dir), 0);
    ck_assert_str_eq(dir, "/c/x");
    ck_assert_int_eq(aq_cgroup_dir("/c", "/sub", "/sub", dir, sizeof dir), 0);
    ck_assert_str_eq(dir, "/c");
    ck_assert_int_eq(aq_cgroup_dir("/c", "/sub", "/subway/x", dir, sizeof dir),
                     -1);
    ck_assert_int_eq(aq_cgroup_dir("/c", "/sub", "/other", dir, sizeof dir),
                     -1);
    ck_assert_int_eq(aq_cgroup_dir("/sys/fs/cgroup", "/", "/long", dir, 8), -1);
}
END_TEST

START_TEST(populated_is_read_from_cgroup_events)
{
    static const char full[] = "populated 1\nfrozen 0\n";
    static const char empty[] = "frozen 0\npopulated 0\n";

    ck_assert_int_eq(aq_cgroup_parse_populated(full, strlen(full)), 1);
    ck_assert_int_eq(aq_cgroup_parse_populated(empty, strlen(empty)), 0);
    ck_assert_int_eq(aq_cgroup_parse_populated("frozen 0\n", 9), -1);
    ck_assert_int_eq(aq_cgroup_parse_populated("populated 10\n", 13), -1);
}
END_TEST

/* This process as /metrics shows it: numbers that /proc and the fd it
 * opens here agree with. */
START_TEST(own_process_stats_are_read)
{
    struct aq_pstat_self a, b;
    int fd;

    ck_assert_int_eq(aq_pstat_self(&a), 0);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(aq_pstat_self(&b), 0);
    close(fd);
    ck_assert_uint_eq(b.open_fds, a.open_fds + 1);
    ck_assert_uint_ge(a.open_fds, 3);
    ck_assert_uint_ge(a.max_fds, a.open_fds);
    ck_assert_uint_gt(a.rss_bytes, 0);
    ck_assert_uint_ge(a.vsize_bytes, a.rss_bytes);
    ck_assert(a.cpu_s >= 0 && b.cpu_s >= a.cpu_s);
    /* started within the last day, and not in the future */
    ck_assert(a.start_s <= (double)time(NULL) + 1);
    ck_assert(a.start_s > (double)time(NULL) - 86400);
}
END_TEST

Suite *
pstat_suite(void)
{
    Suite *s = suite_create("pstat");
    TCase *tc;

    tc = test_tcase_new("stat");
    tcase_add_test(tc, stat_line_fields_are_read);
    tcase_add_test(tc, own_process_stats_are_read);
    tcase_add_test(tc,
                   stat_command_with_spaces_and_parentheses_is_skipped_whole);
    tcase_add_test(tc, truncated_or_foreign_stat_text_is_refused);
    tcase_add_test(tc, own_stat_matches_the_process);
    tcase_add_test(tc, children_and_procs_text_is_a_list_of_pids);
    tcase_add_test(tc, children_and_descendants_are_found);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("runfile");
    tcase_add_test(tc, record_lines_are_read_and_bad_ones_skipped);
    tcase_add_test(tc, record_of_another_boot_or_format_holds_nothing);
    tcase_add_test(
        tc, selection_takes_recorded_processes_their_sessions_and_descendants);
    tcase_add_test(tc, record_kills_what_an_earlier_run_left_and_is_locked);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("cgroup");
    tcase_add_test(tc, own_cgroup_v2_path_is_the_0_line);
    tcase_add_test(tc, cgroup2_mount_is_found_in_mountinfo);
    tcase_add_test(tc, cgroup_directory_is_the_path_below_the_mount_root);
    tcase_add_test(tc, populated_is_read_from_cgroup_events);
    suite_add_tcase(s, tc);
    return s;
}
