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
 * the node's advisory lock taken: one node per schema for now.
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
 * Job ids are reserved in blocks in S.ids: the put of an id beyond the
 * reserved mark raises it by ID_BLOCK in the same transaction, so ids are
 * never given twice even once their rows are deleted, at the cost of one
 * statement per block; a clean close gives back what was not used.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

enum op_kind { OP_WHOLE, OP_DELETE, OP_SCHED, OP_UNSCHED, OP_RESERVE };
enum { WHOLE_NCOLS = 24 };

struct pg_op {
    TAILQ_ENTRY(pg_op) link;
    uint64_t pos; /* events told up to this one */
    uint64_t gen; /* the send window it was told in (sp->gen then) */
    uint64_t id;  /* the job's (OP_WHOLE, OP_DELETE) */
    uint8_t kind; /* enum op_kind */
    uint8_t nv;
    char *key; /* owned: "s:" name, "ids"; NULL: the job's row (id) */
    char *v[]; /* nv values, NULL = SQL NULL, in the op's allocation */
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
        *sql_read_sched, *sql_node, *sql_holder, *sql_reserve, *sql_read_ids,
        *sql_release, *sql_seen, *sql_renew;
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
    struct event *flush_ev, *retry_ev, *renew_ev;
    long renew_ms;
    bool is_renewing; /* a renewal in flight */
    uint64_t last_id;
    uint64_t reserved;   /* the ids mark asked for (S.ids.last_id) */
    uint64_t given;      /* the highest id written, or restored */
    uint64_t read_after; /* restore: the last id read */
    uint64_t commits, reconnects, connects;
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

static int64_t
lease_us(const struct aq_job *j, int64_t started_us)
{
    int64_t t = job_timeout_us(j);

    return t > 0 && started_us != 0 ? aq_clock_add_us(started_us, t) : 0;
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

/* Ids up to id are given: a block is reserved first when id is beyond the
 * mark (told before the row, so committed with it or earlier). */
static void
id_given(struct store_pg *sp, uint64_t id)
{
    struct vals vs;

    if (id > sp->given)
        sp->given = id;
    if (id <= sp->reserved)
        return;
    sp->reserved = id + ID_BLOCK - 1;
    vs = vals_start(sp);
    val_i64(&vs, (int64_t)sp->reserved);
    op_tell(sp, op_new(OP_RESERVE, 0, xstrdup("ids"), &vs));
}

static void
sp_whole(struct aq_store *s, struct aq_job *j, const char *queue)
{
    struct store_pg *sp = sp_of(s);
    struct aq_jrec r;
    unsigned char *after;
    struct vals vs;

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
    if (r.started_us != 0)
        val_str(&vs, sp->node, strlen(sp->node));
    else
        val_null(&vs);
    val_time(&vs, j->state == AQ_JOB_RUNNING ? lease_us(j, r.started_us) : 0);
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
    op_tell(sp, op_new(OP_WHOLE, j->id, NULL, &vs));
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

static const char *
op_sql(struct store_pg *sp, enum op_kind kind, const char **name)
{
    static const char *const names[] = {"aq_whole", "aq_delete", "aq_sched",
                                        "aq_unsched", "aq_reserve"};
    const char *const sql[] = {sp->sql_whole, sp->sql_delete, sp->sql_sched,
                               sp->sql_unsched, sp->sql_reserve};

    *name = names[kind];
    return sql[kind];
}

/* Sends the ops of kind among those from first to end as one statement
 * of arrays, in told order. */
static int
send_kind(struct store_pg *sp, struct pg_op *first, struct pg_op *end,
          enum op_kind kind, uint8_t nv)
{
    const char *values[WHOLE_NCOLS];
    const char *name, *sql = op_sql(sp, kind, &name);
    struct aq_error err;
    bool is_first = true;

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
    return aq_pgconn_query(sp->conn, name, sql, nv, values, NULL, NULL, &err);
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
    static const uint8_t order[] = {OP_RESERVE, OP_DELETE, OP_WHOLE, OP_UNSCHED,
                                    OP_SCHED};
    uint8_t nv[OP_RESERVE + 1] = {0};

    for (struct pg_op *op = first; op != end; op = TAILQ_NEXT(op, link))
        nv[op->kind] = op->nv;
    for (size_t i = 0; i < sizeof order; i++)
        if (nv[order[i]] != 0 &&
            send_kind(sp, first, end, order[i], nv[order[i]]) < 0)
            return -1;
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
    if (aq_pgconn_commit(sp->conn, commit_cb, txn, &err) < 0) {
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
    struct aq_error why;

    TAILQ_REMOVE(&sp->txns, txn, link);
    sp->ntxns--;
    free(txn);
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

/* The reserved mark: ids up to it may have been given before. */
static void
read_ids_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: reading ids: %s", err);
        return;
    }
    sp->reserved = PQntuples(res) > 0 ? (uint64_t)col_i64(res, 0, 0) : 0;
    if (sp->reserved > sp->last_id)
        sp->last_id = sp->reserved;
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
    sp->given = sp->last_id;
    sp->phase = PH_LOCKED;
    sp->is_restored = true;
}

static void
read_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
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
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_read_ids, 0, NULL, read_ids_cb,
                        sp, &e) == 0 &&
        aq_pgconn_query(sp->conn, "aq_read_sched", sp->sql_read_sched, 0, NULL,
                        read_sched_cb, sp, &e) == 0)
        aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
}

