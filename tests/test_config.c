/* SPDX-License-Identifier: MIT */
/*
 * tests/test_config.c: the contract of lib/config.h. Defaults are compared
 * field by field with the values of spec section 4; wrong input must fail
 * with code -32602 and the exact message naming the field path. Field tests
 * walk tables of every field of a kind, building the JSON from the path.
 * Each test frees what it parsed (the suite runs under valgrind and ASan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "error.h"
#include "suites.h"
#include "testutil.h"

#define TEXT_MAX 1024

/* The example config shipped in config/, found from this file's path. */
#define THIS_FILE_SUFFIX "tests/test_config.c"
#define SHIPPED_SUFFIX "config/asyncqd.json"

/* A field and the least value it takes. */
struct ranged_field {
    const char *path;
    long long min;
};

static const struct ranged_field integer_fields[] = {
    {"producers.max", 1},
    {"producers.window", 1},
    {"producers.max_request_bytes", 2},
    {"results.max", 0},
    {"results.failed_max", 0},
    {"results.max_bytes", 0},
    {"queues.default.consumers", 0},
    {"queues.default.maxsize", 0},
    {"queues.default.retries", 0},
    {"queues.default.exec.capture", 0},
    {"queues.default.http.capture", 0},
    {"queues.default.http.max_per_host", 1},
    {"queues.default.http.max_redirects", 0},
};

static const struct ranged_field number_fields[] = {
    {"producers.idle_timeout", 0},
    {"results.ttl", 0},
    {"results.failed_ttl", 0},
    {"shutdown.grace", 0},
    {"queues.default.timeout", 0},
    {"queues.default.backoff.initial", 0},
    {"queues.default.backoff.factor", 1},
    {"queues.default.backoff.max", 0},
    {"queues.default.exec.kill_grace", 0},
};

static const char *const bool_fields[] = {
    "shutdown.drain",
    "queues.default.http.verify",
};

/* An enumeration and the message listing its words. */
struct enum_field {
    const char *path;
    const char *expected;
};

static const struct enum_field enum_fields[] = {
    {"journal.fsync",
     "expected one of \"batch\", \"always\", \"everysec\", \"never\""},
    {"log.level", "expected one of \"error\", \"warn\", \"info\", \"debug\""},
    {"queues.default.order", "expected one of \"priority\", \"lifo\""},
    {"queues.default.kind",
     "expected one of \"exec\", \"http\", \"sleep\", \"echo\", \"remote\""},
    {"log.format", "expected one of \"text\", \"json\""},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Writes {"a":{"b":VALUE}} for path "a.b" into out. */
static void
nest(char *out, size_t size, const char *path, const char *value)
{
    char segs[TEXT_MAX];
    size_t len = 0, depth = 0;

    ck_assert_uint_lt(strlen(path), sizeof segs);
    strcpy(segs, path);
    for (char *seg = strtok(segs, "."); seg != NULL; seg = strtok(NULL, ".")) {
        len += (size_t)snprintf(out + len, size - len, "{\"%s\":", seg);
        depth++;
        ck_assert_uint_lt(len, size);
    }
    len += (size_t)snprintf(out + len, size - len, "%s", value);
    for (; depth > 0; depth--)
        len += (size_t)snprintf(out + len, size - len, "}");
    ck_assert_uint_lt(len, size);
}

static struct aq_config *
parse_text(const char *text, struct aq_error *err)
{
    memset(err, 0, sizeof *err);
    return aq_config_parse(text, strlen(text), err);
}

/* Parses text that must be valid; the caller frees the config. */
static struct aq_config *
parse_ok(const char *text)
{
    struct aq_error err;
    struct aq_config *cfg = parse_text(text, &err);

    ck_assert_msg(cfg != NULL, "%s: unexpected error: %s", text, err.message);
    return cfg;
}

/* Parses {"a":{"b":value}} for path "a.b", which must be valid. */
static struct aq_config *
parse_field_ok(const char *path, const char *value)
{
    char text[TEXT_MAX];

    nest(text, sizeof text, path, value);
    return parse_ok(text);
}

/* Parses text that must fail with -32602 and exactly message. */
static void
expect_error(const char *text, const char *message)
{
    struct aq_error err;
    struct aq_config *cfg = parse_text(text, &err);

    ck_assert_msg(cfg == NULL, "%s: parsed, expected \"%s\"", text, message);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, message);
}

/* Sets path to value: must fail with "path: why". */
static void
expect_field_error(const char *path, const char *value, const char *why)
{
    char text[TEXT_MAX], message[TEXT_MAX];

    nest(text, sizeof text, path, value);
    snprintf(message, sizeof message, "%s: %s", path, why);
    expect_error(text, message);
}

/* Parses text that must fail with a syntax error: "config: line L column C:"
 * followed by jansson's text containing detail. */
static void
expect_syntax_error(const char *text, int line, int column, const char *detail)
{
    struct aq_error err;
    struct aq_config *cfg = parse_text(text, &err);
    char prefix[64];

    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    snprintf(prefix, sizeof prefix, "config: line %d column %d: ", line,
             column);
    ck_assert_msg(strncmp(err.message, prefix, strlen(prefix)) == 0,
                  "\"%s\" does not start with \"%s\"", err.message, prefix);
    ck_assert_msg(strstr(err.message, detail) != NULL,
                  "\"%s\" does not contain \"%s\"", err.message, detail);
}

static void
assert_queue_defaults(const struct aq_queue_config *q, const char *name)
{
    ck_assert_str_eq(q->name, name);
    ck_assert_str_eq(q->kind, "exec");
    ck_assert_uint_eq(q->kinds, 0);
    ck_assert_int_eq(q->consumers, 4);
    ck_assert_uint_eq(q->maxsize, 10000);
    ck_assert_int_eq(q->order, AQ_ORDER_PRIORITY);
    ck_assert_double_eq(q->timeout, 300);
    ck_assert_int_eq(q->retries, 0);
    ck_assert_double_eq(q->backoff.initial, 1);
    ck_assert_double_eq(q->backoff.factor, 2);
    ck_assert_double_eq(q->backoff.max, 300);
    ck_assert_uint_eq(q->exec.nallow, 1);
    ck_assert_str_eq(q->exec.allow[0], "*");
    ck_assert_str_eq(q->exec.path, "/usr/local/bin:/usr/bin:/bin");
    ck_assert_uint_eq(q->exec.capture, 65536);
    ck_assert_double_eq(q->exec.kill_grace, 5);
    ck_assert_uint_eq(q->http.capture, 65536);
    ck_assert_int_eq(q->http.max_per_host, 8);
    ck_assert_int_eq(q->http.max_redirects, 5);
    ck_assert(q->http.verify);
}

/* Every top-level value of spec section 4, and the one "default" queue. */
static void
assert_spec_defaults(const struct aq_config *c)
{
    ck_assert_uint_eq(c->nlisten, 1);
    ck_assert_str_eq(c->listen[0], "tcp://127.0.0.1:7878");
    ck_assert_str_eq(c->metrics, "127.0.0.1:7879");
    ck_assert_int_eq(c->producers.max, 1024);
    ck_assert_int_eq(c->producers.window, 1024);
    ck_assert_uint_eq(c->producers.max_request_bytes, 1048576);
    ck_assert_double_eq(c->producers.idle_timeout, 300);
    ck_assert_str_eq(c->journal.path, "asyncq.journal");
    ck_assert_int_eq(c->journal.fsync, AQ_FSYNC_BATCH);
    ck_assert_double_eq(c->results.ttl, 3600);
    ck_assert_uint_eq(c->results.max, 100000);
    ck_assert_double_eq(c->results.failed_ttl, 604800);
    ck_assert_uint_eq(c->results.failed_max, 10000);
    ck_assert_uint_eq(c->results.max_bytes, 268435456);
    ck_assert_double_eq(c->shutdown.grace, 10);
    ck_assert(!c->shutdown.drain);
    ck_assert_ptr_null(c->auth_token_file);
    ck_assert_int_eq(c->log_level, AQ_LOG_INFO);
    ck_assert_int_eq(c->log_format, AQ_LOG_TEXT);
    ck_assert_uint_eq(c->nqueues, 1);
    assert_queue_defaults(&c->queues[0], "default");
}

static void
assert_str_or_null_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        ck_assert_ptr_eq(a, b);
    else
        ck_assert_str_eq(a, b);
}

