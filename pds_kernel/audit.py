"""The audit trail: append-only, keyed hash chain anchored outside the database.

Each entry records who (actor) did what (action) to what (target), in which project, with which
outcome, when, and why (details). Entries are chained and each entry's hash is an HMAC under a
platform key the database does not hold (:mod:`.audit_key`; rules in :mod:`.audit_chain`); the
chain's rotation entries say which key of the keyring signs (:mod:`.audit_rotation`). After
every commit that adds entries, and after every successful verification, the chain head is
anchored outside the database (:mod:`.audit_anchor`). :meth:`AuditTrail.verify` names every entry
that was edited, deleted (the tail included), reordered, inserted or rewritten.

Entries live in the shared database so that a registry or airlock change and its audit entry commit
in one transaction: callers pass their open session to :meth:`AuditTrail.record`. No code path
updates or deletes an audit row; the database also refuses it (triggers), so tampering requires
dropping the guard first, which verification still detects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Integer, String, Text, event, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from .audit_actions import check_action
from .audit_anchor import ANCHOR_FORMAT, Anchor, AnchorStore, signed
from .audit_anchor_history import AnchorHistory
from .audit_chain import (  # noqa: F401  (re-exported)
    CHAIN_KEYED,
    CHAIN_UNKEYED,
    GENESIS_HASH,
    Problem,
    VerifyReport,
    compute_hash,
    compute_keyed_hash,
    verify_chain,
)
from .audit_forged import forged_event, forged_lines, recorded_lines
from .audit_key import AuditKey, Keyring
from .audit_newest import Newest, Selector, WholeAfter, newest_checked
from .audit_rotation import ROTATE_ACTION, key_in_force
from .db import Base, transaction
from .errors import IntegrityError
from .events import SCHEMA_VERSION, AuditEvent, Outcome  # noqa: F401  (defined there, re-exported)

log = logging.getLogger(__name__)

#: key of :attr:`Session.info` holding the head written by the session's open transaction
_PENDING = "pds_audit_pending_head"
#: key of :attr:`Session.info` holding (its transaction, the key in force read in it)
_KEY_IN_FORCE = "pds_audit_key_in_force"
#: key of :attr:`Session.info` holding the reason of the anchor its commit writes (``write`` if unset)
_REASON = "pds_audit_anchor_reason"
#: set once a transaction recorded a key rotation: nothing may follow it there (:func:`append_many`)
_ROTATED = "pds_audit_rotated"


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    time: Mapped[str] = mapped_column(String(40))
    schema_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(500))
    project: Mapped[str] = mapped_column(String(100), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    #: hash rule of this entry: 1 = SHA-256 (written before the key existed), 2 = HMAC under the key
    chain_version: Mapped[int] = mapped_column(Integer, server_default=str(CHAIN_UNKEYED))


@dataclass(frozen=True)
class AuditEntry:
    """A stored entry, as read back."""

    seq: int
    time: str
    schema_version: int
    actor: str
    action: str
    target: str
    project: str
    outcome: str
    details: dict
    prev_hash: str
    hash: str
    chain_version: int = CHAIN_KEYED


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    keyed_from: int
    key_id: str  #: the key that signed it


def signing_key(session: Session, keyring: Keyring, floor: str | None = None) -> AuditKey:
    """The key the next entry is signed with: the chain's rotation entries decide
    (:func:`pds_kernel.audit_rotation.key_in_force`); one indexed read of those few rows.

    ``floor``: a key id known to have signed already (the latest anchor's, outside the database).
    A key older than it is refused: the rotation entry to it was deleted from the database, and
    signing (or checking seals) with the retired key would hand the chain to whoever holds it."""
    rotations = session.execute(select(AuditRow).where(AuditRow.action == ROTATE_ACTION)
                                .order_by(AuditRow.seq)).scalars().all()
    key = key_in_force(rotations, keyring)
    lowest = keyring.index(floor) if floor is not None else None
    if lowest is not None and keyring.index(key.key_id) < lowest:
        raise IntegrityError(
            f"the audit trail's rotation entries say key {key.key_id} signs, but key {floor} signed "
            "already (the anchors say so): a rotation entry was removed from the database. Nothing is "
            "written; run `pds audit verify` and treat it as an incident (docs/audit.md)")
    return key


def lock_chain(session: Session) -> None:
    """Hold the chain's lock until the caller's transaction ends (PostgreSQL; SQLite has one writer
    at a time): appends, and a rotation's reading of the key in force, wait for each other."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))


def _check_seal_key(session: Session, key: AuditKey) -> None:
    """Refuse to append when this transaction sealed with another key than the one in force now:
    a rotation committed between its sealing and its entry (red team 9: an approval committed then
    was sealed with the retired key, recorded as done and refused from then on without a word)."""
    cached = session.info.get(_KEY_IN_FORCE)
    if cached is not None and cached[0] is session.get_transaction() and cached[1].key_id != key.key_id:
        raise IntegrityError(
            f"the audit key was rotated (to key {key.key_id}) while this change was being made, and "
            f"its seals were made with the key it replaced ({cached[1].key_id}): nothing was written; "
            "run it again")


def append(session: Session, event: AuditEvent, key: Keyring, keyed_from: int | None = None) -> AuditEntry:
    """Append ``event`` inside the caller's transaction (committed with the caller's change).

    ``keyed_from``: the first keyed entry when the caller knows it already (saves a scan of the
    unkeyed entries of an upgraded database at each append)."""
    return append_many(session, [event], key, keyed_from)[0]


def append_many(session: Session, events: list[AuditEvent], keyring: Keyring,
                keyed_from: int | None = None, floor: str | None = None) -> list[AuditEntry]:
    """Append ``events`` in order inside the caller's transaction: one read of the chain's head
    and one insert for all of them (an ingest records one entry per file, 20,000 for a national
    delivery), each entry chained to the one before exactly as if appended one by one, signed
    with the key in force (read under the lock: a rotation committed by another process counts)."""
    if not events:
        return []
    for item in events:  # before anything is written: a refused event leaves the chain as it was
        check_action(item.action)
    if any(item.action == ROTATE_ACTION for item in events) and len(events) > 1:
        raise IntegrityError(f"{ROTATE_ACTION} is recorded alone (the entries after it are signed "
                             "with the new key)")
    if session.info.get(_ROTATED):
        raise IntegrityError(f"nothing is recorded after {ROTATE_ACTION} in its transaction: the anchor "
                             "of its commit names the old key's last entry, and retires that key")
    lock_chain(session)
    key = signing_key(session, keyring, floor)
    _check_seal_key(session, key)
    last = session.execute(select(AuditRow.seq, AuditRow.hash, AuditRow.chain_version)
                           .order_by(AuditRow.seq.desc()).limit(1)).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    if last is not None and last[2] >= CHAIN_KEYED and keyed_from is None:
        keyed_from = session.execute(select(AuditRow.seq).where(AuditRow.chain_version >= CHAIN_KEYED)
                                     .order_by(AuditRow.seq).limit(1)).scalar_one()
    elif last is None or last[2] < CHAIN_KEYED:
        keyed_from = seq  # the first keyed entry of this database
    rows = []
    for item in events:
        details = json.dumps(dict(item.details), sort_keys=True, ensure_ascii=False, default=str)
        values = dict(
            seq=seq, time=_now(), schema_version=item.schema_version, actor=item.actor,
            action=item.action, target=item.target, project=item.project,
            outcome=item.outcome, details=details, prev_hash=prev_hash, chain_version=CHAIN_KEYED,
        )
        prev_hash = compute_keyed_hash(key, **values)
        rows.append({**values, "hash": prev_hash})
        seq += 1
    session.execute(insert(AuditRow), rows)
    session.info[_PENDING] = _Head(rows[-1]["seq"], rows[-1]["hash"], keyed_from, key.key_id)
    if events[-1].action == ROTATE_ACTION:
        session.info[_ROTATED] = True  # the last entry of its transaction (checked above)
    return [_entry(AuditRow(**row)) for row in rows]


def _details(text: str) -> dict:
    """A stored entry's details. A row planted by hand whose details do not read back as an object
    (JSON nested 200,000 deep made every reader of the trail fail with a RecursionError before:
    tests/security/test_redteam8_audit.py) reads as unreadable, and the rest of the trail as usual."""
    try:
        details = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return {"error": f"unreadable details ({type(exc).__name__}): run pds audit verify (docs/audit.md)"}
    return details if isinstance(details, dict) else {"error": "unreadable details (not an object)", "value": details}


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, time=row.time, schema_version=row.schema_version, actor=row.actor,
        action=row.action, target=row.target, project=row.project, outcome=row.outcome,
        details=_details(row.details), prev_hash=row.prev_hash, hash=row.hash,
        chain_version=row.chain_version,
    )


