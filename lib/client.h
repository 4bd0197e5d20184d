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

/*
 * The worker calls (SPEC section 10) and the installed library
 * (libasyncq-client, <asyncq/client.h>, pkg-config asyncq-client): a worker
 * takes jobs of remote queues with get, runs them and answers each with
 * task_done (or touch to renew its lease, release to give it back).
 * Results and errors as aq_client_call's: a new reference, or NULL with err
 * (the server's code, e.g. AQ_ERR_NOT_YOUR_LEASE, or AQ_ERR_TRANSPORT).
 * Notifications that arrive while a call waits (job.cancel) go to on_note
 * where a call takes one, else they are dropped: a cancelled job's later
 * task_done, touch or release fails with AQ_ERR_FINISHED.
 */
#include "error.h"

/* What on_note is given: a notification's method and params (borrowed). */
typedef void aq_client_note_fn(const char *method, json_t *params, void *arg);

/* Leases up to max (1..1000) jobs of the queues (n names, in order of
 * preference), waiting up to wait_s (0: answer at once) for one to be
 * ready. lease_s <= 0: the job's timeout. The client's own timeout does not
 * cut the wait short. Returns the array of jobs, [] when wait_s ran out:
 * {"job","queue","name"?,"args","attempts","lease_deadline"}. */
json_t *aq_client_get(struct aq_client *c, const char *const *queues, size_t n,
                      int max, double wait_s, double lease_s,
                      aq_client_note_fn *on_note, void *arg,
                      struct aq_error *err);

/* Finishes a leased job: with result (reference taken; NULL = null), or
 * failed with err_code (not NULL) and err_message; retry false = no further
 * attempt. Returns {"job","state"}. */
json_t *aq_client_task_done(struct aq_client *c, int64_t job, json_t *result,
                            const char *err_code, const char *err_message,
                            bool retry, struct aq_error *err);
/* The same as a notification: sent without waiting, never answered (a
 * worker pipelines these; a later call on c is answered after it). 0, or
 * -1 with err if the connection failed. */
int aq_client_task_done_nowait(struct aq_client *c, int64_t job, json_t *result,
                               const char *err_code, const char *err_message,
                               bool retry, struct aq_error *err);

/* Renews a lease from now, for lease_s (<= 0: the length it was granted
 * with). Returns {"job","lease_deadline"}. */
json_t *aq_client_touch(struct aq_client *c, int64_t job, double lease_s,
                        struct aq_error *err);
/* Gives a leased job back, not counted as an attempt, ready again after
 * delay_s (<= 0: at once). Returns {"job","state"}. */
json_t *aq_client_release(struct aq_client *c, int64_t job, double delay_s,
                          struct aq_error *err);

/* Sends a request without id (params reference taken; NULL = none): the
 * server runs it and never answers. 0, or -1 with err. */
int aq_client_notify(struct aq_client *c, const char *method, json_t *params,
                     struct aq_error *err);

#endif
