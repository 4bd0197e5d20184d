/* SPDX-License-Identifier: MIT */
/*
 * lib/runfile.h: the processes of running jobs, recorded in a small file so
 * that the next run can end them when this one died without doing so
 * (kill -9, a crash, outside systemd). A process is recorded by its pid and
 * its start time, which together name one process, so a pid the kernel has
 * since given to another program is never killed. The file is locked
 * (flock) by the process that records in it.
 */
#ifndef AQ_RUNFILE_H
#define AQ_RUNFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pstat.h"

struct aq_error;
struct aq_runfile;

#define AQ_RUNFILE_NAME "asyncqd.procs" /* in the journal's directory */

/* Opens path (created, mode 0640) and locks it. Returns the handle (the
 * caller's), or NULL with err: it cannot be opened, or another process
 * holds it (another asyncqd runs on the same journal). */
struct aq_runfile *aq_runfile_open(const char *path, struct aq_error *err);

/* Ends what the previous holder recorded and is still there (see
 * aq_runfile_select), with SIGKILL, and waits up to timeout_us until it is
 * gone; then empties the record. Returns how many processes were killed.
 * Blocking: for start, before jobs run. */
int aq_runfile_kill_leftovers(struct aq_runfile *rf, int64_t timeout_us);

/* Records pid, which started at start_ticks (aq_pstat_read), or forgets
 * it; the file is rewritten at once (no fsync: after a reboot there is
 * nothing to kill, and the boot id says so). */
void aq_runfile_add(struct aq_runfile *rf, pid_t pid, uint64_t start_ticks);
void aq_runfile_remove(struct aq_runfile *rf, pid_t pid);
size_t aq_runfile_count(const struct aq_runfile *rf);

/* Empties the record (every process in it was ended), unlocks and frees.
 * NULL is fine. */
void aq_runfile_free(struct aq_runfile *rf);

struct aq_runfile_entry {
    pid_t pid;
    uint64_t start_ticks;
};

/* Pure: which of the n processes of procs (a snapshot of /proc) to kill,
 * given the nrec processes a previous run recorded. Sets kill[i] for:
 * - a recorded process still there (same pid and start time), with the
 *   members of the session and of the group it leads;
 * - when no process has the recorded pid any more, the members of the
 *   session and group of that id that started no earlier than it (a
 *   session or group id cannot be reused while it has members);
 * - the descendants of everything above.
 * Never self, pid 1 or a zombie. Returns how many were selected. */
size_t aq_runfile_select(const struct aq_pstat *procs, size_t n,
                         const struct aq_runfile_entry *rec, size_t nrec,
                         pid_t self, bool *kill);

/* Pure: parses the text of a record file made on boot boot_id into at most
 * max entries; returns how many it holds (0 if it was made on another
 * boot, or is not such a file). Lines it cannot read are skipped. */
size_t aq_runfile_parse(const char *text, size_t len, const char *boot_id,
                        struct aq_runfile_entry *out, size_t max);

#endif
