/* SPDX-License-Identifier: MIT */
/*
 * lib/config.c: asyncqd's JSON configuration: the reader of field tables
 * (config-internal.h), the values every section uses, the top-level
 * sections (listen, metrics, producers, journal, store, ...) and the loader. A
 * queue's section: lib/config_queue.c. A config starts as all defaults;
 * each section is then read through its table, so a key missing from a
 * table is an unknown field.
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
#include <libpq-fe.h>

#include "config-internal.h"
#include "error.h"
#include "job.h"
#include "netmatch.h"
#include "xmalloc.h"

#define FILE_MAX (16 * 1024 * 1024) /* bytes of config text */

#define DEFAULT_LISTEN "tcp://127.0.0.1:7878"
#define DEFAULT_METRICS "127.0.0.1:7879"
#define DEFAULT_JOURNAL "asyncq.journal"
#define DEFAULT_SCHEMA "asyncq"

const char *const aq_fsync_names[] = {
    [AQ_FSYNC_BATCH] = "batch",
    [AQ_FSYNC_ALWAYS] = "always",
    [AQ_FSYNC_EVERYSEC] = "everysec",
    [AQ_FSYNC_NEVER] = "never",
    NULL,
};
const char *const aq_store_kind_names[] = {
    [AQ_STORE_JOURNAL] = "journal",
    [AQ_STORE_POSTGRES] = "postgres",
    NULL,
};
const char *const aq_order_names[] = {
    [AQ_ORDER_PRIORITY] = "priority",
    [AQ_ORDER_LIFO] = "lifo",
    NULL,
};

/* Formats "[file: ]path: why" into the parser's error; returns -1. */
int
config_field_error(struct parser *p, const char *path, const char *fmt, ...)
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

void *
config_field_at(void *base, const struct field *f)
{
    return (char *)base + f->offset;
}

void
config_replace_string(char **dst, const char *value)
{
    free(*dst);
    *dst = value != NULL ? xstrdup(value) : NULL;
}

void
config_free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Reads an integer in [f->min, f->max]: a JSON integer, nothing else. */
static int
get_integer(struct parser *p, json_t *v, const struct field *f,
            const char *path, int64_t *out)
{
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < f->min)
        return config_field_error(p, path, "expected integer >= %lld",
                                  (long long)f->min);
    if (n > f->max)
        return config_field_error(p, path, "expected integer <= %lld",
                                  (long long)f->max);
    *out = n;
    return 0;
}

int
config_parse_int(struct parser *p, json_t *v, const struct field *f,
                 const char *path, void *base)
{
    int64_t n = 0;

    if (get_integer(p, v, f, path, &n) == -1)
        return -1;
    *(int *)config_field_at(base, f) = (int)n;
    return 0;
}

int
config_parse_size(struct parser *p, json_t *v, const struct field *f,
                  const char *path, void *base)
{
    int64_t n = 0;

    if (get_integer(p, v, f, path, &n) == -1)
        return -1;
    *(size_t *)config_field_at(base, f) = (size_t)n;
    return 0;
}

/* Durations and factors: any finite JSON number in [f->min, f->max]. */
int
config_parse_number(struct parser *p, json_t *v, const struct field *f,
                    const char *path, void *base)
{
    double d;

    if (!json_is_number(v) || !isfinite(d = json_number_value(v)) ||
        d < (double)f->min)
        return config_field_error(p, path, "expected number >= %lld",
                                  (long long)f->min);
    if (d > (double)f->max)
        return config_field_error(p, path, "expected number <= %lld",
                                  (long long)f->max);
    *(double *)config_field_at(base, f) = d == 0 ? 0 : d; /* no -0 */
    return 0;
}

int
config_parse_bool(struct parser *p, json_t *v, const struct field *f,
                  const char *path, void *base)
{
    if (!json_is_boolean(v))
        return config_field_error(p, path, "expected true or false");
    *(bool *)config_field_at(base, f) = json_is_true(v);
    return 0;
}

/* The index of v in words, or -1 with a message listing them all. */
int
config_match_word(struct parser *p, json_t *v, const char *const *words,
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
    return config_field_error(p, path, "expected one of %s", list);
}

static int
parse_fsync(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = config_match_word(p, v, aq_fsync_names, path);

    if (i == -1)
        return -1;
    *(enum aq_fsync *)config_field_at(base, f) = (enum aq_fsync)i;
    return 0;
}

