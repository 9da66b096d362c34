"""Which key of the keyring signs which audit entry: the rotation entries decide (docs/adr/0014).

``pds audit rotate-key`` records an entry :data:`ROTATE_ACTION` (outcome ``ok``), details
``{"from_key": OLD, "to_key": NEW, ...}``. It is signed with the old key, like every entry before
it; the entries after it are signed with the new key. The rotation entry binds the old chain to the
new key: it is the last entry the old key signs, it names the new key, and the first entry under
the new key holds its hash. Nothing in a row names its key: the key of an entry follows from its
position after the rotation entries that authenticate, so a row cannot claim a key.

Two readings of the same rule (pure: rows and keyring in, answer out):

- :func:`key_in_force`, for a writer: the newest key of the keyring that the authentic rotation
  entries reach (the first key of the keyring when there is none). When they end at a key the
  keyring lacks, the writer stops: its pod must be restarted with the new keyring.
- :func:`key_segments`, for verification: walking the chain in order, from which entry on which
  key id applies. A rotation counts only when it authenticates under the key in force at its
  place, or when that key is lost and the new key is one the keyring or the anchors know.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .audit_hash import CHAIN_KEYED, compute_keyed_hash, row_values, same_digest
from .audit_key import AuditKey, Keyring
from .errors import IntegrityError

#: The audit action of a key rotation (the only entry that changes the key in force).
ROTATE_ACTION = "audit.key.rotate"
_OK = "ok"


@dataclass(frozen=True)
class Rotation:
    seq: int  #: the rotation entry (signed with ``from_key``; ``to_key`` signs from ``seq + 1``)
    from_key: str
    to_key: str


def claimed_rotation(row) -> Rotation | None:
    """What ``row`` claims as a rotation (not yet authenticated), or ``None`` when it is none."""
    if row.action != ROTATE_ACTION or row.outcome != _OK:
        return None
    try:
        details = json.loads(row.details)
    except (TypeError, ValueError, RecursionError):  # a planted row: no rotation (verification names it)
        return None
    if not isinstance(details, dict):
        return None
    old, new = details.get("from_key"), details.get("to_key")
    if not isinstance(old, str) or not isinstance(new, str) or old == new:
        return None
    return Rotation(row.seq, old, new)


def _signed_by(row, key: AuditKey) -> bool:
    return row.chain_version == CHAIN_KEYED and same_digest(
        row.hash, compute_keyed_hash(key, **row_values(row)))


def key_in_force(rotation_rows: Sequence, keyring: Keyring) -> AuditKey:
    """The key a writer signs the next entry with, given every row of :data:`ROTATE_ACTION`.

    The rotations are walked in order: one counts when it authenticates under its old key, or,
    when the keyring lacks that key (lost), when it continues the walk (its old key is the one the
    previous rotation went to). The newest key of the keyring the walk reaches wins, so a rotation
    forged with a retired, leaked key never brings an older key back. Raises when the walk ends
    at a key this keyring lacks (a process started before the new key reached it)."""
    best, reached = 0, None
    for row in sorted(rotation_rows, key=lambda r: r.seq):
        rotation = claimed_rotation(row)
        if rotation is None:
            continue
        old = keyring.get(rotation.from_key)
        if (old is None and rotation.from_key != reached) or (old is not None and not _signed_by(row, old)):
            continue
        reached = rotation.to_key
        best = max(best, keyring.index(reached) or 0)
    if reached is not None and keyring.get(reached) is None:
        raise IntegrityError(
            f"the audit key was rotated to key {reached}, which this process's keyring "
            f"({', '.join(keyring.ids)}) lacks: update the keyring (the pds-audit-key Secret) and "
            "restart this process (docs/deploy-kubernetes.md, section 5)")
    return keyring.keys[best]


def replaced_key(rotation_rows: Sequence, keyring: Keyring, key_id: str) -> AuditKey | None:
    """The key that the first authentic rotation to ``key_id`` replaced (an older key of the
    keyring), or ``None``. The first: a rotation forged later with a retired, leaked key cannot
    name its key as the one to re-seal from."""
    for row in sorted(rotation_rows, key=lambda r: r.seq):
        rotation = claimed_rotation(row)
        old = keyring.get(rotation.from_key) if rotation and rotation.to_key == key_id else None
        if old is not None and _signed_by(row, old) and keyring.index(old.key_id) < keyring.index(key_id):
            return old
    return None


def key_segments(rows: Sequence, keyring: Keyring, keyed_from: int, first_key: str,
                 known: set[str]) -> list[tuple[int, str]]:
    """``[(first entry, key id), ...]``: from which entry on which key signs, ``first_key`` from
    ``keyed_from`` on. ``known``: key ids the keyring or the anchors name (a rotation out of a lost
    key counts only towards one of them, so a forged one cannot hide entries as unverifiable)."""
    segments = [(keyed_from, first_key)]
    for row in rows:
        rotation = claimed_rotation(row) if row.seq >= keyed_from else None
        if rotation is None or rotation.from_key != segments[-1][1]:
            continue
        old = keyring.get(rotation.from_key)
        if old is not None and not _signed_by(row, old):
            continue
        if old is None and rotation.to_key not in known:
            continue
        segments.append((rotation.seq + 1, rotation.to_key))
    return segments


def key_at(segments: Sequence[tuple[int, str]], seq: int) -> str | None:
    """The key id that signs entry ``seq`` (``None`` before the first keyed entry)."""
    found = None
    for first, key_id in segments:
        if seq < first:
            break
        found = key_id
    return found
