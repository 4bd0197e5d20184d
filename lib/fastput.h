/* SPDX-License-Identifier: MIT */
/*
 * lib/fastput.h: the hot path of asyncqd's protocol: a `put` request line
 * read in place, without jansson, into a struct aq_put whose args stay the
 * raw JSON bytes they arrived as. Only plain requests qualify (see
 * lib/jscan.h); anything else returns -1 and goes the general way, which
 * gives the same results and the exact errors.
 */
#ifndef AQ_FASTPUT_H
#define AQ_FASTPUT_H

#include <stdbool.h>
#include <stddef.h>

#include "broker.h"

#define AQ_FASTPUT_ID_MAX 32

struct aq_fastput {
    char id[AQ_FASTPUT_ID_MAX]; /* the raw JSON of "id" */
    size_t id_len;              /* 0 = no id: a notification */
    struct aq_put put;          /* strings point into this struct or line */
    bool wait;
    char queue[72], kind[16], key[1032], name[AQ_NAME_MAX + 1];
};

/* Parses line[0..len) as a plain put request. Returns 0 with *fp filled
 * (args point into line, which must outlive the use of fp), or -1. */
int aq_fastput_parse(const char *line, size_t len, struct aq_fastput *fp);

#endif
