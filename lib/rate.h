/* SPDX-License-Identifier: MIT */
/*
 * lib/rate.h: a token bucket (spec section 11, "rate"): per_second tokens
 * a second on average, at most burst at once. Pure: no clock of its own,
 * no timer. The caller passes a monotonic time in microseconds to every
 * call and the bucket refills lazily from it, so an idle bucket costs
 * nothing and never goes past burst.
 *
 * A token is either taken (spent at once), or held: set aside for a taker
 * that waits for work (a consumer idle on its queue), then spent when the
 * work comes or given back when it does not. Held tokens count against
 * burst, so that holders plus the bucket never start more than burst at
 * once.
 */
#ifndef AQ_RATE_H
#define AQ_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct aq_rate;

/* A full bucket (burst tokens) at now_us. per_second > 0, burst >= 1
 * (smaller values are raised to the least allowed). */
struct aq_rate *aq_rate_new(double per_second, int burst, int64_t now_us);
void aq_rate_free(struct aq_rate *r); /* NULL is fine */

/* New limits from now_us on: the tokens there are stay (refilled at the
 * old rate up to now_us), but never more than the new burst allows. */
void aq_rate_configure(struct aq_rate *r, double per_second, int burst,
                       int64_t now_us);

/* Takes up to n whole tokens at now_us; returns how many (0..n). */
unsigned aq_rate_take(struct aq_rate *r, unsigned n, int64_t now_us);
/* Gives back n tokens taken at now_us and not spent after all. */
void aq_rate_give(struct aq_rate *r, unsigned n, int64_t now_us);

/* Sets one token aside (true), or false when none is there. */
bool aq_rate_hold(struct aq_rate *r, int64_t now_us);
/* A held token is spent (its work started) or goes back to the bucket. */
void aq_rate_spend_held(struct aq_rate *r, int64_t now_us);
void aq_rate_unhold(struct aq_rate *r, int64_t now_us);

/* Microseconds from now_us until a whole token is there: 0 if one is now;
 * -1 if none will come before a held token is spent or given back (the
 * holders already hold the whole burst). */
int64_t aq_rate_wait_us(struct aq_rate *r, int64_t now_us);

/* The tokens in the bucket at now_us (not counting held ones), and the
 * held ones. */
double aq_rate_tokens(struct aq_rate *r, int64_t now_us);
unsigned aq_rate_held(const struct aq_rate *r);

#endif
