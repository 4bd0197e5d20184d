/* SPDX-License-Identifier: MIT */
/*
 * lib/error.h: the error a lib/ call reports to its caller. The code is the
 * JSON-RPC error code the daemon replies with; the message follows the
 * "what: object: why" form and names the offending field.
 */
#ifndef AQ_ERROR_H
#define AQ_ERROR_H

enum {
    AQ_ERR_PARSE = -32700,           /* the line is not JSON */
    AQ_ERR_INVALID_REQUEST = -32600, /* not a JSON-RPC request object */
    AQ_ERR_NO_METHOD = -32601,       /* method not found */
    AQ_ERR_INVALID_PARAMS = -32602,  /* a param is missing or wrong */
    AQ_ERR_INTERNAL = -32603,        /* a bug or a state that cannot be */
    AQ_ERR_QUEUE_FULL = -32000,      /* put with nowait on a full queue */
    AQ_ERR_UNAUTHORIZED = -32001,
    AQ_ERR_NO_QUEUE = -32002,
    AQ_ERR_NO_JOB = -32004,
    AQ_ERR_NOT_ALLOWED = -32005,
    AQ_ERR_TIMEOUT = -32008,
    AQ_ERR_FINISHED = -32009, /* the job already finished */
    AQ_ERR_SHUTTING_DOWN = -32010,
    AQ_ERR_TOO_MANY_CONNECTIONS = -32011,
    AQ_ERR_NOT_FINISHED = -32012,   /* retry/delete of a live job */
    AQ_ERR_NOT_YOUR_LEASE = -32014, /* task_done/touch/release: not held */
    AQ_ERR_TRANSPORT = 1, /* client side: no connection, timeout, closed */
};

struct aq_error {
    int code;          /* one of AQ_ERR_*; 0 = no error */
    char message[256]; /* NUL-terminated, truncated if longer */
};

/* Fills err (if not NULL) with code and a printf-formatted message. */
void aq_error_set(struct aq_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
