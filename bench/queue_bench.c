/* SPDX-License-Identifier: MIT */
/*
 * bench/queue_bench.c: put+get pairs per second through lib/queue, with a
 * shallow queue and with 1,000,000 items queued, in FIFO order (one
 * priority) and priority order (random priorities). Each pair is
 * put_nowait + get_nowait + task_done; the "loop" rows go through waiting
 * getters and the event loop as asyncqd's consumers do. Prints the median of
 * three runs per row; --json for scripts.
 * Usage: queue_bench [--pairs N] [--deep N] [--json]
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "queue.h"
#include "xmalloc.h"

#define RUNS 3

struct bitem {
    struct aq_queue_item qi;
    uint64_t id;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t
rng_next(void)
{
    /* xorshift64*: a fixed seed, so every run sees the same priorities. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

enum prio_kind { PRIO_FIFO, PRIO_100, PRIO_WIDE };

static int32_t *
make_priorities(enum prio_kind kind, size_t n)
{
    int32_t *p = xcalloc(n, sizeof *p);

    for (size_t i = 0; i < n; i++) {
        if (kind == PRIO_100)
            p[i] = (int32_t)(rng_next() % 100);
        else if (kind == PRIO_WIDE)
            p[i] = (int32_t)(uint32_t)rng_next();
    }
    return p;
}

/* One direct run: prefill depth items, then pairs put+get+task_done. */
static double
run_direct(struct event_base *base, enum prio_kind kind, size_t depth,
           size_t pairs)
{
    struct aq_queue_opts opts = {0};
    struct aq_queue *q = aq_queue_new(base, &opts);
    size_t nitems = depth + 1;
    struct bitem *items = xcalloc(nitems, sizeof *items);
    size_t nprio = 1u << 20;
    int32_t *prio = make_priorities(kind, nprio);
    struct aq_queue_item *it;
    size_t i;

    for (i = 0; i < depth; i++)
        aq_queue_put_nowait(q, &items[i].qi, prio[i & (nprio - 1)], 0);
    it = &items[depth].qi;
    int64_t start_us = aq_clock_mono_us();
    for (i = 0; i < pairs; i++) {
        aq_queue_put_nowait(q, it, prio[i & (nprio - 1)], 0);
        aq_queue_get_nowait(q, &it);
        aq_queue_task_done(q, NULL);
    }
    int64_t elapsed_us = aq_clock_mono_us() - start_us;
    if (aq_queue_qsize(q) != depth) {
        fprintf(stderr, "queue_bench: size %zu, expected %zu\n",
                aq_queue_qsize(q), depth);
        exit(1);
    }
    aq_queue_free(q);
    free(items);
    free(prio);
    return (double)pairs * 1e6 / (double)(elapsed_us > 0 ? elapsed_us : 1);
}

/* Through the loop: CONSUMERS getters wait; each loop pass a producer puts
 * a batch; the woken getters finish their item and get again. */
#define CONSUMERS 4
#define BATCH 256

struct loop_bench {
    struct aq_queue *q;
    struct event *produce_ev;
    struct bitem *items;
    size_t next, pairs, done;
    struct aq_queue_waiter w[CONSUMERS];
};

static void consume(struct loop_bench *lb, struct aq_queue_waiter *w,
                    struct aq_queue_item *it);

static void
got_cb(struct aq_queue_waiter *w, enum aq_queue_status st,
       struct aq_queue_item *it, void *arg)
{
    if (st == AQ_QUEUE_OK)
        consume(arg, w, it);
}

static void
consume(struct loop_bench *lb, struct aq_queue_waiter *w,
        struct aq_queue_item *it)
{
    do {
        aq_queue_task_done(lb->q, NULL);
        lb->done++;
    } while (aq_queue_get(lb->q, w, got_cb, lb, &it) == AQ_QUEUE_OK);
}

static void
produce_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop_bench *lb = arg;

    for (int i = 0; i < BATCH && lb->next < lb->pairs; i++, lb->next++)
        aq_queue_put_nowait(lb->q, &lb->items[lb->next % (BATCH * 2)].qi, 0, 0);
    if (lb->next < lb->pairs)
        event_active(lb->produce_ev, EV_TIMEOUT, 0);
}

static double
run_loop(struct event_base *base, size_t pairs)
{
    struct aq_queue_opts opts = {0};
    struct loop_bench lb = {.pairs = pairs};
    struct aq_queue_item *it;

    lb.q = aq_queue_new(base, &opts);
    lb.items = xcalloc(BATCH * 2, sizeof *lb.items);
    lb.produce_ev = event_new(base, -1, 0, produce_cb, &lb);
    for (int i = 0; i < CONSUMERS; i++)
        aq_queue_get(lb.q, &lb.w[i], got_cb, &lb, &it);
    int64_t start_us = aq_clock_mono_us();
    event_active(lb.produce_ev, EV_TIMEOUT, 0);
    while (lb.done < pairs)
        event_base_loop(base, EVLOOP_ONCE);
    int64_t elapsed_us = aq_clock_mono_us() - start_us;
    for (int i = 0; i < CONSUMERS; i++)
        aq_queue_cancel(lb.q, &lb.w[i]);
    event_free(lb.produce_ev);
    aq_queue_free(lb.q);
    free(lb.items);
    return (double)pairs * 1e6 / (double)(elapsed_us > 0 ? elapsed_us : 1);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

struct row {
    const char *name;
    enum prio_kind kind;
    bool is_deep, is_loop;
};

int
main(int argc, char **argv)
{
    static const struct row rows[] = {
        {"fifo, shallow (100 queued)", PRIO_FIFO, false, false},
        {"priority 0-99, shallow (100 queued)", PRIO_100, false, false},
        {"fifo, deep", PRIO_FIFO, true, false},
        {"priority 0-99, deep", PRIO_100, true, false},
        {"priority random int32, deep", PRIO_WIDE, true, false},
        {"fifo via event loop, 4 getters (<= 256 queued)", PRIO_FIFO, false,
         true},
    };
    size_t pairs = 5000000, deep = 1000000;
    bool json = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc)
            pairs = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--deep") == 0 && i + 1 < argc)
            deep = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else {
            fprintf(stderr,
                    "usage: queue_bench [--pairs N] [--deep N] [--json]\n");
            return 2;
        }
    }

    struct event_base *base = event_base_new();
    if (json)
        printf("[");
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        double rate[RUNS];

        for (int k = 0; k < RUNS; k++) {
            if (rows[r].is_loop)
                rate[k] = run_loop(base, pairs);
            else
                rate[k] = run_direct(base, rows[r].kind,
                                     rows[r].is_deep ? deep : 100, pairs);
        }
        qsort(rate, RUNS, sizeof rate[0], cmp_double);
        size_t queued = rows[r].is_deep ? deep : rows[r].is_loop ? BATCH : 100;
        if (json)
            printf("%s{\"name\":\"%s\",\"queued\":%zu,\"pairs_per_s\":%.0f}",
                   r > 0 ? "," : "", rows[r].name, queued, rate[RUNS / 2]);
        else
            printf("%-42s %8zu queued  %12.0f pairs/s\n", rows[r].name, queued,
                   rate[RUNS / 2]);
        fflush(stdout);
    }
    if (json)
        printf("]\n");
    event_base_free(base);
    return 0;
}
