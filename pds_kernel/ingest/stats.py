"""Column figures of a lake file (nulls per column, SNDS "missing" dates per date column, care
dates and years older than the SNDS per care date or year column, care dates later than the
file's period).

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
from .checks import OLDEST_DATE, is_year_column, period_days

#: Dates of care, of a stay or of a claim's flux (red team 20D): one between :data:`OLDEST_DATE`
#: (older ones are quarantined, ``date_too_old``) and :data:`SNDS_START` is almost surely damage
#: (a mis-parsed or defaulted date: ``1950`` for ``2050``, a field shifted), but not certainly
#: (a late claim, a psychiatric stay entered decades before its exit), so it loads and is counted
#: per column in the quality report ("Care dates before the SNDS"). The other dates of claims
#: and stays are left out: the date of an accident at work, of an invalidity or of an
#: affiliation may be decades old; so are births (years, bounded apart).
CARE_DATES = frozenset({"FLX_DIS_DTD", "FLX_TRT_DTD", "EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT", "SOR_DAT",
                        "DAT_DEB_FAC", "DAT_FIN_FAC", "PRS_HOS_DTD", "DCT_REM_DTD", "DCT_ARR_DTE"})
#: Years (``year``) and year-months (``yearmonth``, text) of care, of a stay or of a flux (red
#: team 21): one from 1900 (older ones are quarantined, ``year_out_of_range``) to before the
#: SNDS's start is counted as :data:`CARE_DATES` are (an exit year ``1923`` for ``2023``). Every
#: year column of the catalogue is in this set or in :data:`OTHER_YEARS` (a test holds it so: a
#: catalogue update that brings a new one names it until it is placed).
CARE_YEARS = frozenset({"SOR_ANN", "ENT_ANN", "SOI_ANN", "SOIN_ANN", "ACT_ANN", "ADM_ANN", "ANN", "ANN_DEB",
                        "ANN_FIN", "ANN_LUN_1S", "ANN_PO", "DAT_ADM_ANN", "DAT_POS_ANN", "POS_ANN",
                        "FIN_ANN_SEQ", "SEQ_FIN_ANN", "SOR_ANN_SSEQ", "SEJ_LUN_ANN", "RAL_ACT_ANN",
                        "ANN_MOI", "MOI_ANN", "MOI_ANN_SOR_SEJ", "EXD_ANN_MOI", "EXF_ANN_MOI", "FLX_ANN_MOI",
                        "REM_ANN_MOI", "EXE_SOI_AMD", "EXE_SOI_AMF", "PRS_HOS_AMD", "TRS_DTD_AMD",
                        "TRS_DTD_AME", "TRS_DTF_AME"})
#: The years and year-months of the catalogue that are not of care, which may be decades old:
#: births (``BEN_NAI_ANN``, ``ben_nai_ann``, a practitioner's ``IPP_ANN_NAI``), deaths
#: (``BEN_DCD_AME``), accidents at work (``BEN_DRA_AME``, ``PRS_DRA_AME``), prescriptions
#: (``PRE_PRE_AMD``), a previous abortion (``ANN_IVG_PREC``) and a referential's processing
#: (``DTE_ANN_TRT``).
OTHER_YEARS = frozenset({"BEN_NAI_ANN", "ben_nai_ann", "IPP_ANN_NAI", "BEN_DCD_AME", "BEN_DRA_AME",
                         "PRS_DRA_AME", "PRE_PRE_AMD", "ANN_IVG_PREC", "DTE_ANN_TRT"})
#: The first day of the SNDS's data as the ingestion sees it (``ingest.earliest_year``'s default:
#: the PMSI starts in 2005, the DCIR in 2006).
SNDS_START = date(EARLIEST_YEAR, 1, 1)
#: Dates of care or of a stay that a file of a period (a month of flux, a year of exits) cannot
#: hold after that period: a care is billed after it is given, a stay enters before its exit.
#: One later is counted (``l:COLUMN``), not quarantined: a date after the file's period but before
#: the ingest passes every check (a date after the ingest is ``future_date``), and a claim paid in
#: advance can be real. Flux and processing dates are left out (``FLX_TRT_DTD`` may follow the
#: month of its flux), and so are the columns that decide the period (``wrong_month``).
CARE_STARTS = frozenset({"EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT"})


def care_date_columns(table: str) -> list[str]:
    """The :data:`CARE_DATES` among the date columns of ``table``."""
    return [c.name for c in ingestible_table(table).columns if c.type == "date" and c.name in CARE_DATES]


def _care_years(table: str) -> list:
    """The :data:`CARE_YEARS` among the year and year-month columns of ``table`` (catalogue columns)."""
    return [c for c in ingestible_table(table).columns if is_year_column(c) and c.name in CARE_YEARS]


def care_year_columns(table: str) -> list[str]:
    """The names of :func:`_care_years`."""
    return [c.name for c in _care_years(table)]


def _early(table: str) -> list[pl.Expr]:
    """``e:COLUMN``: the care dates and years of ``table`` from 1900 to before :data:`SNDS_START`."""
    exprs = [pl.col(name).is_between(OLDEST_DATE, SNDS_START, closed="left").alias(name)
             for name in care_date_columns(table)]
    for c in _care_years(table):
        year = pl.col(c.name) if c.type == "year" else pl.col(c.name).str.slice(0, 4).cast(pl.Int32, strict=False)
        exprs.append(year.is_between(OLDEST_DATE.year, SNDS_START.year, closed="left").alias(c.name))
    return [e.sum().cast(pl.Int64).name.prefix("e:") for e in exprs]


def late_date_columns(table: str, period: str | None) -> list[str]:
    """The :data:`CARE_STARTS` of ``table`` checked against a file's ``period`` (none without one)."""
    if period is None or len(period) not in (4, 6) or not period.isdigit():
        return []
    return [name for name in care_date_columns(table) if name in CARE_STARTS]


