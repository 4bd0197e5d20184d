/* SPDX-License-Identifier: MIT */
/*
 * tests/test_rpc.c: lib/rpc.c (a request's envelope and params, read from
 * validated text with the id and put's args kept raw) and lib/jwrite.c
 * (what asyncqd sends: raw values spliced, reals that read back exactly,
 * and a writer that stops between values).
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "error.h"
#include "jscan.h"
#include "jwrite.h"
#include "rng.h"
#include "rpc.h"
#include "suites.h"
#include "testutil.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static struct aq_jspan
span(const char *s)
{
    return (struct aq_jspan){s, strlen(s)};
}

/* ---- the envelope ---- */

static const struct {
    const char *text;
    int code;       /* 0: read */
    const char *id; /* the id to answer with; NULL: null */
    bool is_notification;
    const char *method; /* when read */
} envelopes[] = {
    {"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}", 0, "7", false,
     "ping"},
    {"{\"id\":0.30000000000000004,\"method\":\"ping\"}", 0,
     "0.30000000000000004", false, "ping"},
    {"{\"id\":1e3,\"method\":\"ping\"}", 0, "1e3", false, "ping"},
    {"{\"id\":\"a\\u0000b\",\"method\":\"ping\"}", 0, "\"a\\u0000b\"", false,
     "ping"},
    {"{\"id\":null,\"method\":\"ping\"}", 0, "null", false, "ping"},
    {"{\"method\":\"ping\"}", 0, NULL, true, "ping"},
    {"{ \"me\\u0074hod\" : \"p\\u0069ng\" , \"id\" : -5 }", 0, "-5", false,
     "ping"},
    {"{\"id\":1,\"method\":\"pi\\u0000ng\"}", 0, "1", false, ""},
    {"{\"id\":1,\"method\":\"subtract\",\"params\":[42,23]}", 0, "1", false,
     "subtract"},
    {"[1]", AQ_ERR_INVALID_REQUEST, NULL, false, NULL},
    {"{\"id\":[1],\"method\":\"ping\"}", AQ_ERR_INVALID_REQUEST, NULL, false,
     NULL},
    {"{\"id\":true,\"method\":\"ping\"}", AQ_ERR_INVALID_REQUEST, NULL, false,
     NULL},
    {"{\"id\":1,\"id\":2,\"method\":\"ping\"}", AQ_ERR_INVALID_REQUEST, NULL,
     false, NULL},
    {"{\"id\":3,\"method\":\"ping\",\"extra\":1}", AQ_ERR_INVALID_REQUEST, "3",
     false, NULL},
    {"{\"method\":\"ping\",\"extra\":1}", AQ_ERR_INVALID_REQUEST, NULL, true,
     NULL},
    {"{\"id\":4,\"jsonrpc\":\"1.0\",\"method\":\"ping\"}",
     AQ_ERR_INVALID_REQUEST, "4", false, NULL},
    {"{\"id\":5}", AQ_ERR_INVALID_REQUEST, "5", false, NULL},
    {"{\"id\":6,\"method\":7}", AQ_ERR_INVALID_REQUEST, "6", false, NULL},
    {"{}", AQ_ERR_INVALID_REQUEST, NULL, false, NULL},
};

START_TEST(rpc_request_reads_the_envelope_and_keeps_the_raw_id)
{
    struct aq_rpc_request r;
    struct aq_error err = {0};
    int rc = aq_rpc_request(span(envelopes[_i].text), &r, &err);

    ck_assert_int_eq(rc, envelopes[_i].code == 0 ? 0 : -1);
    if (rc < 0)
        ck_assert_int_eq(err.code, envelopes[_i].code);
    else
        ck_assert_str_eq(r.method, envelopes[_i].method);
    if (envelopes[_i].id == NULL)
        ck_assert_ptr_null(r.id.p);
    else {
        ck_assert_ptr_nonnull(r.id.p);
        ck_assert_int_eq(r.id.n, strlen(envelopes[_i].id));
        ck_assert(memcmp(r.id.p, envelopes[_i].id, r.id.n) == 0);
    }
    ck_assert_int_eq(r.is_notification, envelopes[_i].is_notification);
}
END_TEST

/* ---- params ---- */

