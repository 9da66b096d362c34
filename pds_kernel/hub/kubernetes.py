"""The production hub: KubeSpawner (one named server per project) and OIDC sign-in.

``hub_config/jupyterhub_config.py`` calls :func:`configure` when ``PDS_HUB_MODE=kubernetes``; in the
chart that happens from z2jh's ``hub.extraConfig``, i.e. after z2jh applied its own values, so what
is set here wins. Three hooks share one decision, :func:`check_spawn_request`:

* ``profile_list`` (callable): the projects the user may start now, restricted to the server's
  project for a named server; what the spawn form shows;
* ``pre_spawn_hook``: refuses (403, audited) any request for a project the user may not use, a
  default (unnamed) server, a profile that is not the server's project, or an unknown option; this
  is what the REST API goes through as well, so it cannot be bypassed by skipping the form;
* ``modify_pod_hook``: the last word. It re-checks and rebuilds the pod from the registry's
  :class:`~pds_kernel.sandbox.spec.WorkspaceSpec` with
  :func:`pds_kernel.k8s.pods.apply_workspace_invariants` (read-only extract at ``/data``, home,
  labels, limits, restricted security, no service-account token, no DNS), and the
  ``verify-extract`` init container that checks the mounted extract against the audit trail's
  record of its publication (:mod:`pds_kernel.extract.mount_check`; the hub refuses at once a
  project whose extract was never published or failed its last full verification).

The hub has its own host name, the chart's ``jupyterhub.hub.config.JupyterHub.subdomain_host``
(:func:`public_host`; the hub refuses to start without it): JupyterHub then serves each user's
workspaces at ``<user>.<name>`` and the gate at ``airlock--service.<name>``, so script in one
JupyterLab cannot read or drive the gate's pages or another user's (pds_kernel.hub.origins).

The spawner is :class:`~pds_kernel.hub.kube_spawner.PdsKubeSpawner`: a pod whose ``verify-extract``
container refuses the extract (changed on its claim after the hub read the audit trail) ends the
spawn at once, audited (``extract.mount_refused``), instead of waiting out ``start_timeout``; a
running server whose pod found its extract changed (the notebook's liveness probe,
:mod:`pds_kernel.extract.pod_watch`) is stopped at the next poll, audited (``workspace.stop``,
``cause: extract changed``); every other end of its notebook is audited, and a crash loop stops
it (:mod:`pds_kernel.k8s.restarts`). A workspace whose Dask cluster gets no worker may ask the hub
whether that cluster's worker pods refused the extract (:mod:`.worker_refusal_api`: its own token,
its own cluster, no new scope).

Scopes and roles name no user, so nothing depends on who was in the registry when the hub started
(``helm upgrade`` adds members without restarting the hub):

* a workspace's ``$JUPYTERHUB_API_TOKEN`` gets JupyterHub's default server-token scopes plus
  ``access:services!service=dask-gateway`` (:func:`server_token_scopes`), so the notebook can
  start Dask clusters; the gateway binds them to the token's one server, i.e. its project
  (:mod:`pds_kernel.k8s.gateway`). Not plain ``access:services``: the airlock would then take the
  workspace token for the user in person (``pds_kernel.airlock.web.identity.workspace_project``);
* every hub user (the built-in ``user`` role) may reach the gateway and the airlock services;
  what they may do there is decided by the registry, not by hub roles;
* administrators: the ``pds-admin`` role (:data:`K8S_ADMIN_SCOPES`: no access to others' servers,
  shares, tokens or identity-provider tokens) is held
  by the hub group ``pds:admins``, which ``PdsOAuthenticator`` manages at each sign-in and refresh
  (identity-provider admin group ∩ registry admin flag); JupyterHub's built-in ``admin`` role is
  emptied at every start and never granted.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado import web

from ..audit import AuditEvent, Outcome
from ..errors import InvalidInput, PdsError, PermissionDenied
from ..extract.mount_check import ExtractRefused, expected_mount
from ..k8s.config import K8sConfig, load_k8s_config
from ..k8s.pods import (
    NOTEBOOK_COMMAND,
    apply_workspace_invariants,
    build_container_security_context,
    build_pod_security_context,
)
from ..registry import Role
from ..registry.names import check_label_safe_user_name
from ..sandbox.spec import WorkspaceSpec, authorised_workspace_spec, home_volume_name
from ..settings import Settings, load_settings
from ..workspace_names import Workspace, person_of, workspace_of_server
from . import budget, worker_refusal_api
from .common import (
    ADMIN_ROLE,
    ADMIN_SCOPES,
    AIRLOCK_SERVICE,
    HubContext,
    admin_role,
    airlock_service_role,
    make_post_auth_hook,
    registry_admins,
)
from .kube_spawner import PdsKubeSpawner
from .oidc import ADMIN_GROUP, PdsOAuthenticator
from .origins import named_host, service_url, workspace_host_hook
from .pages import make_template_vars, platform_handlers

log = logging.getLogger(__name__)

#: User options a spawn request may carry (KubeSpawner's profile choice). Anything else is refused.
ALLOWED_OPTIONS = frozenset({"profile"})
GATEWAY_SERVICE = "dask-gateway"
#: The gateway service's role: it reads the hub groups of a workspace's person.
GATEWAY_ROLE = "pds-gateway"
#: The hub's own service whose token the membership watcher stops servers with (made at each start).
WATCHER_SERVICE = "pds-watcher"
#: Where the chart sets the hub's public address (z2jh loads ``hub.config`` into ``c`` before ``configure``).
HOST_SETTING = "jupyterhub.hub.config.JupyterHub.subdomain_host"
HOST_GUIDANCE = (f"set {HOST_SETTING} to the https address browsers use for the hub (e.g. "
                 "https://pds.example.org), with a wildcard DNS entry (*.pds.example.org) and a TLS "
                 "certificate for both names at the ingress: each workspace and the gate get "
                 "their own host below it (docs/deploy-kubernetes.md, 'Host names')")
#: Roles this module defines; configuration from the chart (``hub.loadRoles``) may not redefine them.
OWNED_ROLES = frozenset({"user", "admin", ADMIN_ROLE, WATCHER_SERVICE, GATEWAY_ROLE})


def server_token_scopes() -> list[str]:
    """``Spawner.server_token_scopes``: JupyterHub's own default for a server's token (the
    built-in ``server`` role: post activity, be reached as that one server) plus access to the
    dask-gateway service, and nothing else.

    JupyterHub grants the subset the user holds (the ``user`` role below holds the gateway scope)
    and resolves ``access:servers!server`` to ``<user>/<server name>``.
    """
    from jupyterhub.roles import get_default_roles

    default = next(r["scopes"] for r in get_default_roles() if r["name"] == "server")
    return sorted({*default, f"access:services!service={GATEWAY_SERVICE}"})


#: The administrators' scopes on the Kubernetes hub: :data:`ADMIN_SCOPES` without ``admin:users``,
#: whose ``admin:auth_state`` would show them every person's identity-provider tokens, which this
#: hub keeps to refresh her groups (``enable_auth_state``; red team 18). Its other parts remain:
#: reading and listing users (``users``), their roles, and deleting a hub user; not creating nor
#: editing one (hub users come from sign-ins, their names and flags from the registry).
K8S_ADMIN_SCOPES = [*(s for s in ADMIN_SCOPES if s != "admin:users"), "users", "read:roles:users", "delete:users"]


def build_roles(services: set[str]) -> list[dict[str, Any]]:
    """The hub roles of the Kubernetes mode; none of them lists users.

    * ``user`` (every hub user, assigned by JupyterHub when the user is created): their own
      resources, and access to the gateway and the airlock when those services are registered;
    * ``pds-admin``: held by the hub group ``pds:admins`` only (its members are set at each
      sign-in and refresh by ``PdsOAuthenticator``); any user holding it directly loses it at start;
    * ``admin`` (JupyterHub's built-in): nobody; JupyterHub clears every admin flag at start;
    * ``airlock-service``: the airlock reads identities and groups;
    * ``pds-gateway``: the gateway reads users' groups (a workspace user holds none: the gateway
      checks its person's, :meth:`pds_kernel.k8s.gateway.WorkspaceAuthenticator.person_groups`)
      and which servers run (:meth:`~pds_kernel.k8s.gateway.WorkspaceAuthenticator.workspace_servers`).
    """
    reachable = [s for s in (GATEWAY_SERVICE, AIRLOCK_SERVICE) if s in services]
    roles: list[dict[str, Any]] = [
        {"name": "user", "description": "PDS user: own resources; the gateway and the airlock "
                                        "(the registry decides what they may do there)",
         "scopes": ["self", *(f"access:services!service={s}" for s in reachable)]},
        admin_role(K8S_ADMIN_SCOPES, groups=[ADMIN_GROUP]),
        {"name": "admin", "users": []},
    ]
    if AIRLOCK_SERVICE in services:
        roles.append(airlock_service_role())
    if GATEWAY_SERVICE in services:
        roles.append(gateway_service_role())
    return roles


def gateway_service_role() -> dict[str, Any]:
    """The gateway's own token: the names and groups of users, and which servers run (a cluster
    stops with its workspace, :mod:`pds_kernel.k8s.cluster_watch`); nothing else (no server
    control, no tokens)."""
    return {"name": GATEWAY_ROLE, "description": "dask-gateway: reads the hub groups of a workspace's "
                                                 "person and whether the workspace runs",
            "scopes": ["read:users:groups", "read:servers"], "services": [GATEWAY_SERVICE]}


def watcher_role() -> dict[str, Any]:
    """The membership watcher's role: stop (and start) servers, nothing else (no user list, no tokens)."""
    return {"name": WATCHER_SERVICE, "description": "PDS membership watcher: stops the servers the "
                                                    "registry no longer allows",
            "scopes": ["admin:servers"], "services": [WATCHER_SERVICE]}


