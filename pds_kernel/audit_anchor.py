"""Anchors of the audit chain: its head, recorded outside the database after every write.

An anchor says "at this time, the chain ended at entry ``seq`` whose hash was ``head``". Someone who
can rewrite the database cannot remove or rewrite what was anchored without also rewriting the
anchor store, which lives elsewhere: a deleted tail, a database swapped for an older backup, or a
chain re-hashed from some point on no longer match the anchors (:mod:`pds_kernel.audit_verify`).

Stores implement :class:`AnchorStore` (append one anchor, read them all, describe where). Built
here: :class:`FileAnchorStore`, one JSON line per anchor, opened with ``O_APPEND`` and fsynced.
Locally it lives under ``<state>/audit``; in production the file sits on a write-once volume, or
an object store with object lock holds copies (docs/deploy-kubernetes.md). An object-store anchor
is a second implementation of the same interface.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .errors import IntegrityError

#: version of the anchor line format
ANCHOR_FORMAT = 1
#: how much of the end of an anchor file :meth:`FileAnchorStore.latest` reads (an anchor is ~200 bytes)
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Anchor:
    seq: int  #: number of the last entry of the chain (0 = empty chain)
    head: str  #: its hash
    time: str  #: when the anchor was written (UTC, ISO 8601)
    keyed_from: int  #: first entry hashed with the key (entries before it use the unkeyed rule)
    key_id: str  #: which key (its public identifier, never the key)
    #: "write" (after a commit) | "verify" (after a successful verification) | an action whose
    #: commit it anchors, recorded for good (``registry.seals.upgrade``: :mod:`pds_kernel.registry.seals`;
    #: ``registry.bootstrap.end``: :mod:`pds_kernel.registry.bootstrap`); one anchor per reason of a commit
    reason: str = "write"
    format: int = ANCHOR_FORMAT


class AnchorStore(Protocol):
    """Where anchors go. Implementations must make an appended anchor impossible to change or
    remove for anyone who can only write the database."""

    def append(self, anchor: Anchor) -> None:
        """Record ``anchor`` durably before returning."""

    def read(self) -> list[Anchor]:
        """Every anchor recorded, in the order written."""

    def describe(self) -> str:
        """Where the anchors are, for messages."""

    def latest(self) -> Anchor | None:
        """The anchor appended last (``None``: none yet), read without reading them all."""


class FileAnchorStore:
    """Anchors as JSON lines in an append-only file (``O_APPEND``, fsync after each line)."""

    def __init__(self, path: Path):
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def append(self, anchor: Anchor) -> None:
        line = json.dumps(asdict(anchor), sort_keys=True, separators=(",", ":")) + "\n"
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = line.encode()
            written = os.write(fd, data)  # one write: concurrent writers never interleave a line
            if written != len(data):
                raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # make the new directory entry durable too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def latest(self) -> Anchor | None:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        for line in reversed(tail.split("\n")[1 if size > _TAIL_BYTES else 0:]):
            try:
                return Anchor(**json.loads(line))
            except (ValueError, TypeError):
                continue  # blank, or a write torn by a crash
        return None

    def read_from(self, offset: int) -> tuple[list[Anchor], int] | None:
        """The anchors of the whole lines from byte ``offset`` on, and the offset after them (where
        the next read starts); ``None`` when the file is shorter than ``offset`` (it was cut or
        replaced). A line that is no anchor is skipped (a write torn by a crash: :meth:`read` says
        more)."""
        try:
            with open(self.path, "rb") as handle:
                if handle.seek(0, os.SEEK_END) < offset:
                    return None
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return None if offset else ([], 0)
        whole = data[:data.rfind(b"\n") + 1]
        anchors = []
        for line in whole.decode("utf-8", errors="replace").split("\n"):
            try:
                anchors.append(Anchor(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return anchors, offset + len(whole)

    def read(self) -> list[Anchor]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        anchors = []
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                anchors.append(Anchor(**json.loads(line)))
            except (ValueError, TypeError):
                if number == len(lines):  # the last line, without its newline: a write torn by a crash
                    break
                raise IntegrityError(f"anchor file {self.path}, line {number}, is not an anchor: the "
                                     "file was edited; keep it aside and compare it with its copies "
                                     "(docs/audit.md)") from None
        return anchors
