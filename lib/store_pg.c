/* SPDX-License-Identifier: MIT */
/*
 * lib/store_pg.c: PostgreSQL as a store (lib/store.h), over lib/pgconn.h.
 * Each job event becomes an op holding the row values it writes: a whole
 * row (put, start, requeue, finish, retry: one upsert), or a delete. The
 * ops told while the transaction before is in flight (at most
 * MAX_INFLIGHT transactions are) form a send window and go out as one
 * transaction of at most one multi-row statement per kind (over unnest),
 * and a sync barrier completes once the commit of every op told before it
 * succeeded. Ops stay until their commit: after a lost connection they are
 * sent again, in order, and are idempotent (upserts of whole rows,
 * deletes). At each connect the schema is migrated (lib/pg_schema.h) and
 * the node's advisory lock taken: one asyncqd per (schema, node).
 *
 * Several nodes share a schema (docs/cluster.md): a row's node is the
 * node holding the job, NULL for the pool. A put with no free taker here
 * is given to the pool while other nodes run (sp_give) and forgotten once
 * committed; a hungry queue claims pool rows (one claim in flight per
 * queue, on this connection, its own transaction) when told ("p queue"
 * on <schema>_events), when a taker waits, and at each poll. Writes are
 * fenced on node. The heartbeat sweeps lost nodes' rows back to the pool;
 * a clean close gives the held, not running, rows back.
 *
 * A row's later write replaces its earlier op not sent yet: a whole row
 * or a delete supersedes what came before it (a delete stays before a
 * whole row, which would insert the row again), a schedule's fire the one
 * before, a reservation the one before. A window then holds one op per
 * row (a job put, started and finished in it is one row write), and the
 * backlog while the server is away one op per row touched, not one per
 * event. Ops sent and not known committed stay as they are, for the
 * re-send.
 *
 * Every LEASE_RENEW_MS the node renews, in one transaction, its row of
 * S.nodes (seen) and the lease_deadline of the rows it runs: a deadline in
 * the past means the node stopped renewing it.
 *
 * Job ids come from blocks of ID_BLOCK reserved in S.ids (one at
 * restore, the next once half of the broker's block is given: a
 * transaction of its own), so no two nodes give one id, even once rows
 * are deleted; a clean close gives back what was not used.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker-internal.h"
#include "error.h"
#include "log.h"
#include "pg_schema.h"
#include "pgconn.h"
#include "store-internal.h"
#include "xmalloc.h"

#define READ_CHUNK 5000 /* rows per SELECT at restore */
#define CLOSE_WAIT_S 10 /* close waits that long for the last commit */
#define ID_BLOCK 10000  /* job ids reserved at a time */
/* Transactions of ops in flight at most: the server commits (fsyncs) one
 * after the other, so ops told meanwhile wait and go out together as the
 * next one (group commit) rather than as a queue of small commits. One
 * more than 1 keeps the next one at the server while it fsyncs. */
#define MAX_INFLIGHT 2
/* The heartbeat's interval; ASYNCQ_PG_LEASE_RENEW_MS (for tests) sets
 * another, read at open. A lease lasts 3 intervals, or the job's own
 * timeout when longer. */
#define LEASE_RENEW_MS 10000
#define LEASE_INTERVALS 3

/* The poll's interval (ASYNCQ_PG_POLL_MS sets another, read at open):
 * pool rows whose time came are made ready, hungry queues claim. */
#define POLL_MS 1000
#define CLAIM_MAX 1000 /* rows per claim */

enum op_kind { OP_WHOLE, OP_DELETE, OP_SCHED, OP_UNSCHED, OP_NKINDS };
enum { WHOLE_NCOLS = 24 };

struct pg_op {
    TAILQ_ENTRY(pg_op) link;
    uint64_t pos; /* events told up to this one */
    uint64_t gen; /* the send window it was told in (sp->gen then) */
    uint64_t id;  /* the job's (OP_WHOLE, OP_DELETE) */
    uint8_t kind; /* enum op_kind */
    uint8_t nv;
    uint8_t is_pool; /* a row of the pool (node NULL): the job is given */
    char *key;       /* owned: "s:" name, "ids"; NULL: the job's row (id) */
    char *v[];       /* nv values, NULL = SQL NULL, in the op's allocation */
};
TAILQ_HEAD(pg_ops, pg_op);

/* The ops not sent yet of jobs by id: open addressing, cleared at each
 * send (an op replaced is replaced in its slot: nothing is removed). */
struct op_index {
    struct pg_op **slot;
    size_t cap, n; /* cap: a power of 2 */
};

/* A growable string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

struct pg_txn {
    TAILQ_ENTRY(pg_txn) link;
    struct store_pg *sp;
    uint64_t last_pos;
    char *notes; /* owned: its notifications (a text array), or NULL */
};
TAILQ_HEAD(pg_txns, pg_txn);

enum phase { PH_CONNECTING, PH_MIGRATING, PH_LOCKING, PH_READING, PH_LOCKED };

struct store_pg {
    struct aq_store store;
    struct event_base *base;
    struct aq_pgconn *conn; /* owned */
    char *schema, *node;    /* owned */
    int64_t lock_key;
    char *sql_whole, *sql_delete, *sql_sched, *sql_unsched, *sql_read,
        *sql_read_sched, *sql_node, *sql_reserve, *sql_release, *sql_seen,
        *sql_renew, *sql_notify, *sql_claim, *sql_claim_lifo, *sql_promote,
        *sql_peers, *sql_sweep_lost, *sql_sweep_idle, *sql_sweep_records,
        *sql_give_back, *sql_gone, *sql_listen, *sql_lease_own, *sql_adopt,
        *sql_key_lock, *sql_key_taken, *sql_release_waiting;
    char *channel;            /* "<schema>_events" */
    struct aq_broker *broker; /* borrowed, from restore on */
    enum phase phase;
    bool is_restored;
    struct aq_error fatal;         /* code != 0: restore fails with it */
    char why[512];                 /* why not locked: for nowait puts */
    struct aq_error unavail;       /* "store unavailable: why" */
    struct pg_ops ops;             /* told, not committed: oldest first */
    size_t nops;                   /* in ops: asyncq_store_backlog */
    struct op_index unsent;        /* id: the job's op not sent yet */
    json_t *unsent_named;          /* key: its op not sent yet (json integer) */
    struct sbuf vals;              /* scratch: an op's values */
    struct sbuf cols[WHOLE_NCOLS]; /* scratch: a statement's arrays */
    uint64_t told, committed, sent;
    uint64_t gen;        /* send windows: + 1 at each transaction sent */
    struct pg_txns txns; /* in flight */
    size_t ntxns;        /* in txns */
    struct aq_barrier_list barriers;
    struct event *flush_ev, *retry_ev, *renew_ev, *poll_ev, *claim_ev;
    long renew_ms, poll_ms;
    bool is_renewing;    /* a renewal in flight */
    bool is_sweeping;    /* a sweep of dead nodes' rows in flight */
    bool is_polling;     /* a poll in flight */
    bool is_reserving;   /* a block of ids asked for */
    bool has_peers;      /* other nodes were seen lately: puts may be given */
    struct sbuf notes;   /* scratch: a window's notifications */
    struct sbuf unsaid;  /* notifications committed, not sent yet */
    bool is_notifying;   /* a transaction of notifications in flight */
    struct sbuf keys[2]; /* scratch: a window's live keys, their ids */
    uint64_t last_id;
    uint64_t reserved;    /* the end of the last block of ids reserved */
    uint64_t block_first; /* restore: the first block's */
    uint64_t given;       /* the highest id written, or restored */
    uint64_t read_after;  /* restore: the last id read */
    uint64_t commits, reconnects, connects, claims, released;
};

static struct store_pg *
sp_of(struct aq_store *s)
{
    return (struct store_pg *)s;
}

static const uint8_t pg_state_of[STORE_NSTATES] = {
    [STORE_DELAYED] = 0,   [STORE_WAITING] = 1, [STORE_PENDING] = 2,
    [STORE_RUNNING] = 3,   [STORE_DONE] = 4,    [STORE_FAILED] = 5,
    [STORE_CANCELLED] = 6,
};
static const uint8_t pg_state_to[7] = {
    STORE_DELAYED, STORE_WAITING, STORE_PENDING,   STORE_RUNNING,
    STORE_DONE,    STORE_FAILED,  STORE_CANCELLED,
};

/* ---- values ---- */

static void
sb_add(struct sbuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        while (b->len + n > b->cap)
            b->cap = b->cap != 0 ? b->cap * 2 : 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* n in decimal into out (24 bytes at least); its length. */
static size_t
fmt_i64(char *out, int64_t n)
{
    char t[24];
    size_t len = 0, i = sizeof t;
    uint64_t u = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;

    do
        t[--i] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (n < 0)
        out[len++] = '-';
    memcpy(out + len, t + i, sizeof t - i);
    return len + sizeof t - i;
}

/* An op's values are built in sp->vals, each followed by a NUL (or a
 * NULL marker: an offset of SIZE_MAX), then copied with the op. */
struct vals {
    struct sbuf *b;
    size_t off[WHOLE_NCOLS];
    uint8_t n;
};

static void
val_null(struct vals *vs)
{
    vs->off[vs->n++] = SIZE_MAX;
}

static void
val_str(struct vals *vs, const char *p, size_t len)
{
    if (p == NULL) {
        val_null(vs);
        return;
    }
    vs->off[vs->n++] = vs->b->len;
    sb_add(vs->b, p, len);
    sb_add(vs->b, "", 1);
}

static void
val_jstr(struct vals *vs, struct aq_jstr s)
{
    val_str(vs, s.p, s.len);
}

static void
val_i64(struct vals *vs, int64_t n)
{
    char t[24];

    val_str(vs, t, fmt_i64(t, n));
}

static void
val_time(struct vals *vs, int64_t us) /* 0 = never: NULL */
{
    if (us != 0)
        val_i64(vs, us);
    else
        val_null(vs);
}

/* after's journal bytes (8 each, little-endian) as an array literal. */
static void
val_after(struct vals *vs, const struct aq_jrec *r)
{
    char t[24];

    if (r->after.p == NULL) {
        val_null(vs);
        return;
    }
    vs->off[vs->n++] = vs->b->len;
    sb_add(vs->b, "{", 1);
    for (uint32_t i = 0; i < r->after.len / 8; i++) {
        uint64_t id = 0;

        for (int k = 0; k < 8; k++)
            id |= (uint64_t)(unsigned char)r->after.p[i * 8 + k] << (8 * k);
        if (i > 0)
            sb_add(vs->b, ",", 1);
        sb_add(vs->b, t, fmt_i64(t, (int64_t)id));
    }
    sb_add(vs->b, "}", 2); /* with the NUL */
}

/* A running job's lease from its start: its timeout, or 3 heartbeats
 * when longer (as the heartbeat renews it). */
static int64_t
lease_us(const struct store_pg *sp, const struct aq_job *j, int64_t started_us)
{
    int64_t t = job_timeout_us(j),
            beats = LEASE_INTERVALS * sp->renew_ms * 1000;

    if (started_us == 0)
        return 0;
    return aq_clock_add_us(started_us, t > beats ? t : beats);
}

static struct vals
vals_start(struct store_pg *sp)
{
    struct vals vs = {.b = &sp->vals};

    sp->vals.len = 0;
    return vs;
}

/* An op of the values built in vs: one allocation. */
static struct pg_op *
op_new(enum op_kind kind, uint64_t id, char *key, const struct vals *vs)
{
    size_t head = sizeof(struct pg_op) + vs->n * sizeof(char *);
    struct pg_op *op = xmalloc(head + vs->b->len);
    char *text = (char *)op + head;

    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->nv = vs->n;
    op->id = id;
    op->key = key;
    memcpy(text, vs->b->p, vs->b->len);
    for (uint8_t i = 0; i < vs->n; i++)
        op->v[i] = vs->off[i] != SIZE_MAX ? text + vs->off[i] : NULL;
    return op;
}

static void
op_free(struct pg_op *op)
{
    free(op->key);
    free(op);
}

/* The slot of id in the index: its op's, or the empty one to take. */
static struct pg_op **
index_slot(struct op_index *x, uint64_t id)
{
    size_t mask = x->cap - 1,
           i = (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;

    while (x->slot[i] != NULL && x->slot[i]->id != id)
        i = (i + 1) & mask;
    return &x->slot[i];
}

/* The slot of id, room for one more op made first (the slot stays valid
 * until the next call). */
static struct pg_op **
index_room(struct op_index *x, uint64_t id)
{
    if ((x->n + 1) * 2 > x->cap) {
        struct op_index y = {xcalloc(x->cap * 2, sizeof *y.slot), x->cap * 2,
                             x->n};

        for (size_t i = 0; i < x->cap; i++)
            if (x->slot[i] != NULL)
                *index_slot(&y, x->slot[i]->id) = x->slot[i];
        free(x->slot);
        *x = y;
    }
    return index_slot(x, id);
}

static void
index_clear(struct op_index *x)
{
    if (x->n != 0)
        memset(x->slot, 0, x->cap * sizeof *x->slot);
    x->n = 0;
}

static void
op_tell(struct store_pg *sp, struct pg_op *op)
{
    struct pg_op **slot = NULL, *old;
    json_t *v;

    /* The op of the row told and not sent yet, or NULL. */
    if (op->key == NULL) {
        slot = index_room(&sp->unsent, op->id);
        old = *slot;
    } else {
        v = json_object_get(sp->unsent_named, op->key);
        old =
            v != NULL ? (struct pg_op *)(uintptr_t)json_integer_value(v) : NULL;
    }
    /* The new op holds the row's latest state, or deletes it: the one
     * before it, not sent, goes (a delete stays before a whole row, which
     * would insert the row again). Its events count as told still: a
     * barrier on them completes with the new op's commit. */
    if (old != NULL && (old->kind != OP_DELETE || op->kind == OP_DELETE)) {
        TAILQ_REMOVE(&sp->ops, old, link);
        sp->nops--;
        op_free(old);
    }
    op->pos = ++sp->told;
    op->gen = sp->gen;
    TAILQ_INSERT_TAIL(&sp->ops, op, link);
    sp->nops++;
    if (slot != NULL) {
        sp->unsent.n += old == NULL;
        *slot = op;
    } else {
        json_object_set_new(sp->unsent_named, op->key,
                            json_integer((json_int_t)(uintptr_t)op));
    }
    event_active(sp->flush_ev, EV_TIMEOUT, 0);
}

/* ---- job events ---- */

static void ids_reserve(struct store_pg *sp);

/* Ids up to id are given: the next block is reserved once half of the
 * broker's block is. */
static void
id_given(struct store_pg *sp, uint64_t id)
{
    const struct aq_broker *b = sp->broker;

    if (id > sp->given)
        sp->given = id;
    if (b != NULL && b->id_next_last == 0 &&
        (b->id_limit == 0 || id + ID_BLOCK / 2 > b->id_limit))
        ids_reserve(sp);
}

static void
sp_whole(struct aq_store *s, struct aq_job *j, const char *queue)
{
    struct store_pg *sp = sp_of(s);
    struct aq_jrec r;
    unsigned char *after;
    struct vals vs;
    struct pg_op *op;

    id_given(sp, j->id);
    store_job_whole(j, queue, &r, &after);
    vs = vals_start(sp);
    val_i64(&vs, (int64_t)r.id);
    val_jstr(&vs, r.queue);
    val_i64(&vs, r.kind);
    val_i64(&vs, pg_state_of[r.state]);
    val_i64(&vs, r.priority);
    val_time(&vs, r.due_us);
    val_i64(&vs, r.attempts);
    val_i64(&vs, r.retries);
    val_i64(&vs, r.retried);
    val_i64(&vs, r.timeout_us);
    val_i64(&vs, r.created_us);
    val_time(&vs, r.started_us);
    val_time(&vs, r.finished_us);
    if (j->jseg == 0)
        val_str(&vs, sp->node, strlen(sp->node)); /* held here */
    else
        val_null(&vs); /* given: the pool's */
    val_time(&vs,
             j->state == AQ_JOB_RUNNING ? lease_us(sp, j, r.started_us) : 0);
    val_jstr(&vs, r.key);
    val_jstr(&vs, r.name);
    val_jstr(&vs, r.batch);
    val_after(&vs, &r);
    if (r.after.p != NULL)
        val_i64(&vs, r.after_policy);
    else
        val_null(&vs);
    if (r.args.p != NULL)
        val_jstr(&vs, r.args);
    else
        val_str(&vs, "", 0);
    val_jstr(&vs, r.result);
    val_jstr(&vs, r.err_code);
    val_jstr(&vs, r.err_message);
    free(after);
    op = op_new(OP_WHOLE, j->id, NULL, &vs);
    op->is_pool = j->jseg != 0;
    op_tell(sp, op);
}

/* A put given to the pool, while other nodes run: the row is written
 * with node NULL, and the job forgotten here once it is committed
 * (settle: aq_broker_given). A node alone keeps its jobs. */
static bool
sp_shares(const struct aq_store *s)
{
    return ((const struct store_pg *)s)->has_peers;
}

static bool
sp_give(struct aq_store *s, struct aq_job *j, const char *queue)
{
    struct store_pg *sp = sp_of(s);

    if (!sp->has_peers)
        return false;
    j->jseg = 1;
    sp_whole(s, j, queue);
    return true;
}

/* A start or a requeue writes the whole row too: one statement kind for
 * every write of a row, an upsert found by the primary key (an UPDATE
 * joined to unnest may get a generic plan that scans the table), and a
 * row's events of one pass in one op. */
static void
sp_rewrite(struct aq_store *s, struct aq_job *j)
{
    sp_whole(s, j, job_queue(j)->cfg.name);
}

static void
sp_delete(struct aq_store *s, struct aq_job *j)
{
    struct store_pg *sp = sp_of(s);
    struct vals vs = vals_start(sp);

    val_i64(&vs, (int64_t)j->id);
    op_tell(sp, op_new(OP_DELETE, j->id, NULL, &vs));
}

static void
sp_schedule(struct aq_store *s, const char *name, int64_t fire_us, uint64_t job)
{
    struct store_pg *sp = sp_of(s);
    struct vals vs = vals_start(sp);

    val_str(&vs, name, strlen(name));
    if (fire_us != 0) {
        val_i64(&vs, fire_us);
        val_i64(&vs, (int64_t)job);
    }
    op_tell(sp, op_new(fire_us != 0 ? OP_SCHED : OP_UNSCHED, 0,
                       xasprintf("s:%s", name), &vs));
}

/* ---- sending ---- */

/* Appends v as an element of a text array literal. */
static void
array_elem(struct sbuf *b, const char *v, bool first)
{
    if (!first)
        sb_add(b, ",", 1);
    if (v == NULL) {
        sb_add(b, "NULL", 4);
        return;
    }
    sb_add(b, "\"", 1);
    for (const char *p = v; *p != '\0';) {
        size_t n = strcspn(p, "\"\\");

        sb_add(b, p, n);
        p += n;
        if (*p != '\0') {
            sb_add(b, "\\", 1);
            sb_add(b, p, 1);
            p++;
        }
    }
    sb_add(b, "\"", 1);
}

/* names := the text array literal of the broker's queue names (with its
 * NUL, for a parameter); when nums is not NULL, nums := the array of
 * num(queue) in the same order. */
static void
queue_arrays(struct store_pg *sp, struct sbuf *names, struct sbuf *nums,
             int64_t (*num)(const struct broker_queue *bq))
{
    const struct broker_queue *bq;
    char t[24];
    bool first = true;

    names->len = 0;
    sb_add(names, "{", 1);
    if (nums != NULL) {
        nums->len = 0;
        sb_add(nums, "{", 1);
    }
    STAILQ_FOREACH (bq, &sp->broker->queues, link) {
        array_elem(names, bq->cfg.name, first);
        if (nums != NULL) {
            if (!first)
                sb_add(nums, ",", 1);
            sb_add(nums, t, fmt_i64(t, num(bq)));
        }
        first = false;
    }
    sb_add(names, "}", 2);
    if (nums != NULL)
        sb_add(nums, "}", 2);
}

static const char *
op_sql(struct store_pg *sp, enum op_kind kind, const char **name)
{
    static const char *const names[] = {"aq_whole", "aq_delete", "aq_sched",
                                        "aq_unsched"};
    const char *const sql[] = {sp->sql_whole, sp->sql_delete, sp->sql_sched,
                               sp->sql_unsched};

    *name = names[kind];
    return sql[kind];
}

/* Sends the ops of kind among those from first to end as one statement
 * of arrays, in told order. */
static int
send_kind(struct store_pg *sp, struct pg_op *first, struct pg_op *end,
          enum op_kind kind, uint8_t nv)
{
    const char *values[WHOLE_NCOLS + 1];
    const char *name, *sql = op_sql(sp, kind, &name);
    struct aq_error err;
    bool is_first = true;
    int nparams = nv;

    for (uint8_t c = 0; c < nv; c++) {
        sp->cols[c].len = 0;
        sb_add(&sp->cols[c], "{", 1);
    }
    for (struct pg_op *op = first; op != end; op = TAILQ_NEXT(op, link)) {
        if (op->kind != kind)
            continue;
        for (uint8_t c = 0; c < nv; c++)
            array_elem(&sp->cols[c], op->v[c], is_first);
        is_first = false;
    }
    for (uint8_t c = 0; c < nv; c++) {
        sb_add(&sp->cols[c], "}", 2); /* with the NUL */
        values[c] = sp->cols[c].p;
    }
    if (kind == OP_DELETE)
        values[nparams++] = sp->node; /* fenced: rows held here */
    return aq_pgconn_query(sp->conn, name, sql, nparams, values, NULL, NULL,
                           &err);
}

/* The live keys of the whole rows from first to end, and their ids,
 * into sp->keys as array literals; how many. */
static size_t
live_keys(struct store_pg *sp, struct pg_op *first, struct pg_op *end)
{
    struct sbuf *kb = &sp->keys[0], *ib = &sp->keys[1];
    size_t n = 0;

    kb->len = ib->len = 0;
    sb_add(kb, "{", 1);
    sb_add(ib, "{", 1);
    for (struct pg_op *op = first; op != end; op = TAILQ_NEXT(op, link)) {
        if (op->kind != OP_WHOLE || op->v[15] == NULL || op->v[3][0] >= '4')
            continue;
        array_elem(kb, op->v[15], n == 0);
        array_elem(ib, op->v[0], n == 0);
        n++;
    }
    sb_add(kb, "}", 2);
    sb_add(ib, "}", 2);
    return n;
}

static int64_t col_i64(const PGresult *res, int row, int col);

static void
key_taken_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL || sp->broker == NULL)
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t st = col_i64(res, i, 2);

        aq_broker_key_taken(
            sp->broker, (uint64_t)col_i64(res, i, 0),
            (uint64_t)col_i64(res, i, 1),
            st >= 0 && st <= 6
                ? (enum aq_job_state)store_state_from[pg_state_to[st]]
                : AQ_JOB_PENDING);
    }
}