def configure_watcher(c, settings: Settings, chart_services: list) -> None:
    """The hub's membership watcher (:class:`pds_kernel.hub.expiry.MembershipWatcher`, started by
    :class:`PdsOAuthenticator` every ``hub.membership_check_seconds``): it stops, through the hub's
    REST API, a running workspace whose membership expired or was revoked, whose project was halted
    or closed, or whose account was disabled. Its token is made here at each start and lives only
    in this process (and hashed in the hub's database). At the same pace the hub audits the Dask
    worker pods that refuse their extract (:class:`pds_kernel.hub.worker_watch.WorkerRefusalWatch`,
    which lists pods with the hub's own Role)."""
    token = secrets.token_hex(32)
    c.JupyterHub.services = [*chart_services, {"name": WATCHER_SERVICE, "api_token": token}]
    c.PdsOAuthenticator.membership_check_interval = float(settings.hub.membership_check_seconds)
    c.PdsOAuthenticator.membership_watcher_token = token
    c.PdsOAuthenticator.worker_refusal_interval = float(settings.hub.membership_check_seconds)


def _group_names(user: Any) -> set[str]:
    return {getattr(g, "name", g) for g in (getattr(user, "groups", None) or ())}


def spawner_workspace(spawner) -> Workspace:
    """The workspace ``spawner`` runs: the one server of a workspace user, named after its project.
    :class:`PermissionDenied` for any other server (a person's own named server from before
    workspace users, another name, the default server)."""
    if not spawner.name:
        raise PermissionDenied("start a project server: the server name must be a project id")
    found = workspace_of_server(spawner.user.name, spawner.name)
    if found is None:
        raise PermissionDenied(f"a workspace runs as its own hub user (<person>@{spawner.name}): "
                               "start it from your home page")
    return found


