/* SPDX-License-Identifier: MIT */
/*
 * tests/bb_journal.c: the journal against the real asyncqd (spec sections
 * 4, 6 and 7, docs/durability.md): every job state replayed across a
 * graceful restart and across kill -9, a randomised crash loop that loses
 * no acknowledged job, graceful interruption of exec jobs, torn tails,
 * damage and --repair, segment reclamation, the fsync policies, and jobs
 * whose queue left the config. Each test keeps its journal in a mkdtemp
 * dir of its own that outlives the daemons it starts.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bb.h"
#include "bbjson.h"
#include "bbproc.h"
#include "bbsuites.h"

#ifndef ASYNCQD_PATH
#error "ASYNCQD_PATH must name the asyncqd binary"
#endif

#define CLI_TIMEOUT_MS 10000
#define KILL_TIMEOUT_MS 10000
#define JOB_START_MS 5000
#define HDR_BYTES 8 /* a record: u32 length, u32 CRC-32C, then the body */

/* ---- the test's own directory ---- */

/* A mkdtemp dir that outlives the daemons: the journal is its "journal"
 * subdirectory (the daemon creates it), pid files and configs go next to
 * it. */
struct jdir {
    char root[64];
    char journal[96];
};

static void
jdir_init(struct jdir *jd)
{
    snprintf(jd->root, sizeof jd->root, "/tmp/asyncq-bbj.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(jd->root));
    snprintf(jd->journal, sizeof jd->journal, "%s/journal", jd->root);
}

static void
jdir_remove(struct jdir *jd)
{
    bb_remove_dir(jd->root);
}

static bool
is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Config text from a format written with ' for ", as bb_startq takes it;
 * a new string, the caller's to free. Pass it on as bb_start("%s", text)
 * for every (re)start of the same daemon. */
static char *config_text(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *
config_text(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
    va_end(ap);
    for (char *p = s; *p != '\0'; p++) {
        if (*p == '\'')
            *p = '"';
    }
    return s;
}

static void
write_text_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* ---- segment files ---- */

/* The segment files of a journal directory. */
struct segs {
    size_t n;            /* files named %08x.aqj */
    uint64_t bytes;      /* their total size */
    unsigned last_seq;   /* the newest one */
    char last[PATH_MAX]; /* its path */
};

static bool
is_segment_name(const char *name, unsigned *seq)
{
    char tail[8];

    return strlen(name) == 12 && sscanf(name, "%8x%7s", seq, tail) == 2 &&
           strcmp(tail, ".aqj") == 0;
}

static void
segs_scan(const char *dir, struct segs *sg)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    memset(sg, 0, sizeof *sg);
    ck_assert_msg(d != NULL, "journal directory %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat st;
        unsigned seq;

        if (!is_segment_name(e->d_name, &seq))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0)
            continue; /* deleted meanwhile */
        sg->n++;
        sg->bytes += (uint64_t)st.st_size;
        if (sg->n == 1 || seq > sg->last_seq) {
            sg->last_seq = seq;
            snprintf(sg->last, sizeof sg->last, "%s", path);
        }
    }
    closedir(d);
}

/* The whole of a file (a new buffer, the caller's to free). */
static unsigned char *
file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n;

    ck_assert_msg(f != NULL, "cannot read %s: %s", path, strerror(errno));
    *len = 0;
    do {
        if (*len + 65536 > cap) {
            cap = *len + 65536;
            buf = realloc(buf, cap);
        }
        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
    } while (n > 0);
    fclose(f);
    return buf;
}

