/* SPDX-License-Identifier: MIT */
/*
 * lib/journal.h: the durable log of job events (spec sections 4 and 6).
 * A journal is a directory of segment files numbered without gaps, each a
 * sequence of records: u32 length, u32 CRC-32C (over length and body),
 * then the body. A segment opens with a SEGMENT record naming the oldest
 * segment of the journal and the length its predecessor was sealed at, so
 * that a missing or shortened segment is damage, not silence. Records are
 * appended to a buffer and written once per loop iteration with one
 * write(2); the fsync policy decides when they count as durable, and
 * barriers (put acknowledgements) wait for that. Segments are deleted
 * oldest first, once no live job has its latest whole record in them;
 * jobs that keep old segments alive are re-appended (rehomed). A write or
 * sync that fails never crashes: the journal refuses new durability (see
 * aq_journal_error) and recovers by itself.
 */
#ifndef AQ_JOURNAL_H
#define AQ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "barrier.h"
#include "config.h"

struct event_base;
struct aq_error;
struct aq_journal;

enum aq_jrec_type {
    AQ_JREC_SEGMENT = 1, /* opens a segment: id = the last job id so far */
    AQ_JREC_PUT,         /* an unfinished job, whole (args included) */
    AQ_JREC_START,       /* an attempt started: id, started_us */
    AQ_JREC_REQUEUE,     /* back to waiting: attempts, due_us, last error */
    AQ_JREC_END,         /* a finished job, whole (args from format 3) */
    AQ_JREC_TRIM,        /* segments before first are deleted (format 2) */
    AQ_JREC_DELETE,      /* a finished record deleted by hand (format 3) */
    AQ_JREC_SCHED,       /* a schedule fired (format 4): name, due_us = the
                            fire time (0 = forgotten), id = its job */
};

struct aq_jstr {
    const char *p; /* NULL = absent; not NUL-terminated */
    uint32_t len;
};

/* A decoded record; its strings are borrowed for the callback's duration
 * (replay) or the call's (append). Fields a type does not carry are 0.
 * SEGMENT and TRIM records are the journal's own: replay does not pass
 * them on, and the journal sets their fields itself on append. */
struct aq_jrec {
    enum aq_jrec_type type;
    uint64_t id;
    uint8_t kind;        /* PUT, END: enum aq_kind */
    uint8_t state;       /* PUT, REQUEUE, END: enum aq_job_state */
    uint16_t attempts;   /* PUT, REQUEUE, END */
    int32_t priority;    /* PUT, END */
    int32_t retries;     /* PUT: -1 = the queue's */
    uint32_t retried;    /* PUT, END: times retried by hand (format 3) */
    int64_t timeout_us;  /* PUT: -1 = the queue's */
    int64_t created_us;  /* PUT, END: wall clock */
    int64_t started_us;  /* PUT, START, END: wall clock; 0 = never */
    int64_t finished_us; /* END */
    int64_t due_us;      /* PUT, REQUEUE: wall clock it is ready; 0 = now;
                            SCHED: the fire time */
    uint32_t version;    /* SEGMENT: the format version */
    uint32_t seq;        /* SEGMENT: its own number (format 2) */
    uint32_t first;      /* SEGMENT, TRIM: the oldest segment of the
                            journal; 0 = not known (format 1 ones remain) */
    uint64_t prev_bytes; /* SEGMENT: the length of segment seq - 1 when it
                            was sealed; 0 = none */
    struct aq_jstr queue, key, args, result, err_code, err_message;
    struct aq_jstr name, batch; /* PUT, END (format 3); SCHED: name */
    struct aq_jstr after;       /* PUT, END (format 4): the job ids of put's
                                   after, 8 bytes each, little-endian; absent =
                                   none */
    uint8_t after_policy;       /* with after: enum aq_after_policy */
};

/* Asks the owner to re-append (aq_journal_append, moving its hold) every
 * live job homed in a segment for which aq_journal_is_evacuated is true,
 * so that those segments can be deleted. The same callback rebuilds the
 * whole journal from memory after a failed fdatasync. */
typedef void aq_journal_rehome_cb(struct aq_journal *j, void *arg);

struct aq_journal_opts {
    const char *path; /* the directory; created if missing */
    enum aq_fsync fsync;
    size_t segment_bytes; /* a segment is closed once past this size */
    aq_journal_rehome_cb *rehome;
    void *arg;
};

/* Opens the journal directory (creating it), locks it (one process per
 * journal: a second open fails naming the directory) and lists its
 * segments. Returns the journal (free with aq_journal_close) or NULL with
 * err. Next: aq_journal_replay, then aq_journal_start. */
