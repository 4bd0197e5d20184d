/* SPDX-License-Identifier: MIT */
/*
 * lib/journal.c: appending, group commit, segments rotated and deleted,
 * and what happens when the disk says no (records: journal_format.c;
 * reading back: journal_replay.c).
 *
 * Positions: every byte ever appended has an LSN (a running count). A
 * record is "written" once write(2) returned for it and "durable" once the
 * policy says so: written (never, everysec), or synced (batch, always).
 * Barriers wait for the appended LSN to become durable.
 * batch: one write per loop iteration (an event activated by the first
 * append, so it runs after the reads already active), then the sync thread
 * fdatasyncs while the loop goes on; puts read meanwhile are covered by the
 * next sync: group commit without blocking the loop.
 * always: each record is written and synced when appended.
 * everysec: the sync thread syncs once a second; never: no sync.
 *
 * Segments: numbered without gaps from the oldest one kept. Each opens
 * with a SEGMENT record: the last job id, the format version, its own
 * number, the oldest segment of the journal then, and the length its
 * predecessor was sealed at (written, synced). Segments go oldest first,
 * and only after a durable TRIM record names the new oldest: at replay a
 * hole or a sealed segment of another length is damage.
 *
 * Failures: a write that fails for want of room (ENOSPC, EDQUOT, EFBIG)
 * keeps the buffer and tries again every second: nothing is duplicated or
 * reordered. A failed fdatasync (or any other write error) makes what was
 * written since the last good sync suspect, whatever the page cache says
 * (PostgreSQL's "fsyncgate"): the journal never writes to that file again,
 * and rebuilds itself from memory, every live job re-appended by the
 * owner's rehome callback into a temporary file that is synced and renamed
 * into the next segment, whose SEGMENT record makes it the oldest; then
 * the older segments are deleted. In both cases barriers fail and
 * aq_journal_error tells callers to refuse puts until it works again.
 */
#include "journal-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"
#include "xmalloc.h"

#define RETRY_US 1000000 /* a failed write, rewrite or rotation: again */

/* ---- failures ---- */

static void
barriers_complete(struct aq_journal *j)
{
    struct aq_barrier *b;

    while ((b = TAILQ_FIRST(&j->barriers)) != NULL) {
        bool is_ours = b->is_ours;
        const struct aq_error *e = NULL;
        struct aq_error err;

        if (b->pos > j->durable_lsn) {
            if (j->state == JS_OK)
                break;
            err = j->fail; /* a copy: the callback may change j */
            e = &err;
        }
        TAILQ_REMOVE(&j->barriers, b, link);
        /* A caller's node may be freed by its callback: not touched after. */
        b->cb(b->arg, e);
        if (is_ours)
            free(b);
    }
}

static void
retry_later(struct aq_journal *j, int64_t after_us)
{
    struct timeval tv = aq_clock_tv(after_us);

    if (j->retry_ev != NULL && !evtimer_pending(j->retry_ev, NULL))
        evtimer_add(j->retry_ev, &tv);
}

/* what (a call and its object) failed with e: records cannot become
 * durable now. Barriers fail from the loop, and puts are refused until a
 * retry works. A failed sync (JS_SUSPECT) outranks a full disk. */
static void
journal_fail(struct aq_journal *j, enum jstate st, const char *what, int e)
{
    enum jstate old = j->state;

    if (st < j->state)
        return;
    j->state = st;
    aq_error_set(&j->fail, AQ_ERR_INTERNAL, "journal: %s: %s", what,
                 strerror(e));
    if (old != st && st == JS_BLOCKED)
        aq_log(AQ_LOG_ERROR,
               "%s; puts are refused until the journal can be written again "
               "(tried every second)",
               j->fail.message);
    else if (old != st)
        aq_log(AQ_LOG_ERROR,
               "%s; what was written since the last good sync may not be on "
               "the disk: puts are refused until every live job is rewritten "
               "to a new segment (tried every second)",
               j->fail.message);
    if (!TAILQ_EMPTY(&j->barriers) && j->complete_ev != NULL)
        event_active(j->complete_ev, EV_TIMEOUT, 0);
    /* A failed sync tries the rewrite at once: the next loop pass. */
    retry_later(j, st == JS_SUSPECT && old != JS_SUSPECT ? 0 : RETRY_US);
}

