/* SPDX-License-Identifier: MIT */
/*
 * lib/listen.c: listeners on evconnlistener. Each is named after its
 * bound address ("tcp://127.0.0.1:7878", "unix:/run/asyncq.sock") for the
 * logs. On an accept error (EMFILE) every listener is disabled and a 1 s
 * timer enables them again (as tmux does), so the loop does not spin.
 */
#include "listen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "error.h"
#include "log.h"
#include "tls.h"
#include "xmalloc.h"

#define LISTEN_BACKLOG 1024
#define NAME_MAX_BYTES 160

struct listener {
    struct aq_listen *owner;
    struct evconnlistener *lev; /* owned */
    char *unix_path;            /* owned; unlinked at close; NULL otherwise */
    bool is_tls;                /* accepted sockets go to owner->tls */
    char name[NAME_MAX_BYTES];
    LIST_ENTRY(listener) link;
};

struct aq_listen {
    struct event_base *base; /* borrowed */
    aq_listen_accept_cb *cb;
    void *cb_arg;
    struct aq_tls *tls; /* borrowed: tls:// listeners' handshakes */
    LIST_HEAD(, listener) listeners;
    struct event *retry_ev; /* owned: enables listeners after EMFILE */
};

/* An address as "HOST:PORT" ("[HOST]:PORT" for IPv6), or NULL for one
 * that is not TCP/IP. */
static const char *
inet_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return NULL;
    snprintf(buf, cap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
             port);
    return buf;
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int socklen, void *arg)
{
    struct listener *l = arg;
    char peer[NAME_MAX_BYTES];

    if (inet_name(sa, (socklen_t)socklen, peer, sizeof peer) == NULL)
        snprintf(peer, sizeof peer, "unix");
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        /* Replies go out as soon as they are written: with Nagle, the
         * tail of a reply bigger than the socket buffer (a page of list)
         * waited for the client's delayed ACK, 40 ms. */
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (l->is_tls)
        aq_tls_accept(l->owner->tls, fd, peer);
    else
        l->owner->cb(l->owner->cb_arg, fd, peer);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_listen *ls = arg;
    struct listener *l;

    LIST_FOREACH (l, &ls->listeners, link)
        evconnlistener_enable(l->lev);
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {1, 0};

    aq_log(AQ_LOG_WARN, "listen: %s: accept: %s; retrying in 1 s", l->name,
           evutil_socket_error_to_string(e));
    /* Out of descriptors: stop accepting for a second instead of
     * spinning on the same error. */
    evconnlistener_disable(lev);
    evtimer_add(l->owner->retry_ev, &tv);
}

/* Takes lev (made without a callback) as a listener of ls. */
static void
listener_add(struct aq_listen *ls, struct evconnlistener *lev,
             const char *unix_path, bool is_tls)
{
    struct listener *l = xcalloc(1, sizeof *l);
    struct sockaddr_storage ss = {0};
    socklen_t sl = sizeof ss;
    char addr[NAME_MAX_BYTES - sizeof "tcp://"];
    evutil_socket_t fd = evconnlistener_get_fd(lev);

    l->owner = ls;
    l->lev = lev;
    l->unix_path = unix_path != NULL ? xstrdup(unix_path) : NULL;
    l->is_tls = is_tls;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (inet_name((struct sockaddr *)&ss, sl, addr, sizeof addr) != NULL)
        snprintf(l->name, sizeof l->name, "%s://%s", is_tls ? "tls" : "tcp",
                 addr);
    else if (ss.ss_family == AF_UNIX)
        snprintf(l->name, sizeof l->name, "unix:%s",
                 ((struct sockaddr_un *)&ss)->sun_path);
    else
        snprintf(l->name, sizeof l->name, "fd %d", (int)fd);
    evconnlistener_set_cb(lev, accept_cb, l);
    evconnlistener_set_error_cb(lev, accept_error_cb);
    LIST_INSERT_HEAD(&ls->listeners, l, link);
    aq_log(AQ_LOG_INFO, "listening on %s", l->name);
}

