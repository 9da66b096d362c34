"""dask-gateway configuration: a Dask cluster belongs to one workspace's project, gets that
project's image, limits, read-only extract and labels, and only that workspace can see or use it.

``configure_gateway(c)`` is called from the dask-gateway chart's ``gateway.extraConfig`` (see
``helm/pds-workspace/values.yaml``), after the chart configured JupyterHub authentication
(service ``dask-gateway``). It replaces the authenticator by :class:`WorkspaceAuthenticator` and
sets the cluster options.

**Who is calling.** dask-gateway keys clusters by the name its authenticator returns: a user lists,
connects to, scales and stops only the clusters created under the same name. Each workspace is the
one server of its own hub user, ``<person>@<project>`` (ADR 17, :mod:`pds_kernel.workspace_names`),
named after its project. A notebook calls with its server's ``$JUPYTERHUB_API_TOKEN``; for that
token the hub's ``/hub/api/user`` names the workspace user and lists exactly one
``access:servers!server=alice@alpha/alpha`` scope. :class:`WorkspaceAuthenticator` therefore returns
the identity ``<person>/<project>`` (``alice/alpha``, the name of before workspace users: clusters
keep their owner across the upgrade), so the clusters of ``alice``'s ``alpha`` workspace and of her
``beta`` workspace live under two different names and neither workspace can list or reach the
other's clusters. A token of any other hub user (a person's own, a personal API token, a browser
session, a person's named server from before), or of a workspace user's server of another name, is
refused: clusters are started from a workspace only. The hub groups checked are the person's (a
workspace user holds none): the gateway reads them from the hub with its own service token
(``read:users:groups``, :func:`pds_kernel.hub.kubernetes.build_roles`). The token must also carry
``access:services!service=<gateway>`` (the hub grants it to server tokens in Kubernetes mode, see
:func:`pds_kernel.hub.kubernetes.server_token_scopes`).

**What cluster.** One option, ``project``, which defaults to the calling workspace's project (the
notebook also sends it from ``$DASK_GATEWAY__CLUSTER__OPTIONS__PROJECT``). The handler refuses any
other value, then re-checks the registry (audited as ``dask.cluster.authorise``) and the user's hub
groups (registry ∩ identity-provider groups), and translates the project's
:class:`~pds_kernel.sandbox.spec.WorkspaceSpec` into ``KubeClusterConfig`` overrides with
:func:`pds_kernel.k8s.pods.build_cluster_overrides`.

**Every request is asked of the hub.** dask-gateway's authenticators remember a user in a session
cookie for ``cache_max_age`` (300 s): a workspace token the hub had deleted (the account revoked,
the server stopped) kept listing, connecting to and making clusters through that cookie
(tests/security/test_revocation_attacks_dask.py). :class:`WorkspaceAuthenticator` never answers
from it (:class:`NoUserCache`): each call shows its token to the hub.

**One cluster at a time.** A workspace runs at most one cluster (each is capped at the project's
``dask_workers``; more clusters would multiply the cap): the handler refuses another while one is
pending or running (audited as ``dask.cluster.authorise``), with what to do. The options are built
without the backend, so :class:`ClusterLedger` lends it to them (set by the authenticator's setup).

**While it runs.** The authenticator also starts :class:`~pds_kernel.k8s.cluster_watch.ClusterWatcher`
in the gateway process: every ``cluster_check_interval`` seconds it stops the clusters whose
project was halted or closed, or whose user lost the project, whose workspace server no longer
runs, and the extra clusters of requests sent together (audited ``dask.cluster.stop``).

The gateway image has no JupyterHub: nothing here imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator, UserCache, unauthorized
from dask_gateway_server.models import User
from traitlets import Any as AnyTrait
from traitlets import Float

from ..audit import AuditEvent, AuditTrail, Outcome
from ..errors import PdsError, PermissionDenied
from ..extract.mount_check import ExtractRefused, expected_mount
from ..registry import Registry
from ..runtime import Runtime
from ..sandbox.spec import authorised_workspace_spec
from ..settings import Settings, load_settings
from ..workspace_names import Workspace, parse_gateway_name, parse_workspace_user
from .cluster_watch import CLUSTERS_PER_WORKSPACE, active, one_cluster_at_a_time
from .config import K8sConfig, load_k8s_config
from .pods import build_cluster_overrides

log = logging.getLogger(__name__)

ACTION = "dask.cluster.authorise"
AUTH_ACTION = "dask.gateway.authenticate"


class ClusterLedger:
    """The clusters a workspace runs, as the gateway's backend knows them. dask-gateway builds the
    cluster options without its backend: :meth:`WorkspaceAuthenticator.setup` lends it here (none
    lent: the gateway cannot tell, and refuses every cluster)."""

    def __init__(self) -> None:
        self.backend: Any = None

    async def running(self, username: str) -> list[str]:
        """The pending or running clusters of gateway user ``username``."""
        return sorted(c.name for c in active(await self.backend.list_clusters(username=username)))


@dataclass(frozen=True, eq=False)
class GatewayContext:
    settings: Settings
    registry: Registry
    audit: AuditTrail
    k8s: K8sConfig
    #: ``today`` for tests; ``None`` = the real date at each decision.
    today: date | None = None
    ledger: ClusterLedger = field(default_factory=ClusterLedger)

    # traitlets copies config values; this object is shared on purpose (one database engine)
    def __deepcopy__(self, memo: dict) -> GatewayContext:
        return self

    def __copy__(self) -> GatewayContext:
        return self


# ---- identity: which workspace is calling ------------------------------------------------------
def parse_identity(name: str) -> Workspace:
    """``alice/alpha-study`` → alice's workspace of alpha-study; anything else raises
    :class:`PermissionDenied`."""
    found = parse_gateway_name(name)
    if found is None:
        raise PermissionDenied(f"{str(name)[:64]!r} is not a workspace identity (<user>/<project>): "
                               "start Dask clusters from a project workspace")
    return found


def workspace_identity(model: dict, service_name: str) -> Workspace:
    """Pure: the workspace a hub identity model (``/hub/api/user``) belongs to: (person, project).

    Accepted only when the model is a workspace user's (``<person>@<project>``), its scopes grant
    access to the gateway service, and they name exactly one server of that user, its project's
    (``access:servers!server=<person>@<project>/<project>``), and no wider server access. Raises
    :class:`PermissionDenied` otherwise (deny by default).
    """
    if not service_name:
        raise PermissionDenied("the gateway has no JupyterHub service name: refusing every token")
    if not isinstance(model, dict) or model.get("kind") != "user":
        raise PermissionDenied("only a user's workspace token may use the gateway")
    name = model.get("name")
    scopes = {s for s in (model.get("scopes") or []) if isinstance(s, str)}
    if not scopes & {"access:services", f"access:services!service={service_name}"}:
        raise PermissionDenied(f"the token has no access to the service {service_name}")
    prefix = f"access:servers!server={name}/"
    servers = [s[len(prefix):] for s in scopes if s.startswith(prefix)]
    wider = [s for s in scopes if s.startswith("access:servers") and not s.startswith(prefix)]
    if len(servers) != 1 or wider:
        raise PermissionDenied("the token is not a workspace's own token (it must name exactly one "
                               "server): start Dask clusters from a project workspace")
    found = parse_workspace_user(name)
    if found is None:
        raise PermissionDenied(f"{str(name)[:64]!r} is not a workspace user (<person>@<project>): start "
                               "Dask clusters from a project workspace (started again since the upgrade)")
    if servers[0] != found.server:
        raise PermissionDenied(f"the workspace user {name} runs one server, {found.server}, "
                               f"not {servers[0][:64]!r}")
    return found


class NoUserCache(UserCache):
    """dask-gateway's cookie cache that remembers nobody: every request is authenticated again."""

    def get(self, cookie):
        return None


