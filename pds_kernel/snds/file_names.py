"""Delivered file names: which table and which period (month, year or none) a file feeds.

* ``NAME_YYYYMM.csv``: one month of a monthly table (``ER_UCD_F_202301.csv``; the profile's PMSI
  tables are delivered this way by the synthetic generator too: ``T_MCOaaB_202301.csv``);
* ``NAME.csv``: a snapshot (referential) that replaces the table's previous version;
* a yearly table's name with its year in place of the marker: ``T_MCO23B.csv`` for ``T_MCOaaB``
  (``aa``: two digits, 20aa), ``CT_DEP_2023_GN.csv`` for ``CT_DEP_AAAA_GN``; ``xx`` in a name
  stands for any two letters or digits (``T_MCO23GV01.csv``).

The period is ``"YYYYMM"``, ``"YYYY"`` or ``None`` (snapshot). A file name is checked against the
profile and the catalogue (:mod:`.catalogue`), and its year against the years a delivery may hold
(:mod:`.periods`: ``ingest.earliest_year`` to the year after today's); anything else is refused
with the reason.
"""

from __future__ import annotations

import re
from functools import cache

from .catalogue import entries, ingestible_table, is_ingestible
from .periods import Years, plausible_years
from .tables import TABLES

_PLAIN = re.compile(r"^(?P<table>[A-Za-z0-9_]+?)(?:_(?P<month>[0-9]{6}))?\.csv$")


@cache
def _yearly_patterns() -> tuple[tuple[re.Pattern, str], ...]:
    """One pattern per table whose name holds a year marker (profile and catalogue)."""
    names = [n for n in list(TABLES) + list(entries()) if "aa" in n or "AAAA" in n]
    patterns = []
    for name in dict.fromkeys(names):
        body = (name.replace("aa", "(?P<yy>[0-9]{2})", 1).replace("AAAA", "(?P<yyyy>[0-9]{4})", 1)
                .replace("xx", "[A-Z0-9]{2}"))
        patterns.append((re.compile(f"^{body}\\.csv$"), name))
    return tuple(patterns)


def parse_delivery_name(file: str, years: Years | None = None) -> tuple[str, str | None]:
    """``(table, period)`` of a delivered file name; ``ValueError`` (with the reason) otherwise,
    a period outside ``years`` included (default: :func:`.periods.plausible_years` with the
    default earliest year; :data:`.periods.ANY_YEAR` checks the syntax only)."""
    years = years or plausible_years()
    # fullmatch, not match: ``$`` also matches before a final line feed, and a file named
    # "ER_PRS_F_202301.csv\n" was loaded as ER_PRS_F's January (a second file of that month
    # in the same delivery crashed the run: both were staged under the same name)
    m = _PLAIN.fullmatch(file)
    if m and is_ingestible(m.group("table")):
        table = ingestible_table(m.group("table"))
        month = m.group("month")
        if table.split == "yearly":
            raise ValueError(f"{file!r}: table {table.name} is delivered once a year, named with "
                             f"its year (e.g. {example_name(table.name)})")
        if (table.split == "snapshot") != (month is None):
            raise ValueError(f"{file!r}: table {table.name} is delivered "
                             + ("as one snapshot file NAME.csv" if table.split == "snapshot"
                                else "per month as NAME_YYYYMM.csv"))
        if month is not None:
            if not 1 <= int(month[4:]) <= 12:
                raise ValueError(f"{file!r}: bad month {month}")
            years.check(file, month[:4])
        return table.name, month
    for pattern, name in _yearly_patterns():
        y = pattern.fullmatch(file)
        if y:
            groups = y.groupdict()
            year = groups.get("yyyy") or f"20{groups['yy']}"  # never 19aa: see .periods
            years.check(file, year, two_digits=not groups.get("yyyy"))
            return name, year
    raise ValueError(f"{file!r} is not a delivery file name (expected NAME_YYYYMM.csv or NAME.csv "
                     "for a table of the SNDS catalogue, or a yearly name such as T_MCO23B.csv; "
                     "see pds snds tables)")


def example_name(table: str, period: str = "2023") -> str:
    """A file name of ``table`` for ``period`` (a year for yearly tables, a month otherwise)."""
    split = ingestible_table(table).split
    if split == "snapshot":
        return f"{table}.csv"
    if split == "yearly" or ("aa" in table and len(period) == 4):
        return (table.replace("aa", period[2:4], 1).replace("AAAA", period[:4], 1)
                .replace("xx", "01")) + ".csv"
    month = period if len(period) == 6 else f"{period}01"
    return f"{table}_{month}.csv"
