/* SPDX-License-Identifier: MIT */
/*
 * lib/pgcluster.c: schedules, pause and maxsize across the nodes of one
 * schema (lib/pgcluster.h). One transaction in flight at a time: what is
 * asked meanwhile (a poll, a count after a NOTIFY, pauses to write) waits
 * for it and goes out together as the next one.
 *
 * A session: LISTEN, the pauses not written yet, S.queues read and
 * applied; then at each poll the schedules lock tried (unless held), the
 * last fires read, and the counts of the queues with a maxsize.
 *
 * The remaining window of schedules: a leader's fire is written by the
 * store (write-behind). A leader whose session here is lost closes its
 * gate at once, but a fire it made just before, not yet committed, is not
 * in S.schedules when the next leader reads it: that time may then fire
 * again (once per takeover at most; catch_up "one" fires a missed time
 * once in any case).
 */
#include "pgcluster.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "broker-internal.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "pg_schema.h"
#include "pgconn.h"
#include "queue.h"
#include "xmalloc.h"

#define POLL_MS 1000

struct aq_pgcluster {
    struct event_base *base;
    struct aq_broker *b; /* borrowed */
    struct aq_pgconn *conn;
    char *schema, *node, *channel;
    char *sql_take, *sql_listen, *sql_done, *sql_count, *sql_queues, *sql_pause;
    struct event *poll_ev, *tick_ev;
    struct event *count_ev; /* a recount put off (COUNT_GAP_MS) */
    int64_t counted_us;     /* monotonic: the last count sent */
    json_t *pauses;         /* queue -> paused: to write */
    json_t *sent;           /* queue -> paused: in the transaction in flight */
    bool is_fresh;          /* connected: S.queues not read yet */
    bool is_busy;           /* a transaction in flight */
    bool want_poll, want_count;
    bool is_locked; /* holds the schedules lock */
    bool is_leader; /* and has read S.schedules: the gate is open */
};

static bool
is_lost(const char *err)
{
    return strncmp(err, "connection lost", 15) == 0;
}

static void
tick_soon(struct aq_pgcluster *c)
{
    event_active(c->tick_ev, EV_TIMEOUT, 0);
}

/* Recounts asked by notifications ("f", "p queue": one per commit of
 * every node) go out at most every COUNT_GAP_MS: a count per commit took
 * the server's CPU from the writes (maxsize is on by default). */
#define COUNT_GAP_MS 200

static void
count_soon(struct aq_pgcluster *c)
{
    int64_t wait_us =
        c->counted_us + COUNT_GAP_MS * INT64_C(1000) - aq_clock_mono_us();
    struct timeval tv;

    if (wait_us <= 0) {
        tick_soon(c);
        return;
    }
    if (evtimer_pending(c->count_ev, NULL))
        return;
    tv.tv_sec = (time_t)(wait_us / 1000000);
    tv.tv_usec = (suseconds_t)(wait_us % 1000000);
    evtimer_add(c->count_ev, &tv);
}

/* Whether bq's count matters before the next poll: puts wait for room,
 * or the jobs known (here and elsewhere) reach half its maxsize. Else
 * the poll's count (every second) is enough: a count reads every
 * unfinished row of the queue (~20 ms for 10,000 under load). */
static bool
is_near_full(const struct broker_queue *bq)
{
    size_t max = bq->cfg.maxsize;

    return max != 0 &&
           (aq_queue_putters(bq->q) != 0 ||
            aq_queue_unfinished(bq->q) + aq_queue_outside(bq->q) >= max / 2);
}

static bool
any_near_full(const struct aq_broker *b)
{
    const struct broker_queue *bq;

    STAILQ_FOREACH (bq, &b->queues, link)
        if (is_near_full(bq))
            return true;
    return false;
}

static bool
has_maxsize(const struct aq_broker *b)
{
    const struct broker_queue *bq;

    STAILQ_FOREACH (bq, &b->queues, link)
        if (bq->cfg.maxsize != 0 || aq_queue_outside(bq->q) != 0)
            return true;
    return false;
}

/* ---- what comes back ---- */

