/* SPDX-License-Identifier: MIT */
/*
 * lib/config_schedule.c: the "schedules" section of asyncqd's
 * configuration (spec section 11): each schedule's fields, its cron and
 * time zone checked here (lib/cron.h), its queue and kind checked once
 * every section is read. Schedules are kept in key order.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config-internal.h"
#include "cron.h"
#include "error.h"
#include "job.h"
#include "xmalloc.h"

#define SCHEDULE_KEY_MAX 64 /* bytes */
#define JOB_NAME_MAX 200    /* bytes: AQ_NAME_MAX (lib/broker.h) */
#define RETRIES_MAX 1000000 /* as put takes */
#define SF(member) offsetof(struct aq_schedule_config, member)

static const char *const overlap_names[] = {"skip", "allow", NULL};
static const char *const catch_up_names[] = {"one", "none", NULL};

static int
parse_cron(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    struct aq_error err;
    struct aq_cron *c;

    if (!json_is_string(v))
        return config_field_error(p, path, "expected string");
    if ((c = aq_cron_parse(json_string_value(v), &err)) == NULL)
        return config_field_error(p, path, "%s", err.message);
    aq_cron_free(c);
    config_replace_string(config_field_at(base, f), json_string_value(v));
    return 0;
}

/* A string of 1 to f->max bytes. */
static int
parse_string(struct parser *p, json_t *v, const struct field *f,
             const char *path, void *base)
{
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > (size_t)f->max)
        return config_field_error(
            p, path, "expected a string of 1 to %lld bytes", (long long)f->max);
    config_replace_string(config_field_at(base, f), json_string_value(v));
    return 0;
}

static int
parse_args(struct parser *p, json_t *v, const struct field *f, const char *path,
           void *base)
{
    char **dst = config_field_at(base, f);
    char *text;

    if (!json_is_object(v))
        return config_field_error(p, path, "expected object");
    if ((text = json_dumps(v, JSON_COMPACT)) == NULL)
        abort(); /* out of memory, as xmalloc */
    free(*dst);
    *dst = xstrdup(text); /* freed with free(), whatever jansson uses */
    free(text);
    return 0;
}

static int
parse_priority(struct parser *p, json_t *v, const struct field *f,
               const char *path, void *base)
{
    int n = 0;
    struct field g = *f;

    g.offset = 0;
    if (config_parse_int(p, v, &g, path, &n) == -1)
        return -1;
    *(int32_t *)config_field_at(base, f) = (int32_t)n;
    return 0;
}

static int
parse_overlap(struct parser *p, json_t *v, const struct field *f,
              const char *path, void *base)
{
    int i = config_match_word(p, v, overlap_names, path);

    if (i == -1)
        return -1;
    *(bool *)config_field_at(base, f) = i == 1;
    return 0;
}

static int
parse_catch_up(struct parser *p, json_t *v, const struct field *f,
               const char *path, void *base)
{
    int i = config_match_word(p, v, catch_up_names, path);

    if (i == -1)
        return -1;
    *(bool *)config_field_at(base, f) = i == 1;
    return 0;
}

static const struct field schedule_fields[] = {
    {"cron", parse_cron, SF(cron), 0, 0, NULL},
    {"timezone", parse_string, SF(timezone), 1, 200, NULL},
    {"queue", parse_string, SF(queue), 1, 64, NULL},
    {"kind", config_parse_kind, SF(kind), 0, 0, NULL},
    {"args", parse_args, SF(args), 0, 0, NULL},
    {"name", parse_string, SF(name), 1, JOB_NAME_MAX, NULL},
    {"priority", parse_priority, SF(priority), INT32_MIN, INT32_MAX, NULL},
    {"timeout", config_parse_number, SF(timeout), 0, NUMBER_MAX, NULL},
    {"retries", config_parse_int, SF(retries), 0, RETRIES_MAX, NULL},
    {"overlap", parse_overlap, SF(is_overlap_allowed), 0, 0, NULL},
    {"catch_up", parse_catch_up, SF(is_catch_up_none), 0, 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL},
};

