"""Layout of the lake: where each table's Parquet files live, and how to read them.

    lake/<TABLE>/month=YYYYMM/<source-file-stem>.parquet   monthly tables (one file per delivered file)
    lake/<TABLE>/year=YYYY/<source-file-stem>.parquet      yearly files (PMSI ``T_MCO23B.csv``)
    lake/<TABLE>/snapshot/<source-file-stem>.parquet       snapshot tables (referentials)
    lake/<TABLE>/.../<stem>.<run>.parquet                  a correction's file (the old one stays for old versions)
    lake/<TABLE>/_delta_log/                               the table's versions (Delta Lake, see .versions)
    lake/_quarantine/<TABLE>/<source-file-stem>.csv        rejected rows, with line number and reason
    lake/_manifest.json                                    the ingest ledger (owned by pds_kernel.ingest)
    lake/_manifest.journal                                 ledger entries written since it was last saved

Readers use :func:`scan_table` or :func:`table_files`, never the paths directly, so the layout can
change in one place. They read only the files that the table's version names (the latest, or the
one given): the ingest moves a file into place before it commits it, so a file on disk that no
version names is uncommitted (being committed, or left by a killed run) and must stay invisible.
A lake written before versions (no ``_delta_log``) is read from its ledger until ``pds lake
upgrade`` converts it. The table and month names that reach a path are validated here (never
trust a name from outside), and so are the paths the log and the ledger hold.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from ..errors import IntegrityError, InvalidInput, InvalidTransition, NotFound

MANIFEST_NAME = "_manifest.json"
JOURNAL_NAME = "_manifest.journal"
QUARANTINE_DIR = "_quarantine"
LOCK_NAME = ".ingest.lock"
_MONTH = re.compile(r"^[0-9]{6}$")
_YEAR = re.compile(r"^[0-9]{4}$")


def check_table_name(name: str) -> str:
    from ..snds.catalogue import is_ingestible

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
    if _YEAR.fullmatch(month):
        return table_dir(lake, table) / f"year={month}"
    if not _MONTH.fullmatch(month):
        raise InvalidInput(f"bad month {month!r}: expected YYYYMM (or YYYY for a yearly file)")
    return table_dir(lake, table) / f"month={month}"


def table_files(lake: Path, table: str, version: int | None = None) -> list[Path]:
    """The committed Parquet files of ``table`` at ``version`` (latest when None), in a stable
    order: a file left on disk by a killed ingest is never read."""
    from .versions import files_at, is_versioned

    if is_versioned(lake, table):
        return files_at(lake, table, version)[0]
    if version is not None:
        raise NotFound(f"table {table} has no versions in the lake at {lake} (written before versions): "
                       "run pds lake upgrade")
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
    """The Parquet files of ``table`` that the ingest ledger names (a lake written before versions),
    in a stable order; none when there is no ledger. One naming a file outside the table's folder is refused."""
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


def data_files_on_disk(lake: Path) -> list[Path]:
    """Every Parquet file in a partition folder of a table (``lake/<TABLE>/<partition>/*.parquet``),
    committed or not; never the Delta log's checkpoints (``<TABLE>/_delta_log/*.parquet``)."""
    from ..snds.catalogue import is_ingestible

    return sorted(p for p in lake.glob("*/*/*.parquet")
                  if p.parent.name != "_delta_log" and is_ingestible(p.parts[-3]))


def manifest_of_written_files(lake: Path) -> dict:
    """A manifest naming every Parquet file under ``lake``, for lakes written without the ingest
    (test fixtures, benchmarks): readers only see files a manifest names."""
    files = {}
    for parquet in data_files_on_disk(lake):
        name = str(parquet.relative_to(lake))
        files[name] = {"table": parquet.parts[-3], "parquet": name}
    return {"format": 1, "files": files}


def scan_table(lake: Path, table: str, version: int | None = None) -> pl.LazyFrame:
    """A lazy view of ``table`` at ``version`` (latest when None), without the partition column."""
    files = table_files(lake, table, version)
    if not files:
        raise NotFound(f"table {table} is not in the lake at {lake}: ingest a delivery first")
    return pl.scan_parquet(files, hive_partitioning=False)


def has_lake(lake: Path) -> bool:
    """True when the lake holds anything committed (a versioned table or a ledger)."""
    from .versions import versioned_tables

    return (lake / MANIFEST_NAME).is_file() or (lake / JOURNAL_NAME).is_file() or bool(versioned_tables(lake))


def snapshot_id(lake: Path, versions: dict[str, int] | None = None) -> str:
    """A short fingerprint of what the lake holds, recorded in extracts: of the tables' versions
    (``versions``, else every versioned table's latest), and of the ledger of a lake written
    before versions."""
    from .versions import lake_versions, versioned_tables

    manifest, journal = lake / MANIFEST_NAME, lake / JOURNAL_NAME
    if versions is None:
        versions = lake_versions(lake, versioned_tables(lake))
    if versions:
        return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    if not manifest.is_file() and not journal.is_file():
        raise NotFound(f"no ingest manifest at {manifest}: ingest a delivery first")
    digest = hashlib.sha256(manifest.read_bytes() if manifest.is_file() else b"")
    if journal.is_file():  # files committed by a run that has not finished (or was killed)
        digest.update(journal.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def lake_lock(lake: Path) -> Iterator[None]:
    """Hold the lake's writer lock (ingest, upgrade, expiry); refuse when another writer holds it."""
    lake.mkdir(parents=True, exist_ok=True)
    with (lake / LOCK_NAME).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidTransition(f"another ingest is running on the lake {lake}: wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
