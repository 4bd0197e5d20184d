# SPDX-License-Identifier: MIT
"""Shared test helpers: bounded async tests and polls with a deadline."""
from __future__ import annotations

import asyncio
import functools
import time
import unittest
from typing import Any, Awaitable, Callable, Optional, TypeVar

from .daemon import TEST_TIMEOUT

T = TypeVar("T")


def bounded(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """An async test method, failed if it runs past TEST_TIMEOUT."""

    @functools.wraps(fn)
    async def run(self: Any, *a: Any, **kw: Any) -> None:
        try:
            await asyncio.wait_for(fn(self, *a, **kw), TEST_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError("%s: not done within %g s" % (fn.__name__, TEST_TIMEOUT))

    return run


async def until(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    what: str,
    timeout: float = 20.0,
) -> T:
    """Calls probe() until check(its value); fails after timeout.  The poll
    is of the daemon's state, there being no event for it."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    last: Optional[T] = None
    while True:
        last = await probe()
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError("%s: still %r after %g s" % (what, last, timeout))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class AsyncTestCase(unittest.IsolatedAsyncioTestCase):
    pass
