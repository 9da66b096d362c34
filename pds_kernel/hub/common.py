"""What both hub modes share: the registry seen as JupyterHub groups and roles, and the audit hooks.

The registry is the only authority. JupyterHub groups (one per project) and roles (researcher,
output-checker, admin) are a *projection* of it, refreshed at every login (authenticator-managed
groups), at hub start (roles) and by ``pds hub sync``. Whatever the projection says, the spawner
re-checks the registry before any server starts, so a stale group never grants anything.

Nothing here depends on the spawner or the authenticator class, so the local (NativeAuthenticator,
sandbox spawner) and the Kubernetes (OIDC, KubeSpawner) configurations both use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jupyterhub.handlers.login import LogoutHandler

from .. import permissions
from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, NotFound
from ..registry import Registry, Role
from ..registry.names import check_user_name
from ..runtime import Runtime
from ..settings import Settings
from ..workspace_names import parse_workspace_user, workspace
from .notices import WorkspaceNotices
from .workspace_roles import project_workspaces, workspace_users_of

log = logging.getLogger(__name__)

#: JupyterHub roles loaded from the registry. Scopes stay minimal: what a server may do inside a
#: project is decided by the registry, not by these roles.
ROLE_SCOPES: dict[str, list[str]] = {
    Role.RESEARCHER.value: ["self", "access:services"],
    Role.OUTPUT_CHECKER.value: ["self", "access:services"],
}
ROLE_DESCRIPTIONS = {
    Role.RESEARCHER.value: "PDS researcher: may start workspaces of the projects they belong to",
    Role.OUTPUT_CHECKER.value: "PDS output checker: reviews export requests in the airlock",
    Role.ADMIN.value: "PDS administrator: accounts, groups and servers, never the inside of a workspace",
}

#: JupyterHub role of the registry's administrators. Not JupyterHub's built-in ``admin`` role:
#: that one holds ``access:servers`` and ``shares`` (open anyone's running workspace, share it with
#: a non-member) and ``tokens`` (act as anyone), which would let an administrator who is not a
#: member of a project see its data. PDS administrators manage accounts (approve or revoke them,
#: ``admin:users``), groups and the life of servers (start, stop), and use the gate.
ADMIN_ROLE = "pds-admin"
ADMIN_SCOPES = ["self", "admin-ui", "admin:users", "admin:groups", "admin:servers", "list:services",
                "read:services", "read:hub", "read:roles", "read:metrics", "access:services"]
#: The JupyterHub service name of the gate, in both modes.
AIRLOCK_SERVICE = "airlock"


def admin_role(scopes: list[str] = ADMIN_SCOPES, **holders: list[str]) -> dict[str, Any]:
    """The :data:`ADMIN_ROLE` definition, held by ``users=[...]`` (local) or ``groups=[...]``
    (Kubernetes, with its own ``scopes``)."""
    return {"name": ADMIN_ROLE, "description": ROLE_DESCRIPTIONS[Role.ADMIN.value],
            "scopes": list(scopes), **holders}


def airlock_service_role() -> dict[str, Any]:
    """The gate's own role: it reads identities, roles and groups to decide who may do what."""
    return {"name": "airlock-service", "description": "the airlock reads identities",
            "scopes": ["read:users", "read:roles:users", "read:groups"], "services": [AIRLOCK_SERVICE]}


@dataclass(frozen=True, eq=False)
class HubContext:
    """The settings, runtime and registry of one hub process, handed to the authenticator and the
    spawner through traitlets config.

    traitlets deep-copies config values; this object is shared on purpose (one database engine per
    hub), so copying returns the same instance.
    """

    settings: Settings
    runtime: Runtime
    registry: Registry
    #: what the home page tells each researcher about their workspaces (pds_kernel.hub.notices)
    notices: WorkspaceNotices = field(default_factory=WorkspaceNotices)

    @classmethod
    def from_settings(cls, settings: Settings) -> HubContext:
        """The context of a hub process; its notices start from the audit trail's recent stops."""
        runtime = Runtime(settings)
        context = cls(settings=settings, runtime=runtime, registry=Registry.from_runtime(runtime))
        context.notices.seed(runtime.audit)
        return context

    def __deepcopy__(self, memo: dict) -> HubContext:
        return self

    def __copy__(self) -> HubContext:
        return self

    def record(self, event: AuditEvent) -> None:
        """Write an audit entry; the hub never continues silently if the trail is unwritable. A
        workspace's start or stop also updates what its user's home page says (:mod:`.notices`)."""
        self.runtime.audit.record(event)
        self.notices.observe(event.actor, event.action, event.target, event.project, event.details)


