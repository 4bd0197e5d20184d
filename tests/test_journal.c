/* SPDX-License-Identifier: MIT */
/*
 * tests/test_journal.c: the contract of lib/journal.h.
 * Each test works in its own mkdtemp directory (removed at the end) with its
 * own base, and waits only through run_until on a barrier's flag. Crashes
 * and damage are made by editing segment files: a record is a u32 length, a
 * u32 CRC-32C over the 4 length bytes and the body, then the body; segment
 * files are %08x.aqj and each starts with a SEGMENT record.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "error.h"
#include "fuzz/journal_input.h"
#include "journal.h"
#include "rng.h"
#include "suites.h"
#include "testutil.h"

#define WAIT_MS 5000            /* deadline for what must happen */
#define QUIET_MS 50             /* window in which nothing may happen */
#define TIMEOUT_S 30            /* per test */
#define BIG_SEGMENT (64u << 20) /* never reached: one segment */
#define SMALL_SEGMENT 4096u     /* the config's minimum: many segments */
#define HDR_BYTES 8             /* u32 length, u32 CRC-32C */
#define PATH_BYTES 512
#define MAX_SEGS 256
#define MAX_FRAMES 512
#define MAX_JOBS 1024
#define T0_US INT64_C(1763776800123456) /* a wall-clock time */

/* An aq_jstr initializer for a string literal (NULs inside count). */
#define STR(s)                                                                 \
    {                                                                          \
        (s), sizeof(s) - 1                                                     \
    }

static const char *const policy_names[] = {"batch", "always", "everysec",
                                           "never"};
static const enum aq_fsync all_policies[] = {AQ_FSYNC_BATCH, AQ_FSYNC_ALWAYS,
                                             AQ_FSYNC_EVERYSEC, AQ_FSYNC_NEVER};
/* The policies that leave the write to the loop (all but always). */
static const enum aq_fsync loop_policies[] = {AQ_FSYNC_BATCH, AQ_FSYNC_EVERYSEC,
                                              AQ_FSYNC_NEVER};

/* ---- files and directories ---- */

/* A test's directory: root is mkdtemp'd, the journal lives in root/j. */
struct tdir {
    char root[PATH_BYTES];
    char path[PATH_BYTES];
};

/* buf = dir/name; the test's paths always fit. */
static void
path_join(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);

    ck_assert_msg(n > 0 && (size_t)n < len, "path too long: %s/%s", dir, name);
}

static void
tdir_make(struct tdir *t)
{
    path_join(t->root, sizeof t->root, "/tmp", "aqj-XXXXXX");
    ck_assert_msg(mkdtemp(t->root) != NULL, "mkdtemp: %s", strerror(errno));
    path_join(t->path, sizeof t->path, t->root, "j");
}

/* root/name, for a second journal directory or a plain file. */
static void
tdir_sub(const struct tdir *t, const char *name, char *buf, size_t len)
{
    path_join(buf, len, t->root, name);
}

static int
rm_entry_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void
tdir_remove(struct tdir *t)
{
    ck_assert_msg(nftw(t->root, rm_entry_cb, 16, FTW_DEPTH | FTW_PHYS) == 0,
                  "remove %s: %s", t->root, strerror(errno));
}

static void
seg_file(const char *dir, uint32_t seq, char *buf, size_t len)
{
    char name[16];

    snprintf(name, sizeof name, "%08" PRIx32 ".aqj", seq);
    path_join(buf, len, dir, name);
}

/* The size of the file at path, or -1 if there is none. */
static long long
file_size(const char *path)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return -1;
    return (long long)st.st_size;
}

static long long
seg_size(const char *dir, uint32_t seq)
{
    char path[PATH_BYTES];

    seg_file(dir, seq, path, sizeof path);
    return file_size(path);
}

/* The whole file; the caller frees it. */
static unsigned char *
file_read(const char *path, size_t *len)
{
    long long size = file_size(path);
    unsigned char *data;
    FILE *f = fopen(path, "rb");

    ck_assert_msg(f != NULL && size >= 0, "read %s: %s", path, strerror(errno));
    data = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return data;
}

static unsigned char *
seg_read(const char *dir, uint32_t seq, size_t *len)
{
    char path[PATH_BYTES];

    seg_file(dir, seq, path, sizeof path);
    return file_read(path, len);
}

static void
file_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_msg(f != NULL, "write %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void
seg_write(const char *dir, uint32_t seq, const void *data, size_t len)
{
    char path[PATH_BYTES];

    seg_file(dir, seq, path, sizeof path);
    file_write(path, data, len);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* The sequence numbers of the segment files in dir, ascending; returns how
 * many there are. */
static size_t
dir_segments(const char *dir, uint32_t *seqs, size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    ck_assert_msg(d != NULL, "opendir %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        unsigned seq;
        int used = 0;

        if (strlen(e->d_name) == 12 &&
            sscanf(e->d_name, "%8x.aqj%n", &seq, &used) == 1 && used == 12) {
            ck_assert_uint_lt(n, max);
            seqs[n++] = seq;
        }
    }
    closedir(d);
    qsort(seqs, n, sizeof *seqs, cmp_u32);
    return n;
}

/* The bytes of all segment files in dir. */
static uint64_t
dir_bytes(const char *dir)
{
    uint32_t seqs[MAX_SEGS];
    size_t n = dir_segments(dir, seqs, MAX_SEGS);
    uint64_t total = 0;

    for (size_t i = 0; i < n; i++)
        total += (uint64_t)seg_size(dir, seqs[i]);
    return total;
}

/* ---- records on the disk ---- */

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

struct frame {
    size_t off;   /* in the segment file */
    size_t size;  /* header and body */
    uint8_t type; /* the body's first byte */
};

/* Splits a whole segment image into records, checking each one's length
 * and CRC-32C (over the length bytes and the body); returns the count. */
static size_t
frames_of(const unsigned char *data, size_t len, struct frame *fr, size_t max)
{
    size_t n = 0, off = 0;

    while (off < len) {
        uint32_t body, crc;

        ck_assert_msg(len - off >= HDR_BYTES, "partial header at %zu", off);
        body = le32(data + off);
        ck_assert_msg(body > 0 && body <= len - off - HDR_BYTES,
                      "record at %zu: body length %" PRIu32 " with %zu left",
                      off, body, len - off - HDR_BYTES);
        crc = aq_crc32c(0, data + off, 4);
        crc = aq_crc32c(crc, data + off + HDR_BYTES, body);
        ck_assert_msg(crc == le32(data + off + 4),
                      "record at %zu: CRC %08" PRIx32 ", stored %08" PRIx32,
                      off, crc, le32(data + off + 4));
        ck_assert_uint_lt(n, max);
        fr[n++] = (struct frame){off, HDR_BYTES + body, data[off + HDR_BYTES]};
        off += HDR_BYTES + body;
    }
    return n;
}

/* The records of segment seq in dir; returns the count. */
static size_t
seg_frames(const char *dir, uint32_t seq, struct frame *fr, size_t max)
{
    size_t len, n;
    unsigned char *data = seg_read(dir, seq, &len);

    n = frames_of(data, len, fr, max);
    free(data);
    return n;
}

/* ---- stderr capture: what replay logs ---- */

struct capture {
    FILE *f;
    int saved_fd; /* the real stderr while captured */
};

static void
capture_begin(struct capture *c)
{
    c->f = tmpfile();
    ck_assert_ptr_nonnull(c->f);
    fflush(stderr);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(c->f), STDERR_FILENO), 0);
}

/* Restores stderr; returns what was written meanwhile (caller frees). */
static char *
capture_end(struct capture *c)
{
    struct stat st;
    char *text;
    ssize_t n;

    fflush(stderr);
    dup2(c->saved_fd, STDERR_FILENO);
    close(c->saved_fd);
    ck_assert_int_eq(fstat(fileno(c->f), &st), 0);
    text = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(text);
    n = pread(fileno(c->f), text, (size_t)st.st_size, 0);
    ck_assert_int_eq(n, st.st_size);
    text[n] = '\0';
    fclose(c->f);
    return text;
}

/* Whether text holds v in decimal, as a whole number. */
static bool
has_number(const char *text, uint64_t v)
{
    char num[24];
    size_t n = (size_t)snprintf(num, sizeof num, "%" PRIu64, v);

    for (const char *p = text; (p = strstr(p, num)) != NULL; p++) {
        if ((p == text || !isdigit((unsigned char)p[-1])) &&
            !isdigit((unsigned char)p[n]))
            return true;
    }
    return false;
}

/* ---- journal records ---- */

/* A PUT of a realistic size (about 270 bytes encoded). */
static struct aq_jrec
filler_put(uint64_t id)
{
    static const char args[] =
        "{\"argv\":[\"/bin/sh\",\"-c\",\"echo filler; exit 0\"],"
        "\"env\":{\"A\":\"0123456789abcdef0123456789abcdef\","
        "\"B\":\"0123456789abcdef0123456789abcdef0123456789abcdef\"},"
        "\"cwd\":\"/var/tmp\",\"stdin\":\"the quick brown fox\"}";

    return (struct aq_jrec){
        .type = AQ_JREC_PUT,
        .id = id,
        .kind = 1,
        .state = 1,
        .retries = -1,
        .timeout_us = -1,
        .created_us = T0_US + (int64_t)id,
        .queue = STR("default"),
        .args = STR(args),
    };
}

static void
assert_field(size_t i, const char *name, int64_t got, int64_t want)
{
    ck_assert_msg(got == want,
                  "record %zu: %s is %" PRId64 ", expected %" PRId64, i, name,
                  got, want);
}

static void
assert_str(size_t i, const char *name, struct aq_jstr got, struct aq_jstr want)
{
    ck_assert_msg((got.p == NULL) == (want.p == NULL),
                  "record %zu: %s is %s, expected %s", i, name,
                  got.p == NULL ? "absent" : "present",
                  want.p == NULL ? "absent" : "present");
    if (want.p == NULL) {
        ck_assert_msg(got.len == 0, "record %zu: absent %s has length %u", i,
                      name, (unsigned)got.len);
        return;
    }
    ck_assert_msg(got.len == want.len, "record %zu: %s has %u bytes, not %u", i,
                  name, (unsigned)got.len, (unsigned)want.len);
    ck_assert_msg(memcmp(got.p, want.p, want.len) == 0,
                  "record %zu: %s bytes differ", i, name);
}

/* Every field of got equals want's, strings byte for byte. */
static void
assert_rec_eq(size_t i, const struct aq_jrec *got, const struct aq_jrec *want)
{
    assert_field(i, "type", got->type, want->type);
    assert_field(i, "id", (int64_t)got->id, (int64_t)want->id);
    assert_field(i, "kind", got->kind, want->kind);
    assert_field(i, "state", got->state, want->state);
    assert_field(i, "attempts", got->attempts, want->attempts);
    assert_field(i, "priority", got->priority, want->priority);
    assert_field(i, "retries", got->retries, want->retries);
    assert_field(i, "timeout_us", got->timeout_us, want->timeout_us);
    assert_field(i, "created_us", got->created_us, want->created_us);
    assert_field(i, "started_us", got->started_us, want->started_us);
    assert_field(i, "finished_us", got->finished_us, want->finished_us);
    assert_field(i, "due_us", got->due_us, want->due_us);
    assert_str(i, "queue", got->queue, want->queue);
    assert_str(i, "key", got->key, want->key);
    assert_str(i, "args", got->args, want->args);
    assert_str(i, "result", got->result, want->result);
    assert_str(i, "err_code", got->err_code, want->err_code);
    assert_str(i, "err_message", got->err_message, want->err_message);
    assert_field(i, "retried", got->retried, want->retried);
    assert_str(i, "name", got->name, want->name);
    assert_str(i, "batch", got->batch, want->batch);
    assert_str(i, "after", got->after, want->after);
    assert_field(i, "after_policy", got->after_policy, want->after_policy);
}

/* ---- replay into a collector ---- */

enum hold_mode { HOLD_NONE, HOLD_ALL, HOLD_SEG };

struct got {
    struct aq_jrec r; /* strings are owned copies */
    uint32_t seg;
};

struct collector {
    struct aq_journal *j; /* for holds */
    enum hold_mode hold;
    uint32_t hold_seg; /* HOLD_SEG: the one segment held */
    size_t fail_at;    /* the callback fails on this record; SIZE_MAX never */
    struct got *recs;  /* owned */
    size_t n, cap;
};

/* What one aq_journal_replay call returned and logged. */
struct replayed {
    int rc;
    uint64_t last_id;
    bool is_damaged;
    struct aq_error err;
    char *log; /* owned */
};

static void
collector_init(struct collector *c, struct aq_journal *j, enum hold_mode hold)
{
    memset(c, 0, sizeof *c);
    c->j = j;
    c->hold = hold;
    c->fail_at = SIZE_MAX;
}

static struct aq_jstr
str_copy(struct aq_jstr s)
{
    struct aq_jstr c = {NULL, 0};
    char *p;

    if (s.p == NULL)
        return c;
    p = malloc(s.len + 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p, s.p, s.len);
    c.p = p;
    c.len = s.len;
    return c;
}

static void
collector_free(struct collector *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct aq_jrec *r = &c->recs[i].r;

        free((void *)r->queue.p);
        free((void *)r->key.p);
        free((void *)r->args.p);
        free((void *)r->result.p);
        free((void *)r->err_code.p);
        free((void *)r->err_message.p);
        free((void *)r->name.p);
        free((void *)r->batch.p);
        free((void *)r->after.p);
    }
    free(c->recs);
    c->recs = NULL;
    c->n = c->cap = 0;
}

static int
collect_cb(const struct aq_jrec *r, uint32_t seg, void *arg,
           struct aq_error *err)
{
    struct collector *c = arg;
    struct aq_jrec *copy;

