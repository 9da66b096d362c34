"""Reading what a sandboxed child writes on a pipe, within a bound (the gate's children).

A child of the gate (the model check's sandbox, the rebuild of a file) runs code or reads files
an attacker chose: what it prints is theirs too, and may be gigabytes. Read whole into memory
(``subprocess.run(capture_output=True)``), it would fill the gate's. :class:`Drain` reads a pipe
to its end in a thread, so the child never blocks on a full pipe, and keeps at most ``bound``
bytes: the last ones (``tail``: what a log needs) or the first ones, and then nothing when the
child wrote more (a result cut short is no result). It counts every byte it read.
"""

from __future__ import annotations

import threading
from typing import BinaryIO

BLOCK = 1 << 16


class Drain:
    """Read ``stream`` to its end in a daemon thread, keeping at most ``bound`` bytes (see the
    module), and close it; :meth:`result` gives them once the stream is closed."""

    def __init__(self, stream: BinaryIO, bound: int, *, tail: bool):
        self._stream, self._bound, self._tail = stream, bound, tail
        self._kept = bytearray()
        self.total = 0  #: bytes read
        self.over = False  #: more than ``bound`` bytes were written
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        finally:
            self._stream.close()

    def _read(self) -> None:
        while block := self._stream.read(BLOCK):
            self.total += len(block)
            if self._tail:
                self._kept += block
                if len(self._kept) > self._bound:
                    del self._kept[:-self._bound]
                    self.over = True
            elif not self.over:
                self._kept += block
                if len(self._kept) > self._bound:
                    self._kept, self.over = bytearray(), True

    def result(self, timeout: float = 10.0) -> bytes:
        """What was kept, after waiting at most ``timeout`` seconds for the stream's end (a
        grandchild that keeps the pipe open is not waited for longer)."""
        self._thread.join(timeout)
        return bytes(self._kept)
