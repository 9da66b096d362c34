"""Stop the Dask clusters that lost their admission: the gateway's side of a project halt.

A dask-gateway cluster is admitted once, when it is created (:func:`pds_kernel.k8s.gateway.cluster_overrides`
asks :func:`pds_kernel.permissions.check_admit_workspace`). A halted project (``pds project halt``),
a closed project, an expired membership or a disabled registry account must also end the clusters
already running, on Kubernetes as locally. :class:`ClusterWatcher` runs inside the
``dask-gateway-server`` process (started by :class:`~pds_kernel.k8s.gateway.WorkspaceAuthenticator`),
so it needs no credential: every ``interval`` seconds it lists the gateway's active clusters, asks
the registry whether each cluster's workspace (``<user>/<project>``, the gateway identity) may still
run, and stops those that may not through the gateway's own backend (which deletes the scheduler
and worker pods on Kubernetes, or ends the processes of the local backend). Each stop is audited
(``dask.cluster.stop``, actor ``dask-gateway``, cause ``access revoked``) once.

New clusters of a halted project are refused at creation by the same admission rule.

The identity provider's side too: a cluster whose person is no longer in the project's hub group
(the hub learns it at her sign-in or auth refresh, red team 18) is stopped, audited the same way;
the hub is asked once per person and pass, with the gateway's own token (``read:users:groups``).
A hub that does not answer stops nothing (its refusal is logged; the registry's check still runs,
and no new token reaches the cluster: the gateway asks the hub at every request).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import date
from typing import Any

from .. import permissions
from ..audit import AuditEvent
from ..errors import InvalidInput, NotFound, PermissionDenied
from ..periodic import PeriodicCheck
from ..workspace_names import GATEWAY_SEPARATOR

log = logging.getLogger(__name__)

STOP_ACTION = "dask.cluster.stop"
#: The actor of the stops in the audit trail.
ACTOR = "dask-gateway"


def stop_reason(registry, username: str, today: date) -> str | None:
    """Why the cluster of gateway user ``username`` (``<user>/<project>``) may not run now; ``None``
    when it may (an active researcher of an open project that is not halted)."""
    from .gateway import parse_identity

    try:
        identity = parse_identity(username)
    except PermissionDenied as exc:
        return str(exc)
    if permissions.can_admit_workspace(registry, identity.person, identity.project, today=today):
        return None
    try:
        info = registry.get_project(identity.project)
    except (InvalidInput, NotFound):
        return f"there is no project {identity.project!r}"
    return (permissions.project_refusal(info, today)
            or f"{identity.person} is no longer an active researcher of project {identity.project}")


def clusters_to_stop(registry, clusters: Iterable[Any], today: date) -> list[tuple[str, str, str]]:
    """``(cluster name, gateway user, reason)`` for every cluster in ``clusters`` (objects with
    ``name`` and ``username``) whose workspace may not run now."""
    doomed = []
    for cluster in clusters:
        why = stop_reason(registry, cluster.username, today)
        if why is not None:
            doomed.append((cluster.name, cluster.username, why))
    return doomed


class ClusterWatcher(PeriodicCheck):
    """The periodic check, on the gateway's event loop. ``backend`` is the dask-gateway backend
    (``list_clusters`` / ``stop_cluster``); ``context`` the :class:`GatewayContext`."""

    what = "cluster admission check"

    def __init__(self, backend, context, interval: float,
                 groups_of: Callable[[str], Awaitable[list[str]]] | None = None):
        super().__init__(interval)
        self.backend = backend
        self.context = context
        self.groups_of = groups_of
        self._stopped: set[str] = set()

    async def _out_of_group(self, clusters: list, doomed: list) -> list[tuple[str, str, str]]:
        """The clusters (not in ``doomed`` already) whose person is out of their project's hub group."""
        if self.groups_of is None:
            return []
        from .gateway import parse_identity

        named = {name for name, _, _ in doomed}
        held: dict[str, set[str] | None] = {}
        out = []
        for cluster in clusters:
            if cluster.name in named:
                continue
            identity = parse_identity(cluster.username)  # stop_reason stopped those it refuses
            if identity.person not in held:
                try:
                    held[identity.person] = set(await self.groups_of(identity.person))
                except Exception as exc:  # the hub did not answer: keep it for the next pass (docstring)
                    log.warning("the hub did not tell the groups of %s (%s): next try at the next pass",
                                identity.person, exc)
                    held[identity.person] = None
            groups = held[identity.person]
            if groups is not None and identity.project not in groups:
                out.append((cluster.name, cluster.username, permissions.left_hub_group(identity.person, identity.project)))
        return out

    async def check_once(self, today: date | None = None) -> list[str]:
        """Stop every active cluster whose workspace may not run now; return their names."""
        today = today or self.context.today or date.today()
        clusters = list(await self.backend.list_clusters())
        doomed = clusters_to_stop(self.context.registry, clusters, today)
        doomed += await self._out_of_group(clusters, doomed)
        stopped = []
        for name, username, why in doomed:
            if name in self._stopped:  # stopping already (the backend ends it asynchronously)
                continue
            await self.backend.stop_cluster(name)
            self._stopped.add(name)
            stopped.append(name)
            user, _, project = username.partition(GATEWAY_SEPARATOR)  # a malformed name is stopped too
            log.info("stopped cluster %s of %s: %s", name, username, why)
            self.context.audit.record(AuditEvent(
                actor=ACTOR, action=STOP_ACTION, target=f"user:{user[:64]}", project=project[:64],
                details={"cluster": name, "cause": "access revoked", "reason": why,
                         "checked_at": "watcher"}))
        return stopped
