/* SPDX-License-Identifier: MIT */
/*
 * lib/job.h: a job and its record (spec section 2). The struct is visible to
 * lib/ modules because the broker, the handlers and the journal read it on
 * the hot path; daemon/ and the black-box tests never include this file.
 * A queued job is one block: the header, then its args as the raw compact
 * JSON text they arrived as, from the slabs of lib/recarena.h (no
 * allocator header or rounding past 8 bytes) when it fits one. Everything a job
 * needs only once it runs, or only when asked for (key, own timeout), hangs off
 * ext.
 */
#ifndef AQ_JOB_H
#define AQ_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "queue.h"

/* In the order of spec section 9 (delayed, waiting, pending, running, then
 * the finished ones): aq_job_is_finished and the per-state indexes rely on
 * it. The journal writes its own numbers (lib/store_journal.c), so this
 * order may change without touching the disk format. */
enum aq_job_state {
    AQ_JOB_DELAYED,
    AQ_JOB_WAITING, /* for its dependencies (put's after) */
    AQ_JOB_PENDING,
    AQ_JOB_RUNNING,
    AQ_JOB_DONE,
    AQ_JOB_FAILED,
    AQ_JOB_CANCELLED,
};

enum aq_kind {
    AQ_KIND_EXEC,
    AQ_KIND_HTTP,
    AQ_KIND_SLEEP,
    AQ_KIND_ECHO,
    AQ_KIND_REMOTE, /* run by remote workers (get / task_done) */
};
/* The kinds' names in enum order, then NULL: a put's and a queue's "kind". */
extern const char *const aq_kind_names[];

struct aq_task;

/* How a job that waits on others (put's after) goes on once they all
 * finished: "done" runs it only if all of them are done (else it is
 * cancelled, dependency_failed), "finished" runs it anyway. */
enum aq_after_policy { AQ_AFTER_DONE, AQ_AFTER_FINISHED };
extern const char *const aq_after_policy_names[]; /* then NULL */

#define AQ_AFTER_MAX 1000 /* ids in one put's after */

/* A job's dependencies (put's after) and dependents: made for a job put
 * with after, and for a job another one waits on. */
struct aq_job_deps {
    uint64_t *dependents; /* owned: jobs put to wait on this one while it
                             was unfinished; handed over when it finishes */
    uint32_t ndependents, cap;
    uint32_t nwait;  /* waiting: dependencies not finished yet */
    uint64_t failed; /* the first dependency that failed or was cancelled */
    uint8_t failed_state; /* its state */
    uint8_t policy;       /* enum aq_after_policy */
    uint32_t nafter;
    uint64_t after[]; /* the ids it waits on, as put (once each) */
};

/* New deps with a copy of the n ids at after, duplicates dropped. */
struct aq_job_deps *aq_job_deps_new(const uint64_t *after, size_t n,
                                    enum aq_after_policy policy);

struct aq_job_ext {
    int64_t started_us;       /* wall clock of the last start; 0 = never */
    int64_t finished_us;      /* wall clock; 0 = unfinished */
    int64_t timeout_us;       /* the job's own; -1 = the queue's */
    int32_t retries;          /* the job's own; -1 = the queue's */
    uint32_t retried;         /* times retried by hand (the retry method) */
    char *key;                /* idempotency key, owned; NULL = none */
    char *name;               /* owned; NULL = none */
    char *batch;              /* owned; NULL = none */
    char *result;             /* compact JSON text, owned; NULL = none */
    char *err_code;           /* owned; NULL = no error */
    char *err_message;        /* owned */
    char *err_traceback;      /* owned; NULL = none (a remote worker's) */
    void *lease;              /* the broker's lease while a worker holds it */
    uint64_t holder;          /* the worker that held it last (its number),
                                 while leased or once a cancel ended that */
    struct aq_task *future;   /* settled with the record at the end; owned
                                 reference; NULL until someone waits */
    int64_t due_us;           /* wall clock it is ready: journal replay, and
                                 a waiting job's (0: at once) */
    struct aq_job_deps *deps; /* owned; NULL = none */
};

struct aq_job {
    struct aq_queue_item qi; /* queued: the queue's; finished: links of the
                                broker's list of finished records */
    uint64_t id;
    void *queue;             /* the broker's queue it belongs to (borrowed) */
    int64_t created_us;      /* wall clock */
    struct aq_job_ext *ext;  /* owned; NULL until needed */
    uint32_t args_len;       /* 0: a record whose args were not kept (a journal
                                of format 2 or older recorded it) */
    uint32_t jseg;           /* journal segment of its latest whole record (its
                                home, held); 0 = none */
    uint16_t attempts;       /* attempts that ended (spec section 7) */
    uint8_t kind : 4;        /* enum aq_kind */
    uint8_t state : 4;       /* enum aq_job_state */
    uint8_t is_packed : 1;   /* a finished record in a record arena, ext and
                                strings in the same block (aq_job_pack) */
    uint8_t in_slab : 1;     /* the header and args are a slab block (lib/
                                recarena.h), else one malloc */
    uint8_t batch_flags : 2; /* AQ_JOB_BATCH_*: 0 for a job with no batch */
    char args[];             /* args_len bytes of JSON, then a NUL */
};

/* aq_job.batch_flags: ext->batch is set (the broker counts the job in its
 * batch from its first state on), and it is counted now. */
#define AQ_JOB_BATCH_HAS 1u
#define AQ_JOB_BATCH_COUNTED 2u

/* A new job (the caller's; free with aq_job_free) with a copy of the
 * args_len bytes of JSON text at args. */
struct aq_job *aq_job_new(uint64_t id, enum aq_kind kind, const char *args,
                          size_t args_len);
void aq_job_free(struct aq_job *j); /* NULL is fine; frees ext, unrefs future */

struct aq_recarena;
/* A finished job moved into one block of a (its header, args, ext and
 * strings): j is freed and the copy returned, taking over j's future
 * reference. j itself if it does not fit a chunk. Whoever filed j (the id
 * map) must file the copy. */
struct aq_job *aq_job_pack(struct aq_job *j, struct aq_recarena *a);
/* The reverse, for a record that runs again (retry): a packed j moved back
 * into the heap (its block released), the copy returned; j itself if it
 * is not packed. Whoever filed j must file the copy. */
struct aq_job *aq_job_unpack(struct aq_job *j);
/* The bytes j occupies (its block, or its heap allocations with malloc's
 * overhead), for results.max_bytes. */
size_t aq_job_bytes(const struct aq_job *j);
struct aq_job_ext *aq_job_ext(struct aq_job *j); /* creates ext if needed */

bool aq_job_is_finished(const struct aq_job *j);
bool aq_job_state_is_finished(enum aq_job_state st); /* done, failed... */
const char *aq_job_state_name(enum aq_job_state st);
const char *aq_kind_name(enum aq_kind kind);
int aq_kind_parse(const char *name, enum aq_kind *out); /* 0, or -1 */

/* Records the error of the last attempt (copies both strings; clears the
 * traceback); NULL code clears it. */
void aq_job_set_error(struct aq_job *j, const char *code, const char *message);

/* The job record of spec section 2 as a new JSON object (the caller's),
 * with the queue's name given by the caller: args as put (raw JSON text),
 * due (wall clock) while delayed in its queue, retried when > 0, name and
 * batch when set, after and after_policy for a job put with after. */
json_t *aq_job_record(const struct aq_job *j, const char *queue_name);

#endif
