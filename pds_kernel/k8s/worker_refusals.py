"""Which Dask worker pods refused their project's extract: read from the API server's list of pods.

A worker pod (dask-gateway's controller makes it from :func:`pds_kernel.k8s.pods.build_cluster_overrides`)
runs the ``verify-extract`` init container, starts its worker through
:mod:`pds_kernel.extract.checked_start`, and its liveness probe (:mod:`pds_kernel.extract.pod_watch`)
has the kubelet kill it when ``/data`` changes. When any of them refuses the extract the kubelet
restarts it with a growing back-off (``restartPolicy: OnFailure``) and the cluster simply gets no
worker. :func:`refused_workers` reads those refusals in a ``PodList`` (the API's JSON, as
``GET /api/v1/namespaces/<ns>/pods?labelSelector=pds.component=dask-worker`` answers it) with
:func:`~pds_kernel.k8s.pod_status.extract_refusal`; the hub audits each one once
(:mod:`pds_kernel.hub.worker_watch`).

The pods' metadata and statuses are input: deny by default. A pod counts only when every mark
the controller writes is there and well formed: ``pds.component`` and dask-gateway's
``app.kubernetes.io/component`` both ``dask-worker``, a cluster name, a valid project id in
``pds.project`` whose extract claim is the one the pod mounts (so the entry names the project whose
extract was refused, not whatever a label says), a pod name and a uid. The user label is kept only
when it is a label value, the termination message (written by the pod) is cut to
:data:`~pds_kernel.k8s.pod_status.MAX_MESSAGE` characters, control characters replaced. Pure: no
cluster, no audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audit import AuditEvent
from ..errors import InvalidInput
from ..sandbox.spec import extract_volume_name
from .pod_status import POD_NAME, POD_UID, ExtractMismatch, clean_message, extract_refusal
from .pods import COMPONENT_LABEL, DASK_WORKER_CONTAINER, EXTRACT_CHECK_CONTAINER, PROJECT_LABEL

WORKER_COMPONENT = "dask-worker"
#: what the hub asks the API server for (it checks the labels again: :func:`refused_workers`)
WORKER_SELECTOR = f"{COMPONENT_LABEL}={WORKER_COMPONENT}"
#: dask-gateway's labels of the pods its controller makes
GATEWAY_COMPONENT_LABEL = "app.kubernetes.io/component"
CLUSTER_LABEL = "gateway.dask.org/cluster"
USER_LABEL = "pds.user"
#: a label value (Kubernetes: at most 63 characters, alphanumeric at both ends)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_POD_NAME = POD_NAME
_UID = POD_UID


@dataclass(frozen=True)
class WorkerRefusal:
    """One refused run of a worker pod's container (``verify-extract`` or ``dask-worker``)."""

    project: str
    user: str  #: the pod's ``pds.user`` label ("" when missing or not a label value)
    cluster: str
    pod: str
    uid: str
    container: str
    run: int  #: the container's restart count when the refused run ended
    exit_code: int | None
    message: str  #: the pod's termination message, bounded: only recorded

    def audit_event(self) -> AuditEvent:
        """The hub's ``extract.mount_refused`` entry of this refusal."""
        refusal = ExtractMismatch(self.project, self.pod, {"exitCode": self.exit_code, "message": self.message})
        return refusal.audit_event("hub", workload=WORKER_COMPONENT, cluster=self.cluster, pod_uid=self.uid,
                                   user_label=self.user, container=self.container, restarts=self.run,
                                   checked_at="hub")


def _label(labels: Mapping[str, Any], key: str) -> str | None:
    value = labels.get(key)
    return value if isinstance(value, str) and _LABEL_VALUE.fullmatch(value) else None


def _mounts_claim(pod: Mapping[str, Any], claim: str) -> bool:
    volumes = ((pod.get("spec") or {}).get("volumes")) or []
    return any(isinstance(v, Mapping) and isinstance(v.get("persistentVolumeClaim"), Mapping)
               and v["persistentVolumeClaim"].get("claimName") == claim for v in volumes)


def worker_project(pod: Mapping[str, Any]) -> str | None:
    """The project of ``pod`` (the API's JSON) when it carries every mark of a PDS Dask worker pod
    (module docstring), else None."""
    meta = pod.get("metadata") if isinstance(pod, Mapping) else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return None
    if labels.get(COMPONENT_LABEL) != WORKER_COMPONENT or labels.get(GATEWAY_COMPONENT_LABEL) != WORKER_COMPONENT:
        return None
    if _label(labels, CLUSTER_LABEL) is None:
        return None
    name, uid = meta.get("name"), meta.get("uid")
    if not (isinstance(name, str) and _POD_NAME.fullmatch(name) and isinstance(uid, str) and _UID.fullmatch(uid)):
        return None
    try:
        claim = extract_volume_name(labels.get(PROJECT_LABEL))
    except InvalidInput:
        return None
    return labels[PROJECT_LABEL] if _mounts_claim(pod, claim) else None


def refused_workers(pod_list: Mapping[str, Any]) -> list[WorkerRefusal]:
    """The refusals of the Dask worker pods in ``pod_list`` (a ``PodList``, the API's JSON): one per
    pod whose ``verify-extract`` container failed or whose worker's start or probe refused the extract
    (:func:`~pds_kernel.k8s.pod_status.extract_refusal`), in the list's order."""
    items = pod_list.get("items") if isinstance(pod_list, Mapping) else None
    found = []
    for pod in items if isinstance(items, list) else []:
        project = worker_project(pod)
        refusal = extract_refusal(pod) if project is not None else None
        if refusal is None or refusal.container not in (EXTRACT_CHECK_CONTAINER, DASK_WORKER_CONTAINER):
            continue
        meta, labels = pod["metadata"], pod["metadata"]["labels"]
        mismatch = ExtractMismatch(project, meta["name"], refusal.terminated)
        found.append(WorkerRefusal(project=project, user=_label(labels, USER_LABEL) or "",
                                   cluster=labels[CLUSTER_LABEL], pod=meta["name"], uid=meta["uid"],
                                   container=refusal.container, run=refusal.run, exit_code=mismatch.exit_code,
                                   message=clean_message(mismatch.pod_message)))
    return found


def listed_uids(pod_list: Mapping[str, Any]) -> set[str]:
    """The uid of every pod in ``pod_list`` (what the hub still remembers of refusals it audited)."""
    items = pod_list.get("items") if isinstance(pod_list, Mapping) else None
    uids = set()
    for pod in items if isinstance(items, list) else []:
        meta = pod.get("metadata") if isinstance(pod, Mapping) else None
        uid = meta.get("uid") if isinstance(meta, Mapping) else None
        if isinstance(uid, str):
            uids.add(uid)
    return uids
