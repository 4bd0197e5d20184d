/* SPDX-License-Identifier: MIT */
/*
 * lib/cgroup.h: a cgroup v2 directory delegated to asyncqd (systemd's
 * Delegate=yes), in which each exec job runs in a cgroup of its own, so
 * that every process a job starts, daemonised or not, can be found and
 * killed. asyncqd moves itself into the leaf BASE/asyncqd (cgroup v2 has no
 * processes in inner cgroups once controllers are enabled) and makes the
 * jobs' cgroups BASE/job-ID-N beside it. Blocking calls (open, leftovers)
 * are for start; the others are one or two small reads or writes of
 * cgroupfs files, which never wait on a disk.
 */
#ifndef AQ_CGROUP_H
#define AQ_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aq_error;
struct aq_cgroup;

#define AQ_CGROUP_LEAF "asyncqd"    /* where the daemon itself lives */
#define AQ_CGROUP_JOB_PREFIX "job-" /* the jobs' cgroups */

/* Takes charge of dir (NULL: this process's own cgroup v2, found through
 * /proc/self/cgroup and /proc/self/mountinfo). dir must be marked as
 * delegated, the way systemd marks it: the extended attribute
 * trusted.delegate or user.delegate set to "1". Moves this process into
 * dir/asyncqd. Returns the handle (the caller's, aq_cgroup_free), or NULL
 * with err saying why not (no cgroup v2, not delegated, the root cgroup,
 * dir/asyncqd in use by another process, no permission). Blocking. */
struct aq_cgroup *aq_cgroup_open(const char *dir, struct aq_error *err);
void aq_cgroup_free(struct aq_cgroup *cg); /* NULL is fine; removes nothing */
const char *aq_cgroup_path(const struct aq_cgroup *cg); /* the base dir */

/* Kills what is left in the jobs' cgroups of an earlier run (BASE/job-*)
 * and removes them, waiting up to timeout_us for them to empty. Returns
 * how many cgroups held processes; -1 with err if one could not be emptied
 * and removed in time. Blocking: for start, before jobs run. */
int aq_cgroup_kill_leftovers(struct aq_cgroup *cg, int64_t timeout_us,
                             struct aq_error *err);

/* Makes the cgroup BASE/name. Returns an fd of its directory (the
 * caller's to close), for CLONE_INTO_CGROUP and the calls below, or -1
 * with err (EEXIST in errno when the name is taken). */
int aq_cgroup_job_new(struct aq_cgroup *cg, const char *name,
                      struct aq_error *err);
/* Sends sig to every process listed in the cgroup's cgroup.procs; returns
 * how many were signalled. */
int aq_cgroup_job_signal(int dirfd, int sig);
/* SIGKILL to every process of the cgroup: one write to cgroup.kill (Linux
 * >= 5.14); where there is none, the cgroup is frozen (>= 5.2) and each
 * listed process killed, which the caller repeats until it is empty. */
void aq_cgroup_job_kill(const struct aq_cgroup *cg, int dirfd);
/* 1 if a live process is in the cgroup, 0 if none, -1 if unknown. */
int aq_cgroup_job_populated(int dirfd);
/* Removes BASE/name: 0, or -1 with errno (EBUSY while it has processes). */
int aq_cgroup_job_remove(struct aq_cgroup *cg, const char *name);
/* For tests: act as if the kernel had no cgroup.kill. */
void aq_cgroup_set_no_kill_file(struct aq_cgroup *cg);

/* Pure parsers, for tests. The cgroup v2 path of /proc/PID/cgroup text
 * (its "0::PATH" line) into path: 0, or -1 if there is none. */
int aq_cgroup_parse_self(const char *text, char *path, size_t size);
/* The mount point and mount root of the first cgroup2 file system of
 * /proc/PID/mountinfo text (octal escapes undone): 0, or -1 if none. */
int aq_cgroup_parse_mountinfo(const char *text, char *mnt, size_t mnt_size,
                              char *root, size_t root_size);
/* The directory of cgroup path cg under a cgroup2 mount at mnt whose root
 * is root: 0, or -1 if the cgroup is outside that mount or too long. */
int aq_cgroup_dir(const char *mnt, const char *root, const char *cg, char *dir,
                  size_t size);
/* The "populated" value of cgroup.events text: 1, 0, or -1 if absent. */
int aq_cgroup_parse_populated(const char *text, size_t len);

#endif
