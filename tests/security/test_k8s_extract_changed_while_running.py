"""Attacks on the extract while a Kubernetes workspace runs: its claim changed after the pod's check.

A workspace pod's ``verify-extract`` init container checks the extract on the project's claim
against the audit trail and records the fingerprint of what it verified; the notebook's start
compares its ``/data`` with that record (test_extract_check_k8s.py). Then someone with write access
to the claim (a data manager's script gone wrong, an intruder on the storage) changes the build
while alice's notebook serves it. Before this change nothing looked again: EVERY change below GOT
THROUGH (alice's kernel read the changed files, unchecked, until her next start), and the
watcher-breaking ones (a FIFO, a symbolic-link loop, a tree deeper than the interpreter's recursion
limit, a directory of 20,000 entries) had nothing to break. Now the notebook container's liveness
probe (``python -I -m pds_kernel.extract.pod_watch``, run by the kubelet every
``workspace.extractWatchSeconds``) fails on each of them, so the kubelet kills the notebook; its
restart refuses the changed tree; the hub's poll reads that in the pod's status and stops the
server, audited ``workspace.stop`` with ``cause: extract changed`` (as the local hub's watcher:
test_extract_changed_while_running.py); and the next start is refused by ``verify-extract``.

Everything the pod runs is its exact command from KubeSpawner's own pod (the PDS hooks), run for
real in bubblewrap with the claim's sub-path bound once at ``/data`` as the kubelet binds it;
the pod's status is the API server's JSON, read by the hub's real ``PdsKubeSpawner.poll``.
"""

from __future__ import annotations

import os
import shutil
import sys

import extract_check_k8s_support as pod_checks
import polars as pl
import pytest
from k8s_extract_watch_support import CHANGES, change, pods_seen_by, remove_deep_tree, running_notebook
from published import publish_by_hand

from pds_kernel.audit import AuditTrail
from tests.k8s.api_stand_in import container_status, pod_json, running, terminated, waiting
from tests.k8s.test_spawner import make_spawner, spawn_manifest

pytestmark = pytest.mark.skipif(not pod_checks.bwrap_available(), reason="bubblewrap runs the pod's containers")


def _stops(runtime) -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.action == "workspace.stop"]


async def _started_pod(settings, runtime, tmp_path, monkeypatch):
    """alice's workspace pod (KubeSpawner's, with the hooks) on the published claim, its
    ``verify-extract`` run for real (passed, recorded): (spawner, pod manifest, claim, build, record)."""
    claim, build = pod_checks.published_claim(settings, runtime, tmp_path, monkeypatch)
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    manifest = await spawn_manifest(spawner)
    record = tmp_path / "extract-check"  # the pod's emptyDir
    record.mkdir()
    checked = pod_checks.run_init_container(manifest["spec"], claim, record)
    assert checked.returncode == 0, checked.stderr
    return spawner, manifest, claim, build, record


def _reflected(manifest: dict, status: dict) -> dict:
    """The pod as KubeSpawner's reflector holds it: the manifest the hub sent, with ``status``'s
    (a pod as the API server reports it) metadata and status."""
    meta = {**status["metadata"], "annotations": manifest["metadata"].get("annotations") or {}}
    return {**status, "metadata": meta, "spec": manifest["spec"]}


def _serving_pod(spawner, manifest: dict) -> dict:
    """The pod while its notebook serves: Running, ready."""
    return _reflected(manifest, pod_json(
        spawner.pod_name, "pds", "Running", [container_status("verify-extract", terminated(0))],
        [container_status("notebook", running(), ready=True)], pod_ip="10.0.0.7",
        labels={"component": "singleuser-server"}))


