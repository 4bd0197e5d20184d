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
            if ((bad = aq_jscan_special_bytes(w)) == 0) {
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

/* ---- the exact validator ---- */

struct check {
    const unsigned char *p;
    size_t len, pos;
    const char *what; /* the error, once there is one */
    /* One bit per open container, set for an object. */
    uint64_t stack[AQ_JSCAN_MAX_DEPTH / 64];
    int depth;
};

static bool
check_fail(struct check *c, const char *what)
{
    c->what = what;
    return false;
}

static bool
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static int hex_value(char c);
static uint32_t hex4(const char *s);

/* Four hex digits at at. */
static bool
check_hex4(const struct check *c, size_t at)
{
    for (size_t i = 0; i < 4; i++) {
        if (at + i >= c->len || !is_hex(c->p[at + i]))
            return false;
    }
    return true;
}

/* A string at c->pos (its opening quote), with every escape checked. */
static bool
check_string(struct check *c)
{
    c->pos++;
    while (c->pos < c->len) {
        unsigned char ch = c->p[c->pos];

        if (ch == '"') {
            c->pos++;
            return true;
        }
        if (ch < 0x20)
            return check_fail(c, "control character in a string");
        if (ch == '\\') {
            unsigned char e = c->pos + 1 < c->len ? c->p[c->pos + 1] : 0;

            if (e == 'u') {
                uint32_t cp;

                if (!check_hex4(c, c->pos + 2))
                    return check_fail(c, "invalid \\u escape");
                cp = hex4((const char *)c->p + c->pos + 2);
                c->pos += 6;
                /* A surrogate escape is a character only in a pair (and
                 * jansson refuses the rest): not JSON text we can read. */
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return check_fail(c, "lone surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (c->pos + 1 >= c->len || c->p[c->pos] != '\\' ||
                        c->p[c->pos + 1] != 'u' || !check_hex4(c, c->pos + 2))
                        return check_fail(c, "lone surrogate in \\u escape");
                    cp = hex4((const char *)c->p + c->pos + 2);
                    if (cp < 0xDC00 || cp > 0xDFFF)
                        return check_fail(c, "lone surrogate in \\u escape");
                    c->pos += 6;
                }
                continue;
            }
            if (e == 0 || strchr("\"\\/bfnrt", e) == NULL)
                return check_fail(c, "invalid escape");
            c->pos += 2;
            continue;
        }
        if (ch >= 0x80) {
            size_t n = aq_utf8_seq_len(c->p + c->pos, c->len - c->pos);

            if (n == 0)
                return check_fail(c, "invalid UTF-8");
            c->pos += n;
            continue;
        }
        c->pos++;
    }
    return check_fail(c, "unterminated string");
}

static bool
check_digits(struct check *c)
{
    if (c->pos >= c->len || !is_digit(c->p[c->pos]))
        return check_fail(c, "invalid number");
    while (c->pos < c->len && is_digit(c->p[c->pos]))
        c->pos++;
    return true;
}

/* Any number of the grammar, of any size. */
static bool
check_number(struct check *c)
{
    if (c->p[c->pos] == '-')
        c->pos++;
    if (c->pos < c->len && c->p[c->pos] == '0')
        c->pos++;
    else if (!check_digits(c))
        return false;
    if (c->pos < c->len && c->p[c->pos] == '.') {
        c->pos++;
        if (!check_digits(c))
            return false;
    }
    if (c->pos < c->len && (c->p[c->pos] == 'e' || c->p[c->pos] == 'E')) {
        c->pos++;
        if (c->pos < c->len && (c->p[c->pos] == '+' || c->p[c->pos] == '-'))
            c->pos++;
        if (!check_digits(c))
            return false;
    }
    return true;
}

static void
check_ws(struct check *c)
{
    while (c->pos < c->len && (c->p[c->pos] == ' ' || c->p[c->pos] == '\t' ||
                               c->p[c->pos] == '\n' || c->p[c->pos] == '\r'))
        c->pos++;
}

static bool
in_object(const struct check *c)
{
    return (c->stack[(c->depth - 1) / 64] >> ((c->depth - 1) % 64)) & 1;
}