class WorkspaceAuthenticator(JupyterHubAuthenticator):
    """dask-gateway's JupyterHub authenticator, bound to the calling workspace's project.

    Same settings as ``JupyterHubAuthenticator`` (the chart's ``gateway.auth.jupyterhub`` values
    apply); the identity returned is ``<user>/<project>`` (:func:`workspace_identity`), and the
    service access scope is always required.
    """

    context = AnyTrait(None, allow_none=True, config=True,
                       help="The GatewayContext (audit trail); set by configure_gateway().")
    cluster_check_interval = Float(10.0, config=True, help=(
        "Seconds between two checks of the running clusters against the registry: a cluster whose "
        "project is halted or closed, or whose user lost the project, is stopped "
        "(pds_kernel.k8s.cluster_watch). configure_gateway() sets it to "
        "hub.membership_check_seconds (default 10); 0 turns the check off."))
    hub_silence_limit = Float(900.0, config=True, help=(
        "Seconds the hub may leave unanswered whether a running cluster's person is still in the "
        "project's hub group before that cluster stops (deny by default; a hub's restart for an "
        "upgrade takes well under this). pds_kernel.k8s.cluster_watch.HUB_SILENCE_LIMIT."))

    async def setup(self, app):
        if not self.jupyterhub_service_name:
            raise ValueError("WorkspaceAuthenticator needs jupyterhub_service_name "
                             "(gateway.auth.jupyterhub.jupyterhubServiceName in the chart)")
        self.use_service_access_scopes = True
        await super().setup(app)
        self.cache = NoUserCache(max_age=0)  # whatever cache_max_age says: a deleted token is out at once
        self.watcher = None
        if self.context is not None:
            self.context.ledger.backend = app["backend"]
        if self.context is not None and self.cluster_check_interval > 0:
            from .cluster_watch import ClusterWatcher

            self.watcher = ClusterWatcher(app["backend"], self.context, self.cluster_check_interval,
                                          groups_of=self.person_groups, hub_silence_limit=self.hub_silence_limit,
                                          servers_of=self.workspace_servers)
            self.watcher.start()

    async def cleanup(self):
        if getattr(self, "watcher", None) is not None:
            await self.watcher.close()
        await super().cleanup()

    async def hub_model(self, token: str) -> dict:
        """The hub's ``/user`` model for ``token``; 401 when the hub does not know the token."""
        response = await self.session.get(f"{self.jupyterhub_api_url}/user", ssl=self.ssl_context,
                                          headers={"Authorization": f"token {token}"})
        async with response:
            if response.status >= 500:
                raise web.HTTPBadGateway(reason="JupyterHub failed to verify the token")
            if response.status >= 400:
                raise unauthorized("jupyterhub")
            return await response.json()

    async def authenticate(self, request):
        token = self.get_token(request)
        if token is None:
            raise unauthorized("jupyterhub")
        model = await self.hub_model(token)
        try:
            identity = workspace_identity(model, self.jupyterhub_service_name)
        except PermissionDenied as exc:
            self._record_refusal(model, str(exc))
            raise unauthorized("jupyterhub") from None
        return User(identity.gateway_name, groups=await self.person_groups(identity.person), admin=False)

    async def person_groups(self, person: str) -> list[str]:
        """The hub groups of ``person`` (her projects, the identity provider's ∩ the registry's),
        read with the gateway's own service token: a workspace user holds no group of its own.
        None when the hub knows no such user; 502 when it will not say (deny)."""
        response = await self.session.get(f"{self.jupyterhub_api_url}/users/{quote(person, safe='')}",
                                          ssl=self.ssl_context,
                                          headers={"Authorization": f"token {self.jupyterhub_api_token}"})
        async with response:
            if response.status == 404:
                return []
            if response.status >= 400:
                log.warning("the hub did not tell the groups of %s (%s): the gateway's service needs "
                            "read:users:groups (pds_kernel.hub.kubernetes.build_roles)", person, response.status)
                raise web.HTTPBadGateway(reason="JupyterHub did not tell the workspace's groups")
            model = await response.json()
        groups = model.get("groups") if isinstance(model, dict) else None
        return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []

    async def workspace_servers(self, user: str) -> set[str]:
        """The servers the hub runs for workspace user ``user`` (``alice@alpha``), read with the
        gateway's own token (``read:servers``); empty when the hub knows no such user. Raises when the
        hub will not say (the watcher then counts its silence)."""
        response = await self.session.get(f"{self.jupyterhub_api_url}/users/{quote(user, safe='')}",
                                          ssl=self.ssl_context,
                                          headers={"Authorization": f"token {self.jupyterhub_api_token}"})
        async with response:
            if response.status == 404:
                return set()
            if response.status >= 400:
                raise web.HTTPBadGateway(reason=f"JupyterHub did not tell the servers of {user} ({response.status})")
            model = await response.json()
        servers = model.get("servers") if isinstance(model, dict) else None
        if not isinstance(servers, dict):
            raise PermissionDenied("the hub did not list the workspace's servers: the gateway's service "
                                   "needs read:servers (pds_kernel.hub.kubernetes.gateway_service_role)")
        return {name for name, server in servers.items()
                if isinstance(server, dict) and server.get("pending") != "stop"}

    def _record_refusal(self, model: dict, reason: str) -> None:
        actor = str(model.get("name", "?"))[:64] if isinstance(model, dict) else "?"
        log.info("gateway refused a token of %s: %s", actor, reason)
        if self.context is not None:
            self.context.audit.record(AuditEvent(actor=actor, action=AUTH_ACTION, target="dask-gateway",
                                                 outcome=Outcome.DENIED, details={"reason": reason}))


