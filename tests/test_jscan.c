/* SPDX-License-Identifier: MIT */
/*
 * tests/test_jscan.c: the hot-path scanner (lib/jscan.h) and the put fast
 * path (lib/fastput.h) held to one safety property: a line fastput takes is
 * one the general path (jansson with JSON_REJECT_DUPLICATES|JSON_DECODE_ANY,
 * then handle_request and m_put) would run as the same put, field by field.
 * Hand tables pin the edges; a seeded differential fuzz looks for the rest
 * (ASYNCQ_FUZZ_ITERATIONS, ASYNCQ_FUZZ_SEED, ASYNCQ_FUZZ_SECONDS: a soak
 * past the 10 s Check limit wants CK_FORK=no or CK_TIMEOUT_MULTIPLIER).
 */
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fastput.h"
#include "jscan.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"
#include "xmalloc.h"

#define JANSSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
#define FUZZ_ITERATIONS 50000 /* default; valgrind runs the suite too */
#define FUZZ_SEED UINT64_C(0x6a7363616e303031)
#define FUZZ_SECONDS 4 /* default; the Check limit is 10 s */
#define WHY_MAX 512
#define SHOW_MAX 3000
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- byte strings ---- */

/* A growing byte string, NUL-terminated for convenience (owned: p). */
struct buf {
    char *p;
    size_t len, cap;
};

static void
buf_add(struct buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void
buf_byte(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

static void buf_fmt(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
buf_fmt(struct buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof tmp);
    buf_add(b, tmp, (size_t)n);
}

/* Replaces b's contents with src, each ' turned into ": the tables write
 * JSON with single quotes so that they stay readable. */
static void
buf_set_dequoted(struct buf *b, const char *src, size_t len)
{
    b->len = 0;
    buf_add(b, src, len);
    for (size_t i = 0; i < b->len; i++) {
        if (b->p[i] == '\'')
            b->p[i] = '"';
    }
}

/* p[0..len) as a C string literal's contents (cut with "..." past cap),
 * so that a failing line can be pasted into C as it is (not into a table:
 * those turn ' into "). */
static const char *
show(const char *p, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    size_t o = 0;
    bool after_hex = false;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        char tmp[12];
        size_t t;

        if (after_hex && c != '\0' && strchr(hex, c) != NULL)
            snprintf(tmp, sizeof tmp, "\"\"%c", c); /* ends \xNN */
        else if (c == '"' || c == '\\')
            snprintf(tmp, sizeof tmp, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            snprintf(tmp, sizeof tmp, "%c", c);
        else
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
        after_hex = tmp[0] == '\\' && tmp[1] == 'x';
        t = strlen(tmp);
        if (o + t + 4 > cap) {
            memcpy(out + o, "...", 4);
            return out;
        }
        memcpy(out + o, tmp, t + 1);
        o += t;
    }
    out[o] = '\0';
    return out;
}

/* ---- the general path's reading, as a reference ---- */

static bool differ(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes why; returns false, for `return differ(...)`. */
static bool
differ(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return false;
}

/* params.name: a string or absent (m_put's opt_string); with fp, byte-equal
 * to fast (NULL when fastput saw none). */
static bool
string_field_agrees(const json_t *params, const char *name,
                    const struct aq_fastput *fp, const char *fast, char *why,
                    size_t cap)
{
    const json_t *v = json_object_get(params, name);

    if (v != NULL && !json_is_string(v))
        return differ(why, cap, "params.%s: not a string", name);
    if (fp == NULL)
        return true;
    if (v == NULL && fast != NULL)
        return differ(why, cap, "params.%s: absent, fastput has \"%.100s\"",
                      name, fast);
    if (v != NULL && fast == NULL)
        return differ(why, cap, "params.%s: fastput has none", name);
    if (v != NULL && (strlen(fast) != json_string_length(v) ||
                      memcmp(fast, json_string_value(v), strlen(fast)) != 0))
        return differ(why, cap,
                      "params.%s: jansson has \"%.100s\", fastput \"%.100s\"",
                      name, json_string_value(v), fast);
    return true;
}

/* params.name: an integer in [min, max] or absent (opt_int); with fp, equal
 * to fast (absent: the default m_put uses, absent_value). */
static bool
int_field_agrees(const json_t *params, const char *name, json_int_t min,
                 json_int_t max, const struct aq_fastput *fp, long long fast,
                 long long absent_value, char *why, size_t cap)
{
    const json_t *v = json_object_get(params, name);
    long long want = absent_value;

    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < min ||
            json_integer_value(v) > max)
            return differ(why, cap, "params.%s: not an integer in range", name);
        want = json_integer_value(v);
    }
    if (fp != NULL && fast != want)
        return differ(why, cap, "params.%s: jansson %lld, fastput %lld", name,
                      want, fast);
    return true;
}

/* params.name: seconds in [0, 1e9] or absent (opt_duration). */
static bool
duration_field_agrees(const json_t *params, const char *name,
                      const struct aq_fastput *fp, double fast,
                      double absent_value, char *why, size_t cap)
{
    const json_t *v = json_object_get(params, name);
    double want = absent_value;

    if (v != NULL) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
            json_number_value(v) > 1e9)
            return differ(why, cap, "params.%s: not seconds in [0, 1e9]", name);
        want = json_number_value(v);
    }
    if (fp != NULL && fast != want)
        return differ(why, cap, "params.%s: jansson %.17g, fastput %.17g", name,
                      want, fast);
    return true;
}

/* params.name: true, false or absent (opt_bool; absent is false). */
static bool
bool_field_agrees(const json_t *params, const char *name,
                  const struct aq_fastput *fp, bool fast, char *why, size_t cap)
{
    const json_t *v = json_object_get(params, name);

    if (v != NULL && !json_is_boolean(v))
        return differ(why, cap, "params.%s: not a boolean", name);
    if (fp != NULL && fast != (v != NULL && json_is_true(v)))
        return differ(why, cap, "params.%s: fastput has %s", name,
                      fast ? "true" : "false");
    return true;
}

/* params.args: an object or absent; with fp, fastput's raw span (inside
 * line) parses to an equal object. */
static bool
args_agree(const json_t *params, const char *line, size_t len,
           const struct aq_fastput *fp, char *why, size_t cap)
{
    const json_t *v = json_object_get(params, "args");
    const struct aq_put *p = fp != NULL ? &fp->put : NULL;
    json_error_t jerr;
    json_t *raw;
    bool same;

    if (v != NULL && !json_is_object(v))
        return differ(why, cap, "params.args: not an object");
    if (p == NULL)
        return true;
    if (p->args != NULL)
        return differ(why, cap, "fastput set args as json_t");
    if (v == NULL)
        return p->args_raw == NULL ||
               differ(why, cap, "params.args: absent, fastput has args_raw");
    if (p->args_raw == NULL)
        return differ(why, cap, "params.args: fastput has no args_raw");
    if (p->args_raw < line || p->args_len > len ||
        p->args_raw + p->args_len > line + len)
        return differ(why, cap, "params.args: args_raw outside the line");
    raw = json_loadb(p->args_raw, p->args_len, JSON_REJECT_DUPLICATES, &jerr);
    if (raw == NULL)
        return differ(why, cap, "params.args: args_raw (%zu bytes): %s",
                      p->args_len, jerr.text);
    same = json_is_object(raw) && json_equal(raw, v);
    json_decref(raw);
    return same || differ(why, cap, "params.args: args_raw reads otherwise");
}

/* m_put's rules on params (NULL: none), and with fp, fastput's values. */
static bool
params_agree(const json_t *params, const char *line, size_t len,
             const struct aq_fastput *fp, char *why, size_t cap)
{
    static const char *const fields[] = {
        "queue",   "kind", "args", "priority", "delay", "timeout",
        "retries", "key",  "wait", "nowait",   NULL};
    const struct aq_put *p = fp != NULL ? &fp->put : NULL;
    const char *name;
    const json_t *key;
    json_t *v;

    json_object_foreach ((json_t *)params, name, v) {
        size_t i;

        for (i = 0; fields[i] != NULL && strcmp(name, fields[i]) != 0; i++)
            ;
        if (fields[i] == NULL)
            return differ(why, cap, "params.%.100s: unknown field", name);
    }
    if (!string_field_agrees(params, "queue", fp, p ? p->queue : NULL, why,
                             cap) ||
        !string_field_agrees(params, "kind", fp, p ? p->kind : NULL, why,
                             cap) ||
        !string_field_agrees(params, "key", fp, p ? p->key : NULL, why, cap) ||
        !int_field_agrees(params, "priority", INT32_MIN, INT32_MAX, fp,
                          p ? p->priority : 0, 0, why, cap) ||
        !int_field_agrees(params, "retries", 0, 1000000, fp, p ? p->retries : 0,
                          -1, why, cap) ||
        !duration_field_agrees(params, "delay", fp, p ? p->delay : 0, 0, why,
                               cap) ||
        !duration_field_agrees(params, "timeout", fp, p ? p->timeout : 0, -1,
                               why, cap) ||
        !bool_field_agrees(params, "wait", fp, fp ? fp->wait : false, why,
                           cap) ||
        !bool_field_agrees(params, "nowait", fp, p ? p->nowait : false, why,
                           cap) ||
        !args_agree(params, line, len, fp, why, cap))
        return false;
    key = json_object_get(params, "key");
    if (key != NULL &&
        (json_string_length(key) == 0 || json_string_length(key) > 1024))
        return differ(why, cap, "params.key: not 1 to 1024 bytes");
    return true;
}

/* "id": absent, a string, an integer or null; with fp, fastput's raw id
 * reads as the same value (the reply echoes it). */
static bool
id_agrees(const json_t *id, const struct aq_fastput *fp, char *why, size_t cap)
{
    json_error_t jerr;
    json_t *raw;
    bool same;

    if (id != NULL && !json_is_string(id) && !json_is_integer(id) &&
        !json_is_null(id))
        return differ(why, cap, "id: not a string, an integer or null");
    if (fp == NULL)
        return true;
    if (id == NULL)
        return fp->id_len == 0 ||
               differ(why, cap, "id: absent, fastput has %zu bytes",
                      fp->id_len);
    if (fp->id_len == 0)
        return differ(why, cap, "id: present, fastput has none");
    if (fp->id_len >= AQ_FASTPUT_ID_MAX)
        return differ(why, cap, "id: fastput's is %zu bytes", fp->id_len);
    /* As call_id() in lib/server.c reads it back. */
    raw = json_loadb(fp->id, fp->id_len, JSON_DECODE_ANY, &jerr);
    if (raw == NULL)
        return differ(why, cap, "id: fastput's \"%.*s\": %s", (int)fp->id_len,
                      fp->id, jerr.text);
    same = json_equal(raw, (json_t *)id);
    json_decref(raw);
    return same || differ(why, cap, "id: fastput's \"%.*s\" reads otherwise",
                          (int)fp->id_len, fp->id);
}

