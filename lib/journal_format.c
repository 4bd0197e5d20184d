/* SPDX-License-Identifier: MIT */
/*
 * lib/journal_format.c: the journal on the disk. A record is a u32
 * length, a u32 CRC-32C over the length and the body, then the body,
 * little-endian whatever the host; segment files are %08x.aqj in the
 * journal's directory, numbered from 1 without gaps.
 *
 * Format 3 adds to PUT and END an optional tail after format 2's fields:
 * END's args, then name, batch and retried for both. The tail is written
 * only when one of its fields is set (a plain put's PUT is byte for byte
 * format 2's), and read when bytes remain: records of formats 1 and 2
 * decode as before, with the tail's fields absent. DELETE is new in 3.
 *
 * Format 4 extends that tail, for a job put with after only: a u32 count,
 * the ids (u64 each), then the after_policy (u8). A record without after
 * is byte for byte format 3's; one of format 3 decodes with after absent.
 *
 * SCHED is new in 4: a schedule's last fire (its name, time and job).
 */
#include "journal-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "xmalloc.h"

#define ABSENT UINT32_MAX /* the length of an absent string */

/* ---- encoding ---- */

static void
buf_reserve(struct aq_journal *j, size_t n)
{
    if (j->len + n > j->cap) {
        j->cap = (j->len + n) * 2;
        j->buf = xrealloc(j->buf, j->cap);
    }
}

/* Appenders: each writes at p and returns the byte after what it wrote;
 * the caller reserved the room. */
static unsigned char *
put_bytes(unsigned char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

/* Little-endian on the disk, whatever the host: written byte by byte,
 * which the compiler turns into one store where the host allows. */
static inline unsigned char *
put_u(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + bytes;
}

static unsigned char *
put_str(unsigned char *p, struct aq_jstr s)
{
    p = put_u(p, s.p != NULL ? s.len : ABSENT, 4);
    return s.p != NULL ? put_bytes(p, s.p, s.len) : p;
}

static size_t
str_size(struct aq_jstr s)
{
    return 4 + (s.p != NULL ? s.len : 0);
}

/* Format 3's tail of PUT and END: written when any of its fields is set
 * (END's args, name, batch, retried). */
static bool
has_tail(const struct aq_jrec *r)
{
    return (r->type == AQ_JREC_END && r->args.p != NULL) || r->name.p != NULL ||
           r->batch.p != NULL || r->retried != 0 || r->after.p != NULL;
}

static size_t
tail_size(const struct aq_jrec *r)
{
    if (!has_tail(r))
        return 0;
    return (r->type == AQ_JREC_END ? str_size(r->args) : 0) +
           str_size(r->name) + str_size(r->batch) + 4 +
           (r->after.p != NULL ? 4 + (size_t)r->after.len / 8 * 8 + 1 : 0);
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
    case AQ_JREC_DELETE:
        return 1 + 8;
    case AQ_JREC_SCHED:
        return 1 + 8 + 8 + str_size(r->name);
    case AQ_JREC_START:
        return 1 + 8 + 8;
    case AQ_JREC_REQUEUE:
        return 1 + 8 + 1 + 2 + 8 + str_size(r->result) + str_size(r->err_code) +
               str_size(r->err_message);
    case AQ_JREC_PUT:
        return 1 + 8 + 1 + 1 + 2 + 4 + 4 + 8 * 4 + str_size(r->queue) +
               str_size(r->key) + str_size(r->args) + str_size(r->result) +
               str_size(r->err_code) + str_size(r->err_message) + tail_size(r);
    case AQ_JREC_END:
        return 1 + 8 + 1 + 1 + 2 + 4 + 8 * 3 + str_size(r->queue) +
               str_size(r->key) + str_size(r->result) + str_size(r->err_code) +
               str_size(r->err_message) + tail_size(r);
    }
    return 0;
}

static unsigned char *
put_tail(unsigned char *p, const struct aq_jrec *r)
{
    if (!has_tail(r))
        return p;
    if (r->type == AQ_JREC_END)
        p = put_str(p, r->args);
    p = put_str(p, r->name);
    p = put_str(p, r->batch);
    p = put_u(p, r->retried, 4);
    if (r->after.p != NULL) {
        p = put_u(p, r->after.len / 8, 4);
        p = put_bytes(p, r->after.p, (size_t)r->after.len / 8 * 8);
        p = put_u(p, r->after_policy, 1);
    }
    return p;
}

