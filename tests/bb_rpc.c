/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_rpc.c: JSON-RPC over HTTP on the metrics listener (spec
 * section 13), against the real asyncqd with a plain HTTP/1.1 client of
 * our own: one request and a batch answered as on TCP (ids byte for
 * byte, notifications unanswered, 204 for only those), a wait answered
 * when its job ends, join's timeout, the HTTP refusals (401 with
 * WWW-Authenticate, 405, 413, 415), the read-only rule on an address that
 * is not loopback, session and history (also over TCP), and a client
 * that goes while its wait is pending.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#define HTTP_MS 10000
#define JSON "application/json"

struct reply {
    int status;
    char *head; /* status line and headers */
    char *body;
    size_t body_len;
};

static void
reply_free(struct reply *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of header name in r (a new string), or NULL. */
static char *
header(const struct reply *r, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = strstr(r->head, "\r\n"); p != NULL;
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *end = strstr(line, "\r\n");

        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;

            while (*v == ' ')
                v++;
            return strndup(v, end != NULL ? (size_t)(end - v) : strlen(v));
        }
    }
    return NULL;
}

static int
dial(const char *host, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, host, &sin.sin_addr), 1);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0,
                  "connect to %s:%d: %s", host, port, strerror(errno));
    return fd;
}

/* Sends a request with Connection: close; ctype and auth may be NULL. */
static void
send_request(int fd, const char *method, const char *ctype, const char *auth,
             const char *body)
{
    char *req;
    int n = asprintf(&req,
                     "%s /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "%s%s%s%s%s%sContent-Length: %zu\r\n\r\n%s",
                     method, ctype != NULL ? "Content-Type: " : "",
                     ctype != NULL ? ctype : "", ctype != NULL ? "\r\n" : "",
                     auth != NULL ? "Authorization: " : "",
                     auth != NULL ? auth : "", auth != NULL ? "\r\n" : "",
                     strlen(body), body);

    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    free(req);
}

