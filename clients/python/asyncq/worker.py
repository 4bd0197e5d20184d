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
import signal
import time
import traceback
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

    __slots__ = ("job", "task", "lease", "why_cancelled", "timer")

    def __init__(self, job: Job, lease: Optional[float]) -> None:
        self.job = job
        self.task: Optional["asyncio.Task[None]"] = None
        self.lease = lease  # its length in s, None if it never runs out
        self.timer: Optional[asyncio.TimerHandle] = None
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
        self._slot_event: Optional[asyncio.Event] = None
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
        self._slot_event = asyncio.Event()
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
            late: Optional["asyncio.Future[List[Dict[str, Any]]]"] = None
            try:
                late = await self._take_loop(client)
            finally:
                await self._finish(client, late)
                client.remove_listener("job.cancel", self._on_cancel)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if own and self.client is not None:
                await self.client.close()
                self.client = None

    async def _take_loop(
        self, client: Client
    ) -> Optional["asyncio.Future[List[Dict[str, Any]]]"]:
        """Gets jobs while not stopping; returns a get still waiting."""
        assert self._stop_event is not None and self._slot_event is not None
        stopping = asyncio.ensure_future(self._stop_event.wait())
        empty_in_a_row = 0
        try:
            while not self._stop_event.is_set():
                free = self.concurrency - len(self._held)
                if self.limit is not None:
                    if self.taken >= self.limit:
                        self.stop()
                        break
                    free = min(free, self.limit - self.taken)
                if free <= 0:
                    self._slot_event.clear()
                    slot = asyncio.ensure_future(self._slot_event.wait())
                    await asyncio.wait({slot, stopping},
                                       return_when=asyncio.FIRST_COMPLETED)
                    slot.cancel()
                    continue
                asked = time.monotonic()
                getting = asyncio.ensure_future(client.get(
                    self.queues, max=free, wait=self.poll, lease=self.lease))
                await asyncio.wait({getting, stopping},
                                   return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    return getting
                jobs = getting.result()
                for raw in jobs:
                    self._start(client, raw)
                if jobs or time.monotonic() - asked >= self.poll / 2:
                    empty_in_a_row = 0
                    continue
                # [] long before the poll ran out: the server is stopping
                # (it answers every get [] at once then).  Do not spin.
                empty_in_a_row += 1
                await asyncio.wait(
                    {stopping}, timeout=min(0.01 * 2 ** empty_in_a_row, 1.0))
            return None
        finally:
            stopping.cancel()

    def _start(self, client: Client, raw: Dict[str, Any]) -> None:
        job = Job(raw)
        self.taken += 1
        lease = self.lease
        if lease is None and job.lease_deadline is not None:
            lease = max(job.lease_deadline - time.time(), 0.1)
        held = _Held(job, lease)
        self._held[job.id] = held
        held.task = asyncio.ensure_future(self._run_one(client, held))

    def _on_cancel(self, params: Dict[str, Any]) -> None:
        held = self._held.get(params.get("job"))  # type: ignore[arg-type]
        if held is not None and held.task is not None and held.why_cancelled is None:
            held.why_cancelled = "cancel"
            held.task.cancel()

    def _schedule_touch(self, client: Client, held: _Held) -> None:
        """Arms the timer touching the lease at a third of its length (a
        timer, not a task per job: most handlers end before it fires)."""
        assert held.lease is not None
        held.timer = asyncio.get_running_loop().call_later(
            max(held.lease / 3, 0.02),
            lambda: asyncio.ensure_future(self._touch(client, held)))

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
            if not held.task.done() and held.why_cancelled is None:
                self._schedule_touch(client, held)
            return
        if held.why_cancelled is None and not held.task.done():
            held.why_cancelled = why
            held.task.cancel()

    async def _run_one(self, client: Client, held: _Held) -> None:
        job = held.job
        if held.lease is not None:
            self._schedule_touch(client, held)
        try:
            handler = self._handlers.get(job.name, self._handlers.get(None))
            error: Optional[Dict[str, Any]] = None
            retry: Optional[bool] = None
            result: Any = None
            try:
                if handler is None:
                    raise LookupError("no handler for job name %r" % job.name)
                value = handler(job)
                result = await value if inspect.isawaitable(value) else value
            except asyncio.CancelledError:
                if held.why_cancelled == "cancel":
                    self.cancelled += 1
                if held.why_cancelled is not None:
                    return  # nothing to send: cancelled, lost, or released
                raise
            except Exception as e:
                error, retry = _error_of(e, handler is None)
            if held.timer is not None:
                held.timer.cancel()
            try:
                try:
                    await client.task_done(job.id, result, error=error, retry=retry)
                except (TypeError, ValueError) as e:  # result is not JSON
                    error = {"code": "exception",
                             "message": "result is not JSON: %s" % e}
                    await client.task_done(job.id, error=error, retry=retry)
                if error is None:
                    self.done += 1
                else:
                    self.failed += 1
            except AlreadyFinished:
                self.cancelled += 1  # cancelled as it finished
            except (NotYourLease, NoSuchJob) as e:
                log.warning("asyncq: job %d: task_done refused: %s", job.id, e)
            except TransportError:
                pass
        finally:
            if held.timer is not None:
                held.timer.cancel()
            self._held.pop(job.id, None)
            if self._slot_event is not None:
                self._slot_event.set()

    async def _finish(
        self,
        client: Client,
        late: Optional["asyncio.Future[List[Dict[str, Any]]]"],
    ) -> None:
        """Lets handlers finish within the grace, releases the rest."""
        assert self._hurry_event is not None
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
        if late is not None and late.done() and not late.cancelled() \
                and late.exception() is None:
            to_release.extend(raw["job"] for raw in late.result())
        elif late is not None and self._server is client and not client.closed:
            # A shared connection stays open, and so does the get: release
            # whatever it leases when it is answered.
            def release_late(fut: "asyncio.Future[List[Dict[str, Any]]]") -> None:
                if fut.cancelled() or fut.exception() is not None:
                    return
                for raw in fut.result():
                    asyncio.ensure_future(_quiet(client.release(raw["job"])))

            late.add_done_callback(release_late)
        elif late is not None:
            late.cancel()  # the connection closes: the daemon drops the get
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
