/* SPDX-License-Identifier: MIT */
/*
 * tests/test_listen.c: lib/listen.c: TCP and Unix listeners, sockets
 * handed over, the addresses they report, peers' names, and the pause on
 * running out of descriptors.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "error.h"
#include "listen.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 3000

static struct {
    struct event_base *base;
    struct aq_listen *l;
    int accepted;
    int nodelay; /* TCP_NODELAY of the last accepted socket; -1 = none */
    char peer[128];
    char dir[64];
} T;

static void
accept_cb(void *arg, int fd, const char *peer)
{
    int one = 0;
    socklen_t len = sizeof one;

    T.accepted++;
    snprintf(T.peer, sizeof T.peer, "%s", peer);
    T.nodelay =
        getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &len) == 0 ? one : -1;
    close(fd);
}

static void
setup(void)
{
    memset(&T, 0, sizeof T);
    T.base = test_base_new();
    T.l = aq_listen_new(T.base, accept_cb, NULL);
    snprintf(T.dir, sizeof T.dir, "/tmp/asyncq-tl.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(T.dir));
}

static void
teardown(void)
{
    char path[80];

    aq_listen_free(T.l);
    test_base_free(T.base);
    snprintf(path, sizeof path, "%s/sock", T.dir);
    unlink(path);
    rmdir(T.dir);
}

/* Runs the loop until n connections were accepted in all, or WAIT_MS. */
static bool
await_accepted(int n)
{
    for (int waited = 0; T.accepted < n && waited < WAIT_MS; waited += 10)
        run_for(T.base, 10);
    return T.accepted >= n;
}

/* A client connected to ss (TCP, blocking connect). */
static int
connect_tcp(const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)ss,
                             ss->ss_family == AF_INET6
                                 ? sizeof(struct sockaddr_in6)
                                 : sizeof(struct sockaddr_in)),
                     0);
    return fd;
}

static int
connect_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_uint_lt(strlen(path), sizeof sun.sun_path);
    strcpy(sun.sun_path, path);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    return fd;
}

static unsigned
port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6
               ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
               : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

START_TEST(tcp_port_0_reports_its_real_port_and_names_the_peer)
{
    struct sockaddr_storage ss[4];
    struct sockaddr_storage me = {0};
    socklen_t sl = sizeof me;
    struct aq_error err = {0};
    char want[64];
    int fd;

    ck_assert_msg(aq_listen_add(T.l, "tcp://127.0.0.1:0", &err) == 0, "%s",
                  err.message);
    ck_assert_uint_eq(aq_listen_addresses(T.l, ss, 4), 1);
    ck_assert_int_eq(ss[0].ss_family, AF_INET);
    ck_assert_uint_ne(port_of(&ss[0]), 0);
    fd = connect_tcp(&ss[0]);
    ck_assert(await_accepted(1));
    getsockname(fd, (struct sockaddr *)&me, &sl);
    snprintf(want, sizeof want, "127.0.0.1:%u", port_of(&me));
    ck_assert_str_eq(T.peer, want);
    /* Replies leave at once: Nagle held a big reply's tail for the
     * client's delayed ACK (40 ms for a page of list). */
    ck_assert_int_gt(T.nodelay, 0);
    close(fd);
}
END_TEST

START_TEST(ipv6_addresses_are_bracketed)
{
    struct sockaddr_storage ss[1];
    struct sockaddr_storage me = {0};
    socklen_t sl = sizeof me;
    struct aq_error err = {0};
    char want[64];
    int fd;

    if (aq_listen_add(T.l, "tcp://[::1]:0", &err) < 0)
        return; /* no IPv6 loopback here */
    ck_assert_uint_eq(aq_listen_addresses(T.l, ss, 1), 1);
    ck_assert_int_eq(ss[0].ss_family, AF_INET6);
    fd = connect_tcp(&ss[0]);
    ck_assert(await_accepted(1));
    getsockname(fd, (struct sockaddr *)&me, &sl);
    snprintf(want, sizeof want, "[::1]:%u", port_of(&me));
    ck_assert_str_eq(T.peer, want);
    close(fd);
}
END_TEST

