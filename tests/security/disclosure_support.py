"""Support of the disclosure-evasion attacks: the gate's real service on a fresh database, and
the files an attacker crafts."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))

from airlock_factories import PROJECT, files

from pds_kernel.airlock.checks import FileCheck, Thresholds, check_file
from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.registry import Registry, Role

__all__ = ["PROJECT", "files", "build_service", "check", "pickle_zip", "write_frame"]

#: the issue's setting: threshold 10, dominance n=2 k=90 %
THRESHOLDS = Thresholds(min_cell=10, dominance_n=2, dominance_k=90.0)


def build_service(runtime) -> tuple[AirlockService, Registry]:
    """A project with a researcher (alice) and two checkers (olga, omar), as in tests/airlock."""
    reg = Registry.from_runtime(runtime)
    for name in ("alice", "olga", "omar"):
        reg.upsert_user("setup", name)
    reg.upsert_project("setup", PROJECT, title=PROJECT, start_date=date(2020, 1, 1), end_date=date(2099, 12, 31))
    far = date(2099, 12, 31)
    reg.add_member("setup", PROJECT, "alice", Role.RESEARCHER, far)
    reg.add_member("setup", PROJECT, "olga", Role.OUTPUT_CHECKER, far)
    reg.add_member("setup", PROJECT, "omar", Role.OUTPUT_CHECKER, far)
    return AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=reg), reg


def write_frame(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def check(tmp_path: Path, name: str, data: bytes | pd.DataFrame, **kw) -> FileCheck:
    path = tmp_path / name
    if isinstance(data, pd.DataFrame):
        write_frame(path, data)
    else:
        path.write_bytes(data)
    return check_file(path, name, kw.pop("thresholds", THRESHOLDS), **kw)


def pickle_zip(member: str = "archive/data.pkl") -> bytes:
    """A ZIP holding a pickle (the layout of a PyTorch checkpoint)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/version", "3\n")
        archive.writestr(member, pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))
    return buffer.getvalue()


def pdf_of(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of ``objects`` (numbered from 1; 1 is the catalogue) with its cross-reference table;
    ``trailer``: more entries of its trailer."""
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)
