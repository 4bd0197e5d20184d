/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq-bench.c: a load generator for asyncqd (the first cut of the
 * redis-benchmark of asyncq). C connections each keep P put requests in
 * flight (pipelined), N jobs in all, each with a payload of D bytes; then a
 * join waits until every job is done. Prints the ingest rate (puts
 * acknowledged per second) and the end-to-end rate (first put to join).
 * Replies are counted by line and checked for errors without parsing JSON,
 * so the generator stays cheaper than the server it measures.
 * Usage: asyncq-bench [-s HOST:PORT] [-c CONNS] [-P WINDOW] [-n TOTAL]
 *                     [-d BYTES] [-q QUEUE] [-k KIND] [--no-join] [--json]
 * --no-join measures ingest only (for a queue without consumers).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define RECV_CHUNK (256 * 1024)
#define DEADLINE_S 600 /* a run never lasts longer than this */

struct client {
    int fd;
    long sent, acked, errors;
    char *out; /* pending output */
    size_t out_len, out_off, out_cap;
    char *in; /* partial reply line */
    size_t in_len;
};

struct opts {
    const char *host, *port, *queue, *kind;
    int conns, window, payload;
    long total;
    bool json, no_join;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
connect_to(const struct opts *o)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int fd, one = 1, rc;

    if ((rc = getaddrinfo(o->host, o->port, &hints, &res)) != 0) {
        fprintf(stderr, "asyncq-bench: %s:%s: %s\n", o->host, o->port,
                gai_strerror(rc));
        exit(3);
    }
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        fprintf(stderr, "asyncq-bench: connect %s:%s: %s\n", o->host, o->port,
                strerror(errno));
        exit(3);
    }
    freeaddrinfo(res);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void
out_append(struct client *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Queues puts until the window is full or every job is sent. */
static void
fill_window(struct client *c, const struct opts *o, long share,
            const char *payload)
{
    char line[512];

    while (c->sent - c->acked < o->window && c->sent < share) {
        int n = snprintf(line, sizeof line,
                         "{\"id\":%ld,\"method\":\"put\",\"params\":{"
                         "\"queue\":\"%s\",\"kind\":\"%s\",\"args\":{\"p\":\"",
                         c->sent, o->queue, o->kind);
        out_append(c, line, (size_t)n);
        out_append(c, payload, (size_t)o->payload);
        out_append(c, "\"}}}\n", 5);
        c->sent++;
    }
}

/* Counts complete reply lines in buf; a line with "error" is an error. */
static void
count_replies(struct client *c, const char *buf, size_t n)
{
    const char *p = buf, *end = buf + n, *nl;

    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        /* The error member may straddle a read: check the joined line. */
        if (c->in_len > 0) {
            c->in = realloc(c->in, c->in_len + (size_t)(nl - p));
            memcpy(c->in + c->in_len, p, (size_t)(nl - p));
            if (memmem(c->in, c->in_len + (size_t)(nl - p), "\"error\"", 7))
                c->errors++;
            c->in_len = 0;
        } else if (memmem(p, (size_t)(nl - p), "\"error\"", 7))
            c->errors++;
        c->acked++;
        p = nl + 1;
    }
    if (p < end) {
        c->in = realloc(c->in, c->in_len + (size_t)(end - p));
        memcpy(c->in + c->in_len, p, (size_t)(end - p));
        c->in_len += (size_t)(end - p);
    }
}

/* Sends a request on fd and waits for one reply line; returns it (static). */
static const char *
call(int fd, const char *req)
{
    static char buf[65536];
    size_t len = 0;

    if (write(fd, req, strlen(req)) < 0)
        return NULL;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);

        if (n <= 0)
            return NULL;
        len += (size_t)n;
        buf[len] = '\0';
        if (memchr(buf, '\n', len) != NULL)
            return buf;
    }
    return buf;
}

