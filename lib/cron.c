/* SPDX-License-Identifier: MIT */
/*
 * lib/cron.c: cron expressions and tz database zones (lib/cron.h).
 *
 * A calendar expression is five bit sets (minute, hour, day of month,
 * month, day of week). As in Vixie cron, when both day fields are
 * restricted (neither starts with '*') a day matches if either does;
 * otherwise both must.
 *
 * Zones: glibc has no per-call time zone, and switching TZ with
 * setenv+tzset around localtime_r would race with the journal's sync
 * thread (getenv, log timestamps) and change the daemon's own log times.
 * So the zone's TZif file is parsed here (RFC 8536: the 64-bit data of
 * version 2+, and the POSIX TZ string of its footer for times past the
 * table: Debian 12's files are "fat" to 2037, slim ones end early). Each
 * zone is plain data, queried without any global state.
 *
 * Next fire time: walk the local wall-clock calendar from the minute after
 * t, field by field; each matching local minute is turned back into UTC
 * with the offsets in effect around it. No UTC instant has it: a DST gap,
 * skipped. Two: the repeated hour of a fall back, the first one only.
 */
#include "cron.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "xmalloc.h"

#define SEARCH_YEARS 50        /* aq_cron_next gives up after */
#define TZIF_MAX (1024 * 1024) /* bytes of a zone file */
#define EVERY_MAX_S INT64_C(1000000000)

struct aq_cron {
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31 */
    uint16_t month;  /* bits 1-12 */
    uint8_t dow;     /* bits 0-6, 0 = Sunday */
    bool dom_star, dow_star;
    int64_t every_s; /* @every: the period; 0 = calendar */
};

/* ---- parsing ---- */

struct field_def {
    const char *what;
    int lo, hi;
    const char *const *names; /* names[i] is lo + i; NULL = none */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr",
                                          "may", "jun", "jul", "aug",
                                          "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed",
                                        "thu", "fri", "sat"};

static const struct field_def field_defs[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day of week", 0, 7, dow_names},
};

/* A number or (for month and weekday) a three-letter name at *sp. */
static int
parse_value(const char **sp, const struct field_def *fd, int *out)
{
    const char *s = *sp;
    long v = 0;

    if (isdigit((unsigned char)*s)) {
        while (isdigit((unsigned char)*s) && v < 100000)
            v = v * 10 + (*s++ - '0');
        *out = (int)v;
        *sp = s;
        return 0;
    }
    if (fd->names != NULL && isalpha((unsigned char)s[0]) &&
        isalpha((unsigned char)s[1]) && isalpha((unsigned char)s[2])) {
        int n = fd->hi - fd->lo + 1 - (fd->lo == 0 && fd->hi == 7 ? 1 : 0);

        for (int i = 0; i < n; i++) {
            if (strncasecmp(s, fd->names[i], 3) == 0) {
                *out = fd->lo + i;
                *sp = s + 3;
                return 0;
            }
        }
    }
    return -1;
}

/* One field (len bytes at s) into *bits. Returns NULL, or why not (in
 * why). */
static const char *
parse_field(const char *s, size_t len, const struct field_def *fd,
            uint64_t *bits, char *why, size_t whylen)
{
    char buf[128];
    const char *p;

    if (len >= sizeof buf)
        return "too long";
    memcpy(buf, s, len);
    buf[len] = '\0';
    *bits = 0;
    p = buf;
    for (;;) {
        int a, b, step = 1;
        const char *item = p;

        if (*p == '*') {
            a = fd->lo;
            b = fd->hi;
            p++;
        } else {
            if (parse_value(&p, fd, &a) < 0)
                goto bad_value;
            b = a;
            if (*p == '-') {
                p++;
                if (parse_value(&p, fd, &b) < 0)
                    goto bad_value;
            }
            if (a < fd->lo || a > fd->hi || b < fd->lo || b > fd->hi) {
                snprintf(why, whylen, "%d out of range %d-%d",
                         a < fd->lo || a > fd->hi ? a : b, fd->lo, fd->hi);
                return why;
            }
            if (b < a) {
                snprintf(why, whylen, "range %d-%d goes backwards", a, b);
                return why;
            }
        }
        if (*p == '/') {
            long n = 0;

            p++;
            if (!isdigit((unsigned char)*p)) {
                snprintf(why, whylen, "expected a step after /");
                return why;
            }
            while (isdigit((unsigned char)*p) && n < 100000)
                n = n * 10 + (*p++ - '0');
            if (n == 0)
                return "step 0";
            if (*item != '*' && b == a)
                b = fd->hi; /* "5/15": from 5 to the end */
            step = (int)n;
        }
        if (*p != ',' && *p != '\0')
            goto bad_value;
        for (int v = a; v <= b; v += step)
            *bits |= UINT64_C(1) << (fd->hi == 7 && v == 7 ? 0 : v);
        if (*p == '\0')
            return NULL;
        p++;
        continue;
    bad_value:
        snprintf(why, whylen, "bad value \"%.*s\"", (int)strcspn(item, ","),
                 item);
        return why;
    }
}

