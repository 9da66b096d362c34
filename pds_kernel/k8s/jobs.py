"""The gate's short Jobs (a model check, a cohort link): their common isolation, and running one.

:func:`isolated_job` writes what every such Job shares: the project's labels (so the project's
default-deny NetworkPolicy applies and nothing opens egress), no service-account token, no service
links, no host namespaces, no DNS resolver, the restricted pod and container security contexts,
an ``ephemeral-storage`` limit (its emptyDirs, each of which must have a size, and its log:
:mod:`.storage`), no retry, a deadline, and a time to live after it ends. The caller gives the container's image,
command, environment, resources and mounts, and the volumes.

:func:`run_job` runs one to its end and reads its pod's log:

Create the Job, poll it until it succeeds or fails (or a wait limit passes), read at most
``limit_bytes`` of its pod's log, and delete the Job whatever happened. A pod that cannot start
(a sub-path that does not exist, an image that cannot be pulled) is reported at once with the
kubelet's reason instead of waiting for the Job's deadline; so is a pod whose ``verify-extract``
init container refused the extract (:attr:`JobOutcome.extract_refused`: the caller refuses what
the Job was for, :mod:`.pod_status`).

The gate's service account needs create/get/delete on Jobs, list on Pods and get on ``pods/log``
in its namespace (the chart's ``pds-airlock`` Role); nothing else.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .config import K8sConfig
from .pod_status import failed_extract_check
from .pods import COMPONENT_LABEL, PROJECT_LABEL, build_container_security_context, build_pod_security_context
from .storage import with_ephemeral_storage

#: kubelet reasons that mean a pod will never start on its own
STUCK_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "ErrImagePull",
                           "ImagePullBackOff", "InvalidImageName", "RunContainerError"})
#: seconds the gate waits beyond the Job's own deadline (scheduling, image pulls)
SCHEDULING_SLACK = 120
#: seconds a finished Job is kept if the gate could not delete it
TTL_AFTER_FINISHED = 600


def isolated_job(cfg: K8sConfig, *, name: str, project: str, component: str, container: dict[str, Any],
                 volumes: list[dict[str, Any]], timeout_seconds: int,
                 init_containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A batch/v1 Job of ``project`` running ``container`` (after ``init_containers`` when given:
    each runs to its end first, in order); their ``securityContext`` and ``ephemeral-storage`` are
    set here."""
    labels = {PROJECT_LABEL: project, COMPONENT_LABEL: component}

    def confined(one: dict[str, Any]) -> dict[str, Any]:
        # what it may write on the node: its emptyDirs (each with a size) and its log
        return {**one, "securityContext": build_container_security_context(cfg),
                "resources": with_ephemeral_storage(one.get("resources"), volumes)}

    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False, "hostPID": False, "hostIPC": False, "shareProcessNamespace": False,
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["127.0.0.1"], "searches": [], "options": [{"name": "ndots", "value": "0"}]},
        # OnRootMismatch: the kubelet does not re-own a whole writable claim (staging) at every Job,
        # which would make the staged files (0444) group-writable; its root is already the gate's
        "securityContext": {**build_pod_security_context(cfg), "fsGroupChangePolicy": "OnRootMismatch"},
        "containers": [confined(container)],
        "volumes": volumes,
    }
    if init_containers:
        pod_spec["initContainers"] = [confined(one) for one in init_containers]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": dict(labels)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(timeout_seconds),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True)
class JobOutcome:
    log: str | None  #: the pod's log (bounded), None when none could be read
    succeeded: bool
    problem: str | None  #: why there is no usable outcome, for the user
    #: the ``terminated`` state of the pod's ``verify-extract`` container when it refused the extract
    extract_refused: dict[str, Any] | None = None


async def load_client_config() -> None:
    from kubernetes_asyncio import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()


def _stuck(pods) -> str | None:
    for pod in pods:
        statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])] \
            if pod.status else []
        for status in statuses:
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason in STUCK_REASONS:
                return f"{waiting.reason}: {(waiting.message or '')[:200]}"
    return None


def _extract_refused(api, pods) -> JobOutcome | None:
    """The outcome of a Job whose pod's ``verify-extract`` container refused the extract, if one did
    (``pods``: as the API client lists them; read as the API server's JSON)."""
    for pod in pods:
        terminated = failed_extract_check(api.sanitize_for_serialization(pod))
        if terminated is not None:
            return JobOutcome(None, False, "the Job's pod refused the project's extract", extract_refused=terminated)
    return None


async def run_job(manifest: dict[str, Any], *, container: str, timeout: int, limit_bytes: int,
                  poll_seconds: float = 2.0) -> JobOutcome:
    """Run ``manifest`` (a batch/v1 Job) to its end; the Job is always deleted."""
    from kubernetes_asyncio import client

    await load_client_config()
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    selector = f"job-name={name}"
    async with client.ApiClient() as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        await batch.create_namespaced_job(namespace, manifest)
        try:
            limit = time.monotonic() + timeout + SCHEDULING_SLACK
            while True:
                status = (await batch.read_namespaced_job(name, namespace)).status
                if status.succeeded or status.failed:
                    break
                pods = (await core.list_namespaced_pod(namespace, label_selector=selector)).items
                if refused := _extract_refused(api, pods):
                    return refused
                stuck = _stuck(pods)
                if stuck:
                    return JobOutcome(None, False, f"the Job's pod cannot start ({stuck})")
                if time.monotonic() > limit:
                    return JobOutcome(None, False, f"the Job did not finish within {timeout} s")
                await asyncio.sleep(poll_seconds)
            pods = (await core.list_namespaced_pod(namespace, label_selector=selector)).items
            if not pods:
                return JobOutcome(None, False, "the Job's pod is gone")
            if refused := _extract_refused(api, pods):
                return refused
            log = await core.read_namespaced_pod_log(pods[0].metadata.name, namespace, container=container,
                                                     limit_bytes=limit_bytes)
            return JobOutcome(log, bool(status.succeeded), None)
        finally:
            await batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
