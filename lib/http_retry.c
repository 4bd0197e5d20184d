/* SPDX-License-Identifier: MIT */
/*
 * lib/http_retry.c: the Retry-After header of a 429 or 503 response
 * (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date in any of its
 * three forms (IMF-fixdate, RFC 850, asctime), always GMT: read with
 * strptime in the C names and timegm, never the local time zone. Pure.
 */
#include "http.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#define VALUE_MAX 64 /* longer is no HTTP-date nor a sane delay */

/* The HTTP-date s as epoch seconds, or -1 if it is none. */
static int64_t
http_date(const char *s)
{
    static const char *const forms[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* Sun, 06 Nov 1994 08:49:37 GMT */
        "%A, %d-%b-%y %H:%M:%S GMT", /* Sunday, 06-Nov-94 08:49:37 GMT */
        "%a %b %e %H:%M:%S %Y",      /* Sun Nov  6 08:49:37 1994 */
    };

    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct tm tm;
        const char *end;

        memset(&tm, 0, sizeof tm);
        end = strptime(s, forms[i], &tm);
        if (end != NULL && *end == '\0')
            return (int64_t)timegm(&tm);
    }
    return -1;
}

int
aq_http_retry_after(const char *value, int64_t now_wall_us, int64_t *delay_us)
{
    char s[VALUE_MAX + 1];
    size_t len;
    int64_t at_s;

    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0 || len > VALUE_MAX)
        return -1;
    memcpy(s, value, len);
    s[len] = '\0';
    if (strspn(s, "0123456789") == len) {
        /* delta-seconds: any length, saturated at the longest delay */
        double d = 0;

        for (size_t i = 0; i < len; i++)
            d = d * 10 + (s[i] - '0');
        *delay_us = aq_clock_s_to_us(d);
        return 0;
    }
    if (!isalpha((unsigned char)s[0]) || (at_s = http_date(s)) < 0)
        return -1;
    /* A date in the past is now. */
    *delay_us = aq_clock_s_to_us((double)at_s - (double)now_wall_us / 1e6);
    return 0;
}
