/* SPDX-License-Identifier: MIT */
/*
 * lib/journal.c: segments, record encoding, replay, group commit.
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
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "crc32c.h"
#include "error.h"
#include "hist.h"
#include "log.h"
#include "xmalloc.h"

#define HDR_BYTES 8
#define MAX_RECORD_BYTES (256u << 20) /* a longer length is damage */
#define SEG_SUFFIX ".aqj"
#define ABSENT UINT32_MAX
#define FORMAT_VERSION 1 /* in each SEGMENT record */

struct segment {
    uint32_t seq;
    uint64_t live;     /* jobs homed here */
    uint64_t whole;    /* whole records (PUT, END) written here */
    uint64_t bytes;    /* in the file (written) */
    bool is_evacuated; /* its jobs are being re-appended */
};

struct aq_journal {
    struct event_base *base; /* borrowed */
    char *dir;               /* owned */
    enum aq_fsync fsync;
    size_t segment_bytes;
    aq_journal_rehome_cb *rehome;
    void *arg;

    struct segment *segs; /* oldest first; the last one is appended to */
    size_t nsegs, segs_cap;
    int fd;          /* the active segment; -1 before start */
    int lock_fd;     /* flock on DIR/LOCK, held while open; -1 = none */
    uint64_t max_id; /* highest job id seen */
    bool in_rehome;

    char *buf; /* encoded, not yet written */
    size_t len, cap;
    uint64_t appended_lsn, written_lsn, durable_lsn;
    struct event *flush_ev;    /* the one write of a loop iteration */
    struct event *retry_ev;    /* a failed write tries again */
    struct event *complete_ev; /* runs barriers from the loop */
    struct event *rehome_ev;   /* asks for old segments' jobs again */
    struct aq_journal_barrier *bar_head, *bar_tail;

    /* the sync thread */
    bool has_thread;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_fd;               /* what to sync (under mu) */
    uint64_t sync_req;         /* LSN asked for (under mu) */
    uint64_t sync_done;        /* LSN synced (under mu) */
    bool sync_busy, stop;      /* under mu */
    int efd;                   /* eventfd: the thread finished a sync */
    struct aq_hist fsync_hist; /* fdatasync durations (under mu) */
    struct event *synced_ev, *everysec_ev;
};

/* ---- encoding ---- */

static void
buf_reserve(struct aq_journal *j, size_t n)
{
    if (j->len + n > j->cap) {
        j->cap = (j->len + n) * 2;
        j->buf = xrealloc(j->buf, j->cap);
    }
}

static void
put_bytes(struct aq_journal *j, const void *p, size_t n)
{
    memcpy(j->buf + j->len, p, n);
    j->len += n;
}

/* Little-endian on the disk, whatever the host. */
static void
put_u(struct aq_journal *j, uint64_t v, int bytes)
{
    unsigned char b[8];

    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(j, b, (size_t)bytes);
}

static void
put_str(struct aq_journal *j, struct aq_jstr s)
{
    put_u(j, s.p != NULL ? s.len : ABSENT, 4);
    if (s.p != NULL)
        put_bytes(j, s.p, s.len);
}

static size_t
str_size(struct aq_jstr s)
{
    return 4 + (s.p != NULL ? s.len : 0);
}

/* The body size of r, to reserve before encoding. */
static size_t
body_size(const struct aq_jrec *r)
{
    switch (r->type) {
    case AQ_JREC_SEGMENT:
        return 1 + 8 + 4;
    case AQ_JREC_START:
        return 1 + 8 + 8;
    case AQ_JREC_REQUEUE:
        return 1 + 8 + 1 + 2 + 8 + str_size(r->result) + str_size(r->err_code) +
               str_size(r->err_message);
    case AQ_JREC_PUT:
        return 1 + 8 + 1 + 1 + 2 + 4 + 4 + 8 * 4 + str_size(r->queue) +
               str_size(r->key) + str_size(r->args) + str_size(r->result) +
               str_size(r->err_code) + str_size(r->err_message);
    case AQ_JREC_END:
        return 1 + 8 + 1 + 1 + 2 + 4 + 8 * 3 + str_size(r->queue) +
               str_size(r->key) + str_size(r->result) + str_size(r->err_code) +
               str_size(r->err_message);
    }
    return 0;
}

