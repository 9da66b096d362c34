"""A check the platform runs every ``interval`` seconds on a service's own event loop.

The hub's :class:`~pds_kernel.hub.expiry.MembershipWatcher` and the gateway's
:class:`~pds_kernel.k8s.cluster_watch.ClusterWatcher` are such checks: a pass that fails (the
registry unreachable for a moment) is logged and tried again at the next one; ``close`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class PeriodicCheck:
    """Subclasses give :meth:`check_once` and name what they check in :attr:`what` (for the log)."""

    what = "periodic check"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Run on the running event loop, first pass after one interval."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_once(self) -> object:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; next try in %s s", self.what, self.interval)
