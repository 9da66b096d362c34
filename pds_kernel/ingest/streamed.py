"""The streamed parse of a clean file: one query of polars' streaming engine, CSV to Parquet.

Most files of a delivery, and nearly all of its large claims files, have clean bytes: ASCII text,
``\\n`` line ends, exactly one field per column on every line, no control byte, a final line end.
For such a file the block parser of :mod:`.parse` (Python cuts blocks, polars reads, checks and
writes each) leaves the cores idle between its steps. Here one lazy query reads the file, types
and checks its rows and writes the rows that pass to the lake file, streamed in morsels on every
core; its other branches compute, in the same pass, what the pipeline needs of the loaded rows
(their count, line numbers and key hashes, nulls and missing dates, and per column checked
against a nomenclature the rows whose code it lacks).

Whether the bytes are clean is established first, in the pass over the file that its SHA-256
needs anyway (:func:`scan_bytes`): no byte above 0x7F (so every declared encoding reads the same
text, and the encoding checks of the block parser have nothing to find), no byte below 0x20 but
line feeds (no NUL, tab or carriage return), no double quote, a final line end, and exactly as many separators as
the lines need (a line with too many fields fails the reader). Any other file goes to the block
parser, which reads it once, block by block, and finds and reports each flaw.

Rows that fail a check are quarantined from a second query, which reads the file as text and keeps
only the bad rows with their first failing check and their raw line (rebuilt exactly from the
fields: each line has one per column and no field holds ``;``). The rows loaded and quarantined
must add up to the lines counted, and the file must be the same file, unchanged, after the last
read as before the first (:func:`identity`), or the block parser parses it again. Both parsers load
the same rows with the same values and report the same figures (tests/ingest/test_streamed_parse.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from .checks import build_lake_columns, build_table_checks, joined_fields, quarantine_entry, row_flags
from .keys import key_hash_exprs
from .stats import figure_exprs

#: Files smaller than this are parsed by the block parser: for a few blocks, planning and starting
#: a streaming query costs more than it saves.
MIN_BYTES = 8 << 20
#: Rows per row group of a streamed file. polars' Parquet writer has no dictionary page limit, so at
#: the block parser's 50,000 rows its files were 10 % larger (126 MB against 115 MB for the bench's
#: twelve claims files); at 131,072 (DuckDB writes 122,880) they are 5 % larger, for the same time
#: and memory; at 262,144 they are 1 % smaller but the run holds 30 MiB more.
ROW_GROUP_ROWS = 131_072
#: Bytes read at a time while the file is hashed and its bytes are counted. Each count makes a
#: temporary array of the chunk's size: 1 MiB chunks held 15-25 MiB less at the run's peak than
#: 8 MiB ones (whole runs of the ingest bench: 375-393 against 413-432 MiB), in the same time.
_CHUNK_BYTES = 1 << 20
#: One streaming query at a time in a process: each uses every core, and two at once held 140 MiB
#: more for no gain in time (measured on twelve 72 MB claims files); the other parse thread hashes
#: and scans its next file meanwhile.
_ONE_QUERY = threading.Lock()
_CONTROL = 0x20  # bytes below are control characters
_NEWLINE = ord("\n")
_SEPARATOR = ord(";")


def identity(source: Path, fh) -> tuple:
    """What changes when the file at ``source`` (open as ``fh``) is written, replaced or touched:
    the file is read twice (hashed and checked, then loaded), so the caller compares this before
    the first read and after the second. A change time cannot be set back by a user."""
    def fields(st):
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    return fields(os.stat(source)), fields(os.fstat(fh.fileno()))


@dataclass(frozen=True)
class Scan:
    """What the pass over a file's body found: ``rows`` lines, and whether a blank occurs."""

    rows: int
    blanks: bool


def scan_bytes(fh, first: bytes, digest, columns: int) -> Scan | None:
    """Hash the rest of ``fh`` (its body, ``first`` already read) into ``digest`` and return its
    line count when the body is clean (see the module's docstring), else ``None``: the caller then
    rewinds and parses with the block parser (the digest must be restarted too)."""
    buffer = bytearray(_CHUNK_BYTES)
    view = memoryview(buffer)
    rows = separators = 0
    blanks = False
    last = b""
    chunk, size = first, len(first)
    while size:
        codes = np.frombuffer(chunk, dtype=np.uint8, count=size)
        if codes.max() >= 0x80:
            return None
        lines = int(np.count_nonzero(codes == _NEWLINE))
        if int(np.count_nonzero(codes < _CONTROL)) != lines:
            return None  # a tab, a carriage return, a NUL or another control byte
        rows += lines
        separators += int(np.count_nonzero(codes == _SEPARATOR))
        blanks = blanks or chunk.find(b" ", 0, size) >= 0
        if chunk.find(b'"', 0, size) >= 0:
            return None  # a quote: its line is quarantined by the block parser (Check.QUOTE)
        last = bytes(chunk[size - 1:size])
        size = fh.readinto(buffer)
        chunk = buffer
        digest.update(view[:size])
    if last != b"\n" or separators != rows * (columns - 1):
        return None  # a cut last line, or a line with too few fields (too many fail the reader)
    return Scan(rows, blanks)