/* Appends the header and body of r to the buffer; returns its size. */
static size_t
encode(struct aq_journal *j, const struct aq_jrec *r)
{
    size_t body = body_size(r), start = j->len;
    uint32_t crc;

    buf_reserve(j, HDR_BYTES + body);
    put_u(j, body, 4);
    put_u(j, 0, 4); /* the CRC, filled in below */
    put_u(j, (uint64_t)r->type, 1);
    put_u(j, r->id, 8);
    switch (r->type) {
    case AQ_JREC_SEGMENT:
        put_u(j, FORMAT_VERSION, 4);
        break;
    case AQ_JREC_START:
        put_u(j, (uint64_t)r->started_us, 8);
        break;
    case AQ_JREC_REQUEUE:
        put_u(j, r->state, 1);
        put_u(j, r->attempts, 2);
        put_u(j, (uint64_t)r->due_us, 8);
        put_str(j, r->result);
        put_str(j, r->err_code);
        put_str(j, r->err_message);
        break;
    case AQ_JREC_PUT:
        put_u(j, r->kind, 1);
        put_u(j, r->state, 1);
        put_u(j, r->attempts, 2);
        put_u(j, (uint32_t)r->priority, 4);
        put_u(j, (uint32_t)r->retries, 4);
        put_u(j, (uint64_t)r->timeout_us, 8);
        put_u(j, (uint64_t)r->created_us, 8);
        put_u(j, (uint64_t)r->started_us, 8);
        put_u(j, (uint64_t)r->due_us, 8);
        put_str(j, r->queue);
        put_str(j, r->key);
        put_str(j, r->args);
        put_str(j, r->result);
        put_str(j, r->err_code);
        put_str(j, r->err_message);
        break;
    case AQ_JREC_END:
        put_u(j, r->kind, 1);
        put_u(j, r->state, 1);
        put_u(j, r->attempts, 2);
        put_u(j, (uint32_t)r->priority, 4);
        put_u(j, (uint64_t)r->created_us, 8);
        put_u(j, (uint64_t)r->started_us, 8);
        put_u(j, (uint64_t)r->finished_us, 8);
        put_str(j, r->queue);
        put_str(j, r->key);
        put_str(j, r->result);
        put_str(j, r->err_code);
        put_str(j, r->err_message);
        break;
    }
    /* The CRC covers the length too, so a corrupt length is caught. */
    crc = aq_crc32c(0, j->buf + start, 4);
    crc = aq_crc32c(crc, j->buf + start + HDR_BYTES, body);
    for (int i = 0; i < 4; i++)
        j->buf[start + 4 + i] = (char)(crc >> (8 * i));
    return HDR_BYTES + body;
}

/* ---- decoding ---- */

struct reader {
    const unsigned char *p, *end;
    bool bad;
};

static uint64_t
get_u(struct reader *rd, int bytes)
{
    uint64_t v = 0;

    if (rd->end - rd->p < bytes) {
        rd->bad = true;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)rd->p[i] << (8 * i);
    rd->p += bytes;
    return v;
}

static struct aq_jstr
get_str(struct reader *rd)
{
    struct aq_jstr s = {NULL, 0};
    uint32_t len = (uint32_t)get_u(rd, 4);

    if (rd->bad || len == ABSENT)
        return s;
    if ((uint64_t)(rd->end - rd->p) < len) {
        rd->bad = true;
        return s;
    }
    s.p = (const char *)rd->p;
    s.len = len;
    rd->p += len;
    return s;
}

