/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/journal_input.h: journal replay from arbitrary bytes, for a
 * libFuzzer target (LLVMFuzzerTestOneInput calls aq_fuzz_journal_replay)
 * and for the unit tests. Whatever the bytes, replay must end (no hang),
 * never crash, and leave nothing allocated.
 *
 * Input layout: byte 0 holds flags: bits 0-1 the number of segment files
 * minus 1 (1 to 4); bit 2 replay with repair; bit 3 a hole in the file
 * numbers after the first file; bit 4 after a successful replay, start
 * the journal (a new segment, deletions), append a record and close it.
 * Then, for each file but the last: a u16 little-endian length and that
 * many bytes (fewer if the input ends first); the last file gets the rest.
 */
#ifndef AQ_FUZZ_JOURNAL_INPUT_H
#define AQ_FUZZ_JOURNAL_INPUT_H

#include <stddef.h>
#include <stdint.h>

enum {
    AQ_FUZZ_JOURNAL_REPAIR = 1 << 2,
    AQ_FUZZ_JOURNAL_HOLE = 1 << 3,
    AQ_FUZZ_JOURNAL_START = 1 << 4,
};

/* Writes the files of data as segments 00000001.aqj, ... of a journal
 * directory (made once per process under $TMPDIR or /tmp, emptied after
 * each call, removed at exit), opens it, replays it (every record's
 * fields and strings read), maybe starts it, and closes it. Returns 0, as
 * a libFuzzer target must. Logs below error level are muted for the call.
 * The journal syncs what it writes: on a tmpfs (TMPDIR=/dev/shm) a call
 * takes some 150 us, on a disk several times that. */
int aq_fuzz_journal_replay(const uint8_t *data, size_t size);

/* The layout above from nfiles whole file images, for seed inputs: the
 * input's length, or 0 if it does not fit in cap bytes or nfiles is not 1
 * to 4 (or a file but the last is longer than 65535 bytes). */
size_t aq_fuzz_journal_pack(uint8_t flags, const uint8_t *const *files,
                            const size_t *lens, size_t nfiles, uint8_t *buf,
                            size_t cap);

#endif
