"""OIDC sign-in for the Kubernetes mode: ``GenericOAuthenticator`` plus the registry.

The identity provider (IdP) proves who the user is and says which IdP groups they are in; the
registry says which projects they may use. A user gets the *intersection*, so withdrawing access
in either place is enough (deny by default):

* sign-in needs a second factor shown by the ID token (``required_amr`` / ``required_acr``,
  :mod:`pds_kernel.hub.second_factor`), one of the ``allowed_groups`` (IdP groups, e.g.
  ``pds-users``) **and** an active registry account;
* project groups: IdP groups named ``<project_group_prefix><project id>`` (default
  ``pds-project-diabetes-2024``) ∩ the projects where the registry makes the user an active
  researcher (``require_idp_project_groups=False`` keeps only the registry side);
* roles: ``researcher`` when the user has a project, ``output-checker`` / ``admin`` when the IdP
  groups in ``idp_output_checker_groups`` / ``idp_admin_groups`` agree with the registry.

Administrators, precisely. Nobody gets JupyterHub's built-in ``admin`` (it may open anyone's
running workspace, share it or act with anyone's token, i.e. reach project data without being a
member). A PDS administrator is put in the hub group :data:`ADMIN_GROUP`, which holds the narrower
``pds-admin`` role (:data:`pds_kernel.hub.common.ADMIN_SCOPES`: accounts, groups, starting and
stopping servers, the services), when:

* at sign-in: they are in one of the ``idp_admin_groups`` *and* the registry marks their active
  account admin; a sign-in without both takes them out of the group;
* at each auth refresh (``auth_refresh_age``): they stay only while the registry and the IdP still
  say so (the Kubernetes configuration sets ``enable_auth_state``: the provider's tokens are kept,
  encrypted, and each refresh asks the provider again; without it the IdP is read at sign-in only).

No other path: ``admin_users`` and upstream's ``admin_groups`` are refused as settings, the auth
model always says ``admin: False``, and the Kubernetes configuration binds the role to the group,
never to a list of users (:func:`pds_kernel.hub.kubernetes.build_roles`). The group name is not a
valid project id, so no project can be mistaken for it.

Running workspaces: the authenticator starts the hub's membership watcher
(:class:`pds_kernel.hub.expiry.MembershipWatcher`, as the local authenticator does) every
``membership_check_interval`` seconds: a workspace whose membership was removed or expired, whose
project was halted or closed, or whose account was disabled is stopped through the hub's REST API
with the token of the hub's own ``pds-watcher`` service (:func:`pds_kernel.hub.kubernetes.configure_watcher`).
At the same pace it starts the check that audits the Dask worker pods refusing their project's
extract (:class:`pds_kernel.hub.worker_watch.WorkerRefusalWatch`).

Workspace users (``alice@diabetes-t2``, ADR 17: each workspace is the one server of its own hub
user) never sign in. Their auth refresh (their server's token, a spawn) is valid while the person
is an active researcher of the project *and* holds the project's hub group (the identity
provider's side, set at her sign-in); else it is refused, and the server stopped when the registry
withdrew the access. The person's refresh and sign-in project her roles on her workspace users from
the groups they just computed (registry ∩ IdP), stop what those no longer allow and her own named
servers from before (:func:`pds_kernel.hub.common.stop_revoked_servers`); a refresh whose fresh IdP
answer names another account or no sign-in group ends her session and stops her workspaces (red
team 18); a workspace user's refresh runs its person's due refresh first, so her workspace's token
alone brings the provider's answer. The membership watcher also stops a workspace whose person is out of the project's hub
group (``workspaces_need_hub_groups``).

Only the documented override points of OAuthenticator are used (``update_auth_model``,
``get_user_groups``, ``check_allowed``, ``refresh_user``); the token exchange is upstream's.
The standard settings (``client_id``, ``authorize_url``, ``token_url``, ``userdata_url``,
``oauth_callback_url``, ``scope``) go in ``hub.config.GenericOAuthenticator`` of the Helm values and
the client secret in ``$OAUTH_CLIENT_SECRET`` (from a Secret).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Any, Bool, Float, Set, TraitError, Unicode, default, validate

from .. import permissions
from ..audit import AuditEvent
from ..errors import InvalidInput, PermissionDenied
from ..registry import Role
from ..registry.names import check_project_id
from ..workspace_names import parse_workspace_user
from .admission import admission_handlers
from .common import (
    AuditedLogoutHandler,
    is_registry_user,
    project_groups,
    record_login_refused,
    refresh_workspace_user,
    stop_revoked_servers,
    user_roles,
)
from .expiry import MembershipWatcher
from .oidc_subjects import check_subject
from .second_factor import FactorPolicy, check_second_factor, id_token_claims
from .user_api import user_api_handlers
from .worker_watch import WorkerRefusalWatch

log = logging.getLogger(__name__)

#: The hub group of the administrators whom the IdP and the registry agree on. The ``:`` keeps it
#: apart from project groups (project ids never contain one).
ADMIN_GROUP = "pds:admins"


@dataclass(frozen=True)
class IdpGrants:
    """What the IdP's groups alone would allow (before intersecting with the registry)."""

    may_login: bool
    projects: frozenset[str]
    roles: frozenset[str]


