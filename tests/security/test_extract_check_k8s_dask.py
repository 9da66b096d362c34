"""Attacks on the window between a Dask worker pod's ``verify-extract`` init container and its worker
(ADR 0011). The worker pod is made by dask-gateway's own code (``KubeController.make_pod``) from the
overrides the gateway's cluster options give (:func:`pds_kernel.k8s.gateway.cluster_overrides`); its
init container's exact command runs for real on a claim laid out by a publication (bubblewrap, the
claim's ``extract`` sub-path bound at ``/data`` as the kubelet binds it when each container starts);
then the claim changes (the ``extract`` link re-pointed to a faithful copy of the build, a file
replaced, an extra file, a file made a link), and the worker container's start runs on what the
kubelet would then mount.

The worker's own arguments are dask-gateway's (``dask worker tls://<scheduler> ...``): here they are
replaced by a stand-in that says it started (a real worker would dial the scheduler), after the
container's ``command``, which is what is tested. Before: the worker container had no command of its
own, so the stand-in (the worker) ran on the changed extract.
"""

from __future__ import annotations

import sys

import polars as pl
import pytest
from extract_check_k8s_support import TAMPERS, bwrap_available, check_then_change, run_init_container
from published import publish_by_hand

from pds_kernel.k8s.pod_status import failed_extract_check
from pds_kernel.registry import Registry
from tests.k8s.api_stand_in import container_status, pod_json, terminated, waiting
from tests.k8s.conftest import two_projects
from tests.k8s.dask_worker_pods import worker_manifest
from tests.k8s.test_extract_mount_k8s import _run_as_kubelet

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap runs the pod's containers")

STAND_IN = [sys.executable, "-I", "-c", "print('worker started')"]


def _published_claim(settings, runtime):
    two_projects(Registry.from_runtime(runtime))
    claim = settings.paths.projects / "alpha-study"  # laid out as the extract-alpha-study claim
    (claim / "extract").mkdir(parents=True)
    pl.DataFrame({"PERSON_ID": ["a", "b"], "n": [1, 2]}).write_parquet(claim / "extract" / "ER_PRS_F.parquet")
    return claim, publish_by_hand(runtime, "alpha-study")


def _start_worker(pod: dict, claim, record, monkeypatch):
    """The worker container's start as the kubelet runs it (its ``command``, if any, then its
    arguments: here :data:`STAND_IN`), its environment's ``$PDS_EXTRACT_CHECKED``, its mounts."""
    (worker,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    if "PDS_EXTRACT_CHECKED" in env:
        monkeypatch.setenv("PDS_EXTRACT_CHECKED", env["PDS_EXTRACT_CHECKED"])
    command = worker.get("command") or []
    argv = [sys.executable, *command[1:], *STAND_IN] if command else STAND_IN
    return _run_as_kubelet(worker, claim, record, argv=argv)


@pytest.mark.parametrize("how", ["repoint", *sorted(TAMPERS)])
def test_dask_worker_does_not_start_on_an_extract_changed_after_its_init_container(settings, runtime, tmp_path,
                                                                                 monkeypatch, how):
    claim, build = _published_claim(settings, runtime)
    pod = worker_manifest(runtime, cluster="c1")
    record = tmp_path / "extract-check"  # the pod's emptyDir
    check_then_change(pod["spec"], claim, build, record, how)
    done = _start_worker(pod, claim, record, monkeypatch)
    assert "worker started" not in done.stdout  # before: the worker ran on the changed extract
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not the one its pod's verify-extract container checked" in done.stderr
    # what the worker pod's status then says (restartPolicy OnFailure: the kubelet restarts it);
    # the platform's reader of pod statuses reads it as a refused extract (nothing in dask-gateway
    # reads it: docs/projects-and-extracts.md, "What stays open")
    status = pod_json("dask-worker-c1-x7k2p", "pds", "Running",
                      [container_status("verify-extract", terminated(0, reason="Completed"))],
                      [container_status("dask-worker", waiting("CrashLoopBackOff"), restarts=1,
                                        last_state=terminated(done.returncode, done.stderr.strip()))])
    assert failed_extract_check(status)["exitCode"] == 3


def test_dask_worker_starts_on_the_extract_its_init_container_checked(settings, runtime, tmp_path, monkeypatch):
    """The control: the untouched claim; the start execs the worker's own arguments, unchanged."""
    claim, _ = _published_claim(settings, runtime)
    pod = worker_manifest(runtime, cluster="c1")
    (worker,) = pod["spec"]["containers"]
    assert worker["args"][:4] == ["dask", "worker", "--no-dashboard", "tls://dask-c1.pds:8786"]
    record = tmp_path / "extract-check"
    record.mkdir()
    assert run_init_container(pod["spec"], claim, record).returncode == 0
    done = _start_worker(pod, claim, record, monkeypatch)
    assert done.returncode == 0 and done.stdout.strip() == "worker started", done.stderr


@pytest.mark.parametrize("record", ["missing", "empty", "another"])
def test_dask_worker_without_its_init_containers_record_does_not_start(settings, runtime, tmp_path, monkeypatch,
                                                                       record):
    """Deny by default: no record in the pod's folder (or an empty one, or another tree's)."""
    claim, _ = _published_claim(settings, runtime)
    pod = worker_manifest(runtime, cluster="c1")
    folder = tmp_path / "extract-check"
    folder.mkdir()
    if record != "missing":
        (folder / "fingerprint").write_text("" if record == "empty" else "0" * 64)
    done = _start_worker(pod, claim, folder, monkeypatch)
    assert "worker started" not in done.stdout
    assert done.returncode == 3, done.stdout + done.stderr
