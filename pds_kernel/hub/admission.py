"""Workspace admission at the hub's door: a start that the registry refuses is refused *before*
JupyterHub creates the named server, with the reason on the page.

JupyterHub creates a server's database row (``user.get_spawner``) as soon as ``/hub/spawn/USER/NAME``
or ``POST /hub/api/users/USER/servers/NAME`` is asked, then calls the spawner, which refused (403)
only from inside ``start``. The user saw "Failed to start your server on the last attempt. Please
contact admin" and a *Relaunch* button, the reason was only in the hub log, and the refused name
stayed as a phantom server counted against ``named_server_limit_per_user``: five refused names
and a researcher could no longer start their real project.

Here the entry points ask the registry first (:meth:`Registry.check_access`, audited as
``workspace.admit``) and answer 403 with the reason, creating nothing; the refusal itself is
audited as ``workspace.refused`` (``stage: admission``). The spawner (local) and the
pre-spawn hook (Kubernetes) keep their own check: this is the first of two gates, not the only one.
The handlers are registered through ``Authenticator.get_handlers`` because JupyterHub puts the
authenticator's routes before its own.
"""

from __future__ import annotations

from html import escape

from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from ..audit import AuditEvent, Outcome
from ..errors import PdsError, PermissionDenied
from ..registry import Role

#: Shown under the reason on the refusal page.
REFUSAL_HINT = ("Ask the project's data manager to add you (or to renew your membership); "
                "your projects are listed on your home page.")


def check_workspace_admission(registry, user_name: str, server_name: str,
                              hub_groups: set[str] | None = None) -> None:
    """Raise :class:`PermissionDenied` (audited by the registry) unless ``user_name`` may start
    the workspace of project ``server_name`` now. The default server (no name) is never a
    workspace. ``hub_groups``, when given (Kubernetes: the identity provider's projects), must
    hold the project too, as the pre-spawn hook requires."""
    if not server_name:
        raise PermissionDenied("a workspace is a project: start it from your home page "
                               "(the server name must be a project id)")
    registry.check_access(user_name, server_name, Role.RESEARCHER, action="workspace.admit")
    if hub_groups is not None and server_name not in hub_groups:
        raise PermissionDenied(f"{user_name} is not in the hub group of project {server_name}: "
                               "sign in again (the identity provider may have withdrawn it)")


def refusal(user_name: str, server_name: str, reason: str) -> web.HTTPError:
    """The 403 JupyterHub renders as its error page (``jupyterhub_message`` is shown as is)."""
    what = f"the workspace of {server_name}" if server_name else "a default server"
    error = web.HTTPError(403, "%s", f"{user_name} cannot start {what}: {reason}")
    error.jupyterhub_message = f"{user_name} cannot start {what}: {reason}."
    return error


def _admit(handler, user_name: str, server_name: str | None) -> None:
    context = getattr(handler.authenticator, "context", None)
    if context is None:  # a hub configured without PDS: nothing to decide here
        return
    groups = None
    if getattr(handler.authenticator, "admission_checks_hub_groups", False):
        target = handler.find_user(user_name)
        groups = {g.name for g in target.groups} if target is not None else set()
    try:
        check_workspace_admission(context.registry, user_name, server_name or "", groups)
    except PdsError as exc:
        context.record(AuditEvent(
            actor=handler.current_user.name, action="workspace.refused", target=f"user:{user_name}",
            project=server_name or "", outcome=Outcome.DENIED,
            details={"server": server_name or "", "reason": str(exc), "stage": "admission"}))
        handler.extra_error_html = (f'<span id="refusal-hint">{escape(REFUSAL_HINT)}</span><br><br>'
                                    f'<a class="btn btn-primary" id="back-home" '
                                    f'href="{handler.hub.base_url}home">Back to your projects</a>')
        raise refusal(user_name, server_name or "", str(exc)) from None


class AdmittedSpawnHandler(SpawnHandler):
    """``/hub/spawn[/USER[/NAME]]``: JupyterHub's spawn page, after the registry admits the start.

    JupyterHub's scope check (``servers`` on USER) runs first (``needs_scope``), so only who may
    start USER's servers learns the registry's reason."""

    @needs_scope("servers")
    async def _get(self, user_name, server_name):
        _admit(self, user_name, server_name)
        return await super()._get(user_name, server_name)

    @needs_scope("servers")
    async def _post(self, user_name, server_name):
        _admit(self, user_name, server_name)
        return await super()._post(user_name, server_name)


class AdmittedServerAPIHandler(UserServerAPIHandler):
    """``POST /hub/api/users/USER/servers/NAME``: 403 with the reason (JupyterHub's JSON error
    carries the message), no server created."""

    @needs_scope("servers")
    async def post(self, user_name, server_name=""):
        if self.find_user(user_name) is not None:
            _admit(self, user_name, server_name)
        return await super().post(user_name, server_name)


def admission_handlers() -> list[tuple[str, type]]:
    """The routes that replace JupyterHub's spawn entry points (same patterns)."""
    return [
        (r"/spawn", AdmittedSpawnHandler),
        (r"/spawn/([^/]+)", AdmittedSpawnHandler),
        (r"/spawn/([^/]+)/([^/]+)", AdmittedSpawnHandler),
        (r"/api/users/([^/]+)/server", AdmittedServerAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]*)", AdmittedServerAPIHandler),
    ]
