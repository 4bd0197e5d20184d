/* SPDX-License-Identifier: MIT */
/*
 * lib/config_queue.c: a queue's section of asyncqd's configuration: its
 * fields (kind, consumers, backoff, exec, http), their checks, the
 * "queues" object, and a queue config's defaults, copy and release.
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config-internal.h"
#include "job.h"
#include "netmatch.h"
#include "xmalloc.h"

#define QUEUE_NAME_MAX 64   /* bytes */
#define CONSUMERS_MAX 10000 /* per queue */
#define DEFAULT_KIND "exec"
#define DEFAULT_EXEC_PATH "/usr/local/bin:/usr/bin:/bin"
#define QF(member) offsetof(struct aq_queue_config, member)

static int
parse_order(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = config_match_word(p, v, aq_order_names, path);

    if (i == -1)
        return -1;
    *(enum aq_order *)config_field_at(base, f) = (enum aq_order)i;
    return 0;
}

int
config_parse_kind(struct parser *p, json_t *v, const struct field *f,
                  const char *path, void *base)
{
    int i = config_match_word(p, v, aq_kind_names, path);

    if (i == -1)
        return -1;
    config_replace_string(config_field_at(base, f), aq_kind_names[i]);
    return 0;
}

/* "kinds": kind names, none twice, as bits in aq_kind_names (enum aq_kind)
 * order. */
static int
parse_kinds(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    char item[PATH_LEN];
    unsigned kinds = 0;
    size_t i;
    json_t *k;

    if (!json_is_array(v))
        return config_field_error(p, path, "expected array of kind names");
    json_array_foreach (v, i, k) {
        int bit;

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if ((bit = config_match_word(p, k, aq_kind_names, item)) == -1)
            return -1;
        if (kinds & (1u << bit))
            return config_field_error(p, item, "\"%s\" listed twice",
                                      aq_kind_names[bit]);
        kinds |= 1u << bit;
    }
    *(unsigned *)config_field_at(base, f) = kinds;
    return 0;
}

/* exec.allow: absolute paths, or exactly ["*"]. */
static int
parse_allow(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    struct aq_queue_config *qc = base;
    char item[PATH_LEN];
    char **allow;
    size_t n = json_array_size(v);

    if (!json_is_array(v))
        return config_field_error(
            p, path, "expected array of absolute paths, or [\"*\"]");
    allow = xcalloc(n, sizeof *allow);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        const char *str = json_string_value(s);

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (str == NULL) {
            config_field_error(p, item, "expected string");
            goto fail;
        }
        if (strcmp(str, "*") == 0 && n != 1) {
            config_field_error(p, item, "\"*\" must be the only entry");
            goto fail;
        }
        if (strcmp(str, "*") != 0 && str[0] != '/') {
            config_field_error(p, item, "expected absolute path or \"*\"");
            goto fail;
        }
        allow[i] = xstrdup(str);
    }
    config_free_strings(qc->exec.allow, qc->exec.nallow);
    qc->exec.allow = allow;
    qc->exec.nallow = n;
    return 0;
fail:
    config_free_strings(allow, n);
    return -1;
}

/* exec.path: "/dir:/dir", every directory absolute (none empty). */
static int
parse_exec_path(struct parser *p, json_t *v, const struct field *f,
                const char *path, void *base)
{
    const char *s = json_string_value(v);
    const char *dir = s;

    while (dir != NULL) {
        if (*dir != '/')
            return config_field_error(
                p, path, "expected ':'-separated absolute directories");
        if ((dir = strchr(dir, ':')) != NULL)
            dir++;
    }
    if (s == NULL)
        return config_field_error(
            p, path, "expected ':'-separated absolute directories");
    config_replace_string(config_field_at(base, f), s);
    return 0;
}

/* http.allow / http.deny: arrays of host-name patterns and CIDRs. */
static int
parse_netlist(struct parser *p, json_t *v, const char *path, char ***dst,
              size_t *ndst)
{
    char item[PATH_LEN];
    size_t n = json_array_size(v);
    char **list;

    if (!json_is_array(v))
        return config_field_error(
            p, path, "expected array of host name patterns and CIDRs");
    list = xcalloc(n > 0 ? n : 1, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        const char *str = json_string_value(json_array_get(v, i));

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (str == NULL || !aq_netmatch_entry_ok(str)) {
            config_field_error(p, item, "expected a host name pattern or CIDR");
            config_free_strings(list, n);
            return -1;
        }
        list[i] = xstrdup(str);
    }
    config_free_strings(*dst, *ndst);
    *dst = list;
    *ndst = n;
    return 0;
}

static int
parse_http_allow(struct parser *p, json_t *v, const struct field *f,
                 const char *path, void *base)
{
    struct aq_queue_config *qc = base;

    return parse_netlist(p, v, path, &qc->http.allow, &qc->http.nallow);
}