    if (c->n == c->fail_at) {
        aq_error_set(err, AQ_ERR_INTERNAL, "test: refused record %zu", c->n);
        return -1;
    }
    if (c->n == c->cap) {
        c->cap = c->cap != 0 ? c->cap * 2 : 64;
        c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
        ck_assert_ptr_nonnull(c->recs);
    }
    copy = &c->recs[c->n].r;
    *copy = *r;
    copy->queue = str_copy(r->queue);
    copy->key = str_copy(r->key);
    copy->args = str_copy(r->args);
    copy->result = str_copy(r->result);
    copy->err_code = str_copy(r->err_code);
    copy->err_message = str_copy(r->err_message);
    copy->name = str_copy(r->name);
    copy->batch = str_copy(r->batch);
    copy->after = str_copy(r->after);
    c->recs[c->n++].seg = seg;
    if (c->hold == HOLD_ALL || (c->hold == HOLD_SEG && seg == c->hold_seg))
        aq_journal_hold(c->j, seg);
    return 0;
}

static void
replay_into(struct aq_journal *j, bool repair, struct collector *c,
            struct replayed *out)
{
    struct capture cap;

    memset(out, 0, sizeof *out);
    capture_begin(&cap);
    out->rc = aq_journal_replay(j, repair, collect_cb, c, &out->last_id,
                                &out->is_damaged, &out->err);
    out->log = capture_end(&cap);
}

/* A clean replay: succeeds, no damage, nothing logged at warn level. */
static void
assert_clean(const struct replayed *rp)
{
    ck_assert_msg(rp->rc == 0, "replay failed: %s", rp->err.message);
    ck_assert_msg(!rp->is_damaged, "replay set is_damaged");
}

/* The PUT records collected have ids first..last, in order. */
static void
assert_put_ids(const struct collector *c, uint64_t first, uint64_t last)
{
    ck_assert_msg(c->n == last + 1 - first, "replay gave %zu records, not %d",
                  c->n, (int)(last + 1 - first));
    for (size_t i = 0; i < c->n; i++) {
        ck_assert_int_eq(c->recs[i].r.type, AQ_JREC_PUT);
        ck_assert_uint_eq(c->recs[i].r.id, first + i);
    }
}

/* ---- journals ---- */

static struct aq_journal_opts
opts_of(const char *path, enum aq_fsync fsync, size_t segment_bytes)
{
    return (struct aq_journal_opts){
        .path = path,
        .fsync = fsync,
        .segment_bytes = segment_bytes,
    };
}

static struct aq_journal *
open_ok(struct event_base *base, const struct aq_journal_opts *o)
{
    struct aq_error err = {0};
    struct aq_journal *j = aq_journal_open(base, o, &err);

    ck_assert_msg(j != NULL, "open %s: %s", o->path, err.message);
    return j;
}

static void
start_ok(struct aq_journal *j, uint64_t last_id)
{
    struct aq_error err = {0};

    ck_assert_msg(aq_journal_start(j, last_id, &err) == 0, "start: %s",
                  err.message);
}

/* Opens a journal that must be empty, replays and starts it. */
static struct aq_journal *
open_fresh(struct event_base *base, const struct aq_journal_opts *o)
{
    struct aq_journal *j = open_ok(base, o);
    struct collector c;
    struct replayed rp;

    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(rp.last_id, 0);
    collector_free(&c);
    free(rp.log);
    start_ok(j, rp.last_id);
    return j;
}

static void
flag_cb(void *arg, const struct aq_error *err)
{
    ck_assert_msg(err == NULL, "a barrier failed: %s", err->message);
    *(bool *)arg = true;
}

/* Runs the loop until all that was appended is durable. */
static void
settle(struct event_base *base, struct aq_journal *j)
{
    bool fired = false;

    if (aq_journal_barrier(j, flag_cb, &fired) != NULL)
        ck_assert_msg(run_until(base, &fired, WAIT_MS),
                      "a barrier did not fire within %d ms", WAIT_MS);
}

/* Opens the journal of o, replays it cleanly (holding nothing), checks
 * that its records are PUTs first..last, and closes it. */
static void
replays_puts(struct event_base *base, const struct aq_journal_opts *o,
             uint64_t first, uint64_t last)
{
    struct aq_journal *j = open_ok(base, o);
    struct collector c;
    struct replayed rp;

    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, first, last);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
}

/* Writes PUTs 1..njobs into a fresh journal at dir with small segments,
 * holding each job's segment so none is deleted, and closes it. Returns the
 * number of segments. */
static uint32_t
build_journal(const char *dir, uint64_t njobs)
{
    struct aq_journal_opts o = opts_of(dir, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    struct aq_journal *j = open_fresh(test_base, &o);
    uint32_t seg = 1, nsegs;

    for (uint64_t id = 1; id <= njobs; id++) {
        struct aq_jrec r = filler_put(id);

        seg = aq_journal_append(j, &r);
        aq_journal_hold(j, seg);
    }
    settle(test_base, j);
    nsegs = (uint32_t)aq_journal_segments(j);
    ck_assert_uint_eq(nsegs, seg);
    aq_journal_close(j);
    return nsegs;
}

/* ---- barriers ---- */

struct order {
    int ids[16];
    int n;
};

struct tbar {
    int id;
    bool fired;
    int calls;
    const bool *in_call;    /* true while the test is inside the journal */
    const char *path;       /* a file to measure when the barrier fires */
    long long size_at_fire; /* of path */
    struct order *log;      /* optional */
    bool may_fail;          /* else an error fails the test */
    bool failed;
    struct aq_error err; /* when failed */
};

static void
tbar_cb(void *arg, const struct aq_error *err)
{
    struct tbar *b = arg;

    ck_assert_msg(b->in_call == NULL || !*b->in_call,
                  "barrier %d ran inside a journal call", b->id);
    ck_assert_msg(err == NULL || b->may_fail, "barrier %d failed: %s", b->id,
                  err != NULL ? err->message : "");
    if (err != NULL) {
        b->failed = true;
        b->err = *err;
    }
    b->calls++;
    b->fired = true;
    if (b->path != NULL)
        b->size_at_fire = file_size(b->path);
    if (b->log != NULL) {
        ck_assert_int_lt(b->log->n, 16);
        b->log->ids[b->log->n++] = b->id;
    }
}

/* ---- format and round trip ---- */

START_TEST(segment_file_holds_crc_checked_records_starting_with_segment)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct frame fr[8];
    uint32_t seqs[4];
    size_t n;
    char path[PATH_BYTES];

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    for (uint64_t id = 1; id <= 3; id++) {
        struct aq_jrec r = filler_put(id);

        ck_assert_uint_eq(aq_journal_append(j, &r), 1);
    }
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, 4), 1);
    ck_assert_uint_eq(seqs[0], 1);
    seg_file(t.path, 1, path, sizeof path);
    ck_assert_str_eq(strrchr(path, '/') + 1, "00000001.aqj");
    n = seg_frames(t.path, 1, fr, 8);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(fr[0].type, AQ_JREC_SEGMENT);
    for (size_t i = 1; i < n; i++)
        ck_assert_int_eq(fr[i].type, AQ_JREC_PUT);
    ck_assert_int_eq(file_size(path), (long long)(fr[3].off + fr[3].size));
    ck_assert_uint_eq(aq_journal_bytes(j), fr[3].off + fr[3].size);
    ck_assert_uint_eq(aq_journal_segments(j), 1);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(every_record_type_replays_with_identical_fields_and_segments)
{
    enum { BIG_ARGS = 70000, NREC = 13 };
    static const char key_bin[] = {'k', '\0', 'e', 'y', '\xff'};
    static const char msg_bin[] = {'b', 'a', 'd', '\0', '\n', '\x80', 'x'};
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    char *big = malloc(BIG_ARGS);
    uint32_t segs[NREC];
    struct collector c;
    struct replayed rp;
    bool has_second_segment = false;
    struct rng r = {0xC0FFEEu};

    ck_assert_ptr_nonnull(big);
    rng_fill(&r, big, BIG_ARGS);
    big[0] = big[BIG_ARGS / 2] = big[BIG_ARGS - 1] = '\0';
    /* Absent strings (p NULL) and empty ones (len 0) must stay distinct;
     * strings hold NULs and arbitrary bytes. */
    const struct aq_jrec want[NREC] = {
        {.type = AQ_JREC_PUT,
         .id = 7,
         .kind = 1,
         .state = 2,
         .attempts = 3,
         .priority = -5,
         .retries = -1,
         .timeout_us = -1,
         .created_us = T0_US,
         .started_us = T0_US + 1,
         .due_us = T0_US + 2,
         .queue = STR("default"),
         .key = {key_bin, sizeof key_bin},
         .args = {big, BIG_ARGS},
         .result = STR("{\"partial\":true}"),
         .err_code = STR("timeout"),
         .err_message = {msg_bin, sizeof msg_bin}},
        {.type = AQ_JREC_PUT,
         .id = 8,
         .kind = 255,
         .state = 0,
         .attempts = 0,
         .priority = INT32_MIN,
         .retries = INT32_MAX,
         .timeout_us = INT64_MAX,
         .created_us = -1,
         .started_us = 0,
         .due_us = INT64_MIN,
         .queue = {"", 0},
         .key = {NULL, 0},
         .args = {"", 0},
         .result = {NULL, 0},
         .err_code = {"", 0},
         .err_message = {NULL, 0}},
        {.type = AQ_JREC_START, .id = 7, .started_us = T0_US + 3},
        {.type = AQ_JREC_REQUEUE,
         .id = 7,
         .state = 1,
         .attempts = 4,
         .due_us = T0_US + 4,
         .result = STR("\0\1\2"),
         .err_code = STR("exit"),
         .err_message = STR("exit code 3")},
        {.type = AQ_JREC_REQUEUE, .id = 8, .state = 0, .attempts = 1},
        {.type = AQ_JREC_END,
         .id = 9,
         .kind = 3,
         .state = 4,
         .attempts = UINT16_MAX,
         .priority = INT32_MAX,
         .created_us = T0_US,
         .started_us = T0_US + 5,
         .finished_us = INT64_MAX,
         .queue = STR("q\0x"),
         .key = STR("k"),
         .result = {big + 100, 5000},
         .err_code = {"", 0},
         .err_message = {msg_bin, sizeof msg_bin}},
        {.type = AQ_JREC_END,
         .id = 8,
         .kind = 2,
         .state = 5,
         .attempts = 1,
         .priority = -1,
         .created_us = -1,
         .started_us = 0,
         .finished_us = T0_US + 6,
         .queue = {"", 0},
         .key = {"", 0},
         .result = {"", 0},
         .err_code = {"", 0},
         .err_message = {"", 0}},
        {.type = AQ_JREC_START, .id = 3, .started_us = 0},
        /* format 3: END keeps args; PUT and END name, batch, retried;
         * DELETE */
        {.type = AQ_JREC_END,
         .id = 9,
         .kind = 0,
         .state = 4,
         .attempts = 1,
         .created_us = T0_US,
         .finished_us = T0_US + 8,
         .queue = STR("q"),
         .args = STR("{\"argv\":[\"/bin/false\"],\"n\":1e3}"),
         .retried = UINT32_MAX,
         .name = {msg_bin, sizeof msg_bin},
         .batch = {"", 0}},
        {.type = AQ_JREC_PUT,
         .id = 9,
         .state = 1,
         .retries = -1,
         .timeout_us = -1,
         .created_us = T0_US,
         .queue = STR("q"),
         .args = STR("{}"),
         .retried = 1,
         .name = {NULL, 0},
         .batch = STR("b")},
        {.type = AQ_JREC_DELETE, .id = 8},
        /* format 4: a schedule's last fire */
        {.type = AQ_JREC_SCHED,
         .id = 9,
         .due_us = T0_US + 60000000,
         .name = STR("nightly")},
        /* a lower id after a higher one: last_id is the highest, not the
         * last */
        {.type = AQ_JREC_PUT,
         .id = 3,
         .kind = 4,
         .state = 3,
         .attempts = 2,
         .priority = 100,
         .retries = 0,
         .timeout_us = 0,
         .created_us = T0_US + 7,
         .queue = STR("\xe2\x82\xac uro"),
         .args = STR("{}")},
    };

    tdir_make(&t);
    /* Small segments: the 70 kB record fills one, so the records spread
     * over several and seg must name each one's segment. */
    o = opts_of(t.path, AQ_FSYNC_BATCH, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    for (size_t i = 0; i < NREC; i++) {
        segs[i] = aq_journal_append(j, &want[i]);
        aq_journal_hold(j, segs[i]);
        has_second_segment |= segs[i] != segs[0];
    }
    ck_assert_msg(has_second_segment, "the records did not span segments");
    settle(test_base, j);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_msg(c.n == NREC, "replay gave %zu records, not %d", c.n, NREC);
    for (size_t i = 0; i < NREC; i++) {
        assert_rec_eq(i, &c.recs[i].r, &want[i]);
        ck_assert_msg(c.recs[i].seg == segs[i],
                      "record %zu: replayed from segment %" PRIu32
                      ", appended to %" PRIu32,
                      i, c.recs[i].seg, segs[i]);
    }
    ck_assert_uint_eq(rp.last_id, 9);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    free(big);
    tdir_remove(&t);
}
END_TEST

START_TEST(fields_a_record_type_does_not_carry_replay_as_zero)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct aq_jrec full = {
        .id = 5,
        .kind = 1,
        .state = 2,
        .attempts = 3,
        .priority = -4,
        .retries = 5,
        .timeout_us = 6,
        .created_us = T0_US,
        .started_us = T0_US + 1,
        .finished_us = T0_US + 2,
        .due_us = T0_US + 3,
        .queue = STR("q"),
        .key = STR("k"),
        .args = STR("a"),
        .result = STR("r"),
        .err_code = STR("c"),
        .err_message = STR("m"),
        .retried = 7,
        .name = STR("n"),
        .batch = STR("b"),
    };
    struct aq_jrec start = {
        .type = AQ_JREC_START, .id = 5, .started_us = T0_US + 1};
    struct aq_jrec requeue = {.type = AQ_JREC_REQUEUE,
                              .id = 5,
                              .state = 2,
                              .attempts = 3,
                              .due_us = T0_US + 3,
                              .result = STR("r"),
                              .err_code = STR("c"),
                              .err_message = STR("m")};
    struct aq_jrec end = full;

    end.type = AQ_JREC_END;
    end.retries = 0;
    end.timeout_us = 0;
    end.due_us = 0; /* END keeps args, name, batch, retried (format 3) */

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    full.type = AQ_JREC_START;
    aq_journal_append(j, &full);
    full.type = AQ_JREC_REQUEUE;
    aq_journal_append(j, &full);
    full.type = AQ_JREC_END;
    aq_journal_append(j, &full);
    settle(test_base, j);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 3);
    assert_rec_eq(0, &c.recs[0].r, &start);
    assert_rec_eq(1, &c.recs[1].r, &requeue);
    assert_rec_eq(2, &c.recs[2].r, &end);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(replay_stops_with_callbacks_error_when_callback_fails)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;

    tdir_make(&t);
    build_journal(t.path, 5);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    c.fail_at = 2;
    replay_into(j, false, &c, &rp);
    ck_assert_int_eq(rp.rc, -1);
    ck_assert_str_eq(rp.err.message, "test: refused record 2");
    ck_assert_msg(!rp.is_damaged, "a failing callback is not damage");
    ck_assert_uint_eq(c.n, 2);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

