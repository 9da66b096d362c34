"""The rules of the audit chain and its verification (pure: rows, keyring and anchors in, report out).

Two hash rules, recorded per entry in ``chain_version`` (:mod:`pds_kernel.audit_hash`): ``1``
(unkeyed, entries written before the key existed) and ``2`` (HMAC under a key of the keyring).
Both cover the entry's number and its predecessor's hash, so an entry cannot move or be cut out
without breaking its own hash or its successor's link. Which rule applies from which entry on is
fixed by the anchors (``keyed_from``, written outside the database), not by the rows themselves:
re-hashing keyed entries with the unkeyed rule is caught even if ``chain_version`` is rewritten.
Which key signs which keyed entry follows from the rotation entries (:mod:`pds_kernel.audit_rotation`),
starting with the key the first anchor names; each anchor also names the key of its head, so a
rotation entry deleted, replayed or forged is caught against them too.

:func:`verify_chain` names every entry that was edited, deleted (inside or at the end of the
chain), reordered, inserted, rewritten (hash recomputed without the key or with another key,
a retired one included) or rolled back (the database restored from an older copy), says when the
configured keyring holds none of the keys that wrote the chain, and lists the entries of a key the
keyring lacks (a lost retired key: readable, not verifiable).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .audit_anchor import Anchor
from .audit_forged import ForgedLine
from .audit_hash import (
    CHAIN_KEYED,
    CHAIN_UNKEYED,
    GENESIS_HASH,
    compute_hash,
    compute_keyed_hash,
    row_values,
    same_digest,
)
from .audit_key import AuditKey, Keyring
from .audit_rotation import Rotation, key_at, key_segments


class ChainRow(Protocol):
    """What verification reads of a stored entry (the ORM row or any object with these fields)."""

    seq: int
    time: str
    schema_version: int
    actor: str
    action: str
    target: str
    project: str
    outcome: str
    details: str
    prev_hash: str
    hash: str
    chain_version: int


_values = row_values


@dataclass(frozen=True)
class Problem:
    seq: int  #: the entry named (the first one of a range)
    kind: str  #: edited | deleted | reordered | inserted | rewritten | rolled back | unanchored | wrong key
    message: str
    until: int | None = None  #: last entry of a range (deleted entries)


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    problems: tuple[Problem, ...]
    keyed_from: int | None = None  #: first keyed entry (None: no keyed entry yet)
    anchored: Anchor | None = None  #: the anchor written after this verification (when intact)
    anchor_store: str = ""  #: where anchors are kept
    rotations: tuple[Rotation, ...] = ()  #: the key rotations of the chain, in order
    unverifiable: tuple[tuple[int, int, str], ...] = ()  #: (first, last, key id): a key the keyring lacks
    head_key: str | None = None  #: the key id that signed the last entry (None: unkeyed or empty)
    #: the anchor lines no check trusts (:mod:`pds_kernel.audit_forged`), recorded before or now
    forged: tuple[ForgedLine, ...] = ()
    forged_entry: int | None = None  #: the entry that recorded the ones found now
    #: anchor lines of a key the chain names but the keyring lacks: not checkable, not counted
    unchecked_anchors: int = 0

    @property
    def found_forged(self) -> tuple[ForgedLine, ...]:
        """The untrusted anchor lines not recorded by an earlier verification."""
        return tuple(f for f in self.forged if f.recorded is None)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.found_forged


def _keyed_from(rows: Sequence[ChainRow], anchors: Sequence[Anchor]) -> int | None:
    if anchors:
        return min(a.keyed_from for a in anchors)
    return next((r.seq for r in rows if r.chain_version >= CHAIN_KEYED), None)


def _first_key(keyring: Keyring, anchors: Sequence[Anchor], keyed_from: int) -> str:
    """The key that signed the first keyed entries: the one the first anchor written for a keyed
    entry names (anchors live outside the database; the first written, so that an anchor appended
    later cannot name another key), else the keyring's first (oldest) key."""
    first = next((a for a in anchors if a.seq >= keyed_from), None)
    return first.key_id if first is not None else keyring.keys[0].key_id


