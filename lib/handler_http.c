/* SPDX-License-Identifier: MIT */
/*
 * lib/handler_http.c: the http kind (spec section 3). args: url, method,
 * headers, body, expect; checked at put. A run is one call of the queue's
 * pool (lib/http.c); this file turns args into the request and the response
 * into the job's result and outcome. The queue's http.allow / http.deny
 * (lib/netmatch.h) are checked at put where no DNS is needed, and by the
 * client on every connection of a run, with the daemon's own listeners.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "config.h"
#include "error.h"
#include "handler.h"
#include "http.h"
#include "netmatch.h"
#include "params.h"
#include "xmalloc.h"

static const char *const methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                      "DELETE", "PATCH", "OPTIONS", NULL};

/* RFC 9110 token characters, for header names. */
static bool
is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
            return false;
    }
    return true;
}

static int
check_headers(const struct aq_params *headers)
{
    const char *name, *value;
    json_t *v;

    json_object_foreach ((json_t *)headers->v, name, v) {
        if (!is_token(name))
            return aq_params_fail(headers, NULL,
                                  "invalid header name \"%.100s\"", name);
        if (aq_params_string(headers, name, AQ_PARAM_NUL_OK, &value) < 0)
            return -1;
        if (strpbrk(value, "\r\n") != NULL ||
            strlen(value) != json_string_length(v))
            return aq_params_fail(headers, name, "CR, LF or NUL in the value");
    }
    return 0;
}

static bool
is_status(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 100 &&
           json_integer_value(v) <= 599;
}

/* expect: a status, or [lo, hi]. Fills the range; 0, or -1 if malformed. */
static int
expect_range(const json_t *v, int *lo, int *hi)
{
    if (v == NULL) {
        *lo = 100;
        *hi = 399;
        return 0;
    }
    if (is_status(v)) {
        *lo = *hi = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_array(v) && json_array_size(v) == 2 &&
        is_status(json_array_get(v, 0)) && is_status(json_array_get(v, 1)) &&
        json_integer_value(json_array_get(v, 0)) <=
            json_integer_value(json_array_get(v, 1))) {
        *lo = (int)json_integer_value(json_array_get(v, 0));
        *hi = (int)json_integer_value(json_array_get(v, 1));
        return 0;
    }
    return -1;
}

/* The queue's policy, with the daemon's listeners own[0..nown) (a new
 * one, the caller's). */
static struct aq_netmatch *
policy_new(const struct aq_queue_config *qc, const struct sockaddr_storage *own,
           size_t nown)
{
    return aq_netmatch_new(qc->http.allow, qc->http.nallow, qc->http.deny,
                           qc->http.ndeny, own, nown);
}

/* url against the queue's lists, where that needs no DNS. */
static int
check_target(const struct aq_queue_config *qc, const char *url,
             struct aq_error *err)
{
    struct aq_netmatch *m = policy_new(qc, NULL, 0);
    int rc = aq_http_check_target(url, m, "params.args.url", err);

    aq_netmatch_free(m);
    return rc;
}

/* The args alone; *url is args.url. */
static int
check_args(const json_t *args, const char **url, struct aq_error *err)
{
    static const char *const fields[] = {"url",  "method", "headers",
                                         "body", "expect", NULL};
    struct aq_params p, headers;
    const char *body;
    size_t method;
    int rc, lo, hi;

    aq_params_init(&p, args, "params.args", "http", err);
    if (aq_params_fields(&p, fields) < 0 ||
        aq_params_string(&p, "url", AQ_PARAM_REQUIRED, url) < 0 ||
        aq_http_check_url(*url, "params.args.url", err) < 0 ||
        aq_params_word(&p, "method", 0, methods, &method) < 0 ||
        (rc = aq_params_object(&p, "headers", 0, "strings", &headers)) < 0 ||
        (rc > 0 && check_headers(&headers) < 0) ||
        aq_params_string(&p, "body", AQ_PARAM_NUL_OK, &body) < 0)
        return -1;
    if (expect_range(json_object_get(args, "expect"), &lo, &hi) < 0)
        return aq_params_fail(&p, "expect",
                              "expected a status 100-599 or [lo, hi]");
    return 0;
}

static int
http_check(const struct aq_queue_config *qc, const json_t *args,
           struct aq_error *err)
{
    const char *url = NULL;

    if (check_args(args, &url, err) < 0)
        return -1;
    return check_target(qc, url, err);
}

/* ---- running ---- */

struct http_run {
    struct aq_http_call *call;
    struct aq_netmatch *policy; /* owned; the call borrows it */
    int expect_lo, expect_hi;
    char method[8];
    aq_run_done_cb *cb;
    void *arg;
};