/* Decodes a body (CRC already checked). Returns 0, or -1 if malformed. */
static int
decode(const unsigned char *body, size_t len, struct aq_jrec *r)
{
    struct reader rd = {body, body + len, false};

    memset(r, 0, sizeof *r);
    r->type = (enum aq_jrec_type)get_u(&rd, 1);
    r->id = get_u(&rd, 8);
    switch (r->type) {
    case AQ_JREC_SEGMENT:
        r->version = (uint32_t)get_u(&rd, 4);
        break;
    case AQ_JREC_START:
        r->started_us = (int64_t)get_u(&rd, 8);
        break;
    case AQ_JREC_REQUEUE:
        r->state = (uint8_t)get_u(&rd, 1);
        r->attempts = (uint16_t)get_u(&rd, 2);
        r->due_us = (int64_t)get_u(&rd, 8);
        r->result = get_str(&rd);
        r->err_code = get_str(&rd);
        r->err_message = get_str(&rd);
        break;
    case AQ_JREC_PUT:
        r->kind = (uint8_t)get_u(&rd, 1);
        r->state = (uint8_t)get_u(&rd, 1);
        r->attempts = (uint16_t)get_u(&rd, 2);
        r->priority = (int32_t)(uint32_t)get_u(&rd, 4);
        r->retries = (int32_t)(uint32_t)get_u(&rd, 4);
        r->timeout_us = (int64_t)get_u(&rd, 8);
        r->created_us = (int64_t)get_u(&rd, 8);
        r->started_us = (int64_t)get_u(&rd, 8);
        r->due_us = (int64_t)get_u(&rd, 8);
        r->queue = get_str(&rd);
        r->key = get_str(&rd);
        r->args = get_str(&rd);
        r->result = get_str(&rd);
        r->err_code = get_str(&rd);
        r->err_message = get_str(&rd);
        break;
    case AQ_JREC_END:
        r->kind = (uint8_t)get_u(&rd, 1);
        r->state = (uint8_t)get_u(&rd, 1);
        r->attempts = (uint16_t)get_u(&rd, 2);
        r->priority = (int32_t)(uint32_t)get_u(&rd, 4);
        r->created_us = (int64_t)get_u(&rd, 8);
        r->started_us = (int64_t)get_u(&rd, 8);
        r->finished_us = (int64_t)get_u(&rd, 8);
        r->queue = get_str(&rd);
        r->key = get_str(&rd);
        r->result = get_str(&rd);
        r->err_code = get_str(&rd);
        r->err_message = get_str(&rd);
        break;
    default:
        return -1;
    }
    return rd.bad || rd.p != rd.end ? -1 : 0;
}

/* The size of a valid record at p (n bytes left), or 0. */
static size_t
record_at(const unsigned char *p, size_t n)
{
    uint32_t len, crc, want;

    if (n < HDR_BYTES)
        return 0;
    len = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
          (uint32_t)p[3] << 24;
    want = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
           (uint32_t)p[7] << 24;
    if (len == 0 || len > MAX_RECORD_BYTES || len > n - HDR_BYTES)
        return 0;
    crc = aq_crc32c(0, p, 4);
    crc = aq_crc32c(crc, p + HDR_BYTES, len);
    return crc == want ? HDR_BYTES + len : 0;
}

/* ---- segments ---- */

static void
seg_path(const struct aq_journal *j, uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%08" PRIx32 SEG_SUFFIX, j->dir, seq);
}

static struct segment *
seg_find(struct aq_journal *j, uint32_t seq)
{
    for (size_t i = 0; i < j->nsegs; i++) {
        if (j->segs[i].seq == seq)
            return &j->segs[i];
    }
    return NULL;
}

static struct segment *
seg_add(struct aq_journal *j, uint32_t seq)
{
    if (j->nsegs == j->segs_cap) {
        j->segs_cap = j->segs_cap != 0 ? j->segs_cap * 2 : 8;
        j->segs = xreallocarray(j->segs, j->segs_cap, sizeof *j->segs);
    }
    j->segs[j->nsegs] = (struct segment){.seq = seq};
    return &j->segs[j->nsegs++];
}

/* Makes file creations and deletions in the directory durable: a new
 * segment's name must survive a power loss, a deleted one must not come
 * back with old records. */
static void
dir_sync(const struct aq_journal *j)
{
    int fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        if (fsync(fd) < 0)
            aq_log(AQ_LOG_WARN, "journal: fsync %s: %s", j->dir,
                   strerror(errno));
        close(fd);
    }
}

static void
seg_remove_at(struct aq_journal *j, size_t i)
{
    char path[4200];

    seg_path(j, j->segs[i].seq, path, sizeof path);
    if (unlink(path) < 0 && errno != ENOENT)
        aq_log(AQ_LOG_WARN, "journal: unlink %s: %s", path, strerror(errno));
    else
        aq_log(AQ_LOG_DEBUG, "journal: %s: no live job left, deleted", path);
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof *j->segs);
    j->nsegs--;
}

