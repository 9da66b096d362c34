"""Dask worker pods as dask-gateway's controller makes them and the API server lists them.

:func:`worker_manifest` is dask-gateway's own ``KubeController.make_pod`` on the overrides the
gateway's cluster options give a member's project (:func:`pds_kernel.k8s.gateway.cluster_overrides`);
:func:`listed_worker` is that pod as the API server lists it once created: named from its
``generateName``, with a uid and a status built from ``kubernetes_asyncio``'s own models
(:func:`tests.k8s.api_stand_in.pod_json`).
"""

from __future__ import annotations

from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User

from tests.k8s.api_stand_in import container_status, pod_json, running, terminated, waiting
from tests.k8s.test_gateway import options_for

NAMESPACE = "pds"
#: a cluster's name as dask-gateway makes it (a uuid4's hex)
CLUSTER = "5f1c2b3a4d5e6f708192a3b4c5d6e7f8"
#: what a worker's start (or its liveness probe) writes in /dev/termination-log (pds_kernel.extract.tree)
START_REFUSAL = ("the project's extract is refused: /data is not the tree its pod's verify-extract container "
                 "checked; the data manager must re-publish it (pds extract build)")
PROBE_REFUSAL = ("the project's extract is refused: it changed while the workspace ran: /data is not the tree "
                 "its pod's verify-extract container checked at the start; the data manager must re-publish it "
                 "(pds extract build)")
CHECK_REFUSAL = "extract mismatch: ER_PRS_F.parquet: size 812 != 790 recorded at publication"


def worker_manifest(runtime, user: str = "alice", project: str = "alpha-study", cluster: str = CLUSTER) -> dict:
    """The worker pod dask-gateway's controller creates for ``user``'s cluster of ``project``."""
    _, overrides = options_for(runtime, User(f"{user}/{project}", groups=[project]), {"project": project})
    controller = KubeController(gateway_instance="dask-gateway", api_url="http://api-dask-gateway.pds:8000/api")
    return controller.make_pod(NAMESPACE, cluster, KubeClusterConfig(**overrides), is_worker=True)


def listed_worker(manifest: dict, suffix: str, uid: str, phase: str, init: list, containers: list) -> dict:
    """``manifest`` as the API server lists it: name, uid, the given container statuses."""
    name = manifest["metadata"]["generateName"] + suffix
    status = pod_json(name, NAMESPACE, phase, init, containers, uid=uid)
    meta = {k: v for k, v in manifest["metadata"].items() if k != "generateName"}
    return {**manifest, "metadata": {**meta, "name": name, "namespace": NAMESPACE, "uid": uid},
            "status": status["status"]}


def checked(restarts: int = 0):
    """``verify-extract`` as it ends when it accepted the extract."""
    return container_status("verify-extract", terminated(0, reason="Completed"), restarts=restarts)


def check_refused(restarts: int):
    """``verify-extract`` refused the extract ``restarts + 1`` times; the kubelet backs off."""
    return container_status("verify-extract", waiting("CrashLoopBackOff"),
                            last_state=terminated(1, CHECK_REFUSAL), restarts=restarts)


def start_refused(restarts: int, *, ended_now: bool = False, message: str = START_REFUSAL):
    """The worker's start refused ``/data``: seen as it ends (``ended_now``, the count not yet raised)
    or once the kubelet restarted it (``lastState``)."""
    if ended_now:
        return container_status("dask-worker", terminated(3, message), restarts=restarts)
    return container_status("dask-worker", waiting("CrashLoopBackOff"), last_state=terminated(3, message),
                            restarts=restarts)


def worker_running(restarts: int = 0):
    return container_status("dask-worker", running(), restarts=restarts, ready=True)
