"""Who may do what with packages: paired ``can_*`` (bool) and ``check_*`` (raises
:class:`PermissionDenied`), called by :mod:`.service` so that the CLI, the gate's API and the
notebook helper share them.

* **Request**: an active researcher of an open project, for that project (the registry decides,
  and records the decision in the audit trail). An admin may not request on someone's behalf.
* **Approve or refuse**: a platform administrator (``Registry.is_administrator``: an active
  registry admin, or the machine's operator ``os:<user>``). Approving downloads code that every
  workspace may then install; nobody else decides that.
* **List**: admins see every request; others see the requests of the projects they are an active
  member of. Everyone who can list sees the approved packages (what every workspace can install).
"""

from __future__ import annotations

from ..errors import PermissionDenied
from ..registry import Registry, Role


def can_request(registry: Registry, actor: str, project: str) -> bool:
    return registry.can_access(actor, project, Role.RESEARCHER)


def check_request(registry: Registry, actor: str, project: str) -> None:
    """Raises unless ``actor`` is an active researcher of ``project`` (audited by the registry)."""
    registry.check_access(actor, project, Role.RESEARCHER, action="packages.access.request")


def can_approve(registry: Registry, actor: str) -> bool:
    return registry.is_administrator(actor)


def check_approve(registry: Registry, actor: str) -> None:
    if not can_approve(registry, actor):
        raise PermissionDenied(f"{actor} may not approve or refuse packages: platform administrators only")


def can_see_requests_of(registry: Registry, actor: str, project: str) -> bool:
    return (registry.is_administrator(actor) or registry.can_access(actor, project, Role.RESEARCHER)
            or registry.can_access(actor, project, Role.OUTPUT_CHECKER))