/* ---- last_id ---- */

START_TEST(empty_journal_replays_nothing_and_start_creates_segment_one)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    uint32_t seqs[4];
    struct frame fr[4];

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_BATCH, BIG_SEGMENT);
    j = open_fresh(test_base, &o); /* asserts no records and last_id 0 */
    ck_assert_uint_eq(aq_journal_segments(j), 1);
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, 4), 1);
    ck_assert_uint_eq(seqs[0], 1);
    ck_assert_uint_eq(seg_frames(t.path, 1, fr, 4), 1);
    ck_assert_int_eq(fr[0].type, AQ_JREC_SEGMENT);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(last_id_survives_in_segment_record_once_older_segments_are_gone)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    uint32_t seg = 0, seqs[8];

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    /* Nobody holds these: each rotation deletes the segment before. */
    for (uint64_t id = 1; id <= 60; id++) {
        struct aq_jrec r = filler_put(id);

        seg = aq_journal_append(j, &r);
    }
    ck_assert_uint_ge(seg, 3);
    settle(test_base, j);
    aq_journal_close(j);

    /* Replay holds nothing, so start deletes every old segment: only the
     * new one's SEGMENT record remembers id 60. */
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(rp.last_id, 60);
    collector_free(&c);
    free(rp.log);
    start_ok(j, rp.last_id);
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, 8), 1);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(rp.last_id, 60);
    collector_free(&c);
    free(rp.log);
    /* The caller may know a higher id: start records it. */
    start_ok(j, 1000);
    settle(test_base, j);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(rp.last_id, 1000);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(last_id_counts_an_end_id_after_its_segment_is_deleted)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct aq_jrec end = {.type = AQ_JREC_END,
                          .id = 50,
                          .kind = 1,
                          .state = 3,
                          .queue = STR("default")};
    struct aq_jrec start = {.type = AQ_JREC_START, .id = 50};
    uint32_t seg = 0;

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    ck_assert_uint_eq(aq_journal_append(j, &end), 1);
    /* Fill segments (START records home no job) until segment 1, which
     * nobody holds, is deleted by a rotation. */
    while (seg < 3) {
        start.started_us++;
        seg = aq_journal_append(j, &start);
    }
    settle(test_base, j);
    ck_assert_int_eq(seg_size(t.path, 1), -1);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
    ck_assert_msg(rp.last_id == 50,
                  "last_id %" PRIu64 " after the segment holding END id 50 "
                  "was deleted, expected 50",
                  rp.last_id);
}
END_TEST

/* ---- fsync policies and barriers ---- */

START_TEST(barrier_after_append_fires_from_loop_once_bytes_are_in_file)
{
    enum aq_fsync policy = all_policies[_i];
    const char *name = policy_names[policy];
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct aq_barrier *b;
    struct aq_jrec r = filler_put(1);
    bool in_call = false;
    char path[PATH_BYTES];
    long long before;
    uint64_t want;
    struct tbar tb = {.id = 1, .in_call = &in_call, .path = path};

    tdir_make(&t);
    o = opts_of(t.path, policy, BIG_SEGMENT);
    seg_file(t.path, 1, path, sizeof path);
    j = open_fresh(test_base, &o);
    settle(test_base, j);
    ck_assert_msg(aq_journal_barrier(j, tbar_cb, &tb) == NULL,
                  "%s: a barrier with nothing pending is not NULL", name);
    before = file_size(path);

    in_call = true;
    aq_journal_append(j, &r);
    want = aq_journal_bytes(j);
    b = aq_journal_barrier(j, tbar_cb, &tb);
    in_call = false;
    ck_assert_uint_gt(want, (uint64_t)before);

    if (policy == AQ_FSYNC_ALWAYS) {
        /* always writes and syncs inside append, so the record is durable
         * when append returns: the barrier is NULL and never fires. */
        ck_assert_msg(b == NULL, "always: barrier after append is not NULL");
        ck_assert_int_eq(file_size(path), (long long)want);
        run_for(test_base, QUIET_MS);
        ck_assert_int_eq(tb.calls, 0);
    } else {
        ck_assert_msg(b != NULL, "%s: barrier after append is NULL", name);
        ck_assert_msg(!tb.fired, "%s: barrier fired before the loop", name);
        /* written by the loop, once per iteration, not inside append */
        ck_assert_msg(file_size(path) == before,
                      "%s: append wrote to the file itself", name);
        ck_assert_msg(run_until(test_base, &tb.fired, WAIT_MS),
                      "%s: barrier did not fire within %d ms", name, WAIT_MS);
        ck_assert_int_eq(tb.calls, 1);
        ck_assert_msg(tb.size_at_fire == (long long)want,
                      "%s: file had %lld bytes when the barrier fired, "
                      "not %" PRIu64,
                      name, tb.size_at_fire, want);
        run_for(test_base, QUIET_MS);
        ck_assert_int_eq(tb.calls, 1);
    }
    ck_assert_msg(aq_journal_barrier(j, tbar_cb, &tb) == NULL,
                  "%s: a barrier once all is durable is not NULL", name);
    aq_journal_close(j);

    replays_puts(test_base, &o, 1, 1);
    tdir_remove(&t);
}
END_TEST

