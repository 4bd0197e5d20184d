/* SPDX-License-Identifier: MIT */
/*
 * tests/pgtest.h: the throw-away PostgreSQL 15 of a unit suite that needs
 * a server (unit.pgconn, unit.store_pg): tests/pg/pg.sh starts it in a
 * temporary directory on a port of the suite's range (tests/pgport.h),
 * once for a test case, from its unchecked fixture. A suite is skipped,
 * saying why, only when the server binaries cannot be installed.
 */
#ifndef AQ_PGTEST_H
#define AQ_PGTEST_H

#include <stdbool.h>
#include <stddef.h>

struct pgtest_server {
    char dir[64];  /* its data directory; "" once stopped */
    int port;      /* on 127.0.0.1 */
    int lock_fd;   /* holds port (pgport_take); -1 */
    char err[256]; /* why it is not there, or "" */
};

/* Runs a shell command; its exit status (or -1). */
int pgtest_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Starts a server in a new directory made from tmpl ("/tmp/x.XXXXXX") on
 * a port of first..first+count-1; s->err says why not. */
void pgtest_server_start(struct pgtest_server *s, const char *tmpl, int first,
                         int count);
/* Stops it (immediate), removes its directory, gives its port back. */
void pgtest_server_stop(struct pgtest_server *s);

/* Whether the server binaries cannot be installed (pg.sh install exits 1,
 * saying why: into why); any other failure is the server case's. Run it
 * only when the suite is to run: it may run apt-get. */
bool pgtest_binaries_unavailable(char *why, size_t len);
/* For suite name's function: true (the reason printed as "unit.NAME:
 * skipped: ...", for ctest's SKIP_REGULAR_EXPRESSION) when the suite is to
 * run and the binaries cannot be installed; the suite then adds no test. */
bool pgtest_skip_suite(const char *name);

#endif
