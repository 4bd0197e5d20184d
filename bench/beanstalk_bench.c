/* SPDX-License-Identifier: MIT */
/*
 * bench/beanstalk_bench.c: the beanstalkd side of bench/durable: C
 * connections each keep P `put` commands in flight (pipelined), N jobs of D
 * bytes in all; prints puts acknowledged ("INSERTED") per second. The same
 * shape of load asyncq-bench puts on asyncqd.
 * Usage: beanstalk_bench [-p PORT] [-c CONNS] [-P WINDOW] [-n TOTAL] [-d BYTES]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64

struct conn {
    int fd;
    long sent, acked, share;
    char *out;
    size_t out_len, out_off, out_cap;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
append(struct conn *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

int
main(int argc, char **argv)
{
    int port = 11300, nconns = 4, window = 64, payload = 100;
    long total = 100000, acked = 0;
    struct conn cs[MAX_CONNS];
    struct pollfd pfd[MAX_CONNS];
    char head[64], *data, buf[65536];
    double start;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-p") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-c") == 0)
            nconns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-P") == 0)
            window = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-n") == 0)
            total = atol(argv[i + 1]);
        else if (strcmp(argv[i], "-d") == 0)
            payload = atoi(argv[i + 1]);
    }
    if (nconns < 1 || nconns > MAX_CONNS || payload < 1 || total < 1) {
        fprintf(stderr, "usage: beanstalk_bench [-p PORT] [-c CONNS] "
                        "[-P WINDOW] [-n TOTAL] [-d BYTES]\n");
        return 2;
    }
    data = malloc((size_t)payload);
    memset(data, 'x', (size_t)payload);
    snprintf(head, sizeof head, "put 0 0 60 %d\r\n", payload);
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < nconns; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port)};
        int one = 1;

        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cs[i].fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            perror("beanstalk_bench: connect");
            return 3;
        }
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].share = total / nconns + (i < total % nconns);
    }
    start = now_s();
    while (acked < total) {
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &cs[i];

            while (c->sent - c->acked < window && c->sent < c->share) {
                append(c, head, strlen(head));
                append(c, data, (size_t)payload);
                append(c, "\r\n", 2);
                c->sent++;
            }
            pfd[i].fd = c->fd;
            pfd[i].events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0);
        }
        if (poll(pfd, (nfds_t)nconns, 10000) <= 0) {
            fprintf(stderr, "beanstalk_bench: stalled at %ld\n", acked);
            return 1;
        }
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &cs[i];

            if (pfd[i].revents & POLLOUT) {
                ssize_t n =
                    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (n > 0 && (c->out_off += (size_t)n) == c->out_len)
                    c->out_off = c->out_len = 0;
            }
            if (pfd[i].revents & POLLIN) {
                ssize_t n = read(c->fd, buf, sizeof buf);

                if (n <= 0)
                    return 1;
                /* Each reply ("INSERTED <id>") is one line. */
                for (ssize_t k = 0; k < n; k++) {
                    if (buf[k] == '\n') {
                        c->acked++;
                        acked++;
                    }
                }
            }
        }
    }
    printf("%.0f\n", (double)total / (now_s() - start));
    return 0;
}
