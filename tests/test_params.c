/* SPDX-License-Identifier: MIT */
/*
 * tests/test_params.c: lib/params.c, the strict reader of params and args:
 * each getter's result on a present, absent and wrong member, and the
 * message that names the field by its path.
 */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "suites.h"
#include "testutil.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

enum getter { STRING, INT, DURATION, BOOL, ID, WORD };

static const char *const words[] = {"all", "any", "stream", NULL};

static const struct {
    const char *obj; /* the params object */
    enum getter get;
    unsigned flags;
    int rc;              /* what the getter returns */
    const char *message; /* the error message when rc is -1 */
} cases[] = {
    {"{\"q\":\"default\"}", STRING, 0, 1, NULL},
    {"{}", STRING, 0, 0, NULL},
    {"{}", STRING, AQ_PARAM_REQUIRED, -1, "params.q: required"},
    {"{\"q\":7}", STRING, 0, -1, "params.q: expected string"},
    {"{\"q\":\"a\\u0000b\"}", STRING, 0, -1,
     "params.q: expected string without \\u0000"},
    {"{\"q\":\"a\\u0000b\"}", STRING, AQ_PARAM_NUL_OK, 1, NULL},
    {"{\"q\":-3}", INT, 0, 1, NULL},
    {"{\"q\":11}", INT, 0, -1, "params.q: expected integer between -5 and 10"},
    {"{\"q\":1.0}", INT, 0, -1, "params.q: expected integer between -5 and 10"},
    {"{\"q\":\"1\"}", INT, 0, -1,
     "params.q: expected integer between -5 and 10"},
    {"{}", INT, AQ_PARAM_REQUIRED, -1, "params.q: required"},
    {"{\"q\":0.25}", DURATION, 0, 1, NULL},
    {"{\"q\":1000000000}", DURATION, 0, 1, NULL},
    {"{\"q\":1e9}", DURATION, 0, 1, NULL},
    {"{\"q\":1.0000001e9}", DURATION, 0, -1,
     "params.q: expected seconds, a number between 0 and 1e9"},
    {"{\"q\":-0.5}", DURATION, 0, -1,
     "params.q: expected seconds, a number between 0 and 1e9"},
    {"{\"q\":null}", DURATION, 0, -1,
     "params.q: expected seconds, a number between 0 and 1e9"},
    {"{\"q\":false}", BOOL, 0, 1, NULL},
    {"{\"q\":0}", BOOL, 0, -1, "params.q: expected true or false"},
    {"{\"q\":9007199254740991}", ID, 0, 1, NULL},
    {"{\"q\":9007199254740992}", ID, 0, -1,
     "params.q: expected a job id, an integer between 1 and 2^53-1"},
    {"{\"q\":0}", ID, 0, -1,
     "params.q: expected a job id, an integer between 1 and 2^53-1"},
    {"{\"q\":1.5}", ID, 0, -1,
     "params.q: expected a job id, an integer between 1 and 2^53-1"},
    {"{}", ID, AQ_PARAM_REQUIRED, -1, "params.q: required"},
    {"{\"q\":\"stream\"}", WORD, 0, 1, NULL},
    {"{\"q\":\"ALL\"}", WORD, 0, -1,
     "params.q: expected one of \"all\", \"any\", \"stream\""},
    {"{\"q\":\"all\\u0000\"}", WORD, 0, -1,
     "params.q: expected one of \"all\", \"any\", \"stream\""},
    {"{\"q\":1}", WORD, 0, -1,
     "params.q: expected one of \"all\", \"any\", \"stream\""},
};

