"""The hub's reader of Dask worker pods that refused their extract (pds_kernel.k8s.worker_refusals),
on pods made by dask-gateway's own controller and statuses built from kubernetes_asyncio's models."""

from __future__ import annotations

import pytest

from pds_kernel.k8s.pod_status import MISMATCH, extract_refusal, failed_extract_check
from pds_kernel.k8s.worker_refusals import listed_uids, refused_workers, worker_project
from tests.k8s.api_stand_in import container_status, pod_json, terminated, waiting
from tests.k8s.dask_worker_pods import (
    CHECK_REFUSAL,
    CLUSTER,
    PROBE_REFUSAL,
    START_REFUSAL,
    check_refused,
    checked,
    listed_worker,
    start_refused,
    worker_manifest,
    worker_running,
)

UIDS = [f"{i:08x}-1d2a-4e5f-9a8b-7c6d5e4f3a2b" for i in range(1, 8)]


@pytest.fixture
def manifest(runtime, registry) -> dict:
    return worker_manifest(runtime)


def _refusals(*pods) -> list:
    return refused_workers({"kind": "PodList", "items": list(pods)})


def test_a_refused_init_container_is_read_with_its_pod_and_cluster(manifest):
    pod = listed_worker(manifest, "a1b2c", UIDS[0], "Pending", [check_refused(restarts=3)], [])
    (refusal,) = _refusals(pod)
    assert (refusal.project, refusal.user, refusal.cluster) == ("alpha-study", "alice", CLUSTER)
    assert (refusal.pod, refusal.uid) == (f"dask-worker-{CLUSTER}-a1b2c", UIDS[0])
    assert (refusal.container, refusal.run, refusal.exit_code, refusal.message) == ("verify-extract", 2, 1, CHECK_REFUSAL)
    entry = refusal.audit_event()
    assert (entry.action, entry.actor, entry.project, entry.target) == (
        "extract.mount_refused", "hub", "alpha-study", "project:alpha-study")
    assert entry.details["workload"] == "dask-worker" and entry.details["cluster"] == CLUSTER
    assert entry.details["pod_uid"] == UIDS[0] and entry.details["reason"] == MISMATCH


def test_a_refused_checked_start_is_read(manifest):
    pod = listed_worker(manifest, "d3e4f", UIDS[1], "Running", [checked()], [start_refused(restarts=2)])
    (refusal,) = _refusals(pod)
    assert (refusal.container, refusal.run, refusal.exit_code, refusal.message) == ("dask-worker", 1, 3, START_REFUSAL)


def test_a_run_is_the_same_whether_seen_as_it_ends_or_after_its_restart(manifest):
    """The kubelet shows an ended run as ``state`` at count n, then as ``lastState`` at n + 1."""
    ending = listed_worker(manifest, "d3e4f", UIDS[1], "Running", [checked()], [start_refused(1, ended_now=True)])
    restarted = listed_worker(manifest, "d3e4f", UIDS[1], "Running", [checked()], [start_refused(2)])
    assert _refusals(ending)[0].run == _refusals(restarted)[0].run == 1


def test_a_probe_kill_is_read_before_the_restart_refuses(manifest):
    """The liveness probe writes its refusal in /dev/termination-log; the kubelet then kills the
    worker (exit 137): the status shows the kill with the probe's message."""
    killed = container_status("dask-worker", terminated(137, PROBE_REFUSAL), restarts=0)
    pod = listed_worker(manifest, "g5h6i", UIDS[2], "Running", [checked()], [killed])
    (refusal,) = _refusals(pod)
    assert (refusal.container, refusal.run, refusal.exit_code, refusal.message) == ("dask-worker", 0, 137, PROBE_REFUSAL)
    assert failed_extract_check(pod)["exitCode"] == 137  # the workspace's reader sees it too


