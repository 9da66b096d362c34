"""Cohort linkage on Kubernetes: the Job the gate creates, the chart's claims, RBAC and policies, and
the gate choosing the Job (pds_kernel.airlock.cohort_link_job; docs/imports.md, docs/deploy-kubernetes.md).

No cluster here: the manifest is validated against the Kubernetes schema; its Job's exact command is
run in an emulated pod (bubblewrap: the pod's mounts at their paths, read-only where the manifest
says, its uid, no network) and must give byte for byte what the gate's local linkage gives; the
chart is rendered with the real ``helm``; the gate's Kubernetes path runs against an API server
that does not answer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import kubernetes_validate
import polars as pl
import pytest
from published import record_publication

from pds_kernel.airlock import cohort_link
from pds_kernel.airlock.cohort_link_job import COPIES_DIR, LIST_PATH, OUT_DIR, build_link_job, parse_link_log
from pds_kernel.k8s.config import K8sConfig, parse_k8s_config
from pds_kernel.pseudo import KeyStore
from pds_kernel.sandbox.spec import extract_volume_name
from pds_kernel.settings import CohortLink
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

from .conftest import REPO
from .test_chart import K8S_VERSION, mounts_token, render
from .test_model_check_job import _selects

sys.path.insert(0, str(REPO / "tests" / "security"))  # the real gate with ClamAV (imports_support)
from cohort_link_k8s_support import (
    RECORDED,
    STORED,
    bwrap_available,
    link_job,
    make_platform,
    prepare_output,
    published_audit,
    run_in_pod,
    stage,
)
from imports_support import (  # noqa: F401  (fixtures)
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
)

PROJECT = "diab-2024"
REQUEST = "0123456789abcdef0123456789abcdef"
RAW = f"{PROJECT}/{REQUEST}/raw/0-r1-recruited.csv"
CFG = K8sConfig(namespace="pds", cohort_link_image="registry.example.org/pds/hub:0.1.0")


def _job(raw: str = RAW, project: str = PROJECT, request: str = REQUEST) -> dict:
    return build_link_job(CFG, name="pds-cohort-link-0123456789abcdef0123-ff00ff", project=project,
                          request_id=request, raw=raw, timeout_seconds=300, max_output_bytes=5 * 2**20 + 1,
                          expected=RECORDED)


def test_link_job_is_valid_kubernetes_and_isolated_like_a_check_job():
    job = _job()
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 300)
    assert spec["template"]["metadata"]["labels"] == {"pds.project": PROJECT, "pds.component": "cohort-link"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert not (pod["hostNetwork"] or pod["hostPID"] or pod["hostIPC"]) and pod["enableServiceLinks"] is False
    assert pod["dnsPolicy"] == "None" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"  # staged files keep their modes
    check, container = pod["initContainers"]  # the extract's check, then the linker, each to its end
    assert check["name"] == "verify-extract" and check["image"] == CFG.cohort_link_image
    assert check["command"][:5] == ["python", "-I", "-m", "pds_kernel.extract.tree", "/data"]
    assert check["command"][check["command"].index("--manifest-sha256") + 1] == RECORDED.manifest_sha256
    assert check["command"][check["command"].index("--record") + 1] == "/srv/pds/extract-check/fingerprint"
    assert [m for m in check["volumeMounts"] if m["name"] == "extract"] == [
        m for m in container["volumeMounts"] if m["name"] == "extract"]
    (collect,) = pod["containers"]  # then the copy of its output to the claim
    assert container["name"] == "cohort-link" and container["image"] == collect["image"] == CFG.cohort_link_image
    assert container["command"] == ["python", "-I", "-m", "pds_kernel.k8s", "cohort-link", PROJECT]
    for one in (container, collect):
        sc = one["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"]
        assert not sc["allowPrivilegeEscalation"] and sc["runAsUser"] != 0
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # what it may write on the node: the three emptyDirs (the bound rounded up and a MiB, 256 MiB of
        # /tmp, the extract check's 1 MiB record) and its log
        assert one["resources"]["limits"]["ephemeral-storage"] == f"{7 + 256 + 1 + 256}Mi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {k: v["persistentVolumeClaim"] for k, v in volumes.items() if "persistentVolumeClaim" in v} == {
        "key": {"claimName": "pds-keys", "readOnly": True},
        "ttp": {"claimName": "pds-ttp", "readOnly": True},
        "list": {"claimName": "pds-staging", "readOnly": True},
        "copies": {"claimName": "pds-staging"},
        "extract": {"claimName": extract_volume_name(PROJECT), "readOnly": True}}
    assert volumes["out"] == {"name": "out", "emptyDir": {"sizeLimit": "7Mi"}}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    # one key file (not the key store), one correspondence file, one staged file, a pod-local directory
    assert mounts["key"]["subPath"] == f"keys/{PROJECT}.key" and mounts["key"]["readOnly"]
    assert mounts["ttp"]["subPath"] == "nir_correspondence.parquet" and mounts["ttp"]["readOnly"]
    assert (mounts["list"]["subPath"], mounts["list"]["mountPath"]) == (RAW, str(LIST_PATH))
    assert mounts["out"] == {"name": "out", "mountPath": str(OUT_DIR)}
    assert "copies" not in mounts  # the linker has nothing of the staging claim it may write
    writable = sorted(m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly"))
    assert writable == sorted([str(OUT_DIR), "/tmp"])
    # what verify-extract recorded, read-only: the linker's start compares its /data with it
    assert mounts["extract-check"] == {"name": "extract-check", "mountPath": "/srv/pds/extract-check", "readOnly": True}
    assert volumes["extract-check"] == {"name": "extract-check", "emptyDir": {"sizeLimit": "1Mi"}}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PDS_EXTRACT_CHECKED"] == "/srv/pds/extract-check/fingerprint"
    assert "PDS_DATABASE__URL" not in env and not any("AUDIT" in k for k in env)  # no database, no audit key
    # the copy: the two expected files, bounded, from the pod-local output to the request's link/ only
    assert collect["command"] == ["python", "-I", "-m", "pds_kernel.airlock.rebuild_collect", "--from", str(OUT_DIR),
                                  "--to", str(COPIES_DIR), "--max-bytes", str(5 * 2**20 + 1), "match_report.json",
                                  "cohort.csv"]
    assert collect["volumeMounts"] == [
        {"name": "out", "mountPath": str(OUT_DIR), "readOnly": True},
        {"name": "copies", "mountPath": str(COPIES_DIR), "subPath": f"{PROJECT}/{REQUEST}/link"}]
    assert not collect.get("env")


# ---- the chart -------------------------------------------------------------------------------------
def _render(chart, tmp_path, values: dict) -> list[dict]:
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(json.dumps({"projects": [{"id": PROJECT, "title": "Diabetes", "start": "2025-01-01",
                                              "end": "2030-12-31"}], **values}))
    return render(chart, [path])


def test_chart_gives_link_jobs_their_claims_and_the_gate_the_runner(chart, tmp_path):
    docs = _render(chart, tmp_path, {"airlock": {"modelCheck": {"apiServerPeers": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}}})
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    ttp = kinds[("PersistentVolumeClaim", "pds-ttp")]
    assert ttp["spec"]["accessModes"] == ["ReadWriteMany"]
    assert kinds[("PersistentVolumeClaim", "pds-keys")]["spec"]["accessModes"] == ["ReadWriteOnce"]
    airlock = kinds[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in airlock["containers"][0]["env"]}
    assert (env["PDS_COHORT_LINK__RUNNER"], env["PDS_COHORT_LINK__TIMEOUT_SECONDS"]) == ("kubernetes", "300")
    # the gate itself mounts neither the key store nor the correspondence
    claims = {v["persistentVolumeClaim"]["claimName"] for v in airlock["volumes"] if "persistentVolumeClaim" in v}
    assert not claims & {"pds-keys", "pds-ttp"}
    assert "PDS_PATHS__TTP" not in env
    # only the extract builds mount the key store; nothing but the link Jobs (made by the gate) reads pds-ttp
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"}:
            text = json.dumps(doc)
            assert '"pds-ttp"' not in text, doc["metadata"]["name"]
            assert '"pds-keys"' not in text or doc["metadata"]["name"].startswith("pds-extract-")
    config = json.loads(kinds[("ConfigMap", "pds-config")]["data"]["k8s.json"])
    assert parse_k8s_config(config).cohort_link_image == "registry.example.org/pds/hub:0.1.0"
    # the Job the gate builds from the release's configuration: the linker and the copy in the gate's
    # image (which holds pds_kernel.airlock.rebuild_collect), valid for the cluster, pod-local output
    released = build_link_job(parse_k8s_config(config), name="pds-cohort-link-0123456789abcdef0123-ff00ff",
                              project=PROJECT, request_id=REQUEST, raw=RAW, timeout_seconds=300,
                              max_output_bytes=2**20, expected=RECORDED)
    kubernetes_validate.validate(released, K8S_VERSION, strict=True)
    pod = released["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {"registry.example.org/pds/hub:0.1.0"}
    assert [c["name"] for c in pod["initContainers"]] == ["verify-extract", "cohort-link"]
    assert pod["containers"][0]["name"] == "collect"
    writers = [c["name"] for c in pod["initContainers"] + pod["containers"] for m in c["volumeMounts"]
               if m["name"] in {"copies", "list"} and not m.get("readOnly")]
    assert writers == ["collect"]  # the only writer of the staging claim is the gate's copy
    # the link pod: only the projects' default deny selects it, nobody names it as a peer
    labels = _job()["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and _selects(d["spec"]["podSelector"], labels)]
    assert [p["metadata"]["name"] for p in policies] == ["pds-projects-default-deny"]
    assert not policies[0]["spec"].get("ingress") and not policies[0]["spec"].get("egress")
    assert not [d for d in docs if d["kind"] == "NetworkPolicy" and "cohort-link" in json.dumps(d)]
    egress = kinds[("NetworkPolicy", "pds-airlock")]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in egress


def test_chart_with_cohort_links_only_keeps_the_role_and_a_new_install_may_share_the_key_store(chart, tmp_path):
    docs = _render(chart, tmp_path, {"airlock": {"modelCheck": {"enabled": False}},
                                     "storage": {"keys": {"size": "1Gi", "accessMode": "ReadWriteMany"}}})
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert kinds[("Role", "pds-airlock")]["rules"][0] == {"apiGroups": ["batch"], "resources": ["jobs"],
                                                          "verbs": ["create", "get", "delete"]}
    airlock = kinds[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    assert airlock["serviceAccountName"] == "pds-airlock" and mounts_token(airlock["containers"][0])
    assert kinds[("PersistentVolumeClaim", "pds-keys")]["spec"]["accessModes"] == ["ReadWriteMany"]


# ---- the Job's command in an emulated pod, against the gate's local linkage -------------------------
@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return make_platform(tmp_path_factory.mktemp("link"))


def test_local_linkage_gives_the_known_composition(platform):
    settings, cohort = platform
    directory = stage(settings, "a" * 32, cohort.path.read_bytes())
    with published_audit(settings) as audit:
        _, _, report = cohort_link.link_staged(settings, PROJECT, "a" * 32, directory, STORED, audit=audit)
    assert report == {"rows": cohort.rows, "matched": 30, "unmatched": 8, "duplicates": 4, "invalid": 3,
                      "match_rate": round(30 / cohort.rows, 4), "in_extract": 15}
    assert not (directory / "link").exists()  # read back, then removed


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")
def test_link_job_command_in_an_emulated_pod_gives_what_the_local_path_gives(platform, tmp_path):
    settings, cohort = platform
    local_dir = stage(settings, "b" * 32, cohort.path.read_bytes())
    with published_audit(settings) as audit:
        local = cohort_link.link_staged(settings, PROJECT, "b" * 32, local_dir, STORED, audit=audit)

    request = "c" * 32
    directory = stage(settings, request, cohort.path.read_bytes())
    out = prepare_output(directory)
    done = run_in_pod(settings, link_job(request, settings=settings), tmp_path / "scratch")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = parse_link_log(done.stdout)
    columns = cohort_link.study_columns(directory / "raw" / STORED)
    in_pod = cohort_link.read_output(out, result, columns, 10 * 2**20)
    assert in_pod == local  # cohort.csv, match_report.json and the report: byte for byte
    assert in_pod[2]["in_extract"] == 15 and in_pod[2]["matched"] == 30
    nirs = {n.replace(" ", "") for n in pl.read_csv(cohort.path)["NIR"].to_list()}
    assert not any(n in done.stdout + done.stderr for n in nirs)  # no NIR in the pod's log


# ---- the gate on Kubernetes without a reachable API server -------------------------------------------
def _import_without_an_api_server(import_gate, tmp_path, monkeypatch, *, published: bool):
    """A cohort import on Kubernetes whose API server refuses connections (the gate's answer)."""
    from .conftest import use_dummy_kubeconfig

    service = import_gate.service
    settings = service.settings
    generate(tmp_path / "delivery", patients=120, years=(2022, 2022), seed=3)
    KeyStore(settings.paths.keys).ensure(PROJECT, "setup")
    cohort = generate_cohort_list(tmp_path / "delivery", tmp_path / "outside" / "list.csv", settings.paths.ttp,
                                  matched=20, unmatched=5, seed=5)
    if published:
        record_publication(service.runtime.audit, PROJECT)  # the Job checks the extract against this record
    use_dummy_kubeconfig(tmp_path, monkeypatch)  # an API server that refuses connections
    service.settings = replace(settings, cohort_link=CohortLink(runner="kubernetes", timeout_seconds=60))
    import_gate.imports.settings = service.settings
    try:
        return import_gate.upload("alice", "list.csv", cohort.path.read_bytes(), kind="cohort")
    finally:
        service.settings = import_gate.imports.settings = settings


def test_gate_on_kubernetes_refuses_a_cohort_import_when_no_job_can_run(import_gate, tmp_path, monkeypatch):
    service = import_gate.service
    answer = _import_without_an_api_server(import_gate, tmp_path, monkeypatch, published=True)
    assert answer.status_code == 503, answer.text
    assert "Cannot connect to host 127.0.0.1:1" in answer.text  # the gate really called the API server
    assert "could not be linked" in answer.text and "could not run on Kubernetes" in answer.text
    assert not import_gate.staged_anything()  # no raw list, no partial output left in staging
    failed = [e for e in service.runtime.audit.entries(action="airlock.import.create") if e.outcome == "failed"]
    assert failed and "could not run on Kubernetes" in failed[-1].details["reason"]  # audited with the reason


def test_gate_on_kubernetes_refuses_a_cohort_import_of_a_never_published_extract(import_gate, tmp_path,
                                                                                monkeypatch):
    """No publication in the audit trail: nothing to check the Job's extract against, no Job."""
    answer = _import_without_an_api_server(import_gate, tmp_path, monkeypatch, published=False)
    assert answer.status_code >= 400 and "never published" in answer.text, answer.text
    assert "Cannot connect" not in answer.text  # refused before any Job
    assert not import_gate.staged_anything()


# ---- reading the Job: a pod that cannot start, and the pod's own answer -----------------------------
def test_a_pod_that_cannot_start_is_reported_at_once_with_the_kubelets_reason():
    from kubernetes_asyncio.client import (
        V1ContainerState,
        V1ContainerStateRunning,
        V1ContainerStateWaiting,
        V1ContainerStatus,
        V1Pod,
        V1PodStatus,
    )

    from pds_kernel.k8s.jobs import _stuck

    def pod(state):
        status = V1ContainerStatus(name="cohort-link", image="x", image_id="", ready=False, restart_count=0,
                                   state=state)
        return V1Pod(status=V1PodStatus(container_statuses=[status]))

    missing_key = V1ContainerStateWaiting(reason="CreateContainerConfigError",
                                          message="failed to prepare subPath for volumeMount \"key\"")
    assert "CreateContainerConfigError" in _stuck([pod(V1ContainerState(waiting=missing_key))])
    assert _stuck([pod(V1ContainerState(waiting=V1ContainerStateWaiting(reason="ContainerCreating")))]) is None
    assert _stuck([pod(V1ContainerState(running=V1ContainerStateRunning())), V1Pod(status=V1PodStatus())]) is None


@pytest.mark.parametrize("log,error,message", [
    ("", "Unavailable", "gave no result"),
    ("PDS-COHORT-LINK-RESULT {oops\n", "Unavailable", "not JSON"),
    ('PDS-COHORT-LINK-RESULT {"report": [], "cohort_sha256": "x"}\n', "Unavailable", "not {report"),
    ('PDS-COHORT-LINK-RESULT {"error": "a cohort list needs a column named NIR", "kind": "InvalidInput"}\n',
     "InvalidInput", "column named NIR"),
    ('PDS-COHORT-LINK-RESULT {"error": "project x has no pseudonymisation key yet", "kind": "NotFound"}\n',
     "NotFound", "no pseudonymisation key"),
    ('PDS-COHORT-LINK-RESULT {"error": "boom", "kind": "SystemExit"}\n', "Unavailable", "boom"),
])
def test_pod_answers_that_are_not_a_result_refuse_the_import(log, error, message):
    with pytest.raises(Exception) as caught:
        parse_link_log(log)
    assert type(caught.value).__name__ == error and message in str(caught.value)
