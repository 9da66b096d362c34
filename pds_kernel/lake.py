"""Layout of the lake: where each table's Parquet files live, and how to read them.

    lake/<TABLE>/month=YYYYMM/<source-file-stem>.parquet   monthly tables (one file per delivered file)
    lake/<TABLE>/snapshot/<source-file-stem>.parquet       snapshot tables (referentials)
    lake/_quarantine/<TABLE>/<source-file-stem>.csv        rejected rows, with line number and reason
    lake/_manifest.json                                    the ingest manifest (owned by pds_kernel.ingest)

Readers use :func:`scan_table`, never the paths directly, so the layout can change in one place.
The table and month names that reach a path are validated here (never trust a name from outside).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import polars as pl

from .errors import InvalidInput, NotFound
from .snds.tables import TABLES

MANIFEST_NAME = "_manifest.json"
QUARANTINE_DIR = "_quarantine"
_MONTH = re.compile(r"^[0-9]{6}$")


def check_table_name(name: str) -> str:
    if name not in TABLES:
        raise InvalidInput(f"unknown SNDS table {name!r} (known: {', '.join(TABLES)})")
    return name


def table_dir(lake: Path, table: str) -> Path:
    return lake / check_table_name(table)


def partition_dir(lake: Path, table: str, month: str | None) -> Path:
    """Directory of one partition: ``month=YYYYMM`` for monthly tables, ``snapshot`` otherwise."""
    if month is None:
        return table_dir(lake, table) / "snapshot"
    if not _MONTH.match(month):
        raise InvalidInput(f"bad month {month!r}: expected YYYYMM")
    return table_dir(lake, table) / f"month={month}"


def table_files(lake: Path, table: str) -> list[Path]:
    """Every Parquet file of ``table``, in a stable order."""
    return sorted(table_dir(lake, table).glob("*/*.parquet"))


def has_table(lake: Path, table: str) -> bool:
    return bool(table_files(lake, table))


def scan_table(lake: Path, table: str) -> pl.LazyFrame:
    """A lazy view of ``table`` over all its partitions (without the partition column)."""
    files = table_files(lake, table)
    if not files:
        raise NotFound(f"table {table} is not in the lake at {lake}: ingest a delivery first")
    return pl.scan_parquet(files, hive_partitioning=False)


def snapshot_id(lake: Path) -> str:
    """A short fingerprint of the lake's content (hash of its manifest), recorded in extracts."""
    manifest = lake / MANIFEST_NAME
    if not manifest.is_file():
        raise NotFound(f"no ingest manifest at {manifest}: ingest a delivery first")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