def person_groups(spawner, person: str) -> set[str]:
    """The hub groups of ``person`` (the identity provider's projects ∩ the registry's, set at her
    sign-in): a workspace user holds none of its own. Empty when she has no hub user."""
    from jupyterhub import orm

    db = getattr(spawner.user, "db", None)
    row = orm.User.find(db, person) if db is not None else None
    return _group_names(row) if row is not None else set()


def acting_person(spawner) -> str:
    """Whom a spawner's audit entries name: the person of a workspace user, else the hub user."""
    return person_of(spawner.user.name)


def _refuse(context: HubContext, spawner, exc: PdsError) -> None:
    stage = {"stage": "extract"} if isinstance(exc, ExtractRefused) else {}
    person = acting_person(spawner)
    context.record(AuditEvent(
        actor=person, action="workspace.refused", target=f"user:{person}",
        project=spawner.name or "", outcome=Outcome.DENIED,
        details={"server": spawner.name or "", "reason": str(exc), **stage}))


def check_spawn_request(context: HubContext, spawner, *, action: str) -> WorkspaceSpec:
    """Decide whether ``spawner`` may start; return the spec, or raise :class:`PermissionDenied`
    (or :class:`~pds_kernel.extract.mount_check.ExtractRefused` when the project's extract was never
    published or its last full verification failed).

    The registry decision is audited by :meth:`Registry.check_access` under ``action``.
    """
    found = spawner_workspace(spawner)
    project = found.project
    options = dict(spawner.user_options or {})
    unknown = set(options) - ALLOWED_OPTIONS
    if unknown:
        raise PermissionDenied(f"unknown spawn option(s): {', '.join(sorted(map(str, unknown)))}")
    profile = options.get("profile")
    if profile not in (None, "", project):
        raise PermissionDenied(f"profile {profile!r} is not this server's project {project}")
    spec = authorised_workspace_spec(context.settings, context.registry, found.person, project,
                                     action=action, groups=person_groups(spawner, found.person))
    check_label_safe_user_name(spec.user)  # its pods' ``pds.user`` label: refused here with what to do
    expected_mount(context.settings, context.runtime.audit, project)
    return spec


