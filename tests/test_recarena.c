/* SPDX-License-Identifier: MIT */
/*
 * tests/test_recarena.c: lib/recarena.h, the finished-record arena: blocks
 * are aligned and keep their bytes, chunks go back to the system as soon as
 * their last block is released, in any order, and oversized requests are
 * refused rather than split. The job slabs: blocks of one size are reused
 * once given back, and a slab chunk goes once its last block does.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "recarena.h"
#include "suites.h"
#include "testutil.h"

#define CHUNK (64 * 1024)
#define NBLOCKS 6000 /* of 200 bytes: many chunks */
#define SPARES 4     /* drained chunks the arena keeps for reuse */

START_TEST(blocks_are_aligned_and_keep_their_bytes)
{
    struct aq_recarena *a = aq_recarena_new();
    static unsigned char *p[NBLOCKS];

    ck_assert_int_eq(aq_recarena_mapped(a), 0);
    for (int i = 0; i < NBLOCKS; i++) {
        p[i] = aq_recarena_alloc(a, 200);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert_int_eq((uintptr_t)p[i] % 16, 0);
        memset(p[i], i & 0xff, 200);
    }
    ck_assert_int_ge(aq_recarena_mapped(a), 15 * CHUNK);
    for (int i = 0; i < NBLOCKS; i++) {
        unsigned char want[200];

        /* One check a block: Check reports every assertion to its parent,
         * so a million of them take seconds. */
        memset(want, i & 0xff, sizeof want);
        ck_assert_msg(memcmp(p[i], want, sizeof want) == 0,
                      "block %d lost its bytes", i);
    }
    for (int i = 0; i < NBLOCKS; i++)
        aq_recarena_release(p[i]);
    /* Only the current chunk stays, empty and ready, and the spares. */
    ck_assert_int_eq(aq_recarena_mapped(a), (1 + SPARES) * CHUNK);
    aq_recarena_free(a);
}
END_TEST

/* Oldest first (how records expire): each chunk goes as soon as its last
 * block does, while newer chunks stay. */
START_TEST(chunks_are_unmapped_as_they_drain)
{
    struct aq_recarena *a = aq_recarena_new();
    static void *p[NBLOCKS];
    size_t peak;

    for (int i = 0; i < NBLOCKS; i++)
        p[i] = aq_recarena_alloc(a, 200);
    peak = aq_recarena_mapped(a);
    for (int i = 0; i < NBLOCKS / 2; i++)
        aq_recarena_release(p[i]);
    ck_assert_int_lt(aq_recarena_mapped(a), peak);
    ck_assert_int_gt(aq_recarena_mapped(a), 0);
    /* Newest first for the rest: nothing freed early, all gone at the end
     * but the current chunk and the spares. */
    for (int i = NBLOCKS - 1; i >= NBLOCKS / 2; i--)
        aq_recarena_release(p[i]);
    ck_assert_int_eq(aq_recarena_mapped(a), (1 + SPARES) * CHUNK);
    aq_recarena_free(a);
}
END_TEST

/* One block kept alive pins its chunk only, not the others. */
START_TEST(a_survivor_pins_only_its_own_chunk)
{
    struct aq_recarena *a = aq_recarena_new();
    static void *p[NBLOCKS];

    for (int i = 0; i < NBLOCKS; i++)
        p[i] = aq_recarena_alloc(a, 200);
    for (int i = 1; i < NBLOCKS; i++)
        aq_recarena_release(p[i]);
    /* p[0]'s chunk, the current one and the spares. */
    ck_assert_int_eq(aq_recarena_mapped(a), (2 + SPARES) * CHUNK);
    aq_recarena_release(p[0]);
    ck_assert_int_eq(aq_recarena_mapped(a), (1 + SPARES) * CHUNK);
    aq_recarena_free(a);
}
END_TEST

/* Records evicted oldest first while new ones come: a drained chunk is
 * kept and reused, never unmapped and mapped again (each time a munmap,
 * an mmap and a page fault per page touched). */
START_TEST(a_stream_of_records_reuses_drained_chunks)
{
    struct aq_recarena *a = aq_recarena_new();
    static void *p[NBLOCKS];
    size_t live = 1000;

    for (size_t i = 0; i < NBLOCKS; i++) {
        if (i >= live) {
            size_t before = aq_recarena_mapped(a);

            aq_recarena_release(p[i - live]);
            ck_assert_int_eq(aq_recarena_mapped(a), before);
        }
        p[i] = aq_recarena_alloc(a, 200);
    }
    /* 1000 blocks of 208 bytes span 4 chunks: a spare or two beyond. */
    ck_assert_int_le(aq_recarena_mapped(a), (5 + SPARES) * CHUNK);
    for (size_t i = NBLOCKS - live; i < NBLOCKS; i++)
        aq_recarena_release(p[i]);
    aq_recarena_free(a);
}
END_TEST

START_TEST(oversized_requests_are_refused)
{
    struct aq_recarena *a = aq_recarena_new();
    void *p;

    ck_assert_ptr_null(aq_recarena_alloc(a, CHUNK));
    ck_assert_ptr_null(aq_recarena_alloc(a, (size_t)1 << 40));
    p = aq_recarena_alloc(a, CHUNK / 2);
    ck_assert_ptr_nonnull(p);
    aq_recarena_release(p);
    aq_recarena_free(a);
    aq_recarena_free(NULL);
}
END_TEST

#define SLAB_CHUNK (32 * 1024)
#define SLAB_SPARES 4 /* drained slab chunks kept for reuse */

