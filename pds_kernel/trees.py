"""Walk and remove directory trees that researchers wrote (homes), with a stack of their own and
never following a symbolic link.

Python 3.11's ``os.walk``, ``Path.rglob`` and ``shutil.rmtree`` recurse once per directory level:
a home of 1,200 nested directories (``mkdir a; cd a`` in a loop, from a workspace) made each of
them raise ``RecursionError``, which stopped the hub's quota pass for every running workspace and a
project's purge halfway (its extract deleted, its homes and key kept, no certificate).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path


def entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, lstat)`` of every entry below ``root`` (``root`` itself excluded), links not
    followed; an entry removed while the walk runs is skipped."""
    stack = [os.fspath(root)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                found = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in found:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield entry.path, info
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)


def remove(root: Path) -> None:
    """Remove the directory ``root`` and everything in it; a link is removed, never followed. For
    trees nothing writes meanwhile (a purged project's areas: no workspace of it runs)."""
    directories = [os.fspath(root)]
    for path, info in entries(root):
        if stat.S_ISDIR(info.st_mode):
            directories.append(path)
        else:
            os.unlink(path)
    for directory in reversed(directories):  # every directory after those below it
        os.rmdir(directory)
