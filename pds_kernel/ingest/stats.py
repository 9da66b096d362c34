"""Column figures of a lake file (nulls per column, SNDS "missing" dates per date column).

The parser computes them while the rows are in memory, block by block, and the manifest keeps them
with the file; the quality report sums the manifest's figures instead of reading the whole lake
again after every ingest (a lake of many years would otherwise be scanned at each monthly load).
A file whose figures are unknown (recorded by an older version) is scanned by the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..snds.catalogue import ingestible_table
from ..snds.tables import MISSING_DATE


def figure_exprs(table: str) -> list[pl.Expr]:
    """One row of figures of a frame of ``table``'s lake columns: ``n:COLUMN`` (nulls) and
    ``m:COLUMN`` (SNDS "missing" dates); :meth:`ColumnStats.add_figures` adds such a row."""
    exprs = []
    for c in ingestible_table(table).columns:
        exprs.append(pl.col(c.name).null_count().cast(pl.Int64).alias(f"n:{c.name}"))
        if c.type == "date":
            exprs.append((pl.col(c.name) == MISSING_DATE).sum().cast(pl.Int64).alias(f"m:{c.name}"))
    return exprs


@dataclass
class ColumnStats:
    """Running totals for the rows of one table: ``nulls`` and ``missing_dates`` per column."""

    table: str
    nulls: dict[str, int] = field(default_factory=dict)
    missing_dates: dict[str, int] = field(default_factory=dict)
    #: per column with a nomenclature: loaded values its nomenclature does not hold (if any)
    unknown_codes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        for c in ingestible_table(self.table).columns:
            self.nulls.setdefault(c.name, 0)
            if c.type == "date":
                self.missing_dates.setdefault(c.name, 0)

    def add(self, frame: pl.DataFrame | pl.LazyFrame) -> ColumnStats:
        """Add the figures of ``frame`` (rows with the lake columns of the table)."""
        row = frame.select(figure_exprs(self.table))
        return self.add_figures((row.collect() if isinstance(row, pl.LazyFrame) else row).row(0, named=True))

    def add_figures(self, row: dict) -> ColumnStats:
        """Add a row of :func:`figure_exprs` (computed where the rows were, e.g. in a streaming query)."""
        for name in self.nulls:
            self.nulls[name] += row[f"n:{name}"] or 0
        for name in self.missing_dates:
            self.missing_dates[name] += row[f"m:{name}"] or 0
        return self

    def merge(self, other: ColumnStats) -> None:
        """Add ``other``'s figures (columns the table no longer has are ignored)."""
        for name, n in other.nulls.items():
            if name in self.nulls:
                self.nulls[name] += n
        for name, n in other.missing_dates.items():
            if name in self.missing_dates:
                self.missing_dates[name] += n
        for name, n in other.unknown_codes.items():
            if name in self.nulls:
                self.unknown_codes[name] = self.unknown_codes.get(name, 0) + n
