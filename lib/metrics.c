/* SPDX-License-Identifier: MIT */
/*
 * lib/metrics.c: Prometheus text format over evhttp. Every family gets its
 * HELP and TYPE lines once; queues are a "queue" label. Histograms use
 * fixed second buckets filled from the queue's log-linear histograms.
 * Every client is bounded (struct aq_metrics_limits): header and body
 * sizes, idle time, and how many connections are open at once.
 *
 * POST /rpc (spec section 13) runs a JSON-RPC body through the server's
 * methods as an exchange (lib/server.h); a reply that is not ready at once
 * keeps the request until it is, watching the client's socket meanwhile
 * (evhttp reads nothing while a request waits for its reply, so it would
 * not see the client go).
 */
#include "metrics.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "broker.h"
#include "clock.h"
#include "error.h"
#include "hist.h"
#include "journal.h"
#include "store.h"
#include "log.h"
#include "pstat.h"
#include "secret.h"
#include "server.h"
#include "ui.h"
#include "xmalloc.h"

/* Histogram bucket bounds, seconds: from a millisecond to five minutes. */
static const double bounds_s[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                  1,     5,     10,   30,   60,  300};
#define NBOUNDS (sizeof bounds_s / sizeof bounds_s[0])

/* One client connection. evhttp_get_request (static in libevent 2.1)
 * makes its evhttp_connection out of reach, so it is found in two steps:
 * new_bev_cb makes its bufferevent and puts it on the fresh list, holding
 * a reference so it outlives an early free; adopt_cb, in the same loop
 * pass, reads the evhttp_connection back as the bufferevent's callback
 * argument (as libevent 2.1 and 2.2 set it), then counts it or closes it. */
struct conn {
    TAILQ_ENTRY(conn) entry;
    struct aq_metrics *m;
    struct bufferevent *bev;         /* a reference, while on the fresh list */
    struct evhttp_connection *evcon; /* once adopted */
};
TAILQ_HEAD(conn_list, conn);

/* A POST /rpc whose replies are not all in yet. */
struct rpc_wait {
    LIST_ENTRY(rpc_wait) link; /* m->waits */
    struct aq_metrics *m;
    struct evhttp_request *req; /* evhttp's, until the reply is sent */
    struct evhttp_connection *evcon;
    struct aq_exchange *x;
    struct evbuffer *out; /* owned: the replies */
    struct event *watch;  /* owned: the client's socket, for its close */
    char peer[64];
};

struct aq_metrics {
    struct evhttp *http; /* owned */
    struct aq_broker *broker;
    struct aq_server *server;
    struct aq_journal *journal;
    struct aq_store *store; /* borrowed; NULL = no store figures */
    enum aq_health health;
    int64_t started_us; /* monotonic */
    int port;
    struct aq_metrics_limits limits;
    struct conn_list fresh; /* accepted, not yet counted */
    struct conn_list open;  /* counted; each freed by its close callback */
    size_t nopen;           /* length of open */
    struct event *adopt_ev; /* runs adopt_cb; owned */
    bool is_full_logged;    /* a refusal was logged since the last close */
    /* /rpc */
    struct event_base *base;
    char *token; /* owned; NULL: no auth */
    bool is_rpc_set, is_read_only;
    LIST_HEAD(, rpc_wait) waits;
};

struct gauge {
    const char *name, *help, *type;
};

/* The per-queue families, in output order. */
enum {
    Q_SIZE,
    Q_DELAYED,
    Q_RUNNING,
    Q_UNFINISHED,
    Q_MAXSIZE,
    Q_CONSUMERS,
    Q_BUSY,
    Q_PAUSED,
    Q_PUT,
    Q_DONE,
    Q_FAILED,
    Q_CANCELLED,
    Q_RETRIED,
    Q_OLDEST_READY,
    Q_PUTTERS,
    Q_WORKERS,
    Q_LEASES,
    Q_THROTTLED,
    Q_WAITING,
    Q_COUNT
};

