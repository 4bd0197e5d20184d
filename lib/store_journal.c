/* SPDX-License-Identifier: MIT */
/*
 * lib/store_journal.c: the local journal as a store (lib/store.h). Each job
 * event becomes a record (lib/journal.h): a put or a finish the job's whole
 * record, which makes that segment the job's home (held while the job or
 * its record lives, j->jseg); a start or a requeue a small one; a retry
 * by hand the whole record again, a delete a DELETE record. Replay
 * folds the records back into jobs, in the broker's id map, trusting no
 * value a put could not have made.
 *
 * A schedule's last fire is a SCHED record, live state like a live job:
 * its segment is held, and rehomed (re-appended whole into the active
 * segment) when old segments are evacuated or the journal is rewritten.
 * The store keeps the last one per schedule to do so.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "journal.h"
#include "log.h"
#include "store-internal.h"
#include "xmalloc.h"

/* A schedule's last fire, as its SCHED record says. */
struct sj_sched {
    char *name; /* owned */
    int64_t fire_us;
    uint64_t job;
    uint32_t seg; /* held */
};

struct store_journal {
    struct aq_store store;
    struct sj_sched *scheds; /* owned */
    size_t nscheds, scheds_cap;
    json_t *sched_at;           /* name -> index in scheds */
    struct aq_journal *journal; /* owned */
    struct aq_broker *broker;   /* borrowed, from restore on */
    char *path;                 /* owned, for messages */
    enum aq_fsync fsync;
    size_t nclamped; /* replayed records with values out of range */
};

static struct store_journal *
sj_of(struct aq_store *s)
{
    return (struct store_journal *)s;
}

static struct aq_jstr
jstr(const char *s)
{
    return (struct aq_jstr){s, s != NULL ? (uint32_t)strlen(s) : 0};
}

/* Appends the whole record of j (PUT while unfinished, END once finished)
 * and makes that segment its home. */
static void
job_home(struct store_journal *sj, struct aq_job *j, const char *queue)
{
    struct aq_jrec r;
    unsigned char *after;
    uint32_t seg;

    store_job_whole(j, queue, &r, &after);
    seg = aq_journal_append(sj->journal, &r);
    free(after);
    aq_journal_hold(sj->journal, seg);
    if (j->jseg != 0)
        aq_journal_release(sj->journal, j->jseg);
    j->jseg = seg;
}

/* ---- job events ---- */

static void
sj_put(struct aq_store *s, struct aq_job *j, const char *queue)
{
    job_home(sj_of(s), j, queue);
}

static void
sj_start(struct aq_store *s, struct aq_job *j)
{
    struct aq_jrec r = {
        .type = AQ_JREC_START, .id = j->id, .started_us = j->ext->started_us};

    aq_journal_append(sj_of(s)->journal, &r);
}

static void
sj_requeue(struct aq_store *s, struct aq_job *j)
{
    const struct aq_job_ext *x = j->ext;
    struct aq_jrec r = {.type = AQ_JREC_REQUEUE,
                        .id = j->id,
                        .state = store_state_of[j->state],
                        .attempts = j->attempts,
                        .due_us = store_job_due_wall_us(j),
                        .result = jstr(x->result),
                        .err_code = jstr(x->err_code),
                        .err_message = jstr(x->err_message)};

    aq_journal_append(sj_of(s)->journal, &r);
}

static void
sj_finish(struct aq_store *s, struct aq_job *j, const char *queue)
{
    job_home(sj_of(s), j, queue);
}

static void
sj_forget(struct aq_store *s, struct aq_job *j)
{
    if (j->jseg != 0)
        aq_journal_release(sj_of(s)->journal, j->jseg);
    j->jseg = 0;
}

static void
sj_retry(struct aq_store *s, struct aq_job *j, const char *queue)
{
    job_home(sj_of(s), j, queue);
}

/* The job's END stays in its segment until that segment goes: a DELETE
 * record, in a later segment (segments are deleted oldest first), says
 * at replay that it is gone. */