def map_idp_groups(groups: Iterable[str], *, login_groups: Iterable[str], project_prefix: str,
                   admin_groups: Iterable[str] = (), checker_groups: Iterable[str] = ()) -> IdpGrants:
    """Pure: IdP group names → may the user sign in, which projects, which roles.

    A group that carries the prefix but not a valid project id grants nothing.
    """
    groups = {g for g in groups if isinstance(g, str)}
    projects = set()
    for g in groups:
        if project_prefix and g.startswith(project_prefix):
            try:
                projects.add(check_project_id(g[len(project_prefix):]))
            except InvalidInput:
                log.warning("ignoring IdP group %r: not a valid project id after the prefix", g)
    roles = set()
    if projects:
        roles.add(Role.RESEARCHER.value)
    if groups & set(checker_groups):
        roles.add(Role.OUTPUT_CHECKER.value)
    if groups & set(admin_groups):
        roles.add(Role.ADMIN.value)
    return IdpGrants(may_login=bool(groups & set(login_groups)), projects=frozenset(projects),
                     roles=frozenset(roles))


class PdsOAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator whose groups (projects, administrators) are IdP ∩ registry."""

    context = Any(None, allow_none=True, config=True,
                  help="The HubContext (settings, runtime, registry); set by configure().")
    #: The hub's door (``admission.py``) also requires the project's hub group, as the pre-spawn
    #: hook does: groups are the identity provider's projects here.
    admission_checks_hub_groups = True
    project_group_prefix = Unicode(
        "pds-project-", config=True,
        help="IdP groups named <prefix><project id> grant that project (with the registry's "
             "agreement). Default 'pds-project-'.")
    require_idp_project_groups = Bool(
        True, config=True,
        help="True (default): a project needs both the IdP group and the registry membership. "
             "False: the registry alone decides projects (the IdP only authenticates).")
    groups_claim = Unicode(
        "groups", config=True,
        help="The userinfo claim holding the user's IdP groups (a list of names). Default 'groups'.")
    idp_admin_groups = Set(
        Unicode(), config=True,
        help="IdP groups whose members are PDS administrators (hub group pds:admins, role "
             "pds-admin), if the registry also marks them admin. Default: none.")
    idp_output_checker_groups = Set(
        Unicode(), config=True,
        help="IdP groups whose members may act as output checkers (with a registry membership). "
             "Default: none.")

    required_amr = Set(
        Unicode(), default_value={"mfa"}, config=True,
        help="A sign-in passes when the ID token's amr (RFC 8176) holds one of these, e.g. "
             "['mfa', 'otp', 'hwk'], or its acr is one of required_acr. Default ['mfa'].")
    required_acr = Set(
        Unicode(), config=True,
        help="ID token acr values that show a second factor (the provider's level names, e.g. "
             "'http://eidas.europa.eu/LoA/substantial'). Default: none.")
    jwks_url = Unicode(
        "", config=True,
        help="The provider's JSON Web Key Set URL: ID token signatures are verified against it. "
             "Empty: the token is trusted because it came from the token endpoint over TLS.")
    id_token_issuer = Unicode(
        "", config=True, help="The expected 'iss' of ID tokens (the provider's issuer URL); empty = not checked.")
    membership_check_interval = Float(
        10.0, config=True,
        help="Seconds between checks that every running workspace's user may still use its project "
             "(expired or revoked membership, halted or closed project, disabled account stop it). "
             "0 disables. Set from hub.membership_check_seconds by configure().")
    membership_watcher_token = Unicode(
        "", config=True,
        help="Token of the hub service pds-watcher (admin:servers) the watcher stops servers with; "
             "made at each start by pds_kernel.hub.kubernetes.configure. Empty: no watcher.")
    worker_refusal_interval = Float(
        0.0, config=True,
        help="Seconds between listings of the namespace's Dask worker pods, whose refusals of their "
             "extract are audited (pds_kernel.hub.worker_watch). 0 disables. Set from "
             "hub.membership_check_seconds by configure().")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._watcher: MembershipWatcher | None = None
        if self.context is not None and self.membership_check_interval > 0 and self.membership_watcher_token:
            self._watcher = MembershipWatcher.start_for(self, self.membership_check_interval,
                                                        self.membership_watcher_token)
        self._worker_watch: WorkerRefusalWatch | None = None
        if self.context is not None and self.worker_refusal_interval > 0:
            self._worker_watch = WorkerRefusalWatch.start_for(self, self.worker_refusal_interval)

    #: a workspace starts only while its person holds the project's hub group (the identity
    #: provider's side: :func:`pds_kernel.hub.kubernetes.check_spawn_request`), so the membership
    #: watcher stops it once she is out of the group
    workspaces_need_hub_groups = True

    @validate("admin_users", "admin_groups")
    def _refuse_admin_lists(self, proposal):
        """Administrators come from ``idp_admin_groups`` ∩ the registry only (module docstring)."""
        if proposal["value"]:
            raise TraitError(f"PdsOAuthenticator.{proposal['trait'].name} is not used: administrators "
                             "are the members of idp_admin_groups whom the registry marks admin")
        return proposal["value"]

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("auth_state_groups_key")
    def _default_groups_key(self) -> str:
        return f"oauth_user.{self.groups_claim}"

    @default("username_claim")
    def _default_username_claim(self) -> str:
        return "preferred_username"

    @default("scope")
    def _default_scope(self) -> list[str]:
        return ["openid", "profile", "email", "groups"]

    @default("login_service")
    def _default_login_service(self) -> str:
        return "your institution (OIDC)"

    # ---- helpers ---------------------------------------------------------------------------
    @property
    def registry(self):
        return self.context.registry

    def idp_grants(self, auth_state: dict | None) -> IdpGrants:
        groups = ((auth_state or {}).get("oauth_user") or {}).get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        return map_idp_groups(groups, login_groups=self.allowed_groups,
                              project_prefix=self.project_group_prefix,
                              admin_groups=self.idp_admin_groups,
                              checker_groups=self.idp_output_checker_groups)

    def effective_projects(self, username: str, grants: IdpGrants) -> list[str]:
        """Registry projects (active researcher now), restricted to the IdP's when required."""
        projects = project_groups(self.registry, username) if is_registry_user(self.registry, username) else []
        if self.require_idp_project_groups:
            projects = [p for p in projects if p in grants.projects]
        return sorted(projects)

    def is_registry_admin(self, username: str) -> bool:
        return permissions.is_administrator(self.registry, username)

    def effective_roles(self, username: str, grants: IdpGrants) -> list[str]:
        if not is_registry_user(self.registry, username):
            return []
        return sorted(set(user_roles(self.registry, username)) & grants.roles)

    # ---- OAuthenticator override points ------------------------------------------------------
    async def update_auth_model(self, auth_model: dict) -> dict:
        """Never JupyterHub's built-in admin (administrators are in :data:`ADMIN_GROUP`,
        set by :meth:`get_user_groups`)."""
        auth_model["admin"] = False
        return auth_model

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        """The hub groups: project ids, and :data:`ADMIN_GROUP` for an administrator (each IdP ∩
        registry); called by OAuthenticator's ``manage_groups`` logic after the token exchange."""
        user_info = (auth_state or {}).get("oauth_user") or {}
        try:
            username = self.normalize_username(self.user_info_to_username(user_info))
        except Exception:  # no usable username claim: no groups (check_allowed refuses)
            return set()
        grants = self.idp_grants(auth_state)
        groups = set(self.effective_projects(username, grants))
        if Role.ADMIN.value in self.effective_roles(username, grants):
            groups.add(ADMIN_GROUP)
        return groups

    async def check_second_factor(self, auth_state: dict) -> dict:
        """The verified ID token claims; :class:`PermissionDenied` without a second factor."""
        jwks = None
        if self.jwks_url:
            jwks = await self.httpfetch(self.jwks_url, "Fetching the provider's keys...",
                                        validate_cert=self.validate_server_cert)
        claims = id_token_claims(auth_state.get("id_token"), client_id=self.client_id, jwks=jwks,
                                 issuer=self.id_token_issuer)
        check_second_factor(claims, FactorPolicy.of(self.required_amr, self.required_acr))
        return claims

    async def check_allowed(self, username: str, auth_model: dict | None) -> bool:
        """Deny by default: a second factor, an IdP sign-in group *and* an active registry account.

        A sign-in without a second factor is refused with a page that says so (HTTP 403)."""
        if auth_model is None:  # JupyterHub's startup check of allowed users: registry decides
            return is_registry_user(self.registry, username)
        auth_state = auth_model.get("auth_state") or {}
        try:
            claims = await self.check_second_factor(auth_state)
        except PermissionDenied as exc:
            record_login_refused(self.context, username, None, str(exc))
            raise web.HTTPError(403, "%s", str(exc)) from None
        grants = self.idp_grants(auth_model.get("auth_state"))
        if not grants.may_login:
            record_login_refused(self.context, username, None, "not in an IdP sign-in group")
            return False
        if not is_registry_user(self.registry, username):
            record_login_refused(self.context, username, None, "not an active registry user")
            return False
        # the name is the provider's preferred_username: one account of the provider owns it (oidc_subjects)
        refusal = check_subject(self.context.record, self.context.runtime.audit, self.registry, username, claims,
                                auth_state.get("oauth_user"))
        if refusal:
            record_login_refused(self.context, username, None, refusal)
            raise web.HTTPError(403, "%s", refusal)
        self.context.record(AuditEvent(
            actor=username, action="hub.login.oidc", target=f"user:{username}",
            details={"projects": list(auth_model.get("groups") or []),
                     "roles": self.effective_roles(username, grants)}))
        return True

    async def refresh_user(self, user, handler=None, **kwargs):
        """Re-apply the registry: groups (projects and :data:`ADMIN_GROUP`) can only shrink between
        sign-ins (the IdP groups are re-read at the next sign-in, or here when
        ``enable_auth_state`` keeps the tokens). A workspace user: :meth:`refresh_workspace`."""
        if parse_workspace_user(user.name) is not None:
            return await self.refresh_workspace(user, handler)
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if refreshed is False or not is_registry_user(self.registry, user.name):
            return False
        if isinstance(refreshed, dict):  # fresh IdP data (auth state), through get_user_groups
            model = refreshed
            why = self.refused_refresh(user.name, model)
            if why:  # her workspaces stop and her roles go now, not at her next sign-in
                log.info("refused the refresh of %s: %s", user.name, why)
                record_login_refused(self.context, user.name, handler, why)
                await stop_revoked_servers(self.context, handler, user.name, reason="refresh", groups=())
                return False
        else:
            current = {g.name for g in getattr(user, "groups", [])}
            allowed = set(project_groups(self.registry, user.name))
            if self.is_registry_admin(user.name):
                allowed.add(ADMIN_GROUP)
            model = {"name": user.name, "groups": sorted(current & allowed), "admin": False}
        if handler is not None:
            await stop_revoked_servers(self.context, handler, user.name, reason="refresh",
                                       groups=model.get("groups") or ())
        return model

    def refused_refresh(self, username: str, model: dict) -> str:
        """Why the identity provider's fresh answer ends the session of ``username`` (empty: it
        does not): another account behind the tokens, or no sign-in group any more."""
        if model.get("name") != username:
            return "the identity provider's tokens now name another account"
        if not self.idp_grants(model.get("auth_state")).may_login:
            return "not in an IdP sign-in group any more"
        return ""

    async def refresh_workspace(self, user, handler=None) -> bool:
        """A workspace user's refresh: ``True`` (its groups untouched: it holds none) while its
        person holds the project's hub group and the registry lets her work in it; else ``False``
        (JupyterHub then refuses its token and its spawn)."""
        from jupyterhub import orm

        found = parse_workspace_user(user.name)
        if not await self._person_refreshed(found.person, handler):
            log.info("refused the refresh of %s: %s must sign in again", user.name, found.person)
            return False
        db = getattr(handler, "db", None) or getattr(user, "db", None)
        person = orm.User.find(db, found.person) if db is not None else None
        if person is None or found.project not in {g.name for g in person.groups}:
            log.info("refused the refresh of %s: %s is not in the hub group of %s",
                     user.name, found.person, found.project)
            return False
        return await refresh_workspace_user(self.context, user, handler)

    async def _person_refreshed(self, person: str, handler) -> bool:
        """Refresh ``person`` through the request's handler when her own refresh is due (JupyterHub's
        ``refresh_auth``: the identity provider asked again, her groups written): a workspace's token
        used while she makes no request of her own (its activity reports, the gate, the gateway) no
        longer rides on groups the hub read before the provider withdrew them (red team 18). False
        when the refresh sends her to sign in again."""
        refresh = getattr(handler, "refresh_auth", None)
        target = handler.find_user(person) if refresh is not None and hasattr(handler, "find_user") else None
        if target is None:
            return True  # no request to refresh through, or she never signed in (the group check refuses)
        return await refresh(target) is not None

    def get_handlers(self, app):
        return [(r"/logout", AuditedLogoutHandler), *admission_handlers(), *user_api_handlers(),
                *super().get_handlers(app)]
