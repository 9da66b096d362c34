"""dask-gateway configuration: each project's Dask clusters get that project's image, limits,
read-only extract and labels, and only members of the project get a cluster at all.

``configure_gateway(c)`` is called from the dask-gateway chart's ``gateway.extraConfig`` (see
``helm/pds-workspace/values.yaml``). The gateway authenticates users against JupyterHub (service
``dask-gateway``); this module then:

* offers one option, ``project``, whose choices are the projects where the user is an active
  researcher now (the notebook sets it by default from ``$DASK_GATEWAY__CLUSTER__OPTIONS__PROJECT``);
* re-checks the choice against the registry (audited as ``dask.cluster.authorise``) and against the
  user's hub groups (which the hub keeps as registry ∩ identity-provider groups), refusing otherwise;
* translates the project's :class:`~pds_kernel.sandbox.spec.WorkspaceSpec` into
  ``KubeClusterConfig`` overrides with :func:`pds_kernel.k8s.pods.build_cluster_overrides`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable

from ..audit import AuditEvent, AuditTrail, Outcome
from ..errors import PdsError, PermissionDenied
from ..registry import Registry, Role
from ..runtime import Runtime
from ..sandbox.spec import authorised_workspace_spec
from ..settings import Settings, load_settings
from .config import K8sConfig, load_k8s_config
from .pods import build_cluster_overrides

log = logging.getLogger(__name__)

ACTION = "dask.cluster.authorise"


@dataclass(frozen=True, eq=False)
class GatewayContext:
    settings: Settings
    registry: Registry
    audit: AuditTrail
    k8s: K8sConfig
    #: ``today`` for tests; ``None`` = the real date at each decision.
    today: date | None = None


def _groups(user: Any) -> set[str]:
    return {getattr(g, "name", g) for g in (getattr(user, "groups", None) or ())}


def allowed_projects(context: GatewayContext, user: Any) -> list[str]:
    """Projects where ``user`` may run a cluster now: active researcher in the registry *and*
    the project is one of the user's hub groups. Deny by default."""
    groups = _groups(user)
    return [p.id for p in context.registry.active_projects(user.name, Role.RESEARCHER, context.today)
            if p.id in groups]


def cluster_overrides(context: GatewayContext, project: str, user: Any) -> dict[str, Any]:
    """Check access (audited, raises :class:`PermissionDenied`) and build the overrides."""
    if not isinstance(project, str) or not project:
        raise PermissionDenied("choose a project for the cluster (option 'project')")
    spec = authorised_workspace_spec(context.settings, context.registry, user.name, project,
                                     action=ACTION, today=context.today)
    if project not in _groups(user):
        context.audit.record(AuditEvent(actor=user.name, action=ACTION, target=f"user:{user.name}",
                                        project=project, outcome=Outcome.DENIED,
                                        details={"reason": "not in the project's hub group"}))
        raise PermissionDenied(f"{user.name} is not in the hub group of project {project}: sign in again")
    return build_cluster_overrides(spec, context.k8s)


def make_cluster_options(context: GatewayContext) -> Callable[[Any], Any]:
    """The ``c.Backend.cluster_options`` callable (dask-gateway calls it with the user)."""
    from dask_gateway_server.options import Options, Select, String

    def handler(options, user) -> dict[str, Any]:
        try:
            return cluster_overrides(context, options.project, user)
        except PdsError as exc:
            log.info("cluster refused for %s: %s", getattr(user, "name", "?"), exc)
            raise

    def cluster_options(user) -> Options:
        projects = allowed_projects(context, user)
        if projects:
            field = Select("project", projects, default=projects[0], label="Project")
        else:  # nothing to choose; any value will be refused by the handler (and audited)
            field = String("project", default="", label="Project")
        return Options(field, handler=handler)

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
    c.Backend.cluster_options = make_cluster_options(context)
    return context


def project_choices(options_spec: Iterable[dict]) -> list[str]:
    """The project choices in an ``Options.get_specification()`` (what a client is shown)."""
    for f in options_spec:
        if f.get("field") == "project":
            return list(f.get("spec", {}).get("options", []))
    return []