static bool
check_open(struct check *c, bool is_object)
{
    uint64_t bit = UINT64_C(1) << (c->depth % 64);

    if (c->depth == AQ_JSCAN_MAX_DEPTH)
        return check_fail(c, "nested too deep");
    if (is_object)
        c->stack[c->depth / 64] |= bit;
    else
        c->stack[c->depth / 64] &= ~bit;
    c->depth++;
    c->pos++;
    return true;
}

/* After a value: a ',' (then what an object wants next) or the closing
 * bracket, as often as containers close. Returns true when the text's top
 * value is complete; false with c->what on an error, or with c->what NULL
 * when another value follows (c->pos at it). */
static bool
check_after_value(struct check *c)
{
    for (;;) {
        check_ws(c);
        if (c->depth == 0)
            return true;
        if (c->pos >= c->len)
            return check_fail(c, "unexpected end of input");
        unsigned char ch = c->p[c->pos];

        if (ch == ',') {
            c->pos++;
            check_ws(c);
            if (in_object(c)) {
                if (c->pos >= c->len || c->p[c->pos] != '"')
                    return check_fail(c, "expected a member name");
                if (!check_string(c))
                    return false;
                check_ws(c);
                if (c->pos >= c->len || c->p[c->pos] != ':')
                    return check_fail(c, "expected ':'");
                c->pos++;
            }
            return false;
        }
        if (ch != (in_object(c) ? '}' : ']'))
            return check_fail(c, in_object(c) ? "expected ',' or '}'"
                                              : "expected ',' or ']'");
        c->pos++;
        c->depth--;
    }
}

bool
aq_jscan_check(const char *p, size_t len, size_t *err_pos,
               const char **err_what)
{
    struct check check = {0}, *c = &check;
    bool ok = false;

    c->p = (const unsigned char *)p;
    c->len = len;
    for (;;) {
        check_ws(c);
        if (c->pos >= c->len) {
            check_fail(c, "unexpected end of input");
            break;
        }
        unsigned char ch = c->p[c->pos];
        bool done;

        if (ch == '{' || ch == '[') {
            if (!check_open(c, ch == '{'))
                break;
            check_ws(c);
            if (c->pos < c->len && c->p[c->pos] == (ch == '{' ? '}' : ']')) {
                c->depth--;
                c->pos++;
            } else if (ch == '{') {
                if (c->pos >= c->len || c->p[c->pos] != '"') {
                    check_fail(c, "expected a member name or '}'");
                    break;
                }
                if (!check_string(c))
                    break;
                check_ws(c);
                if (c->pos >= c->len || c->p[c->pos] != ':') {
                    check_fail(c, "expected ':'");
                    break;
                }
                c->pos++;
                continue; /* the member's value */
            } else
                continue; /* the first element */
        } else if (ch == '"') {
            if (!check_string(c))
                break;
        } else if (ch == '-' || is_digit(ch)) {
            if (!check_number(c))
                break;
        } else if (ch == 't' || ch == 'f' || ch == 'n') {
            const char *word = ch == 't'   ? "true"
                               : ch == 'f' ? "false"
                                           : "null";
            size_t n = strlen(word);

            if (c->len - c->pos < n || memcmp(c->p + c->pos, word, n) != 0) {
                check_fail(c, "invalid literal");
                break;
            }
            c->pos += n;
        } else {
            check_fail(c, "unexpected character");
            break;
        }
        done = check_after_value(c);
        if (c->what != NULL)
            break;
        if (!done)
            continue;
        if (c->pos < c->len)
            check_fail(c, "end of input expected");
        else
            ok = true;
        break;
    }
    if (!ok) {
        *err_pos = c->pos < len ? c->pos : len;
        *err_what = c->what;
    }
    return ok;
}

/* ---- walking validated text ---- */

static size_t
skip_ws_at(const char *p, size_t len, size_t pos)
{
    while (pos < len && (p[pos] == ' ' || p[pos] == '\t' || p[pos] == '\n' ||
                         p[pos] == '\r'))
        pos++;
    return pos;
}

/* The end of the validated string whose opening quote is at pos. */
static size_t
string_end(const char *p, size_t len, size_t pos)
{
    for (pos++; pos < len && p[pos] != '"'; pos++) {
        if (p[pos] == '\\')
            pos++;
    }
    return pos + 1;
}

