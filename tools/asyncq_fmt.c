/* SPDX-License-Identifier: MIT */
/*
 * tools/asyncq_fmt.c: how the asyncq CLI reads and writes for a person:
 * ids and durations with units, ages, shell-quoted command lines, table
 * cells cut to a width with an ellipsis, job records pretty-printed (an
 * exec job's output as text, an http job's status, headers and body), and
 * the progress line with a rate weighted to the recent past.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "asyncq.h"
#include "clock.h"
#include "xmalloc.h"

#define MAX_DURATION_S 1e9 /* spec section 7 */
#define RATE_WINDOW_S 5.0  /* the progress rate's time constant */
#define RATE_SAMPLE_S 0.2  /* shorter gaps are not sampled */

double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock seconds since the epoch, as job records count them. */
static double
epoch_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int
parse_id(const char *s, json_int_t *out)
{
    json_int_t v;

    if (parse_count(s, &v) < 0 || v < 1)
        return -1;
    *out = v;
    return 0;
}

int
parse_count(const char *s, json_int_t *out)
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v >= (1LL << 53))
        return -1;
    *out = v;
    return 0;
}

int
parse_duration(const char *s, double *out)
{
    static const struct {
        const char *unit;
        double secs;
    } units[] = {{"", 1},   {"s", 1},    {"ms", 0.001},
                 {"m", 60}, {"h", 3600}, {"d", 86400}};
    char *end;
    double v;

    /* strtod also reads "inf", "nan", hex and a sign: none is a duration */
    if (!isdigit((unsigned char)*s) &&
        !(*s == '.' && isdigit((unsigned char)s[1])))
        return -1;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s)
        return -1;
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
        if (strcmp(end, units[k].unit) != 0)
            continue;
        v *= units[k].secs;
        if (!isfinite(v) || v < 0 || v > MAX_DURATION_S)
            return -1;
        *out = v;
        return 0;
    }
    return -1;
}

int
parse_at(const char *s, time_t now, double *out)
{
    struct tm tm;
    time_t t;
    int h, m;

    if (aq_rfc3339_parse(s, out) == 0)
        return 0;
    if (strlen(s) != 5 || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || s[2] != ':' ||
        !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
        return -1;
    h = (s[0] - '0') * 10 + (s[1] - '0');
    m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -1;
    for (int day = 0; day <= 2; day++) {
        localtime_r(&now, &tm);
        tm.tm_mday += day;
        tm.tm_hour = h;
        tm.tm_min = m;
        tm.tm_sec = 0;
        tm.tm_isdst = -1; /* mktime finds it: DST may change by tomorrow */
        if ((t = mktime(&tm)) == (time_t)-1)
            return -1;
        if (t > now) {
            *out = (double)t;
            return 0;
        }
    }
    return -1;
}

json_t *
parse_ids(const char *s)
{
    json_t *ids = json_array();
    const char *p = s;

    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char buf[24];
        json_int_t id;

        if (len == 0 || len >= sizeof buf) {
            json_decref(ids);
            return NULL;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (parse_id(buf, &id) < 0) {
            json_decref(ids);
            return NULL;
        }
        json_array_append_new(ids, json_integer(id));
        if (comma == NULL)
            return ids;
        p = comma + 1;
    }
}

const char *
fmt_age(double secs, char *buf, size_t size)
{
    long long s;

    if (secs < 0)
        secs = 0;
    if (secs < 10 && secs != floor(secs))
        snprintf(buf, size, "%.1fs", secs);
    else if ((s = (long long)secs) < 60)
        snprintf(buf, size, "%llds", s);
    else if (s < 3600)
        snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
    return buf;
}

void
print_json(const json_t *v)
{
    char *s =
        json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));

    puts(s != NULL ? s : "null");
    free(s);
}

const char *
str_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

json_int_t
int_of(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? json_integer_value(v)
                              : (json_int_t)json_number_value(v);
}

const char *
plural(long long n, const char *one, const char *many, char *buf, size_t size)
{
    snprintf(buf, size, "%lld %s", n, n == 1 ? one : many);
    return buf;
}

bool
job_succeeded(const json_t *rec)
{
    return strcmp(str_of(rec, "state"), "done") == 0;
}