static void
assert_queues_equal(const struct aq_queue_config *a,
                    const struct aq_queue_config *b)
{
    assert_str_or_null_eq(a->name, b->name);
    assert_str_or_null_eq(a->kind, b->kind);
    ck_assert_uint_eq(a->kinds, b->kinds);
    ck_assert_int_eq(a->consumers, b->consumers);
    ck_assert_uint_eq(a->maxsize, b->maxsize);
    ck_assert_int_eq(a->order, b->order);
    ck_assert_double_eq(a->timeout, b->timeout);
    ck_assert_int_eq(a->retries, b->retries);
    ck_assert_double_eq(a->backoff.initial, b->backoff.initial);
    ck_assert_double_eq(a->backoff.factor, b->backoff.factor);
    ck_assert_double_eq(a->backoff.max, b->backoff.max);
    ck_assert_uint_eq(a->exec.nallow, b->exec.nallow);
    for (size_t i = 0; i < a->exec.nallow; i++)
        ck_assert_str_eq(a->exec.allow[i], b->exec.allow[i]);
    assert_str_or_null_eq(a->exec.path, b->exec.path);
    ck_assert_uint_eq(a->exec.capture, b->exec.capture);
    ck_assert_double_eq(a->exec.kill_grace, b->exec.kill_grace);
    ck_assert_uint_eq(a->http.capture, b->http.capture);
    ck_assert_int_eq(a->http.max_per_host, b->http.max_per_host);
    ck_assert_int_eq(a->http.max_redirects, b->http.max_redirects);
    ck_assert_int_eq(a->http.verify, b->http.verify);
}

static void
assert_configs_equal(const struct aq_config *a, const struct aq_config *b)
{
    ck_assert_uint_eq(a->nlisten, b->nlisten);
    for (size_t i = 0; i < a->nlisten; i++)
        ck_assert_str_eq(a->listen[i], b->listen[i]);
    assert_str_or_null_eq(a->metrics, b->metrics);
    ck_assert_int_eq(a->producers.max, b->producers.max);
    ck_assert_int_eq(a->producers.window, b->producers.window);
    ck_assert_uint_eq(a->producers.max_request_bytes,
                      b->producers.max_request_bytes);
    ck_assert_double_eq(a->producers.idle_timeout, b->producers.idle_timeout);
    assert_str_or_null_eq(a->journal.path, b->journal.path);
    ck_assert_int_eq(a->journal.fsync, b->journal.fsync);
    ck_assert_double_eq(a->results.ttl, b->results.ttl);
    ck_assert_uint_eq(a->results.max, b->results.max);
    ck_assert_double_eq(a->results.failed_ttl, b->results.failed_ttl);
    ck_assert_uint_eq(a->results.failed_max, b->results.failed_max);
    ck_assert_uint_eq(a->results.max_bytes, b->results.max_bytes);
    ck_assert_double_eq(a->shutdown.grace, b->shutdown.grace);
    ck_assert_int_eq(a->shutdown.drain, b->shutdown.drain);
    assert_str_or_null_eq(a->auth_token_file, b->auth_token_file);
    ck_assert_int_eq(a->log_level, b->log_level);
    ck_assert_int_eq(a->log_format, b->log_format);
    ck_assert_uint_eq(a->nqueues, b->nqueues);
    for (size_t i = 0; i < a->nqueues; i++)
        assert_queues_equal(&a->queues[i], &b->queues[i]);
}

