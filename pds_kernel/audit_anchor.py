"""Anchors of the audit chain: its head, recorded outside the database after every write.

An anchor says "at this time, the chain ended at entry ``seq`` whose hash was ``head``". Someone who
can rewrite the database cannot remove or rewrite what was anchored without also rewriting the
anchor store, which lives elsewhere: a deleted tail, a database swapped for an older backup, or a
chain re-hashed from some point on no longer match the anchors (:mod:`pds_kernel.audit_verify`).

Anchors are authenticated (format 2): each line carries ``mac``, an HMAC-SHA256 under the audit key
it names (``key_id``) of its other fields, the format number included, behind a domain prefix of
its own (never a valid entry hash or seal). Whoever may append to the anchor file but holds no key
(the platform's account may, even with ``chattr +a``) writes only lines that count for nothing.
Which lines are trusted (:class:`AnchorTrust`, read in file order):

- a format-2 line whose MAC verifies under the keyring's key of its ``key_id``, unless that key was
  retired for its entry by an earlier trusted line: an anchor of the key's rotation entry
  (``reason`` ``audit.key.rotate``) for an entry before it, or a line of a newer key of the keyring
  for an entry not after it (a retired key signs nothing after its rotation);
- a format-1 line (no MAC, written by the releases before this one) only before the first trusted
  format-2 line: an append-only file gets no line inserted before an existing one.

Every other line (a bad MAC, a key the keyring lacks, a format-1 line after a format-2 one, a line
that is no anchor) is untrusted: no check counts it, and ``pds audit verify`` names it.

Stores implement :class:`AnchorStore` (append one anchor, read them all, describe where). Built
here: :class:`FileAnchorStore`, one JSON line per anchor, opened with ``O_APPEND`` and fsynced.
Locally it lives under ``<state>/audit``; in production the file sits on a write-once volume, or
an object store with object lock holds copies (docs/deploy-kubernetes.md). An object-store anchor
is a second implementation of the same interface.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from .audit_hash import same_digest
from .audit_key import AuditKey, Keyring
from .audit_rotation import ROTATE_ACTION

#: version of the anchor line format written by this release (authenticated)
ANCHOR_FORMAT = 2
#: the format written before anchors carried a MAC, trusted only before the first format-2 line
UNSIGNED_FORMAT = 1
#: the anchor's reason of a key rotation's commit: the key it names signs no entry after that anchor's
ROTATION_REASON = ROTATE_ACTION
#: domain of an anchor's MAC: never the text of an audit entry's hash or of another seal
_DOMAIN = b"pds-workspace audit anchor v2\x00"
#: how much of the end of an anchor file :meth:`FileAnchorStore.latest` reads (an anchor is ~300 bytes)
_TAIL_BYTES = 64 * 1024
#: the fields of a line and their JSON types (``format`` absent: format 1)
_TYPES = {"seq": int, "head": str, "time": str, "keyed_from": int, "key_id": str, "reason": str,
          "format": int, "mac": str}
_REQUIRED = {"seq", "head", "time", "keyed_from", "key_id"}


@dataclass(frozen=True)
class Anchor:
    seq: int  #: number of the last entry of the chain (0 = empty chain)
    head: str  #: its hash
    time: str  #: when the anchor was written (UTC, ISO 8601)
    keyed_from: int  #: first entry hashed with the key (entries before it use the unkeyed rule)
    key_id: str  #: which key (its public identifier, never the key); its key signs ``mac``
    #: "write" (after a commit) | "verify" (after a successful verification) | an action whose
    #: commit it anchors, recorded for good (``registry.seals.upgrade``: :mod:`pds_kernel.registry.seals`;
    #: ``registry.bootstrap.end``: :mod:`pds_kernel.registry.bootstrap`; ``audit.key.rotate``);
    #: one anchor per reason of a commit
    reason: str = "write"
    format: int = ANCHOR_FORMAT
    mac: str = ""  #: HMAC-SHA256 of the other fields (:func:`anchor_mac`); empty in format 1


def anchor_mac(anchor: Anchor, key: AuditKey | hmac.HMAC) -> str:
    """The MAC of ``anchor`` under ``key`` (or :func:`_keyed`'s HMAC of it, ready for each line):
    of :func:`_mac_text`, after the domain prefix."""
    mac = (key if isinstance(key, hmac.HMAC) else _keyed(key)).copy()
    mac.update(_mac_text(anchor))
    return mac.hexdigest()


def _mac_text(anchor: Anchor) -> bytes:
    """Every field but ``mac``, in a fixed order, each text prefixed by its length: one text has one
    reading (no field can run into the next), and it is cheap to make for every line read."""
    texts = (anchor.head, anchor.time, anchor.key_id, anchor.reason)
    numbers = f"{anchor.format} {anchor.seq} {anchor.keyed_from}"
    return (numbers + "".join(f" {len(text)}:{text}" for text in texts)).encode("utf-8", "surrogatepass")


def _keyed(key: AuditKey) -> hmac.HMAC:
    """An HMAC under ``key`` that has read the domain prefix (copied for each anchor)."""
    return hmac.new(key.secret, _DOMAIN, hashlib.sha256)


def signed(anchor: Anchor, keyring: Keyring) -> Anchor:
    """``anchor`` in format 2, its MAC made with the keyring's key of its ``key_id``."""
    key = keyring.get(anchor.key_id)
    if key is None:
        raise ValueError(f"key {anchor.key_id} of an anchor to write is not in the audit keyring")
    unsigned = replace(anchor, format=ANCHOR_FORMAT, mac="")
    return replace(unsigned, mac=anchor_mac(unsigned, key))


def parse_line(text: str) -> Anchor | None:
    """The anchor a line holds, ``None`` when it holds none (every field of its JSON type)."""
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or not _REQUIRED <= fields.keys() <= _TYPES.keys():
        return None
    for name, value in fields.items():
        if type(value) is not _TYPES[name]:  # exactly: a bool is no int
            return None
    if "format" not in fields:
        fields["format"] = UNSIGNED_FORMAT
    return Anchor(**fields)


class AnchorTrust:
    """Which lines of one anchor file are trusted, decided line by line in file order (the module
    says how). ``keyring`` ``None``: nothing can be checked, every anchor is taken as written (tools
    and tests that read a file without its keys only)."""

    def __init__(self, keyring: Keyring | None) -> None:
        self._keyring = keyring
        self.signed_seen = False  #: a trusted format-2 line was read: no format-1 line counts after it
        self._retired_from: dict[str, int] = {}  #: key id -> first entry it cannot sign
        #: key id -> (its age rank in the keyring, an HMAC under it ready for :func:`anchor_mac`)
        self._keys = {key.key_id: (index, _keyed(key)) for index, key in enumerate(keyring.keys)} if keyring else {}

    def problem(self, anchor: Anchor | None) -> str | None:
        """Why the next line (``anchor``: what it holds) is not trusted, ``None`` when it is."""
        if anchor is None:
            return "it is not an anchor (edited, or written torn)"
        if self._keyring is None:
            return None
        if anchor.format == UNSIGNED_FORMAT:
            if self.signed_seen:
                return ("it has no MAC (format 1) and comes after authenticated lines: format 1 is "
                        "trusted only before the first authenticated line")
            return None
        if anchor.format != ANCHOR_FORMAT:
            return f"its format {anchor.format} is unknown"
        known = self._keys.get(anchor.key_id)
        if known is None:
            return (f"it names key {anchor.key_id}, which the audit keyring lacks (forged, or a retired "
                    "key removed from the keyring)")
        index, keyed = known
        if not same_digest(anchor.mac, anchor_mac(anchor, keyed)):
            return f"its MAC does not verify under key {anchor.key_id}: forged, or edited"
        retired = self._retired_from.get(anchor.key_id)
        if retired is not None and anchor.seq >= retired:
            return (f"it is signed with key {anchor.key_id} for entry {anchor.seq}, but an earlier line "
                    f"says that key was retired from entry {retired} on (a retired key after its rotation)")
        self._trusted(anchor, index)
        return None

    def _trusted(self, anchor: Anchor, index: int) -> None:
        self.signed_seen = True
        if anchor.reason == ROTATION_REASON:
            self._retire(anchor.key_id, anchor.seq + 1)
        for older in self._keyring.keys[:index]:
            self._retire(older.key_id, anchor.seq)

    def _retire(self, key_id: str, seq: int) -> None:
        self._retired_from[key_id] = min(seq, self._retired_from.get(key_id, seq))


@dataclass(frozen=True)
class AnchorLine:
    """One whole line of an anchor file, as read."""

    number: int  #: from 1
    anchor: Anchor | None  #: ``None``: the line holds no anchor
    problem: str | None  #: why it is not trusted (``None``: trusted)
    digest: str  #: SHA-256 of the line's bytes (names it in the audit trail)


class AnchorStore(Protocol):
    """Where anchors go. Implementations must make an appended anchor impossible to change or
    remove for anyone who can only write the database; readers return trusted anchors only."""

    def append(self, anchor: Anchor) -> None:
        """Record ``anchor`` durably before returning."""

    def read(self) -> list[Anchor]:
        """Every trusted anchor, in the order written."""

    def lines(self) -> list[AnchorLine]:
        """Every line, trusted or not, in the order written."""

    def describe(self) -> str:
        """Where the anchors are, for messages."""

    def latest(self) -> Anchor | None:
        """The trusted anchor appended last (``None``: none yet), read without reading them all."""


class FileAnchorStore:
    """Anchors as JSON lines in an append-only file (``O_APPEND``, fsync after each line), read
    with ``keyring`` (:class:`AnchorTrust`). Only whole lines are read: a last line without its
    newline is being written, or was torn by a crash (the next append starts a new line after it)."""

    def __init__(self, path: Path, keyring: Keyring | None):
        self.path = path
        self.keyring = keyring

    def describe(self) -> str:
        return str(self.path)

    def trust(self) -> AnchorTrust:
        """A new reader of this file's lines, for one pass from its first line."""
        return AnchorTrust(self.keyring)

    def append(self, anchor: Anchor) -> None:
        fields = asdict(anchor)
        if not anchor.mac:  # format 1 as the releases before this one wrote it (tests of the upgrade)
            del fields["mac"]
        data = (json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n").encode()
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # after a torn line: this anchor stays a line of its own
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
        """The last line of the file's end whose MAC verifies (a forged line cannot be one; a line
        of a retired key can, and names a key older than the one in force: what the writers use it
        for, refusing to sign with a key older than its, is then unaffected). When the end holds
        none (format-1 lines only, before this release's first write), the whole file is read."""
        if self.keyring is None:
            raise ValueError("the anchors' latest is read with the audit keyring")
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return None
        whole = tail[:tail.rfind(b"\n") + 1].decode("utf-8", errors="replace").split("\n")
        for line in reversed(whole[1 if size > _TAIL_BYTES else 0:]):
            anchor = parse_line(line)
            if anchor is not None and anchor.format == ANCHOR_FORMAT:
                key = self.keyring.get(anchor.key_id)
                if key is not None and same_digest(anchor.mac, anchor_mac(anchor, key)):
                    return anchor
        trusted = self.read()
        return trusted[-1] if trusted else None

    def read_from(self, offset: int, trust: AnchorTrust) -> tuple[list[Anchor], int] | None:
        """The trusted anchors of the whole lines from byte ``offset`` on, and the offset after them
        (where the next read starts); ``None`` when the file is shorter than ``offset`` (it was cut
        or replaced). ``trust``: the reader that read the lines before ``offset`` (from 0: a new one)."""
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
        for line in whole.decode("utf-8", errors="replace").split("\n")[:-1]:
            if not line.strip():
                continue
            anchor = parse_line(line)
            if trust.problem(anchor) is None:
                anchors.append(anchor)
        return anchors, offset + len(whole)

    def lines(self) -> list[AnchorLine]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        trust = self.trust()
        found = []
        for number, raw in enumerate(data.split(b"\n")[:-1], start=1):  # the last: no newline yet
            if not raw.strip():
                continue
            anchor = parse_line(raw.decode("utf-8", errors="replace"))
            found.append(AnchorLine(number, anchor, trust.problem(anchor), hashlib.sha256(raw).hexdigest()))
        return found

    def read(self) -> list[Anchor]:
        return [line.anchor for line in self.lines() if line.problem is None]
