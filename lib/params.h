/* SPDX-License-Identifier: MIT */
/*
 * lib/params.h: strict reading of JSON params (spec section 7), for the
 * methods and for the handlers' args. A reader is an object or array and
 * its path in the request ("params", "params.args"); each getter checks
 * one member's exact type and range, and a failure is -32602 with a
 * message that names the field: "params.args.argv[0]: expected string".
 * Pure: no I/O.
 */
#ifndef AQ_PARAMS_H
#define AQ_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct aq_error;

#define AQ_PARAMS_PATH_MAX 64

enum {
    AQ_PARAM_REQUIRED = 1 << 0, /* absent: "required" */
    AQ_PARAM_NUL_OK = 1 << 1,   /* a string may hold U+0000 (bytes) */
};

struct aq_params {
    const json_t *v;               /* borrowed: the object (or array) read */
    char path[AQ_PARAMS_PATH_MAX]; /* its place, for messages */
    const char *kind;              /* NULL, or the job kind these are args of:
                                      "unknown field for kind exec" */
    struct aq_error *err;          /* where a failure is told */
};

/* A reader of v (borrowed) at path (copied), failing into err. */
void aq_params_init(struct aq_params *p, const json_t *v, const char *path,
                    const char *kind, struct aq_error *err);

/* Sets p->err to -32602 "PATH.NAME: WHY" (name NULL: "PATH: WHY"), for
 * checks of the caller's own. Returns -1. */
int aq_params_fail(const struct aq_params *p, const char *name, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

/* -1 if the object holds a member not in allowed (NULL-terminated). */
int aq_params_fields(const struct aq_params *p, const char *const *allowed);

/*
 * The getters read member name of the object. Each returns 1 with *out
 * set, 0 when the member is absent (and not AQ_PARAM_REQUIRED; *out is
 * left as it was), or -1 with p->err. Strings are borrowed from the JSON
 * and hold no U+0000 unless AQ_PARAM_NUL_OK.
 */
int aq_params_string(const struct aq_params *p, const char *name,
                     unsigned flags, const char **out);
int aq_params_int(const struct aq_params *p, const char *name, unsigned flags,
                  json_int_t min, json_int_t max, json_int_t *out);
/* Seconds, a number from 0 to 1e9 (AQ_DURATION_MAX_S). */
int aq_params_duration(const struct aq_params *p, const char *name,
                       unsigned flags, double *out);
int aq_params_bool(const struct aq_params *p, const char *name, unsigned flags,
                   bool *out);
/* A job id: an integer from 1 to 2^53-1. */
int aq_params_id(const struct aq_params *p, const char *name, unsigned flags,
                 uint64_t *out);
/* One of words (NULL-terminated): *out is its index. */
int aq_params_word(const struct aq_params *p, const char *name, unsigned flags,
                   const char *const *words, size_t *out);

/* An object member as a reader of its own (path "PATH.NAME"); what names
 * its values for the message ("expected object of strings"; NULL:
 * "expected object"). */
int aq_params_object(const struct aq_params *p, const char *name,
                     unsigned flags, const char *what, struct aq_params *sub);
/* A non-empty array member as a reader of its own, whose elements the _at
 * getters read ("PATH.NAME[i]"); what names the elements ("expected a
 * non-empty array of job ids"). */
int aq_params_array(const struct aq_params *p, const char *name, unsigned flags,
                    const char *what, struct aq_params *sub);
int aq_params_string_at(const struct aq_params *a, size_t i, unsigned flags,
                        const char **out);
int aq_params_id_at(const struct aq_params *a, size_t i, uint64_t *out);

#endif