static int
parse_http_deny(struct parser *p, json_t *v, const struct field *f,
                const char *path, void *base)
{
    struct aq_queue_config *qc = base;

    return parse_netlist(p, v, path, &qc->http.deny, &qc->http.ndeny);
}

static const struct field backoff_fields[] = {
    {"initial", config_parse_number, QF(backoff.initial), 0, NUMBER_MAX, NULL},
    {"factor", config_parse_number, QF(backoff.factor), 1, NUMBER_MAX, NULL},
    {"max", config_parse_number, QF(backoff.max), 0, NUMBER_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

/* "rate": null (no limit), or {"per_second": R > 0, "burst": B >= 1}. */
static int
parse_rate(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    static const struct field rate_fields[] = {
        {"per_second", config_parse_number, QF(rate.per_second), 0, NUMBER_MAX,
         NULL},
        {"burst", config_parse_int, QF(rate.burst), 1, 1000000, NULL},
        {NULL, NULL, 0, 0, 0, NULL},
    };
    struct aq_queue_config *qc = base;
    char child[PATH_LEN + 16];
    json_t *ps;

    qc->rate.per_second = 0;
    qc->rate.burst = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return config_field_error(
            p, path, "expected null or {\"per_second\": R, \"burst\": B}");
    snprintf(child, sizeof child, "%s.per_second", path);
    ps = json_object_get(v, "per_second");
    if (ps == NULL)
        return config_field_error(p, child, "required (jobs a second)");
    if (json_is_number(ps) && !(json_number_value(ps) > 0))
        return config_field_error(p, child, "expected number > 0");
    if (config_parse_object(p, v, path, rate_fields, base) == -1)
        return -1;
    if (qc->rate.burst == 0) {
        double b = ceil(qc->rate.per_second);

        qc->rate.burst = b < 1 ? 1 : b > 1000000 ? 1000000 : (int)b;
    }
    return 0;
}

static const struct field exec_fields[] = {
    {"allow", parse_allow, QF(exec.allow), 0, 0, NULL},
    {"path", parse_exec_path, QF(exec.path), 0, 0, NULL},
    {"capture", config_parse_size, QF(exec.capture), 0, SIZE_LIMIT, NULL},
    {"kill_grace", config_parse_number, QF(exec.kill_grace), 0, NUMBER_MAX,
     NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field http_fields[] = {
    {"capture", config_parse_size, QF(http.capture), 0, SIZE_LIMIT, NULL},
    {"max_per_host", config_parse_int, QF(http.max_per_host), 1, INT_MAX, NULL},
    {"max_redirects", config_parse_int, QF(http.max_redirects), 0, INT_MAX,
     NULL},
    {"verify", config_parse_bool, QF(http.verify), 0, 0, NULL},
    {"max_response_bytes", config_parse_size, QF(http.max_response_bytes), 1,
     SIZE_LIMIT, NULL},
    {"allow", parse_http_allow, QF(http.allow), 0, 0, NULL},
    {"deny", parse_http_deny, QF(http.deny), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field queue_fields[] = {
    {"kind", config_parse_kind, QF(kind), 0, 0, NULL},
    {"kinds", parse_kinds, QF(kinds), 0, 0, NULL},
    {"consumers", config_parse_int, QF(consumers), 0, CONSUMERS_MAX, NULL},
    {"maxsize", config_parse_size, QF(maxsize), 0, SIZE_LIMIT, NULL},
    {"order", parse_order, QF(order), 0, 0, NULL},
    {"timeout", config_parse_number, QF(timeout), 0, NUMBER_MAX, NULL},
    {"retries", config_parse_int, QF(retries), 0, 1000000, NULL},
    {"backoff", config_parse_section, 0, 0, 0, backoff_fields},
    {"rate", parse_rate, 0, 0, 0, NULL},
    {"exec", config_parse_section, 0, 0, 0, exec_fields},
    {"http", config_parse_section, 0, 0, 0, http_fields},
    {NULL, NULL, 0, 0, 0, NULL},
};

static bool
is_queue_name(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > QUEUE_NAME_MAX)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_.-") == len;
}

/* A remote queue (spec section 10): workers take its jobs, so it has no
 * consumers (0 unless given; any other count is an error), and it runs
 * remote jobs only, which no other queue runs. */
static int
check_remote(struct parser *p, json_t *qv, const char *qpath,
             struct aq_queue_config *qc)
{
    unsigned remote = 1u << AQ_KIND_REMOTE;
    bool is_remote = strcmp(qc->kind, "remote") == 0;
    char path[PATH_LEN + 16];

    if (is_remote && json_object_get(qv, "consumers") == NULL)
        qc->consumers = 0;
    if (is_remote && qc->consumers != 0) {
        snprintf(path, sizeof path, "%s.consumers", qpath);
        return config_field_error(p, path,
                                  "expected 0 for a remote queue (workers "
                                  "take its jobs with get)");
    }
    if ((qc->kinds & remote) != 0 && !is_remote) {
        snprintf(path, sizeof path, "%s.kinds", qpath);
        return config_field_error(p, path,
                                  "remote jobs need a queue of kind remote");
    }
    if (is_remote && (qc->kinds & ~remote) != 0) {
        snprintf(path, sizeof path, "%s.kinds", qpath);
        return config_field_error(p, path,
                                  "a remote queue runs remote jobs only");
    }
    return 0;
}

/* "queues": replaces the default queue with the ones given, in file order. */
int
config_parse_queues(struct parser *p, json_t *v, const struct field *f,
                    const char *path, void *base)
{
    struct aq_config *cfg = base;
    char qpath[PATH_LEN];
    const char *name;
    json_t *qv;

    if (!json_is_object(v))
        return config_field_error(p, path, "expected object");
    for (size_t i = 0; i < cfg->nqueues; i++)
        aq_queue_config_clear(&cfg->queues[i]);
    free(cfg->queues);
    cfg->queues = xcalloc(json_object_size(v), sizeof *cfg->queues);
    cfg->nqueues = 0;
    json_object_foreach (v, name, qv) {
        struct aq_queue_config *qc = &cfg->queues[cfg->nqueues];

        if (!is_queue_name(name))
            return config_field_error(
                p, path,
                "\"%.64s\": expected queue name of 1 to 64 "
                "characters from [A-Za-z0-9_.-]",
                name);
        aq_queue_config_defaults(qc, name);
        cfg->nqueues++;
        snprintf(qpath, sizeof qpath, "%s.%s", path, name);
        if (config_parse_object(p, qv, qpath, queue_fields, qc) == -1 ||
            check_remote(p, qv, qpath, qc) == -1)
            return -1;
    }
    return 0;
}

void
aq_queue_config_defaults(struct aq_queue_config *qc, const char *name)
{
    memset(qc, 0, sizeof *qc);
    qc->name = name != NULL ? xstrdup(name) : NULL;
    qc->kind = xstrdup(DEFAULT_KIND);
    qc->consumers = 4;
    qc->maxsize = 10000;
    qc->order = AQ_ORDER_PRIORITY;
    qc->timeout = 300;
    qc->retries = 0;
    qc->backoff.initial = 1;
    qc->backoff.factor = 2;
    qc->backoff.max = 300;
    qc->exec.allow = xcalloc(1, sizeof *qc->exec.allow);
    qc->exec.allow[0] = xstrdup("*");
    qc->exec.nallow = 1;
    qc->exec.path = xstrdup(DEFAULT_EXEC_PATH);
    qc->exec.capture = 65536;
    qc->exec.kill_grace = 5;
    qc->http.capture = 65536;
    qc->http.max_per_host = 8;
    qc->http.max_redirects = 5;
    qc->http.verify = true;
    qc->http.max_response_bytes = 64 * 1024 * 1024;
    qc->http.allow = xcalloc(1, sizeof *qc->http.allow);
    qc->http.allow[0] = xstrdup("*");
    qc->http.nallow = 1;
}

void
aq_queue_config_clear(struct aq_queue_config *qc)
{
    if (qc == NULL)
        return;
    free(qc->name);
    free(qc->kind);
    config_free_strings(qc->exec.allow, qc->exec.nallow);
    free(qc->exec.path);
    config_free_strings(qc->http.allow, qc->http.nallow);
    config_free_strings(qc->http.deny, qc->http.ndeny);
    memset(qc, 0, sizeof *qc);
}

static char **
strings_copy(char *const *v, size_t n)
{
    char **out = xcalloc(n > 0 ? n : 1, sizeof *out);

    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

void
aq_queue_config_copy(struct aq_queue_config *dst,
                     const struct aq_queue_config *src)
{
    if (dst == src)
        return;
    *dst = *src;
    dst->name = src->name != NULL ? xstrdup(src->name) : NULL;
    dst->kind = src->kind != NULL ? xstrdup(src->kind) : NULL;
    dst->exec.path = src->exec.path != NULL ? xstrdup(src->exec.path) : NULL;
    dst->exec.allow = xcalloc(src->exec.nallow, sizeof *dst->exec.allow);
    for (size_t i = 0; i < src->exec.nallow; i++)
        dst->exec.allow[i] = xstrdup(src->exec.allow[i]);
    dst->http.allow = strings_copy(src->http.allow, src->http.nallow);
    dst->http.deny = strings_copy(src->http.deny, src->http.ndeny);
}
