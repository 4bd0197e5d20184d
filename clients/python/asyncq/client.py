# SPDX-License-Identifier: MIT
"""The asyncio client: one connection, requests pipelined and matched by id.

Every method is a coroutine sending one JSON-RPC request (docs/protocol.md);
replies may come in any order and are matched by ``id``.  Server
notifications (``job.done`` for :meth:`Client.as_completed`, ``job.cancel``
for a :class:`~asyncq.Worker`) are dispatched to listeners.
"""
from __future__ import annotations

import asyncio
import json
import os
import ssl
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from .errors import ConnectionClosed, Error, ProtocolError, TransportError, error_for

__all__ = ["Client", "connect", "parse_url", "DEFAULT_URL"]

DEFAULT_URL = "tcp://127.0.0.1:7878"
DEFAULT_PORT = 7878
# A reply is one line; a `wait` on 100,000 jobs is one long line.
DEFAULT_MAX_LINE = 256 * 1024 * 1024

# asyncio's default high-water mark of a transport's send buffer.
_WRITE_HIGH = 64 * 1024

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)

# The start of a task_done notification, up to the job's id.
_TASK_DONE = b'{"jsonrpc":"2.0","method":"task_done","params":{"job":'

JSON = Any
Params = Dict[str, Any]
Listener = Callable[[Params], None]
QueueArg = Union[str, Sequence[str]]