static void
read_chunk(struct store_pg *sp)
{
    char after[24];
    const char *values[] = {after};
    struct aq_error e;

    snprintf(after, sizeof after, "%llu", (unsigned long long)sp->read_after);
    if (aq_pgconn_query(sp->conn, "aq_read", sp->sql_read, 1, values, read_cb,
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
}

static void
holder_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    const char *holder =
        err == NULL && PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "unknown";

    if (err != NULL && is_lost(err))
        return;
    set_fatal(sp,
              "store: postgres: schema %s is in use by node %s: sharing "
              "queues between active nodes is not built yet (issue 17)",
              sp->schema, holder);
}

static void
lock_cb(void *arg, const PGresult *res, const char *err)
{
    struct store_pg *sp = arg;
    const char *values[] = {sp->node};
    struct aq_error e;

    if (err != NULL) {
        if (!is_lost(err))
            set_fatal(sp, "store: postgres: schema %s: %s", sp->schema, err);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        if (aq_pgconn_query(sp->conn, NULL, sp->sql_holder, 0, NULL, holder_cb,
                            sp, &e) == 0)
            aq_pgconn_commit(sp->conn, noop_cb, NULL, &e);
        return;
    }
    if (aq_pgconn_query(sp->conn, NULL, sp->sql_node, 1, values, NULL, NULL,
                        &e) == 0)
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

/* The heartbeat: the node was seen now, the rows it runs leased on. */
static void
renew_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store_pg *sp = arg;
    struct sbuf *nb = &sp->cols[0], *tb = &sp->cols[1];
    char lease_ms[24], t[24];
    const char *values[4];
    const struct broker_queue *bq;
    struct aq_error e;
    bool first = true;

    if (!sp->is_restored || sp->is_renewing || sp->phase != PH_LOCKED ||
        !aq_pgconn_is_ready(sp->conn))
        return;
    snprintf(lease_ms, sizeof lease_ms, "%ld", LEASE_INTERVALS * sp->renew_ms);
    nb->len = tb->len = 0;
    sb_add(nb, "{", 1);
    sb_add(tb, "{", 1);
    STAILQ_FOREACH (bq, &sp->broker->queues, link) {
        array_elem(nb, bq->cfg.name, first);
        if (!first)
            sb_add(tb, ",", 1);
        sb_add(tb, t, fmt_i64(t, aq_clock_s_to_us(bq->cfg.timeout)));
        first = false;
    }
    sb_add(nb, "}", 2); /* with the NUL */
    sb_add(tb, "}", 2);
    values[0] = sp->node;
    values[1] = lease_ms;
    values[2] = nb->p;
    values[3] = tb->p;
    if (aq_pgconn_query(sp->conn, "aq_seen", sp->sql_seen, 1, values, NULL,
                        NULL, &e) == 0 &&
        aq_pgconn_query(sp->conn, "aq_renew", sp->sql_renew, 4, values, NULL,
                        NULL, &e) == 0 &&
        aq_pgconn_commit(sp->conn, renewed_cb, sp, &e) == 0)
        sp->is_renewing = true;
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
    /* What was told is committed while the server answers. */
    evtimer_add(timer, &wait);
    event_active(sp->flush_ev, EV_TIMEOUT, 0);
    while (sp->is_restored && sp->committed < sp->told && !is_late &&
           sp->phase == PH_LOCKED && aq_pgconn_is_ready(sp->conn))
        event_base_loop(sp->base, EVLOOP_ONCE);
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
        free(txn);
    }
    event_free(sp->flush_ev);
    event_free(sp->retry_ev);
    event_free(sp->renew_ev);
    free(sp->sql_whole);
    free(sp->sql_delete);
    free(sp->sql_sched);
    free(sp->sql_unsched);
    free(sp->sql_read);
    free(sp->sql_read_sched);
    free(sp->sql_node);
    free(sp->sql_holder);
    free(sp->sql_reserve);
    free(sp->sql_read_ids);
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
        US_TIME("lease") ", key, name, batch, after::bigint[], "
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
        "error_message = EXCLUDED.error_message";

static const char sql_delete[] =
    "DELETE FROM @S.jobs WHERE id = ANY($1::bigint[])";

static const char sql_sched[] =
    "INSERT INTO @S.schedules (name, last_fire, last_job) "
    "SELECT name, " US_TIME("fire") ", job "
    "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(name, fire, job) "
    "ON CONFLICT (name) DO UPDATE SET "
        "last_fire = EXCLUDED.last_fire, last_job = EXCLUDED.last_job";

static const char sql_unsched[] =
    "DELETE FROM @S.schedules WHERE name = ANY($1::text[])";

/* The columns in the order restore_row reads them. */
static const char sql_read[] =
    "SELECT id, queue, kind, state, priority, " TIME_US("due") ", "
        "attempts, retries, retried, timeout_us, " TIME_US("created") ", "
        TIME_US("started") ", " TIME_US("finished") ", key, name, batch, "
        "after, after_policy, args, result, error_code, error_message "
    "FROM @S.jobs WHERE id > $1 ORDER BY id LIMIT 5000";

static const char sql_read_sched[] =
    "SELECT name, " TIME_US("last_fire") ", last_job FROM @S.schedules";

/* clang-format on */

static const char sql_node[] =
    "INSERT INTO @S.nodes (node, started, seen) VALUES ($1, now(), now()) "
    "ON CONFLICT (node) DO UPDATE SET started = now(), seen = now()";

static const char sql_holder[] =
    "SELECT node FROM @S.nodes ORDER BY started DESC NULLS LAST LIMIT 1";

/* Raises the reserved mark (a run holds one value, or a few). */
static const char sql_reserve[] =
    "UPDATE @S.ids SET last_id = GREATEST(last_id, (SELECT max(x) FROM "
    "unnest($1::bigint[]) AS t(x)))";

static const char sql_read_ids[] = "SELECT last_id FROM @S.ids";

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

/* LEASE_RENEW_MS, or ASYNCQ_PG_LEASE_RENEW_MS (tests) when it is a
 * number of milliseconds from 10 to 3600000. */
static long
renew_interval_ms(void)
{
    const char *v = getenv("ASYNCQ_PG_LEASE_RENEW_MS");
    char *end;
    long ms;

    if (v == NULL)
        return LEASE_RENEW_MS;
    ms = strtol(v, &end, 10);
    return end != v && *end == '\0' && ms >= 10 && ms <= 3600000
               ? ms
               : LEASE_RENEW_MS;
}

struct aq_store *
aq_store_pg_open(struct event_base *base, const char *conninfo,
                 const char *schema, const char *node, struct aq_error *err)
{
    struct store_pg *sp = xcalloc(1, sizeof *sp);
    static const struct aq_pgconn_hooks hooks = {
        .ready = ready_hook,
        .lost = lost_hook,
    };
    char host[256];

    sp->store.ops = &pg_ops;
    sp->base = base;
    sp->schema = xstrdup(schema);
    if (node == NULL) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[64] = '\0';
        node = host;
    }
    sp->node = xstrdup(node);
    sp->lock_key = aq_pg_node_lock_key(schema);
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
    sp->sql_holder = aq_pg_sql(sql_holder, schema);
    sp->sql_reserve = aq_pg_sql(sql_reserve, schema);
    sp->sql_read_ids = aq_pg_sql(sql_read_ids, schema);
    sp->sql_release = aq_pg_sql(sql_release, schema);
    sp->sql_seen = aq_pg_sql(sql_seen, schema);
    sp->sql_renew = aq_pg_sql(sql_renew, schema);
    sp->renew_ms = renew_interval_ms();
    sp->renew_ev = event_new(base, -1, EV_PERSIST, renew_cb, sp);
    {
        struct timeval every = {sp->renew_ms / 1000,
                                (sp->renew_ms % 1000) * 1000};

        event_add(sp->renew_ev, &every);
    }
    snprintf(sp->why, sizeof sp->why, "connecting");
    if ((sp->conn = aq_pgconn_new(base, conninfo, &hooks, sp, err)) == NULL) {
        sp->is_restored = true;
        sp_close(&sp->store);
        return NULL;
    }
    return &sp->store;
}