START_TEST(barriers_fire_in_the_order_they_were_taken)
{
    enum aq_fsync policy = loop_policies[_i];
    const char *name = policy_names[policy];
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct order seen = {.n = 0};
    struct tbar tb[5];

    tdir_make(&t);
    o = opts_of(t.path, policy, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    settle(test_base, j);
    for (int i = 0; i < 5; i++)
        tb[i] = (struct tbar){.id = i + 1, .log = &seen};
    for (int i = 0; i < 5; i++) {
        struct aq_jrec r = filler_put((uint64_t)i + 1);

        /* barriers 2 and 3 wait for the same record */
        if (i != 2)
            aq_journal_append(j, &r);
        ck_assert_msg(aq_journal_barrier(j, tbar_cb, &tb[i]) != NULL,
                      "%s: barrier %d is NULL", name, i + 1);
    }
    ck_assert_msg(run_until(test_base, &tb[4].fired, WAIT_MS),
                  "%s: last barrier did not fire", name);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(seen.n, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(seen.ids[i] == i + 1, "%s: call %d was barrier %d", name,
                      i, seen.ids[i]);
        ck_assert_int_eq(tb[i].calls, 1);
    }
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(cancelled_barriers_never_fire)
{
    enum aq_fsync policy = loop_policies[_i];
    const char *name = policy_names[policy];
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct aq_barrier *b[6];
    struct tbar tb[6];
    struct order seen = {.n = 0};
    struct aq_jrec r1 = filler_put(1), r2 = filler_put(2), r3 = filler_put(3);

    tdir_make(&t);
    o = opts_of(t.path, policy, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    settle(test_base, j);
    for (int i = 0; i < 6; i++)
        tb[i] = (struct tbar){.id = i + 1, .log = &seen};
    aq_journal_append(j, &r1);
    for (int i = 0; i < 3; i++)
        b[i] = aq_journal_barrier(j, tbar_cb, &tb[i]);
    aq_journal_append(j, &r2);
    for (int i = 3; i < 5; i++)
        b[i] = aq_journal_barrier(j, tbar_cb, &tb[i]);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(b[i] != NULL, "%s: barrier %d is NULL", name, i + 1);
    /* the middle of the list, its tail, then its head; then one more after
     * the cancelled tail */
    aq_journal_barrier_cancel(j, b[1]);
    aq_journal_barrier_cancel(j, b[4]);
    aq_journal_barrier_cancel(j, b[0]);
    aq_journal_append(j, &r3);
    b[5] = aq_journal_barrier(j, tbar_cb, &tb[5]);
    ck_assert_ptr_nonnull(b[5]);
    ck_assert_msg(run_until(test_base, &tb[5].fired, WAIT_MS),
                  "%s: barrier 6 did not fire", name);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(tb[0].calls, 0);
    ck_assert_int_eq(tb[1].calls, 0);
    ck_assert_int_eq(tb[2].calls, 1);
    ck_assert_int_eq(tb[3].calls, 1);
    ck_assert_int_eq(tb[4].calls, 0);
    ck_assert_int_eq(tb[5].calls, 1);
    ck_assert_int_eq(seen.n, 3);
    ck_assert_int_eq(seen.ids[0], 3);
    ck_assert_int_eq(seen.ids[1], 4);
    ck_assert_int_eq(seen.ids[2], 6);

    /* the only pending barrier, cancelled */
    tb[0].log = NULL;
    aq_journal_append(j, &r1);
    b[0] = aq_journal_barrier(j, tbar_cb, &tb[0]);
    ck_assert_ptr_nonnull(b[0]);
    aq_journal_barrier_cancel(j, b[0]);
    settle(test_base, j);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(tb[0].calls, 0);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(close_writes_buffered_records_and_drops_pending_barrier_uncalled)
{
    enum aq_fsync policy = all_policies[_i];
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct tbar tb = {.id = 1};

    tdir_make(&t);
    o = opts_of(t.path, policy, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    for (uint64_t id = 1; id <= 3; id++) {
        struct aq_jrec r = filler_put(id);

        aq_journal_append(j, &r);
    }
    /* NULL for always; else left pending, and close frees it */
    aq_journal_barrier(j, tbar_cb, &tb);
    aq_journal_close(j);
    run_for(test_base, QUIET_MS);
    ck_assert_int_eq(tb.calls, 0);

    replays_puts(test_base, &o, 1, 3);
    tdir_remove(&t);
}
END_TEST

/* Runs the loop until the journal works again (its retry timer) or
 * timeout_ms passes; returns whether it does. */
static bool
recovered_within(struct event_base *base, struct aq_journal *j, int timeout_ms)
{
    for (int waited = 0; aq_journal_error(j) != NULL && waited < timeout_ms;
         waited += 10)
        run_for(base, 10);
    return aq_journal_error(j) == NULL;
}

START_TEST(
    barrier_fails_while_a_write_fails_and_a_retry_writes_each_record_once)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct aq_jrec r = filler_put(1);
    struct rlimit old, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_sa;
    struct capture cap;
    struct tbar tb = {.id = 1, .may_fail = true}, tb2 = {.id = 2};
    struct aq_barrier *b, node;
    struct aq_error err = {0}, why = {0};
    char path[PATH_BYTES], *logged;
    long long before, size_during;
    uint64_t want;
    bool limited, lifted, fired, is_failing;
    int add_rc;

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_BATCH, BIG_SEGMENT);
    seg_file(t.path, 1, path, sizeof path);
    j = open_fresh(test_base, &o);
    settle(test_base, j);
    /* the limit also applies to the captured log: keep it above a line */
    while (file_size(path) < 1024) {
        aq_journal_append(j, &r);
        settle(test_base, j);
        r.id++;
    }
    before = file_size(path);

    /* A file size limit just past the end: write(2) writes what fits, then
     * fails with EFBIG, as for a full disk. The limit binds Check's own
     * message file too, so nothing asserts until it is lifted. */
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(sigaction(SIGXFSZ, &ign, &old_sa), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 10;
    capture_begin(&cap);
    limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    aq_journal_append(j, &r);
    want = aq_journal_bytes(j);
    b = aq_journal_barrier(j, tbar_cb, &tb);
    fired = run_until(test_base, &tb.fired, WAIT_MS);
    is_failing = aq_journal_error(j) != NULL;
    if (is_failing)
        why = *aq_journal_error(j);
    add_rc = aq_journal_barrier_add(j, &node, tbar_cb, &tb2, &err);
    size_during = file_size(path);
    lifted = setrlimit(RLIMIT_FSIZE, &old) == 0;
    ck_assert(limited && lifted);
    ck_assert_ptr_nonnull(b);
    ck_assert_msg(fired && tb.failed,
                  "the barrier did not fail although the write failed");
    ck_assert_int_eq(tb.err.code, AQ_ERR_INTERNAL);
    ck_assert_msg(strstr(tb.err.message, "journal: write: File too large"),
                  "the barrier's error does not name the failure: %s",
                  tb.err.message);
    ck_assert_msg(is_failing && strcmp(why.message, tb.err.message) == 0,
                  "aq_journal_error while failing: %s", why.message);
    ck_assert_msg(add_rc == -1 && strcmp(err.message, why.message) == 0,
                  "a barrier taken while failing: %d, %s", add_rc, err.message);
    ck_assert_int_lt(size_during, (long long)want);

    /* Room again: the retry writes the rest, each record once. */
    ck_assert_msg(recovered_within(test_base, j, WAIT_MS),
                  "the journal did not recover once writes could succeed");
    logged = capture_end(&cap);
    ck_assert_int_eq(sigaction(SIGXFSZ, &old_sa, NULL), 0);
    ck_assert_msg(strstr(logged, "journal: write: File too large") != NULL,
                  "the failed write was not logged: %s", logged);
    free(logged);
    ck_assert_int_eq(file_size(path), (long long)want);
    r.id++;
    aq_journal_append(j, &r);
    settle(test_base, j);
    ck_assert_int_eq(tb.calls, 1);
    ck_assert_int_eq(tb2.calls, 0);
    aq_journal_close(j);

    replays_puts(test_base, &o, 1, r.id);
    tdir_remove(&t);
}
END_TEST

/* ---- torn tails ---- */

/* A journal of two segments with PUTs 1..TORN_JOBS, read into memory. */
#define TORN_JOBS 20

struct image {
    unsigned char *seg1, *seg2; /* owned */
    size_t len1, len2;
    struct frame fr2[MAX_FRAMES];
    size_t n2;
};

static void
image_build(struct image *im, const struct tdir *t)
{
    ck_assert_uint_eq(build_journal(t->path, TORN_JOBS), 2);
    im->seg1 = seg_read(t->path, 1, &im->len1);
    im->seg2 = seg_read(t->path, 2, &im->len2);
    im->n2 = frames_of(im->seg2, im->len2, im->fr2, MAX_FRAMES);
    ck_assert_uint_ge(im->n2, 2);
    ck_assert_int_eq(im->fr2[im->n2 - 1].type, AQ_JREC_PUT);
}

static void
image_free(struct image *im)
{
    free(im->seg1);
    free(im->seg2);
}

/* Replays dir, holding nothing, and closes it. */
static void
replay_dir(struct event_base *base, const char *dir, bool repair,
           struct collector *c, struct replayed *rp)
{
    struct aq_journal_opts o = opts_of(dir, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    struct aq_journal *j = open_ok(base, &o);

    collector_init(c, j, HOLD_NONE);
    replay_into(j, repair, c, rp);
    aq_journal_close(j);
    c->j = NULL;
}

/* dir holds seg1 whole and seg2 as given; replay must drop seg2's tail
 * from cut on, keep PUTs 1..last, and say so. */
static void
assert_tail_dropped(struct event_base *base, const char *dir,
                    const struct image *im, const unsigned char *seg2,
                    size_t len2, size_t cut, uint64_t last, const char *what)
{
    struct collector c;
    struct replayed rp;

    seg_write(dir, 1, im->seg1, im->len1);
    seg_write(dir, 2, seg2, len2);
    replay_dir(base, dir, false, &c, &rp);
    ck_assert_msg(rp.rc == 0, "%s: replay failed: %s", what, rp.err.message);
    ck_assert_msg(!rp.is_damaged, "%s: is_damaged set", what);
    ck_assert_msg(c.n == last, "%s: %zu records, expected %" PRIu64, what, c.n,
                  last);
    for (size_t i = 0; i < c.n; i++)
        ck_assert_uint_eq(c.recs[i].r.id, i + 1);
    ck_assert_msg(rp.last_id == last, "%s: last_id %" PRIu64, what, rp.last_id);
    ck_assert_msg(seg_size(dir, 2) == (long long)cut,
                  "%s: segment 2 has %lld bytes after replay, not %zu", what,
                  seg_size(dir, 2), cut);
    ck_assert_int_eq(seg_size(dir, 1), (long long)im->len1);
    if (len2 > cut) {
        ck_assert_msg(has_number(rp.log, cut) && has_number(rp.log, len2 - cut),
                      "%s: the warning does not name offset %zu and size %zu: "
                      "%s",
                      what, cut, len2 - cut, rp.log);
    }
    collector_free(&c);
    free(rp.log);
}

START_TEST(torn_tail_of_every_length_is_dropped_and_replay_succeeds)
{
    struct tdir t;
    struct image im;
    char dir[PATH_BYTES], what[64];
    const struct frame *last;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct aq_jrec r = filler_put(TORN_JOBS);

    tdir_make(&t);
    image_build(&im, &t);
    last = &im.fr2[im.n2 - 1];
    tdir_sub(&t, "torn", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (size_t k = 1; k < last->size; k++) {
        snprintf(what, sizeof what, "%zu of %zu bytes", k, last->size);
        assert_tail_dropped(test_base, dir, &im, im.seg2, last->off + k,
                            last->off, TORN_JOBS - 1, what);
    }

    /* After the cut, the journal takes appends and replays clean. */
    o = opts_of(dir, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_ALL);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    collector_free(&c);
    free(rp.log);
    start_ok(j, rp.last_id);
    ck_assert_uint_eq(aq_journal_append(j, &r), 3);
    settle(test_base, j);
    aq_journal_close(j);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_msg(strstr(rp.log, "warn") == NULL, "replay warned: %s", rp.log);
    assert_put_ids(&c, 1, TORN_JOBS);
    ck_assert_uint_eq(c.recs[TORN_JOBS - 1].seg, 3);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);

    image_free(&im);
    tdir_remove(&t);
}
END_TEST

START_TEST(torn_segment_record_of_a_new_last_segment_is_dropped)
{
    struct tdir t;
    struct image im;
    char dir[PATH_BYTES], what[64];
    size_t seg_rec;

    tdir_make(&t);
    image_build(&im, &t);
    seg_rec = im.fr2[0].size; /* segment 2's SEGMENT record */
    tdir_sub(&t, "torn", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    /* A crash right after a rotation: segment 3 holds a part of its
     * SEGMENT record, or nothing at all. */
    for (size_t k = 0; k < seg_rec; k++) {
        struct collector c;
        struct replayed rp;

        snprintf(what, sizeof what, "%zu of %zu bytes", k, seg_rec);
        seg_write(dir, 1, im.seg1, im.len1);
        seg_write(dir, 2, im.seg2, im.len2);
        seg_write(dir, 3, im.seg2, k);
        replay_dir(test_base, dir, false, &c, &rp);
        ck_assert_msg(rp.rc == 0, "%s: replay failed: %s", what,
                      rp.err.message);
        ck_assert_msg(!rp.is_damaged, "%s: is_damaged set", what);
        assert_put_ids(&c, 1, TORN_JOBS);
        ck_assert_uint_eq(rp.last_id, TORN_JOBS);
        ck_assert_int_eq(seg_size(dir, 3), 0);
        ck_assert_int_eq(seg_size(dir, 2), (long long)im.len2);
        collector_free(&c);
        free(rp.log);
    }
    image_free(&im);
    tdir_remove(&t);
}
END_TEST

START_TEST(garbage_or_zeros_after_the_last_record_are_dropped)
{
    static const size_t lens[] = {1, 7, 8, 9, 17, 64, 1000, 5000};
    struct tdir t;
    struct image im;
    char dir[PATH_BYTES], what[64];
    unsigned char *buf;

    tdir_make(&t);
    image_build(&im, &t);
    tdir_sub(&t, "torn", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    buf = malloc(im.len2 + 5000);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, im.seg2, im.len2);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        snprintf(what, sizeof what, "%zu random bytes", lens[i]);
        struct rng r = {0xABCD0000u + i};

        rng_fill(&r, buf + im.len2, lens[i]);
        assert_tail_dropped(test_base, dir, &im, buf, im.len2 + lens[i],
                            im.len2, TORN_JOBS, what);
    }
    /* a file system that extended the file but lost the data: zeros */
    memset(buf + im.len2, 0, 4096);
    assert_tail_dropped(test_base, dir, &im, buf, im.len2 + 4096, im.len2,
                        TORN_JOBS, "4096 zero bytes");
    free(buf);
    image_free(&im);
    tdir_remove(&t);
}
END_TEST

START_TEST(last_record_with_any_byte_corrupt_is_dropped_as_torn)
{
    struct tdir t;
    struct image im;
    char dir[PATH_BYTES], what[64];
    unsigned char *buf;
    const struct frame *last;

    tdir_make(&t);
    image_build(&im, &t);
    last = &im.fr2[im.n2 - 1];
    tdir_sub(&t, "torn", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    buf = malloc(im.len2);
    ck_assert_ptr_nonnull(buf);
    /* every byte: the length, the CRC and the body */
    for (size_t p = 0; p < last->size; p++) {
        memcpy(buf, im.seg2, im.len2);
        buf[last->off + p] ^= 0x01;
        snprintf(what, sizeof what, "byte %zu of %zu flipped", p, last->size);
        assert_tail_dropped(test_base, dir, &im, buf, im.len2, last->off,
                            TORN_JOBS - 1, what);
    }
    free(buf);
    image_free(&im);
    tdir_remove(&t);
}
END_TEST

/* ---- damage ---- */

/* A failed replay's err names the segment file, the offset and --repair. */
static void
assert_damage_reported(const struct replayed *rp, const char *seg_path,
                       size_t off, const char *what)
{
    ck_assert_msg(rp->rc == -1, "%s: replay of a damaged journal succeeded",
                  what);
    ck_assert_msg(rp->is_damaged, "%s: is_damaged not set", what);
    ck_assert_msg(strstr(rp->err.message, seg_path) != NULL,
                  "%s: the error does not name %s: %s", what, seg_path,
                  rp->err.message);
    ck_assert_msg(has_number(rp->err.message, off),
                  "%s: the error does not name offset %zu: %s", what, off,
                  rp->err.message);
    ck_assert_msg(strstr(rp->err.message, "--repair") != NULL,
                  "%s: the error does not mention --repair: %s", what,
                  rp->err.message);
}

START_TEST(damage_before_valid_records_fails_and_repair_cuts_there)
{
    enum { JOBS = 6 };
    struct tdir t;
    struct frame fr[JOBS + 1];
    unsigned char *good, *bad;
    size_t len;
    char dir[PATH_BYTES], path[PATH_BYTES], what[64];

    tdir_make(&t);
    /* one segment: SEGMENT, then PUTs 1..JOBS */
    build_journal(t.path, JOBS);
    good = seg_read(t.path, 1, &len);
    ck_assert_uint_eq(frames_of(good, len, fr, JOBS + 1), JOBS + 1);
    bad = malloc(len);
    ck_assert_ptr_nonnull(bad);
    tdir_sub(&t, "damaged", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    seg_file(dir, 1, path, sizeof path);
    /* every record but the last (damage there is a torn tail) */
    for (size_t d = 0; d < JOBS; d++) {
        struct collector c;
        struct replayed rp;
        size_t kept = d > 0 ? d - 1 : 0; /* PUTs before record d */
        size_t got_len;
        unsigned char *after;

        memcpy(bad, good, len);
        bad[fr[d].off + fr[d].size / 2] ^= 0x10;
        snprintf(what, sizeof what, "record %zu damaged", d);

        seg_write(dir, 1, bad, len);
        replay_dir(test_base, dir, false, &c, &rp);
        assert_damage_reported(&rp, path, fr[d].off, what);
        after = seg_read(dir, 1, &got_len);
        ck_assert_msg(got_len == len && memcmp(after, bad, len) == 0,
                      "%s: a refused replay changed the file", what);
        free(after);
        collector_free(&c);
        free(rp.log);

        replay_dir(test_base, dir, true, &c, &rp);
        ck_assert_msg(rp.rc == 0, "%s: repair failed: %s", what,
                      rp.err.message);
        ck_assert_msg(!rp.is_damaged, "%s: repair set is_damaged", what);
        ck_assert_msg(c.n == kept, "%s: repair kept %zu records, not %zu", what,
                      c.n, kept);
        for (size_t i = 0; i < c.n; i++)
            ck_assert_uint_eq(c.recs[i].r.id, i + 1);
        ck_assert_msg(file_size(path) == (long long)fr[d].off,
                      "%s: repaired file has %lld bytes, not %zu", what,
                      file_size(path), fr[d].off);
        ck_assert_msg(has_number(rp.log, fr[d].off),
                      "%s: repair did not log the offset: %s", what, rp.log);
        collector_free(&c);
        free(rp.log);
    }
    free(good);
    free(bad);
    tdir_remove(&t);
}
END_TEST

START_TEST(damage_in_older_segment_fails_and_repair_deletes_later_segments)
{
    struct tdir t;
    struct frame fr[MAX_FRAMES];
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct aq_jrec r = filler_put(99);
    uint32_t nsegs, seqs[8];
    unsigned char *data;
    size_t len;
    char path[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 40);
    ck_assert_uint_ge(nsegs, 3);
    data = seg_read(t.path, 1, &len);
    ck_assert_uint_ge(frames_of(data, len, fr, MAX_FRAMES), 4);
    /* the second PUT of segment 1: PUT 1 precedes the damage */
    data[fr[2].off + fr[2].size / 2] ^= 0x04;
    seg_write(t.path, 1, data, len);
    free(data);
    seg_file(t.path, 1, path, sizeof path);

    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_damage_reported(&rp, path, fr[2].off, "segment 1 damaged");
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, 8), nsegs);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_ALL);
    replay_into(j, true, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, 1, 1);
    ck_assert_uint_eq(c.recs[0].seg, 1);
    ck_assert_int_eq(file_size(path), (long long)fr[2].off);
    ck_assert_uint_eq(dir_segments(t.path, seqs, 8), 1);
    ck_assert_uint_eq(seqs[0], 1);
    ck_assert_uint_eq(aq_journal_segments(j), 1);
    collector_free(&c);
    free(rp.log);
    start_ok(j, rp.last_id);
    ck_assert_uint_eq(aq_journal_append(j, &r), 2);
    settle(test_base, j);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_uint_eq(c.recs[0].r.id, 1);
    ck_assert_uint_eq(c.recs[1].r.id, 99);
    ck_assert_uint_eq(c.recs[1].seg, 2);
    ck_assert_uint_eq(rp.last_id, 99);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(corrupt_last_record_of_an_older_segment_is_damage_not_a_torn_tail)
{
    struct tdir t;
    struct frame fr[MAX_FRAMES];
    struct collector c;
    struct replayed rp;
    uint32_t nsegs;
    unsigned char *data;
    size_t len, n;
    char path[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 40);
    ck_assert_uint_ge(nsegs, 2);
    data = seg_read(t.path, 1, &len);
    n = frames_of(data, len, fr, MAX_FRAMES);
    data[fr[n - 1].off + fr[n - 1].size / 2] ^= 0x80;
    seg_write(t.path, 1, data, len);
    seg_file(t.path, 1, path, sizeof path);
    replay_dir(test_base, t.path, false, &c, &rp);
    assert_damage_reported(&rp, path, fr[n - 1].off, "end of segment 1");
    ck_assert_int_eq(file_size(path), (long long)len);
    collector_free(&c);
    free(rp.log);
    free(data);
    tdir_remove(&t);
}
END_TEST

/* ---- segments, reclamation, rehoming ---- */

/* Releases every job homed in seg; homes[id] becomes 0. */
static void
release_segment(struct aq_journal *j, uint32_t *homes, uint64_t njobs,
                uint32_t seg)
{
    for (uint64_t id = 1; id <= njobs; id++) {
        if (homes[id] == seg) {
            aq_journal_release(j, seg);
            homes[id] = 0;
        }
    }
}

START_TEST(released_old_segments_are_deleted_but_never_the_active_one)
{
    enum { JOBS = 120 };
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    uint32_t homes[JOBS + 1], seqs[MAX_SEGS], active = 0;
    size_t nsegs = 1, n;
    uint64_t total;
    long long size;

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_BATCH, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    for (uint64_t id = 1; id <= JOBS; id++) {
        struct aq_jrec r = filler_put(id);

        active = aq_journal_append(j, &r);
        aq_journal_hold(j, active);
        homes[id] = active;
        ck_assert_uint_ge(aq_journal_segments(j), nsegs);
        nsegs = aq_journal_segments(j);
    }
    settle(test_base, j);
    ck_assert_uint_ge(nsegs, 6);
    ck_assert_uint_eq(active, nsegs);
    n = dir_segments(t.path, seqs, MAX_SEGS);
    ck_assert_uint_eq(n, nsegs);
    total = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(seqs[i], i + 1);
        size = seg_size(t.path, seqs[i]);
        /* a segment is closed once past segment_bytes, not long after */
        if (seqs[i] != active)
            ck_assert_uint_lt((uint64_t)size, SMALL_SEGMENT + 512);
        total += (uint64_t)size;
    }
    ck_assert_uint_eq(aq_journal_bytes(j), total);

    /* segment 1 goes with its last job, not before */
    size = seg_size(t.path, 1);
    for (uint64_t id = 1; homes[id] == 1; id++) {
        if (homes[id + 1] != 1)
            ck_assert_msg(seg_size(t.path, 1) == size,
                          "segment 1 went while job %" PRIu64 " held it", id);
        aq_journal_release(j, 1);
        homes[id] = 0;
    }
    run_for(test_base, 1);
    ck_assert_int_eq(seg_size(t.path, 1), -1);
    ck_assert_uint_eq(aq_journal_segments(j), nsegs - 1);
    ck_assert_uint_eq(aq_journal_bytes(j), dir_bytes(t.path));
    /* (a TRIM record in the active segment says so) */
    ck_assert_uint_gt(aq_journal_bytes(j), total - (uint64_t)size);

    /* a middle one waits for those before it: the journal has no holes */
    size = seg_size(t.path, 3);
    release_segment(j, homes, JOBS, 3);
    run_for(test_base, 1);
    ck_assert_int_eq(seg_size(t.path, 3), size);
    ck_assert_uint_eq(aq_journal_segments(j), nsegs - 1);
    release_segment(j, homes, JOBS, 2);
    run_for(test_base, 1);
    ck_assert_int_eq(seg_size(t.path, 2), -1);
    ck_assert_int_eq(seg_size(t.path, 3), -1);
    ck_assert_int_ge(seg_size(t.path, 4), 0);
    ck_assert_uint_eq(aq_journal_segments(j), nsegs - 3);
    ck_assert_uint_eq(aq_journal_bytes(j), dir_bytes(t.path));

    /* the active one stays */
    release_segment(j, homes, JOBS, active);
    run_for(test_base, 1);
    ck_assert_int_ge(seg_size(t.path, active), 0);
    ck_assert_uint_eq(aq_journal_segments(j), nsegs - 3);

    /* all released: only the active one is left */
    for (uint32_t s = 1; s <= active; s++)
        release_segment(j, homes, JOBS, s);
    run_for(test_base, 1);
    ck_assert_uint_eq(aq_journal_segments(j), 1);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_uint_eq(seqs[0], active);
    ck_assert_uint_eq(aq_journal_bytes(j), (uint64_t)seg_size(t.path, active));

    /* unheld, the old active segment goes when a rotation retires it */
    for (uint64_t id = JOBS + 1;; id++) {
        struct aq_jrec r = filler_put(id);

        if (aq_journal_append(j, &r) != active)
            break;
        ck_assert_uint_lt(id, 2 * JOBS);
    }
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_uint_eq(seqs[0], active + 1);
    ck_assert_uint_eq(aq_journal_segments(j), 1);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

struct rehomer {
    struct aq_journal *j;
    uint32_t homes[MAX_JOBS + 1]; /* the live jobs' segments; 0 = not live */
    uint32_t active;              /* the segment of the last append */
    uint32_t asked[MAX_SEGS];     /* the segments rehome_cb was given */
    size_t nasked;
    size_t moved; /* jobs re-appended */
};

/* Re-appends the live jobs of the segments being evacuated, as the broker
 * does, recording which segments were evacuated (each at most once). */
static void
rehome_cb(struct aq_journal *j, void *arg)
{
    struct rehomer *h = arg;
    size_t before = h->nasked;

    for (uint64_t id = 1; id <= MAX_JOBS; id++) {
        uint32_t seg = h->homes[id], to;
        struct aq_jrec r;
        bool seen = false;

        if (seg == 0 || !aq_journal_is_evacuated(j, seg))
            continue;
        ck_assert_msg(seg != h->active, "rehome evacuates the active segment");
        for (size_t i = 0; i < h->nasked; i++)
            seen = seen || h->asked[i] == seg;
        for (size_t i = 0; i < before; i++)
            ck_assert_msg(h->asked[i] != seg,
                          "rehome evacuates segment %" PRIu32
                          " again, whose jobs all moved",
                          seg);
        if (!seen) {
            ck_assert_uint_lt(h->nasked, MAX_SEGS);
            h->asked[h->nasked++] = seg;
        }
        r = filler_put(id);
        to = aq_journal_append(j, &r);
        ck_assert_msg(to != seg, "a rehomed job went back to segment %" PRIu32,
                      seg);
        aq_journal_hold(j, to);
        aq_journal_release(j, seg);
        h->homes[id] = to;
        h->moved++;
    }
    ck_assert_msg(h->nasked > before, "rehome called with nothing to move");
}

START_TEST(rehome_moves_jobs_out_of_old_segments_which_are_then_deleted)
{
    enum { JOBS = 400, LIVE_UNTIL = 200 };
    struct tdir t;
    struct aq_journal_opts o;
    struct rehomer *h = calloc(1, sizeof *h);
    uint32_t seqs[MAX_SEGS], prev = 0;
    size_t n, max_segs = 0;
    struct collector c;
    struct replayed rp;

    ck_assert_ptr_nonnull(h);
    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    o.rehome = rehome_cb;
    o.arg = h;
    h->j = open_fresh(test_base, &o);
    /* The first job of each segment stays live (until LIVE_UNTIL); the
     * others finish at once, so they hold nothing. */
    for (uint64_t id = 1; id <= JOBS; id++) {
        struct aq_jrec r = filler_put(id);
        uint32_t seg = aq_journal_append(h->j, &r);

        h->active = seg;
        if (seg != prev && id <= LIVE_UNTIL) {
            aq_journal_hold(h->j, seg);
            h->homes[id] = seg;
        }
        prev = seg;
        settle(test_base, h->j);
        if (aq_journal_segments(h->j) > max_segs)
            max_segs = aq_journal_segments(h->j);
    }
    run_for(test_base, QUIET_MS);
    ck_assert_uint_ge(h->active, 20);
    ck_assert_msg(h->nasked >= 5,
                  "rehome was asked only %zu times in %" PRIu32 " segments",
                  h->nasked, h->active);
    /* Disk use follows the live jobs, not the history: a few segments at
     * once (rehoming runs from the loop after a rotation), not 20. */
    ck_assert_msg(max_segs <= 5, "%zu segments at once", max_segs);
    for (size_t i = 0; i < h->nasked; i++)
        ck_assert_msg(seg_size(t.path, h->asked[i]) == -1,
                      "rehomed segment %" PRIu32 " is still there",
                      h->asked[i]);
    n = dir_segments(t.path, seqs, MAX_SEGS);
    ck_assert_uint_eq(n, aq_journal_segments(h->j));
    for (uint64_t id = 1; id <= JOBS; id++) {
        if (h->homes[id] != 0)
            ck_assert_msg(seg_size(t.path, h->homes[id]) >= 0,
                          "job %" PRIu64 "'s segment %" PRIu32 " is gone", id,
                          h->homes[id]);
    }
    aq_journal_close(h->j);

    /* Each live job replays from its latest home. */
    h->j = open_ok(test_base, &o);
    collector_init(&c, h->j, HOLD_NONE);
    replay_into(h->j, false, &c, &rp);
    assert_clean(&rp);
    for (uint64_t id = 1; id <= JOBS; id++) {
        uint32_t seen = 0;

        if (h->homes[id] == 0)
            continue;
        for (size_t i = 0; i < c.n; i++) {
            if (c.recs[i].r.id == id)
                seen = c.recs[i].seg;
        }
        ck_assert_msg(seen == h->homes[id],
                      "job %" PRIu64 " replays from segment %" PRIu32
                      ", its home is %" PRIu32,
                      id, seen, h->homes[id]);
    }
    collector_free(&c);
    free(rp.log);
    aq_journal_close(h->j);
    free(h);
    tdir_remove(&t);
}
END_TEST

START_TEST(start_after_replay_creates_next_segment_and_deletes_unheld_ones)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct frame fr[4];
    uint32_t nsegs, seqs[MAX_SEGS];
    struct aq_jrec r = filler_put(61);

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 4);
    o = opts_of(t.path, AQ_FSYNC_BATCH, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_SEG);
    c.hold_seg = 2;
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, 1, 60);
    ck_assert_uint_eq(rp.last_id, 60);
    /* replay deletes nothing */
    ck_assert_uint_eq(aq_journal_segments(j), nsegs);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), nsegs);
    collector_free(&c);
    free(rp.log);

    /* Oldest first: segment 1 goes, 2 is held, and those after it wait
     * for it (the segments kept never have a hole). */
    start_ok(j, rp.last_id);
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), nsegs);
    ck_assert_uint_eq(seqs[0], 2);
    ck_assert_uint_eq(seqs[nsegs - 1], nsegs + 1);
    ck_assert_uint_eq(aq_journal_segments(j), nsegs);
    ck_assert_uint_eq(seg_frames(t.path, nsegs + 1, fr, 4), 2);
    ck_assert_int_eq(fr[0].type, AQ_JREC_SEGMENT);
    ck_assert_int_eq(fr[1].type, AQ_JREC_TRIM);
    ck_assert_uint_eq(aq_journal_append(j, &r), nsegs + 1);
    settle(test_base, j);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