/* Appends the header and body of r to the buffer; returns its size. */
size_t
journal_encode(struct aq_journal *j, const struct aq_jrec *r)
{
    size_t body = body_size(r);
    unsigned char *start, *p;
    uint32_t crc;

    buf_reserve(j, HDR_BYTES + body);
    start = (unsigned char *)j->buf + j->len;
    p = put_u(start, body, 4);
    p = put_u(p, 0, 4); /* the CRC, filled in below */
    p = put_u(p, (uint64_t)r->type, 1);
    p = put_u(p, r->id, 8);
    switch (r->type) {
    case AQ_JREC_SEGMENT:
        p = put_u(p, FORMAT_VERSION, 4);
        p = put_u(p, r->seq, 4);
        p = put_u(p, r->first, 4);
        p = put_u(p, r->prev_bytes, 8);
        break;
    case AQ_JREC_TRIM:
        p = put_u(p, r->first, 4);
        break;
    case AQ_JREC_DELETE:
        break;
    case AQ_JREC_SCHED:
        p = put_u(p, (uint64_t)r->due_us, 8);
        p = put_str(p, r->name);
        break;
    case AQ_JREC_START:
        p = put_u(p, (uint64_t)r->started_us, 8);
        break;
    case AQ_JREC_REQUEUE:
        p = put_u(p, r->state, 1);
        p = put_u(p, r->attempts, 2);
        p = put_u(p, (uint64_t)r->due_us, 8);
        p = put_str(p, r->result);
        p = put_str(p, r->err_code);
        p = put_str(p, r->err_message);
        break;
    case AQ_JREC_PUT:
        p = put_u(p, r->kind, 1);
        p = put_u(p, r->state, 1);
        p = put_u(p, r->attempts, 2);
        p = put_u(p, (uint32_t)r->priority, 4);
        p = put_u(p, (uint32_t)r->retries, 4);
        p = put_u(p, (uint64_t)r->timeout_us, 8);
        p = put_u(p, (uint64_t)r->created_us, 8);
        p = put_u(p, (uint64_t)r->started_us, 8);
        p = put_u(p, (uint64_t)r->due_us, 8);
        p = put_str(p, r->queue);
        p = put_str(p, r->key);
        p = put_str(p, r->args);
        p = put_str(p, r->result);
        p = put_str(p, r->err_code);
        p = put_str(p, r->err_message);
        p = put_tail(p, r);
        break;
    case AQ_JREC_END:
        p = put_u(p, r->kind, 1);
        p = put_u(p, r->state, 1);
        p = put_u(p, r->attempts, 2);
        p = put_u(p, (uint32_t)r->priority, 4);
        p = put_u(p, (uint64_t)r->created_us, 8);
        p = put_u(p, (uint64_t)r->started_us, 8);
        p = put_u(p, (uint64_t)r->finished_us, 8);
        p = put_str(p, r->queue);
        p = put_str(p, r->key);
        p = put_str(p, r->result);
        p = put_str(p, r->err_code);
        p = put_str(p, r->err_message);
        p = put_tail(p, r);
        break;
    }
    /* The CRC covers the length too, so a corrupt length is caught. */
    crc = aq_crc32c(0, start, 4);
    crc = aq_crc32c(crc, start + HDR_BYTES, body);
    put_u(start + 4, crc, 4);
    j->len += HDR_BYTES + body;
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

/* Format 3's tail, if the body goes on (see the top of the file). */
static void
get_tail(struct reader *rd, struct aq_jrec *r)
{
    uint64_t n;

    if (rd->bad || rd->p == rd->end)
        return;
    if (r->type == AQ_JREC_END)
        r->args = get_str(rd);
    r->name = get_str(rd);
    r->batch = get_str(rd);
    r->retried = (uint32_t)get_u(rd, 4);
    if (rd->bad || rd->p == rd->end)
        return; /* format 3 */
    n = get_u(rd, 4);
    if (rd->bad || n == 0 || (uint64_t)(rd->end - rd->p) < n * 8) {
        rd->bad = true;
        return;
    }
    r->after = (struct aq_jstr){(const char *)rd->p, (uint32_t)(n * 8)};
    rd->p += n * 8;
    r->after_policy = (uint8_t)get_u(rd, 1);
}

/* Decodes a body (CRC already checked). Returns 0, or -1 if malformed. A
 * SEGMENT record of a later version decodes as far as its version. */
int
journal_decode(const unsigned char *body, size_t len, struct aq_jrec *r)
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
    case AQ_JREC_DELETE:
        break;
    case AQ_JREC_SCHED:
        r->due_us = (int64_t)get_u(&rd, 8);
        r->name = get_str(&rd);
        if (r->name.p == NULL)
            return -1;
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
        get_tail(&rd, r);
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
        get_tail(&rd, r);
        break;
    default:
        return -1;
    }
    return rd.bad || rd.p != rd.end ? -1 : 0;
}

