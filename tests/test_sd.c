/* SPDX-License-Identifier: MIT */
/*
 * tests/test_sd.c: the contract of lib/sd.h, the systemd protocols, as the
 * service manager sees them: notifications arrive as datagrams on
 * $NOTIFY_SOCKET (a path or an abstract name), socket activation counts
 * the fds only for the process $LISTEN_PID names and unsets the variables,
 * and the watchdog interval is read for this process only. Whichever
 * implementation was built (libsystemd's or lib/sd.c's own), the same.
 */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd.h"
#include "suites.h"
#include "testutil.h"

/* A datagram socket bound to name: a path in a temp dir, or an abstract
 * name when name starts with '@'; $NOTIFY_SOCKET names it. */
struct notify_sock {
    int fd;
    char dir[64];
    char name[108];
};

static void
notify_open(struct notify_sock *ns, bool is_abstract)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    socklen_t len;

    memset(ns, 0, sizeof *ns);
    if (is_abstract)
        snprintf(ns->name, sizeof ns->name, "@asyncq-sd-test-%d",
                 (int)getpid());
    else {
        snprintf(ns->dir, sizeof ns->dir, "/tmp/asyncq-sd.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(ns->dir));
        snprintf(ns->name, sizeof ns->name, "%s/notify", ns->dir);
    }
    memcpy(sun.sun_path, ns->name, strlen(ns->name));
    if (is_abstract)
        sun.sun_path[0] = '\0';
    len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ns->name));
    ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(ns->fd, 0);
    ck_assert_int_eq(bind(ns->fd, (struct sockaddr *)&sun, len), 0);
    setenv("NOTIFY_SOCKET", ns->name, 1);
}

static void
notify_close(struct notify_sock *ns)
{
    unsetenv("NOTIFY_SOCKET");
    close(ns->fd);
    if (ns->dir[0] != '\0') {
        unlink(ns->name);
        rmdir(ns->dir);
    }
}

/* The next datagram, as text, within 5 s (a static buffer). */
static const char *
notify_recv(struct notify_sock *ns)
{
    static char buf[1024];
    struct pollfd pfd = {.fd = ns->fd, .events = POLLIN};
    ssize_t n;

    ck_assert_msg(poll(&pfd, 1, 5000) == 1, "no notification");
    n = recv(ns->fd, buf, sizeof buf - 1, 0);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    return buf;
}

START_TEST(notifications_arrive_on_the_notify_socket_path)
{
    struct notify_sock ns;

    notify_open(&ns, false);
    aq_sd_notify("READY=1");
    ck_assert_str_eq(notify_recv(&ns), "READY=1");
    aq_sd_notify("STATUS=%d jobs", 5);
    ck_assert_str_eq(notify_recv(&ns), "STATUS=5 jobs");
    notify_close(&ns);
}
END_TEST

START_TEST(notifications_reach_an_abstract_notify_socket)
{
    struct notify_sock ns;

    notify_open(&ns, true);
    aq_sd_notify("STOPPING=1");
    ck_assert_str_eq(notify_recv(&ns), "STOPPING=1");
    notify_close(&ns);
}
END_TEST

START_TEST(notify_without_a_notify_socket_does_nothing)
{
    unsetenv("NOTIFY_SOCKET");
    aq_sd_notify("READY=1");
}
END_TEST

START_TEST(listen_fds_are_another_processes_unless_listen_pid_is_ours)
{
    char pid[32];
    int fds[4] = {-1, -1, -1, -1};

    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    ck_assert_uint_eq(aq_sd_listen_fds(fds, 4), 0);
    /* unset, so that children never see them */
    ck_assert_ptr_null(getenv("LISTEN_PID"));
    ck_assert_ptr_null(getenv("LISTEN_FDS"));
    unsetenv("LISTEN_PID");
    ck_assert_uint_eq(aq_sd_listen_fds(fds, 4), 0);
}
END_TEST

START_TEST(listen_fds_count_from_three_for_our_pid)
{
    char pid[32];
    int fds[4] = {-1, -1, -1, -1};

    /* fd 3 must be open for the service manager's fds to be real ones;
     * in a test it may be free, or Check's own: either way it stays. */
    if (fcntl(3, F_GETFD) == -1) {
        int fd = open("/dev/null", O_RDONLY);

        ck_assert_int_ge(fd, 0);
        if (fd != 3) {
            ck_assert_int_eq(dup2(fd, 3), 3);
            close(fd);
        }
    }
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "producers", 1);
    ck_assert_uint_eq(aq_sd_listen_fds(fds, 4), 1);
    ck_assert_int_eq(fds[0], 3);
    ck_assert_int_eq(fds[1], -1);
    ck_assert_ptr_null(getenv("LISTEN_PID"));
    ck_assert_ptr_null(getenv("LISTEN_FDS"));
    ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
}
END_TEST

START_TEST(watchdog_interval_is_read_for_this_process_only)
{
    char pid[32];

    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    ck_assert_int_eq(aq_sd_watchdog_us(), 0);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_USEC", "2000000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_int_eq(aq_sd_watchdog_us(), 2000000);
    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_int_eq(aq_sd_watchdog_us(), 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}
END_TEST

Suite *
sd_suite(void)
{
    Suite *s = suite_create("sd");
    TCase *tc = test_tcase_new("sd");

    tcase_add_test(tc, notifications_arrive_on_the_notify_socket_path);
    tcase_add_test(tc, notifications_reach_an_abstract_notify_socket);
    tcase_add_test(tc, notify_without_a_notify_socket_does_nothing);
    tcase_add_test(tc,
                   listen_fds_are_another_processes_unless_listen_pid_is_ours);
    tcase_add_test(tc, listen_fds_count_from_three_for_our_pid);
    tcase_add_test(tc, watchdog_interval_is_read_for_this_process_only);
    suite_add_tcase(s, tc);
    return s;
}
