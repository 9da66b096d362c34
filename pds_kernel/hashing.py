"""SHA-256 of a file, read in blocks: one function for every place that fingerprints bytes
(delivery files at intake, extract files and their manifest, staged and released airlock files)."""

from __future__ import annotations

import hashlib
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
