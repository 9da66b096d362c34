"""The quarantine of duplicate keys: rows moved out of a staged file before it is committed.

The parser quarantines what it can see in one file (:mod:`.parse`); a primary key repeated across
files, or within a file, is found at commit time by :class:`.keys.KeyIndex`, and its rows are moved
here from the staged Parquet file to the file's quarantine, with the delivered line's text, so that
rows read = loaded + quarantined still holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from ..snds.catalogue import ingestible_table
from .checks import Check
from .delivery import DeliveryFile
from .parse import COMPRESSION, COMPRESSION_LEVEL, QUARANTINE_COLUMNS, ParseOutcome
from .stats import ColumnStats


def move_to_quarantine(outcome: ParseOutcome, f: DeliveryFile, dups: pl.DataFrame, encoding: str) -> None:
    """Move the rows of ``dups`` (duplicate primary keys: ``row``, ``line``, ``first_file``,
    ``first_line``) from the staged Parquet file to the staged quarantine, with their raw lines, and
    recount the file's statistics and totals."""
    rows = dups.get_column("row")
    staged = Path(outcome.parquet)
    tmp = staged.with_suffix(".dedup.parquet")
    (pl.scan_parquet(staged).with_row_index("__row")
     .filter(~pl.col("__row").is_in(rows.implode())).drop("__row")
     .sink_parquet(tmp, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL))
    os.replace(tmp, staged)
    unknown_codes = outcome.stats.unknown_codes if outcome.stats else {}
    outcome.stats = ColumnStats(f.table, period=f.month).add(pl.scan_parquet(staged))
    outcome.stats.unknown_codes = unknown_codes  # counted before: may include the duplicate rows
    if outcome.key_lines is not None:
        outcome.key_lines = (outcome.key_lines.with_row_index("__row")
                             .filter(~pl.col("__row").is_in(rows.implode())).drop("__row"))
    else:
        lines_path = Path(outcome.lines)
        lines = pl.read_parquet(lines_path).with_row_index("__row")
        lines.filter(~pl.col("__row").is_in(rows.implode())).drop("__row").write_parquet(lines_path)
    raw = _raw_lines(f.path, set(dups.get_column("line").to_list()), encoding)
    where = (pl.when(pl.col("first_file").is_null()).then(pl.lit("line ") + pl.col("first_line").cast(pl.String))
             .when(pl.col("first_line").is_null()).then(pl.col("first_file"))
             .otherwise(pl.col("first_file") + pl.lit(" line ") + pl.col("first_line").cast(pl.String)))
    keys = ", ".join(ingestible_table(f.table).primary_key)
    new = dups.select(
        pl.col("line"), pl.lit(Check.DUPLICATE).alias("check"), pl.lit("").alias("column"),
        (pl.lit(f"duplicate primary key ({keys}): same key as ") + where).alias("reason"),
        pl.col("line").replace_strict(raw, return_dtype=pl.String, default="").alias("raw"))
    quarantine = Path(outcome.quarantine) if outcome.quarantine else staged.with_name(f"{f.stem}.quarantine.csv")
    if outcome.quarantine:
        old = read_quarantine(quarantine)
        new = pl.concat([old, new.cast(old.schema)]).sort("line")
    new.select(QUARANTINE_COLUMNS).write_csv(quarantine, separator=";")
    outcome.quarantine = str(quarantine)
    outcome.rows_loaded -= dups.height
    outcome.rows_quarantined += dups.height


#: The columns of a quarantine file, as the ingestion writes them.
QUARANTINE_SCHEMA = {"line": pl.UInt32, "check": pl.String, "column": pl.String, "reason": pl.String,
                     "raw": pl.String}


def read_quarantine(path: Path) -> pl.DataFrame:
    """A quarantine file as written by the ingestion (UTF-8, ``;``, quoted raw lines)."""
    return pl.read_csv(path, separator=";", schema=QUARANTINE_SCHEMA)


def read_quarantines(paths: list[Path]) -> pl.DataFrame:
    """Every quarantine file of ``paths`` in one frame, each row with the ``path`` it came from:
    one query over all of them (a lake of 20,000 small files held 8,000 quarantine files, and
    reading them one by one was most of a correction's run)."""
    if not paths:
        return pl.DataFrame(schema={**QUARANTINE_SCHEMA, "path": pl.String})
    return pl.scan_csv([str(p) for p in paths], separator=";", schema=QUARANTINE_SCHEMA, glob=False,
                       include_file_paths="path").collect()


def _raw_lines(path: Path, wanted: set[int], encoding: str) -> dict[int, str]:
    """The text of the given line numbers of ``path`` (one streaming pass; only for duplicates)."""
    found: dict[int, str] = {}
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number in wanted:
                found[number] = line.rstrip(b"\r\n").decode(encoding, errors="replace")
                if len(found) == len(wanted):
                    break
    return found
