"""The nomenclature codes a file's coded columns are checked against, built once per process.

A coded column (ICD-10 diagnoses, ATC or CIP drugs, organisations...) is checked against the code
list of its nomenclature in the catalogue (:func:`pds_kernel.snds.catalogue.nomenclature_series`),
held as a polars series of the column's lake type: the block parser looks the distinct values of
each block up in it, the streamed parser probes it inside its query. Codes the nomenclature lacks
are counted in the quality report, not refused (a new code may be delivered before its
nomenclature).
"""

from __future__ import annotations

import functools
import threading

import polars as pl

from ..snds.catalogue import nomenclature_series
from .stats import ColumnStats

#: Held while a file's nomenclature codes are looked up: the parse threads start together and each
#: built the same lists (~0.09 s of CPU for ER_PRS_F's, before its first file); one builds them now.
CODES_BUILT = threading.Lock()


@functools.cache
def known_series(name: str, column: str, dtype: pl.DataType) -> pl.Series:
    """The codes of a nomenclature as the lake holds them, distinct and sorted (:func:`_unknown_values`
    searches them): text, or numbers for
    a numeric column ``dtype`` (``"001"`` and ``"1.00"`` are the number 1; an integer column keeps
    the codes that are whole numbers). Built once per process."""
    text = nomenclature_series(name, column)
    if not dtype.is_numeric():
        return text.cast(dtype).sort()  # sorted as the lake's type sorts: looked up by binary search
    numbers = text.cast(pl.Float64, strict=False).drop_nulls()
    numbers = numbers.filter(numbers.is_finite())
    if dtype.is_integer():
        numbers = numbers.filter((numbers == numbers.floor()) & (numbers.abs() < 2.0**63))
    return numbers.cast(dtype).unique().sort()


def count_unknown_codes(good: pl.DataFrame, codes: dict[str, pl.Series], stats: ColumnStats) -> None:
    """Add to ``stats.unknown_codes`` the loaded values missing from their column's nomenclature:
    the distinct values of the block (a few per column) are looked up in the codes, every column in
    one query, and rows are counted only for a value that is unknown."""
    if not codes:
        return
    found = good.select(_unknown_values(column, known) for column, known in codes.items()).row(0)
    for column, unknown in zip(codes, found):
        if unknown:
            wanted = pl.Series(unknown, dtype=good.schema[column]).implode()
            stats.unknown_codes[column] = (stats.unknown_codes.get(column, 0)
                                           + int(good.get_column(column).is_in(wanted).sum()))


def _unknown_values(column: str, known: pl.Series) -> pl.Expr:
    """The distinct values of ``column`` that the sorted ``known`` lacks, as a list, each found by a
    binary search: a hash table of a nomenclature's ~100,000 codes built for every block cost
    0.2-0.3 s of CPU on the whole delivery, and a query per column (a series' methods each run
    one) three times what this one query costs on a delivery of small files."""
    values = pl.col(column).drop_nulls().unique(maintain_order=True)  # one order for both of its uses
    if known.is_empty():
        return values.implode()
    codes = pl.lit(known)
    found = codes.gather(codes.search_sorted(values).clip(0, known.len() - 1))
    return values.filter(found != values).implode()
