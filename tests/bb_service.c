/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_service.c: asyncqd as a systemd service, against the real
 * binary (spec sections 5-7): the sd_notify datagrams on a NOTIFY_SOCKET
 * the test owns (READY, STATUS, RELOADING, STOPPING, WATCHDOG), socket
 * activation, and the metrics listener: /metrics checked against the
 * Prometheus text exposition format 0.0.4 and the stats method, /healthz.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define NOTIFY_MS 10000 /* deadline for an expected datagram */
#define STATUS_MS 5000  /* STATUS= follows a change within a second */
#define HTTP_MS 10000   /* deadline for a whole HTTP exchange */
#define JOB_START_MS 5000
#define EXIT_MS 30000
#define MSG_MAX 4096

/* ---- the notify socket ---- */

/* An AF_UNIX datagram socket in a mkdtemp dir, named by $NOTIFY_SOCKET
 * for the daemon the test starts next (CK_FORK: the variable dies with
 * the test's process, and notify_close unsets it anyway). */
struct notify {
    char dir[64];
    char path[96];
    int fd;
    pid_t daemon;           /* every datagram's sender once set; 0: any */
    char last_status[1024]; /* the previous STATUS= seen, "" if none */
};

static void
notify_open(struct notify *n)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int one = 1;

    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/asyncq-bbs.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(n->dir));
    snprintf(n->path, sizeof n->path, "%s/notify", n->dir);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", n->path);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(n->fd, 0);
    ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sun, sizeof sun), 0);
    /* The kernel then names each datagram's sender, as systemd checks it
     * with NotifyAccess=main. */
    ck_assert_int_eq(
        setsockopt(n->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", n->path, 1), 0);
}

static void
notify_close(struct notify *n)
{
    unsetenv("NOTIFY_SOCKET");
    close(n->fd);
    unlink(n->path);
    rmdir(n->dir);
}

/* One datagram within timeout_ms, as a string in msg (size bytes), its
 * sender in *pid (0 if the kernel did not say); false on timeout. Uses no
 * ck_assert: the READY probe calls it from a thread. */
static bool
notify_recv(struct notify *n, char *msg, size_t size, pid_t *pid,
            int timeout_ms)
{
    struct pollfd pfd = {.fd = n->fd, .events = POLLIN};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {.iov_base = msg, .iov_len = size - 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    ssize_t len;

    *pid = 0;
    if (poll(&pfd, 1, timeout_ms > 0 ? timeout_ms : 0) <= 0)
        return false;
    len = recvmsg(n->fd, &mh, MSG_CMSG_CLOEXEC);
    if (len < 0)
        return false;
    msg[len] = '\0';
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
         c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred uc;

            memcpy(&uc, CMSG_DATA(c), sizeof uc);
            *pid = uc.pid;
        }
    }
    return true;
}

/* Whether msg, newline-separated assignments, holds the line want. */
static bool
msg_has(const char *msg, const char *want)
{
    size_t n = strlen(want);

    for (const char *p = msg; p != NULL && *p != '\0';
         p = strchr(p, '\n') != NULL ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, want, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* STATUS= and WATCHDOG=1 come on their own schedule; the others mark
 * a change of state. */
static bool
msg_is_periodic(const char *msg)
{
    return strncmp(msg, "STATUS=", 7) == 0 || msg_has(msg, "WATCHDOG=1");
}

/* The next datagram within deadline_ms (an absolute bb_now_ms time) into
 * msg; false on timeout. Checks the sender and that a STATUS= differs
 * from the one before it (it is sent only when it changes). */
static bool
notify_next_any(struct notify *n, char *msg, size_t size, int64_t deadline_ms)
{
    pid_t pid;

    if (!notify_recv(n, msg, size, &pid, (int)(deadline_ms - bb_now_ms())))
        return false;
    if (n->daemon != 0)
        ck_assert_msg(pid == n->daemon, "%s came from pid %d, not asyncqd %d",
                      msg, (int)pid, (int)n->daemon);
    if (strncmp(msg, "STATUS=", 7) == 0) {
        ck_assert_msg(strcmp(msg, n->last_status) != 0,
                      "the same %s was sent twice in a row", msg);
        snprintf(n->last_status, sizeof n->last_status, "%.1000s", msg);
    }
    return true;
}

/* The next datagram that is not STATUS= or WATCHDOG=1, within
 * timeout_ms; fails the test naming what was expected. */
static void
notify_expect_next(struct notify *n, const char *want, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char msg[MSG_MAX];

    do {
        ck_assert_msg(notify_next_any(n, msg, sizeof msg, deadline),
                      "no %s on NOTIFY_SOCKET within %d ms", want, timeout_ms);
    } while (msg_is_periodic(msg));
    ck_assert_msg(msg_has(msg, want), "NOTIFY_SOCKET got \"%s\", want %s", msg,
                  want);
}

/* What a STATUS= line says. The wording is free, so each count is the
 * number nearest before its word: "3 jobs unfinished, 1 running, ...". */
struct status {
    long unfinished, running, connections;
    bool is_stopping;
};

static long
count_before(const char *msg, const char *word)
{
    const char *w = strstr(msg, word);
    const char *p;

    if (w == NULL)
        return -1;
    for (p = w; p > msg && !isdigit((unsigned char)p[-1]); p--)
        ;
    if (p == msg)
        return -1;
    while (p > msg && isdigit((unsigned char)p[-1]))
        p--;
    return strtol(p, NULL, 10);
}

static void
status_parse(const char *msg, struct status *st)
{
    st->unfinished = count_before(msg, "unfinished");
    st->running = count_before(msg, "running");
    st->connections = count_before(msg, "connection");
    st->is_stopping = strstr(msg, "stopping") != NULL;
    ck_assert_msg(st->unfinished >= 0 && st->running >= 0 &&
                      st->connections >= 0,
                  "%s: no unfinished, running and connections counts", msg);
}

/* Reads datagrams until a STATUS= with these counts (connections < 0:
 * any) arrives within timeout_ms; fails the test naming the last one. */
static void
status_expect(struct notify *n, long unfinished, long running, long connections,
              int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char msg[MSG_MAX];
    struct status st;

    for (;;) {
        ck_assert_msg(notify_next_any(n, msg, sizeof msg, deadline),
                      "no STATUS= with %ld unfinished, %ld running, %ld "
                      "connections within %d ms; last: %s",
                      unfinished, running, connections, timeout_ms,
                      n->last_status);
        if (strncmp(msg, "STATUS=", 7) != 0)
            continue;
        status_parse(msg, &st);
        if (st.unfinished == unfinished && st.running == running &&
            (connections < 0 || st.connections == connections))
            return;
    }
}

/* ---- the READY probe ---- */

/*
 * READY=1 must mean that the service works. The harness binds the
 * listening socket before the daemon starts, so a ping sent at READY=1
 * waits in the backlog and is answered however early READY=1 came: a
 * ping alone cannot tell. So the probe holds the daemon at READY=1: the
 * test fills the notify socket's queue before the start, so that sending
 * READY=1 (the first datagram) blocks; the probe waits, reading /proc,
 * until the daemon polls each of its listening sockets, and only then
 * reads the queue, READY=1, and pings. A daemon that sends READY=1 before
 * it polls its listeners stays blocked with them idle, and the probe says
 * so after HOLD_MS.
 */
#define HOLD_MS 20000 /* for the listeners to be polled; slow wrappers */
#define FILLER "X_ASYNCQ_TEST_FILLER=1"

/* Fills n's queue with FILLER datagrams until one more would block. */
static void
notify_fill(struct notify *n)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int sent = 0;

    ck_assert_int_ge(fd, 0);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", n->path);
    while (sendto(fd, FILLER, strlen(FILLER), 0, (struct sockaddr *)&sun,
                  sizeof sun) >= 0)
        ck_assert_int_lt(++sent, 100000);
    ck_assert_msg(errno == EAGAIN, "filling NOTIFY_SOCKET: %s",
                  strerror(errno));
    ck_assert_int_gt(sent, 0);
    close(fd);
}

/* The port of a listening TCP socket with this inode in pid's network
 * namespace, or 0. */
static int
tcp_listen_port(pid_t pid, unsigned long inode)
{
    static const char *const tables[] = {"tcp", "tcp6"};
    char path[64], line[512];
    unsigned long ino;
    unsigned int port, state;
    int found = 0;

    for (size_t i = 0; i < 2 && found == 0; i++) {
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/net/%s", (int)pid, tables[i]);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        while (found == 0 && fgets(line, sizeof line, f) != NULL) {
            if (sscanf(line,
                       " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*u "
                       "%lu",
                       &port, &state, &ino) == 3 &&
                ino == inode && state == 0x0A) /* TCP_LISTEN */
                found = (int)port;
        }
        fclose(f);
    }
    return found;
}

/* The inode of socket fd of pid, or 0 if fd is no socket. */
static unsigned long
socket_inode(pid_t pid, const char *fd)
{
    char path[320], link[64];
    unsigned long ino = 0;
    ssize_t len;

    snprintf(path, sizeof path, "/proc/%d/fd/%s", (int)pid, fd);
    if ((len = readlink(path, link, sizeof link - 1)) < 0)
        return 0;
    link[len] = '\0';
    if (sscanf(link, "socket:[%lu]", &ino) != 1)
        return 0;
    return ino;
}

#define POLLED_MAX 1024

/* Marks in polled the fds in the interest list of pid's epoll fd. */
static void
epoll_targets(pid_t pid, const char *fd, bool *polled)
{
    char path[320], line[256];
    FILE *f;
    int target;

    snprintf(path, sizeof path, "/proc/%d/fdinfo/%s", (int)pid, fd);
    if ((f = fopen(path, "r")) == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "tfd: %d", &target) == 1 && target >= 0 &&
            target < POLLED_MAX)
            polled[target] = true;
    }
    fclose(f);
}

/* How many listening TCP sockets pid holds in an epoll interest list;
 * *has_fd3 tells whether fd 3 (the harness's socket) is one of them. */
static int
polled_listeners(pid_t pid, bool *has_fd3)
{
    bool polled[POLLED_MAX] = {false};
    unsigned long inodes[POLLED_MAX];
    char path[320], link[64];
    struct dirent *de;
    DIR *dir;
    int count = 0;

    *has_fd3 = false;
    memset(inodes, 0, sizeof inodes);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    if ((dir = opendir(path)) == NULL)
        return 0;
    while ((de = readdir(dir)) != NULL) {
        int fd = atoi(de->d_name);
        ssize_t len;

        if (!isdigit((unsigned char)de->d_name[0]) || fd >= POLLED_MAX)
            continue;
        snprintf(path, sizeof path, "/proc/%d/fd/%s", (int)pid, de->d_name);
        if ((len = readlink(path, link, sizeof link - 1)) < 0)
            continue;
        link[len] = '\0';
        if (strcmp(link, "anon_inode:[eventpoll]") == 0)
            epoll_targets(pid, de->d_name, polled);
        else
            inodes[fd] = socket_inode(pid, de->d_name);
    }
    closedir(dir);
    for (int fd = 0; fd < POLLED_MAX; fd++) {
        if (inodes[fd] != 0 && polled[fd] &&
            tcp_listen_port(pid, inodes[fd]) != 0) {
            count++;
            *has_fd3 = *has_fd3 || fd == 3;
        }
    }
    return count;
}

