/* SPDX-License-Identifier: MIT */
/*
 * tests/test_secret.c: lib/secret.c compares the whole secret: equal only
 * for the same bytes and length, whatever a prefix or a longer guess.
 */
#include <check.h>
#include <string.h>

#include "secret.h"
#include "suites.h"
#include "testutil.h"

START_TEST(equal_only_for_the_same_bytes_and_length)
{
    ck_assert(aq_secret_equal("s3cret", 6, "s3cret"));
    ck_assert(!aq_secret_equal("s3creT", 6, "s3cret"));
    ck_assert(!aq_secret_equal("s3cre", 5, "s3cret"));    /* a prefix */
    ck_assert(!aq_secret_equal("s3crets", 7, "s3cret"));  /* longer */
    ck_assert(!aq_secret_equal("s3cret\0", 7, "s3cret")); /* a NUL more */
    ck_assert(!aq_secret_equal("", 0, "s3cret"));
    ck_assert(aq_secret_equal("", 0, ""));
    ck_assert(!aq_secret_equal("x", 1, ""));
    /* n bounds what is read: the bytes past it are not compared. */
    ck_assert(aq_secret_equal("s3cretXYZ", 6, "s3cret"));
}
END_TEST

Suite *
secret_suite(void)
{
    Suite *s = suite_create("secret");
    TCase *tc = test_tcase_new("secret");

    tcase_add_test(tc, equal_only_for_the_same_bytes_and_length);
    suite_add_tcase(s, tc);
    return s;
}