/* The slabs are the thread's: each test counts from what it found. */
START_TEST(slab_blocks_are_aligned_keep_their_bytes_and_go_back)
{
    static unsigned char *p[NBLOCKS];
    size_t base = aq_slab_mapped();

    for (int i = 0; i < NBLOCKS; i++) {
        p[i] = aq_slab_alloc(197);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert_int_eq((uintptr_t)p[i] % 8, 0);
        memset(p[i], i & 0xff, 197);
    }
    ck_assert_uint_eq(aq_slab_block_size(p[0]), 200);
    /* no header per block: 6000 blocks of 200 bytes in 37 chunks */
    ck_assert_uint_ge(aq_slab_mapped(), base + 30 * SLAB_CHUNK);
    ck_assert_uint_le(aq_slab_mapped(), base + 38 * SLAB_CHUNK);
    for (int i = 0; i < NBLOCKS; i++) {
        unsigned char want[197];

        memset(want, i & 0xff, sizeof want);
        ck_assert_msg(memcmp(p[i], want, sizeof want) == 0,
                      "block %d lost its bytes", i);
    }
    for (int i = 0; i < NBLOCKS; i++)
        aq_slab_release(p[i]);
    ck_assert_uint_le(aq_slab_mapped(), base + SLAB_SPARES * SLAB_CHUNK);
}
END_TEST

/* Jobs do not all leave in the order they came: a block given back is the
 * next one given out, and holes are filled before a chunk is mapped. */
START_TEST(slab_reuses_released_blocks_before_mapping_more)
{
    static void *p[NBLOCKS];
    void *a = aq_slab_alloc(100), *b;
    size_t peak;

    aq_slab_release(a);
    b = aq_slab_alloc(101); /* the same size once rounded: 104 */
    ck_assert_ptr_eq(b, a);
    ck_assert_uint_eq(aq_slab_block_size(b), 104);
    for (int i = 0; i < NBLOCKS; i++)
        p[i] = aq_slab_alloc(104);
    peak = aq_slab_mapped();
    for (int i = 0; i < NBLOCKS; i += 2)
        aq_slab_release(p[i]);
    ck_assert_uint_eq(aq_slab_mapped(), peak); /* every chunk still used */
    for (int i = 0; i < NBLOCKS; i += 2)
        p[i] = aq_slab_alloc(104);
    ck_assert_uint_eq(aq_slab_mapped(), peak);
    for (int i = 0; i < NBLOCKS; i++)
        aq_slab_release(p[i]);
    aq_slab_release(b);
}
END_TEST

/* One block kept pins its chunk only; its release unmaps that too. */
START_TEST(slab_survivor_pins_only_its_own_chunk)
{
    static void *p[NBLOCKS];
    size_t base = aq_slab_mapped();

    for (int i = 0; i < NBLOCKS; i++)
        p[i] = aq_slab_alloc(184);
    for (int i = 1; i < NBLOCKS; i++)
        aq_slab_release(p[i]);
    ck_assert_uint_le(aq_slab_mapped(), base + (1 + SLAB_SPARES) * SLAB_CHUNK);
    aq_slab_release(p[0]);
    ck_assert_uint_le(aq_slab_mapped(), base + SLAB_SPARES * SLAB_CHUNK);
}
END_TEST

/* The process's mappings now (lines of /proc/self/maps). */
static int
mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;

    ck_assert_ptr_nonnull(f);
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* 300 chunks' worth of blocks (~9 MiB) take a few mappings, not 300 (the
 * kernel allows 65,530 a process), and every block keeps its bytes. */
START_TEST(slab_chunks_share_mappings)
{
    enum { N = 300 * (SLAB_CHUNK / 184) };
    static void *p[N];
    int before = mappings();

    for (int i = 0; i < N; i++) {
        p[i] = aq_slab_alloc(184);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], i & 0xff, 184);
    }
    ck_assert_int_le(mappings(), before + 12);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(((unsigned char *)p[i])[183], (unsigned)(i & 0xff));
        aq_slab_release(p[i]);
    }
    ck_assert_uint_le(aq_slab_mapped(), (size_t)SLAB_SPARES * SLAB_CHUNK);
}
END_TEST

START_TEST(slab_refuses_sizes_out_of_range)
{
    void *p;

    ck_assert_ptr_null(aq_slab_alloc(0));
    ck_assert_ptr_null(aq_slab_alloc(AQ_SLAB_MAX + 1));
    p = aq_slab_alloc(AQ_SLAB_MAX);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(aq_slab_block_size(p), AQ_SLAB_MAX);
    aq_slab_release(p);
}
END_TEST

Suite *
recarena_suite(void)
{
    Suite *s = suite_create("recarena");
    TCase *tc = test_tcase_new("arena");

    tcase_add_test(tc, blocks_are_aligned_and_keep_their_bytes);
    tcase_add_test(tc, chunks_are_unmapped_as_they_drain);
    tcase_add_test(tc, a_stream_of_records_reuses_drained_chunks);
    tcase_add_test(tc, a_survivor_pins_only_its_own_chunk);
    tcase_add_test(tc, oversized_requests_are_refused);
    tcase_add_test(tc, slab_blocks_are_aligned_keep_their_bytes_and_go_back);
    tcase_add_test(tc, slab_reuses_released_blocks_before_mapping_more);
    tcase_add_test(tc, slab_survivor_pins_only_its_own_chunk);
    tcase_add_test(tc, slab_refuses_sizes_out_of_range);
    tcase_add_test(tc, slab_chunks_share_mappings);
    suite_add_tcase(s, tc);
    return s;
}