/* Writes text to a new file in /tmp; path receives its name. */
static void
write_temp(char *path, size_t size, const char *text)
{
    int fd;

    snprintf(path, size, "/tmp/asyncq-test-config-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(close(fd), 0);
}

/* ---- defaults ---- */

START_TEST(default_config_has_spec_values)
{
    struct aq_config *cfg = aq_config_default();

    assert_spec_defaults(cfg);
    aq_config_free(cfg);
}
END_TEST

START_TEST(empty_object_gives_spec_defaults)
{
    struct aq_config *cfg = parse_ok("{}");
    struct aq_config *def = aq_config_default();

    assert_spec_defaults(cfg);
    assert_configs_equal(cfg, def);
    aq_config_free(def);
    aq_config_free(cfg);
}
END_TEST

START_TEST(shipped_config_parses_to_the_defaults_it_states)
{
    const char *file = __FILE__;
    const size_t flen = strlen(file);
    const size_t slen = strlen(THIS_FILE_SUFFIX);
    char path[4096];
    struct aq_error err = {0};
    struct aq_config *cfg, *def;

    ck_assert_uint_ge(flen, slen);
    ck_assert_str_eq(file + flen - slen, THIS_FILE_SUFFIX);
    ck_assert_uint_lt(flen - slen + strlen(SHIPPED_SUFFIX), sizeof path);
    snprintf(path, sizeof path, "%.*s%s", (int)(flen - slen), file,
             SHIPPED_SUFFIX);
    cfg = aq_config_load(path, &err);
    ck_assert_msg(cfg != NULL, "%s", err.message);
    assert_spec_defaults(cfg);
    def = aq_config_default();
    assert_configs_equal(cfg, def);
    aq_config_free(def);
    aq_config_free(cfg);
}
END_TEST

START_TEST(queue_config_defaults_have_spec_values)
{
    struct aq_queue_config qc;

    aq_queue_config_defaults(&qc, "fast");
    assert_queue_defaults(&qc, "fast");
    aq_queue_config_clear(&qc);
}
END_TEST

START_TEST(every_field_can_be_set)
{
    static const char text[] =
        "{\"listen\": [\"tcp://0.0.0.0:1\", \"unix:/run/asyncq.sock\"],"
        " \"metrics\": \"[::1]:9100\","
        " \"producers\": {\"max\": 7, \"window\": 8,"
        "   \"max_request_bytes\": 9, \"idle_timeout\": 0.5},"
        " \"journal\": {\"path\": \"/var/lib/q.journal\","
        "   \"fsync\": \"everysec\"},"
        " \"results\": {\"ttl\": 60, \"max\": 0, \"failed_ttl\": 1.5,"
        "   \"failed_max\": 2, \"max_bytes\": 3},"
        " \"shutdown\": {\"grace\": 2.5, \"drain\": true},"
        " \"auth\": {\"token_file\": \"/etc/asyncq/token\"},"
        " \"log\": {\"level\": \"debug\"},"
        " \"queues\": {\"web\": {\"kind\": \"http\", \"consumers\": 0,"
        "   \"maxsize\": 0, \"order\": \"lifo\", \"timeout\": 0,"
        "   \"retries\": 3,"
        "   \"backoff\": {\"initial\": 0.1, \"factor\": 1.5, \"max\": 9},"
        "   \"exec\": {\"allow\": [\"/bin/true\", \"/bin/false\"],"
        "     \"path\": \"/opt/bin\", \"capture\": 10, \"kill_grace\": 0},"
        "   \"http\": {\"capture\": 11, \"max_per_host\": 1,"
        "     \"max_redirects\": 0, \"verify\": false}}}}";
    struct aq_config *c = parse_ok(text);
    const struct aq_queue_config *q;

    ck_assert_uint_eq(c->nlisten, 2);
    ck_assert_str_eq(c->listen[0], "tcp://0.0.0.0:1");
    ck_assert_str_eq(c->listen[1], "unix:/run/asyncq.sock");
    ck_assert_str_eq(c->metrics, "[::1]:9100");
    ck_assert_int_eq(c->producers.max, 7);
    ck_assert_int_eq(c->producers.window, 8);
    ck_assert_uint_eq(c->producers.max_request_bytes, 9);
    ck_assert_double_eq(c->producers.idle_timeout, 0.5);
    ck_assert_str_eq(c->journal.path, "/var/lib/q.journal");
    ck_assert_int_eq(c->journal.fsync, AQ_FSYNC_EVERYSEC);
    ck_assert_double_eq(c->results.ttl, 60);
    ck_assert_uint_eq(c->results.max, 0);
    ck_assert_double_eq(c->results.failed_ttl, 1.5);
    ck_assert_uint_eq(c->results.failed_max, 2);
    ck_assert_uint_eq(c->results.max_bytes, 3);
    ck_assert_double_eq(c->shutdown.grace, 2.5);
    ck_assert(c->shutdown.drain);
    ck_assert_str_eq(c->auth_token_file, "/etc/asyncq/token");
    ck_assert_int_eq(c->log_level, AQ_LOG_DEBUG);
    ck_assert_uint_eq(c->nqueues, 1);
    q = &c->queues[0];
    ck_assert_str_eq(q->name, "web");
    ck_assert_str_eq(q->kind, "http");
    ck_assert_int_eq(q->consumers, 0);
    ck_assert_uint_eq(q->maxsize, 0);
    ck_assert_int_eq(q->order, AQ_ORDER_LIFO);
    ck_assert_double_eq(q->timeout, 0);
    ck_assert_int_eq(q->retries, 3);
    ck_assert_double_eq(q->backoff.initial, 0.1);
    ck_assert_double_eq(q->backoff.factor, 1.5);
    ck_assert_double_eq(q->backoff.max, 9);
    ck_assert_uint_eq(q->exec.nallow, 2);
    ck_assert_str_eq(q->exec.allow[0], "/bin/true");
    ck_assert_str_eq(q->exec.allow[1], "/bin/false");
    ck_assert_str_eq(q->exec.path, "/opt/bin");
    ck_assert_uint_eq(q->exec.capture, 10);
    ck_assert_double_eq(q->exec.kill_grace, 0);
    ck_assert_uint_eq(q->http.capture, 11);
    ck_assert_int_eq(q->http.max_per_host, 1);
    ck_assert_int_eq(q->http.max_redirects, 0);
    ck_assert(!q->http.verify);
    aq_config_free(c);
}
END_TEST

START_TEST(every_enum_word_maps_to_its_value)
{
    static const char *const fsyncs[] = {"batch", "always", "everysec",
                                         "never"};
    static const enum aq_fsync fsync_values[] = {
        AQ_FSYNC_BATCH, AQ_FSYNC_ALWAYS, AQ_FSYNC_EVERYSEC, AQ_FSYNC_NEVER};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const enum aq_log_level level_values[] = {AQ_LOG_ERROR, AQ_LOG_WARN,
                                                     AQ_LOG_INFO, AQ_LOG_DEBUG};
    static const char *const kinds[] = {"exec", "http", "sleep", "echo"};
    char word[32];
    struct aq_config *c;

    for (size_t i = 0; i < COUNT(fsyncs); i++) {
        snprintf(word, sizeof word, "\"%s\"", fsyncs[i]);
        c = parse_field_ok("journal.fsync", word);
        ck_assert_int_eq(c->journal.fsync, fsync_values[i]);
        aq_config_free(c);
    }
    for (size_t i = 0; i < COUNT(levels); i++) {
        snprintf(word, sizeof word, "\"%s\"", levels[i]);
        c = parse_field_ok("log.level", word);
        ck_assert_int_eq(c->log_level, level_values[i]);
        aq_config_free(c);
    }
    c = parse_field_ok("log.format", "\"json\"");
    ck_assert_int_eq(c->log_format, AQ_LOG_JSON);
    aq_config_free(c);
    c = parse_field_ok("log.format", "\"text\"");
    ck_assert_int_eq(c->log_format, AQ_LOG_TEXT);
    aq_config_free(c);
    for (size_t i = 0; i < COUNT(kinds); i++) {
        snprintf(word, sizeof word, "\"%s\"", kinds[i]);
        c = parse_field_ok("queues.default.kind", word);
        ck_assert_str_eq(c->queues[0].kind, kinds[i]);
        aq_config_free(c);
    }
    c = parse_field_ok("queues.default.order", "\"priority\"");
    ck_assert_int_eq(c->queues[0].order, AQ_ORDER_PRIORITY);
    aq_config_free(c);
    c = parse_field_ok("queues.default.order", "\"lifo\"");
    ck_assert_int_eq(c->queues[0].order, AQ_ORDER_LIFO);
    aq_config_free(c);
}
END_TEST

/* ---- queues ---- */

START_TEST(partial_queue_takes_defaults_for_the_rest)
{
    struct aq_config *c = parse_ok(
        "{\"queues\": {\"slow\": {\"consumers\": 1,"
        " \"backoff\": {\"factor\": 3}, \"http\": {\"verify\": false}}}}");
    const struct aq_queue_config *q = aq_config_queue(c, "slow");
    struct aq_queue_config want;

    ck_assert_ptr_nonnull(q);
    aq_queue_config_defaults(&want, "slow");
    want.consumers = 1;
    want.backoff.factor = 3;
    want.http.verify = false;
    assert_queues_equal(q, &want);
    aq_queue_config_clear(&want);
    aq_config_free(c);
}
END_TEST

START_TEST(empty_queues_object_gives_no_queues)
{
    struct aq_config *c = parse_ok("{\"queues\": {}}");

    ck_assert_uint_eq(c->nqueues, 0);
    ck_assert_ptr_null(aq_config_queue(c, "default"));
    aq_config_free(c);
}
END_TEST

START_TEST(given_queues_replace_the_default_queue_in_file_order)
{
    struct aq_config *c = parse_ok(
        "{\"queues\": {\"b\": {}, \"a\": {\"kind\": \"sleep\"}, \"c\": {}}}");

    ck_assert_uint_eq(c->nqueues, 3);
    ck_assert_str_eq(c->queues[0].name, "b");
    ck_assert_str_eq(c->queues[1].name, "a");
    ck_assert_str_eq(c->queues[2].name, "c");
    ck_assert_str_eq(c->queues[1].kind, "sleep");
    ck_assert_ptr_null(aq_config_queue(c, "default"));
    aq_config_free(c);
}
END_TEST

START_TEST(zero_consumers_is_valid)
{
    struct aq_config *c = parse_field_ok("queues.default.consumers", "0");

    ck_assert_int_eq(c->queues[0].consumers, 0);
    aq_config_free(c);
}
END_TEST

START_TEST(consumers_above_ten_thousand_are_rejected)
{
    struct aq_config *c = parse_field_ok("queues.default.consumers", "10000");

    ck_assert_int_eq(c->queues[0].consumers, 10000);
    aq_config_free(c);
    expect_field_error("queues.default.consumers", "10001",
                       "expected integer <= 10000");
}
END_TEST

START_TEST(queue_name_outside_the_allowed_characters_is_rejected)
{
    expect_error("{\"queues\": {\"a b\": {}}}",
                 "queues: \"a b\": expected queue name of 1 to 64 characters "
                 "from [A-Za-z0-9_.-]");
    expect_error("{\"queues\": {\"a/b\": {}}}",
                 "queues: \"a/b\": expected queue name of 1 to 64 characters "
                 "from [A-Za-z0-9_.-]");
    expect_error("{\"queues\": {\"caf\\u00e9\": {}}}",
                 "queues: \"caf\xc3\xa9\": expected queue name of 1 to 64 "
                 "characters from [A-Za-z0-9_.-]");
}
END_TEST

START_TEST(empty_queue_name_is_rejected)
{
    expect_error("{\"queues\": {\"\": {}}}",
                 "queues: \"\": expected queue name of 1 to 64 characters "
                 "from [A-Za-z0-9_.-]");
}
END_TEST

START_TEST(queue_name_of_64_bytes_is_accepted_and_65_rejected)
{
    char name[66], text[TEXT_MAX], message[TEXT_MAX];
    struct aq_config *c;

    memset(name, 'q', 64);
    name[64] = '\0';
    snprintf(text, sizeof text, "{\"queues\": {\"%s\": {}}}", name);
    c = parse_ok(text);
    ck_assert_ptr_nonnull(aq_config_queue(c, name));
    aq_config_free(c);

    strcat(name, "q");
    snprintf(text, sizeof text, "{\"queues\": {\"%s\": {}}}", name);
    snprintf(message, sizeof message,
             "queues: \"%.64s\": expected queue name of 1 to 64 characters "
             "from [A-Za-z0-9_.-]",
             name);
    expect_error(text, message);
}
END_TEST

START_TEST(queue_name_may_hold_dot_dash_underscore_and_digits)
{
    struct aq_config *c = parse_ok("{\"queues\": {\"Mail-out_2.x\": {}}}");

    ck_assert_ptr_nonnull(aq_config_queue(c, "Mail-out_2.x"));
    aq_config_free(c);
}
END_TEST

START_TEST(config_queue_finds_by_name_or_returns_null)
{
    struct aq_config *c = parse_ok("{\"queues\": {\"a\": {\"retries\": 1},"
                                   " \"b\": {\"retries\": 2}}}");

    ck_assert_ptr_eq(aq_config_queue(c, "a"), &c->queues[0]);
    ck_assert_ptr_eq(aq_config_queue(c, "b"), &c->queues[1]);
    ck_assert_int_eq(aq_config_queue(c, "b")->retries, 2);
    ck_assert_ptr_null(aq_config_queue(c, "c"));
    ck_assert_ptr_null(aq_config_queue(c, ""));
    ck_assert_ptr_null(aq_config_queue(c, "A"));
    aq_config_free(c);
}
END_TEST

START_TEST(queue_config_copy_is_deep)
{
    struct aq_config *c =
        parse_ok("{\"queues\": {\"q\": {\"kind\": \"echo\", \"retries\": 2,"
                 " \"exec\": {\"allow\": [\"/bin/a\", \"/bin/b\"],"
                 " \"path\": \"/x\"}}}}");
    struct aq_queue_config copy, keep;

    aq_queue_config_copy(&copy, &c->queues[0]);
    aq_queue_config_copy(&keep, &c->queues[0]);
    assert_queues_equal(&copy, &c->queues[0]);
    ck_assert_ptr_ne(copy.name, c->queues[0].name);
    ck_assert_ptr_ne(copy.kind, c->queues[0].kind);
    ck_assert_ptr_ne(copy.exec.path, c->queues[0].exec.path);
    ck_assert_ptr_ne(copy.exec.allow, c->queues[0].exec.allow);
    ck_assert_ptr_ne(copy.exec.allow[0], c->queues[0].exec.allow[0]);
    aq_config_free(c); /* the copies must outlive their source */
    assert_queues_equal(&copy, &keep);
    ck_assert_str_eq(copy.exec.allow[1], "/bin/b");
    aq_queue_config_clear(&keep);
    aq_queue_config_clear(&copy);
}
END_TEST

START_TEST(queue_config_clear_zeroes_and_may_repeat)
{
    struct aq_queue_config qc;

    aq_queue_config_defaults(&qc, "q");
    aq_queue_config_clear(&qc);
    ck_assert_ptr_null(qc.name);
    ck_assert_ptr_null(qc.kind);
    ck_assert_ptr_null(qc.exec.allow);
    ck_assert_uint_eq(qc.exec.nallow, 0);
    ck_assert_ptr_null(qc.exec.path);
    aq_queue_config_clear(&qc);
    aq_queue_config_clear(NULL);
}
END_TEST

START_TEST(config_free_accepts_null)
{
    aq_config_free(NULL);
}
END_TEST

/* ---- integers ---- */

START_TEST(integer_fields_reject_real)
{
    char why[64];

    for (size_t i = 0; i < COUNT(integer_fields); i++) {
        snprintf(why, sizeof why, "expected integer >= %lld",
                 integer_fields[i].min);
        expect_field_error(integer_fields[i].path, "1.5", why);
        expect_field_error(integer_fields[i].path, "2.0", why);
        expect_field_error(integer_fields[i].path, "1e3", why);
    }
}
END_TEST

START_TEST(integer_fields_reject_string)
{
    char why[64];

    for (size_t i = 0; i < COUNT(integer_fields); i++) {
        snprintf(why, sizeof why, "expected integer >= %lld",
                 integer_fields[i].min);
        expect_field_error(integer_fields[i].path, "\"1\"", why);
    }
}
END_TEST

START_TEST(integer_fields_reject_boolean_and_null)
{
    char why[64];

    for (size_t i = 0; i < COUNT(integer_fields); i++) {
        snprintf(why, sizeof why, "expected integer >= %lld",
                 integer_fields[i].min);
        expect_field_error(integer_fields[i].path, "true", why);
        expect_field_error(integer_fields[i].path, "false", why);
        expect_field_error(integer_fields[i].path, "null", why);
    }
}
END_TEST

START_TEST(integer_fields_reject_value_below_minimum)
{
    char why[64], value[32];

    for (size_t i = 0; i < COUNT(integer_fields); i++) {
        snprintf(why, sizeof why, "expected integer >= %lld",
                 integer_fields[i].min);
        snprintf(value, sizeof value, "%lld", integer_fields[i].min - 1);
        expect_field_error(integer_fields[i].path, value, why);
        expect_field_error(integer_fields[i].path, "-1000", why);
    }
}
END_TEST

START_TEST(integer_fields_accept_their_minimum)
{
    char value[32];

    for (size_t i = 0; i < COUNT(integer_fields); i++) {
        snprintf(value, sizeof value, "%lld", integer_fields[i].min);
        aq_config_free(parse_field_ok(integer_fields[i].path, value));
    }
}
END_TEST

START_TEST(integer_too_large_for_int_is_rejected)
{
    struct aq_config *c = parse_field_ok("queues.default.retries", "1000000");

    ck_assert_int_eq(c->queues[0].retries, 1000000);
    aq_config_free(c);
    /* as put takes: retries + 1 attempts always fit */
    expect_field_error("queues.default.retries", "2147483647",
                       "expected integer <= 1000000");
    expect_field_error("producers.max", "2147483648",
                       "expected integer <= 2147483647");
    expect_field_error("queues.default.http.max_redirects",
                       "9223372036854775807", "expected integer <= 2147483647");
}
END_TEST

START_TEST(size_field_takes_values_beyond_int)
{
    struct aq_config *c =
        parse_field_ok("queues.default.maxsize", "4294967296");

    ck_assert_uint_eq(c->queues[0].maxsize, (size_t)4294967296ULL);
    aq_config_free(c);
}
END_TEST

START_TEST(integer_beyond_64_bits_is_rejected)
{
    expect_syntax_error(
        "{\"queues\": {\"default\": {\"maxsize\": 99999999999999999999}}}", 1,
        55, "too big integer");
}
END_TEST

/* ---- durations ---- */

START_TEST(duration_fields_reject_negative)
{
    char why[64];

    for (size_t i = 0; i < COUNT(number_fields); i++) {
        snprintf(why, sizeof why, "expected number >= %lld",
                 number_fields[i].min);
        expect_field_error(number_fields[i].path, "-1", why);
        expect_field_error(number_fields[i].path, "-0.001", why);
    }
}
END_TEST

START_TEST(duration_fields_reject_string)
{
    char why[64];

    for (size_t i = 0; i < COUNT(number_fields); i++) {
        snprintf(why, sizeof why, "expected number >= %lld",
                 number_fields[i].min);
        expect_field_error(number_fields[i].path, "\"5\"", why);
    }
}
END_TEST

START_TEST(duration_fields_reject_boolean_and_null)
{
    char why[64];

    for (size_t i = 0; i < COUNT(number_fields); i++) {
        snprintf(why, sizeof why, "expected number >= %lld",
                 number_fields[i].min);
        expect_field_error(number_fields[i].path, "true", why);
        expect_field_error(number_fields[i].path, "null", why);
    }
}
END_TEST

START_TEST(duration_fields_accept_integers_and_fractions)
{
    struct aq_config *c;

    c = parse_field_ok("queues.default.timeout", "7");
    ck_assert_double_eq(c->queues[0].timeout, 7);
    aq_config_free(c);
    c = parse_field_ok("queues.default.timeout", "0.25");
    ck_assert_double_eq(c->queues[0].timeout, 0.25);
    aq_config_free(c);
    c = parse_field_ok("producers.idle_timeout", "0");
    ck_assert_double_eq(c->producers.idle_timeout, 0);
    aq_config_free(c);
    c = parse_field_ok("shutdown.grace", "1.5e1");
    ck_assert_double_eq(c->shutdown.grace, 15);
    aq_config_free(c);
}
END_TEST

/* Every duration (and the backoff factor) is at most 1e9 (spec section 7);
 * the error names the field. */
START_TEST(duration_above_a_billion_seconds_is_rejected)
{
    for (size_t i = 0; i < COUNT(number_fields); i++) {
        aq_config_free(parse_field_ok(number_fields[i].path, "1e9"));
        expect_field_error(number_fields[i].path, "1000000000.5",
                           "expected number <= 1000000000");
        expect_field_error(number_fields[i].path, "1e300",
                           "expected number <= 1000000000");
    }
}
END_TEST

START_TEST(backoff_factor_below_one_is_rejected)
{
    struct aq_config *c = parse_field_ok("queues.default.backoff.factor", "1");

    ck_assert_double_eq(c->queues[0].backoff.factor, 1);
    aq_config_free(c);
    expect_field_error("queues.default.backoff.factor", "0.5",
                       "expected number >= 1");
}
END_TEST

START_TEST(rate_is_null_by_default_or_per_second_with_a_burst)
{
    struct aq_config *c = parse_field_ok("queues.default.rate", "null");

    ck_assert_double_eq(c->queues[0].rate.per_second, 0);
    aq_config_free(c);
    c = parse_field_ok("queues.default.rate",
                       "{\"per_second\": 20, \"burst\": 5}");
    ck_assert_double_eq(c->queues[0].rate.per_second, 20);
    ck_assert_int_eq(c->queues[0].rate.burst, 5);
    aq_config_free(c);
    /* burst defaults to max(1, ceil(per_second)) */
    c = parse_field_ok("queues.default.rate", "{\"per_second\": 2.5}");
    ck_assert_int_eq(c->queues[0].rate.burst, 3);
    aq_config_free(c);
    c = parse_field_ok("queues.default.rate", "{\"per_second\": 0.5}");
    ck_assert_double_eq(c->queues[0].rate.per_second, 0.5);
    ck_assert_int_eq(c->queues[0].rate.burst, 1);
    aq_config_free(c);
}
END_TEST

START_TEST(rate_fields_are_checked_by_name)
{
    expect_field_error("queues.default.rate", "5",
                       "expected null or {\"per_second\": R, \"burst\": B}");
    expect_error("{\"queues\":{\"q\":{\"rate\":{\"burst\":5}}}}",
                 "queues.q.rate.per_second: required (jobs a second)");
    expect_error("{\"queues\":{\"q\":{\"rate\":{\"per_second\":0}}}}",
                 "queues.q.rate.per_second: expected number > 0");
    expect_error("{\"queues\":{\"q\":{\"rate\":{\"per_second\":-1}}}}",
                 "queues.q.rate.per_second: expected number > 0");
    expect_error("{\"queues\":{\"q\":{\"rate\":{\"per_second\":\"x\"}}}}",
                 "queues.q.rate.per_second: expected number >= 0");
    expect_error(
        "{\"queues\":{\"q\":{\"rate\":{\"per_second\":1,\"burst\":0}}}}",
        "queues.q.rate.burst: expected integer >= 1");
    expect_error(
        "{\"queues\":{\"q\":{\"rate\":{\"per_second\":1,\"burst\":1.5}}}}",
        "queues.q.rate.burst: expected integer >= 1");
    expect_error(
        "{\"queues\":{\"q\":{\"rate\":{\"per_second\":1,\"bursts\":2}}}}",
        "queues.q.rate.bursts: unknown field");
}
END_TEST

START_TEST(number_overflowing_a_double_is_rejected)
{
    expect_syntax_error("{\"results\": {\"ttl\": 1e999}}", 1, 25,
                        "real number overflow");
}
END_TEST

/* ---- booleans, enumerations, strings ---- */

START_TEST(boolean_fields_reject_integer_and_string)
{
    for (size_t i = 0; i < COUNT(bool_fields); i++) {
        expect_field_error(bool_fields[i], "1", "expected true or false");
        expect_field_error(bool_fields[i], "0", "expected true or false");
        expect_field_error(bool_fields[i], "\"true\"",
                           "expected true or false");
        expect_field_error(bool_fields[i], "null", "expected true or false");
    }
}
END_TEST

START_TEST(enum_fields_reject_unknown_word_listing_the_allowed_ones)
{
    for (size_t i = 0; i < COUNT(enum_fields); i++) {
        expect_field_error(enum_fields[i].path, "\"sometimes\"",
                           enum_fields[i].expected);
        expect_field_error(enum_fields[i].path, "\"\"",
                           enum_fields[i].expected);
    }
}
END_TEST

START_TEST(enum_fields_are_case_sensitive)
{
    expect_field_error("log.level", "\"INFO\"", enum_fields[1].expected);
    expect_field_error("journal.fsync", "\"Batch\"", enum_fields[0].expected);
}
END_TEST

START_TEST(enum_fields_reject_non_string)
{
    for (size_t i = 0; i < COUNT(enum_fields); i++) {
        expect_field_error(enum_fields[i].path, "1", enum_fields[i].expected);
        expect_field_error(enum_fields[i].path, "null",
                           enum_fields[i].expected);
        expect_field_error(enum_fields[i].path, "[\"info\"]",
                           enum_fields[i].expected);
    }
}
END_TEST

START_TEST(journal_path_null_means_memory_only)
{
    struct aq_config *c = parse_field_ok("journal.path", "null");

    ck_assert_ptr_null(c->journal.path);
    aq_config_free(c);
}
END_TEST

START_TEST(string_or_null_fields_reject_other_types_and_empty)
{
    static const char *const paths[] = {"journal.path", "auth.token_file"};

    for (size_t i = 0; i < COUNT(paths); i++) {
        expect_field_error(paths[i], "1", "expected non-empty string or null");
        expect_field_error(paths[i], "false",
                           "expected non-empty string or null");
        expect_field_error(paths[i], "\"\"",
                           "expected non-empty string or null");
    }
}
END_TEST

START_TEST(auth_token_file_is_kept)
{
    struct aq_config *c =
        parse_field_ok("auth.token_file", "\"/etc/asyncq/token\"");

    ck_assert_str_eq(c->auth_token_file, "/etc/asyncq/token");
    aq_config_free(c);
    c = parse_field_ok("auth.token_file", "null");
    ck_assert_ptr_null(c->auth_token_file);
    aq_config_free(c);
}
END_TEST

START_TEST(metrics_null_disables_it)
{
    struct aq_config *c = parse_field_ok("metrics", "null");

    ck_assert_ptr_null(c->metrics);
    aq_config_free(c);
}
END_TEST

START_TEST(metrics_takes_host_port_and_bracketed_ipv6)
{
    struct aq_config *c = parse_field_ok("metrics", "\"localhost:0\"");

    ck_assert_str_eq(c->metrics, "localhost:0");
    aq_config_free(c);
    c = parse_field_ok("metrics", "\"[::]:9100\"");
    ck_assert_str_eq(c->metrics, "[::]:9100");
    aq_config_free(c);
}
END_TEST

START_TEST(metrics_malformed_is_rejected)
{
    expect_field_error("metrics", "\"127.0.0.1\"", "missing port");
    expect_field_error("metrics", "\"127.0.0.1:\"", "missing port");
    expect_field_error("metrics", "\"127.0.0.1:65536\"",
                       "expected port from 0 to 65535");
    expect_field_error("metrics", "\"tcp://127.0.0.1:1\"",
                       "expected HOST:PORT or [IPV6]:PORT");
    expect_field_error("metrics", "\"\"", "expected \"HOST:PORT\" or null");
    expect_field_error("metrics", "7879", "expected \"HOST:PORT\" or null");
}
END_TEST

/* ---- listen ---- */

START_TEST(listen_accepts_tcp_hosts_ipv6_and_unix)
{
    struct aq_config *c = parse_ok(
        "{\"listen\": [\"tcp://127.0.0.1:0\", \"tcp://localhost:65535\","
        " \"tcp://[::1]:7878\", \"tcp://[fe80::1:2]:1\","
        " \"unix:/run/asyncq/asyncqd.sock\"]}");

    ck_assert_uint_eq(c->nlisten, 5);
    ck_assert_str_eq(c->listen[0], "tcp://127.0.0.1:0");
    ck_assert_str_eq(c->listen[1], "tcp://localhost:65535");
    ck_assert_str_eq(c->listen[2], "tcp://[::1]:7878");
    ck_assert_str_eq(c->listen[3], "tcp://[fe80::1:2]:1");
    ck_assert_str_eq(c->listen[4], "unix:/run/asyncq/asyncqd.sock");
    aq_config_free(c);
}
END_TEST

START_TEST(listen_without_port_is_rejected)
{
    expect_error("{\"listen\": [\"tcp://127.0.0.1\"]}",
                 "listen[0]: missing port");
    expect_error("{\"listen\": [\"tcp://[::1]\"]}", "listen[0]: missing port");
    expect_error("{\"listen\": [\"tcp://host:\"]}", "listen[0]: missing port");
}
END_TEST

START_TEST(listen_port_out_of_range_is_rejected)
{
    expect_error("{\"listen\": [\"tcp://127.0.0.1:70000\"]}",
                 "listen[0]: expected port from 0 to 65535");
    expect_error("{\"listen\": [\"tcp://127.0.0.1:-1\"]}",
                 "listen[0]: expected port from 0 to 65535");
    expect_error("{\"listen\": [\"tcp://127.0.0.1:80x\"]}",
                 "listen[0]: expected port from 0 to 65535");
}
END_TEST

START_TEST(listen_other_scheme_is_rejected)
{
    expect_error("{\"listen\": [\"udp://x:1\"]}",
                 "listen[0]: expected tcp://HOST:PORT, tcp://[IPV6]:PORT, "
                 "tls://HOST:PORT or unix:/PATH");
    expect_error("{\"listen\": [\"127.0.0.1:7878\"]}",
                 "listen[0]: expected tcp://HOST:PORT, tcp://[IPV6]:PORT, "
                 "tls://HOST:PORT or unix:/PATH");
}
END_TEST

START_TEST(listen_unix_relative_path_is_rejected)
{
    expect_error("{\"listen\": [\"unix:relative\"]}",
                 "listen[0]: expected unix:/ABSOLUTE/PATH");
    expect_error("{\"listen\": [\"unix:\"]}",
                 "listen[0]: expected unix:/ABSOLUTE/PATH");
}
END_TEST

START_TEST(listen_unix_path_longer_than_sun_path_is_rejected)
{
    char text[TEXT_MAX], path[200];

    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    snprintf(text, sizeof text, "{\"listen\": [\"unix:%s\"]}", path);
    expect_error(text, "listen[0]: unix socket path longer than 107 bytes");
}
END_TEST

START_TEST(listen_bad_hosts_are_rejected)
{
    expect_error("{\"listen\": [\"tcp://[::g]:1\"]}",
                 "listen[0]: invalid IPv6 address");
    expect_error("{\"listen\": [\"tcp://[::1:1\"]}",
                 "listen[0]: invalid IPv6 address");
    expect_error("{\"listen\": [\"tcp://::1:1\"]}",
                 "listen[0]: expected HOST:PORT or [IPV6]:PORT");
    expect_error("{\"listen\": [\"tcp://300.1.1.1:1\"]}",
                 "listen[0]: invalid host name");
    expect_error("{\"listen\": [\"tcp://a_b:1\"]}",
                 "listen[0]: invalid host name");
    expect_error("{\"listen\": [\"tcp://-a:1\"]}",
                 "listen[0]: invalid host name");
    expect_error("{\"listen\": [\"tcp://a..b:1\"]}",
                 "listen[0]: invalid host name");
    expect_error("{\"listen\": [\"tcp://:1\"]}", "listen[0]: missing host");
}
END_TEST

START_TEST(listen_error_names_the_element_index)
{
    expect_error("{\"listen\": [\"tcp://127.0.0.1:1\", \"tcp://x\"]}",
                 "listen[1]: missing port");
    expect_error("{\"listen\": [\"unix:/a\", \"unix:/b\", 5]}",
                 "listen[2]: expected string");
}
END_TEST

START_TEST(listen_must_be_non_empty_array)
{
    expect_error("{\"listen\": []}",
                 "listen: expected array of at least one address");
    expect_error("{\"listen\": \"tcp://127.0.0.1:1\"}",
                 "listen: expected array of at least one address");
    expect_error("{\"listen\": null}",
                 "listen: expected array of at least one address");
}
END_TEST

/* ---- exec ---- */

START_TEST(exec_allow_relative_path_is_rejected)
{
    expect_error("{\"queues\": {\"default\": {\"exec\":"
                 " {\"allow\": [\"bin/true\"]}}}}",
                 "queues.default.exec.allow[0]: expected absolute path or "
                 "\"*\"");
}
END_TEST

START_TEST(exec_allow_star_must_be_alone)
{
    expect_error("{\"queues\": {\"default\": {\"exec\":"
                 " {\"allow\": [\"/bin/true\", \"*\"]}}}}",
                 "queues.default.exec.allow[1]: \"*\" must be the only entry");
    expect_error("{\"queues\": {\"default\": {\"exec\":"
                 " {\"allow\": [\"*\", \"*\"]}}}}",
                 "queues.default.exec.allow[0]: \"*\" must be the only entry");
}
END_TEST

START_TEST(exec_allow_entries_are_checked_one_by_one)
{
    expect_error("{\"queues\": {\"default\": {\"exec\":"
                 " {\"allow\": [\"/bin/true\", \"bin/ls\"]}}}}",
                 "queues.default.exec.allow[1]: expected absolute path or "
                 "\"*\"");
    expect_error("{\"queues\": {\"default\": {\"exec\":"
                 " {\"allow\": [\"/bin/true\", null]}}}}",
                 "queues.default.exec.allow[1]: expected string");
    expect_field_error("queues.default.exec.allow", "\"*\"",
                       "expected array of absolute paths, or [\"*\"]");
}
END_TEST

START_TEST(exec_allow_empty_array_allows_nothing)
{
    struct aq_config *c = parse_field_ok("queues.default.exec.allow", "[]");

    ck_assert_uint_eq(c->queues[0].exec.nallow, 0);
    aq_config_free(c);
}
END_TEST

START_TEST(exec_path_needs_absolute_directories)
{
    static const char *const bad[] = {
        "\"bin\"",   "\"/bin:usr/bin\"", "\"/bin::/usr/bin\"",
        "\"/bin:\"", "\":/bin\"",        "\"\"",
        "[\"/bin\"]"};
    struct aq_config *c;

    for (size_t i = 0; i < COUNT(bad); i++)
        expect_field_error("queues.default.exec.path", bad[i],
                           "expected ':'-separated absolute directories");
    c = parse_field_ok("queues.default.exec.path", "\"/a:/b/c\"");
    ck_assert_str_eq(c->queues[0].exec.path, "/a:/b/c");
    aq_config_free(c);
}
END_TEST

/* ---- kinds ---- */

/* Bits are 1 << enum aq_kind: exec 0, http 1, sleep 2, echo 3. */
START_TEST(kinds_lists_what_a_queue_runs_besides_its_kind)
{
    struct aq_config *c = parse_ok("{\"queues\": {\"web\": {\"kind\": \"http\","
                                   " \"kinds\": [\"echo\", \"sleep\"]},"
                                   " \"plain\": {\"kind\": \"echo\"}}}");

    ck_assert_uint_eq(c->queues[0].kinds, (1u << 3) | (1u << 2));
    ck_assert_uint_eq(c->queues[1].kinds, 0);
    aq_config_free(c);
    /* The queue's own kind may be listed too: it is allowed either way. */
    c = parse_field_ok("queues.default.kinds", "[\"exec\", \"http\"]");
    ck_assert_uint_eq(c->queues[0].kinds, (1u << 0) | (1u << 1));
    aq_config_free(c);
    c = parse_field_ok("queues.default.kinds", "[]");
    ck_assert_uint_eq(c->queues[0].kinds, 0);
    aq_config_free(c);
}
END_TEST

START_TEST(kinds_rejects_unknown_repeated_and_non_string_entries)
{
    expect_field_error("queues.default.kinds", "\"echo\"",
                       "expected array of kind names");
    expect_field_error("queues.default.kinds", "null",
                       "expected array of kind names");
    expect_error(
        "{\"queues\": {\"default\": {\"kinds\": [\"echo\", \"shell\"]}}}",
        "queues.default.kinds[1]: expected one of \"exec\", "
        "\"http\", \"sleep\", \"echo\", \"remote\"");
    expect_error("{\"queues\": {\"default\": {\"kinds\": [3]}}}",
                 "queues.default.kinds[0]: expected one of \"exec\", "
                 "\"http\", \"sleep\", \"echo\", \"remote\"");
    expect_error("{\"queues\": {\"default\": {\"kinds\": [\"echo\", \"sleep\", "
                 "\"echo\"]}}}",
                 "queues.default.kinds[2]: \"echo\" listed twice");
}
END_TEST

START_TEST(queue_config_copy_keeps_kinds)
{
    struct aq_config *c = parse_field_ok("queues.default.kinds", "[\"sleep\"]");
    struct aq_queue_config copy;

    aq_queue_config_copy(&copy, &c->queues[0]);
    ck_assert_uint_eq(copy.kinds, 1u << 2);
    aq_queue_config_clear(&copy);
    aq_config_free(c);
}
END_TEST

/* ---- unknown fields and structure ---- */

START_TEST(unknown_field_at_top_level_is_named)
{
    expect_error("{\"queue\": {}}", "queue: unknown field");
}
END_TEST

START_TEST(unknown_field_in_section_is_named)
{
    expect_error("{\"producers\": {\"max\": 1, \"maxx\": 2}}",
                 "producers.maxx: unknown field");
    expect_error("{\"auth\": {\"token\": \"x\"}}", "auth.token: unknown field");
}
END_TEST

START_TEST(unknown_field_in_queue_is_named)
{
    expect_error("{\"queues\": {\"default\": {\"exex\": {}}}}",
                 "queues.default.exex: unknown field");
}
END_TEST

START_TEST(unknown_field_in_queue_subsection_is_named)
{
    expect_error("{\"queues\": {\"q1\": {\"exec\": {\"alow\": []}}}}",
                 "queues.q1.exec.alow: unknown field");
    expect_error("{\"queues\": {\"q1\": {\"backoff\": {\"min\": 1}}}}",
                 "queues.q1.backoff.min: unknown field");
    expect_error("{\"queues\": {\"q1\": {\"http\": {\"tls\": true}}}}",
                 "queues.q1.http.tls: unknown field");
}
END_TEST

START_TEST(sections_must_be_objects)
{
    expect_error("{\"producers\": []}", "producers: expected object");
    expect_error("{\"log\": \"info\"}", "log: expected object");
    expect_error("{\"queues\": []}", "queues: expected object");
    expect_error("{\"queues\": null}", "queues: expected object");
    expect_error("{\"queues\": {\"default\": 1}}",
                 "queues.default: expected object");
    expect_error("{\"queues\": {\"default\": {\"backoff\": null}}}",
                 "queues.default.backoff: expected object");
}
END_TEST

START_TEST(top_level_must_be_an_object)
{
    expect_error("[]", "config: expected a JSON object at the top level");
    expect_error("\"x\"", "config: expected a JSON object at the top level");
    expect_error("null", "config: expected a JSON object at the top level");
}
END_TEST

/* ---- syntax ---- */

START_TEST(syntax_error_reports_line_and_column)
{
    expect_syntax_error("{\n  \"log\": {\n    \"level\" \"info\"\n  }\n}", 3,
                        18, "':' expected");
}
END_TEST

START_TEST(truncated_text_is_a_syntax_error)
{
    expect_syntax_error("{\"log\": {\"level\": \"info\"}", 1, 25,
                        "end of file");
    expect_syntax_error("", 1, 0, "end of file");
}
END_TEST

START_TEST(duplicate_keys_are_rejected)
{
    expect_syntax_error("{\"log\": {}, \"log\": {}}", 1, 17,
                        "duplicate object key");
}
END_TEST

START_TEST(duplicate_queue_names_and_queue_keys_are_rejected)
{
    expect_syntax_error("{\"queues\": {\"a\": {}, \"a\": {}}}", 1, 24,
                        "duplicate object key");
    expect_syntax_error(
        "{\"queues\": {\"a\": {\"retries\": 1, \"retries\": 2}}}", 1, 41,
        "duplicate object key");
}
END_TEST

START_TEST(invalid_utf8_and_nul_are_rejected)
{
    struct aq_error err;

    ck_assert_ptr_null(parse_text("{\"journal\": {\"path\": \"\xff\"}}", &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_ptr_nonnull(strstr(err.message, "config: line 1"));
    ck_assert_ptr_null(
        parse_text("{\"journal\": {\"path\": \"a\\u0000b\"}}", &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_ptr_nonnull(strstr(err.message, "config: line 1"));
}
END_TEST

START_TEST(parse_reads_only_len_bytes)
{
    static const char text[] = "{\"log\": {\"level\": \"warn\"}}garbage";
    struct aq_error err = {0};
    struct aq_config *c = aq_config_parse(text, strlen(text) - 7, &err);

    ck_assert_msg(c != NULL, "%s", err.message);
    ck_assert_int_eq(c->log_level, AQ_LOG_WARN);
    aq_config_free(c);
    ck_assert_ptr_null(aq_config_parse(text, strlen(text), &err));
}
END_TEST

START_TEST(parse_error_with_null_error_pointer_is_harmless)
{
    ck_assert_ptr_null(aq_config_parse("{\"x\": 1}", 8, NULL));
    ck_assert_ptr_null(aq_config_parse("{", 1, NULL));
}
END_TEST

/* ---- loading files ---- */

START_TEST(load_of_missing_file_names_the_path)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(aq_config_load("/nonexistent-asyncq/x.json", &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message,
                     "/nonexistent-asyncq/x.json: open: No such file or "
                     "directory");
}
END_TEST

START_TEST(load_of_directory_reports_read_error)
{
    struct aq_error err = {0};

    ck_assert_ptr_null(aq_config_load("/tmp", &err));
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, "/tmp: read: Is a directory");
}
END_TEST

START_TEST(load_reads_a_temporary_file)
{
    char path[64];
    struct aq_error err = {0};
    struct aq_config *c;

    write_temp(path, sizeof path,
               "{\"listen\": [\"unix:/tmp/q.sock\"],\n"
               " \"queues\": {\"mail\": {\"consumers\": 2}}}\n");
    c = aq_config_load(path, &err);
    unlink(path);
    ck_assert_msg(c != NULL, "%s", err.message);
    ck_assert_uint_eq(c->nlisten, 1);
    ck_assert_str_eq(c->listen[0], "unix:/tmp/q.sock");
    ck_assert_uint_eq(c->nqueues, 1);
    ck_assert_str_eq(c->queues[0].name, "mail");
    ck_assert_int_eq(c->queues[0].consumers, 2);
    ck_assert_int_eq(c->queues[0].retries, 0);
    aq_config_free(c);
}
END_TEST

START_TEST(load_field_error_starts_with_the_path)
{
    char path[64], want[128];
    struct aq_error err = {0};
    struct aq_config *c;

    write_temp(path, sizeof path,
               "{\"queues\": {\"default\": {\"consumers\": -1}}}");
    c = aq_config_load(path, &err);
    unlink(path);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    snprintf(want, sizeof want,
             "%s: queues.default.consumers: expected integer >= 0", path);
    ck_assert_str_eq(err.message, want);
}
END_TEST

START_TEST(load_syntax_error_names_path_line_and_column)
{
    char path[64], want[128];
    struct aq_error err = {0};
    struct aq_config *c;

    write_temp(path, sizeof path, "{\n\"log\": {\"level\": info}\n}\n");
    c = aq_config_load(path, &err);
    unlink(path);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    snprintf(want, sizeof want, "%s: line 2 column ", path);
    ck_assert_msg(strncmp(err.message, want, strlen(want)) == 0, "%s",
                  err.message);
}
END_TEST

START_TEST(load_of_empty_file_is_a_syntax_error)
{
    char path[64], want[128];
    struct aq_error err = {0};
    struct aq_config *c;

    write_temp(path, sizeof path, "");
    c = aq_config_load(path, &err);
    unlink(path);
    ck_assert_ptr_null(c);
    snprintf(want, sizeof want, "%s: line 1 column 0: ", path);
    ck_assert_msg(strncmp(err.message, want, strlen(want)) == 0, "%s",
                  err.message);
}
END_TEST

/* ---- tls ---- */

/* ---- store ---- */

START_TEST(store_defaults_to_the_journal)
{
    struct aq_config *c = parse_ok("{}");

    ck_assert_int_eq(c->store.kind, AQ_STORE_JOURNAL);
    ck_assert_ptr_null(c->store.conninfo);
    ck_assert_str_eq(c->store.schema, "asyncq");
    ck_assert_ptr_null(c->store.node);
    aq_config_free(c);
}
END_TEST

START_TEST(store_postgres_reads_every_field)
{
    struct aq_config *c = parse_ok(
        "{\"store\": {\"kind\": \"postgres\", \"conninfo\": \"host=db1,db2 "
        "dbname=q target_session_attrs=read-write\", \"schema\": \"_q_1\", "
        "\"node\": \"Node-1.a_b\"}}");

    ck_assert_int_eq(c->store.kind, AQ_STORE_POSTGRES);
    ck_assert_str_eq(c->store.conninfo,
                     "host=db1,db2 dbname=q target_session_attrs=read-write");
    ck_assert_str_eq(c->store.schema, "_q_1");
    ck_assert_str_eq(c->store.node, "Node-1.a_b");
    aq_config_free(c);
}
END_TEST

START_TEST(store_postgres_needs_conninfo)
{
    expect_error("{\"store\": {\"kind\": \"postgres\"}}",
                 "store.conninfo: required with kind \"postgres\"");
}
END_TEST

START_TEST(store_bad_fields_are_named)
{
    char schema63[80], node65[80];

    expect_field_error("store.kind", "\"redis\"",
                       "expected one of \"journal\", \"postgres\"");
    expect_field_error("store.conninfo", "1",
                       "expected a libpq connection string");
    expect_field_error("store.conninfo", "\"\"",
                       "expected a libpq connection string");
    expect_field_error("store.conninfo", "\"host=x bogus=1\"",
                       "invalid connection option \"bogus\"");
    expect_field_error("store.conninfo", "\"host='x\"",
                       "unterminated quoted string in connection info string");
    for (size_t i = 0; i < 4; i++) {
        static const char *const bad[] = {"\"\"", "\"Asyncq\"", "\"1q\"",
                                          "\"a-b\""};

        expect_field_error("store.schema", bad[i],
                           "expected a schema name: a-z or _, then up to 62 "
                           "of a-z, 0-9, _");
    }
    snprintf(schema63, sizeof schema63, "\"%063d\"", 0);
    schema63[1] = 'a';
    aq_config_free(parse_field_ok("store.schema", schema63));
    snprintf(schema63, sizeof schema63, "\"a%063d\"", 0);
    expect_field_error("store.schema", schema63,
                       "expected a schema name: a-z or _, then up to 62 of "
                       "a-z, 0-9, _");
    snprintf(node65, sizeof node65, "\"%064d\"", 0);
    aq_config_free(parse_field_ok("store.node", node65));
    snprintf(node65, sizeof node65, "\"%065d\"", 0);
    expect_field_error("store.node", node65,
                       "expected 1 to 64 of A-Z, a-z, 0-9, ., _, -");
    expect_field_error("store.node", "\"a b\"",
                       "expected 1 to 64 of A-Z, a-z, 0-9, ., _, -");
    expect_field_error("store.node", "\"\"",
                       "expected 1 to 64 of A-Z, a-z, 0-9, ., _, -");
    expect_field_error("store.nodes", "1", "unknown field");
}
END_TEST

START_TEST(tls_defaults_to_null_and_takes_null)
{
    struct aq_config *cfg = parse_ok("{}");

    ck_assert_ptr_null(cfg->tls);
    aq_config_free(cfg);
    cfg = parse_ok("{\"tls\": null}");
    ck_assert_ptr_null(cfg->tls);
    aq_config_free(cfg);
}
END_TEST

#ifdef AQ_HAVE_TLS
START_TEST(tls_section_is_read_with_its_defaults)
{
    struct aq_config *cfg =
        parse_ok("{\"listen\": [\"tls://0.0.0.0:7443\", \"tcp://[::1]:1\"],"
                 " \"tls\": {\"cert\": \"/c.pem\", \"key\": \"k.pem\"}}");

    ck_assert_str_eq(cfg->listen[0], "tls://0.0.0.0:7443");
    ck_assert_str_eq(cfg->tls->cert, "/c.pem");
    ck_assert_str_eq(cfg->tls->key, "k.pem"); /* parsed text: as given */
    ck_assert_ptr_null(cfg->tls->client_ca);
    ck_assert(cfg->tls->handshake_timeout == 10);
    aq_config_free(cfg);
    cfg = parse_ok("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\", "
                   "\"client_ca\": \"/ca\", \"handshake_timeout\": 2.5}}");
    ck_assert_str_eq(cfg->tls->client_ca, "/ca");
    ck_assert(cfg->tls->handshake_timeout == 2.5);
    aq_config_free(cfg);
}
END_TEST

START_TEST(tls_bad_fields_are_named)
{
    expect_error("{\"tls\": true}", "tls: expected object or null");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\", \"ca\": 1}}",
                 "tls.ca: unknown field");
    expect_error("{\"tls\": {\"cert\": 7, \"key\": \"/k\"}}",
                 "tls.cert: expected non-empty string or null");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"\"}}",
                 "tls.key: expected non-empty string or null");
    expect_error("{\"tls\": {\"key\": \"/k\"}}",
                 "tls.cert: required (a PEM file)");
    expect_error("{\"tls\": {\"cert\": \"/c\"}}",
                 "tls.key: required (a PEM file)");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\", "
                 "\"client_ca\": false}}",
                 "tls.client_ca: expected non-empty string or null");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\", "
                 "\"handshake_timeout\": 0}}",
                 "tls.handshake_timeout: expected number > 0");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\", "
                 "\"handshake_timeout\": \"10\"}}",
                 "tls.handshake_timeout: expected number >= 0");
}
END_TEST