def figure_exprs(table: str, period: str | None = None) -> list[pl.Expr]:
    """One row of figures of a frame of ``table``'s lake columns: ``n:COLUMN`` (nulls),
    ``m:COLUMN`` (SNDS "missing" dates), ``e:COLUMN`` (care dates and years from 1900 to before
    :data:`SNDS_START`) and, for a file of ``period`` (``YYYYMM`` or ``YYYY``), ``l:COLUMN``
    (care dates after it); :meth:`ColumnStats.add_figures` adds such a row."""
    exprs = []
    for c in ingestible_table(table).columns:
        exprs.append(pl.col(c.name).null_count().cast(pl.Int64).alias(f"n:{c.name}"))
        if c.type == "date":
            exprs.append((pl.col(c.name) == MISSING_DATE).sum().cast(pl.Int64).alias(f"m:{c.name}"))
    exprs += _early(table)
    late = late_date_columns(table, period)
    if late:
        last = period_days(period)[1]
        exprs += [(pl.col(name) > last).sum().cast(pl.Int64).alias(f"l:{name}") for name in late]
    return exprs


@dataclass
class ColumnStats:
    """Running totals for the rows of one table: ``nulls`` and ``missing_dates`` per column, and
    ``early_dates`` per care date or year column (:data:`CARE_DATES`, :data:`CARE_YEARS`); with
    the ``period`` of a file, ``late_dates`` per :data:`CARE_STARTS` column."""

    table: str
    nulls: dict[str, int] = field(default_factory=dict)
    missing_dates: dict[str, int] = field(default_factory=dict)
    #: per column with a nomenclature: loaded values its nomenclature does not hold (if any)
    unknown_codes: dict[str, int] = field(default_factory=dict)
    #: per care date or year column: loaded dates (years) from 1900 to before SNDS_START
    early_dates: dict[str, int] = field(default_factory=dict)
    #: per care date column of CARE_STARTS: loaded dates after the file's period
    late_dates: dict[str, int] = field(default_factory=dict)
    period: str | None = None  #: the file's period (``YYYYMM``, ``YYYY``), None for a table's total

    def __post_init__(self):
        for c in ingestible_table(self.table).columns:
            self.nulls.setdefault(c.name, 0)
            if c.type == "date":
                self.missing_dates.setdefault(c.name, 0)
        for name in care_date_columns(self.table) + care_year_columns(self.table):
            self.early_dates.setdefault(name, 0)
        for name in late_date_columns(self.table, self.period):
            self.late_dates.setdefault(name, 0)

    def add(self, frame: pl.DataFrame | pl.LazyFrame) -> ColumnStats:
        """Add the figures of ``frame`` (rows with the lake columns of the table)."""
        row = frame.select(figure_exprs(self.table, self.period))
        return self.add_figures((row.collect() if isinstance(row, pl.LazyFrame) else row).row(0, named=True))

    def add_figures(self, row: dict) -> ColumnStats:
        """Add a row of :func:`figure_exprs` (computed where the rows were, e.g. in a streaming query)."""
        for name in self.nulls:
            self.nulls[name] += row[f"n:{name}"] or 0
        for name in self.missing_dates:
            self.missing_dates[name] += row[f"m:{name}"] or 0
        for name in self.early_dates:
            self.early_dates[name] += row[f"e:{name}"] or 0
        for name in self.late_dates:
            self.late_dates[name] += row.get(f"l:{name}") or 0
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
        for name, n in other.late_dates.items():
            if name in self.early_dates:
                self.late_dates[name] = self.late_dates.get(name, 0) + n
        for name, n in other.unknown_codes.items():
            if name in self.nulls:
                self.unknown_codes[name] = self.unknown_codes.get(name, 0) + n
