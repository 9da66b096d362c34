"""Support of tests/security/test_extract_dist.py: a conforming extract of several partitions per
table, built once per module from the small lake of tests/extract, and a writable copy of it."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))  # its lake helpers

from extract_lake import DIABETES_SPEC, generate_rows, write_lake

from pds_kernel.extract.build import raw_identifiers, run_build, write_parquet
from pds_kernel.extract.layout import entry_files
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.hashing import sha256_file
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.conftest import make_settings

SPEC = parse_spec(DIABETES_SPEC)
PERSONS_PER_PARTITION = 3


def build(root: Path) -> tuple[Path, pl.Series, pl.Series, dict]:
    """Build the diabetes extract with several partitions under ``root``; (its path, cohort, the
    lake's raw ids, manifest)."""
    settings = make_settings(root)
    write_lake(settings.paths.lake, generate_rows())
    runtime = Runtime(settings)
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_user("root", "root", is_admin=True)
        registry.upsert_project("root", "diab-study", title="d", start_date=date(2024, 1, 1),
                                end_date=date(2099, 12, 31))
        built = run_build(runtime, "diab-study", SPEC, actor="root", persons_per_partition=PERSONS_PER_PARTITION)
    finally:
        runtime.close()
    cohort = pl.read_parquet(built.path / "COHORT.parquet")[PERSON_ID]
    return built.path, cohort, raw_identifiers(settings.paths.lake), built.manifest


def writable_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def rewrite_partition(directory: Path, table: str, index: int, frame: pl.DataFrame) -> None:
    """Replace partition ``index`` of ``table`` by ``frame`` and record its true hash and rows in
    the manifest, as an attacker with write access to the staging directory would."""
    manifest = manifest_of(directory)
    item = manifest["tables"][table]["files"][index]
    path = directory / item["file"]
    write_parquet(frame, path)
    item.update(sha256=sha256_file(path), rows=frame.height)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def partition_frames(directory: Path, table: str) -> list[pl.DataFrame]:
    return [pl.read_parquet(directory / f["file"]) for f in entry_files(manifest_of(directory)["tables"][table])]
