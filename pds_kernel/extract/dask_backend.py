"""The same build steps on a Dask cluster, for lakes that outgrow one machine.

A partitioned step runs as one task per DCIR month (each worker reads that month's files and the
small referentials itself, from the lake path it shares with the client); other steps run as one
task. Results come back as polars frames and are concatenated; the builder then sorts and writes
exactly as on one machine, so the files are byte-identical.

The project key never leaves the client: workers receive the pseudonym table (identifier →
pseudonym of the cohort's persons), never the key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import InvalidInput
from .frames import LakeFrames, Step, partition_months

log = logging.getLogger(__name__)


def _run_part(lake: str, month: str | None, step: Step, args: tuple,
              versions: dict[str, int] | None = None) -> pl.DataFrame:
    """Worker side: one step over one month (or the whole lake), at the pinned table versions."""
    return step(LakeFrames(Path(lake), month, versions), *args).collect()


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

    def run(self, step: Step, *args: Any, partitioned: bool = False) -> pl.DataFrame:
        months: list[str | None] = partition_months(self.lake, self.versions) if partitioned else [None]
        futures = [self.client.submit(_run_part, str(self.lake), month, step, args, self.versions, pure=False)
                   for month in months]
        parts = self.client.gather(futures)
        if not parts:
            return step(LakeFrames(self.lake, "000000", self.versions), *args).collect()
        return pl.concat(parts, how="vertical")

    def close(self) -> None:
        if self._own:
            self.client.close()