static const struct gauge queue_families[Q_COUNT] = {
    [Q_SIZE] = {"asyncq_queue_size", "Ready jobs waiting for a consumer.",
                "gauge"},
    [Q_DELAYED] = {"asyncq_queue_delayed",
                   "Jobs waiting for their delay or a retry's backoff.",
                   "gauge"},
    [Q_RUNNING] = {"asyncq_queue_running", "Jobs being run.", "gauge"},
    [Q_UNFINISHED] = {"asyncq_queue_unfinished",
                      "Jobs put and not finished: delayed, waiting, ready or "
                      "running.",
                      "gauge"},
    [Q_MAXSIZE] = {"asyncq_queue_maxsize",
                   "Unfinished jobs before put waits (0: unbounded).", "gauge"},
    [Q_CONSUMERS] = {"asyncq_queue_consumers", "Consumer tasks asked for.",
                     "gauge"},
    [Q_BUSY] = {"asyncq_queue_busy", "Consumers running a job.", "gauge"},
    [Q_PAUSED] = {"asyncq_queue_paused", "1 if the queue is paused.", "gauge"},
    [Q_PUT] = {"asyncq_jobs_put_total", "Jobs put.", "counter"},
    [Q_DONE] = {"asyncq_jobs_done_total", "Jobs finished done.", "counter"},
    [Q_FAILED] = {"asyncq_jobs_failed_total", "Jobs finished failed.",
                  "counter"},
    [Q_CANCELLED] = {"asyncq_jobs_cancelled_total", "Jobs cancelled.",
                     "counter"},
    [Q_RETRIED] = {"asyncq_jobs_retried_total", "Failed attempts retried.",
                   "counter"},
    [Q_OLDEST_READY] = {"asyncq_queue_oldest_ready_age_seconds",
                        "How long the oldest ready job has waited for a "
                        "consumer (0: none ready).",
                        "gauge"},
    [Q_WORKERS] = {"asyncq_queue_workers",
                   "Remote workers with a get waiting or a job leased.",
                   "gauge"},
    [Q_LEASES] = {"asyncq_queue_leases", "Jobs leased to remote workers.",
                  "gauge"},
    [Q_THROTTLED] = {"asyncq_queue_throttled_seconds_total",
                     "Time a ready job waited only for a token of the "
                     "queue's rate limit.",
                     "counter"},
    [Q_WAITING] = {"asyncq_queue_waiting",
                   "Jobs waiting for their dependencies (put's after).",
                   "gauge"},
    [Q_PUTTERS] = {"asyncq_queue_producers_waiting",
                   "Puts waiting for room (maxsize), each holding its "
                   "producer connection back.",
                   "gauge"},
};

/* Queue names are [A-Za-z0-9_.-]: nothing to escape in a label value. */
static void
family_head(struct evbuffer *out, const char *name, const char *help,
            const char *type)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

static void
histogram(struct evbuffer *out, const char *name, const char *labels,
          const struct aq_hist *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";

    for (size_t i = 0; i < NBOUNDS; i++)
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name,
                            labels, sep, bounds_s[i],
                            (unsigned long long)aq_hist_count_le(
                                h, (int64_t)(bounds_s[i] * 1e6)));
    evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
                        sep, (unsigned long long)h->count);
    if (labels[0] != '\0')
        evbuffer_add_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name,
                            labels, (double)h->sum_us / 1e6, name, labels,
                            (unsigned long long)h->count);
    else
        evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %llu\n", name,
                            (double)h->sum_us / 1e6, name,
                            (unsigned long long)h->count);
}

/* One pass per family over the queues: the format wants a family's
 * samples together. */
struct pass {
    struct evbuffer *out;
    int family; /* Q_*, or -1 / -2 for the wait / run histograms, -3 for
                   failures by reason */
};

