/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_tls.c: tls:// listeners of the real asyncqd (spec section 10,
 * "TLS and identity"): put and status over TLS with the CLI and with
 * lib/client, TLS below 1.2 refused, mutual TLS (no certificate, one of
 * another CA, the right one), a stalled handshake closed after
 * tls.handshake_timeout while other clients are served, plain text on the
 * TLS port, certificate reload on SIGHUP, and config errors. The daemon
 * listens on tls://127.0.0.1:0 besides the plain socket the harness hands
 * over; the test reads the TLS port from the log. Certificates:
 * tests/tls/. Without TLS in the build: a tls:// listener is a config
 * error saying so.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "bb.h"
#include "bbcli.h"
#include "bbproc.h"
#include "bbsuites.h"
#include "client.h"
#include "error.h"

#ifndef AQ_TLS_DIR
#error "AQ_TLS_DIR must name tests/tls"
#endif

#define WAIT_MS 5000
#define LISTENING "listening on tls://127.0.0.1:"

/* A config file in a directory of its own, for asyncqd --check-config. */
struct cfgdir {
    char dir[64];
    char path[96];
};

static void
cfgdir_write(struct cfgdir *cd, const char *text)
{
    FILE *f;

    snprintf(cd->dir, sizeof cd->dir, "/tmp/asyncq-bbtls.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cd->dir));
    snprintf(cd->path, sizeof cd->path, "%s/asyncqd.json", cd->dir);
    ck_assert_ptr_nonnull(f = fopen(cd->path, "w"));
    fputs(text, f);
    fclose(f);
}

/* asyncqd with args (NULL-terminated) on cd's config; r is the caller's. */
static void
run_asyncqd(struct bb_run *r, const char *const *args)
{
    const char *argv[8] = {ASYNCQD_PATH};
    size_t n = 1;

    while (*args != NULL && n < 7)
        argv[n++] = *args++;
    argv[n] = NULL;
    bb_run_argv(r, NULL, argv);
}

#ifdef AQ_HAVE_TLS

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Starts asyncqd with a tls:// listener; extra is more of the tls
 * section (",\"client_ca\":..."). *port gets the TLS port. */
static struct bb_daemon *
start_tls(const char *extra, int *port)
{
    struct bb_daemon *d = bb_start(
        "{\"listen\":[\"tls://127.0.0.1:0\"],"
        "\"tls\":{\"cert\":\"%s/server.pem\",\"key\":\"%s/server.key\"%s},"
        "\"queues\":{\"q\":{\"kind\":\"echo\"}}}",
        AQ_TLS_DIR, AQ_TLS_DIR, extra);
    char *log, *at;

    ck_assert_msg(bb_log_wait(d, LISTENING, WAIT_MS), "no tls listener");
    log = bb_log(d);
    at = strstr(log, LISTENING);
    *port = atoi(at + strlen(LISTENING));
    free(log);
    ck_assert_int_gt(*port, 0);
    return d;
}

static const char *
url(int port, const char *host)
{
    static char buf[64];

    snprintf(buf, sizeof buf, "tls://%s:%d", host, port);
    return buf;
}

/* ---- a raw OpenSSL client, for what lib/client does not do ---- */

struct tcli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char subject[256]; /* the server certificate's */
};

/* A TCP socket to 127.0.0.1:port whose reads and writes give up after
 * WAIT_MS. */