# ---- registry → JupyterHub --------------------------------------------------------------------
def is_registry_user(registry: Registry, username: str) -> bool:
    """True when ``username`` is a valid name with an active registry account (deny by default)."""
    try:
        check_user_name(username)
        return registry.get_user(username).active
    except (InvalidInput, NotFound):
        return False


def project_groups(registry: Registry, username: str, today: date | None = None) -> list[str]:
    """The JupyterHub groups of a user: the projects where they are an active researcher now."""
    return [p.id for p in registry.active_projects(username, Role.RESEARCHER, today)]


def user_roles(registry: Registry, username: str, today: date | None = None) -> list[str]:
    """The PDS roles a user holds right now (any open project), plus admin from the account."""
    roles = []
    for role in (Role.RESEARCHER, Role.OUTPUT_CHECKER):
        if registry.active_projects(username, role, today):
            roles.append(role.value)
    if permissions.is_administrator(registry, username):
        roles.append(Role.ADMIN.value)
    return roles


def auth_model(registry: Registry, username: str, today: date | None = None) -> dict[str, Any] | None:
    """The JupyterHub auth model of a registry user (``None``: not an active registry user).

    ``groups`` is the authoritative list of project groups (``Authenticator.manage_groups``), so
    a user leaves a project's group at the next login after the membership ends.
    """
    if not is_registry_user(registry, username):
        return None
    return {
        "name": username,
        "admin": False,  # registry admins hold the ADMIN_ROLE, never JupyterHub's built-in admin
        "groups": project_groups(registry, username, today),
    }


def build_load_roles(registry: Registry, today: date | None = None) -> list[dict[str, Any]]:
    """``c.JupyterHub.load_roles`` from the registry: researcher, output-checker and admin (as
    :data:`ADMIN_ROLE`, with :data:`ADMIN_SCOPES`)."""
    holders: dict[str, list[str]] = {name: [] for name in (*ROLE_SCOPES, Role.ADMIN.value)}
    for user in registry.users():
        if not user.active:
            continue
        for role in user_roles(registry, user.name, today):
            holders[role].append(user.name)
    roles = [
        {"name": name, "description": ROLE_DESCRIPTIONS[name], "scopes": scopes, "users": holders[name]}
        for name, scopes in ROLE_SCOPES.items()
    ]
    roles.append(admin_role(users=holders[Role.ADMIN.value]))
    return roles


def registry_admins(registry: Registry) -> set[str]:
    return {u.name for u in registry.users() if permissions.is_administrator(registry, u.name)}


# ---- enforcement at login ------------------------------------------------------------------
#: Why a person's own named server stops: workspaces run as their own hub user (ADR 17).
MOVED = ("a workspace now runs as its own hub user, on its own host: start it again from your home "
         "page (your files are kept)")


async def stop_revoked_servers(context: HubContext, handler, username: str, *,
                               today: date | None = None, reason: str = "login",
                               groups: Iterable[str] | None = None) -> list[str]:
    """Stop every running workspace of ``username`` (a person, or one workspace user) whose project
    she may no longer use, and bring her roles on her workspace users in line with the registry
    (:func:`.workspace_roles.project_workspaces`).

    Called at every login and every auth refresh: an expired membership or a closed project stops
    the workspace. ``groups``: the person's project groups the sign-in or refresh just computed
    (the identity provider's side ∩ the registry's): a project outside them is withdrawn and its
    workspace stopped as well, before JupyterHub writes them to her hub user. Returns the projects
    whose workspaces were stopped (each one audited).
    """
    if handler is None:
        return []
    found = parse_workspace_user(username)
    person = found.person if found is not None else username
    registered = set(project_groups(context.registry, person, today)) if is_registry_user(context.registry, person) else set()
    allowed = registered & set(groups) if groups is not None else registered
    if found is None and handler.find_user(person) is not None:
        granted, withdrawn = project_workspaces(handler.db, person, allowed)
        for project in granted:
            record_workspace_role(context, person, project, "hub.workspace.grant", reason)
        for project in withdrawn:
            record_workspace_role(context, person, project, "hub.workspace.withdraw", reason)
    owners = [found.user] if found is not None else [row.name for row in workspace_users_of(handler.db, person)]
    if found is None:
        owners.append(person)  # named servers of a person from before workspace users (ADR 17)
    stopped = []
    for owner in owners:
        user = handler.find_user(owner)
        if user is None:
            continue
        for name, spawner in list(user.spawners.items()):
            if not (spawner.active or spawner.ready) or (name in allowed and owner != person):
                continue
            if owner == person:
                why = MOVED
            elif name in registered:
                why = permissions.left_hub_group(person, name)
            else:
                why = revoke_reason(context.registry, person, name, today)
            log.info("stopping %s/%s: %s", owner, name, why)
            await handler.stop_single_user(user, name)
            context.record(AuditEvent(
                actor="hub", action="workspace.stop", target=f"user:{person}", project=name,
                details={"server": name, "cause": "access revoked", "reason": why, "checked_at": reason},
            ))
            stopped.append(name)
    return stopped