START_TEST(a_unix_socket_replaces_a_stale_one_and_is_removed_at_close)
{
    char addr[96], path[80];
    struct sockaddr_storage ss[1];
    struct aq_error err = {0};
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/sock", T.dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    ck_assert_int_eq(aq_listen_add(T.l, addr, &err), 0);
    aq_listen_close(T.l);
    ck_assert_int_ne(stat(path, &st), 0); /* removed */
    /* a socket left behind (a crash) is replaced */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};

        strcpy(sun.sun_path, path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    }
    close(fd);
    ck_assert_msg(aq_listen_add(T.l, addr, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(aq_listen_addresses(T.l, ss, 1), 0); /* not TCP */
    fd = connect_unix(path);
    ck_assert(await_accepted(1));
    ck_assert_str_eq(T.peer, "unix");
    close(fd);
}
END_TEST

START_TEST(a_file_that_is_not_a_socket_is_left_alone)
{
    char addr[96], path[80];
    struct aq_error err = {0};
    FILE *f;

    snprintf(path, sizeof path, "%s/sock", T.dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    f = fopen(path, "w");
    fclose(f);
    ck_assert_int_eq(aq_listen_add(T.l, addr, &err), -1);
    ck_assert_msg(strstr(err.message, "Address already in use") != NULL, "%s",
                  err.message);
    ck_assert_int_eq(access(path, F_OK), 0);
}
END_TEST

static const struct {
    const char *addr;
    const char *message;
} bad[] = {
    {"tcp://127.0.0.1", "listen: tcp://127.0.0.1: expected tcp://HOST:PORT"},
    {"udp://127.0.0.1:1", "listen: udp://127.0.0.1:1: expected "
                          "tcp://HOST:PORT, tls://HOST:PORT or unix:PATH"},
    {"tcp://127.0.0.1:port", NULL},
};

START_TEST(a_bad_address_is_refused_with_a_message)
{
    struct aq_error err = {0};

    ck_assert_int_eq(aq_listen_add(T.l, bad[_i].addr, &err), -1);
    ck_assert_int_eq(err.code, AQ_ERR_INTERNAL);
    if (bad[_i].message != NULL)
        ck_assert_str_eq(err.message, bad[_i].message);
}
END_TEST

START_TEST(a_socket_handed_over_is_served_and_reported)
{
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_storage ss[2];
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fd;

    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&in, sizeof in), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    aq_listen_add_fd(T.l, lfd);
    ck_assert_uint_eq(aq_listen_addresses(T.l, ss, 2), 1);
    fd = connect_tcp(&ss[0]);
    ck_assert(await_accepted(1));
    close(fd);
}
END_TEST

START_TEST(out_of_descriptors_a_listener_pauses_then_accepts)
{
    struct aq_error err = {0};
    struct sockaddr_storage ss[1];
    struct rlimit rl, was;
    int fd, fd2, spare[64], n = 0;

    ck_assert_int_eq(aq_listen_add(T.l, "tcp://127.0.0.1:0", &err), 0);
    aq_listen_addresses(T.l, ss, 1);
    fd = connect_tcp(&ss[0]); /* waits in the backlog */
    /* No descriptor left for accept: EMFILE. */
    getrlimit(RLIMIT_NOFILE, &was);
    rl = was;
    rl.rlim_cur = (rlim_t)dup(0);
    close((int)rl.rlim_cur);
    rl.rlim_cur += 4;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    while (n < 64 && (spare[n] = dup(0)) >= 0)
        n++;
    ck_assert_int_eq(errno, EMFILE);
    run_for(T.base, 100);
    ck_assert_int_eq(T.accepted, 0);
    while (n > 0)
        close(spare[--n]);
    setrlimit(RLIMIT_NOFILE, &was); /* for the tests after, without fork */
    /* The listener is back within a second, not spinning meanwhile. (A
     * second client: under valgrind the first one's accept is lost.) */
    fd2 = connect_tcp(&ss[0]);
    ck_assert(await_accepted(1));
    close(fd);
    close(fd2);
}
END_TEST

Suite *
listen_suite(void)
{
    Suite *s = suite_create("listen");
    TCase *tc = test_tcase_new("listen");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, tcp_port_0_reports_its_real_port_and_names_the_peer);
    tcase_add_test(tc, ipv6_addresses_are_bracketed);
    tcase_add_test(tc,
                   a_unix_socket_replaces_a_stale_one_and_is_removed_at_close);
    tcase_add_test(tc, a_file_that_is_not_a_socket_is_left_alone);
    tcase_add_loop_test(tc, a_bad_address_is_refused_with_a_message, 0,
                        sizeof bad / sizeof bad[0]);
    tcase_add_test(tc, a_socket_handed_over_is_served_and_reported);
    tcase_add_test(tc, out_of_descriptors_a_listener_pauses_then_accepts);
    suite_add_tcase(s, tc);
    return s;
}
