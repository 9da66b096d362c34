"""What the anchors of the audit trail say about its end, kept up to date by reading only the lines
appended since the last look (for checks made at every use: :mod:`pds_kernel.audit_newest`).

Two facts:

- :attr:`AnchorHistory.top`: the highest entry anchored and its hash. The database must still hold
  it as it was: a tail cut from the database, or the database restored from an older copy, no longer
  does;
- :attr:`AnchorHistory.rolled_back_from`: the lowest entry that was anchored again with another
  hash, or anchored after an entry more than :data:`WINDOW` later (whose hashes are no longer kept
  here). Both happen when the database was cut or restored and written again (the platform's own
  writes then anchor new entries under the numbers of the ones removed), or when someone who may
  append to the anchor file names an old head as the latest (red team 8). Honest anchors go back a
  little only: two commits anchor their heads in either order.

``pds audit verify`` reads every anchor and names every such entry; this only answers "may entries
after number N have been removed", cheaply: the first look of a process reads the whole file
(about 200 bytes an anchor), every later one only the lines appended since.
"""

from __future__ import annotations

import threading

#: How far back (entries) an anchor may honestly come after a later one: commits that anchor in
#: either order are a few entries apart.
WINDOW = 1000


class AnchorHistory:
    """The anchors of ``store`` read so far (a :class:`pds_kernel.audit_anchor.FileAnchorStore`, or
    any store: read whole at each look when it cannot read from an offset)."""

    def __init__(self, store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._offset = 0
        self._heads: dict[int, str] = {}  #: the first hash anchored for each entry of the window
        self.top: tuple[int, str] | None = None
        self.rolled_back_from: int | None = None

    def refresh(self) -> None:
        """Read the anchors appended since the last look."""
        with self._lock:
            read_from = getattr(self._store, "read_from", None)
            if read_from is None:  # a store that can only be read whole: start again each time
                self._start()
                found = (self._store.read(), 0)
            else:
                found = read_from(self._offset)
            if found is None:  # the file is shorter than what was read of it: cut or replaced
                self._rolled_back(0)
                return
            anchors, self._offset = found
            for anchor in anchors:
                self._add(anchor.seq, anchor.head)

    def _add(self, seq: int, head: str) -> None:
        top = self.top[0] if self.top is not None else -1
        known = self._heads.get(seq)
        if (known is not None and known != head) or (known is None and seq < top - WINDOW):
            self._rolled_back(seq)
        self._heads.setdefault(seq, head)
        if seq > top:
            self.top = (seq, head)
        if len(self._heads) > 2 * WINDOW:  # forget what fell out of the window, now and then
            floor = self.top[0] - WINDOW
            self._heads = {s: h for s, h in self._heads.items() if s >= floor}

    def _rolled_back(self, seq: int) -> None:
        self.rolled_back_from = seq if self.rolled_back_from is None else min(self.rolled_back_from, seq)
