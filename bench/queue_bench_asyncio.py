#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/queue_bench_asyncio.py: the peer of queue_bench.

The same rows as bench/queue_bench.c, on Python's asyncio.Queue and
asyncio.PriorityQueue (put_nowait + get_nowait + task_done per pair; the
"event loop" row has 4 consumer tasks awaiting get()). Median of 3 runs.
Usage: queue_bench_asyncio.py [--pairs N] [--deep N] [--json]
"""
import argparse
import asyncio
import itertools
import json
import random
import statistics
import time

RUNS = 3


def priorities(kind, n):
    rng = random.Random(1)
    if kind == "fifo":
        return [0] * n
    if kind == "p100":
        return [rng.randrange(100) for _ in range(n)]
    return [rng.randrange(-2**31, 2**31) for _ in range(n)]


def run_direct(kind, depth, pairs):
    # PriorityQueue entries are (priority, seq, item): FIFO among equals,
    # as asyncq does; a plain Queue for the FIFO rows.
    q = asyncio.Queue() if kind == "fifo" else asyncio.PriorityQueue()
    prio = priorities(kind, 1 << 16)
    mask = (1 << 16) - 1
    seq = itertools.count()
    wrap = (lambda p, x: x) if kind == "fifo" else (lambda p, x: (p, next(seq), x))
    for i in range(depth):
        q.put_nowait(wrap(prio[i & mask], i))
    item = depth
    start = time.perf_counter()
    for i in range(pairs):
        q.put_nowait(wrap(prio[i & mask], item))
        item = q.get_nowait()
        q.task_done()
    return pairs / (time.perf_counter() - start)


async def run_loop(pairs, consumers=4, batch=256):
    q = asyncio.Queue()
    done = 0

    async def consume():
        nonlocal done
        while True:
            await q.get()
            q.task_done()
            done += 1

    tasks = [asyncio.create_task(consume()) for _ in range(consumers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    sent = 0
    while sent < pairs:
        for _ in range(min(batch, pairs - sent)):
            q.put_nowait(sent)
            sent += 1
        await asyncio.sleep(0)
    await q.join()
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return pairs / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000000)
    ap.add_argument("--deep", type=int, default=1000000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [
        ("fifo, shallow (100 queued)", lambda: run_direct("fifo", 100, a.pairs), 100),
        ("priority 0-99, shallow (100 queued)", lambda: run_direct("p100", 100, a.pairs), 100),
        ("fifo, deep", lambda: run_direct("fifo", a.deep, a.pairs), a.deep),
        ("priority 0-99, deep", lambda: run_direct("p100", a.deep, a.pairs), a.deep),
        ("priority random int32, deep", lambda: run_direct("wide", a.deep, a.pairs), a.deep),
        ("fifo via event loop, 4 getters (<= 256 queued)",
         lambda: asyncio.run(run_loop(a.pairs)), 256),
    ]
    out = []
    for name, fn, queued in rows:
        rate = statistics.median(fn() for _ in range(RUNS))
        out.append({"name": name, "queued": queued, "pairs_per_s": round(rate)})
        if not a.json:
            print(f"{name:<48} {queued:8} queued  {rate:12.0f} pairs/s", flush=True)
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