/*
 * True when the general path (handle_line, handle_request, m_put) runs
 * line[0..len) as a put with a string, integer or null id or none; with fp
 * (what fastput made of the line), also when every field it extracted is
 * what jansson read. Otherwise false, with the first difference in why.
 */
static bool
general_agrees(const char *line, size_t len, const struct aq_fastput *fp,
               char *why, size_t cap)
{
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JANSSON_FLAGS, &jerr);
    const json_t *v;
    const char *name;
    json_t *member;
    bool ok = false;

    if (req == NULL)
        return differ(why, cap, "jansson: column %d: %s", jerr.column,
                      jerr.text);
    if (!json_is_object(req)) {
        differ(why, cap, "not an object");
        goto out;
    }
    json_object_foreach (req, name, member) {
        if (strcmp(name, "jsonrpc") != 0 && strcmp(name, "id") != 0 &&
            strcmp(name, "method") != 0 && strcmp(name, "params") != 0) {
            differ(why, cap, "%.100s: unknown member", name);
            goto out;
        }
    }
    v = json_object_get(req, "jsonrpc");
    if (v != NULL && (!json_is_string(v) || json_string_length(v) != 3 ||
                      strcmp(json_string_value(v), "2.0") != 0)) {
        differ(why, cap, "jsonrpc: not \"2.0\"");
        goto out;
    }
    v = json_object_get(req, "method");
    if (!json_is_string(v) || json_string_length(v) != 3 ||
        strcmp(json_string_value(v), "put") != 0) {
        differ(why, cap, "method: not \"put\"");
        goto out;
    }
    v = json_object_get(req, "params");
    if (v != NULL && !json_is_object(v)) {
        differ(why, cap, "params: not an object");
        goto out;
    }
    ok = id_agrees(json_object_get(req, "id"), fp, why, cap) &&
         params_agree(v, line, len, fp, why, cap);
out:
    json_decref(req);
    return ok;
}

/* Asserts that fastput takes line (written with ' for ") and that the
 * general path reads it the same way; fp gets fastput's reading. */
static void
assert_taken(const char *line, size_t len, struct buf *b, struct aq_fastput *fp)
{
    char why[WHY_MAX], shown[SHOW_MAX];

    buf_set_dequoted(b, line, len);
    ck_assert_msg(aq_fastput_parse(b->p, b->len, fp) == 0,
                  "fastput declined \"%s\"", show(b->p, b->len, shown, 1000));
    ck_assert_msg(general_agrees(b->p, b->len, fp, why, sizeof why),
                  "fastput took \"%s\", but %s",
                  show(b->p, b->len, shown, 1000), why);
}

static void
assert_declined(const char *line, size_t len, const char *what, struct buf *b)
{
    struct aq_fastput fp;
    char shown[SHOW_MAX];

    buf_set_dequoted(b, line, len);
    ck_assert_msg(aq_fastput_parse(b->p, b->len, &fp) == -1,
                  "fastput took a line with %s: \"%s\"", what,
                  show(b->p, b->len, shown, sizeof shown));
}

/* ---- lines fastput takes ---- */

struct row {
    const char *line; /* ' stands for " */
    size_t len;
    const char *what; /* why a declined line must go the general way */
};

/* clang-format off */
#define ROW(s) {s, sizeof(s) - 1, NULL}
#define DECLINE(what, s) {s, sizeof(s) - 1, what}
/* clang-format on */

static const struct row taken[] = {
    ROW("{'jsonrpc':'2.0','id':1,'method':'put','params':{'args':{}}}"),
    ROW("{'jsonrpc':'2.0','id':7,'method':'put','params':{'queue':'default',"
        "'kind':'exec','args':{'argv':['echo','hi']},'priority':-5,"
        "'delay':0.25,'timeout':30,'retries':3,'key':'k-1','wait':true,"
        "'nowait':false}}"),
    ROW(" \t{ 'jsonrpc' : '2.0' ,\t'id'\n:\n2 , 'method' :\r'put' , "
        "'params' : { 'queue' : 'q' , 'args' : { 'a' : [ 1 , 2 ] , 'b' "
        ": { } } , 'priority' : 3 , 'wait' : false } } \t\r"),
    ROW("{'params':{'queue':'q','args':{}},'method':'put','id':3,"
        "'jsonrpc':'2.0'}"),
    ROW("{'method':'put','params':{'nowait':true,'wait':false,'key':'k',"
        "'retries':0,'timeout':0,'delay':0,'priority':0,'args':{},"
        "'kind':'k','queue':'q'},'id':4}"),
    ROW("{'id':5,'params':{'kind':'sleep','args':{'seconds':1}},"
        "'jsonrpc':'2.0','method':'put'}"),
    ROW("{'jsonrpc':'2.0','id':'req-1','method':'put','params':{}}"),
    ROW("{'jsonrpc':'2.0','id':'','method':'put','params':{}}"),
    ROW("{'jsonrpc':'2.0','id':'ид/é 😀','method':'put','params':{}}"),
    ROW("{'jsonrpc':'2.0','id':null,'method':'put','params':{'queue':'q'}}"),
    ROW("{'jsonrpc':'2.0','method':'put','params':{'args':{'n':1}}}"),
    ROW("{'jsonrpc':'2.0','id':6,'method':'put'}"),
    ROW("{'jsonrpc':'2.0','id':0,'method':'put','params':{}}"),
    ROW("{'jsonrpc':'2.0','id':123456789012345,'method':'put',"
        "'params':{}}"),
    ROW("{'jsonrpc':'2.0','id':8,'method':'put','params':{'args':{"
        "'a':[1,[2,[3,{'b':{'c':null}}]],true,false,null,-0.5,0,'s'],"
        "'o':{},'e':[],'':0,'deep':{'x':{'y':{'z':[[[]]]}}}}}}"),
    ROW("{'jsonrpc':'2.0','id':9,'method':'put','params':{'queue':'café',"
        "'kind':'日本','key':'ключ-😀','args':{'text':'héllo wörld 日本語 "
        "😀','ключ':'значение','€':'\xf4\x8f\xbf\xbf'}}}"),
    ROW("{'jsonrpc':'2.0','id':10,'method':'put','params':{'args':{"
        "'nl':'a\\nb','q':'say \\'hi\\'','bs':'c:\\\\dir\\\\',"
        "'misc':'\\/\\b\\f\\r\\t','only':'\\\\'}}}"),
    ROW("{'jsonrpc':'2.0','id':11,'method':'put','params':{'args':{},"
        "'priority':-2147483648,'retries':1000000,'delay':1000000000,"
        "'timeout':1000000000.0}}"),
    ROW("{'jsonrpc':'2.0','id':12,'method':'put','params':{"
        "'priority':2147483647,'delay':0.000001,'timeout':0.5}}"),
    ROW("{'jsonrpc':'2.0','id':13,'method':'put','params':{'priority':-0,"
        "'delay':0.0,'retries':0}}"),
    ROW("{'jsonrpc':'2.0','id':14,'method':'put','params':{'args':{"
        "'del':'\x7f','n':[-0,0.5,123456789012345,-12345678901234]}}}"),
    ROW("{'jsonrpc':'2.0','id':15,'method':'put','params':{'nowait':true,"
        "'wait':true,'key':'a key with spaces'}}"),
};

START_TEST(plain_put_lines_are_taken_as_the_general_path_reads_them)
{
    struct buf b = {0};
    struct aq_fastput fp;

    assert_taken(taken[_i].line, taken[_i].len, &b, &fp);
    free(b.p);
}
END_TEST

START_TEST(put_with_every_field_fills_each_member)
{
    static const char line[] =
        "{'jsonrpc':'2.0','id':7,'method':'put','params':{'queue':'default',"
        "'kind':'exec','args':{'argv':['echo','hi']} ,'priority':-5,"
        "'delay':0.25,'timeout':30,'retries':3,'key':'k-1','wait':true,"
        "'nowait':true}}";
    struct buf b = {0};
    struct aq_fastput fp;

    assert_taken(line, sizeof line - 1, &b, &fp);
    ck_assert_uint_eq(fp.id_len, 1);
    ck_assert_mem_eq(fp.id, "7", 1);
    ck_assert_str_eq(fp.put.queue, "default");
    ck_assert_str_eq(fp.put.kind, "exec");
    ck_assert_ptr_null(fp.put.args);
    ck_assert_uint_eq(fp.put.args_len, strlen("{'argv':['echo','hi']}"));
    ck_assert_mem_eq(fp.put.args_raw, "{\"argv\":[\"echo\",\"hi\"]}",
                     fp.put.args_len);
    ck_assert_int_eq(fp.put.priority, -5);
    ck_assert_double_eq(fp.put.delay, 0.25);
    ck_assert_double_eq(fp.put.timeout, 30);
    ck_assert_int_eq(fp.put.retries, 3);
    ck_assert_str_eq(fp.put.key, "k-1");
    ck_assert(fp.wait);
    ck_assert(fp.put.nowait);
    free(b.p);
}
END_TEST

START_TEST(put_without_fields_leaves_the_defaults)
{
    static const char line[] = "{'method':'put'}";
    struct buf b = {0};
    struct aq_fastput fp;

    assert_taken(line, sizeof line - 1, &b, &fp);
    ck_assert_uint_eq(fp.id_len, 0);
    ck_assert_ptr_null(fp.put.queue);
    ck_assert_ptr_null(fp.put.kind);
    ck_assert_ptr_null(fp.put.args);
    ck_assert_ptr_null(fp.put.args_raw);
    ck_assert_int_eq(fp.put.priority, 0);
    ck_assert_double_eq(fp.put.delay, 0);
    ck_assert_double_lt(fp.put.timeout, 0);
    ck_assert_int_lt(fp.put.retries, 0);
    ck_assert_ptr_null(fp.put.key);
    ck_assert(!fp.wait);
    ck_assert(!fp.put.nowait);
    free(b.p);
}
END_TEST

START_TEST(string_id_is_kept_as_its_raw_json)
{
    static const char line[] = "{'id':'a/b','method':'put'}";
    struct buf b = {0};
    struct aq_fastput fp;

    assert_taken(line, sizeof line - 1, &b, &fp);
    ck_assert_uint_eq(fp.id_len, 5);
    ck_assert_mem_eq(fp.id, "\"a/b\"", 5);
    free(b.p);
}
END_TEST

/* {"jsonrpc":"2.0","id":1,"method":"put","params":{<params>}} in b. */
static void
put_line(struct buf *b, const char *params_head, const struct buf *middle,
         const char *params_tail)
{
    b->len = 0;
    buf_str(b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"put\",\"params\":{");
    buf_str(b, params_head);
    buf_add(b, middle->p, middle->len);
    buf_str(b, params_tail);
    buf_str(b, "}}");
}

/* "key" of n bytes: 1024 is the most m_put takes. */
static void
key_line(struct buf *b, size_t n)
{
    struct buf key = {0};

    for (size_t i = 0; i < n; i++)
        buf_byte(&key, (char)('a' + i % 26));
    put_line(b, "\"key\":\"", &key, "\"");
    free(key.p);
}

