/* SPDX-License-Identifier: MIT */
/*
 * lib/fastput.c: {"jsonrpc":"2.0","id":N,"method":"put","params":{...}}
 * in any member order, with the params methods.c accepts for put. Each
 * check mirrors the general path's; where reproducing it exactly would be
 * work (escapes, exponents, huge numbers), the line goes the general way.
 */
#include "fastput.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

#define MAX_KEY_BYTES 1024
#define MAX_DURATION_S 1e9

static void
skip_ws(const char *p, size_t len, size_t *pos)
{
    while (*pos < len && (p[*pos] == ' ' || p[*pos] == '\t' ||
                          p[*pos] == '\n' || p[*pos] == '\r'))
        (*pos)++;
}

static bool
expect(const char *p, size_t len, size_t *pos, char c)
{
    skip_ws(p, len, pos);
    if (*pos >= len || p[*pos] != c)
        return false;
    (*pos)++;
    return true;
}

/* A plain string copied, NUL-terminated, into buf (cap bytes). */
static bool
copy_string(const char *p, size_t len, size_t *pos, char *buf, size_t cap,
            size_t *n_out)
{
    const char *s;
    size_t n;

    if (!aq_jscan_plain_string(p, len, pos, &s, &n) || n >= cap ||
        memchr(s, '\0', n) != NULL)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (n_out != NULL)
        *n_out = n;
    return true;
}

/* A number's text (validated by jscan, so no exponent) into buf. */
static bool
number_text(const char *p, size_t len, size_t *pos, char *buf, size_t cap)
{
    size_t start, end;

    skip_ws(p, len, pos);
    start = *pos;
    if (start >= len || (p[start] != '-' && (p[start] < '0' || p[start] > '9')))
        return false;
    if (!aq_jscan_value(p, len, pos))
        return false;
    end = *pos;
    while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t' ||
                           p[end - 1] == '\n' || p[end - 1] == '\r'))
        end--;
    if (end - start >= cap)
        return false;
    memcpy(buf, p + start, end - start);
    buf[end - start] = '\0';
    return true;
}

static bool
integer(const char *p, size_t len, size_t *pos, long long min, long long max,
        long long *out)
{
    char buf[24], *end;

    if (!number_text(p, len, pos, buf, sizeof buf) || strchr(buf, '.'))
        return false; /* a real where an integer belongs: -32602 there */
    *out = strtoll(buf, &end, 10);
    return *end == '\0' && *out >= min && *out <= max;
}

static bool
duration(const char *p, size_t len, size_t *pos, double *out)
{
    char buf[24], *end;

    if (!number_text(p, len, pos, buf, sizeof buf))
        return false;
    *out = strtod(buf, &end);
    return *end == '\0' && *out >= 0 && *out <= MAX_DURATION_S;
}

static bool
boolean(const char *p, size_t len, size_t *pos, bool *out)
{
    skip_ws(p, len, pos);
    if (len - *pos >= 4 && memcmp(p + *pos, "true", 4) == 0) {
        *pos += 4;
        *out = true;
    } else if (len - *pos >= 5 && memcmp(p + *pos, "false", 5) == 0) {
        *pos += 5;
        *out = false;
    } else
        return false;
    skip_ws(p, len, pos);
    return true;
}

enum {
    F_QUEUE = 1,
    F_KIND = 2,
    F_ARGS = 4,
    F_PRIO = 8,
    F_DELAY = 16,
    F_TIMEOUT = 32,
    F_RETRIES = 64,
    F_KEY = 128,
    F_WAIT = 256,
    F_NOWAIT = 512,
    F_NAME = 1024
};

