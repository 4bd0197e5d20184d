/* SPDX-License-Identifier: MIT */
/* tests/bbpg.c: PostgreSQL servers for the black-box tests (see bbpg.h). */
#include "bbpg.h"
#include "bb.h"
#include "pgport.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PG_SH_PATH
#error "PG_SH_PATH must name tests/pg/pg.sh"
#endif

#define PORT_FIRST 55441
#define PORT_COUNT 19
#define PGSH_TIMEOUT_MS 90000 /* pg.sh's own waits are 30 s each */
#define SQL_CONNINFO_EXTRA                                                     \
    " connect_timeout=5 options='-c statement_timeout=10000'"

struct bbpg {
    int port;
    int lock_fd; /* flock on the port's lock file: ours while s lives */
    char dir[128];
    char conninfo[128];
};

/* Set by bbpg_setup in the runner, inherited by each test's process. */
static char case_dir[64];
static bool is_available;
static int install_status; /* of pg.sh install: 1 (its die) is a skip */
static char unavailable_why[512];

/* The last lines of the file at path (at most len - 1 bytes) into buf. */
static void
read_tail(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    off_t size;
    ssize_t n = 0;

    buf[0] = '\0';
    if (fd < 0)
        return;
    size = lseek(fd, 0, SEEK_END);
    if (size > (off_t)len - 1)
        lseek(fd, size - (off_t)len + 1, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    for (size_t i = strlen(buf); i > 0 && buf[i - 1] == '\n'; i--)
        buf[i - 1] = '\0';
}

/* Runs tests/pg/pg.sh with args (NULL-terminated) within PGSH_TIMEOUT_MS;
 * its exit status (-1 if it ran too long: killed), its output's end in
 * out. */
static int
pgsh_v(char *out, size_t outlen, const char *arg0, va_list ap)
{
    char outpath[128];
    const char *argv[16];
    int n = 0, st, fd;
    int64_t deadline = bb_now_ms() + PGSH_TIMEOUT_MS;
    pid_t pid;

    snprintf(outpath, sizeof outpath, "%s/pgsh.out",
             case_dir[0] != '\0' ? case_dir : "/tmp");
    argv[n++] = "/bin/bash";
    argv[n++] = PG_SH_PATH;
    for (const char *a = arg0; a != NULL && n < 15;
         a = va_arg(ap, const char *))
        argv[n++] = a;
    argv[n] = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (bb_now_ms() > deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            snprintf(out, outlen, "pg.sh %s ran over %d ms", arg0,
                     PGSH_TIMEOUT_MS);
            return -1;
        }
        poll(NULL, 0, 20); /* a child's exit: no event to wait on */
    }
    read_tail(outpath, out, outlen);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int
pgsh(char *out, size_t outlen, const char *arg0, ...)
{
    va_list ap;
    int st;

    va_start(ap, arg0);
    st = pgsh_v(out, outlen, arg0, ap);
    va_end(ap);
    return st;
}

/* pg.sh with args, failing the test unless it exits 0. */
static void
pgsh_must(const char *arg0, ...)
{
    char out[1024];
    va_list ap;
    int st;

    va_start(ap, arg0);
    st = pgsh_v(out, sizeof out, arg0, ap);
    va_end(ap);
    ck_assert_msg(st == 0, "tests/pg/pg.sh %s exited with %d: %s", arg0, st,
                  out);
}

void
bbpg_setup(void)
{
    char out[sizeof unavailable_why / 2];
    int st;

    snprintf(case_dir, sizeof case_dir, "/tmp/asyncq-bbpg.XXXXXX");
    if (mkdtemp(case_dir) == NULL) {
        snprintf(unavailable_why, sizeof unavailable_why,
                 "mkdtemp /tmp/asyncq-bbpg: %s", strerror(errno));
        case_dir[0] = '\0';
        is_available = false;
        install_status = -1;
        return;
    }
    st = pgsh(out, sizeof out, "install", NULL);
    install_status = st;
    is_available = st == 0;
    if (!is_available)
        snprintf(unavailable_why, sizeof unavailable_why,
                 "PostgreSQL 15 cannot be installed (tests/pg/pg.sh install "
                 "exited with %d): %s",
                 st, out);
}

void
bbpg_teardown(void)
{
    DIR *dir;
    struct dirent *e;

    if (case_dir[0] == '\0')
        return;
    dir = opendir(case_dir);
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        char path[320], pidfile[400], out[256];

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", case_dir, e->d_name);
        snprintf(pidfile, sizeof pidfile, "%s/data/postmaster.pid", path);
        if (access(pidfile, F_OK) == 0 &&
            pgsh(out, sizeof out, "kill", path, NULL) != 0)
            fprintf(stderr, "bbpg: could not kill the server in %s: %s\n", path,
                    out);
    }
    if (dir != NULL)
        closedir(dir);
    bb_remove_dir(case_dir);
    case_dir[0] = '\0';
}