/* args with n members, "k0" to "k<n-1>". */
static void
wide_args_line(struct buf *b, int n)
{
    struct buf args = {0};

    for (int i = 0; i < n; i++)
        buf_fmt(&args, "%s\"k%d\":%d", i > 0 ? "," : "", i, i);
    put_line(b, "\"args\":{", &args, "}");
    free(args.p);
}

/* args holding objects nested depth deep: {"a":{"a":...{}}}. */
static void
deep_args_line(struct buf *b, int depth)
{
    struct buf args = {0};

    for (int i = 1; i < depth; i++)
        buf_str(&args, "{\"a\":");
    buf_str(&args, "{}");
    for (int i = 1; i < depth; i++)
        buf_byte(&args, '}');
    put_line(b, "\"args\":", &args, "");
    free(args.p);
}

START_TEST(longest_key_wide_args_and_nested_args_are_taken)
{
    struct buf b = {0}, line = {0};
    struct aq_fastput fp;

    key_line(&b, 1024);
    assert_taken(b.p, b.len, &line, &fp);
    ck_assert_uint_eq(strlen(fp.put.key), 1024);
    wide_args_line(&b, 16);
    assert_taken(b.p, b.len, &line, &fp);
    deep_args_line(&b, 20);
    assert_taken(b.p, b.len, &line, &fp);
    free(b.p);
    free(line.p);
}
END_TEST

/* ---- lines fastput leaves to the general path ---- */