def make_profile_list(context: HubContext, k8s: K8sConfig) -> Callable:
    """KubeSpawner's callable ``profile_list``: one profile per project the user may start."""

    def profile_list(spawner) -> list[dict[str, Any]]:
        found = workspace_of_server(spawner.user.name, spawner.name or "")
        if found is None:  # not a workspace: nothing to offer (the pre-spawn hook refuses it)
            return []
        groups = person_groups(spawner, found.person)
        projects = [p for p in context.registry.active_projects(found.person, Role.RESEARCHER)
                    if p.id in groups and p.id == found.project]
        return [{
            "display_name": f"{p.title} ({p.id})",
            "slug": p.id,
            "description": f"{p.cpu_limit:g} CPU, {p.mem_limit_mb} MB memory, up to {p.dask_workers} "
                           f"Dask workers{', GPU' if p.gpu and k8s.gpu.enabled else ''}",
            "default": i == 0,
            "kubespawner_override": {
                "image": k8s.notebook_image_for(p.id, gpu=bool(p.gpu and k8s.gpu.enabled)),
                "cpu_limit": float(p.cpu_limit), "cpu_guarantee": float(p.cpu_limit),
                "mem_limit": f"{p.mem_limit_mb}M", "mem_guarantee": f"{p.mem_limit_mb}M",
            },
        } for i, p in enumerate(projects)]

    return profile_list


def make_pre_spawn_hook(context: HubContext) -> Callable:
    def pre_spawn_hook(spawner) -> None:
        try:
            spec = check_spawn_request(context, spawner, action="workspace.authorise")
        except PdsError as exc:
            _refuse(context, spawner, exc)
            raise web.HTTPError(403, str(exc), reason=str(exc)) from None
        # KubeSpawner creates the home claim when missing (storage_pvc_ensure) under this name: the
        # person's and the project's, as before workspace users (an upgrade keeps every home)
        spawner.pvc_name = home_volume_name(spec.project, spec.user)

    return pre_spawn_hook


class _JsonBody:
    """The shape ``ApiClient.deserialize`` reads (a response with JSON ``data``)."""

    def __init__(self, obj: dict):
        self.data = json.dumps(obj)


def public_host(c) -> str:
    """The hub's ``subdomain_host`` from the chart, checked (:func:`.origins.named_host`): an https
    name, never an IP address. Without it, one origin would serve the hub, the gate and every
    JupyterLab, and script in one could drive the others (pds_kernel.hub.origins)."""
    value = c.JupyterHub.subdomain_host if "subdomain_host" in c.JupyterHub else ""
    if not value:
        raise InvalidInput(f"{HOST_SETTING} is not set: {HOST_GUIDANCE}")
    try:
        host = named_host(value if isinstance(value, str) else repr(value), HOST_SETTING)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc}: {HOST_GUIDANCE}") from None
    if not host.startswith("https://"):
        raise InvalidInput(f"{HOST_SETTING} is {value!r}: {HOST_GUIDANCE}")
    return host


