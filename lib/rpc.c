/* SPDX-License-Identifier: MIT */
/*
 * lib/rpc.c: a request's envelope (jsonrpc, id, method, params) and its
 * params, read from validated text (see rpc.h).
 */
#include "rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "xmalloc.h"

/* A member name unescaped into buf, or false if it does not fit or holds
 * U+0000 (no name we know is like that). */
static bool
name_of(struct aq_jspan key, char *buf, size_t cap)
{
    size_t n;
    bool has_nul;

    return aq_jscan_unescape(key, buf, cap, &n, &has_nul) && !has_nul;
}

/* The name for a message: unescaped, or the raw text, cut to fit. */
static void
name_shown(struct aq_jspan key, char *buf, size_t cap)
{
    size_t n;
    bool has_nul;

    if (aq_jscan_unescape(key, buf, cap, &n, &has_nul) && !has_nul)
        return;
    snprintf(buf, cap, "%.*s", (int)(key.n - 2), key.p + 1);
}

static bool
is_valid_id(struct aq_jspan v)
{
    char c = v.p[0];

    return c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 'n';
}

int
aq_rpc_request(struct aq_jspan v, struct aq_rpc_request *r,
               struct aq_error *err)
{
    struct aq_jspan key, val, id = {0}, method = {0}, jsonrpc = {0};
    char name[16], bad[AQ_RPC_METHOD_MAX] = "";
    const char *bad_why = NULL;
    bool ids = false;
    size_t pos = 0;

    memset(r, 0, sizeof *r);
    while (pos < v.n && (v.p[pos] == ' ' || v.p[pos] == '\t' ||
                         v.p[pos] == '\n' || v.p[pos] == '\r'))
        pos++;
    if (pos >= v.n || v.p[pos] != '{') {
        aq_error_set(err, AQ_ERR_INVALID_REQUEST,
                     "invalid request: expected a JSON object");
        return -1;
    }
    aq_jscan_enter(v.p, v.n, &pos);
    while (aq_jscan_next(v.p, v.n, &pos, &key, &val)) {
        struct aq_jspan *slot = NULL;

        if (name_of(key, name, sizeof name)) {
            if (strcmp(name, "id") == 0)
                slot = &id;
            else if (strcmp(name, "method") == 0)
                slot = &method;
            else if (strcmp(name, "params") == 0)
                slot = &r->params;
            else if (strcmp(name, "jsonrpc") == 0)
                slot = &jsonrpc;
        }
        if (slot == &id && id.p != NULL)
            ids = true; /* which one to answer with is unknowable */
        if (bad_why == NULL && (slot == NULL || slot->p != NULL)) {
            name_shown(key, bad, sizeof bad);
            bad_why = slot == NULL ? "unknown member" : "duplicate member";
        }
        if (slot != NULL)
            *slot = val;
    }
    if (method.p != NULL && method.p[0] == '"') {
        r->has_method = true;
        name_shown(method, r->method_shown, sizeof r->method_shown);
        if (!name_of(method, r->method, sizeof r->method))
            r->method[0] = '\0';
    }
    if (id.p == NULL)
        r->is_notification = r->has_method;
    else if (!ids && is_valid_id(id))
        r->id = id;
    if (ids || (id.p != NULL && !is_valid_id(id))) {
        aq_error_set(err, AQ_ERR_INVALID_REQUEST,
                     ids ? "invalid request: id: duplicate member"
                         : "invalid request: id: expected string, number "
                           "or null");
        return -1;
    }
    if (bad_why != NULL) {
        aq_error_set(err, AQ_ERR_INVALID_REQUEST, "invalid request: %s: %s",
                     bad, bad_why);
        return -1;
    }
    if (jsonrpc.p != NULL &&
        (jsonrpc.p[0] != '"' || !name_of(jsonrpc, name, sizeof name) ||
         strcmp(name, "2.0") != 0)) {
        aq_error_set(err, AQ_ERR_INVALID_REQUEST,
                     "invalid request: jsonrpc: expected \"2.0\"");
        return -1;
    }
    if (!r->has_method) {
        aq_error_set(err, AQ_ERR_INVALID_REQUEST,
                     "invalid request: method: expected string");
        return -1;
    }
    return 0;
}

/* The value of member name (a validated span) parsed by jansson. */
static json_t *
member_value(const char *name, struct aq_jspan val, struct aq_error *err)
{
    json_error_t jerr;
    json_t *v = json_loadb(
        val.p, val.n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
        &jerr);

    if (v == NULL)
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "params.%.100s: %s", name,
                     jerr.text);
    return v;
}

/* args as compact text in a new string. */
static int
raw_args(struct aq_jspan val, char **out, size_t *len, struct aq_error *err)
{
    if (aq_jscan_has_nul_key(val)) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.args: a member name holds \\u0000, which "
                     "asyncq does not support");
        return -1;
    }
    *out = xmalloc(val.n + 1);
    *len = aq_jscan_compact(val, *out);
    (*out)[*len] = '\0';
    return 0;
}

json_t *
aq_rpc_params(struct aq_jspan params, char **args_raw, size_t *args_len,
              struct aq_error *err)
{
    struct aq_jspan key, val;
    char small[128], *name = small;
    size_t pos = 0, n;
    json_t *obj = json_object(), *v;
    bool has_nul;

    if (args_raw != NULL) {
        *args_raw = NULL;
        *args_len = 0;
    }
    if (params.p == NULL)
        return obj;
    if (params.p[0] != '{') {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params: expected object (named params)");
        goto fail;
    }
    aq_jscan_enter(params.p, params.n, &pos);
    while (aq_jscan_next(params.p, params.n, &pos, &key, &val)) {
        if (key.n > sizeof small && name == small)
            name = xmalloc(params.n);
        aq_jscan_unescape(key, name, name == small ? sizeof small : params.n,
                          &n, &has_nul);
        if (has_nul) {
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "params: a field name holds \\u0000");
            goto fail;
        }
        if (json_object_get(obj, name) != NULL ||
            (args_raw != NULL && *args_raw != NULL &&
             strcmp(name, "args") == 0)) {
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "params.%.100s: duplicate field", name);
            goto fail;
        }
        if (args_raw != NULL && strcmp(name, "args") == 0 && val.p[0] == '{') {
            if (raw_args(val, args_raw, args_len, err) < 0)
                goto fail;
            continue;
        }
        if ((v = member_value(name, val, err)) == NULL)
            goto fail;
        json_object_set_new(obj, name, v);
    }
    if (name != small)
        free(name);
    return obj;
fail:
    if (name != small)
        free(name);
    if (args_raw != NULL) {
        free(*args_raw);
        *args_raw = NULL;
    }
    json_decref(obj);
    return NULL;
}
