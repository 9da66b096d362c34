"""The rules of the audit chain and its verification (pure: rows, key and anchors in, report out).

Two hash rules, recorded per entry in ``chain_version``:

- ``1`` (entries written before the key existed): ``SHA-256(canonical JSON of the entry)``;
- ``2`` (keyed): ``HMAC-SHA256(key, canonical JSON of the entry and its chain version)``.

Both cover the entry's number and its predecessor's hash, so an entry cannot move or be cut out
without breaking its own hash or its successor's link. Which rule applies from which entry on is
fixed by the anchors (``keyed_from``, written outside the database), not by the rows themselves:
re-hashing keyed entries with the unkeyed rule is caught even if ``chain_version`` is rewritten.

:func:`verify_chain` names every entry that was edited, deleted (inside or at the end of the
chain), reordered, inserted, rewritten (hash recomputed without the key or with another key) or
rolled back (the database restored from an older copy), and says when the configured key is not
the one that wrote the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .audit_anchor import Anchor
from .audit_key import AuditKey

GENESIS_HASH = "0" * 64
CHAIN_UNKEYED = 1
CHAIN_KEYED = 2


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


_FIELDS = ("seq", "time", "schema_version", "actor", "action", "target", "project", "outcome",
           "details", "prev_hash")


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def compute_hash(**values: Any) -> str:
    """The unkeyed rule (chain version 1): SHA-256 of the entry's canonical JSON."""
    return hashlib.sha256(_canonical({name: values[name] for name in _FIELDS})).hexdigest()


def compute_keyed_hash(key: AuditKey, **values: Any) -> str:
    """The keyed rule (chain version 2): HMAC-SHA256 under the platform key."""
    payload = {name: values[name] for name in _FIELDS}
    payload["chain_version"] = values.get("chain_version", CHAIN_KEYED)
    return hmac.new(key.secret, _canonical(payload), hashlib.sha256).hexdigest()


def _values(row: ChainRow, seq: int | None = None) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["chain_version"] = row.chain_version
    if seq is not None:
        values["seq"] = seq
    return values


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

    @property
    def ok(self) -> bool:
        return not self.problems


def _keyed_from(rows: Sequence[ChainRow], anchors: Sequence[Anchor]) -> int | None:
    if anchors:
        return min(a.keyed_from for a in anchors)
    return next((r.seq for r in rows if r.chain_version >= CHAIN_KEYED), None)


class _Checker:
    """One verification: knows the rule of each entry, which entries authenticate, the anchors."""

    def __init__(self, rows: Sequence[ChainRow], key: AuditKey | None, anchors: Sequence[Anchor],
                 where: str):
        self.rows = rows
        self.key = key
        self.where = where
        self.keyed_from = _keyed_from(rows, anchors)
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

    def expected_hash(self, row: ChainRow, seq: int) -> str:
        if self.keyed(seq):
            assert self.key is not None
            return compute_keyed_hash(self.key, **_values(row, seq))
        return compute_hash(**_values(row, seq))

    def authenticates(self, row: ChainRow, seq: int) -> bool:
        expected_version = CHAIN_KEYED if self.keyed(seq) else CHAIN_UNKEYED
        if row.chain_version != expected_version:
            return False
        return hmac.compare_digest(self.expected_hash(row, seq), row.hash)

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
            if row.chain_version == version and hmac.compare_digest(self.expected_hash(row, seq), row.hash):
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
        return problems + self.conflicts


def verify_chain(rows: Iterable[ChainRow], key: AuditKey | None, anchors: Sequence[Anchor],
                 where: str = "the anchor store") -> VerifyReport:
    """Check every entry against its rule, its neighbours and the anchors; name each problem."""
    rows = list(rows)
    keyed_from = _keyed_from(rows, anchors)
    if keyed_from is not None and rows and rows[-1].seq >= keyed_from:
        if key is None:
            return VerifyReport(len(rows), (Problem(keyed_from, "wrong key", (
                f"entries from {keyed_from} on are keyed but no audit key is configured: set "
                "audit.key_file")),), keyed_from, anchor_store=where)
        foreign = sorted({a.key_id for a in anchors} - {key.key_id})
        if foreign:
            return VerifyReport(len(rows), (Problem(keyed_from, "wrong key", (
                f"the configured audit key (id {key.key_id}) is not the one that wrote the chain "
                f"(the anchors in {where} name key {', '.join(foreign)}): configure that key file")),),
                keyed_from, anchor_store=where)
    checker = _Checker(rows, key, anchors, where)
    problems = checker.problems()
    if keyed_from is not None and not anchors and rows:
        problems.append(Problem(keyed_from, "unanchored", (
            f"the chain is keyed from entry {keyed_from} but {where} holds no anchor: the anchor "
            "file was lost or another one is configured; restore it from its copy")))
    unique = {(p.seq, p.kind): p for p in reversed(problems)}  # one problem per entry and kind
    return VerifyReport(len(rows), tuple(sorted(unique.values(), key=lambda p: p.seq)), keyed_from,
                        anchor_store=where)
