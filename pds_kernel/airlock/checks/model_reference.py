"""The numbers of a project's extract that a model's tensors are compared with (rule ``model-tensors``).

The gate reads the project's published extract (the tables its ``manifest.json`` lists, through
the build it checked: :func:`pds_kernel.airlock.extract_reads.extract_numbers`); a workspace reads
its ``/data`` (:func:`reference_at`: the manifest's tables, or every ``*.parquet`` there when it
has no manifest). Both read with pyarrow (:func:`read_reference`) and
keeps, for each numeric or date column, its values in the extract's row order and its distinct
values. A date column is kept three times, as the numbers a date becomes when it is stored in a
tensor: days since 1970-01-01, days since 1960-01-01 (SAS) and ``YYYYMMDD``. The project's
pseudonyms (``PERSON_ID``, 64 hexadecimal characters) become numbers too: the integers their first
6 to 13 hexadecimal digits spell, and the first 8 bytes of each pseudonym's binary form (a
pseudonym written into a tensor's bytes).

At most :data:`MAX_ROWS` rows of each table are read, batch by batch (the table is then named in
:attr:`Reference.unread`, and the rule says so). The result is cached per extract (the gate's by
its checked build and fingerprint; a workspace's by its directory and the modification time of
its manifest), for the last two extracts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

PERSON_ID = "PERSON_ID"
#: rows of one extract table the gate reads, at most (a column costs 8 bytes a row, a date 24)
MAX_ROWS = 1_000_000
#: the hexadecimal prefixes of a pseudonym read as integers (6 digits: 24 bits, exact in float32)
ID_PREFIX_DIGITS = range(6, 14)
_DAY = np.timedelta64(1, "D")
_SAS_OFFSET = 3653  #: days from 1960-01-01 to 1970-01-01


@dataclass(frozen=True)
class Column:
    """One numeric view of one extract column."""

    label: str  #: ``TABLE.COLUMN`` and the encoding, for humans
    values: np.ndarray  #: float64, in the extract's row order, nulls dropped
    distinct: np.ndarray  #: sorted distinct values of ``values``


@dataclass
class Reference:
    """What the gate knows of a project's extract as numbers (see the module)."""

    columns: list[Column] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  #: table -> rows
    persons: int = 0
    id_numbers: np.ndarray = field(default_factory=lambda: np.empty(0))  #: sorted, float64
    id_bytes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  #: sorted
    unread: list[str] = field(default_factory=list)  #: tables read only in part
    cache: dict = field(default_factory=dict)  #: what :mod:`.model_tensors` derives from the columns, once


def _table_files(directory: Path) -> dict[str, list[str]]:
    """Table -> its files (relative to ``directory``): the manifest's, or every ``*.parquet``."""
    manifest = directory / "manifest.json"
    if manifest.is_file():
        return manifest_tables(json.loads(manifest.read_text(encoding="utf-8")))
    return {path.stem: [path.name] for path in sorted(directory.glob("*.parquet"))}


def manifest_tables(manifest: dict) -> dict[str, list[str]]:
    """Table -> its files (relative to the extract), as ``manifest.json`` lists them."""
    out = {}
    for name, entry in (manifest.get("tables") or {}).items():
        files = entry.get("files") if "files" in entry else [{"file": entry.get("file")}]
        out[str(name)] = [str(f["file"]) for f in files if isinstance(f, dict) and f.get("file")]
    return out


def _date_views(table: str, name: str, days: np.ndarray) -> list[Column]:
    stamps = days.astype("datetime64[D]")
    years = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
    months = stamps.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (stamps - stamps.astype("datetime64[M]")).astype(np.int64) + 1
    views = {"days since 1970": days.astype(np.float64), "days since 1960": (days + _SAS_OFFSET).astype(np.float64),
             "YYYYMMDD": (years * 10000 + months * 100 + day).astype(np.float64)}
    return [Column(f"{table}.{name} ({how})", v, np.unique(v)) for how, v in views.items()]


def _columns_of(table: str, frame) -> list[Column]:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for name, column in zip(frame.column_names, frame.columns):
        kind = column.type
        column = pc.drop_null(column)
        if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            days = pc.cast(pc.cast(column, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
            out.extend(_date_views(table, name, days.astype(np.int64)))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            values = values[np.isfinite(values)]
            out.append(Column(f"{table}.{name}", values, np.unique(values)))
    return out


def _id_numbers(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    numbers, raw = [], []
    for pid in ids:
        try:
            binary = bytes.fromhex(pid[:16])
        except ValueError:
            continue
        numbers.extend(float(int(pid[:k], 16)) for k in ID_PREFIX_DIGITS)
        if len(binary) == 8:
            raw.extend((int.from_bytes(binary, "little"), int.from_bytes(binary, "big")))
    return np.unique(np.array(numbers, dtype=np.float64)), np.unique(np.array(raw, dtype=np.uint64))


@lru_cache(maxsize=2)
def _load(directory: str, stamp: int) -> Reference:
    return read_reference(_table_files(Path(directory)), lambda rel: open(Path(directory) / rel, "rb"))


def read_reference(tables: dict[str, list[str]], open_file: Callable[[str], BinaryIO]) -> Reference:
    """The numbers of the extract whose tables (name -> files) ``open_file`` opens (see the module)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = Reference()
    ids: set[str] = set()
    for table, files in sorted(tables.items()):
        batches, rows, total = [], 0, 0
        for rel in files:
            with open_file(rel) as handle:
                parquet = pq.ParquetFile(handle)
                total += parquet.metadata.num_rows
                for batch in parquet.iter_batches(batch_size=65536):
                    if rows >= MAX_ROWS:
                        break
                    batches.append(batch.slice(0, MAX_ROWS - rows))
                    rows += len(batches[-1])
        if total > rows:
            ref.unread.append(table)
        if not batches:
            continue
        frame = pa.Table.from_batches(batches)
        ref.rows[table] = len(frame)
        if PERSON_ID in frame.column_names:
            ids.update(str(v) for v in frame.column(PERSON_ID).to_pylist() if v)
        ref.columns.extend(_columns_of(table, frame.drop_columns([PERSON_ID]) if PERSON_ID in frame.column_names
                                       else frame))
    ref.persons = len(ids)
    ref.id_numbers, ref.id_bytes = _id_numbers(sorted(ids))
    return ref


def reference_at(directory: Path) -> Reference | None:
    """The numbers of the extract at ``directory`` (a workspace's ``/data``), or None without one."""
    try:
        resolved = directory.resolve(strict=True)
        marker = resolved / "manifest.json"
        stamps = [p.stat().st_mtime_ns for p in ([marker] if marker.is_file() else sorted(resolved.glob("*.parquet")))]
    except OSError:
        return None
    if not stamps:
        return None
    return _load(str(resolved), max(stamps))


__all__ = ["Column", "Reference", "manifest_tables", "read_reference", "reference_at", "MAX_ROWS"]
