# SPDX-License-Identifier: MIT
"""A blocking facade for scripts that do not use asyncio.

    import asyncq.sync
    with asyncq.sync.connect("tcp://127.0.0.1:7878") as q:
        job = q.put({"n": 1}, queue="work", name="square")["job"]
        print(q.wait([job])[0]["result"])

The client runs on a private event loop, driven only while a call runs;
do not use it from inside a running event loop (use :mod:`asyncq`).
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Dict, Iterable, List, Optional, Sequence, TypeVar

from .client import Client, connect as _connect

__all__ = ["SyncClient", "connect"]

T = TypeVar("T")


class SyncClient:
    """The blocking twin of :class:`asyncq.Client`'s main methods."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        token: Optional[str] = None,
        cafile: Optional[str] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        timeout: Optional[float] = 10.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._client: Client = self._run(_connect(
                url, token=token, cafile=cafile, certfile=certfile,
                keyfile=keyfile, timeout=timeout))
        except BaseException:
            self._loop.close()
            raise

    def _run(self, coro: "Coroutine[Any, Any, T]") -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection and the private loop."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.close()

    def put(self, args: Optional[Dict[str, Any]] = None, **params: Any) -> Dict[str, Any]:
        """As :meth:`asyncq.Client.put`."""
        return self._run(self._client.put(args, **params))

    def put_many(self, jobs: Iterable[Dict[str, Any]], **params: Any) -> List[Any]:
        """As :meth:`asyncq.Client.put_many`."""
        return self._run(self._client.put_many(jobs, **params))

    def status(self, job: int) -> Dict[str, Any]:
        """As :meth:`asyncq.Client.status`."""
        return self._run(self._client.status(job))

    def wait(self, jobs: Sequence[int], **params: Any) -> List[Dict[str, Any]]:
        """As :meth:`asyncq.Client.wait`."""
        return self._run(self._client.wait(jobs, **params))

    def join(self, queue: Optional[str] = None, **params: Any) -> Dict[str, Any]:
        """As :meth:`asyncq.Client.join`."""
        return self._run(self._client.join(queue, **params))

    def cancel(self, job: Optional[int] = None, **params: Any) -> Dict[str, Any]:
        """As :meth:`asyncq.Client.cancel`."""
        return self._run(self._client.cancel(job, **params))

    def stats(self, queue: Optional[str] = None, **params: Any) -> Dict[str, Any]:
        """As :meth:`asyncq.Client.stats`."""
        return self._run(self._client.stats(queue, **params))

    def schedules(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """As :meth:`asyncq.Client.schedules`."""
        return self._run(self._client.schedules(name))

    def call(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        """Any method: as :meth:`asyncq.Client.call`."""
        return self._run(self._client.call(method, params))


def connect(url: Optional[str] = None, **kw: Any) -> SyncClient:
    """A connected :class:`SyncClient` (arguments as :func:`asyncq.connect`)."""
    return SyncClient(url, **kw)
