/* SPDX-License-Identifier: MIT */
/*
 * lib/config.c: asyncqd's JSON configuration. A config starts as all
 * defaults; each section is then read through a table of fields (name, parser,
 * offset, range), so a key missing from a table is an unknown field. Every
 * string the config holds is its own heap copy or NULL at every step, so a
 * half-parsed config is freed with aq_config_free.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/un.h>

#include <jansson.h>

#include "error.h"
#include "job.h"
#include "netmatch.h"
#include "xmalloc.h"

#define PATH_LEN 256                /* a field path in a message */
#define QUEUE_NAME_MAX 64           /* bytes */
#define CONSUMERS_MAX 10000         /* per queue */
#define NUMBER_MAX 1000000000       /* durations and factors: ~31 years */
#define FILE_MAX (16 * 1024 * 1024) /* bytes of config text */
#define SIZE_LIMIT                                                             \
    ((int64_t)((uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : INT64_MAX))

#define DEFAULT_LISTEN "tcp://127.0.0.1:7878"
#define DEFAULT_METRICS "127.0.0.1:7879"
#define DEFAULT_JOURNAL "asyncq.journal"
#define DEFAULT_KIND "exec"
#define DEFAULT_EXEC_PATH "/usr/local/bin:/usr/bin:/bin"

/* Where messages go: file (aq_config_load) prefixes every message. */
struct parser {
    const char *file; /* NULL when parsing text */
    struct aq_error *err;
};

struct field;
typedef int parse_fn(struct parser *p, json_t *v, const struct field *f,
                     const char *path, void *base);

/* One key of a JSON object and where its value goes in base. */
struct field {
    const char *name;
    parse_fn *parse;
    size_t offset;           /* from the start of base */
    int64_t min, max;        /* integers and numbers */
    const struct field *sub; /* a section's fields; same base */
};

const char *const aq_fsync_names[] = {
    [AQ_FSYNC_BATCH] = "batch",
    [AQ_FSYNC_ALWAYS] = "always",
    [AQ_FSYNC_EVERYSEC] = "everysec",
    [AQ_FSYNC_NEVER] = "never",
    NULL,
};
const char *const aq_order_names[] = {
    [AQ_ORDER_PRIORITY] = "priority",
    [AQ_ORDER_LIFO] = "lifo",
    NULL,
};

/* Formats "[file: ]path: why" into the parser's error; returns -1. */
static int field_error(struct parser *p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
field_error(struct parser *p, const char *path, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (p->file != NULL)
        aq_error_set(p->err, AQ_ERR_INVALID_PARAMS, "%s: %s: %s", p->file, path,
                     why);
    else
        aq_error_set(p->err, AQ_ERR_INVALID_PARAMS, "%s: %s", path, why);
    return -1;
}

static void *
at(void *base, const struct field *f)
{
    return (char *)base + f->offset;
}

static void
replace_string(char **dst, const char *value)
{
    free(*dst);
    *dst = value != NULL ? xstrdup(value) : NULL;
}

static void
free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char **
strings_copy(char *const *v, size_t n)
{
    char **out = xcalloc(n > 0 ? n : 1, sizeof *out);

    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

/* Reads an integer in [f->min, f->max]: a JSON integer, nothing else. */
static int
get_integer(struct parser *p, json_t *v, const struct field *f,
            const char *path, int64_t *out)
{
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < f->min)
        return field_error(p, path, "expected integer >= %lld",
                           (long long)f->min);
    if (n > f->max)
        return field_error(p, path, "expected integer <= %lld",
                           (long long)f->max);
    *out = n;
    return 0;
}

static int
parse_int(struct parser *p, json_t *v, const struct field *f, const char *path,
          void *base)
{
    int64_t n = 0;

    if (get_integer(p, v, f, path, &n) == -1)
        return -1;
    *(int *)at(base, f) = (int)n;
    return 0;
}

static int
parse_size(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    int64_t n = 0;

    if (get_integer(p, v, f, path, &n) == -1)
        return -1;
    *(size_t *)at(base, f) = (size_t)n;
    return 0;
}

/* Durations and factors: any finite JSON number in [f->min, f->max]. */
static int
parse_number(struct parser *p, json_t *v, const struct field *f,
             const char *path, void *base)
{
    double d;

    if (!json_is_number(v) || !isfinite(d = json_number_value(v)) ||
        d < (double)f->min)
        return field_error(p, path, "expected number >= %lld",
                           (long long)f->min);
    if (d > (double)f->max)
        return field_error(p, path, "expected number <= %lld",
                           (long long)f->max);
    *(double *)at(base, f) = d == 0 ? 0 : d; /* no -0 */
    return 0;
}

static int
parse_bool(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    if (!json_is_boolean(v))
        return field_error(p, path, "expected true or false");
    *(bool *)at(base, f) = json_is_true(v);
    return 0;
}

/* The index of v in words, or -1 with a message listing them all. */
static int
match_word(struct parser *p, json_t *v, const char *const *words,
           const char *path)
{
    char list[128];
    size_t len = 0;

    for (int i = 0; json_is_string(v) && words[i] != NULL; i++) {
        if (strcmp(json_string_value(v), words[i]) == 0)
            return i;
    }
    list[0] = '\0';
    for (int i = 0; words[i] != NULL && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"",
                                i == 0 ? "" : ", ", words[i]);
    return field_error(p, path, "expected one of %s", list);
}

static int
parse_fsync(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = match_word(p, v, aq_fsync_names, path);

    if (i == -1)
        return -1;
    *(enum aq_fsync *)at(base, f) = (enum aq_fsync)i;
    return 0;
}

static int
parse_order(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = match_word(p, v, aq_order_names, path);

    if (i == -1)
        return -1;
    *(enum aq_order *)at(base, f) = (enum aq_order)i;
    return 0;
}

static int
parse_level(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = match_word(p, v, aq_log_level_names, path);

    if (i == -1)
        return -1;
    *(enum aq_log_level *)at(base, f) = (enum aq_log_level)i;
    return 0;
}

static int
parse_kind(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    int i = match_word(p, v, aq_kind_names, path);

    if (i == -1)
        return -1;
    replace_string(at(base, f), aq_kind_names[i]);
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
        return field_error(p, path, "expected array of kind names");
    json_array_foreach (v, i, k) {
        int bit;

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if ((bit = match_word(p, k, aq_kind_names, item)) == -1)
            return -1;
        if (kinds & (1u << bit))
            return field_error(p, item, "\"%s\" listed twice",
                               aq_kind_names[bit]);
        kinds |= 1u << bit;
    }
    *(unsigned *)at(base, f) = kinds;
    return 0;
}

/* A non-empty string, or null for "none". */
static int
parse_string_or_null(struct parser *p, json_t *v, const struct field *f,
                     const char *path, void *base)
{
    if (json_is_null(v)) {
        replace_string(at(base, f), NULL);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return field_error(p, path, "expected non-empty string or null");
    replace_string(at(base, f), json_string_value(v));
    return 0;
}

/* A host name (RFC 1123 labels) or a dotted IPv4 address. */
static bool
is_host(const char *s, size_t len)
{
    char buf[256];
    size_t label = 0;
    bool all_digits = true;
    struct in_addr a4;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';

        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (c == '-' && label == 0)
            return false;
        if (!(c >= '0' && c <= '9'))
            all_digits = false;
        if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') &&
            !(c >= 'A' && c <= 'Z') && c != '-')
            return false;
        label++;
    }
    if (!all_digits)
        return true;
    /* "1.2.3" or "300.1.1.1" would go to the resolver: take IPv4 only. */
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1;
}

/* Checks "HOST:PORT" or "[IPV6]:PORT"; returns NULL or what is wrong. */
static const char *
check_hostport(const char *s)
{
    char v6[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    const char *port;
    unsigned long n = 0;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (end == NULL || (size_t)(end - s - 1) >= sizeof v6)
            return "invalid IPv6 address";
        memcpy(v6, s + 1, (size_t)(end - s - 1));
        v6[end - s - 1] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return "invalid IPv6 address";
        if (end[1] != ':')
            return "missing port";
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL)
            return "missing port";
        if (memchr(s, ':', (size_t)(colon - s)) != NULL)
            return "expected HOST:PORT or [IPV6]:PORT";
        if (colon == s)
            return "missing host";
        if (!is_host(s, (size_t)(colon - s)))
            return "invalid host name";
        port = colon + 1;
    }
    if (*port == '\0')
        return "missing port";
    for (size_t i = 0; port[i] != '\0'; i++) {
        if (port[i] < '0' || port[i] > '9' || i >= 5)
            return "expected port from 0 to 65535";
        n = n * 10 + (unsigned long)(port[i] - '0');
    }
    if (n > 65535)
        return "expected port from 0 to 65535";
    return NULL;
}