@dataclass
class Streamed:
    """What the query found in the rows it loaded (see :func:`stream_rows`)."""

    loaded: int
    figures: dict  #: one row of :func:`.stats.figure_exprs`
    keys: pl.DataFrame | None  #: ``line``, ``h1``, ``h2`` of the loaded rows; None without a key
    unknown_codes: dict[str, int]  #: per column checked against a nomenclature: rows it lacks


def _rows(source: Path, table, header: list[str], references: dict, month: str | None,
          numbers: dict[str, pl.DataType], latest: date | None, blanks: bool
          ) -> tuple[pl.LazyFrame, pl.Expr, list]:
    """The file's rows, as the block parser sees them (line numbers, text columns, typed copies,
    ``__fields`` and ``__flaw``: clean bytes mean one field per column and no flawed line), with
    the flag of a bad row and the checks it was built from (:func:`quarantined_rows` builds their
    quarantine entry). ``blanks``: whether the file holds a space (:attr:`Scan.blanks`; without
    one, no check of blanks around codes can fail)."""
    typed, checks = build_table_checks(table, set(header), references, month, latest, blanks)
    flags = row_flags(len(header), checks)
    frame = (pl.scan_csv(source, separator=";", quote_char=None, has_header=True, encoding="utf8",
                         schema={c: numbers.get(c, pl.String) for c in header}, glob=False)
             .with_row_index("__line", offset=2)
             .with_columns(pl.lit(len(header), dtype=pl.UInt32).alias("__fields"),
                           pl.lit(None, dtype=pl.String).alias("__flaw"), *typed.values()))
    return frame, pl.any_horizontal(flags).fill_null(True), checks


def stream_rows(source: Path, table, header: list[str], references: dict, month: str | None,
                numbers: dict[str, pl.DataType], lake_types: dict, target: Path,
                known_codes: dict[str, pl.Series], latest: date | None = None, blanks: bool = True) -> Streamed | None:
    """Write the rows of ``source`` that pass every check to ``target`` and compute, in the same
    pass (the branches of one query share the reading and the checks), the figures the pipeline
    needs of them. ``numbers``: the columns to read as numbers (the others are read as text and typed by
    the checks' expressions); ``known_codes``: per column checked against a nomenclature, its
    codes in the column's lake type (a loaded value not among them is counted for the report).
    ``None`` when the reader refused a number: read them as text. ``blanks``: see :func:`_rows`."""
    frame, bad, _ = _rows(source, table, header, references, month, numbers, latest, blanks)
    good = frame.filter(~bad).select("__line", *build_lake_columns(table, set(header))).cast(lake_types)
    queries = [good.drop("__line").sink_parquet(target, compression="zstd", compression_level=1,
                                                maintain_order=True, row_group_size=ROW_GROUP_ROWS,
                                                lazy=True),
               good.select(pl.len().alias("loaded"), *figure_exprs(table.name, month),
                           *(_unknown(c, codes) for c, codes in known_codes.items()))]
    if table.primary_key:
        queries.append(good.select(pl.col("__line").alias("line"), *key_hash_exprs(table.name)))
    try:
        with _ONE_QUERY:
            _, figures, *rest = pl.collect_all(queries, engine="streaming")
    except pl.exceptions.PolarsError:
        target.unlink(missing_ok=True)
        return None
    figures = figures.row(0, named=True)
    unknown = {c: figures.pop(f"u:{c}") for c in known_codes}
    return Streamed(loaded=figures.pop("loaded"), figures=figures, keys=rest[0] if rest else None,
                    unknown_codes={c: n for c, n in unknown.items() if n})


def _unknown(column: str, codes: pl.Series) -> pl.Expr:
    """Rows whose ``column`` holds a value that is not among ``codes`` (nulls are not counted):
    a probe per row into a set built once per query, cheaper than grouping the values (measured:
    nine group-bys cost ~7 % of the query's CPU on a claims file, the probes ~1 %)."""
    return (pl.col(column).is_not_null() & ~pl.col(column).is_in(codes.implode())).sum().alias(f"u:{column}")


def quarantined_rows(source: Path, table, header: list[str], references: dict, month: str | None,
                     latest: date | None = None, blanks: bool = True) -> pl.DataFrame | None:
    """The quarantine entries of ``source`` (line, check, column, reason, raw), read as text so
    that the raw line is rebuilt exactly from its fields (every line has one per column and no
    field holds ``;``); ``None`` if the reader fails (the file changed since it was checked). A
    second pass, taken only by a file with rows to quarantine: a branch of the loading query that
    kept the bad rows would read and check the file again anyway."""
    frame, bad, checks = _rows(source, table, header, references, month, {}, latest, blanks)
    entry = quarantine_entry(len(header), checks)
    try:
        with _ONE_QUERY:
            return (frame.filter(bad)
                    .select(pl.col("__line").alias("line"), *entry, joined_fields(header).alias("raw"))
                    .collect(engine="streaming"))
    except pl.exceptions.PolarsError:
        return None