static bool
is_schedule_key(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > SCHEDULE_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static void
schedule_defaults(struct aq_schedule_config *sc, const char *key)
{
    memset(sc, 0, sizeof *sc);
    sc->key = xstrdup(key);
    sc->timezone = xstrdup("UTC");
    sc->queue = xstrdup("default");
    sc->args = xstrdup("{}");
    sc->timeout = -1;
    sc->retries = -1;
}

static int
cmp_key(const void *a, const void *b)
{
    const struct aq_schedule_config *x = a, *y = b;

    return strcmp(x->key, y->key);
}

/* Each time zone named is loaded once per parse: zones is the set of
 * those known good. */
static int
check_timezone(struct parser *p, const struct aq_schedule_config *sc,
               const char *spath, json_t *zones)
{
    char path[PATH_LEN];
    struct aq_error err;
    struct aq_tz *z;

    if (json_object_get(zones, sc->timezone) != NULL)
        return 0;
    if ((z = aq_tz_load(sc->timezone, &err)) == NULL) {
        snprintf(path, sizeof path, "%.200s.timezone", spath);
        return config_field_error(p, path, "%s", err.message);
    }
    aq_tz_free(z);
    json_object_set_new(zones, sc->timezone, json_true());
    return 0;
}

int
config_parse_schedules(struct parser *p, json_t *v, const struct field *f,
                       const char *path, void *base)
{
    struct aq_config *cfg = base;
    char spath[PATH_LEN];
    json_t *zones, *sv;
    const char *key;
    int rc = 0;

    if (!json_is_object(v))
        return config_field_error(p, path, "expected object");
    for (size_t i = 0; i < cfg->nschedules; i++)
        aq_schedule_config_clear(&cfg->schedules[i]);
    free(cfg->schedules);
    cfg->schedules = xcalloc(json_object_size(v) + 1, sizeof *cfg->schedules);
    cfg->nschedules = 0;
    zones = json_object();
    json_object_foreach (v, key, sv) {
        struct aq_schedule_config *sc = &cfg->schedules[cfg->nschedules];

        if (!is_schedule_key(key)) {
            rc = config_field_error(p, path,
                                    "\"%.64s\": expected schedule name of 1 "
                                    "to 64 characters from [A-Za-z0-9_.-]",
                                    key);
            break;
        }
        schedule_defaults(sc, key);
        cfg->nschedules++;
        snprintf(spath, sizeof spath, "%s.%s", path, key);
        if ((rc = config_parse_object(p, sv, spath, schedule_fields, sc)) < 0)
            break;
        if (sc->cron == NULL) {
            snprintf(spath, sizeof spath, "%.64s.%.64s.cron", path, key);
            rc = config_field_error(p, spath,
                                    "required (\"*/5 * * * *\", @hourly, "
                                    "@every 10m, ...)");
            break;
        }
        if ((rc = check_timezone(p, sc, spath, zones)) < 0)
            break;
    }
    json_decref(zones);
    if (rc == 0 && cfg->nschedules > 1)
        qsort(cfg->schedules, cfg->nschedules, sizeof *cfg->schedules, cmp_key);
    return rc;
}

int
config_check_schedules(struct parser *p, const struct aq_config *cfg)
{
    char path[PATH_LEN];

    for (size_t i = 0; i < cfg->nschedules; i++) {
        const struct aq_schedule_config *sc = &cfg->schedules[i];
        const struct aq_queue_config *qc = aq_config_queue(cfg, sc->queue);
        enum aq_kind kind, qkind;

        if (qc == NULL) {
            snprintf(path, sizeof path, "schedules.%.64s.queue", sc->key);
            return config_field_error(p, path, "no queue \"%s\" in queues",
                                      sc->queue);
        }
        if (sc->kind == NULL || aq_kind_parse(sc->kind, &kind) < 0 ||
            aq_kind_parse(qc->kind, &qkind) < 0 || kind == qkind ||
            (qc->kinds & (1u << kind)) != 0)
            continue;
        snprintf(path, sizeof path, "schedules.%.64s.kind", sc->key);
        return config_field_error(p, path,
                                  "queue %s does not run kind %s (see "
                                  "queues.%s.kinds)",
                                  sc->queue, sc->kind, sc->queue);
    }
    return 0;
}

const struct aq_schedule_config *
aq_config_schedule(const struct aq_config *cfg, const char *key)
{
    size_t lo = 0, hi = cfg->nschedules;

    while (lo < hi) { /* in key order */
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cfg->schedules[mid].key, key);

        if (c == 0)
            return &cfg->schedules[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void
aq_schedule_config_clear(struct aq_schedule_config *sc)
{
    if (sc == NULL)
        return;
    free(sc->key);
    free(sc->cron);
    free(sc->timezone);
    free(sc->queue);
    free(sc->kind);
    free(sc->args);
    free(sc->name);
    memset(sc, 0, sizeof *sc);
}

static bool
str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
aq_schedule_config_equal(const struct aq_schedule_config *a,
                         const struct aq_schedule_config *b)
{
    return str_eq(a->key, b->key) && str_eq(a->cron, b->cron) &&
           str_eq(a->timezone, b->timezone) && str_eq(a->queue, b->queue) &&
           str_eq(a->kind, b->kind) && str_eq(a->args, b->args) &&
           str_eq(a->name, b->name) && a->priority == b->priority &&
           a->timeout == b->timeout && a->retries == b->retries &&
           a->is_overlap_allowed == b->is_overlap_allowed &&
           a->is_catch_up_none == b->is_catch_up_none;
}