START_TEST(each_getter_reads_its_type_or_names_the_field)
{
    json_t *obj = json_loads(cases[_i].obj, JSON_ALLOW_NUL, NULL);
    struct aq_error err = {0};
    struct aq_params p;
    const char *s = NULL;
    json_int_t n = 0;
    uint64_t id = 0;
    size_t w = 0;
    double d = 0;
    bool b = true;
    int rc = 0;

    ck_assert_ptr_nonnull(obj);
    aq_params_init(&p, obj, "params", NULL, &err);
    switch (cases[_i].get) {
    case STRING:
        rc = aq_params_string(&p, "q", cases[_i].flags, &s);
        break;
    case INT:
        rc = aq_params_int(&p, "q", cases[_i].flags, -5, 10, &n);
        break;
    case DURATION:
        rc = aq_params_duration(&p, "q", cases[_i].flags, &d);
        break;
    case BOOL:
        rc = aq_params_bool(&p, "q", cases[_i].flags, &b);
        break;
    case ID:
        rc = aq_params_id(&p, "q", cases[_i].flags, &id);
        break;
    case WORD:
        rc = aq_params_word(&p, "q", cases[_i].flags, words, &w);
        break;
    }
    ck_assert_msg(rc == cases[_i].rc, "%s: rc %d, expected %d (%s)",
                  cases[_i].obj, rc, cases[_i].rc, err.message);
    if (rc < 0) {
        ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
        ck_assert_str_eq(err.message, cases[_i].message);
    }
    json_decref(obj);
}
END_TEST

START_TEST(getters_fill_out_only_when_present)
{
    json_t *obj = json_loads("{\"s\":\"x\",\"i\":-3,\"d\":0.25,\"b\":false,"
                             "\"id\":42,\"w\":\"any\"}",
                             0, NULL);
    struct aq_error err = {0};
    struct aq_params p;
    const char *s = "default";
    json_int_t n = 7;
    uint64_t id = 9;
    size_t w = 0;
    double d = -1;
    bool b = true;

    aq_params_init(&p, obj, "params", NULL, &err);
    ck_assert_int_eq(aq_params_string(&p, "none", 0, &s), 0);
    ck_assert_str_eq(s, "default");
    ck_assert_int_eq(aq_params_int(&p, "none", 0, 0, 1, &n), 0);
    ck_assert_int_eq(n, 7);
    ck_assert_int_eq(aq_params_string(&p, "s", 0, &s), 1);
    ck_assert_str_eq(s, "x");
    ck_assert_int_eq(aq_params_int(&p, "i", 0, -5, 5, &n), 1);
    ck_assert_int_eq(n, -3);
    ck_assert_int_eq(aq_params_duration(&p, "d", 0, &d), 1);
    ck_assert(d == 0.25);
    ck_assert_int_eq(aq_params_bool(&p, "b", 0, &b), 1);
    ck_assert(!b);
    ck_assert_int_eq(aq_params_id(&p, "id", 0, &id), 1);
    ck_assert_uint_eq(id, 42);
    ck_assert_int_eq(aq_params_word(&p, "w", 0, words, &w), 1);
    ck_assert_uint_eq(w, 1);
    ck_assert_int_eq(err.code, 0);
    json_decref(obj);
}
END_TEST

START_TEST(unknown_fields_are_named_with_the_kind)
{
    static const char *const fields[] = {"a", "b", NULL};
    json_t *obj = json_loads("{\"a\":1,\"zz\":2}", 0, NULL);
    struct aq_error err = {0};
    struct aq_params p;

    aq_params_init(&p, obj, "params", NULL, &err);
    ck_assert_int_eq(aq_params_fields(&p, fields), -1);
    ck_assert_str_eq(err.message, "params.zz: unknown field");
    aq_params_init(&p, obj, "params.args", "exec", &err);
    ck_assert_int_eq(aq_params_fields(&p, fields), -1);
    ck_assert_str_eq(err.message,
                     "params.args.zz: unknown field for kind exec");
    ck_assert_int_eq(aq_params_string(&p, "c", AQ_PARAM_REQUIRED, NULL), -1);
    ck_assert_str_eq(err.message, "params.args.c: required for kind exec");
    json_decref(obj);
    obj = json_loads("{\"a\":1}", 0, NULL);
    aq_params_init(&p, obj, "params", NULL, &err);
    ck_assert_int_eq(aq_params_fields(&p, fields), 0);
    json_decref(obj);
}
END_TEST

