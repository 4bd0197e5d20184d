/* SPDX-License-Identifier: MIT */
/*
 * lib/schedule.c: the broker's schedules (spec section 11). A min-heap of
 * schedules by next fire time (wall clock, epoch seconds) and ONE timer,
 * armed for the soonest: no timer per schedule, no polling. A fire is a
 * put from the daemon itself (broker_put_force: never held back by
 * maxsize, never waiting for the store), and the store keeps the last
 * fire time and its job, so that a restart neither fires a time twice nor
 * forgets the times it missed (catch_up).
 *
 * Wall-clock jumps: the timer runs on the monotonic clock, armed for the
 * wall-clock distance to the soonest fire. When it fires, due times are
 * read against the wall clock again: a clock set back re-arms the timer
 * for what is left; a clock set forward past more than one due time of a
 * schedule counts as missed times (catch_up), noticed when the timer fires.
 *
 * Several nodes (lib/pgcluster.c): a gate (aq_broker_schedules_gate)
 * lets only the leader fire. Closed, the timer is not armed; opened, every
 * schedule plans again from its last fire, which the leader has just read
 * from the database (aq_broker_schedule_seen): the takeover is a restart
 * of the one daemon for catch_up and overlap. A previous job this node
 * does not hold counts as unfinished until the database says it is
 * finished (aq_broker_schedule_seen's is_busy).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "cron.h"
#include "error.h"
#include "idmap.h"
#include "log.h"
#include "xmalloc.h"

#define NOT_IN_HEAP SIZE_MAX

struct schedule {
    struct aq_schedule_config cfg; /* owned copy */
    struct aq_cron *cron;          /* owned */
    const struct aq_tz *tz;        /* the table's */
    int64_t next_s;                /* epoch s; -1 = none */
    int64_t last_us;               /* the last fire's time; 0 = never */
    uint64_t last_job;             /* its job; 0 = none */
    uint64_t fired, skipped;       /* since start */
    size_t heap_at;                /* NOT_IN_HEAP when not waiting */
    bool is_missed;                /* next_s is a time missed while down */
    bool is_refusal_logged;        /* until a fire succeeds again */
    bool is_last_busy;             /* gated: last_job unfinished elsewhere */
};

struct heap_ent {
    int64_t next_s; /* s->next_s */
    struct schedule *s;
};

struct sched_table {
    struct aq_broker *b;      /* borrowed: the owner */
    struct event *timer;      /* owned: the soonest fire */
    struct schedule **byname; /* owned, in key order */
    size_t n;
    struct heap_ent *heap; /* owned: by next_s, soonest first */
    size_t nheap, heap_cap;
    struct aq_tz **zones; /* owned, loaded once per name */
    size_t nzones;
    json_t *restored; /* key -> [fire_us, job] of unknown keys */
    bool is_started, is_stopped;
    bool is_gated; /* aq_broker_schedules_gate was called */
    bool may_fire; /* if gated: this node fires (the leader) */
};

/* ---- the heap ---- */

/* A 4-ary heap: half the levels of a binary one, and a node's children
 * are one cache line of keys. The key sits in the array, next to its
 * schedule: a sift compares keys without touching the schedules (100,000
 * of them are cache misses), and moves entries into a hole, so each level
 * writes one schedule's heap_at, not two. */
#define HEAP_ARITY 4

static void
heap_set(struct sched_table *t, size_t i, struct heap_ent e)
{
    t->heap[i] = e;
    e.s->heap_at = i;
}

static void
heap_up(struct sched_table *t, size_t i)
{
    struct heap_ent e = t->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / HEAP_ARITY;

        if (t->heap[parent].next_s <= e.next_s)
            break;
        heap_set(t, i, t->heap[parent]);
        i = parent;
    }
    heap_set(t, i, e);
}

static void
heap_down(struct sched_table *t, size_t i)
{
    struct heap_ent e = t->heap[i];

    for (;;) {
        size_t first = HEAP_ARITY * i + 1, m = i;
        int64_t key = e.next_s;

        for (size_t c = first; c < first + HEAP_ARITY && c < t->nheap; c++) {
            if (t->heap[c].next_s < key) {
                m = c;
                key = t->heap[c].next_s;
            }
        }
        if (m == i)
            break;
        heap_set(t, i, t->heap[m]);
        i = m;
    }
    heap_set(t, i, e);
}

static void
heap_remove(struct sched_table *t, struct schedule *s)
{
    size_t i = s->heap_at;

    if (i == NOT_IN_HEAP)
        return;
    s->heap_at = NOT_IN_HEAP;
    if (i != --t->nheap) {
        heap_set(t, i, t->heap[t->nheap]);
        heap_down(t, i);
        heap_up(t, i);
    }
}

/* s waits for s->next_s (or for nothing when it is -1): its key changes
 * in place (one sift), or it comes in or goes. */
static void
heap_place(struct sched_table *t, struct schedule *s)
{
    size_t i = s->heap_at;

    if (s->next_s < 0) {
        heap_remove(t, s);
        return;
    }
    if (i != NOT_IN_HEAP) {
        t->heap[i].next_s = s->next_s;
        heap_down(t, i);
        heap_up(t, i);
        return;
    }
    if (t->nheap == t->heap_cap) {
        t->heap_cap = t->heap_cap != 0 ? t->heap_cap * 2 : 16;
        t->heap = xreallocarray(t->heap, t->heap_cap, sizeof *t->heap);
    }
    heap_set(t, t->nheap++, (struct heap_ent){s->next_s, s});
    heap_up(t, t->nheap - 1);
}

/* The one timer, for the soonest schedule. */
static void
arm(struct sched_table *t)
{
    int64_t delay_us;
    struct timeval tv;

    if (!t->is_started || t->is_stopped || t->nheap == 0 ||
        (t->is_gated && !t->may_fire)) {
        evtimer_del(t->timer);
        return;
    }
    delay_us = aq_clock_add_us(t->heap[0].next_s > INT64_MAX / 1000000
                                   ? INT64_MAX
                                   : t->heap[0].next_s * 1000000,
                               -aq_clock_wall_us());
    tv = aq_clock_tv(delay_us); /* saturated: 0 when due */
    evtimer_add(t->timer, &tv);
}

/* ---- schedules ---- */

static int64_t
floor_s(int64_t us)
{
    return us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
}

/* The zone named, loaded once for the table; NULL (logged) if it cannot
 * be loaded any more. */
static const struct aq_tz *
zone(struct sched_table *t, const char *name)
{
    struct aq_error err;
    struct aq_tz *z;

    for (size_t i = 0; i < t->nzones; i++) {
        if (strcmp(aq_tz_name(t->zones[i]), name) == 0)
            return t->zones[i];
    }
    if ((z = aq_tz_load(name, &err)) == NULL) {
        aq_log(AQ_LOG_ERROR, "schedules: %s", err.message);
        return NULL;
    }
    t->zones = xreallocarray(t->zones, t->nzones + 1, sizeof *t->zones);
    t->zones[t->nzones++] = z;
    return z;
}

static void
schedule_free(struct schedule *s)
{
    if (s == NULL)
        return;
    aq_schedule_config_clear(&s->cfg);
    aq_cron_free(s->cron);
    free(s);
}

static void
config_copy(struct aq_schedule_config *dst,
            const struct aq_schedule_config *src)
{
    *dst = *src;
    dst->key = xstrdup(src->key);
    dst->cron = xstrdup(src->cron);
    dst->timezone = xstrdup(src->timezone);
    dst->queue = xstrdup(src->queue);
    dst->kind = src->kind != NULL ? xstrdup(src->kind) : NULL;
    dst->args = xstrdup(src->args);
    dst->name = src->name != NULL ? xstrdup(src->name) : NULL;
}