class AuditTrail:
    """The audit trail of one database. Thread-safe through the database's own locking.

    Writing needs the ``keyring`` and an ``anchors`` store; without them the trail is read-only
    (``entries``) and ``verify`` cannot check keyed entries.
    """

    def __init__(self, sessions: sessionmaker[Session], keyring: Keyring | None = None,
                 anchors: AnchorStore | None = None):
        self._sessions = sessions
        self._keyring = keyring
        self._anchors = anchors
        self._keyed_from: int | None = None  #: learnt at the first anchored commit
        self._floor_key: str | None = None  #: the latest anchor's key ("" = no anchor yet)
        self._whole = WholeAfter()  #: for :meth:`newest`
        self._history = AnchorHistory(anchors) if anchors is not None else None  #: for :meth:`newest`

    @property
    def keyring(self) -> Keyring:
        keyring, _ = self._check_writable()
        return keyring

    def _floor(self) -> str | None:
        """The key of the latest anchor: no key older than it may sign (:func:`signing_key`).
        Read once per process; the process's own anchors keep it up to date."""
        if self._floor_key is None and self._anchors is not None:
            latest = self._anchors.latest()
            self._floor_key = latest.key_id if latest is not None else ""
        return self._floor_key or None

    def key(self, session: Session | None = None) -> AuditKey:
        """The key in force, read from the chain (the registry's approvals and the hub's accounts
        are sealed with it: a rotation by another process counts at once). With ``session`` (of
        this database), read in its transaction, once per transaction."""
        keyring, _ = self._check_writable()
        if session is None:
            with transaction(self._sessions) as own:
                return signing_key(own, keyring, self._floor())
        cached = session.info.get(_KEY_IN_FORCE)
        if cached is None or cached[0] is not session.get_transaction():
            key = signing_key(session, keyring, self._floor())
            cached = session.info[_KEY_IN_FORCE] = (session.get_transaction(), key)
        return cached[1]

    def _check_writable(self) -> tuple[Keyring, AnchorStore]:
        if self._keyring is None or self._anchors is None:
            raise IntegrityError("this audit trail was opened without its key and anchor store: "
                                 "open it through Runtime.audit to write")
        return self._keyring, self._anchors

    def record(self, event: AuditEvent, session: Session | None = None, *,
               anchor_reason: str | None = None) -> AuditEntry:
        """Write one event: inside ``session`` when given (same transaction), else on its own.

        The chain head is anchored once the transaction commits (nothing is anchored when it
        rolls back). ``anchor_reason``: that anchor's reason instead of ``write``, a fact outside the
        database that its writer cannot remove (:meth:`anchored`)."""
        return self.record_many([event], session, anchor_reason=anchor_reason)[0]

    def record_many(self, events: list[AuditEvent], session: Session | None = None, *,
                    anchor_reason: str | None = None) -> list[AuditEntry]:
        """Write ``events`` in order, in one transaction: ``session``'s when given, else their own."""
        keyring, _ = self._check_writable()
        if session is not None:
            self._anchor_on_commit(session, anchor_reason)
            return append_many(session, events, keyring, self._keyed_from, self._floor())
        own = self._sessions()
        self._anchor_on_commit(own, anchor_reason)
        try:
            entries = append_many(own, events, keyring, self._keyed_from, self._floor())
            own.commit()
        except BaseException:
            own.rollback()
            raise
        finally:
            own.close()
        return entries

    def _anchor_on_commit(self, session: Session, reason: str | None = None) -> None:
        if reason is not None:  # one transaction may record several facts (a first write: two)
            reasons = session.info.setdefault(_REASON, [])
            if reason not in reasons:
                reasons.append(reason)
        if session.info.get("pds_audit_listening") is self:
            return
        session.info["pds_audit_listening"] = self
        event.listen(session, "after_commit", self._after_commit)
        event.listen(session, "after_rollback", _forget_pending)

    def anchored(self, reason: str) -> bool:
        """Whether the anchor store holds an anchor of ``reason`` (``anchor_reason`` of :meth:`record`)."""
        _, anchors = self._check_writable()
        return any(anchor.reason == reason for anchor in anchors.read())

    def _after_commit(self, session: Session) -> None:
        session.info.pop(_ROTATED, None)
        head = session.info.pop(_PENDING, None)
        reasons = session.info.pop(_REASON, None) or ["write"]
        if head is None:
            return
        keyring, anchors = self._check_writable()
        self._keyed_from = head.keyed_from
        try:
            for reason in reasons:  # the same head once per reason, each found by :meth:`anchored`
                anchors.append(signed(Anchor(seq=head.seq, head=head.hash, time=_now(), keyed_from=head.keyed_from,
                                             key_id=head.key_id, reason=reason), keyring))
            self._floor_key = head.key_id
        except OSError as exc:
            raise IntegrityError(
                f"audit entry {head.seq} was committed but the chain head could not be anchored in "
                f"{anchors.describe()} ({exc}): repair the anchor storage, then run `pds audit "
                "verify` to anchor the head") from exc

    def entries(self, project: str | None = None, action: str | None = None,
                limit: int | None = None, newest: bool = False, after: int | None = None) -> list[AuditEntry]:
        """Entries in chain order (only those after sequence number ``after`` when given); with
        ``limit`` and ``newest``, the last ``limit`` of them."""
        with transaction(self._sessions) as session:
            query = select(AuditRow).order_by(AuditRow.seq.desc() if newest else AuditRow.seq)
            if after is not None:
                query = query.where(AuditRow.seq > after)
            if project:
                query = query.where(AuditRow.project == project)
            if action:
                query = query.where(AuditRow.action == action)
            if limit:
                query = query.limit(limit)
            found = [_entry(row) for row in session.scalars(query)]
        return sorted(found, key=lambda e: e.seq)

    def newest(self, selectors: list[Selector]) -> Newest:
        """The newest ``ok`` entry that any of ``selectors`` matches, when it authenticates and no
        entry after it is missing up to the latest anchor (:mod:`pds_kernel.audit_newest`)."""
        keyring, anchors = self._check_writable()
        with transaction(self._sessions) as session:
            return newest_checked(session, AuditRow.__table__, keyring, anchors, self._history, selectors,
                                  self._whole)

    def newest_entry(self, selectors: list[Selector]) -> tuple[AuditEntry | None, str | None]:
        """:meth:`newest` as an entry (its details read): ``(entry or None, why it cannot be relied
        on or None)``."""
        found = self.newest(selectors)
        return (None if found.row is None else _entry(found.row)), found.problem

    def verify(self, actor: str = "pds audit verify") -> VerifyReport:
        """Check the chain against the key and the trusted anchors, name the untrusted anchor lines
        (recording those found now, as ``actor``: :mod:`pds_kernel.audit_forged`); anchor the head
        when all is intact."""
        # anchors first, rows second: an anchor is written after its commit, so every anchored
        # entry is visible to the read below (the other order could miss a tail just anchored)
        lines = self._anchors.lines() if self._anchors is not None else []
        anchors = [line.anchor for line in lines if line.problem is None]
        keyless = {line.number: line for line in lines if self._lacks_key(line)}
        where = self._anchors.describe() if self._anchors is not None else "no anchor store"
        with transaction(self._sessions) as session:
            # plain rows (not ORM objects): a third of the memory for a long chain
            columns = [getattr(AuditRow, c.key) for c in AuditRow.__table__.columns]
            rows = session.execute(select(*columns).order_by(AuditRow.seq)).all()
            report = verify_chain(rows, self._keyring, anchors, where,
                                  [line.anchor for line in lines if line.problem is None or line.number in keyless])
        if any(p.kind == "wrong key" for p in report.problems):
            return report  # another keyring: none of the lines can be checked, and nothing is written
        lacking = {key_id for _, _, key_id in report.unverifiable}  # keys the chain names, the keyring lacks
        unchecked = {number for number, line in keyless.items() if line.anchor.key_id in lacking}
        recorded = recorded_lines(rows, {p.seq for p in report.problems})
        report = replace(report, forged=forged_lines([line for line in lines if line.number not in unchecked], recorded),
                         unchecked_anchors=len(unchecked))
        signs = (self._keyring is not None and self._anchors is not None and not (
            rows and report.unverifiable and report.unverifiable[-1][1] >= rows[-1].seq))
        if report.found_forged and signs:  # this keyring holds the key in force: it may write
            entry = self.record(forged_event(report.found_forged, where, actor))
            report = replace(report, forged_entry=entry.seq)
        if not report.ok or not report.entries or not signs:
            return report  # a head this keyring cannot check is never anchored as verified
        last = rows[-1]
        anchor = signed(Anchor(seq=last.seq, head=last.hash, time=_now(),
                               keyed_from=report.keyed_from if report.keyed_from is not None else last.seq + 1,
                               key_id=report.head_key or self._keyring.keys[0].key_id, reason="verify"),
                        self._keyring)
        self._anchors.append(anchor)
        return replace(report, anchored=anchor)


    def _lacks_key(self, line) -> bool:
        """``line`` is an anchor of format 2 whose key this keyring lacks (its MAC cannot be checked)."""
        anchor = line.anchor
        return (line.problem is not None and anchor is not None and anchor.format == ANCHOR_FORMAT
                and self._keyring is not None and self._keyring.get(anchor.key_id) is None)


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_ROTATED, None)
    session.info.pop(_REASON, None)


_SQLITE_GUARDS = (
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)
_PG_GUARDS = (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    # row triggers do not fire on TRUNCATE, which would empty the table in one statement
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)


def install_append_only_guards(bind: Engine | Connection) -> None:
    """Make the database itself refuse UPDATE and DELETE (and TRUNCATE) on the audit table."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            install_append_only_guards(conn)
        return
    statements = {"sqlite": _SQLITE_GUARDS, "postgresql": _PG_GUARDS}.get(bind.dialect.name, ())
    for statement in statements:
        bind.exec_driver_sql(statement)


def iter_jsonl(entries: Iterable[AuditEntry]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False)