const struct aq_error *
aq_journal_error(const struct aq_journal *j)
{
    return j->state != JS_OK ? &j->fail : NULL;
}

/* ---- writing ---- */

static void
sync_request(struct aq_journal *j)
{
    if (j->state == JS_SUSPECT)
        return; /* a sync of that file proves nothing any more */
    pthread_mutex_lock(&j->mu);
    if (j->written_lsn > j->sync_req) {
        j->sync_fd = j->fd;
        j->sync_req = j->written_lsn;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
}

/* Creates the active segment's file, when starting could not. */
static int
open_active(struct aq_journal *j)
{
    char path[PATH_BYTES], what[PATH_BYTES + 8];

    journal_seg_path(j, j->segs[j->nsegs - 1].seq, path, sizeof path);
    j->fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        int e = errno;

        snprintf(what, sizeof what, "open %s", path);
        journal_fail(j, JS_BLOCKED, what, e);
        errno = e;
        return -1;
    }
    journal_dir_sync(j);
    return 0;
}

/* Writes the buffer to the active segment. Returns 0, or -1 with the
 * journal failing: for want of room the rest of the buffer is kept and
 * written again from a timer (no record twice, none out of order); any
 * other error makes the file suspect. */
static int
write_out(struct aq_journal *j)
{
    size_t off = 0;

    if (j->fd < 0 && open_active(j) < 0)
        return -1;
    while (off < j->len) {
        ssize_t n = write(j->fd, j->buf + off, j->len - off);
        int e = errno;

        if (n < 0 && e == EINTR)
            continue;
        if (n < 0) {
            memmove(j->buf, j->buf + off, j->len - off);
            j->len -= off;
            j->written_lsn += off;
            j->segs[j->nsegs - 1].bytes += off;
            journal_fail(j,
                         e == ENOSPC || e == EDQUOT || e == EFBIG ? JS_BLOCKED
                                                                  : JS_SUSPECT,
                         "write", e);
            return -1;
        }
        off += (size_t)n;
    }
    j->written_lsn += j->len;
    j->segs[j->nsegs - 1].bytes += j->len;
    j->len = 0;
    if (j->state == JS_BLOCKED) {
        j->state = JS_OK;
        aq_log(AQ_LOG_INFO,
               "journal: written again after \"%s\": puts are "
               "accepted again",
               j->fail.message);
        if (j->trim_ev != NULL)
            event_active(j->trim_ev, EV_TIMEOUT, 0);
    }
    return 0;
}

/* fdatasync, timed for the metrics. Returns 0 or the errno. */
static int
timed_fdatasync(struct aq_journal *j, int fd)
{
    int64_t start_us = aq_clock_mono_us();
    int e = fdatasync(fd) < 0 ? errno : 0;

    if (j->has_thread)
        pthread_mutex_lock(&j->mu);
    aq_hist_add(&j->fsync_hist, aq_clock_mono_us() - start_us);
    if (j->has_thread)
        pthread_mutex_unlock(&j->mu);
    return e;
}

/* Syncs the active segment from the loop: all written is durable then.
 * Returns 0, or -1 with the journal failing. */
static int
fsync_now(struct aq_journal *j)
{
    int e = timed_fdatasync(j, j->fd);

    if (e != 0) {
        journal_fail(j, JS_SUSPECT, "fdatasync", e);
        return -1;
    }
    j->durable_lsn = j->written_lsn;
    if (!TAILQ_EMPTY(&j->barriers) && j->complete_ev != NULL)
        event_active(j->complete_ev, EV_TIMEOUT, 0);
    return 0;
}

