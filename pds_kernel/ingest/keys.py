"""Duplicate primary keys: within a file, and against what the lake already holds.

Keys are compared as two independent 64-bit hashes of the key columns (128 bits: a false match is
vanishingly unlikely even over billions of rows) so that the index of a table stays small: 16 bytes
per loaded row plus where it came from. The first occurrence wins: a later row with the same key is
quarantined with the file and line of the row it duplicates.

The pipeline checks files one at a time in load order, whatever order workers finished in, so a
local run and a Dask run quarantine exactly the same rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..snds.tables import TABLES

_SEEDS = (0x5DF1, 0x9E37)


#: Staged companion of a parsed file: line number and key hashes of each loaded row, in order.
LINES_SCHEMA = {"line": pl.UInt32, "h1": pl.UInt64, "h2": pl.UInt64}


def key_hash_exprs(table: str) -> list[pl.Expr]:
    """``h1``, ``h2``: the two hashes of the primary key of a row with the lake types of ``table``
    (the parser hashes rows before writing them; the same values read back hash the same)."""
    key = pl.struct(list(TABLES[table].primary_key))
    return [key.hash(seed=_SEEDS[0]).alias("h1"), key.hash(seed=_SEEDS[1]).alias("h2")]


def key_hashes(frame: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """``h1``, ``h2`` of each row of ``frame`` (a lake file of ``table``)."""
    return frame.select(key_hash_exprs(table))


class KeyIndex:
    """Keys already loaded for one table, with their origin (file name and line, when known)."""

    def __init__(self, table: str):
        self.table = table
        self._names: list[str] = []
        self._parts: list[pl.DataFrame] = []

    def add(self, name: str, hashes: pl.DataFrame, lines: pl.Series | None) -> None:
        """Record the keys of the rows loaded from file ``name`` (``lines``: their line numbers)."""
        origin = len(self._names)
        self._names.append(name)
        line = lines.cast(pl.UInt32) if lines is not None else pl.Series([None] * hashes.height, dtype=pl.UInt32)
        self._parts.append(hashes.with_columns(pl.lit(origin, dtype=pl.UInt32).alias("origin"),
                                               line.alias("first_line")))

    def add_lake_file(self, name: str, parquet: Path) -> None:
        self.add(name, key_hashes(pl.scan_parquet(parquet), self.table).collect(), None)

    def find_duplicates(self, hashes: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
        """Rows of a new file whose key was seen before: ``row`` (position in the file's loaded
        rows), ``line``, ``first_file``, ``first_line``. Empty frame when there is none.

        Candidates are found on ``h1`` alone (one 64-bit column: fast) and confirmed on ``h2``."""
        current = hashes.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                                      lines.cast(pl.UInt32).alias("line"))
        found = []
        if self._parts:
            known = pl.concat(self._parts, rechunk=False)
            against = (current.join(known, on="h1", how="inner", suffix="_known")
                       .filter(pl.col("h2") == pl.col("h2_known")))
            if against.height:
                found.append(against.with_columns(
                    pl.col("origin").replace_strict(list(range(len(self._names))), self._names,
                                                    return_dtype=pl.String).alias("first_file")
                ).select("row", "line", "first_file", "first_line"))
                current = current.join(against.select("row"), on="row", how="anti")
        maybe = current.filter(pl.col("h1").is_duplicated())
        if maybe.height:
            repeated = ~pl.struct("h1", "h2").is_first_distinct()
            repeats = maybe.filter(repeated)
            firsts = maybe.filter(~repeated).select("h1", "h2", pl.col("line").alias("first_line"))
            if repeats.height:
                found.append(repeats.join(firsts, on=["h1", "h2"], how="left")
                             .select("row", "line", pl.lit(None, dtype=pl.String).alias("first_file"),
                                     "first_line"))
        if not found:
            return pl.DataFrame(schema={"row": pl.UInt32, "line": pl.UInt32,
                                        "first_file": pl.String, "first_line": pl.UInt32})
        return pl.concat(found).sort("row")
