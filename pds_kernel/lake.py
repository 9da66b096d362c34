"""Layout of the lake: where each table's Parquet files live, and how to read them.

    lake/<TABLE>/month=YYYYMM/<source-file-stem>.parquet   monthly tables (one file per delivered file)
    lake/<TABLE>/year=YYYY/<source-file-stem>.parquet      yearly files (PMSI ``T_MCO23B.csv``)
    lake/<TABLE>/snapshot/<source-file-stem>.parquet       snapshot tables (referentials)
    lake/_quarantine/<TABLE>/<source-file-stem>.csv        rejected rows, with line number and reason
    lake/_manifest.json                                    the ingest manifest (owned by pds_kernel.ingest)
    lake/_manifest.journal                                 files committed since it was last written

Readers use :func:`scan_table`, never the paths directly, so the layout can change in one place.
It reads only the files the manifest names: the ingest moves a file into place before it records
it, so a file on disk that the manifest does not name is uncommitted (being committed, or left by
a killed run) and must stay invisible. The table and month names that reach a path are validated
here (never trust a name from outside), and so are the paths the manifest holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import polars as pl

from .errors import IntegrityError, InvalidInput, NotFound

MANIFEST_NAME = "_manifest.json"
JOURNAL_NAME = "_manifest.journal"
QUARANTINE_DIR = "_quarantine"
_MONTH = re.compile(r"^[0-9]{6}$")
_YEAR = re.compile(r"^[0-9]{4}$")


def check_table_name(name: str) -> str:
    from .snds.catalogue import is_ingestible

    if not is_ingestible(name):
        raise InvalidInput(f"unknown SNDS table {name!r} (see pds snds tables for the catalogue)")
    return name


def table_dir(lake: Path, table: str) -> Path:
    return lake / check_table_name(table)


def partition_dir(lake: Path, table: str, month: str | None) -> Path:
    """Directory of one partition: ``month=YYYYMM`` for a month, ``year=YYYY`` for a year (yearly
    PMSI files), ``snapshot`` otherwise."""
    if month is None:
        return table_dir(lake, table) / "snapshot"
    if _YEAR.match(month):
        return table_dir(lake, table) / f"year={month}"
    if not _MONTH.match(month):
        raise InvalidInput(f"bad month {month!r}: expected YYYYMM (or YYYY for a yearly file)")
    return table_dir(lake, table) / f"month={month}"


def table_files(lake: Path, table: str) -> list[Path]:
    """The committed Parquet files of ``table`` (named by the ingest manifest), in a stable order:
    a file left on disk by a killed ingest is never read."""
    return committed_files(lake, table)


def has_table(lake: Path, table: str) -> bool:
    return bool(table_files(lake, table))


def read_manifest(lake: Path) -> dict[str, dict]:
    """The manifest's entries by file name: ``_manifest.json`` with the lines of its journal
    applied in order (see :mod:`pds_kernel.ingest.manifest`). A torn last journal line (a kill
    while it was written) is ignored; any other unreadable content is an integrity error."""
    manifest, journal = lake / MANIFEST_NAME, lake / JOURNAL_NAME
    files: dict[str, dict] = {}
    try:
        if manifest.is_file():
            files = dict(json.loads(manifest.read_text(encoding="utf-8"))["files"])
        if journal.is_file():
            data = journal.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                entry = json.loads(line)
                files[entry["name"]] = entry
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"ingest manifest {manifest} (or its journal) is unreadable ({exc}): "
                             "restore it from backup") from None
    return files


def committed_files(lake: Path, table: str) -> list[Path]:
    """The Parquet files of ``table`` that the ingest manifest names, in a stable order; none
    when there is no manifest yet. A manifest naming a file outside the table's folder is refused."""
    folder = table_dir(lake, table)
    manifest = lake / MANIFEST_NAME
    try:
        names = [e["parquet"] for e in read_manifest(lake).values() if e.get("table") == table]
    except (KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"ingest manifest {manifest} is unreadable ({exc}): restore it from backup") from None
    root = folder.resolve()
    files = []
    for name in names:
        path = lake / name if isinstance(name, str) else folder
        if root not in path.resolve().parents or path.suffix != ".parquet":
            raise IntegrityError(f"ingest manifest {manifest} names {name!r} outside {folder}: restore it from backup")
        files.append(path)
    return sorted(files)


def manifest_of_written_files(lake: Path) -> dict:
    """A manifest naming every Parquet file under ``lake``, for lakes written without the ingest
    (test fixtures, benchmarks): readers only see files a manifest names."""
    files = {}
    for parquet in sorted(lake.glob("*/*/*.parquet")):
        name = str(parquet.relative_to(lake))
        files[name] = {"table": parquet.parts[-3], "parquet": name}
    return {"format": 1, "files": files}


def scan_table(lake: Path, table: str) -> pl.LazyFrame:
    """A lazy view of ``table`` over all its committed files (without the partition column)."""
    files = committed_files(lake, table)
    if not files:
        raise NotFound(f"table {table} is not in the lake at {lake}: ingest a delivery first")
    return pl.scan_parquet(files, hive_partitioning=False)


def snapshot_id(lake: Path) -> str:
    """A short fingerprint of the lake's content (hash of its manifest), recorded in extracts."""
    manifest, journal = lake / MANIFEST_NAME, lake / JOURNAL_NAME
    if not manifest.is_file() and not journal.is_file():
        raise NotFound(f"no ingest manifest at {manifest}: ingest a delivery first")
    digest = hashlib.sha256(manifest.read_bytes() if manifest.is_file() else b"")
    if journal.is_file():  # files committed by a run that has not finished (or was killed)
        digest.update(journal.read_bytes())
    return digest.hexdigest()[:16]
