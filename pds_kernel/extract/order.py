"""The canonical row order of an extract table: sorted on every column, nulls last.

Why it exists: the polars and Dask paths (and two rebuilds) produce the same rows in different
orders; writing them in one order that depends on the rows alone is what makes their Parquet files
byte-identical. The order is the plain lexicographic one, ``df.sort(df.columns, nulls_last=True)``.

Why not just call that: polars sorts on several columns by encoding every column of every row,
which for an extract table of millions of rows and two dozen columns costs more than all the rest of
the build. Most rows are told apart by their first few columns (``PERSON_ID``, then the table's
keys), so :func:`sort_rows` packs the leading columns into one 64-bit integer per row whose order is
the lexicographic order of those columns, sorts on that single integer, and only sorts the rows that
still tie on it (duplicates on the leading columns) on the remaining columns. The result is exactly
the lexicographic order; only the work differs.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

_WORD_BITS = 64
#: An integer column whose values span less than this is coded by subtracting its minimum (free);
#: a wider one by its values' dense rank (a sort of the column, but as many bits as distinct values:
#: the random 63-bit keyed record numbers would otherwise fill the word alone).
_NARROW_SPAN = 2**32
#: Types whose values map to order-preserving unsigned integers by subtracting the minimum.
_INTEGER_LIKE = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64,
                 pl.Date, pl.Boolean)
_ROW = "__row"
_GROUP = "__group"
#: Columns made contiguous, then gathered, together by :func:`sort_columns` (held twice at once;
#: 4 keeps both cores busy).
_GATHER_BATCH = 4


def _hash(values: pl.Series) -> pl.Series:
    return values.hash(seed=0)


def _string_codes(values: pl.Series, hasher: Callable[[pl.Series], pl.Series] = _hash) -> tuple[pl.Series, int]:
    """Each value's rank among the distinct non-null values (sorted bytewise, as polars sorts
    strings; nulls left null) and the number of distinct values.

    The distinct values are found and looked up by a 64-bit hash of each value rather than by the
    value (hashing and joining millions of 64-character pseudonyms as strings costs three times
    more). A hash shared by two different values would merge them: every row is compared with the
    value its code stands for, and on any difference the exact (slower) lookup by value is used.
    ``hasher`` is there for the tests, which force collisions."""
    frame = pl.DataFrame({"h": hasher(values), "v": values})
    present = frame.filter(pl.col("v").is_not_null())
    # one row per hash, found on the hashes alone (a quarter cheaper than a unique on the frame)
    distinct = present[present.get_column("h").arg_unique()].sort("v").with_row_index("code")
    coded = frame.join(distinct.rename({"v": "stands_for"}), on="h", how="left", maintain_order="left")
    if coded.filter(pl.col("v").is_not_null() & (pl.col("stands_for") != pl.col("v")).fill_null(True)).height:
        distinct = frame.select(pl.col("v").drop_nulls().unique().sort()).with_row_index("code")
        coded = frame.join(distinct, on="v", how="left", maintain_order="left")
    return coded.get_column("code").cast(pl.UInt64), distinct.height


def _code(df: pl.DataFrame, column: str) -> tuple[pl.Expr, int] | None:
    """An expression giving ``column``'s order-preserving code (nulls last) and the code's bit width,
    or None when the column cannot be packed (floats, other types)."""
    dtype = df.schema[column]
    if dtype == pl.String:
        codes, null_code = _string_codes(df.get_column(column))
        code = pl.lit(codes)
    elif any(dtype == t for t in _INTEGER_LIKE):
        as_int = pl.UInt64 if dtype == pl.UInt64 else pl.Int64
        value = pl.col(column).to_physical().cast(as_int)
        low, high = df.select(value.min().alias("low"), value.max().alias("high")).row(0)
        if low is None:  # every value is null: one code for all (a column expression, not a literal)
            return pl.col(column).is_not_null().cast(pl.UInt64), 1
        span = int(high) - int(low)
        if span < _NARROW_SPAN:
            code = (value - pl.lit(int(low), dtype=as_int)).cast(pl.UInt64)
            null_code = span + 1
        else:  # wide values (keyed record numbers are random 63-bit integers): their dense rank
            ranks = df.select(value.rank("dense")).to_series()
            code = pl.lit(ranks.cast(pl.UInt64) - 1)
            null_code = int(ranks.max())
    else:
        return None
    return code.fill_null(pl.lit(null_code, dtype=pl.UInt64)), max(int(null_code).bit_length(), 1)


def _packed_word(df: pl.DataFrame, columns: list[str]) -> tuple[pl.Series | None, list[str]]:
    """One UInt64 per row holding the codes of as many leading ``columns`` as fit, most significant
    first; and the columns left over. None when not even the first column can be packed."""
    parts: list[tuple[pl.Expr, int]] = []
    used = 0
    for column in columns:
        coded = _code(df, column)
        if coded is None or used + coded[1] > _WORD_BITS:
            break
        parts.append(coded)
        used += coded[1]
    if not parts:
        return None, columns
    word = pl.lit(0, dtype=pl.UInt64)
    for expr, width in parts:
        used -= width
        word = word + expr * pl.lit(2**used, dtype=pl.UInt64)
    return df.select(word.alias("word")).get_column("word"), columns[len(parts):]


def _polars_order(df: pl.DataFrame, columns: list[str]) -> pl.Series:
    return df.select(pl.arg_sort_by(columns, nulls_last=True, maintain_order=True)).to_series()


def _order(df: pl.DataFrame, columns: list[str], grouped: bool = False) -> pl.Series:
    """Row indices of ``df`` in the lexicographic order of ``columns`` (nulls last, stable).
    ``grouped``: the first column is a tie-group number added by the caller, not a data column."""
    word, rest = _packed_word(df, columns)
    if word is None or len(rest) == len(columns) - grouped:  # no data column packed: polars sorts
        return _polars_order(df, columns)
    order = word.to_frame().select(pl.arg_sort_by("word", maintain_order=True)).to_series()
    if not rest:
        return order
    ordered = word.gather(order)
    starts = (ordered != ordered.shift(1)).fill_null(True)
    if starts.all():  # every packed word is unique: nothing left to order
        return order
    groups = starts.cum_sum().cast(pl.UInt32)
    tied = (pl.DataFrame({_ROW: order, _GROUP: groups}).with_row_index("position")
            .filter(pl.len().over(_GROUP) > 1))
    # rows that tie on the packed columns: order them within their group on the remaining columns
    subset = df.select(pl.col(rest).gather(tied[_ROW])).with_columns(tied[_GROUP])
    inner = _order(subset.select(_GROUP, *rest), [_GROUP, *rest], grouped=True)
    return order.scatter(tied["position"], tied[_ROW].gather(inner))


def sort_rows(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` in the canonical order: the same as ``df.sort(df.columns, nulls_last=True,
    maintain_order=True)``, faster on wide tables (see the module docstring)."""
    if df.height < 2 or not df.columns:
        return df
    # a table built by joins arrives in dozens of chunks per column; every step below (codes,
    # the gather) is several times faster on contiguous columns, and the copy costs 0.2 s
    df = df.rechunk()
    return df.select(pl.all().gather(_order(df, df.columns)))