/* Deletes the segments (not the active one) that no live job needs. */
static void
reclaim(struct aq_journal *j)
{
    bool removed = false;

    for (size_t i = 0; j->nsegs > 0 && i < j->nsegs - 1;) {
        if (j->segs[i].live == 0) {
            seg_remove_at(j, i);
            removed = true;
        } else
            i++;
    }
    if (removed)
        dir_sync(j);
}

static int
cmp_seg(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;

    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int
list_segments(struct aq_journal *j, struct aq_error *err)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;

    if (d == NULL) {
        aq_error_set(err, AQ_ERR_INTERNAL, "journal: %s: %s", j->dir,
                     strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        unsigned seq;
        char tail[8];

        if (sscanf(e->d_name, "%8x%7s", &seq, tail) == 2 &&
            strcmp(tail, SEG_SUFFIX) == 0 && strlen(e->d_name) == 12)
            seg_add(j, seq);
    }
    closedir(d);
    if (j->nsegs > 1)
        qsort(j->segs, j->nsegs, sizeof *j->segs, cmp_seg);
    return 0;
}

static int
make_dirs(const char *path, struct aq_error *err)
{
    char buf[4096];
    struct stat st;

    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0750) < 0 && errno != EEXIST)
        goto fail;
    if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
        aq_error_set(err, AQ_ERR_INTERNAL, "journal: %s: not a directory",
                     path);
        return -1;
    }
    return 0;
fail:
    aq_error_set(err, AQ_ERR_INTERNAL, "journal: mkdir %s: %s", buf,
                 strerror(errno));
    return -1;
}

/* ---- writing ---- */

static void
barriers_complete(struct aq_journal *j)
{
    struct aq_journal_barrier *b;

    while ((b = j->bar_head) != NULL && b->lsn <= j->durable_lsn) {
        bool is_ours = b->is_ours;

        j->bar_head = b->next;
        if (j->bar_head != NULL)
            j->bar_head->prev = NULL;
        else
            j->bar_tail = NULL;
        /* A caller's node may be freed by its callback: not touched after. */
        b->cb(b->arg);
        if (is_ours)
            free(b);
    }
}

static void
sync_request(struct aq_journal *j)
{
    pthread_mutex_lock(&j->mu);
    if (j->written_lsn > j->sync_req) {
        j->sync_fd = j->fd;
        j->sync_req = j->written_lsn;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
}

/* Writes the buffer to the active segment. Returns 0, or -1 (logged; the
 * buffer is kept and retried from a timer). */
static int
write_out(struct aq_journal *j)
{
    size_t off = 0;

    while (off < j->len) {
        ssize_t n = write(j->fd, j->buf + off, j->len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            struct timeval tv = {1, 0};

            aq_log(AQ_LOG_ERROR,
                   "journal: write: %s; puts wait until it succeeds",
                   strerror(errno));
            memmove(j->buf, j->buf + off, j->len - off);
            j->len -= off;
            j->written_lsn += off;
            j->segs[j->nsegs - 1].bytes += off;
            evtimer_add(j->retry_ev, &tv);
            return -1;
        }
        off += (size_t)n;
    }
    j->written_lsn += j->len;
    j->segs[j->nsegs - 1].bytes += j->len;
    j->len = 0;
    return 0;
}

/* fdatasync, timed for the metrics. */
static void
timed_fdatasync(struct aq_journal *j, int fd)
{
    int64_t start_us = aq_clock_mono_us();

    if (fdatasync(fd) < 0)
        aq_log(AQ_LOG_ERROR, "journal: fdatasync: %s", strerror(errno));
    if (j->has_thread)
        pthread_mutex_lock(&j->mu);
    aq_hist_add(&j->fsync_hist, aq_clock_mono_us() - start_us);
    if (j->has_thread)
        pthread_mutex_unlock(&j->mu);
}

static void
fsync_now(struct aq_journal *j)
{
    timed_fdatasync(j, j->fd);
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
        break;
    case AQ_FSYNC_EVERYSEC:
    case AQ_FSYNC_NEVER:
        break;
    }
    j->durable_lsn = j->written_lsn;
    /* Barriers run from the loop: flush may be called inside an append,
     * under a caller that is in the middle of changing a job. */
    if (j->bar_head != NULL)
        event_active(j->complete_ev, EV_TIMEOUT, 0);
}