/* After a write: what the policy makes durable now. */
static void
written(struct aq_journal *j)
{
    switch (j->fsync) {
    case AQ_FSYNC_BATCH:
        sync_request(j); /* durable when the thread says so */
        return;
    case AQ_FSYNC_ALWAYS:
        fsync_now(j);
        return;
    case AQ_FSYNC_EVERYSEC:
    case AQ_FSYNC_NEVER:
        break;
    }
    j->durable_lsn = j->written_lsn;
    /* Barriers run from the loop: flush may be called inside an append,
     * under a caller that is in the middle of changing a job. */
    if (!TAILQ_EMPTY(&j->barriers))
        event_active(j->complete_ev, EV_TIMEOUT, 0);
}

static void
complete_cb(evutil_socket_t fd, short what, void *arg)
{
    barriers_complete(arg);
}

/* Writes the buffer, unless the journal is failing: then only its retry
 * timer writes (a full disk) or nothing does (a rewrite is due). */
static void
flush(struct aq_journal *j)
{
    if (j->len == 0 || j->state != JS_OK)
        return;
    if (write_out(j) == 0)
        written(j);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    flush(arg);
}

/* Waits until the sync thread is idle: before its fd may change. */
static void
sync_quiesce(struct aq_journal *j)
{
    if (!j->has_thread)
        return;
    pthread_mutex_lock(&j->mu);
    while (j->sync_busy || j->sync_req > j->sync_done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

static void
synced_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_journal *j = arg;
    uint64_t n, done;
    int e;

    (void)!read(j->efd, &n, sizeof n);
    pthread_mutex_lock(&j->mu);
    done = j->sync_done;
    e = j->sync_errno;
    j->sync_errno = 0;
    pthread_mutex_unlock(&j->mu);
    if (e != 0)
        journal_fail(j, JS_SUSPECT, "fdatasync", e);
    /* Once a sync failed, a later one that succeeds proves nothing about
     * the pages the kernel dropped: no barrier completes from it. */
    if (j->state == JS_SUSPECT)
        return;
    if (j->fsync == AQ_FSYNC_BATCH && done > j->durable_lsn) {
        j->durable_lsn = done;
        barriers_complete(j);
    }
    /* Written meanwhile: the next group goes right away. */
    if (j->fsync == AQ_FSYNC_BATCH && j->written_lsn > done)
        sync_request(j);
}

static void
everysec_cb(evutil_socket_t fd, short what, void *arg)
{
    sync_request(arg);
}

static void *
sync_main(void *arg)
{
    struct aq_journal *j = arg;
    uint64_t one = 1;

    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->stop && j->sync_req <= j->sync_done)
            pthread_cond_wait(&j->cv, &j->mu);
        if (j->stop)
            break;
        int fd = j->sync_fd, e;
        uint64_t lsn = j->sync_req;

        j->sync_busy = true;
        pthread_mutex_unlock(&j->mu);
        e = timed_fdatasync(j, fd);
        pthread_mutex_lock(&j->mu);
        j->sync_done = lsn;
        if (e != 0)
            j->sync_errno = e; /* kept until the loop reads it */
        j->sync_busy = false;
        pthread_cond_broadcast(&j->cv);
        (void)!write(j->efd, &one, sizeof one);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- rotation, deletion, rehoming, rewriting ---- */

/* Appends the SEGMENT record that opens segment seq (the last one). */
static void
encode_segment(struct aq_journal *j, uint32_t seq, uint32_t first,
               uint64_t prev_bytes)
{
    struct aq_jrec r = {.type = AQ_JREC_SEGMENT,
                        .id = j->max_id,
                        .seq = seq,
                        .first = first,
                        .prev_bytes = prev_bytes};

    j->appended_lsn += journal_encode(j, &r);
}

/* Closes the active segment (written and synced: sealed at its length,
 * which the next SEGMENT record names) and starts the next. If the new
 * file cannot be created (no space, no inode, no descriptor), the active
 * one grows past segment_bytes and rotation is tried again a second
 * later: nothing is lost meanwhile. */
static void
rotate(struct aq_journal *j)
{
    uint32_t seq = j->segs[j->nsegs - 1].seq + 1, first;
    int64_t now_us = aq_clock_mono_us();
    uint64_t sealed;
    char path[PATH_BYTES];
    int fd;

    if (j->state != JS_OK || now_us < j->rotate_after_us || seq == 0)
        return;
    journal_seg_path(j, seq, path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        if (!j->is_rotate_failing)
            aq_log(AQ_LOG_WARN,
                   "journal: open %s: %s; the active segment grows past "
                   "journal.segment_bytes until a new one can be created "
                   "(tried every second)",
                   path, strerror(errno));
        j->is_rotate_failing = true;
        j->rotate_after_us = now_us + RETRY_US;
        return;
    }
    if (j->is_rotate_failing)
        aq_log(AQ_LOG_INFO, "journal: %s created: segments rotate again", path);
    j->is_rotate_failing = false;
    sync_quiesce(j);
    if (write_out(j) < 0 || fsync_now(j) < 0) {
        close(fd);
        unlink(path);
        return;
    }
    close(j->fd);
    j->fd = fd;
    journal_dir_sync(j);
    sealed = j->segs[j->nsegs - 1].bytes;
    first = journal_first(j);
    journal_seg_add(j, seq);
    encode_segment(j, seq, first, sealed);
    event_active(j->trim_ev, EV_TIMEOUT, 0);
    if (j->rehome != NULL && j->nsegs > 2)
        event_active(j->rehome_ev, EV_TIMEOUT, 0);
}

/* Deletes the segments no live job needs: oldest first, so that the
 * segments kept always run without a hole; a segment of format 1 goes
 * whenever it is free. Before a file goes, a synced TRIM record names
 * the new oldest segment: a segment missing after that is damage. */
static void
trim(struct aq_journal *j)
{
    bool is_blocked = false, is_legacy_left = false;
    size_t ndoomed = 0;
    uint32_t first = 0;

    if (j->state != JS_OK || j->fd < 0 || j->in_rehome || j->nsegs < 2)
        return;
    for (size_t i = 0; i + 1 < j->nsegs; i++) {
        struct segment *s = &j->segs[i];

        s->is_doomed = s->live == 0 && (s->is_legacy || !is_blocked);
        if (s->is_doomed)
            ndoomed++;
        else if (s->is_legacy)
            is_legacy_left = true;
        else
            is_blocked = true;
        if (!s->is_doomed && first == 0)
            first = s->seq;
    }
    if (ndoomed == 0)
        return;
    if (first == 0)
        first = j->segs[j->nsegs - 1].seq;
    if (!is_legacy_left) {
        struct aq_jrec r = {.type = AQ_JREC_TRIM, .first = first};

        j->appended_lsn += journal_encode(j, &r);
        if (write_out(j) < 0 || fsync_now(j) < 0)
            return; /* tried again once the journal works again */
    }
    for (size_t i = 0; i + 1 < j->nsegs;) {
        if (j->segs[i].is_doomed)
            journal_seg_remove_at(j, i);
        else
            i++;
    }
    journal_dir_sync(j);
}

static void
trim_cb(evutil_socket_t fd, short what, void *arg)
{
    trim(arg);
}

/* After a rotation: the oldest segments, as long a run of them as has a
 * quarter or less of its whole records still live, are pinned only by
 * those: ask for their jobs again, in the active segment, so they can go.
 * A run full of live jobs (a backlog) stays until enough dead records
 * follow it: copying it at once would only move it. */
static void
rehome_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_journal *j = arg;
    uint64_t live = 0, whole = 0;
    size_t run = 0;

    if (j->state != JS_OK)
        return;
    for (size_t i = 0; i + 2 < j->nsegs; i++) {
        live += j->segs[i].live;
        whole += j->segs[i].whole;
        if (live > 0 && live * 4 <= whole)
            run = i + 1;
    }
    if (run == 0)
        return;
    for (size_t i = 0; i < run; i++)
        j->segs[i].is_evacuated = true;
    j->in_rehome = true;
    j->rehome(j, j->arg);
    j->in_rehome = false;
    for (size_t i = 0; i < j->nsegs; i++)
        j->segs[i].is_evacuated = false;
    trim(j);
}

