/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_protocol.c: the wire protocol against a real asyncqd: framing,
 * pipelining, notifications, batches, ids, errors of the protocol layer.
 */
#include <check.h>
#include <string.h>

#include "bb.h"
#include "bbsuites.h"

#define ECHO_CONFIG                                                            \
    "{\"queues\":{\"default\":{\"kind\":\"echo\",\"consumers\":2}}}"

START_TEST(ping_answers_pong)
{
    struct bb_daemon *d = bb_start(ECHO_CONFIG);
    struct bb_conn *c = bb_connect(d);
    json_t *r = bb_result(c, "ping", NULL);

    ck_assert_str_eq(json_string_value(r), "pong");
    json_decref(r);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}
END_TEST

Suite *
bb_protocol_suite(void)
{
    Suite *s = suite_create("bb_protocol");
    TCase *tc = tcase_create("basics");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ping_answers_pong);
    suite_add_tcase(s, tc);
    return s;
}