/* The pid of this process's child (the daemon bb_start forks), or 0. */
static pid_t
child_pid(void)
{
    DIR *dir = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;

    if (dir == NULL)
        return 0;
    while (found == 0 && (de = readdir(dir)) != NULL) {
        char path[320], buf[512], *p;
        int ppid;
        FILE *f;

        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        p = fgets(buf, sizeof buf, f);
        fclose(f);
        /* pid (comm) state ppid: comm may hold anything but ")". */
        if (p != NULL && (p = strrchr(buf, ')')) != NULL &&
            sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == (int)getpid())
            found = atoi(de->d_name);
    }
    closedir(dir);
    return found;
}

/* Reads one line of a reply into buf within deadline_ms; false if none. */
static bool
read_line(int fd, char *buf, size_t size, size_t *len, int64_t deadline_ms)
{
    while (memchr(buf, '\n', *len) == NULL) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = (int)(deadline_ms - bb_now_ms());
        ssize_t n;

        if (*len + 1 >= size || wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0)
            return false;
        if ((n = recv(fd, buf + *len, size - 1 - *len, 0)) <= 0)
            return false;
        *len += (size_t)n;
    }
    return true;
}

/* What the probe saw; see above. */
struct ready_probe {
    struct notify *n;
    int want_listeners; /* fd 3, and the metrics listener if any */
    pid_t pid;          /* the daemon, found by its parent */
    int npolled;        /* listening sockets polled while READY=1 waited */
    bool has_fd3;       /* fd 3 among them */
    bool has_ready;
    pid_t sender;      /* of READY=1 */
    int nbefore;       /* datagrams from the daemon before READY=1 */
    char first[256];   /* the first of them */
    bool is_pong;      /* the ping at READY was answered "pong" */
    json_t *stats;     /* the stats result at READY, or NULL */
    char problem[256]; /* why the probe could not ask */
};

static void
probe_ask(struct ready_probe *p, int port)
{
    static const char calls[] = "{\"jsonrpc\":\"2.0\",\"id\":1,"
                                "\"method\":\"ping\"}\n"
                                "{\"jsonrpc\":\"2.0\",\"id\":2,"
                                "\"method\":\"stats\"}\n";
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int64_t deadline = bb_now_ms() + 2000;
    char buf[65536];
    size_t len = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        send(fd, calls, strlen(calls), MSG_NOSIGNAL) !=
            (ssize_t)strlen(calls)) {
        snprintf(p->problem, sizeof p->problem, "connect/send to %d: %s", port,
                 strerror(errno));
        goto done;
    }
    /* Replies are matched by id: they may come in any order. */
    for (int i = 0; i < 2; i++) {
        char *nl;
        json_t *r, *id;

        if (!read_line(fd, buf, sizeof buf, &len, deadline)) {
            snprintf(p->problem, sizeof p->problem,
                     "no reply to ping and stats within 2 s of READY=1");
            goto done;
        }
        nl = memchr(buf, '\n', len);
        r = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
        memmove(buf, nl + 1, len - (size_t)(nl + 1 - buf));
        len -= (size_t)(nl + 1 - buf);
        id = json_object_get(r, "id");
        if (json_is_integer(id) && json_integer_value(id) == 1) {
            const char *s = json_string_value(json_object_get(r, "result"));

            p->is_pong = s != NULL && strcmp(s, "pong") == 0;
        } else if (json_is_integer(id) && json_integer_value(id) == 2) {
            p->stats = json_incref(json_object_get(r, "result"));
        }
        json_decref(r);
    }
done:
    if (fd >= 0)
        close(fd);
}

static void *
probe_run(void *arg)
{
    struct ready_probe *p = arg;
    int64_t hold_end = bb_now_ms() + HOLD_MS;
    int64_t deadline = hold_end + NOTIFY_MS;
    char msg[MSG_MAX];
    pid_t pid;
    int port;

    /* While the queue is full, the daemon cannot get past READY=1. */
    while (bb_now_ms() < hold_end) {
        if (p->pid == 0)
            p->pid = child_pid();
        if (p->pid != 0 &&
            (p->npolled = polled_listeners(p->pid, &p->has_fd3)) >=
                p->want_listeners &&
            p->has_fd3)
            break;
        poll(NULL, 0, 5); /* /proc offers no event to wait on */
    }
    while (notify_recv(p->n, msg, sizeof msg, &pid,
                       (int)(deadline - bb_now_ms()))) {
        if (strcmp(msg, FILLER) == 0)
            continue;
        if (msg_has(msg, "READY=1")) {
            p->has_ready = true;
            p->sender = pid;
            break;
        }
        if (p->nbefore++ == 0)
            snprintf(p->first, sizeof p->first, "%.200s", msg);
    }
    if (!p->has_ready)
        return NULL;
    if ((port = tcp_listen_port(p->sender, socket_inode(p->sender, "3"))) == 0)
        snprintf(p->problem, sizeof p->problem,
                 "no listening TCP socket as fd 3 of pid %d", (int)p->sender);
    else
        probe_ask(p, port);
    return NULL;
}

/* Starts the daemon with config (text with ' for ") held at READY=1 by
 * a probe, as above; want_listeners is 1, or 2 with metrics. Returns
 * the daemon with the probe's findings in *p. */
static struct bb_daemon *
start_probed(struct notify *n, struct ready_probe *p, const char *config,
             int want_listeners)
{
    pthread_t t;
    struct bb_daemon *d;

    memset(p, 0, sizeof *p);
    p->n = n;
    p->want_listeners = want_listeners;
    notify_fill(n);
    ck_assert_int_eq(pthread_create(&t, NULL, probe_run, p), 0);
    d = bb_startq("%s", config);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    n->daemon = bb_pid(d);
    ck_assert_msg(p->pid == bb_pid(d), "probed pid %d, not asyncqd %d",
                  (int)p->pid, (int)bb_pid(d));
    ck_assert_msg(p->has_ready, "no READY=1 on NOTIFY_SOCKET");
    ck_assert_msg(p->npolled >= want_listeners && p->has_fd3,
                  "READY=1 was sent while %d of %d listening sockets were "
                  "polled (fd 3 %s)",
                  p->npolled, want_listeners,
                  p->has_fd3 ? "among them" : "not");
    ck_assert_msg(p->nbefore == 0, "%d datagrams before READY=1, first: %s",
                  p->nbefore, p->first);
    ck_assert_msg(p->sender == bb_pid(d), "READY=1 came from pid %d, not %d",
                  (int)p->sender, (int)bb_pid(d));
    ck_assert_msg(p->problem[0] == '\0', "at READY=1: %s", p->problem);
    ck_assert_msg(p->is_pong, "at READY=1, ping was not answered \"pong\"");
    ck_assert_msg(p->stats != NULL, "at READY=1, stats was not answered");
    return d;
}

/* ---- a tiny HTTP/1.1 client ---- */

struct http_reply {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated; body_len bytes */
    size_t body_len;
};

/* The value of header name (case-insensitive) as a new string, or NULL. */
static char *
http_header(const struct http_reply *r, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = strstr(r->head, "\r\n"); p != NULL;
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *end = strstr(line, "\r\n");

        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;

            while (*v == ' ' || *v == '\t')
                v++;
            return strndup(v, end != NULL ? (size_t)(end - v) : strlen(v));
        }
    }
    return NULL;
}

/* Undoes Transfer-Encoding: chunked in place. */
static void
http_dechunk(struct http_reply *r)
{
    char *in = r->body, *out = r->body, *end = r->body + r->body_len;

    for (;;) {
        char *stop;
        unsigned long size = strtoul(in, &stop, 16);
        char *data = strstr(stop, "\r\n");

        ck_assert_msg(stop != in && data != NULL, "bad chunk size: %.20s", in);
        data += 2;
        if (size == 0)
            break;
        ck_assert_msg(data + size + 2 <= end, "chunk of %lu past the end",
                      size);
        memmove(out, data, size);
        out += size;
        in = data + size + 2;
    }
    r->body_len = (size_t)(out - r->body);
    r->body[r->body_len] = '\0';
}

/* Sends "METHOD PATH HTTP/1.1" with Connection: close to 127.0.0.1:port
 * and reads the reply to EOF within HTTP_MS. Returns false if the server
 * closed the connection without a byte of reply (a refusal). */
static bool
http_exchange(int port, const char *method, const char *path,
              struct http_reply *r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int64_t deadline = bb_now_ms() + HTTP_MS;
    char *req, *buf = NULL, *sep, *te, *cl;
    size_t len = 0, cap = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

    ck_assert_int_ge(fd, 0);
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0,
                  "connect to metrics port %d: %s", port, strerror(errno));
    n = asprintf(&req,
                 "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
                 method, path,
                 strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
    ck_assert_int_gt(n, 0);
    /* A refused connection may be reset before or after the send. */
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        free(req);
        close(fd);
        return false;
    }
    free(req);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = (int)(deadline - bb_now_ms());
        ssize_t got;

        ck_assert_msg(wait_ms > 0 && poll(&pfd, 1, wait_ms) > 0,
                      "%s %s: no end of reply within %d ms", method, path,
                      HTTP_MS);
        if (len + 65536 > cap) {
            cap = len + 65536;
            buf = realloc(buf, cap + 1);
        }
        if ((got = recv(fd, buf + len, cap - len, 0)) <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return false;
    }
    buf[len] = '\0';
    ck_assert_msg(sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1,
                  "%s %s: bad status line: %.40s", method, path, buf);
    sep = strstr(buf, "\r\n\r\n");
    ck_assert_msg(sep != NULL, "%s %s: no end of headers", method, path);
    r->head = strndup(buf, (size_t)(sep - buf));
    r->body_len = len - (size_t)(sep + 4 - buf);
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, sep + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    te = http_header(r, "Transfer-Encoding");
    cl = http_header(r, "Content-Length");
    if (te != NULL && strcasecmp(te, "chunked") == 0)
        http_dechunk(r);
    else if (cl != NULL)
        ck_assert_msg(strtoull(cl, NULL, 10) == r->body_len,
                      "%s %s: Content-Length %s, body %zu bytes", method, path,
                      cl, r->body_len);
    free(te);
    free(cl);
    return true;
}

