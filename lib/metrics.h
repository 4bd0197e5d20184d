/* SPDX-License-Identifier: MIT */
/*
 * lib/metrics.h: the metrics listener (spec section 5): an evhttp server
 * answering GET /metrics in the Prometheus text exposition format and GET
 * /healthz (200 when ready, 503 while starting or stopping).
 */
#ifndef AQ_METRICS_H
#define AQ_METRICS_H

#include <stdbool.h>

struct event_base;
struct aq_broker;
struct aq_error;
struct aq_journal;
struct aq_server;
struct aq_metrics;

enum aq_health { AQ_HEALTH_STARTING, AQ_HEALTH_READY, AQ_HEALTH_STOPPING };

/* Listens on addr ("HOST:PORT", "[V6]:PORT"; port 0 picks one, logged).
 * broker, server and journal (NULL without one) are borrowed and must
 * outlive it. Returns it (free with aq_metrics_free) or NULL with err. */
struct aq_metrics *aq_metrics_new(struct event_base *base, const char *addr,
                                  struct aq_broker *broker,
                                  struct aq_server *server,
                                  struct aq_journal *journal,
                                  struct aq_error *err);
void aq_metrics_set_health(struct aq_metrics *m, enum aq_health h);
void aq_metrics_free(struct aq_metrics *m); /* NULL is fine */

struct sockaddr_storage;
/* The bound address of the listener (its real port) into out: true, or
 * false if it has none. */
bool aq_metrics_address(struct aq_metrics *m, struct sockaddr_storage *out);

#endif
