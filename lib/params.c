/* SPDX-License-Identifier: MIT */
/*
 * lib/params.c: strict params. Every getter finds its value, checks it
 * against one expectation and, on failure, says "PATH.NAME: expected ..."
 * (or "PATH[i]: ..." for an array's element). Messages are formatted only
 * when a check fails.
 */
#include "params.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "error.h"

#define MAX_ID ((INT64_C(1) << 53) - 1)

/* Where a value sits in its reader: member name, or element index. */
struct where {
    const struct aq_params *p;
    const char *name; /* NULL: element index */
    size_t index;
};

static int where_fail(struct where w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int where_vfail(struct where w, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static int
where_vfail(struct where w, const char *fmt, va_list ap)
{
    char why[200];

    vsnprintf(why, sizeof why, fmt, ap);
    if (w.name != NULL)
        aq_error_set(w.p->err, AQ_ERR_INVALID_PARAMS, "%s.%.100s: %s",
                     w.p->path, w.name, why);
    else
        aq_error_set(w.p->err, AQ_ERR_INVALID_PARAMS, "%s[%zu]: %s", w.p->path,
                     w.index, why);
    return -1;
}

static int
where_fail(struct where w, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    where_vfail(w, fmt, ap);
    va_end(ap);
    return -1;
}

void
aq_params_init(struct aq_params *p, const json_t *v, const char *path,
               const char *kind, struct aq_error *err)
{
    p->v = v;
    snprintf(p->path, sizeof p->path, "%s", path);
    p->kind = kind;
    p->err = err;
}

int
aq_params_fail(const struct aq_params *p, const char *name, const char *fmt,
               ...)
{
    char why[200];
    va_list ap;

    va_start(ap, fmt);
    if (name != NULL)
        where_vfail((struct where){p, name, 0}, fmt, ap);
    else {
        vsnprintf(why, sizeof why, fmt, ap);
        aq_error_set(p->err, AQ_ERR_INVALID_PARAMS, "%s: %s", p->path, why);
    }
    va_end(ap);
    return -1;
}

/* " for kind K" when the reader reads a kind's args, else "". */
static const char *
for_kind(const struct aq_params *p, char *buf, size_t cap)
{
    if (p->kind == NULL)
        return "";
    snprintf(buf, cap, " for kind %s", p->kind);
    return buf;
}

int
aq_params_fields(const struct aq_params *p, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)p->v, key, v) {
        size_t i;
        char kind[48];

        for (i = 0; allowed[i] != NULL; i++) {
            if (strcmp(key, allowed[i]) == 0)
                break;
        }
        if (allowed[i] == NULL)
            return aq_params_fail(p, key, "unknown field%s",
                                  for_kind(p, kind, sizeof kind));
    }
    return 0;
}

/* Member name of p: the value, or NULL with *rc 0 (absent) or -1
 * (absent, but required). */
static const json_t *
member(const struct aq_params *p, const char *name, unsigned flags, int *rc)
{
    const json_t *v = json_object_get(p->v, name);
    char kind[48];

    *rc = 0;
    if (v == NULL && (flags & AQ_PARAM_REQUIRED))
        *rc = aq_params_fail(p, name, "required%s",
                             for_kind(p, kind, sizeof kind));
    return v;
}

/* ---- values ---- */

static int
read_string(struct where w, const json_t *v, unsigned flags, const char **out)
{
    if (!json_is_string(v))
        return where_fail(w, "expected string");
    /* Valid JSON, but no name, path or argument can hold U+0000. */
    if (!(flags & AQ_PARAM_NUL_OK) &&
        strlen(json_string_value(v)) != json_string_length(v))
        return where_fail(w, "expected string without \\u0000");
    *out = json_string_value(v);
    return 1;
}

static int
read_id(struct where w, const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > MAX_ID)
        return where_fail(w,
                          "expected a job id, an integer between 1 and 2^53-1");
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* ---- members ---- */