/* After a failed sync: every live job, as the owner holds it in memory,
 * into a fresh segment that replaces all the others. It is written to a
 * temporary file, synced, renamed into place and the directory synced;
 * only then are the older segments deleted (its SEGMENT record names it
 * the oldest, so a crash in between skips them). 0, or -1 (logged) to be
 * tried again later. */
static int
rewrite(struct aq_journal *j)
{
    struct segment *s;
    char tmp[PATH_BYTES], path[PATH_BYTES];
    const char *what = NULL;
    uint64_t jobs = 0;
    uint32_t seq;
    int fd = -1, e;

    if (j->rehome == NULL)
        return -1; /* nothing can rebuild it */
    sync_quiesce(j);
    if (j->fd >= 0) {
        close(j->fd); /* never written again: its pages are not trusted */
        j->fd = -1;
    }
    s = &j->segs[j->nsegs - 1];
    seq = s->is_pending ? s->seq : s->seq + 1;
    if (seq == 0) {
        what = "segment numbers";
        errno = EOVERFLOW;
        goto fail;
    }
    if (!s->is_pending)
        journal_seg_add(j, seq)->is_pending = true;
    /* What the old file did not get is in memory, and rewritten now. */
    j->len = 0;
    encode_segment(j, seq, seq, 0);
    j->rewriting = true;
    j->in_rehome = true;
    j->rehome(j, j->arg);
    j->rewriting = false;
    j->in_rehome = false;
    s = &j->segs[j->nsegs - 1];
    jobs = s->live;
    journal_tmp_path(j, seq, tmp, sizeof tmp);
    journal_seg_path(j, seq, path, sizeof path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        what = "open";
    else if (journal_write_all(fd, j->buf, j->len) < 0)
        what = "write";
    else if ((e = timed_fdatasync(j, fd)) != 0) {
        what = "fdatasync";
        errno = e;
    } else if (rename(tmp, path) < 0)
        what = "rename";
    else if (journal_dir_sync(j) < 0)
        what = "fsync of the directory";
    if (what != NULL)
        goto fail;

    j->fd = fd;
    s->bytes = j->len;
    s->is_pending = false;
    j->len = 0;
    j->written_lsn = j->durable_lsn = j->appended_lsn;
    if (j->has_thread) {
        pthread_mutex_lock(&j->mu);
        j->sync_req = j->sync_done = j->appended_lsn;
        j->sync_errno = 0; /* about the old file */
        pthread_mutex_unlock(&j->mu);
    }
    while (j->nsegs > 1)
        journal_seg_remove_at(j, 0);
    journal_dir_sync(j);
    j->state = JS_OK;
    j->rewrite_failures = 0;
    aq_log(AQ_LOG_INFO,
           "journal: %" PRIu64 " live jobs rewritten to %s after \"%s\"; "
           "older segments deleted, puts are accepted again",
           jobs, path, j->fail.message);
    if (!TAILQ_EMPTY(&j->barriers))
        event_active(j->complete_ev, EV_TIMEOUT, 0);
    return 0;
fail:
    e = errno;
    if (j->rewrite_failures++ == 0)
        aq_log(AQ_LOG_ERROR, "journal: rewrite: %s %s: %s", what, tmp,
               strerror(e));
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    j->len = 0;
    return -1;
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_journal *j = arg;

    if (j->state == JS_SUSPECT && rewrite(j) < 0)
        retry_later(j, RETRY_US);
    else if (j->state == JS_BLOCKED && write_out(j) == 0)
        written(j);
}

bool
aq_journal_is_evacuated(struct aq_journal *j, uint32_t seg)
{
    const struct segment *s;

    if (j->rewriting)
        return true;
    s = journal_seg_find(j, seg);
    return s != NULL && s->is_evacuated;
}

uint32_t
aq_journal_append(struct aq_journal *j, const struct aq_jrec *r)
{
    struct segment *active;

    if (!j->in_rehome &&
        j->segs[j->nsegs - 1].bytes + j->len >= j->segment_bytes)
        rotate(j);
    active = &j->segs[j->nsegs - 1];
    if (r->type == AQ_JREC_PUT || r->type == AQ_JREC_END) {
        if (r->id > j->max_id)
            j->max_id = r->id;
        active->whole++;
    } else if (r->type == AQ_JREC_SCHED)
        active->whole++; /* a schedule's home, held as a job's */
    /* After a failed sync the rewrite writes every job as it is then:
     * until it does, records are not kept. */
    if (j->state == JS_SUSPECT && !j->rewriting)
        return active->seq;
    j->appended_lsn += journal_encode(j, r);
    if (j->fsync == AQ_FSYNC_ALWAYS)
        flush(j); /* fsync per record */
    else if (j->len > 0 && j->flush_ev != NULL)
        event_active(j->flush_ev, EV_TIMEOUT, 0);
    return active->seq;
}

void
aq_journal_hold(struct aq_journal *j, uint32_t seg)
{
    struct segment *s = journal_seg_find(j, seg);

    if (s != NULL)
        s->live++;
}

void
aq_journal_release(struct aq_journal *j, uint32_t seg)
{
    struct segment *s = journal_seg_find(j, seg);

    if (s != NULL && s->live > 0 && --s->live == 0 && j->trim_ev != NULL &&
        !j->in_rehome)
        event_active(j->trim_ev, EV_TIMEOUT, 0);
}

static void
barrier_link(struct aq_journal *j, struct aq_barrier *b, aq_barrier_cb *cb,
             void *arg)
{
    b->pos = j->appended_lsn;
    b->cb = cb;
    b->arg = arg;
    b->is_ours = false;
    TAILQ_INSERT_TAIL(&j->barriers, b, link);
}

int
aq_journal_barrier_add(struct aq_journal *j, struct aq_barrier *b,
                       aq_barrier_cb *cb, void *arg, struct aq_error *err)
{
    if (j->state != JS_OK) {
        if (err != NULL)
            *err = j->fail;
        return -1;
    }
    if (j->appended_lsn <= j->durable_lsn)
        return 0;
    barrier_link(j, b, cb, arg);
    return 1;
}

struct aq_barrier *
aq_journal_barrier(struct aq_journal *j, aq_barrier_cb *cb, void *arg)
{
    struct aq_barrier *b;

    if (j->state != JS_OK || j->appended_lsn <= j->durable_lsn)
        return NULL;
    b = xmalloc(sizeof *b);
    barrier_link(j, b, cb, arg);
    b->is_ours = true;
    return b;
}

void
aq_journal_barrier_cancel(struct aq_journal *j, struct aq_barrier *b)
{
    TAILQ_REMOVE(&j->barriers, b, link);
    if (b->is_ours)
        free(b);
}

/* ---- start, close ---- */

int
aq_journal_start(struct aq_journal *j, uint64_t last_id, struct aq_error *err)
{
    uint32_t seq = j->nsegs > 0 ? j->segs[j->nsegs - 1].seq + 1 : 1;
    uint64_t sealed = 0;
    char path[PATH_BYTES], what[PATH_BYTES + 8];
    int e;

    if (seq == 0) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "journal: %s: segment numbers used up (ffffffff.aqj "
                     "exists): move the journal aside",
                     j->dir);
        return -1;
    }
    if (last_id > j->max_id)
        j->max_id = last_id;
    journal_remove_tmp_files(j);
    /* Activated by the first append of an iteration, the flush runs after
     * the read callbacks already active in it: one write for all of them. */
    j->flush_ev = event_new(j->base, -1, 0, flush_cb, j);
    j->retry_ev = evtimer_new(j->base, retry_cb, j);
    j->complete_ev = event_new(j->base, -1, 0, complete_cb, j);
    j->rehome_ev = event_new(j->base, -1, 0, rehome_cb, j);
    j->trim_ev = event_new(j->base, -1, 0, trim_cb, j);
    if (j->fsync == AQ_FSYNC_BATCH || j->fsync == AQ_FSYNC_EVERYSEC) {
        j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pthread_mutex_init(&j->mu, NULL);
        pthread_cond_init(&j->cv, NULL);
        if (j->efd < 0 || pthread_create(&j->thread, NULL, sync_main, j) != 0) {
            aq_error_set(err, AQ_ERR_INTERNAL, "journal: sync thread: %s",
                         strerror(errno));
            return -1;
        }
        j->has_thread = true;
        j->synced_ev =
            event_new(j->base, j->efd, EV_READ | EV_PERSIST, synced_cb, j);
        event_add(j->synced_ev, NULL);
        if (j->fsync == AQ_FSYNC_EVERYSEC) {
            struct timeval tv = {1, 0};

            j->everysec_ev = event_new(j->base, -1, EV_PERSIST, everysec_cb, j);
            event_add(j->everysec_ev, &tv);
        }
    }
    if (j->nsegs > 0 && j->segs[j->nsegs - 1].seq == seq - 1)
        sealed = j->segs[j->nsegs - 1].bytes;
    journal_seg_add(j, seq);
    encode_segment(j, seq, journal_first(j), sealed);
    journal_seg_path(j, seq, path, sizeof path);
    j->fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        e = errno;
        snprintf(what, sizeof what, "open %s", path);
        if (e != ENOSPC && e != EDQUOT && e != EMFILE && e != ENFILE) {
            aq_error_set(err, AQ_ERR_INTERNAL, "journal: %s: %s", what,
                         strerror(e));
            return -1;
        }
        /* A full disk: start anyway, serve what needs no new record, and
         * create the segment once there is room. */
        journal_fail(j, JS_BLOCKED, what, e);
        return 0;
    }
    journal_dir_sync(j);
    flush(j); /* the SEGMENT record */
    trim(j);
    return 0;
}