/* Before the window's whole rows, its live keys locked; after them, the
 * jobs whose key another job holds, told to the broker. */
static int
send_keys(struct store_pg *sp, bool is_after)
{
    const char *values[2];
    struct aq_error err;

    if (!is_after) {
        values[0] = sp->keys[0].p;
        values[1] = sp->schema;
        return aq_pgconn_query(sp->conn, "aq_key_lock", sp->sql_key_lock, 2,
                               values, NULL, NULL, &err);
    }
    values[0] = sp->keys[1].p;
    values[1] = sp->keys[0].p;
    return aq_pgconn_query(sp->conn, "aq_key_taken", sp->sql_key_taken, 2,
                           values, key_taken_cb, sp, &err);
}

/* Adds the notifications of the ops from first to end to sp->notes (a
 * text array's elements, without braces): "p queue" for rows put in the
 * pool, "f" once for finishes and deletes. They go out once their
 * transaction committed (txn_notify). */
static void
add_notes(struct store_pg *sp, struct pg_op *first, struct pg_op *end)
{
    struct sbuf *nb = &sp->notes;
    const char *last = NULL;
    bool is_first = nb->len == 0, has_f = false;
    char note[160];

    for (struct pg_op *op = first; op != end; op = TAILQ_NEXT(op, link)) {
        if (op->kind == OP_DELETE ||
            (op->kind == OP_WHOLE && op->v[3][0] >= '4'))
            has_f = true;
        else if (op->kind == OP_WHOLE && op->is_pool &&
                 strcmp(op->v[3], "2") == 0 &&
                 (last == NULL || strcmp(last, op->v[1]) != 0)) {
            last = op->v[1];
            snprintf(note, sizeof note, "p %s", last);
            array_elem(nb, note, is_first);
            is_first = false;
        }
    }
    if (has_f)
        array_elem(nb, "f", is_first);
}

static void noop_cb(void *arg, const PGresult *res, const char *err);

static void notify_send(struct store_pg *sp);

static void
notified_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    sp->is_notifying = false;
    if (err == NULL && sp->unsaid.len != 0)
        notify_send(sp);
}

/* The notifications committed so far, in a transaction of their own that
 * does not wait for its WAL flush, one in flight at a time (those
 * committed meanwhile go out together next): a NOTIFY in the writes'
 * transaction held the server's notification lock through their flush and
 * tripled a put's acknowledgement (0.9 -> 3 ms p50 at 1,000 puts/s). Lost
 * with the connection, they are made up by the nodes' polls. */
static void
notify_send(struct store_pg *sp)
{
    const char *values[2];
    struct aq_error err;

    sb_add(&sp->unsaid, "}", 2); /* with the NUL */
    values[0] = sp->channel;
    values[1] = sp->unsaid.p;
    if (aq_pgconn_query(sp->conn, "aq_notify_async",
                        "SET LOCAL synchronous_commit = off", 0, NULL, NULL,
                        NULL, &err) == 0 &&
        aq_pgconn_query(sp->conn, "aq_notify", sp->sql_notify, 2, values, NULL,
                        NULL, &err) == 0 &&
        aq_pgconn_commit(sp->conn, notified_cb, sp, &err) == 0)
        sp->is_notifying = true;
    sp->unsaid.len = 0;
}

/* notes (a text array) of a transaction that committed: to be sent. */
static void
txn_notify(struct store_pg *sp, const char *notes)
{
    size_t n = strlen(notes);

    if (n <= 2) /* "{}" */
        return;
    /* "{a,b}" appended as "{a,b" or ",a,b" (notify_send closes it) */
    sb_add(&sp->unsaid, sp->unsaid.len == 0 ? "{" : ",", 1);
    sb_add(&sp->unsaid, notes + 1, n - 2);
    if (!sp->is_notifying)
        notify_send(sp);
}

/* Sends the ops of one send window, first up to end, as at most one
 * statement per kind. Each row has one op in a window, but for deletes
 * (op_tell): a row's delete before its write. Deletes go first, then the
 * whole rows in told order: the unique index on keys is checked row by
 * row, so a key freed (a row deleted, or finished) is free before a later
 * put takes it. Rows are never deleted and written again (ids are not
 * reused); schedules and the id mark are other tables. */
static int
send_window(struct store_pg *sp, struct pg_op *first, struct pg_op *end)
{
    static const uint8_t order[] = {OP_DELETE, OP_WHOLE, OP_UNSCHED, OP_SCHED};
    uint8_t nv[OP_NKINDS] = {0};
    bool has_keys;

    for (struct pg_op *op = first; op != end; op = TAILQ_NEXT(op, link))
        nv[op->kind] = op->nv;
    has_keys = nv[OP_WHOLE] != 0 && live_keys(sp, first, end) > 0;
    for (size_t i = 0; i < sizeof order; i++) {
        if (nv[order[i]] == 0)
            continue;
        if (order[i] == OP_WHOLE && has_keys && send_keys(sp, false) < 0)
            return -1;
        if (send_kind(sp, first, end, order[i], nv[order[i]]) < 0)
            return -1;
        if (order[i] == OP_WHOLE && has_keys && send_keys(sp, true) < 0)
            return -1;
    }
    add_notes(sp, first, end);
    return 0;
}

/* err says the connection was lost (lib/pgconn.h): what was sent is sent
 * again once connected, not a failure of the statement. */
static bool
is_lost(const char *err)
{
    return strncmp(err, "connection lost", 15) == 0;
}

static void commit_cb(void *arg, const PGresult *res, const char *err);

/* The ops not sent yet go out as one transaction: one send window, or
 * several when ops are sent again after a lost connection (each window
 * in turn: a row may have an op in each). */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;
    struct pg_op *op, *first;
    struct pg_txn *txn;
    struct aq_error err;

    if (sp->phase != PH_LOCKED || !aq_pgconn_is_ready(sp->conn) ||
        sp->sent == sp->told || sp->ntxns >= MAX_INFLIGHT)
        return; /* a commit's callback flushes again */
    TAILQ_FOREACH (op, &sp->ops, link)
        if (op->pos > sp->sent)
            break;
    sp->notes.len = 0;
    while (op != NULL) {
        first = op;
        while (op != NULL && op->gen == first->gen)
            op = TAILQ_NEXT(op, link);
        if (send_window(sp, first, op) < 0)
            return; /* lost meanwhile: sent again once ready */
    }
    txn = xcalloc(1, sizeof *txn);
    txn->sp = sp;
    txn->last_pos = sp->told;
    if (sp->notes.len != 0) {
        sb_add(&sp->notes, "}", 2); /* with the NUL */
        txn->notes = xasprintf("{%s", sp->notes.p);
    }
    if (aq_pgconn_commit(sp->conn, commit_cb, txn, &err) < 0) {
        free(txn->notes);
        free(txn);
        return;
    }
    TAILQ_INSERT_TAIL(&sp->txns, txn, link);
    sp->ntxns++;
    sp->sent = sp->told;
    sp->gen++;
    index_clear(&sp->unsent); /* every op is sent */
    json_object_clear(sp->unsent_named);
}

/* Ops up to pos are done with: committed, or failed for good (why). */
static void
settle(struct store_pg *sp, uint64_t pos, const struct aq_error *why)
{
    struct pg_op *op;
    struct aq_barrier *b;

    while ((op = TAILQ_FIRST(&sp->ops)) != NULL && op->pos <= pos) {
        TAILQ_REMOVE(&sp->ops, op, link);
        sp->nops--;
        if (op->is_pool && sp->broker != NULL)
            aq_broker_given(sp->broker, op->id, why == NULL);
        op_free(op);
    }
    if (pos > sp->committed)
        sp->committed = pos;
    while ((b = TAILQ_FIRST(&sp->barriers)) != NULL && b->pos <= pos) {
        TAILQ_REMOVE(&sp->barriers, b, link);
        b->cb(b->arg, why);
    }
}

static void
commit_cb(void *arg, const PGresult *res, const char *err)
{
    struct pg_txn *txn = arg;
    struct store_pg *sp = txn->sp;
    uint64_t pos = txn->last_pos;
    char *notes = txn->notes;
    struct aq_error why;

    TAILQ_REMOVE(&sp->txns, txn, link);
    sp->ntxns--;
    free(txn);
    if (err == NULL && notes != NULL)
        txn_notify(sp, notes);
    free(notes);
    if (err == NULL) {
        sp->commits++;
        settle(sp, pos, NULL);
        if (sp->sent < sp->told)
            event_active(sp->flush_ev, EV_TIMEOUT, 0);
        return;
    }
    if (is_lost(err)) {
        /* Committed or not: sent again, in order, once connected. */
        sp->sent = sp->committed;
        return;
    }
    aq_log(AQ_LOG_ERROR,
           "store: postgres: a commit failed, its %llu events "
           "are dropped: %s",
           (unsigned long long)(pos - sp->committed), err);
    aq_error_set(&why, AQ_ERR_INTERNAL, "store: postgres: %s", err);
    settle(sp, pos, &why);
    if (sp->sent < sp->told)
        event_active(sp->flush_ev, EV_TIMEOUT, 0);
}

/* ---- the session: migrate, lock, read ---- */

static void session_start(struct store_pg *sp);