/* The end of the validated value at pos. */
static size_t
value_end(const char *p, size_t len, size_t pos)
{
    size_t depth = 0;

    do {
        char ch = p[pos];

        if (ch == '"')
            pos = string_end(p, len, pos);
        else if (ch == '{' || ch == '[') {
            depth++;
            pos++;
        } else if (ch == '}' || ch == ']') {
            depth--;
            pos++;
        } else if (ch == ',' || ch == ':' || ch == ' ' || ch == '\t' ||
                   ch == '\n' || ch == '\r')
            pos++;
        else {
            while (pos < len && p[pos] != ',' && p[pos] != '}' &&
                   p[pos] != ']' && p[pos] != ' ' && p[pos] != '\t' &&
                   p[pos] != '\n' && p[pos] != '\r')
                pos++;
        }
    } while (depth > 0 && pos < len);
    return pos;
}

void
aq_jscan_enter(const char *p, size_t len, size_t *pos)
{
    *pos = skip_ws_at(p, len, *pos) + 1;
}

bool
aq_jscan_next(const char *p, size_t len, size_t *pos, struct aq_jspan *key,
              struct aq_jspan *val)
{
    size_t at = skip_ws_at(p, len, *pos);

    if (at < len && p[at] == ',')
        at = skip_ws_at(p, len, at + 1);
    if (at >= len || p[at] == '}' || p[at] == ']') {
        *pos = at + 1;
        return false;
    }
    key->p = NULL;
    key->n = 0;
    if (p[at] == '"') {
        size_t end = string_end(p, len, at);
        size_t colon = skip_ws_at(p, len, end);

        if (colon < len && p[colon] == ':') {
            key->p = p + at;
            key->n = end - at;
            at = skip_ws_at(p, len, colon + 1);
        }
    }
    val->p = p + at;
    val->n = value_end(p, len, at) - at;
    *pos = at + val->n;
    return true;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

static uint32_t
hex4(const char *s)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v = v << 4 | (uint32_t)hex_value(s[i]);
    return v;
}

static size_t
utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool
aq_jscan_unescape(struct aq_jspan str, char *buf, size_t cap, size_t *n,
                  bool *has_nul)
{
    const char *s = str.p + 1, *end = str.p + str.n - 1;
    size_t out = 0;

    *has_nul = false;
    while (s < end) {
        char tmp[4];
        size_t k = 1;

        if (*s != '\\') {
            tmp[0] = *s++;
        } else if (s[1] != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";

            tmp[0] = to[strchr(from, s[1]) - from];
            s += 2;
        } else {
            uint32_t cp = hex4(s + 2);

            s += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - s >= 6 && s[0] == '\\' &&
                s[1] == 'u' && hex4(s + 2) >= 0xDC00 && hex4(s + 2) <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + 2) - 0xDC00);
                s += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF)
                cp = 0xFFFD; /* a lone surrogate */
            if (cp == 0)
                *has_nul = true;
            k = utf8_encode(cp, tmp);
        }
        if (out + k >= cap)
            return false;
        memcpy(buf + out, tmp, k);
        out += k;
    }
    buf[out] = '\0';
    *n = out;
    return true;
}

size_t
aq_jscan_compact(struct aq_jspan v, char *dst)
{
    size_t out = 0, i = 0;

    while (i < v.n) {
        char ch = v.p[i];

        if (ch == '"') {
            size_t end = string_end(v.p, v.n, i);

            memcpy(dst + out, v.p + i, end - i);
            out += end - i;
            i = end;
        } else {
            if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
                dst[out++] = ch;
            i++;
        }
    }
    return out;
}

bool
aq_jscan_has_nul_key(struct aq_jspan v)
{
    size_t i = 0;

    while (i < v.n) {
        if (v.p[i] != '"') {
            i++;
            continue;
        }
        size_t end = string_end(v.p, v.n, i);
        size_t after = skip_ws_at(v.p, v.n, end);

        if (after < v.n && v.p[after] == ':') {
            for (size_t k = i + 1; k + 5 < end; k++) {
                if (v.p[k] == '\\' && v.p[k + 1] == 'u' &&
                    memcmp(v.p + k + 2, "0000", 4) == 0)
                    return true;
                if (v.p[k] == '\\')
                    k++;
            }
        }
        i = end;
    }
    return false;
}
