"""What the anchors of the audit trail say about its end, kept up to date by reading only the lines
appended since the last look (for checks made at every use: :mod:`pds_kernel.audit_newest`).

Two facts:

- :attr:`AnchorHistory.top`: the highest entry anchored and its hash. The database must still hold
  it as it was: a tail cut from the database, or the database restored from an older copy, no longer
  does;
- :attr:`AnchorHistory.rolled_back_from`: the lowest entry anchored again with another hash, or
  anchored with a hash not anchored for it before although an entry at least as high was anchored
  more than :data:`WINDOW` anchors before. Both happen when the database was cut or restored and
  written again (the platform's own writes then anchor new entries under the numbers of the ones
  removed), or when someone who holds the key and may append to the anchor file names an old entry
  with another hash (red team 8). An authentic line replayed (the same entry and hash again, as
  anyone who may append can do) says nothing new: it is no rollback. An honest anchor comes late
  only by the few anchors other commits append between its commit and its own append (a commit of
  20,000 entries anchors once, so its number may jump far ahead of an anchor still to come).

Only trusted lines count (:class:`pds_kernel.audit_anchor.AnchorTrust`: a MAC under the audit key,
or format 1 before the first authenticated line): a line appended by someone without the key
neither names a head nor a rollback. ``pds audit verify`` reads every anchor and names every such
entry, and every untrusted line; this only answers "may entries after number N have been removed",
cheaply: the first look of a process reads the whole file (about 300 bytes an anchor, one HMAC
each), every later one only the lines appended since.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque

#: How many anchors another commit's anchor may come after, at most, in honest operation.
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
        trust = getattr(self._store, "trust", None)
        self._trust = trust() if trust is not None else None  #: which lines count, read in order
        self._recent: deque[tuple[int, str]] = deque()  #: the last WINDOW anchors read (entry, hash)
        self._heads: dict[int, tuple[str, int]] = {}  #: entry -> (first hash, how many in _recent)
        self._floor = 0  #: the highest entry anchored before the last WINDOW anchors
        #: hash((entry, hash)) of every anchor read, 8 bytes each: an authentic line replayed long
        #: after (the same entry and hash again) says nothing new, and is no rollback
        self._seen = array("q")
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
                found = read_from(self._offset, self._trust)
            if found is None:  # the file is shorter than what was read of it: cut or replaced
                self._rolled_back(0)
                return
            anchors, self._offset = found
            for anchor in anchors:
                self._add(anchor.seq, anchor.head)

    def _add(self, seq: int, head: str) -> None:
        known = self._heads.get(seq)
        if known is not None:
            honest = known[0] == head
        else:
            honest = (seq > self._floor or (self.top is not None and (seq, head) == self.top)
                      or hash((seq, head)) in self._seen)
        if not honest:
            self._rolled_back(seq)
        if self.top is None or seq > self.top[0]:
            self.top = (seq, head)
        self._heads[seq] = (known[0] if known else head, (known[1] if known else 0) + 1)
        self._seen.append(hash((seq, head)))
        self._recent.append((seq, head))
        if len(self._recent) > WINDOW:
            old, _ = self._recent.popleft()
            self._floor = max(self._floor, old)
            first, count = self._heads[old]
            if count == 1:
                del self._heads[old]
            else:
                self._heads[old] = (first, count - 1)

    def _rolled_back(self, seq: int) -> None:
        self.rolled_back_from = seq if self.rolled_back_from is None else min(self.rolled_back_from, seq)