START_TEST(rpc_params_keeps_args_raw_and_compact)
{
    struct aq_error err = {0};
    char *args;
    size_t n;
    json_t *p = aq_rpc_params(
        span("{ \"queue\" : \"q\", \"args\" : { \"big\" : "
             "123456789012345678901234567890, \"f\" : 0.30000000000000004, "
             "\"s\" : \"a b\\u0000\" } }"),
        &args, &n, &err);

    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(json_string_value(json_object_get(p, "queue")), "q");
    ck_assert_ptr_null(json_object_get(p, "args"));
    ck_assert_str_eq(args, "{\"big\":123456789012345678901234567890,"
                           "\"f\":0.30000000000000004,\"s\":\"a b\\u0000\"}");
    ck_assert_int_eq(n, strlen(args));
    free(args);
    json_decref(p);
}
END_TEST

static const struct {
    const char *text;
    bool raw_args;
    const char *field; /* in the message; NULL: read */
} params_rows[] = {
    {"{\"a\":1,\"b\":[true,null],\"c\":\"x\\u0000y\"}", false, NULL},
    {"{\"args\":[1]}", true, NULL}, /* not an object: parsed, put names it */
    {"[42,23]", false, "params"},
    {"3", false, "params"},
    {"{\"priority\":123456789012345678901234567890}", false, "params.priority"},
    {"{\"delay\":1e999}", false, "params.delay"},
    {"{\"x\":{\"\\u0000\":1}}", false, "params.x"},
    {"{\"\\u0000\":1}", false, "params"},
    {"{\"a\":1,\"a\":2}", false, "params.a"},
    {"{\"args\":{},\"args\":{}}", true, "params.args"},
    {"{\"args\":{\"k\\u0000\":1}}", true, "params.args"},
    {"{\"x\":{\"k\":1,\"k\":2}}", false, "params.x"},
};

START_TEST(rpc_params_reads_members_or_names_the_field)
{
    struct aq_error err = {0};
    char *args = NULL;
    size_t n;
    json_t *p =
        aq_rpc_params(span(params_rows[_i].text),
                      params_rows[_i].raw_args ? &args : NULL, &n, &err);

    if (params_rows[_i].field == NULL) {
        ck_assert_msg(p != NULL, "%s: %s", params_rows[_i].text, err.message);
        ck_assert(json_is_object(p));
    } else {
        ck_assert_ptr_null(p);
        ck_assert_ptr_null(args);
        ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
        ck_assert_msg(strncmp(err.message, params_rows[_i].field,
                              strlen(params_rows[_i].field)) == 0,
                      "%s: message \"%s\"", params_rows[_i].text, err.message);
    }
    free(args);
    json_decref(p);
}
END_TEST

START_TEST(rpc_params_without_params_is_an_empty_object)
{
    struct aq_error err = {0};
    char *args = (char *)"x";
    size_t n = 9;
    json_t *p = aq_rpc_params((struct aq_jspan){0}, &args, &n, &err);

    ck_assert_int_eq(json_object_size(p), 0);
    ck_assert_ptr_null(args);
    ck_assert_int_eq(n, 0);
    json_decref(p);
}
END_TEST

/* ---- jwrite ---- */

static char *
written(const json_t *v)
{
    return aq_jwrite_string(v, NULL);
}

START_TEST(jwrite_writes_what_jansson_reads_back_equal)
{
    static const char *const texts[] = {
        "{\"a\":[1,-2,3.5,true,false,null],\"b\":{\"c\":\"\\u0001\\n\\\"\\\\/"
        "\"}}",
        "[\"\xc3\xa9\\u0000x\",{},[],\"\"]",
        "\"plain\"",
        "-9223372036854775808",
        "{\"k\\\"ey\":{\"\\t\":[[[]]]}}",
    };

    for (size_t i = 0; i < NELEM(texts); i++) {
        json_t *v =
            json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        char *s = written(v);
        json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

        ck_assert_msg(back != NULL && json_equal(v, back), "%s -> %s", texts[i],
                      s);
        ck_assert_ptr_null(strchr(s, ' '));
        free(s);
        json_decref(back);
        json_decref(v);
    }
}
END_TEST

START_TEST(jwrite_splices_raw_text)
{
    json_t *v =
        json_pack("{s:s,s:o,s:o}", "jsonrpc", "2.0", "id",
                  aq_jraw("0.30000000000000004", 19), "result",
                  aq_jraw("{\"n\":123456789012345678901234567890}", 36));
    char *s = written(v);

    ck_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"id\":0.30000000000000004,"
                        "\"result\":{\"n\":123456789012345678901234567890}}");
    free(s);
    json_decref(v);
}
END_TEST

