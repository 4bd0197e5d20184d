/* SPDX-License-Identifier: MIT */
/* tests/pgtest.c: a unit suite's PostgreSQL server (see pgtest.h). */
#include "pgtest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgport.h"

int
pgtest_sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    rc = system(cmd);
    return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

void
pgtest_server_start(struct pgtest_server *s, const char *tmpl, int first,
                    int count)
{
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    if (pgtest_sh("%s bindir >/dev/null", AQ_PG_SH) != 0) {
        snprintf(s->err, sizeof s->err,
                 "PostgreSQL 15 server binaries not found: run '%s install' "
                 "as root (apt-get install postgresql-15)",
                 AQ_PG_SH);
        return;
    }
    snprintf(s->dir, sizeof s->dir, "%s", tmpl);
    if (mkdtemp(s->dir) == NULL) {
        snprintf(s->err, sizeof s->err, "mkdtemp failed");
        s->dir[0] = '\0';
        return;
    }
    s->port = pgport_take(first, count, &s->lock_fd);
    if (s->port == 0) {
        snprintf(s->err, sizeof s->err, "no port of %d-%d: %s", first,
                 first + count - 1, strerror(errno));
        return;
    }
    if (pgtest_sh("%s start %s %d", AQ_PG_SH, s->dir, s->port) != 0)
        snprintf(s->err, sizeof s->err, "pg.sh start %s %d failed (see above)",
                 s->dir, s->port);
}

void
pgtest_server_stop(struct pgtest_server *s)
{
    if (s->dir[0] != '\0') {
        pgtest_sh("%s stop %s immediate", AQ_PG_SH, s->dir);
        pgtest_sh("rm -rf %s", s->dir);
        s->dir[0] = '\0';
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
}

bool
pgtest_binaries_unavailable(char *why, size_t len)
{
    char cmd[512];
    size_t n;
    FILE *f;
    int rc;

    snprintf(cmd, sizeof cmd, "%s install 2>&1", AQ_PG_SH);
    f = popen(cmd, "r");
    if (f == NULL)
        return false;
    n = fread(why, 1, len - 1, f);
    why[n] = '\0';
    while (n > 0 && why[n - 1] == '\n')
        why[--n] = '\0';
    rc = pclose(f);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 1;
}

bool
pgtest_skip_suite(const char *name)
{
    const char *only = getenv("CK_RUN_SUITE");
    char why[512];

    if ((only != NULL && strcmp(only, name) != 0) ||
        !pgtest_binaries_unavailable(why, sizeof why))
        return false;
    fprintf(stderr, "unit.%s: skipped: PostgreSQL 15 cannot be installed: %s\n",
            name, why);
    return true;
}
