"""The airlock's rebuild on Kubernetes: the Job the gate creates, the chart's runner, RBAC and
policies, and the gate choosing the Job (pds_kernel.airlock.rebuild_job; docs/adr/0010-release-rebuilt-copies.md,
docs/deploy-kubernetes.md).

No cluster here: the manifest is validated against the Kubernetes schema the chart tests use; its
Job's exact command is run in an emulated pod (bubblewrap: the pod's mounts at their paths,
read-only where the manifest says, its uid, no network) on a Parquet table, a PNG and a PDF, and
the copies the gate collects must be byte for byte those of the process runner; the chart is
rendered with the real ``helm``; the gate's Kubernetes path runs against an API server that does
not answer.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import replace

import pytest

from pds_kernel.airlock import rebuild as rebuild_mod
from pds_kernel.airlock.rebuild import MEMORY_BYTES, WALL_SECONDS, rebuild_all
from pds_kernel.airlock.rebuild_job import (
    COPIES_DIR,
    IN_DIR,
    ITEMS,
    OUT_DIR,
    WORK_ROOT,
    RebuildJob,
    build_rebuild_job,
)
from pds_kernel.airlock.rebuild_sandbox import rebuild_sandbox
from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput
from pds_kernel.k8s.config import parse_k8s_config

from .conftest import REPO
from .test_chart import mounts_token, render
from .test_model_check_job import _selects, assert_isolated_job

sys.path.insert(0, str(REPO / "tests" / "security"))
from rebuild_job_support import CFG, FILES, PROJECT, bwrap_available, outcome_of, run_in_pod

WORK = f"{WORK_ROOT}/{PROJECT}-abc123xy"


def _job(work: str = WORK, project: str = PROJECT) -> dict:
    return build_rebuild_job(CFG, name=f"pds-rebuild-{PROJECT}-00ff00ff00ff", project=project, work=work,
                             memory_bytes=MEMORY_BYTES, timeout_seconds=WALL_SECONDS, copies=["0.parquet", "1.png"])


def test_rebuild_job_is_valid_kubernetes_with_the_isolation_of_a_check_job():
    pod, container = assert_isolated_job(_job(), "airlock-rebuild", CFG.rebuild_image, WALL_SECONDS, init=True)
    assert container["command"] == ["python", "-I", "-m", "pds_kernel.airlock.rebuild_formats", "--items-file",
                                    f"{IN_DIR}/{ITEMS}"]
    # what it may write on its node: its out/ and /tmp (1024Mi each) and 256Mi for its log
    assert container["resources"]["limits"] == container["resources"]["requests"] == {
        "cpu": "1000m", "memory": "3072Mi", "ephemeral-storage": "2304Mi"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(volumes) == {"in", "copies", "out", "scratch"}
    assert volumes["out"]["emptyDir"] == volumes["scratch"]["emptyDir"] == {"sizeLimit": "1024Mi"}
    assert volumes["in"]["persistentVolumeClaim"] == {"claimName": "pds-staging", "readOnly": True}
    assert volumes["copies"]["persistentVolumeClaim"] == {"claimName": "pds-staging"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    # the work folder's in/ (read-only) only: nothing of the staging claim it may write
    assert mounts["in"] == {"name": "in", "mountPath": str(IN_DIR), "subPath": f"{WORK}/in", "readOnly": True}
    writable = sorted(m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly"))
    assert writable == sorted([str(OUT_DIR), "/tmp"]) and "copies" not in mounts
    # then the gate's code takes the copies asked for, within out/'s size, to the work folder's out/
    (collect,) = pod["containers"]
    assert collect["command"] == ["python", "-I", "-m", "pds_kernel.airlock.rebuild_collect", "--from", str(OUT_DIR),
                                  "--to", str(COPIES_DIR), "--max-bytes", str(1024 << 20), "0.parquet", "1.png"]
    assert {m["name"]: m for m in collect["volumeMounts"]} == {
        "out": {"name": "out", "mountPath": str(OUT_DIR), "readOnly": True},
        "copies": {"name": "copies", "mountPath": str(COPIES_DIR), "subPath": f"{WORK}/out"}}


@pytest.mark.parametrize("work,project", [
    (f"{PROJECT}/abc/raw", PROJECT),  # a request's staging folder
    (f"{WORK_ROOT}/other-project-abc123xy", PROJECT),  # another project's work folder
    (f"{WORK_ROOT}/{PROJECT}-abc123xy/../../{PROJECT}", PROJECT),
    (f"{WORK_ROOT}/{PROJECT}-abc123xy/in", PROJECT),
    (WORK_ROOT, PROJECT),
])
def test_rebuild_job_mounts_only_a_work_folder_of_its_project(work, project):
    with pytest.raises(InvalidInput):
        _job(work, project)


@pytest.fixture(scope="module")
def release(chart, tmp_path_factory) -> list[dict]:
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(json.dumps({
        "projects": [{"id": PROJECT, "title": "Diabetes", "start": "2025-01-01", "end": "2030-12-31"}],
        "networkPolicy": {"dns": {"nameFilter": "cilium"}},
        "airlock": {"modelCheck": {"apiServerPeers": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}}}))
    return render(chart, [values])


def test_chart_runs_the_rebuild_as_a_job_with_the_gates_image(release):
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in release}
    pod = kinds[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PDS_AIRLOCK__REBUILD_RUNNER"] == "job"
    config = parse_k8s_config(json.loads(kinds[("ConfigMap", "pds-config")]["data"]["k8s.json"]))
    assert config.rebuild_image == pod["containers"][0]["image"] == "registry.example.org/pds/hub:0.1.0"
    # the gate's Role already lets it create, read and delete its Jobs and read their pods' logs
    role = kinds[("Role", "pds-airlock")]
    assert {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "delete"]} in role["rules"]
    assert {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]} in role["rules"]


def test_chart_lets_no_traffic_in_or_out_of_a_rebuild_pod(release):
    labels = _job()["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in release if d["kind"] == "NetworkPolicy" and _selects(d["spec"]["podSelector"], labels)]
    assert [p["metadata"]["name"] for p in policies] == ["pds-projects-default-deny"]
    deny = policies[0]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and not deny.get("ingress") and not deny.get("egress")
    cilium = [d for d in release if d["kind"] == "CiliumNetworkPolicy"]
    assert cilium  # rendered: none of them selects the rebuild pod either
    assert not [d for d in cilium if _selects(d["spec"]["endpointSelector"], labels)]
    for doc in release:  # nobody's policy names the rebuild pod as a peer
        if doc["kind"] in {"NetworkPolicy", "CiliumNetworkPolicy"}:
            assert "airlock-rebuild" not in json.dumps(doc)


def test_chart_with_rebuild_jobs_only_keeps_the_role_and_the_api_server_route(chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"airlock": {"modelCheck": {"enabled": False, "apiServerPeers": [
        {"ipBlock": {"cidr": "10.0.0.1/32"}}]}, "cohortLink": {"enabled": False}}}))
    docs = render(chart, [values])
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert ("Role", "pds-airlock") in kinds and ("RoleBinding", "pds-airlock") in kinds
    pod = kinds[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pds-airlock" and mounts_token(pod["containers"][0])
    egress = kinds[("NetworkPolicy", "pds-airlock")]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in egress


# ---- the Job's command in an emulated pod -------------------------------------------------------------
@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")
def test_rebuild_job_in_an_emulated_pod_gives_the_copies_of_the_process_runner(tmp_path):
    staging = tmp_path / "claims" / "pds-staging"
    request = staging / PROJECT / "r1"
    request.mkdir(parents=True)
    sources = {}
    for name, make in FILES.items():
        sources[name] = request / f"0-r1-{name}"
        sources[name].write_bytes(make())
    job_items = [(sources[n], request / f".job-{n}", n) for n in FILES]
    process_items = [(sources[n], request / f".process-{n}", n) for n in FILES]

    runner = RebuildJob(PROJECT, staging, CFG)
    prepared = runner.prepare(job_items, MEMORY_BYTES, WALL_SECONDS)
    try:
        assert prepared.work.parent == staging / WORK_ROOT and prepared.work.name.startswith(f"{PROJECT}-")
        done = run_in_pod(staging, prepared.manifest, tmp_path / "scratch")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        ending = runner.collect(prepared, job_items, outcome_of(done))
    finally:
        runner.finish(prepared)
    assert not prepared.work.exists() and not any((staging / WORK_ROOT).iterdir())
    results, why = rebuild_mod._results(ending.stdout, job_items)
    assert ending.returncode == 0 and results == dict.fromkeys(FILES), why
    assert rebuild_all(process_items) == dict.fromkeys(FILES)
    for (_, job_copy, name), (_, process_copy, _) in zip(job_items, process_items, strict=True):
        assert job_copy.read_bytes() == process_copy.read_bytes(), name  # the same copy, byte for byte
        assert job_copy.read_bytes() != sources[name].read_bytes()  # a rebuilt copy, not the submitted bytes


# ---- the gate on Kubernetes without a reachable API server ----------------------------------------------
def test_gate_with_the_job_runner_refuses_the_files_when_no_job_can_run(runtime, tmp_path, monkeypatch, caplog):
    from disclosure_support import build_service

    from .conftest import use_dummy_kubeconfig

    service, _ = build_service(runtime)
    settings = runtime.settings
    use_dummy_kubeconfig(tmp_path, monkeypatch)  # an API server that refuses connections
    monkeypatch.delenv("PDS_K8S_CONFIG", raising=False)
    monkeypatch.delenv("PDS_K8S_CONFIG_FILE", raising=False)
    service.settings = replace(settings, airlock=replace(settings.airlock, rebuild_runner="job"))
    assert isinstance(rebuild_sandbox(service.settings, PROJECT), RebuildJob)
    try:
        with caplog.at_level(logging.WARNING, logger="pds_kernel.airlock.rebuild"), \
                pytest.raises(RefusedFiles) as refused:
            service.create("alice", PROJECT, [("t.parquet", io.BytesIO(FILES["table.parquet"]()))], "results",
                           context={"tables": {"t.parquet": {"labels": ["region"], "counts": ["persons"]}}})
    finally:
        service.settings = settings
    assert "the gate cannot start the rebuild of this file" in str(refused.value)
    assert "airlock.rebuild_runner" in str(refused.value)
    assert "Cannot connect to host 127.0.0.1:1" in caplog.text  # the gate really called the API server
    staging = settings.paths.staging
    assert not [p for p in (staging / WORK_ROOT).rglob("*")]  # no work folder left
    assert not (staging / PROJECT).exists() or not any((staging / PROJECT).iterdir())  # nothing staged
    denied = [e for e in runtime.audit.entries(action="airlock.request.create") if e.outcome != "success"]
    assert denied and "cannot start the rebuild" in json.dumps(denied[-1].details)
