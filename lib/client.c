/* SPDX-License-Identifier: MIT */
/*
 * lib/client.c: a blocking JSON-RPC client over TCP, a Unix socket or TLS,
 * with poll(2) deadlines on every wait. TLS runs OpenSSL over memory BIOs:
 * the client moves the bytes between them and the socket itself (send
 * with MSG_NOSIGNAL, recv after poll), so TLS waits have the same
 * deadlines as plain ones and a closed peer never raises SIGPIPE.
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

#ifdef AQ_HAVE_TLS
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#include "error.h"
#include "xmalloc.h"

#define DEFAULT_SERVER "tcp://127.0.0.1:7878"
#define READ_CHUNK 65536
#define TLS_CHUNK 16384

struct aq_client {
    int fd;
#ifdef AQ_HAVE_TLS
    SSL *ssl;         /* owned; NULL for a plain connection */
    BIO *rbio, *wbio; /* ssl's: from the socket, to the socket */
#endif
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

/* Connects to HOST:PORT; host (256 bytes) gets the host name. */
static int
connect_tcp(const char *hostport, char *host, struct aq_error *err)
{
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, rc, one = 1, saved = 0;
    size_t hlen;

    if (colon == NULL || (hlen = (size_t)(colon - hostport)) >= 256) {
        aq_error_set(
            err, AQ_ERR_TRANSPORT,
            "%s: expected tcp://HOST:PORT, tls://HOST:PORT or unix:/PATH",
            hostport);
        return -1;
    }
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']')
        snprintf(host, 256, "%.*s", (int)hlen - 2, hostport + 1);
    else
        snprintf(host, 256, "%.*s", (int)hlen, hostport);
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

/* ---- TLS ---- */

/* Waits until deadline (ms, < 0: none) for bytes on c's socket and reads
 * up to cap of them into buf. Their count (> 0), or -1 with err: the
 * deadline passed (timed_out set) or the connection closed. */
static ssize_t
recv_within(struct aq_client *c, void *buf, size_t cap, int64_t deadline,
            struct aq_error *err)
{
    for (;;) {
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
        n = recv(c->fd, buf, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            aq_error_set(err, AQ_ERR_TRANSPORT, "%s: connection closed%s%s",
                         c->server, n < 0 ? ": " : "",
                         n < 0 ? strerror(errno) : "");
            return -1;
        }
        return n;
    }
}

#ifdef AQ_HAVE_TLS

static int sock_send_all(struct aq_client *c, const char *p, size_t n,
                         struct aq_error *err);

/* What OpenSSL last failed on, for a message; clears its queue. */
static const char *
tls_why(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : "failed";
}

/* Sends what TLS wrote into wbio. 0, or -1 with err. */
static int
tls_flush(struct aq_client *c, struct aq_error *err)
{
    char buf[TLS_CHUNK];
    int n;

    while ((n = BIO_read(c->wbio, buf, (int)sizeof buf)) > 0) {
        if (sock_send_all(c, buf, (size_t)n, err) < 0)
            return -1;
    }
    return 0;
}

/* Waits for input until deadline (ms, < 0: none) and hands it to TLS.
 * 0, or -1 with err (timed_out set when the deadline passed). */
static int
tls_feed(struct aq_client *c, int64_t deadline, struct aq_error *err)
{
    char buf[TLS_CHUNK];
    ssize_t n = recv_within(c, buf, sizeof buf, deadline, err);

    if (n < 0)
        return -1;
    BIO_write(c->rbio, buf, (int)n);
    return 0;
}

/* A TLS failure on c (SSL_get_error gave e) during what, into err. */
static void
tls_error(struct aq_client *c, int e, const char *what, struct aq_error *err)
{
    long vr = SSL_get_verify_result(c->ssl);

    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: connection closed", c->server);
    else if (vr != X509_V_OK)
        aq_error_set(err, AQ_ERR_TRANSPORT,
                     "%s: TLS %s: server certificate not trusted: %s",
                     c->server, what, X509_verify_cert_error_string(vr));
    else
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS %s: %s", c->server, what,
                     tls_why());
    ERR_clear_error();
}

/* Why file could not be used, for a message. */
static const char *
file_why(const char *file)
{
    FILE *f = fopen(file, "r");

    if (f == NULL)
        return strerror(errno);
    fclose(f);
    return tls_why();
}

