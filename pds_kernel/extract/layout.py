"""How an extract's tables are laid out in files: partitions by a hash of PERSON_ID.

Every table with a ``PERSON_ID`` column (except COHORT) is a directory of ``P`` Parquet files,
``<TABLE>/part-<i>-of-<P>.parquet``: partition ``i`` holds exactly the rows whose PERSON_ID falls
in bucket ``i`` (:func:`bucket`), sorted in the canonical order (:func:`.order.sort_rows`). Other
tables (COHORT, one row per person, read by the gate and the model check as ``COHORT.parquet``;
referentials without PERSON_ID such as IR_PHA_R) are one file, ``<TABLE>.parquet``.

Why by person and not by month: a person's rows of every table are in the same partition number,
so per-partition results add up exactly (distinct persons per quasi-identifier combination for
k-anonymity, persons outside the cohort), a researcher can join tables partition by partition, and
the file names say nothing the rows do not (a month partition would reveal the DCIR flux month
even when the spec leaves FLX_DIS_DTD out).

The bucket is the first 8 hexadecimal digits of the pseudonym (an HMAC-SHA256 in hex, so uniform)
as an integer, modulo ``P``: defined by the pseudonym alone, not by a library's hash function, so
it does not change with a polars upgrade. ``P`` grows with the cohort (:func:`partition_count`), so
the same spec on the same lake version always gives the same ``P`` and the same bytes, on one
machine or on Dask.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from ..hashing import sha256_file
from .order import sort_columns, sort_rows
from .spec import COHORT_TABLE, PERSON_ID

#: Parquet writer options of every extract file: fixed, so that the same rows always give the same
#: bytes (polars' writer: it encodes columns in parallel, twice as fast as pyarrow's here).
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, row_group_size=256 * 1024, statistics=True)
#: Cohort persons per partition: a national cohort of 4 million persons gives 40 partitions of
#: their claims (tens of millions of rows each over a few years), each sorted and written by one
#: worker in a few GB of memory.
PERSONS_PER_PARTITION = 100_000
HASH_DIGITS = 8
PARTITION_RULE = (f"int(PERSON_ID[:{HASH_DIGITS}], 16) % partitions; rows sorted on every column "
                  "inside each file")
_BUCKET = "__bucket"


def partition_count(persons: int, per_partition: int | None = None) -> int:
    """How many partitions a cohort of ``persons`` gets (at least 1)."""
    per = per_partition or PERSONS_PER_PARTITION
    if per < 1:
        raise ValueError(f"persons per partition must be at least 1, not {per}")
    return max(1, math.ceil(persons / per))


def is_partitioned(table: str, columns: list[str]) -> bool:
    return table != COHORT_TABLE and PERSON_ID in columns


def bucket(partitions: int) -> pl.Expr:
    """The partition number of each row (null PERSON_ID: partition 0)."""
    digits = pl.col(PERSON_ID).str.slice(0, HASH_DIGITS).str.to_integer(base=16, strict=False)
    return (digits % partitions).fill_null(0).cast(pl.UInt32)


def partition_file(table: str, index: int, partitions: int) -> str:
    width = max(5, len(str(partitions)))
    return f"{table}/part-{index:0{width}d}-of-{partitions:0{width}d}.parquet"


def single_file(table: str) -> str:
    return f"{table}.parquet"


def split(df: pl.DataFrame, partitions: int) -> dict[int, pl.DataFrame]:
    """The rows of ``df`` by partition number (only the non-empty partitions)."""
    if df.is_empty():
        return {}
    parts = df.with_columns(bucket(partitions).alias(_BUCKET)).partition_by(
        _BUCKET, include_key=False, as_dict=True, maintain_order=True)
    return {int(key[0]): part for key, part in parts.items()}


def write_file(df: pl.DataFrame, root: Path, file: str) -> dict:
    """Sort ``df`` in the canonical order and write it at ``root/file`` with the fixed options
    (no timestamp: equal rows give equal bytes). Returns ``{file, rows, size, sha256}``."""
    return _write_sorted(sort_rows(df), root, file)


def _write_sorted(df: pl.DataFrame, root: Path, file: str) -> dict:
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    df.rechunk().write_parquet(path, **PARQUET_OPTIONS)
    return {"file": file, "rows": df.height, "size": path.stat().st_size, "sha256": sha256_file(path)}


def table_entry(columns: list[str], files: list[dict], partitions: int | None) -> dict:
    """A table's entry in the manifest: one file (``file``, ``sha256``) or its partitions
    (``files``, each with its rows and SHA-256)."""
    entry: dict = {"columns": columns, "rows": sum(f["rows"] for f in files)}
    if partitions is None:
        entry.update(file=files[0]["file"], size=files[0]["size"], sha256=files[0]["sha256"])
    else:
        entry.update(partitioning={"by": PERSON_ID, "partitions": partitions, "rule": PARTITION_RULE},
                     files=sorted(files, key=lambda f: f["file"]))
    return entry


def entry_files(entry: dict) -> list[dict]:
    """``[{file, rows?, size?, sha256}]`` of a manifest entry, whichever its layout."""
    if "files" in entry:
        return list(entry["files"])
    return [{"file": entry["file"], "rows": entry.get("rows"), "size": entry.get("size"), "sha256": entry.get("sha256")}]


def table_paths(directory: Path, table: str, manifest: dict) -> list[Path]:
    """The files of ``table`` in the extract at ``directory``, in partition order."""
    return [Path(directory) / f["file"] for f in entry_files(manifest["tables"][table])]


def read_table(directory: Path, table: str) -> pl.DataFrame:
    """A whole extract table (every partition), for tests and small extracts."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))
    return pl.read_parquet(table_paths(directory, table, manifest))


