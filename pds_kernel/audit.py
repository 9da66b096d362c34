"""The audit trail: append-only, hash-chained, one for every component.

Each entry records who (actor) did what (action) to what (target), in which project, with which
outcome, when, and why (details). Entries are chained: ``hash = SHA-256(canonical JSON of the
entry including prev_hash)``. :func:`verify` recomputes the chain and names the first entry that
was edited, deleted or moved.

Entries live in the shared database so that a registry or airlock change and its audit entry commit
in one transaction: callers pass their open session to :meth:`AuditTrail.record`. No code path
updates or deletes an audit row; the database also refuses it (triggers), so tampering requires
dropping the guard first, which verification still detects.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from .db import Base, transaction
from .events import SCHEMA_VERSION, AuditEvent, Outcome  # noqa: F401  (defined there, re-exported)

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64


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


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def compute_hash(
    *, seq: int, time: str, schema_version: int, actor: str, action: str, target: str,
    project: str, outcome: str, details: str, prev_hash: str,
) -> str:
    payload = {
        "seq": seq, "time": time, "schema_version": schema_version, "actor": actor,
        "action": action, "target": target, "project": project, "outcome": outcome,
        "details": details, "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def append(session: Session, event: AuditEvent) -> AuditEntry:
    """Append ``event`` inside the caller's transaction (committed with the caller's change)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
    last = session.execute(select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    details = json.dumps(dict(event.details), sort_keys=True, ensure_ascii=False, default=str)
    values = dict(
        seq=seq, time=_now(), schema_version=event.schema_version, actor=event.actor,
        action=event.action, target=event.target, project=event.project,
        outcome=event.outcome, details=details, prev_hash=prev_hash,
    )
    digest = compute_hash(**values)
    session.add(AuditRow(**values, hash=digest))
    session.flush()
    return _entry(AuditRow(**values, hash=digest))


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, time=row.time, schema_version=row.schema_version, actor=row.actor,
        action=row.action, target=row.target, project=row.project, outcome=row.outcome,
        details=json.loads(row.details), prev_hash=row.prev_hash, hash=row.hash,
    )


class AuditTrail:
    """The audit trail of one database. Thread-safe through the database's own locking."""

    def __init__(self, sessions: sessionmaker[Session]):
        self._sessions = sessions

    def record(self, event: AuditEvent, session: Session | None = None) -> AuditEntry:
        """Write one event: inside ``session`` when given (same transaction), else on its own."""
        if session is not None:
            return append(session, event)
        with transaction(self._sessions) as own:
            return append(own, event)

    def entries(self, project: str | None = None, action: str | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        with transaction(self._sessions) as session:
            query = select(AuditRow).order_by(AuditRow.seq)
            if project:
                query = query.where(AuditRow.project == project)
            if action:
                query = query.where(AuditRow.action == action)
            if limit:
                query = query.limit(limit)
            return [_entry(row) for row in session.scalars(query)]

    def verify(self) -> VerifyReport:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(AuditRow).order_by(AuditRow.seq))
            return verify_rows(rows)


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # "edited" | "deleted" | "reordered"
    message: str


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_rows(rows: Iterable[AuditRow]) -> VerifyReport:
    """Recompute the chain; report every entry whose content, predecessor or place is wrong."""
    problems: list[Problem] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    for row in rows:
        count += 1
        recomputed = compute_hash(
            seq=row.seq, time=row.time, schema_version=row.schema_version, actor=row.actor,
            action=row.action, target=row.target, project=row.project, outcome=row.outcome,
            details=row.details, prev_hash=row.prev_hash,
        )
        if recomputed != row.hash:
            problems.append(Problem(row.seq, "edited",
                                    f"entry {row.seq} was edited: its content no longer matches its hash"))
        elif row.seq != expected_seq and row.prev_hash == expected_prev:
            problems.append(Problem(row.seq, "reordered",
                                    f"entry {row.seq} was renumbered: expected number {expected_seq}"))
        elif row.prev_hash != expected_prev:
            if row.seq > expected_seq:
                problems.append(Problem(row.seq, "deleted",
                                        f"entries {expected_seq}..{row.seq - 1} are missing before entry {row.seq}"))
            else:
                problems.append(Problem(row.seq, "reordered",
                                        f"entry {row.seq} does not follow entry {row.seq - 1}: the chain was reordered"))
        expected_prev = row.hash
        expected_seq = row.seq + 1
    return VerifyReport(entries=count, problems=tuple(problems))


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


def install_append_only_guards(engine: Engine) -> None:
    """Make the database itself refuse UPDATE and DELETE on the audit table."""
    statements = {"sqlite": _SQLITE_GUARDS, "postgresql": _PG_GUARDS}.get(engine.dialect.name, ())
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def iter_jsonl(entries: Iterable[AuditEntry]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False)
