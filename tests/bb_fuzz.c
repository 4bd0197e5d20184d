/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_fuzz.c: a protocol fuzz against the real asyncqd. Each round
 * sends a few hundred lines on one connection: valid requests of every
 * method, the same mutated after their id, random bytes, truncated and
 * deeply nested lines, every JSON type as id. Every line that is not a
 * notification gets exactly one reply; an untouched request's reply
 * carries its id byte for byte, a mutated one's its id or null. After
 * each round the daemon answers ping on a fresh connection, and a line
 * over the size limit is refused on another. Seeded and deterministic:
 * ASYNCQ_BB_FUZZ_ROUNDS and ASYNCQ_BB_FUZZ_SEED run it longer or
 * otherwise. Run in the ASan build, it finds what corrupts memory too.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bb.h"
#include "bbsuites.h"
#include "rng.h"

#define LINES_PER_ROUND 300
#define DEFAULT_ROUNDS 12
#define LINE_MAX 4096

/* What one line is expected to draw. */
struct sent {
    char id[48];    /* the raw id, "" when the line carries none we can name */
    bool is_exact;  /* the reply must carry id */
    bool is_silent; /* a notification: no reply */
};

static const char *const bodies[] = {
    "\"method\":\"ping\"",
    "\"method\":\"ping\",\"params\":{}",
    "\"method\":\"put\",\"params\":{\"args\":{\"n\":1,\"s\":\"x\\u0000y\"}}",
    "\"method\":\"put\",\"params\":{\"args\":{\"big\":1234567890123456789012},"
    "\"wait\":true}",
    "\"method\":\"put\",\"params\":{\"args\":{},\"priority\":-3,\"delay\":0.01,"
    "\"key\":\"k1\"}",
    "\"method\":\"put\",\"params\":{\"queue\":\"nope\",\"args\":{}}",
    "\"method\":\"put\",\"params\":{\"args\":{},\"nowait\":true}",
    "\"method\":\"status\",\"params\":{\"job\":1}",
    "\"method\":\"status\",\"params\":{\"job\":999999}",
    "\"method\":\"wait\",\"params\":{\"jobs\":[1,2,1],\"timeout\":0.05}",
    "\"method\":\"wait\",\"params\":{\"jobs\":[2],\"mode\":\"any\","
    "\"timeout\":0.05}",
    "\"method\":\"cancel\",\"params\":{\"job\":3}",
    "\"method\":\"join\",\"params\":{\"timeout\":0.05}",
    "\"method\":\"stats\"",
    "\"method\":\"stats\",\"params\":{\"queue\":\"default\"}",
    "\"method\":\"scale\",\"params\":{\"queue\":\"other\",\"consumers\":2}",
    "\"method\":\"pause\",\"params\":{\"queue\":\"other\"}",
    "\"method\":\"resume\",\"params\":{\"queue\":\"other\"}",
    "\"method\":\"auth\",\"params\":{\"token\":\"x\"}",
    "\"method\":\"nope\",\"params\":[1,2]",
    "\"jsonrpc\":\"2.0\",\"method\":\"ping\"",
    "\"jsonrpc\":\"1.0\",\"method\":\"ping\"",
    "\"method\":\"put\",\"params\":{\"args\":[1]}",
    "\"method\":\"put\",\"params\":{\"priority\":1e999}",
    "\"method\":\"put\",\"params\":{\"args\":{\"\\u0000\":1}}",
};

static const char *const junk[] = {
    "{",      "}",       "[",    "]",
    ",",      ":",       "\"",   "\\",
    "\\u",    "\\ud800", "0",    "-",
    "1e",     "1e400",   "null", "true",
    "\x00",   "\xff",    "\xc3", "\xef\xbb\xbf",
    " ",      "\t",      "\r",   "{\"id\":1}",
    "\"id\"", "[[[[",    "]]]]", "9999999999999999",
};

