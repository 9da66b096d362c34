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
A hub that does not answer (its refusal is logged; the registry's check still runs, and no new
token reaches the cluster: the gateway asks the hub at every request) stops nothing at once: a hub
restarting for an upgrade must not end every training. Once it has not answered about a person
for ``hub_silence_limit`` seconds (:data:`HUB_SILENCE_LIMIT` by default), her clusters stop too,
audited (deny by default: a withdrawal by the identity provider would go unseen for as long as
the hub stays silent).

A cluster lives no longer than its workspace (red team 21A): a cluster whose workspace server the
hub no longer runs (stopped by its researcher, by the membership watcher, or its kernel killed before
it closed the cluster) is stopped at the next pass, audited with the cause ``workspace stopped``;
dask-gateway's own ``idle_timeout`` would not do (code on a worker keeps a scheduler busy). And a
workspace holds at most :data:`CLUSTERS_PER_WORKSPACE` clusters: the gateway refuses another at
creation (:func:`pds_kernel.k8s.gateway.cluster_overrides`); one made by requests sent together,
past that check, is stopped here, its oldest kept (cause ``one cluster per workspace``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
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
#: Seconds the hub may leave unanswered whether a cluster's person is still in the project's hub
#: group before the cluster stops (a hub's restart takes well under this).
HUB_SILENCE_LIMIT = 900.0
#: The actor of the stops in the audit trail.
ACTOR = "dask-gateway"
#: The causes of the stops in the audit trail.
REVOKED, WORKSPACE_STOPPED, ONE_AT_A_TIME = "access revoked", "workspace stopped", "one cluster per workspace"
#: Clusters a workspace may run at once: its project's ``dask_workers`` cap one cluster, and a
#: workspace's local Dask cluster is one at a time too (its dashboard port).
CLUSTERS_PER_WORKSPACE = 1
#: dask-gateway's model statuses of a cluster that is not stopping (PENDING, RUNNING).
ACTIVE_STATUSES = (1, 2)


def workspace_not_running(person: str, project: str) -> str:
    """Why a cluster stops when its workspace's server no longer runs."""
    return (f"the workspace of {person} in project {project} is not running: its Dask clusters stop "
            "with it (start the workspace again, then a new cluster)")


def workspace_unconfirmed(person: str, project: str, seconds: float) -> str:
    """Why a cluster stops when the hub has not said for ``seconds`` whether its workspace runs."""
    return (f"the hub has not told for {seconds:.0f} s whether the workspace of {person} in project "
            f"{project} still runs: its Dask clusters stop (deny by default)")


def one_cluster_at_a_time(running: str) -> str:
    """Why a workspace may not start another cluster (or keep one made past the creation check)."""
    return (f"this workspace runs a Dask cluster already ({running}), and it may run "
            f"{CLUSTERS_PER_WORKSPACE} at a time: use it (dask_gateway.Gateway().connect({running!r})) "
            f"or stop it (Gateway().stop_cluster({running!r})) before starting another")


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


def active(clusters: Iterable[Any]) -> list[Any]:
    """The clusters (dask-gateway models) that are pending or running, not stopping."""
    return [c for c in clusters if int(getattr(c, "status", 0)) in ACTIVE_STATUSES]


def extra_clusters(clusters: Iterable[Any], limit: int = CLUSTERS_PER_WORKSPACE) -> list[tuple[str, str, str]]:
    """``(cluster name, gateway user, reason)`` for every active cluster past a workspace's
    ``limit``; each workspace keeps its oldest clusters."""
    owned: dict[str, list[Any]] = defaultdict(list)
    for cluster in active(clusters):
        owned[cluster.username].append(cluster)
    doomed = []
    for username, held in owned.items():
        held.sort(key=lambda c: (getattr(c, "start_time", None) or 0, c.name))
        kept = held[:limit]
        doomed += [(c.name, username, one_cluster_at_a_time(kept[0].name)) for c in held[limit:]]
    return doomed


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
    (``list_clusters`` / ``stop_cluster``); ``context`` the :class:`GatewayContext`; ``groups_of``
    asks the hub a person's groups, ``servers_of`` the servers a workspace user runs (``None``:
    that check is off)."""

    what = "cluster admission check"

    def __init__(self, backend, context, interval: float,
                 groups_of: Callable[[str], Awaitable[list[str]]] | None = None,
                 hub_silence_limit: float = HUB_SILENCE_LIMIT,
                 servers_of: Callable[[str], Awaitable[set[str]]] | None = None):
        super().__init__(interval)
        self.backend = backend
        self.context = context
        self.groups_of = groups_of
        self.servers_of = servers_of
        self.hub_silence_limit = hub_silence_limit
        self._stopped: set[str] = set()
        #: (what, whom) -> when the hub first left it unanswered (since its last answer)
        self._unanswered: dict[tuple[str, str], float] = {}

    async def _hub_refusals(self, clusters: list, doomed: list) -> list[tuple[str, str, str, str]]:
        """The clusters (not in ``doomed`` already) whose person is out of their project's hub group,
        whose workspace server does not run, or about which the hub has stayed silent for too long:
        ``(cluster name, gateway user, reason, audit cause)``; every person and workspace asked at once."""
        if self.groups_of is None and self.servers_of is None:
            return []
        from .gateway import parse_identity

        named = {name for name, _, _ in doomed}
        left = [(cluster, parse_identity(cluster.username))  # stop_reason stopped those it refuses
                for cluster in clusters if cluster.name not in named]
        asks = sorted({("groups", identity.person) for _, identity in left if self.groups_of is not None}
                      | {("servers", identity.user) for _, identity in left if self.servers_of is not None})
        answers = dict(zip(asks, await asyncio.gather(*(self._ask(*key) for key in asks)), strict=True))
        for key in self._unanswered.keys() - answers.keys():  # no cluster left: its silence is over
            del self._unanswered[key]
        out = []
        for cluster, identity in left:
            refusal = self._refusal(identity, answers)
            if refusal is not None:
                out.append((cluster.name, cluster.username, *refusal))
        return out

    def _refusal(self, identity, answers: dict) -> tuple[str, str] | None:
        """Why the hub's answers (or silence) end a cluster of ``identity``'s workspace, if they do,
        and the audit's cause."""
        person, project = identity.person, identity.project
        if self.groups_of is not None:
            groups = answers[("groups", person)]
            if groups is not None and project not in groups:
                return permissions.left_hub_group(person, project), REVOKED
            silent = self._silent_for(("groups", person))
            if groups is None and silent >= self.hub_silence_limit:
                return permissions.hub_groups_unconfirmed(person, project, silent), REVOKED
        if self.servers_of is not None:
            servers = answers[("servers", identity.user)]
            if servers is not None and identity.server not in servers:
                return workspace_not_running(person, project), WORKSPACE_STOPPED
            silent = self._silent_for(("servers", identity.user))
            if servers is None and silent >= self.hub_silence_limit:
                return workspace_unconfirmed(person, project, silent), WORKSPACE_STOPPED
        return None

    async def _ask(self, what: str, whom: str) -> set[str] | None:
        """The hub's answer about ``whom`` (a person's groups, a workspace user's running servers);
        ``None`` when the hub did not answer within half the silence limit (10 s at most: a hanging
        hub must not hold the pass, whose registry stops wait for it), its silence timed from this ask."""
        ask = self.groups_of if what == "groups" else self.servers_of
        asked = time.monotonic()
        try:
            answer = set(await asyncio.wait_for(ask(whom), min(10.0, self.hub_silence_limit / 2)))
        except Exception as exc:  # the hub did not answer: keep it for the next pass (docstring)
            since = self._unanswered.setdefault((what, whom), asked)
            log.warning("the hub did not tell the %s of %s for %.0f s (%s): the clusters stop after %.0f s",
                        what, whom, time.monotonic() - since, exc, self.hub_silence_limit)
            return None
        self._unanswered.pop((what, whom), None)
        return answer

    def _silent_for(self, key: tuple[str, str]) -> float:
        since = self._unanswered.get(key)
        return 0.0 if since is None else time.monotonic() - since

    async def check_once(self, today: date | None = None) -> list[str]:
        """Stop every active cluster whose workspace may not run now, or past its workspace's
        cluster limit; return their names."""
        today = today or self.context.today or date.today()
        clusters = active(await self.backend.list_clusters())
        doomed = clusters_to_stop(self.context.registry, clusters, today)
        stopped = await self._stop(doomed)  # before asking the hub, which may be slow to answer
        extra = [d for d in extra_clusters(clusters) if d[0] not in {name for name, _, _ in doomed}]
        stopped += await self._stop(extra, cause=ONE_AT_A_TIME)
        refusals = await self._hub_refusals(clusters, doomed + extra)
        for cause in (REVOKED, WORKSPACE_STOPPED):
            stopped += await self._stop([(n, u, why) for n, u, why, c in refusals if c == cause], cause)
        return stopped

    async def _stop(self, doomed: list[tuple[str, str, str]], cause: str = REVOKED) -> list[str]:
        """Stop each ``(cluster, gateway user, reason)`` not stopping already, audited with
        ``cause``: their names."""
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
                details={"cluster": name, "cause": cause, "reason": why, "checked_at": "watcher"}))
        return stopped