static const struct row declined[] = {
    DECLINE("an unknown params field",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{'queue':'q',"
            "'color':'red'}}"),
    DECLINE("an empty params field name",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{'':1}}"),
    DECLINE("a params field in other case",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{'Queue':'q'}}"),
    DECLINE("a params field with a trailing space",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{'args ':{}}}"),
    DECLINE("an unknown top-level member",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{},'extra':1}"),
    DECLINE("a top-level member in other case",
            "{'jsonrpc':'2.0','id':1,'Method':'put','params':{}}"),
    DECLINE("method get", "{'jsonrpc':'2.0','id':1,'method':'get'}"),
    DECLINE("method PUT", "{'jsonrpc':'2.0','id':1,'method':'PUT'}"),
    DECLINE("method 'put '", "{'jsonrpc':'2.0','id':1,'method':'put '}"),
    DECLINE("method not a string", "{'jsonrpc':'2.0','id':1,'method':1}"),
    DECLINE("no method", "{'jsonrpc':'2.0','id':1,'params':{}}"),
    DECLINE("jsonrpc 1.0", "{'jsonrpc':'1.0','id':1,'method':'put'}"),
    DECLINE("jsonrpc a number", "{'jsonrpc':2.0,'id':1,'method':'put'}"),
    DECLINE("jsonrpc null", "{'jsonrpc':null,'id':1,'method':'put'}"),
    DECLINE("a duplicate jsonrpc",
            "{'jsonrpc':'2.0','jsonrpc':'2.0','id':1,'method':'put'}"),
    DECLINE("a duplicate id", "{'jsonrpc':'2.0','id':1,'id':2,'method':'put'}"),
    DECLINE("a duplicate null id", "{'id':null,'method':'put','id':null}"),
    DECLINE("a duplicate method",
            "{'jsonrpc':'2.0','id':1,'method':'put','method':'put'}"),
    DECLINE("a duplicate params",
            "{'jsonrpc':'2.0','id':1,'method':'put','params':{},"
            "'params':{}}"),
    DECLINE("a duplicate params.queue",
            "{'id':1,'method':'put','params':{'queue':'a','queue':'b'}}"),
    DECLINE("a duplicate params.args",
            "{'id':1,'method':'put','params':{'args':{},'args':{}}}"),
    DECLINE("a duplicate params.wait",
            "{'id':1,'method':'put','params':{'wait':true,'wait':true}}"),
    DECLINE("a duplicate params.priority",
            "{'id':1,'method':'put','params':{'priority':1,'kind':'k',"
            "'priority':1}}"),
    DECLINE("a duplicate key in args",
            "{'id':1,'method':'put','params':{'args':{'a':1,'b':2,'a':1}}}"),
    DECLINE("a duplicate key in an object in args",
            "{'id':1,'method':'put','params':{'args':{'o':{'x':1,'x':2}}}}"),
    DECLINE("a duplicate key in an object in an array in args",
            "{'id':1,'method':'put','params':{'args':{'a':[1,{'y':{},"
            "'x':1,'y':[]}]}}}"),
    DECLINE("a \\u escape in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'\\u0041'}}}"),
    DECLINE("a \\u escape in an args key",
            "{'id':1,'method':'put','params':{'args':{'\\u0061':1}}}"),
    DECLINE("a \\u escape making a duplicate args key",
            "{'id':1,'method':'put','params':{'args':{'a':1,'\\u0061':2}}}"),
    DECLINE("a \\u escape in queue",
            "{'id':1,'method':'put','params':{'queue':'\\u0071'}}"),
    DECLINE("a \\u escape in kind",
            "{'id':1,'method':'put','params':{'kind':'\\u0065xec'}}"),
    DECLINE("a \\u escape in key",
            "{'id':1,'method':'put','params':{'key':'k\\u0031'}}"),
    DECLINE("a \\u escape in the id", "{'id':'\\u0031','method':'put'}"),
    DECLINE("a \\u escape in method", "{'id':1,'method':'p\\u0075t'}"),
    DECLINE("a \\u escape in jsonrpc",
            "{'jsonrpc':'2\\u002e0','id':1,'method':'put'}"),
    DECLINE("a \\u escape in a member name", "{'id':1,'\\u006dethod':'put'}"),
    DECLINE("a \\u escape in a params field name",
            "{'id':1,'method':'put','params':{'\\u0071ueue':'q'}}"),
    DECLINE("\\u0000 in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'x\\u0000y'}}}"),
    DECLINE("\\u0000 in queue",
            "{'id':1,'method':'put','params':{'queue':'q\\u0000'}}"),
    DECLINE("an escaped surrogate pair",
            "{'id':1,'method':'put','params':{'args':{'a':'\\ud83d\\ude00'}}}"),
    DECLINE("a lone escaped surrogate",
            "{'id':1,'method':'put','params':{'args':{'a':'\\ud800'}}}"),
    DECLINE("a short \\u escape",
            "{'id':1,'method':'put','params':{'args':{'a':'\\u12'}}}"),
    DECLINE("a backslash before a raw NUL",
            "{'id':1,'method':'put','params':{'args':{'a':'\\\0'}}}"),
    DECLINE("an unknown escape",
            "{'id':1,'method':'put','params':{'args':{'a':'\\x41'}}}"),
    DECLINE("a raw U+0001 in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'\x01'}}}"),
    DECLINE("a raw tab in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'a\tb'}}}"),
    DECLINE("a raw newline in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'a\nb'}}}"),
    DECLINE("a raw NUL in an args string",
            "{'id':1,'method':'put','params':{'args':{'a':'a\0b'}}}"),
    DECLINE("a raw NUL in queue",
            "{'id':1,'method':'put','params':{'queue':'a\0b'}}"),
    DECLINE("a raw U+001F in the id", "{'id':'\x1f','method':'put'}"),
    DECLINE("a raw NUL after the object", "{'id':1,'method':'put'}\0"),
    DECLINE("a raw NUL between members", "{'id':1,\0'method':'put'}"),
    DECLINE("an overlong '/' in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xc0\xaf'}}}"),
    DECLINE("an overlong 3-byte form in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xe0\x80\xaf'}}}"),
    DECLINE("an overlong 4-byte form in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xf0\x80\x80"
            "\xaf'}}}"),
    DECLINE("an encoded surrogate in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xed\xa0\x80'}}}"),
    DECLINE("an encoded low surrogate in queue",
            "{'id':1,'method':'put','params':{'queue':'\xed\xbf\xbf'}}"),
    DECLINE("a code point past U+10FFFF in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xf4\x90\x80"
            "\x80'}}}"),
    DECLINE("a truncated sequence in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\xe2\x82'}}}"),
    DECLINE("a sequence truncated by the end of the line",
            "{'id':1,'method':'put','params':{'args':{'a':'\xf0\x9f\x98"),
    DECLINE("a lone continuation byte in args",
            "{'id':1,'method':'put','params':{'args':{'a':'\x80'}}}"),
    DECLINE("a byte 0xff in an args key",
            "{'id':1,'method':'put','params':{'args':{'\xff':1}}}"),
    DECLINE("invalid UTF-8 in kind",
            "{'id':1,'method':'put','params':{'kind':'\xc3\x28'}}"),
    DECLINE("invalid UTF-8 in key",
            "{'id':1,'method':'put','params':{'key':'\xc3'}}"),
    DECLINE("invalid UTF-8 in the id", "{'id':'\xe2\x28\xa1','method':'put'}"),
    DECLINE("a byte 0xe9 between members", "{'id':1,\xe9'method':'put'}"),
    DECLINE("a byte-order mark", "\xef\xbb\xbf{'id':1,'method':'put'}"),
    DECLINE("an exponent in priority",
            "{'id':1,'method':'put','params':{'priority':1e2}}"),
    DECLINE("an exponent in delay",
            "{'id':1,'method':'put','params':{'delay':1e2}}"),
    DECLINE("an exponent in timeout",
            "{'id':1,'method':'put','params':{'timeout':1E1}}"),
    DECLINE("an exponent in retries",
            "{'id':1,'method':'put','params':{'retries':1e0}}"),
    DECLINE("an exponent in args",
            "{'id':1,'method':'put','params':{'args':{'n':1e5}}}"),
    DECLINE("a negative exponent in args",
            "{'id':1,'method':'put','params':{'args':{'n':[1.5e-3]}}}"),
    DECLINE("an exponent in the id", "{'id':1e3,'method':'put'}"),
    DECLINE("priority 2147483648",
            "{'id':1,'method':'put','params':{'priority':2147483648}}"),
    DECLINE("priority -2147483649",
            "{'id':1,'method':'put','params':{'priority':-2147483649}}"),
    DECLINE("an id of 1e999", "{'id':1e999,'method':'put'}"),
    DECLINE("a 30-digit id",
            "{'id':123456789012345678901234567890,'method':'put'}"),
    DECLINE("a 30-digit number in args",
            "{'id':1,'method':'put','params':{'args':{'n':"
            "123456789012345678901234567890}}}"),
    DECLINE("a 16-digit number in args",
            "{'id':1,'method':'put','params':{'args':{'n':1234567890123456}}}"),
    DECLINE("a 30-digit priority",
            "{'id':1,'method':'put','params':{'priority':"
            "-123456789012345678901234567890}}"),
    DECLINE("retries 1000001",
            "{'id':1,'method':'put','params':{'retries':1000001}}"),
    DECLINE("delay 1000000001",
            "{'id':1,'method':'put','params':{'delay':1000000001}}"),
    DECLINE("timeout 1000000000.5",
            "{'id':1,'method':'put','params':{'timeout':1000000000.5}}"),
    DECLINE("delay -1", "{'id':1,'method':'put','params':{'delay':-1}}"),
    DECLINE("timeout -0.5",
            "{'id':1,'method':'put','params':{'timeout':-0.5}}"),
    DECLINE("retries -1", "{'id':1,'method':'put','params':{'retries':-1}}"),
    DECLINE("priority 1.5",
            "{'id':1,'method':'put','params':{'priority':1.5}}"),
    DECLINE("priority 1.0",
            "{'id':1,'method':'put','params':{'priority':1.0}}"),
    DECLINE("retries 2.0", "{'id':1,'method':'put','params':{'retries':2.0}}"),
    DECLINE("delay '1'", "{'id':1,'method':'put','params':{'delay':'1'}}"),
    DECLINE("timeout null",
            "{'id':1,'method':'put','params':{'timeout':null}}"),
    DECLINE("wait 1", "{'id':1,'method':'put','params':{'wait':1}}"),
    DECLINE("wait null", "{'id':1,'method':'put','params':{'wait':null}}"),
    DECLINE("nowait 'true'",
            "{'id':1,'method':'put','params':{'nowait':'true'}}"),
    DECLINE("queue 1", "{'id':1,'method':'put','params':{'queue':1}}"),
    DECLINE("queue null", "{'id':1,'method':'put','params':{'queue':null}}"),
    DECLINE("kind false", "{'id':1,'method':'put','params':{'kind':false}}"),
    DECLINE("key 5", "{'id':1,'method':'put','params':{'key':5}}"),
    DECLINE("an empty key", "{'id':1,'method':'put','params':{'key':''}}"),
    DECLINE("args []", "{'id':1,'method':'put','params':{'args':[]}}"),
    DECLINE("args a string", "{'id':1,'method':'put','params':{'args':'x'}}"),
    DECLINE("args null", "{'id':1,'method':'put','params':{'args':null}}"),
    DECLINE("args 1", "{'id':1,'method':'put','params':{'args':1}}"),
    DECLINE("args true", "{'id':1,'method':'put','params':{'args':true}}"),
    DECLINE("params []", "{'id':1,'method':'put','params':[]}"),
    DECLINE("params null", "{'id':1,'method':'put','params':null}"),
    DECLINE("params a string", "{'id':1,'method':'put','params':'q'}"),
    DECLINE("trailing garbage", "{'id':1,'method':'put','params':{}}x"),
    DECLINE("a trailing number", "{'id':1,'method':'put','params':{}} 1"),
    DECLINE("a trailing comma after the object",
            "{'id':1,'method':'put','params':{}},"),
    DECLINE("a trailing brace", "{'id':1,'method':'put','params':{}}}"),
    DECLINE("two objects",
            "{'id':1,'method':'put','params':{}}{'id':2,'method':'put'}"),
    DECLINE("two objects apart",
            "{'id':1,'method':'put'} {'id':2,'method':'put'}"),
    DECLINE("an empty line", ""),
    DECLINE("a blank line", " \t\r"),
    DECLINE("a batch of one put", "[{'id':1,'method':'put','params':{}}]"),
    DECLINE("an empty batch", "[]"),
    DECLINE("a string", "'put'"),
    DECLINE("an empty object", "{}"),
    DECLINE("an id of 1.5", "{'id':1.5,'method':'put'}"),
    DECLINE("an id of 1.0", "{'id':1.0,'method':'put'}"),
    DECLINE("an id of -1", "{'id':-1,'method':'put'}"),
    DECLINE("an id of -0", "{'id':-0,'method':'put'}"),
    DECLINE("an id of true", "{'id':true,'method':'put'}"),
    DECLINE("an id array", "{'id':[1],'method':'put'}"),
    DECLINE("an id object", "{'id':{},'method':'put'}"),
    DECLINE("an id with a leading zero", "{'id':01,'method':'put'}"),
    DECLINE("an id with an escaped quote", "{'id':'a\\'b','method':'put'}"),
    DECLINE("an id with an escaped newline", "{'id':'a\\nb','method':'put'}"),
    DECLINE("a 32-byte string id",
            "{'id':'0123456789abcdef0123456789abcd','method':'put'}"),
    DECLINE("a queue with an escaped newline",
            "{'id':1,'method':'put','params':{'queue':'q\\n'}}"),
    DECLINE("a queue with an escaped backslash",
            "{'id':1,'method':'put','params':{'queue':'q\\\\'}}"),
    DECLINE("a queue with an escaped slash",
            "{'id':1,'method':'put','params':{'queue':'a\\/b'}}"),
    DECLINE("a key with an escaped quote",
            "{'id':1,'method':'put','params':{'key':'\\''}}"),
    DECLINE("an args key with an escape",
            "{'id':1,'method':'put','params':{'args':{'k\\\\ey':1}}}"),
    DECLINE("a batch (the general path keeps it)",
            "{'id':1,'method':'put','params':{'batch':'b1'}}"),
    DECLINE("a kind longer than fastput keeps",
            "{'id':1,'method':'put','params':{'kind':'abcdefghijklmnop'}}"),
    DECLINE("priority with a leading zero",
            "{'id':1,'method':'put','params':{'priority':01}}"),
    DECLINE("priority with a plus sign",
            "{'id':1,'method':'put','params':{'priority':+1}}"),
    DECLINE("a number with a leading zero in args",
            "{'id':1,'method':'put','params':{'args':{'n':007}}}"),
    DECLINE("a number starting with '.' in args",
            "{'id':1,'method':'put','params':{'args':{'n':.5}}}"),
    DECLINE("a number ending with '.' in args",
            "{'id':1,'method':'put','params':{'args':{'n':1.}}}"),
    DECLINE("a lone minus in args",
            "{'id':1,'method':'put','params':{'args':{'n':-}}}"),
    DECLINE("NaN in args",
            "{'id':1,'method':'put','params':{'args':{'n':NaN}}}"),
    DECLINE("Infinity in delay",
            "{'id':1,'method':'put','params':{'delay':Infinity}}"),
    DECLINE("a cut literal in args",
            "{'id':1,'method':'put','params':{'args':{'n':tru}}}"),
    DECLINE("a literal with trailing letters",
            "{'id':1,'method':'put','params':{'wait':truex}}"),
    DECLINE("a literal in capitals",
            "{'id':1,'method':'put','params':{'args':{'n':NULL}}}"),
    DECLINE("a trailing comma in params",
            "{'id':1,'method':'put','params':{'queue':'q',}}"),
    DECLINE("a trailing comma in args",
            "{'id':1,'method':'put','params':{'args':{'a':1,}}}"),
    DECLINE("a trailing comma in an args array",
            "{'id':1,'method':'put','params':{'args':{'a':[1,]}}}"),
    DECLINE("a trailing comma among members", "{'id':1,'method':'put',}"),
    DECLINE("a missing colon", "{'id':1,'method' 'put'}"),
    DECLINE("a missing comma", "{'id':1 'method':'put'}"),
    DECLINE("a missing comma in args",
            "{'id':1,'method':'put','params':{'args':{'a':1 'b':2}}}"),
    DECLINE("a missing closing brace", "{'id':1,'method':'put','params':{}"),
    DECLINE("a missing args closing brace",
            "{'id':1,'method':'put','params':{'args':{'a':[1]}}"),
    DECLINE("an unterminated string", "{'id':1,'method':'put"),
    DECLINE("a comment", "{'id':1,'method':'put'/* c */}"),
    DECLINE("a form feed as whitespace", "{'id':1,\f'method':'put'}"),
    DECLINE("a vertical tab as whitespace", "{\v'id':1,'method':'put'}"),
    DECLINE("a non-breaking space as whitespace",
            "{'id':1,\xc2\xa0'method':'put'}"),
};

START_TEST(lines_the_general_path_answers_otherwise_are_declined)
{
    struct buf b = {0};

    assert_declined(declined[_i].line, declined[_i].len, declined[_i].what, &b);
    free(b.p);
}
END_TEST

START_TEST(long_key_wide_args_and_deep_args_are_declined)
{
    struct buf b = {0}, line = {0};

    key_line(&b, 1025);
    assert_declined(b.p, b.len, "a key of 1025 bytes", &line);
    key_line(&b, 1100);
    assert_declined(b.p, b.len, "a key of 1100 bytes", &line);
    wide_args_line(&b, 20);
    assert_declined(b.p, b.len, "args with 20 keys", &line);
    deep_args_line(&b, 40);
    assert_declined(b.p, b.len, "args nested 40 deep", &line);
    deep_args_line(&b, 3000);
    assert_declined(b.p, b.len, "args nested 3000 deep", &line);
    free(b.p);
    free(line.p);
}
END_TEST

/* ---- aq_jscan_value and aq_jscan_plain_string ---- */

struct scan_row {
    const char *text; /* ' stands for " */
    size_t len;
    bool valid;
    size_t end; /* *pos after the value, when valid */
};

/* clang-format off */
#define SCAN(s, valid, end) {s, sizeof(s) - 1, valid, end}
/* clang-format on */

static const struct scan_row scans[] = {
    SCAN("1", true, 1),
    SCAN(" -0.5 ", true, 6),
    SCAN("true,", true, 4),
    SCAN("null]", true, 4),
    SCAN("'a\\n\\'' ", true, 8),
    SCAN("[1, [], {}, 'x']", true, 16),
    SCAN("{'a':{'b':[false]}} x", true, 20),
    SCAN("'日本'", true, 8),
    SCAN("1e3", false, 0),
    SCAN("12345678901234567", false, 0),
    SCAN("'\\u0041'", false, 0),
    SCAN("'\\\0'", false, 0),
    SCAN("'\xc0\xaf'", false, 0),
    SCAN("{'a':1,'a':2}", false, 0),
    SCAN("[1,]", false, 0),
    SCAN("[1 2]", false, 0),
    SCAN("{'a' 1}", false, 0),
    SCAN("'abc", false, 0),
    SCAN("", false, 0),
    SCAN("  ", false, 0),
    SCAN("-", false, 0),
    SCAN("tru", false, 0),
    SCAN("nul", false, 0),
    SCAN("{", false, 0),
};

START_TEST(jscan_value_is_valid_only_for_what_jansson_parses)
{
    const struct scan_row *r = &scans[_i];
    struct buf b = {0};
    char shown[SHOW_MAX];
    json_error_t jerr;
    size_t pos = 0;
    bool valid;
    json_t *v;

    buf_set_dequoted(&b, r->text, r->len);
    valid = aq_jscan_value(b.p, b.len, &pos);
    ck_assert_msg(valid == r->valid, "\"%s\": %s", show(b.p, b.len, shown, 200),
                  valid ? "valid" : "unsure");
    if (valid) {
        ck_assert_uint_eq(pos, r->end);
        v = json_loadb(b.p, pos, JANSSON_FLAGS, &jerr);
        ck_assert_msg(v != NULL, "jansson: %s", jerr.text);
        json_decref(v);
    }
    free(b.p);
}
END_TEST

/* The string scanner takes eight plain bytes at a time: a byte that is
 * not plain (control, quote, backslash escape, UTF-8, invalid UTF-8) at
 * every offset of strings of every length around a word must be judged as
 * jansson judges it. */
START_TEST(jscan_judges_a_special_byte_at_every_offset_as_jansson)
{
    static const char *const specials[] = {
        "\x01",     "\x1f",         "\"",
        "\\n",      "\\\"",         "\\u0041",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\xc3",     "\xff",         "\x7f",
        " "};
    char text[64], shown[SHOW_MAX];
    json_error_t jerr;

    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        for (size_t len = 0; len <= 24; len++) {
            for (size_t at = 0; at <= len; at++) {
                size_t n = 0, pos = 0;
                bool valid;
                json_t *v;

                text[n++] = '"';
                for (size_t i = 0; i < len; i++) {
                    if (i == at) {
                        memcpy(text + n, specials[k], strlen(specials[k]));
                        n += strlen(specials[k]);
                    } else
                        text[n++] = (char)('a' + i % 26);
                }
                text[n++] = '"';
                valid = aq_jscan_value(text, n, &pos);
                if (strcmp(specials[k], "\"") == 0) {
                    /* A bare quote ends the string right there. */
                    ck_assert_msg(valid && pos == at + 2, "%s: %d at %zu",
                                  show(text, n, shown, 200), valid, pos);
                    continue;
                }
                v = json_loadb(text, n, JANSSON_FLAGS, &jerr);
                /* jscan may decline what jansson takes (\u escapes), never
                 * take what jansson refuses. */
                ck_assert_msg(!valid || v != NULL, "took %s",
                              show(text, n, shown, 200));
                if (valid)
                    ck_assert_uint_eq(pos, n);
                if (strcmp(specials[k], "\\u0041") != 0)
                    ck_assert_msg(valid == (v != NULL), "%s: jscan %d",
                                  show(text, n, shown, 200), valid);
                json_decref(v);
            }
        }
    }
}
END_TEST

