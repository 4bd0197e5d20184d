/* SPDX-License-Identifier: MIT */
/*
 * lib/cgroup.c: the delegated cgroup v2 of asyncqd and its jobs' cgroups
 * (lib/cgroup.h). Files are reached relative to directory descriptors, so
 * a job's cgroup is named once, when it is made.
 */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "pstat.h"
#include "xmalloc.h"

#define PATH_SIZE 4096
#define TREE_DEPTH_MAX 16 /* cgroups a job made inside its own */
#define LEFTOVER_POLL_MS                                                       \
    5 /* how often emptied cgroups are retried at start                        \
       */

struct aq_cgroup {
    char *path;    /* owned: the base directory */
    int dirfd;     /* owned: the base directory */
    bool has_kill; /* cgroup.kill exists (Linux >= 5.14) */
};

/* ---- parsers ---- */

int
aq_cgroup_parse_self(const char *text, char *path, size_t size)
{
    const char *line = text;

    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

        if (len > 3 && strncmp(line, "0::", 3) == 0 && line[3] == '/') {
            if (len - 3 >= size)
                return -1;
            memcpy(path, line + 3, len - 3);
            path[len - 3] = '\0';
            return 0;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return -1;
}

/* Copies the mountinfo field [s, e) into out, undoing the octal escapes
 * (\040 for a space) the kernel writes. -1 if it does not fit. */
static int
unescape_field(const char *s, const char *e, char *out, size_t size)
{
    size_t n = 0;

    while (s < e) {
        char c = *s++;

        if (c == '\\' && e - s >= 3 && s[0] >= '0' && s[0] <= '3') {
            c = (char)((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0'));
            s += 3;
        }
        if (n + 1 >= size)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

int
aq_cgroup_parse_mountinfo(const char *text, char *mnt, size_t mnt_size,
                          char *root, size_t root_size)
{
    const char *line = text;

    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        const char *stop = end != NULL ? end : line + strlen(line);
        const char *f[5], *sep, *p = line;
        int i;

        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE */
        for (i = 0; i < 5 && p < stop; i++) {
            f[i] = p;
            p = memchr(p, ' ', (size_t)(stop - p));
            p = p != NULL ? p + 1 : stop;
        }
        sep = i == 5 ? strstr(p, " - cgroup2 ") : NULL;
        if (sep != NULL && sep < stop) {
            const char *root_end = memchr(f[3], ' ', (size_t)(stop - f[3]));
            const char *mnt_end = memchr(f[4], ' ', (size_t)(stop - f[4]));

            if (root_end != NULL && mnt_end != NULL &&
                unescape_field(f[3], root_end, root, root_size) == 0 &&
                unescape_field(f[4], mnt_end, mnt, mnt_size) == 0)
                return 0;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return -1;
}

int
aq_cgroup_dir(const char *mnt, const char *root, const char *cg, char *dir,
              size_t size)
{
    size_t rlen = strlen(root);
    int n;

    if (strcmp(root, "/") == 0)
        rlen = 0;
    /* cg must be root itself or below it: "/a" is not below "/ab". */
    if (strncmp(cg, root, rlen) != 0 || (cg[rlen] != '/' && cg[rlen] != '\0'))
        return -1;
    cg += rlen;
    if (strcmp(cg, "/") == 0)
        cg = "";
    n = snprintf(dir, size, "%s%s", mnt, cg);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

int
aq_cgroup_parse_populated(const char *text, size_t len)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl != NULL ? nl : end;

        if (stop - p == 11 && strncmp(p, "populated ", 10) == 0 &&
            (p[10] == '0' || p[10] == '1'))
            return p[10] - '0';
        p = stop + 1;
    }
    return -1;
}

/* ---- files ---- */

/* Writes text to name under dirfd in one write: 0, or -1 with errno. */
static int
write_at(int dirfd, const char *name, const char *text)
{
    size_t len = strlen(text);
    ssize_t n;
    int fd, saved;

    if ((fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC)) == -1)
        return -1;
    do
        n = write(fd, text, len);
    while (n == -1 && errno == EINTR);
    saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

/* Whether path carries systemd's delegation mark. */
static bool
is_delegated(const char *path)
{
    static const char *const names[] = {"trusted.delegate", "user.delegate"};
    char v[8];

    for (size_t i = 0; i < 2; i++) {
        ssize_t n = getxattr(path, names[i], v, sizeof v);

        if (n == 1 && v[0] == '1')
            return true;
    }
    return false;
}

/* This process's cgroup v2 directory into dir. 0, or -1 with err. */
static int
own_dir(char *dir, size_t size, struct aq_error *err)
{
    char cg[PATH_SIZE], mnt[PATH_SIZE], root[PATH_SIZE];
    char *self, *info;
    size_t len;
    int rc = -1;

    self = aq_pstat_read_file(AT_FDCWD, "/proc/self/cgroup", &len);
    info = aq_pstat_read_file(AT_FDCWD, "/proc/self/mountinfo", &len);
    if (self == NULL || aq_cgroup_parse_self(self, cg, sizeof cg) < 0)
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "cgroup: /proc/self/cgroup: no cgroup v2 entry");
    else if (info == NULL || aq_cgroup_parse_mountinfo(info, mnt, sizeof mnt,
                                                       root, sizeof root) < 0)
        aq_error_set(err, AQ_ERR_INTERNAL, "cgroup: no cgroup2 file system");
    else if (strcmp(cg, "/") == 0)
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "cgroup: asyncqd runs in the root cgroup");
    else if (aq_cgroup_dir(mnt, root, cg, dir, size) < 0)
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "cgroup: %s: not under the cgroup2 mount %s", cg, mnt);
    else
        rc = 0;
    free(self);
    free(info);
    return rc;
}

/* The first process listed in name/cgroup.procs under dirfd other than
 * this one, or 0. */
static pid_t
other_process(int dirfd, const char *name)
{
    char file[PATH_SIZE], *text;
    pid_t pids[64], other = 0;
    size_t len, n;

    snprintf(file, sizeof file, "%s/cgroup.procs", name);
    if ((text = aq_pstat_read_file(dirfd, file, &len)) == NULL)
        return 0;
    n = aq_pstat_parse_pids(text, len, pids, 64);
    for (size_t i = 0; i < n && i < 64 && other == 0; i++) {
        if (pids[i] != getpid())
            other = pids[i];
    }
    free(text);
    return other;
}

struct aq_cgroup *
aq_cgroup_open(const char *dir, struct aq_error *err)
{
    struct aq_cgroup *cg = xcalloc(1, sizeof *cg);
    char path[PATH_SIZE], pid[32];
    pid_t other;

    cg->dirfd = -1;
    if (dir == NULL && own_dir(path, sizeof path, err) < 0)
        goto fail;
    cg->path = xstrdup(dir != NULL ? dir : path);
    if (!is_delegated(cg->path)) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "cgroup: %s: not delegated to asyncqd (no "
                     "trusted.delegate or user.delegate attribute)",
                     cg->path);
        goto fail;
    }
    cg->dirfd = open(cg->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->dirfd == -1)
        goto fail_errno;
    cg->has_kill = faccessat(cg->dirfd, "cgroup.kill", F_OK, 0) == 0;
    if (mkdirat(cg->dirfd, AQ_CGROUP_LEAF, 0755) == -1 && errno != EEXIST)
        goto fail_errno;
    if ((other = other_process(cg->dirfd, AQ_CGROUP_LEAF)) != 0) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "cgroup: %s/" AQ_CGROUP_LEAF
                     ": in use by process %d (another asyncqd?)",
                     cg->path, (int)other);
        goto fail;
    }
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (write_at(cg->dirfd, AQ_CGROUP_LEAF "/cgroup.procs", pid) == -1)
        goto fail_errno;
    return cg;

