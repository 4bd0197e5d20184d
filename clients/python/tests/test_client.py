# SPDX-License-Identifier: MIT
"""The producer side of asyncq.Client against the real asyncqd."""
from __future__ import annotations

import asyncio
import os
import unittest
from typing import Any, Dict, List

import asyncq
import asyncq.sync

from .base import bounded, until
from .daemon import Daemon

QUEUES: Dict[str, Dict[str, Any]] = {
    "default": {"kind": "echo", "consumers": 2},
    "held": {"kind": "echo", "consumers": 0, "maxsize": 1000},
    "small": {"kind": "echo", "consumers": 0, "maxsize": 5},
    "stream": {"kind": "echo", "consumers": 0},
    "manage": {"kind": "echo", "consumers": 0, "kinds": ["sleep"]},
}


class TestUrl(unittest.TestCase):
    def test_forms(self) -> None:
        p = asyncq.parse_url
        self.assertEqual(p("tcp://10.0.0.1:99"), ("tcp", "10.0.0.1", 99))
        self.assertEqual(p("localhost:7000"), ("tcp", "localhost", 7000))
        self.assertEqual(p("tls://q.example:7443"), ("tls", "q.example", 7443))
        self.assertEqual(p("tcp://[::1]:7878"), ("tcp", "::1", 7878))
        self.assertEqual(p("unix:/run/asyncq.sock"), ("unix", "/run/asyncq.sock", 0))
        self.assertEqual(p("tcp://host"), ("tcp", "host", 7878))
        for bad in ("http://h:1", "unix:rel", "h:0", "h:x", "tcp://:5"):
            with self.assertRaises(ValueError, msg=bad):
                p(bad)


