"""Where files are parsed: in this process, or spread over a Dask cluster. Same contract.

An executor takes the parse jobs of one phase and yields ``(position, outcome)`` pairs in the
jobs' order, whatever order they finish in, so that the pipeline commits files in the same order
in both modes (and builds the same lake, manifest and report).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from ..errors import InvalidInput
from .parse import ParseJob, ParseOutcome, parse_file

log = logging.getLogger(__name__)


class LocalExecutor:
    """Parse files one after the other in this process (polars uses every core for each)."""

    def run(self, jobs: list[ParseJob], progress=None) -> Iterator[tuple[int, ParseOutcome]]:
        from pathlib import Path

        for position, job in enumerate(jobs):
            name = Path(job.source).name
            if progress is not None:
                progress.start(name, Path(job.source).stat().st_size)
                outcome = parse_file(job, lambda n, name=name: progress.advance(name, n))
            else:
                outcome = parse_file(job)
            yield position, outcome


class DaskExecutor:
    """Submit every job of a phase to a Dask cluster at once; the workers must see the delivery
    and the lake at the same paths (a shared file system)."""

    def __init__(self, client):
        self.client = client

    def run(self, jobs: list[ParseJob], progress=None) -> Iterator[tuple[int, ParseOutcome]]:
        from pathlib import Path

        futures = []
        for job in jobs:
            name = Path(job.source).name
            if progress is not None:
                progress.start(name, Path(job.source).stat().st_size)
            futures.append(self.client.submit(parse_file, job, key=f"pds-ingest-{name}-{id(job)}", pure=False))
        try:
            for position, future in enumerate(futures):
                outcome = future.result()
                if progress is not None:
                    progress.advance(outcome.name, outcome.bytes)
                yield position, outcome
        finally:
            for future in futures:
                future.cancel()


@contextmanager
def make_executor(dask_address: str | None):
    """A :class:`LocalExecutor`, or a :class:`DaskExecutor` connected to ``dask_address``."""
    if not dask_address:
        yield LocalExecutor()
        return
    from distributed import Client

    try:
        client = Client(dask_address, timeout=30, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InvalidInput(f"cannot reach the Dask scheduler at {dask_address}: {exc}") from None
    try:
        yield DaskExecutor(client)
    finally:
        client.close()
