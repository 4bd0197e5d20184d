/* SPDX-License-Identifier: MIT */
/*
 * lib/log.c: level-filtered lines on stderr. Each line is formatted whole and
 * written with one write(2), so lines from one process never interleave.
 * A message is cut at MSG_MAX bytes; a json line always has room for the
 * whole escaped message and its fields, so it is always a valid object.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "jscan.h"

#define MSG_MAX 1024
/* The message escaped (at most 6 bytes per byte), the fields and the
 * rest of the object. */
#define LINE_MAX (6 * MSG_MAX + 1024)

const char *const aq_log_level_names[] = {
    [AQ_LOG_ERROR] = "error",
    [AQ_LOG_WARN] = "warn",
    [AQ_LOG_INFO] = "info",
    [AQ_LOG_DEBUG] = "debug",
    NULL,
};

const char *const aq_log_format_names[] = {
    [AQ_LOG_TEXT] = "text",
    [AQ_LOG_JSON] = "json",
    NULL,
};

/* syslog(3) priorities, which journald reads from a "<N>" prefix. */
static const char priorities[] = {
    [AQ_LOG_ERROR] = '3',
    [AQ_LOG_WARN] = '4',
    [AQ_LOG_INFO] = '6',
    [AQ_LOG_DEBUG] = '7',
};

/* The process-wide settings, as tmux's log_level: a threshold, a format,
 * and whether stderr goes to journald. */
static enum aq_log_level threshold = AQ_LOG_INFO;
static enum aq_log_format format = AQ_LOG_TEXT;
static bool is_journal;

void
aq_log_set_level(enum aq_log_level level)
{
    threshold = level;
}

enum aq_log_level
aq_log_get_level(void)
{
    return threshold;
}

void
aq_log_set_format(enum aq_log_format f)
{
    format = f;
}

bool
aq_log_detect_journal(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    is_journal = false;
    if (env == NULL || fstat(STDERR_FILENO, &st) != 0)
        return false;
    dev = strtoull(env, &end, 10);
    if (end == env || *end != ':')
        return false;
    ino = strtoull(end + 1, &end, 10);
    if (*end != '\0')
        return false;
    is_journal = dev == (unsigned long long)st.st_dev &&
                 ino == (unsigned long long)st.st_ino;
    return is_journal;
}

int
aq_log_timestamp(char buf[static 32], int64_t wall_us)
{
    time_t s = (time_t)(wall_us / 1000000);
    struct tm tm;
    long off;
    size_t n;

    localtime_r(&s, &tm);
    n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    off = tm.tm_gmtoff / 60;
    return (int)n + snprintf(buf + n, 32 - n, ".%03d%c%02ld:%02ld",
                             (int)(wall_us % 1000000 / 1000),
                             off < 0 ? '-' : '+', labs(off) / 60,
                             labs(off) % 60);
}

/* A line being built in a fixed buffer; what does not fit is dropped. */
struct line {
    char *p;
    size_t n, cap;
};

static void
put(struct line *l, const char *s, size_t n)
{
    if (n > l->cap - l->n)
        n = l->cap - l->n;
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

static void putf(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
putf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (l->n >= l->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(l->p + l->n, l->cap - l->n, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->n += (size_t)n < l->cap - l->n ? (size_t)n : l->cap - l->n - 1;
}

/* s as the contents of a JSON string: quotes, backslashes and control
 * characters escaped, bytes that are not UTF-8 as U+FFFD. */
static void
put_json_string(struct line *l, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);

    put(l, "\"", 1);
    for (size_t i = 0; i < len;) {
        size_t k;

        if (u[i] == '"' || u[i] == '\\') {
            put(l, "\\", 1);
            put(l, s + i++, 1);
        } else if (u[i] == '\n')
            put(l, "\\n", 2), i++;
        else if (u[i] == '\r')
            put(l, "\\r", 2), i++;
        else if (u[i] == '\t')
            put(l, "\\t", 2), i++;
        else if (u[i] < 0x20 || u[i] == 0x7f)
            putf(l, "\\u%04x", u[i++]);
        else if (u[i] < 0x80)
            put(l, s + i++, 1);
        else if ((k = aq_utf8_seq_len(u + i, len - i)) > 0) {
            put(l, s + i, k);
            i += k;
        } else {
            put(l, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    put(l, "\"", 1);
}

static void vlog(enum aq_log_level level, const struct aq_log_about *about,
                 const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
vlog(enum aq_log_level level, const struct aq_log_about *about, const char *fmt,
     va_list ap)
{
    char msg[MSG_MAX], buf[LINE_MAX], ts[32];
    struct line l = {buf, 0, sizeof buf - 1}; /* room for the '\n' */
    int n;

    if (level > threshold)
        return;
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        msg[0] = '\0';
    if (is_journal)
        putf(&l, "<%c>", priorities[level]);
    if (format == AQ_LOG_JSON || !is_journal)
        aq_log_timestamp(ts, aq_clock_wall_us());
    if (format == AQ_LOG_TEXT) {
        /* One event, one line: newlines inside a message become spaces. */
        for (char *c = msg; *c != '\0'; c++) {
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        }
        putf(&l, "%s%s%s: %s", is_journal ? "" : ts, is_journal ? "" : " ",
             aq_log_level_names[level], msg);
    } else {
        putf(&l, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
             aq_log_level_names[level]);
        put_json_string(&l, msg);
        if (about != NULL && about->job != 0)
            putf(&l, ",\"job\":%llu", (unsigned long long)about->job);
        if (about != NULL && about->queue != NULL) {
            put(&l, ",\"queue\":", 9);
            put_json_string(&l, about->queue);
        }
        if (about != NULL && about->conn != 0)
            putf(&l, ",\"conn\":%llu", (unsigned long long)about->conn);
        if (about != NULL && about->peer != NULL) {
            put(&l, ",\"peer\":", 8);
            put_json_string(&l, about->peer);
        }
        put(&l, "}", 1);
    }
    buf[l.n++] = '\n';
    (void)!write(STDERR_FILENO, buf, l.n);
}

void
aq_log(enum aq_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void
aq_log_at(enum aq_log_level level, const struct aq_log_about *about,
          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, about, fmt, ap);
    va_end(ap);
}

void
aq_log_job(enum aq_log_level level, uint64_t job, const char *queue,
           const char *fmt, ...)
{
    struct aq_log_about about = {.job = job, .queue = queue};
    va_list ap;

    va_start(ap, fmt);
    vlog(level, &about, fmt, ap);
    va_end(ap);
}

void
aq_log_queue(enum aq_log_level level, const char *queue, const char *fmt, ...)
{
    struct aq_log_about about = {.queue = queue};
    va_list ap;

    va_start(ap, fmt);
    vlog(level, &about, fmt, ap);
    va_end(ap);
}

void
aq_log_conn(enum aq_log_level level, uint64_t conn, const char *peer,
            const char *fmt, ...)
{
    struct aq_log_about about = {.conn = conn, .peer = peer};
    va_list ap;

    va_start(ap, fmt);
    vlog(level, &about, fmt, ap);
    va_end(ap);
}
