/* SPDX-License-Identifier: MIT */
/*
 * lib/secret.c: constant-time comparison of a secret.
 */
#include "secret.h"

#include <string.h>

bool
aq_secret_equal(const char *given, size_t n, const char *secret)
{
    size_t len = strlen(secret);
    /* volatile: the compiler may not end the loop at the first difference. */
    volatile unsigned char d = n != len;

    for (size_t i = 0; i < len; i++)
        d |= (unsigned char)(secret[i] ^ (i < n ? given[i] : 0));
    return d == 0;
}
