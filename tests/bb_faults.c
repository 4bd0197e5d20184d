/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_faults.c: the journal when the disk says no (docs/durability.md
 * "When the disk fails"), against the real asyncqd with tests/faultfs.c
 * preloaded: an fdatasync that fails (puts answered -32603, never
 * acknowledged, then the journal rewritten from memory), a full disk
 * (-32603 at once, everything else served, puts acknowledged again once
 * there is room), no inode for a new segment (no abort: the segment grows
 * and rotates later), and a start on a full disk. After each, a restart
 * finds every acknowledged job.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbsuites.h"

#ifndef FAULTFS_PATH
#error "FAULTFS_PATH must name the faultfs library"
#endif

#define RECOVER_MS 10000 /* the journal retries every second */
#define REPLY_MS 5000    /* a reply that must come, -32603 included */

/* A test's directory: the journal, and the control file of faultfs. */
struct fx {
    char root[64];
    char journal[96];
    char control[96];
};

static void
fx_init(struct fx *fx)
{
    snprintf(fx->root, sizeof fx->root, "/tmp/asyncq-bbf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(fx->root));
    snprintf(fx->journal, sizeof fx->journal, "%s/journal", fx->root);
    snprintf(fx->control, sizeof fx->control, "%s/faults", fx->root);
}

static void
fx_remove(struct fx *fx)
{
    bb_remove_dir(fx->root);
}

/* Replaces the control file at once (rename): faultfs reads it whole. */
static void
faults_set(const struct fx *fx, const char *lines)
{
    char tmp[128];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.new", fx->control);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(lines, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, fx->control), 0);
}

/* Starts asyncqd on config (JSON text) with faultfs preloaded, faults
 * applying to the journal's directory as the control file says. */
static struct bb_daemon *
start_faulty(const struct fx *fx, const char *config)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan != NULL ? strdup(asan) : NULL, opts[512];
    struct bb_daemon *d;

    /* faultfs comes before the sanitizer runtime: allowed. */
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0",
             saved != NULL ? saved : "", saved != NULL ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("LD_PRELOAD", FAULTFS_PATH, 1);
    setenv("FAULTFS_CONTROL", fx->control, 1);
    setenv("FAULTFS_DIR", fx->journal, 1);
    d = bb_start("%s", config);
    unsetenv("LD_PRELOAD");
    unsetenv("FAULTFS_CONTROL");
    unsetenv("FAULTFS_DIR");
    if (saved != NULL)
        setenv("ASAN_OPTIONS", saved, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(saved);
    return d;
}

static char *
config_of(const struct fx *fx, const char *fsync, long segment_bytes)
{
    char *s;

    ck_assert_int_ge(asprintf(&s,
                              "{\"journal\":{\"path\":\"%s\",\"fsync\":\"%s\","
                              "\"segment_bytes\":%ld},\"queues\":{"
                              "\"default\":{\"kind\":\"echo\",\"consumers\":1},"
                              "\"held\":{\"kind\":\"echo\",\"consumers\":0}}}",
                              fx->journal, fsync, segment_bytes),
                     0);
    return s;
}

static size_t
segment_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len == 12 && strcmp(e->d_name + 8, ".aqj") == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* A put on queue held (params: args {"i":i} plus extra, JSON members or
 * ""): the reply (new ref), which must come within REPLY_MS. */
static json_t *
put_reply(struct bb_conn *c, int i, const char *extra)
{
    json_t *r = bb_call_within(
        c, "put", bb_jsonq("{'queue':'held','args':{'i':%d}%s}", i, extra),
        REPLY_MS);

    ck_assert_msg(r != NULL, "put %d: no reply within %d ms", i, REPLY_MS);
    return r;
}

static json_int_t
put_ok(struct bb_conn *c, int i)
{
    json_t *r = put_reply(c, i, "");
    json_int_t id;

    ck_assert_msg(json_object_get(r, "result") != NULL, "put %d: %s", i,
                  bb_dump(r));
    id = bb_int_at(r, "result.job");
    json_decref(r);
    return id;
}

/* The put is answered -32603 with a message holding each of the needles
 * (NULL-terminated). */
static void
put_refused(struct bb_conn *c, int i, const char *extra, ...)
{
    json_t *r = put_reply(c, i, extra);
    const char *msg;
    va_list ap;

    ck_assert_msg(json_object_get(r, "error") != NULL,
                  "put %d acknowledged although the journal fails: %s", i,
                  bb_dump(r));
    ck_assert_msg(bb_int_at(r, "error.code") == INTERNAL_ERROR, "put %d: %s", i,
                  bb_dump(r));
    msg = bb_str_at(r, "error.message");
    va_start(ap, extra);
    for (const char *s = va_arg(ap, const char *); s != NULL;
         s = va_arg(ap, const char *))
        ck_assert_msg(strstr(msg, s) != NULL, "put %d: \"%s\" not in %s", i, s,
                      bb_dump(r));
    va_end(ap);
    json_decref(r);
}

/* Puts until one is acknowledged (the journal retries every second);
 * returns its id. Refusals meanwhile must be -32603. */
static json_int_t
put_until_ok(struct bb_conn *c, int i)
{
    int64_t deadline = bb_now_ms() + RECOVER_MS;

    for (;;) {
        json_t *r = put_reply(c, i, "");
        json_int_t id;

        if (json_object_get(r, "result") != NULL) {
            id = bb_int_at(r, "result.job");
            json_decref(r);
            return id;
        }
        ck_assert_msg(bb_int_at(r, "error.code") == INTERNAL_ERROR,
                      "put %d: %s", i, bb_dump(r));
        json_decref(r);
        ck_assert_msg(bb_now_ms() < deadline,
                      "puts still refused %d ms after the fault went",
                      RECOVER_MS);
        /* a round trip, not a sleep: the journal works from its timer */
        json_decref(bb_call(c, "ping", NULL));
    }
}

static void
expect_state(struct bb_conn *c, json_int_t id, const char *state)
{
    json_t *rec = bb_job_status(c, id);

    ck_assert_msg(strcmp(bb_str_at(rec, "state"), state) == 0,
                  "job %lld: %s, expected %s", (long long)id, bb_dump(rec),
                  state);
    json_decref(rec);
}

static void
expect_served(struct bb_conn *c, json_int_t id)
{
    json_t *r = bb_result(c, "stats", NULL);

    ck_assert_ptr_nonnull(json_object_get(r, "queues"));
    json_decref(r);
    expect_state(c, id, "pending");
}

struct want {
    json_int_t id;
    const char *state;
};

/* Stops d (exit 0, c closed), starts asyncqd again on cfg without faults,
 * checks that each job replayed in the state wanted, and stops it. */
static void
restart_expecting(struct bb_daemon *d, struct bb_conn *c, const char *cfg,
                  const struct want *w, size_t n)
{
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (size_t i = 0; i < n; i++)
        expect_state(c, w[i].id, w[i].state);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}

/* ---- an fdatasync that fails ---- */

static const char *const sync_policies[] = {"batch", "always"};

START_TEST(failed_fdatasync_refuses_puts_until_the_journal_is_rewritten)
{
    const char *fsync = sync_policies[_i];
    struct fx fx;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t before, after;
    char *cfg;

    fx_init(&fx);
    faults_set(&fx, "");
    cfg = config_of(&fx, fsync, 65536);
    d = start_faulty(&fx, cfg);
    c = bb_connect(d);
    before = put_ok(c, 1);

    faults_set(&fx, "fdatasync EIO\n");
    /* The put whose sync failed, then puts refused at once (nowait too):
     * never an acknowledgement while the journal cannot be trusted. */
    put_refused(c, 2, "", "fdatasync", "Input/output error", NULL);
    put_refused(c, 3, "", "fdatasync", "Input/output error", NULL);
    put_refused(c, 4, ",'nowait':true", "fdatasync", NULL);
    expect_served(c, before);
    ck_assert_msg(bb_log_wait(d, "fdatasync: Input/output error", REPLY_MS),
                  "the failed fdatasync is not logged");

    /* The disk works again: every live job is rewritten from memory into
     * a fresh segment, which replaces the older ones. */
    faults_set(&fx, "");
    after = put_until_ok(c, 5);
    ck_assert_msg(bb_log_wait(d, "rewritten", REPLY_MS),
                  "the rewrite is not logged");
    ck_assert_uint_eq(segment_files(fx.journal), 1);
    restart_expecting(
        d, c, cfg, (struct want[]){{before, "pending"}, {after, "pending"}}, 2);
    free(cfg);
    fx_remove(&fx);
}
END_TEST

/* ---- a full disk ---- */

START_TEST(full_disk_refuses_puts_serves_the_rest_and_recovers)
{
    struct fx fx;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t ran, cancelled, after;
    json_t *r;
    char *cfg;

    fx_init(&fx);
    faults_set(&fx, "");
    cfg = config_of(&fx, "batch", 65536);
    d = start_faulty(&fx, cfg);
    c = bb_connect(d);
    ran = put_ok(c, 1);
    cancelled = put_ok(c, 2);

    faults_set(&fx, "write ENOSPC\n");
    put_refused(c, 3, "", "No space left on device", NULL);
    put_refused(c, 4, ",'nowait':true", "No space left on device", NULL);
    put_refused(c, 5, ",'wait':true", "No space left on device", NULL);
    /* Everything else goes on: stats, status, cancel, consumers. */
    expect_served(c, ran);
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", cancelled));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    json_decref(r);
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'held','consumers':1}")));
    bb_await_state(c, ran, "done", REPLY_MS);

    faults_set(&fx, "");
    after = put_until_ok(c, 6);
    bb_await_state(c, after, "done", REPLY_MS);
    /* What was recorded while the disk was full was written once there
     * was room: nothing lost, nothing twice. */
    restart_expecting(d, c, cfg,
                      (struct want[]){{ran, "done"},
                                      {cancelled, "cancelled"},
                                      {after, "done"}},
                      3);
    free(cfg);
    fx_remove(&fx);
}
END_TEST