static void
queue_sample(const struct aq_queue_stats *s, void *arg)
{
    struct pass *p = arg;
    char labels[128];
    double v = 0;

    snprintf(labels, sizeof labels, "queue=\"%s\"", s->name);
    switch (p->family) {
    case -1:
        histogram(p->out, "asyncq_job_wait_seconds", labels, s->wait);
        return;
    case -2:
        histogram(p->out, "asyncq_job_run_seconds", labels, s->run);
        return;
    case -3:
        /* Only the reasons seen: a series appears at its first failure. */
        for (size_t i = 0; i < AQ_FAIL_REASONS; i++) {
            if (s->failures[i] != 0)
                evbuffer_add_printf(
                    p->out,
                    "asyncq_job_failures_total{%s,reason=\"%s\"} %llu\n",
                    labels, aq_fail_reasons[i],
                    (unsigned long long)s->failures[i]);
        }
        return;
    case Q_OLDEST_READY:
        evbuffer_add_printf(p->out, "%s{%s} %.3f\n",
                            queue_families[p->family].name, labels,
                            s->oldest_ready_s);
        return;
    case Q_THROTTLED:
        evbuffer_add_printf(p->out, "%s{%s} %.3f\n",
                            queue_families[p->family].name, labels,
                            s->throttled_s);
        return;
    case Q_PUTTERS:
        v = (double)s->putters;
        break;
    case Q_WORKERS:
        v = s->workers;
        break;
    case Q_LEASES:
        v = s->leases;
        break;
    case Q_SIZE:
        v = (double)s->size;
        break;
    case Q_DELAYED:
        v = (double)s->delayed;
        break;
    case Q_WAITING:
        v = (double)s->waiting;
        break;
    case Q_RUNNING:
        v = s->running;
        break;
    case Q_UNFINISHED:
        v = (double)s->unfinished;
        break;
    case Q_MAXSIZE:
        v = (double)s->maxsize;
        break;
    case Q_CONSUMERS:
        v = s->consumers;
        break;
    case Q_BUSY:
        v = s->running;
        break;
    case Q_PAUSED:
        v = s->paused;
        break;
    case Q_PUT:
        v = (double)s->put;
        break;
    case Q_DONE:
        v = (double)s->done;
        break;
    case Q_FAILED:
        v = (double)s->failed;
        break;
    case Q_CANCELLED:
        v = (double)s->cancelled;
        break;
    case Q_RETRIED:
        v = (double)s->retried;
        break;
    }
    evbuffer_add_printf(p->out, "%s{%s} %.0f\n", queue_families[p->family].name,
                        labels, v);
}

/* The process_* families as Prometheus' client libraries name them, so
 * dashboards made for any exporter work. */
static void
render_process(struct evbuffer *out)
{
    struct aq_pstat_self ps;

    if (aq_pstat_self(&ps) < 0)
        return;
    const struct {
        const char *name, *help, *type;
        double v;
    } fams[] = {
        {"process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds.", "counter",
         ps.cpu_s},
        {"process_open_fds", "Number of open file descriptors.", "gauge",
         (double)ps.open_fds},
        {"process_max_fds", "Maximum number of open file descriptors.", "gauge",
         (double)ps.max_fds},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.",
         "gauge", (double)ps.vsize_bytes},
        {"process_resident_memory_bytes", "Resident memory size in bytes.",
         "gauge", (double)ps.rss_bytes},
        {"process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", "gauge",
         ps.start_s},
    };

    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        family_head(out, fams[i].name, fams[i].help, fams[i].type);
        evbuffer_add_printf(out, "%s %.15g\n", fams[i].name, fams[i].v);
    }
}

static void
render_queues(struct aq_metrics *m, struct evbuffer *out)
{
    struct pass p = {out, 0};

    for (p.family = 0; p.family < Q_COUNT; p.family++) {
        const struct gauge *g = &queue_families[p.family];

        family_head(out, g->name, g->help, g->type);
        aq_broker_each_queue(m->broker, NULL, queue_sample, &p, NULL);
    }
    family_head(out, "asyncq_job_wait_seconds",
                "From put to the first start of each job.", "histogram");
    p.family = -1;
    aq_broker_each_queue(m->broker, NULL, queue_sample, &p, NULL);
    family_head(out, "asyncq_job_run_seconds",
                "From start to end of each attempt that finished a job.",
                "histogram");
    p.family = -2;
    aq_broker_each_queue(m->broker, NULL, queue_sample, &p, NULL);
    family_head(out, "asyncq_job_failures_total",
                "Failed attempts (retried or final) by the error code that "
                "ended them.",
                "counter");
    p.family = -3;
    aq_broker_each_queue(m->broker, NULL, queue_sample, &p, NULL);
}

