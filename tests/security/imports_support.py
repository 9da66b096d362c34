"""Support of tests/security/test_import_attacks.py: the real gate (production application and server
options, tests/security/gate_support.py's people) with ClamAV pointed at the test's own signature
database, archive builders for the attacks, and a real hub for the attack from inside a workspace.

People of project ``diab-2024``: alice and carol (researchers), olga and omar (output checkers), bob
(researcher and checker); ``other-2024``: mallory (researcher) and oscar (checker).
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # helper modules of
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))  # tests/airlock and tests/hub

from airlock_web import FakeIdentity, live_server
from gate_support import PREFIX, gate_registry_fixture  # noqa: F401  (the gate_registry fixture)
from import_signatures import HASHED, MARKER, import_settings  # noqa: F401  (HASHED, MARKER: re-exported)

from pds_kernel.airlock.imports import ImportService
from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, server_options

PROJECT = "diab-2024"
#: the gate's limit on one import in these tests (small, so the oversize attack stays cheap)
IMPORT_LIMIT = 4 * 1024 * 1024


@dataclass
class ImportGate:
    base: str
    service: AirlockService
    imports: ImportService

    def api(self, user: str, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token fake-{user}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base + "api/" + path, headers=headers, timeout=120, **kwargs)

    def upload(self, user: str, name: str, content: bytes, *, project: str = PROJECT, kind: str = "files"):
        return self.api(user, "POST", "imports",
                        data={"project": project, "justification": "bring this in", "kind": kind},
                        files=[("files", (name, content, "application/octet-stream"))])

    def staged_anything(self) -> bool:
        staging = self.service.settings.paths.staging
        return any(p.is_file() for p in staging.rglob("*"))


@pytest.fixture(name="settings")
def settings_fixture(settings, tmp_path):
    return import_settings(settings, tmp_path / "clamav", import_max_file_bytes=IMPORT_LIMIT)


@pytest.fixture(name="import_gate")
def import_gate_fixture(runtime, gate_registry):
    from dataclasses import replace

    service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=gate_registry)
    app = make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)
    with live_server(app, **server_options()) as url:
        yield ImportGate(url + PREFIX, service, ImportService(service))


# ---- archives of the attacks ---------------------------------------------------------------------
def zip_of(*members: tuple[str, bytes], mode: int | None = None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def tar_of(*members: tarfile.TarInfo | tuple[str, bytes], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def zeros_zip(megabytes: int) -> bytes:
    """One member of ``megabytes`` MiB of zeros, deflated (about 1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("data/table.csv", "w") as out:
        chunk = b"0" * (1024 * 1024)
        for _ in range(megabytes):
            out.write(chunk)
    return buffer.getvalue()


def assert_refused(answer, reason: str, gate) -> None:
    """An upload refused with ``reason``: 400, nothing staged, the refusal audited with it."""
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    assert reason in answer.json()["error"], answer.json()["error"]
    assert not gate.staged_anything()
    denied = gate.service.runtime.audit.entries(action="airlock.import.create")[-1]
    assert denied.outcome == "denied" and reason in str(denied.details), denied