def parse_url(url: str) -> Tuple[str, str, int]:
    """Splits a server URL into ``(scheme, host_or_path, port)``.

    ``tcp://HOST:PORT``, ``HOST:PORT``, ``tls://HOST:PORT`` and
    ``unix:/PATH`` (scheme ``unix``, port 0); an IPv6 host is written in
    brackets, ``tcp://[::1]:7878``.  A missing port is 7878.
    """
    if url.startswith("unix:"):
        path = url[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError("asyncq: %s: expected unix:/ABSOLUTE/PATH" % url)
        return "unix", path, 0
    scheme = "tcp"
    rest = url
    if "://" in url:
        scheme, rest = url.split("://", 1)
        if scheme not in ("tcp", "tls"):
            raise ValueError(
                "asyncq: %s: expected tcp://, tls:// or unix: URL" % url
            )
    rest = rest.rstrip("/")
    port = DEFAULT_PORT
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError("asyncq: %s: unterminated [ in host" % url)
        host = rest[1:end]
        tail = rest[end + 1:]
        if tail:
            if not tail.startswith(":"):
                raise ValueError("asyncq: %s: expected :PORT after ]" % url)
            port = _port(url, tail[1:])
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = _port(url, p)
    else:
        host = rest
    if not host:
        raise ValueError("asyncq: %s: no host" % url)
    return scheme, host, port


def _port(url: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("asyncq: %s: port %r is not 1-65535" % (url, text))
    return int(text)


def _ssl_context(
    cafile: Optional[str], certfile: Optional[str], keyfile: Optional[str]
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    elif keyfile is not None:
        raise ValueError("asyncq: keyfile given without certfile")
    return ctx


def _drop_none(params: Params) -> Params:
    return {k: v for k, v in params.items() if v is not None}


class Client:
    """One connection to asyncqd.  Create it with :func:`connect`.

    Requests are pipelined: any number of coroutines may call methods at
    once, each awaits its own reply.  ``async with`` closes the connection.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        url: str,
    ) -> None:
        self.url = url
        self._reader = reader
        self._writer = writer
        self._next_id = 1
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._listeners: Dict[str, List[Listener]] = {}
        self._close_listeners: List[Callable[[BaseException], None]] = []
        self._drain_lock = asyncio.Lock()
        self._wbuf: List[bytes] = []
        self._wbuf_len = 0
        self._flush_armed = False
        self._closed: Optional[BaseException] = None
        self._closing = False
        self._read_task = asyncio.ensure_future(self._read_loop())

    # ---- connection ----

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self._closed is not None or self._closing

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; calls still waiting raise ConnectionClosed."""
        if self._closing:
            await asyncio.gather(self._read_task, return_exceptions=True)
            return
        self._closing = True
        try:
            self._flush()
            self._writer.close()
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass
        self._read_task.cancel()
        await asyncio.gather(self._read_task, return_exceptions=True)
        self._fail_all(ConnectionClosed("asyncq: %s: connection closed" % self.url))

    def add_listener(self, method: str, fn: Listener) -> None:
        """Calls ``fn(params)`` for each server notification ``method``."""
        self._listeners.setdefault(method, []).append(fn)

    def remove_listener(self, method: str, fn: Listener) -> None:
        """Undoes :meth:`add_listener`."""
        fns = self._listeners.get(method, [])
        if fn in fns:
            fns.remove(fn)

    def add_close_listener(self, fn: Callable[[BaseException], None]) -> None:
        """Calls ``fn(exc)`` once the connection is closed or lost."""
        self._close_listeners.append(fn)

    def _fail_all(self, exc: BaseException) -> None:
        first = self._closed is None
        if first:
            self._closed = exc
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
        if first:
            for fn in list(self._close_listeners):
                fn(exc)

    async def _read_loop(self) -> None:
        exc: BaseException
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    raise ProtocolError(
                        "asyncq: %s: reply line longer than the limit" % self.url
                    )
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError as e:
                    raise ProtocolError(
                        "asyncq: %s: reply is not JSON: %s" % (self.url, e)
                    )
                if isinstance(msg, list):  # a batch reply: not sent by us
                    for m in msg:
                        self._dispatch(m)
                else:
                    self._dispatch(msg)
            exc = ConnectionClosed(
                "asyncq: %s: connection closed by the server" % self.url
            )
        except asyncio.CancelledError:
            exc = ConnectionClosed("asyncq: %s: connection closed" % self.url)
        except (OSError, ssl.SSLError) as e:
            exc = ConnectionClosed("asyncq: %s: %s" % (self.url, e))
        except ProtocolError as e:
            exc = e
        self._fail_all(exc)
        if not self._closing:
            self._writer.close()

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise ProtocolError("asyncq: %s: reply is not an object" % self.url)
        if "method" in msg and "id" not in msg:
            params = msg.get("params")
            for fn in list(self._listeners.get(msg["method"], [])):
                fn(params if isinstance(params, dict) else {})
            return
        fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if fut is None or fut.done():
            return  # an id we did not send, or a call cancelled meanwhile
        err = msg.get("error")
        if err is not None:
            if not isinstance(err, dict):
                fut.set_exception(ProtocolError("asyncq: bad error object"))
                return
            fut.set_exception(
                error_for(
                    int(err.get("code", 0)),
                    str(err.get("message", "")),
                    err.get("data"),
                )
            )
        else:
            fut.set_result(msg.get("result"))

    # ---- requests ----

    def _check_open(self) -> None:
        if self._closed is not None:
            raise ConnectionClosed(str(self._closed))
        if self._closing:
            raise ConnectionClosed("asyncq: %s: connection closed" % self.url)

    async def send(
        self, method: str, params: Optional[Params] = None
    ) -> "asyncio.Future[Any]":
        """Sends a request and returns the future of its reply.

        It returns once the request is written to the socket buffer and
        that buffer has drained below its high-water mark, so a server that
        stops reading (back-pressure) stops the caller here.
        """
        self._check_open()
        rid = self._next_id
        self._next_id += 1
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params:
            msg["params"] = params
        data = _ENCODER.encode(msg).encode("utf-8") + b"\n"
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._write(data)
            await self._drain()
        except (OSError, ssl.SSLError) as e:
            self._pending.pop(rid, None)
            raise ConnectionClosed("asyncq: %s: %s" % (self.url, e)) from e
        except BaseException:
            self._pending.pop(rid, None)
            raise
        return fut

    async def call(self, method: str, params: Optional[Params] = None) -> Any:
        """Sends a request and returns its result (raises :class:`Error`)."""
        fut = await self.send(method, params)
        try:
            return await fut
        except asyncio.CancelledError:
            # The reply, when it comes, is dropped.
            fut.cancel()
            raise

    async def notify(self, method: str, params: Optional[Params] = None) -> None:
        """Sends a notification: executed by the server, never answered."""
        self._check_open()
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = params
        self._write(_ENCODER.encode(msg).encode("utf-8") + b"\n")
        await self._drain()

    def _send_nowait(
        self, method: str, params: Optional[Params] = None
    ) -> "asyncio.Future[Any]":
        """Queues a request without waiting for the send buffer to drain
        and returns the future of its reply (the Worker's gets: bounded by
        its concurrency, so no back-pressure is needed)."""
        self._check_open()
        rid = self._next_id
        self._next_id += 1
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params:
            msg["params"] = params
        data = _ENCODER.encode(msg).encode("utf-8") + b"\n"
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._write(data)
        return fut

    def _task_done_nowait(
        self,
        job: int,
        result: Any = None,
        error: Optional[Dict[str, Any]] = None,
        retry: Optional[bool] = None,
    ) -> None:
        """Queues ``task_done`` as a notification: the daemon executes it
        and sends no reply (the Worker's path: nothing to parse, no
        future).  Raises TypeError or ValueError when ``result`` or
        ``error`` is not JSON, before anything is queued."""
        self._check_open()
        if error is not None:
            tail = b',"error":' + _ENCODER.encode(error).encode("utf-8")
        elif result is None:
            tail = b',"result":null'
        else:
            tail = b',"result":' + _ENCODER.encode(result).encode("utf-8")
        if retry is not None:
            tail += b',"retry":true' if retry else b',"retry":false'
        jid = str(job).encode() if type(job) is int \
            else _ENCODER.encode(job).encode("utf-8")
        self._write(_TASK_DONE + jid + tail + b"}}\n")

    def _write(self, data: bytes) -> None:
        """Queues a line; the lines of one loop iteration go out in one
        write (pipelined calls, a worker's task_done replies)."""
        self._wbuf.append(data)
        self._wbuf_len += len(data)
        if not self._flush_armed:
            self._flush_armed = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_armed = False
        if self._wbuf and self._closed is None:
            data = b"".join(self._wbuf)
            self._wbuf.clear()
            self._wbuf_len = 0
            self._writer.write(data)

    async def _drain(self) -> None:
        """Waits while the socket's send buffer is over its high-water mark
        (the server is not reading: back-pressure)."""
        transport = self._writer.transport
        try:
            if not transport.is_closing() and \
                    transport.get_write_buffer_size() + self._wbuf_len <= _WRITE_HIGH:
                return
        except AttributeError:  # an SSL transport whose connection is lost
            pass
        self._flush()
        # One drain at a time: asyncio before 3.10 allows one waiter.
        async with self._drain_lock:
            await self._writer.drain()

    # ---- producer methods ----

    async def put(
        self,
        args: Optional[Dict[str, Any]] = None,
        *,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        name: Optional[str] = None,
        priority: Optional[int] = None,
        delay: Optional[float] = None,
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
        key: Optional[str] = None,
        at: Union[float, str, None] = None,
        after: Optional[Sequence[int]] = None,
        after_policy: Optional[str] = None,
        batch: Optional[str] = None,
        wait: bool = False,
        nowait: bool = False,
        **extra: Any,
    ) -> Dict[str, Any]:
        """Puts one job: ``{"job":ID,"state":...}``, or its finished record
        with ``wait=True``.  A full queue makes it wait for room (the server
        stops reading this connection), or raise QueueFull with ``nowait``.
        ``at`` (epoch seconds or an RFC 3339 string, not with ``delay``)
        runs it then; ``after`` (job ids) keeps it ``waiting`` until they
        have finished (``after_policy`` ``"done"`` or ``"finished"``);
        ``batch`` labels it (SPEC §11).  ``extra`` params are sent as given
        (for params of later versions).
        """
        return await self.call("put", _put_params(
            args, queue=queue, kind=kind, name=name, priority=priority,
            delay=delay, timeout=timeout, retries=retries, key=key, at=at,
            after=None if after is None else list(after),
            after_policy=after_policy, batch=batch, wait=wait, nowait=nowait,
            extra=extra))

    async def put_many(
        self,
        jobs: Union[Iterable[Dict[str, Any]], AsyncIterable[Dict[str, Any]]],
        *,
        window: int = 256,
        return_exceptions: bool = False,
        **defaults: Any,
    ) -> List[Any]:
        """Puts many jobs, pipelined, and returns their results in order.

        Each job is a dict of put params (``{"args": {...}, "name": ...}``);
        ``defaults`` (``queue=``, ``kind=``, ``name=``...) fill what a job
        does not set.  At most ``window`` puts are unanswered at once, and
        sending waits while the server does not read (a full queue), so
        memory stays bounded by the window whatever the number of jobs.
        A put that fails raises its error once the puts in flight are
        answered, and no further job is sent; with ``return_exceptions``
        the error takes the job's place in the list instead.
        """
        if window < 1:
            raise ValueError("asyncq: put_many: window must be >= 1")
        results: List[Any] = []
        slots = asyncio.Semaphore(window)
        inflight: Set["asyncio.Future[Any]"] = set()
        failure: List[BaseException] = []

        def settle(i: int, fut: "asyncio.Future[Any]") -> None:
            slots.release()
            inflight.discard(fut)
            if fut.cancelled():
                results[i] = ConnectionClosed("asyncq: put cancelled")
            elif fut.exception() is not None:
                exc = fut.exception()
                results[i] = exc
                if not failure and (
                    not return_exceptions or not isinstance(exc, Error)
                ):
                    failure.append(exc)  # type: ignore[arg-type]
            else:
                results[i] = fut.result()

        async def each() -> AsyncIterator[Dict[str, Any]]:
            if hasattr(jobs, "__aiter__"):
                async for j in jobs:  # type: ignore[union-attr]
                    yield j
            else:
                for j in jobs:  # type: ignore[union-attr]
                    yield j

        try:
            async for job in each():
                await slots.acquire()
                if failure:
                    slots.release()
                    break
                params = dict(defaults)
                params.update(job)
                results.append(None)
                try:
                    fut = await self.send("put", _put_params(
                        params.pop("args", None), extra=params))
                except BaseException:
                    slots.release()
                    results.pop()
                    raise
                inflight.add(fut)
                i = len(results) - 1
                fut.add_done_callback(lambda f, i=i: settle(i, f))
            if inflight:
                await asyncio.wait(set(inflight))
        except BaseException:
            for fut in list(inflight):
                fut.cancel()
            raise
        if failure:
            raise failure[0]
        return results

    async def status(self, job: int) -> Dict[str, Any]:
        """The job's record."""
        return await self.call("status", {"job": job})

    async def wait(
        self,
        jobs: Sequence[int],
        *,
        mode: str = "all",
        timeout: Optional[float] = None,
        cancel_on_timeout: bool = False,
    ) -> List[Dict[str, Any]]:
        """Waits for jobs to finish: their records (``mode`` ``all``, in the
        order given; ``any``: a list of the first finished one).  Raises
        :class:`~asyncq.Timeout` past ``timeout``."""
        return await self.call("wait", _drop_none({
            "jobs": list(jobs), "mode": mode, "timeout": timeout,
            "cancel_on_timeout": cancel_on_timeout or None}))

    def as_completed(
        self,
        jobs: Sequence[int],
        *,
        timeout: Optional[float] = None,
        cancel_on_timeout: bool = False,
    ) -> AsyncIterator[Dict[str, Any]]:
        """Yields each job's record as it finishes (``wait`` in ``stream``
        mode).  Raises :class:`~asyncq.Timeout` past ``timeout``."""
        return _AsCompleted(self, list(jobs), timeout, cancel_on_timeout)

    async def join(
        self,
        queue: Optional[str] = None,
        *,
        batch: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Returns once the queue (default: every queue), or the batch, has
        no unfinished job."""
        return await self.call("join", _drop_none(
            {"queue": queue, "batch": batch, "timeout": timeout}))

    async def cancel(
        self,
        job: Optional[int] = None,
        *,
        queue: Optional[str] = None,
        running: bool = False,
    ) -> Dict[str, Any]:
        """Cancels a job (``{"job","state"}``), or every waiting job of a
        queue, its running ones too with ``running`` (``{"cancelled":N}``)."""
        return await self.call("cancel", _drop_none(
            {"job": job, "queue": queue, "running": running or None}))

    async def list(
        self,
        queue: Optional[str] = None,
        *,
        state: Optional[Union[str, Sequence[str]]] = None,
        name: Optional[str] = None,
        batch: Optional[str] = None,
        after: Optional[int] = None,
        before: Optional[int] = None,
        limit: Optional[int] = None,
        order: Optional[str] = None,
    ) -> Dict[str, Any]:
        """One page of job records: ``{"jobs":[...],"next":ID or None}``."""
        if state is not None and not isinstance(state, str):
            state = [s for s in state]
        return await self.call("list", _drop_none({
            "queue": queue, "state": state, "name": name, "batch": batch,
            "after": after, "before": before, "limit": limit, "order": order}))

    async def iter_jobs(
        self,
        queue: Optional[str] = None,
        *,
        state: Optional[Union[str, Sequence[str]]] = None,
        name: Optional[str] = None,
        batch: Optional[str] = None,
        limit: Optional[int] = None,
        order: Optional[str] = None,
    ) -> AsyncIterator[Dict[str, Any]]:
        """Every job record :meth:`list` matches, page after page."""
        cursor: Optional[int] = None
        desc = order == "desc"
        while True:
            page = await self.list(
                queue, state=state, name=name, batch=batch, limit=limit,
                order=order, after=None if desc else cursor,
                before=cursor if desc else None)
            for rec in page["jobs"]:
                yield rec
            cursor = page.get("next")
            if cursor is None:
                return

    async def retry(
        self,
        job: Optional[int] = None,
        *,
        queue: Optional[str] = None,
        state: Optional[str] = None,
        delay: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Runs a finished job again, or every failed/cancelled one of a
        queue (``queue`` and ``state``)."""
        return await self.call("retry", _drop_none(
            {"job": job, "queue": queue, "state": state, "delay": delay}))

    async def delete(
        self,
        job: Optional[int] = None,
        *,
        queue: Optional[str] = None,
        state: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Drops a finished job's record, or those of a queue in a state."""
        return await self.call("delete", _drop_none(
            {"job": job, "queue": queue, "state": state}))

    async def stats(
        self, queue: Optional[str] = None, *, batch: Optional[str] = None
    ) -> Dict[str, Any]:
        """The daemon's counters (SPEC §5), of one queue or all; with
        ``batch``, that batch's jobs counted by state."""
        return await self.call("stats", _drop_none(
            {"queue": queue, "batch": batch}))

    async def schedules(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """The daemon's schedules (SPEC §11) with their next and last fire
        times, or the one named."""
        res = await self.call("schedules", _drop_none({"name": name}))
        return list(res["schedules"])

    async def pause(self, queue: str) -> Dict[str, Any]:
        """Stops the queue's consumers and workers taking jobs."""
        return await self.call("pause", {"queue": queue})

    async def resume(self, queue: str) -> Dict[str, Any]:
        """Undoes :meth:`pause`."""
        return await self.call("resume", {"queue": queue})

    async def scale(self, queue: str, consumers: int) -> Dict[str, Any]:
        """Sets the number of in-daemon consumers of a queue."""
        return await self.call("scale", {"queue": queue, "consumers": consumers})

    async def ping(self) -> str:
        """``"pong"``."""
        return await self.call("ping")

    async def auth(self, token: str) -> bool:
        """Sends the token (:func:`connect` does it when given one)."""
        return await self.call("auth", {"token": token})

    # ---- raw worker methods (SPEC §10; Worker uses them) ----

    async def get(
        self,
        queue: QueueArg,
        *,
        max: Optional[int] = None,
        wait: Optional[float] = None,
        lease: Optional[float] = None,
    ) -> List[Dict[str, Any]]:
        """Leases up to ``max`` jobs of remote queues, waiting up to
        ``wait`` s for one (``[]`` then)."""
        q: Any = queue if isinstance(queue, str) else [x for x in queue]
        return await self.call("get", _drop_none(
            {"queue": q, "max": max, "wait": wait, "lease": lease}))

    async def task_done(
        self,
        job: int,
        result: Any = None,
        *,
        error: Optional[Dict[str, Any]] = None,
        retry: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Ends a leased job's attempt with its ``result``, or with
        ``error`` ``{"code","message","traceback"?}``."""
        params: Dict[str, Any] = {"job": job}
        if error is not None:
            params["error"] = error
        else:
            params["result"] = result
        if retry is not None:
            params["retry"] = retry
        return await self.call("task_done", params)

    async def touch(self, job: int, *, lease: Optional[float] = None) -> Dict[str, Any]:
        """Renews a lease: it runs again from now."""
        return await self.call("touch", _drop_none({"job": job, "lease": lease}))

    async def release(self, job: int, *, delay: Optional[float] = None) -> Dict[str, Any]:
        """Gives a leased job back to its queue; the attempt is not counted."""
        return await self.call("release", _drop_none({"job": job, "delay": delay}))


def _put_params(
    args: Optional[Dict[str, Any]],
    *,
    extra: Dict[str, Any],
    **named: Any,
) -> Params:
    params: Params = {}
    if args is not None:
        params["args"] = args
    for k, v in list(named.items()) + list(extra.items()):
        if v is None or (k in ("wait", "nowait") and v is False):
            continue
        params[k] = v
    return params


class _AsCompleted:
    """The async iterator of :meth:`Client.as_completed`."""

    def __init__(
        self,
        client: Client,
        jobs: List[int],
        timeout: Optional[float],
        cancel_on_timeout: bool,
    ) -> None:
        self._client = client
        self._jobs = jobs
        self._want = set(jobs)
        self._seen: Set[int] = set()
        self._timeout = timeout
        self._cancel = cancel_on_timeout
        self._queue: "asyncio.Queue[Tuple[str, Any]]" = asyncio.Queue()
        self._reply: Optional["asyncio.Future[Any]"] = None
        self._done = False

    def __aiter__(self) -> "_AsCompleted":
        return self

    def _on_done(self, params: Params) -> None:
        job = params.get("job")
        if job in self._want and job not in self._seen:
            self._queue.put_nowait(("rec", params))

    def _on_reply(self, fut: "asyncio.Future[Any]") -> None:
        self._queue.put_nowait(("end", fut))

    def _finish(self) -> None:
        self._done = True
        self._client.remove_listener("job.done", self._on_done)

    async def _start(self) -> None:
        self._client.add_listener("job.done", self._on_done)
        try:
            self._reply = await self._client.send("wait", _drop_none({
                "jobs": self._jobs, "mode": "stream", "timeout": self._timeout,
                "cancel_on_timeout": self._cancel or None}))
        except BaseException:
            self._finish()
            raise
        self._reply.add_done_callback(self._on_reply)

    async def __anext__(self) -> Dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        if self._reply is None:
            if not self._jobs:
                self._finish()
                raise StopAsyncIteration
            await self._start()
        while True:
            kind, item = await self._queue.get()
            if kind == "rec":
                if item["job"] in self._seen:
                    continue
                self._seen.add(item["job"])
                return item
            # The reply: every job.done came before it.  Yield any record
            # not seen yet (none, unless notifications were lost).
            try:
                records = item.result()
            except BaseException:
                self._finish()
                raise
            for rec in records:
                if isinstance(rec, dict) and rec.get("job") not in self._seen:
                    self._queue.put_nowait(("rec", rec))
            if self._queue.empty():
                self._finish()
                raise StopAsyncIteration
            self._queue.put_nowait(("end", item))

    async def aclose(self) -> None:
        """Stops listening; the server's reply, when it comes, is dropped."""
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        self._finish()


async def connect(
    url: Optional[str] = None,
    *,
    token: Optional[str] = None,
    cafile: Optional[str] = None,
    certfile: Optional[str] = None,
    keyfile: Optional[str] = None,
    timeout: Optional[float] = 10.0,
    max_line: int = DEFAULT_MAX_LINE,
    ssl_context: Optional[ssl.SSLContext] = None,
) -> Client:
    """Connects to asyncqd and returns a :class:`Client`.

    ``url`` (default ``$ASYNCQ_SERVER``, else ``tcp://127.0.0.1:7878``):
    ``tcp://HOST:PORT``, ``HOST:PORT``, ``unix:/PATH``, ``tls://HOST:PORT``.
    ``token`` (default ``$ASYNCQ_TOKEN``) is sent with ``auth`` first.
    For ``tls://``: ``cafile`` (default ``$ASYNCQ_CA``, else the system's
    CAs) verifies the server; ``certfile``/``keyfile`` (``$ASYNCQ_CERT``,
    ``$ASYNCQ_KEY``) present a client certificate (mutual TLS).
    ``timeout`` bounds connecting, the TLS handshake and auth.
    """
    if url is None:
        url = os.environ.get("ASYNCQ_SERVER") or DEFAULT_URL
    if token is None:
        token = os.environ.get("ASYNCQ_TOKEN") or None
    scheme, host, port = parse_url(url)

    async def open_() -> Client:
        if scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(host, limit=max_line)
        else:
            ctx: Optional[ssl.SSLContext] = None
            if scheme == "tls":
                ctx = ssl_context or _ssl_context(
                    cafile or os.environ.get("ASYNCQ_CA") or None,
                    certfile or os.environ.get("ASYNCQ_CERT") or None,
                    keyfile or os.environ.get("ASYNCQ_KEY") or None)
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, limit=max_line,
                server_hostname=host if ctx is not None else None)
        client = Client(reader, writer, url)  # type: ignore[arg-type]
        if token is not None:
            try:
                await client.auth(token)
            except BaseException:
                await client.close()
                raise
        return client

    try:
        return await asyncio.wait_for(open_(), timeout)
    except asyncio.TimeoutError:
        raise TransportError(
            "asyncq: %s: no connection within %g s" % (url, timeout)) from None
    except (OSError, ssl.SSLError) as e:
        if isinstance(e, TransportError):
            raise
        raise TransportError("asyncq: %s: %s" % (url, e)) from e