fail_errno:
    aq_error_set(err, AQ_ERR_INTERNAL, "cgroup: %s: %s", cg->path,
                 strerror(errno));
fail:
    aq_cgroup_free(cg);
    return NULL;
}

void
aq_cgroup_free(struct aq_cgroup *cg)
{
    if (cg == NULL)
        return;
    if (cg->dirfd != -1)
        close(cg->dirfd);
    free(cg->path);
    free(cg);
}

const char *
aq_cgroup_path(const struct aq_cgroup *cg)
{
    return cg->path;
}

void
aq_cgroup_set_no_kill_file(struct aq_cgroup *cg)
{
    cg->has_kill = false;
}

/* ---- jobs' cgroups ---- */

int
aq_cgroup_job_new(struct aq_cgroup *cg, const char *name, struct aq_error *err)
{
    int fd;

    if (mkdirat(cg->dirfd, name, 0755) == -1)
        goto fail;
    if ((fd = openat(cg->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
        -1) {
        int saved = errno;

        unlinkat(cg->dirfd, name, AT_REMOVEDIR);
        errno = saved;
        goto fail;
    }
    return fd;
fail:
    aq_error_set(err, AQ_ERR_INTERNAL, "exec: cgroup %s/%s: %s", cg->path, name,
                 strerror(errno));
    return -1;
}

int
aq_cgroup_job_signal(int dirfd, int sig)
{
    pid_t pids[512];
    size_t len, n;
    char *text = aq_pstat_read_file(dirfd, "cgroup.procs", &len);
    int count = 0;

    if (text == NULL)
        return 0;
    /* A process listed here is alive now; one that exits and is reaped
     * before the kill below frees its pid, a window of microseconds. */
    n = aq_pstat_parse_pids(text, len, pids, 512);
    for (size_t i = 0; i < n && i < 512; i++) {
        if (kill(pids[i], sig) == 0)
            count++;
    }
    free(text);
    return count;
}

void
aq_cgroup_job_kill(const struct aq_cgroup *cg, int dirfd)
{
    if (cg->has_kill && write_at(dirfd, "cgroup.kill", "1") == 0)
        return;
    /* Frozen, no process can fork or exit between the read and the kill
     * (a frozen process still dies of SIGKILL). */
    write_at(dirfd, "cgroup.freeze", "1");
    aq_cgroup_job_signal(dirfd, SIGKILL);
}

int
aq_cgroup_job_populated(int dirfd)
{
    size_t len;
    char *text = aq_pstat_read_file(dirfd, "cgroup.events", &len);
    int rc = text != NULL ? aq_cgroup_parse_populated(text, len) : -1;

    free(text);
    return rc;
}

/* Removes name under parent and the cgroups a job made inside it, deepest
 * first: 0, or -1 with errno. */
static int
remove_tree(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *e;

    if (fd == -1)
        return errno == ENOENT ? 0 : -1;
    if (depth < TREE_DEPTH_MAX && (d = fdopendir(fd)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (e->d_type == DT_DIR && e->d_name[0] != '.')
                remove_tree(dirfd(d), e->d_name, depth + 1);
        }
        closedir(d); /* closes fd */
    } else {
        close(fd);
    }
    if (unlinkat(parent, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
        return -1;
    return 0;
}

int
aq_cgroup_job_remove(struct aq_cgroup *cg, const char *name)
{
    return remove_tree(cg->dirfd, name, 0);
}

int
aq_cgroup_kill_leftovers(struct aq_cgroup *cg, int64_t timeout_us,
                         struct aq_error *err)
{
    int64_t deadline_us = aq_clock_mono_us() + timeout_us;
    int fd = dup(cg->dirfd);
    DIR *d = fd != -1 ? fdopendir(fd) : NULL;
    struct dirent *e;
    int ended = 0;

    if (d == NULL) {
        if (fd != -1)
            close(fd);
        aq_error_set(err, AQ_ERR_INTERNAL, "cgroup: %s: %s", cg->path,
                     strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t plen = strlen(AQ_CGROUP_JOB_PREFIX);
        int jfd;

        if (e->d_type != DT_DIR ||
            strncmp(e->d_name, AQ_CGROUP_JOB_PREFIX, plen) != 0)
            continue;
        jfd = openat(cg->dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (jfd == -1)
            continue;
        if (aq_cgroup_job_populated(jfd) != 0)
            ended++;
        for (;;) {
            if (aq_cgroup_job_populated(jfd) != 1 &&
                aq_cgroup_job_remove(cg, e->d_name) == 0)
                break;
            if (aq_clock_mono_us() > deadline_us) {
                aq_error_set(err, AQ_ERR_INTERNAL,
                             "cgroup: %s/%s: processes of an earlier run "
                             "still there after %.1f s",
                             cg->path, e->d_name, (double)timeout_us / 1e6);
                close(jfd);
                closedir(d);
                return -1;
            }
            aq_cgroup_job_kill(cg, jfd);
            poll(NULL, 0, LEFTOVER_POLL_MS);
        }
        close(jfd);
    }
    closedir(d);
    return ended;
}
