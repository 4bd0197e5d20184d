/* SPDX-License-Identifier: MIT */
/*
 * lib/metrics.h: the metrics listener (spec sections 5 and 13): an evhttp
 * server answering GET /metrics in the Prometheus text exposition format,
 * GET /healthz (200 when ready, 503 while starting or stopping) and POST
 * /rpc (JSON-RPC over HTTP, through the server given).
 */
#ifndef AQ_METRICS_H
#define AQ_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct aq_broker;
struct aq_error;
struct aq_journal;
struct aq_server;
struct aq_metrics;

enum aq_health { AQ_HEALTH_STARTING, AQ_HEALTH_READY, AQ_HEALTH_STOPPING };

/* What the listener grants its clients; docs/operations.md lists the
 * defaults aq_metrics_new starts with. */
struct aq_metrics_limits {
    size_t max_header_bytes; /* request line and headers; beyond: 413 */
    size_t max_body_bytes;   /* a request body; beyond: 413 */
    int idle_timeout_ms;     /* no byte read or written this long: closed */
    size_t max_connections;  /* open at once; beyond, closed unanswered */
};

#define AQ_METRICS_MAX_HEADER_BYTES 8192
#define AQ_METRICS_MAX_BODY_BYTES 8192
#define AQ_METRICS_IDLE_TIMEOUT_MS 10000
#define AQ_METRICS_MAX_CONNECTIONS 64

/* Listens on addr ("HOST:PORT", "[V6]:PORT"; port 0 picks one, logged).
 * broker, server and journal (NULL without one) are borrowed and must
 * outlive it. Returns it (free with aq_metrics_free) or NULL with err. */
struct aq_metrics *aq_metrics_new(struct event_base *base, const char *addr,
                                  struct aq_broker *broker,
                                  struct aq_server *server,
                                  struct aq_journal *journal,
                                  struct aq_error *err);
/* Serves POST /rpc (spec section 13) through the server's methods: with
 * token (copied; NULL: no auth) the Bearer token is required; bodies up to
 * max_request_bytes. Without a token, on an address that is not loopback,
 * state-changing methods are refused (logged as a warning now). Called
 * again (SIGHUP), only the size changes. Without it, /rpc is read-only. */
struct aq_store;
/* The store whose figures (asyncq_store_connected, _commits_total,
 * _reconnects_total) are shown, borrowed; none without (the journal has
 * its own). */
void aq_metrics_set_store(struct aq_metrics *m, struct aq_store *store);
void aq_metrics_set_rpc(struct aq_metrics *m, const char *token,
                        size_t max_request_bytes);
void aq_metrics_set_health(struct aq_metrics *m, enum aq_health h);
/* Replaces the limits (copied) for connections accepted from now on; the
 * connection cap counts the open ones too. */
void aq_metrics_set_limits(struct aq_metrics *m,
                           const struct aq_metrics_limits *limits);
/* The TCP port it listens on (the one picked, for port 0). */
int aq_metrics_port(const struct aq_metrics *m);
void aq_metrics_free(struct aq_metrics *m); /* NULL is fine */

struct sockaddr_storage;
/* The bound address of the listener (its real port) into out: true, or
 * false if it has none. */
bool aq_metrics_address(struct aq_metrics *m, struct sockaddr_storage *out);

#endif
