"""The hub tells a workspace whether its own Dask cluster's worker pods refused the project's extract.

On Kubernetes a worker pod whose ``verify-extract`` container (or its worker's start, or its
liveness probe) refuses the extract never runs a worker: the researcher's ``dask_client()`` waits
for a worker that never comes (:mod:`pds_kernel.dask_workers`). The hub audits each such refusal
(``extract.mount_refused``, ``workload: dask-worker``, with the pod's cluster and user labels:
:mod:`pds_kernel.hub.worker_watch`), but neither the gateway nor the workspace can read pods or the
audit trail. This endpoint answers that one question, and nothing more:

``GET /hub/api/pds/worker-refusals/<user>/<server>?cluster=<name>`` answers ``{"refused": false}``
or ``{"refused": true, "cluster", "at", "container", "reason"}`` for the newest refusal the hub
audited of a worker pod of cluster ``<name>`` labelled with that user and that server's project.

Who may ask: a token with ``access:servers`` on ``<user>/<server>`` (JupyterHub's own check, as
the served-bytes endpoint, :mod:`pds_kernel.hub.budget`): the workspace's own token, which holds
exactly that scope, or its user in person. No scope is added to any token: a workspace token
reaches only its own server's answer, another user's is refused (403) by JupyterHub before this
code runs. The answer is the hub's fixed sentence (:data:`~pds_kernel.k8s.pod_status.MISMATCH`),
the audit entry's time and the container's name: never the pod's message, which the audit trail
keeps for administrators. The workspace is the one server of its workspace user
(``/worker-refusals/alice@alpha/alpha``, ADR 17): the answer is its person's (the ``pds.user`` label
of the gateway's worker pods) and the entries name her; any other server is refused (404). Each
answer is audited (``dask.cluster.refusals``); so that a workspace
asking in a loop cannot fill the audit trail, one asker gets at most :data:`QUESTIONS_PER_MINUTE`
answers a minute, then 429 (the first refusal of each minute audited, ``denied``).
"""

from __future__ import annotations

import json
import re
import threading
import time

from ..audit import AuditEvent, AuditTrail, Outcome
from ..k8s.pod_status import MISMATCH
from ..workspace_names import person_of, workspace_of_server

API_PATH = "/api/pds/worker-refusals"
#: a dask-gateway cluster name (a label value: what the hub's entries name it by)
CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
#: the newest refusals of a project read for one answer
SCANNED = 200
#: answers one asker (a token's owner) gets per minute; ``dask_client()`` asks once per cluster
QUESTIONS_PER_MINUTE = 10


class QuestionRate:
    """How many questions each asker asked in the current minute (one hub process; forgotten each
    minute, so bounded by the askers of one minute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._counts: dict[str, int] = {}

    def count(self, asker: str, now: float) -> int:
        """Count a question of ``asker`` at ``now`` (seconds): its number within its minute."""
        minute = int(now // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._counts = minute, {}
            self._counts[asker] = self._counts.get(asker, 0) + 1
            return self._counts[asker]


def user_label(user: str) -> str:
    """The ``pds.user`` label of a user's pods (:func:`pds_kernel.sandbox.spec.authorised_workspace_spec`):
    the user name itself. It was ``user.replace("_", "-")``, so ``al_ice`` and ``al-ice`` (two
    users) shared a label and each was told of the other's refusals (red team 10)."""
    return user


def latest_refusal(audit: AuditTrail, user: str, project: str, cluster: str) -> dict | None:
    """The newest ``extract.mount_refused`` entry of a Dask worker pod of ``cluster``, labelled with
    ``user`` and ``project`` (among the project's last :data:`SCANNED` refusals), as the workspace is
    told it; None when there is none."""
    for entry in reversed(audit.entries(project=project, action="extract.mount_refused", limit=SCANNED, newest=True)):
        details = entry.details or {}
        if (details.get("workload") == "dask-worker" and details.get("cluster") == cluster
                and details.get("user_label") == user_label(user) and entry.actor == "hub"):
            container = details.get("container")
            return {"refused": True, "cluster": cluster, "at": entry.time,
                    "container": container if container in ("verify-extract", "dask-worker") else "",
                    "reason": MISMATCH}
    return None


def make_handler():
    """The JupyterHub API handler (built lazily: importing jupyterhub is slow)."""
    from jupyterhub.apihandlers.base import APIHandler
    from jupyterhub.scopes import needs_scope
    from tornado import web

    rate = QuestionRate()

    class WorkerRefusalHandler(APIHandler):
        """``GET /hub/api/pds/worker-refusals/<user>/<server>?cluster=<name>`` (module docstring)."""

        def initialize(self, context) -> None:
            self.context = context  # the HubContext (traitlets copies config values: it copies to itself)

        @needs_scope("access:servers")
        async def get(self, user_name: str, server_name: str) -> None:
            cluster = self.get_argument("cluster", "")
            if not CLUSTER_NAME.fullmatch(cluster):
                raise web.HTTPError(400, "give the name of your Dask cluster: ?cluster=<name>")
            found = workspace_of_server(user_name, server_name)
            if found is None:  # a person's own named server from before workspace users, another name
                raise web.HTTPError(404, "not a workspace: ask from the workspace ($JUPYTERHUB_USER/$JUPYTERHUB_SERVER_NAME)")
            user_name = found.person  # whose worker pods, whose entries
            # the token's owner (an admin asking too); a workspace's own token acts for its person
            asker = person_of(getattr(self.current_user, "name", None) or user_name)
            asked = rate.count(asker, time.time())
            if asked > QUESTIONS_PER_MINUTE:
                if asked == QUESTIONS_PER_MINUTE + 1:
                    self.context.record(AuditEvent(
                        actor=asker, action="dask.cluster.refusals", target=f"user:{user_name}", project=server_name,
                        outcome=Outcome.DENIED, details={"server": server_name, "cluster": cluster, "reason":
                                                         f"more than {QUESTIONS_PER_MINUTE} questions in a minute"}))
                raise web.HTTPError(429, f"at most {QUESTIONS_PER_MINUTE} questions a minute: ask again later")
            answer = latest_refusal(self.context.runtime.audit, user_name, server_name, cluster) or {"refused": False}
            self.context.record(AuditEvent(actor=asker, action="dask.cluster.refusals", target=f"user:{user_name}",
                                   project=server_name, outcome=Outcome.OK,
                                   details={"server": server_name, "cluster": cluster, "refused": answer["refused"]}))
            self.finish(json.dumps(answer))

    return WorkerRefusalHandler


def register(c, context) -> None:
    """Add the endpoint to JupyterHub's config ``c`` (the Kubernetes hub: only there are workers pods)."""
    existing = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = [*existing, (API_PATH + r"/([^/]+)/([^/]+)", make_handler(),
                                               {"context": context})]
