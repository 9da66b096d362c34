"""Seals of the registry's approvals: what the two-person rule approved, signed with a key the
database does not hold.

A membership gives access, and a user is an administrator, only when their approval's row is
sealed: an HMAC-SHA256, under the audit trail's key (:mod:`pds_kernel.audit_key`, a platform secret
outside the database), of what was approved:

- a membership: its project, user, role, expiry, granter and approver;
- an administrator: the user, who made them one and who approved it.

Only the registry service computes seals, when it writes an approval (a grant under one approval,
a second administrator's approval, a shortened membership that keeps its approval). So whoever holds
the database's credentials but not the key cannot approve a pending membership, add one, extend
one, copy another row's seal, or make an administrator by writing rows: the registry reads such an
approval as pending, and refuses access saying so (docs/isolation.md, "Memberships").

What a seal does not stop: a row put back exactly as it was before (a removed membership restored
with its old seal until its old expiry, a deactivated administrator's row restored with its old
seal); the audit trail (``registry.member.remove``, ``registry.user.update``) records what was
really done, and ``pds audit verify`` finds deleted entries.

Approvals that existed at the upgrade to revision 0012 carry :data:`SEALED_BY_MIGRATION` (a
migration holds no key). It counts only until the registry's first write of this release seals them
(:func:`seal_approvals_of_upgrade`, audited as ``registry.seals.upgrade``); from then on it never
counts again. That is known from the audit entry, and, since a database owner can drop the audit
table's triggers and delete that entry, from the anchor of its commit too, whose reason is
``registry.seals.upgrade``: the anchor store is outside the database (:mod:`pds_kernel.audit_anchor`),
and without that anchor a deleted entry would make the mark count again (red team 7).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from ..audit import AuditEvent, AuditRow, AuditTrail, Outcome
from ..audit_key import AuditKey
from ..seal_mac import KeySource, key_of, seal_matches, seal_of
from .models import SEALED_BY_MIGRATION, Membership, Role, User

#: What a seal's HMAC starts with: a seal is never a valid hash of anything else made with the key.
_DOMAIN = b"pds-workspace registry approval seal v1\x00"
#: The audit action of the one-time sealing of the upgrade's approvals.
UPGRADE_ACTION = "registry.seals.upgrade"

log = logging.getLogger(__name__)


class ApprovalSeals:
    """Computes and checks seals with ``key`` (the audit trail's key in force, or a given key).
    ``audit``: the trail whose anchors say whether the upgrade's approvals were sealed (see
    :meth:`upgrade_sealed`); without it (a re-sealing with given keys) the mark is never valid."""

    def __init__(self, key: KeySource, audit: AuditTrail | None = None):
        self._key = key
        self._audit = audit
        self._upgrade_sealed = False  #: seen in the audit trail or its anchors: true for good

    def _mac(self, row, kind: str, fields: list) -> str:
        return seal_of(key_of(self._key, object_session(row)), _DOMAIN, [kind, *fields])

    def _membership(self, m: Membership) -> str:
        return self._mac(m, "membership", [m.project_id, m.user_name, Role(m.role).value,
                                        m.expires_on.isoformat(), m.granted_by, m.approved_by])

    def _administrator(self, u: User) -> str:
        return self._mac(u, "administrator", [u.name, u.admin_granted_by, u.admin_approved_by])

    def upgrade_sealed(self, s: Session) -> bool:
        """Whether the approvals of the upgrade to 0012 were sealed: the audit trail says so, or,
        when its entry is gone from the database, the anchor of its commit does (see the module)."""
        if not self._upgrade_sealed:
            recorded = s.scalar(select(AuditRow.seq).where(
                AuditRow.action == UPGRADE_ACTION, AuditRow.outcome == Outcome.OK).limit(1)) is not None
            if not recorded and (self._audit is None or self._audit.anchored(UPGRADE_ACTION)):
                log.error("the audit entry %s is missing from the database but anchored: the audit trail "
                          "was tampered with (run `pds audit verify`); the mark %s counts for nothing",
                          UPGRADE_ACTION, SEALED_BY_MIGRATION)
                recorded = True
            self._upgrade_sealed = recorded
        return self._upgrade_sealed

    def _valid(self, row, seal: str | None, expected) -> bool:
        if not isinstance(seal, str):
            return False
        if seal == SEALED_BY_MIGRATION:
            session = object_session(row)
            return session is not None and not self.upgrade_sealed(session)
        return seal_matches(seal, expected())

    # ---- checks -----------------------------------------------------------------------------
    def membership_sealed(self, m: Membership) -> bool:
        """``m`` is approved, and its approval is the one the registry sealed."""
        return m.approved_by is not None and self._valid(m, m.seal, lambda: self._membership(m))

    def administrator_sealed(self, u: User) -> bool:
        """``u`` is an approved administrator, and the approval is the one the registry sealed
        (active or not: an inactive administrator is none anyway)."""
        return (bool(u.is_admin) and u.admin_approved_by is not None
                and self._valid(u, u.admin_seal, lambda: self._administrator(u)))

    # ---- writes (the registry service only) -----------------------------------------------------
    def seal_membership(self, m: Membership) -> None:
        """Seal ``m``'s approval as it now stands (no seal while it is pending)."""
        m.seal = None if m.approved_by is None else self._membership(m)

    def seal_administrator(self, u: User) -> None:
        """Seal ``u``'s administrator approval as it now stands (none for a user who is no
        administrator, or an inactive or pending one: reactivation is a new grant)."""
        approved = u.is_admin and u.active and u.admin_approved_by is not None
        u.admin_seal = self._administrator(u) if approved else None


