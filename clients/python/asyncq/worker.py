# SPDX-License-Identifier: MIT
"""The worker: runs async handlers on the jobs of remote queues (SPEC §10).

A :class:`Worker` long-polls ``get`` for as many jobs as it has free slots,
runs each job's handler (chosen by the job's ``name``), renews the job's
lease with ``touch`` while the handler runs, and ends the attempt with
``task_done``: the handler's return value is the result, an exception the
error.  A ``job.cancel`` notification cancels that handler.  :meth:`stop`
(or SIGTERM/SIGINT with ``run(handle_signals=True)``) takes no new job,
lets running handlers finish within ``grace`` seconds, then releases what
is still held (the attempt not counted) and closes.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import signal
import sys
import time
import traceback
import types
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from .client import Client, connect
from .errors import (
    AlreadyFinished,
    Error,
    NoSuchJob,
    NotYourLease,
    TransportError,
)

__all__ = ["Job", "Worker", "Handler"]

log = logging.getLogger("asyncq.worker")

# The server keeps at most this much of a traceback (PROTO14: ≤ 64 KiB).
MAX_TRACEBACK = 64 * 1024
# Gets in flight at once: while the worker runs one batch the daemon
# prepares the next, so the pipe never runs dry.
GETS_IN_FLIGHT = 2
# Python 3.12 runs a task's first step at once (no loop turn, no
# scheduling) when asked: a handler that never awaits costs no more.
_EAGER = sys.version_info >= (3, 12)
_Coroutine = types.CoroutineType


class Job:
    """A leased job as a handler sees it."""

    __slots__ = ("id", "queue", "name", "args", "attempts", "lease_deadline", "raw")

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.raw = raw
        self.id: int = raw["job"]
        self.queue: str = raw.get("queue", "")
        self.name: Optional[str] = raw.get("name")
        self.args: Dict[str, Any] = raw.get("args") or {}
        self.attempts: int = raw.get("attempts", 0)
        self.lease_deadline: Optional[float] = raw.get("lease_deadline")

    def __repr__(self) -> str:
        return "Job(id=%d, queue=%r, name=%r, attempts=%d)" % (
            self.id, self.queue, self.name, self.attempts)


Handler = Callable[[Job], Awaitable[Any]]


class _Held:
    """A job this worker holds the lease of, and the task running it."""

    __slots__ = ("job", "task", "lease", "why_cancelled", "renew_at")

    def __init__(self, job: Job, lease: Optional[float]) -> None:
        self.job = job
        self.task: Optional["asyncio.Task[None]"] = None
        self.lease = lease  # its length in s, None if it never runs out
        # loop.time() to touch the lease at; None: no touch due (no lease,
        # or a touch in flight).
        self.renew_at: Optional[float] = None
        # Why we cancelled its handler: "cancel" (job.cancel), "lost" (the
        # lease is no longer ours), "stop" (grace over: release it).
        self.why_cancelled: Optional[str] = None


class Worker:
    """Runs handlers on jobs taken from remote queues.

    ``server`` is a URL (the worker connects, with ``token``, ``cafile``,
    ``certfile``, ``keyfile`` as :func:`asyncq.connect` takes them, and
    closes at the end) or a connected :class:`Client` (left open).
    ``queues``: a queue name or names in order of preference.
    ``concurrency``: handlers running at once.  ``lease``: lease length
    asked for at ``get`` and ``touch`` (default: the job's timeout).
    ``poll``: seconds a ``get`` waits for a job.  ``grace``: seconds
    :meth:`stop` lets running handlers finish before releasing their jobs.
    ``limit``: take at most that many jobs, then stop (benchmarks, tests).
    """

    def __init__(
        self,
        server: Union[str, Client, None] = None,
        queues: Union[str, Sequence[str]] = "default",
        concurrency: int = 1,
        *,
        lease: Optional[float] = None,
        poll: float = 30.0,
        grace: float = 10.0,
        token: Optional[str] = None,
        cafile: Optional[str] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("asyncq: Worker: concurrency must be >= 1")
        self._server = server
        self.queues: List[str] = [queues] if isinstance(queues, str) else list(queues)
        if not self.queues:
            raise ValueError("asyncq: Worker: no queue")
        self.concurrency = concurrency
        self.lease = lease
        self.poll = poll
        self.grace = grace
        self.limit = limit
        self.taken = 0
        self._connect_kw: Dict[str, Any] = {
            "token": token, "cafile": cafile, "certfile": certfile,
            "keyfile": keyfile}
        self._handlers: Dict[Optional[str], Handler] = {}
        self._held: Dict[int, _Held] = {}
        self._stop_requested = 0
        self._stop_event: Optional[asyncio.Event] = None
        self._hurry_event: Optional[asyncio.Event] = None
        # The gets in flight and the jobs they may lease (their max).
        self._gets: Dict["asyncio.Future[Any]", int] = {}
        self._asked = 0
        self._refill_armed = False
        self._retry_timer: Optional[asyncio.TimerHandle] = None
        self._empty_in_a_row = 0
        self._failure: Optional[BaseException] = None
        # Jobs leased by a get answered once stopping: released at the end.
        self._late_jobs: List[int] = []
        self._finished = False
        # The one timer touching leases: fires at the earliest renew_at.
        self._sweep: Optional[asyncio.TimerHandle] = None
        self._sweep_at = math.inf
        self.client: Optional[Client] = server if isinstance(server, Client) else None
        # Counters: attempts ended by task_done, handlers cancelled by the
        # server, jobs released at stop.
        self.done = 0
        self.failed = 0
        self.cancelled = 0
        self.released = 0

    # ---- handlers ----

    def handler(self, name: Optional[str] = None) -> Callable[[Handler], Handler]:
        """Decorator registering ``async def f(job)`` for jobs put with
        ``name``; without a name, the default for every other job."""

        def register(fn: Handler) -> Handler:
            self.add_handler(name, fn)
            return fn

        return register

    def add_handler(self, name: Optional[str], fn: Handler) -> None:
        """Registers ``fn`` for jobs named ``name`` (None: the default)."""
        self._handlers[name] = fn

    # ---- lifecycle ----

    @property
    def running(self) -> int:
        """The number of jobs held now."""
        return len(self._held)

    def stop(self) -> None:
        """Takes no new job; running handlers get ``grace`` s to finish,
        then their jobs are released.  A second call ends the grace now."""
        self._stop_requested += 1
        if self._stop_event is not None:
            self._stop_event.set()
            if self._stop_requested > 1 and self._hurry_event is not None:
                self._hurry_event.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Takes and runs jobs until :meth:`stop` (or SIGTERM/SIGINT with
        ``handle_signals``).  Raises ConnectionError if the connection is
        lost (held jobs are then the server's: their attempts fail with
        ``worker_lost``)."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._hurry_event = asyncio.Event()
        self._failure = None
        self._finished = False
        self._late_jobs = []
        if self._stop_requested:
            self._stop_event.set()
        signals: List[int] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
                signals.append(sig)
        own = self.client is None
        try:
            if self.client is None:
                url = self._server if isinstance(self._server, str) else None
                self.client = await connect(url, **self._connect_kw)
            client = self.client
            client.add_listener("job.cancel", self._on_cancel)
            try:
                self._refill()
                await self._stop_event.wait()
            finally:
                await self._finish(client)
                client.remove_listener("job.cancel", self._on_cancel)
            if self._failure is not None:
                raise self._failure
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if own and self.client is not None:
                await self.client.close()
                self.client = None

    # ---- taking jobs: gets in flight, answered by callbacks ----

    def _arm_refill(self) -> None:
        if not self._refill_armed:
            self._refill_armed = True
            asyncio.get_running_loop().call_soon(self._refill)

    def _refill(self) -> None:
        """Sends gets for the free slots: up to GETS_IN_FLIGHT of them,
        each for at most concurrency / GETS_IN_FLIGHT jobs."""
        self._refill_armed = False
        client = self.client
        if self._stop_event is None or self._stop_event.is_set() \
                or self._retry_timer is not None or client is None:
            return
        chunk = max(1, -(-self.concurrency // GETS_IN_FLIGHT))
        while len(self._gets) < GETS_IN_FLIGHT:
            free = self.concurrency - len(self._held) - self._asked
            if self.limit is not None:
                free = min(free, self.limit - self.taken - self._asked)
            if free <= 0:
                return
            n = min(free, chunk)
            params: Dict[str, Any] = {"queue": self.queues, "max": n,
                                      "wait": self.poll}
            if self.lease is not None:
                params["lease"] = self.lease
            try:
                fut = client._send_nowait("get", params)
            except TransportError as e:
                self._fail(e)
                return
            self._gets[fut] = n
            self._asked += n
            asked = asyncio.get_running_loop().time()
            fut.add_done_callback(lambda f, asked=asked: self._got(f, asked))

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._stop_event is not None:
            self._stop_event.set()

    def _got(self, fut: "asyncio.Future[Any]", asked: float) -> None:
        """A get's answer: starts its jobs and asks for more."""
        self._asked -= self._gets.pop(fut, 0)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            assert self._stop_event is not None
            if not self._stop_event.is_set():
                self._fail(exc)  # run() raises it
            return
        jobs: List[Dict[str, Any]] = fut.result()
        client = self.client
        assert self._stop_event is not None
        if self._stop_event.is_set() or client is None:
            # Stopping: these jobs are not run but given back.
            ids = [raw["job"] for raw in jobs]
            if not self._finished:
                self._late_jobs.extend(ids)
            elif client is not None and not client.closed:
                for j in ids:
                    asyncio.ensure_future(_quiet(client.release(j)))
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if jobs:
            self._empty_in_a_row = 0
            wall = time.time()
            for raw in jobs:
                self._start(loop, client, raw, now, wall)
            if self.limit is not None and self.taken >= self.limit:
                self.stop()
                return
        elif now - asked < self.poll / 2:
            # [] long before the poll ran out: the server is stopping (it
            # answers every get [] at once then).  Do not spin.
            self._empty_in_a_row += 1
            if self._retry_timer is None:
                self._retry_timer = loop.call_later(
                    min(0.01 * 2 ** self._empty_in_a_row, 1.0), self._retry)
            return
        else:
            self._empty_in_a_row = 0
        self._refill()

    def _retry(self) -> None:
        self._retry_timer = None
        self._refill()

    def _start(self, loop: asyncio.AbstractEventLoop, client: Client,
               raw: Dict[str, Any], now: float, wall: float) -> None:
        """Runs a job leased at ``now`` (loop.time()), ``wall`` (time.time())."""
        job = Job(raw)
        self.taken += 1
        lease = self.lease
        if lease is None and job.lease_deadline is not None:
            lease = max(job.lease_deadline - wall, 0.1)
        held = _Held(job, lease)
        self._held[job.id] = held
        if lease is not None:
            held.renew_at = at = now + max(lease / 3, 0.02)
            if at < self._sweep_at:
                self._arm_sweep(at)
        if _EAGER:
            held.task = asyncio.Task(  # type: ignore[call-arg]
                self._run_one(client, held), loop=loop, eager_start=True)
        else:
            held.task = loop.create_task(self._run_one(client, held))

    def _on_cancel(self, params: Dict[str, Any]) -> None:
        held = self._held.get(params.get("job"))  # type: ignore[arg-type]
        if held is not None and held.task is not None and held.why_cancelled is None:
            held.why_cancelled = "cancel"
            held.task.cancel()

    # ---- leases: one timer touches those a third of whose length passed ----

    def _arm_sweep(self, at: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = at
        self._sweep = asyncio.get_running_loop().call_at(at, self._sweep_leases)

    def _sweep_leases(self) -> None:
        self._sweep = None
        self._sweep_at = math.inf
        client = self.client
        now = asyncio.get_running_loop().time()
        nxt = math.inf
        for held in self._held.values():
            at = held.renew_at
            if at is None:
                continue
            if at <= now:
                held.renew_at = None  # a touch in flight
                if client is not None:
                    asyncio.ensure_future(self._touch(client, held))
            elif at < nxt:
                nxt = at
        if nxt < math.inf:
            self._arm_sweep(nxt)

    async def _touch(self, client: Client, held: _Held) -> None:
        """Renews the lease while the handler runs; cancels the handler if
        the lease is no longer ours."""
        if held.task is None or held.task.done() or held.why_cancelled:
            return
        try:
            await client.touch(held.job.id, lease=self.lease)
        except AlreadyFinished:
            why = "cancel"
        except (NotYourLease, NoSuchJob) as e:
            log.warning("asyncq: job %d: lease lost: %s", held.job.id, e)
            why = "lost"
        except (Error, TransportError):
            return
        else:
            if not held.task.done() and held.why_cancelled is None \
                    and held.lease is not None:
                held.renew_at = at = asyncio.get_running_loop().time() \
                    + max(held.lease / 3, 0.02)
                if at < self._sweep_at:
                    self._arm_sweep(at)
            return
        if held.why_cancelled is None and not held.task.done():
            held.why_cancelled = why
            held.task.cancel()

    # ---- running one job ----

    async def _run_one(self, client: Client, held: _Held) -> None:
        job = held.job
        try:
            handler = self._handlers.get(job.name, self._handlers.get(None))
            error: Optional[Dict[str, Any]] = None
            retry: Optional[bool] = None
            result: Any = None
            try:
                if handler is None:
                    raise LookupError("no handler for job name %r" % job.name)
                value = handler(job)
                if type(value) is _Coroutine or inspect.isawaitable(value):
                    result = await value
                else:
                    result = value
            except asyncio.CancelledError:
                if held.why_cancelled == "cancel":
                    self.cancelled += 1
                if held.why_cancelled is not None:
                    return  # nothing to send: cancelled, lost, or released
                raise
            except Exception as e:
                error, retry = _error_of(e, handler is None)
            held.renew_at = None
            # Armed before task_done is queued, the refill's get goes out
            # in the same write as the task_dones of this loop turn.
            self._arm_refill()
            # A notification: no reply to wait for or parse.  The daemon
            # drops a task_done that comes too late (the job cancelled or
            # its lease lost meanwhile).
            try:
                try:
                    client._task_done_nowait(job.id, result, error, retry)
                except (TypeError, ValueError) as e:  # result is not JSON
                    error = {"code": "exception",
                             "message": "result is not JSON: %s" % e}
                    client._task_done_nowait(job.id, None, error, retry)
                if error is None:
                    self.done += 1
                else:
                    self.failed += 1
            except TransportError:
                pass
        finally:
            self._held.pop(job.id, None)
            self._arm_refill()

    async def _finish(self, client: Client) -> None:
        """Lets handlers finish within the grace, releases the rest."""
        assert self._hurry_event is not None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        tasks: Set["asyncio.Task[None]"] = {
            h.task for h in self._held.values() if h.task is not None}
        if client.closed:  # the leases are lost with the connection
            for held in self._held.values():
                if held.task is not None and held.why_cancelled is None:
                    held.why_cancelled = "lost"
                    held.task.cancel()
        elif tasks:
            all_done = asyncio.ensure_future(asyncio.wait(tasks))
            hurry = asyncio.ensure_future(self._hurry_event.wait())
            await asyncio.wait({all_done, hurry}, timeout=self.grace,
                               return_when=asyncio.FIRST_COMPLETED)
            all_done.cancel()
            hurry.cancel()
        to_release: List[int] = []
        for held in list(self._held.values()):
            if held.task is not None and not held.task.done():
                held.why_cancelled = "stop"
                held.task.cancel()
                to_release.append(held.job.id)
        if tasks:
            await asyncio.wait(tasks, timeout=max(self.grace, 1.0))
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
            self._sweep_at = math.inf
        self._finished = True
        to_release.extend(self._late_jobs)
        self._late_jobs = []
        if self._server is not client or client.closed:
            # The connection closes: the daemon drops the gets still
            # waiting (a job one leases meanwhile fails as worker_lost).
            for fut in list(self._gets):
                fut.cancel()
        # On a shared connection that stays open the gets stay too: _got
        # releases whatever they lease when they are answered.
        if not client.closed:
            replies = await asyncio.gather(
                *(client.release(j) for j in to_release), return_exceptions=True)
            self.released += sum(1 for r in replies if not isinstance(r, BaseException))
        self._held.clear()

async def _quiet(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except (Error, TransportError):
        pass


def _error_of(e: BaseException, no_handler: bool) -> Tuple[Dict[str, Any], Optional[bool]]:
    """The task_done error of a handler's exception: code "exception" (or
    the exception's string ``code`` attribute), message, traceback."""
    code = getattr(e, "code", None)
    if no_handler:
        code = "no_handler"
    elif not isinstance(code, str) or not code:
        code = "exception"
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    raw = tb.encode("utf-8")
    if len(raw) > MAX_TRACEBACK:  # keep the end, where the error is
        tb = raw[-(MAX_TRACEBACK - 4):].decode("utf-8", "ignore")
        tb = "...\n" + tb
    message = str(e) or type(e).__name__
    retry = getattr(e, "retry", None)
    return ({"code": code, "message": message, "traceback": tb},
            retry if isinstance(retry, bool) else None)
