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
"""

from __future__ import annotations

import asyncio
import logging
import time
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
                 groups_of: Callable[[str], Awaitable[list[str]]] | None = None,
                 hub_silence_limit: float = HUB_SILENCE_LIMIT):
        super().__init__(interval)
        self.backend = backend
        self.context = context
        self.groups_of = groups_of
        self.hub_silence_limit = hub_silence_limit
        self._stopped: set[str] = set()
        #: person -> when the hub first left her groups unanswered (since its last answer)
        self._unanswered: dict[str, float] = {}

    async def _out_of_group(self, clusters: list, doomed: list) -> list[tuple[str, str, str]]:
        """The clusters (not in ``doomed`` already) whose person is out of their project's hub group,
        or whose groups the hub has left unanswered for too long; every person asked at once."""
        if self.groups_of is None:
            return []
        from .gateway import parse_identity

        named = {name for name, _, _ in doomed}
        left = [(cluster, parse_identity(cluster.username))  # stop_reason stopped those it refuses
                for cluster in clusters if cluster.name not in named]
        persons = sorted({identity.person for _, identity in left})
        held = dict(zip(persons, await asyncio.gather(*(self._groups(person) for person in persons)), strict=True))
        for person in self._unanswered.keys() - held.keys():  # no cluster left: her silence is over
            del self._unanswered[person]
        out = []
        for cluster, identity in left:
            groups = held[identity.person]
            if groups is not None and identity.project not in groups:
                out.append((cluster.name, cluster.username, permissions.left_hub_group(identity.person, identity.project)))
            elif groups is None and self._silent_for(identity.person) >= self.hub_silence_limit:
                out.append((cluster.name, cluster.username, permissions.hub_groups_unconfirmed(
                    identity.person, identity.project, self._silent_for(identity.person))))
        return out

    async def _groups(self, person: str) -> set[str] | None:
        """The hub groups of ``person``; ``None`` when the hub did not answer within half the silence
        limit (10 s at most: a hanging hub must not hold the pass, whose registry stops wait for it),
        its silence timed from this ask."""
        asked = time.monotonic()
        try:
            groups = set(await asyncio.wait_for(self.groups_of(person), min(10.0, self.hub_silence_limit / 2)))
        except Exception as exc:  # the hub did not answer: keep it for the next pass (docstring)
            since = self._unanswered.setdefault(person, asked)
            log.warning("the hub did not tell the groups of %s for %.0f s (%s): her clusters stop after %.0f s",
                        person, time.monotonic() - since, exc, self.hub_silence_limit)
            return None
        self._unanswered.pop(person, None)
        return groups

    def _silent_for(self, person: str) -> float:
        since = self._unanswered.get(person)
        return 0.0 if since is None else time.monotonic() - since

    async def check_once(self, today: date | None = None) -> list[str]:
        """Stop every active cluster whose workspace may not run now; return their names."""
        today = today or self.context.today or date.today()
        clusters = list(await self.backend.list_clusters())
        doomed = clusters_to_stop(self.context.registry, clusters, today)
        stopped = await self._stop(doomed)  # before asking the hub, which may be slow to answer
        return stopped + await self._stop(await self._out_of_group(clusters, doomed))

    async def _stop(self, doomed: list[tuple[str, str, str]]) -> list[str]:
        """Stop each ``(cluster, gateway user, reason)`` not stopping already, audited: their names."""
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
