"""Attacks on the window between the audit trail and the pod on Kubernetes (ADR 0011): the published
extract is changed on its claim after the hub (or the gate) read its publication, so the pod's
``verify-extract`` init container refuses it. Each test runs that container's exact command for
real on the changed claim (bubblewrap, tests/security/extract_check_k8s_support.py) and feeds the
pod's status, as the API server reports it, through the real code that waits for the pod:

* a workspace: KubeSpawner's own wait (``exponential_backoff`` over ``is_pod_running``, as
  ``KubeSpawner._start`` polls it) with the hub's :class:`~pds_kernel.hub.kube_spawner.PdsKubeSpawner`;
* a model check: the gate's whole submission, its Job run by :func:`pds_kernel.k8s.jobs.run_job`
  against a loopback stand-in of the API server (tests/k8s/api_stand_in.py).

The attack fails when nothing runs on the changed extract *and* the refusal is prompt, clear and
audited (before: the hub waited out ``start_timeout`` and said only that the pod did not start;
the gate said the Job "could not run on Kubernetes", nothing audited).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pytest
from extract_check_k8s_support import (
    TAMPERS,
    bwrap_available,
    check_then_change,
    job_pod_after,
    notebook_refused_pod,
    published_claim,
    run_init_container,
    run_notebook_start,
    tamper,
    workspace_pod_after,
)
from jupyterhub.utils import exponential_backoff
from kubespawner import KubeSpawner

from pds_kernel.audit import AuditTrail
from pds_kernel.k8s.pod_status import MISMATCH, ExtractMismatch
from tests.k8s.api_stand_in import JobApi
from tests.k8s.test_extract_mount_k8s import _run_as_kubelet
from tests.k8s.test_model_check_job import platform as gate  # noqa: F401  (a fixture: the gate, checks on Kubernetes)
from tests.k8s.test_spawner import make_spawner, spawn_manifest

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap runs the pod's init container")


def _refusals(runtime) -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.action == "extract.mount_refused"]


# ---- a workspace ---------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("restarted", [False, True], ids=["first-failure", "after-restarts"])
@pytest.mark.parametrize("how", sorted(TAMPERS))
async def test_workspace_on_a_changed_extract_stops_at_once_audited(settings, runtime, tmp_path, monkeypatch,
                                                                   how, restarted):
    claim, build = published_claim(settings, runtime, tmp_path, monkeypatch)
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner._spawn_pending = True  # as JupyterHub's spawn_single_user marks it, for the whole spawn
    manifest = await spawn_manifest(spawner)  # the hub read the publication: the pod is made
    tamper(build, how)  # ... and the claim changes before the pod starts
    done = run_init_container(manifest["spec"], claim)
    assert done.returncode == 3 and TAMPERS[how] in done.stderr, done.stdout + done.stderr
    pod = workspace_pod_after(spawner.pod_name, done, restarted=restarted)

    # before: KubeSpawner's own test never says "running", so the spawn waited out start_timeout
    assert KubeSpawner.is_pod_running(spawner, pod) is False
    started = time.monotonic()
    with pytest.raises(ExtractMismatch) as refused:
        await exponential_backoff(lambda: spawner.is_pod_running(pod), "the pod did not start",
                                  timeout=spawner.start_timeout)
    assert time.monotonic() - started < 5
    # what the researcher reads ("Spawn failed: <this>"): what is wrong and who puts it right
    assert str(refused.value) == MISMATCH and "pds extract verify" in str(refused.value)
    (entry,) = _refusals(runtime)
    assert entry.outcome == "denied" and entry.actor == "alice" and entry.project == "alpha-study"
    assert entry.details["workload"] == "workspace" and entry.details["pod"] == spawner.pod_name
    assert entry.details["exit_code"] == 3 and TAMPERS[how] in entry.details["pod_message"]


@pytest.mark.asyncio
async def test_workspace_on_the_published_extract_is_not_refused(settings, runtime, tmp_path, monkeypatch):
    """The same chain on the untouched claim: the init container passes, nothing is refused."""
    claim, _build = published_claim(settings, runtime, tmp_path, monkeypatch, people=1)
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner._spawn_pending = True  # as JupyterHub's spawn_single_user marks it, for the whole spawn
    manifest = await spawn_manifest(spawner)
    record = tmp_path / "extract-check"
    record.mkdir()
    done = run_init_container(manifest["spec"], claim, record)
    assert done.returncode == 0, done.stderr
    assert spawner.is_pod_running(workspace_pod_after(spawner.pod_name, done, restarted=False)) is False
    # the notebook's start finds the tree that was checked, and goes on (here: a plain interpreter
    # that runs the same check the launcher runs first, then says so)
    (notebook,) = manifest["spec"]["containers"]
    monkeypatch.setenv("PDS_EXTRACT_CHECKED", "/srv/pds/extract-check/fingerprint")
    started = _run_as_kubelet(notebook, claim, record, argv=[
        sys.executable, "-I", "-c", "import os; from pds_kernel.extract.tree import refuse_unless_checked; "
                                    "refuse_unless_checked(os.environ); print('serving')"])
    assert started.returncode == 0 and started.stdout.strip() == "serving", started.stderr
    assert not _refusals(runtime)


# ---- the window between the init container and the notebook container ---------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["repoint", *sorted(TAMPERS)])
async def test_notebook_does_not_serve_an_extract_changed_after_its_init_container(settings, runtime, tmp_path,
                                                                                 monkeypatch, how):
    """``verify-extract`` passes on the published build; then, before the notebook container starts,
    the ``extract`` link is re-pointed to another build (a faithful copy: its manifest is the
    published one) or a file of the build changes. The kubelet mounts the notebook's ``/data`` when
    that container starts: it is not the tree that was checked, and the notebook's own start (its
    exact command) refuses to serve it; the hub ends the spawn, audited."""
    claim, build = published_claim(settings, runtime, tmp_path, monkeypatch)
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner._spawn_pending = True  # as JupyterHub's spawn_single_user marks it, for the whole spawn
    manifest = await spawn_manifest(spawner)
    record = tmp_path / "extract-check"  # the pod's emptyDir
    check_then_change(manifest["spec"], claim, build, record, how)
    done = run_notebook_start(manifest["spec"], claim, record, monkeypatch)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not the one its pod's verify-extract container checked" in done.stderr
    with pytest.raises(ExtractMismatch, match="does not match its publication"):
        await exponential_backoff(lambda: spawner.is_pod_running(notebook_refused_pod(spawner.pod_name, done)),
                                  "the pod did not start", timeout=spawner.start_timeout)
    (entry,) = _refusals(runtime)
    assert entry.details["workload"] == "workspace" and "changed in between" in entry.details["pod_message"]


@pytest.mark.parametrize("record", ["missing", "empty", "another"])
def test_notebook_start_without_the_init_containers_record_refuses(tmp_path, monkeypatch, record):
    """Deny by default: the variable set (every Kubernetes workspace) and no record, an empty one or
    another tree's: the start refuses."""
    from pds_kernel.extract.tree import refuse_unless_checked

    data = tmp_path / "data"
    data.mkdir()
    (data / "COHORT.parquet").write_bytes(b"PAR1")
    path = tmp_path / "fingerprint"
    if record != "missing":
        path.write_text("" if record == "empty" else "0" * 64)
    with pytest.raises(SystemExit) as stopped:
        refuse_unless_checked({"PDS_EXTRACT_CHECKED": str(path)}, str(data))
    assert stopped.value.code == 3