static void set_fatal(struct store_pg *sp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_fatal(struct store_pg *sp, const char *fmt, ...)
{
    char msg[sizeof sp->why];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!sp->is_restored) {
        aq_error_set(&sp->fatal, AQ_ERR_INTERNAL, "%s", msg);
        return;
    }
    /* After start: logged, tried again (the lock) after a while. */
    aq_log(AQ_LOG_ERROR, "%s; trying again in 5 s", msg);
    snprintf(sp->why, sizeof sp->why, "%s", msg);
    struct timeval five = {5, 0};
    evtimer_add(sp->retry_ev, &five);
}

static void
noop_cb(void *arg, const PGresult *res, const char *err)
{
}

static void read_chunk(struct store_pg *sp);
static void adopt(struct store_pg *sp);
static void sweep(struct store_pg *sp);

static int64_t
col_i64(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col)
               ? 0
               : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static struct aq_jstr
col_str(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return (struct aq_jstr){NULL, 0};
    return (struct aq_jstr){PQgetvalue(res, row, col),
                            (uint32_t)PQgetlength(res, row, col)};
}

/* after's text "{1,2}" as journal bytes (8 each, little-endian). */
static unsigned char *
after_bytes(const char *text, uint32_t *len)
{
    size_t n = 0, cap = 8;
    unsigned char *out = xmalloc(cap * 8);
    const char *p = text + (*text == '{');

    while (*p != '\0' && *p != '}') {
        char *end;
        uint64_t id = strtoull(p, &end, 10);

        if (end == p)
            break;
        if (n == cap)
            out = xreallocarray(out, cap *= 2, 8);
        for (int k = 0; k < 8; k++)
            out[n * 8 + k] = (unsigned char)(id >> (8 * k));
        n++;
        p = end + (*end == ',');
    }
    *len = (uint32_t)(n * 8);
    return out;
}

/* One row of S.jobs (in the order of sql_read) into the broker. */
static int
restore_row(struct store_pg *sp, const PGresult *res, int row)
{
    struct aq_jrec r = {0};
    int64_t state = col_i64(res, row, 3);
    unsigned char *after = NULL;
    struct aq_job *j;

    r.id = (uint64_t)col_i64(res, row, 0);
    r.queue = col_str(res, row, 1);
    r.kind = (uint8_t)col_i64(res, row, 2);
    if (r.id == 0 || state < 0 || state > 6 || r.kind > AQ_KIND_REMOTE) {
        aq_error_set(&sp->fatal, AQ_ERR_INTERNAL,
                     "store: postgres: job %llu: malformed row",
                     (unsigned long long)r.id);
        return -1;
    }
    r.state = pg_state_to[state];
    r.type = aq_job_state_is_finished(store_state_from[r.state]) ? AQ_JREC_END
                                                                 : AQ_JREC_PUT;
    r.priority = (int32_t)col_i64(res, row, 4);
    r.due_us = col_i64(res, row, 5);
    r.attempts = (uint16_t)col_i64(res, row, 6);
    r.retries = (int32_t)col_i64(res, row, 7);
    r.retried = (uint32_t)col_i64(res, row, 8);
    r.timeout_us = col_i64(res, row, 9);
    r.created_us = col_i64(res, row, 10);
    r.started_us = col_i64(res, row, 11);
    r.finished_us = col_i64(res, row, 12);
    r.key = col_str(res, row, 13);
    r.name = col_str(res, row, 14);
    r.batch = col_str(res, row, 15);
    if (!PQgetisnull(res, row, 16)) {
        after = after_bytes(PQgetvalue(res, row, 16), &r.after.len);
        r.after.p = (const char *)after;
    }
    r.after_policy = (uint8_t)col_i64(res, row, 17);
    r.args = col_str(res, row, 18);
    r.result = col_str(res, row, 19);
    r.err_code = col_str(res, row, 20);
    r.err_message = col_str(res, row, 21);
    store_jrec_clamp(&r);
    j = aq_broker_restore_find(sp->broker, r.id);
    if (j == NULL)
        j = aq_broker_restore_add(sp->broker, r.id, r.kind, r.queue.p,
                                  r.queue.len, r.args.p, r.args.len);
    store_job_fill(sp->broker, j, &r);
    free(after);
    if (r.id > sp->last_id)
        sp->last_id = r.id;
    return 0;
}

/* The first block of ids, reserved at restore: ids before it may have
 * been given by any node. */
static void
read_ids_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: reserving ids: %s", err);
        return;
    }
    sp->reserved = (uint64_t)col_i64(res, 0, 1);
    sp->block_first = (uint64_t)col_i64(res, 0, 0);
}

static void
reserved_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    struct aq_broker *b = sp->broker;
    uint64_t first, last;

    sp->is_reserving = false;
    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "store: postgres: reserving ids: %s", err);
        return;
    }
    first = (uint64_t)col_i64(res, 0, 0);
    last = (uint64_t)col_i64(res, 0, 1);
    sp->reserved = last;
    if (b->id_limit == 0 || b->last_id >= b->id_limit) {
        /* used up already (late): ids go on from this block */
        if (b->last_id < first - 1)
            b->last_id = first - 1;
        b->id_limit = last;
    } else {
        b->id_next_first = first;
        b->id_next_last = last;
    }
}

/* The next block of ids, as a transaction of its own (past every id
 * given here, should the broker have run out of its block). */
static void
ids_reserve(struct store_pg *sp)
{
    char block[24], given[24];
    const char *values[] = {block, given};
    struct aq_error e;

    if (sp->is_reserving || !sp->is_restored || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    snprintf(block, sizeof block, "%d", ID_BLOCK);
    snprintf(given, sizeof given, "%llu", (unsigned long long)sp->given);
    if (aq_pgconn_query(sp->conn, "aq_reserve", sp->sql_reserve, 2, values,
                        reserved_cb, sp, &e) == 0 &&
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e) == 0)
        sp->is_reserving = true;
}

static void
read_sched_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: reading schedules: %s", err);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t job = (uint64_t)col_i64(res, i, 2);

        aq_broker_restore_schedule(sp->broker, PQgetvalue(res, i, 0),
                                   (size_t)PQgetlength(res, i, 0),
                                   col_i64(res, i, 1), job);
        if (job > sp->last_id)
            sp->last_id = job;
    }
    if (sp->block_first - 1 > sp->last_id)
        sp->last_id = sp->block_first - 1;
    sp->given = sp->last_id;
    sp->phase = PH_LOCKED;
    sp->is_restored = true;
}

static void
read_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    char block[24];
    const char *values[] = {block, "0"};
    struct aq_error e;
    int n;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: reading jobs: %s", err);
        return;
    }
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        if (restore_row(sp, res, i) < 0)
            return;
        sp->read_after = (uint64_t)col_i64(res, i, 0);
    }
    if (n == READ_CHUNK) {
        read_chunk(sp);
        return;
    }
    snprintf(block, sizeof block, "%d", ID_BLOCK);
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_reserve, 2, values, read_ids_cb,
                        sp, &e) == 0 &&
        aq_pgconn_query(sp->conn, "aq_read_sched", sp->sql_read_sched, 0, NULL,
                        read_sched_cb, sp, &e) == 0)
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
}

static void
read_chunk(struct store_pg *sp)
{
    char after[24];
    const char *values[] = {after, sp->node};
    struct aq_error e;

    snprintf(after, sizeof after, "%llu", (unsigned long long)sp->read_after);
    if (aq_pgconn_query(sp->conn, "aq_read", sp->sql_read, 2, values, read_cb,
                        sp, &e) == 0)
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
}

static void
locked_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: schema %s: %s", sp->schema, err);
        return;
    }
    sp->why[0] = '\0';
    aq_log(AQ_LOG_INFO, "store: postgres: %s: schema %s, node %s",
           aq_pgconn_server(sp->conn), sp->schema, sp->node);
    if (!sp->is_restored) {
        sp->phase = PH_READING;
        read_chunk(sp);
        return;
    }
    sp->phase = PH_LOCKED;
    sp->sent = sp->committed; /* everything not committed, again */
    event_active(sp->flush_ev, EV_TIMEOUT, 0);
    adopt(sp);
}

static void
peers_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err == NULL)
        sp->has_peers = col_i64(res, 0, 0) > 0;
}

/* Other nodes seen within 3 heartbeats, and this node's own rows it
 * was running leased on (so that no node takes them while restore
 * reads them): from the session's start on. */
static int
query_peers(struct store_pg *sp, struct aq_error *e)
{
    char ms[24];
    const char *values[] = {sp->node, ms};

    snprintf(ms, sizeof ms, "%ld", LEASE_INTERVALS * sp->renew_ms);
    return aq_pgconn_query(sp->conn, "aq_peers", sp->sql_peers, 2, values,
                           peers_cb, sp, e);
}

static void
lock_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    char ms[24];
    const char *values[] = {sp->node}, *lvalues[] = {sp->node, ms};
    struct aq_error e;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: schema %s: %s", sp->schema, err);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        set_fatal(sp,
                  "store: postgres: schema %s: node %s is running already "
                  "(another asyncqd holds its lock): store.node must be "
                  "unique per node",
                  sp->schema, sp->node);
        return;
    }
    snprintf(ms, sizeof ms, "%ld", LEASE_INTERVALS * sp->renew_ms);
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_listen, 0, NULL, NULL, NULL,
                        &e) == 0 &&
        aq_pgconn_query(sp->conn, NULL, sp->sql_node, 1, values, NULL, NULL,
                        &e) == 0 &&
        aq_pgconn_query(sp->conn, NULL, sp->sql_lease_own, 2, lvalues, NULL,
                        NULL, &e) == 0 &&
        query_peers(sp, &e) == 0)
        aq_pgconn_commit(sp->conn, locked_cb, sp, &e);
}

static void
take_lock(struct store_pg *sp)
{
    char *sql =
        xasprintf("SELECT pg_try_advisory_lock(%" PRId64 ")", sp->lock_key);
    struct aq_error e;

    sp->phase = PH_LOCKING;
    if (aq_pgconn_query(sp->conn, NULL, sql, 0, NULL, lock_cb, sp, &e) == 0)
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
    free(sql);
}

static void
migrated_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: migrating schema %s: %s",
                      sp->schema, err);
        return;
    }
    take_lock(sp);
}

static void
version_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    struct aq_error e;
    char **plan;
    size_t n;
    int version;

    if (err != NULL)
        return; /* the commit's callback says why */
    version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    if (aq_pg_schema_plan(sp->schema, version, &plan, &n, &e) < 0) {
        set_fatal(sp, "%s", e.message);
        return;
    }
    if (n > 0)
        aq_log(AQ_LOG_INFO, "store: postgres: schema %s: version %d to %d",
               sp->schema, version, aq_pg_schema_latest());
    for (size_t i = 0; i < n; i++)
        if (aq_pgconn_query(sp->conn, NULL, plan[i], 0, NULL, NULL, NULL, &e) <
            0)
            break;
    aq_pg_sql_free(plan, n);
    aq_pgconn_commit(sp->conn, migrated_cb, sp, &e);
}