/* ---- no inode for a new segment ---- */

#define NROTATE 60

START_TEST(no_inode_for_a_new_segment_keeps_appending_and_rotates_later)
{
    struct fx fx;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t ids[NROTATE], last;
    struct want want[NROTATE + 1];
    int64_t deadline;
    int n;
    char *cfg;

    fx_init(&fx);
    faults_set(&fx, "");
    cfg = config_of(&fx, "batch", 4096);
    d = start_faulty(&fx, cfg);
    c = bb_connect(d);
    faults_set(&fx, "create ENOSPC\n");
    /* Far past segment_bytes: each put acknowledged all the same. */
    for (n = 0; n < NROTATE; n++)
        ids[n] = put_ok(c, n);
    ck_assert_uint_eq(segment_files(fx.journal), 1);
    ck_assert_msg(bb_log_has(d, "No space left on device"),
                  "the failed rotation is not logged");

    /* Rotation is tried again a second after it failed. */
    faults_set(&fx, "");
    deadline = bb_now_ms() + RECOVER_MS;
    do {
        ck_assert_msg(bb_now_ms() < deadline,
                      "no rotation once new files could be created");
        last = put_ok(c, n++);
    } while (segment_files(fx.journal) < 2);
    for (int i = 0; i < NROTATE; i++)
        want[i] = (struct want){ids[i], "pending"};
    want[NROTATE] = (struct want){last, "pending"};
    restart_expecting(d, c, cfg, want, NROTATE + 1);
    free(cfg);
    fx_remove(&fx);
}
END_TEST