bool
bbpg_available(void)
{
    /* pg.sh says why it cannot install (exit 1); anything else is a
     * fault of the harness, not a reason to skip. */
    ck_assert_msg(is_available || install_status == 1, "bbpg: %s",
                  unavailable_why);
    if (!is_available)
        fprintf(stderr, "bb.pg: skipped: %s\n",
                unavailable_why[0] != '\0' ? unavailable_why
                                           : "bbpg_setup did not run");
    return is_available;
}

struct bbpg *
bbpg_new(void)
{
    struct bbpg *s = calloc(1, sizeof *s);

    ck_assert_ptr_nonnull(s);
    ck_assert_msg(case_dir[0] != '\0', "bbpg_new: bbpg_setup did not run");
    s->port = pgport_take(PORT_FIRST, PORT_COUNT, &s->lock_fd);
    ck_assert_msg(s->port != 0, "bbpg: no port of %d-%d: %s", PORT_FIRST,
                  PORT_FIRST + PORT_COUNT - 1, strerror(errno));
    snprintf(s->dir, sizeof s->dir, "%s/pg%d", case_dir, s->port);
    snprintf(s->conninfo, sizeof s->conninfo,
             "host=127.0.0.1 port=%d dbname=postgres user=postgres", s->port);
    return s;
}

void
bbpg_start(struct bbpg *s, bool is_sync)
{
    char port[16];

    snprintf(port, sizeof port, "%d", s->port);
    pgsh_must("start", s->dir, port, is_sync ? "sync" : NULL, NULL);
}

void
bbpg_start_standby(struct bbpg *s, const struct bbpg *primary)
{
    char pport[16], port[16];

    snprintf(pport, sizeof pport, "%d", primary->port);
    snprintf(port, sizeof port, "%d", s->port);
    pgsh_must("standby", s->dir, pport, port, NULL);
}

void
bbpg_promote(struct bbpg *s)
{
    pgsh_must("promote", s->dir, NULL);
}

void
bbpg_stop(struct bbpg *s)
{
    pgsh_must("stop", s->dir, NULL);
}

void
bbpg_kill(struct bbpg *s)
{
    pgsh_must("kill", s->dir, NULL);
}

void
bbpg_restart(struct bbpg *s)
{
    pgsh_must("restart", s->dir, NULL);
}

void
bbpg_free(struct bbpg *s)
{
    char out[256];

    if (s == NULL)
        return;
    if (pgsh(out, sizeof out, "stop", s->dir, "immediate", NULL) != 0)
        fprintf(stderr, "bbpg: stop %s: %s\n", s->dir, out);
    bb_remove_dir(s->dir);
    close(s->lock_fd);
    free(s);
}

int
bbpg_port(const struct bbpg *s)
{
    return s->port;
}

const char *
bbpg_conninfo(const struct bbpg *s)
{
    return s->conninfo;
}

/* ---- SQL ---- */

/* The result of sql on s, or NULL with why (a new string) on an error. */
static PGresult *
query_text(const struct bbpg *s, const char *sql, char **why)
{
    char conninfo[256];
    PGconn *conn;
    PGresult *res = NULL;

    snprintf(conninfo, sizeof conninfo, "%s" SQL_CONNINFO_EXTRA, s->conninfo);
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        *why = strdup(PQerrorMessage(conn));
        goto fail;
    }
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK &&
        PQresultStatus(res) != PGRES_COMMAND_OK) {
        *why = strdup(PQresultErrorMessage(res));
        PQclear(res);
        res = NULL;
    }
fail:
    PQfinish(conn);
    return res;
}

static char *
vsql(const char *fmt, va_list ap)
{
    char *sql;

    ck_assert_int_ge(vasprintf(&sql, fmt, ap), 0);
    return sql;
}

PGresult *
bbpg_query(const struct bbpg *s, const char *fmt, ...)
{
    va_list ap;
    char *sql, *why = NULL;
    PGresult *res;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    res = query_text(s, sql, &why);
    ck_assert_msg(res != NULL, "bbpg: port %d: %s: %s", s->port, sql, why);
    free(sql);
    return res;
}

/* The integer of res's first cell, or false. */
static bool
res_int(const PGresult *res, long long *out)
{
    char *end;

    if (PQntuples(res) != 1 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0))
        return false;
    *out = strtoll(PQgetvalue(res, 0, 0), &end, 10);
    return *end == '\0';
}

long long
bbpg_int(const struct bbpg *s, const char *fmt, ...)
{
    va_list ap;
    char *sql, *why = NULL;
    PGresult *res;
    long long v = 0;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    res = query_text(s, sql, &why);
    ck_assert_msg(res != NULL, "bbpg: port %d: %s: %s", s->port, sql, why);
    ck_assert_msg(res_int(res, &v), "bbpg: port %d: %s: not one integer",
                  s->port, sql);
    PQclear(res);
    free(sql);
    return v;
}