struct aq_journal *aq_journal_open(struct event_base *base,
                                   const struct aq_journal_opts *opts,
                                   struct aq_error *err);

/* Calls cb for each record in order; seg is the segment holding it, for
 * aq_journal_hold (which cb may call). A torn tail (a partial or corrupt
 * last record of the last segment, nothing valid after it) is cut off
 * with a warning naming the offset and size. Anything else that is wrong
 * fails with err and *is_damaged: a bad record followed by valid ones, a
 * segment missing between the oldest and the newest, a segment shorter or
 * longer than its successor says it was sealed at. With repair, the
 * journal is instead cut at the first such damage and what follows is
 * dropped (logged). Segments a deletion left behind at a crash are
 * skipped (and deleted once replay succeeded). cb returns 0, or -1 to fail
 * with the err it fills. *last_id gets the highest job id ever recorded.
 * Journals of format 1 (no gap checks) replay too. */
typedef int aq_journal_replay_cb(const struct aq_jrec *r, uint32_t seg,
                                 void *arg, struct aq_error *err);
int aq_journal_replay(struct aq_journal *j, bool repair,
                      aq_journal_replay_cb *cb, void *arg, uint64_t *last_id,
                      bool *is_damaged, struct aq_error *err);

/* Starts a new segment to append to, deletes the segments nobody holds
 * (from the loop), and starts the sync thread. 0, or -1 with err. A new
 * segment that cannot be created for want of space, inodes or descriptors
 * is not an error: the journal starts failing (aq_journal_error) and
 * tries again every second. */
int aq_journal_start(struct aq_journal *j, uint64_t last_id,
                     struct aq_error *err);

/* Writes what is buffered, syncs it, stops the sync thread, closes. A
 * journal whose sync failed is rebuilt first (see aq_journal_error). */
void aq_journal_close(struct aq_journal *j); /* NULL is fine */

/* Appends r (encoded now; r's strings are not kept). Returns the segment
 * the record goes to: a job's home when r is its PUT or END. */
uint32_t aq_journal_append(struct aq_journal *j, const struct aq_jrec *r);

/* Inside the rehome callback: whether seg's jobs are to be re-appended. */
bool aq_journal_is_evacuated(struct aq_journal *j, uint32_t seg);

/* A live job's latest whole record is in seg: the segment must stay. */
void aq_journal_hold(struct aq_journal *j, uint32_t seg);
void aq_journal_release(struct aq_journal *j, uint32_t seg);

/* NULL while what is appended can become durable. Otherwise why not (a
 * -32603 error, "journal: fdatasync: Input/output error"): a write failed
 * for want of space (the records wait in memory and are written again
 * every second), or a sync failed (what was written since the last good
 * sync may be lost whatever the page cache says: every live job is
 * rewritten from memory into a fresh segment, tried every second, and the
 * older segments are deleted). Barriers fail meanwhile; callers should
 * refuse new puts. */
const struct aq_error *aq_journal_error(const struct aq_journal *j);

/* A wait for durability (lib/barrier.h): cb(arg, NULL) runs from the loop
 * once the barrier's records are durable; cb(arg, err) if the journal
 * failed first (see aq_journal_error). The node is the caller's memory
 * with aq_journal_barrier_add, the journal's with aq_journal_barrier.
 *
 * Waits until every record appended so far is durable by the fsync
 * policy (written; and synced for batch/always), using the caller's node
 * b (valid until cb or cancel). Returns 1 (cb runs later), 0 when that is
 * already so, or -1 with err when the journal is failing; cb is never
 * called for 0 and -1. Cancel only a pending barrier. */
int aq_journal_barrier_add(struct aq_journal *j, struct aq_barrier *b,
                           aq_barrier_cb *cb, void *arg, struct aq_error *err);
/* The same with a node of the journal's: returns it, or NULL when all is
 * durable already or the journal is failing (cb is never called). */
struct aq_barrier *aq_journal_barrier(struct aq_journal *j, aq_barrier_cb *cb,
                                      void *arg);
void aq_journal_barrier_cancel(struct aq_journal *j, struct aq_barrier *b);

struct aq_hist;
/* A copy of the fdatasync durations so far (the sync thread adds to it). */
void aq_journal_fsync_hist(struct aq_journal *j, struct aq_hist *out);

/* For stats and tests: bytes in all segments; number of segments. */
uint64_t aq_journal_bytes(const struct aq_journal *j);
size_t aq_journal_segments(const struct aq_journal *j);

#endif