static bool
is_key(const char *k, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

/* A plain string value that is exactly want ("2.0", "put"). */
static bool
expect_word(const char *p, size_t len, size_t *pos, const char *want)
{
    const char *v;
    size_t n;

    return aq_jscan_plain_string(p, len, pos, &v, &n) && is_key(v, n, want);
}

static bool
parse_params(const char *p, size_t len, size_t *pos, struct aq_fastput *fp)
{
    unsigned seen = 0;

    if (!expect(p, len, pos, '{'))
        return false;
    skip_ws(p, len, pos);
    if (*pos < len && p[*pos] == '}') {
        (*pos)++;
        return true;
    }
    for (;;) {
        const char *k;
        size_t n;
        unsigned bit;
        long long v;

        if (!aq_jscan_plain_string(p, len, pos, &k, &n) ||
            !expect(p, len, pos, ':'))
            return false;
        if (is_key(k, n, "queue")) {
            bit = F_QUEUE;
            if (!copy_string(p, len, pos, fp->queue, sizeof fp->queue, NULL))
                return false;
            fp->put.queue = fp->queue;
        } else if (is_key(k, n, "kind")) {
            bit = F_KIND;
            if (!copy_string(p, len, pos, fp->kind, sizeof fp->kind, NULL))
                return false;
            fp->put.kind = fp->kind;
        } else if (is_key(k, n, "args")) {
            size_t start;

            bit = F_ARGS;
            skip_ws(p, len, pos);
            start = *pos;
            if (start >= len || p[start] != '{' || !aq_jscan_value(p, len, pos))
                return false;
            fp->put.args_raw = p + start;
            fp->put.args_len = *pos - start;
            while (fp->put.args_len > 0 &&
                   p[start + fp->put.args_len - 1] != '}')
                fp->put.args_len--; /* trailing whitespace */
        } else if (is_key(k, n, "priority")) {
            bit = F_PRIO;
            if (!integer(p, len, pos, INT32_MIN, INT32_MAX, &v))
                return false;
            fp->put.priority = (int32_t)v;
        } else if (is_key(k, n, "delay")) {
            bit = F_DELAY;
            if (!duration(p, len, pos, &fp->put.delay))
                return false;
        } else if (is_key(k, n, "timeout")) {
            bit = F_TIMEOUT;
            if (!duration(p, len, pos, &fp->put.timeout))
                return false;
        } else if (is_key(k, n, "retries")) {
            bit = F_RETRIES;
            if (!integer(p, len, pos, 0, 1000000, &v))
                return false;
            fp->put.retries = (int)v;
        } else if (is_key(k, n, "key")) {
            size_t kn;

            bit = F_KEY;
            if (!copy_string(p, len, pos, fp->key, sizeof fp->key, &kn) ||
                kn == 0 || kn > MAX_KEY_BYTES)
                return false;
            fp->put.key = fp->key;
        } else if (is_key(k, n, "name")) {
            bit = F_NAME;
            if (!copy_string(p, len, pos, fp->name, sizeof fp->name, NULL))
                return false; /* too long: the general path names it */
            fp->put.name = fp->name;
        } else if (is_key(k, n, "wait")) {
            bit = F_WAIT;
            if (!boolean(p, len, pos, &fp->wait))
                return false;
        } else if (is_key(k, n, "nowait")) {
            bit = F_NOWAIT;
            if (!boolean(p, len, pos, &fp->put.nowait))
                return false;
        } else
            return false; /* unknown: the general path names it */
        if (seen & bit)
            return false; /* a duplicate key: a parse error there */
        seen |= bit;
        skip_ws(p, len, pos);
        if (*pos < len && p[*pos] == ',') {
            (*pos)++;
            continue;
        }
        return expect(p, len, pos, '}');
    }
}

/* "id": a plain integer (no sign, fraction or exponent), a plain string or
 * null, copied raw; the reply echoes exactly these bytes. */
static bool
parse_id(const char *p, size_t len, size_t *pos, struct aq_fastput *fp)
{
    size_t start, end;

    skip_ws(p, len, pos);
    start = *pos;
    if (start >= len)
        return false;
    if (p[start] == '"') {
        const char *s;
        size_t n;

        if (!aq_jscan_plain_string(p, len, pos, &s, &n))
            return false;
        end = (size_t)(s + n - p) + 1;
    } else if (p[start] == 'n' || (p[start] >= '0' && p[start] <= '9')) {
        if (!aq_jscan_value(p, len, pos))
            return false;
        end = *pos;
        while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t' ||
                               p[end - 1] == '\n' || p[end - 1] == '\r'))
            end--;
        for (size_t i = start; i < end && p[start] != 'n'; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false; /* a real: the general path re-encodes it */
        }
    } else
        return false;
    if (end - start >= sizeof fp->id)
        return false;
    memcpy(fp->id, p + start, end - start);
    fp->id_len = end - start;
    return true;
}

