/* SPDX-License-Identifier: MIT */
/*
 * lib/journal-internal.h: what the journal's files share (journal.c
 * writes and recovers, journal_format.c encodes records and names segment
 * files, journal_replay.c reads a journal back). Nothing outside them
 * includes it.
 */
#ifndef AQ_JOURNAL_INTERNAL_H
#define AQ_JOURNAL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hist.h"
#include "journal.h"

#define HDR_BYTES 8                 /* u32 length, u32 CRC-32C */
#define MAX_RECORD_BYTES (1u << 30) /* a longer length is damage */
#define SEG_SUFFIX ".aqj"
#define TMP_SUFFIX ".aqj.tmp"
#define FORMAT_VERSION 4 /* in each SEGMENT record; 1 to 3 are read */
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
    /* barriers waiting, oldest first */
    struct aq_barrier_list barriers;

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

/* ---- journal_format.c: records ---- */

/* Appends the header and body of r to j's buffer; returns its size. */
size_t journal_encode(struct aq_journal *j, const struct aq_jrec *r);
/* Decodes a body (CRC already checked). Returns 0, or -1 if malformed. A
 * SEGMENT record of a later version decodes as far as its version. */
int journal_decode(const unsigned char *body, size_t len, struct aq_jrec *r);
/* The size of a valid record at p (n bytes left), or 0. */
size_t journal_record_at(const unsigned char *p, size_t n);
uint32_t journal_le32(const unsigned char *p);

/* ---- journal_format.c: segment files ---- */

void journal_seg_path(const struct aq_journal *j, uint32_t seq, char *buf,
                      size_t len);
void journal_tmp_path(const struct aq_journal *j, uint32_t seq, char *buf,
                      size_t len);
/* The file name of segment seq (in buf), for messages that name two. */
const char *journal_seg_name(uint32_t seq, char *buf, size_t len);
struct segment *journal_seg_find(struct aq_journal *j, uint32_t seq);
struct segment *journal_seg_add(struct aq_journal *j, uint32_t seq);
/* Deletes segment i's file and entry. */
void journal_seg_remove_at(struct aq_journal *j, size_t i);
/* fsync of the directory: 0, or -1 with errno (logged). */
int journal_dir_sync(const struct aq_journal *j);
/* The oldest segment, as a new SEGMENT record names it: 0 while segments
 * of format 1 remain (they may have holes between them). */
uint32_t journal_first(const struct aq_journal *j);
/* Lists the segment files, oldest first: 0, or -1 with err. */
int journal_list_segments(struct aq_journal *j, struct aq_error *err);
/* Deletes what a rewrite interrupted by a crash left. */
void journal_remove_tmp_files(const struct aq_journal *j);
int journal_make_dirs(const char *path, struct aq_error *err);
/* Writes all of len bytes of p to fd. 0, or -1 with errno. */
int journal_write_all(int fd, const char *p, size_t len);

#endif
