# SPDX-License-Identifier: MIT
"""asyncq.Worker and the raw worker calls against the real asyncqd."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import unittest
from typing import Any, Dict, List, Optional

import asyncq

from .base import bounded, until
from .daemon import Daemon

QUEUES: Dict[str, Dict[str, Any]] = {
    "default": {"kind": "echo", "consumers": 1},
}
# Each test takes its own remote queue, so that a test's leftovers do not
# reach the next one's worker.
for _name in ("rt", "fail", "renew", "cancel", "stop", "conc", "sig", "raw",
              "late", "many"):
    QUEUES[_name] = {"kind": "remote", "timeout": 30, "retries": 0}
QUEUES["renew"]["timeout"] = 0.6


class WorkerCase(unittest.IsolatedAsyncioTestCase):
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon(QUEUES)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.stop()

    async def asyncSetUp(self) -> None:
        self.c = await asyncq.connect(self.daemon.url)
        self.runs: List["asyncio.Task[None]"] = []

    async def asyncTearDown(self) -> None:
        for t in self.runs:
            if not t.done():
                t.cancel()
        await asyncio.gather(*self.runs, return_exceptions=True)
        await self.c.close()

    def start(self, w: asyncq.Worker, **kw: Any) -> "asyncio.Task[None]":
        t = asyncio.ensure_future(w.run(**kw))
        self.runs.append(t)
        return t


class TestWorker(WorkerCase):
    @bounded
    async def test_round_trip_by_name(self) -> None:
        w = asyncq.Worker(self.daemon.url, queues=["rt"], concurrency=4, poll=5)
        seen: List[asyncq.Job] = []

        @w.handler("square")
        async def square(job: asyncq.Job) -> Any:
            seen.append(job)
            return {"square": job.args["n"] ** 2}

        @w.handler()
        async def other(job: asyncq.Job) -> Any:
            return "default:%s" % job.name

        run = self.start(w)
        res = await self.c.put_many(
            [{"args": {"n": n}, "name": "square"} for n in range(10)]
            + [{"args": {}, "name": "cube"}, {"args": {}}], queue="rt")
        recs = await self.c.wait([r["job"] for r in res], timeout=30)
        self.assertEqual([r["result"] for r in recs[:10]],
                         [{"square": n * n} for n in range(10)])
        self.assertEqual(recs[10]["result"], "default:cube")
        self.assertEqual(recs[11]["result"], "default:None")
        self.assertTrue(all(r["state"] == "done" and r["attempts"] == 1 for r in recs))
        self.assertEqual(recs[0]["name"], "square")
        j = seen[0]
        self.assertEqual((j.queue, j.name, j.attempts), ("rt", "square", 0))
        self.assertIsInstance(j.lease_deadline, float)
        self.assertGreater(j.lease_deadline, time.time())  # type: ignore[operator]
        w.stop()
        await run
        self.assertEqual(w.done, 12)  # final once run() returned
        self.assertEqual(w.running, 0)

    @bounded
    async def test_exception_fails_with_traceback(self) -> None:
        w = asyncq.Worker(self.daemon.url, queues="fail", poll=5)

        class Nope(Exception):
            code = "nope"

        @w.handler("boom")
        async def boom(job: asyncq.Job) -> Any:
            raise ValueError("bad input %d" % job.args["n"])

        @w.handler("nope")
        async def nope(job: asyncq.Job) -> Any:
            raise Nope("custom")

        @w.handler("unjson")
        async def unjson(job: asyncq.Job) -> Any:
            return {1, 2}

        run = self.start(w)
        a = (await self.c.put({"n": 7}, queue="fail", name="boom"))["job"]
        b = (await self.c.put({}, queue="fail", name="nope"))["job"]
        c = (await self.c.put({}, queue="fail", name="unjson"))["job"]
        ra, rb, rc = await self.c.wait([a, b, c], timeout=30)
        self.assertEqual(ra["state"], "failed")
        self.assertEqual(ra["error"]["code"], "exception")
        self.assertEqual(ra["error"]["message"], "bad input 7")
        self.assertIn("ValueError: bad input 7", ra["error"]["traceback"])
        self.assertIn("in boom", ra["error"]["traceback"])
        self.assertEqual((rb["state"], rb["error"]["code"]), ("failed", "nope"))
        self.assertEqual((rc["state"], rc["error"]["code"]), ("failed", "exception"))
        self.assertIn("not JSON", rc["error"]["message"])
        w.stop()
        await run
        self.assertEqual(w.failed, 3)

    @bounded
    async def test_lease_renewed_while_handler_runs(self) -> None:
        # The queue's timeout (the lease) is 0.6 s; the handler runs until
        # the job has been held past three leases' worth of time.
        w = asyncq.Worker(self.daemon.url, queues="renew", poll=5)
        seen: Dict[str, Any] = {}
        probe = await asyncq.connect(self.daemon.url)

        @w.handler()
        async def slow(job: asyncq.Job) -> Any:
            first = job.lease_deadline
            assert first is not None
            rec = await until(
                lambda: probe.status(job.id),
                lambda r: r["state"] != "running" or
                (time.time() > first + 1.2 and r["lease_deadline"] > first + 1.0),
                "lease renewed", timeout=20)
            seen["rec"] = rec
            return "slow"

        run = self.start(w)
        try:
            j = (await self.c.put({}, queue="renew"))["job"]
            rec = (await self.c.wait([j], timeout=30))[0]
            self.assertEqual(seen["rec"]["state"], "running")
            self.assertEqual((rec["state"], rec["result"], rec["attempts"]),
                             ("done", "slow", 1))
        finally:
            await probe.close()
        w.stop()
        await run

    @bounded
    async def test_job_cancel_cancels_handler(self) -> None:
        w = asyncq.Worker(self.daemon.url, queues="cancel", concurrency=2, poll=5)
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @w.handler()
        async def forever(job: asyncq.Job) -> Any:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        run = self.start(w)
        j = (await self.c.put({}, queue="cancel"))["job"]
        await started.wait()
        self.assertEqual(await self.c.cancel(j), {"job": j, "state": "cancelled"})
        await cancelled.wait()
        await until(lambda: asyncio.sleep(0, w.running), lambda n: n == 0, "handler gone")
        self.assertEqual(w.cancelled, 1)
        rec = await self.c.status(j)
        self.assertEqual(rec["state"], "cancelled")
        w.stop()
        await run

    @bounded
    async def test_stop_finishes_then_releases(self) -> None:
        w = asyncq.Worker(self.daemon.url, queues="stop", concurrency=2,
                          poll=5, grace=0.3)
        running = {"quick": asyncio.Event(), "slow": asyncio.Event()}
        finish_quick = asyncio.Event()
        slow_cancelled = asyncio.Event()

        @w.handler("quick")
        async def quick(job: asyncq.Job) -> Any:
            running["quick"].set()
            await finish_quick.wait()
            return "finished in the grace"

        @w.handler("slow")
        async def slow(job: asyncq.Job) -> Any:
            running["slow"].set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                slow_cancelled.set()
                raise

        run = self.start(w)
        q = (await self.c.put({}, queue="stop", name="quick"))["job"]
        s = (await self.c.put({}, queue="stop", name="slow"))["job"]
        await running["quick"].wait()
        await running["slow"].wait()
        w.stop()
        finish_quick.set()
        await run
        self.assertTrue(slow_cancelled.is_set())
        self.assertEqual(w.released, 1)
        rq = await self.c.status(q)
        self.assertEqual((rq["state"], rq["result"]), ("done", "finished in the grace"))
        rs = await self.c.status(s)
        self.assertEqual((rs["state"], rs["attempts"]), ("pending", 0))
        await self.c.cancel(s)

    @bounded
    async def test_concurrency(self) -> None:
        n = 3
        w = asyncq.Worker(self.daemon.url, queues="conc", concurrency=n, poll=5)
        now = {"running": 0, "max": 0}
        all_in = asyncio.Event()

        @w.handler()
        async def h(job: asyncq.Job) -> Any:
            now["running"] += 1
            now["max"] = max(now["max"], now["running"])
            if now["running"] == n:
                all_in.set()
            await all_in.wait()  # returns only once n run at once
            now["running"] -= 1
            return job.args["i"]

        run = self.start(w)
        res = await self.c.put_many([{"args": {"i": i}} for i in range(3 * n)],
                                    queue="conc")
        st = await until(lambda: self.c.stats("conc"),
                         lambda s: s["queues"]["conc"].get("busy") == n or all_in.is_set(),
                         "busy")
        recs = await self.c.wait([r["job"] for r in res], timeout=30)
        self.assertEqual([r["result"] for r in recs], list(range(3 * n)))
        self.assertEqual(now["max"], n)
        self.assertIn("workers", st["queues"]["conc"])
        w.stop()
        await run

    @bounded
    async def test_many_jobs_up_to_limit(self) -> None:
        # Gets in flight never lease past the limit or the concurrency;
        # each handler runs in a task of its own, whether it awaits or not.
        n, limit, c = 400, 300, 8
        w = asyncq.Worker(self.daemon.url, queues="many", concurrency=c,
                          poll=5, limit=limit)
        now = {"running": 0, "max": 0}
        tasks = set()

        @w.handler()
        async def h(job: asyncq.Job) -> Any:
            task = asyncio.current_task()
            assert task is not None and task not in tasks
            tasks.add(task)
            now["running"] += 1
            now["max"] = max(now["max"], now["running"])
            if job.args["i"] % 2:
                await asyncio.sleep(0)
            now["running"] -= 1
            return job.args["i"]

        res = await self.c.put_many([{"args": {"i": i}} for i in range(n)],
                                    queue="many")
        await self.start(w)  # returns by itself at the limit
        self.assertEqual((w.done, w.failed, w.released, w.running),
                         (limit, 0, 0, 0))
        self.assertLessEqual(now["max"], c)
        recs = await self.c.wait([r["job"] for r in res[:limit]], timeout=30)
        self.assertEqual([r["result"] for r in recs], list(range(limit)))
        st = (await self.c.stats("many"))["queues"]["many"]
        self.assertEqual((st["size"], st["running"]), (n - limit, 0))
        await self.c.cancel(queue="many")

    @bounded
    async def test_sigterm_stops(self) -> None:
        w = asyncq.Worker(self.daemon.url, queues="sig", poll=5, grace=5)
        started = asyncio.Event()
        go = asyncio.Event()

        @w.handler()
        async def h(job: asyncq.Job) -> Any:
            started.set()
            await go.wait()
            return "ok"

        run = self.start(w, handle_signals=True)
        j = (await self.c.put({}, queue="sig"))["job"]
        await started.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: asyncio.sleep(0, w._stop_event is not None and
                                          w._stop_event.is_set()),
                    bool, "SIGTERM seen")
        go.set()
        await run
        self.assertEqual((await self.c.status(j))["result"], "ok")

    @bounded
    async def test_stop_on_shared_client_releases_late_jobs(self) -> None:
        # A worker on a shared connection stops while its get waits; the
        # job that get then leases goes back to the queue, not stuck.
        shared = await asyncq.connect(self.daemon.url)
        try:
            w = asyncq.Worker(shared, queues="late", poll=10)

            @w.handler()
            async def h(job: asyncq.Job) -> Any:
                raise AssertionError("stopped worker ran a job")

            run = self.start(w)
            await until(lambda: self.c.stats("late"),
                        lambda s: s["queues"]["late"]["workers"] == 1, "get waits")
            w.stop()
            await run
            j = (await self.c.put({}, queue="late"))["job"]
            jobs = await self.c.get("late", wait=10)
            self.assertEqual([(x["job"], x["attempts"]) for x in jobs], [(j, 0)])
            await self.c.task_done(j, "ok")
            self.assertFalse(shared.closed)
        finally:
            await shared.close()


class TestRawCalls(WorkerCase):
    @bounded
    async def test_get_task_done_touch_release(self) -> None:
        with self.assertRaises(asyncq.NotAllowed):
            await self.c.get("default", wait=0)
        with self.assertRaises(asyncq.NoSuchQueue):
            await self.c.get("nope", wait=0)
        self.assertEqual(await self.c.get("raw", wait=0), [])
        j = (await self.c.put({"a": 1}, queue="raw", name="n"))["job"]
        jobs = await self.c.get(["raw"], max=5, wait=5, lease=10)
        self.assertEqual(len(jobs), 1)
        got = jobs[0]
        self.assertEqual((got["job"], got["queue"], got["name"], got["args"],
                          got["attempts"]), (j, "raw", "n", {"a": 1}, 0))
        t = await self.c.touch(j, lease=20)
        self.assertEqual(t["job"], j)
        self.assertGreater(t["lease_deadline"], got["lease_deadline"])
        self.assertEqual(await self.c.release(j), {"job": j, "state": "pending"})
        with self.assertRaises(asyncq.NotYourLease):
            await self.c.touch(j)
        jobs = await self.c.get("raw", wait=5)
        self.assertEqual(jobs[0]["attempts"], 0)  # a release is not counted
        self.assertEqual(await self.c.task_done(j, {"ok": True}),
                         {"job": j, "state": "done"})
        with self.assertRaises(asyncq.NotYourLease):
            await self.c.task_done(j, None)
        self.assertEqual((await self.c.status(j))["result"], {"ok": True})
        # another connection's lease is not ours
        k = (await self.c.put({}, queue="raw"))["job"]
        async with await asyncq.connect(self.daemon.url) as other:
            await other.get("raw", wait=5)
            with self.assertRaises(asyncq.NotYourLease):
                await self.c.task_done(k, error={"code": "x", "message": "y"})
            r = await other.task_done(k, error={"code": "x", "message": "y"},
                                      retry=False)
            self.assertEqual(r, {"job": k, "state": "failed"})


if __name__ == "__main__":
    unittest.main()