int
aq_params_string(const struct aq_params *p, const char *name, unsigned flags,
                 const char **out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    return v == NULL ? rc
                     : read_string((struct where){p, name, 0}, v, flags, out);
}

int
aq_params_int(const struct aq_params *p, const char *name, unsigned flags,
              json_int_t min, json_int_t max, json_int_t *out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    if (v == NULL)
        return rc;
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return aq_params_fail(p, name, "expected integer between %lld and %lld",
                              (long long)min, (long long)max);
    *out = json_integer_value(v);
    return 1;
}

int
aq_params_duration(const struct aq_params *p, const char *name, unsigned flags,
                   double *out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    if (v == NULL)
        return rc;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
        !(json_number_value(v) <= AQ_DURATION_MAX_S))
        return aq_params_fail(p, name,
                              "expected seconds, a number between 0 and 1e9");
    *out = json_number_value(v);
    return 1;
}

int
aq_params_bool(const struct aq_params *p, const char *name, unsigned flags,
               bool *out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    if (v == NULL)
        return rc;
    if (!json_is_boolean(v))
        return aq_params_fail(p, name, "expected true or false");
    *out = json_is_true(v);
    return 1;
}

int
aq_params_id(const struct aq_params *p, const char *name, unsigned flags,
             uint64_t *out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    return v == NULL ? rc : read_id((struct where){p, name, 0}, v, out);
}

int
aq_params_word(const struct aq_params *p, const char *name, unsigned flags,
               const char *const *words, size_t *out)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);
    char list[160];
    size_t len = 0;

    if (v == NULL)
        return rc;
    for (size_t i = 0; json_is_string(v) && words[i] != NULL; i++) {
        if (strcmp(json_string_value(v), words[i]) == 0 &&
            strlen(words[i]) == json_string_length(v)) {
            *out = i;
            return 1;
        }
    }
    list[0] = '\0';
    for (size_t i = 0; words[i] != NULL && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"",
                                i > 0 ? ", " : "", words[i]);
    return aq_params_fail(p, name, "expected one of %s", list);
}

/* ---- objects and arrays ---- */

/* sub reads v, member name of p. */
static void
sub_init(const struct aq_params *p, const json_t *v, const char *name,
         struct aq_params *sub)
{
    sub->v = v;
    /* A path too long for messages is cut short; nothing else reads it. */
    if (snprintf(sub->path, sizeof sub->path, "%s.%s", p->path, name) >=
        (int)sizeof sub->path)
        sub->path[sizeof sub->path - 1] = '\0';
    sub->kind = p->kind;
    sub->err = p->err;
}

int
aq_params_object(const struct aq_params *p, const char *name, unsigned flags,
                 const char *what, struct aq_params *sub)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    if (v == NULL)
        return rc;
    if (!json_is_object(v))
        return aq_params_fail(p, name, "expected object%s%s",
                              what != NULL ? " of " : "",
                              what != NULL ? what : "");
    sub_init(p, v, name, sub);
    return 1;
}

int
aq_params_array(const struct aq_params *p, const char *name, unsigned flags,
                const char *what, struct aq_params *sub)
{
    int rc;
    const json_t *v = member(p, name, flags, &rc);

    if (v == NULL)
        return rc;
    if (!json_is_array(v) || json_array_size(v) == 0)
        return aq_params_fail(p, name, "expected a non-empty array of %s",
                              what);
    sub_init(p, v, name, sub);
    return 1;
}

int
aq_params_string_at(const struct aq_params *a, size_t i, unsigned flags,
                    const char **out)
{
    return read_string((struct where){a, NULL, i}, json_array_get(a->v, i),
                       flags, out);
}

int
aq_params_id_at(const struct aq_params *a, size_t i, uint64_t *out)
{
    return read_id((struct where){a, NULL, i}, json_array_get(a->v, i), out);
}
