/* SPDX-License-Identifier: MIT */
/*
 * lib/jscan.h: a JSON scanner for the hot path. It validates JSON text in
 * place, without building anything, and answers "valid" only for the plain
 * JSON that jansson (as asyncqd configures it: duplicate keys rejected, no
 * \u0000) would accept with the same meaning. Anything rarer (\u escapes,
 * exponents, long numbers, deep nesting, objects with many keys, invalid
 * text) is "unsure": the caller then parses with jansson, which gives the
 * exact answer and error message. So the fast path can never accept what
 * the slow path would refuse.
 */
#ifndef AQ_JSCAN_H
#define AQ_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if the
 * bytes there are not valid UTF-8 (overlong, surrogate, past U+10FFFF). */
size_t aq_utf8_seq_len(const unsigned char *s, size_t n);

/* Scans one JSON value starting at p[*pos] (after leading whitespace),
 * moving *pos past it and trailing whitespace. Returns true when the value
 * is plain valid JSON, false when unsure (see above). */
bool aq_jscan_value(const char *p, size_t len, size_t *pos);

/* A string value with no escapes, which the caller may use as its bytes:
 * on true, *s and *n are its contents (not NUL-terminated). False when it
 * is not a string, has escapes, or is unsure. */
bool aq_jscan_plain_string(const char *p, size_t len, size_t *pos,
                           const char **s, size_t *n);

#endif
