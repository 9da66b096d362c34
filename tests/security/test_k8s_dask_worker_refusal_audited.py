"""Red team: on Kubernetes, a Dask worker pod refuses its extract and nobody hears of it.

A worker pod (dask-gateway's controller makes it from the gateway's overrides) runs
``verify-extract``, starts its worker through ``pds_kernel.extract.checked_start`` and carries the
``pod_watch`` liveness probe. When any of them refuses the extract the kubelet restarts it with a
back-off and the researcher's cluster gets no worker. Before: nothing read those pods' statuses,
so the refusal was never audited (docs/projects-and-extracts.md, "What stays open"). Now the hub,
whose Role reads pods in its namespace, lists the worker pods every ``hub.membership_check_seconds``
and audits each refused run once (:mod:`pds_kernel.hub.worker_watch`).

The hub is the real JupyterHub in Kubernetes mode (tests/k8s/k8s_hub.py) with its watchers running;
it lists pods with the real ``kubernetes_asyncio`` client (KubeSpawner's shared client) from a
loopback stand-in of the API server (:class:`tests.k8s.api_stand_in.PodsApi`) named by the kubeconfig;
the worker pods are dask-gateway's own manifests (:mod:`tests.k8s.dask_worker_pods`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

import pytest
import pytest_asyncio
from kubespawner.clients import load_config

from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.k8s import dask_worker_pods as statuses
from tests.k8s.api_stand_in import PodsApi, container_status, pod_json, terminated
from tests.k8s.conftest import two_projects
from tests.k8s.dask_worker_pods import CLUSTER, NAMESPACE, START_REFUSAL, listed_worker, worker_manifest
from tests.k8s.k8s_hub import Hub, start_hub, start_notebook_stand_in, start_proxy, stop_watched_hub

pytestmark = pytest.mark.asyncio

INTERVAL = 0.3  #: seconds between the hub's passes here (10 by default)
UID, OTHER_UID = "3c1d5e7f-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "4d2e6f80-1d2a-4e5f-9a8b-7c6d5e4f3a2b"


@dataclass
class World:
    hub: Hub
    registry: Registry
    runtime: Runtime
    api: PodsApi
    manifest: dict  #: alice's alpha-study worker as dask-gateway's controller makes it

    def refusals(self) -> list:
        return self.runtime.audit.entries(action="extract.mount_refused")

    async def passes(self, count: int) -> None:
        """Wait until the hub started ``count`` more listings: every one before the last has ended."""
        target = len(self.api.requests) + count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + count * INTERVAL * 20 + 10
        while len(self.api.requests) < target:
            assert loop.time() < deadline, "the hub stopped listing the worker pods"
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def world(settings, tmp_path, monkeypatch):
    settings = replace(settings, hub=replace(settings.hub, membership_check_seconds=INTERVAL))
    runtime = Runtime(settings)
    registry = two_projects(Registry.from_runtime(runtime))
    api = PodsApi(NAMESPACE).__enter__()
    api.kubeconfig(tmp_path, monkeypatch)
    load_config.cache_clear()  # KubeSpawner loads its client's configuration once per process
    notebook, notebook_url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, notebook_url,
                                           namespace=NAMESPACE)
    proxy = start_proxy(app)
    try:
        yield World(Hub(app, api_url, app.services), registry, runtime, api, worker_manifest(runtime))
    finally:
        await stop_watched_hub(app, server, proxy, notebook)
        api.__exit__(None, None, None)
        runtime.close()
        load_config.cache_clear()


async def test_a_refused_worker_is_audited_within_a_pass(world, caplog):
    """Before: never audited. Now: at the first pass that lists it, once, with its pod and cluster."""
    caplog.set_level(logging.WARNING, logger="pds_kernel.hub.worker_watch")
    refused = listed_worker(world.manifest, "a1b2c", UID, "Pending", [statuses.check_refused(restarts=2)], [])
    healthy = listed_worker(world.manifest, "d3e4f", OTHER_UID, "Running", [statuses.checked()], [statuses.worker_running()])
    world.api.pods = [refused, healthy]
    await world.passes(2)
    (entry,) = world.refusals()
    assert (entry.actor, entry.project, entry.outcome) == ("hub", "alpha-study", "denied")
    details = entry.details
    assert details["workload"] == "dask-worker" and details["cluster"] == CLUSTER
    assert (details["pod"], details["pod_uid"]) == (f"dask-worker-{CLUSTER}-a1b2c", UID)
    assert (details["container"], details["exit_code"], details["user_label"]) == ("verify-extract", 1, "alice")
    assert details["pod_message"].startswith("extract mismatch")
    assert "refused the project's extract" in caplog.text and f"dask-worker-{CLUSTER}-a1b2c" in caplog.text
    # what it asked: KubeSpawner's namespace, the worker pods only
    assert world.api.requests[0].startswith(f"/api/v1/namespaces/{NAMESPACE}/pods?")
    assert "labelSelector=pds.component%3Ddask-worker" in world.api.requests[0]


async def test_the_same_refusal_is_audited_once_per_run(world):
    """A crash-looping worker is listed at every pass: one entry per refused run, not per pass."""
    world.api.pods = [listed_worker(world.manifest, "a1b2c", UID, "Running", [statuses.checked()],
                                    [statuses.start_refused(1, ended_now=True)])]
    await world.passes(4)
    assert len(world.refusals()) == 1
    # the kubelet restarted it: the same run, now its lastState
    world.api.pods = [listed_worker(world.manifest, "a1b2c", UID, "Running", [statuses.checked()], [statuses.start_refused(2)])]
    await world.passes(4)
    assert len(world.refusals()) == 1
    # its next run refused again: a new entry
    world.api.pods = [listed_worker(world.manifest, "a1b2c", UID, "Running", [statuses.checked()], [statuses.start_refused(3)])]
    await world.passes(2)
    assert [e.details["restarts"] for e in world.refusals()] == [1, 2]
    # the pod gone: nothing kept of it
    world.api.pods = []
    await world.passes(2)
    assert world.hub.app.authenticator._worker_watch._audited == {}


async def test_forged_labels_and_a_huge_message_cannot_inject(world):
    """Pods that carry the worker's label but are not its pods, or name another project than the
    claim they mount, are not audited; a genuine worker's 1 MB termination message of forged
    lines, and an oversized user label, are cut down to what the entry keeps."""
    forged_message = ('"}\n{"action": "extract.publish", "project": "beta-study"}\r\n' * 20_000)[:1_000_000]
    fake = pod_json("not-a-worker", NAMESPACE, "Pending", [statuses.check_refused(1)], [], uid=OTHER_UID,
                    labels={"pds.component": "dask-worker", "pds.project": "beta-study", "pds.user": "alice"})
    relabelled = listed_worker(world.manifest, "g5h6i", "5e3f7091-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "Pending",
                               [statuses.check_refused(1)], [])
    relabelled["metadata"]["labels"] = {**relabelled["metadata"]["labels"], "pds.project": "beta-study"}
    bad_name = listed_worker(world.manifest, "j7k8l", "6f408102-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "Pending",
                             [statuses.check_refused(1)], [])
    bad_name["metadata"]["labels"] = {**bad_name["metadata"]["labels"], "pds.project": "alpha-study\nbeta-study"}
    genuine = listed_worker(world.manifest, "m9n0p", UID, "Running", [statuses.checked()],
                            [container_status("dask-worker", terminated(3, START_REFUSAL + forged_message), restarts=0)])
    genuine["metadata"]["labels"] = {**genuine["metadata"]["labels"], "pds.user": "x" * 300}
    world.api.pods = [fake, relabelled, bad_name, genuine]
    await world.passes(2)
    (entry,) = world.refusals()
    assert entry.project == "alpha-study" and entry.details["pod_uid"] == UID
    message = entry.details["pod_message"]
    assert len(message) <= 400 and "\n" not in message and "\r" not in message
    assert entry.details["user_label"] == ""
    assert not world.runtime.audit.entries(project="beta-study", action="extract.mount_refused")
    assert world.runtime.audit.verify().ok


async def test_the_api_refusing_does_not_stop_the_membership_checks(world, caplog):
    """A Role without pods (403): said once in the log, retried at every pass; the same passes
    still stop a workspace whose membership was removed; once the API answers, the refusal is audited."""
    caplog.set_level(logging.WARNING, logger="pds_kernel.hub.worker_watch")
    world.api.refuse = 403
    world.api.pods = [listed_worker(world.manifest, "a1b2c", UID, "Pending", [statuses.check_refused(1)], [])]
    alice = world.hub.sign_in("alice", ["alpha-study"])
    await world.hub.start_server(alice, "alpha-study")
    spawner = world.hub.workspace_user(alice, "alpha-study").spawners["alpha-study"]
    world.registry.remove_member("admin", "alpha-study", "alice")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20 * INTERVAL + 5
    while spawner.active and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert not spawner.active
    await world.passes(3)
    assert not world.refusals()
    assert caplog.text.count("cannot list the Dask worker pods") == 1 and "403" in caplog.text
    world.api.refuse = None
    await world.passes(2)
    assert len(world.refusals()) == 1
