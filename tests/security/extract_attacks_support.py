"""Support of tests/security/test_extract_attacks*.py: the small synthetic lake of tests/extract
(rows kept in Python, so an attack can plant a value in them first), a registry with every kind
of actor, and helpers to tamper with a published extract as someone with write access would."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))  # its lake helpers

from extract_dist_support import manifest_of, writable_copy
from extract_lake import DIABETES_SPEC, generate_rows, write_lake

from pds_kernel.extract.build import extract_dir, write_parquet
from pds_kernel.extract.layout import entry_files
from pds_kernel.hashing import sha256_file
from pds_kernel.registry import Registry

__all__ = ["DIABETES_SPEC", "SMALL_SPEC", "denied", "extract_dir", "generate_rows", "make_registry",
           "manifest_of", "rewrite_file", "write_lake", "writable_copy"]

#: A smaller spec than the diabetes one: quick to build, one table of each kind.
SMALL_SPEC = """
project: diab-study
years: [2022, 2023]
include: [{drug: {atc: [A10]}}]
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
  ER_PRS_F: [DCT_ORD_NUM, EXE_SOI_DTD, PRS_NAT_REF, PRS_PAI_MNT]
  IR_PHA_R: all
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD]
"""


def make_registry(runtime) -> Registry:
    """root and admin2 (administrators), alice (researcher), carol (output-checker) of two open
    projects, diab-study and mi-study."""
    reg = Registry.from_runtime(runtime)
    reg.upsert_user("root", "root", is_admin=True)
    reg.upsert_user("root", "admin2", is_admin=True)
    reg.upsert_user("root", "alice")
    reg.upsert_user("root", "carol")
    for pid in ("diab-study", "mi-study"):
        reg.upsert_project("root", pid, title=pid, start_date=date(2024, 1, 1), end_date=date(2099, 12, 31))
        reg.add_member("root", pid, "alice", "researcher", date(2099, 1, 1))
        reg.add_member("root", pid, "carol", "output-checker", date(2099, 1, 1))
    return reg


def denied(runtime, action: str, actor_label: str | None = None) -> list:
    """The denied audit entries of ``action`` (by ``actor_label`` when given)."""
    return [e for e in runtime.audit.entries(action=action)
            if e.outcome == "denied" and (actor_label is None or e.actor == actor_label)]


def rewrite_file(directory: Path, table: str, frame: pl.DataFrame, index: int = 0) -> None:
    """Replace file ``index`` of ``table`` by ``frame`` and record its true hash and rows in the
    manifest, as someone with write access to the extract would (a consistent tampering)."""
    manifest = manifest_of(directory)
    entry = manifest["tables"][table]
    item = entry_files(entry)[index]
    path = directory / item["file"]
    path.chmod(0o644)
    write_parquet(frame, path)
    if "files" in entry:
        entry["files"][index].update(sha256=sha256_file(path), rows=frame.height)
    else:
        entry.update(sha256=sha256_file(path), rows=frame.height)
    (directory / "manifest.json").chmod(0o644)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def rows():
    """The small lake's rows (plain Python: an attack may plant a value in them first)."""
    return generate_rows()


@pytest.fixture
def world(runtime, rows):
    """The small lake written from ``rows`` and the registry of every kind of actor."""
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    return runtime