/* "@every 90s": a number and an optional unit s, m, h or d, as the CLI's
 * durations; at least 1 s, at most 1e9 s, whole seconds. */
static int
parse_every(const char *s, int64_t *out)
{
    char *end;
    double v, mult = 1;

    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s) && *s != '.')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s)
        return -1;
    switch (*end) {
    case 's':
        end++;
        break;
    case 'm':
        mult = 60;
        end++;
        break;
    case 'h':
        mult = 3600;
        end++;
        break;
    case 'd':
        mult = 86400;
        end++;
        break;
    default:
        break;
    }
    while (*end == ' ' || *end == '\t')
        end++;
    v *= mult;
    if (*end != '\0' || !(v >= 1 && v <= (double)EVERY_MAX_S) ||
        v != (double)(int64_t)v)
        return -1;
    *out = (int64_t)v;
    return 0;
}

struct macro {
    const char *name, *expansion;
};

static const struct macro macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},  {NULL, NULL},
};

struct aq_cron *
aq_cron_parse(const char *text, struct aq_error *err)
{
    struct aq_cron *c = xcalloc(1, sizeof *c);
    const char *s = text, *start[5];
    size_t len[5], n = 0;
    char why[96];

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '@') {
        if (strncmp(s, "@every", 6) == 0 && (s[6] == ' ' || s[6] == '\t')) {
            if (parse_every(s + 6, &c->every_s) < 0) {
                aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                             "cron \"%s\": @every: expected a duration from "
                             "1s to 1e9s (90, 90s, 5m, 2h, 1d)",
                             text);
                goto fail;
            }
            return c;
        }
        for (const struct macro *m = macros;; m++) {
            if (m->name == NULL) {
                aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                             "cron \"%s\": expected five fields, or @hourly, "
                             "@daily, @weekly, @monthly, @yearly or @every "
                             "DURATION",
                             text);
                goto fail;
            }
            if (strcmp(s, m->name) == 0) {
                s = m->expansion;
                break;
            }
        }
    }
    while (*s != '\0') {
        size_t l = strcspn(s, " \t");

        if (n == 5) {
            n++;
            break;
        }
        start[n] = s;
        len[n++] = l;
        s += l;
        while (*s == ' ' || *s == '\t')
            s++;
    }
    if (n != 5) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "cron \"%s\": expected five fields (minute hour "
                     "day-of-month month day-of-week)%s",
                     text, n > 5 ? ", got more" : "");
        goto fail;
    }
    for (size_t i = 0; i < 5; i++) {
        uint64_t bits;
        const char *bad = parse_field(start[i], len[i], &field_defs[i], &bits,
                                      why, sizeof why);

        if (bad != NULL) {
            aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                         "cron \"%s\": field %zu (%s): %s", text, i + 1,
                         field_defs[i].what, bad);
            goto fail;
        }
        switch (i) {
        case 0:
            c->minute = bits;
            break;
        case 1:
            c->hour = (uint32_t)bits;
            break;
        case 2:
            c->dom = (uint32_t)bits;
            c->dom_star = start[i][0] == '*';
            break;
        case 3:
            c->month = (uint16_t)bits;
            break;
        default:
            c->dow = (uint8_t)bits;
            c->dow_star = start[i][0] == '*';
            break;
        }
    }
    return c;
fail:
    free(c);
    return NULL;
}

void
aq_cron_free(struct aq_cron *c)
{
    free(c);
}

int64_t
aq_cron_every_s(const struct aq_cron *c)
{
    return c->every_s;
}

/* ---- civil time (proleptic Gregorian; days since 1970-01-01) ---- */

static int64_t
floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static int64_t
days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* 0 = Sunday; 1970-01-01 was a Thursday. */
static int
weekday(int64_t days)
{
    return (int)(((days % 7) + 11) % 7);
}

/* ---- zones ---- */

