"""What changed between two versions of a table, row by row, by primary key.

Only the files that differ between the two versions are read (a correction of one month reads
that month's old and new file, whatever the size of the table). Rows are matched on the table's
primary key from the catalogue: a key only in the new files is *added*, only in the old ones
*removed*, in both with another value in any column *changed* (counted per column). A table
without a primary key is compared as multisets of whole rows (added and removed only).

Reports hold counts, never row values: the lake's operators see how much changed and where, and
read the rows themselves with a Delta reader when they must.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..errors import InvalidInput

_ROW_HASH = "__pds_row_hash"
_COUNT = "__pds_count"


@dataclass
class RowDiff:
    """Rows added, changed and removed between two sets of files of one table."""

    table: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    columns_changed: dict[str, int] = field(default_factory=dict)  #: column → rows whose value changed
    key: tuple[str, ...] = ()
    old_version: int | None = None
    new_version: int | None = None
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def summary(self) -> str:
        return f"{self.added:,} row(s) added, {self.changed:,} changed, {self.removed:,} removed"

    def as_dict(self) -> dict:
        return {"added": self.added, "changed": self.changed, "removed": self.removed,
                "unchanged": self.unchanged, "columns_changed": dict(self.columns_changed)}


def _read(files: list[Path], columns: list[str]) -> pl.DataFrame:
    if not files:
        return pl.DataFrame()
    parts = [pl.read_parquet(f, hive_partitioning=False) for f in files]
    frame = pl.concat(parts, how="diagonal_relaxed")
    for column in columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(column))
    return frame.select(columns)


def diff_files(table: str, old: list[Path], new: list[Path]) -> RowDiff:
    """Rows added, changed and removed from the rows of ``old`` to those of ``new``."""
    from ..snds.catalogue import ingestible_table

    spec = ingestible_table(table)
    columns = [c.name for c in spec.columns]
    key = list(spec.primary_key)
    result = RowDiff(table=table, key=tuple(key))
    before, after = _read(old, columns), _read(new, columns)
    if not before.width and not after.width:
        return result
    if not before.width:
        result.added = after.height
        return result
    if not after.width:
        result.removed = before.height
        return result
    after = after.cast(before.schema, strict=False)
    if not key:
        return _diff_rows(result, before, after, columns)
    values = [c for c in columns if c not in key]
    both = (before.with_columns(pl.lit(True).alias("__old"))
            .join(after.with_columns(pl.lit(True).alias("__new")), on=key, how="full", suffix="__new",
                  coalesce=True, nulls_equal=True))
    result.added = both.filter(pl.col("__old").is_null()).height
    result.removed = both.filter(pl.col("__new").is_null()).height
    common = both.filter(pl.col("__old").is_not_null() & pl.col("__new").is_not_null())
    flags = common.select([(~pl.col(c).eq_missing(pl.col(f"{c}__new"))).alias(c) for c in values])
    if flags.width and flags.height:
        result.changed = int(flags.select(pl.any_horizontal(pl.all())).to_series().sum())
        sums = flags.sum().row(0, named=True)
        result.columns_changed = {c: int(n) for c, n in sums.items() if n}
    result.unchanged = common.height - result.changed
    return result


def _diff_rows(result: RowDiff, before: pl.DataFrame, after: pl.DataFrame, columns: list[str]) -> RowDiff:
    """Multiset difference of whole rows (tables without a primary key)."""
    def counts(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.select(pl.struct(columns).hash(seed=7).alias(_ROW_HASH))
                .group_by(_ROW_HASH).agg(pl.len().alias(_COUNT)))

    joined = counts(before).join(counts(after), on=_ROW_HASH, how="full", coalesce=True, suffix="_new").fill_null(0)
    delta = joined.select((pl.col(f"{_COUNT}_new").cast(pl.Int64) - pl.col(_COUNT).cast(pl.Int64)).alias("d"),
                          pl.min_horizontal(_COUNT, f"{_COUNT}_new").alias("same"))
    result.added = int(delta.filter(pl.col("d") > 0).get_column("d").sum())
    result.removed = int(-delta.filter(pl.col("d") < 0).get_column("d").sum())
    result.unchanged = int(delta.get_column("same").sum())
    return result


def diff_versions(lake: Path, table: str, old_version: int, new_version: int) -> RowDiff:
    """What changed in ``table`` from ``old_version`` to ``new_version`` (both of that table)."""
    from . import check_table_name
    from .versions import files_at

    check_table_name(table)
    if old_version == new_version:
        raise InvalidInput(f"versions {old_version} and {new_version} are the same version of {table}")
    old_files, _ = files_at(lake, table, old_version)
    new_files, _ = files_at(lake, table, new_version)
    gone, came = sorted(set(old_files) - set(new_files)), sorted(set(new_files) - set(old_files))
    result = diff_files(table, gone, came)
    folder = lake / table
    result.old_version, result.new_version = old_version, new_version
    result.files_removed = [str(p.relative_to(folder)) for p in gone]
    result.files_added = [str(p.relative_to(folder)) for p in came]
    kept = len(set(old_files) & set(new_files))
    if kept:
        result.unchanged += sum(pl.scan_parquet(f).select(pl.len()).collect().item()
                                for f in sorted(set(old_files) & set(new_files)))
    return result