/* A unique id of some JSON type for line n. */
static void
make_id(struct rng *r, unsigned n, char *id, size_t cap)
{
    switch (rng_below(r, 6)) {
    case 0:
        snprintf(id, cap, "%u", n);
        break;
    case 1:
        snprintf(id, cap, "\"s%u\"", n);
        break;
    case 2:
        snprintf(id, cap, "%u.25e0", n);
        break;
    case 3:
        snprintf(id, cap, "\"\\u0073%u\\u0000\"", n);
        break;
    case 4:
        snprintf(id, cap, "-%u000000000000000000000", n + 1);
        break;
    default:
        snprintf(id, cap, "%u.30000000000000004", n);
        break;
    }
}

/* Line n into buf; what it should draw into *s. */
static size_t
make_line(struct rng *r, unsigned n, char *buf, struct sent *s)
{
    size_t len = 0;
    unsigned kind = rng_below(r, 20);

    memset(s, 0, sizeof *s);
    if (kind == 0) { /* random bytes, never starting like JSON */
        buf[len++] = '#';
        for (unsigned i = rng_below(r, 200); i > 0; i--) {
            char c = (char)rng_next(r);

            buf[len++] = c == '\n' ? ' ' : c;
        }
        return len;
    }
    if (kind == 1) { /* deep nesting */
        unsigned depth = 1 + rng_below(r, 3000);

        for (unsigned i = 0; i < depth && len < LINE_MAX - 8; i++) {
            if (i % 3 == 2) {
                memcpy(buf + len, "{\"a\":", 5);
                len += 5;
            } else
                buf[len++] = '[';
        }
        return len;
    }
    if (kind == 2) { /* an id of every other type */
        static const char *const odd[] = {"true", "false", "{}",
                                          "[]",   "[1]",   "{\"a\":1}"};

        len = (size_t)snprintf(buf, LINE_MAX, "{\"id\":%s,%s}",
                               odd[rng_below(r, 6)], bodies[0]);
        return len;
    }
    if (kind == 3) { /* a notification */
        s->is_silent = true;
        len = (size_t)snprintf(
            buf, LINE_MAX, "{%s}",
            bodies[rng_below(r, sizeof bodies / sizeof bodies[0])]);
        return len;
    }
    make_id(r, n, s->id, sizeof s->id);
    len = (size_t)snprintf(
        buf, LINE_MAX, "{\"id\":%s,%s}", s->id,
        bodies[rng_below(r, sizeof bodies / sizeof bodies[0])]);
    s->is_exact = true;
    if (kind < 10) { /* mutate after the id */
        size_t head = strlen("{\"id\":") + strlen(s->id) + 1;

        s->is_exact = false;
        for (unsigned m = 1 + rng_below(r, 4); m > 0; m--) {
            size_t at = head + rng_below(r, (unsigned)(len - head + 1));

            if (rng_below(r, 2) == 0 && at < len) { /* cut */
                len = at + (rng_below(r, 2) ? 0 : len - at - 1);
            } else { /* insert */
                const char *j =
                    junk[rng_below(r, sizeof junk / sizeof junk[0])];
                size_t jn = j[0] == '\0' ? 1 : strlen(j);

                if (len + jn >= LINE_MAX - 1)
                    continue;
                memmove(buf + at + jn, buf + at, len - at);
                memcpy(buf + at, j, jn);
                len += jn;
            }
        }
        for (size_t i = 0; i < len; i++) {
            if (buf[i] == '\n')
                buf[i] = ' ';
        }
    }
    return len;
}

/* The raw id of a reply line, or NULL when it is a notification. */
static bool
reply_id(const char *line, char *id, size_t cap)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    const char *end;

    if (strncmp(line, head, sizeof head - 1) != 0)
        return false;
    line += sizeof head - 1;
    end = strstr(line, ",\"result\":");
    if (end == NULL || (strstr(line, ",\"error\":") != NULL &&
                        strstr(line, ",\"error\":") < end))
        end = strstr(line, ",\"error\":");
    ck_assert_msg(end != NULL, "reply without result or error: %s", line);
    ck_assert_uint_lt((size_t)(end - line), cap);
    memcpy(id, line, (size_t)(end - line));
    id[end - line] = '\0';
    return true;
}