def sort_columns(columns: list[pl.Series]) -> pl.DataFrame:
    """The frame made of ``columns`` in the canonical order, the same rows as :func:`sort_rows`,
    in about half its memory: ``columns`` is consumed (emptied) column by column, so at most one
    column is held both unsorted and sorted. The caller must hold no other reference to the
    columns (or to a frame they come from), else nothing is freed early.

    Why: an extract table of a big cohort is held whole on the single-machine path; sorting it
    with one ``select`` holds the input, its contiguous copy and the sorted copy at once (three
    times the table)."""
    for start in range(0, len(columns), _GATHER_BATCH):
        # a few columns at a time, in parallel (fresh memory is mapped on both cores); each chunked
        # original is freed as soon as it is replaced
        batch = slice(start, start + _GATHER_BATCH)
        columns[batch] = pl.DataFrame(columns[batch]).rechunk().get_columns()
    df = pl.DataFrame(columns)
    if df.height < 2 or not df.columns:
        columns.clear()
        return df
    order = _order(df, df.columns)
    del df
    out: list[pl.Series] = []
    while columns:  # a few columns at a time: polars gathers them in parallel
        batch = pl.DataFrame(columns[:_GATHER_BATCH])
        del columns[:_GATHER_BATCH]
        out += batch.select(pl.all().gather(order)).get_columns()
        del batch
    return pl.DataFrame(out)
