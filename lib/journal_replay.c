/* SPDX-License-Identifier: MIT */
/*
 * lib/journal_replay.c: opening a journal and reading it back. Replay
 * trusts nothing it reads: every record is CRC-checked and decoded within
 * its bounds, the segments must run without a hole from the oldest one
 * the newest names, and each sealed segment must end where its successor
 * says; only the tail of the last segment may be torn.
 */
#include "journal-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "xmalloc.h"

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

    if (journal_make_dirs(opts->path, err) < 0)
        return NULL;
    j = xcalloc(1, sizeof *j);
    TAILQ_INIT(&j->barriers);
    j->base = base;
    j->dir = xstrdup(opts->path);
    j->fsync = opts->fsync;
    j->segment_bytes = opts->segment_bytes;
    j->rehome = opts->rehome;
    j->arg = opts->arg;
    j->fd = -1;
    j->efd = -1;
    j->lock_fd = -1;
    TAILQ_INIT(&j->barriers);
    if ((j->lock_fd = lock_dir(j->dir, err)) < 0 ||
        journal_list_segments(j, err) < 0) {
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
    rec = journal_record_at(buf, (size_t)n);
    h->is_valid =
        rec != 0 &&
        journal_decode(buf + HDR_BYTES, rec - HDR_BYTES, &h->r) == 0 &&
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
        uint32_t len = journal_le32(p + off);
        unsigned type = p[off + HDR_BYTES];

        if (len == 0 || len > MAX_RECORD_BYTES || len > n - off - HDR_BYTES ||
            type < AQ_JREC_SEGMENT || type > AQ_JREC_SCHED)
            continue;
        if (budget < len)
            return -2;
        budget -= len;
        if (journal_record_at(p + off, n - off) != 0)
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
        journal_seg_remove_at(j, keep);
    if (keep > rp->skip && cut != SIZE_MAX) {
        journal_seg_path(j, j->segs[keep - 1].seq, kept, sizeof kept);
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

    journal_seg_path(j, seq, path, sizeof path);
    journal_seg_name(seq + 1, name, sizeof name);
    /* Format 2: the next segment says how long this one was sealed at. */
    has_seal = next != NULL && next->is_valid && next->r.version >= 2 &&
               next->r.prev_bytes != 0 && j->segs[i + 1].seq == seq + 1;
    if (has_seal)
        seal = next->r.prev_bytes;
    while (off < len && (n = journal_record_at(data + off, len - off)) != 0) {
        if (off + n > seal ||
            journal_decode(data + off + HDR_BYTES, n - HDR_BYTES, &r) < 0)
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
    if (!h->is_valid || h->r.version < 2)
        return 0; /* format 1, or damage the replay finds */
    rp->first = h->r.first;
    journal_seg_path(j, j->segs[*g].seq, path, sizeof path);
    if (read_file(path, data, len, rp->err) < 0)
        return -1;
    while (off < *len &&
           (n = journal_record_at(*data + off, *len - off)) != 0) {
        if (journal_decode(*data + off + HDR_BYTES, n - HDR_BYTES, &r) == 0 &&
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
    journal_seg_path(j, j->segs[k - 1].seq, path, sizeof path);
    j->len = 0;
    journal_encode(j, &r);
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 || journal_write_all(fd, j->buf, j->len) < 0 ||
        fdatasync(fd) < 0)
        aq_log(AQ_LOG_WARN, "journal: %s: %s", path, strerror(errno));
    else
        j->segs[k - 1].bytes += j->len;
    if (fd >= 0)
        close(fd);
    j->len = 0;
}

/* After a repair that kept nothing (the oldest segment was missing): a
 * segment holding only its SEGMENT record, which keeps the last job id
 * (ids are never reused) and names itself the oldest. */
static void
repair_fresh(struct aq_journal *j, uint32_t seq)
{
    struct aq_jrec r = {
        .type = AQ_JREC_SEGMENT, .id = j->max_id, .seq = seq, .first = seq};
    char path[PATH_BYTES];
    int fd;

    if (seq == 0)
        return;
    journal_seg_path(j, seq, path, sizeof path);
    j->len = 0;
    journal_encode(j, &r);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || journal_write_all(fd, j->buf, j->len) < 0 ||
        fdatasync(fd) < 0)
        aq_log(AQ_LOG_WARN, "journal: %s: %s", path, strerror(errno));
    else
        journal_seg_add(j, seq)->bytes = j->len;
    if (fd >= 0)
        close(fd);
    journal_dir_sync(j);
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
    uint32_t last_seq;
    int rc = 0;
    char path[PATH_BYTES], name[16], name2[16];

    *is_damaged = false;
    if (j->nsegs == 0)
        goto done;
    rp.hdr = xcalloc(j->nsegs, sizeof *rp.hdr);
    last_seq = j->segs[j->nsegs - 1].seq;
    for (size_t i = 0; i < j->nsegs; i++) {
        journal_seg_path(j, j->segs[i].seq, path, sizeof path);
        read_header(path, &rp.hdr[i]);
        /* the last id when each was made: ids stay unique even if a
         * repair drops the segments that hold them */
        if (rp.hdr[i].is_valid && rp.hdr[i].r.id > j->max_id)
            j->max_id = rp.hdr[i].r.id;
    }
    if (find_first(&rp, &g, &gdata, &glen) < 0) {
        rc = -1;
        goto done;
    }
    if (rp.first != 0) {
        while (rp.skip < j->nsegs && j->segs[rp.skip].seq < rp.first)
            rp.skip++;
        journal_seg_path(j, rp.first, path, sizeof path);
        journal_seg_name(j->segs[g].seq, name, sizeof name);
        if (rp.first > j->segs[g].seq) {
            journal_seg_path(j, j->segs[g].seq, path, sizeof path);
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
            journal_seg_path(j, j->segs[i].seq, path, sizeof path);
            if (read_file(path, &data, &len, err) < 0) {
                rc = -1;
                break;
            }
        }
        rc = replay_segment(&rp, i, data, len);
        if (data != gdata)
            free(data);
        if (rc == 0 && i == gap) {
            journal_seg_path(j, j->segs[i].seq + 1, path, sizeof path);
            rc = damage(
                &rp, i + 1, SIZE_MAX, path,
                "missing: %s ends at offset %" PRIu64 " and %s follows",
                journal_seg_name(j->segs[i].seq, name, sizeof name),
                j->segs[i].bytes,
                journal_seg_name(j->segs[i + 1].seq, name2, sizeof name2));
        }
    }
    if (rc < 0)
        goto done;
    rc = 0;
    if (rp.is_repaired && rp.first != 0 && j->nsegs > rp.skip)
        repair_seal(&rp);
    /* Older than the oldest: a deletion that a crash cut short. */
    while (rp.skip > 0 && j->nsegs > 0) {
        journal_seg_path(j, j->segs[0].seq, path, sizeof path);
        aq_log(AQ_LOG_INFO,
               "journal: %s: older than the journal's first segment %08" PRIx32
               ", deleted",
               path, rp.first);
        journal_seg_remove_at(j, 0);
        rp.skip--;
    }
    if (rp.is_repaired && j->nsegs == 0)
        repair_fresh(j, last_seq + 1);
done:
    free(rp.hdr);
    free(gdata);
    *last_id = j->max_id;
    return rc;
}