static int
dial(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct timeval tv = {WAIT_MS / 1000, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* Handshakes with the daemon at port: versions up to max_version (0:
 * any), cert/key presented if not NULL. Whether the handshake succeeded
 * (t is to be closed with tcli_close either way). */
static bool
tcli_open(struct tcli *t, int port, int max_version, const char *cert,
          const char *key)
{
    X509 *x;

    memset(t, 0, sizeof *t);
    t->ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_int_eq(
        SSL_CTX_load_verify_locations(t->ctx, AQ_TLS_DIR "/ca.pem", NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (max_version != 0) {
        /* The client offers old versions even where OpenSSL's defaults
         * would not: it is the server that must refuse them. */
        SSL_CTX_set_min_proto_version(t->ctx, 0);
        SSL_CTX_set_max_proto_version(t->ctx, max_version);
        SSL_CTX_set_cipher_list(t->ctx, "DEFAULT:@SECLEVEL=0");
    }
    if (cert != NULL) {
        ck_assert_int_eq(
            SSL_CTX_use_certificate_file(t->ctx, cert, SSL_FILETYPE_PEM), 1);
        ck_assert_int_eq(
            SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
    }
    t->fd = dial(port);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    SSL_set1_host(t->ssl, "localhost");
    if (SSL_connect(t->ssl) != 1) {
        ERR_clear_error();
        return false;
    }
    if ((x = SSL_get_peer_certificate(t->ssl)) != NULL) {
        X509_NAME_oneline(X509_get_subject_name(x), t->subject,
                          sizeof t->subject);
        X509_free(x);
    }
    return true;
}

/* Whether a ping over t is answered "pong". */
static bool
tcli_ping(struct tcli *t)
{
    const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
    char buf[512];
    size_t len = 0;
    int n;

    if (SSL_write(t->ssl, req, (int)sizeof req - 1) <= 0) {
        ERR_clear_error();
        return false;
    }
    while (len < sizeof buf - 1 && memchr(buf, '\n', len) == NULL) {
        if ((n = SSL_read(t->ssl, buf + len, (int)(sizeof buf - 1 - len))) <=
            0) {
            ERR_clear_error();
            return false;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return strstr(buf, "\"pong\"") != NULL;
}

static void
tcli_close(struct tcli *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
}

/* Handshake and ping with these credentials: whether both worked. */
static bool
tls_ping_with(int port, const char *cert, const char *key)
{
    struct tcli t;
    bool ok = tcli_open(&t, port, 0, cert, key) && tcli_ping(&t);

    tcli_close(&t);
    return ok;
}

/* Whether the peer closes fd within timeout_ms (EOF or reset). */
static bool
closed_within(int fd, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char buf[256];

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait = (int)(deadline - bb_now_ms());
        ssize_t n;

        if (wait < 0 || poll(&pfd, 1, wait) <= 0)
            return false;
        n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
}

/* ---- lib/client and the CLI ---- */

START_TEST(lib_client_puts_and_reads_status_over_tls)
{
    struct aq_client_tls opt = {.ca_file = AQ_TLS_DIR "/ca.pem"};
    const char *hosts[] = {"127.0.0.1", "localhost"};
    struct aq_error err;
    int port;
    struct bb_daemon *d = start_tls("", &port);

    for (size_t i = 0; i < 2; i++) {
        struct aq_client *c =
            aq_client_connect_tls(url(port, hosts[i]), WAIT_MS, &opt, &err);
        json_t *r, *st;

        ck_assert_msg(c != NULL, "%s: %s", hosts[i], err.message);
        r = aq_client_call(c, "put",
                           json_pack("{s:s,s:s,s:{s:i}}", "queue", "q", "kind",
                                     "echo", "args", "n", (int)i),
                           NULL, NULL, &err);
        ck_assert_msg(r != NULL, "put: %s", err.message);
        st = aq_client_call(
            c, "wait", json_pack("{s:[O]}", "jobs", json_object_get(r, "job")),
            NULL, NULL, &err);
        ck_assert_msg(st != NULL, "wait: %s", err.message);
        json_decref(st);
        st = aq_client_call(
            c, "status", json_pack("{s:O}", "job", json_object_get(r, "job")),
            NULL, NULL, &err);
        ck_assert_msg(st != NULL, "status: %s", err.message);
        ck_assert_str_eq(json_string_value(json_object_get(st, "state")),
                         "done");
        ck_assert_int_eq(json_integer_value(json_object_get(
                             json_object_get(st, "result"), "n")),
                         (json_int_t)i);
        json_decref(st);
        json_decref(r);
        aq_client_free(c);
    }
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(lib_client_refuses_a_server_it_cannot_verify)
{
    struct aq_client_tls other = {.ca_file = AQ_TLS_DIR "/other-ca.pem"};
    struct aq_client_tls missing = {.ca_file = AQ_TLS_DIR "/no-such-ca.pem"};
    struct aq_error err;
    int port;
    struct bb_daemon *d = start_tls("", &port);
    char plain[64];

    ck_assert_ptr_null(
        aq_client_connect_tls(url(port, "127.0.0.1"), WAIT_MS, &other, &err));
    ck_assert_msg(strstr(err.message, "not trusted") != NULL, "%s",
                  err.message);
    ck_assert_ptr_null(
        aq_client_connect_tls(url(port, "127.0.0.1"), WAIT_MS, &missing, &err));
    ck_assert_msg(strstr(err.message, "no-such-ca.pem") != NULL, "%s",
                  err.message);
    /* TLS to the plain port fails the handshake, within the timeout. */
    snprintf(plain, sizeof plain, "tls://127.0.0.1:%d", bb_port(d));
    ck_assert_ptr_null(aq_client_connect_tls(plain, WAIT_MS, &other, &err));
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(cli_puts_and_reads_status_over_tls)
{
    struct run_opts env = {.env = {"ASYNCQ_CA=" AQ_TLS_DIR "/ca.pem", NULL}};
    struct bb_run r;
    int port;
    struct bb_daemon *d = start_tls("", &port);
    char server[64], id[32];
    json_t *rec;

    snprintf(server, sizeof server, "%s", url(port, "localhost"));
    asyncq(&r, NULL, "--server", server, "--ca", AQ_TLS_DIR "/ca.pem", "--json",
           "put", "-q", "q", "-k", "echo", "--args", "{\"x\":7}", "--wait",
           NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s%s", r.status, r.out, r.err);
    rec = out_json(&r);
    snprintf(id, sizeof id, "%lld",
             (long long)json_integer_value(json_object_get(rec, "job")));
    json_decref(rec);
    bb_run_free(&r);
    /* The CA from the environment. */
    asyncq_with(&r, &env, NULL, "--server", server, "--json", "status", id,
                NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s%s", r.status, r.out, r.err);
    rec = out_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "done");
    json_decref(rec);
    bb_run_free(&r);
    /* No CA that signed the server's certificate: cannot reach it (3). */
    asyncq(&r, NULL, "--server", server, "--ca", AQ_TLS_DIR "/other-ca.pem",
           "ping", NULL);
    ck_assert_int_eq(r.status, 3);
    ck_assert_msg(strstr(r.err, "not trusted") != NULL, "%s", r.err);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- protocol versions ---- */

START_TEST(tls_below_1_2_is_refused)
{
    struct tcli t;
    int port;
    struct bb_daemon *d = start_tls("", &port);

    ck_assert(!tcli_open(&t, port, TLS1_1_VERSION, NULL, NULL));
    tcli_close(&t);
    ck_assert(bb_log_wait(d, "handshake failed", WAIT_MS));
    /* The same client allowed TLS 1.2 gets in. */
    ck_assert(tcli_open(&t, port, TLS1_2_VERSION, NULL, NULL));
    ck_assert_str_eq(SSL_get_version(t.ssl), "TLSv1.2");
    ck_assert(tcli_ping(&t));
    tcli_close(&t);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- mutual TLS ---- */

START_TEST(mutual_tls_takes_only_certificates_of_client_ca)
{
    int port;
    struct bb_daemon *d =
        start_tls(",\"client_ca\":\"" AQ_TLS_DIR "/ca.pem\"", &port);
    struct aq_client_tls good = {.ca_file = AQ_TLS_DIR "/ca.pem",
                                 .cert_file = AQ_TLS_DIR "/client.pem",
                                 .key_file = AQ_TLS_DIR "/client.key"};
    struct aq_error err;
    struct aq_client *c;
    struct bb_run r;
    json_t *pong;

    ck_assert(!tls_ping_with(port, NULL, NULL));
    ck_assert(bb_log_wait(d, "handshake failed", WAIT_MS));
    ck_assert(!tls_ping_with(port, AQ_TLS_DIR "/other-client.pem",
                             AQ_TLS_DIR "/other-client.key"));
    ck_assert(bb_log_wait(d, "client certificate refused", WAIT_MS));
    ck_assert(tls_ping_with(port, AQ_TLS_DIR "/client.pem",
                            AQ_TLS_DIR "/client.key"));
    /* lib/client with the certificate, then without. */
    c = aq_client_connect_tls(url(port, "127.0.0.1"), WAIT_MS, &good, &err);
    ck_assert_msg(c != NULL, "%s", err.message);
    pong = aq_client_call(c, "ping", NULL, NULL, NULL, &err);
    ck_assert_msg(pong != NULL, "%s", err.message);
    json_decref(pong);
    aq_client_free(c);
    good.cert_file = good.key_file = NULL;
    c = aq_client_connect_tls(url(port, "127.0.0.1"), WAIT_MS, &good, &err);
    /* TLS 1.3: the refusal may come after the client's handshake, as an
     * alert on its first read. */
    pong = c != NULL ? aq_client_call(c, "ping", NULL, NULL, NULL, &err) : NULL;
    ck_assert_ptr_null(pong);
    ck_assert_int_eq(err.code, AQ_ERR_TRANSPORT);
    aq_client_free(c);
    /* The CLI: --cert and --key, the right ones and the other CA's. */
    asyncq(&r, NULL, "--server", url(port, "localhost"), "--ca",
           AQ_TLS_DIR "/ca.pem", "--cert", AQ_TLS_DIR "/client.pem", "--key",
           AQ_TLS_DIR "/client.key", "ping", NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s%s", r.status, r.out, r.err);
    bb_run_free(&r);
    asyncq(&r, NULL, "--server", url(port, "localhost"), "--ca",
           AQ_TLS_DIR "/ca.pem", "--cert", AQ_TLS_DIR "/other-client.pem",
           "--key", AQ_TLS_DIR "/other-client.key", "ping", NULL);
    ck_assert_int_eq(r.status, 3);
    bb_run_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- handshakes that never come ---- */

START_TEST(
    a_stalled_handshake_is_closed_after_the_timeout_meanwhile_others_are_served)
{
    int port;
    struct bb_daemon *d = start_tls(",\"handshake_timeout\":1", &port);
    int64_t t0 = bb_now_ms();
    int silent = dial(port);
    struct bb_conn *plain = bb_connect(d);
    json_t *pong;

    /* While the silent one holds its handshake, others are served. */
    ck_assert(tls_ping_with(port, NULL, NULL));
    pong = bb_result(plain, "ping", NULL);
    json_decref(pong);
    ck_assert(closed_within(silent, WAIT_MS));
    ck_assert_msg(bb_now_ms() - t0 >= 900, "closed after %lld ms",
                  (long long)(bb_now_ms() - t0));
    ck_assert(bb_log_wait(d, "no handshake within 1 s", WAIT_MS));
    close(silent);
    bb_close(plain);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(plain_json_on_the_tls_port_is_closed_and_the_daemon_goes_on)
{
    const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
    int port;
    struct bb_daemon *d = start_tls("", &port);
    int fd = dial(port);

    ck_assert_int_eq(send(fd, req, sizeof req - 1, MSG_NOSIGNAL),
                     (ssize_t)sizeof req - 1);
    ck_assert(closed_within(fd, WAIT_MS));
    close(fd);
    ck_assert(bb_log_wait(d, "handshake failed", WAIT_MS));
    /* Half a ClientHello, then the close. */
    fd = dial(port);
    ck_assert_int_eq(send(fd, "\x16\x03\x01\x02\x00\x01", 6, MSG_NOSIGNAL), 6);
    close(fd);
    ck_assert(tls_ping_with(port, NULL, NULL));
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- reload ---- */

static void
copy_file(const char *from, const char *dir, const char *name)
{
    char path[512], buf[8192];
    FILE *in = fopen(from, "r"), *out;
    size_t n;

    snprintf(path, sizeof path, "%s/%s.tmp", dir, name);
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out = fopen(path, "w"));
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    ck_assert_int_eq(rename(path, buf), 0); /* as a renewal tool does */
}

/* The subject of the certificate a new connection gets. */
static void
served_subject(int port, char *out, size_t cap)
{
    struct tcli t;

    ck_assert(tcli_open(&t, port, 0, NULL, NULL));
    ck_assert(tcli_ping(&t));
    snprintf(out, cap, "%s", t.subject);
    tcli_close(&t);
}

START_TEST(sighup_reloads_renewed_certificate_files)
{
    int port;
    struct bb_daemon *d = start_tls("", &port);
    const char *dir = bb_dir(d);
    char subject[256];
    struct tcli before;

    /* Relative paths: against the config file's directory. */
    copy_file(AQ_TLS_DIR "/server.pem", dir, "cert.pem");
    copy_file(AQ_TLS_DIR "/server.key", dir, "key.pem");
    bb_write_config(d,
                    "{\"listen\":[\"tls://127.0.0.1:%d\"],"
                    "\"tls\":{\"cert\":\"cert.pem\",\"key\":\"key.pem\"},"
                    "\"queues\":{\"q\":{\"kind\":\"echo\"}}}",
                    port);
    ck_assert(tcli_open(&before, port, 0, NULL, NULL));
    served_subject(port, subject, sizeof subject);
    ck_assert_str_eq(subject, "/CN=localhost");
    /* Renewed files, then SIGHUP: new connections get the new one. */
    copy_file(AQ_TLS_DIR "/server2.pem", dir, "cert.pem");
    copy_file(AQ_TLS_DIR "/server2.key", dir, "key.pem");
    bb_signal(d, SIGHUP);
    ck_assert(bb_log_wait(d, "reloaded certificate", WAIT_MS));
    served_subject(port, subject, sizeof subject);
    ck_assert_str_eq(subject, "/CN=localhost-2");
    /* The connection made before keeps working. */
    ck_assert(tcli_ping(&before));
    tcli_close(&before);
    /* A key that does not match: the reload fails, the running
     * certificate stays. */
    copy_file(AQ_TLS_DIR "/client.key", dir, "key.pem");
    bb_signal(d, SIGHUP);
    ck_assert(bb_log_wait(d, "keep the running certificate", WAIT_MS));
    ck_assert(bb_log_has(d, "does not match"));
    served_subject(port, subject, sizeof subject);
    ck_assert_str_eq(subject, "/CN=localhost-2");
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* ---- config errors ---- */

static void
assert_check_fails(const char *config, const char *want1, const char *want2)
{
    struct cfgdir cd;
    struct bb_run r;
    const char *const args[] = {"--check-config", "--config", cd.path, NULL};

    cfgdir_write(&cd, config);
    run_asyncqd(&r, args);
    ck_assert_msg(r.status == 1, "exit %d: %s%s", r.status, r.out, r.err);
    ck_assert_msg(strstr(r.err, want1) != NULL, "no \"%s\": %s", want1, r.err);
    ck_assert_msg(want2 == NULL || strstr(r.err, want2) != NULL,
                  "no \"%s\": %s", want2, r.err);
    bb_run_free(&r);
    bb_remove_dir(cd.dir);
}

START_TEST(config_errors_name_the_field_and_the_file)
{
    struct cfgdir cd;
    struct bb_run r;
    const char *const args[] = {"--config", cd.path, NULL};

    assert_check_fails("{\"listen\":[\"tls://127.0.0.1:0\"]}", "listen[0]",
                       "\"tls\" section");
    assert_check_fails("{\"tls\":{\"cert\":\"/nonexistent/c.pem\","
                       "\"key\":\"" AQ_TLS_DIR "/server.key\"}}",
                       "tls.cert: /nonexistent/c.pem", NULL);
    assert_check_fails("{\"tls\":{\"cert\":\"" AQ_TLS_DIR "/server.pem\","
                       "\"key\":\"" AQ_TLS_DIR "/client.key\"}}",
                       "tls.key: " AQ_TLS_DIR "/client.key", "does not match");
    assert_check_fails("{\"tls\":{\"cert\":\"" AQ_TLS_DIR "/server.pem\","
                       "\"key\":\"" AQ_TLS_DIR "/ca.pem\"}}",
                       "tls.key: " AQ_TLS_DIR "/ca.pem", NULL);
    assert_check_fails("{\"tls\":{\"cert\":\"" AQ_TLS_DIR "/server.pem\","
                       "\"key\":\"" AQ_TLS_DIR "/server.key\","
                       "\"client_ca\":\"missing-ca.pem\"}}",
                       "tls.client_ca: ", "missing-ca.pem");
    assert_check_fails("{\"tls\":{\"cert\":\"x.pem\",\"kye\":\"y.pem\"}}",
                       "tls.kye: unknown field", NULL);
    assert_check_fails("{\"tls\":{\"cert\":\"x.pem\"}}", "tls.key: required",
                       NULL);
    /* Starting (not only checking) fails the same way, before listening. */
    cfgdir_write(&cd, "{\"listen\":[\"tls://127.0.0.1:0\"],"
                      "\"journal\":{\"path\":null},\"metrics\":null,"
                      "\"tls\":{\"cert\":\"" AQ_TLS_DIR "/server.pem\","
                      "\"key\":\"/nonexistent/k.pem\"}}");
    run_asyncqd(&r, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "tls.key: /nonexistent/k.pem") != NULL, "%s",
                  r.err);
    bb_run_free(&r);
    bb_remove_dir(cd.dir);
}
END_TEST

#else /* !AQ_HAVE_TLS */

START_TEST(a_tls_listener_is_a_config_error_without_tls)
{
    struct cfgdir cd;
    struct bb_run r;
    const char *const args[] = {"--check-config", "--config", cd.path, NULL};

    cfgdir_write(&cd, "{\"listen\":[\"tls://127.0.0.1:0\"]}");
    run_asyncqd(&r, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "listen[0]") != NULL &&
                      strstr(r.err, "built without") != NULL,
                  "%s", r.err);
    bb_run_free(&r);
    bb_remove_dir(cd.dir);
}
END_TEST

#endif

Suite *
bb_tls_suite(void)
{
    Suite *s = suite_create("bb_tls");
    TCase *tc = tcase_create("tls");

    tcase_set_timeout(tc, 60);
#ifdef AQ_HAVE_TLS
    tcase_add_test(tc, lib_client_puts_and_reads_status_over_tls);
    tcase_add_test(tc, lib_client_refuses_a_server_it_cannot_verify);
    tcase_add_test(tc, cli_puts_and_reads_status_over_tls);
    tcase_add_test(tc, tls_below_1_2_is_refused);
    tcase_add_test(tc, mutual_tls_takes_only_certificates_of_client_ca);
    tcase_add_test(
        tc,
        a_stalled_handshake_is_closed_after_the_timeout_meanwhile_others_are_served);
    tcase_add_test(tc,
                   plain_json_on_the_tls_port_is_closed_and_the_daemon_goes_on);
    tcase_add_test(tc, sighup_reloads_renewed_certificate_files);
    tcase_add_test(tc, config_errors_name_the_field_and_the_file);
#else
    tcase_add_test(tc, a_tls_listener_is_a_config_error_without_tls);
#endif
    suite_add_tcase(s, tc);
    return s;
}
