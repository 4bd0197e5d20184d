/* SPDX-License-Identifier: MIT */
/*
 * tests/test_crc32c.c: the contract of lib/crc32c.h: the standard check
 * values, and the SSE4.2 and table implementations agreeing on every
 * length, alignment and split.
 */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"

START_TEST(crc32c_of_123456789_is_the_standard_check_value)
{
    unsigned char zeros[32], ones[32], up[32], down[32];

    memset(zeros, 0, sizeof zeros);
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++) {
        up[i] = (unsigned char)i;
        down[i] = (unsigned char)(31 - i);
    }
    ck_assert_uint_eq(aq_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(aq_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(aq_crc32c(0, "", 0), 0);
    /* RFC 3720 B.4, the iSCSI test vectors */
    ck_assert_uint_eq(aq_crc32c(0, zeros, 32), 0x8A9136AAu);
    ck_assert_uint_eq(aq_crc32c(0, ones, 32), 0x62A8AB43u);
    ck_assert_uint_eq(aq_crc32c(0, up, 32), 0x46DD794Eu);
    ck_assert_uint_eq(aq_crc32c(0, down, 32), 0x113FDB5Cu);
}
END_TEST

START_TEST(crc32c_equals_portable_for_every_length_and_alignment)
{
    enum { MAX_LEN = 1000, ALIGNS = 8 };
    unsigned char *buf = malloc(MAX_LEN + ALIGNS);
    static const uint32_t seeds[] = {0, 0xFFFFFFFFu, 0xE3069283u};
    struct rng r = {0x2545F491u};

    ck_assert_ptr_nonnull(buf);
    rng_fill(&r, buf, MAX_LEN + ALIGNS);
    for (size_t len = 0; len <= MAX_LEN; len++) {
        for (size_t a = 0; a < ALIGNS; a++) {
            for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
                uint32_t hw = aq_crc32c(seeds[s], buf + a, len);
                uint32_t sw = aq_crc32c_portable(seeds[s], buf + a, len);

                ck_assert_msg(hw == sw,
                              "len %zu align %zu seed %08" PRIx32 ": %08" PRIx32
                              " vs portable %08" PRIx32,
                              len, a, seeds[s], hw, sw);
            }
        }
    }
    free(buf);
}
END_TEST

START_TEST(crc32c_computed_in_pieces_equals_one_shot)
{
    enum { LEN = 1000 };
    unsigned char *buf = malloc(LEN);
    uint32_t whole, whole_sw;
    struct rng r = {0x1234567u};

    ck_assert_ptr_nonnull(buf);
    rng_fill(&r, buf, LEN);
    whole = aq_crc32c(0, buf, LEN);
    whole_sw = aq_crc32c_portable(0, buf, LEN);
    ck_assert_uint_eq(whole, whole_sw);
    for (size_t cut = 0; cut <= LEN; cut++) {
        uint32_t hw = aq_crc32c(aq_crc32c(0, buf, cut), buf + cut, LEN - cut);
        uint32_t sw = aq_crc32c_portable(aq_crc32c_portable(0, buf, cut),
                                         buf + cut, LEN - cut);

        ck_assert_msg(hw == whole, "split at %zu: %08" PRIx32, cut, hw);
        ck_assert_msg(sw == whole, "portable split at %zu: %08" PRIx32, cut,
                      sw);
    }
    for (int rep = 0; rep < 200; rep++) {
        uint32_t crc = 0;
        size_t off = 0;

        while (off < LEN) {
            size_t n = rng_below(&r, 40);

            if (n > LEN - off)
                n = LEN - off;
            /* mix the two implementations: they must agree mid-stream */
            crc = n % 2 ? aq_crc32c(crc, buf + off, n)
                        : aq_crc32c_portable(crc, buf + off, n);
            off += n;
        }
        ck_assert_uint_eq(crc, whole);
    }
    free(buf);
}
END_TEST

Suite *
crc32c_suite(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = test_tcase_new("crc32c");

    tcase_add_test(tc, crc32c_of_123456789_is_the_standard_check_value);
    tcase_add_test(tc, crc32c_equals_portable_for_every_length_and_alignment);
    tcase_add_test(tc, crc32c_computed_in_pieces_equals_one_shot);
    suite_add_tcase(s, tc);
    return s;
}