/* Reads the reply to EOF within timeout_ms (Content-Length bodies). */
static void
read_reply(int fd, struct reply *r, int timeout_ms)
{
    int64_t deadline = bb_now_ms() + timeout_ms;
    char *buf = NULL, *sep;
    size_t len = 0, cap = 0;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = (int)(deadline - bb_now_ms());
        ssize_t got;

        ck_assert_msg(wait_ms > 0 && poll(&pfd, 1, wait_ms) > 0,
                      "no end of the HTTP reply within %d ms", timeout_ms);
        if (len + 65536 > cap) {
            cap = len + 65536;
            buf = realloc(buf, cap + 1);
        }
        if ((got = recv(fd, buf + len, cap - len, 0)) <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    ck_assert_msg(len > 0, "closed without a reply");
    buf[len] = '\0';
    ck_assert_int_eq(sscanf(buf, "HTTP/1.1 %d", &r->status), 1);
    sep = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(sep);
    r->head = strndup(buf, (size_t)(sep - buf));
    r->body_len = len - (size_t)(sep + 4 - buf);
    r->body = strndup(sep + 4, r->body_len);
    free(buf);
}

static void
exchange(const char *host, int port, const char *method, const char *ctype,
         const char *auth, const char *body, struct reply *r)
{
    int fd = dial(host, port);

    send_request(fd, method, ctype, auth, body);
    read_reply(fd, r, HTTP_MS);
}

/* POST body and return the JSON reply (200, application/json). */
static json_t *
rpc(int port, const char *auth, const char *body)
{
    struct reply r = {0};
    json_error_t e;
    json_t *v;
    char *ct;

    exchange("127.0.0.1", port, "POST", JSON, auth, body, &r);
    ck_assert_msg(r.status == 200, "POST %s: status %d: %s", body, r.status,
                  r.body);
    ct = header(&r, "Content-Type");
    ck_assert_str_eq(ct, JSON);
    free(ct);
    v = json_loadb(r.body, r.body_len, 0, &e);
    ck_assert_msg(v != NULL, "not JSON: %s", r.body);
    reply_free(&r);
    return v;
}

static json_t *
rpc_result(int port, const char *auth, const char *body)
{
    json_t *v = rpc(port, auth, body), *res;

    ck_assert_msg(json_object_get(v, "error") == NULL, "%s: an error: %s", body,
                  json_string_value(
                      json_object_get(json_object_get(v, "error"), "message")));
    res = json_incref(json_object_get(v, "result"));
    ck_assert_ptr_nonnull(res);
    json_decref(v);
    return res;
}

static int
rpc_error(int port, const char *body)
{
    json_t *v = rpc(port, NULL, body);
    int code = (int)bb_int_at(v, "error.code");

    json_decref(v);
    return code;
}

static struct bb_daemon *
start(const char *queues)
{
    return bb_startq("{'metrics':'127.0.0.1:0','shutdown':{'grace':0.2},"
                     "'queues':{%s}}",
                     queues);
}

START_TEST(one_request_and_a_batch_as_on_tcp)
{
    struct bb_daemon *d =
        start("'e':{'kind':'echo','consumers':0},'default':{'kind':'echo'}");
    int port = bb_metrics_port(d);
    struct bb_conn *c = bb_connect(d);
    struct reply r = {0};
    json_t *v;

    v = rpc_result(port, NULL,
                   "{\"jsonrpc\":\"2.0\",\"id\":1,"
                   "\"method\":\"ping\"}");
    ck_assert_str_eq(json_string_value(v), "pong");
    json_decref(v);
    /* A batch over several lines: replies in request order, none for the
     * notification, which still runs. */
    v = rpc(port, NULL,
            "[{\"id\":\"a\",\"method\":\"stats\",\"params\":{\"queue\":\"e\"}},"
            "\n {\"method\":\"put\",\"params\":{\"queue\":\"e\"}},\n"
            " {\"id\":2,\"method\":\"nope\"}]");
    ck_assert_int_eq(json_array_size(v), 2);
    ck_assert_str_eq(bb_str_at(json_array_get(v, 0), "id"), "a");
    ck_assert_int_eq(bb_int_at(json_array_get(v, 1), "id"), 2);
    ck_assert_int_eq(bb_int_at(json_array_get(v, 1), "error.code"),
                     METHOD_NOT_FOUND);
    json_decref(v);
    bb_await_stat(c, "e", "put", 1, 5000);
    /* Only notifications: 204, no body, and they ran. */
    exchange("127.0.0.1", port, "POST", JSON, NULL,
             "[{\"method\":\"put\",\"params\":{\"queue\":\"e\"}},"
             "{\"method\":\"put\",\"params\":{\"queue\":\"e\"}}]",
             &r);
    ck_assert_int_eq(r.status, 204);
    ck_assert_uint_eq(r.body_len, 0);
    reply_free(&r);
    exchange("127.0.0.1", port, "POST", JSON, NULL, "{\"method\":\"ping\"}",
             &r);
    ck_assert_int_eq(r.status, 204);
    reply_free(&r);
    bb_await_stat(c, "e", "put", 3, 5000);
    /* A put answered, with the job's record when it waits. */
    v = rpc_result(port, NULL,
                   "{\"id\":3,\"method\":\"put\",\"params\":{\"wait\":true,"
                   "\"args\":{\"n\":1}}}");
    ck_assert_str_eq(bb_str_at(v, "state"), "done");
    json_decref(v);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(ids_come_back_byte_for_byte_and_errors_are_the_protocols)
{
    struct bb_daemon *d = start("'default':{'kind':'echo'}");
    int port = bb_metrics_port(d);
    static const char *const ids[] = {"1e3", "0.30000000000000004",
                                      "18446744073709551616", "\"\\u00e9\"",
                                      "-0"};
    struct reply r = {0};
    json_t *v;

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char body[128], want[64];

        snprintf(body, sizeof body, "{\"id\":%s,\"method\":\"ping\"}", ids[i]);
        snprintf(want, sizeof want, "\"id\":%s,", ids[i]);
        exchange("127.0.0.1", port, "POST", JSON, NULL, body, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(strstr(r.body, want) != NULL, "%s not in %s", want,
                      r.body);
        reply_free(&r);
    }
    /* Not JSON: -32700 with a null id, still HTTP 200. */
    v = rpc(port, NULL, "{\"id\":1,\"method\":");
    ck_assert_int_eq(bb_int_at(v, "error.code"), PARSE_ERROR);
    ck_assert(json_is_null(json_object_get(v, "id")));
    json_decref(v);
    ck_assert_int_eq(rpc_error(port, "[]"), INVALID_REQUEST);
    ck_assert_int_eq(rpc_error(port, "{\"id\":1,\"method\":\"put\","
                                     "\"params\":{\"priority\":\"x\"}}"),
                     INVALID_PARAMS);
    /* A worker's methods need a connection for the lease. */
    ck_assert_int_eq(rpc_error(port, "{\"id\":1,\"method\":\"get\"}"),
                     NOT_ALLOWED);
    ck_assert_int_eq(
        rpc_error(port,
                  "{\"id\":1,\"method\":\"task_done\",\"params\":{\"job\":1}}"),
        NOT_ALLOWED);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_wait_is_answered_when_its_job_ends_and_join_times_out)
{
    struct bb_daemon *d = start("'s':{'kind':'exec','consumers':1}");
    int port = bb_metrics_port(d);
    json_t *v;
    json_int_t job;
    double t0;
    char body[160];

    v = rpc_result(port, NULL,
                   "{\"id\":1,\"method\":\"put\",\"params\":{\"queue\":\"s\","
                   "\"args\":{\"argv\":[\"sleep\",\"0.4\"]}}}");
    job = bb_int_at(v, "job");
    json_decref(v);
    t0 = bb_now_s();
    snprintf(body, sizeof body,
             "{\"id\":2,\"method\":\"wait\",\"params\":{\"jobs\":[%lld]}}",
             (long long)job);
    v = rpc_result(port, NULL, body);
    ck_assert_str_eq(bb_str_at(json_array_get(v, 0), "state"), "done");
    ck_assert_msg(bb_now_s() - t0 > 0.1, "answered before the job ended");
    json_decref(v);
    /* join past its timeout: -32008. */
    v = rpc_result(port, NULL,
                   "{\"id\":3,\"method\":\"put\",\"params\":{\"queue\":\"s\","
                   "\"args\":{\"argv\":[\"sleep\",\"30\"]}}}");
    json_decref(v);
    ck_assert_int_eq(rpc_error(port, "{\"id\":4,\"method\":\"join\","
                                     "\"params\":{\"queue\":\"s\","
                                     "\"timeout\":0.2}}"),
                     TIMED_OUT);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(a_client_gone_while_waiting_is_forgotten)
{
    struct bb_daemon *d = start("'s':{'kind':'exec','consumers':1}");
    int port = bb_metrics_port(d);
    json_t *v;
    int fd;

    v = rpc_result(port, NULL,
                   "{\"id\":1,\"method\":\"put\",\"params\":{\"queue\":\"s\","
                   "\"args\":{\"argv\":[\"sleep\",\"30\"]}}}");
    json_decref(v);
    for (int i = 0; i < 3; i++) {
        fd = dial("127.0.0.1", port);
        send_request(fd, "POST", JSON, NULL,
                     i == 0   ? "{\"id\":2,\"method\":\"wait\","
                                "\"params\":{\"jobs\":[1]}}"
                     : i == 1 ? "{\"id\":3,\"method\":\"join\"}"
                              : "[{\"id\":4,\"method\":\"put\",\"params\":{"
                                "\"queue\":\"s\",\"wait\":true,\"args\":"
                                "{\"argv\":[\"true\"]}}},{\"id\":5,"
                                "\"method\":\"ping\"}]");
        close(fd);
    }
    /* Each noticed and dropped; the daemon goes on serving. */
    ck_assert_msg(bb_log_wait(d, "client gone before its reply", 5000),
                  "the client's close was not noticed");
    v = rpc_result(port, NULL, "{\"id\":6,\"method\":\"ping\"}");
    json_decref(v);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(http_refusals_405_413_415)
{
    struct bb_daemon *d = bb_startq(
        "{'metrics':'127.0.0.1:0','producers':{'max_request_bytes':1000},"
        "'queues':{'default':{'kind':'echo'}}}");
    int port = bb_metrics_port(d);
    struct reply r = {0};
    char big[1200], *h;
    json_t *v;

    exchange("127.0.0.1", port, "GET", NULL, NULL, "", &r);
    ck_assert_int_eq(r.status, 405);
    h = header(&r, "Allow");
    ck_assert_str_eq(h, "POST");
    free(h);
    reply_free(&r);
    exchange("127.0.0.1", port, "POST", "text/plain", NULL,
             "{\"id\":1,\"method\":\"ping\"}", &r);
    ck_assert_int_eq(r.status, 415);
    reply_free(&r);
    exchange("127.0.0.1", port, "POST", "application/x-www-form-urlencoded",
             NULL, "a=b", &r);
    ck_assert_int_eq(r.status, 415);
    reply_free(&r);
    /* A body just over producers.max_request_bytes. */
    snprintf(big, sizeof big, "{\"id\":1,\"method\":\"ping\",\"x\":\"%0*d\"}",
             1000, 0);
    exchange("127.0.0.1", port, "POST", JSON, NULL, big, &r);
    ck_assert_int_eq(r.status, 413);
    reply_free(&r);
    /* A charset parameter is fine; each refusal was logged with its peer. */
    exchange("127.0.0.1", port, "POST", "application/json; charset=utf-8", NULL,
             "{\"id\":1,\"method\":\"ping\"}", &r);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert(bb_log_has(d, "POST /rpc from 127.0.0.1:"));
    ck_assert(bb_log_has(d, ": 415 "));
    /* /metrics and /healthz as before. */
    exchange("127.0.0.1", port, "POST", JSON, NULL, "{}", &r);
    reply_free(&r);
    v = rpc_result(port, NULL, "{\"id\":1,\"method\":\"ping\"}");
    json_decref(v);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

START_TEST(auth_wants_the_bearer_token_but_session_answers_without)
{
    char token_file[64];
    struct bb_daemon *d;
    struct reply r = {0};
    json_t *v;
    char *h;
    int fd, port;

    snprintf(token_file, sizeof token_file, "/tmp/asyncq-rpc-token.XXXXXX");
    ck_assert_int_ge(fd = mkstemp(token_file), 0);
    ck_assert_int_eq(write(fd, "s3cret\n", 7), 7);
    close(fd);
    d = bb_startq("{'metrics':'127.0.0.1:0','auth':{'token_file':'%s'},"
                  "'queues':{'default':{'kind':'echo'}}}",
                  token_file);
    port = bb_metrics_port(d);
    for (int i = 0; i < 3; i++) {
        static const char *const bad[] = {NULL, "Bearer s3cre", "Basic s3cret"};

        exchange("127.0.0.1", port, "POST", JSON, bad[i],
                 "{\"id\":1,\"method\":\"put\",\"params\":{}}", &r);
        ck_assert_int_eq(r.status, 401);
        h = header(&r, "WWW-Authenticate");
        ck_assert_str_eq(h, "Bearer realm=\"asyncq\"");
        free(h);
        ck_assert_ptr_nonnull(strstr(r.body, "{\"error\":\"unauthorized\"}"));
        reply_free(&r);
    }
    /* Nothing was put. */
    v = rpc_result(port, "Bearer s3cret",
                   "{\"id\":1,\"method\":\"stats\",\"params\":"
                   "{\"queue\":\"default\"}}");
    ck_assert_int_eq(bb_int_at(v, "queues.default.put"), 0);
    json_decref(v);
    v = rpc_result(port, NULL, "{\"id\":1,\"method\":\"session\"}");
    ck_assert(json_is_true(json_object_get(v, "auth")));
    ck_assert(json_is_false(json_object_get(v, "authorized")));
    ck_assert(json_is_false(json_object_get(v, "writable")));
    json_decref(v);
    v = rpc_result(port, "Bearer s3cret", "{\"id\":1,\"method\":\"session\"}");
    ck_assert(json_is_true(json_object_get(v, "authorized")));
    ck_assert(json_is_true(json_object_get(v, "writable")));
    json_decref(v);
    v = rpc_result(port, "bearer   s3cret",
                   "{\"id\":1,\"method\":\"put\",\"params\":{}}");
    ck_assert_int_gt(bb_int_at(v, "job"), 0);
    json_decref(v);
    ck_assert_int_eq(bb_stop(d), 0);
    unlink(token_file);
}
END_TEST

/* An IPv4 address of this machine that is not loopback, or false. */
static bool
own_address(char *buf, size_t size)
{
    struct ifaddrs *ifs, *i;
    bool found = false;

    if (getifaddrs(&ifs) != 0)
        return false;
    for (i = ifs; i != NULL && !found; i = i->ifa_next) {
        const struct sockaddr_in *sin = (const void *)i->ifa_addr;

        if (sin == NULL || sin->sin_family != AF_INET ||
            (ntohl(sin->sin_addr.s_addr) >> 24) == 127)
            continue;
        found =
            inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)size) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

START_TEST(without_auth_beyond_loopback_it_is_read_only)
{
    char host[INET_ADDRSTRLEN];
    struct bb_daemon *d;
    struct reply r = {0};
    json_t *v;
    int port;

    if (!own_address(host, sizeof host)) {
        fprintf(stderr, "bb_rpc: SKIPPED read-only case: this machine has no "
                        "IPv4 address but loopback\n");
        return;
    }
    d = bb_startq("{'metrics':'%s:0','queues':{'default':{'kind':'echo',"
                  "'consumers':0}}}",
                  host);
    port = bb_metrics_port(d);
    ck_assert(bb_log_has(d, "read-only"));
    exchange(host, port, "POST", JSON, NULL,
             "[{\"id\":1,\"method\":\"session\"},"
             "{\"id\":2,\"method\":\"put\",\"params\":{}},"
             "{\"id\":3,\"method\":\"pause\",\"params\":{\"queue\":"
             "\"default\"}},"
             "{\"id\":4,\"method\":\"put\",\"params\":{},\"x\":1},"
             "{\"id\":5,\"method\":\"stats\"}]",
             &r);
    ck_assert_int_eq(r.status, 200);
    v = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_ptr_nonnull(v);
    ck_assert(json_is_false(json_object_get(
        json_object_get(json_array_get(v, 0), "result"), "writable")));
    for (size_t i = 1; i <= 2; i++) {
        json_t *e = json_array_get(v, i);

        ck_assert_int_eq(bb_int_at(e, "error.code"), NOT_ALLOWED);
        ck_assert_msg(strncmp(bb_str_at(e, "error.message"), "read-only", 9) ==
                          0,
                      "%s", bb_str_at(e, "error.message"));
    }
    ck_assert_int_eq(bb_int_at(json_array_get(v, 4), "result.queues.default."
                                                     "put"),
                     0);
    json_decref(v);
    reply_free(&r);
    /* The plain put of the fast path too. */
    exchange(host, port, "POST", JSON, NULL,
             "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"put\","
             "\"params\":{\"queue\":\"default\",\"args\":{}}}",
             &r);
    ck_assert_ptr_nonnull(strstr(r.body, "-32005"));
    reply_free(&r);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

static int64_t
sum(const json_t *a)
{
    int64_t n = 0;

    for (size_t i = 0; i < json_array_size(a); i++)
        n += json_integer_value(json_array_get(a, i));
    return n;
}

struct history_probe {
    int port;
    int64_t done, failed;
};

static bool
history_counts(void *arg)
{
    struct history_probe *p = arg;
    json_t *v = rpc_result(p->port, NULL,
                           "{\"id\":1,\"method\":\"history\",\"params\":{"
                           "\"queue\":\"x\",\"seconds\":30}}");
    const json_t *q = json_object_get(json_object_get(v, "queues"), "x");

    ck_assert_int_eq(json_array_size(json_object_get(q, "done")), 30);
    p->done = sum(json_object_get(q, "done"));
    p->failed = sum(json_object_get(q, "failed"));
    json_decref(v);
    return p->done == 3 && p->failed == 1;
}

START_TEST(session_and_history_over_http_and_tcp)
{
    struct bb_daemon *d = start("'x':{'kind':'exec','consumers':2},"
                                "'y':{'kind':'echo'}");
    int port = bb_metrics_port(d);
    struct history_probe p = {.port = port};
    struct bb_conn *c = bb_connect(d);
    double now = time(NULL);
    json_t *v;

    v = rpc_result(port, NULL, "{\"id\":1,\"method\":\"session\"}");
    ck_assert_str_eq(bb_str_at(v, "version"), ASYNCQ_VERSION);
    ck_assert(json_is_false(json_object_get(v, "auth")));
    ck_assert(json_is_true(json_object_get(v, "authorized")));
    ck_assert(json_is_true(json_object_get(v, "writable")));
    json_decref(v);
    for (int i = 0; i < 4; i++)
        bb_put_job(c,
                   bb_jsonq("{'queue':'x','args':{'argv':['%s']}}",
                            i < 3 ? "true" : "false"),
                   5000);
    ck_assert_msg(bb_poll(history_counts, &p, 5000),
                  "history shows %lld done, %lld failed, not 3 and 1",
                  (long long)p.done, (long long)p.failed);
    /* Over TCP: every queue, 900 seconds by default, ending about now. */
    v = bb_result(c, "history", NULL);
    ck_assert_int_eq(bb_int_at(v, "interval"), 1);
    ck_assert_msg(labs((long)(bb_int_at(v, "end") - (json_int_t)now)) <= 3,
                  "end %lld, now %.0f", (long long)bb_int_at(v, "end"), now);
    ck_assert_int_eq(
        json_array_size(json_object_get(
            json_object_get(json_object_get(v, "queues"), "y"), "failed")),
        900);
    json_decref(v);
    v = bb_result(c, "session", NULL);
    ck_assert(json_is_true(json_object_get(v, "writable")));
    json_decref(v);
    ck_assert_int_eq(bb_error(c, "history", bb_jsonq("{'queue':'nope'}")),
                     NO_SUCH_QUEUE);
    ck_assert_int_eq(bb_error(c, "history", bb_jsonq("{'seconds':901}")),
                     INVALID_PARAMS);
    ck_assert_int_eq(bb_error(c, "history", bb_jsonq("{'seconds':0}")),
                     INVALID_PARAMS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

/* join by batch (issue 16) waits over POST /rpc as on TCP: the reply
 * comes once the batch's job has finished. */
START_TEST(join_by_batch_waits_over_http)
{
    struct bb_daemon *d = start("'s':{'kind':'sleep','consumers':1}");
    struct bb_conn *c = bb_connect(d);
    json_int_t id = bb_put_job(
        c, bb_jsonq("{'queue':'s','args':{'seconds':0.3},'batch':'h'}"), 5000);
    json_t *v, *rec;

    v = rpc_result(bb_metrics_port(d), NULL,
                   "{\"id\":1,\"method\":\"join\",\"params\":{\"batch\":"
                   "\"h\",\"timeout\":5}}");
    ck_assert_str_eq(bb_str_at(v, "batch"), "h");
    json_decref(v);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_rpc_suite(void)
{
    Suite *s = suite_create("bb_rpc");
    TCase *tc = tcase_create("rpc");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, one_request_and_a_batch_as_on_tcp);
    tcase_add_test(tc,
                   ids_come_back_byte_for_byte_and_errors_are_the_protocols);
    tcase_add_test(tc, a_wait_is_answered_when_its_job_ends_and_join_times_out);
    tcase_add_test(tc, a_client_gone_while_waiting_is_forgotten);
    tcase_add_test(tc, http_refusals_405_413_415);
    tcase_add_test(tc, auth_wants_the_bearer_token_but_session_answers_without);
    tcase_add_test(tc, without_auth_beyond_loopback_it_is_read_only);
    tcase_add_test(tc, session_and_history_over_http_and_tcp);
    tcase_add_test(tc, join_by_batch_waits_over_http);
    suite_add_tcase(s, tc);
    return s;
}
