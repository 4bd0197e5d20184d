/* SPDX-License-Identifier: MIT */
/*
 * lib/proc-internal.h: shared by lib/proc.c (children on the loop, their
 * leftovers) and lib/proc-spawn.c (how a child is made). Not for daemon/.
 */
#ifndef AQ_PROC_INTERNAL_H
#define AQ_PROC_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "proc.h"

/* Makes a pipe for the child's stdio fd child_no: child_fd gets the child's
 * end (blocking, as programs expect), *parent_fd the non-blocking other end.
 * Both are close-on-exec and above 2. Returns 0, or -1 with errno and
 * nothing open. */
int aq_proc_pipe_open(int child_no, int *child_fd, int *parent_fd);

/* Starts opts->argv with child_fd[0..2] as its stdin, stdout and stderr,
 * leading a session (and process group) of its own, default signal
 * handlers, an empty signal mask and no other descriptor. cg_fd -1: with
 * posix_spawn. Else in the cgroup whose directory cg_fd is, before it
 * runs a single instruction of the program: clone3(CLONE_INTO_CGROUP)
 * while *use_clone3 (cleared when the kernel refuses clone3), else fork
 * and the child writes itself into cgroup.procs before exec. Returns 0
 * with *pid, or an errno value (the child's, when its exec failed). */
int aq_proc_spawn_child(const struct aq_proc_opts *opts, const int child_fd[3],
                        int cg_fd, bool *use_clone3, pid_t *pid);

/* For tests: make children with fork instead of clone3 (cgroup mode). */
void aq_procs_set_clone3(struct aq_procs *ps, bool use_clone3);

#endif