/* The schedules lock tried, and when taken, S.schedules read: this node
 * leads from what the previous leader fired. */
static void
take_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgcluster *c = arg;

    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "cluster: postgres: schedules lock: %s", err);
        return;
    }
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        return;
    c->is_locked = true;
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 1))
            continue; /* no schedule in the table */
        aq_broker_schedule_seen(c->b, PQgetvalue(res, i, 1),
                                (size_t)PQgetlength(res, i, 1),
                                strtoll(PQgetvalue(res, i, 2), NULL, 10),
                                strtoull(PQgetvalue(res, i, 3), NULL, 10),
                                strcmp(PQgetvalue(res, i, 4), "t") == 0);
    }
    c->is_leader = true;
    aq_broker_schedules_gate(c->b, true);
}

/* The jobs overlap waits for that finished elsewhere. */
static void
done_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgcluster *c = arg;
    uint64_t *jobs;
    int n;

    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "cluster: postgres: schedules' jobs: %s", err);
        return;
    }
    n = PQntuples(res);
    jobs = xreallocarray(NULL, n > 0 ? (size_t)n : 1, sizeof *jobs);
    for (int i = 0; i < n; i++)
        jobs[i] = strtoull(PQgetvalue(res, i, 0), NULL, 10);
    aq_broker_schedules_finished(c->b, jobs, (size_t)n);
    free(jobs);
}

/* No longer leading: another node may. */
static void
step_down(struct aq_pgcluster *c)
{
    c->is_locked = false;
    if (!c->is_leader)
        return;
    c->is_leader = false;
    aq_broker_schedules_gate(c->b, false);
}

static void
count_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgcluster *c = arg;
    struct broker_queue *bq;

    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "cluster: postgres: counting jobs: %s", err);
        return;
    }
    STAILQ_FOREACH (bq, &c->b->queues, link) {
        size_t n = 0;

        for (int i = 0; i < PQntuples(res) && bq->cfg.maxsize != 0; i++) {
            if (strcmp(PQgetvalue(res, i, 0), bq->cfg.name) == 0) {
                n = strtoull(PQgetvalue(res, i, 1), NULL, 10);
                break;
            }
        }
        if (n != aq_queue_outside(bq->q))
            aq_log(AQ_LOG_DEBUG,
                   "cluster: queue %s: %zu unfinished jobs on other nodes "
                   "or in the pool",
                   bq->cfg.name, n);
        aq_queue_set_outside(bq->q, n);
    }
}

/* A queue's state as another node (or an earlier session) left it. */
static void
apply_pause(struct aq_pgcluster *c, const char *queue, bool paused)
{
    struct aq_error err;

    if (aq_broker_pause(c->b, queue, paused, &err) < 0)
        aq_log(AQ_LOG_DEBUG, "cluster: %s: %s", paused ? "pause" : "resume",
               err.message);
}

static void
queues_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgcluster *c = arg;

    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "cluster: postgres: reading queues: %s", err);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *q = PQgetvalue(res, i, 0);

        /* A pause told here since is newer: it is written next. */
        if (json_object_get(c->pauses, q) == NULL)
            apply_pause(c, q, strcmp(PQgetvalue(res, i, 1), "t") == 0);
    }
    c->is_fresh = false;
    aq_log(AQ_LOG_INFO, "cluster: postgres: %s: schema %s, node %s: listening",
           aq_pgconn_server(c->conn), c->schema, c->node);
}

/* The pauses of a transaction that did not commit: written again, unless
 * told again meanwhile. */
static void
pauses_back(struct aq_pgcluster *c)
{
    const char *q;
    json_t *v;

    json_object_foreach (c->sent, q, v) {
        if (json_object_get(c->pauses, q) == NULL)
            json_object_set(c->pauses, q, v);
    }
    json_object_clear(c->sent);
}

static void
commit_cb(void *arg, const PGresult *res, const char *err)
{
    struct aq_pgcluster *c = arg;

    c->is_busy = false;
    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "cluster: postgres: %s", err);
        pauses_back(c);
    } else
        json_object_clear(c->sent);
    tick_soon(c);
}

/* ---- what goes out ---- */