static int
parse_level(struct parser *p, json_t *v, const struct field *f,
            const char *path, void *base)
{
    int i = config_match_word(p, v, aq_log_level_names, path);

    if (i == -1)
        return -1;
    *(enum aq_log_level *)config_field_at(base, f) = (enum aq_log_level)i;
    return 0;
}

static int
parse_log_format(struct parser *p, json_t *v, const struct field *f,
                 const char *path, void *base)
{
    int i = config_match_word(p, v, aq_log_format_names, path);

    if (i == -1)
        return -1;
    *(enum aq_log_format *)config_field_at(base, f) = (enum aq_log_format)i;
    return 0;
}

/* A non-empty string, or null for "none". */
static int
parse_string_or_null(struct parser *p, json_t *v, const struct field *f,
                     const char *path, void *base)
{
    if (json_is_null(v)) {
        config_replace_string(config_field_at(base, f), NULL);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return config_field_error(p, path, "expected non-empty string or null");
    config_replace_string(config_field_at(base, f), json_string_value(v));
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

    if (strncmp(s, "tcp://", 6) == 0 || strncmp(s, "tls://", 6) == 0)
        return check_hostport(s + 6);
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/')
            return "expected unix:/ABSOLUTE/PATH";
        if (strlen(s + 5) > sun_max)
            return "unix socket path longer than 107 bytes";
        return NULL;
    }
    return "expected tcp://HOST:PORT, tcp://[IPV6]:PORT, tls://HOST:PORT or "
           "unix:/PATH";
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
        return config_field_error(p, path,
                                  "expected array of at least one address");
    addrs = xcalloc(n, sizeof *addrs);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);

        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (!json_is_string(s)) {
            config_field_error(p, item, "expected string");
            goto fail;
        }
        if ((why = check_listen(json_string_value(s))) != NULL) {
            config_field_error(p, item, "%s", why);
            goto fail;
        }
        addrs[i] = xstrdup(json_string_value(s));
    }
    config_free_strings(cfg->listen, cfg->nlisten);
    cfg->listen = addrs;
    cfg->nlisten = n;
    return 0;
fail:
    config_free_strings(addrs, n);
    return -1;
}

