"""The nomenclature codes a file's coded columns are checked against, built once per process.

A coded column (ICD-10 diagnoses, ATC or CIP drugs, organisations...) is checked against the code
list of its nomenclature in the catalogue (:func:`pds_kernel.snds.catalogue.nomenclature_codes`):
the block parser looks the distinct values of each block up in a set, the streamed parser probes a
series inside its query. Codes the nomenclature lacks are counted in the quality report, not
refused (a new code may be delivered before its nomenclature).
"""

from __future__ import annotations

import functools
import threading

import polars as pl

from ..snds.catalogue import nomenclature_codes
from .stats import ColumnStats

#: Held while a file's nomenclature codes are looked up: the parse threads start together and each
#: built the same lists (~0.09 s of CPU for ER_PRS_F's, before its first file); one builds them now.
CODES_BUILT = threading.Lock()


@functools.cache
def known_codes(name: str, column: str, numeric: bool) -> frozenset:
    """The codes of a nomenclature as the lake holds them: text, or numbers for a numeric column
    (``"001"`` and ``"1.00"`` are the number 1). Built once per process."""
    codes = nomenclature_codes(name, column)
    if not numeric:
        return frozenset(codes)
    numbers = set()
    for code in codes:
        try:
            numbers.add(float(code))
        except ValueError:
            continue
    return frozenset(numbers)


@functools.cache
def known_series(name: str, column: str, dtype: pl.DataType) -> pl.Series:
    """The codes of :func:`known_codes` as a series of the column's lake type ``dtype`` (an
    integer column keeps the codes that are whole numbers), for a probe inside a query."""
    codes = known_codes(name, column, dtype.is_numeric())
    if dtype.is_integer():
        return pl.Series([int(c) for c in codes if c.is_integer() and abs(c) < 2**63], dtype=dtype)
    return pl.Series(sorted(codes), dtype=dtype)


def count_unknown_codes(good: pl.DataFrame, codes: dict[str, frozenset], stats: ColumnStats) -> None:
    """Add to ``stats.unknown_codes`` the loaded values missing from their column's nomenclature.
    The distinct values of the block (a few per column) are looked up in a set built once, in
    one select for every column; rows are counted only for a value that is unknown."""
    distinct = good.select(pl.col(c).drop_nulls().unique().implode() for c in codes).row(0)
    for (column, known), values in zip(codes.items(), distinct):
        numeric = good.schema[column].is_numeric()
        unknown = [v for v in values if (float(v) if numeric else v) not in known]
        if unknown:
            wanted = pl.Series(unknown, dtype=good.schema[column]).implode()
            stats.unknown_codes[column] = (stats.unknown_codes.get(column, 0)
                                           + int(good.get_column(column).is_in(wanted).sum()))