/* Checks one listen address; returns NULL or what is wrong. */
static const char *
check_listen(const char *s)
{
    const size_t sun_max = sizeof((struct sockaddr_un *)0)->sun_path - 1;

    if (strncmp(s, "tcp://", 6) == 0)
        return check_hostport(s + 6);
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/')
            return "expected unix:/ABSOLUTE/PATH";
        if (strlen(s + 5) > sun_max)
            return "unix socket path longer than 107 bytes";
        return NULL;
    }
    return "expected tcp://HOST:PORT, tcp://[IPV6]:PORT or unix:/PATH";
}

static int
parse_listen(struct parser *p, json_t *v, const struct field *f,
             const char *path, void *base)
{
    struct aq_config *cfg = base;
    char item[PATH_LEN];
    char **addrs;
    size_t n = json_array_size(v);
    const char *why;

    if (!json_is_array(v) || n == 0)
        return field_error(p, path, "expected array of at least one address");
    addrs = xcalloc(n, sizeof *addrs);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (!json_is_string(s)) {
            field_error(p, item, "expected string");
            goto fail;
        }
        if ((why = check_listen(json_string_value(s))) != NULL) {
            field_error(p, item, "%s", why);
            goto fail;
        }
        addrs[i] = xstrdup(json_string_value(s));
    }
    free_strings(cfg->listen, cfg->nlisten);
    cfg->listen = addrs;
    cfg->nlisten = n;
    return 0;