static void
session_start(struct store_pg *sp)
{
    struct aq_error e;
    size_t n;
    char **pre = aq_pg_schema_prelude(sp->schema, &n);

    sp->phase = PH_MIGRATING;
    for (size_t i = 0; i < n; i++)
        if (aq_pgconn_query(sp->conn, NULL, pre[i], 0, NULL,
                            i == n - 1 ? version_cb : NULL, sp, &e) < 0)
            break;
    aq_pg_sql_free(pre, n);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;

    if (aq_pgconn_is_ready(sp->conn) && sp->phase != PH_LOCKED)
        session_start(sp);
}

static void
renewed_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    sp->is_renewing = false;
    if (err != NULL && !is_lost(err))
        aq_log(AQ_LOG_WARN,
               "store: postgres: renewing the leases of node %s: %s", sp->node,
               err);
}

static int64_t
queue_timeout_us(const struct broker_queue *bq)
{
    return aq_clock_s_to_us(bq->cfg.timeout);
}

/* The heartbeat: the node was seen now, the rows it runs leased on. */
static void
renew_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;
    struct sbuf *nb = &sp->cols[0], *tb = &sp->cols[1];
    char lease_ms[24];
    const char *values[4];
    struct aq_error e;

    if (!sp->is_restored || sp->is_renewing || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    snprintf(lease_ms, sizeof lease_ms, "%ld", LEASE_INTERVALS * sp->renew_ms);
    queue_arrays(sp, nb, tb, queue_timeout_us);
    values[0] = sp->node;
    values[1] = lease_ms;
    values[2] = nb->p;
    values[3] = tb->p;
    if (aq_pgconn_query(sp->conn, "aq_seen", sp->sql_seen, 1, values, NULL,
                        NULL, &e) == 0 &&
        aq_pgconn_query(sp->conn, "aq_renew", sp->sql_renew, 4, values, NULL,
                        NULL, &e) == 0 &&
        query_peers(sp, &e) == 0 &&
        aq_pgconn_commit(sp->conn, renewed_cb, sp, &e) == 0)
        sp->is_renewing = true;
    sweep(sp);
}

static void
ready_hook(struct aq_pgconn *c, void *arg)
{
    struct store_pg *sp = arg;

    if (sp->connects++ > 0)
        sp->reconnects++;
    session_start(sp);
}

static void
lost_hook(struct aq_pgconn *c, const char *why, void *arg)
{
    struct store_pg *sp = arg;

    sp->phase = PH_CONNECTING;
    sp->sent = sp->committed;
    snprintf(sp->why, sizeof sp->why, "%s", why);
    evtimer_del(sp->retry_ev);
}

/* ---- sharing jobs with other nodes ---- */

/* Whether bq has takers waiting here and no ready job for them. */
static bool
is_hungry(const struct store_pg *sp, const struct broker_queue *bq)
{
    return sp->broker->stage == STOP_NONE && !bq->is_paused &&
           aq_queue_getters(bq->q) > 0 && aq_queue_qsize(bq->q) == 0;
}

struct claimed_row {
    int row;
    int64_t priority, seq;
};

static int
cmp_claimed(const void *a, const void *b)
{
    const struct claimed_row *x = a, *y = b;

    if (x->priority != y->priority)
        return (x->priority > y->priority) - (x->priority < y->priority);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Rows this node now holds (sql_read's columns, then seq), into the
 * broker as pending jobs, in the order their queue takes them: by
 * priority, then as put (a LIFO queue takes the last one placed first).
 * A row of a job known here already is skipped, but a finished record
 * (retried elsewhere since) is replaced. Returns how many were placed. */
static size_t
hold_rows(struct store_pg *sp, const PGresult *res)
{
    int n = PQntuples(res);
    struct claimed_row *rows = xreallocarray(NULL, n > 0 ? n : 1, sizeof *rows);
    size_t placed = 0;

    for (int i = 0; i < n; i++) {
        rows[i].row = i;
        rows[i].priority = col_i64(res, i, 4);
        rows[i].seq = col_i64(res, i, 22);
    }
    qsort(rows, (size_t)n, sizeof *rows, cmp_claimed);
    for (int i = 0; i < n; i++) {
        uint64_t id = (uint64_t)col_i64(res, rows[i].row, 0);
        struct aq_job *j = aq_broker_restore_find(sp->broker, id);

        if (j != NULL && !aq_job_is_finished(j))
            continue; /* held here already */
        if (j != NULL)
            aq_broker_drop_record(sp->broker, id);
        if (restore_row(sp, res, rows[i].row) < 0) {
            aq_log(AQ_LOG_ERROR, "%s", sp->fatal.message);
            sp->fatal.code = 0;
            continue;
        }
        j = aq_broker_restore_find(sp->broker, id);
        aq_broker_claimed(sp->broker, j);
        placed++;
    }
    free(rows);
    return placed;
}

static void claim_cb(evutil_socket_t fd, short what, void *arg);

struct claim {
    struct store_pg *sp;
    struct broker_queue *bq;
    int n;
};

static void
claimed_cb(void *arg, const PGresult *res, const char *err)
{
    struct claim *cl = arg;
    struct store_pg *sp = cl->sp;
    struct broker_queue *bq = cl->bq;
    int got = err == NULL ? PQntuples(res) : 0;

    bq->is_claiming = false;
    if (err != NULL) {
        if (!is_lost(err))
            aq_log_queue(AQ_LOG_WARN, bq->cfg.name,
                         "store: postgres: claiming jobs of %s: %s",
                         bq->cfg.name, err);
    } else {
        sp->claims += hold_rows(sp, res);
        if (got < cl->n && !bq->claim_again)
            bq->pool_maybe = false; /* until told or polled */
    }
    bq->claim_again = false;
    free(cl);
    event_active(sp->claim_ev, EV_TIMEOUT, 0); /* still hungry? */
}

/* Claims one job per free taker of bq from the pool, and as many ahead
 * as they run in about 20 ms (broker_queue_ahead): the batch keeps the
 * takers busy while the next claim waits its turn on the connection. The claim
 * commits without waiting for its WAL flush (the next write's commit flushes
 * it): one lost in a crash of the server leaves the row in the pool, and this
 * node's writes of it are fenced. */
static void
claim_send(struct store_pg *sp, struct broker_queue *bq)
{
    size_t takers = aq_queue_getters(bq->q) * (1 + broker_queue_ahead(bq));
    char n[24];
    const char *values[] = {sp->node, bq->cfg.name, n};
    struct claim *cl = xmalloc(sizeof *cl);
    bool lifo = bq->cfg.order == AQ_ORDER_LIFO;
    struct aq_error e;

    cl->sp = sp;
    cl->bq = bq;
    cl->n = (int)(takers < 1 ? 1 : takers > CLAIM_MAX ? CLAIM_MAX : takers);
    snprintf(n, sizeof n, "%d", cl->n);
    if (aq_pgconn_query(sp->conn, "aq_claim_async",
                        "SET LOCAL synchronous_commit = off", 0, NULL, NULL,
                        NULL, &e) < 0 ||
        aq_pgconn_query(sp->conn, lifo ? "aq_claim_lifo" : "aq_claim",
                        lifo ? sp->sql_claim_lifo : sp->sql_claim, 3, values,
                        claimed_cb, cl, &e) < 0) {
        free(cl);
        return;
    }
    aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
    bq->is_claiming = true;
}

/* Every hungry queue whose pool may hold rows claims (one claim in
 * flight per queue). */
static void
claim_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;
    struct broker_queue *bq;

    if (!sp->is_restored || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    STAILQ_FOREACH (bq, &sp->broker->queues, link) {
        if (bq->pool_maybe && !bq->is_claiming && is_hungry(sp, bq))
            claim_send(sp, bq);
    }
}

static void
sp_hungry(struct aq_store *s, struct broker_queue *bq)
{
    struct store_pg *sp = sp_of(s);

    if (bq->pool_maybe && !bq->is_claiming)
        event_active(sp->claim_ev, EV_TIMEOUT, 0);
}

static void
adopted_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err == NULL)
        sp->claims += hold_rows(sp, res);
}

/* After a reconnect: pending rows held here that this node does not
 * know (a claim whose answer the lost connection took) are its jobs. */
static void
adopt(struct store_pg *sp)
{
    const char *values[] = {sp->node};
    struct aq_error e;

    if (aq_pgconn_query(sp->conn, NULL, sp->sql_adopt, 1, values, adopted_cb,
                        sp, &e) == 0)
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
}

static void
polled_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    sp->is_polling = false;
}

/* The poll: pool rows whose time came are made ready (told), and every
 * hungry queue claims, whatever it was told. */
static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;
    struct sbuf *nb = &sp->cols[4];
    const char *values[2];
    struct broker_queue *bq;
    struct aq_error e;

    if (!sp->is_restored || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    queue_arrays(sp, nb, NULL, NULL);
    values[0] = sp->channel;
    values[1] = nb->p;
    if (!sp->is_polling &&
        aq_pgconn_query(sp->conn, "aq_release_waiting", sp->sql_release_waiting,
                        2, values, NULL, NULL, &e) == 0 &&
        aq_pgconn_query(sp->conn, "aq_promote", sp->sql_promote, 1, values,
                        NULL, NULL, &e) == 0 &&
        aq_pgconn_commit(sp->conn, polled_cb, sp, &e) == 0)
        sp->is_polling = true;
    STAILQ_FOREACH (bq, &sp->broker->queues, link)
        bq->pool_maybe = true;
    event_active(sp->claim_ev, EV_TIMEOUT, 0);
}

/* A notification on <schema>_events (docs/cluster.md): "p queue" pool
 * rows of queue committed; "c id" cancel job id if held here; "x id"
 * the finished record id changed elsewhere: dropped here. Others are
 * for other parts. */
static void
notify_hook(struct aq_pgconn *c, const char *channel, const char *payload,
            void *arg)
{
    struct store_pg *sp = arg;
    struct broker_queue *bq;
    struct aq_job *j;
    struct aq_error e;
    const char *state;
    uint64_t id;
    char *end;

    if (!sp->is_restored || payload[0] == '\0' || payload[1] != ' ')
        return;
    switch (payload[0]) {
    case 'p':
        if ((bq = broker_queue_find(sp->broker, payload + 2)) == NULL)
            return;
        bq->pool_maybe = true;
        if (bq->is_claiming)
            bq->claim_again = true;
        else if (is_hungry(sp, bq))
            event_active(sp->claim_ev, EV_TIMEOUT, 0);
        return;
    case 'c':
    case 'x':
        id = strtoull(payload + 2, &end, 10);
        if (end == payload + 2 || *end != '\0' || id == 0)
            return;
        if (payload[0] == 'x') {
            aq_broker_drop_record(sp->broker, id);
            return;
        }
        j = aq_broker_restore_find(sp->broker, id);
        if (j == NULL || aq_job_is_finished(j) || j->jseg != 0)
            return;
        if (aq_broker_cancel(sp->broker, id, &state, &e) < 0)
            aq_log_job(AQ_LOG_WARN, id, job_queue(j)->cfg.name,
                       "store: postgres: cancel of job %llu: %s",
                       (unsigned long long)id, e.message);
        return;
    default:
        return;
    }
}