class _Checker:
    """One verification: knows the rule and key of each entry, which entries authenticate, the anchors."""

    def __init__(self, rows: Sequence[ChainRow], keyring: Keyring | None, anchors: Sequence[Anchor],
                 where: str, key_anchors: Sequence[Anchor]):
        self.rows = rows
        self.keyring = keyring
        self.where = where
        self.keyed_from = _keyed_from(rows, anchors)
        self.segments: list[tuple[int, str]] = []
        if self.keyed_from is not None and keyring is not None:
            known = set(keyring.ids) | {a.key_id for a in key_anchors}
            self.segments = key_segments(rows, keyring, self.keyed_from,
                                         _first_key(keyring, key_anchors, self.keyed_from), known)
        self.anchored: dict[int, Anchor] = {}
        self.conflicts: list[Problem] = []
        for anchor in anchors:
            first = self.anchored.setdefault(anchor.seq, anchor)
            if first.head != anchor.head and anchor.seq not in {p.seq for p in self.conflicts}:
                self.conflicts.append(Problem(anchor.seq, "rolled back", (
                    f"entry {anchor.seq} was anchored with two different hashes ({first.time} and "
                    f"{anchor.time}): the database was replaced in between")))
        self.last_anchor = max(anchors, key=lambda a: a.seq) if anchors else None
        self.authentic = [self.authenticates(r, r.seq) for r in rows]
        self.seq_of_hash = {r.hash: r.seq for r in rows}

    def keyed(self, seq: int) -> bool:
        return self.keyed_from is not None and seq >= self.keyed_from

    def key(self, seq: int) -> AuditKey | None:
        """The key that signs entry ``seq`` (``None``: unkeyed, or a key the keyring lacks)."""
        key_id = key_at(self.segments, seq) if self.keyed(seq) else None
        return self.keyring.get(key_id) if key_id is not None and self.keyring is not None else None

    def lost(self, seq: int) -> bool:
        return self.keyed(seq) and self.key(seq) is None

    def expected_hash(self, row: ChainRow, seq: int) -> str | None:
        if self.keyed(seq):
            key = self.key(seq)
            return compute_keyed_hash(key, **_values(row, seq)) if key is not None else None
        return compute_hash(**_values(row, seq))

    def authenticates(self, row: ChainRow, seq: int) -> bool:
        expected_version = CHAIN_KEYED if self.keyed(seq) else CHAIN_UNKEYED
        if row.chain_version != expected_version:
            return False
        expected = self.expected_hash(row, seq)
        if expected is None:  # the key is lost: readable, not verifiable (reported apart)
            return True
        return same_digest(row.hash, expected)

    def retired_key_of(self, row: ChainRow) -> str | None:
        """Another key of the keyring that made ``row``'s hash (a retired key used after its
        rotation, or a newer key before it), or ``None``."""
        current = key_at(self.segments, row.seq)
        for key in self.keyring.keys if self.keyring is not None else ():
            if key.key_id != current and same_digest(
                    row.hash, compute_keyed_hash(key, **_values(row))):
                return key.key_id
        return None

    # ---- one entry that does not authenticate under its own number -------------------------
    def written_as(self, index: int) -> int | None:
        """The number this entry had when written, if it authenticates under another one."""
        row = self.rows[index]
        candidates = {row.seq - 1, row.seq + 1}
        if row.prev_hash == GENESIS_HASH:
            candidates.add(1)
        elif row.prev_hash in self.seq_of_hash:
            candidates.add(self.seq_of_hash[row.prev_hash] + 1)
        candidates.discard(row.seq)
        for seq in sorted(c for c in candidates if c >= 1):
            version = CHAIN_KEYED if self.keyed(seq) else CHAIN_UNKEYED
            expected = self.expected_hash(row, seq)
            if row.chain_version == version and expected is not None and same_digest(row.hash, expected):
                return seq
        return None

    def classify(self, index: int) -> Problem:
        row = self.rows[index]
        seq = row.seq
        following = self.rows[index + 1] if index + 1 < len(self.rows) else None
        preceding_hash = self.rows[index - 1].hash if index > 0 else GENESIS_HASH
        anchor = self.anchored.get(seq)
        original = self.written_as(index)
        if original is not None:
            return Problem(seq, "reordered", f"entry {seq} holds what was written as entry {original}: "
                                             "the chain was reordered or renumbered")
        expected_version = CHAIN_KEYED if self.keyed(seq) else CHAIN_UNKEYED
        if row.chain_version != expected_version:
            return Problem(seq, "rewritten", (
                f"entry {seq} claims chain version {row.chain_version}, but the chain is keyed from "
                f"entry {self.keyed_from} (anchored in {self.where}): it was rewritten to escape the key"))
        other = self.retired_key_of(row) if self.keyed(seq) else None
        if other is not None:
            return Problem(seq, "rewritten", (
                f"entry {seq} was signed with key {other}, but the chain's rotation entries say key "
                f"{key_at(self.segments, seq)} signs it: a retired key used after its rotation, or a "
                "rotation entry deleted or forged"))
        vouched = (anchor is not None and anchor.head == row.hash) or (
            following is not None and self.authentic[index + 1] and following.prev_hash == row.hash)
        if vouched:
            return Problem(seq, "edited", f"entry {seq} was edited: its content no longer matches its hash")
        if following is not None and following.prev_hash == preceding_hash:
            return Problem(seq, "inserted", f"entry {seq} was inserted: it does not authenticate and "
                                            "the chain passes over it")
        if self.last_anchor is not None and seq > self.last_anchor.seq:
            return Problem(seq, "inserted", (
                f"entry {seq} was inserted (or edited before it was anchored): it does not "
                f"authenticate and comes after the last anchored entry {self.last_anchor.seq}"))
        if compute_hash(**_values(row)) == row.hash:
            how = "its hash was recomputed without the platform key"
        elif self.keyed(seq):
            how = "its hash was not made with the platform key (another key, or forged)"
        else:
            how = "its hash does not match its content"
        return Problem(seq, "rewritten", f"entry {seq} was rewritten: {how}")

    # ---- the whole chain ---------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        problems: list[Problem] = []
        flagged: set[int] = set()
        expected_seq = 1
        for index, row in enumerate(self.rows):
            if row.seq > expected_seq:
                problems.append(Problem(expected_seq, "deleted", (
                    f"entries {expected_seq}..{row.seq - 1} were deleted (entry {row.seq} follows "
                    f"entry {expected_seq - 1})") if row.seq - 1 > expected_seq else (
                    f"entry {expected_seq} was deleted (entry {row.seq} follows entry {expected_seq - 1})"),
                    until=row.seq - 1))
            if not self.authentic[index]:
                problems.append(self.classify(index))
                flagged.add(index)
            else:
                gap = row.seq != expected_seq
                preceding = self.rows[index - 1] if index > 0 else None
                preceding_hash = preceding.hash if preceding else GENESIS_HASH
                if not gap and row.prev_hash != preceding_hash and index - 1 not in flagged:
                    where = preceding.seq if preceding else 0
                    problems.append(Problem(where, "rewritten", (
                        f"entry {where} was replaced: the authentic entry {row.seq} was chained to a "
                        f"different entry {where}")) if preceding else Problem(row.seq, "deleted", (
                        f"entries before entry {row.seq} were deleted")))
                anchor = self.anchored.get(row.seq)
                if anchor is not None and anchor.head != row.hash and not self.keyed(row.seq):
                    problems.append(Problem(row.seq, "rewritten", (
                        f"entry {row.seq} (written before the key) was rewritten: its hash differs "
                        f"from the one anchored at {anchor.time} in {self.where}")))
                elif anchor is not None and anchor.head != row.hash:
                    problems.append(Problem(row.seq, "rolled back", (
                        f"entry {row.seq} is not the one anchored at {anchor.time} in {self.where}: "
                        "the database was restored from an older copy and written again, or replaced")))
            expected_seq = row.seq + 1
        last_seq = self.rows[-1].seq if self.rows else 0
        if self.last_anchor is not None and self.last_anchor.seq > last_seq:
            anchor = self.last_anchor
            missing = (f"entries {last_seq + 1}..{anchor.seq} are" if anchor.seq > last_seq + 1
                       else f"entry {anchor.seq} is")
            problems.append(Problem(last_seq + 1, "deleted", (
                f"{missing} missing at the end: the head was anchored at entry {anchor.seq} "
                f"({anchor.time}) in {self.where}; the tail was deleted or the database restored "
                "from an older backup"), until=anchor.seq))
        return problems + self.conflicts + self.anchor_keys(last_seq)

    def anchor_keys(self, last_seq: int) -> list[Problem]:
        """Each anchor of a keyed entry names the key that signed it: the chain must agree."""
        problems = []
        for anchor in self.anchored.values():
            if not self.keyed(anchor.seq) or anchor.seq > last_seq:
                continue
            said = key_at(self.segments, anchor.seq)
            if said != anchor.key_id:
                problems.append(Problem(anchor.seq, "rewritten", (
                    f"entry {anchor.seq} was signed with key {anchor.key_id} (anchored at {anchor.time} in "
                    f"{self.where}), but the chain's rotation entries say key {said} signs it: a rotation "
                    "entry was deleted, replayed or forged")))
        return problems

    def unverifiable(self, last_seq: int) -> tuple[tuple[int, int, str], ...]:
        ranges = []
        for i, (first, key_id) in enumerate(self.segments):
            last = self.segments[i + 1][0] - 1 if i + 1 < len(self.segments) else last_seq
            if first <= last and self.keyring is not None and self.keyring.get(key_id) is None:
                ranges.append((first, last, key_id))
        return tuple(ranges)