/* http_exchange, failing the test on a refusal. */
static void
http_request(int port, const char *method, const char *path,
             struct http_reply *r)
{
    ck_assert_msg(http_exchange(port, method, path, r),
                  "%s %s: closed without a reply", method, path);
}

static void
http_reply_free(struct http_reply *r)
{
    free(r->head);
    free(r->body);
}

/* The body with trailing whitespace dropped, compared to want. */
static bool
body_is(const struct http_reply *r, const char *want)
{
    size_t n = r->body_len;

    while (n > 0 && isspace((unsigned char)r->body[n - 1]))
        n--;
    return n == strlen(want) && memcmp(r->body, want, n) == 0;
}

/* ---- the Prometheus text format, version 0.0.4 ---- */

#define NAME_MAX_LEN 128
#define LABELS_MAX 8

struct label {
    char name[NAME_MAX_LEN];
    char value[256];
};

struct sample {
    char name[NAME_MAX_LEN];
    struct label labels[LABELS_MAX];
    size_t nlabels;
    double value;
    size_t family; /* index in expo.families */
    int line;
};

struct family {
    char name[NAME_MAX_LEN];
    char type[16]; /* "" until its TYPE line: untyped */
    bool has_help;
    bool has_samples;
    bool is_closed; /* another family came after its samples */
};

/* A parsed exposition; the parser fills it as it checks the rules. */
struct expo {
    struct sample *samples;
    size_t nsamples;
    struct family *families;
    size_t nfamilies;
    long current; /* the family whose lines came last; -1: none */
    int line;
    char *error; /* the first broken rule, or NULL */
};

static void expo_fail(struct expo *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
expo_fail(struct expo *e, const char *fmt, ...)
{
    va_list ap;
    char *why;

    if (e->error != NULL)
        return;
    va_start(ap, fmt);
    if (vasprintf(&why, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (asprintf(&e->error, "line %d: %s", e->line, why) < 0)
        abort();
    free(why);
}

static void
expo_free(struct expo *e)
{
    free(e->samples);
    free(e->families);
    free(e->error);
}

/* Reads [first][rest]* into out; returns the length, 0 if none. */
static size_t
scan_name(const char *p, char *out, bool is_label)
{
    size_t n = 0;

    while (isalpha((unsigned char)p[n]) || p[n] == '_' ||
           (!is_label && p[n] == ':') ||
           (n > 0 && isdigit((unsigned char)p[n])))
        n++;
    if (n == 0 || n >= NAME_MAX_LEN)
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/* A float as Go's ParseFloat takes it (decimal, with Inf and NaN in any
 * case), which the format names; hexadecimal is left out. */
static bool
parse_float(const char *s, double *v)
{
    const char *p = s + (*s == '+' || *s == '-');
    char *end;

    if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0) {
        *v = *s == '-' ? -INFINITY : INFINITY;
        return true;
    }
    if (strcasecmp(s, "nan") == 0) {
        *v = NAN;
        return true;
    }
    if (!isdigit((unsigned char)*p) && *p != '.')
        return false;
    for (const char *q = p; *q != '\0'; q++) {
        if (!isdigit((unsigned char)*q) && strchr(".eE+-", *q) == NULL)
            return false;
    }
    *v = strtod(s, &end);
    return end != s && *end == '\0';
}

static long
family_find(const struct expo *e, const char *name)
{
    for (size_t i = 0; i < e->nfamilies; i++) {
        if (strcmp(e->families[i].name, name) == 0)
            return (long)i;
    }
    return -1;
}

static size_t
family_get(struct expo *e, const char *name)
{
    long i = family_find(e, name);

    if (i >= 0)
        return (size_t)i;
    e->families =
        realloc(e->families, (e->nfamilies + 1) * sizeof *e->families);
    memset(&e->families[e->nfamilies], 0, sizeof *e->families);
    snprintf(e->families[e->nfamilies].name, NAME_MAX_LEN, "%s", name);
    return e->nfamilies++;
}

/* A family's lines (HELP, TYPE or samples) come now: they must not
 * resume a family that another one followed. */
static void
family_touch(struct expo *e, size_t f)
{
    if ((long)f == e->current)
        return;
    if (e->families[f].is_closed)
        expo_fail(e, "lines of %s are not together", e->families[f].name);
    if (e->current >= 0 && e->families[e->current].has_samples)
        e->families[e->current].is_closed = true;
    e->current = (long)f;
}

/* "# HELP name text", "# TYPE name type" or any other comment. */
static void
expo_comment(struct expo *e, const char *line)
{
    static const char *const types[] = {"counter", "gauge", "histogram",
                                        "summary", "untyped"};
    const char *p = line + 1;
    char name[NAME_MAX_LEN];
    bool is_help;
    size_t n, f;

    while (*p == ' ' || *p == '\t')
        p++;
    if (strncmp(p, "HELP", 4) != 0 && strncmp(p, "TYPE", 4) != 0)
        return; /* a plain comment */
    if (p[4] != ' ' && p[4] != '\t')
        return;
    is_help = p[0] == 'H';
    for (p += 4; *p == ' ' || *p == '\t'; p++)
        ;
    if ((n = scan_name(p, name, false)) == 0) {
        expo_fail(e, "%s without a valid metric name",
                  is_help ? "HELP" : "TYPE");
        return;
    }
    p += n;
    if (*p != '\0' && *p != ' ' && *p != '\t') {
        expo_fail(e, "bad character after the name %s", name);
        return;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    f = family_get(e, name);
    family_touch(e, f);
    if (is_help) {
        if (e->families[f].has_help)
            expo_fail(e, "second HELP for %s", name);
        e->families[f].has_help = true;
        for (; *p != '\0'; p++) {
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                expo_fail(e, "HELP of %s: bad escape \\%c", name, p[1]);
            if (*p == '\\')
                p++;
        }
        return;
    }
    if (e->families[f].type[0] != '\0')
        expo_fail(e, "second TYPE for %s", name);
    if (e->families[f].has_samples)
        expo_fail(e, "TYPE of %s after its samples", name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(p, types[i]) == 0)
            snprintf(e->families[f].type, sizeof e->families[f].type, "%s", p);
    }
    if (e->families[f].type[0] == '\0')
        expo_fail(e, "TYPE of %s: unknown type \"%s\"", name, p);
}

/* The family a sample name belongs to: its own, or, for _bucket, _sum
 * and _count, the histogram or summary it is part of. */
static size_t
sample_family(struct expo *e, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t len = strlen(name);

    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i]);
        char base[NAME_MAX_LEN];
        long f;

        if (len <= sl || strcmp(name + len - sl, suffixes[i]) != 0)
            continue;
        snprintf(base, sizeof base, "%.*s", (int)(len - sl), name);
        f = family_find(e, base);
        if (f >= 0 && (strcmp(e->families[f].type, "histogram") == 0 ||
                       (i > 0 && strcmp(e->families[f].type, "summary") == 0)))
            return (size_t)f;
    }
    return family_get(e, name);
}

/* {name="value",...}: fills s->labels; returns the text after the '}',
 * or NULL. */
static const char *
parse_labels(struct expo *e, const char *p, struct sample *s)
{
    p++; /* '{' */
    while (*p != '}') {
        struct label *l;
        size_t n, k = 0;

        if (s->nlabels == LABELS_MAX) {
            expo_fail(e, "more than %d labels", LABELS_MAX);
            return NULL;
        }
        l = &s->labels[s->nlabels];
        if ((n = scan_name(p, l->name, true)) == 0) {
            expo_fail(e, "bad label name at \"%.20s\"", p);
            return NULL;
        }
        if (strncmp(l->name, "__", 2) == 0)
            expo_fail(e, "label name %s is reserved", l->name);
        for (size_t i = 0; i < s->nlabels; i++) {
            if (strcmp(s->labels[i].name, l->name) == 0)
                expo_fail(e, "label %s twice", l->name);
        }
        p += n;
        if (p[0] != '=' || p[1] != '"') {
            expo_fail(e, "label %s: expected =\"", l->name);
            return NULL;
        }
        for (p += 2; *p != '"'; p++) {
            if (*p == '\0') {
                expo_fail(e, "label %s: unterminated value", l->name);
                return NULL;
            }
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') {
                    expo_fail(e, "label %s: bad escape \\%c", l->name, p[1]);
                    return NULL;
                }
                p++;
                if (k + 1 < sizeof l->value)
                    l->value[k++] = *p == 'n' ? '\n' : *p;
            } else if (k + 1 < sizeof l->value) {
                l->value[k++] = *p;
            }
        }
        l->value[k] = '\0';
        s->nlabels++;
        p++;
        if (*p == ',')
            p++; /* the grammar allows one after the last label too */
        else if (*p != '}') {
            expo_fail(e, "expected , or } after label %s", l->name);
            return NULL;
        }
    }
    return p + 1;
}

