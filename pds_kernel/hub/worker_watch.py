"""The Kubernetes hub reports and audits the Dask worker pods that refuse their project's extract.

A worker pod whose ``verify-extract`` init container, whose worker's start or whose liveness probe
refuses the extract never runs a worker on it: the kubelet restarts it with a growing back-off and
the researcher's cluster simply gets no worker. The gateway cannot see that (its API server may not
read pods; its controller runs no platform code), but the hub can: z2jh's hub Role grants ``get``,
``list`` and ``watch`` on pods in the release's namespace, where dask-gateway makes the worker
pods, and the hub holds the audit key.

:class:`WorkerRefusalWatch` runs in the hub process every ``hub.membership_check_seconds``, next
to the membership watcher (:class:`pds_kernel.hub.expiry.MembershipWatcher`) and started the same
way (:class:`pds_kernel.hub.oidc.PdsOAuthenticator`). Each pass lists the namespace's pods labelled
``pds.component=dask-worker`` through KubeSpawner's own client (its API server, namespace and TLS
settings), reads the refusals (:func:`pds_kernel.k8s.worker_refusals.refused_workers`: validated
names, bounded message) and audits each one once per pod uid, container and run
(``extract.mount_refused``, ``workload: dask-worker``, actor ``hub``), with a warning in the hub's
log. It remembers only the pods still listed. A listing that fails (the API server unreachable, a
403 from a Role without pods) is logged and tried again at the next pass: nothing is forgotten,
nothing else in the hub waits for it.

What it does not do, on purpose:

* delete the refused pod: dask-gateway's controller replaces a deleted worker at once (the
  cluster's scale is unchanged), its replacement refuses the same extract, and the loop would run
  at the hub's pace instead of the kubelet's back-off (at most one restart every five minutes);
* stop the project's running workspaces: each notebook mounts the same claim under its own
  liveness probe, which kills it on the same change and has the hub stop it
  (:mod:`pds_kernel.hub.kube_spawner`); a worker refused at its first start means an extract
  that is not the published one, which every new workspace's ``verify-extract`` refuses too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from ..k8s.worker_refusals import WORKER_SELECTOR, WorkerRefusal, listed_uids, refused_workers
from ..periodic import PeriodicCheck
from .common import HubContext

log = logging.getLogger(__name__)

#: seconds one listing may take
REQUEST_TIMEOUT = 10
#: where a pod finds its namespace (KubeSpawner's default when none is configured)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ListingFailed(Exception):
    """The API server did not answer the list of worker pods."""


def spawner_settings(app) -> tuple[str, dict]:
    """The namespace and API client settings KubeSpawner uses in ``app`` (the hub): its
    configuration sections, read as traitlets does (the spawner class and its parents), with
    KubeSpawner's defaults."""
    values: dict = {}
    config = getattr(app, "config", None) or {}
    for cls in reversed(getattr(app, "spawner_class", object).mro()):
        if cls.__name__ in config:
            values.update(config[cls.__name__])
    namespace = values.get("namespace")
    if not namespace:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else "default"
    client = {"host": values.get("k8s_api_host", ""), "ssl_ca_cert": values.get("k8s_api_ssl_ca_cert", ""),
              "verify_ssl": values.get("k8s_api_verify_ssl")}
    return str(namespace), client


class WorkerRefusalWatch(PeriodicCheck):
    """The periodic check described in the module docstring (one per hub process)."""

    what = "Dask worker refusal check"

    def __init__(self, context: HubContext, namespace: str, interval: float, client: dict | None = None) -> None:
        super().__init__(interval)
        self.context, self.namespace = context, namespace
        self.client = dict(client or {"host": "", "ssl_ca_cert": "", "verify_ssl": None})
        #: (pod uid, container) -> the last run audited
        self._audited: dict[tuple[str, str], int] = {}
        self._failing: str | None = None

    @classmethod
    def start_for(cls, authenticator, interval: float) -> WorkerRefusalWatch | None:
        """Start the check of the hub that owns ``authenticator`` (needs a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        namespace, client = spawner_settings(authenticator.parent)
        watch = cls(authenticator.context, namespace, interval, client)
        watch.start()
        return watch

    async def check_once(self) -> list[WorkerRefusal]:
        """Audit the refusals not audited yet; return them."""
        try:
            pods = await self._list_workers()
        except Exception as exc:  # the API server down or refusing: said once, tried at each pass
            why = f"{type(exc).__name__}: {str(exc)[:300]}"
            if why != self._failing:
                log.warning("cannot list the Dask worker pods of namespace %s (%s); next try in %s s",
                            self.namespace, why, self.interval)
            self._failing = why
            return []
        if self._failing is not None:
            log.info("the Dask worker pods of namespace %s are listed again", self.namespace)
            self._failing = None
        uids = listed_uids(pods)
        self._audited = {key: run for key, run in self._audited.items() if key[0] in uids}
        audited = []
        for refusal in refused_workers(pods):
            key = (refusal.uid, refusal.container)
            if self._audited.get(key, -1) >= refusal.run:
                continue
            self.context.record(refusal.audit_event())
            self._audited[key] = refusal.run
            audited.append(refusal)
            log.warning("Dask worker pod %s (project %s, cluster %s) refused the project's extract: %s exited %s: %s",
                        refusal.pod, refusal.project, refusal.cluster, refusal.container, refusal.exit_code,
                        refusal.message)
        return audited

    async def _list_workers(self) -> dict:
        """``GET /api/v1/namespaces/<ns>/pods?labelSelector=pds.component=dask-worker`` (the API's JSON)."""
        from kubespawner.clients import load_config, shared_client

        load_config(**self.client)  # once per process, as KubeSpawner does
        api = shared_client("CoreV1Api")
        response = await api.list_namespaced_pod(self.namespace, label_selector=WORKER_SELECTOR,
                                                 _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        try:
            if response.status != 200:
                raise ListingFailed(f"the API server answered {response.status} {response.reason}")
            body = json.loads(await response.read())
        finally:
            response.release()
        if not isinstance(body, dict) or body.get("kind") != "PodList":
            raise ListingFailed("the API server's answer is not a list of pods")
        return body