/* Per schedule (names are [A-Za-z0-9_.-]: nothing to escape). Past
 * SCHEDULE_SERIES_MAX schedules the families are left out: two series
 * per schedule would swamp a Prometheus (the schedules method has the
 * counts). */
#define SCHEDULE_SERIES_MAX 1000

struct sched_pass {
    struct evbuffer *out;
    bool is_skipped;
    size_t n;
};

static void
schedule_count(const struct aq_schedule_stats *s, void *arg)
{
    ((struct sched_pass *)arg)->n++;
}

static void
schedule_sample(const struct aq_schedule_stats *s, void *arg)
{
    struct sched_pass *p = arg;

    evbuffer_add_printf(
        p->out, "%s{schedule=\"%s\"} %llu\n",
        p->is_skipped ? "asyncq_schedule_skipped_total"
                      : "asyncq_schedule_fires_total",
        s->name, (unsigned long long)(p->is_skipped ? s->skipped : s->fired));
}

static void
render_schedules(struct aq_metrics *m, struct evbuffer *out)
{
    struct sched_pass p = {out, false, 0};

    aq_broker_each_schedule(m->broker, schedule_count, &p);
    if (p.n == 0 || p.n > SCHEDULE_SERIES_MAX)
        return;
    family_head(out, "asyncq_schedule_fires_total",
                "Jobs each schedule put since start.", "counter");
    aq_broker_each_schedule(m->broker, schedule_sample, &p);
    family_head(out, "asyncq_schedule_skipped_total",
                "Times each schedule did not put a job since start (overlap "
                "skip, catch_up none, or a put refused).",
                "counter");
    p.is_skipped = true;
    aq_broker_each_schedule(m->broker, schedule_sample, &p);
}

/* No asyncq_up: Prometheus' own "up" says whether a scrape got through. */
static void
render(struct aq_metrics *m, struct evbuffer *out)
{
    family_head(out, "asyncq_build_info",
                "Always 1; the version asyncqd was built as.", "gauge");
    evbuffer_add_printf(out, "asyncq_build_info{version=\"%s\"} 1\n",
                        ASYNCQ_VERSION);
    family_head(out, "asyncq_uptime_seconds", "Seconds since start.", "gauge");
    evbuffer_add_printf(out, "asyncq_uptime_seconds %.3f\n",
                        (double)(aq_clock_mono_us() - m->started_us) / 1e6);
    if (m->server != NULL) {
        family_head(out, "asyncq_connections", "Open producer connections.",
                    "gauge");
        evbuffer_add_printf(out, "asyncq_connections %zu\n",
                            aq_server_connections(m->server));
    }
    if (m->broker != NULL) {
        render_queues(m, out);
        render_schedules(m, out);
    }
    render_process(out);
    if (m->store != NULL && m->store->ops->counters != NULL) {
        struct aq_store_counters c;

        m->store->ops->counters(m->store, &c);
        family_head(out, "asyncq_store_connected",
                    "1 while the store's database is connected and usable.",
                    "gauge");
        evbuffer_add_printf(out, "asyncq_store_connected %d\n",
                            c.connected ? 1 : 0);
        family_head(out, "asyncq_store_commits_total",
                    "Transactions the store committed.", "counter");
        evbuffer_add_printf(out, "asyncq_store_commits_total %llu\n",
                            (unsigned long long)c.commits);
        family_head(out, "asyncq_store_reconnects_total",
                    "Connections to the store's database made again.",
                    "counter");
        evbuffer_add_printf(out, "asyncq_store_reconnects_total %llu\n",
                            (unsigned long long)c.reconnects);
        family_head(out, "asyncq_store_backlog",
                    "Row writes waiting for their commit (a row's later "
                    "write replaces one not sent yet).",
                    "gauge");
        evbuffer_add_printf(out, "asyncq_store_backlog %llu\n",
                            (unsigned long long)c.backlog);
        family_head(out, "asyncq_store_claims_total",
                    "Jobs this node claimed from the pool of jobs shared "
                    "with other nodes.",
                    "counter");
        evbuffer_add_printf(out, "asyncq_store_claims_total %llu\n",
                            (unsigned long long)c.claims);
        family_head(out, "asyncq_store_released_total",
                    "Jobs given back to the pool: held ones at a clean stop, "
                    "and those of lost nodes this node swept.",
                    "counter");
        evbuffer_add_printf(out, "asyncq_store_released_total %llu\n",
                            (unsigned long long)c.released);
    }
    if (m->journal != NULL) {
        struct aq_hist fsync;

        family_head(out, "asyncq_journal_bytes", "Bytes in journal segments.",
                    "gauge");
        evbuffer_add_printf(out, "asyncq_journal_bytes %llu\n",
                            (unsigned long long)aq_journal_bytes(m->journal));
        family_head(out, "asyncq_journal_segments", "Journal segment files.",
                    "gauge");
        evbuffer_add_printf(out, "asyncq_journal_segments %zu\n",
                            aq_journal_segments(m->journal));
        family_head(out, "asyncq_journal_fsync_seconds",
                    "Duration of each journal fdatasync.", "histogram");
        aq_journal_fsync_hist(m->journal, &fsync);
        histogram(out, "asyncq_journal_fsync_seconds", "", &fsync);
    }
}