START_TEST(jwrite_reals_read_back_as_the_same_double)
{
    static const double fixed[] = {0.1,
                                   0.2,
                                   0.30000000000000004,
                                   1763776800.123,
                                   1.7976931348623157e308,
                                   5e-324,
                                   -0.0,
                                   1e21,
                                   100.0,
                                   2.5};
    struct rng r = {UINT64_C(0x9E3779B97F4A7C15)};

    for (size_t i = 0; i < 20000; i++) {
        double d;
        json_t *v;
        char *s;

        if (i < NELEM(fixed))
            d = fixed[i];
        else {
            uint64_t x = rng_next(&r);

            memcpy(&d, &x, sizeof d);
            if (!isfinite(d))
                continue;
        }
        v = json_real(d);
        s = written(v);
        ck_assert_msg(strtod(s, NULL) == d &&
                          signbit(strtod(s, NULL)) == signbit(d),
                      "%.17g written as %s", d, s);
        ck_assert_msg(strpbrk(s, ".e") != NULL, "%s reads as an integer", s);
        free(s);
        json_decref(v);
    }
    /* and short when that is exact */
    json_t *v = json_real(0.2);
    char *s = written(v);

    ck_assert_str_eq(s, "0.2");
    free(s);
    json_decref(v);
}
END_TEST

START_TEST(jwrite_steps_stop_between_values_and_write_the_same_text)
{
    json_t *list = json_array();
    struct evbuffer *out = evbuffer_new();
    struct aq_jwrite *w;
    char *whole, *stepped;
    size_t n, steps = 0;

    for (int i = 0; i < 1000; i++)
        json_array_append_new(list, json_pack("{s:i,s:s,s:[i,i]}", "job", i,
                                              "state", "done", "x", i, -i));
    whole = written(list);
    w = aq_jwrite_new(json_incref(list));
    while (!aq_jwrite_step(w, out, evbuffer_get_length(out) + 100)) {
        ck_assert_uint_lt(steps++, 100000);
    }
    aq_jwrite_free(w);
    n = evbuffer_get_length(out);
    stepped = malloc(n + 1);
    evbuffer_remove(out, stepped, n);
    stepped[n] = '\0';
    ck_assert_str_eq(stepped, whole);
    ck_assert_uint_gt(steps, 100);
    free(whole);
    free(stepped);
    evbuffer_free(out);
    json_decref(list);
}
END_TEST

START_TEST(jwrite_free_mid_way_releases_the_value)
{
    struct evbuffer *out = evbuffer_new();
    json_t *v = json_loads("[[1,2],[3,4],[5,6]]", 0, NULL);
    struct aq_jwrite *w = aq_jwrite_new(json_incref(v));

    ck_assert(!aq_jwrite_step(w, out, 1));
    aq_jwrite_free(w);
    ck_assert_int_eq(v->refcount, 1);
    json_decref(v);
    evbuffer_free(out);
}
END_TEST

Suite *
rpc_suite(void)
{
    Suite *s = suite_create("rpc");
    TCase *tc = test_tcase_new("request");

    tcase_add_loop_test(tc, rpc_request_reads_the_envelope_and_keeps_the_raw_id,
                        0, NELEM(envelopes));
    suite_add_tcase(s, tc);
    tc = test_tcase_new("params");
    tcase_add_test(tc, rpc_params_keeps_args_raw_and_compact);
    tcase_add_loop_test(tc, rpc_params_reads_members_or_names_the_field, 0,
                        NELEM(params_rows));
    tcase_add_test(tc, rpc_params_without_params_is_an_empty_object);
    suite_add_tcase(s, tc);
    tc = test_tcase_new("jwrite");
    tcase_add_test(tc, jwrite_writes_what_jansson_reads_back_equal);
    tcase_add_test(tc, jwrite_splices_raw_text);
    tcase_add_test(tc, jwrite_reals_read_back_as_the_same_double);
    tcase_add_test(tc,
                   jwrite_steps_stop_between_values_and_write_the_same_text);
    tcase_add_test(tc, jwrite_free_mid_way_releases_the_value);
    suite_add_tcase(s, tc);
    return s;
}