START_TEST(objects_and_arrays_are_read_with_their_path)
{
    json_t *obj =
        json_loads("{\"argv\":[\"/bin/echo\",7],\"env\":{\"A\":\"1\",\"B\":2},"
                   "\"none\":[],\"o\":[1]}",
                   0, NULL);
    struct aq_error err = {0};
    struct aq_params p, argv, env, o;
    const char *s = NULL;
    uint64_t id;

    aq_params_init(&p, obj, "params.args", "exec", &err);
    ck_assert_int_eq(aq_params_array(&p, "argv", 0, "strings", &argv), 1);
    ck_assert_str_eq(argv.path, "params.args.argv");
    ck_assert_str_eq(argv.kind, "exec");
    ck_assert_int_eq(aq_params_string_at(&argv, 0, 0, &s), 1);
    ck_assert_str_eq(s, "/bin/echo");
    ck_assert_int_eq(aq_params_string_at(&argv, 1, 0, &s), -1);
    ck_assert_str_eq(err.message, "params.args.argv[1]: expected string");
    ck_assert_int_eq(aq_params_id_at(&argv, 0, &id), -1);
    ck_assert_str_eq(
        err.message,
        "params.args.argv[0]: expected a job id, an integer between 1 and "
        "2^53-1");
    ck_assert_int_eq(aq_params_object(&p, "env", 0, "strings", &env), 1);
    ck_assert_int_eq(aq_params_string(&env, "A", 0, &s), 1);
    ck_assert_int_eq(aq_params_string(&env, "B", 0, &s), -1);
    ck_assert_str_eq(err.message, "params.args.env.B: expected string");
    ck_assert_int_eq(aq_params_fail(&env, NULL, "invalid name \"%s\"", "="),
                     -1);
    ck_assert_str_eq(err.message, "params.args.env: invalid name \"=\"");
    ck_assert_int_eq(aq_params_array(&p, "none", 0, "job ids", &o), -1);
    ck_assert_str_eq(err.message,
                     "params.args.none: expected a non-empty array of job ids");
    ck_assert_int_eq(aq_params_object(&p, "o", 0, "strings", &o), -1);
    ck_assert_str_eq(err.message, "params.args.o: expected object of strings");
    ck_assert_int_eq(aq_params_object(&p, "argv", 0, NULL, &o), -1);
    ck_assert_str_eq(err.message, "params.args.argv: expected object");
    ck_assert_int_eq(aq_params_object(&p, "absent", 0, NULL, &o), 0);
    ck_assert_int_eq(aq_params_array(&p, "absent", AQ_PARAM_REQUIRED, "x", &o),
                     -1);
    ck_assert_str_eq(err.message, "params.args.absent: required for kind exec");
    json_decref(obj);
}
END_TEST

START_TEST(long_names_and_paths_are_cut_not_overrun)
{
    char name[300], text[400];
    json_t *obj;
    struct aq_error err = {0};
    struct aq_params p, sub;
    const char *s;

    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(text, sizeof text, "{\"%s\":{\"x\":1}}", name);
    obj = json_loads(text, 0, NULL);
    aq_params_init(&p, obj, name, NULL, &err);
    ck_assert_uint_eq(strlen(p.path), AQ_PARAMS_PATH_MAX - 1);
    aq_params_init(&p, obj, "params", NULL, &err);
    ck_assert_int_eq(aq_params_object(&p, name, 0, NULL, &sub), 1);
    ck_assert_uint_eq(strlen(sub.path), AQ_PARAMS_PATH_MAX - 1);
    ck_assert_int_eq(aq_params_string(&sub, "x", 0, &s), -1);
    ck_assert_int_eq(err.code, AQ_ERR_INVALID_PARAMS);
    ck_assert_int_eq(aq_params_fields(&p, (const char *const[]){NULL}), -1);
    /* the member name is cut at 100 bytes */
    ck_assert_uint_eq(strlen(err.message),
                      strlen("params.") + 100 + strlen(": unknown field"));
    json_decref(obj);
}
END_TEST

Suite *
params_suite(void)
{
    Suite *s = suite_create("params");
    TCase *tc = test_tcase_new("getters");

    tcase_add_loop_test(tc, each_getter_reads_its_type_or_names_the_field, 0,
                        NELEM(cases));
    tcase_add_test(tc, getters_fill_out_only_when_present);
    tcase_add_test(tc, unknown_fields_are_named_with_the_kind);
    tcase_add_test(tc, objects_and_arrays_are_read_with_their_path);
    tcase_add_test(tc, long_names_and_paths_are_cut_not_overrun);
    suite_add_tcase(s, tc);
    return s;
}