/* ---- open ---- */

START_TEST(open_of_regular_file_fails_naming_the_path)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_error err = {0};
    char file[PATH_BYTES], below[PATH_BYTES];

    tdir_make(&t);
    tdir_sub(&t, "file", file, sizeof file);
    file_write(file, "x", 1);
    o = opts_of(file, AQ_FSYNC_BATCH, BIG_SEGMENT);
    ck_assert_ptr_null(aq_journal_open(test_base, &o, &err));
    ck_assert_msg(strstr(err.message, file) != NULL,
                  "the error does not name %s: %s", file, err.message);
    ck_assert_int_ne(err.code, 0);
    ck_assert_int_eq(file_size(file), 1);

    memset(&err, 0, sizeof err);
    tdir_sub(&t, "file/j", below, sizeof below);
    o = opts_of(below, AQ_FSYNC_BATCH, BIG_SEGMENT);
    ck_assert_ptr_null(aq_journal_open(test_base, &o, &err));
    ck_assert_msg(strstr(err.message, file) != NULL,
                  "the error does not name %s: %s", file, err.message);
    aq_journal_close(NULL);
    tdir_remove(&t);
}
END_TEST

START_TEST(open_creates_missing_nested_directories)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct stat st;
    char dir[PATH_BYTES];
    uint32_t seqs[4];

    tdir_make(&t);
    tdir_sub(&t, "a/b/c", dir, sizeof dir);
    o = opts_of(dir, AQ_FSYNC_BATCH, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(dir, seqs, 4), 1);
    ck_assert_uint_eq(seqs[0], 1);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(files_that_are_not_segments_are_ignored_and_kept)
{
    static const char *const names[] = {"notes.txt", "00000001.aqj.bak",
                                        "1.aqj", "0000000g.aqj"};
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    char path[PATH_BYTES];

    tdir_make(&t);
    ck_assert_int_eq(mkdir(t.path, 0700), 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_join(path, sizeof path, t.path, names[i]);
        file_write(path, "garbage", 7);
    }
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_fresh(test_base, &o); /* asserts an empty replay */
    for (uint64_t id = 1; id <= 40; id++) {
        struct aq_jrec r = filler_put(id);

        aq_journal_append(j, &r); /* unheld: rotations delete segments */
    }
    settle(test_base, j);
    aq_journal_close(j);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_join(path, sizeof path, t.path, names[i]);
        ck_assert_msg(file_size(path) == 7, "%s was touched", names[i]);
    }
    tdir_remove(&t);
}
END_TEST

/* ---- gaps and seals (format 2) ---- */

/* What the SEGMENT record opening segment seq says (format 2). */
struct seghead {
    uint8_t type;
    uint32_t version, seq, first;
    uint64_t prev_bytes;
};

static uint64_t
le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void
seg_head(const char *dir, uint32_t seq, struct seghead *h)
{
    size_t len;
    unsigned char *data = seg_read(dir, seq, &len);
    const unsigned char *b = data + HDR_BYTES;

    /* body: type, id (8), version (4), seq (4), first (4), prev_bytes (8) */
    ck_assert_uint_ge(len, HDR_BYTES + 29);
    h->type = b[0];
    h->version = le32(b + 9);
    h->seq = le32(b + 13);
    h->first = le32(b + 17);
    h->prev_bytes = le64(b + 21);
    free(data);
}