/* s takes sc: its cron and zone. -1 (logged) if they no longer load. */
static int
schedule_configure(struct sched_table *t, struct schedule *s,
                   const struct aq_schedule_config *sc)
{
    struct aq_error err;
    struct aq_cron *c;
    const struct aq_tz *z;

    if ((c = aq_cron_parse(sc->cron, &err)) == NULL) {
        aq_log(AQ_LOG_ERROR, "schedules.%s.cron: %s", sc->key, err.message);
        return -1;
    }
    if ((z = zone(t, sc->timezone)) == NULL) {
        aq_cron_free(c);
        return -1;
    }
    aq_schedule_config_clear(&s->cfg);
    config_copy(&s->cfg, sc);
    aq_cron_free(s->cron);
    s->cron = c;
    s->tz = z;
    return 0;
}

static struct schedule *
schedule_new(struct sched_table *t, const struct aq_schedule_config *sc)
{
    struct schedule *s = xcalloc(1, sizeof *s);

    s->heap_at = NOT_IN_HEAP;
    s->next_s = -1;
    if (schedule_configure(t, s, sc) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static struct schedule *
find(const struct sched_table *t, const char *key, size_t len)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = t->byname[mid]->cfg.key;
        int c = strncmp(k, key, len);

        if (c == 0 && k[len] != '\0')
            c = 1;
        if (c == 0)
            return t->byname[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The next time of s strictly after t_s. */
static int64_t
next_after(const struct schedule *s, int64_t t_s)
{
    return aq_cron_next(s->cron, s->tz, t_s);
}

static void
store_schedule(struct sched_table *t, const char *key, int64_t fire_us,
               uint64_t job)
{
    struct aq_store *st = t->b->store;

    /* Gated (several nodes): a schedule this node does not have may be
     * another node's; its last fire stays. */
    if (fire_us == 0 && t->is_gated)
        return;
    if (st->ops->schedule != NULL)
        st->ops->schedule(st, key, fire_us, job);
}

/* A put of s's job for the time fire_us (wall clock). Skipped while its
 * previous job is unfinished (overlap "skip"), or when the broker refuses
 * it (logged once until a fire succeeds). */
static void
fire(struct sched_table *t, struct schedule *s, int64_t fire_us)
{
    struct aq_broker *b = t->b;
    const struct aq_schedule_config *sc = &s->cfg;
    struct aq_put p = {
        .queue = sc->queue,
        .kind = sc->kind,
        .args_raw = sc->args,
        .args_len = strlen(sc->args),
        .priority = sc->priority,
        .timeout = sc->timeout,
        .retries = sc->retries,
        .name = sc->name != NULL ? sc->name : sc->key,
    };
    struct aq_put_result res;
    struct aq_error err;
    struct aq_job *prev;

    if (!sc->is_overlap_allowed && s->last_job != 0 &&
        ((prev = aq_idmap_get(b->jobs, s->last_job)) != NULL
             ? !aq_job_is_finished(prev)
             : s->is_last_busy)) {
        s->skipped++;
        aq_log(AQ_LOG_DEBUG,
               "schedule %s: skipped, job %llu is not finished (overlap "
               "skip)",
               sc->key, (unsigned long long)s->last_job);
        return;
    }
    if (broker_put_force(b, &p, &res, &err) < 0) {
        s->skipped++;
        if (!s->is_refusal_logged)
            aq_log(AQ_LOG_WARN, "schedule %s: fire refused: %s", sc->key,
                   err.message);
        s->is_refusal_logged = true;
        return;
    }
    s->is_refusal_logged = false;
    s->fired++;
    s->last_us = fire_us;
    s->last_job = res.job;
    s->is_last_busy = t->is_gated; /* until the database says finished */
    store_schedule(t, sc->key, fire_us, res.job);
    aq_log_job(AQ_LOG_DEBUG, res.job, sc->queue, "schedule %s: job %llu put",
               sc->key, (unsigned long long)res.job);
}

/* s's time next_s has come (now_us): one fire for it, or, when times were
 * missed (while down, or the clock jumped), what catch_up says: one fire
 * now for all of them, or none. Then s's next time. */
static void
due(struct sched_table *t, struct schedule *s, int64_t now_us)
{
    int64_t at = s->next_s, after = next_after(s, at);
    bool is_missed =
        s->is_missed || (after >= 0 && after <= INT64_MAX / 1000000 &&
                         after * 1000000 <= now_us);

    s->is_missed = false;
    if (!is_missed) {
        fire(t, s, at * 1000000);
        s->next_s = after;
        return;
    }
    if (s->cfg.is_catch_up_none) {
        s->skipped++;
        aq_log(AQ_LOG_INFO, "schedule %s: missed times skipped (catch_up none)",
               s->cfg.key);
    } else {
        aq_log(AQ_LOG_INFO,
               "schedule %s: missed times, fired once now "
               "(catch_up one)",
               s->cfg.key);
        fire(t, s, now_us);
    }
    s->next_s = next_after(s, floor_s(now_us));
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sched_table *t = arg;
    int64_t now_us = aq_clock_wall_us(), now_s = floor_s(now_us);

    while (!t->is_stopped && t->nheap > 0 && t->heap[0].next_s <= now_s) {
        struct schedule *s = t->heap[0].s;

        due(t, s, now_us);
        heap_place(t, s);
    }
    arm(t);
}

/* The first time of s from now: its next one after its last fire, which
 * is a missed one if it is past; after now if it never fired. */
static void
plan(struct schedule *s, int64_t now_us)
{
    int64_t n;

    s->is_missed = false;
    if (s->last_us == 0) {
        s->next_s = next_after(s, floor_s(now_us));
        return;
    }
    n = next_after(s, floor_s(s->last_us));
    if (n >= 0 && n <= floor_s(now_us)) {
        s->is_missed = true;
        n = floor_s(now_us);
    }
    s->next_s = n;
}

/* ---- the table ---- */

struct sched_table *
sched_new(struct aq_broker *b, const struct aq_config *cfg)
{
    struct sched_table *t = xcalloc(1, sizeof *t);

    t->b = b;
    t->timer = evtimer_new(b->base, timer_cb, t);
    t->byname = xcalloc(cfg->nschedules + 1, sizeof *t->byname);
    t->restored = json_object();
    for (size_t i = 0; i < cfg->nschedules; i++) {
        struct schedule *s = schedule_new(t, &cfg->schedules[i]);

        if (s != NULL)
            t->byname[t->n++] = s; /* cfg is in key order */
    }
    return t;
}

void
sched_free(struct sched_table *t)
{
    if (t == NULL)
        return;
    if (t->timer != NULL)
        event_free(t->timer);
    for (size_t i = 0; i < t->n; i++)
        schedule_free(t->byname[i]);
    free(t->byname);
    free(t->heap);
    for (size_t i = 0; i < t->nzones; i++)
        aq_tz_free(t->zones[i]);
    free(t->zones);
    json_decref(t->restored);
    free(t);
}

void
aq_broker_restore_schedule(struct aq_broker *b, const char *name,
                           size_t name_len, int64_t fire_us, uint64_t job)
{
    struct sched_table *t = b->sched;
    struct schedule *s = find(t, name, name_len);

    if (t->is_started) { /* a leader's read (lib/pgcluster.c) */
        if (s != NULL && fire_us > s->last_us) {
            s->last_us = fire_us;
            s->last_job = job;
        }
        return;
    }
    if (s != NULL) {
        s->last_us = fire_us;
        s->last_job = fire_us != 0 ? job : 0;
        return;
    }
    /* Not in the config (any more): forgotten once the store runs. */
    if (fire_us != 0)
        json_object_setn_new(t->restored, name, name_len, json_true());
    else
        json_object_deln(t->restored, name, name_len);
}

void
aq_broker_schedule_seen(struct aq_broker *b, const char *name, size_t name_len,
                        int64_t fire_us, uint64_t job, bool is_busy)
{
    struct schedule *s = find(b->sched, name, name_len);

    aq_broker_restore_schedule(b, name, name_len, fire_us, job);
    if (s != NULL && s->last_job == job)
        s->is_last_busy = is_busy;
}

bool
aq_broker_has_schedules(const struct aq_broker *b)
{
    return b->sched->n > 0;
}

size_t
aq_broker_schedules_waiting(struct aq_broker *b, uint64_t **jobs)
{
    struct sched_table *t = b->sched;
    size_t n = 0;

    *jobs = NULL;
    for (size_t i = 0; i < t->n; i++) {
        struct schedule *s = t->byname[i];

        if (!s->is_last_busy || s->cfg.is_overlap_allowed || s->last_job == 0 ||
            aq_idmap_get(b->jobs, s->last_job) != NULL)
            continue;
        *jobs = xreallocarray(*jobs, n + 1, sizeof **jobs);
        (*jobs)[n++] = s->last_job;
    }
    return n;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

void
aq_broker_schedules_finished(struct aq_broker *b, uint64_t *jobs, size_t n)
{
    struct sched_table *t = b->sched;

    if (n == 0)
        return;
    qsort(jobs, n, sizeof *jobs, cmp_u64);
    for (size_t i = 0; i < t->n; i++) {
        struct schedule *s = t->byname[i];

        if (s->is_last_busy &&
            bsearch(&s->last_job, jobs, n, sizeof *jobs, cmp_u64) != NULL)
            s->is_last_busy = false;
    }
}

void
aq_broker_schedules_gate(struct aq_broker *b, bool may_fire)
{
    struct sched_table *t = b->sched;
    int64_t now_us = aq_clock_wall_us();
    bool was_open = t->is_gated && t->may_fire;

    t->is_gated = true;
    t->may_fire = may_fire;
    if (may_fire && !was_open && t->is_started) {
        for (size_t i = 0; i < t->n; i++) {
            plan(t->byname[i], now_us);
            heap_place(t, t->byname[i]);
        }
    }
    if (may_fire != was_open && t->n > 0)
        aq_log(AQ_LOG_INFO, "schedules: %s",
               may_fire ? "this node fires them (leader)"
                        : "another node fires them");
    arm(t);
}

void
sched_start(struct sched_table *t)
{
    int64_t now_us = aq_clock_wall_us();
    const char *key;
    json_t *v;

    json_object_foreach (t->restored, key, v)
        store_schedule(t, key, 0, 0);
    json_object_clear(t->restored);
    t->is_started = true;
    for (size_t i = 0; i < t->n; i++) {
        plan(t->byname[i], now_us);
        heap_place(t, t->byname[i]);
    }
    if (t->n > 0)
        aq_log(AQ_LOG_INFO, "schedules: %zu", t->n);
    arm(t);
}

void
sched_stop(struct sched_table *t)
{
    t->is_stopped = true;
    evtimer_del(t->timer);
}

void
sched_reconfigure(struct sched_table *t, const struct aq_config *cfg)
{
    struct schedule **byname = xcalloc(cfg->nschedules + 1, sizeof *byname);
    int64_t now_us = aq_clock_wall_us();
    size_t n = 0, i = 0;

    /* Both lists are in key order: one merge. */
    for (size_t k = 0; k < cfg->nschedules; k++) {
        const struct aq_schedule_config *sc = &cfg->schedules[k];
        struct schedule *s = NULL;
        int c = 1;

        while (i < t->n && (c = strcmp(t->byname[i]->cfg.key, sc->key)) < 0) {
            struct schedule *gone = t->byname[i++];

            aq_log(AQ_LOG_INFO, "reload: schedule %s: removed", gone->cfg.key);
            heap_remove(t, gone);
            store_schedule(t, gone->cfg.key, 0, 0);
            schedule_free(gone);
        }
        if (i < t->n && c == 0) {
            s = t->byname[i++];
            if (!aq_schedule_config_equal(&s->cfg, sc)) {
                if (schedule_configure(t, s, sc) == 0)
                    aq_log(AQ_LOG_INFO, "reload: schedule %s: changed",
                           sc->key);
                s->is_refusal_logged = false;
                s->is_missed = false;
                s->next_s = next_after(s, floor_s(now_us));
                if (t->is_started)
                    heap_place(t, s);
            }
        } else if ((s = schedule_new(t, sc)) != NULL) {
            aq_log(AQ_LOG_INFO, "reload: schedule %s: added", sc->key);
            s->next_s = next_after(s, floor_s(now_us));
            if (t->is_started)
                heap_place(t, s);
        }
        if (s != NULL)
            byname[n++] = s;
    }
    while (i < t->n) {
        struct schedule *gone = t->byname[i++];

        aq_log(AQ_LOG_INFO, "reload: schedule %s: removed", gone->cfg.key);
        heap_remove(t, gone);
        store_schedule(t, gone->cfg.key, 0, 0);
        schedule_free(gone);
    }
    free(t->byname);
    t->byname = byname;
    t->n = n;
    arm(t);
}

/* ---- reading them ---- */

static json_t *
time_or_null(int64_t us)
{
    if (us == 0)
        return json_null();
    if (us % 1000000 == 0)
        return json_integer((json_int_t)(us / 1000000));
    return json_real((double)us / 1e6);
}

static json_t *
schedule_json(const struct aq_broker *b, const struct schedule *s)
{
    const struct aq_schedule_config *sc = &s->cfg;
    const struct broker_queue *bq = broker_queue_find(b, sc->queue);
    const char *kind = sc->kind != NULL ? sc->kind
                       : bq != NULL     ? bq->cfg.kind
                                        : NULL;

    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:o, s:o, s:o, s:I, s:I}", "name",
        sc->key, "cron", sc->cron, "timezone", sc->timezone, "queue", sc->queue,
        "kind", kind, "overlap", sc->is_overlap_allowed ? "allow" : "skip",
        "catch_up", sc->is_catch_up_none ? "none" : "one", "next",
        s->next_s >= 0 && s->heap_at != NOT_IN_HEAP
            ? json_integer((json_int_t)s->next_s)
            : json_null(),
        "last", time_or_null(s->last_us), "last_job",
        s->last_job != 0 ? json_integer((json_int_t)s->last_job) : json_null(),
        "fired", (json_int_t)s->fired, "skipped", (json_int_t)s->skipped);
}

json_t *
aq_broker_schedules(struct aq_broker *b, const char *name)
{
    struct sched_table *t = b->sched;
    json_t *list = json_array();

    if (name != NULL) {
        struct schedule *s = find(t, name, strlen(name));

        if (s == NULL) {
            json_decref(list);
            return NULL;
        }
        json_array_append_new(list, schedule_json(b, s));
    } else {
        for (size_t i = 0; i < t->n; i++)
            json_array_append_new(list, schedule_json(b, t->byname[i]));
    }
    return json_pack("{s:o}", "schedules", list);
}

void
aq_broker_each_schedule(struct aq_broker *b,
                        void (*fn)(const struct aq_schedule_stats *s,
                                   void *arg),
                        void *arg)
{
    struct sched_table *t = b->sched;

    for (size_t i = 0; i < t->n; i++) {
        struct aq_schedule_stats st = {
            t->byname[i]->cfg.key, t->byname[i]->fired, t->byname[i]->skipped};

        fn(&st, arg);
    }
}
