"""Column figures of a lake file (nulls per column, SNDS "missing" dates per date column, care
dates older than the SNDS per care date column).

The parser computes them while the rows are in memory, block by block, and the manifest keeps them
with the file; the quality report sums the manifest's figures instead of reading the whole lake
again after every ingest (a lake of many years would otherwise be scanned at each monthly load).
A file whose figures are unknown (recorded by an older version) is scanned by the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from ..snds.catalogue import ingestible_table
from ..snds.periods import EARLIEST_YEAR
from ..snds.tables import MISSING_DATE
from .checks import OLDEST_DATE

#: Dates of care, of a stay or of a claim's flux (red team 20D): one between :data:`OLDEST_DATE`
#: (older ones are quarantined, ``date_too_old``) and :data:`SNDS_START` is almost surely damage
#: (a mis-parsed or defaulted date: ``1950`` for ``2050``, a field shifted), but not certainly
#: (a late claim, a psychiatric stay entered decades before its exit), so it loads and is counted
#: per column in the quality report ("Care dates before the SNDS"). The other dates of claims
#: and stays are left out: the date of an accident at work, of an invalidity or of an
#: affiliation may be decades old; so are births (years, bounded apart).
CARE_DATES = frozenset({"FLX_DIS_DTD", "FLX_TRT_DTD", "EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT", "SOR_DAT",
                        "DAT_DEB_FAC", "DAT_FIN_FAC", "PRS_HOS_DTD", "DCT_REM_DTD", "DCT_ARR_DTE"})
#: The first day of the SNDS's data as the ingestion sees it (``ingest.earliest_year``'s default:
#: the PMSI starts in 2005, the DCIR in 2006).
SNDS_START = date(EARLIEST_YEAR, 1, 1)


def care_date_columns(table: str) -> list[str]:
    """The :data:`CARE_DATES` among the date columns of ``table``."""
    return [c.name for c in ingestible_table(table).columns if c.type == "date" and c.name in CARE_DATES]


def figure_exprs(table: str) -> list[pl.Expr]:
    """One row of figures of a frame of ``table``'s lake columns: ``n:COLUMN`` (nulls),
    ``m:COLUMN`` (SNDS "missing" dates) and ``e:COLUMN`` (care dates from 1900 to before
    :data:`SNDS_START`); :meth:`ColumnStats.add_figures` adds such a row."""
    exprs = []
    for c in ingestible_table(table).columns:
        exprs.append(pl.col(c.name).null_count().cast(pl.Int64).alias(f"n:{c.name}"))
        if c.type == "date":
            exprs.append((pl.col(c.name) == MISSING_DATE).sum().cast(pl.Int64).alias(f"m:{c.name}"))
    exprs += [pl.col(name).is_between(OLDEST_DATE, SNDS_START, closed="left").sum().cast(pl.Int64)
              .alias(f"e:{name}") for name in care_date_columns(table)]
    return exprs


@dataclass
class ColumnStats:
    """Running totals for the rows of one table: ``nulls`` and ``missing_dates`` per column, and
    ``early_dates`` per care date column (:data:`CARE_DATES`)."""

    table: str
    nulls: dict[str, int] = field(default_factory=dict)
    missing_dates: dict[str, int] = field(default_factory=dict)
    #: per column with a nomenclature: loaded values its nomenclature does not hold (if any)
    unknown_codes: dict[str, int] = field(default_factory=dict)
    #: per care date column: loaded dates from 1900 to before SNDS_START
    early_dates: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        for c in ingestible_table(self.table).columns:
            self.nulls.setdefault(c.name, 0)
            if c.type == "date":
                self.missing_dates.setdefault(c.name, 0)
        for name in care_date_columns(self.table):
            self.early_dates.setdefault(name, 0)

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
        for name in self.early_dates:
            self.early_dates[name] += row[f"e:{name}"] or 0
        return self

    def merge(self, other: ColumnStats) -> None:
        """Add ``other``'s figures (columns the table no longer has are ignored)."""
        for name, n in other.nulls.items():
            if name in self.nulls:
                self.nulls[name] += n
        for name, n in other.missing_dates.items():
            if name in self.missing_dates:
                self.missing_dates[name] += n
        for name, n in other.early_dates.items():
            if name in self.early_dates:
                self.early_dates[name] += n
        for name, n in other.unknown_codes.items():
            if name in self.nulls:
                self.unknown_codes[name] = self.unknown_codes.get(name, 0) + n
