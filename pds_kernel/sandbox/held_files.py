"""Disk a running sandbox takes that no walk of its home sees: files its processes keep open, or
mapped, after their last name was removed (``open``, write, ``unlink``, keep the descriptor). The
file system frees them only when the last process lets go, so the home quota counts them too (see
:func:`pds_kernel.project_end.outside_home_bytes`).

Read from the host's ``/proc`` (the hub is the sandbox's ancestor there): the descriptors
(``/proc/PID/fd``) and the mapped files (``/proc/PID/map_files``, readable by root only; a hub that
is not root counts descriptors alone) of the sandbox's launcher and all its descendants.
"""

from __future__ import annotations

import os
import stat

import psutil

#: Descriptors and mappings read at most per sandbox and pass. A sandbox may hold millions
#: (``dup`` is cheap), and reading them all would keep the hub's watcher from its other checks
#: (revocations included); a legitimate workspace holds a few thousand.
MAX_ENTRIES = 65536


class TooManyToMeasure(Exception):
    """The sandbox holds more than :data:`MAX_ENTRIES` descriptors and mappings."""


def _tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.Error:
        return []


def unlinked_bytes(pid: int, device: int) -> int:
    """Bytes of the regular files of file system ``device`` that process ``pid`` or a descendant
    holds open or mapped and that have no name left; each file counted once, at the larger of its
    size and its allocated blocks. 0 when ``pid`` is not running. Raises :class:`TooManyToMeasure`
    past :data:`MAX_ENTRIES` entries."""
    if pid <= 0:
        return 0
    held: dict[int, int] = {}
    entries = 0
    for process in _tree(pid):
        for kind in ("fd", "map_files"):
            folder = f"/proc/{process}/{kind}"
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            entries += len(names)
            if entries > MAX_ENTRIES:
                raise TooManyToMeasure(f"its processes hold more than {MAX_ENTRIES} open files and mappings")
            for name in names:
                try:
                    info = os.stat(f"{folder}/{name}")
                except OSError:
                    continue
                if info.st_nlink == 0 and info.st_dev == device and stat.S_ISREG(info.st_mode):
                    held[info.st_ino] = max(info.st_size, info.st_blocks * 512)
    return sum(held.values())