static void
complete_cb(evutil_socket_t fd, short what, void *arg)
{
    barriers_complete(arg);
}

static void
flush(struct aq_journal *j)
{
    if (j->len == 0 || j->fd < 0)
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

    (void)!read(j->efd, &n, sizeof n);
    pthread_mutex_lock(&j->mu);
    done = j->sync_done;
    pthread_mutex_unlock(&j->mu);
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
        int fd = j->sync_fd;
        uint64_t lsn = j->sync_req;

        j->sync_busy = true;
        pthread_mutex_unlock(&j->mu);
        timed_fdatasync(j, fd);
        pthread_mutex_lock(&j->mu);
        j->sync_done = lsn;
        j->sync_busy = false;
        pthread_cond_broadcast(&j->cv);
        (void)!write(j->efd, &one, sizeof one);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Opens segment seq as the active one, with its SEGMENT record. */
static int
seg_create(struct aq_journal *j, uint32_t seq, struct aq_error *err)
{
    char path[4200];
    struct aq_jrec r = {.type = AQ_JREC_SEGMENT, .id = j->max_id};

    seg_path(j, seq, path, sizeof path);
    j->fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "journal: open %s: %s", path,
                     strerror(errno));
        return -1;
    }
    dir_sync(j);
    seg_add(j, seq);
    j->appended_lsn += encode(j, &r);
    return 0;
}

/* Closes the active segment (written and synced) and starts the next. */
static void
rotate(struct aq_journal *j)
{
    struct aq_error err;

    if (write_out(j) < 0)
        return; /* try again at the next append */
    sync_quiesce(j);
    fsync_now(j);
    close(j->fd);
    j->durable_lsn = j->written_lsn;
    if (seg_create(j, j->segs[j->nsegs - 1].seq + 1, &err) < 0) {
        aq_log(AQ_LOG_ERROR, "%s", err.message);
        abort(); /* nowhere to append: acknowledged jobs would be lost */
    }
    if (j->bar_head != NULL)
        event_active(j->complete_ev, EV_TIMEOUT, 0);
    reclaim(j);
    if (j->rehome != NULL && j->nsegs > 2)
        event_active(j->rehome_ev, EV_TIMEOUT, 0);
}

/* Old segments (before the previous one) that are mostly dead, a quarter
 * or less of their whole records still live, but pinned by those: ask for
 * their jobs again, in the active segment, so they can go. A segment full
 * of live jobs (a backlog) stays: copying it would only move it. */
static void
rehome_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_journal *j = arg;
    bool any = false;

    for (size_t i = 0; i + 2 < j->nsegs; i++) {
        struct segment *s = &j->segs[i];

        s->is_evacuated = s->live > 0 && s->live * 4 <= s->whole;
        any = any || s->is_evacuated;
    }
    if (!any)
        return;
    j->in_rehome = true;
    j->rehome(j, j->arg);
    j->in_rehome = false;
    for (size_t i = 0; i < j->nsegs; i++)
        j->segs[i].is_evacuated = false;
    reclaim(j);
}

bool
aq_journal_is_evacuated(struct aq_journal *j, uint32_t seg)
{
    const struct segment *s = seg_find(j, seg);

    return s != NULL && s->is_evacuated;
}

uint32_t
aq_journal_append(struct aq_journal *j, const struct aq_jrec *r)
{
    struct segment *active = &j->segs[j->nsegs - 1];

    if (!j->in_rehome && active->bytes + j->len >= j->segment_bytes)
        rotate(j);
    if (r->type == AQ_JREC_PUT || r->type == AQ_JREC_END) {
        if (r->id > j->max_id)
            j->max_id = r->id;
        j->segs[j->nsegs - 1].whole++;
    }
    j->appended_lsn += encode(j, r);
    if (j->fsync == AQ_FSYNC_ALWAYS)
        flush(j); /* fsync per record */
    else if (j->len > 0)
        event_active(j->flush_ev, EV_TIMEOUT, 0);
    return j->segs[j->nsegs - 1].seq;
}