START_TEST(jscan_plain_string_gives_contents_without_escapes)
{
    static const char plain[] = " \"a b\" ,", esc[] = "\"a\\nb\"";
    const char *s = NULL;
    size_t n = 0, pos = 0;

    ck_assert(aq_jscan_plain_string(plain, sizeof plain - 1, &pos, &s, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(s, "a b", 3);
    ck_assert_uint_eq(pos, 7);
    pos = 0;
    ck_assert(!aq_jscan_plain_string(esc, sizeof esc - 1, &pos, &s, &n));
    pos = 0;
    ck_assert(!aq_jscan_plain_string("12", 2, &pos, &s, &n));
}
END_TEST

/* ---- aq_utf8_seq_len ---- */

struct utf8_row {
    const char *bytes;
    size_t n; /* bytes available */
    size_t len;
};

/* clang-format off */
#define UTF8(s, len) {s, sizeof(s) - 1, len}
/* clang-format on */

static const struct utf8_row utf8_rows[] = {
    UTF8("A", 1),
    UTF8("\x7f", 1),
    UTF8("\xc2\x80", 2),             /* U+0080 */
    UTF8("\xc3\xa9", 2),             /* é */
    UTF8("\xdf\xbf", 2),             /* U+07FF */
    UTF8("\xe0\xa0\x80", 3),         /* U+0800 */
    UTF8("\xe2\x82\xac", 3),         /* € */
    UTF8("\xed\x9f\xbf", 3),         /* U+D7FF */
    UTF8("\xee\x80\x80", 3),         /* U+E000 */
    UTF8("\xef\xbf\xbf", 3),         /* U+FFFF */
    UTF8("\xf0\x90\x80\x80", 4),     /* U+10000 */
    UTF8("\xf0\x9f\x98\x80", 4),     /* 😀 */
    UTF8("\xf4\x8f\xbf\xbf", 4),     /* U+10FFFF */
    UTF8("\xc3\xa9\x41", 2),         /* what follows is not read */
    UTF8("\xc0\x80", 0),             /* overlong U+0000 */
    UTF8("\xc0\xaf", 0),             /* overlong '/' */
    UTF8("\xc1\xbf", 0),             /* overlong U+007F */
    UTF8("\xe0\x80\x80", 0),         /* overlong U+0000 */
    UTF8("\xe0\x9f\xbf", 0),         /* overlong U+07FF */
    UTF8("\xf0\x80\x80\x80", 0),     /* overlong U+0000 */
    UTF8("\xf0\x8f\xbf\xbf", 0),     /* overlong U+FFFF */
    UTF8("\xed\xa0\x80", 0),         /* U+D800 */
    UTF8("\xed\xaf\xbf", 0),         /* U+DBFF */
    UTF8("\xed\xb0\x80", 0),         /* U+DC00 */
    UTF8("\xed\xbf\xbf", 0),         /* U+DFFF */
    UTF8("\xf4\x90\x80\x80", 0),     /* U+110000 */
    UTF8("\xf5\x80\x80\x80", 0),     /* lead byte past U+10FFFF */
    UTF8("\xf7\xbf\xbf\xbf", 0),     /* U+1FFFFF */
    UTF8("\xf8\x88\x80\x80\x80", 0), /* a 5-byte form */
    UTF8("\xfc\x84\x80\x80\x80\x80", 0),
    UTF8("\xfe", 0),
    UTF8("\xff", 0),
    UTF8("\xc3", 0),             /* truncated 2-byte */
    UTF8("\xe2\x82", 0),         /* truncated 3-byte */
    UTF8("\xe2", 0),             /* truncated 3-byte */
    UTF8("\xf0\x9f\x98", 0),     /* truncated 4-byte */
    UTF8("\xc3\x41", 0),         /* ASCII where a continuation belongs */
    UTF8("\xe2\x28\xa1", 0),     /* the same in second place */
    UTF8("\xf0\x9f\x98\x41", 0), /* the same in last place */
    UTF8("\xe2\x82\xc3\xa9", 0), /* a lead byte in last place */
    UTF8("\x80", 0),             /* a continuation byte alone */
    UTF8("\xbf", 0),
    UTF8("\x80\x80", 0),
};

START_TEST(utf8_seq_len_takes_only_well_formed_sequences)
{
    const struct utf8_row *r = &utf8_rows[_i];
    char shown[64];

    ck_assert_msg(
        aq_utf8_seq_len((const unsigned char *)r->bytes, r->n) == r->len,
        "\"%s\": expected %zu", show(r->bytes, r->n, shown, 64), r->len);
}
END_TEST

START_TEST(utf8_seq_len_counts_the_bytes_available)
{
    /* The whole of a sequence must be within n. */
    ck_assert_uint_eq(aq_utf8_seq_len((const unsigned char *)"\xc3\xa9", 1), 0);
    ck_assert_uint_eq(aq_utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 2),
                      0);
    ck_assert_uint_eq(
        aq_utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 3), 0);
    ck_assert_uint_eq(aq_utf8_seq_len((const unsigned char *)"\0", 1), 1);
}
END_TEST

/* The length of the well-formed sequence at s (the Unicode Standard, table
 * 3-7), or 0: the reference aq_utf8_seq_len is held to. */
static size_t
utf8_reference(const unsigned char *s, size_t n)
{
    static const struct {
        unsigned char lo[4], hi[4];
        size_t len;
    } forms[] = {
        {{0x00}, {0x7f}, 1},
        {{0xc2, 0x80}, {0xdf, 0xbf}, 2},
        {{0xe0, 0xa0, 0x80}, {0xe0, 0xbf, 0xbf}, 3},
        {{0xe1, 0x80, 0x80}, {0xec, 0xbf, 0xbf}, 3},
        {{0xed, 0x80, 0x80}, {0xed, 0x9f, 0xbf}, 3},
        {{0xee, 0x80, 0x80}, {0xef, 0xbf, 0xbf}, 3},
        {{0xf0, 0x90, 0x80, 0x80}, {0xf0, 0xbf, 0xbf, 0xbf}, 4},
        {{0xf1, 0x80, 0x80, 0x80}, {0xf3, 0xbf, 0xbf, 0xbf}, 4},
        {{0xf4, 0x80, 0x80, 0x80}, {0xf4, 0x8f, 0xbf, 0xbf}, 4},
    };

    for (size_t f = 0; f < NELEM(forms); f++) {
        size_t i;

        if (forms[f].len > n)
            continue;
        for (i = 0; i < forms[f].len; i++) {
            if (s[i] < forms[f].lo[i] || s[i] > forms[f].hi[i])
                break;
        }
        if (i == forms[f].len)
            return forms[f].len;
    }
    return 0;
}

START_TEST(utf8_seq_len_agrees_with_the_unicode_table)
{
    /* Every first and second byte; past the second, only whether a byte is
     * a continuation (80..BF) matters, so its edges on both sides. */
    static const unsigned char edges[] = {0x41, 0x7f, 0x80, 0xbf, 0xc0};
    unsigned char s[4];

    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (size_t c = 0; c < NELEM(edges); c++) {
                for (size_t d = 0; d < NELEM(edges); d++) {
                    s[0] = (unsigned char)a;
                    s[1] = (unsigned char)b;
                    s[2] = edges[c];
                    s[3] = edges[d];
                    for (size_t n = 1; n <= 4; n++) {
                        size_t got = aq_utf8_seq_len(s, n);

                        if (got != utf8_reference(s, n))
                            ck_abort_msg("%02x %02x %02x %02x (n %zu): %zu", a,
                                         b, s[2], s[3], n, got);
                    }
                }
            }
        }
    }
}
END_TEST

/* ---- differential fuzzing ---- */

#define PICK(r, a) ((a)[rng_below((r), NELEM(a))])

static const char *const escapes[] = {"\\n", "\\\"", "\\\\", "\\/",
                                      "\\b", "\\f",  "\\r",  "\\t"};
static const char *const u_escapes[] = {"\\u0041",        "\\u00e9", "\\u0000",
                                        "\\ud83d\\ude00", "\\ud800", "\\u12"};
static const char *const utf8_samples[] = {"é", "ß",    "日本", "€",
                                           "😀", "\x7f", "ѐ"};
static const char plain_chars[] = "abcdefxyz0123456789 _-.:/#{}[],'";

static void
gen_ws(struct rng *r, struct buf *b)
{
    if (rng_chance(r, 80))
        return;
    for (unsigned n = 1 + rng_below(r, 3); n > 0; n--)
        buf_byte(b, " \t\r\n"[rng_below(r, 4)]);
}

/* A string of up to max_len pieces; escape_pct of them are escapes (a \u
 * escape for one in five of those). */
static void
gen_string(struct rng *r, struct buf *b, unsigned max_len, unsigned escape_pct)
{
    buf_byte(b, '"');
    for (unsigned n = rng_below(r, max_len + 1); n > 0; n--) {
        unsigned k = rng_below(r, 100);

        if (k < escape_pct)
            buf_str(b,
                    rng_chance(r, 20) ? PICK(r, u_escapes) : PICK(r, escapes));
        else if (k < escape_pct + 10)
            buf_str(b, PICK(r, utf8_samples));
        else
            buf_byte(b, plain_chars[rng_below(r, sizeof plain_chars - 1)]);
    }
    buf_byte(b, '"');
}

