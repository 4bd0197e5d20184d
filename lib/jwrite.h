/* SPDX-License-Identifier: MIT */
/*
 * lib/jwrite.h: compact JSON text from jansson values, for everything
 * asyncqd sends. Unlike json_dumps it can splice raw JSON text (a request's
 * id byte for byte, a job's args and result exactly as stored), writes
 * every real so that it reads back as the same double (the shortest of 15,
 * 16 or 17 significant digits), and can stop between values when the
 * output is full and go on later, so a large reply never sits in memory
 * twice.
 */
#ifndef AQ_JWRITE_H
#define AQ_JWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct evbuffer;
struct aq_jwrite;

/* A value written as text, verbatim (a new reference, the caller's). text
 * must be valid compact JSON; it is copied. Only lib/jwrite understands
 * it: never hand such a value to json_dumps. */
json_t *aq_jraw(const char *text, size_t len);

/* Appends v's compact JSON text to out, whole. */
void aq_jwrite_all(const json_t *v, struct evbuffer *out);
/* v's compact JSON text as a new NUL-terminated string (the caller's to
 * free); *len gets its length when len is not NULL. */
char *aq_jwrite_string(const json_t *v, size_t *len);

/* A writer of v that can stop between values (takes the reference v).
 * aq_jwrite_step appends to out until v is written (true) or out holds at
 * least limit bytes (false: call again once it has drained). */
struct aq_jwrite *aq_jwrite_new(json_t *v);
bool aq_jwrite_step(struct aq_jwrite *w, struct evbuffer *out, size_t limit);
void aq_jwrite_free(struct aq_jwrite *w); /* NULL is fine */

#endif
