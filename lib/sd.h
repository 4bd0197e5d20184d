/* SPDX-License-Identifier: MIT */
/*
 * lib/sd.h: the systemd protocols asyncqd speaks: readiness and status
 * notifications (sd_notify(3)), socket activation (sd_listen_fds(3)) and
 * the watchdog. With libsystemd (CMake finds it: HAVE_LIBSYSTEMD) these are
 * its functions; without it, a small implementation of the same protocols.
 * Outside systemd every call is a harmless no-op.
 */
#ifndef AQ_SD_H
#define AQ_SD_H

#include <stddef.h>
#include <stdint.h>

/* Sockets passed by the service manager: stores up to max fds (3, 4, ...)
 * and returns how many; unsets LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES so
 * child processes do not see them. */
size_t aq_sd_listen_fds(int *fds, size_t max);

/* Sends a notification ("READY=1", "STATUS=...", "STOPPING=1",
 * "WATCHDOG=1") if $NOTIFY_SOCKET is set. */
void aq_sd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval asked for (WatchdogSec=), in microseconds; 0 when
 * there is none. Ping at half of it. */
int64_t aq_sd_watchdog_us(void);

#endif