class TestProducer(unittest.IsolatedAsyncioTestCase):
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon(QUEUES, tcp=True, extra={"schedules": {
            "nightly": {"cron": "30 2 * * *", "timezone": "Europe/Berlin",
                        "queue": "held"}}})

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.stop()

    async def asyncSetUp(self) -> None:
        self.c = await asyncq.connect(self.daemon.url, timeout=10)

    async def asyncTearDown(self) -> None:
        await self.c.close()

    @bounded
    async def test_put_status_wait(self) -> None:
        self.assertEqual(await self.c.ping(), "pong")
        r = await self.c.put({"n": 1, "s": "x"}, priority=3, retries=1)
        self.assertIn(r["state"], ("pending", "running", "done"))
        recs = await self.c.wait([r["job"]], timeout=20)
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["state"], "done")
        self.assertEqual(recs[0]["result"], {"n": 1, "s": "x"})
        st = await self.c.status(r["job"])
        self.assertEqual(st["priority"], 3)
        self.assertEqual(st["args"], {"n": 1, "s": "x"})
        # put with wait: the finished record; a key: a duplicate
        rec = await self.c.put({"k": 2}, wait=True, key="once")
        self.assertEqual(rec["result"], {"k": 2})
        dup = await self.c.put({"k": 3}, key="once")
        self.assertEqual(dup, {"job": rec["job"], "state": "done", "duplicate": True})
        # delay makes it delayed
        d = await self.c.put({}, queue="held", delay=100)
        self.assertEqual(d["state"], "delayed")

    @bounded
    async def test_errors(self) -> None:
        with self.assertRaises(asyncq.NoSuchJob) as cm:
            await self.c.status(987654)
        self.assertEqual(cm.exception.code, -32004)
        self.assertIsInstance(cm.exception, asyncq.NotFound)
        self.assertIsInstance(cm.exception, asyncq.Error)
        self.assertIn("987654", cm.exception.message)
        with self.assertRaises(asyncq.NoSuchQueue):
            await self.c.put({}, queue="nope")
        with self.assertRaises(asyncq.InvalidParams) as cm2:
            await self.c.put({}, priority="high")  # type: ignore[arg-type]
        self.assertIn("priority", cm2.exception.message)
        with self.assertRaises(asyncq.MethodNotFound):
            await self.c.call("frobnicate")
        # the connection is still usable after errors
        self.assertEqual(await self.c.ping(), "pong")
        # nowait on a full queue
        for _ in range(5):
            await self.c.put({}, queue="small", nowait=True)
        with self.assertRaises(asyncq.QueueFull):
            await self.c.put({}, queue="small", nowait=True)
        await self.c.cancel(queue="small")
        with self.assertRaises(asyncq.Timeout):
            j = (await self.c.put({}, queue="held"))["job"]
            await self.c.wait([j], timeout=0.05)
        with self.assertRaises(asyncq.AlreadyFinished):
            await self.c.cancel(j)
            await self.c.cancel(j)

    @bounded
    async def test_pipelined(self) -> None:
        # Many calls at once on one connection, each gets its own reply.
        res = await asyncio.gather(*(self.c.put({"i": i}) for i in range(200)))
        ids = [r["job"] for r in res]
        self.assertEqual(len(set(ids)), 200)
        recs = await self.c.wait(ids, timeout=30)
        self.assertEqual([r["result"]["i"] for r in recs], list(range(200)))

    @bounded
    async def test_put_many(self) -> None:
        res = await self.c.put_many(({"args": {"i": i}} for i in range(300)),
                                    window=8, priority=1)
        self.assertEqual(len(res), 300)
        ids = [r["job"] for r in res]
        self.assertEqual(ids, sorted(ids))
        recs = await self.c.wait(ids, timeout=30)
        self.assertEqual([r["result"]["i"] for r in recs], list(range(300)))
        self.assertTrue(all(r["priority"] == 1 for r in recs))
        # an error stops it and raises; return_exceptions keeps going
        with self.assertRaises(asyncq.NoSuchQueue):
            await self.c.put_many([{"args": {}}, {"queue": "nope"}, {"args": {}}])
        out = await self.c.put_many([{"args": {}}, {"queue": "nope"}],
                                    return_exceptions=True)
        self.assertIsInstance(out[1], asyncq.NoSuchQueue)
        self.assertIn("job", out[0])

        async def agen() -> Any:
            for i in range(10):
                yield {"args": {"a": i}, "queue": "held"}

        self.assertEqual(len(await self.c.put_many(agen(), window=3)), 10)

    @bounded
    async def test_put_many_back_pressure(self) -> None:
        # 40 jobs into a queue of maxsize 5 with no consumer: put_many
        # must stall (the daemon stops reading), not fail nor buffer.
        other = await asyncq.connect(self.daemon.url)
        try:
            task = asyncio.ensure_future(self.c.put_many(
                ({"args": {"i": i}, "queue": "small"} for i in range(40)),
                window=16))
            await until(lambda: other.stats("small"),
                        lambda s: s["queues"]["small"]["unfinished"] == 5,
                        "small queue filling")
            self.assertFalse(task.done())
            # still stalled while the queue is full: a round trip to the
            # daemon on another connection, then the task is still waiting
            self.assertEqual(await other.ping(), "pong")
            self.assertFalse(task.done())
            self.assertEqual(
                (await other.stats("small"))["queues"]["small"]["unfinished"], 5)
            await other.scale("small", 2)
            res = await task
            self.assertEqual(len(res), 40)
            recs = await other.wait([r["job"] for r in res], timeout=30)
            self.assertEqual([r["result"]["i"] for r in recs], list(range(40)))
        finally:
            await other.scale("small", 0)
            await other.close()

    @bounded
    async def test_as_completed(self) -> None:
        ids = [r["job"] for r in await self.c.put_many(
            [{"args": {"i": i}, "queue": "stream"} for i in range(3)])]
        got: List[Dict[str, Any]] = []
        it = self.c.as_completed(ids, timeout=30)
        first = asyncio.ensure_future(it.__anext__())
        # Nothing runs (no consumer): cancel the middle job, which is then
        # the first to finish.
        await self.c.ping()  # the wait, sent before it, is registered
        await self.c.cancel(ids[1])
        rec = await first
        self.assertEqual((rec["job"], rec["state"]), (ids[1], "cancelled"))
        await self.c.scale("stream", 1)
        try:
            async for rec in it:
                got.append(rec)
        finally:
            await self.c.scale("stream", 0)
        self.assertEqual(sorted(r["job"] for r in got), [ids[0], ids[2]])
        self.assertTrue(all(r["state"] == "done" for r in got))
        # a timeout raises Timeout from the iterator
        j = (await self.c.put({}, queue="stream"))["job"]
        with self.assertRaises(asyncq.Timeout):
            async for _ in self.c.as_completed([j], timeout=0.05):
                pass

    @bounded
    async def test_wait_any_join(self) -> None:
        a = (await self.c.put({}, queue="held"))["job"]
        b = (await self.c.put({"b": 1}))["job"]
        recs = await self.c.wait([a, b], mode="any", timeout=20)
        self.assertEqual([r["job"] for r in recs], [b])
        with self.assertRaises(asyncq.Timeout):
            await self.c.join("held", timeout=0.05)
        await self.c.cancel(queue="held")
        self.assertEqual(await self.c.join("held", timeout=20), {"queue": "held"})

    @bounded
    async def test_flow(self) -> None:
        # at, after and after_policy, batch: SPEC §11
        gate = (await self.c.put({}, queue="held", batch="b1"))["job"]
        r = await self.c.put({"x": 1}, after=[gate], batch="b1")
        self.assertEqual(r["state"], "waiting")
        late = await self.c.put({}, queue="held", at=2000000000.5, batch="b2")
        self.assertEqual(late["state"], "delayed")
        rec = await self.c.status(late["job"])
        self.assertAlmostEqual(rec["due"], 2000000000.5, delta=0.01)
        st = await self.c.stats(batch="b1")
        self.assertEqual((st["batch"], st["total"], st["waiting"], st["pending"]),
                         ("b1", 2, 1, 1))
        with self.assertRaises(asyncq.Timeout):
            await self.c.join(batch="b1", timeout=0.05)
        with self.assertRaises(asyncq.NoSuchJob):
            await self.c.put({}, after=[999999999])
        await self.c.cancel(gate)
        dep = await self.c.wait([r["job"]], timeout=20)
        self.assertEqual(dep[0]["error"]["code"], "dependency_failed")
        self.assertEqual(await self.c.join(batch="b1", timeout=20), {"batch": "b1"})
        ok = await self.c.put({"y": 2}, after=[gate], after_policy="finished")
        self.assertEqual((await self.c.wait([ok["job"]], timeout=20))[0]["state"], "done")
        await self.c.cancel(late["job"])
        # schedules
        (s,) = await self.c.schedules()
        self.assertEqual((s["name"], s["cron"], s["timezone"], s["queue"]),
                         ("nightly", "30 2 * * *", "Europe/Berlin", "held"))
        self.assertGreater(s["next"], 0)
        self.assertEqual(await self.c.schedules("nightly"), [s])

    @bounded
    async def test_manage(self) -> None:
        ids = [r["job"] for r in await self.c.put_many(
            [{"args": {"i": i}, "queue": "manage"} for i in range(5)])]
        page = await self.c.list("manage", state="pending", limit=2)
        self.assertEqual([r["job"] for r in page["jobs"]], ids[:2])
        self.assertEqual(page["next"], ids[1])
        all_ids = [r["job"] async for r in self.c.iter_jobs("manage", limit=2)]
        self.assertEqual(all_ids, ids)
        desc = [r["job"] async for r in self.c.iter_jobs(
            "manage", state=["pending"], limit=2, order="desc")]
        self.assertEqual(desc, ids[::-1])
        self.assertEqual(await self.c.cancel(queue="manage"), {"cancelled": 5})
        self.assertEqual(await self.c.retry(ids[0]), {"job": ids[0], "state": "pending"})
        with self.assertRaises(asyncq.NotFinished):
            await self.c.delete(ids[0])
        self.assertEqual(await self.c.retry(queue="manage", state="cancelled", delay=60),
                         {"retried": 4})
        self.assertEqual((await self.c.status(ids[1]))["state"], "delayed")
        await self.c.cancel(queue="manage")
        self.assertEqual(await self.c.delete(ids[0]), {"job": ids[0], "deleted": True})
        self.assertEqual(await self.c.delete(queue="manage", state="cancelled"),
                         {"deleted": 4})
        with self.assertRaises(asyncq.NoSuchJob):
            await self.c.status(ids[0])
        # pause / resume / scale / stats
        self.assertEqual(await self.c.pause("manage"), {"queue": "manage", "paused": True})
        self.assertTrue((await self.c.stats("manage"))["queues"]["manage"]["paused"])
        self.assertEqual(await self.c.resume("manage"), {"queue": "manage", "paused": False})
        self.assertEqual(await self.c.scale("manage", 3), {"queue": "manage", "consumers": 3})
        st = await self.c.stats()
        self.assertEqual(st["queues"]["manage"]["consumers"], 3)
        await self.c.scale("manage", 0)
        # a sleep job runs and is cancelled while running
        await self.c.scale("manage", 1)
        j = (await self.c.put({"seconds": 60}, queue="manage", kind="sleep"))["job"]
        await until(lambda: self.c.status(j), lambda r: r["state"] == "running", "sleep runs")
        self.assertEqual(await self.c.cancel(j), {"job": j, "state": "cancelled"})
        await self.c.scale("manage", 0)

    @bounded
    async def test_tcp_urls_and_env(self) -> None:
        assert self.daemon.tcp_url is not None
        hostport = self.daemon.tcp_url[len("tcp://"):]
        for url in (self.daemon.tcp_url, hostport):
            async with await asyncq.connect(url) as c:
                self.assertEqual(await c.ping(), "pong")
            self.assertTrue(c.closed)
        old = os.environ.get("ASYNCQ_SERVER")
        os.environ["ASYNCQ_SERVER"] = self.daemon.url
        try:
            async with await asyncq.connect() as c:
                self.assertEqual(await c.ping(), "pong")
        finally:
            if old is None:
                del os.environ["ASYNCQ_SERVER"]
            else:
                os.environ["ASYNCQ_SERVER"] = old

    @bounded
    async def test_transport_errors(self) -> None:
        with self.assertRaises(ConnectionError):
            await asyncq.connect("unix:" + self.daemon.dir + "/no-such.sock")
        c = await asyncq.connect(self.daemon.url)
        j = (await c.put({}, queue="held"))["job"]
        waiting = asyncio.ensure_future(c.wait([j]))
        await c.ping()  # the wait is sent and held by the daemon
        await c.close()
        with self.assertRaises(asyncq.ConnectionClosed):
            await waiting
        with self.assertRaises(ConnectionError):
            await c.ping()
        await self.c.cancel(j)


