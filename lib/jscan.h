/* SPDX-License-Identifier: MIT */
/*
 * lib/jscan.h: JSON scanners that build nothing. The exact validator
 * (aq_jscan_check) accepts every RFC 8259 text and lets the general path
 * find the raw bytes of a request's id and args. The hot path's scanner
 * (aq_jscan_value) validates JSON text in place and answers "valid" only for
 * the plain JSON that jansson (as asyncqd configures it: duplicate keys
 * rejected, no \u0000) would accept with the same meaning. Anything rarer (\u
 * escapes, exponents, long numbers, deep nesting, objects with many keys,
 * invalid text) is "unsure": the caller then parses with jansson, which gives
 * the exact answer and error message. So the fast path can never accept what
 * the slow path would refuse.
 */
#ifndef AQ_JSCAN_H
#define AQ_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* The bytes of the word w (eight bytes, little-endian load) that may not
 * stand as themselves in a plain string (plain: ASCII from 0x20, neither
 * '"' nor '\\'), as their high bits. Each test is the classic "has a byte
 * less than n" bit trick; a borrow can flag a byte above a flagged one,
 * never below, so the lowest flag is exact. */
static inline uint64_t
aq_jscan_special_bytes(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');

    return (w & high) | ((w - ones * 0x20) & ~w & high) |
           ((quote - ones) & ~quote & high) |
           ((bslash - ones) & ~bslash & high);
}

/* How many of the n bytes at p are plain string bytes, from the first:
 * the offset of the first quote, backslash, control or non-ASCII byte, or
 * n if there is none. */
static inline size_t
aq_jscan_plain_run(const char *p, size_t n)
{
    size_t i = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= n; i += 8) {
        uint64_t w, bad;

        memcpy(&w, p + i, 8);
        if ((bad = aq_jscan_special_bytes(w)) != 0)
            return i + (size_t)__builtin_ctzll(bad) / 8;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            return i;
    }
    return n;
}

/* ---- the exact validator, for the general path ---- */

/* Nesting deeper than this is refused (RFC 8259 section 9 allows a limit;
 * jansson's own is the same). */
#define AQ_JSCAN_MAX_DEPTH 2048

/* A byte range of the text: a whole JSON value, or a string with its
 * quotes. */
struct aq_jspan {
    const char *p; /* NULL = absent */
    size_t n;
};

/* Validates p[0..len) as exactly one JSON text (RFC 8259: any number, any
 * escape, \u0000 included; whitespace around it). Returns true, or false
 * with *err_pos (the offset of the first offending byte) and *err_what (a
 * static message). Never recursive: any depth up to the limit costs the
 * same stack. */
bool aq_jscan_check(const char *p, size_t len, size_t *err_pos,
                    const char **err_what);

/* Iterating a validated container. enter: *pos at the '{' or '[' (after
 * whitespace); next: the next member (key = the name with its quotes; for
 * an array key.p is NULL) and its value, or false at the end (the closing
 * bracket consumed). */
void aq_jscan_enter(const char *p, size_t len, size_t *pos);
bool aq_jscan_next(const char *p, size_t len, size_t *pos, struct aq_jspan *key,
                   struct aq_jspan *val);

/* The contents of a validated string span, unescaped into buf (cap bytes,
 * NUL-terminated). False if it does not fit. *has_nul tells whether it
 * holds U+0000 (then strlen(buf) is less than *n). */
bool aq_jscan_unescape(struct aq_jspan str, char *buf, size_t cap, size_t *n,
                       bool *has_nul);

/* Copies the validated value v without its insignificant whitespace into
 * dst (at least v.n bytes); returns the length written. */
size_t aq_jscan_compact(struct aq_jspan v, char *dst);

/* Whether the validated value v has an object member name holding
 * \u0000, which jansson cannot represent. */
bool aq_jscan_has_nul_key(struct aq_jspan v);

#endif
