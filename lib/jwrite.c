/* SPDX-License-Identifier: MIT */
/*
 * lib/jwrite.c: the JSON writer (see jwrite.h). A raw value is an object
 * whose only member name is "\xff": invalid UTF-8, so no parsed or checked
 * object can have it. The resumable writer keeps a stack of the containers
 * it is inside, one frame each, and gives control back only between two
 * values.
 */
#include "jwrite.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "xmalloc.h"

#define RAW_KEY "\xff"

json_t *
aq_jraw(const char *text, size_t len)
{
    json_t *o = json_object();

    json_object_set_new_nocheck(o, RAW_KEY, json_stringn_nocheck(text, len));
    return o;
}

/* The text of a raw value, or NULL if v is not one. */
static const json_t *
raw_text(const json_t *v)
{
    void *it;

    if (!json_is_object(v) || json_object_size(v) != 1)
        return NULL;
    it = json_object_iter((json_t *)v);
    if (strcmp(json_object_iter_key(it), RAW_KEY) != 0)
        return NULL;
    return json_object_iter_value(it);
}

static void
write_string(struct evbuffer *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;

    evbuffer_add(out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6] = {'\\', 0};
        size_t k = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        evbuffer_add(out, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            k = 6;
            break;
        }
        evbuffer_add(out, esc, k);
    }
    evbuffer_add(out, s + start, n - start);
    evbuffer_add(out, "\"", 1);
}

/* The shortest of 15, 16 and 17 significant digits that reads back as d
 * (17 always does), with ".0" when it would read as an integer. */
static void
write_real(struct evbuffer *out, double d)
{
    char buf[40];
    int n = 0;

    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf - 2, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (strpbrk(buf, ".eEn") == NULL) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    evbuffer_add(out, buf, (size_t)n);
}

/* A scalar, a raw value, or an empty container: written whole. False for
 * a container with members, which the caller walks. */
static bool
write_leaf(struct evbuffer *out, const json_t *v)
{
    const json_t *raw;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if ((raw = raw_text(v)) != NULL) {
            evbuffer_add(out, json_string_value(raw), json_string_length(raw));
            return true;
        }
        if (json_object_size(v) > 0)
            return false;
        evbuffer_add(out, "{}", 2);
        return true;
    case JSON_ARRAY:
        if (json_array_size(v) > 0)
            return false;
        evbuffer_add(out, "[]", 2);
        return true;
    case JSON_STRING:
        write_string(out, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        evbuffer_add_printf(out, "%" JSON_INTEGER_FORMAT,
                            json_integer_value(v));
        return true;
    case JSON_REAL:
        write_real(out, json_real_value(v));
        return true;
    case JSON_TRUE:
        evbuffer_add(out, "true", 4);
        return true;
    case JSON_FALSE:
        evbuffer_add(out, "false", 5);
        return true;
    default:
        evbuffer_add(out, "null", 4);
        return true;
    }
}

struct frame {
    const json_t *c; /* the container; borrowed from the writer's root */
    void *iter;      /* objects: the next member */
    size_t next;     /* arrays: the next index */
};

struct aq_jwrite {
    json_t *root; /* owned */
    bool started;
    struct frame *stack; /* owned */
    size_t depth, cap;
};

struct aq_jwrite *
aq_jwrite_new(json_t *v)
{
    struct aq_jwrite *w = xcalloc(1, sizeof *w);

    w->root = v;
    return w;
}

void
aq_jwrite_free(struct aq_jwrite *w)
{
    if (w == NULL)
        return;
    json_decref(w->root);
    free(w->stack);
    free(w);
}

/* Writes v, or opens it as a new frame. */
static void
begin_value(struct aq_jwrite *w, struct evbuffer *out, const json_t *v)
{
    struct frame *f;

    if (write_leaf(out, v))
        return;
    if (w->depth == w->cap) {
        w->cap = w->cap != 0 ? w->cap * 2 : 8;
        w->stack = xreallocarray(w->stack, w->cap, sizeof *w->stack);
    }
    f = &w->stack[w->depth++];
    f->c = v;
    f->next = 0;
    f->iter = NULL;
    if (json_is_object(v)) {
        f->iter = json_object_iter((json_t *)v);
        evbuffer_add(out, "{", 1);
    } else
        evbuffer_add(out, "[", 1);
}

bool
aq_jwrite_step(struct aq_jwrite *w, struct evbuffer *out, size_t limit)
{
    if (!w->started) {
        w->started = true;
        begin_value(w, out, w->root);
    }
    while (w->depth > 0) {
        struct frame *f = &w->stack[w->depth - 1];
        const json_t *v;

        if (evbuffer_get_length(out) >= limit)
            return false;
        if (json_is_object(f->c)) {
            const char *key;

            if (f->iter == NULL) {
                evbuffer_add(out, "}", 1);
                w->depth--;
                continue;
            }
            key = json_object_iter_key(f->iter);
            v = json_object_iter_value(f->iter);
            if (f->next++ > 0)
                evbuffer_add(out, ",", 1);
            f->iter = json_object_iter_next((json_t *)f->c, f->iter);
            write_string(out, key, strlen(key));
            evbuffer_add(out, ":", 1);
        } else {
            if (f->next == json_array_size(f->c)) {
                evbuffer_add(out, "]", 1);
                w->depth--;
                continue;
            }
            v = json_array_get(f->c, f->next);
            if (f->next++ > 0)
                evbuffer_add(out, ",", 1);
        }
        begin_value(w, out, v); /* may move w->stack */
    }
    return true;
}

void
aq_jwrite_all(const json_t *v, struct evbuffer *out)
{
    struct aq_jwrite w = {.root = (json_t *)v};

    aq_jwrite_step(&w, out, SIZE_MAX);
    free(w.stack);
}

char *
aq_jwrite_string(const json_t *v, size_t *len)
{
    struct evbuffer *buf = evbuffer_new();
    size_t n;
    char *s;

    aq_jwrite_all(v, buf);
    n = evbuffer_get_length(buf);
    s = xmalloc(n + 1);
    evbuffer_remove(buf, s, n);
    s[n] = '\0';
    evbuffer_free(buf);
    if (len != NULL)
        *len = n;
    return s;
}
