"""The notebook server keeps its log to itself: its kernels and terminals write into a pipe.

The local spawner starts the server with its output on a host file, the workspace's log
(``paths.state/logs``, which the hub's quota watcher counts and administrators read: the
lockdown's refusals are logged there). Every process the server starts inherits that output, and
a descriptor of a regular file lets its holder do more than append: clear ``O_APPEND`` and write
anywhere, or truncate the file, erasing or forging what the server logged (red team 20A).

:func:`keep_log_to_itself`, called first by :mod:`.notebook_server` (after the server made itself
non-dumpable, so no kernel can reopen the server's descriptors through ``/proc``), moves the log
to a descriptor no child inherits and puts a pipe on standard output and error instead; a thread
of the server copies the pipe into the log. When the output is not a regular file (a pipe, as on
Kubernetes, or a terminal) nothing changes.
"""

from __future__ import annotations

import atexit
import os
import stat
import sys
import threading

#: bytes copied at a time from the pipe into the log
CHUNK = 65536


def keep_log_to_itself() -> bool:
    """Put a pipe copied into the log on descriptors 1 and 2 when the log is a regular file: True."""
    try:
        if not stat.S_ISREG(os.fstat(1).st_mode):
            return False
    except OSError:
        return False
    log = os.dup(1)  # not inherited (Python's descriptors are non-inheritable)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    threading.Thread(target=_copy, args=(read_end, log), name="pds-log-relay", daemon=True).start()
    atexit.register(_drain, read_end, log)
    return True


def _write_all(log: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(log, data):]
    except OSError:  # the log past the file size limit, a full disk: what is left is dropped
        pass


def _copy(read_end: int, log: int) -> None:
    """Copy until no writer is left; never stop on a write error (the writers would then block)."""
    while True:
        try:
            data = os.read(read_end, CHUNK)
        except InterruptedError:
            continue
        if not data:
            return
        _write_all(log, data)


def _drain(read_end: int, log: int) -> None:
    """At the server's exit: copy what is in the pipe now (its last words), without waiting for
    writers (kernels may outlive it a moment)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        os.set_blocking(read_end, False)
        while data := os.read(read_end, CHUNK):
            _write_all(log, data)
    except OSError:
        pass