/* ---- command lines ---- */

static bool
is_shell_safe(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && strchr("_@%+=:,./-", *s) == NULL)
            return false;
    return true;
}

char *
shell_join(const json_t *argv)
{
    size_t i, len = 0, cap = 64;
    char *out = xmalloc(cap);
    const json_t *a;

    out[0] = '\0';
    json_array_foreach ((json_t *)argv, i, a) {
        const char *w = json_string_value(a);
        size_t need = 4 + 4 * (w != NULL ? strlen(w) : 4) + 2;

        if (w == NULL)
            w = "?";
        if (len + need >= cap) {
            cap = (len + need) * 2;
            out = xrealloc(out, cap);
        }
        if (i > 0)
            out[len++] = ' ';
        if (is_shell_safe(w)) {
            len += (size_t)sprintf(out + len, "%s", w);
            continue;
        }
        /* 'it'\''s': a quote ends the quoted run, is escaped, reopens */
        out[len++] = '\'';
        for (; *w != '\0'; w++) {
            if (*w == '\'') {
                memcpy(out + len, "'\\''", 4);
                len += 4;
            } else
                out[len++] = *w;
        }
        out[len++] = '\'';
        out[len] = '\0';
    }
    return out;
}

char *
job_what(const json_t *rec)
{
    const json_t *args = json_object_get(rec, "args");
    const char *kind = str_of(rec, "kind");

    if (strcmp(kind, "exec") == 0 &&
        json_is_array(json_object_get(args, "argv")))
        return shell_join(json_object_get(args, "argv"));
    if (strcmp(kind, "http") == 0 &&
        json_is_string(json_object_get(args, "url"))) {
        const char *m = str_of(args, "method");

        return xasprintf("%s %s", *m != '\0' ? m : "GET", str_of(args, "url"));
    }
    if (*str_of(rec, "name") != '\0')
        return xstrdup(str_of(rec, "name"));
    return xstrdup(kind);
}

/* ---- cells ---- */

/* Bytes of the UTF-8 sequence starting at p (1 for a stray byte). */
static size_t
utf8_len(const unsigned char *p)
{
    size_t n = *p < 0x80    ? 1
               : *p >= 0xf0 ? 4
               : *p >= 0xe0 ? 3
               : *p >= 0xc0 ? 2
                            : 1;

    for (size_t k = 1; k < n; k++)
        if ((p[k] & 0xc0) != 0x80)
            return 1;
    return n;
}

int
text_width(const char *s)
{
    int w = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0';
         p += utf8_len(p))
        w++;
    return w;
}

/* Writes up to max code points of s, control characters as spaces;
 * returns how many were written. */
static int
put_text(const char *s, int max)
{
    int w = 0;

    for (const unsigned char *p = (const unsigned char *)s;
         *p != '\0' && w < max; w++) {
        size_t n = utf8_len(p);

        if (*p < 0x20 || *p == 0x7f)
            putchar(' ');
        else
            fwrite(p, 1, n, stdout);
        p += n;
    }
    return w;
}

void
print_cell(const char *s, int width, bool right, bool is_last)
{
    int w = text_width(s), shown;

    if (width < 0) {
        put_text(s, w);
        return;
    }
    if (right && w < width)
        printf("%*s", width - w, "");
    if (w > width && width > 0) {
        shown = put_text(s, width - 1) + 1;
        fputs("\xe2\x80\xa6", stdout); /* U+2026, the ellipsis */
    } else
        shown = put_text(s, width);
    if (!right && !is_last && shown < width)
        printf("%*s", width - shown, "");
}

/* ---- records ---- */