def verify_chain(rows: Iterable[ChainRow], keyring: Keyring | None, anchors: Sequence[Anchor],
                 where: str = "the anchor store", key_anchors: Sequence[Anchor] | None = None) -> VerifyReport:
    """Check every entry against its rule and key, its neighbours and the anchors; name each problem.

    ``anchors``: the trusted ones (:mod:`pds_kernel.audit_anchor`). ``key_anchors``: those and, in
    file order, the lines of keys the keyring lacks (a lost retired key, a key this process has not
    received yet: their MACs cannot be checked), read only for which key signed first and which
    keys exist (``anchors`` when not given)."""
    rows = list(rows)
    key_anchors = anchors if key_anchors is None else key_anchors
    keyed_from = _keyed_from(rows, anchors)
    if keyed_from is not None and rows and rows[-1].seq >= keyed_from:
        if keyring is None:
            return VerifyReport(len(rows), (Problem(keyed_from, "wrong key", (
                f"entries from {keyed_from} on are keyed but no audit key is configured: set "
                "audit.key_file")),), keyed_from, anchor_store=where)
        named = {a.key_id for a in key_anchors if a.seq >= keyed_from}
        if named and not named & set(keyring.ids):
            return VerifyReport(len(rows), (Problem(keyed_from, "wrong key", (
                f"the configured audit keyring (key {', '.join(keyring.ids)}) is not the one that wrote "
                f"the chain: it holds none of the keys the anchors in {where} name (key "
                f"{', '.join(sorted(named))}): configure that key file")),), keyed_from, anchor_store=where)
    checker = _Checker(rows, keyring, anchors, where, key_anchors)
    problems = checker.problems()
    if keyed_from is not None and not anchors and rows:
        problems.append(Problem(keyed_from, "unanchored", (
            f"the chain is keyed from entry {keyed_from} but {where} holds no anchor: the anchor "
            "file was lost or another one is configured; restore it from its copy")))
    unique = {(p.seq, p.kind): p for p in reversed(problems)}  # one problem per entry and kind
    last_seq = rows[-1].seq if rows else 0
    rotations = tuple(Rotation(first - 1, checker.segments[i - 1][1], key_id)
                      for i, (first, key_id) in enumerate(checker.segments) if i > 0)
    head_key = key_at(checker.segments, last_seq) if checker.keyed(last_seq) else None
    return VerifyReport(len(rows), tuple(sorted(unique.values(), key=lambda p: p.seq)), keyed_from,
                        anchor_store=where, rotations=rotations,
                        unverifiable=checker.unverifiable(last_seq), head_key=head_key)