static void
sj_remove(struct aq_store *s, struct aq_job *j)
{
    struct aq_jrec r = {.type = AQ_JREC_DELETE, .id = j->id};

    aq_journal_append(sj_of(s)->journal, &r);
    sj_forget(s, j);
}

/* ---- schedules ---- */

/* Records sched's fire in seg (appended, or replayed from there). */
static void
sched_hold(struct store_journal *sj, const char *name, size_t len,
           int64_t fire_us, uint64_t job, uint32_t seg)
{
    json_t *at = json_object_getn(sj->sched_at, name, len);
    struct sj_sched *x;

    if (at == NULL) {
        if (fire_us == 0)
            return;
        if (sj->nscheds == sj->scheds_cap) {
            sj->scheds_cap = sj->scheds_cap != 0 ? sj->scheds_cap * 2 : 16;
            sj->scheds =
                xreallocarray(sj->scheds, sj->scheds_cap, sizeof *sj->scheds);
        }
        x = &sj->scheds[sj->nscheds];
        x->name = xmalloc(len + 1);
        memcpy(x->name, name, len);
        x->name[len] = '\0';
        x->seg = 0;
        json_object_setn_new(sj->sched_at, name, len,
                             json_integer((json_int_t)sj->nscheds++));
    } else
        x = &sj->scheds[json_integer_value(at)];
    if (x->seg != 0)
        aq_journal_release(sj->journal, x->seg);
    x->seg = 0;
    if (fire_us == 0) { /* forgotten: the last one takes its place */
        size_t i = (size_t)(x - sj->scheds);

        json_object_deln(sj->sched_at, name, len);
        free(x->name);
        if (i != --sj->nscheds) {
            *x = sj->scheds[sj->nscheds];
            json_object_set_new(sj->sched_at, x->name,
                                json_integer((json_int_t)i));
        }
        return;
    }
    aq_journal_hold(sj->journal, seg);
    x->seg = seg;
    x->fire_us = fire_us;
    x->job = job;
}

static uint32_t
sched_append(struct store_journal *sj, const char *name, int64_t fire_us,
             uint64_t job)
{
    struct aq_jrec r = {.type = AQ_JREC_SCHED,
                        .id = job,
                        .due_us = fire_us,
                        .name = jstr(name)};

    return aq_journal_append(sj->journal, &r);
}

static void
sj_schedule(struct aq_store *s, const char *name, int64_t fire_us, uint64_t job)
{
    struct store_journal *sj = sj_of(s);
    uint32_t seg;

    if (fire_us == 0 && json_object_get(sj->sched_at, name) == NULL)
        return; /* nothing to forget */
    seg = sched_append(sj, name, fire_us, job);
    sched_hold(sj, name, strlen(name), fire_us, job, seg);
}

static int
sj_sync(struct aq_store *s, struct aq_barrier *b, aq_barrier_cb *cb, void *arg,
        struct aq_error *err)
{
    return aq_journal_barrier_add(sj_of(s)->journal, b, cb, arg, err);
}

static void
sj_sync_cancel(struct aq_store *s, struct aq_barrier *b)
{
    aq_journal_barrier_cancel(sj_of(s)->journal, b);
}

static const struct aq_error *
sj_error(const struct aq_store *s)
{
    return aq_journal_error(((const struct store_journal *)s)->journal);
}

static void
sj_close(struct aq_store *s)
{
    struct store_journal *sj = sj_of(s);

    /* Flushed and synced (rebuilt first after a failed sync, which asks
     * the broker for its live jobs: it must still hold them). */
    aq_journal_close(sj->journal);
    for (size_t i = 0; i < sj->nscheds; i++)
        free(sj->scheds[i].name);
    free(sj->scheds);
    json_decref(sj->sched_at);
    free(sj->path);
    free(sj);
}

/* ---- rehome ---- */

struct rehome {
    struct store_journal *sj;
    struct aq_job **jobs;
    const char **queues;
    size_t n, cap;
};

