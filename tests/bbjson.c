/* SPDX-License-Identifier: MIT */
/* tests/bbjson.c: JSON accessors for the black-box suites (bbjson.h). */
#include "bbjson.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
bb_dump(const json_t *v)
{
    char *s = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

    return s != NULL ? s : strdup("nothing");
}

json_t *
bb_at(const json_t *v, const char *path)
{
    json_t *cur = (json_t *)v; /* borrowed, as json_object_get returns */
    char key[64];

    while (cur != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");

        snprintf(key, sizeof key, "%.*s", (int)n, path);
        cur = json_object_get(cur, key);
        path += n + (path[n] == '.');
    }
    return cur;
}

/* The dumps in the messages below are made only when an assertion fails,
 * and the test ends there. */
const char *
bb_str_at(const json_t *v, const char *path)
{
    json_t *s = bb_at(v, path);

    ck_assert_msg(json_is_string(s), "%s: expected a string in %s", path,
                  bb_dump(v));
    return json_string_value(s);
}

json_int_t
bb_int_at(const json_t *v, const char *path)
{
    json_t *i = bb_at(v, path);

    ck_assert_msg(json_is_integer(i), "%s: expected an integer in %s", path,
                  bb_dump(v));
    return json_integer_value(i);
}

double
bb_num_at(const json_t *v, const char *path)
{
    json_t *n = bb_at(v, path);

    ck_assert_msg(json_is_number(n), "%s: expected a number in %s", path,
                  bb_dump(v));
    return json_number_value(n);
}
