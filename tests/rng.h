/* SPDX-License-Identifier: MIT */
/*
 * tests/rng.h: the tests' one pseudo-random generator, splitmix64 (Steele,
 * Lea and Flood 2014): any seed, 0 included, gives the same sequence on
 * every machine, so a failing run can be repeated from the seed it names.
 * Header-only, for the unit and the black-box executables alike; for test
 * data only, never for anything secret.
 */
#ifndef AQ_TEST_RNG_H
#define AQ_TEST_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rng {
    uint64_t s; /* the seed, then the state */
};

static inline uint64_t
rng_next(struct rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A number in [0, n), n > 0 (the modulo bias is no matter for tests). */
static inline unsigned
rng_below(struct rng *r, unsigned n)
{
    return (unsigned)(rng_next(r) % n);
}

/* True with a chance of percent in 100. */
static inline bool
rng_chance(struct rng *r, unsigned percent)
{
    return rng_below(r, 100) < percent;
}

/* Fills p with len random bytes. */
static inline void
rng_fill(struct rng *r, void *p, size_t len)
{
    unsigned char *b = p;

    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)rng_next(r);
}

#endif