static int
send_pauses(struct aq_pgcluster *c, struct aq_error *err)
{
    const char *q;
    json_t *v;

    json_object_foreach (c->pauses, q, v) {
        char *payload = xasprintf("%c %s", json_is_true(v) ? 'P' : 'R', q);
        const char *values[] = {q, json_is_true(v) ? "t" : "f", c->channel,
                                payload};
        int rc = aq_pgconn_query(c->conn, "aq_cl_pause", c->sql_pause, 4,
                                 values, NULL, NULL, err);

        free(payload);
        if (rc < 0)
            return -1;
        json_object_set(c->sent, q, v);
    }
    json_object_clear(c->pauses);
    return 0;
}

/* The schedules' jobs this leader waits for (overlap) and does not hold:
 * which finished. */
static int
send_waiting(struct aq_pgcluster *c, struct aq_error *err)
{
    uint64_t *jobs;
    size_t n = aq_broker_schedules_waiting(c->b, &jobs);
    const char *values[1];
    char *text, *p;
    int rc;

    if (n == 0)
        return 0;
    p = text = xmalloc(n * 21 + 3);
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%" PRIu64, i > 0 ? "," : "", jobs[i]);
    *p++ = '}';
    *p = '\0';
    free(jobs);
    values[0] = text;
    rc = aq_pgconn_query(c->conn, "aq_cl_done", c->sql_done, 1, values, done_cb,
                         c, err);
    free(text);
    return rc;
}

static int
send_count(struct aq_pgcluster *c, struct aq_error *err)
{
    const struct broker_queue *bq;
    const char *values[2];
    json_t *names = json_array();
    char *text;
    int rc;

    /* A text array literal: queue names are [A-Za-z0-9_.-], JSON's
     * quoting is the array's. */
    STAILQ_FOREACH (bq, &c->b->queues, link)
        if (bq->cfg.maxsize != 0)
            json_array_append_new(names, json_string(bq->cfg.name));
    text = json_dumps(names, JSON_COMPACT);
    json_decref(names);
    text[0] = '{';
    text[strlen(text) - 1] = '}';
    values[0] = text;
    values[1] = c->node;
    rc = aq_pgconn_query(c->conn, "aq_cl_count", c->sql_count, 2, values,
                         count_cb, c, err);
    free(text);
    return rc;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgcluster *c = arg;
    bool is_poll = c->want_poll, is_count = c->want_count;
    bool has_sched = aq_broker_has_schedules(c->b);
    struct aq_error err;

    if (c->is_busy || !aq_pgconn_is_ready(c->conn))
        return;
    if (!c->is_fresh && !is_poll && !is_count &&
        json_object_size(c->pauses) == 0)
        return;
    c->want_poll = c->want_count = false;
    if (c->is_fresh && aq_pgconn_query(c->conn, NULL, c->sql_listen, 0, NULL,
                                       NULL, NULL, &err) < 0)
        goto fail;
    if (send_pauses(c, &err) < 0)
        goto fail;
    if (c->is_fresh && aq_pgconn_query(c->conn, NULL, c->sql_queues, 0, NULL,
                                       queues_cb, c, &err) < 0)
        goto fail;
    if (is_poll && !c->is_locked && has_sched &&
        aq_pgconn_query(c->conn, NULL, c->sql_take, 0, NULL, take_cb, c, &err) <
            0)
        goto fail;
    if (is_poll && c->is_locked && !has_sched) { /* all gone at a reload */
        if (aq_pgconn_query(c->conn, NULL, "SELECT pg_advisory_unlock_all()", 0,
                            NULL, NULL, NULL, &err) < 0)
            goto fail;
        step_down(c);
    }
    if (is_poll && c->is_leader && send_waiting(c, &err) < 0)
        goto fail;
    if ((is_poll || is_count) && has_maxsize(c->b)) {
        if (send_count(c, &err) < 0)
            goto fail;
        c->counted_us = aq_clock_mono_us();
    }
    if (aq_pgconn_commit(c->conn, commit_cb, c, &err) < 0)
        goto fail;
    c->is_busy = true;
    return;
fail:
    /* Not ready any more: the lost hook follows, and ready again. */
    aq_log(AQ_LOG_DEBUG, "cluster: postgres: %s", err.message);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aq_pgcluster *c = arg;

    c->want_poll = true;
    tick_cb(-1, 0, c);
}

