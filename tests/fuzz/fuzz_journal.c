/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_journal.c: journal replay (lib/journal.h) from arbitrary
 * bytes, as asyncqd starts: open the directory, replay every record into
 * a broker, start a new segment, queue what was rebuilt. No consumer ever
 * starts, so no replayed job runs.
 *
 * Input: byte 0 holds flags (bit 0: two segments, bit 1: --repair, bit 2:
 * fix checksums); with two segments, bytes 1-2 (little-endian) are the
 * first one's length; the rest is segment 00000001.aqj, then 00000002.aqj.
 * An empty input is an empty journal. Fixing the checksums (each record's
 * CRC-32C recomputed, as far as lengths chain) lets mutated record bodies
 * reach the decoder instead of stopping at the checksum.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "config.h"
#include "crc32c.h"
#include "error.h"
#include "fuzz.h"
#include "journal.h"
#include "proc.h"
#include "store.h"
#include "xmalloc.h"

#define FLAG_TWO_SEGMENTS 1
#define FLAG_REPAIR 2
#define FLAG_FIX_CRC 4
#define HDR_BYTES 8 /* u32 length, u32 CRC-32C: lib/journal.c */

/* Queues of every kind, so that replayed jobs find theirs. */
static const char config_text[] =
    "{\"metrics\":null,\"journal\":{\"fsync\":\"never\"},"
    "\"results\":{\"ttl\":60,\"max\":64},"
    "\"log\":{\"level\":\"error\"},"
    "\"queues\":{"
    "\"default\":{\"kind\":\"echo\",\"consumers\":1,\"exec\":{\"allow\":[]}},"
    "\"s\":{\"kind\":\"sleep\",\"consumers\":1,\"exec\":{\"allow\":[]}},"
    "\"x\":{\"kind\":\"exec\",\"consumers\":1,\"exec\":{\"allow\":[]}},"
    "\"h\":{\"kind\":\"http\",\"consumers\":1,\"exec\":{\"allow\":[]}}}}";

static struct aq_config *cfg;
static char dir[300];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fuzz_setup(config_text);
    /* The scratch directory is the journal: emptied before each input. */
    snprintf(dir, sizeof dir, "%s", fuzz_scratch_dir());
    return 0;
}

static uint32_t
get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Writes a segment file; with fix_crc, a copy whose records carry the
 * checksum of their length and body. */
static void
write_segment(uint32_t seq, const uint8_t *data, size_t len, bool fix_crc)
{
    char path[400];
    uint8_t *copy = NULL;

    if (fix_crc && len > 0) {
        copy = xmalloc(len);
        memcpy(copy, data, len);
        for (size_t off = 0; len - off >= HDR_BYTES;) {
            uint32_t n = get_u32(copy + off), crc;

            if (n == 0 || n > len - off - HDR_BYTES)
                break;
            crc = aq_crc32c(aq_crc32c(0, copy + off, 4), copy + off + HDR_BYTES,
                            n);
            for (int i = 0; i < 4; i++)
                copy[off + 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
            off += HDR_BYTES + n;
        }
        data = copy;
    }
    snprintf(path, sizeof path, "%s/%08x.aqj", dir, (unsigned)seq);
    fuzz_write_file(path, data, len);
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct aq_error err = {0};
    struct event_base *base;
    struct aq_procs *procs;
    struct aq_broker *broker;
    struct aq_store *store;
    uint64_t last_id = 0;
    size_t records;
    bool is_damaged = false, repair = false, fix_crc = false;

    fuzz_empty_dir(dir);
    if (size > 0) {
        uint8_t flags = data[0];

        repair = (flags & FLAG_REPAIR) != 0;
        fix_crc = (flags & FLAG_FIX_CRC) != 0;
        data++, size--;
        if ((flags & FLAG_TWO_SEGMENTS) != 0 && size >= 2) {
            size_t first = (size_t)data[0] | (size_t)data[1] << 8;

            data += 2, size -= 2;
            if (first > size)
                first = size;
            write_segment(1, data, first, fix_crc);
            write_segment(2, data + first, size - first, fix_crc);
        } else
            write_segment(1, data, size, fix_crc);
    }
    base = event_base_new();
    procs = aq_procs_new(base);
    broker = aq_broker_new(base, procs, cfg);
    /* asyncqd --repair, then asyncqd. */
    if (repair)
        aq_store_journal_repair(base, dir, &records, &last_id, &err);
    store = aq_store_journal_open(base, dir, AQ_FSYNC_NEVER, 1u << 20, &err);
    if (store == NULL) {
        fprintf(stderr, "fuzz_journal: %s\n", err.message);
        abort();
    }
    aq_broker_restore(broker, store, &is_damaged, &err);
    /* What asyncqd's exit does: the store is closed first. */
    aq_broker_free(broker);
    aq_procs_free(procs);
    event_base_free(base);
    return 0;
}