START_TEST(each_segment_names_its_number_the_oldest_and_its_sealed_predecessor)
{
    struct tdir t;
    struct seghead h;
    uint32_t nsegs;

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 3);
    for (uint32_t seq = 1; seq <= nsegs; seq++) {
        seg_head(t.path, seq, &h);
        ck_assert_int_eq(h.type, AQ_JREC_SEGMENT);
        ck_assert_uint_eq(h.version, 4);
        ck_assert_uint_eq(h.seq, seq);
        ck_assert_uint_eq(h.first, 1);
        if (seq == 1)
            ck_assert_uint_eq(h.prev_bytes, 0);
        else
            ck_assert_uint_eq(h.prev_bytes,
                              (uint64_t)seg_size(t.path, seq - 1));
    }
    tdir_remove(&t);
}
END_TEST

/* The PUTs of segment seq (records after its SEGMENT record). */
static size_t
seg_puts(const char *dir, uint32_t seq)
{
    struct frame fr[MAX_FRAMES];

    return seg_frames(dir, seq, fr, MAX_FRAMES) - 1;
}

START_TEST(missing_middle_segment_is_damage_and_repair_keeps_what_precedes_it)
{
    struct tdir t;
    struct collector c;
    struct replayed rp;
    uint32_t nsegs, seqs[MAX_SEGS];
    size_t kept;
    long long size1;
    char missing[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 4);
    kept = seg_puts(t.path, 1);
    size1 = seg_size(t.path, 1);
    seg_file(t.path, 2, missing, sizeof missing);
    ck_assert_int_eq(unlink(missing), 0);

    replay_dir(test_base, t.path, false, &c, &rp);
    assert_damage_reported(&rp, missing, (size_t)size1, "segment 2 missing");
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), nsegs - 1);
    collector_free(&c);
    free(rp.log);

    replay_dir(test_base, t.path, true, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, 1, kept);
    ck_assert_msg(strstr(rp.log, missing) != NULL,
                  "repair does not name %s: %s", missing, rp.log);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_int_eq(seg_size(t.path, 1), size1);
    collector_free(&c);
    free(rp.log);

    replay_dir(test_base, t.path, false, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, 1, kept);
    collector_free(&c);
    free(rp.log);
    tdir_remove(&t);
}
END_TEST

START_TEST(missing_oldest_segment_is_damage_and_repair_keeps_the_last_id)
{
    struct tdir t;
    struct collector c;
    struct replayed rp;
    uint32_t nsegs, seqs[MAX_SEGS];
    size_t in_last;
    char missing[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    /* the last id a SEGMENT record holds: the newest one's, made after
     * all but that segment's own PUTs */
    in_last = seg_puts(t.path, nsegs);
    seg_file(t.path, 1, missing, sizeof missing);
    ck_assert_int_eq(unlink(missing), 0);
    replay_dir(test_base, t.path, false, &c, &rp);
    assert_damage_reported(&rp, missing, 0, "segment 1 missing");
    collector_free(&c);
    free(rp.log);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), nsegs - 1);

    /* Nothing precedes the damage: repair keeps no record, but a fresh
     * segment keeps the last job id, so that ids are never reused. */
    replay_dir(test_base, t.path, true, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(rp.last_id, 60 - in_last);
    collector_free(&c);
    free(rp.log);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_uint_eq(seqs[0], nsegs + 1);
    replay_dir(test_base, t.path, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(rp.last_id, 60 - in_last);
    collector_free(&c);
    free(rp.log);
    tdir_remove(&t);
}
END_TEST

/* A copy of the journal in t/copy with segment seq replaced by data. */
static void
copy_with(const struct tdir *t, uint32_t nsegs, uint32_t seq,
          const unsigned char *data, size_t len, char *dir, size_t dir_len)
{
    tdir_sub(t, "copy", dir, dir_len);
    mkdir(dir, 0700);
    for (uint32_t s = 1; s <= nsegs; s++) {
        size_t n;
        unsigned char *img = seg_read(t->path, s, &n);

        if (s == seq)
            seg_write(dir, s, data, len);
        else
            seg_write(dir, s, img, n);
        free(img);
    }
}

START_TEST(sealed_segment_cut_at_a_record_boundary_is_damage)
{
    struct tdir t;
    struct frame fr[MAX_FRAMES];
    unsigned char *seg1;
    uint32_t nsegs, seqs[MAX_SEGS];
    size_t len, n, cuts[3];
    char dir[PATH_BYTES], path[PATH_BYTES], what[64];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 3);
    seg1 = seg_read(t.path, 1, &len);
    n = frames_of(seg1, len, fr, MAX_FRAMES);
    ck_assert_uint_ge(n, 4);
    /* without its last record, half of them, all but its SEGMENT record */
    cuts[0] = n - 1;
    cuts[1] = n / 2;
    cuts[2] = 1;
    for (size_t k = 0; k < 3; k++) {
        struct collector c;
        struct replayed rp;
        size_t cut = fr[cuts[k]].off;

        snprintf(what, sizeof what, "segment 1 cut at %zu", cut);
        copy_with(&t, nsegs, 1, seg1, cut, dir, sizeof dir);
        seg_file(dir, 1, path, sizeof path);
        replay_dir(test_base, dir, false, &c, &rp);
        assert_damage_reported(&rp, path, cut, what);
        ck_assert_int_eq(file_size(path), (long long)cut);
        collector_free(&c);
        free(rp.log);

        replay_dir(test_base, dir, true, &c, &rp);
        assert_clean(&rp);
        assert_put_ids(&c, 1, cuts[k] - 1);
        ck_assert_uint_eq(dir_segments(dir, seqs, MAX_SEGS), 1);
        collector_free(&c);
        free(rp.log);
        replay_dir(test_base, dir, false, &c, &rp);
        assert_clean(&rp);
        collector_free(&c);
        free(rp.log);
        for (uint32_t s = 1; s <= nsegs; s++) {
            seg_file(dir, s, path, sizeof path);
            unlink(path);
        }
    }
    free(seg1);
    tdir_remove(&t);
}
END_TEST

START_TEST(sealed_segment_with_bytes_past_its_seal_is_damage)
{
    struct tdir t;
    struct frame fr[MAX_FRAMES];
    struct collector c;
    struct replayed rp;
    unsigned char *seg1, *longer;
    uint32_t nsegs;
    size_t len, n;
    char dir[PATH_BYTES], path[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    seg1 = seg_read(t.path, 1, &len);
    n = frames_of(seg1, len, fr, MAX_FRAMES);
    /* a valid record appended after the seal: its last one again */
    longer = malloc(len + fr[n - 1].size);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, seg1, len);
    memcpy(longer + len, seg1 + fr[n - 1].off, fr[n - 1].size);
    copy_with(&t, nsegs, 1, longer, len + fr[n - 1].size, dir, sizeof dir);
    seg_file(dir, 1, path, sizeof path);
    replay_dir(test_base, dir, false, &c, &rp);
    assert_damage_reported(&rp, path, len, "a record past the seal");
    collector_free(&c);
    free(rp.log);
    /* repair cuts it off, keeping the later segments' records out */
    replay_dir(test_base, dir, true, &c, &rp);
    assert_clean(&rp);
    assert_put_ids(&c, 1, n - 1);
    ck_assert_int_eq(file_size(path), (long long)len);
    collector_free(&c);
    free(rp.log);
    free(longer);
    free(seg1);
    tdir_remove(&t);
}
END_TEST

START_TEST(segment_under_another_number_is_damage)
{
    struct tdir t;
    struct collector c;
    struct replayed rp;
    unsigned char *seg3;
    uint32_t nsegs;
    size_t len;
    char dir[PATH_BYTES], path[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 4);
    seg3 = seg_read(t.path, 3, &len);
    copy_with(&t, nsegs, 2, seg3, len, dir, sizeof dir);
    seg_file(dir, 2, path, sizeof path);
    replay_dir(test_base, dir, false, &c, &rp);
    assert_damage_reported(&rp, path, 0, "segment 3 copied over 2");
    collector_free(&c);
    free(rp.log);
    free(seg3);
    tdir_remove(&t);
}
END_TEST

START_TEST(segments_a_crash_left_behind_a_trim_are_skipped_and_deleted)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    uint32_t homes[41], seqs[MAX_SEGS];
    unsigned char *seg1;
    size_t len, in1 = 0;

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    for (uint64_t id = 1; id <= 40; id++) {
        struct aq_jrec r = filler_put(id);

        homes[id] = aq_journal_append(j, &r);
        aq_journal_hold(j, homes[id]);
    }
    settle(test_base, j);
    ck_assert_uint_ge(aq_journal_segments(j), 3);
    seg1 = seg_read(t.path, 1, &len);
    for (uint64_t id = 1; id <= 40; id++)
        in1 += homes[id] == 1;
    release_segment(j, homes, 40, 1);
    run_for(test_base, 1);
    ck_assert_int_eq(seg_size(t.path, 1), -1);
    aq_journal_close(j);
    /* the crash came after the TRIM record, before the unlink */
    seg_write(t.path, 1, seg1, len);

    replay_dir(test_base, t.path, false, &c, &rp);
    assert_clean(&rp);
    for (size_t i = 0; i < c.n; i++)
        ck_assert_uint_ne(c.recs[i].seg, 1);
    ck_assert_uint_eq(c.n, 40 - in1);
    ck_assert_int_eq(seg_size(t.path, 1), -1);
    ck_assert_uint_ge(dir_segments(t.path, seqs, MAX_SEGS), 2);
    ck_assert_uint_eq(seqs[0], 2);
    collector_free(&c);
    free(rp.log);
    free(seg1);
    tdir_remove(&t);
}
END_TEST

/* Rewrites the SEGMENT record of segment seq as format 1 wrote it: type,
 * id, then version (1 then; a later one to be refused); the records after
 * it are the same in formats 1 and 2. */
static void
seg_to_version(const char *dir, uint32_t seq, uint32_t version)
{
    struct frame fr[MAX_FRAMES];
    size_t len, n = 0;
    unsigned char *data = seg_read(dir, seq, &len), *out;
    unsigned char rec[HDR_BYTES + 13];
    uint32_t crc;

    ck_assert_uint_ge(frames_of(data, len, fr, MAX_FRAMES), 1);
    memset(rec, 0, sizeof rec);
    rec[0] = 13;
    memcpy(rec + HDR_BYTES, data + HDR_BYTES, 9); /* type and id */
    for (int i = 0; i < 4; i++)
        rec[HDR_BYTES + 9 + i] = (unsigned char)(version >> (8 * i));
    crc = aq_crc32c(0, rec, 4);
    crc = aq_crc32c(crc, rec + HDR_BYTES, 13);
    for (int i = 0; i < 4; i++)
        rec[4 + i] = (unsigned char)(crc >> (8 * i));
    out = malloc(len + sizeof rec);
    ck_assert_ptr_nonnull(out);
    memcpy(out, rec, sizeof rec);
    n = sizeof rec;
    memcpy(out + n, data + fr[0].size, len - fr[0].size);
    n += len - fr[0].size;
    seg_write(dir, seq, out, n);
    free(out);
    free(data);
}

static void
seg_to_format_1(const char *dir, uint32_t seq)
{
    seg_to_version(dir, seq, 1);
}

/* Sets the format version in the SEGMENT record of segment seq, its
 * other fields as they are (formats 2 and 3 share its layout). */
static void
seg_set_version(const char *dir, uint32_t seq, uint32_t version)
{
    size_t len;
    unsigned char *data = seg_read(dir, seq, &len);
    uint32_t body = le32(data), crc;

    for (int i = 0; i < 4; i++)
        data[HDR_BYTES + 9 + i] = (unsigned char)(version >> (8 * i));
    crc = aq_crc32c(0, data, 4);
    crc = aq_crc32c(crc, data + HDR_BYTES, body);
    for (int i = 0; i < 4; i++)
        data[4 + i] = (unsigned char)(crc >> (8 * i));
    seg_write(dir, seq, data, len);
    free(data);
}

/* A journal of format 2 (the previous version: no tail, so END without
 * args) replays as it was; the segments after it are format 3, whose
 * records carry the tail, and the two replay together. */
START_TEST(format_2_journal_replays_and_current_records_follow_it)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct seghead h;
    struct aq_jrec put = filler_put(1);
    struct aq_jrec end = {.type = AQ_JREC_END,
                          .id = 1,
                          .kind = 1,
                          .state = 4,
                          .attempts = 1,
                          .created_us = T0_US,
                          .finished_us = T0_US + 1,
                          .queue = STR("default"),
                          .err_code = STR("exit"),
                          .err_message = STR("exit code 1")};
    struct aq_jrec end3 = end;

    end3.id = 2;
    end3.args = (struct aq_jstr)STR("{\"argv\":[\"/bin/false\"]}");
    end3.retried = 2;
    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    aq_journal_append(j, &put);
    aq_journal_append(j, &end);
    settle(test_base, j);
    aq_journal_close(j);
    seg_set_version(t.path, 1, 2);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_ALL);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 2);
    assert_rec_eq(0, &c.recs[0].r, &put);
    assert_rec_eq(1, &c.recs[1].r, &end); /* args absent */
    collector_free(&c);
    free(rp.log);
    start_ok(j, rp.last_id);
    aq_journal_append(j, &end3);
    settle(test_base, j);
    aq_journal_close(j);
    seg_head(t.path, 2, &h);
    ck_assert_uint_eq(h.version, 4);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 3);
    assert_rec_eq(1, &c.recs[1].r, &end);
    assert_rec_eq(2, &c.recs[2].r, &end3);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

/* Format 4: a PUT or END with after carries the ids and the policy at
 * the end of the tail, and replays them; a plain PUT stays byte for byte
 * what format 3 wrote (no tail), and a record of format 3 (a tail that
 * ends at retried) decodes with after absent. */
