"""How extract code reads the lake, and the single-machine backend that runs it.

Every step of a build is a function ``step(frames, *args) -> pl.LazyFrame`` over a
:class:`LakeFrames`. A backend runs it: :class:`PolarsBackend` once over the whole lake,
:class:`~pds_kernel.extract.dask_backend.DaskBackend` once per month of the DCIR tables on a Dask
cluster (a *partitioned* step joins DCIR tables only on their 9 keys, which include the month, so the
months are independent). Both compute the same rows. Small results come back to the caller
(``run``); extract tables are written where they are computed (``write_table``: split by
:mod:`.layout`'s partitions, each sorted and written by the same function), so both give the same
bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from .. import lake as lake_mod
from ..snds.catalogue import ingestible_table
from ..snds.tables import polars_type
from .layout import write_taken_frame

#: DCIR tables split by month of FLX_DIS_DTD, joined on the 9 DCIR keys: safe to process per month.
PARTITIONED_TABLES = ("ER_PRS_F", "ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_UCD_F")

Step = Callable[..., pl.LazyFrame]


class LakeFrames:
    """Lazy views of the lake's tables; with ``month`` set, the DCIR tables show that month only;
    with ``versions`` (``{table: version}``), those tables at those versions (a pinned build).

    A table absent from the lake reads as empty (the spec check makes sure the needed ones exist).
    """

    def __init__(self, lake: Path, month: str | None = None, versions: dict[str, int] | None = None):
        self.lake = Path(lake)
        self.month = month
        self.versions = versions or {}

    def files(self, table: str) -> list[Path]:
        files = lake_mod.table_files(self.lake, table, self.versions.get(table))
        if self.month is not None and table in PARTITIONED_TABLES:
            files = [f for f in files if f.parent.name == f"month={self.month}"]
        return files

    def scan(self, table: str) -> pl.LazyFrame:
        files = self.files(table)
        if not files:
            return pl.LazyFrame(schema={c.name: polars_type(c.type) for c in ingestible_table(table).columns})
        return pl.scan_parquet(files, hive_partitioning=False)


def partition_months(lake: Path, versions: dict[str, int] | None = None) -> list[str]:
    """The months (YYYYMM) of the DCIR partitions, the unit of work of a partitioned step."""
    months = set()
    for table in PARTITIONED_TABLES:
        for file in LakeFrames(lake, versions=versions).files(table):
            if file.parent.name.startswith("month="):
                months.add(file.parent.name[len("month="):])
    return sorted(months)


class Backend(Protocol):
    """Runs build steps. ``partitioned`` steps may be split per DCIR month and concatenated.

    ``run`` returns a step's rows to the caller (for small results: persons, identifier maps);
    ``write_table`` writes a table's rows as extract files under ``root`` where they are computed
    (:mod:`.layout`) and returns only its columns and ``[{file, rows, sha256}]``; ``map`` applies
    a function to argument tuples where the backend computes (the conformity check's partitions)."""

    name: str
    versions: dict[str, int] | None  #: the table versions it reads (None: the latest)

    def run(self, step: Step, *args: Any, partitioned: bool = False) -> pl.DataFrame: ...

    def write_table(self, step: Step, *args: Any, partitioned: bool, root: Path, table: str,
                    partitions: int | None) -> tuple[list[str], list[dict]]: ...

    def map(self, function: Callable[..., Any], items: list[tuple]) -> list: ...

    def close(self) -> None: ...


class PolarsBackend:
    """Polars, lazily, on this machine: one query per step over the whole lake."""

    name = "polars"

    def __init__(self, lake: Path, versions: dict[str, int] | None = None):
        self.lake = Path(lake)
        self.versions = versions

    def run(self, step: Step, *args: Any, partitioned: bool = False) -> pl.DataFrame:
        return step(LakeFrames(self.lake, versions=self.versions), *args).collect()

    def write_table(self, step: Step, *args: Any, partitioned: bool, root: Path, table: str,
                    partitions: int | None) -> tuple[list[str], list[dict]]:
        holder = [self.run(step, *args, partitioned=partitioned)]  # the table's only reference
        columns = holder[0].columns
        return columns, write_taken_frame(holder, Path(root), table, partitions)

    def map(self, function: Callable[..., Any], items: list[tuple]) -> list:
        return [function(*item) for item in items]

    def close(self) -> None:
        pass