def record_workspace_role(context: HubContext, person: str, project: str, action: str, checked_at: str) -> None:
    """Audit a role on a workspace user granted (``hub.workspace.grant``) or withdrawn
    (``hub.workspace.withdraw``) by the hub from the registry (ADR 17)."""
    found = workspace(person, project)
    context.record(AuditEvent(actor="hub", action=action, target=f"user:{person}", project=project,
                              details={"hub_user": found.user, "role": found.role, "checked_at": checked_at}))


def revoke_reason(registry: Registry, username: str, project: str, today: date | None = None) -> str:
    """Why ``username`` may not use ``project`` now, in one sentence for the audit trail."""
    today = today or date.today()
    if not project:
        return "the default server is not a project workspace"
    try:
        info = registry.get_project(project)
    except (InvalidInput, NotFound):
        return f"there is no project {project!r}"
    if info.halted:
        return f"project {project} is halted ({info.halt_reason or 'no reason given'})"
    if not info.is_open(today):
        return f"project {project} is {info.status.value} ({info.start_date} to {info.end_date})"
    memberships = [m for m in registry.memberships_of(username)
                   if m.project_id == project and m.role == Role.RESEARCHER]
    if not memberships:
        return f"{username} is not a researcher of project {project}"
    if all(m.expires_on < today for m in memberships):
        return f"the membership of {username} in {project} expired on {memberships[0].expires_on}"
    if all(m.pending for m in memberships):
        return f"the membership of {username} in {project} is pending a second administrator's approval"
    if not is_registry_user(registry, username):
        return f"{username} has no active account"
    return "access revoked"


async def refresh_workspace_user(context: HubContext, user, handler=None, today: date | None = None,
                                 account_ok: Callable[[str], bool] | None = None) -> bool:
    """JupyterHub's auth refresh of a workspace user (its server's token, a spawn): valid while its
    person is an active researcher of its project; else its server is stopped and ``False``.
    ``account_ok(person)``, when given (local: the hub account approved and sealed), must hold too:
    a revoked account's workspace token is refused at its next refresh and its start at once (the
    membership watcher stops its server, audited; red team 18)."""
    found = parse_workspace_user(user.name)
    if found is None:
        return False
    if account_ok is not None and not account_ok(found.person):
        log.info("refused the refresh of %s: the hub account of %s is revoked", user.name, found.person)
        return False
    if is_registry_user(context.registry, found.person) and \
            found.project in project_groups(context.registry, found.person, today):
        return True
    if handler is not None:
        await stop_revoked_servers(context, handler, user.name, today=today, reason="refresh")
    return False


def make_post_auth_hook(context: HubContext):
    """A ``post_auth_hook`` that audits the login and stops servers whose access has ended."""

    async def post_auth_hook(authenticator, handler, authentication: dict) -> dict:
        username = authentication["name"]
        context.record(AuditEvent(
            actor=username, action="hub.login", target=f"user:{username}",
            details={"groups": authentication.get("groups", []), "remote_ip": _remote_ip(handler)},
        ))
        # the groups the sign-in computed (the identity provider's side ∩ the registry's), which
        # JupyterHub writes to her hub user only after this hook
        groups = authentication.get("groups") if getattr(authenticator, "manage_groups", False) else None
        await stop_revoked_servers(context, handler, username, reason="login", groups=groups)
        return authentication

    return post_auth_hook


def record_login_refused(context: HubContext, username: str, handler, why: str) -> None:
    """Audit a refused login. ``username`` is what was typed; it is truncated, never trusted."""
    context.record(AuditEvent(
        actor=str(username)[:64], action="hub.login", target=f"user:{str(username)[:64]}",
        outcome=Outcome.DENIED, details={"reason": why, "remote_ip": _remote_ip(handler)},
    ))


def _remote_ip(handler) -> str:
    try:
        return handler.request.remote_ip or ""
    except AttributeError:
        return ""


