/* SPDX-License-Identifier: MIT */
/*
 * lib/journal.c: segments, record encoding, replay, group commit, and
 * what happens when the disk says no.
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
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
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
#define MAX_RECORD_BYTES (1u << 30) /* a longer length is damage */
#define SEG_SUFFIX ".aqj"
#define TMP_SUFFIX ".aqj.tmp"
#define ABSENT UINT32_MAX
#define FORMAT_VERSION 2 /* in each SEGMENT record; 1 is still read */
#define RETRY_US 1000000 /* a failed write, rewrite or rotation: again */
#define PATH_BYTES 4200

enum jstate {
    JS_OK,
    JS_BLOCKED, /* a write failed for want of room: retried as it is */
    JS_SUSPECT, /* a sync failed: rebuilt from memory */
};

struct segment {
    uint32_t seq;
    uint64_t live;     /* jobs homed here */
    uint64_t whole;    /* whole records (PUT, END) written here */
    uint64_t bytes;    /* in the file (written) */
    bool is_evacuated; /* its jobs are being re-appended */
    bool is_legacy;    /* format 1: may be deleted out of order */
    bool is_pending;   /* a rewrite's target, not yet in place */
    bool is_doomed;    /* trim: deleted now */
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
    int fd;          /* the active segment; -1 before start or failed */
    int lock_fd;     /* flock on DIR/LOCK, held while open; -1 = none */
    uint64_t max_id; /* highest job id seen */
    bool in_rehome;
    bool rewriting; /* every segment is evacuated */

    enum jstate state;
    struct aq_error fail;      /* why, while state != JS_OK */
    int64_t rotate_after_us;   /* monotonic: a failed rotation waits */
    bool is_rotate_failing;    /* logged once per streak */
    unsigned rewrite_failures; /* logged once per streak */

    char *buf; /* encoded, not yet written */
    size_t len, cap;
    uint64_t appended_lsn, written_lsn, durable_lsn;
    struct event *flush_ev;    /* the one write of a loop iteration */
    struct event *retry_ev;    /* a failed write or sync: again */
    struct event *complete_ev; /* runs barriers from the loop */
    struct event *rehome_ev;   /* asks for old segments' jobs again */
    struct event *trim_ev;     /* deletes the segments nobody needs */
    struct aq_journal_barrier *bar_head, *bar_tail;

