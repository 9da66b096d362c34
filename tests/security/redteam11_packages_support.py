"""Support of tests/security/test_redteam11_packages.py: wheels as a hostile author writes them
(built here, byte by byte when needed), a local upstream index over loopback that serves them
as they are (its manifest written directly: the platform's own checks would refuse them), and the
runtime whose approvals download from it and scan with the tests' ClamAV signatures."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import struct
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import package_index_support
import pytest
from packagefixtures import ADMIN, MARKER, ThreadedIndex, with_signatures

from pds_kernel.packages.names import wheel_project
from pds_kernel.packages.service import PackageService
from pds_kernel.packages.wheelhouse import Wheelhouse
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Packages

world = package_index_support.world
__all__ = ["ADMIN", "MARKER", "world"]


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def members(name: str, version: str, code: bytes = b"VALUE = 1\n", *, extra: tuple = (),
            metadata: tuple[str, ...] = (), record: str | None = None) -> list[tuple[str, bytes]]:
    """A wheel's members: module, ``extra`` (name, bytes) pairs, METADATA (plus ``metadata``
    lines), WHEEL, and a RECORD listing them all (or ``record``, as given)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "License-Expression: MIT",
            "Requires-Python: >=3.9", *metadata]
    files = [(f"{module}/__init__.py", code), *extra, (f"{dist}/METADATA", ("\n".join(meta) + "\n").encode()),
             (f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: red-team\nRoot-Is-Purelib: true\nTag: py3-none-any\n")]
    if record is None:
        record = "\n".join([record_line(n, d) for n, d in files] + [f"{dist}/RECORD,,"]) + "\n"
    return [*files, (f"{dist}/RECORD", record.encode())]


def rerecord(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``files`` (as :func:`members` gives them, RECORD last) with a RECORD of their contents."""
    dist = files[-1][0]
    lines = [record_line(n, d) for n, d in files[:-1]] + [f"{dist},,"]
    return [*files[:-1], (dist, ("\n".join(lines) + "\n").encode())]


def write_wheel(path: Path, files: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED,
                methods: dict[str, int] | None = None, modes: dict[str, int] | None = None,
                flags: dict[str, int] | None = None) -> Path:
    """Write ``files`` as a ZIP at ``path``; per member, another compression ``methods``, a Unix
    file ``modes`` (a link: 0o120777) or ``flags`` bits (set in both headers after writing:
    zipfile sets its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = (methods or {}).get(name, method)
            info.external_attr = (modes or {}).get(name, 0o100644) << 16
            archive.writestr(info, data)
    for name, bits in (flags or {}).items():
        set_flags(path, name, bits)
    return path


def set_flags(path: Path, member: str, bits: int) -> None:
    """Set ``bits`` in the general purpose flags of ``member``'s local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local, central = archive.getinfo(member).header_offset, archive.start_dir
    at = central
    while data[at:at + 4] == b"PK\x01\x02":
        lengths = struct.unpack("<HHH", data[at + 28:at + 34])
        if struct.unpack("<I", data[at + 42:at + 46])[0] == local:
            data[at + 8:at + 10] = struct.pack("<H", struct.unpack("<H", data[at + 8:at + 10])[0] | bits)
        at += 46 + sum(lengths)
    data[local + 6:local + 8] = struct.pack("<H", struct.unpack("<H", data[local + 6:local + 8])[0] | bits)
    path.write_bytes(bytes(data))


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass
class Hostile:
    """The upstream index (serving ``upstream_root`` over loopback) and the approving runtime."""

    upstream: ThreadedIndex
    runtime: Runtime

    @property
    def upstream_root(self) -> Path:
        return self.upstream.root

    def publish(self, path: Path, *, project: str | None = None, sha256: str | None = None) -> Path:
        """Serve ``path`` upstream under ``project`` (its file name's, by default), listed with
        ``sha256`` (its own, by default), whatever it holds."""
        files = self.upstream_root / "files"
        files.mkdir(parents=True, exist_ok=True)
        target = files / path.name
        if path != target:
            target.write_bytes(path.read_bytes())
        manifest_path = self.upstream_root / "index.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"version": 1, "projects": {}}
        name, version = wheel_project(path.name)
        entries = [e for e in manifest["projects"].get(project or name, []) if e["file"] != path.name]
        entries.append({"file": path.name, "project": name, "version": version, "requires_python": "",
                        "sha256": sha256 or hashlib.sha256(target.read_bytes()).hexdigest(),
                        "size": target.stat().st_size, "licence": "MIT"})
        manifest["projects"][project or name] = entries
        manifest_path.write_text(json.dumps(manifest))
        return target

    def approve(self, requirement: str):
        return PackageService(self.runtime).approve(ADMIN, requirement)

    def served(self) -> dict:
        return Wheelhouse(self.runtime.settings.paths.packages).projects()

    def denied(self, requirement: str) -> list:
        return [e for e in self.runtime.audit.entries(action="packages.approve")
                if e.target == f"package:{requirement}" and e.outcome == "denied"]


class StaticUpstream:
    """A static upstream index over loopback (``http.server``, which decodes percent-encoded
    paths as most web servers do: the platform's own index does not), in place of the
    :class:`Hostile` runtime's upstream while it runs (a context manager)."""

    def __init__(self, root: Path, hostile: Hostile):
        self.root, self.hostile = Path(root), hostile
        (self.root / "simple").mkdir(parents=True, exist_ok=True)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(self.root))
        handler.func.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.settings = hostile.runtime.settings

    def publish(self, path: Path, project: str | None = None) -> None:
        """Serve ``path`` under ``project`` (its wheel file name's, by default)."""
        name = project or wheel_project(path.name)[0]
        (self.root / "files").mkdir(exist_ok=True)
        (self.root / "files" / path.name).write_bytes(path.read_bytes())
        page = self.root / "simple" / name / "index.html"
        page.parent.mkdir(exist_ok=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        href = urllib.parse.quote(path.name)
        old = page.read_text() if page.exists() else ""
        page.write_text(old + f'<a href="/files/{href}#sha256={digest}">{path.name}</a><br>\n')

    def __enter__(self) -> StaticUpstream:
        self.thread.start()
        url = f"http://127.0.0.1:{self.server.server_port}/simple/"
        runtime = self.hostile.runtime
        runtime.settings = replace(self.settings, packages=replace(self.settings.packages, upstream_index=url))
        return self

    def __exit__(self, *exc) -> None:
        self.hostile.runtime.settings = self.settings
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def hostile(world, tmp_path):
    """An empty upstream index a test fills with :meth:`Hostile.publish`; ``ada`` is an admin."""
    world.registry.upsert_user("admin", ADMIN, is_admin=True)
    Wheelhouse(tmp_path / "upstream").add([], tmp_path)
    with ThreadedIndex(tmp_path / "upstream") as upstream:
        settings = with_signatures(replace(world.runtime.settings, packages=Packages(upstream_index=upstream.url)),
                                   tmp_path / "signatures")
        rt = Runtime(settings)
        try:
            yield Hostile(upstream, rt)
        finally:
            rt.close()
