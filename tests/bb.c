/* SPDX-License-Identifier: MIT */
/* tests/bb.c: the black-box harness (see bb.h). */
#include "bb.h"
#include "bbjson.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ASYNCQD_PATH
#error "ASYNCQD_PATH must name the asyncqd binary"
#endif

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 60000

struct bb_daemon {
    pid_t pid;
    int port;
    int status; /* once exited */
    bool has_exited;
    char dir[64];
    char config[96];
    char logpath[96];
};

struct bb_conn {
    int fd;
    char *buf; /* received, not yet consumed */
    size_t len, cap;
    json_t *stash; /* messages received while waiting for another id */
    json_int_t next_id;
};

int64_t
bb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
bb_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- JSON and config ---- */

/* fmt with its arguments, and with ' turned into " if is_quoted, as a new
 * string, the caller's to free. */
static char *vformat(bool is_quoted, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static char *
vformat(bool is_quoted, const char *fmt, va_list ap)
{
    char *s;

    ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
    for (char *p = s; is_quoted && *p != '\0'; p++) {
        if (*p == '\'')
            *p = '"';
    }
    return s;
}

/* Parses text and frees it. */
static json_t *
json_take(char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    ck_assert_msg(v != NULL, "bad test JSON: %s: %s", jerr.text, text);
    free(text);
    return v;
}

json_t *
bb_json(const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(false, fmt, ap);
    va_end(ap);
    return json_take(text);
}

json_t *
bb_jsonq(const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(true, fmt, ap);
    va_end(ap);
    return json_take(text);
}

/* Writes the config from text, adding the test defaults, and frees text. */
static void
write_config_take(struct bb_daemon *d, char *text)
{
    json_error_t jerr;
    json_t *cfg = json_loads(text, 0, &jerr);
    json_t *defaults = json_pack("{s:{s:n},s:n,s:{s:s}}", "journal", "path",
                                 "metrics", "log", "level", "info");

    ck_assert_msg(cfg != NULL, "bad test config: %s: %s", jerr.text, text);
    json_object_update_missing(cfg, defaults);
    ck_assert_int_eq(json_dump_file(cfg, d->config, JSON_INDENT(2)), 0);
    json_decref(cfg);
    json_decref(defaults);
    free(text);
}

void
bb_write_config(struct bb_daemon *d, const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(false, fmt, ap);
    va_end(ap);
    write_config_take(d, text);
}

void
bb_write_configq(struct bb_daemon *d, const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(true, fmt, ap);
    va_end(ap);
    write_config_take(d, text);
}

/* ---- the daemon ---- */

static int
listen_socket(int *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)*port); /* 0: any free port */
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(fd, 4096), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Splits $ASYNCQD_WRAPPER on spaces into argv (static storage). */
static int
wrapper_argv(char **argv, int max)
{
    static char buf[1024];
    const char *w = getenv("ASYNCQD_WRAPPER");
    int n = 0;

    if (w == NULL || *w == '\0')
        return 0;
    snprintf(buf, sizeof buf, "%s", w);
    for (char *tok = strtok(buf, " "); tok != NULL && n < max;
         tok = strtok(NULL, " "))
        argv[n++] = tok;
    return n;
}

static void
exec_daemon(struct bb_daemon *d, int lfd)
{
    char *argv[32];
    char pid[32];
    int n = wrapper_argv(argv, 24), logfd;

    /* If the test process dies, so does the daemon. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (lfd != 3) {
        dup2(lfd, 3);
        close(lfd);
    }
    fcntl(3, F_SETFD, 0);
    logfd = open(d->logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(logfd, 2);
    close(logfd);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", pid, 1);
    argv[n++] = (char *)ASYNCQD_PATH;
    argv[n++] = (char *)"--config";
    argv[n++] = d->config;
    argv[n] = NULL;
    execvp(argv[0], argv);
    _exit(127);
}

static bool
ping_once(struct bb_daemon *d)
{
    struct bb_conn *c = bb_connect(d);
    json_int_t id = bb_send_call(c, "ping", NULL);
    json_t *r = bb_wait_reply(c, id, 1000);
    bool ok = r != NULL; /* any answer, -32001 included: it is up */

    json_decref(r);
    bb_close(c);
    return ok;
}