/* ---- the usual bytes ----
 *
 * Clients send the compact form: {"id":N,"method":"put","params":{...}}
 * (or with "jsonrpc":"2.0" first), params with queue, kind, args and wait
 * as plain ASCII. fast_lane reads exactly that with one memcmp per fixed
 * piece and one pass over each string; at the first byte that differs it
 * answers false and aq_fastput_parse reads the line the general way. What
 * it accepts, the general way accepts with the same result. */

/* A string of plain ASCII bytes at p[*pos] (its opening quote) copied,
 * NUL-terminated, into buf (cap bytes); *pos past its closing quote. */
static bool
lane_string(const char *p, size_t len, size_t *pos, char *buf, size_t cap)
{
    size_t n;

    if (*pos >= len || p[*pos] != '"')
        return false;
    n = aq_jscan_plain_run(p + *pos + 1, len - *pos - 1);
    if (*pos + 1 + n >= len || p[*pos + 1 + n] != '"' || n >= cap)
        return false;
    memcpy(buf, p + *pos + 1, n);
    buf[n] = '\0';
    *pos += n + 2;
    return true;
}

/* Whether the piece (a literal) is at p[*pos]; *pos past it if so. */
#define LANE_PIECE(p, len, pos, piece)                                         \
    ((len) - *(pos) >= sizeof(piece) - 1 &&                                    \
     memcmp((p) + *(pos), piece, sizeof(piece) - 1) == 0 &&                    \
     (*(pos) += sizeof(piece) - 1, true))

/* The args object at p[*pos]: a flat object of plain ASCII strings read
 * here, anything else by aq_jscan_value as parse_params does. */
static bool
lane_args(const char *p, size_t len, size_t *pos, struct aq_put *put)
{
    size_t start = *pos, keys[16], key_lens[16], nkeys = 0, i = start + 1;

    if (i < len && p[i] == '}') {
        i++;
        goto done;
    }
    while (nkeys < 16 && i < len && p[i] == '"') {
        size_t n = aq_jscan_plain_run(p + i + 1, len - i - 1), v;

        if (i + 1 + n >= len || p[i + 1 + n] != '"')
            break;
        for (size_t k = 0; k < nkeys; k++) {
            if (key_lens[k] == n && memcmp(p + keys[k], p + i + 1, n) == 0)
                return false; /* a duplicate: refused there too */
        }
        keys[nkeys] = i + 1;
        key_lens[nkeys++] = n;
        i += n + 2;
        if (i + 1 >= len || p[i] != ':' || p[i + 1] != '"')
            break;
        v = aq_jscan_plain_run(p + i + 2, len - i - 2);
        if (i + 2 + v >= len || p[i + 2 + v] != '"')
            break;
        i += v + 3;
        if (i < len && p[i] == ',') {
            i++;
            continue;
        }
        if (i < len && p[i] == '}') {
            i++;
            goto done;
        }
        break;
    }
    /* Not flat: the general scanner, from the start. */
    if (!aq_jscan_value(p, len, pos))
        return false;
    i = *pos;
    while (i > start && p[i - 1] != '}')
        i--; /* trailing whitespace */
done:
    put->args_raw = p + start;
    put->args_len = i - start;
    *pos = i;
    return true;
}

