/* SPDX-License-Identifier: MIT */
/*
 * lib/handler.c: the handler table, the echo and sleep kinds, and helpers
 * shared by handlers. exec lives in handler_exec.c.
 */
#include "handler.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "error.h"
#include "jscan.h"
#include "jwrite.h"
#include "params.h"
#include "xmalloc.h"

extern const struct aq_handler aq_handler_exec;
extern const struct aq_handler aq_handler_http;

/* ---- shared helpers ---- */

void
aq_outcome_fail(struct aq_outcome *out, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    out->ok = false;
    free(out->err_code);
    free(out->err_message);
    out->err_code = xstrdup(code);
    out->err_message = xstrdup(msg);
}

void
aq_outcome_set_result(struct aq_outcome *out, json_t *v)
{
    free(out->result);
    out->result = aq_jwrite_string(v, NULL);
    json_decref(v);
}

json_t *
aq_json_string_lossy(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *buf;
    size_t i = 0, n = 0;
    json_t *str;

    /* Worst case every byte becomes the 3-byte U+FFFD. */
    buf = xmalloc(len * 3 + 1);
    while (i < len) {
        size_t k = aq_utf8_seq_len(u + i, len - i);

        if (k == 0) {
            memcpy(buf + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        } else {
            memcpy(buf + n, s + i, k);
            n += k;
            i += k;
        }
    }
    str = json_stringn_nocheck(buf, n);
    free(buf);
    return str;
}

json_t *
aq_args_parse(const char *text, size_t len, struct aq_error *err)
{
    const size_t flags = JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES;
    json_error_t jerr;
    json_t *args = json_loadb(text, len, flags, &jerr);

    if (args == NULL)
        args = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, &jerr);
    if (args == NULL)
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "params.args: %s", jerr.text);
    return args;
}

/* ---- echo: the args, unchanged ---- */

static int
echo_check(const struct aq_queue_config *qc, const json_t *args,
           struct aq_error *err)
{
    return 0;
}

static void *
echo_start(const struct aq_run_env *env, const struct aq_job *j,
           aq_run_done_cb *cb, void *arg)
{
    struct aq_outcome out = {.ok = true};

    out.result = xmemdup(j->args, j->args_len + 1);
    cb(arg, &out);
    return NULL;
}

static void
echo_cancel(void *run)
{
    /* An echo run has always ended before anyone can cancel it. */
}

static const struct aq_handler echo_handler = {
    AQ_KIND_ECHO, false, echo_check, echo_start, echo_cancel, echo_cancel};

/* ---- remote: run by workers over the wire (lib/lease.c) ---- */

/* A remote queue has no consumers, so no consumer ever starts one; if one
 * did, the attempt fails instead of hanging. */
static void *
remote_start(const struct aq_run_env *env, const struct aq_job *j,
             aq_run_done_cb *cb, void *arg)
{
    struct aq_outcome out = {0};

    aq_outcome_fail(&out, "invalid_args",
                    "remote jobs are run by workers (get), not consumers");
    out.is_final = true;
    cb(arg, &out);
    return NULL;
}

static const struct aq_handler remote_handler = {
    AQ_KIND_REMOTE, false, echo_check, remote_start, echo_cancel, echo_cancel};

/* ---- sleep: {"seconds": s}, cancel ends it at once ---- */

struct sleep_run {
    struct event *timer;
    double seconds;
    aq_run_done_cb *cb;
    void *arg;
};

/* args: {"seconds": s}, s within the limit of every duration (spec
 * section 7). */
static int
sleep_check(const struct aq_queue_config *qc, const json_t *args,
            struct aq_error *err)
{
    static const char *const fields[] = {"seconds", NULL};
    struct aq_params p;
    double s;

    aq_params_init(&p, args, "params.args", "sleep", err);
    if (aq_params_fields(&p, fields) < 0 ||
        aq_params_duration(&p, "seconds", AQ_PARAM_REQUIRED, &s) < 0)
        return -1;
    return 0;
}

static void
sleep_end(struct sleep_run *r, struct aq_outcome *out)
{
    aq_run_done_cb *cb = r->cb;
    void *arg = r->arg;

    event_free(r->timer);
    free(r);
    cb(arg, out);
}

static void
sleep_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sleep_run *r = arg;
    struct aq_outcome out = {.ok = true};

    aq_outcome_set_result(&out, json_pack("{s:f}", "slept", r->seconds));
    sleep_end(r, &out);
}

static void *
sleep_start(const struct aq_run_env *env, const struct aq_job *j,
            aq_run_done_cb *cb, void *arg)
{
    struct sleep_run *r;
    struct aq_error err;
    json_t *args = aq_args_parse(j->args, j->args_len, &err);
    struct aq_params p;
    double seconds;
    struct timeval tv;

    /* Checked at put, but a replayed job may come from a version that
     * took more: what put refuses now fails the attempt, unrun. */
    aq_params_init(&p, args, "args", "sleep", &err);
    if (args == NULL ||
        aq_params_duration(&p, "seconds", AQ_PARAM_REQUIRED, &seconds) < 0) {
        struct aq_outcome out = {0};

        json_decref(args);
        aq_outcome_fail(&out, "invalid_args", "%s", err.message);
        cb(arg, &out);
        return NULL;
    }
    json_decref(args);
    r = xcalloc(1, sizeof *r);
    r->seconds = seconds;
    r->cb = cb;
    r->arg = arg;
    r->timer = evtimer_new(env->base, sleep_timer_cb, r);
    tv = aq_clock_tv(aq_clock_s_to_us(seconds));
    evtimer_add(r->timer, &tv);
    return r;
}

static void
sleep_cancel(void *run)
{
    struct aq_outcome out = {0};

    aq_outcome_fail(&out, "cancelled", "sleep: cancelled");
    sleep_end(run, &out);
}

static void
sleep_abandon(void *run)
{
    struct sleep_run *r = run;

    event_free(r->timer);
    free(r);
}

static const struct aq_handler sleep_handler = {
    AQ_KIND_SLEEP, true, sleep_check, sleep_start, sleep_cancel, sleep_abandon};

const struct aq_handler *
aq_handler_find(enum aq_kind kind)
{
    switch (kind) {
    case AQ_KIND_ECHO:
        return &echo_handler;
    case AQ_KIND_SLEEP:
        return &sleep_handler;
    case AQ_KIND_EXEC:
        return &aq_handler_exec;
    case AQ_KIND_HTTP:
        return &aq_handler_http;
    case AQ_KIND_REMOTE:
        return &remote_handler;
    default:
        return NULL;
    }
}