/* "2026-11-22 10:00:00.123 (5m00s ago)" for the epoch seconds in rec. */
static void
print_time(const char *label, const json_t *rec, const char *key)
{
    const json_t *t = json_object_get(rec, key);
    double v = json_number_value(t), ago;
    time_t secs;
    struct tm tm;
    char buf[64], age[32];

    if (!json_is_number(t))
        return;
    secs = (time_t)v;
    localtime_r(&secs, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    ago = epoch_s() - v;
    printf("  %-10s%s.%03d (%s%s%s)\n", label, buf, (int)(fmod(v, 1) * 1000),
           ago < 0 ? "in " : "", fmt_age(fabs(ago), age, sizeof age),
           ago < 0 ? "" : " ago");
}

/* Prints text as an indented block under a label, saying how it ends. */
static void
print_block(const char *label, const json_t *text, bool truncated)
{
    const char *s = json_string_value(text), *p, *nl;
    size_t len = json_string_length(text);

    if (s == NULL)
        return;
    if (len == 0) {
        printf("  %-10s(empty)\n", label);
        return;
    }
    printf("  %s:\n", label);
    for (p = s; p < s + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(s + len - p));
        if (nl == NULL)
            nl = s + len;
        fputs("    ", stdout);
        fwrite(p, 1, (size_t)(nl - p), stdout);
        fputs("\n", stdout);
    }
    if (s[len - 1] != '\n')
        puts("    (no newline at the end)");
    if (truncated)
        puts("    (cut at the queue's capture limit)");
}

/* Prints v as indented JSON under a label. */
static void
print_json_block(const char *label, const json_t *v)
{
    char *s;

    if (v == NULL)
        return;
    s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_SORT_KEYS |
                          JSON_REAL_PRECISION(16));
    if (s == NULL)
        return;
    if (strchr(s, '\n') == NULL)
        printf("  %-10s%s\n", label, s);
    else {
        printf("  %s:\n    ", label);
        for (const char *p = s; *p != '\0'; p++) {
            putchar(*p);
            if (*p == '\n')
                fputs("    ", stdout);
        }
        putchar('\n');
    }
    free(s);
}

static void
print_headers(const char *label, const json_t *headers)
{
    const char *name;
    json_t *v;

    if (!json_is_object(headers) || json_object_size(headers) == 0)
        return;
    printf("  %s:\n", label);
    json_object_foreach ((json_t *)headers, name, v) {
        if (json_is_string(v))
            printf("    %s: %s\n", name, json_string_value(v));
        else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

            printf("    %s: %s\n", name, s != NULL ? s : "");
            free(s);
        }
    }
}

static void
print_args(const json_t *rec)
{
    const json_t *args = json_object_get(rec, "args");
    const char *kind = str_of(rec, "kind");
    char *what;

    if (args == NULL)
        return;
    if (strcmp(kind, "exec") == 0 &&
        json_is_array(json_object_get(args, "argv"))) {
        what = job_what(rec);
        printf("  %-10s%s\n", "command", what);
        free(what);
        if (json_object_get(args, "cwd") != NULL)
            printf("  %-10s%s\n", "cwd", str_of(args, "cwd"));
        print_headers("env", json_object_get(args, "env"));
        print_block("stdin", json_object_get(args, "stdin"), false);
        return;
    }
    if (strcmp(kind, "http") == 0 &&
        json_is_string(json_object_get(args, "url"))) {
        what = job_what(rec);
        printf("  %-10s%s\n", "request", what);
        free(what);
        print_headers("request headers", json_object_get(args, "headers"));
        print_block("request body", json_object_get(args, "body"), false);
        return;
    }
    print_json_block("args", args);
}

static void
print_result(const json_t *rec)
{
    const json_t *res = json_object_get(rec, "result");
    const char *kind = str_of(rec, "kind");
    bool cut = json_is_true(json_object_get(res, "truncated"));

    if (res == NULL || json_is_null(res))
        return;
    if (strcmp(kind, "exec") == 0 && json_is_object(res)) {
        if (json_integer_value(json_object_get(res, "signal")) > 0)
            printf("  %-10skilled by signal %lld\n", "exit",
                   (long long)int_of(res, "signal"));
        else if (json_object_get(res, "exit_code") != NULL)
            printf("  %-10s%lld\n", "exit code",
                   (long long)int_of(res, "exit_code"));
        if (json_is_number(json_object_get(res, "duration")))
            printf("  %-10s%.3fs\n", "ran for",
                   json_number_value(json_object_get(res, "duration")));
        print_block("stdout", json_object_get(res, "stdout"), cut);
        print_block("stderr", json_object_get(res, "stderr"), cut);
        return;
    }
    if (strcmp(kind, "http") == 0 && json_is_object(res)) {
        if (json_object_get(res, "status") != NULL)
            printf("  %-10s%lld\n", "status", (long long)int_of(res, "status"));
        if (json_is_number(json_object_get(res, "duration")))
            printf("  %-10s%.3fs\n", "took",
                   json_number_value(json_object_get(res, "duration")));
        print_headers("headers", json_object_get(res, "headers"));
        print_block("body", json_object_get(res, "body"), cut);
        return;
    }
    print_json_block("result", res);
}

