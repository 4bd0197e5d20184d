/* SPDX-License-Identifier: MIT */
/*
 * tests/pgport.h: a port of 127.0.0.1 for a throw-away PostgreSQL of the
 * tests (tests/pg/pg.sh), held against the other suites and parallel runs
 * (another worktree, ctest -j) that start servers at the same time.
 */
#ifndef AQ_PGPORT_H
#define AQ_PGPORT_H

/* Takes a port of first..first+count-1, starting at an offset of the pid:
 * one whose lock file (/tmp/asyncq-pg-PORT.lock, flock) no other open of
 * it holds, and nothing listens on (a server a killed run left). The
 * port, its lock's descriptor in *lock_fd (close it to give the port
 * back; a child made by fork shares it, an exec'd program does not); or
 * 0, errno set, when every port is taken or a lock file cannot be
 * opened. */
int pgport_take(int first, int count, int *lock_fd);

#endif
