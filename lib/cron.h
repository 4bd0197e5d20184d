/* SPDX-License-Identifier: MIT */
/*
 * lib/cron.h: schedules' times (spec section 11). A cron expression (five
 * fields, @hourly..., @every DURATION) and a time zone of the tz database
 * (read from its TZif file); aq_cron_next answers the first fire time
 * strictly after a given one. Pure: no loop, no global state. Times are
 * epoch seconds (UTC); cron matches the zone's local wall time.
 */
#ifndef AQ_CRON_H
#define AQ_CRON_H

#include <stdbool.h>
#include <stdint.h>

struct aq_error;
struct aq_cron;
struct aq_tz;

/* Parses text. Returns a new cron (free with aq_cron_free) or NULL with
 * err (-32602) saying which field is wrong and why:
 * cron "*\/0 * * * *": field 1 (minute): step 0. */
struct aq_cron *aq_cron_parse(const char *text, struct aq_error *err);
void aq_cron_free(struct aq_cron *c); /* NULL is fine */
/* For @every: the period in seconds; 0 for a calendar expression. */
int64_t aq_cron_every_s(const struct aq_cron *c);

/* Loads zone name ("UTC" built in; others from $TZDIR or
 * /usr/share/zoneinfo, TZif version 2 or later, with the POSIX TZ string
 * of its footer for times past its table). Returns a new zone (free with
 * aq_tz_free) or NULL with err (-32602): timezone "X": unknown zone. */
struct aq_tz *aq_tz_load(const char *name, struct aq_error *err);
void aq_tz_free(struct aq_tz *z); /* NULL is fine */
const char *aq_tz_name(const struct aq_tz *z);
/* The offset from UTC (seconds east) of zone z at epoch time t. */
int32_t aq_tz_offset(const struct aq_tz *z, int64_t t);

/* The first fire time strictly after t (epoch seconds), in zone z; -1
 * when there is none within 50 years (a day that never comes: 30 Feb).
 * A local time that does not exist (the spring-forward gap) is skipped;
 * one that occurs twice (fall back) fires once, at its first occurrence.
 * @every P fires at the multiples of P seconds since the epoch (UTC, the
 * zone plays no part). */
int64_t aq_cron_next(const struct aq_cron *c, const struct aq_tz *z, int64_t t);

#endif