def make_modify_pod_hook(context: HubContext, k8s: K8sConfig, airlock_pages: str = "") -> Callable:
    async def modify_pod_hook(spawner, pod):
        try:
            spec = check_spawn_request(context, spawner, action="workspace.start")
            # what the pod's verify-extract container checks the mounted extract against
            extract = expected_mount(context.settings, context.runtime.audit, spec.project)
        except PdsError as exc:
            _refuse(context, spawner, exc)
            raise web.HTTPError(403, str(exc), reason=str(exc)) from None
        api_client = spawner.api.api_client
        manifest = api_client.sanitize_for_serialization(pod)
        manifest = apply_workspace_invariants(manifest, spec, k8s, extract=extract, hub_api_url=spawner.hub.api_url,
                                              airlock_pages=airlock_pages)
        return api_client.deserialize(_JsonBody(manifest), "V1Pod")

    return modify_pod_hook


def workspace_host_key(c) -> bytes:
    """The key that names the workspaces' hosts (:func:`.origins.workspace_host_hook`), derived
    (HMAC-SHA256) from the first of z2jh's ``hub.config.CryptKeeper.keys``: the chart makes that key
    once and keeps it in the hub's Secret across upgrades, so a workspace keeps its host. Refused
    when it is missing: a key of our choosing here would be a key anyone can read in this file."""
    section = c["CryptKeeper"] if "CryptKeeper" in c else {}
    keys = section.get("keys") if hasattr(section, "get") else None
    first = keys[0] if isinstance(keys, (list, tuple)) and keys else None
    if not isinstance(first, str) or len(first) < 32:
        raise InvalidInput("jupyterhub.hub.config.CryptKeeper.keys is not set (the chart makes it unless "
                           "it is given): it keys the workspaces' host names; leave it to the chart or set "
                           "a random key of 64 hexadecimal digits")
    return hmac.digest(first.encode("utf-8"), b"pds_kernel.hub.origins: the workspaces' host names", "sha256")