/* fp as before any field is read: no id, defaults for the put. */
static void
fastput_reset(struct aq_fastput *fp)
{
    memset(&fp->put, 0, sizeof fp->put);
    fp->put.timeout = -1;
    fp->put.retries = -1;
    fp->id_len = 0;
    fp->wait = false;
}

static bool
fast_lane(const char *p, size_t len, struct aq_fastput *fp)
{
    size_t pos = 0, start;
    unsigned seen = 0, bit;

    if (!LANE_PIECE(p, len, &pos, "{\"id\":") &&
        !LANE_PIECE(p, len, &pos, "{\"jsonrpc\":\"2.0\",\"id\":"))
        return false;
    /* id: an integer of at most 15 digits, as jscan takes it. */
    start = pos;
    while (pos < len && p[pos] >= '0' && p[pos] <= '9' && pos - start < 16)
        pos++;
    if (pos == start || pos - start > 15 ||
        (p[start] == '0' && pos - start > 1))
        return false;
    memcpy(fp->id, p + start, pos - start);
    fp->id_len = pos - start;
    if (!LANE_PIECE(p, len, &pos, ",\"method\":\"put\",\"params\":{\""))
        return false;
    for (;;) {
        if (LANE_PIECE(p, len, &pos, "queue\":")) {
            bit = F_QUEUE;
            if (!lane_string(p, len, &pos, fp->queue, sizeof fp->queue))
                return false;
            fp->put.queue = fp->queue;
        } else if (LANE_PIECE(p, len, &pos, "kind\":")) {
            bit = F_KIND;
            if (!lane_string(p, len, &pos, fp->kind, sizeof fp->kind))
                return false;
            fp->put.kind = fp->kind;
        } else if (LANE_PIECE(p, len, &pos, "args\":{")) {
            bit = F_ARGS;
            pos--;
            if (!lane_args(p, len, &pos, &fp->put))
                return false;
        } else if (LANE_PIECE(p, len, &pos, "wait\":")) {
            bit = F_WAIT;
            if (LANE_PIECE(p, len, &pos, "true"))
                fp->wait = true;
            else if (LANE_PIECE(p, len, &pos, "false"))
                fp->wait = false;
            else
                return false;
        } else
            return false;
        if (seen & bit)
            return false;
        seen |= bit;
        if (LANE_PIECE(p, len, &pos, ",\""))
            continue;
        return pos + 2 == len && p[pos] == '}' && p[pos + 1] == '}';
    }
}

int
aq_fastput_parse(const char *p, size_t len, struct aq_fastput *fp)
{
    size_t pos = 0;
    bool has_method = false, has_params = false, has_jsonrpc = false;

    fastput_reset(fp);
    if (fast_lane(p, len, fp))
        return 0;
    fastput_reset(fp);
    if (!expect(p, len, &pos, '{'))
        return -1;
    for (;;) {
        const char *k;
        size_t n;

        if (!aq_jscan_plain_string(p, len, &pos, &k, &n) ||
            !expect(p, len, &pos, ':'))
            return -1;
        if (is_key(k, n, "jsonrpc") && !has_jsonrpc) {
            if (!expect_word(p, len, &pos, "2.0"))
                return -1;
            has_jsonrpc = true;
        } else if (is_key(k, n, "id") && fp->id_len == 0) {
            if (!parse_id(p, len, &pos, fp))
                return -1;
        } else if (is_key(k, n, "method") && !has_method) {
            if (!expect_word(p, len, &pos, "put"))
                return -1;
            has_method = true;
        } else if (is_key(k, n, "params") && !has_params) {
            if (!parse_params(p, len, &pos, fp))
                return -1;
            has_params = true;
        } else
            return -1;
        skip_ws(p, len, &pos);
        if (pos < len && p[pos] == ',') {
            pos++;
            continue;
        }
        if (!expect(p, len, &pos, '}'))
            return -1;
        skip_ws(p, len, &pos);
        return has_method && pos == len ? 0 : -1;
    }
}