fail:
    free_strings(addrs, n);
    return -1;
}

static int
parse_metrics(struct parser *p, json_t *v, const struct field *f,
              const char *path, void *base)
{
    const char *why;

    if (json_is_null(v)) {
        replace_string(at(base, f), NULL);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return field_error(p, path, "expected \"HOST:PORT\" or null");
    if ((why = check_hostport(json_string_value(v))) != NULL)
        return field_error(p, path, "%s", why);
    replace_string(at(base, f), json_string_value(v));
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
        return field_error(p, path,
                           "expected array of absolute paths, or [\"*\"]");
    allow = xcalloc(n, sizeof *allow);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        const char *str = json_string_value(s);

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (str == NULL) {
            field_error(p, item, "expected string");
            goto fail;
        }
        if (strcmp(str, "*") == 0 && n != 1) {
            field_error(p, item, "\"*\" must be the only entry");
            goto fail;
        }
        if (strcmp(str, "*") != 0 && str[0] != '/') {
            field_error(p, item, "expected absolute path or \"*\"");
            goto fail;
        }
        allow[i] = xstrdup(str);
    }
    free_strings(qc->exec.allow, qc->exec.nallow);
    qc->exec.allow = allow;
    qc->exec.nallow = n;
    return 0;
fail:
    free_strings(allow, n);
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
            return field_error(p, path,
                               "expected ':'-separated absolute directories");
        if ((dir = strchr(dir, ':')) != NULL)
            dir++;
    }
    if (s == NULL)
        return field_error(p, path,
                           "expected ':'-separated absolute directories");
    replace_string(at(base, f), s);
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
        return field_error(p, path,
                           "expected array of host name patterns and CIDRs");
    list = xcalloc(n > 0 ? n : 1, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        const char *str = json_string_value(json_array_get(v, i));

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (str == NULL || !aq_netmatch_entry_ok(str)) {
            field_error(p, item, "expected a host name pattern or CIDR");
            free_strings(list, n);
            return -1;
        }
        list[i] = xstrdup(str);
    }
    free_strings(*dst, *ndst);
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

static int parse_object(struct parser *p, json_t *obj, const char *path,
                        const struct field *fields, void *base);

static int
parse_section(struct parser *p, json_t *v, const struct field *f,
              const char *path, void *base)
{
    return parse_object(p, v, path, f->sub, base);
}

#define QF(member) offsetof(struct aq_queue_config, member)
#define CF(member) offsetof(struct aq_config, member)

