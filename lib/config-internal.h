/* SPDX-License-Identifier: MIT */
/*
 * lib/config-internal.h: what lib/config.c (the reader of field tables,
 * the top-level sections, the loader) and lib/config_queue.c (a queue's
 * section) share. Nothing else includes it.
 *
 * Each section is read through a table of fields (name, parser, offset,
 * range), so a key missing from a table is an unknown field. Every string
 * the config holds is its own heap copy or NULL at every step, so a
 * half-parsed config is freed with aq_config_free.
 */
#ifndef AQ_CONFIG_INTERNAL_H
#define AQ_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct aq_error;

#define PATH_LEN 256          /* a field path in a message */
#define NUMBER_MAX 1000000000 /* durations and factors: ~31 years */
#define SIZE_LIMIT                                                             \
    ((int64_t)((uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : INT64_MAX))

/* Where messages go: file (aq_config_load) prefixes every message. */
struct parser {
    const char *file; /* NULL when parsing text */
    struct aq_error *err;
};

struct field;
typedef int parse_fn(struct parser *p, json_t *v, const struct field *f,
                     const char *path, void *base);

/* One key of a JSON object and where its value goes in base. */
struct field {
    const char *name;
    parse_fn *parse;
    size_t offset;           /* from the start of base */
    int64_t min, max;        /* integers and numbers */
    const struct field *sub; /* a section's fields; same base */
};

/* ---- config.c: the reader ---- */

/* Formats "[file: ]path: why" into the parser's error; returns -1. */
int config_field_error(struct parser *p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Where f's value goes in base. */
void *config_field_at(void *base, const struct field *f);
/* Frees *dst and sets it to a copy of value (NULL stays NULL). */
void config_replace_string(char **dst, const char *value);
/* Frees the n strings of v, and v. */
void config_free_strings(char **v, size_t n);
/* The index of v in words, or -1 with a message listing them all. */
int config_match_word(struct parser *p, json_t *v, const char *const *words,
                      const char *path);
/* Reads the keys of obj through fields; path names obj ("" at the top). */
int config_parse_object(struct parser *p, json_t *obj, const char *path,
                        const struct field *fields, void *base);

/* Parsers for a field's value (parse_fn): 0, or -1 with the parser's
 * error set. */
parse_fn config_parse_int;     /* in [f->min, f->max], a JSON integer */
parse_fn config_parse_size;    /* the same, into a size_t */
parse_fn config_parse_number;  /* any finite number in [f->min, f->max] */
parse_fn config_parse_bool;    /* true or false */
parse_fn config_parse_section; /* an object, through f->sub */
parse_fn config_parse_kind;    /* a kind name (aq_kind_names), copied */

/* ---- config_queue.c ---- */

/* "queues": replaces the default queue with the ones given. */
parse_fn config_parse_queues;

/* ---- config_schedule.c ---- */

/* "schedules": each one's fields (cron and timezone checked). */
parse_fn config_parse_schedules;
/* What a schedule cannot check alone: its queue exists and runs its
 * kind. 0, or -1 with the parser's error set. */
struct aq_config;
int config_check_schedules(struct parser *p, const struct aq_config *cfg);

#endif