def test_a_kill_without_the_refusal_is_none(manifest):
    """Control: a worker killed for its memory (OOMKilled, no message) refused nothing."""
    oom = container_status("dask-worker", waiting("CrashLoopBackOff"),
                           last_state=terminated(137, reason="OOMKilled"), restarts=1)
    assert not _refusals(listed_worker(manifest, "j7k8l", UIDS[3], "Running", [checked()], [oom]))
    assert extract_refusal(listed_worker(manifest, "j7k8l", UIDS[3], "Running", [checked()], [oom])) is None


def test_a_healthy_worker_is_none(manifest):
    pod = listed_worker(manifest, "m9n0p", UIDS[4], "Running", [checked()], [worker_running()])
    assert _refusals(pod) == [] and worker_project(pod) == "alpha-study"


def test_a_notebook_pod_and_other_components_are_ignored(manifest):
    notebook = pod_json("jupyter-alice--alpha-study", "pds", "Running", [checked()],
                        [container_status("notebook", waiting("CrashLoopBackOff"),
                                          last_state=terminated(3, START_REFUSAL), restarts=1)],
                        labels={"pds.project": "alpha-study", "pds.user": "alice", "pds.component": "workspace"})
    assert failed_extract_check(notebook) is not None  # refused, but the spawner's to report
    scheduler = listed_worker(manifest, "q1r2s", UIDS[5], "Pending", [check_refused(1)], [])
    scheduler["metadata"]["labels"] = {**scheduler["metadata"]["labels"], "pds.component": "dask-scheduler",
                                       "app.kubernetes.io/component": "dask-scheduler"}
    assert _refusals(notebook, scheduler) == []


def test_list_of_several_keeps_each_refusal_and_every_uid(manifest):
    pods = [listed_worker(manifest, "a1b2c", UIDS[0], "Pending", [check_refused(1)], []),
            listed_worker(manifest, "m9n0p", UIDS[4], "Running", [checked()], [worker_running()]),
            listed_worker(manifest, "d3e4f", UIDS[1], "Running", [checked()], [start_refused(1)])]
    assert [r.uid for r in _refusals(*pods)] == [UIDS[0], UIDS[1]]
    assert listed_uids({"items": pods}) == {UIDS[0], UIDS[1], UIDS[4]}


@pytest.mark.parametrize("answer", [None, [], "items", {"items": "x"}, {"items": [None, 3, {"metadata": 1}]}])
def test_answers_that_are_no_list_of_pods_give_nothing(answer):
    assert refused_workers(answer) == [] and listed_uids(answer) == set()


@pytest.mark.parametrize("status", [3, {"containerStatuses": "x"}, {"containerStatuses": [{"name": "dask-worker",
                                    "state": 7, "lastState": {"terminated": "x"}}]}])
def test_statuses_of_the_wrong_shape_are_no_refusal(manifest, status):
    pod = listed_worker(manifest, "a1b2c", UIDS[0], "Pending", [], [])
    assert _refusals({**pod, "status": status}) == []


def test_the_hub_lists_with_kubespawners_namespace_and_client_settings():
    """The hub's check reads KubeSpawner's settings as traitlets does (the spawner class's sections,
    the subclass's winning): the namespace z2jh sets, the API server an administrator may set."""
    from types import SimpleNamespace

    from traitlets.config import Config

    from pds_kernel.hub.kube_spawner import PdsKubeSpawner
    from pds_kernel.hub.worker_watch import spawner_settings

    c = Config()
    c.KubeSpawner.namespace = "pds"
    c.KubeSpawner.k8s_api_host = "https://kube.example.org:6443"
    c.PdsKubeSpawner.k8s_api_host = "https://api.example.org:6443"
    namespace, client = spawner_settings(SimpleNamespace(spawner_class=PdsKubeSpawner, config=c))
    assert namespace == "pds"
    assert client == {"host": "https://api.example.org:6443", "ssl_ca_cert": "", "verify_ssl": None}