# ---- a model check -------------------------------------------------------------------------------
def test_model_check_job_on_an_extract_changed_after_the_gate_checked_it(request, tmp_path, monkeypatch):
    """The gate checks the extract, creates the check Job; the claim changes before the Job's pod
    starts. Its ``verify-extract`` container refuses it: the check does not run, the model goes to a
    checker with the reason (as when the gate refuses the extract itself), audited, at once."""
    from model_check_support import PROJECT, reasonable_xgboost, submit, write_rows

    from pds_kernel.audit import AuditTrail as Trail
    from pds_kernel.modelcheck.k8s_job import CONTAINER
    from tests.k8s.test_model_check_job import FAST

    service, settings, rows, alice = request.getfixturevalue("gate")
    claim = settings.paths.projects / PROJECT
    runs = {}

    def pod_of(job: dict):
        name = job["metadata"]["name"]
        if name not in runs:
            tamper(claim / "extract", "replace")  # after the gate's own check, before the pod's
            runs[name] = run_init_container(job["spec"]["template"]["spec"], claim)
        return job_pod_after(job, runs[name], CONTAINER)

    with JobApi(pod_of) as api:
        api.kubeconfig(tmp_path, monkeypatch)
        service.settings = replace(settings, model_check=replace(FAST, runner="kubernetes"))
        try:
            declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
            started = time.monotonic()
            view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
            seconds = time.monotonic() - started
        finally:
            service.settings = settings
    (done,) = runs.values()
    assert done.returncode == 3 and "SHA-256 differs" in done.stderr
    assert len(api.created) == 1 and api.deleted == [api.created[0]["metadata"]["name"]]  # deleted as ever
    assert CONTAINER not in api.log_reads  # the check never ran, so no log of it is read
    assert seconds < 60  # not the Job's deadline (FAST.timeout_seconds) nor the scheduling slack
    f = service.get_request("olga", view.id).files[0]
    assert f.check_status == "review"
    (finding,) = [x for x in f.check["findings"] if x["rule"] == "model-check"]
    assert finding["message"] == f"the check did not run: {MISMATCH}; a checker judges the model"
    entries = [e for e in Trail(service.runtime.sessions).entries() if e.action == "extract.mount_refused"]
    (entry,) = entries
    assert entry.outcome == "denied" and entry.actor == "alice" and entry.project == PROJECT
    assert entry.details["workload"] == "model-check" and entry.details["request"] == view.id
    assert entry.details["pod"] == api.created[0]["metadata"]["name"]
    assert "SHA-256 differs" in entry.details["pod_message"]