def seal_approvals_of_upgrade(s: Session, seals: ApprovalSeals, audit: AuditTrail, actor: str) -> dict | None:
    """The first registry write of this release, in its transaction ``s`` (every write calls this
    first): seal the approvals that carry :data:`SEALED_BY_MIGRATION`, and record it in the audit
    trail as ``registry.seals.upgrade`` with their numbers (none on a new installation). Once that
    entry exists this does nothing, and that mark counts no more. Returns the numbers sealed, or
    ``None`` when it was done before."""
    if seals.upgrade_sealed(s):
        return None
    members = list(s.scalars(select(Membership).where(Membership.seal == SEALED_BY_MIGRATION)))
    admins = list(s.scalars(select(User).where(User.admin_seal == SEALED_BY_MIGRATION)))
    for member in members:
        seals.seal_membership(member)
    for user in admins:
        seals.seal_administrator(user)
    s.flush()
    sealed = {"memberships": len(members), "administrators": len(admins)}
    # anchored with its own reason: known outside the database too, the mark never counts again
    audit.record(AuditEvent(actor=actor, action=UPGRADE_ACTION, target="registry", details=sealed), session=s,
                 anchor_reason=UPGRADE_ACTION)
    return sealed


def reseal_approvals(s: Session, old: AuditKey, new: AuditKey) -> dict:
    """After a rotation from ``old`` to ``new``, in the caller's transaction: seal again with ``new``
    every approval whose seal is right under ``old`` (exactly what it sealed, nothing else). A seal
    that is wrong under ``old`` (a row changed outside the registry) stays wrong: it is counted as
    broken, never made good. Approvals already sealed with ``new`` are left as they are (a re-run)."""
    before, after = ApprovalSeals(old), ApprovalSeals(new)
    counts = {"resealed": 0, "already": 0, "broken": 0}
    for member in s.scalars(select(Membership).where(Membership.seal.is_not(None))):
        _reseal(member, "seal", before._membership, after._membership, counts)
    for user in s.scalars(select(User).where(User.admin_seal.is_not(None))):
        _reseal(user, "admin_seal", before._administrator, after._administrator, counts)
    s.flush()
    return counts


def _reseal(row, column: str, old_seal, new_seal, counts: dict) -> None:
    seal = getattr(row, column)
    if seal == SEALED_BY_MIGRATION:  # not a seal: the one-time sealing of the upgrade handles it
        return
    if seal_matches(seal, new_seal(row)):
        counts["already"] += 1
    elif seal_matches(seal, old_seal(row)):
        setattr(row, column, new_seal(row))
        counts["resealed"] += 1
    else:
        counts["broken"] += 1