static void
swept_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            aq_log(AQ_LOG_WARN, "store: postgres: sweeping lost nodes: %s",
                   err);
        return;
    }
    sp->released += (uint64_t)col_i64(res, 0, 0);
}

static void
records_swept_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    if (err != NULL && !is_lost(err))
        aq_log(AQ_LOG_WARN, "store: postgres: dropping old records: %s", err);
    else if (err == NULL && col_i64(res, 0, 0) > 0)
        aq_log(AQ_LOG_DEBUG,
               "store: postgres: dropped %" PRId64 " old records no node "
               "holds",
               col_i64(res, 0, 0));
}

static void
sweep_done_cb(void *arg, const PGresult *res, const char *err)
{
    ((struct store_pg *)arg)->is_sweeping = false;
}

static int64_t
queue_retries(const struct broker_queue *bq)
{
    return bq->cfg.retries;
}

/* The sweep of the heartbeat, by any node: running rows whose lease
 * passed count the attempt (node_lost) and go back to the pool, or fail
 * when out of attempts; held rows of nodes not seen for 3 heartbeats go
 * back to the pool. $3/$4: the retries of the queues configured here. */
static void
sweep(struct store_pg *sp)
{
    struct sbuf *nb = &sp->cols[2], *rb = &sp->cols[3];
    char ms[24], dflt[24], ttl[24], fttl[24];
    const char *values[6];
    struct aq_queue_config qc;
    struct aq_error e;

    if (sp->is_sweeping)
        return;
    queue_arrays(sp, nb, rb, queue_retries);
    aq_queue_config_defaults(&qc, "x");
    snprintf(dflt, sizeof dflt, "%d", qc.retries);
    aq_queue_config_clear(&qc);
    snprintf(ms, sizeof ms, "%ld", LEASE_INTERVALS * sp->renew_ms);
    values[0] = sp->node;
    values[1] = sp->channel;
    values[2] = nb->p;
    values[3] = rb->p;
    values[4] = dflt;
    values[5] = ms;
    if (aq_pgconn_query(sp->conn, "aq_sweep_lost", sp->sql_sweep_lost, 6,
                        values, swept_cb, sp, &e) < 0 ||
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e) < 0)
        return;
    values[2] = ms;
    if (aq_pgconn_query(sp->conn, "aq_sweep_idle", sp->sql_sweep_idle, 3,
                        values, swept_cb, sp, &e) < 0 ||
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e) < 0)
        return;
    snprintf(ttl, sizeof ttl, "%" PRId64,
             aq_clock_s_to_us(sp->broker->records.done.ttl_s));
    snprintf(fttl, sizeof fttl, "%" PRId64,
             aq_clock_s_to_us(sp->broker->records.failed.ttl_s));
    values[0] = ttl;
    values[1] = fttl;
    if (aq_pgconn_query(sp->conn, "aq_sweep_records", sp->sql_sweep_records, 3,
                        values, records_swept_cb, sp, &e) == 0 &&
        aq_pgconn_commit(sp->conn, sweep_done_cb, sp, &e) == 0)
        sp->is_sweeping = true;
}

/* ---- the ops ---- */

/* SIGTERM or SIGINT before the store is restored: the daemon stops (a
 * stop, not a failure: AQ_ERR_SHUTTING_DOWN). */
static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct store_pg *sp = arg;

    aq_error_set(&sp->fatal, AQ_ERR_SHUTTING_DOWN,
                 "store: postgres: stopped by %s before the store was "
                 "restored (%s)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", sp->why);
}

static int
sp_restore(struct aq_store *s, struct aq_broker *b, uint64_t *last_id,
           bool *is_damaged, struct aq_error *err)
{
    struct store_pg *sp = sp_of(s);
    struct event *term = evsignal_new(sp->base, SIGTERM, stop_cb, sp),
                 *intr = evsignal_new(sp->base, SIGINT, stop_cb, sp);
    struct broker_queue *bq;

    sp->broker = b;
    *is_damaged = false;
    *last_id = 0;
    /* No client is served yet: the loop runs only the session's events,
     * and a stop signal, until every row is read. */
    event_add(term, NULL);
    event_add(intr, NULL);
    while (!sp->is_restored && sp->fatal.code == 0)
        event_base_loop(sp->base, EVLOOP_ONCE);
    event_free(term);
    event_free(intr);
    if (sp->fatal.code != 0) {
        *err = sp->fatal;
        return -1;
    }
    *last_id = sp->last_id;
    b->id_limit = sp->reserved; /* then the next block (ids_reserve) */
    STAILQ_FOREACH (bq, &b->queues, link)
        bq->pool_maybe = true;
    return 0;
}

static int
sp_sync(struct aq_store *s, struct aq_barrier *b, aq_barrier_cb *cb, void *arg,
        struct aq_error *err)
{
    struct store_pg *sp = sp_of(s);

    if (sp->committed >= sp->told)
        return 0;
    b->pos = sp->told;
    b->cb = cb;
    b->arg = arg;
    b->is_ours = false;
    TAILQ_INSERT_TAIL(&sp->barriers, b, link);
    return 1;
}

static void
sp_sync_cancel(struct aq_store *s, struct aq_barrier *b)
{
    TAILQ_REMOVE(&sp_of(s)->barriers, b, link);
}

static const struct aq_error *
sp_error(const struct aq_store *s)
{
    return NULL; /* puts wait for the connection */
}

static const struct aq_error *
sp_unavailable(const struct aq_store *s)
{
    struct store_pg *sp = sp_of((struct aq_store *)s);

    if (sp->phase == PH_LOCKED && aq_pgconn_is_ready(sp->conn))
        return NULL;
    aq_error_set(&sp->unavail, AQ_ERR_INTERNAL, "store unavailable: %s",
                 sp->why[0] != '\0' ? sp->why : "connecting");
    return &sp->unavail;
}

static void
sp_counters(const struct aq_store *s, struct aq_store_counters *out)
{
    const struct store_pg *sp = (const struct store_pg *)s;

    out->connected = sp->phase == PH_LOCKED && aq_pgconn_is_ready(sp->conn);
    out->commits = sp->commits;
    out->reconnects = sp->reconnects;
    out->backlog = sp->nops;
    out->claims = sp->claims;
    out->released = sp->released;
}

static void
close_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

static void
released_cb(void *arg, const PGresult *res, const char *err)
{
    *(bool *)arg = true;
}

static void
given_back_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err == NULL)
        sp->released += (uint64_t)col_i64(res, 0, 0);
}

/* At a clean close, with everything committed, while other nodes run:
 * the rows held here and not running go back to the pool for them
 * (told), and the node is no longer seen. */
static void
give_back(struct store_pg *sp, const bool *is_late)
{
    const char *values[] = {sp->node, sp->channel};
    bool is_done = false;
    struct aq_error e;

    if (!sp->has_peers || !sp->is_restored || sp->committed < sp->told ||
        sp->phase != PH_LOCKED || !aq_pgconn_is_ready(sp->conn))
        return; /* a node alone keeps them: its restart restores them */
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_give_back, 2, values,
                        given_back_cb, sp, &e) < 0 ||
        aq_pgconn_query(sp->conn, NULL, sp->sql_gone, 1, values, NULL, NULL,
                        &e) < 0 ||
        aq_pgconn_commit(sp->conn, released_cb, &is_done, &e) < 0)
        return;
    while (!is_done && !*is_late)
        event_base_loop(sp->base, EVLOOP_ONCE);
}

/* At a clean close, with everything committed, the ids reserved and not
 * given go back (unless the mark moved meanwhile): a restart continues
 * right after the last id given; after a crash it skips the rest of the
 * block. */
static void
release_ids(struct store_pg *sp, const bool *is_late)
{
    char given[24], reserved[24];
    const char *values[] = {given, reserved};
    bool is_done = false;
    struct aq_error e;

    if (sp->given >= sp->reserved || !sp->is_restored ||
        sp->committed < sp->told || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    snprintf(given, sizeof given, "%llu", (unsigned long long)sp->given);
    snprintf(reserved, sizeof reserved, "%llu",
             (unsigned long long)sp->reserved);
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_release, 2, values, NULL, NULL,
                        &e) < 0 ||
        aq_pgconn_commit(sp->conn, released_cb, &is_done, &e) < 0)
        return;
    while (!is_done && !*is_late)
        event_base_loop(sp->base, EVLOOP_ONCE);
}

static void
sp_close(struct aq_store *s)
{
    struct store_pg *sp = sp_of(s);
    struct pg_op *op;
    struct pg_txn *txn;
    bool is_late = false;
    struct timeval wait = {CLOSE_WAIT_S, 0};
    struct event *timer = evtimer_new(sp->base, close_timeout_cb, &is_late);

    event_del(sp->renew_ev); /* no heartbeat from here on */
    event_del(sp->poll_ev);
    /* What was told is committed while the server answers. */
    evtimer_add(timer, &wait);
    event_active(sp->flush_ev, EV_TIMEOUT, 0);
    while (sp->is_restored && sp->committed < sp->told && !is_late &&
           sp->phase == PH_LOCKED && aq_pgconn_is_ready(sp->conn))
        event_base_loop(sp->base, EVLOOP_ONCE);
    give_back(sp, &is_late);
    release_ids(sp, &is_late);
    event_free(timer);
    if (sp->committed < sp->told)
        aq_log(AQ_LOG_WARN,
               "store: postgres: %llu events not committed at exit",
               (unsigned long long)(sp->told - sp->committed));
    aq_pgconn_free(sp->conn);
    while ((op = TAILQ_FIRST(&sp->ops)) != NULL) {
        TAILQ_REMOVE(&sp->ops, op, link);
        op_free(op);
    }
    free(sp->unsent.slot);
    json_decref(sp->unsent_named);
    free(sp->vals.p);
    for (int c = 0; c < WHOLE_NCOLS; c++)
        free(sp->cols[c].p);
    while ((txn = TAILQ_FIRST(&sp->txns)) != NULL) {
        TAILQ_REMOVE(&sp->txns, txn, link);
        free(txn->notes);
        free(txn);
    }
    event_free(sp->flush_ev);
    event_free(sp->retry_ev);
    event_free(sp->renew_ev);
    event_free(sp->poll_ev);
    event_free(sp->claim_ev);
    free(sp->notes.p);
    free(sp->unsaid.p);
    free(sp->keys[0].p);
    free(sp->keys[1].p);
    free(sp->channel);
    free(sp->sql_notify);
    free(sp->sql_claim);
    free(sp->sql_claim_lifo);
    free(sp->sql_promote);
    free(sp->sql_peers);
    free(sp->sql_sweep_lost);
    free(sp->sql_sweep_idle);
    free(sp->sql_sweep_records);
    free(sp->sql_give_back);
    free(sp->sql_gone);
    free(sp->sql_listen);
    free(sp->sql_lease_own);
    free(sp->sql_adopt);
    free(sp->sql_key_lock);
    free(sp->sql_key_taken);
    free(sp->sql_release_waiting);
    free(sp->sql_whole);
    free(sp->sql_delete);
    free(sp->sql_sched);
    free(sp->sql_unsched);
    free(sp->sql_read);
    free(sp->sql_read_sched);
    free(sp->sql_node);
    free(sp->sql_reserve);
    free(sp->sql_release);
    free(sp->sql_seen);
    free(sp->sql_renew);
    free(sp->schema);
    free(sp->node);
    free(sp);
}

