"""Anchor lines no check trusts, as ``pds audit verify`` reports them and records them in the trail.

An untrusted line (:class:`pds_kernel.audit_anchor.AnchorTrust`: a bad MAC, a key the keyring
lacks, a retired key after its rotation, a format-1 line after authenticated ones, a line that is
no anchor) was written by someone who may append to the anchor file without holding the audit key
for it, or was edited. It counts for nothing, and a write-once file can never drop it: so the
verification that first finds it fails, saying which line and why, and records it
(:data:`FORGED_ACTION`, the line's number and SHA-256); a later verification lists it as recorded
and does not fail on it again. A line recorded is known by its number and its bytes: another line
at that number (the file replaced) is a new finding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .audit_anchor import AnchorLine
from .events import AuditEvent, Outcome

#: The audit action of untrusted anchor lines found by a verification (target ``anchors``).
FORGED_ACTION = "audit.anchor.forged"


@dataclass(frozen=True)
class ForgedLine:
    line: int  #: its number in the anchor file (from 1)
    why: str
    digest: str  #: SHA-256 of its bytes
    recorded: int | None = None  #: the audit entry that recorded it (``None``: found now)


def recorded_lines(rows: Sequence, skip: set[int]) -> dict[tuple[int, str], int]:
    """(line, digest) -> entry, for every line the entries of :data:`FORGED_ACTION` recorded (the
    entries whose number is in ``skip`` do not authenticate: they count for nothing)."""
    found: dict[tuple[int, str], int] = {}
    for row in rows:
        if row.action != FORGED_ACTION or row.outcome != Outcome.FAILED or row.seq in skip:
            continue
        try:
            lines = json.loads(row.details).get("lines", [])
        except (ValueError, AttributeError, RecursionError):
            continue
        for item in lines if isinstance(lines, list) else []:
            if isinstance(item, dict) and isinstance(item.get("line"), int) and isinstance(item.get("sha256"), str):
                found.setdefault((item["line"], item["sha256"]), row.seq)
    return found


def forged_lines(lines: Sequence[AnchorLine], recorded: dict[tuple[int, str], int]) -> tuple[ForgedLine, ...]:
    """The untrusted ``lines``, each with the entry that recorded it already, if any."""
    return tuple(ForgedLine(line.number, line.problem, line.digest, recorded.get((line.number, line.digest)))
                 for line in lines if line.problem is not None)


def forged_event(found: Sequence[ForgedLine], where: str, actor: str) -> AuditEvent:
    """The entry recording ``found`` (the lines not recorded yet) in the anchor file ``where``."""
    return AuditEvent(actor=actor, action=FORGED_ACTION, target="anchors", outcome=Outcome.FAILED, details={
        "file": where, "lines": [{"line": f.line, "sha256": f.digest, "why": f.why} for f in found]})


def message(found: Sequence[ForgedLine], where: str, entry: int | None) -> str:
    """What to do about untrusted lines found now (``entry``: the audit entry recording them)."""
    numbers = ", ".join(str(f.line) for f in found)
    recorded = (f"recorded in the audit trail (entry {entry}); a later verification lists them without failing"
                if entry is not None else "not recorded (no audit key configured)")
    return (f"{len(found)} untrusted anchor line(s) in {where} (line {numbers}): appended by someone who may "
            "write the anchor file without the audit key, or edited; no check counts them, and the file keeps "
            f"them. Find who can write {where} and take that right away (docs/audit.md, \"Untrusted anchor "
            f"lines\"); they are {recorded}")