static void
usage(void)
{
    fprintf(stderr, "usage: asyncq-bench [-s HOST:PORT] [-c CONNS] [-P WINDOW] "
                    "[-n TOTAL] [-d BYTES] [-q QUEUE] [-k KIND] [--no-join] "
                    "[--json]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
    static char host[256];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "--no-join") == 0) {
            o->no_join = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "-s") == 0) {
            const char *colon = strrchr(v, ':');

            if (colon == NULL || (size_t)(colon - v) >= sizeof host)
                usage();
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = '\0';
            o->host = host;
            o->port = colon + 1;
        } else if (strcmp(a, "-c") == 0)
            o->conns = atoi(v);
        else if (strcmp(a, "-P") == 0)
            o->window = atoi(v);
        else if (strcmp(a, "-n") == 0)
            o->total = atol(v);
        else if (strcmp(a, "-d") == 0)
            o->payload = atoi(v);
        else if (strcmp(a, "-q") == 0)
            o->queue = v;
        else if (strcmp(a, "-k") == 0)
            o->kind = v;
        else
            usage();
    }
    if (o->conns < 1 || o->conns > MAX_CONNS || o->window < 1 || o->total < 1 ||
        o->payload < 0 || o->payload > 100000)
        usage();
}

int
main(int argc, char **argv)
{
    struct opts o = {.host = "127.0.0.1",
                     .port = "7878",
                     .queue = "default",
                     .kind = "echo",
                     .conns = 4,
                     .window = 64,
                     .payload = 100,
                     .total = 100000};
    struct client cl[MAX_CONNS];
    struct pollfd pfd[MAX_CONNS];
    char *payload, *buf = malloc(RECV_CHUNK);
    long acked = 0, errors = 0;
    double start, ingest_s, e2e_s;
    int join_fd;
    const char *reply;

    parse_args(argc, argv, &o);
    payload = malloc((size_t)o.payload + 1);
    memset(payload, 'x', (size_t)o.payload);
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < o.conns; i++)
        cl[i].fd = connect_to(&o);
    join_fd = connect_to(&o);

    start = now_s();
    while (acked < o.total) {
        for (int i = 0; i < o.conns; i++) {
            long share = o.total / o.conns + (i < o.total % o.conns);

            fill_window(&cl[i], &o, share, payload);
            pfd[i].fd = cl[i].fd;
            pfd[i].events =
                POLLIN | (cl[i].out_off < cl[i].out_len ? POLLOUT : 0);
        }
        if (poll(pfd, (nfds_t)o.conns, 1000) < 0 ||
            now_s() - start > DEADLINE_S) {
            fprintf(stderr, "asyncq-bench: stalled after %ld replies\n", acked);
            return 1;
        }
        for (int i = 0; i < o.conns; i++) {
            struct client *c = &cl[i];

            if (pfd[i].revents & POLLOUT) {
                ssize_t n =
                    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (n > 0 && (c->out_off += (size_t)n) == c->out_len)
                    c->out_off = c->out_len = 0;
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n = read(c->fd, buf, RECV_CHUNK);

                if (n <= 0) {
                    fprintf(stderr, "asyncq-bench: connection %d closed\n", i);
                    return 1;
                }
                long before = c->acked;
                count_replies(c, buf, (size_t)n);
                acked += c->acked - before;
            }
        }
    }
    ingest_s = now_s() - start;
    char join[256];
    snprintf(join, sizeof join,
             "{\"id\":1,\"method\":\"join\",\"params\":{\"queue\":\"%s\"}}\n",
             o.queue);
    reply = o.no_join ? "{}" : call(join_fd, join);
    e2e_s = now_s() - start;
    for (int i = 0; i < o.conns; i++)
        errors += cl[i].errors;
    if (reply == NULL || strstr(reply, "\"error\"") != NULL) {
        fprintf(stderr, "asyncq-bench: join failed: %s\n",
                reply != NULL ? reply : "no reply");
        return 1;
    }
    if (o.json)
        printf("{\"jobs\":%ld,\"connections\":%d,\"window\":%d,\"payload\":%d,"
               "\"errors\":%ld,\"ingest_jobs_per_s\":%.0f,"
               "\"e2e_jobs_per_s\":%.0f}\n",
               o.total, o.conns, o.window, o.payload, errors,
               (double)o.total / ingest_s, (double)o.total / e2e_s);
    else
        printf("%ld %s jobs, %d connections, window %d, %d-byte payload: "
               "ingest %.0f jobs/s, end to end %.0f jobs/s, %ld errors\n",
               o.total, o.kind, o.conns, o.window, o.payload,
               (double)o.total / ingest_s, (double)o.total / e2e_s, errors);
    return errors == 0 ? 0 : 1;
}