static const struct aq_store_ops pg_ops = {
    .name = "postgres",
    .restore = sp_restore,
    .put = sp_whole,
    .start = sp_rewrite,
    .requeue = sp_rewrite,
    .finish = sp_whole,
    .forget = sp_delete,
    .retry = sp_whole,
    .remove = sp_delete,
    .schedule = sp_schedule,
    .sync = sp_sync,
    .sync_cancel = sp_sync_cancel,
    .error = sp_error,
    .unavailable = sp_unavailable,
    .counters = sp_counters,
    .close = sp_close,
    .give = sp_give,
    .shares = sp_shares,
    .hungry = sp_hungry,
};

/* ---- SQL ---- */

/* The SQL is laid out by hand: clang-format would break it around the
 * macros. */
/* clang-format off */

/* Microseconds since the epoch (bigint) to timestamptz and back, exact. */
#define US_TIME(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
#define TIME_US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"

/* The whole rows of a window, in told order (the key index is checked row
 * by row), each new or replacing the row of its id. */
static const char sql_whole[] =
    "INSERT INTO @S.jobs (id, queue, kind, state, priority, due, attempts, "
        "retries, retried, timeout_us, created, started, finished, node, "
        "lease_deadline, key, name, batch, after, after_policy, args, "
        "result, error_code, error_message) "
    "SELECT id, queue, kind, state, priority, " US_TIME("due") ", "
        "attempts, retries, retried, timeout_us, " US_TIME("created") ", "
        US_TIME("started") ", " US_TIME("finished") ", node, "
        US_TIME("lease") ", "
        /* a key another live job holds (another node's) is not written:
         * never a unique violation rolling back the window */
        "CASE WHEN t.key IS NULL OR t.state >= 4 THEN t.key WHEN EXISTS "
        "(SELECT 1 FROM @S.jobs AS x WHERE x.key = t.key AND x.state < 4 "
        "AND x.id <> t.id) THEN NULL ELSE t.key END, "
        "name, batch, after::bigint[], "
        "after_policy, args, result, error_code, error_message "
    "FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::smallint[], "
        "$5::integer[], $6::bigint[], $7::integer[], $8::integer[], "
        "$9::integer[], $10::bigint[], $11::bigint[], $12::bigint[], "
        "$13::bigint[], $14::text[], $15::bigint[], $16::text[], "
        "$17::text[], $18::text[], $19::text[], $20::smallint[], "
        "$21::text[], $22::text[], $23::text[], $24::text[]) "
    "AS t(id, queue, kind, state, priority, due, attempts, retries, "
        "retried, timeout_us, created, started, finished, node, lease, key, "
        "name, batch, after, after_policy, args, result, error_code, "
        "error_message) "
    "ON CONFLICT (id) DO UPDATE SET "
        "queue = EXCLUDED.queue, kind = EXCLUDED.kind, "
        "state = EXCLUDED.state, priority = EXCLUDED.priority, "
        "due = EXCLUDED.due, attempts = EXCLUDED.attempts, "
        "retries = EXCLUDED.retries, retried = EXCLUDED.retried, "
        "timeout_us = EXCLUDED.timeout_us, created = EXCLUDED.created, "
        "started = EXCLUDED.started, finished = EXCLUDED.finished, "
        "node = EXCLUDED.node, lease_deadline = EXCLUDED.lease_deadline, "
        "key = EXCLUDED.key, name = EXCLUDED.name, batch = EXCLUDED.batch, "
        "after = EXCLUDED.after, after_policy = EXCLUDED.after_policy, "
        "args = EXCLUDED.args, result = EXCLUDED.result, "
        "error_code = EXCLUDED.error_code, "
        "error_message = EXCLUDED.error_message "
    /* fenced: a node writes only rows it holds (or the pool's it gave) */
    "WHERE jobs.node IS NOT DISTINCT FROM EXCLUDED.node";

/* Fenced as well: rows held here, and the pool's (ids this node gave). */
static const char sql_delete[] =
    "DELETE FROM @S.jobs WHERE id = ANY($1::bigint[]) "
    "AND (node = $2 OR node IS NULL)";

/* The live keys of a window ($1), locked for the transaction in one
 * order (their hashes in schema $2): nodes writing one key take turns,
 * and the next statement's snapshot sees the other's row. */
static const char sql_key_lock[] =
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT "
    "hashtextextended($2 || k, 0) AS h FROM unnest($1::text[]) AS t(k)) AS d "
    "ORDER BY h";

/* Jobs of the window ($1 ids, $2 keys) whose key another live job holds
 * (their rows were written without it): that job and its state. */
static const char sql_key_taken[] =
    "SELECT t.id, x.id, x.state FROM unnest($1::bigint[], $2::text[]) AS "
    "t(id, key) JOIN @S.jobs AS x ON x.key = t.key AND x.state < 4 AND "
    "x.id <> t.id";

static const char sql_sched[] =
    "INSERT INTO @S.schedules (name, last_fire, last_job) "
    "SELECT name, " US_TIME("fire") ", job "
    "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(name, fire, job) "
    "ON CONFLICT (name) DO UPDATE SET "
        "last_fire = EXCLUDED.last_fire, last_job = EXCLUDED.last_job";

static const char sql_unsched[] =
    "DELETE FROM @S.schedules WHERE name = ANY($1::text[])";

/* The columns in the order restore_row reads them. */
#define JOB_COLS \
    "id, queue, kind, state, priority, " TIME_US("due") ", " \
    "attempts, retries, retried, timeout_us, " TIME_US("created") ", " \
    TIME_US("started") ", " TIME_US("finished") ", key, name, batch, " \
    "after, after_policy, args, result, error_code, error_message"

/* The rows this node holds (the pool's are claimed as they are needed). */
static const char sql_read[] =
    "SELECT " JOB_COLS " "
    "FROM @S.jobs WHERE node = $2 AND id > $1 ORDER BY id LIMIT 5000";

/* A claim: up to $3 ready rows of queue $2's pool, in its order, held by
 * node $1 from now on; their columns, then seq. */
#define SQL_CLAIM(order) \
    "UPDATE @S.jobs SET node = $1 WHERE id IN (SELECT id FROM @S.jobs " \
    "WHERE queue = $2 AND state = 2 AND node IS NULL ORDER BY priority, " \
    order " LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING " JOB_COLS ", seq"
static const char sql_claim[] = SQL_CLAIM("seq");
static const char sql_claim_lifo[] = SQL_CLAIM("seq DESC");

/* After a reconnect: the pending rows held here. */
static const char sql_adopt[] =
    "SELECT " JOB_COLS ", seq FROM @S.jobs WHERE node = $1 AND state = 2";

/* The notifications of a transaction ($2: payloads) on channel $1. */
static const char sql_notify[] =
    "SELECT pg_notify($1, x) FROM unnest($2::text[]) AS t(x)";

/* The poll: delayed rows of the pool whose time came are ready. */
static const char sql_promote[] =
    "WITH u AS (UPDATE @S.jobs SET state = 2 WHERE id IN (SELECT id FROM "
        "@S.jobs WHERE state = 0 AND node IS NULL AND due <= now() "
        "LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING queue) "
    "SELECT pg_notify($1, 'p ' || queue) FROM (SELECT DISTINCT queue FROM u) "
        "AS d";

/* The poll: waiting rows of the pool (of queues $2) whose dependencies
 * all finished (or are gone) are released: cancelled (dependency_failed)
 * under policy done when one failed or was cancelled, else delayed while
 * their time is ahead, else ready; told. */
static const char sql_release_waiting[] =
    "WITH s AS (SELECT j.id, f.id AS fid, f.state AS fst FROM @S.jobs AS j "
        "LEFT JOIN LATERAL (SELECT d.id, d.state FROM @S.jobs AS d WHERE "
        "d.id = ANY(j.after) AND d.state IN (5, 6) ORDER BY d.id LIMIT 1) "
        "AS f ON true WHERE j.queue = ANY($2::text[]) AND j.state = 1 AND "
        "j.node IS NULL AND NOT EXISTS (SELECT 1 FROM @S.jobs AS d WHERE "
        "d.id = ANY(j.after) AND d.state < 4) LIMIT 1000 FOR UPDATE OF j "
        "SKIP LOCKED), "
    "u AS (UPDATE @S.jobs AS j SET "
        "state = CASE WHEN s.fid IS NOT NULL AND coalesce(j.after_policy, 0) "
        "= 0 THEN 6 WHEN j.due > now() THEN 0 ELSE 2 END, "
        "finished = CASE WHEN s.fid IS NOT NULL AND coalesce(j.after_policy, "
        "0) = 0 THEN now() ELSE j.finished END, "
        "error_code = CASE WHEN s.fid IS NOT NULL AND coalesce(j.after_policy, "
        "0) = 0 THEN 'dependency_failed' ELSE j.error_code END, "
        "error_message = CASE WHEN s.fid IS NOT NULL AND "
        "coalesce(j.after_policy, 0) = 0 THEN 'job ' || s.fid || CASE s.fst "
        "WHEN 5 THEN ' failed' ELSE ' cancelled' END ELSE j.error_message END "
        "FROM s WHERE j.id = s.id RETURNING j.queue, j.state) "
    "SELECT pg_notify($1, x) FROM (SELECT DISTINCT CASE WHEN state = 2 THEN "
        "'p ' || queue ELSE 'f' END AS x FROM u WHERE state <> 0) AS d";

/* The retries of row j: its own, or its queue's as configured here ($3
 * names, $4 retries), or the default ($5). */
