"""SHA-256 of a file, read in blocks: one function for every place that fingerprints bytes
(delivery files at intake, extract files and their manifest, staged and released airlock files)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

#: Read size: large enough that hashing a multi-GB delivery file is not dominated by system calls.
BLOCK = 8 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def sha256_at(directory: int, name: str) -> str:
    """The hex SHA-256 of the regular file ``name`` in the directory open as ``directory`` (a link
    is not followed, a FIFO never waited for: :class:`OSError` for anything but a regular file)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{name} is not a regular file")
        digest = hashlib.sha256()
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