/* A POSIX TZ rule date: Jn, n or Mm.w.d, then a local time of day. */
struct rule_date {
    char type; /* 'J', 'N' (zero-based day), 'M' */
    int day, week, month;
    int32_t time_s; /* local seconds after midnight; may be < 0 or > 24h */
};

struct tz_rule {
    bool has_dst;
    int32_t std_off, dst_off; /* seconds east of UTC */
    struct rule_date start, end;
};

struct tz_type {
    int32_t off;
    bool is_dst;
};

struct aq_tz {
    char *name;
    int64_t *trans; /* transition times, ascending */
    uint8_t *idx;   /* the type from each transition on */
    size_t ntrans;
    struct tz_type *types;
    size_t ntypes;
    bool has_rule; /* the footer, for times past the table */
    struct tz_rule rule;
};

static const char *
rule_name(const char *s)
{
    if (*s == '<') {
        const char *e = strchr(s, '>');

        return e != NULL ? e + 1 : NULL;
    }
    if (!isalpha((unsigned char)*s))
        return NULL;
    while (isalpha((unsigned char)*s))
        s++;
    return s;
}

/* [+-]hh[:mm[:ss]] into seconds; NULL if malformed. */
static const char *
rule_hms(const char *s, int32_t *out)
{
    int sign = 1, part = 0;
    int32_t v[3] = {0, 0, 0};

    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*s))
        return NULL;
    for (;;) {
        while (isdigit((unsigned char)*s) && v[part] < 1000)
            v[part] = v[part] * 10 + (*s++ - '0');
        if (*s != ':' || part == 2)
            break;
        s++;
        part++;
    }
    *out = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
    return s;
}

static const char *
rule_date(const char *s, struct rule_date *d)
{
    char *end;

    memset(d, 0, sizeof *d);
    d->time_s = 7200;
    if (*s == 'M') {
        d->type = 'M';
        d->month = (int)strtol(s + 1, &end, 10);
        if (*end != '.')
            return NULL;
        d->week = (int)strtol(end + 1, &end, 10);
        if (*end != '.')
            return NULL;
        d->day = (int)strtol(end + 1, &end, 10);
        if (d->month < 1 || d->month > 12 || d->week < 1 || d->week > 5 ||
            d->day < 0 || d->day > 6)
            return NULL;
    } else if (*s == 'J' || isdigit((unsigned char)*s)) {
        d->type = *s == 'J' ? 'J' : 'N';
        d->day = (int)strtol(s + (*s == 'J'), &end, 10);
        if (d->day < (d->type == 'J') || d->day > 365)
            return NULL;
    } else
        return NULL;
    s = end;
    if (*s == '/' && (s = rule_hms(s + 1, &d->time_s)) == NULL)
        return NULL;
    return s;
}

/* The footer "std offset [dst [offset] [,start[/time],end[/time]]]". */
static int
parse_rule(const char *s, struct tz_rule *r)
{
    int32_t off;

    memset(r, 0, sizeof *r);
    if ((s = rule_name(s)) == NULL || (s = rule_hms(s, &off)) == NULL)
        return -1;
    r->std_off = -off; /* POSIX counts west */
    if (*s == '\0')
        return 0;
    if ((s = rule_name(s)) == NULL)
        return -1;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        if ((s = rule_hms(s, &off)) == NULL)
            return -1;
        r->dst_off = -off;
    }
    if (*s == '\0') /* no dates: the US rules, as glibc */
        s = ",M3.2.0,M11.1.0";
    if (*s != ',' || (s = rule_date(s + 1, &r->start)) == NULL || *s != ',' ||
        (s = rule_date(s + 1, &r->end)) == NULL)
        return -1;
    return *s == '\0' ? 0 : -1;
}

/* Local midnight (days since the epoch) of d in year y. */
static int64_t
rule_day(const struct rule_date *d, int64_t y)
{
    int64_t jan1 = days_from_civil(y, 1, 1), first;
    int wd;

    switch (d->type) {
    case 'J': /* 1-365, February 29 never counted */
        return jan1 + d->day - 1 + (is_leap(y) && d->day >= 60);
    case 'N':
        return jan1 + d->day;
    default:
        first = days_from_civil(y, d->month, 1);
        wd = (d->day - weekday(first) + 7) % 7;
        first += wd + 7 * (d->week - 1);
        while (first >=
               days_from_civil(y, d->month, 1) + month_days(y, d->month))
            first -= 7; /* week 5: the last one */
        return first;
    }
}

