"""Helpers of the package tests: wheels built here (no network), and the real index server run
on a thread (over TCP as a local "upstream" index that ``pip download`` reaches, or over a Unix
socket mounted into a real sandbox)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

from pds_kernel.packages.index import IndexServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # the imports' test signatures
from import_signatures import MARKER, write_signatures  # noqa: F401  (MARKER: re-exported)

#: the platform administrator of the package tests (a registry admin)
ADMIN = "ada"


def with_signatures(settings, directory: Path):
    """``settings`` whose malware scanner (the airlock's, which scans approved wheels too) reads the
    tests' own ClamAV signatures from ``directory`` (real ones cannot be downloaded here). They flag
    :data:`MARKER`, so a wheel carrying it is malware to the scan."""
    return replace(settings, airlock=replace(settings.airlock, clamav_database=str(write_signatures(directory))))


def build_wheel(dest: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
                licence: str = "MIT", code: str | None = None) -> Path:
    """A pure-Python wheel of ``name`` (module ``name`` with ``VALUE = "<name> <version>"``)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                f"License-Expression: {licence}", "Requires-Python: >=3.9"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{module}/__init__.py": (code or f'VALUE = "{name} {version}"\n').encode(),
        f"{dist}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pds-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


class ThreadedIndex:
    """The real :class:`IndexServer` on its own event loop thread (a context manager)."""

    def __init__(self, root: Path, *, unix_socket: Path | None = None, on_request=None):
        self.root = Path(root)
        self.unix_socket = unix_socket
        self.requests: list[tuple[str, str, int]] = []
        self._on_request = on_request
        self.loop = asyncio.new_event_loop()
        self.server = IndexServer(self.root, unix_socket=unix_socket, port=None if unix_socket else 0,
                                  on_request=self._record)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _record(self, method: str, path: str, status: int) -> None:
        self.requests.append((method, path, status))
        if self._on_request:
            self._on_request(method, path, status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/simple/"

    def __enter__(self) -> ThreadedIndex:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def write_config(settings, path: Path, actor: str | None = None) -> Path:
    """A pds.yaml naming exactly ``settings``' paths, database, package settings and malware
    signatures (for ``pds``);
    with ``actor``, the OS user running the tests is mapped to that registry user (``cli.identities``:
    the CLI acts as its OS user, ``--as`` is for administrators only)."""
    import getpass
    from dataclasses import asdict, fields

    import yaml

    data = {"paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
            "database": {"url": settings.database.url}, "packages": asdict(settings.packages),
            "airlock": {"clamav_database": settings.airlock.clamav_database}}
    if actor is not None:
        data["cli"] = {"identities": {getpass.getuser(): actor}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