/* ---- the session ---- */

static void
ready_hook(struct aq_pgconn *conn, void *arg)
{
    struct aq_pgcluster *c = arg;

    c->is_fresh = true;
    c->is_busy = false;
    c->want_poll = true;
    tick_soon(c);
}

static void
lost_hook(struct aq_pgconn *conn, const char *why, void *arg)
{
    struct aq_pgcluster *c = arg;

    c->is_busy = false;
    if (c->is_leader)
        aq_log(AQ_LOG_WARN,
               "cluster: postgres: session lost (%s): schedules stop here",
               why);
    step_down(c);
    pauses_back(c);
}

static void
notify_hook(struct aq_pgconn *conn, const char *channel, const char *payload,
            void *arg)
{
    struct aq_pgcluster *c = arg;
    const struct broker_queue *bq;

    if ((payload[0] == 'P' || payload[0] == 'R') && payload[1] == ' ') {
        apply_pause(c, payload + 2, payload[0] == 'P');
        return;
    }
    if (payload[0] == 'f' && payload[1] == '\0')
        c->want_count = c->want_count || any_near_full(c->b);
    else if (payload[0] == 'p' && payload[1] == ' ' &&
             (bq = broker_queue_find(c->b, payload + 2)) != NULL &&
             is_near_full(bq))
        c->want_count = true;
    if (c->want_count)
        count_soon(c);
}

/* ---- public ---- */

/* The SQL is laid out by hand. */
/* clang-format off */
/* The lock tried ($K) and, only when taken, each schedule's last fire,
 * its job, and whether that job is unfinished. */
static const char sql_take[] =
    "WITH l AS (SELECT pg_try_advisory_lock($K) AS got) "
    "SELECT l.got, s.name, "
        "(extract(epoch FROM s.last_fire) * 1000000)::bigint, s.last_job, "
        "coalesce(j.state < 4, false) "
    "FROM l LEFT JOIN (@S.schedules s LEFT JOIN @S.jobs j "
        "ON j.id = s.last_job) ON l.got";

/* Of the jobs $1, those finished or gone. */
static const char sql_done[] =
    "SELECT x FROM unnest($1::bigint[]) AS t(x) WHERE NOT EXISTS "
        "(SELECT 1 FROM @S.jobs WHERE id = t.x AND state < 4)";

/* Unfinished rows this node does not hold (in its memory: rows whose node
 * it is), by queue. */
static const char sql_count[] =
    "SELECT queue, count(*) FROM @S.jobs WHERE state < 4 "
        "AND queue = ANY($1::text[]) AND node IS DISTINCT FROM $2 "
    "GROUP BY queue";

static const char sql_queues[] = "SELECT name, paused FROM @S.queues";

static const char sql_pause[] =
    "WITH w AS (INSERT INTO @S.queues (name, paused) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused) "
    "SELECT pg_notify($3, $4)";
/* clang-format on */

struct aq_pgcluster *
aq_pgcluster_new(struct event_base *base, struct aq_broker *b,
                 const char *conninfo, const char *schema, const char *node,
                 struct aq_error *err)
{
    static const struct aq_pgconn_hooks hooks = {
        .ready = ready_hook,
        .lost = lost_hook,
        .notify = notify_hook,
    };
    struct aq_pgcluster *c = xcalloc(1, sizeof *c);
    long ms = aq_pg_env_ms("ASYNCQ_PG_POLL_MS", POLL_MS);
    struct timeval every = {ms / 1000, (ms % 1000) * 1000};

