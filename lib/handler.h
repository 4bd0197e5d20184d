/* SPDX-License-Identifier: MIT */
/*
 * lib/handler.h: job kinds (spec section 3). A handler checks a job's args
 * when it is put, and runs one attempt of it when a consumer takes it. A run
 * never blocks the loop; it ends by calling its callback exactly once, and
 * frees itself right after. echo ends inside start; the others from the loop.
 */
#ifndef AQ_HANDLER_H
#define AQ_HANDLER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "job.h"

struct event_base;
struct aq_error;
struct aq_procs;
struct aq_queue_config;
struct aq_http;
struct sockaddr_storage;

/* How an attempt ended. result (compact JSON text) and the error strings are
 * handed to the callback, which takes them (free them or keep them). */
struct aq_outcome {
    bool ok;        /* the attempt succeeded */
    char *result;   /* NULL = no result */
    char *err_code; /* when !ok: "exit", "signal", "spawn", "cancelled" ... */
    char *err_message;
    char *err_traceback;    /* when !ok: NULL, or a remote worker's */
    bool is_final;          /* when !ok: a retry would fail the same way (http
                               "forbidden"): no retry, whatever retries says */
    bool has_retry_after;   /* when !ok: the server said when to retry (http
                               429 or 503 with Retry-After) */
    int64_t retry_after_us; /* then: from now, in [0, AQ_DURATION_MAX_US]; a
                               retry waits that instead of the backoff */
};

typedef void aq_run_done_cb(void *arg, struct aq_outcome *out);

struct aq_run_env {
    struct event_base *base;
    struct aq_procs *procs; /* for exec */
    struct aq_http *http;   /* for http: the queue's connection pool */
    const struct aq_queue_config *qc;
    /* for http: the daemon's listening addresses, never a target */
    const struct sockaddr_storage *own_addrs;
    size_t nown_addrs;
};

struct aq_handler {
    enum aq_kind kind;
    bool needs_args; /* check reads args (else it is skipped: echo) */
    /* At put: 0, or -1 with err (-32602 bad args naming the field as
     * "params.args.argv", -32005 not allowed). args is an object. */
    int (*check)(const struct aq_queue_config *qc, const json_t *args,
                 struct aq_error *err);
    /* Starts an attempt of j (borrowed until cb). Returns the run, or NULL
     * if it already ended (cb was called before start returned). */
    void *(*start)(const struct aq_run_env *env, const struct aq_job *j,
                   aq_run_done_cb *cb, void *arg);
    /* Interrupts a run that has not ended: cb fires soon (or now), usually
     * with err_code "cancelled". */
    void (*cancel)(void *run);
    /* Releases a run that has not ended without calling back (the broker
     * is being freed): its process, if any, is killed. */
    void (*abandon)(void *run);
};

/* The handler of a kind, or NULL when not built in. */
const struct aq_handler *aq_handler_find(enum aq_kind kind);

/* Helpers for handlers: an outcome with a copy of the strings given. */
void aq_outcome_fail(struct aq_outcome *out, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
/* Encodes v (reference taken) as compact JSON text into out->result. */
void aq_outcome_set_result(struct aq_outcome *out, json_t *v);
/* A JSON string of len bytes of program output: invalid UTF-8 sequences
 * become U+FFFD, so any output can be returned. New reference. */
json_t *aq_json_string_lossy(const char *s, size_t len);
/* A job's args (JSON text, as stored) as jansson values for a handler: a
 * new reference, or NULL with err (-32602 naming params.args). U+0000 in
 * strings is kept, so a handler must refuse it where it cannot be used;
 * an integer beyond 64 bits becomes a real (the text stays exact). */
json_t *aq_args_parse(const char *text, size_t len, struct aq_error *err);

#endif