/* Runs the daemon of d on its config and port (0: a free one, then set),
 * without waiting. */
static void
spawn_daemon(struct bb_daemon *d)
{
    int lfd;

    lfd = listen_socket(&d->port);
    d->has_exited = false;
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0)
        exec_daemon(d, lfd);
    close(lfd);
}

bool
bb_await_up(struct bb_daemon *d, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    /* The socket is bound already: connects queue in its backlog until the
     * daemon accepts, so the first ping is answered as soon as it is up. */
    while (!ping_once(d)) {
        int st;

        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            char *log = bb_log(d);
            ck_abort_msg("asyncqd exited at start: %s", log);
        }
        if (bb_now_ms() > deadline)
            return false;
    }
    return true;
}

/* Runs the daemon of d and waits until it answers a ping. */
static void
run_daemon(struct bb_daemon *d)
{
    spawn_daemon(d);
    if (!bb_await_up(d, START_TIMEOUT_MS))
        ck_abort_msg("asyncqd did not answer ping within %d ms",
                     START_TIMEOUT_MS);
}

/* A daemon of the config text (freed), not started yet. */
static struct bb_daemon *
daemon_new(char *text)
{
    struct bb_daemon *d = calloc(1, sizeof *d);

    snprintf(d->dir, sizeof d->dir, "/tmp/asyncq-bb.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    snprintf(d->config, sizeof d->config, "%s/asyncqd.json", d->dir);
    snprintf(d->logpath, sizeof d->logpath, "%s/asyncqd.log", d->dir);
    write_config_take(d, text);
    return d;
}

/* Starts the daemon with the config text (freed) as bb_start does. */
static struct bb_daemon *
start_take(char *text)
{
    struct bb_daemon *d = daemon_new(text);

    run_daemon(d);
    return d;
}

struct bb_daemon *
bb_spawnq(const char *fmt, ...)
{
    va_list ap;
    struct bb_daemon *d;

    va_start(ap, fmt);
    d = daemon_new(vformat(true, fmt, ap));
    va_end(ap);
    spawn_daemon(d);
    return d;
}

void
bb_restart(struct bb_daemon *d)
{
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, STOP_TIMEOUT_MS), 0);
    run_daemon(d);
}

struct bb_daemon *
bb_start(const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(false, fmt, ap);
    va_end(ap);
    return start_take(text);
}

struct bb_daemon *
bb_startq(const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = vformat(true, fmt, ap);
    va_end(ap);
    return start_take(text);
}

pid_t
bb_pid(const struct bb_daemon *d)
{
    return d->pid;
}

long
bb_rss_kb(const struct bb_daemon *d)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)bb_pid(d));
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    ck_assert_int_gt(kb, 0);
    return kb;
}

bool
bb_rss_is_meaningful(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return false;
#else
    const char *w = getenv("ASYNCQD_WRAPPER");

    return w == NULL || *w == '\0';
#endif
}

int
bb_port(const struct bb_daemon *d)
{
    return d->port;
}

const char *
bb_dir(const struct bb_daemon *d)
{
    return d->dir;
}

void
bb_signal(struct bb_daemon *d, int sig)
{
    if (!d->has_exited)
        kill(d->pid, sig);
}

