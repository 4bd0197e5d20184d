/* SPDX-License-Identifier: MIT */
/*
 * lib/sd.c: sd_notify, sd_listen_fds and the watchdog, through libsystemd
 * when available, else by hand: the protocols are a datagram to
 * $NOTIFY_SOCKET and fds from 3 on named by $LISTEN_FDS for $LISTEN_PID.
 */
#include "sd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#else
#include <sys/socket.h>
#include <sys/un.h>
#endif

#define FIRST_LISTEN_FD 3

#ifdef HAVE_LIBSYSTEMD

static size_t
listen_count(void)
{
    int n = sd_listen_fds(1); /* 1: unset the variables */

    return n > 0 ? (size_t)n : 0;
}

static void
notify(const char *msg)
{
    sd_notify(0, msg);
}

int64_t
aq_sd_watchdog_us(void)
{
    uint64_t us = 0;

    return sd_watchdog_enabled(0, &us) > 0 ? (int64_t)us : 0;
}

#else

static size_t
listen_count(void)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    long k = 0;

    if (pid != NULL && n != NULL && strtol(pid, NULL, 10) == (long)getpid())
        k = strtol(n, NULL, 10);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return k > 0 ? (size_t)k : 0;
}

static void
notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    socklen_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof sun.sun_path)
        return;
    strcpy(sun.sun_path, path);
    if (path[0] == '@')
        sun.sun_path[0] = '\0'; /* an abstract socket */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
                  len);
    close(fd);
}

int64_t
aq_sd_watchdog_us(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");

    if (usec == NULL ||
        (pid != NULL && strtol(pid, NULL, 10) != (long)getpid()))
        return 0;
    return strtoll(usec, NULL, 10);
}

#endif

size_t
aq_sd_listen_fds(int *fds, size_t max)
{
    size_t n = listen_count();

    for (size_t i = 0; i < n && i < max; i++)
        fds[i] = FIRST_LISTEN_FD + (int)i;
    return n < max ? n : max;
}

void
aq_sd_notify(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (getenv("NOTIFY_SOCKET") == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    notify(msg);
}