static int
listen_tcp(struct aq_listen *ls, const char *addr, bool is_tls,
           struct aq_error *err)
{
    const char *hostport = addr + strlen("tcp://");
    const char *colon = strrchr(hostport, ':');
    char host[256], port[16];
    struct addrinfo hints = {0}, *res = NULL;
    struct evconnlistener *lev;
    size_t hlen;
    int rc;

    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host ||
        strlen(colon + 1) >= sizeof port) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "listen: %s: expected tcp://HOST:PORT", addr);
        return -1;
    }
    if (is_tls && ls->tls == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: no TLS configured",
                     addr);
        return -1;
    }
    hlen = (size_t)(colon - hostport);
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']') {
        memcpy(host, hostport + 1, hlen - 2); /* [v6] */
        host[hlen - 2] = '\0';
    } else {
        memcpy(host, hostport, hlen);
        host[hlen] = '\0';
    }
    strcpy(port, colon + 1);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr,
                     gai_strerror(rc));
        return -1;
    }
    lev = evconnlistener_new_bind(
        ls->base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
            (res->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
        LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (lev == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr,
                     strerror(errno));
        return -1;
    }
    listener_add(ls, lev, NULL, is_tls);
    return 0;
}

static int
listen_unix(struct aq_listen *ls, const char *addr, struct aq_error *err)
{
    const char *path = addr + strlen("unix:");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    int fd = -1;

    if (strlen(path) >= sizeof sun.sun_path) {
        aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: path too long", addr);
        return -1;
    }
    strcpy(sun.sun_path, path);
    /* A socket left by a previous run is stale: replace it. Anything
     * else at that path is not ours to remove. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    listener_add(ls,
                 evconnlistener_new(
                     ls->base, NULL, NULL,
                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd),
                 path, false);
    return 0;
fail:
    aq_error_set(err, AQ_ERR_INTERNAL, "listen: %s: %s", addr, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

struct aq_listen *
aq_listen_new(struct event_base *base, aq_listen_accept_cb *cb, void *arg)
{
    struct aq_listen *ls = xcalloc(1, sizeof *ls);

    ls->base = base;
    ls->cb = cb;
    ls->cb_arg = arg;
    LIST_INIT(&ls->listeners);
    ls->retry_ev = evtimer_new(base, retry_cb, ls);
    return ls;
}

int
aq_listen_add(struct aq_listen *ls, const char *addr, struct aq_error *err)
{
    if (strncmp(addr, "unix:", 5) == 0)
        return listen_unix(ls, addr, err);
    if (strncmp(addr, "tcp://", 6) == 0)
        return listen_tcp(ls, addr, false, err);
    if (strncmp(addr, "tls://", 6) == 0)
        return listen_tcp(ls, addr, true, err);
    aq_error_set(err, AQ_ERR_INTERNAL,
                 "listen: %s: expected tcp://HOST:PORT or unix:PATH", addr);
    return -1;
}

void
aq_listen_set_tls(struct aq_listen *ls, struct aq_tls *tls)
{
    ls->tls = tls;
}

void
aq_listen_add_fd(struct aq_listen *ls, int fd)
{
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    listener_add(ls,
                 evconnlistener_new(
                     ls->base, NULL, NULL,
                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd),
                 NULL, false);
}

size_t
aq_listen_addresses(const struct aq_listen *ls, struct sockaddr_storage *out,
                    size_t max)
{
    const struct listener *l;
    size_t n = 0;

    LIST_FOREACH (l, &ls->listeners, link) {
        struct sockaddr_storage ss = {0};
        socklen_t sl = sizeof ss;

        if (n < max &&
            getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss,
                        &sl) == 0 &&
            (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
            out[n++] = ss;
    }
    return n;
}

void
aq_listen_close(struct aq_listen *ls)
{
    struct listener *l;

    while ((l = LIST_FIRST(&ls->listeners)) != NULL) {
        LIST_REMOVE(l, link);
        evconnlistener_free(l->lev);
        if (l->unix_path != NULL)
            unlink(l->unix_path);
        free(l->unix_path);
        free(l);
    }
    evtimer_del(ls->retry_ev);
}

void
aq_listen_free(struct aq_listen *ls)
{
    if (ls == NULL)
        return;
    aq_listen_close(ls);
    event_free(ls->retry_ev);
    free(ls);
}
