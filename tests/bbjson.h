/* SPDX-License-Identifier: MIT */
/*
 * tests/bbjson.h: reading the daemon's JSON in black-box tests: compact
 * text for messages, and values at dotted paths of object keys
 * ("result.stdout") that fail the test when they are not of the expected
 * type. Nothing here talks to the daemon.
 */
#ifndef AQ_BBJSON_H
#define AQ_BBJSON_H

#include <jansson.h>

/* v as compact JSON text ("nothing" for NULL); a new string, the caller's
 * to free. */
char *bb_dump(const json_t *v);
/* The value at a dotted path of object keys in v, or NULL if a key is
 * missing; borrowed from v. */
json_t *bb_at(const json_t *v, const char *path);
/* The string at path, borrowed from v; fails the test if it is none. */
const char *bb_str_at(const json_t *v, const char *path);
/* The integer at path; fails the test if it is none. */
json_int_t bb_int_at(const json_t *v, const char *path);
/* The number (integer or real) at path; fails the test if it is none. */
double bb_num_at(const json_t *v, const char *path);

#endif
