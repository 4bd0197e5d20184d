/* SPDX-License-Identifier: MIT */
/*
 * tests/faultfs.c: a shared library that makes the journal's system calls
 * fail on demand, as a full disk or a dying one would: LD_PRELOAD it into
 * asyncqd, or link it into a test program (its symbols then come before
 * libc's). It does nothing unless $FAULTFS_CONTROL names a control file;
 * each line of that file is "CALL ERRNO", e.g. "fdatasync EIO", and every
 * such call on a file under $FAULTFS_DIR fails with that errno while the
 * line is there. The file is read again whenever it changes, so a test
 * turns faults on and off by rewriting it.
 *
 * CALL is write (write, writev, pwrite), fdatasync, fsync, create (an
 * open with O_CREAT of a file that does not exist yet: out of inodes) or
 * rename (to a path under the directory). ERRNO is one of EIO, ENOSPC,
 * EDQUOT, EFBIG, EMFILE, ENFILE.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_RULES 16

struct rule {
    char call[16];
    int err;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules;
static struct timespec seen_mtime; /* of the control file last read */
static ino_t seen_ino;
static off_t seen_size = -1;

static const struct {
    const char *name;
    int err;
} errnos[] = {{"EIO", EIO},     {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
              {"EFBIG", EFBIG}, {"EMFILE", EMFILE}, {"ENFILE", ENFILE}};

/* The next definition of name after this library: libc's (or a
 * sanitizer's, which then calls libc's). */
static void *
real(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (p == NULL) {
        static const char msg[] = "faultfs: a libc symbol is missing\n";

        syscall(SYS_write, 2, msg, sizeof msg - 1);
        abort();
    }
    return p;
}

/* Reads the control file (under mu) if it changed since last time. */
static void
reload(const char *path)
{
    struct stat st;
    FILE *f;
    char line[128];
    int fd;

    /* Raw system calls: this library's own open and read must not come
     * back here. */
    fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        nrules = 0;
        seen_size = -1;
        return;
    }
    if (fstat(fd, &st) == 0 && st.st_ino == seen_ino &&
        st.st_size == seen_size && st.st_mtim.tv_sec == seen_mtime.tv_sec &&
        st.st_mtim.tv_nsec == seen_mtime.tv_nsec) {
        syscall(SYS_close, fd);
        return;
    }
    seen_ino = st.st_ino;
    seen_size = st.st_size;
    seen_mtime = st.st_mtim;
    nrules = 0;
    f = fdopen(fd, "r");
    if (f == NULL) {
        syscall(SYS_close, fd);
        return;
    }
    while (fgets(line, sizeof line, f) != NULL && nrules < MAX_RULES) {
        char call[16], name[16];

        if (sscanf(line, "%15s %15s", call, name) != 2)
            continue;
        for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
            if (strcmp(name, errnos[i].name) == 0) {
                snprintf(rules[nrules].call, sizeof rules[nrules].call, "%s",
                         call);
                rules[nrules++].err = errnos[i].err;
            }
        }
    }
    fclose(f);
}

/* Whether path is dir or under it. */
static bool
is_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The errno that call on path must fail with, or 0. path NULL: fd's.
 * The path is checked before any lock is taken: a signal handler's write
 * to its pipe (libevent's) never waits here. */
static int
fault(const char *call, const char *path, int fd)
{
    const char *control = getenv("FAULTFS_CONTROL");
    const char *dir = getenv("FAULTFS_DIR");
    char link[64], buf[2 * PATH_MAX + 2], cwd[PATH_MAX];
    int err = 0;
    ssize_t n;

    if (control == NULL || dir == NULL)
        return 0;
    if (path == NULL) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = (ssize_t)syscall(SYS_readlinkat, AT_FDCWD, link, buf, PATH_MAX);
        if (n <= 0)
            return 0;
        buf[n] = '\0';
        path = buf;
    } else if (path[0] != '/') {
        if (getcwd(cwd, sizeof cwd) == NULL)
            return 0;
        snprintf(buf, sizeof buf, "%s/%s", cwd, path);
        path = buf;
    }
    if (!is_under(path, dir))
        return 0;
    pthread_mutex_lock(&mu);
    reload(control);
    for (int i = 0; i < nrules && err == 0; i++) {
        if (strcmp(rules[i].call, call) == 0)
            err = rules[i].err;
    }
    pthread_mutex_unlock(&mu);
    return err;
}

/* The calls that act on a descriptor: fail as told, else call libc. */
#define FD_CALL(type, name, call, params, args)                                \
    type name params                                                           \
    {                                                                          \
        static type(*next) params;                                             \
        int err = fault(call, NULL, fd);                                       \
                                                                               \
        if (err != 0) {                                                        \
            errno = err;                                                       \
            return -1;                                                         \
        }                                                                      \
        if (next == NULL)                                                      \
            next = real(#name);                                                \
        return next args;                                                      \
    }

FD_CALL(ssize_t, write, "write", (int fd, const void *p, size_t n), (fd, p, n))
FD_CALL(ssize_t, writev, "write", (int fd, const struct iovec *iov, int n),
        (fd, iov, n))
FD_CALL(ssize_t, pwrite, "write", (int fd, const void *p, size_t n, off_t off),
        (fd, p, n, off))
FD_CALL(int, fdatasync, "fdatasync", (int fd), (fd))
FD_CALL(int, fsync, "fsync", (int fd), (fd))

/* An open that would create a file: refused while "create" is on. */
static int
create_fault(int dirfd, const char *path, int flags)
{
    struct stat st;

    if ((flags & O_CREAT) == 0 || dirfd != AT_FDCWD ||
        getenv("FAULTFS_CONTROL") == NULL || stat(path, &st) == 0)
        return 0; /* it exists: no new inode */
    return fault("create", path, -1);
}

static int
open_next(const char *name, int dirfd, const char *path, int flags, mode_t mode)
{
    static int (*next_open)(const char *, int, ...);
    static int (*next_open64)(const char *, int, ...);
    static int (*next_openat)(int, const char *, int, ...);
    int err = create_fault(dirfd, path, flags);

    if (err != 0) {
        errno = err;
        return -1;
    }
    if (strcmp(name, "openat") == 0) {
        if (next_openat == NULL)
            next_openat = real(name);
        return next_openat(dirfd, path, flags, mode);
    }
    if (strcmp(name, "open64") == 0) {
        if (next_open64 == NULL)
            next_open64 = real(name);
        return next_open64(path, flags, mode);
    }
    if (next_open == NULL)
        next_open = real(name);
    return next_open(path, flags, mode);
}

/* The mode argument, present when the flags create a file. */
#define MODE_ARG(flags, mode)                                                  \
    do {                                                                       \
        va_list ap;                                                            \
                                                                               \
        va_start(ap, flags);                                                   \
        mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? (mode_t)va_arg(ap, int)  \
                                                    : 0;                       \
        va_end(ap);                                                            \
    } while (0)

int
open(const char *path, int flags, ...)
{
    mode_t mode;

    MODE_ARG(flags, mode);
    return open_next("open", AT_FDCWD, path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
    mode_t mode;

    MODE_ARG(flags, mode);
    return open_next("open64", AT_FDCWD, path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode;

    MODE_ARG(flags, mode);
    return open_next("openat", dirfd, path, flags, mode);
}

int
rename(const char *from, const char *to)
{
    static int (*next)(const char *, const char *);
    int err = fault("rename", to, -1);

    if (err != 0) {
        errno = err;
        return -1;
    }
    if (next == NULL)
        next = real("rename");
    return next(from, to);
}