static void
metrics_cb(struct evhttp_request *req, void *arg)
{
    struct aq_metrics *m = arg;
    struct evbuffer *out;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    out = evbuffer_new();
    render(m, out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void
healthz_cb(struct evhttp_request *req, void *arg)
{
    struct aq_metrics *m = arg;
    static const char *const words[] = {"starting\n", "ok\n", "stopping\n"};
    struct evbuffer *out;
    bool ok = m->health == AQ_HEALTH_READY;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    out = evbuffer_new();
    evbuffer_add(out, words[m->health], strlen(words[m->health]));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable",
                      out);
    evbuffer_free(out);
}

/* ---- POST /rpc ---- */

#define RPC_DEFAULT_TIMEOUT_S 30.0

static void
peer_of(struct evhttp_request *req, char *buf, size_t size)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;

    if (evcon == NULL) {
        snprintf(buf, size, "?");
        return;
    }
    evhttp_connection_get_peer(evcon, &host, &port);
    snprintf(buf, size, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u",
             host != NULL ? host : "?", (unsigned)port);
}

/* An HTTP-level refusal: one log line naming the client, a JSON body. */
static void
rpc_refuse(struct evhttp_request *req, int code, const char *reason,
           const char *why)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    char peer[64];

    peer_of(req, peer, sizeof peer);
    aq_log_conn(AQ_LOG_INFO, 0, peer, "metrics: POST /rpc from %s: %d %s", peer,
                code, why);
    if (code == 401)
        evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"asyncq\"");
    if (code == 405)
        evhttp_add_header(h, "Allow", "POST");
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evbuffer_add_printf(out, "{\"error\":\"%s\"}\n", reason);
    evhttp_send_reply(req, code, NULL, out);
    evbuffer_free(out);
}

/* Authorization: Bearer TOKEN, the configured one. */
static bool
rpc_authorized(struct aq_metrics *m, struct evhttp_request *req)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req),
                                       "Authorization");

    if (m->token == NULL)
        return true;
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
        return false;
    v += 7;
    while (*v == ' ')
        v++;
    return aq_secret_equal(v, strlen(v), m->token);
}

static bool
is_json_type(const char *ct)
{
    static const char json[] = "application/json";

    return ct != NULL && strncasecmp(ct, json, sizeof json - 1) == 0 &&
           (ct[sizeof json - 1] == '\0' || ct[sizeof json - 1] == ';' ||
            ct[sizeof json - 1] == ' ');
}