static void
rehome_collect(struct aq_job *j, const char *queue, void *arg)
{
    struct rehome *rh = arg;

    if (!aq_journal_is_evacuated(rh->sj->journal, j->jseg))
        return;
    if (rh->n == rh->cap) {
        rh->cap = rh->cap != 0 ? rh->cap * 2 : 64;
        rh->jobs = xreallocarray(rh->jobs, rh->cap, sizeof *rh->jobs);
        rh->queues = xreallocarray(rh->queues, rh->cap, sizeof *rh->queues);
    }
    rh->jobs[rh->n] = j;
    rh->queues[rh->n++] = queue;
}

/* The journal evacuates old segments (or rebuilds itself after a failed
 * sync): every job homed there is appended again, whole. */
static void
rehome_cb(struct aq_journal *journal, void *arg)
{
    struct store_journal *sj = arg;
    struct rehome rh = {.sj = sj};

    if (sj->broker == NULL)
        return; /* nothing restored yet: no job lives */
    /* Collect first: appending must not run under the map's iteration. */
    aq_broker_each_job(sj->broker, rehome_collect, &rh);
    for (size_t i = 0; i < rh.n; i++)
        job_home(sj, rh.jobs[i], rh.queues[i]);
    for (size_t i = 0; i < sj->nscheds; i++) {
        struct sj_sched *x = &sj->scheds[i];
        uint32_t seg;

        if (!aq_journal_is_evacuated(journal, x->seg))
            continue;
        seg = sched_append(sj, x->name, x->fire_us, x->job);
        aq_journal_hold(journal, seg);
        aq_journal_release(journal, x->seg);
        x->seg = seg;
    }
    aq_log(AQ_LOG_DEBUG, "journal: %zu jobs re-appended from old segments",
           rh.n);
    free(rh.jobs);
    free(rh.queues);
}

/* ---- replay ---- */

/* Fills j from a whole record (PUT or END) in seg, its home from now. */
static void
replay_whole(struct store_journal *sj, struct aq_job *j,
             const struct aq_jrec *r, uint32_t seg)
{
    store_job_fill(sj->broker, j, r);
    aq_journal_hold(sj->journal, seg);
    if (j->jseg != 0)
        aq_journal_release(sj->journal, j->jseg);
    j->jseg = seg;
}

/* An aq_journal_replay_cb: folds one record into the broker's jobs. */
static int
replay_cb(const struct aq_jrec *rec, uint32_t seg, void *arg,
          struct aq_error *err)
{
    struct store_journal *sj = arg;
    struct aq_job *j = aq_broker_restore_find(sj->broker, rec->id);
    struct aq_jrec copy = *rec;
    const struct aq_jrec *r = &copy;

    if (store_jrec_clamp(&copy))
        sj->nclamped++;
    switch (r->type) {
    case AQ_JREC_PUT:
    case AQ_JREC_END:
        /* Every whole record is checked, not only a job's first: a later
         * one (a retry's PUT after an END, a rehome) sets the state the
         * per-state indexes file the job under. */
        if (r->id == 0 || r->kind > AQ_KIND_REMOTE || r->queue.p == NULL ||
            !store_jrec_whole_fits(r)) {
            aq_error_set(err, AQ_ERR_INTERNAL,
                         "journal: job %llu: malformed record",
                         (unsigned long long)r->id);
            return -1;
        }
        if (j == NULL) {
            struct aq_jstr args = r->args;

            /* An END of format 2 or older kept no args: the record shows
             * none (and cannot be retried). */
            if (args.p == NULL && r->type == AQ_JREC_PUT)
                args = (struct aq_jstr){"{}", 2};
            else if (args.p == NULL)
                args = (struct aq_jstr){"", 0};
            j = aq_broker_restore_add(sj->broker, r->id, r->kind, r->queue.p,
                                      r->queue.len, args.p, args.len);
        }
        replay_whole(sj, j, r, seg);
        break;
    case AQ_JREC_START:
        if (j != NULL && !aq_job_is_finished(j)) {
            j->state = AQ_JOB_RUNNING;
            aq_job_ext(j)->started_us = r->started_us;
        }
        break;
    case AQ_JREC_REQUEUE:
        if (j != NULL && !aq_job_is_finished(j)) {
            struct aq_job_ext *x = aq_job_ext(j);

            j->state = store_state_from[r->state]; /* clamped: delayed,
                                                     pending */
            j->attempts = r->attempts;
            x->due_us = r->due_us;
            store_ext_str(&x->result, r->result);
            store_ext_str(&x->err_code, r->err_code);
            store_ext_str(&x->err_message, r->err_message);
        }
        break;
    case AQ_JREC_DELETE:
        if (j != NULL && aq_job_is_finished(j)) {
            if (j->jseg != 0)
                aq_journal_release(sj->journal, j->jseg);
            j->jseg = 0;
            aq_broker_restore_drop(sj->broker, j);
        }
        break;
    case AQ_JREC_SCHED:
        sched_hold(sj, r->name.p, r->name.len, r->due_us, r->id, seg);
        aq_broker_restore_schedule(sj->broker, r->name.p, r->name.len,
                                   r->due_us, r->id);
        break;
    default:
        break; /* a SEGMENT record, or a type from a later version */
    }
    return 0;
}

