"""Duplicate primary keys: within a file, and against what the lake already holds.

Keys are compared as two independent 64-bit hashes of the key columns (128 bits: a false match is
vanishingly unlikely even over billions of rows) so that the index of a table stays small: 20 bytes
per loaded row, where it came from included. The first occurrence wins: a later row with the same key is
quarantined with the file and line of the row it duplicates.

The pipeline checks files one at a time in load order, whatever order workers finished in, so a
local run and a Dask run quarantine exactly the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..snds.catalogue import ingestible_table

_SEEDS = (0x5DF1, 0x9E37)


#: Staged companion of a parsed file: line number and key hashes of each loaded row, in order.
LINES_SCHEMA = {"line": pl.UInt32, "h1": pl.UInt64, "h2": pl.UInt64}


def key_hash_exprs(table: str) -> list[pl.Expr]:
    """``h1``, ``h2``: the two hashes of the primary key of a row with the lake types of ``table``
    (the parser hashes rows before writing them; the same values read back hash the same)."""
    key = pl.struct(list(ingestible_table(table).primary_key))
    return [key.hash(seed=_SEEDS[0]).alias("h1"), key.hash(seed=_SEEDS[1]).alias("h2")]


def key_hashes(frame: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """``h1``, ``h2`` of each row of ``frame`` (a lake file of ``table``)."""
    return frame.select(key_hash_exprs(table))


class KeyIndex:
    """Keys already loaded for one table, with their origin (file name and line, when known).

    Every ``h1`` is held once in one sorted NumPy array (8 bytes per key): a new file is looked up
    with a binary search of its sorted hashes and merged in with one insertion pass, instead of
    building a hash table of every loaded key for each new file. ``h2`` and line numbers stay in
    load order, per file (12 bytes per key), and are read only to confirm the rare candidates."""

    def __init__(self, table: str):
        self.table = table
        self._names: list[str] = []
        self._sorted_h1 = np.empty(0, dtype=np.uint64)
        self._files: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  #: h1, h2, line (0: unknown)

    def __len__(self) -> int:
        return len(self._sorted_h1)

    def add(self, name: str, hashes: pl.DataFrame, lines: pl.Series | None) -> None:
        """Record the keys of the rows loaded from file ``name`` (``lines``: their line numbers)."""
        self._names.append(name)
        h1 = hashes.get_column("h1").to_numpy()
        line = (lines.cast(pl.UInt32).to_numpy() if lines is not None
                else np.zeros(len(h1), dtype=np.uint32))
        self._files.append((h1, hashes.get_column("h2").to_numpy(), line))
        new = np.sort(h1)
        self._sorted_h1 = np.insert(self._sorted_h1, np.searchsorted(self._sorted_h1, new), new)

    def add_lake_file(self, name: str, parquet: Path) -> None:
        self.add(name, key_hashes(pl.scan_parquet(parquet), self.table).collect(), None)

    def _known(self, h1: np.ndarray) -> pl.DataFrame:
        """Loaded keys whose ``h1`` is one of ``h1`` (every one of them, should two keys share it)."""
        parts = []
        wanted = pl.Series(h1).implode()
        for origin, (file_h1, file_h2, file_line) in enumerate(self._files):
            hit = pl.Series(file_h1).is_in(wanted).to_numpy()
            if hit.any():
                parts.append(pl.DataFrame({
                    "h1": file_h1[hit], "h2_known": file_h2[hit],
                    "origin": np.full(int(hit.sum()), origin, dtype=np.uint32), "first_line": file_line[hit]}))
        return pl.concat(parts)

    def find_duplicates(self, hashes: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
        """Rows of a new file whose key was seen before: ``row`` (position in the file's loaded
        rows), ``line``, ``first_file``, ``first_line``. Empty frame when there is none.

        Candidates are found on ``h1`` alone (one 64-bit column: fast) and confirmed on ``h2``."""
        current = hashes.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                                      lines.cast(pl.UInt32).alias("line"))
        found = []
        h1 = current.get_column("h1").to_numpy()
        order = np.argsort(h1)  # a sorted search walks the index once, cache-friendly
        sorted_h1 = h1[order]
        if len(self):
            at = np.minimum(np.searchsorted(self._sorted_h1, sorted_h1), len(self) - 1)
            seen = np.empty(len(h1), dtype=bool)
            seen[order] = self._sorted_h1[at] == sorted_h1
            candidates = current.filter(pl.Series(seen))
            if candidates.height:
                known = self._known(np.unique(candidates.get_column("h1").to_numpy()))
                against = (candidates.join(known, on="h1", how="inner")
                           .filter(pl.col("h2") == pl.col("h2_known")))
                if against.height:
                    found.append(against.with_columns(
                        pl.col("origin").replace_strict(list(range(len(self._names))), self._names,
                                                        return_dtype=pl.String).alias("first_file"),
                        pl.when(pl.col("first_line") > 0).then(pl.col("first_line")).alias("first_line"),
                    ).select("row", "line", "first_file", "first_line"))
                    current = current.join(against.select("row"), on="row", how="anti")
        repeats_h1 = bool(len(sorted_h1)) and bool((sorted_h1[1:] == sorted_h1[:-1]).any())
        maybe = current.filter(pl.col("h1").is_duplicated()) if repeats_h1 else current.clear()
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