/* clang-format off */
static const char *const edge_numbers[] = {
    "0", "-0", "-0.0", "0.5", "2147483647", "-2147483648", "2147483648",
    "-2147483649", "1000000", "1000001", "1000000000", "1000000001",
    "999999999999999", "-99999999999999", "1234567890123456",
    "123456789012345678901234567890", "1e3", "1E-2", "2.5e+10", "1e999",
    "-1e999", "0.1e1"};
/* clang-format on */

/* A number of any size: 64 random bits shifted right by min_shift or
 * more. */
static unsigned long long
rng_magnitude(struct rng *r, unsigned min_shift)
{
    unsigned shift = min_shift + rng_below(r, 64 - min_shift);

    return (unsigned long long)(rng_next(r) >> shift);
}

/* A real such as -12.034. Each rng call is a statement of its own: the
 * arguments of a call are evaluated in no set order, and a seed must give
 * the same lines in every build. */
static void
gen_real(struct rng *r, struct buf *b)
{
    bool negative = rng_chance(r, 30);
    unsigned whole = rng_below(r, 100);
    int digits = 1 + (int)rng_below(r, 4);
    unsigned fraction = rng_below(r, 1000);

    buf_fmt(b, "%s%u.%0*u", negative ? "-" : "", whole, digits, fraction);
}

/* A number: mostly small, sometimes an edge (a bound of m_put's, an
 * exponent, 16 digits or more). */
static void
gen_number(struct rng *r, struct buf *b)
{
    unsigned k = rng_below(r, 100);

    if (k < 45)
        buf_fmt(b, "%d", (int)rng_below(r, 2001) - 1000);
    else if (k < 70)
        gen_real(r, b);
    else if (k < 85)
        buf_str(b, PICK(r, edge_numbers));
    else if (rng_chance(r, 30))
        buf_fmt(b, "-%llu", rng_magnitude(r, 0));
    else
        buf_fmt(b, "%llu", rng_magnitude(r, 0));
}

static void gen_value(struct rng *r, struct buf *b, unsigned depth);

/* An object of a few members; names sometimes repeat (a duplicate). */
static void
gen_object(struct rng *r, struct buf *b, unsigned depth)
{
    static const char *const common[] = {"\"a\"", "\"b\"", "\"\""};
    unsigned n = rng_chance(r, 3) ? 14 + rng_below(r, 6) : rng_below(r, 5);

    buf_byte(b, '{');
    gen_ws(r, b);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            buf_byte(b, ',');
        gen_ws(r, b);
        if (rng_chance(r, 15))
            buf_str(b, PICK(r, common));
        else
            gen_string(r, b, 6, 3);
        gen_ws(r, b);
        buf_byte(b, ':');
        gen_value(r, b, depth + 1);
    }
    buf_byte(b, '}');
}

/* Any JSON value, with whitespace around; nested at most 5 deep. */
static void
gen_value(struct rng *r, struct buf *b, unsigned depth)
{
    unsigned k = rng_below(r, 100);

    gen_ws(r, b);
    if (depth >= 5 && k < 35)
        k += 35;
    if (k < 20) {
        gen_object(r, b, depth);
    } else if (k < 35) {
        buf_byte(b, '[');
        gen_ws(r, b);
        for (unsigned n = rng_below(r, 5), i = 0; i < n; i++) {
            if (i > 0)
                buf_byte(b, ',');
            gen_value(r, b, depth + 1);
        }
        buf_byte(b, ']');
    } else if (k < 60) {
        gen_string(r, b, 10, 8);
    } else if (k < 80) {
        gen_number(r, b);
    } else {
        buf_str(b, k < 87 ? "true" : k < 94 ? "false" : "null");
    }
    gen_ws(r, b);
}

enum field {
    QUEUE,
    KIND,
    ARGS,
    PRIORITY,
    DELAY,
    TIMEOUT,
    RETRIES,
    KEY,
    WAIT,
    NOWAIT,
    NFIELDS,
    UNKNOWN_FIELD = NFIELDS
};

static const char *const field_names[] = {
    "queue",   "kind",    "args", "priority", "delay",
    "timeout", "retries", "key",  "wait",     "nowait"};

/* A value for params.f, usually of the type m_put wants. */
static void
gen_field_value(struct rng *r, struct buf *b, enum field f)
{
    static const char *const durations[] = {
        "1000000000", "1000000000.0", "1000000001", "-1",      "-0.5",
        "-0",         "0.0",          "1e9",        "0.000001"};
    static const char *const counts[] = {"1000000", "1000001", "-1", "0",
                                         "2.0"};
    static const char *const bools[] = {"1", "0", "null", "\"true\""};

    if (rng_chance(r, 6)) {
        gen_value(r, b, 2);
        return;
    }
    gen_ws(r, b);
    switch (f) {
    case QUEUE:
    case KIND:
        gen_string(r, b, rng_chance(r, 3) ? 80 : 10, 1);
        break;
    case KEY:
        if (rng_chance(r, 2)) {
            buf_byte(b, '"');
            for (unsigned n = 1020 + rng_below(r, 8); n > 0; n--)
                buf_byte(b, 'k');
            buf_byte(b, '"');
        } else {
            gen_string(r, b, 16, 1);
        }
        break;
    case ARGS:
        gen_object(r, b, 1);
        break;
    case PRIORITY:
        if (rng_chance(r, 85))
            buf_fmt(b, "%d", (int)rng_below(r, 2001) - 1000);
        else
            gen_number(r, b);
        break;
    case DELAY:
    case TIMEOUT:
        if (rng_chance(r, 50))
            buf_fmt(b, "%u", rng_below(r, 100));
        else if (rng_chance(r, 70))
            gen_real(r, b);
        else
            buf_str(b, PICK(r, durations));
        break;
    case RETRIES:
        if (rng_chance(r, 85))
            buf_fmt(b, "%u", rng_below(r, 10));
        else
            buf_str(b, PICK(r, counts));
        break;
    case WAIT:
    case NOWAIT:
        if (rng_chance(r, 95))
            buf_str(b, rng_chance(r, 50) ? "true" : "false");
        else
            buf_str(b, PICK(r, bools));
        break;
    default:
        gen_value(r, b, 2);
        break;
    }
    gen_ws(r, b);
}

static void
shuffle(struct rng *r, int *a, unsigned n)
{
    for (unsigned i = n; i > 1; i--) {
        unsigned j = rng_below(r, i);
        int t = a[i - 1];

        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void
gen_params(struct rng *r, struct buf *b)
{
    static const char *const unknown[] = {"color", "Queue", "args ", "",
                                          "priority2"};
    int fields[NFIELDS + 2];
    unsigned n = 0;

    for (int f = 0; f < NFIELDS; f++) {
        if (rng_chance(r, 50))
            fields[n++] = f;
    }
    if (rng_chance(r, 3))
        fields[n++] = UNKNOWN_FIELD;
    if (n > 0 && rng_chance(r, 3)) {
        fields[n] = fields[rng_below(r, n)]; /* a duplicate */
        n++;
    }
    shuffle(r, fields, n);
    buf_byte(b, '{');
    gen_ws(r, b);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            buf_byte(b, ',');
        gen_ws(r, b);
        buf_fmt(b, "\"%s\"",
                fields[i] == UNKNOWN_FIELD ? PICK(r, unknown)
                                           : field_names[fields[i]]);
        gen_ws(r, b);
        buf_byte(b, ':');
        gen_field_value(r, b, (enum field)fields[i]);
    }
    buf_byte(b, '}');
}

enum member { JSONRPC, ID, METHOD, PARAMS, UNKNOWN_MEMBER, NMEMBERS };

static void
gen_member_value(struct rng *r, struct buf *b, enum member m)
{
    static const char *const jsonrpcs[] = {"\"1.0\"", "2.0", "\"2.0 \"",
                                           "null"};
    static const char *const methods[] = {"\"get\"", "\"PUT\"", "\"put \"",
                                          "1",       "null",    "\"\""};
    static const char *const odd_ids[] = {
        "-1", "1.5", "true", "false", "[]",
        "{}", "[1]", "1e3",  "\"\"",  "12345678901234567890",
        "0",  "007", "-0",   "1.0"};
    static const char *const odd_params[] = {"[]", "null", "\"x\"", "1"};
    unsigned k;

    gen_ws(r, b);
    switch (m) {
    case JSONRPC:
        buf_str(b, rng_chance(r, 97) ? "\"2.0\"" : PICK(r, jsonrpcs));
        break;
    case ID:
        k = rng_below(r, 100);
        if (k < 45)
            buf_fmt(b, "%llu", rng_magnitude(r, 4));
        else if (k < 75)
            gen_string(r, b, 12, 1);
        else if (k < 85)
            buf_str(b, "null");
        else
            buf_str(b, PICK(r, odd_ids));
        break;
    case METHOD:
        buf_str(b, rng_chance(r, 97) ? "\"put\"" : PICK(r, methods));
        break;
    case PARAMS:
        if (rng_chance(r, 97))
            gen_params(r, b);
        else
            buf_str(b, PICK(r, odd_params));
        break;
    default:
        gen_value(r, b, 1);
        break;
    }
    gen_ws(r, b);
}

/* A put request line: usually well-formed, sometimes a member or field is
 * missing, repeated, unknown or of another type. */
static void
gen_put_line(struct rng *r, struct buf *b)
{
    static const char *const names[] = {"jsonrpc", "id", "method", "params"};
    static const char *const unknown[] = {"extra", "Method", "id ", "",
                                          "params2"};
    static const unsigned chance[] = {90, 85, 98, 95, 2};
    int members[NMEMBERS + 1];
    unsigned n = 0;

    for (int m = 0; m < NMEMBERS; m++) {
        if (rng_chance(r, chance[m]))
            members[n++] = m;
    }
    if (n > 0 && rng_chance(r, 2)) {
        members[n] = members[rng_below(r, n)]; /* a duplicate */
        n++;
    }
    shuffle(r, members, n);
    b->len = 0;
    gen_ws(r, b);
    buf_byte(b, '{');
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            buf_byte(b, ',');
        gen_ws(r, b);
        buf_fmt(b, "\"%s\"",
                members[i] == UNKNOWN_MEMBER ? PICK(r, unknown)
                                             : names[members[i]]);
        gen_ws(r, b);
        buf_byte(b, ':');
        gen_member_value(r, b, (enum member)members[i]);
    }
    if (n == 0)
        gen_ws(r, b);
    buf_byte(b, '}');
    gen_ws(r, b);
}

/* A put in the compact form clients send ({"jsonrpc":"2.0", optional, then
 * id, method, params with queue, kind, args and wait in any order): the
 * bytes fastput matches piece by piece; now and then another field, a
 * duplicate, whitespace, a long id or args that are not flat. */
