# SPDX-License-Identifier: MIT
"""`pip install ./clients/python` offline, through the in-tree backend."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile
from types import ModuleType
from typing import Dict, List

from .daemon import PYDIR

PIP_TIMEOUT = 240
NEED_VENV = (
    "the Python standard library's venv/ensurepip modules are missing: "
    "on Debian install the package python3-venv (apt-get install python3-venv)")


def load_backend() -> ModuleType:
    path = os.path.join(PYDIR, "_backend", "asyncq_backend.py")
    spec = importlib.util.spec_from_file_location("asyncq_backend", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def offline_env() -> Dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PIP_") or k == "PYTHONPATH":
            del env[k]
    env.update({"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
                "PYTHONNOUSERSITE": "1"})
    return env


def run(argv: List[str], **kw: object) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=PIP_TIMEOUT, env=offline_env(), **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (
            " ".join(argv), p.returncode, p.stdout.decode("utf-8", "replace")))
    return p


class TestBackend(unittest.TestCase):
    def test_wheel_and_sdist(self) -> None:
        backend = load_backend()
        self.assertEqual(backend.get_requires_for_build_wheel(), [])
        self.assertEqual(backend.get_requires_for_build_sdist(), [])
        with tempfile.TemporaryDirectory() as tmp:
            name = backend.build_wheel(tmp)
            self.assertEqual(name, "asyncq-0.1.0-py3-none-any.whl")
            with zipfile.ZipFile(os.path.join(tmp, name)) as zf:
                names = set(zf.namelist())
                for f in ("asyncq/__init__.py", "asyncq/client.py",
                          "asyncq/worker.py", "asyncq/sync.py", "asyncq/py.typed",
                          "asyncq-0.1.0.dist-info/METADATA",
                          "asyncq-0.1.0.dist-info/WHEEL",
                          "asyncq-0.1.0.dist-info/RECORD"):
                    self.assertIn(f, names)
                meta = zf.read("asyncq-0.1.0.dist-info/METADATA").decode()
                self.assertIn("Name: asyncq\n", meta)
                self.assertIn("Version: 0.1.0\n", meta)
                self.assertIn("Requires-Python: >=3.9\n", meta)
                self.assertIn("Tag: py3-none-any\n",
                              zf.read("asyncq-0.1.0.dist-info/WHEEL").decode())
                record = zf.read("asyncq-0.1.0.dist-info/RECORD").decode()
                listed = set()
                for line in record.splitlines():
                    path, digest, size = line.rsplit(",", 2)
                    listed.add(path)
                    if path.endswith("RECORD"):
                        self.assertEqual((digest, size), ("", ""))
                        continue
                    data = zf.read(path)
                    want = base64.urlsafe_b64encode(
                        hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual(digest, "sha256=" + want, path)
                    self.assertEqual(int(size), len(data), path)
                self.assertEqual(listed, names)
            sdist = backend.build_sdist(tmp)
            with tarfile.open(os.path.join(tmp, sdist)) as tf:
                members = set(tf.getnames())
            for f in ("pyproject.toml", "PKG-INFO", "asyncq/client.py",
                      "_backend/asyncq_backend.py"):
                self.assertIn("asyncq-0.1.0/" + f, members)


class TestOfflineInstall(unittest.TestCase):
    def test_pip_install_offline(self) -> None:
        try:
            import ensurepip  # noqa: F401
            import venv  # noqa: F401
        except ImportError:
            self.fail(NEED_VENV)
        with tempfile.TemporaryDirectory() as tmp:
            env_dir = os.path.join(tmp, "venv")
            p = subprocess.run([sys.executable, "-m", "venv", env_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=PIP_TIMEOUT)
            if p.returncode != 0:
                self.fail("%s\n%s" % (NEED_VENV, p.stdout.decode("utf-8", "replace")))
            py = os.path.join(env_dir, "bin", "python")
            # What users type, with no index reachable: pip runs the
            # in-tree backend (build isolation on, nothing to fetch).
            run([py, "-m", "pip", "install", "--no-index", PYDIR], cwd=tmp)
            out = run([py, "-c",
                       "import asyncq, asyncq.sync, os, sys; "
                       "assert asyncq.__file__.startswith(sys.prefix), asyncq.__file__; "
                       "d = os.path.dirname(asyncq.__file__); "
                       "assert os.path.exists(os.path.join(d, 'py.typed')); "
                       "print(asyncq.__version__)"], cwd=tmp)
            self.assertEqual(out.stdout.decode().strip(), "0.1.0")
            # A wheel built by the backend, installed into a --target dir.
            wheel = load_backend().build_wheel(tmp)
            target = os.path.join(tmp, "target")
            run([py, "-m", "pip", "install", "--no-index", "--target", target,
                 os.path.join(tmp, wheel)], cwd=tmp)
            self.assertTrue(os.path.exists(os.path.join(target, "asyncq", "py.typed")))
            out = run([sys.executable, "-I", "-c",
                       "import sys; sys.path.insert(0, %r); import asyncq; "
                       "print(asyncq.__file__)" % target], cwd=tmp)
            self.assertTrue(out.stdout.decode().strip().startswith(target))
            run([py, "-m", "pip", "uninstall", "-y", "asyncq"], cwd=tmp)


if __name__ == "__main__":
    unittest.main()