/* The exchange's replies as the HTTP reply. */
static void
rpc_send(struct evhttp_request *req, struct evbuffer *out, bool unauthorized)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (unauthorized) {
        rpc_refuse(req, 401, "unauthorized", "no valid bearer token");
        return;
    }
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evbuffer_get_length(out) == 0) {
        evhttp_send_reply(req, 204, "No Content", NULL);
        return;
    }
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
}

static void
rpc_wait_free(struct rpc_wait *w)
{
    LIST_REMOVE(w, link);
    event_free(w->watch);
    evbuffer_free(w->out);
    free(w);
}

static void
rpc_done_cb(void *arg, struct evbuffer *out, bool unauthorized)
{
    struct rpc_wait *w = arg;

    rpc_send(w->req, out, unauthorized);
    w->x = NULL; /* freed after this returns */
    rpc_wait_free(w);
}

/* The client's socket is readable while its request waits: it closed
 * (the calls are abandoned, the connection freed), or it sent more
 * (pipelining: no more watching; its close is seen when the reply is
 * written). */
static void
rpc_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_wait *w = arg;
    struct evhttp_connection *evcon = w->evcon;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        if (n < 0)
            event_add(w->watch, NULL);
        return;
    }
    aq_log_conn(AQ_LOG_INFO, 0, w->peer,
                "metrics: POST /rpc from %s: client gone before its reply",
                w->peer);
    aq_exchange_cancel(w->x);
    rpc_wait_free(w);
    evhttp_connection_free(evcon); /* and the request: conn_close_cb runs */
}

static void
rpc_cb(struct evhttp_request *req, void *arg)
{
    struct aq_metrics *m = arg;
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(body);
    const struct aq_exchange_opts opts = {
        .peer = "http",
        .authenticated = rpc_authorized(m, req),
        .read_only = m->is_read_only,
        .default_timeout = RPC_DEFAULT_TIMEOUT_S,
    };
    struct aq_exchange_opts o = opts;
    struct evhttp_connection *evcon;
    struct aq_exchange *x;
    struct rpc_wait *w;
    bool unauthorized = false;

    if (m->server == NULL) {
        evhttp_send_error(req, 404, "Not Found");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        rpc_refuse(req, 405, "method not allowed", "not a POST");
        return;
    }
    if (!is_json_type(evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "Content-Type"))) {
        rpc_refuse(req, 415, "unsupported media type",
                   "Content-Type is not application/json");
        return;
    }
    if (n > m->limits.max_body_bytes) {
        rpc_refuse(req, 413, "payload too large",
                   "body over producers.max_request_bytes");
        return;
    }
    w = xcalloc(1, sizeof *w);
    peer_of(req, w->peer, sizeof w->peer);
    o.peer = w->peer;
    w->out = evbuffer_new();
    x = aq_server_exchange(m->server, (const char *)evbuffer_pullup(body, -1),
                           n, &o, w->out, rpc_done_cb, w, &unauthorized);
    if (x == NULL) {
        rpc_send(req, w->out, unauthorized);
        evbuffer_free(w->out);
        free(w);
        return;
    }
    /* Not ready: the request waits for done; the client may go. */
    evcon = evhttp_request_get_connection(req);
    w->m = m;
    w->req = req;
    w->evcon = evcon;
    w->x = x;
    w->watch = event_new(
        m->base, bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)),
        EV_READ, rpc_watch_cb, w);
    event_add(w->watch, NULL);
    LIST_INSERT_HEAD(&m->waits, w, link);
}

static void
other_cb(struct evhttp_request *req, void *arg)
{
    if (aq_ui_serve(req))
        return;
    evhttp_send_error(req, 404, "Not Found: try /metrics or /healthz");
}

static void
conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct conn *c = arg;
    struct rpc_wait *w, *next;

    /* A request still waiting goes with its connection (evhttp frees it). */
    for (w = LIST_FIRST(&c->m->waits); w != NULL; w = next) {
        next = LIST_NEXT(w, link);
        if (w->evcon == evcon) {
            aq_exchange_cancel(w->x);
            rpc_wait_free(w);
        }
    }
    TAILQ_REMOVE(&c->m->open, c, entry);
    c->m->nopen--;
    c->m->is_full_logged = false;
    free(c);
}

/* Counts the connections accepted since the last pass, or closes those
 * beyond the cap without reading a byte: a slot frees only when an open
 * connection ends (its request served, or its idle timeout). */
static void
adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_metrics *m = arg;
    struct conn *c;

    while ((c = TAILQ_FIRST(&m->fresh)) != NULL) {
        struct bufferevent *bev = c->bev;
        bufferevent_data_cb readcb;
        void *evcon;

        TAILQ_REMOVE(&m->fresh, c, entry);
        c->bev = NULL;
        /* bufferevent_free clears the callbacks: NULL means evhttp is
         * done with it already. */
        bufferevent_getcb(bev, &readcb, NULL, NULL, &evcon);
        if (readcb == NULL)
            free(c);
        else if (m->nopen >= m->limits.max_connections) {
            if (!m->is_full_logged)
                aq_log(AQ_LOG_WARN,
                       "metrics: connection refused: %zu open, the most",
                       m->nopen);
            m->is_full_logged = true;
            evhttp_connection_free(evcon);
            free(c);
        } else {
            c->evcon = evcon;
            evhttp_connection_set_closecb(evcon, conn_close_cb, c);
            TAILQ_INSERT_TAIL(&m->open, c, entry);
            m->nopen++;
        }
        bufferevent_decref(bev);
    }
}

/* evhttp's hook for a new connection's bufferevent, called while it
 * accepts; the bufferevent is the one evhttp makes itself (it closes the
 * socket), plus a reference and a note for adopt_cb. */
static struct bufferevent *
new_bev_cb(struct event_base *base, void *arg)
{
    struct aq_metrics *m = arg;
    struct conn *c = xcalloc(1, sizeof *c);

    c->m = m;
    c->bev = bufferevent_socket_new(base, -1, 0);
    bufferevent_incref(c->bev);
    TAILQ_INSERT_TAIL(&m->fresh, c, entry);
    event_active(m->adopt_ev, EV_TIMEOUT, 1);
    return c->bev;
}

void
aq_metrics_set_limits(struct aq_metrics *m,
                      const struct aq_metrics_limits *limits)
{
    struct timeval tv = {.tv_sec = limits->idle_timeout_ms / 1000,
                         .tv_usec = limits->idle_timeout_ms % 1000 * 1000};

    m->limits = *limits;
    evhttp_set_max_headers_size(m->http, (ev_ssize_t)limits->max_header_bytes);
    evhttp_set_max_body_size(m->http, (ev_ssize_t)limits->max_body_bytes);
    evhttp_set_timeout_tv(m->http, &tv);
}

int
aq_metrics_port(const struct aq_metrics *m)
{
    return m->port;
}

struct aq_metrics *
aq_metrics_new(struct event_base *base, const char *addr,
               struct aq_broker *broker, struct aq_server *server,
               struct aq_journal *journal, struct aq_error *err)
{
    struct aq_metrics *m;
    struct evhttp_bound_socket *bound;
    const char *colon = strrchr(addr, ':');
    char host[256];
    size_t hlen;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char shown[NI_MAXHOST], port[NI_MAXSERV];
    const struct aq_metrics_limits limits = {
        .max_header_bytes = AQ_METRICS_MAX_HEADER_BYTES,
        .max_body_bytes = AQ_METRICS_MAX_BODY_BYTES,
        .idle_timeout_ms = AQ_METRICS_IDLE_TIMEOUT_MS,
        .max_connections = AQ_METRICS_MAX_CONNECTIONS,
    };

