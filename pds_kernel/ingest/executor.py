"""Where files are parsed: in this process, or spread over a Dask cluster. Same contract.

An executor takes the parse jobs of one phase and yields ``(position, outcome)`` pairs in the
jobs' order, whatever order they finish in, so that the pipeline commits files in the same order
in both modes (and builds the same lake, manifest and report).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import InvalidInput
from .parse import ParseJob, ParseOutcome, parse_file

log = logging.getLogger(__name__)


class LocalExecutor:
    """Parse files in this process, ``workers`` at a time, in threads.

    Each step of a parse runs in polars or Arrow code that releases the GIL, but not every step
    uses every core (the Parquet encoder of one file is mostly serial): with two files in flight,
    one file's write overlaps the next one's read, which keeps both cores of a small machine busy.
    A further ``workers`` jobs wait in the pool's queue, so a thread that finishes its file starts
    the next one at once instead of waiting for an earlier, slower file to be committed. Memory is
    bounded by ``workers`` batches (a queued job holds nothing); results still come back in the
    jobs' order."""

    def __init__(self, workers: int = 2):
        self.workers = max(1, workers)

    def run(self, jobs: list[ParseJob], progress=None) -> Iterator[tuple[int, ParseOutcome]]:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor
        from itertools import islice
        from pathlib import Path

        def parse(job: ParseJob) -> ParseOutcome:
            if progress is None:
                return parse_file(job)
            name = Path(job.source).name
            progress.start(name, Path(job.source).stat().st_size)
            return parse_file(job, lambda n: progress.advance(name, n))

        pending = iter(jobs)
        ahead = 2 * self.workers  # running + queued
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pds-parse") as pool:
            running = deque(pool.submit(parse, job) for job in islice(pending, ahead))
            position = 0
            try:
                while running:
                    outcome = running.popleft().result()
                    job = next(pending, None)
                    if job is not None:
                        running.append(pool.submit(parse, job))
                    yield position, outcome
                    position += 1
            finally:
                for future in running:
                    future.cancel()


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
