/* SPDX-License-Identifier: MIT */
/*
 * lib/jscan.c: a conservative JSON validator (see jscan.h). Recursive
 * descent with a small depth bound; every doubt answers "unsure".
 */
#include "jscan.h"

#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_KEYS 16         /* per object, for the duplicate check */
#define MAX_NUMBER_CHARS 15 /* beyond, jansson may refuse or round */

struct scan {
    const unsigned char *p;
    size_t len, pos;
};

size_t
aq_utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

static void
skip_ws(struct scan *s)
{
    while (s->pos < s->len && (s->p[s->pos] == ' ' || s->p[s->pos] == '\t' ||
                               s->p[s->pos] == '\n' || s->p[s->pos] == '\r'))
        s->pos++;
}

/* A string at s->pos (the opening quote). *has_escape tells whether it
 * held an escape; its contents are [*start, s->pos - 1). */
/* The bytes of w that are not plain string bytes (plain: ASCII from 0x20,
 * neither '"' nor '\\'), as their high bits. Each test is the classic "has
 * a byte less than n" bit trick; a borrow can flag a byte above a flagged
 * one, never below, so the lowest flag is exact. */
static uint64_t
special_bytes(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');

    return (w & high) | ((w - ones * 0x20) & ~w & high) |
           ((quote - ones) & ~quote & high) |
           ((bslash - ones) & ~bslash & high);
}

static bool
scan_string(struct scan *s, size_t *start, bool *has_escape)
{
    *has_escape = false;
    if (s->pos >= s->len || s->p[s->pos] != '"')
        return false;
    *start = ++s->pos;
    while (s->pos < s->len) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Most bytes are plain: eight at a time, then straight to the
         * first that is not (the word's lowest flagged byte). */
        if (s->pos + 8 <= s->len) {
            uint64_t w, bad;

            memcpy(&w, s->p + s->pos, 8);
            if ((bad = special_bytes(w)) == 0) {
                s->pos += 8;
                continue;
            }
            s->pos += (size_t)__builtin_ctzll(bad) / 8;
        }
#endif
        unsigned char c = s->p[s->pos];

        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            s->pos++;
            continue;
        }
        if (c == '"') {
            s->pos++;
            return true;
        }
        if (c < 0x20)
            return false; /* a control character: invalid */
        if (c == '\\') {
            if (s->pos + 1 >= s->len ||
                strchr("\"\\/bfnrt", s->p[s->pos + 1]) == NULL ||
                s->p[s->pos + 1] == '\0')
                return false; /* \u (surrogates, \u0000) or invalid */
            *has_escape = true;
            s->pos += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t n = aq_utf8_seq_len(s->p + s->pos, s->len - s->pos);

            if (n == 0)
                return false;
            s->pos += n;
            continue;
        }
        s->pos++;
    }
    return false;
}

static bool
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool
scan_number(struct scan *s)
{
    size_t start = s->pos;

    if (s->pos < s->len && s->p[s->pos] == '-')
        s->pos++;
    if (s->pos >= s->len || !is_digit(s->p[s->pos]))
        return false;
    if (s->p[s->pos] == '0')
        s->pos++;
    else
        while (s->pos < s->len && is_digit(s->p[s->pos]))
            s->pos++;
    if (s->pos < s->len && s->p[s->pos] == '.') {
        s->pos++;
        if (s->pos >= s->len || !is_digit(s->p[s->pos]))
            return false;
        while (s->pos < s->len && is_digit(s->p[s->pos]))
            s->pos++;
    }
    if (s->pos < s->len && (s->p[s->pos] == 'e' || s->p[s->pos] == 'E'))
        return false; /* exponents: leave overflow to jansson */
    return s->pos - start <= MAX_NUMBER_CHARS;
}

static bool
scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);

    if (s->len - s->pos < n || memcmp(s->p + s->pos, word, n) != 0)
        return false;
    s->pos += n;
    return true;
}

static bool scan_value(struct scan *s, int depth);

static bool
scan_object(struct scan *s, int depth)
{
    size_t keys[MAX_KEYS], key_lens[MAX_KEYS], nkeys = 0;

    s->pos++; /* '{' */
    skip_ws(s);
    if (s->pos < s->len && s->p[s->pos] == '}') {
        s->pos++;
        return true;
    }
    for (;;) {
        size_t start;
        bool esc;

        if (!scan_string(s, &start, &esc) || esc || nkeys == MAX_KEYS)
            return false;
        /* Duplicate keys: jansson (REJECT_DUPLICATES) refuses them. */
        for (size_t i = 0; i < nkeys; i++) {
            if (key_lens[i] == s->pos - 1 - start &&
                memcmp(s->p + keys[i], s->p + start, key_lens[i]) == 0)
                return false;
        }
        keys[nkeys] = start;
        key_lens[nkeys++] = s->pos - 1 - start;
        skip_ws(s);
        if (s->pos >= s->len || s->p[s->pos] != ':')
            return false;
        s->pos++;
        if (!scan_value(s, depth))
            return false;
        if (s->pos < s->len && s->p[s->pos] == ',') {
            s->pos++;
            skip_ws(s);
            continue;
        }
        if (s->pos < s->len && s->p[s->pos] == '}') {
            s->pos++;
            return true;
        }
        return false;
    }
}

static bool
scan_array(struct scan *s, int depth)
{
    s->pos++; /* '[' */
    skip_ws(s);
    if (s->pos < s->len && s->p[s->pos] == ']') {
        s->pos++;
        return true;
    }
    for (;;) {
        if (!scan_value(s, depth))
            return false;
        if (s->pos < s->len && s->p[s->pos] == ',') {
            s->pos++;
            continue;
        }
        if (s->pos < s->len && s->p[s->pos] == ']') {
            s->pos++;
            return true;
        }
        return false;
    }
}

/* A value with the whitespace around it. */
static bool
scan_value(struct scan *s, int depth)
{
    bool ok;

    if (depth >= MAX_DEPTH)
        return false;
    skip_ws(s);
    if (s->pos >= s->len)
        return false;
    switch (s->p[s->pos]) {
    case '{':
        ok = scan_object(s, depth + 1);
        break;
    case '[':
        ok = scan_array(s, depth + 1);
        break;
    case '"': {
        size_t start;
        bool esc;

        ok = scan_string(s, &start, &esc);
        break;
    }
    case 't':
        ok = scan_literal(s, "true");
        break;
    case 'f':
        ok = scan_literal(s, "false");
        break;
    case 'n':
        ok = scan_literal(s, "null");
        break;
    default:
        ok = scan_number(s);
        break;
    }
    skip_ws(s);
    return ok;
}

bool
aq_jscan_value(const char *p, size_t len, size_t *pos)
{
    struct scan s = {(const unsigned char *)p, len, *pos};
    bool ok = scan_value(&s, 0);

    *pos = s.pos;
    return ok;
}

bool
aq_jscan_plain_string(const char *p, size_t len, size_t *pos, const char **str,
                      size_t *n)
{
    struct scan s = {(const unsigned char *)p, len, *pos};
    size_t start;
    bool esc;

    skip_ws(&s);
    if (!scan_string(&s, &start, &esc) || esc)
        return false;
    *str = p + start;
    *n = s.pos - 1 - start;
    skip_ws(&s);
    *pos = s.pos;
    return true;
}
