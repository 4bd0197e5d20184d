/* SPDX-License-Identifier: MIT */
/*
 * lib/journal.h: the durable log of job events (spec sections 4 and 6).
 * A journal is a directory of segment files, each a sequence of records:
 * u32 length, u32 CRC-32C (over length and body), then the body. Records
 * are appended to a buffer and written once per loop iteration with one
 * write(2); the fsync policy decides when they count as durable, and
 * barriers (put acknowledgements) wait for that. A segment is deleted once
 * no live job has its latest whole record in it; jobs that keep an old
 * segment alive are re-appended (rehomed) so that it can go.
 */
#ifndef AQ_JOURNAL_H
#define AQ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct aq_error;
struct aq_journal;

enum aq_jrec_type {
    AQ_JREC_SEGMENT = 1, /* opens a segment: id = the last job id so far */
    AQ_JREC_PUT,         /* an unfinished job, whole (args included) */
    AQ_JREC_START,       /* an attempt started: id, started_us */
    AQ_JREC_REQUEUE,     /* back to waiting: attempts, due_us, last error */
    AQ_JREC_END,         /* a finished job, whole (without its args) */
};

struct aq_jstr {
    const char *p; /* NULL = absent; not NUL-terminated */
    uint32_t len;
};

/* A decoded record; its strings are borrowed for the callback's duration
 * (replay) or the call's (append). Fields a type does not carry are 0. */
struct aq_jrec {
    enum aq_jrec_type type;
    uint64_t id;
    uint8_t kind;        /* PUT, END: enum aq_kind */
    uint8_t state;       /* PUT, REQUEUE, END: enum aq_job_state */
    uint16_t attempts;   /* PUT, REQUEUE, END */
    int32_t priority;    /* PUT, END */
    int32_t retries;     /* PUT: -1 = the queue's */
    int64_t timeout_us;  /* PUT: -1 = the queue's */
    int64_t created_us;  /* PUT, END: wall clock */
    int64_t started_us;  /* PUT, START, END: wall clock; 0 = never */
    int64_t finished_us; /* END */
    int64_t due_us;      /* PUT, REQUEUE: wall clock it is ready; 0 = now */
    uint32_t version;    /* SEGMENT: the format version (set on append) */
    struct aq_jstr queue, key, args, result, err_code, err_message;
};

/* Asks the owner to re-append (aq_journal_append, moving its hold) every
 * live job homed in a segment for which aq_journal_is_evacuated is true,
 * so that those segments can be deleted. */
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
 * last record, nothing valid after it) is cut off with a warning naming
 * the offset and size. Damage followed by valid records fails with err
 * and *is_damaged, unless repair: then the journal is cut at the damage
 * and what follows is dropped (logged). cb returns 0, or -1 to fail with
 * the err it fills. *last_id gets the highest job id ever recorded. */
typedef int aq_journal_replay_cb(const struct aq_jrec *r, uint32_t seg,
                                 void *arg, struct aq_error *err);
int aq_journal_replay(struct aq_journal *j, bool repair,
                      aq_journal_replay_cb *cb, void *arg, uint64_t *last_id,
                      bool *is_damaged, struct aq_error *err);

/* Starts a new segment to append to, deletes the segments nobody holds,
 * and starts the sync thread. 0, or -1 with err. */
int aq_journal_start(struct aq_journal *j, uint64_t last_id,
                     struct aq_error *err);

/* Writes what is buffered, syncs it, stops the sync thread, closes. */
void aq_journal_close(struct aq_journal *j); /* NULL is fine */

/* Appends r (encoded now; r's strings are not kept). Returns the segment
 * the record goes to: a job's home when r is its PUT or END. */
uint32_t aq_journal_append(struct aq_journal *j, const struct aq_jrec *r);

/* Inside the rehome callback: whether seg's jobs are to be re-appended. */
bool aq_journal_is_evacuated(struct aq_journal *j, uint32_t seg);

/* A live job's latest whole record is in seg: the segment must stay. */
void aq_journal_hold(struct aq_journal *j, uint32_t seg);
void aq_journal_release(struct aq_journal *j, uint32_t seg);

/* A wait for durability; the caller's memory with aq_journal_barrier_add
 * (fields private), the journal's with aq_journal_barrier. */
struct aq_journal_barrier {
    struct aq_journal_barrier *prev, *next;
    uint64_t lsn;
    void (*cb)(void *arg);
    void *arg;
    bool is_ours; /* allocated by aq_journal_barrier */
};

/* cb(arg) runs from the loop once every record appended so far is
 * durable by the fsync policy (written; and synced for batch/always).
 * _add uses the caller's node b (valid until cb or cancel) and returns
 * false when that is already so (then cb is never called); the other
 * allocates one, returning it or NULL. Cancel only a pending barrier. */
bool aq_journal_barrier_add(struct aq_journal *j, struct aq_journal_barrier *b,
                            void (*cb)(void *arg), void *arg);
struct aq_journal_barrier *aq_journal_barrier(struct aq_journal *j,
                                              void (*cb)(void *arg), void *arg);
void aq_journal_barrier_cancel(struct aq_journal *j,
                               struct aq_journal_barrier *b);

struct aq_hist;
/* A copy of the fdatasync durations so far (the sync thread adds to it). */
void aq_journal_fsync_hist(struct aq_journal *j, struct aq_hist *out);

/* For stats and tests: bytes in all segments; number of segments. */
uint64_t aq_journal_bytes(const struct aq_journal *j);
size_t aq_journal_segments(const struct aq_journal *j);

#endif