#define ROW_RETRIES \
    "(CASE WHEN j.retries >= 0 THEN j.retries ELSE coalesce((SELECT q.r " \
    "FROM unnest($3::text[], $4::integer[]) AS q(name, r) WHERE q.name = " \
    "j.queue), $5::integer) END)"

/* Running rows of other nodes whose lease passed, or whose node was not
 * seen for 3 heartbeats ($6 ms): the attempt counts (node_lost), then
 * back to the pool, or failed when none is left; told ("p queue", "f").
 * Returns how many, and the notifications. */
static const char sql_sweep_lost[] =
    "WITH s AS (SELECT r.id FROM @S.jobs AS r WHERE r.state = 3 AND "
        "r.node IS DISTINCT FROM $1 AND (r.lease_deadline < now() OR NOT "
        "EXISTS (SELECT 1 FROM @S.nodes AS o WHERE o.node = r.node AND "
        "o.seen >= now() - $6::bigint * interval '1 millisecond')) "
        "LIMIT 1000 FOR UPDATE OF r SKIP LOCKED), "
    "u AS (UPDATE @S.jobs AS j SET attempts = j.attempts + 1, "
        "state = CASE WHEN j.attempts + 1 <= " ROW_RETRIES " + 1 THEN 2 "
        "ELSE 5 END, "
        "finished = CASE WHEN j.attempts + 1 <= " ROW_RETRIES " + 1 THEN "
        "NULL ELSE now() END, "
        "node = NULL, lease_deadline = NULL, error_code = 'node_lost', "
        "error_message = 'node ' || coalesce(j.node, '?') || ' was lost "
        "during attempt ' || (j.attempts + 1) "
        "FROM s WHERE j.id = s.id RETURNING j.queue, j.state), "
    "n AS (SELECT pg_notify($2, x) FROM (SELECT DISTINCT CASE WHEN state = 2 "
        "THEN 'p ' || queue ELSE 'f' END AS x FROM u) AS d) "
    "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)";

/* Rows held (not running) by nodes not seen for 3 heartbeats ($3 ms):
 * back to the pool, a delayed one ready if its time came; told. */
static const char sql_sweep_idle[] =
    "WITH s AS (SELECT j.id FROM @S.jobs AS j JOIN @S.nodes AS o ON "
        "o.node = j.node WHERE j.state < 3 AND j.node <> $1 AND "
        "coalesce(o.seen, '-infinity') < now() - $3::bigint * "
        "interval '1 millisecond' LIMIT 1000 FOR UPDATE OF j SKIP LOCKED), "
    "u AS (UPDATE @S.jobs AS j SET node = NULL, state = CASE WHEN "
        "j.state = 0 AND j.due <= now() THEN 2 ELSE j.state END FROM s "
        "WHERE j.id = s.id RETURNING j.queue, j.state), "
    "n AS (SELECT pg_notify($2, 'p ' || queue) FROM (SELECT DISTINCT queue "
        "FROM u WHERE state = 2) AS d) "
    "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)";

/* Records no live node holds (ended in the database: a cancel or retry
 * by another node's methods, a sweep, a dependency failed; or held by a
 * node gone for good) past results.ttl ($1 us, done) or
 * results.failed_ttl ($2 us): dropped here, as a node drops its own.
 * Returns how many. results.max counts only what each node holds. */
static const char sql_sweep_records[] =
    "WITH d AS (DELETE FROM @S.jobs WHERE id IN (SELECT j.id FROM @S.jobs "
        "AS j WHERE j.state >= 4 AND j.finished < now() - CASE WHEN "
        "j.state = 4 THEN $1::bigint ELSE $2::bigint END * "
        "interval '1 microsecond' AND (j.node IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM @S.nodes AS o WHERE o.node = j.node AND o.seen >= "
        "now() - $3::bigint * interval '1 millisecond')) LIMIT 1000) "
        "RETURNING id) "
    "SELECT count(*) FROM d";

/* A clean stop: the rows held here and not running, to the pool. */
static const char sql_give_back[] =
    "WITH u AS (UPDATE @S.jobs SET node = NULL WHERE node = $1 AND "
        "state < 3 RETURNING queue, state), "
    "n AS (SELECT pg_notify($2, 'p ' || queue) FROM (SELECT DISTINCT queue "
        "FROM u WHERE state = 2) AS d) "
    "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)";

static const char sql_read_sched[] =
    "SELECT name, " TIME_US("last_fire") ", last_job FROM @S.schedules";

/* clang-format on */

static const char sql_node[] =
    "INSERT INTO @S.nodes (node, started, seen) VALUES ($1, now(), now()) "
    "ON CONFLICT (node) DO UPDATE SET started = now(), seen = now()";

/* A block of $1 ids past the mark (and past $2, the last id given
 * here): its first and last. */
static const char sql_reserve[] =
    "UPDATE @S.ids SET last_id = greatest(last_id, $2::bigint) + $1::bigint "
    "RETURNING last_id - $1::bigint + 1, last_id";

/* Other nodes seen within 3 heartbeats ($2 ms). */
static const char sql_peers[] =
    "SELECT count(*) FROM @S.nodes WHERE node <> $1 AND seen > now() - "
    "$2::bigint * interval '1 millisecond'";

/* At a lock: the rows this node was running leased on ($2 ms) while it
 * restores them. */
static const char sql_lease_own[] =
    "UPDATE @S.jobs SET lease_deadline = now() + $2::bigint * "
    "interval '1 millisecond' WHERE node = $1 AND state = 3";

/* A clean stop: the node is not seen any more. */
static const char sql_gone[] =
    "UPDATE @S.nodes SET seen = NULL WHERE node = $1";

static const char sql_seen[] =
    "UPDATE @S.nodes SET seen = now() WHERE node = $1";

/* A lease: 3 intervals ($2 ms), or the job's timeout when longer: its
 * own, or its queue's ($3 names, $4 their timeouts, as configured now);
 * 0 is none. */
static const char sql_renew[] =
    "UPDATE @S.jobs AS j SET lease_deadline = now() + greatest(nullif(CASE "
    "WHEN j.timeout_us >= 0 THEN j.timeout_us ELSE (SELECT q.t FROM "
    "unnest($3::text[], $4::bigint[]) AS q(name, t) WHERE q.name = j.queue) "
    "END, 0) * interval '1 microsecond', $2::bigint * interval '1 "
    "millisecond') WHERE j.node = $1 AND j.state = 3";

/* Gives back what was reserved and not given, if no one raised the mark
 * meanwhile. */
static const char sql_release[] =
    "UPDATE @S.ids SET last_id = $1 WHERE last_id = $2";

/* ---- public ---- */

struct aq_store *
aq_store_pg_open(struct event_base *base, const char *conninfo,
                 const char *schema, const char *node, struct aq_error *err)
{
    struct store_pg *sp = xcalloc(1, sizeof *sp);
    static const struct aq_pgconn_hooks hooks = {
        .ready = ready_hook,
        .lost = lost_hook,
        .notify = notify_hook,
    };

    sp->store.ops = &pg_ops;
    sp->base = base;
    sp->schema = xstrdup(schema);
    sp->node = aq_pg_node_name(node);
    sp->lock_key = aq_pg_node_lock_key(schema, sp->node);
    sp->channel = xasprintf("%s_events", schema);
    TAILQ_INIT(&sp->ops);
    sp->unsent.cap = 64;
    sp->unsent.slot = xcalloc(sp->unsent.cap, sizeof *sp->unsent.slot);
    sp->unsent_named = json_object();
    TAILQ_INIT(&sp->txns);
    TAILQ_INIT(&sp->barriers);
    sp->flush_ev = event_new(base, -1, 0, flush_cb, sp);
    sp->retry_ev = evtimer_new(base, retry_cb, sp);
    sp->sql_whole = aq_pg_sql(sql_whole, schema);
    sp->sql_delete = aq_pg_sql(sql_delete, schema);
    sp->sql_sched = aq_pg_sql(sql_sched, schema);
    sp->sql_unsched = aq_pg_sql(sql_unsched, schema);
    sp->sql_read = aq_pg_sql(sql_read, schema);
    sp->sql_read_sched = aq_pg_sql(sql_read_sched, schema);
    sp->sql_node = aq_pg_sql(sql_node, schema);
    sp->sql_reserve = aq_pg_sql(sql_reserve, schema);
    sp->sql_notify = aq_pg_sql(sql_notify, schema);
    sp->sql_claim = aq_pg_sql(sql_claim, schema);
    sp->sql_claim_lifo = aq_pg_sql(sql_claim_lifo, schema);
    sp->sql_adopt = aq_pg_sql(sql_adopt, schema);
    sp->sql_key_lock = aq_pg_sql(sql_key_lock, schema);
    sp->sql_key_taken = aq_pg_sql(sql_key_taken, schema);
    sp->sql_release_waiting = aq_pg_sql(sql_release_waiting, schema);
    sp->sql_promote = aq_pg_sql(sql_promote, schema);
    sp->sql_peers = aq_pg_sql(sql_peers, schema);
    sp->sql_sweep_lost = aq_pg_sql(sql_sweep_lost, schema);
    sp->sql_sweep_idle = aq_pg_sql(sql_sweep_idle, schema);
    sp->sql_sweep_records = aq_pg_sql(sql_sweep_records, schema);
    sp->sql_give_back = aq_pg_sql(sql_give_back, schema);
    sp->sql_gone = aq_pg_sql(sql_gone, schema);
    sp->sql_lease_own = aq_pg_sql(sql_lease_own, schema);
    sp->sql_listen = xasprintf("LISTEN \"%s\"", sp->channel);
    sp->sql_release = aq_pg_sql(sql_release, schema);
    sp->sql_seen = aq_pg_sql(sql_seen, schema);
    sp->sql_renew = aq_pg_sql(sql_renew, schema);
    sp->renew_ms = aq_pg_env_ms("ASYNCQ_PG_LEASE_RENEW_MS", LEASE_RENEW_MS);
    sp->renew_ev = event_new(base, -1, EV_PERSIST, renew_cb, sp);
    sp->poll_ms = aq_pg_env_ms("ASYNCQ_PG_POLL_MS", POLL_MS);
    sp->poll_ev = event_new(base, -1, EV_PERSIST, poll_cb, sp);
    sp->claim_ev = event_new(base, -1, 0, claim_cb, sp);
    {
        struct timeval every = {sp->renew_ms / 1000,
                                (sp->renew_ms % 1000) * 1000},
                       poll = {sp->poll_ms / 1000, (sp->poll_ms % 1000) * 1000};

        event_add(sp->renew_ev, &every);
        event_add(sp->poll_ev, &poll);
    }
    snprintf(sp->why, sizeof sp->why, "connecting");
    if ((sp->conn = aq_pgconn_new(base, conninfo, &hooks, sp, err)) == NULL) {
        sp->is_restored = true;
        sp_close(&sp->store);
        return NULL;
    }
    return &sp->store;
}
