# SPDX-License-Identifier: MIT
"""asyncq: the asyncio client and worker library for asyncqd.

    client = await asyncq.connect("tcp://127.0.0.1:7878")
    job = await client.put({"n": 3}, queue="work", name="square")

    w = asyncq.Worker("tcp://127.0.0.1:7878", queues=["work"], concurrency=8)

    @w.handler("square")
    async def square(job):
        return job.args["n"] ** 2

    await w.run(handle_signals=True)

See README.md for the API and docs/protocol.md for the wire protocol.
"""
from .client import DEFAULT_URL, Client, connect, parse_url
from .errors import (
    AlreadyFinished,
    ConnectionClosed,
    Error,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    NoSuchJob,
    NoSuchQueue,
    NotAllowed,
    NotFinished,
    NotFound,
    NotYourLease,
    ParseError,
    ProtocolError,
    QueueFull,
    ShuttingDown,
    Timeout,
    TooManyConnections,
    TransportError,
    Unauthorized,
)
from .sync import SyncClient
from .worker import Job, Worker

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL", "Client", "connect", "parse_url", "SyncClient", "Job",
    "Worker", "Error", "ParseError", "InvalidRequest", "MethodNotFound",
    "InvalidParams", "InternalError", "QueueFull", "Unauthorized",
    "NotFound", "NoSuchQueue", "NoSuchJob", "NotAllowed", "Timeout",
    "AlreadyFinished", "ShuttingDown", "TooManyConnections", "NotFinished",
    "NotYourLease", "TransportError", "ConnectionClosed", "ProtocolError",
]