# ---- cluster options: what the calling workspace may start --------------------------------------
def _groups(user: Any) -> set[str]:
    return {getattr(g, "name", g) for g in (getattr(user, "groups", None) or ())}


def _deny(context: GatewayContext, actor: str, project: str, reason: str) -> PermissionDenied:
    context.audit.record(AuditEvent(actor=actor, action=ACTION, target=f"user:{actor}",
                                    project=project, outcome=Outcome.DENIED,
                                    details={"reason": reason}))
    return PermissionDenied(reason)


def cluster_overrides(context: GatewayContext, project: Any, user: Any,
                      running: list[str] | None = ()) -> dict[str, Any]:
    """Check access (audited, raises :class:`PermissionDenied`) and build the overrides.

    ``user`` is the gateway user of :class:`WorkspaceAuthenticator` (``<user>/<project>``); the
    requested ``project`` must be that workspace's project. ``running``: the clusters the workspace
    runs now (:class:`ClusterLedger`; ``None`` = unknown, refused); it may run
    :data:`~pds_kernel.k8s.cluster_watch.CLUSTERS_PER_WORKSPACE`.
    """
    try:
        identity = parse_identity(getattr(user, "name", ""))
    except PermissionDenied as exc:
        raise _deny(context, str(getattr(user, "name", "?"))[:64], str(project)[:64], str(exc)) from None
    if project != identity.project:
        raise _deny(context, identity.person, str(project)[:64],
                    f"a cluster of this workspace must be for its project {identity.project}, "
                    f"not {str(project)[:64]!r}")
    try:
        spec = authorised_workspace_spec(context.settings, context.registry, identity.person, identity.project,
                                         action=ACTION, today=context.today, groups=_groups(user))
    except PermissionDenied as exc:
        if context.registry.can_access(identity.person, identity.project, today=context.today):
            raise _deny(context, identity.person, identity.project, str(exc)) from None  # the group check
        raise
    if running is None or len(running) >= CLUSTERS_PER_WORKSPACE:
        raise _deny(context, identity.person, identity.project,
                    one_cluster_at_a_time(running[0]) if running else
                    "the gateway cannot tell which Dask clusters this workspace runs (its authenticator must "
                    "be pds_kernel.k8s.gateway.WorkspaceAuthenticator): no new cluster")
    try:  # what each worker pod's verify-extract container checks the mounted extract against
        extract = expected_mount(context.settings, context.audit, identity.project)
    except ExtractRefused as exc:
        raise _deny(context, identity.person, identity.project, str(exc)) from None
    return build_cluster_overrides(spec, context.k8s, extract=extract)