START_TEST(tls_listener_needs_the_tls_section)
{
    expect_error("{\"listen\": [\"tcp://127.0.0.1:1\", \"tls://127.0.0.1:2\"]}",
                 "listen[1]: tls:// needs a \"tls\" section (cert and key)");
    expect_error("{\"listen\": [\"tls://127.0.0.1\"], \"tls\": {\"cert\": "
                 "\"/c\", \"key\": \"/k\"}}",
                 "listen[0]: missing port");
}
END_TEST

START_TEST(tls_relative_paths_resolve_against_the_config_directory)
{
    char dir[] = "/tmp/asyncq-cfgtls.XXXXXX", path[128], want[160];
    struct aq_error err = {0};
    struct aq_config *cfg;
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/asyncqd.json", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs("{\"tls\": {\"cert\": \"certs/c.pem\", \"key\": \"/abs/k.pem\", "
          "\"client_ca\": \"ca.pem\"}}",
          f);
    fclose(f);
    cfg = aq_config_load(path, &err);
    ck_assert_msg(cfg != NULL, "%s", err.message);
    snprintf(want, sizeof want, "%s/certs/c.pem", dir);
    ck_assert_str_eq(cfg->tls->cert, want);
    ck_assert_str_eq(cfg->tls->key, "/abs/k.pem");
    snprintf(want, sizeof want, "%s/ca.pem", dir);
    ck_assert_str_eq(cfg->tls->client_ca, want);
    aq_config_free(cfg);
    unlink(path);
    rmdir(dir);
}
END_TEST
#else
START_TEST(tls_is_refused_without_tls_in_the_build)
{
    expect_error("{\"listen\": [\"tls://127.0.0.1:2\"]}",
                 "listen[0]: tls:// needs TLS, and this asyncqd was built "
                 "without it (ASYNCQ_TLS=OFF)");
    expect_error("{\"tls\": {\"cert\": \"/c\", \"key\": \"/k\"}}",
                 "tls: this asyncqd was built without TLS (ASYNCQ_TLS=OFF): "
                 "expected null");
}
END_TEST
#endif

Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = test_tcase_new("defaults");
    tcase_add_test(tc, default_config_has_spec_values);
    tcase_add_test(tc, empty_object_gives_spec_defaults);
    tcase_add_test(tc, shipped_config_parses_to_the_defaults_it_states);
    tcase_add_test(tc, queue_config_defaults_have_spec_values);
    tcase_add_test(tc, every_field_can_be_set);
    tcase_add_test(tc, every_enum_word_maps_to_its_value);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("queues");
    tcase_add_test(tc, partial_queue_takes_defaults_for_the_rest);
    tcase_add_test(tc, empty_queues_object_gives_no_queues);
    tcase_add_test(tc, given_queues_replace_the_default_queue_in_file_order);
    tcase_add_test(tc, zero_consumers_is_valid);
    tcase_add_test(tc, consumers_above_ten_thousand_are_rejected);
    tcase_add_test(tc, queue_name_outside_the_allowed_characters_is_rejected);
    tcase_add_test(tc, empty_queue_name_is_rejected);
    tcase_add_test(tc, queue_name_of_64_bytes_is_accepted_and_65_rejected);
    tcase_add_test(tc, queue_name_may_hold_dot_dash_underscore_and_digits);
    tcase_add_test(tc, config_queue_finds_by_name_or_returns_null);
    tcase_add_test(tc, queue_config_copy_is_deep);
    tcase_add_test(tc, queue_config_clear_zeroes_and_may_repeat);
    tcase_add_test(tc, config_free_accepts_null);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("types");
    tcase_add_test(tc, integer_fields_reject_real);
    tcase_add_test(tc, integer_fields_reject_string);
    tcase_add_test(tc, integer_fields_reject_boolean_and_null);
    tcase_add_test(tc, integer_fields_reject_value_below_minimum);
    tcase_add_test(tc, integer_fields_accept_their_minimum);
    tcase_add_test(tc, integer_too_large_for_int_is_rejected);
    tcase_add_test(tc, size_field_takes_values_beyond_int);
    tcase_add_test(tc, integer_beyond_64_bits_is_rejected);
    tcase_add_test(tc, duration_fields_reject_negative);
    tcase_add_test(tc, duration_fields_reject_string);
    tcase_add_test(tc, duration_fields_reject_boolean_and_null);
    tcase_add_test(tc, duration_fields_accept_integers_and_fractions);
    tcase_add_test(tc, duration_above_a_billion_seconds_is_rejected);
    tcase_add_test(tc, backoff_factor_below_one_is_rejected);
    tcase_add_test(tc, rate_is_null_by_default_or_per_second_with_a_burst);
    tcase_add_test(tc, rate_fields_are_checked_by_name);
    tcase_add_test(tc, number_overflowing_a_double_is_rejected);
    tcase_add_test(tc, boolean_fields_reject_integer_and_string);
    tcase_add_test(tc,
                   enum_fields_reject_unknown_word_listing_the_allowed_ones);
    tcase_add_test(tc, enum_fields_are_case_sensitive);
    tcase_add_test(tc, enum_fields_reject_non_string);
    tcase_add_test(tc, journal_path_null_means_memory_only);
    tcase_add_test(tc, string_or_null_fields_reject_other_types_and_empty);
    tcase_add_test(tc, auth_token_file_is_kept);
    tcase_add_test(tc, metrics_null_disables_it);
    tcase_add_test(tc, metrics_takes_host_port_and_bracketed_ipv6);
    tcase_add_test(tc, metrics_malformed_is_rejected);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("listen");
    tcase_add_test(tc, listen_accepts_tcp_hosts_ipv6_and_unix);
    tcase_add_test(tc, listen_without_port_is_rejected);
    tcase_add_test(tc, listen_port_out_of_range_is_rejected);
    tcase_add_test(tc, listen_other_scheme_is_rejected);
    tcase_add_test(tc, listen_unix_relative_path_is_rejected);
    tcase_add_test(tc, listen_unix_path_longer_than_sun_path_is_rejected);
    tcase_add_test(tc, listen_bad_hosts_are_rejected);
    tcase_add_test(tc, listen_error_names_the_element_index);
    tcase_add_test(tc, listen_must_be_non_empty_array);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("exec");
    tcase_add_test(tc, exec_allow_relative_path_is_rejected);
    tcase_add_test(tc, exec_allow_star_must_be_alone);
    tcase_add_test(tc, exec_allow_entries_are_checked_one_by_one);
    tcase_add_test(tc, exec_allow_empty_array_allows_nothing);
    tcase_add_test(tc, exec_path_needs_absolute_directories);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("kinds");
    tcase_add_test(tc, kinds_lists_what_a_queue_runs_besides_its_kind);
    tcase_add_test(tc, kinds_rejects_unknown_repeated_and_non_string_entries);
    tcase_add_test(tc, queue_config_copy_keeps_kinds);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("structure");
    tcase_add_test(tc, unknown_field_at_top_level_is_named);
    tcase_add_test(tc, unknown_field_in_section_is_named);
    tcase_add_test(tc, unknown_field_in_queue_is_named);
    tcase_add_test(tc, unknown_field_in_queue_subsection_is_named);
    tcase_add_test(tc, sections_must_be_objects);
    tcase_add_test(tc, top_level_must_be_an_object);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("syntax");
    tcase_add_test(tc, syntax_error_reports_line_and_column);
    tcase_add_test(tc, truncated_text_is_a_syntax_error);
    tcase_add_test(tc, duplicate_keys_are_rejected);
    tcase_add_test(tc, duplicate_queue_names_and_queue_keys_are_rejected);
    tcase_add_test(tc, invalid_utf8_and_nul_are_rejected);
    tcase_add_test(tc, parse_reads_only_len_bytes);
    tcase_add_test(tc, parse_error_with_null_error_pointer_is_harmless);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("load");
    tcase_add_test(tc, load_of_missing_file_names_the_path);
    tcase_add_test(tc, load_of_directory_reports_read_error);
    tcase_add_test(tc, load_reads_a_temporary_file);
    tcase_add_test(tc, load_field_error_starts_with_the_path);
    tcase_add_test(tc, load_syntax_error_names_path_line_and_column);
    tcase_add_test(tc, load_of_empty_file_is_a_syntax_error);
    tcase_add_test(tc, tls_defaults_to_null_and_takes_null);
    tcase_add_test(tc, store_defaults_to_the_journal);
    tcase_add_test(tc, store_postgres_reads_every_field);
    tcase_add_test(tc, store_postgres_needs_conninfo);
    tcase_add_test(tc, store_bad_fields_are_named);
#ifdef AQ_HAVE_TLS
    tcase_add_test(tc, tls_section_is_read_with_its_defaults);
    tcase_add_test(tc, tls_bad_fields_are_named);
    tcase_add_test(tc, tls_listener_needs_the_tls_section);
    tcase_add_test(tc, tls_relative_paths_resolve_against_the_config_directory);
#else
    tcase_add_test(tc, tls_is_refused_without_tls_in_the_build);
#endif
    suite_add_tcase(s, tc);

    return s;
}
