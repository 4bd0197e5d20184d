/* SPDX-License-Identifier: MIT */
/*
 * lib/rpc.h: JSON-RPC 2.0 requests read from validated JSON text (see
 * lib/jscan.h) on the general path. What must stay exact is never parsed:
 * the id is a span of the raw text, sent back byte for byte, and put's args
 * stay JSON text (compacted), so numbers of any size and \u0000 survive.
 * Everything else of params is parsed by jansson, member by member, so an
 * error names its field and the request's id is still known. Pure: no I/O.
 */
#ifndef AQ_RPC_H
#define AQ_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "jscan.h"

struct aq_error;

#define AQ_RPC_METHOD_MAX 64

struct aq_rpc_request {
    struct aq_jspan id;   /* the raw id; p NULL = none (or unusable) */
    bool is_notification; /* no id, and a method: never answered */
    bool has_method;      /* "method" is a string ... */
    char method[AQ_RPC_METHOD_MAX];       /* ... this one, unescaped; "" when it
                                             does not fit or holds U+0000 (no
                                             method has such a name) */
    char method_shown[AQ_RPC_METHOD_MAX]; /* for messages */
    struct aq_jspan params;               /* raw; p NULL = none */
};

/* Reads the request v (a validated JSON value). Returns 0, or -1 with err
 * (-32600), r->id and r->is_notification still telling how to answer. */
int aq_rpc_request(struct aq_jspan v, struct aq_rpc_request *r,
                   struct aq_error *err);

/* params (a span; p NULL = none) as a new object, the caller's. With
 * args_raw not NULL, an object member "args" is kept as compact JSON text
 * instead: *args_raw gets a new string (the caller's; NULL when there is
 * none) of *args_len bytes, and the object has no "args". Returns NULL with
 * err (-32602 naming the field) when params is not an object, a member
 * repeats, or jansson cannot represent a member's value (an integer
 * beyond 64 bits, a real beyond double, U+0000 in a member name). */
json_t *aq_rpc_params(struct aq_jspan params, char **args_raw, size_t *args_len,
                      struct aq_error *err);

#endif
