/* SPDX-License-Identifier: MIT */
/*
 * lib/store-internal.h: what the stores share (lib/store_journal.c,
 * lib/store_pg.c): a job's whole record (struct aq_jrec of lib/journal.h,
 * which a database row mirrors column for column) built from the job, and
 * a job filled back from one, trusting no value a put could not have made.
 * Nothing outside the stores includes it.
 */
#ifndef AQ_STORE_INTERNAL_H
#define AQ_STORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "journal.h"
#include "store.h"

/* A job's state as records write it: the numbers of journal formats 1 to
 * 3, from before waiting existed, and waiting after them. enum
 * aq_job_state may be reordered; these never change. */
enum store_state {
    STORE_DELAYED,
    STORE_PENDING,
    STORE_RUNNING,
    STORE_DONE,
    STORE_FAILED,
    STORE_CANCELLED,
    STORE_WAITING, /* journal format 4 */
    STORE_NSTATES,
};
extern const uint8_t store_state_of[];   /* by enum aq_job_state */
extern const uint8_t store_state_from[]; /* by enum store_state */

/* The wall-clock time a delayed job becomes ready; 0 when it is ready. */
int64_t store_job_due_wall_us(const struct aq_job *j);

/* Fills r with the whole record of j (PUT while unfinished, END once
 * finished) in queue; r borrows j's strings. *after is the caller's to
 * free (the encoded ids of put's after, or NULL). */
void store_job_whole(const struct aq_job *j, const char *queue,
                     struct aq_jrec *r, unsigned char **after);

/* Clamps what a record holds into what the daemon accepts (times,
 * durations, retries, a requeue's state). Returns whether anything
 * changed. */
bool store_jrec_clamp(struct aq_jrec *r);
/* Whether a whole record's state fits its type (PUT unfinished, END
 * finished). */
bool store_jrec_whole_fits(const struct aq_jrec *r);

/* Fills j (restored into b) from the whole record r, clamped and checked
 * first; j's idempotency key is filed on b. */
void store_job_fill(struct aq_broker *b, struct aq_job *j,
                    const struct aq_jrec *r);

/* *dst becomes a NUL-terminated copy of s (NULL when absent). */
void store_ext_str(char **dst, struct aq_jstr s);

#endif
