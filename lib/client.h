/* SPDX-License-Identifier: MIT */
/*
 * lib/client.h: a small blocking client for asyncqd, for the asyncq CLI and
 * other C programs. One connection; requests are JSON-RPC lines with ids
 * the client assigns; replies are matched by id, so requests can be
 * pipelined (aq_client_send, then aq_client_recv). Every wait is bounded by
 * the client's timeout. Not for use from an event loop: it blocks.
 */
#ifndef AQ_CLIENT_H
#define AQ_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct aq_error;
struct aq_client;

/* Connects to server: "tcp://HOST:PORT", "HOST:PORT", "unix:/path",
 * "tls://HOST:PORT" or NULL for $ASYNCQ_SERVER, else tcp://127.0.0.1:7878.
 * timeout_ms bounds each wait (< 0: none), the TLS handshake included.
 * tls:// takes the TLS options from $ASYNCQ_CA, $ASYNCQ_CERT and
 * $ASYNCQ_KEY (as aq_client_connect_tls with NULL). Returns the client
 * (free with aq_client_free) or NULL with err (code AQ_ERR_TRANSPORT,
 * message naming the server). */
struct aq_client *aq_client_connect(const char *server, int timeout_ms,
                                    struct aq_error *err);

/* ---- TLS ---- */

/* How a tls:// server is reached. A NULL field takes its environment
 * variable when set: ca_file $ASYNCQ_CA (else the system's CAs; PEM, the
 * CAs the server's certificate must be signed by), cert_file $ASYNCQ_CERT
 * and key_file $ASYNCQ_KEY (PEM client certificate and its key, for a
 * server asking for one: mutual TLS; key_file defaults to cert_file). The
 * server's certificate must name the host of the URL (DNS name or IP). */
struct aq_client_tls {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
};

/* aq_client_connect with tls options (NULL = all from the environment);
 * ignored for a server that is not tls://. A TLS failure (untrusted
 * certificate, wrong host name, refused client certificate) fails the
 * connect with err saying so. Without TLS in the build, tls:// fails. */
struct aq_client *aq_client_connect_tls(const char *server, int timeout_ms,
                                        const struct aq_client_tls *tls,
                                        struct aq_error *err);

/* ---- end of TLS ---- */
void aq_client_free(struct aq_client *c);                /* NULL is fine */
const char *aq_client_server(const struct aq_client *c); /* borrowed */
void aq_client_set_timeout(struct aq_client *c, int timeout_ms);

/* Sends one request (params reference taken; NULL = none); returns its id,
 * or -1 with err if the connection failed. */
int64_t aq_client_send(struct aq_client *c, const char *method, json_t *params,
                       struct aq_error *err);

/* The next message from the server: a reply (with *id set) or a
 * notification (*id = -1, *method set, borrowed until the next call).
 * Returns it (a new reference), or NULL with err on timeout or when the
 * connection closed. */
json_t *aq_client_recv(struct aq_client *c, int64_t *id, const char **method,
                       struct aq_error *err);

/* Whether the last aq_client_recv failed only because no whole message
 * came within the timeout: the connection is still usable, and what was
 * received so far is kept for the next recv. */
bool aq_client_timed_out(const struct aq_client *c);

/* send + wait for that reply, handing notifications that arrive first to
 * on_note (may be NULL: dropped). Returns the result (a new reference), or
 * NULL with err: the server's error (its code and message) or a transport
 * error (AQ_ERR_INTERNAL). */
json_t *aq_client_call(struct aq_client *c, const char *method, json_t *params,
                       void (*on_note)(const char *method, json_t *params,
                                       void *arg),
                       void *arg, struct aq_error *err);

/* Sends auth with the token: the first line of token_file if given, else
 * $ASYNCQ_TOKEN if set, else nothing to send. 0 or -1 with err. */
int aq_client_auth(struct aq_client *c, const char *token_file,
                   struct aq_error *err);

/* Whether err came from the server (a JSON-RPC error code) rather than
 * from the connection (AQ_ERR_TRANSPORT). */
bool aq_client_is_server_error(const struct aq_error *err);

#endif