static const struct tz_type *
rule_type(const struct tz_rule *r, int64_t t, struct tz_type *out)
{
    int64_t y, start, end;
    int m, d;

    out->off = r->std_off;
    out->is_dst = false;
    if (!r->has_dst)
        return out;
    civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
    /* Start is in standard time, end in daylight time (local). */
    start = rule_day(&r->start, y) * 86400 + r->start.time_s - r->std_off;
    end = rule_day(&r->end, y) * 86400 + r->end.time_s - r->dst_off;
    if (start < end ? (t >= start && t < end) : !(t >= end && t < start)) {
        out->off = r->dst_off;
        out->is_dst = true;
    }
    return out;
}

int32_t
aq_tz_offset(const struct aq_tz *z, int64_t t)
{
    struct tz_type tmp;
    size_t lo = 0, hi;

    if (z->ntrans == 0 || t < z->trans[0]) {
        if (z->ntrans == 0 && z->has_rule)
            return rule_type(&z->rule, t, &tmp)->off;
        return z->types[0].off;
    }
    if (t >= z->trans[z->ntrans - 1] && z->has_rule)
        return rule_type(&z->rule, t, &tmp)->off;
    hi = z->ntrans; /* the last transition <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->types[z->idx[lo]].off;
}

static uint64_t
be(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* RFC 8536: header, version 1 data (skipped), header, 64-bit data,
 * footer. 0, or -1 if it is not such a file. */
static int
parse_tzif(struct aq_tz *z, const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len, *q;
    uint64_t cnt[6]; /* isut, isstd, leap, time, type, char */
    size_t skip;
    char footer[256];

    if (len < 44 || memcmp(p, "TZif", 4) != 0 || p[4] < '2')
        return -1;
    for (int i = 0; i < 6; i++)
        cnt[i] = be(p + 20 + 4 * i, 4);
    skip = 44 + cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
    if (cnt[3] > 100000 || cnt[4] > 256 || cnt[5] > 10000 || cnt[2] > 10000 ||
        cnt[1] > 256 || cnt[0] > 256 || skip + 44 > len)
        return -1;
    p += skip;
    if (memcmp(p, "TZif", 4) != 0)
        return -1;
    for (int i = 0; i < 6; i++)
        cnt[i] = be(p + 20 + 4 * i, 4);
    if (cnt[3] > 100000 || cnt[4] == 0 || cnt[4] > 256 || cnt[5] > 10000 ||
        cnt[2] > 10000 || cnt[1] > 256 || cnt[0] > 256)
        return -1;
    q = p + 44;
    skip = cnt[3] * 9 + cnt[4] * 6 + cnt[5] + cnt[2] * 12 + cnt[1] + cnt[0];
    if ((size_t)(end - q) < skip)
        return -1;
    z->ntrans = cnt[3];
    z->trans = xcalloc(z->ntrans + 1, sizeof *z->trans);
    z->idx = xcalloc(z->ntrans + 1, 1);
    for (size_t i = 0; i < z->ntrans; i++)
        z->trans[i] = (int64_t)be(q + 8 * i, 8);
    q += 8 * z->ntrans;
    for (size_t i = 0; i < z->ntrans; i++) {
        z->idx[i] = q[i];
        if (q[i] >= cnt[4])
            return -1;
    }
    q += z->ntrans;
    z->ntypes = cnt[4];
    z->types = xcalloc(z->ntypes, sizeof *z->types);
    for (size_t i = 0; i < z->ntypes; i++) {
        z->types[i].off = (int32_t)(uint32_t)be(q + 6 * i, 4);
        z->types[i].is_dst = q[6 * i + 4] != 0;
    }
    q += 6 * z->ntypes + cnt[5] + cnt[2] * 12 + cnt[1] + cnt[0];
    /* The footer: "\nTZ\n"; empty when the table says it all. */
    if (q < end && *q == '\n') {
        const unsigned char *nl = memchr(q + 1, '\n', (size_t)(end - q - 1));

        if (nl != NULL && nl > q + 1 && (size_t)(nl - q - 1) < sizeof footer) {
            memcpy(footer, q + 1, (size_t)(nl - q - 1));
            footer[nl - q - 1] = '\0';
            if (parse_rule(footer, &z->rule) < 0)
                return -1;
            z->has_rule = true;
        }
    }
    return 0;
}

static unsigned char *
read_zone_file(const char *path, size_t *lenp)
{
    unsigned char *buf = xmalloc(TZIF_MAX);
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        free(buf);
        return NULL;
    }
    while (len < TZIF_MAX) {
        ssize_t n = read(fd, buf + len, TZIF_MAX - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *lenp = len;
    return buf;
}

static bool
is_zone_name(const char *name)
{
    if (name[0] == '\0' || name[0] == '/' || strlen(name) > 200)
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("/_-+", *p) == NULL)
            return false;
    }
    return true;
}

