/* SPDX-License-Identifier: MIT */
/*
 * lib/client.c: a blocking JSON-RPC client over TCP or a Unix socket, with
 * poll(2) deadlines on every wait.
 */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "xmalloc.h"

#define DEFAULT_SERVER "tcp://127.0.0.1:7878"
#define READ_CHUNK 65536

struct aq_client {
    int fd;
    char *server; /* owned */
    int timeout_ms;
    int64_t next_id;
    char *buf; /* received, not yet consumed */
    size_t len, cap;
    json_t *last;   /* the message last returned by recv, for *method */
    bool timed_out; /* the last recv found no line within timeout_ms */
};

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
connect_unix(const char *path, struct aq_error *err)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof sun.sun_path) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "unix:%s: path too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "connect unix:%s: %s", path,
                     strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int
connect_tcp(const char *hostport, struct aq_error *err)
{
    const char *colon = strrchr(hostport, ':');
    char host[256];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, rc, one = 1, saved = 0;
    size_t hlen;

    if (colon == NULL || (hlen = (size_t)(colon - hostport)) >= sizeof host) {
        aq_error_set(err, AQ_ERR_TRANSPORT,
                     "%s: expected tcp://HOST:PORT or unix:/PATH", hostport);
        return -1;
    }
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)hlen - 2, hostport + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)hlen, hostport);
    if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: %s", hostport,
                     gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "connect %s: %s", hostport,
                     strerror(saved));
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct aq_client *
aq_client_connect(const char *server, int timeout_ms, struct aq_error *err)
{
    struct aq_client *c;
    int fd;

    if (server == NULL || *server == '\0')
        server = getenv("ASYNCQ_SERVER");
    if (server == NULL || *server == '\0')
        server = DEFAULT_SERVER;
    if (strncmp(server, "unix:", 5) == 0)
        fd = connect_unix(server + 5, err);
    else
        fd = connect_tcp(
            strncmp(server, "tcp://", 6) == 0 ? server + 6 : server, err);
    if (fd < 0)
        return NULL;
    c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->server = xstrdup(server);
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    return c;
}

void
aq_client_free(struct aq_client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    json_decref(c->last);
    free(c->buf);
    free(c->server);
    free(c);
}

const char *
aq_client_server(const struct aq_client *c)
{
    return c->server;
}

void
aq_client_set_timeout(struct aq_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

static int
send_all(struct aq_client *c, const char *p, size_t n, struct aq_error *err)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            aq_error_set(err, AQ_ERR_TRANSPORT, "%s: send: %s", c->server,
                         strerror(errno));
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int64_t
aq_client_send(struct aq_client *c, const char *method, json_t *params,
               struct aq_error *err)
{
    int64_t id = c->next_id++;
    json_t *req = json_pack("{s:s,s:I,s:s}", "jsonrpc", "2.0", "id",
                            (json_int_t)id, "method", method);
    char *text;
    int rc;

    if (params != NULL)
        json_object_set_new(req, "params", params);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    rc = send_all(c, text, strlen(text), err);
    if (rc == 0)
        rc = send_all(c, "\n", 1, err);
    free(text);
    return rc == 0 ? id : -1;
}

/* Reads until a whole line is buffered. 0, or -1 with err. */
static int
fill_line(struct aq_client *c, struct aq_error *err)
{
    int64_t deadline = c->timeout_ms >= 0 ? now_ms() + c->timeout_ms : -1;

    while (c->buf == NULL || memchr(c->buf, '\n', c->len) == NULL) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int wait = deadline < 0 ? -1 : (int)(deadline - now_ms());
        ssize_t n;
        int ready;

        if (deadline >= 0 && wait < 0)
            wait = 0;
        ready = poll(&pfd, 1, wait);

        if (ready < 0 && errno == EINTR)
            continue; /* a signal the caller handles: wait on */
        if (ready == 0) {
            c->timed_out = true;
            aq_error_set(err, AQ_ERR_TRANSPORT, "%s: no reply within %d ms",
                         c->server, c->timeout_ms);
            return -1;
        }
        if (c->len + READ_CHUNK > c->cap) {
            c->cap = c->len + READ_CHUNK;
            c->buf = xrealloc(c->buf, c->cap);
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            aq_error_set(err, AQ_ERR_TRANSPORT, "%s: connection closed%s%s",
                         c->server, n < 0 ? ": " : "",
                         n < 0 ? strerror(errno) : "");
            return -1;
        }
        c->len += (size_t)n;
    }
    return 0;
}