static long
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void
file_append(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);

    ck_assert_msg(fd >= 0, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static void
file_flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;

    ck_assert_msg(fd >= 0, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(pread(fd, &b, 1, off), 1);
    b ^= 0xff;
    ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

#define MAX_RECS 4096

/* Where the records of a segment are, by the documented framing: a u32
 * little-endian body length, a u32 CRC, the body. */
struct recs {
    size_t n;
    long off[MAX_RECS];
    size_t len[MAX_RECS]; /* header included */
};

static void
recs_scan(const char *path, struct recs *rs)
{
    size_t len, off = 0;
    unsigned char *data = file_read(path, &len);

    rs->n = 0;
    while (off + HDR_BYTES <= len && rs->n < MAX_RECS) {
        size_t body = (size_t)data[off] | (size_t)data[off + 1] << 8 |
                      (size_t)data[off + 2] << 16 | (size_t)data[off + 3] << 24;

        if (off + HDR_BYTES + body > len)
            break;
        rs->off[rs->n] = (long)off;
        rs->len[rs->n] = HDR_BYTES + body;
        rs->n++;
        off += HDR_BYTES + body;
    }
    ck_assert_msg(off == len, "%s: %zu bytes after the last whole record", path,
                  len - off);
    free(data);
}

/* ---- the command line ---- */

/* Runs asyncqd --config config [flag], capturing both outputs, within
 * CLI_TIMEOUT_MS. */
static void
cli_run(struct bb_run *r, const char *config, const char *flag)
{
    const char *argv[] = {ASYNCQD_PATH, "--config", config, flag, NULL};
    const struct bb_run_opts o = {.timeout_ms = CLI_TIMEOUT_MS};

    bb_run_argv(r, &o, argv);
}

/* ---- text ---- */

/* Whether text holds the decimal number n not as part of a longer one. */
static bool
has_number(const char *text, long n)
{
    char num[32];
    size_t k = (size_t)snprintf(num, sizeof num, "%ld", n);

    for (const char *p = strstr(text, num); p != NULL; p = strstr(p + 1, num)) {
        bool left = p == text || p[-1] < '0' || p[-1] > '9';
        bool right = p[k] < '0' || p[k] > '9';

        if (left && right)
            return true;
    }
    return false;
}

/* The line of text holding needle (a new string), or NULL. */
static char *
line_with(const char *text, const char *needle)
{
    const char *p = strstr(text, needle), *start, *end;

    if (p == NULL)
        return NULL;
    for (start = p; start > text && start[-1] != '\n'; start--)
        ;
    end = strchr(p, '\n');
    if (end == NULL)
        end = p + strlen(p);
    return strndup(start, (size_t)(end - start));
}

static const char *
base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash != NULL ? slash + 1 : path;
}

/* ---- daemons and jobs ---- */

/* kill -9, then frees d. */
static void
kill9(struct bb_daemon *d)
{
    bb_signal(d, SIGKILL);
    ck_assert_int_eq(bb_wait_exit(d, KILL_TIMEOUT_MS), 128 + SIGKILL);
    bb_free(d);
}

/* Restarts the daemon on the same config (and so the same journal):
 * gracefully, asserting exit 0, or with kill -9. */
static struct bb_daemon *
restart(struct bb_daemon *d, const char *config, bool is_kill)
{
    if (is_kill)
        kill9(d);
    else
        ck_assert_int_eq(bb_stop(d), 0);
    return bb_start("%s", config);
}

/* Puts a job and checks the state of the reply; returns its id. */
static json_int_t
put_state(struct bb_conn *c, json_t *params, const char *state)
{
    json_t *r = bb_result(c, "put", params);
    json_int_t id = bb_int_at(r, "job");

    ck_assert_msg(strcmp(bb_str_at(r, "state"), state) == 0,
                  "put: %s, expected state %s", bb_dump(r), state);
    json_decref(r);
    return id;
}

static void
expect_same_record(struct bb_conn *c, json_int_t id, const json_t *before,
                   const char *when)
{
    json_t *now = bb_job_status(c, id);

    ck_assert_msg(json_equal(now, before), "job %lld %s: %s, before: %s",
                  (long long)id, when, bb_dump(now), bb_dump(before));
    json_decref(now);
}

static void
expect_no_job(struct bb_conn *c, json_int_t id)
{
    int code = bb_error(c, "status", json_pack("{s:I}", "job", id));

    ck_assert_msg(code == NO_SUCH_JOB,
                  "status of job %lld: error %d, not -32004", (long long)id,
                  code);
}

/* The wall-clock time now, in seconds, as the daemon writes it. */
static double
wall_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- 1. replay of every job state ---- */

#define NPENDING 6
#define SHORT_DELAY_S 3.0

struct replay {
    json_int_t pending[NPENDING];
    json_int_t delayed_short, delayed_long, done, failed, cancelled, running;
    json_int_t keyed, last;
    json_t *done_rec, *failed_rec, *cancelled_rec, *running_rec; /* owned */
};

static const int pending_prio[NPENDING] = {5, 1, 3, 1, 0, 3};
/* Indexes into pending[], in the order they must run. */
static const int pending_order[NPENDING] = {4, 1, 3, 2, 5, 0};

/* Puts a job in every state; the last call is an acknowledged put, whose
 * acknowledgement covers every record appended before it. */
static void
replay_prepare(struct bb_conn *c, struct replay *rp)
{
    json_t *r;

    rp->delayed_short =
        put_state(c, bb_jsonq("{'args':{'short':1},'delay':%g}", SHORT_DELAY_S),
                  "delayed");
    rp->delayed_long =
        put_state(c, bb_jsonq("{'args':{'long':1},'delay':1000}"), "delayed");
    for (int i = 0; i < NPENDING; i++)
        rp->pending[i] =
            put_state(c,
                      bb_jsonq("{'queue':'held','priority':%d,'args':{'n':%d}}",
                               pending_prio[i], i),
                      "pending");
    rp->keyed =
        put_state(c, bb_jsonq("{'queue':'keyed','key':'replay-key','args':{}}"),
                  "pending");

    rp->done_rec = bb_result(
        c, "put", bb_jsonq("{'args':{'x':[1,'a',{'b':null}]},'wait':true}"));
    ck_assert_str_eq(bb_str_at(rp->done_rec, "state"), "done");
    rp->done = bb_int_at(rp->done_rec, "job");

    r = bb_result_within(
        c, "put",
        bb_jsonq("{'queue':'run','args':{'argv':['/bin/sh','-c','exit 3']},"
                 "'retries':1,'wait':true}"),
        JOB_START_MS);
    ck_assert_str_eq(bb_str_at(r, "state"), "failed");
    ck_assert_int_eq(bb_int_at(r, "attempts"), 2);
    ck_assert_str_eq(bb_str_at(r, "error.code"), "exit");
    rp->failed = bb_int_at(r, "job");
    json_decref(r);
    rp->failed_rec = bb_job_status(c, rp->failed);

    rp->cancelled =
        put_state(c, bb_jsonq("{'queue':'keyed','args':{}}"), "pending");
    r = bb_result(c, "cancel", json_pack("{s:I}", "job", rp->cancelled));
    ck_assert_str_eq(bb_str_at(r, "state"), "cancelled");
    json_decref(r);
    rp->cancelled_rec = bb_job_status(c, rp->cancelled);

    rp->running = put_state(
        c, bb_jsonq("{'queue':'nap','args':{'seconds':30}}"), "pending");
    bb_await_state(c, rp->running, "running", JOB_START_MS);
    rp->running_rec = bb_job_status(c, rp->running);
    ck_assert_int_eq(bb_int_at(rp->running_rec, "attempts"), 0);

    /* The short delayed job is not run early: a wait for it times out.
     * This also puts a second between its put and the restart, so that
     * a due time counted from the restart would show. */
    r = bb_call(
        c, "wait",
        json_pack("{s:[I],s:f}", "jobs", rp->delayed_short, "timeout", 1.0));
    ck_assert_int_eq(bb_int_at(r, "error.code"), TIMED_OUT);
    json_decref(r);

    rp->last = put_state(c, bb_jsonq("{'queue':'keyed','args':{}}"), "pending");
}

static void
replay_free(struct replay *rp)
{
    json_decref(rp->done_rec);
    json_decref(rp->failed_rec);
    json_decref(rp->cancelled_rec);
    json_decref(rp->running_rec);
}

static void
check_finished_records(struct bb_conn *c, const struct replay *rp,
                       const char *when)
{
    json_t *want = bb_jsonq("{'x':[1,'a',{'b':null}]}");

    expect_same_record(c, rp->done, rp->done_rec, when);
    ck_assert_msg(json_equal(bb_at(rp->done_rec, "result"), want),
                  "done result: %s", bb_dump(rp->done_rec));
    expect_same_record(c, rp->failed, rp->failed_rec, when);
    expect_same_record(c, rp->cancelled, rp->cancelled_rec, when);
    json_decref(want);
}

static void
check_delays(struct bb_conn *c, const struct replay *rp, double restarted)
{
    json_t *r = bb_job_status(c, rp->delayed_long), *list, *rec;
    double created, started;

    ck_assert_str_eq(bb_str_at(r, "state"), "delayed");
    json_decref(r);
    ck_assert_int_ge(bb_stat_int(c, "default", "delayed"), 1);

    list = bb_result_within(c, "wait",
                            json_pack("{s:[I],s:f}", "jobs", rp->delayed_short,
                                      "timeout", SHORT_DELAY_S + 5),
                            (int)(SHORT_DELAY_S + 10) * 1000);
    rec = json_array_get(list, 0);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    created = bb_num_at(rec, "created");
    started = bb_num_at(rec, "started");
    /* Due SHORT_DELAY_S after its put, not after the restart (which came
     * more than a second after the put). */
    ck_assert_msg(started - created >= SHORT_DELAY_S - 0.05 &&
                      started - created <= SHORT_DELAY_S + 0.75,
                  "delayed job started %.3f s after its put (restart at "
                  "%.3f s), want %.1f s",
                  started - created, restarted - created, SHORT_DELAY_S);
    json_decref(list);
}

static void
check_key_and_ids(struct bb_conn *c, const struct replay *rp)
{
    json_t *r = bb_result(
        c, "put",
        bb_jsonq("{'queue':'keyed','key':'replay-key','args':{'again':1}}"));
    json_int_t fresh;

    ck_assert_msg(json_is_true(bb_at(r, "duplicate")),
                  "put with the same key after restart: %s", bb_dump(r));
    ck_assert_int_eq(bb_int_at(r, "job"), rp->keyed);
    json_decref(r);
    fresh = put_state(c, bb_jsonq("{'queue':'keyed','args':{}}"), "pending");
    ck_assert_msg(fresh > rp->last,
                  "id %lld after restart, not above the last one before, "
                  "%lld",
                  (long long)fresh, (long long)rp->last);
}

/* The pending jobs run lowest priority first, then in put order. */
static void
check_pending_order(struct bb_conn *c, const struct replay *rp)
{
    json_t *jobs = json_array(), *list;
    json_int_t w;

    for (int i = 0; i < NPENDING; i++) {
        json_t *rec = bb_job_status(c, rp->pending[i]);

        ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
        ck_assert_int_eq(bb_int_at(rec, "priority"), pending_prio[i]);
        json_decref(rec);
        json_array_append_new(jobs, json_integer(rp->pending[i]));
    }
    ck_assert_int_eq(bb_stat_int(c, "held", "size"), NPENDING);
    w = bb_send_call(c, "wait",
                     json_pack("{s:o,s:s}", "jobs", jobs, "mode", "stream"));
    json_decref(
        bb_result(c, "scale", bb_jsonq("{'queue':'held','consumers':1}")));
    list = bb_wait_reply(c, w, BB_TIMEOUT_MS);
    ck_assert_msg(list != NULL, "no reply to wait");
    for (int i = 0; i < NPENDING; i++) {
        json_t *n = bb_recv(c, BB_TIMEOUT_MS);

        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(bb_str_at(n, "method"), "job.done");
        ck_assert_msg(bb_int_at(bb_at(n, "params"), "job") ==
                          rp->pending[pending_order[i]],
                      "job %d to finish is %lld, want %lld", i + 1,
                      (long long)bb_int_at(bb_at(n, "params"), "job"),
                      (long long)rp->pending[pending_order[i]]);
        json_decref(n);
    }
    json_decref(list);
}

static void
check_interrupted(struct bb_conn *c, const struct replay *rp, bool is_kill)
{
    json_t *rec = bb_job_status(c, rp->running);
    const char *state = bb_str_at(rec, "state");

    ck_assert_msg(strcmp(state, "pending") == 0 ||
                      strcmp(state, "running") == 0,
                  "job running at the %s: %s after restart",
                  is_kill ? "kill" : "stop", bb_dump(rec));
    if (is_kill) {
        /* A crash counts the attempt, and the job runs again. */
        ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
        ck_assert_str_eq(bb_str_at(rec, "error.code"), "crash");
        json_decref(rec);
        bb_await_state(c, rp->running, "running", JOB_START_MS);
        rec = bb_job_status(c, rp->running);
        ck_assert_msg(bb_num_at(rec, "started") >
                          bb_num_at(rp->running_rec, "started"),
                      "not started again: %s", bb_dump(rec));
    } else {
        /* A graceful stop does not. */
        ck_assert_int_eq(bb_int_at(rec, "attempts"), 0);
        json_decref(rec);
        bb_await_state(c, rp->running, "running", JOB_START_MS);
        rec = bb_job_status(c, rp->running);
        ck_assert_int_eq(bb_int_at(rec, "attempts"), 0);
    }
    json_decref(rec);
}

static void
replay_every_state(bool is_kill)
{
    struct jdir jd;
    char *cfg;
    struct bb_daemon *d;
    struct bb_conn *c;
    struct replay rp = {0};
    double restarted;
    const char *when = is_kill ? "after kill -9" : "after a graceful restart";

    jdir_init(&jd);
    cfg = config_text(
        "{'journal':{'path':'%s','fsync':'batch'},'shutdown':{'grace':0.2},"
        "'queues':{'default':{'kind':'echo','consumers':1},"
        "'held':{'kind':'echo','consumers':0},"
        "'keyed':{'kind':'echo','consumers':0},"
        "'nap':{'kind':'sleep','consumers':1},"
        "'run':{'kind':'exec','consumers':1,"
        "'backoff':{'initial':0.01,'factor':1,'max':0.01}}}}",
        jd.journal);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    replay_prepare(c, &rp);
    bb_close(c);

    d = restart(d, cfg, is_kill);
    restarted = wall_now_s();
    c = bb_connect(d);
    check_finished_records(c, &rp, when);
    check_key_and_ids(c, &rp);
    check_interrupted(c, &rp, is_kill);
    check_pending_order(c, &rp);
    check_delays(c, &rp, restarted);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    replay_free(&rp);
    free(cfg);
    jdir_remove(&jd);
}

START_TEST(graceful_restart_replays_every_job_state)
{
    replay_every_state(false);
}
END_TEST

START_TEST(kill_9_restart_replays_every_job_state_and_reruns_the_running_job)
{
    replay_every_state(true);
}
END_TEST

START_TEST(job_ids_are_never_reused_even_when_every_record_was_reclaimed)
{
    struct jdir jd;
    char *cfg;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t last = 0;

    jdir_init(&jd);
    /* results.max 0: a finished job's record goes at once, and with it
     * the journal's last mention of its id. */
    cfg = config_text("{'journal':{'path':'%s'},'results':{'max':0},"
                      "'queues':{'default':{'kind':'echo','consumers':1}}}",
                      jd.journal);
    d = bb_start("%s", cfg);
    /* Three restarts: graceful, kill -9, graceful. */
    for (int round = 0; round < 4; round++) {
        c = bb_connect(d);
        for (int i = 0; i < 3; i++) {
            json_t *rec = bb_result(
                c, "put", bb_jsonq("{'args':{'i':%d},'wait':true}", i));
            json_int_t id = bb_int_at(rec, "job");

            ck_assert_str_eq(bb_str_at(rec, "state"), "done");
            ck_assert_msg(id > last, "round %d: id %lld after id %lld", round,
                          (long long)id, (long long)last);
            last = id;
            json_decref(rec);
        }
        expect_no_job(c, last);
        /* Acknowledged, so durable: it covers the records before it. */
        last = put_state(c, bb_jsonq("{'args':{}}"), "pending");
        bb_close(c);
        if (round < 3)
            d = restart(d, cfg, round == 1);
    }
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 2. the crash test ---- */

#define CRASH_CYCLES 20
#define CRASH_CONNS 4   /* the last one puts sleep jobs, the others echo */
#define CRASH_WINDOW 32 /* unanswered puts per connection */
#define CRASH_CHUNK 500 /* ids per wait at the end */

struct ids {
    json_int_t *v;
    size_t n, cap;
};

static void
ids_add(struct ids *ids, json_int_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap != 0 ? ids->cap * 2 : 4096;
        ids->v = realloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->n++] = id;
}

struct producer {
    struct bb_conn *conns[CRASH_CONNS];
    int unanswered[CRASH_CONNS];
    struct ids *acked;
    json_int_t floor; /* every id acknowledged before this cycle */
    unsigned seed;
    int cycle;
    long seq;
};

/* A reply to a put: its job id is acknowledged. */
static void
producer_take(struct producer *p, int k, json_t *msg)
{
    json_int_t id;

    ck_assert_msg(json_is_object(bb_at(msg, "result")),
                  "seed %u, cycle %d: put failed: %s", p->seed, p->cycle,
                  bb_dump(msg));
    id = bb_int_at(msg, "result.job");
    ck_assert_msg(id > p->floor,
                  "seed %u, cycle %d: id %lld acknowledged after a restart, "
                  "not above %lld acknowledged before",
                  p->seed, p->cycle, (long long)id, (long long)p->floor);
    ids_add(p->acked, id);
    p->unanswered[k]--;
    json_decref(msg);
}

/* Streams puts on every connection, a window each, until deadline_ms. */
static void
producer_run(struct producer *p, int64_t deadline_ms)
{
    while (bb_now_ms() < deadline_ms) {
        struct pollfd pfd[CRASH_CONNS];
        int wait_ms;

        for (int k = 0; k < CRASH_CONNS; k++) {
            while (p->unanswered[k] < CRASH_WINDOW) {
                json_t *params =
                    k + 1 < CRASH_CONNS
                        ? json_pack("{s:{s:i,s:i,s:I}}", "args", "cycle",
                                    p->cycle, "conn", k, "n",
                                    (json_int_t)p->seq++)
                        : json_pack("{s:s,s:{s:f}}", "queue", "nap", "args",
                                    "seconds", 0.02);

                bb_send_call(p->conns[k], "put", params);
                p->unanswered[k]++;
            }
            pfd[k].fd = bb_fd(p->conns[k]);
            pfd[k].events = POLLIN;
        }
        wait_ms = (int)(deadline_ms - bb_now_ms());
        if (wait_ms <= 0 || poll(pfd, CRASH_CONNS, wait_ms) <= 0)
            continue;
        for (int k = 0; k < CRASH_CONNS; k++) {
            json_t *msg;

            if (pfd[k].revents == 0)
                continue;
            while ((msg = bb_recv(p->conns[k], 0)) != NULL)
                producer_take(p, k, msg);
        }
    }
}

/* After the kill: replies the daemon sent before it died are
 * acknowledgements too; read them up to the end of each stream. */
static void
producer_drain(struct producer *p)
{
    for (int k = 0; k < CRASH_CONNS; k++) {
        json_t *msg;

        while ((msg = bb_recv(p->conns[k], 2000)) != NULL)
            producer_take(p, k, msg);
        bb_close(p->conns[k]);
        p->conns[k] = NULL;
    }
}

struct tally {
    size_t lost;  /* missing, or not done */
    size_t rerun; /* done after an attempt cut short by a crash */
};

/* Counts ids[0..n) into t; prints the first one lost. */
static void
tally_ids(struct bb_conn *c, const json_int_t *ids, size_t n, unsigned seed,
          struct tally *t)
{
    json_t *jobs = json_array(), *r, *list;
    size_t bad = 0;

    for (size_t i = 0; i < n; i++)
        json_array_append_new(jobs, json_integer(ids[i]));
    r = bb_call_within(c, "wait",
                       json_pack("{s:o,s:f}", "jobs", jobs, "timeout", 30.0),
                       40000);
    list = bb_at(r, "result");
    if (json_is_array(list) && json_array_size(list) == n) {
        for (size_t i = 0; i < n; i++) {
            json_t *rec = json_array_get(list, i);

            if (bb_int_at(rec, "job") != ids[i] ||
                strcmp(bb_str_at(rec, "state"), "done") != 0) {
                if (bad++ == 0)
                    fprintf(stderr, "crash test (seed %u): job %lld: %s\n",
                            seed, (long long)ids[i], bb_dump(rec));
            } else if (bb_int_at(rec, "attempts") > 1) {
                t->rerun++;
            }
        }
        json_decref(r);
        t->lost += bad;
        return;
    }
    /* Some id is unknown: find which, one status at a time. */
    json_decref(r);
    for (size_t i = 0; i < n; i++) {
        json_t *s = bb_call(c, "status", json_pack("{s:I}", "job", ids[i]));
        json_t *rec = bb_at(s, "result");

        if (!json_is_object(rec) ||
            strcmp(bb_str_at(rec, "state"), "done") != 0) {
            if (bad++ == 0)
                fprintf(stderr, "crash test (seed %u): job %lld: %s\n", seed,
                        (long long)ids[i], bb_dump(s));
        }
        json_decref(s);
    }
    t->lost += bad;
}

START_TEST(kill_9_at_random_moments_loses_no_acknowledged_job)
{
    const char *env_seed = getenv("ASYNCQ_CRASH_SEED");
    unsigned seed = env_seed != NULL
                        ? (unsigned)strtoul(env_seed, NULL, 10)
                        : (unsigned)time(NULL) ^ (unsigned)getpid();
    struct ids acked = {0};
    struct producer p = {.acked = &acked, .seed = seed};
    struct jdir jd;
    struct bb_daemon *d;
    struct bb_conn *c;
    int64_t t0 = bb_now_ms();
    struct tally t = {0};
    size_t pings = 0;
    char *cfg;

    jdir_init(&jd);
    cfg = config_text(
        "{'journal':{'path':'%s','fsync':'batch'},"
        "'results':{'max':1000000},'shutdown':{'grace':0.1},"
        "'queues':{'default':{'kind':'echo','consumers':3,'retries':100},"
        "'nap':{'kind':'sleep','consumers':8,'maxsize':16,'retries':100}}}",
        jd.journal);
    for (p.cycle = 0; p.cycle < CRASH_CYCLES; p.cycle++) {
        int delay_ms = 20 + (int)(rand_r(&seed) % 281);
        json_t *pong;

        d = bb_start("%s", cfg); /* replayed: it answered a ping */
        ck_assert_msg(is_dir(jd.journal), "seed %u, cycle %d: no journal %s",
                      p.seed, p.cycle, jd.journal);
        c = bb_connect(d);
        pong = bb_result(c, "ping", NULL);
        ck_assert_str_eq(json_string_value(pong), "pong");
        json_decref(pong);
        pings++;
        bb_close(c);
        for (int k = 0; k < CRASH_CONNS; k++) {
            p.conns[k] = bb_connect(d);
            p.unanswered[k] = 0;
        }
        producer_run(&p, bb_now_ms() + delay_ms);
        bb_signal(d, SIGKILL);
        ck_assert_int_eq(bb_wait_exit(d, KILL_TIMEOUT_MS), 128 + SIGKILL);
        producer_drain(&p);
        bb_free(d);
        for (size_t i = 0; i < acked.n; i++) {
            if (acked.v[i] > p.floor)
                p.floor = acked.v[i];
        }
    }

    d = bb_start("%s", cfg);
    c = bb_connect(d);
    json_decref(bb_result_within(c, "join", bb_jsonq("{'timeout':60}"), 70000));
    for (size_t i = 0; i < acked.n; i += CRASH_CHUNK) {
        size_t n = acked.n - i < CRASH_CHUNK ? acked.n - i : CRASH_CHUNK;

        tally_ids(c, acked.v + i, n, p.seed, &t);
    }
    fprintf(stderr,
            "crash test: %d cycles, %zu acknowledged, lost %zu (%zu ran "
            "again after a crash; seed %u, %zu pings after restart, "
            "%.1f s)\n",
            CRASH_CYCLES, acked.n, t.lost, t.rerun, p.seed, pings,
            (double)(bb_now_ms() - t0) / 1000);
    ck_assert_msg(acked.n > 0, "seed %u: no put was acknowledged", p.seed);
    ck_assert_msg(t.lost == 0, "seed %u: %zu of %zu acknowledged jobs lost",
                  p.seed, t.lost, acked.n);
    /* The sleep jobs make sure some were running at a kill. */
    ck_assert_msg(t.rerun > 0, "seed %u: no job was running at any kill",
                  p.seed);
    ck_assert_int_eq(pings, CRASH_CYCLES);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(acked.v);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 3. SIGTERM while exec jobs run ---- */

#define NEXEC 3

START_TEST(sigterm_interrupts_exec_jobs_which_rerun_without_counting_it)
{
    struct jdir jd;
    struct bb_pidfile pf[NEXEC];
    pid_t pids[NEXEC * MAX_PIDS];
    json_int_t ids[NEXEC];
    size_t npids = 0;
    struct bb_daemon *d;
    struct bb_conn *c;
    char *cfg;

    jdir_init(&jd);
    cfg = config_text("{'journal':{'path':'%s'},'shutdown':{'grace':0.1},"
                      "'queues':{'default':{'kind':'exec','consumers':%d,"
                      "'exec':{'kill_grace':0.5}}}}",
                      jd.journal, NEXEC);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < NEXEC; i++) {
        memset(&pf[i], 0, sizeof pf[i]);
        snprintf(pf[i].path, sizeof pf[i].path, "%s/pid%d", jd.root, i);
        /* The shell and its sleep write their pids, then it says done. */
        ids[i] = put_state(
            c,
            bb_jsonq("{'args':{'argv':['/bin/sh','-c',"
                     "'sleep 1 & echo $$ $! > $0; wait $!; echo done',"
                     "'%s']}}",
                     pf[i].path),
            "pending");
    }
    for (int i = 0; i < NEXEC; i++) {
        bb_pidfile_wait(&pf[i]);
        for (size_t k = 0; k < pf[i].n; k++)
            pids[npids++] = pf[i].pids[k];
        bb_await_state(c, ids[i], "running", JOB_START_MS);
    }
    for (size_t k = 0; k < npids; k++)
        ck_assert_msg(bb_pid_alive(pids[k]), "process %d is not running",
                      (int)pids[k]);
    bb_signal(d, SIGTERM);
    ck_assert_int_eq(bb_wait_exit(d, 10000), 0);
    /* Killed processes may take a moment to go once signalled. */
    bb_assert_dead(pids, npids, 500);
    ck_assert_msg(bb_log_has(d, "interrupted"),
                  "the log does not say the jobs were interrupted");
    bb_close(c);
    bb_free(d);

    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < NEXEC; i++) {
        json_t *list = bb_result_within(
            c, "wait",
            json_pack("{s:[I],s:f}", "jobs", ids[i], "timeout", 10.0), 15000);
        json_t *rec = json_array_get(list, 0);

        ck_assert_msg(strcmp(bb_str_at(rec, "state"), "done") == 0,
                      "after restart: %s", bb_dump(rec));
        ck_assert_str_eq(bb_str_at(rec, "result.stdout"), "done\n");
        ck_assert_int_eq(bb_int_at(rec, "result.exit_code"), 0);
        /* The interrupted attempt did not count: only the one that ended. */
        ck_assert_int_eq(bb_int_at(rec, "attempts"), 1);
        json_decref(list);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 4 and 5. torn tail, damage, --repair ---- */

#define TORN_QUEUES                                                            \
    "'queues':{'default':{'kind':'echo','consumers':1},"                       \
    "'held':{'kind':'echo','consumers':0}}"

#define NTORN 5

/* Puts jobs pending and done; their records, as status gives them. */
static void
torn_prepare(struct bb_conn *c, json_int_t *ids, json_t **recs)
{
    for (int i = 0; i < NTORN; i++) {
        if (i % 2 == 0) {
            ids[i] = put_state(
                c, bb_jsonq("{'queue':'held','args':{'i':%d}}", i), "pending");
        } else {
            json_t *r = bb_result(c, "put",
                                  bb_jsonq("{'args':{'i':%d},'wait':true}", i));

            ck_assert_str_eq(bb_str_at(r, "state"), "done");
            ids[i] = bb_int_at(r, "job");
            json_decref(r);
        }
    }
    for (int i = 0; i < NTORN; i++)
        recs[i] = bb_job_status(c, ids[i]);
}

/* The log has a torn-tail warning naming the file, offset and size. */
static void
expect_torn_warning(const struct bb_daemon *d, const char *path, long off,
                    long bytes)
{
    char *log = bb_log(d);
    char *line = line_with(log, "torn");

    ck_assert_msg(line != NULL, "no torn-tail warning in the log:\n%s", log);
    ck_assert_msg(strstr(line, base_name(path)) != NULL &&
                      has_number(line, off) && has_number(line, bytes),
                  "the warning does not name %s, offset %ld and %ld bytes: %s",
                  path, off, bytes, line);
    free(line);
    free(log);
}

START_TEST(torn_tail_is_dropped_with_a_warning_and_every_job_kept)
{
    struct jdir jd;
    json_int_t ids[NTORN];
    json_t *recs[NTORN];
    struct bb_daemon *d;
    struct bb_conn *c;
    struct segs sg;
    struct recs rs;
    unsigned char junk[5], *data;
    size_t len, pick = 0;
    long size;
    char copy[PATH_MAX], *cfg;

    jdir_init(&jd);
    cfg = config_text("{'journal':{'path':'%s'}," TORN_QUEUES "}", jd.journal);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    torn_prepare(c, ids, recs);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* A write cut short: 5 random bytes at the end of the last segment. */
    segs_scan(jd.journal, &sg);
    ck_assert_uint_ge(sg.n, 1);
    size = file_size(sg.last);
    srand((unsigned)time(NULL));
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand();
    /* Keep a copy of a whole record from it, for the second case. */
    recs_scan(sg.last, &rs);
    for (size_t i = 0; i < rs.n && pick == 0; i++) {
        if (rs.len[i] > 40)
            pick = i;
    }
    ck_assert_msg(pick != 0, "%s: no record longer than 40 bytes", sg.last);
    data = file_read(sg.last, &len);
    snprintf(copy, sizeof copy, "%s", sg.last);
    file_append(sg.last, junk, sizeof junk);

    d = bb_start("%s", cfg);
    expect_torn_warning(d, copy, size, (long)sizeof junk);
    ck_assert_msg(file_size(copy) == -1 || file_size(copy) == size,
                  "%s is %ld bytes, not cut back to %ld", copy, file_size(copy),
                  size);
    c = bb_connect(d);
    for (int i = 0; i < NTORN; i++)
        expect_same_record(c, ids[i], recs[i], "after a torn tail");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* Then the first 20 bytes of a valid record. */
    segs_scan(jd.journal, &sg);
    size = file_size(sg.last);
    file_append(sg.last, data + rs.off[pick], 20);
    d = bb_start("%s", cfg);
    expect_torn_warning(d, sg.last, size, 20);
    c = bb_connect(d);
    for (int i = 0; i < NTORN; i++) {
        expect_same_record(c, ids[i], recs[i], "after a torn record");
        json_decref(recs[i]);
    }
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(data);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

#define NDAMAGE 4

START_TEST(damage_before_valid_records_refuses_start_with_status_2_until_repair)
{
    struct jdir jd;
    json_int_t ids[NDAMAGE];
    struct bb_daemon *d;
    struct bb_conn *c;
    struct segs sg;
    struct recs rs;
    struct bb_run r;
    char cli_cfg[PATH_MAX], seg[PATH_MAX], *cfg, *cli_text;
    const char *kept;
    long off, size, nkept;
    size_t bad;

    jdir_init(&jd);
    cfg = config_text("{'journal':{'path':'%s'}," TORN_QUEUES "}", jd.journal);
    cli_text = config_text("{'listen':['tcp://127.0.0.1:0'],'metrics':null,"
                           "'journal':{'path':'%s'}," TORN_QUEUES "}",
                           jd.journal);
    snprintf(cli_cfg, sizeof cli_cfg, "%s/cli.json", jd.root);
    write_text_file(cli_cfg, cli_text);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < NDAMAGE; i++)
        ids[i] = put_state(c, bb_jsonq("{'queue':'held','args':{'i':%d}}", i),
                           "pending");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    /* The segment ends with the jobs' records, one each, in put order:
     * damage the third job's, which the fourth's follows. */
    segs_scan(jd.journal, &sg);
    ck_assert_uint_eq(sg.n, 1);
    snprintf(seg, sizeof seg, "%s", sg.last);
    recs_scan(seg, &rs);
    ck_assert_uint_ge(rs.n, NDAMAGE);
    bad = rs.n - 2;
    off = rs.off[bad];
    size = file_size(seg);
    file_flip_byte(seg, off + (long)rs.len[bad] / 2);

    cli_run(&r, cli_cfg, NULL);
    ck_assert_msg(r.status == 2, "start on a damaged journal: exit %d: %s",
                  r.status, r.err);
    ck_assert_msg(strstr(r.err, base_name(seg)) != NULL &&
                      has_number(r.err, off) &&
                      strstr(r.err, "--repair") != NULL,
                  "the message does not name %s, offset %ld and --repair: %s",
                  seg, off, r.err);
    ck_assert_int_eq(file_size(seg), size); /* refused, not changed */
    bb_run_free(&r);

    cli_run(&r, cli_cfg, "--repair");
    ck_assert_msg(r.status == 0, "--repair: exit %d: %s%s", r.status, r.out,
                  r.err);
    kept = strstr(r.out, " records kept");
    ck_assert_msg(kept != NULL, "--repair does not say what it kept: %s",
                  r.out);
    while (kept > r.out && kept[-1] >= '0' && kept[-1] <= '9')
        kept--;
    nkept = strtol(kept, NULL, 10);
    ck_assert_msg(nkept >= NDAMAGE - 2 && nkept <= (long)bad,
                  "--repair kept %ld records; %d jobs and %zu records "
                  "precede the damage: %s",
                  nkept, NDAMAGE - 2, bad, r.out);
    bb_run_free(&r);

    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (int i = 0; i < NDAMAGE - 2; i++) {
        json_t *rec = bb_job_status(c, ids[i]);

        ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
        json_decref(rec);
    }
    for (int i = NDAMAGE - 2; i < NDAMAGE; i++)
        expect_no_job(c, ids[i]);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cli_text);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

START_TEST(repair_without_a_journal_says_there_is_nothing_to_repair)
{
    struct jdir jd;
    char path[PATH_MAX];
    struct bb_run r;

    jdir_init(&jd);
    snprintf(path, sizeof path, "%s/cli.json", jd.root);
    write_text_file(path, "{\"listen\":[\"tcp://127.0.0.1:0\"],"
                          "\"metrics\":null,\"journal\":{\"path\":null}}");
    cli_run(&r, path, "--repair");
    ck_assert_msg(r.status != 0, "--repair with no journal exited 0: %s",
                  r.out);
    ck_assert_msg(strstr(r.err, "nothing to repair") != NULL,
                  "stderr does not say there is nothing to repair: %s", r.err);
    bb_run_free(&r);
    jdir_remove(&jd);
}
END_TEST

START_TEST(repair_with_the_postgres_store_says_there_is_no_journal)
{
    struct jdir jd;
    char path[PATH_MAX];
    struct bb_run r;

    jdir_init(&jd);
    snprintf(path, sizeof path, "%s/cli.json", jd.root);
    /* --repair stops before the store is opened: no server needed. */
    write_text_file(path, "{\"listen\":[\"tcp://127.0.0.1:0\"],"
                          "\"metrics\":null,\"store\":{\"kind\":\"postgres\","
                          "\"conninfo\":\"host=127.0.0.1 port=1\"}}");
    cli_run(&r, path, "--repair");
    ck_assert_msg(r.status == 1, "--repair on the postgres store: exit %d: %s",
                  r.status, r.out);
    ck_assert_msg(strstr(r.err, "store.kind is postgres") != NULL,
                  "stderr does not say the store is postgres: %s", r.err);
    bb_run_free(&r);
    jdir_remove(&jd);
}
END_TEST

/* ---- 5b. a missing or shortened segment ---- */

#define GAP_SEGMENTS 4
#define GAP_MAX_JOBS 1000

/* The ids of the PUT records in a segment file, in order (the body of a
 * record starts with its type, 2 for PUT, then the job id, u64 LE). */
static size_t
seg_put_ids(const char *path, json_int_t *ids, size_t max)
{
    struct recs rs;
    size_t len, n = 0;
    unsigned char *data = file_read(path, &len);

    recs_scan(path, &rs);
    for (size_t i = 0; i < rs.n && n < max; i++) {
        const unsigned char *b = data + rs.off[i] + HDR_BYTES;
        uint64_t id = 0;

        if (b[0] != 2)
            continue;
        for (int k = 0; k < 8; k++)
            id |= (uint64_t)b[1 + k] << (8 * k);
        ids[n++] = (json_int_t)id;
    }
    free(data);
    return n;
}

/* A journal of GAP_SEGMENTS segments or more, of pending jobs, written by
 * a daemon now stopped: *cfg for bb_start, cli_cfg (a path) for cli_run. */
static void
gap_journal(const struct jdir *jd, char **cfg, char *cli_cfg, size_t len)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    struct segs sg;
    char *cli_text;
    int i = 0;

    *cfg = config_text(
        "{'journal':{'path':'%s','segment_bytes':4096}," TORN_QUEUES "}",
        jd->journal);
    cli_text = config_text(
        "{'listen':['tcp://127.0.0.1:0'],'metrics':null,"
        "'journal':{'path':'%s','segment_bytes':4096}," TORN_QUEUES "}",
        jd->journal);
    snprintf(cli_cfg, len, "%s/cli.json", jd->root);
    write_text_file(cli_cfg, cli_text);
    free(cli_text);
    d = bb_start("%s", *cfg);
    c = bb_connect(d);
    do {
        ck_assert_int_lt(i, GAP_MAX_JOBS);
        put_state(c, bb_jsonq("{'queue':'held','args':{'i':%d}}", i++),
                  "pending");
        segs_scan(jd->journal, &sg);
    } while (sg.n < GAP_SEGMENTS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}

/* Start is refused, exit 2, naming the file, the offset and --repair; the
 * repair keeps the jobs of kept[] and drops lost; then start works. */
static void
expect_refused_then_repaired(const char *cfg, const char *cli_cfg,
                             const char *file, long off, const json_int_t *kept,
                             size_t nkept, json_int_t lost)
{
    struct bb_daemon *d;
    struct bb_conn *c;
    struct bb_run r;

    cli_run(&r, cli_cfg, NULL);
    ck_assert_msg(r.status == 2, "start: exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, file) != NULL && has_number(r.err, off) &&
                      strstr(r.err, "--repair") != NULL,
                  "the message does not name %s, offset %ld and --repair: %s",
                  file, off, r.err);
    bb_run_free(&r);
    cli_run(&r, cli_cfg, "--repair");
    ck_assert_msg(r.status == 0 && strstr(r.out, " records kept") != NULL,
                  "--repair: exit %d: %s%s", r.status, r.out, r.err);
    bb_run_free(&r);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    for (size_t i = 0; i < nkept; i++) {
        json_t *rec = bb_job_status(c, kept[i]);

        ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
        json_decref(rec);
    }
    expect_no_job(c, lost);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
}

START_TEST(missing_middle_segment_refuses_start_with_status_2_until_repair)
{
    struct jdir jd;
    json_int_t kept[GAP_MAX_JOBS], later[GAP_MAX_JOBS];
    size_t nkept;
    char cli_cfg[PATH_MAX], first[PATH_MAX], second[PATH_MAX], *cfg;

    jdir_init(&jd);
    gap_journal(&jd, &cfg, cli_cfg, sizeof cli_cfg);
    snprintf(first, sizeof first, "%s/00000001.aqj", jd.journal);
    snprintf(second, sizeof second, "%s/00000002.aqj", jd.journal);
    nkept = seg_put_ids(first, kept, GAP_MAX_JOBS);
    ck_assert_uint_ge(seg_put_ids(second, later, GAP_MAX_JOBS), 1);
    ck_assert_int_eq(unlink(second), 0);
    expect_refused_then_repaired(cfg, cli_cfg, "00000002.aqj", file_size(first),
                                 kept, nkept, later[0]);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

START_TEST(sealed_segment_cut_at_a_record_boundary_refuses_start_until_repair)
{
    struct jdir jd;
    json_int_t ids[GAP_MAX_JOBS];
    struct recs rs;
    size_t n;
    char cli_cfg[PATH_MAX], first[PATH_MAX], *cfg;

    jdir_init(&jd);
    gap_journal(&jd, &cfg, cli_cfg, sizeof cli_cfg);
    snprintf(first, sizeof first, "%s/00000001.aqj", jd.journal);
    n = seg_put_ids(first, ids, GAP_MAX_JOBS);
    ck_assert_uint_ge(n, 2);
    /* Without its last record, which was a job's PUT: whole records only,
     * every CRC right, and yet a job gone. */
    recs_scan(first, &rs);
    ck_assert_int_eq(truncate(first, rs.off[rs.n - 1]), 0);
    expect_refused_then_repaired(cfg, cli_cfg, "00000001.aqj", rs.off[rs.n - 1],
                                 ids, n - 1, ids[n - 1]);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 6. reclamation ---- */

#define RECLAIM_JOBS 20000
#define RECLAIM_CONNS 2
#define RECLAIM_WINDOW 128
#define RECLAIM_SAMPLE 1000 /* jobs between looks at the directory */

#define NPINNED 3

START_TEST(journal_disk_use_stays_bounded_under_a_stream_of_short_jobs)
{
    struct jdir jd;
    struct bb_daemon *d;
    struct bb_conn *conns[RECLAIM_CONNS], *c;
    int unanswered[RECLAIM_CONNS] = {0};
    long sent = 0, acked = 0, next_sample = RECLAIM_SAMPLE;
    json_int_t pinned[NPINNED], first = 0, newest = 0;
    json_t *pinned_recs[NPINNED], *rec;
    uint64_t max_bytes = 0;
    size_t max_segs = 0;
    struct segs sg;
    char *cfg, pinned_seg[PATH_MAX];

    jdir_init(&jd);
    cfg = config_text(
        "{'journal':{'path':'%s','segment_bytes':65536},"
        "'results':{'max':100},"
        "'queues':{'default':{'kind':'echo','consumers':4,'maxsize':500},"
        "'held':{'kind':'echo','consumers':0}}}",
        jd.journal);
    d = bb_start("%s", cfg);
    for (int k = 0; k < RECLAIM_CONNS; k++)
        conns[k] = bb_connect(d);
    c = conns[0];
    /* Jobs that stay pending all along, their records in the first
     * segment: they must be carried forward, not keep it alive. */
    for (int i = 0; i < NPINNED; i++) {
        pinned[i] = put_state(
            c, bb_jsonq("{'queue':'held','args':{'pinned':%d}}", i), "pending");
        pinned_recs[i] = bb_job_status(c, pinned[i]);
    }
    segs_scan(jd.journal, &sg);
    snprintf(pinned_seg, sizeof pinned_seg, "%s", sg.last);
    while (acked < RECLAIM_JOBS) {
        struct pollfd pfd[RECLAIM_CONNS];

        for (int k = 0; k < RECLAIM_CONNS; k++) {
            while (unanswered[k] < RECLAIM_WINDOW && sent < RECLAIM_JOBS) {
                bb_send_call(
                    conns[k], "put",
                    json_pack("{s:{s:I}}", "args", "n", (json_int_t)sent++));
                unanswered[k]++;
            }
            pfd[k].fd = bb_fd(conns[k]);
            pfd[k].events = POLLIN;
        }
        ck_assert_msg(poll(pfd, RECLAIM_CONNS, BB_TIMEOUT_MS) > 0,
                      "no put acknowledged within %d ms (%ld so far)",
                      BB_TIMEOUT_MS, acked);
        for (int k = 0; k < RECLAIM_CONNS; k++) {
            json_t *msg;

            while (pfd[k].revents != 0 &&
                   (msg = bb_recv(conns[k], 0)) != NULL) {
                json_int_t id = bb_int_at(msg, "result.job");

                if (first == 0 || id < first)
                    first = id;
                if (id > newest)
                    newest = id;
                json_decref(msg);
                unanswered[k]--;
                acked++;
            }
        }
        if (acked >= next_sample) {
            segs_scan(jd.journal, &sg);
            if (sg.bytes > max_bytes)
                max_bytes = sg.bytes;
            if (sg.n > max_segs)
                max_segs = sg.n;
            next_sample += RECLAIM_SAMPLE;
        }
    }
    json_decref(bb_result_within(
        c, "join", bb_jsonq("{'queue':'default','timeout':60}"), 70000));
    ck_assert_int_eq(bb_stat_int(c, "default", "done"), RECLAIM_JOBS);
    segs_scan(jd.journal, &sg);
    fprintf(stderr,
            "reclamation: %d jobs; journal at most %llu bytes in %zu "
            "segments while they ran, %llu bytes in %zu segments at the "
            "end\n",
            RECLAIM_JOBS, (unsigned long long)max_bytes, max_segs,
            (unsigned long long)sg.bytes, sg.n);
    ck_assert_msg(sg.bytes < 1000000, "journal holds %llu bytes at the end",
                  (unsigned long long)sg.bytes);
    ck_assert_msg(sg.n <= 3, "journal holds %zu segments at the end", sg.n);
    /* Many segments later, the pinned jobs were re-appended and the
     * segment that had their records deleted. */
    ck_assert_msg(file_size(pinned_seg) == -1,
                  "%s, with the pinned jobs' first records, is still there",
                  pinned_seg);
    ck_assert_msg(max_bytes < 2000000 && max_segs <= 8,
                  "journal grew to %llu bytes in %zu segments",
                  (unsigned long long)max_bytes, max_segs);
    for (int k = 0; k < RECLAIM_CONNS; k++)
        bb_close(conns[k]);

    /* What reclamation kept is what replay needs. */
    d = restart(d, cfg, true);
    c = bb_connect(d);
    for (int i = 0; i < NPINNED; i++) {
        expect_same_record(c, pinned[i], pinned_recs[i],
                           "after 20000 jobs and kill -9");
        json_decref(pinned_recs[i]);
    }
    rec = bb_job_status(c, newest);
    ck_assert_str_eq(bb_str_at(rec, "state"), "done");
    json_decref(rec);
    expect_no_job(c, first); /* beyond results.max */
    ck_assert_int_gt(put_state(c, bb_jsonq("{'args':{}}"), "pending"), newest);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 7. fsync policies ---- */

#define FSYNC_PUTS 100

static const char *const fsync_policies[] = {"batch", "always", "everysec",
                                             "never"};

START_TEST(every_fsync_policy_keeps_acknowledged_jobs_across_kill_9)
{
    const char *policy = fsync_policies[_i];
    struct jdir jd;
    json_int_t ids[FSYNC_PUTS], calls[FSYNC_PUTS];
    struct bb_daemon *d;
    struct bb_conn *c;
    json_t *done_rec;
    char *cfg;

    jdir_init(&jd);
    cfg = config_text("{'journal':{'path':'%s','fsync':'%s'}," TORN_QUEUES "}",
                      jd.journal, policy);
    d = bb_start("%s", cfg);
    c = bb_connect(d);
    done_rec = bb_result(c, "put", bb_jsonq("{'args':{'p':1},'wait':true}"));
    ck_assert_str_eq(bb_str_at(done_rec, "state"), "done");
    /* Pipelined: all sent, then every acknowledgement read. */
    for (int i = 0; i < FSYNC_PUTS; i++)
        calls[i] = bb_send_call(
            c, "put", bb_jsonq("{'queue':'held','args':{'i':%d}}", i));
    for (int i = 0; i < FSYNC_PUTS; i++) {
        json_t *r = bb_wait_reply(c, calls[i], BB_TIMEOUT_MS);

        ck_assert_msg(r != NULL, "fsync %s: put %d not acknowledged", policy,
                      i);
        ids[i] = bb_int_at(r, "result.job");
        json_decref(r);
    }
    bb_close(c);
    d = restart(d, cfg, true);
    c = bb_connect(d);
    expect_same_record(c, bb_int_at(done_rec, "job"), done_rec,
                       "after kill -9");
    for (int i = 0; i < FSYNC_PUTS; i++) {
        json_t *rec = bb_job_status(c, ids[i]);

        ck_assert_msg(strcmp(bb_str_at(rec, "state"), "pending") == 0,
                      "fsync %s: %s", policy, bb_dump(rec));
        json_decref(rec);
    }
    ck_assert_int_eq(bb_stat_int(c, "held", "size"), FSYNC_PUTS);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    json_decref(done_rec);
    free(cfg);
    jdir_remove(&jd);
}
END_TEST

/* ---- 9. queues that left the config ---- */

#define WITH_EXTRA                                                             \
    "{'journal':{'path':'%s'},"                                                \
    "'queues':{'default':{'kind':'echo','consumers':1},"                       \
    "'extra':{'kind':'echo','consumers':%d}}}"

START_TEST(job_of_a_queue_removed_from_the_config_is_kept_until_sighup_adds_it)
{
    struct jdir jd;
    struct bb_daemon *d;
    struct bb_conn *c;
    json_int_t id;
    json_t *rec;
    char *cfg;

    jdir_init(&jd);
    cfg = config_text(WITH_EXTRA, jd.journal, 0);
    d = bb_start("%s", cfg);
    free(cfg);
    c = bb_connect(d);
    id = put_state(c, bb_jsonq("{'queue':'extra','args':{'e':1}}"), "pending");
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);

    cfg = config_text("{'journal':{'path':'%s'},"
                      "'queues':{'default':{'kind':'echo','consumers':1}}}",
                      jd.journal);
    d = bb_start("%s", cfg);
    free(cfg);
    c = bb_connect(d);
    rec = bb_job_status(c, id);
    ck_assert_str_eq(bb_str_at(rec, "state"), "pending");
    ck_assert_str_eq(bb_str_at(rec, "queue"), "extra");
    json_decref(rec);
    ck_assert_int_eq(bb_stat_int(c, "extra", "consumers"), 0);
    ck_assert_int_eq(bb_stat_int(c, "extra", "size"), 1);

    cfg = config_text(WITH_EXTRA, jd.journal, 1);
    bb_write_config(d, "%s", cfg);
    free(cfg);
    bb_signal(d, SIGHUP);
    ck_assert_msg(bb_log_wait(d, "reload:", 5000), "no reload in the log");
    bb_await_state(c, id, "done", JOB_START_MS);
    rec = bb_job_status(c, id);
    ck_assert_int_eq(bb_int_at(rec, "result.e"), 1);
    json_decref(rec);
    bb_close(c);
    ck_assert_int_eq(bb_stop(d), 0);
    jdir_remove(&jd);
}
END_TEST

Suite *
bb_journal_suite(void)
{
    Suite *s = suite_create("bb_journal");
    TCase *replay = tcase_create("replay");
    TCase *crash = tcase_create("crash");
    TCase *files = tcase_create("files");
    TCase *reclaim = tcase_create("reclaim");

    tcase_set_timeout(replay, 120);
    tcase_add_test(replay, graceful_restart_replays_every_job_state);
    tcase_add_test(
        replay,
        kill_9_restart_replays_every_job_state_and_reruns_the_running_job);
    tcase_add_test(
        replay, job_ids_are_never_reused_even_when_every_record_was_reclaimed);
    tcase_add_test(
        replay, sigterm_interrupts_exec_jobs_which_rerun_without_counting_it);
    tcase_add_loop_test(
        replay, every_fsync_policy_keeps_acknowledged_jobs_across_kill_9, 0, 4);
    tcase_add_test(
        replay,
        job_of_a_queue_removed_from_the_config_is_kept_until_sighup_adds_it);
    suite_add_tcase(s, replay);

    tcase_set_timeout(crash, 300);
    tcase_add_test(crash, kill_9_at_random_moments_loses_no_acknowledged_job);
    suite_add_tcase(s, crash);

    tcase_set_timeout(files, 60);
    tcase_add_test(files,
                   torn_tail_is_dropped_with_a_warning_and_every_job_kept);
    tcase_add_test(
        files,
        damage_before_valid_records_refuses_start_with_status_2_until_repair);
    tcase_add_test(files,
                   repair_without_a_journal_says_there_is_nothing_to_repair);
    tcase_add_test(files,
                   repair_with_the_postgres_store_says_there_is_no_journal);
    tcase_add_test(
        files, missing_middle_segment_refuses_start_with_status_2_until_repair);
    tcase_add_test(
        files,
        sealed_segment_cut_at_a_record_boundary_refuses_start_until_repair);
    suite_add_tcase(s, files);

    tcase_set_timeout(reclaim, 300);
    tcase_add_test(reclaim,
                   journal_disk_use_stays_bounded_under_a_stream_of_short_jobs);
    suite_add_tcase(s, reclaim);
    return s;
}