uint32_t
journal_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The size of a valid record at p (n bytes left), or 0. */
size_t
journal_record_at(const unsigned char *p, size_t n)
{
    uint32_t len, crc;

    if (n < HDR_BYTES)
        return 0;
    len = journal_le32(p);
    if (len == 0 || len > MAX_RECORD_BYTES || len > n - HDR_BYTES)
        return 0;
    crc = aq_crc32c(0, p, 4);
    crc = aq_crc32c(crc, p + HDR_BYTES, len);
    return crc == journal_le32(p + 4) ? HDR_BYTES + len : 0;
}

/* ---- segments ---- */

void
journal_seg_path(const struct aq_journal *j, uint32_t seq, char *buf,
                 size_t len)
{
    snprintf(buf, len, "%s/%08" PRIx32 SEG_SUFFIX, j->dir, seq);
}

void
journal_tmp_path(const struct aq_journal *j, uint32_t seq, char *buf,
                 size_t len)
{
    snprintf(buf, len, "%s/%08" PRIx32 TMP_SUFFIX, j->dir, seq);
}

/* The file name of segment seq, for messages that name two. */
const char *
journal_seg_name(uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%08" PRIx32 SEG_SUFFIX, seq);
    return buf;
}

struct segment *
journal_seg_find(struct aq_journal *j, uint32_t seq)
{
    /* Mostly the newest ones: look from the end. */
    for (size_t i = j->nsegs; i-- > 0;) {
        if (j->segs[i].seq == seq)
            return &j->segs[i];
    }
    return NULL;
}

struct segment *
journal_seg_add(struct aq_journal *j, uint32_t seq)
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
int
journal_dir_sync(const struct aq_journal *j)
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

void
journal_seg_remove_at(struct aq_journal *j, size_t i)
{
    char path[PATH_BYTES];

    journal_seg_path(j, j->segs[i].seq, path, sizeof path);
    if (unlink(path) < 0 && errno != ENOENT)
        aq_log(AQ_LOG_WARN, "journal: unlink %s: %s", path, strerror(errno));
    else
        aq_log(AQ_LOG_DEBUG, "journal: %s: no live job left, deleted", path);
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof *j->segs);
    j->nsegs--;
}

/* The oldest segment, as a new SEGMENT record names it: 0 while segments
 * of format 1 remain (they may have holes between them). */
uint32_t
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

int
journal_list_segments(struct aq_journal *j, struct aq_error *err)
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
            journal_seg_add(j, seq);
    }
    closedir(d);
    if (j->nsegs > 1)
        qsort(j->segs, j->nsegs, sizeof *j->segs, cmp_seg);
    return 0;
}

/* Deletes what a rewrite interrupted by a crash left: it was never
 * renamed into place, so nothing in it counts. */
void
journal_remove_tmp_files(const struct aq_journal *j)
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
        journal_tmp_path(j, seq, path, sizeof path);
        if (unlink(path) == 0)
            aq_log(AQ_LOG_INFO, "journal: %s: an unfinished rewrite, deleted",
                   path);
    }
    closedir(d);
}

int
journal_make_dirs(const char *path, struct aq_error *err)
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

/* Writes all of len bytes of p to fd. 0, or -1 with errno. */
int
journal_write_all(int fd, const char *p, size_t len)
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