@pytest.mark.asyncio
@pytest.mark.parametrize("how", CHANGES)
async def test_a_change_of_the_claim_while_the_notebook_runs_stops_it_audited(settings, runtime, tmp_path,
                                                                            monkeypatch, request, how):
    spawner, manifest, claim, build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    if how == "deep-tree":
        request.addfinalizer(lambda: remove_deep_tree(build))
    spec = manifest["spec"]
    (notebook,) = spec["containers"]
    probe = notebook["livenessProbe"]
    with running_notebook(notebook, claim, record) as container:
        assert container.probe(probe) == (0, "")  # untouched: the notebook keeps running
        assert container.probe(probe) == (0, "")
        change(build, how)
        code, why = container.probe(probe)
    # the probe fails (one failure kills the notebook: failureThreshold 1); a walk the attacker made
    # too long would fail it too, by its timeout (the kubelet's; here the stand-in's)
    assert code != 0 and probe["failureThreshold"] == 1, why
    if code == 3:
        assert why.startswith("the project's extract is refused: "), why
    # the kubelet restarts the notebook: its launcher's own check refuses the changed tree
    restarted = pod_checks.run_notebook_start(spec, claim, record, monkeypatch)
    assert restarted.returncode == 3, restarted.stdout + restarted.stderr
    # the hub's poll reads it in the pod's status: stopped, audited once, as the local watcher does
    assert spawner.pending is None  # the spawn is long over
    with pods_seen_by(spawner, _serving_pod(spawner, manifest)):
        assert await spawner.poll() is None  # before: serving
    assert not _stops(runtime)
    with pods_seen_by(spawner, _reflected(manifest, pod_checks.notebook_refused_pod(spawner.pod_name, restarted))):
        assert await spawner.poll() == 3
        assert await spawner.poll() == 3  # JupyterHub polls again when told it stopped
    (stop,) = _stops(runtime)
    assert stop.actor == "hub" and stop.target == "user:alice" and stop.project == "alpha-study"
    assert stop.details["cause"] == "extract changed" and stop.details["checked_at"] == "pod"
    assert stop.details["pod"] == spawner.pod_name and stop.details["exit_code"] == 3
    # the notebook container's report (the researcher's code runs there too): recorded as not confirmed
    assert stop.details["reported_by"] == "notebook" and stop.details["confirmed"] is False
    assert "changed while it ran" in stop.details["reason"] and "not confirmed" in stop.details["reason"]
    assert "pds extract verify" in stop.details["reason"]
    # and the next start is refused by verify-extract
    (tmp_path / "next-start").mkdir()
    again = pod_checks.run_init_container(spec, claim, tmp_path / "next-start")
    assert again.returncode == 3 and "data manager" in again.stderr, again.stdout + again.stderr


@pytest.mark.asyncio
async def test_the_probes_kill_stops_the_server_audited_before_its_restart(settings, runtime, tmp_path, monkeypatch):
    """The probe says why in ``/dev/termination-log`` before it fails; the kubelet then kills the
    notebook (exit 137) and shows that message in the container's status, before any restart (the
    kubelet may hold it back). Before, the hub's poll read only the restart's refusal (exit 3):
    KubeSpawner reported the killed notebook stopped, and nothing was audited. Now the kill itself
    is read: stopped, audited as an extract changed, with the kill's exit code."""
    spawner, manifest, claim, build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    (notebook,) = manifest["spec"]["containers"]
    with running_notebook(notebook, claim, record) as container:
        change(build, "append")
        code, why = container.probe(notebook["livenessProbe"])
    assert code == 3 and why.startswith("the project's extract is refused: "), why
    killed = _reflected(manifest, pod_json(
        spawner.pod_name, "pds", "Running", [container_status("verify-extract", terminated(0))],
        [container_status("notebook", terminated(137, why.strip()))], pod_ip="10.0.0.7",
        labels={"component": "singleuser-server"}))
    with pods_seen_by(spawner, killed):
        assert await spawner.poll() == 3
    (stop,) = _stops(runtime)
    assert stop.details["cause"] == "extract changed" and stop.details["exit_code"] == 137
    assert "changed while the workspace ran" in stop.details["pod_message"]


@pytest.mark.asyncio
async def test_the_extract_link_repointed_leaves_the_running_notebook_on_the_checked_tree(settings, runtime,
                                                                                     tmp_path, monkeypatch):
    """The ``extract`` link re-pointed to a faithful copy while the notebook runs: its ``/data`` is
    the build the kubelet bound at its start, unchanged, so it keeps serving the checked files (the
    probe passes); the build it serves then emptied and removed behind it is a change, and ends it."""
    spawner, manifest, claim, build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    spec = manifest["spec"]
    (notebook,) = spec["containers"]
    probe = notebook["livenessProbe"]
    with running_notebook(notebook, claim, record) as container:
        served = container.listing()
        copy = build.parent / "20260101T000000Z-c0ffee"
        shutil.copytree(build, copy)
        (claim / "extract").unlink()
        os.symlink(f"builds/{copy.name}", claim / "extract")
        assert container.probe(probe) == (0, "") and container.listing() == served
        shutil.rmtree(build)
        code, why = container.probe(probe)
    assert code == 3 and "changed while the workspace ran" in why


@pytest.mark.asyncio
async def test_an_untouched_workspace_is_never_stopped(settings, runtime, tmp_path, monkeypatch):
    spawner, manifest, claim, _build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    spec = manifest["spec"]
    (notebook,) = spec["containers"]
    with running_notebook(notebook, claim, record) as container:
        assert [container.probe(notebook["livenessProbe"]) for _ in range(3)] == [(0, "")] * 3
    assert spawner.pending is None
    with pods_seen_by(spawner, _serving_pod(spawner, manifest)):
        assert await spawner.poll() is None
    assert not _stops(runtime)