int
bb_wait_exit(struct bb_daemon *d, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    int st;

    while (!d->has_exited) {
        pid_t r = waitpid(d->pid, &st, WNOHANG);

        if (r == d->pid) {
            d->has_exited = true;
            d->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (bb_now_ms() > deadline)
            return -1;
        poll(NULL, 0, 5); /* polling a child's exit: no event to wait on */
    }
    return d->status;
}

void
bb_free(struct bb_daemon *d)
{
    if (d == NULL)
        return;
    if (!d->has_exited) {
        kill(d->pid, SIGKILL);
        bb_wait_exit(d, STOP_TIMEOUT_MS);
    }
    bb_remove_dir(d->dir);
    free(d);
}

int
bb_stop(struct bb_daemon *d)
{
    int st;

    bb_signal(d, SIGTERM);
    st = bb_wait_exit(d, STOP_TIMEOUT_MS);
    if (st != 0) {
        char *log = bb_log(d);

        fprintf(stderr, "bb: asyncqd exited with %d; its log:\n%s\n", st, log);
        free(log);
    }
    bb_free(d);
    return st;
}

char *
bb_log(const struct bb_daemon *d)
{
    FILE *f = fopen(d->logpath, "r");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;

    while (f != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    if (f != NULL)
        fclose(f);
    fclose(mem);
    return buf;
}

bool
bb_log_has(const struct bb_daemon *d, const char *needle)
{
    char *log = bb_log(d);
    bool found = strstr(log, needle) != NULL;

    free(log);
    return found;
}

bool
bb_log_wait(const struct bb_daemon *d, const char *needle, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    while (!bb_log_has(d, needle)) {
        if (bb_now_ms() > deadline)
            return false;
        poll(NULL, 0, 10);
    }
    return true;
}

bool
bb_poll(bool (*fn)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    while (!fn(arg)) {
        if (bb_now_ms() > deadline)
            return false;
        poll(NULL, 0, 10);
    }
    return true;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0)
        fprintf(stderr, "bb: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

bool
bb_remove_dir(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return access(dir, F_OK) != 0 && errno == ENOENT;
}

bool
bb_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    FILE *f;
    char *p;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    /* The state follows the ")" closing the command name. */
    if (p == NULL || (p = strrchr(buf, ')')) == NULL)
        return false;
    return p[2] != 'Z' && p[2] != 'X';
}

/* ---- connections ---- */

int
bb_dial(const struct bb_daemon *d)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_port = htons((uint16_t)d->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct bb_conn *
bb_connect(const struct bb_daemon *d)
{
    struct bb_conn *c = calloc(1, sizeof *c);
    int one = 1;

    c->fd = bb_dial(d);
    ck_assert_msg(c->fd >= 0, "cannot connect to asyncqd on port %d", d->port);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->stash = json_array();
    c->next_id = 1;
    return c;
}

void
bb_close(struct bb_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    json_decref(c->stash);
    free(c);
}

int
bb_fd(const struct bb_conn *c)
{
    return c->fd;
}

bool
bb_send_raw(struct bb_conn *c, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool
bb_send_line(struct bb_conn *c, const char *text)
{
    return bb_send_raw(c, text, strlen(text)) && bb_send_raw(c, "\n", 1);
}

/* Reads more bytes, waiting until the deadline. 1 read, 0 timeout, -1
 * EOF or error. */
static int
fill(struct bb_conn *c, int64_t deadline)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int wait = (int)(deadline - bb_now_ms());
    ssize_t n;

    if (wait < 0)
        wait = 0;
    if (poll(&pfd, 1, wait) <= 0)
        return 0;
    if (c->len + 65536 > c->cap) {
        c->cap = c->len + 65536;
        c->buf = realloc(c->buf, c->cap);
    }
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 1;
}

/* The next complete line as JSON, NULL if none is buffered. */
static json_t *
take_line(struct bb_conn *c)
{
    char *nl = c->buf != NULL ? memchr(c->buf, '\n', c->len) : NULL;
    json_error_t jerr;
    json_t *v;
    size_t n;

    if (nl == NULL)
        return NULL;
    n = (size_t)(nl - c->buf);
    v = json_loadb(c->buf, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(v != NULL, "daemon sent invalid JSON: %s: %.*s", jerr.text,
                  (int)n, c->buf);
    memmove(c->buf, nl + 1, c->len - n - 1);
    c->len -= n + 1;
    return v;
}

json_t *
bb_recv(struct bb_conn *c, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    json_t *v;

    if (json_array_size(c->stash) > 0) {
        v = json_incref(json_array_get(c->stash, 0));
        json_array_remove(c->stash, 0);
        return v;
    }
    while ((v = take_line(c)) == NULL) {
        if (fill(c, deadline) <= 0)
            return NULL;
    }
    return v;
}

char *
bb_recv_text(struct bb_conn *c, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char *nl, *text;
    size_t n;

    ck_assert_msg(json_array_size(c->stash) == 0,
                  "bb_recv_text: messages already read as JSON");
    while ((nl = c->buf != NULL ? memchr(c->buf, '\n', c->len) : NULL) ==
           NULL) {
        if (fill(c, deadline) <= 0)
            return NULL;
    }
    n = (size_t)(nl - c->buf);
    text = strndup(c->buf, n);
    memmove(c->buf, nl + 1, c->len - n - 1);
    c->len -= n + 1;
    return text;
}

bool
bb_wait_closed(struct bb_conn *c, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;

    for (;;) {
        int r = fill(c, deadline);

        if (r < 0)
            return true;
        if (r == 0)
            return false;
        c->len = 0; /* discard data until the close */
    }
}

json_int_t
bb_send_call(struct bb_conn *c, const char *method, json_t *params)
{
    json_int_t id = c->next_id++;
    json_t *req = json_pack("{s:s,s:I,s:s}", "jsonrpc", "2.0", "id", id,
                            "method", method);
    char *text;

    if (params != NULL)
        json_object_set_new(req, "params", params);
    text = json_dumps(req, JSON_COMPACT);
    bb_send_line(c, text);
    free(text);
    json_decref(req);
    return id;
}

static bool
has_id(const json_t *msg, json_int_t id)
{
    const json_t *v = json_is_object(msg) ? json_object_get(msg, "id") : NULL;

    return json_is_integer(v) && json_integer_value(v) == id;
}

json_t *
bb_wait_reply(struct bb_conn *c, json_int_t id, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    size_t i;
    json_t *v;

    json_array_foreach (c->stash, i, v) {
        if (has_id(v, id)) {
            json_incref(v);
            json_array_remove(c->stash, i);
            return v;
        }
    }
    for (;;) {
        while ((v = take_line(c)) != NULL) {
            if (has_id(v, id))
                return v;
            json_array_append_new(c->stash, v);
        }
        if (fill(c, deadline) <= 0)
            return NULL;
    }
}

json_t *
bb_call_within(struct bb_conn *c, const char *method, json_t *params,
               int timeout_ms)
{
    json_int_t id = bb_send_call(c, method, params);
    json_t *r = bb_wait_reply(c, id, timeout_ms);

    ck_assert_msg(r != NULL, "no reply to %s within %d ms", method, timeout_ms);
    return r;
}

json_t *
bb_call(struct bb_conn *c, const char *method, json_t *params)
{
    return bb_call_within(c, method, params, BB_TIMEOUT_MS);
}

json_t *
bb_result_within(struct bb_conn *c, const char *method, json_t *params,
                 int timeout_ms)
{
    json_t *r = bb_call_within(c, method, params, timeout_ms);
    json_t *res = json_object_get(r, "result");
    char *text;

    if (res == NULL) {
        text = json_dumps(r, JSON_COMPACT);
        ck_abort_msg("%s failed: %s", method, text);
    }
    json_incref(res);
    json_decref(r);
    return res;
}

json_t *
bb_result(struct bb_conn *c, const char *method, json_t *params)
{
    return bb_result_within(c, method, params, BB_TIMEOUT_MS);
}

int
bb_error(struct bb_conn *c, const char *method, json_t *params)
{
    json_t *r = bb_call(c, method, params);
    json_t *e = json_object_get(r, "error");
    int code;
    char *text;

    if (!json_is_object(e)) {
        text = json_dumps(r, JSON_COMPACT);
        ck_abort_msg("%s should have failed: %s", method, text);
    }
    ck_assert_msg(json_is_string(json_object_get(e, "message")) &&
                      json_string_length(json_object_get(e, "message")) > 0,
                  "%s: error without a message", method);
    code = (int)json_integer_value(json_object_get(e, "code"));
    json_decref(r);
    return code;
}

int
bb_error_reply_code(json_t *msg, const char *id)
{
    json_t *want_id = bb_json("%s", id);
    json_t *err = json_object_get(msg, "error");
    char *text = bb_dump(msg);
    int code;

    ck_assert_msg(json_is_object(err), "got %s, want an error", text);
    ck_assert_pstr_eq(json_string_value(json_object_get(msg, "jsonrpc")),
                      "2.0");
    ck_assert_msg(json_equal(json_object_get(msg, "id"), want_id),
                  "got %s, want id %s", text, id);
    ck_assert_msg(json_is_integer(json_object_get(err, "code")),
                  "error without a code: %s", text);
    ck_assert_msg(json_string_length(json_object_get(err, "message")) > 0,
                  "error without a message: %s", text);
    code = (int)json_integer_value(json_object_get(err, "code"));
    free(text);
    json_decref(want_id);
    json_decref(msg);
    return code;
}

/* ---- jobs and stats ---- */

json_int_t
bb_put_job(struct bb_conn *c, json_t *params, int timeout_ms)
{
    json_t *r = bb_result_within(c, "put", params, timeout_ms);
    json_int_t id = bb_int_at(r, "job");

    json_decref(r);
    return id;
}

json_t *
bb_job_status(struct bb_conn *c, json_int_t id)
{
    return bb_result(c, "status", json_pack("{s:I}", "job", id));
}

struct job_state {
    struct bb_conn *c;
    json_int_t id;
    const char *state;
    int reply_ms; /* deadline for each status reply */
};

static bool
job_has_state(void *arg)
{
    struct job_state *j = arg;
    json_t *rec = bb_result_within(
        j->c, "status", json_pack("{s:I}", "job", j->id), j->reply_ms);
    bool ok = strcmp(bb_str_at(rec, "state"), j->state) == 0;

    json_decref(rec);
    return ok;
}

void
bb_await_state(struct bb_conn *c, json_int_t id, const char *state,
               int timeout_ms)
{
    /* A poll shorter than BB_TIMEOUT_MS still gives each reply that long. */
    struct job_state j = {
        c, id, state, timeout_ms > BB_TIMEOUT_MS ? timeout_ms : BB_TIMEOUT_MS};

    ck_assert_msg(bb_poll(job_has_state, &j, timeout_ms),
                  "job %lld did not become %s within %d ms", (long long)id,
                  state, timeout_ms);
}

json_int_t
bb_stat_int(struct bb_conn *c, const char *queue, const char *name)
{
    json_t *r = bb_result(c, "stats", NULL);
    json_t *v =
        queue == NULL
            ? json_object_get(r, name)
            : json_object_get(
                  json_object_get(json_object_get(r, "queues"), queue), name);
    json_int_t n;

    ck_assert_msg(json_is_integer(v), "stats: no %s%s%s%s",
                  queue != NULL ? "queues." : "", queue != NULL ? queue : "",
                  queue != NULL ? "." : "", name);
    n = json_integer_value(v);
    json_decref(r);
    return n;
}

struct stat_want {
    struct bb_conn *c;
    const char *queue, *name;
    json_int_t want;
};

static bool
stat_is(void *arg)
{
    struct stat_want *w = arg;

    return bb_stat_int(w->c, w->queue, w->name) == w->want;
}

void
bb_await_stat(struct bb_conn *c, const char *queue, const char *name,
              json_int_t want, int timeout_ms)
{
    struct stat_want w = {c, queue, name, want};

    ck_assert_msg(bb_poll(stat_is, &w, timeout_ms),
                  "stats %s.%s did not reach %lld within %d ms",
                  queue != NULL ? queue : "", name, (long long)want,
                  timeout_ms);
}

struct conn_count {
    struct bb_conn *c;
    json_int_t want;
};

static bool
has_connections(void *arg)
{
    struct conn_count *cc = arg;

    return bb_stat_int(cc->c, NULL, "connections") == cc->want;
}

void
bb_await_connections(struct bb_conn *c, json_int_t want, int timeout_ms)
{
    struct conn_count cc = {c, want};

    ck_assert_msg(bb_poll(has_connections, &cc, timeout_ms),
                  "stats.connections stayed %lld, want %lld",
                  (long long)bb_stat_int(c, NULL, "connections"),
                  (long long)want);
}

/* The metrics port, from the log line "metrics on http://HOST:PORT/...". */
int
bb_metrics_port(const struct bb_daemon *d)
{
    const char *needle = "metrics on http://";
    char *log, *p, *colon = NULL;
    int port = 0;

    ck_assert_msg(bb_log_wait(d, needle, 5000), "no \"%s\" in the log", needle);
    log = bb_log(d);
    /* HOST may be [v6]: the port follows the last ':' before the '/'. */
    for (p = strstr(log, needle) + strlen(needle); *p != '/' && *p != '\0';
         p++) {
        if (*p == ':')
            colon = p;
    }
    ck_assert_msg(colon != NULL && sscanf(colon + 1, "%d", &port) == 1,
                  "no port in the log line \"%s\"", needle);
    ck_assert_int_gt(port, 0);
    free(log);
    return port;
}