void
aq_journal_hold(struct aq_journal *j, uint32_t seg)
{
    struct segment *s = seg_find(j, seg);

    if (s != NULL)
        s->live++;
}

void
aq_journal_release(struct aq_journal *j, uint32_t seg)
{
    struct segment *s = seg_find(j, seg);

    if (s != NULL && s->live > 0 && --s->live == 0 && j->fd >= 0 &&
        !j->in_rehome)
        reclaim(j);
}

bool
aq_journal_barrier_add(struct aq_journal *j, struct aq_journal_barrier *b,
                       void (*cb)(void *arg), void *arg)
{
    if (j->appended_lsn <= j->durable_lsn)
        return false;
    b->lsn = j->appended_lsn;
    b->cb = cb;
    b->arg = arg;
    b->is_ours = false;
    b->next = NULL;
    b->prev = j->bar_tail;
    if (j->bar_tail != NULL)
        j->bar_tail->next = b;
    else
        j->bar_head = b;
    j->bar_tail = b;
    return true;
}

struct aq_journal_barrier *
aq_journal_barrier(struct aq_journal *j, void (*cb)(void *arg), void *arg)
{
    struct aq_journal_barrier *b = xmalloc(sizeof *b);

    if (!aq_journal_barrier_add(j, b, cb, arg)) {
        free(b);
        return NULL;
    }
    b->is_ours = true;
    return b;
}

void
aq_journal_barrier_cancel(struct aq_journal *j, struct aq_journal_barrier *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        j->bar_head = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        j->bar_tail = b->prev;
    if (b->is_ours)
        free(b);
}

/* ---- open, replay, start, close ---- */

/* One process per journal: an exclusive flock on DIR/LOCK, held until
 * close (the kernel drops it if the process dies). Returns the fd. */
