/* SPDX-License-Identifier: MIT */
/*
 * lib/log.c: level-filtered lines on stderr. Each line is formatted whole and
 * written with one write(2), so lines from one process never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

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

bool
aq_log_enabled(enum aq_log_level level)
{
    return level <= threshold;
}

int
aq_log_parse_level(const char *name, enum aq_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum aq_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *
aq_log_level_name(enum aq_log_level level)
{
    if ((unsigned)level >= sizeof level_names / sizeof level_names[0])
        return "unknown";
    return level_names[level];
}

void
aq_log(enum aq_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if (!aq_log_enabled(level))
        return;
    n = snprintf(line, sizeof line, "%s: ", aq_log_level_name(level));
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
