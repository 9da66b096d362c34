"""How many imports one gate stages and scans at once: ``airlock.import_concurrent_scans`` in all,
one per user.

A scan holds one of the gate's worker threads for as long as it stages the upload (up to
``import_max_file_bytes``), unpacks its archives and runs ``clamscan``, which loads the whole
signature database (about 1 GiB of memory with the official signatures, seconds to load) for
each import. Before this bound, a researcher sending twenty imports at once ran twenty scans at
once: every worker thread of the gate was taken, so every other user's review, download and page
waited, and the signatures were in memory twenty times (red team 13,
tests/security/test_redteam13_import_load.py). An import past the bound is refused at once with
503 and the reason (audited like every refused import, ``airlock.import.create``): it never
waits for a slot, which would hold a worker thread the same way.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import Unavailable

PER_USER = 1  #: imports of one user scanned at once


class ScanSlots:
    """The imports being staged and scanned in this process, by user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: Counter[str] = Counter()

    def take(self, user: str, total: int) -> None:
        """Take a slot for ``user``, or raise :class:`~pds_kernel.errors.Unavailable`."""
        with self._lock:
            if self._busy[user] >= PER_USER:
                raise Unavailable("another of your imports is being scanned: send this one once it is done")
            if sum(self._busy.values()) >= max(total, 1):
                raise Unavailable(f"the gate is scanning {max(total, 1)} imports already: try again in a minute")
            self._busy[user] += 1

    def give_back(self, user: str) -> None:
        with self._lock:
            self._busy[user] -= 1
            if self._busy[user] <= 0:
                del self._busy[user]

    @contextmanager
    def held(self, user: str) -> Iterator[None]:
        """Give the slot ``user`` took back at the end of the block, whatever happens in it."""
        try:
            yield
        finally:
            self.give_back(user)


#: the gate's slots (one gate process serves every import)
SLOTS = ScanSlots()