static int
lock_dir(const char *dir, struct aq_error *err)
{
    char path[4200];
    int fd;

    snprintf(path, sizeof path, "%s/LOCK", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        aq_error_set(err, AQ_ERR_INTERNAL, "journal: open %s: %s", path,
                     strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        aq_error_set(err, AQ_ERR_INTERNAL,
                     "journal: %s: in use by another process (is asyncqd "
                     "already running on it?)",
                     dir);
        close(fd);
        return -1;
    }
    return fd;
}

struct aq_journal *
aq_journal_open(struct event_base *base, const struct aq_journal_opts *opts,
                struct aq_error *err)
{
    struct aq_journal *j;

    if (make_dirs(opts->path, err) < 0)
        return NULL;
    j = xcalloc(1, sizeof *j);
    j->base = base;
    j->dir = xstrdup(opts->path);
    j->fsync = opts->fsync;
    j->segment_bytes = opts->segment_bytes;
    j->rehome = opts->rehome;
    j->arg = opts->arg;
    j->fd = -1;
    j->efd = -1;
    j->lock_fd = -1;
    if ((j->lock_fd = lock_dir(j->dir, err)) < 0 || list_segments(j, err) < 0) {
        aq_journal_close(j);
        return NULL;
    }
    return j;
}

static int
read_file(const char *path, unsigned char **out, size_t *len,
          struct aq_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    size_t off = 0;

    if (fd < 0 || fstat(fd, &st) < 0)
        goto fail;
    *out = xmalloc((size_t)st.st_size + 1);
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, *out + off, (size_t)st.st_size - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    *len = off;
    close(fd);
    return 0;
fail:
    aq_error_set(err, AQ_ERR_INTERNAL, "journal: %s: %s", path,
                 strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* The offset of the first valid record at or after from, or -1. */
static long
next_valid(const unsigned char *p, size_t n, size_t from)
{
    for (size_t off = from; off + HDR_BYTES <= n; off++) {
        if (record_at(p + off, n - off) != 0)
            return (long)off;
    }
    return -1;
}

static int
cut_file(const char *path, size_t at)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc = fd >= 0 && ftruncate(fd, (off_t)at) == 0 && fsync(fd) == 0;

    if (fd >= 0)
        close(fd);
    return rc ? 0 : -1;
}

int
aq_journal_replay(struct aq_journal *j, bool repair, aq_journal_replay_cb *cb,
                  void *arg, uint64_t *last_id, bool *is_damaged,
                  struct aq_error *err)
{
    *is_damaged = false;
    for (size_t i = 0; i < j->nsegs; i++) {
        char path[4200];
        unsigned char *data = NULL;
        size_t len = 0, off = 0, n;
        bool is_last = i + 1 == j->nsegs;
        struct aq_jrec r;

        seg_path(j, j->segs[i].seq, path, sizeof path);
        if (read_file(path, &data, &len, err) < 0)
            return -1;
        while (off < len && (n = record_at(data + off, len - off)) != 0) {
            if (decode(data + off + HDR_BYTES, n - HDR_BYTES, &r) < 0)
                break; /* a valid checksum over a body we cannot read */
            if (r.type == AQ_JREC_SEGMENT || r.type == AQ_JREC_PUT ||
                r.type == AQ_JREC_END) {
                if (r.id > j->max_id)
                    j->max_id = r.id;
            }
            if (r.type == AQ_JREC_PUT || r.type == AQ_JREC_END)
                j->segs[i].whole++;
            if (r.type == AQ_JREC_SEGMENT && r.version != FORMAT_VERSION) {
                aq_error_set(err, AQ_ERR_INTERNAL,
                             "journal: %s: format version %u; this asyncqd "
                             "reads version %d",
                             path, r.version, FORMAT_VERSION);
                free(data);
                return -1;
            }
            if (r.type != AQ_JREC_SEGMENT &&
                cb(&r, j->segs[i].seq, arg, err) < 0) {
                free(data);
                return -1;
            }
            off += n;
        }
        j->segs[i].bytes = off;
        if (off < len) {
            long valid = next_valid(data, len, off + 1);

            if (is_last && valid < 0) {
                /* A write cut short by a crash: drop it. */
                aq_log(AQ_LOG_WARN,
                       "journal: %s: torn tail at offset %zu: %zu bytes "
                       "dropped",
                       path, off, len - off);
                cut_file(path, off);
            } else if (repair) {
                aq_log(AQ_LOG_WARN,
                       "journal: %s: damaged at offset %zu: repair drops "
                       "the %zu bytes after it and %zu later segments",
                       path, off, len - off, j->nsegs - i - 1);
                cut_file(path, off);
                while (j->nsegs > i + 1)
                    seg_remove_at(j, i + 1);
            } else {
                aq_error_set(
                    err, AQ_ERR_INTERNAL,
                    "journal: %s: damaged record at offset %zu, with %s "
                    "after it; start refused so nothing is lost silently: "
                    "run asyncqd --repair to keep what precedes the damage",
                    path, off, valid >= 0 ? "valid records" : "later segments");
                *is_damaged = true;
                free(data);
                return -1;
            }
        }
        free(data);
    }
    *last_id = j->max_id;
    return 0;
}

int
aq_journal_start(struct aq_journal *j, uint64_t last_id, struct aq_error *err)
{
    uint32_t seq = j->nsegs > 0 ? j->segs[j->nsegs - 1].seq + 1 : 1;

    if (last_id > j->max_id)
        j->max_id = last_id;
    if (seg_create(j, seq, err) < 0)
        return -1;
    reclaim(j);
    /* Activated by the first append of an iteration, the flush runs after
     * the read callbacks already active in it: one write for all of them. */
    j->flush_ev = event_new(j->base, -1, 0, flush_cb, j);
    j->retry_ev = evtimer_new(j->base, flush_cb, j);
    j->complete_ev = event_new(j->base, -1, 0, complete_cb, j);
    j->rehome_ev = event_new(j->base, -1, 0, rehome_cb, j);
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
    flush(j); /* the SEGMENT record */
    return 0;
}

void
aq_journal_close(struct aq_journal *j)
{
    struct aq_journal_barrier *b;

    if (j == NULL)
        return;
    if (j->fd >= 0) {
        while (j->len > 0 && write_out(j) == 0)
            ;
        sync_quiesce(j);
        fsync_now(j);
    }
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
    while ((b = j->bar_head) != NULL) {
        j->bar_head = b->next;
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