static void
gen_compact_put_line(struct rng *r, struct buf *b)
{
    static const int lane[] = {QUEUE, KIND, ARGS, WAIT};
    int fields[NELEM(lane) + 2];
    unsigned n = 0;

    b->len = 0;
    buf_str(b, rng_chance(r, 50) ? "{\"jsonrpc\":\"2.0\",\"id\":" : "{\"id\":");
    if (rng_chance(r, 90))
        buf_fmt(b, "%llu", rng_magnitude(r, 4 + rng_below(r, 60)));
    else
        gen_member_value(r, b, ID);
    buf_str(b, ",\"method\":\"put\",\"params\":{");
    for (unsigned f = 0; f < NELEM(lane); f++) {
        if (rng_chance(r, 80))
            fields[n++] = lane[f];
    }
    if (rng_chance(r, 5))
        fields[n++] = (int)rng_below(r, NFIELDS);
    if (n > 0 && rng_chance(r, 3)) {
        fields[n] = fields[rng_below(r, n)]; /* a duplicate */
        n++;
    }
    shuffle(r, fields, n);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            buf_byte(b, ',');
        buf_fmt(b, "\"%s\":", field_names[fields[i]]);
        if (fields[i] != ARGS || rng_chance(r, 30)) {
            gen_field_value(r, b, (enum field)fields[i]);
            continue;
        }
        buf_byte(b, '{');
        for (unsigned k = rng_below(r, 18); k > 0; k--) {
            gen_string(r, b, 6, 0);
            buf_byte(b, ':');
            gen_string(r, b, rng_chance(r, 10) ? 200 : 20, 1);
            if (k > 1)
                buf_byte(b, ',');
        }
        buf_byte(b, '}');
    }
    buf_str(b, "}}");
}

/* Bytes that matter to JSON, and bytes that break UTF-8. */
static const char mutation_bytes[] = "\"\\{}[],:0123456789eE-+.tfnrul "
                                     "\t\r\na\x00\x7f\x80\xbf\xc0\xc3\xa9"
                                     "\xed\xf4\xff";

/* One to four byte-level edits: flip a bit, replace, insert, delete, copy
 * a piece elsewhere, or cut the end. */
static void
mutate(struct rng *r, struct buf *b)
{
    for (unsigned n = 1 + rng_below(r, 4); n > 0; n--) {
        size_t at = rng_below(r, (unsigned)b->len + 1);
        char c = mutation_bytes[rng_below(r, sizeof mutation_bytes - 1)];

        switch (rng_below(r, 6)) {
        case 0:
            if (at < b->len)
                b->p[at] ^= (char)(1u << rng_below(r, 8));
            break;
        case 1:
            if (at < b->len)
                b->p[at] = c;
            break;
        case 2:
            buf_byte(b, '\0');
            memmove(b->p + at + 1, b->p + at, b->len - 1 - at);
            b->p[at] = c;
            break;
        case 3:
            if (at < b->len) {
                memmove(b->p + at, b->p + at + 1, b->len - at - 1);
                b->len--;
            }
            break;
        case 4: {
            size_t from = rng_below(r, (unsigned)b->len + 1);
            size_t len = rng_below(r, 17), old = b->len;
            char piece[16];

            if (len > b->len - from)
                len = b->len - from;
            if (len > sizeof piece)
                len = sizeof piece;
            memcpy(piece, b->p + from, len);
            for (size_t i = 0; i < len; i++)
                buf_byte(b, '\0');
            memmove(b->p + at + len, b->p + at, old - at);
            memcpy(b->p + at, piece, len);
            break;
        }
        default:
            b->len = at;
            break;
        }
    }
}

/* The fuzz's bounds: a seed, a number of iterations and a deadline. */
struct fuzz {
    uint64_t seed;
    unsigned long iterations;
    int64_t deadline_us; /* monotonic */
};

/* name's value as a number, or dflt when unset or empty. */
static unsigned long long
env_number(const char *name, unsigned long long dflt)
{
    const char *v = getenv(name);

    return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : dflt;
}

static void
fuzz_init(struct fuzz *f)
{
    f->seed = env_number("ASYNCQ_FUZZ_SEED", FUZZ_SEED);
    f->iterations = env_number("ASYNCQ_FUZZ_ITERATIONS", FUZZ_ITERATIONS);
    f->deadline_us =
        aq_clock_mono_us() +
        (int64_t)env_number("ASYNCQ_FUZZ_SECONDS", FUZZ_SECONDS) * 1000000;
}

/* Whether iteration i may run: within the count and the time. */
static bool
fuzz_goes_on(const struct fuzz *f, unsigned long i)
{
    return i < f->iterations &&
           (i % 256 != 0 || aq_clock_mono_us() < f->deadline_us);
}

/* If aq_jscan_value calls text[start..) valid, jansson parses that span;
 * if aq_jscan_plain_string finds a string there, jansson reads the same
 * bytes. Returns whether jscan called it valid. */
static bool
check_jscan_span(const char *text, size_t len, size_t start, uint64_t seed,
                 unsigned long i)
{
    char shown[SHOW_MAX];
    json_error_t jerr;
    size_t pos = start;
    const char *s;
    size_t n;
    json_t *v;
    bool valid = aq_jscan_value(text, len, &pos);

    if (valid) {
        ck_assert_msg(pos > start && pos <= len,
                      "seed %#llx, text %lu: jscan ended at %zu of %zu",
                      (unsigned long long)seed, i, pos, len);
        v = json_loadb(text + start, pos - start, JANSSON_FLAGS, &jerr);
        ck_assert_msg(v != NULL,
                      "seed %#llx, text %lu: jscan called \"%s\" valid, "
                      "jansson says: %s",
                      (unsigned long long)seed, i,
                      show(text + start, pos - start, shown, sizeof shown),
                      jerr.text);
        json_decref(v);
    }
    pos = start;
    if (aq_jscan_plain_string(text, len, &pos, &s, &n)) {
        v = json_loadb(text + start, pos - start, JANSSON_FLAGS, &jerr);
        ck_assert_msg(v != NULL && json_is_string(v) &&
                          json_string_length(v) == n &&
                          memcmp(json_string_value(v), s, n) == 0,
                      "seed %#llx, text %lu: plain string \"%s\" reads "
                      "otherwise in jansson",
                      (unsigned long long)seed, i,
                      show(text + start, pos - start, shown, sizeof shown));
        json_decref(v);
    }
    return valid;
}

/* Fails the test on a line fastput took that the general path reads
 * otherwise; the whole line goes to stderr, as the message may be cut. */
static void
report_violation(uint64_t seed, unsigned long i, const struct buf *b,
                 const char *why)
{
    size_t cap = b->len * 6 + 8;
    char *full = xmalloc(cap), shown[SHOW_MAX];

    fprintf(stderr, "jscan fuzz: seed %#llx, line %lu (%zu bytes): \"%s\"\n",
            (unsigned long long)seed, i, b->len, show(b->p, b->len, full, cap));
    free(full);
    ck_abort_msg("seed %#llx, line %lu: fastput took \"%s\" but %s",
                 (unsigned long long)seed, i,
                 show(b->p, b->len, shown, sizeof shown), why);
}

/* Counts of one fuzz run. */
struct fuzz_count {
    unsigned long lines, taken, plain; /* plain: the general path's puts */
};

/* Lines from gen, half of them mutated: every line fastput takes, the
 * general path reads the same way. Prints what was taken as what; fails
 * unless more than 1 in min_share generated lines were taken. */
static void
fuzz_put_lines(void (*gen_line)(struct rng *r, struct buf *b), const char *what,
               unsigned long min_share, bool check_span)
{
    struct buf b = {0};
    struct fuzz_count gen = {0}, mut = {0};
    char why[WHY_MAX];
    int64_t start_us = aq_clock_mono_us();
    unsigned long i;
    struct fuzz f;
    struct rng r;

    fuzz_init(&f);
    r.s = f.seed;
    for (i = 0; fuzz_goes_on(&f, i); i++) {
        bool mutated = rng_chance(&r, 50);
        struct fuzz_count *c = mutated ? &mut : &gen;
        struct aq_fastput fp;

        gen_line(&r, &b);
        if (mutated)
            mutate(&r, &b);
        c->lines++;
        if (general_agrees(b.p, b.len, NULL, why, sizeof why))
            c->plain++;
        if (aq_fastput_parse(b.p, b.len, &fp) == 0) {
            c->taken++;
            if (!general_agrees(b.p, b.len, &fp, why, sizeof why))
                report_violation(f.seed, i, &b, why);
        }
        if (check_span)
            check_jscan_span(b.p, b.len, 0, f.seed, i);
    }
    fprintf(stderr,
            "jscan fuzz: seed %#llx, %lu %s lines in %.1f s; generated %lu: "
            "fastput took %lu, general path puts %lu; mutated %lu: fastput "
            "took %lu, general path puts %lu\n",
            (unsigned long long)f.seed, i, what,
            (double)(aq_clock_mono_us() - start_us) / 1e6, gen.lines, gen.taken,
            gen.plain, mut.lines, mut.taken, mut.plain);
    /* Not vacuous: generated lines are mostly plain puts fastput takes. */
    ck_assert_uint_gt(gen.lines, 100);
    ck_assert_msg(gen.taken * min_share > gen.lines,
                  "fastput took only %lu of %lu generated lines", gen.taken,
                  gen.lines);
    ck_assert_uint_gt(mut.taken, 0);
    free(b.p);
}

START_TEST(fuzzed_put_lines_are_taken_only_as_the_general_path_reads_them)
{
    fuzz_put_lines(gen_put_line, "put", 10, true);
}
END_TEST

START_TEST(
    fuzzed_compact_put_lines_are_taken_only_as_the_general_path_reads_them)
{
    fuzz_put_lines(gen_compact_put_line, "compact put", 4, false);
}
END_TEST

START_TEST(fuzzed_values_jscan_calls_valid_parse_in_jansson)
{
    struct buf b = {0};
    unsigned long i, valid = 0;
    struct fuzz f;
    struct rng r;

    fuzz_init(&f);
    r.s = f.seed ^ UINT64_C(0x5555555555555555);
    for (i = 0; fuzz_goes_on(&f, i); i++) {
        size_t start = 0;

        b.len = 0;
        gen_value(&r, &b, rng_below(&r, 3));
        if (rng_chance(&r, 50))
            mutate(&r, &b);
        if (rng_chance(&r, 20))
            start = rng_below(&r, (unsigned)b.len + 1);
        valid += check_jscan_span(b.p, b.len, start, f.seed, i);
    }
    fprintf(stderr, "jscan fuzz: seed %#llx, %lu values, %lu valid\n",
            (unsigned long long)f.seed, i, valid);
    ck_assert_uint_gt(i, 100);
    ck_assert_uint_gt(valid, i / 10);
    free(b.p);
}
END_TEST

/* ---- the exact validator ---- */

static const struct {
    const char *text;
    size_t len; /* 0: strlen */
} checked_valid[] = {
    {"0", 0},
    {"-0.5e-7", 0},
    {"123456789012345678901234567890123456789", 0},
    {"1e400", 0},
    {"-1E+3", 0},
    {"\"a\\u0000b\"", 0},
    {"\"\\ud83d\\ude00\"", 0},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 0},
    {" {\"a\" : [1, {\"b\":null}, true, false] } ", 0},
    {"{\"\\u0000\":1}", 0},
    {"[]", 0},
    {"{}", 0},
    {"[[[[[[]]]]]]", 0},
    {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", 0},
};

