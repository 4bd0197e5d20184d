/* SPDX-License-Identifier: MIT */
/* lib/xmalloc.c: allocators that abort on out of memory. */
#include "xmalloc.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AQ_CLIENT_LIB
#include <event2/event.h>
#endif
#include <jansson.h>

static void
out_of_memory(size_t size)
{
    fprintf(stderr, "asyncq: out of memory allocating %zu bytes\n", size);
    abort();
}

void *
xmalloc(size_t size)
{
    void *p = malloc(size != 0 ? size : 1);

    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb != 0 ? nmemb : 1, size != 0 ? size : 1);

    if (p == NULL)
        out_of_memory(nmemb * size);
    return p;
}

void *
xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size != 0 ? size : 1);

    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        out_of_memory(SIZE_MAX);
    return xrealloc(ptr, nmemb * size);
}

char *
xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;

    return memcpy(xmalloc(len), s, len);
}

void *
xmemdup(const void *p, size_t len)
{
    return memcpy(xmalloc(len), p, len);
}

char *
xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "asyncq: out of memory formatting \"%s\"\n", fmt);
        abort();
    }
    return s;
}

/* The client library (libasyncq-client) has no libevent to hook. */
#ifndef AQ_CLIENT_LIB
/* libevent expects realloc(p, 0) semantics of its own: free and NULL. */
static void *
event_realloc(void *ptr, size_t size)
{
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return xrealloc(ptr, size);
}

void
aq_xmalloc_hook_libs(void)
{
    json_set_alloc_funcs(xmalloc, free);
    event_set_mem_functions(xmalloc, event_realloc, free);
}
#endif

static size_t trim_units; /* noted since the last malloc_trim */

void
aq_trim_note(size_t units)
{
    trim_units += units;
}

void
aq_trim_maybe(void)
{
    if (trim_units < AQ_TRIM_UNITS)
        return;
    trim_units = 0;
    malloc_trim(0);
}
