/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/journal_input.c: see journal_input.h. One directory and one
 * event base per process, reused by every call (a fuzzer runs millions).
 */
#include "journal_input.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "error.h"
#include "journal.h"
#include "log.h"

#define MAX_FILES 4

static char root[512];
static struct event_base *base;
static volatile uint64_t sink; /* keeps the reads of replayed bytes */

static void
empty_dir(void)
{
    DIR *d = opendir(root);
    struct dirent *e;
    char path[1024];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void
remove_root(void)
{
    empty_dir();
    rmdir(root);
    event_base_free(base);
    base = NULL;
}

static void
setup(void)
{
    const char *tmp = getenv("TMPDIR");

    if (base != NULL)
        return;
    snprintf(root, sizeof root, "%s/aq-fuzz-journal-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(root) == NULL) {
        perror("aq_fuzz_journal_replay: mkdtemp");
        abort();
    }
    base = event_base_new();
    atexit(remove_root);
}

static void
write_file(uint32_t seq, const uint8_t *p, size_t len)
{
    char path[1024];
    int fd;

    snprintf(path, sizeof path, "%s/%08" PRIx32 ".aqj", root, seq);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n <= 0)
            break;
        p += n;
        len -= (size_t)n;
    }
    close(fd);
}

static uint64_t
str_sum(struct aq_jstr s)
{
    uint64_t sum = s.p != NULL ? s.len : 0;

    for (uint32_t i = 0; s.p != NULL && i < s.len; i++)
        sum = sum * 31 + (unsigned char)s.p[i];
    return sum;
}

/* Reads every field, as the broker would, and holds the segments of
 * whole records, so that start keeps them. */
static int
touch_cb(const struct aq_jrec *r, uint32_t seg, void *arg, struct aq_error *err)
{
    struct aq_journal *j = arg;
    uint64_t sum = r->type + r->id + r->kind + r->state + r->attempts +
                   (uint64_t)r->priority + (uint64_t)r->retries +
                   (uint64_t)r->timeout_us + (uint64_t)r->created_us +
                   (uint64_t)r->started_us + (uint64_t)r->finished_us +
                   (uint64_t)r->due_us;

    sum += str_sum(r->queue) + str_sum(r->key) + str_sum(r->args) +
           str_sum(r->result) + str_sum(r->err_code) + str_sum(r->err_message);
    sink += sum;
    if (r->type == AQ_JREC_PUT || r->type == AQ_JREC_END)
        aq_journal_hold(j, seg);
    return 0;
}

static void
run(uint8_t flags)
{
    struct aq_journal_opts opts = {
        .path = root, .fsync = AQ_FSYNC_NEVER, .segment_bytes = 4096};
    struct aq_jrec put = {.type = AQ_JREC_PUT,
                          .id = 1,
                          .kind = 1,
                          .state = 1,
                          .retries = -1,
                          .timeout_us = -1,
                          .queue = {"fuzz", 4},
                          .args = {"{}", 2}};
    struct aq_journal *j;
    struct aq_error err;
    uint64_t last_id = 0;
    bool damaged;

    if ((j = aq_journal_open(base, &opts, &err)) == NULL)
        return;
    if (aq_journal_replay(j, (flags & AQ_FUZZ_JOURNAL_REPAIR) != 0, touch_cb, j,
                          &last_id, &damaged, &err) == 0 &&
        (flags & AQ_FUZZ_JOURNAL_START) != 0 &&
        aq_journal_start(j, last_id, &err) == 0) {
        put.id = last_id + 1;
        aq_journal_append(j, &put);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    aq_journal_close(j);
    event_base_loop(base, EVLOOP_NONBLOCK);
}

int
aq_fuzz_journal_replay(const uint8_t *data, size_t size)
{
    enum aq_log_level level = aq_log_get_level();
    size_t nfiles, off = 1;
    uint8_t flags;

    if (size == 0)
        return 0;
    setup();
    flags = data[0];
    nfiles = 1 + (flags & 3);
    for (size_t i = 0; i < nfiles; i++) {
        size_t len = size - off;
        uint32_t seq = (uint32_t)i + 1;

        if (i + 1 < nfiles) {
            size_t want = off + 2 <= size
                              ? (size_t)data[off] | (size_t)data[off + 1] << 8
                              : 0;

            off = off + 2 <= size ? off + 2 : size;
            len = want < size - off ? want : size - off;
        }
        if (i > 0 && (flags & AQ_FUZZ_JOURNAL_HOLE) != 0)
            seq++;
        write_file(seq, data + off, len);
        off += len;
    }
    aq_log_set_level(AQ_LOG_ERROR);
    run(flags);
    aq_log_set_level(level);
    empty_dir();
    return 0;
}

size_t
aq_fuzz_journal_pack(uint8_t flags, const uint8_t *const *files,
                     const size_t *lens, size_t nfiles, uint8_t *buf,
                     size_t cap)
{
    size_t n = 1;

    if (nfiles < 1 || nfiles > MAX_FILES || cap < 1)
        return 0;
    buf[0] = (uint8_t)((flags & ~3u) | (nfiles - 1));
    for (size_t i = 0; i < nfiles; i++) {
        bool is_last = i + 1 == nfiles;

        if (!is_last && (lens[i] > 0xffff || n + 2 > cap))
            return 0;
        if (!is_last) {
            buf[n++] = (uint8_t)lens[i];
            buf[n++] = (uint8_t)(lens[i] >> 8);
        }
        if (lens[i] > cap - n)
            return 0;
        memcpy(buf + n, files[i], lens[i]);
        n += lens[i];
    }
    return n;
}