class TestAuth(unittest.IsolatedAsyncioTestCase):
    @bounded
    async def test_token(self) -> None:
        d = Daemon({"default": {"kind": "echo", "consumers": 1}}, token="s3cret")
        try:
            async with await asyncq.connect(d.url) as c:
                with self.assertRaises(asyncq.Unauthorized) as cm:
                    await c.ping()
                self.assertEqual(cm.exception.code, -32001)
            with self.assertRaises(asyncq.Unauthorized):
                await asyncq.connect(d.url, token="wrong")
            async with await asyncq.connect(d.url, token="s3cret") as c:
                self.assertEqual(await c.ping(), "pong")
            os.environ["ASYNCQ_TOKEN"] = "s3cret"
            try:
                async with await asyncq.connect(d.url) as c:
                    self.assertEqual(await c.ping(), "pong")
            finally:
                del os.environ["ASYNCQ_TOKEN"]
        finally:
            d.stop()


class TestSync(unittest.TestCase):
    def test_facade(self) -> None:
        d = Daemon({"default": {"kind": "echo", "consumers": 2}})
        try:
            with asyncq.sync.connect(d.url, timeout=10) as q:
                r = q.put({"x": 1})
                res = q.put_many([{"args": {"i": i}} for i in range(20)], window=4)
                ids = [r["job"]] + [x["job"] for x in res]
                recs = q.wait(ids, timeout=20)
                self.assertEqual(recs[0]["result"], {"x": 1})
                self.assertEqual([x["result"]["i"] for x in recs[1:]], list(range(20)))
                self.assertEqual(q.status(ids[0])["state"], "done")
                self.assertEqual(q.join("default", timeout=20), {"queue": "default"})
                self.assertEqual(q.stats("default")["queues"]["default"]["done"], 21)
                with self.assertRaises(asyncq.NoSuchJob):
                    q.status(10 ** 9)
            q2 = asyncq.SyncClient(d.url)
            self.assertEqual(q2.call("ping"), "pong")
            q2.close()
            q2.close()  # twice is fine
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