START_TEST(format_4_after_replays_and_format_3_tails_decode_without_it)
{
    static const char ids[16] = {12, 0, 0, 0, 0, 0, 0, 0,
                                 1,  2, 0, 0, 0, 0, 0, 0};
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct frame fr[8];
    struct aq_jrec plain = filler_put(1), put = filler_put(2);
    struct aq_jrec named = filler_put(3), end;
    size_t n;

    put.state = 6; /* waiting */
    put.due_us = T0_US + 5000000;
    put.after = (struct aq_jstr){ids, sizeof ids};
    put.after_policy = 1;
    named.name = (struct aq_jstr)STR("nightly");
    end = put;
    end.type = AQ_JREC_END;
    end.id = 4;
    end.state = 5;
    end.retries = end.timeout_us = 0;
    end.due_us = 0;
    end.finished_us = T0_US + 9;
    end.after_policy = 0;
    end.err_code = (struct aq_jstr)STR("dependency_failed");
    end.err_message = (struct aq_jstr)STR("job 12 failed");
    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_NEVER, BIG_SEGMENT);
    j = open_fresh(test_base, &o);
    aq_journal_append(j, &plain);
    aq_journal_append(j, &put);
    aq_journal_append(j, &named);
    aq_journal_append(j, &end);
    settle(test_base, j);
    aq_journal_close(j);

    /* The plain PUT's body is format 2's size: nothing after err_message;
     * the named one's tail ends at retried (format 3's). */
    n = seg_frames(t.path, 1, fr, 8);
    ck_assert_uint_eq(n, 5); /* SEGMENT, then the four */
    ck_assert_uint_eq(fr[1].size, HDR_BYTES + 1 + 8 + 1 + 1 + 2 + 4 + 4 +
                                      8 * 4 + (4 + 7) + 4 +
                                      (4 + plain.args.len) + 4 * 3);
    ck_assert_uint_eq(fr[3].size,
                      fr[1].size + (4 + 7) + 4 + 4); /* name, batch, retried */
    ck_assert_uint_eq(fr[2].size, fr[1].size + 4 + 4 + 4 + 4 + sizeof ids + 1);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 4);
    assert_rec_eq(0, &c.recs[0].r, &plain);
    assert_rec_eq(1, &c.recs[1].r, &put);
    assert_rec_eq(2, &c.recs[2].r, &named); /* format 3's tail: no after */
    assert_rec_eq(3, &c.recs[3].r, &end);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

START_TEST(journal_of_a_later_format_is_refused_naming_its_version)
{
    struct tdir t;
    struct collector c;
    struct replayed rp;
    char path[PATH_BYTES];

    tdir_make(&t);
    build_journal(t.path, 4);
    seg_to_version(t.path, 1, 5);
    seg_file(t.path, 1, path, sizeof path);
    replay_dir(test_base, t.path, false, &c, &rp);
    ck_assert_int_eq(rp.rc, -1);
    ck_assert_msg(!rp.is_damaged, "a later format is not damage");
    ck_assert_msg(strstr(rp.err.message, path) != NULL &&
                      strstr(rp.err.message, "format version 5") != NULL,
                  "%s", rp.err.message);
    collector_free(&c);
    free(rp.log);
    tdir_remove(&t);
}
END_TEST

START_TEST(
    format_1_journal_with_holes_replays_and_turns_into_the_current_format)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct collector c;
    struct replayed rp;
    struct seghead h;
    uint32_t nsegs, seqs[MAX_SEGS];
    size_t in2;
    char path[PATH_BYTES];

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    ck_assert_uint_ge(nsegs, 4);
    for (uint32_t s = 1; s <= nsegs; s++)
        seg_to_format_1(t.path, s);
    /* format 1 deleted a segment whenever it was free: holes are fine */
    in2 = seg_puts(t.path, 2);
    seg_file(t.path, 2, path, sizeof path);
    ck_assert_int_eq(unlink(path), 0);
    o = opts_of(t.path, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_ALL);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 60 - in2);
    ck_assert_uint_eq(rp.last_id, 60);
    collector_free(&c);
    free(rp.log);
    /* While format 1 segments remain, new ones name no oldest segment. */
    start_ok(j, rp.last_id);
    settle(test_base, j);
    seg_head(t.path, nsegs + 1, &h);
    ck_assert_uint_eq(h.version, 4);
    ck_assert_uint_eq(h.first, 0);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 60 - in2);
    collector_free(&c);
    free(rp.log);
    /* Once they are gone, a TRIM names the oldest: holes are damage. */
    start_ok(j, rp.last_id);
    settle(test_base, j);
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_uint_eq(seqs[0], nsegs + 2);
    aq_journal_close(j);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(rp.last_id, 60);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    tdir_remove(&t);
}
END_TEST

/* ---- a failed fdatasync: the journal rewritten from memory ---- */

/* The owner of some jobs, as the broker is: rehome re-appends them. */
struct owner {
    uint32_t homes[MAX_JOBS + 1]; /* 0 = not live */
    size_t calls;
};

static void
owner_rehome_cb(struct aq_journal *j, void *arg)
{
    struct owner *o = arg;

    o->calls++;
    for (uint64_t id = 1; id <= MAX_JOBS; id++) {
        struct aq_jrec r = filler_put(id);
        uint32_t to;

        if (o->homes[id] == 0 || !aq_journal_is_evacuated(j, o->homes[id]))
            continue;
        to = aq_journal_append(j, &r);
        aq_journal_hold(j, to);
        aq_journal_release(j, o->homes[id]);
        o->homes[id] = to;
    }
}

/* Faults for tests/faultfs.c (linked in): the control file's lines apply
 * to the files under dir. */
static void
faults(const struct tdir *t, const char *lines)
{
    char control[PATH_BYTES], tmp[PATH_BYTES];

    tdir_sub(t, "faults", control, sizeof control);
    tdir_sub(t, "faults.new", tmp, sizeof tmp);
    file_write(tmp, lines, strlen(lines));
    ck_assert_int_eq(rename(tmp, control), 0);
    setenv("FAULTFS_CONTROL", control, 1);
    setenv("FAULTFS_DIR", t->path, 1);
}

START_TEST(failed_fdatasync_fails_barriers_until_a_rewrite_from_memory)
{
    enum aq_fsync policy = all_policies[_i];
    const char *name = policy_names[policy];
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct owner *own = calloc(1, sizeof *own);
    struct tbar tb = {.id = 1, .may_fail = true};
    struct aq_barrier node;
    struct aq_error err;
    struct capture cap;
    struct collector c;
    struct replayed rp;
    struct seghead h;
    struct aq_jrec r;
    uint32_t before[MAX_SEGS], seqs[MAX_SEGS], last;
    size_t nbefore;
    char *logged;

    ck_assert_ptr_nonnull(own);
    tdir_make(&t);
    o = opts_of(t.path, policy, SMALL_SEGMENT);
    o.rehome = owner_rehome_cb;
    o.arg = own;
    j = open_fresh(test_base, &o);
    for (uint64_t id = 1; id <= 40; id++) {
        r = filler_put(id);
        own->homes[id] = aq_journal_append(j, &r);
        aq_journal_hold(j, own->homes[id]);
    }
    settle(test_base, j);
    /* jobs 1-10 finished: not live, so not rewritten */
    for (uint64_t id = 1; id <= 10; id++) {
        aq_journal_release(j, own->homes[id]);
        own->homes[id] = 0;
    }
    settle(test_base, j);
    nbefore = dir_segments(t.path, before, MAX_SEGS);
    last = before[nbefore - 1];

    capture_begin(&cap);
    faults(&t, "fdatasync EIO\n");
    r = filler_put(41);
    own->homes[41] = aq_journal_append(j, &r);
    aq_journal_hold(j, own->homes[41]);
    /* always syncs inside append: the journal fails there */
    if (policy == AQ_FSYNC_ALWAYS)
        ck_assert_ptr_null(aq_journal_barrier(j, tbar_cb, &tb));
    else
        ck_assert_ptr_nonnull(aq_journal_barrier(j, tbar_cb, &tb));
    if (policy == AQ_FSYNC_BATCH) {
        ck_assert_msg(run_until(test_base, &tb.fired, WAIT_MS) && tb.failed,
                      "%s: the barrier did not fail", name);
        ck_assert_msg(strcmp(tb.err.message,
                             "journal: fdatasync: Input/output error") == 0,
                      "%s: %s", name, tb.err.message);
    }
    if (policy == AQ_FSYNC_EVERYSEC || policy == AQ_FSYNC_NEVER) {
        /* acknowledged at write; the sync comes later (a rotation, for
         * never): fill a segment */
        for (uint64_t id = 42; aq_journal_error(j) == NULL; id++) {
            ck_assert_uint_lt(id, 200);
            r = filler_put(id);
            aq_journal_append(j, &r);
            run_for(test_base, policy == AQ_FSYNC_EVERYSEC ? 100 : 1);
        }
    }
    ck_assert_msg(aq_journal_error(j) != NULL, "%s: the journal works", name);
    ck_assert_int_eq(aq_journal_barrier_add(j, &node, tbar_cb, &tb, &err), -1);
    ck_assert_str_eq(err.message, "journal: fdatasync: Input/output error");
    /* The rewrite is tried at once, and fails too: nothing changes. */
    run_for(test_base, 50);
    ck_assert_ptr_nonnull(aq_journal_error(j));
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), nbefore);

    faults(&t, "");
    ck_assert_msg(recovered_within(test_base, j, WAIT_MS),
                  "%s: no rewrite once fdatasync works", name);
    logged = capture_end(&cap);
    ck_assert_msg(strstr(logged, "fdatasync: Input/output error") != NULL &&
                      strstr(logged, "rewritten") != NULL,
                  "%s: the failure and the rewrite are not logged: %s", name,
                  logged);
    free(logged);
    /* One segment holds every live job; no temporary file is left. */
    ck_assert_uint_eq(dir_segments(t.path, seqs, MAX_SEGS), 1);
    ck_assert_uint_gt(seqs[0], last);
    seg_head(t.path, seqs[0], &h);
    ck_assert_uint_eq(h.first, seqs[0]);
    ck_assert_uint_eq(seg_puts(t.path, seqs[0]), 31);
    r = filler_put(300);
    ck_assert_uint_ge(aq_journal_append(j, &r), seqs[0]); /* may rotate */
    settle(test_base, j);
    aq_journal_close(j);

    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_NONE);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    ck_assert_uint_eq(c.n, 32);
    for (size_t i = 0; i < 31; i++)
        ck_assert_uint_eq(c.recs[i].r.id, i + 11);
    collector_free(&c);
    free(rp.log);
    aq_journal_close(j);
    unsetenv("FAULTFS_CONTROL");
    free(own);
    tdir_remove(&t);
}
END_TEST

START_TEST(close_after_a_failed_fdatasync_rewrites_the_journal)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct owner *own = calloc(1, sizeof *own);
    struct capture cap;
    struct aq_jrec r;
    char *logged;

    ck_assert_ptr_nonnull(own);
    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_ALWAYS, SMALL_SEGMENT);
    o.rehome = owner_rehome_cb;
    o.arg = own;
    j = open_fresh(test_base, &o);
    capture_begin(&cap);
    faults(&t, "fdatasync EIO\n");
    for (uint64_t id = 1; id <= 5; id++) {
        r = filler_put(id);
        own->homes[id] = aq_journal_append(j, &r);
        aq_journal_hold(j, own->homes[id]);
    }
    faults(&t, "");
    aq_journal_close(j);
    logged = capture_end(&cap);
    free(logged);

    replays_puts(test_base, &o, 1, 5);
    unsetenv("FAULTFS_CONTROL");
    free(own);
    tdir_remove(&t);
}
END_TEST

START_TEST(no_inode_for_a_new_segment_grows_the_active_one_then_rotates)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct capture cap;
    uint64_t id = 1;
    uint32_t seg = 1;
    char *logged;

    tdir_make(&t);
    o = opts_of(t.path, AQ_FSYNC_BATCH, SMALL_SEGMENT);
    j = open_fresh(test_base, &o);
    capture_begin(&cap);
    faults(&t, "create ENOSPC\n");
    for (; id <= 60; id++) {
        struct aq_jrec r = filler_put(id);

        seg = aq_journal_append(j, &r);
        aq_journal_hold(j, seg);
    }
    settle(test_base, j);
    ck_assert_uint_eq(seg, 1);
    ck_assert_ptr_null(aq_journal_error(j));
    ck_assert_int_gt(seg_size(t.path, 1), 3 * SMALL_SEGMENT);
    /* once a file can be created, a rotation a second later */
    faults(&t, "");
    for (int waited = 0; seg == 1 && waited < WAIT_MS; waited += 20) {
        struct aq_jrec r = filler_put(id++);

        seg = aq_journal_append(j, &r);
        aq_journal_hold(j, seg);
        run_for(test_base, 20);
    }
    ck_assert_uint_eq(seg, 2);
    settle(test_base, j);
    logged = capture_end(&cap);
    ck_assert_msg(strstr(logged, "No space left on device") != NULL,
                  "the failed rotation is not logged: %s", logged);
    free(logged);
    aq_journal_close(j);

    replays_puts(test_base, &o, 1, id - 1);
    unsetenv("FAULTFS_CONTROL");
    tdir_remove(&t);
}
END_TEST

START_TEST(start_that_cannot_create_a_segment_fails_puts_until_it_can)
{
    struct tdir t;
    struct aq_journal_opts o;
    struct aq_journal *j;
    struct capture cap;
    struct collector c;
    struct replayed rp;
    struct aq_error err = {0};
    struct aq_barrier node;
    struct tbar tb = {.id = 1};
    struct aq_jrec r = filler_put(61);
    uint32_t nsegs;
    char *logged;

    tdir_make(&t);
    nsegs = build_journal(t.path, 60);
    o = opts_of(t.path, AQ_FSYNC_BATCH, SMALL_SEGMENT);
    j = open_ok(test_base, &o);
    collector_init(&c, j, HOLD_ALL);
    replay_into(j, false, &c, &rp);
    assert_clean(&rp);
    collector_free(&c);
    free(rp.log);
    capture_begin(&cap);
    faults(&t, "create ENOSPC\n");
    start_ok(j, rp.last_id);
    ck_assert_ptr_nonnull(aq_journal_error(j));
    ck_assert_msg(
        strstr(aq_journal_error(j)->message, "No space left on device") != NULL,
        "%s", aq_journal_error(j)->message);
    ck_assert_uint_eq(aq_journal_append(j, &r), nsegs + 1);
    ck_assert_int_eq(aq_journal_barrier_add(j, &node, tbar_cb, &tb, &err), -1);
    faults(&t, "");
    ck_assert(recovered_within(test_base, j, WAIT_MS));
    logged = capture_end(&cap);
    free(logged);
    settle(test_base, j);
    aq_journal_close(j);

    replays_puts(test_base, &o, 1, 61);
    unsetenv("FAULTFS_CONTROL");
    tdir_remove(&t);
}
END_TEST