static void
run_round(struct bb_daemon *d, struct rng *r, unsigned round)
{
    struct bb_conn *c = bb_connect(d);
    struct sent *sent = calloc(LINES_PER_ROUND, sizeof *sent);
    char *buf = malloc(LINE_MAX + 1);
    unsigned *seen = calloc(LINES_PER_ROUND, sizeof *seen);
    size_t owed = 0, got = 0;
    int64_t deadline;

    for (unsigned i = 0; i < LINES_PER_ROUND; i++) {
        size_t n = make_line(r, round * LINES_PER_ROUND + i, buf, &sent[i]);

        buf[n++] = '\n';
        ck_assert(bb_send_raw(c, buf, n));
        if (!sent[i].is_silent)
            owed++;
    }
    deadline = bb_now_ms() + 60000;
    while (got < owed) {
        char id[64], *line;

        line = bb_recv_text(c, (int)(deadline - bb_now_ms()));
        ck_assert_msg(line != NULL, "round %u: %zu of %zu replies", round, got,
                      owed);
        if (reply_id(line, id, sizeof id)) {
            got++;
            for (unsigned i = 0; i < LINES_PER_ROUND && strcmp(id, "null");
                 i++) {
                if (strcmp(sent[i].id, id) == 0) {
                    seen[i]++;
                    ck_assert_msg(seen[i] == 1, "round %u: two replies to %s",
                                  round, id);
                }
            }
        }
        free(line);
    }
    for (unsigned i = 0; i < LINES_PER_ROUND; i++) {
        if (sent[i].is_exact)
            ck_assert_msg(seen[i] == 1, "round %u: no reply with id %s", round,
                          sent[i].id);
    }
    bb_close(c);
    free(sent);
    free(seen);
    free(buf);
}

START_TEST(fuzzed_lines_each_get_one_reply_and_the_daemon_serves)
{
    const char *e = getenv("ASYNCQ_BB_FUZZ_ROUNDS");
    const char *seed = getenv("ASYNCQ_BB_FUZZ_SEED");
    unsigned rounds =
        e != NULL ? (unsigned)strtoul(e, NULL, 10) : DEFAULT_ROUNDS;
    struct rng r = {seed != NULL ? strtoull(seed, NULL, 0)
                                 : UINT64_C(0x6173796e63712121)};
    struct bb_daemon *d = bb_startq(
        "{'producers':{'max_request_bytes':65536},"
        "'queues':{'default':{'kind':'echo','consumers':2,'maxsize':0},"
        "'other':{'kind':'echo','consumers':0}}}");

    fprintf(stderr, "bb_fuzz: seed %#llx, %u rounds of %d lines\n",
            (unsigned long long)r.s, rounds, LINES_PER_ROUND);
    for (unsigned round = 0; round < rounds; round++) {
        struct bb_conn *p;
        int fd;

        run_round(d, &r, round);
        /* a line over the limit, on a connection of its own */
        fd = bb_dial(d);
        ck_assert_int_ge(fd, 0);
        {
            size_t n = 70000 + rng_below(&r, 10000);
            char *big = malloc(n);

            memset(big, '[', n);
            (void)!write(fd, big, n);
            free(big);
        }
        close(fd);
        p = bb_connect(d);
        json_decref(bb_result(p, "ping", NULL));
        bb_close(p);
    }
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_fuzz_suite(void)
{
    Suite *s = suite_create("bb_fuzz");
    TCase *tc = tcase_create("protocol");

    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fuzzed_lines_each_get_one_reply_and_the_daemon_serves);
    suite_add_tcase(s, tc);
    return s;
}