void
print_record(const json_t *rec)
{
    const json_t *e = json_object_get(rec, "error");
    char n[64];

    printf("job %lld: %s\n", (long long)int_of(rec, "job"),
           str_of(rec, "state"));
    printf("  %-10s%s\n", "queue", str_of(rec, "queue"));
    printf("  %-10s%s\n", "kind", str_of(rec, "kind"));
    if (*str_of(rec, "name") != '\0')
        printf("  %-10s%s\n", "name", str_of(rec, "name"));
    if (*str_of(rec, "batch") != '\0')
        printf("  %-10s%s\n", "batch", str_of(rec, "batch"));
    print_args(rec);
    printf("  %-10s%lld\n", "priority", (long long)int_of(rec, "priority"));
    if (json_object_get(rec, "key") != NULL)
        printf("  %-10s%s\n", "key", str_of(rec, "key"));
    printf("  %-10s%lld", "attempts", (long long)int_of(rec, "attempts"));
    if (int_of(rec, "retried") > 0)
        printf(" (retried by hand: %s)",
               plural(int_of(rec, "retried"), "time", "times", n, sizeof n));
    putchar('\n');
    if (json_is_array(json_object_get(rec, "after"))) {
        char *s = json_dumps(json_object_get(rec, "after"), JSON_COMPACT);

        printf("  %-10s%s%s\n", "after", s != NULL ? s : "",
               strcmp(str_of(rec, "after_policy"), "finished") == 0
                   ? " (runs whatever they end)"
                   : "");
        free(s);
    }
    if (*str_of(rec, "worker") != '\0')
        printf("  %-10s%s\n", "worker", str_of(rec, "worker"));
    print_time("created", rec, "created");
    print_time("due", rec, "due");
    print_time("started", rec, "started");
    print_time("lease", rec, "lease_deadline");
    print_time("finished", rec, "finished");
    if (e != NULL && !json_is_null(e))
        printf("  %-10s%s: %s\n", "error", str_of(e, "code"),
               str_of(e, "message"));
    print_result(rec);
}

/* ---- progress ---- */

void
progress_init(struct progress *p)
{
    p->t0 = p->t_last = now_s();
    p->done_last = 0;
    p->rate = -1;
}

void
progress_draw(struct progress *p, const char *what, double done, double total,
              const char *note)
{
    static const char bar[] = "==============================";
    int width = (int)sizeof bar - 1, filled;
    double t = now_s(), dt = t - p->t_last, frac;
    char eta[48] = "", age[32];

    /* The rate: an exponentially weighted average with a time constant of
     * RATE_WINDOW_S, so a stall (back-pressure) shows in a few seconds and
     * the ETA follows what the server does now, not what it did. */
    if (dt >= RATE_SAMPLE_S) {
        double inst = (done - p->done_last) / dt;

        if (p->rate < 0)
            p->rate = inst;
        else
            p->rate += (1 - exp(-dt / RATE_WINDOW_S)) * (inst - p->rate);
        p->t_last = t;
        p->done_last = done;
    }
    frac = total > 0 ? done / total : 0;
    if (frac > 1)
        frac = 1;
    filled = (int)(frac * width);
    if (p->rate > 0.01 && total > done)
        snprintf(eta, sizeof eta, ", ETA %s",
                 fmt_age(ceil((total - done) / p->rate), age, sizeof age));
    fprintf(stderr, "\r[%.*s%*s] %3.0f%% %.0f/%.0f %s, %.0f/s%s%s%s\033[K",
            filled, bar, width - filled, "", frac * 100, done, total, what,
            p->rate > 0 ? p->rate : 0, eta, note != NULL ? ", " : "",
            note != NULL ? note : "");
    fflush(stderr);
}

void
progress_end(void)
{
    fputs("\r\033[K", stderr);
    fflush(stderr);
}
