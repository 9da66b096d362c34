"""Walk and remove directory trees that researchers wrote (homes, a sandbox's runtime directory),
holding one directory descriptor at a time and never following a symbolic link.

Python 3.11's ``os.walk``, ``Path.rglob`` and ``shutil.rmtree`` recurse once per directory level:
a home of 1,200 nested directories (``mkdir a; cd a`` in a loop, from a workspace) made each of
them raise ``RecursionError``, which stopped the hub's quota pass for every running workspace and a
project's purge halfway (its extract deleted, its homes and key kept, no certificate). A stack of
paths was not enough either (red team 7): 20 nested directories of 250-character names are a path
longer than any system call takes (``PATH_MAX``, 4,096 bytes), and every ``stat``, ``scandir`` and
``unlink`` below them failed with "File name too long", with the same effects.

So :func:`walk` goes down into a directory by its name relative to its parent's descriptor and back
up by ``..``, checked to be the directory it came from (:class:`TreeMoved` otherwise): no depth
and no path length is too much, and an entry is named to its caller relative to a descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: How every walk of a tree opens a directory: never through a symbolic link, never inherited.
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeMoved(OSError):
    """A directory of the tree was moved while it was walked."""

    def __init__(self, what: bytes):
        super().__init__(errno.ESTALE, f"{os.fsdecode(what)[-200:]} moved while the tree was walked")


@dataclass(frozen=True)
class Entry:
    """One entry below the walked root: ``directory`` (a descriptor of its directory, valid until
    the walk goes on) and ``name`` reach it; ``path`` is its path from the root, as bytes."""

    directory: int
    name: str
    path: bytes
    info: os.stat_result


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def walk(root: Path, on_leave: Callable[[int, str], None] | None = None) -> Iterator[Entry]:
    """Every entry below ``root`` (itself excluded), depth first, each directory's entries sorted,
    links not followed; an entry removed while the walk runs is skipped, and nothing is given for a
    missing ``root``. ``on_leave(parent, name)`` is called once every entry of the directory
    ``name`` was given (``parent``: a descriptor of the directory holding it)."""
    try:
        fd = os.open(root, DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    #: for each directory above the current one: its names left, its path, its identity, and the
    #: name of the directory below it
    above: list[tuple[Iterator[str], bytes, tuple[int, int], str]] = []
    try:
        names, prefix, here = iter(sorted(os.listdir(fd))), b"", _identity(os.fstat(fd))
        while True:
            for name in names:
                try:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                path = prefix + os.fsencode(name)
                yield Entry(fd, name, path, info)
                if not stat.S_ISDIR(info.st_mode):
                    continue
                try:
                    child = os.open(name, DIRECTORY, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if _identity(os.fstat(child)) != _identity(info):
                    os.close(child)
                    raise TreeMoved(path)
                above.append((names, prefix, here, name))
                os.close(fd)
                fd = child
                names, prefix, here = iter(sorted(os.listdir(fd))), path + b"/", _identity(info)
                break
            else:  # every entry of this directory given: back up to its parent
                if not above:
                    return
                names, prefix, here, name = above.pop()
                parent = os.open("..", DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = parent
                if _identity(os.fstat(fd)) != here:
                    raise TreeMoved(prefix or b".")
                if on_leave is not None:
                    on_leave(fd, name)
    finally:
        os.close(fd)


def remove(root: Path) -> None:
    """Remove the directory ``root`` and everything in it; a link is removed, never followed. For
    trees nothing writes meanwhile (a purged project's areas: no workspace of it runs)."""

    def leave(parent: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent)

    for entry in walk(root, on_leave=leave):
        if not stat.S_ISDIR(entry.info.st_mode):
            os.unlink(entry.name, dir_fd=entry.directory)
    os.rmdir(root)
