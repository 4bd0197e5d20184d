/* SPDX-License-Identifier: MIT */
/*
 * lib/log.h: one line per event to stderr, filtered by level. journald adds
 * the timestamp; a line reads "LEVEL: what: object: detail", and names the
 * job, queue or connection it concerns.
 */
#ifndef AQ_LOG_H
#define AQ_LOG_H

enum aq_log_level {
    AQ_LOG_ERROR,
    AQ_LOG_WARN,
    AQ_LOG_INFO,
    AQ_LOG_DEBUG,
};

/* The levels' names in enum order, then NULL: what config's log.level
 * takes, and what a line starts with. */
extern const char *const aq_log_level_names[];

/* The process-wide threshold (default info): lines above it are dropped. */
void aq_log_set_level(enum aq_log_level level);
enum aq_log_level aq_log_get_level(void);

void aq_log(enum aq_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