static bool
same_labels(const struct sample *a, const struct sample *b)
{
    if (a->nlabels != b->nlabels)
        return false;
    for (size_t i = 0; i < a->nlabels; i++) {
        bool found = false;

        for (size_t j = 0; j < b->nlabels && !found; j++)
            found = strcmp(a->labels[i].name, b->labels[j].name) == 0 &&
                    strcmp(a->labels[i].value, b->labels[j].value) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* name{labels} value [timestamp] */
static void
expo_sample(struct expo *e, const char *line)
{
    struct sample s = {.line = e->line};
    const char *p = line;
    char value[64];
    size_t n;

    if ((n = scan_name(p, s.name, false)) == 0) {
        expo_fail(e, "bad metric name at \"%.20s\"", p);
        return;
    }
    p += n;
    if (*p == '{' && (p = parse_labels(e, p, &s)) == NULL)
        return;
    if (*p != ' ' && *p != '\t') {
        expo_fail(e, "%s: expected a blank before the value", s.name);
        return;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    n = strcspn(p, " \t");
    if (n == 0 || n >= sizeof value) {
        expo_fail(e, "%s: no value", s.name);
        return;
    }
    snprintf(value, sizeof value, "%.*s", (int)n, p);
    if (!parse_float(value, &s.value))
        expo_fail(e, "%s: value \"%s\" is not a float", s.name, value);
    p += n;
    if (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        n = strspn(p + (*p == '-'), "0123456789") + (*p == '-');
        if (n == (size_t)(*p == '-') || p[n] != '\0')
            expo_fail(e, "%s: bad timestamp \"%s\"", s.name, p);
    }
    s.family = sample_family(e, s.name);
    family_touch(e, s.family);
    e->families[s.family].has_samples = true;
    for (size_t i = 0; i < e->nsamples; i++) {
        if (strcmp(e->samples[i].name, s.name) == 0 &&
            same_labels(&e->samples[i], &s))
            expo_fail(e, "%s: the same series again (line %d)", s.name,
                      e->samples[i].line);
    }
    e->samples = realloc(e->samples, (e->nsamples + 1) * sizeof *e->samples);
    e->samples[e->nsamples++] = s;
}

static const char *
label_get(const struct sample *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++) {
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    }
    return NULL;
}

/* Whether a and b have the same labels but le (and quantile). */
static bool
same_series(const struct sample *a, const struct sample *b)
{
    size_t na = 0, nb = 0;

    for (size_t i = 0; i < a->nlabels; i++) {
        const char *v = label_get(b, a->labels[i].name);

        if (!strcmp(a->labels[i].name, "le") ||
            !strcmp(a->labels[i].name, "quantile"))
            continue;
        if (v == NULL || strcmp(v, a->labels[i].value) != 0)
            return false;
        na++;
    }
    for (size_t i = 0; i < b->nlabels; i++)
        nb += strcmp(b->labels[i].name, "le") != 0 &&
              strcmp(b->labels[i].name, "quantile") != 0;
    return na == nb;
}

static bool
has_suffix(const char *name, const char *base, const char *suffix)
{
    size_t n = strlen(base);

    return strncmp(name, base, n) == 0 && strcmp(name + n, suffix) == 0;
}

/* One series of a histogram (the samples like h, labels but le): buckets
 * in increasing le with non-decreasing counts, ending at +Inf, which
 * equals _count; _sum and _count present. */
static void
check_histogram_series(struct expo *e, const struct family *f,
                       const struct sample *first)
{
    double last_le = -INFINITY, last_count = 0, inf_count = -1, count = -1;
    bool has_sum = false;
    size_t nbuckets = 0;

    for (size_t i = 0; i < e->nsamples; i++) {
        const struct sample *s = &e->samples[i];
        const char *le = label_get(s, "le");
        double bound;

        if (&e->families[s->family] != f || !same_series(s, first))
            continue;
        e->line = s->line;
        if (has_suffix(s->name, f->name, "_sum")) {
            has_sum = true;
        } else if (has_suffix(s->name, f->name, "_count")) {
            count = s->value;
        } else if (has_suffix(s->name, f->name, "_bucket")) {
            if (le == NULL || !parse_float(le, &bound)) {
                expo_fail(e, "%s without a float le label", s->name);
                continue;
            }
            if (nbuckets > 0 && !(bound > last_le))
                expo_fail(e, "%s: le %s after %g", s->name, le, last_le);
            if (s->value < last_count || s->value != floor(s->value))
                expo_fail(e, "%s{le=\"%s\"}: count %g after %g", s->name, le,
                          s->value, last_count);
            if (isinf(bound) && bound > 0)
                inf_count = s->value;
            last_le = bound;
            last_count = s->value;
            nbuckets++;
        } else {
            expo_fail(e, "%s in histogram %s", s->name, f->name);
        }
    }
    if (inf_count < 0)
        expo_fail(e, "histogram %s: no le=\"+Inf\" bucket", f->name);
    if (!has_sum || count < 0)
        expo_fail(e, "histogram %s: no _sum or no _count", f->name);
    if (inf_count >= 0 && count >= 0 && inf_count != count)
        expo_fail(e, "histogram %s: +Inf bucket %g, _count %g", f->name,
                  inf_count, count);
}

/* The rules on whole families, once every line is read. */
static void
expo_check_families(struct expo *e)
{
    for (size_t i = 0; i < e->nsamples; i++) {
        const struct sample *s = &e->samples[i];
        const struct family *f = &e->families[s->family];

        e->line = s->line;
        if (strcmp(f->type, "counter") == 0) {
            size_t len = strlen(f->name);

            if (len <= 6 || strcmp(f->name + len - 6, "_total") != 0)
                expo_fail(e, "counter %s does not end in _total", f->name);
            if (!(s->value >= 0))
                expo_fail(e, "counter %s is %g", s->name, s->value);
        } else if (strcmp(f->type, "histogram") == 0) {
            bool is_first = true;

            /* Each series once: at its first sample. */
            for (size_t j = 0; j < i && is_first; j++)
                is_first = &e->families[e->samples[j].family] != f ||
                           !same_series(&e->samples[j], s);
            if (is_first)
                check_histogram_series(e, f, s);
        } else if (strcmp(f->type, "summary") == 0) {
            const char *q = label_get(s, "quantile");
            double v;

            if (strcmp(s->name, f->name) == 0 &&
                (q == NULL || !parse_float(q, &v) || v < 0 || v > 1))
                expo_fail(e, "summary %s without a quantile in [0, 1]",
                          s->name);
        }
    }
}

/* Parses body and checks it against the format; e->error names the
 * first broken rule (NULL if none). */
static void
expo_parse(struct expo *e, const char *body, size_t len)
{
    const char *p = body, *end = body + len;

    memset(e, 0, sizeof *e);
    e->current = -1;
    if (len > 0 && body[len - 1] != '\n') {
        e->line = 0;
        expo_fail(e, "the last line does not end in a line feed");
    }
    while (p < end && e->error == NULL) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = strndup(p, n);

        e->line++;
        if (strlen(line) != n)
            expo_fail(e, "a NUL byte");
        else if (n == 0)
            ; /* empty lines are ignored */
        else if (line[0] == '#')
            expo_comment(e, line);
        else
            expo_sample(e, line);
        free(line);
        p += n + 1;
    }
    if (e->error == NULL)
        expo_check_families(e);
}

/* Fetches /metrics and checks it against the format, failing the test
 * with the broken rule. */
static void
metrics_get(int port, struct expo *e)
{
    struct http_reply r = {0};
    char *ctype;

    http_request(port, "GET", "/metrics", &r);
    ck_assert_msg(r.status == 200, "GET /metrics: status %d", r.status);
    ctype = http_header(&r, "Content-Type");
    ck_assert_msg(ctype != NULL && strncmp(ctype, "text/plain", 10) == 0 &&
                      strstr(ctype, "version=0.0.4") != NULL,
                  "GET /metrics: Content-Type %s",
                  ctype != NULL ? ctype : "missing");
    free(ctype);
    expo_parse(e, r.body, r.body_len);
    ck_assert_msg(e->error == NULL, "/metrics breaks the text format: %s",
                  e->error);
    http_reply_free(&r);
}

/* The value of the sample name with label queue=queue (NULL: no labels);
 * fails the test if there is none. */
static double
expo_value(const struct expo *e, const char *name, const char *queue)
{
    for (size_t i = 0; i < e->nsamples; i++) {
        const struct sample *s = &e->samples[i];

        if (strcmp(s->name, name) != 0)
            continue;
        if (queue == NULL
                ? s->nlabels == 0
                : s->nlabels == 1 && strcmp(s->labels[0].name, "queue") == 0 &&
                      strcmp(s->labels[0].value, queue) == 0)
            return s->value;
    }
    ck_abort_msg("/metrics has no %s{queue=\"%s\"}", name,
                 queue != NULL ? queue : "");
    return 0;
}

/* The value of the sample name with label label=value among its labels;
 * fails the test if there is none. */
static double
expo_labeled(const struct expo *e, const char *name, const char *label,
             const char *value)
{
    for (size_t i = 0; i < e->nsamples; i++) {
        const struct sample *s = &e->samples[i];
        const char *v = label_get(s, label);

        if (strcmp(s->name, name) == 0 && v != NULL && strcmp(v, value) == 0)
            return s->value;
    }
    ck_abort_msg("/metrics has no %s{%s=\"%s\"}", name, label, value);
    return 0;
}

static const char *
family_type(const struct expo *e, const char *name)
{
    long f = family_find(e, name);

    return f >= 0 ? e->families[f].type : "";
}

/* ---- directories that outlive one daemon ---- */

static void
tmpdir_make(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/asyncq-bbs.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
tmpdir_remove(const char *dir)
{
    bb_remove_dir(dir);
}

/* ---- sd_notify ---- */

START_TEST(ready_is_sent_only_once_the_listeners_serve)
{
    struct notify n;
    struct ready_probe p;
    struct bb_daemon *d;

    notify_open(&n);
    d = start_probed(
        &n, &p, "{'metrics':'127.0.0.1:0','queues':{'q':{'kind':'echo'}}}", 2);
    ck_assert_int_eq(bb_int_at(p.stats, "queues.q.unfinished"), 0);
    /* The first STATUS= comes with READY=1, before anything was put. */
    status_expect(&n, 0, 0, -1, STATUS_MS);
    json_decref(p.stats);
    ck_assert_int_eq(bb_stop(d), 0);
    notify_close(&n);
}
END_TEST

START_TEST(ready_comes_after_the_journal_is_replayed)
{
    char dir[64], *config;
    struct notify n;
    struct ready_probe p;
    struct bb_daemon *d;
    struct bb_conn *c;

    tmpdir_make(dir, sizeof dir);
    ck_assert_int_ge(
        asprintf(&config,
                 "{'journal':{'path':'%s/journal','fsync':'batch'},"
                 "'queues':{'q':{'kind':'echo','consumers':0}}}",
                 dir),
        0);
    d = bb_startq("%s", config);
    c = bb_connect(d);
    for (int i = 0; i < 3; i++)
        bb_put_job(c, bb_jsonq("{'queue':'q','args':{'i':%d}}", i),
                   BB_TIMEOUT_MS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    notify_open(&n);
    d = start_probed(&n, &p, config, 1);
    /* The replayed jobs are there as READY=1 is released, and in the
     * first STATUS=, which the daemon sends right after READY=1. */
    ck_assert_int_eq(bb_int_at(p.stats, "queues.q.unfinished"), 3);
    ck_assert_int_eq(bb_int_at(p.stats, "queues.q.size"), 3);
    status_expect(&n, 3, 0, -1, STATUS_MS);
    json_decref(p.stats);
    ck_assert_int_eq(bb_stop(d), 0);
    notify_close(&n);
    free(config);
    tmpdir_remove(dir);
}
END_TEST

START_TEST(status_reports_counts_and_follows_puts)
{
    struct notify n;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t slow;

    notify_open(&n);
    d = bb_startq("{'queues':{'idle':{'kind':'echo','consumers':0},"
                  "'slow':{'kind':'sleep','consumers':1}}}");
    n.daemon = bb_pid(d);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    status_expect(&n, 0, 0, -1, STATUS_MS);
    c = bb_connect(d);
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    slow = bb_put_job(c, bb_jsonq("{'queue':'slow','args':{'seconds':30}}"),
                      BB_TIMEOUT_MS);
    bb_await_state(c, slow, "running", JOB_START_MS);
    bb_await_connections(c, 1, 5000);
    status_expect(&n, 3, 1, 1, STATUS_MS);
    json_decref(bb_result(c, "cancel", bb_jsonq("{'job':%lld}", slow)));
    status_expect(&n, 2, 0, 1, STATUS_MS);
    bb_close(c);
    status_expect(&n, 2, 0, 0, STATUS_MS);
    ck_assert_int_eq(bb_stop(d), 0);
    notify_close(&n);
}
END_TEST

START_TEST(sighup_sends_reloading_then_ready)
{
    static const char config[] =
        "{'queues':{'q':{'kind':'echo','consumers':%d}}}";
    struct notify n;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *pong;

    notify_open(&n);
    d = bb_startq(config, 1);
    n.daemon = bb_pid(d);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    c = bb_connect(d);

    bb_write_configq(d, config, 3);
    bb_signal(d, SIGHUP);
    notify_expect_next(&n, "RELOADING=1", NOTIFY_MS);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    /* READY=1 again means the new config is in force. */
    ck_assert_int_eq(bb_stat_int(c, "q", "consumers"), 3);

    /* A config that does not load: the old one stays, and READY=1 too. */
    bb_write_configq(d, "{'queues':{'q':{'kind':'echo','consumers':'two'}}}");
    bb_signal(d, SIGHUP);
    notify_expect_next(&n, "RELOADING=1", NOTIFY_MS);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    ck_assert_int_eq(bb_stat_int(c, "q", "consumers"), 3);
    pong = bb_result(c, "ping", NULL);
    ck_assert_str_eq(json_string_value(pong), "pong");
    json_decref(pong);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    notify_close(&n);
}
END_TEST

START_TEST(sigterm_sends_stopping_before_exit)
{
    struct notify n;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t job;
    int64_t deadline;
    char msg[MSG_MAX];
    bool has_stopping_status = false;

    notify_open(&n);
    d = bb_startq("{'shutdown':{'grace':2},"
                  "'queues':{'slow':{'kind':'sleep','consumers':1}}}");
    n.daemon = bb_pid(d);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    c = bb_connect(d);
    job = bb_put_job(c, bb_jsonq("{'queue':'slow','args':{'seconds':30}}"),
                     BB_TIMEOUT_MS);
    bb_await_state(c, job, "running", JOB_START_MS);
    bb_signal(d, SIGTERM);
    notify_expect_next(&n, "STOPPING=1", NOTIFY_MS);
    /* The running job holds it up for the grace: STOPPING=1 came first. */
    ck_assert_msg(bb_pid_alive(bb_pid(d)), "asyncqd gone at STOPPING=1");
    /* The status says so within the grace (the status timer ticks every
     * second). */
    deadline = bb_now_ms() + 1900;
    while (!has_stopping_status &&
           notify_next_any(&n, msg, sizeof msg, deadline)) {
        if (strncmp(msg, "STATUS=", 7) == 0) {
            struct status st;

            status_parse(msg, &st);
            has_stopping_status = st.is_stopping;
        }
    }
    ck_assert_msg(has_stopping_status,
                  "no STATUS= saying stopping during the grace; last: %s",
                  n.last_status);
    ck_assert_int_eq(bb_wait_exit(d, EXIT_MS), 0);
    bb_free(d);
    bb_close(c);
    notify_close(&n);
}
END_TEST

START_TEST(watchdog_pings_every_half_period)
{
    struct notify n;
    struct bb_daemon *d;
    int64_t deadline;
    char msg[MSG_MAX];
    int pings = 0;

    notify_open(&n);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "200000", 1), 0);
    d = bb_startq("{'queues':{'q':{'kind':'echo'}}}");
    n.daemon = bb_pid(d);
    deadline = bb_now_ms() + 1000;
    while (notify_next_any(&n, msg, sizeof msg, deadline))
        pings += msg_has(msg, "WATCHDOG=1");
    /* Every 100 ms: about 10 in the second; no burst either. */
    ck_assert_msg(pings >= 3 && pings <= 20, "%d WATCHDOG=1 in 1 s", pings);
    ck_assert_int_eq(bb_stop(d), 0);
    unsetenv("WATCHDOG_USEC");
    notify_close(&n);
}
END_TEST

START_TEST(watchdog_is_off_for_another_pid)
{
    struct notify n;
    struct bb_daemon *d;
    int64_t deadline;
    char msg[MSG_MAX], pid[32];
    int pings = 0;
    bool has_ready = false;

    notify_open(&n);
    snprintf(pid, sizeof pid, "%d", (int)getpid()); /* not the daemon */
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "200000", 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    d = bb_startq("{'queues':{'q':{'kind':'echo'}}}");
    n.daemon = bb_pid(d);
    deadline = bb_now_ms() + 500;
    while (notify_next_any(&n, msg, sizeof msg, deadline)) {
        pings += msg_has(msg, "WATCHDOG=1");
        has_ready = has_ready || msg_has(msg, "READY=1");
    }
    ck_assert_msg(has_ready, "no READY=1: the socket does not work");
    ck_assert_msg(pings == 0, "%d WATCHDOG=1 though WATCHDOG_PID is %s", pings,
                  pid);
    ck_assert_int_eq(bb_stop(d), 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    notify_close(&n);
}
END_TEST

/* ---- socket activation ---- */

START_TEST(listen_fds_socket_is_served_instead_of_config_listen)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *pong;
    int fd, rc;

    /* Not 127.0.0.1:1: tests may run as root, which may bind it. No host
     * has TEST-NET-1 (RFC 5737), so binding it fails for anyone. */
    sin.sin_port = htons(7878);
    ck_assert_int_eq(inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr), 1);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    rc = bind(fd, (struct sockaddr *)&sin, sizeof sin);
    close(fd);
    ck_assert_msg(rc != 0, "192.0.2.1:7878 can be bound here: no test");

    d = bb_startq("{'listen':['tcp://192.0.2.1:7878',"
                  "'unix:/nonexistent-asyncq-dir/asyncq.sock'],"
                  "'queues':{'q':{'kind':'echo'}}}");
    c = bb_connect(d);
    pong = bb_result(c, "ping", NULL);
    ck_assert_str_eq(json_string_value(pong), "pong");
    json_decref(pong);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Runs argv (JSON text with ' for ") as an exec job with wait and returns
 * its stdout (a new string); fails the test unless it is done. */
static char *
run_exec(struct bb_conn *c, const char *argv)
{
    json_t *rec = bb_result(
        c, "put",
        bb_jsonq("{'queue':'x','kind':'exec','args':{'argv':%s},'wait':true}",
                 argv));
    char *out;

    ck_assert_msg(strcmp(bb_str_at(rec, "state"), "done") == 0, "exec %s: %s",
                  argv, bb_dump(rec));
    out = strdup(bb_str_at(rec, "result.stdout"));
    json_decref(rec);
    return out;
}

START_TEST(exec_jobs_get_no_service_variables)
{
    static const char *const service_vars[] = {
        "LISTEN_FDS",    "LISTEN_PID",    "LISTEN_FDNAMES",
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
    struct notify n;
    struct bb_daemon *d;
    struct bb_conn *c;
    char *out, *line, *save;
    bool has_path = false;

    notify_open(&n);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "60000000", 1), 0);
    d = bb_startq("{'queues':{'x':{'kind':'exec'}}}");
    c = bb_connect(d);
    out = run_exec(c, "['/usr/bin/env']");
    for (line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        for (size_t i = 0; i < sizeof service_vars / sizeof service_vars[0];
             i++) {
            size_t len = strlen(service_vars[i]);

            ck_assert_msg(strncmp(line, service_vars[i], len) != 0 ||
                              line[len] != '=',
                          "an exec job got %s", line);
        }
        has_path = has_path || strncmp(line, "PATH=", 5) == 0;
    }
    ck_assert_msg(has_path, "env printed no PATH: the check saw nothing");
    free(out);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    unsetenv("WATCHDOG_USEC");
    notify_close(&n);
}
END_TEST

START_TEST(exec_jobs_inherit_no_sockets)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    char *out, *line, *save;
    int nfds = 0;

    d = bb_startq("{'metrics':'127.0.0.1:0','queues':{'x':{'kind':'exec'}}}");
    c = bb_connect(d);
    /* The shell's own descriptors: what the daemon left open for it. */
    out = run_exec(c, "['/bin/sh','-c','for f in /proc/$$/fd/*; do "
                      "readlink $f; done; exit 0']");
    for (line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        ck_assert_msg(strncmp(line, "socket:", 7) != 0,
                      "an exec job inherited %s", line);
        nfds++;
    }
    ck_assert_msg(nfds >= 3, "%d descriptors listed: the check saw nothing",
                  nfds);
    free(out);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- metrics ---- */

/* Bodies the format checker must refuse: it is not vacuous. */
START_TEST(format_checker_refuses_broken_expositions)
{
    static const char *const bad[] = {
        "x 1",                                       /* no final newline */
        "9x 1\n",                                    /* metric name */
        "x{9a=\"v\"} 1\n",                           /* label name */
        "x{a=\"\\t\"} 1\n",                          /* escape */
        "x{a=v} 1\n",                                /* unquoted */
        "x one\n",                                   /* value */
        "x 1 12.5\n",                                /* timestamp */
        "# TYPE x gauge\n# TYPE x gauge\nx 1\n",     /* TYPE twice */
        "x 1\n# TYPE x gauge\n",                     /* TYPE after */
        "# TYPE x gaug\nx 1\n",                      /* type */
        "x{a=\"1\"} 1\ny 1\nx{a=\"2\"} 1\n",         /* not contiguous */
        "# TYPE x counter\nx 1\n",                   /* no _total */
        "# TYPE x_total counter\nx_total -1\n",      /* negative */
        "x 1\nx 2\n",                                /* series twice */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\n" /* decreasing */
        "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n" /* no +Inf */
        "h_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\n" /* +Inf != _count */
        "h_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", /* _sum */
        "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",     /* le */
    };
    static const char good[] =
        "# HELP a_total A \\\\ help\\n.\n# TYPE a_total counter\n"
        "a_total{q=\"x\\\"y\\\\\\n\"} 0\na_total{q=\"z\",} 1e3 1700000000000\n"
        "# comment\n\n# TYPE g gauge\ng +Inf\ng{x=\"1\"} -Inf\ng{x=\"2\"} NaN\n"
        "# TYPE h histogram\nh_bucket{q=\"a\",le=\"0.5\"} 1\n"
        "h_bucket{q=\"a\",le=\"+Inf\"} 2\nh_sum{q=\"a\"} 1.5\n"
        "h_count{q=\"a\"} 2\nu:v 3\n";
    struct expo e;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expo_parse(&e, bad[i], strlen(bad[i]));
        ck_assert_msg(e.error != NULL, "accepted: %s", bad[i]);
        expo_free(&e);
    }
    expo_parse(&e, good, strlen(good));
    ck_assert_msg(e.error == NULL, "refused a valid exposition: %s", e.error);
    ck_assert_int_eq(e.nsamples, 10);
    expo_free(&e);
}
END_TEST

