/* SPDX-License-Identifier: MIT */
/*
 * lib/xmalloc.h: allocation that cannot fail. Out of memory prints a message
 * and aborts (as tmux does): configured limits bound memory, so callers never
 * check for NULL. The returned memory is the caller's, freed with free().
 */
#ifndef AQ_XMALLOC_H
#define AQ_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* A copy of the len bytes at p (len 0 is fine). */
void *xmemdup(const void *p, size_t len);
/* The formatted string, as asprintf makes it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Routes jansson's and libevent's allocations through the functions above.
 * Call once, before any other libevent or jansson call.
 */
void aq_xmalloc_hook_libs(void);

/*
 * Giving memory back to the system after bursts (glibc keeps what is freed
 * below M_TRIM_THRESHOLD). Code that frees much notes it in units of about
 * 300 bytes (a queued job); aq_trim_maybe, called once a second, runs
 * malloc_trim once AQ_TRIM_UNITS are noted. One thread (the loop's) only.
 */
#define AQ_TRIM_UNITS 100000
void aq_trim_note(size_t units);
void aq_trim_maybe(void);

#endif
