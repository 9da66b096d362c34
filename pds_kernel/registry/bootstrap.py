"""The registry's bootstrap, and its end recorded outside the database.

While the registry holds no active, approved administrator whose approval is sealed
(:func:`has_administrator`), it is in *bootstrap*: whoever opens it may administer it
(:func:`pds_kernel.permissions.can_administer_registry`), and an administrator made then is approved
at once, or nobody ever could be (a first installation).

Decided from the database alone, that let whoever can write the database (not holding the audit
key) end every administrator's validity (break their seals, delete their rows, deactivate them) and
so reopen bootstrap for any OS account that runs ``pds`` with the key (red team of the bootstrap).
So bootstrap ends for good: the write that first leaves the registry with an approved administrator
records ``registry.bootstrap.end`` in the audit trail, its commit anchored with that reason in the
anchor store, outside the database (:mod:`pds_kernel.audit_anchor`), as the sealing of the upgrade
is (:mod:`.seals`). From then on bootstrap never applies again, whatever the database says: a
registry whose administrators are all gone or invalid refuses every write, saying to restore their
rows from a backup (their seals stay valid under the key); nothing recreates an administrator
without one (docs/adr/0015-bootstrap-ends-for-good.md says why no recovery command exists).

An installation of an earlier release (administrators, no such entry) records it at its first
registry write of this release, or at ``pds db upgrade`` where that holds the key.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import permissions
from ..audit import AuditEvent, AuditRow, AuditTrail, Outcome
from ..errors import InvalidInput, PermissionDenied
from .models import User
from .seals import ApprovalSeals

#: The audit action, and the anchor reason, of the end of bootstrap.
BOOTSTRAP_END = "registry.bootstrap.end"

log = logging.getLogger(__name__)


def has_administrator(s: Session, seals: ApprovalSeals) -> bool:
    """An active, approved administrator, sealed (a pending one is none: it counts for nothing here)."""
    return bool(administrators(s, seals))


def administrators(s: Session, seals: ApprovalSeals) -> list[str]:
    """The names of the registry's active, approved, sealed administrators."""
    return sorted(u.name for u in s.scalars(select(User).where(
        User.is_admin.is_(True), User.active.is_(True), User.admin_approved_by.is_not(None)))
        if seals.administrator_sealed(u))


class Bootstrap:
    """Whether the registry's bootstrap ended, from the audit trail or, when its entry is gone from
    the database, from the anchors of ``audit`` (read only then)."""

    def __init__(self, audit: AuditTrail):
        self._audit = audit
        self._ended = False  #: seen in the audit trail or its anchors: true for good

    def ended(self, s: Session) -> bool:
        if not self._ended:
            recorded = s.scalar(select(AuditRow.seq).where(
                AuditRow.action == BOOTSTRAP_END, AuditRow.outcome == Outcome.OK).limit(1)) is not None
            if not recorded and self._audit.anchored(BOOTSTRAP_END):
                log.error("the audit entry %s is missing from the database but anchored: the audit trail "
                          "was tampered with (run `pds audit verify`); bootstrap stays over", BOOTSTRAP_END)
                recorded = True
            self._ended = recorded
        return self._ended

    def applies(self, s: Session, seals: ApprovalSeals) -> bool:
        """The registry is in bootstrap: no administrator, and it never had one."""
        return not has_administrator(s, seals) and not self.ended(s)

    def record_end(self, s: Session, seals: ApprovalSeals, actor: str) -> bool:
        """In a write's transaction ``s``: record the end of bootstrap, anchored, when the registry
        holds an administrator and it is not recorded yet (at the first administrator's approval,
        or at an upgraded installation's first write). Whether it was recorded now."""
        if self.ended(s):
            return False
        names = administrators(s, seals)
        if not names:
            return False
        self._audit.record(AuditEvent(actor=actor, action=BOOTSTRAP_END, target="registry",
                                      details={"administrators": names}), session=s, anchor_reason=BOOTSTRAP_END)
        return True

    def after_write(self, s: Session, seals: ApprovalSeals, actor: str, had_administrator: bool) -> None:
        """At the end of a write that may change administrators: refuse it when it leaves the
        registry with none although it had one or its bootstrap ended; else record the end of
        bootstrap when this write made the first administrator."""
        if has_administrator(s, seals):
            self.record_end(s, seals, actor)
        elif had_administrator:
            # while it holds none, whoever opens it bootstrapped it (before the end was anchored),
            # so an administrator who deactivated or demoted every administrator, himself last,
            # could act as anyone; now nobody could administer it again
            raise InvalidInput("this would leave the registry with no active administrator (a pending one is "
                               "none), and a registry without one can no longer be administered: make another "
                               "administrator first (and have them approved)")
        elif self.ended(s):
            raise PermissionDenied(permissions.NO_ADMINISTRATOR_LEFT)