/* Per-queue stats field and the metric that must equal it. */
static const struct {
    const char *stat, *metric;
} queue_metrics[] = {
    {"size", "asyncq_queue_size"},
    {"delayed", "asyncq_queue_delayed"},
    {"running", "asyncq_queue_running"},
    {"unfinished", "asyncq_queue_unfinished"},
    {"maxsize", "asyncq_queue_maxsize"},
    {"consumers", "asyncq_queue_consumers"},
    {"busy", "asyncq_queue_busy"},
    {"put", "asyncq_jobs_put_total"},
    {"done", "asyncq_jobs_done_total"},
    {"failed", "asyncq_jobs_failed_total"},
    {"cancelled", "asyncq_jobs_cancelled_total"},
    {"retried", "asyncq_jobs_retried_total"},
};

START_TEST(metrics_equal_stats_after_a_known_workload)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *stats, *queues, *q, *rec;
    const char *name;
    struct expo e;
    size_t nqueue_samples = 0;

    d = bb_startq("{'metrics':'127.0.0.1:0','queues':{"
                  "'work':{'kind':'echo','consumers':2},"
                  "'idle':{'kind':'echo','consumers':0},"
                  "'cmds':{'kind':'exec','consumers':1,'retries':0}}}");
    c = bb_connect(d);
    for (int i = 0; i < 5; i++) {
        rec = bb_result(
            c, "put",
            bb_jsonq("{'queue':'work','args':{'i':%d},'wait':true}", i));
        ck_assert_str_eq(bb_str_at(rec, "state"), "done");
        json_decref(rec);
    }
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'cmds','args':{'argv':['/bin/false']},"
                             "'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    json_decref(rec);
    bb_await_connections(c, 1, 5000);

    stats = bb_result(c, "stats", NULL);
    metrics_get(bb_metrics_port(d), &e);
    /* The workload, as stats tells it. */
    ck_assert_int_eq(bb_int_at(stats, "queues.work.put"), 5);
    ck_assert_int_eq(bb_int_at(stats, "queues.work.done"), 5);
    ck_assert_int_eq(bb_int_at(stats, "queues.idle.size"), 2);
    ck_assert_int_eq(bb_int_at(stats, "queues.idle.unfinished"), 2);
    ck_assert_int_eq(bb_int_at(stats, "queues.cmds.failed"), 1);
    ck_assert_int_eq(bb_int_at(stats, "connections"), 1);
    /* And as /metrics tells it. */
    /* No asyncq_up (Prometheus' own "up" says it): asyncq_build_info. */
    ck_assert_int_lt(family_find(&e, "asyncq_up"), 0);
    ck_assert_double_eq(
        expo_labeled(&e, "asyncq_build_info", "version", ASYNCQ_VERSION), 1);
    ck_assert_double_ge(expo_value(&e, "asyncq_uptime_seconds", NULL), 0);
    ck_assert_double_eq(expo_value(&e, "asyncq_connections", NULL),
                        (double)bb_int_at(stats, "connections"));
    queues = json_object_get(stats, "queues");
    json_object_foreach (queues, name, q) {
        for (size_t i = 0; i < sizeof queue_metrics / sizeof queue_metrics[0];
             i++) {
            double v = expo_value(&e, queue_metrics[i].metric, name);

            ck_assert_msg(v == (double)bb_int_at(q, queue_metrics[i].stat),
                          "%s{queue=\"%s\"} %g, stats %s %lld",
                          queue_metrics[i].metric, name, v,
                          queue_metrics[i].stat,
                          (long long)bb_int_at(q, queue_metrics[i].stat));
        }
        ck_assert_double_eq(expo_value(&e, "asyncq_queue_paused", name),
                            json_is_true(json_object_get(q, "paused")) ? 1 : 0);
        nqueue_samples++;
    }
    /* No queue that stats does not know. */
    for (size_t i = 0; i < e.nsamples; i++) {
        const char *label = label_get(&e.samples[i], "queue");

        ck_assert_msg(label == NULL || json_object_get(queues, label) != NULL,
                      "/metrics has queue %s, stats does not", label);
    }
    ck_assert_uint_ge(nqueue_samples, 3);
    for (size_t i = 0; i < sizeof queue_metrics / sizeof queue_metrics[0]; i++)
        ck_assert_str_eq(family_type(&e, queue_metrics[i].metric),
                         strstr(queue_metrics[i].metric, "_total") != NULL
                             ? "counter"
                             : "gauge");
    /* Jobs that ran to an end: 5 echo, 1 failed exec; idle ran none. */
    ck_assert_str_eq(family_type(&e, "asyncq_job_run_seconds"), "histogram");
    ck_assert_double_eq(expo_value(&e, "asyncq_job_run_seconds_count", "work"),
                        5);
    ck_assert_double_eq(expo_value(&e, "asyncq_job_run_seconds_count", "cmds"),
                        1);
    ck_assert_double_eq(expo_value(&e, "asyncq_job_run_seconds_count", "idle"),
                        0);
    ck_assert_str_eq(family_type(&e, "asyncq_job_wait_seconds"), "histogram");
    ck_assert_double_eq(expo_value(&e, "asyncq_job_wait_seconds_count", "work"),
                        5);
    ck_assert_double_eq(expo_value(&e, "asyncq_job_wait_seconds_count", "idle"),
                        0);
    expo_free(&e);
    json_decref(stats);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(metrics_report_journal_bytes_and_fsyncs)
{
    char dir[64];
    struct bb_daemon *d;
    struct bb_conn *c;
    struct expo e;
    json_t *rec;

    tmpdir_make(dir, sizeof dir);
    d = bb_startq("{'metrics':'127.0.0.1:0',"
                  "'journal':{'path':'%s/journal','fsync':'batch'},"
                  "'queues':{'work':{'kind':'echo','consumers':1},"
                  "'idle':{'kind':'echo','consumers':0}}}",
                  dir);
    c = bb_connect(d);
    rec = bb_result(c, "put", bb_jsonq("{'queue':'work','wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    bb_put_job(c, bb_jsonq("{'queue':'idle'}"), BB_TIMEOUT_MS);
    metrics_get(bb_metrics_port(d), &e);
    ck_assert_str_eq(family_type(&e, "asyncq_journal_bytes"), "gauge");
    ck_assert_double_gt(expo_value(&e, "asyncq_journal_bytes", NULL), 0);
    ck_assert_str_eq(family_type(&e, "asyncq_journal_fsync_seconds"),
                     "histogram");
    /* fsync batch: each put's reply waited for an fsync. */
    ck_assert_double_gt(
        expo_value(&e, "asyncq_journal_fsync_seconds_count", NULL), 0);
    expo_free(&e);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    tmpdir_remove(dir);
}
END_TEST

/* ---- /healthz and the rest ---- */

START_TEST(healthz_is_ok_while_running)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0'}");
    struct http_reply r = {0};

    http_request(bb_metrics_port(d), "GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(body_is(&r, "ok"), "GET /healthz: body \"%s\"", r.body);
    http_reply_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(healthz_is_503_stopping_during_the_grace)
{
    struct notify n;
    struct bb_daemon *d;
    struct bb_conn *c;
    struct http_reply r = {0};
    json_int_t job;
    int port;

    notify_open(&n);
    d = bb_startq("{'metrics':'127.0.0.1:0','shutdown':{'grace':2},"
                  "'queues':{'slow':{'kind':'sleep','consumers':1}}}");
    n.daemon = bb_pid(d);
    port = bb_metrics_port(d);
    notify_expect_next(&n, "READY=1", NOTIFY_MS);
    c = bb_connect(d);
    job = bb_put_job(c, bb_jsonq("{'queue':'slow','args':{'seconds':30}}"),
                     BB_TIMEOUT_MS);
    bb_await_state(c, job, "running", JOB_START_MS);
    bb_signal(d, SIGTERM);
    notify_expect_next(&n, "STOPPING=1", NOTIFY_MS);
    http_request(port, "GET", "/healthz", &r);
    ck_assert_msg(bb_pid_alive(bb_pid(d)), "asyncqd gone during the grace");
    ck_assert_int_eq(r.status, 503);
    ck_assert_msg(body_is(&r, "stopping"), "GET /healthz: body \"%s\"", r.body);
    http_reply_free(&r);
    ck_assert_int_eq(bb_wait_exit(d, EXIT_MS), 0);
    bb_free(d);
    bb_close(c);
    notify_close(&n);
}
END_TEST

START_TEST(metrics_listener_refuses_other_paths_and_methods)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0'}");
    int port = bb_metrics_port(d);
    struct http_reply r = {0};

    http_request(port, "GET", "/nope", &r);
    ck_assert_int_eq(r.status, 404);
    http_reply_free(&r);
    http_request(port, "GET", "/metricsx", &r);
    ck_assert_int_eq(r.status, 404);
    http_reply_free(&r);
    /* 405 would be exact; libevent answers 501 for a method outside
     * evhttp_set_allowed_methods: an error either way, never the page. */
    http_request(port, "POST", "/metrics", &r);
    ck_assert_msg(r.status >= 400, "POST /metrics: status %d", r.status);
    http_reply_free(&r);
    http_request(port, "POST", "/healthz", &r);
    ck_assert_msg(r.status >= 400, "POST /healthz: status %d", r.status);
    http_reply_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(metrics_null_starts_no_metrics_listener)
{
    struct bb_daemon *d = bb_startq("{'metrics':null}");

    /* bb_start returned after a ping: startup, and its log, is over. */
    ck_assert_msg(bb_log_has(d, ": ready"), "no ready line in the log");
    ck_assert_msg(!bb_log_has(d, "metrics on"), "a metrics listener started");
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- the metrics listener's limits (docs/operations.md) ---- */

#define METRICS_MAX_CONNECTIONS 64 /* AQ_METRICS_MAX_CONNECTIONS */
#define FLOOD_BYTES ((size_t)64 << 20)
#define FLOOD_MS 30000
#define RSS_GROWTH_MAX_KB (16 << 10)

/* A blocking TCP connection to 127.0.0.1:port; fails the test if the
 * connect fails. */
static int
metrics_dial(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0,
                  "connect to metrics port %d: %s", port, strerror(errno));
    return fd;
}

/* VmRSS of pid, in KiB. */
static long
rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    ck_assert_msg(kb > 0, "%s: no VmRSS", path);
    return kb;
}

/* Sends head, then 'a' up to total bytes (no newline), until a send fails
 * (the daemon closed) or FLOOD_MS pass; returns the bytes sent. */
static size_t
flood(int fd, const char *head, size_t total)
{
    static char chunk[65536];
    int64_t deadline = bb_now_ms() + FLOOD_MS;
    size_t sent = 0, hlen = strlen(head);

    memset(chunk, 'a', sizeof chunk);
    while (sent < total) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int wait_ms = (int)(deadline - bb_now_ms());
        const char *p = sent < hlen ? head + sent : chunk;
        size_t n = sent < hlen ? hlen - sent : sizeof chunk;
        ssize_t w;

        if (wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0)
            break;
        if (n > total - sent)
            n = total - sent;
        if ((w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            break;
        }
        sent += (size_t)w;
    }
    return sent;
}

/* Whether the peer closed fd within timeout_ms (EOF or a reset); data
 * before the close is dropped. */
static bool
fd_wait_closed(int fd, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char buf[4096];

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = (int)(deadline - bb_now_ms());
        ssize_t got;

        if (wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0)
            return false;
        if ((got = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) == 0)
            return true;
        if (got < 0 && errno != EAGAIN && errno != EINTR)
            return true;
    }
}