class AuditedLogoutHandler(LogoutHandler):
    """JupyterHub's logout, recorded in the audit trail, that also ends the session on the hub.

    JupyterHub's login cookie carries the user's ``cookie_id``, which JupyterHub never changes: a
    cookie copied before a logout keeps working after it (until ``cookie_max_age_days``). Here the
    logout gives the user a new ``cookie_id`` once the cookies are cleared, so every login cookie
    issued before it (this browser's and any copy) is refused from then on; JupyterHub also deletes
    the OAuth tokens of the session (the workspace's own cookie).

    The context comes from the authenticator (``authenticator.context``); the handler is
    registered through ``Authenticator.get_handlers`` so it replaces the default ``/logout``.
    """

    async def handle_logout(self):
        user = self.current_user
        context = getattr(self.authenticator, "context", None)
        if user is not None and context is not None:
            context.record(AuditEvent(actor=user.name, action="hub.logout", target=f"user:{user.name}",
                                      details={"remote_ip": _remote_ip(self)}))
        await super().handle_logout()
        if user is not None and getattr(user, "orm_user", None) is not None:
            end_sessions(self.db, user.orm_user)


def end_sessions(db, orm_user, *, delete_tokens: bool = False) -> int:
    """Refuse every hub login cookie issued so far to ``orm_user`` (a new ``cookie_id``) and, with
    ``delete_tokens`` (an account revoked), delete all their API and OAuth tokens, servers'
    included. Commits; returns the number of tokens deleted."""
    from jupyterhub import orm
    from jupyterhub.utils import new_token

    orm_user.cookie_id = new_token()
    deleted = 0
    if delete_tokens:
        for token in db.query(orm.APIToken).filter(orm.APIToken.user_id == orm_user.id).all():
            db.delete(token)
            deleted += 1
    db.commit()
    return deleted


# ---- pushing the registry into a running hub (``pds hub sync``) ------------------------------
@dataclass(frozen=True)
class SyncReport:
    groups_created: tuple[str, ...]
    added: tuple[str, ...]  #: "project:user"
    removed: tuple[str, ...]
    servers_stopped: tuple[str, ...]  #: "user/server"


def sync_hub(registry: Registry, audit, api_url: str, token: str, *, actor: str,
             today: date | None = None, progress=None) -> SyncReport:
    """Make the hub's project groups match the registry and stop servers whose access ended.

    ``api_url`` is the hub API (``http://127.0.0.1:8001/hub/api``); ``token`` one with
    admin:users, admin:servers and admin:groups. Every stop is audited; so is the sync itself.
    ``progress(step_name)`` is called once per project and once per user when given.
    """
    from urllib.parse import quote

    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    base = api_url.rstrip("/")

    def call(method: str, path: str, **kwargs):
        response = session.request(method, base + path, timeout=30, **kwargs)
        if response.status_code >= 400 and response.status_code != 404:
            raise PermissionError(f"hub API {method} {path}: {response.status_code} {response.text[:200]}")
        return response

    created, added, removed, stopped = [], [], [], []
    for project in registry.projects():
        wanted = {m.user_name for m in registry.members(project.id)
                  if m.role == Role.RESEARCHER and registry.can_access(m.user_name, project.id, Role.RESEARCHER, today)}
        group = call("GET", f"/groups/{project.id}")
        if group.status_code == 404:
            call("POST", f"/groups/{project.id}")
            created.append(project.id)
            current: set[str] = set()
        else:
            current = set(group.json().get("users", []))
        existing_users = {u["name"] for u in call("GET", "/users").json()}
        to_add = sorted((wanted - current) & existing_users)
        to_remove = sorted(current - wanted)
        if to_add:
            call("POST", f"/groups/{project.id}/users", json={"users": to_add})
            added += [f"{project.id}:{u}" for u in to_add]
        if to_remove:
            call("DELETE", f"/groups/{project.id}/users", json={"users": to_remove})
            removed += [f"{project.id}:{u}" for u in to_remove]
        if progress:
            progress(f"project {project.id}")
    for user in call("GET", "/users", params={"state": "active"}).json():
        name = user["name"]
        found = parse_workspace_user(name)
        person = found.person if found is not None else name
        allowed = set(project_groups(registry, person, today)) if is_registry_user(registry, person) else set()
        for server in (user.get("servers") or {}):
            if found is not None and server == found.server and server in allowed:
                continue
            why = revoke_reason(registry, person, server, today) if found is not None else MOVED
            call("DELETE", f"/users/{quote(name)}/servers/{quote(server)}")
            audit.record(AuditEvent(actor=actor, action="workspace.stop", target=f"user:{person}",
                                    project=server, details={"server": server, "cause": "access revoked",
                                                             "reason": why, "checked_at": "sync"}))
            stopped.append(f"{name}/{server}")
        if progress:
            progress(f"user {name}")
    report = SyncReport(tuple(created), tuple(added), tuple(removed), tuple(stopped))
    audit.record(AuditEvent(actor=actor, action="hub.sync", target="hub", details={
        "groups_created": len(created), "added": len(added), "removed": len(removed),
        "servers_stopped": len(stopped)}))
    return report