/* The value of header name in res (names compare without case), or NULL. */
static const char *
response_header(const struct aq_http_response *res, const char *name)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)res->headers, key, v) {
        if (strcasecmp(key, name) == 0)
            return json_string_value(v);
    }
    return NULL;
}

static void
http_done_cb(void *arg, const struct aq_http_response *res)
{
    struct http_run *r = arg;
    struct aq_outcome out = {.ok = res->err_code == NULL};
    aq_run_done_cb *cb = r->cb;
    void *cb_arg = r->arg;

    if (res->err_code == NULL) {
        json_t *v = json_object();

        json_object_set_new(v, "status", json_integer(res->status));
        json_object_set(v, "headers", (json_t *)res->headers);
        json_object_set_new(v, "body",
                            aq_json_string_lossy(res->body, res->body_len));
        json_object_set_new(v, "truncated", json_boolean(res->truncated));
        json_object_set_new(v, "duration",
                            json_real((double)res->duration_us / 1e6));
        json_object_set_new(v, "url", json_string(res->url));
        json_object_set_new(v, "redirects", json_integer(res->redirects));
        aq_outcome_set_result(&out, v);
        if (res->status < r->expect_lo || res->status > r->expect_hi) {
            /* 429 and 503 may say when to come back: the retry waits that
             * long instead of the backoff. */
            const char *ra = res->status == 429 || res->status == 503
                                 ? response_header(res, "Retry-After")
                                 : NULL;

            out.has_retry_after =
                ra != NULL && aq_http_retry_after(ra, aq_clock_wall_us(),
                                                  &out.retry_after_us) == 0;
            aq_outcome_fail(
                &out, "status", "http: %s %.300s: status %d%s%s%s%.64s%s",
                r->method, res->url, res->status,
                res->reason[0] != '\0' ? " " : "", res->reason,
                out.has_retry_after ? " (Retry-After: " : "",
                out.has_retry_after ? ra : "", out.has_retry_after ? ")" : "");
        }
    } else {
        aq_outcome_fail(&out, res->err_code, "%s", res->err_message);
        /* The lists say no, and would again: fix them, then `retry`. */
        out.is_final = strcmp(res->err_code, "forbidden") == 0;
    }
    aq_netmatch_free(r->policy);
    free(r);
    cb(cb_arg, &out);
}

static void *
http_start(const struct aq_run_env *env, const struct aq_job *j,
           aq_run_done_cb *cb, void *arg)
{
    json_t *args = aq_args_parse(j->args, j->args_len, NULL);
    struct aq_error err = {0};
    struct aq_outcome out = {0};
    struct http_run *r;
    const json_t *body;
    struct aq_http_limits lim = {
        .capture = env->qc->http.capture,
        .max_response_bytes = env->qc->http.max_response_bytes,
        .max_per_host = env->qc->http.max_per_host,
        .max_redirects = env->qc->http.max_redirects,
        .verify = env->qc->http.verify,
    };
    struct aq_http_request req = {0};

    /* Checked at put; a journal written by another build may differ. The
     * target is the client's to check (a refusal is "forbidden"). */
    if (args == NULL || check_args(args, &req.url, &err) < 0) {
        json_decref(args);
        aq_outcome_fail(&out, "args", "%s",
                        err.message[0] != '\0' ? err.message
                                               : "http: bad args");
        cb(arg, &out);
        return NULL;
    }
    r = xcalloc(1, sizeof *r);
    r->cb = cb;
    r->arg = arg;
    r->policy = policy_new(env->qc, env->own_addrs, env->nown_addrs);
    lim.policy = r->policy;
    expect_range(json_object_get(args, "expect"), &r->expect_lo, &r->expect_hi);
    req.method = json_string_value(json_object_get(args, "method"));
    snprintf(r->method, sizeof r->method, "%s",
             req.method != NULL ? req.method : "GET");
    req.headers = json_object_get(args, "headers");
    body = json_object_get(args, "body");
    req.body = json_string_value(body);
    req.body_len = json_string_length(body);
    r->call = aq_http_start(env->http, &lim, &req, http_done_cb, r);
    json_decref(args);
    return r;
}

static void
http_cancel(void *run)
{
    struct http_run *r = run;
    struct aq_outcome out = {0};
    aq_run_done_cb *cb = r->cb;
    void *arg = r->arg;

    aq_http_cancel(r->call);
    aq_netmatch_free(r->policy);
    free(r);
    aq_outcome_fail(&out, "cancelled", "http: cancelled");
    cb(arg, &out);
}

static void
http_abandon(void *run)
{
    struct http_run *r = run;

    aq_http_cancel(r->call);
    aq_netmatch_free(r->policy);
    free(r);
}

const struct aq_handler aq_handler_http = {
    AQ_KIND_HTTP, true, http_check, http_start, http_cancel, http_abandon};