@pytest.mark.asyncio
async def test_the_researcher_cannot_rewrite_the_record_the_probe_compares_with(settings, runtime, tmp_path,
                                                                              monkeypatch):
    """The record is the pod's emptyDir, read-only in the notebook container: a process of the
    researcher's cannot make the probe compare ``/data`` with the changed tree's fingerprint."""
    _spawner, manifest, claim, build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    spec = manifest["spec"]
    (notebook,) = spec["containers"]
    forge = ("import os; from pds_kernel.extract.tree import fingerprint; "
             "fp = fingerprint(os.open('/data', os.O_RDONLY | os.O_DIRECTORY)); "
             "open('/srv/pds/extract-check/fingerprint', 'w').write(fp)")
    with running_notebook(notebook, claim, record) as container:
        change(build, "add")
        code, _, err = container.run([sys.executable, "-I", "-c", forge], 60)
        assert code != 0 and "Read-only file system" in err, err
        code, why = container.probe(notebook["livenessProbe"])
    assert code == 3, why


@pytest.mark.asyncio
async def test_a_verify_extract_refusal_after_the_pods_sandbox_restarts_stops_the_server(settings, runtime,
                                                                                      tmp_path, monkeypatch):
    """A node reboot re-runs a pod's init containers: ``verify-extract`` then refuses the changed
    claim and the pod stays Pending. KubeSpawner's poll calls a Pending pod running; the hub's
    stops the server, audited."""
    spawner, manifest, claim, build, _record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    change(build, "replace-same-size")
    (tmp_path / "again").mkdir()
    again = pod_checks.run_init_container(manifest["spec"], claim, tmp_path / "again")
    assert again.returncode == 3
    pod = pod_json(spawner.pod_name, "pds", "Pending",
                   [container_status("verify-extract", terminated(3, again.stderr.strip()))],
                   [container_status("notebook", waiting("PodInitializing"))], labels={})
    assert spawner.pending is None
    with pods_seen_by(spawner, _reflected(manifest, pod)):
        assert await spawner.poll() == 3
    (stop,) = _stops(runtime)
    assert stop.details["cause"] == "extract changed" and "SHA-256 differs" in stop.details["pod_message"]
    assert stop.details["reported_by"] == "verify-extract" and stop.details["confirmed"] is True
    assert "changed while the workspace ran" in stop.details["reason"]


@pytest.mark.asyncio
async def test_a_new_publication_stops_the_running_pod_and_says_so(settings, runtime, tmp_path, monkeypatch):
    """The control: a data manager publishes a new extract, which removes the build alice's pod
    mounts. Her ``/data`` is emptied under her, a change to the pod (which cannot read the audit
    trail): the probe ends the notebook. The hub tells it from tampering by the pod's build and the
    audit trail's latest publication, and says so; her next start verifies and mounts the new build."""
    spawner, manifest, claim, build, record = await _started_pod(settings, runtime, tmp_path, monkeypatch)
    (notebook,) = manifest["spec"]["containers"]
    with running_notebook(notebook, claim, record) as container:
        assert container.probe(notebook["livenessProbe"]) == (0, "")
        (claim / "extract").unlink()
        pl.DataFrame({"PERSON_ID": ["a", "b", "c"], "n": [1, 2, 3]}).write_parquet(tmp_path / "new.parquet")
        (claim / "extract").mkdir()
        shutil.copy(tmp_path / "new.parquet", claim / "extract" / "ER_PRS_F.parquet")
        newer = publish_by_hand(runtime, "alpha-study")
        shutil.rmtree(build)  # as a publication removes the build it replaces
        code, why = container.probe(notebook["livenessProbe"])
    assert code == 3, why
    restarted = pod_checks.run_notebook_start(manifest["spec"], claim, record, monkeypatch)
    assert restarted.returncode == 3
    with pods_seen_by(spawner, _reflected(manifest, pod_checks.notebook_refused_pod(spawner.pod_name, restarted))):
        assert await spawner.poll() == 3
    (stop,) = _stops(runtime)
    assert stop.details["cause"] == "extract republished" and newer.name in stop.details["reason"]
    assert build.name in stop.details["reason"] and "next start mounts the new one" in stop.details["reason"]
    # the next start: a new pod, for the new publication, whose verify-extract passes
    nxt = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study"], "alpha-study"))
    assert nxt["metadata"]["annotations"]["pds.extract-build"] == newer.name
    (tmp_path / "next-start").mkdir()
    assert pod_checks.run_init_container(nxt["spec"], claim, tmp_path / "next-start").returncode == 0