static int
parse_metrics(struct parser *p, json_t *v, const struct field *f,
              const char *path, void *base)
{
    const char *why;

    if (json_is_null(v)) {
        config_replace_string(config_field_at(base, f), NULL);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return config_field_error(p, path, "expected \"HOST:PORT\" or null");
    if ((why = check_hostport(json_string_value(v))) != NULL)
        return config_field_error(p, path, "%s", why);
    config_replace_string(config_field_at(base, f), json_string_value(v));
    return 0;
}

/* ---- store ---- */

static int
parse_store_kind(struct parser *p, json_t *v, const struct field *f,
                 const char *path, void *base)
{
    int i = config_match_word(p, v, aq_store_kind_names, path);

    if (i == -1)
        return -1;
    *(enum aq_store_kind *)config_field_at(base, f) = (enum aq_store_kind)i;
    return 0;
}

/* libpq's own parser, so that a typo fails --check-config, not the
 * daemon's first connect. */
static int
parse_conninfo(struct parser *p, json_t *v, const struct field *f,
               const char *path, void *base)
{
    PQconninfoOption *opts;
    char *why = NULL;

    if (!json_is_string(v) || json_string_length(v) == 0)
        return config_field_error(p, path,
                                  "expected a libpq connection string");
    if ((opts = PQconninfoParse(json_string_value(v), &why)) == NULL) {
        size_t n = why != NULL ? strcspn(why, "\n") : 0;
        int rc = config_field_error(p, path, "%.*s", (int)n,
                                    why != NULL ? why : "out of memory");

        PQfreemem(why);
        return rc;
    }
    PQconninfoFree(opts);
    config_replace_string(config_field_at(base, f), json_string_value(v));
    return 0;
}

/* A schema name used unquoted in SQL: ^[a-z_][a-z0-9_]{0,62}$. */
static int
parse_schema(struct parser *p, json_t *v, const struct field *f,
             const char *path, void *base)
{
    const char *s = json_string_value(v);
    size_t n = s != NULL ? strlen(s) : 0;
    bool ok =
        n >= 1 && n <= 63 && (s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'));

    for (size_t i = 1; ok && i < n; i++)
        ok = s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
             (s[i] >= '0' && s[i] <= '9');
    if (!ok)
        return config_field_error(p, path,
                                  "expected a schema name: a-z or _, then up "
                                  "to 62 of a-z, 0-9, _");
    config_replace_string(config_field_at(base, f), s);
    return 0;
}

/* A node's name: 1..64 of [A-Za-z0-9._-]. */
static int
parse_node(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    const char *s = json_string_value(v);
    size_t n = s != NULL ? strlen(s) : 0;
    bool ok = n >= 1 && n <= 64;

    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
             s[i] == '-';
    if (!ok)
        return config_field_error(p, path,
                                  "expected 1 to 64 of A-Z, a-z, 0-9, ., _, -");
    config_replace_string(config_field_at(base, f), s);
    return 0;
}

#define TF(member) offsetof(struct aq_tls_config, member)

static const struct field tls_fields[] = {
    {"cert", parse_string_or_null, TF(cert), 0, 0, NULL},
    {"key", parse_string_or_null, TF(key), 0, 0, NULL},
    {"client_ca", parse_string_or_null, TF(client_ca), 0, 0, NULL},
    {"handshake_timeout", config_parse_number, TF(handshake_timeout), 0,
     NUMBER_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static void
tls_config_free(struct aq_tls_config *tc)
{
    if (tc == NULL)
        return;
    free(tc->cert);
    free(tc->key);
    free(tc->client_ca);
    free(tc);
}

/* "tls": null, or {"cert", "key", "client_ca", "handshake_timeout"}. */
static int
parse_tls(struct parser *p, json_t *v, const struct field *f, const char *path,
          void *base)
{
    struct aq_config *cfg = base;
    struct aq_tls_config *tc;
    char child[PATH_LEN];

    tls_config_free(cfg->tls);
    cfg->tls = NULL;
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return config_field_error(p, path, "expected object or null");
    tc = cfg->tls = xcalloc(1, sizeof *tc);
    tc->handshake_timeout = 10;
    if (config_parse_object(p, v, path, tls_fields, tc) == -1)
        return -1;
#ifndef AQ_HAVE_TLS
    (void)child;
    return config_field_error(p, path,
                              "this asyncqd was built without TLS "
                              "(ASYNCQ_TLS=OFF): expected null");
#else
    snprintf(child, sizeof child, "%s.%s", path,
             tc->cert == NULL ? "cert" : "key");
    if (tc->cert == NULL || tc->key == NULL)
        return config_field_error(p, child, "required (a PEM file)");
    if (tc->handshake_timeout <= 0) {
        snprintf(child, sizeof child, "%s.handshake_timeout", path);
        return config_field_error(p, child, "expected number > 0");
    }
    return 0;
#endif
}

/* What the sections cannot check alone: a tls:// listener needs "tls". */
static int
check_config(struct parser *p, const struct aq_config *cfg)
{
    char item[PATH_LEN];

    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (strncmp(cfg->listen[i], "tls://", 6) != 0)
            continue;
        snprintf(item, sizeof item, "listen[%zu]", i);
#ifndef AQ_HAVE_TLS
        return config_field_error(p, item,
                                  "tls:// needs TLS, and this asyncqd was "
                                  "built without it (ASYNCQ_TLS=OFF)");
#else
        if (cfg->tls == NULL)
            return config_field_error(
                p, item, "tls:// needs a \"tls\" section (cert and key)");
#endif
    }
    if (cfg->store.kind == AQ_STORE_POSTGRES && cfg->store.conninfo == NULL)
        return config_field_error(p, "store.conninfo",
                                  "required with kind \"postgres\"");
    return config_check_schedules(p, cfg);
}

/* Relative tls paths: against dir (the config file's directory). */
static void
resolve_tls_paths(struct aq_tls_config *tc, const char *file)
{
    char **paths[] = {&tc->cert, &tc->key, &tc->client_ca};
    const char *slash = strrchr(file, '/');

    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *old = *paths[i];

        if (old == NULL || old[0] == '/')
            continue;
        *paths[i] = slash == NULL
                        ? xstrdup(old)
                        : xasprintf("%.*s/%s", (int)(slash - file), file, old);
        free(old);
    }
}

int
config_parse_section(struct parser *p, json_t *v, const struct field *f,
                     const char *path, void *base)
{
    return config_parse_object(p, v, path, f->sub, base);
}

#define CF(member) offsetof(struct aq_config, member)

static const struct field producers_fields[] = {
    {"max", config_parse_int, CF(producers.max), 1, INT_MAX, NULL},
    {"window", config_parse_int, CF(producers.window), 1, INT_MAX, NULL},
    {"max_request_bytes", config_parse_size, CF(producers.max_request_bytes), 2,
     SIZE_LIMIT, NULL},
    {"idle_timeout", config_parse_number, CF(producers.idle_timeout), 0,
     NUMBER_MAX, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field journal_fields[] = {
    {"path", parse_string_or_null, CF(journal.path), 0, 0, NULL},
    {"fsync", parse_fsync, CF(journal.fsync), 0, 0, NULL},
    {"segment_bytes", config_parse_size, CF(journal.segment_bytes), 4096,
     SIZE_LIMIT, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field store_fields[] = {
    {"kind", parse_store_kind, CF(store.kind), 0, 0, NULL},
    {"conninfo", parse_conninfo, CF(store.conninfo), 0, 0, NULL},
    {"schema", parse_schema, CF(store.schema), 0, 0, NULL},
    {"node", parse_node, CF(store.node), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field results_fields[] = {
    {"ttl", config_parse_number, CF(results.ttl), 0, NUMBER_MAX, NULL},
    {"max", config_parse_size, CF(results.max), 0, SIZE_LIMIT, NULL},
    {"failed_ttl", config_parse_number, CF(results.failed_ttl), 0, NUMBER_MAX,
     NULL},
    {"failed_max", config_parse_size, CF(results.failed_max), 0, SIZE_LIMIT,
     NULL},
    {"max_bytes", config_parse_size, CF(results.max_bytes), 0, SIZE_LIMIT,
     NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field shutdown_fields[] = {
    {"grace", config_parse_number, CF(shutdown.grace), 0, NUMBER_MAX, NULL},
    {"drain", config_parse_bool, CF(shutdown.drain), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field auth_fields[] = {
    {"token_file", parse_string_or_null, CF(auth_token_file), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field log_fields[] = {
    {"level", parse_level, CF(log_level), 0, 0, NULL},
    {"format", parse_log_format, CF(log_format), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static const struct field config_fields[] = {
    {"listen", parse_listen, CF(listen), 0, 0, NULL},
    {"metrics", parse_metrics, CF(metrics), 0, 0, NULL},
    {"producers", config_parse_section, 0, 0, 0, producers_fields},
    {"journal", config_parse_section, 0, 0, 0, journal_fields},
    {"store", config_parse_section, 0, 0, 0, store_fields},
    {"results", config_parse_section, 0, 0, 0, results_fields},
    {"shutdown", config_parse_section, 0, 0, 0, shutdown_fields},
    {"auth", config_parse_section, 0, 0, 0, auth_fields},
    {"tls", parse_tls, CF(tls), 0, 0, NULL},
    {"log", config_parse_section, 0, 0, 0, log_fields},
    {"queues", config_parse_queues, 0, 0, 0, NULL},
    {"schedules", config_parse_schedules, 0, 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

/* Reads the keys of obj through fields; path names obj ("" at the top). */
int
config_parse_object(struct parser *p, json_t *obj, const char *path,
                    const struct field *fields, void *base)
{
    char child[PATH_LEN];
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return config_field_error(p, path, "expected object");
    json_object_foreach (obj, key, v) {
        const struct field *f = fields;

        while (f->name != NULL && strcmp(f->name, key) != 0)
            f++;
        snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", key);
        if (f->name == NULL)
            return config_field_error(p, child, "unknown field");
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
    if (config_parse_object(&p, root, "", config_fields, cfg) == -1 ||
        check_config(&p, cfg) == -1)
        goto fail;
    if (cfg->tls != NULL && file != NULL)
        resolve_tls_paths(cfg->tls, file);
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
    cfg->store.kind = AQ_STORE_JOURNAL;
    cfg->store.schema = xstrdup(DEFAULT_SCHEMA);
    cfg->results.ttl = 3600;
    cfg->results.max = 100000;
    cfg->results.failed_ttl = 604800;
    cfg->results.failed_max = 10000;
    cfg->results.max_bytes = 268435456;
    cfg->shutdown.grace = 10;
    cfg->shutdown.drain = false;
    cfg->auth_token_file = NULL;
    cfg->log_level = AQ_LOG_INFO;
    cfg->log_format = AQ_LOG_TEXT;
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
    config_free_strings(cfg->listen, cfg->nlisten);
    free(cfg->metrics);
    free(cfg->journal.path);
    free(cfg->store.conninfo);
    free(cfg->store.schema);
    free(cfg->store.node);
    free(cfg->auth_token_file);
    tls_config_free(cfg->tls);
    for (size_t i = 0; i < cfg->nqueues; i++)
        aq_queue_config_clear(&cfg->queues[i]);
    free(cfg->queues);
    for (size_t i = 0; i < cfg->nschedules; i++)
        aq_schedule_config_clear(&cfg->schedules[i]);
    free(cfg->schedules);
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