static int
sj_restore(struct aq_store *s, struct aq_broker *b, uint64_t *last_id,
           bool *is_damaged, struct aq_error *err)
{
    struct store_journal *sj = sj_of(s);
    int64_t start_us = aq_clock_mono_us();

    sj->broker = b;
    *last_id = 0;
    *is_damaged = false;
    if (aq_journal_replay(sj->journal, false, replay_cb, sj, last_id,
                          is_damaged, err) < 0 ||
        aq_journal_start(sj->journal, *last_id, err) < 0)
        return -1;
    if (sj->nclamped > 0)
        aq_log(AQ_LOG_WARN,
               "journal: %zu records held times or durations out of range "
               "(over 1e9 s, or negative): clamped",
               sj->nclamped);
    aq_log(AQ_LOG_INFO, "journal: %s (fsync %s): replayed in %.3f s", sj->path,
           aq_fsync_names[sj->fsync],
           (double)(aq_clock_mono_us() - start_us) / 1e6);
    return 0;
}

static const struct aq_store_ops journal_ops = {
    .name = "journal",
    .restore = sj_restore,
    .put = sj_put,
    .start = sj_start,
    .requeue = sj_requeue,
    .finish = sj_finish,
    .forget = sj_forget,
    .retry = sj_retry,
    .remove = sj_remove,
    .schedule = sj_schedule,
    .sync = sj_sync,
    .sync_cancel = sj_sync_cancel,
    .error = sj_error,
    .close = sj_close,
};

/* ---- public ---- */

struct aq_store *
aq_store_journal_open(struct event_base *base, const char *path,
                      enum aq_fsync fsync, size_t segment_bytes,
                      struct aq_error *err)
{
    struct store_journal *sj = xcalloc(1, sizeof *sj);
    struct aq_journal_opts opts = {
        .path = path,
        .fsync = fsync,
        .segment_bytes = segment_bytes,
        .rehome = rehome_cb,
        .arg = sj,
    };

    sj->store.ops = &journal_ops;
    sj->fsync = fsync;
    sj->sched_at = json_object();
    if ((sj->journal = aq_journal_open(base, &opts, err)) == NULL) {
        json_decref(sj->sched_at);
        free(sj);
        return NULL;
    }
    sj->path = xstrdup(path);
    return &sj->store;
}

struct aq_journal *
aq_store_journal(struct aq_store *s)
{
    return s != NULL && s->ops == &journal_ops ? sj_of(s)->journal : NULL;
}

static int
count_record(const struct aq_jrec *r, uint32_t seg, void *arg,
             struct aq_error *err)
{
    (*(size_t *)arg)++;
    return 0;
}

int
aq_store_journal_repair(struct event_base *base, const char *path,
                        size_t *records, uint64_t *last_id,
                        struct aq_error *err)
{
    struct aq_journal_opts opts = {.path = path, .segment_bytes = 1};
    struct aq_journal *j = aq_journal_open(base, &opts, err);
    bool is_damaged;
    int rc;

    *records = 0;
    if (j == NULL)
        return -1;
    rc = aq_journal_replay(j, true, count_record, records, last_id, &is_damaged,
                           err);
    aq_journal_close(j);
    return rc;
}
