# SPDX-License-Identifier: MIT
"""tls:// with the test certificates of tests/tls/, mutual TLS, a worker."""
from __future__ import annotations

import asyncio
import unittest
from typing import Any, Dict, Optional

import asyncq

from .base import bounded
from .daemon import Daemon, TLS_DIR, have_tls_certs, tls_file

QUEUES: Dict[str, Dict[str, Any]] = {
    "default": {"kind": "echo", "consumers": 1},
}


def tls_config(client_ca: Optional[str]) -> Dict[str, Any]:
    if not have_tls_certs():
        raise AssertionError("TLS test certificates missing in %s" % TLS_DIR)
    return {"cert": tls_file("server.pem"), "key": tls_file("server.key"),
            "client_ca": client_ca}


class TestTls(unittest.IsolatedAsyncioTestCase):
    @bounded
    async def test_server_verified(self) -> None:
        d = Daemon(QUEUES, tls=tls_config(None))
        try:
            assert d.tls_url is not None
            async with await asyncq.connect(d.tls_url, cafile=tls_file("ca.pem")) as c:
                self.assertEqual(await c.ping(), "pong")
                rec = await c.put({"over": "tls"}, wait=True)
                self.assertEqual(rec["result"], {"over": "tls"})
            # a server certificate from a CA we do not trust is refused
            with self.assertRaises(ConnectionError):
                await asyncq.connect(d.tls_url, cafile=tls_file("other-ca.pem"))
            # host name checked: localhost is in the certificate too
            port = d.tls_url.rsplit(":", 1)[1]
            async with await asyncq.connect("tls://localhost:" + port,
                                            cafile=tls_file("ca.pem")) as c:
                self.assertEqual(await c.ping(), "pong")
        finally:
            d.stop()

    @bounded
    async def test_worker_over_tls(self) -> None:
        d = Daemon({"remote": {"kind": "remote", "timeout": 30}},
                   tls=tls_config(tls_file("ca.pem")))
        try:
            assert d.tls_url is not None
            async with await asyncq.connect(
                    d.tls_url, cafile=tls_file("ca.pem"),
                    certfile=tls_file("client.pem"),
                    keyfile=tls_file("client.key")) as c:
                # the worker shares this connection, and leaves it open
                w = asyncq.Worker(c, queues="remote", poll=5)

                @w.handler()
                async def h(job: asyncq.Job) -> Any:
                    return job.args["x"] + 1

                run = asyncio.ensure_future(w.run())
                j = (await c.put({"x": 41}, queue="remote"))["job"]
                self.assertEqual((await c.wait([j], timeout=20))[0]["result"], 42)
                w.stop()
                await run
                self.assertFalse(c.closed)
                self.assertEqual(await c.ping(), "pong")
        finally:
            d.stop()

    @bounded
    async def test_mutual_tls(self) -> None:
        d = Daemon(QUEUES, tls=tls_config(tls_file("ca.pem")))
        try:
            assert d.tls_url is not None
            async with await asyncq.connect(
                    d.tls_url, cafile=tls_file("ca.pem"),
                    certfile=tls_file("client.pem"),
                    keyfile=tls_file("client.key")) as c:
                self.assertEqual(await c.ping(), "pong")
            # without a certificate, or with one of another CA: refused at
            # the handshake (TLS 1.3 reports it at the first read)
            for cert in (None, "other-client"):
                with self.assertRaises(ConnectionError, msg=str(cert)):
                    c = await asyncq.connect(
                        d.tls_url, cafile=tls_file("ca.pem"),
                        certfile=tls_file(cert + ".pem") if cert else None,
                        keyfile=tls_file(cert + ".key") if cert else None)
                    try:
                        await c.ping()
                    finally:
                        await c.close()
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