bool
bbpg_try_int(const struct bbpg *s, long long *out, const char *fmt, ...)
{
    va_list ap;
    char *sql, *why = NULL;
    PGresult *res;
    bool ok;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    res = query_text(s, sql, &why);
    ok = res != NULL && res_int(res, out);
    PQclear(res);
    free(why);
    free(sql);
    return ok;
}

void
bbpg_exec(const struct bbpg *s, const char *fmt, ...)
{
    va_list ap;
    char *sql;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    PQclear(bbpg_query(s, "%s", sql));
    free(sql);
}

char *
bbpg_text(const struct bbpg *s, const char *fmt, ...)
{
    va_list ap;
    char *sql, *out;
    PGresult *res;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    res = bbpg_query(s, "%s", sql);
    out = strdup(PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    free(sql);
    return out;
}

void
bbpg_is(const struct bbpg *s, const char *sql, const char *want)
{
    char *got = bbpg_text(s, "%s", sql);

    ck_assert_msg(strcmp(got, want) == 0, "%s: got \"%s\", want \"%s\"", sql,
                  got, want);
    free(got);
}

struct text_want {
    const struct bbpg *s;
    const char *sql, *want;
};

static bool
text_is(void *arg)
{
    struct text_want *w = arg;
    char *got = bbpg_text(w->s, "%s", w->sql);
    bool ok = strcmp(got, w->want) == 0;

    free(got);
    return ok;
}

void
bbpg_await_text(const struct bbpg *s, const char *sql, const char *want,
                int timeout_ms)
{
    struct text_want w = {s, sql, want};

    if (!bb_poll(text_is, &w, timeout_ms))
        bbpg_is(s, sql, want);
}

struct int_want {
    const struct bbpg *s;
    const char *sql;
    long long want, got;
};

static bool
int_is(void *arg)
{
    struct int_want *w = arg;

    return bbpg_try_int(w->s, &w->got, "%s", w->sql) && w->got == w->want;
}

void
bbpg_await_int(const struct bbpg *s, long long want, int timeout_ms,
               const char *fmt, ...)
{
    struct int_want w = {.s = s, .want = want, .got = -1};
    va_list ap;
    char *sql;

    va_start(ap, fmt);
    sql = vsql(fmt, ap);
    va_end(ap);
    w.sql = sql;
    if (!bb_poll(int_is, &w, timeout_ms))
        ck_abort_msg("%s: got %lld, want %lld", sql, w.got, want);
    free(sql);
}

void
bbpg_suite_setup(struct bbpg **s)
{
    bbpg_setup();
    if (!bbpg_available())
        return;
    *s = bbpg_new();
    bbpg_start(*s, false);
}

void
bbpg_suite_teardown(struct bbpg **s)
{
    bbpg_free(*s);
    *s = NULL;
    bbpg_teardown();
}

/* ---- several nodes ---- */

struct bb_daemon *
bbpg_cluster_start(const struct bbpg *s, const char *schema, const char *node,
                   const char *rest)
{
    struct bb_daemon *d =
        bb_startq("{'store': {'kind': 'postgres', 'conninfo': '%s', "
                  "'schema': '%s', 'node': '%s'}, %s}",
                  s->conninfo, schema, node, rest);

    ck_assert_msg(bb_log_wait(d, "cluster: postgres:", 30000),
                  "node %s: no cluster session", node);
    return d;
}

PGconn *
bbpg_cluster_session(const struct bbpg *s)
{
    char conninfo[256];
    PGconn *conn;

    snprintf(conninfo, sizeof conninfo, "%s connect_timeout=5", s->conninfo);
    conn = PQconnectdb(conninfo);
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "bbpg: port %d: %s", s->port,
                  PQerrorMessage(conn));
    return conn;
}

/* ---- core: several asyncqd nodes sharing one schema (bb.pgshare) ---- */

struct bb_daemon *
bbpg_core_node(const struct bbpg *s, const char *schema, const char *node,
               const char *queues, int renew_ms, int poll_ms)
{
    char renew[24], poll[24];
    struct bb_daemon *d;

    snprintf(renew, sizeof renew, "%d", renew_ms);
    snprintf(poll, sizeof poll, "%d", poll_ms);
    setenv("ASYNCQ_PG_LEASE_RENEW_MS", renew, 1);
    setenv("ASYNCQ_PG_POLL_MS", poll, 1);
    d = bb_startq("{'store': {'kind': 'postgres', 'conninfo': '%s', "
                  "'schema': '%s', 'node': '%s'}, 'queues': %s}",
                  bbpg_conninfo(s), schema, node, queues);
    unsetenv("ASYNCQ_PG_LEASE_RENEW_MS");
    unsetenv("ASYNCQ_PG_POLL_MS");
    return d;
}