    c->base = base;
    c->b = b;
    c->node = aq_pg_node_name(node); /* as the store names this node */
    c->schema = xstrdup(schema);
    c->channel = xasprintf("%s_events", schema);
    {
        char key[24], *take = aq_pg_sql(sql_take, schema);
        char *at = strstr(take, "$K");

        snprintf(key, sizeof key, "%" PRId64, aq_pg_schedules_lock_key(schema));
        c->sql_take =
            xasprintf("%.*s%s%s", (int)(at - take), take, key, at + 2);
        free(take);
    }
    c->sql_listen = xasprintf("LISTEN \"%s_events\"", schema);
    c->sql_done = aq_pg_sql(sql_done, schema);
    c->sql_count = aq_pg_sql(sql_count, schema);
    c->sql_queues = aq_pg_sql(sql_queues, schema);
    c->sql_pause = aq_pg_sql(sql_pause, schema);
    c->pauses = json_object();
    c->sent = json_object();
    c->tick_ev = event_new(base, -1, 0, tick_cb, c);
    c->count_ev = evtimer_new(base, tick_cb, c);
    c->poll_ev = event_new(base, -1, EV_PERSIST, poll_cb, c);
    event_add(c->poll_ev, &every);
    aq_broker_schedules_gate(b, false);
    if ((c->conn = aq_pgconn_new(base, conninfo, &hooks, c, err)) == NULL) {
        aq_pgcluster_free(c);
        return NULL;
    }
    return c;
}

void
aq_pgcluster_free(struct aq_pgcluster *c)
{
    if (c == NULL)
        return;
    aq_pgconn_free(c->conn);
    event_free(c->tick_ev);
    event_free(c->count_ev);
    event_free(c->poll_ev);
    if (json_object_size(c->pauses) + json_object_size(c->sent) > 0)
        aq_log(AQ_LOG_WARN,
               "cluster: postgres: %zu pauses or resumes not "
               "written: the other nodes do not know them",
               json_object_size(c->pauses) + json_object_size(c->sent));
    json_decref(c->pauses);
    json_decref(c->sent);
    free(c->node);
    free(c->schema);
    free(c->channel);
    free(c->sql_take);
    free(c->sql_listen);
    free(c->sql_done);
    free(c->sql_count);
    free(c->sql_queues);
    free(c->sql_pause);
    free(c);
}

struct start_wait {
    struct aq_pgcluster *c;
    bool is_late;
    int sig;
};

static void
start_late_cb(evutil_socket_t fd, short what, void *arg)
{
    struct start_wait *w = arg;

    w->is_late = true;
}

static void
start_signal_cb(evutil_socket_t fd, short what, void *arg)
{
    struct start_wait *w = arg;

    w->sig = (int)fd;
}

int
aq_pgcluster_start(struct aq_pgcluster *c, int timeout_ms, struct aq_error *err)
{
    struct start_wait w = {c, false, 0};
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    struct event *late = evtimer_new(c->base, start_late_cb, &w),
                 *term = evsignal_new(c->base, SIGTERM, start_signal_cb, &w),
                 *intr = evsignal_new(c->base, SIGINT, start_signal_cb, &w);

    /* No client is served yet, no consumer waits: the loop runs the
     * sessions' events only. */
    evtimer_add(late, &tv);
    event_add(term, NULL);
    event_add(intr, NULL);
    while ((c->is_fresh || !aq_pgconn_is_ready(c->conn)) && !w.is_late &&
           w.sig == 0)
        event_base_loop(c->base, EVLOOP_ONCE);
    event_free(late);
    event_free(term);
    event_free(intr);
    if (w.sig != 0) {
        aq_error_set(err, AQ_ERR_SHUTTING_DOWN,
                     "cluster: postgres: stopped by %s before the paused "
                     "queues were read",
                     w.sig == SIGTERM ? "SIGTERM" : "SIGINT");
        return -1;
    }
    if (w.is_late)
        aq_log(AQ_LOG_WARN,
               "cluster: postgres: the paused queues not read within %d ms: "
               "queues start as configured, paused ones pause once read",
               timeout_ms);
    return 0;
}

void
aq_pgcluster_paused(void *arg, const char *queue, bool paused)
{
    struct aq_pgcluster *c = arg;

    json_object_set_new(c->pauses, queue, json_boolean(paused));
    tick_soon(c);
}

bool
aq_pgcluster_is_leader(const struct aq_pgcluster *c)
{
    return c->is_leader;
}