def make_cluster_options(context: GatewayContext) -> Callable[[Any], Any]:
    """The ``c.Backend.cluster_options`` callable (dask-gateway calls it with the user)."""
    from dask_gateway_server.options import Options, String

    def handler_for(running: list[str] | None) -> Callable[[Any, Any], dict[str, Any]]:
        def handler(options, user) -> dict[str, Any]:
            try:
                return cluster_overrides(context, options.project, user, running)
            except PdsError as exc:
                log.info("cluster refused for %s: %s", getattr(user, "name", "?"), exc)
                raise
        return handler

    def options(user, running: list[str] | None) -> Options:
        # A text field, not a choice list: a request for another project reaches the handler,
        # which refuses it *and* records the attempt in the audit trail.
        try:
            default = parse_identity(user.name).project
        except PermissionDenied:
            default = ""
        return Options(String("project", default=default, label="Project (this workspace's)"),
                       handler=handler_for(running))

    async def counted(user) -> Options:
        # dask-gateway creates the cluster right after the handler, with no await in between on
        # its database backends (KubeBackend awaits its API: the watcher stops what slips past)
        return options(user, await context.ledger.running(user.name))

    def cluster_options(user) -> Options | Awaitable[Options]:
        if context.ledger.backend is None:  # no backend lent: the handler refuses every cluster
            return options(user, None)
        return counted(user)

    return cluster_options


def configure_gateway(c, runtime: Runtime | None = None, k8s: K8sConfig | None = None,
                      today: date | None = None) -> GatewayContext:
    """Fill dask-gateway's config object ``c``. Returns the context (for tests).

    In the cluster the settings come from the environment (``PDS_DATABASE__URL`` from the
    ``pds-database`` Secret) and the Kubernetes config from ``$PDS_K8S_CONFIG``.
    """
    runtime = runtime or Runtime(load_settings())
    context = GatewayContext(settings=runtime.settings, registry=Registry.from_runtime(runtime),
                             audit=runtime.audit, k8s=k8s or load_k8s_config(), today=today)
    c.DaskGateway.authenticator_class = f"{__name__}.{WorkspaceAuthenticator.__name__}"
    c.WorkspaceAuthenticator.context = context
    c.WorkspaceAuthenticator.cluster_check_interval = float(runtime.settings.hub.membership_check_seconds)
    c.Backend.cluster_options = make_cluster_options(context)
    return context


def offered_project(options_spec: Iterable[dict]) -> str:
    """The project an ``Options.get_specification()`` offers the client ("" = none)."""
    for f in options_spec:
        if f.get("field") == "project":
            return str(f.get("default") or "")
    return ""