/* What a client may stream at the listener without end. */
static const struct {
    const char *what, *head;
} floods[] = {
    {"a request line", "GET /"},
    {"a header line", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: "},
    {"a body", "GET /metrics HTTP/1.1\r\nHost: x\r\n"
               "Content-Length: 67108864\r\n\r\n"},
};

START_TEST(metrics_listener_refuses_a_64_mib_request)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0'}");
    int port = bb_metrics_port(d), fd;
    struct expo e;
    long before, after;
    size_t sent;

    /* Once, so that the page's buffers count in the baseline. */
    metrics_get(port, &e);
    expo_free(&e);
    before = rss_kb(bb_pid(d));
    fd = metrics_dial(port);
    sent = flood(fd, floods[_i].head, FLOOD_BYTES);
    ck_assert_msg(sent < FLOOD_BYTES,
                  "%s of 64 MiB with no end: all of it taken", floods[_i].what);
    ck_assert_msg(fd_wait_closed(fd, HTTP_MS),
                  "%s of 64 MiB with no end: %zu bytes sent, then the "
                  "connection stayed open",
                  floods[_i].what, sent);
    close(fd);
    after = rss_kb(bb_pid(d));
    ck_assert_msg(after - before < RSS_GROWTH_MAX_KB,
                  "%s of 64 MiB with no end: RSS grew from %ld to %ld KiB",
                  floods[_i].what, before, after);
    metrics_get(port, &e);
    expo_free(&e);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(metrics_listener_closes_connections_beyond_its_cap)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0'}");
    int port = bb_metrics_port(d), fds[METRICS_MAX_CONNECTIONS], extra;
    int64_t deadline;
    struct http_reply r = {0};

    for (int i = 0; i < METRICS_MAX_CONNECTIONS; i++)
        fds[i] = metrics_dial(port);
    extra = metrics_dial(port);
    ck_assert_msg(fd_wait_closed(extra, HTTP_MS),
                  "connection %d to the metrics port was kept",
                  METRICS_MAX_CONNECTIONS + 1);
    close(extra);
    /* The daemon took the connections in order, in the pass that closed
     * the extra one: the first ones are open, none has a byte or an EOF. */
    for (int i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};

        ck_assert_msg(poll(&pfd, 1, 0) == 0,
                      "connection %d of %d was closed or answered", i + 1,
                      METRICS_MAX_CONNECTIONS);
    }
    ck_assert_msg(bb_log_has(d, "metrics: connection refused"),
                  "no log line for the refused connection");
    for (int i = 0; i < METRICS_MAX_CONNECTIONS; i++)
        close(fds[i]);
    /* The slots free as the daemon reads each EOF: poll until one does. */
    deadline = bb_now_ms() + HTTP_MS;
    while (!http_exchange(port, "GET", "/healthz", &r))
        ck_assert_msg(bb_now_ms() < deadline,
                      "the metrics port refuses after its clients left");
    ck_assert_int_eq(r.status, 200);
    http_reply_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- for operators: metrics, logs, reload (issue 13) ---- */

