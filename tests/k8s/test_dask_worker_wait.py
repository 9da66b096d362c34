"""A workspace's ``dask_client()`` on Kubernetes whose cluster gets no worker: it stops waiting and
says why, through the real ``dask-gateway-server`` behind the real JupyterHub.

The workers are started as a worker pod's container starts them (:data:`pds_kernel.k8s.pods.CHECKED_START`
then dask-gateway's worker command) by dask-gateway's local process backend
(tests/k8s/gateway_processes.py): there is no ``verify-extract`` record in a process, so each worker's
start refuses the extract for real (exit 3), as in a pod whose check failed, and no worker joins.
The hub's audit of such a worker pod is what its worker watch writes
(:func:`pds_kernel.k8s.worker_refusals.refused_workers` on dask-gateway's own pod manifest of that
cluster, as the API server lists it: tests/k8s/dask_worker_pods.py).
"""

from __future__ import annotations

import threading
import time

import dask.config
import pytest

from pds_kernel.dask_workers import DEFAULT_WAIT, NoDaskWorker, explain, wait_seconds
from pds_kernel.k8s.worker_refusals import refused_workers

from .gateway_processes import GatewayWorld, collected_here

pytestmark = [pytest.mark.functional, pytest.mark.slow]

#: each worker started as its pod's container starts it: the checked start first (it refuses here)
CHECKED_WORKERS = '''
from pds_kernel.k8s import gateway as _gateway
from pds_kernel.k8s.pods import CHECKED_START as _CHECKED_START

_overrides = _gateway.cluster_overrides


def _as_in_a_pod(*args, **kwargs):
    overrides = _overrides(*args, **kwargs)
    overrides["worker_cmd"] = [*_CHECKED_START, *overrides["worker_cmd"]]
    return overrides


_gateway.cluster_overrides = _as_in_a_pod
'''
WAIT = 8  #: seconds dask_client waits here


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with GatewayWorld(tmp_path_factory.mktemp("gww"), extra_config=CHECKED_WORKERS) as w:
        yield w


@pytest.fixture(autouse=True)
def _collected_after_each_test():
    with collected_here():
        yield


@pytest.fixture
def workspace(world, monkeypatch):
    """alice's alpha-study workspace's environment, as her pod has it."""
    monkeypatch.setenv("DASK_GATEWAY__ADDRESS", world.gateway.address)
    monkeypatch.setenv("DASK_GATEWAY__PROXY_ADDRESS", f"gateway://{world.gateway.proxy_tcp}")
    monkeypatch.setenv("DASK_GATEWAY__AUTH__TYPE", "jupyterhub")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", world.token("alice", "alpha-study"))
    monkeypatch.setenv("JUPYTERHUB_API_URL", world.hub.hub.api_url)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice@alpha-study")  # its workspace user (ADR 17)
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "alpha-study")
    monkeypatch.setenv("PDS_PROJECT", "alpha-study")
    dask.config.refresh()
    yield world
    monkeypatch.undo()
    dask.config.refresh()


def _hub_audits_refused_workers_of_new_clusters(world, stop: threading.Event) -> threading.Thread:
    """The hub's worker watch, meanwhile: each new cluster's worker pod, listed refused, audited."""
    from tests.k8s.dask_worker_pods import checked as check_passed
    from tests.k8s.dask_worker_pods import listed_worker, start_refused, worker_manifest

    before = set(world.gateway.cluster_rows())

    def watch():
        while not stop.is_set():
            for name in set(world.gateway.cluster_rows()) - before:
                pod = listed_worker(worker_manifest(world.runtime, cluster=name), "a1b2c",
                                    "3c1d5e7f-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "Running", [check_passed()],
                                    [start_refused(1)])
                for refusal in refused_workers({"kind": "PodList", "items": [pod]}):
                    world.runtime.audit.record(refusal.audit_event())
                before.add(name)
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_no_worker_and_no_refusal_names_the_likely_causes(workspace, capsys):
    from pds_kernel import workspace as ws

    start = time.monotonic()
    with pytest.raises(NoDaskWorker) as raised:
        ws.dask_client(1, wait=WAIT)
    assert time.monotonic() - start < WAIT + 30
    message = str(raised.value)
    assert f"within {WAIT} s; the cluster was shut down" in message
    assert "The hub recorded no refusal of the project's extract" in message
    assert "dask_client(workers=1)" in message
    assert "pds audit show --project alpha-study --action extract.mount_refused" in message
    assert f"Waiting up to {WAIT} s for the first worker of Dask cluster" in capsys.readouterr().out
    with workspace.gateway.client(workspace.token("alice", "alpha-study")) as gw:
        assert gw.list_clusters() == []  # shut down, not left running
    (asked,) = workspace.runtime.audit.entries(action="dask.cluster.refusals")
    assert (asked.actor, asked.project, asked.details["refused"]) == ("alice", "alpha-study", False)


def test_a_refusal_the_hub_audited_is_named(workspace):
    from pds_kernel import workspace as ws

    stop = threading.Event()
    watcher = _hub_audits_refused_workers_of_new_clusters(workspace, stop)
    try:
        with pytest.raises(NoDaskWorker) as raised:
            ws.dask_client(1, wait=WAIT)
    finally:
        stop.set()
        watcher.join(10)
    message = str(raised.value)
    assert "Its worker pods refused the project's extract (the hub recorded it at 20" in message
    assert "the project's extract does not match its publication" in message
    assert "This is not a lack of capacity" in message
    assert "re-publish it (pds extract build)" not in message  # the pod's own message stays in the audit trail
    assert workspace.runtime.audit.entries(action="dask.cluster.refusals")[-1].details["refused"] is True


def test_the_wait_is_bounded_and_configurable():
    assert wait_seconds({}) == DEFAULT_WAIT == 120
    assert wait_seconds({"PDS_DASK_WORKER_WAIT_SECONDS": "300"}) == 300
    assert [wait_seconds({"PDS_DASK_WORKER_WAIT_SECONDS": v}) for v in ("0", "-1", "1e9", "nan", "soon")] == [120] * 5
    told = explain("c1", 120, "alpha-study", None, "URLError: refused")
    assert "The hub could not be asked whether its worker pods refused the project's extract (URLError" in told