json_t *
aq_client_recv(struct aq_client *c, int64_t *id, const char **method,
               struct aq_error *err)
{
    json_error_t jerr;
    json_t *msg, *v;
    char *nl;
    size_t n;

    c->timed_out = false;
    if (fill_line(c, err) < 0)
        return NULL;
    nl = memchr(c->buf, '\n', c->len);
    n = (size_t)(nl - c->buf);
    msg = json_loadb(c->buf, n, JSON_ALLOW_NUL, &jerr);
    /* A job's args and result come back exactly as put (spec section 3):
     * an integer beyond 64 bits there is read as the nearest double. */
    if (msg == NULL)
        msg = json_loadb(c->buf, n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                         &jerr);
    memmove(c->buf, nl + 1, c->len - n - 1);
    c->len -= n + 1;
    if (!json_is_object(msg)) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: bad reply: %s", c->server,
                     msg == NULL ? jerr.text : "not an object");
        json_decref(msg);
        return NULL;
    }
    v = json_object_get(msg, "id");
    *id = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    /* read with JSON_DECODE_INT_AS_REAL: our ids are small integers */
    if (json_is_real(v) && json_real_value(v) >= 0 &&
        json_real_value(v) < 9007199254740992.0 &&
        json_real_value(v) == (double)(int64_t)json_real_value(v))
        *id = (int64_t)json_real_value(v);
    json_decref(c->last);
    c->last = json_incref(msg);
    if (method != NULL)
        *method = json_string_value(json_object_get(msg, "method"));
    return msg;
}

json_t *
aq_client_call(struct aq_client *c, const char *method, json_t *params,
               void (*on_note)(const char *method, json_t *params, void *arg),
               void *arg, struct aq_error *err)
{
    int64_t id = aq_client_send(c, method, params, err), got;
    const char *note;
    json_t *msg, *res, *e;

    if (id < 0)
        return NULL;
    for (;;) {
        if ((msg = aq_client_recv(c, &got, &note, err)) == NULL)
            return NULL;
        if (got == id)
            break;
        if (got < 0 && note != NULL && on_note != NULL)
            on_note(note, json_object_get(msg, "params"), arg);
        json_decref(msg);
    }
    e = json_object_get(msg, "error");
    if (e != NULL) {
        aq_error_set(err, (int)json_integer_value(json_object_get(e, "code")),
                     "%s", json_string_value(json_object_get(e, "message")));
        json_decref(msg);
        return NULL;
    }
    res = json_incref(json_object_get(msg, "result"));
    json_decref(msg);
    return res;
}

int
aq_client_auth(struct aq_client *c, const char *token_file,
               struct aq_error *err)
{
    const char *env = getenv("ASYNCQ_TOKEN");
    char buf[4096] = "";
    json_t *r;

    /* An explicit file wins over the environment. */
    if (token_file == NULL && env != NULL && *env != '\0')
        snprintf(buf, sizeof buf, "%s", env);
    else if (token_file != NULL) {
        FILE *f = fopen(token_file, "r");

        if (f == NULL) {
            aq_error_set(err, AQ_ERR_TRANSPORT, "%s: %s", token_file,
                         strerror(errno));
            return -1;
        }
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\r\n")] = '\0';
    } else
        return 0;
    r = aq_client_call(c, "auth", json_pack("{s:s}", "token", buf), NULL, NULL,
                       err);
    json_decref(r);
    return r != NULL ? 0 : -1;
}

bool
aq_client_timed_out(const struct aq_client *c)
{
    return c->timed_out;
}

bool
aq_client_is_server_error(const struct aq_error *err)
{
    return err->code < 0;
}

int
aq_client_notify(struct aq_client *c, const char *method, json_t *params,
                 struct aq_error *err)
{
    json_t *req = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", method);
    char *text;
    size_t n;
    int rc;

    if (params != NULL)
        json_object_set_new(req, "params", params);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    /* One send for the line and its newline: a worker sends many. */
    n = strlen(text);
    text = xrealloc(text, n + 2);
    memcpy(text + n, "\n", 2);
    rc = send_all(c, text, n + 1, err);
    free(text);
    return rc;
}
