"""``pds audit rotate-key``: make the newest key of the audit keyring the one that signs, and seal
again with it what the old key sealed (docs/audit.md, "Rotating the key"; docs/adr/0014).

In order, each step safe to interrupt and the whole safe to run again:

1. who: an active platform administrator, personally (:func:`pds_kernel.permissions.check_rotate_audit_key`);
   a refusal is audited;
2. in one transaction of the platform database: every registry approval sealed right under the
   old key is sealed with the new one (:func:`pds_kernel.registry.seals.reseal_approvals`), and
   the rotation entry :data:`pds_kernel.audit_rotation.ROTATE_ACTION` is recorded, signed with the
   old key and naming both keys. From its commit on, every process signs entries and checks seals
   with the new key (it reads the key in force from the chain);
3. the local hub's accounts, one commit each (another database): those sealed right under the old
   key get a seal under the new one (:func:`pds_kernel.hub.account_seals.reseal_accounts`), then
   ``audit.key.reseal`` records the counts. An account not yet re-sealed is refused at sign-in (its
   seal no longer matches the key in force): an interruption locks accounts out until the re-run,
   it never lets one in.

Run again when the newest key is already in force, it re-does steps 2 (outside the rotation's
transaction) and 3 for the seals still made with the key it replaced, and records no rotation.
A seal that is wrong under the old key is never re-sealed: it stays refused and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from . import permissions
from .audit import AuditEvent, AuditRow, Outcome, lock_chain
from .audit_rotation import ROTATE_ACTION, replaced_key
from .db import transaction
from .errors import InvalidInput, PermissionDenied
from .registry import Registry
from .registry.seals import reseal_approvals

RESEAL_ACTION = "audit.key.reseal"


@dataclass(frozen=True)
class RotationReport:
    from_key: str
    to_key: str
    rotation_seq: int | None  #: the rotation entry written now; ``None``: it was written by an earlier run
    registry: dict  #: resealed / already / broken approvals
    hub: dict | None  #: the same for the local hub's accounts; ``None``: no local hub database


def rotate_audit_key(runtime, actor: str) -> RotationReport:
    """Rotate to the keyring's newest key, or finish an earlier rotation to it (see the module)."""
    audit = runtime.audit
    registry = Registry.from_runtime(runtime)
    try:
        permissions.check_rotate_audit_key(registry, actor)
    except PermissionDenied as exc:
        audit.record(AuditEvent(actor=actor, action=ROTATE_ACTION, target="audit-key",
                                outcome=Outcome.DENIED, details={"reason": str(exc)}))
        raise
    keyring = audit.keyring
    newest = keyring.keys[-1]
    with transaction(runtime.sessions) as s:
        lock_chain(s)  # a rotation run at the same time waits, then finishes this one (red team 9)
        current = audit.key(s)
        if current.key_id != newest.key_id:
            old = current
            counts = reseal_approvals(s, old, newest)
            entry = audit.record(AuditEvent(
                actor=actor, action=ROTATE_ACTION, target=f"audit-key:{newest.key_id}",
                details={"from_key": old.key_id, "to_key": newest.key_id, "registry": counts}), session=s,
                anchor_reason=ROTATE_ACTION)  # its anchor retires the old key for the anchors after it
            rotation_seq = entry.seq
        else:
            old = _replaced_key(s, keyring, newest.key_id)
            counts = reseal_approvals(s, old, newest)
            rotation_seq = None
    hub = _reseal_hub(runtime, old, newest)
    if rotation_seq is None or hub is not None:
        details = {"from_key": old.key_id, "to_key": newest.key_id, "hub": hub}
        if rotation_seq is None:
            details["registry"] = counts
        audit.record(AuditEvent(actor=actor, action=RESEAL_ACTION,
                                target="hub" if rotation_seq is not None else "registry", details=details))
    return RotationReport(old.key_id, newest.key_id, rotation_seq, counts, hub)


def _replaced_key(s, keyring, key_id: str):
    """The key the rotation to ``key_id`` replaced (to finish re-sealing what it sealed)."""
    rows = s.scalars(select(AuditRow).where(AuditRow.action == ROTATE_ACTION).order_by(AuditRow.seq)).all()
    old = replaced_key(rows, keyring, key_id)
    if old is None:
        raise InvalidInput(
            f"the keyring's newest key {key_id} already signs the audit trail and no key of the keyring "
            "was rotated to it: add a new key at the end of the keyring first (docs/audit.md, "
            "\"Rotating the key\")")
    return old


def _reseal_hub(runtime, old, new) -> dict | None:
    try:
        from .hub.local import reseal_hub_accounts
    except ImportError:  # no hub installed in this image: no local accounts to re-seal
        return None
    return reseal_hub_accounts(runtime.settings, runtime.audit, old, new)
