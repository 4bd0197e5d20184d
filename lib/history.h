/* SPDX-License-Identifier: MIT */
/*
 * lib/history.h: what the dashboard's chart draws (spec section 13): per
 * queue, how many jobs finished done and failed in each of the last
 * AQ_HISTORY_SECONDS seconds. A ring of compact counters per queue (about
 * 7 KiB), filled by one timer for all queues once a second from the
 * broker's totals: O(queues) a tick, nothing on the jobs' path.
 */
#ifndef AQ_HISTORY_H
#define AQ_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define AQ_HISTORY_SECONDS 900

struct aq_broker;
struct event_base;
struct aq_history;

/* An empty history whose last complete second is end (epoch s). */
struct aq_history *aq_history_new(int64_t end);
void aq_history_free(struct aq_history *h); /* NULL is fine */

/* The second sec (epoch s) is complete: the rings move on to it, seconds
 * skipped on the way count 0. A sec not after the last one changes
 * nothing (what is noted goes on counting into the last second). */
void aq_history_advance(struct aq_history *h, int64_t sec);
/* queue's totals since start: what they grew by since the last note goes
 * into the last complete second. The first note of a queue only takes
 * its totals as the base. */
void aq_history_note(struct aq_history *h, const char *queue, uint64_t done,
                     uint64_t failed);
/* The last complete second (epoch s). */
int64_t aq_history_end(const struct aq_history *h);
/* The last n (1..AQ_HISTORY_SECONDS) samples of queue, oldest first, into
 * done[n] and failed[n]; zeros for a queue never noted. */
void aq_history_samples(const struct aq_history *h, const char *queue, size_t n,
                        uint32_t *done, uint32_t *failed);

/* Samples broker (borrowed; it must outlive the history) from base's loop
 * just after each second of the wall clock. */
void aq_history_start(struct aq_history *h, struct event_base *base,
                      struct aq_broker *broker);

#endif
