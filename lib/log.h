/* SPDX-License-Identifier: MIT */
/*
 * lib/log.h: one line per event to stderr, filtered by level. In text (the
 * default) a line reads "LEVEL: what: object: detail", after an RFC 3339
 * timestamp, or under journald after a "<N>" syslog priority and no
 * timestamp (journald adds its own). In json a line is one object: ts,
 * level, msg, and the job, queue or connection the event concerns.
 */
#ifndef AQ_LOG_H
#define AQ_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum aq_log_level {
    AQ_LOG_ERROR,
    AQ_LOG_WARN,
    AQ_LOG_INFO,
    AQ_LOG_DEBUG,
};

/* The levels' names in enum order, then NULL: what config's log.level
 * takes, and what a line starts with. */
extern const char *const aq_log_level_names[];

enum aq_log_format {
    AQ_LOG_TEXT, /* "LEVEL: message" */
    AQ_LOG_JSON, /* {"ts":...,"level":...,"msg":...,"job":...} */
};

/* The formats' names in enum order, then NULL: config's log.format. */
extern const char *const aq_log_format_names[];

/* The process-wide threshold (default info): lines above it are dropped. */
void aq_log_set_level(enum aq_log_level level);
enum aq_log_level aq_log_get_level(void);
void aq_log_set_format(enum aq_log_format format); /* default text */

/* Whether stderr is the stream $JOURNAL_STREAM names (its "DEVICE:INODE"
 * matches stderr's fstat), as systemd sets it for a service whose output
 * goes to the journal: then lines carry a "<N>" priority prefix
 * (sd-daemon(3)) and text lines no timestamp. Reads the environment and
 * stderr now; call it at start, and after stderr is redirected. */
bool aq_log_detect_journal(void);

/* What an event concerns, for json's fields: 0 or NULL = not named. */
struct aq_log_about {
    uint64_t job;
    const char *queue;
    uint64_t conn;
    const char *peer; /* the connection's peer address */
};

/* One line at level: fmt's message (newlines become spaces; cut at about
 * 1 KiB). Never fails, never blocks the loop for long: one write(2). */
void aq_log(enum aq_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, naming what it is about (NULL: nothing); the text line is the
 * message alone, as for aq_log, so the message names them too. */
void aq_log_at(enum aq_log_level level, const struct aq_log_about *about,
               const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void aq_log_job(enum aq_log_level level, uint64_t job, const char *queue,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void aq_log_queue(enum aq_log_level level, const char *queue, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));
void aq_log_conn(enum aq_log_level level, uint64_t conn, const char *peer,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An RFC 3339 local time with milliseconds and the UTC offset
 * ("2026-12-06T07:45:10.123+01:00") of wall_us (microseconds since the
 * epoch) into buf; returns its length (29). */
int aq_log_timestamp(char buf[static 32], int64_t wall_us);

#endif