    if (colon == NULL || (hlen = (size_t)(colon - addr)) >= sizeof host) {
        aq_error_set(err, AQ_ERR_INTERNAL, "metrics: %s: expected HOST:PORT",
                     addr);
        return NULL;
    }
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)hlen - 2, addr + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)hlen, addr);
    m = xcalloc(1, sizeof *m);
    m->broker = broker;
    m->server = server;
    m->journal = journal;
    m->started_us = aq_clock_mono_us();
    TAILQ_INIT(&m->fresh);
    TAILQ_INIT(&m->open);
    m->adopt_ev = event_new(base, -1, 0, adopt_cb, m);
    m->base = base;
    m->is_read_only = true; /* until aq_metrics_set_rpc */
    LIST_INIT(&m->waits);
    m->http = evhttp_new(base);
    aq_metrics_set_limits(m, &limits);
    evhttp_set_bevcb(m->http, new_bev_cb, m);
    /* Every method reaches the callbacks, which refuse with 405. */
    evhttp_set_allowed_methods(
        m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_PATCH);
    evhttp_set_cb(m->http, "/metrics", metrics_cb, m);
    evhttp_set_cb(m->http, "/healthz", healthz_cb, m);
    evhttp_set_cb(m->http, "/rpc", rpc_cb, m);
    evhttp_set_gencb(m->http, other_cb, m);
    bound = evhttp_bind_socket_with_handle(m->http, host,
                                           (ev_uint16_t)atoi(colon + 1));
    if (bound == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "metrics: listen %s: cannot bind",
                     addr);
        aq_metrics_free(m);
        return NULL;
    }
    memset(&ss, 0, sizeof ss);
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl);
    if (getnameinfo((struct sockaddr *)&ss, sl, shown, sizeof shown, port,
                    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        bool v6 = ss.ss_family == AF_INET6;

        m->port = atoi(port);
        aq_log(AQ_LOG_INFO, "metrics on http://%s%s%s:%s/metrics",
               v6 ? "[" : "", shown, v6 ? "]" : "", port);
    }
    return m;
}

static bool
is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)ss)->sin6_addr;

        return IN6_IS_ADDR_LOOPBACK(a) ||
               (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

void
aq_metrics_set_store(struct aq_metrics *m, struct aq_store *store)
{
    m->store = store;
}

void
aq_metrics_set_rpc(struct aq_metrics *m, const char *token,
                   size_t max_request_bytes)
{
    struct aq_metrics_limits limits = m->limits;
    struct sockaddr_storage ss;

    limits.max_body_bytes = max_request_bytes;
    aq_metrics_set_limits(m, &limits);
    if (m->is_rpc_set)
        return; /* the token and the address change at restart */
    m->is_rpc_set = true;
    m->token = token != NULL ? xstrdup(token) : NULL;
    m->is_read_only =
        token == NULL && !(aq_metrics_address(m, &ss) && is_loopback(&ss));
    if (m->is_read_only)
        aq_log(AQ_LOG_WARN,
               "metrics: listening beyond loopback without auth: /rpc and "
               "the dashboard are read-only (set auth.token_file, or listen "
               "on 127.0.0.1)");
}

void
aq_metrics_set_health(struct aq_metrics *m, enum aq_health h)
{
    m->health = h;
}

void
aq_metrics_free(struct aq_metrics *m)
{
    struct conn *c;

    if (m == NULL)
        return;
    /* Frees every connection: the open ones leave through conn_close_cb,
     * their waiting /rpc requests with them. */
    if (m->http != NULL)
        evhttp_free(m->http);
    while ((c = TAILQ_FIRST(&m->fresh)) != NULL) {
        TAILQ_REMOVE(&m->fresh, c, entry);
        bufferevent_decref(c->bev);
        free(c);
    }
    event_free(m->adopt_ev);
    free(m->token);
    free(m);
}

static void
bound_addr_cb(struct evhttp_bound_socket *bound, void *arg)
{
    struct sockaddr_storage *out = arg;
    socklen_t sl = sizeof *out;

    if (out->ss_family == 0 && getsockname(evhttp_bound_socket_get_fd(bound),
                                           (struct sockaddr *)out, &sl) != 0)
        memset(out, 0, sizeof *out);
}

bool
aq_metrics_address(struct aq_metrics *m, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    evhttp_foreach_bound_socket(m->http, bound_addr_cb, out);
    return out->ss_family != 0;
}
