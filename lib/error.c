/* SPDX-License-Identifier: MIT */
/* lib/error.c: filling struct aq_error. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

void
aq_error_set(struct aq_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}