/* The value of name{queue=q,reason=r}, or -1 if there is no such series. */
static double
expo_reason(const struct expo *e, const char *name, const char *queue,
            const char *reason)
{
    for (size_t i = 0; i < e->nsamples; i++) {
        const struct sample *s = &e->samples[i];
        const char *q = label_get(s, "queue"), *r = label_get(s, "reason");

        if (strcmp(s->name, name) == 0 && q != NULL && r != NULL &&
            strcmp(q, queue) == 0 && strcmp(r, reason) == 0)
            return s->value;
    }
    return -1;
}

/* One scrape's value of name{queue=queue}. */
static double
scrape_value(int port, const char *name, const char *queue)
{
    struct expo e;
    double v;

    metrics_get(port, &e);
    v = expo_value(&e, name, queue);
    expo_free(&e);
    return v;
}

struct scrape_poll {
    int port;
    const char *name, *queue;
    double at_least, at_most;
};

static bool
scrape_in_range(void *arg)
{
    struct scrape_poll *p = arg;
    double v = scrape_value(p->port, p->name, p->queue);

    return v >= p->at_least && v <= p->at_most;
}

/* Polls name{queue=queue} until it is in [lo, hi]; fails the test if it is
 * not within 5 s. */
static void
await_metric(int port, const char *name, const char *queue, double lo,
             double hi)
{
    struct scrape_poll p = {port, name, queue, lo, hi};

    ck_assert_msg(bb_poll(scrape_in_range, &p, 5000),
                  "%s{queue=\"%s\"} not in [%g, %g] within 5 s: %g", name,
                  queue, lo, hi, scrape_value(port, name, queue));
}

START_TEST(metrics_show_build_info_and_process_families)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0'}");
    static const char *const gauges[] = {
        "process_open_fds", "process_max_fds", "process_virtual_memory_bytes",
        "process_resident_memory_bytes", "process_start_time_seconds"};
    double now = (double)time(NULL);
    struct expo e;

    metrics_get(bb_metrics_port(d), &e);
    ck_assert_int_lt(family_find(&e, "asyncq_up"), 0);
    ck_assert_str_eq(family_type(&e, "asyncq_build_info"), "gauge");
    ck_assert_double_eq(
        expo_labeled(&e, "asyncq_build_info", "version", ASYNCQ_VERSION), 1);
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
        ck_assert_str_eq(family_type(&e, gauges[i]), "gauge");
    ck_assert_str_eq(family_type(&e, "process_cpu_seconds_total"), "counter");
    ck_assert_double_ge(expo_value(&e, "process_cpu_seconds_total", NULL), 0);
    /* stdin, stdout, stderr, the producer and the metrics listeners */
    ck_assert_double_ge(expo_value(&e, "process_open_fds", NULL), 5);
    ck_assert_double_ge(expo_value(&e, "process_max_fds", NULL),
                        expo_value(&e, "process_open_fds", NULL));
    ck_assert_double_gt(expo_value(&e, "process_resident_memory_bytes", NULL),
                        0);
    ck_assert_double_ge(expo_value(&e, "process_virtual_memory_bytes", NULL),
                        expo_value(&e, "process_resident_memory_bytes", NULL));
    ck_assert_double_le(expo_value(&e, "process_start_time_seconds", NULL),
                        now + 1);
    ck_assert_double_gt(expo_value(&e, "process_start_time_seconds", NULL),
                        now - 300);
    expo_free(&e);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* The oldest ready job is not the head of the queue when a more urgent
 * one came later, and a delayed job's age starts when it becomes ready. */
