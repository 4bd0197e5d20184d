/* SPDX-License-Identifier: MIT */
/*
 * lib/log.c: level-filtered lines on stderr. Each line is formatted whole and
 * written with one write(2), so lines from one process never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

const char *const aq_log_level_names[] = {
    [AQ_LOG_ERROR] = "error",
    [AQ_LOG_WARN] = "warn",
    [AQ_LOG_INFO] = "info",
    [AQ_LOG_DEBUG] = "debug",
    NULL,
};

/* The one process-wide setting: a log threshold, as tmux's log_level. */
static enum aq_log_level threshold = AQ_LOG_INFO;

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
aq_log(enum aq_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if (level > threshold)
        return;
    n = snprintf(line, sizeof line, "%s: ", aq_log_level_names[level]);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    /* One event, one line: newlines inside a message become spaces. */
    for (int i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, (size_t)n);
}
