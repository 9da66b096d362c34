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

from collections.abc import Callable
from html import escape

from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_escape_path
from tornado import web

from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, PdsError, PermissionDenied
from ..registry import Role
from ..workspace_names import Workspace, parse_workspace_user, person_of, workspace
from .common import record_workspace_role
from .workspace_oauth import workspace_oauth_handlers
from .workspace_roles import grant

#: Shown under the reason on the refusal page.
REFUSAL_HINT = ("Ask the project's data manager to add you (or to renew your membership); "
                "your projects are listed on your home page.")


def check_workspace_admission(registry, user_name: str, server_name: str,
                              hub_groups: set[str] | None = None,
                              account_ok: Callable[[str], bool] | None = None) -> Workspace:
    """Raise :class:`PermissionDenied` (audited by the registry) unless the workspace of JupyterHub
    server ``user_name/server_name`` may start now; return it. A person names her project
    (``alice/diabetes-t2``: the start goes on to her workspace user, :mod:`pds_kernel.workspace_names`); a
    workspace user its one server (``alice@diabetes-t2/diabetes-t2``). The default server (no name)
    is never a workspace. ``hub_groups``, when given (Kubernetes: the identity provider's projects),
    must hold the project too, as the pre-spawn hook requires. ``account_ok``, when given (local:
    :meth:`PdsNativeAuthenticator.can_use_account`), must say the person's hub account is approved:
    an administrator's start of a revoked person's workspace ran until the membership watcher
    stopped it (red team 18)."""
    if not server_name:
        raise PermissionDenied("a workspace is a project: start it from your home page "
                               "(the server name must be a project id)")
    found = parse_workspace_user(user_name)
    if found is None:
        found = workspace(user_name, server_name)
    elif server_name != found.server:
        raise PermissionDenied(f"the workspace user {user_name} runs one server, {found.server}")
    registry.check_access(found.person, found.project, Role.RESEARCHER, action="workspace.admit")
    if hub_groups is not None and found.project not in hub_groups:
        raise PermissionDenied(f"{found.person} is not in the hub group of project {found.project}: "
                               "sign in again (the identity provider may have withdrawn it)")
    if account_ok is not None and not account_ok(found.person):
        raise PermissionDenied(f"the hub account of {found.person} is revoked: an administrator approves "
                               "it again (pds hub account approve) before any of their workspaces starts")
    return found


def refusal(user_name: str, server_name: str, reason: str) -> web.HTTPError:
    """The 403 JupyterHub renders as its error page (``jupyterhub_message`` is shown as is)."""
    what = f"the workspace of {server_name}" if server_name else "a default server"
    who = person_of(user_name)
    error = web.HTTPError(403, "%s", f"{who} cannot start {what}: {reason}")
    error.jupyterhub_message = f"{who} cannot start {what}: {reason}."
    return error


def _admit(handler, user_name: str, server_name: str | None) -> Workspace | None:
    context = getattr(handler.authenticator, "context", None)
    if context is None:  # a hub configured without PDS: nothing to decide here
        return None
    groups = None
    if getattr(handler.authenticator, "admission_checks_hub_groups", False):
        target = handler.find_user(person_of(user_name))
        groups = {g.name for g in target.groups} if target is not None else set()
    try:
        found = check_workspace_admission(context.registry, user_name, server_name or "", groups,
                                          getattr(handler.authenticator, "can_use_account", None))
        if parse_workspace_user(user_name) is None and grant(handler.db, found):  # her workspace user next
            record_workspace_role(context, found.person, found.project, "hub.workspace.grant", "start")
        return found
    except (PdsError, InvalidInput) as exc:
        context.record(AuditEvent(
            actor=handler.current_user.name, action="workspace.refused", target=f"user:{person_of(user_name)}",
            project=server_name or "", outcome=Outcome.DENIED,
            details={"server": server_name or "", "reason": str(exc), "stage": "admission"}))
        handler.extra_error_html = (f'<span id="refusal-hint">{escape(REFUSAL_HINT)}</span><br><br>'
                                    f'<a class="btn btn-primary" id="back-home" '
                                    f'href="{handler.hub.base_url}home">Back to your projects</a>')
        raise refusal(user_name, server_name or "", str(exc)) from None