/* ---- a start on a full disk ---- */

START_TEST(start_on_a_full_disk_serves_and_accepts_puts_once_there_is_room)
{
    struct fx fx;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t ids[3], after;
    char *cfg;

    fx_init(&fx);
    cfg = config_of(&fx, "batch", 65536);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < 3; i++)
        ids[i] = put_ok(c, i);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* No new segment can be created: the daemon starts all the same. */
    faults_set(&fx, "create ENOSPC\n");
    d = start_faulty(&fx, cfg);
    c = bb_connect(d);
    for (int i = 0; i < 3; i++)
        expect_served(c, ids[i]);
    put_refused(c, 3, "", "No space left on device", NULL);
    faults_set(&fx, "");
    after = put_until_ok(c, 4);
    restart_expecting(d, c, cfg,
                      (struct want[]){{ids[0], "pending"},
                                      {ids[1], "pending"},
                                      {ids[2], "pending"},
                                      {after, "pending"}},
                      4);
    free(cfg);
    fx_remove(&fx);
}
END_TEST

Suite *
bb_faults_suite(void)
{
    Suite *s = suite_create("bb_faults");
    TCase *tc = tcase_create("faults");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(
        tc, failed_fdatasync_refuses_puts_until_the_journal_is_rewritten, 0, 2);
    tcase_add_test(tc, full_disk_refuses_puts_serves_the_rest_and_recovers);
    tcase_add_test(
        tc, no_inode_for_a_new_segment_keeps_appending_and_rotates_later);
    tcase_add_test(
        tc, start_on_a_full_disk_serves_and_accepts_puts_once_there_is_room);
    suite_add_tcase(s, tc);
    return s;
}
