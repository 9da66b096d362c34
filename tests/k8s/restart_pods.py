"""A workspace pod as KubeSpawner's reflector holds it after its notebook container ended: the
manifest KubeSpawner's own pod generation made with the PDS hooks, and the status the API server
reports (kubernetes_asyncio's models, :mod:`tests.k8s.api_stand_in`), for the tests of
:mod:`pds_kernel.k8s.restarts` and of the hub's poll."""

from __future__ import annotations

from pds_kernel.audit import AuditTrail

from .api_stand_in import POD_UID, container_status, pod_json, running, terminated, waiting
from .pod_cache import pods_seen_by
from .test_spawner import make_spawner, spawn_manifest


def reflected(manifest: dict, status: dict) -> dict:
    """The pod as KubeSpawner's reflector holds it: the manifest the hub sent, with ``status``'s
    (a pod as the API server reports it) metadata and status."""
    meta = {**status["metadata"], "annotations": manifest["metadata"].get("annotations") or {}}
    return {**status, "metadata": meta, "spec": manifest["spec"]}


def notebook_pod(spawner, manifest: dict, notebook, uid: str = POD_UID) -> dict:
    """alice's pod, its ``verify-extract`` passed, its notebook container's status ``notebook``."""
    return reflected(manifest, pod_json(spawner.pod_name, "pds", "Running",
                                        [container_status("verify-extract", terminated(0, reason="Completed"))],
                                        [notebook], pod_ip="10.0.0.7", labels={"component": "singleuser-server"},
                                        uid=uid))


def restarted(restarts: int, ended, *, back_off: bool = False):
    """The notebook's status once the kubelet restarted it ``restarts`` times, the last run ``ended``
    (running again, or waiting in its back-off)."""
    state = waiting("CrashLoopBackOff") if back_off else running()
    return container_status("notebook", state, last_state=ended, restarts=restarts, ready=not back_off)


def oom(at: str = "2026-03-01T10:05:00Z"):
    return terminated(137, reason="OOMKilled", finished_at=at)


def killed(code: int = 137, message: str = ""):
    """Killed by the kubelet (its liveness probe failed): the signal's exit code, ``message`` if
    the container wrote one."""
    return terminated(code, message, reason="Error", finished_at="2026-03-01T10:05:00Z")


def entries(runtime, action: str | None) -> list:
    """The audit trail's entries of ``action`` (every entry: None)."""
    return [e for e in AuditTrail(runtime.sessions).entries() if action is None or e.action == action]


async def started_alice(settings):
    """alice's alpha-study spawner, as the hub has it once it saw her server start, and its pod's
    manifest."""
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner.restart_log.reset()  # the hub saw the server start
    return spawner, await spawn_manifest(spawner)


async def poll_seeing(spawner, pod):
    """The spawner's poll while its reflector holds ``pod``."""
    with pods_seen_by(spawner, pod):
        return await spawner.poll()
