#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/remote_worker.py: a minimal Python worker for the benchmarks.

Takes COUNT jobs of a remote queue with the clients/python Worker
(CONCURRENCY handlers at once; each returns null at once), then exits and
prints jobs/s from the first job leased to the last task_done.
Usage: remote_worker.py [--server URL] [--queue Q] [--concurrency N]
                        [--count N] [--token T] [--ca FILE] [--json]
"""
import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "clients", "python"))
import asyncq  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("ASYNCQ_SERVER"))
    ap.add_argument("--queue", default="default")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--token", default=None)
    ap.add_argument("--ca", default=None)
    ap.add_argument("--json", action="store_true", help="one JSON line")
    a = ap.parse_args()
    w = asyncq.Worker(a.server, queues=a.queue, concurrency=a.concurrency,
                      limit=a.count, token=a.token, cafile=a.ca, poll=30)
    first = [0.0]

    @w.handler()
    async def noop(job: asyncq.Job) -> None:
        if not first[0]:
            first[0] = time.perf_counter()
        return None

    await w.run(handle_signals=True)
    elapsed = time.perf_counter() - first[0] if first[0] else 0.0
    n = w.done + w.failed
    rate = n / elapsed if elapsed > 0 else 0.0
    if a.json:
        print(json.dumps({"jobs": n, "seconds": round(elapsed, 6),
                          "jobs_per_s": round(rate, 1),
                          "concurrency": a.concurrency}))
    else:
        print("%d jobs in %.3f s: %.0f jobs/s (concurrency %d)"
              % (n, elapsed, rate, a.concurrency))
    return 0 if n == a.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