/* ---- arbitrary bytes (tests/fuzz/journal_input.h) ---- */

#define FUZZ_INPUT_MAX (64u << 10)

/* The segment files of dir (at most 4) as one fuzz input. */
static size_t
pack_dir(const char *dir, uint8_t flags, uint8_t *buf, size_t cap)
{
    uint32_t seqs[MAX_SEGS];
    size_t n = dir_segments(dir, seqs, MAX_SEGS), lens[4], size;
    unsigned char *files[4];

    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, 4);
    for (size_t i = 0; i < n; i++)
        files[i] = seg_read(dir, seqs[i], &lens[i]);
    size = aq_fuzz_journal_pack(flags, (const uint8_t *const *)files, lens, n,
                                buf, cap);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    ck_assert_uint_gt(size, 0);
    return size;
}

/* A journal with every record type: PUT, START, REQUEUE, END, and a
 * TRIM (segment 1 released); closed, in dir. */
static void
every_record_journal(const char *dir)
{
    struct aq_journal_opts o = opts_of(dir, AQ_FSYNC_NEVER, SMALL_SEGMENT);
    struct aq_journal *j = open_fresh(test_base, &o);
    uint32_t homes[21];

    for (uint64_t id = 1; id <= 20; id++) {
        struct aq_jrec r = filler_put(id);
        struct aq_jrec start = {
            .type = AQ_JREC_START, .id = id, .started_us = T0_US};
        struct aq_jrec requeue = {.type = AQ_JREC_REQUEUE,
                                  .id = id,
                                  .state = 2,
                                  .attempts = 1,
                                  .err_code = STR("timeout"),
                                  .err_message = STR("timed out")};
        struct aq_jrec end = {.type = AQ_JREC_END,
                              .id = id,
                              .kind = 1,
                              .state = 4,
                              .attempts = 2,
                              .finished_us = T0_US + 5,
                              .queue = STR("default"),
                              .result = STR("{\"exit_code\":0}")};

        homes[id] = aq_journal_append(j, &r);
        aq_journal_hold(j, homes[id]);
        aq_journal_append(j, &start);
        aq_journal_append(j, &requeue);
        if (id % 3 == 0) {
            uint32_t to = aq_journal_append(j, &end);

            aq_journal_hold(j, to);
            aq_journal_release(j, homes[id]);
            homes[id] = to;
        }
    }
    settle(test_base, j);
    release_segment(j, homes, 20, 1);
    settle(test_base, j);
    run_for(test_base, 1);
    aq_journal_close(j);
}

/* Valid inputs: journals as asyncqd writes them. Returns how many. */
static size_t
make_seeds(const struct tdir *t, uint8_t **seeds, size_t *lens)
{
    char dir[PATH_BYTES];
    size_t n = 0;

    tdir_sub(t, "s0", dir, sizeof dir);
    build_journal(dir, 4);
    seeds[n] = malloc(FUZZ_INPUT_MAX);
    lens[n] = pack_dir(dir, 0, seeds[n], FUZZ_INPUT_MAX);
    n++;
    tdir_sub(t, "s1", dir, sizeof dir);
    build_journal(dir, 30);
    seeds[n] = malloc(FUZZ_INPUT_MAX);
    lens[n] = pack_dir(dir, AQ_FUZZ_JOURNAL_START, seeds[n], FUZZ_INPUT_MAX);
    n++;
    tdir_sub(t, "s2", dir, sizeof dir);
    every_record_journal(dir);
    seeds[n] = malloc(FUZZ_INPUT_MAX);
    lens[n] = pack_dir(dir, AQ_FUZZ_JOURNAL_START, seeds[n], FUZZ_INPUT_MAX);
    n++;
    tdir_sub(t, "s3", dir, sizeof dir);
    build_journal(dir, 30);
    seg_to_format_1(dir, 1);
    seg_to_format_1(dir, 2);
    seeds[n] = malloc(FUZZ_INPUT_MAX);
    lens[n] = pack_dir(dir, AQ_FUZZ_JOURNAL_REPAIR, seeds[n], FUZZ_INPUT_MAX);
    n++;
    return n;
}

/* One random change to buf (len bytes now, cap at most); the new len. */
static size_t
mutate(uint8_t *buf, size_t len, size_t cap, struct rng *r)
{
    size_t at = len > 0 ? rng_below(r, len) : 0, n;

    switch (rng_below(r, 6)) {
    case 0: /* a flipped bit */
        if (len > 0)
            buf[at] ^= (uint8_t)(1u << rng_below(r, 8));
        return len;
    case 1: /* a byte set to a value lengths like */
        if (len > 0)
            buf[at] = (uint8_t)(rng_below(r, 3) == 0 ? 0xff : 0);
        return len;
    case 2: /* cut short */
        return at;
    case 3: /* a chunk copied elsewhere (a record twice) */
        n = len - at < 64 ? len - at : 64;
        if (len + n <= cap) {
            size_t to = rng_below(r, len + 1);
            uint8_t chunk[64];

            memcpy(chunk, buf + at, n);
            memmove(buf + to + n, buf + to, len - to);
            memcpy(buf + to, chunk, n);
            return len + n;
        }
        return len;
    case 4: /* random bytes inserted */
        n = rng_below(r, 32);
        if (len + n <= cap) {
            memmove(buf + at + n, buf + at, len - at);
            rng_fill(r, buf + at, n);
            return len + n;
        }
        return len;
    default: /* other flags: files, hole, repair, start */
        if (len > 0)
            buf[0] = (uint8_t)rng_next(r);
        return len;
    }
}

START_TEST(replay_of_arbitrary_bytes_ends_without_crash_or_leak)
{
    struct tdir t;
    uint8_t *seeds[8], *buf = malloc(FUZZ_INPUT_MAX);
    size_t lens[8], nseeds;
    struct rng r = {0x5eed1234u};
    const char *out = getenv("AQ_JOURNAL_SEEDS");

    ck_assert_ptr_nonnull(buf);
    tdir_make(&t);
    nseeds = make_seeds(&t, seeds, lens);
    for (size_t i = 0; i < nseeds; i++) {
        char path[PATH_BYTES], name[32];

        ck_assert_int_eq(aq_fuzz_journal_replay(seeds[i], lens[i]), 0);
        /* AQ_JOURNAL_SEEDS=DIR: where tests/fuzz/seeds-journal came from */
        if (out != NULL) {
            snprintf(name, sizeof name, "seed-%zu", i);
            path_join(path, sizeof path, out, name);
            file_write(path, seeds[i], lens[i]);
        }
    }
    for (int round = 0; round < 600; round++) {
        size_t k = rng_below(&r, nseeds), len = lens[k];
        int changes = 1 + (int)rng_below(&r, 8);

        memcpy(buf, seeds[k], len);
        for (int c = 0; c < changes; c++)
            len = mutate(buf, len, FUZZ_INPUT_MAX, &r);
        ck_assert_int_eq(aq_fuzz_journal_replay(buf, len), 0);
    }
    for (int round = 0; round < 100; round++) {
        size_t len = rng_below(&r, 2048);

        rng_fill(&r, buf, len);
        ck_assert_int_eq(aq_fuzz_journal_replay(buf, len), 0);
    }
    for (size_t i = 0; i < nseeds; i++)
        free(seeds[i]);
    free(buf);
    tdir_remove(&t);
}
END_TEST

#ifdef AQ_JOURNAL_SEEDS_DIR
START_TEST(fuzz_seeds_in_the_tree_replay)
{
    DIR *d = opendir(AQ_JOURNAL_SEEDS_DIR);
    struct dirent *e;
    size_t n = 0;

    ck_assert_msg(d != NULL, "%s: %s", AQ_JOURNAL_SEEDS_DIR, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char path[PATH_BYTES];
        unsigned char *data;
        size_t len;

        if (strncmp(e->d_name, "seed-", 5) != 0)
            continue;
        path_join(path, sizeof path, AQ_JOURNAL_SEEDS_DIR, e->d_name);
        data = file_read(path, &len);
        ck_assert_int_eq(aq_fuzz_journal_replay(data, len), 0);
        free(data);
        n++;
    }
    closedir(d);
    ck_assert_uint_ge(n, 3);
}
END_TEST
#endif

static TCase *
tcase_new(const char *name)
{
    TCase *tc = test_tcase_with_base(name);

    tcase_set_timeout(tc, TIMEOUT_S);
    return tc;
}

Suite *
journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc;
    int nall = (int)(sizeof all_policies / sizeof all_policies[0]);
    int nloop = (int)(sizeof loop_policies / sizeof loop_policies[0]);

    tc = tcase_new("records");
    tcase_add_test(
        tc, segment_file_holds_crc_checked_records_starting_with_segment);
    tcase_add_test(
        tc, every_record_type_replays_with_identical_fields_and_segments);
    tcase_add_test(tc, fields_a_record_type_does_not_carry_replay_as_zero);
    tcase_add_test(tc, replay_stops_with_callbacks_error_when_callback_fails);
    suite_add_tcase(s, tc);

    tc = tcase_new("last_id");
    tcase_add_test(tc,
                   empty_journal_replays_nothing_and_start_creates_segment_one);
    tcase_add_test(
        tc, last_id_survives_in_segment_record_once_older_segments_are_gone);
    tcase_add_test(tc, last_id_counts_an_end_id_after_its_segment_is_deleted);
    suite_add_tcase(s, tc);

    tc = tcase_new("barriers");
    tcase_add_loop_test(
        tc, barrier_after_append_fires_from_loop_once_bytes_are_in_file, 0,
        nall);
    tcase_add_loop_test(tc, barriers_fire_in_the_order_they_were_taken, 0,
                        nloop);
    tcase_add_loop_test(tc, cancelled_barriers_never_fire, 0, nloop);
    tcase_add_loop_test(
        tc, close_writes_buffered_records_and_drops_pending_barrier_uncalled, 0,
        nall);
    tcase_add_test(
        tc,
        barrier_fails_while_a_write_fails_and_a_retry_writes_each_record_once);
    suite_add_tcase(s, tc);

    tc = tcase_new("torn_tail");
    tcase_add_test(tc,
                   torn_tail_of_every_length_is_dropped_and_replay_succeeds);
    tcase_add_test(tc, torn_segment_record_of_a_new_last_segment_is_dropped);
    tcase_add_test(tc, garbage_or_zeros_after_the_last_record_are_dropped);
    tcase_add_test(tc, last_record_with_any_byte_corrupt_is_dropped_as_torn);
    suite_add_tcase(s, tc);

    tc = tcase_new("damage");
    tcase_add_test(tc, damage_before_valid_records_fails_and_repair_cuts_there);
    tcase_add_test(
        tc, damage_in_older_segment_fails_and_repair_deletes_later_segments);
    tcase_add_test(
        tc, corrupt_last_record_of_an_older_segment_is_damage_not_a_torn_tail);
    suite_add_tcase(s, tc);

    tc = tcase_new("segments");
    tcase_add_test(tc,
                   released_old_segments_are_deleted_but_never_the_active_one);
    tcase_add_test(
        tc, rehome_moves_jobs_out_of_old_segments_which_are_then_deleted);
    tcase_add_test(
        tc, start_after_replay_creates_next_segment_and_deletes_unheld_ones);
    suite_add_tcase(s, tc);

    tc = tcase_new("gaps");
    tcase_add_test(
        tc,
        each_segment_names_its_number_the_oldest_and_its_sealed_predecessor);
    tcase_add_test(
        tc, missing_middle_segment_is_damage_and_repair_keeps_what_precedes_it);
    tcase_add_test(
        tc, missing_oldest_segment_is_damage_and_repair_keeps_the_last_id);
    tcase_add_test(tc, sealed_segment_cut_at_a_record_boundary_is_damage);
    tcase_add_test(tc, sealed_segment_with_bytes_past_its_seal_is_damage);
    tcase_add_test(tc, segment_under_another_number_is_damage);
    tcase_add_test(tc,
                   segments_a_crash_left_behind_a_trim_are_skipped_and_deleted);
    tcase_add_test(
        tc,
        format_1_journal_with_holes_replays_and_turns_into_the_current_format);
    tcase_add_test(tc, journal_of_a_later_format_is_refused_naming_its_version);
    tcase_add_test(tc, format_2_journal_replays_and_current_records_follow_it);
    tcase_add_test(tc,
                   format_4_after_replays_and_format_3_tails_decode_without_it);
    suite_add_tcase(s, tc);

    tc = tcase_new("faults");
    tcase_add_loop_test(
        tc, failed_fdatasync_fails_barriers_until_a_rewrite_from_memory, 0,
        nall);
    tcase_add_test(tc, close_after_a_failed_fdatasync_rewrites_the_journal);
    tcase_add_test(
        tc, no_inode_for_a_new_segment_grows_the_active_one_then_rotates);
    tcase_add_test(tc,
                   start_that_cannot_create_a_segment_fails_puts_until_it_can);
    suite_add_tcase(s, tc);

    tc = tcase_new("fuzz");
    tcase_add_test(tc, replay_of_arbitrary_bytes_ends_without_crash_or_leak);
#ifdef AQ_JOURNAL_SEEDS_DIR
    tcase_add_test(tc, fuzz_seeds_in_the_tree_replay);
#endif
    suite_add_tcase(s, tc);

    tc = tcase_new("open");
    tcase_add_test(tc, open_of_regular_file_fails_naming_the_path);
    tcase_add_test(tc, open_creates_missing_nested_directories);
    tcase_add_test(tc, files_that_are_not_segments_are_ignored_and_kept);
    suite_add_tcase(s, tc);

    return s;
}