def _on_workspace_user(handler, user_name: str, found: Workspace | None, path: str) -> bool:
    """Send a request made on the person's own path to the same path of her workspace user
    (``307``: the method and body are kept). True when it was sent."""
    if found is None or parse_workspace_user(user_name) is not None:
        return False
    target = path.format(user=url_escape_path(found.user), server=url_escape_path(found.server))
    query = handler.request.query
    handler.redirect(target + (f"?{query}" if query else ""), status=307)
    return True


class AdmittedSpawnHandler(SpawnHandler):
    """``/hub/spawn[/USER[/NAME]]``: JupyterHub's spawn page, after the registry admits the start.
    A person's ``/hub/spawn/alice/diabetes-t2`` goes on to ``/hub/spawn/alice@diabetes-t2/diabetes-t2``
    (her workspace user, made then if missing).

    JupyterHub's scope check (``servers`` on USER) runs first (``needs_scope``), so only who may
    start USER's servers learns the registry's reason."""

    @needs_scope("servers")
    async def _get(self, user_name, server_name):
        found = _admit(self, user_name, server_name)
        if _on_workspace_user(self, user_name, found, self.hub.base_url + "spawn/{user}/{server}"):
            return None
        return await super()._get(user_name, server_name)

    @needs_scope("servers")
    async def _post(self, user_name, server_name):
        found = _admit(self, user_name, server_name)
        if _on_workspace_user(self, user_name, found, self.hub.base_url + "spawn/{user}/{server}"):
            return None
        return await super()._post(user_name, server_name)


class AdmittedServerAPIHandler(UserServerAPIHandler):
    """``POST|DELETE /hub/api/users/USER/servers/NAME``: 403 with the reason (JupyterHub's JSON
    error carries the message), no server created; on a person's own path, ``307`` to her
    workspace user's."""

    @needs_scope("servers")
    async def post(self, user_name, server_name=""):
        if self.find_user(user_name) is not None:
            found = _admit(self, user_name, server_name)
            if _on_workspace_user(self, user_name, found, self.hub.base_url + "api/users/{user}/servers/{server}"):
                return None
        return await super().post(user_name, server_name)

    @needs_scope("delete:servers")
    async def delete(self, user_name, server_name=""):
        found = parse_workspace_user(user_name)
        user = self.find_user(user_name) if found is None and server_name else None
        # a person's own named server from before (still running) is stopped itself: the hub's
        # watcher stops it so, and must not stop her workspace instead; an invalid name is no person
        if user is not None and not _legacy_server_runs(user, server_name):
            try:
                mine = workspace(user_name, server_name)
            except InvalidInput:
                mine = None
            if mine is not None and self.find_user(mine.user) is not None:
                # the query kept: JupyterHub's page sends _xsrf there
                _on_workspace_user(self, user_name, mine, self.hub.base_url + "api/users/{user}/servers/{server}")
                return None
        return await super().delete(user_name, server_name)


def _legacy_server_runs(user, server_name: str) -> bool:
    """Whether the person's own named server ``server_name`` (from before workspace users) runs."""
    if server_name not in user.orm_user.orm_spawners:
        return False
    spawner = user.spawners[server_name]
    return bool(spawner.active or spawner.ready)


def admission_handlers() -> list[tuple[str, type]]:
    """The routes that replace JupyterHub's spawn entry points (same patterns), and its OAuth
    authorize endpoint, for which a person's workspace is her own server (:mod:`.workspace_oauth`)."""
    return [
        *workspace_oauth_handlers(),
        (r"/spawn", AdmittedSpawnHandler),
        (r"/spawn/([^/]+)", AdmittedSpawnHandler),
        (r"/spawn/([^/]+)/([^/]+)", AdmittedSpawnHandler),
        (r"/api/users/([^/]+)/server", AdmittedServerAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]*)", AdmittedServerAPIHandler),
    ]
