/* SPDX-License-Identifier: MIT */
/*
 * lib/secret.h: comparing a secret (the auth token) without leaking where
 * a guess first differs through the time the comparison takes.
 */
#ifndef AQ_SECRET_H
#define AQ_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* Whether given (n bytes, need not be NUL-terminated) equals secret (a
 * C string). Takes time that depends on strlen(secret) only, not on the
 * bytes of either. Both borrowed. */
bool aq_secret_equal(const char *given, size_t n, const char *secret);

#endif