struct aq_tz *
aq_tz_load(const char *name, struct aq_error *err)
{
    struct aq_tz *z = xcalloc(1, sizeof *z);
    const char *dir = getenv("TZDIR");
    unsigned char *buf = NULL;
    char *path;
    size_t len = 0;

    z->name = xstrdup(name);
    if (strcmp(name, "UTC") == 0) {
        z->ntypes = 1;
        z->types = xcalloc(1, sizeof *z->types);
        return z;
    }
    if (!is_zone_name(name))
        goto fail;
    path = xasprintf("%s/%s",
                     dir != NULL && dir[0] == '/' ? dir
                                                  : "/usr/share/"
                                                    "zoneinfo",
                     name);
    buf = read_zone_file(path, &len);
    free(path);
    if (buf == NULL || parse_tzif(z, buf, len) < 0)
        goto fail;
    free(buf);
    return z;
fail:
    free(buf);
    aq_tz_free(z);
    aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                 "timezone \"%s\": unknown zone (expected a tz database name "
                 "such as \"Europe/Berlin\", or \"UTC\")",
                 name);
    return NULL;
}

void
aq_tz_free(struct aq_tz *z)
{
    if (z == NULL)
        return;
    free(z->name);
    free(z->trans);
    free(z->idx);
    free(z->types);
    free(z);
}

const char *
aq_tz_name(const struct aq_tz *z)
{
    return z->name;
}

/* ---- next fire time ---- */

/* The first UTC instant whose local time in z is local (seconds since the
 * epoch, read as UTC); INT64_MIN if none (a gap). Offsets change at most
 * once within a day around it, so those of a day before and after, and
 * of local itself, are all the candidates. */
static int64_t
local_to_utc(const struct aq_tz *z, int64_t local)
{
    int32_t offs[3] = {aq_tz_offset(z, local - 86400), aq_tz_offset(z, local),
                       aq_tz_offset(z, local + 86400)};
    int64_t best = INT64_MIN;

    for (int i = 0; i < 3; i++) {
        int64_t t = local - offs[i];

        if (aq_tz_offset(z, t) == offs[i] && (best == INT64_MIN || t < best))
            best = t;
    }
    return best;
}

static bool
day_matches(const struct aq_cron *c, int64_t days, int d)
{
    bool dom = (c->dom >> d) & 1, dow = (c->dow >> weekday(days)) & 1;

    if (c->dom_star || c->dow_star)
        return dom && dow;
    return dom || dow;
}

int64_t
aq_cron_next(const struct aq_cron *c, const struct aq_tz *z, int64_t t)
{
    int64_t local, y0, y, days;
    int m, d, h, mi;

    if (c->every_s > 0)
        return (floor_div(t, c->every_s) + 1) * c->every_s;
    local = (floor_div(t + aq_tz_offset(z, t), 60) + 1) * 60;
    civil_from_days(floor_div(local, 86400), &y0, &m, &d);
    for (;;) {
        int64_t utc;

        days = floor_div(local, 86400);
        civil_from_days(days, &y, &m, &d);
        if (y > y0 + SEARCH_YEARS)
            return -1;
        if (!((c->month >> m) & 1)) {
            local = (m == 12 ? days_from_civil(y + 1, 1, 1)
                             : days_from_civil(y, m + 1, 1)) *
                    86400;
            continue;
        }
        if (!day_matches(c, days, d)) {
            local = (days + 1) * 86400;
            continue;
        }
        h = (int)(local - days * 86400) / 3600;
        mi = (int)(local - days * 86400) % 3600 / 60;
        if (!((c->hour >> h) & 1)) {
            local = days * 86400 + (h + 1) * 3600;
            continue;
        }
        if (!((c->minute >> mi) & 1)) {
            uint64_t later = c->minute >> mi;

            /* The next minute of the set in this hour, or the next hour. */
            local = later != 0 ? local + 60 * (int64_t)__builtin_ctzll(later)
                               : days * 86400 + (h + 1) * 3600;
            continue;
        }
        utc = local_to_utc(z, local);
        if (utc != INT64_MIN && utc > t)
            return utc;
        local += 60; /* a gap, or its first occurrence is past */
    }
}
