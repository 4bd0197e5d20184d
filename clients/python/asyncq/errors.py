# SPDX-License-Identifier: MIT
"""asyncq's exceptions.

Errors the server answers are :class:`Error` subclasses, one per JSON-RPC
error code (SPEC §1), carrying ``code``, ``message`` and ``data``.  Errors
of the transport (cannot connect, connection lost, a reply that is not
JSON-RPC) derive from the built-in :class:`ConnectionError`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "Error",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "QueueFull",
    "Unauthorized",
    "NotFound",
    "NoSuchQueue",
    "NoSuchJob",
    "NotAllowed",
    "Timeout",
    "AlreadyFinished",
    "ShuttingDown",
    "TooManyConnections",
    "NotFinished",
    "NotYourLease",
    "TransportError",
    "ConnectionClosed",
    "ProtocolError",
    "error_for",
]


class Error(Exception):
    """An error the server answered: ``code``, ``message`` and ``data``."""

    code: int = 0

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return "%s (%d)" % (self.message, self.code)

    def __repr__(self) -> str:
        return "%s(%d, %r)" % (type(self).__name__, self.code, self.message)


class ParseError(Error):
    """-32700: the server could not parse a line as JSON."""

    code = -32700


class InvalidRequest(Error):
    """-32600: not a valid JSON-RPC request (or a line over the limit)."""

    code = -32600


class MethodNotFound(Error):
    """-32601: no such method."""

    code = -32601


class InvalidParams(Error):
    """-32602: a param is missing, unknown or of the wrong type."""

    code = -32602


class InternalError(Error):
    """-32603: the server failed (e.g. the journal cannot record a put)."""

    code = -32603


class QueueFull(Error):
    """-32000: the queue is full and the put said ``nowait``."""

    code = -32000


class Unauthorized(Error):
    """-32001: auth is configured and the right token was not sent."""

    code = -32001


class NotFound(Error):
    """Base of :class:`NoSuchQueue` and :class:`NoSuchJob`."""


class NoSuchQueue(NotFound):
    """-32002: no such queue."""

    code = -32002


class NoSuchJob(NotFound):
    """-32004: no such job (unknown id, or its record expired)."""

    code = -32004


class NotAllowed(Error):
    """-32005: not allowed (a kind the queue does not run, ...)."""

    code = -32005


class Timeout(Error):
    """-32008: a ``wait`` or ``join`` ran past its timeout."""

    code = -32008


class AlreadyFinished(Error):
    """-32009: the job has already finished (or was cancelled)."""

    code = -32009


class ShuttingDown(Error):
    """-32010: the server is stopping."""

    code = -32010


class TooManyConnections(Error):
    """-32011: too many connections; the server closes this one."""

    code = -32011


class NotFinished(Error):
    """-32012: retry or delete of a job that has not finished."""

    code = -32012


class NotYourLease(Error):
    """-32014: this connection does not hold the job's lease."""

    code = -32014


_BY_CODE: Dict[int, Type[Error]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        QueueFull,
        Unauthorized,
        NoSuchQueue,
        NoSuchJob,
        NotAllowed,
        Timeout,
        AlreadyFinished,
        ShuttingDown,
        TooManyConnections,
        NotFinished,
        NotYourLease,
    )
}


def error_for(code: int, message: str, data: Optional[Any] = None) -> Error:
    """The :class:`Error` subclass instance for a JSON-RPC error code."""
    return _BY_CODE.get(code, Error)(code, message, data)


class TransportError(ConnectionError):
    """Talking to the server failed: cannot connect, TLS, lost connection."""


class ConnectionClosed(TransportError):
    """The connection closed (or was closed) before the reply came."""


class ProtocolError(TransportError):
    """The server sent something that is not JSON-RPC as asyncq speaks it."""
