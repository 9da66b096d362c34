"""JupyterHub's user API as both hubs serve it: no renames.

``admin:users`` (held by the platform's administrators through :data:`~pds_kernel.hub.common.ADMIN_ROLE`,
on both hubs) lets JupyterHub rename a hub user (``PATCH /hub/api/users/NAME`` with a new
``name``). Hub user names are registry names here, and an administrator who renamed their own hub
user, whose login cookie and tokens they hold, to a researcher's name was taken for that researcher
(their projects at the next refresh, their workspaces). Both authenticators put
:func:`user_api_handlers` before JupyterHub's own routes (the local hub's first; the
Kubernetes hub's since red team 9, where it got through).
"""

from __future__ import annotations

from jupyterhub.apihandlers.users import UserAPIHandler
from tornado import web

from ..audit import AuditEvent, Outcome


class NoRenameUserAPIHandler(UserAPIHandler):
    """JupyterHub's ``/hub/api/users/USER`` without renames.

    ``admin:users`` lets an administrator rename a hub user: renaming their own user (whose login
    cookie they hold) to a researcher's name made the hub treat them as that researcher (groups,
    servers) at the next refresh. Hub user names are registry names here: a rename is refused
    (403) and audited; every other field goes to JupyterHub's handler."""

    async def patch(self, user_name):
        data = self.get_json_body() or {}
        if isinstance(data, dict) and "name" in data and data["name"] != user_name:
            actor = self.current_user.name if self.current_user is not None else ""
            context = getattr(self.authenticator, "context", None)
            if context is not None:
                context.record(AuditEvent(actor=actor, action="hub.user.rename", target=f"user:{user_name}",
                                          outcome=Outcome.DENIED,
                                          details={"to": str(data["name"])[:64], "reason": "renames are refused"}))
            raise web.HTTPError(403, "hub users cannot be renamed: user names are the registry's")
        return await super().patch(user_name)


def user_api_handlers() -> list[tuple[str, type]]:
    """The route of :class:`NoRenameUserAPIHandler` (JupyterHub's pattern, under the hub's prefix)."""
    return [(r"/api/users/([^/]+)", NoRenameUserAPIHandler)]
