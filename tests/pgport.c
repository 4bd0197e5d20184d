/* SPDX-License-Identifier: MIT */
/* tests/pgport.c: ports for the tests' PostgreSQL servers (see pgport.h). */
#include "pgport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

/* Whether something listens on 127.0.0.1:port (or it cannot be told). */
static bool
port_in_use(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    bool in_use;

    if (fd < 0)
        return true;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    in_use = bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0;
    close(fd);
    return in_use;
}

int
pgport_take(int first, int count, int *lock_fd)
{
    int offset = (int)(getpid() % count);

    for (int i = 0; i < count; i++) {
        int port = first + (offset + i) % count;
        char path[64];
        int fd;

        snprintf(path, sizeof path, "/tmp/asyncq-pg-%d.lock", port);
        fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return 0;
        /* locked first: a server may be starting there, not listening yet */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || port_in_use(port)) {
            close(fd);
            continue;
        }
        *lock_fd = fd;
        return port;
    }
    errno = EADDRINUSE;
    return 0;
}
