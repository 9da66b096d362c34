"""The newest audit entry of some actions, checked cheaply enough to decide on at every use.

The local hub's accounts rest on it (:mod:`pds_kernel.hub.account_generations`): an account's seal
is good only when it names the account's newest platform write, and that write is read here. A
decision taken from the database alone would follow whoever writes the database, so the entry found
counts only when:

- **it authenticates**: its hash is the HMAC of its content and number under the key that signs
  that number, as the rotation entries before it say (:mod:`pds_kernel.audit_rotation`). A row
  planted without the key never counts, nor one signed with a retired key (leaked: the reason to
  rotate) after its rotation, and a real entry cannot be moved to another number (the number is in
  its hash);
- **nothing after it is missing**: every entry from it up to the highest anchored one (the anchor
  store is outside the database: :mod:`pds_kernel.audit_anchor_history`) is in the database, the
  anchored entry holds the anchored hash, and no entry after it was anchored twice with different
  hashes. A newer entry deleted (the append-only trigger dropped first) leaves a gap; a tail cut,
  or the database restored from an older backup, no longer holds the anchored head; either one
  written over again by the platform's next writes is anchored again with other hashes.

Cost: two or three reads by the action index, one HMAC, two reads by the primary key, the anchor
lines appended since the previous check (the whole file at a process's first), and a count on the
primary key of the entries after it: at the first check of it in a process, all of them (about 9 ms
per 100,000 entries on SQLite); then only those written since (:class:`WholeAfter`). ``pds audit verify`` checks
the rest (an entry replaced by a forged one of the same number, an anchor older than the latest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .audit_anchor import AnchorStore
from .audit_anchor_history import AnchorHistory
from .audit_hash import CHAIN_KEYED, compute_keyed_hash, row_values, same_digest
from .audit_key import Keyring
from .audit_rotation import ROTATE_ACTION, key_in_force
from .errors import IntegrityError

_OK = "ok"


@dataclass(frozen=True)
class Selector:
    """Entries of one of ``actions`` with outcome ``ok``, of ``target`` when given."""

    actions: tuple[str, ...]
    target: str | None = None


@dataclass(frozen=True)
class Newest:
    """The newest entry found (as stored: ``details`` is its JSON text), or ``None``; ``problem``
    says why it cannot be relied on (then ``row`` is ``None`` too)."""

    row: object | None
    problem: str | None = None


def authentic(row, keyring: Keyring, rotations: Sequence) -> bool:
    """``row``'s hash is the keyed hash of its own content and number under the key that signs that
    number: the one a writer signed it with, after the rotation entries before it (``rotations``:
    the rows of :data:`~pds_kernel.audit_rotation.ROTATE_ACTION`)."""
    if row.chain_version != CHAIN_KEYED:
        return False
    try:
        key = key_in_force([r for r in rotations if r.seq < row.seq], keyring)
    except IntegrityError:  # a key this keyring lacks: not checkable here, so not relied on
        return False
    return same_digest(row.hash, compute_keyed_hash(key, **row_values(row)))


class WholeAfter:
    """What this process found whole before: for the newest entry of some selectors, the entries
    after it up to an anchored one (its number and hash). A later check of the same newest entry
    counts only the entries written since: any entry of those selectors up to that anchored one
    existed at the earlier check, which would have found it the newest instead, so deleting entries
    before it since hides nothing from this question (``pds audit verify`` names them)."""

    _LIMIT = 10_000  #: entries remembered (a few per account); forgotten all at once past it

    def __init__(self) -> None:
        self._found: dict[tuple, tuple[int, str]] = {}

    def get(self, key: tuple) -> tuple[int, str] | None:
        return self._found.get(key)

    def remember(self, key: tuple, upto: int, head: str) -> None:
        if len(self._found) >= self._LIMIT:
            self._found.clear()
        self._found[key] = (upto, head)

    def forget(self, key: tuple) -> None:
        self._found.pop(key, None)


def missing_after(session: Session, table, anchors: AnchorStore, history: AnchorHistory, seq: int,
                  known: tuple[int, str] | None = None) -> tuple[str | None, tuple[int, str] | None]:
    """Why the trail after entry ``seq`` may not be whole up to the highest anchored entry (``None``
    when it is), and that entry's number and hash. ``known``: an entry (number, hash) up to which it
    was found whole before (:class:`WholeAfter`): counted from there when that entry is the same."""
    history.refresh()
    where = anchors.describe()
    if history.top is None or history.top[0] < 1:
        return f"no anchor of the audit trail in {where}", None
    if history.rolled_back_from is not None and history.rolled_back_from > seq:
        return (f"entry {history.rolled_back_from} was anchored twice with different hashes in {where} (or "
                "anchored again long after): the audit trail was cut or restored, then written again "
                "(run pds audit verify)"), None
    top, head = history.top
    if not _holds(session, table, top, head):
        return f"entry {top} is not the one anchored in {where}: the audit trail was cut or replaced " \
               "(run pds audit verify)", None
    start = seq
    if known is not None and seq <= known[0] <= top and _holds(session, table, *known):
        start = known[0]
    if top > start:
        present = session.execute(select(func.count()).select_from(table)
                                  .where(table.c.seq > start, table.c.seq <= top)).scalar_one()
        if present != top - start:
            return (f"{top - start - present} audit entries after entry {seq} are missing from the "
                    "database (run pds audit verify)"), None
    return None, (top, head)


def _holds(session: Session, table, seq: int, head: str) -> bool:
    found = session.execute(select(table.c.hash).where(table.c.seq == seq)).scalar()
    return same_digest(found, head)


def newest_checked(session: Session, table, keyring: Keyring, anchors: AnchorStore, history: AnchorHistory,
                   selectors: Sequence[Selector], whole: WholeAfter | None = None) -> Newest:
    """The newest ``ok`` entry matching any of ``selectors``, checked as the module says
    (``history``: of ``anchors``; ``whole``: what this process found whole before, kept up to date)."""
    newest = None
    for selector in selectors:
        query = select(table).where(table.c.action.in_(selector.actions), table.c.outcome == _OK)
        if selector.target is not None:
            query = query.where(table.c.target == selector.target)
        row = session.execute(query.order_by(table.c.seq.desc()).limit(1)).first()
        if row is not None and (newest is None or row.seq > newest.seq):
            newest = row
    if newest is None:
        return Newest(None)
    rotations = session.execute(select(table).where(table.c.action == ROTATE_ACTION, table.c.seq < newest.seq)
                                .order_by(table.c.seq)).all()
    if not authentic(newest, keyring, rotations):
        return Newest(None, f"audit entry {newest.seq} does not authenticate under the audit key: it was "
                            "planted or edited (run pds audit verify)")
    key = (tuple(selectors), newest.seq, newest.hash)
    problem, upto = missing_after(session, table, anchors, history, newest.seq, whole.get(key) if whole else None)
    if whole is not None and upto is None:
        whole.forget(key)
    elif whole is not None:
        whole.remember(key, *upto)
    return Newest(None, problem) if problem else Newest(newest)