def write_frame(df: pl.DataFrame, root: Path, table: str, partitions: int | None) -> list[dict]:
    """Write a whole table held in memory (the single-machine path): one file, or ``partitions``
    files (every partition, empty ones too, so the layout depends on ``partitions`` alone)."""
    if partitions is None:
        return [write_file(df, root, single_file(table))]
    parts = split(df, partitions)
    return [write_file(parts.get(i, df.clear()), root, partition_file(table, i, partitions))
            for i in range(partitions)]


def write_taken_frame(holder: list[pl.DataFrame], root: Path, table: str, partitions: int | None) -> list[dict]:
    """:func:`write_frame` of the one frame in ``holder``, which it takes out: the same files,
    bytes and result, in less memory when ``holder`` held the frame's only reference (the
    single-machine path, whose tables are held whole). A one-file table (or one partition) is
    sorted column by column as its unsorted columns are freed (:func:`.order.sort_columns`);
    with several partitions, each partition's rows are copied out, sorted and written in turn,
    so the table is held once plus one partition, never split into all its partitions at once."""
    df = holder.pop()
    if partitions is None or partitions == 1:  # every row is in bucket 0 of 1
        file = single_file(table) if partitions is None else partition_file(table, 0, 1)
        columns = df.get_columns()
        del df
        return [_write_sorted(sort_columns(columns), root, file)]
    buckets = df.select(bucket(partitions)).to_series()
    files = []
    for i in range(partitions):
        columns = df.filter(buckets == i).get_columns()
        files.append(_write_sorted(sort_columns(columns), root, partition_file(table, i, partitions)))
    return files


def read_tables(directory: Path) -> dict[str, pl.DataFrame]:
    """Every table of the extract at ``directory``, whole (for tests and small extracts)."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))
    return {name: pl.read_parquet(table_paths(directory, name, manifest)) for name in sorted(manifest["tables"])}


def file_hashes(manifest: dict) -> dict[str, str]:
    """``{file: sha256}`` of every file of an extract's manifest."""
    return {f["file"]: f["sha256"] for entry in manifest["tables"].values() for f in entry_files(entry)}