def configure(c, settings: Settings | None = None, k8s: K8sConfig | None = None) -> HubContext:
    """Fill JupyterHub's config object ``c`` for Kubernetes. Returns the context."""
    # first: a hub without its own host name, or without the key of its workspaces' hosts, must not start at all
    host = public_host(c)
    host_key = workspace_host_key(c)
    settings = settings or load_settings()
    k8s = k8s or load_k8s_config()
    context = HubContext.from_settings(settings)
    registry = context.registry

    c.JupyterHub.authenticator_class = PdsOAuthenticator
    c.PdsOAuthenticator.context = context
    c.Authenticator.admin_users = set()  # nobody is JupyterHub's built-in admin (see build_roles)
    c.Authenticator.post_auth_hook = make_post_auth_hook(context)
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_age = 300
    # the provider's tokens kept (encrypted with z2jh's CryptKeeper keys, which the chart always
    # makes), so each refresh asks the provider again: a project group it withdrew stops the
    # workspace at her next refresh instead of her next sign-in (PdsOAuthenticator.refresh_user)
    c.Authenticator.enable_auth_state = True

    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = max(5, len(registry.projects()))
    c.JupyterHub.redirect_to_server = False
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.template_paths = [str(Path(__file__).resolve().parent / "templates")]
    # each workspace, the gate and the hub on their own host (pds_kernel.hub.origins)
    c.JupyterHub.subdomain_host = host
    # w--<keyed digest>.<host> per workspace (ADR 17, amended): its name tells nobody who works on what
    c.JupyterHub.subdomain_hook = workspace_host_hook(host_key)
    airlock_pages = service_url(host, AIRLOCK_SERVICE)
    c.JupyterHub.template_vars = make_template_vars(context, airlock_pages)
    c.JupyterHub.extra_handlers = platform_handlers()
    # KubeSpawner, which stops a spawn whose extract check failed (pds_kernel.hub.kube_spawner)
    c.JupyterHub.spawner_class = PdsKubeSpawner
    c.PdsKubeSpawner.context = context
    budget.configure(c, context)
    # a workspace asks whether its own Dask cluster's worker pods refused the extract (dask_workers)
    worker_refusal_api.register(c, context)

    c.KubeSpawner.profile_list = make_profile_list(context, k8s)
    c.KubeSpawner.pre_spawn_hook = make_pre_spawn_hook(context)
    c.KubeSpawner.modify_pod_hook = make_modify_pod_hook(context, k8s, airlock_pages)
    c.KubeSpawner.image = k8s.notebook_image
    # The lockdown and its settings come with the launcher (the pod hook enforces it too).
    c.KubeSpawner.cmd = list(NOTEBOOK_COMMAND)
    c.KubeSpawner.image_pull_policy = k8s.pull_policy
    c.KubeSpawner.uid = k8s.uid
    c.KubeSpawner.gid = k8s.gid
    c.KubeSpawner.fs_gid = k8s.gid
    c.KubeSpawner.privileged = False
    c.KubeSpawner.allow_privilege_escalation = False
    c.KubeSpawner.container_security_context = build_container_security_context(k8s)
    c.KubeSpawner.pod_security_context = build_pod_security_context(k8s)
    c.KubeSpawner.automount_service_account_token = False
    c.KubeSpawner.init_containers = []
    c.KubeSpawner.extra_containers = []
    c.KubeSpawner.volumes = []
    c.KubeSpawner.volume_mounts = []
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.storage_capacity = k8s.home_size
    c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
    if k8s.home_storage_class:
        c.KubeSpawner.storage_class = k8s.home_storage_class
    c.KubeSpawner.enable_user_namespaces = False
    c.KubeSpawner.default_url = "/lab"
    c.KubeSpawner.start_timeout = 300
    # a pod that found its extract changed is stopped and audited at the next poll (kube_spawner):
    # as often as the pod checks (a poll reads KubeSpawner's pod cache, no API request)
    c.KubeSpawner.poll_interval = k8s.extract_watch_seconds
    # every other end of the notebook is audited, and a crash loop stops the server (kube_spawner)
    c.PdsKubeSpawner.restart_limit = k8s.restart_limit
    c.PdsKubeSpawner.restart_window = k8s.restart_window_seconds
    c.PdsKubeSpawner.extract_watch_timeout = k8s.extract_watch_timeout_seconds
    c.KubeSpawner.http_timeout = 120

    c.KubeSpawner.server_token_scopes = server_token_scopes()
    existing = list(_existing(c.JupyterHub, "load_roles") or [])
    clash = sorted({r.get("name") for r in existing if isinstance(r, dict)} & OWNED_ROLES)
    if clash:
        raise InvalidInput(f"hub.loadRoles may not define the role(s) {', '.join(clash)}: "
                           "the PDS hub configuration owns them (see pds_kernel/hub/kubernetes.py)")
    widening = sorted(str(r.get("name")) for r in existing
                      if isinstance(r, dict) and WATCHER_SERVICE in list(r.get("services") or []))
    if widening:  # red team 9: a role of another name granted to the watcher's service widened its token
        raise InvalidInput(f"hub.loadRoles role(s) {', '.join(widening)} may not be granted to the service "
                           f"{WATCHER_SERVICE}: its token stops servers and holds nothing else; remove "
                           f"{WATCHER_SERVICE} from their services")
    chart_services = list(_existing(c.JupyterHub, "services") or [])
    services = {s.get("name") for s in chart_services if isinstance(s, dict)}
    if WATCHER_SERVICE in services:
        raise InvalidInput(f"hub.services may not define {WATCHER_SERVICE}: the PDS hub configuration owns it")
    c.JupyterHub.load_roles = existing + build_roles(services) + [watcher_role()]
    configure_watcher(c, settings, chart_services)
    # Registry admins are only candidates: PdsOAuthenticator puts them in ADMIN_GROUP at sign-in
    # when the identity provider's admin group agrees.
    log.info("kubernetes mode: %d project(s), %d registry admin(s)", len(registry.projects()),
             len(registry_admins(registry)))
    return context


def _existing(section, key: str):
    """A value z2jh may already have set in ``c`` (None when unset)."""
    try:
        value = section[key] if key in section else None
    except TypeError:
        return None
    return value if isinstance(value, (list, tuple)) else None
