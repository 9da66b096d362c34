"""Who the ``pds`` command acts as.

The CLI acts as the operating-system user who runs it, mapped explicitly to a registry user by the
configuration (``cli.identities: {os_user: registry_user}``). An unmapped OS user acts as
``os:<user>``, which is no registry user and holds no right once the registry has an administrator
(:func:`pds_kernel.permissions.can_administer_registry`).

``--as USER`` (or ``$PDS_ACTOR``) is impersonation: only a platform administrator may use it
(:func:`pds_kernel.permissions.check_impersonate`), it is audited as ``cli.impersonate`` and every
entry it produces reads "<admin> acting as <user>"; the services refuse any review, approval,
release or download made that way (:func:`pds_kernel.permissions.check_not_impersonated`).
"""

from __future__ import annotations

import getpass

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..errors import PermissionDenied


def own_identity(settings, os_user: str | None = None) -> str:
    """The registry user the OS user is mapped to, else ``os:<user>``."""
    os_user = os_user or getpass.getuser()
    return settings.cli.identities.get(os_user) or f"os:{os_user}"


def resolve_actor(runtime, requested: str | None, os_user: str | None = None) -> str:
    """The acting identity of one command: the mapped identity, or an audited impersonation."""
    from ..registry.service import Registry

    own = own_identity(runtime.settings, os_user)
    if not requested or requested == own:
        return own
    registry = Registry.from_runtime(runtime)
    event = AuditEvent(actor=own, action="cli.impersonate", target=f"user:{requested}"[:200],
                       details={"acting_as": requested[:64]})
    try:
        permissions.check_impersonate(registry, own, requested)
    except PermissionDenied as exc:
        runtime.audit.record(event.with_outcome(Outcome.DENIED, reason=str(exc)))
        raise
    actor = permissions.Impersonation(requested, by=own)
    runtime.audit.record(event.with_outcome(Outcome.OK, label=actor.label))
    return actor
