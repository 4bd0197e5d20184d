# SPDX-License-Identifier: MIT
"""Starts the real asyncqd ($ASYNCQD) for a test, in a temporary directory.

The daemon listens on a Unix socket there (and a free TCP or TLS port when
asked); readiness is its READY=1 sd_notify datagram, not a sleep.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PYDIR))
TLS_DIR = os.path.join(REPO, "tests", "tls")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
# The bound of one test's asyncio part (asyncio.wait_for around it).
TEST_TIMEOUT = 60.0


def asyncqd_path() -> str:
    """$ASYNCQD, the daemon under test; a clear failure when unset."""
    path = os.environ.get("ASYNCQD")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            "ASYNCQD must name the built asyncqd (ctest sets it; by hand: "
            "ASYNCQD=build/daemon/asyncqd python3 -m unittest discover -s "
            "clients/python/tests -t clients/python)")
    return path


def tls_file(name: str) -> str:
    return os.path.join(TLS_DIR, name)


def have_tls_certs() -> bool:
    return os.path.exists(tls_file("ca.pem")) and os.path.exists(tls_file("server.pem"))


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


class Daemon:
    """An asyncqd with a config written from the arguments."""

    def __init__(
        self,
        queues: Dict[str, Dict[str, Any]],
        *,
        tcp: bool = False,
        tls: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None,
        grace: float = 5.0,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="asyncq-py.")
        self.sock = os.path.join(self.dir, "asyncqd.sock")
        self.log = os.path.join(self.dir, "asyncqd.log")
        listen: List[str] = ["unix:" + self.sock]
        self.tcp_url: Optional[str] = None
        self.tls_url: Optional[str] = None
        if tcp:
            port = free_port()
            listen.append("tcp://127.0.0.1:%d" % port)
            self.tcp_url = "tcp://127.0.0.1:%d" % port
        config: Dict[str, Any] = {
            "listen": listen,
            "metrics": None,
            "journal": {"path": os.path.join(self.dir, "journal")},
            "shutdown": {"grace": grace},
            "log": {"level": "info"},
            "queues": queues,
        }
        if tls is not None:
            port = free_port()
            listen.append("tls://127.0.0.1:%d" % port)
            self.tls_url = "tls://127.0.0.1:%d" % port
            config["tls"] = tls
        if token is not None:
            path = os.path.join(self.dir, "token")
            with open(path, "w") as f:
                f.write(token + "\n")
            os.chmod(path, 0o600)
            config["auth"] = {"token_file": path}
        if extra:
            config.update(extra)
        self.config = os.path.join(self.dir, "asyncqd.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return "unix:" + self.sock

    def _start(self) -> None:
        notify_path = os.path.join(self.dir, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = notify_path
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        wrapper = os.environ.get("ASYNCQD_WRAPPER", "").split()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                wrapper + [asyncqd_path(), "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("asyncqd: no READY=1 within %g s: %s"
                                       % (START_TIMEOUT, self.read_log()))
                r, _, _ = select.select([notify], [], [], min(left, 0.2))
                if r:
                    msg = notify.recv(4096).decode("utf-8", "replace")
                    if "READY=1" in msg.split("\n"):
                        return
                elif self.proc.poll() is not None:
                    raise RuntimeError("asyncqd exited at start (%s): %s"
                                       % (self.proc.returncode, self.read_log()))
        finally:
            notify.close()

    def read_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM, wait for the exit (bounded); returns the exit status."""
        rc = 0
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc
