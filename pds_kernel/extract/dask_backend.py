"""The same build steps on a Dask cluster, for lakes and extracts that outgrow one machine.

A partitioned step runs as one task per DCIR month (each worker reads that month's files and the
small referentials itself, from the lake path it shares with the client); other steps run as one
task. Small results (the cohort, identifier maps) come back to the client (:meth:`DaskBackend.run`).

An extract table never does (:meth:`DaskBackend.write_table`): the workers write it themselves,
under the staging directory they share with the client, in two rounds of tasks:

1. one task per unit of the step (a DCIR month, or the whole lake) computes its rows, splits them by
   partition (:func:`.layout.bucket`) and writes each part to ``<staging>/.work-<table>/``
   (fast, unsorted, uncompressed-ish spill files);
2. one task per partition reads that partition's parts, sorts them in the canonical order and
   writes the final file with the extract's fixed options (:func:`.layout.write_file`), then
   returns its row count and SHA-256.

A partition holds the same rows as on one machine and is sorted and written by the same function,
so the files are byte-identical. The client holds the cohort's person map (one row per person) and
per-file counts and hashes, never the rows.

The project key never leaves the client: workers receive the pseudonym table (identifier →
pseudonym of the cohort's persons), never the key.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import InvalidInput
from .frames import LakeFrames, Step, partition_months
from .layout import partition_file, single_file, split, write_file

log = logging.getLogger(__name__)


def _run_part(lake: str, month: str | None, step: Step, args: tuple,
              versions: dict[str, int] | None = None) -> pl.DataFrame:
    """Worker side: one step over one month (or the whole lake), at the pinned table versions."""
    return step(LakeFrames(Path(lake), month, versions), *args).collect()


def _spill_unit(lake: str, unit: str | None, step: Step, args: tuple, versions: dict[str, int] | None,
                work: str, partitions: int | None) -> tuple[dict, dict[int, int]]:
    """Worker side, round 1: one unit's rows, written by partition under ``work``. Returns the
    schema and the rows per partition."""
    df = step(LakeFrames(Path(lake), unit, versions), *args).collect()
    parts = ({0: df} if not df.is_empty() else {}) if partitions is None else split(df, partitions)
    for index, part in parts.items():
        directory = Path(work) / f"partition={index}"
        directory.mkdir(parents=True, exist_ok=True)
        part.write_parquet(directory / f"unit={unit or 'all'}.parquet", compression="lz4", statistics=False)
    return dict(df.schema), {index: part.height for index, part in parts.items()}


def _write_partition(work: str, root: str, table: str, index: int, partitions: int | None,
                     schema: dict) -> dict:
    """Worker side, round 2: partition ``index`` of ``table``, from its spilled parts."""
    spilled = sorted((Path(work) / f"partition={index}").glob("*.parquet"))
    df = pl.read_parquet(spilled) if spilled else pl.DataFrame(schema=schema)
    file = single_file(table) if partitions is None else partition_file(table, index, partitions)
    return write_file(df, Path(root), file)


class DaskBackend:
    """Runs build steps on the Dask scheduler at ``address`` (``tcp://host:port``) or with an
    existing ``distributed.Client``."""

    name = "dask"

    def __init__(self, lake: Path, address: str | None = None, client=None):
        from distributed import Client

        self.lake = Path(lake).resolve()
        self.versions: dict[str, int] | None = None
        self._own = client is None
        if client is None:
            if not address:
                raise InvalidInput("give the address of a Dask scheduler, e.g. tcp://127.0.0.1:8786")
            try:
                client = Client(address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise InvalidInput(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.client = client

    def _shared(self, args: tuple) -> tuple:
        """``args`` with every frame sent to the cluster once (a future), not once per task: the
        person map goes to every task of a table, and serialising it per task made it the client's
        largest allocation."""
        def share(value):
            if isinstance(value, pl.DataFrame):
                return self.client.scatter(value, hash=False)
            if isinstance(value, dict) and any(isinstance(v, pl.DataFrame) for v in value.values()):
                return {k: share(v) for k, v in value.items()}
            return value
        return tuple(share(a) for a in args)

    def run(self, step: Step, *args: Any, partitioned: bool = False) -> pl.DataFrame:
        months: list[str | None] = partition_months(self.lake, self.versions) if partitioned else [None]
        shared = self._shared(args)
        futures = [self.client.submit(_run_part, str(self.lake), month, step, shared, self.versions, pure=False)
                   for month in months]
        parts = self.client.gather(futures)
        if not parts:
            return step(LakeFrames(self.lake, "000000", self.versions), *args).collect()
        return pl.concat(parts, how="vertical")

    def write_table(self, step: Step, *args: Any, partitioned: bool, root: Path, table: str,
                    partitions: int | None) -> tuple[list[str], list[dict]]:
        units: list[str | None] = partition_months(self.lake, self.versions) if partitioned else [None]
        work = Path(root) / f".work-{table}"
        shared = self._shared(args)
        try:
            spilled = self.map(_spill_unit, [(str(self.lake), unit, step, shared, self.versions, str(work), partitions)
                                             for unit in units or ["000000"]])
            schema = spilled[0][0]
            files = self.map(_write_partition, [(str(work), str(root), table, index, partitions, schema)
                                                for index in range(partitions or 1)])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return list(schema), files

    def map(self, function: Callable[..., Any], items: list[tuple]) -> list:
        """``[function(*item) for item in items]``, one task per item on the cluster (results must
        be small: they come back to the client)."""
        return self.client.gather([self.client.submit(function, *item, pure=False) for item in items])

    def close(self) -> None:
        if self._own:
            self.client.close()