    /* the sync thread */
    bool has_thread;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_fd;               /* what to sync (under mu) */
    uint64_t sync_req;         /* LSN asked for (under mu) */
    uint64_t sync_done;        /* LSN synced (under mu) */
    int sync_errno;            /* a failed sync, until read (under mu) */
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
        return 1 + 8 + 4 + 4 + 4 + 8;
    case AQ_JREC_TRIM:
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
        put_u(j, r->seq, 4);
        put_u(j, r->first, 4);
        put_u(j, r->prev_bytes, 8);
        break;
    case AQ_JREC_TRIM:
        put_u(j, r->first, 4);
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

/* Decodes a body (CRC already checked). Returns 0, or -1 if malformed. A
 * SEGMENT record of a later version decodes as far as its version. */
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
        if (r->version > FORMAT_VERSION)
            return rd.bad ? -1 : 0; /* refused by the caller */
        if (r->version >= 2) {
            r->seq = (uint32_t)get_u(&rd, 4);
            r->first = (uint32_t)get_u(&rd, 4);
            r->prev_bytes = get_u(&rd, 8);
        }
        break;
    case AQ_JREC_TRIM:
        r->first = (uint32_t)get_u(&rd, 4);
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

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The size of a valid record at p (n bytes left), or 0. */
static size_t
record_at(const unsigned char *p, size_t n)
{
    uint32_t len, crc;

    if (n < HDR_BYTES)
        return 0;
    len = le32(p);
    if (len == 0 || len > MAX_RECORD_BYTES || len > n - HDR_BYTES)
        return 0;
    crc = aq_crc32c(0, p, 4);
    crc = aq_crc32c(crc, p + HDR_BYTES, len);
    return crc == le32(p + 4) ? HDR_BYTES + len : 0;
}

/* ---- segments ---- */

static void
seg_path(const struct aq_journal *j, uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%08" PRIx32 SEG_SUFFIX, j->dir, seq);
}

static void
tmp_path(const struct aq_journal *j, uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%08" PRIx32 TMP_SUFFIX, j->dir, seq);
}

/* The file name of segment seq, for messages that name two. */
static const char *
seg_name(uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%08" PRIx32 SEG_SUFFIX, seq);
    return buf;
}

static struct segment *
seg_find(struct aq_journal *j, uint32_t seq)
{
    /* Mostly the newest ones: look from the end. */
    for (size_t i = j->nsegs; i-- > 0;) {
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
 * back with old records. Returns 0, or -1 with errno (logged). */
static int
dir_sync(const struct aq_journal *j)
{
    int fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0, e;

    if (fd < 0 || fsync(fd) < 0) {
        e = errno;
        aq_log(AQ_LOG_WARN, "journal: fsync %s: %s", j->dir, strerror(e));
        rc = -1;
        errno = e;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static void
seg_remove_at(struct aq_journal *j, size_t i)
{
    char path[PATH_BYTES];

    seg_path(j, j->segs[i].seq, path, sizeof path);
    if (unlink(path) < 0 && errno != ENOENT)
        aq_log(AQ_LOG_WARN, "journal: unlink %s: %s", path, strerror(errno));
    else
        aq_log(AQ_LOG_DEBUG, "journal: %s: no live job left, deleted", path);
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof *j->segs);
    j->nsegs--;
}

/* The oldest segment, as a new SEGMENT record names it: 0 while segments
 * of format 1 remain (they may have holes between them). */
static uint32_t
journal_first(const struct aq_journal *j)
{
    for (size_t i = 0; i < j->nsegs; i++) {
        if (j->segs[i].is_legacy)
            return 0;
    }
    return j->nsegs > 0 ? j->segs[0].seq : 0;
}

static int
cmp_seg(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;

    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Whether name is a segment file's (NNNNNNNN + suffix, N hex, not 0). */
static bool
parse_seg_name(const char *name, const char *suffix, uint32_t *seq)
{
    size_t slen = strlen(suffix);
    uint32_t v = 0;

    if (strlen(name) != 8 + slen || strcmp(name + 8, suffix) != 0)
        return false;
    for (int i = 0; i < 8; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;

        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    *seq = v;
    return v != 0;
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
        uint32_t seq;

        if (parse_seg_name(e->d_name, SEG_SUFFIX, &seq))
            seg_add(j, seq);
    }
    closedir(d);
    if (j->nsegs > 1)
        qsort(j->segs, j->nsegs, sizeof *j->segs, cmp_seg);
    return 0;
}

/* Deletes what a rewrite interrupted by a crash left: it was never
 * renamed into place, so nothing in it counts. */
static void
remove_tmp_files(const struct aq_journal *j)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;
    char path[PATH_BYTES];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        uint32_t seq;

        if (!parse_seg_name(e->d_name, TMP_SUFFIX, &seq))
            continue;
        tmp_path(j, seq, path, sizeof path);
        if (unlink(path) == 0)
            aq_log(AQ_LOG_INFO, "journal: %s: an unfinished rewrite, deleted",
                   path);
    }
    closedir(d);
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

/* ---- failures ---- */

static void
barriers_complete(struct aq_journal *j)
{
    struct aq_journal_barrier *b;

    while ((b = j->bar_head) != NULL) {
        bool is_ours = b->is_ours;
        const struct aq_error *e = NULL;
        struct aq_error err;

        if (b->lsn > j->durable_lsn) {
            if (j->state == JS_OK)
                break;
            err = j->fail; /* a copy: the callback may change j */
            e = &err;
        }
        j->bar_head = b->next;
        if (j->bar_head != NULL)
            j->bar_head->prev = NULL;
        else
            j->bar_tail = NULL;
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
    if (j->bar_head != NULL && j->complete_ev != NULL)
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

    seg_path(j, j->segs[j->nsegs - 1].seq, path, sizeof path);
    j->fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        int e = errno;

        snprintf(what, sizeof what, "open %s", path);
        journal_fail(j, JS_BLOCKED, what, e);
        errno = e;
        return -1;
    }
    dir_sync(j);
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
    if (j->bar_head != NULL && j->complete_ev != NULL)
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
    if (j->bar_head != NULL)
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

    j->appended_lsn += encode(j, &r);
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
    seg_path(j, seq, path, sizeof path);
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
    dir_sync(j);
    sealed = j->segs[j->nsegs - 1].bytes;
    first = journal_first(j);
    seg_add(j, seq);
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

        j->appended_lsn += encode(j, &r);
        if (write_out(j) < 0 || fsync_now(j) < 0)
            return; /* tried again once the journal works again */
    }
    for (size_t i = 0; i + 1 < j->nsegs;) {
        if (j->segs[i].is_doomed)
            seg_remove_at(j, i);
        else
            i++;
    }
    dir_sync(j);
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

/* Writes all of len bytes of p to fd. 0, or -1 with errno. */
static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
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
        seg_add(j, seq)->is_pending = true;
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
    tmp_path(j, seq, tmp, sizeof tmp);
    seg_path(j, seq, path, sizeof path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        what = "open";
    else if (write_all(fd, j->buf, j->len) < 0)
        what = "write";
    else if ((e = timed_fdatasync(j, fd)) != 0) {
        what = "fdatasync";
        errno = e;
    } else if (rename(tmp, path) < 0)
        what = "rename";
    else if (dir_sync(j) < 0)
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
        pthread_mutex_unlock(&j->mu);
    }
    while (j->nsegs > 1)
        seg_remove_at(j, 0);
    dir_sync(j);
    j->state = JS_OK;
    j->rewrite_failures = 0;
    aq_log(AQ_LOG_INFO,
           "journal: %" PRIu64 " live jobs rewritten to %s after \"%s\"; "
           "older segments deleted, puts are accepted again",
           jobs, path, j->fail.message);
    if (j->bar_head != NULL)
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
    s = seg_find(j, seg);
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
    }
    /* After a failed sync the rewrite writes every job as it is then:
     * until it does, records are not kept. */
    if (j->state == JS_SUSPECT && !j->rewriting)
        return active->seq;
    j->appended_lsn += encode(j, r);
    if (j->fsync == AQ_FSYNC_ALWAYS)
        flush(j); /* fsync per record */
    else if (j->len > 0 && j->flush_ev != NULL)
        event_active(j->flush_ev, EV_TIMEOUT, 0);
    return active->seq;
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

    if (s != NULL && s->live > 0 && --s->live == 0 && j->trim_ev != NULL &&
        !j->in_rehome)
        event_active(j->trim_ev, EV_TIMEOUT, 0);
}

static void
barrier_link(struct aq_journal *j, struct aq_journal_barrier *b,
             aq_journal_barrier_cb *cb, void *arg)
{
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
}

int
aq_journal_barrier_add(struct aq_journal *j, struct aq_journal_barrier *b,
                       aq_journal_barrier_cb *cb, void *arg,
                       struct aq_error *err)
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

struct aq_journal_barrier *
aq_journal_barrier(struct aq_journal *j, aq_journal_barrier_cb *cb, void *arg)
{
    struct aq_journal_barrier *b;

    if (j->state != JS_OK || j->appended_lsn <= j->durable_lsn)
        return NULL;
    b = xmalloc(sizeof *b);
    barrier_link(j, b, cb, arg);
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

/* ---- open ---- */

/* One process per journal: an exclusive flock on DIR/LOCK, held until
 * close (the kernel drops it if the process dies). Returns the fd. */
static int
lock_dir(const char *dir, struct aq_error *err)
{
    char path[PATH_BYTES];
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

/* ---- replay ---- */

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

/* The SEGMENT record that opens a file, if it has a valid one. */
struct seghdr {
    bool is_valid;
    struct aq_jrec r; /* no strings */
};

static void
read_header(const char *path, struct seghdr *h)
{
    unsigned char buf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, 0) : -1;
    size_t rec;

    memset(h, 0, sizeof *h);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return;
    rec = record_at(buf, (size_t)n);
    h->is_valid = rec != 0 &&
                  decode(buf + HDR_BYTES, rec - HDR_BYTES, &h->r) == 0 &&
                  h->r.type == AQ_JREC_SEGMENT;
}

/* The offset of the first valid record at or after from; -1 if there is
 * none; -2 if the search gave up (garbage crafted to make every offset
 * look like a long record would take quadratic time): treated as valid
 * records, so as damage, never silently dropped. */
static long
next_valid(const unsigned char *p, size_t n, size_t from)
{
    uint64_t budget = 64 * (uint64_t)(n - from) + (1u << 20);

    for (size_t off = from; off + HDR_BYTES < n; off++) {
        uint32_t len = le32(p + off);
        unsigned type = p[off + HDR_BYTES];

        if (len == 0 || len > MAX_RECORD_BYTES || len > n - off - HDR_BYTES ||
            type < AQ_JREC_SEGMENT || type > AQ_JREC_TRIM)
            continue;
        if (budget < len)
            return -2;
        budget -= len;
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

/* One replay's state. */
struct replay {
    struct aq_journal *j;
    bool repair, is_repaired;
    aq_journal_replay_cb *cb;
    void *arg;
    bool *is_damaged;
    struct aq_error *err;
    struct seghdr *hdr; /* each segment's, as j->segs */
    uint32_t first;     /* the oldest segment; 0 = not known (format 1) */
    size_t skip;        /* the segments before first: skipped */
};

/* The journal is damaged: segment keep - 1 is whole up to offset cut
 * (SIZE_MAX: whole), and what follows it is lost or wrong. Refused (-1,
 * err naming path and why), or with repair, cut there: segment keep - 1
 * at cut (deleted if nothing is left of it), the later ones deleted;
 * returns 1 (replay ends). */
static int damage(struct replay *rp, size_t keep, size_t cut, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
damage(struct replay *rp, size_t keep, size_t cut, const char *path,
       const char *fmt, ...)
{
    struct aq_journal *j = rp->j;
    char why[192], kept[PATH_BYTES];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!rp->repair) {
        aq_error_set(rp->err, AQ_ERR_INTERNAL,
                     "journal: %s: %s; start refused: asyncqd --repair keeps "
                     "what precedes the damage",
                     path, why);
        *rp->is_damaged = true;
        return -1;
    }
    aq_log(AQ_LOG_WARN,
           "journal: %s: %s: repair keeps what precedes it, and drops %zu "
           "later segments",
           path, why, j->nsegs - keep);
    while (j->nsegs > keep)
        seg_remove_at(j, keep);
    if (keep > rp->skip && cut != SIZE_MAX) {
        seg_path(j, j->segs[keep - 1].seq, kept, sizeof kept);
        if (cut_file(kept, cut) < 0)
            aq_log(AQ_LOG_WARN, "journal: cut %s: %s", kept, strerror(errno));
        else
            j->segs[keep - 1].bytes = cut;
    }
    rp->is_repaired = true;
    return 1;
}

/* Replays segment i (data, len bytes). 0 to go on, 1 when repair ended
 * the replay, -1 on failure. */
static int
replay_segment(struct replay *rp, size_t i, const unsigned char *data,
               size_t len)
{
    struct aq_journal *j = rp->j;
    uint32_t seq = j->segs[i].seq;
    const struct seghdr *next = i + 1 < j->nsegs ? &rp->hdr[i + 1] : NULL;
    bool is_last = next == NULL, has_seal;
    uint64_t seal = len;
    size_t off = 0, n;
    long valid;
    char path[PATH_BYTES], name[16];
    struct aq_jrec r;

    seg_path(j, seq, path, sizeof path);
    seg_name(seq + 1, name, sizeof name);
    /* Format 2: the next segment says how long this one was sealed at. */
    has_seal = next != NULL && next->is_valid && next->r.version >= 2 &&
               next->r.prev_bytes != 0 && j->segs[i + 1].seq == seq + 1;
    if (has_seal)
        seal = next->r.prev_bytes;
    while (off < len && (n = record_at(data + off, len - off)) != 0) {
        if (off + n > seal ||
            decode(data + off + HDR_BYTES, n - HDR_BYTES, &r) < 0)
            break; /* across the seal, or a body we cannot read */
        if (off == 0 && r.type != AQ_JREC_SEGMENT)
            return damage(rp, i + 1, 0, path,
                          "does not begin with a SEGMENT record (offset 0)");
        if (off == 0 && (r.version == 0 || r.version > FORMAT_VERSION)) {
            aq_error_set(rp->err, AQ_ERR_INTERNAL,
                         "journal: %s: format version %u; this asyncqd "
                         "reads versions 1 to %d",
                         path, r.version, FORMAT_VERSION);
            return -1;
        }
        if (off == 0 && r.version >= 2 && r.seq != seq)
            return damage(rp, i + 1, 0, path,
                          "holds segment %08" PRIx32 " (offset 0)", r.seq);
        if (off == 0)
            j->segs[i].is_legacy = r.version < 2;
        if (r.type == AQ_JREC_TRIM)
            rp->hdr[i].r.first = r.first; /* for repair_seal */
        if (r.type == AQ_JREC_SEGMENT || r.type == AQ_JREC_PUT ||
            r.type == AQ_JREC_END) {
            if (r.id > j->max_id)
                j->max_id = r.id;
        }
        if (r.type == AQ_JREC_PUT || r.type == AQ_JREC_END)
            j->segs[i].whole++;
        if (r.type != AQ_JREC_SEGMENT && r.type != AQ_JREC_TRIM &&
            rp->cb(&r, seq, rp->arg, rp->err) < 0)
            return -1;
        off += n;
    }
    j->segs[i].bytes = off;
    if (has_seal && off < seal && off == len)
        return damage(rp, i + 1, off, path,
                      "ends at offset %zu, but %s says it was sealed at "
                      "%" PRIu64 " bytes",
                      off, name, seal);
    if (has_seal && off == seal && len > seal)
        return damage(rp, i + 1, off, path,
                      "%zu bytes after offset %zu, where %s says it was "
                      "sealed",
                      len - off, off, name);
    if (off == len)
        return 0;
    valid = next_valid(data, len, off + 1);
    if (is_last && valid == -1) {
        /* A write cut short by a crash: drop it. */
        aq_log(AQ_LOG_WARN,
               "journal: %s: torn tail at offset %zu: %zu bytes dropped", path,
               off, len - off);
        if (cut_file(path, off) < 0)
            aq_log(AQ_LOG_WARN, "journal: cut %s: %s", path, strerror(errno));
        return 0;
    }
    return damage(rp, i + 1, off, path,
                  "damaged record at offset %zu, with %s after it", off,
                  valid != -1 ? "valid records" : "later segments");
}

/* Which segments the journal holds, by the newest one with a SEGMENT
 * record (the last, unless a crash came right after its creation): the
 * oldest named by its SEGMENT record or by a TRIM record after it. The
 * data read is kept in *data for the replay of segment *g. */
static int
find_first(struct replay *rp, size_t *g, unsigned char **data, size_t *len)
{
    struct aq_journal *j = rp->j;
    const struct seghdr *h;
    size_t off = 0, n;
    char path[PATH_BYTES];
    struct aq_jrec r;

    *g = j->nsegs - 1;
    if (!rp->hdr[*g].is_valid && *g > 0)
        (*g)--;
    h = &rp->hdr[*g];
    rp->first = 0;
    if (!h->is_valid || h->r.version != 2)
        return 0; /* format 1, or damage the replay finds */
    rp->first = h->r.first;
    seg_path(j, j->segs[*g].seq, path, sizeof path);
    if (read_file(path, data, len, rp->err) < 0)
        return -1;
    while (off < *len && (n = record_at(*data + off, *len - off)) != 0) {
        if (decode(*data + off + HDR_BYTES, n - HDR_BYTES, &r) == 0 &&
            r.type == AQ_JREC_TRIM)
            rp->first = r.first;
        off += n;
    }
    return 0;
}

/* After a repair dropped the newest segments, the TRIM records that named
 * the oldest segment may have gone with them: the last segment left (with
 * a SEGMENT record) gets one, unless what it says is right already. */
static void
repair_seal(struct replay *rp)
{
    struct aq_journal *j = rp->j;
    struct aq_jrec r = {.type = AQ_JREC_TRIM, .first = j->segs[rp->skip].seq};
    char path[PATH_BYTES];
    size_t k = j->nsegs;
    int fd;

    while (k > rp->skip && j->segs[k - 1].bytes == 0)
        k--;
    if (k == rp->skip || rp->hdr[k - 1].r.first == r.first)
        return;
    seg_path(j, j->segs[k - 1].seq, path, sizeof path);
    j->len = 0;
    encode(j, &r);
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 || write_all(fd, j->buf, j->len) < 0 || fdatasync(fd) < 0)
        aq_log(AQ_LOG_WARN, "journal: %s: %s", path, strerror(errno));
    else
        j->segs[k - 1].bytes += j->len;
    if (fd >= 0)
        close(fd);
    j->len = 0;
}

int
aq_journal_replay(struct aq_journal *j, bool repair, aq_journal_replay_cb *cb,
                  void *arg, uint64_t *last_id, bool *is_damaged,
                  struct aq_error *err)
{
    struct replay rp = {.j = j,
                        .repair = repair,
                        .cb = cb,
                        .arg = arg,
                        .is_damaged = is_damaged,
                        .err = err};
    unsigned char *gdata = NULL;
    size_t g = 0, glen = 0, gap = SIZE_MAX;
    int rc = 0;
    char path[PATH_BYTES], name[16], name2[16];

    *is_damaged = false;
    if (j->nsegs == 0)
        goto done;
    rp.hdr = xcalloc(j->nsegs, sizeof *rp.hdr);
    for (size_t i = 0; i < j->nsegs; i++) {
        seg_path(j, j->segs[i].seq, path, sizeof path);
        read_header(path, &rp.hdr[i]);
    }
    if (find_first(&rp, &g, &gdata, &glen) < 0) {
        rc = -1;
        goto done;
    }
    if (rp.first != 0) {
        while (rp.skip < j->nsegs && j->segs[rp.skip].seq < rp.first)
            rp.skip++;
        seg_path(j, rp.first, path, sizeof path);
        seg_name(j->segs[g].seq, name, sizeof name);
        if (rp.first > j->segs[g].seq) {
            seg_path(j, j->segs[g].seq, path, sizeof path);
            rc = damage(&rp, rp.skip, SIZE_MAX, path,
                        "names segment %08" PRIx32
                        " as the oldest, after it (offset 0)",
                        rp.first);
        } else if (j->segs[rp.skip].seq != rp.first)
            rc = damage(&rp, rp.skip, SIZE_MAX, path,
                        "missing, at offset 0 of the journal, which begins "
                        "there as %s says",
                        name);
        for (size_t i = rp.skip; i + 1 < j->nsegs && gap == SIZE_MAX; i++) {
            if (j->segs[i + 1].seq != j->segs[i].seq + 1)
                gap = i;
        }
    }
    for (size_t i = rp.skip; rc == 0 && i < j->nsegs; i++) {
        unsigned char *data = gdata;
        size_t len = glen;

        if (i != g || gdata == NULL) {
            seg_path(j, j->segs[i].seq, path, sizeof path);
            if (read_file(path, &data, &len, err) < 0) {
                rc = -1;
                break;
            }
        }
        rc = replay_segment(&rp, i, data, len);
        if (data != gdata)
            free(data);
        if (rc == 0 && i == gap) {
            seg_path(j, j->segs[i].seq + 1, path, sizeof path);
            rc = damage(&rp, i + 1, SIZE_MAX, path,
                        "missing: %s ends at offset %" PRIu64 " and %s follows",
                        seg_name(j->segs[i].seq, name, sizeof name),
                        j->segs[i].bytes,
                        seg_name(j->segs[i + 1].seq, name2, sizeof name2));
        }
    }
    if (rc < 0)
        goto done;
    rc = 0;
    if (rp.is_repaired && rp.first != 0 && j->nsegs > rp.skip)
        repair_seal(&rp);
    /* Older than the oldest: a deletion that a crash cut short. */
    while (rp.skip > 0 && j->nsegs > 0) {
        seg_path(j, j->segs[0].seq, path, sizeof path);
        aq_log(AQ_LOG_INFO,
               "journal: %s: older than the journal's first segment %08" PRIx32
               ", deleted",
               path, rp.first);
        seg_remove_at(j, 0);
        rp.skip--;
    }
done:
    free(rp.hdr);
    free(gdata);
    *last_id = j->max_id;
    return rc;
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
    remove_tmp_files(j);
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
    seg_add(j, seq);
    encode_segment(j, seq, journal_first(j), sealed);
    seg_path(j, seq, path, sizeof path);
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
    dir_sync(j);
    flush(j); /* the SEGMENT record */
    trim(j);
    return 0;
}

void
aq_journal_close(struct aq_journal *j)
{
    struct aq_journal_barrier *b;

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