static const struct {
    const char *text;
    size_t len;     /* 0: strlen */
    size_t err_pos; /* where the error is reported */
} checked_invalid[] = {
    {"", 0, 0},
    {"   ", 0, 3},
    {"{\"id\":13\0,\"method\":\"ping\"}", 27, 8},
    {"\"a\0b\"", 5, 2},
    {"\"\\ud800\"", 0, 7},
    {"\"\\udc00\"", 0, 7},
    {"\"\\ud800\\u0041\"", 0, 7},
    {"\"\\u12\"", 0, 1},
    {"\"\\x\"", 0, 1},
    {"\"\xff\"", 0, 1},
    {"01", 0, 1},
    {"1.", 0, 2},
    {".5", 0, 0},
    {"-", 0, 1},
    {"1e", 0, 2},
    {"+1", 0, 0},
    {"[1,]", 0, 3},
    {"{\"a\":1,}", 0, 7},
    {"{\"a\" 1}", 0, 5},
    {"{1:2}", 0, 1},
    {"[1 2]", 0, 3},
    {"{\"a\":1} x", 0, 8},
    {"nul", 0, 0},
    {"[", 0, 1},
    {"\"abc", 0, 4},
    {"]", 0, 0},
};

START_TEST(jscan_check_accepts_every_rfc8259_text)
{
    const char *t = checked_valid[_i].text;
    size_t len = checked_valid[_i].len ? checked_valid[_i].len : strlen(t);
    const char *what = NULL;
    size_t pos = 0;

    ck_assert_msg(aq_jscan_check(t, len, &pos, &what), "%s: refused at %zu: %s",
                  t, pos, what);
}
END_TEST

START_TEST(jscan_check_refuses_what_is_not_json_and_says_where)
{
    const char *t = checked_invalid[_i].text;
    size_t len = checked_invalid[_i].len ? checked_invalid[_i].len : strlen(t);
    const char *what = NULL;
    size_t pos = SIZE_MAX;

    ck_assert_msg(!aq_jscan_check(t, len, &pos, &what), "row %d: accepted", _i);
    ck_assert_ptr_nonnull(what);
    ck_assert_msg(pos == checked_invalid[_i].err_pos,
                  "row %d: error \"%s\" at %zu, want %zu", _i, what, pos,
                  checked_invalid[_i].err_pos);
}
END_TEST

START_TEST(jscan_check_takes_2048_levels_and_refuses_more)
{
    struct buf b = {0};
    const char *what;
    size_t pos;

    for (int depth = AQ_JSCAN_MAX_DEPTH; depth <= AQ_JSCAN_MAX_DEPTH + 1;
         depth++) {
        b.len = 0;
        for (int i = 0; i < depth; i++)
            buf_str(&b, i % 2 ? "[" : "{\"k\":");
        buf_str(&b, "1");
        for (int i = depth - 1; i >= 0; i--)
            buf_str(&b, i % 2 ? "]" : "}");
        ck_assert_int_eq(aq_jscan_check(b.p, b.len, &pos, &what),
                         depth <= AQ_JSCAN_MAX_DEPTH);
    }
    /* a megabyte of '[' costs no stack */
    b.len = 0;
    for (int i = 0; i < 1 << 20; i++)
        buf_byte(&b, '[');
    ck_assert(!aq_jscan_check(b.p, b.len, &pos, &what));
    ck_assert_str_eq(what, "nested too deep");
    free(b.p);
}
END_TEST

START_TEST(jscan_walks_members_unescapes_and_compacts)
{
    static const char text[] = " { \"a\\u0062\" : [ 1 , \"x y\" ] , "
                               "\"n\\u0000\":{ \"k\" : 2 },\"e\":{}} ";
    struct aq_jspan key, val;
    char buf[16];
    size_t pos = 0, n;
    bool has_nul;

    aq_jscan_enter(text, sizeof text - 1, &pos);
    ck_assert(aq_jscan_next(text, sizeof text - 1, &pos, &key, &val));
    ck_assert(aq_jscan_unescape(key, buf, sizeof buf, &n, &has_nul));
    ck_assert_str_eq(buf, "ab");
    ck_assert(!has_nul);
    ck_assert_int_eq(val.n, strlen("[ 1 , \"x y\" ]"));
    n = aq_jscan_compact(val, buf);
    ck_assert_int_eq(n, strlen("[1,\"x y\"]"));
    ck_assert(memcmp(buf, "[1,\"x y\"]", n) == 0);
    ck_assert(aq_jscan_next(text, sizeof text - 1, &pos, &key, &val));
    ck_assert(aq_jscan_unescape(key, buf, sizeof buf, &n, &has_nul));
    ck_assert(has_nul);
    ck_assert_int_eq(n, 2);
    ck_assert(!aq_jscan_has_nul_key(val));
    ck_assert(aq_jscan_next(text, sizeof text - 1, &pos, &key, &val));
    ck_assert_int_eq(val.n, 2);
    ck_assert(!aq_jscan_next(text, sizeof text - 1, &pos, &key, &val));
    ck_assert(
        aq_jscan_has_nul_key((struct aq_jspan){text + 1, sizeof text - 3}));
    /* a name too long for the buffer */
    ck_assert(!aq_jscan_unescape((struct aq_jspan){"\"0123456789abcdef\"", 18},
                                 buf, sizeof buf, &n, &has_nul));
    /* an array's members have no names */
    pos = 0;
    aq_jscan_enter("[\"a\",2]", 7, &pos);
    ck_assert(aq_jscan_next("[\"a\",2]", 7, &pos, &key, &val));
    ck_assert_ptr_null(key.p);
    ck_assert_int_eq(val.n, 3);
}
END_TEST

/* Differential: what jansson reads, jscan_check accepts; what jscan_check
 * refuses, jansson refuses; they differ only where jansson cannot hold a
 * number or nests deeper than it allows. Also: compacting a valid text
 * leaves a text jansson reads as the same value. */
START_TEST(fuzzed_texts_jscan_check_agrees_with_jansson)
{
    struct buf b = {0};
    unsigned long i, valid = 0;
    struct fuzz f;
    struct rng r;

    fuzz_init(&f);
    r.s = f.seed ^ UINT64_C(0x3333333333333333);
    for (i = 0; fuzz_goes_on(&f, i); i++) {
        char shown[SHOW_MAX];
        json_error_t jerr;
        const char *what;
        size_t pos;
        json_t *v;
        bool ok;

        b.len = 0;
        gen_value(&r, &b, rng_below(&r, 4));
        if (rng_chance(&r, 50))
            mutate(&r, &b);
        ok = aq_jscan_check(b.p, b.len, &pos, &what);
        v = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        show(b.p, b.len, shown, sizeof shown);
        /* jansson stops at a raw NUL byte after a value: not JSON. */
        if (v != NULL && memchr(b.p, '\0', b.len) == NULL)
            ck_assert_msg(ok,
                          "seed %#llx, text %lu: \"%s\": jansson reads "
                          "it, jscan_check says %s at %zu",
                          (unsigned long long)f.seed, i, shown, what, pos);
        if (ok && v == NULL)
            ck_assert_msg(strstr(jerr.text, "too big") != NULL ||
                              strstr(jerr.text, "overflow") != NULL ||
                              strstr(jerr.text, "depth") != NULL ||
                              strstr(jerr.text, "NUL byte in object key"),
                          "seed %#llx, text %lu: \"%s\": jscan_check takes "
                          "it, jansson says %s",
                          (unsigned long long)f.seed, i, shown, jerr.text);
        if (ok && v != NULL) {
            char *compact = xmalloc(b.len + 1);
            size_t n = aq_jscan_compact((struct aq_jspan){b.p, b.len}, compact);
            json_t *w =
                json_loadb(compact, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

            ck_assert_msg(w != NULL && json_equal(v, w),
                          "seed %#llx, text %lu: \"%s\" compacts to another "
                          "value",
                          (unsigned long long)f.seed, i, shown);
            json_decref(w);
            free(compact);
            valid++;
        }
        json_decref(v);
    }
    fprintf(stderr, "jscan check fuzz: seed %#llx, %lu texts, %lu valid\n",
            (unsigned long long)f.seed, i, valid);
    ck_assert_uint_gt(valid, i / 10);
    free(b.p);
}
END_TEST

Suite *
jscan_suite(void)
{
    Suite *s = suite_create("jscan");
    TCase *tc;

    tc = test_tcase_new("taken");
    tcase_add_loop_test(
        tc, plain_put_lines_are_taken_as_the_general_path_reads_them, 0,
        NELEM(taken));
    tcase_add_test(tc, put_with_every_field_fills_each_member);
    tcase_add_test(tc, put_without_fields_leaves_the_defaults);
    tcase_add_test(tc, string_id_is_kept_as_its_raw_json);
    tcase_add_test(tc, longest_key_wide_args_and_nested_args_are_taken);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("declined");
    tcase_add_loop_test(tc,
                        lines_the_general_path_answers_otherwise_are_declined,
                        0, NELEM(declined));
    tcase_add_test(tc, long_key_wide_args_and_deep_args_are_declined);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("scan");
    tcase_add_loop_test(tc, jscan_value_is_valid_only_for_what_jansson_parses,
                        0, NELEM(scans));
    tcase_add_test(tc, jscan_plain_string_gives_contents_without_escapes);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("check");
    tcase_add_loop_test(tc, jscan_check_accepts_every_rfc8259_text, 0,
                        NELEM(checked_valid));
    tcase_add_loop_test(tc, jscan_check_refuses_what_is_not_json_and_says_where,
                        0, NELEM(checked_invalid));
    tcase_add_test(tc, jscan_check_takes_2048_levels_and_refuses_more);
    tcase_add_test(tc, jscan_walks_members_unescapes_and_compacts);
    tcase_add_test(tc, fuzzed_texts_jscan_check_agrees_with_jansson);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("utf8");
    tcase_add_loop_test(tc, utf8_seq_len_takes_only_well_formed_sequences, 0,
                        NELEM(utf8_rows));
    tcase_add_test(tc, utf8_seq_len_counts_the_bytes_available);
    tcase_add_test(tc, utf8_seq_len_agrees_with_the_unicode_table);
    suite_add_tcase(s, tc);

    tc = test_tcase_new("fuzz");
    tcase_add_test(
        tc, fuzzed_put_lines_are_taken_only_as_the_general_path_reads_them);
    tcase_add_test(
        tc,
        fuzzed_compact_put_lines_are_taken_only_as_the_general_path_reads_them);
    tcase_add_test(tc, fuzzed_values_jscan_calls_valid_parse_in_jansson);
    tcase_add_test(tc, jscan_judges_a_special_byte_at_every_offset_as_jansson);
    suite_add_tcase(s, tc);
    return s;
}
