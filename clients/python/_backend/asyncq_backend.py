# SPDX-License-Identifier: MIT
"""A PEP 517 build backend for asyncq, standard library only.

``pip install ./clients/python`` must work offline on a fresh machine, where
setuptools' backend fails without the ``wheel`` module.  This backend needs
nothing: it zips the ``asyncq`` package into a pure-Python wheel (PEP 427,
with dist-info METADATA, WHEEL and RECORD) and tars an sdist.  The project's
name, version, description and requires-python come from pyproject.toml's
``[project]`` table (simple ``key = "value"`` lines: tomllib is 3.11+).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "asyncq"
# Files of the sdist besides the package.
SDIST_EXTRA = ["pyproject.toml", "README.md", "_backend/asyncq_backend.py"]

__all__ = [
    "build_wheel",
    "build_sdist",
    "get_requires_for_build_wheel",
    "get_requires_for_build_sdist",
    "prepare_metadata_for_build_wheel",
]


def _project() -> Dict[str, str]:
    """The ``[project]`` table's string values, from pyproject.toml."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    meta: Dict[str, str] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^\[([^\]]+)\]$", line)
        if m:
            section = m.group(1).strip()
            continue
        if section != "project":
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$', line)
        if m:
            meta[m.group(1)] = m.group(2).encode().decode("unicode_escape")
    for key in ("name", "version"):
        if key not in meta:
            raise RuntimeError("pyproject.toml: [project] has no %s" % key)
    return meta


def _dist_name(meta: Dict[str, str]) -> str:
    return re.sub(r"[-_.]+", "_", meta["name"]).lower()


def _metadata(meta: Dict[str, str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % meta["name"],
        "Version: %s" % meta["version"],
    ]
    if "description" in meta:
        lines.append("Summary: %s" % meta["description"])
    if "requires-python" in meta:
        lines.append("Requires-Python: %s" % meta["requires-python"])
    lines.append("License: MIT")
    lines.append("Description-Content-Type: text/markdown")
    readme = os.path.join(ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _wheel_file() -> str:
    return ("Wheel-Version: 1.0\nGenerator: asyncq_backend\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n")


def _package_files() -> List[Tuple[str, str]]:
    """(path in the archive, path on disk) of the package's files."""
    out: List[Tuple[str, str]] = []
    base = os.path.join(ROOT, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            disk = os.path.join(dirpath, name)
            arc = os.path.relpath(disk, ROOT).replace(os.sep, "/")
            out.append((arc, disk))
    return out


def _record_line(arc: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "%s,sha256=%s,%d" % (arc, digest.decode("ascii"), len(data))


def _zip_time() -> Tuple[int, int, int, int, int, int]:
    # Reproducible: SOURCE_DATE_EPOCH if set, else a fixed date.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "1577836800"))
    return time.gmtime(max(epoch, 315532800))[:6]  # type: ignore[return-value]


def _dist_info_files(meta: Dict[str, str]) -> Dict[str, bytes]:
    return {
        "METADATA": _metadata(meta).encode("utf-8"),
        "WHEEL": _wheel_file().encode("utf-8"),
        "top_level.txt": (PACKAGE + "\n").encode("utf-8"),
    }


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Dict[str, Any]] = None
) -> str:
    meta = _project()
    name = "%s-%s.dist-info" % (_dist_name(meta), meta["version"])
    target = os.path.join(metadata_directory, name)
    os.makedirs(target, exist_ok=True)
    for fname, data in _dist_info_files(meta).items():
        with open(os.path.join(target, fname), "wb") as f:
            f.write(data)
    return name


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    meta = _project()
    dist = _dist_name(meta)
    info = "%s-%s.dist-info" % (dist, meta["version"])
    filename = "%s-%s-py3-none-any.whl" % (dist, meta["version"])
    os.makedirs(wheel_directory, exist_ok=True)
    path = os.path.join(wheel_directory, filename)
    records: List[str] = []
    stamp = _zip_time()

    def add(zf: zipfile.ZipFile, arc: str, data: bytes) -> None:
        zi = zipfile.ZipInfo(arc, stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, data)
        records.append(_record_line(arc, data))

    tmp = path + ".part"
    with zipfile.ZipFile(tmp, "w") as zf:
        for arc, disk in _package_files():
            with open(disk, "rb") as f:
                add(zf, arc, f.read())
        for fname, data in _dist_info_files(meta).items():
            add(zf, "%s/%s" % (info, fname), data)
        records.append("%s/RECORD,," % info)
        zi = zipfile.ZipInfo("%s/RECORD" % info, stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, ("\n".join(records) + "\n").encode("utf-8"))
    os.replace(tmp, path)
    return filename


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    meta = _project()
    base = "%s-%s" % (_dist_name(meta), meta["version"])
    filename = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    path = os.path.join(sdist_directory, filename)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "1577836800"))

    def add(tf: tarfile.TarFile, arc: str, data: bytes) -> None:
        ti = tarfile.TarInfo("%s/%s" % (base, arc))
        ti.size = len(data)
        ti.mtime = mtime
        ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(data))

    tmp = path + ".part"
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        files = [(a, d) for a, d in _package_files()]
        files += [(a, os.path.join(ROOT, a)) for a in SDIST_EXTRA
                  if os.path.exists(os.path.join(ROOT, a))]
        for arc, disk in files:
            with open(disk, "rb") as f:
                add(tf, arc, f.read())
        add(tf, "PKG-INFO", _metadata(meta).encode("utf-8"))
    os.replace(tmp, path)
    return filename