/* A client context: TLS >= 1.2, the server verified against ca (NULL:
 * the system's CAs), cert and key presented if given. NULL with err. */
static SSL_CTX *
tls_ctx(const char *server, const char *ca, const char *cert, const char *key,
        struct aq_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: %s", server, tls_why());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca != NULL && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: CA file %s: %s", server,
                     ca, file_why(ca));
        goto fail;
    }
    /* The system's store; SSL_CERT_FILE / SSL_CERT_DIR override it. */
    if (ca == NULL && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: the system's CAs: %s",
                     server, tls_why());
        goto fail;
    }
    if (cert == NULL && key != NULL) {
        aq_error_set(err, AQ_ERR_TRANSPORT,
                     "%s: TLS: key file %s without a certificate file", server,
                     key);
        goto fail;
    }
    if (cert != NULL && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: certificate file %s: %s",
                     server, cert, file_why(cert));
        goto fail;
    }
    if (cert != NULL &&
        (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(ctx) != 1)) {
        aq_error_set(err, AQ_ERR_TRANSPORT,
                     "%s: TLS: key file %s: %s (or not the key of %s)", server,
                     key, file_why(key), cert);
        goto fail;
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* An option, else its environment variable; NULL for none or "". */
static const char *
option(const char *given, const char *env)
{
    const char *v = given != NULL ? given : getenv(env);

    return v != NULL && *v != '\0' ? v : NULL;
}

/* The handshake with host on c->fd, within c's timeout. 0, or -1 with
 * err. */
static int
tls_start(struct aq_client *c, const char *host,
          const struct aq_client_tls *opt, struct aq_error *err)
{
    const char *ca = option(opt != NULL ? opt->ca_file : NULL, "ASYNCQ_CA");
    const char *cert =
        option(opt != NULL ? opt->cert_file : NULL, "ASYNCQ_CERT");
    const char *key = option(opt != NULL ? opt->key_file : NULL, "ASYNCQ_KEY");
    int64_t deadline = c->timeout_ms >= 0 ? now_ms() + c->timeout_ms : -1;
    unsigned char ip[16];
    SSL_CTX *ctx;
    int rc, e;

    ERR_clear_error();
    if ((ctx = tls_ctx(c->server, ca, cert, key != NULL ? key : cert, err)) ==
        NULL)
        return -1;
    c->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* c->ssl holds it */
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: %s", c->server,
                     tls_why());
        return -1;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* taken */
    SSL_set_connect_state(c->ssl);
    /* The certificate must name the host: its IP address, or its DNS name
     * (also sent as SNI). */
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        rc = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
    else
        rc = SSL_set1_host(c->ssl, host) == 1 &&
             SSL_set_tlsext_host_name(c->ssl, host) == 1;
    if (rc != 1) {
        aq_error_set(err, AQ_ERR_TRANSPORT, "%s: TLS: host %s: %s", c->server,
                     host, tls_why());
        return -1;
    }
    for (;;) {
        rc = SSL_do_handshake(c->ssl);
        e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
        if (tls_flush(c, err) < 0)
            return -1;
        if (rc == 1)
            return 0;
        if (e != SSL_ERROR_WANT_READ) {
            tls_error(c, e, "handshake", err);
            return -1;
        }
        if (tls_feed(c, deadline, err) < 0) {
            if (c->timed_out)
                aq_error_set(err, AQ_ERR_TRANSPORT,
                             "%s: no TLS handshake within %d ms", c->server,
                             c->timeout_ms);
            c->timed_out = false;
            return -1;
        }
    }
}

#endif

struct aq_client *
aq_client_connect_tls(const char *server, int timeout_ms,
                      const struct aq_client_tls *tls, struct aq_error *err)
{
    char host[256];
    struct aq_client *c;
    bool is_tls = false;
    int fd;

    if (server == NULL || *server == '\0')
        server = getenv("ASYNCQ_SERVER");
    if (server == NULL || *server == '\0')
        server = DEFAULT_SERVER;
    if (strncmp(server, "unix:", 5) == 0)
        fd = connect_unix(server + 5, err);
    else if (strncmp(server, "tls://", 6) == 0) {
#ifdef AQ_HAVE_TLS
        is_tls = true;
        fd = connect_tcp(server + 6, host, err);
#else
        aq_error_set(err, AQ_ERR_TRANSPORT,
                     "%s: TLS is not available in this build (built with "
                     "ASYNCQ_TLS=OFF)",
                     server);
        return NULL;
#endif
    } else
        fd = connect_tcp(
            strncmp(server, "tcp://", 6) == 0 ? server + 6 : server, host, err);
    if (fd < 0)
        return NULL;
    c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->server = xstrdup(server);
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
#ifdef AQ_HAVE_TLS
    if (is_tls && tls_start(c, host, tls, err) < 0) {
        aq_client_free(c);
        return NULL;
    }
#else
    (void)is_tls;
    (void)tls;
#endif
    return c;
}

struct aq_client *
aq_client_connect(const char *server, int timeout_ms, struct aq_error *err)
{
    return aq_client_connect_tls(server, timeout_ms, NULL, err);
}

void
aq_client_free(struct aq_client *c)
{
    if (c == NULL)
        return;
#ifdef AQ_HAVE_TLS
    if (c->ssl != NULL) {
        char buf[TLS_CHUNK];
        int n;

        /* close_notify, if the socket takes it now: never waited for. */
        if (SSL_is_init_finished(c->ssl) && SSL_shutdown(c->ssl) >= 0) {
            while ((n = BIO_read(c->wbio, buf, (int)sizeof buf)) > 0)
                (void)!send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        ERR_clear_error();
        SSL_free(c->ssl);
    }
#endif
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
sock_send_all(struct aq_client *c, const char *p, size_t n,
              struct aq_error *err)
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

/* Sends n bytes of p, through TLS on a tls:// connection. 0, or -1. */
static int
send_all(struct aq_client *c, const char *p, size_t n, struct aq_error *err)
{
#ifdef AQ_HAVE_TLS
    if (c->ssl != NULL) {
        while (n > 0) {
            int w, chunk = n > INT32_MAX ? INT32_MAX : (int)n;

            ERR_clear_error();
            /* Into the memory BIO, whole: it grows, so never WANT_WRITE;
             * no renegotiation, so never WANT_READ. */
            if ((w = SSL_write(c->ssl, p, chunk)) <= 0) {
                tls_error(c, SSL_get_error(c->ssl, w), "write", err);
                return -1;
            }
            if (tls_flush(c, err) < 0)
                return -1;
            p += w;
            n -= (size_t)w;
        }
        return 0;
    }
#endif
    return sock_send_all(c, p, n, err);
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

static void
grow(struct aq_client *c)
{
    if (c->len + READ_CHUNK > c->cap) {
        c->cap = c->len + READ_CHUNK;
        c->buf = xrealloc(c->buf, c->cap);
    }
}

#ifdef AQ_HAVE_TLS
/* Reads what TLS has (waiting for the socket until deadline) into buf.
 * 0, or -1 with err. */
static int
tls_fill(struct aq_client *c, int64_t deadline, struct aq_error *err)
{
    for (;;) {
        size_t room;
        int n, e;

        grow(c);
        room = c->cap - c->len;
        ERR_clear_error();
        n = SSL_read(c->ssl, c->buf + c->len,
                     room > INT32_MAX ? INT32_MAX : (int)room);
        if (n > 0) {
            c->len += (size_t)n;
            return 0;
        }
        e = SSL_get_error(c->ssl, n);
        /* Reading may have written (a key update's answer, an alert). */
        if (tls_flush(c, err) < 0)
            return -1;
        if (e != SSL_ERROR_WANT_READ) {
            tls_error(c, e, "read", err);
            return -1;
        }
        if (tls_feed(c, deadline, err) < 0)
            return -1;
    }
}
#endif

/* Reads until a whole line is buffered. 0, or -1 with err. */
static int
fill_line(struct aq_client *c, struct aq_error *err)
{
    int64_t deadline = c->timeout_ms >= 0 ? now_ms() + c->timeout_ms : -1;
    ssize_t n;

    while (c->buf == NULL || memchr(c->buf, '\n', c->len) == NULL) {
#ifdef AQ_HAVE_TLS
        if (c->ssl != NULL) {
            if (tls_fill(c, deadline, err) < 0)
                return -1;
            continue;
        }
#endif
        grow(c);
        n = recv_within(c, c->buf + c->len, c->cap - c->len, deadline, err);
        if (n < 0)
            return -1;
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