START_TEST(oldest_ready_age_is_that_of_the_job_ready_longest)
{
    struct bb_daemon *d = bb_startq("{'metrics':'127.0.0.1:0','queues':{"
                                    "'q':{'kind':'echo','consumers':0},"
                                    "'later':{'kind':'echo','consumers':0},"
                                    "'empty':{'kind':'echo','consumers':0}}}");
    struct bb_conn *c = bb_connect(d);
    int port = bb_metrics_port(d);
    const char *age = "asyncq_queue_oldest_ready_age_seconds";
    json_int_t later;
    double put0, put1, scrape0, scrape1, v;

    ck_assert_double_eq(scrape_value(port, age, "q"), 0);
    bb_put_job(c, bb_jsonq("{'queue':'q','priority':5}"), BB_TIMEOUT_MS);
    put0 = bb_now_s();
    later =
        bb_put_job(c, bb_jsonq("{'queue':'later','delay':1}"), BB_TIMEOUT_MS);
    put1 = bb_now_s();
    await_metric(port, age, "q", 0.3, 1e9);
    bb_put_job(c, bb_jsonq("{'queue':'q','priority':-5}"), BB_TIMEOUT_MS);
    ck_assert_double_ge(scrape_value(port, age, "q"), 0.3);
    ck_assert_double_eq(scrape_value(port, age, "empty"), 0);
    bb_await_state(c, later, "pending", 5000);
    scrape0 = bb_now_s();
    v = scrape_value(port, age, "later");
    scrape1 = bb_now_s();
    /* Counted from when it became ready (a second after its put, give or
     * take a 16 ms tick), which an age counted from the put exceeds. */
    ck_assert_msg(v <= scrape1 - put0 - 1 + 0.02,
                  "later: %g s, ready at most %g s before", v,
                  scrape1 - put0 - 1);
    ck_assert_double_lt(v, scrape0 - put1);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(producers_waiting_counts_puts_held_back_by_a_full_queue)
{
    struct bb_daemon *d =
        bb_startq("{'metrics':'127.0.0.1:0','queues':{"
                  "'q':{'kind':'echo','consumers':0,'maxsize':1}}}");
    struct bb_conn *c = bb_connect(d), *held = bb_connect(d);
    int port = bb_metrics_port(d);
    const char *waiting = "asyncq_queue_producers_waiting";
    json_int_t first, call;
    json_t *r;

    first = bb_put_job(c, bb_jsonq("{'queue':'q'}"), BB_TIMEOUT_MS);
    ck_assert_double_eq(scrape_value(port, waiting, "q"), 0);
    call = bb_send_call(held, "put", bb_jsonq("{'queue':'q'}"));
    await_metric(port, waiting, "q", 1, 1);
    json_decref(
        bb_result(c, "cancel", bb_jsonq("{'job':%lld}", (long long)first)));
    r = bb_wait_reply(held, call, BB_TIMEOUT_MS);
    ck_assert_msg(r != NULL && json_object_get(r, "result") != NULL,
                  "the held put was not answered once room freed");
    json_decref(r);
    ck_assert_double_eq(scrape_value(port, waiting, "q"), 0);
    bb_close(held);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(failures_are_counted_by_reason)
{
    struct bb_daemon *d =
        bb_startq("{'metrics':'127.0.0.1:0','queues':{"
                  "'cmds':{'kind':'exec','consumers':1,'retries':1,"
                  "'backoff':{'initial':0,'factor':1,'max':0}},"
                  "'ok':{'kind':'echo','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    const char *fam = "asyncq_job_failures_total";
    struct expo e;
    json_t *rec;

    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'cmds','args':{'argv':['/bin/false']},"
                             "'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    json_decref(rec);
    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'cmds','args':{'argv':['/bin/sh','-c',"
                             "'sleep 10']},'timeout':0.2,'retries':0,"
                             "'wait':true}"));
    ck_assert_str_eq(bb_str_at(rec, "state"), "failed");
    json_decref(rec);
    rec = bb_result(c, "put", bb_jsonq("{'queue':'ok','wait':true}"));
    json_decref(rec);
    metrics_get(bb_metrics_port(d), &e);
    ck_assert_str_eq(family_type(&e, fam), "counter");
    /* /bin/false twice (retries 1), the sleep once */
    ck_assert_double_eq(expo_reason(&e, fam, "cmds", "exit"), 2);
    ck_assert_double_eq(expo_reason(&e, fam, "cmds", "timeout"), 1);
    ck_assert_double_eq(expo_reason(&e, fam, "cmds", "signal"), -1);
    ck_assert_double_eq(expo_reason(&e, fam, "ok", "exit"), -1);
    ck_assert_double_eq(expo_value(&e, "asyncq_jobs_failed_total", "cmds"), 2);
    expo_free(&e);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Starts asyncqd through a wrapper that sets $JOURNAL_STREAM to its
 * stderr's device and inode, as systemd does for a service logging to the
 * journal. */
static struct bb_daemon *
start_under_journald(const char *config)
{
    char dir[64], script[128], wrapper[512];
    const char *old = getenv("ASYNCQD_WRAPPER");
    char *saved = old != NULL ? strdup(old) : NULL;
    struct bb_daemon *d;
    FILE *f;

    tmpdir_make(dir, sizeof dir);
    snprintf(script, sizeof script, "%s/journald", dir);
    f = fopen(script, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "#!/bin/sh\n"
               "JOURNAL_STREAM=$(stat -L -c %%d:%%i /proc/self/fd/2)\n"
               "export JOURNAL_STREAM\n"
               "exec \"$@\"\n");
    fclose(f);
    ck_assert_int_eq(chmod(script, 0755), 0);
    snprintf(wrapper, sizeof wrapper, "%s%s%s", script,
             saved != NULL ? " " : "", saved != NULL ? saved : "");
    setenv("ASYNCQD_WRAPPER", wrapper, 1);
    d = bb_startq("%s", config);
    if (saved != NULL)
        setenv("ASYNCQD_WRAPPER", saved, 1);
    else
        unsetenv("ASYNCQD_WRAPPER");
    free(saved);
    tmpdir_remove(dir);
    return d;
}

/* Whether line is one of asyncqd's: "<N>level: ..." with N the level's
 * syslog priority. */
static bool
is_journal_line(const char *line)
{
    static const char *const ok[] = {
        "<3>error: ", "<4>warn: ", "<6>info: ", "<7>debug: "};

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (strncmp(line, ok[i], strlen(ok[i])) == 0)
            return true;
    }
    return false;
}

START_TEST(under_journald_a_failed_job_is_logged_with_priority_4)
{
    struct bb_daemon *d = start_under_journald(
        "{'queues':{'cmds':{'kind':'exec','consumers':1}}}");
    struct bb_conn *c = bb_connect(d);
    json_t *rec;
    char want[64], *log, *line;
    int nlines = 0;

    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'cmds','args':{'argv':['/bin/false']},"
                             "'wait':true}"));
    snprintf(want, sizeof want, "<4>warn: job %lld: failed on cmds",
             (long long)bb_int_at(rec, "job"));
    json_decref(rec);
    ck_assert_msg(bb_log_wait(d, want, 5000), "no \"%s\" in the log", want);
    /* Every line: a priority, the level, no timestamp (journald adds it). */
    log = bb_log(d);
    for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        ck_assert_msg(is_journal_line(line), "not a journal line: %s", line);
        nlines++;
    }
    ck_assert_int_ge(nlines, 3);
    free(log);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* Each line of text from from on must be a JSON object with ts, level
 * and msg; returns the one whose msg holds needle (a new ref), or NULL. */
static json_t *
json_lines_find(const char *text, const char *needle)
{
    char *copy = strdup(text), *line;
    json_t *found = NULL;

    for (line = strtok(copy, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *v = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);

        ck_assert_msg(json_is_object(v), "not a JSON object (%s): %s",
                      jerr.text, line);
        ck_assert_msg(json_is_string(json_object_get(v, "ts")) &&
                          json_is_string(json_object_get(v, "level")) &&
                          json_is_string(json_object_get(v, "msg")),
                      "no ts, level or msg: %s", line);
        if (found == NULL &&
            strstr(json_string_value(json_object_get(v, "msg")), needle))
            found = json_incref(v);
        json_decref(v);
    }
    free(copy);
    return found;
}

/* log.format json from a reload on: the lines after it are objects, and a
 * failed job's names the job and its queue. */
START_TEST(json_log_format_applies_at_reload_and_names_the_job)
{
#define JSON_LOG_CFG                                                           \
    "{'log':{'format':'%s'},'queues':{'cmds':{'kind':'exec','consumers':1}}}"
    struct bb_daemon *d = bb_startq(JSON_LOG_CFG, "text");
    struct bb_conn *c = bb_connect(d);
    json_t *rec, *line;
    json_int_t id;
    char *log, *from;

    ck_assert_msg(bb_log_has(d, " info: asyncqd "), "the ready line is not "
                                                    "text");
    bb_write_configq(d, JSON_LOG_CFG, "json");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "applied", 5000), "no reload in the log");
    rec = bb_result(c, "put",
                    bb_jsonq("{'queue':'cmds','args':{'argv':['/bin/false']},"
                             "'wait':true}"));
    id = bb_int_at(rec, "job");
    json_decref(rec);
    ck_assert_msg(bb_log_wait(d, "failed on cmds", 5000), "no failed job");
    log = bb_log(d);
    from = strstr(log, "{\"ts\"");
    ck_assert_ptr_nonnull(from);
    line = json_lines_find(from, "failed on cmds");
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(json_string_value(json_object_get(line, "level")), "warn");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "job")), id);
    ck_assert_str_eq(json_string_value(json_object_get(line, "queue")), "cmds");
    json_decref(line);
    free(log);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(log_format_that_is_not_known_is_refused_naming_it)
{
    struct bb_daemon *d = bb_startq("{}");
    char *log;

    bb_write_configq(d, "{'log':{'format':'yaml'}}");
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "keeping the running config", 5000),
                  "the bad config was not refused");
    log = bb_log(d);
    ck_assert_msg(strstr(log, "log.format") != NULL,
                  "the error does not name log.format: %s", log);
    free(log);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

static bool
two_reloads_applied(void *arg)
{
    char *log = bb_log(arg), *at = strstr(log, " applied");
    bool yes = at != NULL && strstr(at + 1, " applied") != NULL;

    free(log);
    return yes;
}

/* A reload sets the config's consumer counts, over what scale set: it
 * says so, naming the queue and both numbers, once. */
START_TEST(reload_overriding_a_scale_is_logged)
{
    const char *cfg = "{'queues':{'q':{'kind':'echo','consumers':1}}}";
    struct bb_daemon *d = bb_startq("%s", cfg);
    struct bb_conn *c = bb_connect(d);
    const char *want = "warn: reload: queue q: consumers 3 (set by scale) -> "
                       "1 (the config)";
    char *log, *at;

    json_decref(bb_result(c, "scale", bb_jsonq("{'queue':'q','consumers':3}")));
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, want, 5000), "no \"%s\" in the log", want);
    ck_assert_int_eq(bb_stat_int(c, "q", "consumers"), 1);
    /* Once: the next reload finds nothing set by hand. */
    bb_write_configq(d, "%s", cfg);
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_poll(two_reloads_applied, d, 5000), "no second reload");
    log = bb_log(d);
    at = strstr(log, want);
    ck_assert_ptr_nonnull(at);
    ck_assert_ptr_null(strstr(at + strlen(want), "(set by scale)"));
    free(log);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_service_suite(void)
{
    Suite *s = suite_create("bb_service");
    TCase *notify = tcase_create("notify");
    TCase *activation = tcase_create("activation");
    TCase *metrics = tcase_create("metrics");
    TCase *ops = tcase_create("ops");

    tcase_set_timeout(notify, 60);
    tcase_add_test(notify, ready_is_sent_only_once_the_listeners_serve);
    tcase_add_test(notify, ready_comes_after_the_journal_is_replayed);
    tcase_add_test(notify, status_reports_counts_and_follows_puts);
    tcase_add_test(notify, sighup_sends_reloading_then_ready);
    tcase_add_test(notify, sigterm_sends_stopping_before_exit);
    tcase_add_test(notify, watchdog_pings_every_half_period);
    tcase_add_test(notify, watchdog_is_off_for_another_pid);
    suite_add_tcase(s, notify);

    tcase_set_timeout(activation, 60);
    tcase_add_test(activation,
                   listen_fds_socket_is_served_instead_of_config_listen);
    tcase_add_test(activation, exec_jobs_get_no_service_variables);
    tcase_add_test(activation, exec_jobs_inherit_no_sockets);
    suite_add_tcase(s, activation);

    tcase_set_timeout(metrics, 60);
    tcase_add_test(metrics, format_checker_refuses_broken_expositions);
    tcase_add_test(metrics, metrics_equal_stats_after_a_known_workload);
    tcase_add_test(metrics, metrics_report_journal_bytes_and_fsyncs);
    tcase_add_test(metrics, healthz_is_ok_while_running);
    tcase_add_test(metrics, healthz_is_503_stopping_during_the_grace);
    tcase_add_test(metrics, metrics_listener_refuses_other_paths_and_methods);
    tcase_add_test(metrics, metrics_null_starts_no_metrics_listener);
    tcase_add_loop_test(metrics, metrics_listener_refuses_a_64_mib_request, 0,
                        sizeof floods / sizeof floods[0]);
    tcase_add_test(metrics, metrics_listener_closes_connections_beyond_its_cap);
    suite_add_tcase(s, metrics);

    tcase_set_timeout(ops, 60);
    tcase_add_test(ops, metrics_show_build_info_and_process_families);
    tcase_add_test(ops, oldest_ready_age_is_that_of_the_job_ready_longest);
    tcase_add_test(ops,
                   producers_waiting_counts_puts_held_back_by_a_full_queue);
    tcase_add_test(ops, failures_are_counted_by_reason);
    tcase_add_test(ops, under_journald_a_failed_job_is_logged_with_priority_4);
    tcase_add_test(ops, json_log_format_applies_at_reload_and_names_the_job);
    tcase_add_test(ops, log_format_that_is_not_known_is_refused_naming_it);
    tcase_add_test(ops, reload_overriding_a_scale_is_logged);
    suite_add_tcase(s, ops);
    return s;
}