void
aq_journal_close(struct aq_journal *j)
{
    struct aq_barrier *b;

    if (j == NULL)
        return;
    if (j->fd >= 0 && j->state == JS_OK)
        flush(j);
    else if (j->state == JS_BLOCKED && j->len > 0)
        write_out(j);
    if (j->fd >= 0 && j->state != JS_SUSPECT) {
        sync_quiesce(j);
        fsync_now(j);
    }
    if (j->state == JS_SUSPECT && rewrite(j) < 0)
        aq_log(AQ_LOG_ERROR,
               "journal: closed without the rewrite due after \"%s\": what "
               "was written since the last good sync may be lost",
               j->fail.message);
    else if (j->state == JS_BLOCKED)
        aq_log(AQ_LOG_ERROR,
               "journal: closed with %zu bytes of records not written (%s): "
               "what they recorded is lost",
               j->len, j->fail.message);
    if (j->has_thread) {
        pthread_mutex_lock(&j->mu);
        j->stop = true;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->thread, NULL);
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
    }
    if (j->fd >= 0)
        close(j->fd);
    if (j->efd >= 0)
        close(j->efd);
    if (j->lock_fd >= 0)
        close(j->lock_fd);
    if (j->synced_ev != NULL)
        event_free(j->synced_ev);
    if (j->everysec_ev != NULL)
        event_free(j->everysec_ev);
    if (j->flush_ev != NULL)
        event_free(j->flush_ev);
    if (j->retry_ev != NULL)
        event_free(j->retry_ev);
    if (j->complete_ev != NULL)
        event_free(j->complete_ev);
    if (j->rehome_ev != NULL)
        event_free(j->rehome_ev);
    if (j->trim_ev != NULL)
        event_free(j->trim_ev);
    while ((b = TAILQ_FIRST(&j->barriers)) != NULL) {
        TAILQ_REMOVE(&j->barriers, b, link);
        if (b->is_ours)
            free(b);
    }
    free(j->segs);
    free(j->buf);
    free(j->dir);
    free(j);
}

void
aq_journal_fsync_hist(struct aq_journal *j, struct aq_hist *out)
{
    if (j->has_thread)
        pthread_mutex_lock(&j->mu);
    *out = j->fsync_hist;
    if (j->has_thread)
        pthread_mutex_unlock(&j->mu);
}

uint64_t
aq_journal_bytes(const struct aq_journal *j)
{
    uint64_t n = j->len;

    for (size_t i = 0; i < j->nsegs; i++)
        n += j->segs[i].bytes;
    return n;
}

size_t
aq_journal_segments(const struct aq_journal *j)
{
    return j->nsegs;
}
