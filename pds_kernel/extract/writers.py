"""Which processes could change an extract's files without the kernel changing their state.

The checks of an extract (:mod:`.tree`) see a change by its files' ``stat``: the kernel sets a
file's change time on every write. With one exception: a page of a file mapped shared and writable
(``mmap(MAP_SHARED, PROT_WRITE)``) that was written once is dirty and writable in that process's
page tables, and every further write to it is a plain store to memory, with no system call and no
new change time until the kernel writes the page back (seconds later) and write-protects it again.
Red team 7 did that to a published extract: a page dirtied before a workspace's start, with the
bytes the check expected, then rewritten after the check: the content changed, the ``stat`` did not,
and neither the start's check, the watcher, nor the gate's read after its check saw it.

So a check looks for such a writer first (:func:`refuse_writers`), before it takes the fingerprint
it trusts: a process holding one of the files open for writing or mapped shared and writable. With
none at that moment, any later change needs a new ``open`` or ``mmap`` and a first write through
it, which sets the change time, and the fingerprint sees it.

What it sees: every process whose ``/proc/<pid>`` this process may read: all of them for a hub or
a command running as root, only its own user's otherwise (then root's processes are not seen; root
can change anything anyway), only the pod's own in a Kubernetes container. Standard library only,
as :mod:`.tree`.
"""

from __future__ import annotations

import os
import re
import stat

#: A file state identity: (device, inode).
Identity = tuple[int, int]

_PROC = "/proc"

#: A line of ``/proc/<pid>/maps`` mapping a file shared and writable (permissions ``?w?s``): its
#: device (major:minor, hexadecimal) and inode. Found in one pass over the whole file: a process
#: maps thousands of regions, and very few of them shared and writable.
_SHARED_WRITABLE = re.compile(rb"^\S+ .w.s \S+ ([0-9a-fA-F]+):([0-9a-fA-F]+) (\d+)", re.M)


class WriterFound(Exception):
    """A process holds a file of the extract open for writing, or mapped shared and writable."""


def identities(states) -> set[Identity]:
    """The (device, inode) of every regular file among ``states`` (``os.stat_result`` values)."""
    return {(info.st_dev, info.st_ino) for info in states if stat.S_ISREG(info.st_mode)}


def _mapped_writable(pid: str, targets: set[Identity], inodes: set[int]) -> bool:
    try:
        with open(f"{_PROC}/{pid}/maps", "rb") as maps:
            text = maps.read()
    except OSError:  # gone, or not ours to read
        return False
    for major, minor, inode in _SHARED_WRITABLE.findall(text):
        if int(inode) in inodes and (os.makedev(int(major, 16), int(minor, 16)), int(inode)) in targets:
            return True
    return False


def _open_for_writing(pid: str, targets: set[Identity]) -> bool:
    try:
        descriptors = os.listdir(f"{_PROC}/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        try:
            info = os.stat(f"{_PROC}/{pid}/fd/{fd}")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) not in targets:
            continue
        try:
            with open(f"{_PROC}/{pid}/fdinfo/{fd}", encoding="ascii") as fdinfo:
                flags = next((int(line.split()[1], 8) for line in fdinfo if line.startswith("flags:")), 0)
        except (OSError, ValueError, IndexError):
            return True  # cannot tell how it is open: count it as a writer (deny by default)
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            return True
    return False


def refuse_writers(targets: set[Identity]) -> None:
    """Raise :class:`WriterFound` if a process (one this process may see) holds a file of
    ``targets`` open for writing or mapped shared and writable."""
    if not targets:
        return
    inodes = {ino for _dev, ino in targets}
    try:
        pids = [name for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return  # no /proc: nothing to look at (the fingerprint still catches every other change)
    for pid in pids:
        if _open_for_writing(pid, targets) or _mapped_writable(pid, targets, inodes):
            raise WriterFound(f"process {pid} holds one of its files open for writing or mapped writable: "
                              "it could change the file without the change being seen")