static const struct field backoff_fields[] = {
    {"initial", parse_number, QF(backoff.initial), 0, NUMBER_MAX, NULL},
    {"factor", parse_number, QF(backoff.factor), 1, NUMBER_MAX, NULL},
    {"max", parse_number, QF(backoff.max), 0, NUMBER_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field exec_fields[] = {
    {"allow", parse_allow, QF(exec.allow), 0, 0, NULL},
    {"path", parse_exec_path, QF(exec.path), 0, 0, NULL},
    {"capture", parse_size, QF(exec.capture), 0, SIZE_LIMIT, NULL},
    {"kill_grace", parse_number, QF(exec.kill_grace), 0, NUMBER_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field http_fields[] = {
    {"capture", parse_size, QF(http.capture), 0, SIZE_LIMIT, NULL},
    {"max_per_host", parse_int, QF(http.max_per_host), 1, INT_MAX, NULL},
    {"max_redirects", parse_int, QF(http.max_redirects), 0, INT_MAX, NULL},
    {"verify", parse_bool, QF(http.verify), 0, 0, NULL},
    {"max_response_bytes", parse_size, QF(http.max_response_bytes), 1,
     SIZE_LIMIT, NULL},
    {"allow", parse_http_allow, QF(http.allow), 0, 0, NULL},
    {"deny", parse_http_deny, QF(http.deny), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field queue_fields[] = {
    {"kind", parse_kind, QF(kind), 0, 0, NULL},
    {"kinds", parse_kinds, QF(kinds), 0, 0, NULL},
    {"consumers", parse_int, QF(consumers), 0, CONSUMERS_MAX, NULL},
    {"maxsize", parse_size, QF(maxsize), 0, SIZE_LIMIT, NULL},
    {"order", parse_order, QF(order), 0, 0, NULL},
    {"timeout", parse_number, QF(timeout), 0, NUMBER_MAX, NULL},
    {"retries", parse_int, QF(retries), 0, 1000000, NULL},
    {"backoff", parse_section, 0, 0, 0, backoff_fields},
    {"exec", parse_section, 0, 0, 0, exec_fields},
    {"http", parse_section, 0, 0, 0, http_fields},
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

/* "queues": replaces the default queue with the ones given, in file order. */
static int
parse_queues(struct parser *p, json_t *v, const struct field *f,
             const char *path, void *base)
{
    struct aq_config *cfg = base;
    char qpath[PATH_LEN];
    const char *name;
    json_t *qv;

    if (!json_is_object(v))
        return field_error(p, path, "expected object");
    for (size_t i = 0; i < cfg->nqueues; i++)
        aq_queue_config_clear(&cfg->queues[i]);
    free(cfg->queues);
    cfg->queues = xcalloc(json_object_size(v), sizeof *cfg->queues);
    cfg->nqueues = 0;
    json_object_foreach (v, name, qv) {
        struct aq_queue_config *qc = &cfg->queues[cfg->nqueues];

        if (!is_queue_name(name))
            return field_error(p, path,
                               "\"%.64s\": expected queue name of 1 to 64 "
                               "characters from [A-Za-z0-9_.-]",
                               name);
        aq_queue_config_defaults(qc, name);
        cfg->nqueues++;
        snprintf(qpath, sizeof qpath, "%s.%s", path, name);
        if (parse_object(p, qv, qpath, queue_fields, qc) == -1)
            return -1;
    }
    return 0;
}

static const struct field producers_fields[] = {
    {"max", parse_int, CF(producers.max), 1, INT_MAX, NULL},
    {"window", parse_int, CF(producers.window), 1, INT_MAX, NULL},
    {"max_request_bytes", parse_size, CF(producers.max_request_bytes), 2,
     SIZE_LIMIT, NULL},
    {"idle_timeout", parse_number, CF(producers.idle_timeout), 0, NUMBER_MAX,
     NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field journal_fields[] = {
    {"path", parse_string_or_null, CF(journal.path), 0, 0, NULL},
    {"fsync", parse_fsync, CF(journal.fsync), 0, 0, NULL},
    {"segment_bytes", parse_size, CF(journal.segment_bytes), 4096, SIZE_LIMIT,
     NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field results_fields[] = {
    {"ttl", parse_number, CF(results.ttl), 0, NUMBER_MAX, NULL},
    {"max", parse_size, CF(results.max), 0, SIZE_LIMIT, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field shutdown_fields[] = {
    {"grace", parse_number, CF(shutdown.grace), 0, NUMBER_MAX, NULL},
    {"drain", parse_bool, CF(shutdown.drain), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field auth_fields[] = {
    {"token_file", parse_string_or_null, CF(auth_token_file), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field log_fields[] = {
    {"level", parse_level, CF(log_level), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field config_fields[] = {
    {"listen", parse_listen, CF(listen), 0, 0, NULL},
    {"metrics", parse_metrics, CF(metrics), 0, 0, NULL},
    {"producers", parse_section, 0, 0, 0, producers_fields},
    {"journal", parse_section, 0, 0, 0, journal_fields},
    {"results", parse_section, 0, 0, 0, results_fields},
    {"shutdown", parse_section, 0, 0, 0, shutdown_fields},
    {"auth", parse_section, 0, 0, 0, auth_fields},
    {"log", parse_section, 0, 0, 0, log_fields},
    {"queues", parse_queues, 0, 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

/* Reads the keys of obj through fields; path names obj ("" at the top). */
static int
parse_object(struct parser *p, json_t *obj, const char *path,
             const struct field *fields, void *base)
{
    char child[PATH_LEN];
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return field_error(p, path, "expected object");
    json_object_foreach (obj, key, v) {
        const struct field *f = fields;

        while (f->name != NULL && strcmp(f->name, key) != 0)
            f++;
        snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", key);
        if (f->name == NULL)
            return field_error(p, child, "unknown field");
        if (f->parse(p, v, f, child, base) == -1)
            return -1;
    }
    return 0;
}

/* Parses text; messages start with file, or "config" for document errors. */
static struct aq_config *
parse_text(const char *text, size_t len, const char *file, struct aq_error *err)
{
    struct parser p = {file, err};
    const char *what = file != NULL ? file : "config";
    struct aq_config *cfg = NULL;
    json_error_t jerr;
    json_t *root;

    root = json_loadb(text != NULL ? text : "", text != NULL ? len : 0,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS, "%s: line %d column %d: %s",
                     what, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "%s: expected a JSON object at the top level", what);
        goto fail;
    }
    cfg = aq_config_default();
    if (parse_object(&p, root, "", config_fields, cfg) == -1)
        goto fail;
    json_decref(root);
    return cfg;
fail:
    aq_config_free(cfg);
    json_decref(root);
    return NULL;
}

struct aq_config *
aq_config_parse(const char *text, size_t len, struct aq_error *err)
{
    return parse_text(text, len, NULL, err);
}

/* Reads the whole file at path (at most FILE_MAX bytes) into a new buffer. */
static char *
read_file(const char *path, size_t *lenp, struct aq_error *err)
{
    size_t len = 0, cap = 4096;
    char *buf = NULL;
    const char *op = "open";
    int fd, saved;
    ssize_t n;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
        goto fail;
    op = "read";
    buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            /* One byte past the limit tells a file that is too large. */
            cap = cap * 2 > FILE_MAX + 1 ? FILE_MAX + 1 : cap * 2;
            buf = xrealloc(buf, cap);
        }
        n = read(fd, buf + len, cap - len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > FILE_MAX) {
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    *lenp = len;
    return buf;
fail:
    saved = errno;
    if (fd != -1)
        close(fd);
    free(buf);
    aq_error_set(err, AQ_ERR_INVALID_PARAMS, "%s: %s: %s", path, op,
                 strerror(saved));
    return NULL;
}

struct aq_config *
aq_config_load(const char *path, struct aq_error *err)
{
    struct aq_config *cfg;
    size_t len;
    char *text;

    if ((text = read_file(path, &len, err)) == NULL)
        return NULL;
    cfg = parse_text(text, len, path, err);
    free(text);
    return cfg;
}

struct aq_config *
aq_config_default(void)
{
    struct aq_config *cfg = xcalloc(1, sizeof *cfg);

    cfg->listen = xcalloc(1, sizeof *cfg->listen);
    cfg->listen[0] = xstrdup(DEFAULT_LISTEN);
    cfg->nlisten = 1;
    cfg->metrics = xstrdup(DEFAULT_METRICS);
    cfg->producers.max = 1024;
    cfg->producers.window = 1024;
    cfg->producers.max_request_bytes = 1048576;
    cfg->producers.idle_timeout = 300;
    cfg->journal.path = xstrdup(DEFAULT_JOURNAL);
    cfg->journal.fsync = AQ_FSYNC_BATCH;
    cfg->journal.segment_bytes = 64u << 20;
    cfg->results.ttl = 3600;
    cfg->results.max = 100000;
    cfg->shutdown.grace = 10;
    cfg->shutdown.drain = false;
    cfg->auth_token_file = NULL;
    cfg->log_level = AQ_LOG_INFO;
    cfg->queues = xcalloc(1, sizeof *cfg->queues);
    aq_queue_config_defaults(&cfg->queues[0], "default");
    cfg->nqueues = 1;
    return cfg;
}

void
aq_config_free(struct aq_config *cfg)
{
    if (cfg == NULL)
        return;
    free_strings(cfg->listen, cfg->nlisten);
    free(cfg->metrics);
    free(cfg->journal.path);
    free(cfg->auth_token_file);
    for (size_t i = 0; i < cfg->nqueues; i++)
        aq_queue_config_clear(&cfg->queues[i]);
    free(cfg->queues);
    free(cfg);
}

const struct aq_queue_config *
aq_config_queue(const struct aq_config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nqueues; i++) {
        if (strcmp(cfg->queues[i].name, name) == 0)
            return &cfg->queues[i];
    }
    return NULL;
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
    free_strings(qc->exec.allow, qc->exec.nallow);
    free(qc->exec.path);
    free_strings(qc->http.allow, qc->http.nallow);
    free_strings(qc->http.deny, qc->http.ndeny);
    memset(qc, 0, sizeof *qc);
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
